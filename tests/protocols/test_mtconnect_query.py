"""MTConnect ``/current?at=`` and ``path=`` on our agent.

No cppagent here: ``at`` is checked against a plain replay of every observation ever
appended (the state at a sequence, exact even for what left the ring), ``path`` against
the standard's meaning of an XPath over the probe document (a selected DataItem is
itself, a selected component stands for the data items below it), over HTTP.
"""

from __future__ import annotations

import asyncio
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from machinetwin.protocols.mtconnect.agent import MTConnectAgent, RequestError, select_data_items
from machinetwin.protocols.mtconnect.buffer import ObservationBuffer, objects
from machinetwin.protocols.mtconnect.documents import probe_document

sys.path.insert(0, str(Path(__file__).parent))
from test_mtconnect import batch  # noqa: E402
from test_mtconnect_support import Scripted  # noqa: E402

N_ITEMS, COND = 4, 3  # item 3 is a condition
levels = st.sampled_from(["NORMAL", "WARNING", "FAULT", "UNAVAILABLE"])
observation = st.one_of(
    st.tuples(st.integers(0, COND - 1), st.floats(-1e3, 1e3)),
    st.tuples(st.just(COND), st.tuples(levels, st.sampled_from(["", "E1", "E2"]))),
)


def _replay(log: list[tuple[int, object]], at: int) -> tuple[dict[int, tuple], dict[str, str]]:
    """The plain meaning: each item's last observation up to ``at``, the active codes."""
    last: dict[int, tuple] = {}
    active: dict[str, str] = {}
    for seq, (item, value) in enumerate(log[:at], start=1):
        last[item] = (seq, value)
        if item == COND:
            level, code = value  # type: ignore[misc]
            if level in ("NORMAL", "UNAVAILABLE") and (not code or level == "UNAVAILABLE"):
                active = {"": level} if level == "UNAVAILABLE" else {}
            elif level == "NORMAL":
                active.pop(code, None)
            else:
                active.pop("", None)
                active[code] = level
    return last, active


@settings(max_examples=150, deadline=None)
@given(capacity=st.integers(1, 12), chunks=st.lists(st.lists(observation, max_size=15),
                                                     min_size=1, max_size=8),
       pick=st.floats(0, 1))  # fmt: skip
def test_state_at_any_held_sequence_matches_a_plain_replay(
    capacity: int, chunks: list[list[tuple[int, object]]], pick: float
) -> None:
    buf = ObservationBuffer(N_ITEMS, capacity, conditions=np.arange(N_ITEMS) == COND)
    log: list[tuple[int, object]] = []
    for chunk in chunks:
        plain = [(i, v) for i, v in chunk if i != COND]
        if plain:
            items = np.array([i for i, _ in plain], np.int32)
            values = np.array([v for _, v in plain], float)
            buf.append(items, np.arange(len(plain), dtype=float), values)
            log += plain
        for i, (level, code) in (c for c in chunk if c[0] == COND):
            buf.append_condition(i, 0.0, (level, code, "", "", ""))
            log.append((i, (level, code)))
    if buf.last_sequence < buf.first_sequence:
        return
    at = buf.first_sequence + round(pick * (buf.last_sequence - buf.first_sequence))
    state, active = buf.state_at(at)
    last, codes = _replay(log, at)
    assert sorted(state.item.tolist()) == sorted(last)
    for k, item in enumerate(state.item.tolist()):
        seq, value = last[item]
        assert state.seq[k] == seq
        if item != COND:
            assert state.value[k] == value
    got = {code: payload[0] for code, (_, _, payload) in active.get(COND, {}).items()}
    assert got == codes


def _probe() -> tuple[MTConnectAgent, str]:
    agent = MTConnectAgent([Scripted("m1", []), Scripted("m2", [])])
    return agent, probe_document(agent.header(), agent.devices, "xml")


@pytest.mark.parametrize("path, expected", [
    ('//DataItem[@type="POSITION"]', {f"{m}_{a}{s}" for m in ("m1", "m2") for a in "xyz"
                                      for s in ("pos", "cmd")}),
    ("//Linear[@name='X']", {f"{m}_x{s}" for m in ("m1", "m2") for s in ("pos", "cmd", "load",
                                                                           "servo")}),
    ('//Device[@name="m2"]//Linear[@name="Y"]/DataItems/DataItem[@subType="ACTUAL"]',
     {"m2_ypos"}),
    ('//Device[@name="m1"]//DataItem[@type="POSITION"][@subType="COMMANDED"]'
     ' | //Device[@name="m1"]//DataItem[@type="AVAILABILITY"]',
     {"m1_xcmd", "m1_ycmd", "m1_zcmd", "m1_avail"}),
])  # fmt: skip
def test_path_selects_data_items_as_the_standard_means(path: str, expected: set[str]) -> None:
    _, probe = _probe()
    assert set(select_data_items(probe, path)) == expected


