"""Material removal on the stock's height field: volumes, depths, collisions, mesh."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from machinetwin.gcode import canon, interpret_text
from machinetwin.machine import load_machine_config
from machinetwin.machine import stock as stock_module
from machinetwin.machine.config import StockConfig, ToolConfig
from machinetwin.machine.stock import CutResult, Stock, ToolShape

CONFIG = load_machine_config()
END_MILL, BALL, DRILL, FACE_MILL = (CONFIG.tool(n) for n in (1, 2, 3, 4))
DT = 1e-3  # s, one servo tick


def sample_program(body: str, rapid_speed: float = 500.0) -> tuple[np.ndarray, np.ndarray]:
    """1 kHz tool-tip samples of a program at constant speed (stand-in for the planner).

    Returns the (n, 3) tips and the per-sample rapid flags. The tool starts at Z50
    over work zero.
    """
    position = np.array([0.0, 0.0, 50.0])
    feed = 1000.0  # mm/min
    tips, rapid = [], []
    for op in interpret_text("G21 G90 G17\n" + body + "\nM2\n"):
        if isinstance(op, canon.SetFeedRate):
            feed = op.rate
        elif isinstance(op, canon.StraightTraverse | canon.StraightFeed):
            end = np.array([op.x, op.y, op.z])
            is_rapid = isinstance(op, canon.StraightTraverse)
            speed = rapid_speed if is_rapid else feed / 60.0  # mm/s
            n = max(1, math.ceil(np.linalg.norm(end - position) / (speed * DT)))
            u = np.arange(1, n + 1) / n
            tips.append(position + u[:, None] * (end - position))
            rapid.append(np.full(n, is_rapid))
            position = end
    return np.vstack(tips), np.concatenate(rapid)


def run(
    stock: Stock, tool: ToolConfig, body: str, batch: int = 1000
) -> tuple[CutResult, list[CutResult]]:
    """Cut a program in batches; returns the concatenated result and the batches."""
    tips, rapid = sample_program(body)
    parts = [
        stock.cut(tips[i : i + batch], tool, rapid[i : i + batch])
        for i in range(0, len(tips), batch)
    ]
    whole = CutResult(
        *(np.concatenate([getattr(p, f) for p in parts]) for f in CutResult.__slots__[:-1]),
        diameter=tool.diameter,
    )
    return whole, parts


def pocket_program(
    x: tuple[float, float] = (35.0, 65.0),
    y: tuple[float, float] = (30.0, 50.0),
    depths: tuple[float, ...] = (-2.5, -5.0),
    stepover: float = 4.0,
) -> str:
    """Zig-zag clearing of a rectangle of tool-centre positions, level by level.

    Each level ends with a pass around the rectangle, which takes off the scallops
    the zig-zag leaves on the walls between its lines.
    """
    lines = [f"G0 X{x[0]} Y{y[0]} Z5"]
    for z in depths:
        lines += [f"G1 X{x[0]} Y{y[0]} F600", f"G1 Z{z} F300", "F1000"]
        for k, yy in enumerate(np.arange(y[0], y[1] + 1e-9, stepover)):
            lines += [f"G1 Y{yy:.4f}", f"G1 X{x[1] if k % 2 == 0 else x[0]}"]
        lines += [f"G1 X{x[0]} Y{y[0]}", f"G1 X{x[1]}", f"G1 Y{y[1]}", f"G1 X{x[0]}", f"G1 Y{y[0]}"]
    return "\n".join([*lines, "G0 Z50"])


def envelope_over(stock: Stock, shape: ToolShape, tips: np.ndarray, chunk: int = 64) -> np.ndarray:
    """Reference lower envelope of the tool over the given tip positions (float64)."""
    gx, gy = np.meshgrid(stock.x, stock.y, indexing="ij")
    lowest = np.full(gx.shape, np.inf)
    for i in range(0, len(tips), chunk):
        part = tips[i : i + chunk]
        r2 = (gx[None] - part[:, 0, None, None]) ** 2 + (gy[None] - part[:, 1, None, None]) ** 2
        lowest = np.minimum(lowest, (part[:, 2, None, None] + shape.lift(r2)).min(axis=0))
    return lowest


def envelope_lower_bound(
    stock: Stock, shape: ToolShape, a: tuple[float, ...], b: tuple[float, ...], pieces: int = 200
) -> np.ndarray:
    """A rigorous lower bound of the tool's continuous envelope along the segment a-b.

    On each piece of the segment the tool is never lower than the piece's lowest Z
    plus the lift at the piece's nearest approach to the cell (lift grows with radius).
    """
    ends = np.linspace(a, b, pieces + 1)
    p, q = ends[:-1], ends[1:]
    gx, gy = np.meshgrid(stock.x, stock.y, indexing="ij")
    cells = np.stack([gx.ravel(), gy.ravel()], axis=1)
    d = q[:, :2] - p[:, :2]
    length2 = np.maximum((d * d).sum(axis=1), 1e-300)
    rel = cells[:, None, :] - p[None, :, :2]
    u = np.clip((rel * d[None]).sum(axis=2) / length2[None], 0.0, 1.0)
    nearest = rel - u[:, :, None] * d[None]
    bound = np.minimum(p[:, 2], q[:, 2])[None] + shape.lift((nearest**2).sum(axis=2))
    return bound.min(axis=1).reshape(gx.shape)


# --- tool shapes ------------------------------------------------------------------


def test_tool_profiles_follow_the_cutter_geometry() -> None:
    r2 = np.array([0.0, 2.0**2, 2.9**2, 3.1**2])
    ball = ToolShape.from_config(BALL)  # 6 mm
    np.testing.assert_allclose(ball.lift(r2)[:3], 3 - np.sqrt(9 - r2[:3]))
    assert ball.lift(r2)[3] == np.inf
    flat = ToolShape.from_config(END_MILL)
    assert list(flat.lift(np.array([0.0, 24.9, 25.1]))) == [0.0, 0.0, np.inf]
    drill = ToolShape.from_config(DRILL)  # 118 degree point: lift = r / tan(59 deg)
    assert drill.lift(np.array([16.0]))[0] == pytest.approx(4 / math.tan(math.radians(59)))
    assert ToolShape.from_config(END_MILL).holder_radius == 16.0


# --- acceptance: volumes and depths computed by hand -------------------------------


def test_face_pass_one_mm_deep_over_the_whole_block() -> None:
    stock = Stock(CONFIG.stock)
    lines = ["G0 X-30 Y5 Z5", "G1 Z-1 F1500"]
    for k, y in enumerate([5, 30, 55, 80]):
        lines += [f"G1 Y{y}", f"G1 X{130 if k % 2 == 0 else -30}"]
    result, _ = run(stock, FACE_MILL, "\n".join([*lines, "G0 Z50"]))
    assert stock.removed_volume == pytest.approx(100 * 80 * 1, rel=0.01)
    np.testing.assert_allclose(stock.heights, -1.0, atol=1e-5)
    assert not result.collision.any()


def test_pocket_with_corner_radii() -> None:
    stock = Stock(CONFIG.stock)
    run(stock, END_MILL, pocket_program())
    # 40 x 30 x 5 mm pocket (tool centres 35..65 x 30..50), corners rounded to R5.
    expected = 5 * (40 * 30 - (4 - math.pi) * 5**2)
    assert stock.removed_volume == pytest.approx(expected, rel=0.01)
    assert float(stock.height_at(50, 40)) == pytest.approx(-5.0, abs=1e-5)
    assert float(stock.height_at(30.4, 40)) == pytest.approx(-5.0, abs=1e-5)  # side wall at X30
    assert float(stock.height_at(29.6, 40)) == 0.0
    assert float(stock.height_at(30.7, 25.7)) == 0.0  # left standing in the rounded corner
    assert float(stock.height_at(50, 24.6)) == 0.0


def test_ball_end_mill_slot_has_a_semicircular_section() -> None:
    stock = Stock(CONFIG.stock)
    y0 = 40.1  # off the grid lines so that the section is sampled fairly
    body = f"G0 X20 Y{y0} Z5\nG1 Z-3 F200\nG1 X80 F800\nG0 Z50"
    run(stock, BALL, body)
    # semicircle of radius 3 along 60 mm, plus a quarter sphere at each end
    expected = math.pi * 9 / 2 * 60 + 2 * (math.pi * 27 / 3)
    assert stock.removed_volume == pytest.approx(expected, rel=0.01)
    i = int((50 - stock.origin[0]) / stock.grid)
    r = stock.y - y0
    section = np.where(np.abs(r) < 3, -np.sqrt(np.clip(9 - r**2, 0, None)), 0.0)
    # Near the rim the wall is almost vertical and the scallop between key positions
    # along the slot, s^2 / (8 sqrt(R^2 - r^2)), grows; compare the floor and flanks.
    flank = np.abs(r) <= 2.5
    np.testing.assert_allclose(stock.heights[i][flank], section[flank], atol=0.02)
    np.testing.assert_array_equal(stock.heights[i][np.abs(r) > 3], 0.0)


def test_drilled_hole_is_a_cylinder_with_a_cone() -> None:
    stock = Stock(CONFIG.stock)
    x, y = 50.1, 40.03
    run(stock, DRILL, f"G0 X{x} Y{y} Z5\nG98 G81 X{x} Y{y} Z-10 R2 F100\nG80\nG0 Z50")
    radius, cone = 4.0, 4.0 / math.tan(math.radians(59))
    expected = math.pi * radius**2 * (10 - cone) + math.pi * radius**2 * cone / 3
    assert stock.removed_volume == pytest.approx(expected, rel=0.01)
    assert np.nanmin(stock.heights) == pytest.approx(-10.0, abs=0.2)
    assert float(stock.height_at(x + 3.5, y)) == pytest.approx(
        -10 + 3.5 * math.tan(math.radians(31)), abs=0.2
    )
    assert float(stock.height_at(x + 4.5, y)) == 0.0


# --- bookkeeping ------------------------------------------------------------------


def test_integral_of_the_removal_rate_is_the_removed_volume() -> None:
    stock = Stock(CONFIG.stock)
    result, parts = run(stock, END_MILL, pocket_program(), batch=137)
    removed = stock.initial_volume - stock.volume()
    assert removed > 5000
    assert result.mrr(DT).sum() * DT == pytest.approx(removed, rel=1e-9)
    assert sum(p.volume.sum() for p in parts) == pytest.approx(stock.removed_volume, rel=1e-9)
    assert (result.volume >= 0).all()


def test_batch_size_does_not_change_the_cut() -> None:
    one, many = Stock(CONFIG.stock), Stock(CONFIG.stock)
    run(one, END_MILL, pocket_program(), batch=100_000)
    run(many, END_MILL, pocket_program(), batch=53)
    assert many.removed_volume == pytest.approx(one.removed_volume, rel=1e-3)
    np.testing.assert_allclose(many.heights, one.heights, atol=0.02)


def test_removal_rate_is_smooth_in_a_steady_slot() -> None:
    stock = Stock(CONFIG.stock)
    result, _ = run(stock, END_MILL, "G0 X10 Y40 Z5\nG1 Z-3 F300\nG1 X90 F600\nG0 Z50")
    mrr = result.mrr(DT)
    steady = mrr[(mrr > 0)][3000:-3000]  # 3 mm deep x 10 wide x 10 mm/s = 300 mm^3/s
    assert np.median(steady) == pytest.approx(300, rel=0.02)
    assert np.percentile(steady, 95) < 1.3 * 300  # spread over samples, not whole-cell jumps


def test_axial_and_radial_engagement() -> None:
    stock = Stock(CONFIG.stock)
    slot, _ = run(stock, END_MILL, "G0 X10 Y40 Z5\nG1 Z-3 F300\nG1 X90 F600\nG0 Z50")
    steady = slot.volume > 0.1
    assert np.median(slot.ap[steady]) == pytest.approx(3.0, rel=0.02)
    assert np.median(slot.ae[steady]) == pytest.approx(10.0, rel=0.05)
    assert np.median(slot.engagement_angle[steady]) == pytest.approx(math.pi, rel=0.1)
    # a side cut 2 mm into the slot's wall
    side, _ = run(stock, END_MILL, "G0 X10 Y42 Z5\nG1 Z-3 F300\nG1 X90 F600\nG0 Z50")
    steady = side.volume > 0.03  # 2 x 3 mm at 10 mm/s is 0.06 mm^3 per sample
    assert np.median(side.ae[steady]) == pytest.approx(2.0, rel=0.1)
    assert np.median(side.ap[steady]) == pytest.approx(3.0, rel=0.02)


# --- collisions -------------------------------------------------------------------


def test_rapid_into_material_is_a_collision() -> None:
    stock = Stock(CONFIG.stock)
    result, _ = run(stock, END_MILL, "G0 X50 Y40 Z5\nG0 Z-2\nG0 Z50")
    assert result.rapid_collision.any()
    assert result.collision.any()
    tips, rapid = sample_program("G0 X50 Y40 Z5\nG0 Z-2\nG0 Z50")
    assert rapid[result.rapid_collision].all()


def test_feeds_and_rapids_in_air_are_not_collisions() -> None:
    stock = Stock(CONFIG.stock)
    # rapids inside the cleared pocket, then down beside the block and along it
    moves = "G0 X50 Y40 Z-1\nG0 X60 Y45\nG0 Z50\nG0 X-20 Y-20\nG0 Z-20\nG0 Y120\nG0 Z50"
    result, _ = run(stock, END_MILL, pocket_program() + "\n" + moves)
    assert result.volume.sum() > 5000
    assert not result.collision.any()


def test_cut_deeper_than_the_flutes_hits_the_holder() -> None:
    deep, _ = run(Stock(CONFIG.stock), END_MILL, "G0 X50 Y40 Z5\nG1 Z-25 F300\nG0 Z50")
    assert deep.holder_collision.any()  # flutes 22 mm long
    ok, _ = run(Stock(CONFIG.stock), END_MILL, "G0 X50 Y40 Z5\nG1 Z-20 F300\nG0 Z50")
    assert not ok.collision.any()
    # Holder as wide as the cutter: plunging deeper than the flutes only lets the
    # holder follow into the cutter's own hole, but feeding sideways at that depth
    # drives it into the wall above the flutes.
    plunge, _ = run(Stock(CONFIG.stock), FACE_MILL, "G0 X50 Y40 Z5\nG1 Z-8 F300\nG0 Z50")
    assert not plunge.collision.any()
    side, _ = run(Stock(CONFIG.stock), FACE_MILL, "G0 X-30 Y40 Z5\nG1 Z-8 F300\nG1 X20\nG0 Z50")
    assert side.holder_collision.any()
    assert not side.rapid_collision.any()


def test_holder_beside_the_block_below_its_top() -> None:
    result, _ = run(Stock(CONFIG.stock), END_MILL, "G0 X-10 Y40 Z5\nG1 Z-30 F600\nG0 Z50")
    assert result.volume.sum() == 0.0
    assert result.holder_collision.any()  # holder radius 16 mm reaches over the edge


# --- edge cases -------------------------------------------------------------------


def test_moves_off_the_block_or_above_it_remove_nothing() -> None:
    stock = Stock(CONFIG.stock)
    result = stock.cut(np.array([[-50.0, -50.0, -10.0], [150.0, -50.0, -10.0]]), END_MILL)
    assert result.volume.sum() == 0.0
    assert stock.cut(np.empty((0, 3)), END_MILL).volume.shape == (0,)
    stock.reset_path()  # otherwise the next batch continues from (150, -50, -10), through the block
    above = stock.cut(np.array([[50.0, 40.0, 0.0], [60.0, 40.0, 0.0]]), END_MILL, rapid=True)
    assert not above.collision.any() and above.volume.sum() == 0.0
    assert stock.removed_volume == 0.0


def test_cut_through_the_bottom_stops_at_the_bottom() -> None:
    stock = Stock(CONFIG.stock)
    result = stock.cut(np.array([[50.0, 40.0, 5.0], [50.0, 40.0, -45.0]]), DRILL)
    assert stock.heights.min() == pytest.approx(-40.0)
    assert result.volume.sum() == pytest.approx(stock.removed_volume, rel=1e-9)
    assert result.holder_collision.any()  # 40 mm flutes, 45 mm deep


# --- properties -------------------------------------------------------------------

SMALL = StockConfig(size=(30.0, 20.0, 10.0), origin=(0.0, 0.0, -10.0), grid=0.25)
points = st.tuples(
    st.floats(-8, 38, allow_nan=False),
    st.floats(-8, 28, allow_nan=False),
    st.floats(-13, 2, allow_nan=False),
)


@settings(max_examples=50, deadline=None)
@given(
    tool_index=st.integers(0, 3),
    first=st.tuples(points, points, st.integers(2, 300)),
    second=st.tuples(points, points, st.integers(2, 300)),
    batch=st.integers(1, 400),
)
def test_random_straight_cuts(
    tool_index: int,
    first: tuple[tuple[float, ...], tuple[float, ...], int],
    second: tuple[tuple[float, ...], tuple[float, ...], int],
    batch: int,
) -> None:
    tool = CONFIG.tools[tool_index]
    shape = ToolShape.from_config(tool)
    stock = Stock(SMALL)
    for a, b, n in (first, second):  # the second cut meets a surface the first one left
        tips = np.linspace(a, b, n)
        before, volume_before = stock.heights.copy(), stock.volume()
        volumes = [stock.cut(tips[i : i + batch], tool).volume for i in range(0, n, batch)]
        volume = np.concatenate(volumes)
        assert (stock.heights <= before).all(), "the stock gained material"
        assert (volume >= 0).all()
        assert volume.sum() == pytest.approx(volume_before - stock.volume(), rel=1e-6, abs=1e-6)
        floor = np.maximum(envelope_lower_bound(stock, shape, a, b), SMALL.origin[2])
        floor = np.minimum(floor, before)  # cells the tool never reached keep their height
        assert (stock.heights >= floor - 1e-4).all(), "cut below the tool envelope"
        at_end = np.maximum(envelope_over(stock, shape, tips[-1:]), SMALL.origin[2])
        assert (stock.heights <= at_end + 1e-4).all(), "material left under the tool"
        stock.reset_path()


@settings(max_examples=40, deadline=None)
@given(
    tool_index=st.sampled_from([0, 3]),  # the flat cutters: T1 end mill, T4 face mill
    a=st.tuples(st.floats(-8, 38), st.floats(-8, 28)),
    b=st.tuples(st.floats(-8, 38), st.floats(-8, 28)),
    z=st.floats(-6, 1),
    n=st.integers(2, 400),
)
def test_flat_cutter_on_a_line_matches_the_general_cut(
    tool_index: int, a: tuple[float, float], b: tuple[float, float], z: float, n: int
) -> None:
    # A flat cutter along a straight line at one height takes a shortcut (no per-key
    # depth arrays); it must cut what the general path does, in the same order.
    tool = CONFIG.tools[tool_index]
    tips = np.linspace((*a, z), (*b, z), n)
    fast, general = Stock(SMALL), Stock(SMALL)
    fast_cut = fast.cut(tips, tool)
    original = stock_module._straight_line
    stock_module._straight_line = lambda xyz: None
    try:
        general_cut = general.cut(tips, tool)
    finally:
        stock_module._straight_line = original
    # cells right on the cutter's rim may fall either way (float32 vs float64 radius)
    differ = fast.heights != general.heights
    rim = max(1, int(4 * math.pi * tool.diameter / SMALL.grid))
    assert differ.sum() <= rim
    np.testing.assert_allclose(fast.heights[~differ], general.heights[~differ])
    depth = min(max(-z, 0.0), SMALL.size[2])  # the block's top is at Z0, its bottom at Z-10
    area = SMALL.grid**2 * depth  # one cell's volume
    slack = rim * area + 1e-6 * (1.0 + general.removed_volume)
    assert fast.removed_volume == pytest.approx(general.removed_volume, abs=slack)
    # removal in the same order along the path (first disc that covers a cell), so the
    # cumulative volumes agree sample by sample
    lag = np.abs(np.cumsum(fast_cut.volume) - np.cumsum(general_cut.volume))
    assert lag.max() <= slack


# --- mesh -------------------------------------------------------------------------


def mesh_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Enclosed volume by the divergence theorem (positive for outward normals)."""
    a, b, c = (vertices[faces[:, k]].astype(np.float64) for k in range(3))
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6)


