"""The edge's adapter for a LinuxCNC controller (the ``Adapter`` interface).

Transport: LinuxCNC's own ``linuxcnc`` Python module (status, command and error
channels), which is built for the system interpreter, so a small helper
(:mod:`.helper`) runs under ``/usr/bin/python3`` on the controller and streams one line
of numbers per poll. This was chosen over linuxcncrsh (TCP 5007): linuxcncrsh 2.9 drops
the connection on some queries (``get spindle``), has no spindle speed and no
actual-vs-commanded split, and gives errors only when asked; the module has all of them
and pushes operator errors. The edge therefore runs on the LinuxCNC computer (as MTConnect
adapters do).

Every ``batch_period_s`` the polled samples become one :class:`SampleBatch` (numpy
columns: positions actual and commanded in mm, following error, execution, mode,
e-stop, line, tool, spindle speed, feed, overrides) preceded by events: execution,
program and tool changes, alarms (LinuxCNC's operator and NML errors, e-stop), messages
(operator texts). Commands (MDI, open, run, pause, resume, abort) go to LinuxCNC; what
it refuses raises :class:`CommandRejected` with its reason. When LinuxCNC stops or
restarts, the helper notices (its status memory changes), the adapter reports the
machine ``unavailable`` and connects again by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import CommandRejected
from ...model import (
    AdapterCommand,
    Alarm,
    AlarmCode,
    Execution,
    MachineDescriptor,
    MachineEvent,
    Mode,
    SampleBatch,
    Severity,
)
from .helper import DEBIAN_PYTHON, SAMPLE_FIELDS

log = logging.getLogger(__name__)

HELPER = Path(__file__).with_name("helper.py")
FIELD = {name: i for i, name in enumerate(SAMPLE_FIELDS)}
AXES = ("x", "y", "z")
# LinuxCNC's enums (linuxcnc module): interp_state, task_mode, task_state
INTERP_IDLE, INTERP_PAUSED = 1, 3
MODE_MANUAL, MODE_AUTO, MODE_MDI = 1, 2, 3
STATE_ESTOP, STATE_ON = 1, 4
# task_mode (1..3) -> canonical Mode; 0 is not a LinuxCNC mode
MODE_OF_TASK = np.array([np.nan, Mode.MANUAL, Mode.AUTOMATIC, Mode.MDI], dtype=float)
ERROR_KINDS = ("NML_ERROR", "OPERATOR_ERROR")
# our names (and the remote-control vocabulary of model/commands.py) -> the helper's
COMMANDS = {
    "mdi": "mdi", "open": "open", "select_program": "open", "run": "run",
    "cycle_start": "run", "pause": "pause", "feed_hold": "pause", "resume": "resume",
    "abort": "abort", "stop": "abort", "reset": "abort", "estop": "estop",
    "feed_override": "override", "rapid_override": "override",
    "spindle_override": "override", "alarm_reset": "alarm_reset",
}  # fmt: skip
MAX_PROGRAM_TEXT = 512 * 1024
SIGNALS = (
    *(f"{a}.{s}" for a in AXES for s in ("pos", "pos_cmd", "ferr")),
    "execution", "mode", "estop", "line", "tool", "spindle.speed", "spindle.speed_cmd",
    "feed", "feed_override", "rapid_override", "spindle_override",
)  # fmt: skip


@dataclass
class LinuxCNCSettings:
    machine_id: str
    site: str = ""
    env: dict[str, str] | None = None  # the helper's environment (None: the edge's own)
    python: str = DEBIAN_PYTHON
    poll_s: float = 0.05  # status polls: 20 samples per second
    batch_period_s: float = 0.1
    retry_s: float = 1.0
    command_timeout_s: float = 5.0


@dataclass
class _State:
    """What the adapter remembers between batches to report changes only."""

    execution: float | None = None
    busy: bool = False
    idle_code: float = float(Execution.READY)
    aborted: bool = False
    tool: float | None = None
    estop: Alarm | None = None
    program: str | None = None
    alarms: list[Alarm] = field(default_factory=list)


class LinuxCNCAdapter:
    """A LinuxCNC controller as the edge sees every machine."""

    def __init__(self, settings: LinuxCNCSettings) -> None:
        self.settings = settings
        self.descriptor = MachineDescriptor(
            machine_id=settings.machine_id, name="LinuxCNC", site=settings.site,
            model="linuxcnc", signals=SIGNALS,
        )  # fmt: skip
        self.closed = False
        self.connected = False
        self.connections = 0  # sessions so far (a reconnect adds one)
        self.header: dict[str, object] = {}
        self.state = _State()
        self._proc: asyncio.subprocess.Process | None = None
        self._pending: dict[int, asyncio.Future[str]] = {}
        self._ids = itertools.count(1)
        self._events: list[MachineEvent] = []
        self.open_path: str | None = None  # the program open on the controller

    @property
    def execution(self) -> Execution | None:
        """The execution state of the newest batch (None before the first)."""
        code = self.state.execution
        return None if code is None else Execution(int(code))

    # --- samples and events ------------------------------------------------------------------

    async def batches(self) -> AsyncIterator[SampleBatch | MachineEvent]:
        s = self.settings
        while not self.closed:
            reason = "LinuxCNC helper could not start"
            try:
                self._proc = await asyncio.create_subprocess_exec(
                    s.python, str(HELPER), str(s.poll_s), env=s.env,
                    stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                )  # fmt: skip
            except OSError as e:
                reason = f"cannot run {s.python}: {e}"
            else:
                async for item in self._session(self._proc):
                    if isinstance(item, str):
                        reason = item
                    else:
                        yield item
                await self._end_helper()
            if self.connected and not self.closed:
                self.connected = False
                log.warning("%s: LinuxCNC unavailable: %s", s.machine_id, reason)
                yield MachineEvent(s.machine_id, time.time(), "unavailable", value=reason)
            self._fail_pending(reason)
            if not self.closed:
                await asyncio.sleep(s.retry_s)

    async def _session(
        self, proc: asyncio.subprocess.Process
    ) -> AsyncIterator[SampleBatch | MachineEvent | str]:
        """One helper's life: batches and events; a str is why it ended."""
        assert proc.stdout is not None
        period = self.settings.batch_period_s
        rows: list[bytes] = []
        next_flush = time.monotonic() + period
        while not self.closed:
            try:
                line = await asyncio.wait_for(proc.stdout.readline(),
                                              max(0.0, next_flush - time.monotonic()))  # fmt: skip
            except TimeoutError:
                line = None
            if line == b"":
                yield f"the LinuxCNC helper ended: {await _tail(proc)}"
                return
            if line:
                kind, _, rest = line.rstrip(b"\n").partition(b" ")
                if kind == b"S":
                    rows.append(rest)
                elif kind == b"D":
                    yield rest.decode(errors="replace")
                    return
                else:
                    self._handle(kind, rest.decode(errors="replace"))
            if time.monotonic() >= next_flush:
                next_flush = max(next_flush + period, time.monotonic())
                for item in self._flush(rows):
                    yield item
                rows = []

    def _handle(self, kind: bytes, rest: str) -> None:
        mid = self.settings.machine_id
        now = time.time()
        if kind == b"H":  # a (new) LinuxCNC: what was reported of the last one is over
            self.header = json.loads(rest)
            self._clear_alarms()
            if self.state.estop is not None:
                self.state.estop.cleared_at = now
                self._events.append(MachineEvent(mid, now, "alarm_cleared", alarm=self.state.estop))
            self.state = _State()
            self.open_path = None
            self.connected = True
            self.connections += 1
        elif kind == b"R":
            cid, _, answer = rest.partition(" ")
            fut = self._pending.pop(int(cid), None)
            if fut is not None and not fut.done():
                fut.set_result(answer)
        elif kind == b"P":
            path = json.loads(rest)["file"]
            if path and path != self.state.program:
                self.state.program = self.open_path = path
                self._events.append(MachineEvent(mid, now, "program", value=program_value(path)))
        elif kind == b"E":
            msg = json.loads(rest)
            if msg["kind"] in ERROR_KINDS:
                alarm = Alarm(AlarmCode.PROGRAM_ERROR, Severity.FAULT, msg["text"], "linuxcnc", now)
                self.state.alarms.append(alarm)
                self._events.append(MachineEvent(mid, now, "alarm", alarm=alarm))
            else:  # (MSG, ...) and operator texts: information, not alarms
                self._events.append(MachineEvent(mid, now, "message", value=msg["text"].strip()))

    def _flush(self, rows: list[bytes]) -> list[SampleBatch | MachineEvent]:
        """The window's events in time order, then its samples as one batch."""
        events, self._events = self._events, []
        out: list[SampleBatch | MachineEvent] = []
        batch = None
        if rows:
            values = np.array(b" ".join(rows).split(), dtype=float)
            a = values.reshape(len(rows), len(SAMPLE_FIELDS))
            columns = self._columns(a)
            events += self._changes(a[:, FIELD["t"]], columns)
            batch = SampleBatch(self.settings.machine_id, a[:, FIELD["t"]], columns)
        out.extend(sorted(events, key=lambda e: e.t))
        if batch is not None:
            out.append(batch)
        return out

    def _columns(self, a: np.ndarray) -> dict[str, np.ndarray]:
        c = {name: a[:, i] for name, i in FIELD.items()}
        out: dict[str, np.ndarray] = {}
        for axis in AXES:
            out[f"{axis}.pos"] = c[f"{axis}.pos"]
            out[f"{axis}.pos_cmd"] = c[f"{axis}.pos_cmd"]
            out[f"{axis}.ferr"] = c[f"{axis}.pos_cmd"] - c[f"{axis}.pos"]
        out["execution"] = self._execution(c)
        task_mode = np.clip(c["task_mode"].astype(int), 0, 3)
        out["mode"] = MODE_OF_TASK[task_mode]
        out["estop"] = (c["task_state"] == STATE_ESTOP).astype(float)
        out["line"] = c["motion_line"]
        out["tool"] = c["tool"]
        # LinuxCNC's status has the commanded speed; without an encoder that is the speed
        out["spindle.speed_cmd"] = c["spindle_speed"]
        out["spindle.speed"] = np.where(c["spindle_enabled"] != 0, c["spindle_speed"], 0.0)
        out["feed"] = c["current_vel"]
        for name in ("feed_override", "rapid_override", "spindle_override"):
            out[name] = c[name]
        return out

    def _execution(self, c: dict[str, np.ndarray]) -> np.ndarray:
        """Execution per sample; idle is READY, PROGRAM_COMPLETED or STOPPED by history."""
        interp = c["interp_state"]
        busy = interp != INTERP_IDLE
        held = (interp == INTERP_PAUSED) | (c["paused"] != 0)
        codes = np.where(held, float(Execution.INTERRUPTED), float(Execution.ACTIVE))
        st = self.state
        # walk only the samples where busy changes (a few per program), not every sample
        changes = np.flatnonzero(np.diff(np.r_[st.busy, busy]))
        idle = np.full(len(busy), st.idle_code)
        for k in changes:
            if busy[k]:
                st.aborted = False
            else:
                st.idle_code = float(
                    Execution.STOPPED if st.aborted
                    else Execution.PROGRAM_COMPLETED if c["task_mode"][k] == MODE_AUTO
                    else Execution.READY
                )  # fmt: skip
                idle[k:] = st.idle_code
        st.busy = bool(busy[-1])
        codes = np.where(busy, codes, idle)
        return np.where(c["task_state"] == STATE_ESTOP, float(Execution.STOPPED), codes)

    def _changes(self, t: np.ndarray, cols: dict[str, np.ndarray]) -> list[MachineEvent]:
        """Events where execution, tool or e-stop change (compared with the last batch)."""
        mid, st = self.settings.machine_id, self.state
        out: list[MachineEvent] = []
        exe = cols["execution"]
        for k in np.flatnonzero(exe != np.r_[st.execution if st.execution is not None else -1,
                                             exe[:-1]]):  # fmt: skip
            out.append(MachineEvent(mid, float(t[k]), "execution",
                                    value=Execution(int(exe[k])).name))  # fmt: skip
        st.execution = float(exe[-1])
        tool = cols["tool"]
        for k in np.flatnonzero(tool != np.r_[st.tool if st.tool is not None else -1, tool[:-1]]):
            out.append(MachineEvent(mid, float(t[k]), "tool", value=int(tool[k])))
        st.tool = float(tool[-1])
        estop = cols["estop"]
        for k in np.flatnonzero(np.diff(np.r_[float(st.estop is not None), estop])):
            if estop[k]:
                st.estop = Alarm(AlarmCode.ESTOP, Severity.CRITICAL, "emergency stop", "linuxcnc",
                                 float(t[k]))  # fmt: skip
                out.append(MachineEvent(mid, float(t[k]), "alarm", alarm=st.estop))
            elif st.estop is not None:
                st.estop.cleared_at = float(t[k])
                out.append(MachineEvent(mid, float(t[k]), "alarm_cleared", alarm=st.estop))
                st.estop = None
        return out

    def _clear_alarms(self) -> None:
        """LinuxCNC's errors are one-shot messages: a new start or an abort clears them."""
        now = time.time()
        for alarm in self.state.alarms:
            alarm.cleared_at = max(now, alarm.raised_at)
            self._events.append(
                MachineEvent(self.settings.machine_id, now, "alarm_cleared", alarm=alarm)
            )
        self.state.alarms = []

    # --- commands ----------------------------------------------------------------------------

    async def command(self, command: AdapterCommand) -> None:
        mid = self.settings.machine_id
        name = COMMANDS.get(command.name)
        if name is None:
            raise CommandRejected(f"{mid}: LinuxCNC has no command {command.name!r} "
                                  f"(expected one of {sorted(COMMANDS)})")  # fmt: skip
        args = _checked_args(mid, command.name, name, command.args)
        if name == "alarm_reset":  # LinuxCNC's errors are messages: acknowledged here
            self._clear_alarms()
            return
        if name == "run" and "program_sha256" in command.args:
            self._check_program(str(command.args["program_sha256"]))
        proc = self._proc
        if not self.connected or proc is None or proc.stdin is None:
            raise CommandRejected(f"{mid}: LinuxCNC is not connected")
        cid = next(self._ids)
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending[cid] = fut
        if name == "abort":
            self.state.aborted = True
        try:
            proc.stdin.write(f"{cid} {json.dumps({'name': name, 'args': args})}\n".encode())
            await proc.stdin.drain()
            answer = await asyncio.wait_for(fut, self.settings.command_timeout_s)
        except (OSError, TimeoutError) as e:
            raise CommandRejected(f"{mid}: {command.name}: LinuxCNC did not answer ({e!r})") from e
        finally:
            self._pending.pop(cid, None)
        if answer != "OK":
            raise CommandRejected(f"{mid}: LinuxCNC refused {command.name}: "
                                  f"{answer.removeprefix('NAK ')}")  # fmt: skip
        if name == "open":  # before its "program" event arrives with the next poll
            self.open_path = str(args["path"])
        if name in ("run", "mdi", "abort") or command.name == "reset":
            self._clear_alarms()

    def _check_program(self, sha256: str) -> None:
        """Start only the program the operator checked: its hash must match the open file."""
        mid, path = self.settings.machine_id, self.open_path
        if not path:
            raise CommandRejected(f"{mid}: cycle_start: no program is open")
        try:
            actual = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        except OSError as e:
            raise CommandRejected(f"{mid}: cycle_start: cannot read {path}: {e}") from None
        if actual != sha256.lower():
            raise CommandRejected(f"{mid}: cycle_start: {Path(path).name} on the controller is "
                                  f"not the checked program (sha256 {actual[:12]}…, "
                                  f"expected {sha256[:12]}…)")  # fmt: skip

    def _fail_pending(self, reason: str) -> None:
        for fut in self._pending.values():
            if not fut.done():
                fut.set_result(f"NAK {reason}")
        self._pending.clear()

    async def _end_helper(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 2.0)
        except TimeoutError:
            proc.kill()
            await proc.wait()

    async def close(self) -> None:
        self.closed = True
        await self._end_helper()


