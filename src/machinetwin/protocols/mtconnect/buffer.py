"""The agent's observation buffer: a fixed-size columnar ring indexed by sequence number.

Observation ``seq`` lives at slot ``seq % capacity`` of four numpy columns (data item,
timestamp, numeric value, text). Only text values (program names, condition
payloads) are Python objects; numeric samples never are. ``firstSequence`` is the
oldest sequence still held, ``nextSequence`` the one the next observation gets, as
the MTConnect standard defines them; a request outside ``[first, next]`` is
OUT_OF_RANGE.
"""

from __future__ import annotations

from dataclasses import dataclass

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

    def __init__(self, n_items: int, capacity: int = 131072) -> None:
        if capacity < 1:
            raise ValueError(f"buffer capacity must be at least 1, got {capacity}")
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

    def append_condition(self, item: int, t: float, payload: ConditionPayload) -> int:
        """Append one condition observation and update the item's active set."""
        level, code = payload[0], payload[1]
        seq = self.append(np.array([item], np.int32), np.array([t]), np.array([np.nan]),
                          objects([payload]))  # fmt: skip
        active = self.active.setdefault(item, {})
        if level in ("NORMAL", "UNAVAILABLE") and (not code or level == "UNAVAILABLE"):
            active.clear()  # NORMAL without a code clears all; UNAVAILABLE replaces all
            if level == "UNAVAILABLE":
                active[""] = (seq, t, payload)
        elif level == "NORMAL":
            active.pop(code, None)
        else:
            active.pop("", None)  # an UNAVAILABLE entry gives way to a real state
            active[code] = (seq, t, payload)
        return seq

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


def objects(values: list[object]) -> np.ndarray:
    """An object array of exactly these values (numpy would unpack tuples otherwise)."""
    out = np.empty(len(values), object)
    for i, v in enumerate(values):
        out[i] = v
    return out
