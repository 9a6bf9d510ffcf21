"""The edge executor against the real virtual machine: signatures, expiry, permit,
interlocks and at-most-once execution (also across a restart and under reordering)."""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import time
from pathlib import Path

import pytest
from control_support import MACHINE, Site, make_executor
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from machinetwin.edge.executor import CommandLedger
from machinetwin.hub.commands import CommandSigner
from machinetwin.model import AdapterCommand, Execution
from machinetwin.model.commands import COMMANDS, Command, encode_signed, new_command

run = asyncio.run


def test_a_signed_command_runs_once_and_changes_the_machine(site: Site) -> None:
    site.permits.grant(MACHINE, 5)
    site.step()
    c = site.command("feed_override", {"percent": 55})
    run(site.executor.handle(site.signer.sign(c)))
    assert site.answers(c.id) == ["accepted", "done"]
    assert site.adapter.sim.controller.state.feed_override == 55


def test_replayed_command_is_answered_again_but_never_rerun(site: Site) -> None:
    site.permits.grant(MACHINE, 5)
    site.step()
    c = site.command("feed_override", {"percent": 70})
    wire = site.signer.sign(c)
    run(site.executor.handle(wire))
    site.adapter.sim.controller.set_override("feed", 100.0)  # the person at the machine
    run(site.executor.handle(wire))
    assert site.answers(c.id) == ["accepted", "done", "duplicate"]
    assert site.adapter.sim.controller.state.feed_override == 100.0  # not applied again
    assert site.executor.executed == [c.id]


def test_edge_restart_does_not_execute_a_command_twice(site: Site, tmp_path: Path) -> None:
    site.permits.grant(MACHINE, 5)
    site.step()
    c = site.command("feed_override", {"percent": 42})
    wire = site.signer.sign(c)
    run(site.executor.handle(wire))
    site.executor.ledger.close()
    # a new edge process on the same site directory receives the redelivered message
    replies: list = []
    restarted = make_executor(tmp_path, site.adapter, site.signer, replies)
    site.adapter.sim.controller.set_override("feed", 100.0)
    run(restarted.handle(wire))
    assert [r.status for r in replies] == ["duplicate"]
    assert "done" in replies[0].reason
    assert restarted.executed == []
    assert site.adapter.sim.controller.state.feed_override == 100.0
    restarted.ledger.close()


def test_forged_command_is_refused_and_not_recorded(site: Site) -> None:
    site.permits.grant(MACHINE, 5)
    site.step()
    mallory = CommandSigner(Ed25519PrivateKey.generate())
    c = site.command("feed_override", {"percent": 150})
    run(site.executor.handle(mallory.sign(c)))
    assert site.executor.counts["bad_signature"] == 1
    assert site.replies == [] and site.executor.executed == []
    assert site.executor.ledger.count() == 0  # the real command with this id could still run
    run(site.executor.handle(site.signer.sign(c)))
    assert site.answers(c.id) == ["accepted", "done"]


TAMPER_TARGET = Command(
    "0b6a1c1e-8f4e-4c3a-9a57-2f0d8f1b6c11",
    "alice",
    MACHINE,
    2e9,
    2e9 + 10,
    "feed_override",
    {"percent": 80},
)  # fixed, so every example draws alike


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_tampered_bytes_never_verify(site: Site, data: st.DataObject) -> None:
    c = TAMPER_TARGET
    signature = site.signer.key.sign(c.canonical_bytes())
    body = bytearray(c.canonical_bytes())
    where = data.draw(st.sampled_from(["body", "sig"]))
    target = body if where == "body" else bytearray(signature)
    i = data.draw(st.integers(0, len(target) - 1))
    flip = data.draw(st.integers(1, 255))
    target[i] ^= flip
    if where == "sig":
        signature = bytes(target)
    try:
        wire = encode_signed_raw(bytes(body), signature)
    except UnicodeDecodeError:
        return  # not even text: cannot be put on the wire as a body
    before = site.executor.ledger.count()
    run(site.executor.handle(wire))
    assert site.executor.executed == []
    assert site.executor.ledger.count() == before
    assert site.executor.counts["bad_signature"] + site.executor.counts["malformed"] >= 1


