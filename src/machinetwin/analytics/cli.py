"""``machinetwin analyze``: bearing diagnosis and tool condition on data files.

Each command prints its reasoning first and, as its last line, one JSON object
that scripts can parse.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from ..errors import MachinetwinError

# The analysis modules (scipy, numpy) are imported inside the commands: every
# ``machinetwin`` command imports this file to build its help.

analyze_app = typer.Typer(
    help="Diagnose bearings and tool condition from recorded data files.", no_args_is_help=True
)
err = Console(stderr=True)

DATA_FILE = typer.Argument(..., dir_okay=False, help="data file")


def _fail(exc: Exception) -> None:
    err.print(f"[red]{exc}[/red]", highlight=False, soft_wrap=True)  # one line per error
    raise typer.Exit(1)


@analyze_app.command("bearing")
def analyze_bearing(
    file: Path = DATA_FILE,
    rpm: float | None = typer.Option(None, "--rpm", help="Shaft speed; default: the file's RPM"),
    bearing: str = typer.Option("6205-2RS", "--bearing", help="Bearing designation"),
    channel: str = typer.Option("DE", "--channel", help="Accelerometer: DE, FE or BA"),
) -> None:
    """Diagnose a CWRU-format .mat vibration file: normal, inner_race, outer_race or ball.

    Physics-based (envelope analysis at the bearing's defect frequencies): no training.
    """
    from .bearing_diagnosis import diagnose_bearing
    from .bearings import bearing as bearing_by_name
    from .datasets import load_cwru

    try:
        geometry = bearing_by_name(bearing)
        record = load_cwru(file, channel.upper())
        speed = rpm if rpm is not None else record.rpm
        if speed is None:
            raise MachinetwinError(f"{file}: no X<nnn>RPM variable; give the speed with --rpm")
        result = diagnose_bearing(record.signal, record.rate_hz, speed / 60.0, geometry)
    except (MachinetwinError, ValueError) as exc:
        _fail(exc)
    typer.echo(f"{file.name}: {record.signal.size / record.rate_hz:.1f} s at {speed:g} rpm, "
               f"bearing {geometry.designation}")  # fmt: skip
    typer.echo(result.explanation)
    typer.echo(json.dumps(result.as_json()))


@analyze_app.command("tool-condition")
def analyze_tool_condition(file: Path = DATA_FILE) -> None:
    """Worn or unworn tool from a UMich-format experiment CSV (spindle and axis loads).

    Uses the model bundled with machinetwin, trained on the 14 UMich CNC mill experiments.
    """
    from .datasets import load_umich
    from .tool_condition import bundled_model, segments

    try:
        experiment = load_umich(file)
        model = bundled_model()
        segs = segments(experiment)
        probs = model.segment_probabilities(segs)
    except (MachinetwinError, ValueError) as exc:
        _fail(exc)
    for name, p in zip(segs.names, probs, strict=True):
        typer.echo(f"{name:>14}: P(worn) {p:.2f}")
    p_worn = float(probs.mean())
    typer.echo(
        json.dumps(
            {"tool_condition": "worn" if p_worn >= 0.5 else "unworn",
             "probability_worn": round(p_worn, 4)}
        )
    )  # fmt: skip
