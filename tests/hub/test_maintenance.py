"""Maintenance: alarm guides and work orders, in the book and through the API."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from machinetwin.hub import DuckDBStore
from machinetwin.hub.api import LiveSnapshot, create_api
from machinetwin.hub.auth import Role, UserDirectory
from machinetwin.hub.ingest import IngestCounters
from machinetwin.hub.maintenance import (
    WorkOrderBook,
    WorkOrderError,
    WorkOrderState,
    alarm_guide,
    alarm_guides,
)
from machinetwin.model import Alarm, AlarmCode, MachineDescriptor, Severity

HARBIN = MachineDescriptor("harbin-1", "VMC Harbin", "Harbin", "VMC-850")
PASSWORD = "lab password 2026"


def overload(t: float = 100.0) -> Alarm:
    return Alarm(AlarmCode.SPINDLE_OVERLOAD, Severity.FAULT, "spindle load 130 %", "spindle", t)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckDBStore]:
    s = DuckDBStore(tmp_path / "hub.duckdb")
    s.upsert_machine(HARBIN)
    yield s
    s.close()


@pytest.fixture
def book() -> Iterator[WorkOrderBook]:
    clock = itertools.count(1000.0)
    b = WorkOrderBook(":memory:", clock=lambda: next(clock))
    yield b
    b.close()


# --- guides ------------------------------------------------------------------------------


def test_every_alarm_code_has_a_guide_with_causes_and_checks() -> None:
    assert set(alarm_guides()) == {str(c) for c in AlarmCode}
    for code in AlarmCode:
        guide = alarm_guide(code)
        assert guide is not None and guide.title and guide.causes and guide.checks, code


# --- the book ----------------------------------------------------------------------------


def test_an_order_from_an_alarm_carries_its_guide_and_is_opened_once(
    book: WorkOrderBook, store: DuckDBStore
) -> None:
    alarm_id = store.write_alarm("harbin-1", overload())
    stored = store.alarms("harbin-1")[0]
    order = book.open_from_alarm(stored, "wang.li")
    assert order.alarm_id == alarm_id and order.alarm_code == "MT-200"
    assert order.priority == "high"  # a fault
    assert order.title == "Spindle overload on harbin-1"
    assert (
        "spindle load 130 %" in order.description and "1970-01-01 00:01:40 UTC" in order.description
    )
    assert "Probable causes:" in order.description and "Worn or broken tool" in order.description
    again = book.open_from_alarm(stored, "zhao.min")
    assert again.id == order.id and again.created_by == "wang.li"
    assert len(book.orders()) == 1


def test_order_life_assign_comment_close_is_logged_in_order(book: WorkOrderBook) -> None:
    order = book.open("harbin-1", "Way covers squeak", "", "wang.li")
    book.assign(order.id, "zhao.min", "chen.jie")
    book.comment(order.id, "covers bent at X+ end", "zhao.min")
    closed = book.close_order(order.id, "replaced X way cover, lubricated", "zhao.min")
    assert closed.state is WorkOrderState.CLOSED and closed.assignee == "zhao.min"
    assert (
        closed.resolution == "replaced X way cover, lubricated" and closed.closed_by == "zhao.min"
    )
    assert [(e.action, e.by) for e in closed.log] == [
        ("opened", "wang.li"), ("assigned", "chen.jie"), ("comment", "zhao.min"),
        ("closed", "zhao.min"),
    ]  # fmt: skip
    assert [e.at for e in closed.log] == sorted(e.at for e in closed.log)
    with pytest.raises(WorkOrderError, match="closed") as err:
        book.close_order(order.id, "again", "zhao.min")
    assert err.value.status == 409
    with pytest.raises(WorkOrderError, match="closed"):
        book.assign(order.id, "someone", "chen.jie")
    # A follow-up comment on a closed order is still allowed.
    assert (
        book.comment(order.id, "checked a week later: fine", "zhao.min").log[-1].action == "comment"
    )


def test_an_alarm_gets_a_new_order_once_its_first_is_closed(
    book: WorkOrderBook, store: DuckDBStore
) -> None:
    store.write_alarm("harbin-1", overload())
    stored = store.alarms("harbin-1")[0]
    first = book.open_from_alarm(stored, "wang.li")
    book.close_order(first.id, "tool replaced", "zhao.min")
    second = book.open_from_alarm(stored, "wang.li")
    assert second.id != first.id and second.state is WorkOrderState.OPEN


def test_refusals_change_nothing(book: WorkOrderBook) -> None:
    with pytest.raises(WorkOrderError, match="title: must not be empty"):
        book.open("harbin-1", "  ", "", "wang.li")
    with pytest.raises(WorkOrderError, match="priority 'asap'"):
        book.open("harbin-1", "x", "", "wang.li", priority="asap")
    with pytest.raises(WorkOrderError, match="no work order 7") as err:
        book.comment(7, "hello", "wang.li")
    assert err.value.status == 404
    order = book.open("harbin-1", "x", "", "wang.li")
    with pytest.raises(WorkOrderError, match="resolution: must not be empty"):
        book.close_order(order.id, "", "zhao.min")
    assert book.get(order.id).state is WorkOrderState.OPEN and len(book.get(order.id).log) == 1
    assert len(book.orders()) == 1


def test_orders_survive_reopening_the_file(tmp_path: Path) -> None:
    path = tmp_path / "work_orders.sqlite"
    with_book = WorkOrderBook(path)
    order = with_book.open("harbin-1", "Coolant pump noisy", "since Monday", "wang.li")
    with_book.close_order(order.id, "pump bearing replaced", "zhao.min")
    with_book.close()
    again = WorkOrderBook(path)
    got = again.get(order.id)
    assert got.state is WorkOrderState.CLOSED and got.resolution == "pump bearing replaced"
    assert again.orders(state="closed")[0].id == order.id and again.orders(state="open") == []
    again.close()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["assign", "comment", "close"]), st.text(max_size=30)),
                max_size=12))  # fmt: skip
def test_any_sequence_of_actions_keeps_the_order_consistent(actions: list[tuple[str, str]]) -> None:
    book = WorkOrderBook(":memory:")
    order = book.open("harbin-1", "x", "", "wang.li")
    logged = 1
    for action, text in actions:
        before = book.get(order.id)
        try:
            if action == "assign":
                book.assign(order.id, text, "chen.jie")
            elif action == "comment":
                book.comment(order.id, text, "zhao.min")
            else:
                book.close_order(order.id, text, "zhao.min")
            logged += 1
        except WorkOrderError:
            assert book.get(order.id) == before  # a refusal changes nothing
    final = book.get(order.id)
    assert len(final.log) == logged
    closes = [e for e in final.log if e.action == "closed"]
    assert len(closes) <= 1 and (final.state is WorkOrderState.CLOSED) == bool(closes)
    book.close()


# --- the API -----------------------------------------------------------------------------


def _live() -> LiveSnapshot:
    return LiveSnapshot({}, IngestCounters(), 0.0)


@pytest.fixture
def clients(store: DuckDBStore, book: WorkOrderBook) -> Iterator[dict[str, TestClient]]:
    users = UserDirectory(":memory:", hasher=PasswordHasher(time_cost=1, memory_cost=1024,
                                                            parallelism=1))  # fmt: skip
    app = create_api(store, _live, users, maintenance=book)
    out = {}
    for name, role in (("viewer.a", Role.VIEWER), ("wang.li", Role.OPERATOR),
                       ("zhao.min", Role.MAINTAINER)):  # fmt: skip
        users.add_user(name, PASSWORD, role)
        c = TestClient(app)
        c.post("/api/login", json={"username": name, "password": PASSWORD}).raise_for_status()
        out[name] = c
    yield out
    for c in out.values():
        c.close()


def test_api_work_order_from_alarm_to_closed(
    clients: dict[str, TestClient], store: DuckDBStore
) -> None:
    alarm_id = store.write_alarm("harbin-1", overload())
    op, maint, viewer = clients["wang.li"], clients["zhao.min"], clients["viewer.a"]
    r = op.post("/api/work-orders", json={"machine": "harbin-1", "alarm_id": alarm_id})
    assert r.status_code == 201, r.text
    order = r.json()
    assert order["alarm_code"] == "MT-200" and order["created_by"] == "wang.li"
    again = op.post("/api/work-orders", json={"machine": "harbin-1", "alarm_id": alarm_id})
    assert again.status_code == 200 and again.json()["id"] == order["id"]
    oid = order["id"]
    assert op.post(f"/api/work-orders/{oid}/close", json={"text": "done"}).status_code == 403
    maint.post(f"/api/work-orders/{oid}/assign", json={"assignee": "zhao.min"}).raise_for_status()
    op.post(f"/api/work-orders/{oid}/comments", json={"text": "insert chipped"}).raise_for_status()
    closed = maint.post(f"/api/work-orders/{oid}/close", json={"text": "replaced insert"})
    assert closed.status_code == 200 and closed.json()["state"] == "closed"
    assert maint.post(f"/api/work-orders/{oid}/close", json={"text": "x"}).status_code == 409
    listed = viewer.get(
        "/api/work-orders", params={"machine": "harbin-1", "state": "closed"}
    ).json()
    assert [o["id"] for o in listed] == [oid]
    assert [e["action"] for e in listed[0]["log"]] == ["opened", "assigned", "comment", "closed"]
    assert (
        viewer.post("/api/work-orders", json={"machine": "harbin-1", "title": "x"}).status_code
        == 403
    )


def test_api_refuses_unknown_machine_alarm_and_missing_title(
    clients: dict[str, TestClient], store: DuckDBStore
) -> None:
    op = clients["wang.li"]
    assert (
        op.post("/api/work-orders", json={"machine": "nowhere-9", "title": "x"}).status_code == 404
    )
    r = op.post("/api/work-orders", json={"machine": "harbin-1", "alarm_id": 999})
    assert r.status_code == 404 and "no alarm 999 on harbin-1" in r.json()["detail"]
    r = op.post("/api/work-orders", json={"machine": "harbin-1"})
    assert r.status_code == 422 and "title: needed" in str(r.json()["detail"])
    assert op.get("/api/work-orders").json() == []


def test_api_alarm_guides(clients: dict[str, TestClient]) -> None:
    viewer = clients["viewer.a"]
    guide = viewer.get("/api/alarm-guides/MT-110").raise_for_status().json()
    assert guide["title"] == "Following error too large" and guide["checks"]
    assert viewer.get("/api/alarm-guides/MT-999").status_code == 404
    assert len(viewer.get("/api/alarm-guides").json()) == len(AlarmCode)
