"""Rolling charts that send only what changed: the machine page's last minute.

A chart of the last minute used to be re-queried and re-sent whole every second (240
buckets x every series). :class:`RollingSeries` instead asks the store only for the
buckets since the last update (plus a few seconds again, for samples that arrived
late over a slow link), merges them into what it holds and hands back the delta that
the browser merges the same way (:data:`MERGE_JS`). Bucket edges are multiples of the
bucket width, so a bucket of a delta query is the same bucket as in the full query.

The server keeps the merged series in the chart's options without sending them (so a
reconnecting browser gets the whole chart), and sends deltas by JavaScript.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

WINDOW_S = 60.0
BUCKET_S = 0.25
RESEND_S = 3.0  # buckets this recent are sent again: samples arrive late on a slow link

# mtMerge(element id, from ms, cut ms, [points or null per series]): keep each series'
# points in [cut, from), append the new ones; retry until ECharts is mounted.
MERGE_JS = """
window.mtMerge = (id, from, cut, series) => {
  const el = getElement(id);
  if (!el || !el.chart) { setTimeout(() => window.mtMerge(id, from, cut, series), 50); return; }
  const old = el.chart.getOption().series;
  el.chart.setOption({series: series.map((add, k) => add === null ? {} :
    {data: (old[k].data || []).filter(p => p[0] >= cut && p[0] < from).concat(add)})});
};
"""


@dataclass(frozen=True)
class Delta:
    """What to merge: per series the points at or after ``from_ms`` replace the old
    ones there; points before ``cut_ms`` are dropped."""

    from_ms: float
    cut_ms: float
    series: list[list[list[float]]]


@dataclass
class RollingSeries:
    """The last ``window_s`` of several signals as ``[ms, value]`` points."""

    signals: list[str]
    window_s: float = WINDOW_S
    bucket_s: float = BUCKET_S
    resend_s: float = RESEND_S
    points: dict[str, list[list[float]]] = field(default_factory=dict)
    until: float | None = None  # end of the newest bucket merged, s

    def __post_init__(self) -> None:
        if not (self.bucket_s > 0 and self.window_s >= self.bucket_s and self.resend_s >= 0):
            raise ValueError(
                f"RollingSeries: need 0 < bucket_s <= window_s and resend_s >= 0, got "
                f"bucket {self.bucket_s}, window {self.window_s}, resend {self.resend_s}"
            )
        self.points = {s: [] for s in self.signals}

    def plan(self, now: float) -> tuple[float, float, int]:
        """``(t0, t1, buckets)`` of the next store query: whole buckets up to ``now``."""
        if not math.isfinite(now):
            raise ValueError(f"RollingSeries.plan: now must be finite, got {now}")
        t1 = math.floor(now / self.bucket_s) * self.bucket_s
        t0 = t1 - self.window_s
        if self.until is not None:
            again = math.floor((self.until - self.resend_s) / self.bucket_s) * self.bucket_s
            t0 = max(t0, again)
        return t0, t1, max(1, round((t1 - t0) / self.bucket_s))

    def merge(self, t0: float, t1: float, got: dict[str, tuple[np.ndarray, np.ndarray]]) -> Delta:
        """Merge the query of ``[t0, t1)`` (signal -> (times s, values)); signals missing
        from ``got`` had no samples there."""
        from_ms, cut_ms = t0 * 1000.0, (t1 - self.window_s) * 1000.0
        delta = []
        for s in self.signals:
            t, v = got.get(s, (np.zeros(0), np.zeros(0)))
            keep = np.isfinite(v)
            new = np.column_stack([np.asarray(t)[keep] * 1000.0, np.asarray(v)[keep]]).tolist()
            old = self.points[s]
            self.points[s] = [p for p in old if cut_ms <= p[0] < from_ms] + new
            delta.append(new)
        self.until = t1
        return Delta(from_ms, cut_ms, delta)
