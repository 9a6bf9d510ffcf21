"""A TCP proxy that makes a loopback connection feel like a link between two cities.

The edge connects to the hub's MQTT broker through a :class:`LinkEmulator`: it listens
on a loopback port and forwards every accepted connection to the broker, delaying each
chunk of bytes the way a long TCP path would.

The model works on chunks (what one ``read()`` returns, at most ``max_chunk_bytes``)
rather than packets, because the proxy only ever sees a byte stream:

- **Latency** is the propagation floor: no chunk arrives sooner than ``latency_ms``
  after it was read. It is a hard lower bound on purpose, so tests can rely on it.
- **Jitter** is extra queueing delay and therefore never negative (half-normal,
  uniform or exponential). TCP delivers in order, so a chunk never overtakes the one
  before it: delivery times are made monotonic per stream (head-of-line blocking).
- **Loss** is what TCP turns it into: the chunk arrives one retransmission timeout
  later (doubling on each repeated loss, as TCP's back-off does), and in-order delivery
  holds everything behind it back too. Nothing is ever dropped from the stream.
- **Bandwidth** is a serialisation delay on a clock shared by every connection in
  the same direction, as on one physical link.
- **Outages**: :meth:`LinkEmulator.cut` either resets every connection (both peers see
  ``ECONNRESET`` at once) or black-holes them (nothing moves; the peers only notice
  through their own keepalive timeouts, and the stream resumes intact if the link comes
  back first, as TCP would). While cut, the listening socket is closed, so new
  connections are refused.

Directions: *upstream* is client → target (edge → broker), *downstream* is target →
client. Each direction may have its own :class:`LinkProfile`.

Randomness comes from ``random.Random`` seeded per (seed, connection number, direction),
so the same sequence of chunks gets the same delays on every run.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from enum import StrEnum
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field

# --- distances and figures -------------------------------------------------------

# Light in silica fibre (refractive index ~1.47) travels ~204,000 km/s: ~4.9 us/km.
FIBRE_MS_PER_KM = 0.005
# Fibre follows roads, railways and carrier exchanges, not great circles; 1.5-2.5x the
# straight-line distance is typical. Dalian sits on a peninsula, so routes to Tianjin
# go round the Bohai Sea through Shenyang or Beijing (~2x the 460 km straight line).
DEFAULT_ROUTING_FACTOR = 2.0
# Fixed delay of routers, switches and the factory's access line, one way.
DEFAULT_EQUIPMENT_MS = 2.0
# Straight-line distances from the lab in Dalian (great circle, rounded).
DALIAN_TIANJIN_KM = 460.0
DALIAN_HARBIN_KM = 870.0
# The demo's default: one round figure for every site, above what from_distance gives
# for Harbin (~10.7 ms) to leave room for a carrier route through Beijing.
DEMO_LATENCY_MS = 15.0
DEMO_JITTER_MS = 2.0
# Linux's minimum retransmission timeout (TCP_RTO_MIN) and its cap (TCP_RTO_MAX).
TCP_RTO_MIN_MS = 200.0
TCP_RTO_MAX_MS = 120_000.0

JitterDistribution = Literal["normal", "uniform", "exponential"]
CutMode = Literal["reset", "blackhole"]


class LinkProfile(BaseModel):
    """What one direction of a link does to the bytes that cross it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    latency_ms: float = Field(0.0, ge=0, description="one-way propagation delay, a hard floor")
    jitter_ms: float = Field(0.0, ge=0, description="scale of the extra, non-negative delay")
    jitter_distribution: JitterDistribution = "normal"
    loss: float = Field(0.0, ge=0, lt=1, description="probability that a chunk is lost once")
    retransmit_timeout_ms: float = Field(TCP_RTO_MIN_MS, gt=0)
    bandwidth_mbit_s: float | None = Field(None, gt=0, description="None: unlimited")

    @classmethod
    def from_distance(
        cls,
        km: float,
        routing_factor: float = DEFAULT_ROUTING_FACTOR,
        equipment_ms: float = DEFAULT_EQUIPMENT_MS,
        jitter_ms: float | None = None,
        **extra: Any,
    ) -> LinkProfile:
        """A profile for a straight-line distance: fibre delay over the routed path.

        ``latency = km * routing_factor * 5 us/km + equipment_ms``; jitter defaults to a
        tenth of that. Dalian-Tianjin (460 km) gives ~6.6 ms, Dalian-Harbin (870 km)
        ~10.7 ms one way with the defaults.
        """
        if km < 0 or routing_factor < 1:
            raise ValueError(f"need km >= 0 and routing_factor >= 1, got {km}, {routing_factor}")
        latency = km * routing_factor * FIBRE_MS_PER_KM + equipment_ms
        jitter = latency / 10 if jitter_ms is None else jitter_ms
        return cls(latency_ms=latency, jitter_ms=jitter, **extra)

    @classmethod
    def demo(cls, **extra: Any) -> LinkProfile:
        """The demo's default link: 15 ms one way with 2 ms (half-normal) jitter."""
        return cls(latency_ms=DEMO_LATENCY_MS, jitter_ms=DEMO_JITTER_MS, **extra)


