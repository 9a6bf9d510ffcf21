"""One OPC UA session per server, shared by the adapters of every machine on it.

A site often reaches several machines through one OPC UA server (a cell controller, an
aggregating gateway, our own server with many machines). Each adapter used to open its
own session and subscription; now the adapters of one server (same URL, credentials,
security and period) share one :class:`SharedSession`: one secure channel, one
subscription, one publish loop. Each adapter adds its monitored items to the shared
subscription with client handles that route straight to its :class:`Sink`.

:class:`ColumnSubscription` replaces asyncua's per-notification delivery (an object, an
event and an asyncio task per data change) with a few list comprehensions per publish
response and numpy columns per adapter: (signal index, time, value) arrays, no
per-sample Python objects past the decoded message.

This relies on two asyncua internals, checked by the tests: ``Subscription.
publish_callback(publish_result)`` as the publish loop's entry and
``_make_monitored_item_request``; recheck them on an asyncua upgrade.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from asyncua import Client, Node, ua
from asyncua.common.events import Event
from asyncua.common.subscription import Subscription
from asyncua.crypto import security_policies

if TYPE_CHECKING:
    from .client import OpcUaSettings

log = logging.getLogger(__name__)

_BAD_OR_UNCERTAIN = 3 << 30  # StatusCode severity bits: 00 is Good
NUMERIC, TEXT = 0, 1


@dataclass
class Collected:
    """What a sink received since it was last taken: numeric notifications as parallel
    numpy arrays, the few text/state items and events as they came."""

    sig: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    t: np.ndarray = field(default_factory=lambda: np.zeros(0))
    v: np.ndarray = field(default_factory=lambda: np.zeros(0))
    texts: list[tuple[str, float, Any]] = field(default_factory=list)
    alerts: list[Any] = field(default_factory=list)


class Sink:
    """One adapter's share of a subscription: its items' notifications, by signal index."""

    def __init__(self, text_names: list[str]) -> None:
        self.text_names = text_names  # text route index -> name
        self.count = 0  # notifications received (data changes)
        self._sig: list[np.ndarray] = []
        self._t: list[np.ndarray] = []
        self._v: list[np.ndarray] = []
        self._texts: list[tuple[str, float, Any]] = []
        self._alerts: list[Any] = []

    def add_numeric(self, sig: np.ndarray, t: np.ndarray, v: np.ndarray) -> None:
        self._sig.append(sig)
        self._t.append(t)
        self._v.append(v)
        self.count += len(sig)

    def add_text(self, index: int, t: float, value: Any) -> None:
        self._texts.append((self.text_names[index], t, value))
        self.count += 1

    def add_alert(self, event: Any) -> None:
        self._alerts.append(event)

    def take(self) -> Collected:
        box = Collected(texts=self._texts, alerts=self._alerts)
        if self._sig:
            box.sig = np.concatenate(self._sig)
            box.t = np.concatenate(self._t)
            box.v = np.concatenate(self._v)
        self._sig, self._t, self._v, self._texts, self._alerts = [], [], [], [], []
        return box


class ColumnSubscription(Subscription):
    """A subscription whose data changes go to sinks as numpy columns, routed by client
    handle through lookup arrays (owner sink, kind, index)."""

    def __init__(self, session: Any, params: ua.CreateSubscriptionParameters) -> None:
        super().__init__(session, params, handler=self)  # no iterator queue
        self.sinks: list[Sink | None] = []
        self.owner = np.full(64, -1, np.int64)  # client handle -> sink number
        self.kind = np.full(64, -1, np.int64)
        self.index = np.zeros(64, np.int64)
        self.event_sinks: dict[int, Sink] = {}

    # the base class's handler protocol, never called by the publish path below
    def datachange_notification(self, node: Node, val: Any, data: Any) -> None:  # pragma: no cover
        pass

    async def publish_callback(self, publish_result: ua.PublishResult) -> None:
        self.last_publish_at = time.monotonic()
        message = publish_result.NotificationMessage
        if message.NotificationData is None:
            return
        self.last_sequence_number = int(message.SequenceNumber)
        for notification in message.NotificationData:
            try:
                if isinstance(notification, ua.DataChangeNotification):
                    self._data_changes(notification.MonitoredItems)
                elif isinstance(notification, ua.EventNotificationList):
                    self._events(notification.Events)
            except Exception:  # one bad message must not stop the publish loop
                log.exception("OPC UA notification could not be filed")

    def _data_changes(self, items: list[ua.MonitoredItemNotification]) -> None:
        if not items:
            return
        handles = np.fromiter((it.ClientHandle for it in items), np.int64, len(items))
        handles[(handles < 0) | (handles >= len(self.owner))] = 0  # unknown: owner -1
        owner, kind, index = self.owner[handles], self.kind[handles], self.index[handles]
        dvs = [it.Value for it in items]
        status = np.fromiter((dv.StatusCode.value for dv in dvs), np.int64, len(dvs))
        t = np.array([_stamp(dv) for dv in dvs])
        numeric = np.flatnonzero(kind == NUMERIC)
        if len(numeric):
            values = _numbers([_raw(dvs[k]) for k in numeric])
            values[(status[numeric] & _BAD_OR_UNCERTAIN) != 0] = np.nan
            self._file_numeric(owner[numeric], index[numeric], t[numeric], values)
        for k in np.flatnonzero(kind == TEXT):
            sink = self.sinks[owner[k]]
            if sink is not None:
                sink.add_text(int(index[k]), float(t[k]), _raw(dvs[k]))

    def _file_numeric(self, owner: np.ndarray, sig: np.ndarray, t: np.ndarray,
                      v: np.ndarray) -> None:  # fmt: skip
        """Split one response's numeric notifications by owner (usually one per machine,
        in runs: the server reports items in the order they were created)."""
        order = np.argsort(owner, kind="stable")
        owner, sig, t, v = owner[order], sig[order], t[order], v[order]
        cuts = np.flatnonzero(np.diff(owner)) + 1
        for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(owner)], strict=True):
            sink = self.sinks[owner[lo]]
            if sink is not None:
                sink.add_numeric(sig[lo:hi], t[lo:hi], v[lo:hi])

    def _events(self, events: list[ua.EventFieldList]) -> None:
        for ev in events:
            sink = self.event_sinks.get(ev.ClientHandle)
            data = self._monitored_items.get(ev.ClientHandle)
            if sink is None or data is None or not isinstance(data.mfilter, ua.EventFilter):
                continue
            sink.add_alert(Event.from_event_fields(data.mfilter.SelectClauses, ev.EventFields))

    # ------------------------------------------------------------ routes

    def _route(self, sink_no: int, kind: int, index: int) -> ua.MonitoringParameters:
        self._client_handle += 1
        handle = self._client_handle
        if handle >= len(self.owner):  # grow the lookup arrays (doubling)
            size = max(2 * len(self.owner), handle + 1)
            for name, fill in (("owner", -1), ("kind", -1), ("index", 0)):
                old = getattr(self, name)
                new = np.full(size, fill, np.int64)
                new[: len(old)] = old
                setattr(self, name, new)
        self.owner[handle], self.kind[handle], self.index[handle] = sink_no, kind, index
        return ua.MonitoringParameters(ClientHandle=handle)

    async def add_sink(self, sink: Sink, numeric: list[ua.NodeId], text: list[ua.NodeId],
                       sampling_ms: float) -> tuple[list[int | ua.StatusCode], int]:  # fmt: skip
        """Monitor ``numeric`` (signal index = position) and ``text`` (text route index =
        position) for ``sink``; returns the results in that order and the sink's number."""
        sink_no = len(self.sinks)
        self.sinks.append(sink)
        requests = []
        for kind, nodes in ((NUMERIC, numeric), (TEXT, text)):
            for k, node in enumerate(nodes):
                params = self._route(sink_no, kind, k)
                params.SamplingInterval, params.QueueSize, params.DiscardOldest = (
                    sampling_ms, 0, True)  # fmt: skip
                requests.append(ua.MonitoredItemCreateRequest(
                    ItemToMonitor=ua.ReadValueId(NodeId=node, AttributeId=ua.AttributeIds.Value),
                    MonitoringMode=ua.MonitoringMode.Reporting, RequestedParameters=params))  # fmt: skip
        results = await self.create_monitored_items(requests) if requests else []
        return results, sink_no

    async def add_events(self, sink: Sink, notifier: ua.NodeId, evfilter: ua.EventFilter) -> int:
        """Event notifications of ``notifier`` (through ``evfilter``) for ``sink``."""
        request = self._make_monitored_item_request(
            Node(self.server, notifier), ua.AttributeIds.EventNotifier, evfilter, 0,
            ua.MonitoringMode.Reporting, 0.0)  # fmt: skip
        self.event_sinks[request.RequestedParameters.ClientHandle] = sink
        (result,) = await self.create_monitored_items([request])
        if isinstance(result, ua.StatusCode):
            result.check()
        return int(result)

    async def remove_sink(self, sink_no: int, server_handles: list[int]) -> None:
        """Stop routing to a sink and delete its monitored items (best effort)."""
        sink = self.sinks[sink_no]
        self.sinks[sink_no] = None
        self.event_sinks = {h: s for h, s in self.event_sinks.items() if s is not sink}
        if server_handles:
            with contextlib.suppress(Exception):
                await self.unsubscribe(server_handles)


