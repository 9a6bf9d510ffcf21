"""The machine page's control panel in real Chromium against a running demo (issue 6,
acceptance 4): a viewer cannot command; an operator cannot start a program that leaves
the travel, and starts a clean one end to end, with its audit trail on the page.

The site permit is granted as the person at the machine would: ``PermitStore.grant``
on the site's own permit file."""

from __future__ import annotations

import re
import secrets
import time

from hypothesis import given, settings
from hypothesis import strategies as st
from playwright.sync_api import Page, expect

from machinetwin.edge.permit import PermitStore
from machinetwin.hub.auth import Role
from machinetwin.hub.commands import CommandStatus
from machinetwin.model.commands import COMMANDS, new_command
from machinetwin.ui.control import audit_detail, permit_text

from .conftest import SITES, HubEnv

SITE = SITES[2]  # Dalian, the shortest link
MACHINE = SITE.machine_id

# work X450 is machine X750: past the X travel (0 … 600) on line 7
OFF_LIMITS = """G21 G17 G90 G54
T1 M6
G43 H1 G0 Z10
S6000 M3
G0 X10 Y10
G1 Z-1 F1200
G1 X450 F3000
G0 Z10
M5
M30
"""
CLEAN = """G21 G17 G90 G54 G40 G49 G80 G94
T1 M6
G43 H1 G0 Z10
S6000 M3
G0 X10 Y10
G1 Z-1 F1200
G1 X60 F3000
G1 Y40
G1 X10
G1 Y10
G0 Z10
M5
M30
"""


ARGS = {"select_program": {"program": "p.ngc"}, "feed_override": {"percent": 90},
        "rapid_override": {"percent": 90}, "spindle_override": {"percent": 90},
        "cycle_start": {"program_sha256": "0" * 64}, "mdi": {"line": "G0 X1"},
        "jog": {"axis": "x", "distance": 1.0, "feed": 100.0},
        "jog_continuous": {"axis": "x", "direction": 1, "feed": 100.0, "deadman_s": 0.1}}  # fmt: skip
NAMES = sorted(n for n in COMMANDS if n != "heartbeat")
REASONS = ("executed", "no remote-operation permit for m-1 at this site", "expired 3.0 s ago",
           "machine refused: the program is already running", "e-stop is pressed")  # fmt: skip
answers = st.lists(st.tuples(st.sampled_from(NAMES),
                             st.sampled_from(("sent", "accepted", "rejected", "done", "failed")),
                             st.sampled_from(REASONS)), max_size=8)  # fmt: skip


def _status(name: str, state: str, reason: str) -> CommandStatus:
    command = new_command("otto", "m-1", name, ARGS.get(name, {}), now=time.time())
    return CommandStatus(command, state=state, reason=reason)


@settings(max_examples=200, deadline=None)
@given(answers)
def test_the_permit_line_follows_the_newest_answer_that_passed_the_permit_check(
    history: list[tuple[str, str, str]],
) -> None:
    text = permit_text([_status(*h) for h in history])
    telling = [(n, s, r) for n, s, r in history
               if COMMANDS[n].kind in ("state", "motion") and s != "sent"
               and not (s == "rejected" and r.startswith("expired"))]  # fmt: skip
    if not telling:
        assert text is None
        return
    name, state, reason = telling[-1]
    if state == "rejected" and "permit" in reason:
        assert text is not None and "refused" in text and reason in text
    else:
        assert text is not None and "active" in text and name in text


@given(st.text(max_size=40), st.lists(st.sampled_from(("soft_limit", "tool_missing")), max_size=3))
def test_an_audited_preflight_names_program_verdict_and_finding_kinds(
    program: str, kinds: list[str]
) -> None:
    detail = {"program": program, "ok": not kinds, "findings": [{"kind": k} for k in kinds]}
    text = audit_detail("preflight", detail)
    assert len(text) <= 160
    full = f"{program}: pre-flight {'refused' if kinds else 'passed'}"
    assert text == (full + (f" ({', '.join(sorted(set(kinds)))})" if kinds else ""))[:160]


def _user(env: HubEnv, role: Role) -> tuple[str, str]:
    name, password = f"{role.name.lower()}-{secrets.token_hex(3)}", secrets.token_urlsafe(18)
    env.call(env.demo.hub.users.add_user, name, password, role)
    return name, password


def _open_as(browser, env: HubEnv, role: Role) -> Page:  # noqa: ANN001 - Playwright Browser
    """A fresh context logged in (by keyboard) as a new user of ``role``, on the machine page."""
    name, password = _user(env, role)
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.set_default_timeout(20_000)
    page.goto(f"{env.url}/login")
    page.get_by_label("User name").focus()
    page.keyboard.type(name)
    page.keyboard.press("Tab")
    page.keyboard.type(password)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{env.url}/", timeout=30_000, wait_until="commit")
    page.goto(f"{env.url}/machine/{MACHINE}")
    expect(page.get_by_test_id("control-panel")).to_be_visible()
    return page


def _command_row(page: Page, name: str):  # noqa: ANN202 - a Locator
    table = page.get_by_label("Commands sent from this page")
    return table.locator("tbody tr", has_text=name).first


