"""What the machine page draws, computed on the hub: toolpath, stock, spectrum, program.

Pure functions and small classes over numpy arrays, so that they are tested without a
browser and run in a worker thread (never on the event loop that serves the pages).

- :func:`toolpath` interprets the loaded program with the G-code interpreter, in the
  machine frame, and returns the tool *tip* path (the tool length offset taken off)
  as line segments split into feed and rapid moves.
- :class:`StockView` carves a coarse copy of the machine's stock along the tool tip
  positions the machine reports (the same ``machine.stock`` model the virtual machine
  cuts with, at a grid coarse enough to send to a browser every few seconds).
- :func:`spectrum` is the amplitude spectrum of the newest vibration window.
- :func:`program_window` is the slice of program text around the executing line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..gcode import ProgramSource, canon, interpret, to_machine_frame
from ..machine.config import MachineConfig, StockConfig, ToolConfig
from ..machine.simulator import tool_table_from
from ..machine.stock import Stock

MAX_SEGMENTS = 60_000  # per kind; more is decimated (a browser draws this in one call)
ARC_STEP_RAD = math.radians(10.0)
STOCK_GRID_MM = 2.0  # 50 x 40 cells for the default block: a few kB per update
SPECTRUM_BINS = 512


class TwinDataError(ValueError):
    """Input the machine page cannot draw; the message names what and where."""


# --- toolpath ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Toolpath:
    """Tool tip path in the machine frame (mm) as segments, shape (n, 2, 3)."""

    feed: np.ndarray
    rapid: np.ndarray
    lines: int  # source lines of the program

    @staticmethod
    def empty() -> Toolpath:
        none = np.zeros((0, 2, 3))
        return Toolpath(none, none, 0)

    def flat(self, kind: str) -> list[float]:
        """Segments as one flat coordinate list (what the browser's buffer takes)."""
        segs = self.feed if kind == "feed" else self.rapid
        return np.round(segs.reshape(-1), 3).tolist()


def toolpath(text: str, config: MachineConfig, name: str = "<program>") -> Toolpath:
    """The tool tip path of ``text`` on the machine ``config`` (work offsets applied).

    Raises :class:`TwinDataError` naming the program and the interpreter's complaint.
    """
    offsets = {1: tuple(config.work_offsets.get("G54", (0.0, 0.0, 0.0)))}
    try:
        source = ProgramSource.from_text(text, name, None)
        ops = interpret(source, tool_table_from(config), work_offsets=offsets)
        machine = list(to_machine_frame(ops))
    except Exception as exc:  # any interpreter error: the page says why instead of failing
        raise TwinDataError(f"{name}: cannot interpret the program: {exc}") from exc
    feed, rapid = _segments(machine)
    return Toolpath(_cap(feed), _cap(rapid), text.count("\n") + 1)


def _segments(ops: list[canon.CanonOp]) -> tuple[np.ndarray, np.ndarray]:
    pos: np.ndarray | None = None
    tlo = np.zeros(3)
    feed: list[np.ndarray] = []
    rapid: list[np.ndarray] = []
    for op in ops:
        kind = type(op)
        if kind is canon.UseToolLengthOffset:
            tlo = np.array([op.x, op.y, op.z])
        elif kind is canon.StraightTraverse or kind is canon.StraightFeed:
            end = np.array([op.x, op.y, op.z]) - tlo
            if pos is not None:
                (rapid if kind is canon.StraightTraverse else feed).append(np.stack([pos, end]))
            pos = end
        elif kind is canon.ArcFeed and pos is not None:
            points = _arc_points(op, pos + tlo) - tlo
            feed.extend(np.stack([points[:-1], points[1:]], axis=1))
            pos = points[-1]
    return _stack(feed), _stack(rapid)


def _arc_points(op: canon.ArcFeed, start: np.ndarray) -> np.ndarray:
    """Points along an arc (start included), at most ARC_STEP_RAD apart."""
    first, second, normal = canon.ARC_AXES[op.plane]
    c = np.array([op.first_axis, op.second_axis])
    p0 = np.array([start[first], start[second]])
    p1 = np.array([op.first_end, op.second_end])
    a0 = math.atan2(*(p0 - c)[::-1])
    a1 = math.atan2(*(p1 - c)[::-1])
    sweep = a1 - a0
    turns = abs(op.rotation)
    if op.rotation > 0:  # counter-clockwise
        sweep = sweep % (2 * math.pi) or 2 * math.pi
        sweep += 2 * math.pi * (turns - 1)
    else:
        sweep = -((-sweep) % (2 * math.pi) or 2 * math.pi)
        sweep -= 2 * math.pi * (turns - 1)
    n = max(2, int(abs(sweep) / ARC_STEP_RAD) + 2)
    f = np.linspace(0.0, 1.0, n)
    r0, r1 = np.linalg.norm(p0 - c), np.linalg.norm(p1 - c)
    angle = a0 + sweep * f
    radius = r0 + (r1 - r0) * f
    out = np.empty((n, 3))
    out[:, first] = c[0] + radius * np.cos(angle)
    out[:, second] = c[1] + radius * np.sin(angle)
    out[:, normal] = start[normal] + (op.axis_end - start[normal]) * f
    return out


def _stack(segments: list[np.ndarray]) -> np.ndarray:
    return np.stack(segments) if segments else np.zeros((0, 2, 3))


def _cap(segments: np.ndarray) -> np.ndarray:
    if len(segments) <= MAX_SEGMENTS:
        return segments
    keep = np.linspace(0, len(segments) - 1, MAX_SEGMENTS).astype(np.intp)
    return segments[keep]


# --- stock -------------------------------------------------------------------------------------


@dataclass
class StockView:
    """A coarse stock cut along reported tool tip positions (machine frame in, mm)."""

    config: MachineConfig
    grid_mm: float = STOCK_GRID_MM
    stock: Stock = field(init=False)
    g54: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.grid_mm) and self.grid_mm > 0):
            raise TwinDataError(f"stock grid must be a positive number of mm, got {self.grid_mm}")
        self.g54 = np.asarray(self.config.work_offsets.get("G54", (0.0, 0.0, 0.0)), float)
        self.reset()

    def reset(self) -> None:
        """A fresh blank (the virtual machine starts every part on one)."""
        coarse = StockConfig(**{**self.config.stock.model_dump(), "grid": self.grid_mm})
        self.stock = Stock(coarse)

    def cut(self, pos: np.ndarray, tools: np.ndarray) -> None:
        """Carve along ``pos`` ((n, 3) machine-frame controlled point, mm) with the tool
        number per sample ``tools`` ((n,))."""
        pos = np.asarray(pos, float)
        tools = np.asarray(tools)
        if pos.ndim != 2 or pos.shape[1] != 3 or len(tools) != len(pos):
            raise TwinDataError(
                f"stock cut: positions must be (n, 3) with one tool per row, got "
                f"{pos.shape} positions and {tools.shape} tools"
            )
        ok = np.isfinite(pos).all(axis=1) & np.isfinite(tools)
        pos, tools = pos[ok], tools[ok].astype(np.int64)
        for start, stop in _runs(tools):
            tool = self.config.tool(int(tools[start]))
            if tool is not None:
                self._cut_run(pos[start:stop], tool)

    def _cut_run(self, pos: np.ndarray, tool: ToolConfig) -> None:
        tips = pos - self.g54 - np.array([0.0, 0.0, tool.length])
        self.stock.cut(tips, tool)

    @property
    def shape(self) -> tuple[int, int]:
        return self.stock.nx, self.stock.ny

    def corner(self) -> list[float]:
        """Machine-frame position of the block's min corner."""
        return (self.g54 + self.stock.origin).tolist()

    def heights(self) -> list[float]:
        """Top of material per cell (machine frame Z, mm), row-major over (x, y)."""
        top = self.stock.heights.astype(np.float64) + self.g54[2]
        return np.round(top.reshape(-1), 2).tolist()


