"""The machine page's "measured and simulated" panel: the machine beside its twin.

:func:`twin_summary` turns a :class:`.twin_tracker.TwinState` into what the panel shows
(plain strings and rows, tested without a browser): how far the machine is behind or
ahead of its twin, its deviation from the twin's path, the twin's cycle time and the
side-by-side table of reported and simulated values at the newest matched sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .twin_tracker import TwinState

ON_TIME_S = 0.05  # closer than this to the twin counts as on time
TWIN_COLUMNS = [
    {"name": c, "label": label, "field": c, "align": "left" if c == "what" else "right"}
    for c, label in (("what", "Quantity"), ("reported", "Reported (machine)"),
                     ("simulated", "Simulated (twin)"), ("difference", "Difference"))
]  # fmt: skip


@dataclass(frozen=True)
class TwinSummary:
    offset: str = "–"
    deviation: str = "–"
    cycle: str = "–"
    rows: list[dict[str, Any]] = field(default_factory=list)


def _num(value: float, pattern: str) -> str:
    return pattern.format(value) if math.isfinite(value) else "–"


def offset_text(offset_s: float) -> str:
    """``+0.42 s behind the twin`` / ``0.30 s ahead of the twin`` / ``on time``."""
    if not math.isfinite(offset_s):
        return "–"
    if abs(offset_s) < ON_TIME_S:
        return f"on time ({offset_s:+.2f} s)"
    word = "behind" if offset_s > 0 else "ahead of"
    return f"{abs(offset_s):.2f} s {word} the twin"


def twin_summary(state: TwinState) -> TwinSummary:
    """What the panel shows of ``state`` (see the module docstring)."""
    run, k = state.run, state.newest
    if run is None or k is None:
        return TwinSummary()
    t_sim = float(state.t_sim[k])
    sim = run.sample(t_sim)
    elapsed = float(state.t[k] - state.started)
    rep = {s: float(v[k]) for s, v in state.reported.items()}
    deviation = state.deviation_mm[np.isfinite(state.deviation_mm)]
    remaining = max(0.0, run.cycle_time_s - t_sim)
    ferr_rep = math.sqrt(sum(rep.get(f"{a}.ferr", math.nan) ** 2 for a in "xyz"))
    rows = [
        _row("Program time (s)", elapsed, t_sim, "{:.2f}"),
        _row("Line", rep["line"], sim["line"], "{:.0f}"),
        *(_row(f"{a.upper()} (mm)", rep[f"{a}.pos"], sim[f"{a}.pos"], "{:.3f}") for a in "xyz"),
        _row("Feed (mm/min)", rep.get("feed", math.nan), sim["feed"], "{:.0f}"),
        _row("Spindle load (%)", rep.get("spindle.load", math.nan), sim["spindle.load"], "{:.1f}"),
        _row("Following error (mm)", ferr_rep, sim["ferr"], "{:.4f}"),
    ]
    return TwinSummary(
        offset=offset_text(float(state.offset_s[k])),
        deviation=(
            f"{state.deviation_mm[k]:.3f} mm now, {deviation.max():.3f} mm at most "
            f"in the last minute"
        ),  # fmt: skip
        cycle=f"{run.cycle_time_s:.1f} s; at the twin's pace {remaining:.1f} s to go",
        rows=rows,
    )


def _row(what: str, reported: float, simulated: float, pattern: str) -> dict[str, Any]:
    return {
        "what": what,
        "reported": _num(reported, pattern),
        "simulated": _num(simulated, pattern),
        "difference": _num(reported - simulated, "{:+" + pattern[2:]),
    }
