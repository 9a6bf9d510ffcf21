"""Faults injected into the virtual machine, recorded as ground truth.

A fault has a kind, a severity in 0..1 and a start time; bearing defects grow after
they start. ``KIND:SEVERITY@TIME`` (e.g. ``bearing_outer:0.6@120``) is the form the
CLI accepts. The simulator asks :meth:`FaultSchedule.severity` for every block, so a
fault can also be injected while the machine runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from ..errors import ConfigError


class FaultKind(StrEnum):
    BEARING_OUTER = "bearing_outer"  # outer race defect, grows
    BEARING_INNER = "bearing_inner"  # inner race defect, grows
    BEARING_BALL = "bearing_ball"  # rolling element defect, grows
    TOOL_WEAR = "tool_wear"  # accelerated flank wear
    TOOL_BREAKAGE = "tool_breakage"  # the tool in the spindle breaks
    BACKLASH = "backlash"  # lost motion at axis reversals
    ENCODER_NOISE = "encoder_noise"  # noisy position feedback
    COOLANT_FAILURE = "coolant_failure"  # no coolant: hotter, faster wear


GROWING = {FaultKind.BEARING_OUTER, FaultKind.BEARING_INNER, FaultKind.BEARING_BALL}
GROWTH_TIME_S = 3600.0  # a bearing defect reaches its full severity an hour after it starts

_SPEC = re.compile(r"^(?P<kind>[a-z_]+):(?P<severity>[0-9.]+)@(?P<time>[0-9.]+)(?P<unit>s|min|h)?$")
_UNIT_S = {None: 1.0, "s": 1.0, "min": 60.0, "h": 3600.0}


@dataclass(frozen=True, slots=True)
class Fault:
    kind: FaultKind
    severity: float  # 0..1 at full growth
    start: float  # machine clock, s

    def severity_at(self, t: float) -> float:
        if t < self.start:
            return 0.0
        if self.kind in GROWING:
            # a seeded defect starts small and spreads: linear growth to full severity
            return self.severity * min(1.0, 0.1 + 0.9 * (t - self.start) / GROWTH_TIME_S)
        return self.severity

    def severity_over(self, t: np.ndarray) -> np.ndarray:
        """:meth:`severity_at` for every time in ``t`` (one array op, same formula)."""
        if self.kind in GROWING:
            level = self.severity * np.minimum(1.0, 0.1 + 0.9 * (t - self.start) / GROWTH_TIME_S)
        else:
            level = np.full(len(t), self.severity)
        return np.where(t < self.start, 0.0, level)


def parse_fault(text: str) -> Fault:
    """``KIND:SEVERITY@TIME[s|min|h]`` → Fault, with an error that says what is wrong."""
    m = _SPEC.match(text.strip())
    if m is None:
        raise ConfigError(f"fault {text!r}: expected KIND:SEVERITY@TIME, e.g. bearing_outer:0.5@60")
    try:
        kind = FaultKind(m["kind"])
    except ValueError:
        kinds = ", ".join(k.value for k in FaultKind)
        raise ConfigError(f"fault {text!r}: unknown kind {m['kind']!r} (one of {kinds})") from None
    severity = float(m["severity"])
    if not 0.0 <= severity <= 1.0:
        raise ConfigError(f"fault {text!r}: severity must be between 0 and 1")
    return Fault(kind, severity, float(m["time"]) * _UNIT_S[m["unit"]])


@dataclass
class FaultSchedule:
    """The faults of one run; also the ground truth written next to the telemetry."""

    faults: list[Fault] = field(default_factory=list)

    def inject(self, fault: Fault) -> None:
        self.faults.append(fault)

    def severity(self, kind: FaultKind, t: float) -> float:
        """Combined severity of one kind at time t (the strongest fault of that kind)."""
        return max((f.severity_at(t) for f in self.faults if f.kind == kind), default=0.0)

    def next_start(self, after: float) -> float | None:
        """The earliest start of a fault later than ``after`` (s), or None."""
        return min((f.start for f in self.faults if f.start > after), default=None)

    def ground_truth(self, t: float) -> dict[str, float]:
        return {f"fault.{k.value}": self.severity(k, t) for k in FaultKind}

    def ground_truth_over(self, t: np.ndarray) -> dict[str, np.ndarray]:
        """Ground truth per sample, so a fault starts at its own time, not a block's end."""
        out = {}
        for kind in FaultKind:
            level = np.zeros(len(t))
            for fault in self.faults:
                if fault.kind == kind:
                    np.maximum(level, fault.severity_over(t), out=level)
            out[f"fault.{kind.value}"] = level
        return out
