"""Observations (from an agent's stream or an SHDR adapter) -> sample batches and events.

A :class:`.streams.StreamChunk` becomes one :class:`SampleBatch` on the union of its
timestamps, every signal carried forward from its last value (MTConnect reports
changes only), plus events for execution, program and condition changes. Condition
states are tracked per (data item, native code) so that a repeated report raises
nothing and a NORMAL clears exactly what it names.
"""

from __future__ import annotations

import numpy as np

from ...model import Alarm, AlarmCode, Execution, MachineEvent, SampleBatch, Severity, Waveform
from .model import CONDITION_ALARM
from .streams import ClientItem, StreamChunk, condition_level


class Converter:
    """Stateful conversion of one machine's observations (state survives resyncs)."""

    def __init__(self, machine_id: str) -> None:
        self.machine_id = machine_id
        self.signals: list[str] = []
        self.index: dict[str, int] = {}
        self.last: np.ndarray = np.zeros(0)  # carried-forward value of each signal
        self.ever: np.ndarray = np.zeros(0, bool)  # had a finite value: worth a column
        self.execution: str | None = None
        self.program: str | None = None
        self.active: dict[tuple[str, str], Alarm] = {}  # (item id, native code) -> alarm

    def set_signals(self, signals: list[str]) -> None:
        if signals == self.signals:
            return
        self.signals = list(signals)
        self.index = {s: k for k, s in enumerate(self.signals)}
        self.last = np.full(len(signals), np.nan)
        self.ever = np.zeros(len(signals), bool)

    def convert(
        self, chunk: StreamChunk, current: bool = False
    ) -> list[SampleBatch | MachineEvent]:
        """Events first (they explain the samples), then the batch."""
        out: list[SampleBatch | MachineEvent] = list(self.events(chunk, current))
        batch = self.batch(chunk, snapshot=current)
        waveforms = [] if current else self.waveforms(chunk)  # /current: old windows
        if waveforms:
            if batch is None:
                batch = SampleBatch(self.machine_id, np.zeros(0), {})
            batch.waveforms.extend(waveforms)
        if batch is not None:
            out.append(batch)
        return out

    def waveforms(self, chunk: StreamChunk) -> list[Waveform]:
        """Time series observations as waveforms (stamped with their last value's time)."""
        out = []
        for t, item, attrs in chunk.others:
            if item.kind != "series" or item.signal is None:
                continue
            rate = _positive(attrs.get("sampleRate")) or item.sample_rate
            try:
                values = np.array(attrs["value"].split(), np.float64) / item.scale
            except ValueError:  # UNAVAILABLE, or not numbers
                continue
            if rate and len(values):
                t0 = t - (len(values) - 1) / rate
                out.append(Waveform(item.signal, t0, rate, values.astype(np.float32)))
        return out

    def batch(self, chunk: StreamChunk, snapshot: bool = False) -> SampleBatch | None:
        """``snapshot``: a /current document, one row at its newest time (older times
        would show signals whose newest value is later as unknown)."""
        sig, t, v = self._numeric_with_enums(chunk)
        if len(t) == 0 or not self.signals:
            return None
        t_all = np.array([t.max()]) if snapshot else np.unique(t)
        order = np.lexsort((np.arange(len(t)), t, sig))  # by signal, then time, then arrival
        sig, t, v = sig[order], t[order], v[order]
        bounds = np.searchsorted(sig, np.arange(len(self.signals) + 1))
        columns: dict[str, np.ndarray] = {}
        for k, name in enumerate(self.signals):
            ts, vs = t[bounds[k] : bounds[k + 1]], v[bounds[k] : bounds[k + 1]]
            if len(vs):
                at = np.searchsorted(ts, t_all, side="right") - 1
                columns[name] = np.where(at >= 0, vs[np.maximum(at, 0)], self.last[k])
                self.last[k] = vs[-1]
                self.ever[k] |= bool(np.isfinite(vs).any())
            else:
                columns[name] = np.full(len(t_all), self.last[k])
            if not self.ever[k]:
                del columns[name]
        for axis in "xyz":  # following error is what the two positions differ by
            if f"{axis}.pos" in columns and f"{axis}.pos_cmd" in columns:
                columns[f"{axis}.ferr"] = columns[f"{axis}.pos_cmd"] - columns[f"{axis}.pos"]
        return SampleBatch(self.machine_id, t_all, columns)

    def _numeric_with_enums(self, chunk: StreamChunk) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        enums = [
            (self.index[item.signal], t, item.values.get(attrs["value"], np.nan))
            for t, item, attrs in chunk.others
            if item.kind == "enum" and item.signal in self.index
        ]
        if not enums:
            return chunk.signal, chunk.t, chunk.value
        e_sig, e_t, e_v = (np.array(c) for c in zip(*enums, strict=True))
        return (
            np.concatenate([chunk.signal, e_sig.astype(np.int32)]),
            np.concatenate([chunk.t, e_t]),
            np.concatenate([chunk.value, e_v]),
        )

    def events(self, chunk: StreamChunk, current: bool = False) -> list[MachineEvent]:
        out: list[MachineEvent] = []
        seen: set[tuple[str, str]] = set()
        for t, item, attrs in chunk.others:
            value = attrs["value"]
            if item.signal == "execution":
                name = _execution_name(item, value)
                if name is not None and name != self.execution:
                    self.execution = name
                    out.append(MachineEvent(self.machine_id, t, "execution", value=name))
            elif item.signal == "program" and value != "UNAVAILABLE" and value != self.program:
                self.program = value
                out.append(MachineEvent(self.machine_id, t, "program", value=value))
            elif item.kind == "cond":
                out.extend(self._condition(t, item, attrs, seen))
        if current:  # what is no longer reported active was cleared while we were away
            t_now = max([t for t, _, _ in chunk.others], default=0.0)
            for key in [k for k in self.active if k not in seen]:
                out.append(self._clear(key, t_now))
        return out

    def _condition(
        self, t: float, item: ClientItem, attrs: dict[str, str], seen: set[tuple[str, str]]
    ) -> list[MachineEvent]:
        level = condition_level(attrs)
        code = attrs.get("nativeCode", "")
        if level in ("WARNING", "FAULT"):
            key = (item.id, code)
            seen.add(key)
            if key in self.active:
                return []
            alarm = _alarm(item, attrs, level, t)
            self.active[key] = alarm
            return [MachineEvent(self.machine_id, t, "alarm", alarm=alarm)]
        if level == "NORMAL":
            keys = [k for k in self.active if k[0] == item.id and (not code or k[1] == code)]
            return [self._clear(key, t) for key in keys]
        seen.update(k for k in self.active if k[0] == item.id)  # UNAVAILABLE: state unknown
        return []

    def _clear(self, key: tuple[str, str], t: float) -> MachineEvent:
        alarm = self.active.pop(key)
        alarm.cleared_at = max(t, alarm.raised_at)
        return MachineEvent(self.machine_id, alarm.cleared_at, "alarm_cleared", alarm=alarm)


def _execution_name(item: ClientItem, value: str) -> str | None:
    code = item.values.get(value)
    return None if code is None else Execution(int(code)).name


def _alarm(item: ClientItem, attrs: dict[str, str], level: str, t: float) -> Alarm:
    native = attrs.get("nativeCode", "")
    try:
        code = AlarmCode(native)
        message = attrs["value"]
    except ValueError:  # another agent's own code: classify by condition type, keep the code
        code = CONDITION_ALARM.get(item.type, AlarmCode.DRIVE_FAULT)
        message = f"[{native or item.type}] {attrs['value']}".strip()
    severity = Severity.FAULT if level == "FAULT" else Severity.WARNING
    native_severity = attrs.get("nativeSeverity", "").upper()
    if native_severity in ("CRITICAL", "INFO"):
        severity = Severity[native_severity]
    return Alarm(code, severity, message, item.source, t)


def _positive(text: str | None) -> float | None:
    try:
        value = float(text) if text else None
    except ValueError:
        return None
    return value if value is not None and value > 0 and np.isfinite(value) else None
