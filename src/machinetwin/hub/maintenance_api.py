"""REST routes of maintenance, added to the hub's API by ``create_api(maintenance=...)``.

- ``GET /api/alarm-guides``, ``GET /api/alarm-guides/{code}`` (viewer): probable causes
  and checks for each alarm code.
- ``GET /api/work-orders`` (viewer): orders, newest first, by machine, state or alarm.
- ``POST /api/work-orders`` (operator): open an order by hand, or from an alarm
  (``alarm_id``; title and description then come from the alarm and its guide, and an
  alarm that already has an open order gets that order back, 200 instead of 201).
- ``GET /api/work-orders/{id}`` (viewer), ``POST .../comments`` (operator),
  ``POST .../assign`` and ``POST .../close`` (maintainer).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Response
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field

from .auth import Role, User
from .maintenance import (
    MAX_TEXT,
    MAX_TITLE,
    AlarmGuide,
    WorkOrder,
    WorkOrderBook,
    WorkOrderError,
    WorkOrderState,
    alarm_guide,
    alarm_guides,
)
from .store import Store, StoredAlarm

MachineCheck = Callable[[str], object]  # raises HTTPException(404) for an unknown machine
MAX_ID = 2**63 - 1  # SQLite's INTEGER: larger ids exist nowhere, and must not reach it
OrderId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="Work order id")]


class Problem(BaseModel):
    detail: str


def _answers(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The error answers a route documents (401 and 403 come from the login gate)."""
    what = {401: "Not logged in", 403: "The user's role is too low", 404: "Unknown order, alarm, code or machine",
            409: "The order is closed"}  # fmt: skip
    return {c: {"model": Problem, "description": what[c]} for c in (401, 403, *codes)}


class AlarmGuideOut(BaseModel):
    code: str
    title: str
    causes: list[str]
    checks: list[str]


class WorkOrderIn(BaseModel):
    machine: str = Field(min_length=1, max_length=128)
    alarm_id: int | None = Field(
        None, ge=0, le=MAX_ID, description="Open the order from this alarm"
    )
    title: str | None = Field(None, max_length=MAX_TITLE, description="Needed without alarm_id")
    description: str = Field("", max_length=MAX_TEXT)
    priority: str | None = Field(None, description="low, normal, high or urgent")


class TextIn(BaseModel):
    text: str = Field(min_length=1, max_length=MAX_TEXT)


class AssignIn(BaseModel):
    assignee: str = Field(min_length=1, max_length=64)


class LogEntryOut(BaseModel):
    at: float
    by: str
    action: str
    text: str


class WorkOrderOut(BaseModel):
    id: int
    machine: str
    title: str
    description: str
    priority: str
    state: str
    created_at: float
    created_by: str
    assignee: str | None
    alarm_id: int | None
    alarm_code: str | None
    closed_at: float | None
    closed_by: str | None
    resolution: str | None
    log: list[LogEntryOut]


