"""Fixtures of the remote-control tests: the hub's key, a real virtual machine, an executor."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).parent))  # control_support, shared by these tests

from control_support import Site, make_executor, virtual_machine  # noqa: E402

from machinetwin.hub.commands import CommandSigner  # noqa: E402
from machinetwin.model.commands import CommandReply  # noqa: E402


@pytest.fixture
def signer() -> CommandSigner:
    return CommandSigner(Ed25519PrivateKey.generate())


@pytest.fixture
def site(tmp_path: Path, signer: CommandSigner) -> Iterator[Site]:
    adapter = virtual_machine(tmp_path)
    replies: list[CommandReply] = []
    executor = make_executor(tmp_path, adapter, signer, replies)
    yield Site(adapter, executor, executor.permits, tmp_path / "commands.sqlite", signer, replies)
    executor.ledger.close()
