"""The hub file chooses the store: ``store = "FILE"`` (DuckDB) or a ``[store]`` table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from machinetwin.errors import ConfigError
from machinetwin.hub import DuckDBStore
from machinetwin.hub.postgres_store import PostgresStore
from machinetwin.hub.service import load_hub_config
from machinetwin.hub.store_config import open_store
from machinetwin.model import SampleBatch


def hub_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hub.toml"
    path.write_text(text)
    return path


def test_a_plain_store_path_is_duckdb(tmp_path: Path) -> None:
    config = load_hub_config(hub_file(tmp_path, 'store = "lab.duckdb"\n'))
    assert config.store == tmp_path / "lab.duckdb"
    assert config.store_backend.backend == "duckdb"
    store = open_store(config.store_backend, config.store)
    assert isinstance(store, DuckDBStore) and store.path == str(config.store)
    store.close()


@pytest.mark.service
def test_a_store_table_opens_postgres(tmp_path: Path, postgres_server) -> None:
    text = f'[store]\nbackend = "postgres"\ndsn = "{postgres_server.dsn()}"\nschema = "cfg"\n'
    config = load_hub_config(hub_file(tmp_path, text + 'path = "files/hub.duckdb"\n'))
    assert config.store == tmp_path / "files" / "hub.duckdb"  # users, audit live beside it
    store = open_store(config.store_backend, config.store)
    try:
        assert isinstance(store, PostgresStore) and store.schema == "cfg"
        batch = SampleBatch("m", np.arange(3.0), {"feed": np.ones(3)}, seq=0)
        assert store.write_batch(batch) is True
        assert store.count("m") == 3
    finally:
        store.close()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[store]\nbackend = "postgres"\n', r"store_backend: .*needs dsn"),
        ('[store]\nbackend = "oracle"\n', r"store_backend.backend: Input should be 'duckdb'"),
        ('[store]\ndsn = "host=x"\n', r"store_backend: .*dsn is for backend 'postgres'"),
        ('[store]\nbackend = "postgres"\ndsn = "x"\ncolour = 1\n', r"store_backend.colour: Extra"),
    ],
)
def test_store_table_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_hub_config(hub_file(tmp_path, text))
