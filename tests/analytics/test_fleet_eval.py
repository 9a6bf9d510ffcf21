"""The fleet evaluation: what counts as detected, missed and false, on a real short run."""

from __future__ import annotations

from machinetwin.analytics.fleet_eval import (
    FaultResult,
    MachineResult,
    Scenario,
    _judge,
    run_scenario,
    summarise,
)
from machinetwin.machine.faults import parse_fault
from machinetwin.machine.fleet_run import EXAMPLES
from machinetwin.model import AlarmCode

PROGRAMS = (EXAMPLES / "pocket.ngc", EXAMPLES / "face.ngc")


def test_a_bearing_fault_is_detected_after_it_starts_and_nothing_else_is_raised() -> None:
    s = Scenario("vmc-inner", PROGRAMS, ("bearing_inner:0.8@60",), seed=2)
    result = run_scenario(s, hours=6 / 60)
    (fault,) = result.faults
    assert fault.detected_s is not None and fault.detected_s >= 60
    assert fault.delay_s < 300 and fault.before_machine_alarm
    assert fault.message.startswith("inner-race defect suspected")
    assert result.false_alarms == []


def test_judging_matches_class_time_and_true_wear() -> None:
    s = Scenario("m", PROGRAMS, ("bearing_outer:0.5@100", "tool_wear:0.5@50"))
    faults = [parse_fault(f) for f in s.faults]
    found = [
        (
            90.0,
            AlarmCode.BEARING_DEFECT,
            "spindle.bearing",
            "outer-race defect suspected",
            0.0,
        ),  # before: false
        (
            150.0,
            AlarmCode.BEARING_DEFECT,
            "spindle.bearing",
            "inner-race defect suspected",
            0.0,
        ),  # wrong class
        (
            160.0,
            AlarmCode.BEARING_DEFECT,
            "spindle.bearing",
            "outer-race defect suspected",
            0.0,
        ),  # detection
        (170.0, AlarmCode.TOOL_WORN, "tool.T4", "tool T4 worn", 0.05),  # explained by tool_wear
        (180.0, AlarmCode.ANOMALY, "x.motion", "unusual motion", 0.0),  # no motion fault: false
    ]
    result = _judge(s, faults, found, machine_alarms=[155.0], hours=1.0)
    bearing, wear = result.faults
    assert bearing.detected_s == 160.0 and not bearing.before_machine_alarm  # the machine was first
    assert wear.detected_s == 170.0
    assert len(result.false_alarms) == 3  # early, wrong class, anomaly


def test_worn_tool_from_normal_wear_is_not_a_false_alarm() -> None:
    s = Scenario("m", PROGRAMS, ())
    found = [(500.0, AlarmCode.TOOL_WORN, "tool.T4", "tool T4 worn", 0.2),
             (600.0, AlarmCode.TOOL_WORN, "tool.T1", "tool T1 worn", 0.02)]  # fmt: skip
    result = _judge(s, [], found, machine_alarms=[], hours=1.0)
    assert result.false_alarms == ["600 s MT-330: tool T1 worn"]


def test_summary_rates_per_machine_week() -> None:
    results = [MachineResult("a", 84.0, [FaultResult("a", "bearing_ball:1@0", 0.0, 120.0, None)]),
               MachineResult("b", 84.0, [], ["x"])]  # fmt: skip
    s = summarise(results)
    assert s["faults"] == s["detected"] == s["detected_before_machine_alarm"] == 1
    assert s["false_alarms_per_machine_week"] == 1.0  # one in 168 machine-hours
    assert s["detection_delay_median_s"] == 120.0
