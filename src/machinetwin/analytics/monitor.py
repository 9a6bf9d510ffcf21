"""Continuous condition monitoring of one machine: bearing, tool and anomaly watches.

:class:`MachineMonitor` takes the machine's batches and events as they arrive and
returns :class:`Finding` s: an alarm to raise (with an explanation an engineer can act
on) or to clear, and the latest diagnosis values. It keeps only small per-machine
state, so the hub's analytics worker runs one per machine, and the fleet evaluation
(benchmarks/fleet_detection.py) runs the very same objects on simulated fleets.

- Bearing: every spindle vibration window is diagnosed (envelope analysis at the
  bearing's defect frequencies, :func:`.bearing_diagnosis.diagnose_bearing`); a
  defect is raised when one fault class wins ``BEARING_VOTES`` of the last
  ``BEARING_HISTORY`` windows, cleared after as many normal windows in a row. One
  window alone never raises: a chatter line can look like a defect once.
- Tool and anomaly, compared like with like: the telemetry is cut into program
  cycles (at each part count step and program change); the first
  ``BASELINE_CYCLES`` cycles of a program are its baseline, per (tool, line) for the
  spindle load while cutting and per line for each axis' following error. Every later
  cycle gives each tool a load ratio over the lines it cut; above ``WORN_RATIO`` in
  ``WORN_CYCLES`` cycles in a row raises "tool worn" with the trend and the time left
  before ``END_OF_LIFE_RATIO`` (linear fit, ± one standard error). An axis whose
  following error RMS is ``ANOMALY_RATIO`` times its baseline's on the same lines in
  ``ANOMALY_CYCLES`` cycles in a row raises an anomaly (backlash, encoder, drive).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict, deque
from dataclasses import dataclass, field

import numpy as np

from ..model import Alarm, AlarmCode, MachineEvent, SampleBatch, Severity
from .bearing_diagnosis import diagnose_bearing
from .bearings import BearingGeometry

VIBRATION_SIGNAL = "spindle.vib"
MIN_SHAFT_HZ = 5.0  # below this the defect lines crowd the envelope's low end
BEARING_HISTORY = 4
BEARING_VOTES = 3
BEARING_MIN_CONFIDENCE = 0.6

BASELINE_CYCLES = 2
CUTTING_LOAD_PCT = 0.5  # spindle load above idle: the tool is in the material
MIN_LINE_SAMPLES = 3
WORN_RATIO = 1.08  # load 8 % over the program's first cycles: the edge is wearing
END_OF_LIFE_RATIO = 1.15  # the virtual mill's spindle load at VB = 0.3 mm (ISO 8688-2 end of life)
WORN_CYCLES = 2
TREND_CYCLES = 8

ANOMALY_RATIO = 2.0  # following error RMS twice the first cycles' on the same lines
ANOMALY_CYCLES = 2

BEARING_NAMES = {"inner_race": "inner-race", "outer_race": "outer-race", "ball": "rolling-element"}


@dataclass(frozen=True, slots=True)
class Finding:
    """An alarm the monitor raises or clears (``alarm.cleared_at`` set), or, with
    ``alarm`` None, the latest diagnosis values (``values``) worth showing."""

    machine: str
    t: float
    alarm: Alarm | None = None
    values: dict[str, float | str] = field(default_factory=dict)

    def event(self) -> MachineEvent:
        """As the event the hub's ingest stores (alarm, alarm_cleared or diagnosis)."""
        if self.alarm is None:
            return MachineEvent(self.machine, self.t, "diagnosis", value=dict(self.values))
        kind = "alarm" if self.alarm.cleared_at is None else "alarm_cleared"
        return MachineEvent(self.machine, self.t, kind, alarm=self.alarm)


def bearing_of(config_bearing: object) -> BearingGeometry:
    """The analytics' geometry of a machine config's spindle bearing."""
    b = config_bearing
    return BearingGeometry(b.designation, b.balls, b.ball_diameter, b.pitch_diameter,  # type: ignore[attr-defined]
                           b.contact_angle)  # type: ignore[attr-defined]  # fmt: skip


def _clock(t: float) -> str:
    return f"{dt.datetime.fromtimestamp(t, dt.UTC):%H:%M} UTC"


