"""MTConnect agent and client: sequences, OUT_OF_RANGE, streaming, end to end, restart."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from machinetwin.model import Alarm, AlarmCode, MachineEvent, SampleBatch, Severity
from machinetwin.protocols.mtconnect.agent import MTConnectAgent, SampleQuery
from machinetwin.protocols.mtconnect.assets import cutting_tools
from machinetwin.protocols.mtconnect.buffer import ObservationBuffer
from machinetwin.protocols.mtconnect.client import ClientSettings, MTConnectClientAdapter, Resync

sys.path.insert(0, str(Path(__file__).parent))
from test_mtconnect_support import Scripted, Tap, collect, series, until, virtual_machine  # noqa: E402

from machinetwin.hub.broker import free_port

STREAMS = "{urn:mtconnect.org:MTConnectStreams:2.0}"


def _ns(tag: str) -> str:
    return tag.rpartition("}")[2]


def batch(machine: str, t0: float, n: int, x0: float = 0.0) -> SampleBatch:
    t = t0 + 0.01 * np.arange(n)
    cols = {"x.pos": x0 + np.arange(n, dtype=float), "spindle.speed": np.full(n, 1000.0),
            "feed": np.full(n, 600.0), "execution": np.ones(n)}  # fmt: skip
    return SampleBatch(machine, t, cols)


# ---------------------------------------------------------------- sequence arithmetic


@settings(max_examples=200, deadline=None)
@given(capacity=st.integers(1, 40), sizes=st.lists(st.integers(0, 60), max_size=12))
def test_ring_buffer_sequences_match_a_plain_list(capacity: int, sizes: list[int]) -> None:
    buf = ObservationBuffer(n_items=5, capacity=capacity)
    reference: list[int] = []  # item of each observation, by sequence - 1
    for size in sizes:
        items = np.arange(len(reference), len(reference) + size) % 5
        first = buf.append(items.astype(np.int32), np.arange(size, dtype=float), items * 1.0)
        assert first == len(reference) + 1
        reference.extend(items.tolist())
    assert buf.next_sequence == len(reference) + 1
    assert buf.last_sequence == len(reference)
    assert buf.first_sequence == max(1, len(reference) + 1 - capacity)
    held = buf.select(1, buf.next_sequence)
    assert held.seq.tolist() == list(range(buf.first_sequence, buf.next_sequence))
    assert held.item.tolist() == reference[buf.first_sequence - 1 :]
    # from is valid exactly within [first, next]
    assert buf.check_range(buf.first_sequence) is None
    assert buf.check_range(buf.next_sequence) is None
    assert buf.check_range(buf.next_sequence + 1) is not None
    if buf.first_sequence > 1:
        assert buf.check_range(buf.first_sequence - 1) is not None
    for item in range(5):  # /current holds each item's newest observation
        seqs = [s + 1 for s, i in enumerate(reference) if i == item]
        assert buf.latest_seq[item] == (seqs[-1] if seqs else 0)


@settings(max_examples=100, deadline=None)
@given(capacity=st.integers(5, 60), total=st.integers(0, 150), count=st.integers(1, 20),
       devices=st.sets(st.sampled_from(["a", "b"]), min_size=1))  # fmt: skip
def test_sample_pages_chain_without_gaps_or_repeats(capacity, total, count, devices) -> None:
    agent = MTConnectAgent([Scripted("a", []), Scripted("b", [])], buffer_size=capacity)
    n_items = len(agent.table.items)
    rng = np.random.default_rng(total)
    items = rng.integers(0, n_items, total).astype(np.int32)
    agent.buffer.append(items, np.arange(total, dtype=float), np.arange(total, dtype=float))
    mask = agent._mask([d for d in agent.devices if d.name in devices])
    start = agent.buffer.first_sequence
    wanted = agent.buffer.select(start, agent.buffer.next_sequence)
    expected = wanted.seq[mask[wanted.item]].tolist()
    got: list[int] = []
    for _ in range(agent.buffer.next_sequence + 2):
        obs, nxt = agent.query(SampleQuery(start, count, None, mask))
        assert len(obs) <= count and nxt >= start
        got.extend(obs.seq.tolist())
        if nxt == start:
            break
        start = nxt
    assert got == expected
    assert start == agent.buffer.next_sequence


@settings(max_examples=100, deadline=None)
@given(capacity=st.integers(5, 60), total=st.integers(0, 150), count=st.integers(1, 30),
       data=st.data())  # fmt: skip
def test_to_and_negative_count_select_like_the_reference_agent(
    capacity, total, count, data
) -> None:
    agent = MTConnectAgent([Scripted("a", []), Scripted("b", [])], buffer_size=capacity)
    items = np.random.default_rng(total).integers(0, len(agent.table.items), total)
    agent.buffer.append(items.astype(np.int32), np.zeros(total), np.zeros(total))
    b = agent.buffer
    mask = agent._mask(agent.devices[:1])
    held = b.select(b.first_sequence, b.next_sequence)
    start = data.draw(st.integers(b.first_sequence, b.last_sequence))
    to = data.draw(st.integers(start + 1, b.next_sequence))
    obs, nxt = agent.query(SampleQuery(start, count, to, mask))
    wanted = [s for s, i in zip(held.seq, held.item, strict=True) if mask[i] and start <= s <= to]
    assert obs.seq.tolist() == wanted[-count:] and nxt == min(to + 1, b.next_sequence)
    obs, nxt = agent.query(SampleQuery(start, -count, None, mask))
    wanted = [s for s, i in zip(held.seq, held.item, strict=True) if mask[i] and s <= start]
    assert obs.seq.tolist() == wanted[-count:]
    assert nxt == max(b.first_sequence, (wanted[-count:][0] - 1) if wanted else b.first_sequence)


# ---------------------------------------------------------------- HTTP requests


async def _agent_requests(url: str) -> dict[str, httpx.Response]:
    async with httpx.AsyncClient(base_url=url) as c:
        return {
            "probe": await c.get("/probe"),
            "probe_json": await c.get("/probe", headers={"Accept": "application/json"}),
            "current": await c.get("/current"),
            "device_current": await c.get("/m1/current"),
            "old": await c.get("/sample", params={"from": 1}),
            "bad_count": await c.get("/sample", params={"count": "ten"}),
            "zero_count": await c.get("/sample", params={"count": 0}),
            "future": await c.get("/sample", params={"from": 10**9}),
            "no_device": await c.get("/nope/current"),
            "bad_uri": await c.get("/m1/current/extra"),
            "page": await c.get("/sample", params={"count": 3}),
            "assets": await c.get("/assets"),
            "asset": await c.get("/asset/m1.T2"),
            "no_asset": await c.get("/asset/m1.T9"),
            "error_json": await c.get("/sample", params={"from": 1, "format": "json"}),
        }


def test_agent_answers_and_errors_per_the_standard() -> None:
    async def run() -> dict[str, httpx.Response]:
        items = [batch("m1", 1.7e9 + k, 10, x0=k * 100) for k in range(30)]  # 300 samples
        from machinetwin.machine import load_machine_config

        tools = cutting_tools(load_machine_config().tools, "m1", 1.7e9)
        agent = MTConnectAgent([Scripted("m1", items)], tools, buffer_size=256)
        async with agent.serving() as url:
            await asyncio.sleep(0.3)
            return await _agent_requests(url)

    r = asyncio.run(run())
    probe = ET.fromstring(r["probe"].content)
    assert probe.tag == "{urn:mtconnect.org:MTConnectDevices:2.0}MTConnectDevices"
    types = {(d.get("type"), d.get("subType")) for d in probe.iter() if _ns(d.tag) == "DataItem"}
    assert {("POSITION", "ACTUAL"), ("EXECUTION", None), ("CONDITION", None)} - types == {
        ("CONDITION", None)}  # fmt: skip
    assert r["probe_json"].json()["MTConnectDevices"]["Devices"]["Device"][0]["uuid"] == "m1"
    current = ET.fromstring(r["current"].content)
    header = next(e for e in current.iter() if _ns(e.tag) == "Header")
    first, nxt = int(header.get("firstSequence")), int(header.get("nextSequence"))
    assert first > 1  # the 256-slot ring has wrapped
    xpos = [e for e in current.iter() if e.get("dataItemId") == "m1_xpos"]
    assert [float(e.text) for e in xpos] == [2909.0]  # the newest x.pos, nothing older
    assert r["device_current"].status_code == 200
    for key in ("old", "future", "zero_count"):
        err = ET.fromstring(r[key].content)
        assert r[key].status_code == 400 and _ns(err.tag) == "MTConnectError"
        assert (
            next(e for e in err.iter() if _ns(e.tag) == "Error").get("errorCode") == "OUT_OF_RANGE"
        )
    assert "between firstSequence" in r["old"].text
    assert b"INVALID_REQUEST" in r["bad_count"].content and b"'count'" in r["bad_count"].content
    assert r["no_device"].status_code == 404 and b"NO_DEVICE" in r["no_device"].content
    assert r["bad_uri"].status_code == 404 and b"INVALID_URI" in r["bad_uri"].content
    page = ET.fromstring(r["page"].content)
    seqs = sorted(int(e.get("sequence")) for e in page.iter() if e.get("sequence"))
    header = next(e for e in page.iter() if _ns(e.tag) == "Header")
    assert seqs == list(range(first, first + 3)) and int(header.get("nextSequence")) == first + 3
    assert nxt == int(header.get("lastSequence")) + 1
    tools = [e for e in ET.fromstring(r["assets"].content).iter() if _ns(e.tag) == "CuttingTool"]
    assert sorted(t.get("toolId") for t in tools) == ["1", "2", "3", "4"]
    assert b"6 mm ball end mill" in r["asset"].content
    assert r["no_asset"].status_code == 404 and b"ASSET_NOT_FOUND" in r["no_asset"].content
    err = r["error_json"].json()["MTConnectError"]["Errors"][0]["Error"]
    assert err["errorCode"] == "OUT_OF_RANGE"


def test_conditions_in_current_follow_raise_and_clear() -> None:
    alarm = Alarm(
        AlarmCode.SPINDLE_OVERLOAD, Severity.FAULT, "spindle load 130 %", "spindle", 1.7e9
    )
    other = Alarm(AlarmCode.DRIVE_FAULT, Severity.WARNING, "X drive warm", "x", 1.7e9)
    cleared = Alarm(AlarmCode.DRIVE_FAULT, Severity.WARNING, "", "x", 1.7e9, cleared_at=1.7e9 + 1)
    items = [MachineEvent("m1", 1.7e9, "alarm", alarm=alarm), MachineEvent("m1", 1.7e9, "alarm", alarm=other),
             MachineEvent("m1", 1.7e9 + 1, "alarm_cleared", alarm=cleared)]  # fmt: skip

    async def run() -> bytes:
        agent = MTConnectAgent([Scripted("m1", items)])
        async with agent.serving() as url, httpx.AsyncClient() as c:
            await asyncio.sleep(0.2)
            return (await c.get(url + "/current")).content

    doc = ET.fromstring(asyncio.run(run()))
    load = [e for e in doc.iter() if e.get("dataItemId") == "m1_sloadc"]
    servo = [e for e in doc.iter() if e.get("dataItemId") == "m1_xservo"]
    assert [(_ns(e.tag), e.get("nativeCode"), e.text) for e in load] == [
        ("Fault", "MT-200", "spindle load 130 %")]  # fmt: skip
    assert [_ns(e.tag) for e in servo] == ["Normal"]


# ---------------------------------------------------------------- streaming


async def _read_parts(url: str, params: dict, parts: int, timeout: float) -> list[bytes]:
    from machinetwin.protocols.mtconnect.client import MultipartReader

    async with (
        httpx.AsyncClient(timeout=timeout) as c,
        c.stream("GET", url + "/sample", params=params) as resp,
    ):
        assert resp.headers["content-type"].startswith("multipart/x-mixed-replace;boundary=")
        boundary = resp.headers["content-type"].split("boundary=")[1]
        reader = MultipartReader(resp.aiter_bytes(), boundary)
        out = []
        for _ in range(parts):
            try:
                out.append(await asyncio.wait_for(reader.next_part(), timeout))
            except Resync:  # the agent ended the stream
                break
        return out


def test_stream_sends_heartbeats_when_nothing_changes() -> None:
    async def run() -> list[bytes]:
        agent = MTConnectAgent([Scripted("m1", [batch("m1", 1.7e9, 5)])])
        async with agent.serving() as url:
            await asyncio.sleep(0.2)
            nxt = agent.buffer.next_sequence
            return await _read_parts(url, {"from": nxt, "interval": 0, "heartbeat": 200}, 4, 5.0)

    parts = asyncio.run(run())
    docs = [ET.fromstring(p) for p in parts]
    heads = [next(e for e in d.iter() if _ns(e.tag) == "Header") for d in docs]
    assert len({h.get("nextSequence") for h in heads}) == 1  # nothing new: same position
    for d in docs:  # empty documents: a heartbeat only
        assert not [e for e in d.iter() if e.get("sequence")]


def test_stream_delivers_new_data_then_out_of_range_when_overrun() -> None:
    async def run() -> list[bytes]:
        more = [batch("m1", 1.7e9 + k, 10) for k in range(50)]
        adapter = Scripted("m1", [])
        agent = MTConnectAgent([adapter], buffer_size=64)
        async with agent.serving() as url:
            await asyncio.sleep(0.1)
            start = agent.buffer.next_sequence

            async def feed_later() -> None:
                await asyncio.sleep(0.3)
                for b in more:  # far more than the ring holds, faster than count=5 pages
                    agent.feeds[0].ingest_batch(b)
                agent.notify()

            feeder = asyncio.create_task(feed_later())
            parts = await _read_parts(url, {"from": start, "count": 5, "interval": 200,
                                            "heartbeat": 5000}, 3, 5.0)  # fmt: skip
            await feeder
            return parts

    parts = asyncio.run(run())
    kinds = [_ns(ET.fromstring(p).tag) for p in parts]
    assert kinds[0] == "MTConnectStreams"
    assert kinds[-1] == "MTConnectError" and b"OUT_OF_RANGE" in parts[-1]


# ---------------------------------------------------------------- end to end


@pytest.mark.slow
def test_client_reads_agent_of_a_virtual_machine_and_values_match(tmp_path: Path) -> None:
    async def run():
        vm, _ = virtual_machine(tmp_path, "m1", speedup=2.0)
        tap = Tap(vm)
        agent = MTConnectAgent([tap])
        async with agent.serving() as url:
            client = MTConnectClientAdapter(ClientSettings(url, "m1-remote", heartbeat_ms=2000))
            got = await collect(client, 4.0)
        return tap.items, got, client

    truth, got, client = asyncio.run(run())
    assert client.resyncs == 0
    assert all(isinstance(b, SampleBatch | MachineEvent) for b in got)
    compared = 0
    for signal in ("x.pos", "z.pos", "spindle.speed", "feed", "line", "execution", "spindle.load"):
        t_true, v_true = series(truth, signal)
        t_got, v_got = series(got, signal)
        assert len(t_got), signal
        # compare at the machine's own sample times (the client also has event times)
        k = np.clip(np.searchsorted(t_true, t_got - 2e-6), 0, len(t_true) - 1)
        same_time = np.abs(t_true[k] - t_got) < 2e-6
        assert same_time.sum() > 20, signal
        np.testing.assert_allclose(v_got[same_time], v_true[k[same_time]], rtol=1e-9, atol=1e-9,
                                   err_msg=signal)  # fmt: skip
        compared += same_time.sum()
    executions = [e.value for e in got if isinstance(e, MachineEvent) and e.kind == "execution"]
    assert "ACTIVE" in executions
    programs = [e.value for e in got if isinstance(e, MachineEvent) and e.kind == "program"]
    assert programs and programs[0] == "short.ngc"
    assert compared > 140


@pytest.mark.slow
def test_polling_client_reads_the_same(tmp_path: Path) -> None:
    async def run():
        vm, _ = virtual_machine(tmp_path, "m1", speedup=2.0)
        agent = MTConnectAgent([vm])
        async with agent.serving() as url:
            client = MTConnectClientAdapter(ClientSettings(url, "m1", stream=False, count=500,
                                                           interval_ms=100))  # fmt: skip
            got = await collect(client, 2.5)
        return got, client

    got, client = asyncio.run(run())
    t, x = series(got, "x.pos")
    assert len(t) > 20 and np.all(np.diff(t) >= 0) and np.isfinite(x).all()
    assert client.next_sequence is not None and client.resyncs == 0


@pytest.mark.slow
def test_client_resyncs_after_agent_restart_with_new_instance_id(tmp_path: Path) -> None:
    port = free_port()

    async def run():
        client = MTConnectClientAdapter(ClientSettings(f"http://127.0.0.1:{port}", "m1",
                                                       heartbeat_ms=300, retry_s=0.2))  # fmt: skip
        out: list = []

        async def read() -> None:
            async for item in client.batches():
                out.append(item)

        ids = []
        reader = None
        for k in range(2):
            vm, _ = virtual_machine(tmp_path, "m1", speedup=2.0)
            agent = MTConnectAgent([vm])
            ids.append(agent.instance_id)
            async with agent.serving(port=port):
                if reader is None:
                    reader = asyncio.create_task(read())
                await asyncio.sleep(2.0)
                seen_before = len(out)
            if k == 0:
                await asyncio.sleep(0.5)  # the agent is down for a while
        await client.close()
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        return client, out, ids, seen_before

    client, out, ids, seen_before = asyncio.run(run())
    assert ids[0] != ids[1]
    assert client.instance_id == ids[1]
    assert client.resyncs >= 1
    t, x = series(out, "x.pos")
    assert np.isfinite(x).sum() > 20 and seen_before > 2


@pytest.mark.slow
def test_client_resyncs_on_out_of_range(tmp_path: Path) -> None:
    async def run():
        adapter = Scripted("m1", [])
        agent = MTConnectAgent([adapter], buffer_size=128)
        async with agent.serving() as url:
            client = MTConnectClientAdapter(ClientSettings(url, "m1", stream=False, count=5,
                                                           interval_ms=50, retry_s=0.05))  # fmt: skip

            async def overrun() -> None:
                for k in range(40):
                    await asyncio.sleep(0.05)
                    agent.feeds[0].ingest_batch(batch("m1", 1.7e9 + k, 20, x0=k * 20))
                    agent.notify()

            feeder = asyncio.create_task(overrun())
            got = await collect(client, 2.5)
            await feeder
        return client, got

    client, got = asyncio.run(run())
    assert client.resyncs >= 1  # fell out of the 128-slot ring at 5 per poll, started again
    t, x = series(got, "x.pos")
    assert np.all(np.diff(x[np.isfinite(x)]) >= 0)  # x only grows in the input: no stale data


# ---------------------------------------------------------------- damaged documents


def _documents() -> tuple[bytes, bytes]:
    from machinetwin.protocols.mtconnect.documents import probe_document

    agent = MTConnectAgent([Scripted("m1", [])])
    agent.feeds[0].ingest_batch(batch("m1", 1.7e9, 20))
    alarm = Alarm(AlarmCode.COLLISION, Severity.FAULT, "crash <&>", "x", 1.7e9)
    agent.feeds[0].ingest_event(MachineEvent("m1", 1.7e9, "alarm", alarm=alarm))
    obs, nxt = agent.query(SampleQuery(1, 500, None, agent._mask(agent.devices)))
    probe = probe_document(agent.header(), agent.devices, "xml").encode()
    return probe, agent._streams(obs, nxt, "xml").encode()


PROBE_DOC, STREAMS_DOC = _documents()


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_client_parsers_reject_damaged_documents_cleanly(data) -> None:
    from machinetwin.protocols.mtconnect.convert import Converter
    from machinetwin.protocols.mtconnect.streams import (
        AgentErrorDocument,
        StreamError,
        parse_probe,
        parse_streams,
    )

    probe = parse_probe(PROBE_DOC)
    conv = Converter("m1")
    conv.set_signals(probe.signals)
    doc = STREAMS_DOC
    start = data.draw(st.integers(0, len(doc)))
    end = data.draw(st.integers(start, min(len(doc), start + 40)))
    junk = data.draw(st.sampled_from([b"", b"x", b'"', b"<", b"UNAVAILABLE", b"-1e999", b"&amp;",
                                      b'sequence="z"', b'timestamp="2024-99-99T00:00:00Z"']))  # fmt: skip
    damaged = doc[:start] + junk + doc[end:]
    with contextlib.suppress(StreamError, AgentErrorDocument):  # clean errors only
        conv.convert(parse_streams(damaged, probe, conv.index))
    with contextlib.suppress(StreamError, AgentErrorDocument):
        parse_probe(PROBE_DOC[:start] + junk + PROBE_DOC[end:])


def test_condition_text_is_escaped_and_read_back() -> None:
    from machinetwin.protocols.mtconnect.convert import Converter
    from machinetwin.protocols.mtconnect.streams import parse_probe, parse_streams

    probe = parse_probe(PROBE_DOC)
    conv = Converter("m1")
    conv.set_signals(probe.signals)
    out = conv.convert(parse_streams(STREAMS_DOC, probe, conv.index))
    alarms = [e.alarm for e in out if isinstance(e, MachineEvent) and e.kind == "alarm"]
    assert [(a.code, a.severity, a.message, a.source) for a in alarms] == [
        (AlarmCode.COLLISION, Severity.FAULT, "crash <&>", "controller")]  # fmt: skip


def test_sample_to_and_negative_count_and_current_stream() -> None:
    async def run():
        agent = MTConnectAgent([Scripted("m1", [batch("m1", 1.7e9, 30)])])
        async with agent.serving() as url, httpx.AsyncClient(base_url=url) as c:
            await asyncio.sleep(0.2)
            first, nxt = agent.buffer.first_sequence, agent.buffer.next_sequence
            to = await c.get("/sample", params={"from": first, "to": first + 4, "count": 100})
            last3 = await c.get("/sample", params={"count": -3})
            bad_to = await c.get("/sample", params={"from": first + 5, "to": first})
            async with c.stream("GET", "/current", params={"interval": 50}) as resp:
                boundary = resp.headers["content-type"].split("boundary=")[1]
                from machinetwin.protocols.mtconnect.client import MultipartReader

                reader = MultipartReader(resp.aiter_bytes(), boundary)
                currents = [await asyncio.wait_for(reader.next_part(), 5) for _ in range(2)]
        return first, nxt, to, last3, bad_to, currents

    first, nxt, to, last3, bad_to, currents = asyncio.run(run())
    seqs = sorted(
        int(e.get("sequence")) for e in ET.fromstring(to.content).iter() if e.get("sequence")
    )
    assert seqs == list(range(first, first + 5))  # 'to' includes itself
    seqs = sorted(
        int(e.get("sequence")) for e in ET.fromstring(last3.content).iter() if e.get("sequence")
    )
    assert seqs == [nxt - 3, nxt - 2, nxt - 1]
    assert bad_to.status_code == 400 and b"'to'" in bad_to.content
    for doc in currents:
        xpos = [e.text for e in ET.fromstring(doc).iter() if e.get("dataItemId") == "m1_xpos"]
        assert xpos == ["29"]


def test_command_line_reader_prints_what_the_client_sees(tmp_path: Path, capsys) -> None:
    import argparse

    from machinetwin.protocols.mtconnect.__main__ import read

    async def run() -> None:
        vm, _ = virtual_machine(tmp_path, "m1", speedup=2.0)
        async with MTConnectAgent([vm]).serving() as url:
            await asyncio.sleep(0.5)
            args = argparse.Namespace(url=url, machine="m1", device="m1", seconds=1.0)
            await asyncio.wait_for(read(args), 10)

    asyncio.run(run())
    out = capsys.readouterr().out
    assert "event: program short.ngc" in out and "batch:" in out and "x.pos" in out


def test_current_lists_every_active_condition_of_an_item() -> None:
    codes = [AlarmCode.COLLISION, AlarmCode.TOOL_BREAKAGE, AlarmCode.TOOL_MISSING,
             AlarmCode.COOLANT_FAILURE, AlarmCode.ESTOP]  # all reported on the controller  # fmt: skip
    items = [MachineEvent("m1", 1.7e9 + k, "alarm",
                          alarm=Alarm(c, Severity.FAULT, f"problem {k}", "spindle", 1.7e9 + k))
             for k, c in enumerate(codes)]  # fmt: skip
    agent = MTConnectAgent([Scripted("m1", [])])
    for item in items:
        agent.feeds[0].ingest_event(item)
    obs = agent._current_obs(agent._mask(agent.devices))
    doc = ET.fromstring(agent._streams(obs, agent.buffer.next_sequence, "xml"))
    faults = [e for e in doc.iter() if e.get("dataItemId") == "m1_system"]
    assert sorted(e.get("nativeCode") for e in faults) == sorted(str(c) for c in codes)
    assert all(_ns(e.tag) == "Fault" for e in faults)


def test_json_and_xml_streams_carry_the_same_observations() -> None:
    import json

    agent = MTConnectAgent([Scripted("m1", [])])
    b = batch("m1", 1.7e9, 20)
    b.columns["x.pos"][3] = np.inf  # not a value: UNAVAILABLE, and still valid JSON
    agent.feeds[0].ingest_batch(b)
    agent.feeds[0].ingest_event(MachineEvent("m1", 1.7e9, "program", value='O"1" <&>'))
    alarm = Alarm(AlarmCode.SPINDLE_OVERLOAD, Severity.WARNING, 'hot "spindle"', "spindle", 1.7e9)
    agent.feeds[0].ingest_event(MachineEvent("m1", 1.7e9, "alarm", alarm=alarm))
    obs, nxt = agent.query(SampleQuery(1, 1000, None, agent._mask(agent.devices)))
    xml = ET.fromstring(agent._streams(obs, nxt, "xml"))
    from_xml = {(e.get("dataItemId"), int(e.get("sequence")), (e.text or _ns(e.tag)))
                for e in xml.iter() if e.get("sequence")}  # fmt: skip
    doc = json.loads(agent._streams(obs, nxt, "json"))["MTConnectStreams"]
    from_json = set()
    for ds in doc["Streams"]["DeviceStream"]:
        for cs in ds["ComponentStream"]:
            for cat in ("Samples", "Events", "Condition"):
                for element, entries in cs.get(cat, {}).items():
                    for e in entries:
                        value = e.get("value", element)
                        value = value if isinstance(value, str) else f"{value:.12g}"
                        from_json.add((e["dataItemId"], e["sequence"], value))
    assert from_xml == from_json and len(from_xml) == len(obs)
    assert doc["Header"]["nextSequence"] == nxt
    xpos = obs.seq[obs.item == agent.feeds[0].by_signal["x.pos"].index]  # [0]: at start
    assert ("m1_xpos", int(xpos[4]), "UNAVAILABLE") in from_xml
    assert ("m1_xpos", int(xpos[5]), "4") in from_xml


@settings(max_examples=200, deadline=None)
@given(bodies=st.lists(st.binary(min_size=0, max_size=300), min_size=1, max_size=6),
       cuts=st.lists(st.integers(1, 50), min_size=1, max_size=40),
       lengths=st.booleans())  # fmt: skip
def test_multipart_reader_returns_parts_whatever_the_chunking(bodies, cuts, lengths) -> None:
    from machinetwin.protocols.mtconnect.client import MultipartReader

    boundary = "b0undary"
    if not lengths:  # without Content-length a body must not contain the boundary
        bodies = [body.replace(b"--b0undary", b"") for body in bodies]
        bodies = [body.rstrip(b"\r\n") for body in bodies]
    wire = b"".join(
        b"--b0undary\r\nContent-type: text/xml\r\n"
        + (f"Content-length: {len(body)}\r\n".encode() if lengths else b"")
        + b"\r\n" + body + b"\r\n" for body in bodies) + b"--b0undary\r\n\r\n"  # fmt: skip
    chunks, pos = [], 0
    for cut in cuts * (len(wire) // max(1, sum(cuts)) + 1):
        if pos >= len(wire):
            break
        chunks.append(wire[pos : pos + cut])
        pos += cut
    chunks.append(wire[pos:])

    async def parts() -> list[bytes]:
        async def source():
            for c in chunks:
                yield c

        reader = MultipartReader(source(), boundary)
        return [await reader.next_part() for _ in bodies]

    assert asyncio.run(parts()) == bodies


def test_vibration_waveform_travels_as_a_time_series() -> None:
    from machinetwin.model import Waveform

    rng = np.random.default_rng(3)
    wave = Waveform("spindle.vib", 1.7e9 + 0.5, 12800.0, rng.normal(0, 3, 12800).astype(np.float32))
    b = batch("m1", 1.7e9, 100)
    b.waveforms.append(wave)

    async def run():
        agent = MTConnectAgent([Scripted("m1", [])])
        async with agent.serving() as url:
            probe = await asyncio.to_thread(httpx.get, url + "/probe")
            client = MTConnectClientAdapter(ClientSettings(url, "m1", heartbeat_ms=2000))

            async def machine() -> None:  # the window comes while the client reads
                await asyncio.sleep(0.8)
                agent.feeds[0].ingest_batch(b)
                agent.notify()

            task = asyncio.create_task(machine())
            got = await collect(client, 2.0)
            await task
        return probe.content, got

    probe, got = asyncio.run(run())
    item = next(e for e in ET.fromstring(probe).iter() if e.get("id") == "m1_svib")
    assert (item.get("type"), item.get("representation")) == ("ACCELERATION", "TIME_SERIES")
    waves = [w for x in got if isinstance(x, SampleBatch) for w in x.waveforms]
    assert len(waves) == 1
    (w,) = waves
    assert w.signal == "spindle.vib" and w.rate_hz == 12800.0 and len(w.values) == 12800
    assert abs(w.t0 - wave.t0) < 2e-6
    np.testing.assert_allclose(w.values, wave.values, rtol=1e-5, atol=1e-5)


def test_cutting_tool_assets_follow_the_wear_of_the_tool_in_the_spindle(tmp_path: Path) -> None:
    async def run() -> tuple[bytes, bytes]:
        vm, config = virtual_machine(tmp_path, "m1", speedup=4.0)
        agent = MTConnectAgent([vm], tools={"m1": config.tools})
        agent.wear_every_s = 0.0
        async with agent.serving() as url, httpx.AsyncClient(base_url=url) as c:
            t1 = "m1.T1"

            def wear() -> float:
                life = ET.fromstring(agent.assets[t1].xml).find(".//ToolLife")
                return 0.0 if life is None else float(life.text)

            assert await until(lambda: wear() > 0)  # once T1 has cut
            worn = (await c.get(f"/asset/{t1}")).content
            other = (await c.get("/asset/m1.T3")).content
        return worn, other

    worn, other = asyncio.run(run())
    life = next(e for e in ET.fromstring(worn).iter() if _ns(e.tag) == "ToolLife")
    assert life.get("type") == "WEAR" and life.get("countDirection") == "UP"
    assert 0 < float(life.text) < float(life.get("limit"))
    assert b"<CuttingTool " in other and b'toolId="3"' in other


def test_client_keeps_trying_a_server_that_is_no_agent() -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    async def not_an_agent(request) -> Response:
        return Response("<html><body>router login</body></html>", 200, media_type="text/html")

    async def run():
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(Starlette(routes=[Route("/{p:path}", not_an_agent)]),
                                               port=port, log_level="warning", lifespan="off"))  # fmt: skip
        serve = asyncio.create_task(server.serve())
        await until(lambda: server.started)
        client = MTConnectClientAdapter(ClientSettings(f"http://127.0.0.1:{port}", "m1",
                                                       retry_s=0.2))  # fmt: skip
        got = await collect(client, 1.5)
        server.should_exit = True
        await serve
        return client, got

    client, got = asyncio.run(run())
    assert got == [] and 2 <= client.resyncs <= 10  # retried, at the retry pace, no crash
