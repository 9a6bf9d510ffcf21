"""MTConnect response documents (Devices, Streams, Assets, Error) as XML and JSON.

XML uses the MTConnect 2.0 namespaces; JSON follows the agent's JSON version 2 layout
(``{"Samples": {"Position": [{...}]}}``) that current agents and pymtconnect read.
Observations are grouped by device, component and category and ordered by sequence
within each, as the standard requires.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from .buffer import Observations
from .model import NS_VERSION, SCHEMA_VERSION, Component, DataItem, Device

_XSI = "http://www.w3.org/2001/XMLSchema-instance"
_SCHEMAS = "http://schemas.mtconnect.org/schemas"
_CATEGORY_ORDER = {"SAMPLE": 0, "EVENT": 1, "CONDITION": 2}
_CATEGORY_ELEMENT = ("Samples", "Events", "Condition")


@dataclass(slots=True)
class HeaderInfo:
    sender: str
    instance_id: int
    buffer_size: int
    asset_buffer_size: int = 1024
    asset_count: int = 0
    version: str = "2.0.0.0"
    model_change_time: str | None = None  # when the device model last changed (start)


def iso_times(t: np.ndarray) -> np.ndarray:
    """Seconds since the epoch -> ISO 8601 UTC strings with microseconds, vectorised."""
    us = np.round(np.asarray(t, np.float64) * 1e6).astype(np.int64).astype("datetime64[us]")
    return np.char.add(np.datetime_as_string(us, unit="us"), "Z")


def parse_iso_times(values: list[str]) -> np.ndarray:
    """ISO 8601 UTC strings (``...Z``, any fraction) -> seconds since the epoch, vectorised."""
    if not values:
        return np.zeros(0)
    stripped = [v[:-1] if v.endswith("Z") else v for v in values]
    with warnings.catch_warnings():  # an explicit offset (+08:00) is converted to UTC: fine
        warnings.simplefilter("ignore", UserWarning)
        stamps = np.array(stripped, dtype="datetime64[us]")
    return stamps.astype(np.int64) / 1e6


def _now() -> str:
    return str(iso_times(np.array([time.time()]))[0])


def _header_attrs(h: HeaderInfo, kind: str, seq: tuple[int, int, int] | None) -> dict[str, Any]:
    attrs: dict[str, Any] = {"creationTime": _now(), "sender": h.sender,
                             "instanceId": h.instance_id, "version": h.version}  # fmt: skip
    if kind == "Assets":
        attrs.update(assetBufferSize=h.asset_buffer_size, assetCount=h.asset_count)
        return attrs
    attrs["bufferSize"] = h.buffer_size
    if h.model_change_time is not None:
        attrs["deviceModelChangeTime"] = h.model_change_time
    if kind == "Devices":
        attrs.update(assetBufferSize=h.asset_buffer_size, assetCount=h.asset_count)
    if seq is not None:
        attrs.update(firstSequence=seq[0], lastSequence=seq[1], nextSequence=seq[2])
    return attrs


def _xml_open(kind: str) -> str:
    ns = f"urn:mtconnect.org:MTConnect{kind}:{NS_VERSION}"
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<MTConnect{kind} xmlns="{ns}" '
            f'xmlns:m="{ns}" xmlns:xsi="{_XSI}" schemaVersion="{SCHEMA_VERSION}" '
            f'xsi:schemaLocation="{ns} {_SCHEMAS}/MTConnect{kind}_{NS_VERSION}.xsd">')  # fmt: skip


def _attrs(attrs: dict[str, Any]) -> str:
    return "".join(f" {k}={quoteattr(str(v))}" for k, v in attrs.items() if v is not None)


def _json_doc(kind: str, header: dict[str, Any], body: dict[str, Any]) -> str:
    doc = {"jsonVersion": 2, "schemaVersion": SCHEMA_VERSION, "Header": header, **body}
    return json.dumps({f"MTConnect{kind}": doc}, separators=(",", ":"))


# ---------------------------------------------------------------- errors


def error_document(h: HeaderInfo, code: str, message: str, fmt: str) -> str:
    """An MTConnectError document with one error (errorCode per the standard)."""
    header = _header_attrs(h, "Error", None)
    if fmt == "json":
        err = {"Error": {"errorCode": code, "value": message}}
        return _json_doc("Error", header, {"Errors": [err]})
    return (f"{_xml_open('Error')}<Header{_attrs(header)}/><Errors><Error errorCode="
            f"{quoteattr(code)}>{escape(message)}</Error></Errors></MTConnectError>")  # fmt: skip


# ---------------------------------------------------------------- probe


def _item_attrs(item: DataItem) -> dict[str, Any]:
    return {"category": item.category, "id": item.id, "type": item.type,
            "subType": item.sub_type, "units": item.units, "name": item.name,
            "representation": item.representation}  # fmt: skip


def _component_xml(c: Component) -> str:
    inner = ""
    if c.items:
        inner += "<DataItems>" + "".join(f"<DataItem{_attrs(_item_attrs(i))}/>" for i in c.items)
        inner += "</DataItems>"
    if c.children:
        inner += "<Components>" + "".join(_component_xml(k) for k in c.children) + "</Components>"
    return f"<{c.type}{_attrs({'id': c.id, 'name': c.name})}>{inner}</{c.type}>"


def _component_json(c: Component) -> dict[str, Any]:
    out: dict[str, Any] = {k: v for k, v in {"id": c.id, "name": c.name}.items() if v}
    if c.items:
        out["DataItems"] = {"DataItem": [
            {k: v for k, v in _item_attrs(i).items() if v is not None} for i in c.items]}  # fmt: skip
    if c.children:
        kids: dict[str, list[dict[str, Any]]] = {}
        for k in c.children:
            kids.setdefault(k.type, []).append(_component_json(k))
        out["Components"] = kids
    return out


def probe_document(h: HeaderInfo, devices: list[Device], fmt: str) -> str:
    header = _header_attrs(h, "Devices", None)
    if fmt == "json":
        devs = [{**_component_json(d.root), "uuid": d.uuid, "name": d.name} for d in devices]
        return _json_doc("Devices", header, {"Devices": {"Device": devs}})
    body = "".join(
        _component_xml(d.root).replace(f'<Device id="{d.id}"',
                                       f'<Device id="{d.id}" uuid={quoteattr(d.uuid)}', 1)
        for d in devices)  # fmt: skip
    return f"{_xml_open('Devices')}<Header{_attrs(header)}/><Devices>{body}</Devices></MTConnectDevices>"


# ---------------------------------------------------------------- streams


@dataclass(slots=True)
class ItemTable:
    """The agent's data items by index, with the arrays rendering groups by."""

    items: list[DataItem]
    devices: list[Device]
    component: np.ndarray  # int32: global component index of each item
    category: np.ndarray  # int8: 0 SAMPLE, 1 EVENT, 2 CONDITION
    components: list[tuple[int, Component]]  # (device index, component) by global index
    kind: np.ndarray  # int8: 0 num, 1 enum, 2 text, 3 cond
    # per item, escaped once: '<Position dataItemId="..."', ' name=".." subType="..">', '</Position>'
    heads: list[str]
    tails: list[str]
    closes: list[str]
    json_heads: list[str]  # '{"dataItemId":"..","timestamp":'
    json_tails: list[str]  # ',"name":"..","subType":"..","value":'

    @classmethod
    def build(cls, devices: list[Device]) -> ItemTable:
        items: list[DataItem] = []
        comps: list[tuple[int, Component]] = []
        comp_of: list[int] = []
        for d_index, dev in enumerate(devices):
            for comp in dev.components():
                comps.append((d_index, comp))
                for item in comp.items:
                    item.index = len(items)
                    items.append(item)
                    comp_of.append(len(comps) - 1)
        category = np.array([_CATEGORY_ORDER[i.category] for i in items], np.int8)
        kind = np.array([_KINDS.index(i.kind) for i in items], np.int8)
        heads = [f"<{i.element} dataItemId={quoteattr(i.id)}" for i in items]
        tails = [_attrs({"name": i.name, "subType": i.sub_type}) + ">" for i in items]
        closes = [f"</{i.element}>" for i in items]
        json_heads = [json.dumps({"dataItemId": i.id})[:-1] + ',"timestamp":' for i in items]
        json_tails = [",".join(f'"{k}":{json.dumps(v)}' for k, v in
                               (("name", i.name), ("subType", i.sub_type)) if v) for i in items]  # fmt: skip
        json_tails = [("," + t if t else "") + ',"value":' for t in json_tails]
        return cls(items, devices, np.array(comp_of, np.int32), category, comps, kind, heads,
                   tails, closes, json_heads, json_tails)  # fmt: skip


