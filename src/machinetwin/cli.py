"""The ``machinetwin`` command line.

Each part of the product adds a sub-command group here; ``gcode`` is the first.
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from . import __version__
from .analytics.cli import analyze_app
from .analytics.report_cli import report_app, simulate_fleet
from .errors import GCodeError
from .gcode import (
    ToolTable,
    check_program,
    format_rs274,
    interpret,
    program_stats,
    to_machine_frame,
)

app = typer.Typer(help="machinetwin: remote monitoring, twins and safe remote control of CNC machines.",
                  no_args_is_help=True)  # fmt: skip
gcode_app = typer.Typer(help="Check, interpret and measure RS274/NGC (G-code) programs.",
                        no_args_is_help=True)  # fmt: skip
app.add_typer(gcode_app, name="gcode")

err = Console(stderr=True)


class Units(StrEnum):
    mm = "mm"
    inch = "inch"


class CanonFormat(StrEnum):
    rs274 = "rs274"
    jsonl = "jsonl"


class Frame(StrEnum):
    program = "program"
    machine = "machine"


PROGRAM = typer.Argument(..., exists=True, dir_okay=False, readable=True, help="G-code program")
TOOL_TABLE = typer.Option(None, "--tool-table", "-t", exists=True, dir_okay=False,
                          help="LinuxCNC tool table file")  # fmt: skip
MACHINE_UNITS = typer.Option(
    None, "--machine-units",
    help="Units of the tool table and stored parameters. Default: inch for --format rs274 "
         "(as standalone LinuxCNC rs274 reads them), otherwise mm.",
)  # fmt: skip


def load_tool_table(path: Path | None, units: str) -> ToolTable | None:
    if path is None:
        return None
    try:
        return ToolTable.load(path, units)
    except GCodeError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None


@app.callback()
def main(version: bool = typer.Option(False, "--version", help="Print the version and exit.")):
    if version:
        typer.echo(__version__)
        raise typer.Exit()


@gcode_app.command("check")
def gcode_check(
    program: Path = PROGRAM,
    tool_table: Path | None = TOOL_TABLE,
    machine_units: Units = typer.Option(Units.mm, "--machine-units", help="Tool table units"),
) -> None:
    """Report every error as PROG.ngc:LINE:COL: message; exit 1 if there is any."""
    table = load_tool_table(tool_table, machine_units.value)
    errors = check_program(program, table, machine_units.value)
    for exc in errors:
        typer.echo(str(exc))
    if errors:
        err.print(f"[red]{len(errors)} error(s)[/red] in {program}")
        raise typer.Exit(1)
    err.print(f"[green]{program}: no errors[/green]")


@gcode_app.command("canon")
def gcode_canon(
    program: Path = PROGRAM,
    fmt: CanonFormat = typer.Option(CanonFormat.rs274, "--format", "-f", help="Output format"),
    tool_table: Path | None = TOOL_TABLE,
    machine_units: Units | None = MACHINE_UNITS,
    frame: Frame = typer.Option(
        Frame.program, "--frame", help="Coordinates of jsonl output: program units or machine mm"
    ),  # fmt: skip
) -> None:
    """Print the canonical machining operations the program produces."""
    units = (machine_units or (Units.inch if fmt is CanonFormat.rs274 else Units.mm)).value
    table = load_tool_table(tool_table, units)
    ops = interpret(program, table, machine_units=units)
    out = sys.stdout
    try:
        if fmt is CanonFormat.rs274:
            if frame is Frame.machine:
                raise typer.BadParameter("--format rs274 prints the program frame, as rs274 does")
            for text in format_rs274(ops):
                out.write(text + "\n")
        else:
            stream = to_machine_frame(ops) if frame is Frame.machine else ops
            for op in stream:
                out.write(json.dumps(op.to_dict()) + "\n")
    except GCodeError as exc:
        out.flush()
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None


@gcode_app.command("stats")
def gcode_stats(
    program: Path = PROGRAM,
    tool_table: Path | None = TOOL_TABLE,
    machine_units: Units = typer.Option(Units.mm, "--machine-units", help="Tool table units"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table"),
) -> None:
    """Bounding box, rapid and feed path lengths, tools and a cycle-time estimate."""
    table = load_tool_table(tool_table, machine_units.value)
    try:
        st = program_stats(interpret(program, table, machine_units=machine_units.value))
    except GCodeError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(st.to_dict()))
        return
    t = Table(title=f"{program.name}", show_header=False)
    if st.has_motion:
        lo, hi = st.bbox_min, st.bbox_max
        for i, axis in enumerate("XYZ"):
            t.add_row(f"{axis} range (machine, mm)", f"{lo[i]:.3f} … {hi[i]:.3f}")
    t.add_row("rapid path", f"{st.rapid_mm:.1f} mm in {st.rapid_moves} moves")
    t.add_row("feed path", f"{st.feed_mm:.1f} mm in {st.feed_moves} lines and {st.arcs} arcs")
    t.add_row("tools", ", ".join(f"T{n}" for n in st.tools) or "none changed")
    t.add_row("dwell", f"{st.dwell_s:.1f} s")
    minutes, seconds = divmod(st.cycle_time_s, 60)
    t.add_row("cycle time (estimate)", f"{int(minutes)} min {seconds:.0f} s")
    Console().print(t)


# --- the virtual machine ---------------------------------------------------------------

sim_app = typer.Typer(help="Run the virtual machine tool on a program and report on the run.",
                      no_args_is_help=True)  # fmt: skip
app.add_typer(sim_app, name="sim")
sim_app.command("fleet")(simulate_fleet)
app.add_typer(report_app, name="report")


@sim_app.command("run")
def sim_run(
    program: Path = PROGRAM,
    out: Path = typer.Option(..., "--out", "-o", help="Telemetry file to write (.parquet)"),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same run"),
    fault: list[str] = typer.Option(
        [],
        "--fault",
        help="KIND:SEVERITY@TIME, e.g. bearing_outer:0.5@60 "
        "(kinds: bearing_outer, bearing_inner, bearing_ball, tool_wear, "
        "tool_breakage, backlash, encoder_noise, coolant_failure)",
    ),  # fmt: skip
    machine: Path | None = typer.Option(
        None,
        "--machine",
        exists=True,
        dir_okay=False,
        help="Machine file (TOML); default: the built-in VMC",
    ),  # fmt: skip
    rate: float = typer.Option(100.0, "--rate", help="Telemetry sample rate in Hz (servo: 1 kHz)"),
) -> None:
    """Simulate as fast as possible and write the telemetry, alarms and fault ground truth."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from .errors import CommandRejected, ConfigError
    from .machine import load_machine_config
    from .machine.faults import FaultSchedule, parse_fault
    from .machine.runfile import write_run
    from .machine.simulator import SimOptions, simulate, tool_table_from

    try:
        config = load_machine_config(machine)
        faults = FaultSchedule([parse_fault(f) for f in fault])
        ops = interpret(program, tool_table_from(config), machine_units="mm")
        estimate = program_stats(ops).cycle_time_s or 1.0
    except (ConfigError, GCodeError) as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    columns = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[sim]}"),
               TimeElapsedColumn()]  # fmt: skip
    with Progress(*columns, console=err) as bar:
        task = bar.add_task(f"simulating {program.name}", total=estimate, sim="")

        def progress(t: float) -> None:
            bar.update(task, completed=min(t, estimate), sim=f"{t:,.0f} s machine time")

        try:
            run = simulate(program, config, SimOptions(seed=seed, sample_rate_hz=rate), faults,
                           progress=progress)  # fmt: skip
        except CommandRejected as exc:
            err.print(f"[red]refused: {exc}[/red]")
            raise typer.Exit(1) from None
        bar.update(task, completed=estimate)
    write_run(out, run)
    meta = run.meta
    err.print(f"[green]{meta['program']}: {meta['execution']} after {meta['duration_s']:.1f} s[/green], "
              f"{meta['removed_volume_mm3']:.0f} mm³ removed, {meta['energy_kwh']:.3f} kWh, "
              f"{len(run.alarms)} alarm(s); telemetry in {out}")  # fmt: skip
    for alarm in run.alarms:
        err.print(
            f"  [yellow]{alarm.code.value}[/yellow] t={alarm.raised_at:.1f} s {alarm.message}"
        )


