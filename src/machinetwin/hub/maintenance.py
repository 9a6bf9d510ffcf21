"""Maintenance: a guide for every alarm code, and work orders.

A work order is the lab's record of a repair: opened from an alarm (one open order per
alarm: opening it twice returns the first) or by hand, assigned to someone, commented
on, and closed with what was done. Everything that happens to an order is appended to
its log (who, when, what); orders are never deleted, so a machine's repair history is
complete. The book is one SQLite file (WAL, ``synchronous=FULL``) beside the store,
like the user directory; ``":memory:"`` gives a throwaway book for tests.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from functools import cache
from importlib import resources
from pathlib import Path

from ..errors import MachinetwinError
from ..model.alarms import AlarmCode
from .store import StoredAlarm

MAX_TITLE = 200
MAX_TEXT = 10_000
PRIORITIES = ("low", "normal", "high", "urgent")


class WorkOrderError(MachinetwinError):
    """A work order request was refused; ``status`` is the HTTP status that fits."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class AlarmGuide:
    code: str
    title: str
    causes: tuple[str, ...]  # most likely first
    checks: tuple[str, ...]  # cheapest first


@cache
def alarm_guides() -> dict[str, AlarmGuide]:
    """Every alarm code's guide, from the package's ``alarm_guides.toml``."""
    text = resources.files(__package__).joinpath("alarm_guides.toml").read_text("utf-8")
    return {code: _guide(code, entry) for code, entry in tomllib.loads(text).items()}


def _guide(code: str, entry: dict) -> AlarmGuide:
    try:
        return AlarmGuide(code, str(entry["title"]), tuple(entry["causes"]), tuple(entry["checks"]))
    except KeyError as e:
        raise MachinetwinError(f"alarm_guides.toml [{code}]: missing key {e.args[0]!r}") from None


def alarm_guide(code: str | AlarmCode) -> AlarmGuide | None:
    """The guide of ``code`` (e.g. ``"MT-200"``), None for a code without one."""
    return alarm_guides().get(str(code))


class WorkOrderState(StrEnum):
    OPEN = "open"
    ASSIGNED = "assigned"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class LogEntry:
    at: float  # wall clock, s
    by: str
    action: str  # "opened", "assigned", "comment", "closed"
    text: str


@dataclass(frozen=True, slots=True)
class WorkOrder:
    id: int
    machine: str
    title: str
    description: str
    priority: str
    state: WorkOrderState
    created_at: float
    created_by: str
    assignee: str | None
    alarm_id: int | None
    alarm_code: str | None
    closed_at: float | None
    closed_by: str | None
    resolution: str | None
    log: tuple[LogEntry, ...]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS work_orders (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    machine TEXT NOT NULL,
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    priority TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    created_by TEXT NOT NULL,
    assignee TEXT,
    alarm_id INTEGER,
    alarm_code TEXT,
    closed_at REAL,
    closed_by TEXT,
    resolution TEXT
);
CREATE INDEX IF NOT EXISTS work_orders_machine ON work_orders (machine, state);
-- at most one open (not closed) order per alarm
CREATE UNIQUE INDEX IF NOT EXISTS work_orders_open_alarm ON work_orders (alarm_id)
    WHERE alarm_id IS NOT NULL AND state != 'closed';
