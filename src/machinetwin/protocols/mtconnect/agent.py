"""An MTConnect agent for machinetwin's machines (any ``Adapter``), over HTTP.

``/probe``, ``/current`` (``at``: the state at a sequence), ``/sample`` (``from``,
``count``, ``to``, ``interval`` with ``multipart/x-mixed-replace`` streaming and
``heartbeat``), both with ``path`` (an XPath over the probe document choosing data
items), and ``/assets`` (``/asset/ID``), each also per device (``/DEVICE/sample``), in XML (MTConnect 2.0 namespaces) or JSON
(``Accept: application/json`` or ``?format=json``). Errors are MTConnectError documents
with the standard error codes (OUT_OF_RANGE, INVALID_REQUEST, NO_DEVICE, ...).

The HTTP side is Starlette served by uvicorn in the caller's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import socket
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree as ET

import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from ...model import Adapter, MachineEvent, SampleBatch
from .assets import Asset, ToolLike, cutting_tool
from .buffer import ConditionPayload, ObservationBuffer, Observations, objects
from .documents import (
    HeaderInfo,
    ItemTable,
    assets_document,
    error_document,
    iso_times,
    probe_document,
    streams_document,
)
from .feed import DeviceFeed
from .model import Device, build_device
from .shdr import asset_from_event

log = logging.getLogger(__name__)

_ASSET_EVENTS = ("asset", "asset_removed", "assets_removed")
_NORMAL: ConditionPayload = ("NORMAL", "", "", "", "")

_MEDIA = {"xml": "application/xml", "json": "application/json"}
_STATUS = {"OUT_OF_RANGE": 400, "INVALID_REQUEST": 400, "UNSUPPORTED": 400, "INVALID_XPATH": 400,
           "NO_DEVICE": 404, "INVALID_URI": 404, "ASSET_NOT_FOUND": 404}  # fmt: skip


class RequestError(Exception):
    """A request the agent answers with an MTConnectError document."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(slots=True)
class SampleQuery:
    start: int
    count: int
    to: int | None
    mask: np.ndarray  # bool per item: the devices asked for


