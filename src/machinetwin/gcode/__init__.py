"""RS274/NGC G-code interpretation, compatible with LinuxCNC 2.9 for mills.

The public surface::

    from machinetwin.gcode import interpret, ToolTable, format_rs274
    for op in interpret("part.ngc", ToolTable.load("tools.tbl")):
        ...
"""

from ..errors import GCodeError
from . import canon
from .frames import MachineFrame, to_machine_frame
from .interpreter import (
    Interpreter,
    check_program,
    interpret,
    interpret_batches,
    interpret_text,
)
from .rs274_format import format_op, format_rs274
from .source import ProgramSource
from .stats import ProgramStats, program_stats
from .tooltable import Tool, ToolTable

__all__ = [
    "GCodeError",
    "Interpreter",
    "MachineFrame",
    "ProgramStats",
    "ProgramSource",
    "Tool",
    "ToolTable",
    "canon",
    "check_program",
    "format_op",
    "format_rs274",
    "interpret",
    "interpret_batches",
    "interpret_text",
    "program_stats",
    "to_machine_frame",
]
