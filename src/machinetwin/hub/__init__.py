"""The hub in the lab: ingest, storage, twin state, rules and alarms, commands, API.

Storage is behind the :class:`Store` interface; :class:`DuckDBStore` (one file, no
server) is the default backend.
"""

from .duckdb_store import DuckDBStore
from .store import Series, Store, StoredAlarm, StoreError

__all__ = ["DuckDBStore", "Series", "Store", "StoreError", "StoredAlarm"]