class MTConnectAgent:
    """Serves the devices of several adapters; ``async with agent.serving(port=...)``."""

    def __init__(self, adapters: Iterable[Adapter], assets: Iterable[Asset] = (),
                 buffer_size: int = 131072, sender: str = "machinetwin",
                 filter_samples: bool = True, max_count: int | None = None,
                 tools: dict[str, Iterable[ToolLike]] | None = None) -> None:  # fmt: skip
        self.adapters = list(adapters)
        ids = [a.descriptor.machine_id for a in self.adapters]
        if len(set(ids)) != len(ids):
            raise ValueError(f"MTConnect agent: machine ids must be unique, got {ids}")
        self.devices: list[Device] = [build_device(a.descriptor) for a in self.adapters]
        self.table = ItemTable.build(self.devices)
        self.buffer = ObservationBuffer(len(self.table.items), buffer_size,
                                        conditions=self.table.kind == 3)  # fmt: skip
        self._paths: dict[tuple[str, tuple[str, ...]], np.ndarray] = {}  # path= masks
        self.feeds = [DeviceFeed(d, self.buffer, filter_samples, a.descriptor.signals)
                      for d, a in zip(self.devices, self.adapters, strict=True)]  # fmt: skip
        self.asset_buffer_size = 1024
        self.assets: dict[str, Asset] = {}  # in arrival order
        for asset in assets:
            self.add_asset(asset)
        # tool tables by device uuid: their CuttingTool assets, kept up to date with wear
        self.tools = {uuid: {t.number: t for t in table} for uuid, table in (tools or {}).items()}
        for uuid, table in self.tools.items():
            for tool in table.values():
                self.add_asset(cutting_tool(tool, uuid, time.time()))
        self.wear_every_s = 5.0
        self.wear_reported: dict[tuple[str, int], float] = {}
        # a fresh instanceId on every start tells clients that sequences restarted
        self.instance_id = secrets.randbits(31) or 1
        self.sender = sender
        self.started = str(iso_times(np.array([time.time()]))[0])  # the device model's time
        self.max_count = max_count or buffer_size
        self.new_data = asyncio.Event()
        self.closing = False
        self.tasks: list[asyncio.Task[None]] = []
        now = time.time()
        for feed in self.feeds:
            feed.set_unavailable(now)
            for item in feed.items:  # the spindle's mode is a constant of the machine
                if item.type == "ROTARY_MODE":
                    feed.set_value(item, now, "SPINDLE")
        self.app = Starlette(routes=self._routes())

    # ------------------------------------------------------------ data in

    def header(self) -> HeaderInfo:
        live = sum(not a.removed for a in self.assets.values())
        return HeaderInfo(self.sender, self.instance_id, self.buffer.capacity,
                          self.asset_buffer_size, live, model_change_time=self.started)  # fmt: skip

    def notify(self) -> None:
        """Wake the streams: new observations are in the buffer."""
        self.new_data.set()
        self.new_data = asyncio.Event()

    def add_asset(self, asset: Asset) -> None:
        """Add or replace an asset; past the asset buffer's size the oldest goes."""
        self.assets.pop(asset.asset_id, None)
        self.assets[asset.asset_id] = asset
        while len(self.assets) > self.asset_buffer_size:
            del self.assets[next(iter(self.assets))]

    async def feed_from(self, adapter: Adapter, feed: DeviceFeed) -> None:
        """Consume an adapter until it ends; its device is UNAVAILABLE before and after."""
        try:
            async for item in adapter.batches():
                if isinstance(item, MachineEvent) and item.kind in _ASSET_EVENTS:
                    self._asset_event(item, feed.device)
                    continue
                if not feed.available and not (
                    isinstance(item, MachineEvent) and item.kind == "unavailable"
                ):
                    feed.set_available(time.time())
                if isinstance(item, SampleBatch):
                    feed.ingest_batch(item)
                    self._tool_wear(item, feed.device)
                else:
                    feed.ingest_event(item)
                self.notify()
        except Exception:
            log.exception("%s: adapter failed", feed.device.name)
        finally:
            feed.set_unavailable(time.time())
            self.notify()

    def _tool_wear(self, batch: SampleBatch, device: Device) -> None:
        """The tool in the spindle's wear into its CuttingTool asset (ToolLife WEAR), at most
        every ``wear_every_s``: assets are documents, not a sample stream."""
        tools = self.tools.get(device.uuid)
        if not tools or len(batch) == 0 or "tool_wear" not in batch.columns:
            return
        number, wear = batch.columns.get("tool", [np.nan])[-1], batch.columns["tool_wear"][-1]
        if not (np.isfinite(number) and np.isfinite(wear)) or int(number) not in tools:
            return
        key = (device.uuid, int(number))
        now = time.monotonic()
        if now - self.wear_reported.get(key, -np.inf) < self.wear_every_s:
            return
        self.wear_reported[key] = now
        self.add_asset(cutting_tool(tools[int(number)], device.uuid, time.time(), float(wear)))

    def _asset_event(self, event: MachineEvent, device: Device) -> None:
        """Assets an SHDR adapter sent: added, removed by id, or all of a type removed."""
        value = event.value or {}
        if event.kind == "asset":
            asset = asset_from_event(event, device.uuid)
            if asset is not None:
                self.add_asset(asset)
        elif event.kind == "asset_removed" and value.get("asset_id") in self.assets:
            self.assets[value["asset_id"]].removed = True
        elif event.kind == "assets_removed":
            for a in self.assets.values():
                if a.device_uuid == device.uuid and a.asset_type == value.get("type"):
                    a.removed = True

    def start(self) -> None:
        for adapter, feed in zip(self.adapters, self.feeds, strict=True):
            self.tasks.append(asyncio.create_task(self.feed_from(adapter, feed)))

    async def stop(self) -> None:
        self.closing = True
        self.notify()
        for adapter in self.adapters:
            await adapter.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    @contextlib.asynccontextmanager
    async def serving(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
        """Run the adapters and the HTTP server; yields the agent's base URL."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off",
                                timeout_graceful_shutdown=1)  # fmt: skip
        server = uvicorn.Server(config)
        self.start()
        serve = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not serve.done():
            await asyncio.sleep(0.01)
        try:
            yield f"http://{host}:{sock.getsockname()[1]}"
        finally:
            await self.stop()
            server.should_exit = True
            await serve
            sock.close()

    # ------------------------------------------------------------ HTTP

    def _routes(self) -> list[Route]:
        return [
            Route("/", self.probe), Route("/probe", self.probe),
            Route("/current", self.current), Route("/sample", self.sample),
            Route("/assets", self.get_assets), Route("/assets/{ids}", self.get_assets),
            Route("/asset/{ids}", self.get_assets),
            Route("/{device}/probe", self.probe), Route("/{device}", self.probe),
            Route("/{device}/current", self.current), Route("/{device}/sample", self.sample),
            Route("/{device}/assets", self.get_assets),
            Route("/{path:path}", self.invalid_uri),
        ]  # fmt: skip

    def _error(self, error: RequestError, fmt: str) -> Response:
        body = error_document(self.header(), error.code, error.message, fmt)
        return Response(body, _STATUS.get(error.code, 400), media_type=_MEDIA[fmt])

    async def invalid_uri(self, request: Request) -> Response:
        return self._error(RequestError("INVALID_URI", f"no such request: {request.url.path}"),
                           _format(request))  # fmt: skip

    def _devices(self, request: Request) -> list[Device]:
        name = request.path_params.get("device")
        if name is None:
            return self.devices
        found = [d for d in self.devices if name in (d.name, d.uuid)]
        if not found:
            raise RequestError("NO_DEVICE", f"no device named {name!r}")
        return found

    def _mask(self, devices: list[Device]) -> np.ndarray:
        mask = np.zeros(len(self.table.items), bool)
        for d in devices:
            mask[[i.index for i in d.items()]] = True
        return mask

    async def probe(self, request: Request) -> Response:
        fmt = _format(request)
        try:
            devices = self._devices(request)
        except RequestError as e:
            return self._error(e, fmt)
        return Response(probe_document(self.header(), devices, fmt), media_type=_MEDIA[fmt])

    async def current(self, request: Request) -> Response:
        fmt = _format(request)
        try:
            mask = self._request_mask(request)
            interval = _int_param(request, "interval", None, minimum=0)
            at = _int_param(request, "at", None)
            if at is not None and interval is not None:
                raise RequestError("INVALID_REQUEST", "'at' cannot be used with 'interval'")
            if at is not None:
                return Response(self._current_at(mask, at, fmt), media_type=_MEDIA[fmt])
        except RequestError as e:
            return self._error(e, fmt)
        if interval is None:
            return Response(self._current_doc(mask, fmt), media_type=_MEDIA[fmt])
        return self._multipart(self._current_parts(mask, interval, fmt), fmt)

    def _request_mask(self, request: Request) -> np.ndarray:
        """The items a request asks for: its devices, narrowed by ``path=`` if given."""
        devices = self._devices(request)
        mask = self._mask(devices)
        path = request.query_params.get("path")
        if path is not None:
            mask &= self._path_mask(path, devices)
        return mask

    def _path_mask(self, path: str, devices: list[Device]) -> np.ndarray:
        """The data items an XPath over the probe document selects (a selected component
        stands for every data item below it); remembered per path and devices."""
        key = (path, tuple(d.uuid for d in devices))
        if key not in self._paths:
            probe = probe_document(self.header(), devices, "xml")
            ids = select_data_items(probe, path)
            index = {item.id: item.index for d in devices for item in d.items()}
            mask = np.zeros(len(self.table.items), bool)
            mask[[index[i] for i in ids if i in index]] = True
            self._paths[key] = mask
        return self._paths[key].copy()

    def _current_at(self, mask: np.ndarray, at: int, fmt: str) -> str:
        """The state at sequence ``at`` (standard: firstSequence <= at < nextSequence);
        nextSequence in the header is at + 1, where a sample request would continue."""
        b = self.buffer
        if not b.first_sequence <= at < b.next_sequence:
            raise RequestError("OUT_OF_RANGE", f"'at' must be between firstSequence "
                               f"{b.first_sequence} and lastSequence {b.last_sequence}, got {at}")  # fmt: skip
        state, active = b.state_at(at)
        keep = mask[state.item]
        obs = self._with_conditions(state.take(np.flatnonzero(keep)), active)
        return streams_document(self.header(), self.table, obs,
                                (b.first_sequence, b.last_sequence, at + 1), fmt)  # fmt: skip

    def _current_obs(self, mask: np.ndarray) -> Observations:
        """Each item's newest observation; for a condition, every active state (or Normal)."""
        b = self.buffer
        items = np.flatnonzero(mask & (b.latest_seq > 0))
        obs = Observations(b.latest_seq[items], items.astype(np.int32), b.latest_t[items],
                           b.latest_value[items], b.latest_text[items])  # fmt: skip
        return self._with_conditions(obs, b.active)

    def _with_conditions(self, obs: Observations,
                         active_sets: dict[int, dict[str, Any]]) -> Observations:  # fmt: skip
        """Plain items as they are; each condition item as all its active states (or one
        Normal at its newest observation)."""
        is_cond = self.table.kind[obs.item] == 3
        cond = np.flatnonzero(is_cond)
        obs_plain = obs.take(np.flatnonzero(~is_cond))
        states: list[tuple[int, int, float, ConditionPayload]] = []
        for k in cond.tolist():
            i = int(obs.item[k])
            active = active_sets.get(i)
            if active:
                states += [(i, seq, t, payload) for seq, t, payload in active.values()]
            else:
                states.append((i, int(obs.seq[k]), float(obs.t[k]), _NORMAL))
        obs = obs_plain
        if not states:
            return obs
        text = objects([payload for *_, payload in states])
        conds = Observations(np.array([s[1] for s in states], np.int64),
                             np.array([s[0] for s in states], np.int32),
                             np.array([s[2] for s in states]), np.full(len(states), np.nan), text)  # fmt: skip
        return _concat(obs, conds)

    def _current_doc(self, mask: np.ndarray, fmt: str) -> str:
        b = self.buffer
        seq = (b.first_sequence, b.last_sequence, b.next_sequence)
        return streams_document(self.header(), self.table, self._current_obs(mask), seq, fmt)

    async def _current_parts(self, mask: np.ndarray, interval_ms: int,
                             fmt: str) -> AsyncIterator[str]:  # fmt: skip
        while not self.closing:
            yield self._current_doc(mask, fmt)
            await asyncio.sleep(max(interval_ms, 10) / 1000)

    async def sample(self, request: Request) -> Response:
        fmt = _format(request)
        try:
            query = self._sample_query(request)
            interval = _int_param(request, "interval", None, minimum=0)
            heartbeat = _int_param(request, "heartbeat", 10000, minimum=1)
            if interval is None:
                obs, nxt = self.query(query)
                return Response(self._streams(obs, nxt, fmt), media_type=_MEDIA[fmt])
        except RequestError as e:
            return self._error(e, fmt)
        assert heartbeat is not None
        return self._multipart(self._sample_parts(query, interval, heartbeat, fmt), fmt)

    def _sample_query(self, request: Request) -> SampleQuery:
        mask = self._request_mask(request)
        count = _int_param(request, "count", 100)
        assert count is not None
        if count == 0 or abs(count) > self.max_count:
            raise RequestError("OUT_OF_RANGE", f"'count' must be non-zero and at most "
                               f"{self.max_count} in magnitude, got {count}")  # fmt: skip
        start = _int_param(request, "from", None)
        to = _int_param(request, "to", None)
        b = self.buffer
        if start is None:
            start = b.first_sequence if count > 0 else b.last_sequence
        if (why := b.check_range(start)) is not None:
            raise RequestError("OUT_OF_RANGE", why)
        if to is not None and (to <= start or to > b.next_sequence or count < 0):
            raise RequestError("OUT_OF_RANGE", f"'to' must be after 'from' ({start}), at most "
                               f"nextSequence {b.next_sequence}, with a positive count; got {to}")  # fmt: skip
        return SampleQuery(start, count, to, mask)

    def query(self, q: SampleQuery) -> tuple[Observations, int]:
        """Observations a sample request returns, and the nextSequence to continue from.

        As the reference agent does: with ``to`` (inclusive) the newest ``count`` in
        ``[from, to]`` and next = to + 1; with a negative count the ``|count|`` up to
        ``from`` (inclusive, default the newest) and next = the one before the earliest.
        """
        b = self.buffer
        if q.to is not None:
            stop = min(q.to + 1, b.next_sequence)
            sel = b.select(q.start, stop)
            hits = np.flatnonzero(q.mask[sel.item])[-q.count :]
            return sel.take(hits), stop
        if q.count > 0:
            stop = b.next_sequence
            sel = b.select(q.start, stop)
            hits = np.flatnonzero(q.mask[sel.item])[: q.count]
            # a full page continues after its last observation; otherwise after the scan
            nxt = int(sel.seq[hits[-1]]) + 1 if len(hits) == q.count else max(stop, q.start)
            return sel.take(hits), nxt
        sel = b.select(b.first_sequence, min(q.start + 1, b.next_sequence))
        hits = np.flatnonzero(q.mask[sel.item])[q.count :]
        nxt = int(sel.seq[hits[0]]) - 1 if len(hits) else b.first_sequence
        return sel.take(hits), max(nxt, b.first_sequence)

    def _streams(self, obs: Observations, nxt: int, fmt: str) -> str:
        b = self.buffer
        seq = (b.first_sequence, b.last_sequence, nxt)
        return streams_document(self.header(), self.table, obs, seq, fmt)

    async def _sample_parts(self, q: SampleQuery, interval_ms: int, heartbeat_ms: int,
                            fmt: str) -> AsyncIterator[str]:  # fmt: skip
        """Documents while the client reads: new data at most every interval, else heartbeats."""
        last_sent = time.monotonic()
        first = True
        while not self.closing:
            if (why := self.buffer.check_range(q.start)) is not None:
                # the client fell behind the ring: it must resynchronise
                yield error_document(self.header(), "OUT_OF_RANGE", why, fmt)
                return
            obs, nxt = self.query(q)
            now = time.monotonic()
            if len(obs) or first or now - last_sent >= heartbeat_ms / 1000:
                yield self._streams(obs, nxt, fmt)
                q.start, last_sent, first = nxt, now, False
            if interval_ms:
                await asyncio.sleep(interval_ms / 1000)
            if len(obs) < abs(q.count) and q.start >= self.buffer.next_sequence:
                wait = max(0.0, last_sent + heartbeat_ms / 1000 - time.monotonic())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.new_data.wait(), wait)

    def _multipart(self, documents: AsyncIterator[str], fmt: str) -> StreamingResponse:
        boundary = secrets.token_hex(16)
        media = _MEDIA[fmt]

        async def parts() -> AsyncIterator[bytes]:
            async for doc in documents:
                body = doc.encode()
                yield (f"--{boundary}\r\nContent-type: {media}\r\nContent-length: {len(body)}"
                       "\r\n\r\n").encode() + body + b"\r\n"  # fmt: skip

        return StreamingResponse(
            parts(), media_type=f"multipart/x-mixed-replace;boundary={boundary}"
        )

    async def get_assets(self, request: Request) -> Response:
        fmt = _format(request)
        ids = request.path_params.get("ids")
        try:
            devices = {d.uuid for d in self._devices(request)}
            if ids is not None:
                chosen = [self._asset(i) for i in ids.split(";")]
            else:
                chosen = self._asset_list(request, devices)
        except RequestError as e:
            return self._error(e, fmt)
        body = assets_document(self.header(), [a.element() for a in chosen],
                               [a.as_json() for a in chosen], fmt)  # fmt: skip
        return Response(body, media_type=_MEDIA[fmt])

    def _asset(self, asset_id: str) -> Asset:
        if asset_id not in self.assets:
            raise RequestError("ASSET_NOT_FOUND", f"no asset with assetId {asset_id!r}")
        return self.assets[asset_id]

    def _asset_list(self, request: Request, devices: set[str]) -> list[Asset]:
        type_ = request.query_params.get("type")
        removed = request.query_params.get("removed", "false") == "true"
        count = _int_param(request, "count", 100, minimum=1)
        chosen = [a for a in self.assets.values() if a.device_uuid in devices
                  and (type_ is None or a.asset_type == type_) and (removed or not a.removed)]  # fmt: skip
        chosen.sort(key=lambda a: a.timestamp, reverse=True)
        return chosen[:count]


