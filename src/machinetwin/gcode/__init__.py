"""RS274/NGC G-code interpretation, compatible with LinuxCNC 2.9 for mills.

The public surface::

    from machinetwin.gcode import interpret, ToolTable, format_rs274
    for op in interpret("part.ngc", ToolTable.load("tools.tbl")):
        ...
"""

from ..errors import GCodeError
from . import canon
from .interpreter import Interpreter, interpret, interpret_text
from .rs274_format import format_op, format_rs274
from .source import ProgramSource
from .tooltable import Tool, ToolTable

__all__ = [
    "GCodeError",
    "Interpreter",
    "ProgramSource",
    "Tool",
    "ToolTable",
    "canon",
    "format_op",
    "format_rs274",
    "interpret",
    "interpret_text",
]