def test_a_component_stands_for_every_data_item_below_it() -> None:
    _, probe = _probe()
    root = ET.fromstring(probe)
    ns = {"m": root.tag[1:].split("}")[0]}
    axes = root.find(".//m:Device[@name='m1']//m:Axes", ns)
    assert axes is not None
    below = {e.get("id") for e in axes.iter(f"{{{ns['m']}}}DataItem")}
    assert set(select_data_items(probe, '/MTConnectDevices/Devices/Device[@name="m1"]//Axes')) \
        == below and len(below) > 10  # fmt: skip


@pytest.mark.parametrize("path", ["//DataItem[@type=", "//Nothing", '//DataItem[@type="NONE"]',
                                  "/Elsewhere/Devices"])  # fmt: skip
def test_bad_or_empty_paths_are_invalid_xpath(path: str) -> None:
    _, probe = _probe()
    with pytest.raises(RequestError) as e:
        select_data_items(probe, path)
    assert e.value.code == "INVALID_XPATH" and repr(path) in e.value.message


def _observations(doc: bytes) -> list[ET.Element]:
    return [e for e in ET.fromstring(doc).iter() if e.get("sequence")]


def test_current_at_and_path_over_http() -> None:
    """/current?at=N shows each item as of N (as /sample up to N says), nextSequence N+1;
    path= narrows /current and /sample; the errors are the standard's."""
    items = [batch("m1", 1.7e9, 10), batch("m1", 1.7e9 + 1, 10, x0=100.0)]

    async def run() -> dict[str, httpx.Response]:
        agent = MTConnectAgent([Scripted("m1", items)])
        async with agent.serving() as url, httpx.AsyncClient(base_url=url) as c:
            await asyncio.sleep(0.3)
            b = agent.buffer
            # a sequence in the middle of the x positions (a state with a real value)
            held = b.select(b.first_sequence, b.next_sequence)
            xpos = next(i.index for i in agent.devices[0].items() if i.id == "m1_xpos")
            seqs = held.seq[(held.item == xpos) & np.isfinite(held.value)]
            at = int(seqs[len(seqs) // 2])
            position = '//DataItem[@type="POSITION"][@subType="ACTUAL"]'
            return {
                "at": await c.get("/current", params={"at": at}),
                "upto": await c.get("/sample", params={"to": at, "count": b.capacity}),
                "path": await c.get("/m1/current", params={"path": position}),
                "sample_path": await c.get("/sample", params={"path": position, "count": 1000}),
                "at_json": await c.get("/current", params={"at": at, "format": "json"}),
                "late": await c.get("/current", params={"at": b.next_sequence}),
                "both": await c.get("/current", params={"at": at, "interval": 100}),
                "bad": await c.get("/current", params={"path": "//DataItem[@type="}),
                "at_value": at,  # type: ignore[dict-item]
            }

    r = asyncio.run(run())
    at = r.pop("at_value")  # type: ignore[assignment]
    doc = ET.fromstring(r["at"].content)
    header = next(e for e in doc.iter() if e.tag.endswith("Header"))
    assert int(header.get("nextSequence")) == at + 1  # type: ignore[arg-type]
    expected: dict[str, tuple[str, str]] = {}
    for e in _observations(r["upto"].content):  # in sequence order: the last one wins
        expected[e.get("dataItemId")] = (e.get("sequence"), e.text)  # type: ignore[index]
    got = {e.get("dataItemId"): (e.get("sequence"), e.text) for e in _observations(r["at"].content)
           if not e.tag.endswith(("Normal", "Warning", "Fault", "Unavailable"))}  # fmt: skip
    assert got == {k: v for k, v in expected.items() if k in got} and len(got) >= 5
    assert got["m1_xpos"][1] not in ("UNAVAILABLE", None)
    assert int(got["m1_xpos"][0]) <= at
    assert r["at_json"].status_code == 200
    for key in ("path", "sample_path"):
        ids = {e.get("dataItemId") for e in _observations(r[key].content)}
        assert ids == {"m1_xpos", "m1_ypos", "m1_zpos"} or ids == {"m1_xpos"}, (key, ids)
    assert r["late"].status_code == 400 and b"OUT_OF_RANGE" in r["late"].content
    assert r["both"].status_code == 400 and b"INVALID_REQUEST" in r["both"].content
    assert r["bad"].status_code == 400 and b"INVALID_XPATH" in r["bad"].content


def test_objects_keeps_tuples_whole() -> None:
    assert objects([("NORMAL", "", "", "", "")])[0] == ("NORMAL", "", "", "", "")
