"""The ``Store`` interface: what the hub keeps and how it reads it back.

Every backend (DuckDB by default, PostgreSQL for a multi-process hub) implements this
protocol and passes the same test suite (``tests/hub/test_store.py``). Samples travel
in and out as numpy arrays; no method returns one Python object per sample.

Semantics every backend keeps:

- Batches are idempotent on ``(machine, seq)``: a second write of the same key stores
  nothing and returns ``False``, in any order of arrival.
- A batch is stored wholly or not at all; invalid data raises :class:`StoreError`
  before anything is stored.
- Time ranges are half-open, ``t0 <= t < t1``, in the machine's clock (seconds).
- A NaN in a scalar column means "no sample" and is not stored.
"""

from __future__ import annotations

import math
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from machinetwin.errors import MachinetwinError
from machinetwin.model import Alarm, MachineDescriptor, MachineEvent, SampleBatch, Waveform

ExportFormat = Literal["parquet", "csv"]


class StoreError(MachinetwinError):
    """Data the store refuses (unknown signal, malformed batch, unknown alarm id, ...).

    The message names what is wrong and where (machine, sequence number, signal,
    index); nothing was stored.
    """


@dataclass(frozen=True, slots=True)
class Series:
    """One signal over a time range, ready for a chart.

    ``raw`` is True when the range held fewer samples than buckets: then ``t`` holds
    sample times, ``min == max == mean`` hold the values and ``count`` is all ones.
    Otherwise ``t`` holds the start time of each non-empty bucket (empty buckets are
    left out, so a chart draws a gap) and ``count`` the samples in it.
    """

    signal: str
    t: np.ndarray
    min: np.ndarray
    max: np.ndarray
    mean: np.ndarray
    count: np.ndarray
    raw: bool

    @property
    def values(self) -> np.ndarray:
        """The samples of a raw series (the bucket means otherwise)."""
        return self.mean


@dataclass(frozen=True, slots=True)
class StoredAlarm:
    """An alarm as the hub keeps it: the machine's record plus the lab's handling."""

    id: int
    machine: str
    alarm: Alarm
    acknowledged_at: float | None = None  # wall clock, s
    acknowledged_by: str | None = None
    comment: str | None = None

    @property
    def active(self) -> bool:
        return self.alarm.active


@runtime_checkable
class Store(Protocol):
    """Storage of samples, events, alarms and machine descriptors."""

    # --- samples -----------------------------------------------------------------------

    def validate(self, batch: SampleBatch) -> None:
        """Raise :class:`StoreError` if ``batch`` would be refused; store nothing."""
        ...

    def write_batch(self, batch: SampleBatch) -> bool:
        """Store one batch; ``False`` if ``(machine, seq)`` was already stored."""
        ...

    def write_batches(self, batches: Sequence[SampleBatch]) -> list[bool]:
        """Store many batches in one transaction (the fast path for ingest).

        Returns, per batch, whether it was new. If any batch is invalid, raises
        :class:`StoreError` naming it and stores none of them.
        """
        ...

    def sequences(self, machine: str) -> list[tuple[int, int]]:
        """Stored sequence numbers of ``machine`` as sorted inclusive ranges."""
        ...

    def count(self, machine: str, signal: str | None = None) -> int:
        """Stored samples (waveform points included) of a machine, or of one signal."""
        ...

    def latest(self, machine: str) -> dict[str, tuple[float, float]]:
        """Per signal, the ``(t, value)`` of its latest sample."""
        ...

    def query(
        self,
        machine: str,
        signals: Iterable[str],
        t0: float,
        t1: float,
        buckets: int = 1000,
    ) -> dict[str, Series]:
        """Each signal in ``[t0, t1)`` as min/max/mean over ``buckets`` equal buckets,
        or raw when it has fewer samples than ``buckets``. Signals without samples in
        the range are left out."""
        ...

    def export(
        self,
        machine: str,
        t0: float,
        t1: float,
        path: str | Path,
        fmt: ExportFormat = "parquet",
        signals: Iterable[str] | None = None,
    ) -> int:
        """Write the raw samples in ``[t0, t1)`` (columns machine, signal, t, value;
        ordered by signal, t) to a Parquet or CSV file; returns the number of rows."""
        ...

    def delete_before(self, t: float) -> int:
        """Retention: delete samples, waveforms, events and cleared alarms before ``t``.

        Returns the number of samples (waveform points included) deleted.
        """
        ...

    # --- events, alarms, machines ------------------------------------------------------

    def write_event(self, event: MachineEvent) -> bool:
        """Log an event; ``False`` if the same event was already stored (edge resends)."""
        ...

    def events(
        self,
        machine: str | None = None,
        since: float | None = None,
        until: float | None = None,
        kind: str | None = None,
    ) -> list[MachineEvent]: ...

    def write_alarm(self, machine: str, alarm: Alarm) -> int:
        """Store an alarm; returns its id. Idempotent on (machine, code, source, raised_at)."""
        ...

    def update_alarm(
        self,
        alarm_id: int,
        *,
        cleared_at: float | None = None,
        acknowledged_by: str | None = None,
        comment: str | None = None,
        acknowledged_at: float | None = None,
    ) -> StoredAlarm:
        """Clear and/or acknowledge an alarm (acknowledging needs a user)."""
        ...

    def alarms(
        self,
        machine: str | None = None,
        active: bool | None = None,
        since: float | None = None,
    ) -> list[StoredAlarm]:
        """Alarms, newest first; ``since`` filters on the time they were raised."""
        ...

    def upsert_machine(self, descriptor: MachineDescriptor) -> None: ...

    def machines(self) -> list[MachineDescriptor]: ...

    def close(self) -> None: ...


