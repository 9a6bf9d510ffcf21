"""The virtual machine obeys every remote-control command, through its Adapter interface:
program select and transfer, cycle start with the checksum, MDI, jogs, overrides, alarm
reset, e-stop; what the state does not allow is refused with the reason, changing nothing."""

from __future__ import annotations

import asyncio
import copy
import hashlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from machinetwin.errors import CommandRejected
from machinetwin.machine import load_machine_config
from machinetwin.machine.adapter import VirtualMachineAdapter, VirtualMachineSettings
from machinetwin.machine.controller import Controller
from machinetwin.model import SIGNALS, AdapterCommand, AlarmCode, Execution, Mode, Severity
from machinetwin.model.commands import COMMANDS

PROGRAM = "G21 G90 G54\nT1 M6 G43\nS6000 M3\nG0 X0 Y0 Z5\nG1 Z-1 F600\nG1 X20\nG0 Z5\nM5\nM2\n"
OTHER = "G21 G90 G54\nT1 M6 G43\nS3000 M3\nG0 X10 Y10 Z5\nG1 Z-0.5 F400\nG1 Y30\nG0 Z5\nM5\nM2\n"
CONFIG = load_machine_config()
G54 = np.array(CONFIG.work_offsets["G54"], dtype=float)
AXES = ("x", "y", "z")


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def program(tmp_path: Path) -> Path:
    path = tmp_path / "part.ngc"
    path.write_text(PROGRAM)
    (tmp_path / "other.ngc").write_text(OTHER)
    return path


def machine(program: Path, **options) -> VirtualMachineAdapter:
    """A machine running its production loop (it homed and left e-stop for the first part)."""
    paths = [program, program.with_name("other.ngc")]
    vm = VirtualMachineAdapter(CONFIG, VirtualMachineSettings("harbin-vmc-1", "Harbin", paths,
                                                              speedup=0, epoch=0.0, **options))  # fmt: skip
    vm.step()
    return vm


def send(vm: VirtualMachineAdapter, name: str, **args) -> None:
    asyncio.run(vm.command(AdapterCommand(name, args)))


def refused(vm: VirtualMachineAdapter, name: str, match: str, **args) -> None:
    """``name`` is refused with a reason matching ``match`` and changes nothing."""
    s = vm.sim.controller.state
    before = (s.mode, s.execution, s.program, vm.sim.controller.program_text,
              tuple(vm.sim.planner.position), vm.motion, vm.selected)  # fmt: skip
    with pytest.raises(CommandRejected, match=match):
        send(vm, name, **args)
    after = (s.mode, s.execution, s.program, vm.sim.controller.program_text,
             tuple(vm.sim.planner.position), vm.motion, vm.selected)  # fmt: skip
    assert after == before


def run_until(vm: VirtualMachineAdapter, done, max_steps: int = 600):
    """Step until ``done(vm)``; the last batch."""
    for _ in range(max_steps):
        batch, _ = vm.step()
        if done(vm):
            return batch
    raise AssertionError(f"not reached in {max_steps} steps: {vm.sim.controller.state}")


def idle(vm: VirtualMachineAdapter) -> bool:
    s = vm.sim.controller.state
    return s.execution not in (Execution.ACTIVE, Execution.INTERRUPTED) and not vm.moving


def stop_and_settle(vm: VirtualMachineAdapter) -> None:
    send(vm, "stop")
    run_until(vm, idle)


def position(vm: VirtualMachineAdapter) -> np.ndarray:
    return vm.sim.planner.position


def test_every_remote_command_is_known(program: Path) -> None:
    """No command the hub can send comes back "unknown" (jog_continuous is a jog with
    continuous=True at the adapter, as the executor forwards it)."""
    names = {"jog" if n == "jog_continuous" else n for n in COMMANDS if n != "heartbeat"}
    assert names <= set(machine(program).handlers)
    vm = machine(program)
    with pytest.raises(CommandRejected, match="unknown command 'launch'"):
        send(vm, "launch")


def test_estop_mode_and_overrides_are_reported(program: Path) -> None:
    vm = machine(program)
    assert {"estop", "mode"} <= set(SIGNALS) and {"estop", "mode"} <= set(vm.descriptor.signals)
    batch, _ = vm.step()
    assert (batch.columns["estop"] == 0).all() and (batch.columns["mode"] == Mode.AUTOMATIC).all()
    send(vm, "estop")
    batch, _ = vm.step()
    assert (batch.columns["estop"] == 1).all()
    send(vm, "feed_override", percent=40)
    send(vm, "rapid_override", percent=25)
    send(vm, "reset")
    batch, _ = vm.step()
    assert (batch.columns["estop"] == 0).all()
    assert batch.columns["feed_override"][-1] == 40 and batch.columns["rapid_override"][-1] == 25


