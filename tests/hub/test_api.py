"""The hub's REST/WebSocket API against a real DuckDB store and a fake live view.

The live view is our own interface (a function returning a snapshot), so a plain
function stands in for a running ingest; the store is the real one in ``tmp_path``.
The clients log in as an operator of a real (in-memory) user directory; who may do
what is tested in test_auth.py.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pyarrow.parquet as pq
import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from starlette.websockets import WebSocketDisconnect

from machinetwin.hub import DuckDBStore, Store
from machinetwin.hub.api import (
    ExecutionName,
    LiveSnapshot,
    LiveView,
    SeverityName,
    create_api,
    live_view_from,
)
from machinetwin.hub.auth import Role, UserDirectory
from machinetwin.hub.ingest import HubIngest, IngestCounters, LiveState
from machinetwin.model import (
    Alarm,
    AlarmCode,
    Execution,
    MachineDescriptor,
    SampleBatch,
    Severity,
    Waveform,
)
from machinetwin.protocols.broker import BrokerAddress

T_START = 1_000.0
N_BATCHES = 30  # one second of 10 Hz samples each
SIGS = ["x.pos", "spindle.load", "execution", "line"]
HARBIN = MachineDescriptor("harbin-1", "VMC Harbin", "Harbin", "VMC-600",
                           signals=("coolant.flow",))  # fmt: skip
TIANJIN = MachineDescriptor("tianjin-1", "VMC Tianjin", "Tianjin", "VMC-600")
DALIAN = "dalian-1"  # sent data but no birth message: no descriptor
OPERATOR, PASSWORD = "wang.li", "lab password 2026"


def make_batch(machine: str, seq: int) -> SampleBatch:
    rng = np.random.default_rng([seq, sum(map(ord, machine))])
    t = T_START + seq + np.arange(10) * 0.1
    cols = {
        "x.pos": np.round(rng.uniform(0, 600, 10), 3),
        "spindle.load": np.round(rng.uniform(0, 100, 10), 2),
        "execution": np.full(10, float(Execution.ACTIVE)),
        "line": np.full(10, float(10 + seq)),
    }
    if machine == HARBIN.machine_id:
        cols["coolant.flow"] = np.round(rng.uniform(1, 2, 10), 3)
    waves = [Waveform("spindle.vib", float(t[0]), 200.0, rng.normal(0, 1, 50))] if seq == 3 else []
    return SampleBatch(machine, t, cols, seq=seq, waveforms=waves)


def fill(store: Store) -> dict[str, int]:
    store.upsert_machine(HARBIN)
    store.upsert_machine(TIANJIN)
    batches = [make_batch(m, s) for m in (HARBIN.machine_id, TIANJIN.machine_id, DALIAN)
               for s in range(N_BATCHES)]  # fmt: skip
    assert all(store.write_batches(batches))
    return {
        "overload": store.write_alarm(
            HARBIN.machine_id,
            Alarm(AlarmCode.SPINDLE_OVERLOAD, Severity.FAULT, "spindle load 130 %", "spindle",
                  T_START + 5),
        ),
        "cleared": store.write_alarm(
            HARBIN.machine_id,
            Alarm(AlarmCode.FOLLOWING_ERROR, Severity.WARNING, "X following error", "x",
                  T_START + 2, cleared_at=T_START + 3),
        ),
        "tianjin": store.write_alarm(
            TIANJIN.machine_id,
            Alarm(AlarmCode.COOLANT_FAILURE, Severity.WARNING, "coolant low", "coolant",
                  T_START + 7),
        ),
    }  # fmt: skip


class FakeLive:
    """A live view: harbin online and running, tianjin offline; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> LiveSnapshot:
        self.calls += 1
        harbin = LiveState(
            HARBIN.machine_id, HARBIN, online=True, last_seen=1.7e9, latency_s=0.0231,
            values={"execution": float(Execution.ACTIVE), "line": 42.0, "spindle.load": 37.5,
                    "x.pos": 120.25, "feed": float("nan")},
            batches=30, samples=1500,
        )  # fmt: skip
        tianjin = LiveState(TIANJIN.machine_id, None, online=False, last_seen=1.6e9,
                            values={"execution": 99.0})  # fmt: skip
        counters = IngestCounters(received=100 + self.calls, stored=90, duplicates=7, samples=4500,
                                  acks_sent=80, rejected=Counter({"malformed payload": 3}))  # fmt: skip
        return LiveSnapshot(
            {"harbin-1": harbin, "tianjin-1": tianjin}, counters, 1.7e9 + self.calls
        )


