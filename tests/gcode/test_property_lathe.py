"""Lathe cycles G70-G72 must agree with LinuxCNC's rs274 on random turned profiles.

A profile starts near the axis and works outwards along -Z, as a turned part does:
X never falls and Z never rises, with straight steps, tapers and gentle arcs, and
sometimes an A fillet or C chamfer at a corner. The cycle starts outside the stock.
Each program roughs it (G71, G71.1, G71.2 or G72 with random D, I, R) and finishes it
(G70 with D, E, P passes), in radius or diameter mode (G8/G7). Two lines in the same
direction never follow each other (LinuxCNC cannot intersect parallel lines). Programs
on which rs274 itself hangs or crashes are skipped: there is nothing to agree with.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, note, reject, settings
from hypothesis import strategies as st

import rs274_runner
from gcode_differential import TOOL_TABLE, compare_program
from rs274_runner import run_rs274

RS274_LIMIT_S = 5.0  # rs274's own G7x code loops forever on a few profiles


def fmt(value: float) -> str:
    text = f"{value:.4f}"
    return "0.0000" if text == "-0.0000" else text


@st.composite
def turned_profiles(draw) -> tuple[list[str], float, float]:
    """Profile lines (radius coordinates), its largest X and its start Z."""
    x = draw(st.floats(0.0, 3.0))
    z = draw(st.floats(0.0, 2.0))
    lines = [f"G0 X{fmt(x)} Z{fmt(z)}"]
    last = "step"  # the approach counts as one: two parallel lines in a row cannot meet
    for n in range(draw(st.integers(2, 6))):
        kinds = [k for k in ("step", "face", "taper", "arc") if k != last or k in ("taper", "arc")]
        if n == 0:
            kinds = [k for k in kinds if k != "face"]
        kind = draw(st.sampled_from(kinds))
        last = kind
        corner = ""
        if draw(st.integers(0, 4)) == 0:
            corner = f" {draw(st.sampled_from(['A', 'C']))}{fmt(draw(st.floats(0.1, 0.4)))}"
        if kind == "step":  # along -Z
            z -= draw(st.floats(2.0, 8.0))
            lines.append(f"G1 Z{fmt(z)}{corner}")
        elif kind == "face":  # out in X
            x += draw(st.floats(1.0, 5.0))
            lines.append(f"G1 X{fmt(x)}{corner}")
        elif kind == "taper":
            x += draw(st.floats(0.5, 4.0))
            z -= draw(st.floats(0.5, 4.0))
            lines.append(f"G1 X{fmt(x)} Z{fmt(z)}{corner}")
        else:  # a quarter-ish arc out and along, its centre placed for a monotonic path
            r = draw(st.floats(1.0, 4.0))
            x2, z2 = x + r, z - r
            code, cx, cz = draw(st.sampled_from([("G2", x + r, z), ("G3", x, z - r)]))
            lines.append(f"{code} X{fmt(x2)} Z{fmt(z2)} I{fmt(cx - x)} K{fmt(cz - z)}")
            x, z = x2, z2
    if last == "step":
        x += draw(st.floats(1.0, 3.0))
        lines.append(f"G1 X{fmt(x)}")
    z -= draw(st.floats(1.0, 4.0))
    lines.append(f"G1 Z{fmt(z)}")
    return lines, x, z


@st.composite
def lathe_programs(draw) -> str:
    profile, x_max, _ = draw(turned_profiles())
    diameter = draw(st.booleans())
    k = 2.0 if diameter else 1.0

    def scaled(line: str) -> str:
        # in G7 the X words of the profile and of the cycle are diameters
        words = []
        for w in line.split():
            words.append(f"X{fmt(float(w[1:]) * k)}" if w[0] == "X" else w)
        return " ".join(words)

    xs = (x_max + draw(st.floats(1.0, 4.0))) * k
    zs = draw(st.floats(3.0, 6.0))
    roughing = draw(st.sampled_from(["G71", "G71.1", "G71.2", "G72", "G72.1"]))
    d = fmt(draw(st.floats(0.0, 1.0)))
    i = fmt(draw(st.floats(0.3, 2.0)))
    r = fmt(draw(st.floats(0.1, 0.8)))
    lines = ["G18 G21 G90 F300", "G7" if diameter else "G8", "o100 sub"]
    lines += ["  " + scaled(p) for p in profile]
    lines += ["o100 endsub", f"G0 X{fmt(xs)} Z{fmt(zs)}"]
    lines.append(f"{roughing} Q100 X{fmt(xs)} Z{fmt(zs)} D{d} I{i} R{r}")
    passes = draw(st.integers(1, 3))
    e = fmt(draw(st.floats(0.0, 0.2)))
    lines.append(f"G70 Q100 X{fmt(xs)} Z{fmt(zs)} D{d} E{e} P{passes}")
    lines.append("M2")
    return "\n".join(lines) + "\n"


@pytest.mark.service
@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(program=lathe_programs())
def test_lathe_cycles_agree_with_rs274(rs274_available, program):
    note(program)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(rs274_runner, "RS274_TIMEOUT_S", RS274_LIMIT_S)
            agreement = compare_program(program)
    except RuntimeError:  # rs274 did not finish: nothing to compare with
        reject()
    if not agreement.ok and agreement.rs274_rc and run_rs274(program, TOOL_TABLE).returncode < 0:
        reject()  # rs274 crashed (its G7x code reads before a list's start on some profiles)
    assert agreement.ok, f"{agreement.detail}\n--- program ---\n{program}"
