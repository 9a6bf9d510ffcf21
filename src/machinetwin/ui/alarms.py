"""Alarms page: active alarms and their history across the fleet, filter, acknowledge.

Acknowledging records the logged-in user and a comment in the store
(``store.update_alarm``); the user is never typed in, it is who is logged in.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from nicegui import run, ui

from ..hub.auth import Role
from ..hub.store import StoredAlarm
from .app import ctx, guarded, page_frame
from .context import UserLike, alarm_code

REFRESH_S = 2.0
MAX_ROWS = 500
STATES = {"active": "Active", "all": "Active and cleared", "cleared": "Cleared"}
SEVERITIES = ("INFO", "WARNING", "FAULT", "CRITICAL")

COLUMNS = [
    {"name": c, "label": label, "field": c, "align": "left", "sortable": c != "actions"}
    for c, label in (("raised", "Raised"), ("machine", "Machine"), ("code", "Code"),
                     ("severity", "Severity"), ("message", "Message"), ("state", "State"),
                     ("ack", "Acknowledged"), ("actions", ""))
]  # fmt: skip

_ACTIONS = """
<q-td :props="props">
  <q-btn dense outline size="sm" color="primary" label="Acknowledge"
         :aria-label="'Acknowledge alarm ' + props.row.id + ' (' + props.row.code + ' on ' + props.row.machine + ')'"
         :data-testid="'ack-' + props.row.id"
         @click="() => $parent.$emit('ack', props.row)" />
  <q-btn dense flat size="sm" color="primary" label="Work order" class="q-ml-xs"
         :aria-label="'Work order for alarm ' + props.row.id"
         :data-testid="'wo-from-' + props.row.id"
         @click="() => $parent.$emit('workorder', props.row)" />
</q-td>"""


@dataclass
class AlarmFilter:
    machine: str | None = None
    state: str = "active"
    severity: str | None = None
    text: str = ""

    def matches(self, a: StoredAlarm) -> bool:
        if self.severity and a.alarm.severity.name != self.severity:
            return False
        if self.text:
            needle = self.text.lower()
            hay = (
                f"{a.machine} {alarm_code(a.alarm.code)} {a.alarm.message} {a.alarm.source}".lower()
            )
            if needle not in hay:
                return False
        return True


def query_alarms(f: AlarmFilter) -> list[dict[str, Any]]:
    active = {"active": True, "cleared": False}.get(f.state)
    alarms = ctx().store.alarms(machine=f.machine or None, active=active)
    return [row(a) for a in alarms if f.matches(a)][:MAX_ROWS]


def row(a: StoredAlarm) -> dict[str, Any]:
    al = a.alarm
    ack = "–"
    if a.acknowledged_by:
        ack = f"{a.acknowledged_by}" + (f": {a.comment}" if a.comment else "")
    return {
        "id": a.id,
        "raised": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(al.raised_at)),
        "machine": a.machine,
        "code": alarm_code(al.code),
        "severity": al.severity.name,
        "message": al.message,
        "state": "active" if a.active else "cleared",
        "ack": ack,
    }


async def work_order_for(row: dict[str, Any], user: UserLike) -> None:
    """Open (or find) the alarm's work order and go to it on the maintenance page."""
    book = ctx().maintenance
    if book is None or int(user.role) < int(Role.OPERATOR):
        ui.notify("Opening work orders needs the operator role or above", type="warning")
        return
    alarm = await run.io_bound(find_alarm, row["machine"], int(row["id"]))
    if alarm is None:
        ui.notify(f"Alarm {row['id']} is gone", type="negative")
        return
    order = await run.io_bound(book.open_from_alarm, alarm, user.username)
    ui.navigate.to(f"/maintenance?order={order.id}")


def find_alarm(machine: str, alarm_id: int) -> StoredAlarm | None:
    return next((a for a in ctx().store.alarms(machine=machine) if a.id == alarm_id), None)


def machine_ids() -> list[str]:
    c = ctx()
    known = {d.machine_id for d in c.store.machines()} | set(c.snapshot().machines)
    return sorted(known)


@guarded("/alarms")
async def alarms_page(user: UserLike) -> None:
    page_frame("Alarms", user)
    f = AlarmFilter()
    machines = await run.io_bound(machine_ids)
    with ui.element("main").classes("w-full flex flex-col gap-4"):
        ui.label("Alarms").classes("text-h5").props('role="heading" aria-level="1"')
        with ui.row().classes("items-end gap-4").props('role="search" aria-label="Filter alarms"'):
            ui.select({"": "All machines", **{m: m for m in machines}}, value="", label="Machine",
                      on_change=lambda e: (setattr(f, "machine", e.value or None), refresh()))\
                .classes("w-56")  # fmt: skip
            ui.select(STATES, value=f.state, label="State",
                      on_change=lambda e: (setattr(f, "state", e.value), refresh())).classes("w-48")  # fmt: skip
            ui.select({"": "Any severity", **{s: s for s in SEVERITIES}}, value="", label="Severity",
                      on_change=lambda e: (setattr(f, "severity", e.value or None), refresh()))\
                .classes("w-40")  # fmt: skip
            ui.input("Search code, message, machine",
                     on_change=lambda e: (setattr(f, "text", e.value or ""), refresh()))\
                .props("clearable").classes("w-72")  # fmt: skip
        table = ui.table(rows=[], columns=COLUMNS, row_key="id", pagination=25)
        table.props('dense flat aria-label="Alarms" data-testid="alarms-table"').classes("w-full")
        table.add_slot("body-cell-actions", _ACTIONS)

    with ui.dialog() as dialog, ui.card().classes("w-[28rem]"):
        title = ui.label("").classes("text-subtitle1").props('role="heading" aria-level="2"')
        comment = ui.textarea("Comment (what was done, why)").props("autofocus").classes("w-full")
        with ui.row().classes("justify-end w-full"):
            ui.button("Cancel", on_click=dialog.close).props("flat")
            confirm = ui.button("Acknowledge").props('data-testid="ack-confirm"')
    pending: dict[str, Any] = {}

    def open_ack(e: Any) -> None:
        pending["row"] = e.args
        title.set_text(f"Acknowledge {e.args['code']} on {e.args['machine']}")
        comment.set_value("")
        dialog.open()

    async def acknowledge() -> None:
        alarm_id = int(pending["row"]["id"])
        text = (comment.value or "").strip() or None
        await run.io_bound(ctx().store.update_alarm, alarm_id, acknowledged_by=user.username,
                           comment=text)  # fmt: skip
        dialog.close()
        ui.notify(f"Alarm {alarm_id} acknowledged", type="positive")
        await refresh_now()

    confirm.on_click(acknowledge)
    table.on("ack", open_ack)
    table.on("workorder", lambda e: work_order_for(e.args, user))

    async def refresh_now() -> None:
        rows = await run.io_bound(query_alarms, f)
        if rows != table.rows:
            table.rows = rows
            table.update()

    def refresh() -> None:
        ui.timer(0, refresh_now, once=True)

    await refresh_now()
    ui.timer(REFRESH_S, refresh_now)