def test_select_and_start_only_the_checked_program(program: Path) -> None:
    vm = machine(program)
    refused(vm, "select_program", "a program is running|AUTOMATIC", program="other.ngc")
    stop_and_settle(vm)
    refused(vm, "select_program", "no program 'nope.ngc'.*other.ngc", program="nope.ngc")
    send(vm, "select_program", program="other.ngc")
    assert vm.sim.controller.state.program == "other.ngc"
    refused(vm, "cycle_start", "checksum mismatch", program_sha256=sha(PROGRAM))
    refused(vm, "cycle_start", "64 lowercase hex", program_sha256="A" * 64)
    parts = vm.sim.controller.state.part_count
    send(vm, "cycle_start", program_sha256=sha(OTHER))
    assert vm.sim.controller.state.execution == Execution.ACTIVE
    refused(vm, "cycle_start", "already running", program_sha256=sha(OTHER))
    run_until(vm, lambda m: m.sim.controller.state.execution == Execution.PROGRAM_COMPLETED)
    assert vm.sim.controller.state.part_count == parts + 1
    assert vm.sim.stock.removed_volume > 0  # it cut the part it was started for
    for _ in range(5):  # taken over: the production loop does not start the next part
        vm.step()
    assert vm.sim.controller.state.execution == Execution.PROGRAM_COMPLETED
    send(vm, "cycle_start", program_sha256=sha(OTHER))  # the same part again
    assert vm.sim.controller.state.execution == Execution.ACTIVE


def test_program_transfer_checks_the_text(program: Path) -> None:
    vm = machine(program)
    stop_and_settle(vm)
    text = OTHER.replace("Y30", "Y35")
    refused(vm, "select_program", "transfer is corrupt", program="sent.ngc", text=text,
            sha256=sha(OTHER))  # fmt: skip
    refused(vm, "select_program", r"sent\.ngc:4:.*", program="sent.ngc",
            text=text.replace("G0 X10", "G0 X1Q"), sha256=sha(text.replace("G0 X10", "G0 X1Q")))  # fmt: skip
    far = text.replace("Y35", "Y400")
    refused(vm, "select_program", "leaves the Y travel", program="sent.ngc", text=far,
            sha256=sha(far))  # fmt: skip
    send(vm, "select_program", program="sent.ngc", text=text, sha256=sha(text))
    assert vm.program_event is not None and vm.program_event.value["text"] == text
    send(vm, "cycle_start", program_sha256=sha(text))
    run_until(vm, lambda m: m.sim.controller.state.execution == Execution.PROGRAM_COMPLETED)


def test_mdi_moves_in_work_coordinates_and_reports_gcode_errors(program: Path) -> None:
    vm = machine(program)
    refused(vm, "mdi", "MDI needs MDI mode.*AUTOMATIC", line="G0 X1")
    stop_and_settle(vm)
    parts = vm.sim.controller.state.part_count
    refused(vm, "mdi", r"'G0 X1Q'.*column", line="G0 X1Q")
    refused(vm, "mdi", "leaves the X travel", line="G0 X900")
    send(vm, "mdi", line="G0 X12.5 Y-7")
    assert vm.sim.controller.state.mode == Mode.MDI
    z = position(vm)[2]
    run_until(vm, idle)
    assert vm.sim.controller.state.execution == Execution.READY
    assert np.allclose(position(vm), [G54[0] + 12.5, G54[1] - 7, z], atol=1e-6)
    assert vm.sim.controller.state.part_count == parts  # MDI makes no part
    send(vm, "mdi", line="S2000 M3")
    run_until(vm, idle)
    assert vm.step()[0].columns["spindle.speed_cmd"][-1] == 2000


def test_jog_in_automatic_beyond_travel_and_bad_arguments_are_refused(program: Path) -> None:
    vm = machine(program)
    send(vm, "feed_hold")
    vm.step()
    refused(vm, "jog", "jogging needs MANUAL mode.*AUTOMATIC", axis="x", distance=1.0, feed=500.0)
    stop_and_settle(vm)
    x = position(vm)[0]
    refused(vm, "jog", "outside its travel", axis="x", distance=CONFIG.axes["x"].max - x + 1,
            feed=500.0)  # fmt: skip
    refused(vm, "jog", "jog feed", axis="x", distance=1.0, feed=1e6)
    refused(vm, "jog", "unknown axis", axis="w", distance=1.0, feed=100.0)
    refused(vm, "jog", "feed must be a finite number", axis="x", distance=1.0, feed="fast")
    refused(vm, "jog", "direction must be -1 or 1", axis="x", direction=2, feed=100.0,
            continuous=True)  # fmt: skip


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(axis=st.sampled_from(AXES), distance=st.floats(-40, 40).filter(lambda d: abs(d) > 1e-3))
def test_incremental_jog_moves_exactly_its_distance(
    program: Path, axis: str, distance: float
) -> None:
    vm = machine(program)
    stop_and_settle(vm)
    i = AXES.index(axis)
    start = position(vm)
    limits = CONFIG.axes[axis]
    target = start[i] + distance
    if not limits.min <= target <= limits.max:
        refused(vm, "jog", "outside its travel", axis=axis, distance=distance, feed=3000.0)
        return
    send(vm, "jog", axis=axis, distance=distance, feed=3000.0)
    assert vm.sim.controller.state.mode == Mode.MANUAL
    run_until(vm, idle)
    expected = start.copy()
    expected[i] = target
    assert np.allclose(position(vm), expected, atol=1e-6)
    assert vm.sim.controller.state.execution == Execution.READY