_KINDS = ("num", "enum", "text", "cond", "series")


def _value_texts(table: ItemTable, obs: Observations, escaped: bool = True) -> list[str]:
    """The text of each (non-condition) observation's value (XML-escaped by default)."""
    kinds = table.kind[obs.item]
    out = ["UNAVAILABLE"] * len(obs)
    num = np.flatnonzero(kinds == 0)
    for k, v in zip(num.tolist(), obs.value[num].tolist(), strict=True):
        if v == v:  # not NaN
            out[k] = f"{v + 0.0:.12g}"
    for k in np.flatnonzero(kinds == 1).tolist():
        v = obs.value[k]
        if v == v:
            out[k] = table.items[obs.item[k]].values[int(v)]  # type: ignore[index]
    for k in np.flatnonzero(kinds == 2).tolist():
        if obs.text[k] is not None:
            out[k] = escape(str(obs.text[k])) if escaped else str(obs.text[k])
    return out


def _special(item: DataItem, seq: int, stamp: str, payload: object,
             fmt: str) -> tuple[str, dict[str, Any], Any]:  # fmt: skip
    """A condition or a waveform observation as (element, attributes, value)."""
    if item.kind == "cond":
        return _condition(item, seq, stamp, payload)
    attrs: dict[str, Any] = {"dataItemId": item.id, "timestamp": stamp, "sequence": int(seq),
                             "name": item.name}  # fmt: skip
    if payload is None:
        return item.element, {**attrs, "sampleCount": 0}, "UNAVAILABLE"
    rate, values = payload  # type: ignore[misc]
    attrs.update(sampleCount=len(values), sampleRate=f"{rate:g}")
    texts = [f"{v:.6g}" for v in values.tolist()]  # 6 digits: far below a sensor's noise
    if fmt == "json":
        return item.element, attrs, [float(t) for t in texts]
    return item.element, attrs, " ".join(texts)


