"""Every remote command on the virtual machine through the real edge executor: signed
commands, the site permit, the interlocks (the machine's own ``estop`` signal), the
machine's refusals reported with their reasons, and the dead-man ending a continuous
jog; then the same through the hub's API, the embedded broker and a 15 ms link."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
from control_support import MACHINE, PROGRAM, Site, wait_for
from test_remote_control import Rig, grant, rig  # noqa: F401 - the end-to-end rig fixture

from machinetwin.hub.preflight import program_sha256
from machinetwin.machine import load_machine_config
from machinetwin.model import Execution, Mode

CONFIG = load_machine_config()
G54 = np.array(CONFIG.work_offsets["G54"], dtype=float)
PERIOD_S = 0.05


async def send(site: Site, name: str, args: dict | None = None) -> tuple[list[str], str]:
    """Sign and hand ``name`` to the executor; its answers and last reason."""
    c = site.command(name, args)
    await site.executor.handle(site.signer.sign(c))
    return site.answers(c.id), site.reason(c.id)


async def settle(site: Site, done=None, max_steps: int = 600) -> None:
    """Run the machine (the executor seeing its reports) until ``done`` or, by default,
    until nothing runs and it stands still."""
    vm = site.adapter

    def idle() -> bool:
        running = (Execution.ACTIVE, Execution.INTERRUPTED)
        return vm.sim.controller.state.execution not in running and not vm.moving

    for _ in range(max_steps):
        site.step()
        if (done or idle)():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"machine did not settle: {vm.sim.controller.state}")


def test_every_command_on_the_virtual_machine_through_the_executor(site: Site) -> None:
    vm = site.adapter
    state = vm.sim.controller.state

    async def scenario() -> None:
        site.permits.grant(MACHINE, 5)
        site.step(3)  # the production loop runs its part
        assert await send(site, "stop") == (["accepted", "done"], "executed")
        await settle(site)
        assert (await send(site, "select_program", {"program": "part.ngc"}))[0][-1] == "done"
        # a start that names another program's checksum: the machine refuses it
        wrong = program_sha256(PROGRAM.replace("X30", "X31"))
        answers, reason = await send(site, "cycle_start", {"program_sha256": wrong})
        assert answers == ["rejected"] and "machine refused: program checksum mismatch" in reason
        parts = state.part_count
        # the checksum the hub's pre-flight computes is the one the machine verifies
        ok = {"program_sha256": program_sha256(PROGRAM)}
        assert (await send(site, "cycle_start", ok))[0] == ["accepted", "done"]
        await settle(site, lambda: state.execution == Execution.PROGRAM_COMPLETED)
        assert state.part_count == parts + 1
        # MDI: a G-code error comes back with the problem, a good line moves the machine
        answers, reason = await send(site, "mdi", {"line": "G1 X5 F"})
        assert answers == ["rejected"] and "machine refused: mdi 'G1 X5 F'" in reason
        assert (await send(site, "mdi", {"line": "G0 X5 Y6"}))[0] == ["accepted", "done"]
        assert state.mode == Mode.MDI
        await settle(site)
        assert np.allclose(vm.sim.planner.position[:2], G54[:2] + [5, 6], atol=1e-6)
        z = vm.sim.planner.position[2]
        jog = {"axis": "z", "distance": -2.5, "feed": 600.0}
        assert (await send(site, "jog", jog))[0] == ["accepted", "done"]
        await settle(site)
        assert abs(vm.sim.planner.position[2] - (z - 2.5)) < 1e-6

    asyncio.run(scenario())


def test_deadman_silence_ends_a_continuous_jog(site: Site) -> None:
    vm = site.adapter

    async def scenario() -> None:
        site.permits.grant(MACHINE, 5)
        site.step()
        await send(site, "stop")
        await settle(site)
        x0 = float(vm.sim.planner.position[0])
        jog = {"axis": "x", "direction": 1, "feed": 1200.0, "deadman_s": PERIOD_S}
        answers, reason = await send(site, "jog_continuous", jog)
        assert answers == ["accepted"], reason
        # the machine runs in real time here; no heartbeat comes
        started = time.monotonic()
        while not site.executor.holds and time.monotonic() - started < 2:
            site.step()
            await asyncio.sleep(0.01)
        assert site.executor.holds, "the dead-man did not hold"
        await asyncio.sleep(0)  # the hold task runs
        await settle(site, max_steps=50)
        assert x0 < vm.sim.planner.position[0] < CONFIG.axes["x"].max  # stopped short
        assert vm.sim.controller.state.execution == Execution.READY

    asyncio.run(scenario())
    assert site.replies[-1].status == "done" and "dead-man" in site.replies[-1].reason


def test_the_estop_signal_interlocks_motion_until_a_reset(site: Site) -> None:
    vm = site.adapter

    async def scenario() -> None:
        site.permits.grant(MACHINE, 5)
        site.step()
        await send(site, "stop")
        await settle(site)
        vm.sim.controller.estop()  # the button at the machine, not a remote command
        site.step()
        assert site.executor.state.estop is True  # seen in the samples
        answers, reason = await send(site, "mdi", {"line": "G0 X1"})
        assert answers == ["rejected"] and reason == "e-stop is active"
        assert (await send(site, "alarm_reset"))[0] == ["accepted", "done"]
        site.step()
        assert site.executor.state.estop is True  # an alarm reset does not leave e-stop
        assert (await send(site, "reset"))[0] == ["accepted", "done"]
        site.step()
        assert site.executor.state.estop is False
        assert (await send(site, "mdi", {"line": "G0 X1"}))[0] == ["accepted", "done"]

    asyncio.run(scenario())


def test_program_started_and_jogged_through_the_hub(rig: Rig) -> None:  # noqa: F811
    """API → hub → broker → 15 ms link → edge executor → virtual machine, and back."""
    vm = rig.edge.adapter.inner
    state = rig.edge.machine
    grant(rig)
    assert rig.final(rig.command("otto", "stop").json()["id"])["state"] == "done"
    running = (Execution.ACTIVE, Execution.INTERRUPTED)
    assert wait_for(lambda: state.execution not in running and not vm.moving, 5)
    time.sleep(0.3)  # the executor sees the stopped state reported
    out = rig.final(rig.command("otto", "select_program", {"program": "part.ngc"}).json()["id"])
    assert out["state"] == "done", out
    checked = rig.post("otto", f"/api/machines/{MACHINE}/preflight",
                       {"program": "part.ngc", "text": PROGRAM}).json()  # fmt: skip
    assert checked["ok"]
    parts = state.part_count
    out = rig.final(rig.command("otto", "cycle_start", {"program_sha256": checked["sha256"]})
                    .json()["id"])  # fmt: skip
    assert out["state"] == "done", out
    assert wait_for(lambda: state.execution == Execution.PROGRAM_COMPLETED, 30)
    assert state.part_count == parts + 1
    time.sleep(0.3)
    # continuous jog with the browser's heartbeats; silence then holds it
    r = rig.command("otto", "jog_continuous",
                    {"axis": "y", "direction": 1, "feed": 600.0, "deadman_s": 0.2})  # fmt: skip
    motion = r.json()["id"]
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(0.1):
            rig.post("otto", f"/api/machines/{MACHINE}/commands/{motion}/heartbeat", {})

    beater = threading.Thread(target=beat, daemon=True)
    beater.start()
    assert rig.service.wait(motion, ("accepted", "rejected"), 5).state == "accepted"
    y0 = float(vm.sim.planner.position[1])
    time.sleep(0.8)
    assert state.execution == Execution.ACTIVE and state.mode == Mode.MANUAL
    stop.set()
    beater.join(2)
    out = rig.final(motion, ("done",))
    assert "dead-man" in out["reason"]
    assert wait_for(lambda: state.execution == Execution.READY and not vm.moving, 5)
    assert vm.sim.planner.position[1] > y0 + 2  # it moved while the heartbeats came


def test_a_transferred_program_runs_only_as_its_checksum_says(site: Site) -> None:
    """Program transfer: select_program carries the text and its SHA-256 through the
    signed command; a text damaged on the way is refused, the intact one runs."""
    state = site.adapter.sim.controller.state
    text = PROGRAM.replace("X30", "X25")  # a program the machine does not have
    sha = program_sha256(text)

    async def scenario() -> None:
        site.permits.grant(MACHINE, 5)
        site.step(3)
        assert (await send(site, "stop"))[0] == ["accepted", "done"]
        await settle(site)
        damaged = {"program": "sent.ngc", "text": text.replace("X25", "X52"), "sha256": sha}
        answers, reason = await send(site, "select_program", damaged)
        assert answers[-1] == "failed" or answers == ["rejected"], (answers, reason)
        assert "corrupt" in reason
        intact = {"program": "sent.ngc", "text": text, "sha256": sha}
        assert (await send(site, "select_program", intact))[0][-1] == "done"
        parts = state.part_count
        assert (await send(site, "cycle_start", {"program_sha256": sha}))[0] == ["accepted", "done"]
        await settle(site, lambda: state.execution == Execution.PROGRAM_COMPLETED)
        assert state.part_count == parts + 1 and state.program == "sent.ngc"

    asyncio.run(scenario())