def encode_signed_raw(body: bytes, signature: bytes) -> bytes:
    import base64
    import json

    return json.dumps({"body": body.decode(), "sig": base64.b64encode(signature).decode()}).encode()


@pytest.mark.parametrize("payload", [b"", b"{}", b"not json", b'{"body": 1, "sig": "x"}',
                                     b'{"body": "{}", "sig": "' + b"A" * 88 + b'"}'])  # fmt: skip
def test_malformed_messages_are_refused(site: Site, payload: bytes) -> None:
    run(site.executor.handle(payload))
    assert site.executor.executed == [] and site.replies == []
    assert site.executor.counts["malformed"] + site.executor.counts["bad_signature"] == 1


def test_expired_and_future_commands_are_rejected(site: Site) -> None:
    site.permits.grant(MACHINE, 5)
    site.step()
    skew = site.executor.clock_skew_s
    old = site.command(
        "feed_override", {"percent": 60}, ttl_s=1.0, now=time.time() - 1.0 - skew - 0.5
    )
    future = site.command("feed_override", {"percent": 60}, now=time.time() + skew + 5)
    fresh_within_skew = site.command("feed_override", {"percent": 61}, ttl_s=1.0,
                                     now=time.time() - 1.0 - skew / 2)  # fmt: skip
    for c in (old, future, fresh_within_skew):
        run(site.executor.handle(site.signer.sign(c)))
    assert site.answers(old.id) == ["rejected"] and "expired" in site.reason(old.id)
    assert site.answers(future.id) == ["rejected"] and "future" in site.reason(future.id)
    assert site.answers(fresh_within_skew.id) == ["accepted", "done"]
    assert site.executor.executed == [fresh_within_skew.id]


def test_command_for_another_machine_is_refused(site: Site) -> None:
    site.permits.grant(MACHINE, 5)
    c = new_command("alice", "tianjin-vmc-1", "feed_hold", now=time.time())
    run(site.executor.handle(site.signer.sign(c)))
    assert site.executor.counts["foreign"] == 1 and site.executor.executed == []


# --- the site permit --------------------------------------------------------------------------------


def hold(site: Site) -> None:
    """Put the running program in feed hold from the machine's side."""
    site.step(3)
    run(site.adapter.command(AdapterCommand("feed_hold")))
    site.step()
    assert site.executor.state.execution == Execution.INTERRUPTED


def test_without_permit_motion_is_refused_and_stopping_allowed(site: Site) -> None:
    site.step(3)
    resume = site.command("resume")
    override = site.command("feed_override", {"percent": 50})
    stop_ = site.command("feed_hold")
    for c in (resume, override, stop_):
        run(site.executor.handle(site.signer.sign(c)))
    assert site.answers(resume.id) == ["rejected"] and "permit" in site.reason(resume.id)
    assert site.answers(override.id) == ["rejected"] and "permit" in site.reason(override.id)
    assert site.answers(stop_.id) == ["accepted", "done"]
    assert site.adapter.sim.controller.state.execution == Execution.INTERRUPTED


def test_permit_grants_resume_and_revoke_takes_it_back(site: Site) -> None:
    hold(site)
    site.permits.grant(MACHINE, 1)
    first = site.command("resume")
    run(site.executor.handle(site.signer.sign(first)))
    assert site.answers(first.id) == ["accepted", "done"]
    assert site.adapter.sim.controller.state.execution == Execution.ACTIVE
    hold(site)
    assert site.permits.revoke(MACHINE)
    second = site.command("resume")
    run(site.executor.handle(site.signer.sign(second)))
    assert site.answers(second.id) == ["rejected"]
    assert site.adapter.sim.controller.state.execution == Execution.INTERRUPTED


def test_expired_permit_grants_nothing(site: Site) -> None:
    hold(site)
    clock = [1000.0]
    site.permits.clock = lambda: clock[0]
    site.permits.grant(MACHINE, 1)
    clock[0] += 61.0
    c = site.command("resume")
    run(site.executor.handle(site.signer.sign(c)))
    assert site.answers(c.id) == ["rejected"] and "permit" in site.reason(c.id)


def test_permit_file_others_can_write_is_refused(site: Site) -> None:
    hold(site)
    site.permits.grant(MACHINE, 5)
    os.chmod(site.permits.path, 0o666)
    c = site.command("resume")
    run(site.executor.handle(site.signer.sign(c)))
    assert site.answers(c.id) == ["rejected"] and "writable" in site.reason(c.id)


