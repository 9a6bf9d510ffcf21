"""Fault detection on a simulated fleet: detection delay per fault, false alarms per machine-week.

Six virtual machining centres (three programs in a loop each) run for 24 hours of
machine time under the hub's monitors (analytics/monitor.py, the same objects the
analytics worker runs), with faults injected at known times: the three bearing
defects, accelerated tool wear, backlash, and one healthy machine. The ground truth is
the simulator's own (analytics/fleet_eval.py says what counts as detected and what as a
false alarm). Machines run in parallel on the available cores.

Prints one row per fault and per machine and, as its last line, one JSON object:
``faults``, ``detected``, ``detected_before_machine_alarm``, ``detection_delay_median_s``,
``detection_delay_max_s``, ``false_alarms``, ``false_alarms_per_machine_week`` (target < 1)
and ``machine_hours``. ``--quick`` runs 20 minutes of machine time with faults early
(under 50 s on two cores); ``--hours H`` sets the run length.

Usage: ``.venv/bin/python benchmarks/fleet_detection.py [--quick] [--hours H] [--workers N]``
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor

from rich.console import Console
from rich.table import Table

from machinetwin.analytics.fleet_eval import MachineResult, Scenario, run_scenario, summarise
from machinetwin.machine.fleet_run import EXAMPLES

PROGRAMS = tuple(EXAMPLES / p for p in ("pocket.ngc", "face.ngc", "drill.ngc"))


def scenarios(hours: float, quick: bool) -> list[Scenario]:
    """Faults start a quarter into the run (bearings grow to full size in an hour);
    the quick run wears its tool faster, to see it within minutes."""
    start = f"{hours * 0.25:.3f}h"
    wear = 1.0 if quick else 0.3
    return [
        Scenario("vmc-outer", PROGRAMS, (f"bearing_outer:0.5@{start}",), seed=1),
        Scenario("vmc-inner", PROGRAMS, (f"bearing_inner:0.5@{start}",), seed=2),
        Scenario("vmc-ball", PROGRAMS, (f"bearing_ball:0.5@{start}",), seed=3),
        Scenario("vmc-wear", PROGRAMS, (f"tool_wear:{wear}@{start}",), seed=4),
        Scenario("vmc-backlash", PROGRAMS, (f"backlash:0.5@{start}",), seed=5),
        Scenario("vmc-healthy", PROGRAMS, (), seed=6),
    ]


def _run(args: tuple[Scenario, float]) -> MachineResult:
    return run_scenario(*args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 minutes of machine time")
    parser.add_argument("--hours", type=float, default=None, help="machine time per machine")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    hours = args.hours or (20 / 60 if args.quick else 24.0)
    console = Console(stderr=True)
    started = time.perf_counter()
    jobs = [(s, hours) for s in scenarios(hours, args.quick)]
    status = f"simulating {len(jobs)} machines × {hours:g} h on {args.workers} workers"
    with console.status(status), ProcessPoolExecutor(args.workers) as pool:
        results = list(pool.map(_run, jobs))
    elapsed = time.perf_counter() - started
    show(console, results)
    summary = summarise(results)
    summary["wall_s"] = round(elapsed, 1)
    print(json.dumps(summary))


def show(console: Console, results: list[MachineResult]) -> None:
    faults = Table(title="Injected faults")
    for column in ("machine", "fault", "detected after", "before machine alarm"):
        faults.add_column(column, no_wrap=True)
    for r in results:
        for f in r.faults:
            delay = "missed" if f.delay_s is None else f"{f.delay_s / 60:.1f} min"
            faults.add_row(r.machine, f.fault, delay, "yes" if f.before_machine_alarm else "NO")
    console.print(faults)
    for r in results:
        for f in r.faults:
            if f.message:
                console.print(f"[bold]{r.machine}[/bold]: {f.message}")
    machines = Table(title="False alarms")
    for column in ("machine", "hours", "monitor alarms", "false"):
        machines.add_column(column, no_wrap=True)
    for r in results:
        machines.add_row(r.machine, f"{r.hours:.2f}", str(r.alarms), str(len(r.false_alarms)))
    console.print(machines)
    for r in results:
        for text in r.false_alarms:
            console.print(f"[red]false alarm[/red] {r.machine}: {text}")


if __name__ == "__main__":
    main()
