"""Remote control end to end with real parts: the hub's API and command service, the
embedded MQTT broker, an emulated 15 ms link, the edge agent with its executor, and the
virtual machine. Roles at the hub, redelivery, restart, pre-flight, dead-man, audit."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from control_support import MACHINE, Edge, start_edge, wait_for
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from machinetwin.hub.api import create_api, live_view_from
from machinetwin.hub.auth import Role, UserDirectory
from machinetwin.hub.broker import EmbeddedBroker
from machinetwin.hub.commands import (
    AuditLog,
    CommandService,
    CommandSigner,
    CommandStatus,
    verify_audit,
)
from machinetwin.hub.duckdb_store import DuckDBStore
from machinetwin.hub.ingest import HubIngest
from machinetwin.model import Execution
from machinetwin.model.commands import COMMANDS, new_command
from machinetwin.net import BackgroundLink, LinkEmulator, LinkProfile
from machinetwin.protocols.broker import BrokerAddress

GOOD = "G21 G90 G54\nT1 M6 G43\nS6000 M3\nG0 X0 Y0 Z5\nG1 Z-1 F600\nG1 X30\nG0 Z5\nM5\nM2\n"
BAD = "G21 G90 G54\nT9 M6 G43\nS6000 M3\nG0 X0 Y0 Z5\nG1 Z-1 F600\nG1 X400\nG0 Z5\nM2\n"
ROLES = {"vera": Role.VIEWER, "otto": Role.OPERATOR, "mia": Role.MAINTAINER, "ada": Role.ADMIN}


@dataclass
class Rig:
    client: TestClient
    service: CommandService
    tokens: dict[str, str]
    edge: Edge
    link: BackgroundLink
    audit_path: Path
    site_dir: Path

    def post(self, who: str, path: str, body: dict) -> object:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        return self.client.post(path, json=body, headers=headers)

    def get(self, who: str, path: str, **params) -> object:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        return self.client.get(path, params=params, headers=headers)

    def command(self, who: str, name: str, args: dict | None = None):
        return self.post(
            who, f"/api/machines/{MACHINE}/commands", {"name": name, "args": args or {}}
        )

    def final(self, command_id: str, states=("done", "rejected", "failed", "duplicate")) -> dict:
        self.service.wait(command_id, states, 10.0)
        return self.get("vera", f"/api/machines/{MACHINE}/commands/{command_id}").json()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    broker = EmbeddedBroker()
    broker.start()
    store = DuckDBStore(tmp_path / "hub.duckdb")
    ingest = HubIngest(store, BrokerAddress("127.0.0.1", broker.port))
    ingest.start()
    signer = CommandSigner(Ed25519PrivateKey.generate())
    service = CommandService(signer, AuditLog(tmp_path / "audit.sqlite"),
                             BrokerAddress("127.0.0.1", broker.port))  # fmt: skip
    service.start()
    users = UserDirectory(":memory:", hasher=PasswordHasher(time_cost=1, memory_cost=1024,
                                                            parallelism=1))  # fmt: skip
    tokens = {}
    for name, role in ROLES.items():
        users.add_user(name, "correct horse battery", role)
        tokens[name] = users.create_token(name, "test")
    client = TestClient(create_api(store, live_view_from(ingest), users, commands=service))
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    link = BackgroundLink(LinkEmulator("127.0.0.1", broker.port, LinkProfile(latency_ms=15.0),
                                       cut_mode="blackhole"))  # fmt: skip
    link.__enter__()
    edge = start_edge(site_dir, signer, link.port)
    rig = Rig(client, service, tokens, edge, link, tmp_path / "audit.sqlite", site_dir)
    # the hub must have heard of the machine before it takes commands for it
    assert wait_for(lambda: rig.get("vera", f"/api/machines/{MACHINE}/live").status_code == 200, 15)
    yield rig
    edge.stop()
    link.__exit__(None, None, None)
    service.stop()
    ingest.stop()
    store.close()
    users.close()
    service.audit.close()
    broker.stop()


def grant(rig: Rig, minutes: float = 5) -> None:
    """Grant at the site, then wait until the edge's report reached the hub."""
    rig.edge.executor.permits.grant(MACHINE, minutes)
    assert wait_for(lambda: rig.service.gate(MACHINE).allowed, 5), rig.service.gate(MACHINE)


