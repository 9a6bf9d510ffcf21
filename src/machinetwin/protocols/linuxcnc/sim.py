"""A headless LinuxCNC 2.9 simulator shaped like a machinetwin machine.

:func:`write_config` writes a minimal sim configuration (3 axes XYZ in mm with the
machine file's velocity and acceleration limits and soft limits, trivkins, a position
loop-back in HAL, immediate homing, the machine's tools as a tool table and its G54
offset in the parameter file) with ``DISPLAY = linuxcncrsh`` (no GUI; linuxcncrsh also
lets other software drive it over TCP). :class:`SimController` starts it, brings it up
(e-stop reset, machine on, homed, auto mode) through LinuxCNC's own ``linuxcnc`` Python
module, and stops or restarts it. The tests, the demo and ``benchmarks/linuxcnc_sim.py``
share it.

Running here needs:

- ``linuxcnc-uspace`` (``linuxcnc``, ``halcmd`` on PATH, ``/usr/bin/python3`` with its
  ``linuxcnc`` module);
- as root, ``RTAPI_UID`` (a non-root uid for ``rtapi_app``, 65534 by default) and
  ``RTAPI_FIFO_PATH``: the path of rtapi_app's *socket file* (put in a mode-1777
  directory of its own);
- no other LinuxCNC instance: HAL's shared memory is per machine, and the
  ``linuxcnc`` script, finding ``/tmp/linuxcnc.lock`` without a tty, would kill the
  other instance's processes by name. :meth:`SimController.start` refuses instead
  (after waiting ``lock_wait_s`` for another instance to finish).
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from ...machine.config import MachineConfig, load_machine_config
from .helper import DEBIAN_PYTHON

LOCKFILE = Path("/tmp/linuxcnc.lock")
NML_FILE = Path("/usr/share/linuxcnc/linuxcnc.nml")
LINGER_S = 10.0  # how long a stopped instance's daemons may take to exit
DEFAULT_NML_KEYS = (1001, 1002, 1003, 1004, 1005)
# the processes of a running LinuxCNC instance (by /proc/PID/comm); "io" is its tool task
LINUXCNC_PROCESSES = frozenset({"linuxcnc", "linuxcncsvr", "milltask", "rtapi_app", "io",
                                "linuxcncrsh", "halcmd"})  # fmt: skip
AXES = ("x", "y", "z")
SERVO_PERIOD_NS = 1_000_000


class LinuxCNCError(RuntimeError):
    """LinuxCNC could not be started or driven; the message says what it printed."""


def unavailable_reason(tools: tuple[str, ...] = ("linuxcnc", "halcmd"),
                       python: bool = True) -> str | None:  # fmt: skip
    """Why the simulator cannot run here, or None if it can (``python``: Debian's python
    with LinuxCNC's module is needed too)."""
    for exe in tools:
        if shutil.which(exe) is None:
            return f"{exe} not found (install linuxcnc-uspace)"
    if python and not Path(DEBIAN_PYTHON).exists():
        return f"{DEBIAN_PYTHON} not found (LinuxCNC's python module needs it)"
    if LOCKFILE.exists():
        return f"{LOCKFILE} exists: another LinuxCNC instance is running"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(
    workdir: Path,
    config: MachineConfig,
    g54: tuple[float, float, float],
    port: int,
    sampler: bool = True,
) -> Path:
    """Write sim.ini, sim.hal, tool.tbl and sim.var into ``workdir``; returns the ini.

    ``sampler``: record every servo period in a HAL ``sampler`` (for cycle times).
    """
    axes = [config.axes[a] for a in AXES]  # type: ignore[index]
    vmax = [a.max_velocity for a in axes]
    amax = [a.max_acceleration for a in axes]
    # the vector limits must not bind before the axis limits (a diagonal move may
    # legitimately exceed one axis' limit in path speed)
    traj_v = math.ceil(math.hypot(*vmax))
    traj_a = math.ceil(math.hypot(*amax))
    ini = [
        "[EMC]",
        "VERSION = 1.1",
        f"MACHINE = {config.name} (machinetwin sim)",
        "DEBUG = 0",
        "[DISPLAY]",
        f"DISPLAY = linuxcncrsh --port {port}",
        "[TASK]",
        "TASK = milltask",
        "CYCLE_TIME = 0.001",
        "[RS274NGC]",
        "PARAMETER_FILE = sim.var",
        "[EMCMOT]",
        "EMCMOT = motmod",
        "COMM_TIMEOUT = 1.0",
        f"SERVO_PERIOD = {SERVO_PERIOD_NS}",
        "[EMCIO]",
        "EMCIO = io",
        "CYCLE_TIME = 0.100",
        "TOOL_TABLE = tool.tbl",
        "[HAL]",
        "HALFILE = sim.hal",
        "[TRAJ]",
        "COORDINATES = XYZ",
        "LINEAR_UNITS = mm",
        "ANGULAR_UNITS = degree",
        f"DEFAULT_LINEAR_VELOCITY = {min(vmax)}",
        f"MAX_LINEAR_VELOCITY = {traj_v}",
        f"DEFAULT_LINEAR_ACCELERATION = {min(amax)}",
        f"MAX_LINEAR_ACCELERATION = {traj_a}",
        "NO_FORCE_HOMING = 1",
        # LinuxCNC 2.9's defaults, written out so the benchmark says what it compares to
        "ARC_BLEND_ENABLE = 1",
        "ARC_BLEND_FALLBACK_ENABLE = 0",
        "ARC_BLEND_OPTIMIZATION_DEPTH = 50",
        "ARC_BLEND_GAP_CYCLES = 4",
        "ARC_BLEND_RAMP_FREQ = 100",
        "[KINS]",
        "KINEMATICS = trivkins coordinates=XYZ",
        "JOINTS = 3",
    ]
    for name, a in zip(AXES, axes, strict=True):
        ini += [
            f"[AXIS_{name.upper()}]",
            f"MAX_VELOCITY = {a.max_velocity}",
            f"MAX_ACCELERATION = {a.max_acceleration}",
            f"MIN_LIMIT = {a.min}",
            f"MAX_LIMIT = {a.max}",
        ]
    for j, a in enumerate(axes):
        home = min(max(0.0, a.min), a.max)
        ini += [
            f"[JOINT_{j}]",
            "TYPE = LINEAR",
            f"HOME = {home}",
            f"MAX_VELOCITY = {a.max_velocity}",
            f"MAX_ACCELERATION = {a.max_acceleration}",
            f"MIN_LIMIT = {a.min}",
            f"MAX_LIMIT = {a.max}",
            "FERROR = 10",
            "MIN_FERROR = 10",
            "HOME_OFFSET = 0",
            "HOME_SEARCH_VEL = 0",  # 0/0: homing sets the current position as HOME
            "HOME_LATCH_VEL = 0",
            "HOME_SEQUENCE = 0",
        ]
    (workdir / "sim.ini").write_text("\n".join(ini) + "\n")

    hal = [
        "loadrt [KINS]KINEMATICS",
        "loadrt [EMCMOT]EMCMOT servo_period_nsec=[EMCMOT]SERVO_PERIOD num_joints=[KINS]JOINTS",
        "addf motion-command-handler servo-thread",
        "addf motion-controller servo-thread",
        # ideal servos: feedback is the command
        *(f"net j{j}pos joint.{j}.motor-pos-cmd => joint.{j}.motor-pos-fb" for j in range(3)),
        "net estop-loop iocontrol.0.user-enable-out => iocontrol.0.emc-enable-in",
        "net tool-prep-loop iocontrol.0.tool-prepare => iocontrol.0.tool-prepared",
        "net tool-change-loop iocontrol.0.tool-change => iocontrol.0.tool-changed",
    ]
    hal += [] if not sampler else [
        # one row per servo period: current-vel, motion-type, joint positions, program line
        "loadrt sampler depth=16384 cfg=fsfffs",
        "addf sampler.0 servo-thread",
        "net vel motion.current-vel => sampler.0.pin.0",
        "net mtype motion.motion-type => sampler.0.pin.1",
        *(f"net j{j}pos sampler.0.pin.{j + 2}" for j in range(3)),
        "net pline motion.program-line => sampler.0.pin.5",
    ]  # fmt: skip
    (workdir / "sim.hal").write_text("\n".join(hal) + "\n")

    tbl = [
        f"T{t.number} P{t.pocket} Z{t.length} D{t.diameter} ;{t.description}" for t in config.tools
    ]
    (workdir / "tool.tbl").write_text("\n".join(tbl) + "\n")
    # G54 (5221..5223) preset and selected (5220 = 1)
    var = ["5220\t1.000000", *(f"{5221 + i}\t{v:.6f}" for i, v in enumerate(g54))]
    (workdir / "sim.var").write_text("\n".join(var) + "\n")
    for f in ("sim.var", "tool.tbl"):
        (workdir / f).chmod(0o666)
    return workdir / "sim.ini"


# Run by Debian's python with LinuxCNC's module: reset e-stop, machine on, home, auto.
_BRING_UP = r"""
import sys, time, linuxcnc
s = linuxcnc.stat(); c = linuxcnc.command()
deadline = time.monotonic() + float(sys.argv[1])
asked = 0.0
# asked again every 3 s: a command sent while task is still starting can be lost
while True:
    try:
        s.poll()
    except linuxcnc.error:
        s = None
    if s is not None and s.task_state == linuxcnc.STATE_ON and all(
            s.homed[j] for j in range(s.joints)):
        break
    if time.monotonic() > deadline:
        sys.exit("e-stop reset, machine on and homing did not finish" if s else
                 "status channel did not come up")
    if s is None:
        s = linuxcnc.stat(); time.sleep(0.2); continue
    if time.monotonic() - asked > 3.0:
        asked = time.monotonic()
        c.state(linuxcnc.STATE_ESTOP_RESET); c.wait_complete(1.0)
        c.state(linuxcnc.STATE_ON); c.wait_complete(1.0)
        c.mode(linuxcnc.MODE_MANUAL); c.wait_complete(1.0)
        c.home(-1); c.wait_complete(1.0)
    time.sleep(0.05)
c.mode(linuxcnc.MODE_AUTO); c.wait_complete()
"""


class SimController:
    """A headless LinuxCNC sim: ``start()``, ``stop()``, ``restart()``; a context manager.

    ``env`` is the environment LinuxCNC's processes and its Python module need (HOME,
    RTAPI_FIFO_PATH, RTAPI_UID as root); the adapter's helper runs with it too.
    """

    def __init__(self, config: MachineConfig | None = None,
                 g54: tuple[float, float, float] | None = None,
                 startup_timeout: float = 60.0, lock_wait_s: float = 0.0,
                 sampler: bool = False) -> None:  # fmt: skip
        self.config = config or load_machine_config()
        default = self.config.work_offsets.get("G54", (0.0, 0.0, 0.0))
        self.g54 = tuple(g54 if g54 is not None else default)
        self.startup_timeout = startup_timeout
        self.lock_wait_s = lock_wait_s
        self.sampler = sampler
        self.workdir = Path(tempfile.mkdtemp(prefix="mt-linuxcnc-"))
        self.workdir.chmod(0o1777)  # rtapi_app runs as RTAPI_UID and writes here
        (self.workdir / "fifo").mkdir(mode=0o1777)
        (self.workdir / "fifo").chmod(0o1777)
        self.port = free_port()  # linuxcncrsh's; kept across restarts
        self.ini = write_config(self.workdir, self.config, self.g54, self.port,  # type: ignore[arg-type]
                                sampler=sampler)  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None
        self.cleared: list[str] = []  # what the last stop and start removed of an instance

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
        env["HOME"] = str(self.workdir)
        env["RTAPI_FIFO_PATH"] = str(self.workdir / "fifo" / "rtapi_fifo")
        if os.geteuid() == 0:
            env.setdefault("RTAPI_UID", "65534")
        return env

    def __enter__(self) -> SimController:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _wait_for_lock(self) -> None:
        deadline = time.monotonic() + self.lock_wait_s
        while (reason := unavailable_reason()) is not None:
            if not LOCKFILE.exists() or time.monotonic() > deadline:
                raise LinuxCNCError(reason)
            time.sleep(0.5)

    def start(self) -> None:
        """Start LinuxCNC and bring it up (homed, auto mode); LinuxCNCError says why not.

        What a stopped or killed instance left behind is cleared first (see
        :func:`clear_stale_instance`), so a start right after a stop does not depend on
        when the last instance's clients let go of its memory."""
        if self.proc is not None:
            raise LinuxCNCError("this simulator is already running")
        clear_stale_instance()  # a lock file of a killed instance
        self._wait_for_lock()
        # the daemons of an instance stopped elsewhere outlive its lock file by seconds
        deadline = time.monotonic() + LINGER_S
        while linuxcnc_running() and time.monotonic() < deadline and not LOCKFILE.exists():
            time.sleep(0.1)
        self.cleared += clear_stale_instance()  # its semaphores, which clients still hold
        log = (self.workdir / "linuxcnc.log").open("ab")
        self.proc = subprocess.Popen(
            ["linuxcnc", str(self.ini)], cwd=self.workdir, env=self.env,
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        self._wait_listening()
        up = subprocess.run([DEBIAN_PYTHON, "-c", _BRING_UP, str(self.startup_timeout)],
                            env=self.env, capture_output=True, text=True,
                            timeout=self.startup_timeout + 10)  # fmt: skip
        if up.returncode != 0:
            self.stop()
            raise LinuxCNCError(f"bringing LinuxCNC up failed: {up.stderr.strip()[-500:]}")

    def _wait_listening(self) -> None:
        """linuxcncrsh listening means task, motion and HAL are up."""
        assert self.proc is not None
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                raise LinuxCNCError(f"linuxcnc exited with {code}: {self.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1.0).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise LinuxCNCError(
                        f"linuxcncrsh did not listen within {self.startup_timeout:.0f} s"
                    ) from None
                time.sleep(0.2)

    def stop(self) -> None:
        """Stop LinuxCNC (its script's trap cleans HAL up); the config stays for a restart."""
        if self.proc is None:
            return
        try:  # linuxcncrsh's shutdown ends the display, the script then cleans up
            with socket.create_connection(("127.0.0.1", self.port), timeout=2.0) as s:
                s.sendall(b"hello EMC machinetwin 1.0\r\nset enable EMCTOO\r\nshutdown\r\n")
                s.recv(256)
        except OSError:
            pass
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            # as Ctrl-C in its terminal: the display ends and the script's trap cleans up
            # (a SIGTERM to the script alone waits for the display that never ends)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self._wait_instance_gone()

    def _wait_instance_gone(self, timeout_s: float = 20.0) -> None:
        """Wait for this instance's daemons (linuxcncsvr, rtapi_app, io, milltask outlive
        the script by seconds) to exit, kill what is left, then clear its IPC: a start
        while they live would share their NML buffers and semaphores."""
        marker = f"RTAPI_FIFO_PATH={self.env['RTAPI_FIFO_PATH']}".encode()
        deadline = time.monotonic() + timeout_s
        while (pids := instance_pids(marker)) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        self.cleared = clear_stale_instance()

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, n: int = 2000) -> str:
        parts = []
        for name in ("linuxcnc.log", "linuxcnc_debug.txt"):
            if (self.workdir / name).exists():
                parts.append((self.workdir / name).read_text(errors="replace")[-n:])
        return "\n".join(parts) or "(no output)"


# ------------------------------------------------------------ what a dead instance leaves


def nml_keys(nml_file: Path = NML_FILE) -> tuple[int, ...]:
    """The SysV IPC keys of LinuxCNC's NML buffers (``B name SHMEM host size ... key``)."""
    try:
        lines = nml_file.read_text().splitlines()
    except OSError:
        return DEFAULT_NML_KEYS
    keys = []
    for line in lines:
        words = line.split()
        if len(words) > 9 and words[0] == "B" and words[2] == "SHMEM" and words[9].isdigit():
            keys.append(int(words[9]))
    return tuple(keys) or DEFAULT_NML_KEYS


def _linuxcnc_processes(proc: Path = Path("/proc")) -> list[Path]:
    """The /proc directories of live LinuxCNC processes. Zombies do not count: a daemon
    of a stopped instance stays one until PID 1 reaps it, which in a container may be
    never."""
    out = []
    for stat in proc.glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError):
            text = stat.read_text()
            comm = text[text.index("(") + 1 : text.rindex(")")]
            state = text[text.rindex(")") + 2 :].split()[0]
            if comm in LINUXCNC_PROCESSES and state not in ("Z", "X"):
                out.append(stat.parent)
    return out


