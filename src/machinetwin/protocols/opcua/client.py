"""The edge's adapter for any OPC UA server of the Machine Tools model (OPC 40501-1).

It browses ``Objects/Machines`` (and ``Objects``) for objects whose type is
``MachineToolType`` (or a subtype), finds the channel and spindle by their types,
resolves every variable of :data:`.model.SIGNAL_MAP` the server has in ONE
TranslateBrowsePathsToNodeIds call, subscribes to them (100 ms sampling and publishing)
and to the ``AlertType`` events of ``Notification/Messages``, and every period turns
what arrived into one :class:`SampleBatch` (each signal carried forward) plus events
for execution, program and alert changes.

The adapters of machines on one server share one session and one subscription
(:mod:`.session`): one connect, one publish loop, notifications filed into numpy
columns per machine by client handle. When the connection is lost (server restart,
network) the session is thrown away and every adapter on it connects (the first one
for all), browses and subscribes again by itself, every ``retry_s``; the data it could
not see is a gap, never invented values.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from asyncua import Client, Node, ua

from ...errors import CommandRejected, ConfigError
from ...model import (
    SIGNALS,
    AdapterCommand,
    Alarm,
    Execution,
    MachineDescriptor,
    MachineEvent,
    SampleBatch,
)
from . import model as m
from .session import Collected, ColumnSubscription, Sink, acquire, release

log = logging.getLogger(__name__)

_CHANNEL_TYPES = ("ChannelMonitoringType", "CombinedChannelMonitoringType")


class NotAMachineTool(Exception):
    """The server has no (matching) MachineTool object: retried, it may still be starting."""


@dataclass
class OpcUaSettings:
    url: str  # opc.tcp://host:port/path
    machine_id: str
    site: str = ""
    machine: str | None = None  # BrowseName of the MachineTool object; None: the first one
    period_s: float = 0.1
    retry_s: float = 1.0
    timeout_s: float = 4.0
    username: str | None = None
    password: str | None = None
    policy: str = "None"  # or Basic256Sha256_Sign, Basic256Sha256_SignAndEncrypt
    certificate: Path | None = None  # the client's application certificate and key
    private_key: Path | None = None
    server_certificate: Path | None = None  # None: taken from the server's endpoints


def carry_forward(sig: np.ndarray, t: np.ndarray, v: np.ndarray,
                  last: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Rows at every distinct notification time, each signal at its newest value at or
    before that time (or its value from before this batch); ``last`` is updated.

    All in numpy (no loop over signals): each notification lands in its (signal, row)
    cell, the newest arrival of a cell wins, and each signal's row is filled forward."""
    times, row = np.unique(t, return_inverse=True)
    n_sig, n_row = len(last), len(times)
    cell = sig.astype(np.int64) * n_row + row.reshape(-1)
    # the last arrival per cell: first occurrence in the reversed order
    cells, first_rev = np.unique(cell[::-1], return_index=True)
    newest = len(cell) - 1 - first_rev
    grid = np.empty(n_sig * n_row)
    grid[cells] = v[newest]
    filled = np.zeros(n_sig * n_row, bool)
    filled[cells] = True
    at = np.where(filled.reshape(n_sig, n_row), np.arange(n_row), -1)
    np.maximum.accumulate(at, axis=1, out=at)  # the newest filled row at or before each
    base = (np.arange(n_sig) * n_row)[:, None]
    values = np.where(at >= 0, grid[base + np.maximum(at, 0)], last[:, None])
    if n_row:
        last[:] = values[:, -1]
    return times, values


