"""The LinuxCNC side of the adapter: runs under Debian's python with the ``linuxcnc`` module.

LinuxCNC's Python module is built for the system interpreter (``/usr/bin/python3``), not
for our virtual environment, so the adapter runs this file as a small subprocess. It
imports nothing from machinetwin (the adapter imports the field names from here).

Every ``--period`` seconds it polls the status channel and writes one line of numbers
(``S`` + :data:`SAMPLE_FIELDS`, positions in mm whatever the machine's units); it
writes ``H`` (a JSON header) once after connecting, ``P`` when the open program
changes, ``E`` for every message of LinuxCNC's error channel (operator errors and
texts), ``R id OK`` / ``R id NAK reason`` for each command read on stdin as
``id {"name": ..., "args": {...}}``, and ``D reason`` before it exits with code 3
when LinuxCNC is not there or went away (its status shared memory disappeared or
changed: a restart). Stdin closed: exit 0.
"""

from __future__ import annotations

import json
import os
import select
import sys
import time

SAMPLE_FIELDS = (
    "t", "x.pos", "y.pos", "z.pos", "x.pos_cmd", "y.pos_cmd", "z.pos_cmd",
    "interp_state", "task_mode", "task_state", "paused", "motion_line", "current_line",
    "tool", "spindle_speed", "spindle_enabled", "current_vel", "feed_override",
    "rapid_override", "spindle_override",
)  # fmt: skip
EXIT_DOWN = 3
DEBIAN_PYTHON = "/usr/bin/python3"  # the interpreter LinuxCNC's `linuxcnc` module is built for
STATUS_SHM_KEY = 1002  # emcStatus in LinuxCNC's default linuxcnc.nml
SHM_CHECK_S = 0.5
COMMAND_WAIT_S = 0.5  # how long a command may hold the sampling loop


class Refused(Exception):
    """LinuxCNC refused a command (or would): the message is the reason."""


def status_shmid() -> int | None:
    """The id of LinuxCNC's status shared memory; a new id means LinuxCNC restarted."""
    try:
        with open("/proc/sysvipc/shm") as f:
            next(f)
            for line in f:
                fields = line.split()
                if int(fields[0]) == STATUS_SHM_KEY:
                    return int(fields[1])
    except (OSError, StopIteration, ValueError, IndexError):
        return -1  # not readable here: the check is skipped
    return None


def emit(line: str) -> None:
    sys.stdout.write(line + "\n")


def down(reason: str) -> None:
    emit("D " + reason.replace("\n", " "))
    sys.stdout.flush()
    sys.exit(EXIT_DOWN)


