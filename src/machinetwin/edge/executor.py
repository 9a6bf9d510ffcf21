"""The edge's command executor: the last line of defence before a machine moves.

Every command arrives signed by the hub (``model.commands``). The executor, per
message, in this order, and failing closed at each step:

1. verifies the Ed25519 signature over the exact bytes received, with the hub's public
   key from the site file ([control] hub_public_key), and only then parses them;
2. checks the command is for this machine;
3. claims the id in a SQLite ledger on disk (committed with synchronous=FULL before
   anything else happens), so an id runs at most once, also across an edge restart;
   a second delivery gets its first answer again (``duplicate``), never a second run;
4. checks expiry with a stated clock-skew allowance (``clock_skew_s``, default 2 s:
   issued no later than now + skew, not expired before now - skew);
5. for state and motion commands: the site permit (``edge/permit``);
6. for motion: a known, fresh machine state (``max_state_age_s``, from the adapter's
   ``execution`` signal) and the interlocks: e-stop (the ``estop`` signal where
   reported, else an ESTOP alarm or this executor's own estop command until a reset),
   an active alarm of severity FAULT or above, the door (``door``) where reported;
7. executes through ``Adapter.command``; the machine's own refusal (CommandRejected)
   becomes ``rejected`` with its reason.

It replies ``accepted`` or ``rejected`` (with the reason), then the outcome (``done``
or ``failed``). Forged, malformed or foreign messages are counted and logged, never
recorded in the ledger (so nobody can burn a real command's id without the key).

Permit reports: :class:`PermitReporter` tells the hub each machine's site permit
(retained on ``mt/v1/<machine>/permit``: on change, after a reconnect, every
``PERMIT_REPORT_S``; the command connection's will and a clean stop report "no
permit"), so that the hub and its UI offer control only while the site allows it.
The executor checks the permit itself on every command regardless.

Dead-man: a motion command with ``deadman_s`` (always a continuous jog) stays alive
only while heartbeats arrive (signed too, each newer than the last, so a replayed one
does nothing); when none has arrived for two periods, or a heartbeat finds the permit
gone, the executor sends the machine a feed hold and reports the outcome.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import math
import os
import socket
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field

from ..errors import CommandRejected, ConfigError
from ..model import (
    Adapter,
    AdapterCommand,
    AlarmCode,
    Execution,
    MachineEvent,
    SampleBatch,
    Severity,
)
from ..model.commands import (
    Command,
    CommandError,
    CommandReply,
    PermitReport,
    parse_body,
    split_signed,
)
from ..protocols import topics
from ..protocols.broker import BrokerAddress
from .permit import PermitStore

log = logging.getLogger(__name__)

MAX_EXECUTED_KEPT = 100_000
LEDGER_KEEP_S = 7 * 24 * 3600.0
DEADMAN_PERIODS = 2.0  # feed hold after this many heartbeat periods without one
PERMIT_REPORT_S = 5.0  # the permit report is repeated this often: the hub's sign of life
PERMIT_POLL_S = 0.5  # the permit file is looked at this often: a grant shows within it


class ControlConfig(BaseModel):
    """The ``[control]`` section of a site file: remote commands for its machines."""

    model_config = ConfigDict(extra="forbid")

    hub_public_key: str  # base64 of the hub's raw 32-byte Ed25519 public key
    permit_file: Path = Path("permits.sqlite")
    ledger_file: Path = Path("commands.sqlite")
    clock_skew_s: float = Field(2.0, ge=0, le=30)
    max_state_age_s: float = Field(2.0, gt=0, le=60)


def load_public_key(text: str) -> Ed25519PublicKey:
    """The hub's public key from its base64 text; ConfigError says what is wrong."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        raise ConfigError(
            f"control.hub_public_key: not a base64 Ed25519 public key: {exc}"
        ) from None


# --- the at-most-once ledger -------------------------------------------------------------------------


