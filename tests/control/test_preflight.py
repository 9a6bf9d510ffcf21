"""Pre-flight on the default machine's twin: what refuses a remote start, and what passes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from machinetwin.hub.preflight import preflight, program_sha256
from machinetwin.machine import load_machine_config

CONFIG = load_machine_config()
HEAD = "G21 G90 G54\nT1 M6 G43\nS6000 M3\n"
GOOD = HEAD + "G0 X0 Y0 Z5\nG1 Z-1 F600\nG1 X30\nG0 Z5\nM5\nM2\n"


def kinds(report) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for f in report.findings:
        out.setdefault(f.kind, []).append(f.line)
    return out


def test_a_clean_program_passes_with_a_cycle_time() -> None:
    report = preflight("good.ngc", GOOD, CONFIG)
    assert report.ok and report.findings == [] and report.simulated
    assert report.sha256 == program_sha256(GOOD)
    # 30 mm at 600 mm/min is 3 s of cutting alone; the run also changes a tool and moves
    assert 3.0 < report.cycle_time_s < 60.0


def test_soft_limit_and_missing_tool_are_found_at_their_lines() -> None:
    text = "G21 G90 G54\nT9 M6 G43\nS6000 M3\nG0 X0 Y0 Z5\nG1 Z-1 F600\nG1 X400\nG0 Z5\nM2\n"
    report = preflight("bad.ngc", text, CONFIG)
    assert not report.ok and not report.simulated
    found = kinds(report)
    assert found["tool_missing"] == [2]
    assert found["soft_limit"] == [6]  # X300+400 = 700 mm > 600 mm travel, once


def test_spindle_and_feed_beyond_the_machine_are_refused() -> None:
    text = "G21 G90 G54\nT1 M6 G43\nS15000 M3\nG0 X0 Y0 Z5\nG1 Z-1 F90000\nM2\n"
    found = kinds(preflight("fast.ngc", text, CONFIG))
    assert found == {"spindle_speed": [3], "feed": [5]}


def test_a_rapid_into_the_stock_is_found_by_the_twin() -> None:
    text = HEAD + "G0 X-20 Y40 Z5\nG0 Z-5\nG0 X50\nG0 Z5\nM5\nM2\n"
    report = preflight("rapid.ngc", text, CONFIG)
    assert report.simulated and not report.ok
    assert kinds(report)["rapid_into_stock"] == [6]


def test_an_arc_bulging_out_of_travel_is_found() -> None:
    # from X-280 (machine X20) a half circle of radius 40 reaches machine X -20
    text = HEAD + "G0 X-280 Y0 Z5\nG2 X-280 Y80 I0 J40 F300\nM2\n"
    assert kinds(preflight("arc.ngc", text, CONFIG)) == {"soft_limit": [5]}


def test_a_program_error_is_reported_with_its_line() -> None:
    report = preflight("broken.ngc", HEAD + "G1 X10 Q\nM2\n", CONFIG)
    assert not report.ok and report.findings[0].kind == "program_error"
    assert report.findings[0].line == 4


@settings(max_examples=40, deadline=None)
@given(x=st.floats(-400, 400), y=st.floats(-300, 300), z=st.floats(-350, 150))
def test_soft_limit_found_exactly_when_a_move_leaves_travel(x: float, y: float, z: float) -> None:
    text = f"G21 G90 G54\nT1 M6 G43\nG0 X{x:.3f} Y{y:.3f} Z{z:.3f}\nM2\n"
    report = preflight("move.ngc", text, CONFIG, simulate_twin=False)
    # machine = work + G54 (300, 200, -300) + tool length on Z (T1: 75 mm)
    t1 = CONFIG.tool(1).length
    machine = (round(x, 3) + 300, round(y, 3) + 200, round(z, 3) - 300 + t1)
    outside = [
        not (CONFIG.axes[a].min - 1e-6 <= v <= CONFIG.axes[a].max + 1e-6)
        for a, v in zip("xyz", machine, strict=True)
    ]
    assert ("soft_limit" in kinds(report)) == any(outside)


@pytest.mark.parametrize("text", ["%\n%\n", "M2\n"])
def test_programs_without_motion_pass_statically(text: str) -> None:
    report = preflight("empty.ngc", text, CONFIG, simulate_twin=False)
    assert report.findings == []


def test_an_empty_file_is_a_program_error_as_in_linuxcnc() -> None:
    report = preflight("empty.ngc", "", CONFIG)
    assert [f.kind for f in report.findings] == ["program_error"]


# the tool beside the part, 10 mm below its top (work X-20 Y40 Z-10, spindle nose with
# T1's 75 mm above the tip): a first rapid to X60 crosses the part on its way up
BESIDE_THE_PART = (300.0 - 20.0, 200.0 + 40.0, -300.0 - 10.0 + 75.0)
FIRST_RAPID = HEAD + "G0 X60 Y40 Z5\nG1 Z-1 F600\nG1 X30\nG0 Z30\nM5\nM2\n"


def test_the_twin_starts_where_the_tool_is() -> None:
    """(d) A program that is clean from home is refused from the live position where
    its first rapid runs through the part; well above the part it passes again."""
    from_home = preflight("first.ngc", FIRST_RAPID, CONFIG)
    assert from_home.ok and from_home.as_dict()["start"] is None
    beside = preflight("first.ngc", FIRST_RAPID, CONFIG, start=BESIDE_THE_PART)
    assert not beside.ok and kinds(beside).get("rapid_into_stock") == [4]
    assert beside.as_dict()["start"] == list(BESIDE_THE_PART)
    above = (BESIDE_THE_PART[0], BESIDE_THE_PART[1], BESIDE_THE_PART[2] + 100.0)
    assert preflight("first.ngc", FIRST_RAPID, CONFIG, start=above).ok


def test_a_tool_standing_in_the_part_is_told_to_retract_first() -> None:
    """The twin's part is a fresh blank: where the machine's tool stands in material it
    cut, pre-flight refuses with a finding that says so, not with a bogus rapid."""
    in_the_part = (300.0 + 50.0, 200.0 + 40.0, -300.0 - 1.0 + 75.0)  # T1's tip at work Z-1
    report = preflight("first.ngc", FIRST_RAPID, CONFIG, start=in_the_part)
    found = kinds(report)
    assert found.get("start_in_stock") == [0] and "rapid_into_stock" not in found
    assert "G53 G0 Z0" in report.findings[0].message


@given(st.dictionaries(st.sampled_from(["x.pos", "y.pos", "z.pos", "feed"]),
                       st.floats(allow_nan=True, allow_infinity=True) | st.none()))  # fmt: skip
def test_live_position_needs_three_finite_axes(values: dict) -> None:
    from types import SimpleNamespace

    from machinetwin.hub.preflight import live_position

    pos = live_position(SimpleNamespace(values=values))
    usable = all(
        isinstance(values.get(k), float)
        and values[k] == values[k]
        and abs(values[k]) != float("inf")
        for k in ("x.pos", "y.pos", "z.pos")
    )
    assert (pos is not None) == usable
    if pos is not None:
        assert pos == (values["x.pos"], values["y.pos"], values["z.pos"])
    assert live_position(None) is None
