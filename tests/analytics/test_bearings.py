"""Bearing kinematics: the published CWRU figures, identities, the table and errors."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from machinetwin.analytics.bearings import BearingError, BearingGeometry, bearing, known_bearings
from machinetwin.machine.vibration import bearing_orders


def test_6205_matches_the_cwru_published_orders() -> None:
    # CWRU's data page: BPFI 5.4152, BPFO 3.5848, BSF 2.357, FTF 0.39828 × shaft speed.
    o = bearing("6205-2RS").orders()
    assert o.bpfi == pytest.approx(5.4152, abs=2e-3)
    assert o.bpfo == pytest.approx(3.5848, abs=2e-3)
    assert o.bsf == pytest.approx(2.357, abs=2e-3)
    assert o.ftf == pytest.approx(0.39828, abs=2e-4)


def test_designations_are_case_and_seal_insensitive() -> None:
    assert bearing("6205") == bearing("6205-2rs") == bearing(" 6205-2RS ")
    assert "6205-2RS" in known_bearings() and len(known_bearings()) >= 6


def test_unknown_bearing_names_it_and_lists_known_ones() -> None:
    with pytest.raises(BearingError, match=r"unknown bearing '9999'.*6205-2RS"):
        bearing("9999")


@pytest.mark.parametrize(
    ("args", "what"),
    [((2, 5.0, 30.0), "balls=2"), ((9, 40.0, 30.0), "ball diameter"), ((9, 5, 30, 95), "contact")],
)
def test_impossible_geometry_is_refused(args: tuple, what: str) -> None:
    with pytest.raises(BearingError, match=what):
        BearingGeometry("X", *args)


geometries = st.builds(
    BearingGeometry,
    st.just("test"),
    st.integers(3, 40),
    st.floats(1.0, 30.0),
    st.floats(31.0, 300.0),
    st.floats(0.0, 45.0),
)


@given(geometries)
def test_kinematic_identities(g: BearingGeometry) -> None:
    o = g.orders()
    assert o.bpfo + o.bpfi == pytest.approx(g.balls)  # n/2(1−r) + n/2(1+r)
    assert o.ftf * g.balls == pytest.approx(o.bpfo)  # balls pass the outer race with the cage
    assert 0 < o.ftf < 0.5 and 0 < o.bpfo < o.bpfi
    # The virtual machine's own formula agrees, in Hz too.
    sim = bearing_orders(g.balls, g.ball_diameter_mm, g.pitch_diameter_mm, g.contact_angle_deg)
    assert (o.bpfo, o.bpfi, o.bsf, o.ftf) == pytest.approx((sim.bpfo, sim.bpfi, sim.bsf, sim.ftf))
    assert o.hz(25.0).bpfi == pytest.approx(25.0 * o.bpfi)
    assert math.isfinite(o.bsf) and o.bsf > 0
