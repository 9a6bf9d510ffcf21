"""Batch payload codec speed: encode and decode samples/s and bytes/s, one core.

Three batch shapes:

- ``edge``: what an edge sends every 100 ms — 50 float64 signals × 100 rows (the key
  figures ``encode_samples_per_s`` / ``decode_samples_per_s`` are for this shape);
- ``vibration``: the same plus one second of spindle vibration at 25.6 kHz (float32);
- ``large``: 50 signals × 20,000 rows (8 MB), where per-batch overhead vanishes and
  the figure is memory and CRC bandwidth.

Decoding includes the CRC check and full validation. A sample is one scalar value or
one waveform point (``SampleBatch.n_values``). Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from machinetwin.model import SampleBatch, Waveform
from machinetwin.protocols.codec import decode_batch, encode_batch


def make_batch(rows: int, signals: int = 50, vibration: int = 0) -> SampleBatch:
    rng = np.random.default_rng(0)
    t = 1000.0 + np.arange(rows) * 0.001
    columns = {f"signal_{i:02d}": rng.normal(size=rows) for i in range(signals)}
    waveforms = []
    if vibration:
        values = rng.normal(size=vibration).astype(np.float32)
        waveforms.append(Waveform("spindle.vib", 1000.0, float(vibration), values, rpm=6000.0))
    return SampleBatch("harbin-vmc-1", t, columns, seq=123, waveforms=waveforms)


def rate(fn, seconds: float) -> float:
    """Calls per second of ``fn`` over about ``seconds`` (after one warm-up call)."""
    fn()
    n, start = 0, time.perf_counter()
    while True:
        for _ in range(10):
            fn()
        n += 10
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n / elapsed


def measure(batch: SampleBatch, seconds: float) -> dict[str, float]:
    payload = encode_batch(batch)
    enc = rate(lambda: encode_batch(batch), seconds)
    dec = rate(lambda: decode_batch(payload), seconds)
    return {
        "samples": batch.n_values,
        "bytes": len(payload),
        "encode_samples_per_s": enc * batch.n_values,
        "decode_samples_per_s": dec * batch.n_values,
        "encode_bytes_per_s": enc * len(payload),
        "decode_bytes_per_s": dec * len(payload),
        "encode_us": 1e6 / enc,
        "decode_us": 1e6 / dec,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="~1 s per figure (under 10 s)")
    args = parser.parse_args()
    seconds = 1.0 if args.quick else 4.0
    shapes = {
        "edge": make_batch(100),
        "vibration": make_batch(100, vibration=25_600),
        "large": make_batch(20_000),
    }
    results = {name: measure(batch, seconds) for name, batch in shapes.items()}
    print(f"{'batch':<10} {'samples':>8} {'bytes':>9} {'enc µs':>8} {'dec µs':>8} "
          f"{'enc Msamp/s':>12} {'dec Msamp/s':>12} {'enc GB/s':>9} {'dec GB/s':>9}")  # fmt: skip
    for name, r in results.items():
        print(
            f"{name:<10} {r['samples']:>8} {r['bytes']:>9} {r['encode_us']:>8.1f} "
            f"{r['decode_us']:>8.1f} {r['encode_samples_per_s'] / 1e6:>12.1f} "
            f"{r['decode_samples_per_s'] / 1e6:>12.1f} {r['encode_bytes_per_s'] / 1e9:>9.2f} "
            f"{r['decode_bytes_per_s'] / 1e9:>9.2f}"
        )
    edge, large = results["edge"], results["large"]
    print(
        json.dumps(
            {
                "encode_samples_per_s": round(edge["encode_samples_per_s"]),
                "decode_samples_per_s": round(edge["decode_samples_per_s"]),
                "batch_samples": edge["samples"],
                "vibration_encode_samples_per_s": round(
                    results["vibration"]["encode_samples_per_s"]
                ),
                "vibration_decode_samples_per_s": round(
                    results["vibration"]["decode_samples_per_s"]
                ),
                "large_encode_bytes_per_s": round(large["encode_bytes_per_s"]),
                "large_decode_bytes_per_s": round(large["decode_bytes_per_s"]),
            }
        )
    )


if __name__ == "__main__":
    main()
