"""Scale-out: ingest samples/s through the ``Store``, DuckDB versus PostgreSQL.

The load is a fleet's: each machine sends 50 signals at 10 Hz in 100 ms batches (one
sample per signal per batch) and a 1 s block of 25.6 kHz spindle vibration every 60 s
(staggered across machines), so every machine makes ~930 samples/s. The hub's ingest
hands the store one group per 100 ms tick: every machine's batch of that tick. Batches
are generated before timing; only the store calls are timed.

PostgreSQL runs durably (fsync and synchronous commit on, as a production server)
in a private cluster on a loopback port (``tests/postgres_server.py``). Per-core
figures divide samples by the CPU seconds spent on them, by this process (Python,
DuckDB's threads) and, for PostgreSQL, by every server process, so a figure does not
depend on how many cores were free.

For reference, ThingsBoard's published figures: 30,000 msg/s on 8 vCPU, and
5,000-10,000 data points/s with PostgreSQL as its time-series store. The target is 10x
the latter per core (>= 100,000 samples/s per core).

Prints a table and, as its last line, one JSON object (``duckdb_samples_per_s``,
``postgres_samples_per_s``, ``postgres_samples_per_s_per_core``, ``workers``, ...).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from machinetwin.hub import DuckDBStore, Store
from machinetwin.hub.postgres_store import PostgresStore
from machinetwin.model import SampleBatch, Waveform
from machinetwin.model.signals import SIGNALS

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from postgres_server import PostgresServer  # noqa: E402

TICK_S = 0.1
SIGNALS_PER_MACHINE = 50
RATE_HZ = 10.0
VIB_HZ = 25_600.0
VIB_EVERY_S = 60.0
AUX = [f"aux.{i}" for i in range(SIGNALS_PER_MACHINE)]  # to make up 50 per machine
THINGSBOARD_MSG_PER_S, THINGSBOARD_VCPU = 30_000, 8
THINGSBOARD_PG_POINTS_PER_S = (5_000, 10_000)


def fleet(machines: int, ticks: int, seed: int = 1) -> Iterator[list[SampleBatch]]:
    """One group (every machine's batch) per 100 ms tick."""
    rng = np.random.default_rng(seed)
    names = (list(SIGNALS) + AUX)[:SIGNALS_PER_MACHINE]
    phase = rng.uniform(0, 2 * np.pi, (machines, SIGNALS_PER_MACHINE, 1))
    every = round(VIB_EVERY_S / TICK_S)
    for tick in range(ticks):
        t = np.array([tick * TICK_S])
        values = np.sin(t * 0.7 + phase) * 100 + rng.normal(0, 0.1, (machines, len(names), 1))
        group = []
        for m in range(machines):
            waves = []
            if tick % every == (m * 7) % every:  # staggered: a few machines per tick
                vib = rng.normal(0, 1.0, int(VIB_HZ))
                waves.append(Waveform("spindle.vib", float(t[0]), VIB_HZ, vib, 6000.0))
            cols = dict(zip(names, values[m], strict=True))
            group.append(SampleBatch(f"m{m:04d}", t, cols, seq=tick, waveforms=waves))
        yield group


def _cpu_of(pids: list[int]) -> float:
    """CPU seconds (user + system, and of waited-for children) of processes in /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone: its time is in the parent's children figures
        total += sum(int(x) for x in fields[11:15]) / tick  # utime stime cutime cstime
    return total


def server_pids(postmaster: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == postmaster:
                children.append(int(entry.name))
    return [postmaster, *children]


def run(store: Store, groups: list[list[SampleBatch]], server_cpu: Callable[[], float]) -> dict:
    """Write every group; wall time and CPU time of the store calls only."""
    wall = cpu = srv = 0.0
    samples = sum(b.n_values for g in groups for b in g)
    for group in groups:
        w0, c0, s0 = time.perf_counter(), time.process_time(), server_cpu()
        assert all(store.write_batches(group))
        wall += time.perf_counter() - w0
        cpu += time.process_time() - c0
        srv += server_cpu() - s0
    return {"samples": samples, "batches": sum(len(g) for g in groups), "wall_s": wall,
            "client_cpu_s": cpu, "server_cpu_s": srv, "samples_per_s": samples / wall,
            "samples_per_cpu_s": samples / (cpu + srv)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (under 50 s)")
    parser.add_argument("--machines", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=None,
                        help="seconds of fleet data to write (default 30, 5 with --quick)")  # fmt: skip
    args = parser.parse_args()
    seconds = args.seconds or (5.0 if args.quick else 30.0)
    ticks = round(seconds / TICK_S)
    groups = list(fleet(args.machines, ticks))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        with DuckDBStore(Path(tmp) / "hub.duckdb", extra_signals=AUX) as store:
            results["duckdb"] = run(store, groups, lambda: 0.0)
        try:
            server = PostgresServer(durable=True)
        except (FileNotFoundError, RuntimeError) as e:
            raise SystemExit(f"benchmarks/scale.py: {e}: run `sudo make system-deps` "
                             "(installs postgresql)") from None  # fmt: skip
        with server:
            assert server.process is not None
            with PostgresStore(server.dsn(), extra_signals=AUX) as store:
                pids = server_pids(server.process.pid)  # with the store's connection
                results["postgres"] = run(store, groups, lambda: _cpu_of(pids))
                assert store.count("m0000") == sum(
                    b.n_values for g in groups for b in g if b.machine == "m0000"
                )
    report(args, seconds, results)


def report(args: argparse.Namespace, seconds: float, results: dict[str, dict]) -> None:
    per_machine = SIGNALS_PER_MACHINE * RATE_HZ + VIB_HZ / VIB_EVERY_S
    print(f"{args.machines} machines x ({SIGNALS_PER_MACHINE} signals x {RATE_HZ:g} Hz + "
          f"{VIB_HZ / 1000:g} kHz vibration 1 s per {VIB_EVERY_S:g} s) = "
          f"{args.machines * per_machine:,.0f} samples/s live; {seconds:g} s of it, 1 worker")  # fmt: skip
    for name, r in results.items():
        print(f"{name:9s} {r['samples_per_s']:12,.0f} samples/s wall  "
              f"{r['samples_per_cpu_s']:12,.0f} samples per CPU-s  "
              f"(client {r['client_cpu_s']:.2f} CPU-s, server {r['server_cpu_s']:.2f} CPU-s, "
              f"{r['samples']:,} samples, {r['batches']:,} batches)")  # fmt: skip
    pg = results["postgres"]["samples_per_cpu_s"]
    lo, hi = THINGSBOARD_PG_POINTS_PER_S
    print(f"ThingsBoard (published): {THINGSBOARD_MSG_PER_S:,} msg/s on {THINGSBOARD_VCPU} vCPU "
          f"({THINGSBOARD_MSG_PER_S / THINGSBOARD_VCPU:,.0f}/vCPU); {lo:,}-{hi:,} points/s "
          f"with PostgreSQL")  # fmt: skip
    print(f"PostgreSQL per core vs ThingsBoard's PostgreSQL figure ({hi:,}/s): "
          f"{pg / hi:.1f}x (target >= 10x)")  # fmt: skip
    print(json.dumps({
        "duckdb_samples_per_s": round(results["duckdb"]["samples_per_s"]),
        "postgres_samples_per_s": round(results["postgres"]["samples_per_s"]),
        "postgres_samples_per_s_per_core": round(pg),
        "duckdb_samples_per_s_per_core": round(results["duckdb"]["samples_per_cpu_s"]),
        "thingsboard_pg_points_per_s": hi,
        "postgres_vs_thingsboard_pg_per_core": round(pg / hi, 1),
        "machines": args.machines,
        "workers": 1,
        "quick": args.quick,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