def api_client(store: Store, live: LiveView) -> TestClient:
    """A client of the API, logged in as an operator (the session cookie)."""
    users = UserDirectory(":memory:", hasher=PasswordHasher(time_cost=1, memory_cost=1024,
                                                            parallelism=1))  # fmt: skip
    users.add_user(OPERATOR, PASSWORD, Role.OPERATOR)
    client = TestClient(create_api(store, live, users))
    client.post("/api/login", json={"username": OPERATOR, "password": PASSWORD}).raise_for_status()
    return client


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckDBStore]:
    s = DuckDBStore(tmp_path / "hub.duckdb")
    yield s
    s.close()


@pytest.fixture
def alarm_ids(store: DuckDBStore) -> dict[str, int]:
    return fill(store)


@pytest.fixture
def client(store: DuckDBStore, alarm_ids: dict[str, int]) -> Iterator[TestClient]:
    with api_client(store, FakeLive()) as c:
        yield c


# --- machines and live state -------------------------------------------------------------------


def test_machines_list_descriptors_and_live_summary(client: TestClient) -> None:
    got = {m["machine_id"]: m for m in client.get("/api/machines").raise_for_status().json()}
    assert sorted(got) == ["harbin-1", "tianjin-1"]  # dalian has no descriptor and no live state
    harbin = got["harbin-1"]
    assert harbin["descriptor"]["site"] == "Harbin"
    assert harbin["descriptor"]["signals"] == ["coolant.flow"]
    assert harbin["live"] == {
        "online": True, "execution": "ACTIVE", "line": 42, "spindle_load": 37.5,
        "active_alarms": 1, "last_seen": 1.7e9, "latency_ms": pytest.approx(23.1),
    }  # fmt: skip
    tianjin = got["tianjin-1"]["live"]
    assert tianjin["online"] is False
    assert tianjin["execution"] == "UNKNOWN"  # code 99 is no Execution: shown, not a 500
    assert tianjin["latency_ms"] is None and tianjin["active_alarms"] == 1


def test_live_of_one_machine(client: TestClient, alarm_ids: dict[str, int]) -> None:
    live = client.get("/api/machines/harbin-1/live").raise_for_status().json()
    assert live["online"] and live["execution"] == "ACTIVE"
    assert live["values"] == {"execution": 1.0, "line": 42.0, "spindle.load": 37.5, "x.pos": 120.25}
    assert [a["id"] for a in live["alarms"]] == [alarm_ids["overload"]]  # the cleared one is not
    assert live["alarms"][0]["severity"] == "FAULT" and live["alarms"][0]["code"] == "MT-200"
    assert live["latency_ms"] == pytest.approx(23.1)


def test_live_of_a_machine_only_the_store_knows_uses_its_latest_values(
    client: TestClient, store: DuckDBStore
) -> None:
    live = client.get(f"/api/machines/{DALIAN}/live").raise_for_status().json()
    expected = {k: v for k, (_, v) in store.latest(DALIAN).items()}
    assert live["values"] == pytest.approx(expected)
    assert live["online"] is False and live["last_seen"] is None
    assert live["execution"] == "ACTIVE"


