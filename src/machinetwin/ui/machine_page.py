"""Machine page: the live twin in 3D beside its simulated twin, live charts, the program
at its line, alarms.

What loads first is what the engineer looks at first: the values, the 3D view and the
program come with the page; the charts, the measured-vs-simulated panel and the
alarms are added once the browser is connected (ECharts is then loaded after the page
is up, not before it). One timer per page: it polls the machine's live state every
50 ms and touches the page only when a new batch arrived; everything that reads the
store (charts every second as deltas, twin comparison every second, stock and program
every 3 s, spectrum every 5 s) runs in one worker-thread call at a time, in the
background, so the live values never wait behind a store query.
"""

from __future__ import annotations

import html
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from nicegui import background_tasks, run, ui

from ..hub.store import StoredAlarm
from .app import ctx, guarded, page_frame
from .chart_feed import MERGE_JS, WINDOW_S, RollingSeries
from .context import Program, UiContext, UserLike, alarm_code
from .control import ControlPanel
from .fleet import _execution
from .scene3d import HeightField, Segments
from .twin import StockView, last_window, program_window, spectrum
from .twin_panel import TWIN_COLUMNS, twin_summary
from .twin_tracker import TwinState

LIVE_S = 0.05  # the live state is polled this often; the page changes only on a new batch
CHART_S = 1.0
TWIN_S = 1.0
STOCK_S = 3.0
SPECTRUM_S = 5.0
TWIN_CHART_HZ = 10.0  # the deviation chart's points per second (samples come at 100 Hz)
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


CHART_SIGNALS = sorted({s for _, series, _ in CHARTS for s, _ in series})


def chart_query(machine: str, feed: RollingSeries, now: float) -> dict[str, Any]:
    """The store's buckets the charts do not have yet (see :mod:`.chart_feed`)."""
    t0, t1, buckets = feed.plan(now)
    got = ctx().store.query(machine, CHART_SIGNALS, t0, t1, buckets)
    out = {}
    for name, s in got.items():
        out[name] = (s.t, np.round(s.mean * SCALE.get(name, 1.0), 4))
    return {"t0": t0, "t1": t1, "series": out}


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
    if c.machine_state(machine) is not None:  # one machine's state, not the fleet's
        return True
    return any(d.machine_id == machine for d in c.store.machines())


@guarded("/machine/{machine_id}")
async def machine_page(user: UserLike, machine_id: str) -> None:
    page_frame(machine_id, user)
    # a machine that is live is known without a thread hop; only others ask the store
    if ctx().machine_state(machine_id) is None and not await run.io_bound(_known, machine_id):
        ui.label(f"Unknown machine {machine_id!r}: the hub has no data from it.").props(
            'role="alert"'
        )
        ui.link("Back to the fleet", "/")
        return
    ui.add_body_html(f"<script>{MERGE_JS}</script>")
    view = _MachineView(machine_id, user)
    view.build()
    view.timer = ui.timer(LIVE_S, view.tick)


@dataclass
class _Due:
    """When each slow part of the page is next due (monotonic s; 0: at once)."""

    at: dict[str, float] = field(
        default_factory=lambda: {"slow": 0.0, "charts": 0.0, "twin": 0.0, "spectrum": 0.0}
    )
    every = {"slow": STOCK_S, "charts": CHART_S, "twin": TWIN_S, "spectrum": SPECTRUM_S}

    def take(self, now: float) -> set[str]:
        due = {k for k, t in self.at.items() if now >= t}
        for k in due:
            self.at[k] = now + self.every[k]
        return due