def test_continuous_jog_runs_until_feed_hold_and_then_ends(program: Path) -> None:
    vm = machine(program)
    stop_and_settle(vm)
    y0 = position(vm)[1]
    send(vm, "jog", axis="y", direction=1, feed=1200.0, continuous=True)
    for _ in range(5):
        vm.step()
    moving_at = position(vm)[1]
    assert moving_at > y0 + 5  # 0.5 s at 20 mm/s, after the ramp
    send(vm, "feed_hold")  # what the edge's dead-man sends
    refused(vm, "resume", "does not resume")
    run_until(vm, idle, 50)
    stopped_at = position(vm)[1]
    assert moving_at < stopped_at < CONFIG.axes["y"].max  # braked short of the limit
    assert vm.sim.controller.state.execution == Execution.READY
    for _ in range(3):
        vm.step()
    assert position(vm)[1] == stopped_at  # the rest of the jog was dropped
    send(vm, "jog", axis="y", direction=-1, feed=1200.0, continuous=True)
    vm.step()
    send(vm, "stop")  # a stop ends a jog in the same way
    run_until(vm, idle, 50)
    assert vm.sim.controller.state.execution == Execution.READY


def test_continuous_jog_needs_homed_axes(program: Path) -> None:
    vm = VirtualMachineAdapter(CONFIG, VirtualMachineSettings("m-1", "s", [program], speedup=0,
                                                              loop=False))  # fmt: skip
    vm.step()  # powered up in e-stop, never homed
    refused(vm, "jog", "e-stop", axis="x", direction=1, feed=100.0, continuous=True)
    send(vm, "reset")
    refused(vm, "jog", "needs the axis homed", axis="x", direction=1, feed=100.0, continuous=True)


def test_spindle_override_scales_the_commanded_speed(program: Path) -> None:
    vm = machine(program)
    run_until(vm, lambda m: m.step()[0].columns["spindle.speed_cmd"][-1] > 0)
    send(vm, "spindle_override", percent=50)
    batch, _ = vm.step()
    assert batch.columns["spindle.speed_cmd"][-1] == 3000.0
    assert batch.columns["spindle_override"][-1] == 50
    refused(vm, "spindle_override", "0 to 200", percent=250)


def test_alarm_reset_keeps_the_estop_alarm_while_engaged(program: Path) -> None:
    vm = machine(program)
    c = vm.sim.controller
    c.raise_alarm(AlarmCode.DRIVE_FAULT, Severity.FAULT, "X drive", "x")
    send(vm, "estop")
    send(vm, "alarm_reset")
    assert [a.code for a in c.state.active_alarms()] == [AlarmCode.ESTOP]
    assert c.state.estop
    send(vm, "reset")
    assert c.state.active_alarms() == [] and not c.state.estop


# --- the controller's new checks, on their own -------------------------------------------


def controller_ready(text: str) -> Controller:
    now = iter(range(10_000))
    ctl = Controller(CONFIG, clock=lambda: float(next(now)))
    ctl.reset()
    ctl.home()
    ctl.select_program("p.ngc", text)
    return ctl


@settings(max_examples=40, deadline=None)
@given(text=st.text(max_size=200), other=st.text(max_size=200))
def test_cycle_start_runs_only_the_text_whose_checksum_it_names(text: str, other: str) -> None:
    ctl = controller_ready(text)
    if other != text:
        before = copy.deepcopy(ctl.state)
        with pytest.raises(CommandRejected, match="checksum mismatch"):
            ctl.cycle_start(sha(other))
        assert ctl.state == before
    ctl.cycle_start(sha(text))
    assert ctl.state.execution == Execution.ACTIVE


@settings(max_examples=30, deadline=None)
@given(start=st.sampled_from(list(Mode)), target=st.sampled_from(list(Mode)),
       execution=st.sampled_from(list(Execution)))  # fmt: skip
def test_a_mode_switch_never_leaves_a_running_or_held_program(start: Mode, target: Mode,
                                                              execution: Execution) -> None:  # fmt: skip
    ctl = controller_ready("G0 X0\nM2\n")
    ctl.state.mode, ctl.state.execution = start, execution
    busy = execution in (Execution.ACTIVE, Execution.INTERRUPTED)
    if busy and start != target:
        before = copy.deepcopy(ctl.state)
        with pytest.raises(CommandRejected, match=f"needs {target.name} mode.*{start.name}"):
            ctl.switch_mode(target, "this")
        assert ctl.state == before
    else:
        ctl.switch_mode(target, "this")
        assert ctl.state.mode == target