@pytest.mark.parametrize("path", ["live", "samples?t0=0&t1=1", "export?t0=0&t1=1"])
def test_unknown_machine_is_404(client: TestClient, path: str) -> None:
    r = client.get(f"/api/machines/nowhere-9/{path}")
    assert r.status_code == 404
    assert r.json() == {"detail": "unknown machine 'nowhere-9'"}


# --- samples ---------------------------------------------------------------------------------


def test_samples_are_the_store_query_downsampled(client: TestClient, store: DuckDBStore) -> None:
    t0, t1 = T_START + 2, T_START + 22
    r = client.get("/api/machines/harbin-1/samples",
                   params={"signals": "x.pos,spindle.load", "t0": t0, "t1": t1, "buckets": 20})  # fmt: skip
    body = r.raise_for_status().json()
    assert (body["t0"], body["t1"], body["buckets"]) == (t0, t1, 20)
    expected = store.query("harbin-1", ["x.pos", "spindle.load"], t0, t1, 20)
    assert [s["signal"] for s in body["series"]] == ["x.pos", "spindle.load"]
    for s in body["series"]:
        e = expected[s["signal"]]
        assert not s["raw"] and len(s["t"]) == 20
        for key in ("t", "min", "max", "mean", "count"):
            np.testing.assert_allclose(s[key], getattr(e, key))
    assert body["series"][0]["unit"] == "mm"


def test_samples_are_raw_when_few_and_empty_when_none(client: TestClient) -> None:
    r = client.get("/api/machines/harbin-1/samples",
                   params=[("signals", "line"), ("signals", "coolant.flow,feed"),
                           ("t0", T_START), ("t1", T_START + 1.05)])  # fmt: skip
    series = {s["signal"]: s for s in r.raise_for_status().json()["series"]}
    assert list(series) == ["line", "coolant.flow", "feed"]
    line = series["line"]
    assert line["raw"] and line["t"] == pytest.approx(T_START + np.arange(11) * 0.1)
    assert line["min"] == line["max"] == line["mean"] == [10.0] * 10 + [11.0]
    assert series["coolant.flow"]["unit"] is None  # declared by the machine, not canonical
    assert series["feed"]["t"] == [] and series["feed"]["raw"]  # canonical but never sent


def test_samples_without_signals_returns_every_signal_with_data(client: TestClient) -> None:
    r = client.get("/api/machines/harbin-1/samples", params={"t0": T_START, "t1": T_START + 30})
    names = [s["signal"] for s in r.raise_for_status().json()["series"]]
    assert names == sorted([*SIGS, "coolant.flow", "spindle.vib"])


@pytest.mark.parametrize(
    ("params", "loc", "words"),
    [
        ({"t0": 5, "t1": 5}, "t1", "greater than t0"),
        ({"t0": 5, "t1": 4}, "t1", "greater than t0"),
        ({"t0": 5, "t1": 5 + 1e-9}, "t1", "at least"),
        ({"t0": "nan", "t1": 4}, "t0", "finite"),
        ({"t0": 0, "t1": "inf"}, "t1", "finite"),
        ({"t0": 0, "t1": 1e13}, "t1", "less than or equal"),
        ({"t0": "yesterday", "t1": 4}, "t0", "number"),
        ({"t1": 4}, "t0", "required"),
        ({"t0": 0, "t1": 4, "buckets": 0}, "buckets", "greater than or equal to 1"),
        ({"t0": 0, "t1": 4, "buckets": 10_001}, "buckets", "less than or equal to 10000"),
        ({"t0": 0, "t1": 4, "signals": "x.pos,warp.drive"}, "signals", "warp.drive"),
        ({"t0": 0, "t1": 4, "signals": " , "}, "signals", "at least one signal"),
    ],
)
def test_samples_bad_parameters_are_422_naming_the_parameter(
    client: TestClient, params: dict[str, Any], loc: str, words: str
) -> None:
    r = client.get("/api/machines/harbin-1/samples", params=params)
    assert r.status_code == 422, r.text
    (error,) = r.json()["detail"]
    assert error["loc"] == ["query", loc]
    assert words in error["msg"]


