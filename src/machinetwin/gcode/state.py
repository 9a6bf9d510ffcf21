"""The interpreter's modal state and coordinate frames.

Positions and offsets are held in the current program units, as LinuxCNC does, and
are converted when G20/G21 switches units. Rotary axes (A, B, C) are in degrees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

AXES = "xyzabc"
LINEAR = 3  # the first three axes are linear
INCH_MM = 25.4


def zeros() -> list[float]:
    return [0.0] * 6


@dataclass(slots=True)
class CycleMemory:
    """Values canned cycles keep between blocks (LinuxCNC's "sticky" cycle words)."""

    r: float = 0.0
    z: float = 0.0  # depth on the axis normal to the plane
    p: float = 0.0
    q: float = 0.0
    i: float = 0.0  # G87 back-boring offsets
    j: float = 0.0
    k: float = 0.0


@dataclass(slots=True)
class ModalState:
    units: str = "mm"  # "mm" or "inch"
    plane: int = 170  # G17 / G18 / G19 times ten
    incremental: bool = False  # G91
    arc_incremental: bool = True  # G91.1 (LinuxCNC's default)
    feed_mode: int = 940  # G93 / G94 / G95
    feed_rate: float = 0.0
    speed: float = 0.0
    motion_mode: int = 800  # G80: no motion until a motion code is given
    retract_old_z: bool = False  # G98 (True) or G99 (LinuxCNC starts in G99)
    origin_index: int = 1  # 1 = G54 … 9 = G59.3
    control_mode: int = 640
    tolerance: float = 0.0
    naive_tolerance: float = 0.0
    spindle: int = 5  # 3, 4 or 5
    flood: bool = False
    mist: bool = False
    tool_in_spindle: int = 0
    selected_tool: int = 0
    tool_offset: list[float] = field(default_factory=zeros)
    position: list[float] = field(default_factory=zeros)  # program frame
    g5x_offset: list[float] = field(default_factory=zeros)
    g92_offset: list[float] = field(default_factory=zeros)
    rotation: float = 0.0  # degrees, XY rotation of the active work system
    diameter_mode: bool = False  # G7: X words are diameters (lathes); G8 radius
    cycle: CycleMemory = field(default_factory=CycleMemory)
    cycle_motion: int | None = None  # the canned cycle of the previous motion block
    cycle_initial_level: float | None = None  # G98 height, kept across cycle blocks
    feed_override: bool = True
    speed_override: bool = True
    # cutter radius compensation (see comp.py); position is the tool centre while it is on
    comp_side: int = 0  # 0 off (G40), 1 left (G41), 2 right (G42)
    comp_radius: float = 0.0  # program units, never negative
    comp_orientation: int = 0  # lathe tool orientation (0 and 9: no origin shift)
    comp_firstmove: bool = True  # the next move is the entry move
    arc_not_allowed: bool = False  # the move after G40 must be straight
    program_point: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])  # uncompensated

    @property
    def mm_per_unit(self) -> float:
        return INCH_MM if self.units == "inch" else 1.0

    def to_machine(self, p: list[float]) -> list[float]:
        """Program frame -> machine frame (still in program units)."""
        x = p[0] + self.g92_offset[0]
        y = p[1] + self.g92_offset[1]
        if self.rotation:
            x, y = rotate(x, y, self.rotation)
        out = [x, y] + [p[i] + self.g92_offset[i] for i in range(2, 6)]
        return [out[i] + self.g5x_offset[i] + self.tool_offset[i] for i in range(6)]

    def to_program(self, m: list[float]) -> list[float]:
        """Machine frame -> program frame (the inverse of :meth:`to_machine`)."""
        q = [m[i] - self.g5x_offset[i] - self.tool_offset[i] for i in range(6)]
        if self.rotation:
            q[0], q[1] = rotate(q[0], q[1], -self.rotation)
        return [q[i] - self.g92_offset[i] for i in range(6)]


def rotate(x: float, y: float, degrees: float) -> tuple[float, float]:
    t = math.radians(degrees)
    c, s = math.cos(t), math.sin(t)
    return x * c - y * s, x * s + y * c
