"""The hub's side of remote control: issue, sign, publish and track commands; the audit log.

- :class:`CommandSigner`: the hub's Ed25519 key (a PEM file next to the store, mode
  0600, created on first start). Its public key (base64, ``public_key_b64``) goes into
  each site file's ``[control] hub_public_key``; edges verify every command with it.
- :class:`AuditLog`: every command, every check the hub made and every answer the edge
  gave, in SQLite next to the store. Append-only (triggers refuse UPDATE and DELETE)
  and hash-chained: each entry's SHA-256 covers the previous entry's hash, so
  :func:`verify_audit` finds any edit, deletion or insertion made behind SQLite's back.
  ``python -m machinetwin.hub.commands verify AUDIT.sqlite`` runs it.
- :class:`CommandService`: ``issue()`` checks the user's role against the command
  (``model.commands.COMMANDS``), for a cycle start a passing pre-flight of that very
  program (by SHA-256) on the machine's twin, then signs and publishes at QoS 1 on
  ``mt/v1/<machine>/cmd`` and records the edge's replies from ``.../cmdreply``.
  State and motion commands are refused early (409, audited) unless the machine's edge
  reports an active site permit (``.../permit``, retained, refreshed every few seconds),
  is online and its report has not lapsed (:meth:`CommandService.gate`); stopping
  commands always go. The edge checks the permit again: the hub's view only fails closed.
  Heartbeats for dead-man motion are signed too but not audited one by one (ten a
  second would drown the log); the motion's start and its end are.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import socket
import sqlite3
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..errors import MachinetwinError
from ..model.commands import (
    COMMANDS,
    Command,
    CommandError,
    CommandReply,
    PermitReport,
    encode_signed,
    new_command,
)
from ..protocols import topics
from ..protocols.broker import BrokerAddress
from .auth import Role, User

log = logging.getLogger(__name__)

MAX_TRACKED = 20_000  # command statuses kept in memory (the audit log keeps them all)
HEARTBEAT_TTL_S = 2.0
PREFLIGHT_VALID_S = 3600.0  # a passing pre-flight allows a start for an hour
REPORT_PERIODS = 3.0  # a permit report older than this many of its periods has lapsed
CLOCK_SKEW_S = 2.0  # the same allowance the edge gives a command's times


class CommandRefused(MachinetwinError):
    """The hub refused a command before signing it; ``status`` is the HTTP answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def no_delay(client: mqtt.Client, userdata: object, sock: object) -> None:
    """TCP_NODELAY on the command connection: without it Nagle's algorithm holds a
    message behind an unacknowledged one until the peer's delayed ACK (~40 ms)."""
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


# --- the signing key ---------------------------------------------------------------------------------


class CommandSigner:
    """Signs commands with the hub's Ed25519 key."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self.key = key

    @classmethod
    def load_or_create(cls, path: Path | str) -> CommandSigner:
        """The key in ``path`` (PKCS#8 PEM), created there (mode 0600) if missing."""
        path = Path(path)
        if path.exists():
            try:
                key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            except (ValueError, TypeError) as exc:
                raise MachinetwinError(f"{path}: not a PEM private key: {exc}") from None
            if not isinstance(key, Ed25519PrivateKey):
                raise MachinetwinError(f"{path}: the command key must be Ed25519")
            return cls(key)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())  # fmt: skip
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        return cls(key)

    @property
    def public_key_b64(self) -> str:
        import base64

        raw = self.key.public_key().public_bytes(serialization.Encoding.Raw,
                                                 serialization.PublicFormat.Raw)  # fmt: skip
        return base64.b64encode(raw).decode()

    def sign(self, command: Command) -> bytes:
        """The wire message: the canonical bytes and their signature."""
        return encode_signed(command, self.key.sign(command.canonical_bytes()))


# --- the audit log -------------------------------------------------------------------------------------

_AUDIT_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    machine TEXT NOT NULL,
    command_id TEXT NOT NULL,
    event TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_machine ON audit (machine, seq);
CREATE INDEX IF NOT EXISTS audit_command ON audit (command_id, seq);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""
GENESIS = "0" * 64


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    at: float
    actor: str  # the user, or "edge:<machine>" for the edge's answers
    machine: str
    command_id: str
    event: str  # issued, refused, accepted, rejected, done, failed, duplicate, preflight
    detail: dict[str, Any]
    prev_hash: str
    hash: str


