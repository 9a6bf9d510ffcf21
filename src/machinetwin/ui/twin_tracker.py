"""Each machine's simulated twin on the hub, kept up to date for the machine pages.

When a machine starts a program (its "program" event, with the text), the tracker runs
the twin (:func:`.sim_twin.simulate_program`) from the position and tool the machine
reported at that moment, once for every client watching, and then compares the samples
the store receives against it, incrementally: every refresh compares only the samples
that arrived since the last one and keeps a rolling window for the charts. A run is
cached by (program text, start position, tool), so a machine that runs the same part
in a loop from the same place simulates it once.

All of it blocks (store reads, the simulation): call :meth:`TwinTracker.state` in a
worker thread.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ..hub.store import Store
from ..machine.config import MachineConfig
from ..model.signals import Execution
from .sim_twin import SimulatedRun, compare, simulate_program
from .twin import TwinDataError

REFRESH_S = 1.0
WINDOW_S = 60.0  # what the page charts
RUNS_CACHED = 16
COMPARED = ("x.pos", "y.pos", "z.pos", "line", "feed", "spindle.load", "x.ferr", "y.ferr",
            "z.ferr", "execution")  # fmt: skip
# samples compared: while the program runs or is held (a held machine falls behind);
# once it completed or stopped, the panel keeps showing how it ended
RUNNING = (float(Execution.ACTIVE), float(Execution.INTERRUPTED))
START = ("x.pos", "y.pos", "z.pos", "tool")


class ProgramLike(Protocol):
    name: str
    text: str | None
    started: float


@dataclass(frozen=True)
class TwinState:
    """What a page shows of one machine's twin: the run (or why there is none) and the
    comparison of the last WINDOW_S of reported samples with it."""

    program: str = ""
    started: float = 0.0  # machine clock of the program's start
    run: SimulatedRun | None = None
    note: str = "no program reported yet"
    t: np.ndarray = field(default_factory=lambda: np.zeros(0))  # sample times (machine clock)
    reported: dict[str, np.ndarray] = field(default_factory=dict)  # COMPARED -> values
    deviation_mm: np.ndarray = field(default_factory=lambda: np.zeros(0))
    offset_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    t_sim: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def newest(self) -> int | None:
        """Index of the newest sample matched to the twin's path (None: none yet)."""
        hits = np.flatnonzero(np.isfinite(self.deviation_mm))
        return int(hits[-1]) if len(hits) else None


@dataclass
class _Entry:
    busy: threading.Lock = field(default_factory=threading.Lock)
    started: float | None = None
    until: float = 0.0  # samples before this are compared
    refreshed: float = -1e9  # monotonic
    state: TwinState = field(default_factory=TwinState)


