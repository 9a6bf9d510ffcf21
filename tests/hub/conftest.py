"""Fixtures for the hub's tests: one real PostgreSQL server for the whole session.

Store tests run against every backend; the PostgreSQL ones share one server (started
once, ~3 s) and get a fresh schema per store, so they add little time to the suite.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import pytest

from ci_env import running_in_ci

_fresh = itertools.count()


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


BACKEND_PARAMS = ["duckdb", pytest.param("postgres", marks=pytest.mark.service)]


@pytest.fixture(params=BACKEND_PARAMS)
def new_store(request: pytest.FixtureRequest) -> Iterator[Callable[[], object]]:
    """``new_store()``: an empty store of the backend (DuckDB in memory, or a fresh
    PostgreSQL schema); all are closed after the test."""
    opened = []

    def make() -> object:
        if request.param == "duckdb":
            from machinetwin.hub import DuckDBStore

            store = DuckDBStore(":memory:")
        else:
            from machinetwin.hub.postgres_store import PostgresStore
            from postgres_server import schema_for

            server = request.getfixturevalue("postgres_server")
            store = PostgresStore(server.dsn(), schema=schema_for(f"fresh-{next(_fresh)}"))
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()