class _MachineView:
    """The elements of one machine page and their updates."""

    def __init__(self, machine: str, user: UserLike) -> None:
        self.machine = machine
        self.user = user
        self.values: dict[str, ui.label] = {}
        self.shown: dict[str, str] = {}
        self.program_started: float | None = None
        self.program_lines: list[str] = []
        self.shown_window: tuple[int, int] | None = None
        self.stock_version = -1
        self.tool_length = 0.0
        self.spectrum_start: float | None = None
        self.live_key: tuple | None = None
        self.feed = RollingSeries(CHART_SIGNALS)
        self.due = _Due()
        self.busy = False
        self.lower_built = False
        self.twin = TwinState()
        self.twin_started: float | None = None
        self.twin_until = -math.inf  # newest twin sample charted (machine clock, s)
        self.ghost_shown = False
        self.timer: ui.timer | None = None

    # --- what comes with the page -----------------------------------------------------

    def build(self) -> None:
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
                             "grey: stock as cut, red: the machine's tool, green: the "
                             "simulated twin's tool.").classes("text-caption")  # fmt: skip
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
                        # one element for the window: 25 labels cost 25 elements to build
                        # and to update when the window scrolls; the text is escaped
                        self.program_rows = ui.html("", sanitize=False).classes("w-full")
                # charts, twin panel and alarms: added once the browser is connected
                self.lower = ui.element("div").classes("contents")
        self.live()

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
            sv = StockView(cfg)  # the blank: the first refresh sends the cut heights
            nx, ny = sv.shape
            corner = sv.corner()
            # the blank's flat top; the first refresh sends the heights as cut
            top = max(sv.heights())
            self.stock = HeightField(nx, ny, corner, sv.grid_mm, corner[2], [], "#94a3b8", top)
            self.feed_path = Segments([], "#2563eb")
            self.rapid_path = Segments([], "#f97316")
            self.tool = scene.cylinder(5, 5, 75, 16).material("#dc2626")
            self.tool.rotate(math.pi / 2, 0, 0)
            # the simulated twin's tool, where the twin is at the same program time
            self.ghost = scene.cylinder(5, 5, 75, 16).material("#16a34a", opacity=0.45)
            self.ghost.rotate(math.pi / 2, 0, 0).visible(False)
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

    # --- what comes after the browser connected -----------------------------------------

    def _build_lower(self) -> None:
        """The rest of the page, once the browser shows the first part: the control
        panel, the charts (ECharts loads now), the twin panel and the alarms."""
        self.lower_built = True
        with self.control_slot:
            ControlPanel(self.machine, self.user).build()
        with self.lower:
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
            self._build_twin_panel()
            with ui.card().classes("min-w-0"):
                ui.label("Alarms").classes("text-subtitle1").props('role="heading" aria-level="2"')
                self.alarms = ui.table(rows=[], columns=ALARM_COLUMNS, row_key="id", pagination=5)
                self.alarms.props('dense flat aria-label="Alarms of this machine"').classes(
                    "w-full"
                )

    def _build_twin_panel(self) -> None:
        with ui.card().classes("min-w-0 xl:col-span-2").props('data-testid="twin-panel"'):
            ui.label("Measured and simulated").classes("text-subtitle1").props(
                'role="heading" aria-level="2"'
            )
            self.twin_note = (
                ui.label("").classes("text-caption").props('data-testid="twin-note" role="status"')
            )
            with ui.row().classes("w-full gap-4 flex-nowrap max-lg:flex-wrap items-start"):
                with ui.column().classes("gap-1 shrink-0 max-lg:w-full"):
                    self.twin_head: dict[str, ui.label] = {}
                    for key, label in (("offset", "Cycle time against the twin"),
                                       ("deviation", "Deviation from the twin's path"),
                                       ("cycle", "Twin's cycle time")):  # fmt: skip
                        with ui.row().classes("gap-2 items-baseline"):
                            ui.label(f"{label}:").classes("text-caption text-grey-8")
                            self.twin_head[key] = ui.label("–").props(
                                f'data-testid="twin-{key}" aria-label="{label}"'
                            )
                    self.twin_table = ui.table(rows=[], columns=TWIN_COLUMNS, row_key="what")
                    self.twin_table.props(
                        'dense flat data-testid="twin-table" '
                        'aria-label="Reported and simulated values side by side"'
                    ).classes("w-full")
                options = _line_chart("Deviation from the twin", [("", "path mm")], "mm")
                options["series"].append({"type": "line", "name": "behind s", "showSymbol": False,
                                          "yAxisIndex": 1, "data": []})  # fmt: skip
                options["yAxis"] = [{"type": "value", "name": "mm", "scale": True},
                                    {"type": "value", "name": "s", "scale": True}]  # fmt: skip
                options["grid"]["right"] = 48
                self.twin_chart = ui.echart(options).classes("w-full h-64 min-w-0 grow")
                self.twin_chart.props(
                    'role="img" aria-label="Deviation of the machine from its twin, last minute"'
                )

    # --- the one timer --------------------------------------------------------------------

    def tick(self) -> None:
        """Every LIVE_S: the live part now; the slow parts in the background when due and
        the previous round finished (rounds never pile up on a slow store)."""
        if not self.lower_built:
            self._build_lower()
        self.live()
        if self.busy:
            return
        due = self.due.take(time.monotonic())
        if due:
            self.busy = True
            background_tasks.create(self._refresh(due), name=f"machine page {self.machine}")

    async def _refresh(self, due: set[str]) -> None:
        try:
            got = await run.io_bound(self._gather, due, time.time())
            if got is None or self.timer is None or self.timer.is_deleted:
                return  # the hub is stopping, or the page was closed meanwhile
            with self.lower:  # the page's context: notifications and scripts go to it
                self._apply(got)
        finally:
            self.busy = False

    def _gather(self, due: set[str], now: float) -> dict[str, Any]:
        """Every store read of this round, in one worker thread."""
        c, m = ctx(), self.machine
        out: dict[str, Any] = {}
        if "slow" in due:
            out["program"] = c.program(m, True)
            out["stock"] = c.stock(m)
            out["alarms"] = [alarm_row(a) for a in machine_alarms(m)]
        if "charts" in due:
            out["charts"] = chart_query(m, self.feed, now)
        if "twin" in due:
            out["twin"] = c.twin(m)
        if "spectrum" in due:
            out["spectrum"] = vibration(m)
        return out

    def _apply(self, got: dict[str, Any]) -> None:
        if "program" in got:
            self._show_program(got["program"])
        if "stock" in got:
            view, version = got["stock"]
            if version != self.stock_version:
                self.stock_version = version
                self.stock.set_heights(view.heights())
        if "alarms" in got and got["alarms"] != self.alarms.rows:
            self.alarms.rows = got["alarms"]
            self.alarms.update()
        if "charts" in got:
            self._merge_charts(got["charts"])
        if "twin" in got:
            self._show_twin(got["twin"])
        if got.get("spectrum") is not None:
            self._show_spectrum(*got["spectrum"])

    # --- fast: live values, tool, program line ------------------------------------------

    def live(self) -> None:
        state = ctx().machine_state(self.machine)
        key = (state.batches, state.online) if state is not None else None
        if key is not None and key == self.live_key:
            return  # no new batch: nothing on the page can have changed
        self.live_key = key
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
            self._ghost(state.newest_sample)
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
            for body in (self.tool, self.ghost):  # scaled before rotation
                body.scale(radius / 5.0, length / 75.0, radius / 5.0)
        # the controlled point is the gauge line: the tool hangs below it by its length
        _move(self.tool, pos, length)

    def _ghost(self, newest_sample: float) -> None:
        run_ = self.twin.run
        if run_ is None or not math.isfinite(newest_sample):
            return
        pos, _ = run_.at(newest_sample - self.twin.started)
        _move(self.ghost, pos.tolist(), self.tool_length or 75.0)

    def _program_line(self, line: int | None) -> None:
        first, rows = program_window(self.program_lines, line, PROGRAM_RADIUS)
        key = (first, line or 0)
        if key == self.shown_window:
            return
        self.shown_window = key
        self.program_rows.set_content(program_html(first, rows, line))

    # --- slow: program, charts, twin, spectrum ----------------------------------------------

    def _show_program(self, program: Program) -> None:
        if program.started == self.program_started:
            return
        self.program_started = program.started
        self.program_lines = program.lines or (["(program text not sent by this machine)"]
                                               if program.name else [])  # fmt: skip
        self.shown_window = None
        self.live_key = None  # redraw the window around the line now
        self.program_label.set_text(f"program {program.name or '–'}")
        path = program.path
        self.feed_path.set_points(path.flat("feed") if path else [])
        self.rapid_path.set_points(path.flat("rapid") if path else [])
        if program.error:
            ui.notify(program.error, type="warning")

    def _merge_charts(self, got: dict[str, Any]) -> None:
        """Send each chart the buckets it lacks, all charts in one message (the server
        keeps the whole window in the options, unsent, for a browser that reconnects)."""
        delta = self.feed.merge(got["t0"], got["t1"], got["series"])
        if not any(delta.series):
            return  # nothing new (old points go with the next delta)
        new = dict(zip(self.feed.signals, delta.series, strict=True))
        calls = []
        for chart, signals in self.charts:
            with chart.props.suspend_updates():
                for k, signal in enumerate(signals):
                    # a tuple: NiceGUI's options do not observe (and copy) its points
                    chart.options["series"][k]["data"] = tuple(self.feed.points[signal])
            calls.append(_merge_call(chart, delta.from_ms, delta.cut_ms, [new[s] for s in signals]))
        self.lower.client.run_javascript(";".join(calls))

    def _show_twin(self, state: TwinState) -> None:
        self.twin = state
        if self.twin_note.text != state.note:
            self.twin_note.set_text(state.note)
        if self.ghost_shown != (state.run is not None):
            self.ghost_shown = state.run is not None
            self.ghost.visible(self.ghost_shown)
        summary = twin_summary(state)
        for key in ("offset", "deviation", "cycle"):
            text = getattr(summary, key)
            if self.twin_head[key].text != text:
                self.twin_head[key].set_text(text)
        if summary.rows != self.twin_table.rows:
            self.twin_table.rows = summary.rows
            self.twin_table.update()
        self._chart_twin(state)

    def _chart_twin(self, state: TwinState) -> None:
        restart = state.started != self.twin_started
        if restart:
            self.twin_started, self.twin_until = state.started, -math.inf
        step = max(1, round(1.0 / (TWIN_CHART_HZ * 0.01)))  # samples come at about 100 Hz
        new = np.flatnonzero((state.t > self.twin_until) & np.isfinite(state.deviation_mm))
        new = new[::step]
        if not len(new) and not restart:
            return
        t_ms = state.t[new] * 1000.0
        series = [np.column_stack([t_ms, np.round(v[new], 4)]).tolist()
                  for v in (state.deviation_mm, state.offset_s)]  # fmt: skip
        cut = (state.t[-1] - WINDOW_S) * 1000.0 if len(state.t) else 0.0
        from_ms = 0.0 if restart else (float(t_ms[0]) if len(t_ms) else math.inf)
        if len(new):
            self.twin_until = float(state.t[new[-1]])
        self.lower.client.run_javascript(_merge_call(self.twin_chart, from_ms, cut, series))

    def _show_spectrum(self, start: float, points: list[list[float]]) -> None:
        if start == self.spectrum_start:
            return
        self.spectrum_start = start
        self.spectrum.options["series"][0]["data"] = points
        self.spectrum.update()


