"""The dead-man at the edge, on the real virtual machine, without a broker: heartbeats
keep remote motion alive; replayed, foreign or late ones do not; silence holds feed."""

from __future__ import annotations

import asyncio
import time

from control_support import MACHINE, Site

from machinetwin.model import AdapterCommand, Execution
from machinetwin.model.commands import new_command

PERIOD_S = 0.05


async def start_motion(site: Site) -> str:
    """Hold the running program, then resume it remotely under a dead-man."""
    site.permits.grant(MACHINE, 5)
    site.step(3)
    await site.adapter.command(AdapterCommand("feed_hold"))
    site.step()
    c = site.command("resume", {"deadman_s": PERIOD_S})
    await site.executor.handle(site.signer.sign(c))
    assert site.answers(c.id) == ["accepted"]
    assert site.adapter.sim.controller.state.execution == Execution.ACTIVE
    return c.id


def beat(site: Site, motion: str, issuer: str = "alice", now: float | None = None) -> bytes:
    hb = new_command(issuer, MACHINE, "heartbeat", {"motion": motion},
                     now=time.time() if now is None else now, ttl_s=2.0)  # fmt: skip
    return site.signer.sign(hb)


def test_heartbeats_keep_motion_alive_and_silence_holds_feed(site: Site) -> None:
    async def scenario() -> tuple[float, float]:
        motion = await start_motion(site)
        for _ in range(10):  # 5 periods' worth of beats, each in time
            await asyncio.sleep(PERIOD_S * 0.8)
            await site.executor.handle(beat(site, motion))
        assert site.executor.holds == []
        last = time.monotonic()
        while not site.executor.holds and time.monotonic() - last < 2:
            await asyncio.sleep(0.005)
        return last, site.executor.holds[0] if site.executor.holds else float("inf")

    last, held = asyncio.run(scenario())
    assert site.adapter.sim.controller.state.execution == Execution.INTERRUPTED
    # never before two periods of silence (the bound itself is checked end to end)
    assert held - last >= 2 * PERIOD_S * 0.95
    assert site.replies[-1].status == "done" and "dead-man" in site.replies[-1].reason
    assert site.executor.deadman is None


def test_replayed_foreign_and_stale_heartbeats_do_not_keep_it_alive(site: Site) -> None:
    async def scenario() -> None:
        motion = await start_motion(site)
        first = beat(site, motion)
        await site.executor.handle(first)
        assert site.executor.counts["heartbeat"] == 1
        end = time.monotonic() + 4 * PERIOD_S
        while time.monotonic() < end and not site.executor.holds:
            await site.executor.handle(first)  # the same beat again and again
            await site.executor.handle(beat(site, motion, issuer="mallory"))
            await site.executor.handle(beat(site, motion, now=time.time() - 60))  # expired
            await asyncio.sleep(PERIOD_S / 5)
        assert site.executor.holds, "replays kept the motion alive"

    asyncio.run(scenario())
    assert site.executor.counts["heartbeat"] == 1
    assert site.executor.counts["bad_heartbeat"] > 0
    assert site.adapter.sim.controller.state.execution == Execution.INTERRUPTED


def test_revoking_the_permit_holds_at_the_next_heartbeat(site: Site) -> None:
    async def scenario() -> None:
        motion = await start_motion(site)
        site.permits.revoke(MACHINE)
        await site.executor.handle(beat(site, motion))

    asyncio.run(scenario())
    assert len(site.executor.holds) == 1
    assert "permit" in site.replies[-1].reason
    assert site.adapter.sim.controller.state.execution == Execution.INTERRUPTED


def test_a_second_motion_is_refused_while_one_runs_and_stop_ends_it(site: Site) -> None:
    async def scenario() -> None:
        await start_motion(site)
        second = site.command("jog", {"axis": "x", "distance": 1.0, "feed": 100.0})
        await site.executor.handle(site.signer.sign(second))
        assert site.answers(second.id) == ["rejected"] and "still active" in site.reason(second.id)
        stop = site.command("feed_hold")
        await site.executor.handle(site.signer.sign(stop))
        assert site.executor.deadman is None
        await asyncio.sleep(3 * PERIOD_S)

    asyncio.run(scenario())
    assert site.executor.holds == []  # the operator's own hold ended the dead-man
