"""G33 spindle-synchronised motion and G33.1 rigid tapping, as LinuxCNC 2.9 does them.

Both move in step with the spindle: ``K`` is the distance per revolution. G33 is a
straight feed between ``START_SPEED_FEED_SYNC`` and ``STOP_SPEED_FEED_SYNCH`` (threading
passes); G33.1 is a rigid tap to the end point and back, so the position is unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import canon

if TYPE_CHECKING:
    from .interpreter import Interpreter
    from .reader import Block

CODES = (330, 331)


def check_words(interp: Interpreter, block: Block, motion: int) -> None:
    """Checks LinuxCNC makes on the block before executing anything of it."""
    w = block.words
    if "k" not in w:
        raise interp.error("K word missing with g33/g33.1")
    if "f" in w:
        raise interp.error("F word used with a g33/g33.1", block.columns["f"])


def execute(interp: Interpreter, motion: int, block: Block, target: list[float]) -> None:
    s = interp.state
    s.arc_not_allowed = False
    if s.comp_side and s.comp_radius > 0.0:
        # LinuxCNC compensates it as a plain feed, without synchronisation (and refuses
        # it as the entry move)
        interp.comp_straight(motion, block, target)
        return
    name = "G33" if motion == 330 else "G33.1"
    if s.spindle not in (3, 4):
        raise interp.error(f"Spindle not turning in {name}")
    line = interp.line
    interp.emit(canon.StartSpeedFeedSync(line, block.words["k"]))
    if motion == 330:
        interp.emit(canon.StraightFeed(line, *target))
        s.position = target
    else:  # the tap comes back out: the position stays
        interp.emit(canon.RigidTap(line, target[0], target[1], target[2]))
    interp.emit(canon.StopSpeedFeedSync(line))
