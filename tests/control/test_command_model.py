"""The command record: canonical bytes, validation that names the field, the wire form."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from machinetwin.model.commands import (
    COMMANDS,
    Command,
    CommandError,
    CommandReply,
    new_command,
    parse_body,
)

finite = st.floats(allow_nan=False, allow_infinity=False)


@given(percent=st.floats(0, 200), ttl=st.floats(0.01, 120), now=st.floats(1e9, 3e9))
def test_canonical_bytes_parse_back_to_the_same_command(percent: float, ttl: float,
                                                        now: float) -> None:  # fmt: skip
    c = new_command("alice", "m-1", "feed_override", {"percent": percent}, now=now, ttl_s=ttl)
    body = c.canonical_bytes()
    assert parse_body(body) == c
    assert body == parse_body(body).canonical_bytes()  # deterministic


@given(value=st.one_of(finite, st.text(max_size=5), st.booleans(), st.none()))
def test_bad_override_values_are_refused_naming_the_argument(value: object) -> None:
    if isinstance(value, float) and 0 <= value <= 200:
        return
    with pytest.raises(CommandError, match="percent"):
        new_command("alice", "m-1", "feed_override", {"percent": value}, now=1e9)


@pytest.mark.parametrize(("field", "value"), [
    ("id", "not-a-uuid"), ("issuer", ""), ("machine", "a/b"), ("name", "self_destruct"),
    ("expires_at", 1e9 + 1000), ("issued_at", float("nan")),
])  # fmt: skip
def test_invalid_fields_are_refused(field: str, value: object) -> None:
    fields = dict(id="0b6a1c1e-8f4e-4c3a-9a57-2f0d8f1b6c11", issuer="alice", machine="m-1",
                  issued_at=1e9, expires_at=1e9 + 10, name="stop", args={})  # fmt: skip
    fields[field] = value
    with pytest.raises(CommandError):
        Command(**fields)


def test_every_command_names_its_arguments_and_class() -> None:
    for name, spec in COMMANDS.items():
        assert spec.kind in ("stopping", "state", "motion", "heartbeat"), name
        assert spec.min_role in ("operator", "maintainer", "admin"), name
    with pytest.raises(CommandError, match="missing args"):
        new_command("alice", "m-1", "jog", {"axis": "x"}, now=1e9)
    with pytest.raises(CommandError, match="unexpected args"):
        new_command("alice", "m-1", "stop", {"now": True}, now=1e9)
    # continuous jog cannot be sent without a dead-man
    with pytest.raises(CommandError, match="deadman_s"):
        new_command("alice", "m-1", "jog_continuous", {"axis": "x", "direction": 1, "feed": 10},
                    now=1e9)  # fmt: skip


def test_non_canonical_body_is_refused() -> None:
    c = new_command("alice", "m-1", "stop", now=1e9)
    spaced = c.canonical_bytes().replace(b",", b", ")
    with pytest.raises(CommandError, match="canonical"):
        parse_body(spaced)


@given(payload=st.binary(max_size=300))
def test_reply_decoding_never_crashes(payload: bytes) -> None:
    with contextlib.suppress(CommandError):  # refusing is fine; anything else is a bug
        CommandReply.decode(payload)


def test_select_program_transfer_needs_text_and_checksum_together() -> None:
    from machinetwin.model.commands import MAX_TRANSFER_TEXT_BYTES, Command, CommandError

    def select(**args: object) -> Command:
        return Command("0" * 8 + "-0000-4000-8000-" + "0" * 12, "ada", "m1", 1.0, 2.0,
                       "select_program", {"program": "p.ngc", **args})  # fmt: skip

    select(text="G0 X1\n", sha256="a" * 64)
    with pytest.raises(CommandError, match="both text and sha256"):
        select(text="G0 X1\n")
    with pytest.raises(CommandError, match="sha256"):
        select(text="G0 X1\n", sha256="xyz")
    with pytest.raises(CommandError, match="text"):
        select(text="x" * (MAX_TRANSFER_TEXT_BYTES + 1), sha256="a" * 64)
