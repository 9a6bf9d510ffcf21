"""Turn one machine's sample batches and events into observations of its MTConnect device.

Batches are converted column-wise: every canonical column with a data item becomes a
row of a (items x samples) matrix, scaled to MTConnect units, and only values that
changed (duplicates are filtered, as agents do) enter the buffer, in time order.
"""

from __future__ import annotations

import numpy as np

from ...model import MachineEvent, SampleBatch, Severity
from .buffer import ConditionPayload, ObservationBuffer, objects
from .model import AVAILABILITY_VALUES, DataItem, Device, alarm_condition_id


class DeviceFeed:
    """Writes one device's observations into the agent's buffer."""

    def __init__(self, device: Device, buffer: ObservationBuffer, filter_samples: bool = True,
                 device_signals: tuple[str, ...] = ()) -> None:  # fmt: skip
        self.device = device
        self.buffer = buffer
        self.filter_samples = filter_samples
        items = device.items()
        self.items = items
        self.by_id = {i.id: i for i in items}
        self.by_signal = {i.signal: i for i in items if i.signal}
        self.avail = next(i for i in items if i.type == "AVAILABILITY")
        self.available = False
        # a machine that samples its execution state says it better, at every sample
        # time; its execution events may carry a later time (a batch's end)
        self.execution_sampled = "execution" in device_signals
        numeric = [i for i in items if i.signal and i.kind in ("num", "enum")]
        self.numeric = numeric
        self.numeric_index = np.array([i.index for i in numeric], np.int32)
        self.numeric_scale = np.array([i.scale for i in numeric])
        # enum codes outside their vocabulary are reported as UNAVAILABLE
        self.enum_limit = np.array([len(i.values) if i.values else np.inf for i in numeric])
        self.is_sample = np.array([i.category == "SAMPLE" for i in numeric])

    def ingest_batch(self, batch: SampleBatch) -> None:
        self._ingest_columns(batch)
        series = self.by_signal.get("spindle.vib")
        for w in batch.waveforms:
            if series is not None and w.signal == series.signal and len(w.values):
                # a time series is stamped with the time of its last value (MTConnect)
                t_last = w.t0 + (len(w.values) - 1) / w.rate_hz
                payload = (w.rate_hz, np.asarray(w.values, np.float64) * series.scale)
                self.buffer.append(np.array([series.index], np.int32), np.array([t_last]),
                                   np.array([np.nan]), objects([payload]))  # fmt: skip

    def _ingest_columns(self, batch: SampleBatch) -> None:
        present = [j for j, i in enumerate(self.numeric) if i.signal in batch.columns]
        n = len(batch)
        if not present or n == 0:
            return
        sel = np.array(present)
        values = np.stack([np.asarray(batch.columns[self.numeric[j].signal], np.float64)
                           for j in present]) * self.numeric_scale[sel, None]  # fmt: skip
        values[~np.isfinite(values)] = np.nan  # an infinite reading is no value: UNAVAILABLE
        bad = (values < 0) | (values >= self.enum_limit[sel, None])
        values[bad & np.isfinite(self.enum_limit[sel, None])] = np.nan
        index = self.numeric_index[sel]
        prev = self.buffer.latest_value[index]
        before = np.concatenate([prev[:, None], values[:, :-1]], axis=1)
        same = (values == before) | (np.isnan(values) & np.isnan(before))
        keep = ~same
        if not self.filter_samples:
            keep |= self.is_sample[sel, None]
        # sample-major order: observations in time order, items in model order within one
        mask = keep.T.ravel()
        items = np.tile(index, n)[mask]
        t = np.repeat(np.asarray(batch.t, np.float64), len(present))[mask]
        self.buffer.append(items, t, values.T.ravel()[mask])

    def set_value(self, item: DataItem, t: float, value: float | str | None) -> None:
        """One observation, skipped if the item already has this value."""
        b = self.buffer
        if item.kind in ("text", "series"):
            latest = b.latest_text[item.index]
            if b.latest_seq[item.index] and (latest is value or (isinstance(latest, str)
                                                                 and latest == value)):  # fmt: skip
                return
            b.append(np.array([item.index], np.int32), np.array([t]), np.array([np.nan]),
                     objects([value]))  # fmt: skip
            return
        if isinstance(value, str):
            value = float(item.values.index(value)) if value in (item.values or ()) else None
        v = np.nan if value is None else float(value) * item.scale
        v = v if np.isfinite(v) else np.nan
        old = b.latest_value[item.index]
        if b.latest_seq[item.index] and (old == v or (np.isnan(old) and np.isnan(v))):
            return
        b.append(np.array([item.index], np.int32), np.array([t]), np.array([v]))

    def ingest_event(self, event: MachineEvent) -> None:
        kind, t = event.kind, event.t
        if kind == "unavailable":
            self.set_unavailable(t)
        elif kind in ("alarm", "alarm_cleared") and event.alarm is not None:
            self._alarm(event, t)
        elif kind == "execution" and not self.execution_sampled:
            self.set_value(self.by_signal["execution"], t, str(event.value))
        elif kind == "program":
            value = event.value  # a name, or {"name": ..., "text": ...}
            name = value.get("name") if isinstance(value, dict) else value
            self.set_value(self.by_signal["program"], t, str(name))
        elif kind == "tool" and "tool" in self.by_signal:
            self.set_value(self.by_signal["tool"], t, float(event.value))
        elif kind == "part" and "part_count" in self.by_signal:
            self.set_value(self.by_signal["part_count"], t, float(event.value))

    def _alarm(self, event: MachineEvent, t: float) -> None:
        alarm = event.alarm
        assert alarm is not None
        item = self.by_id[alarm_condition_id(self.device, alarm.code, alarm.source)]
        cleared = event.kind == "alarm_cleared" or alarm.cleared_at is not None
        level = (
            "NORMAL" if cleared else ("FAULT" if alarm.severity >= Severity.FAULT else "WARNING")
        )
        payload: ConditionPayload = (level, str(alarm.code), alarm.severity.name, "",
                                     "" if cleared else alarm.message)  # fmt: skip
        self.buffer.append_condition(item.index, t, payload)

    def set_available(self, t: float) -> None:
        """The machine reports: AVAILABLE, and its conditions NORMAL until it says otherwise."""
        self.available = True
        self.set_value(self.avail, t, AVAILABILITY_VALUES[0])
        for item in self.items:
            if item.category == "CONDITION":
                self.buffer.append_condition(item.index, t, ("NORMAL", "", "", "", ""))

    def set_unavailable(self, t: float) -> None:
        """Every data item UNAVAILABLE (the machine or its adapter is gone)."""
        self.available = False
        for item in self.items:
            if item is self.avail:
                self.set_value(item, t, AVAILABILITY_VALUES[1])
            elif item.category == "CONDITION":
                self.buffer.append_condition(item.index, t, ("UNAVAILABLE", "", "", "", ""))
            elif item.type != "ROTARY_MODE":  # a constant of the machine's build
                self.set_value(item, t, None)
