"""A recorded machine: plays UMich CNC mill experiments as a live machine.

The University of Michigan "CNC Mill Tool Wear" recordings (``../shared/data/
umich-cnc-mill``, one CSV per experiment, one row per 100 ms) are mapped to canonical
signals and units and handed to the edge as :class:`SampleBatch` objects every
``batch_period_s`` of wall time, at the recorded pace or ``speed`` times faster. The
experiments play one after another and, with ``loop``, start over.

Mapping (recorded unit → canonical unit):

- ``X1/Y1/Z1_ActualPosition`` → ``x/y/z.pos`` (mm), ``*_CommandPosition`` →
  ``*.pos_cmd`` (mm), their difference → ``*.ferr`` (command − actual, mm);
- ``S1_ActualVelocity`` / ``S1_CommandVelocity`` → ``spindle.speed`` / ``spindle.speed_cmd``
  in rpm. The data set labels every velocity mm/s; for the spindle the recorded value
  (about 53 while cutting) is read as revolutions per second (3,200 rpm, a plausible
  speed for milling wax), hence the factor 60;
- ``S1_OutputPower`` (kW) → ``spindle.power`` (W);
- ``M1_CURRENT_FEEDRATE`` (mm/s) → ``feed_cmd`` (mm/min); the path speed from the three
  actual axis velocities (mm/s) → ``feed`` (mm/min);
- ``M1_sequence_number`` → ``line``;
- ``Machining_Process`` → ``execution`` (``Starting`` READY, ``end`` PROGRAM_COMPLETED,
  every other phase ACTIVE) and a ``process`` event with the phase's name when it changes;
  each experiment starts with a ``program`` event naming it and its tool condition.

Timestamps are wall-clock: recorded time divided by ``speed`` from the moment playing
started, so that the hub lines the replayed machine up with live ones (at 10× the
machine's motions look ten times faster, as they should for a time-compressed replay).
"""

from __future__ import annotations

import asyncio
import csv
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import CommandRejected, ConfigError
from ..model import AdapterCommand, Execution, MachineDescriptor, MachineEvent, SampleBatch

ROW_PERIOD_S = 0.1  # the recordings' sample period
SPINDLE_REV_PER_S_TO_RPM = 60.0
KW_TO_W = 1000.0
MM_PER_S_TO_MM_PER_MIN = 60.0
AXES = ("x", "y", "z")
_AXIS_PREFIX = {"x": "X1", "y": "Y1", "z": "Z1"}
_NUMERIC = (
    *(f"{p}_{q}" for p in ("X1", "Y1", "Z1") for q in ("ActualPosition", "CommandPosition",
                                                       "ActualVelocity")),  # fmt: skip
    "S1_ActualVelocity", "S1_CommandVelocity", "S1_OutputPower",
    "M1_CURRENT_FEEDRATE", "M1_sequence_number",
)  # fmt: skip
SIGNALS = (
    *(f"{a}.{s}" for a in AXES for s in ("pos", "pos_cmd", "ferr")),
    "spindle.speed", "spindle.speed_cmd", "spindle.power", "feed", "feed_cmd", "line",
    "execution",
)  # fmt: skip


@dataclass(frozen=True)
class Recording:
    """One experiment, already in canonical signals and units (one row per sample)."""

    name: str
    columns: dict[str, np.ndarray]  # canonical signal -> float64 column
    process: np.ndarray  # Machining_Process per row (str objects)
    tool_condition: str

    def __len__(self) -> int:
        return len(self.process)


def _execution_codes(process: np.ndarray) -> np.ndarray:
    """Execution per row from the machining phase (see the module docstring)."""
    lower = np.char.lower(process.astype(str))
    codes = np.full(len(process), float(Execution.ACTIVE))
    codes[lower == "starting"] = float(Execution.READY)
    codes[lower == "end"] = float(Execution.PROGRAM_COMPLETED)
    return codes


