"""G38.2-G38.5 straight probing, as standalone LinuxCNC's rs274 reports it.

The probe move is sent between ``TURN_PROBE_ON`` and ``TURN_PROBE_OFF``; where the
machine stopped and where the probe tripped are taken in (#5061-#5070 and the current
point) when the next line is read, as LinuxCNC does after its queue has drained.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ..errors import GCodeError
from . import canon
from .parameters import Parameters
from .state import LINEAR, ModalState

if TYPE_CHECKING:
    from .echo import CanonPositionEcho

PROBE_CODES = (382, 383, 384, 385)  # G38.2-G38.5
PROBE_RESULT = 5061  # #5061-#5066 probe point, #5067-#5069 U V W, #5070 tripped


class Probing:
    """Mixed into the Interpreter: G38.2-G38.5."""

    # after G38.x: (where the probe tripped, where the machine stopped), taken in when
    # the next line is read (set in Interpreter.__init__)
    probe_result: tuple[list[float], list[float]] | None

    if TYPE_CHECKING:
        state: ModalState
        params: Parameters
        echo: CanonPositionEcho
        rs274_quirks: bool
        line: int
        toolchange_pending: bool

        def emit(self, op: canon.CanonOp) -> None: ...

        def error(self, message: str, col: int = 1) -> GCodeError: ...

    def probe(self, code: int, target: list[float]) -> None:
        s = self.state
        if s.comp_side:
            raise self.error("Cannot probe with cutter radius comp on")
        if s.feed_rate == 0.0:
            raise self.error("Cannot probe with zero feed rate")
        if s.feed_mode == 950:
            raise self.error("Cannot probe with feed per rev mode")
        if code in (382, 384) and target == s.position:  # G38.3/G38.5 may not move at all
            raise self.error("Start point too close to probe point")
        s.motion_mode = code
        start = list(self.echo.position) if self.rs274_quirks else list(s.position)
        self.emit(canon.Setting(self.line, "TURN_PROBE_ON"))
        op = canon.StraightProbe(self.line, *target)
        self.emit(op)
        self.emit(canon.Setting(self.line, "TURN_PROBE_OFF"))
        s.position = list(target)
        stop = list(self.echo.position) if self.rs274_quirks else probe_stop(start, op, s.units)
        self.probe_result = (list(target), stop)
        self.toolchange_pending = True  # the position is re-read, as after a tool change

    def take_probe_result(self) -> None:
        """#5061-#5070 and the current point from the probe move just made."""
        assert self.probe_result is not None
        tripped, stop = self.probe_result
        self.probe_result = None
        p = self.params.numbered
        p[PROBE_RESULT : PROBE_RESULT + 6] = tripped
        p[PROBE_RESULT + 6 : PROBE_RESULT + 9] = [0.0, 0.0, 0.0]  # U V W
        p[PROBE_RESULT + 9] = 0.0  # the standalone canon reports the probe as not tripped
        self.state.position = list(stop)
        self.echo.position = list(stop)


def probe_stop(start: list[float], op: canon.StraightProbe, units: str) -> list[float]:
    """Where LinuxCNC's standalone canon leaves a probe move: backed off from the probe
    point towards the start by 0.254 mm (0.01 in) along X Y Z; rotary axes at the target."""
    end = [op.x, op.y, op.z, op.a, op.b, op.c]
    d = [start[i] - end[i] for i in range(LINEAR)]
    distance = math.sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2])
    if distance != 0:
        backoff = 0.254 if units == "mm" else 0.01
        for i in range(LINEAR):
            end[i] = end[i] + backoff * (d[i] / distance)
    return end
