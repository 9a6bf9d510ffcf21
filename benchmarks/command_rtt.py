"""Remote command round trip: API → hub → broker → 15 ms link → edge → machine → answer.

Real parts throughout, in one process: the hub's REST API (FastAPI, called through
its ASGI test client, with a bearer token), its command service (Ed25519 signing,
audit log in SQLite), Mosquitto (the embedded broker without it; the JSON says
which), the link emulator (15 ms one way, no jitter, so the link's share is exact),
the edge agent with its command executor (signature, permit, ledger fsync, interlocks)
and the virtual machine running a part program in real time. The site (link emulator,
edge, machine) runs in a process of its own, as it does in reality.

- ``rtt_p50_ms``/``rtt_p99_ms``: from the POST of a ``feed_override`` until the edge's
  ``accepted`` (sent after the machine took it) reached the hub; commands one after
  another. ``overhead_p99_ms``: the p99 above twice the link's one-way delay (30 ms),
  i.e. what the software adds. Target < 20 ms.
- ``deadman_hold_ms``: remote motion under a 100 ms dead-man, heartbeats every 100 ms
  through the API, then the link is cut (black-holed): time from the cut until the edge
  put the machine in feed hold; the worst of several trials (bound: 300 ms).

Prints the figures and, as its last line, one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from multiprocessing import get_context
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from machinetwin.edge.agent import EdgeAgent
from machinetwin.edge.buffer import DurableBuffer
from machinetwin.edge.executor import (
    CommandChannel,
    CommandExecutor,
    CommandLedger,
    ControlledAdapter,
    load_public_key,
)
from machinetwin.edge.permit import PermitStore
from machinetwin.hub.api import create_api, live_view_from
from machinetwin.hub.auth import Role, UserDirectory
from machinetwin.hub.broker import EmbeddedBroker
from machinetwin.hub.commands import AuditLog, CommandService, CommandSigner
from machinetwin.hub.duckdb_store import DuckDBStore
from machinetwin.hub.ingest import HubIngest
from machinetwin.machine import load_machine_config
from machinetwin.machine.adapter import VirtualMachineAdapter, VirtualMachineSettings
from machinetwin.model import Execution
from machinetwin.net import BackgroundLink, LinkEmulator, LinkProfile
from machinetwin.protocols.broker import BrokerAddress

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from mosquitto_server import MosquittoServer, find_mosquitto  # noqa: E402

LINK_MS = 15.0
MACHINE = "harbin-vmc-1"
PROGRAM = "G21 G90 G54\nT1 M6 G43\nS6000 M3\nG0 X0 Y0 Z5\nG1 Z-1 F300\nG1 X90\nG0 Z5\nM5\nM2\n"


def wait_for(condition, timeout_s: float, step_s: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step_s)
    return bool(condition())


class EdgeSite:
    """The site, in a process of its own as in reality (its own interpreter and GIL):
    the link emulator toward the broker, the virtual machine, the edge agent and its
    command executor. The benchmark drives it over a pipe."""

    def __init__(self, workdir: Path, public_key: str, broker_port: int) -> None:
        self.link = BackgroundLink(LinkEmulator("127.0.0.1", broker_port, LinkProfile(latency_ms=LINK_MS),
                                                cut_mode="blackhole"))  # fmt: skip
        self.link.__enter__()
        program = workdir / "part.ngc"
        program.write_text(PROGRAM)
        vm = VirtualMachineAdapter(load_machine_config(),
                                   VirtualMachineSettings(MACHINE, "harbin", [program]))  # fmt: skip
        permits = PermitStore(workdir / "permits.sqlite")
        permits.grant(MACHINE, 30)
        self.executor = CommandExecutor(vm, load_public_key(public_key), permits,
                                        CommandLedger(workdir / "commands.sqlite"), lambda r: None)  # fmt: skip
        address = BrokerAddress("127.0.0.1", self.link.port, keepalive_s=5)
        self.channel = CommandChannel(self.executor, address)
        self.buffer = DurableBuffer(workdir / "edge-buffer.sqlite", quota_bytes=64 * 2**20)
        self.agent = EdgeAgent([ControlledAdapter(vm, self.executor, self.channel)], address,
                               self.buffer)  # fmt: skip
        self.thread = threading.Thread(target=lambda: asyncio.run(self.agent.run()), daemon=True)
        self.thread.start()

    def answer(self, request: str) -> object:
        if request == "connected":
            return self.channel.connected.wait(15)
        if request == "execution":
            e = self.executor.state.execution
            return None if e is None else e.name
        if request == "holds":
            return list(self.executor.holds)
        if request == "cut":  # the moment of the cut, on the system-wide monotonic clock
            at = time.monotonic()
            self.link.cut()
            return at
        if request == "restore":
            return self.link.restore()
        raise ValueError(request)

    def close(self) -> None:
        self.agent.stop()
        self.thread.join(10)
        self.agent.close()
        self.link.__exit__(None, None, None)
        self.buffer.close()


def edge_main(workdir: str, public_key: str, broker_port: int, conn: Connection) -> None:
    site = EdgeSite(Path(workdir), public_key, broker_port)
    try:
        while (request := conn.recv()) != "stop":
            conn.send(site.answer(request))
    finally:
        site.close()
        conn.send("stopped")


class Rig:
    """Hub and broker here; the edge site in its own process."""

    def __init__(self, workdir: Path, embedded: bool) -> None:
        if embedded or find_mosquitto() is None:
            self.broker: EmbeddedBroker | MosquittoServer = EmbeddedBroker()
            self.broker_name = "embedded (amqtt)"
        else:
            # as a deployment should: Mosquitto's default leaves Nagle on for its clients
            self.broker = MosquittoServer(workdir / "mosquitto", extra=("set_tcp_nodelay true",))
            self.broker_name = "mosquitto"
        self.broker.start()
        hub_address = BrokerAddress("127.0.0.1", self.broker.port)
        self.store = DuckDBStore(workdir / "hub.duckdb")
        self.ingest = HubIngest(self.store, hub_address)
        self.ingest.start()
        signer = CommandSigner.load_or_create(workdir / "hub-command-key.pem")
        self.service = CommandService(signer, AuditLog(workdir / "audit.sqlite"), hub_address)
        self.service.start()
        self.users = UserDirectory(":memory:", hasher=PasswordHasher(time_cost=1, memory_cost=1024,
                                                                     parallelism=1))  # fmt: skip
        self.users.add_user("otto", "correct horse battery", Role.OPERATOR)
        self.headers = {"Authorization": f"Bearer {self.users.create_token('otto', 'bench')}"}
        api = create_api(self.store, live_view_from(self.ingest), self.users, commands=self.service)
        self.client = TestClient(api)
        self.conn, child = get_context("spawn").Pipe()
        site_dir = workdir / "site"
        site_dir.mkdir()
        self.edge = get_context("spawn").Process(
            target=edge_main, args=(str(site_dir), signer.public_key_b64, self.broker.port, child)
        )
        self.edge.start()
        if not self.site("connected"):
            raise RuntimeError("the edge's command channel did not connect")
        live = f"/api/machines/{MACHINE}/live"
        if not wait_for(lambda: self.client.get(live, headers=self.headers).status_code == 200, 15):
            raise RuntimeError("the hub never heard of the machine")

    def site(self, request: str) -> object:
        self.conn.send(request)
        if not self.conn.poll(30):
            raise RuntimeError(f"the edge process did not answer {request!r}")
        return self.conn.recv()

    def post(self, path: str, body: dict) -> dict:
        r = self.client.post(f"/api/machines/{MACHINE}{path}", json=body, headers=self.headers)
        if r.status_code >= 300:
            raise RuntimeError(f"{path}: {r.status_code} {r.text}")
        return r.json() if r.content else {}

    def command(self, name: str, args: dict | None = None) -> tuple[str, float]:
        """(id, seconds until the first answer reached the hub)."""
        t0 = time.monotonic()
        cid = self.post("/commands", {"name": name, "args": args or {}})["id"]
        status = self.service.wait(cid, ("accepted", "rejected", "done", "failed"), 10.0)
        if status.answered_mono is None:
            raise RuntimeError(f"{name}: no answer within 10 s")
        return cid, status.answered_mono - t0

    def close(self) -> None:
        self.conn.send("stop")
        self.conn.poll(30)
        self.edge.join(30)
        self.service.stop()
        self.ingest.stop()
        self.store.close()
        self.broker.stop()


def measure_rtt(rig: Rig, n: int) -> list[float]:
    for i in range(10):  # warm-up: connections, caches, JIT-less paths
        rig.command("feed_override", {"percent": 90 + i})
    out = []
    for i in range(n):
        _, rtt = rig.command("feed_override", {"percent": 80 + i % 40})
        out.append(rtt)
    return out


def deadman_trial(rig: Rig, period_s: float = 0.1) -> float:
    """ms from the link cut to the edge's feed hold."""
    rig.command("feed_hold")
    if not wait_for(lambda: rig.site("execution") == Execution.INTERRUPTED.name, 5):
        raise RuntimeError("the machine did not report the hold")
    holds = len(rig.site("holds"))
    cid = rig.post("/commands", {"name": "resume", "args": {"deadman_s": period_s}})["id"]
    stop = threading.Event()

    def beat() -> None:
        next_at = time.monotonic()
        while not stop.is_set():
            with contextlib.suppress(RuntimeError):  # a refused beat is the dead-man's business
                rig.post(f"/commands/{cid}/heartbeat", {})
            next_at += period_s
            time.sleep(max(0.0, next_at - time.monotonic()))

    beater = threading.Thread(target=beat, daemon=True)
    beater.start()
    try:
        if rig.service.wait(cid, ("accepted", "rejected"), 5).state != "accepted":
            raise RuntimeError(f"resume refused: {rig.service.status(cid).reason}")
        time.sleep(0.6)
        if len(rig.site("holds")) != holds:
            raise RuntimeError("dead-man fired while heartbeats were flowing")
        cut = rig.site("cut")
        if not wait_for(lambda: len(rig.site("holds")) > holds, 3, step_s=0.01):
            raise RuntimeError("no feed hold after the cut")
        return 1000.0 * (rig.site("holds")[-1] - cut)
    finally:
        stop.set()
        beater.join(2)
        rig.site("restore")
        rig.service.wait(cid, ("done",), 5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="under 50 s")
    parser.add_argument("--embedded", action="store_true", help="use the embedded broker")
    args = parser.parse_args()
    n, trials = (150, 3) if args.quick else (1000, 10)
    with tempfile.TemporaryDirectory(prefix="mt-cmd-bench-") as tmp:
        rig = Rig(Path(tmp), args.embedded)
        try:
            rtts = np.array(measure_rtt(rig, n)) * 1000.0
            holds = [deadman_trial(rig) for _ in range(trials)]
        finally:
            rig.close()
    p50, p99 = float(np.percentile(rtts, 50)), float(np.percentile(rtts, 99))
    result = {
        "broker": rig.broker_name, "cpus": os.cpu_count(), "commands": n,
        "link_one_way_ms": LINK_MS, "rtt_p50_ms": round(p50, 2), "rtt_p99_ms": round(p99, 2),
        "overhead_p50_ms": round(p50 - 2 * LINK_MS, 2),
        "overhead_p99_ms": round(p99 - 2 * LINK_MS, 2),
        "deadman_hold_ms": round(max(holds), 1),
        "deadman_hold_median_ms": round(statistics.median(holds), 1), "deadman_trials": trials,
    }  # fmt: skip
    print(f"{n} commands over a {LINK_MS:g} ms link ({rig.broker_name}): round trip p50 "
          f"{p50:.1f} ms, p99 {p99:.1f} ms; software overhead p99 {p99 - 2 * LINK_MS:.1f} ms")  # fmt: skip
    print(f"dead-man (100 ms heartbeats): feed hold {', '.join(f'{h:.0f}' for h in holds)} ms "
          f"after the link cut")  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
