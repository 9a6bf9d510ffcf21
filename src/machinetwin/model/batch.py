"""Columnar sample batches: how samples travel, never one Python object per sample."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(slots=True)
class SampleBatch:
    """Samples of one machine over a time span, column-wise.

    ``t`` holds sample times in seconds (float64, the machine's clock); every column
    in ``columns`` has the same length. ``seq`` is the per-machine batch sequence
    number the edge assigns (ingest is idempotent on (machine, seq)).
    """

    machine: str
    t: np.ndarray
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    seq: int = -1
    waveforms: list[Waveform] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.t)
        for name, col in self.columns.items():
            if len(col) != n:
                raise ValueError(f"column {name!r} has {len(col)} samples, t has {n}")

    def __len__(self) -> int:
        return len(self.t)

    @property
    def n_values(self) -> int:
        """Scalar values plus waveform points: what throughput figures count."""
        return len(self.t) * len(self.columns) + sum(len(w.values) for w in self.waveforms)


@dataclass(slots=True)
class Waveform:
    """A uniformly sampled signal (e.g. ``spindle.vib``): start time, rate, values."""

    signal: str
    t0: float
    rate_hz: float
    values: np.ndarray
    rpm: float | None = None  # spindle speed during the window, for order analysis

    @property
    def duration(self) -> float:
        return len(self.values) / self.rate_hz
