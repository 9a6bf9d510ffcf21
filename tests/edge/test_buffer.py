"""The edge's durable buffer: persistence, crash safety, quota shedding, and a model check."""

from __future__ import annotations

import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from machinetwin.edge import DurableBuffer, DurableBufferError, SequenceError, Shed


def payload(machine: str, seq: int, size: int = 100) -> bytes:
    """Content that names its batch, so a mixed-up payload is caught."""
    head = f"{machine}#{seq}:".encode()
    return (head * (size // len(head) + 1))[:size]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "buffer.db"


# --------------------------------------------------------------------------- basics


def test_append_pending_ack(path: Path) -> None:
    with DurableBuffer(path, quota_bytes=10**6) as buf:
        for machine in ("a", "b"):
            for _ in range(3):
                seq = buf.next_seq(machine)
                assert buf.append(machine, seq, payload(machine, seq)) == ()
        assert [(m, s) for m, s, _ in buf.pending(10)] == [
            ("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 1), ("b", 2)
        ]  # fmt: skip
        assert all(p == payload(m, s) for m, s, p in buf.pending(10))
        assert [s for _, s, _ in buf.pending(10, machine="b", after_seq=0)] == [1, 2]
        assert buf.pending(2) == buf.pending(10)[:2]
        assert buf.ack("a", [0, 2, 7]) == 2  # unknown seq 7 is ignored
        assert buf.ack("a", [0, 2]) == 0  # a repeated ack is harmless
        assert [(m, s) for m, s, _ in buf.pending(10)] == [("a", 1), ("b", 0), ("b", 1), ("b", 2)]
        stats = buf.stats()
        assert (stats.pending_count, stats.pending_bytes) == (4, 400)
        assert stats.machines["a"].next_seq == 3
        assert stats.machines["a"].pending_count == 1


def test_persistence_across_close_and_reopen(path: Path) -> None:
    with DurableBuffer(path, quota_bytes=10**6, fsync="always") as buf:
        for seq in range(10):
            buf.append("m", seq, payload("m", seq))
        buf.ack_ranges("m", [(0, 3), (8, 8)])
    with DurableBuffer(path, quota_bytes=10**6) as buf:
        assert [s for _, s, _ in buf.pending()] == [4, 5, 6, 7, 9]
        assert buf.next_seq("m") == 10
        assert buf.ack_ranges("m", [(-5, 2**70), (3, 1)]) == 5  # clamped; empty range is a no-op
    with DurableBuffer(path, quota_bytes=10**6) as buf:
        # everything acknowledged, yet sequence numbers continue: never reused
        assert buf.pending() == []
        assert buf.next_seq("m") == 10
        assert buf.stats().pending_bytes == 0


def test_sequence_numbers_cannot_go_back(path: Path) -> None:
    with DurableBuffer(path, quota_bytes=10**6) as buf:
        buf.append("m", 0, b"x")
        with pytest.raises(SequenceError, match="below next_seq 1"):
            buf.append("m", 0, b"y")
        buf.append("m", 5, b"z")  # a gap is allowed (e.g. batches the adapter dropped)
        assert buf.next_seq("m") == 6
        with pytest.raises(SequenceError):
            buf.append_many([("m", 6, b"a"), ("m", 6, b"b")])
        assert buf.next_seq("m") == 6 and buf.stats().pending_count == 2


def test_bad_arguments(path: Path) -> None:
    with pytest.raises(DurableBufferError, match="fsync"):
        DurableBuffer(path, 100, fsync="sometimes")  # type: ignore[arg-type]
    with DurableBuffer(path, quota_bytes=100) as buf:
        with pytest.raises(DurableBufferError, match="larger than the whole quota"):
            buf.append("m", 0, bytes(101))
        with pytest.raises(DurableBufferError):
            buf.append("", 0, b"")
        with pytest.raises(SequenceError):
            buf.append("m", -1, b"")


def test_second_process_cannot_open_the_same_buffer(path: Path) -> None:
    with DurableBuffer(path, quota_bytes=100), pytest.raises(DurableBufferError, match="in use"):
        DurableBuffer(path, quota_bytes=100)


def test_background_checkpoint_makes_appends_durable_without_a_call(path: Path) -> None:
    """The "batch" policy's durability point comes from the checkpoint thread: once it
    ran, the database file alone (no WAL, as after a power loss that lost the page
    cache's WAL writes) holds every batch appended before it."""
    with DurableBuffer(path, quota_bytes=10**6, sync_interval=0.05) as buf:
        appended_at = time.monotonic()
        for seq in range(5):
            buf.append("m", seq, payload("m", seq))
        deadline = time.monotonic() + 10
        while buf.last_sync <= appended_at and time.monotonic() < deadline:
            time.sleep(0.01)
        assert buf.last_sync > appended_at, "no checkpoint ran"
        copy = path.with_name("copy.db")
        shutil.copyfile(path, copy)  # the main file only: what a checkpoint wrote
        db = sqlite3.connect(copy)
        try:
            rows = db.execute("SELECT machine, seq, payload FROM batch ORDER BY seq").fetchall()
        finally:
            db.close()
        assert rows == [("m", s, payload("m", s)) for s in range(5)]


def test_not_a_buffer_file(path: Path) -> None:
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(DurableBufferError, match=str(path)):
        DurableBuffer(path, quota_bytes=100)


# --------------------------------------------------------------------------- quota


def test_quota_sheds_oldest_first_across_machines(path: Path) -> None:
    with DurableBuffer(path, quota_bytes=1000) as buf:
        for seq in range(4):
            for machine in ("a", "b"):
                buf.append(machine, seq, payload(machine, seq, 100))  # 800 bytes
        shed = buf.append("c", 0, payload("c", 0, 350))  # needs 150 more: a#0, b#0
        assert shed == (Shed("a", 0, 0, 1, 100), Shed("b", 0, 0, 1, 100))
        assert buf.stats().pending_bytes == 950
        shed = buf.append("a", 4, payload("a", 4, 300))  # needs 250: a#1, b#1, a#2
        assert shed == (Shed("a", 1, 2, 2, 200), Shed("b", 1, 1, 1, 100))
        assert [(m, s) for m, s, _ in buf.pending()] == [
            ("b", 2),
            ("a", 3),
            ("b", 3),
            ("c", 0),
            ("a", 4),
        ]
        assert buf.stats().pending_bytes <= 1000
    with DurableBuffer(path, quota_bytes=1000) as buf:
        stats = buf.stats()  # shed accounting survives a restart
        assert (stats.shed_count, stats.shed_bytes) == (5, 500)
        assert (stats.machines["a"].shed_count, stats.machines["a"].shed_bytes) == (3, 300)
        assert (stats.machines["b"].shed_count, stats.machines["c"].shed_count) == (2, 0)
        assert stats.quota_bytes == 1000


def test_acked_batches_free_quota_without_shedding(path: Path) -> None:
    with DurableBuffer(path, quota_bytes=300) as buf:
        for seq in range(3):
            buf.append("m", seq, bytes(100))
        buf.ack("m", [0])
        assert buf.append("m", 3, bytes(100)) == ()
        assert buf.stats().shed_count == 0


def test_one_append_many_can_shed_its_own_batches(path: Path) -> None:
    with DurableBuffer(path, quota_bytes=250) as buf:
        shed = buf.append_many([("m", s, bytes(100)) for s in range(5)])
        assert shed == (Shed("m", 0, 2, 3, 300),)
        assert [s for _, s, _ in buf.pending()] == [3, 4]


# --------------------------------------------------------------------------- SIGKILL

CHILD = textwrap.dedent(
    """
    import sys
    from machinetwin.edge import DurableBuffer

    def payload(seq):
        head = f"m#{seq}:".encode()
        return (head * (2000 // len(head) + 1))[: 500 + seq % 1500]

    buf = DurableBuffer(sys.argv[1], quota_bytes=10**9, fsync=sys.argv[2])
    seq = buf.next_seq("m")
    print("START", seq, flush=True)
    while True:
        buf.append("m", seq, payload(seq))
        print("A", seq, flush=True)
        if seq >= 10:
            # the hub acknowledges everything up to 10 batches back (a cumulative ack)
            buf.ack_ranges("m", [(0, seq - 10)])
            print("K", seq - 10, flush=True)
        seq += 1
    """
)


def child_payload(seq: int) -> bytes:
    head = f"m#{seq}:".encode()
    return (head * (2000 // len(head) + 1))[: 500 + seq % 1500]


def run_and_kill(path: Path, fsync: str, lines: int) -> tuple[int, set[int], set[int]]:
    """Run the appending child until it reported ``lines`` lines, then SIGKILL it."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), fsync], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    start = int(proc.stdout.readline().split()[1])
    seen = [proc.stdout.readline() for _ in range(lines)]
    os.kill(proc.pid, signal.SIGKILL)  # mid-append, most likely: the child never waits
    seen += proc.stdout.read().splitlines()  # what it printed before it died
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    appended, acked_upto = set(), -1
    for line in seen:
        fields = line.split()
        if len(fields) != 2 or not fields[1].isdigit():
            continue  # the kill can cut the child's last line short
        kind, seq = fields
        if kind == "A":
            appended.add(int(seq))
        else:
            acked_upto = max(acked_upto, int(seq))
    return start, appended, set(range(acked_upto + 1))


@pytest.mark.slow
@pytest.mark.parametrize("fsync", ["always", "batch", "off"])
def test_sigkill_while_appending(path: Path, fsync: str) -> None:
    rng = random.Random(fsync)
    reported_appended: set[int] = set()
    reported_acked: set[int] = set()
    expected_start = 0
    for _ in range(3):
        start, appended, acked = run_and_kill(path, fsync, rng.randint(100, 400))
        assert start == expected_start  # a restarted edge continues the sequence
        reported_appended |= appended
        reported_acked |= acked
        with DurableBuffer(path, quota_bytes=10**9, fsync=fsync) as buf:
            rows = buf.pending(limit=10**6)
            seqs = [s for _, s, _ in rows]
            assert len(seqs) == len(set(seqs)), "duplicated batches"
            assert all(p == child_payload(s) for _, s, p in rows)
            pending = set(seqs)
            assert not pending & reported_acked, "acknowledged batches came back"
            # appended and reported (hence committed), not acknowledged: all still there
            lost = {s for s in reported_appended - reported_acked if s not in pending}
            # the one ack a child may have committed without living to report it
            assert len(lost) <= 1 and all(s + 10 in reported_appended | pending for s in lost)
            # the tail is contiguous and next_seq is one past it: nothing appended twice
            assert seqs == list(range(seqs[0], seqs[-1] + 1))
            assert buf.next_seq("m") == seqs[-1] + 1 >= max(reported_appended) + 1
            assert seqs[-1] <= max(reported_appended) + 1  # at most one unreported commit
            stats = buf.stats()
            assert stats.pending_count == len(seqs)
            assert stats.pending_bytes == sum(len(p) for _, _, p in rows)
            expected_start = buf.next_seq("m")


# --------------------------------------------------------------------------- model check


class ModelBuffer:
    """The specification in a few lines: a list in append order with a byte quota."""

    def __init__(self, quota: int) -> None:
        self.quota = quota
        self.rows: list[tuple[str, int, bytes]] = []
        self.next: dict[str, int] = {}
        self.shed: dict[str, list[int]] = {}

    def append(self, machine: str, seq: int, data: bytes) -> list[tuple[str, int]]:
        victims = []
        while sum(len(p) for *_, p in self.rows) + len(data) > self.quota:
            m, s, p = self.rows.pop(0)
            victims.append((m, s))
            acc = self.shed.setdefault(m, [0, 0])
            acc[0] += 1
            acc[1] += len(p)
        self.rows.append((machine, seq, data))
        self.next[machine] = seq + 1
        return victims

    def ack(self, machine: str, seqs: set[int]) -> int:
        before = len(self.rows)
        self.rows = [r for r in self.rows if not (r[0] == machine and r[1] in seqs)]
        return before - len(self.rows)


MACHINES = st.sampled_from(["harbin", "tianjin", "dalian"])


class BufferComparison(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="mt-buffer-")
        self.path = Path(self.dir) / "buffer.db"
        self.quota = 1500
        self.buf = DurableBuffer(self.path, self.quota, fsync="off")
        self.model = ModelBuffer(self.quota)

    def teardown(self) -> None:
        self.buf.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(machine=MACHINES, gap=st.integers(0, 2), size=st.integers(0, 600))
    def append(self, machine: str, gap: int, size: int) -> None:
        seq = self.model.next.get(machine, 0) + gap
        data = payload(machine, seq, size)
        shed = self.buf.append(machine, seq, data)
        expected = self.model.append(machine, seq, data)
        assert [(s.machine, s.count) for s in shed] == _per_machine(expected)
        assert sum(s.count for s in shed) == len(expected)

    @rule(machine=MACHINES, seq=st.integers(0, 5))
    def append_used_seq(self, machine: str, seq: int) -> None:
        if seq < self.model.next.get(machine, 0):
            with pytest.raises(SequenceError):
                self.buf.append(machine, seq, b"dup")

    @rule(machine=MACHINES, data=st.data())
    def ack(self, machine: str, data: st.DataObject) -> None:
        known = [s for m, s, _ in self.model.rows if m == machine]
        seqs = set(
            data.draw(st.lists(st.sampled_from(known), max_size=5) if known else st.just([]))
        )
        seqs |= set(data.draw(st.lists(st.integers(0, 30), max_size=2)))  # unknown or acked
        assert self.buf.ack(machine, seqs) == self.model.ack(machine, seqs)

    @rule(first=st.integers(0, 20), length=st.integers(0, 10), machine=MACHINES)
    def ack_range(self, machine: str, first: int, length: int) -> None:
        seqs = set(range(first, first + length + 1))
        assert self.buf.ack_ranges(machine, [(first, first + length)]) == self.model.ack(
            machine, seqs
        )

    @rule()
    def reopen(self) -> None:
        self.buf.close()
        self.buf = DurableBuffer(self.path, self.quota, fsync="off")

    @precondition(lambda self: self.model.rows)
    @rule(limit=st.integers(1, 10))
    def pending_page(self, limit: int) -> None:
        assert self.buf.pending(limit) == self.model.rows[:limit]

    @invariant()
    def same_state(self) -> None:
        assert self.buf.pending(10**6) == self.model.rows
        stats = self.buf.stats()
        assert stats.pending_count == len(self.model.rows)
        assert stats.pending_bytes == sum(len(p) for *_, p in self.model.rows) <= self.quota
        for machine, next_seq in self.model.next.items():
            assert self.buf.next_seq(machine) == next_seq
            shed = self.model.shed.get(machine, [0, 0])
            m = stats.machines[machine]
            assert (m.shed_count, m.shed_bytes) == tuple(shed)


def _per_machine(victims: list[tuple[str, int]]) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for machine, _ in victims:
        counts[machine] = counts.get(machine, 0) + 1
    return list(counts.items())


BufferComparison.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None
)
test_buffer_against_model = BufferComparison.TestCase
