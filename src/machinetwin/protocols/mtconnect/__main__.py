"""Run an MTConnect agent for a site's machines, or read any agent, from the command line.

    python -m machinetwin.protocols.mtconnect agent --site SITE.toml --port 5000 [--shdr-port 7878]
    python -m machinetwin.protocols.mtconnect agent --program examples/pocket.ngc
    python -m machinetwin.protocols.mtconnect read http://HOST:5000 [--device NAME] [--seconds 10]

``agent`` serves every machine of a site file (virtual machines, and machines the site
reads over MTConnect or SHDR) at ``/probe``, ``/current``, ``/sample``, ``/assets``; with
``--shdr-port`` each virtual machine is also published as an SHDR adapter (ports
counted up from it), so other MTConnect agents can take its data. ``read`` prints
what machinetwin's client makes of an agent: batches, signals and events.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from pathlib import Path

from ...model import Adapter, MachineEvent, SampleBatch
from .agent import MTConnectAgent
from .client import ClientSettings, MTConnectClientAdapter
from .shdr import ShdrServer


def _adapters(args: argparse.Namespace) -> list[Adapter]:
    from ...edge.agent import build_adapters, load_edge_config
    from ...machine import load_machine_config
    from ...machine.adapter import VirtualMachineAdapter, VirtualMachineSettings

    if args.site:
        return build_adapters(load_edge_config(args.site))
    programs = [Path(p) for p in args.program]
    settings = VirtualMachineSettings(args.machine, "lab", programs, speedup=args.speedup)
    return [VirtualMachineAdapter(load_machine_config(), settings)]


def _tools(adapters: list[Adapter]) -> dict[str, list]:
    """Tool tables by machine id, for machines that know theirs (virtual machines)."""
    tables = {}
    for a in adapters:
        config = getattr(a, "config", None)
        if config is not None:
            tables[a.descriptor.machine_id] = list(config.tools)
    return tables


async def serve(args: argparse.Namespace) -> None:
    adapters = _adapters(args)
    servers: list[ShdrServer] = []
    if args.shdr_port:
        # the SHDR servers consume their own machines; the agent reads them back over TCP
        from .shdr import ShdrAdapter, ShdrSettings

        published = []
        for k, adapter in enumerate(adapters):
            config = getattr(adapter, "config", None)
            server = ShdrServer(adapter, args.host, args.shdr_port + k,
                                tools=config.tools if config else [])  # fmt: skip
            port = await server.start()
            servers.append(server)
            print(f"SHDR adapter of {adapter.descriptor.machine_id} on {args.host}:{port}")
            published.append(ShdrAdapter(ShdrSettings("127.0.0.1", adapter.descriptor.machine_id,
                                                      port)))  # fmt: skip
        adapters = published
    # through SHDR the tool table arrives as assets; else the agent keeps it (and wear)
    tools = _tools(adapters) if not servers else {}
    agent = MTConnectAgent(adapters, buffer_size=args.buffer, tools=tools)
    async with agent.serving(args.host, args.port) as url:
        print(f"MTConnect agent at {url}/probe (instanceId {agent.instance_id}); Ctrl-C stops it")
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()
    for server in servers:
        await server.stop()


async def read(args: argparse.Namespace) -> None:
    client = MTConnectClientAdapter(ClientSettings(args.url, args.machine, device=args.device))
    deadline = time.monotonic() + args.seconds
    async for item in client.batches():
        if isinstance(item, SampleBatch):
            print(f"batch: {len(item)} rows, {len(item.columns)} signals "
                  f"(next {client.next_sequence}): {', '.join(sorted(item.columns))}")  # fmt: skip
        elif isinstance(item, MachineEvent):
            print(f"event: {item.kind} {item.value if item.alarm is None else item.alarm}")
        if time.monotonic() > deadline:
            break
    await client.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m machinetwin.protocols.mtconnect",
                                     description=__doc__.splitlines()[0])  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True)
    agent = sub.add_parser("agent", help="serve machines as an MTConnect agent")
    source = agent.add_mutually_exclusive_group(required=True)
    source.add_argument("--site", help="a site file (machinetwin edge --config format)")
    source.add_argument("--program", nargs="+", help="part programs for one virtual machine")
    agent.add_argument("--machine", default="vmc-1", help="machine id with --program")
    agent.add_argument("--speedup", type=float, default=1.0)
    agent.add_argument("--host", default="127.0.0.1")
    agent.add_argument("--port", type=int, default=5000)
    agent.add_argument("--shdr-port", type=int, default=0, help="also publish SHDR from here")
    agent.add_argument("--buffer", type=int, default=131072, help="observations held")
    reader = sub.add_parser("read", help="read any agent with machinetwin's client")
    reader.add_argument("url")
    reader.add_argument("--device", default=None)
    reader.add_argument("--machine", default="remote")
    reader.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args) if args.command == "agent" else read(args))


if __name__ == "__main__":
    main()
