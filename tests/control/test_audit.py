"""The audit log: append-only, hash-chained, and any changed byte is found."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from machinetwin.hub.commands import AuditLog, main, verify_audit


def filled(path: Path, n: int = 40) -> AuditLog:
    log = AuditLog(path)
    for i in range(n):
        log.append(f"user{i % 3}", f"m{i % 2}", f"id-{i}", ["issued", "accepted", "done"][i % 3],
                   {"name": "feed_override", "args": {"percent": i}})  # fmt: skip
    return log


def checkpointed(path: Path) -> bytes:
    """The log closed with everything in the main file (no WAL), as bytes."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.execute("PRAGMA journal_mode=DELETE")
    db.close()
    return path.read_bytes()


def test_intact_log_verifies_and_continues_its_chain_after_reopening(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite"
    filled(path, 10).close()
    log = AuditLog(path)
    entry = log.append("ada", "m1", "id-x", "issued", {})
    assert entry.seq == 11
    log.close()
    assert verify_audit(path) == (True, f"{path}: 11 entries, chain intact")
    assert main(["verify", str(path)]) == 0


def test_updates_and_deletes_are_refused(tmp_path: Path) -> None:
    log = filled(tmp_path / "audit.sqlite", 5)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        log.db.execute("UPDATE audit SET actor = 'mallory' WHERE seq = 2")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        log.db.execute("DELETE FROM audit WHERE seq = 5")
    log.close()


@pytest.mark.parametrize("edit", [
    "UPDATE audit SET actor = 'mallory' WHERE seq = 7",
    "UPDATE audit SET detail = replace(detail, '7', '8') WHERE seq = 8",
    "DELETE FROM audit WHERE seq = 20",
    "UPDATE audit SET at = at + 1 WHERE seq = 40",
])  # fmt: skip
def test_edits_behind_the_triggers_back_are_found(tmp_path: Path, edit: str) -> None:
    path = tmp_path / "audit.sqlite"
    filled(path).close()
    db = sqlite3.connect(path)
    db.executescript(f"DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete; {edit};")
    db.close()
    ok, message = verify_audit(path)
    assert not ok and ("changed" in message or "missing" in message), message
    assert main(["verify", str(path)]) == 1


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("audit") / "audit.sqlite"
    filled(path).close()
    return checkpointed(path)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_one_changed_byte_in_the_records_is_found(tmp_path: Path, pristine: bytes,
                                                  data: st.DataObject) -> None:  # fmt: skip
    """Acceptance 6: any byte of the stored values (table or index) changed in the file
    fails verification."""
    raw = bytearray(pristine)
    # positions of stored values, which is what someone editing the log would touch
    needle = data.draw(st.sampled_from([b"user1", b"feed_override", b"accepted", b"id-17", b"m1"]))
    spots = [i for i in range(len(raw)) if raw.startswith(needle, i)]
    i = data.draw(st.sampled_from(spots)) + data.draw(st.integers(0, len(needle) - 1))
    raw[i] = (raw[i] + data.draw(st.integers(1, 255))) % 256
    path = tmp_path / "edited.sqlite"
    path.write_bytes(bytes(raw))
    ok, message = verify_audit(path)
    assert not ok, message


def test_hub_key_and_audit_live_next_to_the_store(tmp_path: Path) -> None:
    import os
    import stat

    from machinetwin.hub.commands import open_command_service

    first = open_command_service(tmp_path / "hub.duckdb", None)
    key = tmp_path / "hub-command-key.pem"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert (tmp_path / "audit.sqlite").is_file()
    first.audit.close()
    again = open_command_service(tmp_path / "hub.duckdb", None)
    assert again.signer.public_key_b64 == first.signer.public_key_b64  # the edges keep trusting it
    again.audit.close()
    assert main(["public-key", str(key)]) == 0


def test_cli_audit_verify_passes_an_intact_log_and_fails_one_changed_byte(tmp_path: Path) -> None:
    """``machinetwin audit verify`` as an operator runs it: exit 0, then 1 after one
    byte of an entry's text is changed in the file itself."""
    from typer.testing import CliRunner

    from machinetwin.cli import app

    path = tmp_path / "audit.sqlite"
    filled(path, 12).close()
    runner = CliRunner()
    intact = runner.invoke(app, ["audit", "verify", str(path)])
    assert intact.exit_code == 0 and "chain intact" in intact.output
    data = bytearray(checkpointed(path))
    at = data.find(b"user1")
    assert at > 0
    data[at + 4] = ord("7")  # user1 -> user7 in one entry, behind SQLite's back
    path.write_bytes(bytes(data))
    changed = runner.invoke(app, ["audit", "verify", str(path)])
    assert changed.exit_code == 1, changed.output
    missing = runner.invoke(app, ["audit", "verify", str(tmp_path / "nope.sqlite")])
    assert missing.exit_code == 1


def test_one_unbroken_chain_under_concurrent_durable_and_lazy_appends(tmp_path: Path) -> None:
    """Four threads append at once, half of them without waiting for the disk: every
    entry lands once, in the order of its sequence number, and the chain verifies."""
    import threading

    path = tmp_path / "audit.sqlite"
    log = AuditLog(path)

    def writer(k: int) -> None:
        for i in range(50):
            log.append(f"u{k}", "m1", f"id-{k}-{i}", "issued", {"i": i}, durable=k % 2 == 0)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(log.entries(limit=1000)) == 200  # reads see what was appended before
    assert log.syncs >= 100  # each durable append synced (lazy ones ride along)
    log.close()
    assert verify_audit(path) == (True, f"{path}: 200 entries, chain intact")


def test_lazy_answers_are_synced_by_the_next_durable_entry_or_soon(tmp_path: Path) -> None:
    """The edge's answers skip the fsync, yet are on disk within SYNC_AFTER_S, and a
    durable entry syncs everything before it."""
    import time

    path = tmp_path / "audit.sqlite"
    log = AuditLog(path)
    log.append("edge:m1", "m1", "id-0", "accepted", {}, durable=False)
    assert log.synced_seq == 0
    entry = log.append("ada", "m1", "id-1", "issued", {})
    assert log.synced_seq == entry.seq == 2
    log.append("edge:m1", "m1", "id-1", "done", {}, durable=False)
    deadline = time.monotonic() + 5
    while log.synced_seq < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert log.synced_seq == 3  # the background sync
    other = sqlite3.connect(path)  # another connection sees every committed entry
    assert other.execute("SELECT max(seq) FROM audit").fetchone()[0] == 3
    other.close()
    log.close()


def test_a_failed_write_refuses_every_later_command(tmp_path: Path) -> None:
    """Fail closed: once the log cannot be written, no command leaves without its entry."""
    from machinetwin.hub.auth import Role, User
    from machinetwin.hub.commands import AuditUnavailable, CommandRefused, CommandService

    log = AuditLog(tmp_path / "audit.sqlite")
    log.append("ada", "m1", "id-0", "issued", {})
    with log.lock:
        log.db.execute("DROP TRIGGER audit_no_delete")
        log.db.execute("ALTER TABLE audit RENAME TO gone")  # the next INSERT fails
    with pytest.raises(AuditUnavailable, match="no such table"):
        log.append("ada", "m1", "id-1", "issued", {})
    with pytest.raises(AuditUnavailable):
        log.append("ada", "m1", "id-2", "done", {}, durable=False)
    service = CommandService(None, log, None)  # type: ignore[arg-type] - never signs here
    with pytest.raises(CommandRefused) as refused:
        service.record_preflight(User("otto", Role.OPERATOR), "m1", "p.ngc", "0" * 64,
                                 {"ok": True})  # fmt: skip
    assert refused.value.status == 503 and not service.preflights
    log.close()