@pytest.mark.parametrize(
    ("t0", "t1", "buckets"),
    [(-1e12, 1e12, 10_000), (T_START + 1, T_START + 1 + 2e-6, 10_000), (0, 1e12, 1),
     (T_START + 0.05, T_START + 0.15, 3)],
)  # fmt: skip
def test_extreme_valid_ranges_answer(
    client: TestClient, t0: float, t1: float, buckets: int
) -> None:
    r = client.get("/api/machines/harbin-1/samples",
                   params={"t0": t0, "t1": t1, "buckets": buckets, "signals": "x.pos,spindle.vib"})  # fmt: skip
    assert r.status_code == 200, r.text
    for s in r.json()["series"]:
        assert all(math.isfinite(v) for v in s["t"] + s["mean"])


def test_a_signal_only_another_machine_declares_is_unknown(client: TestClient) -> None:
    r = client.get("/api/machines/tianjin-1/samples",
                   params={"t0": 0, "t1": 4, "signals": "coolant.flow"})  # fmt: skip
    assert r.status_code == 422 and "coolant.flow" in r.text


# --- export ----------------------------------------------------------------------------------


def raw_rows(store: Store, machine: str, t0: float, t1: float) -> list[tuple[str, float, float]]:
    """The store's raw rows of a range, ordered as the export orders them."""
    names = list(store.latest(machine))
    got = store.query(machine, names, t0, t1, buckets=10**9)
    rows = [(n, t, v) for n, s in got.items() for t, v in zip(s.t.tolist(), s.values.tolist(),
                                                              strict=True)]  # fmt: skip
    return sorted(rows)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_rows_equal_the_store_raw_rows(
    client: TestClient, store: DuckDBStore, fmt: str
) -> None:
    t0, t1 = T_START + 2.5, T_START + 4.5  # includes the waveform of seq 3
    r = client.get("/api/machines/harbin-1/export", params={"t0": t0, "t1": t1, "format": fmt})
    r.raise_for_status()
    assert r.headers["content-disposition"].startswith("attachment;")
    assert f".{fmt}" in r.headers["content-disposition"]
    if fmt == "csv":
        assert r.headers["content-type"].startswith("text/csv")
        table = list(csv.DictReader(io.StringIO(r.text)))
        rows = [(d["signal"], float(d["t"]), float(d["value"])) for d in table]
        machines = {d["machine"] for d in table}
    else:
        table = pq.read_table(io.BytesIO(r.content)).to_pylist()
        rows = [(d["signal"], d["t"], d["value"]) for d in table]
        machines = {d["machine"] for d in table}
    expected = raw_rows(store, "harbin-1", t0, t1)
    assert len(expected) > 100 and any(n == "spindle.vib" for n, _, _ in expected)
    assert machines == {"harbin-1"}
    assert sorted(rows) == expected
    assert rows == sorted(rows, key=lambda r: (r[0], r[1]))  # ordered by signal, t


