"""Hub ingest: MQTT in, the store, acknowledgements out, and each machine's live state.

Messages arrive on paho's network thread and are queued; one writer thread takes
them in groups (a store transaction costs milliseconds whatever its size, so
grouping is what makes ingest fast), writes the batches, and only then publishes
the acknowledgements that let the edges delete them. A duplicate (a resend of a
stored batch) is acknowledged again and stored nothing. Anything malformed is
rejected with a log line and a counter; nothing a client sends stops the hub.

The hub checks its own subscriptions: every ``probe_every_s`` it publishes a probe to a
topic of its own that it subscribes to, and a connection on which three periods pass
with nothing arriving (no probe, no data: a probe queued behind a backlog at the broker
is late, but then the backlog's messages arrive) is dropped and made again
(resubscribing). A broker can
lose a session's subscriptions while the connection stays up (amqtt's clean-up of an
old session races a fast reconnect of the same client id); the hub would then hear
nothing, ack nothing, and every edge's buffer would grow. The check arms only once a
probe has come back: a broker whose ACL does not let the hub use its probe topic
(``hub/broker_security.py`` grants only machine topics) simply never arms it.
"""

from __future__ import annotations

import logging
import queue
import re
import socket
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from itertools import compress

import numpy as np
import paho.mqtt.client as mqtt

from ..model import Alarm, Execution, MachineDescriptor, MachineEvent, SampleBatch
from ..protocols import codec, topics
from ..protocols.broker import BrokerAddress
from .store import Store, StoreError

log = logging.getLogger(__name__)

GROUP_WINDOW_S = 0.0  # extra wait for a group; 0: take only what is already queued
MAX_GROUP = 2000
PROBE_EVERY_S = 5.0  # how often the hub checks that its subscriptions still deliver
# data payloads at least this large are decoded as they arrive (see _predecode): ~1,000
# values and up; a batch of 50 signals x 100 rows is ~40 kB, one row ~0.5 kB
PREDECODE_MIN_BYTES = 8192


@dataclass
class LiveState:
    """What the lab sees of one machine right now."""

    machine: str
    descriptor: MachineDescriptor | None = None
    online: bool = False
    last_seen: float = 0.0  # wall clock, s
    latency_s: float = float("nan")  # arrival minus the newest sample's time
    newest_sample: float = float("-inf")
    values: dict[str, float] = field(default_factory=dict)
    active_alarms: list[Alarm] = field(default_factory=list)
    batches: int = 0
    samples: int = 0

    @property
    def execution(self) -> str:
        value = self.values.get("execution")
        return Execution(int(value)).name if value is not None and value == value else "UNKNOWN"


@dataclass
class IngestCounters:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    samples: int = 0
    acks_sent: int = 0
    rejected: Counter = field(default_factory=Counter)  # reason -> count
    renewals: int = 0  # connections dropped because the hub's own probe stopped coming back


