"""Browser tests of the web UI against a running hub with three virtual machines.

In order of the acceptance list: log in; the fleet shows the three machines with
values that change; the machine page's 3D canvas is drawn and the highlighted line
advances; an injected fault raises an alarm that is acknowledged; a history range
loads and its export equals the store's rows; layout at 1280 x 800 and 1920 wide.
Screenshots go to artifacts/ui/.
"""

from __future__ import annotations

import csv
import io
import re
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect

from machinetwin.machine.faults import parse_fault
from machinetwin.model import AlarmCode

from .conftest import SITES, HubEnv

pytestmark = [pytest.mark.service, pytest.mark.slow]
MACHINES = sorted(s.machine_id for s in SITES)


def _table_rows(page) -> dict[str, list[str]]:  # noqa: ANN001
    # rows that hold a machine (virtual scrolling adds empty spacer rows)
    rows = page.locator("[data-testid=fleet-table] tbody tr").filter(has=page.locator("a"))
    out = {}
    for k in range(rows.count()):
        cells = [c.strip() for c in rows.nth(k).locator("td").all_inner_texts()]
        out[cells[0]] = cells
    return out


def test_login_is_required_and_works_with_the_keyboard(browser, hub_env: HubEnv) -> None:  # noqa: ANN001
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(f"{hub_env.url}/machine/harbin-vmc-1")
    assert "/login" in page.url  # not logged in: sent to the login
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password", exact=True).fill("not-the-password")
    page.keyboard.press("Enter")
    page.get_by_role("alert").filter(has_text="Wrong user name or password").wait_for()
    page.get_by_label("Password", exact=True).focus()
    page.keyboard.type(hub_env.password)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{hub_env.url}/machine/harbin-vmc-1")  # back where it was going
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(re.compile(r".*/login.*"))
    page.goto(f"{hub_env.url}/")
    assert "/login" in page.url  # the session ended
    context.close()
    # where the browser sessions are kept is the owner's only
    storage = hub_env.demo.data_dir / "ui-storage"
    assert storage.is_dir() and storage.stat().st_mode & 0o077 == 0


def test_fleet_shows_three_machines_with_changing_values(
    page, hub_env: HubEnv, artifacts: Path
) -> None:  # noqa: ANN001
    page.goto(f"{hub_env.url}/")
    page.locator("[data-testid=fleet-table] tbody tr a").nth(len(MACHINES) - 1).wait_for()
    first = _table_rows(page)
    assert sorted(first) == MACHINES
    assert all(row[2] == "online" for row in first.values())
    changed = set()
    deadline = time.monotonic() + 15
    while changed != set(MACHINES) and time.monotonic() < deadline:
        time.sleep(0.5)
        now = _table_rows(page)
        # line, spindle load or latency: what moves while a program runs
        changed |= {m for m in MACHINES if now[m][5:9] != first[m][5:9]}
    assert changed == set(MACHINES), f"values did not change for {set(MACHINES) - changed}"
    assert page.get_by_role("img", name=re.compile("Map of the sites")).is_visible()
    page.screenshot(path=str(artifacts / "fleet.png"))


def _non_background_fraction(png: bytes, background: tuple[int, int, int]) -> float:
    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)
    differs = np.abs(image - np.asarray(background, dtype=np.int16)).sum(axis=2) > 24
    return float(differs.mean())


