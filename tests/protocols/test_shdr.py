"""SHDR: the line format of the standard, fuzzing, ping/pong, UNAVAILABLE on disconnect."""

from __future__ import annotations

import asyncio
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from machinetwin.model import MachineEvent, SampleBatch
from machinetwin.protocols.mtconnect.agent import MTConnectAgent
from machinetwin.protocols.mtconnect.shdr import (
    AssetRecord,
    CommandRecord,
    ConditionRecord,
    DataRecord,
    SeriesRecord,
    ShdrAdapter,
    ShdrParseError,
    ShdrParser,
    ShdrServer,
    ShdrSettings,
    parse_timestamp,
)

sys.path.insert(0, str(Path(__file__).parent))
from test_mtconnect_support import collect, series, until, virtual_machine  # noqa: E402

T0 = "2024-05-01T10:00:00.250000Z"
T0_S = 1714557600.25


# ---------------------------------------------------------------- the line format


def test_data_lines_conditions_messages_and_commands() -> None:
    p = ShdrParser({"system": "condition", "msg": "message"})
    assert p.feed(f"{T0}|Xact|12.5|execution|ACTIVE\n") == [
        DataRecord(T0_S, "Xact", "12.5"), DataRecord(T0_S, "execution", "ACTIVE")]  # fmt: skip
    assert p.feed("|avail|AVAILABLE") == [DataRecord(None, "avail", "AVAILABLE")]
    assert p.feed(f"{T0}|system|fault|E42|HIGH|LOW|Spindle overheat|line|7") == [
        ConditionRecord(T0_S, "system", ("FAULT", "E42", "HIGH", "LOW", "Spindle overheat")),
        DataRecord(T0_S, "line", "7")]  # fmt: skip
    assert p.feed(f"{T0}|system|NORMAL||||") == [
        ConditionRecord(T0_S, "system", ("NORMAL", "", "", "", ""))]  # fmt: skip
    assert p.feed(f"{T0}|msg|CODE1|Door open") == [DataRecord(T0_S, "msg", "Door open")]
    assert p.feed("* PING") == [CommandRecord("PING", "")]
    assert p.feed("* PONG 10000") == [CommandRecord("PONG", "10000")]
    assert p.feed("* shdrVersion: 2") == [CommandRecord("shdrVersion", "2")]
    assert p.feed("") == []


def test_multi_line_and_single_line_assets() -> None:
    p = ShdrParser()
    assert p.feed(f"{T0}|@ASSET@|T1|CuttingTool|--multiline--AB12") == []
    assert p.feed('<CuttingTool assetId="T1" toolId="1">') == []
    assert p.feed("<Description>end mill | 10 mm</Description></CuttingTool>") == []
    (record,) = p.feed("--multiline--AB12")
    assert isinstance(record, AssetRecord) and record.asset_id == "T1"
    assert ET.fromstring(record.xml).find("Description").text == "end mill | 10 mm"
    assert p.feed(f"{T0}|@ASSET@|T2|CuttingTool|<CuttingTool/>") == [
        AssetRecord(T0_S, "@ASSET@", "T2", "CuttingTool", "<CuttingTool/>")]  # fmt: skip
    assert p.feed(f"{T0}|@REMOVE_ASSET@|T1") == [AssetRecord(T0_S, "@REMOVE_ASSET@", "T1")]
    assert p.feed(f"{T0}|@REMOVE_ALL_ASSETS@|CuttingTool")[0].asset_type == "CuttingTool"


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("garbage", "expected 'timestamp|key|value"),
        ("yesterday|x|1", "not ISO 8601"),
        (f"{T0}||1", "empty key"),
        (f"{T0}|system|FAULT|E1", "needs 5 value field"),
        (f"{T0}|system|BROKEN||||", "level must be one of"),
        (f"{T0}|x", "needs 1 value field"),
        ("* PONG soon", "positive heartbeat"),
        ("* nonsense", "'* name: value'"),
        (f"{T0}|@ASSET@|T1", "needs 'id|type|body'"),
        (f"{T0}|@UPDATE_ASSET@|T1|x|y", "unknown asset command"),
    ],
)
def test_errors_name_the_line(line: str, words: str) -> None:
    p = ShdrParser({"system": "condition"})
    p.feed(f"{T0}|ok|1")
    with pytest.raises(ShdrParseError) as err:
        p.feed(line)
    assert err.value.line_no == 2
    assert "SHDR line 2" in str(err.value) and words in str(err.value)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.text(alphabet=st.sampled_from("|*@-:TZ.0129 abcmsPINGONG\t<>/"), max_size=60)
                | st.text(max_size=80), max_size=8))  # fmt: skip
