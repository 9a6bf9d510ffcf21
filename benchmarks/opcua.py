"""OPC UA notifications per second: 2,000 monitored items at 100 ms sampling.

Two runs in the same invocation, each with the server in its own process:

- machinetwin: ``MachineToolServer`` with synthetic machines (every numeric signal
  changes in every 100 ms batch) and one ``OpcUaClientAdapter`` per machine (as the edge
  runs them), until at least 2,000 items are monitored; counts the data-change
  notifications the adapters receive.
- asyncua alone (the peer): a plain asyncua server with 2,000 Double variables, all
  written every 100 ms in one write call, and one plain asyncua client subscription.

Prints one JSON object on its last line: ``notifications_per_s`` (machinetwin),
``monitored_items``, ``asyncua_notifications_per_s``, ``ratio_vs_asyncua``, the ceiling
(items x 10/s), and the CPU time per notification of each side's client and server
(``*_cpu_us_per_notification``): on a shared, loaded machine the rates swing with the
neighbours' load, the CPU cost per notification much less. ``--quick`` measures 6 s per run (under 50 s in all).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import numpy as np

ITEMS = 2000
PERIOD_S = 0.1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SyntheticMachine:
    """An Adapter whose every numeric signal changes in every 100 ms batch (10 rows)."""

    def __init__(self, machine_id: str, seed: int) -> None:
        from machinetwin.model import MachineDescriptor
        from machinetwin.protocols.opcua.model import SIGNAL_MAP

        self.descriptor = MachineDescriptor(machine_id, machine_id, "bench")
        self.signals = [mp.signal for mp in SIGNAL_MAP]
        self.rng = np.random.default_rng(seed)
        self.closed = False

    async def batches(self) -> AsyncIterator:
        from machinetwin.model import SampleBatch

        next_t = time.monotonic()
        while not self.closed:
            # behind schedule (a loaded machine): skip the missed periods and always leave
            # the loop a moment, or the server's publish responses starve
            next_t = max(next_t + PERIOD_S, time.monotonic())
            await asyncio.sleep(max(0.01, next_t - time.monotonic()))
            t = time.time() - PERIOD_S + np.arange(1, 11) * PERIOD_S / 10
            values = self.rng.random((len(self.signals), 10)) * 100
            columns = dict(zip(self.signals, values, strict=True))
            columns["mode"] = np.zeros(10)  # enumerations keep valid values
            columns["execution"] = np.ones(10)
            yield SampleBatch(self.descriptor.machine_id, t, columns)

    async def command(self, command: object) -> None:
        return None

    async def close(self) -> None:
        self.closed = True


# ------------------------------------------------------------ servers (child processes)


async def serve_ours(port: int, machines: int) -> None:
    from machinetwin.protocols.opcua.server import MachineToolServer

    adapters = [SyntheticMachine(f"m{k:03d}", k) for k in range(machines)]
    server = MachineToolServer(adapters, f"opc.tcp://127.0.0.1:{port}/bench")
    async with server.serving():
        await asyncio.Event().wait()


async def serve_peer(port: int, items: int) -> None:
    from asyncua import Server, ua

    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/peer")
    idx = await server.register_namespace("urn:bench:peer")
    folder = await server.nodes.objects.add_folder(idx, "Items")
    nodes = [await folder.add_variable(idx, f"v{k}", 0.0) for k in range(items)]
    rng = np.random.default_rng(0)
    async with server:
        next_t = time.monotonic()
        while True:
            # behind schedule (a loaded machine): skip the missed periods and always leave
            # the loop a moment, or the server's publish responses starve
            next_t = max(next_t + PERIOD_S, time.monotonic())
            await asyncio.sleep(max(0.01, next_t - time.monotonic()))
            values = rng.random(items) * 100
            stamp = ua.DataValue  # one write call for all items, as our server does
            writes = [ua.WriteValue(NodeId=n.nodeid, AttributeId=ua.AttributeIds.Value,
                                    Value=stamp(ua.Variant(float(v), ua.VariantType.Double)))
                      for n, v in zip(nodes, values, strict=True)]  # fmt: skip
            await server.iserver.isession.write(ua.WriteParameters(NodesToWrite=writes))


def start_server(kind: str, port: int, count: int) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    args = [sys.executable, __file__, "--serve", kind, "--port", str(port), "--count", str(count)]
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def wait_port(port: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.2)
    raise TimeoutError(f"no server on port {port} after {timeout_s} s")


# ------------------------------------------------------------ clients (this process)


def cpu_s(pid: int | None = None) -> float:
    """CPU seconds (user + system) of a process: this one, or the server child. On a
    shared, loaded machine the CPU cost per notification is steadier than the rate."""
    if pid is None:
        return time.process_time()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Window:
    """Notifications, wall time and both processes' CPU over the measured window."""

    def __init__(self, server_pid: int, count: int) -> None:
        self.pid, self.count0 = server_pid, count
        self.t0, self.client0, self.server0 = time.monotonic(), cpu_s(), cpu_s(server_pid)

    def end(self, count: int) -> dict[str, float]:
        n = count - self.count0
        nan = float("nan")  # no notification at all: no cost per notification
        return {"per_s": n / (time.monotonic() - self.t0),
                "client_us": (cpu_s() - self.client0) / n * 1e6 if n else nan,
                "server_us": (cpu_s(self.pid) - self.server0) / n * 1e6 if n else nan}  # fmt: skip


