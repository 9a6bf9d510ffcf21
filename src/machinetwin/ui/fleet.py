"""Fleet page: a map of the sites and a live table of every machine.

The table is one Quasar table whose rows are rebuilt from the hub's live snapshot by
a timer and sent only when a shown value changed: the cost per tick is one snapshot
copy and one small row per machine, never anything per sample. Alarms and program
names come from the shared :class:`.context.FleetCache` (one store query a second).
"""

from __future__ import annotations

import math
from typing import Any

from nicegui import run, ui

from ..hub.ingest import LiveState
from ..model.signals import Execution
from .app import ctx, guarded, page_frame
from .context import UserLike

REFRESH_S = 0.1  # the table follows the 100 ms batches...
LARGE_FLEET = 50
LARGE_FLEET_REFRESH_S = 0.5  # ...up to 50 machines; a bigger table is sent twice a second
MAP_REFRESH_S = 1.0

# Longitude, latitude of the reference story's sites (the lab is in Dalian).
SITE_POSITIONS: dict[str, tuple[float, float]] = {
    "Dalian": (121.61, 38.91),
    "Harbin": (126.53, 45.80),
    "Tianjin": (117.20, 39.13),
}
LAB_SITE = "Dalian"

COLUMNS = [
    {"name": "machine", "label": "Machine", "field": "machine", "align": "left", "sortable": True},
    {"name": "site", "label": "Site", "field": "site", "align": "left", "sortable": True},
    {"name": "online", "label": "Link", "field": "online", "align": "left"},
    {"name": "execution", "label": "Execution", "field": "execution", "align": "left"},
    {"name": "program", "label": "Program", "field": "program", "align": "left"},
    {"name": "line", "label": "Line", "field": "line", "align": "right"},
    {"name": "load", "label": "Spindle load", "field": "load", "align": "right"},
    {"name": "alarms", "label": "Alarms", "field": "alarms", "align": "left"},
    {"name": "latency", "label": "Latency", "field": "latency", "align": "right"},
]

_MACHINE_CELL = """
<q-td :props="props">
  <a :href="'/machine/' + encodeURIComponent(props.value)" class="text-primary underline"
     :data-testid="'machine-link-' + props.value">{{ props.value }}</a>
</q-td>"""
_ONLINE_CELL = """
<q-td :props="props">
  <q-badge :color="props.value === 'online' ? 'positive' : 'negative'" :label="props.value" />
</q-td>"""


def _fmt(value: float | None, pattern: str) -> str:
    return pattern.format(value) if value is not None and math.isfinite(value) else "–"


def _execution(values: dict[str, float]) -> str:
    v = values.get("execution")
    if v is None or not math.isfinite(v):
        return "UNKNOWN"
    try:
        return Execution(int(v)).name
    except ValueError:
        return "UNKNOWN"


def machine_row(state: LiveState, program: str, alarms: list[str]) -> dict[str, Any]:
    """One table row, formatted as shown (so that unchanged rows compare equal)."""
    values = state.values
    site = state.descriptor.site if state.descriptor else "?"
    latency = state.latency_s * 1000.0 if math.isfinite(state.latency_s) else None
    return {
        "machine": state.machine,
        "site": site,
        "online": "online" if state.online else "offline",
        "execution": _execution(values),
        "program": program or "–",
        "line": _fmt(values.get("line"), "{:.0f}"),
        "load": _fmt(values.get("spindle.load"), "{:.0f} %"),
        "alarms": ", ".join(alarms[:3]) + (f" (+{len(alarms) - 3})" if len(alarms) > 3 else "")
        if alarms
        else "–",
        "latency": _fmt(latency, "{:.0f} ms"),
    }


def fleet_rows() -> list[dict[str, Any]]:
    c = ctx()
    snap = c.snapshot()
    alarms = c.fleet.active_alarms()
    programs = c.fleet.program_names()
    return [
        machine_row(s, programs.get(m, ""), alarms.get(m, []))
        for m, s in sorted(snap.machines.items())
    ]


