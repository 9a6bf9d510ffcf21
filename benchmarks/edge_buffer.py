"""Edge durable buffer speed: appends of encoded 100 ms batches per second, per fsync policy.

Each batch is what an edge buffers every 100 ms per machine: 50 float64 signals × 100
rows, encoded with the payload codec (~41 kB). For each fsync policy it times single
appends (one transaction each), then grouped appends (``append_many`` of 10, as an edge
with several machines would commit one tick), then acknowledging everything by ranges.
The database lives in a temporary directory on the same disk as ``--dir`` (default: the
system temp dir). The key figures are for the default policy, ``fsync="batch"``.

Then, paced like one site of ``benchmarks/ingest.py``'s latency phase (``--rate``
batches/s, default 150: 15 machines at 10 batches/s, with the hub's acks trailing the
appends by ``ACK_LAG`` batches), it times each append and ack call, under the default
policy: ``append_p50_ms``/``append_p99_ms``/``append_max_ms`` are what a batch waits on
its way to the uplink (the send path), ``ack_p99_ms`` what an ack holds the buffer.

Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from machinetwin.edge import DurableBuffer
from machinetwin.model import SampleBatch
from machinetwin.protocols.codec import encode_batch

SIGNALS, ROWS = 50, 100
ACK_LAG = 30  # batches between an append and its ack (~ the round trip at 150 batches/s)


def make_payloads(count: int) -> tuple[list[bytes], int]:
    rng = np.random.default_rng(0)
    t = np.arange(ROWS) * 0.001
    base = {f"signal_{i:02d}": rng.normal(size=ROWS) for i in range(SIGNALS)}
    batch = SampleBatch("harbin-vmc-1", t, base, seq=0)
    # distinct payloads (the seq differs), so nothing is deduplicated anywhere
    payloads = []
    for seq in range(count):
        batch.seq = seq
        payloads.append(encode_batch(batch))
    return payloads, batch.n_values


def run(directory: Path, fsync: str, payloads: list[bytes], group: int) -> dict[str, float]:
    path = directory / f"buffer-{fsync}-{group}.db"
    with DurableBuffer(path, quota_bytes=1 << 40, fsync=fsync) as buf:  # type: ignore[arg-type]
        start = time.perf_counter()
        if group == 1:
            for seq, payload in enumerate(payloads):
                buf.append("m", seq, payload)
        else:
            for first in range(0, len(payloads), group):
                chunk = payloads[first : first + group]
                buf.append_many([("m", first + i, p) for i, p in enumerate(chunk)])
        append_s = time.perf_counter() - start
        start = time.perf_counter()
        for first in range(0, len(payloads), 100):  # the hub acks in runs
            buf.ack_ranges("m", [(first, first + 99)])
        ack_s = time.perf_counter() - start
        assert buf.stats().pending_count == 0
    return {
        "append_batches_per_s": len(payloads) / append_s,
        "ack_batches_per_s": len(payloads) / ack_s,
    }


def paced(directory: Path, payloads: list[bytes], rate: float, seconds: float) -> dict:
    """Append at ``rate`` batches/s, ack ``ACK_LAG`` batches behind; time every call."""
    path = directory / "buffer-paced.db"
    count = min(len(payloads), round(rate * seconds))
    appends, acks = np.empty(count), []
    with DurableBuffer(path, quota_bytes=1 << 40) as buf:
        start = time.perf_counter()
        for seq in range(count):
            time.sleep(max(0.0, start + seq / rate - time.perf_counter()))
            t0 = time.perf_counter()
            buf.append("m", seq, payloads[seq])
            t1 = time.perf_counter()
            appends[seq] = t1 - t0
            if seq >= ACK_LAG and seq % 5 == 0:  # the hub acks a group at a time
                buf.ack_ranges("m", [(seq - ACK_LAG - 4, seq - ACK_LAG)])
                acks.append(time.perf_counter() - t1)
    a, k = appends * 1e3, np.asarray(acks) * 1e3
    return {
        "append_p50_ms": round(float(np.percentile(a, 50)), 3),
        "append_p99_ms": round(float(np.percentile(a, 99)), 3),
        "append_max_ms": round(float(a.max()), 3),
        "ack_p99_ms": round(float(np.percentile(k, 99)), 3),
        "paced_batches_per_s": rate,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer batches (under 30 s)")
    parser.add_argument("--dir", type=Path, default=None, help="where to put the database")
    parser.add_argument("--rate", type=float, default=150.0, help="paced appends per second")
    parser.add_argument("--paced-only", action="store_true", help="only the paced run")
    args = parser.parse_args()
    if args.paced_only:
        payloads, _ = make_payloads(round(args.rate * (5 if args.quick else 20)))
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            print(json.dumps(paced(Path(tmp), payloads, args.rate, 20.0)))
        return
    n = 2000 if args.quick else 10_000
    n_always = 300 if args.quick else 2000  # one fsync each: slow on purpose
    payloads, samples = make_payloads(n)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for fsync in ("batch", "always", "off"):
            count = n_always if fsync == "always" else n
            for group in (1, 10):
                results[f"{fsync}/{group}"] = run(Path(tmp), fsync, payloads[:count], group)
        latency = paced(Path(tmp), payloads, args.rate, 5.0 if args.quick else 20.0)
    print(f"{len(payloads[0])} bytes and {samples} samples per batch")
    print(
        f"{'fsync/group':<12} {'append batches/s':>17} {'Msamples/s':>11} {'MB/s':>8} {'ack batches/s':>14}"
    )
    for key, r in results.items():
        rate = r["append_batches_per_s"]
        print(
            f"{key:<12} {rate:>17,.0f} {rate * samples / 1e6:>11.1f} "
            f"{rate * len(payloads[0]) / 1e6:>8.1f} {r['ack_batches_per_s']:>14,.0f}"
        )
    print(f"paced at {args.rate:.0f} batches/s: append p50 {latency['append_p50_ms']} ms, "
          f"p99 {latency['append_p99_ms']} ms, max {latency['append_max_ms']} ms; "
          f"ack p99 {latency['ack_p99_ms']} ms")  # fmt: skip
    main_rate = results["batch/1"]["append_batches_per_s"]
    print(
        json.dumps(
            {
                "append_batches_per_s": round(main_rate),
                "append_samples_per_s": round(main_rate * samples),
                "batch_bytes": len(payloads[0]),
                "batch_samples": samples,
                "fsync": "batch",
                "append_batches_per_s_by_policy": {
                    key: round(r["append_batches_per_s"]) for key, r in results.items()
                },
                "ack_batches_per_s": round(results["batch/1"]["ack_batches_per_s"]),
                **latency,
            }
        )
    )


if __name__ == "__main__":
    main()