def _entry_hash(prev: str, seq: int, at: float, actor: str, machine: str, command_id: str,
                event: str, detail: str) -> str:  # fmt: skip
    body = json.dumps([prev, seq, at, actor, machine, command_id, event, detail],
                      separators=(",", ":"), ensure_ascii=True)  # fmt: skip
    return hashlib.sha256(body.encode()).hexdigest()


class AuditUnavailable(MachinetwinError):
    """The audit log cannot be written: nothing that needs an entry may go ahead."""


class AuditLog:
    """Append-only, hash-chained record of every command (see the module docstring).

    Durability, where it matters and no more: ``durable=True`` (the default: a command's
    ``issued`` entry, refusals, pre-flights) commits with synchronous=FULL, so the entry
    is on disk before :meth:`append` returns — before the command leaves. The edge's
    answers are appended with ``durable=False`` from the MQTT thread: committed at once
    (WAL, synchronous=NORMAL: safe against a hub crash, in chain order) but fsynced with
    the next durable entry — the WAL is one file, one fsync covers every frame before it
    — or by a background sync within ``SYNC_AFTER_S``. So the next command's ``issued``
    entry never waits behind its predecessor's answers' fsyncs; a power cut can lose only
    a tail of answers, never a link in the middle of the chain. A failed write closes
    the log: every later append raises :class:`AuditUnavailable` (fail closed: no
    command without its entry).
    """

    SYNC_AFTER_S = 0.5

    def __init__(self, path: Path | str, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.clock = clock
        self.lock = threading.Condition()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(_AUDIT_SCHEMA)
        row = self.db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        self.last_seq, self.last_hash = row if row else (0, GENESIS)
        self.synced_seq = self.last_seq  # entries up to this one are on disk
        self.error: str | None = None
        self.closing = False
        self.syncs = 0  # fsyncs made (durable appends and background syncs)
        self.syncer = threading.Thread(target=self._sync_loop, name="audit-sync", daemon=True)
        self.syncer.start()

    def append(self, actor: str, machine: str, command_id: str, event: str,
               detail: dict[str, Any], durable: bool = True) -> AuditEntry:  # fmt: skip
        text = json.dumps(detail, sort_keys=True, separators=(",", ":"), default=str)
        with self.lock:
            self._check_open()
            seq, at = self.last_seq + 1, self.clock()
            digest = _entry_hash(self.last_hash, seq, at, actor, machine, command_id, event, text)
            row = (seq, at, actor, machine, command_id, event, text, self.last_hash, digest)
            self._write(row, durable)
            self.last_seq, self.last_hash = seq, digest
            if durable:
                self.synced_seq = seq  # and everything before it: the WAL is one file
            else:
                self.lock.notify_all()  # the syncer makes it durable soon
        return AuditEntry(seq, at, actor, machine, command_id, event, detail, row[7], digest)

    def _write(self, row: tuple[Any, ...], durable: bool) -> None:
        try:
            self.db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self.db.execute("INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
        except sqlite3.Error as exc:
            self.error = str(exc)
            log.error("hub: audit log %s failed: %s", self.path, exc)
            raise AuditUnavailable(f"{self.path}: the audit log failed: {exc}") from None
        self.syncs += int(durable)

    def _check_open(self) -> None:
        if self.error is not None:
            raise AuditUnavailable(f"{self.path}: the audit log failed: {self.error}")
        if self.closing:
            raise AuditUnavailable(f"{self.path}: the audit log is closed")

    def flush(self) -> None:
        """Every entry appended so far on disk (a checkpoint syncs the WAL first)."""
        with self.lock:
            if self.error is None and not self.closing and self.synced_seq < self.last_seq:
                self._sync()

    def _sync(self) -> None:
        try:
            self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:
            self.error = str(exc)
            log.error("hub: audit log %s failed to sync: %s", self.path, exc)
            return
        self.synced_seq = self.last_seq
        self.syncs += 1

    def _sync_loop(self) -> None:
        """Answers appended without an fsync reach the disk within SYNC_AFTER_S."""
        with self.lock:
            while not self.closing:
                if self.synced_seq < self.last_seq and self.error is None:
                    self.lock.wait(self.SYNC_AFTER_S)  # a durable append may sync them first
                    if self.synced_seq < self.last_seq and self.error is None:
                        self._sync()
                else:
                    self.lock.wait()

    def entries(self, machine: str | None = None, command_id: str | None = None,
                limit: int = 1000) -> list[AuditEntry]:  # fmt: skip
        """Newest first."""
        sql, args = "SELECT * FROM audit", []
        where = []
        if machine is not None:
            where.append("machine = ?")
            args.append(machine)
        if command_id is not None:
            where.append("command_id = ?")
            args.append(command_id)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq DESC LIMIT ?"
        with self.lock:
            rows = self.db.execute(sql, (*args, int(limit))).fetchall()
        return [AuditEntry(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]), r[7], r[8])
                for r in rows]  # fmt: skip

    def close(self) -> None:
        """Sync what is not on disk yet, then close."""
        self.flush()
        with self.lock:
            self.closing = True
            self.lock.notify_all()
        self.syncer.join()
        with self.lock:
            self.db.close()


