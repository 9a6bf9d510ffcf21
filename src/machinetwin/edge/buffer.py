"""The edge's durable store-and-forward buffer of encoded sample batches.

Batches (opaque ``bytes``, normally :func:`machinetwin.protocols.codec.encode_batch`
payloads) are kept in a SQLite database in WAL mode, keyed by ``(machine, seq)``. A
batch leaves the buffer only through :meth:`DurableBuffer.ack` (the hub stored it) or
through quota shedding (below). Each ``append``/``ack`` call is one transaction: after
it returns, either all of it is in the database or none of it is.

Sequence numbers: :meth:`DurableBuffer.next_seq` is the number the machine's next batch
must carry. It is stored with the batches, in the same transaction, so it never goes
back across a process crash or restart, even after every batch was acknowledged;
``append`` refuses a sequence number below it (:class:`SequenceError`), so a batch can
never be buffered twice.

fsync policy (``fsync=``), i.e. what a committed ``append``/``ack`` survives:

``"always"`` — ``PRAGMA synchronous=FULL``: the WAL is fsynced at every commit. A
    returned ``append`` survives a process crash *and* a power loss or OS crash.
    Slowest: one fsync per call (group batches with :meth:`append_many`).
``"batch"`` (default) — ``PRAGMA synchronous=NORMAL``: commits are written to the WAL
    without fsync. A background thread checkpoints the WAL every ``sync_interval``
    seconds (1 s by default) on a connection of its own — a checkpoint fsyncs the WAL,
    copies it into the database and fsyncs that — and so do :meth:`sync` and
    :meth:`close`. A returned ``append`` survives a process crash (the data is in the WAL
    file, in the OS page cache). A power loss leaves a consistent database but may roll
    back the commits since the last checkpoint (at most ~``sync_interval`` seconds plus
    one checkpoint's duration): those appends are lost, those acks are undone (the
    batches are resent; the hub is idempotent, so what the hub acknowledged is stored
    there exactly once), and ``next_seq`` may step back over the lost batches, so their
    sequence numbers can be reused — a hub that already stored the old batches under
    those numbers then drops the new ones as duplicates.
``"off"`` — ``PRAGMA synchronous=OFF``: never fsyncs (the background checkpoints only
    bound the WAL's size). Survives a process crash like ``"batch"``; a power loss may
    lose any amount of recent data and, per SQLite's documentation, may corrupt the
    database file. For tests and throw-away demos.

Why checkpoints run beside the writer: a checkpoint copies and fsyncs a second's worth
of batches (megabytes at a busy site); run inside ``append`` it stalled the site's
event loop for tens of milliseconds every second (``benchmarks/edge_buffer.py``: append
p99 ~13 ms, max 35-130 ms at 150 batches/s), on the send path of every machine. A
PASSIVE checkpoint on its own connection takes no lock the writer needs (WAL mode), so
appends and acks never wait for one. SQLite's automatic checkpoint (in the committing
call) is off for the same reason.

Quota and shedding: ``quota_bytes`` bounds the sum of the pending payloads' sizes
(SQLite's page overhead, ~5-10 %, comes on top; the file does not shrink after acks, its
free pages are reused). When an append would exceed the quota, the OLDEST pending
batches (in append order, across all machines) are deleted until the new batch fits:
recent data is worth more to a service engineer than old data, and the newest batches
are the ones a reconnecting link sends soonest. Shedding is never silent: every append
returns what it shed as :class:`Shed` records (the edge raises an alarm for each), and
:meth:`DurableBuffer.stats` reports cumulative shed counts and bytes per machine,
persisted across restarts.

One owner: the buffer holds an exclusive ``flock`` on ``<path>.lock`` while open, so a
second process (or a second ``DurableBuffer`` in this one) opening the same buffer gets
:class:`DurableBufferError` instead of interleaving sequence numbers.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from ..errors import MachinetwinError
from ..protocols.codec import seq_ranges

log = logging.getLogger(__name__)

FsyncPolicy = Literal["batch", "always", "off"]

_SYNCHRONOUS: dict[str, str] = {"always": "FULL", "batch": "NORMAL", "off": "OFF"}
_SCHEMA_VERSION = 1
_MAX_SEQ = 2**63 - 1
_SHED_CHUNK = 256  # rows read per step when looking for the oldest batches to shed
_WAL_SIZE_LIMIT = 64 * 1024 * 1024  # truncate the WAL back to this after a checkpoint

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batch (
    id INTEGER PRIMARY KEY,          -- append order: pending() and shedding go oldest first
    machine TEXT NOT NULL,
    seq INTEGER NOT NULL,
    nbytes INTEGER NOT NULL,
    payload BLOB NOT NULL,           -- last, so scans of the other columns skip its pages
    UNIQUE (machine, seq)
);
CREATE TABLE IF NOT EXISTS machine (
    machine TEXT PRIMARY KEY,
    next_seq INTEGER NOT NULL,
    shed_count INTEGER NOT NULL DEFAULT 0,
    shed_bytes INTEGER NOT NULL DEFAULT 0
);
"""


