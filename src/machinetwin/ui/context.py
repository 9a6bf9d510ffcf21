"""What the pages read, over the hub's services: store, live view, users, twin caches.

The pages never talk to DuckDB or the user directory on the event loop: every call
here that can block is made through ``nicegui.run.io_bound`` by the page code. The
caches are shared by all browser clients (one entry per machine), so ten engineers on
the same machine page cost one program interpretation and one stock carving.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..hub.api import LiveSnapshot, LiveView
from ..hub.commands import CommandService
from ..hub.ingest import LiveState
from ..hub.maintenance import WorkOrderBook
from ..hub.store import Store
from ..machine.config import MachineConfig
from .twin import StockView, Toolpath, TwinDataError, toolpath
from .twin_tracker import TwinState, TwinTracker

PROGRAM_REFRESH_S = 2.0
STOCK_REFRESH_S = 3.0
POSITION_SIGNALS = ("x.pos", "y.pos", "z.pos", "tool")


def alarm_code(code: object) -> str:
    """``TOOL_BREAKAGE (MT-300)`` for a model AlarmCode, the text itself otherwise."""
    name, value = getattr(code, "name", None), getattr(code, "value", None)
    return f"{name} ({value})" if name and value else str(code)


class UserLike(Protocol):
    username: str
    role: Any


class UserDirectoryLike(Protocol):
    """The part of ``hub.auth.UserDirectory`` the pages use."""

    def authenticate(self, username: str, password: str) -> UserLike | None: ...
    def create_session(self, user: Any) -> str: ...
    def session_user(self, token: str) -> UserLike | None: ...
    def end_session(self, token: str) -> None: ...


@dataclass
class Program:
    """The program a machine runs, as its last "program" event told the hub."""

    name: str = ""
    text: str | None = None
    started: float = 0.0  # machine clock of the event, s
    lines: list[str] = field(default_factory=list)
    path: Toolpath | None = None
    error: str | None = None


@dataclass
class _StockEntry:
    view: StockView
    carving: threading.Lock = field(default_factory=threading.Lock)  # one carver at a time
    program_started: float = -1.0
    until: float = 0.0  # samples before this are carved in
    refreshed: float = 0.0  # monotonic
    version: int = 0


class UiContext:
    """The hub's services as the pages see them."""

    def __init__(
        self,
        store: Store,
        live: LiveView,
        users: UserDirectoryLike | None,
        machine_config: MachineConfig,
        machine_state: Callable[[str], LiveState | None] | None = None,
        commands: CommandService | None = None,
        maintenance: WorkOrderBook | None = None,
    ) -> None:
        self.store = store
        self.live = live
        # one machine's live state without copying the fleet's (the machine page asks
        # ten times a second); falls back to the fleet snapshot
        self._machine_state = machine_state
        self.users = users
        self.commands = commands  # remote control (None: the panel stays disabled)
        self.maintenance = maintenance  # work orders (None: no maintenance page actions)
        self.machine_config = machine_config
        self._lock = threading.Lock()
        self._programs: dict[str, tuple[float, Program]] = {}  # machine -> (checked, program)
        self._paths: dict[str, Toolpath | str] = {}  # text digest -> toolpath or error
        self._stocks: dict[str, _StockEntry] = {}
        self.fleet = FleetCache(store)
        self.twins = TwinTracker(store, machine_config)

    def snapshot(self) -> LiveSnapshot:
        return self.live()

    def machine_state(self, machine: str) -> LiveState | None:
        if self._machine_state is not None:
            return self._machine_state(machine)
        return self.live().machines.get(machine)

    # --- programs ------------------------------------------------------------------------

    def program(self, machine: str, with_path: bool = False) -> Program:
        """The machine's current program (cached; re-read every PROGRAM_REFRESH_S)."""
        now = time.monotonic()
        with self._lock:
            cached = self._programs.get(machine)
        if cached is None or now - cached[0] > PROGRAM_REFRESH_S:
            program = self._read_program(machine)
            if cached is not None and cached[1].started == program.started:
                program = cached[1]  # same program: keep what was computed for it
            with self._lock:
                self._programs[machine] = (now, program)
        else:
            program = cached[1]
        if with_path and program.path is None and program.error is None and program.text:
            self._add_path(program)
        return program

    def _read_program(self, machine: str) -> Program:
        events = self.store.events(machine, since=time.time() - 3600.0, kind="program")
        if not events:
            events = self.store.events(machine, kind="program")
        if not events:
            return Program()
        event = events[-1]
        value = event.value
        if isinstance(value, dict):
            name, text = str(value.get("name", "")), value.get("text")
        else:
            name, text = str(value), None
        text = text if isinstance(text, str) else None
        return Program(name, text, event.t, text.splitlines() if text else [])

    def _add_path(self, program: Program) -> None:
        assert program.text is not None
        digest = hashlib.sha256(program.text.encode()).hexdigest()
        with self._lock:
            known = self._paths.get(digest)
        if known is None:
            try:
                known = toolpath(program.text, self.machine_config, program.name)
            except TwinDataError as exc:
                known = str(exc)
            with self._lock:
                self._paths[digest] = known
        if isinstance(known, str):
            program.error = known
        else:
            program.path = known

    def twin(self, machine: str) -> TwinState:
        """The machine's simulated twin and how the reported samples compare (blocks:
        call it in a worker thread)."""
        return self.twins.state(machine, self.program(machine))

    # --- stock ---------------------------------------------------------------------------

    def stock(self, machine: str) -> tuple[StockView, int]:
        """The machine's stock carved up to the newest stored position, and a version
        number that changes when it did (the page sends heights only then)."""
        with self._lock:
            entry = self._stocks.get(machine)
            if entry is None:
                entry = self._stocks[machine] = _StockEntry(StockView(self.machine_config))
        with self._lock:
            due = time.monotonic() - entry.refreshed >= STOCK_REFRESH_S
        # another client's worker may be carving: it will be done for this one too
        if due and entry.carving.acquire(blocking=False):
            try:
                entry.refreshed = time.monotonic()
                self._carve(machine, entry)
            finally:
                entry.carving.release()
        return entry.view, entry.version

    def _carve(self, machine: str, entry: _StockEntry) -> None:
        program = self.program(machine)
        if program.started != entry.program_started:
            entry.view.reset()  # a new part on a fresh blank
            entry.program_started = program.started
            entry.until = program.started
            entry.version += 1
        now = time.time()
        t0 = max(entry.until, now - 600.0)  # never more than 10 min at once
        if not now > t0:
            return
        got = self.store.query(machine, POSITION_SIGNALS, t0, now, buckets=1_000_000)
        if not all(s in got for s in POSITION_SIGNALS):
            return
        t = got["x.pos"].t
        pos = np.column_stack([np.interp(t, got[s].t, got[s].values) for s in POSITION_SIGNALS[:3]])
        tool_t, tools = got["tool"].t, got["tool"].values
        idx = np.clip(np.searchsorted(tool_t, t, side="right") - 1, 0, len(tools) - 1)
        entry.view.cut(pos, tools[idx])
        entry.until = float(t[-1]) + 1e-9
        entry.version += 1


