"""The default ``Store``: one DuckDB file, no server.

Schema (and why)
----------------
``samples(machine, signal, t, value)`` is a long table: one row per scalar sample,
machine and signal as small integer ids (``machine_ids``, ``signal_ids``). Measured
against a wide layout (one row per batch and signal holding ``DOUBLE[]`` arrays) on
this 2-core machine, bulk ingest was within ~10 % (about 5-7 M samples/s either way,
insert cost dominated by building the Arrow columns), while chart queries on the long
table were 2-4x faster because DuckDB filters and groups plain columns without an
UNNEST and prunes row groups by the zone maps on ``t`` (data arrives roughly in time
order). The price is disk: the long table stores ``t`` with every value.

Waveforms (``spindle.vib`` at kHz) are the exception: ``waveforms`` keeps one row per
waveform with its points as a ``DOUBLE[]`` and ``t0``/``rate_hz``, since their times
are implied and a long row per point would triple their size. Queries expand them
with ``unnest`` inside the database.

``batches(machine, seq)`` (primary key) is the idempotence key; a group of batches
claims its keys with ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` and only the
claimed batches' samples are inserted, in the same transaction. ``series`` gets, in
that transaction, one summary row per (machine, signal) of each write (count, time
span, latest value), so ``count`` and ``latest`` aggregate a few rows per write
instead of scanning the samples; ``delete_before`` compacts it to one row each. (An
upsert of one row per series was measured first: DuckDB's ON CONFLICT DO UPDATE cost
more than inserting the samples.)

Writing: a group of batches becomes a handful of numpy concatenations, one Arrow table
registered with DuckDB (zero copy) and one ``INSERT ... SELECT``; no Python loop runs
per sample, only per batch and per column.

Group the writes: a transaction costs a few milliseconds whatever its size (statement
overhead, WAL commit), so ``write_batch`` one at a time reaches ~100 batches/s while
``write_batches`` of one 100 ms tick of a fleet reaches millions of samples/s
(``benchmarks/store_ingest.py``).

Thread safety
-------------
Every method may be called from any thread. Writes (batches, events, alarms,
machines, retention) serialise on one lock and one connection, so the hub's single
writer thread never contends with itself; reads open their own DuckDB cursor and see
a consistent snapshot (MVCC) while a write runs. One ``DuckDBStore`` per file: DuckDB
locks the file against other processes, and two stores on one file in the same
process would not share their id caches.
"""

from __future__ import annotations

import bisect
import json
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from machinetwin.model import Alarm, MachineDescriptor, MachineEvent, SampleBatch
from machinetwin.model.signals import SIGNALS, VIBRATION
from machinetwin.protocols.codec import ColumnBlock