def linuxcnc_running(proc: Path = Path("/proc")) -> bool:
    """Whether any process of a LinuxCNC instance is alive on this computer."""
    return bool(_linuxcnc_processes(proc))


def instance_pids(marker: bytes, proc: Path = Path("/proc")) -> list[int]:
    """Live LinuxCNC processes whose environment holds ``marker`` (one instance's own
    ``RTAPI_FIFO_PATH=...``: its daemons leave the script's session, not its environment)."""
    pids = []
    for directory in _linuxcnc_processes(proc):
        with contextlib.suppress(OSError):
            if marker + b"\0" in (directory / "environ").read_bytes() + b"\0":
                pids.append(int(directory.name))
    return pids


def clear_stale_instance() -> list[str]:
    """Remove what a stopped or killed LinuxCNC left behind, when none is running.

    - NML semaphores (and shared memory) keyed as in linuxcnc.nml: a client of the last
      instance (a status poller) that detaches last destroys the semaphores by id; the
      ``linuxcnc`` script removes the memory but not the semaphores, so a new instance
      started before that detach opens the *same* semaphores by key and loses them under
      its feet (``semctl ... Invalid argument``, ``can't connect to NML buffers``).
      Removed here, the new instance creates its own and the old client's late destroy
      hits an id that no longer exists.
    - ``/tmp/linuxcnc.lock`` of an instance that was killed before its cleanup ran.

    Nothing is touched while a LinuxCNC process is alive (another engineer's instance).
    Returns what was removed."""
    if linuxcnc_running():
        return []
    removed = []
    for key in nml_keys():
        for flag, kind in (("-S", "semaphore"), ("-M", "memory")):
            try:
                done = subprocess.run(["ipcrm", flag, str(key)], capture_output=True)
            except FileNotFoundError:  # no ipcrm: nothing LinuxCNC left can be cleared
                return removed
            if done.returncode == 0:
                removed.append(f"{kind} {key}")
    if LOCKFILE.exists() and not linuxcnc_running():
        with contextlib.suppress(FileNotFoundError):
            LOCKFILE.unlink()
            removed.append(str(LOCKFILE))
    return removed
