"""Reading any MTConnect agent's documents: probe -> canonical map, streams -> columns.

The probe's data items are matched to canonical signals through :data:`.model.SIGNAL_MAP`
(by component, type, subType; the older names LINE and SPINDLE_SPEED are accepted). A
streams document becomes numpy columns per signal plus the few text/condition
observations; XML is parsed with the standard library (namespaces of any version).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

import numpy as np

from .documents import parse_iso_times
from .model import CONDITION_LEVELS, FOREIGN_VALUES, SIGNAL_MAP, Mapping

_TYPE_ALIASES = {"LINE": "LINE_NUMBER", "SPINDLE_SPEED": "ROTARY_VELOCITY"}
_DEFAULT_SUBTYPES = ("ACTUAL", "ABSOLUTE", "PROGRAMMED")
_AXES = ("x", "y", "z")
_COMPONENTS = {"Linear", "Rotary", "Controller", "Path", "Device"}
_CATEGORIES = {"Samples", "Events", "Condition"}


class StreamError(ValueError):
    """An agent's document is not what MTConnect says; the message names the element."""


@dataclass(slots=True)
class ClientItem:
    """One data item of a foreign agent, as the client uses it."""

    id: str
    category: str
    type: str
    kind: str  # num, enum, text, cond, series, avail, ignore
    signal: str | None = None
    scale: float = 1.0
    values: dict[str, float] = field(default_factory=dict)  # enum name -> canonical code
    source: str = "controller"  # where its alarms come from
    sample_rate: float | None = None  # a time series' rate, when the probe gives it


@dataclass(slots=True)
class ProbeInfo:
    instance_id: int
    device: str
    items: dict[str, ClientItem]

    @property
    def signals(self) -> list[str]:
        return sorted(
            {i.signal for i in self.items.values() if i.signal and i.kind in ("num", "enum")}
        )


@dataclass(slots=True)
class StreamHeader:
    instance_id: int
    first: int
    last: int
    next: int


@dataclass(slots=True)
class StreamChunk:
    """The observations of one streams document, column-wise where they are numeric."""

    header: StreamHeader
    signal: np.ndarray  # int32 index into ``signals`` (numeric observations)
    t: np.ndarray  # float64 s since the epoch
    value: np.ndarray  # float64 canonical units, NaN = UNAVAILABLE
    # (time, item, value text or condition attributes) for text, enum and condition items
    others: list[tuple[float, ClientItem, dict[str, str]]]


