"""OPC UA interoperability: implementations we did not write, against ours.

- node-opcua (an independent OPC UA stack, from npm) browses our server's Machines folder,
  checks the MachineTool's type and BrowseNames, reads values and subscribes.
- our client adapter against a server built here with plain asyncua from the
  specification's names and node ids (MachineToolType i=13, MonitoringType i=14,
  ProductionActiveProgramType i=32, ChannelState i=64 of the MachineTool namespace; the
  others numbered here), not with our server code: the channel and spindle have other
  names than ours, the machine is a vendor subtype, alerts carry a foreign error code.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from asyncua import Server, ua

from machinetwin.model import AlarmCode, Execution, MachineEvent, SampleBatch, Severity
from machinetwin.protocols.opcua import model as m
from machinetwin.protocols.opcua.client import OpcUaClientAdapter, OpcUaSettings
from machinetwin.protocols.opcua.server import MachineToolServer

sys.path.insert(0, str(Path(__file__).parent))
from test_mtconnect_support import collect, virtual_machine  # noqa: E402

from machinetwin.hub.broker import free_port

NODE_OPCUA = "node-opcua@2.182.2"  # the version the test was written against
NODE_CACHE = Path(os.environ.get("MACHINETWIN_NODE_OPCUA",
                                 Path.home() / ".cache" / "machinetwin" / "node-opcua"))  # fmt: skip
SCRIPT = Path(__file__).with_name("opcua_node_client.js")


@pytest.fixture(scope="module")
def node_modules() -> Path:
    """node-opcua's node_modules, installed with npm into the cache folder if missing."""
    if shutil.which("node") is None:
        pytest.skip("node (Node.js) is not installed: needed to run node-opcua")
    modules = NODE_CACHE / "node_modules"
    if not (modules / "node-opcua").is_dir():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("npm is not installed: cannot install node-opcua")
        NODE_CACHE.mkdir(parents=True, exist_ok=True)
        done = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix",
                               str(NODE_CACHE), NODE_OPCUA], capture_output=True, text=True,
                              timeout=900)  # fmt: skip
        if done.returncode != 0 or not (modules / "node-opcua").is_dir():
            pytest.skip(f"npm install {NODE_OPCUA} failed: {done.stderr.strip()[-400:]}")
    return modules


@pytest.mark.service
@pytest.mark.slow
def test_node_opcua_browses_reads_and_subscribes_our_server(tmp_path: Path,
                                                            node_modules: Path) -> None:  # fmt: skip
    url = f"opc.tcp://127.0.0.1:{free_port()}/machinetwin"
    vm, _ = virtual_machine(tmp_path, "vmc1")

    async def scenario() -> tuple[int, str, str]:
        async with MachineToolServer([vm], url).serving():
            await asyncio.sleep(1.0)  # the machine is cutting by now
            proc = await asyncio.create_subprocess_exec(
                "node", str(SCRIPT), url, "vmc1", "6", env=dict(os.environ, NODE_PATH=str(node_modules)),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)  # fmt: skip
            out, err = await asyncio.wait_for(proc.communicate(), 120)
            return proc.returncode or 0, out.decode(), err.decode()

    code, out, err = asyncio.run(scenario())
    assert code == 0, err[-2000:]
    # node-opcua logs warnings to stdout too (e.g. its RSA PKCS#1 notice): the result is
    # the last line that is a JSON object.
    results = [line for line in out.splitlines() if line.startswith("{")]
    assert results, f"no JSON result from the node-opcua client:\n{out[-2000:]}"
    r = json.loads(results[-1])
    ns = r["ns"]
    assert r["type"] == {"ns": ns["mt"], "name": "MachineToolType"}
    assert {f"{ns['di']}:Identification", f"{ns['mt']}:Monitoring", f"{ns['mt']}:Production",
            f"{ns['mt']}:Equipment", f"{ns['mt']}:Notification"} <= set(r["top"])  # fmt: skip
    v = r["values"]
    assert v["serial"] == "vmc1" and v["program"] == "short.ngc"
    assert v["channelState"] == m.CHANNEL_ACTIVE and v["programState"] == "Running"
    assert v["channelMode"] == 0 and v["feedOverride"] == 100
    changes = np.array([c for c in r["changes"] if c[0] is not None])
    # ~10 per second at 100 ms for 6 s: at least 10 even when the shared CPU starves the writer
    assert len(changes) >= 10
    assert np.all(np.diff(changes[:, 0]) > 0)  # source timestamps in order
    assert np.ptp(changes[:, 1]) > 1.0  # x moved while node-opcua watched


