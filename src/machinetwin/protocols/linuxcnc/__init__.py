"""LinuxCNC: the edge's adapter for a LinuxCNC controller and a headless simulator.

- :mod:`.adapter`: :class:`LinuxCNCAdapter` (positions, execution, program and line,
  tool, spindle, alarms; MDI, open, run, pause, resume, abort).
- :mod:`.helper`: its LinuxCNC side, run under Debian's python with the ``linuxcnc`` module.
- :mod:`.sim`: a headless LinuxCNC 2.9 simulator shaped like the default machine.
- :mod:`.demo`: the demo's fourth machine (a simulator and its adapter's settings).
"""

from .adapter import LinuxCNCAdapter, LinuxCNCSettings

__all__ = ["LinuxCNCAdapter", "LinuxCNCSettings"]
