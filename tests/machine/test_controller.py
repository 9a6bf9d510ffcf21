"""The controller's state machine fails closed: refused commands change nothing."""

from __future__ import annotations

import copy

import pytest

from machinetwin.errors import CommandRejected, ConfigError
from machinetwin.machine import load_machine_config
from machinetwin.machine.controller import Controller
from machinetwin.machine.faults import FaultKind, FaultSchedule, parse_fault
from machinetwin.model import AlarmCode, Execution, Mode, Severity


@pytest.fixture
def ctl() -> Controller:
    now = iter(range(10_000))
    return Controller(load_machine_config(), clock=lambda: float(next(now)))


def ready(ctl: Controller) -> Controller:
    ctl.reset()
    ctl.home()
    ctl.set_mode(Mode.AUTOMATIC)
    ctl.load_program("part.ngc", "G0 X0\nM2\n")
    return ctl


def assert_refused(ctl: Controller, action, reason: str) -> None:
    before = copy.deepcopy(ctl.state)
    with pytest.raises(CommandRejected, match=reason):
        action()
    assert ctl.state == before


def test_powers_up_in_estop_and_refuses_motion(ctl: Controller) -> None:
    assert ctl.state.estop
    assert_refused(ctl, ctl.home, "e-stop")
    assert_refused(ctl, ctl.cycle_start, "e-stop")


def test_cycle_start_needs_homing_mode_and_program(ctl: Controller) -> None:
    ctl.reset()
    ctl.set_mode(Mode.AUTOMATIC)
    assert_refused(ctl, ctl.cycle_start, "not homed")
    ctl.set_mode(Mode.MANUAL)
    ctl.home()
    ctl.set_mode(Mode.AUTOMATIC)
    assert_refused(ctl, ctl.cycle_start, "no program")
    ctl.load_program("p.ngc", "M2\n")
    ctl.cycle_start()
    assert ctl.state.execution == Execution.ACTIVE


def test_hold_resume_stop_and_completion(ctl: Controller) -> None:
    ready(ctl).cycle_start()
    ctl.feed_hold()
    assert ctl.state.execution == Execution.INTERRUPTED
    assert_refused(ctl, ctl.feed_hold, "nothing is running")
    ctl.resume()
    assert ctl.state.execution == Execution.ACTIVE
    assert_refused(ctl, lambda: ctl.set_mode(Mode.MDI), "running")
    ctl.on_program_end()
    assert ctl.state.execution == Execution.PROGRAM_COMPLETED
    assert ctl.state.part_count == 1
    ctl.cycle_start()
    ctl.stop()
    assert ctl.state.execution == Execution.STOPPED


def test_fault_alarm_stops_program_and_blocks_restart(ctl: Controller) -> None:
    ready(ctl).cycle_start()
    ctl.raise_alarm(AlarmCode.SPINDLE_OVERLOAD, Severity.FAULT, "spindle load 130 %", "spindle")
    ctl.raise_alarm(AlarmCode.SPINDLE_OVERLOAD, Severity.FAULT, "again", "spindle")
    assert len(ctl.state.active_alarms()) == 1
    assert ctl.state.execution == Execution.STOPPED
    assert_refused(ctl, ctl.cycle_start, "MT-200")
    ctl.reset()
    ctl.cycle_start()
    assert ctl.state.execution == Execution.ACTIVE


def test_warning_does_not_stop(ctl: Controller) -> None:
    ready(ctl).cycle_start()
    ctl.raise_alarm(AlarmCode.OVER_TEMPERATURE, Severity.WARNING, "warm", "spindle")
    assert ctl.state.execution == Execution.ACTIVE


def test_estop_is_always_accepted(ctl: Controller) -> None:
    ready(ctl).cycle_start()
    ctl.estop()
    assert ctl.state.execution == Execution.STOPPED
    assert ctl.state.active_alarms()[0].code == AlarmCode.ESTOP


def test_jog_soft_limits(ctl: Controller) -> None:
    ctl.reset()
    ctl.jog("x", 700.0)  # not homed: no soft limits yet
    ctl.home()
    ctl.jog("x", 599.0)
    assert_refused(ctl, lambda: ctl.jog("x", 600.5), "outside its travel")
    assert_refused(ctl, lambda: ctl.jog("z", 1.0), "outside its travel")
    assert_refused(ctl, lambda: ctl.set_override("feed", 250), "0 to 200")


def test_fault_specs() -> None:
    f = parse_fault("bearing_outer:0.5@2min")
    assert (f.kind, f.severity, f.start) == (FaultKind.BEARING_OUTER, 0.5, 120.0)
    schedule = FaultSchedule([f, parse_fault("tool_breakage:1@30")])
    assert schedule.severity(FaultKind.BEARING_OUTER, 100.0) == 0.0
    grown = [schedule.severity(FaultKind.BEARING_OUTER, t) for t in (120.0, 1000.0, 9000.0)]
    assert grown[0] < grown[1] < grown[2] == 0.5
    assert schedule.ground_truth(31.0)["fault.tool_breakage"] == 1.0
    for bad, message in [("bearing:0.5@1", "unknown kind"), ("tool_wear:2@1", "between 0 and 1"),
                         ("tool_wear@1", "expected KIND")]:  # fmt: skip
        with pytest.raises(ConfigError, match=message):
            parse_fault(bad)


def test_machine_config_errors_name_the_key(tmp_path) -> None:
    from machinetwin.machine import load_machine_config as load

    bad = tmp_path / "m.toml"
    bad.write_text(
        "[axes.x]\nmin = 0\nmax = -1\nmax_velocity = 1\nmax_acceleration = 1\nmax_jerk = 1\n"
    )
    with pytest.raises(ConfigError, match=r"m.toml: axes.x: .*greater than min"):
        load(bad)
    bad.write_text("name = 3\n[axes.x]\n")
    with pytest.raises(ConfigError, match="name"):
        load(bad)