def verify_audit(path: Path | str) -> tuple[bool, str]:
    """(ok, message): recompute the hash chain of the log in ``path`` from the start."""
    path = Path(path)
    if not path.is_file():
        return False, f"{path}: no such audit log"
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            # the indexes hold copies of some values: a change there is an edit too
            problems = [r[0] for r in db.execute("PRAGMA integrity_check").fetchall()]
            if problems != ["ok"]:
                return False, f"{path}: the file was changed: {problems[0]}"
            rows = db.execute("SELECT * FROM audit ORDER BY seq").fetchall()
        finally:
            db.close()
    except sqlite3.Error as exc:  # a changed byte can break the file's structure itself
        return False, f"{path}: unreadable audit log: {exc}"
    return _check_chain(path, rows)


def _check_chain(path: Path, rows: list[tuple]) -> tuple[bool, str]:
    prev, expected_seq = GENESIS, 1
    for seq, at, actor, machine, command_id, event, detail, prev_hash, digest in rows:
        if seq != expected_seq:
            return False, f"{path}: entry {expected_seq} is missing (next is {seq})"
        if prev_hash != prev:
            return False, f"{path}: entry {seq} does not follow entry {seq - 1}"
        if _entry_hash(prev, seq, at, actor, machine, command_id, event, detail) != digest:
            return False, f"{path}: entry {seq} was changed"
        prev, expected_seq = digest, seq + 1
    return True, f"{path}: {len(rows)} entries, chain intact"


# --- tracking ----------------------------------------------------------------------------------------


@dataclass
class CommandStatus:
    """What the hub knows of one command; ``state`` is the latest answer."""

    command: Command
    state: str = "sent"  # sent, accepted, rejected, done, failed, duplicate
    reason: str = ""
    replies: list[tuple[str, str, float]] = field(default_factory=list)  # (status, reason, at)
    sent_mono: float = 0.0  # when issue() began (monotonic)
    audited_mono: float | None = None  # the "issued" entry written
    published_mono: float | None = None  # handed to the MQTT client
    answered_mono: float | None = None  # first answer (accepted or rejected)

    def as_dict(self) -> dict[str, Any]:
        c = self.command
        return {"id": c.id, "machine": c.machine, "name": c.name, "issuer": c.issuer,
                "issued_at": c.issued_at, "expires_at": c.expires_at, "args": c.args,
                "state": self.state, "reason": self.reason,
                "replies": [{"status": s, "reason": r, "at": at} for s, r, at in self.replies]}  # fmt: skip


@dataclass(frozen=True, slots=True)
class ControlGate:
    """Whether the hub offers state and motion commands for a machine now, and why not."""

    allowed: bool
    reason: str  # why not; or what allows it ("site permit active until …")
    permit_until: float | None = None
    granted_by: str = ""


@dataclass
class SiteReport:
    """What the hub last heard from a machine's edge about remote operation."""

    permit: PermitReport | None = None
    online: bool | None = None  # the edge's state topic; None: never heard


