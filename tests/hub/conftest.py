"""Fixtures for the hub's tests: one real PostgreSQL server for the whole session.

Store tests run against every backend; the PostgreSQL ones share one server (started
once, ~3 s) and get a fresh schema per store, so they add little time to the suite.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ci_env import running_in_ci
from store_backends import BACKEND_PARAMS, StoreFactory


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[object]:
    """A private PostgreSQL on a free loopback port; skips (fails in CI) without one."""
    from postgres_server import PostgresServer, find_postgres_bin

    problem = None
    try:
        import psycopg  # noqa: F401
    except ImportError:
        problem = "psycopg is not installed (pip install 'psycopg[binary]')"
    if problem is None and find_postgres_bin() is None:
        problem = "PostgreSQL is not installed: run `sudo make system-deps` (installs postgresql)"
    if problem:
        if running_in_ci():
            pytest.fail(f"PostgreSQL is required in CI: {problem}")
        pytest.skip(problem)
    server = PostgresServer()
    server.start()
    yield server
    server.cleanup()


@pytest.fixture(params=BACKEND_PARAMS)
def new_store(request: pytest.FixtureRequest) -> Iterator[StoreFactory]:
    """Stores of each backend in turn (see ``StoreFactory``); all closed after the test."""
    factory = StoreFactory(request)
    yield factory
    for store in factory.opened:
        store.close()
