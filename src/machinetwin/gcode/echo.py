"""What standalone LinuxCNC's canonical layer believes the position is.

``rs274`` re-reads the position from its canonical layer after a tool change or a probe;
that layer tracks moves and work/G92 offsets but not tool length offsets, so the re-read
position can differ from the interpreter's own. :class:`CanonPositionEcho` mirrors it so
that ``rs274_quirks=True`` reproduces rs274's output.
"""

from __future__ import annotations

from . import canon
from .probing import probe_stop
from .state import INCH_MM, LINEAR


class CanonPositionEcho:
    """The position the canonical layer believes in, as LinuxCNC's standalone canon keeps it.

    After a tool change LinuxCNC re-reads the position from its canonical layer; in
    standalone ``rs274`` that layer tracks moves and work/G92 offsets but not tool
    length offsets, so the re-read position can differ from the interpreter's. This
    mirror lets ``rs274_quirks=True`` reproduce that.
    """

    __slots__ = ("position", "g5x", "g92", "units")

    def __init__(self) -> None:
        self.position = [0.0] * 6
        self.g5x = [0.0] * 6
        self.g92 = [0.0] * 6
        self.units = "mm"

    def observe(self, op: canon.CanonOp) -> None:
        t = type(op)
        if t is canon.StraightTraverse or t is canon.StraightFeed:
            self.position = [op.x, op.y, op.z, op.a, op.b, op.c]  # type: ignore[attr-defined]
        elif t is canon.ArcFeed:
            assert isinstance(op, canon.ArcFeed)
            p = self.position
            first, second, normal = canon.ARC_AXES[op.plane]
            p[first], p[second], p[normal] = op.first_end, op.second_end, op.axis_end
            p[3], p[4], p[5] = op.a, op.b, op.c
        elif t is canon.StraightProbe:
            assert isinstance(op, canon.StraightProbe)
            self.position = probe_stop(self.position, op, self.units)
        elif t is canon.SetWorkOffset or t is canon.SetG92Offset:
            new = [op.x, op.y, op.z, op.a, op.b, op.c]  # type: ignore[attr-defined]
            old = self.g5x if t is canon.SetWorkOffset else self.g92
            self.position = [self.position[i] + old[i] - new[i] for i in range(6)]
            old[:] = new
        elif t is canon.UseLengthUnits:
            units = op.units  # type: ignore[attr-defined]
            if units != self.units:
                factor = 1 / INCH_MM if units == "inch" else INCH_MM
                for values in (self.position, self.g5x, self.g92):
                    for i in range(LINEAR):
                        values[i] *= factor
                self.units = units