def test_export_of_chosen_signals_and_bad_format(client: TestClient) -> None:
    params = {"t0": T_START, "t1": T_START + 2, "format": "csv", "signals": "line"}
    r = client.get("/api/machines/tianjin-1/export", params=params)
    assert {d["signal"] for d in csv.DictReader(io.StringIO(r.text))} == {"line"}
    bad = client.get("/api/machines/tianjin-1/export", params={**params, "format": "xlsx"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "format"]
    assert (
        client.get("/api/machines/tianjin-1/export", params={"t0": 3, "t1": 2}).status_code == 422
    )


# --- alarms ----------------------------------------------------------------------------------


def test_alarms_filter_by_machine_active_and_since(
    client: TestClient, alarm_ids: dict[str, int]
) -> None:
    def ids(**params: Any) -> list[int]:
        return [a["id"] for a in client.get("/api/alarms", params=params).raise_for_status().json()]

    assert ids() == [alarm_ids["tianjin"], alarm_ids["overload"], alarm_ids["cleared"]]
    assert ids(machine="harbin-1") == [alarm_ids["overload"], alarm_ids["cleared"]]
    assert ids(machine="harbin-1", active="false") == [alarm_ids["cleared"]]
    assert ids(active="true", since=T_START + 6) == [alarm_ids["tianjin"]]
    assert ids(limit=1) == [alarm_ids["tianjin"]]
    assert ids(machine="nowhere") == []
    assert client.get("/api/alarms", params={"active": "maybe"}).status_code == 422


def test_alarm_ack_round_trip(client: TestClient, alarm_ids: dict[str, int]) -> None:
    alarm_id = alarm_ids["overload"]
    r = client.post(f"/api/alarms/{alarm_id}/ack", json={"comment": "bearing check planned"})
    acked = r.raise_for_status().json()
    # The logged-in user is recorded.
    assert acked["acknowledged_by"] == OPERATOR and acked["comment"] == "bearing check planned"
    assert acked["acknowledged_at"] > 0 and acked["active"]  # acknowledged is not cleared
    (listed,) = [a for a in client.get("/api/alarms").json() if a["id"] == alarm_id]
    assert listed == acked


@pytest.mark.parametrize(
    ("alarm", "body", "status"),
    [
        (987_654, {"user": "wang.li"}, 404),
        (0, {"user": "wang.li"}, 422),
        (2**70, {"user": "wang.li"}, 422),
        ("x", {"user": "wang.li"}, 422),
        (1, {"user": ""}, 422),
        (1, {"user": "   "}, 422),
        (1, {"user": "zhao", "comment": "signed as someone else"}, 422),
        (1, {"user": "wang.li", "role": "admin"}, 422),
    ],
)
def test_alarm_ack_errors(client: TestClient, alarm: object, body: dict, status: int) -> None:
    r = client.post(f"/api/alarms/{alarm}/ack", json=body)
    assert r.status_code == status, r.text
    if status == 404:
        assert "987654" in r.json()["detail"]


# --- ingest, health, feed, documentation -------------------------------------------------------


def test_ingest_counters(client: TestClient) -> None:
    got = client.get("/api/ingest").raise_for_status().json()
    assert got["stored"] == 90 and got["duplicates"] == 7 and got["samples"] == 4500
    assert got["rejected"] == {"malformed payload": 3} and got["rejected_total"] == 3
    assert got["machines"] == 2 and got["machines_online"] == 1


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "machines": 2}


def test_websocket_pushes_snapshots_and_closes_cleanly(client: TestClient) -> None:
    with client.websocket_connect("/api/ws/live?interval_ms=20") as ws:
        first, second = ws.receive_json(), ws.receive_json()
    assert second["t"] > first["t"]  # two snapshots, not one sent twice
    machines = {m["machine_id"]: m for m in first["machines"]}
    assert sorted(machines) == ["harbin-1", "tianjin-1"] and first["problem"] is None
    assert machines["harbin-1"]["values"]["line"] == 42.0
    assert [a["code"] for a in machines["harbin-1"]["alarms"]] == ["MT-200"]


def test_websocket_rejects_a_bad_interval(client: TestClient) -> None:
    with pytest.raises(WebSocketDisconnect) as exc, \
            client.websocket_connect("/api/ws/live?interval_ms=1") as ws:  # fmt: skip
        ws.receive_json()
    assert exc.value.code == 1008