@pytest.mark.parametrize("minutes", [0, -1, 10_000, float("nan")])
def test_permit_minutes_are_checked(site: Site, minutes: float) -> None:
    from machinetwin.edge.permit import PermitError

    with pytest.raises(PermitError, match="minutes"):
        site.permits.grant(MACHINE, minutes)


# --- machine state and interlocks --------------------------------------------------------------------


def test_unknown_machine_state_refuses_motion(site: Site) -> None:
    site.permits.grant(MACHINE, 5)
    c = site.command("resume")  # the executor has seen nothing from the machine yet
    run(site.executor.handle(site.signer.sign(c)))
    assert site.answers(c.id) == ["rejected"] and "unknown" in site.reason(c.id)


def test_estop_and_alarm_interlock_motion(site: Site) -> None:
    from machinetwin.model import Alarm, AlarmCode, MachineEvent, Severity

    hold(site)
    site.permits.grant(MACHINE, 5)
    alarm = Alarm(AlarmCode.SPINDLE_OVERLOAD, Severity.FAULT, "overload", "spindle", 0.0)
    site.executor.observe(MachineEvent(MACHINE, 0.0, "alarm", alarm=alarm))
    c1 = site.command("resume")
    run(site.executor.handle(site.signer.sign(c1)))
    assert site.answers(c1.id) == ["rejected"] and "MT-200" in site.reason(c1.id)
    site.executor.observe(MachineEvent(MACHINE, 1.0, "alarm_cleared", alarm=alarm))
    estop = site.command("estop")
    run(site.executor.handle(site.signer.sign(estop)))
    site.step()
    c2 = site.command("resume")
    run(site.executor.handle(site.signer.sign(c2)))
    assert site.answers(c2.id) == ["rejected"] and "e-stop" in site.reason(c2.id)


def test_machine_refusal_is_reported_with_its_reason(site: Site) -> None:
    site.permits.grant(MACHINE, 5)
    site.step(3)  # running: nothing is held, so resume makes no sense to the controller
    c = site.command("resume")
    run(site.executor.handle(site.signer.sign(c)))
    assert site.answers(c.id) == ["rejected"]
    assert "machine refused" in site.reason(c.id) and "held" in site.reason(c.id)


# What must stop a command at the edge, by its class and the site's condition; the
# machine has its say after that (and the virtual one refuses what it cannot do).
REASON = {"no_permit": "permit", "estop": "e-stop", "alarm": "active alarm", "unknown": "unknown"}


def edge_expectation(name: str, condition: str) -> str | None:
    """The word the rejection must contain, or None if the edge lets it through."""
    kind = COMMANDS[name].kind
    if kind == "stopping" or condition == "ok":
        return None
    if condition == "no_permit" or kind == "motion":
        return REASON[condition]
    return None  # state commands: interlocks are the machine's business


def prepare(site: Site, condition: str) -> None:
    from machinetwin.model import Alarm, AlarmCode, MachineEvent, Severity

    if condition != "no_permit":
        site.permits.grant(MACHINE, 5)
    if condition == "unknown":
        return  # the executor has heard nothing from the machine
    hold(site)
    if condition == "estop":  # the machine's own e-stop, seen in its estop signal
        site.adapter.sim.controller.estop()
        site.step()
        return
    if condition in ("estop", "alarm"):
        code, severity = ((AlarmCode.ESTOP, Severity.CRITICAL) if condition == "estop"
                          else (AlarmCode.DRIVE_FAULT, Severity.FAULT))  # fmt: skip
        alarm = Alarm(code, severity, condition, "x", 0.0)
        site.executor.observe(MachineEvent(MACHINE, 0.0, "alarm", alarm=alarm))


MATRIX_ARGS = {"select_program": {"program": "part.ngc"}, "feed_override": {"percent": 90},
               "rapid_override": {"percent": 90}, "spindle_override": {"percent": 90},
               "cycle_start": {"program_sha256": "0" * 64}, "mdi": {"line": "G0 X1"},
               "jog": {"axis": "x", "distance": 1.0, "feed": 100.0},
               "jog_continuous": {"axis": "x", "direction": 1, "feed": 100.0, "deadman_s": 0.1}}  # fmt: skip