def load_recording(path: str | Path) -> Recording:
    """Read one UMich experiment CSV; ConfigError names the file, the row and the column."""
    path = Path(path)
    try:
        with path.open(newline="") as f:
            rows = list(csv.reader(f))
    except OSError as e:
        raise ConfigError(f"{path}: cannot read recording: {e}") from None
    if len(rows) < 2:
        raise ConfigError(f"{path}: no samples (expected a header and rows)")
    header, body = rows[0], rows[1:]
    missing = [c for c in (*_NUMERIC, "Machining_Process") if c not in header]
    if missing:
        raise ConfigError(f"{path}: not a UMich CNC mill recording, missing columns {missing}")
    width = len(header)
    for i, row in enumerate(body):
        if len(row) != width:
            raise ConfigError(f"{path}:{i + 2}: {len(row)} fields, the header has {width}")
    table = np.array(body, dtype=object)
    raw: dict[str, np.ndarray] = {}
    for name in _NUMERIC:
        col = table[:, header.index(name)]
        try:
            raw[name] = col.astype(np.float64)
        except ValueError:
            bad = next(i for i, v in enumerate(col) if not _is_float(v))
            raise ConfigError(
                f"{path}:{bad + 2}: column {name}: not a number: {col[bad]!r}"
            ) from None
    process = table[:, header.index("Machining_Process")]
    cond = "unknown"
    if "tool_condition" in header:
        cond = str(table[0, header.index("tool_condition")])
    return Recording(path.stem, canonical_columns(raw, process), process, cond)


