"""What a Mosquitto broker needs so that each edge speaks only for its own machines.

- :func:`password_line`: one entry of a Mosquitto password file, in the hashed format
  Mosquitto 2 writes itself (``mosquitto_passwd``): PBKDF2-HMAC-SHA512, ``$7$``.
- :func:`acl_text`: an ACL file: the hub's user reads every machine's data, events,
  births, states, command replies and permits and writes acks, commands and (for its
  analytics worker) findings as events and ``machinetwin/hub/#``; each edge's
  user writes only those topics of its own machines and reads only their acks and
  commands. So edge X can neither publish as machine Y nor read Y's commands, and no
  edge can send a command (commands are signed by the hub anyway).
- :func:`tls_listener`: the listener lines for TLS (server certificate and key, the CA
  of the client certificates when they are required).

``python -m machinetwin.hub.broker_security SECURITY.toml OUTDIR`` writes
``passwords`` (mode 0600), ``acl`` and ``mosquitto-security.conf`` from a file like::

    hub_user = "hub"
    hub_password_file = "hub.pass"
    [edges.harbin]            # the site's broker user
    password_file = "harbin.pass"
    machines = ["harbin-vmc-1", "harbin-vmc-2"]

The embedded broker (amqtt) of the one-command demo is none of this: loopback only,
plaintext, anonymous.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import re
import secrets
import sys
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from ..configfile import load_toml
from ..errors import ConfigError
from ..protocols import topics

PBKDF2_ITERATIONS = 101  # Mosquitto 2's default for $7$ entries
SALT_BYTES = 12
EDGE_WRITES = ("data", "event", "birth", "state", "cmdreply", "permit")
EDGE_READS = ("ack", "cmd")
HUB_PREFIX = "machinetwin/hub"  # the hub's own processes (analytics worker status)
_USER_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


def password_line(username: str, password: str, iterations: int = PBKDF2_ITERATIONS,
                  salt: bytes | None = None) -> str:  # fmt: skip
    """``username:$7$iterations$salt$hash`` as Mosquitto reads it."""
    _check_user(username)
    if not password or "\n" in password:
        raise ConfigError(f"broker user {username}: the password must be one non-empty line")
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    b64 = base64.b64encode
    return f"{username}:$7${iterations}${b64(salt).decode()}${b64(digest).decode()}"


def acl_text(hub_user: str, edges: dict[str, list[str]]) -> str:
    """The ACL file: ``edges`` maps each edge's broker user to its machines."""
    _check_user(hub_user)
    kinds = (*EDGE_WRITES, *EDGE_READS)
    lines = [f"user {hub_user}"]
    lines += [f"topic read {topics.PREFIX}/+/{k}" for k in EDGE_WRITES]
    lines += [f"topic write {topics.PREFIX}/+/{k}" for k in EDGE_READS]
    # the hub's analytics worker (same credentials) files its findings as the machine's
    # events and announces itself under the hub's own prefix
    lines += [f"topic write {topics.PREFIX}/+/event", f"topic readwrite {HUB_PREFIX}/#"]
    owner: dict[str, str] = {}
    for user, machines in edges.items():
        _check_user(user)
        if user == hub_user:
            raise ConfigError(f"edge user {user} is the hub's user: give each edge its own")
        lines += ["", f"user {user}"]
        for machine in machines:
            if not topics.valid_machine_id(machine):
                raise ConfigError(f"edges.{user}.machines: invalid machine id {machine!r}")
            if owner.setdefault(machine, user) != user:
                raise ConfigError(f"machine {machine} belongs to both {owner[machine]} and {user}")
            lines += [f"topic write {topics.PREFIX}/{machine}/{k}" for k in EDGE_WRITES]
            lines += [f"topic read {topics.PREFIX}/{machine}/{k}" for k in EDGE_READS]
    assert all(k.isalpha() for k in kinds)  # no wildcard ever comes from a kind
    return "\n".join(lines) + "\n"


def tls_listener(port: int, certfile: Path, keyfile: Path, cafile: Path,
                 host: str = "0.0.0.0", require_certificate: bool = False) -> list[str]:  # fmt: skip
    """Listener lines of a TLS port (``cafile``: the CA of client certificates)."""
    return [f"listener {port} {host}", f"certfile {certfile}", f"keyfile {keyfile}",
            f"cafile {cafile}", "tls_version tlsv1.2",
            f"require_certificate {'true' if require_certificate else 'false'}"]  # fmt: skip


def security_lines(password_file: Path, acl_file: Path) -> list[str]:
    """The global lines: no anonymous clients, the password and ACL files."""
    return ["per_listener_settings false", "allow_anonymous false",
            f"password_file {password_file}", f"acl_file {acl_file}"]  # fmt: skip


def _check_user(username: str) -> None:
    if not _USER_RE.fullmatch(username):
        raise ConfigError(f"invalid broker user name {username!r}")


# --- python -m machinetwin.hub.broker_security SECURITY.toml OUTDIR ------------------------------


class EdgeUser(BaseModel):
    model_config = ConfigDict(extra="forbid")
    password_file: Path
    machines: list[str] = Field(min_length=1)


class SecurityFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hub_user: str = "hub"
    hub_password_file: Path
    edges: dict[str, EdgeUser] = Field(min_length=1)


def _read_password(path: Path, key: str) -> str:
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror}") from None
    if not text:
        raise ConfigError(f"{key}: {path} is empty")
    return text


def write_broker_files(spec_path: Path, out: Path) -> list[Path]:
    """The password file, the ACL file and the config lines that name them."""
    spec = load_toml(spec_path, SecurityFile)
    base = spec_path.resolve().parent

    def at(p: Path) -> Path:
        return p if p.is_absolute() else base / p

    lines = [password_line(spec.hub_user, _read_password(at(spec.hub_password_file),
                                                         "hub_password_file"))]  # fmt: skip
    for user, edge in spec.edges.items():
        password = _read_password(at(edge.password_file), f"edges.{user}.password_file")
        lines.append(password_line(user, password))
    out.mkdir(parents=True, exist_ok=True)
    passwords, acl, conf = out / "passwords", out / "acl", out / "mosquitto-security.conf"
    fd = os.open(passwords, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    acl.write_text(acl_text(spec.hub_user, {u: e.machines for u, e in spec.edges.items()}))
    conf.write_text("\n".join(security_lines(passwords.resolve(), acl.resolve())) + "\n")
    return [passwords, acl, conf]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m machinetwin.hub.broker_security",
                                     description="Mosquitto password and ACL files for the edges")  # fmt: skip
    parser.add_argument("spec", type=Path, help="TOML: hub_user, hub_password_file, [edges.*]")
    parser.add_argument("out", type=Path, help="folder for passwords, acl, mosquitto-security.conf")
    args = parser.parse_args(argv)
    try:
        for path in write_broker_files(args.spec, args.out):
            print(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
