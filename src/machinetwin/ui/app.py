"""Mounting the web UI on the hub's FastAPI app, the login, and the common page frame.

``mount_ui(app, ctx, storage_secret, storage_dir)`` registers the pages (fleet at
``/``, ``/machine/{id}``, ``/history``, ``/alarms``, ``/maintenance``, ``/login``) and mounts NiceGUI on
``app`` with ``ui.run_with``. NiceGUI keeps one global page registry, so one process
serves one hub's UI at a time: a second hub may mount it after the first stopped
serving (tests do), never while it serves.

Login goes through the hub's user directory (``hub.auth.UserDirectory``): a session
token from ``create_session`` is kept in NiceGUI's per-browser user storage (server
side, keyed by a signed cookie whose secret is generated per hub) and checked with
``session_user`` on every page load. Without a directory nobody can log in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from nicegui import app as nicegui_app
from nicegui import run, ui

from .context import UiContext, UserLike

log = logging.getLogger(__name__)

SESSION_KEY = "session"
SESSION_CHECK_S = 30.0
TITLE = "machinetwin"
_state: dict[str, Any] = {"ctx": None, "mounted": False, "serving": False}


class UiAlreadyMounted(RuntimeError):
    """A second hub asked to mount the UI in a process that already serves one."""


def ctx() -> UiContext:
    context = _state["ctx"]
    if context is None:
        raise RuntimeError("the web UI is not mounted: call machinetwin.ui.mount_ui first")
    return context


def mount_ui(app: FastAPI, context: UiContext, storage_secret: str, storage_dir: Path) -> None:
    """Serve the pages from ``app`` (see the module docstring)."""
    if len(storage_secret) < 16:
        raise ValueError("the UI storage secret must be at least 16 characters")
    if _state["serving"]:
        raise UiAlreadyMounted("this process already serves a running hub's web UI")
    from nicegui.storage import Storage

    # next to the hub's store, not the cwd; owner-only, as it holds session tokens
    Storage.path = Path(storage_dir).resolve()
    Storage.path.mkdir(mode=0o700, parents=True, exist_ok=True)
    Storage.path.chmod(0o700)
    _state["ctx"] = context
    if _state["mounted"]:
        # A later hub in the same process (tests, benchmarks): NiceGUI's app and its
        # middleware exist already; mount it again. Its cookie-signing secret stays the
        # first hub's (NiceGUI sets it once per process); sessions are the new hub's.
        _mount_again(app)
        return
    from . import alarms, fleet, history, login, machine_page, maintenance  # noqa: F401 - registers pages

    nicegui_app.on_startup(lambda: _state.update(serving=True))
    nicegui_app.on_shutdown(lambda: _state.update(serving=False))
    # UnoCSS instead of the Tailwind runtime: the same classes, a quarter less page load
    ui.run_with(app, title=TITLE, storage_secret=storage_secret, show_welcome_message=False,
                reconnect_timeout=10.0, favicon="⚙", unocss="wind3")  # fmt: skip
    _state["mounted"] = True


def _mount_again(app: FastAPI) -> None:
    from contextlib import asynccontextmanager

    from nicegui import core
    from nicegui.nicegui import _shutdown, _startup

    app.mount("/", core.app)
    main_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(parent: FastAPI):  # noqa: ANN202 - as ui.run_with does
        await _startup()
        async with main_lifespan(parent) as state:
            yield state
        await _shutdown()

    app.router.lifespan_context = lifespan


# --- who is logged in -----------------------------------------------------------------------


def session_token() -> str | None:
    """The browser's session token (read on the event loop: it needs the UI context)."""
    return nicegui_app.storage.user.get(SESSION_KEY)


def user_for(token: str | None) -> UserLike | None:
    """The user of a session token (a directory lookup: call it in a worker thread)."""
    users = ctx().users
    if not token or users is None:
        return None
    return users.session_user(token)


async def current_user() -> UserLike | None:
    return await run.io_bound(user_for, session_token())


def login_redirect(path: str) -> RedirectResponse:
    return RedirectResponse(f"/login?next={quote(path)}", status_code=303)


def page_frame(title: str, user: UserLike) -> None:
    """Header with navigation (plain links: Tab and Enter work), user and logout."""
    ui.page_title(f"{title} · {TITLE}")
    ui.add_css(_CSS)
    with ui.header().classes("items-center gap-4 px-4 py-2 bg-slate-800"):
        ui.label(TITLE).classes("text-lg font-bold")
        with ui.element("nav").props('aria-label="Main"').classes("flex gap-4"):
            for text, href in (("Fleet", "/"), ("Alarms", "/alarms"), ("Maintenance", "/maintenance"),
                               ("History", "/history")):  # fmt: skip
                ui.link(text, href).classes("text-white")
        ui.space()
        ui.label(f"{user.username}").props('aria-label="Logged in user"')
        ui.button("Log out", on_click=_logout).props("flat color=white")
    # not immediate: a timer that starts at once waits for the browser's connection, and
    # NiceGUI then sends the page as built so far while the page function still awaits
    # its data (the rest would follow over the websocket, a second later)
    ui.timer(SESSION_CHECK_S, _check_session, immediate=False)


async def _check_session() -> None:
    """An open page notices a logout elsewhere, an expiry or a disabled user."""
    if await current_user() is None:
        ui.navigate.to("/login")


async def _logout() -> None:
    token = nicegui_app.storage.user.pop(SESSION_KEY, None)
    users = ctx().users
    if token and users is not None:
        await run.io_bound(users.end_session, token)
    ui.navigate.to("/login")


def guarded(path: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``@ui.page(path)`` that sends a visitor without a valid session to the login."""

    def decorate(build: Callable[..., Any]) -> Callable[..., Any]:
        async def page(**kwargs: Any) -> Any:
            user = await current_user()
            if user is None:
                here = path.format(**kwargs) if kwargs else path
                return login_redirect(here)
            return await build(user, **kwargs)

        page.__name__ = build.__name__
        page.__signature__ = _without_user(build)  # type: ignore[attr-defined]
        return ui.page(path)(page)

    return decorate


def _without_user(build: Callable[..., Any]) -> Any:
    import inspect

    sig = inspect.signature(build)
    params = [p for name, p in sig.parameters.items() if name != "user"]
    return sig.replace(parameters=params)


_CSS = """
.program-line { font-family: ui-monospace, monospace; white-space: pre; font-size: 12px; line-height: 18px; padding: 0 6px; }
.program-line.current { background: #fde047; font-weight: 600; }
.value-card { min-width: 8.5rem; }
"""
