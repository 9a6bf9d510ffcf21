"""Program statistics against hand-computed lengths, boxes and times."""

from __future__ import annotations

import math

import pytest

from machinetwin.gcode import ToolTable, interpret_text, program_stats
from machinetwin.gcode.stats import arc_box

TOOLS = ToolTable.parse("T1 P1 Z50 D10\n")


def stats(text: str, **kw):
    return program_stats(interpret_text(text, TOOLS), **kw)


def test_lengths_times_tools_and_box():
    st = stats(
        "G21 G90 F600\n"
        "G0 X10\n"  # rapid 10 mm
        "G1 Y10\n"  # feed 10 mm: 1 s
        "G3 X0 Y10 I-5 J0\n"  # half circle r=5 over the top: 5*pi mm
        "G4 P2\n"
        "T1 M6\n"
        "G0 Z-3\n"  # rapid 3 mm
        "M2\n",
        rapid_mm_per_min=600.0,
        tool_change_s=5.0,
    )
    assert st.rapid_moves == 2 and st.feed_moves == 1 and st.arcs == 1
    assert st.rapid_mm == pytest.approx(13.0)
    assert st.feed_mm == pytest.approx(10 + 5 * math.pi)
    assert st.tools == [1]
    assert st.dwell_s == 2.0
    assert st.cycle_time_s == pytest.approx(1.3 + 1.0 + 5 * math.pi / 10 + 2.0 + 5.0)
    # the arc rises to Y15 but never drops below Y10; the start point is not a move end
    assert st.bbox_min == pytest.approx([0.0, 0.0, -3.0])
    assert st.bbox_max == pytest.approx([10.0, 15.0, 0.0])
    d = st.to_dict()
    assert d["tools"] == [1] and d["arcs"] == 1 and d["bbox_max_mm"] == st.bbox_max


def test_machine_frame_and_inches():
    st = stats("G20\nG10 L2 P2 X1 Y1 Z1\nG55\nG0 X1 Y1 Z0\nM2\n")
    assert st.bbox_min == pytest.approx([50.8, 50.8, 25.4])
    assert st.rapid_mm == pytest.approx(math.dist((0, 0, 0), (50.8, 50.8, 25.4)))


def test_feed_per_rev_uses_the_spindle_speed():
    st = stats("G95 S1000 M3\nF0.1\nG1 X50\nM2\n")  # 100 mm/min
    assert st.cycle_time_s == pytest.approx(30.0)


def test_helix_length_and_no_motion():
    st = stats("F100\nG17 G2 X0 Y0 I5 J0 Z-4\nM2\n")  # one full turn while going down 4
    assert st.feed_mm == pytest.approx(math.hypot(2 * math.pi * 5, 4))
    assert st.bbox_min[:2] == pytest.approx([0.0, -5.0])
    assert st.bbox_max[:2] == pytest.approx([10.0, 5.0])
    empty = stats("G21\nM2\n")
    assert not empty.has_motion
    assert empty.to_dict()["bbox_min_mm"] is None


@pytest.mark.parametrize(
    ("start", "centre", "end", "rotation", "box"),
    [
        ((1, 0), (0, 0), (0, 1), 1, ((0, 0), (1, 1))),  # quarter, ccw
        ((1, 0), (0, 0), (0, 1), -1, ((-1, -1), (1, 1))),  # three quarters, cw
        ((1, 0), (0, 0), (1, 0), 1, ((-1, -1), (1, 1))),  # full circle
        ((0, 1), (0, 0), (0, -1), -1, ((0, -1), (1, 1))),  # right half, cw
        ((0, 1), (0, 0), (0, -1), 2, ((-1, -1), (1, 1))),  # one and a half turns
    ],
)
def test_arc_box(start, centre, end, rotation, box):
    lo, hi = arc_box(start, centre, end, rotation)
    assert lo == pytest.approx(box[0], abs=1e-12)
    assert hi == pytest.approx(box[1], abs=1e-12)
