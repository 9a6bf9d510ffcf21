"""The agent's observation buffer: a fixed-size columnar ring indexed by sequence number.

Observation ``seq`` lives at slot ``seq % capacity`` of four numpy columns (data item,
timestamp, numeric value, text). Only text values (program names, condition
payloads) are Python objects; numeric samples never are. ``firstSequence`` is the
oldest sequence still held, ``nextSequence`` the one the next observation gets, as
the MTConnect standard defines them; a request outside ``[first, next]`` is
OUT_OF_RANGE.

What leaves the ring is folded into a checkpoint (each item's last observation and the
active conditions before ``firstSequence``), so the state at any held sequence
(``/current?at=``) is exact: the checkpoint plus the held observations up to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

# a condition observation: (level, native_code, native_severity, qualifier, message)
ConditionPayload = tuple[str, str, str, str, str]


@dataclass(slots=True)
class Observations:
    """A selection of observations, column-wise, in sequence order."""

    seq: np.ndarray  # int64
    item: np.ndarray  # int32, index in the agent's item table
    t: np.ndarray  # float64, s since the epoch (UTC)
    value: np.ndarray  # float64, NaN = UNAVAILABLE for numeric items
    text: np.ndarray  # object: str / ConditionPayload / None

    def __len__(self) -> int:
        return len(self.seq)

    def take(self, index: np.ndarray) -> Observations:
        return Observations(self.seq[index], self.item[index], self.t[index],
                            self.value[index], self.text[index])  # fmt: skip


class ObservationBuffer:
    """Fixed-capacity ring of observations with MTConnect sequence arithmetic."""

    def __init__(self, n_items: int, capacity: int = 131072,
                 conditions: np.ndarray | None = None) -> None:  # fmt: skip
        if capacity < 1:
            raise ValueError(f"buffer capacity must be at least 1, got {capacity}")
        # which items are conditions (their text is a ConditionPayload)
        self.is_condition = (np.zeros(n_items, bool) if conditions is None
                             else np.asarray(conditions, bool))  # fmt: skip
        # the state before firstSequence: what left the ring, folded (see state_at)
        self.cp_seq = np.zeros(n_items, np.int64)
        self.cp_t = np.zeros(n_items, np.float64)
        self.cp_value = np.full(n_items, np.nan)
        self.cp_text = np.empty(n_items, object)
        self.cp_active: dict[int, dict[str, tuple[int, float, ConditionPayload]]] = {}
        self.capacity = capacity
        self.item = np.zeros(capacity, np.int32)
        self.t = np.zeros(capacity, np.float64)
        self.value = np.zeros(capacity, np.float64)
        self.text = np.empty(capacity, object)
        self.next_sequence = 1
        # the newest observation of every item, for /current and duplicate filtering
        self.latest_seq = np.zeros(n_items, np.int64)
        self.latest_t = np.zeros(n_items, np.float64)
        self.latest_value = np.full(n_items, np.nan)
        self.latest_text = np.empty(n_items, object)
        # active conditions per condition item: native code -> (seq, t, payload)
        self.active: dict[int, dict[str, tuple[int, float, ConditionPayload]]] = {}

    @property
    def first_sequence(self) -> int:
        return max(1, self.next_sequence - self.capacity)

    @property
    def last_sequence(self) -> int:
        """The newest sequence held (``first - 1`` = 0 while the buffer is empty)."""
        return self.next_sequence - 1

    def append(self, item: np.ndarray, t: np.ndarray, value: np.ndarray,
               text: np.ndarray | None = None) -> int:  # fmt: skip
        """Append observations (already in time order); returns the first sequence given."""
        m = len(item)
        first = self.next_sequence
        if m == 0:
            return first
        if text is None:
            text = np.empty(m, object)
        keep = slice(max(0, m - self.capacity), m)  # older ones would be overwritten at once
        seqs = np.arange(first, first + m, dtype=np.int64)
        slots = seqs[keep] % self.capacity
        # what leaves the ring goes into the checkpoint first: the held observations the
        # new ones overwrite, then new ones that would be overwritten at once
        new_first = max(1, first + m - self.capacity)
        if new_first > self.first_sequence:
            self._fold(self.select(self.first_sequence, min(new_first, first)))
        if keep.start:
            drop = slice(0, keep.start)
            self._fold(Observations(seqs[drop], item[drop], t[drop], value[drop], text[drop]))
        self.item[slots] = item[keep]
        self.t[slots] = t[keep]
        self.value[slots] = value[keep]
        self.text[slots] = text[keep]
        self.next_sequence = first + m
        self._update_latest(item, t, value, text, seqs)
        return first

    def _update_latest(self, item: np.ndarray, t: np.ndarray, value: np.ndarray,
                       text: np.ndarray, seqs: np.ndarray) -> None:  # fmt: skip
        # the last occurrence of each item in this append wins
        rev_items, rev_first = np.unique(item[::-1], return_index=True)
        last = len(item) - 1 - rev_first
        self.latest_seq[rev_items] = seqs[last]
        self.latest_t[rev_items] = t[last]
        self.latest_value[rev_items] = value[last]
        self.latest_text[rev_items] = text[last]

    def _fold(self, obs: Observations) -> None:
        """Observations (in sequence order) into the checkpoint: the last of each item
        wins; conditions replay into the checkpoint's active sets (few, Python)."""
        if len(obs) == 0:
            return
        rev_items, rev_first = np.unique(obs.item[::-1], return_index=True)
        last = len(obs.item) - 1 - rev_first
        self.cp_seq[rev_items] = obs.seq[last]
        self.cp_t[rev_items] = obs.t[last]
        self.cp_value[rev_items] = obs.value[last]
        self.cp_text[rev_items] = obs.text[last]
        for k in np.flatnonzero(self.is_condition[obs.item]).tolist():
            apply_condition(self.cp_active.setdefault(int(obs.item[k]), {}), int(obs.seq[k]),
                            float(obs.t[k]), obs.text[k])  # fmt: skip

    def append_condition(self, item: int, t: float, payload: ConditionPayload) -> int:
        """Append one condition observation and update the item's active set."""
        self.is_condition[item] = True
        seq = self.append(np.array([item], np.int32), np.array([t]), np.array([np.nan]),
                          objects([payload]))  # fmt: skip
        apply_condition(self.active.setdefault(item, {}), seq, t, payload)
        return seq

    def state_at(self, at: int) -> tuple[Observations, dict[int, dict[str, Any]]]:
        """Each item's newest observation with sequence <= ``at`` and every condition
        item's active set then (``at`` within [firstSequence, lastSequence])."""
        held = self.select(self.first_sequence, at + 1)
        seq, t = self.cp_seq.copy(), self.cp_t.copy()
        value, text = self.cp_value.copy(), self.cp_text.copy()
        if len(held):
            rev_items, rev_first = np.unique(held.item[::-1], return_index=True)
            last = len(held) - 1 - rev_first
            seq[rev_items], t[rev_items] = held.seq[last], held.t[last]
            value[rev_items], text[rev_items] = held.value[last], held.text[last]
        active = {i: dict(states) for i, states in self.cp_active.items()}
        for k in np.flatnonzero(self.is_condition[held.item]).tolist():
            apply_condition(active.setdefault(int(held.item[k]), {}), int(held.seq[k]),
                            float(held.t[k]), held.text[k])  # fmt: skip
        items = np.flatnonzero(seq > 0).astype(np.int32)
        return Observations(seq[items], items, t[items], value[items], text[items]), active

    def check_range(self, start: int) -> str | None:
        """None if ``start`` may begin a sample request, else why it is OUT_OF_RANGE."""
        first, nxt = self.first_sequence, self.next_sequence
        if start < first or start > nxt:
            return (
                f"'from' must be between firstSequence {first} and nextSequence {nxt}, got {start}"
            )
        return None

    def select(self, start: int, stop: int) -> Observations:
        """Observations with ``start <= seq < stop`` (clipped to what is held)."""
        start = max(start, self.first_sequence)
        stop = min(stop, self.next_sequence)
        seqs = np.arange(start, max(start, stop), dtype=np.int64)
        slots = seqs % self.capacity
        return Observations(seqs, self.item[slots], self.t[slots], self.value[slots],
                            self.text[slots])  # fmt: skip


def apply_condition(active: dict[str, tuple[int, float, ConditionPayload]], seq: int,
                    t: float, payload: ConditionPayload) -> None:  # fmt: skip
    """One condition observation on an item's active set (native code -> observation)."""
    if not isinstance(payload, tuple):  # appended as a plain value: no condition state
        return
    level, code = payload[0], payload[1]
    if level in ("NORMAL", "UNAVAILABLE") and (not code or level == "UNAVAILABLE"):
        active.clear()  # NORMAL without a code clears all; UNAVAILABLE replaces all
        if level == "UNAVAILABLE":
            active[""] = (seq, t, payload)
    elif level == "NORMAL":
        active.pop(code, None)
    else:
        active.pop("", None)  # an UNAVAILABLE entry gives way to a real state
        active[code] = (seq, t, payload)


def objects(values: list[object]) -> np.ndarray:
    """An object array of exactly these values (numpy would unpack tuples otherwise)."""
    out = np.empty(len(values), object)
    for i, v in enumerate(values):
        out[i] = v
    return out
