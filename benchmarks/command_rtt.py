"""Remote command round trip: API → hub → broker → 15 ms link → edge → machine → answer.

Real parts throughout: the hub's REST API (FastAPI served by uvicorn on loopback, called
over one kept-alive HTTP connection with a bearer token, as a client would), its command
service (Ed25519 signing, audit log in SQLite with its fsync), Mosquitto (the embedded
broker without it; the JSON says which), the link emulator (15 ms one way, no jitter, so
the link's share is exact), the edge agent with its command executor (signature,
permit, ledger fsync, interlocks) and the virtual machine running a part program in real
time. Hub, link and site (edge and machine) run in processes of their own, as they do in
reality (separate interpreters: none waits for another's GIL).

Each command's round trip is split into segments by monotonic stamps taken on both
sides (one clock on one host): ``segments_p50_ms``/``segments_p99_ms`` show where the
time goes (API and auth, hub checks and audit fsync, signing and publish, hub→edge with
the link and the broker, the edge's queue and signature check, its ledger fsync, checks
and execution, its reply, edge→hub).

- ``rtt_p50_ms``/``rtt_p99_ms``: from the POST of a ``feed_override`` until the edge's
  ``accepted`` (sent after the machine took it) reached the hub; commands one after
  another. ``overhead_p99_ms``: the p99 above twice the link's one-way delay (30 ms),
  i.e. what the software adds. Target < 20 ms.
- ``mqtt_echo_p50_ms``/``mqtt_echo_p99_ms``: plain MQTT QoS 1 round trips (hub side →
  broker → link → an echo client at the site → back), interleaved with the commands:
  the transport's own share under the same load; ``above_mqtt_p50_ms``/``_p99_ms``: the
  command round trip's percentiles minus the echo's.
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
import queue
import socket
import statistics
import sys
import tempfile
import threading
import time
from multiprocessing import get_context
from multiprocessing.connection import Connection
from pathlib import Path

import httpx
import numpy as np
import paho.mqtt.client as mqtt
import uvicorn
from argon2 import PasswordHasher

from machinetwin.edge.agent import EdgeAgent
from machinetwin.edge.buffer import DurableBuffer
from machinetwin.edge.executor import (
    CommandChannel,
    CommandExecutor,
    CommandLedger,
    ControlledAdapter,
    load_public_key,
    no_delay,
)
from machinetwin.edge.permit import PermitStore
from machinetwin.hub.api import create_api, live_view_from
from machinetwin.hub.auth import Role, UserDirectory
from machinetwin.hub.broker import EmbeddedBroker, free_port
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


def link_main(broker_port: int, conn: Connection) -> None:
    """The emulated long-distance link, in its own process; driven over a pipe."""
    link = BackgroundLink(LinkEmulator("127.0.0.1", broker_port, LinkProfile(latency_ms=LINK_MS),
                                       cut_mode="blackhole"))  # fmt: skip
    with link:
        conn.send(link.port)
        while (request := conn.recv()) != "stop":
            if request == "cut":  # the moment of the cut, on the system-wide monotonic clock
                at = time.monotonic()
                link.cut()
                conn.send(at)
            else:
                link.restore()
                conn.send(None)
    conn.send("stopped")


class EdgeSite:
    """The site, in a process of its own as in reality (its own interpreter and GIL):
    the virtual machine, the edge agent and its command executor, connected through the
    link process. The benchmark drives it over a pipe."""

    def __init__(self, workdir: Path, public_key: str, link_port: int) -> None:
        program = workdir / "part.ngc"
        program.write_text(PROGRAM)
        vm = VirtualMachineAdapter(load_machine_config(),
                                   VirtualMachineSettings(MACHINE, "harbin", [program]))  # fmt: skip
        permits = PermitStore(workdir / "permits.sqlite")
        permits.grant(MACHINE, 30)
        self.executor = CommandExecutor(vm, load_public_key(public_key), permits,
                                        CommandLedger(workdir / "commands.sqlite"), lambda r: None)  # fmt: skip
        self.executor.trace = {}  # per-command stamps: where the time goes
        address = BrokerAddress("127.0.0.1", link_port, keepalive_s=5)
        self.channel = CommandChannel(self.executor, address)
        self.buffer = DurableBuffer(workdir / "edge-buffer.sqlite", quota_bytes=64 * 2**20)
        self.agent = EdgeAgent([ControlledAdapter(vm, self.executor, self.channel)], address,
                               self.buffer)  # fmt: skip
        self.thread = threading.Thread(target=lambda: asyncio.run(self.agent.run()), daemon=True)
        self.thread.start()
        self.echo = mqtt_echo(address)  # the transport alone, for comparison

    def answer(self, request: str) -> object:
        if request == "connected":
            return self.channel.connected.wait(15)
        if request == "execution":
            e = self.executor.state.execution
            return None if e is None else e.name
        if request == "holds":
            return list(self.executor.holds)
        if request == "trace":
            return dict(self.executor.trace or {})
        raise ValueError(request)

    def close(self) -> None:
        self.echo.disconnect()
        self.echo.loop_stop()
        self.agent.stop()
        self.thread.join(10)
        self.agent.close()
        self.buffer.close()


ECHO_REQ, ECHO_RESP = "bench/echo/req", "bench/echo/resp"


def nodelay_client(client_id: str) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    client.on_socket_open = no_delay
    return client


def mqtt_echo(address: BrokerAddress) -> mqtt.Client:
    """At the site: answers every echo request at once (QoS 1, like the commands)."""
    client = nodelay_client("bench-echo")
    client.on_connect = lambda c, *_: c.subscribe(ECHO_REQ, qos=1)
    client.on_message = lambda c, _u, m: c.publish(ECHO_RESP, m.payload, qos=1)
    client.connect(address.host, address.port, 5)
    client.loop_start()
    return client


class EchoProbe:
    """At the hub: plain MQTT round trips over the same broker and link, interleaved
    with the commands, so that the transport's own share is measured, not assumed."""

    def __init__(self, port: int) -> None:
        self.answers: queue.SimpleQueue[tuple[bytes, float]] = queue.SimpleQueue()
        self.ready = threading.Event()
        client = nodelay_client("bench-probe")

        def on_connect(c, *_):  # noqa: ANN001, ANN002 - paho's callback
            c.subscribe(ECHO_RESP, qos=1)
            self.ready.set()

        client.on_connect = on_connect
        client.on_message = lambda _c, _u, m: self.answers.put((m.payload, time.monotonic()))
        client.connect("127.0.0.1", port, 5)
        client.loop_start()
        self.client = client

    def round_trip(self, k: int) -> float:
        """Seconds from publishing request ``k`` to its echo's arrival."""
        t0 = time.monotonic()
        self.client.publish(ECHO_REQ, str(k).encode(), qos=1)
        deadline = t0 + 10
        while time.monotonic() < deadline:
            payload, at = self.answers.get(timeout=10)
            if payload == str(k).encode():
                return at - t0
        raise RuntimeError("no echo within 10 s")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def edge_main(workdir: str, public_key: str, link_port: int, conn: Connection) -> None:
    site = EdgeSite(Path(workdir), public_key, link_port)
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
        port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(api, host="127.0.0.1", port=port,
                                                    log_level="warning"))  # fmt: skip
        self.server_thread = threading.Thread(target=self.server.run, daemon=True)
        self.server_thread.start()
        if not wait_for(lambda: self.server.started, 15):
            raise RuntimeError("the hub's API did not start")
        # as a browser does: no Nagle delay between a request's header and body writes
        nodelay = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                                   transport=nodelay)  # fmt: skip
        self.started: dict[str, float] = {}  # command id -> when its POST began
        spawn = get_context("spawn")
        self.link_conn, link_child = spawn.Pipe()
        self.link = spawn.Process(target=link_main, args=(self.broker.port, link_child))
        self.link.start()
        link_port = self.link_conn.recv()
        self.conn, child = spawn.Pipe()
        site_dir = workdir / "site"
        site_dir.mkdir()
        self.edge = spawn.Process(
            target=edge_main, args=(str(site_dir), signer.public_key_b64, link_port, child)
        )
        self.edge.start()
        if not self.site("connected"):
            raise RuntimeError("the edge's command channel did not connect")
        live = f"/api/machines/{MACHINE}/live"
        if not wait_for(lambda: self.client.get(live, headers=self.headers).status_code == 200, 15):
            raise RuntimeError("the hub never heard of the machine")
        self.probe = EchoProbe(self.broker.port)
        if not self.probe.ready.wait(15):
            raise RuntimeError("the echo probe did not connect")
        if not wait_for(lambda: self.service.gate(MACHINE).allowed, 15):
            raise RuntimeError(f"no site permit at the hub: {self.service.gate(MACHINE).reason}")

    def site(self, request: str) -> object:
        self.conn.send(request)
        if not self.conn.poll(30):
            raise RuntimeError(f"the edge process did not answer {request!r}")
        return self.conn.recv()

    def link_do(self, request: str) -> object:
        """ "cut" (answers its monotonic time) or "restore" the link."""
        self.link_conn.send(request)
        if not self.link_conn.poll(30):
            raise RuntimeError(f"the link process did not answer {request!r}")
        return self.link_conn.recv()

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
        self.started[cid] = t0
        return cid, status.answered_mono - t0

    def close(self) -> None:
        self.conn.send("stop")
        self.conn.poll(30)
        self.edge.join(30)
        self.link_conn.send("stop")
        self.link_conn.poll(30)
        self.link.join(30)
        self.client.close()
        self.probe.close()
        self.server.should_exit = True
        self.server_thread.join(10)
        self.service.stop()
        self.ingest.stop()
        self.store.close()
        self.broker.stop()


