"""End-to-end ingest: edge → MQTT broker → hub → DuckDB store, on this machine.

Every part is the real one: the edge agent (SQLite buffer, paho uplinks, one MQTT
connection per machine), the link emulator, Mosquitto (the embedded broker if
Mosquitto is not installed; the JSON says which), the hub's ingest in a process of its
own (``python -m machinetwin.hub.ingest_main``) and its DuckDB file. Only the machines
are synthetic: :class:`SyntheticAdapter` yields pre-built batches, so that the figures
measure the pipeline, not the simulator.

Edges run as "sites" in processes of their own (``--sites``), each with its own buffer
and its own emulated link (15 ms one way, no jitter, so that the link's delay is exact
and can be subtracted).

Phases:

1. **throughput** (``samples_per_s``): machines of 50 signals sampled at 1 kHz, i.e.
   100 rows per 100 ms batch (5,000 values), plus one second of 25.6 kHz spindle
   vibration per minute of data (every 600th batch), produced as fast as the pipeline
   takes them: each machine keeps at most ``WINDOW`` batches unacknowledged (flow
   control, as a TCP window; without it the backlog, not the pipeline, is measured).
   Samples/s = values stored / (last store commit − first batch produced).
2. **latency** (``latency_added_p50_ms``/``p99``): the same machines paced in real time
   (10 batches/s each) at about half the measured throughput; per batch, the time the
   store commit returned minus the time of the batch's newest sample (the earliest the
   edge could send it), minus the link's 15 ms.
3. **300 machines** (full run only, ``hub_cpu_cores_300_machines``): 50 signals at 10 Hz
   (one row per 100 ms batch) and one second of 25.6 kHz vibration per machine per
   minute, paced in real time; the hub process's CPU time / wall time over the steady
   part, read from /proc.

``lost``/``duplicated``: per machine, values the edge produced vs values in the store
after every edge drained its buffer (all phases added up).

The hub's message grouping window (``GROUP_WINDOW_S`` in hub/ingest.py, 0 ms: it takes what
has queued) bounds how long a batch waits; ``--group-window-ms`` runs the hub with another.

Prints the figures and, as its last line, one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import duckdb
import numpy as np

from machinetwin.edge.agent import EdgeAgent
from machinetwin.edge.buffer import DurableBuffer
from machinetwin.hub.broker import EmbeddedBroker
from machinetwin.model import AdapterCommand, MachineDescriptor, SampleBatch, Waveform
from machinetwin.model.signals import SIGNALS
from machinetwin.net import BackgroundLink, LinkEmulator, LinkProfile
from machinetwin.protocols.broker import BrokerAddress

# The private-Mosquitto helper is shared with the tests.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from mosquitto_server import MosquittoServer, find_mosquitto  # noqa: E402

LINK_MS = 15.0
N_SIGNALS = 50
SIGNAL_NAMES = tuple((list(SIGNALS) + [f"aux.{i}" for i in range(N_SIGNALS)])[:N_SIGNALS])
BATCH_PERIOD_S = 0.1
VIB_RATE_HZ = 25_600.0
VIB_EVERY_S = 60.0  # one second of vibration per minute of data
WINDOW = 16  # unacknowledged batches per machine in the throughput phase
# Latency counts batches produced after this long: the uplinks connect while the first
# batches are produced, and those wait for the resend loop (≤ 1 s) — a start-up effect.
LATENCY_SETTLE_S = 2.0


# --- the synthetic machine ------------------------------------------------------------


@dataclass
class MachineSpec:
    machine: str
    rows: int  # rows per batch (sample rate x batch period)
    paced: bool  # real time (10 batches/s) or as fast as the window allows
    vib_phase: int  # batch index of the first vibration window (staggers machines)


class SyntheticAdapter:
    """Yields pre-built columns with fresh timestamps: almost no CPU of its own."""

    def __init__(self, spec: MachineSpec, site: str, seed: int) -> None:
        self.spec = spec
        self.descriptor = MachineDescriptor(spec.machine, spec.machine, site, "synthetic",
                                            signals=SIGNAL_NAMES)  # fmt: skip
        rng = np.random.default_rng(seed)
        self.columns = {n: rng.normal(100.0, 10.0, spec.rows) for n in SIGNAL_NAMES}
        self.vibration = rng.normal(0.0, 1.0, int(VIB_RATE_HZ))
        # newest sample is "now"; older rows go back at the sample rate
        self.offsets = (spec.rows - 1 - np.arange(spec.rows)) * (BATCH_PERIOD_S / spec.rows)
        self.vib_every = round(VIB_EVERY_S / BATCH_PERIOD_S)
        self.backlog: Callable[[], int] = lambda: 0  # set by the site once uplinks exist
        self.closed = False
        self.produced_batches = 0
        self.produced_values = 0

    async def batches(self) -> AsyncIterator[SampleBatch]:
        started = time.monotonic()
        k = 0
        while not self.closed:
            now = time.time()
            waves = []
            if k % self.vib_every == self.spec.vib_phase % self.vib_every:
                waves.append(Waveform("spindle.vib", now - 1.0, VIB_RATE_HZ, self.vibration,
                                      6000.0))  # fmt: skip
            batch = SampleBatch(self.spec.machine, now - self.offsets, self.columns,
                                waveforms=waves)  # fmt: skip
            self.produced_batches += 1
            self.produced_values += batch.n_values
            yield batch
            k += 1
            if self.spec.paced:
                await asyncio.sleep(max(0.0, started + k * BATCH_PERIOD_S - time.monotonic()))
            else:
                await asyncio.sleep(0)
                while self.backlog() >= WINDOW and not self.closed:
                    await asyncio.sleep(0.002)

    async def command(self, command: AdapterCommand) -> None:  # pragma: no cover
        raise NotImplementedError

    async def close(self) -> None:
        self.closed = True


# --- one site (an edge process) ---------------------------------------------------------


@dataclass
class SiteJob:
    site: str
    broker_port: int
    specs: list[MachineSpec]
    seconds: float
    workdir: str
    start_at: float  # wall clock, so that every site starts together


def run_site(job: SiteJob) -> dict[str, tuple[int, int]]:
    """Run a site's machines for ``seconds``, then drain; returns machine -> (batches, values)."""
    adapters = [SyntheticAdapter(s, job.site, i) for i, s in enumerate(job.specs)]
    buffer = DurableBuffer(Path(job.workdir) / f"{job.site}.sqlite", quota_bytes=4 * 2**30)
    emulator = LinkEmulator("127.0.0.1", job.broker_port, LinkProfile(latency_ms=LINK_MS))
    with BackgroundLink(emulator) as link:
        agent = EdgeAgent(list(adapters), BrokerAddress("127.0.0.1", link.port, keepalive_s=10),
                          buffer, resend_after_s=10.0)  # fmt: skip
        for a in adapters:
            uplink = agent.uplinks[a.spec.machine]
            a.backlog = lambda a=a, u=uplink: a.produced_batches - u.stats.acked

        async def main() -> bool:
            await asyncio.sleep(max(0.0, job.start_at - time.time()))
            run = asyncio.create_task(agent.run())
            await asyncio.sleep(job.seconds)
            agent.stop()
            await run
            return await agent.drain(timeout_s=120.0)

        drained = asyncio.run(main())
        agent.close()
    buffer.close()
    if not drained:
        print(f"{job.site}: buffer did not drain", file=sys.stderr)
    return {a.spec.machine: (a.produced_batches, a.produced_values) for a in adapters}