class DurableBufferError(MachinetwinError):
    """The edge buffer cannot do what was asked (cannot open, disk full, bad argument)."""


class SequenceError(DurableBufferError):
    """An append carries a sequence number below the machine's ``next_seq``."""


@dataclass(frozen=True, slots=True)
class Shed:
    """Batches of one machine deleted unacknowledged because the quota was full."""

    machine: str
    first_seq: int
    last_seq: int
    count: int
    nbytes: int


@dataclass(frozen=True, slots=True)
class MachineStats:
    next_seq: int
    pending_count: int
    pending_bytes: int
    shed_count: int
    shed_bytes: int


@dataclass(frozen=True, slots=True)
class BufferStats:
    quota_bytes: int
    pending_count: int
    pending_bytes: int
    shed_count: int
    shed_bytes: int
    machines: dict[str, MachineStats]


Item = tuple[str, int, bytes]


class DurableBuffer:
    """Encoded batches on disk until the hub acknowledges them (see the module docstring).

    Thread-safe: calls are serialised by a lock, so the edge may run them in a worker
    thread (``asyncio.to_thread``) to keep fsyncs off the event loop.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        quota_bytes: int,
        fsync: FsyncPolicy = "batch",
        *,
        sync_interval: float = 1.0,
    ) -> None:
        if fsync not in _SYNCHRONOUS:
            raise DurableBufferError(f"fsync must be one of {sorted(_SYNCHRONOUS)}, got {fsync!r}")
        if quota_bytes <= 0:
            raise DurableBufferError(f"quota_bytes must be > 0, got {quota_bytes}")
        if not sync_interval > 0:
            raise DurableBufferError(f"sync_interval must be > 0 s, got {sync_interval!r}")
        self.path = Path(path)
        self.quota_bytes = int(quota_bytes)
        self.fsync: FsyncPolicy = fsync
        self.sync_interval = sync_interval
        self._lock = threading.Lock()
        self._owner = self._take_ownership()
        try:
            self._db = self._open()
            self._checkpointer = _Checkpointer(self.path, fsync, sync_interval)
        except BaseException:
            if getattr(self, "_db", None) is not None:
                self._db.close()
            self._owner.close()
            raise
        self._next_seq: dict[str, int] = dict(
            self._db.execute("SELECT machine, next_seq FROM machine").fetchall()
        )
        count, nbytes = self._db.execute("SELECT count(*), total(nbytes) FROM batch").fetchone()
        self._pending_count = int(count)
        self._pending_bytes = int(nbytes)

    # ------------------------------------------------------------------ open / close

    def _take_ownership(self) -> IO[bytes]:
        """An exclusive lock on ``<path>.lock``, held while the buffer is open."""
        lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            owner = open(lock_path, "a+b")  # noqa: SIM115 - held until close()
        except OSError as e:
            raise DurableBufferError(f"{self.path}: cannot open the edge buffer: {e}") from e
        try:
            fcntl.flock(owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            owner.close()
            raise DurableBufferError(
                f"{self.path}: cannot open the edge buffer: in use by another process "
                f"({lock_path} is locked)"
            ) from e
        return owner

    def _open(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(
                self.path, timeout=2.0, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as e:
            raise DurableBufferError(f"{self.path}: cannot open the edge buffer: {e}") from e
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise DurableBufferError(f"{self.path}: cannot use WAL mode (got {mode!r})")
            db.execute(f"PRAGMA synchronous={_SYNCHRONOUS[self.fsync]}")
            db.execute(f"PRAGMA journal_size_limit={_WAL_SIZE_LIMIT}")
            db.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints run beside, see above
            self._init_schema(db)
        except sqlite3.Error as e:
            db.close()
            raise DurableBufferError(
                f"{self.path}: cannot open the edge buffer (not a buffer file?): {e}"
            ) from e
        except DurableBufferError:
            db.close()
            raise
        return db

    def _init_schema(self, db: sqlite3.Connection) -> None:
        db.execute("BEGIN IMMEDIATE")
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, _SCHEMA_VERSION):
                raise DurableBufferError(
                    f"{self.path}: buffer schema version {version}, this edge reads {_SCHEMA_VERSION}"
                )
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        """Make everything durable (a final checkpoint) and release the file."""
        with self._lock:
            if self._db is None:
                return
            try:
                self._checkpointer.stop()
                if self.fsync != "off":
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                self._db.close()
                self._db = None  # type: ignore[assignment]
                self._owner.close()  # releases the lock

    def __enter__(self) -> DurableBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ helpers

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._db
        if db is None:
            raise DurableBufferError(f"{self.path}: the buffer is closed")
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:  # disk full, I/O error: the edge raises an alarm
            raise DurableBufferError(f"{self.path}: {e}") from e

    def sync(self) -> None:
        """Force what was committed onto the disk now (a no-op in "off" mode)."""
        if self._db is None:
            return
        self._checkpointer.checkpoint()

    @property
    def last_sync(self) -> float:
        """``time.monotonic()`` of the last completed checkpoint (what a power loss keeps)."""
        return self._checkpointer.last_sync

    # ------------------------------------------------------------------ sequence numbers

    def next_seq(self, machine: str) -> int:
        """The sequence number the machine's next batch must carry (0 for a new machine)."""
        with self._lock:
            return self._next_seq.get(machine, 0)

    # ------------------------------------------------------------------ append

    def append(self, machine: str, seq: int, payload: bytes) -> tuple[Shed, ...]:
        """Store one batch durably (per the fsync policy); returns what the quota shed.

        A non-empty result means unacknowledged data was deleted: raise an alarm.
        """
        return self.append_many([(machine, seq, payload)])

    def append_many(self, items: Iterable[Item]) -> tuple[Shed, ...]:
        """Store several batches in one transaction (one fsync under "always")."""
        rows = [self._checked(m, s, p) for m, s, p in items]
        with self._lock:
            next_seq = self._check_sequence(rows)
            count, nbytes = self._pending_count, self._pending_bytes
            victims: list[tuple[str, int, int]] = []
            with self._transaction() as db:
                for machine, seq, payload in rows:
                    over = nbytes + len(payload) - self.quota_bytes
                    if over > 0:
                        shed = self._shed_oldest(db, over)
                        victims += shed
                        count -= len(shed)
                        nbytes -= sum(n for _, _, n in shed)
                    db.execute(
                        "INSERT INTO batch (machine, seq, nbytes, payload) VALUES (?, ?, ?, ?)",
                        (machine, seq, len(payload), payload),
                    )
                    count += 1
                    nbytes += len(payload)
                db.executemany(
                    "INSERT INTO machine (machine, next_seq) VALUES (?, ?) "
                    "ON CONFLICT (machine) DO UPDATE SET next_seq = excluded.next_seq",
                    next_seq.items(),
                )
                sheds = _summarise(victims)
                db.executemany(
                    "UPDATE machine SET shed_count = shed_count + ?, shed_bytes = shed_bytes + ? "
                    "WHERE machine = ?",
                    [(s.count, s.nbytes, s.machine) for s in sheds],
                )
            # Memory follows the database only once the commit succeeded.
            self._next_seq.update(next_seq)
            self._pending_count, self._pending_bytes = count, nbytes
        return sheds

    def _checked(self, machine: object, seq: object, payload: object) -> Item:
        if not isinstance(machine, str) or not machine:
            raise DurableBufferError(f"machine must be a non-empty str, got {machine!r}")
        if type(seq) is not int or not 0 <= seq < _MAX_SEQ:
            raise SequenceError(f"{machine}: seq must be an int in 0..2**63-2, got {seq!r}")
        if not isinstance(payload, bytes | bytearray | memoryview):
            raise DurableBufferError(f"{machine}#{seq}: payload must be bytes")
        data = bytes(payload)
        if len(data) > self.quota_bytes:
            raise DurableBufferError(
                f"{machine}#{seq}: payload of {len(data)} bytes is larger than the whole "
                f"quota ({self.quota_bytes} bytes)"
            )
        return machine, seq, data

    def _check_sequence(self, rows: list[Item]) -> dict[str, int]:
        """The machines' next_seq after these rows; refuses any number already used."""
        after: dict[str, int] = {}
        for machine, seq, _ in rows:
            expected = after.get(machine, self._next_seq.get(machine, 0))
            if seq < expected:
                raise SequenceError(
                    f"{machine}: seq {seq} is below next_seq {expected} (already buffered or sent)"
                )
            after[machine] = seq + 1
        return after

    def _shed_oldest(self, db: sqlite3.Connection, over: int) -> list[tuple[str, int, int]]:
        """Delete the oldest pending batches totalling at least ``over`` bytes."""
        victims: list[tuple[str, int, int]] = []
        freed, last_id = 0, -1
        while freed < over:
            chunk = db.execute(
                "SELECT id, machine, seq, nbytes FROM batch WHERE id > ? ORDER BY id LIMIT ?",
                (last_id, _SHED_CHUNK),
            ).fetchall()
            if not chunk:
                break
            for row_id, machine, seq, n in chunk:
                victims.append((machine, seq, n))
                freed += n
                last_id = row_id
                if freed >= over:
                    break
        db.execute("DELETE FROM batch WHERE id <= ?", (last_id,))
        return victims

    # ------------------------------------------------------------------ read / ack

    def pending(
        self, limit: int = 1000, *, machine: str | None = None, after_seq: int = -1
    ) -> list[Item]:
        """Unacknowledged batches, oldest first, as ``(machine, seq, payload)``.

        With ``machine``, only that machine's batches with ``seq > after_seq`` (so an
        uplink can page past what it already has in flight).
        """
        with self._lock:
            db = self._db
            if db is None:
                raise DurableBufferError(f"{self.path}: the buffer is closed")
            if machine is None:
                cur = db.execute(
                    "SELECT machine, seq, payload FROM batch ORDER BY id LIMIT ?", (limit,)
                )
            else:
                cur = db.execute(
                    "SELECT machine, seq, payload FROM batch WHERE machine = ? AND seq > ? "
                    "ORDER BY seq LIMIT ?",
                    (machine, after_seq, limit),
                )
            return cur.fetchall()

    def ack(self, machine: str, seqs: Iterable[int]) -> int:
        """The hub stored these batches: delete them. Unknown or repeated seqs are ignored.

        Returns how many batches left the buffer.
        """
        return self.ack_ranges(machine, seq_ranges(seqs))

    def ack_ranges(self, machine: str, ranges: Iterable[tuple[int, int]]) -> int:
        """Like :meth:`ack` with inclusive ``(first, last)`` ranges, as the hub sends them."""
        # Clamped to what SQLite's INTEGER holds; an empty range simply matches nothing.
        spans = [(machine, max(int(a), 0), min(int(b), _MAX_SEQ)) for a, b in ranges]
        with self._lock:
            removed = freed = 0
            with self._transaction() as db:
                for span in spans:
                    n, size = db.execute(
                        "SELECT count(*), total(nbytes) FROM batch "
                        "WHERE machine = ? AND seq BETWEEN ? AND ?",
                        span,
                    ).fetchone()
                    if n:
                        db.execute(
                            "DELETE FROM batch WHERE machine = ? AND seq BETWEEN ? AND ?", span
                        )
                        removed += n
                        freed += int(size)
            self._pending_count -= removed
            self._pending_bytes -= freed
        return removed

    # ------------------------------------------------------------------ stats

    def stats(self) -> BufferStats:
        """Pending and shed counts/bytes, in total and per machine; shed totals persist."""
        with self._lock:
            db = self._db
            if db is None:
                raise DurableBufferError(f"{self.path}: the buffer is closed")
            pending = {
                m: (int(n), int(b))
                for m, n, b in db.execute(
                    "SELECT machine, count(*), total(nbytes) FROM batch GROUP BY machine"
                )
            }
            machines = {
                m: MachineStats(next_seq, *pending.get(m, (0, 0)), shed_count, shed_bytes)
                for m, next_seq, shed_count, shed_bytes in db.execute(
                    "SELECT machine, next_seq, shed_count, shed_bytes FROM machine ORDER BY machine"
                )
            }
            return BufferStats(
                quota_bytes=self.quota_bytes,
                pending_count=self._pending_count,
                pending_bytes=self._pending_bytes,
                shed_count=sum(s.shed_count for s in machines.values()),
                shed_bytes=sum(s.shed_bytes for s in machines.values()),
                machines=machines,
            )


