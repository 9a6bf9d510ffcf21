"""Alarms raised and cleared at the machine end up raised and cleared at the hub.

The model test drives ingest's event handling directly (a real DuckDB store, no
broker) through random raise/clear sequences; the end-to-end test sends the events
through the embedded MQTT broker as an edge does.
"""

from __future__ import annotations

import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from machinetwin.hub.broker import EmbeddedBroker
from machinetwin.hub.duckdb_store import DuckDBStore
from machinetwin.hub.ingest import HubIngest
from machinetwin.model import Alarm, AlarmCode, MachineEvent, Severity
from machinetwin.protocols import codec, topics
from machinetwin.protocols.broker import BrokerAddress
from waiting import wait_for

CODES = [AlarmCode.SPINDLE_OVERLOAD, AlarmCode.FOLLOWING_ERROR]
SOURCES = ["spindle", "x"]


def raised(machine: str, code: AlarmCode, source: str, t: float) -> MachineEvent:
    alarm = Alarm(code, Severity.FAULT, f"{code} on {source}", source, t)
    return MachineEvent(machine, t, "alarm", alarm=alarm)


def cleared(machine: str, code: AlarmCode, source: str, t: float, raised_at: float) -> MachineEvent:
    alarm = Alarm(code, Severity.FAULT, "", source, raised_at, cleared_at=t)
    return MachineEvent(machine, t, "alarm_cleared", alarm=alarm)


def active_keys(store: DuckDBStore, machine: str) -> set[tuple[str, str]]:
    return {(str(a.alarm.code), a.alarm.source) for a in store.alarms(machine, active=True)}


steps = st.lists(
    st.tuples(
        st.booleans(),
        st.sampled_from(CODES),
        st.sampled_from(SOURCES),
        st.sampled_from(["m1", "m2"]),
    ),  # fmt: skip
    min_size=1,
    max_size=25,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_active_alarms_follow_raises_and_clears(sequence) -> None:
    store = DuckDBStore(":memory:")
    hub = HubIngest(store, BrokerAddress("127.0.0.1", 1))  # never started: no broker needed
    model: dict[str, set[tuple[str, str]]] = {"m1": set(), "m2": set()}
    clear_times: dict[tuple[str, str, str], float] = {}
    for i, (is_raise, code, source, machine) in enumerate(sequence):
        t = 1000.0 + i
        if is_raise:
            hub._handle_event(machine, raised(machine, code, source, t))
            model[machine].add((str(code), source))
        else:
            hub._handle_event(machine, cleared(machine, code, source, t, t - 0.5))
            if (str(code), source) in model[machine]:
                clear_times[(machine, str(code), source)] = t
            model[machine].discard((str(code), source))
    for machine, expected in model.items():
        assert active_keys(store, machine) == expected
        live = hub.live.get(machine)
        live_keys = {(str(a.code), a.source) for a in live.active_alarms} if live else set()
        assert live_keys == expected
    # a cleared alarm carries the time of the clear that ended it, and only that one
    for a in store.alarms(active=False):
        key = (a.machine, str(a.alarm.code), a.alarm.source)
        assert a.alarm.cleared_at is not None and a.alarm.cleared_at > a.alarm.raised_at
        assert a.alarm.cleared_at <= clear_times[key]
    store.close()


def test_clear_of_another_machines_alarm_is_rejected() -> None:
    store = DuckDBStore(":memory:")
    hub = HubIngest(store, BrokerAddress("127.0.0.1", 1))
    hub._handle_event("m1", raised("m1", CODES[0], "spindle", 10.0))
    with pytest.raises(codec.PayloadError, match="machine_id"):
        hub._handle_event("m2", cleared("m1", CODES[0], "spindle", 11.0, 10.0))
    with pytest.raises(codec.PayloadError, match="needs its alarm"):
        hub._handle_event("m1", MachineEvent("m1", 11.0, "alarm_cleared"))
    assert active_keys(store, "m1") == {(str(CODES[0]), "spindle")}
    store.close()


def test_alarm_cleared_over_mqtt_clears_store_and_live_state(tmp_path: Path) -> None:
    broker = EmbeddedBroker()
    broker.start()
    store = DuckDBStore(tmp_path / "hub.duckdb")
    hub = HubIngest(store, BrokerAddress("127.0.0.1", broker.port))
    hub.start()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="edge-m1")
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        assert wait_for(lambda: hub.client.is_connected(), 10)
        time.sleep(0.3)  # the hub's subscriptions are in place after its CONNACK
        publish = [raised("m1", CODES[0], "spindle", 100.0), raised("m1", CODES[1], "x", 101.0),
                   cleared("m1", CODES[0], "spindle", 105.0, 100.0)]  # fmt: skip
        for event in publish:
            client.publish(topics.event("m1"), codec.encode_event(event), qos=1).wait_for_publish(5)
        assert wait_for(lambda: len(store.alarms("m1", active=False)) == 1, 10)
        (done,) = store.alarms("m1", active=False)
        assert (done.alarm.code, done.alarm.source, done.alarm.cleared_at) == (
            CODES[0], "spindle", 105.0)  # fmt: skip
        assert active_keys(store, "m1") == {(str(CODES[1]), "x")}
        with hub.lock:
            assert [(a.code, a.source) for a in hub.live["m1"].active_alarms] == [(CODES[1], "x")]
        assert [e.kind for e in store.events("m1")] == ["alarm", "alarm", "alarm_cleared"]
    finally:
        client.loop_stop()
        hub.stop()
        store.close()
        broker.stop()