def test_command_round_trip_with_audit(rig: Rig) -> None:
    r = rig.command("otto", "feed_hold")
    assert r.status_code == 202, r.text
    out = rig.final(r.json()["id"])
    assert out["state"] == "done" and [x["status"] for x in out["replies"]] == ["accepted", "done"]
    assert wait_for(lambda: rig.edge.machine.execution == Execution.INTERRUPTED, 2)
    events = [e["event"] for e in rig.get("mia", "/api/audit", command_id=out["id"]).json()]
    assert sorted(events) == ["accepted", "done", "issued"]
    ok, message = verify_audit(rig.audit_path)
    assert ok, message


ARGS = {"select_program": {"program": "part.ngc"}, "feed_override": {"percent": 90},
        "rapid_override": {"percent": 90}, "spindle_override": {"percent": 90},
        "cycle_start": {"program_sha256": "0" * 64}, "mdi": {"line": "G0 X1"},
        "jog": {"axis": "x", "distance": 1.0, "feed": 100.0},
        "jog_continuous": {"axis": "x", "direction": 1, "feed": 100.0, "deadman_s": 0.5}}  # fmt: skip


def hub_expectation(role: Role, name: str) -> int:
    if role < Role.OPERATOR:
        return 403  # the route itself needs an operator
    if role < Role.parse(COMMANDS[name].min_role):
        return 403
    if COMMANDS[name].kind in ("state", "motion"):
        return 409  # the site has granted no permit (and cycle_start: no pre-flight)
    return 202


def test_role_by_command_matrix_at_the_hub(rig: Rig) -> None:
    """Every role against every command: the answer, and an audit entry for each."""
    names = sorted(n for n in COMMANDS if n not in ("heartbeat", "estop"))
    for who, role in ROLES.items():
        for name in names:
            r = rig.command(who, name, ARGS.get(name))
            assert r.status_code == hub_expectation(role, name), (who, name, r.text)
    assert (
        rig.client.post(f"/api/machines/{MACHINE}/commands", json={"name": "stop"}).status_code
        == 401
    )
    assert rig.command("otto", "launch_missiles").status_code == 422
    assert rig.command("otto", "feed_override", {"percent": 500}).status_code == 422
    assert rig.post("otto", "/api/machines/nowhere-1/commands", {"name": "stop"}).status_code == 404
    for who in ("vera", "otto"):
        assert rig.get(who, "/api/audit").status_code == 403
    entries = rig.get("ada", "/api/audit", limit=10_000).json()
    issued = [e for e in entries if e["event"] == "issued"]
    refused = [e for e in entries if e["event"] == "refused"]
    allowed = sum(hub_expectation(r, n) == 202 for r in ROLES.values() for n in names)
    assert len(issued) == allowed
    # refused by role or pre-flight, plus the bad name and the bad argument
    assert len(refused) == sum(hub_expectation(r, n) in (403, 409) for r in ROLES.values()
                               for n in names if r >= Role.OPERATOR) + 2  # fmt: skip
    # every sent command got an answer from the edge, and the log is intact
    for e in issued:
        assert rig.final(e["command_id"])["state"] in ("done", "rejected")
    assert verify_audit(rig.audit_path)[0]


def test_redelivered_command_runs_once_also_after_edge_restart(rig: Rig, tmp_path: Path) -> None:
    grant(rig)
    signer = rig.service.signer
    c = new_command("otto", MACHINE, "feed_override", {"percent": 37}, now=time.time(), ttl_s=60)
    wire = signer.sign(c)
    rig.service.statuses[c.id] = CommandStatus(c)  # tracked as if issued through the API
    rig.service._publish(MACHINE, wire)
    rig.service._publish(MACHINE, wire)  # the broker delivering it twice
    assert wait_for(lambda: len(rig.service.status(c.id).replies) >= 3, 10)
    assert rig.edge.executor.executed.count(c.id) == 1
    assert rig.edge.machine.feed_override == 37
    rig.edge.machine.feed_override = 100.0  # the person at the machine turns it back
    rig.edge.stop()
    rig.edge = start_edge(rig.site_dir, signer, rig.link.port)
    rig.service._publish(MACHINE, wire)  # delivered again after the restart
    assert wait_for(lambda: len(rig.service.status(c.id).replies) >= 4, 10)
    assert rig.edge.executor.executed == []
    assert rig.edge.machine.feed_override == 100.0
    assert [s for s, _, _ in rig.service.status(c.id).replies] == ["accepted", "done", "duplicate",
                                                                  "duplicate"]  # fmt: skip