def _condition(item: DataItem, seq: int, stamp: str,
               payload: object) -> tuple[str, dict[str, Any], str | None]:  # fmt: skip
    """(element, attributes, text) of a condition observation (Normal, Warning, ...)."""
    level, code, severity, qualifier, message = payload  # type: ignore[misc]
    attrs: dict[str, Any] = {"dataItemId": item.id, "timestamp": stamp, "sequence": int(seq),
                             "type": item.type}  # fmt: skip
    attrs.update({k: v for k, v in (("nativeCode", code), ("nativeSeverity", severity),
                                    ("qualifier", qualifier)) if v})  # fmt: skip
    return level.capitalize(), attrs, message or None


def streams_document(h: HeaderInfo, table: ItemTable, obs: Observations,
                     seq: tuple[int, int, int], fmt: str) -> str:  # fmt: skip
    """An MTConnectStreams document of these observations (empty = heartbeat)."""
    header = _header_attrs(h, "Streams", seq)
    if fmt == "json":  # the document without Streams, then Streams spliced in as text
        doc = _json_doc("Streams", header, {})
        return f'{doc[:-2]},"Streams":{_streams_json(table, obs)}}}}}'
    return f"{_xml_open('Streams')}<Header{_attrs(header)}/>{_streams_xml(table, obs)}</MTConnectStreams>"


def _streams_xml(table: ItemTable, obs: Observations) -> str:
    """<Streams> with observations grouped by device, component, category; strings are
    built from per-item parts escaped once, as this is the agent's busiest path."""
    order = np.lexsort((obs.seq, table.category[obs.item], table.component[obs.item]))
    obs = obs.take(order)
    stamps = iso_times(obs.t).tolist()
    values = _value_texts(table, obs)
    comps = table.component[obs.item].tolist()
    cats = table.category[obs.item].tolist()
    items = obs.item.tolist()
    seqs = obs.seq.tolist()
    kinds = table.kind[obs.item].tolist()
    parts = ["<Streams>"]
    device = comp = cat = -1
    for k, i in enumerate(items):
        if comps[k] != comp:
            if comp >= 0:
                parts.append(f"</{_CATEGORY_ELEMENT[cat]}></ComponentStream>")
            d_index, component = table.components[comps[k]]
            if d_index != device:
                if device >= 0:
                    parts.append("</DeviceStream>")
                dev = table.devices[d_index]
                parts.append(
                    f"<DeviceStream name={quoteattr(dev.name)} uuid={quoteattr(dev.uuid)}>"
                )
                device = d_index
            parts.append(
                f"<ComponentStream{_attrs(_stream_attrs(component))}><{_CATEGORY_ELEMENT[cats[k]]}>"
            )
            comp, cat = comps[k], cats[k]
        elif cats[k] != cat:
            parts.append(f"</{_CATEGORY_ELEMENT[cat]}><{_CATEGORY_ELEMENT[cats[k]]}>")
            cat = cats[k]
        if cats[k] == 2 or kinds[k] == 4:  # conditions and waveforms: rare, more attributes
            item = table.items[i]
            parts.append(_obs_xml(_special(item, seqs[k], stamps[k], obs.text[k], "xml")))
        else:
            parts.append(f'{table.heads[i]} timestamp="{stamps[k]}" sequence="{seqs[k]}"'
                         f"{table.tails[i]}{values[k]}{table.closes[i]}")  # fmt: skip
    if comp >= 0:
        parts.append(f"</{_CATEGORY_ELEMENT[cat]}></ComponentStream></DeviceStream>")
    parts.append("</Streams>")
    return "".join(parts)


