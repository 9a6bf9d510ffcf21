"""Which ``Store`` the hub opens: the ``[store]`` table of a hub file.

``store = "hub.duckdb"`` (the default) is a DuckDB file. A table chooses the backend::

    [store]
    backend = "postgres"
    dsn = "host=db.lab port=5432 dbname=machinetwin user=hub"   # libpq string or URI
    schema = "public"          # one hub per schema
    path = "hub.duckdb"        # beside it the hub keeps users, audit log and UI files

With PostgreSQL, several hub processes may share one database: writes are idempotent
on (machine, sequence) across processes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .store import Store


class StoreConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    backend: Literal["duckdb", "postgres"] = "duckdb"
    path: Path = Path("hub.duckdb")  # DuckDB's file; the hub's other files live beside it
    dsn: str | None = None  # PostgreSQL: a libpq connection string or URI
    schema_name: str = Field("public", alias="schema", min_length=1)
    partition_s: float = Field(86_400.0, ge=1.0)  # PostgreSQL: time span of one partition

    @model_validator(mode="after")
    def _dsn_for_postgres(self) -> StoreConfig:
        if self.backend == "postgres" and not self.dsn:
            raise ValueError("backend 'postgres' needs dsn (a libpq connection string)")
        if self.backend == "duckdb" and self.dsn:
            raise ValueError("dsn is for backend 'postgres'; DuckDB uses path")
        return self


def open_store(config: StoreConfig, path: Path | None = None) -> Store:
    """The configured store; ``path`` (already resolved) overrides ``config.path``."""
    if config.backend == "postgres":
        from .postgres_store import PostgresStore  # psycopg only when used

        assert config.dsn is not None  # checked by the model
        return PostgresStore(config.dsn, schema=config.schema_name, partition_s=config.partition_s)
    from .duckdb_store import DuckDBStore

    return DuckDBStore(path or config.path)
