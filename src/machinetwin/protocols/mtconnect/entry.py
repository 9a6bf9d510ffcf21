"""Adapters for a site file's ``[[machines]]`` entries of kind ``mtconnect`` or ``shdr``.

``kind = "mtconnect"``, ``url = "http://10.0.0.5:5000"`` (and optionally ``device``)
reads a machine from any MTConnect agent; ``kind = "shdr"``, ``url = "10.0.0.7:7878"``
connects straight to a machine's SHDR adapter (port 7878 when none is given).
"""

from __future__ import annotations

from ...errors import ConfigError
from ...model import Adapter
from .client import ClientSettings, MTConnectClientAdapter
from .shdr import DEFAULT_PORT, ShdrAdapter, ShdrSettings

KINDS = ("mtconnect", "shdr")


def protocol_adapter(kind: str, machine_id: str, site: str, url: str | None,
                     device: str | None = None) -> Adapter:  # fmt: skip
    """The adapter of one machine entry; ConfigError names the machine and the key."""
    if not url:
        raise ConfigError(
            f"machines.{machine_id}.url: a {kind} machine needs the url of its source"
        )
    if kind == "mtconnect":
        if not url.startswith(("http://", "https://")):
            raise ConfigError(
                f"machines.{machine_id}.url: expected http(s)://host:port, got {url!r}"
            )
        return MTConnectClientAdapter(ClientSettings(url, machine_id, site, device))
    if kind == "shdr":
        host, _, port = url.rpartition(":") if ":" in url else (url, "", str(DEFAULT_PORT))
        if not port.isdigit() or not 0 < int(port) < 65536 or not host:
            raise ConfigError(f"machines.{machine_id}.url: expected host[:port], got {url!r}")
        return ShdrAdapter(ShdrSettings(host, machine_id, int(port), site))
    raise ConfigError(f"machines.{machine_id}.kind: unknown protocol {kind!r} (expected {KINDS})")