def test_preflight_gates_a_remote_start(rig: Rig) -> None:
    bad = rig.post(
        "otto", f"/api/machines/{MACHINE}/preflight", {"program": "bad.ngc", "text": BAD}
    )
    assert bad.status_code == 200 and not bad.json()["ok"]
    kinds = {f["kind"] for f in bad.json()["findings"]}
    assert {"tool_missing", "soft_limit"} <= kinds
    refused = rig.command("otto", "cycle_start", {"program_sha256": bad.json()["sha256"]})
    assert refused.status_code == 409
    good = rig.post(
        "otto", f"/api/machines/{MACHINE}/preflight", {"program": "good.ngc", "text": GOOD}
    )
    assert good.json()["ok"] and good.json()["findings"] == [] and good.json()["cycle_time_s"] > 0
    # without a site permit the hub refuses (the site reported none) ...
    refused = rig.command("otto", "cycle_start", {"program_sha256": good.json()["sha256"]})
    assert refused.status_code == 409 and "permit" in refused.json()["detail"]
    grant(rig)
    started = rig.command("otto", "cycle_start", {"program_sha256": good.json()["sha256"]})
    assert started.status_code == 202, started.text
    assert rig.final(started.json()["id"])["state"] in ("done", "rejected")
    events = {e["event"] for e in rig.get("mia", "/api/audit", machine=MACHINE).json()}
    assert {"preflight", "refused", "issued"} <= events


def test_preflight_runs_from_the_machines_live_position(rig: Rig) -> None:
    """(d) The route asks the hub where the tool is: from beside the part a first rapid
    through it is refused; the report says where the twin started."""
    beside = (280.0, 240.0, -235.0)  # T1's tip 10 mm below the part's top, left of it
    text = "G21 G90 G54\nT1 M6 G43\nS6000 M3\nG0 X60 Y40 Z5\nG1 Z-1 F600\nG0 Z30\nM5\nM2\n"
    body = {"program": "first.ngc", "text": text}
    home = rig.post("otto", f"/api/machines/{MACHINE}/preflight", body).json()
    assert home["ok"] and home["start"] is None  # this rig's hub has no live position
    rig.service.position_of = lambda m: beside if m == MACHINE else None
    there = rig.post("otto", f"/api/machines/{MACHINE}/preflight", body).json()
    assert not there["ok"] and there["start"] == list(beside)
    assert [f["line"] for f in there["findings"] if f["kind"] == "rapid_into_stock"] == [4]


def test_the_edge_refuses_without_a_permit_whatever_the_hub_says(rig: Rig) -> None:
    """A hub that is wrong (or lying) about the permit: a signed cycle start that skipped
    every hub check still stops at the edge."""
    c = new_command("otto", MACHINE, "cycle_start", {"program_sha256": "0" * 64},
                    now=time.time())  # fmt: skip
    rig.service.statuses[c.id] = CommandStatus(c)
    rig.service._publish(MACHINE, rig.service.signer.sign(c))
    out = rig.final(c.id)
    assert out["state"] == "rejected" and "permit" in out["reason"]
    assert rig.edge.executor.executed == []


def test_the_site_reports_its_permit_to_the_hub(rig: Rig) -> None:
    """Grant, revoke and the edge leaving: the hub's gate follows, and refuses early."""
    # no grant yet: the site's own reason (here: it has no permit file at all)
    assert wait_for(lambda: "no permit file" in rig.service.gate(MACHINE).reason, 5)
    assert not rig.service.gate(MACHINE).allowed
    permit = rig.edge.executor.permits.grant(MACHINE, 7)
    assert wait_for(lambda: rig.service.gate(MACHINE).allowed, 5)
    gate = rig.service.gate(MACHINE)
    assert gate.permit_until == pytest.approx(permit.expires_at)
    assert gate.granted_by == permit.granted_by
    assert rig.command("otto", "feed_override", {"percent": 95}).status_code == 202
    rig.edge.executor.permits.revoke(MACHINE)
    assert wait_for(lambda: not rig.service.gate(MACHINE).allowed, 5)
    r = rig.command("otto", "feed_override", {"percent": 96})
    assert r.status_code == 409 and "no remote-operation permit" in r.json()["detail"]
    assert rig.command("otto", "feed_hold").status_code == 202  # stopping: always allowed
    grant(rig)
    rig.edge.stop()  # the edge leaves: no permit is offered for a machine nobody answers for
    assert wait_for(lambda: not rig.service.gate(MACHINE).allowed, 5)
    assert any(w in rig.service.gate(MACHINE).reason for w in ("offline", "stopped"))
    rig.edge = start_edge(rig.site_dir, rig.service.signer, rig.link.port)
    assert wait_for(lambda: rig.service.gate(MACHINE).allowed, 5)  # the grant is still there
    # the embedded broker also hands the new command subscription the retained permit
    # report, state and birth: none of them reaches the executor as a command
    assert rig.edge.executor.counts["malformed"] == 0, rig.edge.executor.counts