def test_openapi_lists_every_path_and_docs_are_served(client: TestClient) -> None:
    doc = client.get("/openapi.json").raise_for_status().json()
    data_paths = {
        "/api/machines", "/api/machines/{machine_id}/live", "/api/machines/{machine_id}/samples",
        "/api/machines/{machine_id}/export", "/api/alarms", "/api/alarms/{alarm_id}/ack",
        "/api/ingest", "/healthz",
    }  # fmt: skip
    assert set(doc["paths"]) == data_paths | {"/api/login", "/api/logout", "/api/me", "/api/users"}
    for path in data_paths:
        for op in doc["paths"][path].values():
            if path != "/healthz":  # how to log in is documented on every protected route
                assert {"HTTPBearer": []} in op["security"], path
            ok = op["responses"]["200"]["content"]
            if path.endswith("/export"):
                assert set(ok) == {"text/csv", "application/vnd.apache.parquet"}
            else:  # every JSON answer has a schema a client generator can use
                assert ok["application/json"]["schema"], path
            assert "503" in op["responses"], path
    samples = doc["paths"]["/api/machines/{machine_id}/samples"]["get"]
    assert {"404", "422"} <= set(samples["responses"])
    params = {p["name"]: p for p in samples["parameters"]}
    assert params["buckets"]["schema"]["maximum"] == 10_000
    schemas = doc["components"]["schemas"]
    assert {"MachineOut", "MachineLiveOut", "SamplesOut", "AlarmOut", "AckIn", "IngestOut",
            "Problem"} <= set(schemas)  # fmt: skip
    assert client.get("/docs").status_code == 200


def test_enum_literals_follow_the_model() -> None:
    assert get_args(SeverityName) == tuple(Severity.__members__)
    assert get_args(ExecutionName) == (*Execution.__members__, "UNKNOWN")


# --- failures of the store and the live view: 503, never 500 ----------------------------------


class BrokenStore:
    """The real store, except that the named methods fail as a full disk would."""

    def __init__(self, store: Store, broken: set[str]) -> None:
        self._store, self._broken = store, broken

    def __getattr__(self, name: str) -> Any:
        if name in self._broken:

            def fail(*args: Any, **kwargs: Any) -> Any:
                raise OSError(28, "No space left on device")

            return fail
        return getattr(self._store, name)


@pytest.mark.parametrize(
    ("broken", "path"),
    [
        ("alarms", "/api/machines"),
        ("alarms", "/api/alarms"),
        ("machines", "/healthz"),
        ("query", f"/api/machines/harbin-1/samples?t0={T_START}&t1={T_START + 9}"),
        ("export", f"/api/machines/harbin-1/export?t0={T_START}&t1={T_START + 9}"),
    ],
)
def test_store_failures_are_503_with_a_message(
    store: DuckDBStore, alarm_ids: dict[str, int], broken: str, path: str
) -> None:
    client = api_client(BrokenStore(store, {broken}), FakeLive())  # type: ignore[arg-type]
    r = client.get(path)
    assert r.status_code == 503
    assert f"store.{broken} failed" in r.json()["detail"] and "No space left" in r.json()["detail"]


def test_live_view_failures_are_503_and_a_problem_frame(store: DuckDBStore) -> None:
    def broken() -> LiveSnapshot:
        raise RuntimeError("ingest is gone")

    client = api_client(store, broken)
    r = client.get("/api/ingest")
    assert r.status_code == 503 and "ingest is gone" in r.json()["detail"]
    with client.websocket_connect("/api/ws/live?interval_ms=20") as ws:
        frame = ws.receive_json()
    assert frame["machines"] == [] and "ingest is gone" in frame["problem"]


def test_feed_keeps_going_when_alarms_are_unavailable(
    store: DuckDBStore, alarm_ids: dict[str, int]
) -> None:
    client = api_client(BrokenStore(store, {"alarms"}), FakeLive())  # type: ignore[arg-type]
    with client.websocket_connect("/api/ws/live?interval_ms=20") as ws:
        frame = ws.receive_json()
    assert len(frame["machines"]) == 2 and "alarms unavailable" in frame["problem"]


# --- the adapter over a real HubIngest -----------------------------------------------------------


