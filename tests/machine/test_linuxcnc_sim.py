"""The benchmark's LinuxCNC harness runs a tiny program in a real headless LinuxCNC."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ci_env import running_in_ci

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from linuxcnc_sim import LinuxCNCSim, unavailable_reason  # noqa: E402


@pytest.mark.service
@pytest.mark.slow
def test_tiny_program_cycle_time(tmp_path: Path) -> None:
    reason = unavailable_reason()
    if reason:
        if running_in_ci():
            pytest.fail(f"LinuxCNC is required in CI: {reason}")
        pytest.skip(reason)
    prog = tmp_path / "tiny.ngc"
    # 100 mm along X at 6000 mm/min under exact stop: 1 s cruise + 100/3000 s of ramps
    prog.write_text("G21 G90 G54 G61\nG0 X-300 Y-200 Z0\nG1 X-200 F6000\nM2\n")
    with LinuxCNCSim() as sim:
        first = sim.run_program(prog)
        assert first.start_pos == pytest.approx((0.0, 0.0, 0.0), abs=1e-6)
        assert first.end_pos == pytest.approx((100.0, 0.0, -300.0), abs=1e-3)
        # rapid of 300 mm in Z (0.6 s + 1/6 s) then the feed move (1 s + 1/30 s)
        assert first.cycle_time == pytest.approx(0.6 + 1 / 6 + 1.0 + 1 / 30, abs=0.02)
        again = sim.run_program(prog)  # starts where the first ended: no rapid in Z
        assert again.start_pos == pytest.approx((100.0, 0.0, -300.0), abs=1e-3)
        assert again.cycle_time < first.cycle_time