def _start_beating_motion(rig: Rig) -> tuple[str, threading.Event, threading.Thread]:
    """Resume with a 100 ms dead-man and heartbeats at that rate, as a browser sends them."""
    r = rig.command("otto", "resume", {"deadman_s": 0.1})
    assert r.status_code == 202
    motion = r.json()["id"]
    stop = threading.Event()

    def beat() -> None:  # at a fixed rate, until the test stops them
        next_at = time.monotonic()
        while not stop.is_set():
            rig.post("otto", f"/api/machines/{MACHINE}/commands/{motion}/heartbeat", {})
            next_at += 0.1
            time.sleep(max(0.0, next_at - time.monotonic()))

    beater = threading.Thread(target=beat, daemon=True)
    beater.start()  # at once, as a browser would: the edge ignores beats before the motion runs
    assert rig.service.wait(motion, ("accepted", "rejected"), 5).state == "accepted"
    return motion, stop, beater


def test_deadman_holds_feed_when_the_link_is_cut(rig: Rig) -> None:
    """Acceptance 3: heartbeat 100 ms, link cut during remote motion, feed hold ≤ 300 ms.

    Everything (hub, broker, link, edge, machine and the heartbeat sender) shares one
    process here, so on a loaded machine a heartbeat can arrive more than two periods
    late and the dead-man rightly holds before the cut. Such a run is started again (at
    most three times); the bound after the cut is what is measured and asserted.
    """
    assert rig.final(rig.command("otto", "feed_hold").json()["id"])["state"] == "done"
    grant(rig)
    time.sleep(0.3)  # the executor sees the held state reported
    for _attempt in range(3):
        motion, stop, beater = _start_beating_motion(rig)
        assert rig.edge.machine.execution == Execution.ACTIVE
        time.sleep(1.0)
        if not rig.edge.executor.holds:  # heartbeats kept it going
            break
        stop.set()
        beater.join(2)
        rig.edge.executor.holds.clear()
        time.sleep(0.3)
    else:
        raise AssertionError(f"heartbeats never kept the motion going: {rig.edge.executor.counts}")
    assert rig.edge.machine.execution == Execution.ACTIVE
    cut_at = time.monotonic()
    rig.link.cut()
    assert wait_for(lambda: rig.edge.executor.holds, 2, step_s=0.005)
    hold_ms = 1000 * (rig.edge.executor.holds[0] - cut_at)
    stop.set()
    beater.join(2)
    assert rig.edge.machine.execution == Execution.INTERRUPTED
    assert hold_ms <= 300.0, f"feed hold {hold_ms:.0f} ms after the cut"
    rig.link.restore()
    out = rig.final(motion, ("done",))
    assert out["state"] == "done" and "dead-man" in out["reason"]


def test_a_reset_link_holds_feed_at_once(rig: Rig) -> None:
    """When the connection drops outright, the edge does not wait for the dead-man."""
    assert rig.final(rig.command("otto", "feed_hold").json()["id"])["state"] == "done"
    grant(rig)
    time.sleep(0.3)
    r = rig.command("otto", "resume", {"deadman_s": 2.0})  # a long period: the timer is not it
    motion = r.json()["id"]
    assert rig.service.wait(motion, ("accepted", "rejected"), 5).state == "accepted"
    cut_at = time.monotonic()
    rig.link.cut("reset")
    assert wait_for(lambda: rig.edge.executor.holds, 3, step_s=0.005)
    assert rig.edge.executor.holds[0] - cut_at < 2 * 2.0  # before the dead-man would fire
    assert len(rig.edge.executor.holds) == 1
    assert rig.edge.machine.execution == Execution.INTERRUPTED
    rig.link.restore()
    out = rig.final(motion, ("done",))
    assert "link to the hub was lost" in out["reason"]
