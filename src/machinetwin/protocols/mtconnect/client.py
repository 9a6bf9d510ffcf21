"""The edge's adapter for any MTConnect agent: probe, current, then sample (streamed or polled).

It tracks ``nextSequence`` and resynchronises (probe and current again) when the agent's
``instanceId`` changes (a restart), when it answers OUT_OF_RANGE (the client fell
behind the ring buffer), when the stream stops (no part within twice the heartbeat)
or the connection fails. Each streams document becomes one :class:`SampleBatch`
(the union of its timestamps, every signal carried forward) plus events for
execution, program and condition changes.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import quote

import httpx

from ...errors import CommandRejected
from ...model import (
    SIGNALS,
    AdapterCommand,
    MachineDescriptor,
    MachineEvent,
    SampleBatch,
)
from .convert import Converter
from .streams import (
    AgentErrorDocument,
    ProbeInfo,
    StreamChunk,
    StreamError,
    check_error,
    parse_probe,
    parse_streams,
    parse_xml,
)

log = logging.getLogger(__name__)


@dataclass
class ClientSettings:
    url: str  # the agent's base URL, e.g. http://10.0.0.5:5000
    machine_id: str
    site: str = ""
    device: str | None = None  # name or uuid; None = the agent's first device
    stream: bool = True  # multipart streaming; False = polling /sample
    interval_ms: int = 100
    heartbeat_ms: int = 2000
    count: int = 10000
    retry_s: float = 1.0
    timeout_s: float = 10.0


class Resync(Exception):
    """Start again from /probe (the message says why)."""


class MultipartReader:
    """Parts of a ``multipart/x-mixed-replace`` body, using each part's Content-length."""

    def __init__(self, chunks: AsyncIterator[bytes], boundary: str) -> None:
        self.chunks = chunks
        self.marker = b"--" + boundary.encode()
        self.buf = b""

    async def _more(self) -> None:
        try:
            chunk = await anext(self.chunks)
        except StopAsyncIteration:  # must not escape into an async generator
            raise Resync("the agent ended the stream") from None
        self.buf += chunk

    async def next_part(self) -> bytes:
        while (start := self.buf.find(self.marker)) < 0 or b"\r\n\r\n" not in self.buf[start:]:
            await self._more()
        head_end = self.buf.index(b"\r\n\r\n", start)
        headers = self.buf[start + len(self.marker) : head_end].decode("latin-1")
        m = re.search(r"content-length:\s*(\d+)", headers, re.IGNORECASE)
        body_start = head_end + 4
        if m is None:  # no length: the part runs to the next boundary
            while (end := self.buf.find(self.marker, body_start)) < 0:
                await self._more()
            body, self.buf = self.buf[body_start:end], self.buf[end:]
            return body.rstrip(b"\r\n")
        end = body_start + int(m.group(1))
        while len(self.buf) < end:
            await self._more()
        body, self.buf = self.buf[body_start:end], self.buf[end:]
        return body