def _is_float(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


def canonical_columns(raw: dict[str, np.ndarray], process: np.ndarray) -> dict[str, np.ndarray]:
    """Recorded columns (their units) to canonical signals (canonical units)."""
    out: dict[str, np.ndarray] = {}
    for axis in AXES:
        p = _AXIS_PREFIX[axis]
        out[f"{axis}.pos"] = raw[f"{p}_ActualPosition"]
        out[f"{axis}.pos_cmd"] = raw[f"{p}_CommandPosition"]
        out[f"{axis}.ferr"] = raw[f"{p}_CommandPosition"] - raw[f"{p}_ActualPosition"]
    out["spindle.speed"] = raw["S1_ActualVelocity"] * SPINDLE_REV_PER_S_TO_RPM
    out["spindle.speed_cmd"] = raw["S1_CommandVelocity"] * SPINDLE_REV_PER_S_TO_RPM
    out["spindle.power"] = raw["S1_OutputPower"] * KW_TO_W
    velocity = np.stack([raw[f"{_AXIS_PREFIX[a]}_ActualVelocity"] for a in AXES])
    out["feed"] = np.linalg.norm(velocity, axis=0) * MM_PER_S_TO_MM_PER_MIN
    out["feed_cmd"] = raw["M1_CURRENT_FEEDRATE"] * MM_PER_S_TO_MM_PER_MIN
    out["line"] = raw["M1_sequence_number"]
    out["execution"] = _execution_codes(process)
    return out


def experiment_files(data_dir: str | Path, experiments: Sequence[int] = ()) -> list[Path]:
    """The experiment CSVs in ``data_dir`` (all, or the numbered ones, in that order)."""
    data_dir = Path(data_dir)
    if experiments:
        files = [data_dir / f"experiment_{n:02d}.csv" for n in experiments]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise ConfigError(f"replay: no such recording(s): {', '.join(missing)}")
        return files
    files = sorted(data_dir.glob("experiment_*.csv"))
    if not files:
        raise ConfigError(f"replay: no experiment_*.csv in {data_dir}")
    return files


@dataclass
class ReplaySettings:
    machine_id: str
    files: Sequence[Path]  # experiment CSVs, played in this order
    site: str = ""
    speed: float = 1.0  # recorded seconds per wall second; 0 = as fast as possible
    loop: bool = True
    batch_period_s: float = 0.1  # wall time per batch
    epoch: float | None = None  # wall time of recorded time 0 (default: when playing starts)
    recordings: list[Recording] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.files:
            raise ConfigError(f"machines.{self.machine_id}: replay needs at least one recording")
        if self.speed < 0 or not np.isfinite(self.speed):
            raise ConfigError(f"machines.{self.machine_id}.speedup: must be >= 0, got {self.speed}")
        if self.batch_period_s <= 0:
            raise ConfigError(f"machines.{self.machine_id}: batch_period_s must be > 0")


class ReplayAdapter:
    """Plays recordings as a live machine (the ``Adapter`` interface)."""

    def __init__(self, settings: ReplaySettings) -> None:
        self.settings = settings
        self.recordings = settings.recordings or [load_recording(f) for f in settings.files]
        self.descriptor = MachineDescriptor(
            machine_id=settings.machine_id, name="UMich CNC mill (recorded)",
            site=settings.site, model="replay", signals=SIGNALS,
            extra={"recordings": [r.name for r in self.recordings], "speed": settings.speed},
        )  # fmt: skip
        self.closed = False

    def _rows_per_batch(self) -> int:
        """Recorded rows per batch: a batch period of wall time, times the speed."""
        speed = self.settings.speed or 1.0  # as fast as possible: one period per batch
        return max(1, round(self.settings.batch_period_s * speed / ROW_PERIOD_S))

    def _time_scale(self) -> float:
        return 1.0 / self.settings.speed if self.settings.speed > 0 else 1.0

    async def batches(self) -> AsyncIterator[SampleBatch | MachineEvent]:
        s = self.settings
        epoch = time.time() if s.epoch is None else s.epoch
        started = time.monotonic()
        row_clock = 0  # recorded rows played so far, over every loop
        step = self._rows_per_batch()
        while not self.closed:
            for rec in self.recordings:
                async for item in self._play(rec, epoch, row_clock, started, step):
                    yield item
                row_clock += len(rec)
                if self.closed:
                    return
            if not s.loop:
                return

    async def _play(self, rec: Recording, epoch: float, row0: int, started: float,
                    step: int) -> AsyncIterator[SampleBatch | MachineEvent]:  # fmt: skip
        mid = self.settings.machine_id
        scale = self._time_scale()
        t_rec = epoch + (row0 + np.arange(len(rec))) * ROW_PERIOD_S * scale
        yield MachineEvent(mid, float(t_rec[0]), "program",
                           value={"name": rec.name, "text": None,
                                  "tool_condition": rec.tool_condition})  # fmt: skip
        phase_change = np.flatnonzero(np.r_[True, rec.process[1:] != rec.process[:-1]])
        exe = rec.columns["execution"]
        exe_change = np.flatnonzero(np.r_[True, exe[1:] != exe[:-1]])
        for i in range(0, len(rec), step):
            j = min(i + step, len(rec))
            await self._pace(started, (row0 + j) * ROW_PERIOD_S * scale)
            if self.closed:
                return
            events = [
                *(MachineEvent(mid, float(t_rec[k]), "process", value=str(rec.process[k]))
                  for k in phase_change[(phase_change >= i) & (phase_change < j)]),
                *(MachineEvent(mid, float(t_rec[k]), "execution",
                               value=Execution(int(exe[k])).name)
                  for k in exe_change[(exe_change >= i) & (exe_change < j)]),
            ]  # fmt: skip
            for event in sorted(events, key=lambda e: e.t):  # stable: a phase before its state
                yield event
            cols = {name: col[i:j] for name, col in rec.columns.items()}
            yield SampleBatch(mid, t_rec[i:j], cols)

    async def _pace(self, started: float, due_s: float) -> None:
        """Hand a batch over when its last sample is due (the recorded pace / speed)."""
        if self.settings.speed > 0:
            await asyncio.sleep(max(0.0, started + due_s - time.monotonic()))
        else:
            await asyncio.sleep(0)

    async def command(self, command: AdapterCommand) -> None:
        # a recording cannot be steered: every command is refused, nothing changes
        raise CommandRejected(
            f"{self.settings.machine_id}: a recorded machine cannot {command.name!r}"
        )

    async def close(self) -> None:
        self.closed = True


def replay_adapter(machine_id: str, site: str, files: Sequence[Path],
                   speed: float = 1.0) -> ReplayAdapter:  # fmt: skip
    """The adapter of a site file's entry of kind ``replay``: ``programs`` lists the
    recordings (experiment CSVs) it plays in a loop, ``speedup`` is the speed factor."""
    for f in files:
        if Path(f).suffix.lower() != ".csv":
            raise ConfigError(f"machines.{machine_id}.programs: {f} is not a recording (.csv)")
    return ReplayAdapter(ReplaySettings(machine_id, list(files), site, speed=speed))