from .store import ExportFormat, Series, StoredAlarm, StoreError, check_structure, check_values
from .store_rows import (
    alarm_filters,
    alarm_from_json,
    alarm_json,
    descriptor_rows,
    sql_filters,
    stored_alarm,
    value_json,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS machine_ids (id INTEGER PRIMARY KEY, name VARCHAR UNIQUE);
CREATE TABLE IF NOT EXISTS signal_ids (id INTEGER PRIMARY KEY, name VARCHAR UNIQUE);
CREATE TABLE IF NOT EXISTS batches (
    machine INTEGER, seq BIGINT, t_first DOUBLE, t_last DOUBLE, n_values BIGINT,
    PRIMARY KEY (machine, seq));
CREATE TABLE IF NOT EXISTS samples (machine INTEGER, signal INTEGER, t DOUBLE, value DOUBLE);
CREATE TABLE IF NOT EXISTS waveforms (
    machine INTEGER, signal INTEGER, seq BIGINT, t0 DOUBLE, rate_hz DOUBLE, rpm DOUBLE,
    t_end DOUBLE, value DOUBLE[]);
CREATE TABLE IF NOT EXISTS series (
    machine INTEGER, signal INTEGER, n BIGINT, t_first DOUBLE, t_last DOUBLE,
    last_value DOUBLE);
CREATE TABLE IF NOT EXISTS events (
    machine VARCHAR, t DOUBLE, kind VARCHAR, value VARCHAR, alarm VARCHAR);
CREATE SEQUENCE IF NOT EXISTS alarm_ids START 1;
CREATE TABLE IF NOT EXISTS alarms (
    id BIGINT PRIMARY KEY DEFAULT nextval('alarm_ids'), machine VARCHAR, code VARCHAR,
    severity INTEGER, message VARCHAR, source VARCHAR, raised_at DOUBLE, cleared_at DOUBLE,
    acknowledged_at DOUBLE, acknowledged_by VARCHAR, comment VARCHAR);
CREATE TABLE IF NOT EXISTS machines (
    id VARCHAR PRIMARY KEY, name VARCHAR, site VARCHAR, model VARCHAR, signals VARCHAR[],
    axes VARCHAR[], extra VARCHAR);
"""

# The union of a machine's scalar samples and expanded waveform points in [t0, t1).
# Waveforms are pruned by their span before unnesting; points are filtered after.
_POINTS = """
    SELECT signal, t, value FROM samples
    WHERE machine = $m AND list_contains($sids, signal) AND t >= $t0 AND t < $t1
    UNION ALL
    SELECT signal, t, value FROM (
        SELECT signal, t0 + unnest(range(len(value))) / rate_hz AS t, unnest(value) AS value
        FROM waveforms
        WHERE machine = $m AND list_contains($sids, signal) AND t0 < $t1 AND t_end >= $t0)
    WHERE t >= $t0 AND t < $t1
"""

# Appended per write (no upsert: ON CONFLICT DO UPDATE cost more than the sample
# insert itself); readers aggregate these few rows per group instead of the samples.
_SERIES_APPEND = "INSERT INTO series {source}"
_SERIES_TOTALS = """
    SELECT signal, sum(n), max(t_last), arg_max(last_value, t_last)
    FROM series WHERE machine = ? GROUP BY signal
"""
_SAMPLES_SUMMARY = """
    SELECT machine, signal, count(*) AS n, min(t) AS t_first, max(t) AS t_last,
           arg_max(value, t) AS last_value
    FROM {table} GROUP BY machine, signal
"""
_WAVEFORMS_SUMMARY = """
    SELECT machine, signal, sum(len(value)) AS n, min(t0) AS t_first, max(t_end) AS t_last,
           arg_max(value[-1], t_end) AS last_value
    FROM {table} WHERE len(value) > 0 GROUP BY machine, signal
"""

WAL_AUTOCHECKPOINT = "256MB"

_ALARM_COLUMNS = (
    "id, machine, code, severity, message, source, raised_at, cleared_at, "
    "acknowledged_at, acknowledged_by, comment"
)


class DuckDBStore:
    """Samples, events, alarms and machine descriptors in one DuckDB file.

    ``path`` may be ``":memory:"`` for tests. ``extra_signals`` are accepted for every
    machine besides the canonical ones and those a machine's descriptor declares.
    """

    def __init__(self, path: str | Path, extra_signals: Iterable[str] = ()) -> None:
        self.path = str(path)
        # Every read that needs an order says ORDER BY, so DuckDB may insert in parallel
        # without keeping row order (measured: ~25 % faster ingest).
        # DuckDB checkpoints inside the commit that pushes the WAL past wal_autocheckpoint
        # (16 MB by default: every few groups at a fleet's rate, and that commit took 3x
        # as long). Fewer, larger checkpoints: measured ~30 -> ~10 ms per commit of a
        # 100,000-value group; a 256 MB WAL replays in seconds after a crash.
        self._con = duckdb.connect(
            self.path,
            config={"preserve_insertion_order": False, "wal_autocheckpoint": WAL_AUTOCHECKPOINT},
        )
        # _insert_arrow's tables are found by name in the calling frames (see there); all
        # frames, so that a wrapper around ``execute`` (a test's fault injection) still works
        self._con.execute("SET python_scan_all_frames = true")
        self._lock = threading.RLock()
        self._con.execute(_SCHEMA)
        self._common_signals = frozenset(SIGNALS) | {VIBRATION.name} | frozenset(extra_signals)
        self._machine_ids = self._load_ids("machine_ids")
        self._signal_ids = self._load_ids("signal_ids")
        self._signal_names = {v: k for k, v in self._signal_ids.items()}
        self._declared: dict[str, frozenset[str]] = {
            m.machine_id: frozenset(m.signals) for m in self.machines()
        }
        self._known_cache: dict[str, frozenset[str]] = {}
        self._signal_id_cache: dict[tuple[str, ...], np.ndarray] = {}
        self._keys = self._load_keys()

    # --- life cycle --------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._con.close()

    def __enter__(self) -> DuckDBStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _reader(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor of its own, so reads run beside the writer in any thread."""
        cur = self._con.cursor()
        try:
            yield cur
        finally:
            cur.close()

    @contextmanager
    def _transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._lock:
            self._con.begin()
            try:
                yield self._con
            except BaseException:
                self._con.rollback()
                raise
            self._con.commit()

    # --- ids -----------------------------------------------------------------------------

    def _load_ids(self, table: str) -> dict[str, int]:
        return dict(self._con.execute(f"SELECT name, id FROM {table}").fetchall())

    def _ensure_ids(self, table: str, cache: dict[str, int], names: Iterable[str]) -> None:
        """Give new machine/signal names an id, in a transaction of their own: an id
        without data is harmless, and the cache must never hold a rolled-back id."""
        new = [n for n in dict.fromkeys(names) if n not in cache]
        if not new:
            return
        start = max(cache.values(), default=0) + 1
        rows = [(start + i, name) for i, name in enumerate(new)]
        with self._transaction() as con:
            con.executemany(f"INSERT INTO {table} VALUES (?, ?)", rows)
        cache.update({name: i for i, name in rows})
        if table == "signal_ids":
            self._signal_names.update({i: name for i, name in rows})

    # --- validation ------------------------------------------------------------------------

    def _known(self, machine: str) -> frozenset[str]:
        known = self._known_cache.get(machine)
        if known is None:  # the union is cached: it was a set build per batch
            declared = self._declared.get(machine)
            known = self._common_signals | declared if declared else self._common_signals
            self._known_cache[machine] = known
        return known

    def _checked(self, batch: SampleBatch) -> None:
        """``check_structure``, with the common case in a few cheap tests."""
        if not _plain_structure(batch, self._known):
            check_structure(batch, self._known(getattr(batch, "machine", "")))

    def validate(self, batch: SampleBatch) -> None:
        self._checked(batch)
        check_values(batch)

    # --- samples ---------------------------------------------------------------------------

    def write_batch(self, batch: SampleBatch) -> bool:
        return self.write_batches([batch])[0]

    def write_batches(self, batches: Sequence[SampleBatch]) -> list[bool]:
        for b in batches:
            self._checked(b)
        with self._lock:
            self._ensure_ids("machine_ids", self._machine_ids, (b.machine for b in batches))
            self._ensure_ids("signal_ids", self._signal_ids, _new_names(batches, self._signal_ids))
            # First occurrence of each key in the group; later ones are duplicates.
            first: dict[tuple[str, int], int] = {}
            for i, b in enumerate(batches):
                first.setdefault((b.machine, int(b.seq)), i)
            group = [batches[i] for i in first.values()]
            rows = _scalar_rows(group, self._machine_ids, self._column_ids)
            waves = _waveform_rows(group, self._machine_ids, self._signal_ids)
            try:
                with self._transaction() as con:
                    claimed = self._claim(con, group)
                    self._insert(con, group, claimed, rows, waves)
            except duckdb.ConstraintException:  # the mirror was wrong: trust the table
                self._keys = self._load_keys()
                with self._transaction() as con:
                    claimed = self._claim_in_db(con, group)
                    self._insert(con, group, claimed, rows, waves)
            for i in claimed:  # committed: the mirror follows
                b = group[i]
                self._keys.setdefault(self._machine_ids[b.machine], _SeqSet()).add(int(b.seq))
        stored = {(group[i].machine, int(group[i].seq)) for i in claimed}
        out = []
        for i, b in enumerate(batches):
            key = (b.machine, int(b.seq))
            out.append(first[key] == i and key in stored)
        return out

    def _load_keys(self) -> dict[int, _SeqSet]:
        """The stored (machine, seq) keys as ranges per machine (the table's mirror)."""
        sql = """SELECT machine, min(seq), max(seq) FROM (
                   SELECT machine, seq,
                          seq - row_number() OVER (PARTITION BY machine ORDER BY seq) AS island
                   FROM batches)
                 GROUP BY machine, island ORDER BY 1, 2"""
        keys: dict[int, _SeqSet] = {}
        for machine, first, last in self._con.execute(sql).fetchall():
            keys.setdefault(int(machine), _SeqSet()).add_range(int(first), int(last))
        return keys

    def _claim(self, con: duckdb.DuckDBPyConnection, group: list[SampleBatch]) -> list[int]:
        """Insert the group's new keys; return the indices of those not stored before.

        New keys are found in memory (``_keys`` mirrors the ``batches`` table; this store
        is the file's only writer) and inserted plainly: ``INSERT ... ON CONFLICT DO
        NOTHING RETURNING`` cost ~4.6 ms CPU per group, a plain insert ~1.4 ms, and that
        fixed cost is paid by every group, so it sets the hub's latency under load. The
        primary key still guards the table: should the mirror ever be wrong, the insert
        fails, the transaction rolls back and ``write_batches`` reloads the mirror and
        retries with the conflict-tolerant claim.
        """
        mids = self._machine_ids
        new = [i for i, b in enumerate(group)
               if int(b.seq) not in self._keys.get(mids[b.machine], _EMPTY)]  # fmt: skip
        if new:
            _insert_arrow(con, "batches", self._key_table([group[i] for i in new]))
        return new

    def _key_table(self, group: list[SampleBatch]) -> pa.Table:
        spans = [_span(b) for b in group]
        return pa.table({
            "machine": pa.array([self._machine_ids[b.machine] for b in group], pa.int32()),
            "seq": pa.array([int(b.seq) for b in group], pa.int64()),
            "t_first": pa.array([s[0] for s in spans], pa.float64()),
            "t_last": pa.array([s[1] for s in spans], pa.float64()),
            "n_values": pa.array([b.n_values for b in group], pa.int64()),
        })  # fmt: skip

    def _claim_in_db(self, con: duckdb.DuckDBPyConnection, group: list[SampleBatch]) -> list[int]:
        """Insert the group's keys, skipping stored ones in the database (the fallback)."""
        con.register("new_keys", self._key_table(group))
        try:
            got = con.execute(
                "INSERT INTO batches SELECT * FROM new_keys ON CONFLICT DO NOTHING "
                "RETURNING machine, seq"
            ).fetchall()
        finally:
            con.unregister("new_keys")
        new = set(got)
        return [i for i, b in enumerate(group) if (self._machine_ids[b.machine], int(b.seq)) in new]

    def _insert(
        self,
        con: duckdb.DuckDBPyConnection,
        group: list[SampleBatch],
        claimed: list[int],
        rows: _Rows,
        waves: pa.Table | None,
    ) -> None:
        if not claimed:
            return
        if len(claimed) < len(group):
            rows = rows.select(claimed)
            waves = _select_waveforms(waves, claimed)
        segments = []
        if rows.n:
            _insert_arrow(con, "samples", rows.table())
            segments.append(rows.segments())
        if waves is not None and waves.num_rows:
            _insert_arrow(con, "waveforms", waves.drop_columns(list(_WAVE_EXTRA)))
            segments.append(_wave_segments(waves))
        series = _series_summary(segments)
        if series is not None:
            # built in numpy from the group's runs: a SQL GROUP BY over the new samples
            # cost ~7 ms CPU per 170,000 values, a quarter of the whole write
            _insert_arrow(con, "series", series)

    def _column_ids(self, names: tuple[str, ...]) -> np.ndarray:
        """Signal ids of a batch's columns; a machine's batches share one name tuple."""
        ids = self._signal_id_cache.get(names)
        if ids is None:
            if len(self._signal_id_cache) > 4096:
                self._signal_id_cache.clear()
            ids = self._signal_id_cache[names] = np.asarray(
                [self._signal_ids[n] for n in names], np.int32
            )
        return ids

    def sequences(self, machine: str) -> list[tuple[int, int]]:
        mid = self._machine_ids.get(machine)
        if mid is None:
            return []
        # Gaps and islands: consecutive seqs share seq - row_number().
        sql = """SELECT min(seq), max(seq) FROM (
                   SELECT seq, seq - row_number() OVER (ORDER BY seq) AS island
                   FROM batches WHERE machine = ?)
                 GROUP BY island ORDER BY 1"""
        with self._reader() as cur:
            return [(int(a), int(b)) for a, b in cur.execute(sql, [mid]).fetchall()]

    def count(self, machine: str, signal: str | None = None) -> int:
        mid = self._machine_ids.get(machine)
        sid = self._signal_ids.get(signal) if signal is not None else None
        if mid is None or (signal is not None and sid is None):
            return 0
        sql = "SELECT coalesce(sum(n), 0)::BIGINT FROM series WHERE machine = ?"
        params: list[Any] = [mid]
        if sid is not None:
            sql += " AND signal = ?"
            params.append(sid)
        with self._reader() as cur:
            return int(cur.execute(sql, params).fetchone()[0])

    def latest(self, machine: str) -> dict[str, tuple[float, float]]:
        mid = self._machine_ids.get(machine)
        if mid is None:
            return {}
        with self._reader() as cur:
            got = cur.execute(_SERIES_TOTALS, [mid]).fetchall()
        return {self._signal_names[s]: (t, v) for s, _, t, v in got}

    # --- queries -----------------------------------------------------------------------------

    def _points_params(
        self, machine: str, signals: Iterable[str] | None, t0: float, t1: float
    ) -> dict[str, Any] | None:
        if not (math.isfinite(t0) and math.isfinite(t1) and t1 > t0):
            raise StoreError(f"time range [{t0}, {t1}) is empty or not finite")
        mid = self._machine_ids.get(machine)
        names = self._signal_ids if signals is None else signals
        sids = sorted(self._signal_ids[n] for n in names if n in self._signal_ids)
        if mid is None or not sids:
            return None
        return {"m": mid, "sids": sids, "t0": float(t0), "t1": float(t1)}

    def query(
        self,
        machine: str,
        signals: Iterable[str],
        t0: float,
        t1: float,
        buckets: int = 1000,
    ) -> dict[str, Series]:
        if buckets < 1:
            raise StoreError(f"buckets must be >= 1, got {buckets}")
        params = self._points_params(machine, list(signals), t0, t1)
        if params is None:
            return {}
        width = (t1 - t0) / buckets
        with self._reader() as cur:
            agg = cur.execute(
                f"""SELECT signal, least(floor((t - $t0) / $w), $nb - 1)::BIGINT AS b,
                           min(value) AS lo, max(value) AS hi, avg(value) AS mean,
                           count(*) AS n
                    FROM ({_POINTS}) GROUP BY signal, b ORDER BY signal, b""",
                {**params, "w": width, "nb": buckets},
            ).fetchnumpy()
            out = _bucketed(agg, t0, width, self._signal_names)
            small = [s for s, series in out.items() if int(series.count.sum()) < buckets]
            if small:
                params["sids"] = sorted(self._signal_ids[s] for s in small)
                raw = cur.execute(
                    f"SELECT signal, t, value FROM ({_POINTS}) ORDER BY signal, t, value", params
                ).fetchnumpy()
                out.update(_raw(raw, self._signal_names))
        return out

    def export(
        self,
        machine: str,
        t0: float,
        t1: float,
        path: str | Path,
        fmt: ExportFormat = "parquet",
        signals: Iterable[str] | None = None,
    ) -> int:
        if fmt not in ("parquet", "csv"):
            raise StoreError(f"export format must be 'parquet' or 'csv', got {fmt!r}")
        params = self._points_params(machine, None if signals is None else list(signals), t0, t1)
        schema = pa.schema(
            [("machine", pa.string()), ("signal", pa.string()), ("t", pa.float64()),
             ("value", pa.float64())]
        )  # fmt: skip
        sql = f"""SELECT $machine AS machine, s.name AS signal, p.t, p.value
                  FROM ({_POINTS}) p JOIN signal_ids s ON s.id = p.signal
                  ORDER BY s.name, p.t, p.value"""
        with self._reader() as cur, _writer(Path(path), fmt, schema) as write:
            if params is None:
                return 0
            reader = cur.sql(sql, params={**params, "machine": machine}).to_arrow_reader()
            n = 0
            for chunk in reader:
                write(chunk.cast(schema))
                n += chunk.num_rows
            return n

    # --- retention -----------------------------------------------------------------------------

    def delete_before(self, t: float) -> int:
        """Samples before ``t`` go; a waveform goes when it ends before ``t`` (one that
        straddles ``t`` is kept whole); batch keys go when all their data is gone."""
        with self._transaction() as con:
            before = con.execute("SELECT coalesce(sum(n), 0) FROM series").fetchone()[0]
            con.execute("DELETE FROM samples WHERE t < ?", [t])
            con.execute("DELETE FROM waveforms WHERE t_end < ?", [t])
            con.execute("DELETE FROM batches WHERE t_last < ?", [t])
            con.execute("DELETE FROM events WHERE t < ?", [t])
            con.execute("DELETE FROM alarms WHERE cleared_at < ?", [t])
            con.execute("DELETE FROM series")
            source = " UNION ALL ".join(
                [_SAMPLES_SUMMARY.format(table="samples"),
                 _WAVEFORMS_SUMMARY.format(table="waveforms")]
            )  # fmt: skip
            con.execute(_SERIES_APPEND.format(source=source))  # compacted: one row each
            after = con.execute("SELECT coalesce(sum(n), 0) FROM series").fetchone()[0]
            self._keys = self._load_keys()  # batch keys went too
        return int(before - after)

    # --- events --------------------------------------------------------------------------------

    def write_event(self, event: MachineEvent) -> bool:
        if not isinstance(event, MachineEvent) or not math.isfinite(event.t):
            raise StoreError(f"expected a MachineEvent with a finite time, got {event!r}")
        row = [event.machine_id, float(event.t), event.kind, value_json(event.value, event),
               alarm_json(event.alarm)]  # fmt: skip
        with self._transaction() as con:
            dup = con.execute(
                """SELECT count(*) FROM events WHERE machine = ? AND t = ? AND kind = ?
                   AND value IS NOT DISTINCT FROM ? AND alarm IS NOT DISTINCT FROM ?""",
                row,
            ).fetchone()[0]
            if not dup:
                con.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?)", row)
        return not dup

    def events(
        self,
        machine: str | None = None,
        since: float | None = None,
        until: float | None = None,
        kind: str | None = None,
    ) -> list[MachineEvent]:
        where, params = sql_filters(
            [("machine = ?", machine), ("t >= ?", since), ("t < ?", until), ("kind = ?", kind)]
        )
        with self._reader() as cur:
            got = cur.execute(
                f"SELECT machine, t, kind, value, alarm FROM events {where} ORDER BY t, machine",
                params,
            ).fetchall()
        return [
            MachineEvent(m, t, k, alarm_from_json(a), None if v is None else json.loads(v))
            for m, t, k, v, a in got
        ]

    # --- alarms --------------------------------------------------------------------------------

    def write_alarm(self, machine: str, alarm: Alarm) -> int:
        if not isinstance(alarm, Alarm) or not math.isfinite(alarm.raised_at):
            raise StoreError(f"machine {machine!r}: expected an Alarm with a finite raised_at")
        key = [machine, str(alarm.code), alarm.source, float(alarm.raised_at)]
        with self._transaction() as con:
            got = con.execute(
                "SELECT id FROM alarms WHERE machine = ? AND code = ? AND source = ? "
                "AND raised_at = ?",
                key,
            ).fetchone()
            if got:
                return int(got[0])
            return int(
                con.execute(
                    """INSERT INTO alarms (machine, code, source, raised_at, severity, message,
                                           cleared_at)
                       VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id""",
                    [*key, int(alarm.severity), alarm.message, alarm.cleared_at],
                ).fetchone()[0]
            )

    def update_alarm(
        self,
        alarm_id: int,
        *,
        cleared_at: float | None = None,
        acknowledged_by: str | None = None,
        comment: str | None = None,
        acknowledged_at: float | None = None,
    ) -> StoredAlarm:
        if (comment is not None or acknowledged_at is not None) and not acknowledged_by:
            raise StoreError(f"alarm {alarm_id}: acknowledging needs the user (acknowledged_by)")
        sets: list[str] = []
        params: list[Any] = []
        if cleared_at is not None:
            sets.append("cleared_at = coalesce(cleared_at, ?)")  # the first clear counts
            params.append(float(cleared_at))
        if acknowledged_by:
            sets += ["acknowledged_by = ?", "acknowledged_at = ?", "comment = ?"]
            params += [acknowledged_by, acknowledged_at or time.time(), comment]
        with self._transaction() as con:
            if sets:
                con.execute(
                    f"UPDATE alarms SET {', '.join(sets)} WHERE id = ?", [*params, alarm_id]
                )
            got = con.execute(
                f"SELECT {_ALARM_COLUMNS} FROM alarms WHERE id = ?", [alarm_id]
            ).fetchone()
        if got is None:
            raise StoreError(f"no alarm with id {alarm_id}")
        return stored_alarm(got)

    def alarms(
        self,
        machine: str | None = None,
        active: bool | None = None,
        since: float | None = None,
    ) -> list[StoredAlarm]:
        where, params = alarm_filters(machine, active, since, "?")
        with self._reader() as cur:
            got = cur.execute(
                f"SELECT {_ALARM_COLUMNS} FROM alarms {where} ORDER BY raised_at DESC, id DESC",
                params,
            ).fetchall()
        return [stored_alarm(r) for r in got]

    # --- machines ------------------------------------------------------------------------------

    def upsert_machine(self, descriptor: MachineDescriptor) -> None:
        self.upsert_machines([descriptor])

    def upsert_machines(self, descriptors: Sequence[MachineDescriptor]) -> None:
        """Several descriptors in one transaction (a fleet's births after a restart)."""
        rows = descriptor_rows(descriptors)
        if not rows:
            return
        # One statement from an Arrow table: DuckDB runs an executemany row by row, ~10 ms
        # each, so a fleet's births took seconds.
        names = ("id", "name", "site", "model", "signals", "axes", "extra")
        table = pa.table({n: [r[i] for r in rows] for i, n in enumerate(names)})
        with self._transaction() as con:
            con.register("new_machines", table)
            try:
                con.execute("INSERT OR REPLACE INTO machines SELECT * FROM new_machines")
            finally:
                con.unregister("new_machines")
        for d in descriptors:
            self._declared[d.machine_id] = frozenset(d.signals)
            self._known_cache.pop(d.machine_id, None)

    def machines(self) -> list[MachineDescriptor]:
        with self._reader() as cur:
            got = cur.execute("SELECT * FROM machines ORDER BY id").fetchall()
        return [
            MachineDescriptor(i, n, s, m, tuple(sig), tuple(ax), json.loads(x))
            for i, n, s, m, sig, ax, x in got
        ]