class OpcUaClientAdapter:
    """An ``Adapter`` for a machine behind any OPC UA server of the Machine Tools model."""

    def __init__(self, settings: OpcUaSettings) -> None:
        if settings.policy not in ("None", "Basic256Sha256_Sign", "Basic256Sha256_SignAndEncrypt"):
            raise ConfigError(f"{settings.machine_id}: unknown OPC UA policy {settings.policy!r}")
        if settings.policy != "None" and not (settings.certificate and settings.private_key):
            raise ConfigError(f"{settings.machine_id}: policy {settings.policy} needs the "
                              "client's certificate and private_key")  # fmt: skip
        self.settings = settings
        self.descriptor = MachineDescriptor(
            machine_id=settings.machine_id, name=settings.machine or settings.machine_id,
            site=settings.site, model="OPC UA MachineTool", signals=tuple(SIGNALS),
            extra={"protocol": "opcua", "url": settings.url})  # fmt: skip
        self.closed = False
        self.sessions = 0  # sessions set up (1 + reconnections)
        self.signals: list[str] = []
        self.last = np.zeros(0)
        self.ever = np.zeros(0, bool)
        self.channel_state: int | None = None
        self.program_state: str | None = None
        self.execution: Execution | None = None
        self.program: str | None = None
        self.notifications = 0
        self.active_alerts: set[tuple[str, str]] = set()  # (ErrorCode, source) active
        self.t_sent = -np.inf  # time of the newest row sent
        self._wake = asyncio.Event()

    async def batches(self) -> AsyncIterator[SampleBatch | MachineEvent]:
        while not self.closed:
            try:
                async for item in self._session():
                    yield item
            except (OSError, TimeoutError, ConnectionError, ua.UaError, NotAMachineTool) as e:
                log.info("%s: OPC UA session ended (%r); reconnecting", self.settings.machine_id, e)
            if not self.closed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.retry_s)

    async def _session(self) -> AsyncIterator[SampleBatch | MachineEvent]:
        shared = await acquire(self.settings)
        placed: tuple[int, list[int]] | None = None
        try:
            client, sub = shared.client, shared.subscription
            assert client is not None and sub is not None
            machine = await find_machine(client, self.settings.machine)
            targets = await resolve(client, machine)
            sink, placed = await self._subscribe(client, sub, targets)
            self.sessions += 1
            period = self.settings.period_s
            while not self.closed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(shared.lost.wait(), period)
                if shared.lost.is_set():
                    raise ConnectionError("connection to the server lost")
                for item in self.convert(sink.take()):
                    yield item
                self.notifications = sink.count
        finally:
            if placed is not None and not shared.lost.is_set() and shared.subscription:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(shared.subscription.remove_sink(*placed), 2.0)
            await release(shared)

    async def _subscribe(self, client: Client, sub: ColumnSubscription,
                         targets: dict[str, ua.NodeId]) -> tuple[Sink, tuple[int, list[int]]]:  # fmt: skip
        """This machine's items on the shared subscription; the sink and what to remove."""
        numeric = [s for s in targets if s in SIGNALS]
        if "channel_state" in targets:  # execution: derived from channel and program state
            numeric.append("execution")
        if numeric != self.signals:
            self.signals = numeric
            self.last = np.full(len(numeric), np.nan)
            self.ever = np.zeros(len(numeric), bool)
        text = [s for s in targets if s not in SIGNALS and s != "messages"]
        monitored = [s for s in numeric if s in targets]  # by signal index: execution last
        sink = Sink(text)
        results, sink_no = await sub.add_sink(sink, [targets[s] for s in monitored],
                                              [targets[s] for s in text],
                                              self.settings.period_s * 1000)  # fmt: skip
        handles = []
        for name, result in zip([*monitored, *text], results, strict=True):
            if isinstance(result, int):
                handles.append(result)
            else:  # a refused item: the others still count
                log.warning("%s: cannot monitor %s: %s", self.settings.machine_id, name, result)
        messages = targets.get("messages")
        alert = await _alert_type(client) if messages is not None else None
        if messages is not None and alert is not None:
            with contextlib.suppress(ua.UaError):
                handles.append(await sub.add_events(sink, messages, alert_filter(alert)))
                await _condition_refresh(client, sub)
        return sink, (sink_no, handles)

    # ------------------------------------------------------------ conversion

    def convert(self, box: Collected) -> list[SampleBatch | MachineEvent]:
        """Events first (they explain the samples), then the batch."""
        out: list[SampleBatch | MachineEvent] = []
        exec_rows: list[tuple[float, float]] = []
        for name, t, val in sorted(box.texts, key=lambda x: x[1]):
            out += self._text(name, t, val, exec_rows)
        out += [e for ev in box.alerts if (e := self._alert(ev)) is not None]
        sig, t, v = box.sig, box.t, box.v
        if "execution" in self.signals and exec_rows:
            k = self.signals.index("execution")
            rows = np.array(exec_rows)
            sig = np.concatenate([sig, np.full(len(rows), k, np.int64)])
            t, v = np.concatenate([t, rows[:, 0]]), np.concatenate([v, rows[:, 1]])
        if len(t) and self.signals:
            batch = self._batch(sig, t, v)
            out += [batch] if batch is not None else []
        return out

    def _batch(self, sig: np.ndarray, t: np.ndarray, v: np.ndarray) -> SampleBatch | None:
        # "no value yet" of a signal that never had one adds nothing (no rows of unknowns)
        keep = ~(np.isnan(v) & ~self.ever[sig])
        sig, t, v = sig[keep], t[keep], v[keep]
        if len(t) == 0:
            return None
        # a notification stamped before rows already sent (a state variable's first value
        # carries the time it last changed) counts from the newest row: batches stay in order
        t = np.maximum(t, self.t_sent)
        times, values = carry_forward(sig, t, v, self.last)
        self.ever |= np.isfinite(self.last)
        self.t_sent = float(times[-1])
        columns = {name: values[k] for k, name in enumerate(self.signals) if self.ever[k]}
        return SampleBatch(self.settings.machine_id, times, columns)

    def _text(self, name: str, t: float, val: Any,
              exec_rows: list[tuple[float, float]]) -> list[MachineEvent]:  # fmt: skip
        mid = self.settings.machine_id
        if name == "program":
            if val and val != self.program:
                self.program = str(val)
                return [MachineEvent(mid, t, "program", value={"name": self.program, "text": None})]
            return []
        if name == "channel_state":
            self.channel_state = int(val) if isinstance(val, int) else None
        elif name == "program_state":
            self.program_state = val.Text if isinstance(val, ua.LocalizedText) else str(val)
        execution = m.execution_from_opcua(self.channel_state, self.program_state)
        if execution is None or execution == self.execution:
            return []
        self.execution = execution
        exec_rows.append((t, float(execution)))
        return [MachineEvent(mid, t, "execution", value=execution.name)]

    def _alert(self, event: Any) -> MachineEvent | None:
        fields = event.get_event_props_as_fields_dict()
        code_text = str(_value(fields.get("ErrorCode")) or "")
        if not code_text:
            return None
        code, ours = m.alarm_code(code_text)
        message = _value(fields.get("Message"))
        text = message.Text if isinstance(message, ua.LocalizedText) else str(message or "")
        if not ours:
            text = f"[{code_text}] {text}"
        stamp = _value(fields.get("Time"))
        t = stamp.timestamp() if stamp is not None else time.time()
        severity = m.severity_from_opcua(int(_value(fields.get("Severity")) or 0))
        source = str(_value(fields.get("SourceName")) or "machine")
        active = _value(fields.get("ActiveState/Id"))
        # a condition refresh repeats what is active (for every machine on the shared
        # subscription): an alarm already known active is no news
        key = (code_text, source)
        if active is False:
            self.active_alerts.discard(key)
            alarm = Alarm(code, severity, text, source, t, cleared_at=t)
            return MachineEvent(self.settings.machine_id, t, "alarm_cleared", alarm=alarm)
        if key in self.active_alerts:
            return None
        self.active_alerts.add(key)
        alarm = Alarm(code, severity, text, source, t)
        return MachineEvent(self.settings.machine_id, t, "alarm", alarm=alarm)

    async def command(self, command: AdapterCommand) -> None:
        raise CommandRejected(f"{self.settings.machine_id}: the OPC UA adapter is read-only; "
                              f"cannot {command.name!r}")  # fmt: skip

    async def close(self) -> None:
        self.closed = True
        self._wake.set()


