"""Edge durable buffer speed: appends of encoded 100 ms batches per second, per fsync policy.

Each batch is what an edge buffers every 100 ms per machine: 50 float64 signals × 100
rows, encoded with the payload codec (~41 kB). For each fsync policy it times single
appends (one transaction each), then grouped appends (``append_many`` of 10, as an edge
with several machines would commit one tick), then acknowledging everything by ranges.
The database lives in a temporary directory on the same disk as ``--dir`` (default: the
system temp dir). The key figures are for the default policy, ``fsync="batch"``.

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer batches (under 30 s)")
    parser.add_argument("--dir", type=Path, default=None, help="where to put the database")
    args = parser.parse_args()
    n = 2000 if args.quick else 10_000
    n_always = 300 if args.quick else 2000  # one fsync each: slow on purpose
    payloads, samples = make_payloads(n)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for fsync in ("batch", "always", "off"):
            count = n_always if fsync == "always" else n
            for group in (1, 10):
                results[f"{fsync}/{group}"] = run(Path(tmp), fsync, payloads[:count], group)
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
            }
        )
    )


if __name__ == "__main__":
    main()
