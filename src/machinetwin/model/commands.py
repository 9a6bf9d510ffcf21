"""Remote commands: the record the hub signs and the edge verifies, and what each name means.

A :class:`Command` has an id (a UUID, the unit of exactly-once execution), the issuer
(a hub username), the machine, when it was issued and when it expires (wall clock,
epoch s), a name from :data:`COMMANDS` and JSON arguments. ``canonical_bytes()`` is
the one byte string that is signed (Ed25519, by the hub) and verified (at the edge):
sorted-key, whitespace-free JSON under a version tag, so that both sides derive the
same bytes from the same fields. On the wire the edge verifies these bytes *before*
parsing them (:func:`decode_signed`), so a parser quirk can never make a forged
command look valid.

Classes of command (what the edge requires before executing, see ``edge/executor``):

- ``stopping`` (feed hold, stop, e-stop): signature and expiry only; stopping a machine
  is always allowed to whoever may command it.
- ``state`` (program select, reset, alarm reset, overrides): also the site permit.
- ``motion`` (cycle start, resume, MDI, jogs): also the site permit, a known machine
  state and clear interlocks (e-stop, active alarm, door where reported).
- ``heartbeat``: keeps a dead-man motion alive; never executed on its own.
"""

from __future__ import annotations

import base64
import json
import math
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import MachinetwinError

WIRE_VERSION = "mt-cmd-1"
MAX_TTL_S = 120.0  # a signed command is valid at most this long: bounds the replay window
DEFAULT_TTL_S = 10.0
MAX_BODY_BYTES = 64 * 1024
MAX_TRANSFER_TEXT_BYTES = 28 * 1024  # a program sent with select_program
SIGNATURE_BYTES = 64  # Ed25519

Kind = Literal["stopping", "state", "motion", "heartbeat"]
ReplyStatus = Literal["accepted", "rejected", "done", "failed", "duplicate"]


class CommandError(MachinetwinError):
    """A command record or its wire form is invalid; the message names the field."""


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """What a command name means: its class, the lowest role that may issue it and its
    argument names (required, optional)."""

    kind: Kind
    min_role: str  # "operator" | "maintainer" | "admin" (hub roles, by name)
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()


# Motion commands may carry deadman_s: the edge then holds feed when heartbeats stop.
_DEADMAN = ("deadman_s",)
COMMANDS: dict[str, CommandSpec] = {
    "feed_hold": CommandSpec("stopping", "operator"),
    "stop": CommandSpec("stopping", "operator"),
    "estop": CommandSpec("stopping", "operator"),
    # a program the machine has (by name), or one transferred: its text and SHA-256
    "select_program": CommandSpec("state", "operator", ("program",), ("text", "sha256")),
    "reset": CommandSpec("state", "operator"),
    "alarm_reset": CommandSpec("state", "maintainer"),
    "feed_override": CommandSpec("state", "operator", ("percent",)),
    "rapid_override": CommandSpec("state", "operator", ("percent",)),
    "spindle_override": CommandSpec("state", "operator", ("percent",)),
    "cycle_start": CommandSpec("motion", "operator", ("program_sha256",), _DEADMAN),
    "resume": CommandSpec("motion", "operator", (), _DEADMAN),
    "mdi": CommandSpec("motion", "operator", ("line",), _DEADMAN),
    "jog": CommandSpec("motion", "operator", ("axis", "distance", "feed"), _DEADMAN),
    # continuous jog always needs heartbeats (deadman_s is required)
    "jog_continuous": CommandSpec("motion", "operator", ("axis", "direction", "feed", "deadman_s")),
    "heartbeat": CommandSpec("heartbeat", "operator", ("motion",)),
}

MIN_DEADMAN_S = 0.02
MAX_DEADMAN_S = 5.0
_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_MACHINE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_ISSUER_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


