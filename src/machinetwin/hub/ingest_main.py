"""Hub ingest as a process of its own: ``python -m machinetwin.hub.ingest_main``.

Runs :class:`.ingest.HubIngest` until SIGTERM/SIGINT, into a DuckDB file (``--db``) or
the store and broker of a hub file (``--config HUB.toml``: its ``[store]``, PostgreSQL
included, and its ``[broker]``). It exists so that tests can kill the hub with SIGKILL
mid-ingest and start it again, so that benchmarks can measure the hub's CPU apart from
the edges', and so that a scaled-out hub runs several of these: ``--share GROUP`` takes
data and events as MQTT shared subscriptions, each message going to one process of the
group. Only PostgreSQL can take that: a DuckDB file has one writer, so ``--share`` with
DuckDB is refused. ``machinetwin hub ingest`` runs the same.

On a clean stop it prints one JSON line with its counters and CPU time; with
``--latency-log PATH`` it also saves, per newly stored batch, the time of its newest
sample, the wall time the store commit returned, the batch's value count and the wall
time its message arrived from the broker (an ``(n, 4)`` float64 ``.npy``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..model import SampleBatch
from ..protocols.broker import BrokerAddress
from . import ingest
from .ingest import HubIngest
from .store import Store


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    try:
        store, broker = open_target(args)
    except ConfigError as exc:
        print(f"machinetwin hub ingest: {exc}", file=sys.stderr)
        return 2
    return run(args, store, broker)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m machinetwin.hub.ingest_main")
    parser.add_argument("--config", type=Path, default=None,
                        help="hub file (TOML): its [store] and [broker]")  # fmt: skip
    parser.add_argument("--share", default=None, metavar="GROUP",
                        help="MQTT shared-subscription group (PostgreSQL store only)")  # fmt: skip
    parser.add_argument("--broker-host", default=None)
    parser.add_argument("--broker-port", type=int, default=None)
    parser.add_argument("--db", type=Path, default=None, help="DuckDB file (created if absent)")
    parser.add_argument("--client-id", default=None,
                        help="default hub-ingest, or hub-ingest-<pid> with --share")  # fmt: skip
    parser.add_argument("--latency-log", type=Path, default=None)
    parser.add_argument("--status-file", type=Path, default=None,
                        help="rewritten twice a second with the counters (JSON)")  # fmt: skip
    parser.add_argument("--group-window-ms", type=float, default=None,
                        help="how long ingest gathers messages into one store transaction")  # fmt: skip
    return parser


def open_target(args: argparse.Namespace) -> tuple[Store, BrokerAddress]:
    """The store and broker the arguments name; ConfigError says what is wrong."""
    if (args.config is None) == (args.db is None):
        raise ConfigError("give either --config HUB.toml or --db FILE.duckdb")
    broker_config = None
    if args.config is not None:
        from .service import load_hub_config  # the hub file's own rules and errors

        config = load_hub_config(args.config)
        backend, broker_config = config.store_backend.backend, config.broker
    else:
        backend = "duckdb"
    if args.share is not None and backend != "postgres":
        where = f"{args.config}: [store] backend is {backend!r}" if args.config else "--db"
        raise ConfigError(f"--share {args.share}: {where}; a DuckDB file has one writer, so "
                          "several ingest processes need backend = \"postgres\"")  # fmt: skip
    broker = _broker(args, broker_config)
    if args.config is not None:
        from .store_config import open_store

        return open_store(config.store_backend, config.store), broker
    from .duckdb_store import DuckDBStore

    return DuckDBStore(args.db), broker


def _broker(args: argparse.Namespace, configured: object) -> BrokerAddress:
    """The hub file's [broker], with --broker-host/--broker-port overriding it."""
    if configured is None and args.broker_port is None:
        where = f"{args.config} has no [broker] section and " if args.config else ""
        raise ConfigError(f"{where}no --broker-port: ingest needs a running broker")
    if configured is None:
        return BrokerAddress(args.broker_host or "127.0.0.1", args.broker_port)
    address = configured.address()  # type: ignore[attr-defined]
    if args.broker_host or args.broker_port:
        from dataclasses import replace

        address = replace(address, host=args.broker_host or address.host,
                          port=args.broker_port or address.port)  # fmt: skip
    return address


def run(args: argparse.Namespace, store: Store, broker: BrokerAddress) -> int:
    if args.group_window_ms is not None:
        ingest.GROUP_WINDOW_S = args.group_window_ms / 1000  # read when HubIngest is made
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    default_id = "hub-ingest" if args.share is None else f"hub-ingest-{os.getpid()}"
    hub = HubIngest(store, broker, args.client_id or default_id, share_group=args.share)
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
    print(json.dumps({"event": "ready", "db": str(args.db or args.config), "share": args.share,
                      "pid": os.getpid()}), flush=True)  # fmt: skip
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