def _value(variant: Any) -> Any:
    return variant.Value if isinstance(variant, ua.Variant) else variant


# ------------------------------------------------------------ browsing


# what one connection learnt of its server's types and namespaces: every adapter sharing
# the session asks the same questions at once (58 machines: thousands of browse requests
# queued on one channel), so answers, and lookups in flight, are shared
_MEMO: weakref.WeakKeyDictionary[Client, dict[Any, asyncio.Future[Any]]] = (
    weakref.WeakKeyDictionary())  # fmt: skip


async def _cached(client: Client, key: Any, make: Callable[[], Awaitable[Any]]) -> Any:
    memo = _MEMO.setdefault(client, {})
    future = memo.get(key)
    if future is None:
        future = memo[key] = asyncio.ensure_future(make())
    try:
        return await asyncio.shield(future)
    except Exception:
        if memo.get(key) is future:  # asked again next time
            del memo[key]
        raise


async def _namespaces(client: Client) -> list[str]:
    return await _cached(client, "namespaces", client.get_namespace_array)


async def _ns_index(client: Client, uri: str) -> int | None:
    array = await _namespaces(client)
    return array.index(uri) if uri in array else None


async def _is_type(current: Node, mt_ns: int, names: tuple[str, ...], depth: int = 6,
                   client: Client | None = None) -> bool:  # fmt: skip
    """Whether the type ``current`` is one of ``names`` in the MachineTool namespace, or a
    subtype of one (a vendor may derive its own); remembered per ``client``."""
    if client is not None:
        key = ("is_type", current.nodeid, mt_ns, names, depth)
        return await _cached(client, key, lambda: _is_type(current, mt_ns, names, depth))
    for _ in range(depth):
        name = await current.read_browse_name()
        if name.NamespaceIndex == mt_ns and name.Name in names:
            return True
        parents = await current.get_references(ua.ObjectIds.HasSubtype, ua.BrowseDirection.Inverse)
        if not parents:
            return False
        current = Node(current.session, parents[0].NodeId)
    return False