def _new_names(batches: Sequence[SampleBatch], ids: dict[str, int]) -> list[str]:
    """Signal names of ``batches`` without an id yet. Usually none: one C-level subset
    test per batch (a generator over every column name of a 300-batch group cost ~9 ms)."""
    known = ids.keys()
    new: list[str] = []
    for b in batches:
        if not b.columns.keys() <= known:
            new += (n for n in b.columns if n not in ids)
        new += (w.signal for w in b.waveforms if w.signal not in ids)
    return new


def _insert_arrow(con: duckdb.DuckDBPyConnection, table: str, arrow_rows: pa.Table) -> None:
    """Append a whole Arrow table (columns in the table's order) to ``table``.

    DuckDB finds ``arrow_rows`` in this frame (a replacement scan, zero copy): ~0.5 ms
    CPU less per statement than ``register`` + ``unregister``, and a write runs three of
    them whatever its size, so that is ~1.5 ms of every group's fixed cost.
    """
    con.execute(f"INSERT INTO {table} SELECT * FROM arrow_rows")


# --- stored batch keys ------------------------------------------------------------------------


class _SeqSet:
    """A set of sequence numbers as sorted, disjoint inclusive ranges (an edge numbers
    its batches consecutively, so a machine's stored keys are one range or a few)."""

    __slots__ = ("firsts", "lasts")

    def __init__(self) -> None:
        self.firsts: list[int] = []
        self.lasts: list[int] = []

    def __contains__(self, seq: int) -> bool:
        i = bisect.bisect_right(self.firsts, seq) - 1
        return i >= 0 and seq <= self.lasts[i]

    def add(self, seq: int) -> None:
        self.add_range(seq, seq)

    def add_range(self, first: int, last: int) -> None:
        """Add [first, last], merging with the ranges it overlaps or touches."""
        lo = bisect.bisect_left(self.lasts, first - 1)  # first range that may merge
        hi = bisect.bisect_right(self.firsts, last + 1)  # past the last that may merge
        if lo < hi:
            first = min(first, self.firsts[lo])
            last = max(last, self.lasts[hi - 1])
        self.firsts[lo:hi] = [first]
        self.lasts[lo:hi] = [last]

    def ranges(self) -> list[tuple[int, int]]:
        return list(zip(self.firsts, self.lasts, strict=True))


