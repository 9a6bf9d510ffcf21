"""The weekly report: fleet and per-machine KPIs as HTML, PDF and Parquet.

One matplotlib figure per view, drawn once and written both into the HTML (as PNG)
and into the PDF (as vector pages), so both show the same thing:

- fleet: OEE and its three factors per machine; time per execution state;
- per machine: parts and energy per day; cycle run times per program; the load
  spectrum (hours at spindle speed × load, for designers); its alarms of the week.

The Parquet file holds one KPI row per machine and day, for use elsewhere.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on a hub
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from matplotlib.backends.backend_pdf import PdfPages  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ..model import Execution  # noqa: E402
from .fleet_kpis import MachineKpis, machine_kpis, merge_kpis  # noqa: E402

DAY_S = 86_400.0
STATE_COLOURS = {"ACTIVE": "#2e7d32", "INTERRUPTED": "#f9a825", "STOPPED": "#c62828",
                 "READY": "#90a4ae", "PROGRAM_COMPLETED": "#64b5f6"}  # fmt: skip


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    pdf: Path
    parquet: Path
    figures: int  # plots in each of the HTML and the PDF


@dataclass(frozen=True)
class MachineWeek:
    kpis: MachineKpis  # the whole period
    days: list[MachineKpis]  # one per day
    alarms: list  # hub.store.StoredAlarm of the period


def iso_week(text: str) -> tuple[float, float]:
    """``2026-W47`` → (Monday 00:00 UTC, next Monday 00:00 UTC) as epoch seconds."""
    try:
        year, week = text.split("-W")
        monday = dt.date.fromisocalendar(int(year), int(week), 1)
    except ValueError:
        raise ValueError(f"week {text!r}: expected YEAR-Www, e.g. 2026-W47") from None
    t0 = dt.datetime.combine(monday, dt.time(), dt.UTC).timestamp()
    return t0, t0 + 7 * DAY_S


def collect(store, t0: float, t1: float, machines: Sequence[str] | None = None,  # noqa: ANN001 - hub.Store
            progress: Callable[[float], None] | None = None) -> dict[str, MachineWeek]:  # fmt: skip
    """Each machine's KPIs over the period and per day (days cut at t0 + k·24 h)."""
    ids = list(machines) if machines else sorted(d.machine_id for d in store.machines())
    out = {}
    for i, m in enumerate(ids):
        edges = np.append(np.arange(t0, t1, DAY_S), t1)
        days = [
            machine_kpis(store, m, float(a), float(b))
            for a, b in zip(edges[:-1], edges[1:], strict=True)
        ]
        whole = merge_kpis(days)
        alarms = [a for a in store.alarms(m, since=t0) if a.alarm.raised_at < t1]
        out[m] = MachineWeek(whole, days, alarms)
        if progress:
            progress((i + 1) / len(ids))
    return out


