"""The weekly report renders: PDF pages turned into PNG contain the plots; HTML and Parquet agree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pypdfium2 as pdfium
import pytest
from typer.testing import CliRunner

from machinetwin.analytics.weekly_report import iso_week, write_weekly_report
from machinetwin.cli import app
from machinetwin.hub import DuckDBStore
from machinetwin.machine.fleet_run import FleetMachine, run_fleet_into_store

T0, T1 = iso_week("2026-W47")
RUN_S = 240.0


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two virtual machines, four minutes each, on the Monday of the week; Harbin's
    tool breaks after two minutes."""
    path = tmp_path_factory.mktemp("fleet") / "hub.duckdb"
    store = DuckDBStore(path)
    machines = [FleetMachine("harbin-1", "Harbin", faults=("tool_breakage:1@120",)),
                FleetMachine("tianjin-1", "Tianjin", seed=1)]  # fmt: skip
    run_fleet_into_store(store, machines, RUN_S, T0 + 8 * 3600)
    store.close()
    return path


def ink(page: pdfium.PdfPage) -> tuple[float, float]:
    """Shares of pixels that are not white, and that have a clear colour (bars, heat
    maps, lines; text and axes are black or grey)."""
    rgb = np.asarray(page.render(scale=0.5).to_pil().convert("RGB"), dtype=np.int16)
    saturation = rgb.max(axis=2) - rgb.min(axis=2)
    return float((rgb.min(axis=2) < 235).mean()), float((saturation > 60).mean())


def test_weekly_report_pdf_pages_show_the_plots(store_path: Path, tmp_path: Path) -> None:
    store = DuckDBStore(store_path)
    files = write_weekly_report(store, T0, T1, tmp_path)
    store.close()
    doc = pdfium.PdfDocument(files.pdf)
    assert len(doc) == 1 + files.figures  # a cover with the KPI table, then one page per plot
    # fleet OEE + states, and per machine: daily parts/energy, load spectrum, cycle times
    assert files.figures == 2 + 3 * 2
    cover = doc[0].get_textpage().get_text_range()
    assert "weekly report, 2026-11-16 – 2026-11-22" in cover
    assert "harbin-1" in cover and "tianjin-1" in cover and "fleet" in cover
    for i in range(1, len(doc)):
        drawn, coloured = ink(doc[i])
        assert drawn > 0.02 and coloured > 0.001, f"page {i + 1} shows no plot"
    assert ink(doc[0])[1] < 0.001  # the cover is a table: no colour, so the check can fail
    titles = " ".join(doc[i].get_textpage().get_text_range() for i in range(1, len(doc)))
    assert "load spectrum" in titles and "OEE = availability × performance × quality" in titles
    doc.close()


def test_weekly_report_html_and_parquet(store_path: Path, tmp_path: Path) -> None:
    store = DuckDBStore(store_path)
    files = write_weekly_report(store, T0, T1, tmp_path, machines=["harbin-1"])
    store.close()
    text = files.html.read_text()
    assert text.count("<img ") == files.figures == 2 + 3
    assert "MT-300" in text  # Harbin's tool breakage is in its alarm table
    rows = pq.read_table(files.parquet).to_pylist()
    assert len(rows) == 7 and {r["machine"] for r in rows} == {"harbin-1"}
    monday = rows[0]
    assert monday["parts"] >= 1 and 0 < monday["availability"] < 1  # stopped by the breakage
    assert all(r["parts"] == 0 and r["planned_h"] == 0 for r in rows[1:])


def test_weekly_report_cli(store_path: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["report", "weekly", "--store", str(store_path), "--week",
                                      "2026-W47", "--out", str(tmp_path / "r"), "--machine", "tianjin-1"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r" / "report.pdf").stat().st_size > 10_000
    bad = CliRunner().invoke(app, ["report", "weekly", "--store", str(store_path), "--week", "47"])
    assert bad.exit_code != 0 and "expected YEAR-Www" in bad.output


def test_iso_week_bounds() -> None:
    assert T1 - T0 == 7 * 86_400
    with pytest.raises(ValueError, match="2026-W99"):
        iso_week("2026-W99")
