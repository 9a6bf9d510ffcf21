"""Machine page: the live twin in 3D, live charts, the program at its line, alarms.

Update rates follow what changes how fast: values, tool position and program line
every 100 ms from the live snapshot; charts every second from the store (one query,
downsampled); the stock every few seconds; the vibration spectrum when a new window
arrived. Every store read runs in a worker thread.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
from nicegui import run, ui

from ..hub.store import StoredAlarm
from .app import ctx, guarded, page_frame
from .context import UiContext, UserLike, alarm_code
from .control import ControlPanel
from .fleet import _execution
from .scene3d import HeightField, Segments
from .twin import StockView, last_window, program_window, spectrum

LIVE_S = 0.1
CHART_S = 1.0
STOCK_S = 3.0
SPECTRUM_S = 5.0
CHART_WINDOW_S = 60.0
CHART_BUCKETS = 240
PROGRAM_RADIUS = 12

VALUE_CARDS = (  # (signal, label, format)
    ("execution", "Execution", None),
    ("line", "Line", "{:.0f}"),
    ("tool", "Tool", "T{:.0f}"),
    ("x.pos", "X", "{:.3f} mm"),
    ("y.pos", "Y", "{:.3f} mm"),
    ("z.pos", "Z", "{:.3f} mm"),
    ("feed", "Feed", "{:.0f} mm/min"),
    ("spindle.speed", "Spindle speed", "{:.0f} rpm"),
    ("spindle.load", "Spindle load", "{:.1f} %"),
    ("spindle.temp", "Spindle temp.", "{:.1f} °C"),
)
CHARTS = (  # (title, [(signal, name)], unit)
    ("Axis positions", [("x.pos", "X"), ("y.pos", "Y"), ("z.pos", "Z")], "mm"),
    ("Following error", [("x.ferr", "X"), ("y.ferr", "Y"), ("z.ferr", "Z")], "mm"),
    ("Feed and spindle speed", [("feed", "feed mm/min"), ("spindle.speed", "spindle rpm")], ""),
    ("Spindle load, power, temperature",
     [("spindle.load", "load %"), ("spindle.power", "power kW"), ("spindle.temp", "temp °C")], ""),
)  # fmt: skip
SCALE = {"spindle.power": 1e-3}  # W shown as kW next to % and °C


def _fmt(value: float | None, pattern: str | None) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return pattern.format(value) if pattern else str(value)


def _line_chart(title: str, series: list[tuple[str, str]], unit: str) -> dict[str, Any]:
    return {
        "animation": False,
        "title": {"text": title, "textStyle": {"fontSize": 13}},
        "aria": {"enabled": True, "label": {"description": f"{title}, last minute"}},
        "tooltip": {"trigger": "axis"},
        "legend": {"top": 0, "right": 0},
        "grid": {"left": 60, "right": 16, "top": 36, "bottom": 28},
        "xAxis": {"type": "time"},
        "yAxis": {"type": "value", "name": unit, "scale": True},
        "series": [{"type": "line", "name": name, "showSymbol": False, "data": []}
                   for _, name in series],
    }  # fmt: skip


def chart_data(machine: str) -> dict[str, list[list[float]]]:
    """The last CHART_WINDOW_S of every charted signal, as [ms, value] pairs."""
    names = sorted({s for _, series, _ in CHARTS for s, _ in series})
    now = time.time()
    got = ctx().store.query(machine, names, now - CHART_WINDOW_S, now, CHART_BUCKETS)
    out = {}
    for name, s in got.items():
        scale = SCALE.get(name, 1.0)
        out[name] = np.column_stack([s.t * 1000.0, np.round(s.mean * scale, 4)]).tolist()
    return out


def vibration(machine: str) -> tuple[float, list[list[float]]] | None:
    """``(window start, [[Hz, amplitude], ...])`` of the newest vibration window."""
    now = time.time()
    got = ctx().store.query(machine, ["spindle.vib"], now - 90.0, now, 200_000)
    s = got.get("spindle.vib")
    if s is None or len(s.t) < 8:
        return None
    values, rate = last_window(s.t, s.values)
    freq, amp = spectrum(values, rate)
    if len(freq) == 0:
        return None
    start = float(s.t[-len(values)])
    return start, np.column_stack([np.round(freq, 1), np.round(amp, 5)]).tolist()


def machine_alarms(machine: str) -> list[StoredAlarm]:
    store = ctx().store
    active = store.alarms(machine=machine, active=True)
    recent = store.alarms(machine=machine, since=time.time() - 24 * 3600.0)[:20]
    seen = {a.id for a in active}
    return active + [a for a in recent if a.id not in seen]


def alarm_row(a: StoredAlarm) -> dict[str, Any]:
    al = a.alarm
    return {
        "id": a.id,
        "raised": time.strftime("%H:%M:%S", time.localtime(al.raised_at)),
        "code": alarm_code(al.code),
        "severity": al.severity.name,
        "message": al.message,
        "state": "active" if a.active else "cleared",
        "ack": f"{a.acknowledged_by}: {a.comment or ''}" if a.acknowledged_by else "–",
    }


ALARM_COLUMNS = [
    {"name": c, "label": label, "field": c, "align": "left"}
    for c, label in (("raised", "Raised"), ("code", "Code"), ("severity", "Severity"),
                     ("message", "Message"), ("state", "State"), ("ack", "Acknowledged"))
]  # fmt: skip


def _known(machine: str) -> bool:
    c = ctx()
    return machine in c.snapshot().machines or any(
        d.machine_id == machine for d in c.store.machines()
    )


@guarded("/machine/{machine_id}")
async def machine_page(user: UserLike, machine_id: str) -> None:
    page_frame(machine_id, user)
    if not await run.io_bound(_known, machine_id):
        ui.label(f"Unknown machine {machine_id!r}: the hub has no data from it.").props(
            'role="alert"'
        )
        ui.link("Back to the fleet", "/")
        return
    view = _MachineView(machine_id)
    await view.build()
    with view.control_slot:
        ControlPanel(machine_id, user).build()
    ui.timer(LIVE_S, view.live_tick)
    ui.timer(CHART_S, view.chart_tick)
    ui.timer(STOCK_S, view.slow_tick)
    ui.timer(SPECTRUM_S, view.spectrum_tick)


class _MachineView:
    """The elements of one machine page and their updates."""

    def __init__(self, machine: str) -> None:
        self.machine = machine
        self.values: dict[str, ui.label] = {}
        self.shown: dict[str, str] = {}
        self.program_started: float | None = None
        self.program_lines: list[str] = []
        self.shown_window: tuple[int, int] | None = None
        self.stock_version = -1
        self.tool_length = 0.0
        self.spectrum_start: float | None = None

    async def build(self) -> None:
        c = ctx()
        with ui.element("main").classes("w-full flex flex-col gap-4"):
            with ui.row().classes("items-baseline gap-4"):
                ui.label(self.machine).classes("text-h5").props('role="heading" aria-level="1"')
                self.site = ui.label("")
                self.link = ui.badge("", color="grey").props('data-testid="link-state"')
                self.program_label = ui.label("").props('data-testid="program-name"')
                self.latency = ui.label("").props('data-testid="latency"')
            with ui.row().classes("gap-2 w-full").props('role="group" aria-label="Live values"'):
                for signal, label, _ in VALUE_CARDS:
                    with ui.card().tight().classes("value-card px-3 py-1"):
                        ui.label(label).classes("text-caption text-grey-8")
                        self.values[signal] = (
                            ui.label("–")
                            .classes("text-subtitle1")
                            .props(f'data-testid="value-{signal}" aria-label="{label}"')
                        )
            self.control_slot = ui.column().classes("w-full")  # the control panel
            with ui.grid().classes("w-full gap-4 grid-cols-1 xl:grid-cols-2"):
                with ui.card().classes("min-w-0"):
                    ui.label("Twin (machine frame)").classes("text-subtitle1").props(
                        'role="heading" aria-level="2"'
                    )
                    self._build_scene(c)
                    ui.label("Drag to orbit, wheel to zoom. Blue: feed moves, orange: rapids, "
                             "grey: stock as cut.").classes("text-caption")  # fmt: skip
                with ui.card().classes("min-w-0"):
                    ui.label("Program").classes("text-subtitle1").props(
                        'role="heading" aria-level="2"'
                    )
                    self.program_box = (
                        ui.column()
                        .classes("w-full gap-0 overflow-hidden")
                        .props(
                            'role="list" aria-label="Program text around the executing line" '
                            'data-testid="program-text"'
                        )
                    )
                    with self.program_box:
                        self.program_rows = [
                            ui.label("").classes("program-line w-full").props('role="listitem"')
                            for _ in range(2 * PROGRAM_RADIUS + 1)
                        ]
                self.charts: list[tuple[ui.echart, list[str]]] = []
                for title, series, unit in CHARTS:
                    with ui.card().classes("min-w-0"):
                        chart = ui.echart(_line_chart(title, series, unit)).classes("w-full h-56")
                        chart.props(f'role="img" aria-label="{title}, last minute"')
                        self.charts.append((chart, [s for s, _ in series]))
                with ui.card().classes("min-w-0"):
                    options = _line_chart(
                        "Vibration spectrum (newest window)", [("", "amplitude")], "m/s²"
                    )
                    options["xAxis"] = {"type": "value", "name": "Hz"}
                    self.spectrum = ui.echart(options).classes("w-full h-56")
                    self.spectrum.props('role="img" aria-label="Spindle vibration spectrum"')
                with ui.card().classes("min-w-0"):
                    ui.label("Alarms").classes("text-subtitle1").props(
                        'role="heading" aria-level="2"'
                    )
                    self.alarms = ui.table(
                        rows=[], columns=ALARM_COLUMNS, row_key="id", pagination=5
                    )
                    self.alarms.props('dense flat aria-label="Alarms of this machine"').classes(
                        "w-full"
                    )
        await self.live_tick()
        # the rest comes over the websocket once the page is there: the page is sent
        # without waiting for the store
        ui.timer(0, self.slow_tick, once=True)
        ui.timer(0, self.chart_tick, once=True)
        ui.timer(0, self.spectrum_tick, once=True)

    def _build_scene(self, c: UiContext) -> None:
        cfg = c.machine_config
        lo = [cfg.axes[a].min for a in "xyz"]
        hi = [cfg.axes[a].max for a in "xyz"]
        size = [h - low for h, low in zip(hi, lo, strict=True)]
        centre = [(h + low) / 2 for h, low in zip(hi, lo, strict=True)]
        camera = ui.scene.perspective_camera(fov=45, near=1, far=20_000)
        with ui.scene(width=560, height=400, grid=False, camera=camera,
                      background_color="#f1f5f9") as scene:  # fmt: skip
            self.scene = scene
            scene.props('data-testid="twin-scene" aria-label="3D view of the machine"')
            scene.box(*size, wireframe=True).move(*centre).material("#334155")
            sv = StockView(cfg)  # the blank: slow_tick sends the cut heights at once
            nx, ny = sv.shape
            corner = sv.corner()
            self.stock = HeightField(nx, ny, corner, sv.grid_mm, corner[2], sv.heights(), "#94a3b8")
            self.feed_path = Segments([], "#2563eb")
            self.rapid_path = Segments([], "#f97316")
            self.tool = scene.cylinder(5, 5, 75, 16).material("#dc2626")
            self.tool.rotate(math.pi / 2, 0, 0)
        # look at the part from the front right; the envelope stays in view behind it
        part = [corner[0] + nx * sv.grid_mm / 2, corner[1] + ny * sv.grid_mm / 2, corner[2]]
        views = {  # camera offsets from the part: the views buttons (keyboard) give
            "3D view": (260.0, -420.0, 300.0),
            "Front view": (0.0, -600.0, 0.0),
            "Top view": (0.0, -1.0, 600.0),
            "Whole machine": (700.0, -1100.0, 800.0),
        }

        def look(offset: tuple[float, float, float], duration: float = 0.5) -> None:
            scene.move_camera(x=part[0] + offset[0], y=part[1] + offset[1],
                              z=part[2] + offset[2], look_at_x=part[0], look_at_y=part[1],
                              look_at_z=part[2], duration=duration)  # fmt: skip

        look(views["3D view"], 0)
        with ui.row().classes("gap-2").props('role="group" aria-label="Camera"'):
            for name, offset in views.items():
                ui.button(name, on_click=lambda o=offset: look(o)).props("outline dense no-caps")

    # --- fast: live values, tool, program line ------------------------------------------

    async def live_tick(self) -> None:
        state = ctx().machine_state(self.machine)
        values = state.values if state else {}
        for signal, _, pattern in VALUE_CARDS:
            if signal == "execution":
                text = _execution(values)
            else:
                text = _fmt(values.get(signal), pattern)
            if self.shown.get(signal) != text:
                self.shown[signal] = text
                self.values[signal].set_text(text)
        if state is not None:
            self._link(state)
            self._tool(values)
        line = values.get("line")
        self._program_line(int(line) if line is not None and math.isfinite(line) else None)

    def _link(self, state: Any) -> None:
        text = "online" if state.online else "offline"
        if self.link.text != text:
            self.link.set_text(text)
            self.link.props(f"color={'positive' if state.online else 'negative'}")
        site = state.descriptor.site if state.descriptor else ""
        if self.site.text != site:
            self.site.set_text(site)
        lat = state.latency_s * 1000.0 if math.isfinite(state.latency_s) else None
        text = f"link latency {_fmt(lat, '{:.0f} ms')}"
        if self.latency.text != text:
            self.latency.set_text(text)

    def _tool(self, values: dict[str, float]) -> None:
        pos = [values.get(f"{a}.pos", float("nan")) for a in "xyz"]
        if not all(math.isfinite(p) for p in pos):
            return
        tool = ctx().machine_config.tool(int(values.get("tool", 0) or 0))
        length = tool.length if tool else 75.0
        radius = tool.diameter / 2 if tool else 5.0
        if abs(length - self.tool_length) > 1e-6:
            self.tool_length = length
            self.tool.scale(radius / 5.0, length / 75.0, radius / 5.0)  # scaled before rotation
        # the controlled point is the gauge line: the tool hangs below it by its length
        target = (round(pos[0], 2), round(pos[1], 2), round(pos[2] - length / 2, 2))
        if (self.tool.x, self.tool.y, self.tool.z) != target:
            self.tool.move(*target)

    def _program_line(self, line: int | None) -> None:
        first, rows = program_window(self.program_lines, line, PROGRAM_RADIUS)
        key = (first, line or 0)
        if key == self.shown_window:
            return
        self.shown_window = key
        for k, label in enumerate(self.program_rows):
            number = first + k
            if k < len(rows):
                text = f"{number:>5}  {rows[k]}"
                current = number == line
            else:
                text, current, number = "", False, 0
            if label.text != text:
                label.set_text(text)
                label.props(f'data-line="{number}"')  # every row says which line it shows
            if current and "current" not in label.classes:
                label.classes(add="current").props('aria-current="true"')
            elif not current and "current" in label.classes:
                label.classes(remove="current").props(remove="aria-current")

    # --- slow: program, stock, alarms -----------------------------------------------------

    async def slow_tick(self) -> None:
        c = ctx()
        program = await run.io_bound(c.program, self.machine, True)
        if program.started != self.program_started:
            self.program_started = program.started
            self.program_lines = program.lines or (["(program text not sent by this machine)"]
                                                   if program.name else [])  # fmt: skip
            self.shown_window = None
            self.program_label.set_text(f"program {program.name or '–'}")
            path = program.path
            self.feed_path.set_points(path.flat("feed") if path else [])
            self.rapid_path.set_points(path.flat("rapid") if path else [])
            if program.error:
                ui.notify(program.error, type="warning")
        view, version = await run.io_bound(c.stock, self.machine)
        if version != self.stock_version:
            self.stock_version = version
            self.stock.set_heights(view.heights())
        rows = [alarm_row(a) for a in await run.io_bound(machine_alarms, self.machine)]
        if rows != self.alarms.rows:
            self.alarms.rows = rows
            self.alarms.update()

    async def chart_tick(self) -> None:
        data = await run.io_bound(chart_data, self.machine)
        if data is None:  # the hub is shutting down
            return
        for chart, signals in self.charts:
            for k, signal in enumerate(signals):
                chart.options["series"][k]["data"] = data.get(signal, [])
            chart.update()

    async def spectrum_tick(self) -> None:
        got = await run.io_bound(vibration, self.machine)
        if got is None or got[0] == self.spectrum_start:
            return
        self.spectrum_start = got[0]
        self.spectrum.options["series"][0]["data"] = got[1]
        self.spectrum.update()