def run_sites(
    pool: ProcessPoolExecutor, port: int, specs: list[MachineSpec], sites: int, seconds: float,
    workdir: Path, tag: str,
) -> dict[str, tuple[int, int]]:  # fmt: skip
    start_at = time.time() + 2.0  # time for every process to connect
    jobs = [SiteJob(f"{tag}-site{i}", port, specs[i::sites], seconds, str(workdir), start_at)
            for i in range(sites)]  # fmt: skip
    produced: dict[str, tuple[int, int]] = {}
    for result in pool.map(run_site, jobs):
        produced.update(result)
    return produced


# --- a light stand-in for 300 edges (hub CPU) -------------------------------------------


@dataclass
class PublisherJob:
    broker_port: int
    specs: list[MachineSpec]
    seconds: float
    start_at: float  # wall clock of the first tick
    clients: int = 10


def run_publisher(job: PublisherJob) -> dict[str, tuple[int, int]]:
    """Publish pre-encoded batches of many machines on schedule, QoS 1, no edge buffer.

    The real edge agent spends ~2 ms of CPU per batch at 150 machines per process (a
    SQLite transaction per batch and per ack, 150 paho threads contending for the GIL),
    so on this 2-core machine it cannot offer 300 machines' 3,000 batches/s while the
    hub and the broker run too. This sends the same messages (one MQTT connection per
    ``clients`` machines, not per machine), so that the hub's CPU is measured at the
    full load. Acks go unread.
    """
    import paho.mqtt.client as mqtt

    from machinetwin.protocols import codec, topics

    ticks = round(job.seconds / BATCH_PERIOD_S)
    adapters = [SyntheticAdapter(s, "fleet", i) for i, s in enumerate(job.specs)]
    plan: list[list[tuple[str, bytes]]] = []  # per tick: (topic, payload)
    produced = {a.spec.machine: [0, 0] for a in adapters}
    for k in range(ticks):  # encoded ahead, so that encoding is not measured as load
        now = job.start_at + (k + 1) * BATCH_PERIOD_S
        row = []
        for a in adapters:
            waves = []
            if k % a.vib_every == a.spec.vib_phase % a.vib_every:
                waves.append(Waveform("spindle.vib", now - 1.0, VIB_RATE_HZ, a.vibration, 6000.0))
            batch = SampleBatch(a.spec.machine, now - a.offsets, a.columns, seq=k, waveforms=waves)
            row.append((topics.data(a.spec.machine), codec.encode_batch(batch)))
            produced[a.spec.machine][0] += 1
            produced[a.spec.machine][1] += batch.n_values
        plan.append(row)
    clients = []
    for i in range(job.clients):
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"fleet-{os.getpid()}-{i}")
        c.max_inflight_messages_set(1000)
        c.connect("127.0.0.1", job.broker_port, 30)
        c.loop_start()
        clients.append(c)
    for a in adapters:  # birth first: the hub accepts only declared signals
        c = clients[hash(a.spec.machine) % len(clients)]
        c.publish(topics.birth(a.spec.machine), codec.encode_descriptor(a.descriptor), qos=1,
                  retain=True).wait_for_publish(10)  # fmt: skip
    infos = []
    for k, row in enumerate(plan):
        time.sleep(max(0.0, job.start_at + (k + 1) * BATCH_PERIOD_S - time.time()))
        for j, (topic, payload) in enumerate(row):
            infos.append(clients[j % len(clients)].publish(topic, payload, qos=1))
    for info in infos:
        info.wait_for_publish(30)
    for c in clients:
        c.disconnect()
        c.loop_stop()
    return {m: (b, v) for m, (b, v) in produced.items()}


