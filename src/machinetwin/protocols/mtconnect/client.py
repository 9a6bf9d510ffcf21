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

import httpx
import numpy as np

from ...errors import CommandRejected
from ...model import (
    SIGNALS,
    AdapterCommand,
    Alarm,
    AlarmCode,
    Execution,
    MachineDescriptor,
    MachineEvent,
    SampleBatch,
    Severity,
)
from .model import CONDITION_ALARM
from .streams import (
    AgentErrorDocument,
    ClientItem,
    ProbeInfo,
    StreamChunk,
    StreamError,
    check_error,
    condition_level,
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
        chunk = await anext(self.chunks)  # StopAsyncIteration: the stream ended
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
        self.signals: list[str] = []
        self.last: np.ndarray = np.zeros(0)  # carried-forward value of each signal
        self.ever: np.ndarray = np.zeros(0, bool)
        self.execution: str | None = None
        self.program: str | None = None
        self.active: dict[tuple[str, str], Alarm] = {}  # (item id, native code) -> alarm

    async def batches(self) -> AsyncIterator[SampleBatch | MachineEvent]:
        timeout = httpx.Timeout(self.settings.timeout_s)
        async with httpx.AsyncClient(base_url=self.settings.url, timeout=timeout) as http:
            while not self.closed:
                try:
                    async for item in self._session(http):
                        yield item
                except (Resync, httpx.HTTPError, StreamError, AgentErrorDocument,
                        StopAsyncIteration, TimeoutError) as e:  # fmt: skip
                    self.resyncs += 1
                    log.info("%s: resynchronising: %s", self.settings.machine_id, e)
                    await asyncio.sleep(self.settings.retry_s if _is_down(e) else 0)

    async def _session(self, http: httpx.AsyncClient) -> AsyncIterator[SampleBatch | MachineEvent]:
        """probe -> current -> sample until something forces a resync."""
        probe = parse_probe(await _get(http, "/probe"), self.settings.device)
        if probe != self.probe:
            self.probe = probe
            self.signals = probe.signals
            self.last = np.full(len(self.signals), np.nan)
            self.ever = np.zeros(len(self.signals), bool)  # had a value: worth a column
        self.instance_id = probe.instance_id
        path = f"/{self.settings.device}" if self.settings.device else ""
        chunk = self._chunk(await _get(http, f"{path}/current"), current=True)
        self.next_sequence = chunk.header.next
        for item in self._convert(chunk, current=True):
            yield item
        if self.settings.stream:
            async for item in self._stream(http, path):
                yield item
        else:
            async for item in self._poll(http, path):
                yield item

    def _chunk(self, text: bytes, current: bool = False) -> StreamChunk:
        assert self.probe is not None
        index = {s: k for k, s in enumerate(self.signals)}
        chunk = parse_streams(text, self.probe, index)
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
            for item in self._convert(chunk):
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
                for item in self._convert(chunk):
                    yield item

    def _convert(
        self, chunk: StreamChunk, current: bool = False
    ) -> list[SampleBatch | MachineEvent]:
        out: list[SampleBatch | MachineEvent] = []
        out.extend(self._events(chunk, current))
        batch = self._batch(chunk)
        if batch is not None:
            out.append(batch)
        return out

    def _batch(self, chunk: StreamChunk) -> SampleBatch | None:
        """Columns on the union of the document's timestamps, each signal carried forward."""
        times = [chunk.t] + [np.array([t]) for t, item, _ in chunk.others if item.kind == "enum"]
        t_all = np.unique(np.concatenate(times)) if times else np.zeros(0)
        if len(t_all) == 0 or not self.signals:
            return None
        sig, t, v = self._numeric_with_enums(chunk)
        order = np.lexsort((np.arange(len(t)), t, sig))  # by signal, then time, keep seq order
        sig, t, v = sig[order], t[order], v[order]
        columns: dict[str, np.ndarray] = {}
        bounds = np.searchsorted(sig, np.arange(len(self.signals) + 1))
        for k, name in enumerate(self.signals):
            ts, vs = t[bounds[k] : bounds[k + 1]], v[bounds[k] : bounds[k + 1]]
            at = np.searchsorted(ts, t_all, side="right") - 1
            col = np.where(at >= 0, vs[np.maximum(at, 0)] if len(vs) else np.nan, self.last[k])
            if len(vs):
                self.last[k] = vs[-1]
                self.ever[k] |= bool(np.isfinite(vs).any())
            if self.ever[k]:
                columns[name] = col
        for axis in "xyz":  # following error is what the agent's two positions differ by
            if f"{axis}.pos" in columns and f"{axis}.pos_cmd" in columns:
                columns[f"{axis}.ferr"] = columns[f"{axis}.pos_cmd"] - columns[f"{axis}.pos"]
        return SampleBatch(self.settings.machine_id, t_all, columns)

    def _numeric_with_enums(self, chunk: StreamChunk) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        index = {s: k for k, s in enumerate(self.signals)}
        enums = [(index[item.signal], t, item.values.get(attrs["value"], np.nan))
                 for t, item, attrs in chunk.others if item.kind == "enum" and item.signal in index]  # fmt: skip
        if not enums:
            return chunk.signal, chunk.t, chunk.value
        e_sig, e_t, e_v = (np.array(c) for c in zip(*enums, strict=True))
        return (np.concatenate([chunk.signal, e_sig.astype(np.int32)]),
                np.concatenate([chunk.t, e_t]), np.concatenate([chunk.value, e_v]))  # fmt: skip

    def _events(self, chunk: StreamChunk, current: bool) -> list[MachineEvent]:
        mid = self.settings.machine_id
        out: list[MachineEvent] = []
        seen_conditions: set[tuple[str, str]] = set()
        for t, item, attrs in chunk.others:
            value = attrs["value"]
            if item.signal == "execution":
                name = _execution_name(item, value)
                if name is not None and name != self.execution:
                    self.execution = name
                    out.append(MachineEvent(mid, t, "execution", value=name))
            elif item.signal == "program" and value != "UNAVAILABLE" and value != self.program:
                self.program = value
                out.append(MachineEvent(mid, t, "program", value=value))
            elif item.kind == "cond":
                out.extend(self._condition(t, item, attrs, seen_conditions))
        if current:  # what the agent no longer reports active was cleared while we were away
            for key in [k for k in self.active if k not in seen_conditions]:
                alarm = self.active.pop(key)
                alarm.cleared_at = chunk.t.max() if len(chunk.t) else alarm.raised_at
                out.append(MachineEvent(mid, alarm.cleared_at, "alarm_cleared", alarm=alarm))
        return out

    def _condition(self, t: float, item: ClientItem, attrs: dict[str, str],
                   seen: set[tuple[str, str]]) -> list[MachineEvent]:  # fmt: skip
        mid = self.settings.machine_id
        level = condition_level(attrs)
        code = attrs.get("nativeCode", "")
        if level in ("WARNING", "FAULT"):
            key = (item.id, code)
            seen.add(key)
            if key in self.active:
                return []
            alarm = _alarm(item, attrs, level, t)
            self.active[key] = alarm
            return [MachineEvent(mid, t, "alarm", alarm=alarm)]
        if level == "NORMAL":
            keys = [k for k in self.active if k[0] == item.id and (not code or k[1] == code)]
            events = []
            for key in keys:
                alarm = self.active.pop(key)
                alarm.cleared_at = t
                events.append(MachineEvent(mid, t, "alarm_cleared", alarm=alarm))
            return events
        seen.update(k for k in self.active if k[0] == item.id)  # UNAVAILABLE: state unknown
        return []

    async def command(self, command: AdapterCommand) -> None:
        raise CommandRejected(f"{self.settings.machine_id}: MTConnect is read-only; "
                              f"cannot {command.name!r}")  # fmt: skip

    async def close(self) -> None:
        self.closed = True


def _execution_name(item: ClientItem, value: str) -> str | None:
    code = item.values.get(value)
    return None if code is None else Execution(int(code)).name


def _alarm(item: ClientItem, attrs: dict[str, str], level: str, t: float) -> Alarm:
    native = attrs.get("nativeCode", "")
    try:
        code = AlarmCode(native)
        message = attrs["value"]
    except ValueError:  # another agent's own code: classify by condition type, keep the code
        code = CONDITION_ALARM.get(item.type, AlarmCode.DRIVE_FAULT)
        message = f"[{native or item.type}] {attrs['value']}".strip()
    severity = Severity.FAULT if level == "FAULT" else Severity.WARNING
    if attrs.get("nativeSeverity", "").upper() in ("CRITICAL", "INFO"):
        severity = Severity[attrs["nativeSeverity"].upper()]
    return Alarm(code, severity, message, item.source, t)


def _is_down(e: Exception) -> bool:
    return isinstance(e, httpx.HTTPError | TimeoutError | StopAsyncIteration)


async def _get(http: httpx.AsyncClient, path: str, params: dict | None = None) -> bytes:
    response = await http.get(path, params=params)
    if response.status_code != 200:
        check_error(parse_xml(response.content, path))
        raise Resync(f"{path} answered HTTP {response.status_code}")
    return response.content
