"""History page: a machine, signals and a time range, charted from the store.

The chart shows ``store.query`` with a fixed number of buckets (min/max band and
mean), so a day costs the same as a minute. Zooming in (mouse wheel, drag, or the
slider's keyboard handles) re-queries the zoomed range with the same number of
buckets, down to the raw samples. Export writes the range shown as CSV or Parquet
with ``store.export`` and hands it to the browser as a download.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from nicegui import run, ui

from ..hub.store import ExportFormat
from ..model.signals import SIGNALS
from .alarms import machine_ids
from .app import ctx, guarded, page_frame
from .context import UserLike

BUCKETS = 400
RANGES = {"300": "Last 5 minutes", "900": "Last 15 minutes", "3600": "Last hour",
          "21600": "Last 6 hours", "86400": "Last 24 hours", "custom": "Custom range"}  # fmt: skip
DEFAULT_SIGNALS = ["spindle.load", "x.pos", "y.pos", "z.pos"]
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
CHART_LABEL = "History chart; zoom with the wheel or the slider"


class RangeError(ValueError):
    """A time range the page cannot load; the message names the field."""


def parse_time(text: str, field_name: str) -> float:
    """Local time ``YYYY-MM-DD HH:MM:SS`` (seconds optional) → epoch seconds."""
    text = (text or "").strip()
    for fmt in (TIME_FORMAT, "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"):
        try:
            return datetime.strptime(text, fmt).timestamp()
        except ValueError:
            continue
    raise RangeError(f"{field_name}: {text!r} is not a time like 2026-01-31 14:05:00")


def resolve_range(choice: str, start: str, end: str, now: float) -> tuple[float, float]:
    if choice == "custom":
        t0, t1 = parse_time(start, "From"), parse_time(end, "To")
    else:
        try:
            span = float(choice)
        except ValueError:
            raise RangeError(f"Range: unknown choice {choice!r}") from None
        t0, t1 = now - span, now
    if not t1 > t0:
        raise RangeError(f"To ({_fmt_time(t1)}) must be after From ({_fmt_time(t0)})")
    return t0, t1


def _fmt_time(t: float) -> str:
    return time.strftime(TIME_FORMAT, time.localtime(t))


def series_data(machine: str, signals: list[str], t0: float, t1: float) -> dict[str, Any]:
    """Chart series per signal: mean line, min/max band (as base + height), raw flag."""
    got = ctx().store.query(machine, signals, t0, t1, BUCKETS)
    out: dict[str, Any] = {"points": 0, "series": {}}
    for name in signals:
        s = got.get(name)
        if s is None:
            out["series"][name] = {"mean": [], "lo": [], "band": [], "raw": True}
            continue
        ms = s.t * 1000.0
        out["points"] += int(s.count.sum())
        out["series"][name] = {
            "mean": np.column_stack([ms, s.mean]).tolist(),
            "lo": np.column_stack([ms, s.min]).tolist(),
            "band": np.column_stack([ms, s.max - s.min]).tolist(),
            "raw": bool(s.raw),
        }
    return out


def export_file(machine: str, t0: float, t1: float, fmt: ExportFormat,
                signals: list[str] | None) -> tuple[bytes, str, int]:  # fmt: skip
    tmp = Path(tempfile.mkdtemp(prefix="machinetwin-ui-export-"))
    try:
        name = f"{machine}_{t0:.3f}_{t1:.3f}.{fmt}"
        rows = ctx().store.export(machine, t0, t1, tmp / name, fmt, signals)
        return (tmp / name).read_bytes(), name, rows
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def chart_options(signals: list[str]) -> dict[str, Any]:
    series: list[dict[str, Any]] = []
    for k, name in enumerate(signals):
        stack = f"band{k}"
        series += [
            {"type": "line", "name": f"{name} min", "stack": stack, "data": [], "showSymbol": False,
             "lineStyle": {"opacity": 0}, "silent": True, "tooltip": {"show": False}},
            {"type": "line", "name": f"{name} range", "stack": stack, "data": [], "showSymbol": False,
             "lineStyle": {"opacity": 0}, "areaStyle": {"opacity": 0.2}, "silent": True,
             "tooltip": {"show": False}},
            {"type": "line", "name": name, "data": [], "showSymbol": False, "sampling": "none"},
        ]  # fmt: skip
    return {
        "animation": False,
        # ECharts writes the DOM's aria-label itself: give it the words
        "aria": {"enabled": True, "label": {"description": CHART_LABEL}},
        "tooltip": {"trigger": "axis"},
        "legend": {"data": signals, "top": 0},
        "grid": {"left": 70, "right": 30, "top": 40, "bottom": 80},
        "xAxis": {"type": "time"},
        "yAxis": {"type": "value", "scale": True},
        "dataZoom": [{"type": "inside", "filterMode": "none"},
                     {"type": "slider", "filterMode": "none"}],
        "series": series,
    }  # fmt: skip


@dataclass
class _View:
    machine: str = ""
    signals: list[str] = field(default_factory=lambda: list(DEFAULT_SIGNALS))
    full: tuple[float, float] = (0.0, 0.0)  # the loaded range
    shown: tuple[float, float] = (0.0, 0.0)  # the zoomed part of it


@guarded("/history")
async def history_page(user: UserLike, machine: str = "") -> None:
    page_frame("History", user)
    machines = await run.io_bound(machine_ids)
    view = _View(machine=machine if machine in machines else (machines[0] if machines else ""))
    signal_names = sorted(SIGNALS)
    with ui.element("main").classes("w-full flex flex-col gap-4"):
        ui.label("History").classes("text-h5").props('role="heading" aria-level="1"')
        with ui.row().classes("items-end gap-4").props('role="group" aria-label="What to show"'):
            pick_machine = ui.select(machines, value=view.machine or None, label="Machine")\
                .classes("w-56").props('data-testid="history-machine"')  # fmt: skip
            pick_signals = ui.select(signal_names, value=view.signals, label="Signals", multiple=True)\
                .props('use-chips data-testid="history-signals"').classes("w-96")  # fmt: skip
            pick_range = ui.select(RANGES, value="900", label="Range").classes("w-48")\
                .props('data-testid="history-range"')  # fmt: skip
            start = ui.input("From (local time)", placeholder="2026-01-31 14:05:00").classes("w-52")
            end = ui.input("To (local time)", placeholder="2026-01-31 14:20:00").classes("w-52")
            start.bind_visibility_from(pick_range, "value", backward=lambda v: v == "custom")
            end.bind_visibility_from(pick_range, "value", backward=lambda v: v == "custom")
            load = ui.button("Load").props('data-testid="history-load"')
        status = ui.label("Pick a machine, signals and a range, then Load.").props(
            'role="status" aria-live="polite" data-testid="history-status"'
        )
        chart = ui.echart(chart_options(view.signals)).classes("w-full h-[28rem]")
        chart.props(f'role="img" aria-label="{CHART_LABEL}" data-testid="history-chart"')
        with ui.row().classes("gap-4"):
            csv = ui.button("Export CSV").props('data-testid="export-csv"')
            parquet = ui.button("Export Parquet").props('data-testid="export-parquet"')
        exported = ui.label("").props(
            'role="status" aria-live="polite" data-testid="export-status"'
        )

    async def show(t0: float, t1: float) -> None:
        if not view.machine or not view.signals:
            status.set_text("Pick a machine and at least one signal.")
            return
        data = await run.io_bound(series_data, view.machine, view.signals, t0, t1)
        view.shown = (t0, t1)
        for k, name in enumerate(view.signals):
            s = data["series"][name]
            chart.options["series"][3 * k]["data"] = s["lo"]
            chart.options["series"][3 * k + 1]["data"] = s["band"]
            chart.options["series"][3 * k + 2]["data"] = s["mean"]
        raw = all(s["raw"] for s in data["series"].values())
        status.set_text(f"{view.machine}: {_fmt_time(t0)} – {_fmt_time(t1)}, {data['points']} samples"
                        f"{' (raw)' if raw else f' in {BUCKETS} buckets'}")  # fmt: skip
        status.props(f'data-t0="{t0!r}" data-t1="{t1!r}" data-points="{data["points"]}"')
        chart.update()

    async def do_load() -> None:
        try:
            t0, t1 = resolve_range(pick_range.value, start.value, end.value, time.time())
        except RangeError as exc:
            status.set_text(str(exc))
            return
        view.machine = pick_machine.value or ""
        view.signals = list(pick_signals.value or [])
        view.full = (t0, t1)
        chart.options.clear()
        chart.options.update(chart_options(view.signals))
        chart.options["xAxis"].update({"min": t0 * 1000.0, "max": t1 * 1000.0})
        await show(t0, t1)

    async def on_zoom(e: Any) -> None:
        # inside zoom sends {batch: [{start, end}]}, the slider {start, end}: percentages
        # of the loaded range (the x axis is pinned to it)
        args = e.args.get("batch", [e.args])[0] if isinstance(e.args, dict) else {}
        lo, hi = float(args.get("start", 0.0)), float(args.get("end", 100.0))
        t0, t1 = view.full
        z0, z1 = t0 + (t1 - t0) * lo / 100.0, t0 + (t1 - t0) * hi / 100.0
        if z1 - z0 > 1e-3 and (z0, z1) != view.shown:
            await show(z0, z1)

    async def export(fmt: ExportFormat) -> None:
        if not view.machine or view.shown[1] <= view.shown[0]:
            ui.notify("Load a range first", type="warning")
            return
        t0, t1 = view.shown
        content, name, rows = await run.io_bound(export_file, view.machine, t0, t1, fmt,
                                                 view.signals or None)  # fmt: skip
        ui.download.content(content, name)
        exported.set_text(f"Exported {rows} rows ({_fmt_time(t0)} – {_fmt_time(t1)}) as {name}")
        exported.props(f'data-t0="{t0!r}" data-t1="{t1!r}" data-rows="{rows}"')

    load.on_click(do_load)
    chart.on("chart:datazoom", on_zoom, throttle=0.3)
    csv.on_click(lambda: export("csv"))
    parquet.on_click(lambda: export("parquet"))
    if view.machine:
        await do_load()
