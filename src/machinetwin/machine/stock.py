"""The workpiece: material removal on a Z height field (one dexel per XY cell).

``Stock`` keeps, for every cell of a regular grid over the block's XY footprint, the
work-coordinate Z of the top of the material above that cell's centre. A cut lowers
every cell under the tool to the tool's lower envelope along the swept path and
reports, per servo sample, the removed volume (so the removal rate is
``volume / dt``), estimates of the axial depth ``ap`` and radial engagement ``ae``
that the cutting-force model needs, and collisions (material hit by a rapid, or by
the shank/holder above the flutes).

Technique, chosen for speed (the simulation must run hundreds of times faster than
real time in numpy):

* The path is not evaluated at every 1 kHz sample. It is re-sampled by arc length at
  *key* positions spaced so that the scallop left between two keys is below 1 % of a
  cell: slow moves (most of a program) are decimated, fast moves are sub-sampled so
  that no ridges are left. Segments entirely above the material are skipped.
* Keys are processed in groups spanning about three tool radii of travel (fewer,
  larger numpy calls; measured best). A group is one dense float32 ``(keys, cells)``
  array over the part of its swept box that still holds material above the tool: the
  depth each key would cut at every cell (NaN outside the cutter), then a running
  maximum over the keys. The growth between consecutive rows is exactly what each key
  removed, so removal is attributed in path order with no loop per sample.
* A flat cutter whose keys lie on one straight line at one height (facing, roughing
  rows) needs no such array: it cuts a cell to its height at the first key whose disc
  covers it, found for all cells at once by a search along the line; its groups are
  long.
* A coarse map of the highest material per tile of 8 x 8 cells (refreshed once per
  run of keys; between refreshes it is only ever too high, which is safe) skips air
  cuts and holder checks without reading the cells, and moves above the highest
  material left are not cut at all.
* Keys also sit at path corners and where G0 turns into G1, so decimation neither
  rounds a corner nor blames a rapid for a feed's volume.
* Each key's volume is spread over the samples it stands for in proportion to the
  path length they travelled (piecewise-linear cumulative volume, ``np.interp``), so
  the removal rate is smooth rather than a staircase of whole cells.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .config import StockConfig, ToolConfig

__all__ = ["CutResult", "Stock", "StockState", "ToolShape"]

DRILL_POINT_ANGLE = 118.0  # degrees, standard twist-drill point
RIDGE_TOLERANCE = 0.04  # allowed scallop between key positions, as a fraction of a cell
GROUP_TRAVEL = 3.0  # travel per group of keys, in tool radii: trades block size for call count
MAX_GROUP_CELLS = 4_000_000  # bounds one group's (keys x cells) work array
CORNER_ANGLE = math.radians(5.0)  # turning of the path that earns a key of its own
ENGAGED_VOLUME = 1e-9  # mm^3: less than this is rounding, not a cut
TILE = 8  # cells per side of a tile of the coarse height map
FLAT_GROUP_TRAVEL = 24.0  # a flat cutter's groups, in tool radii (straight ones are cheap)
STRAIGHT_TOLERANCE = 1e-6  # mm: keys this close to a line are on it (flat-cutter fast path)

Floats = NDArray[np.float64]
Bools = NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class ToolShape:
    """The cutting envelope of a tool: height above the tip as a function of radius."""

    kind: str
    radius: float
    flute_length: float
    holder_radius: float

    @classmethod
    def from_config(cls, tool: ToolConfig) -> ToolShape:
        # The holder is never narrower than the cutter it carries.
        radius = tool.diameter / 2
        return cls(tool.kind, radius, tool.flute_length, max(tool.holder_diameter / 2, radius))

    def lift(self, r2: NDArray[np.floating]) -> NDArray[np.floating]:
        """Height of the cutting envelope above the tip at squared radius ``r2``; inf outside."""
        inside = r2 <= self.radius * self.radius
        if self.kind == "flat":
            lift = np.zeros_like(r2)
        elif self.kind == "ball":
            lift = self.radius - np.sqrt(np.maximum(self.radius * self.radius - r2, 0))
        else:  # drill: a cone of 118 degrees included angle
            lift = np.sqrt(r2) / math.tan(math.radians(DRILL_POINT_ANGLE / 2))
        return np.where(inside, lift, np.inf).astype(r2.dtype, copy=False)


@dataclass(frozen=True, slots=True)
class CutResult:
    """What one batch of samples did to the stock; every array has one entry per sample."""

    volume: Floats  # mm^3 removed during the sample (MRR = volume / dt)
    ap: Floats  # mm, axial depth of cut
    ae: Floats  # mm, radial engagement (width of cut across the feed direction)
    rapid_collision: Bools  # material removed by a rapid (G0) move
    holder_collision: Bools  # material above the flutes within the holder/shank radius
    diameter: float  # of the tool, so that the engagement angle can be derived

    @property
    def collision(self) -> Bools:
        return self.rapid_collision | self.holder_collision

    @property
    def engagement_angle(self) -> Floats:
        """Radians the cutter is engaged per turn, from ae (pi for a full slot)."""
        ratio = np.clip(self.ae / self.diameter, 0.0, 1.0)
        return np.arccos(1.0 - 2.0 * ratio)

    def mrr(self, dt: float) -> Floats:
        """Material removal rate in mm^3/s for samples ``dt`` seconds apart."""
        return self.volume / dt

    @classmethod
    def idle(cls, n: int, diameter: float) -> CutResult:
        zeros = np.zeros(n)
        flags = np.zeros(n, dtype=bool)
        return cls(zeros, zeros.copy(), zeros.copy(), flags, flags.copy(), diameter)


@dataclass(frozen=True, slots=True)
class StockState:
    """What :meth:`Stock.restore` needs to undo the cuts made since :meth:`Stock.checkpoint`."""

    revision: int
    heights: NDArray[np.float32]
    last_tip: Floats | None
    last_tool: ToolConfig | None


class Stock:
    """A rectangular block of material as a height field over a regular XY grid."""

    def __init__(self, config: StockConfig) -> None:
        self.config = config
        self.grid = float(config.grid)
        self.origin = np.asarray(config.origin, dtype=np.float64)
        self.size = np.asarray(config.size, dtype=np.float64)
        self.nx = max(1, round(self.size[0] / self.grid))
        self.ny = max(1, round(self.size[1] / self.grid))
        self.bottom = float(self.origin[2])
        self.top = float(self.origin[2] + self.size[2])
        # float32 halves the memory traffic of the dense group arrays; volumes are
        # summed in float64 so that bookkeeping stays exact to rounding.
        self.heights = np.full((self.nx, self.ny), self.top, dtype=np.float32)
        self.initial_volume = self.volume()
        self._last_tip: Floats | None = None
        self._last_tool: ToolConfig | None = None
        self.revision = 0  # counts the changes of ``heights``
        # highest material per tile: skips air cuts and far holders without the cells
        self._tiles = np.full((-(-self.nx // TILE), -(-self.ny // TILE)), self.top, np.float32)
        self._zero_buffer = np.zeros(0, np.float32)
        self._cx32, self._cy32 = self.x.astype(np.float32), self.y.astype(np.float32)

    # --- queries -------------------------------------------------------------------

    @property
    def cell_area(self) -> float:
        return self.grid * self.grid

    @property
    def x(self) -> Floats:
        """Work X of the cell centres along the first axis of ``heights``."""
        return self.origin[0] + (np.arange(self.nx) + 0.5) * self.grid

    @property
    def y(self) -> Floats:
        return self.origin[1] + (np.arange(self.ny) + 0.5) * self.grid

    def volume(self) -> float:
        """Material left, mm^3."""
        return float(np.sum(self.heights, dtype=np.float64) - self.bottom * self.heights.size) * (
            self.cell_area
        )

    @property
    def removed_volume(self) -> float:
        return self.initial_volume - self.volume()

    def height_at(self, x: ArrayLike, y: ArrayLike) -> Floats:
        """Top of material at work (x, y) (the cell containing it); NaN off the block."""
        x, y = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
        i = np.floor((x - self.origin[0]) / self.grid).astype(np.intp)
        j = np.floor((y - self.origin[1]) / self.grid).astype(np.intp)
        inside = (i >= 0) & (i < self.nx) & (j >= 0) & (j < self.ny)
        out = np.full(x.shape, np.nan)
        out[inside] = self.heights[i[inside], j[inside]]
        return out

    # --- cutting -------------------------------------------------------------------

    def checkpoint(self) -> StockState:
        """The current material and tool path, to go back to with :meth:`restore`."""
        return StockState(self.revision, self.heights.copy(), self._last_tip, self._last_tool)

    def restore(self, state: StockState) -> None:
        """Go back to a checkpoint (e.g. to cut only up to the tick an alarm stopped at)."""
        self.heights[...] = state.heights
        self._refresh_tiles()
        self._last_tip, self._last_tool = state.last_tip, state.last_tool
        self.revision = state.revision

    def reset_path(self) -> None:
        """Forget where the tool was: the next batch does not continue the previous one."""
        self._last_tip = None
        self._last_tool = None

    def cut(self, tips: ArrayLike, tool: ToolConfig, rapid: ArrayLike = False) -> CutResult:
        """Move the tool tip through ``tips`` ((n, 3) work mm, one row per sample).

        The path continues from the previous batch's last tip when the tool is the
        same, so batches of any size give the same result (call ``reset_path`` when
        the tool jumped). ``rapid`` is a flag or one bool per sample (G0 moves).
        Prefer batches of a few hundred samples or more: the fixed cost of a call is
        ~0.2 ms.
        """
        tips = np.asarray(tips, dtype=np.float64).reshape(-1, 3)
        n = len(tips)
        shape = ToolShape.from_config(tool)
        rapid_flags = np.broadcast_to(np.asarray(rapid, dtype=bool), (n,))
        if n == 0:
            return CutResult.idle(0, tool.diameter)
        same = self._last_tool is tool or self._last_tool == tool  # `is`: no model compare
        start = self._last_tip if same else None
        self._last_tip, self._last_tool = tips[-1].copy(), tool
        # Quick exit for the common case: the whole batch is above the material.
        zmin = tips[:, 2].min() if start is None else min(tips[:, 2].min(), start[2])
        if zmin >= self._peak():
            return CutResult.idle(n, tool.diameter)
        return self._cut_path(tips, start, shape, rapid_flags, tool.diameter)

    def _cut_path(
        self, tips: Floats, start: Floats | None, shape: ToolShape, rapid: Bools, diameter: float
    ) -> CutResult:
        n = len(tips)
        path = np.empty((n + 1, 3))
        path[0] = tips[0] if start is None else start
        path[1:] = tips
        step = path[1:] - path[:-1]
        length = np.sqrt(np.einsum("ij,ij->i", step, step))
        arc = np.zeros(n + 1)
        np.cumsum(length, out=arc[1:])
        result = CutResult.idle(n, diameter)
        runs = _runs(self._segments_near_material(path, shape))
        if not runs:
            return result
        # Vertices that must be keys: corners (decimation would cut them) and G0/G1
        # switches (a rapid must not be blamed for the volume of the feed next to it).
        corners = _turns(step, length, CORNER_ANGLE)
        switches = 1 + np.flatnonzero(rapid[1:] != rapid[:-1])
        vertices = np.union1d(corners, switches) if len(switches) else corners
        for first, stop in runs:
            fresh = start is None and first == 0
            self._cut_run(path, arc, vertices, first, stop, shape, fresh, result)
        result.rapid_collision[:] = rapid & (result.volume > ENGAGED_VOLUME)
        return result

    def _segments_near_material(self, path: Floats, shape: ToolShape) -> Bools:
        """Segments that can touch material: some part below the top and near the block."""
        z = path[:, 2]
        low = np.minimum(z[:-1], z[1:])
        top = self._peak()  # the highest material left, not the blank's top
        near = low < top
        # The holder reaches further than the cutter, but only below the flutes' top.
        reach = shape.holder_radius if low.min() + shape.flute_length < top else shape.radius
        corner, far = self.origin[:2] - reach, self.origin[:2] + self.size[:2] + reach
        xy = path[:, :2]
        if (xy.min(axis=0) > corner).all() and (xy.max(axis=0) < far).all():
            return near  # the whole batch is over the block: only height matters
        # Box test per segment: one whose ends are both off the block may still cross it.
        lo, hi = np.minimum(xy[:-1], xy[1:]), np.maximum(xy[:-1], xy[1:])
        return near & ((hi > corner) & (lo < far)).all(axis=1)

    def _cut_run(
        self,
        path: Floats,
        arc: Floats,
        vertices: NDArray[np.intp],
        first: int,
        stop: int,
        shape: ToolShape,
        fresh: bool,
        out: CutResult,
    ) -> None:
        """Cut along samples ``first:stop`` (all near material) and fill their results.

        ``fresh``: the tool appears at the run's start (no earlier position known), so
        what it removes there belongs to the first sample.
        """
        t0, t1 = arc[first], arc[stop]
        if t1 <= t0 and not fresh:
            return  # standing still where it already stood: nothing new to remove
        t = self._key_arcs(arc, vertices, first, stop, self._key_spacing(shape))
        if fresh:
            t = np.concatenate([[t0], t[t > t0]])
        xyz = _point_at(path, arc, first, stop, t)
        before = np.vstack([path[first : first + 1], xyz[:-1]])
        advance = np.hypot(xyz[:, 0] - before[:, 0], xyz[:, 1] - before[:, 1])
        volume, ap, holder = self._remove(xyz, shape)
        ae = _radial_engagement(volume, ap, advance, shape)
        # Cumulative volume is piecewise linear in arc length between knots; each
        # sample gets the increase over its own stretch of path.
        bounds = arc[first : stop + 1].copy()
        cumulative = np.cumsum(volume)
        if fresh:
            bounds[0] = t0 - 1.0
            knots, values = t, cumulative
        else:
            knots, values = np.concatenate([[t0], t]), np.concatenate([[0.0], cumulative])
        at_bounds = np.interp(bounds, knots, values, left=0.0)
        out.volume[first:stop] = np.maximum(at_bounds[1:] - at_bounds[:-1], 0.0)
        # ap and ae of a sample: those of the key that closes its stretch of path.
        ends = bounds[1:]
        cover = np.minimum(np.searchsorted(t, ends, side="left"), len(t) - 1)
        out.ap[first:stop] = ap[cover]
        out.ae[first:stop] = ae[cover]
        # A holder hit anywhere within a sample's stretch (or at its closing key) flags it.
        hits = np.concatenate([[0], np.cumsum(holder)])
        opened = np.searchsorted(t, bounds[:-1], side="right")
        out.holder_collision[first:stop] = hits[cover + 1] > hits[opened]

    @staticmethod
    def _key_arcs(
        arc: Floats, vertices: NDArray[np.intp], first: int, stop: int, spacing: float
    ) -> Floats:
        """Arc lengths of a run's keys: every ``spacing``, at its end and at its vertices."""
        t0, t1 = arc[first], arc[stop]
        k0, k1 = math.floor(t0 / spacing) + 1, math.floor(t1 / spacing) + 1
        t = np.arange(k0, max(k0, k1)) * spacing
        t = np.append(t[(t > t0) & (t < t1)], t1)
        lo, hi = np.searchsorted(vertices, [first + 1, stop])
        if hi > lo:
            t = np.union1d(t, arc[vertices[lo:hi]])
        return t

    def _key_spacing(self, shape: ToolShape) -> float:
        # A disc or sphere of radius R stepped by s leaves a cusp s^2 / (8 R) high.
        cusp = RIDGE_TOLERANCE * self.grid
        spacing = math.sqrt(8.0 * shape.radius * cusp)
        return min(max(spacing, 0.5 * self.grid), 4.0 * self.grid)

    def _remove(self, xyz: Floats, shape: ToolShape) -> tuple[Floats, Floats, Bools]:
        """Cut at every key, in path order, one group of nearby keys at a time."""
        k = len(xyz)
        volume, ap = np.zeros(k), np.zeros(k)
        holder = np.zeros(k, dtype=bool)
        # A flat cutter on a straight line needs no (keys, cells) array: long groups pay
        # (_cut_flat_line); others are split again to GROUP_TRAVEL in _cut_group.
        travel = FLAT_GROUP_TRAVEL if shape.kind == "flat" else GROUP_TRAVEL
        groups = self._groups(xyz, shape, travel)
        # Every group's extent at once (one numpy call each, not four per group).
        starts = np.array([lo for lo, _ in groups])
        lows = np.minimum.reduceat(xyz, starts, axis=0).tolist()
        highs = np.maximum.reduceat(xyz, starts, axis=0).tolist()
        flute_tops = [low[2] + shape.flute_length for low in lows]
        # sqrt of a negative radicand marks cells outside the cutter: NaN, dropped
        with np.errstate(invalid="ignore"):
            for (lo, hi), low, high, flute_top in zip(groups, lows, highs, flute_tops, strict=True):
                keys = xyz[lo:hi]
                # Before the cut: a flute that removes a column taller than itself hits too.
                if self._holder_near(low, high, flute_top, shape):
                    holder[lo:hi] = self._holder_hits(keys, shape)
                volume[lo:hi], ap[lo:hi] = self._cut_group(keys, low, high, shape)
        if volume.any():
            # once per run, not per group: until then the tiles are only too high
            low, high = xyz.min(axis=0) - shape.radius, xyz.max(axis=0) + shape.radius
            block = self._block(low, high)
            if block is not None:
                self._refresh_tiles(block)
        return volume, ap, holder

    def _groups(
        self, xyz: Floats, shape: ToolShape, travel: float = GROUP_TRAVEL
    ) -> list[tuple[int, int]]:
        """Split the keys into runs spanning about ``travel`` tool radii each."""
        k = len(xyz)
        reach = travel * max(shape.radius, self.grid)
        cells = 3.0 * (2.0 * shape.radius / self.grid + 2.0) ** 2
        max_keys = max(1, int(MAX_GROUP_CELLS // cells))
        span = np.ptp(xyz, axis=0) if k > 1 else np.zeros(3)
        if k <= max_keys and float(np.max(span)) <= reach:
            return [(0, k)]  # the common case for a short batch
        step = xyz[1:] - xyz[:-1]
        travel = np.concatenate([[0.0], np.cumsum(np.sqrt(np.einsum("ij,ij->i", step, step)))])
        group = np.floor(travel / reach).astype(np.int64) * (k + 1) + np.arange(k) // max_keys
        bounds = np.concatenate([[0], np.flatnonzero(group[1:] != group[:-1]) + 1, [k]])
        return list(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True))

    def _block(self, xy_lo: Sequence[float], xy_hi: Sequence[float]) -> tuple[slice, slice] | None:
        """Cells whose centres lie in the rectangle, or None when it misses the block."""
        g = self.grid
        i0 = max(0, math.ceil((xy_lo[0] - self.origin[0]) / g - 0.5))
        i1 = min(self.nx, math.floor((xy_hi[0] - self.origin[0]) / g - 0.5) + 1)
        j0 = max(0, math.ceil((xy_lo[1] - self.origin[1]) / g - 0.5))
        j1 = min(self.ny, math.floor((xy_hi[1] - self.origin[1]) / g - 0.5) + 1)
        if i1 <= i0 or j1 <= j0:
            return None
        return slice(i0, i1), slice(j0, j1)

    def _cut_group(
        self, xyz: Floats, low: list[float], high: list[float], shape: ToolShape
    ) -> tuple[Floats, Floats]:
        """Volume and ap of each key of one group, in path order; updates the heights.

        ``low`` and ``high`` are the corners of the keys' bounding box.
        """
        k = len(xyz)
        r = shape.radius
        z = xyz[:, 2]
        block = self._block((low[0] - r, low[1] - r), (high[0] + r, high[1] + r))
        floor = max(low[2], self.bottom)
        if block is not None:
            block = self._crop_to_material(block, floor)
        if block is None:  # off the block, or everything here is already below the tool
            return np.zeros(k), np.zeros(k)
        before = self.heights[block]
        if shape.kind == "flat" and k > 1:
            line = _straight_line(xyz) if low[2] == high[2] else None
            if line is not None:
                return self._cut_flat_line(xyz, line, shape, block, before, floor)
            parts = self._groups(xyz, shape)
            if len(parts) > 1:  # a long group that is not straight: the usual sizes
                return self._cut_parts(xyz, parts, shape)
        depth = self._cut_depths(xyz, shape, block, before)
        # Running maximum over the keys: row k becomes the depth removed by keys 0..k.
        # A loop over the (few) keys of a group: numpy's accumulate along axis 0 is
        # an order of magnitude slower than one vectorised row operation per key.
        # Row 0 is clamped at zero (NaN, outside the cutter, too); fmax then carries
        # that floor on and drops the NaN of later rows.
        np.fmax(depth[0], self._zeros(depth.shape[1:]), out=depth[0])
        for row in range(1, k):
            np.fmax(depth[row - 1], depth[row], out=depth[row])
        last = depth[-1]
        after = before - last
        cumulative = depth.reshape(k, -1).sum(axis=1).astype(np.float64)
        # float32 sums carry ~1e-7 relative noise; scale them to the exact drop of the
        # stored heights so that per-sample volumes add up to the stock's volume change.
        total = float(before.sum(dtype=np.float64) - after.sum(dtype=np.float64))
        np.maximum.accumulate(cumulative, out=cumulative)
        if cumulative[-1] > 0:
            cumulative *= total / cumulative[-1]
        else:
            cumulative[-1] = total
        volume = np.empty(k)
        volume[0] = cumulative[0]
        np.subtract(cumulative[1:], cumulative[:-1], out=volume[1:])
        volume *= self.cell_area
        # the highest material the group removed anything from: the top of the cut
        removed = before[last > 0]
        top = float(removed.max()) if len(removed) else floor
        ap = np.where(volume > ENGAGED_VOLUME, np.maximum(top - z, 0.0), 0.0)
        self.heights[block] = after
        self.revision += 1
        return volume, ap

    def _cut_parts(
        self, xyz: Floats, parts: list[tuple[int, int]], shape: ToolShape
    ) -> tuple[Floats, Floats]:
        volume, ap = np.zeros(len(xyz)), np.zeros(len(xyz))
        for lo, hi in parts:
            keys = xyz[lo:hi]
            low, high = keys.min(axis=0).tolist(), keys.max(axis=0).tolist()
            volume[lo:hi], ap[lo:hi] = self._cut_group(keys, low, high, shape)
        return volume, ap

    def _cut_flat_line(
        self,
        xyz: Floats,
        line: tuple[Floats, Floats, Floats],
        shape: ToolShape,
        block: tuple[slice, slice],
        before: NDArray[np.float32],
        floor: float,
    ) -> tuple[Floats, Floats]:
        """:meth:`_cut_group` for a flat end mill whose keys lie on one straight line at
        one height (facing and roughing rows): no (keys, cells) array at all.

        A flat cutter at a fixed height cuts a cell to that height at once, at the first
        key whose disc covers it. Along a line with keys at ``s`` that is the first key
        with ``s >= u - w`` (``u`` the cell's position along the line, ``w`` the half
        chord of the disc at its distance ``v`` across), if that key is within ``u + w``.
        """
        k = len(xyz)
        origin, direction, s = line
        ex = self.x[block[0]][:, None] - origin[0]
        ey = self.y[block[1]][None, :] - origin[1]
        u = ex * direction[0] + ey * direction[1]
        v = ey * direction[0] - ex * direction[1]
        half = shape.radius * shape.radius - v * v
        np.sqrt(half, out=half)  # NaN beyond the radius: no key covers the cell
        first = np.searchsorted(s, u - half)
        reach = s[np.minimum(first, k - 1)]
        covered = (first < k) & (reach <= u + half)
        depth = np.where(covered, before - np.float32(floor), np.float32(0))
        np.maximum(depth, self._zeros(depth.shape), out=depth)
        after = before - depth
        cut = depth > 0
        weights = depth[cut].astype(np.float64)
        per_key = np.bincount(first[cut], weights=weights, minlength=k)[:k]
        # as in _cut_group: per-key volumes scaled to the exact drop of the stored heights
        total = float(before.sum(dtype=np.float64) - after.sum(dtype=np.float64))
        removed = float(per_key.sum())
        volume = per_key * (total / removed if removed > 0 else 0.0) * self.cell_area
        top = float(before[cut].max()) if weights.size else floor
        ap = np.where(volume > ENGAGED_VOLUME, max(top - xyz[0, 2], 0.0), 0.0)
        self.heights[block] = after
        self.revision += 1
        return volume, ap

    def _zeros(self, shape: tuple[int, ...]) -> NDArray[np.float32]:
        """A read-only float32 zero array of ``shape`` (numpy's max against an array
        is several times faster than against a scalar)."""
        size = shape[0] * shape[1]
        if len(self._zero_buffer) < size:
            self._zero_buffer = np.zeros(2 * size, np.float32)
        return self._zero_buffer[:size].reshape(shape)

    def _crop_to_material(
        self, block: tuple[slice, slice], floor: float
    ) -> tuple[slice, slice] | None:
        """The part of the block holding material above ``floor``; None if there is none."""
        if self._tile_max(block) <= floor:  # the coarse map settles most air cuts
            return None
        live = self.heights[block] > floor
        rows = np.flatnonzero(live.any(axis=1))
        if len(rows) == 0:
            return None
        cols = np.flatnonzero(live.any(axis=0))
        i0, j0 = block[0].start, block[1].start
        return slice(i0 + rows[0], i0 + rows[-1] + 1), slice(j0 + cols[0], j0 + cols[-1] + 1)

    def _cut_depths(
        self, xyz: Floats, shape: ToolShape, block: tuple[slice, slice], before: NDArray
    ) -> NDArray[np.float32]:
        """(keys, bx, by) depth each key alone would remove below ``before``.

        Cells outside the cutter come out as NaN (square root of a negative radicand,
        under the caller's errstate); the caller clamps at zero, which drops them.
        Everything in float32 and in as few passes over the array as possible.
        """
        cx, cy = self._cx32[block[0]], self._cy32[block[1]]
        keys = xyz.astype(np.float32)
        dx2 = np.square(cx[None, :] - keys[:, :1])
        dy2 = np.square(cy[None, :] - keys[:, 1:2])
        # R^2 - r^2 as one broadcast subtraction, its root NaN outside the radius
        q = np.subtract((np.float32(shape.radius**2) - dx2)[:, :, None], dy2[:, None, :])
        np.sqrt(q, out=q)
        if shape.kind == "flat":
            # lift 0 inside, NaN outside: depth = top - tip
            q -= q
            base = keys[:, 2]
        elif shape.kind == "ball":
            # lift = R - sqrt(R^2 - r^2): depth = top - (tip + R) + sqrt(R^2 - r^2)
            base = keys[:, 2] + np.float32(shape.radius)
        else:  # drill cone: lift = r / tan(half angle) = (R - sqrt(...)) ... from r itself
            r = np.sqrt(np.add(dx2[:, :, None], dy2[:, None, :]))
            q -= q
            q -= r * np.float32(1.0 / math.tan(math.radians(DRILL_POINT_ANGLE / 2)))
            base = keys[:, 2]
        q += before[None]
        q -= base[:, None, None]
        if float(keys[:, 2].min()) < self.bottom:  # a cut through the bottom stops there
            # (np.minimum keeps the NaN outside the cutter; fmin would fill it in)
            np.minimum(q, before - np.float32(self.bottom), out=q)
        return q

    def _holder_near(
        self, low: list[float], high: list[float], flute_top: float, shape: ToolShape
    ) -> bool:
        """Whether material within the holder's reach of the keys' box rises above the
        lowest flute top (the tiles tell cheaply; the cells settle it)."""
        reach = shape.holder_radius
        block = self._block((low[0] - reach, low[1] - reach), (high[0] + reach, high[1] + reach))
        return (
            block is not None
            and self._tile_max(block) > flute_top
            and float(self.heights[block].max()) > flute_top
        )

    def _holder_hits(self, xyz: Floats, shape: ToolShape) -> Bools:
        """Keys whose shank/holder (above the flutes) meets material."""
        k = len(xyz)
        reach = shape.holder_radius
        clearance = xyz[:, 2] + shape.flute_length
        lo, hi = xyz[:, :2].min(axis=0) - reach, xyz[:, :2].max(axis=0) + reach
        block = self._block(lo, hi)
        if block is None:
            return np.zeros(k, dtype=bool)
        heights = self.heights[block]
        cx, cy = self.x[block[0]], self.y[block[1]]
        r2 = (cx[None, :, None] - xyz[:, 0, None, None]) ** 2 + (
            cy[None, None, :] - xyz[:, 1, None, None]
        ) ** 2
        under = r2 <= reach * reach
        high = heights[None] > clearance[:, None, None]
        return (under & high).reshape(k, -1).any(axis=1)

    # --- the coarse map: highest material per tile of TILE x TILE cells ---------------

    def _peak(self) -> float:
        """An upper bound of the highest material left (the highest tile)."""
        return float(self._tiles.max())

    def _tile_max(self, block: tuple[slice, slice]) -> float:
        """An upper bound of the material's top over ``block`` (from the tiles it touches)."""
        t = TILE
        i, j = block
        return float(
            self._tiles[i.start // t : -(-i.stop // t), j.start // t : -(-j.stop // t)].max()
        )

    def _refresh_tiles(self, block: tuple[slice, slice] | None = None) -> None:
        """Recompute the tiles that ``block`` touches (all of them when None)."""
        t = TILE
        if block is None:
            block = (slice(0, self.nx), slice(0, self.ny))
        if block[0].stop <= block[0].start or block[1].stop <= block[1].start:
            return
        i0, i1 = block[0].start // t, -(-block[0].stop // t)
        j0, j1 = block[1].start // t, -(-block[1].stop // t)
        cells = self.heights[i0 * t : min(i1 * t, self.nx), j0 * t : min(j1 * t, self.ny)]
        rows = np.maximum.reduceat(cells, np.arange(0, cells.shape[0], t), axis=0)
        self._tiles[i0:i1, j0:j1] = np.maximum.reduceat(
            rows, np.arange(0, cells.shape[1], t), axis=1
        )

    # --- display -------------------------------------------------------------------

    def mesh(self, step: int = 1) -> tuple[NDArray[np.float32], NDArray[np.int32]]:
        """A closed triangle mesh of the part (top, four sides, bottom), outward normals.

        ``step`` > 1 coarsens the top surface for display; each coarse vertex takes the
        lowest height of its cells so that narrow slots and holes stay visible.
        """
        top = _min_pool(self.heights, max(1, int(step)))
        mx, my = top.shape
        xs = _vertex_positions(self.origin[0], self.size[0], mx)
        ys = _vertex_positions(self.origin[1], self.size[1], my)
        gx, gy = np.meshgrid(xs, ys, indexing="ij")
        top_vertices = np.column_stack([gx.ravel(), gy.ravel(), top.ravel()])
        ring = _boundary_ring(mx, my)
        bottom_ring = np.column_stack(
            [gx.ravel()[ring], gy.ravel()[ring], np.full(len(ring), self.bottom)]
        )
        centre = [
            [self.origin[0] + self.size[0] / 2, self.origin[1] + self.size[1] / 2, self.bottom]
        ]
        vertices = np.vstack([top_vertices, bottom_ring, centre]).astype(np.float32)
        faces = np.vstack(
            [
                _grid_faces(mx, my),
                _wall_faces(ring, mx * my),
                _fan_faces(len(ring), mx * my, len(vertices) - 1),
            ]
        ).astype(np.int32)
        return vertices, faces


# --- path sampling helpers --------------------------------------------------------


def _runs(active: Bools) -> list[tuple[int, int]]:
    """(first, stop) of each stretch of consecutive True values."""
    flags = np.concatenate([[False], active, [False]])
    edges = np.flatnonzero(flags[1:] != flags[:-1])
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def _turns(step: Floats, length: Floats, angle: float) -> NDArray[np.intp]:
    """Path vertices where the cumulative turning passes a multiple of ``angle``.

    Vertex v joins segments v-1 and v.
    """
    moving = length > 1e-9
    if np.count_nonzero(moving) < 2:
        return np.zeros(0, dtype=np.intp)
    # Standing still (a dwell at a corner) has no direction: carry the last one forward.
    last = np.maximum.accumulate(np.where(moving, np.arange(len(step)), 0))
    direction = step[last] / np.where(moving[last], length[last], 1.0)[:, None]
    cos = np.einsum("ij,ij->i", direction[:-1], direction[1:])
    turning = np.cumsum(np.arccos(np.minimum(np.maximum(cos, -1.0), 1.0))) / angle
    return 1 + np.flatnonzero(np.floor(turning) > np.floor(np.concatenate([[0.0], turning[:-1]])))


def _straight_line(xyz: Floats) -> tuple[Floats, Floats, Floats] | None:
    """(origin, unit direction, position along it of each key) when the keys' XY lie
    on one straight line in order (within STRAIGHT_TOLERANCE); else None."""
    origin = xyz[0, :2]
    chord = xyz[-1, :2] - origin
    length = math.hypot(chord[0], chord[1])
    if length < 1e-9:
        return None
    direction = chord / length
    rel = xyz[:, :2] - origin
    along = rel @ direction
    across = rel[:, 1] * direction[0] - rel[:, 0] * direction[1]
    if np.abs(across).max() > STRAIGHT_TOLERANCE or (np.diff(along) < 0).any():
        return None
    return origin, direction, along


def _point_at(path: Floats, arc: Floats, first: int, stop: int, t: Floats) -> Floats:
    """Points at arc lengths ``t`` along segments ``first:stop`` of the path."""
    seg = np.minimum(np.maximum(np.searchsorted(arc, t, side="left") - 1, first), stop - 1)
    length = arc[seg + 1] - arc[seg]
    fraction = np.divide(t - arc[seg], length, out=np.zeros_like(t), where=length > 0)
    fraction = np.minimum(np.maximum(fraction, 0.0), 1.0)[:, None]
    return path[seg] + fraction * (path[seg + 1] - path[seg])


def _radial_engagement(volume: Floats, ap: Floats, advance: Floats, shape: ToolShape) -> Floats:
    """ae from a key's volume: a cut ``ap`` deep and ``ae`` wide swept over its advance."""
    diameter = 2 * shape.radius
    moving = (advance > 1e-6) & (ap > 0)
    area = np.divide(volume, ap, out=np.zeros_like(volume), where=ap > 0)
    swept = np.divide(area, advance, out=np.zeros_like(area), where=moving)
    plunge = ~moving & (volume > ENGAGED_VOLUME)  # no sideways motion: the whole cutter works
    return np.clip(np.where(plunge, diameter, swept), 0.0, diameter)


# --- mesh helpers -----------------------------------------------------------------


def _min_pool(heights: NDArray, step: int) -> NDArray:
    if step == 1:
        return heights
    nx, ny = heights.shape
    px, py = -nx % step, -ny % step
    padded = np.pad(heights, ((0, px), (0, py)), mode="edge")
    return padded.reshape(padded.shape[0] // step, step, -1, step).min(axis=(1, 3))


def _vertex_positions(start: float, length: float, count: int) -> Floats:
    """Evenly spaced vertices whose ends lie on the block's faces."""
    if count == 1:
        return np.array([start + length / 2])
    return np.linspace(start, start + length, count)


def _boundary_ring(mx: int, my: int) -> NDArray[np.intp]:
    """Grid indices (i * my + j) around the boundary, counter-clockwise seen from +Z."""
    i = np.concatenate(
        [np.arange(mx), np.full(my - 1, mx - 1), np.arange(mx - 2, -1, -1), np.zeros(my - 2, int)]
    )
    j = np.concatenate(
        [np.zeros(mx, int), np.arange(1, my), np.full(mx - 1, my - 1), np.arange(my - 2, 0, -1)]
    )
    return i * my + j


def _grid_faces(mx: int, my: int) -> NDArray[np.int64]:
    index = np.arange(mx * my).reshape(mx, my)
    a, b = index[:-1, :-1].ravel(), index[1:, :-1].ravel()
    c, d = index[1:, 1:].ravel(), index[:-1, 1:].ravel()
    return np.concatenate([np.column_stack([a, b, c]), np.column_stack([a, c, d])])


def _wall_faces(ring: NDArray[np.intp], bottom_offset: int) -> NDArray[np.int64]:
    top_a, top_b = ring, np.roll(ring, -1)
    bot_a = bottom_offset + np.arange(len(ring))
    bot_b = np.roll(bot_a, -1)
    return np.concatenate(
        [np.column_stack([top_a, bot_a, bot_b]), np.column_stack([top_a, bot_b, top_b])]
    )


def _fan_faces(n: int, bottom_offset: int, centre: int) -> NDArray[np.int64]:
    a = bottom_offset + np.arange(n)
    b = np.roll(a, -1)
    return np.column_stack([np.full(n, centre), b, a])