class MTConnectClientAdapter:
    """An ``Adapter`` for a machine behind any MTConnect agent."""

    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings
        self.descriptor = MachineDescriptor(
            machine_id=settings.machine_id, name=settings.device or settings.machine_id,
            site=settings.site, model="MTConnect", signals=tuple(SIGNALS),
            extra={"protocol": "mtconnect", "url": settings.url})  # fmt: skip
        self.closed = False
        self.instance_id: int | None = None
        self.next_sequence: int | None = None
        self.resyncs = 0  # how often the client started again from /probe
        self.probe: ProbeInfo | None = None
        self.converter = Converter(settings.machine_id)

    async def batches(self) -> AsyncIterator[SampleBatch | MachineEvent]:
        timeout = httpx.Timeout(self.settings.timeout_s)
        async with httpx.AsyncClient(base_url=self.settings.url, timeout=timeout) as http:
            while not self.closed:
                try:
                    async for item in self._session(http):
                        yield item
                except (Resync, httpx.HTTPError, StreamError, AgentErrorDocument,
                        TimeoutError) as e:  # fmt: skip
                    self.resyncs += 1
                    log.info("%s: resynchronising: %s", self.settings.machine_id, e)
                    await asyncio.sleep(_retry_delay(e, self.settings.retry_s))

    async def _session(self, http: httpx.AsyncClient) -> AsyncIterator[SampleBatch | MachineEvent]:
        """probe -> current -> sample until something forces a resync."""
        probe = parse_probe(await _get(http, "/probe"), self.settings.device)
        self.probe = probe
        self.converter.set_signals(probe.signals)
        self.instance_id = probe.instance_id
        device = self.settings.device
        path = f"/{quote(device, safe='')}" if device else ""
        chunk = self._chunk(await _get(http, f"{path}/current"), current=True)
        self.next_sequence = chunk.header.next
        for item in self.converter.convert(chunk, current=True):
            yield item
        if self.settings.stream:
            async for item in self._stream(http, path):
                yield item
        else:
            async for item in self._poll(http, path):
                yield item

    def _chunk(self, text: bytes, current: bool = False) -> StreamChunk:
        assert self.probe is not None
        chunk = parse_streams(text, self.probe, self.converter.index)
        if chunk.header.instance_id != self.instance_id:
            raise Resync(
                f"instanceId changed from {self.instance_id} to {chunk.header.instance_id}"
            )
        if (
            not current
            and self.next_sequence is not None
            and chunk.header.next < self.next_sequence
        ):
            raise Resync(f"nextSequence went back from {self.next_sequence} to {chunk.header.next}")
        return chunk

    async def _poll(
        self, http: httpx.AsyncClient, path: str
    ) -> AsyncIterator[SampleBatch | MachineEvent]:
        while not self.closed:
            params = {"from": self.next_sequence, "count": self.settings.count}
            chunk = self._chunk(await _get(http, f"{path}/sample", params))
            self.next_sequence = chunk.header.next
            for item in self.converter.convert(chunk):
                yield item
            if chunk.header.next > chunk.header.last:  # caught up: wait for the next period
                await asyncio.sleep(self.settings.interval_ms / 1000)

    async def _stream(
        self, http: httpx.AsyncClient, path: str
    ) -> AsyncIterator[SampleBatch | MachineEvent]:
        s = self.settings
        params = {"from": self.next_sequence, "count": s.count, "interval": s.interval_ms,
                  "heartbeat": s.heartbeat_ms}  # fmt: skip
        async with http.stream("GET", f"{path}/sample", params=params) as response:
            if response.status_code != 200:
                await response.aread()
                check_error(parse_xml(response.content, "sample"))
                raise Resync(f"sample answered HTTP {response.status_code}")
            m = re.search(r"boundary=\"?([^\";]+)", response.headers.get("content-type", ""))
            if m is None:
                raise Resync("the agent did not answer with a multipart stream")
            reader = MultipartReader(response.aiter_bytes(), m.group(1))
            # a silent stream is a dead one: no part (data or heartbeat) within 2 heartbeats
            patience = 2 * s.heartbeat_ms / 1000 + 1.0
            while not self.closed:
                body = await asyncio.wait_for(reader.next_part(), patience)
                chunk = self._chunk(body)
                self.next_sequence = chunk.header.next
                for item in self.converter.convert(chunk):
                    yield item

    async def command(self, command: AdapterCommand) -> None:
        raise CommandRejected(f"{self.settings.machine_id}: MTConnect is read-only; "
                              f"cannot {command.name!r}")  # fmt: skip

    async def close(self) -> None:
        self.closed = True


def _retry_delay(e: Exception, retry_s: float) -> float:
    """At once after falling behind the buffer; otherwise give the agent a moment (it may
    be restarting or broken, and must not be hammered)."""
    if isinstance(e, AgentErrorDocument) and e.code == "OUT_OF_RANGE":
        return 0.0
    return retry_s


async def _get(http: httpx.AsyncClient, path: str, params: dict | None = None) -> bytes:
    response = await http.get(path, params=params)
    if response.status_code != 200:
        check_error(parse_xml(response.content, path))
        raise Resync(f"{path} answered HTTP {response.status_code}")
    return response.content
