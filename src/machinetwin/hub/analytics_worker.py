"""The hub's analytics worker: condition monitoring in its own process, off ingest.

It subscribes to every machine's data, events and births on the broker, as ingest
does but as a separate client in a separate process, so that envelope spectra and
cycle statistics never hold ingest's GIL or its writer. One
:class:`..analytics.monitor.MachineMonitor` per machine turns the telemetry into
findings, which go back to the broker as the machine's events: alarms raised and
cleared (with their explanation) and ``diagnosis`` events with the latest values.
Ingest stores them like any event, so they reach the store, the live state, the
alarm list and the UI through the one path every alarm takes.

Analytics is advisory: when the worker falls behind, it drops the oldest data it
has not read yet (counted in the log) rather than slowing anything down, and a dead
worker loses diagnoses, never samples.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt

from ..analytics.bearings import BearingGeometry
from ..analytics.monitor import Finding, MachineMonitor, bearing_of
from ..protocols import codec, topics
from ..protocols.broker import BrokerAddress

log = logging.getLogger(__name__)

SUBSCRIPTIONS = (f"{topics.PREFIX}/+/data", f"{topics.PREFIX}/+/event", f"{topics.PREFIX}/+/birth")
QUEUE_LIMIT = 5000  # messages; beyond this the oldest unread data is dropped
# retained "online" once subscribed (outside the machines' prefix); "offline" as will
STATUS_TOPIC = "machinetwin/hub/analytics/state"


@dataclass
class AnalyticsEngine:
    """The worker's logic without the process or the broker: messages in, messages out."""

    bearing: BearingGeometry
    monitors: dict[str, MachineMonitor] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    findings: int = 0

    def handle(self, topic: str, payload: bytes) -> list[tuple[str, bytes]]:
        """One message from an edge; returns the (topic, payload) pairs to publish."""
        try:
            machine, kind = topics.parse(topic)
        except ValueError:
            return []
        try:
            if kind == "birth":
                d = codec.decode_descriptor(payload)
                self.names[machine] = f"{d.site} {d.name}".strip() or machine  # "Harbin VMC-1"
                return []
            if kind == "event":
                event = codec.decode_event(payload)
                return (
                    self._out(self._monitor(machine).on_event(event))
                    if event.kind == "program"
                    else []
                )
            if kind == "data":
                return self._out(self._monitor(machine).update(codec.decode_batch(payload)))
        except codec.PayloadError as exc:  # ingest counts and logs bad payloads; skip them here
            log.debug("analytics: %s: %s", topic, exc)
        return []

    def _monitor(self, machine: str) -> MachineMonitor:
        monitor = self.monitors.get(machine)
        if monitor is None:
            name = self.names.get(machine, machine)
            monitor = self.monitors[machine] = MachineMonitor(machine, self.bearing, name)
        return monitor

    def _out(self, findings: list[Finding]) -> list[tuple[str, bytes]]:
        self.findings += sum(f.alarm is not None for f in findings)
        for f in findings:
            if f.alarm is not None:
                state = "raised" if f.alarm.cleared_at is None else "cleared"
                log.info("analytics: %s %s %s: %s", f.machine, state, f.alarm.code, f.alarm.message)
        return [(topics.event(f.machine), codec.encode_event(f.event())) for f in findings]


def run_analytics(broker: BrokerAddress, bearing: BearingGeometry, stop: Callable[[], bool],
                  client_id: str = "hub-analytics") -> None:  # fmt: skip
    """The worker's main loop (in the worker process, or a thread in tests)."""
    engine = AnalyticsEngine(bearing)
    inbox: queue.Queue[tuple[str, bytes]] = queue.Queue(QUEUE_LIMIT)
    dropped = 0

    def on_message(client, userdata, message) -> None:  # noqa: ANN001 - paho's signature
        nonlocal dropped
        item = (message.topic, bytes(message.payload))
        while True:
            try:
                inbox.put_nowait(item)
                return
            except queue.Full:
                try:
                    inbox.get_nowait()  # the oldest unread message goes
                    dropped += 1
                except queue.Empty:
                    pass

    def on_connect(client, userdata, flags, reason_code, properties=None) -> None:  # noqa: ANN001
        if reason_code.is_failure:
            log.warning("analytics: broker refused the connection: %s", reason_code)
            return
        for topic in SUBSCRIPTIONS:
            client.subscribe(topic, qos=1)
        # after the SUBSCRIBEs on the same connection: whoever sees this, is heard
        client.publish(STATUS_TOPIC, b"online", qos=1, retain=True)

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    broker.configure(client)
    client.will_set(STATUS_TOPIC, b"offline", qos=1, retain=True)
    client.reconnect_delay_set(min_delay=1, max_delay=5)
    client.on_connect, client.on_message = on_connect, on_message
    client.connect_async(broker.host, broker.port, broker.keepalive_s)
    client.loop_start()
    reported = 0
    try:
        while not stop():
            try:
                topic, payload = inbox.get(timeout=0.2)
            except queue.Empty:
                continue
            for out_topic, out_payload in engine.handle(topic, payload):
                client.publish(out_topic, out_payload, qos=1)
            if dropped > reported:
                log.warning("analytics: behind, dropped %d messages so far", dropped)
                reported = dropped
    finally:
        client.publish(STATUS_TOPIC, b"offline", qos=1, retain=True).wait_for_publish(2)
        client.disconnect()
        client.loop_stop()


def _process_main(
    broker: BrokerAddress, bearing: BearingGeometry, stop: mp.synchronize.Event
) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    run_analytics(broker, bearing, stop.is_set)


class AnalyticsWorker:
    """The worker process: ``start()`` spawns it, ``stop()`` ends it (a thread with
    ``in_process=True``, for tests that want no second interpreter)."""

    def __init__(self, broker: BrokerAddress, bearing: BearingGeometry | None = None,
                 in_process: bool = False) -> None:  # fmt: skip
        if bearing is None:
            from ..machine import load_machine_config

            bearing = bearing_of(load_machine_config().spindle.bearing)
        self.broker, self.bearing, self.in_process = broker, bearing, in_process
        self._stop_flag = threading.Event()
        self._ctx = mp.get_context("spawn")  # a fresh interpreter: no copied threads or locks
        self._stop_event: Any = None  # the process's stop signal (made only for a process)
        self._runner: mp.process.BaseProcess | threading.Thread | None = None

    def start(self) -> None:
        if self.in_process:
            self._runner = threading.Thread(target=run_analytics, daemon=True, name="hub-analytics",
                                            args=(self.broker, self.bearing, self._stop_flag.is_set))  # fmt: skip
        else:
            self._stop_event = self._ctx.Event()
            self._runner = self._ctx.Process(target=_process_main, name="hub-analytics", daemon=True,
                                             args=(self.broker, self.bearing, self._stop_event))  # fmt: skip
        self._runner.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop_flag.set()
        if self._stop_event is not None:
            self._stop_event.set()
        runner = self._runner
        if runner is None:
            return
        runner.join(timeout_s)
        if isinstance(runner, mp.process.BaseProcess) and runner.is_alive():
            runner.terminate()
            runner.join(timeout_s)

    @property
    def alive(self) -> bool:
        return self._runner is not None and self._runner.is_alive()