def test_fuzzed_lines_give_records_or_clean_errors(lines: list[str]) -> None:
    p = ShdrParser({"c": "condition", "m": "message", "s": "series"})
    for line in lines:
        try:
            records = p.feed(line)
        except ShdrParseError as e:
            assert e.line_no == p.line_no
            continue
        for r in records:
            assert isinstance(r, DataRecord | ConditionRecord | CommandRecord | AssetRecord)


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.floats(-1e6, 1e6, allow_nan=False) | st.just(float("nan")),
                       min_size=1, max_size=30),
       start=st.floats(1.5e9, 2e9))  # fmt: skip
def test_lines_our_server_writes_parse_back_to_the_same_values(values, start) -> None:
    from test_mtconnect_support import Scripted

    server = ShdrServer(Scripted("m1", []))
    t = start + 0.01 * np.arange(len(values))
    lines = server.batch_lines(SampleBatch("m1", t, {"x.pos": np.array(values)}))
    parser = ShdrParser()
    records = [r for line in lines for r in parser.feed(line)]
    kept = [v for k, v in enumerate(values) if k == 0 or not (
        v == values[k - 1] or (np.isnan(v) and np.isnan(values[k - 1])))]  # fmt: skip
    got = [float("nan") if r.value == "UNAVAILABLE" else float(r.value) for r in records]
    np.testing.assert_allclose(got, kept, rtol=1e-11)
    assert [r.t for r in records] == pytest.approx(
        [parse_timestamp(line.split("|")[0]) for line in lines], abs=1e-6)  # fmt: skip


# ---------------------------------------------------------------- over TCP


def test_adapter_side_answers_ping_with_pong_and_its_heartbeat(tmp_path: Path) -> None:
    async def run() -> list[bytes]:
        vm, config = virtual_machine(tmp_path, "m1", speedup=2.0)
        server = ShdrServer(vm, port=0, heartbeat_ms=750, tools=config.tools)
        port = await server.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"* PING\n")
        lines = []
        try:
            while not any(line.startswith(b"* PONG") for line in lines):
                lines.append(await asyncio.wait_for(reader.readline(), 5))
            for _ in range(5):
                lines.append(await asyncio.wait_for(reader.readline(), 5))
        finally:
            writer.close()
            await server.stop()
        return lines, server.kinds

    lines, kinds = asyncio.run(run())
    assert b"* PONG 750\n" in lines
    parser = ShdrParser(kinds)
    records = [r for line in lines for r in parser.feed(line.decode())]
    assert any(isinstance(r, AssetRecord) and r.asset_type == "CuttingTool" for r in records)
    assert any(isinstance(r, DataRecord) and r.key == "x.pos" for r in records)


def test_agent_side_pings_and_drops_a_silent_adapter() -> None:
    """A peer that accepts but never answers: PINGs arrive, then the adapter gives up."""

    async def run():
        pings: list[float] = []

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while line := await reader.readline():
                if line.strip() == b"* PING":
                    pings.append(time.monotonic())
            writer.close()

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        adapter = ShdrAdapter(ShdrSettings("127.0.0.1", "m1", port=port, heartbeat_ms=200,
                                           retry_s=5.0))  # fmt: skip
        items = await collect(adapter, 2.0)
        server.close()
        return pings, items, adapter

    pings, items, adapter = asyncio.run(run())
    assert len(pings) >= 2  # one at connect, then one per heartbeat
    assert adapter.connections == 1
    assert [i.kind for i in items if isinstance(i, MachineEvent)] == ["unavailable"]


def _values(doc: bytes, item_id: str) -> list[str]:
    root = ET.fromstring(doc)
    return [
        e.text or e.tag.rpartition("}")[2] for e in root.iter() if e.get("dataItemId") == item_id
    ]