def _format(request: Request) -> str:
    explicit = request.query_params.get("format")
    if explicit in ("json", "xml"):
        return explicit
    return "json" if "application/json" in request.headers.get("accept", "") else "xml"


_NS = re.compile(r"\{[^}]*\}")


def select_data_items(probe_xml: str, path: str) -> list[str]:
    """Ids of the DataItems an XPath selects in a probe document, as the standard's
    ``path`` parameter means it: a selected DataItem is itself, any other element stands
    for the DataItems below it. Namespaces are ignored (``//Axes``, not ``//m:Axes``).

    The XPath subset of ElementTree: ``/`` and ``//`` steps, ``*``, ``..``, predicates
    ``[@a]``, ``[@a="v"]``, ``[@a!="v"]``, ``[Tag]``, ``[n]``, and unions with ``|``. Bad
    syntax, or a path that selects no data item, is INVALID_XPATH (as the reference
    agent answers)."""
    root = ET.fromstring(probe_xml)
    for element in root.iter():
        element.tag = _NS.sub("", element.tag)
    ids: dict[str, None] = {}
    for part in _union_parts(path):
        expr = part.strip()
        if expr.startswith("/") and not expr.startswith("//"):
            # absolute: from the document's root element, which is our root itself
            head, _, rest = expr[1:].partition("/")
            if head.split("[")[0] not in (root.tag, "*"):
                continue
            expr = "./" + rest if rest else "."
        elif expr.startswith("//"):
            expr = "." + expr
        try:
            found = root.findall(expr)
        except (SyntaxError, KeyError, TypeError) as e:
            raise RequestError(
                "INVALID_XPATH", f"'path' {path!r} is not a valid XPath: {e}"
            ) from None
        for element in found:
            items = [element] if element.tag == "DataItem" else element.iter("DataItem")
            ids.update((i.get("id"), None) for i in items if i.get("id"))  # type: ignore[misc]
    if not ids:
        raise RequestError("INVALID_XPATH", f"'path' {path!r} selects no data item")
    return list(ids)


def _union_parts(path: str) -> list[str]:
    """``a | b`` split at the bars outside predicates and quotes."""
    parts, depth, quote, start = [], 0, "", 0
    for k, ch in enumerate(path):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append(path[start:k])
            start = k + 1
    return [*parts, path[start:]]


def _int_param(request: Request, name: str, default: int | None,
               minimum: int | None = None) -> int | None:  # fmt: skip
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise RequestError("INVALID_REQUEST", f"'{name}' must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise RequestError("OUT_OF_RANGE", f"'{name}' must be at least {minimum}, got {value}")
    return value


def _concat(a: Observations, b: Observations) -> Observations:
    return Observations(*(np.concatenate([getattr(a, f), getattr(b, f)])
                          for f in ("seq", "item", "t", "value", "text")))  # fmt: skip