def write_weekly_report(store, t0: float, t1: float, out_dir: Path | str,  # noqa: ANN001 - hub.Store
                        machines: Sequence[str] | None = None,
                        progress: Callable[[float], None] | None = None) -> ReportFiles:  # fmt: skip
    """Write ``report.html``, ``report.pdf`` and ``kpis.parquet`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weeks = collect(store, t0, t1, machines, progress)
    if not weeks:
        raise ValueError("no machines in the store: nothing to report")
    figures = _figures(weeks)
    title = f"machinetwin weekly report, {_day(t0)} – {_day(t1 - 1)}"
    files = ReportFiles(out / "report.html", out / "report.pdf", out / "kpis.parquet", len(figures))
    _write_pdf(files.pdf, title, weeks, figures)
    files.html.write_text(_html(title, weeks, figures), encoding="utf-8")
    _write_parquet(files.parquet, weeks)
    for _, fig in figures:
        plt.close(fig)
    return files


# --- figures -------------------------------------------------------------------------------


def _figures(weeks: dict[str, MachineWeek]) -> list[tuple[str, Figure]]:
    figs = [("Fleet OEE", _oee_figure(weeks)), ("Fleet time by state", _state_figure(weeks))]
    for m, w in weeks.items():
        figs.append((f"{m}: parts and energy per day", _daily_figure(m, w)))
        figs.append((f"{m}: load spectrum", _load_figure(m, w.kpis)))
        if any(w.kpis.cycles_by_program.values()):
            figs.append((f"{m}: cycle run times", _cycle_figure(m, w.kpis)))
    return figs


def _oee_figure(weeks: dict[str, MachineWeek]) -> Figure:
    fig, ax = plt.subplots(figsize=(9, 4))
    names = list(weeks)
    x = np.arange(len(names))
    factors = ("availability", "performance", "quality", "oee")
    colours = ("#1565c0", "#6a1b9a", "#00838f", "#ef6c00")
    for k, (f, c) in enumerate(zip(factors, colours, strict=True)):
        values = [getattr(weeks[m].kpis, f) for m in names]
        ax.bar(x + (k - 1.5) * 0.2, np.nan_to_num(values) * 100, 0.2, label=f, color=c)
    ax.set_xticks(x, names)
    ax.set_ylabel("%")
    ax.set_ylim(0, 105)
    ax.legend(ncols=4, loc="lower center", fontsize=8)
    ax.set_title("OEE = availability × performance × quality")
    fig.tight_layout()
    return fig


def _state_figure(weeks: dict[str, MachineWeek]) -> Figure:
    fig, ax = plt.subplots(figsize=(9, 3))
    left = np.zeros(len(weeks))
    for state in [e.name for e in Execution] + ["NO DATA"]:
        hours = np.array([(w.kpis.no_data_s if state == "NO DATA" else w.kpis.state_s.get(state, 0.0))
                          / 3600 for w in weeks.values()])  # fmt: skip
        ax.barh(list(weeks), hours, left=left, label=state.lower(),
                color=STATE_COLOURS.get(state, "#e0e0e0"))  # fmt: skip
        left += hours
    ax.set_xlabel("hours")
    ax.legend(ncols=6, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.3))
    fig.tight_layout()
    return fig


def _daily_figure(machine: str, week: MachineWeek) -> Figure:
    fig, ax = plt.subplots(figsize=(9, 3))
    labels = [_day(d.t0) for d in week.days]
    ax.bar(labels, [d.parts for d in week.days], color="#1565c0", label="parts")
    ax.set_ylabel("parts")
    ax2 = ax.twinx()
    ax2.plot(labels, [d.energy_j / 3.6e6 for d in week.days], "o-", color="#ef6c00", label="energy")
    ax2.set_ylabel("energy, kWh")
    ax.set_title(f"{machine}: parts and energy per day")
    fig.tight_layout()
    return fig


def _load_figure(machine: str, kpis: MachineKpis) -> Figure:
    fig, ax = plt.subplots(figsize=(7, 4))
    hours = np.where(kpis.load_hours > 0, kpis.load_hours, np.nan)
    mesh = ax.pcolormesh(np.arange(hours.shape[1] + 1), np.arange(hours.shape[0] + 1), hours,
                         cmap="viridis")  # fmt: skip
    ax.set_xticks(np.arange(len(kpis.load_edges)), [f"{e:g}" for e in kpis.load_edges], fontsize=7)
    ax.set_yticks(
        np.arange(len(kpis.speed_edges)), [f"{e:g}" for e in kpis.speed_edges], fontsize=7
    )
    ax.set_xlabel("spindle load, %")
    ax.set_ylabel("spindle speed, rpm")
    fig.colorbar(mesh, ax=ax, label="hours")
    ax.set_title(f"{machine}: load spectrum (time at speed × load)")
    fig.tight_layout()
    return fig


def _cycle_figure(machine: str, kpis: MachineKpis) -> Figure:
    fig, ax = plt.subplots(figsize=(7, 3))
    programs = {p: c for p, c in kpis.cycles_by_program.items() if c}
    ax.boxplot(list(programs.values()), tick_labels=list(programs))
    ax.set_ylabel("cycle run time, s")
    ax.set_title(f"{machine}: cycle run times per program")
    fig.tight_layout()
    return fig


# --- outputs -------------------------------------------------------------------------------


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return base64.b64encode(buf.getvalue()).decode()


def _write_pdf(path: Path, title: str, weeks: dict[str, MachineWeek],
               figures: list[tuple[str, Figure]]) -> None:  # fmt: skip
    with PdfPages(path) as pdf:
        cover = plt.figure(figsize=(9, 6))
        cover.text(0.05, 0.92, title, fontsize=15, weight="bold")
        rows = [_fmt_row(m, w.kpis.summary()) for m, w in weeks.items()]
        rows.append(
            _fmt_row("fleet", merge_kpis([w.kpis for w in weeks.values()], "fleet").summary())
        )
        table = cover.add_axes((0.05, 0.3, 0.9, 0.55))
        table.axis("off")
        table.table(cellText=rows, colLabels=["machine", *_COLUMNS.values()], loc="upper center")
        pdf.savefig(cover)
        plt.close(cover)
        for _, fig in figures:
            pdf.savefig(fig)
        info = pdf.infodict()
        info["Title"] = title


_COLUMNS = {"oee": "OEE", "availability": "avail.", "performance": "perf.", "quality": "quality",
            "utilisation": "util.", "parts": "parts", "energy_per_part_kwh": "kWh/part"}  # fmt: skip


def _fmt_row(name: str, s: dict) -> list[str]:
    out = [name]
    for key in _COLUMNS:
        v = s[key]
        out.append(f"{v:.0f}" if key == "parts" else f"{v:.3f}" if key.endswith("kwh")
                   else "–" if v != v else f"{100 * v:.1f} %")  # fmt: skip
    return out


def _html(title: str, weeks: dict[str, MachineWeek], figures: list[tuple[str, Figure]]) -> str:
    rows = [_fmt_row(m, w.kpis.summary()) for m, w in weeks.items()]
    rows.append(_fmt_row("fleet", merge_kpis([w.kpis for w in weeks.values()], "fleet").summary()))
    head = "".join(f"<th>{c}</th>" for c in ("machine", *_COLUMNS.values()))
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows
    )
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:960px;margin:auto}table{border-collapse:"
             "collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}</style></head>",
             f"<body><h1>{html.escape(title)}</h1><table><tr>{head}</tr>{body}</table>"]  # fmt: skip
    for caption, fig in figures:
        parts.append(f"<h2>{html.escape(caption)}</h2><img alt='{html.escape(caption)}' "
                     f"src='data:image/png;base64,{_png(fig)}'>")  # fmt: skip
    for m, w in weeks.items():
        parts.append(f"<h2>{html.escape(m)}: alarms</h2>" + _alarm_table(w.alarms))
    parts.append("</body></html>")
    return "\n".join(parts)


def _alarm_table(alarms: list) -> str:
    if not alarms:
        return "<p>none</p>"
    rows = "".join(
        f"<tr><td>{_day(a.alarm.raised_at)} {dt.datetime.fromtimestamp(a.alarm.raised_at, dt.UTC):%H:%M}"
        f"</td><td>{a.alarm.code}</td><td>{a.alarm.severity.name.lower()}</td>"
        f"<td style='text-align:left'>{html.escape(a.alarm.message)}</td></tr>"
        for a in alarms[:200]
    )
    return f"<table><tr><th>raised (UTC)</th><th>code</th><th>severity</th><th>message</th></tr>{rows}</table>"


def _write_parquet(path: Path, weeks: dict[str, MachineWeek]) -> None:
    rows = [d.summary() for w in weeks.values() for d in w.days]
    pq.write_table(pa.Table.from_pylist(rows), path)


def _day(t: float) -> str:
    return f"{dt.datetime.fromtimestamp(t, dt.UTC):%Y-%m-%d}"