async def first_notification(count: Callable[[], int], timeout_s: float = 60.0) -> None:
    """Wait for the first notification: on a loaded machine a server may need many
    seconds to answer its first publish, and a window before that measures nothing."""
    deadline = time.monotonic() + timeout_s
    while count() == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)


async def measure_ours(port: int, machines: int, seconds: float,
                       server_pid: int) -> tuple[dict[str, float], int]:  # fmt: skip
    from machinetwin.protocols.opcua.client import OpcUaClientAdapter, OpcUaSettings

    url = f"opc.tcp://127.0.0.1:{port}/bench"
    adapters = [OpcUaClientAdapter(OpcUaSettings(url, f"c{k:03d}", machine=f"m{k:03d}",
                                                 timeout_s=30))
                for k in range(machines)]  # fmt: skip

    async def drain(adapter: OpcUaClientAdapter) -> None:
        async for _ in adapter.batches():
            pass

    tasks = [asyncio.create_task(drain(a)) for a in adapters]
    deadline = time.monotonic() + 120
    while sum(a.sessions for a in adapters) < machines and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    await first_notification(lambda: sum(a.notifications for a in adapters))
    await asyncio.sleep(2.0)  # past the initial notifications
    items = sum(len(a.signals) + 2 for a in adapters)  # numeric (minus execution) + 3 text
    window = Window(server_pid, sum(a.notifications for a in adapters))
    await asyncio.sleep(seconds)
    result = window.end(sum(a.notifications for a in adapters))
    for a in adapters:
        await a.close()
    await asyncio.gather(*tasks, return_exceptions=True)
    return result, items


async def measure_peer(port: int, items: int, seconds: float,
                       server_pid: int) -> tuple[dict[str, float], int]:  # fmt: skip
    from asyncua import Client

    class Counter:
        count = 0

        def datachange_notification(self, node: object, val: object, data: object) -> None:
            self.count += 1

    counter = Counter()
    # the health probe as our adapters have it (timeout / 2): with asyncua's 1 s default a
    # loaded server's slow answer counts as a lost connection and the peer measures 0
    async with Client(f"opc.tcp://127.0.0.1:{port}/peer", timeout=30,
                      watchdog_intervall=15.0) as client:  # fmt: skip
        folder = await client.nodes.objects.get_child("2:Items")
        nodes = await folder.get_children()
        sub = await client.create_subscription(PERIOD_S * 1000, counter)
        await sub.subscribe_data_change(nodes, sampling_interval=PERIOD_S * 1000)
        await first_notification(lambda: counter.count)
        await asyncio.sleep(2.0)
        window = Window(server_pid, counter.count)
        await asyncio.sleep(seconds)
        result = window.end(counter.count)
    return result, len(nodes)


async def run(kind: str, seconds: float) -> tuple[dict[str, float], int]:
    port = _free_port()
    per_machine = 3 + len(__import__("machinetwin.protocols.opcua.model",
                                     fromlist=["SIGNAL_MAP"]).SIGNAL_MAP)  # fmt: skip
    machines = math.ceil(ITEMS / per_machine)
    proc = start_server(kind, port, machines if kind == "ours" else ITEMS)
    try:
        await wait_port(port)
        if kind == "ours":
            return await measure_ours(port, machines, seconds, proc.pid)
        return await measure_peer(port, ITEMS, seconds, proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)


def _round(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="6 s per run (under 50 s)")
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--serve", choices=["ours", "peer"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve == "ours":
        asyncio.run(serve_ours(args.port, args.count))
        return
    if args.serve == "peer":
        asyncio.run(serve_peer(args.port, args.count))
        return
    import logging

    logging.disable(logging.CRITICAL)  # asyncua logs policies and closed sessions at length
    seconds = args.seconds or (6.0 if args.quick else 30.0)
    ours, items = asyncio.run(run("ours", seconds))
    print(f"machinetwin: {ours['per_s']:,.0f} notifications/s over {items} monitored items; "
          f"CPU per notification: client {ours['client_us']:.1f} µs, "
          f"server {ours['server_us']:.1f} µs", flush=True)  # fmt: skip
    peer, peer_items = asyncio.run(run("peer", seconds))
    print(f"asyncua alone: {peer['per_s']:,.0f} notifications/s over {peer_items} items; "
          f"CPU per notification: client {peer['client_us']:.1f} µs, "
          f"server {peer['server_us']:.1f} µs", flush=True)  # fmt: skip
    print(json.dumps({
        "notifications_per_s": round(ours["per_s"], 1), "monitored_items": items,
        "asyncua_notifications_per_s": round(peer["per_s"], 1),
        "asyncua_monitored_items": peer_items,
        "ratio_vs_asyncua": round(ours["per_s"] / peer["per_s"], 3) if peer["per_s"] else None,
        "client_cpu_us_per_notification": _round(ours["client_us"]),
        "asyncua_client_cpu_us_per_notification": _round(peer["client_us"]),
        "server_cpu_us_per_notification": _round(ours["server_us"]),
        "asyncua_server_cpu_us_per_notification": _round(peer["server_us"]),
        "ceiling_per_s": items / PERIOD_S, "seconds": seconds,
        "load_average": os.getloadavg()[0],
    }))  # fmt: skip


if __name__ == "__main__":
    main()