@pytest.mark.slow
def test_agent_takes_shdr_and_goes_unavailable_on_disconnect(tmp_path: Path) -> None:
    async def run():
        vm, config = virtual_machine(tmp_path, "m1", speedup=2.0)
        server = ShdrServer(vm, port=0, heartbeat_ms=300, tools=config.tools)
        port = await server.start()
        shdr = ShdrAdapter(ShdrSettings("127.0.0.1", "cell7", port=port, retry_s=0.2))
        agent = MTConnectAgent([shdr])
        async with agent.serving() as url, httpx.AsyncClient(base_url=url) as http:

            async def current() -> bytes:
                return (await http.get("/current")).content

            async def running() -> bool:
                doc = await current()
                return _values(doc, "cell7_program") == ["short.ngc"] and _values(
                    doc, "cell7_xpos") != ["UNAVAILABLE"]  # fmt: skip

            assert await until(running)
            live = await current()
            assets = (await http.get("/assets")).content
            await server.stop()
            assert await until(lambda: shdr.connections and not shdr.connected)
            await until(lambda: False, timeout_s=0.3)  # let the agent take the last items
            gone = await current()
        return live, assets, gone, shdr

    live, assets, gone, shdr = asyncio.run(run())
    assert shdr.heartbeat_ms == 300  # taken from the adapter's PONG
    assert _values(live, "cell7_avail") == ["AVAILABLE"]
    assert float(_values(live, "cell7_xpos")[0]) >= 0
    assert _values(live, "cell7_execution")[0] in ("ACTIVE", "READY", "PROGRAM_COMPLETED")
    assert _values(live, "cell7_program") == ["short.ngc"]
    assert _values(live, "cell7_system") == ["Normal"]
    assert assets.count(b"<CuttingTool ") == 4
    assert _values(gone, "cell7_avail") == ["UNAVAILABLE"]
    for item in ("cell7_xpos", "cell7_sspeed", "cell7_execution", "cell7_program", "cell7_line"):
        assert _values(gone, item) == ["UNAVAILABLE"], item
    assert _values(gone, "cell7_system") == ["Unavailable"]


@pytest.mark.slow
def test_shdr_adapter_values_match_the_machine(tmp_path: Path) -> None:
    from test_mtconnect_support import Tap

    async def run():
        vm, _ = virtual_machine(tmp_path, "m1", speedup=2.0)
        tap = Tap(vm)
        server = ShdrServer(tap, port=0)
        port = await server.start()
        shdr = ShdrAdapter(ShdrSettings("127.0.0.1", "m1", port=port))
        got = await collect(shdr, 3.0)
        await server.stop()
        return tap.items, got

    truth, got = asyncio.run(run())
    for signal in ("x.pos", "spindle.speed", "feed", "execution"):
        t_true, v_true = series(truth, signal)
        t_got, v_got = series(got, signal)
        k = np.clip(np.searchsorted(t_true, t_got - 2e-6), 0, len(t_true) - 1)
        same = np.abs(t_true[k] - t_got) < 2e-6
        assert same.sum() > 10, signal
        np.testing.assert_allclose(
            v_got[same], v_true[k[same]], rtol=1e-9, atol=1e-9, err_msg=signal
        )


SHOP_ADAPTER = [  # what a shop's adapter sends, in the standard's line format
    "* shdrVersion: 2",
    "* adapterVersion: 1.8",
    "{t}|avail|AVAILABLE|Xact|101.5|Xcom|101.5|Srpm|2400|exec|ACTIVE|pgm|O1234.NC",
    "{t}|mode|MANUAL_DATA_INPUT|Fovr|80",
    "{t}|Sload_c|WARNING|SL1|2|HIGH|Spindle load high",
    "{t}|alarm|FAULT|E1002|3||Coolant level low",
    "{t}|@ASSET@|T7|CuttingTool|--multiline--A1B2",
    '<CuttingTool serialNumber="S-7" toolId="7" assetId="T7">',
    "<Description>12 mm drill</Description>",
    "</CuttingTool>",
    "--multiline--A1B2",
    "{t}|Xact|102.25|exec|FEED_HOLD",
    "{t}|Sload_c|NORMAL||||",
]


