"""The analytics worker: a bearing defect in a virtual machine's vibration becomes a
stored alarm with its explanation, through the broker, in the worker's own process."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from machinetwin.analytics.monitor import bearing_of
from machinetwin.hub.analytics_worker import STATUS_TOPIC, AnalyticsEngine, AnalyticsWorker
from machinetwin.hub.broker import EmbeddedBroker
from machinetwin.hub.duckdb_store import DuckDBStore
from machinetwin.hub.ingest import HubIngest
from machinetwin.machine import load_machine_config
from machinetwin.machine.adapter import VirtualMachineAdapter, VirtualMachineSettings
from machinetwin.machine.faults import FaultSchedule, parse_fault
from machinetwin.machine.fleet_run import EXAMPLES
from machinetwin.model import AlarmCode
from machinetwin.protocols import codec, topics
from machinetwin.protocols.broker import BrokerAddress
from waiting import wait_for

RUN_S = 300.0  # five vibration windows (one a minute)
BEARING = bearing_of(load_machine_config().spindle.bearing)


def recorded(faults: tuple[str, ...], machine: str) -> list[tuple[str, bytes]]:
    """What an edge publishes for a virtual machine: birth, events and batches."""
    settings = VirtualMachineSettings(
        machine, "Harbin", [EXAMPLES / "pocket.ngc", EXAMPLES / "face.ngc"], seed=5, speedup=0.0,
        sample_rate_hz=10.0, batch_period_s=1.0, epoch=1.79e9,
        faults=FaultSchedule([parse_fault(f) for f in faults]),
    )  # fmt: skip
    vm = VirtualMachineAdapter(load_machine_config(), settings)
    out = [(topics.birth(machine), codec.encode_descriptor(vm.descriptor))]
    seq = 0
    while vm.sim.t < RUN_S:
        batch, events = vm.step()
        out += [(topics.event(machine), codec.encode_event(e)) for e in events]
        out.append((topics.data(machine), codec.encode_batch(dataclasses.replace(batch, seq=seq))))
        seq += 1
    return out


@pytest.fixture(scope="module")
def faulty() -> list[tuple[str, bytes]]:
    return recorded(("bearing_outer:0.8@0",), "harbin-1")


def run_engine(messages: list[tuple[str, bytes]]) -> list:
    engine = AnalyticsEngine(BEARING)
    events = []
    for topic, payload in messages:
        for out_topic, out_payload in engine.handle(topic, payload):
            assert out_topic == topic.rsplit("/", 1)[0] + "/event"  # the machine's own topic
            events.append(codec.decode_event(out_payload))
    return events


def test_engine_raises_an_explained_outer_race_alarm(faulty: list[tuple[str, bytes]]) -> None:
    events = run_engine(faulty)
    alarms = [e.alarm for e in events if e.kind == "alarm"]
    assert [a.code for a in alarms] == [AlarmCode.BEARING_DEFECT]
    message = alarms[0].message
    assert message.startswith("outer-race defect suspected on Harbin VMC-1 spindle")
    assert "BPFO 3.5" in message
    assert "3 of the last 3 vibration windows" in message
    diagnoses = [
        e.value for e in events if e.kind == "diagnosis" and "bearing.diagnosis" in e.value
    ]
    assert len(diagnoses) >= 4 and {d["bearing.diagnosis"] for d in diagnoses} == {"outer_race"}


def test_engine_stays_quiet_on_a_healthy_machine() -> None:
    events = run_engine(recorded((), "tianjin-1"))
    assert [e for e in events if e.kind in ("alarm", "alarm_cleared")] == []
    assert any(e.kind == "diagnosis" for e in events)  # it did look


def test_engine_skips_what_it_cannot_read() -> None:
    engine = AnalyticsEngine(BEARING)
    assert engine.handle(topics.data("m1"), b"\x00garbage") == []
    assert engine.handle("not/ours", b"") == []


def test_worker_process_alarm_reaches_the_store(
    tmp_path: Path, faulty: list[tuple[str, bytes]]
) -> None:
    broker = EmbeddedBroker()
    broker.start()
    address = BrokerAddress("127.0.0.1", broker.port)
    store = DuckDBStore(tmp_path / "hub.duckdb")
    ingest = HubIngest(store, address)
    ingest.start()
    worker = AnalyticsWorker(address, BEARING)  # a real second process
    worker.start()
    edge = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="edge-harbin-1")
    status: list[bytes] = []
    edge.on_message = lambda _c, _u, m: status.append(bytes(m.payload))
    edge.connect("127.0.0.1", broker.port)
    edge.subscribe(STATUS_TOPIC, qos=1)
    edge.loop_start()
    try:
        assert wait_for(lambda: ingest.client.is_connected(), 10)
        # the worker says when it listens (its interpreter takes seconds to import)
        assert wait_for(lambda: b"online" in status, 60), f"worker not online: {status}"
        for topic, payload in faulty:
            edge.publish(topic, payload, qos=1)
        stored = wait_for(lambda: store.alarms("harbin-1", active=True), 60)
        assert stored, f"no alarm stored; ingest: {ingest.counters}, events: {len(store.events())}"
        (alarm,) = store.alarms("harbin-1", active=True)
        assert alarm.alarm.code == AlarmCode.BEARING_DEFECT and "BPFO" in alarm.alarm.message
        with ingest.lock:
            live = ingest.live["harbin-1"].active_alarms
        assert [a.code for a in live] == [AlarmCode.BEARING_DEFECT]
        assert any(e.kind == "diagnosis" for e in store.events("harbin-1"))
        assert worker.alive
        worker.stop()
        assert not worker.alive
        assert wait_for(lambda: status[-1] == b"offline", 10)  # said so on its way out
    finally:
        worker.stop()
        edge.loop_stop()
        ingest.stop()
        store.close()
        broker.stop()
