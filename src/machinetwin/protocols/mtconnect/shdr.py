"""SHDR, the line protocol between MTConnect adapters and agents (adapters listen on TCP 7878).

A line is ``timestamp|key|value|key|value...``; a condition takes five fields
(``key|level|native_code|native_severity|qualifier|message``), a MESSAGE two
(``key|native_code|text``). ``* PING`` is answered ``* PONG <ms>`` (the heartbeat the
agent then expects); other ``* name: value`` lines are commands. Assets arrive as
``timestamp|@ASSET@|id|type|<xml>`` or spread over lines between
``--multiline--TAG`` markers; ``@REMOVE_ASSET@|id`` and ``@REMOVE_ALL_ASSETS@|type``
remove them.

- :class:`ShdrParser` turns lines into records; every error names the line.
- :class:`ShdrServer` is the adapter side: it publishes any ``Adapter`` (our virtual
  machines) to agents, so other MTConnect agents can take our machines' data.
- :class:`ShdrAdapter` is the agent side as an ``Adapter``: it connects to any SHDR
  adapter, pings it, and on disconnect reports every data item UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from ...errors import CommandRejected, MachinetwinError
from ...model import Adapter, AdapterCommand, MachineDescriptor, MachineEvent, SampleBatch
from .assets import Asset, ToolLike, cutting_tool
from .buffer import ConditionPayload
from .convert import Converter
from .documents import HeaderInfo, iso_times, probe_document
from .model import DataItem, Device, alarm_condition_id, build_device
from .streams import ClientItem, StreamChunk, StreamHeader, parse_probe

log = logging.getLogger(__name__)

DEFAULT_PORT = 7878
MAX_LINE = 1 << 20
MAX_BACKLOG = 16 << 20  # bytes queued for one agent before it is dropped
_LEVELS = ("NORMAL", "WARNING", "FAULT", "UNAVAILABLE")


class ShdrParseError(MachinetwinError):
    """An SHDR line that does not follow the format; names the line number and text."""

    def __init__(self, message: str, line_no: int, line: str) -> None:
        super().__init__(f"SHDR line {line_no}: {message}: {line[:200]!r}")
        self.line_no = line_no
        self.line = line


@dataclass(frozen=True, slots=True)
class DataRecord:
    t: float | None  # None: the line had no timestamp, use the time of arrival
    key: str
    value: str


@dataclass(frozen=True, slots=True)
class ConditionRecord:
    t: float | None
    key: str
    payload: ConditionPayload  # (level, native_code, native_severity, qualifier, message)


@dataclass(frozen=True, slots=True)
class SeriesRecord:
    t: float | None  # the time of the last value
    key: str
    rate: float | None  # None: the data item's sampleRate
    values: np.ndarray


def _series_record(t: float | None, key: str, fields: list[str]) -> SeriesRecord:
    count, rate, text = (f.strip() for f in fields)
    if not count.isdigit():
        raise ValueError(f"time series {key!r}: count must be a whole number, got {count!r}")
    try:
        values = np.array(text.split(), np.float64)
        hz = float(rate) if rate else None
    except ValueError:
        raise ValueError(f"time series {key!r}: rate and values must be numbers") from None
    if len(values) != int(count):
        raise ValueError(f"time series {key!r}: count says {count}, {len(values)} values follow")
    if hz is not None and not (hz > 0 and np.isfinite(hz)):
        raise ValueError(f"time series {key!r}: rate must be positive, got {rate!r}")
    return SeriesRecord(t, key, hz, values)


@dataclass(frozen=True, slots=True)
class CommandRecord:
    name: str  # "PING", "PONG" or a "* name: value" command
    value: str


@dataclass(frozen=True, slots=True)
class AssetRecord:
    t: float | None
    command: str  # "@ASSET@", "@REMOVE_ASSET@", "@REMOVE_ALL_ASSETS@"
    asset_id: str
    asset_type: str = ""
    xml: str = ""


Record = DataRecord | ConditionRecord | SeriesRecord | CommandRecord | AssetRecord


def parse_timestamp(text: str) -> float | None:
    """ISO 8601 (``2024-05-01T10:00:00.123Z``; no zone = UTC) -> s since the epoch."""
    if not text:
        return None
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise ValueError(f"timestamp {text!r} is not ISO 8601") from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


@dataclass
class ShdrParser:
    """Parses SHDR lines; ``kinds`` says which keys are conditions (5 fields), time series
    (``count|rate|v1 v2 ...``) or messages (2)."""

    kinds: dict[str, str] = field(default_factory=dict)  # key -> condition, message, series
    line_no: int = 0
    multiline: tuple[str, AssetRecord, list[str]] | None = None  # (end marker, head, body)

    def feed(self, line: str) -> list[Record]:
        """Records of one line (none while a multi-line asset is being read)."""
        self.line_no += 1
        line = line.rstrip("\r\n")
        if len(line) > MAX_LINE:
            raise ShdrParseError(f"line longer than {MAX_LINE} characters", self.line_no, line)
        if self.multiline is not None:
            return self._asset_line(line)
        if line.startswith("*"):
            return [self._command(line)]
        if not line.strip():
            return []
        try:
            return self._data(line)
        except ValueError as e:
            raise ShdrParseError(str(e), self.line_no, line) from None

    def _command(self, line: str) -> CommandRecord:
        body = line[1:].strip()
        if body == "PING":
            return CommandRecord("PING", "")
        if body.startswith("PONG"):
            ms = body[4:].strip()
            if not ms.isdigit() or int(ms) <= 0:
                raise ShdrParseError("PONG needs a positive heartbeat in ms", self.line_no, line)
            return CommandRecord("PONG", ms)
        name, sep, value = body.partition(":")
        if not sep or not name.strip():
            raise ShdrParseError("a command is '* name: value'", self.line_no, line)
        return CommandRecord(name.strip(), value.strip())

    def _data(self, line: str) -> list[Record]:
        fields = line.split("|")
        if len(fields) < 2:
            raise ValueError("expected 'timestamp|key|value...'")
        t = parse_timestamp(fields[0].strip())
        rest = fields[1:]
        if rest[0].startswith("@") and rest[0].endswith("@"):
            return self._asset(t, rest, line)
        records: list[Record] = []
        k = 0
        while k < len(rest):
            key = rest[k].strip()
            if not key:
                raise ValueError(f"empty key at field {k + 2}")
            kind = self.kinds.get(key)
            width = {"condition": 5, "series": 3, "message": 2}.get(kind or "", 1)
            if kind == "series" and rest[k + 1 : k + 2] == ["UNAVAILABLE"]:
                kind, width = None, 1  # an unavailable series is one field
            values = rest[k + 1 : k + 1 + width]
            if len(values) < width:
                raise ValueError(f"key {key!r} needs {width} value field(s), got {len(values)}")
            records.append(self._record(t, key, kind, values))
            k += 1 + width
        return records

    @staticmethod
    def _record(t: float | None, key: str, kind: str | None, values: list[str]) -> Record:
        if kind == "condition":
            level = values[0].strip().upper()
            if level not in _LEVELS:
                raise ValueError(
                    f"condition {key!r}: level must be one of {_LEVELS}, got {values[0]!r}"
                )
            return ConditionRecord(t, key, (level, *(v.strip() for v in values[1:])))  # type: ignore[arg-type]
        if kind == "message":
            return DataRecord(t, key, values[1])
        if kind == "series":
            return _series_record(t, key, values)
        return DataRecord(t, key, values[0])

    def _asset(self, t: float | None, rest: list[str], line: str) -> list[Record]:
        command = rest[0]
        if command in ("@REMOVE_ASSET@", "@REMOVE_ALL_ASSETS@"):
            if len(rest) < 2 or not rest[1].strip():
                raise ValueError(f"{command} needs an asset id or type")
            if command == "@REMOVE_ALL_ASSETS@":
                return [AssetRecord(t, command, "", rest[1].strip())]
            return [AssetRecord(t, command, rest[1].strip())]
        if command != "@ASSET@":
            raise ValueError(f"unknown asset command {command}")
        if len(rest) < 4 or not rest[1].strip() or not rest[2].strip():
            raise ValueError("@ASSET@ needs 'id|type|body'")
        head = AssetRecord(t, command, rest[1].strip(), rest[2].strip())
        body = "|".join(rest[3:])
        if body.startswith("--multiline--"):
            self.multiline = (body.strip(), head, [])
            return []
        return [AssetRecord(t, command, head.asset_id, head.asset_type, body)]

    def _asset_line(self, line: str) -> list[Record]:
        assert self.multiline is not None
        marker, head, body = self.multiline
        if line.strip() != marker:
            if sum(len(b) for b in body) > MAX_LINE:
                self.multiline = None
                raise ShdrParseError("multi-line asset longer than 1 MiB", self.line_no, line)
            body.append(line)
            return []
        self.multiline = None
        xml = "\n".join(body)
        return [AssetRecord(head.t, head.command, head.asset_id, head.asset_type, xml)]


# ---------------------------------------------------------------- keys of our device


def shdr_key(device: Device, item: DataItem) -> str:
    """The SHDR key of a data item: its canonical signal, else its id without the device."""
    if item.signal:
        return item.signal
    return item.id.removeprefix(f"{device.id}_")


def device_keys(device: Device) -> dict[str, DataItem]:
    return {shdr_key(device, i): i for i in device.items()}


def _clean(text: str) -> str:
    return text.replace("|", "/").replace("\n", " ").replace("\r", " ")


# ---------------------------------------------------------------- adapter side


class ShdrServer:
    """Publishes an ``Adapter`` as an SHDR adapter on TCP (default port 7878).

    Every connected agent first gets the current value of every data item (and the
    tool table as CuttingTool assets), then each change as it happens.
    """

    def __init__(self, adapter: Adapter, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                 heartbeat_ms: int = 10000, tools: Iterable[ToolLike] = ()) -> None:  # fmt: skip
        self.adapter = adapter
        self.host, self.port = host, port
        self.heartbeat_ms = heartbeat_ms
        self.device = build_device(adapter.descriptor)
        self.keys = device_keys(self.device)
        self.numeric = [(k, i) for k, i in self.keys.items() if i.kind in ("num", "enum")]
        self.latest: dict[str, str] = {}  # key -> last value text (for new connections)
        self.conditions: dict[tuple[str, str], str] = {}  # (key, code) -> condition fields
        self.tools = list(tools)
        self.writers: set[asyncio.StreamWriter] = set()
        self.server: asyncio.Server | None = None
        self.pump: asyncio.Task[None] | None = None

    async def start(self) -> int:
        """Listen and start publishing; returns the port (useful with port 0)."""
        self.server = await asyncio.start_server(self._connection, self.host, self.port)
        self.port = self.server.sockets[0].getsockname()[1]
        self.pump = asyncio.create_task(self._pump())
        return self.port

    async def stop(self) -> None:
        if self.pump is not None:
            self.pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.pump
        if self.server is not None:
            self.server.close()
        for w in list(self.writers):
            w.close()
        self.writers.clear()
        if self.server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)

    async def _pump(self) -> None:
        async for item in self.adapter.batches():
            lines = (
                self.batch_lines(item) if isinstance(item, SampleBatch) else self.event_lines(item)
            )
            if lines:
                self._broadcast("".join(lines))

    def _broadcast(self, text: str) -> None:
        data = text.encode()
        for w in list(self.writers):
            if w.is_closing() or w.transport.get_write_buffer_size() > MAX_BACKLOG:
                # an agent that does not read would grow our memory: drop it; when it
                # reconnects it gets the current values again
                self.writers.discard(w)
                w.close()
            else:
                w.write(data)

    def batch_lines(self, batch: SampleBatch) -> list[str]:
        """Lines of the values that changed (MTConnect units), then any waveforms."""
        return self._column_lines(batch) + self._series_lines(batch)

    def _series_lines(self, batch: SampleBatch) -> list[str]:
        item = self.keys.get("spindle.vib")
        lines = []
        for w in batch.waveforms:
            if item is None or w.signal != item.signal or not len(w.values):
                continue
            stamp = iso_times(np.array([w.t0 + (len(w.values) - 1) / w.rate_hz]))[0]
            values = " ".join(f"{v * item.scale:.6g}" for v in w.values.tolist())
            lines.append(f"{stamp}|spindle.vib|{len(w.values)}|{w.rate_hz:g}|{values}\n")
        return lines

    def _column_lines(self, batch: SampleBatch) -> list[str]:
        present = [(k, i) for k, i in self.numeric if i.signal in batch.columns]
        if not present or len(batch) == 0:
            return []
        values = np.stack([np.asarray(batch.columns[i.signal], np.float64) * i.scale
                           for _, i in present])  # fmt: skip
        texts = [self._texts(i, row) for (_, i), row in zip(present, values, strict=True)]
        stamps = iso_times(batch.t)
        lines = []
        for j in range(len(batch)):
            parts = []
            for (key, _), col in zip(present, texts, strict=True):
                if self.latest.get(key) != col[j]:
                    self.latest[key] = col[j]
                    parts.append(f"|{key}|{col[j]}")
            if parts:
                lines.append(stamps[j] + "".join(parts) + "\n")
        return lines

    @staticmethod
    def _texts(item: DataItem, row: np.ndarray) -> list[str]:
        if item.values is not None:
            ok = np.isfinite(row) & (row >= 0) & (row < len(item.values))
            return [
                item.values[int(v)] if good else "UNAVAILABLE"
                for v, good in zip(row, ok, strict=True)
            ]
        return ["UNAVAILABLE" if np.isnan(v) else f"{v + 0.0:.12g}" for v in row.tolist()]

    def event_lines(self, event: MachineEvent) -> list[str]:
        stamp = iso_times(np.array([event.t]))[0]
        if event.kind == "execution" and "execution" in self.adapter.descriptor.signals:
            return []  # sampled with every batch, at the right times (see DeviceFeed)
        if event.kind in ("execution", "program"):
            value = event.value.get("name") if isinstance(event.value, dict) else event.value
            self.latest[event.kind] = _clean(str(value))
            return [f"{stamp}|{event.kind}|{self.latest[event.kind]}\n"]
        if event.kind in ("alarm", "alarm_cleared") and event.alarm is not None:
            a = event.alarm
            item = self.device_item(alarm_condition_id(self.device, a.code, a.source))
            key = shdr_key(self.device, item)
            cleared = event.kind == "alarm_cleared" or a.cleared_at is not None
            level = "NORMAL" if cleared else ("FAULT" if a.severity >= 2 else "WARNING")
            fields = f"{level}|{a.code}|{a.severity.name}||{'' if cleared else _clean(a.message)}"
            if cleared:
                self.conditions.pop((key, str(a.code)), None)
            else:
                self.conditions[(key, str(a.code))] = fields
            return [f"{stamp}|{key}|{fields}\n"]
        return []

    @property
    def kinds(self) -> dict[str, str]:
        """The parser kinds of this adapter's keys (which are conditions)."""
        kinds = {"cond": "condition", "series": "series"}
        return {k: kinds[i.kind] for k, i in self.keys.items() if i.kind in kinds}

    def device_item(self, item_id: str) -> DataItem:
        return next(i for i in self.device.items() if i.id == item_id)

    def snapshot(self) -> str:
        """What a newly connected agent needs: every current value, conditions, assets."""
        stamp = iso_times(np.array([time.time()]))[0]
        lines = [f"* shdrVersion: 2\n* uuid: {self.device.uuid}\n"]
        lines.append(
            f"{stamp}|avail|AVAILABLE" + "".join(f"|{k}|{v}" for k, v in self.latest.items()) + "\n"
        )
        for key, item in self.keys.items():
            if item.category == "CONDITION":
                active = [f for (k, _), f in self.conditions.items() if k == key]
                lines.extend(f"{stamp}|{key}|{f}\n" for f in active or ["NORMAL||||"])
        for tool in self.tools:
            asset = cutting_tool(tool, self.device.uuid, time.time())
            tag = f"--multiline--T{tool.number}"
            lines.append(
                f"{stamp}|@ASSET@|{asset.asset_id}|CuttingTool|{tag}\n{asset.xml}\n{tag}\n"
            )
        return "".join(lines)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(self.snapshot().encode())
        self.writers.add(writer)
        try:
            while line := await reader.readline():
                if line.strip() == b"* PING":
                    writer.write(f"* PONG {self.heartbeat_ms}\n".encode())
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.writers.discard(writer)
            writer.close()


