"""The LinuxCNC adapter against a headless LinuxCNC: cadence, command round trip, recovery.

Prints (last line, JSON): ``samples_per_s`` (polled samples reaching the edge),
``batch_interval_p50_ms`` / ``batch_interval_p99_ms`` (time between batches, 100 ms
nominal), ``sample_age_p50_ms`` (a batch's newest sample's age when the edge gets it),
``mdi_rtt_p50_ms`` / ``mdi_rtt_max_ms`` (an MDI command to LinuxCNC's answer),
``recovery_s`` (LinuxCNC up again, homed → first batch from the new one; 0 when the
adapter was back before the bring-up ended), ``relaunch_to_data_s`` (``linuxcnc``
launched again → that batch), and
``helper_cpu_pct`` (the helper's CPU share of one core while sampling).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time

import numpy as np

from machinetwin.model import AdapterCommand, Execution, SampleBatch
from machinetwin.protocols.linuxcnc import LinuxCNCAdapter, LinuxCNCSettings
from machinetwin.protocols.linuxcnc.sim import SimController, unavailable_reason


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def until_idle(adapter: LinuxCNCAdapter) -> None:
    """The move has shown up as ACTIVE in a batch (or 1 s passed), then ended."""
    deadline = time.monotonic() + 1.0
    while adapter.execution != Execution.ACTIVE and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    while adapter.execution == Execution.ACTIVE:
        await asyncio.sleep(0.01)


async def measure(sim: SimController, seconds: float, n_mdi: int) -> dict[str, float]:
    adapter = LinuxCNCAdapter(LinuxCNCSettings("bench", env=sim.env, retry_s=0.2))
    arrivals: list[float] = []
    ages: list[float] = []
    samples = 0

    async def pump() -> None:
        nonlocal samples
        async for item in adapter.batches():
            if isinstance(item, SampleBatch):
                now = time.time()
                arrivals.append(now)
                ages.append(now - item.t[-1])
                samples += len(item)

    task = asyncio.create_task(pump())
    while not adapter.connected:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    assert adapter._proc is not None
    pid = adapter._proc.pid
    cpu0, n0, s0, t0 = cpu_seconds(pid), len(arrivals), samples, time.monotonic()
    await asyncio.sleep(seconds)
    cpu1, n1, s1, t1 = cpu_seconds(pid), len(arrivals), samples, time.monotonic()
    rtts = []
    for k in range(n_mdi):
        start = time.monotonic()
        await adapter.command(AdapterCommand("mdi", {"text": f"G21 G90 G54 G0 X{k % 2 * 10}"}))
        rtts.append(time.monotonic() - start)
        await until_idle(adapter)
    before = adapter.connections
    await asyncio.to_thread(sim.stop)
    launched = time.monotonic()
    await asyncio.to_thread(sim.start)
    started = time.monotonic()  # LinuxCNC is up, homed, in auto mode
    while adapter.connections == before:
        await asyncio.sleep(0.01)
    mark = len(arrivals)
    while len(arrivals) == mark:
        await asyncio.sleep(0.01)
    # the helper may connect while the bring-up is still running: then it is 0
    recovery = max(0.0, time.monotonic() - started)
    relaunch_to_data = time.monotonic() - launched
    await adapter.close()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    gaps = np.diff(arrivals[n0:n1]) * 1000
    return {
        "samples_per_s": round((s1 - s0) / (t1 - t0), 1),
        "batch_interval_p50_ms": round(float(np.percentile(gaps, 50)), 1),
        "batch_interval_p99_ms": round(float(np.percentile(gaps, 99)), 1),
        "sample_age_p50_ms": round(float(np.percentile(np.array(ages[n0:n1]) * 1000, 50)), 1),
        "mdi_rtt_p50_ms": round(float(np.percentile(rtts, 50)) * 1000, 1),
        "mdi_rtt_max_ms": round(max(rtts) * 1000, 1),
        "recovery_s": round(recovery, 2),
        "relaunch_to_data_s": round(relaunch_to_data, 2),
        "helper_cpu_pct": round((cpu1 - cpu0) / (t1 - t0) * 100, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 s of sampling, 10 MDI commands")
    args = parser.parse_args()
    reason = unavailable_reason()
    if reason and "lock" not in reason:  # another instance: wait for it below
        print(json.dumps({"linuxcnc_available": False, "error": reason}))
        raise SystemExit(1)
    seconds, n_mdi = (10.0, 10) if args.quick else (60.0, 50)
    with SimController(lock_wait_s=120) as sim:
        result = asyncio.run(measure(sim, seconds, n_mdi))
    print(json.dumps({"linuxcnc_available": True, **result}))


if __name__ == "__main__":
    main()