def _checked_args(mid: str, given: str, name: str, args: dict[str, object]) -> dict[str, object]:
    """The arguments LinuxCNC needs, checked here so that a bad one names itself."""
    if name == "override":
        percent = args.get("percent")
        if not isinstance(percent, int | float) or not 0 <= percent <= 200:
            raise CommandRejected(f"{mid}: {given} needs args.percent in 0..200, got {percent!r}")
        return {"which": given.removesuffix("_override"), "percent": float(percent)}
    if name == "mdi":
        text = args.get("text", args.get("line"))  # "line" in the remote-control vocabulary
        if not isinstance(text, str) or not text.strip() or "\n" in text or len(text) > 255:
            raise CommandRejected(f"{mid}: mdi needs args.text, one line of G-code "
                                  f"(up to 255 characters), got {text!r}")  # fmt: skip
        return {"text": text}
    if name == "open":
        path = args.get("path", args.get("program"))
        if not isinstance(path, str) or not path.startswith("/"):
            raise CommandRejected(f"{mid}: open needs args.path, an absolute path on the "
                                  f"controller, got {path!r}")  # fmt: skip
        return {"path": path}
    if name == "run":
        line = args.get("line", 0)
        if not isinstance(line, int) or isinstance(line, bool) or line < 0:
            raise CommandRejected(f"{mid}: run: args.line must be a line number >= 0, got {line!r}")
        return {"line": line}
    return {}


def program_value(path: str) -> dict[str, str | None]:
    """The "program" event's value: name and (up to 512 kB) text, as virtual machines send."""
    text = None
    with contextlib.suppress(OSError):
        p = Path(path)
        if p.stat().st_size <= MAX_PROGRAM_TEXT:
            text = p.read_text(errors="replace")
    return {"name": Path(path).name, "text": text}


async def _tail(proc: asyncio.subprocess.Process) -> str:
    """The last line the helper printed on stderr (a traceback's message), if any."""
    if proc.stderr is None:
        return "no message"
    try:
        text = await asyncio.wait_for(proc.stderr.read(), 2.0)
    except TimeoutError:
        return "no message"
    lines = text.decode(errors="replace").strip().splitlines()
    return lines[-1][:300] if lines else "no message"