def program_html(first: int, rows: list[str], line: int | None) -> str:
    """The program window as rows of escaped text; the executing line is marked (class
    ``current``, ``aria-current``) and every row says which line it shows (``data-line``)."""
    out = []
    for k, text in enumerate(rows):
        number = first + k
        current = ' current" aria-current="true' if number == line else ""
        out.append(f'<div class="program-line w-full{current}" role="listitem" '
                   f'data-line="{number}">{html.escape(f"{number:>5}  {text}")}</div>')  # fmt: skip
    return "".join(out)


def _move(body: Any, pos: list[float], length: float) -> None:
    """Put a tool body (a cylinder centred on its middle) below the gauge point ``pos``."""
    target = (round(pos[0], 2), round(pos[1], 2), round(pos[2] - length / 2, 2))
    if (body.x, body.y, body.z) != target:
        body.move(*target)


def _merge_call(chart: ui.echart, from_ms: float, cut_ms: float, series: list) -> str:
    """JavaScript that merges ``series`` into ``chart`` (``mtMerge``, chart_feed.MERGE_JS)."""
    frm = json.dumps(from_ms if math.isfinite(from_ms) else 1e300)
    return f"mtMerge({chart.id}, {frm}, {cut_ms:.0f}, {json.dumps(series)})"
