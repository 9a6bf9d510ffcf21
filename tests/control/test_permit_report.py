"""The site permit as the edge reports it and the hub's gate over it (issue 6): the
report's wire form, the fail-closed reading of garbage, and when the gate opens."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from machinetwin.edge.permit import PermitStore
from machinetwin.hub.commands import (
    CLOCK_SKEW_S,
    REPORT_PERIODS,
    ControlGate,
    SiteReport,
    gate_of,
)
from machinetwin.model.commands import CommandError, PermitReport

NOW = 1_800_000_000.0
finite = st.floats(-1e12, 1e12, allow_nan=False)


@given(st.booleans(), finite, st.text(max_size=64), st.text(max_size=100),
       st.floats(0.01, 3600))  # fmt: skip
def test_a_report_survives_the_wire(active: bool, expires: float, who: str, why: str,
                                    period: float) -> None:  # fmt: skip
    report = PermitReport("m-1", active, expires, who, why, NOW, period)
    assert PermitReport.decode(report.encode()) == report


@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_garbage_is_refused_with_a_reason_never_read_as_a_permit(payload: bytes) -> None:
    try:
        report = PermitReport.decode(payload)
    except CommandError as exc:
        assert "permit report" in str(exc)
        return
    assert not report.active or report.expires_at is not None  # never an open-ended permit


@pytest.mark.parametrize("change", [{"active": "yes"}, {"at": "soon"}, {"period_s": 0},
                                   {"expires_at": None}, {"machine": None, "at": float("inf")}])  # fmt: skip
def test_a_doubtful_report_grants_nothing(change: dict) -> None:
    d = {"machine": "m-1", "active": True, "expires_at": NOW + 60, "at": NOW, "period_s": 5}
    d.update(change)
    try:
        report = PermitReport.decode(json.dumps(d).encode())
    except CommandError:
        return
    assert not report.active  # "yes" is not True


@settings(max_examples=300)
@given(online=st.sampled_from([None, True, False]), active=st.booleans(),
       age=st.floats(-1, 60), left=st.floats(-60, 3600), period=st.floats(0.5, 10),
       reported=st.booleans())  # fmt: skip
def test_the_gate_opens_only_for_a_fresh_active_unexpired_permit_of_an_online_edge(
    online: bool | None, active: bool, age: float, left: float, period: float, reported: bool
) -> None:
    report = PermitReport("m-1", active, NOW + left if active else None, "ana",
                          "" if active else "no permit", NOW - age, period)  # fmt: skip
    gate = gate_of("m-1", SiteReport(report if reported else None, online), NOW)
    fresh = age <= REPORT_PERIODS * period + CLOCK_SKEW_S
    expected = reported and online is not False and active and fresh and NOW + left > NOW
    assert gate.allowed == expected
    assert gate.reason  # a closed gate always says why; an open one says until when
    if expected:
        assert gate.permit_until == NOW + left and "ana" in gate.reason
    elif online is False:
        assert "offline" in gate.reason
    elif not reported:
        assert "not reported" in gate.reason
    elif not active:
        assert gate.reason == "no permit"
    elif not fresh:
        assert "lapsed" in gate.reason
    else:
        assert "expired" in gate.reason


def test_the_edge_reports_what_its_permit_file_says(tmp_path: Path) -> None:
    store = PermitStore(tmp_path / "permits.sqlite")
    none = store.report("m-1", 5.0)
    assert not none.active and "no permit file" in none.reason
    permit = store.grant("m-1", 3)
    report = store.report("m-1", 5.0)
    assert report.active and report.expires_at == permit.expires_at
    assert report.granted_by == permit.granted_by and abs(report.at - time.time()) < 5
    store.revoke("m-1")
    assert "no remote-operation permit" in store.report("m-1", 5.0).reason
    store.grant("m-1", 3)
    (tmp_path / "permits.sqlite").chmod(0o666)  # a file others may write grants nothing
    refused = store.report("m-1", 5.0)
    assert not refused.active and "writable by group or others" in refused.reason


@settings(deadline=None)  # the first example imports NiceGUI
@given(st.text(min_size=1, max_size=80), st.booleans())
def test_the_panel_line_says_why_control_is_off_or_until_when_it_is_on(reason: str,
                                                                       allowed: bool) -> None:  # fmt: skip
    from machinetwin.ui.control import permit_line  # NiceGUI: imported by this test only

    text = permit_line(ControlGate(allowed, reason, NOW if allowed else None))
    assert text.startswith("site permit: active" if allowed else "site permit: none")
    assert reason.removeprefix("site permit active ") in text
