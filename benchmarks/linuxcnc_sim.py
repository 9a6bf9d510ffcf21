"""A headless LinuxCNC 2.9 simulator shaped like a machinetwin machine, for benchmarks.

:class:`LinuxCNCSim` writes a minimal sim configuration into a temporary directory
(3 axes XYZ in mm with the machine file's velocity and acceleration limits and soft
limits, trivkins, a position loop-back in HAL, immediate homing, the machine's tools
as a tool table and its G54 offset in the parameter file), starts ``linuxcnc`` with
``DISPLAY = linuxcncrsh`` (no GUI), and drives it over linuxcncrsh's TCP protocol.

Cycle times come from the motion controller itself, not from wall clocks: a HAL
``sampler`` in the servo thread records ``motion.motion-type``, ``motion.current-vel``
and the joint positions every servo period (1 ms), ``halsampler`` writes them to a
file, and a program's cycle time is the number of servo periods from its first to its
last period with motion (``motion-type != 0``). The simulator still runs in real time,
so keep programs short.

Running here needs:

- ``linuxcnc-uspace`` (``linuxcnc``, ``halsampler`` on PATH);
- as root, ``RTAPI_UID`` (a non-root uid for ``rtapi_app``, 65534 by default) and
  ``RTAPI_FIFO_PATH``: the path of rtapi_app's *socket file* (not a directory; this
  module puts it in a mode-1777 directory of its own);
- no other LinuxCNC instance: HAL's shared memory is per machine, and the
  ``linuxcnc`` script, finding ``/tmp/linuxcnc.lock`` without a tty, would kill the
  other instance's processes by name. :meth:`LinuxCNCSim.start` refuses instead.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from machinetwin.machine.config import MachineConfig, load_machine_config

# the sim configuration is shared with the LinuxCNC adapter's simulator (tests, demo)
from machinetwin.protocols.linuxcnc.sim import (  # noqa: F401 (re-exported)
    AXES,
    LOCKFILE,
    SERVO_PERIOD_NS,
    LinuxCNCError,
    write_config,
)
from machinetwin.protocols.linuxcnc.sim import free_port as _free_port
from machinetwin.protocols.linuxcnc.sim import unavailable_reason as _unavailable


def unavailable_reason() -> str | None:
    """Why the simulator cannot run here (halsampler too), or None if it can."""
    return _unavailable(("linuxcnc", "halsampler", "halcmd"), python=False)


@dataclass
class RunResult:
    """One program run in LinuxCNC."""

    cycle_time: float  # s, servo periods from the first to the last with motion
    wall_time: float  # s, from `set run` until linuxcncrsh reported IDLE (for reference)
    start_pos: tuple[float, float, float]  # machine frame, mm
    end_pos: tuple[float, float, float]
    samples: np.ndarray  # (n, 6): current-vel, motion-type, x, y, z, line per servo period


class LinuxCNCSim:
    """A running headless LinuxCNC sim; use as a context manager."""

    def __init__(
        self,
        config: MachineConfig | None = None,
        g54: tuple[float, float, float] | None = None,
        startup_timeout: float = 60.0,
        keep_dir: bool = False,
    ) -> None:
        self.config = config or load_machine_config()
        default = self.config.work_offsets.get("G54", (0.0, 0.0, 0.0))
        self.g54 = tuple(g54 if g54 is not None else default)
        self.startup_timeout = startup_timeout
        self.keep_dir = keep_dir
        self.workdir: Path | None = None
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._sampler: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._file = None
        self.samples_path: Path | None = None

    # --- life cycle ---------------------------------------------------------------------

    def __enter__(self) -> LinuxCNCSim:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _env(self) -> dict[str, str]:
        assert self.workdir is not None
        env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
        env["HOME"] = str(self.workdir)
        env["RTAPI_FIFO_PATH"] = str(self.workdir / "fifo" / "rtapi_fifo")
        if os.geteuid() == 0:
            env.setdefault("RTAPI_UID", "65534")
        return env

    def start(self) -> None:
        reason = unavailable_reason()
        if reason:
            raise LinuxCNCError(reason)
        self.workdir = Path(tempfile.mkdtemp(prefix="mt-linuxcnc-"))
        self.workdir.chmod(0o1777)  # rtapi_app runs as RTAPI_UID and writes here
        (self.workdir / "fifo").mkdir(mode=0o1777)
        (self.workdir / "fifo").chmod(0o1777)
        self.port = _free_port()
        ini = write_config(self.workdir, self.config, self.g54, self.port)  # type: ignore[arg-type]
        log = (self.workdir / "linuxcnc.log").open("wb")
        self._proc = subprocess.Popen(
            ["linuxcnc", str(ini)], cwd=self.workdir, env=self._env(),
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self._proc.poll() is not None:
                raise LinuxCNCError(
                    f"linuxcnc exited with {self._proc.returncode}: {self._log_tail()}"
                )
            try:
                self._sock = socket.create_connection(("127.0.0.1", self.port), timeout=1.0)
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise LinuxCNCError(
                        f"linuxcncrsh did not listen within {self.startup_timeout:.0f} s"
                    ) from None
                time.sleep(0.2)
        self._sock.settimeout(30.0)
        self._file = self._sock.makefile("rw", newline="\n")
        self._send("hello EMC machinetwin 1.0", expect="HELLO ACK")
        self._send("set echo off")
        self._send("set verbose on", expect="ACK")
        self._send("set enable EMCTOO", expect="ACK")
        self.samples_path = self.workdir / "samples.txt"
        out = self.samples_path.open("wb")
        self._sampler = subprocess.Popen(["halsampler", "-c", "0", "-t"], env=self._env(),
                                         stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.DEVNULL)  # fmt: skip
        for cmd in ("set estop off", "set machine on", "set mode manual", "set home -1"):
            self._send(cmd, expect="ACK")
        deadline = time.monotonic() + 10
        while "NO" in self._send("get joint_homed").split()[1:4]:
            if time.monotonic() > deadline:
                raise LinuxCNCError("homing did not finish")
            time.sleep(0.05)
        self._send("set mode auto", expect="ACK")

    def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.terminate()
            self._sampler.wait(5)
            self._sampler = None
        if self._file is not None:
            try:
                self._file.write("shutdown\r\n")
                self._file.flush()
            except OSError:
                pass
            self._file = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._proc is not None:
            try:
                self._proc.wait(20)
            except subprocess.TimeoutExpired:
                self._proc.send_signal(signal.SIGTERM)  # the script's trap cleans up
                try:
                    self._proc.wait(20)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            self._proc = None
        if self.workdir is not None and not self.keep_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def _log_tail(self, n: int = 2000) -> str:
        parts = []
        if self.workdir is not None and (self.workdir / "linuxcnc.log").exists():
            parts.append((self.workdir / "linuxcnc.log").read_text(errors="replace")[-n:])
        dbg = Path(self.workdir or "/nonexistent") / "linuxcnc_debug.txt"
        if dbg.exists():
            parts.append(dbg.read_text(errors="replace")[-n:])
        return "\n".join(parts) or "(no output)"

    # --- linuxcncrsh ----------------------------------------------------------------------

    def _send(self, cmd: str, expect: str | None = None) -> str:
        assert self._file is not None
        self._file.write(cmd + "\r\n")
        self._file.flush()
        reply = self._file.readline().strip()
        if expect is not None and expect not in reply:
            raise LinuxCNCError(f"linuxcncrsh: {cmd!r} -> {reply!r}")
        return reply

    def position(self) -> tuple[float, float, float]:
        vals = self._send("get abs_act_pos").split()[1:4]
        return (float(vals[0]), float(vals[1]), float(vals[2]))

    def run_program(self, path: str | Path, timeout: float = 120.0) -> RunResult:
        """Open and run one program (auto mode); its cycle time from the servo samples."""
        assert self.samples_path is not None
        path = Path(path).resolve()
        path.chmod(0o644)
        self._send("get error")  # clear a stale error
        self._send(f"set open {path}", expect="ACK")
        time.sleep(0.05)
        offset = self.samples_path.stat().st_size
        t0 = time.monotonic()
        self._send("set run", expect="ACK")
        # wait for RUNNING (linuxcncrsh may still say IDLE right after `set run`)
        while "RUNNING" not in self._send("get program_status"):
            if time.monotonic() - t0 > 2.0:
                break
            time.sleep(0.002)
        while "IDLE" not in self._send("get program_status"):
            if time.monotonic() - t0 > timeout:
                self._send("set abort")
                raise LinuxCNCError(f"{path.name}: not done after {timeout:.0f} s")
            time.sleep(0.005)
        wall = time.monotonic() - t0
        err = self._send("get error")
        if err.strip() not in ("ERROR OK", ""):
            raise LinuxCNCError(f"{path.name}: {err}")
        time.sleep(0.3)  # let halsampler's buffered rows reach the file
        rows = self._read_samples(offset)
        moving = np.nonzero(rows[:, 1] != 0)[0]
        if len(moving) == 0:
            raise LinuxCNCError(f"{path.name}: no motion recorded (sampler overrun?)")
        first, last = int(moving[0]), int(moving[-1])
        start = rows[max(first - 1, 0), 2:5]
        end = rows[min(last + 1, len(rows) - 1), 2:5]
        return RunResult(
            cycle_time=(last - first + 1) * SERVO_PERIOD_NS * 1e-9,
            wall_time=wall,
            start_pos=tuple(float(v) for v in start),  # type: ignore[arg-type]
            end_pos=tuple(float(v) for v in end),  # type: ignore[arg-type]
            samples=rows[first : last + 1],
        )

    def _read_samples(self, offset: int) -> np.ndarray:
        assert self.samples_path is not None
        with self.samples_path.open("rb") as f:
            f.seek(offset)
            data = f.read()
        lines = data.split(b"\n")
        lines = lines[1:-1]  # the first may be cut by the offset, the last by the buffer
        rows = [ln.split() for ln in lines]
        rows = [r for r in rows if len(r) == 7]
        arr = np.array(rows, dtype=float).reshape(-1, 7)
        gaps = np.nonzero(np.diff(arr[:, 0]) != 1)[0]
        if len(gaps):
            raise LinuxCNCError(
                f"servo samples were lost (halsampler fell behind at {len(gaps)} places)"
            )
        return arr[:, 1:]


def main() -> None:
    """Smoke check (``make bench`` runs every benchmarks/*.py): one tiny program."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description="run one tiny program in the LinuxCNC sim")
    parser.add_argument("--quick", action="store_true", help="accepted; the check is quick")
    parser.parse_args()
    reason = unavailable_reason()
    if reason:
        print(json.dumps({"linuxcnc_available": False, "error": reason}))
        raise SystemExit(1)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mt-lcnc-smoke-") as tmp, LinuxCNCSim() as sim:
        started = time.monotonic() - t0
        prog = Path(tmp) / "tiny.ngc"
        prog.write_text("G21 G90 G54 G61\nG0 X-300 Y-200 Z0\nG1 X-200 F6000\nM2\n")
        run = sim.run_program(prog)
    expected = 0.6 + 1 / 6 + 1.0 + 1 / 30  # Z rapid 300 mm, then 100 mm at 100 mm/s
    print(f"LinuxCNC started in {started:.1f} s; tiny program {run.cycle_time:.3f} s "
          f"(expected {expected:.3f} s)")  # fmt: skip
    print(json.dumps({
        "linuxcnc_available": True,
        "startup_s": round(started, 2),
        "tiny_cycle_time_s": round(run.cycle_time, 4),
        "expected_s": round(expected, 4),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