def measure_rtt(rig: Rig, n: int) -> tuple[list[float], list[str], list[float]]:
    """(command round trips, their ids, plain MQTT echo round trips), interleaved."""
    for i in range(10):  # warm-up: connections, caches, JIT-less paths
        rig.command("feed_override", {"percent": 90 + i})
        rig.probe.round_trip(-1 - i)
    out, ids, echoes = [], [], []
    for i in range(n):
        cid, rtt = rig.command("feed_override", {"percent": 80 + i % 40})
        out.append(rtt)
        ids.append(cid)
        echoes.append(rig.probe.round_trip(i))
    return out, ids, echoes


# the round trip in segments, each between two monotonic stamps (one clock on one host)
SEGMENTS = ("api_auth", "hub_checks_audit", "sign_publish", "hub_to_edge", "edge_queue_verify",
            "edge_ledger_claim", "edge_checks_execute", "edge_reply", "edge_to_hub")  # fmt: skip


def breakdown(rig: Rig, ids: list[str]) -> dict[str, list[float]]:
    """ms per segment of each command (the link's 15 ms is inside hub_to_edge and
    edge_to_hub, with the broker and both MQTT clients)."""
    trace = rig.site("trace")
    out: dict[str, list[float]] = {k: [] for k in SEGMENTS}
    for cid in ids:
        st, edge = rig.service.status(cid), trace.get(cid)
        if st is None or edge is None or len(edge) < 5 or st.published_mono is None:
            continue
        stamps = [rig.started[cid], st.sent_mono, st.audited_mono, st.published_mono, *edge[:5],
                  st.answered_mono]  # fmt: skip
        for name, a, b in zip(SEGMENTS, stamps[:-1], stamps[1:], strict=True):
            out[name].append(1000.0 * (b - a))
    return out


