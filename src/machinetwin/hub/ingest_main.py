"""Hub ingest as a process of its own: ``python -m machinetwin.hub.ingest_main``.

Runs :class:`.ingest.HubIngest` into a DuckDB file until SIGTERM/SIGINT. It exists so
that tests can kill the hub with SIGKILL mid-ingest and start it again on the same file,
and so that benchmarks can measure the hub's CPU apart from the edges' (the full
``machinetwin hub`` with its API comes with the hub command).

On a clean stop it prints one JSON line with its counters and CPU time; with
``--latency-log PATH`` it also saves, per newly stored batch, the time of its newest
sample, the wall time the store commit returned, the batch's value count and the wall
time its message arrived from the broker (an ``(n, 4)`` float64 ``.npy``).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np

from ..model import SampleBatch
from ..protocols.broker import BrokerAddress
from . import ingest
from .duckdb_store import DuckDBStore
from .ingest import HubIngest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m machinetwin.hub.ingest_main")
    parser.add_argument("--broker-host", default="127.0.0.1")
    parser.add_argument("--broker-port", type=int, required=True)
    parser.add_argument("--db", type=Path, required=True, help="DuckDB file (created if absent)")
    parser.add_argument("--client-id", default="hub-ingest")
    parser.add_argument("--latency-log", type=Path, default=None)
    parser.add_argument("--status-file", type=Path, default=None,
                        help="rewritten twice a second with the counters (JSON)")  # fmt: skip
    parser.add_argument("--group-window-ms", type=float, default=None,
                        help="how long ingest gathers messages into one store transaction")  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")

    if args.group_window_ms is not None:
        ingest.GROUP_WINDOW_S = args.group_window_ms / 1000  # read when HubIngest is made
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    store = DuckDBStore(args.db)
    hub = HubIngest(store, BrokerAddress(args.broker_host, args.broker_port), args.client_id)
    # One small row per stored batch; appended from the writer thread only.
    latency_rows: list[tuple[float, float, int, float]] = []
    if args.latency_log is not None:

        def record(batches: list[tuple[SampleBatch, float]], stored_at: float) -> None:
            latency_rows.extend(
                (float(b.t[-1]), stored_at, b.n_values, arrived)
                for b, arrived in batches
                if len(b.t)
            )

        hub.on_stored = record
    wall0, cpu0 = time.monotonic(), time.process_time()
    hub.start()
    print(json.dumps({"event": "ready", "db": str(args.db)}), flush=True)
    while not stop.wait(0.5):
        if args.status_file is not None:
            write_status(args.status_file, counters(hub, cpu0, wall0))
    hub.stop()
    store.close()
    if args.latency_log is not None:
        np.save(args.latency_log, np.asarray(latency_rows, dtype=np.float64).reshape(-1, 4))
    print(json.dumps({"event": "stopped", **counters(hub, cpu0, wall0)}), flush=True)
    return 0


def counters(hub: HubIngest, cpu0: float, wall0: float) -> dict:
    c = hub.counters
    return {
        "received": c.received,
        "stored": c.stored,
        "duplicates": c.duplicates,
        "samples": c.samples,
        "acks_sent": c.acks_sent,
        "rejected": dict(c.rejected),
        "cpu_s": round(time.process_time() - cpu0, 3),
        "wall_s": round(time.monotonic() - wall0, 3),
    }


def write_status(path: Path, status: dict) -> None:
    """Replace the file at once, so that a reader never sees half of it."""
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(status))
    partial.replace(path)


if __name__ == "__main__":
    sys.exit(main())