# ---------------------------------------------------------------- agent side


@dataclass
class ShdrSettings:
    host: str
    machine_id: str
    port: int = DEFAULT_PORT
    site: str = ""
    aliases: dict[str, str] = field(default_factory=dict)  # adapter's key -> our key
    conditions: dict[str, str] = field(default_factory=dict)  # extra condition key -> type
    heartbeat_ms: int = 10000  # until the adapter's PONG says otherwise
    retry_s: float = 1.0
    chunk_s: float = 0.1  # lines are gathered into one batch for this long


class ShdrAdapter:
    """An ``Adapter`` reading any SHDR adapter (the agent side of the connection)."""

    def __init__(self, settings: ShdrSettings, axes: tuple[str, ...] = ("x", "y", "z")) -> None:
        self.settings = settings
        self.descriptor = MachineDescriptor(settings.machine_id, settings.machine_id, settings.site,
                                            model="SHDR", axes=axes,
                                            extra={"protocol": "shdr", "port": settings.port})  # fmt: skip
        device = build_device(self.descriptor)
        header = HeaderInfo("machinetwin", 1, 1)
        probe = parse_probe(
            probe_document(header, [device], "xml")
        )  # our model as a client sees it
        self.items: dict[str, ClientItem] = {
            k: probe.items[i.id] for k, i in device_keys(device).items()
        }
        for key, type_ in settings.conditions.items():
            self.items[key] = ClientItem(key, "CONDITION", type_, "cond")
        for foreign, ours in settings.aliases.items():
            self.items[foreign] = self.items[ours]
        kinds = {k: {"cond": "condition", "series": "series"}[i.kind]
                 for k, i in self.items.items() if i.kind in ("cond", "series")}  # fmt: skip
        self.parser_kinds = kinds
        self.converter = Converter(settings.machine_id)
        self.converter.set_signals(probe.signals)
        self.closed = False
        self.connected = False
        self.connections = 0
        self.heartbeat_ms = settings.heartbeat_ms
        self.commands: dict[str, str] = {}
        self.errors = 0  # lines that did not parse (logged and skipped)

    async def batches(self) -> AsyncIterator[SampleBatch | MachineEvent]:
        while not self.closed:
            try:
                reader, writer = await asyncio.open_connection(
                    self.settings.host, self.settings.port, limit=MAX_LINE + 2
                )
            except OSError as e:
                log.info("%s: cannot reach SHDR adapter: %s", self.settings.machine_id, e)
                await asyncio.sleep(self.settings.retry_s)
                continue
            self.connected = True
            self.connections += 1
            try:
                async for item in self._session(reader, writer):
                    yield item
            finally:
                self.connected = False
                writer.close()
            for item in self._unavailable(time.time()):
                yield item
            if not self.closed:
                await asyncio.sleep(self.settings.retry_s)

    async def _session(self, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> AsyncIterator[SampleBatch | MachineEvent]:  # fmt: skip
        parser = ShdrParser(self.parser_kinds)
        writer.write(b"* PING\n")
        last_ping = last_heard = time.monotonic()
        records: list[tuple[float, Record]] = []
        chunk_start: float | None = None
        while not self.closed:
            now = time.monotonic()
            if now - last_ping >= self.heartbeat_ms / 1000:
                writer.write(b"* PING\n")
                last_ping = now
            # no line (data or PONG) for two heartbeats: the adapter is gone
            deadline = last_heard + 2 * self.heartbeat_ms / 1000
            wait = min(deadline, last_ping + self.heartbeat_ms / 1000) - now
            if chunk_start is not None:
                wait = min(wait, chunk_start + self.settings.chunk_s - now)
            try:
                line = await asyncio.wait_for(reader.readline(), max(wait, 0.0))
            except TimeoutError:
                line = None
            except (ConnectionError, ValueError) as e:  # ValueError: a line over the limit
                log.info("%s: SHDR connection lost: %s", self.settings.machine_id, e)
                line = b""
            now = time.monotonic()
            if line == b"" or (line is None and now >= deadline):
                break  # EOF, or the heartbeat ran out
            if line is not None:
                last_heard = now
                got = self._parse(parser, line)
                if got and chunk_start is None:
                    chunk_start = now
                records.extend((time.time(), r) for r in got)
            if chunk_start is not None and now - chunk_start >= self.settings.chunk_s:
                for item in self._records_out(records):
                    yield item
                records, chunk_start = [], None
        for item in self._records_out(records):
            yield item

    def _parse(self, parser: ShdrParser, line: bytes) -> list[Record]:
        try:
            records = parser.feed(line.decode("utf-8", "replace"))
        except ShdrParseError as e:
            self.errors += 1
            log.warning("%s: %s", self.settings.machine_id, e)
            return []
        out: list[Record] = []
        for r in records:
            if isinstance(r, CommandRecord):
                if r.name == "PONG":
                    self.heartbeat_ms = int(r.value)
                elif r.name != "PING":
                    self.commands[r.name] = r.value
            else:
                out.append(r)
        return out

    def _records_out(self, records: list[tuple[float, Record]]) -> list[SampleBatch | MachineEvent]:
        out: list[SampleBatch | MachineEvent] = []
        sig: list[int] = []
        ts: list[float] = []
        vals: list[float] = []
        others: list[tuple[float, ClientItem, dict[str, str]]] = []
        for arrived, r in records:
            t = arrived if r.t is None else r.t
            if isinstance(r, AssetRecord):
                out.append(self._asset_event(t, r))
                continue
            item = self.items.get(r.key)
            if item is None:
                continue  # a data item our model does not have
            if isinstance(r, ConditionRecord):
                level, code, severity, qualifier, message = r.payload
                others.append((t, item, {"level": level, "nativeCode": code, "nativeSeverity": severity,
                                         "qualifier": qualifier, "value": message}))  # fmt: skip
            elif item.kind == "num" and item.signal in self.converter.index:
                sig.append(self.converter.index[item.signal])
                ts.append(t)
                vals.append(_number(r.value) / item.scale)
            elif isinstance(r, SeriesRecord):
                rate = "" if r.rate is None else f"{r.rate:g}"
                text = " ".join(f"{v:.9g}" for v in r.values.tolist())
                others.append((t, item, {"value": text, "sampleRate": rate}))
            elif item.kind in ("enum", "text"):
                others.append((t, item, {"value": r.value.strip()}))
        chunk = StreamChunk(StreamHeader(0, 0, 0, 0), np.array(sig, np.int32), np.array(ts),
                            np.array(vals), others)  # fmt: skip
        return self.converter.convert(chunk) + out

    def _asset_event(self, t: float, r: AssetRecord) -> MachineEvent:
        mid = self.settings.machine_id
        if r.command == "@ASSET@":
            value = {"asset_id": r.asset_id, "type": r.asset_type, "xml": r.xml}
            return MachineEvent(mid, t, "asset", value=value)
        if r.command == "@REMOVE_ASSET@":
            return MachineEvent(mid, t, "asset_removed", value={"asset_id": r.asset_id})
        return MachineEvent(mid, t, "assets_removed", value={"type": r.asset_type})

    def _unavailable(self, t: float) -> list[SampleBatch | MachineEvent]:
        """The adapter is gone: every signal NaN, conditions UNAVAILABLE, an event saying so."""
        conv = self.converter
        n = len(conv.signals)
        unavailable = {"level": "UNAVAILABLE", "value": "UNAVAILABLE"}
        others = [(t, i, dict(unavailable)) for i in {id(i): i for i in self.items.values()}.values()
                  if i.kind in ("enum", "cond")]  # fmt: skip
        chunk = StreamChunk(StreamHeader(0, 0, 0, 0), np.arange(n, dtype=np.int32), np.full(n, t),
                            np.full(n, np.nan), others)  # fmt: skip
        # the NaN batch first: the event after it leaves the agent's device UNAVAILABLE
        return [*conv.convert(chunk), MachineEvent(self.settings.machine_id, t, "unavailable")]

    async def command(self, command: AdapterCommand) -> None:
        raise CommandRejected(
            f"{self.settings.machine_id}: SHDR is read-only; cannot {command.name!r}"
        )

    async def close(self) -> None:
        self.closed = True


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return np.nan  # UNAVAILABLE, or not a number


def asset_from_event(event: MachineEvent, device_uuid: str) -> Asset | None:
    """The asset an SHDR ``asset`` event carries (None if its body is unusable)."""
    from .assets import AssetError, parse_asset

    v = event.value or {}
    try:
        return parse_asset(
            str(v.get("asset_id")), str(v.get("type")), device_uuid, event.t, str(v.get("xml"))
        )
    except AssetError as e:
        log.warning("%s", e)
        return None
