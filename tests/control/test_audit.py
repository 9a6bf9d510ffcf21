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