class MachineMonitor:
    """All watches of one machine (see the module docstring)."""

    def __init__(self, machine: str, bearing: BearingGeometry, name: str | None = None) -> None:
        self.machine = machine
        self.name = name or machine
        self.bearing = BearingWatch(self, bearing)
        self.cycles = CycleWatch(self)
        self.program = "?"

    def on_event(self, event: MachineEvent) -> list[Finding]:
        if event.kind == "program":
            value = event.value
            name = value.get("name") if isinstance(value, dict) else value
            if name and name != self.program:
                self.program = str(name)
                return self.cycles.end_cycle(event.t)
        return []

    def update(self, batch: SampleBatch) -> list[Finding]:
        out: list[Finding] = []
        for w in batch.waveforms:
            if w.signal == VIBRATION_SIGNAL:
                out += self.bearing.window(w.t0, w.values, w.rate_hz, w.rpm, batch)
        out += self.cycles.update(batch, self.program)
        return out

    def alarm(self, t: float, code: AlarmCode, severity: Severity, source: str,
              message: str) -> Finding:  # fmt: skip
        return Finding(self.machine, t, Alarm(code, severity, message, source, t))

    def clear(self, t: float, raised: Alarm) -> Finding:
        return Finding(self.machine, t, Alarm(raised.code, raised.severity, raised.message,
                                              raised.source, raised.raised_at, cleared_at=t))  # fmt: skip


# --- bearing ---------------------------------------------------------------------------------


class BearingWatch:
    def __init__(self, monitor: MachineMonitor, geometry: BearingGeometry) -> None:
        self.monitor = monitor
        self.geometry = geometry
        self.history: deque[tuple[float, str, float, str]] = deque(maxlen=BEARING_HISTORY)
        self.active: Alarm | None = None
        self.active_label = ""
        self.normal_run = 0

    def window(self, t0: float, values: np.ndarray, rate_hz: float, rpm: float | None,
               batch: SampleBatch) -> list[Finding]:  # fmt: skip
        shaft_hz = abs(rpm if rpm is not None else _mean(batch, "spindle.speed")) / 60.0
        if not shaft_hz >= MIN_SHAFT_HZ or len(values) < rate_hz * 0.5:
            return []
        d = diagnose_bearing(values, rate_hz, shaft_hz, self.geometry)
        label = d.label if d.confidence >= BEARING_MIN_CONFIDENCE else "normal"
        self.history.append((t0, label, d.confidence, d.explanation))
        out = [Finding(self.monitor.machine, t0, values={
            "bearing.diagnosis": d.label, "bearing.confidence": round(d.confidence, 3),
            "bearing.explanation": d.explanation})]  # fmt: skip
        self.normal_run = self.normal_run + 1 if label == "normal" else 0
        if self.active is not None and self.normal_run >= BEARING_HISTORY:
            out.append(self.monitor.clear(t0, self.active))
            self.active = None
        votes = [h for h in self.history if h[1] == label]
        changed = self.active is None or label != self.active_label
        if label != "normal" and len(votes) >= BEARING_VOTES and changed:
            if self.active is not None:  # another defect class now wins: say so
                out.append(self.monitor.clear(t0, self.active))
            self.active = self._raise(t0, label, votes, d.explanation)
            self.active_label = label
            out.append(Finding(self.monitor.machine, t0, self.active))
        return out

    def _raise(self, t: float, label: str, votes: list, explanation: str) -> Alarm:
        first = votes[0][0]
        hours = (t - first) / 3600
        detail = explanation.split(": ", 1)[-1]
        message = (f"{BEARING_NAMES[label]} defect suspected on {self.monitor.name} spindle "
                   f"bearing {self.geometry.designation}: {detail}; in {len(votes)} of the last "
                   f"{len(self.history)} vibration windows since {_clock(first)}"
                   f"{f' ({hours:.1f} h)' if hours >= 0.1 else ''}")  # fmt: skip
        return Alarm(AlarmCode.BEARING_DEFECT, Severity.WARNING, message, "spindle.bearing", t)


# --- cycles: tool and anomaly ------------------------------------------------------------------

FERR_SIGNALS = ("x.ferr", "y.ferr", "z.ferr")