class _BufferedClient(mqtt.Client):
    """paho's client with reads served from one large ``recv`` (hub side only).

    paho reads each packet with three or more ``recv`` calls (command byte, each length
    byte, body) and wakes its own select loop with a socket write for every PUBACK it
    queues; at thousands of messages a second those syscalls were most of the hub's
    network thread. Here one ``recv`` of up to 256 kB feeds many packets, ``loop_read``
    drains what was read (so nothing waits in the buffer while select sleeps), and a
    packet queued on the network thread itself skips the wake-up (the loop writes it on
    its next turn, since ``want_write`` is then true).
    """

    _READ_SIZE = 1 << 18

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._rbuf = b""
        self._rpos = 0
        self._rsock: object = None
        self._deferring: int | None = None  # thread id inside publish_group()
        self._deferred = False

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._rsock is not self._sock:  # a new connection: nothing of the old one
            self._rbuf, self._rpos, self._rsock = b"", 0, self._sock
        if self._rpos >= len(self._rbuf):
            data = super()._sock_recv(self._READ_SIZE)
            if not data:
                return data
            self._rbuf, self._rpos = data, 0
        start = self._rpos
        self._rpos = min(start + bufsize, len(self._rbuf))
        return self._rbuf[start : self._rpos]

    def loop_read(self, max_packets: int = 1) -> mqtt.MQTTErrorCode:
        rc = super().loop_read(max_packets)
        while rc == mqtt.MQTT_ERR_SUCCESS and self._sock is not None and self._buffered():
            rc = super().loop_read(max_packets)
        return rc

    def _buffered(self) -> bool:
        return self._rsock is self._sock and self._rpos < len(self._rbuf)

    def _packet_queue(self, command, packet, mid, qos, info=None) -> mqtt.MQTTErrorCode:
        thread, me = self._thread, threading.get_ident()
        on_loop = thread is not None and thread.ident == me
        if not on_loop and self._deferring != me:
            return super()._packet_queue(command, packet, mid, qos, info)
        self._out_packet.append({"command": command, "mid": mid, "qos": qos, "pos": 0,
                                 "to_process": len(packet), "packet": packet, "info": info})  # fmt: skip
        if not on_loop:
            self._deferred = True  # woken once when publish_group() ends
        return mqtt.MQTT_ERR_SUCCESS

    @contextmanager
    def publish_group(self) -> Iterator[None]:
        """Publish several messages from this thread with one wake-up of the network loop.

        paho writes a byte to its socket pair for every message queued off the network
        thread (a syscall, and the loop wakes, takes the GIL and writes one packet); the
        acks of a group are queued first and sent on one wake-up instead.
        """
        self._deferring, self._deferred = threading.get_ident(), False
        try:
            yield
        finally:
            self._deferring = None
            if self._deferred and self._sockpairW is not None:
                with suppress(BlockingIOError):
                    self._sockpairW.send(mqtt.sockpair_data)


