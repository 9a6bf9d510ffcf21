"""The OPC UA address space of a machine (OPC 40501-1 v1.01, umati) and its canonical signals.

One table (:data:`SIGNAL_MAP`) says which variable, by BrowseName path below the
``MachineToolType`` instance, carries which canonical signal and how its value converts
(``opcua_value = canonical_value * scale``). The server builds its variables from it and
the client adapter resolves any server's machine through it, so the two cannot drift.

Names follow the specification: ``Monitoring/<Channel>`` is a ``ChannelMonitoringType``
(ChannelState, ChannelMode, FeedOverride, RapidOverride), ``Monitoring/<Spindle>`` a
``SpindleMonitoringType`` (IsRotating, Override), ``Production/ActiveProgram`` a
``ProductionActiveProgramType`` (Name, NumberInList, State/CurrentState),
``Equipment/Tools/<Tool>/ToolLife/<ToolLifeEntry>`` a ``ToolLifeType``,
``Notification/Messages`` the notifier of ``AlertType`` events (ErrorCode). What the
companion specification does not model (axis positions, loads, power, ...) lives in
machinetwin's own namespace below ``Telemetry``, one variable per canonical signal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...model import AlarmCode, Execution, Severity

NS_MACHINE_TOOL = "http://opcfoundation.org/UA/MachineTool/"
NS_DI = "http://opcfoundation.org/UA/DI/"
NS_MACHINERY = "http://opcfoundation.org/UA/Machinery/"
NS_IA = "http://opcfoundation.org/UA/IA/"
NS_MACHINETWIN = "urn:machinetwin:opcua"

# namespace keys used in browse paths: "0" is the OPC UA base namespace
MT, DI, MACHINERY, IA, TWIN, UA = "mt", "di", "machinery", "ia", "twin", "ua"
NAMESPACES = {MT: NS_MACHINE_TOOL, DI: NS_DI, MACHINERY: NS_MACHINERY, IA: NS_IA,
              TWIN: NS_MACHINETWIN}  # fmt: skip

CHANNEL = "Channel1"  # the instance names of the <Channel> and <Spindle> placeholders
SPINDLE = "Spindle"

# the enumeration DataTypes (12.1, 12.2): ChannelState; ChannelMode, whose first three
# are model.Mode's AUTOMATIC, MDI, MANUAL one to one
ENUMS = {
    "ChannelState": ("Active", "Interrupted", "Reset"),
    "ChannelMode": ("Automatic", "MdaMdi", "JogManual", "JogIncrement", "TeachingHandle",
                    "Remote", "Reference", "Other"),
}  # fmt: skip

# Instance declarations of the types, bottom-up (a component's type is declared before
# it): (type, namespace key, BrowseName, object|variable|property, its type or DataType
# or VariantType, mandatory). What OPC 40501-1 makes Mandatory (M) and the Optional (O)
# members this server fills.
DECLARATIONS: tuple[tuple[str, str, str, str, str, bool], ...] = (
    ("ElementMonitoringType", MT, "Name", "property", "String", True),
    ("ChannelMonitoringType", MT, "ChannelState", "variable", "ChannelState", True),
    ("ChannelMonitoringType", MT, "ChannelMode", "variable", "ChannelMode", True),
    ("ChannelMonitoringType", MT, "FeedOverride", "variable", "Double", True),
    ("ChannelMonitoringType", MT, "RapidOverride", "variable", "Double", False),
    ("SpindleMonitoringType", MT, "IsRotating", "variable", "Boolean", True),
    ("SpindleMonitoringType", MT, "Override", "variable", "Double", False),
    ("ProductionProgramType", MT, "Name", "property", "String", True),
    ("ProductionProgramType", UA, "NumberInList", "property", "UInt16", True),
    ("ProductionActiveProgramType", MT, "State", "object", "ProductionProgramStateMachineType",
     True),
    ("ProductionType", MT, "ActiveProgram", "object", "ProductionActiveProgramType", True),
    ("BasicStacklightType", IA, "StacklightMode", "variable", "Int32", True),
    ("ToolType", MT, "ControlIdentifier1", "variable", "UInt32", True),
    ("ToolType", MT, "ControlIdentifierInterpretation", "variable", "Int32", True),
    ("NotificationType", MT, "Messages", "object", "BaseObjectType", False),
    ("MachineToolType", DI, "Identification", "object", "MachineToolIdentificationType", True),
    ("MachineToolType", MT, "Monitoring", "object", "MonitoringType", True),
    ("MachineToolType", MT, "Production", "object", "ProductionType", True),
    ("MachineToolType", MT, "Notification", "object", "NotificationType", True),
    ("MachineToolType", MT, "Equipment", "object", "EquipmentType", False),
)  # fmt: skip

# ChannelState (12.1) and ChannelMode (12.2) values; model.Mode maps one to one
CHANNEL_ACTIVE, CHANNEL_INTERRUPTED, CHANNEL_RESET = 0, 1, 2
# the states of ProductionProgramStateMachineType (its CurrentState, LocalizedText)
PROGRAM_STATES = ("Initializing", "Running", "Ended", "Interrupted", "Aborted")

# IA SignalColor values of the stacklight's lamps (top to bottom), and its mode Segmented
STACK_COLORS = (("Red", 1), ("Yellow", 4), ("Green", 2))
STACKLIGHT_SEGMENTED = 0

Path = tuple[tuple[str, str], ...]  # ((namespace key, BrowseName), ...) below the machine


@dataclass(frozen=True, slots=True)
class Mapping:
    """One canonical signal as a variable of the machine's address space."""

    signal: str
    path: Path
    vtype: str  # asyncua VariantType name: Double, Int32, UInt32, Boolean
    scale: float = 1.0
    datatype: str | None = None  # an enumeration DataType of ENUMS (values as Int32)


