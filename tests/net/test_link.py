"""The link emulator against real TCP peers on loopback.

Timing asserts are one-sided where it matters: a configured delay is a hard floor, so
lower bounds are strict; upper bounds are loose because test machines are noisy.
"""

from __future__ import annotations

import asyncio
import random
import socket
import socketserver
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from machinetwin.net import (
    DALIAN_HARBIN_KM,
    DALIAN_TIANJIN_KM,
    BackgroundLink,
    LinkDirection,
    LinkEmulator,
    LinkProfile,
    LinkState,
    StreamDelay,
)

SLACK = 0.25  # s: how late a delivery may be on a busy 2-core machine


# --- real peers -----------------------------------------------------------------


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@asynccontextmanager
async def echo_server() -> AsyncIterator[int]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


class Sink:
    """Counts the bytes it receives and when they arrived (same clock as the test)."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, int]] = []
        self.received = 0
        self.changed = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        try:
            while data := await reader.read(65536):
                self.received += len(data)
                self.arrivals.append((loop.time(), len(data)))
                self.changed.set()
        except ConnectionError:
            pass  # the emulator stopped and reset the connection
        finally:
            writer.close()

    async def wait_for(self, nbytes: int, timeout: float = 10.0) -> float:
        async with asyncio.timeout(timeout):
            while self.received < nbytes:
                self.changed.clear()
                await self.changed.wait()
        return self.arrivals[-1][0]


@asynccontextmanager
async def sink_server() -> AsyncIterator[tuple[Sink, int]]:
    sink = Sink()
    server = await asyncio.start_server(sink.handle, "127.0.0.1", 0)
    try:
        yield sink, server.sockets[0].getsockname()[1]
    finally:
        server.close()


@asynccontextmanager
async def linked_echo(profile: LinkProfile, **kwargs) -> AsyncIterator[LinkEmulator]:
    async with echo_server() as port, LinkEmulator("127.0.0.1", port, profile, **kwargs) as link:
        yield link


async def round_trip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> float:
    start = time.monotonic()
    writer.write(b"ping")
    await writer.drain()
    assert await reader.readexactly(4) == b"ping"
    return time.monotonic() - start


async def link_dropped(reader: asyncio.StreamReader, timeout: float = 2.0) -> bool:
    """True when the connection ended (EOF or reset) within ``timeout``."""
    try:
        return await asyncio.wait_for(reader.read(1), timeout) == b""
    except ConnectionError:
        return True


# --- the profile ----------------------------------------------------------------


def test_profile_from_distance_uses_fibre_delay_and_routing() -> None:
    harbin = LinkProfile.from_distance(DALIAN_HARBIN_KM)
    tianjin = LinkProfile.from_distance(DALIAN_TIANJIN_KM)
    # 870 km * 2 (routing) * 5 us/km + 2 ms equipment
    assert harbin.latency_ms == pytest.approx(10.7)
    assert tianjin.latency_ms == pytest.approx(6.6)
    assert harbin.jitter_ms == pytest.approx(1.07)
    straight = LinkProfile.from_distance(1000, routing_factor=1, equipment_ms=0, jitter_ms=0)
    assert straight.latency_ms == pytest.approx(5.0)
    assert LinkProfile.from_distance(870, loss=0.01).loss == 0.01
    with pytest.raises(ValueError, match="routing_factor"):
        LinkProfile.from_distance(100, routing_factor=0.5)


def test_demo_profile_and_validation() -> None:
    demo = LinkProfile.demo()
    assert (demo.latency_ms, demo.jitter_ms) == (15.0, 2.0)
    with pytest.raises(ValidationError, match="loss"):
        LinkProfile(loss=1.0)  # certain loss would retransmit forever
    with pytest.raises(ValidationError, match="nonsense"):
        LinkProfile(nonsense=1)


# --- the delay model (pure) ----------------------------------------------------------

profiles = st.builds(
    LinkProfile,
    latency_ms=st.floats(0, 50),
    jitter_ms=st.floats(0, 20),
    jitter_distribution=st.sampled_from(["normal", "uniform", "exponential"]),
    loss=st.floats(0, 0.5),
    retransmit_timeout_ms=st.floats(1, 300),
    bandwidth_mbit_s=st.none() | st.floats(0.1, 1000),
)


def delivery_times(profile: LinkProfile, seed: int, reads: list[tuple[float, int]]) -> list[float]:
    delay = StreamDelay(LinkDirection(profile), random.Random(seed))
    return [delay.deliver_at(now, n) for now, n in reads]


@given(
    profile=profiles,
    seed=st.integers(0, 2**32),
    gaps=st.lists(st.tuples(st.floats(0, 0.05), st.integers(1, 65536)), min_size=1, max_size=50),
)
def test_delays_are_in_order_above_the_floor_and_repeatable(profile, seed, gaps) -> None:
    reads, now = [], 0.0
    for gap, n in gaps:
        now += gap
        reads.append((now, n))
    times = delivery_times(profile, seed, reads)
    assert times == sorted(times)  # TCP: never reordered
    for (read_at, _), at in zip(reads, times, strict=True):
        assert at >= read_at + profile.latency_ms / 1000 - 1e-12
    assert delivery_times(profile, seed, reads) == times  # same seed, same delays


def test_loss_adds_doubling_retransmission_timeouts() -> None:
    profile = LinkProfile(latency_ms=10, loss=0.3, retransmit_timeout_ms=200)
    delay = StreamDelay(LinkDirection(profile), random.Random(7))
    # Reads far apart, so in-order delivery never hides a chunk's own delay.
    extras = [delay.deliver_at(10.0 * i, 100) - 10.0 * i - 0.010 for i in range(500)]
    allowed = {round(200 * (2**k - 1)) for k in range(12)}  # 0, 200, 600, 1400, ...
    assert {round(e * 1000) for e in extras} <= allowed
    lost = sum(round(e * 1000) > 0 for e in extras)
    assert 0.2 * 500 < lost < 0.4 * 500
    assert delay.direction.counters.lost >= lost


def test_bandwidth_is_shared_by_every_stream_in_a_direction() -> None:
    direction = LinkDirection(LinkProfile(bandwidth_mbit_s=8))  # 1 MB/s
    a = StreamDelay(direction, random.Random(1))
    b = StreamDelay(direction, random.Random(2))
    assert a.deliver_at(0.0, 500_000) == pytest.approx(0.5)
    assert b.deliver_at(0.0, 500_000) == pytest.approx(1.0)  # queued behind a's chunk


# --- delays on real connections -------------------------------------------------------


def test_round_trip_is_at_least_twice_the_one_way_latency() -> None:
    async def main() -> None:
        async with linked_echo(LinkProfile(latency_ms=25)) as link:
            reader, writer = await asyncio.open_connection("127.0.0.1", link.port)
            rtts = [await round_trip(reader, writer) for _ in range(5)]
            writer.close()
        assert min(rtts) >= 0.050
        assert sorted(rtts)[2] < 0.050 + SLACK

    asyncio.run(main())


def test_one_way_delay_per_direction() -> None:
    async def main() -> None:
        up, down = LinkProfile(latency_ms=40), LinkProfile(latency_ms=0)
        async with (
            sink_server() as (sink, port),
            LinkEmulator("127.0.0.1", port, up, downstream=down) as link,
        ):
            _, writer = await asyncio.open_connection("127.0.0.1", link.port)
            sent = asyncio.get_running_loop().time()
            writer.write(b"x" * 100)
            arrived = await sink.wait_for(100)
            writer.close()
        assert 0.040 <= arrived - sent < 0.040 + SLACK

    asyncio.run(main())


def test_jitter_only_ever_adds_delay() -> None:
    async def main() -> None:
        profile = LinkProfile(latency_ms=10, jitter_ms=10, jitter_distribution="uniform")
        async with linked_echo(profile, seed=3) as link:
            reader, writer = await asyncio.open_connection("127.0.0.1", link.port)
            rtts = [await round_trip(reader, writer) for _ in range(8)]
            writer.close()
        assert min(rtts) >= 0.020
        assert sorted(rtts)[4] < 0.040 + SLACK

    asyncio.run(main())


# --- the byte stream survives jitter and loss ------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    pieces=st.lists(st.binary(min_size=1, max_size=3000), min_size=1, max_size=30),
    pauses=st.lists(st.booleans(), min_size=30, max_size=30),
)
def test_stream_arrives_complete_and_in_order(seed, pieces, pauses) -> None:
    # Short delays but plenty of jitter and loss, so reordering would show if it could.
    profile = LinkProfile(latency_ms=1, jitter_ms=3, loss=0.3, retransmit_timeout_ms=5)
    payload = b"".join(pieces)

    async def main() -> bytes:
        async with linked_echo(profile, seed=seed, max_chunk_bytes=512) as link:
            reader, writer = await asyncio.open_connection("127.0.0.1", link.port)
            for piece, pause in zip(pieces, pauses, strict=False):
                writer.write(piece)
                await writer.drain()
                if pause:  # split the stream into separate reads on the proxy
                    await asyncio.sleep(0.002)
            echoed = await asyncio.wait_for(reader.readexactly(len(payload)), 10)
            writer.close()
            stats = link.stats()
        assert stats.upstream.bytes == stats.downstream.bytes == len(payload)
        return echoed

    echoed = asyncio.run(main())
    assert echoed == payload


def test_loss_is_counted_and_delays_the_stream() -> None:
    async def main() -> None:
        profile = LinkProfile(loss=0.5, retransmit_timeout_ms=30)
        async with linked_echo(profile, seed=11) as link:
            reader, writer = await asyncio.open_connection("127.0.0.1", link.port)
            rtts = [await round_trip(reader, writer) for _ in range(10)]
            writer.close()
            stats = link.stats()
        lost = stats.upstream.lost + stats.downstream.lost
        assert lost > 0
        assert sum(rtts) >= 0.030 * lost  # each retransmission waited a full timeout
        assert stats.upstream.chunks == stats.downstream.chunks == 10

    asyncio.run(main())


# --- bandwidth ---------------------------------------------------------------------


async def time_to_send(nbytes: int, profile: LinkProfile) -> float:
    async with sink_server() as (sink, port), LinkEmulator("127.0.0.1", port, profile) as link:
        _, writer = await asyncio.open_connection("127.0.0.1", link.port)
        start = asyncio.get_running_loop().time()
        writer.write(b"\0" * nbytes)
        arrived = await sink.wait_for(nbytes)
        writer.close()
        return arrived - start


def test_bandwidth_limit_lowers_throughput() -> None:
    nbytes, mbit = 100_000, 2.0  # 2 Mbit/s: 0.4 s for 100 kB

    async def main() -> tuple[float, float]:
        limited = await time_to_send(nbytes, LinkProfile(bandwidth_mbit_s=mbit))
        free = await time_to_send(nbytes, LinkProfile())
        return limited, free

    limited, free = asyncio.run(main())
    floor = nbytes * 8 / (mbit * 1e6)
    assert floor <= limited < floor + 2 * SLACK
    assert free < floor / 2


# --- outages -----------------------------------------------------------------------


def test_cut_resets_connections_and_refuses_new_ones_until_restore() -> None:
    async def main() -> None:
        async with linked_echo(LinkProfile(latency_ms=5)) as link:
            reader, writer = await asyncio.open_connection("127.0.0.1", link.port)
            await round_trip(reader, writer)
            await link.cut()
            assert link.state is LinkState.CUT
            assert await link_dropped(reader)
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection("127.0.0.1", link.port)
            await link.restore()
            assert link.state is LinkState.UP
            reader, writer = await asyncio.open_connection("127.0.0.1", link.port)
            assert await round_trip(reader, writer) >= 0.010
            writer.close()
            stats = link.stats()
        assert stats.connections_reset == 1
        assert stats.connections_accepted == 2

    asyncio.run(main())


def test_blackhole_holds_the_stream_and_resumes_it_intact() -> None:
    async def main() -> None:
        async with linked_echo(LinkProfile(latency_ms=2), cut_mode="blackhole") as link:
            reader, writer = await asyncio.open_connection("127.0.0.1", link.port)
            await round_trip(reader, writer)
            await link.cut()
            writer.write(b"held")
            await writer.drain()
            with pytest.raises(TimeoutError):  # no reset, no data: only a timeout tells
                await asyncio.wait_for(reader.readexactly(4), 0.3)
            await link.restore()
            assert await asyncio.wait_for(reader.readexactly(4), 2) == b"held"
            writer.close()

    asyncio.run(main())


def test_scheduled_outage_cuts_then_restores() -> None:
    async def main() -> None:
        async with linked_echo(LinkProfile()) as link:
            outage = asyncio.create_task(link.outage(0.3))
            await asyncio.sleep(0.05)
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection("127.0.0.1", link.port)
            await outage
            reader, writer = await asyncio.open_connection("127.0.0.1", link.port)
            await round_trip(reader, writer)
            writer.close()

    asyncio.run(main())


def test_target_down_resets_the_client() -> None:
    async def main() -> None:
        with socket.socket() as s:  # a port nobody listens on
            s.bind(("127.0.0.1", 0))
            dead_port = s.getsockname()[1]
        async with LinkEmulator("127.0.0.1", dead_port) as link:
            reader, _ = await asyncio.open_connection("127.0.0.1", link.port)
            assert await link_dropped(reader)

    asyncio.run(main())


# --- from synchronous code -----------------------------------------------------------


class _EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@contextmanager
def threaded_echo() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _EchoHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_background_link_from_sync_code() -> None:
    with (
        threaded_echo() as port,
        BackgroundLink(LinkEmulator("127.0.0.1", port, LinkProfile(latency_ms=20))) as link,
    ):
        with socket.create_connection(("127.0.0.1", link.port), timeout=2) as s:
            start = time.monotonic()
            s.sendall(b"ping")
            assert s.recv(4) == b"ping"
            assert time.monotonic() - start >= 0.040
            link.cut()
            with suppress(ConnectionResetError):  # a reset or an EOF: either way, gone
                assert s.recv(4) == b""
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", link.port), timeout=2)
        link.restore()
        with socket.create_connection(("127.0.0.1", link.port), timeout=2) as s:
            s.sendall(b"back")
            assert s.recv(4) == b"back"
        stats = link.stats()
        assert stats.state is LinkState.UP
        assert stats.upstream.bytes == 8
