"""The shared vocabulary of machinetwin: signals, units, sample batches, alarms.

Every part imports this package and nothing else from its neighbours (besides the
named interfaces ``Adapter``, ``Store`` and the canonical machining operations).
"""

from .adapter import Adapter, AdapterCommand, MachineDescriptor, MachineEvent
from .alarms import Alarm, AlarmCode, Severity
from .batch import SampleBatch, Waveform
from .signals import SIGNALS, Execution, Mode, Signal, signal_unit

__all__ = [
    "SIGNALS",
    "Adapter",
    "AdapterCommand",
    "MachineDescriptor",
    "MachineEvent",
    "Alarm",
    "AlarmCode",
    "Execution",
    "Mode",
    "SampleBatch",
    "Severity",
    "Signal",
    "Waveform",
    "signal_unit",
]