def _p(*parts: str) -> Path:
    return tuple((ns, name) for ns, name in (part.split(":", 1) for part in parts))


def _telemetry(signal: str) -> Mapping:
    return Mapping(signal, _p("twin:Telemetry", f"twin:{signal}"), "Double")


_MON = "mt:Monitoring"
SIGNAL_MAP: tuple[Mapping, ...] = (
    # the companion specification's own variables
    Mapping("mode", _p(_MON, f"mt:{CHANNEL}", "mt:ChannelMode"), "Int32", datatype="ChannelMode"),
    Mapping("feed_override", _p(_MON, f"mt:{CHANNEL}", "mt:FeedOverride"), "Double"),
    Mapping("rapid_override", _p(_MON, f"mt:{CHANNEL}", "mt:RapidOverride"), "Double"),
    Mapping("spindle_override", _p(_MON, f"mt:{SPINDLE}", "mt:Override"), "Double"),
    # machinetwin's namespace: what 40501-1 leaves to other companion specifications
    *(_telemetry(f"{a}.{q}") for a in "xyz" for q in ("pos", "pos_cmd", "ferr", "load")),
    *(
        _telemetry(s)
        for s in (
            "spindle.speed",
            "spindle.speed_cmd",
            "spindle.load",
            "spindle.power",
            "spindle.temp",
            "feed",
            "feed_cmd",
            "power",
            "energy",
            "line",
            "tool",
            "part_count",
            "estop",
            "tool_wear",
            "mrr",
            "cutting_force",
        )
    ),  # fmt: skip
)

CHANNEL_STATE = _p(_MON, f"mt:{CHANNEL}", "mt:ChannelState")
IS_ROTATING = _p(_MON, f"mt:{SPINDLE}", "mt:IsRotating")
PROGRAM_NAME = _p("mt:Production", "mt:ActiveProgram", "mt:Name")
PROGRAM_STATE = _p("mt:Production", "mt:ActiveProgram", "mt:State", "ua:CurrentState")
MESSAGES = _p("mt:Notification", "mt:Messages")
TOOLS = _p("mt:Equipment", "mt:Tools")
TOOL_LIFE_ENTRY = "FlankWear"  # the <ToolLifeEntry> of every tool: VB wear in mm


