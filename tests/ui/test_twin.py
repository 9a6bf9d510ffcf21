"""The machine page's computations, without a browser: toolpath, stock, spectrum,
program window, fleet rows and history ranges."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from machinetwin.hub.ingest import LiveState
from machinetwin.machine import load_machine_config
from machinetwin.model import MachineDescriptor
from machinetwin.ui.fleet import machine_row
from machinetwin.ui.history import RangeError, parse_time, resolve_range
from machinetwin.ui.twin import (
    StockView,
    TwinDataError,
    last_window,
    program_window,
    spectrum,
    toolpath,
)

CONFIG = load_machine_config()
G54 = np.array(CONFIG.work_offsets["G54"])


def test_toolpath_is_the_tool_tip_in_the_machine_frame() -> None:
    text = "G21 G90 G54\nT1 M6\nG43 H1 G0 X0 Y0 Z10\nG1 Z-2 F100\nG1 X50\nG0 Z10\nM30\n"
    path = toolpath(text, CONFIG, "square.ngc")
    feed = path.feed.reshape(-1, 3) - G54  # back to work coordinates of the tip
    assert np.allclose(feed[0], [0, 0, 10]) and np.allclose(feed[1], [0, 0, -2])
    assert np.allclose(feed[-1], [50, 0, -2])
    assert np.allclose(path.rapid.reshape(-1, 3)[-1] - G54, [50, 0, 10])
    assert path.lines == text.count("\n") + 1
    assert len(path.flat("feed")) == path.feed.size


@settings(max_examples=40, deadline=None)
@given(
    radius=st.floats(1.0, 40.0),
    start_deg=st.floats(0.0, 359.0),
    sweep_deg=st.floats(5.0, 355.0),
    clockwise=st.booleans(),
)
def test_arcs_stay_on_their_circle_and_end_at_their_end(
    radius: float, start_deg: float, sweep_deg: float, clockwise: bool
) -> None:
    a0 = math.radians(start_deg)
    a1 = a0 + math.radians(-sweep_deg if clockwise else sweep_deg)
    x0, y0 = 50 + radius * math.cos(a0), 40 + radius * math.sin(a0)
    x1, y1 = 50 + radius * math.cos(a1), 40 + radius * math.sin(a1)
    i, j = 50 - x0, 40 - y0
    text = (f"G21 G90 G54\nT1 M6\nG43 H1\nG0 X{x0:.4f} Y{y0:.4f} Z-1\n"
            f"{'G2' if clockwise else 'G3'} X{x1:.4f} Y{y1:.4f} I{i:.4f} J{j:.4f} F500\nM30\n")  # fmt: skip
    points = toolpath(text, CONFIG).feed.reshape(-1, 3) - G54
    r = np.hypot(points[:, 0] - 50, points[:, 1] - 40)
    assert np.allclose(r, radius, atol=2e-3)
    assert np.allclose(points[-1, :2], [x1, y1], atol=2e-3)
    # the path turns the way the program says
    angles = np.unwrap(np.arctan2(points[:, 1] - 40, points[:, 0] - 50))
    turned = angles[-1] - angles[0]
    assert (turned < 0) == clockwise and abs(abs(math.degrees(turned)) - sweep_deg) < 0.5


def test_a_broken_program_is_named_in_the_error() -> None:
    with pytest.raises(TwinDataError, match="bad.ngc"):
        toolpath("G1 X10 Q\n", CONFIG, "bad.ngc")


def test_stock_is_cut_where_the_tool_went_only() -> None:
    view = StockView(CONFIG)
    tool = CONFIG.tool(1)
    top = view.heights()
    # the controlled point: tip + tool length; a pass at work Z -3 along Y = 40
    x = np.linspace(20, 80, 200)
    tips = np.column_stack([x, np.full_like(x, 40.0), np.full_like(x, -3.0)])
    view.cut(tips + G54 + [0, 0, tool.length], np.ones(len(x)))
    heights = np.asarray(view.heights()).reshape(view.shape)
    nx, ny = view.shape
    cx = (np.arange(nx) + 0.5) * view.grid_mm  # work X of the cell centres
    cy = (np.arange(ny) + 0.5) * view.grid_mm
    in_cut = (np.abs(cy - 40) < tool.diameter / 2 - view.grid_mm)[None, :] & (
        (cx > 22) & (cx < 78)
    )[:, None]
    far = (np.abs(cy - 40) > tool.diameter)[None, :] | ((cx < 10) | (cx > 90))[:, None]
    assert np.allclose(heights[in_cut], G54[2] - 3.0, atol=0.05)
    assert np.allclose(heights[far], np.asarray(top).reshape(view.shape)[far])
    view.reset()
    assert view.heights() == top


def test_stock_refuses_mismatched_input() -> None:
    with pytest.raises(TwinDataError, match="one tool per row"):
        StockView(CONFIG).cut(np.zeros((5, 3)), np.ones(4))
    with pytest.raises(TwinDataError, match="grid"):
        StockView(CONFIG, grid_mm=0.0)


@settings(max_examples=30, deadline=None)
@given(freq=st.floats(50.0, 5000.0), amp=st.floats(0.01, 10.0))
def test_spectrum_peak_is_at_the_tone(freq: float, amp: float) -> None:
    rate = 12_800.0
    t = np.arange(12_800) / rate
    f, a = spectrum(amp * np.sin(2 * np.pi * freq * t), rate)
    k = int(np.argmax(a))
    assert abs(f[k] - freq) <= 2 * (f[1] - f[0])
    # a Hann window loses at most 1.42 dB (x 0.85) for a tone between two bins
    assert 0.84 * amp <= a[k] <= 1.02 * amp


def test_last_window_takes_the_newest_contiguous_run() -> None:
    rate = 1000.0
    first = 10.0 + np.arange(500) / rate
    second = 70.0 + np.arange(300) / rate
    t = np.concatenate([first, second])
    v = np.concatenate([np.zeros(500), np.ones(300)])
    values, got_rate = last_window(t, v)
    assert len(values) == 300 and np.all(values == 1) and got_rate == pytest.approx(rate)
    with pytest.raises(TwinDataError, match="equal 1-D"):
        last_window(t, v[:-1])


@given(n=st.integers(0, 300), current=st.one_of(st.none(), st.integers(-5, 400)),
       radius=st.integers(1, 20))  # fmt: skip
def test_program_window_holds_the_current_line(n: int, current: int | None, radius: int) -> None:
    lines = [f"line {k}" for k in range(1, n + 1)]
    first, rows = program_window(lines, current, radius)
    assert len(rows) == min(n, 2 * radius + 1)
    assert rows == lines[first - 1 : first - 1 + len(rows)]
    if n and current is not None and 1 <= current <= n:
        assert first <= current < first + len(rows)


def test_fleet_row_shows_the_live_state() -> None:
    state = LiveState("m1", MachineDescriptor("m1", "VMC", "Harbin"), online=True,
                      latency_s=0.0234, values={"line": 17.0, "spindle.load": 42.4,
                                                "execution": 1.0})  # fmt: skip
    row = machine_row(state, "pocket.ngc", ["TOOL_BREAKAGE", "A", "B", "C"])
    assert row == {"machine": "m1", "site": "Harbin", "online": "online", "execution": "ACTIVE",
                   "program": "pocket.ngc", "line": "17", "load": "42 %",
                   "alarms": "TOOL_BREAKAGE, A, B (+1)", "latency": "23 ms"}  # fmt: skip
    empty = machine_row(LiveState("m2"), "", [])
    assert empty["online"] == "offline" and empty["line"] == "–" and empty["execution"] == "UNKNOWN"


def test_history_ranges() -> None:
    now = time.time()
    assert resolve_range("900", "", "", now) == (now - 900, now)
    t0, t1 = resolve_range("custom", "2026-01-31 14:05:00", "2026-01-31 14:20", now)
    assert t1 - t0 == 15 * 60
    with pytest.raises(RangeError, match="To .* must be after From"):
        resolve_range("custom", "2026-01-31 14:20:00", "2026-01-31 14:05:00", now)
    with pytest.raises(RangeError, match="From: 'yesterday'"):
        parse_time("yesterday", "From")
