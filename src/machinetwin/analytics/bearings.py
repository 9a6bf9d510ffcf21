"""Rolling-bearing geometry and its defect frequencies.

A defect on a race or a ball is struck once per roller pass, so the vibration it
causes repeats at a kinematic frequency fixed by the geometry (inner race
rotating with the shaft, outer race fixed in the housing):

- BPFO = n/2 · (1 − r)      ball pass, outer race
- BPFI = n/2 · (1 + r)      ball pass, inner race
- BSF  = D/(2d) · (1 − r²)  ball spin (a ball defect hits both races: 2×BSF)
- FTF  = 1/2 · (1 − r)      cage (fundamental train)

with ``r = d/D · cos(contact angle)``; all are multiples of the shaft speed.
Real bearings slip by 1–2 %, so peaks are searched within a tolerance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import MachinetwinError


class BearingError(MachinetwinError, ValueError):
    """An unknown bearing designation or an impossible geometry."""


@dataclass(frozen=True, slots=True)
class DefectOrders:
    """Defect frequencies as multiples of shaft speed (orders)."""

    bpfo: float
    bpfi: float
    bsf: float
    ftf: float

    def hz(self, shaft_hz: float) -> DefectOrders:
        """The same frequencies in Hz at ``shaft_hz``."""
        return DefectOrders(
            self.bpfo * shaft_hz, self.bpfi * shaft_hz, self.bsf * shaft_hz, self.ftf * shaft_hz
        )


@dataclass(frozen=True, slots=True)
class BearingGeometry:
    """Deep-groove or angular-contact ball bearing: what the kinematics need."""

    designation: str
    balls: int
    ball_diameter_mm: float
    pitch_diameter_mm: float
    contact_angle_deg: float = 0.0

    def __post_init__(self) -> None:
        if self.balls < 3:
            raise BearingError(f"bearing {self.designation}: balls={self.balls}, need at least 3")
        if not 0 < self.ball_diameter_mm < self.pitch_diameter_mm:
            raise BearingError(
                f"bearing {self.designation}: ball diameter {self.ball_diameter_mm} mm must be "
                f"positive and below the pitch diameter {self.pitch_diameter_mm} mm"
            )
        if not 0 <= self.contact_angle_deg < 90:
            raise BearingError(
                f"bearing {self.designation}: contact angle {self.contact_angle_deg}° "
                "must be in [0, 90)"
            )

    def orders(self) -> DefectOrders:
        """Defect frequencies as multiples of shaft speed."""
        r = (
            self.ball_diameter_mm
            / self.pitch_diameter_mm
            * math.cos(math.radians(self.contact_angle_deg))
        )
        half_n = self.balls / 2.0
        return DefectOrders(
            bpfo=half_n * (1.0 - r),
            bpfi=half_n * (1.0 + r),
            bsf=self.pitch_diameter_mm / (2.0 * self.ball_diameter_mm) * (1.0 - r * r),
            ftf=0.5 * (1.0 - r),
        )


# Common spindle and motor bearings. 6205-2RS and 6203-2RS are the SKF JEM
# bearings of the CWRU test rig (its published geometry); the others are nominal
# catalogue geometry — check the maker's data for a particular bearing.
_TABLE: dict[str, BearingGeometry] = {
    g.designation: g
    for g in (
        BearingGeometry("6205-2RS", 9, 7.94, 39.04),
        BearingGeometry("6203-2RS", 8, 6.746, 28.50),
        BearingGeometry("6201", 7, 5.953, 22.0),
        BearingGeometry("6204", 8, 7.938, 33.5),
        BearingGeometry("6206", 9, 9.525, 46.0),
        BearingGeometry("6305", 8, 10.319, 43.5),
        BearingGeometry("7205-B", 12, 7.938, 38.5, 40.0),
    )
}
# A seal does not change the kinematics: "6205" is the same as "6205-2RS".
_ALIASES = {"6205": "6205-2RS", "6203": "6203-2RS", "6205-2RS JEM": "6205-2RS"}


def known_bearings() -> list[str]:
    """Designations that :func:`bearing` knows."""
    return sorted(_TABLE)


def bearing(designation: str) -> BearingGeometry:
    """The geometry of a bearing by designation (case-insensitive, e.g. ``6205-2RS``)."""
    key = designation.strip().upper()
    key = _ALIASES.get(key, key)
    try:
        return _TABLE[key]
    except KeyError:
        raise BearingError(
            f"unknown bearing {designation!r}; known: {', '.join(known_bearings())}"
        ) from None