# --- the hub process --------------------------------------------------------------------


class Hub:
    def __init__(self, port: int, db: Path, latency_log: Path, group_window_ms: float | None):
        args = [sys.executable, "-m", "machinetwin.hub.ingest_main", "--broker-port", str(port),
                "--db", str(db), "--latency-log", str(latency_log)]  # fmt: skip
        if group_window_ms is not None:
            args += ["--group-window-ms", str(group_window_ms)]
        self.latency_log = latency_log
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()  # type: ignore[union-attr]
        assert json.loads(line)["event"] == "ready", line

    def cpu_s(self) -> float:
        """utime + stime of the hub process (all its threads), from /proc."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def wait_idle(self, timeout_s: float = 120.0) -> None:
        """Until the hub stops using CPU: the broker's queue to it is empty and written."""
        deadline = time.monotonic() + timeout_s
        last = self.cpu_s()
        while time.monotonic() < deadline:
            time.sleep(1.0)
            now = self.cpu_s()
            if now - last < 0.05:
                return
            last = now

    def stop(self) -> tuple[dict, np.ndarray]:
        self.wait_idle()  # a publisher without resends relies on this
        self.process.send_signal(signal.SIGTERM)
        out, _ = self.process.communicate(timeout=120)
        return json.loads(out.strip().splitlines()[-1]), np.load(self.latency_log)