async def find_machine(client: Client, wanted: str | None) -> Node:
    """The MachineTool object named ``wanted`` (BrowseName or DisplayName), or the first.

    One Browse per folder (its references carry names and type definitions); only the
    objects with the wanted name get their type checked, each type once."""
    mt_ns = await _ns_index(client, m.NS_MACHINE_TOOL)
    if mt_ns is None:
        raise NotAMachineTool(f"the server has no {m.NS_MACHINE_TOOL} namespace")
    found: list[str] = []
    for fresh in (False, True):  # the listing of another adapter first, then the server's
        key = ("machines", fresh and object())  # a fresh key: browsed again
        refs = await _cached(client, key, lambda: _machine_refs(client))
        for ref in refs:
            if wanted is not None and wanted not in (ref.BrowseName.Name, ref.DisplayName.Text):
                continue
            typedef = ua.NodeId(ref.TypeDefinition.Identifier, ref.TypeDefinition.NamespaceIndex)
            if await _is_type(client.get_node(typedef), mt_ns, ("MachineToolType",), client=client):
                return client.get_node(ref.NodeId)
            found.append(ref.BrowseName.Name)
        if fresh:
            _MEMO.get(client, {}).pop(key, None)
    raise NotAMachineTool(f"no MachineTool {wanted!r} on the server (found {found})")


async def _machine_refs(client: Client) -> list[ua.ReferenceDescription]:
    """The children of Objects/Machines (OPC 40001-1) and of Objects: one Browse each."""
    objects = client.nodes.objects
    refs: list[ua.ReferenceDescription] = []
    machinery = await _ns_index(client, m.NS_MACHINERY)
    if machinery is not None:
        with contextlib.suppress(ua.UaError):
            folder = await objects.get_child(ua.QualifiedName("Machines", machinery))
            refs += await folder.get_children_descriptions()
    return refs + await objects.get_children_descriptions()


async def _placeholder(client: Client, monitoring: Node, mt_ns: int,
                       names: tuple[str, ...]) -> str | None:  # fmt: skip
    """The BrowseName of the first Monitoring child of one of the given types."""
    for ref in await monitoring.get_children_descriptions():
        typedef = client.get_node(ua.NodeId(ref.TypeDefinition.Identifier,
                                            ref.TypeDefinition.NamespaceIndex))  # fmt: skip
        if await _is_type(typedef, mt_ns, names, depth=3, client=client):
            return ref.BrowseName.Name
    return None


async def resolve(client: Client, machine: Node) -> dict[str, ua.NodeId]:
    """Node ids of every mapped variable the machine has: canonical signals, plus
    ``channel_state``, ``program_state``, ``program`` and ``messages``; one request."""
    array = await _namespaces(client)
    ns = {k: array.index(uri) for k, uri in m.NAMESPACES.items() if uri in array}
    ns[m.UA] = 0
    mt_ns = ns[m.MT]
    channel, spindle = m.CHANNEL, m.SPINDLE
    with contextlib.suppress(ua.UaError):
        monitoring = await machine.get_child(ua.QualifiedName("Monitoring", mt_ns))
        channel = await _placeholder(client, monitoring, mt_ns, _CHANNEL_TYPES) or channel
        spindle = (
            await _placeholder(client, monitoring, mt_ns, ("SpindleMonitoringType",)) or spindle
        )
    wanted: dict[str, m.Path] = {mp.signal: mp.path for mp in m.SIGNAL_MAP}
    wanted |= {"channel_state": m.CHANNEL_STATE, "program_state": m.PROGRAM_STATE,
               "program": m.PROGRAM_NAME, "messages": m.MESSAGES}  # fmt: skip
    names, paths = [], []
    for name, path in wanted.items():
        if any(key not in ns for key, _ in path):
            continue  # e.g. machinetwin's Telemetry on a server that is not ours
        path = tuple((k, {m.CHANNEL: channel, m.SPINDLE: spindle}.get(n, n)) for k, n in path)
        elements = [ua.RelativePathElement(ReferenceTypeId=ua.NodeId(ua.ObjectIds.HierarchicalReferences),
                                           IsInverse=False, IncludeSubtypes=True,
                                           TargetName=ua.QualifiedName(n, ns[k])) for k, n in path]  # fmt: skip
        paths.append(ua.BrowsePath(StartingNode=machine.nodeid,
                                   RelativePath=ua.RelativePath(Elements=elements)))  # fmt: skip
        names.append(name)
    results = await client.uaclient.translate_browsepaths_to_nodeids(paths)
    return {name: ua.NodeId(r.Targets[0].TargetId.Identifier,
                            r.Targets[0].TargetId.NamespaceIndex)
            for name, r in zip(names, results, strict=True)
            if r.StatusCode.is_good() and r.Targets}  # fmt: skip


