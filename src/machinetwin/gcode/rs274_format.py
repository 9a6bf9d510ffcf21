"""Print canonical operations exactly as LinuxCNC's ``rs274 -g`` does.

So that ``machinetwin gcode canon --format rs274`` can be diffed against the real
interpreter: the same function names, argument order, program units and 4 decimals.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from . import canon

PREAMBLE = (
    "USE_LENGTH_UNITS(CANON_UNITS_MM)",
    "SET_G5X_OFFSET(1, 0.0000, 0.0000, 0.0000, 0.0000, 0.0000, 0.0000)",
    "SET_G92_OFFSET(0.0000, 0.0000, 0.0000, 0.0000, 0.0000, 0.0000)",
    "SET_XY_ROTATION(0.0000)",
    "SET_FEED_REFERENCE(CANON_XYZ)",
    "ON_RESET()",
)
UNITS = {"mm": "CANON_UNITS_MM", "inch": "CANON_UNITS_INCHES"}
PLANES = {"XY": "CANON_PLANE_XY", "XZ": "CANON_PLANE_XZ", "YZ": "CANON_PLANE_YZ"}


def _nums(*values: float) -> str:
    return ", ".join(f"{v:.4f}" for v in values)


def format_op(op: canon.CanonOp) -> str:
    """One operation as rs274 prints it (without the sequence and N columns)."""
    t = type(op)
    if t is canon.StraightFeed or t is canon.StraightTraverse or t is canon.StraightProbe:
        return f"{op.rs274_name}({_nums(op.x, op.y, op.z, op.a, op.b, op.c)})"  # type: ignore[attr-defined]
    if t is canon.ArcFeed:
        assert isinstance(op, canon.ArcFeed)
        return (
            f"ARC_FEED({_nums(op.first_end, op.second_end, op.first_axis, op.second_axis)}, "
            f"{op.rotation}, {_nums(op.axis_end, op.a, op.b, op.c)})"
        )
    formatter = _FORMATTERS.get(t)
    if formatter is None:
        raise TypeError(f"no rs274 format for {t.__name__}")
    return formatter(op)


def _override(op: canon.OverrideSwitch) -> str:
    verb = "ENABLE" if op.enabled else "DISABLE"
    if op.which == "feed":
        return f"{verb}_FEED_OVERRIDE()"
    return f"{verb}_SPEED_OVERRIDE({op.spindle})"


def _setting(op: canon.Setting) -> str:
    return f"{op.name}({', '.join(str(a) for a in op.args)})"


def _motion_mode(op: canon.SetMotionControlMode) -> str:
    if op.mode == "CONTINUOUS":
        return f"SET_MOTION_CONTROL_MODE(CANON_CONTINUOUS, {op.tolerance:.6f})"
    return f"SET_MOTION_CONTROL_MODE(CANON_{op.mode})"


def _tool_offset(op: canon.UseToolLengthOffset) -> str:
    return (
        f"USE_TOOL_LENGTH_OFFSET({op.x:.4f} {op.y:.4f} {op.z:.4f}, "
        f"{op.a:.4f} {op.b:.4f} {op.c:.4f}, 0.0000 0.0000 0.0000)"
    )


_FORMATTERS = {
    canon.NurbsFeed: lambda op: f"NURBS_FEED({len(op.points)}, ...)",
    canon.StartSpeedFeedSync: lambda op: f"START_SPEED_FEED_SYNC({op.pitch:.6f},0)",
    canon.StopSpeedFeedSync: lambda op: "STOP_SPEED_FEED_SYNCH()",
    canon.RigidTap: lambda op: f"RIGID_TAP({_nums(op.x, op.y, op.z)})",
    canon.Dwell: lambda op: f"DWELL({op.seconds:.4f})",
    canon.SetFeedRate: lambda op: f"SET_FEED_RATE({op.rate:.4f})",
    canon.SetFeedMode: lambda op: f"SET_FEED_MODE({op.spindle}, {op.mode})",
    canon.SetMotionControlMode: _motion_mode,
    canon.SetNaivecamTolerance: lambda op: f"SET_NAIVECAM_TOLERANCE({op.tolerance:.4f})",
    canon.SelectPlane: lambda op: f"SELECT_PLANE({PLANES[op.plane]})",
    canon.UseLengthUnits: lambda op: f"USE_LENGTH_UNITS({UNITS[op.units]})",
    canon.SetWorkOffset: lambda op: (
        f"SET_G5X_OFFSET({op.index}, {_nums(op.x, op.y, op.z, op.a, op.b, op.c)})"
    ),
    canon.SetG92Offset: lambda op: f"SET_G92_OFFSET({_nums(op.x, op.y, op.z, op.a, op.b, op.c)})",
    canon.SetXYRotation: lambda op: f"SET_XY_ROTATION({op.degrees:.4f})",
    canon.UseToolLengthOffset: _tool_offset,
    canon.SelectTool: lambda op: f"SELECT_TOOL({op.tool})",
    canon.StartChange: lambda op: "START_CHANGE()",
    canon.ChangeTool: lambda op: f"CHANGE_TOOL({op.tool})",
    canon.ChangeToolNumber: lambda op: f"CHANGE_TOOL_NUMBER({op.tool})",
    canon.SetSpindleSpeed: lambda op: f"SET_SPINDLE_SPEED({op.spindle}, {op.rpm:.4f})",
    canon.StartSpindleClockwise: lambda op: f"START_SPINDLE_CLOCKWISE({op.spindle})",
    canon.StartSpindleCounterclockwise: lambda op: f"START_SPINDLE_COUNTERCLOCKWISE({op.spindle})",
    canon.StopSpindleTurning: lambda op: f"STOP_SPINDLE_TURNING({op.spindle})",
    canon.SetSpindleMode: lambda op: f"SET_SPINDLE_MODE({op.spindle} {op.css_max:.4f})",
    canon.FloodOn: lambda op: "FLOOD_ON()",
    canon.FloodOff: lambda op: "FLOOD_OFF()",
    canon.MistOn: lambda op: "MIST_ON()",
    canon.MistOff: lambda op: "MIST_OFF()",
    canon.Comment: lambda op: f'COMMENT("{op.text}")',
    canon.Message: lambda op: f'MESSAGE("{op.text}")',
    canon.ProgramStop: lambda op: "PROGRAM_STOP()",
    canon.OptionalProgramStop: lambda op: "OPTIONAL_PROGRAM_STOP()",
    canon.ProgramEnd: lambda op: "PROGRAM_END()",
    canon.OverrideSwitch: _override,
    canon.Setting: _setting,
}


def format_rs274(ops: Iterable[canon.CanonOp], preamble: bool = True) -> Iterator[str]:
    """rs274-style lines: ``   N N..... CALL(args)``, numbered from 1 like rs274."""
    n = 0
    if preamble:
        for text in PREAMBLE:
            n += 1
            yield f"{n:5d} N..... {text}"
    for op in ops:
        n += 1
        yield f"{n:5d} N..... {format_op(op)}"
    # rs274 resets the interpreter when the program ends, and its driver once more on exit.
    for _ in range(2):
        n += 1
        yield f"{n:5d} N..... ON_RESET()"