class HubIngest:
    """Subscribes to every machine's topics and keeps the store and live state current."""

    def __init__(self, store: Store, broker: BrokerAddress, client_id: str = "hub-ingest",
                 share_group: str | None = None) -> None:  # fmt: skip
        self.store = store
        # with a share group, N processes split data and events (see _subscriptions)
        self.subscriptions = _subscriptions(share_group)
        self.broker = broker
        self.counters = IngestCounters()
        self.group_window_s = GROUP_WINDOW_S
        self.live: dict[str, LiveState] = {}
        # SimpleQueue: C-implemented, a fraction of Queue's cost per message
        self.inbox: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self.lock = threading.Lock()  # guards live state for readers (API, UI)
        # descriptors as stored: a replayed (retained) birth that matches costs nothing
        self.known: dict[str, MachineDescriptor] = {d.machine_id: d for d in store.machines()}
        # Called on the writer thread after each store transaction with the batches it
        # newly stored, each with the wall time it arrived, and the wall time the commit
        # returned (for sample-to-store latency and where it goes).
        self.on_stored: Callable[[list[tuple[SampleBatch, float]], float], None] | None = None
        client = _BufferedClient(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                 clean_session=True)  # fmt: skip
        broker.configure(client)  # credentials and TLS
        client.max_inflight_messages_set(1000)
        client.reconnect_delay_set(min_delay=1, max_delay=5)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_socket_open = _no_delay
        self.probe_every_s = PROBE_EVERY_S
        self.probe_topic = f"{topics.PREFIX}-hub/{re.sub(r'[+#/]', '_', client_id)}/probe"
        self._probe_seen = time.monotonic()
        self._probe_works = False  # armed by the first probe that comes back
        client.message_callback_add(self.probe_topic, self._on_probe)
        self.client = client
        self.writer = threading.Thread(target=self._write_loop, name="hub-writer", daemon=True)
        self._stopping = threading.Event()
        self.prober = threading.Thread(target=self._probe_loop, name="hub-probe", daemon=True)

    def start(self) -> None:
        self.writer.start()
        self.client.connect_async(self.broker.host, self.broker.port, self.broker.keepalive_s)
        self.client.loop_start()
        self.prober.start()

    def stop(self) -> None:
        self._stopping.set()
        if self.prober.is_alive():
            self.prober.join(timeout=10)
        self.client.disconnect()
        self.client.loop_stop()
        self.inbox.put(None)
        self.writer.join(timeout=10)

    # --- subscription check --------------------------------------------------------------

    def _on_probe(self, client, userdata, message) -> None:
        self._probe_seen = time.monotonic()
        self._probe_works = True

    def _probe_loop(self) -> None:
        while not self._stopping.wait(self.probe_every_s):
            if not self.client.is_connected():
                continue
            silent = time.monotonic() - self._probe_seen
            if self._probe_works and silent > 3 * self.probe_every_s:
                self._renew(silent)
            else:
                self.client.publish(self.probe_topic, b"", qos=0)

    def _renew(self, silent: float) -> None:
        """Drop the connection under paho's loop, which reconnects and resubscribes."""
        log.warning("hub: its probe has not come back for %.0f s on a live connection "
                    "(subscriptions lost at the broker?); reconnecting", silent)  # fmt: skip
        self.counters.renewals += 1
        self._probe_seen = time.monotonic()
        sock = self.client.socket()
        if isinstance(sock, socket.socket):  # the base class's shutdown: TLS state is paho's
            with suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    # --- MQTT thread: only queue ---------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if reason_code.is_failure:
            log.warning("hub: broker refused the connection: %s", reason_code)
            return
        for topic in self.subscriptions:
            client.subscribe(topic, qos=1)
        client.subscribe(self.probe_topic, qos=0)
        self._probe_seen = time.monotonic()

    def _on_message(self, client, userdata, message) -> None:
        arrived = time.time()
        self._probe_seen = time.monotonic()  # anything arriving proves the subscriptions
        topic, payload = message.topic, bytes(message.payload)
        self.inbox.put((topic, payload, arrived, _predecode(topic, payload)))

    # --- writer thread -------------------------------------------------------------------

    def _write_loop(self) -> None:
        while True:
            group = self._next_group()
            if group is None:
                return
            try:
                self._handle_group(group)
            except Exception:  # the hub must keep ingesting whatever one group did
                log.exception("hub: a message group failed")
                self.counters.rejected["internal error"] += len(group)

    def _next_group(self) -> list[_Item] | None:
        first = self.inbox.get()
        if first is None:
            return None
        group = [first]
        # take what has queued up while the last group was written: under load that is a
        # large group (one transaction), when idle the first message goes out at once
        deadline = time.monotonic() + self.group_window_s
        while len(group) < MAX_GROUP:
            try:
                wait = deadline - time.monotonic()
                item = self.inbox.get(timeout=wait) if wait > 0 else self.inbox.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self.inbox.put(None)
                break
            group.append(item)
        return group

    def _handle_group(self, group: list[_Item]) -> None:
        batches: list[tuple[SampleBatch, float]] = []
        births: dict[str, MachineDescriptor] = {}
        for topic, payload, arrived, decoded in group:
            self.counters.received += 1
            try:
                machine, kind = topics.parse(topic)
            except ValueError:
                self._reject("foreign topic", topic)
                continue
            try:
                if kind == "data":
                    batch = decoded if decoded is not None else codec.decode_batch(payload)
                    if batch.machine != machine:
                        raise codec.PayloadError("machine", None, f"{batch.machine!r} on {topic}")
                    batches.append((batch, arrived))
                elif kind == "event":
                    self._flush_births(births)  # an event may need its machine's birth
                    self._handle_event(machine, codec.decode_event(payload))
                elif kind == "birth":
                    descriptor = codec.decode_descriptor(payload)
                    if descriptor.machine_id != machine:
                        raise codec.PayloadError("machine_id", None, f"{descriptor.machine_id!r} "
                                                 f"on {topic}")  # fmt: skip
                    births[machine] = descriptor
                elif kind == "state":
                    self._live(machine).online = payload == topics.ONLINE
                else:
                    self._reject("unknown message kind", topic)
            except codec.PayloadError as exc:
                self._reject("malformed payload", f"{topic}: {exc}")
            except StoreError as exc:  # e.g. an event the store cannot keep
                self._reject("invalid message", f"{topic}: {exc}")
        self._flush_births(births)  # before the data: they declare the machines' signals
        if batches:
            self._store_batches(batches)

    def _store_batches(self, batches: list[tuple[SampleBatch, float]]) -> None:
        try:  # the whole group in one transaction; the store checks it in bulk first
            results = self.store.write_batches([b for b, _ in batches])
        except StoreError:  # rare: find the culprits, store the rest
            batches = self._valid(batches)
            if not batches:
                return
            results = self.store.write_batches([b for b, _ in batches])
        stored_at = time.time()
        if self.on_stored is not None:
            self.on_stored([b for b, new in zip(batches, results, strict=True) if new], stored_at)
        acks: dict[str, list[int]] = defaultdict(list)
        newest: dict[str, tuple[SampleBatch, float]] = {}
        for (batch, arrived), stored in zip(batches, results, strict=True):
            acks[batch.machine].append(batch.seq)
            if stored:
                self.counters.stored += 1
                self.counters.samples += batch.n_values
                self._count_live(batch, arrived)
                if batch.machine not in newest or _newest(batch) >= _newest(
                    newest[batch.machine][0]
                ):
                    newest[batch.machine] = (batch, arrived)
            else:
                self.counters.duplicates += 1
        for batch, arrived in newest.values():  # the live values of the newest batch only
            self._update_live(batch, arrived)
        with self.client.publish_group():
            for machine, seqs in acks.items():
                ack = codec.AckMessage(machine, codec.seq_ranges(seqs))
                self.client.publish(topics.ack(machine), codec.encode_ack(ack), qos=1)
                self.counters.acks_sent += 1

    def _valid(self, batches: list[tuple[SampleBatch, float]]) -> list[tuple[SampleBatch, float]]:
        good = []
        for batch, arrived in batches:
            try:
                self.store.validate(batch)
                good.append((batch, arrived))
            except StoreError as exc:
                self._reject("invalid batch", str(exc))
        return good

    def _flush_births(self, births: dict[str, MachineDescriptor]) -> None:
        """Store the group's new or changed descriptors, in one transaction if possible.

        Births are retained, so every (re)connect of the hub replays all of them: the
        unchanged ones cost nothing (a store transaction each made a 300-machine fleet's
        replay take tens of seconds, with the data waiting behind it).
        """
        changed = [d for m, d in births.items() if self.known.get(m) != d]
        births.clear()
        if not changed:
            return
        upsert_many = getattr(self.store, "upsert_machines", None)
        if upsert_many is not None:
            upsert_many(changed)
        else:
            for d in changed:
                self.store.upsert_machine(d)
        with self.lock:
            for d in changed:
                self.known[d.machine_id] = d
                self._live(d.machine_id).descriptor = d

    def _reject(self, reason: str, detail: str) -> None:
        self.counters.rejected[reason] += 1
        log.warning("hub: rejected (%s): %s", reason, detail)

    # --- live state ----------------------------------------------------------------------

    def _live(self, machine: str) -> LiveState:
        state = self.live.get(machine)
        if state is None:
            state = self.live[machine] = LiveState(machine)
        return state

    def _count_live(self, batch: SampleBatch, arrived: float) -> None:
        with self.lock:
            state = self._live(batch.machine)
            state.last_seen = max(state.last_seen, arrived)
            state.batches += 1
            state.samples += batch.n_values

    def _update_live(self, batch: SampleBatch, arrived: float) -> None:
        newest = _newest(batch)
        names = list(batch.columns)
        # one array of the last row, so that the finite check is one numpy call
        columns = batch.columns
        matrix = columns.matrix() if isinstance(columns, codec.ColumnBlock) else None
        if matrix is not None and matrix.shape == (len(names), len(batch.t)) and len(batch.t):
            last = matrix[:, -1]
        else:
            last = np.array([c[-1] if len(c) else np.nan for c in columns.values()], float)
        finite = np.isfinite(last)
        with self.lock:
            state = self._live(batch.machine)
            if newest < state.newest_sample:  # a resent old batch says nothing about now
                return
            state.newest_sample = newest
            state.latency_s = arrived - newest
            state.values.update(zip(compress(names, finite), last[finite].tolist(), strict=True))

    def _handle_event(self, machine: str, event: MachineEvent) -> None:
        # a machine's edge speaks only for that machine: its topic names it
        if event.machine_id != machine:
            raise codec.PayloadError("machine_id", None, f"{event.machine_id!r} on {machine!r}")
        if event.kind in ("alarm", "alarm_cleared") and event.alarm is None:
            raise codec.PayloadError("alarm", None, f"a {event.kind!r} event needs its alarm")
        self.store.write_event(event)
        if event.kind == "alarm" and event.alarm is not None:
            self.store.write_alarm(event.machine_id, event.alarm)
            if event.alarm.active:
                with self.lock:
                    self._live(event.machine_id).active_alarms.append(event.alarm)
        elif event.kind == "alarm_cleared" and event.alarm is not None:
            self._clear_alarm(event.machine_id, event.alarm, event.t)

    def _clear_alarm(self, machine: str, alarm: Alarm, t: float) -> None:
        """Clear every active alarm of ``machine`` with the cleared one's code and source.

        The clear names the condition (code + source), not one raise of it: a condition
        raised twice before its clear arrived (say across a link cut) is gone once.
        """
        cleared_at = alarm.cleared_at if alarm.cleared_at is not None else t
        code, source = str(alarm.code), alarm.source
        matches = [a for a in self.store.alarms(machine, active=True)
                   if str(a.alarm.code) == code and a.alarm.source == source]  # fmt: skip
        for stored in matches:
            self.store.update_alarm(stored.id, cleared_at=cleared_at)
        if not matches:
            log.info("hub: %s cleared alarm %s/%s that was not active", machine, code, source)
        with self.lock:
            state = self._live(machine)
            state.active_alarms = [a for a in state.active_alarms
                                   if not (str(a.code) == code and a.source == source)]  # fmt: skip