def assert_closed(faces: np.ndarray) -> None:
    """Every edge is used exactly once in each direction: no holes, consistent winding."""
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]).astype(np.int64)
    n = int(faces.max()) + 1
    forward = np.sort(edges[:, 0] * n + edges[:, 1])
    backward = np.sort(edges[:, 1] * n + edges[:, 0])
    assert (np.diff(forward) > 0).all(), "an edge is used twice in the same direction"
    np.testing.assert_array_equal(forward, backward, err_msg="the mesh has a hole")


@pytest.mark.parametrize("step", [1, 3])
def test_mesh_is_closed_and_holds_the_part(step: int) -> None:
    stock = Stock(CONFIG.stock)
    vertices, faces = stock.mesh(step)
    assert vertices.dtype == np.float32 and faces.dtype == np.int32
    assert_closed(faces)
    assert mesh_volume(vertices, faces) == pytest.approx(100 * 80 * 40, rel=1e-6)
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    np.testing.assert_allclose([*lo, *hi], [0, 0, -40, 100, 80, 0])
    run(stock, END_MILL, pocket_program())
    vertices, faces = stock.mesh(step)
    assert_closed(faces)
    assert vertices[vertices[:, 2] > -40, 2].min() == pytest.approx(-5.0)
    if step == 1:
        assert mesh_volume(vertices, faces) == pytest.approx(stock.volume(), rel=0.005)
