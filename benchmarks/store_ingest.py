"""Hub store ingest: samples/s written to the DuckDB store (a file on disk).

Times only the store calls; batches are generated beforehand for each group. Runs:

- ``fleet_1khz``: 30 machines, 30 signals at 1 kHz in 100 ms batches (3,000 values
  each) and one second of 25.6 kHz spindle vibration per machine every 60 s; all
  machines' batches of one 100 ms tick written as one group (``write_batches``), the
  way ingest hands them over. This is the headline ``store_samples_per_s``.
- ``fleet_1khz_single``: the same batches written one ``write_batch`` call each.
- ``fleet_10hz_300``: 300 machines, 50 signals at 10 Hz (one sample per signal per
  batch), one group per tick: the per-batch overhead case of issue 4's acceptance 4.
- ``resend``: the ``fleet_1khz`` batches written again (all duplicates), per second of
  batches: what an edge resend after an outage costs.
- a chart query (1000 buckets) over one machine's whole range and its last 10 s.

Prints the figures and, as its last line, one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from machinetwin.hub import DuckDBStore
from machinetwin.model import SampleBatch, Waveform
from machinetwin.model.signals import SIGNALS

TICK_S = 0.1
AUX = [f"aux.{i}" for i in range(50)]  # beyond the canonical signals, for 50 per machine


def fleet(
    machines: int, signals: int, rate_hz: float, seconds: float, vib_every_s: float | None
) -> Iterator[list[SampleBatch]]:
    """One list of batches (one per machine) per 100 ms tick; smooth signals plus noise."""
    rng = np.random.default_rng(1)
    names = (list(SIGNALS) + AUX)[:signals]
    n = max(1, round(rate_hz * TICK_S))
    phase = rng.uniform(0, 2 * np.pi, (machines, signals, 1))
    for tick in range(round(seconds / TICK_S)):
        t = tick * TICK_S + np.arange(n) / rate_hz
        values = np.sin(t * 0.7 + phase) * 100 + rng.normal(0, 0.1, (machines, signals, n))
        group = []
        for m in range(machines):
            waves = []
            if vib_every_s and tick % round(vib_every_s / TICK_S) == m % 10:
                vib = rng.normal(0, 1.0, 25_600)
                waves.append(Waveform("spindle.vib", float(t[0]), 25_600.0, vib, 6000.0))
            cols = dict(zip(names, values[m], strict=True))
            group.append(SampleBatch(f"m{m:03d}", t, cols, seq=tick, waveforms=waves))
        yield group


def run(store: DuckDBStore, groups: Iterator[list[SampleBatch]], single: bool) -> dict:
    values = 0
    elapsed = 0.0
    batches = 0
    for group in groups:
        start = time.perf_counter()
        if single:
            for b in group:
                store.write_batch(b)
        else:
            store.write_batches(group)
        elapsed += time.perf_counter() - start
        values += sum(b.n_values for b in group)
        batches += len(group)
    return {"samples": values, "batches": batches, "seconds": elapsed,
            "samples_per_s": values / elapsed, "batches_per_s": batches / elapsed}  # fmt: skip


def timed_query(store: DuckDBStore, t0: float, t1: float) -> float:
    start = time.perf_counter()
    store.query("m000", list(SIGNALS)[:30] + ["spindle.vib"], t0, t1, buckets=1000)
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (under 50 s)")
    args = parser.parse_args()
    seconds = 10.0 if args.quick else 60.0
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cases = [
            ("fleet_1khz", 30, 30, 1000.0, 60.0, False, seconds, "fleet.duckdb"),
            # ~10 ms per transaction: a shorter run tells the same
            ("fleet_1khz_single", 30, 30, 1000.0, 60.0, True, seconds / 5, "single.duckdb"),
            ("fleet_10hz_300", 300, 50, 10.0, None, False, seconds, "slow.duckdb"),
        ]
        for name, m, k, rate, vib, single, secs, file in cases:
            with DuckDBStore(Path(tmp) / file, extra_signals=AUX) as store:
                results[name] = run(store, fleet(m, k, rate, secs, vib), single)
                if name == "fleet_1khz":
                    results["resend"] = run(store, fleet(m, k, rate, seconds, vib), False)
                    assert store.sequences("m000") == [(0, round(seconds / TICK_S) - 1)]
                    q_all = timed_query(store, 0.0, seconds)
                    q_last = timed_query(store, seconds - 10.0, seconds)
            size = os.path.getsize(Path(tmp) / file)
            results[name]["bytes_per_sample"] = size / results[name]["samples"]
    for name, r in results.items():
        extra = f", {r['bytes_per_sample']:.1f} B/sample on disk" if "bytes_per_sample" in r else ""
        print(f"{name:18s} {r['samples_per_s'] / 1e6:7.2f} M samples/s "
              f"{r['batches_per_s']:9.0f} batches/s ({r['samples']:,} samples){extra}")  # fmt: skip
    print(
        f"chart query 1000 buckets, 31 signals: whole range {q_all:.0f} ms, last 10 s {q_last:.0f} ms"
    )
    print(json.dumps({
        "store_samples_per_s": round(results["fleet_1khz"]["samples_per_s"]),
        "store_samples_per_s_single_batch": round(results["fleet_1khz_single"]["samples_per_s"]),
        "store_batches_per_s_300_machines_10hz": round(results["fleet_10hz_300"]["batches_per_s"]),
        "store_resend_batches_per_s": round(results["resend"]["batches_per_s"]),
        "query_ms_whole_range": round(q_all, 1),
        "query_ms_last_10s": round(q_last, 1),
        "quick": args.quick,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
