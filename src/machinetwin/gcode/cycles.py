"""Canned cycles G73 and G81-G89 in the XY, XZ and YZ planes, as LinuxCNC runs them.

Each cycle positions over the hole at the clearance level, goes down to the R plane,
runs its body along the drilling axis and retracts to the R plane (G99) or to the
initial level (G98). Sticky words (R, Z, P, Q) are reused only while the same cycle
stays active. Moves are emitted as full STRAIGHT_TRAVERSE/STRAIGHT_FEED calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import canon

if TYPE_CHECKING:
    from .interpreter import Interpreter
    from .reader import Block

# plane -> (aa, bb, cc) axis indices: two in-plane axes and the drilling axis
PLANE_AXES = {170: (0, 1, 2), 180: (2, 0, 1), 190: (1, 2, 0)}
PLANE_TEXT = {170: ("z", "xy"), 180: ("y", "xz"), 190: ("x", "yz")}
PECK_CLEARANCE = {"inch": 0.010, "mm": 0.254}  # rapid re-approach above the last peck
BACK_BORE_WORDS = {170: ("i", "j", "k"), 180: ("k", "i", "j"), 190: ("j", "k", "i")}
DWELL_CYCLES = {820: "g82", 860: "g86", 880: "g88", 890: "g89"}
PECK_CYCLES = {730: "g73", 830: "g83"}


class CycleRun:
    """One block of a canned cycle: geometry resolved, moves emitted through ``interp``."""

    def __init__(self, interp: Interpreter, motion: int, block: Block) -> None:
        self.interp = interp
        self.motion = motion
        self.block = block
        self.aa, self.bb, self.cc = PLANE_AXES[interp.state.plane]
        self.point = list(interp.state.position)

    # --- moves along and across the drilling axis ------------------------------------

    def move(self, kind: type[canon.CanonOp], aa: float, bb: float, cc: float) -> None:
        p = self.point
        p[self.aa], p[self.bb], p[self.cc] = aa, bb, cc
        self.interp.emit(kind(self.interp.line, *p))  # type: ignore[call-arg]

    def traverse(self, cc: float) -> None:
        self.move(canon.StraightTraverse, self.at_a, self.at_b, cc)

    def feed(self, cc: float) -> None:
        self.move(canon.StraightFeed, self.at_a, self.at_b, cc)

    def tap_feed(self, cc: float) -> None:
        """G84's feed moves: LinuxCNC 2.9 lays them out with the XZ and YZ planes swapped."""
        plane = self.interp.state.plane
        swapped = PLANE_AXES[{170: 170, 180: 190, 190: 180}[plane]]
        p = list(self.point)
        p[swapped[0]], p[swapped[1]], p[swapped[2]] = self.at_a, self.at_b, cc
        self.interp.emit(canon.StraightFeed(self.interp.line, *p))
        self.point[self.aa], self.point[self.bb], self.point[self.cc] = self.at_a, self.at_b, cc

    def emit(self, op: canon.CanonOp) -> None:
        self.interp.emit(op)


