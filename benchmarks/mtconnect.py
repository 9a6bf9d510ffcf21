"""MTConnect agent and client throughput, one core: observations per second.

- ``ingest``: sample batches of a moving machine (the 25 canonical columns our device
  maps, 100 rows each, every value changing) into the agent's columnar ring buffer;
- ``render_xml`` / ``render_json``: ``/sample`` documents of 1,000 observations;
- ``parse``: the client turning such an XML document into numpy columns and a batch;
- ``http``: end to end over loopback HTTP: the client's streaming session reading an
  agent that is fed as fast as it can take it (observations delivered per second).

An observation is one data item value with its sequence number and timestamp. Prints a
table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import numpy as np

from machinetwin.model import SIGNALS, MachineDescriptor, SampleBatch
from machinetwin.protocols.mtconnect.agent import MTConnectAgent, SampleQuery
from machinetwin.protocols.mtconnect.client import ClientSettings, MTConnectClientAdapter
from machinetwin.protocols.mtconnect.convert import Converter
from machinetwin.protocols.mtconnect.streams import parse_probe, parse_streams


class Idle:
    """An adapter that yields nothing (the benchmark feeds the agent directly)."""

    def __init__(self, machine_id: str) -> None:
        self.descriptor = MachineDescriptor(machine_id, machine_id, "lab", signals=tuple(SIGNALS))
        self.done = asyncio.Event()

    async def batches(self):
        await self.done.wait()
        return
        yield

    async def command(self, command) -> None:
        return None

    async def close(self) -> None:
        self.done.set()


def moving_batch(k: int, rows: int = 100) -> SampleBatch:
    t = 1.7e9 + (k * rows + np.arange(rows)) * 0.01
    phase = (k * rows + np.arange(rows)) * 0.01
    cols = {name: np.sin(phase + i) * 100 + i for i, name in enumerate(SIGNALS)}
    for name in ("execution", "mode", "estop"):
        cols[name] = np.ones(rows)
    return SampleBatch("m1", t, cols)


def rate(fn, seconds: float) -> tuple[float, int]:
    """(calls per second, calls) of ``fn`` over about ``seconds``, after one warm-up."""
    fn()
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        fn()
        n += 1
    return n / elapsed, n


def bench_offline(seconds: float) -> dict[str, float]:
    agent = MTConnectAgent([Idle("m1")], buffer_size=1 << 17)
    feed = agent.feeds[0]
    batches = [moving_batch(k) for k in range(64)]
    counter = iter(range(10**9))

    def ingest() -> None:
        feed.ingest_batch(batches[next(counter) % 64])

    before = agent.buffer.next_sequence
    per_s, n = rate(ingest, seconds)
    obs_per_batch = (agent.buffer.next_sequence - before) / (n + 1)
    out = {"ingest_obs_per_s": per_s * obs_per_batch, "ingest_batches_per_s": per_s}
    mask = agent._mask(agent.devices)
    start = agent.buffer.next_sequence - 20000
    obs, nxt = agent.query(SampleQuery(start, 1000, None, mask))
    for fmt in ("xml", "json"):
        per_s, _ = rate(lambda fmt=fmt: agent._streams(obs, nxt, fmt), seconds)
        out[f"render_{fmt}_obs_per_s"] = per_s * len(obs)
    doc = agent._streams(obs, nxt, "xml").encode()
    from machinetwin.protocols.mtconnect.documents import probe_document

    probe = parse_probe(probe_document(agent.header(), agent.devices, "xml"))
    conv = Converter("m1")
    conv.set_signals(probe.signals)

    def parse() -> None:
        conv.convert(parse_streams(doc, probe, conv.index))

    per_s, _ = rate(parse, seconds)
    out["parse_obs_per_s"] = per_s * len(obs)
    out["xml_bytes_per_obs"] = len(doc) / len(obs)
    return out


async def bench_http(seconds: float) -> dict[str, float]:
    agent = MTConnectAgent([Idle("m1")], buffer_size=1 << 17)
    feed = agent.feeds[0]
    got = 0
    async with agent.serving() as url:
        client = MTConnectClientAdapter(ClientSettings(url, "m1", count=5000, interval_ms=0))

        async def produce() -> None:
            k = 0
            while True:  # keep the ring ahead of the reader without overrunning it
                if agent.buffer.next_sequence - (client.next_sequence or 0) < 50000:
                    feed.ingest_batch(moving_batch(k))
                    agent.notify()
                    k += 1
                await asyncio.sleep(0)

        async def consume() -> None:
            nonlocal got
            async for item in client.batches():
                if isinstance(item, SampleBatch):
                    got += len(item) * len(item.columns)

        producer = asyncio.create_task(produce())
        consumer = asyncio.create_task(consume())
        await asyncio.sleep(1.0)  # warm up: probe, current, stream open
        seq0, t0 = client.next_sequence or 0, time.perf_counter()
        await asyncio.sleep(seconds)
        seq1, t1 = client.next_sequence or 0, time.perf_counter()
        await client.close()
        for task in (producer, consumer):
            task.cancel()
        await asyncio.gather(producer, consumer, return_exceptions=True)
    return {"http_obs_per_s": (seq1 - seq0) / (t1 - t0), "http_resyncs": client.resyncs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (under 50 s)")
    args = parser.parse_args()
    seconds = 1.5 if args.quick else 5.0
    result = bench_offline(seconds)
    result.update(asyncio.run(bench_http(seconds * 2)))
    for key, value in result.items():
        print(f"{key:>26}: {value:,.0f}")
    print(json.dumps({k: round(v, 1) for k, v in result.items()}))


if __name__ == "__main__":
    main()