@pytest.mark.parametrize("condition", ["ok", "no_permit", "estop", "alarm", "unknown"])
@pytest.mark.parametrize("name", sorted(n for n in COMMANDS if n != "heartbeat"))
def test_edge_command_matrix(site: Site, name: str, condition: str) -> None:
    """Acceptance 1 at the edge: every command in every site condition."""
    prepare(site, condition)
    c = site.command(name, MATRIX_ARGS.get(name, {}))
    run(site.executor.handle(site.signer.sign(c)))
    answers, reason = site.answers(c.id), site.reason(c.id)
    expected = edge_expectation(name, condition)
    if expected is not None:
        assert answers == ["rejected"] and expected in reason, reason
        assert site.executor.executed == []
    else:  # through the edge's checks: executed, or refused by the machine itself
        assert answers[0] in ("accepted", "rejected"), answers
        if answers[0] == "rejected":
            assert reason.startswith("machine refused"), reason
        else:
            assert site.executor.executed == [c.id]


# --- exactly once under duplication and reordering ----------------------------------------------------


@pytest.mark.slow
def test_commands_delivered_with_duplicates_and_reordering_run_exactly_once(site: Site) -> None:
    site.permits.grant(MACHINE, 30)
    site.step()
    n = int(os.environ.get("MT_EXACTLY_ONCE_N", "2000"))
    rng = random.Random(7)
    commands = [
        site.command("feed_override", {"percent": rng.randint(0, 200)}, ttl_s=120.0)
        for _ in range(n)
    ]
    wires = [site.signer.sign(c) for c in commands]
    deliveries = wires + [rng.choice(wires) for _ in range(n // 2)]  # a third are repeats
    rng.shuffle(deliveries)

    async def deliver() -> None:
        for wire in deliveries:
            await site.executor.handle(wire)

    run(deliver())
    executed = site.executor.executed
    assert len(executed) == len(set(executed)) == n
    assert set(executed) == {c.id for c in commands}
    assert site.executor.counts["duplicate"] == len(deliveries) - n
    assert site.executor.ledger.count("done") == n


def test_encode_signed_round_trip(signer: CommandSigner) -> None:
    from machinetwin.model.commands import parse_body, split_signed

    c = new_command("bob", MACHINE, "jog", {"axis": "z", "distance": -0.5, "feed": 200.0}, now=1e9)
    body, sig = split_signed(encode_signed(c, signer.key.sign(c.canonical_bytes())))
    signer.key.public_key().verify(sig, body)
    assert parse_body(body) == c


def test_a_failed_ledger_refuses_rather_than_risk_a_second_run(site: Site) -> None:
    site.permits.grant(MACHINE, 5)
    site.step()
    site.executor.ledger.db.close()  # the disk went away
    c = site.command("feed_override", {"percent": 20})
    run(site.executor.handle(site.signer.sign(c)))
    assert site.answers(c.id) == ["rejected"] and "ledger" in site.reason(c.id)
    assert site.executor.executed == []
    assert site.adapter.sim.controller.state.feed_override == 100.0
    site.executor.ledger.db = sqlite3.connect(site.ledger_path)  # for the fixture's close


def test_pruned_ledger_entries_stay_refused_by_their_expiry(site: Site, tmp_path: Path) -> None:
    from machinetwin.edge.executor import LEDGER_KEEP_S

    site.permits.grant(MACHINE, 5)
    site.step()
    long_ago = time.time() - LEDGER_KEEP_S - 3600
    old = site.command("feed_override", {"percent": 11}, now=long_ago)
    site.executor.ledger.claim(old, long_ago)  # ran a week ago
    site.executor.ledger.close()
    replies: list = []
    restarted = make_executor(tmp_path, site.adapter, site.signer, replies)
    assert restarted.ledger.count() == 0  # pruned on opening
    run(restarted.handle(site.signer.sign(old)))  # a recording of it, replayed
    assert [r.status for r in replies] == ["rejected"] and "expired" in replies[0].reason
    assert restarted.executed == []
    restarted.ledger.close()
    site.executor.ledger = CommandLedger(site.ledger_path)  # for the fixture's close
