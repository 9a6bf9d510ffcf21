"""OPC UA: the umati address space of our server, our client adapter against it, the mappings.

Real parts: asyncua's server and client over TCP, virtual machines. The address space is
read with a plain asyncua client (not our adapter) so that names are checked as a
stranger sees them.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from asyncua import Client, ua
from hypothesis import given, settings
from hypothesis import strategies as st

from machinetwin.edge.agent import build_adapters, load_edge_config
from machinetwin.errors import ConfigError
from machinetwin.model import Alarm, AlarmCode, Execution, MachineEvent, SampleBatch, Severity
from machinetwin.protocols.opcua import model as m
from machinetwin.protocols.opcua.client import (
    OpcUaClientAdapter,
    OpcUaSettings,
    carry_forward,
)
from machinetwin.protocols.opcua.server import MachineToolServer

sys.path.insert(0, str(Path(__file__).parent))
from test_mtconnect_support import Scripted, Tap, collect, series, virtual_machine  # noqa: E402

from machinetwin.hub.broker import free_port


def endpoint() -> str:
    return f"opc.tcp://127.0.0.1:{free_port()}/machinetwin"


# ------------------------------------------------------------ mappings


@given(st.sampled_from(list(Execution)))
def test_execution_survives_channel_and_program_state(execution: Execution) -> None:
    state, program = m.execution_to_opcua(execution)
    assert state in (m.CHANNEL_ACTIVE, m.CHANNEL_INTERRUPTED, m.CHANNEL_RESET)
    assert program in m.PROGRAM_STATES
    assert m.execution_from_opcua(state, program) == execution


def test_foreign_channel_states() -> None:
    assert m.execution_from_opcua(m.CHANNEL_RESET, None) == Execution.READY
    assert m.execution_from_opcua(7, "Running") is None  # not a ChannelState value
    assert m.execution_from_opcua(None, None) is None


@given(st.sampled_from(list(Severity)))
def test_severity_round_trip(severity: Severity) -> None:
    value = m.severity_to_opcua(severity)
    assert 1 <= value <= 1000 and m.severity_from_opcua(value) == severity


@given(st.integers(1, 1000))
def test_foreign_severity_is_monotonic(value: int) -> None:
    assert m.severity_from_opcua(value) <= m.severity_from_opcua(min(1000, value + 37))


@given(st.sampled_from([*list(Execution), None]), st.booleans())
def test_stacklight_shows_exactly_one_lamp(execution: Execution | None, alarm: bool) -> None:
    red, yellow, green = m.stacklight(execution, alarm)
    assert red + yellow + green == 1
    assert red == alarm and (green == (execution == Execution.ACTIVE and not alarm))


def test_unknown_error_codes_keep_their_code() -> None:
    assert m.alarm_code("MT-200") == (AlarmCode.SPINDLE_OVERLOAD, True)
    assert m.alarm_code("E4711") == (AlarmCode.DRIVE_FAULT, False)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 20), st.floats(-1e3, 1e3)), max_size=40),
    st.lists(st.one_of(st.just(np.nan), st.floats(-10, 10)), min_size=4, max_size=4),
)
def test_carry_forward_matches_a_plain_replay(
    notes: list[tuple[int, int, float]], before: list[float]
) -> None:
    """Each row holds, per signal, the newest notification at or before its time."""
    if not notes:
        return
    sig = np.array([n[0] for n in notes])
    t = np.array([float(n[1]) for n in notes])
    v = np.array([n[2] for n in notes])
    last = np.array(before, float)
    times, values = carry_forward(sig, t, v, last)
    assert list(times) == sorted(set(t.tolist()))
    state = list(before)
    expected = []
    for time_ in times:
        for s, tt, vv in notes:  # arrival order breaks ties: the later one wins
            if tt == time_:
                state[s] = vv
        expected.append(list(state))
    np.testing.assert_array_equal(values.T, np.array(expected))
    np.testing.assert_array_equal(last, np.array(expected[-1]))


def test_site_file_kind_opcua(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text('site = "Harbin"\n[[machines]]\nid = "hb-1"\nkind = "opcua"\n'
                    'url = "opc.tcp://10.0.0.9:4840/cnc"\ndevice = "DMU50"\n')  # fmt: skip
    (adapter,) = build_adapters(load_edge_config(path))
    assert isinstance(adapter, OpcUaClientAdapter)
    assert adapter.settings.machine == "DMU50" and adapter.descriptor.site == "Harbin"
    path.write_text('site = "s"\n[[machines]]\nid = "m1"\nkind = "opcua"\nurl = "http://x"\n')
    with pytest.raises(ConfigError, match=r"machines\.m1\.url: expected opc\.tcp://"):
        build_adapters(load_edge_config(path))


def test_secure_policy_without_certificate_is_refused() -> None:
    with pytest.raises(ConfigError, match="needs the client's certificate"):
        OpcUaClientAdapter(OpcUaSettings("opc.tcp://h:4840", "m1", policy="Basic256Sha256_Sign"))


# ------------------------------------------------------------ server address space


async def _browse_names(node) -> dict[str, object]:
    children = await node.get_children()
    return {(await c.read_browse_name()).to_string(): c for c in children}


def test_server_exposes_machine_tool_with_spec_browse_names(tmp_path: Path) -> None:
    url = endpoint()
    vm, config = virtual_machine(tmp_path, "vmc1")

    async def scenario() -> dict:
        async with MachineToolServer([vm], url).serving(), Client(url) as c:
            ns = {k: await c.get_namespace_index(u) for k, u in m.NAMESPACES.items()}
            mt, di, ia = ns[m.MT], ns[m.DI], ns[m.IA]
            machines = await c.nodes.objects.get_child(f"{ns[m.MACHINERY]}:Machines")
            machine = (await machines.get_children())[0]
            typedef = await c.get_node(await machine.read_type_definition()).read_browse_name()
            top = set(await _browse_names(machine))
            channel = await machine.get_child([f"{mt}:Monitoring", f"{mt}:Channel1"])
            chan_names = set(await _browse_names(channel))
            chan_type = await c.get_node(await channel.read_type_definition()).read_browse_name()
            light = await machine.get_child([f"{mt}:Monitoring", f"{mt}:Stacklight"])
            lamps = await light.get_children()
            ident = await machine.get_child(f"{di}:Identification")
            serial = await (await ident.get_child(f"{di}:SerialNumber")).read_value()
            await asyncio.sleep(1.0)  # the program is running by now
            state = await channel.get_child(f"{mt}:ChannelState")
            prog = await machine.get_child(
                [f"{mt}:Production", f"{mt}:ActiveProgram", f"{mt}:Name"])  # fmt: skip
            tools = await machine.get_child([f"{mt}:Equipment", f"{mt}:Tools"])
            wear = await (await tools.get_child(
                [f"{mt}:T1", f"{mt}:ToolLife", f"{mt}:{m.TOOL_LIFE_ENTRY}"])).read_value()  # fmt: skip
            return dict(mt=mt, di=di, ia=ia, typedef=typedef, top=top, chan=chan_names,
                        chan_type=chan_type, lamps=len(lamps), serial=serial,
                        state=await state.read_value(), program=await prog.read_value(),
                        tools=len(await tools.get_children()), wear=wear)  # fmt: skip

    r = asyncio.run(scenario())
    mt, di = r["mt"], r["di"]
    assert r["typedef"] == ua.QualifiedName("MachineToolType", mt)
    assert {f"{di}:Identification", f"{mt}:Monitoring", f"{mt}:Production", f"{mt}:Equipment",
            f"{mt}:Notification"} <= r["top"]  # fmt: skip
    assert {f"{mt}:ChannelState", f"{mt}:ChannelMode", f"{mt}:FeedOverride",
            f"{mt}:RapidOverride"} <= r["chan"]  # fmt: skip
    assert r["chan_type"] == ua.QualifiedName("ChannelMonitoringType", mt)
    assert r["lamps"] >= 4  # StacklightMode and three lamps
    assert r["serial"] == "vmc1"
    assert r["state"] == m.CHANNEL_ACTIVE and r["program"] == "short.ngc"
    assert r["tools"] == len(config.tools) and r["wear"] >= 0.0


# ------------------------------------------------------------ client adapter


def test_client_reads_our_server_into_batches_that_match_the_machine(tmp_path: Path) -> None:
    url = endpoint()
    vm, _ = virtual_machine(tmp_path, "vmc1")
    tap = Tap(vm)
    client = OpcUaClientAdapter(OpcUaSettings(url, "vmc1-opc", machine="vmc1"))

    async def scenario() -> list:
        async with MachineToolServer([tap], url).serving():
            return await collect(client, 4.0)

    items = asyncio.run(scenario())
    batches = [i for i in items if isinstance(i, SampleBatch)]
    assert len(batches) >= 15  # every ~100 ms while connected
    assert all(b.machine == "vmc1-opc" for b in batches)
    t, x = series(items, "x.pos")
    # what the server showed: each batch's newest finite x, stamped with the batch's last
    # time (one write per batch; a batch without a finite x writes none)
    shown = [(b.t[-1], b.columns["x.pos"][np.isfinite(b.columns["x.pos"])])
             for b in tap.items if isinstance(b, SampleBatch) and len(b)]  # fmt: skip
    w_t = np.array([t_end for t_end, finite in shown if len(finite)])
    w_x = np.array([finite[-1] for _, finite in shown if len(finite)])
    assert np.isfinite(x).sum() > 0.8 * len(x)
    for row_t, row_x in zip(t, x, strict=True):
        if np.isnan(row_x):  # before the machine's first value: unknown, not a default 0
            continue
        # timestamps cross the wire as datetimes (1 µs): a row may read up to 1 µs early
        k = np.searchsorted(w_t, row_t + 1e-6, side="right")
        # the newest value written at or before the row (sampling may skip some writes)
        assert row_x in w_x[max(0, k - 5) : k], (row_t, row_x)
    assert np.nanmax(x) - np.nanmin(x) > 1.0  # the machine moved
    events = [i for i in items if isinstance(i, MachineEvent)]
    assert any(e.kind == "program" and e.value["name"] == "short.ngc" for e in events)
    assert "ACTIVE" in [e.value for e in events if e.kind == "execution"]
    execution = np.concatenate(
        [b.columns["execution"] for b in batches if "execution" in b.columns]
    )
    assert set(execution.tolist()) <= {float(e) for e in Execution}


def test_alerts_travel_as_alert_type_events(tmp_path: Path) -> None:
    url = endpoint()
    now = time.time()
    raised = Alarm(AlarmCode.SPINDLE_OVERLOAD, Severity.FAULT, "spindle load 132 %", "spindle",
                   now)  # fmt: skip
    cleared = Alarm(raised.code, raised.severity, raised.message, "spindle", now, now + 1.0)
    machine = Scripted("m9", [])
    client = OpcUaClientAdapter(OpcUaSettings(url, "m9"))

    async def scenario() -> list:
        server = MachineToolServer([machine], url)
        async with server.serving():
            nodes = server.machines["m9"]
            task = asyncio.create_task(collect(client, 3.5))
            await asyncio.sleep(2.0)  # subscribed by now
            await server.handle_event(nodes, MachineEvent("m9", now, "alarm", alarm=raised))
            await server.handle_event(nodes, MachineEvent("m9", now + 1, "alarm_cleared",
                                                          alarm=cleared))  # fmt: skip
            return await task

    events = [i for i in asyncio.run(scenario()) if isinstance(i, MachineEvent)]
    alarms = [e for e in events if e.kind in ("alarm", "alarm_cleared")]
    assert [e.kind for e in alarms] == ["alarm", "alarm_cleared"]
    up, down = alarms[0].alarm, alarms[1].alarm
    assert (up.code, up.severity, up.message, up.source) == (
        raised.code, raised.severity, raised.message, "spindle")  # fmt: skip
    assert abs(up.raised_at - now) < 1e-3 and up.active
    assert down.code == raised.code and not down.active


@settings(max_examples=80, deadline=None)
@given(st.lists(st.lists(st.one_of(st.just(np.nan), st.just(np.inf), st.floats(-1e6, 1e6)),
                         min_size=3, max_size=3), min_size=1, max_size=6))  # fmt: skip
def test_last_values_is_each_columns_newest_finite_value(cols: list[list[float]]) -> None:
    columns = {f"s{k}": np.array(c) for k, c in enumerate(cols)}
    names = [*columns, "absent"]
    expected = {n: next(x for x in reversed(c) if np.isfinite(x))
                for n, c in zip(columns, cols, strict=True) if any(np.isfinite(c))}  # fmt: skip
    assert m.last_values(columns, names) == expected


def test_machines_of_one_server_share_one_session_and_each_gets_its_own_data() -> None:
    """Three machines on one server, three adapters: one session, one subscription, and
    every adapter's batches carry its own machine's values (routed by client handle)."""
    from machinetwin.model import MachineDescriptor
    from machinetwin.protocols.opcua import session as shared

    url = endpoint()

    class Constant:
        """A machine whose x.pos is in its own thousand (the routing is then visible)."""

        def __init__(self, k: int) -> None:
            self.k, self.closed = k, False
            self.descriptor = MachineDescriptor(f"m{k}", f"m{k}", "lab")

        async def batches(self):
            while not self.closed:
                await asyncio.sleep(0.1)
                t = time.time() + np.arange(3) * 0.01
                x = 1000.0 * self.k + (t * 100) % 1000  # changes (notified), says whose
                yield SampleBatch(self.descriptor.machine_id, t, {"x.pos": x})

        async def command(self, command) -> None:
            return None

        async def close(self) -> None:
            self.closed = True

    machines = [Constant(k) for k in range(3)]
    clients = [OpcUaClientAdapter(OpcUaSettings(url, f"c{k}", machine=f"m{k}")) for k in range(3)]

    async def scenario() -> tuple[list[list], int, int]:
        server = MachineToolServer(machines, url)
        async with server.serving():
            running = asyncio.gather(*(collect(c, 3.0) for c in clients))
            await asyncio.sleep(2.5)  # all subscribed by now
            subscriptions = len(server.server.iserver.subscription_service.subscriptions)
            results = await running
        return list(results), subscriptions, len(shared._SESSIONS)

    results, subscriptions, open_after = asyncio.run(scenario())
    assert subscriptions == 1  # one subscription on the server for all three machines
    assert open_after == 0  # the last adapter closed the shared session
    for k, items in enumerate(results):
        _, x = series(items, "x.pos")
        finite = x[np.isfinite(x)]
        owners = set((finite // 1000).tolist())
        assert len(finite) >= 5 and owners == {float(k)}, (k, owners)
        assert clients[k].sessions == 1 and clients[k].notifications > 0


def test_an_alarm_raised_before_the_client_subscribed_arrives_by_condition_refresh() -> None:
    """Active alarms are retained conditions: a client that connects later (or again after
    a restart) learns them through ConditionRefresh, once, and then their clearing."""
    url = endpoint()
    now = time.time()
    raised = Alarm(AlarmCode.TOOL_BREAKAGE, Severity.CRITICAL, "T2 broken", "spindle", now)
    other = Alarm(AlarmCode.COOLANT_FAILURE, Severity.WARNING, "low", "coolant", now)
    machines = [Scripted("m1", []), Scripted("m2", [])]
    clients = [OpcUaClientAdapter(OpcUaSettings(url, f"c{k}", machine=f"m{k}")) for k in (1, 2)]

    async def scenario() -> list[list]:
        server = MachineToolServer(machines, url)
        async with server.serving():
            await server.handle_event(server.machines["m1"], MachineEvent("m1", now, "alarm",
                                                                          alarm=raised))  # fmt: skip
            await server.handle_event(server.machines["m2"], MachineEvent("m2", now, "alarm",
                                                                          alarm=other))  # fmt: skip
            task = asyncio.gather(*(collect(c, 3.5) for c in clients))
            await asyncio.sleep(2.5)  # both subscribed and refreshed by now
            cleared = Alarm(raised.code, raised.severity, raised.message, "spindle", now, now + 1)
            await server.handle_event(server.machines["m1"], MachineEvent(
                "m1", now + 1, "alarm_cleared", alarm=cleared))  # fmt: skip
            return list(await task)

    first, second = asyncio.run(scenario())
    kinds = [[(e.kind, e.alarm.code) for e in items if isinstance(e, MachineEvent)
              and e.kind in ("alarm", "alarm_cleared")] for items in (first, second)]  # fmt: skip
    assert kinds[0] == [("alarm", raised.code), ("alarm_cleared", raised.code)]
    assert kinds[1] == [("alarm", other.code)]  # its own machine's, once
    up = next(e.alarm for e in first if isinstance(e, MachineEvent) and e.kind == "alarm")
    assert (up.severity, up.message, up.source) == (raised.severity, raised.message, "spindle")
    assert abs(up.raised_at - now) < 1e-3


def test_types_declare_their_members_and_enumerations_as_a_generic_client_sees_them() -> None:
    """Browsing the types (not an instance): MachineToolType's components with their
    ModellingRules, ChannelMonitoringType's ChannelState/ChannelMode typed by the
    enumeration DataTypes (names from EnumValues), and the instances use those types."""
    url = endpoint()

    async def rule(node) -> str | None:
        refs = await node.get_referenced_nodes(refs=ua.ObjectIds.HasModellingRule)
        return (await refs[0].read_browse_name()).Name if refs else None

    async def scenario() -> dict:
        async with MachineToolServer([Scripted("m1", [])], url).serving(), Client(url) as c:
            mt = await c.get_namespace_index(m.NS_MACHINE_TOOL)
            types = c.get_node(ua.ObjectIds.BaseObjectType)
            machine_type = await types.get_child(f"{mt}:MachineToolType")
            members = {(await n.read_browse_name()).Name: await rule(n)
                       for n in await machine_type.get_children()}  # fmt: skip
            channel_type = await types.get_child([f"{mt}:ElementMonitoringType",
                                                  f"{mt}:ChannelMonitoringType"])  # fmt: skip
            out: dict = {"members": members}
            for name in ("ChannelState", "ChannelMode"):
                decl = await channel_type.get_child(f"{mt}:{name}")
                dtype = c.get_node(await decl.read_data_type())
                values = await (await dtype.get_child("0:EnumValues")).read_value()
                out[name] = ((await dtype.read_browse_name()).Name, await rule(decl),
                             [v.DisplayName.Text for v in values], dtype.nodeid)  # fmt: skip
            machines = await c.nodes.objects.get_child(
                f"{await c.get_namespace_index(m.NS_MACHINERY)}:Machines")  # fmt: skip
            machine = (await machines.get_children())[0]
            channel = await machine.get_child([f"{mt}:Monitoring", f"{mt}:{m.CHANNEL}"])
            out["instance"] = {name: await (await channel.get_child(f"{mt}:{name}")).read_data_type()
                               for name in ("ChannelState", "ChannelMode")}  # fmt: skip
            return out

    r = asyncio.run(scenario())
    assert {k: r["members"][k] for k in ("Identification", "Monitoring", "Production",
                                         "Notification", "Equipment")} == {
        "Identification": "Mandatory", "Monitoring": "Mandatory", "Production": "Mandatory",
        "Notification": "Mandatory", "Equipment": "Optional"}  # fmt: skip
    assert r["ChannelState"][:3] == (
        "ChannelState",
        "Mandatory",
        ["Active", "Interrupted", "Reset"],
    )
    assert r["ChannelMode"][:2] == ("ChannelMode", "Mandatory")
    assert r["ChannelMode"][2][:3] == ["Automatic", "MdaMdi", "JogManual"]
    assert r["instance"] == {
        "ChannelState": r["ChannelState"][3],
        "ChannelMode": r["ChannelMode"][3],
    }


def test_an_alert_is_acknowledged_by_its_event_id_and_stays_active() -> None:
    """Acknowledge (OPC 10000-9) on the condition object: a new event with AckedState
    True and the comment, still active and retained; a stale EventId or a second
    acknowledgement is refused with the standard's status codes."""
    from machinetwin.protocols.opcua.client import _alert_type, alert_filter, find_machine, resolve

    url = endpoint()
    now = time.time()
    raised = Alarm(AlarmCode.SPINDLE_OVERLOAD, Severity.FAULT, "load 130 %", "spindle", now)

    class Events:
        def __init__(self) -> None:
            self.items: list[dict] = []

        def event_notification(self, event) -> None:
            self.items.append(event.get_event_props_as_fields_dict())

    async def scenario() -> tuple[list[dict], list[str]]:
        server = MachineToolServer([Scripted("m1", [])], url)
        async with server.serving(), Client(url) as c:
            await server.handle_event(server.machines["m1"],
                                      MachineEvent("m1", now, "alarm", alarm=raised))  # fmt: skip
            events = Events()
            sub = await c.create_subscription(100, events)
            alert = await _alert_type(c)
            assert alert is not None
            evfilter = alert_filter(alert)
            evfilter.SelectClauses.append(ua.SimpleAttributeOperand(
                TypeDefinitionId=ua.NodeId(ua.ObjectIds.ConditionType),
                AttributeId=ua.AttributeIds.NodeId))  # the ConditionId  # fmt: skip
            evfilter.SelectClauses.append(ua.SimpleAttributeOperand(
                TypeDefinitionId=ua.NodeId(ua.ObjectIds.BaseEventType),
                BrowsePath=[ua.QualifiedName("EventId")], AttributeId=ua.AttributeIds.Value))  # fmt: skip
            evfilter.SelectClauses.append(ua.SimpleAttributeOperand(
                TypeDefinitionId=ua.NodeId(ua.ObjectIds.AlarmConditionType),
                BrowsePath=[ua.QualifiedName("AckedState"), ua.QualifiedName("Id")],
                AttributeId=ua.AttributeIds.Value))  # fmt: skip
            messages = (await resolve(c, await find_machine(c, "m1")))["messages"]
            await sub.subscribe_events(c.get_node(messages), alert, evfilter=evfilter)
            await c.get_node(ua.ObjectIds.ConditionType).call_method(
                ua.NodeId(ua.ObjectIds.ConditionType_ConditionRefresh),
                ua.Variant(sub.subscription_id, ua.VariantType.UInt32))  # fmt: skip
            await asyncio.sleep(0.5)
            first = events.items[-1]
            condition = c.get_node(first["NodeId"].Value)
            ack = ua.NodeId(ua.ObjectIds.AcknowledgeableConditionType_Acknowledge)
            comment = ua.Variant(ua.LocalizedText("seen, tool change planned"))
            refusals = []
            await condition.call_method(ack, first["EventId"], comment)
            await asyncio.sleep(0.5)
            for event_id in (first["EventId"], events.items[-1]["EventId"]):
                try:
                    await condition.call_method(ack, event_id, comment)
                except ua.UaStatusCodeError as e:
                    refusals.append(type(e).__name__)
            return events.items, refusals

    items, refusals = asyncio.run(scenario())
    before, after = items[-2], items[-1]
    assert before["AckedState/Id"].Value is False and after["AckedState/Id"].Value is True
    assert after["ActiveState/Id"].Value is True  # acknowledged, still active
    assert after["NodeId"].Value == before["NodeId"].Value  # the same condition
    assert after["EventId"].Value != before["EventId"].Value
    assert refusals == ["BadEventIdUnknown", "BadConditionBranchAlreadyAcked"]
