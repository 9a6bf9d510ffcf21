"""A bearing defect found by the analytics becomes an alarm with its explanation; a work
order is opened from it in the browser and closed with what was done."""

from __future__ import annotations

import re
from pathlib import Path

from machinetwin.hub.maintenance import WorkOrderState
from machinetwin.machine.faults import parse_fault
from machinetwin.model import AlarmCode

from .conftest import HubEnv

MACHINE = "tianjin-vmc-1"


def test_bearing_fault_alarm_to_closed_work_order(page, hub_env: HubEnv, artifacts: Path) -> None:  # noqa: ANN001
    adapter = hub_env.demo.adapters[MACHINE]

    def inject() -> None:
        # an outer-race defect from now on, and a vibration window every 2 s instead of
        # every minute, so that the monitor's three windows come within seconds
        adapter.sim.faults.inject(parse_fault(f"bearing_outer:1@{adapter.sim.t:.3f}"))
        adapter.sim.options.vibration_every_s = 2.0
        adapter.sim.next_vibration_at = adapter.sim.t

    def restore() -> None:
        adapter.sim.options.vibration_every_s = 60.0

    hub_env.call(inject)
    try:
        page.goto(f"{hub_env.url}/alarms")
        row = page.locator("[data-testid=alarms-table] tbody tr").filter(has_text=MACHINE)
        row = row.filter(has_text="BEARING_DEFECT").first
        row.wait_for(timeout=60_000)
    finally:
        hub_env.call(restore)
    text = row.inner_text()
    assert re.search(r"outer-race defect suspected on .* BPFO 3\.5\d× shaft speed", text), text
    page.screenshot(path=str(artifacts / "alarms-bearing.png"))

    row.get_by_role("button", name=re.compile("Work order for alarm")).click()
    page.wait_for_url(re.compile(r"/maintenance\?order=\d+"))
    order_id = int(page.url.rsplit("=", 1)[1])
    description = page.get_by_test_id(f"wo-{order_id}-description")
    description.wait_for()
    assert "Probable causes:" in description.inner_text()
    assert "Fatigue spall" in description.inner_text()  # the MT-220 guide

    page.get_by_test_id(f"wo-{order_id}-text").fill(
        "spindle bearings replaced, run-in done, vibration back to normal"
    )
    page.get_by_test_id(f"wo-{order_id}-close").click()
    page.get_by_test_id(f"wo-{order_id}-state").filter(has_text="closed").wait_for()
    page.screenshot(path=str(artifacts / "maintenance.png"))

    order = hub_env.demo.hub.maintenance.get(order_id)
    assert order.state is WorkOrderState.CLOSED and order.closed_by == "admin"
    assert order.alarm_code == AlarmCode.BEARING_DEFECT.value
    assert order.resolution.startswith("spindle bearings replaced")
    alarm = next(a for a in hub_env.store.alarms(machine=MACHINE) if a.id == order.alarm_id)
    assert alarm.alarm.code == AlarmCode.BEARING_DEFECT and "BPFO" in alarm.alarm.message
