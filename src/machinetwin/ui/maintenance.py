"""Maintenance page: work orders, opened from alarms (alarms page) or by hand, assigned,
commented and closed with what was done; each shows its alarm's guide.

The roles are those of the REST routes (hub/maintenance_api.py): operators open and
comment, maintainers assign and close; the page shows only the actions the logged-in
user may take, and the book checks nothing twice: a closed order refuses another
close, whatever the page showed.
"""

from __future__ import annotations

import time
from typing import Any

from nicegui import run, ui

from ..hub.auth import Role
from ..hub.maintenance import WorkOrder, WorkOrderBook, WorkOrderError, WorkOrderState
from .alarms import machine_ids
from .app import ctx, guarded, page_frame
from .context import UserLike

REFRESH_S = 5.0
STATES = {"open": "Open and assigned", "closed": "Closed", "all": "All"}


def book() -> WorkOrderBook | None:
    return ctx().maintenance


def may(user: UserLike, role: Role) -> bool:
    return int(user.role) >= int(role)


def list_orders(state: str) -> list[WorkOrder]:
    b = book()
    if b is None:
        return []
    orders = b.orders(limit=500)
    if state == "open":
        return [o for o in orders if o.state is not WorkOrderState.CLOSED]
    if state == "closed":
        return [o for o in orders if o.state is WorkOrderState.CLOSED]
    return orders


def _when(t: float | None) -> str:
    return "–" if t is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


@guarded("/maintenance")
async def maintenance_page(user: UserLike, order: int | None = None) -> None:
    page_frame("Maintenance", user)
    view = {"state": "open" if order is None else "all"}
    with ui.element("main").classes("w-full flex flex-col gap-4"):
        ui.label("Maintenance").classes("text-h5").props('role="heading" aria-level="1"')
        if book() is None:
            ui.label("Work orders are not kept on this hub.")
            return
        with ui.row().classes("items-end gap-4"):
            ui.select(STATES, value=view["state"], label="Work orders",
                      on_change=lambda e: (view.update(state=e.value), refresh())).classes("w-56")  # fmt: skip
            if may(user, Role.OPERATOR):
                ui.button("New work order", on_click=lambda: new_dialog.open()).props(
                    'outline data-testid="wo-new"'
                )
        listing = ui.column().classes("w-full gap-3").props('data-testid="wo-list"')
    new_dialog = _new_order_dialog(user, lambda: refresh())
    shown: dict[str, Any] = {"key": None}

    async def refresh_now() -> None:
        orders = await run.io_bound(list_orders, view["state"])
        key = [(o.id, o.state, len(o.log), o.assignee) for o in orders]
        if key == shown["key"]:
            return
        shown["key"] = key
        listing.clear()
        with listing:
            if not orders:
                ui.label("No work orders.").props('data-testid="wo-empty"')
            for o in orders:
                _order_card(o, user, expanded=o.id == order, changed=refresh)

    def refresh() -> None:
        shown["key"] = None
        ui.timer(0, refresh_now, once=True)

    await refresh_now()
    ui.timer(REFRESH_S, refresh_now)


def _order_card(o: WorkOrder, user: UserLike, expanded: bool, changed: Any) -> None:
    state_colour = {"open": "orange", "assigned": "blue", "closed": "green"}[str(o.state)]
    title = f"#{o.id} {o.machine}: {o.title}"
    with (
        ui.expansion(title, value=expanded)
        .classes("w-full border rounded")
        .props(f'data-testid="wo-{o.id}" header-class="text-subtitle1"')
    ):
        with ui.row().classes("gap-4 items-center"):
            ui.badge(str(o.state), color=state_colour).props(f'data-testid="wo-{o.id}-state"')
            ui.label(f"priority {o.priority}")
            ui.label(f"opened {_when(o.created_at)} by {o.created_by}")
            if o.assignee:
                ui.label(f"assigned to {o.assignee}")
            if o.alarm_code:
                ui.label(f"alarm {o.alarm_code} (#{o.alarm_id})")
        ui.label(o.description).classes("whitespace-pre-wrap text-sm").props(
            f'data-testid="wo-{o.id}-description"'
        )
        if o.resolution:
            ui.label(f"Resolution ({o.closed_by}, {_when(o.closed_at)}): {o.resolution}")\
                .classes("font-medium").props(f'data-testid="wo-{o.id}-resolution"')  # fmt: skip
        with ui.column().classes("gap-0 text-sm"):
            for e in o.log:
                ui.label(f"{_when(e.at)} {e.by} {e.action}: {e.text}")
        _actions(o, user, changed)


def _actions(o: WorkOrder, user: UserLike, changed: Any) -> None:
    with ui.row().classes("items-end gap-2 w-full"):
        text = (
            ui.input("Comment, or what was done")
            .classes("grow")
            .props(f'data-testid="wo-{o.id}-text"')
        )

        async def act(action: str) -> None:
            value = (text.value or "").strip()
            b = book()
            assert b is not None
            try:
                if action == "comment":
                    await run.io_bound(b.comment, o.id, value, user.username)
                elif action == "assign":
                    await run.io_bound(b.assign, o.id, value or user.username, user.username)
                else:
                    await run.io_bound(b.close_order, o.id, value, user.username)
            except WorkOrderError as exc:
                ui.notify(str(exc), type="negative")
                return
            ui.notify(f"Work order {o.id}: {action} done", type="positive")
            changed()

        if may(user, Role.OPERATOR):
            ui.button("Comment", on_click=lambda: act("comment")).props(
                f'flat data-testid="wo-{o.id}-comment"'
            )
        if may(user, Role.MAINTAINER) and o.state is not WorkOrderState.CLOSED:
            ui.button("Assign (to the name typed, or me)", on_click=lambda: act("assign"))\
                .props(f'flat data-testid="wo-{o.id}-assign"')  # fmt: skip
            ui.button("Close with this resolution", on_click=lambda: act("close"))\
                .props(f'color=positive data-testid="wo-{o.id}-close"')  # fmt: skip


def _new_order_dialog(user: UserLike, changed: Any) -> ui.dialog:
    with ui.dialog() as dialog, ui.card().classes("w-[32rem]"):
        ui.label("New work order").classes("text-subtitle1").props('role="heading" aria-level="2"')
        machine = ui.input("Machine id").classes("w-full").props('data-testid="wo-new-machine"')
        title = ui.input("Title").classes("w-full").props('data-testid="wo-new-title"')
        description = ui.textarea("Description").classes("w-full")
        priority = ui.select(["low", "normal", "high", "urgent"], value="normal", label="Priority")

        async def create() -> None:
            b = book()
            assert b is not None
            if (machine.value or "").strip() not in await run.io_bound(machine_ids):
                ui.notify(f"unknown machine {machine.value!r}", type="negative")
                return
            try:
                await run.io_bound(b.open, (machine.value or "").strip(), title.value or "",
                                   description.value or "", user.username, priority=priority.value)  # fmt: skip
            except WorkOrderError as exc:
                ui.notify(str(exc), type="negative")
                return
            dialog.close()
            changed()

        with ui.row().classes("justify-end w-full"):
            ui.button("Cancel", on_click=dialog.close).props("flat")
            ui.button("Open", on_click=create).props('data-testid="wo-new-open"')
    return dialog
