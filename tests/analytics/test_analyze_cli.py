"""``machinetwin analyze``: last-line JSON, clear errors; on the real data sets when present."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.io import savemat
from typer.testing import CliRunner

from machinetwin.analytics.bearings import bearing
from machinetwin.analytics.datasets import DataFileError, load_cwru, load_umich
from machinetwin.analytics.evaluation import evaluate_physics
from machinetwin.cli import app
from machinetwin.machine import load_machine_config
from machinetwin.machine.vibration import VibrationFaults, VibrationModel

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
needs_data = pytest.mark.skipif(
    not (DATA / "cwru-12k-de").is_dir() or not (DATA / "umich-cnc-mill").is_dir(),
    reason=f"the shared data sets are not at {DATA} (optional: a data folder, not a service)",
)
runner = CliRunner()


def last_json(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def cwru_like(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CWRU-format file: the virtual machine's spindle with an inner-race defect at 1797 rpm."""
    model = VibrationModel(load_machine_config(), np.random.default_rng(4), rate_hz=12_000.0)
    x = model.waveform(0.0, 3.0, 1797.0, faults=VibrationFaults(inner_race=0.5))
    path = tmp_path_factory.mktemp("cwru") / "IR099_0.mat"
    savemat(path, {"X999_DE_time": x[:, None], "X999_FE_time": x[:, None], "X999RPM": 1797.0})
    return path


def test_bearing_command_prints_the_json_last(cwru_like: Path) -> None:
    result = runner.invoke(app, ["analyze", "bearing", str(cwru_like)])
    assert result.exit_code == 0, result.output
    out = last_json(result.output)
    assert out["diagnosis"] == "inner_race" and 0.5 < out["confidence"] <= 1.0
    assert "BPFI 5.41× shaft speed" in result.output
    rec = load_cwru(cwru_like)
    assert (rec.label, rec.fault_size, rec.rpm) == ("inner_race", "099", 1797.0)


def test_bearing_command_errors_name_file_and_what_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "no_rpm.mat"
    savemat(path, {"X001_DE_time": np.zeros((5000, 1))})
    result = runner.invoke(app, ["analyze", "bearing", str(path)])
    assert result.exit_code == 1 and "no X<nnn>RPM variable" in result.output
    assert "no_rpm.mat" in result.output.replace("\n", "")
    result = runner.invoke(app, ["analyze", "bearing", str(path), "--channel", "BA"])
    assert result.exit_code == 1 and "X<nnn>_BA_time" in result.output.replace("\n", "")
    result = runner.invoke(app, ["analyze", "bearing", str(path), "--bearing", "1234"])
    assert result.exit_code == 1 and "unknown bearing '1234'" in result.output
    not_mat = tmp_path / "text.mat"
    not_mat.write_text("hello")
    with pytest.raises(DataFileError, match="text.mat: not a readable MATLAB"):
        load_cwru(not_mat)


def test_cwru_reader_pairs_signal_and_rpm_of_one_record(tmp_path: Path) -> None:
    path = tmp_path / "OR007@6_0.mat"
    savemat(path, {"X097RPM": 1.0, "X098_DE_time": np.ones((100, 1)), "X098RPM": 1797.0})
    rec = load_cwru(path)
    assert (rec.rpm, rec.signal.size) == (1797.0, 100)
    assert (rec.label, rec.fault_size) == ("outer_race", "007")


def test_bearing_rpm_option_overrides_the_file(cwru_like: Path) -> None:
    # At a speed 10 % off the defect frequencies do not line up: no longer inner race.
    wrong = runner.invoke(app, ["analyze", "bearing", str(cwru_like), "--rpm", "1617"])
    assert last_json(wrong.output)["diagnosis"] != "inner_race"


@needs_data
def test_physics_path_on_cwru_inner_and_outer_race_recordings() -> None:
    names = ("IR007_0.mat", "OR007@6_0.mat", "OR021@6_0.mat")
    records = [load_cwru(DATA / "cwru-12k-de" / n) for n in names]
    result = evaluate_physics(records, bearing("6205-2RS"))
    assert result.window_accuracy >= 0.9 and result.recording_accuracy == 1.0


@needs_data
def test_cli_on_real_files() -> None:
    out = runner.invoke(app, ["analyze", "bearing", str(DATA / "cwru-12k-de" / "OR007@6_0.mat")])
    assert last_json(out.output)["diagnosis"] == "outer_race"
    path = DATA / "umich-cnc-mill" / "experiment_01.csv"
    out = runner.invoke(app, ["analyze", "tool-condition", str(path)])
    assert out.exit_code == 0, out.output
    verdict = last_json(out.output)
    assert set(verdict) == {"tool_condition", "probability_worn"}
    assert verdict["tool_condition"] == ("worn" if verdict["probability_worn"] >= 0.5 else "unworn")
    assert load_umich(path).tool_condition == "unworn"


def test_tool_condition_command_refuses_a_mat_file(cwru_like: Path) -> None:
    out = runner.invoke(app, ["analyze", "tool-condition", str(cwru_like)])
    assert out.exit_code == 1 and "cannot read as CSV text" in out.output
