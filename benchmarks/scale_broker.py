"""Ingest through the broker for ``scale.py``: publisher processes, ingest processes.

A publisher (``python benchmarks/scale_broker.py --publish ...``, a process of its own)
encodes a fleet's batches ahead with the real codec and sends them as pre-built MQTT
3.1.1 QoS 1 PUBLISH packets over a few raw connections, one ``sendall`` per client per
tick: the load costs little CPU, and none of it is counted as the hub's. 1-row batches
of one machine differ only in ``seq`` and ``t``: one is encoded by the codec, the rest
are that payload with those two fields and the CRC rewritten (numpy, ``zlib.crc32``),
and a sample of them is decoded by the real codec as a check. Batches carrying a
vibration block are encoded whole.

The ingest processes are ``python -m machinetwin.hub.ingest_main --config HUB.toml``
(``--share`` for two on PostgreSQL); their CPU is read from ``/proc``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from machinetwin.model import MachineDescriptor, SampleBatch, Waveform
from machinetwin.model.signals import SIGNALS
from machinetwin.protocols import codec, topics

TICK_S = 0.1
SIGNALS_PER_MACHINE = 50
VIB_HZ = 25_600.0
VIB_EVERY_S = 60.0
AUX = [f"aux.{i}" for i in range(SIGNALS_PER_MACHINE)]
NAMES = (list(SIGNALS) + AUX)[:SIGNALS_PER_MACHINE]
CLIENTS = 8  # publisher connections


# --- MQTT packets ----------------------------------------------------------------------


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


def publish_packet(topic: str, payload: bytes, packet_id: int, retain: bool = False) -> bytes:
    """An MQTT 3.1.1 PUBLISH at QoS 1."""
    body = _mqtt_str(topic) + packet_id.to_bytes(2, "big") + payload
    return bytes([0x32 | int(retain)]) + _varint(len(body)) + body


class RawClient:
    """Connects, writes pre-built packets, counts the broker's PUBACKs (4 bytes each)."""

    def __init__(self, port: int, client_id: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        body = _mqtt_str("MQTT") + bytes([4, 0x02, 0, 0]) + _mqtt_str(client_id)
        self.sock.sendall(b"\x10" + _varint(len(body)) + body)
        if self.sock.recv(4)[3:4] != b"\x00":
            raise ConnectionError(f"broker refused {client_id}")
        self.pubacks = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        pending = 0
        try:
            while chunk := self.sock.recv(1 << 16):
                pending += len(chunk)
                self.pubacks += pending // 4
                pending %= 4
        except OSError:
            pass


# --- the fleet's payloads ----------------------------------------------------------------


@dataclass
class Plan:
    """Per tick, per client, the joined PUBLISH packets; and what they carry."""

    ticks: list[list[bytes]] = field(default_factory=list)
    births: list[bytes] = field(default_factory=list)
    batches: int = 0
    samples: int = 0


def _field_offset(a: bytes, b: bytes) -> int:
    """Where two payloads differing in one 8-byte field first differ (CRC excluded)."""
    diff = np.flatnonzero(np.frombuffer(a[:-4], np.uint8) != np.frombuffer(b[:-4], np.uint8))
    return int(diff[0])


def machine_payloads(machine: str, values: np.ndarray, t: np.ndarray, seq0: int) -> list[bytes]:
    """1-row batches of one machine at times ``t``: the codec's payload, patched per tick.

    The fields are found by encoding variants that differ in their lowest byte only
    (seq ^ 1; t = 0 versus the smallest float above 0), so nothing of the layout is
    assumed here but little-endian 8-byte seq and t.
    """
    cols = dict(zip(NAMES, values[:, None], strict=True))

    def encode(seq: int, when: float) -> bytes:
        return codec.encode_batch(SampleBatch(machine, np.array([when]), cols, seq=seq))

    base = encode(seq0, 0.0)
    seq_at = _field_offset(base, encode(seq0 ^ 1, 0.0))
    t_at = _field_offset(base, encode(seq0, 5e-324))
    rows = np.tile(np.frombuffer(base, np.uint8), (len(t), 1))
    seqs = seq0 + np.arange(len(t), dtype="<i8")
    rows[:, seq_at : seq_at + 8] = seqs.view(np.uint8).reshape(-1, 8)
    rows[:, t_at : t_at + 8] = np.asarray(t, "<f8").view(np.uint8).reshape(-1, 8)
    body = rows[:, :-4]
    crc = np.fromiter((zlib.crc32(r) for r in body), "<u4", len(rows))
    rows[:, -4:] = crc.view(np.uint8).reshape(-1, 4)
    return [r.tobytes() for r in rows]


def fleet_plan(prefix: str, machines: int, ticks: int, t0: float, seed: int = 1) -> Plan:
    """Every machine's batch per tick, as packets per client; births first (retained)."""
    rng = np.random.default_rng(seed)
    every = round(VIB_EVERY_S / TICK_S)
    plan = Plan(ticks=[[b""] * CLIENTS for _ in range(ticks)])
    per_tick: list[list[list[bytes]]] = [[[] for _ in range(CLIENTS)] for _ in range(ticks)]
    t = t0 + np.arange(ticks) * TICK_S
    pid = 1
    for m in range(machines):
        machine, client = f"{prefix}{m:04d}", m % CLIENTS
        descriptor = MachineDescriptor(machine, machine, "scale", "synthetic", tuple(NAMES))
        plan.births.append(publish_packet(topics.birth(machine),
                                          codec.encode_descriptor(descriptor), pid, True))  # fmt: skip
        values = rng.normal(100.0, 10.0, SIGNALS_PER_MACHINE)
        payloads = machine_payloads(machine, values, t, 0)
        if m in (0, machines - 1):
            _check(payloads, t)
        vib_tick = (m * 7) % every
        for k in range(vib_tick, ticks, every):  # staggered: a few machines per tick
            wave = Waveform("spindle.vib", float(t[k]), VIB_HZ, rng.normal(0, 1, int(VIB_HZ)), 6e3)
            cols = dict(zip(NAMES, values[:, None], strict=True))
            batch = SampleBatch(machine, t[k : k + 1], cols, seq=k, waveforms=[wave])
            payloads[k] = codec.encode_batch(batch)
            plan.samples += int(VIB_HZ)
        topic = topics.data(machine)
        for k, payload in enumerate(payloads):
            pid = pid % 65535 + 1
            per_tick[k][client].append(publish_packet(topic, payload, pid))
        plan.batches += ticks
        plan.samples += ticks * SIGNALS_PER_MACHINE
    plan.ticks = [[b"".join(c) for c in tick] for tick in per_tick]
    return plan


def _check(payloads: list[bytes], t: np.ndarray) -> None:
    """The patched payloads decode with the real codec (CRC checked) to the right fields."""
    for k in (0, len(payloads) - 1):
        batch = codec.decode_batch(payloads[k])
        if batch.seq != k or float(batch.t[0]) != float(t[k]):
            raise AssertionError(f"patched payload {k}: seq {batch.seq}, t {batch.t[0]}")


# --- the publisher process ---------------------------------------------------------------


def publisher_main(args: argparse.Namespace) -> None:
    """Encode; then per ``births PORT`` line connect to that broker and send the births
    (retained), per ``go`` line send every tick there; report each step on stdout."""
    t0 = time.time() if args.t0 is None else args.t0
    plan = fleet_plan(args.prefix, args.machines, args.ticks, t0)
    print(json.dumps({"event": "encoded", "batches": plan.batches, "samples": plan.samples,
                      "births": len(plan.births)}), flush=True)  # fmt: skip
    clients: list[RawClient] = []
    for line in sys.stdin:
        command, *rest = line.split()
        if command == "births":
            for c in clients:
                c.sock.close()
            clients = [RawClient(int(rest[0]), f"pub-{args.prefix}-{os.getpid()}-{i}")
                       for i in range(CLIENTS)]  # fmt: skip
            clients[0].sock.sendall(b"".join(plan.births))
            _wait_acks(clients, len(plan.births))
            print(json.dumps({"event": "births"}), flush=True)
        elif command == "go":
            start, end = _send(plan, clients, args.paced)
            _wait_acks(clients, len(plan.births) + plan.batches)
            print(json.dumps({"event": "sent", "start": start, "end": end}), flush=True)
        else:
            break


def _send(plan: Plan, clients: list[RawClient], paced: bool) -> tuple[float, float]:
    start = time.time()
    for k, tick in enumerate(plan.ticks):
        if paced:
            time.sleep(max(0.0, start + k * TICK_S - time.time()))
        for client, blob in zip(clients, tick, strict=True):
            if blob:
                client.sock.sendall(blob)
    return start, time.time()


def _wait_acks(clients: list[RawClient], expected: int, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while sum(c.pubacks for c in clients) < expected and time.monotonic() < deadline:
        time.sleep(0.01)


class Publisher:
    """The publisher process, driven from the benchmark."""

    def __init__(self, prefix: str, machines: int, ticks: int, paced: bool) -> None:
        args = [sys.executable, __file__, "--publish", "--prefix", prefix,
                "--machines", str(machines), "--ticks", str(ticks)]  # fmt: skip
        self.proc = subprocess.Popen(args + (["--paced"] if paced else []),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
        self.info: dict = {}

    def encoded(self) -> dict:
        if not self.info:
            self.info = self._line("encoded")
        return self.info

    def _line(self, event: str) -> dict:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        got = json.loads(line or "{}")
        if got.get("event") != event:
            raise RuntimeError(f"publisher: expected {event!r}, got {line!r}")
        return got

    def births(self, port: int) -> None:
        """Connect to the broker at ``port`` and send the births (retained)."""
        self._say(f"births {port}")
        self._line("births")

    def go(self) -> None:
        self._say("go")

    def _say(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def sent(self) -> dict:
        return self._line("sent")

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


# --- ingest processes --------------------------------------------------------------------


def cpu_of(pids: list[int]) -> float:
    """CPU seconds (user + system, and of waited-for children) of processes in /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15]) / tick
    return total


class IngestProcess:
    def __init__(self, hub_file: Path, workdir: Path, name: str, share: str | None) -> None:
        self.status = workdir / f"{name}.status.json"
        self.log = workdir / f"{name}.npy"
        args = [sys.executable, "-m", "machinetwin.hub.ingest_main", "--config", str(hub_file),
                "--client-id", f"scale-{name}", "--status-file", str(self.status),
                "--latency-log", str(self.log)]  # fmt: skip
        self.proc = subprocess.Popen(args + (["--share", share] if share else []),
                                     stdout=subprocess.PIPE, text=True)  # fmt: skip

    def ready(self) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if json.loads(line or "{}").get("event") != "ready":
            raise RuntimeError(f"ingest process did not start: {line!r}")

    def counters(self) -> dict:
        try:
            return json.loads(self.status.read_text())
        except (OSError, ValueError):
            return {}

    def stop(self) -> tuple[dict, np.ndarray]:
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=120)
        return json.loads(out.strip().splitlines()[-1]), np.load(self.log)


def wait_status(procs: list[IngestProcess], key: str, at_least: int, timeout_s: float) -> bool:
    """Until every process's (or, for 'handled', their summed) counter reaches ``at_least``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        statuses = [p.counters() for p in procs]
        if key == "handled":
            done = sum(s.get("stored", 0) + s.get("duplicates", 0) for s in statuses) >= at_least
        else:
            done = all(s.get(key, 0) >= at_least for s in statuses)
        if done:
            return True
        time.sleep(0.05)
    return False


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--publish", action="store_true", required=True)
    parser.add_argument("--prefix", default="m")
    parser.add_argument("--machines", type=int, required=True)
    parser.add_argument("--ticks", type=int, required=True)
    parser.add_argument("--paced", action="store_true")
    parser.add_argument("--t0", type=float, default=None)
    publisher_main(parser.parse_args())
