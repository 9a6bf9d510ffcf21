"""Web UI latency: a sample entering the hub → its value on the page, and page load time.

A real hub runs in this process (embedded broker, ingest, DuckDB, users, API and the
NiceGUI web UI, served by uvicorn in a thread of its own), and Debian's Chromium is
driven by Playwright. One synthetic machine publishes a batch every 100 ms over MQTT,
as an edge does, whose ``spindle.load`` is a new number each time (the batch's
sequence number). A MutationObserver in the page records when each number appears in
the machine page's "Spindle load" card.

- ``update_p50_ms`` / ``update_p99_ms``: time the number appeared in the page minus the
  time its batch was published to the hub's broker (both this machine's wall clock).
  Numbers superseded before the page's next 100 ms refresh never show; ``shown_fraction``
  says how many did.
- ``page_load_ms``: median over several loads of the machine page (logged in) of the
  time from navigation start until the page shows live values and its 3D canvas.
  ``fleet_load_ms`` is the same for the fleet page (its table of machines).

``--machines N`` adds N-1 more synthetic machines, each publishing a batch a second
(the fleet table then has N rows, all changing): the latency is measured with that
load on the hub and the page. Targets: p99 < 250 ms and load < 1 s on loopback. Prints one JSON object last.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt

from machinetwin.hub.broker import free_port
from machinetwin.hub.service import Hub, HubConfig
from machinetwin.model import MachineDescriptor, SampleBatch
from machinetwin.model.signals import SIGNALS
from machinetwin.protocols import codec, topics

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--no-sandbox"]
PERIOD_S = 0.1
ROWS = 10  # samples per batch (100 Hz)
PROBE = "bench-vmc-1"
VERBOSE = {"resources": False}

OBSERVER_JS = """
() => {
  const el = document.querySelector('[data-testid="value-spindle.load"]');
  window.__seen = [];
  new MutationObserver(() => {
    window.__seen.push([el.textContent, performance.timeOrigin + performance.now()]);
  }).observe(el, {childList: true, characterData: true, subtree: true});
}
"""
NAV_JS = """
() => {
  const n = performance.getEntriesByType('navigation')[0];
  return `response ${n.responseEnd.toFixed(0)} ms, DOM ${n.domContentLoadedEventEnd.toFixed(0)} ms, `
       + `load ${n.loadEventEnd.toFixed(0)} ms`;
}
"""
RES_JS = """
() => performance.getEntriesByType('resource').map(r => [r.name.split('/').slice(-1)[0].slice(0, 40),
  Math.round(r.startTime), Math.round(r.responseEnd), r.transferSize]).sort((a, b) => b[2] - a[2]).slice(0, 12)
"""
LOADED_JS = """
() => {
  const v = document.querySelector('[data-testid="value-spindle.load"]');
  const c = document.querySelector('[data-testid="twin-scene"] canvas');
  return v && c && v.textContent.trim() !== '–';
}
"""
# everything: the charts (added once the browser is connected) have drawn their first
# data, and the control and twin panels are there
COMPLETE_JS = """
() => [...document.querySelectorAll('[_echarts_instance_] canvas')].length >= 6
  && !!document.querySelector('[data-testid="control-panel"]')
  && !!document.querySelector('[data-testid="twin-panel"]')
"""


def _quantile(values: list[float], q: float) -> float:
    return float(np.quantile(np.asarray(values), q)) if values else float("nan")


class HubThread:
    """The hub with its API and UI on a loop in a thread of its own."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.hub = Hub(HubConfig(store=data_dir / "hub.duckdb", embedded_broker_port=0,
                                 api_port=self.port))  # fmt: skip
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.started = threading.Event()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.hub.start()
        self.task = self.loop.create_task(self.hub.serve_api())
        self.loop.call_soon(self.started.set)
        self.loop.run_until_complete(self.task)

    def start(self) -> str:
        self.thread.start()
        self.started.wait(60)
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.hub.stop_api)
        self.thread.join(15)
        self.hub.stop()


def descriptor(machine: str) -> MachineDescriptor:
    return MachineDescriptor(machine_id=machine, name="bench", site="Harbin", model="synthetic",
                             signals=tuple(SIGNALS))  # fmt: skip


def batch(machine: str, seq: int, value: float, now: float) -> SampleBatch:
    t = now - PERIOD_S + (np.arange(ROWS) + 1) * (PERIOD_S / ROWS)
    cols = {
        "spindle.load": np.full(ROWS, value),
        "x.pos": 300.0 + 10 * np.sin(t),
        "y.pos": 200.0 + 10 * np.cos(t),
        "z.pos": np.full(ROWS, -250.0),
        "line": np.full(ROWS, float(seq % 50 + 1)),
        "execution": np.ones(ROWS),
    }
    return SampleBatch(machine, t, cols, seq=seq)


