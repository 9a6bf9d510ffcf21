"""Stores of every backend for the store tests (the ``new_store`` fixture in
``tests/hub/conftest.py``): DuckDB in memory, or a fresh schema on the session's
PostgreSQL server."""

from __future__ import annotations

import itertools

import pytest

from machinetwin.hub import Store

_fresh = itertools.count()

BACKEND_PARAMS = ["duckdb", pytest.param("postgres", marks=pytest.mark.service)]


class StoreFactory:
    """``new_store()``: an empty store of the backend (DuckDB in memory, or a fresh
    PostgreSQL schema); ``new_store.shared()``: one store for the whole test, for
    hypothesis tests whose examples keep apart by machine name (a fresh PostgreSQL
    schema per example cost ~0.1 s)."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self.request = request
        self.opened: list[Store] = []
        self._shared: Store | None = None

    def __call__(self) -> Store:
        if self.request.param == "duckdb":
            from machinetwin.hub import DuckDBStore

            store: Store = DuckDBStore(":memory:")
        else:
            from machinetwin.hub.postgres_store import PostgresStore
            from postgres_server import schema_for

            server = self.request.getfixturevalue("postgres_server")
            store = PostgresStore(server.dsn(), schema=schema_for(f"fresh-{next(_fresh)}"))
        self.opened.append(store)
        return store

    def shared(self) -> Store:
        if self._shared is None:
            self._shared = self()
        return self._shared