_EMPTY = _SeqSet()


# --- building rows in bulk -------------------------------------------------------------------


class _Rows:
    """The scalar samples of a group of batches as flat numpy columns."""

    def __init__(
        self, machine: np.ndarray, signal: np.ndarray, t: np.ndarray, value: np.ndarray,
        batch: np.ndarray,
    ) -> None:  # fmt: skip
        self.machine, self.signal, self.t, self.value, self.batch = machine, signal, t, value, batch

    @property
    def n(self) -> int:
        return len(self.value)

    def select(self, batches: list[int]) -> _Rows:
        return self.where(np.isin(self.batch, np.asarray(batches)))

    def where(self, keep: np.ndarray) -> _Rows:
        return _Rows(self.machine[keep], self.signal[keep], self.t[keep], self.value[keep],
                     self.batch[keep])  # fmt: skip

    def table(self) -> pa.Table:
        return pa.table({"machine": self.machine, "signal": self.signal, "t": self.t,
                         "value": self.value})  # fmt: skip

    def segments(self) -> _Segments:
        """One summary per run of a batch's signal (rows are batch-, then signal-major)."""
        n = self.n
        change = np.empty(n, bool)
        change[0] = True
        np.not_equal(self.batch[1:], self.batch[:-1], out=change[1:])
        change[1:] |= self.signal[1:] != self.signal[:-1]
        starts = np.flatnonzero(change)
        ends = np.append(starts[1:], n)
        t = self.t
        rising = np.diff(t) >= 0
        rising[starts[1:] - 1] = True  # a run's end may be above the next run's start
        if rising.all():  # the usual case: each run in time order, its newest last
            last = ends - 1
        else:  # the newest of each run by sorting (a stable sort: the later of equal times)
            run = np.repeat(np.arange(len(starts)), ends - starts)
            last = np.lexsort((t, run))[ends - 1]
        return _Segments(self.machine[starts], self.signal[starts], ends - starts,
                         np.minimum.reduceat(t, starts), t[last], self.value[last])  # fmt: skip