@dataclass(frozen=True, slots=True)
class Command:
    """One signed-to-be command (see the module docstring)."""

    id: str
    issuer: str
    machine: str
    issued_at: float
    expires_at: float
    name: str
    args: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate(self)

    @property
    def spec(self) -> CommandSpec:
        return COMMANDS[self.name]

    @property
    def deadman_s(self) -> float | None:
        value = self.args.get("deadman_s")
        return None if value is None else float(value)

    def to_dict(self) -> dict[str, Any]:
        return {"v": WIRE_VERSION, "id": self.id, "issuer": self.issuer, "machine": self.machine,
                "issued_at": self.issued_at, "expires_at": self.expires_at, "name": self.name,
                "args": self.args}  # fmt: skip

    def canonical_bytes(self) -> bytes:
        """The signed bytes: deterministic JSON (sorted keys, no spaces, ASCII)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"),
                          ensure_ascii=True, allow_nan=False).encode()  # fmt: skip


def new_command(issuer: str, machine: str, name: str, args: dict[str, Any] | None = None, *,
                now: float, ttl_s: float = DEFAULT_TTL_S) -> Command:  # fmt: skip
    """A fresh command with a random UUID, valid from ``now`` for ``ttl_s`` seconds."""
    if not isinstance(ttl_s, int | float) or not 0 < ttl_s <= MAX_TTL_S:
        raise CommandError(f"ttl_s must be in (0, {MAX_TTL_S:g}] s, got {ttl_s!r}")
    return Command(str(uuid.uuid4()), issuer, machine, float(now), float(now) + float(ttl_s),
                   name, dict(args or {}))  # fmt: skip


# --- validation ---------------------------------------------------------------------------


def validate(c: Command) -> None:
    """Raise :class:`CommandError` naming the first bad field (fail closed)."""
    _check_str("id", c.id, _UUID_RE)
    _check_str("issuer", c.issuer, _ISSUER_RE)
    _check_str("machine", c.machine, _MACHINE_RE)
    for name in ("issued_at", "expires_at"):
        value = getattr(c, name)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise CommandError(f"command {c.id}: {name} must be a finite number, got {value!r}")
    if not 0 < c.expires_at - c.issued_at <= MAX_TTL_S:
        raise CommandError(f"command {c.id}: expires_at must be within (0, {MAX_TTL_S:g}] s "
                           f"after issued_at")  # fmt: skip
    spec = COMMANDS.get(c.name) if isinstance(c.name, str) else None
    if spec is None:
        raise CommandError(f"command {c.id}: unknown command {c.name!r}; "
                           f"known: {', '.join(sorted(COMMANDS))}")  # fmt: skip
    _check_args(c, spec)


def _check_str(name: str, value: object, pattern: re.Pattern[str]) -> None:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise CommandError(f"command field {name}: invalid value {value!r}")


def _check_args(c: Command, spec: CommandSpec) -> None:
    if not isinstance(c.args, dict):
        raise CommandError(f"command {c.id} ({c.name}): args must be an object")
    missing = [a for a in spec.required if a not in c.args]
    extra = sorted(set(c.args) - set(spec.required) - set(spec.optional))
    if missing or extra:
        raise CommandError(f"command {c.id} ({c.name}): missing args {missing}, "
                           f"unexpected args {extra}")  # fmt: skip
    for key, value in c.args.items():
        _check_arg(c, key, value)
    if ("text" in c.args) != ("sha256" in c.args):
        raise CommandError(f"command {c.id} ({c.name}): a transferred program needs both "
                           f"text and sha256")  # fmt: skip


_ARG_CHECKS: dict[str, tuple[type | tuple[type, ...], Any]] = {
    # arg: (types, extra check returning an error text or None)
    "percent": ((int, float), lambda v: None if 0 <= v <= 200 else "must be 0…200"),
    "deadman_s": ((int, float), lambda v: None if MIN_DEADMAN_S <= v <= MAX_DEADMAN_S
                  else f"must be {MIN_DEADMAN_S}…{MAX_DEADMAN_S} s"),
    "axis": (str, lambda v: None if v in ("x", "y", "z") else "must be x, y or z"),
    "direction": (int, lambda v: None if v in (-1, 1) else "must be -1 or 1"),
    "distance": ((int, float), lambda v: None if abs(v) <= 1000 else "must be within ±1000 mm"),
    "feed": ((int, float), lambda v: None if 0 < v <= 100_000 else "must be in (0, 100000] mm/min"),
    "line": (str, lambda v: None if 0 < len(v) <= 256 and "\n" not in v else "one line, ≤ 256 chars"),
    "program": (str, lambda v: None if 0 < len(v) <= 255 else "1…255 characters"),
    "program_sha256": (str, lambda v: None if re.fullmatch(r"[0-9a-f]{64}", v) else "64 hex digits"),
    "sha256": (str, lambda v: None if re.fullmatch(r"[0-9a-f]{64}", v) else "64 hex digits"),
    # JSON escaping can double a text's size: this keeps a signed message under MAX_BODY_BYTES
    "text": (str, lambda v: None if 0 < len(v.encode()) <= MAX_TRANSFER_TEXT_BYTES
             else f"must be 1…{MAX_TRANSFER_TEXT_BYTES} bytes (longer programs: not yet)"),
    "motion": (str, lambda v: None if _UUID_RE.fullmatch(v) else "must be a command id"),
}  # fmt: skip


def _check_arg(c: Command, key: str, value: object) -> None:
    types, check = _ARG_CHECKS[key]
    ok = isinstance(value, types) and not isinstance(value, bool)
    if ok and isinstance(value, float) and not math.isfinite(value):
        ok = False
    problem = check(value) if ok else f"must be {types}"
    if problem:
        raise CommandError(f"command {c.id} ({c.name}): arg {key}={value!r} {problem}")


# --- wire form: {"body": <canonical JSON text>, "sig": <base64 signature>} -------------------


def encode_signed(command: Command, signature: bytes) -> bytes:
    body = command.canonical_bytes().decode()
    return json.dumps({"body": body, "sig": base64.b64encode(signature).decode()}).encode()


def split_signed(payload: bytes) -> tuple[bytes, bytes]:
    """(signed bytes, signature) of a wire message, before any trust in its content."""
    if len(payload) > MAX_BODY_BYTES:
        raise CommandError(f"command message of {len(payload)} bytes is over {MAX_BODY_BYTES}")
    try:
        outer = json.loads(payload)
        body, sig = outer["body"], outer["sig"]
        signature = base64.b64decode(sig, validate=True)
        body_bytes = body.encode()
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CommandError(f"malformed command message: {type(exc).__name__}: {exc}") from None
    if len(signature) != SIGNATURE_BYTES:
        raise CommandError(f"signature must be {SIGNATURE_BYTES} bytes, got {len(signature)}")
    return body_bytes, signature


def parse_body(body: bytes) -> Command:
    """The command of verified bytes; they must be exactly its canonical form."""
    try:
        d = json.loads(body)
        if d.pop("v") != WIRE_VERSION:
            raise CommandError(f"unsupported command version; expected {WIRE_VERSION}")
        command = Command(**d)
    except CommandError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CommandError(f"malformed command body: {type(exc).__name__}: {exc}") from None
    if command.canonical_bytes() != body:
        raise CommandError(f"command {command.id}: body is not in canonical form")
    return command


# --- replies (edge -> hub) ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommandReply:
    """What the edge says about a command: accepted/rejected (with the reason), then the
    outcome (done/failed); ``duplicate`` when an id arrives again (never re-executed)."""

    id: str
    machine: str
    status: ReplyStatus
    reason: str = ""
    at: float = 0.0

    def encode(self) -> bytes:
        return json.dumps({"id": self.id, "machine": self.machine, "status": self.status,
                           "reason": self.reason, "at": self.at}).encode()  # fmt: skip

    @staticmethod
    def decode(payload: bytes) -> CommandReply:
        try:
            d = json.loads(payload)
            reply = CommandReply(str(d["id"]), str(d["machine"]), d["status"],
                                 str(d.get("reason", ""))[:1000], float(d.get("at", 0.0)))  # fmt: skip
        except (ValueError, KeyError, TypeError) as exc:
            raise CommandError(f"malformed command reply: {type(exc).__name__}: {exc}") from None
        if reply.status not in ("accepted", "rejected", "done", "failed", "duplicate"):
            raise CommandError(f"command reply {reply.id}: unknown status {reply.status!r}")
        return reply


# --- the site permit as the edge reports it (edge -> hub, retained) ------------------------


@dataclass(frozen=True, slots=True)
class PermitReport:
    """The site's remote-operation permit of one machine, as its edge last saw it.

    Published retained on ``mt/v1/<machine>/permit`` when it changes and every
    ``period_s`` (so the hub can tell a live report from a lapsed one), and as the command
    connection's will (``active`` false) so that a vanished edge reports no permit."""

    machine: str
    active: bool
    expires_at: float | None = None  # epoch s; None without a permit
    granted_by: str = ""
    reason: str = ""  # why there is no permit (the executor's refusal text)
    at: float = 0.0  # when the edge looked (epoch s)
    period_s: float = 5.0

    def encode(self) -> bytes:
        return json.dumps({"machine": self.machine, "active": self.active,
                           "expires_at": self.expires_at, "granted_by": self.granted_by,
                           "reason": self.reason, "at": self.at, "period_s": self.period_s},
                          allow_nan=False).encode()  # fmt: skip

    @staticmethod
    def decode(payload: bytes) -> PermitReport:
        """The report in ``payload``; CommandError names what is wrong (never trusted blindly)."""
        try:
            d = json.loads(payload)
            expires = d.get("expires_at")
            report = PermitReport(str(d["machine"]), d["active"] is True,
                                  None if expires is None else float(expires),
                                  str(d.get("granted_by", ""))[:64], str(d.get("reason", ""))[:500],
                                  float(d["at"]), float(d.get("period_s", 5.0)))  # fmt: skip
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CommandError(f"malformed permit report: {type(exc).__name__}: {exc}") from None
        numbers = [report.at, report.period_s] + ([] if expires is None else [report.expires_at])
        if not all(math.isfinite(x) for x in numbers) or not 0 < report.period_s <= 3600:
            raise CommandError(f"permit report of {report.machine}: times must be finite, "
                               f"period_s in (0, 3600]")  # fmt: skip
        if report.active and report.expires_at is None:
            raise CommandError(f"permit report of {report.machine}: active without expires_at")
        return report