def _runs(values: np.ndarray) -> list[tuple[int, int]]:
    """``[start, stop)`` of runs of equal values."""
    if len(values) == 0:
        return []
    cuts = np.flatnonzero(np.diff(values)) + 1
    bounds = [0, *cuts.tolist(), len(values)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


# --- vibration spectrum ------------------------------------------------------------------------


def last_window(t: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, float]:
    """The newest contiguous run of a waveform's samples and its rate (Hz)."""
    t = np.asarray(t, float)
    v = np.asarray(v, float)
    if t.shape != v.shape or t.ndim != 1:
        raise TwinDataError(
            f"waveform: t and values must be equal 1-D arrays, got {t.shape}, {v.shape}"
        )
    if len(t) < 8:
        return np.zeros(0), 0.0
    dt = np.diff(t)
    step = float(np.median(dt))
    if not step > 0:
        raise TwinDataError("waveform: sample times must increase")
    gaps = np.flatnonzero(dt > 3 * step)
    start = int(gaps[-1]) + 1 if len(gaps) else 0
    return v[start:], 1.0 / step


def spectrum(
    values: np.ndarray, rate_hz: float, bins: int = SPECTRUM_BINS
) -> tuple[np.ndarray, np.ndarray]:
    """Single-sided amplitude spectrum (Hann window), reduced to ``bins`` by taking the
    maximum per group so that narrow peaks survive the reduction."""
    values = np.asarray(values, float)
    if len(values) < 8 or not rate_hz > 0:
        return np.zeros(0), np.zeros(0)
    window = np.hanning(len(values))
    amp = np.abs(np.fft.rfft((values - values.mean()) * window)) * 2.0 / window.sum()
    freq = np.fft.rfftfreq(len(values), 1.0 / rate_hz)
    if len(amp) <= bins:
        return freq, amp
    group = math.ceil(len(amp) / bins)
    n = len(amp) // group * group
    return freq[:n:group], amp[:n].reshape(-1, group).max(axis=1)


# --- program text ------------------------------------------------------------------------------


def program_window(
    lines: list[str], current: int | None, radius: int = 12
) -> tuple[int, list[str]]:
    """``(first line number, lines)`` of the text around 1-based line ``current``."""
    if not lines:
        return 1, []
    if current is None or current < 1:
        current = 1
    current = min(current, len(lines))
    first = max(1, current - radius)
    last = min(len(lines), first + 2 * radius)
    first = max(1, last - 2 * radius)
    return first, lines[first - 1 : last]