def publish(broker_port: int, machines: list[str], seconds: float, sent: dict[int, float]) -> None:
    """Every 100 ms a batch per machine; the probe's spindle load is its seq number."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="ui-bench")
    client.max_inflight_messages_set(5000)
    client.connect("127.0.0.1", broker_port, 30)
    client.loop_start()
    for m in machines:
        client.publish(
            topics.birth(m), codec.encode_descriptor(descriptor(m)), qos=1
        ).wait_for_publish(10)
        client.publish(topics.state(m), topics.ONLINE, qos=1)
    start = time.time() + 0.5
    for k in range(round(seconds / PERIOD_S)):
        time.sleep(max(0.0, start + k * PERIOD_S - time.time()))
        now = time.time()
        for j, m in enumerate(machines):
            # the other machines send once a second, staggered: the hub's ingest, this
            # publisher and the UI share one Python process here, and 3,000 batches/s
            # would measure the ingest backlog, not the page (see benchmarks/ingest.py)
            if m != PROBE and j % 10 != k % 10:
                continue
            value = float(1000 + k) if m == PROBE else 20.0 + (k % 7)
            payload = codec.encode_batch(batch(m, k, value, now))
            if m == PROBE:
                sent[1000 + k] = time.time()
            client.publish(topics.data(m), payload, qos=1)
    time.sleep(0.5)
    client.disconnect()
    client.loop_stop()


def log_in(page, url: str, password: str) -> None:  # noqa: ANN001 - a Playwright Page
    page.goto(f"{url}/login")
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password", exact=True).fill(password)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{url}/", timeout=20_000)


def load_times(
    context, url: str, path: str, ready_js: str, n: int, complete_js: str | None = None
) -> tuple[list[float], list[float]]:  # noqa: ANN001
    """Navigation start → ``ready_js`` true, and → ``complete_js`` true, per load, ms."""
    ready, complete = [], []
    for _ in range(n):
        page = context.new_page()
        page.goto(f"{url}{path}", wait_until="commit")
        page.wait_for_function(ready_js, polling=10, timeout=20_000)
        ready.append(page.evaluate("() => performance.now()"))
        if complete_js:
            page.wait_for_function(complete_js, polling=10, timeout=20_000)
            complete.append(page.evaluate("() => performance.now()"))
        nav = page.evaluate(NAV_JS)
        full = f", complete {complete[-1]:.0f} ms" if complete else ""
        print(f"{path}: ready {ready[-1]:.0f} ms{full}; {nav}", file=sys.stderr)
        if VERBOSE["resources"]:
            print(page.evaluate(RES_JS), file=sys.stderr)
        page.close()
    return ready, complete


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="about 35 s instead of ~90 s")
    parser.add_argument("--machines", type=int, default=1, help="machines publishing (fleet size)")
    parser.add_argument("--resources", action="store_true", help="print the slowest resources")
    args = parser.parse_args()
    VERBOSE["resources"] = args.resources
    if args.machines < 1:
        parser.error("--machines must be at least 1")
    seconds, loads = (10.0, 4) if args.quick else (60.0, 15)
    from playwright.sync_api import sync_playwright

    machines = [PROBE] + [f"bench-vmc-{k}" for k in range(2, args.machines + 1)]
    with tempfile.TemporaryDirectory(prefix="ui-bench-") as tmp:
        hub = HubThread(Path(tmp))
        url = hub.start()
        password = hub.hub.admin_password
        assert password, "a fresh hub generates the admin password"
        sent: dict[int, float] = {}
        warmup = threading.Thread(
            target=publish, args=(hub.hub.broker_address.port, machines, 2.0, {})
        )
        warmup.start()
        warmup.join()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            page = context.new_page()
            log_in(page, url, password)
            page_load, complete = load_times(
                context, url, f"/machine/{PROBE}", LOADED_JS, loads, COMPLETE_JS
            )
            # the table has every machine (virtual scrolling draws only the visible rows)
            fleet_js = (
                "() => (document.querySelector('[data-testid=fleet-table]')?.textContent || '')"
                f".includes('of {len(machines)}')"
            )
            fleet_load, _ = load_times(context, url, "/", fleet_js, max(2, loads // 2))
            page.goto(f"{url}/machine/{PROBE}")
            # the update latency is measured on a page that has finished loading
            page.wait_for_function(COMPLETE_JS, timeout=20_000)
            page.evaluate(OBSERVER_JS)
            publisher = threading.Thread(
                target=publish, args=(hub.hub.broker_address.port, machines, seconds, sent)
            )
            publisher.start()
            publisher.join()
            time.sleep(1.0)
            seen = page.evaluate("() => window.__seen")
            browser.close()
        hub.stop()
    latencies = []
    shown = {}
    for text, at_ms in seen:
        try:
            value = int(float(text.replace("%", "").strip()))
        except ValueError:
            continue
        if value in sent and value not in shown:
            shown[value] = at_ms / 1000.0 - sent[value]
    latencies = [v * 1000.0 for v in shown.values()]
    worst = sorted(shown.items(), key=lambda kv: -kv[1])[:5]
    print("slowest updates (value: ms): " + ", ".join(f"{k - 1000}: {v * 1000:.0f}"
                                                      for k, v in worst), file=sys.stderr)  # fmt: skip
    result = {
        "update_p50_ms": round(_quantile(latencies, 0.5), 1),
        "update_p99_ms": round(_quantile(latencies, 0.99), 1),
        "page_load_ms": round(statistics.median(page_load), 1),
        "page_complete_ms": round(statistics.median(complete), 1),
        "fleet_load_ms": round(statistics.median(fleet_load), 1),
        "shown_fraction": round(len(shown) / max(1, len(sent)), 3),
        "samples_sent": len(sent),
        "machines": len(machines),
    }
    print(f"update latency: p50 {result['update_p50_ms']} ms, p99 {result['update_p99_ms']} ms "
          f"({len(shown)} of {len(sent)} values shown); machine page load "
          f"{result['page_load_ms']} ms, fleet {result['fleet_load_ms']} ms", file=sys.stderr)  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