@dataclass
class _Cycle:
    """One program cycle's sums per (tool, line): spindle load while cutting, [Σ, n];
    and per line the squared following error of each axis, [Σx², Σy², Σz², n]."""

    program: str
    load: dict[tuple[int, int], list[float]] = field(
        default_factory=lambda: defaultdict(lambda: [0.0, 0])
    )
    ferr: dict[int, np.ndarray] = field(default_factory=lambda: defaultdict(lambda: np.zeros(4)))

    def add(self, cols: dict, rows: slice) -> None:
        line = np.asarray(cols["line"][rows], float)
        ok = np.isfinite(line)
        lines = line[ok].astype(np.int64)
        if "spindle.load" in cols and "tool" in cols:
            self._add_load(cols, rows, ok, lines)
        if all(f in cols for f in FERR_SIGNALS) and len(lines):
            uniq, inv = np.unique(lines, return_inverse=True)
            squares = [np.bincount(inv, weights=np.nan_to_num(np.asarray(cols[f][rows], float)[ok]) ** 2)
                       for f in FERR_SIGNALS]  # fmt: skip
            counts = np.bincount(inv)
            for i, ln in enumerate(uniq.tolist()):
                self.ferr[ln] += (squares[0][i], squares[1][i], squares[2][i], counts[i])

    def _add_load(self, cols: dict, rows: slice, ok: np.ndarray, lines: np.ndarray) -> None:
        load = np.asarray(cols["spindle.load"][rows], float)[ok]
        cutting = np.isfinite(load) & (load > CUTTING_LOAD_PCT)
        if not cutting.any():
            return
        tool = np.asarray(cols["tool"][rows], float)[ok][cutting].astype(np.int64)
        key = tool * 1_000_000 + lines[cutting]
        uniq, inv = np.unique(key, return_inverse=True)
        sums, counts = np.bincount(inv, weights=load[cutting]), np.bincount(inv)
        for k, s_, n in zip(uniq.tolist(), sums.tolist(), counts.tolist(), strict=True):
            acc = self.load[(k // 1_000_000, k % 1_000_000)]
            acc[0] += s_
            acc[1] += n


@dataclass
class _Baseline:
    """The first BASELINE_CYCLES cycles of one program, summed like a cycle."""

    cycles: int = 0
    load: dict[tuple[int, int], list[float]] = field(
        default_factory=lambda: defaultdict(lambda: [0.0, 0])
    )
    ferr: dict[int, np.ndarray] = field(default_factory=lambda: defaultdict(lambda: np.zeros(4)))

    def absorb(self, cycle: _Cycle) -> None:
        self.cycles += 1
        for key, (s_, n) in cycle.load.items():
            self.load[key][0] += s_
            self.load[key][1] += n
        for ln, v in cycle.ferr.items():
            self.ferr[ln] += v


class CycleWatch:
    """Cuts the telemetry into program cycles (at part count steps and program
    changes) and compares each cycle with the program's first ones: tool load per
    tool, following error per axis."""

    def __init__(self, monitor: MachineMonitor) -> None:
        self.monitor = monitor
        self.cycle: _Cycle | None = None
        self.parts: float | None = None  # last part count seen
        self.baselines: dict[str, _Baseline] = defaultdict(_Baseline)
        self.ratios: dict[int, deque[tuple[float, float]]] = defaultdict(
            lambda: deque(maxlen=TREND_CYCLES)
        )
        self.tool_alarms: dict[int, Alarm] = {}
        self.odd_cycles = 0
        self.anomaly: Alarm | None = None

    def update(self, batch: SampleBatch, program: str) -> list[Finding]:
        cols = batch.columns
        if "line" not in cols or not len(batch.t):
            return []
        out: list[Finding] = []
        if self.cycle is None or self.cycle.program != program:
            out += self.end_cycle(float(batch.t[0]))
            self.cycle = _Cycle(program)
        split = self._part_split(cols.get("part_count"))
        if split is not None:  # a part was finished inside this batch: close the cycle there
            self.cycle.add(cols, slice(0, split))
            out += self.end_cycle(float(batch.t[max(0, split - 1)]))
            self.cycle = _Cycle(program)
            self.cycle.add(cols, slice(split, None))
        else:
            self.cycle.add(cols, slice(None))
        return out

    def _part_split(self, parts: np.ndarray | None) -> int | None:
        """The first row after a part count step in this batch, None without one."""
        if parts is None or not len(parts):
            return None
        prev, self.parts = self.parts, float(parts[-1])
        if prev is None:
            return None
        steps = np.flatnonzero(np.diff(np.asarray(parts, float), prepend=prev) > 0)
        return int(steps[0]) if len(steps) else None

    def end_cycle(self, t: float) -> list[Finding]:
        cycle, self.cycle = self.cycle, None
        if cycle is None or cycle.program == "?" or not (cycle.load or cycle.ferr):
            return []
        base = self.baselines[cycle.program]
        if base.cycles < BASELINE_CYCLES:
            base.absorb(cycle)
            return []
        return self._judge_tools(t, cycle, base) + self._judge_motion(t, cycle, base)

    # tool wear: load per tool against the same lines of the first cycles

    def _judge_tools(self, t: float, cycle: _Cycle, base: _Baseline) -> list[Finding]:
        per_tool: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for key, (s_, n) in cycle.load.items():
            b = base.load.get(key)
            if b is None or b[1] < MIN_LINE_SAMPLES or n < MIN_LINE_SAMPLES:
                continue
            per_tool[key[0]][0] += s_  # this cycle's load on the line
            per_tool[key[0]][1] += b[0] / b[1] * n  # the first cycles' load, as many samples
        out: list[Finding] = []
        for tool, (load, expected) in sorted(per_tool.items()):
            if expected <= 0:
                continue
            ratio = load / expected
            self.ratios[tool].append((t, ratio))
            out.append(
                Finding(
                    self.monitor.machine, t, values={f"tool.T{tool}.load_ratio": round(ratio, 4)}
                )
            )
            out += self._tool_alarm(t, cycle.program, tool)
        return out

    def _tool_alarm(self, t: float, program: str, tool: int) -> list[Finding]:
        history = list(self.ratios[tool])
        recent = [r for _, r in history[-WORN_CYCLES:]]
        worn = len(recent) == WORN_CYCLES and min(recent) >= WORN_RATIO
        active = self.tool_alarms.get(tool)
        if worn and active is None:
            message = (f"tool T{tool} worn on {self.monitor.name}: spindle load "
                       f"{100 * (recent[-1] - 1):.0f} % above its first cycles on the same lines "
                       f"of {program}{_trend_text(history)}")  # fmt: skip
            alarm = Alarm(AlarmCode.TOOL_WORN, Severity.WARNING, message, f"tool.T{tool}", t)
            self.tool_alarms[tool] = alarm
            return [Finding(self.monitor.machine, t, alarm)]
        if active is not None and recent and max(recent) < WORN_RATIO * 0.97:
            del self.tool_alarms[tool]  # a fresh edge: the load is back
            return [self.monitor.clear(t, active)]
        return []

    # anomaly: following error per axis against the same lines of the first cycles

    def _judge_motion(self, t: float, cycle: _Cycle, base: _Baseline) -> list[Finding]:
        now, expected = np.zeros(3), np.zeros(3)
        for ln, v in cycle.ferr.items():
            b = base.ferr.get(ln)
            if b is None or b[3] < MIN_LINE_SAMPLES or v[3] < MIN_LINE_SAMPLES:
                continue
            now += v[:3]
            expected += b[:3] / b[3] * v[3]
        if not (expected > 0).any():
            return []
        ratio = np.sqrt(now / np.maximum(expected, 1e-18))  # RMS over RMS
        worst = int(np.argmax(ratio))
        odd = ratio[worst] > ANOMALY_RATIO
        self.odd_cycles = self.odd_cycles + 1 if odd else 0
        axis = "xyz"[worst]
        out = [Finding(self.monitor.machine, t, values={f"{a}.ferr_ratio": round(float(r), 4)
                                                        for a, r in zip("xyz", ratio, strict=True)})]  # fmt: skip
        if self.odd_cycles >= ANOMALY_CYCLES and self.anomaly is None:
            message = (f"unusual motion on {self.monitor.name} {axis.upper()} axis: following error "
                       f"{ratio[worst]:.1f}× its first cycles of {cycle.program} on the same lines, "
                       f"{self.odd_cycles} cycles in a row (backlash, encoder or drive?)")  # fmt: skip
            self.anomaly = Alarm(AlarmCode.ANOMALY, Severity.WARNING, message, f"{axis}.motion", t)
            out.append(Finding(self.monitor.machine, t, self.anomaly))
        elif self.anomaly is not None and self.odd_cycles == 0:
            out.append(self.monitor.clear(t, self.anomaly))
            self.anomaly = None
        return out


def _trend_text(history: list[tuple[float, float]]) -> str:
    """ ", rising 3.1 %/h; end of life (load +30 %) in about 1.6 ± 0.4 h" from a
    linear fit of the ratios over time."""
    if len(history) < 3:
        return ""
    t = np.array([h[0] for h in history])
    r = np.array([h[1] for h in history])
    hours = (t - t[0]) / 3600
    if np.ptp(hours) <= 0:
        return ""
    slope, intercept = np.polyfit(hours, r, 1)
    if slope <= 0:
        return "; not rising"
    residual = r - (slope * hours + intercept)
    se = float(
        np.sqrt((residual @ residual) / max(1, len(r) - 2) / ((hours - hours.mean()) ** 2).sum())
    )
    limit = f"+{100 * (END_OF_LIFE_RATIO - 1):.0f} %"
    left = (END_OF_LIFE_RATIO - r[-1]) / slope
    if left <= 0:
        return f", rising {100 * slope:.1f} %/h; past the end-of-life load ({limit})"
    spread = left * se / slope
    return f", rising {100 * slope:.1f} %/h; end of life (load {limit}) in about {left:.1f} ± {spread:.1f} h"


def _mean(batch: SampleBatch, name: str) -> float:
    v = batch.columns.get(name)
    return float(np.nanmean(v)) if v is not None and len(v) else float("nan")
