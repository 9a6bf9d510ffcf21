"""The files a simulation run writes: telemetry, vibration windows, the finished part.

``RUN.parquet`` holds the telemetry, one column per canonical signal plus the fault
ground truth (``fault.*``) and the alarm list in the file's metadata. Next to it,
``RUN.vib.parquet`` holds the vibration windows and ``RUN.stock.npz`` the finished
part's height field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import ConfigError
from ..model import Alarm, Waveform


def sidecar(path: Path, suffix: str) -> Path:
    return path.with_name(path.stem + suffix)


@dataclass
class RunRecord:
    """Everything a run produced, in memory."""

    columns: dict[str, np.ndarray]
    alarms: list[Alarm] = field(default_factory=list)
    waveforms: list[Waveform] = field(default_factory=list)
    stock_heights: np.ndarray | None = None
    stock_grid: float = 0.25
    stock_origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    meta: dict[str, object] = field(default_factory=dict)


def write_run(path: Path, run: RunRecord) -> None:
    meta = dict(run.meta)
    meta["alarms"] = [
        {"code": a.code.value, "severity": int(a.severity), "message": a.message,
         "source": a.source, "raised_at": a.raised_at, "cleared_at": a.cleared_at}
        for a in run.alarms
    ]  # fmt: skip
    table = pa.table(run.columns)
    table = table.replace_schema_metadata({b"machinetwin": json.dumps(meta).encode()})
    pq.write_table(table, path, compression="zstd")
    if run.waveforms:
        vib = pa.table({
            "signal": [w.signal for w in run.waveforms],
            "t0": [w.t0 for w in run.waveforms],
            "rate_hz": [w.rate_hz for w in run.waveforms],
            "values": [w.values.astype(np.float32) for w in run.waveforms],
            "rpm": [w.rpm for w in run.waveforms],
        })  # fmt: skip
        pq.write_table(vib, sidecar(path, ".vib.parquet"), compression="zstd")
    if run.stock_heights is not None:
        np.savez_compressed(sidecar(path, ".stock.npz"), heights=run.stock_heights,
                            grid=run.stock_grid, origin=np.asarray(run.stock_origin))  # fmt: skip


def read_run(path: Path) -> RunRecord:
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise ConfigError(f"{path}: not a machinetwin run file: {exc}") from None
    raw = (table.schema.metadata or {}).get(b"machinetwin", b"{}")
    meta = json.loads(raw)
    columns = {name: table.column(name).to_numpy() for name in table.column_names}
    run = RunRecord(columns, meta=meta)
    vib_path = sidecar(path, ".vib.parquet")
    if vib_path.exists():
        vib = pq.read_table(vib_path).to_pylist()
        run.waveforms = [Waveform(r["signal"], r["t0"], r["rate_hz"], np.asarray(r["values"]),
                                  r.get("rpm")) for r in vib]  # fmt: skip
    stock_path = sidecar(path, ".stock.npz")
    if stock_path.exists():
        with np.load(stock_path) as data:
            run.stock_heights = data["heights"]
            run.stock_grid = float(data["grid"])
            run.stock_origin = tuple(data["origin"].tolist())
    return run