def _no_delay(client: mqtt.Client, userdata: object, sock: object) -> None:
    """TCP_NODELAY on the hub's socket: acks are small and several go out per group;
    with Nagle's algorithm each waits for the broker's (delayed, up to 40 ms) ACK of
    the one before."""
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _subscriptions(share_group: str | None) -> tuple[str, ...]:
    """The hub's topic filters; with ``share_group``, data and events as shared ones.

    ``$share/<group>/<filter>`` (MQTT 5; Mosquitto and EMQX honour it for 3.1.1 clients
    too) hands each message to one member of the group, so several ingest processes
    split the load and the store's idempotency on (machine, seq) covers resends that
    land on another member. Births and state stay plain: every process keeps every
    machine's descriptor and online flag (retained, few, idempotent to store).
    """
    if share_group is None:
        return topics.HUB_SUBSCRIPTIONS
    if not share_group or any(c in share_group for c in "/+#") or len(share_group) > 64:
        raise ValueError(f"share group {share_group!r}: 1-64 characters without / + #")
    split = {f"{topics.PREFIX}/+/data", f"{topics.PREFIX}/+/event"}
    return tuple(f"$share/{share_group}/{t}" if t in split else t
                 for t in topics.HUB_SUBSCRIPTIONS)  # fmt: skip


