"""The one-command demo: a hub in the Dalian lab and three sites on long-distance links.

Everything runs in this process on loopback ports: the embedded MQTT broker, the hub
(ingest into DuckDB, live state, the API), and one edge per site (Harbin, Tianjin,
Dalian), each with a virtual machining centre running part programs in a loop and
connected through a link emulator whose delay follows the site's distance. Faults
appear over time, as on a real shop floor. The web UI is served at
http://127.0.0.1:8080/; the demo prints the login (user ``admin`` and a password
generated afresh at every start, since the demo's data directory is thrown away), and
a live table in the terminal shows what the lab sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

from .edge.agent import EdgeAgent
from .edge.buffer import DurableBuffer
from .edge.executor import ControlConfig, with_control
from .hub.service import Hub, HubConfig, login_message
from .machine import load_machine_config
from .machine.adapter import VirtualMachineAdapter, VirtualMachineSettings
from .machine.faults import FaultSchedule, parse_fault
from .net import LinkEmulator, LinkProfile
from .protocols.broker import BrokerAddress

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# the shared real data beside the repository (see its README): a recorded mill to replay
UMICH = Path(__file__).resolve().parents[3] / "shared" / "data" / "umich-cnc-mill"


@dataclass(frozen=True)
class Site:
    name: str
    machine_id: str
    km: float  # straight-line distance from the lab in Dalian
    programs: tuple[str, ...]
    faults: tuple[str, ...]


SITES = (
    Site("Harbin", "harbin-vmc-1", 870.0, ("pocket.ngc", "face.ngc", "drill.ngc"),
         ("bearing_outer:0.6@3min",)),
    Site("Tianjin", "tianjin-vmc-1", 460.0, ("face.ngc", "drill.ngc", "pocket.ngc"),
         ("tool_wear:0.5@2min",)),
    Site("Dalian", "dalian-vmc-1", 30.0, ("drill.ngc", "pocket.ngc", "face.ngc"),
         ("backlash:0.5@4min",)),
)  # fmt: skip


def link_profile(site: Site) -> LinkProfile:
    """Distance-based delay, never below the demo's 15 ms one way for the far sites."""
    profile = LinkProfile.from_distance(site.km)
    if site.km > 100:
        return profile.model_copy(update={"latency_ms": max(profile.latency_ms, 15.0)})
    return profile


def live_table(hub: Hub, started: float) -> Table:
    assert hub.ingest is not None
    table = Table(title=f"machinetwin demo — lab in Dalian, {time.time() - started:,.0f} s",
                  caption=f"web UI: {hub.ui_url} · Ctrl-C stops")  # fmt: skip
    for column in ("machine", "site", "online", "execution", "line", "spindle load", "alarms",
                   "latency", "batches"):  # fmt: skip
        table.add_column(column, no_wrap=True)
    with hub.ingest.lock:
        states = sorted(hub.ingest.live.values(), key=lambda s: s.machine)
        rows = []
        for s in states:
            site = s.descriptor.site if s.descriptor else "?"
            load = s.values.get("spindle.load", float("nan"))
            line = s.values.get("line", float("nan"))
            alarms = ", ".join(a.code.value for a in s.active_alarms[-3:]) or "-"
            rows.append((s.machine, site, "yes" if s.online else "NO", s.execution,
                         f"{line:.0f}" if line == line else "-",
                         f"{load:.0f} %" if load == load else "-", alarms,
                         f"{s.latency_s * 1000:.0f} ms" if s.latency_s == s.latency_s else "-",
                         str(s.batches)))  # fmt: skip
    for row in rows:
        table.add_row(*row)
    return table