def test_live_view_from_ingest_copies_under_the_lock(store: DuckDBStore) -> None:
    ingest = HubIngest(store, BrokerAddress("127.0.0.1", 1))  # never started: no connection
    ingest.live["harbin-1"] = LiveState("harbin-1", HARBIN, online=True, values={"line": 7.0})
    ingest.counters.stored = 5
    ingest.counters.rejected["invalid batch"] += 2
    view = live_view_from(ingest)
    snap = view()
    ingest.live["harbin-1"].values["line"] = 8.0  # ingest goes on; the snapshot must not
    ingest.counters.rejected["invalid batch"] += 1
    assert snap.machines["harbin-1"].values == {"line": 7.0}
    assert snap.counters.stored == 5 and snap.counters.rejected == {"invalid batch": 2}
    assert snap.taken_at > 0
    body = api_client(store, view).get("/api/ingest").json()
    assert body["rejected"] == {"invalid batch": 3}


# --- property: the samples endpoint never answers 5xx --------------------------------------------


@pytest.fixture(scope="module")
def shared_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    store = DuckDBStore(tmp_path_factory.mktemp("api") / "hub.duckdb")
    fill(store)
    with api_client(store, FakeLive()) as c:
        yield c
    store.close()


_near_data = st.floats(T_START - 5, T_START + 40).map(repr)  # ranges that hold samples
_wild = st.one_of(
    st.floats().map(repr),  # nan, inf, -0.0, 1e+308, 5e-324, ...
    st.integers(-(10**30), 10**30).map(str),
    st.text(max_size=6),
)
_times = st.one_of(_near_data, _wild, st.none())


@st.composite
def _time_range(draw: st.DrawFn) -> tuple[str | None, str | None]:
    """Half the time a valid range over the data, so that many requests reach the store."""
    if draw(st.booleans()):
        t0 = draw(st.floats(T_START - 5, T_START + 40))
        return repr(t0), repr(t0 + draw(st.floats(1e-6, 50)))
    return draw(_times), draw(_times)


_buckets = st.one_of(
    st.integers(1, 10_000).map(str),
    st.integers(1, 50).map(str),
    st.integers(-5, 20_000).map(str),
    _wild,
    st.none(),
)
_names = st.sampled_from([*SIGS, "spindle.vib", "coolant.flow", "feed", "x.pos,line", " line "])
_signals = st.one_of(
    st.none(),
    st.lists(_names, min_size=1, max_size=3),
    st.lists(_names, min_size=1, max_size=3),
    st.lists(_names | st.sampled_from(["warp.drive", "", ","]) | st.text(max_size=10), max_size=4),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    machine=st.sampled_from(["harbin-1", "harbin-1", DALIAN, "nowhere"]),
    time_range=_time_range(),
    buckets=_buckets,
    signals=_signals,
)
def test_samples_parameters_never_cause_a_5xx(
    shared_client: TestClient,
    machine: str,
    time_range: tuple[str | None, str | None],
    buckets: str | None,
    signals: list[str] | None,
) -> None:
    t0, t1 = time_range
    params: list[tuple[str, str]] = [(k, v) for k, v in
                                     (("t0", t0), ("t1", t1), ("buckets", buckets)) if v is not None]  # fmt: skip
    params += [("signals", s) for s in signals or []]
    r = shared_client.get(f"/api/machines/{machine}/samples", params=params)
    assert r.status_code in (200, 404, 422), (params, r.status_code, r.text)
    event(f"status {r.status_code}")
    body = r.json()
    if r.status_code != 200:
        assert body["detail"]
        return
    lo, hi = float(body["t0"]), float(body["t1"])
    for s in body["series"]:
        assert all(math.isfinite(x) for x in itertools.chain(s["t"], s["min"], s["max"], s["mean"]))
        if s["raw"]:
            assert all(lo <= t < hi for t in s["t"])
        else:
            assert len(s["t"]) <= body["buckets"]
