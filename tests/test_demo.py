"""The one-command demo runs end to end: three sites report to the hub through their links."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import httpx
from rich.console import Console

from machinetwin.demo import SITES, run_demo
from machinetwin.hub.broker import free_port


def test_demo_three_sites_reach_the_hub(tmp_path: Path) -> None:
    port = free_port()
    seen: dict = {}

    async def scenario() -> None:
        task = asyncio.create_task(
            run_demo(
                tmp_path / "demo",
                api_port=port,
                duration_s=8.0,
                console=Console(file=io.StringIO()),
            )
        )
        await asyncio.sleep(6.0)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            seen["machines"] = (await client.get("/api/machines")).json()
            seen["ingest"] = (await client.get("/api/ingest")).json()
        await task

    asyncio.run(scenario())
    machines = {m["machine_id"]: m for m in seen["machines"]}
    assert set(machines) == {site.machine_id for site in SITES}
    assert all(m["live"]["online"] for m in machines.values())
    assert seen["ingest"]["stored"] > 3 * 20  # batches every 100 ms from each site
    assert seen["ingest"]["rejected_total"] == 0