def execution_to_opcua(execution: Execution) -> tuple[int, str]:
    """(ChannelState, ActiveProgram state) of an execution state.

    ChannelState alone has three values for our five; the program's state machine
    tells the rest (a finished program Ended, a stopped one Aborted), so the client
    gets back exactly what the machine said."""
    return {
        Execution.ACTIVE: (CHANNEL_ACTIVE, "Running"),
        Execution.INTERRUPTED: (CHANNEL_INTERRUPTED, "Interrupted"),
        Execution.READY: (CHANNEL_RESET, "Initializing"),
        Execution.STOPPED: (CHANNEL_RESET, "Aborted"),
        Execution.PROGRAM_COMPLETED: (CHANNEL_RESET, "Ended"),
    }[execution]


def execution_from_opcua(channel_state: int | None, program_state: str | None) -> Execution | None:
    """The execution state a server's channel and program state mean (None: unknown)."""
    if channel_state == CHANNEL_ACTIVE:
        return Execution.ACTIVE
    if channel_state == CHANNEL_INTERRUPTED:
        return Execution.INTERRUPTED
    if channel_state != CHANNEL_RESET:
        return None
    return {"Ended": Execution.PROGRAM_COMPLETED, "Aborted": Execution.STOPPED}.get(
        program_state or "", Execution.READY
    )


def stacklight(execution: Execution | None, alarm_active: bool) -> tuple[bool, bool, bool]:
    """Red, yellow, green lamps: red on an active alarm, green while cutting, yellow when
    the program waits (feed hold) or the machine is idle."""
    red = alarm_active
    green = execution == Execution.ACTIVE and not alarm_active
    return red, not red and not green, green


_SEVERITY = {Severity.INFO: 100, Severity.WARNING: 400, Severity.FAULT: 700,
             Severity.CRITICAL: 900}  # fmt: skip


def severity_to_opcua(severity: Severity) -> int:
    return _SEVERITY[severity]


def severity_from_opcua(value: int) -> Severity:
    """OPC UA severity (1..1000) into our four classes, by the midpoints between them."""
    if value >= 800:
        return Severity.CRITICAL
    if value >= 550:
        return Severity.FAULT
    if value >= 250:
        return Severity.WARNING
    return Severity.INFO


def alarm_code(error_code: str) -> tuple[AlarmCode, bool]:
    """Our alarm code for an ErrorCode, and whether it was one of ours (a foreign
    manufacturer's code is reported as a drive fault that keeps its code in the message)."""
    try:
        return AlarmCode(error_code), True
    except ValueError:
        return AlarmCode.DRIVE_FAULT, False


def last_values(columns: dict[str, np.ndarray], signals: list[str]) -> dict[str, float]:
    """Each present signal's newest finite value (what a variable shows now).

    One 2-D pass over the present columns (a batch carries tens of signals, each
    written ten times a second per machine: per-column numpy calls were the server's
    largest own cost)."""
    names = [s for s in signals if s in columns and len(columns[s])]
    if not names:
        return {}
    lengths = {len(columns[s]) for s in names}
    if len(lengths) != 1:  # ragged columns (not a SampleBatch): one at a time
        return {k: v for s in names for k, v in last_values({s: columns[s]}, [s]).items()}
    block = np.stack([columns[s] for s in names])
    finite = np.isfinite(block)
    last = block.shape[1] - 1 - np.argmax(finite[:, ::-1], axis=1)
    values = block[np.arange(len(names)), last]
    present = finite.any(axis=1)
    return dict(zip(np.asarray(names)[present].tolist(), values[present].tolist(), strict=True))
