"""Condition monitoring: signal features, bearing diagnosis and tool condition.

Pure functions over numpy arrays (windows as rows), so the hub's analytics
worker can run them on stored batches; file readers for the evaluation data
sets live in :mod:`.datasets`, the ``machinetwin analyze`` commands in :mod:`.cli`.

Names are imported on first use (PEP 562): the ``machinetwin`` command line
imports this package, and scipy.signal alone would add seconds to every command.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "LABELS": "bearing_diagnosis",
    "BearingDiagnosis": "bearing_diagnosis",
    "LearnedBearingModel": "bearing_diagnosis",
    "PhysicsScores": "bearing_diagnosis",
    "diagnose_bearing": "bearing_diagnosis",
    "learned_features": "bearing_diagnosis",
    "physics_scores": "bearing_diagnosis",
    "BearingError": "bearings",
    "BearingGeometry": "bearings",
    "DefectOrders": "bearings",
    "bearing": "bearings",
    "known_bearings": "bearings",
    "SignalError": "features",
    "band_energies": "features",
    "envelope_spectra": "features",
    "envelope_spectrum": "features",
    "frame": "features",
    "order_spectrum_db": "features",
    "spectrum": "features",
    "time_features": "features",
    "ToolConditionModel": "tool_condition",
    "bundled_model": "tool_condition",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{module}", __name__), name)
