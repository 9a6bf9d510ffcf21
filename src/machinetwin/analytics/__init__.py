"""Condition monitoring: signal features, bearing diagnosis and tool condition.

Pure functions over numpy arrays (windows as rows), so the hub's analytics
worker can run them on stored batches; file readers for the evaluation data
sets live in :mod:`.datasets`, the ``machinetwin analyze`` commands in :mod:`.cli`.
"""

from .bearing_diagnosis import (
    LABELS,
    BearingDiagnosis,
    LearnedBearingModel,
    PhysicsScores,
    diagnose_bearing,
    learned_features,
    physics_scores,
)
from .bearings import BearingError, BearingGeometry, DefectOrders, bearing, known_bearings
from .features import (
    SignalError,
    band_energies,
    envelope_spectra,
    envelope_spectrum,
    frame,
    spectrum,
    time_features,
)

__all__ = [
    "LABELS",
    "BearingDiagnosis",
    "BearingError",
    "BearingGeometry",
    "DefectOrders",
    "LearnedBearingModel",
    "PhysicsScores",
    "SignalError",
    "band_energies",
    "bearing",
    "diagnose_bearing",
    "envelope_spectra",
    "envelope_spectrum",
    "frame",
    "known_bearings",
    "learned_features",
    "physics_scores",
    "spectrum",
    "time_features",
]