# --- the delay model (pure, no I/O) ---------------------------------------------------


@dataclass
class DirectionCounters:
    bytes: int = 0  # forwarded to the far side
    chunks: int = 0  # forwarded to the far side
    lost: int = 0  # retransmissions the loss model added


@dataclass
class LinkDirection:
    """State one direction of the link shares across all its connections."""

    profile: LinkProfile
    counters: DirectionCounters = field(default_factory=DirectionCounters)
    free_at: float = 0.0  # when the (bandwidth-limited) line finishes its current chunk

    def serialise(self, now: float, nbytes: int) -> float:
        """Time at which the last byte of a chunk read at ``now`` is on the line."""
        if self.profile.bandwidth_mbit_s is None:
            return now
        start = max(now, self.free_at)
        self.free_at = start + nbytes * 8 / (self.profile.bandwidth_mbit_s * 1e6)
        return self.free_at


class StreamDelay:
    """Delivery times for one direction of one TCP stream."""

    def __init__(self, direction: LinkDirection, rng: random.Random) -> None:
        self.direction = direction
        self.rng = rng
        self.last_at = 0.0

    def deliver_at(self, now: float, nbytes: int) -> float:
        """When a chunk of ``nbytes`` read at ``now`` reaches the far side (seconds)."""
        profile = self.direction.profile
        sent = self.direction.serialise(now, nbytes)
        delay_ms = profile.latency_ms + self._jitter_ms() + self._retransmit_ms()
        # In-order delivery: a fast chunk waits for the slow one in front of it.
        self.last_at = max(sent + delay_ms / 1000, self.last_at)
        return self.last_at

    def _jitter_ms(self) -> float:
        profile = self.direction.profile
        if profile.jitter_ms == 0:
            return 0.0
        if profile.jitter_distribution == "uniform":
            return self.rng.uniform(0, profile.jitter_ms)
        if profile.jitter_distribution == "exponential":
            return self.rng.expovariate(1 / profile.jitter_ms)
        return abs(self.rng.gauss(0, profile.jitter_ms))

    def _retransmit_ms(self) -> float:
        profile = self.direction.profile
        extra, rto = 0.0, profile.retransmit_timeout_ms
        while profile.loss > 0 and self.rng.random() < profile.loss:
            self.direction.counters.lost += 1
            extra += rto
            rto = min(rto * 2, TCP_RTO_MAX_MS)  # TCP's exponential back-off
        return extra


# --- the proxy --------------------------------------------------------------------


class LinkState(StrEnum):
    STOPPED = "stopped"
    UP = "up"
    CUT = "cut"


@dataclass(frozen=True)
class LinkStats:
    state: LinkState
    connections_open: int
    connections_accepted: int
    connections_reset: int
    upstream: DirectionCounters
    downstream: DirectionCounters