CREATE TABLE IF NOT EXISTS work_order_log (
    order_id INTEGER NOT NULL REFERENCES work_orders (id),
    at REAL NOT NULL,
    by TEXT NOT NULL,
    action TEXT NOT NULL,
    text TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS work_order_log_order ON work_order_log (order_id);
"""


def work_orders_path_for(store: Path | str) -> Path:
    """Where the work orders of the hub whose store is ``store`` live."""
    return Path(store).resolve().parent / "work_orders.sqlite"


class WorkOrderBook:
    """Work orders in one SQLite file; safe to share between threads."""

    def __init__(self, path: Path | str, *, clock=time.time) -> None:  # noqa: ANN001
        self.path = path
        self._clock = clock
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False,
                                   timeout=10.0)  # fmt: skip
        if str(path) != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a closed order stays closed after a crash
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # --- writing -----------------------------------------------------------------------

    def open(self, machine: str, title: str, description: str, by: str, *,
             priority: str = "normal", alarm: StoredAlarm | None = None) -> WorkOrder:  # fmt: skip
        """Open an order. For an alarm that already has an open order, that order."""
        title = _text(title, "title", MAX_TITLE, required=True)
        description = _text(description, "description", MAX_TEXT)
        if priority not in PRIORITIES:
            raise WorkOrderError(f"priority {priority!r}: expected one of {', '.join(PRIORITIES)}")
        if alarm is not None and alarm.machine != machine:
            raise WorkOrderError(f"alarm {alarm.id} is on {alarm.machine}, not on {machine}")
        with self._tx() as db:
            if alarm is not None:
                row = db.execute("SELECT id FROM work_orders WHERE alarm_id = ? AND state != 'closed'",
                                 (alarm.id,)).fetchone()  # fmt: skip
                if row:
                    return self._get(db, row[0])
            now = self._clock()
            cur = db.execute(
                "INSERT INTO work_orders (machine, title, description, priority, state, created_at,"
                " created_by, alarm_id, alarm_code) VALUES (?, ?, ?, ?, 'open', ?, ?, ?, ?)",
                (machine, title, description, priority, now, by,
                 alarm.id if alarm else None, str(alarm.alarm.code) if alarm else None),
            )  # fmt: skip
            order_id = int(cur.lastrowid or 0)
            self._log(db, order_id, now, by, "opened", title)
            return self._get(db, order_id)

    def open_from_alarm(
        self, alarm: StoredAlarm, by: str, priority: str | None = None
    ) -> WorkOrder:
        """An order for ``alarm``, its description drawn from the alarm and its guide."""
        guide = alarm_guide(alarm.alarm.code)
        # the guide's title is short; the alarm's message (the explanation) is in the text
        what = guide.title if guide else f"{alarm.alarm.code}: {alarm.alarm.message}"
        title = f"{what} on {alarm.machine}"[:MAX_TITLE]
        return self.open(alarm.machine, title, describe_alarm(alarm, guide), by,
                         priority=priority or _priority_of(alarm), alarm=alarm)  # fmt: skip

    def assign(self, order_id: int, assignee: str, by: str) -> WorkOrder:
        assignee = _text(assignee, "assignee", 64, required=True)
        with self._tx() as db:
            self._open_order(db, order_id)
            db.execute("UPDATE work_orders SET assignee = ?, state = 'assigned' WHERE id = ?",
                       (assignee, order_id))  # fmt: skip
            self._log(db, order_id, self._clock(), by, "assigned", assignee)
            return self._get(db, order_id)

    def comment(self, order_id: int, text: str, by: str) -> WorkOrder:
        text = _text(text, "comment", MAX_TEXT, required=True)
        with self._tx() as db:
            self._get(db, order_id)  # comments on closed orders are allowed (follow-ups)
            self._log(db, order_id, self._clock(), by, "comment", text)
            return self._get(db, order_id)

    def close_order(self, order_id: int, resolution: str, by: str) -> WorkOrder:
        """Close with what was done; a closed order cannot be closed again."""
        resolution = _text(resolution, "resolution", MAX_TEXT, required=True)
        with self._tx() as db:
            self._open_order(db, order_id)
            now = self._clock()
            db.execute("UPDATE work_orders SET state = 'closed', closed_at = ?, closed_by = ?,"
                       " resolution = ? WHERE id = ?", (now, by, resolution, order_id))  # fmt: skip
            self._log(db, order_id, now, by, "closed", resolution)
            return self._get(db, order_id)

    # --- reading -----------------------------------------------------------------------

    def get(self, order_id: int) -> WorkOrder:
        with self._lock:
            return self._get(self._db, order_id)

    def orders(self, machine: str | None = None, state: WorkOrderState | str | None = None,
               alarm_id: int | None = None, limit: int = 1000) -> list[WorkOrder]:  # fmt: skip
        """Orders, newest first."""
        where, args = [], []
        for column, value in (("machine", machine), ("state", state), ("alarm_id", alarm_id)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(str(value) if column == "state" else value)
        sql = "SELECT id FROM work_orders"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        with self._lock:
            ids = [r[0] for r in self._db.execute(sql, (*args, int(limit)))]
            return [self._get(self._db, i) for i in ids]

    # --- internals ---------------------------------------------------------------------

    def _open_order(self, db: sqlite3.Connection, order_id: int) -> WorkOrder:
        order = self._get(db, order_id)
        if order.state is WorkOrderState.CLOSED:
            raise WorkOrderError(f"work order {order_id} is closed", status=409)
        return order

    @staticmethod
    def _log(
        db: sqlite3.Connection, order_id: int, at: float, by: str, action: str, text: str
    ) -> None:
        db.execute(
            "INSERT INTO work_order_log VALUES (?, ?, ?, ?, ?)", (order_id, at, by, action, text)
        )

    @staticmethod
    def _get(db: sqlite3.Connection, order_id: int) -> WorkOrder:
        row = db.execute(
            "SELECT id, machine, title, description, priority, state, created_at, created_by,"
            " assignee, alarm_id, alarm_code, closed_at, closed_by, resolution"
            " FROM work_orders WHERE id = ?", (int(order_id),),
        ).fetchone()  # fmt: skip
        if row is None:
            raise WorkOrderError(f"no work order {order_id}", status=404)
        log = tuple(LogEntry(*r) for r in db.execute(
            "SELECT at, by, action, text FROM work_order_log WHERE order_id = ? ORDER BY rowid",
            (row[0],)))  # fmt: skip
        return WorkOrder(*row[:5], WorkOrderState(row[5]), *row[6:], log=log)


def describe_alarm(alarm: StoredAlarm, guide: AlarmGuide | None) -> str:
    """The alarm as a work order's description: what happened, then the guide."""
    a = alarm.alarm
    lines = [f"Alarm {a.code} ({a.severity.name.lower()}) on {alarm.machine}, source {a.source}: "
             f"{a.message}", f"Raised {_utc(a.raised_at)}."]  # fmt: skip
    if guide:
        lines += ["", "Probable causes:", *(f"- {c}" for c in guide.causes)]
        lines += ["", "Checks:", *(f"{i}. {c}" for i, c in enumerate(guide.checks, 1))]
    return "\n".join(lines)


def _utc(t: float) -> str:
    try:
        return f"{datetime.fromtimestamp(t, UTC):%Y-%m-%d %H:%M:%S} UTC"
    except (OverflowError, OSError, ValueError):
        return f"at machine time {t:.1f} s"


def _priority_of(alarm: StoredAlarm) -> str:
    return ("normal", "normal", "high", "urgent")[min(int(alarm.alarm.severity), 3)]


def _text(value: object, field: str, limit: int, required: bool = False) -> str:
    if not isinstance(value, str):
        raise WorkOrderError(f"{field}: expected text")
    value = value.strip()
    if required and not value:
        raise WorkOrderError(f"{field}: must not be empty")
    if len(value) > limit:
        raise WorkOrderError(f"{field}: {len(value)} characters, at most {limit}")
    return value