@sim_app.command("report")
def sim_report(
    run_file: Path = typer.Argument(..., exists=True, dir_okay=False, help="A sim run's .parquet"),
    out: Path = typer.Option(..., "--out", "-o", help="HTML file to write"),
) -> None:
    """Plots of positions, feed, spindle load/power/temperature, vibration and the part."""
    from .errors import ConfigError
    from .machine.report import write_report
    from .machine.runfile import read_run

    try:
        run = read_run(run_file)
    except ConfigError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    write_report(run, out, f"machinetwin run: {run.meta.get('program', run_file.name)}")
    err.print(f"[green]report written to {out}[/green]")


# --- the spine: hub, edge and the demo -------------------------------------------------------


def _fail_on_config_error(run) -> None:
    from .errors import ConfigError

    try:
        run()
    except ConfigError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None


hub_app = typer.Typer(help="The hub: run it (--config), and manage its users (user ...).")
app.add_typer(hub_app, name="hub")


@hub_app.callback(invoke_without_command=True)
def hub_command(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None, "--config", "-c", exists=True, dir_okay=False, help="Hub file (TOML)"
    ),  # fmt: skip
) -> None:
    """Run the hub: broker (embedded unless configured), ingest, store and API."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = {"hub_config": config}  # `hub --config X user ...` finds the same hub
        return
    if config is None:
        raise typer.BadParameter("a hub file is needed to run the hub", param_hint="--config")
    from .hub.service import main as hub_main

    _fail_on_config_error(lambda: hub_main(config))


def _add_hub_user_commands() -> None:
    from .hub.user_cli import user_app

    hub_app.add_typer(user_app, name="user")


_add_hub_user_commands()


def _add_hub_ingest_command() -> None:
    from .hub.ingest_cli import ingest_command

    hub_app.command("ingest")(ingest_command)


_add_hub_ingest_command()


edge_app = typer.Typer(help="The edge: run a site (--config), and grant remote operation (permit).")
app.add_typer(edge_app, name="edge")


@edge_app.callback(invoke_without_command=True)
def edge_command(
    ctx: typer.Context,
    config: Path | None = typer.Option(
        None, "--config", "-c", exists=True, dir_okay=False, help="Site file (TOML)"
    ),  # fmt: skip
) -> None:
    """Run the edge agent of one site: its machines, the durable buffer and the uplink."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = {"edge_config": config}
        return
    if config is None:
        raise typer.BadParameter("a site file is needed to run the edge", param_hint="--config")
    import asyncio

    from .edge.agent import EdgeAgent, build_adapters, load_edge_config
    from .edge.buffer import DurableBuffer

    def run() -> None:
        cfg = load_edge_config(config)
        buffer = DurableBuffer(cfg.buffer.path, int(cfg.buffer.quota_mb * 2**20), cfg.buffer.fsync)
        agent = EdgeAgent(
            build_adapters(cfg, config.resolve().parent), cfg.broker.address(), buffer
        )
        err.print(
            f"edge {cfg.site}: {len(cfg.machines)} machine(s) → {cfg.broker.host}:{cfg.broker.port}"
        )
        try:
            asyncio.run(agent.run())
        except KeyboardInterrupt:
            pass
        finally:
            agent.close()
            buffer.close()

    _fail_on_config_error(run)