def _run_preflight(page: Page, name: str, text: str) -> None:
    page.get_by_label("Program name").fill(name)
    page.get_by_label("Program text to check").fill(text)
    page.get_by_role("button", name="Run pre-flight").click()
    expect(page.get_by_test_id("preflight-verdict")).to_contain_text(name, timeout=30_000)


def test_a_viewer_sees_the_panel_disabled(browser, hub_env: HubEnv, artifacts) -> None:  # noqa: ANN001
    page = _open_as(browser, hub_env, Role.VIEWER)
    expect(page.get_by_test_id("control-role")).to_contain_text("viewing only")
    for name in ("Cycle start", "Feed hold", "Stop", "Run pre-flight", "Send MDI"):
        expect(page.get_by_role("button", name=name)).to_be_disabled()
    expect(page.get_by_role("button", name="Jog X +")).to_be_disabled()
    page.screenshot(path=str(artifacts / "control-viewer.png"), full_page=True)
    page.context.close()


def test_an_operator_is_refused_a_bad_program_and_runs_a_clean_one(
    browser,
    hub_env: HubEnv,
    artifacts,  # noqa: ANN001
) -> None:
    PermitStore(hub_env.demo.site_dir(SITE) / "permits.sqlite").grant(MACHINE, 10)
    page = _open_as(browser, hub_env, Role.OPERATOR)
    expect(page.get_by_role("button", name="Cycle start")).to_be_enabled()
    # the program the machine runs, as it told the hub, can be loaded for pre-flight
    page.get_by_role("button", name="Load the machine's program").click()
    expect(page.get_by_label("Program text to check")).to_have_value(re.compile(r"G1 X90 F4000"))

    # take the machine over from its production loop (a stopping command: no confirmation)
    page.get_by_role("button", name="Stop", exact=True).click()
    expect(_command_row(page, "stop")).to_contain_text("done")
    expect(page.get_by_test_id("value-execution")).to_have_text("STOPPED")
    # the tool may stand in the part it was cutting: up to machine Z0 by MDI (confirmed)
    page.get_by_label("MDI line").fill("G53 G0 Z0")
    page.get_by_label("MDI line").press("Enter")
    expect(page.get_by_test_id("confirm-text")).to_contain_text("G53 G0 Z0")
    page.get_by_role("button", name="Confirm").click()
    expect(_command_row(page, "mdi")).to_contain_text("done")

    _run_preflight(page, "off-limits.ngc", OFF_LIMITS)
    verdict = page.get_by_test_id("preflight-verdict")
    expect(verdict).to_contain_text("failed")
    findings = page.get_by_label("Pre-flight findings")
    expect(findings.locator("tbody tr", has_text="soft_limit")).to_contain_text("7")
    page.get_by_role("button", name="Cycle start").click()
    expect(page.get_by_test_id("confirm-text")).to_contain_text("off-limits.ngc")
    page.get_by_role("button", name="Confirm").click()
    message = page.get_by_test_id("control-message")
    expect(message).to_contain_text("refused by the hub")
    expect(message).to_contain_text("no passing pre-flight")
    expect(message).to_contain_text("line 7")
    page.screenshot(path=str(artifacts / "control-refused.png"), full_page=True)

    _run_preflight(page, "clean.ngc", CLEAN)
    expect(verdict).to_contain_text("passed")
    expect(verdict).to_contain_text(re.compile(r"estimated cycle time \d+\.\d s"))
    page.get_by_role("button", name="Select program").click()
    expect(_command_row(page, "select_program")).to_contain_text("done")
    expect(page.get_by_test_id("permit-state")).to_contain_text("active")

    # cycle start, confirmed with the keyboard
    page.get_by_role("button", name="Cycle start").click()
    confirm = page.get_by_role("button", name="Confirm")
    confirm.focus()
    page.keyboard.press("Enter")
    expect(_command_row(page, "cycle_start")).to_contain_text("done")
    expect(message).to_contain_text("cycle_start: done")  # announced in the live region
    execution = page.get_by_test_id("value-execution")
    expect(execution).to_have_text("ACTIVE", timeout=10_000)
    expect(page.get_by_test_id("program-name")).to_contain_text("clean.ngc", timeout=10_000)
    lines = _lines_seen(page, until=time.monotonic() + 25.0)
    assert len(lines) >= 3, f"the program's line did not advance: {lines}"
    page.screenshot(path=str(artifacts / "control-running.png"), full_page=True)

    audit = page.get_by_test_id("audit-table")
    for text in ("cycle_start", "select_program", "preflight", "refused", "done"):
        expect(audit).to_contain_text(text, timeout=10_000)
    expect(page.get_by_test_id("command-rtt")).to_contain_text(re.compile(r"\d+ ms"))
    expect(page.get_by_test_id("latency")).to_contain_text(re.compile(r"\d+ ms"))
    page.screenshot(path=str(artifacts / "control-audit.png"), full_page=True)
    page.context.close()


def _lines_seen(page: Page, until: float) -> list[str]:
    """The distinct program lines the page shows while the program runs (until it
    completes or time runs out)."""
    seen: list[str] = []
    execution, line = page.get_by_test_id("value-execution"), page.get_by_test_id("value-line")
    while time.monotonic() < until:
        text = line.inner_text()
        if text not in seen:
            seen.append(text)
        if execution.inner_text() == "PROGRAM_COMPLETED":
            break
        page.wait_for_timeout(200)
    return seen
