"""Rows as both stores keep them: SQL filters, JSON values and alarms.

DuckDB and PostgreSQL store events and alarms the same way (a JSON text column for an
event's value and its alarm, one row per alarm), so the conversions live here once.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ..model import Alarm, AlarmCode, MachineDescriptor
from ..model.alarms import Severity
from .store import StoredAlarm, StoreError


def sql_filters(conds: list[tuple[str, Any]]) -> tuple[str, list[Any]]:
    """``WHERE a AND b`` of the conditions whose value is not None, and those values."""
    used = [(cond, v) for cond, v in conds if v is not None]
    where = "WHERE " + " AND ".join(cond for cond, _ in used) if used else ""
    return where, [v for _, v in used]


def value_json(value: Any, where: object) -> str | None:
    """An event's value as JSON text (numpy scalars and arrays as plain numbers)."""
    if value is None:
        return None
    try:
        return json.dumps(value, sort_keys=True, default=_plain)
    except (TypeError, ValueError) as e:
        raise StoreError(f"{where!r}: value is not JSON-serialisable: {e}") from None


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def alarm_json(alarm: Alarm | None) -> str | None:
    if alarm is None:
        return None
    return json.dumps({
        "code": str(alarm.code), "severity": int(alarm.severity), "message": alarm.message,
        "source": alarm.source, "raised_at": alarm.raised_at, "cleared_at": alarm.cleared_at,
    }, sort_keys=True)  # fmt: skip


def alarm_from_json(text: str | None) -> Alarm | None:
    if text is None:
        return None
    d = json.loads(text)
    return Alarm(AlarmCode(d["code"]), Severity(d["severity"]), d["message"], d["source"],
                 d["raised_at"], d["cleared_at"])  # fmt: skip


def stored_alarm(row: tuple[Any, ...]) -> StoredAlarm:
    """An ``alarms`` row (id, machine, code, severity, message, source, raised, cleared,
    acknowledged at, by, comment) as a :class:`StoredAlarm`."""
    i, machine, code, sev, message, source, raised, cleared, ack_at, ack_by, comment = row
    alarm = Alarm(AlarmCode(code), Severity(sev), message, source, raised, cleared)
    return StoredAlarm(int(i), machine, alarm, ack_at, ack_by, comment)


_ACTIVE_SQL = {None: None, True: "cleared_at IS NULL", False: "cleared_at IS NOT NULL"}


def alarm_filters(machine: str | None, active: bool | None, since: float | None,
                  mark: str) -> tuple[str, list[Any]]:  # fmt: skip
    """The ``WHERE`` of ``Store.alarms``; ``mark`` is the driver's placeholder (``?``, ``%s``)."""
    where, params = sql_filters([(f"machine = {mark}", machine), (f"raised_at >= {mark}", since)])
    state = _ACTIVE_SQL[active]
    if state:
        where = f"{where} AND {state}" if where else f"WHERE {state}"
    return where, params


def descriptor_rows(descriptors: Any) -> list[list[Any]]:
    """Machine descriptors as ``machines`` rows, each checked; sorted by machine id (one
    lock order for concurrent upserts)."""
    rows = []
    for d in descriptors:
        if not isinstance(d, MachineDescriptor) or not d.machine_id:
            raise StoreError(f"expected a MachineDescriptor with a machine_id, got {d!r}")
        rows.append([d.machine_id, d.name, d.site, d.model, list(d.signals), list(d.axes),
                     value_json(d.extra, d)])  # fmt: skip
    return sorted(rows, key=lambda r: r[0])
