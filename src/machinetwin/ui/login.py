"""The login page: the hub's user directory checks the password, a session is kept."""

from __future__ import annotations

from typing import Any

from fastapi.responses import RedirectResponse
from nicegui import app as nicegui_app
from nicegui import run, ui

from .app import SESSION_KEY, TITLE, ctx, current_user

# --------------------------------------------------------------------------------


@ui.page("/login")
async def login_page(next: str = "/") -> Any:  # noqa: A002 - the query parameter's name
    target = next if next.startswith("/") and not next.startswith("//") else "/"
    if await current_user() is not None:
        return RedirectResponse(target, status_code=303)
    ui.page_title(f"Log in · {TITLE}")

    async def attempt() -> None:
        users = ctx().users
        if users is None:
            message.set_text("No user directory is configured on this hub: nobody can log in.")
            return
        found = await run.io_bound(users.authenticate, username.value.strip(), password.value)
        if found is None:
            message.set_text("Wrong user name or password.")
            password.set_value("")
            return
        token = await run.io_bound(users.create_session, found)
        nicegui_app.storage.user[SESSION_KEY] = token
        ui.navigate.to(target)

    with ui.card().classes("absolute-center w-80"), ui.element("form").classes("w-full") as form:
        form.on("submit.prevent", attempt)
        ui.label(f"{TITLE} — log in").classes("text-h6").props('role="heading" aria-level="1"')
        username = (
            ui.input("User name")
            .props("autofocus autocomplete=username name=username")
            .classes("w-full")
        )
        password = (
            ui.input("Password", password=True, password_toggle_button=True)
            .props("autocomplete=current-password name=password")
            .classes("w-full")
        )
        message = ui.label("").classes("text-negative").props('role="alert" aria-live="assertive"')
        ui.button("Log in").props("type=submit").classes("w-full")
    return None