class Helper:
    def __init__(self, lcnc, period: float) -> None:  # noqa: ANN001 (the linuxcnc module)
        self.lc = lcnc
        self.period = period
        try:
            self.s = lcnc.stat()
            self.s.poll()
            self.c = lcnc.command()
            self.e = lcnc.error_channel()
            # all channels must answer: a LinuxCNC starting or shutting down has its
            # status before (and after) its error channel, and must not count as up
            first = self.e.poll()
        except (lcnc.error, SystemError) as exc:
            down(f"LinuxCNC is not running or not ready ({exc})")
        self.shmid = status_shmid()
        if self.shmid is None:
            down("LinuxCNC is not running (no status shared memory)")
        self.file = None
        self.kinds = {getattr(lcnc, k): k for k in ("NML_ERROR", "OPERATOR_ERROR", "NML_TEXT",
                      "OPERATOR_TEXT", "NML_DISPLAY", "OPERATOR_DISPLAY") if hasattr(lcnc, k)}  # fmt: skip
        s = self.s
        self.scale = 1.0 / s.linear_units if s.linear_units else 1.0  # machine units -> mm
        emit("H " + json.dumps({"linear_units": s.linear_units, "joints": s.joints,
                                "ini": s.ini_filename, "axis_mask": s.axis_mask}))  # fmt: skip
        if first is not None:
            self.report(first)

    def sample(self) -> None:
        s, k = self.s, self.scale
        s.poll()
        sp = s.spindle[0] if s.spindles else {"speed": 0.0, "enabled": 0, "override": 1.0}
        values = (
            time.time(), *(v * k for v in s.actual_position[:3]),
            *(v * k for v in s.position[:3]), s.interp_state, s.task_mode, s.task_state,
            int(bool(s.paused)), s.motion_line, s.current_line, s.tool_in_spindle,
            sp["speed"], sp["enabled"], s.current_vel * k * 60.0, s.feedrate * 100.0,
            s.rapidrate * 100.0, sp["override"] * 100.0,
        )  # fmt: skip
        emit("S " + " ".join(repr(float(v)) for v in values))
        if s.file != self.file:
            self.file = s.file
            emit("P " + json.dumps({"file": s.file}))

    def errors(self) -> None:
        while (msg := self.e.poll()) is not None:
            self.report(msg)

    # --- commands --------------------------------------------------------------------------

    def command(self, line: str) -> None:
        cid, _, body = line.partition(" ")
        try:
            cmd = json.loads(body)
            self.run_command(cmd["name"], cmd.get("args") or {})
        except Refused as exc:
            emit(f"R {cid} NAK {str(exc) or 'refused'}".replace("\n", " "))
        except (ValueError, KeyError, TypeError) as exc:
            emit(f"R {cid} NAK bad command {body[:200]!r}: {exc}")
        else:
            emit(f"R {cid} OK")

    def run_command(self, name: str, args: dict) -> None:
        lc, s, c = self.lc, self.s, self.c
        s.poll()
        if name == "abort":
            c.abort()
            return self.check()
        if name == "estop":
            c.state(lc.STATE_ESTOP)
            return self.check()
        if name == "override":  # percent of programmed feed, rapid or spindle speed
            setter = {"feed": c.feedrate, "rapid": c.rapidrate, "spindle": c.spindleoverride}
            setter[str(args["which"])](float(args["percent"]) / 100.0)
            return self.check()
        if s.task_state != lc.STATE_ON:
            raise Refused("the machine is not on (e-stop or power off)")
        running = s.interp_state != lc.INTERP_IDLE
        if name == "mdi":
            if running:
                raise Refused("the interpreter is busy (a program or MDI is running)")
            if not all(s.homed[j] for j in range(s.joints)):
                raise Refused("the machine is not homed")
            self.set_mode(lc.MODE_MDI)
            c.mdi(str(args["text"]))
        elif name == "open":
            path = str(args["path"])
            if running:
                raise Refused("a program is running")
            if not os.path.isfile(path):
                raise Refused(f"no such file on the controller: {path}")
            self.set_mode(lc.MODE_AUTO)
            c.program_open(path)
        elif name == "run":
            if running:
                raise Refused("a program is already running")
            if not s.file:
                raise Refused("no program is open")
            self.set_mode(lc.MODE_AUTO)
            c.auto(lc.AUTO_RUN, int(args.get("line", 0)))
        elif name == "pause":
            if not running or s.task_mode != lc.MODE_AUTO:
                raise Refused("no program is running")
            c.auto(lc.AUTO_PAUSE)
        elif name == "resume":
            if not s.paused:
                raise Refused("the program is not paused")
            c.auto(lc.AUTO_RESUME)
        else:
            raise Refused(f"unknown command {name!r}")
        self.check()

    def set_mode(self, mode: int) -> None:
        if self.s.task_mode != mode:
            self.c.mode(mode)
            self.check()

    def check(self) -> None:
        """LinuxCNC's verdict on the last command; an error's text is the reason."""
        rc = self.c.wait_complete(COMMAND_WAIT_S)
        if rc == self.lc.RCS_ERROR:
            deadline = time.monotonic() + COMMAND_WAIT_S
            while time.monotonic() < deadline:  # the reason follows on the error channel
                msg = self.e.poll()
                if msg is not None and self.is_error(msg):
                    raise Refused(self.follow_ups(msg[1]))
                if msg is None:
                    time.sleep(0.01)
            raise Refused("LinuxCNC refused the command (no reason given)")
        # rc == -1: still executing after COMMAND_WAIT_S (a long MDI move): accepted

    def follow_ups(self, reason: str) -> str:
        """The refusal's reason with the messages that follow it (part of the refusal,
        not alarms of their own)."""
        time.sleep(0.05)
        while (msg := self.e.poll()) is not None:
            if self.is_error(msg):
                reason += "; " + msg[1]
        return reason

    def is_error(self, msg: tuple[int, str]) -> bool:
        """An error (part of a refusal); texts and displays go on as messages."""
        if self.kinds.get(msg[0], "").endswith("_ERROR"):
            return True
        self.report(msg)
        return False

    def report(self, msg: tuple[int, str]) -> None:
        kind, text = msg
        emit("E " + json.dumps({"kind": self.kinds.get(kind, str(kind)), "text": text}))

    # --- loop --------------------------------------------------------------------------------

    def loop(self) -> None:
        buf = b""
        next_check = time.monotonic() + SHM_CHECK_S
        next_poll = time.monotonic()
        while True:
            timeout = max(0.0, next_poll - time.monotonic())
            ready, _, _ = select.select([0], [], [], timeout)
            if ready:
                chunk = os.read(0, 65536)
                if not chunk:
                    return  # the adapter closed
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        self.command(line.decode(errors="replace").strip())
                sys.stdout.flush()
                continue
            next_poll += self.period
            if next_poll < time.monotonic():  # fell behind (busy machine): do not burst
                next_poll = time.monotonic() + self.period
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + SHM_CHECK_S
                shmid = status_shmid()
                if shmid != self.shmid and shmid != -1:
                    down("LinuxCNC stopped or restarted (its status memory changed)")
            try:
                self.sample()
                self.errors()
            except (self.lc.error, SystemError) as exc:  # SystemError: its memory went away
                down(f"LinuxCNC status failed: {exc}")
            sys.stdout.flush()


def main() -> None:
    period = float(sys.argv[1]) if len(sys.argv) > 1 else 0.05
    try:
        import linuxcnc
    except ImportError as exc:
        down(f"the linuxcnc python module is missing ({exc})")
    Helper(linuxcnc, period).loop()


if __name__ == "__main__":
    main()