def test_agent_reads_a_shop_adapter_in_the_standard_line_format() -> None:
    """Foreign keys (aliases), conditions of ours and of theirs, an asset, PING/PONG."""

    async def run():
        pinged = asyncio.Event()

        async def shop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            for line in SHOP_ADAPTER:
                stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + ".000Z"
                writer.write((line.format(t=stamp) + "\n").encode())
                await asyncio.sleep(0.02)
            while line := await reader.readline():
                if line.strip() == b"* PING":
                    pinged.set()
                    writer.write(b"* PONG 400\n")
            writer.close()

        server = await asyncio.start_server(shop, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        aliases = {"Xact": "x.pos", "Xcom": "x.pos_cmd", "Srpm": "spindle.speed", "exec": "execution",
                   "pgm": "program", "Fovr": "feed_override", "Sload_c": "sloadc"}  # fmt: skip
        shdr = ShdrAdapter(ShdrSettings("127.0.0.1", "shop1", port=port, aliases=aliases,
                                        conditions={"alarm": "SYSTEM"}))  # fmt: skip
        agent = MTConnectAgent([shdr])
        async with agent.serving() as url, httpx.AsyncClient(base_url=url) as http:
            await asyncio.wait_for(pinged.wait(), 5)
            await asyncio.sleep(0.5)
            current = (await http.get("/current")).content
            assets = (await http.get("/assets")).content
            sample = (await http.get("/sample", params={"count": 1000})).content
        server.close()
        return current, assets, sample, shdr

    current, assets, sample, shdr = asyncio.run(run())
    assert shdr.heartbeat_ms == 400 and shdr.errors == 0
    assert shdr.commands == {"shdrVersion": "2", "adapterVersion": "1.8"}
    assert _values(current, "shop1_xpos") == ["102.25"]
    assert _values(current, "shop1_sspeed") == ["2400"]
    assert _values(current, "shop1_execution") == ["INTERRUPTED"]  # FEED_HOLD in our vocabulary
    assert _values(current, "shop1_program") == ["O1234.NC"]
    assert _values(current, "shop1_mode") == ["MANUAL_DATA_INPUT"]
    assert _values(current, "shop1_fovr") == ["80"]
    assert _values(current, "shop1_sloadc") == ["Normal"]  # raised, then cleared
    # their codes travel in the message; ours classify them (load condition: spindle overload)
    assert _values(sample, "shop1_sloadc")[-2:] == ["[SL1] Spindle load high", "Normal"]
    fault = [e for e in ET.fromstring(current).iter() if e.get("dataItemId") == "shop1_system"]
    assert [(e.tag.rpartition("}")[2], e.get("nativeCode"), e.text) for e in fault] == [
        ("Fault", "MT-400", "[E1002] Coolant level low")]  # fmt: skip
    assert b"<CuttingTool" in assets and b"12 mm drill" in assets and b'assetId="T7"' in assets


def test_time_series_lines_and_their_errors() -> None:
    p = ShdrParser({"vib": "series"})
    (r,) = p.feed(f"{T0}|vib|4|100|1 -2.5 3e2 0")
    assert (
        isinstance(r, SeriesRecord) and r.rate == 100.0 and r.values.tolist() == [1, -2.5, 300, 0]
    )
    (r,) = p.feed(f"{T0}|vib|2||1 2")
    assert r.rate is None  # the data item's sampleRate applies
    assert p.feed(f"{T0}|vib|UNAVAILABLE") == [DataRecord(T0_S, "vib", "UNAVAILABLE")]
    for bad, words in ((f"{T0}|vib|3|100|1 2", "count says 3, 2 values follow"),
                       (f"{T0}|vib|x|100|1", "count must be a whole number"),
                       (f"{T0}|vib|1|-5|1", "rate must be positive"),
                       (f"{T0}|vib|1|100|one", "must be numbers")):  # fmt: skip
        with pytest.raises(ShdrParseError, match=words):
            p.feed(bad)


def test_vibration_window_crosses_shdr() -> None:
    from test_mtconnect_support import Scripted

    from machinetwin.model import Waveform

    wave = Waveform("spindle.vib", 1.7e9, 12800.0,
                    np.random.default_rng(1).normal(0, 2, 1280).astype(np.float32))  # fmt: skip
    batch = SampleBatch("m1", 1.7e9 + 0.01 * np.arange(10), {"x.pos": np.arange(10.0)},
                        waveforms=[wave])  # fmt: skip

    class Later(Scripted):  # the machine produces once the agent side is connected
        async def batches(self):
            await asyncio.sleep(0.8)
            async for item in super().batches():
                yield item

    async def run():
        server = ShdrServer(Later("m1", [batch]), port=0)
        port = await server.start()
        shdr = ShdrAdapter(ShdrSettings("127.0.0.1", "m1", port=port))
        got = await collect(shdr, 2.0)
        await server.stop()
        return got

    waves = [w for b in asyncio.run(run()) if isinstance(b, SampleBatch) for w in b.waveforms]
    assert len(waves) == 1 and waves[0].rate_hz == 12800.0 and abs(waves[0].t0 - wave.t0) < 2e-6
    np.testing.assert_allclose(waves[0].values, wave.values, rtol=1e-5, atol=1e-5)
