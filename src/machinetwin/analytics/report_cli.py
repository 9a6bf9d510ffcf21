"""``machinetwin report weekly`` and ``machinetwin sim fleet``: fleet KPIs on files.

``sim fleet`` fills a hub store with a simulated fleet (the demo's three sites, with
faults), so that the report and the analytics can be tried without a week of waiting.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import Progress

report_app = typer.Typer(help="Reports over a hub's store: fleet KPIs, OEE, load spectra.",
                         no_args_is_help=True)  # fmt: skip
err = Console(stderr=True)

STORE = typer.Option(..., "--store", "-s", help="The hub's DuckDB store file")


def _last_week() -> str:
    year, week, _ = (dt.datetime.now(dt.UTC) - dt.timedelta(days=7)).isocalendar()
    return f"{year}-W{week:02d}"


@report_app.command("weekly")
def weekly(
    store: Path = STORE,
    week: str = typer.Option(
        None, "--week", "-w", help="ISO week, e.g. 2026-W47 (default: last week)"
    ),
    out: Path = typer.Option(Path("weekly-report"), "--out", "-o", help="Folder for the files"),
    machine: list[str] = typer.Option(None, "--machine", "-m", help="Only these machines"),
) -> None:
    """HTML and PDF report with plots, and a Parquet file of KPIs per machine and day."""
    from ..hub.duckdb_store import DuckDBStore
    from .weekly_report import iso_week, write_weekly_report

    if not store.exists():
        raise typer.BadParameter(f"{store}: no such store file", param_hint="--store")
    try:
        t0, t1 = iso_week(week or _last_week())
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--week") from None
    db = DuckDBStore(store)
    try:
        with Progress(console=err, transient=True) as bar:
            task = bar.add_task("machines", total=1.0)
            files = write_weekly_report(db, t0, t1, out, machine or None,
                                        progress=lambda f: bar.update(task, completed=f))  # fmt: skip
    except ValueError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    finally:
        db.close()
    print(json.dumps({"html": str(files.html), "pdf": str(files.pdf), "parquet": str(files.parquet),
                      "figures": files.figures}))  # fmt: skip


def simulate_fleet(
    store: Path = STORE,
    hours: float = typer.Option(24.0, "--hours", help="Machine time to simulate per machine"),
    start: str = typer.Option(
        None, "--start", help="UTC start, e.g. 2026-11-16T00:00 (default: last Monday)"
    ),
) -> None:
    """Simulate the demo's three machines (with their faults) into a hub store."""
    from ..demo import SITES
    from ..hub.duckdb_store import DuckDBStore
    from ..machine.fleet_run import EXAMPLES, FleetMachine, run_fleet_into_store

    if hours <= 0:
        raise typer.BadParameter("must be positive", param_hint="--hours")
    if start:
        try:
            epoch = dt.datetime.fromisoformat(start).replace(tzinfo=dt.UTC).timestamp()
        except ValueError:
            raise typer.BadParameter(
                f"{start!r}: expected YYYY-MM-DDTHH:MM", param_hint="--start"
            ) from None
    else:
        epoch = dt.datetime.fromisoformat(_last_week_monday()).replace(tzinfo=dt.UTC).timestamp()
    machines = [FleetMachine(s.machine_id, s.name, tuple(EXAMPLES / p for p in s.programs),
                             s.faults, seed=i) for i, s in enumerate(SITES)]  # fmt: skip
    db = DuckDBStore(store)
    try:
        with Progress(console=err) as bar:
            task = bar.add_task(f"simulating {len(machines)} machines × {hours:g} h", total=1.0)
            n = run_fleet_into_store(db, machines, hours * 3600, epoch,
                                     progress=lambda f: bar.update(task, completed=f))  # fmt: skip
    finally:
        db.close()
    print(
        json.dumps({"store": str(store), "machines": len(machines), "batches": n, "start": epoch})
    )


def _last_week_monday() -> str:
    today = dt.datetime.now(dt.UTC).date()
    return (today - dt.timedelta(days=today.weekday() + 7)).isoformat()
