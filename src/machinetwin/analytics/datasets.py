"""Readers for the evaluation data sets: CWRU bearing .mat files, UMich CNC mill CSVs.

Both fail with a :class:`DataFileError` that names the file and what is missing.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MachinetwinError

CWRU_RATE_HZ = 12_000.0  # the 12k drive-end files


class DataFileError(MachinetwinError, ValueError):
    """A data file that is missing, unreadable or lacks what the analysis needs."""


@dataclass(frozen=True, slots=True)
class CwruRecord:
    path: Path
    signal: np.ndarray  # drive-end acceleration, g
    rate_hz: float
    rpm: float | None  # from the file's X<nnn>RPM, when it has one
    label: str | None  # from the file name: normal / inner_race / outer_race / ball
    fault_size: str | None  # "007", "014", "021" (thousandths of an inch)


_CWRU_NAME = re.compile(r"^(?:(?P<kind>B|IR|OR)(?P<size>\d{3})(?:@\d+)?|Normal)_\d", re.IGNORECASE)
_KIND = {"B": "ball", "IR": "inner_race", "OR": "outer_race"}


def cwru_label(path: Path) -> tuple[str | None, str | None]:
    """(label, fault size) from a CWRU file name such as ``OR014@6_0.mat``; (None, None) if
    the name does not follow the convention."""
    m = _CWRU_NAME.match(path.name)
    if not m:
        return None, None
    if m.group("kind") is None:
        return "normal", None
    return _KIND[m.group("kind").upper()], m.group("size")


def load_cwru(path: str | Path, channel: str = "DE") -> CwruRecord:
    """Read the ``X<nnn>_<channel>_time`` vibration and ``X<nnn>RPM`` of a CWRU .mat file."""
    from scipy.io import loadmat  # only the CLI and benchmarks read files

    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{path}: no such file")
    try:
        data = loadmat(path)
    except Exception as exc:  # scipy raises several types for a non-MAT file
        raise DataFileError(f"{path}: not a readable MATLAB .mat file ({exc})") from None
    suffix = f"_{channel}_time"
    keys = sorted(k for k in data if k.endswith(suffix))
    if not keys:
        found = ", ".join(k for k in data if not k.startswith("__")) or "none"
        raise DataFileError(
            f"{path}: no variable X<nnn>{suffix} (the {channel} accelerometer); variables: {found}"
        )
    signal = np.asarray(data[keys[0]], dtype=float).ravel()
    if signal.size == 0 or not np.isfinite(signal).all():
        raise DataFileError(f"{path}: {keys[0]} is empty or holds non-finite values")
    # Some CWRU files carry variables of two records: take the RPM of the same X<nnn>.
    prefix = keys[0][: -len(suffix)]
    rpm_keys = sorted(k for k in data if k.endswith("RPM"))
    rpm_key = prefix + "RPM" if prefix + "RPM" in data else (rpm_keys[0] if rpm_keys else None)
    rpm = float(np.asarray(data[rpm_key]).ravel()[0]) if rpm_key else None
    label, size = cwru_label(path)
    return CwruRecord(path, signal, CWRU_RATE_HZ, rpm, label, size)


@dataclass(frozen=True, slots=True)
class UmichExperiment:
    path: Path
    columns: dict[str, np.ndarray]  # numeric columns as float arrays
    process: np.ndarray  # Machining_Process per row (str)
    tool_condition: str | None  # "worn" / "unworn" when the file carries it

    def __len__(self) -> int:
        return self.process.size


UMICH_REQUIRED = (
    "X1_ActualVelocity",
    "Y1_ActualVelocity",
    "X1_CurrentFeedback",
    "Y1_CurrentFeedback",
    "S1_CurrentFeedback",
    "S1_OutputPower",
    "S1_ActualVelocity",
    "M1_CURRENT_FEEDRATE",
    "Machining_Process",
)


def load_umich(path: str | Path) -> UmichExperiment:
    """Read one UMich CNC mill experiment CSV (one row per 100 ms sample)."""
    path = Path(path)
    try:
        with path.open(newline="") as fh:
            rows = list(csv.reader(fh))
    except FileNotFoundError:
        raise DataFileError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFileError(f"{path}: cannot read as CSV text ({exc})") from None
    if len(rows) < 2:
        raise DataFileError(f"{path}: no data rows (need a header and samples)")
    header = [h.strip() for h in rows[0]]
    missing = [c for c in UMICH_REQUIRED if c not in header]
    if missing:
        raise DataFileError(f"{path}: missing column(s) {', '.join(missing)}")
    body = [r for r in rows[1:] if r]
    short = next((i for i, r in enumerate(body) if len(r) != len(header)), None)
    if short is not None:
        raise DataFileError(
            f"{path}: row {short + 2} has {len(body[short])} fields, header has {len(header)}"
        )
    table = np.array(body, dtype=object)
    text_cols = {"Machining_Process", "tool_condition", ""}
    columns = {}
    for j, name in enumerate(header):
        if name in text_cols:
            continue
        try:
            columns[name] = table[:, j].astype(float)
        except ValueError:
            raise DataFileError(f"{path}: column {name} has non-numeric values") from None
    process = table[:, header.index("Machining_Process")].astype(str)
    condition = None
    if "tool_condition" in header:
        values = set(table[:, header.index("tool_condition")].astype(str))
        if len(values) == 1 and values <= {"worn", "unworn"}:
            condition = values.pop()
    return UmichExperiment(path, columns, process, condition)
