"""A running hub with three virtual machines, and a Chromium driven by Playwright.

The hub (embedded broker, DuckDB store, users, API and web UI) and three sites run in
one background thread with their own event loop, exactly as ``make demo`` runs them,
on a short test program so that lines advance every second or two. Tests reach the
virtual machines through ``hub_env.adapters`` to inject faults.

Chromium is Debian's (``/usr/bin/chromium``, installed by ``make system-deps``): the
tests skip without it, and fail under CI=true.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ci_env import running_in_ci
from machinetwin.demo import Demo, Site
from machinetwin.hub.broker import free_port

CHROMIUM = os.environ.get("MACHINETWIN_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "ui"
PROGRAM = Path(__file__).resolve().parent / "programs" / "fast.ngc"
# WebGL without a GPU: SwiftShader, which headless Chromium enables only when asked.
CHROMIUM_ARGS = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--no-sandbox"]

SITES = tuple(
    Site(name, machine_id, km, (str(PROGRAM),), ())
    for name, machine_id, km in (("Harbin", "harbin-vmc-1", 870.0),
                                 ("Tianjin", "tianjin-vmc-1", 460.0),
                                 ("Dalian", "dalian-vmc-1", 30.0))
)  # fmt: skip


@pytest.fixture(scope="session")
def chromium() -> str:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        message = f"Chromium not found at {CHROMIUM}: run `sudo make system-deps` (apt chromium)"
        if running_in_ci():
            pytest.fail(f"{message}; the UI tests must run in CI")
        pytest.skip(message)
    return CHROMIUM


@dataclass
class HubEnv:
    demo: Demo
    loop: asyncio.AbstractEventLoop
    url: str
    password: str

    @property
    def store(self):  # noqa: ANN201 - the hub's DuckDBStore
        return self.demo.hub.store

    def call(self, fn, *args):  # noqa: ANN001, ANN002, ANN201
        """Run ``fn`` on the hub's loop (where the virtual machines step) and wait."""
        done = threading.Event()
        box: dict = {}

        def run() -> None:
            try:
                box["value"] = fn(*args)
            except BaseException as exc:  # handed back to the test thread
                box["error"] = exc
            done.set()

        self.loop.call_soon_threadsafe(run)
        assert done.wait(10), "the hub's event loop did not answer within 10 s"
        if "error" in box:
            raise box["error"]
        return box.get("value")


# One hub with its three machines and one Chromium for every test of tests/ui: package
# scope (this directory is a package for it) ends them after the last UI test, so they
# do not run on beside the rest of the suite.
@pytest.fixture(scope="package")
def hub_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubEnv]:
    port = free_port()
    demo = Demo(tmp_path_factory.mktemp("ui-hub") / "data", api_port=port, sites=SITES)
    ready = threading.Event()
    state: dict = {}

    async def main() -> None:
        state["loop"] = asyncio.get_running_loop()
        state["stop"] = asyncio.Event()
        try:
            await demo.start()
            ready.set()
            while not state["stop"].is_set():
                demo.check()
                await asyncio.sleep(0.2)
        except BaseException as exc:
            state["error"] = exc
            ready.set()
        finally:
            await demo.stop()

    thread = threading.Thread(target=asyncio.run, args=(main(),), name="ui-hub", daemon=True)
    thread.start()
    assert ready.wait(60), "the hub did not start within 60 s"
    if "error" in state:
        raise state["error"]
    url = f"http://127.0.0.1:{port}"
    _wait_serving(url)
    assert demo.hub.admin_password, "a fresh hub must generate the admin password"
    env = HubEnv(demo, state["loop"], url, demo.hub.admin_password)
    _wait_all_online(env)
    yield env
    state["loop"].call_soon_threadsafe(state["stop"].set)
    thread.join(30)


def _wait_serving(url: str) -> None:
    deadline = time.monotonic() + 90  # NiceGUI's first start imports a lot on a loaded box
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/login", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url}/login did not answer within 90 s")


def _wait_all_online(env: HubEnv) -> None:
    ingest = env.demo.hub.ingest
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with ingest.lock:
            online = {m for m, s in ingest.live.items() if s.online and s.batches > 5}
        if online >= {s.machine_id for s in SITES}:
            return
        time.sleep(0.2)
    raise AssertionError(f"not every machine came online within 30 s: {sorted(online)}")


@pytest.fixture(scope="package")
def browser(chromium: str):  # noqa: ANN201
    from playwright.sync_api import expect, sync_playwright

    # a loaded CI box answers slower than Playwright's 5 s default for assertions
    expect.set_options(timeout=15_000)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def log_in(page, env: HubEnv) -> None:  # noqa: ANN001 - a Playwright Page
    """Log in with the keyboard only: type, Tab, type, Enter."""
    page.goto(f"{env.url}/login")
    page.get_by_label("User name").focus()
    page.keyboard.type("admin")
    page.keyboard.press("Tab")
    page.keyboard.type(env.password)
    page.keyboard.press("Enter")
    # the session exists once the fleet page's response came: no need to wait for it
    # to load (which a loaded CI box can take long for)
    page.wait_for_url(f"{env.url}/", timeout=30_000, wait_until="commit")


@pytest.fixture(scope="package")
def session_context(browser, hub_env: HubEnv):  # noqa: ANN001, ANN201
    """A browser context (1280 x 800) that is logged in."""
    context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    page = context.new_page()
    log_in(page, hub_env)
    page.close()
    yield context
    context.close()


@pytest.fixture
def page(session_context):  # noqa: ANN001, ANN201
    p = session_context.new_page()
    p.set_default_timeout(20_000)
    yield p
    p.close()
