"""pymtconnect (PyPI, an independent client built from the MTConnect SysML model) reads our agent.

pymtconnect's ``mtconnect_client`` speaks the agent's JSON (``Accept: application/json``):
probe, current, sample and the multipart ``interval`` stream. It parses Events and
Conditions (not Samples), so Samples are checked through our XML elsewhere.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
from pathlib import Path

from pymtconnect import mtconnect_client as client
from pymtconnect import probe_example

from machinetwin.protocols.mtconnect.agent import MTConnectAgent
from machinetwin.protocols.mtconnect.assets import cutting_tools

sys.path.insert(0, str(Path(__file__).parent))
from test_mtconnect_support import until, virtual_machine  # noqa: E402


def _pymtconnect_session(url: str) -> dict:
    header, devices = client.probe(url)
    tree_header, tree = probe_example.parse_probe(url)
    cur_header, events, conditions = client.current(url)
    start = cur_header.first_sequence
    smp_header, smp_events, _ = client.sample(url, from_seq=start, count=50)
    streamed = list(itertools.islice(client.stream_sample(url, interval=100, timeout=10), 3))
    return {"header": header, "devices": devices, "tree": tree, "cur_header": cur_header,
            "events": events, "conditions": conditions, "smp_header": smp_header,
            "smp_events": smp_events, "streamed": streamed, "start": start}  # fmt: skip


def _component_types(components) -> set[str]:
    out = set()
    for c in components:
        out.add(c._component_type)
        out |= _component_types(c.components)
    return out


def test_pymtconnect_reads_our_agent(tmp_path: Path) -> None:
    async def run() -> tuple[dict, int]:
        vm, config = virtual_machine(tmp_path, "harbin-vmc-1", speedup=2.0)
        agent = MTConnectAgent([vm], cutting_tools(config.tools, "harbin-vmc-1", 0.0))
        program = agent.feeds[0].by_signal["program"].index
        async with agent.serving() as url:
            assert await until(lambda: agent.buffer.latest_text[program] == "short.ngc")
            return await asyncio.to_thread(_pymtconnect_session, url), agent.instance_id

    r, instance_id = asyncio.run(run())
    assert r["header"].instance_id == instance_id and r["header"].version.startswith("2.")
    assert [(d.name, d.uuid) for d in r["devices"]] == [("harbin-vmc-1", "harbin-vmc-1")]
    (device,) = r["tree"]
    assert {"Axes", "Linear", "Rotary", "Controller", "Path"} <= _component_types(device.components)
    cur = r["cur_header"]
    assert cur.first_sequence <= cur.last_sequence < cur.next_sequence
    types = {e.type for e in r["events"]}
    assert {"Execution", "Program", "Availability", "LineNumber"} <= types
    execution = next(e for e in r["events"] if e.type == "Execution")
    assert execution.result in ("READY", "ACTIVE", "INTERRUPTED", "STOPPED", "PROGRAM_COMPLETED")
    assert next(e for e in r["events"] if e.type == "Program").result == "short.ngc"
    assert {c.state for c in r["conditions"]} == {"Normal"}
    assert {c.type for c in r["conditions"]} >= {"ACTUATOR", "SYSTEM", "LOGIC_PROGRAM"}
    smp = r["smp_header"]
    seqs = sorted(e.sequence for e in r["smp_events"])
    assert all(r["start"] <= s < smp.next_sequence for s in seqs)
    assert len(r["streamed"]) == 3
    nexts = [h.next_sequence for h, _, _ in r["streamed"]]
    assert nexts == sorted(nexts) and all(h.instance_id == instance_id for h, _, _ in r["streamed"])
