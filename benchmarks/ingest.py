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
   (10 batches/s each) at about half the measured throughput. **Latency added**, per
   batch stored for the first time: the wall time the hub's store commit returned,
   minus the wall time of the batch's newest sample (the earliest moment the edge
   could send the batch: the adapter hands it over when that sample is taken), minus
   the link's one-way delay (15 ms, no jitter). Every process reads the same clock.
   Batches produced in the first ``LATENCY_SETTLE_S`` (connection set-up) are left out.
   The load follows the throughput just measured, which varies from run to run on a
   shared machine: to compare two versions, fix it with ``--latency-machines`` (30
   machines = 1.5 M samples/s) and alternate the runs.
   Split into ``*_to_hub_*`` (arrival at the hub's MQTT client − newest sample − 15 ms:
   edge buffer and publish, broker, the hub's network thread) and ``*_in_hub_*``
   (commit − arrival: the hub's queue, decode, write, commit); ``latency_edge_*`` is the
   edge's own part of to_hub (newest sample → the uplink's ``submit`` returned: number,
   encode, buffer append, hand to paho).
3. **300 machines** (``hub_cpu_cores_300_machines``, in ``--quick`` too, shorter): 50
   signals at 10 Hz (one row per 100 ms batch) and one second of 25.6 kHz vibration
   per machine per minute, paced in real time: 3,000 batches/s. The load comes from
   processes that publish the batches, encoded ahead by the real codec, as pre-built
   MQTT packets through the real link emulator (see :func:`run_publisher`; real edge
   agents with ``--fleet-edges``). The hub process's CPU time (all threads, from
   /proc) over wall time during the steady part; ``fleet_stored_batches_per_s`` says
   whether it kept up (3,000), ``hub_cpu_ms_per_batch_300_machines`` is the same CPU
   per stored batch.

``lost``/``duplicated``: per machine, values produced vs values in the store at the end
(all phases added up).

The hub's message grouping window (``GROUP_WINDOW_S`` in hub/ingest.py, 0 ms: it takes what
has queued) bounds how long a batch waits; ``--group-window-ms`` runs the hub with another.

The machine's 2 cores are shared with whatever else runs: ``loadavg_1min_at_start`` in
the JSON says how busy it was; figures taken at a load average above 2 measure the
contention as much as the pipeline.

Prints the figures and, as its last line, one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
    """Run a site's machines for ``seconds``, then drain; returns machine -> (batches, values).

    Also writes ``<workdir>/<site>.edge.npy``: per batch, its newest sample's time and the
    wall time its ``submit`` (number, encode, buffer, publish) returned, for the edge's
    share of the latency.
    """
    adapters = [SyntheticAdapter(s, job.site, i) for i, s in enumerate(job.specs)]
    buffer = DurableBuffer(Path(job.workdir) / f"{job.site}.sqlite", quota_bytes=4 * 2**30)
    emulator = LinkEmulator("127.0.0.1", job.broker_port, LinkProfile(latency_ms=LINK_MS))
    submitted: list[tuple[float, float]] = []
    with BackgroundLink(emulator) as link:
        agent = EdgeAgent(list(adapters), BrokerAddress("127.0.0.1", link.port, keepalive_s=10),
                          buffer, resend_after_s=10.0)  # fmt: skip
        for a in adapters:
            uplink = agent.uplinks[a.spec.machine]
            a.backlog = lambda a=a, u=uplink: a.produced_batches - u.stats.acked
            uplink.submit = _timed_submit(uplink.submit, submitted)  # type: ignore[method-assign]

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
    np.save(Path(job.workdir) / f"{job.site}.edge.npy", np.asarray(submitted).reshape(-1, 2))
    return {a.spec.machine: (a.produced_batches, a.produced_values) for a in adapters}


def _timed_submit(
    submit: Callable[[SampleBatch], None], log: list[tuple[float, float]]
) -> Callable[[SampleBatch], None]:
    def timed(batch: SampleBatch) -> None:
        submit(batch)
        log.append((float(batch.t[-1]), time.time()))

    return timed


