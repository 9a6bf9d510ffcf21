"""The edge agent at a machine's site: sampling, store-and-forward, uplink, commands.

``buffer`` is the durable store-and-forward buffer: encoded sample batches wait on disk
(SQLite in WAL mode) until the hub acknowledges that it stored them, so a cut link, a
hub crash or an edge crash loses nothing; when the disk quota is full the oldest
unacknowledged batches are shed, counted and reported so the edge raises an alarm.
"""

from .buffer import (
    BufferStats,
    DurableBuffer,
    DurableBufferError,
    MachineStats,
    SequenceError,
    Shed,
)

__all__ = [
    "BufferStats",
    "DurableBuffer",
    "DurableBufferError",
    "MachineStats",
    "SequenceError",
    "Shed",
]
