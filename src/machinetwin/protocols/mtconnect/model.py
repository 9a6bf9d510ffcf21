"""The MTConnect device model of a machine, and the map between it and canonical signals.

One table (:data:`SIGNAL_MAP`) says which MTConnect data item (component, category,
type, subType, units) carries which canonical signal and how the units convert
(``mtconnect_value = canonical_value * scale``). The agent builds its devices from it
and the client adapter reads any agent's probe through it, so the two directions
cannot drift apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ...model import AlarmCode, Execution, MachineDescriptor, Mode

NS_VERSION = "2.0"
SCHEMA_VERSION = "2.0"
AGENT_VERSION = "2.0.0.0"

# value vocabularies of the controlled EVENT types; index = canonical float code
EXECUTION_VALUES = tuple(e.name for e in Execution)
MODE_VALUES = ("AUTOMATIC", "MANUAL_DATA_INPUT", "MANUAL")  # model.Mode order
assert [m.value for m in Mode] == [0, 1, 2]
ESTOP_VALUES = ("ARMED", "TRIGGERED")
AVAILABILITY_VALUES = ("AVAILABLE", "UNAVAILABLE")

# values other agents send that our vocabulary names differently
FOREIGN_VALUES: dict[str, dict[str, str]] = {
    "EXECUTION": {
        "FEED_HOLD": "INTERRUPTED",
        "OPTIONAL_STOP": "STOPPED",
        "PROGRAM_STOPPED": "STOPPED",
        "PROGRAM_OPTIONAL_STOP": "STOPPED",
        "WAIT": "ACTIVE",
    },  # fmt: skip
    "CONTROLLER_MODE": {"SEMI_AUTOMATIC": "AUTOMATIC", "EDIT": "MANUAL"},
}

CONDITION_LEVELS = ("NORMAL", "WARNING", "FAULT", "UNAVAILABLE")


@dataclass(frozen=True, slots=True)
class Mapping:
    """One canonical signal as an MTConnect data item (``{a}`` = axis letter)."""

    signal: str
    component: str  # "Device", "Linear", "Rotary", "Controller", "Path"
    category: str  # SAMPLE, EVENT, CONDITION
    type: str
    sub_type: str | None = None
    units: str | None = None
    scale: float = 1.0
    values: tuple[str, ...] | None = None  # enumerated EVENT vocabulary
    local_id: str = ""
    representation: str | None = None  # TIME_SERIES for waveforms


SIGNAL_MAP: tuple[Mapping, ...] = (
    Mapping("{a}.pos", "Linear", "SAMPLE", "POSITION", "ACTUAL", "MILLIMETER", local_id="{a}pos"),
    Mapping(
        "{a}.pos_cmd", "Linear", "SAMPLE", "POSITION", "COMMANDED", "MILLIMETER", local_id="{a}cmd"
    ),  # fmt: skip
    Mapping("{a}.load", "Linear", "SAMPLE", "LOAD", None, "PERCENT", local_id="{a}load"),
    Mapping(
        "spindle.speed",
        "Rotary",
        "SAMPLE",
        "ROTARY_VELOCITY",
        "ACTUAL",
        "REVOLUTION/MINUTE",
        local_id="sspeed",
    ),  # fmt: skip
    Mapping(
        "spindle.speed_cmd",
        "Rotary",
        "SAMPLE",
        "ROTARY_VELOCITY",
        "COMMANDED",
        "REVOLUTION/MINUTE",
        local_id="scmd",
    ),  # fmt: skip
    Mapping("spindle.load", "Rotary", "SAMPLE", "LOAD", None, "PERCENT", local_id="sload"),
    Mapping("spindle.power", "Rotary", "SAMPLE", "WATTAGE", None, "WATT", local_id="spower"),
    Mapping("spindle.temp", "Rotary", "SAMPLE", "TEMPERATURE", None, "CELSIUS", local_id="stemp"),
    # the spindle vibration waveform: one observation per window, values in mm/s^2
    Mapping(
        "spindle.vib",
        "Rotary",
        "SAMPLE",
        "ACCELERATION",
        None,
        "MILLIMETER/SECOND^2",
        1000.0,
        local_id="svib",
        representation="TIME_SERIES",
    ),  # fmt: skip
    Mapping(
        "spindle_override",
        "Rotary",
        "EVENT",
        "ROTARY_VELOCITY_OVERRIDE",
        None,
        "PERCENT",
        local_id="sovr",
    ),  # fmt: skip
    Mapping("mode", "Controller", "EVENT", "CONTROLLER_MODE", values=MODE_VALUES, local_id="mode"),
    Mapping(
        "estop", "Controller", "EVENT", "EMERGENCY_STOP", values=ESTOP_VALUES, local_id="estop"
    ),  # fmt: skip
    Mapping(
        "execution", "Path", "EVENT", "EXECUTION", values=EXECUTION_VALUES, local_id="execution"
    ),  # fmt: skip
    Mapping("program", "Path", "EVENT", "PROGRAM", local_id="program"),
    Mapping("line", "Path", "EVENT", "LINE_NUMBER", "ABSOLUTE", local_id="line"),
    Mapping("tool", "Path", "EVENT", "TOOL_NUMBER", local_id="tool"),
    Mapping("part_count", "Path", "EVENT", "PART_COUNT", local_id="parts"),
    # MTConnect feed rates are mm/s; the canonical ones are mm/min
    Mapping(
        "feed",
        "Path",
        "SAMPLE",
        "PATH_FEEDRATE",
        "ACTUAL",
        "MILLIMETER/SECOND",
        1 / 60,
        local_id="feed",
    ),  # fmt: skip
    Mapping(
        "feed_cmd",
        "Path",
        "SAMPLE",
        "PATH_FEEDRATE",
        "COMMANDED",
        "MILLIMETER/SECOND",
        1 / 60,
        local_id="feedcmd",
    ),  # fmt: skip
    Mapping(
        "feed_override",
        "Path",
        "EVENT",
        "PATH_FEEDRATE_OVERRIDE",
        "PROGRAMMED",
        "PERCENT",
        local_id="fovr",
    ),  # fmt: skip
    Mapping(
        "rapid_override",
        "Path",
        "EVENT",
        "PATH_FEEDRATE_OVERRIDE",
        "RAPID",
        "PERCENT",
        local_id="rovr",
    ),  # fmt: skip
    Mapping("power", "Device", "SAMPLE", "WATTAGE", None, "WATT", local_id="power"),
    Mapping(
        "energy", "Device", "SAMPLE", "ELECTRICAL_ENERGY", None, "WATT_SECOND", local_id="energy"
    ),  # fmt: skip
)

# condition data items: (local id, component, type); alarms are routed to them below
CONDITIONS: tuple[tuple[str, str, str], ...] = (
    ("{a}servo", "Linear", "ACTUATOR"),
    ("sloadc", "Rotary", "LOAD"),
    ("stempc", "Rotary", "TEMPERATURE"),
    ("system", "Controller", "SYSTEM"),
    ("logic", "Path", "LOGIC_PROGRAM"),
)
_ALARM_CONDITION: dict[AlarmCode, str] = {
    AlarmCode.SOFT_LIMIT: "{a}servo", AlarmCode.FOLLOWING_ERROR: "{a}servo",
    AlarmCode.DRIVE_FAULT: "{a}servo", AlarmCode.SPINDLE_OVERLOAD: "sloadc",
    AlarmCode.OVER_TEMPERATURE: "stempc", AlarmCode.PROGRAM_ERROR: "logic",
}  # fmt: skip
# a foreign agent's condition whose native code is not one of ours: by condition type
CONDITION_ALARM: dict[str, AlarmCode] = {
    "ACTUATOR": AlarmCode.DRIVE_FAULT, "LOAD": AlarmCode.SPINDLE_OVERLOAD,
    "TEMPERATURE": AlarmCode.OVER_TEMPERATURE, "LOGIC_PROGRAM": AlarmCode.PROGRAM_ERROR,
    "MOTION_PROGRAM": AlarmCode.PROGRAM_ERROR, "COMMUNICATIONS": AlarmCode.LINK_DOWN,
    "POSITION": AlarmCode.SOFT_LIMIT,
}  # fmt: skip


@dataclass(slots=True)
class DataItem:
    """One data item of a device as the agent serves it."""

    id: str
    category: str
    type: str
    component_id: str
    sub_type: str | None = None
    units: str | None = None
    name: str | None = None
    signal: str | None = None
    scale: float = 1.0
    values: tuple[str, ...] | None = None
    representation: str | None = None
    index: int = -1  # position in the agent's item table

    @property
    def kind(self) -> str:
        """How the ring buffer holds it: num, enum, text, cond or series."""
        if self.category == "CONDITION":
            return "cond"
        if self.representation == "TIME_SERIES":
            return "series"
        if self.values is not None:
            return "enum"
        if self.category == "SAMPLE" or self.type in _NUMERIC_EVENTS:
            return "num"
        return "text"

    @property
    def element(self) -> str:
        """The element name of its observations (POSITION -> Position)."""
        series = "TimeSeries" if self.representation == "TIME_SERIES" else ""
        return element_name(self.type) + series


_NUMERIC_EVENTS = {"LINE_NUMBER", "TOOL_NUMBER", "PART_COUNT", "PATH_FEEDRATE_OVERRIDE",
                   "ROTARY_VELOCITY_OVERRIDE", "LINE"}  # fmt: skip


@dataclass(slots=True)
class Component:
    type: str
    id: str
    name: str | None = None
    items: list[DataItem] = field(default_factory=list)
    children: list[Component] = field(default_factory=list)

    def walk(self) -> list[Component]:
        out = [self]
        for c in self.children:
            out.extend(c.walk())
        return out


@dataclass(slots=True)
class Device:
    """An MTConnect Device: the root component plus its identity."""

    name: str
    uuid: str
    root: Component

    @property
    def id(self) -> str:
        return self.root.id

    def components(self) -> list[Component]:
        return self.root.walk()

    def items(self) -> list[DataItem]:
        return [i for c in self.components() for i in c.items]


def element_name(type_: str) -> str:
    """MTConnect observation element name from a data item type (with prefix kept)."""
    prefix, _, bare = type_.rpartition(":")
    name = "".join(w.capitalize() for w in bare.split("_"))
    return f"{prefix}:{name}" if prefix else name


def xml_id(text: str) -> str:
    """An XML ID (NCName) from a machine id: keep safe characters, start with a letter."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", text)
    return safe if re.match(r"[A-Za-z_]", safe) else f"_{safe}"


