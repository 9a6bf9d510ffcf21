"""The adapter of a site file's ``[[machines]]`` entry of kind ``linuxcnc``.

The edge runs on the LinuxCNC computer (the ``linuxcnc`` module reads the controller's
shared memory), so the entry needs nothing but its id::

    [[machines]]
    id = "mill-3"
    kind = "linuxcnc"
"""

from __future__ import annotations

from ...errors import ConfigError
from .adapter import LinuxCNCAdapter, LinuxCNCSettings


def linuxcnc_adapter(machine_id: str, site: str, url: str | None = None) -> LinuxCNCAdapter:
    """The adapter of one entry; ConfigError names the machine and the key."""
    if url:
        raise ConfigError(
            f"machines.{machine_id}.url: a linuxcnc machine is read on the controller itself "
            f"(run the edge there); it takes no url, got {url!r}"
        )
    return LinuxCNCAdapter(LinuxCNCSettings(machine_id, site))