def execute_cycle(interp: Interpreter, motion: int, block: Block) -> None:
    s = interp.state
    if s.comp_side:
        raise interp.error("Cannot use canned cycles with cutter compensation on")
    w = block.words
    same = s.cycle_motion == motion
    if s.feed_rate == 0.0 and s.feed_mode != 930:
        raise interp.error("Cannot feed with zero feed rate")
    if s.feed_mode == 930:
        raise interp.error("Cannot use inverse time feed with canned cycles")
    for letter in "abc":
        if letter in w:
            raise interp.error(f"Cannot put an {letter} in canned cycle", block.columns[letter])
    if "r" not in w and not same:
        raise interp.error("R clearance plane unspecified in cycle")
    repeats = 1
    if "l" in w:
        if w["l"] < 0:
            raise interp.error("Negative l word used", block.columns["l"])
        if w["l"] != int(w["l"]):
            raise interp.error("Non integer value for integer", block.columns["l"])
        repeats = int(w["l"])
        if repeats == 0:
            raise interp.error("Cannot do zero repeats of cycle", block.columns["l"])
    run = CycleRun(interp, motion, block)
    cc_letter, plane_name = PLANE_TEXT[s.plane]
    if cc_letter not in w and not same:
        raise interp.error(
            f"{cc_letter.upper()} value unspecified in {plane_name} plane canned cycle"
        )
    check_cycle_words(interp, motion, block, same)
    r_word = w.get("r", s.cycle.r)
    cc_word = w.get(cc_letter, s.cycle.z)
    aa_letter, bb_letter = "xyz"[run.aa], "xyz"[run.bb]
    current = s.position
    if s.cycle_initial_level is None:
        s.cycle_initial_level = current[run.cc]
    old_cc = s.cycle_initial_level
    current_cc = current[run.cc]
    polar = s.plane == 170 and ("@" in w or "^" in w)  # LinuxCNC: XY-plane cycles only
    if s.incremental:
        aa_inc, bb_inc = w.get(aa_letter, 0.0), w.get(bb_letter, 0.0)
        r = r_word + old_cc
        cc = r + cc_word
        aa, bb = current[run.aa], current[run.bb]
    else:
        aa_inc = bb_inc = 0.0
        r, cc = r_word, cc_word
        aa, bb = w.get(aa_letter, current[run.aa]), w.get(bb_letter, current[run.bb])
        if polar:
            aa, bb = interp.polar_cycle_point(w, current[run.aa], current[run.bb])
    if r < cc:
        raise interp.error(f"R less than {cc_letter} in cycle in {plane_name} plane")
    if old_cc < r:
        run.at_a, run.at_b = current[run.aa], current[run.bb]
        run.traverse(r)
        old_cc = current_cc = r
    clear_cc = old_cc if s.retract_old_z else r
    restore = s.control_mode != 610
    if restore:
        interp.emit(canon.SetMotionControlMode(interp.line, "EXACT_PATH"))
    for rep in range(repeats):
        aa += aa_inc
        bb += bb_inc
        if polar and s.incremental:
            aa, bb = interp.polar_cycle_step(w, aa, bb)
        run.at_a, run.at_b = aa, bb
        if rep == 0 and current_cc > r:
            run.traverse(current_cc)
            run.traverse(r)
        else:
            run.traverse(clear_cc)
            if clear_cc > r:
                run.traverse(r)
        CYCLE_BODIES[motion](run, r, cc, clear_cc)
    s.position = list(run.point)
    s.position[run.aa], s.position[run.bb], s.position[run.cc] = aa, bb, clear_cc
    s.cycle.z = cc_word
    s.cycle.r = r_word
    s.cycle_motion = motion
    if restore:
        restore_control_mode(interp)


def restore_control_mode(interp: Interpreter) -> None:
    s = interp.state
    if s.control_mode == 611:
        interp.emit(canon.SetMotionControlMode(interp.line, "EXACT_STOP"))
    else:
        interp.emit(canon.SetMotionControlMode(interp.line, "CONTINUOUS", s.tolerance))
    interp.emit(canon.SetNaivecamTolerance(interp.line, s.naive_tolerance))


def check_cycle_words(interp: Interpreter, motion: int, block: Block, same: bool) -> None:
    s = interp.state
    w = block.words
    if motion in DWELL_CYCLES or motion == 840:
        if "p" in w:
            s.cycle.p = w["p"]
        elif not same and motion != 840:
            raise interp.error(f"Dwell time p word missing with {DWELL_CYCLES[motion]}")
    if motion in PECK_CYCLES:
        if "q" in w:
            s.cycle.q = w["q"]
        elif not same:
            raise interp.error(f"Q word missing with {PECK_CYCLES[motion]}")
    if motion == 870:
        for letter in "ijk":
            if letter in w:
                setattr(s.cycle, letter, w[letter])
            elif not same:
                raise interp.error(f"{letter.upper()} word missing with g87")


# --- cycle bodies: called at the hole with the tool at the R plane --------------------


def drill(run: CycleRun, r: float, cc: float, clear: float) -> None:  # G81
    run.feed(cc)
    run.traverse(clear)


def spot_drill(run: CycleRun, r: float, cc: float, clear: float) -> None:  # G82
    run.feed(cc)
    run.emit(canon.Dwell(run.interp.line, run.interp.state.cycle.p))
    run.traverse(clear)


def peck(run: CycleRun, r: float, cc: float, clear: float, full_retract: bool) -> None:
    s = run.interp.state
    q = s.cycle.q
    if q <= 0:
        raise run.interp.error("Negative or zero q value used")
    rd = PECK_CLEARANCE[s.units]
    depth = r - q
    while depth > cc:
        run.feed(depth)
        if full_retract:
            run.traverse(r)
        run.traverse(depth + rd)
        depth -= q
    run.feed(cc)
    run.traverse(clear)


def chip_break(run: CycleRun, r: float, cc: float, clear: float) -> None:  # G73
    peck(run, r, cc, clear, full_retract=False)


