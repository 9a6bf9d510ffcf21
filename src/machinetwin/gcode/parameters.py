"""Numbered and named parameters, with the scoping LinuxCNC gives them.

Numbered parameters #1…#5601 are global, except that #1…#30 carry subroutine
arguments and are saved and restored around each call. Named parameters are local
to the subroutine that sets them unless their name starts with ``_`` (global).
Read-only system values (``#<_x>``, ``#<_metric>`` …) come from the interpreter.
"""

from __future__ import annotations

from collections.abc import Callable

NUMBERED_COUNT = 5602
ARGUMENT_COUNT = 30

# Numbered parameters LinuxCNC keeps for offsets and positions (all in program units).
G28_HOME = 5161
G30_HOME = 5181
G92_ENABLED = 5210
G92_OFFSET = 5211
WORK_SYSTEM = 5220  # 1 = G54 … 9 = G59.3
WORK_OFFSET_BASE = 5221  # G54 at 5221…5230 (X Y Z A B C U V W R), G55 at 5241 …
WORK_OFFSET_STRIDE = 20
TOOL_NUMBER = 5400
TOOL_OFFSET = 5401
TOOL_DIAMETER = 5410
CURRENT_POSITION = 5420

# Axis slots within a 9-wide offset record: X Y Z A B C U V W.
AXIS_SLOTS = {"x": 0, "y": 1, "z": 2, "a": 3, "b": 4, "c": 5}

# Read-only globals that rs274 defines before any subroutine or remap sets them.
PREDEFINED = {"_value": 0.0, "_value_returned": 0.0, "_task": 0.0, "_remap_level": 0.0}


def work_offset_index(system: int) -> int:
    """First parameter of work system 1…9 (G54…G59.3)."""
    return WORK_OFFSET_BASE + WORK_OFFSET_STRIDE * (system - 1)


class Parameters:
    """The parameter store the reader evaluates against and O-word calls scope."""

    def __init__(self, system_lookup: Callable[[str], float | None] | None = None) -> None:
        self.numbered = [0.0] * NUMBERED_COUNT
        self.numbered[WORK_SYSTEM] = 1.0
        self.globals: dict[str, float] = {}
        self.frames: list[dict[str, float]] = [{}]
        self.saved_arguments: list[list[float]] = []
        self.system_lookup = system_lookup

    # --- reading (the reader's interface) ---------------------------------------

    def get_numbered(self, index: int) -> float:
        return self.numbered[index]

    def get_named(self, name: str) -> float:
        name = name.lower()
        if name.startswith("_"):
            if name in self.globals:
                return self.globals[name]
            if self.system_lookup is not None:
                value = self.system_lookup(name)
                if value is not None:
                    return value
            if name in PREDEFINED:
                return PREDEFINED[name]
            raise KeyError(name)
        return self.frames[-1][name]

    def is_read_only(self, name: str) -> bool:
        """True for the interpreter's own ``#<_…>`` values, which programs may not set."""
        name = name.lower()
        if not name.startswith("_"):
            return False
        if name in PREDEFINED:
            return True
        return self.system_lookup is not None and self.system_lookup(name) is not None

    def named_exists(self, name: str) -> bool:
        try:
            self.get_named(name)
        except KeyError:
            return False
        return True

    # --- writing -----------------------------------------------------------------

    def set(self, target: int | str, value: float) -> None:
        if isinstance(target, int):
            self.numbered[target] = value
            return
        name = target.lower()
        if name.startswith("_"):
            self.globals[name] = value
        else:
            self.frames[-1][name] = value

    def declare(self, name: str) -> None:
        """Create a named parameter (as 0) the moment a setting of it is read.

        LinuxCNC does this, so ``#<new>=1 G0 X#<new>`` reads 0 instead of failing.
        """
        if not self.named_exists(name):
            self.set(name, 0.0)

    def set_many(self, settings: list[tuple[int | str, float]]) -> None:
        """Apply a line's settings together: values were read before any is set."""
        for target, value in settings:
            self.set(target, value)

    # --- subroutine scope --------------------------------------------------------

    def enter_call(self, args: list[float]) -> None:
        self.saved_arguments.append(self.numbered[1 : ARGUMENT_COUNT + 1])
        for i in range(ARGUMENT_COUNT):
            self.numbered[1 + i] = args[i] if i < len(args) else 0.0
        self.frames.append({})

    def leave_call(self) -> None:
        self.numbered[1 : ARGUMENT_COUNT + 1] = self.saved_arguments.pop()
        self.frames.pop()

    @property
    def call_level(self) -> int:
        return len(self.frames) - 1