def _summarise(victims: list[tuple[str, int, int]]) -> tuple[Shed, ...]:
    """One :class:`Shed` per machine, in the order the machines were first hit."""
    acc: dict[str, list[int]] = {}
    for machine, seq, n in victims:
        a = acc.setdefault(machine, [seq, seq, 0, 0])
        a[0], a[1] = min(a[0], seq), max(a[1], seq)
        a[2] += 1
        a[3] += n
    return tuple(Shed(m, first, last, count, n) for m, (first, last, count, n) in acc.items())


class _Checkpointer:
    """Checkpoints the buffer's WAL every ``interval`` seconds on its own connection.

    PASSIVE checkpoints: they copy what is committed and never wait for, nor block, the
    writer. A failed checkpoint (disk full, I/O error) is logged and tried again at the
    next interval; the writer meets the same disk at its next commit and raises there.
    """

    def __init__(self, path: Path, fsync: FsyncPolicy, interval: float) -> None:
        self.path = path
        self.interval = interval
        self.last_sync = time.monotonic()
        self._db = sqlite3.connect(path, timeout=2.0, isolation_level=None,
                                   check_same_thread=False)  # fmt: skip
        self._db.execute(f"PRAGMA synchronous={_SYNCHRONOUS[fsync]}")  # fsyncs per policy
        self._db.execute("PRAGMA wal_autocheckpoint=0")
        self._db.execute(f"PRAGMA journal_size_limit={_WAL_SIZE_LIMIT}")
        self._lock = threading.Lock()  # one checkpoint at a time: the thread's or sync()'s
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"checkpoint {path.name}",
                                        daemon=True)  # fmt: skip
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            try:
                self.checkpoint()
            except DurableBufferError as e:
                log.warning("%s", e)

    def checkpoint(self) -> None:
        with self._lock:
            if self._db is None:
                return
            try:
                self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error as e:
                raise DurableBufferError(f"{self.path}: checkpoint failed: {e}") from e
            self.last_sync = time.monotonic()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()
        with self._lock:
            self._db.close()
            self._db = None  # type: ignore[assignment]