def peck_drill(run: CycleRun, r: float, cc: float, clear: float) -> None:  # G83
    peck(run, r, cc, clear, full_retract=True)


def spindle_on(run: CycleRun, code: str) -> None:
    s = run.interp.state
    if s.spindle == 5:
        raise run.interp.error(f"Spindle not turning in {code}")


def spindle_restart(run: CycleRun) -> None:
    line = run.interp.line
    if run.interp.state.spindle == 4:
        run.emit(canon.StartSpindleCounterclockwise(line, 0))
    else:
        run.emit(canon.StartSpindleClockwise(line, 0))


def tap(run: CycleRun, r: float, cc: float, clear: float) -> None:  # G84
    s = run.interp.state
    line = run.interp.line
    if s.spindle == 5:
        raise run.interp.error("Spindle not turning in G84")
    if s.spindle == 4:
        raise run.interp.error("Spindle turning counterclockwise in G84")
    run.emit(canon.OverrideSwitch(line, "feed", False))
    run.emit(canon.OverrideSwitch(line, "speed", False, 0))
    run.tap_feed(cc)
    run.emit(canon.StopSpindleTurning(line, 0))
    run.emit(canon.StartSpindleCounterclockwise(line, 0))
    run.emit(canon.Dwell(line, s.cycle.p))
    run.tap_feed(clear)
    run.emit(canon.StopSpindleTurning(line, 0))
    run.emit(canon.StartSpindleClockwise(line, 0))
    run.emit(canon.OverrideSwitch(line, "feed", True))
    run.emit(canon.OverrideSwitch(line, "speed", True, 0))


def bore(run: CycleRun, r: float, cc: float, clear: float) -> None:  # G85
    run.feed(cc)
    run.feed(r)
    run.traverse(clear)


def bore_spindle_stop(run: CycleRun, r: float, cc: float, clear: float) -> None:  # G86
    spindle_on(run, "g86")
    line = run.interp.line
    run.feed(cc)
    run.emit(canon.Dwell(line, run.interp.state.cycle.p))
    run.emit(canon.StopSpindleTurning(line, 0))
    run.traverse(clear)
    spindle_restart(run)


def back_bore(run: CycleRun, r: float, cc: float, clear: float) -> None:  # G87
    spindle_on(run, "g87")
    s = run.interp.state
    line = run.interp.line
    aa, bb = run.at_a, run.at_b
    # the offset and depth words follow the plane's axes: I/J/K belong to X/Y/Z
    offset_a, offset_b, depth = (getattr(s.cycle, w) for w in BACK_BORE_WORDS[s.plane])
    oa, ob = aa + offset_a, bb + offset_b
    k = cc + depth if s.incremental else depth
    direction = 3 if s.spindle == 4 else 2
    orient = canon.Setting(line, "ORIENT_SPINDLE", (0, "0.0000", direction))
    run.move(canon.StraightTraverse, oa, ob, r)
    run.emit(canon.StopSpindleTurning(line, 0))
    run.emit(orient)
    run.move(canon.StraightTraverse, oa, ob, cc)
    run.move(canon.StraightTraverse, aa, bb, cc)
    spindle_restart(run)
    run.move(canon.StraightFeed, aa, bb, k)
    run.move(canon.StraightFeed, aa, bb, cc)
    run.emit(canon.StopSpindleTurning(line, 0))
    run.emit(orient)
    run.move(canon.StraightTraverse, oa, ob, cc)
    run.move(canon.StraightTraverse, oa, ob, clear)
    run.move(canon.StraightTraverse, aa, bb, clear)
    spindle_restart(run)


def bore_manual_retract(run: CycleRun, r: float, cc: float, clear: float) -> None:  # G88
    spindle_on(run, "g88")
    line = run.interp.line
    run.feed(cc)
    run.emit(canon.Dwell(line, run.interp.state.cycle.p))
    run.emit(canon.StopSpindleTurning(line, 0))
    run.emit(canon.ProgramStop(line))
    spindle_restart(run)


def bore_dwell(run: CycleRun, r: float, cc: float, clear: float) -> None:  # G89
    run.feed(cc)
    run.emit(canon.Dwell(run.interp.line, run.interp.state.cycle.p))
    run.feed(clear)


CYCLE_BODIES = {
    730: chip_break, 810: drill, 820: spot_drill, 830: peck_drill, 840: tap, 850: bore,
    860: bore_spindle_stop, 870: back_bore, 880: bore_manual_retract, 890: bore_dwell,
}  # fmt: skip