class CommandLedger:
    """Every verified command id this site has seen, with its answer (SQLite, WAL)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self.db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # a claim survives a power cut
        self.db.execute("""CREATE TABLE IF NOT EXISTS commands (
            id TEXT PRIMARY KEY, machine TEXT NOT NULL, name TEXT NOT NULL,
            issuer TEXT NOT NULL, received_at REAL NOT NULL,
            status TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '')""")
        # Ids older than any command's validity can go: a replay of one is refused as
        # expired, so at-most-once still holds (LEDGER_KEEP_S >> MAX_TTL_S + skew).
        self.db.execute(
            "DELETE FROM commands WHERE received_at < ?", (time.time() - LEDGER_KEEP_S,)
        )

    def claim(self, c: Command, now: float) -> tuple[str, str] | None:
        """Record ``c`` as claimed; None if new, else its (status, reason) so far."""
        with self.lock:
            try:
                self.db.execute("PRAGMA synchronous=FULL")
                self.db.execute("INSERT INTO commands VALUES (?, ?, ?, ?, ?, 'claimed', '')",
                                (c.id, c.machine, c.name, c.issuer, now))  # fmt: skip
                return None
            except sqlite3.IntegrityError:
                row = self.db.execute("SELECT status, reason FROM commands WHERE id = ?",
                                      (c.id,)).fetchone()  # fmt: skip
                return (row[0], row[1]) if row else ("claimed", "")

    def finish(self, command_id: str, status: str, reason: str = "") -> None:
        """Record the answer. Not synced to disk at once (synchronous=NORMAL): losing it
        in a power cut leaves the id claimed, which still never runs again."""
        with self.lock:
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("UPDATE commands SET status = ?, reason = ? WHERE id = ?",
                            (status, reason, command_id))  # fmt: skip

    def count(self, status: str | None = None) -> int:
        with self.lock:
            if status is None:
                return self.db.execute("SELECT count(*) FROM commands").fetchone()[0]
            sql = "SELECT count(*) FROM commands WHERE status = ?"
            return self.db.execute(sql, (status,)).fetchone()[0]

    def close(self) -> None:
        with self.lock:
            self.db.close()


# --- what the executor knows about the machine ----------------------------------------------------


@dataclass
class MachineState:
    """The machine's state as its adapter reported it (last sample of each signal)."""

    execution: Execution | None = None
    estop: bool | None = None  # the estop signal; None: the machine does not report it
    # e-stop as the executor saw it otherwise: an ESTOP alarm, or its own estop command
    # (until a reset), for machines that do not report the signal
    estop_event: bool = False
    door_open: bool | None = None  # None: the machine does not report a door
    alarms: dict[tuple[str, str], Severity] = field(default_factory=dict)  # (code, source)
    updated_at: float = -1e18  # monotonic

    def observe(self, item: SampleBatch | MachineEvent) -> None:
        if isinstance(item, SampleBatch):
            self._observe_batch(item)
        elif item.alarm is not None and item.kind == "alarm":
            self.alarms[(item.alarm.code.value, item.alarm.source)] = item.alarm.severity
            if item.alarm.code == AlarmCode.ESTOP:
                self.estop_event = True
        elif item.alarm is not None and item.kind == "alarm_cleared":
            self.alarms.pop((item.alarm.code.value, item.alarm.source), None)
            if item.alarm.code == AlarmCode.ESTOP:
                self.estop_event = False

    def _observe_batch(self, batch: SampleBatch) -> None:
        cols = batch.columns
        last = _last_finite(cols.get("execution"))
        if last is not None and int(last) in Execution._value2member_map_:
            self.execution = Execution(int(last))
        estop = _last_finite(cols.get("estop"))
        if estop is not None:
            self.estop = bool(estop)
        door = _last_finite(cols.get("door"))
        if door is not None:
            self.door_open = bool(door)
        if len(batch.t):
            self.updated_at = time.monotonic()

    def interlock(self, max_age_s: float) -> str | None:
        """Why motion is not allowed now, or None."""
        if time.monotonic() - self.updated_at > max_age_s or self.execution is None:
            return f"machine state unknown (no report in the last {max_age_s:g} s)"
        if self.estop or (self.estop is None and self.estop_event):
            return "e-stop is active"
        faults = sorted(k for k, sev in self.alarms.items() if sev >= Severity.FAULT)
        if faults:
            return f"active alarm {faults[0][0]} ({faults[0][1]})"
        if self.door_open:
            return "the door is open"
        return None


def _last_finite(column: np.ndarray | None) -> float | None:
    if column is None or not len(column):
        return None
    finite = column[np.isfinite(column)]
    return float(finite[-1]) if len(finite) else None


# --- the executor ---------------------------------------------------------------------------------------


@dataclass
class _Deadman:
    command_id: str
    issuer: str  # only the motion's issuer may keep it alive
    period_s: float
    last_issued_at: float  # the newest heartbeat's issued_at (replays are older)
    last_beat: float  # monotonic
    timer: asyncio.TimerHandle | None = None