def _stamp(dv: ua.DataValue) -> float:
    ts = dv.SourceTimestamp or dv.ServerTimestamp
    return ts.timestamp() if ts is not None else time.time()


def _raw(dv: ua.DataValue) -> Any:
    return None if dv.Value is None else dv.Value.Value


def _numbers(values: list[Any]) -> np.ndarray:
    """Values as float64; anything not a number (None, text) is NaN."""
    try:
        return np.array(values, dtype=np.float64)
    except (TypeError, ValueError):
        return np.array([float(x) if isinstance(x, bool | int | float | np.number) else np.nan
                         for x in values])  # fmt: skip


# ------------------------------------------------------------ sharing


class SharedSession:
    """A connected client and its one subscription, used by every adapter of a server."""

    def __init__(self, settings: OpcUaSettings) -> None:
        self.settings = settings
        self.client: Client | None = None
        self.subscription: ColumnSubscription | None = None
        self.lost = asyncio.Event()
        self.users = 0
        self.ready = asyncio.Event()
        self.error: BaseException | None = None

    async def open(self) -> None:
        s = self.settings
        # the health probe waits behind the requests queued on the one channel (every
        # machine browsing at start): a 1 s probe timeout took a busy session for lost. A
        # server restart closes the socket and is seen at once whatever this interval.
        client = Client(s.url, timeout=s.timeout_s, watchdog_intervall=max(2.0, s.timeout_s / 2))
        if s.username is not None:
            client.set_user(s.username)
            client.set_password(s.password or "")
        if s.policy != "None":
            mode = (ua.MessageSecurityMode.Sign if s.policy.endswith("_Sign")
                    else ua.MessageSecurityMode.SignAndEncrypt)  # fmt: skip
            await client.set_security(
                security_policies.SecurityPolicyBasic256Sha256, str(s.certificate),
                str(s.private_key), server_certificate=_opt(s.server_certificate), mode=mode)  # fmt: skip

        async def on_lost(exc: Exception) -> None:
            self.lost.set()

        client.connection_lost_callback = on_lost
        await client.connect()
        self.client = client
        try:
            self.subscription = await _subscription(client, s.period_s * 1000)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(), 2.0)


