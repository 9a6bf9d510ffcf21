"""Fleet KPIs from telemetry: OEE, utilisation, energy per part, load spectra.

The inputs are the signals every machine sends (``execution``, ``part_count``,
``energy``, ``spindle.speed``, ``spindle.load``), read in chunks of raw samples so that
a week at 10 Hz never sits in memory at once: :class:`KpiAccumulator` takes the chunks
in time order and :meth:`KpiAccumulator.result` gives a :class:`MachineKpis`.

Definitions (the usual OEE ones, made concrete for what a controller reports):

- Planned time: the period asked for, minus the time without data (the machine was
  off or unreachable; a gap longer than ``max_gap_s`` between samples counts as no
  data, shorter ones are attributed to the earlier sample's state).
- Availability = run time / planned time, run time = time in ACTIVE.
- Performance = Σ ideal cycle time of each part made / run time. A program's ideal
  cycle time is what the twin's planner predicts for it when given; otherwise the
  10th percentile of its observed cycle run times, so performance < 1 measures feed
  holds, overrides below 100 % and slower cycles against the machine's own best.
- Quality = good parts / parts. Without a quality station, a part is counted bad
  when a FAULT-or-worse alarm (overload, tool breakage, collision…) was raised during
  its cycle: such parts need inspection.
- Utilisation = spindle-running time / planned time.
- Energy per part = energy used in the period / parts (J).
- Load spectrum: hours at each (spindle speed, spindle load) bin, for designers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..model import Execution

MAX_GAP_S = 1.0  # longer gaps between samples are "no data" (10 Hz telemetry → 0.1 s)
SPEED_EDGES_RPM = np.array([0, 500, 1000, 2000, 4000, 6000, 8000, 10000, 12000, 15000, 24000.0])
LOAD_EDGES_PCT = np.array([0, 10, 20, 40, 60, 80, 100, 120, 150, 1000.0])
SPINDLE_RUNNING_RPM = 10.0
CHUNK_SIGNALS = ("execution", "part_count", "energy", "spindle.speed", "spindle.load")


@dataclass(frozen=True)
class MachineKpis:
    machine: str
    t0: float
    t1: float
    planned_s: float
    no_data_s: float
    state_s: dict[str, float]  # seconds per Execution name
    run_s: float
    spindle_s: float
    parts: int
    bad_parts: int
    ideal_s: float  # Σ ideal cycle time of the parts made
    energy_j: float
    cycles_by_program: dict[str, list[float]]  # observed run time of each cycle, s
    load_hours: np.ndarray  # [speed bin, load bin]
    speed_edges: np.ndarray = field(default_factory=lambda: SPEED_EDGES_RPM)
    load_edges: np.ndarray = field(default_factory=lambda: LOAD_EDGES_PCT)

    @property
    def availability(self) -> float:
        return _ratio(self.run_s, self.planned_s)

    @property
    def performance(self) -> float:
        return min(1.0, _ratio(self.ideal_s, self.run_s))

    @property
    def quality(self) -> float:
        return _ratio(self.parts - self.bad_parts, self.parts)

    @property
    def oee(self) -> float:
        return self.availability * self.performance * self.quality

    @property
    def utilisation(self) -> float:
        return _ratio(self.spindle_s, self.planned_s)

    @property
    def energy_per_part_j(self) -> float:
        return self.energy_j / self.parts if self.parts else float("nan")

    def summary(self) -> dict[str, float | int | str]:
        """One flat row (for tables and the Parquet export)."""
        return {
            "machine": self.machine, "t0": self.t0, "t1": self.t1,
            "planned_h": self.planned_s / 3600, "run_h": self.run_s / 3600,
            "availability": self.availability, "performance": self.performance,
            "quality": self.quality, "oee": self.oee, "utilisation": self.utilisation,
            "parts": self.parts, "bad_parts": self.bad_parts,
            "energy_kwh": self.energy_j / 3.6e6, "energy_per_part_kwh": self.energy_per_part_j / 3.6e6,
        }  # fmt: skip


def _concat(a: tuple[np.ndarray, dict[str, np.ndarray]],
            b: tuple[np.ndarray, dict[str, np.ndarray]]) -> tuple[np.ndarray, dict[str, np.ndarray]]:  # fmt: skip
    """Two chunks as one; a signal missing from one of them is NaN there."""
    (ta, ca), (tb, cb) = a, b
    cols = {}
    for k in ca.keys() | cb.keys():
        va = ca.get(k, np.full(len(ta), np.nan))
        vb = cb.get(k, np.full(len(tb), np.nan))
        cols[k] = np.concatenate((va, vb))
    return np.concatenate((ta, tb)), cols


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("nan")


@dataclass
class KpiAccumulator:
    """Accumulates one machine's KPIs over chunks of raw samples given in time order.

    ``programs``: (t, name) of the machine's program events, sorted; ``fault_times``:
    raise times of its FAULT-or-worse alarms; ``ideal_cycle_s``: the twin's cycle time
    per program name, where known."""

    machine: str
    t0: float
    t1: float
    programs: Sequence[tuple[float, str]] = ()
    fault_times: Sequence[float] = ()
    ideal_cycle_s: Mapping[str, float] = field(default_factory=dict)
    max_gap_s: float = MAX_GAP_S
    # the counters (part_count, energy) just before t0: what changed at the period's first
    # sample belongs to the period, so periods add up to their whole
    counters_before: Mapping[str, float] = field(default_factory=dict)
    _state_s: np.ndarray = field(default_factory=lambda: np.zeros(len(Execution)))
    _no_data_s: float = 0.0
    _spindle_s: float = 0.0
    _energy_j: float = 0.0
    _load_hours: np.ndarray = field(
        default_factory=lambda: np.zeros((len(SPEED_EDGES_RPM) - 1, len(LOAD_EDGES_PCT) - 1))
    )
    _first_t: float | None = None
    _carry: tuple[np.ndarray, dict[str, np.ndarray]] | None = None  # the last sample seen
    _spacing: float = 0.1  # between the last two samples seen
    _last_end: float = 0.0  # end of the last sample seen
    _run_cum: np.ndarray | None = None  # run time before each sample of the current chunk
    _last_energy: float | None = None
    _last_parts: float | None = None
    _run_total: float = 0.0  # cumulative ACTIVE seconds
    _part_marks: list[tuple[float, float]] = field(default_factory=list)  # (t, cumulative run s)

    def add(self, t: np.ndarray, columns: Mapping[str, np.ndarray]) -> None:
        """One chunk: sample times and the signals of CHUNK_SIGNALS it has (same length).

        A sample lasts until the next one, so each chunk's last sample waits for the
        next chunk (or :meth:`result`): how the data is cut never changes the answer."""
        if len(t) == 0:
            return
        cols = {k: np.asarray(columns[k], float) for k in CHUNK_SIGNALS if k in columns}
        if self._carry is not None:
            t, cols = _concat(self._carry, (t, cols))
        if self._first_t is None:
            self._first_t = float(t[0])
        if len(t) > 1:
            self._spacing = float(t[-1] - t[-2])
            self._process(t[:-1], {k: v[:-1] for k, v in cols.items()}, np.diff(t))
        self._carry = (t[-1:], {k: v[-1:] for k, v in cols.items()})

    def _flush(self) -> None:
        if self._carry is None:
            return
        t, cols = self._carry
        self._carry = None
        last = min(self._spacing, self.max_gap_s, max(0.0, self.t1 - float(t[0])))
        self._process(t, cols, np.array([last]))

    def _process(self, t: np.ndarray, cols: Mapping[str, np.ndarray], dt: np.ndarray) -> None:
        dt = np.clip(dt, 0.0, None)
        gap = dt > self.max_gap_s
        self._no_data_s += float(dt[gap].sum())
        dt = np.where(gap, 0.0, dt)
        self._last_end = float(t[-1] + dt[-1])
        if (execution := cols.get("execution")) is not None:
            self._add_states(execution, dt)
        speed, load = cols.get("spindle.speed"), cols.get("spindle.load")
        if speed is not None:
            running = np.abs(speed) >= SPINDLE_RUNNING_RPM
            self._spindle_s += float(dt[running].sum())
            if load is not None:
                ok = np.isfinite(speed) & np.isfinite(load)
                h, _, _ = np.histogram2d(np.abs(speed[ok]), load[ok],
                                         (SPEED_EDGES_RPM, LOAD_EDGES_PCT), weights=dt[ok] / 3600)  # fmt: skip
                self._load_hours += h
        if (energy := cols.get("energy")) is not None:
            self._add_energy(energy)
        if (parts := cols.get("part_count")) is not None:
            self._add_parts(t, parts)

    def _add_states(self, execution: np.ndarray, dt: np.ndarray) -> None:
        codes = np.nan_to_num(execution, nan=-1).astype(np.int64)
        valid = (codes >= 0) & (codes < len(Execution))
        self._state_s += np.bincount(codes[valid], weights=dt[valid], minlength=len(Execution))
        active = np.where(codes == Execution.ACTIVE, dt, 0.0)
        self._run_cum = self._run_total + np.cumsum(active) - active  # run time at each sample
        self._run_total += float(active.sum())

    def _add_energy(self, energy: np.ndarray) -> None:
        e = energy[np.isfinite(energy)]
        if len(e) == 0:
            return
        last = self._last_energy
        if last is None:
            last = self.counters_before.get("energy")
        prev = np.concatenate(([last], e)) if last is not None else e
        steps = np.diff(prev)
        # the meter restarts at 0 when the machine does: count only increases
        self._energy_j += float(steps[steps > 0].sum())
        self._last_energy = float(e[-1])

    def _add_parts(self, t: np.ndarray, parts: np.ndarray) -> None:
        ok = np.isfinite(parts)
        if not ok.any():
            return
        counts, times = parts[ok], t[ok]
        run = self._run_cum[ok] if self._run_cum is not None else np.zeros(len(counts))
        previous = self._last_parts
        if previous is None:
            previous = self.counters_before.get("part_count")
        first = previous if previous is not None else counts[0]
        steps = np.diff(counts, prepend=first)  # the counter's first value is no new part
        for k in np.flatnonzero(steps > 0):  # a counter reset (a decrease) makes no parts
            self._part_marks += [(float(times[k]), float(run[k]))] * int(round(steps[k]))
        self._last_parts = float(counts[-1])

    def result(self) -> MachineKpis:
        """The KPIs of everything added (call once, after the last chunk)."""
        self._flush()
        cycles, bad, ideal = self._cycles()
        no_data = self._no_data_s
        if self._first_t is None:
            no_data = self.t1 - self.t0
        else:  # before the first sample and after the last
            no_data += max(0.0, self._first_t - self.t0) + max(0.0, self.t1 - self._last_end)
        planned = max(0.0, (self.t1 - self.t0) - no_data)
        names = {e.name: float(s) for e, s in zip(Execution, self._state_s, strict=True)}
        return MachineKpis(
            machine=self.machine, t0=self.t0, t1=self.t1, planned_s=planned,
            no_data_s=no_data, state_s=names,
            run_s=float(self._state_s[Execution.ACTIVE]), spindle_s=self._spindle_s,
            parts=len(self._part_marks), bad_parts=bad, ideal_s=ideal, energy_j=self._energy_j,
            cycles_by_program=cycles, load_hours=self._load_hours.copy(),
        )  # fmt: skip

    def _cycles(self) -> tuple[dict[str, list[float]], int, float]:
        """Each part's cycle run time, grouped by the program that made it; the number
        of bad parts; Σ ideal cycle time."""
        marks = self._part_marks
        by_program: dict[str, list[float]] = {}
        names: list[str] = []
        faults = np.sort(np.asarray(self.fault_times, float))
        prog_t = np.array([p[0] for p in self.programs], float)
        bad = 0
        for i, (t_done, run) in enumerate(marks):
            # the program running mid-cycle made the part (the next program's event can
            # carry the very time the part was counted)
            mid = (marks[i - 1][0] + t_done) / 2 if i > 0 else t_done - 1.0
            k = int(np.searchsorted(prog_t, mid, side="right")) - 1
            name = self.programs[k][1] if k >= 0 else "?"
            names.append(name)
            if i > 0:  # the first part's cycle started before the period
                by_program.setdefault(name, []).append(run - marks[i - 1][1])
            started = marks[i - 1][0] if i > 0 else self.t0
            lo, hi = np.searchsorted(faults, [started, t_done], side="left")
            bad += int(hi > lo)
        ideal = 0.0
        for name in names:
            ideal += self.ideal_cycle_s.get(name) or _observed_ideal(by_program.get(name, []))
        return by_program, bad, ideal


def _observed_ideal(cycles: list[float]) -> float:
    positive = [c for c in cycles if c > 0]
    return float(np.percentile(positive, 10)) if positive else 0.0


def merge_kpis(parts: Sequence[MachineKpis], machine: str | None = None) -> MachineKpis:
    """Several KPI records as one: days into a week, or machines into the fleet (every
    KPI is a ratio of summed times and counts, so the sums are what is merged)."""
    cycles: dict[str, list[float]] = {}
    for k in parts:
        for name, c in k.cycles_by_program.items():
            cycles.setdefault(name, []).extend(c)
    states = {e.name: sum(k.state_s.get(e.name, 0.0) for k in parts) for e in Execution}
    return MachineKpis(
        machine=machine or parts[0].machine, t0=min(k.t0 for k in parts),
        t1=max(k.t1 for k in parts), planned_s=sum(k.planned_s for k in parts),
        no_data_s=sum(k.no_data_s for k in parts), state_s=states,
        run_s=sum(k.run_s for k in parts), spindle_s=sum(k.spindle_s for k in parts),
        parts=sum(k.parts for k in parts), bad_parts=sum(k.bad_parts for k in parts),
        ideal_s=sum(k.ideal_s for k in parts), energy_j=sum(k.energy_j for k in parts),
        cycles_by_program=cycles, load_hours=sum(k.load_hours for k in parts),
    )  # fmt: skip


# --- reading a machine's KPIs from the hub's store ----------------------------------------


def machine_kpis(store, machine: str, t0: float, t1: float,  # noqa: ANN001 - hub.Store
                 ideal_cycle_s: Mapping[str, float] | None = None,
                 chunk_s: float = 6 * 3600.0) -> MachineKpis:  # fmt: skip
    """One machine's KPIs over ``[t0, t1)``, reading raw samples ``chunk_s`` at a time."""
    from ..model import Severity

    programs = [
        (e.t, _program_name(e.value)) for e in store.events(machine, until=t1, kind="program")
    ]
    faults = [a.alarm.raised_at for a in store.alarms(machine, since=t0)
              if a.alarm.severity >= Severity.FAULT and a.alarm.raised_at < t1]  # fmt: skip
    before = store.query(machine, ["part_count", "energy"], t0 - 60.0, t0, buckets=2**31 - 1)
    counters = {name: float(s.values[-1]) for name, s in before.items() if len(s.t)}
    acc = KpiAccumulator(machine, t0, t1, programs, faults, dict(ideal_cycle_s or {}),
                         counters_before=counters)  # fmt: skip
    for a in np.arange(t0, t1, chunk_s):
        b = min(float(a) + chunk_s, t1)
        series = store.query(machine, CHUNK_SIGNALS, float(a), b, buckets=2**31 - 1)
        base = series.get("execution") or next(iter(series.values()), None)
        if base is None:
            continue
        acc.add(base.t, {name: _at(s.t, s.values, base.t) for name, s in series.items()})
    return acc.result()


def _at(t: np.ndarray, values: np.ndarray, at: np.ndarray) -> np.ndarray:
    """``values`` (sampled at ``t``) held at the times ``at``: the latest one at or before."""
    if len(t) == len(at) and np.array_equal(t, at):
        return values
    idx = np.searchsorted(t, at, side="right") - 1
    out = values[np.clip(idx, 0, None)].astype(float)
    out[idx < 0] = np.nan
    return out


def _program_name(value: object) -> str:
    if isinstance(value, dict):
        return str(value.get("name") or "?")
    return str(value) if value else "?"