class FleetCache:
    """Fleet-wide reads shared by every fleet page: active alarms and program names,
    each one store query per refresh however many machines and clients there are."""

    def __init__(self, store: Store, refresh_s: float = 1.0) -> None:
        self.store = store
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self._alarms: tuple[float, dict[str, list[str]]] = (-1e9, {})
        self._programs: tuple[float, dict[str, str]] = (-1e9, {})

    def active_alarms(self) -> dict[str, list[str]]:
        """Machine -> codes of its active alarms (newest first)."""
        checked, value = self._alarms
        if time.monotonic() - checked < self.refresh_s:
            return value
        out: dict[str, list[str]] = {}
        for a in self.store.alarms(active=True):
            out.setdefault(a.machine, []).append(getattr(a.alarm.code, "name", str(a.alarm.code)))
        self._alarms = (time.monotonic(), out)
        return out

    def program_names(self) -> dict[str, str]:
        """Machine -> name of the program it last started (within the last hour)."""
        checked, value = self._programs
        if time.monotonic() - checked < 2 * self.refresh_s:
            return value
        out = dict(value)
        for event in self.store.events(since=time.time() - 3600.0, kind="program"):
            v = event.value
            out[event.machine_id] = str(v.get("name", "")) if isinstance(v, dict) else str(v)
        self._programs = (time.monotonic(), out)
        return out
