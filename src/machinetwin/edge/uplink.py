"""The edge's uplink for one machine: buffer every batch, publish it, delete it on the hub's ack.

A batch is numbered (per-machine ``seq``), written to the :class:`.buffer.DurableBuffer`
and only then published (MQTT QoS 1). It leaves the buffer when the hub acknowledges
that it is *stored*; batches not acknowledged within ``resend_after_s`` are published
again, and after every reconnect the whole backlog is resent in order. The hub is
idempotent on (machine, seq), so resending is always safe: nothing is lost, and the
hub counts nothing twice.

Each machine has its own MQTT connection so that its will message (``offline`` on its
state topic) says exactly which machine disappeared.

A connection that is up but carries no acks while batches wait (``stall_after_s``) is
dropped and made again: a broker can lose a session's subscription (amqtt's session
clean-up races a fast reconnect of the same client id) and paho can hold its QoS 1
window full of messages whose PUBACKs never come; both look healthy to the client, and
a new connection resubscribes and starts a new window. The wait doubles while nothing
improves (up to ``STALL_MAX_S``), so a hub that is simply down costs a reconnect now
and then, not a storm.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt

from ..model import Alarm, AlarmCode, MachineDescriptor, MachineEvent, SampleBatch, Severity
from ..protocols import codec, topics
from ..protocols.broker import BrokerAddress
from .buffer import DurableBuffer, Shed

log = logging.getLogger(__name__)

RESEND_BATCH = 200  # pending batches republished per round
MAX_INFLIGHT = 200  # QoS 1 messages in flight per connection
STALL_MAX_S = 120.0  # the longest wait for an ack before a stalled connection is renewed


@dataclass
class UplinkStats:
    published: int = 0
    resent: int = 0
    acked: int = 0
    shed: int = 0
    connected: bool = False
    reconnects: int = 0
    last_ack_at: float = 0.0
    events_dropped: int = 0
    stall_reconnects: int = 0  # connections dropped because acks stopped coming


@dataclass
class MachineUplink:
    """MQTT connection, publishing and acknowledgement handling for one machine."""

    descriptor: MachineDescriptor
    buffer: DurableBuffer
    broker: BrokerAddress
    resend_after_s: float = 5.0
    on_alarm: Callable[[Alarm], None] | None = None
    stats: UplinkStats = field(default_factory=UplinkStats)
    stall_after_s: float = 15.0  # connected, batches pending, no ack this long: reconnect

    def __post_init__(self) -> None:
        machine = self.descriptor.machine_id
        if not topics.valid_machine_id(machine):
            raise ValueError(f"machine id {machine!r} cannot be used in MQTT topics")
        self.machine = machine
        self.lock = threading.Lock()  # the buffer is used from paho's thread and asyncio's
        self.sent_at: dict[int, float] = {}  # seq -> when last published
        self.resend_needed = threading.Event()
        self._progress_at = time.monotonic()  # last connect or ack: the link carries acks
        self._stall_wait = self.stall_after_s
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"edge-{machine}",
                             clean_session=True)  # fmt: skip
        self.broker.configure(client)  # credentials and TLS
        client.will_set(topics.state(machine), topics.OFFLINE, qos=1, retain=True)
        client.max_inflight_messages_set(MAX_INFLIGHT)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(min_delay=1, max_delay=5)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_socket_open = no_delay
        self.client = client

    # --- connection ----------------------------------------------------------------------

    def start(self) -> None:
        self.client.connect_async(self.broker.host, self.broker.port, self.broker.keepalive_s)
        self.client.loop_start()

    def stop(self) -> None:
        if self.stats.connected:
            info = self.client.publish(
                topics.state(self.machine), topics.OFFLINE, qos=1, retain=True
            )
            info.wait_for_publish(timeout=2.0)
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if reason_code.is_failure:
            log.warning("%s: broker refused the connection: %s", self.machine, reason_code)
            return
        self.stats.connected = True
        self.stats.reconnects += 1
        client.subscribe(topics.ack(self.machine), qos=1)
        client.publish(topics.birth(self.machine), codec.encode_descriptor(self.descriptor),
                       qos=1, retain=True)  # fmt: skip
        client.publish(topics.state(self.machine), topics.ONLINE, qos=1, retain=True)
        with self.lock:
            self.sent_at.clear()  # everything unacknowledged goes again, in order
        self._progress_at = time.monotonic()
        self.resend_needed.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None) -> None:
        self.stats.connected = False

    def _on_message(self, client, userdata, message) -> None:
        if message.topic != topics.ack(self.machine):
            return  # some brokers also hand out retained messages of other topics
        try:
            ack = codec.decode_ack(message.payload)
        except codec.PayloadError as exc:
            log.warning("%s: bad ack ignored: %s", self.machine, exc)
            return
        if ack.machine != self.machine:
            return
        with self.lock:
            removed = self.buffer.ack_ranges(self.machine, ack.ranges)
            for first, last in ack.ranges:
                for seq in range(first, last + 1):
                    self.sent_at.pop(seq, None)
        self.stats.acked += removed
        self.stats.last_ack_at = time.time()
        self._progress_at = time.monotonic()  # even a repeated ack: the subscription works
        self._stall_wait = self.stall_after_s

    # --- data ----------------------------------------------------------------------------

    def submit(self, batch: SampleBatch) -> None:
        """Number, buffer durably, then publish one batch."""
        with self.lock:
            batch.seq = self.buffer.next_seq(self.machine)
            payload = codec.encode_batch(batch)
            shed = self.buffer.append(self.machine, batch.seq, payload)
        if shed:
            self._report_shed(shed, batch)
        self._publish(batch.seq, payload)

    def _publish(self, seq: int, payload: bytes) -> None:
        if not self.stats.connected:
            return
        self.client.publish(topics.data(self.machine), payload, qos=1)
        with self.lock:
            self.sent_at[seq] = time.monotonic()
        self.stats.published += 1

    def submit_event(self, event: MachineEvent) -> None:
        if not self.stats.connected:
            self.stats.events_dropped += (
                1  # the state is in the samples; alarms are resent by the store
            )
            return
        self.client.publish(topics.event(self.machine), codec.encode_event(event), qos=1)

    def resend_due(self) -> int:
        """Publish pending batches never sent on this connection or not acknowledged in time."""
        if not self.stats.connected:
            return 0
        now = time.monotonic()
        count = 0
        with self.lock:
            pending = self.buffer.pending(RESEND_BATCH, machine=self.machine)
            due = [(seq, p) for _, seq, p in pending
                   if now - self.sent_at.get(seq, -1e9) > self.resend_after_s]  # fmt: skip
        for seq, payload in due:
            self._publish(seq, payload)
            count += 1
        self.stats.resent += count
        self.resend_needed.clear()
        if pending:
            self._renew_if_stalled(now)
        return count

    def _renew_if_stalled(self, now: float) -> None:
        """Drop a connection that carries no acks while batches wait (see the module doc)."""
        if not self.stats.connected or now - self._progress_at < self._stall_wait:
            return
        log.warning("%s: no ack for %.0f s with batches pending on a live connection; "
                    "reconnecting", self.machine, now - self._progress_at)  # fmt: skip
        self.stats.stall_reconnects += 1
        self._progress_at = now
        self._stall_wait = min(2 * self._stall_wait, STALL_MAX_S)
        sock = self.client.socket()
        if isinstance(sock, socket.socket):
            # shut down under paho's loop, which then reconnects as after any lost link;
            # the base class's shutdown, so a TLS socket's state is left to paho
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def _report_shed(self, shed: tuple[Shed, ...], batch: SampleBatch) -> None:
        lost = sum(s.count for s in shed)
        self.stats.shed += lost
        message = (f"edge buffer full: dropped the oldest {lost} batch(es) "
                   f"(seq {shed[0].first_seq}…{shed[-1].last_seq}) to keep the newest")  # fmt: skip
        log.error("%s: %s", self.machine, message)
        alarm = Alarm(AlarmCode.BUFFER_SHED, Severity.WARNING, message, "edge",
                      float(batch.t[-1]) if len(batch.t) else time.time())  # fmt: skip
        if self.on_alarm:
            self.on_alarm(alarm)
        self.submit_event(MachineEvent(self.machine, alarm.raised_at, "alarm", alarm=alarm))


def no_delay(client: mqtt.Client, userdata: object, sock: object) -> None:
    """TCP_NODELAY on the uplink's socket. With Nagle's algorithm the tail segment of a
    batch (a 40 kB PUBLISH is several segments) waits while the one before it is
    unacknowledged, and the peer delays its ACK by up to 40 ms: that was the to-hub
    p90 of ``benchmarks/ingest.py`` (~40 ms above the link's delay)."""
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def resend_loop(uplink: MachineUplink, period_s: float = 1.0) -> None:
    """Keep the backlog moving: after reconnects and for batches whose ack never came."""
    while True:
        uplink.resend_due()
        await asyncio.sleep(period_s)