def stored_values(db: Path) -> dict[str, tuple[int, int]]:
    """machine -> (distinct batches, values) in the store."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        names = dict(con.execute("SELECT id, name FROM machine_ids").fetchall())
        batches = dict(con.execute("SELECT machine, count(*) FROM batches GROUP BY 1").fetchall())
        scalars = dict(con.execute("SELECT machine, count(*) FROM samples GROUP BY 1").fetchall())
        points = dict(con.execute(
            "SELECT machine, sum(len(value)) FROM waveforms GROUP BY 1").fetchall())  # fmt: skip
    finally:
        con.close()
    return {name: (int(batches.get(i, 0)), int(scalars.get(i, 0)) + int(points.get(i) or 0))
            for i, name in names.items()}  # fmt: skip


# --- phases -------------------------------------------------------------------------------


def specs(prefix: str, n: int, rows: int, paced: bool) -> list[MachineSpec]:
    return [MachineSpec(f"{prefix}{i:03d}", rows, paced, i * 7) for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short phases, no 300-machine run")
    parser.add_argument("--machines", type=int, default=24, help="throughput phase machines")
    parser.add_argument("--sites", type=int, default=2, help="edge processes")
    parser.add_argument("--group-window-ms", type=float, default=None,
                        help="the hub's grouping window (default: hub/ingest.py's)")  # fmt: skip
    parser.add_argument("--latency-machines", type=int, default=None,
                        help="machines in the latency phase (default: ~half the throughput)")  # fmt: skip
    parser.add_argument("--fleet-edges", action="store_true",
                        help="300-machine run with real edge agents instead of the light publisher")  # fmt: skip
    parser.add_argument("--embedded", action="store_true", help="use the embedded broker")
    args = parser.parse_args()
    seconds = 8.0 if args.quick else 20.0

    with tempfile.TemporaryDirectory(prefix="mt-ingest-bench-") as tmp:
        workdir = Path(tmp)
        if args.embedded or find_mosquitto() is None:
            broker: MosquittoServer | EmbeddedBroker = EmbeddedBroker()
            broker_name = "embedded (amqtt)"
        else:
            # The hub's queue at the broker must hold a full window of every machine;
            # Mosquitto's default of 1000 would drop past it (the edges would resend).
            broker = MosquittoServer(workdir / "mosquitto", extra=("max_queued_messages 20000",))
            broker_name = "mosquitto"
        broker.start()
        pool = ProcessPoolExecutor(args.sites, mp_context=get_context("spawn"))
        results: dict[str, object] = {"broker": broker_name, "cpus": os.cpu_count()}
        produced: dict[str, tuple[int, int]] = {}
        db = workdir / "hub.duckdb"
        try:
            # 1. throughput ----------------------------------------------------------------
            hub = Hub(broker.port, db, workdir / "lat1.npy", args.group_window_ms)
            t0 = time.time()
            fast = specs("fast", args.machines, 100, paced=False)
            produced |= run_sites(pool, broker.port, fast, args.sites, seconds, workdir, "tp")
            report, log = hub.stop()
            first = min(log[:, 0]) - BATCH_PERIOD_S  # newest sample - batch span = first sample
            span = log[:, 1].max() - max(first, t0)
            rate = log[:, 2].sum() / span
            results["samples_per_s"] = round(rate)
            results["throughput_batches_per_s"] = round(len(log) / span)
            results["throughput_hub_cpu_s_per_wall_s"] = round(
                report["cpu_s"] / report["wall_s"], 2
            )
            print(f"throughput: {rate / 1e6:.2f} M samples/s ({len(log) / span:.0f} batches/s "
                  f"of {100 * N_SIGNALS} values) from {args.machines} machines on {args.sites} "
                  f"sites via {broker_name}; hub {report}")  # fmt: skip

            # 2. latency at about half that load ------------------------------------------
            per_machine = 100 * N_SIGNALS / BATCH_PERIOD_S
            n_lat = args.latency_machines or max(1, min(200, round(0.5 * rate / per_machine)))
            hub = Hub(broker.port, db, workdir / "lat2.npy", args.group_window_ms)
            paced = specs("lat", n_lat, 100, paced=True)
            settled = time.time() + 2.0 + LATENCY_SETTLE_S  # run_sites starts in 2 s
            produced |= run_sites(pool, broker.port, paced, args.sites, seconds, workdir, "lat")
            _, log = hub.stop()
            log = log[log[:, 0] >= settled]
            added_ms = (log[:, 1] - log[:, 0]) * 1000 - LINK_MS
            p50, p99 = np.percentile(added_ms, [50, 99])
            results["latency_load_samples_per_s"] = round(n_lat * per_machine)
            results["latency_added_p50_ms"] = round(float(p50), 1)
            results["latency_added_p99_ms"] = round(float(p99), 1)
            print(f"latency over a {LINK_MS:.0f} ms link at {n_lat * per_machine / 1e6:.2f} M "
                  f"samples/s ({n_lat} machines at 10 batches/s): added p50 {p50:.1f} ms, "
                  f"p99 {p99:.1f} ms, max {added_ms.max():.1f} ms")  # fmt: skip

            # 3. 300 machines, hub CPU ----------------------------------------------------
            if not args.quick:
                hub = Hub(broker.port, db, workdir / "lat3.npy", args.group_window_ms)
                fleet = specs("vmc", 300, 1, paced=True)
                window = 20.0
                start_at = time.time() + (4.0 if args.fleet_edges else 15.0)  # after encoding
                if args.fleet_edges:
                    jobs = [SiteJob(f"fleet-site{i}", broker.port, fleet[i::args.sites], window,
                                    str(workdir), start_at) for i in range(args.sites)]  # fmt: skip
                    futures = [pool.submit(run_site, j) for j in jobs]
                else:
                    futures = [pool.submit(run_publisher, PublisherJob(
                        broker.port, fleet[i::args.sites], window, start_at))
                        for i in range(args.sites)]  # fmt: skip
                # CPU over the steady part: skip the first 3 s and the last 2 s
                time.sleep(max(0.0, start_at + 3.0 - time.time()))
                cpu = [time.monotonic(), hub.cpu_s()]
                wall0 = time.time()
                time.sleep(window - 5.0)
                cpu += [time.monotonic(), hub.cpu_s()]
                wall1 = time.time()
                for f in futures:
                    produced |= f.result()
                _, log = hub.stop()
                # stored during the CPU window: below 3,000/s means the hub fell behind
                in_window = ((log[:, 1] >= wall0) & (log[:, 1] < wall1)).sum() / (wall1 - wall0)
                log = log[log[:, 0] >= start_at + LATENCY_SETTLE_S]
                cores = (cpu[3] - cpu[1]) / (cpu[2] - cpu[0])
                results["fleet_load"] = "edge agents" if args.fleet_edges else "light publisher"
                added_ms = (log[:, 1] - log[:, 0]) * 1000 - LINK_MS
                results["hub_cpu_cores_300_machines"] = round(cores, 3)
                results["fleet_offered_batches_per_s"] = len(fleet) * round(1 / BATCH_PERIOD_S)
                results["fleet_stored_batches_per_s"] = round(float(in_window))
                results["fleet_latency_added_p99_ms"] = round(float(np.percentile(added_ms, 99)), 1)
                print(f"300 machines (50 signals at 10 Hz, 1 s of vibration per minute): hub "
                      f"{cores:.2f} cores; {in_window:.0f} of {len(fleet) * 10} batches/s stored; added "
                      f"latency p99 {np.percentile(added_ms, 99):.1f} ms")  # fmt: skip
        finally:
            pool.shutdown()
            broker.stop()
        stored = stored_values(db)
    lost = dup = 0
    for machine, (_, values) in produced.items():
        got = stored.get(machine, (0, 0))[1]
        lost += max(0, values - got)
        dup += max(0, got - values)
    results["lost"] = lost
    results["duplicated"] = dup
    results["quick"] = args.quick
    results = {k: v for k, v in results.items() if not (isinstance(v, float) and math.isnan(v))}
    print(json.dumps(results))


if __name__ == "__main__":
    main()