async def _subscription(client: Client, period_ms: float) -> ColumnSubscription:
    params = ua.CreateSubscriptionParameters(
        RequestedPublishingInterval=period_ms, RequestedLifetimeCount=10000,
        RequestedMaxKeepAliveCount=client.get_keepalive_count(period_ms),
        MaxNotificationsPerPublish=0, PublishingEnabled=True, Priority=0)  # fmt: skip
    sub = ColumnSubscription(client.uaclient.session, params)
    await sub.init()
    return sub


def _opt(path: Path | None) -> str | None:
    return None if path is None else str(path)


def session_key(settings: OpcUaSettings) -> tuple[Any, ...]:
    """Adapters share a session when everything that shapes it is equal."""
    s = settings
    return (id(asyncio.get_running_loop()), s.url, s.username, s.password, s.policy,
            s.certificate, s.private_key, s.server_certificate, s.period_s, s.timeout_s)  # fmt: skip


_SESSIONS: dict[tuple[Any, ...], SharedSession] = {}


async def acquire(settings: OpcUaSettings) -> SharedSession:
    """The live shared session for these settings, connecting it if there is none (one
    connect for many adapters starting at once); raises what connecting raised."""
    key = session_key(settings)
    shared = _SESSIONS.get(key)
    if shared is None or shared.lost.is_set() or (shared.ready.is_set() and shared.error):
        shared = SharedSession(settings)
        _SESSIONS[key] = shared
        shared.users += 1
        try:
            await shared.open()
        except BaseException as e:
            shared.error = e
            shared.users -= 1
            if _SESSIONS.get(key) is shared:
                del _SESSIONS[key]
            raise
        finally:
            shared.ready.set()
        return shared
    shared.users += 1
    await shared.ready.wait()
    if shared.error is not None:
        shared.users -= 1
        raise shared.error
    return shared


async def release(shared: SharedSession) -> None:
    """One adapter less; the last one closes the session."""
    shared.users -= 1
    if shared.users > 0:
        return
    for key, value in list(_SESSIONS.items()):
        if value is shared:
            del _SESSIONS[key]
    await shared.close()
