"""The LinuxCNC adapter against a real headless LinuxCNC 2.9 simulator.

The simulator (protocols/linuxcnc/sim.py) is the default machine: X 0..600, Y 0..400,
Z -400..0 mm, G54 at X300 Y200 Z-300. Skipped without LinuxCNC; a failure under CI=true.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import pytest

from machinetwin.errors import CommandRejected
from machinetwin.model import AdapterCommand, Execution, MachineEvent, SampleBatch
from machinetwin.protocols.linuxcnc import LinuxCNCAdapter, LinuxCNCSettings
from machinetwin.protocols.linuxcnc.sim import LinuxCNCError, SimController, unavailable_reason

pytestmark = [pytest.mark.service, pytest.mark.slow]
G54 = np.array([300.0, 200.0, -300.0])


@pytest.fixture(scope="module")
def sim() -> SimController:
    reason = unavailable_reason()
    if reason is not None and "lock" not in reason:
        pytest.skip(f"LinuxCNC simulator unavailable: {reason}")
    controller = SimController(lock_wait_s=120)  # another engineer's run may hold the lock
    try:
        controller.start()
    except LinuxCNCError as e:
        controller.close()
        pytest.skip(f"LinuxCNC simulator did not start: {e}")
    yield controller
    controller.close()


class Live:
    """An adapter pumped in the background; what it yielded, and waiting for conditions."""

    def __init__(self, adapter: LinuxCNCAdapter) -> None:
        self.adapter = adapter
        self.items: list[SampleBatch | MachineEvent] = []
        self.task = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        async for item in self.adapter.batches():
            self.items.append(item)

    def batches(self, since: int = 0) -> list[SampleBatch]:
        return [b for b in self.items[since:] if isinstance(b, SampleBatch)]

    def events(self, kind: str, since: int = 0) -> list[MachineEvent]:
        return [e for e in self.items[since:] if isinstance(e, MachineEvent) and e.kind == kind]

    def column(self, name: str, since: int = 0) -> np.ndarray:
        return np.concatenate([b.columns[name] for b in self.batches(since)] or [np.zeros(0)])

    def spread(self, name: str, since: int = 0) -> float:
        """max - min of a signal since item ``since`` (0 before any sample)."""
        col = self.column(name, since)
        return float(np.ptp(col)) if len(col) else 0.0

    def last(self, name: str) -> float:
        return float(self.batches()[-1].columns[name][-1])

    async def until(self, cond: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            if self.task.done():
                self.task.result()
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what or cond}")
            await asyncio.sleep(0.05)

    async def idle(self) -> None:
        """Wait until a fresh batch shows LinuxCNC idle (whatever the idle state)."""
        n = len(self.items)
        busy = {Execution.ACTIVE, Execution.INTERRUPTED}
        await self.until(lambda: bool(self.batches(n)) and self.last("execution") not in busy,
                         what="idle")  # fmt: skip


@asynccontextmanager
async def live(sim: SimController) -> AsyncIterator[Live]:
    adapter = LinuxCNCAdapter(LinuxCNCSettings("lcnc", env=sim.env, retry_s=0.3))
    lv = Live(adapter)
    try:
        await lv.until(lambda: adapter.connected and bool(lv.batches()), what="connected")
        yield lv
    finally:
        await adapter.close()
        lv.task.cancel()
        await asyncio.gather(lv.task, return_exceptions=True)


async def cmd(lv: Live, name: str, **args: object) -> None:
    await lv.adapter.command(AdapterCommand(name, args))


def program(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text(body)
    path.chmod(0o644)
    tmp_path.chmod(0o755)  # LinuxCNC's task reads it
    return str(path)


SQUARE = "G21 G90 G54\nG0 X0 Y0 Z5\nG1 X60 F1500\nG1 Y40\nG1 X0\nG1 Y0\nG0 Z10\nM2\n"


def test_program_run_reports_moving_positions_and_advancing_lines(
    sim: SimController, tmp_path: Path
) -> None:
    path = program(tmp_path, "square.ngc", SQUARE)

    async def body() -> None:
        async with live(sim) as lv:
            await cmd(lv, "open", path=path)
            n = len(lv.items)
            await cmd(lv, "cycle_start")
            await lv.until(lambda: any(e.value == "PROGRAM_COMPLETED"
                                       for e in lv.events("execution", n)),
                           timeout=40, what="program completed")  # fmt: skip
            await lv.until(lambda: len(lv.batches(n)) > 3)
            x, y = lv.column("x.pos", n), lv.column("y.pos", n)
            t = np.concatenate([b.t for b in lv.batches(n)])
            # the square in the machine frame, G54 added, seen while it was cut
            assert (x[-1], y[-1]) == pytest.approx((G54[0], G54[1]), abs=1e-3)
            assert lv.column("z.pos", n)[-1] == pytest.approx(G54[2] + 10, abs=1e-3)
            assert x.max() == pytest.approx(G54[0] + 60, abs=0.5)
            assert y.max() == pytest.approx(G54[1] + 40, abs=0.5)
            assert len(np.unique(np.round(x, 3))) > 10  # many distinct positions, not two
            assert np.all(np.diff(t) > 0)
            lines = lv.column("line", n)
            seen = [int(v) for v in lines[np.r_[True, np.diff(lines) != 0]] if v > 0]
            assert seen == sorted(seen) and len(set(seen)) >= 4, seen
            exe = [e.value for e in lv.events("execution", n)]
            assert exe[0] == "ACTIVE" and exe[-1] == "PROGRAM_COMPLETED"
            prog = lv.events("program")[-1].value
            assert prog["name"] == "square.ngc" and prog["text"] == SQUARE
            assert lv.last("mode") == 0.0  # AUTOMATIC

    asyncio.run(body())


@pytest.mark.parametrize("target", [(12.5, -7.25, 3.0), (-150.0, 120.0, 50.0)])
def test_mdi_moves_the_axes(sim: SimController, target: tuple[float, float, float]) -> None:
    async def body() -> None:
        async with live(sim) as lv:
            x, y, z = target
            await cmd(lv, "mdi", text=f"G21 G90 G54 G0 X{x} Y{y} Z{z}")
            want = G54 + np.array(target)
            await lv.until(lambda: np.allclose([lv.last(f"{a}.pos") for a in "xyz"], want,
                                               atol=1e-3), what=f"axes at {want}")  # fmt: skip
            assert lv.last("x.pos_cmd") == pytest.approx(want[0], abs=1e-3)
            assert lv.last("mode") == 1.0  # MDI

    asyncio.run(body())


def test_refusals_carry_linuxcnc_reasons_and_change_nothing(sim: SimController) -> None:
    async def body() -> None:
        async with live(sim) as lv:
            await lv.idle()
            before = [lv.last(f"{a}.pos") for a in "xyz"]
            with pytest.raises(CommandRejected, match="positive limit"):
                await cmd(lv, "mdi", text="G53 G0 X5000")
            with pytest.raises(CommandRejected, match="not paused"):
                await cmd(lv, "resume")
            with pytest.raises(CommandRejected, match="no program is running"):
                await cmd(lv, "pause")
            with pytest.raises(CommandRejected, match="no such file"):
                await cmd(lv, "open", path="/nonexistent/prog.ngc")
            with pytest.raises(CommandRejected, match="args.text"):
                await cmd(lv, "mdi", text="G0 X1\nM2")
            with pytest.raises(CommandRejected, match="no command 'jog_wildly'"):
                await cmd(lv, "jog_wildly")
            n = len(lv.items)
            await lv.until(lambda: len(lv.batches(n)) >= 3)
            assert [lv.last(f"{a}.pos") for a in "xyz"] == pytest.approx(before, abs=1e-6)
            assert not lv.events("alarm", n)  # a refusal is an answer, not a machine alarm

    asyncio.run(body())


LONG = "G21 G90 G54\nG0 X-250 Y0 Z5\nG1 X250 F3000\nG1 X-250\nG1 X250\nM2\n"


def test_pause_resume_and_abort(sim: SimController, tmp_path: Path) -> None:
    path = program(tmp_path, "long.ngc", LONG)

    async def body() -> None:
        async with live(sim) as lv:
            await cmd(lv, "open", path=path)
            await cmd(lv, "run")
            await lv.until(lambda: lv.last("execution") == Execution.ACTIVE
                           and lv.last("line") >= 3, what="cutting")  # fmt: skip
            await cmd(lv, "feed_hold")
            await lv.until(lambda: lv.last("execution") == Execution.INTERRUPTED, what="held")
            await asyncio.sleep(0.5)  # decelerated by now
            n = len(lv.items)
            await asyncio.sleep(0.6)
            held = lv.column("x.pos", n)
            assert len(held) > 2 and np.ptp(held) < 1e-6  # no motion while held
            await cmd(lv, "resume")
            n = len(lv.items)
            await lv.until(lambda: lv.spread("x.pos", n) > 5, what="moving again")
            assert lv.last("execution") == Execution.ACTIVE
            await cmd(lv, "abort")
            await lv.until(lambda: lv.last("execution") == Execution.STOPPED, what="stopped")
            assert "STOPPED" in [e.value for e in lv.events("execution", n)]
            n = len(lv.items)
            await asyncio.sleep(0.5)
            assert len(lv.column("x.pos", n)) > 2 and lv.spread("x.pos", n) < 1e-6

    asyncio.run(body())


def test_program_errors_become_alarms_cleared_by_the_next_start(
    sim: SimController, tmp_path: Path
) -> None:
    # reading #5420 (X now) waits for the dwell before it: the error comes a second into
    # the run, when the run command was long accepted (an error found while LinuxCNC
    # reads ahead at the start is the run's refusal instead)
    bad = program(tmp_path, "bad.ngc", "G21 G90 G54\n(MSG, roughing)\nG4 P1\n"
                  "#1 = #5420\nG53 G0 X900\nM2\n")  # fmt: skip
    good = program(tmp_path, "good.ngc", "G21 G90 G54\nG0 X0 Y0\nM2\n")

    async def body() -> None:
        async with live(sim) as lv:
            await lv.idle()
            await cmd(lv, "open", path=bad)
            n = len(lv.items)
            await cmd(lv, "run")
            await lv.until(lambda: bool(lv.events("alarm", n)), what="alarm")
            alarm = lv.events("alarm", n)[0].alarm
            assert alarm is not None and "limit" in alarm.message and alarm.active
            await lv.until(lambda: bool(lv.events("message", n)), what="operator message")
            assert lv.events("message", n)[0].value == "roughing"
            await lv.idle()
            await cmd(lv, "open", path=good)
            await cmd(lv, "run")
            await lv.until(lambda: bool(lv.events("alarm_cleared", n)), what="cleared")
            assert lv.events("alarm_cleared", n)[0].alarm is alarm
            assert alarm.cleared_at is not None
            await lv.idle()  # the next test starts with an idle controller

    asyncio.run(body())


def test_recovers_after_linuxcnc_restarts(sim: SimController) -> None:
    async def body() -> None:
        async with live(sim) as lv:
            await lv.idle()
            await cmd(lv, "mdi", text="G21 G90 G54 G0 X20 Y10 Z0")
            await lv.until(lambda: lv.last("x.pos") == pytest.approx(G54[0] + 20, abs=1e-3))
            n = len(lv.items)
            await asyncio.to_thread(sim.restart)  # a new LinuxCNC: homed at machine zero
            await lv.until(lambda: bool(lv.events("unavailable", n)), what="unavailable")
            # it may catch the old LinuxCNC's last moments once more: then a third session
            await lv.until(lambda: lv.adapter.connections >= 2, timeout=30, what="reconnect")
            m = len(lv.items)
            await lv.until(lambda: lv.adapter.connected and len(lv.batches(m)) >= 3
                           and lv.last("x.pos") == pytest.approx(0.0, abs=1e-6),
                           timeout=30, what="the new controller's samples")  # fmt: skip
            # and it is controlled again, without help
            await cmd(lv, "mdi", text="G21 G90 G54 G0 X-100")
            await lv.until(lambda: lv.last("x.pos") == pytest.approx(G54[0] - 100, abs=1e-3))

    asyncio.run(body())


# A status client of the old instance (like the adapter's helper between two polls) that
# lets go of its NML channels only while the new instance starts: its detach used to
# destroy the semaphores the new instance had reopened by key ("can't connect to NML
# buffers", or a bring-up that never finished).
_HOLDER = """
import linuxcnc, sys, time
s = linuxcnc.stat(); e = linuxcnc.error_channel(); s.poll(); e.poll()
print("attached", flush=True)
sys.stdin.readline()
del s, e
time.sleep(0.3)
"""


@pytest.mark.parametrize("release_s", [0.2, 1.0])
def test_restart_while_an_old_client_holds_the_nml_channels(
    sim: SimController, release_s: float
) -> None:
    import subprocess
    import threading

    from machinetwin.protocols.linuxcnc.helper import DEBIAN_PYTHON

    holder = subprocess.Popen([DEBIAN_PYTHON, "-c", _HOLDER], env=sim.env, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    assert holder.stdout is not None and holder.stdin is not None
    assert holder.stdout.readline().strip() == "attached"
    sim.stop()

    def let_go() -> None:
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.flush()

    release = threading.Timer(release_s, let_go)
    release.start()
    try:
        sim.start()  # raises LinuxCNCError with LinuxCNC's output if it did not come up
    finally:
        release.join()
        try:
            holder.wait(10)
        finally:
            holder.kill()
    assert any(item.startswith("semaphore") for item in sim.cleared), sim.cleared
    time.sleep(0.5)  # past the old client's detach: the new instance still answers
    probe = "import linuxcnc; s = linuxcnc.stat(); s.poll(); print(s.task_state)"
    done = subprocess.run([DEBIAN_PYTHON, "-c", probe], env=sim.env, capture_output=True,
                          text=True, timeout=20)  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip() == "4", done.stderr  # STATE_ON


def test_remote_control_vocabulary_and_estop(sim: SimController, tmp_path: Path) -> None:
    """The edge executor's command names (model/commands.py); e-stop last: it leaves the
    machine off."""
    path = program(tmp_path, "checked.ngc", LONG)
    sha = hashlib.sha256(LONG.encode()).hexdigest()

    async def body() -> None:
        async with live(sim) as lv:
            await lv.idle()
            await cmd(lv, "select_program", program=path)
            with pytest.raises(CommandRejected, match="not the checked program"):
                await cmd(lv, "cycle_start", program_sha256="0" * 64)
            await cmd(lv, "feed_override", percent=50)
            with pytest.raises(CommandRejected, match="percent in 0..200"):
                await cmd(lv, "rapid_override", percent=500)
            await cmd(lv, "cycle_start", program_sha256=sha)
            await lv.until(lambda: lv.last("execution") == Execution.ACTIVE, what="started")
            await lv.until(lambda: lv.last("feed_override") == 50.0, what="override shown")
            await lv.until(lambda: lv.last("line") >= 3, what="cutting")
            # 3000 mm/min at 50 %: the path speed the controller reports
            await lv.until(lambda: abs(lv.last("feed") - 1500.0) < 1.0, what="feed 1500")
            n = len(lv.items)
            await cmd(lv, "estop")
            await lv.until(lambda: lv.last("estop") == 1.0, what="e-stop")
            assert lv.last("execution") == Execution.STOPPED
            alarm = lv.events("alarm", n)[-1].alarm
            assert alarm is not None and alarm.code.name == "ESTOP"
            with pytest.raises(CommandRejected, match="not on"):
                await cmd(lv, "mdi", line="G0 X0")
            await cmd(lv, "feed_override", percent=100)

    asyncio.run(body())


def test_without_linuxcnc_commands_are_refused_and_it_keeps_trying(tmp_path: Path) -> None:
    """No controller (or no Debian python): no batches, a clear refusal, no crash."""

    async def body() -> None:
        adapter = LinuxCNCAdapter(LinuxCNCSettings("lcnc", python=str(tmp_path / "nopython"),
                                                   retry_s=0.05))  # fmt: skip
        lv = Live(adapter)
        await asyncio.sleep(0.3)
        assert not lv.items and not lv.task.done()
        with pytest.raises(CommandRejected, match="not connected"):
            await cmd(lv, "abort")
        await adapter.close()
        await asyncio.wait_for(lv.task, 5)

    asyncio.run(body())