def deadman_trial(rig: Rig, period_s: float = 0.1) -> float | None:
    """ms from the link cut to the edge's feed hold; None when the dead-man held before
    the cut (a heartbeat more than two periods late: a loaded host; tried again)."""
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
            return None
        cut = rig.link_do("cut")
        if not wait_for(lambda: len(rig.site("holds")) > holds, 3, step_s=0.01):
            raise RuntimeError("no feed hold after the cut")
        return 1000.0 * (rig.site("holds")[-1] - cut)
    finally:
        stop.set()
        beater.join(2)
        rig.link_do("restore")
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
            rtt_s, ids, echo_s = measure_rtt(rig, n)
            rtts, echoes = np.array(rtt_s) * 1000.0, np.array(echo_s) * 1000.0
            parts = breakdown(rig, ids)
            holds, early = [], 0
            while len(holds) < trials and early < 3 * trials:
                hold = deadman_trial(rig)
                early += hold is None
                holds += [] if hold is None else [hold]
            if not holds:
                raise RuntimeError(f"the dead-man held before every cut ({early} trials)")
        finally:
            rig.close()
    p50, p99 = float(np.percentile(rtts, 50)), float(np.percentile(rtts, 99))
    result = {
        "broker": rig.broker_name, "cpus": os.cpu_count(), "commands": n,
        "link_one_way_ms": LINK_MS, "rtt_p50_ms": round(p50, 2), "rtt_p99_ms": round(p99, 2),
        "overhead_p50_ms": round(p50 - 2 * LINK_MS, 2),
        "overhead_p99_ms": round(p99 - 2 * LINK_MS, 2),
        "mqtt_echo_p50_ms": round(float(np.percentile(echoes, 50)), 2),
        "mqtt_echo_p99_ms": round(float(np.percentile(echoes, 99)), 2),
        # what the command path adds above plain MQTT over the same broker and link
        "above_mqtt_p50_ms": round(p50 - float(np.percentile(echoes, 50)), 2),
        "above_mqtt_p99_ms": round(p99 - float(np.percentile(echoes, 99)), 2),
        "deadman_hold_ms": round(max(holds), 1),
        "deadman_hold_median_ms": round(statistics.median(holds), 1), "deadman_trials": len(holds),
        "deadman_early_holds": early,
        "segments_p50_ms": {k: round(float(np.percentile(v, 50)), 2) for k, v in parts.items() if v},
        "segments_p99_ms": {k: round(float(np.percentile(v, 99)), 2) for k, v in parts.items() if v},
    }  # fmt: skip
    for name, values in parts.items():
        if values:
            v = np.array(values)
            print(f"  {name:20s} p50 {np.percentile(v, 50):7.2f} ms  p99 {np.percentile(v, 99):7.2f} ms"
                  f"  max {v.max():7.2f} ms")  # fmt: skip
    print(f"{n} commands over a {LINK_MS:g} ms link ({rig.broker_name}): round trip p50 "
          f"{p50:.1f} ms, p99 {p99:.1f} ms; software overhead p99 {p99 - 2 * LINK_MS:.1f} ms")  # fmt: skip
    print(f"plain MQTT echo over the same broker and link (interleaved): p50 "
          f"{np.percentile(echoes, 50):.1f} ms, p99 {np.percentile(echoes, 99):.1f} ms")  # fmt: skip
    print(f"dead-man (100 ms heartbeats): feed hold {', '.join(f'{h:.0f}' for h in holds)} ms "
          f"after the link cut")  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