async def _alert_type(client: Client) -> ua.NodeId | None:
    """The AlertType event type, found by its BrowseName (node ids differ by server)."""
    return await _cached(client, "alert_type", lambda: _find_alert_type(client))


async def _find_alert_type(client: Client) -> ua.NodeId | None:
    mt_ns = await _ns_index(client, m.NS_MACHINE_TOOL)
    alarm = client.get_node(ua.ObjectIds.AlarmConditionType)
    for ref in await alarm.get_children_descriptions(refs=ua.ObjectIds.HasSubtype):
        if ref.BrowseName.Name == "AlertType" and ref.BrowseName.NamespaceIndex == mt_ns:
            return ua.NodeId(ref.NodeId.Identifier, ref.NodeId.NamespaceIndex)
    return None


async def _condition_refresh(client: Client, sub: Any) -> None:
    """Ask the server to send the conditions active now (OPC 10000-9 ConditionRefresh):
    alarms raised before this subscription existed, e.g. across a reconnect."""
    with contextlib.suppress(ua.UaError, TimeoutError):
        await client.get_node(ua.ObjectIds.ConditionType).call_method(
            ua.NodeId(ua.ObjectIds.ConditionType_ConditionRefresh),
            ua.Variant(sub.subscription_id, ua.VariantType.UInt32))  # fmt: skip


def alert_filter(alert_type: ua.NodeId) -> ua.EventFilter:
    """Only the fields the adapter uses, of AlertType events only. Built here rather than
    by asyncua from the type's whole hierarchy (hundreds of requests per session)."""

    def field(type_id: ua.NodeId, *names: ua.QualifiedName) -> ua.SimpleAttributeOperand:
        return ua.SimpleAttributeOperand(TypeDefinitionId=type_id, BrowsePath=list(names),
                                         AttributeId=ua.AttributeIds.Value)  # fmt: skip

    base = ua.NodeId(ua.ObjectIds.BaseEventType)
    condition = ua.NodeId(ua.ObjectIds.AlarmConditionType)
    select = [field(base, ua.QualifiedName(n)) for n in ("EventType", "Message", "Severity",
                                                         "SourceName", "Time")]  # fmt: skip
    select.append(field(alert_type, ua.QualifiedName("ErrorCode", alert_type.NamespaceIndex)))
    select.append(field(condition, ua.QualifiedName("ActiveState"), ua.QualifiedName("Id")))
    of_type = ua.ContentFilterElement(FilterOperator=ua.FilterOperator.OfType,
                                      FilterOperands=[ua.LiteralOperand(Value=ua.Variant(alert_type))])  # fmt: skip
    return ua.EventFilter(SelectClauses=select, WhereClause=ua.ContentFilter(Elements=[of_type]))


def opcua_adapter(machine_id: str, site: str, url: str | None,
                  machine: str | None = None) -> OpcUaClientAdapter:  # fmt: skip
    """The adapter of a site file's ``kind = "opcua"`` entry; ConfigError names the key."""
    if not url or not url.startswith("opc.tcp://"):
        raise ConfigError(f"machines.{machine_id}.url: expected opc.tcp://host:port[/path], "
                          f"got {url!r}")  # fmt: skip
    return OpcUaClientAdapter(OpcUaSettings(url, machine_id, site, machine))