def _add_edge_permit_command() -> None:
    from .edge.permit import permit_command

    edge_app.command("permit")(permit_command)


_add_edge_permit_command()

audit_app = typer.Typer(help="The hub's audit log of remote commands.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
app.add_typer(analyze_app, name="analyze")


@audit_app.command("verify")
def audit_verify(
    log: Path = typer.Argument(..., help="The audit log (audit.sqlite next to the hub's store)"),
) -> None:
    """Recompute the log's hash chain from the start; exit 1 if any entry was changed."""
    from .hub.commands import verify_audit

    ok, message = verify_audit(log)
    if not ok:
        err.print(message, markup=False, highlight=False)
        raise typer.Exit(1)
    typer.echo(message)


@app.command("demo")
def demo_command(
    data_dir: Path = typer.Option(
        Path(".demo"), "--data-dir", help="Where the demo keeps its files"
    ),
    port: int = typer.Option(8080, "--port", help="API port"),
    duration: float | None = typer.Option(None, "--duration", help="Stop after this many seconds"),
    with_linuxcnc: bool = typer.Option(
        False, "--with-linuxcnc", help="Add a real CNC controller: headless LinuxCNC in Harbin"
    ),
    with_replay: bool = typer.Option(
        False, "--with-replay", help="Add a recorded UMich mill replayed live in Tianjin"
    ),
) -> None:
    """A hub and three virtual machine tools (Harbin, Tianjin, Dalian) on emulated links."""
    from .demo import main as demo_main

    demo_main(data_dir, port, duration, with_linuxcnc=with_linuxcnc, with_replay=with_replay)