class Demo:
    """The demo's parts, started and stopped together (also what the UI tests run).

    ``adapters`` maps machine id to its virtual machine, so a test can inject a fault
    through the machine, as a real fault would arise at the site.
    """

    def __init__(self, data_dir: Path, api_port: int = 8080, sites: tuple[Site, ...] = SITES,
                 speedup: float = 1.0, with_linuxcnc: bool = False,
                 with_replay: bool = False) -> None:  # fmt: skip
        self.data_dir = data_dir
        self.with_linuxcnc = with_linuxcnc
        self.with_replay = with_replay
        self.lcnc_sim = None  # the LinuxCNC simulator when --with-linuxcnc
        self.sites = sites
        self.speedup = speedup
        self.hub = Hub(HubConfig(store=data_dir / "hub.duckdb", embedded_broker_port=0,
                                 api_port=api_port))  # fmt: skip
        self.adapters: dict[str, VirtualMachineAdapter] = {}
        self.links: list[LinkEmulator] = []
        self.agents: list[EdgeAgent] = []
        self.tasks: list[asyncio.Task] = []
        self.api_task: asyncio.Task | None = None

    async def start(self) -> None:
        """A fresh data directory (a new admin password each start), hub, sites, API."""
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.data_dir.mkdir(parents=True)
        self.hub.start()
        machine = load_machine_config()
        for site in self.sites:
            link = LinkEmulator(self.hub.broker_address.host, self.hub.broker_address.port,
                                link_profile(site), seed=len(self.links))  # fmt: skip
            await link.start()
            self.links.append(link)
            settings = VirtualMachineSettings(
                site.machine_id, site.name, [EXAMPLES / p for p in site.programs],
                seed=len(self.agents), speedup=self.speedup,
                faults=FaultSchedule([parse_fault(f) for f in site.faults]),
            )  # fmt: skip
            adapter = VirtualMachineAdapter(machine, settings)
            self.adapters[site.machine_id] = adapter
            site_broker = BrokerAddress("127.0.0.1", link.port)
            controlled = with_control(adapter, self.site_control(), site_broker,
                                      base=self.site_dir(site))  # fmt: skip
            buffer = DurableBuffer(self.data_dir / f"edge-{site.name.lower()}.sqlite", 256 * 2**20)
            agent = EdgeAgent([controlled], site_broker, buffer)
            self.agents.append(agent)
            self.tasks.append(asyncio.create_task(agent.run()))
        if self.with_replay:
            await self.add_replayed_mill()
        if self.with_linuxcnc:
            await self.add_linuxcnc()
        self.api_task = asyncio.create_task(self.hub.serve_api())
        self.tasks.append(self.api_task)

    async def add_site_agent(self, adapter, site: Site, name: str) -> EdgeAgent:  # noqa: ANN001
        """An edge for ``adapter`` behind ``site``'s emulated link."""
        link = LinkEmulator(self.hub.broker_address.host, self.hub.broker_address.port,
                            link_profile(site), seed=len(self.links))  # fmt: skip
        await link.start()
        self.links.append(link)
        buffer = DurableBuffer(self.data_dir / f"edge-{name}.sqlite", 256 * 2**20)
        agent = EdgeAgent([adapter], BrokerAddress("127.0.0.1", link.port), buffer)
        self.agents.append(agent)
        self.tasks.append(asyncio.create_task(agent.run()))
        return agent

    async def add_replayed_mill(self) -> None:
        """A fourth machine in Tianjin: real UMich mill recordings played as if live."""
        from .protocols.replay import ReplayAdapter, ReplaySettings, experiment_files

        if not UMICH.is_dir():
            raise FileNotFoundError(f"--with-replay: no recordings at {UMICH}")
        settings = ReplaySettings("tianjin-umich-1", experiment_files(UMICH, [1, 6]), "Tianjin")
        await self.add_site_agent(ReplayAdapter(settings), SITES[1], "tianjin-umich")

    async def add_linuxcnc(self) -> None:
        """A real CNC controller in Harbin: headless LinuxCNC running the example parts."""
        from .protocols.linuxcnc import LinuxCNCAdapter
        from .protocols.linuxcnc.demo import run_programs, start_demo_machine

        self.lcnc_sim, settings = await asyncio.to_thread(start_demo_machine, "harbin-lcnc-1",
                                                          "Harbin")  # fmt: skip
        adapter = LinuxCNCAdapter(settings)
        await self.add_site_agent(adapter, SITES[0], "harbin-lcnc")
        programs = [EXAMPLES / p for p in ("drill.ngc", "face.ngc", "pocket.ngc")]
        self.tasks.append(asyncio.create_task(run_programs(adapter, programs)))

    def site_dir(self, site: Site) -> Path:
        """The site's own files: its permit and command ledger, as on a real edge."""
        path = self.data_dir / f"site-{site.name.lower()}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def site_control(self) -> ControlConfig:
        """Every site trusts this hub's command key; no site has granted a permit."""
        assert self.hub.commands is not None
        return ControlConfig(hub_public_key=self.hub.commands.signer.public_key_b64)

    def permit_hint(self) -> str:
        site = self.sites[0]
        return (f"remote operation is refused until a site allows it, e.g. at {site.name}: "
                f"machinetwin edge permit {site.machine_id} --minutes 30 "
                f"--file {self.site_dir(site) / 'permits.sqlite'}")  # fmt: skip

    def check(self) -> None:
        """Raise what a part died of."""
        for task in self.tasks:
            if task.done() and not task.cancelled() and task.exception():
                raise task.exception()  # type: ignore[misc]

    async def stop(self) -> None:
        self.hub.stop_api()
        if self.api_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self.api_task), 10.0)
        for agent in self.agents:
            agent.stop()
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for agent in self.agents:
            agent.close()
            agent.buffer.close()
        for link in self.links:
            await link.stop()
        if self.lcnc_sim is not None:
            await asyncio.to_thread(self.lcnc_sim.close)
        self.hub.stop()


async def run_demo(data_dir: Path, api_port: int = 8080, duration_s: float | None = None,
                   console: Console | None = None, with_linuxcnc: bool = False,
                   with_replay: bool = False) -> Hub:  # fmt: skip
    console = console or Console()
    demo = Demo(data_dir, api_port, with_linuxcnc=with_linuxcnc, with_replay=with_replay)
    started = time.time()
    try:
        await demo.start()
        hub = demo.hub
        console.print(f"[bold]machinetwin demo[/bold]: hub with embedded broker on port "
                      f"{hub.broker_address.port}; three sites on emulated links")  # fmt: skip
        console.print(login_message(hub), markup=False, highlight=False, soft_wrap=True)
        console.print(demo.permit_hint(), markup=False, highlight=False, soft_wrap=True)
        deadline = None if duration_s is None else time.monotonic() + duration_s
        with Live(live_table(hub, started), console=console, refresh_per_second=2) as live:
            while deadline is None or time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                demo.check()
                live.update(live_table(hub, started))
    finally:
        await demo.stop()
    return demo.hub


def main(data_dir: Path, api_port: int, duration_s: float | None, with_linuxcnc: bool = False,
         with_replay: bool = False) -> None:  # fmt: skip
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_demo(data_dir, api_port, duration_s, with_linuxcnc=with_linuxcnc,
                             with_replay=with_replay))  # fmt: skip