def add_maintenance_routes(app: FastAPI, book: WorkOrderBook, store: Store,
                           require_machine: MachineCheck, require_role: Callable[[Role], Any]) -> None:  # fmt: skip
    viewer = Depends(require_role(Role.VIEWER))
    operator = Depends(require_role(Role.OPERATOR))
    maintainer = Depends(require_role(Role.MAINTAINER))

    @app.get("/api/alarm-guides", response_model=list[AlarmGuideOut], tags=["maintenance"],
             dependencies=[viewer], responses=_answers())  # fmt: skip
    def list_guides() -> list[AlarmGuideOut]:
        """The guide of every alarm code."""
        return [_guide_out(g) for g in alarm_guides().values()]

    @app.get("/api/alarm-guides/{code}", response_model=AlarmGuideOut, tags=["maintenance"],
             dependencies=[viewer], responses=_answers(404))  # fmt: skip
    def get_guide(code: str) -> AlarmGuideOut:
        """Probable causes (most likely first) and checks (cheapest first) for ``code``."""
        guide = alarm_guide(code)
        if guide is None:
            raise HTTPException(404, f"no guide for alarm code {code!r}")
        return _guide_out(guide)

    @app.get("/api/work-orders", response_model=list[WorkOrderOut], tags=["maintenance"],
             dependencies=[viewer], responses=_answers())  # fmt: skip
    def list_orders(machine: str | None = Query(None), state: WorkOrderState | None = Query(None),
                    alarm_id: int | None = Query(None, ge=0, le=MAX_ID),
                    limit: int = Query(200, ge=1, le=10_000)) -> list[WorkOrderOut]:  # fmt: skip
        """Work orders, newest first."""
        return [_order_out(o) for o in book.orders(machine, state, alarm_id, limit)]

    @app.post("/api/work-orders", response_model=WorkOrderOut, status_code=201, tags=["maintenance"],
              responses={200: {"model": WorkOrderOut, "description": "The alarm's open order"},
                         **_answers(404)})  # fmt: skip
    def open_order(body: WorkOrderIn, response: Response, user: User = operator) -> WorkOrderOut:
        """Open a work order, by hand or from an alarm."""
        require_machine(body.machine)
        with _refusals():
            if body.alarm_id is None:
                if not body.title:
                    raise WorkOrderError("title: needed for an order without alarm_id")
                order = book.open(body.machine, body.title, body.description, user.username,
                                  priority=body.priority or "normal")  # fmt: skip
            else:
                alarm = _find_alarm(store, body.machine, body.alarm_id)
                if any(o.state != WorkOrderState.CLOSED for o in book.orders(alarm_id=alarm.id)):
                    response.status_code = 200  # the alarm's open order, not a new one
                order = book.open_from_alarm(alarm, user.username, body.priority)
        return _order_out(order)

    @app.get("/api/work-orders/{order_id}", response_model=WorkOrderOut, tags=["maintenance"],
             dependencies=[viewer], responses=_answers(404))  # fmt: skip
    def get_order(order_id: OrderId) -> WorkOrderOut:
        with _refusals():
            return _order_out(book.get(order_id))

    @app.post("/api/work-orders/{order_id}/comments", response_model=WorkOrderOut,
              tags=["maintenance"], responses=_answers(404))  # fmt: skip
    def comment(order_id: OrderId, body: TextIn, user: User = operator) -> WorkOrderOut:
        with _refusals():
            return _order_out(book.comment(order_id, body.text, user.username))

    @app.post("/api/work-orders/{order_id}/assign", response_model=WorkOrderOut,
              tags=["maintenance"], responses=_answers(404, 409))  # fmt: skip
    def assign(order_id: OrderId, body: AssignIn, user: User = maintainer) -> WorkOrderOut:
        with _refusals():
            return _order_out(book.assign(order_id, body.assignee, user.username))

    @app.post("/api/work-orders/{order_id}/close", response_model=WorkOrderOut,
              tags=["maintenance"], responses=_answers(404, 409))  # fmt: skip
    def close(order_id: OrderId, body: TextIn, user: User = maintainer) -> WorkOrderOut:
        """Close with what was done (the resolution, required)."""
        with _refusals():
            return _order_out(book.close_order(order_id, body.text, user.username))


class _refusals:
    """Turns a :class:`WorkOrderError` into the HTTP answer it names; a 422 in the shape
    of FastAPI's own validation errors, so every 422 matches the documented schema."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: object) -> None:
        if not isinstance(exc, WorkOrderError):
            return
        if exc.status == 422:
            raise RequestValidationError(
                [{"type": "value_error", "loc": ("body",), "msg": str(exc), "input": None}]
            ) from None
        raise HTTPException(exc.status, str(exc)) from None


def _find_alarm(store: Store, machine: str, alarm_id: int) -> StoredAlarm:
    for alarm in store.alarms(machine):
        if alarm.id == alarm_id:
            return alarm
    raise WorkOrderError(f"no alarm {alarm_id} on {machine}", status=404)


def _guide_out(g: AlarmGuide) -> AlarmGuideOut:
    return AlarmGuideOut(code=g.code, title=g.title, causes=list(g.causes), checks=list(g.checks))


def _order_out(o: WorkOrder) -> WorkOrderOut:
    return WorkOrderOut(
        id=o.id, machine=o.machine, title=o.title, description=o.description,
        priority=o.priority, state=str(o.state), created_at=o.created_at,
        created_by=o.created_by, assignee=o.assignee, alarm_id=o.alarm_id,
        alarm_code=o.alarm_code, closed_at=o.closed_at, closed_by=o.closed_by,
        resolution=o.resolution,
        log=[LogEntryOut(at=e.at, by=e.by, action=e.action, text=e.text) for e in o.log],
    )  # fmt: skip
