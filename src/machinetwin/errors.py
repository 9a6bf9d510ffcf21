"""One exception hierarchy for machinetwin; every error says what went wrong and where."""

from __future__ import annotations


class MachinetwinError(Exception):
    """Base of every error machinetwin raises on purpose."""


class ConfigError(MachinetwinError):
    """A configuration file or value is invalid; the message names the key."""


class GCodeError(MachinetwinError):
    """A G-code program is invalid or cannot be executed.

    Carries the file, the 1-based line and column so that editors and the CLI can point
    at the problem (``PROG.ngc:LINE:COL: message``).
    """

    def __init__(self, message: str, line: int = 0, col: int = 1, file: str = "<program>") -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.col = col
        self.file = file

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}"


class ToolTableError(GCodeError):
    """A tool table file is invalid."""


class CommandRejected(MachinetwinError):
    """A command was refused; the message says why. Nothing was changed."""