class TwinTracker:
    """Twins of every machine a page looks at (see the module docstring)."""

    def __init__(self, store: Store, config: MachineConfig) -> None:
        self.store = store
        self.config = config
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._runs: OrderedDict[tuple, SimulatedRun | str] = OrderedDict()

    def state(self, machine: str, program: ProgramLike) -> TwinState:
        """The machine's twin state, refreshed at most every REFRESH_S."""
        with self._lock:
            entry = self._entries.setdefault(machine, _Entry())
        # one refresh at a time; other clients get the state it leaves
        if time.monotonic() - entry.refreshed >= REFRESH_S and entry.busy.acquire(blocking=False):
            try:
                entry.refreshed = time.monotonic()
                self._refresh(machine, program, entry)
            finally:
                entry.busy.release()
        return entry.state

    def _refresh(self, machine: str, program: ProgramLike, entry: _Entry) -> None:
        if program.started != entry.started:
            entry.started = program.started
            entry.until = program.started
            entry.state = self._new_run(machine, program)
        state = entry.state
        if state.run is None:
            return
        now = time.time()
        t0 = max(entry.until, now - WINDOW_S)
        got = self.store.query(machine, COMPARED, t0, now + 1.0, buckets=1_000_000)
        if "x.pos" not in got or not all(s in got for s in ("y.pos", "z.pos", "line")):
            return
        t = got["x.pos"].t
        new = {s: _at(got[s].t, got[s].values, t) if s in got else np.full(len(t), np.nan)
               for s in COMPARED}  # fmt: skip
        pos = np.column_stack([new["x.pos"], new["y.pos"], new["z.pos"]])
        execution = new["execution"]
        running = np.isin(execution, RUNNING) | np.isnan(execution)  # NaN: not reported
        line = np.where(running, np.rint(new["line"]), np.nan)  # NaN: not compared
        cmp = compare(state.run, t - state.started, pos, line)
        entry.until = float(t[-1]) + 1e-9
        entry.state = _appended(state, t, new, cmp.deviation_mm, cmp.offset_s, cmp.t_sim)

    def _new_run(self, machine: str, program: ProgramLike) -> TwinState:
        base = TwinState(program=program.name, started=program.started)
        if not program.name:
            return base
        if not program.text:
            return _with(base, note=f"no twin: {machine} did not send the text of {program.name}")
        start, tool = self._start_state(machine, program.started)
        run = self._run(program, start, tool)
        if isinstance(run, str):
            return _with(base, note=run)
        where = "from home" if start is None else "from where the machine stood"
        done = "" if run.completed else " (the twin did not reach the end)"
        note = f"twin of {program.name} {where}: cycle time {run.cycle_time_s:.1f} s{done}"
        return _with(base, run=run, note=note)

    def _start_state(self, machine: str, started: float) -> tuple[tuple | None, int]:
        """Position (machine frame) and tool the machine reported when it started."""
        got = self.store.query(machine, START, started - 2.0, started + 0.5, buckets=1_000_000)
        if not all(s in got for s in START):
            return None, 0
        t = got["x.pos"].t
        k = max(0, int(np.searchsorted(t, started, side="right")) - 1)  # the last before start
        pos = tuple(round(float(_at(got[s].t, got[s].values, t[k : k + 1])[0]), 2)
                    for s in START[:3])  # fmt: skip
        tool = _at(got["tool"].t, got["tool"].values, t[k : k + 1])[0]
        if not all(math.isfinite(p) for p in pos):
            return None, 0
        return pos, int(tool) if math.isfinite(tool) else 0

    def _run(self, program: ProgramLike, start: tuple | None, tool: int) -> SimulatedRun | str:
        assert program.text is not None
        key = (hashlib.sha256(program.text.encode()).hexdigest(), start, tool)
        with self._lock:
            known = self._runs.get(key)
        if known is None:
            try:
                known = simulate_program(program.text, self.config, program.name, start, tool)
            except TwinDataError as exc:
                known = f"no twin: {exc}"
            with self._lock:
                self._runs[key] = known
                while len(self._runs) > RUNS_CACHED:
                    self._runs.popitem(last=False)
        return known


def _at(t: np.ndarray, values: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Each signal's sample at (or last before) the times ``at`` (samples of one batch
    share their times, so this is an exact lookup for them)."""
    if len(t) == 0:
        return np.full(len(at), np.nan)
    k = np.clip(np.searchsorted(t, at, side="right") - 1, 0, len(t) - 1)
    return np.asarray(values, float)[k]


def _with(state: TwinState, **changes: object) -> TwinState:
    from dataclasses import replace

    return replace(state, **changes)  # type: ignore[arg-type]


def _appended(state: TwinState, t: np.ndarray, new: dict[str, np.ndarray], dev: np.ndarray,
              off: np.ndarray, t_sim: np.ndarray) -> TwinState:  # fmt: skip
    """The state with new compared samples appended and those older than WINDOW_S
    (before the newest) dropped."""
    all_t = np.concatenate([state.t, t])
    keep = all_t >= all_t[-1] - WINDOW_S
    joined = {s: np.concatenate([state.reported.get(s, np.zeros(0)), new[s]])[keep]
              for s in COMPARED}  # fmt: skip
    return _with(
        state,
        t=all_t[keep],
        reported=joined,
        deviation_mm=np.concatenate([state.deviation_mm, dev])[keep],
        offset_s=np.concatenate([state.offset_s, off])[keep],
        t_sim=np.concatenate([state.t_sim, t_sim])[keep],
    )