class _Segments(NamedTuple):
    """Per-run summaries (count, time span, newest value) before merging by series."""

    machine: np.ndarray
    signal: np.ndarray
    n: np.ndarray
    t_first: np.ndarray
    t_last: np.ndarray
    last_value: np.ndarray


def _series_summary(parts: list[_Segments]) -> pa.Table | None:
    """One ``series`` row per (machine, signal) of a write, as the SQL summary gave."""
    if not parts:
        return None
    seg = _Segments(*(np.concatenate(cols) for cols in zip(*parts, strict=True)))
    if not len(seg.n):  # only empty waveforms
        return None
    key = seg.machine.astype(np.int64) << 32 | seg.signal.astype(np.int64)
    order = np.lexsort((seg.t_last, key))  # by series, then time: a series' newest last
    key = key[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    ends = np.append(starts[1:], len(key)) - 1
    first = order[starts]
    return pa.table({
        "machine": pa.array(seg.machine[first], pa.int32()),
        "signal": pa.array(seg.signal[first], pa.int32()),
        "n": pa.array(np.add.reduceat(seg.n[order], starts), pa.int64()),
        "t_first": pa.array(np.minimum.reduceat(seg.t_first[order], starts), pa.float64()),
        "t_last": pa.array(seg.t_last[order][ends], pa.float64()),
        "last_value": pa.array(seg.last_value[order][ends], pa.float64()),
    })  # fmt: skip


def _scalar_rows(
    group: list[SampleBatch],
    mids: dict[str, int],
    column_ids: Callable[[tuple[str, ...]], np.ndarray],
) -> _Rows:
    """Flatten columns (batch-major, then signal, then time) with numpy concatenations.

    Values are checked for infinities here, over the whole group at once; the per-batch
    check only runs to name the culprit.
    """
    values, times, sig, per_batch = [], [], [], []
    for b in group:
        n_cols = len(b.columns)
        block = _block(b)
        if block is not None:  # one array per batch instead of one per column
            values.append(block.ravel())
            times.append(np.tile(b.t, n_cols))
        else:
            values += b.columns.values()
            times += [b.t] * n_cols
        sig.append(column_ids(tuple(b.columns)))
        per_batch.append(len(b.t) * n_cols)
    lengths = np.repeat([len(b.t) for b in group], [len(b.columns) for b in group])
    value = np.concatenate(values, dtype=np.float64, casting="unsafe") if values else np.empty(0)
    t = np.concatenate(times, dtype=np.float64, casting="unsafe") if times else np.empty(0)
    # t of a batch without columns is not in ``t``; check it on its own (rare).
    bad_t = not np.isfinite(t).all() or any(
        not b.columns and not np.isfinite(b.t).all() for b in group
    )
    if bad_t or np.isinf(value).any():
        for b in group:
            check_values(b)
    batch = np.repeat(np.arange(len(group), dtype=np.int32), per_batch)
    rows = _Rows(
        np.repeat(np.asarray([mids[b.machine] for b in group], np.int32), per_batch),
        np.repeat(np.concatenate(sig) if sig else np.empty(0, np.int32), lengths.astype(np.int64)),
        t, value, batch,
    )  # fmt: skip
    missing = np.isnan(value)  # NaN means "no sample": not stored
    return rows.where(~missing) if missing.any() else rows


_NUMERIC_KINDS = frozenset("biuf")


def _block(batch: SampleBatch) -> np.ndarray | None:
    """A decoded batch's values as one (n_columns, n_rows) float64 array, if it has one
    that still matches its times (see ``codec.ColumnBlock``)."""
    columns = batch.columns
    if type(columns) is not ColumnBlock:
        return None
    matrix = columns.matrix()
    if matrix is None or matrix.shape != (len(columns), len(batch.t)):
        return None
    return matrix


def _plain_structure(batch: object, known: Callable[[str], frozenset[str]]) -> bool:
    """True if ``check_structure`` would pass, tested the cheap way (no waveforms, every
    column a 1-D numeric array as long as ``t``, every name known); False means "run the
    full check", which names the problem (or passes, for unusual but valid batches)."""
    if type(batch) is not SampleBatch or batch.waveforms:
        return False
    machine, seq, t = batch.machine, batch.seq, batch.t
    if type(machine) is not str or not machine or type(seq) is not int or seq < 0:
        return False
    if type(t) is not np.ndarray or t.ndim != 1 or t.dtype.kind not in _NUMERIC_KINDS:
        return False
    if not known(machine).issuperset(batch.columns):
        return False
    shape = t.shape
    columns = batch.columns
    if type(columns) is ColumnBlock and columns.block_shape == (len(columns), len(t)):
        return True  # the codec checked every column of a decoded block
    return all(type(c) is np.ndarray and c.shape == shape and c.dtype.kind in _NUMERIC_KINDS
               for c in batch.columns.values())  # fmt: skip


def _waveform_rows(
    group: list[SampleBatch], mids: dict[str, int], sids: dict[str, int]
) -> pa.Table | None:
    waves = [(i, b, w) for i, b in enumerate(group) for w in b.waveforms]
    if not waves:
        return None
    for _, b, w in waves:
        if not np.isfinite(w.values).all():
            check_values(b)
    lengths = np.asarray([len(w.values) for _, _, w in waves], np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    flat = np.concatenate([w.values for _, _, w in waves], dtype=np.float64, casting="unsafe")
    return pa.table({
        "machine": pa.array([mids[b.machine] for _, b, _ in waves], pa.int32()),
        "signal": pa.array([sids[w.signal] for _, _, w in waves], pa.int32()),
        "seq": pa.array([int(b.seq) for _, b, _ in waves], pa.int64()),
        "t0": pa.array([float(w.t0) for _, _, w in waves], pa.float64()),
        "rate_hz": pa.array([float(w.rate_hz) for _, _, w in waves], pa.float64()),
        "rpm": pa.array([w.rpm for _, _, w in waves], pa.float64()),
        "t_end": pa.array([_wave_end(w.t0, w.rate_hz, len(w.values)) for _, _, w in waves],
                          pa.float64()),
        "value": pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat)),
        "batch": pa.array([i for i, _, _ in waves], pa.int32()),
        # for the series summary: last point of each (None if empty, left out there)
        "last_value": pa.array([float(w.values[-1]) if len(w.values) else None
                                for _, _, w in waves], pa.float64()),  # fmt: skip
    })  # fmt: skip