def edge_times(workdir: Path, tag: str) -> np.ndarray:
    """The ``(newest sample, submit returned)`` rows of every site of a phase."""
    parts = [np.load(f) for f in sorted(workdir.glob(f"{tag}-site*.edge.npy"))]
    return np.concatenate(parts) if parts else np.empty((0, 2))


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


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = n >> 7, n & 0x7F
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _mqtt_str(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


def mqtt_publish_packet(topic: str, payload: bytes, packet_id: int, retain: bool = False) -> bytes:
    """An MQTT 3.1.1 PUBLISH at QoS 1, as bytes (the lean fleet sends these pre-built)."""
    body = _mqtt_str(topic) + packet_id.to_bytes(2, "big") + payload
    return bytes([0x32 | int(retain)]) + _varint(len(body)) + body


class RawMqttPublisher:
    """A minimal MQTT 3.1.1 client that writes pre-built PUBLISH packets in bulk.

    One ``sendall`` per tick instead of a paho call (and a socket write) per message,
    so that 300 machines' load costs the load generator little of the 2 cores the hub
    is measured on. Counts the broker's PUBACKs to know everything was taken.
    """

    def __init__(self, port: int, client_id: str) -> None:
        import socket
        import threading

        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        body = _mqtt_str("MQTT") + bytes([4, 0x02, 0, 0]) + _mqtt_str(client_id)  # keepalive 0
        self.sock.sendall(b"\x10" + _varint(len(body)) + body)
        connack = self.sock.recv(4)
        if connack[:1] != b"\x20" or connack[3:4] != b"\x00":
            raise ConnectionError(f"broker refused {client_id}: {connack!r}")
        self.pubacks = 0
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        pending = b""
        with contextlib.suppress(OSError):  # closed under it at the end
            while chunk := self.sock.recv(1 << 16):
                pending += chunk  # only PUBACKs (4 bytes each) come back
                self.pubacks += len(pending) // 4
                pending = pending[len(pending) // 4 * 4 :]

    def close(self) -> None:
        self.sock.sendall(b"\xe0\x00")  # DISCONNECT
        self.sock.close()


def run_publisher(job: PublisherJob) -> dict[str, tuple[int, int]]:
    """Publish pre-encoded batches of many machines on schedule, QoS 1, through a link.

    The real edge agent spends ~2 ms of CPU per batch at 150 machines per process (a
    SQLite transaction per batch and per ack, 150 paho threads contending for the GIL),
    so on this 2-core machine it cannot offer 300 machines' 3,000 batches/s while the
    hub and the broker run too. This sends the same batch payloads, encoded by the real
    codec ahead of time, as pre-built MQTT packets (:class:`RawMqttPublisher`, one
    connection per ``clients`` machines) through the real link emulator (15 ms), so that
    the hub's CPU is measured at the full load. Acks go unread.
    """
    from machinetwin.protocols import codec, topics

    ticks = round(job.seconds / BATCH_PERIOD_S)
    adapters = [SyntheticAdapter(s, "fleet", i) for i, s in enumerate(job.specs)]
    plan: list[list[bytes]] = [[] for _ in range(job.clients)]  # per client: one blob a tick
    produced = {a.spec.machine: [0, 0] for a in adapters}
    births: list[list[bytes]] = [[] for _ in range(job.clients)]
    for j, a in enumerate(adapters):  # birth first: the hub accepts only declared signals
        births[j % job.clients].append(mqtt_publish_packet(
            topics.birth(a.spec.machine), codec.encode_descriptor(a.descriptor), 1 + j, True))  # fmt: skip
    packet_id = len(adapters) + 1
    for k in range(ticks):  # encoded ahead, so that encoding is not measured as load
        now = job.start_at + (k + 1) * BATCH_PERIOD_S
        blobs: list[list[bytes]] = [[] for _ in range(job.clients)]
        for j, a in enumerate(adapters):
            waves = []
            if k % a.vib_every == a.spec.vib_phase % a.vib_every:
                waves.append(Waveform("spindle.vib", now - 1.0, VIB_RATE_HZ, a.vibration, 6000.0))
            batch = SampleBatch(a.spec.machine, now - a.offsets, a.columns, seq=k, waveforms=waves)
            payload = codec.encode_batch(batch)
            blobs[j % job.clients].append(
                mqtt_publish_packet(topics.data(a.spec.machine), payload, packet_id)
            )
            packet_id = packet_id % 65535 + 1
            produced[a.spec.machine][0] += 1
            produced[a.spec.machine][1] += batch.n_values
        for c, blob in enumerate(blobs):
            plan[c].append(b"".join(blob))
    late = time.time() - job.start_at
    if late > 0:  # its batches are then sent in a burst: the figures would show the burst
        print(f"fleet publisher: encoding ended {late:.1f} s after the start", file=sys.stderr)
    emulator = LinkEmulator("127.0.0.1", job.broker_port, LinkProfile(latency_ms=LINK_MS))
    sent = 0
    with BackgroundLink(emulator) as link:
        clients = [RawMqttPublisher(link.port, f"fleet-{os.getpid()}-{i}")
                   for i in range(job.clients)]  # fmt: skip
        for client, packets in zip(clients, births, strict=True):
            client.sock.sendall(b"".join(packets))
            sent += len(packets)
        for k in range(ticks):
            time.sleep(max(0.0, job.start_at + (k + 1) * BATCH_PERIOD_S - time.time()))
            for c, client in enumerate(clients):
                client.sock.sendall(plan[c][k])
        sent += len(adapters) * ticks
        deadline = time.monotonic() + 60
        while sum(c.pubacks for c in clients) < sent and time.monotonic() < deadline:
            time.sleep(0.05)
        for c in clients:
            c.close()
    return {m: (b, v) for m, (b, v) in produced.items()}


# --- the hub process --------------------------------------------------------------------


class Hub:
    NICE = 0  # --hub-nice: the hub's scheduling priority (negative needs root)

    def __init__(self, port: int, db: Path, latency_log: Path, group_window_ms: float | None):
        self.status = latency_log.with_suffix(".status.json")
        args = [sys.executable, "-m", "machinetwin.hub.ingest_main", "--broker-port", str(port),
                "--db", str(db), "--latency-log", str(latency_log),
                "--status-file", str(self.status)]  # fmt: skip
        if group_window_ms is not None:
            args += ["--group-window-ms", str(group_window_ms)]
        if self.NICE:
            args = ["nice", "-n", str(self.NICE), *args]  # nice execs: the pid stays the hub's
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

    def handled(self) -> int:
        """Data messages the hub has stored or recognised as duplicates so far."""
        try:
            status = json.loads(self.status.read_text())
        except (OSError, ValueError):
            return 0
        return status["stored"] + status["duplicates"]

    def wait_handled(self, expected: int, timeout_s: float = 120.0) -> None:
        """Until ``expected`` batches are handled: a starved hub may use no CPU for a
        while and still have a queue at the broker, so idleness alone is no proof."""
        deadline = time.monotonic() + timeout_s
        while self.handled() < expected and time.monotonic() < deadline:
            time.sleep(0.2)

    def stop(self, expected: int | None = None) -> tuple[dict, np.ndarray]:
        if expected is not None:
            self.wait_handled(expected)
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


def latency_stages(log: np.ndarray, prefix: str) -> dict[str, float]:
    """Where the added latency goes: before the hub (edge, broker) and in the hub.

    ``to_hub``: arrival at the hub's MQTT client minus the newest sample's time minus the
    link's delay (the edge's buffer and publish, the broker, the hub's network thread);
    ``in_hub``: store commit minus arrival (queueing, decode, write, commit).
    """
    to_hub = (log[:, 3] - log[:, 0]) * 1000 - LINK_MS
    in_hub = (log[:, 1] - log[:, 3]) * 1000
    out = {}
    for name, values in (("to_hub", to_hub), ("in_hub", in_hub)):
        p50, p99 = np.percentile(values, [50, 99])
        out[f"{prefix}_{name}_p50_ms"] = round(float(p50), 1)
        out[f"{prefix}_{name}_p99_ms"] = round(float(p99), 1)
    return out


def fleet_phase(
    args: argparse.Namespace, pool: ProcessPoolExecutor, port: int, db: Path, workdir: Path,
    produced: dict[str, tuple[int, int]],
) -> dict[str, object]:  # fmt: skip
    """300 machines of 50 signals at 10 Hz: the hub's CPU while it takes 3,000 batches/s."""
    hub = Hub(port, db, workdir / "lat3.npy", args.group_window_ms)
    fleet = specs("vmc", 300, 1, paced=True)
    window = 8.0 if args.quick else 20.0
    # the publishers encode every batch first (~1.5 s per 10,000 on a busy machine)
    start_at = time.time() + (4.0 if args.fleet_edges else 7.0 if args.quick else 12.0)
    if args.fleet_edges:
        jobs = [SiteJob(f"fleet-site{i}", port, fleet[i::args.sites], window, str(workdir),
                        start_at) for i in range(args.sites)]  # fmt: skip
        futures = [pool.submit(run_site, j) for j in jobs]
    else:
        futures = [pool.submit(run_publisher, PublisherJob(port, fleet[i::args.sites], window,
                                                           start_at)) for i in range(args.sites)]  # fmt: skip
    # CPU over the steady part: skip the first 3 s and the last 2 s
    time.sleep(max(0.0, start_at + 3.0 - time.time()))
    mono0, cpu0, wall0 = time.monotonic(), hub.cpu_s(), time.time()
    time.sleep(window - 5.0)
    mono1, cpu1, wall1 = time.monotonic(), hub.cpu_s(), time.time()
    for f in futures:
        produced |= f.result()
    _, log = hub.stop(expected=sum(produced[s.machine][0] for s in fleet))
    # stored during the CPU window: below 3,000/s means the hub fell behind
    stored = int(((log[:, 1] >= wall0) & (log[:, 1] < wall1)).sum())
    in_window = stored / (wall1 - wall0)
    cores = (cpu1 - cpu0) / (mono1 - mono0)
    log = log[log[:, 0] >= start_at + LATENCY_SETTLE_S]
    added_ms = (log[:, 1] - log[:, 0]) * 1000 - LINK_MS
    p50, p99 = np.percentile(added_ms, [50, 99])
    out: dict[str, object] = {
        "fleet_load": "edge agents" if args.fleet_edges else "pre-encoded publisher",
        "hub_cpu_cores_300_machines": round(cores, 3),
        "hub_cpu_ms_per_batch_300_machines": round(1000 * (cpu1 - cpu0) / max(stored, 1), 3),
        "fleet_offered_batches_per_s": len(fleet) * round(1 / BATCH_PERIOD_S),
        "fleet_stored_batches_per_s": round(in_window),
        "fleet_latency_added_p50_ms": round(float(p50), 1),
        "fleet_latency_added_p99_ms": round(float(p99), 1),
    }
    out |= latency_stages(log, "fleet")
    print(f"300 machines (50 signals at 10 Hz, 1 s of vibration per minute): hub {cores:.2f} "
          f"cores, {out['hub_cpu_ms_per_batch_300_machines']} ms CPU per batch; {in_window:.0f} "
          f"of {len(fleet) * 10} batches/s stored; added latency p50 {p50:.1f} ms, p99 "
          f"{p99:.1f} ms")  # fmt: skip
    return out


def specs(prefix: str, n: int, rows: int, paced: bool) -> list[MachineSpec]:
    return [MachineSpec(f"{prefix}{i:03d}", rows, paced, i * 7) for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short phases (under 50 s)")
    parser.add_argument("--machines", type=int, default=24, help="throughput phase machines")
    parser.add_argument("--sites", type=int, default=2, help="edge processes")
    parser.add_argument("--group-window-ms", type=float, default=None,
                        help="the hub's grouping window (default: hub/ingest.py's)")  # fmt: skip
    parser.add_argument("--latency-machines", type=int, default=None,
                        help="machines in the latency phase (default: ~half the throughput)")  # fmt: skip
    parser.add_argument("--fleet-edges", action="store_true",
                        help="300-machine run with real edge agents instead of the light publisher")  # fmt: skip
    parser.add_argument("--embedded", action="store_true", help="use the embedded broker")
    parser.add_argument("--hub-nice", type=int, default=0,
                        help="run the hub at this nice value, e.g. -5 (as root) to see whether it "
                             "keeps up when other work on the machine takes the cores")  # fmt: skip
    args = parser.parse_args()
    seconds = 5.0 if args.quick else 20.0
    Hub.NICE = args.hub_nice

    with tempfile.TemporaryDirectory(prefix="mt-ingest-bench-") as tmp:
        workdir = Path(tmp)
        if args.embedded or find_mosquitto() is None:
            broker: MosquittoServer | EmbeddedBroker = EmbeddedBroker()
            broker_name = "embedded (amqtt)"
        else:
            # The hub's queue at the broker must hold a full window of every machine;
            # Mosquitto's default of 1000 would drop past it (the edges would resend).
            # set_tcp_nodelay: Mosquitto leaves Nagle's algorithm on by default, and then
            # a batch's last segment to the hub can wait up to 40 ms for a delayed ACK
            # (the edge and hub clients set TCP_NODELAY themselves; amqtt, on asyncio,
            # always does). A deployment's Mosquitto should set it too.
            broker = MosquittoServer(workdir / "mosquitto", extra=(
                "max_queued_messages 20000", "set_tcp_nodelay true"))  # fmt: skip
            broker_name = "mosquitto"
        broker.start()
        pool = ProcessPoolExecutor(args.sites, mp_context=get_context("spawn"))
        # Other work on the machine takes CPU from every phase: say how much there was.
        results: dict[str, object] = {"broker": broker_name, "cpus": os.cpu_count(),
                                      "loadavg_1min_at_start": round(os.getloadavg()[0], 2),
                                      "hub_nice": args.hub_nice}  # fmt: skip
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
            results |= latency_stages(log, "latency")
            edge = edge_times(workdir, "lat")
            edge = (edge[edge[:, 0] >= settled, 1] - edge[edge[:, 0] >= settled, 0]) * 1000
            if len(edge):  # sample -> submit returned: the edge's share of to_hub
                e50, e99 = np.percentile(edge, [50, 99])
                results["latency_edge_p50_ms"] = round(float(e50), 1)
                results["latency_edge_p99_ms"] = round(float(e99), 1)
            print(f"latency over a {LINK_MS:.0f} ms link at {n_lat * per_machine / 1e6:.2f} M "
                  f"samples/s ({n_lat} machines at 10 batches/s): added p50 {p50:.1f} ms, "
                  f"p99 {p99:.1f} ms, max {added_ms.max():.1f} ms")  # fmt: skip

            # 3. 300 machines, hub CPU ----------------------------------------------------
            results |= fleet_phase(args, pool, broker.port, db, workdir, produced)
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