class AgentErrorDocument(Exception):
    """The agent answered with an MTConnectError (``code`` is its errorCode)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def parse_xml(text: str | bytes, what: str) -> ET.Element:
    try:
        return ET.fromstring(text)
    except (ET.ParseError, LookupError, ValueError) as e:  # LookupError: unknown encoding
        raise StreamError(f"{what}: not well-formed XML: {e}") from None


def _int_attr(el: ET.Element, name: str, where: str) -> int:
    raw = el.get(name)
    try:
        return int(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise StreamError(f"{where}: attribute {name} must be an integer, got {raw!r}") from None


def check_error(root: ET.Element) -> None:
    if _local(root.tag) == "MTConnectError":
        errors = [e for e in root.iter() if _local(e.tag) == "Error"]
        code = errors[0].get("errorCode", "UNKNOWN") if errors else "UNKNOWN"
        message = (errors[0].text or "").strip() if errors else ""
        raise AgentErrorDocument(code, message)


def parse_probe(text: str | bytes, device: str | None = None) -> ProbeInfo:
    """The data items of one device (the first, or the one named) mapped to signals."""
    root = parse_xml(text, "probe")
    check_error(root)
    if _local(root.tag) != "MTConnectDevices":
        raise StreamError(f"probe: expected MTConnectDevices, got {_local(root.tag)}")
    header = next((e for e in root if _local(e.tag) == "Header"), None)
    if header is None:
        raise StreamError("probe: MTConnectDevices has no Header")
    devices = [e for e in root.iter() if _local(e.tag) == "Device"]
    if device is not None:
        devices = [d for d in devices if device in (d.get("name"), d.get("uuid"))]
    if not devices:
        raise StreamError(f"probe: no device {device!r}" if device else "probe: no Device")
    dev = devices[0]
    items: dict[str, ClientItem] = {}
    _walk(dev, "Device", "", items)
    return ProbeInfo(_int_attr(header, "instanceId", "probe Header"),
                     dev.get("name") or dev.get("uuid") or "", items)  # fmt: skip


def _walk(el: ET.Element, comp: str, name: str, items: dict[str, ClientItem]) -> None:
    for child in el:
        tag = _local(child.tag)
        if tag == "DataItems":
            for di in child:
                item = _client_item(di, comp, name, items)
                items[item.id] = item
        elif tag == "Components":
            for sub in child:
                _walk(sub, _local(sub.tag), sub.get("name") or "", items)


def _client_item(di: ET.Element, comp: str, comp_name: str,
                 items: dict[str, ClientItem]) -> ClientItem:  # fmt: skip
    id_ = di.get("id")
    if not id_:
        raise StreamError(f"probe: a DataItem in component {comp} has no id")
    category = di.get("category", "")
    type_ = _TYPE_ALIASES.get(di.get("type", ""), di.get("type", ""))
    sub = di.get("subType")
    source = {"Linear": comp_name.lower(), "Rotary": "spindle", "Path": "program"}.get(
        comp, "controller"
    )
    if category == "CONDITION":
        return ClientItem(id_, category, type_, "cond", source=source)
    if type_ == "AVAILABILITY":
        return ClientItem(id_, category, type_, "avail")
    taken = {i.signal for i in items.values()}
    series = di.get("representation") == "TIME_SERIES"
    for m in SIGNAL_MAP:
        signal = _match(m, comp, comp_name, type_, sub)
        if signal is not None and signal not in taken and series == (m.representation is not None):
            item = _mapped(id_, category, type_, m, signal, source)
            if series:
                item.kind = "series"
                item.sample_rate = _float_or_none(di.get("sampleRate"))
            return item
    return ClientItem(id_, category, type_, "ignore")


def _float_or_none(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def _match(m: Mapping, comp: str, comp_name: str, type_: str, sub: str | None) -> str | None:
    if m.type != type_:
        return None
    if m.component in ("Linear", "Rotary"):
        if comp != m.component:
            return None
    elif comp in ("Linear", "Rotary"):
        return None
    axis = comp_name.lower()[:1]
    if m.component == "Linear" and axis not in _AXES:
        return None
    if not _sub_type_matches(m.sub_type, sub):
        return None
    return m.signal.format(a=axis)


def _sub_type_matches(want: str | None, have: str | None) -> bool:
    """Older agents call a commanded value PROGRAMMED; a missing subType is the default one."""
    if want is None:
        return True
    if have is None:
        return want in _DEFAULT_SUBTYPES
    return have == want or (want == "COMMANDED" and have == "PROGRAMMED")


def _mapped(id_: str, category: str, type_: str, m: Mapping, signal: str,
            source: str) -> ClientItem:  # fmt: skip
    if m.values is not None:
        codes = {name: float(k) for k, name in enumerate(m.values)}
        for foreign, ours in FOREIGN_VALUES.get(type_, {}).items():
            codes[foreign] = codes[ours]
        return ClientItem(id_, category, type_, "enum", signal, values=codes, source=source)
    kind = "text" if signal == "program" else "num"
    return ClientItem(id_, category, type_, kind, signal, scale=m.scale, source=source)


def parse_streams(text: str | bytes, probe: ProbeInfo,
                  signal_index: dict[str, int]) -> StreamChunk:  # fmt: skip
    """A streams document -> numeric columns (canonical units) and other observations.

    ``signal_index`` gives each numeric signal its column index; unknown data item ids
    (another device's, or an item the probe did not list) are skipped.
    """
    root = parse_xml(text, "streams")
    check_error(root)
    if _local(root.tag) != "MTConnectStreams":
        raise StreamError(f"streams: expected MTConnectStreams, got {_local(root.tag)}")
    header_el = next((e for e in root if _local(e.tag) == "Header"), None)
    if header_el is None:
        raise StreamError("streams: MTConnectStreams has no Header")
    header = StreamHeader(*(_int_attr(header_el, a, "streams Header") for a in (
        "instanceId", "firstSequence", "lastSequence", "nextSequence")))  # fmt: skip
    sig: list[int] = []
    stamps: list[str] = []
    texts: list[str] = []
    scales: list[float] = []
    others: list[tuple[str, ClientItem, dict[str, str]]] = []
    for category in root.iter():
        if _local(category.tag) not in _CATEGORIES:
            continue
        for obs in category:
            item = probe.items.get(obs.get("dataItemId", ""))
            if item is None or item.kind == "ignore":
                continue
            stamp = obs.get("timestamp")
            if stamp is None:
                raise StreamError(f"streams: observation of {item.id} has no timestamp")
            if item.kind == "num":
                sig.append(signal_index[item.signal])  # type: ignore[index]
                stamps.append(stamp)
                texts.append((obs.text or "").strip())
                scales.append(item.scale)
            else:
                attrs = dict(obs.attrib)
                attrs["value"] = (obs.text or "").strip()
                attrs["level"] = _local(obs.tag).upper()
                others.append((stamp, item, attrs))
    try:
        t = parse_iso_times(stamps + [s for s, _, _ in others])
    except ValueError as e:
        raise StreamError(f"streams: a timestamp is not ISO 8601 UTC: {e}") from None
    values = (
        np.array([_number(v) for v in texts], np.float64) / np.array(scales or [1.0])[: len(texts)]
    )
    return StreamChunk(header, np.array(sig, np.int32), t[: len(stamps)], values,
                       [(float(tt), item, attrs) for tt, (_, item, attrs) in
                        zip(t[len(stamps):], others, strict=True)])  # fmt: skip


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return np.nan  # UNAVAILABLE, or a value that is not a number


def condition_level(attrs: dict[str, str]) -> str:
    level = attrs["level"]
    return level if level in CONDITION_LEVELS else "UNAVAILABLE"