def _local(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _current_line(page) -> int | None:  # noqa: ANN001
    current = page.locator("[data-testid=program-text] .current")
    if current.count() == 0:
        return None
    return int(current.first.get_attribute("data-line"))


def test_machine_page_draws_the_twin_and_follows_the_program(
    page, hub_env: HubEnv, artifacts: Path
) -> None:  # noqa: ANN001
    page.goto(f"{hub_env.url}/machine/tianjin-vmc-1")
    canvas = page.locator("[data-testid=twin-scene] canvas").first
    canvas.wait_for()
    page.locator("[data-testid=program-text] .current").wait_for()
    # the toolpath and the stock come with the first refresh, with the program's name
    expect(page.get_by_test_id("program-name")).to_contain_text("fast.ngc")
    time.sleep(0.3)  # the next animation frame draws them
    shot = canvas.screenshot()
    (artifacts / "machine-scene.png").write_bytes(shot)
    # the scene's background is #f1f5f9; machine box, stock, path and tool are not
    assert _non_background_fraction(shot, (0xF1, 0xF5, 0xF9)) > 0.01
    lines = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(set(lines)) < 3:
        line = _current_line(page)
        if line is not None and (not lines or line != lines[-1]):
            lines.append(line)
        time.sleep(0.2)
    assert len(set(lines)) >= 3, f"the highlighted line did not advance: {lines}"
    # the highlighted row is the program's text at that line
    line, text = page.locator("[data-testid=program-text] .current").evaluate(
        "e => [Number(e.dataset.line), e.textContent]"
    )
    program = (Path(__file__).parent / "programs" / "fast.ngc").read_text().splitlines()
    number, _, rest = text.strip().partition(" ")
    assert int(number) == line and rest.strip() == program[line - 1].strip()
    page.screenshot(path=str(artifacts / "machine.png"), full_page=True)


def _number(text: str) -> float:
    return float(re.search(r"[-+]?\d+\.\d+", text).group())


def test_machine_page_shows_the_machine_beside_its_simulated_twin(
    page, hub_env: HubEnv, artifacts: Path
) -> None:  # noqa: ANN001
    """The twin runs the program the machine runs, from where it started; a virtual
    machine of the same model keeps to its twin's path and pace."""
    page.goto(f"{hub_env.url}/machine/tianjin-vmc-1")
    note = page.get_by_test_id("twin-note")
    expect(note).to_contain_text("twin of fast.ngc from where the machine stood", timeout=30_000)
    cycle = _number(page.get_by_test_id("twin-cycle").inner_text())
    assert 5.0 < cycle < 60.0  # fast.ngc: a couple of dozen seconds
    table = page.get_by_test_id("twin-table")
    expect(table.locator("tbody tr")).to_have_count(8)
    deviations, offsets = [], []
    deadline = time.monotonic() + 8.0
    while time.monotonic() < deadline and len(deviations) < 3:
        dev = page.get_by_test_id("twin-deviation").inner_text()
        off = page.get_by_test_id("twin-offset").inner_text()
        if "mm now" in dev and ("twin" in off or "on time" in off):
            deviations.append(_number(dev))
            offsets.append(_number(off))
        time.sleep(0.5)
    assert deviations, "the panel never compared the machine with its twin"
    # same model, same program, same start: within the encoder noise, and in step
    assert max(deviations) < 0.05, f"deviation from the twin's path {deviations} mm"
    assert max(abs(o) for o in offsets) < 1.0, f"offsets {offsets} s"
    rows = {r[0]: r for r in (c.split("\t") for c in table.locator("tbody tr").all_inner_texts())}
    assert rows["Line"][1] == rows["Line"][2]  # matched on the same program line
    for axis in "XYZ":
        reported, simulated = float(rows[f"{axis} (mm)"][1]), float(rows[f"{axis} (mm)"][2])
        assert abs(reported - simulated) < 0.05
    page.get_by_test_id("twin-panel").screenshot(path=str(artifacts / "machine-twin.png"))


def test_injected_fault_raises_an_alarm_that_is_acknowledged(
    page, hub_env: HubEnv, artifacts: Path
) -> None:  # noqa: ANN001
    adapter = hub_env.demo.adapters["harbin-vmc-1"]
    # a broken tool, as the machine would report it: the fault starts now, in machine time
    hub_env.call(
        lambda: adapter.sim.faults.inject(parse_fault(f"tool_breakage:1@{adapter.sim.t:.3f}"))
    )
    page.goto(f"{hub_env.url}/alarms")
    row = page.locator("[data-testid=alarms-table] tbody tr").filter(has_text="harbin-vmc-1")
    row = row.filter(has_text="TOOL_BREAKAGE")
    row.first.wait_for(timeout=45_000)
    ack = row.first.locator("[data-testid^=ack-]")  # beside it: the work-order button
    alarm_id = int(ack.get_attribute("data-testid").removeprefix("ack-"))
    row.first.get_by_role("button", name=re.compile("Acknowledge alarm")).focus()
    page.keyboard.press("Enter")
    page.get_by_label("Comment (what was done, why)").fill("tool T1 replaced, part scrapped")
    page.get_by_role("button", name="Acknowledge", exact=True).click()
    page.get_by_text("admin: tool T1 replaced, part scrapped").wait_for()
    page.get_by_test_id("ack-confirm").wait_for(state="hidden")
    page.screenshot(path=str(artifacts / "alarms.png"))
    stored = next(a for a in hub_env.store.alarms(machine="harbin-vmc-1") if a.id == alarm_id)
    assert stored.alarm.code == AlarmCode.TOOL_BREAKAGE
    assert stored.acknowledged_by == "admin"
    assert stored.comment == "tool T1 replaced, part scrapped"


def test_history_loads_a_range_and_exports_the_store_rows(
    page, hub_env: HubEnv, artifacts: Path, tmp_path: Path
) -> None:  # noqa: ANN001
    page.goto(f"{hub_env.url}/history?machine=dalian-vmc-1")
    status = page.get_by_test_id("history-status")
    # a range that has settled (no batch still on its way into it, even from an edge
    # slowed down by a busy test machine) and that the machine filled from its start
    # (the hub may have started only just): 35 s to 15 s ago
    deadline = time.monotonic() + 40
    while not hub_env.store.query("dalian-vmc-1", ["x.pos"], time.time() - 36, time.time() - 34):
        assert time.monotonic() < deadline, "no data 35 s back after 40 s"
        time.sleep(1.0)
    end = float(int(time.time() - 15.0))
    page.get_by_test_id("history-range").click()
    page.get_by_role("option", name="Custom range").click()
    page.get_by_label("From (local time)").fill(_local(end - 20.0))
    page.get_by_label("To (local time)").fill(_local(end))
    page.get_by_test_id("history-load").click()
    page.wait_for_function(
        "t1 => Number(document.querySelector('[data-testid=history-status]')?.dataset.t1) === t1"
        " && Number(document.querySelector('[data-testid=history-status]').dataset.points) > 0",
        arg=end,
    )
    t0, t1 = float(status.get_attribute("data-t0")), float(status.get_attribute("data-t1"))
    points = int(status.get_attribute("data-points"))
    signals = ["spindle.load", "x.pos", "y.pos", "z.pos"]  # the page's default selection
    expected = hub_env.store.query("dalian-vmc-1", signals, t0, t1, 400)
    assert points == sum(int(s.count.sum()) for s in expected.values())
    page.screenshot(path=str(artifacts / "history.png"))
    t0, t1 = _zoom_in_requeries(page, t0, t1, hub_env)  # the export is of the range shown
    with page.expect_download() as info:
        page.get_by_test_id("export-csv").click()
    download = info.value
    exported = page.get_by_test_id("export-status")
    page.wait_for_function(
        "() => document.querySelector('[data-testid=export-status]')?.dataset.rows !== undefined"
    )
    # the range the page exported is the range it showed
    t0, t1 = float(exported.get_attribute("data-t0")), float(exported.get_attribute("data-t1"))
    assert (t0, t1) == (
        float(status.get_attribute("data-t0")),
        float(status.get_attribute("data-t1")),
    )
    got = tmp_path / download.suggested_filename
    download.save_as(got)
    reference = tmp_path / "reference.csv"
    n = hub_env.store.export("dalian-vmc-1", t0, t1, reference, "csv", signals)
    rows = list(csv.DictReader(io.StringIO(got.read_text())))
    want = list(csv.DictReader(io.StringIO(reference.read_text())))
    assert n > 0 and len(rows) == n
    assert rows == want
    assert {r["signal"] for r in rows} == set(signals)
    assert all(t0 <= float(r["t"]) < t1 for r in rows)


def _settle(status, quiet_s: float = 1.0) -> None:  # noqa: ANN001
    """Wait until the shown range stopped changing (zoom events come in a burst)."""
    last, since = None, time.monotonic()
    while time.monotonic() - since < quiet_s:
        now = (status.get_attribute("data-t0"), status.get_attribute("data-t1"))
        if now != last:
            last, since = now, time.monotonic()
        time.sleep(0.1)


def _zoom_in_requeries(page, t0: float, t1: float, hub_env: HubEnv) -> tuple[float, float]:  # noqa: ANN001
    """Wheel over the chart zooms in; the page asks the store again for the narrower
    range (finer detail), then the export below is of that range."""
    status = page.get_by_test_id("history-status")
    box = page.get_by_test_id("history-chart").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    for _ in range(4):
        page.mouse.wheel(0, -400)
        time.sleep(0.2)
    page.wait_for_function(
        "span => { const d = document.querySelector('[data-testid=history-status]').dataset;"
        " return Number(d.t1) - Number(d.t0) < span * 0.9; }",
        arg=t1 - t0,
    )
    _settle(status)
    z0, z1 = float(status.get_attribute("data-t0")), float(status.get_attribute("data-t1"))
    assert t0 <= z0 < z1 <= t1
    signals = ["spindle.load", "x.pos", "y.pos", "z.pos"]
    zoomed = hub_env.store.query("dalian-vmc-1", signals, z0, z1, 400)
    assert int(status.get_attribute("data-points")) == sum(
        int(s.count.sum()) for s in zoomed.values()
    )
    return z0, z1


@pytest.mark.parametrize("size", [(1280, 800), (1920, 1080)])
def test_pages_fit_the_screen_width(
    session_context, hub_env: HubEnv, artifacts: Path, size
) -> None:  # noqa: ANN001
    page = session_context.new_page()
    page.set_viewport_size({"width": size[0], "height": size[1]})
    for name, path in (("fleet", "/"), ("machine", "/machine/dalian-vmc-1"), ("alarms", "/alarms"),
                       ("history", "/history")):  # fmt: skip
        page.goto(f"{hub_env.url}{path}", wait_until="domcontentloaded")
        page.locator("main").first.wait_for()
        if name == "machine":  # what is added after the page shows is measured too
            page.get_by_test_id("twin-panel").wait_for()
        time.sleep(0.3)
        overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path} is {overflow} px wider than a {size[0]} px window"
        page.screenshot(path=str(artifacts / f"{name}-{size[0]}.png"))
    page.close()
