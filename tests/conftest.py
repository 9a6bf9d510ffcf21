"""Shared fixtures and the CI rule for tests that need an external peer.

Tests that need something outside Python (LinuxCNC's rs274, an MQTT broker,
PostgreSQL, ...) skip on a developer machine that lacks it, but in CI
(CI=true) a missing peer is a failure: a green CI run must mean every test ran.
"""

from __future__ import annotations

import shutil

import pytest

from ci_env import running_in_ci


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


@pytest.fixture
def mosquitto(tmp_path_factory: pytest.TempPathFactory):
    """A private Mosquitto on a free loopback port (``.port``, ``.stop()``, ``.start()``).

    Skips (or fails in CI) without the binary. Mark the test ``@pytest.mark.service``.
    """
    from mosquitto_server import MosquittoServer, find_mosquitto

    if find_mosquitto() is None:
        if running_in_ci():
            pytest.fail(
                "mosquitto is required in CI but is not installed: "
                "scripts/install-system-deps.sh should have installed it"
            )
        pytest.skip("mosquitto not installed: run `sudo make system-deps` (installs mosquitto)")
    server = MosquittoServer(tmp_path_factory.mktemp("mosquitto"))
    server.start()
    yield server
    server.stop()
