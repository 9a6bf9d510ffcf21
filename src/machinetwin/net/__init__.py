"""Link emulation between an edge and the hub: latency, jitter, loss, bandwidth, outages.

``LinkEmulator`` is a TCP proxy on loopback that the edge connects through to reach the
broker; ``LinkProfile`` says what one direction of the link does (see ``link.py``).
"""

from .link import (
    DALIAN_HARBIN_KM,
    DALIAN_TIANJIN_KM,
    DEMO_JITTER_MS,
    DEMO_LATENCY_MS,
    BackgroundLink,
    CutMode,
    DirectionCounters,
    LinkDirection,
    LinkEmulator,
    LinkProfile,
    LinkState,
    LinkStats,
    StreamDelay,
)

__all__ = [
    "DALIAN_HARBIN_KM",
    "DALIAN_TIANJIN_KM",
    "DEMO_JITTER_MS",
    "DEMO_LATENCY_MS",
    "BackgroundLink",
    "CutMode",
    "DirectionCounters",
    "LinkDirection",
    "LinkEmulator",
    "LinkProfile",
    "LinkState",
    "LinkStats",
    "StreamDelay",
]