async def foreign_server(url: str) -> tuple[Server, dict]:
    """A MachineTool built from the specification with plain asyncua (not our server)."""
    s = Server()
    await s.init()
    s.set_endpoint(url)
    s.set_server_name("ForeignCNC")
    vendor = await s.register_namespace("urn:example:vendor-cnc")
    mt = await s.register_namespace(m.NS_MACHINE_TOOL)
    machinery = await s.register_namespace(m.NS_MACHINERY)
    base = s.nodes.base_object_type
    ids = itertools.count(6000)

    def nid() -> ua.NodeId:
        return ua.NodeId(next(ids), vendor)

    async def otype(parent, ident: int, name: str, ns: int = mt):
        return await parent.add_object_type(ua.NodeId(ident, ns), ua.QualifiedName(name, ns))

    machine_type = await otype(base, 13, "MachineToolType")
    vendor_type = await otype(machine_type, 1, "VendorMillType", vendor)
    monitoring_type = await otype(base, 14, "MonitoringType")
    element = await otype(base, 1015, "ElementMonitoringType")
    channel_type = await otype(element, 1016, "ChannelMonitoringType")
    working = await otype(element, 1017, "WorkingUnitMonitoringType")
    spindle_type = await otype(working, 1018, "SpindleMonitoringType")
    program_type = await otype(base, 32, "ProductionActiveProgramType")
    alert = await s.create_custom_event_type(mt, "AlertType", ua.ObjectIds.AlarmConditionType,
                                             [("ErrorCode", ua.VariantType.String)])  # fmt: skip
    folder = await s.nodes.objects.add_folder(ua.NodeId(1001, machinery),
                                              ua.QualifiedName("Machines", machinery))  # fmt: skip
    other = await folder.add_object(
        nid(), ua.QualifiedName("NotAMachine", vendor)
    )  # must be skipped by type
    assert other is not None
    mill = await folder.add_object(ua.NodeId(5000, vendor), ua.QualifiedName("DMU-50", vendor),
                                   vendor_type.nodeid)  # fmt: skip
    monitoring = await mill.add_object(ua.NodeId(5001, vendor), ua.QualifiedName("Monitoring", mt),
                                       monitoring_type.nodeid)  # fmt: skip
    channel = await monitoring.add_object(ua.NodeId(5002, vendor), ua.QualifiedName("NC_Channel_1", mt),
                                          channel_type.nodeid)  # fmt: skip
    spindle = await monitoring.add_object(ua.NodeId(5003, vendor), ua.QualifiedName("MainSpindle", mt),
                                          spindle_type.nodeid)  # fmt: skip
    nodes = {"alert_type": alert}
    for key, parent, name, value, vt in (
        ("state", channel, "ChannelState", m.CHANNEL_RESET, ua.VariantType.Int32),
        ("mode", channel, "ChannelMode", 1, ua.VariantType.Int32),
        ("feed", channel, "FeedOverride", 80.0, ua.VariantType.Double),
        ("spindle", spindle, "Override", 95.0, ua.VariantType.Double),
    ):
        nodes[key] = await parent.add_variable(
            nid(), ua.QualifiedName(name, mt), ua.Variant(value, vt)
        )
    production = await mill.add_object(nid(), ua.QualifiedName("Production", mt))
    program = await production.add_object(nid(), ua.QualifiedName("ActiveProgram", mt),
                                          program_type.nodeid)  # fmt: skip
    nodes["program"] = await program.add_property(nid(), ua.QualifiedName("Name", mt), "O1234")
    notification = await mill.add_object(nid(), ua.QualifiedName("Notification", mt))
    messages = await notification.add_object(nid(), ua.QualifiedName("Messages", mt))
    await messages.write_attribute(ua.AttributeIds.EventNotifier, ua.DataValue(
        ua.Variant(ua.EventNotifier.SubscribeToEvents, ua.VariantType.Byte)))  # fmt: skip
    nodes["alerts"] = await s.get_event_generator(alert, messages)
    return s, nodes


def test_our_client_reads_a_machine_tool_server_we_did_not_write() -> None:
    url = f"opc.tcp://127.0.0.1:{free_port()}/vendor"
    client = OpcUaClientAdapter(OpcUaSettings(url, "vendor-mill", machine="DMU-50", retry_s=0.3))

    async def scenario() -> list:
        server, nodes = await foreign_server(url)
        await server.start()
        try:
            task = asyncio.create_task(collect(client, 5.0))
            await asyncio.sleep(2.5)  # connected and subscribed
            await nodes["feed"].write_value(ua.Variant(65.0, ua.VariantType.Double))
            await nodes["state"].write_value(ua.Variant(m.CHANNEL_ACTIVE, ua.VariantType.Int32))
            ev = nodes["alerts"].event
            ev.ErrorCode, ev.Severity = "E4711", 750
            ev.Message, ev.SourceName = ua.LocalizedText("coolant pressure low"), "coolant"
            await nodes["alerts"].trigger(time_attr=None)
            return await task
        finally:
            await server.stop()

    items = asyncio.run(scenario())
    batches = [i for i in items if isinstance(i, SampleBatch)]
    assert batches and all(b.machine == "vendor-mill" for b in batches)

    def known(signal: str) -> np.ndarray:  # before a signal's first value its rows are NaN
        values = np.concatenate([b.columns[signal] for b in batches if signal in b.columns])
        return values[np.isfinite(values)]

    feed = known("feed_override")
    assert feed[0] == 80.0 and feed[-1] == 65.0
    assert set(known("spindle_override")) == {95.0}
    assert set(known("mode")) == {1.0}  # MdaMdi is model.Mode.MDI
    assert not any("x.pos" in b.columns for b in batches)  # not in this server's model
    events = [i for i in items if isinstance(i, MachineEvent)]
    assert [e.value for e in events if e.kind == "execution"] == ["READY", "ACTIVE"]
    assert [e.value["name"] for e in events if e.kind == "program"] == ["O1234"]
    (alarm,) = [e.alarm for e in events if e.kind == "alarm"]
    assert alarm.code == AlarmCode.DRIVE_FAULT and alarm.message == "[E4711] coolant pressure low"
    assert alarm.severity == Severity.FAULT and alarm.source == "coolant"
    assert abs(alarm.raised_at - time.time()) < 30
    execution = known("execution")
    assert execution[-1] == float(Execution.ACTIVE)