def _reset_socket(writer: asyncio.StreamWriter) -> None:
    """Close with RST rather than FIN, so the peer sees the link drop, not a goodbye."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Pipe:
    """Moves one direction of one connection: a reader that timestamps chunks and a
    writer that releases them at their delivery time."""

    def __init__(
        self,
        link: LinkEmulator,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        delay: StreamDelay,
    ) -> None:
        self.link = link
        self.reader = reader
        self.writer = writer
        self.delay = delay
        # Bounded, so a slow (bandwidth-limited) link pushes back on the sender the way
        # a TCP window does instead of buffering without end.
        self.queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(link.queue_chunks)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._read())
            tg.create_task(self._write())

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self.link._up.wait()  # black-holed: stop reading, let buffers fill
            data = await self.reader.read(self.link.max_chunk_bytes)
            # The FIN crosses the link too, so a close arrives after the data before it.
            at = self.delay.deliver_at(loop.time(), len(data))
            await self.queue.put((at, data))
            if not data:
                return

    async def _write(self) -> None:
        counters = self.delay.direction.counters
        floor = 0.0
        while True:
            at, data = await self.queue.get()
            floor = await self._wait_until(max(at, floor))
            if not data:
                if self.writer.can_write_eof():
                    self.writer.write_eof()
                return
            self.writer.write(data)
            await self.writer.drain()
            counters.bytes += len(data)
            counters.chunks += 1

    async def _wait_until(self, at: float) -> float:
        """Sleep until ``at`` and until the link is up; returns the floor for later chunks."""
        loop = asyncio.get_running_loop()
        while True:
            wait = at - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if self.link._up.is_set():
                return at
            await self.link._up.wait()
            # After a black hole the data still has to cross the link once more.
            at = loop.time() + self.delay.direction.profile.latency_ms / 1000


class _Connection:
    def __init__(self, link: LinkEmulator, number: int) -> None:
        self.link = link
        self.number = number
        self.writers: list[asyncio.StreamWriter] = []
        self.task: asyncio.Task[None] | None = None

    def stream_delay(self, direction: LinkDirection, name: str) -> StreamDelay:
        return StreamDelay(direction, random.Random(f"{self.link.seed}:{self.number}:{name}"))

    async def run(
        self,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        target: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        self.writers = [client[1], target[1]]
        up = _Pipe(self.link, client[0], target[1], self.stream_delay(self.link.upstream, "up"))
        down = _Pipe(
            self.link, target[0], client[1], self.stream_delay(self.link.downstream, "down")
        )
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(up.run())
                tg.create_task(down.run())
        except* (ConnectionError, OSError):
            self.reset()  # one side failed: the other side must not hang
        finally:
            for writer in self.writers:
                writer.close()

    def reset(self) -> None:
        for writer in self.writers:
            _reset_socket(writer)
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()


class LinkEmulator:
    """A loopback TCP proxy to ``target_host:target_port`` with a link's delays and outages.

    Use as ``async with LinkEmulator(...) as link:`` and connect to ``link.port``.
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        profile: LinkProfile | None = None,
        *,
        downstream: LinkProfile | None = None,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        seed: int = 0,
        cut_mode: CutMode = "reset",
        max_chunk_bytes: int = 65536,
        queue_chunks: int = 64,
        connect_timeout: float = 5.0,
    ) -> None:
        up = profile or LinkProfile()
        self.target = (target_host, target_port)
        self.upstream = LinkDirection(up)
        self.downstream = LinkDirection(downstream or up)
        self.listen_host = listen_host
        self.port = listen_port
        self.seed = seed
        self.cut_mode: CutMode = cut_mode
        self.max_chunk_bytes = max_chunk_bytes
        self.queue_chunks = queue_chunks
        self.connect_timeout = connect_timeout
        self.state = LinkState.STOPPED
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._accepted = 0
        self._resets = 0
        self._up = asyncio.Event()

    # lifecycle

    async def start(self) -> None:
        self._up = asyncio.Event()  # bound to the running loop
        self._up.set()
        await self._listen()
        self.state = LinkState.UP

    async def stop(self) -> None:
        reset = self._reset_all()
        self._close_listener()
        self.state = LinkState.STOPPED
        await self._settle(reset)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # outages

    async def cut(self, mode: CutMode | None = None) -> None:
        """Drop the link: new connections are refused; existing ones are reset or
        black-holed (``mode``, default the emulator's ``cut_mode``)."""
        self._close_listener()
        self._up.clear()
        self.state = LinkState.CUT
        if (mode or self.cut_mode) == "reset":
            await self._settle(self._reset_all())

    async def restore(self) -> None:
        """Bring the link back: listen again on the same port; black-holed streams resume."""
        if self.state is not LinkState.CUT:
            return
        await self._listen()
        self._up.set()
        self.state = LinkState.UP

    async def outage(self, seconds: float, mode: CutMode | None = None) -> None:
        """Cut the link, wait ``seconds``, restore it. Run as a task to keep going meanwhile."""
        await self.cut(mode)
        try:
            await asyncio.sleep(seconds)
        finally:
            await self.restore()

    # observation

    def stats(self) -> LinkStats:
        return LinkStats(
            state=self.state,
            connections_open=len(self._connections),
            connections_accepted=self._accepted,
            connections_reset=self._resets,
            upstream=DirectionCounters(**vars(self.upstream.counters)),
            downstream=DirectionCounters(**vars(self.downstream.counters)),
        )

    # internals

    async def _listen(self) -> None:
        # reuse_address (the default on POSIX) lets restore() bind the same port again.
        self._server = await asyncio.start_server(self._serve, self.listen_host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    def _close_listener(self) -> None:
        # Not wait_closed(): from 3.12 it waits for every connection, black-holed too.
        if self._server is not None:
            self._server.close()
            self._server = None

    def _reset_all(self) -> list[asyncio.Task[None]]:
        """Reset every connection; returns their tasks, now cancelled."""
        tasks = []
        for connection in list(self._connections):
            connection.reset()
            self._resets += 1
            if connection.task is not None:
                tasks.append(connection.task)
        return tasks

    async def _settle(self, tasks: list[asyncio.Task[None]]) -> None:
        """Let reset connections run their clean-up, so counters are final on return."""
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)
        await asyncio.sleep(0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.state is not LinkState.UP:
            _reset_socket(writer)
            return
        try:
            target = await asyncio.wait_for(
                asyncio.open_connection(*self.target), self.connect_timeout
            )
        except (OSError, TimeoutError):
            _reset_socket(writer)  # the target is down: the client sees a reset, not a hang
            return
        self._accepted += 1
        connection = _Connection(self, self._accepted)
        # Its own task, so cut() can cancel it without cancelling the server's callback.
        connection.task = asyncio.create_task(connection.run((reader, writer), target))
        self._connections.add(connection)
        try:
            await asyncio.wait([connection.task])
        finally:
            self._connections.discard(connection)
        if not connection.task.cancelled() and connection.task.exception() is not None:
            raise connection.task.exception()  # a bug, not a network event: let asyncio log it


# --- for synchronous code ----------------------------------------------------------

_T = TypeVar("_T")


class BackgroundLink:
    """Runs a :class:`LinkEmulator` on its own event loop in a daemon thread.

    For synchronous tests and scripts: ``with BackgroundLink(LinkEmulator(...)) as link:``
    then connect to ``link.port`` and call ``link.cut()``, ``link.restore()``.
    """

    def __init__(self, emulator: LinkEmulator) -> None:
        self.emulator = emulator
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def port(self) -> int:
        return self.emulator.port

    def _call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def __enter__(self) -> Self:
        self._thread.start()
        self._call(self.emulator.start())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self._call(self.emulator.stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            self._loop.close()

    def cut(self, mode: CutMode | None = None) -> None:
        self._call(self.emulator.cut(mode))

    def restore(self) -> None:
        self._call(self.emulator.restore())

    def outage(self, seconds: float, mode: CutMode | None = None) -> None:
        """Blocks for the outage; run it from another thread to keep working meanwhile."""
        self._call(self.emulator.outage(seconds, mode))

    def stats(self) -> LinkStats:
        return self._call(_snapshot(self.emulator))


async def _snapshot(emulator: LinkEmulator) -> LinkStats:
    return emulator.stats()  # read on the loop's thread, so counters are consistent
