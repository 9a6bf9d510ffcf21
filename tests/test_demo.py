"""The one-command demo runs end to end: three sites report to the hub through their
links, the hub serves the web UI, and the demo prints where and how to log in."""

from __future__ import annotations

import asyncio
import io
import re
import threading
from pathlib import Path

import httpx
from rich.console import Console

from machinetwin.demo import SITES, run_demo
from machinetwin.hub.broker import free_port


def run(coro) -> object:  # noqa: ANN001
    """``asyncio.run`` in a thread of its own: Playwright's sync API (the UI tests of
    the same session) keeps an event loop running in the main thread."""
    box: dict = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # handed to the test's thread
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


async def _serving(client: httpx.AsyncClient, timeout_s: float = 15.0) -> None:
    """The login has been printed; the web server may take a moment more to answer."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            await client.get("/healthz")
            return
        except httpx.TransportError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)


def test_demo_serves_the_ui_and_prints_the_login(tmp_path: Path) -> None:
    port = free_port()
    seen: dict = {}
    out = io.StringIO()

    async def scenario() -> None:
        task = asyncio.create_task(
            run_demo(
                tmp_path / "demo",
                api_port=port,
                duration_s=12.0,  # counted from when it printed the login
                console=Console(file=out, width=200),
            )  # fmt: skip
        )
        password = None
        for _ in range(900):  # a loaded CI box takes long to start three sites and the UI
            password = re.search(r"user: +admin\npassword: +(\S+)", out.getvalue())
            if password or task.done():
                break
            await asyncio.sleep(0.1)
        printed = out.getvalue()
        seen["printed"] = printed
        assert password, f"the demo did not print the login:\n{printed}"
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            await _serving(client)
            seen["anonymous"] = (await client.get("/api/machines")).status_code
            seen["page"] = await client.get("/")  # not logged in: the login page
            seen["login_page"] = await client.get("/login")
            login = await client.post(
                "/api/login", json={"username": "admin", "password": password.group(1)}
            )
            seen["login"] = login.status_code
            for _ in range(150):  # data flows from all three sites within seconds
                seen["ingest"] = (await client.get("/api/ingest")).json()
                if seen["ingest"]["stored"] > 3 * 20:
                    break
                await asyncio.sleep(0.1)
            seen["machines"] = (await client.get("/api/machines")).json()
        await task

    run(scenario())
    assert f"http://127.0.0.1:{port}/" in seen["printed"]
    assert seen["anonymous"] == 401
    assert seen["page"].status_code == 303 and "/login" in seen["page"].headers["location"]
    assert seen["login_page"].status_code == 200 and "<html" in seen["login_page"].text.lower()
    assert seen["login"] == 200
    machines = {m["machine_id"]: m for m in seen["machines"]}
    assert set(machines) == {site.machine_id for site in SITES}
    assert all(m["live"]["online"] for m in machines.values())
    assert seen["ingest"]["stored"] > 3 * 20  # batches every 100 ms from each site
    assert seen["ingest"]["rejected_total"] == 0


def test_each_demo_start_generates_a_new_password(tmp_path: Path) -> None:
    passwords, secrets = [], []
    for _ in range(2):
        out = io.StringIO()
        run(run_demo(tmp_path / "demo", api_port=free_port(), duration_s=0.5,
                             console=Console(file=out, width=200)))  # fmt: skip
        found = re.search(r"user: +admin\npassword: +(\S+)", out.getvalue())
        assert found, out.getvalue()
        passwords.append(found.group(1))
        secret = tmp_path / "demo" / "ui-secret"  # the UI's cookie-signing key
        assert secret.stat().st_mode & 0o077 == 0
        secrets.append(secret.read_text())
    assert passwords[0] != passwords[1] and all(len(p) >= 16 for p in passwords)
    assert secrets[0] != secrets[1] and all(len(s) >= 32 for s in secrets)


def test_demo_sites_obey_signed_commands_only_with_a_permit(tmp_path: Path) -> None:
    """The demo wires remote control end to end: the hub signs; without a permit granted
    at the site the hub refuses a state command (the edge reports no permit), and once
    the person at the site grants one the command runs."""
    from machinetwin.edge.permit import PermitStore

    port = free_port()
    out = io.StringIO()
    states: dict[str, str] = {}

    async def answer_of(client: httpx.AsyncClient, machine: str, issued: httpx.Response) -> dict:
        assert issued.status_code in (200, 201, 202), issued.text
        command_id = issued.json()["id"]
        for _ in range(100):  # the answer crosses the emulated link twice
            got = (await client.get(f"/api/machines/{machine}/commands/{command_id}")).json()
            if got["state"] != "sent":
                return got
            await asyncio.sleep(0.1)
        raise AssertionError(f"no answer from {machine} to {issued.json()}")

    async def scenario() -> None:
        task = asyncio.create_task(run_demo(tmp_path / "demo", api_port=port, duration_s=20.0,
                                            console=Console(file=out, width=300)))  # fmt: skip
        for _ in range(900):
            if "machinetwin edge permit" in out.getvalue() or task.done():
                break
            await asyncio.sleep(0.1)
        printed = out.getvalue()
        password = re.search(r"user: +admin\npassword: +(\S+)", printed).group(1)
        hint = re.search(r"machinetwin edge permit (\S+) --minutes \d+ --file (\S+)", printed)
        assert hint, f"the demo did not say how to permit remote operation:\n{printed}"
        machine, permit_file = hint.group(1), Path(hint.group(2))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            await _serving(client)
            login = {"username": "admin", "password": password}
            assert (await client.post("/api/login", json=login)).status_code == 200
            for _ in range(150):  # until the site's birth and permit report are in
                known = {m["machine_id"]: m for m in (await client.get("/api/machines")).json()}
                if known.get(machine, {}).get("live", {}).get("online"):
                    break
                await asyncio.sleep(0.1)
            override = {"name": "feed_override", "args": {"percent": 50}}
            refused = await client.post(f"/api/machines/{machine}/commands", json=override)
            states["no_permit"] = str(refused.status_code)
            states["no_permit_reason"] = refused.text
            PermitStore(permit_file).grant(machine, 5)
            for _ in range(100):  # the edge reports the new permit within a second or two
                answer = await client.post(f"/api/machines/{machine}/commands", json=override)
                if answer.status_code != 409:
                    break
                await asyncio.sleep(0.1)
            states["permit"] = (await answer_of(client, machine, answer))["state"]
            states["audit"] = str((await client.get("/api/audit")).json())
        await task

    run(scenario())
    assert states["no_permit"] == "409"  # refused at the hub: no permit reported
    assert "permit" in states["no_permit_reason"]
    assert states["permit"] in ("accepted", "done")
    assert "feed_override" in states["audit"]