_WAVE_EXTRA = ("batch", "last_value")  # columns of ``_waveform_rows`` not stored


def _wave_segments(waves: pa.Table) -> _Segments:
    """A summary per non-empty waveform: its points, span and last point."""
    n = pc.list_value_length(waves["value"]).to_numpy(zero_copy_only=False).astype(np.int64)
    keep = n > 0

    def col(name: str) -> np.ndarray:
        return waves[name].to_numpy(zero_copy_only=False)[keep]

    return _Segments(col("machine"), col("signal"), n[keep], col("t0"), col("t_end"),
                     col("last_value").astype(np.float64))  # fmt: skip


def _select_waveforms(waves: pa.Table | None, claimed: list[int]) -> pa.Table | None:
    if waves is None:
        return None
    keep = np.isin(waves["batch"].to_numpy(), np.asarray(claimed))
    return waves.filter(pa.array(keep))


def _wave_end(t0: float, rate_hz: float, n: int) -> float:
    """Time of a waveform's last point, computed as the database expands it."""
    return t0 + max(n - 1, 0) / rate_hz


def _span(b: SampleBatch) -> tuple[float | None, float | None]:
    """First and last time a batch covers (samples and waveforms), for retention."""
    lo = [float(b.t.min())] if len(b.t) else []
    hi = [float(b.t.max())] if len(b.t) else []
    for w in b.waveforms:
        lo.append(float(w.t0))
        hi.append(_wave_end(w.t0, w.rate_hz, len(w.values)))
    return (min(lo), max(hi)) if lo else (None, None)