def gate_of(machine: str, site: SiteReport | None, now: float) -> ControlGate:
    """The gate from the edge's last reports (fail closed: no news is no permit)."""
    report = site.permit if site is not None else None
    if site is not None and site.online is False:
        return ControlGate(False, f"{machine} is offline (its edge left the broker)")
    if report is None:
        return ControlGate(False, f"the site of {machine} has not reported a remote-operation "
                                  f"permit")  # fmt: skip
    if not report.active:
        return ControlGate(False, report.reason or f"no remote-operation permit for {machine}")
    age = now - report.at
    if age > REPORT_PERIODS * report.period_s + CLOCK_SKEW_S:
        return ControlGate(False, f"the site's permit report lapsed: last one {age:.0f} s ago "
                                  f"(every {report.period_s:g} s expected)")  # fmt: skip
    if now >= report.expires_at:  # type: ignore[operator] - active reports carry it
        until = time.strftime("%H:%M:%S", time.localtime(report.expires_at))
        return ControlGate(False, f"the site permit of {machine} expired at {until}")
    until = time.strftime("%H:%M:%S", time.localtime(report.expires_at))
    return ControlGate(True, f"site permit active until {until} (granted by {report.granted_by})",
                       report.expires_at, report.granted_by)  # fmt: skip


@dataclass(frozen=True, slots=True)
class PreflightPass:
    machine: str
    sha256: str
    at: float