def _stream_attrs(comp: Component) -> dict[str, Any]:
    return {"component": comp.type, "name": comp.name, "componentId": comp.id}


def _obs_xml(o: tuple[str, dict[str, Any], Any]) -> str:
    element, attrs, value = o
    if value is None:
        return f"<{element}{_attrs(attrs)}/>"
    return f"<{element}{_attrs(attrs)}>{escape(str(value))}</{element}>"


def _streams_json(table: ItemTable, obs: Observations) -> str:
    """The JSON (version 2) Streams object as text, from per-item parts made once."""
    order = np.lexsort((obs.seq, table.category[obs.item], table.component[obs.item]))
    obs = obs.take(order)
    stamps = iso_times(obs.t).tolist()
    values = [v if v == "UNAVAILABLE" or k == 0 else json.dumps(v) for v, k in
              zip(_value_texts(table, obs, escaped=False), table.kind[obs.item].tolist(), strict=True)]  # fmt: skip
    groups: dict[int, dict[int, dict[str, list[str]]]] = {}
    seqs = obs.seq.tolist()
    for k, (i, c, cat) in enumerate(zip(obs.item.tolist(), table.component[obs.item].tolist(),
                                        table.category[obs.item].tolist(), strict=True)):  # fmt: skip
        item = table.items[i]
        if cat == 2 or item.kind == "series":  # conditions and waveforms: rare
            element, attrs, value = _special(item, seqs[k], stamps[k], obs.text[k], "json")
            entry = json.dumps({**attrs, "value": value} if value is not None else attrs)
        else:
            value = values[k] if values[k] != "UNAVAILABLE" else '"UNAVAILABLE"'
            element = item.element
            entry = f'{table.json_heads[i]}"{stamps[k]}","sequence":{seqs[k]}{table.json_tails[i]}{value}}}'
        groups.setdefault(c, {}).setdefault(cat, {}).setdefault(element, []).append(entry)
    devices: dict[int, list[str]] = {}
    for c, cats in groups.items():
        d_index, comp = table.components[c]
        head = json.dumps({k: v for k, v in _stream_attrs(comp).items() if v})[:-1]
        body = ",".join(f'"{_CATEGORY_ELEMENT[cat]}":{{' + ",".join(
            f'"{el}":[{",".join(entries)}]' for el, entries in by_el.items()) + "}"
            for cat, by_el in sorted(cats.items()))  # fmt: skip
        devices.setdefault(d_index, []).append(f"{head},{body}}}")
    streams = [json.dumps({"name": table.devices[d].name, "uuid": table.devices[d].uuid})[:-1]
               + f',"ComponentStream":[{",".join(cs)}]}}' for d, cs in devices.items()]  # fmt: skip
    return f'{{"DeviceStream":[{",".join(streams)}]}}'


# ---------------------------------------------------------------- assets


def assets_document(h: HeaderInfo, assets_xml: list[str], assets_json: list[dict[str, Any]],
                    fmt: str) -> str:  # fmt: skip
    header = _header_attrs(h, "Assets", None)
    if fmt == "json":
        return _json_doc("Assets", header, {"Assets": assets_json})
    return (f"{_xml_open('Assets')}<Header{_attrs(header)}/><Assets>{''.join(assets_xml)}"
            "</Assets></MTConnectAssets>")  # fmt: skip