# --- reading results ---------------------------------------------------------------------


def _split(signal: np.ndarray) -> Iterator[tuple[int, slice]]:
    """Runs of equal signal ids in a result ordered by signal."""
    if len(signal) == 0:
        return
    starts = np.flatnonzero(np.diff(signal)) + 1
    bounds = [0, *starts.tolist(), len(signal)]
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        yield int(signal[a]), slice(a, b)


def _bucketed(
    agg: dict[str, np.ndarray], t0: float, width: float, names: dict[int, str]
) -> dict[str, Series]:
    out = {}
    for sid, sl in _split(agg["signal"]):
        name = names[sid]
        out[name] = Series(
            name, t0 + agg["b"][sl] * width, np.asarray(agg["lo"][sl], float),
            np.asarray(agg["hi"][sl], float), np.asarray(agg["mean"][sl], float),
            np.asarray(agg["n"][sl], np.int64), raw=False,
        )  # fmt: skip
    return out


def _raw(raw: dict[str, np.ndarray], names: dict[int, str]) -> dict[str, Series]:
    out = {}
    for sid, sl in _split(raw["signal"]):
        name = names[sid]
        v = np.asarray(raw["value"][sl], float)
        out[name] = Series(name, np.asarray(raw["t"][sl], float), v, v, v,
                           np.ones(len(v), np.int64), raw=True)  # fmt: skip
    return out


@contextmanager
def _writer(path: Path, fmt: ExportFormat, schema: pa.Schema) -> Iterator[Any]:
    """A streaming Parquet or CSV writer; the file exists (maybe empty) afterwards."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w = pq.ParquetWriter(path, schema) if fmt == "parquet" else pacsv.CSVWriter(path, schema)
    try:
        yield w.write_batch
    finally:
        w.close()


# --- small helpers ------------------------------------------------------------------------------