def build_device(descriptor: MachineDescriptor) -> Device:
    """The MTConnect device of a machine: axes, spindle, controller and path."""
    dev = xml_id(descriptor.machine_id)
    root = Component("Device", dev, descriptor.machine_id)
    axes = Component("Axes", f"{dev}_axes")
    linears = {a: Component("Linear", f"{dev}_{a}", a.upper()) for a in descriptor.axes}
    rotary = Component("Rotary", f"{dev}_c", "C")
    axes.children = [*linears.values(), rotary]
    controller = Component("Controller", f"{dev}_cont")
    path = Component("Path", f"{dev}_path")
    controller.children = [path]
    root.children = [axes, controller]
    by_kind = {"Device": [root], "Rotary": [rotary], "Controller": [controller], "Path": [path]}
    root.items.append(DataItem(f"{dev}_avail", "EVENT", "AVAILABILITY", dev,
                               values=AVAILABILITY_VALUES))  # fmt: skip
    rotary.items.append(DataItem(f"{dev}_rmode", "EVENT", "ROTARY_MODE", rotary.id))
    for m in SIGNAL_MAP:
        for axis, comp in _targets(m.component, linears, by_kind):
            sig = m.signal.format(a=axis)
            comp.items.append(DataItem(
                f"{dev}_{m.local_id.format(a=axis)}", m.category, m.type, comp.id, m.sub_type,
                m.units, name=sig, signal=sig, scale=m.scale, values=m.values,
                representation=m.representation))  # fmt: skip
    for local, kind, type_ in CONDITIONS:
        for axis, comp in _targets(kind, linears, by_kind):
            comp.items.append(DataItem(f"{dev}_{local.format(a=axis)}", "CONDITION", type_,
                                       comp.id))  # fmt: skip
    return Device(descriptor.machine_id, descriptor.machine_id, root)


def _targets(kind: str, linears: dict[str, Component],
             by_kind: dict[str, list[Component]]) -> list[tuple[str, Component]]:  # fmt: skip
    if kind == "Linear":
        return list(linears.items())
    return [("", c) for c in by_kind[kind]]


def alarm_condition_id(device: Device, code: AlarmCode | str, source: str) -> str:
    """The condition data item an alarm of ours is reported on (controller SYSTEM by default)."""
    local = _ALARM_CONDITION.get(code, "system")  # type: ignore[call-overload]
    if "{a}" in local:
        if source not in ("x", "y", "z"):
            local = "system"
        local = local.format(a=source)
    return f"{device.id}_{local}"
