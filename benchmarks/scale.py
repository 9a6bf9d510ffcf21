"""Scale-out: ingest samples/s, DuckDB versus PostgreSQL, 1 and 2 ingest processes.

The load is a fleet's: each machine sends 50 signals at 10 Hz in 100 ms batches (one
sample per signal per batch) and a 1 s block of 25.6 kHz spindle vibration every 60 s
(staggered across machines), so every machine makes ~930 samples/s.

1. **Store alone** (``store_only_*``): one process hands the store one group per 100 ms
   tick (every machine's batch of that tick); batches are made before timing, only the
   store calls are timed.
2. **Through the broker** (``duckdb_samples_per_s``, ``postgres_samples_per_s``,
   ``postgres_samples_per_s_per_core``, ``workers``): a real Mosquitto, the hub's ingest
   as OS processes (``python -m machinetwin.hub.ingest_main --config HUB.toml``: one on
   DuckDB, one and two on PostgreSQL, the two in one MQTT shared-subscription group), and
   a publisher process that sends the fleet's batches, encoded ahead by the real codec,
   as a burst (``scale_broker.py``). Samples/s = samples stored / (last commit - first
   send); ``postgres_*`` are the better of 1 and 2 processes (``workers`` says which).
3. **1,000 virtual machines** (``fleet_*``): the same machines paced in real time
   (10,000 batches/s offered) into two ingest processes on PostgreSQL: what was stored
   per second, how far behind the last batch was, and the CPU per batch, hence the cores
   that keeping up takes (on this shared 2-core box it cannot; the figure says how many).

PostgreSQL runs durably (fsync and synchronous commit on, as a production server)
in a private cluster on a loopback port (``tests/postgres_server.py``). Per-core
figures divide samples by the CPU seconds spent on them: this process or the ingest
processes (Python, DuckDB's threads), and for PostgreSQL every server process, so a
figure does not depend on how many cores were free (the box is shared: wall rates do).

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
sys.path.insert(0, str(Path(__file__).resolve().parent))
import scale_broker as sb  # noqa: E402

from mosquitto_server import MosquittoServer  # noqa: E402
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
                        help="seconds of fleet data to write (default 30, 2 with --quick)")  # fmt: skip
    parser.add_argument("--fleet", type=int, default=1000, help="machines of the paced run")
    args = parser.parse_args()
    seconds = args.seconds or (2.0 if args.quick else 30.0)
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
            broker = through_broker(args, Path(tmp), server)
    report(args, seconds, results, broker)


# --- through the broker: ingest processes -------------------------------------------------


def through_broker(args: argparse.Namespace, tmp: Path, server: PostgresServer) -> dict:
    """DuckDB x1, PostgreSQL x1 and x2 on a burst of the fleet; then the paced big fleet.

    Each run has a broker of its own, so that every run's ingest processes can start
    (seconds of imports on a busy box) at once, while the publishers encode.
    """
    burst_ticks = 10 if args.quick else 100
    paced_ticks = 10 if args.quick else 200  # 1 s of the big fleet in --quick: its CPU cost
    burst = sb.Publisher("b", args.machines, burst_ticks, paced=False)
    paced = sb.Publisher("v", args.fleet, paced_ticks, paced=True)
    runs = {"duckdb_1": ("duckdb", 1, burst), "postgres_1": ("postgres", 1, burst),
            "postgres_2": ("postgres", 2, burst), "fleet": ("postgres", 2, paced)}  # fmt: skip
    brokers, procs = {}, {}
    try:
        for name, (backend, workers, _) in runs.items():
            brokers[name] = MosquittoServer(tmp / f"mqtt-{name}", extra=(
                "max_queued_messages 0", "max_inflight_messages 1000"))  # fmt: skip
            brokers[name].start()
            hub = _hub_file(tmp, name, backend, brokers[name].port, server)
            share = "scale" if workers > 1 else None
            procs[name] = [sb.IngestProcess(hub, tmp, f"{name}-{i}", share)
                           for i in range(workers)]  # fmt: skip
        out = {}
        for name, (backend, _, publisher) in runs.items():
            out[name] = ingest_run(name, procs.pop(name), brokers[name].port, publisher,
                                   server if backend == "postgres" else None)  # fmt: skip
        return out
    finally:
        for group in procs.values():
            for p in group:
                p.proc.kill()
        burst.close()
        paced.close()
        for broker in brokers.values():
            broker.stop()


def _hub_file(tmp: Path, name: str, backend: str, port: int, server: PostgresServer) -> Path:
    store = (f'[store]\nbackend = "postgres"\ndsn = "{server.dsn()}"\nschema = "{name}"\n'
             if backend == "postgres" else f'store = "{tmp / (name + ".duckdb")}"\n')  # fmt: skip
    path = tmp / f"{name}.toml"
    path.write_text(f"{store}[broker]\nport = {port}\n")
    return path


def ingest_run(name: str, procs: list[sb.IngestProcess], port: int, publisher: sb.Publisher,
               server: PostgresServer | None) -> dict:  # fmt: skip
    """Births first, then the publisher's plan once; wait until every batch is stored.

    CPU counted: the ingest processes' and, on PostgreSQL, every server process's (the
    server's idle work is in it too, which only lowers the per-core figure).
    """
    try:
        for p in procs:
            p.ready()
        births = publisher.encoded()["births"]
        publisher.births(port)
        if not sb.wait_status(procs, "received", births, 120):
            raise RuntimeError(f"{name}: the ingest processes did not get the births")
        pg0 = _server_cpu(server)
        ing0 = sb.cpu_of([p.proc.pid for p in procs])
        publisher.go()
        sent = publisher.sent()
        batches = publisher.encoded()["batches"]
        if not sb.wait_status(procs, "handled", batches, 300):
            raise RuntimeError(f"{name}: not every batch was stored")
        ing = sb.cpu_of([p.proc.pid for p in procs]) - ing0
        pg1 = _server_cpu(server)
        pg = sum(v - pg0.get(k, 0.0) for k, v in pg1.items())
    finally:
        stopped = [p.stop() for p in procs if p.proc.poll() is None]
    return _figures(stopped, sent, ing, pg, batches)


def _server_cpu(server: PostgresServer | None) -> dict[int, float]:
    """CPU seconds of each PostgreSQL process (none for DuckDB)."""
    if server is None or server.process is None:
        return {}
    return {pid: _cpu_of([pid]) for pid in server_pids(server.process.pid)}


def _figures(stopped: list[tuple[dict, np.ndarray]], sent: dict, ing: float, pg: float,
             batches: int) -> dict:  # fmt: skip
    counters = [c for c, _ in stopped]
    log = np.concatenate([lg for _, lg in stopped])  # newest t, stored_at, values, arrived
    samples = sum(c["samples"] for c in counters)
    wall = float(log[:, 1].max()) - sent["start"]
    end = sent["end"]  # the steady part of a paced run: after its first 30 %
    start = sent["start"] + 0.3 * (end - sent["start"])
    steady = ((log[:, 1] >= start) & (log[:, 1] < end)).sum() / max(end - start, 1e-9)
    return {"samples": samples, "batches": batches,
            "stored": sum(c["stored"] for c in counters),
            "duplicates": sum(c["duplicates"] for c in counters),
            "per_process_stored": [c["stored"] for c in counters],
            "wall_s": wall, "ingest_cpu_s": ing, "server_cpu_s": pg,
            "samples_per_s": samples / wall, "samples_per_cpu_s": samples / (ing + pg),
            "batches_per_cpu_s": batches / (ing + pg),
            "send_s": sent["end"] - sent["start"], "steady_batches_per_s": float(steady),
            "lag_s": float(log[:, 1].max()) - sent["end"]}  # fmt: skip


def report(args: argparse.Namespace, seconds: float, results: dict[str, dict],
           broker: dict[str, dict]) -> None:  # fmt: skip
    per_machine = SIGNALS_PER_MACHINE * RATE_HZ + VIB_HZ / VIB_EVERY_S
    print(f"{args.machines} machines x ({SIGNALS_PER_MACHINE} signals x {RATE_HZ:g} Hz + "
          f"{VIB_HZ / 1000:g} kHz vibration 1 s per {VIB_EVERY_S:g} s) = "
          f"{args.machines * per_machine:,.0f} samples/s live")  # fmt: skip
    print(f"Store alone, one process, {seconds:g} s of it:")
    for name, r in results.items():
        print(f"  {name:12s} {r['samples_per_s']:12,.0f} samples/s wall  "
              f"{r['samples_per_cpu_s']:12,.0f} samples per CPU-s  "
              f"(client {r['client_cpu_s']:.2f} CPU-s, server {r['server_cpu_s']:.2f} CPU-s, "
              f"{r['samples']:,} samples, {r['batches']:,} batches)")  # fmt: skip
    print("Through Mosquitto, ingest processes (a burst of the fleet, published at once):")
    for name in ("duckdb_1", "postgres_1", "postgres_2"):
        _print_run(name, broker[name])
    f = broker["fleet"]
    print(f"{args.fleet:,} virtual machines (50 signals at 10 Hz, paced in real time), "
          f"2 ingest processes on PostgreSQL:")  # fmt: skip
    _print_run("fleet", f)
    print(f"  offered {args.fleet * 10:,} batches/s, stored {f['steady_batches_per_s']:,.0f}/s "
          f"in the steady part; last batch stored {f['lag_s']:.2f} s after the last was sent; "
          f"{(f['ingest_cpu_s'] + f['server_cpu_s']) / f['wall_s']:.2f} cores (ingest + "
          f"PostgreSQL) got; at {_ms_per_batch(f):.3f} CPU-ms per batch, keeping up needs "
          f"{_cores_needed(args, f):.1f} cores")  # fmt: skip
    best = max(("postgres_1", "postgres_2"), key=lambda n: broker[n]["samples_per_s"])
    pg_core = broker[best]["samples_per_cpu_s"]
    lo, hi = THINGSBOARD_PG_POINTS_PER_S
    print(f"ThingsBoard (published): {THINGSBOARD_MSG_PER_S:,} msg/s on {THINGSBOARD_VCPU} vCPU "
          f"({THINGSBOARD_MSG_PER_S / THINGSBOARD_VCPU:,.0f}/vCPU); {lo:,}-{hi:,} points/s "
          f"with PostgreSQL")  # fmt: skip
    print(f"PostgreSQL through the broker, per core vs ThingsBoard's PostgreSQL figure "
          f"({hi:,}/s): {pg_core / hi:.1f}x (target >= 10x)")  # fmt: skip
    print(json.dumps(_json(args, results, broker, best)))


def _ms_per_batch(r: dict) -> float:
    return 1000 * (r["ingest_cpu_s"] + r["server_cpu_s"]) / r["batches"]


def _cores_needed(args: argparse.Namespace, r: dict) -> float:
    """CPU per batch times the fleet's offered batches/s: what keeping up in real time takes."""
    return _ms_per_batch(r) / 1000 * args.fleet / TICK_S


def _print_run(name: str, r: dict) -> None:
    print(f"  {name:12s} {r['samples_per_s']:12,.0f} samples/s wall  "
          f"{r['samples_per_cpu_s']:12,.0f} samples per CPU-s  (ingest {r['ingest_cpu_s']:.2f} "
          f"CPU-s, PostgreSQL {r['server_cpu_s']:.2f} CPU-s, {r['stored']:,} batches stored "
          f"{r['per_process_stored']}, {r['duplicates']} duplicates)")  # fmt: skip


def _json(args: argparse.Namespace, results: dict, broker: dict, best: str) -> dict:
    lo, hi = THINGSBOARD_PG_POINTS_PER_S
    f = broker["fleet"]
    out = {
        "duckdb_samples_per_s": round(broker["duckdb_1"]["samples_per_s"]),
        "postgres_samples_per_s": round(broker[best]["samples_per_s"]),
        "postgres_samples_per_s_per_core": round(broker[best]["samples_per_cpu_s"]),
        "workers": 2 if best == "postgres_2" else 1,
        "duckdb_samples_per_s_per_core": round(broker["duckdb_1"]["samples_per_cpu_s"]),
    }
    out["postgres_batches_per_s_per_core"] = round(broker[best]["batches_per_cpu_s"])
    for name in ("postgres_1", "postgres_2"):
        out[f"{name}_workers_samples_per_s"] = round(broker[name]["samples_per_s"])
        out[f"{name}_workers_samples_per_s_per_core"] = round(broker[name]["samples_per_cpu_s"])
    out |= {
        "postgres_2_workers_split": broker["postgres_2"]["per_process_stored"],
        "fleet_machines": args.fleet,
        "fleet_offered_batches_per_s": args.fleet * 10,
        "fleet_stored_batches_per_s": round(f["steady_batches_per_s"]),
        "fleet_lag_s": round(f["lag_s"], 2),
        "fleet_cpu_cores_got": round((f["ingest_cpu_s"] + f["server_cpu_s"]) / f["wall_s"], 2),
        "fleet_cpu_ms_per_batch": round(_ms_per_batch(f), 3),
        "fleet_cores_needed": round(_cores_needed(args, f), 2),
        "fleet_samples_per_s_per_core": round(f["samples_per_cpu_s"]),
        "store_only_duckdb_samples_per_s": round(results["duckdb"]["samples_per_s"]),
        "store_only_postgres_samples_per_s": round(results["postgres"]["samples_per_s"]),
        "store_only_postgres_samples_per_s_per_core": round(results["postgres"]["samples_per_cpu_s"]),
        "thingsboard_pg_points_per_s": hi,
        "postgres_vs_thingsboard_pg_per_core": round(broker[best]["samples_per_cpu_s"] / hi, 1),
        "duplicates": sum(r["duplicates"] for r in broker.values()),
        "machines": args.machines,
        "loadavg_1min_at_end": os.getloadavg()[0],
        "quick": args.quick,
    }  # fmt: skip
    return out


if __name__ == "__main__":
    main()
