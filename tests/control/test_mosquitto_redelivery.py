"""With Mosquitto: a command sent while the edge is down waits in the edge's persistent
session, runs once when the edge comes back, and a redelivery after that never runs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from control_support import MACHINE, start_edge, wait_for
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from machinetwin.hub.auth import Role, User
from machinetwin.hub.commands import (
    AuditLog,
    CommandRefused,
    CommandService,
    CommandSigner,
    CommandStatus,
    verify_audit,
)
from machinetwin.model.commands import new_command
from machinetwin.protocols.broker import BrokerAddress


@pytest.mark.service
def test_command_queued_during_edge_restart_runs_exactly_once(mosquitto, tmp_path: Path) -> None:
    signer = CommandSigner(Ed25519PrivateKey.generate())
    service = CommandService(signer, AuditLog(tmp_path / "audit.sqlite"),
                             BrokerAddress("127.0.0.1", mosquitto.port))  # fmt: skip
    service.start()
    site = tmp_path / "site"
    site.mkdir()
    edge = start_edge(site, signer, mosquitto.port)  # subscribes: the session now exists
    edge.executor.permits.grant(MACHINE, 5)
    edge.stop()
    try:
        otto = User("otto", Role.OPERATOR)
        # the hub knows the edge left and refuses early ...
        with pytest.raises(CommandRefused, match="stopped|offline") as refused:
            service.issue(otto, MACHINE, "feed_override", {"percent": 33}, ttl_s=60)
        assert refused.value.status == 409
        # ... but one it sent just before (the race) waits in the edge's session
        c = new_command("otto", MACHINE, "feed_override", {"percent": 33}, now=time.time(),
                        ttl_s=60)  # fmt: skip
        status = service.statuses[c.id] = CommandStatus(c)
        service._publish(MACHINE, signer.sign(c))
        time.sleep(0.5)
        assert status.state == "sent"  # nobody there to answer
        edge = start_edge(site, signer, mosquitto.port)
        assert service.wait(status.command.id, ("done",), 10).state == "done"
        assert edge.executor.executed == [status.command.id]
        assert edge.machine.feed_override == 33
        edge.machine.feed_override = 100.0
        service._publish(MACHINE, signer.sign(status.command))  # delivered once more
        assert wait_for(lambda: len(status.replies) == 3, 10)
        assert [s for s, _, _ in status.replies] == ["accepted", "done", "duplicate"]
        assert edge.executor.executed == [status.command.id]
        assert edge.machine.feed_override == 100.0
    finally:
        edge.stop()
        service.stop()
        service.audit.close()
    assert verify_audit(tmp_path / "audit.sqlite")[0]