# topic, payload, arrival (wall clock), and the batch if decoded on arrival
_Item = tuple[str, bytes, float, SampleBatch | None]


def _predecode(topic: str, payload: bytes) -> SampleBatch | None:
    """Decode a data message on the network thread, or leave it to the writer.

    With large batches the writer spends most of a group inside DuckDB with the GIL
    released; decoding the next messages meanwhile, here, takes that work off the
    writer's path (a batch's latency is its wait for the writer). Small batches are
    left to the writer: their DuckDB time is too short to overlap, and a 300-machine
    fleet's 3,000 small messages/s decoded here made this thread the bottleneck (arrival
    p50 25 -> 75+ ms in benchmarks/ingest.py). Anything unusual (another kind of message,
    a payload that does not decode) goes to the writer undecoded, which decodes again and
    rejects with its log line and counter: nothing may raise on paho's thread.
    """
    if len(payload) < PREDECODE_MIN_BYTES or not topic.endswith(_DATA_SUFFIX):
        return None
    try:
        return codec.decode_batch(payload)
    except Exception:  # noqa: BLE001 - the writer decodes again and reports it
        return None


_DATA_SUFFIX = "/" + topics.data("m").rsplit("/", 1)[1]


def _newest(batch: SampleBatch) -> float:
    return float(batch.t[-1]) if len(batch.t) else float("-inf")