class CommandService:
    """Issue, sign, publish and track commands (see the module docstring)."""

    def __init__(self, signer: CommandSigner, audit: AuditLog, broker: BrokerAddress | None,
                 clock: Callable[[], float] = time.time, default_ttl_s: float = 10.0) -> None:  # fmt: skip
        self.signer = signer
        self.audit = audit
        self.broker = broker
        self.clock = clock
        self.default_ttl_s = default_ttl_s
        self.lock = threading.Condition()
        self.statuses: OrderedDict[str, CommandStatus] = OrderedDict()
        self.preflights: dict[tuple[str, str], PreflightPass] = {}
        self.heartbeat_seq: dict[str, float] = {}
        self.sites: dict[str, SiteReport] = {}  # the edges' permit and online reports
        # machine -> its live position (machine mm) for pre-flight; set by the hub
        self.position_of: Callable[[str], tuple[float, float, float] | None] | None = None
        self.client: mqtt.Client | None = None

    # --- MQTT ----------------------------------------------------------------------------------

    def start(self) -> None:
        if self.broker is None:
            return
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"hub-cmd-{os.getpid()}",
                             clean_session=True)  # fmt: skip
        self.broker.configure(client)  # credentials and TLS
        client.on_connect = lambda c, *_: c.subscribe(
            [(topics.command_reply("+"), 1), (topics.permit("+"), 1), (topics.state("+"), 1)]
        )
        client.on_message = lambda _c, _u, m: self.on_message(m.topic, m.payload)
        client.on_socket_open = no_delay
        client.connect_async(self.broker.host, self.broker.port, self.broker.keepalive_s)
        client.loop_start()
        self.client = client

    def stop(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()
            self.client = None

    def _publish(self, machine: str, payload: bytes) -> None:
        if self.client is None:
            raise CommandRefused(503, "the hub has no connection to the broker")
        self.client.publish(topics.command(machine), payload, qos=1)

    # --- issuing -------------------------------------------------------------------------------

    def issue(self, user: User, machine: str, name: str, args: dict[str, Any] | None = None,
              ttl_s: float | None = None) -> CommandStatus:  # fmt: skip
        """Check, sign, audit and publish; CommandRefused (audited) if the hub says no."""
        args = dict(args or {})
        try:
            command = new_command(user.username, machine, name, args, now=self.clock(),
                                  ttl_s=self.default_ttl_s if ttl_s is None else ttl_s)  # fmt: skip
        except CommandError as exc:
            self._refuse(user, machine, "", 422, str(exc), {"name": name, "args": args})
        self._check_role(user, command)
        if command.spec.kind in ("state", "motion"):
            self._check_gate(user, command)
        if command.name == "cycle_start":
            self._check_preflight(user, command)
        if command.name == "heartbeat":
            raise CommandRefused(422, "heartbeats go through heartbeat(), not as commands")
        status = CommandStatus(command, sent_mono=time.monotonic())
        try:  # on disk before the command leaves: no command without its entry
            self.audit.append(user.username, machine, command.id, "issued",
                              {"name": command.name, "args": command.args,
                               "role": user.role.name, "expires_at": command.expires_at})  # fmt: skip
        except AuditUnavailable as exc:
            raise CommandRefused(503, f"not sent: {exc}") from None
        status.audited_mono = time.monotonic()
        with self.lock:
            self.statuses[command.id] = status
            while len(self.statuses) > MAX_TRACKED:
                self.statuses.popitem(last=False)
        self._publish(machine, self.signer.sign(command))
        status.published_mono = time.monotonic()
        return status

    def _check_role(self, user: User, command: Command) -> None:
        needed = Role.parse(COMMANDS[command.name].min_role)
        if user.role < needed:
            self._refuse(user, command.machine, command.id, 403,
                         f"{user.username} is {user.role.name.lower()}: {command.name} needs "
                         f"{needed.name.lower()}", {"name": command.name})  # fmt: skip

    def knows(self, machine: str) -> bool:
        """Whether ``machine``'s edge has reported to this service (permit or state)."""
        with self.lock:
            return machine in self.sites

    def gate(self, machine: str) -> ControlGate:
        """May state and motion commands go to ``machine`` now (its site's permit, its
        edge online and reporting)? The edge decides again; this refuses early and tells
        the UI."""
        with self.lock:
            site = self.sites.get(machine)
        return gate_of(machine, site, self.clock())

    def _check_gate(self, user: User, command: Command) -> None:
        gate = self.gate(command.machine)
        if not gate.allowed:
            self._refuse(user, command.machine, command.id, 409, gate.reason,
                         {"name": command.name})  # fmt: skip

    def _check_preflight(self, user: User, command: Command) -> None:
        sha = command.args["program_sha256"]
        passed = self.preflights.get((command.machine, sha))
        if passed is None or self.clock() - passed.at > PREFLIGHT_VALID_S:
            self._refuse(user, command.machine, command.id, 409,
                         f"program {sha[:12]}… has no passing pre-flight on {command.machine} "
                         f"in the last {PREFLIGHT_VALID_S / 60:.0f} min", {"name": command.name})  # fmt: skip

    def _refuse(self, user: User, machine: str, command_id: str, status: int, reason: str,
                detail: dict[str, Any]) -> NoReturn:  # fmt: skip
        try:
            self.audit.append(user.username, machine, command_id, "refused",
                              {**detail, "reason": reason, "http": status})  # fmt: skip
        except AuditUnavailable as exc:
            log.error("hub: refusal of %s on %s not audited: %s", user.username, machine, exc)
        raise CommandRefused(status, reason)

    def heartbeat(self, user: User, machine: str, motion_id: str) -> None:
        """Keep ``motion_id``'s dead-man alive (only its issuer may)."""
        with self.lock:
            status = self.statuses.get(motion_id)
        if status is None or status.command.machine != machine:
            raise CommandRefused(404, f"no command {motion_id} on {machine}")
        if status.command.issuer != user.username:
            raise CommandRefused(403, f"only {status.command.issuer} may keep {motion_id} alive")
        # strictly increasing issue times: the edge refuses a heartbeat not newer than the last
        now = max(self.clock(), self.heartbeat_seq.get(motion_id, 0.0) + 1e-6)
        self.heartbeat_seq[motion_id] = now
        beat = new_command(user.username, machine, "heartbeat", {"motion": motion_id}, now=now,
                           ttl_s=HEARTBEAT_TTL_S)  # fmt: skip
        self._publish(machine, self.signer.sign(beat))

    def record_preflight(self, user: User, machine: str, program: str, sha256: str,
                         report: dict[str, Any]) -> None:  # fmt: skip
        """Audit a pre-flight; a passing one allows that program's start for a while
        (only once audited: CommandRefused(503) otherwise)."""
        try:
            self.audit.append(user.username, machine, "", "preflight",
                              {"program": program, "sha256": sha256, **report})  # fmt: skip
        except AuditUnavailable as exc:
            raise CommandRefused(503, f"pre-flight not recorded: {exc}") from None
        if report.get("ok"):
            self.preflights[(machine, sha256)] = PreflightPass(machine, sha256, self.clock())

    # --- replies and reports ---------------------------------------------------------------------

    def on_message(self, topic: str, payload: bytes) -> None:
        """From paho's thread: a reply, a permit report or an online/offline state."""
        try:
            machine, kind = topics.parse(topic)
        except ValueError:
            return
        if kind == "cmdreply":
            self.on_reply_payload(topic, payload)
        elif kind == "permit":
            self.on_permit_payload(machine, payload)
        elif kind == "state" and payload in (topics.ONLINE, topics.OFFLINE):
            with self.lock:
                self.sites.setdefault(machine, SiteReport()).online = payload == topics.ONLINE

    def on_permit_payload(self, machine: str, payload: bytes) -> None:
        try:
            report = PermitReport.decode(payload)
        except CommandError as exc:
            log.warning("hub: bad permit report of %s: %s", machine, exc)
            return
        if report.machine != machine:  # an edge speaking for another machine: ignored
            log.warning("hub: permit report for %s arrived on %s's topic", report.machine, machine)
            return
        with self.lock:
            self.sites.setdefault(machine, SiteReport()).permit = report

    def on_reply_payload(self, topic: str, payload: bytes) -> None:
        try:
            machine, _ = topics.parse(topic)
            reply = CommandReply.decode(payload)
        except (ValueError, CommandError) as exc:
            log.warning("hub: bad command reply on %s: %s", topic, exc)
            return
        if reply.machine != machine:
            log.warning("hub: reply for %s arrived on %s's topic", reply.machine, machine)
            return
        self.on_reply(reply)

    def on_reply(self, reply: CommandReply) -> None:
        with self.lock:
            status = self.statuses.get(reply.id)
            if status is not None:
                self._apply(status, reply)
                if reply.status in ("done", "failed", "rejected"):
                    self.heartbeat_seq.pop(reply.id, None)  # the motion is over
            self.lock.notify_all()
        try:  # on disk with the next batch: the next command's entry does not wait for it
            self.audit.append(f"edge:{reply.machine}", reply.machine, reply.id, reply.status,
                              {"reason": reply.reason, "edge_at": reply.at,
                               "known": status is not None}, durable=False)  # fmt: skip
        except AuditUnavailable as exc:
            log.error("hub: answer %s of %s not audited: %s", reply.status, reply.id, exc)

    @staticmethod
    def _apply(status: CommandStatus, reply: CommandReply) -> None:
        status.replies.append((reply.status, reply.reason, reply.at))
        if status.answered_mono is None:
            status.answered_mono = time.monotonic()
        if reply.status != "duplicate" or status.state == "sent":
            status.state, status.reason = reply.status, reply.reason

    def status(self, command_id: str) -> CommandStatus | None:
        with self.lock:
            return self.statuses.get(command_id)

    def wait(self, command_id: str, states: tuple[str, ...], timeout_s: float) -> CommandStatus:
        """Block until the command reaches one of ``states`` (or time runs out)."""
        deadline = time.monotonic() + timeout_s
        with self.lock:
            while True:
                status = self.statuses.get(command_id)
                if status is not None and status.state in states:
                    return status
                left = deadline - time.monotonic()
                if left <= 0:
                    if status is None:
                        raise KeyError(command_id)
                    return status
                self.lock.wait(left)


def open_command_service(store_path: Path | str, broker: BrokerAddress | None) -> CommandService:
    """The service of the hub whose store is ``store_path``: key and audit log beside it."""
    base = Path(store_path).resolve().parent
    signer = CommandSigner.load_or_create(base / "hub-command-key.pem")
    return CommandService(signer, AuditLog(base / "audit.sqlite"), broker)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m machinetwin.hub.commands")
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("verify", help="check the audit log's hash chain").add_argument("path")
    key = sub.add_parser("public-key", help="print the hub's public key for site files")
    key.add_argument("key_file")
    args = parser.parse_args(argv)
    if args.what == "verify":
        ok, message = verify_audit(args.path)
        print(message, file=sys.stdout if ok else sys.stderr)
        return 0 if ok else 1
    print(CommandSigner.load_or_create(args.key_file).public_key_b64)
    return 0


if __name__ == "__main__":
    sys.exit(main())