Reply = Callable[[CommandReply], None]


class CommandExecutor:
    """Checks and executes signed commands for one machine (see the module docstring)."""

    def __init__(self, adapter: Adapter, public_key: Ed25519PublicKey, permits: PermitStore,
                 ledger: CommandLedger, reply: Reply, *, clock_skew_s: float = 2.0,
                 max_state_age_s: float = 2.0, clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        self.adapter = adapter
        self.machine = adapter.descriptor.machine_id
        self.public_key = public_key
        self.permits = permits
        self.ledger = ledger
        self.reply = reply
        self.clock_skew_s = clock_skew_s
        self.max_state_age_s = max_state_age_s
        self.clock = clock
        self.state = MachineState()
        self.counts: Counter[str] = Counter()
        self.deadman: _Deadman | None = None
        self.holds: list[float] = []  # monotonic times of dead-man feed holds
        self.executed: list[str] = []  # ids passed to the adapter, in order
        self.loop: asyncio.AbstractEventLoop | None = None
        self.serial = asyncio.Lock()
        # per-command monotonic stamps for profiling the round trip (benchmarks/command_rtt):
        # id -> [received, verified, claimed, executed, answered]; None: not recorded
        self.trace: dict[str, list[float]] | None = None

    def observe(self, item: SampleBatch | MachineEvent) -> None:
        self.state.observe(item)

    def submit(self, payload: bytes) -> None:
        """From any thread (paho's): handle ``payload`` on the executor's loop, in order."""
        if self.loop is None:
            self.counts["no_loop"] += 1
            return
        work = self.handle(payload, time.monotonic())
        try:
            asyncio.run_coroutine_threadsafe(work, self.loop)
        except RuntimeError:  # the loop has closed: the edge is shutting down
            work.close()
            self.counts["no_loop"] += 1

    async def handle(self, payload: bytes, received: float | None = None) -> None:
        """One message from the command topic (``received``: when it arrived, monotonic)."""
        self.loop = self.loop or asyncio.get_running_loop()
        command = self._verified(payload)
        if command is None:
            return
        if self.trace is not None and command.name != "heartbeat":
            self.trace[command.id] = [received or time.monotonic(), time.monotonic()]
        if command.name == "heartbeat":
            await self._heartbeat(command)
            return
        if command.spec.kind == "stopping":  # never queued behind a slow command
            await self._claim_and_run(command)
            return
        async with self.serial:  # checks and execution of one command at a time
            await self._claim_and_run(command)

    async def _claim_and_run(self, command: Command) -> None:
        try:
            earlier = self.ledger.claim(command, self.clock())
            self._stamp(command.id)
        except sqlite3.Error as exc:  # cannot promise at-most-once: refuse, run nothing
            log.error("%s: command ledger failed: %s", self.machine, exc)
            self._reply(command, "rejected", f"edge command ledger unavailable: {exc}")
            return
        if earlier is not None:
            self.counts["duplicate"] += 1
            self._reply(command, "duplicate", f"already {earlier[0]}: {earlier[1]}".rstrip(": "))
            return
        reason = self._refusal(command)
        if reason is not None:
            self._finish(command, "rejected", reason)
            return
        await self._execute(command)

    # --- checks ---------------------------------------------------------------------------------------

    def _verified(self, payload: bytes) -> Command | None:
        try:
            body, signature = split_signed(payload)
        except CommandError as exc:
            return self._drop("malformed", str(exc))
        try:
            self.public_key.verify(signature, body)
        except InvalidSignature:
            return self._drop("bad_signature", "signature does not verify with the hub's key")
        try:
            command = parse_body(body)
        except CommandError as exc:  # signed by the hub but not understood: still refused
            return self._drop("malformed", str(exc))
        if command.machine != self.machine:
            return self._drop("foreign", f"command {command.id} is for {command.machine}")
        return command

    def _drop(self, what: str, reason: str) -> None:
        self.counts[what] += 1
        log.warning("%s: command refused (%s): %s", self.machine, what, reason)
        return None

    def _refusal(self, c: Command) -> str | None:
        """Why ``c`` may not run now (expiry, permit, interlocks), or None."""
        now = self.clock()
        if c.issued_at > now + self.clock_skew_s:
            return f"issued in the future ({c.issued_at - now:.1f} s ahead; skew allowance {self.clock_skew_s:g} s)"
        if now > c.expires_at + self.clock_skew_s:
            return (
                f"expired {now - c.expires_at:.1f} s ago (skew allowance {self.clock_skew_s:g} s)"
            )
        kind = c.spec.kind
        if kind in ("state", "motion") and self.permits.active(self.machine) is None:
            return self.permits.why_not(self.machine)
        if kind == "motion":
            if self.deadman is not None:
                return f"remote motion {self.deadman.command_id} is still active"
            return self.state.interlock(self.max_state_age_s)
        return None

    # --- execution --------------------------------------------------------------------------------

    async def _execute(self, c: Command) -> None:
        try:
            await self.adapter.command(AdapterCommand(*_adapter_command(c)))
        except CommandRejected as exc:  # the machine refused and changed nothing
            self._finish(c, "rejected", f"machine refused: {exc}")
            return
        except Exception as exc:  # noqa: BLE001 - any failure is reported, never swallowed
            log.exception("%s: command %s failed", self.machine, c.id)
            self._finish(c, "failed", f"{type(exc).__name__}: {exc}")
            return
        self.executed.append(c.id)
        if len(self.executed) > MAX_EXECUTED_KEPT:  # a record for tests and status, bounded
            del self.executed[: MAX_EXECUTED_KEPT // 2]
        self._reply(c, "accepted", "executed")
        if c.name == "estop":
            self.state.estop_event = True
        if c.name in ("reset", "alarm_reset"):
            self.state.alarms.clear()  # the machine cleared them; a persisting cause re-raises
            self.state.estop_event = c.name == "alarm_reset" and self.state.estop_event
        if c.spec.kind == "stopping":
            self._end_deadman()
        if c.deadman_s is not None:
            self._start_deadman(c)
            self.ledger.finish(c.id, "accepted", "running under dead-man")
            return
        self._finish(c, "done", "executed")

    def _finish(self, c: Command, status: str, reason: str) -> None:
        self.counts[status] += 1
        self.ledger.finish(c.id, status, reason)
        self._reply(c, status, reason)

    def _stamp(self, command_id: str) -> None:
        if self.trace is not None and command_id in self.trace:
            self.trace[command_id].append(time.monotonic())

    def _reply(self, c: Command, status: str, reason: str) -> None:
        if status in ("accepted", "rejected"):
            self._stamp(c.id)  # executed (or refused)
        try:
            self.reply(CommandReply(c.id, self.machine, status, reason, self.clock()))  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001 - a lost reply must not undo an execution
            log.exception("%s: reply for %s not sent", self.machine, c.id)
        if status in ("accepted", "rejected"):
            self._stamp(c.id)  # the answer handed to MQTT

    # --- dead-man ----------------------------------------------------------------------------------

    def _start_deadman(self, c: Command) -> None:
        period = float(c.deadman_s or 0.0)
        self.deadman = _Deadman(c.id, c.issuer, period, c.issued_at, time.monotonic())
        self._arm()

    def _arm(self) -> None:
        d = self.deadman
        assert d is not None and self.loop is not None
        if d.timer is not None:
            d.timer.cancel()
        d.timer = self.loop.call_at(self.loop.time() + DEADMAN_PERIODS * d.period_s,
                                    self._deadman_expired, d.command_id)  # fmt: skip

    async def _heartbeat(self, hb: Command) -> None:
        d = self.deadman
        if d is None or hb.args["motion"] != d.command_id:
            self.counts["stray_heartbeat"] += 1
            return
        if self._refusal_of_heartbeat(hb, d) is not None:
            self.counts["bad_heartbeat"] += 1
            return
        if self.permits.active(self.machine) is None:  # permit revoked: stop now
            self._end_deadman()
            await self._hold(d.command_id, "site permit ended during remote motion")
            return
        d.last_issued_at = hb.issued_at
        d.last_beat = time.monotonic()
        self.counts["heartbeat"] += 1
        self._arm()

    def _refusal_of_heartbeat(self, hb: Command, d: _Deadman) -> str | None:
        now = self.clock()
        if hb.issuer != d.issuer:
            return f"heartbeat from {hb.issuer}, the motion is {d.issuer}'s"
        if hb.issued_at <= d.last_issued_at:
            return "replayed or out-of-order heartbeat"
        if now > hb.expires_at + self.clock_skew_s or hb.issued_at > now + self.clock_skew_s:
            return "heartbeat outside its validity"
        return None

    def _deadman_expired(self, command_id: str) -> None:
        d = self.deadman
        if d is None or d.command_id != command_id:
            return
        silent_ms = 1000 * (time.monotonic() - d.last_beat)
        reason = (
            f"dead-man: no heartbeat for {silent_ms:.0f} ms (period {1000 * d.period_s:.0f} ms)"
        )
        self._hold_if(command_id, reason)

    async def _hold(self, command_id: str, reason: str) -> None:
        """Feed hold for dead-man motion ``command_id`` (already ended by the caller)."""
        self.holds.append(time.monotonic())
        try:
            await self.adapter.command(AdapterCommand("feed_hold"))
            outcome = f"{reason}: feed hold"
        except CommandRejected as exc:  # nothing was moving any more
            outcome = f"{reason}: feed hold not needed ({exc})"
        log.warning("%s: %s", self.machine, outcome)
        self.counts["deadman_hold"] += 1
        self.ledger.finish(command_id, "done", outcome)
        self.reply(CommandReply(command_id, self.machine, "done", outcome, self.clock()))

    def link_lost(self) -> None:
        """From any thread: the command connection dropped. Remote motion under a
        dead-man is held at once (no heartbeat can arrive), not two periods later."""
        loop, d = self.loop, self.deadman
        if loop is None or d is None or loop.is_closed():
            return
        reason = "dead-man: the link to the hub was lost"
        loop.call_soon_threadsafe(lambda: self._hold_if(d.command_id, reason))

    def _hold_if(self, command_id: str, reason: str) -> None:
        d = self.deadman
        if d is not None and d.command_id == command_id and self.loop is not None:
            self._end_deadman()  # now, so a second trigger cannot hold twice
            self.loop.create_task(self._hold(command_id, reason))

    def _end_deadman(self) -> None:
        d, self.deadman = self.deadman, None
        if d is not None and d.timer is not None:
            d.timer.cancel()


def _adapter_command(c: Command) -> tuple[str, dict]:
    """The adapter's form of a command: the dead-man stays at the edge."""
    args = {k: v for k, v in c.args.items() if k != "deadman_s"}
    if c.name == "jog_continuous":
        return "jog", {**args, "continuous": True}
    return c.name, args


# --- MQTT: the command topic in, replies out ------------------------------------------------------


def no_delay(client: mqtt.Client, userdata: object, sock: object) -> None:
    """Commands are small and sequential: without TCP_NODELAY, Nagle's algorithm holds
    the second of two quick messages (accepted, then done) until the peer's delayed ACK,
    ~40 ms on Linux, on each side of the broker."""
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class CommandChannel:
    """The executor's own MQTT connection (a persistent session, QoS 1): commands do not
    queue behind the data backlog, and ones sent during a short outage still arrive
    (then the expiry decides)."""

    def __init__(self, executor: CommandExecutor, broker: BrokerAddress) -> None:
        self.executor = executor
        machine = executor.machine
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"edge-cmd-{machine}",
                             clean_session=False)  # fmt: skip
        broker.configure(client)  # credentials and TLS
        client.reconnect_delay_set(min_delay=1, max_delay=5)
        # a vanished edge (power, link) reports no permit: the hub stops offering control
        gone = PermitReport(machine, False, reason=f"the edge of {machine} is offline "
                            f"(its command connection ended)", period_s=PERMIT_REPORT_S)  # fmt: skip
        client.will_set(topics.permit(machine), gone.encode(), qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_socket_open = no_delay
        self.client = client
        self.broker = broker
        self.connected = threading.Event()
        self.connects = 0  # a reconnect makes the permit reporter speak at once
        self.command_topic = topics.command(machine)
        executor.reply = self.publish_reply

    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if reason_code.is_failure:
            log.warning("%s: broker refused the command channel: %s", self.executor.machine,
                        reason_code)  # fmt: skip
            return
        client.subscribe(topics.command(self.executor.machine), qos=1)
        self.connects += 1
        self.connected.set()

    def _on_message(self, client, userdata, message) -> None:
        # amqtt hands a new subscriber retained messages of other topics too (the
        # machine's permit report, state, birth): only the command topic is for us
        if message.topic == self.command_topic:
            self.executor.submit(message.payload)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None) -> None:
        self.connected.clear()
        self.executor.link_lost()

    def publish_reply(self, reply: CommandReply) -> None:
        self.client.publish(topics.command_reply(reply.machine), reply.encode(), qos=1)

    def publish_permit(self, report: PermitReport) -> mqtt.MQTTMessageInfo:
        return self.client.publish(topics.permit(report.machine), report.encode(), qos=1,
                                   retain=True)  # fmt: skip

    def start(self) -> None:
        self.client.connect_async(self.broker.host, self.broker.port, self.broker.keepalive_s)
        self.client.loop_start()

    def stop(self) -> None:
        # a clean stop sends no will: say it ourselves (briefly: the broker may be going
        # too, and the uplink's "offline" state tells the hub as well)
        if self.connected.is_set():
            machine = self.executor.machine
            gone = PermitReport(machine, False, reason=f"the edge of {machine} stopped",
                                at=time.time(), period_s=PERMIT_REPORT_S)  # fmt: skip
            with contextlib.suppress(RuntimeError, ValueError):
                self.publish_permit(gone).wait_for_publish(timeout=0.5)
        self.client.disconnect()
        self.client.loop_stop()


class PermitReporter:
    """Tells the hub the site permit of one machine (retained): when it changes (the file
    is polled every ``poll_s``; expiry counts as a change), after every (re)connect, and
    at least every ``period_s``, so that the hub can tell a live report from a lapsed one.
    The permit stays the edge's decision: the hub uses the report only to refuse early
    and to show it."""

    def __init__(self, executor: CommandExecutor, channel: CommandChannel,
                 period_s: float = PERMIT_REPORT_S, poll_s: float = PERMIT_POLL_S) -> None:  # fmt: skip
        self.executor = executor
        self.channel = channel
        self.period_s = period_s
        self.poll_s = poll_s
        self.last: tuple[object, ...] | None = None
        self.sent_at = -math.inf  # monotonic
        self.connects_seen = 0
        self.sent = 0

    def tick(self) -> PermitReport | None:
        """Publish the report if it is due; the report sent, else None."""
        if not self.channel.connected.is_set():
            return None
        report = self.executor.permits.report(self.executor.machine, self.period_s)
        key = (report.active, report.expires_at, report.granted_by, report.reason)
        now = time.monotonic()
        connects = self.channel.connects
        if (
            key == self.last
            and now - self.sent_at < self.period_s
            and connects == self.connects_seen
        ):
            return None
        self.channel.publish_permit(report)
        self.last, self.sent_at, self.connects_seen = key, now, connects
        self.sent += 1
        return report

    async def run(self) -> None:
        while True:
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - reporting must never stop the machine's stream
                log.exception("%s: permit report failed", self.executor.machine)
            await asyncio.sleep(self.poll_s)


class ControlledAdapter:
    """An adapter with remote control: its stream feeds the executor's view of the
    machine, and its command channel runs while the stream does. The edge agent sees
    an ordinary :class:`Adapter`."""

    def __init__(self, inner: Adapter, executor: CommandExecutor, channel: CommandChannel) -> None:
        self.inner = inner
        self.descriptor = inner.descriptor
        self.executor = executor
        self.channel = channel
        self.reporter = PermitReporter(executor, channel)

    async def batches(self) -> AsyncIterator[SampleBatch | MachineEvent]:
        self.executor.loop = asyncio.get_running_loop()
        self.channel.start()
        reporting = asyncio.create_task(self.reporter.run())
        try:
            async for item in self.inner.batches():
                self.executor.observe(item)
                yield item
        finally:
            reporting.cancel()
            self.channel.stop()

    async def command(self, command: AdapterCommand) -> None:
        await self.inner.command(command)

    async def close(self) -> None:
        await self.inner.close()


def with_control(adapter: Adapter, control: ControlConfig, broker: BrokerAddress,
                 base: Path | None = None) -> ControlledAdapter:  # fmt: skip
    """Wrap ``adapter`` with remote control as a site file's [control] section says."""
    base = base or Path(os.getcwd())
    permit_file = (
        control.permit_file if control.permit_file.is_absolute() else base / control.permit_file
    )
    ledger_file = (
        control.ledger_file if control.ledger_file.is_absolute() else base / control.ledger_file
    )
    executor = CommandExecutor(adapter, load_public_key(control.hub_public_key),
                               PermitStore(permit_file), CommandLedger(ledger_file),
                               reply=lambda r: None, clock_skew_s=control.clock_skew_s,
                               max_state_age_s=control.max_state_age_s)  # fmt: skip
    return ControlledAdapter(adapter, executor, CommandChannel(executor, broker))