# --- validation shared by every backend ----------------------------------------------

_NUMERIC_KINDS = frozenset("biuf")  # bool, signed, unsigned, float: stored as float64


def check_structure(batch: SampleBatch, known: Container[str]) -> None:
    """Cheap per-batch checks (types, names, shapes); values are checked in bulk later.

    Raises :class:`StoreError` naming the machine, sequence number and what is wrong.
    """
    if not isinstance(batch, SampleBatch):
        raise StoreError(f"expected a SampleBatch, got {type(batch).__name__}")
    where = _where(batch)
    if not isinstance(batch.machine, str) or not batch.machine:
        raise StoreError(f"{where}: machine must be a non-empty string")
    if isinstance(batch.seq, bool) or not isinstance(batch.seq, Integral) or batch.seq < 0:
        raise StoreError(f"{where}: seq must be an integer >= 0 (the edge assigns it)")
    _check_array(batch.t, f"{where}: t")
    n = len(batch.t)
    for name, col in batch.columns.items():
        if name not in known:
            raise StoreError(f"{where}: unknown signal {name!r}")
        _check_array(col, f"{where}: column {name!r}")
        if len(col) != n:
            raise StoreError(f"{where}: column {name!r} has {len(col)} samples, t has {n}")
    for i, w in enumerate(batch.waveforms):
        _check_waveform(w, f"{where}: waveform {i}", known)


def check_values(batch: SampleBatch) -> None:
    """Per-column value checks: finite times, no infinities (NaN means no sample).

    Backends run the same checks in bulk over a whole group of batches and call this
    only to name the culprit.
    """
    where = _where(batch)
    _require_finite(batch.t, f"{where}: t", allow_nan=False)
    for name, col in batch.columns.items():
        _require_finite(col, f"{where}: column {name!r}", allow_nan=True)
    for i, w in enumerate(batch.waveforms):
        _require_finite(w.values, f"{where}: waveform {i} ({w.signal!r})", allow_nan=False)


def _where(batch: SampleBatch) -> str:
    return f"batch machine={getattr(batch, 'machine', '?')!r} seq={getattr(batch, 'seq', '?')}"


def _check_array(a: object, what: str) -> None:
    if not isinstance(a, np.ndarray) or a.ndim != 1 or a.dtype.kind not in _NUMERIC_KINDS:
        desc = f"{a.dtype}[{a.ndim}-D]" if isinstance(a, np.ndarray) else type(a).__name__
        raise StoreError(f"{what} must be a 1-D numeric numpy array, got {desc}")


def _check_waveform(w: object, what: str, known: Container[str]) -> None:
    if not isinstance(w, Waveform):
        raise StoreError(f"{what}: expected a Waveform, got {type(w).__name__}")
    if w.signal not in known:
        raise StoreError(f"{what}: unknown signal {w.signal!r}")
    _check_array(w.values, f"{what} ({w.signal!r}) values")
    if not (isinstance(w.t0, Real) and math.isfinite(w.t0)):
        raise StoreError(f"{what} ({w.signal!r}): t0 must be a finite number, got {w.t0!r}")
    if not (isinstance(w.rate_hz, Real) and math.isfinite(w.rate_hz) and w.rate_hz > 0):
        raise StoreError(f"{what} ({w.signal!r}): rate_hz must be > 0, got {w.rate_hz!r}")
    if w.rpm is not None and not (isinstance(w.rpm, Real) and math.isfinite(w.rpm)):
        raise StoreError(f"{what} ({w.signal!r}): rpm must be a finite number or None")


def _require_finite(a: np.ndarray, what: str, allow_nan: bool) -> None:
    bad = np.isinf(a) if allow_nan else ~np.isfinite(a)
    if bad.any():
        i = int(np.argmax(bad))
        kind = "infinite" if allow_nan else "non-finite"
        raise StoreError(f"{what}: {int(bad.sum())} {kind} values, first at index {i} ({a[i]})")
