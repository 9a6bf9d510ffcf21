"""Shared fixtures and the CI rule for tests that need an external peer.

Tests that need something outside Python (LinuxCNC's rs274, an MQTT broker,
PostgreSQL, ...) skip on a developer machine that lacks it, but in CI
(CI=true) a missing peer is a failure: a green CI run must mean every test ran.
"""

from __future__ import annotations

import os
import shutil

import pytest


def running_in_ci() -> bool:
    return os.environ.get("CI") == "true"


@pytest.fixture(scope="session")
def rs274_available() -> str:
    """Path of LinuxCNC's standalone interpreter; skips (or fails in CI) without it."""
    path = shutil.which("rs274")
    if path is None:
        if running_in_ci():
            pytest.fail(
                "rs274 (LinuxCNC) is required in CI but is not installed: "
                "scripts/install-system-deps.sh should have installed linuxcnc-uspace"
            )
        pytest.skip("rs274 not installed: run `sudo make system-deps` (installs linuxcnc-uspace)")
    return path


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """With CI=true, a skipped test marked `service` is reported as failed."""
    outcome = yield
    report = outcome.get_result()
    if (
        running_in_ci()
        and report.skipped
        and not hasattr(report, "wasxfail")
        and item.get_closest_marker("service") is not None
    ):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"service test skipped, and skips are failures under CI=true: {reason}"