def map_options(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """An offline ECharts 'map': sites at their longitude/latitude, links to the lab."""
    by_site: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_site.setdefault(r["site"], []).append(r)
    points, links = [], []
    lab = SITE_POSITIONS[LAB_SITE]
    for site, (lon, lat) in SITE_POSITIONS.items():
        machines = by_site.get(site, [])
        bad = any(r["alarms"] != "–" or r["online"] != "online" for r in machines)
        label = f"{site} ({len(machines)})"
        color = "#dc2626" if bad else ("#16a34a" if machines else "#64748b")
        points.append({"name": label, "value": [lon, lat], "itemStyle": {"color": color}})
        if site != LAB_SITE:
            links.append([lab, [lon, lat]])
    return {
        "aria": {"enabled": True, "label": {"description": "Map of the sites: Dalian (lab), Harbin, Tianjin"}},
        "animation": False,
        "grid": {"left": 50, "right": 20, "top": 20, "bottom": 40},
        "xAxis": {"type": "value", "min": 114, "max": 130, "name": "longitude °E",
                  "nameLocation": "middle", "nameGap": 25},
        "yAxis": {"type": "value", "min": 36, "max": 48, "name": "latitude °N"},
        "series": [
            {"type": "lines", "coordinateSystem": "cartesian2d", "data": [{"coords": c} for c in links],
             "lineStyle": {"color": "#94a3b8", "type": "dashed"}, "silent": True},
            {"type": "scatter", "symbolSize": 18, "data": points,
             "label": {"show": True, "position": "top", "formatter": "{b}"}},
        ],
    }  # fmt: skip


@guarded("/")
async def fleet_page(user: UserLike) -> None:
    page_frame("Fleet", user)
    rows = await run.io_bound(fleet_rows)
    with ui.element("main").classes("w-full flex flex-col gap-4"):
        ui.label("Fleet").classes("text-h5").props('role="heading" aria-level="1"')
        with ui.row().classes("w-full gap-4 flex-nowrap max-lg:flex-wrap items-start"):
            with ui.card().classes("w-[380px] max-lg:w-full shrink-0"):
                ui.label("Sites").classes("text-subtitle1").props('role="heading" aria-level="2"')
                # the map (ECharts) is added once the browser shows the table: the page
                # does not wait for ECharts to load
                map_box = ui.element("div").classes("w-full h-72")
            with ui.card().classes("grow min-w-0 w-full"):
                table = ui.table(rows=rows, columns=COLUMNS, row_key="machine",
                                 title="Machines", pagination=0)  # fmt: skip
                table.props('dense flat virtual-scroll aria-label="Machines, live"')
                table.classes("w-full max-h-[70vh]").props('data-testid="fleet-table"')
                table.add_slot("body-cell-machine", _MACHINE_CELL)
                table.add_slot("body-cell-online", _ONLINE_CELL)
    state = {"rows": rows, "map_due": 0.0}
    chart: ui.echart | None = None

    async def tick() -> None:
        nonlocal chart
        if chart is None:
            with map_box:
                chart = ui.echart(map_options(state["rows"])).classes("w-full h-72")
                chart.props(
                    'role="img" aria-label="Map of the sites: Dalian (lab), Harbin, Tianjin"'
                )
        new = await run.io_bound(fleet_rows)
        if new is None:  # the hub is shutting down
            return
        if new != state["rows"]:
            state["rows"] = new
            table.rows = new
            table.update()
        timer.interval = LARGE_FLEET_REFRESH_S if len(new) > LARGE_FLEET else REFRESH_S
        state["map_due"] += timer.interval
        if state["map_due"] >= MAP_REFRESH_S:
            state["map_due"] = 0.0
            options = map_options(new)
            if options["series"][1]["data"] != chart.options["series"][1]["data"]:
                chart.options["series"][1]["data"] = options["series"][1]["data"]
                chart.update()

    timer = ui.timer(REFRESH_S, tick)
