"""MTConnect assets: CuttingTool assets from a machine's tool table, and SHDR assets.

An asset is held as its XML element text (what SHDR adapters send and what ``/assets``
serves); its JSON form is derived from the same element, so the two agree.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from .documents import iso_times


class ToolLike(Protocol):
    """What a tool table entry offers (machine.config.ToolConfig has these fields)."""

    number: int
    pocket: int
    kind: str
    diameter: float
    flutes: int
    length: float
    flute_length: float
    description: str


@dataclass(slots=True)
class Asset:
    asset_id: str
    asset_type: str
    device_uuid: str
    timestamp: float
    xml: str  # the asset's element, e.g. <CuttingTool ...>...</CuttingTool>
    removed: bool = False

    def element(self) -> str:
        """The element with the agent's bookkeeping attributes set."""
        root = ET.fromstring(self.xml)
        root.set("assetId", self.asset_id)
        root.set("deviceUuid", self.device_uuid)
        root.set("timestamp", str(iso_times(np.array([self.timestamp]))[0]))
        if self.removed:
            root.set("removed", "true")
        return ET.tostring(root, encoding="unicode")

    def as_json(self) -> dict[str, Any]:
        root = ET.fromstring(self.element())
        return {_local(root.tag): _to_json(root)}


class AssetError(ValueError):
    """An asset document is not usable; the message names the asset."""


def parse_asset(asset_id: str, asset_type: str, device_uuid: str, t: float, xml: str) -> Asset:
    """Check that an asset body is one well-formed element of the named type."""
    try:
        root = ET.fromstring(xml)
    except (ET.ParseError, LookupError, ValueError) as e:
        raise AssetError(f"asset {asset_id!r}: not well-formed XML: {e}") from None
    if _local(root.tag) != asset_type:
        raise AssetError(f"asset {asset_id!r}: element is <{_local(root.tag)}>, "
                         f"expected <{asset_type}>")  # fmt: skip
    return Asset(asset_id, asset_type, device_uuid, t, ET.tostring(root, encoding="unicode"))


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _to_json(el: ET.Element) -> dict[str, Any]:
    """An element as JSON: attributes as keys, children by tag (lists), text as value."""
    out: dict[str, Any] = dict(el.attrib)
    for child in el:
        out.setdefault(_local(child.tag), []).append(_to_json(child))
    text = (el.text or "").strip()
    if text:
        out["value"] = text
    return out


_CODES = {"OverallToolLength": "OAL", "CuttingDiameterMax": "DC", "UsableLengthMax": "LUX"}


WEAR_LIMIT_MM = 0.3  # flank wear VB at which a carbide end mill is usually worn out


def cutting_tool(tool: ToolLike, device_uuid: str, t: float, wear_mm: float | None = None) -> Asset:
    """A CuttingTool asset (MTConnect Part 4.1) for one tool of the tool table; with
    ``wear_mm`` its ToolLife of type WEAR (flank wear VB, counting up to the limit)."""
    life = "" if wear_mm is None else (
        f'<ToolLife type="WEAR" countDirection="UP" limit="{WEAR_LIMIT_MM:g}">'
        f"{wear_mm:.6g}</ToolLife>")  # fmt: skip
    measures = {"OverallToolLength": tool.length, "CuttingDiameterMax": tool.diameter,
                "UsableLengthMax": tool.flute_length}  # fmt: skip
    measurements = "".join(
        f'<{name} code="{_CODES[name]}" nominal="{value:g}" units="MILLIMETER">{value:g}</{name}>'
        for name, value in measures.items())  # fmt: skip
    asset_id = f"{device_uuid}.T{tool.number}"
    xml = (f"<CuttingTool assetId={quoteattr(asset_id)} toolId={quoteattr(str(tool.number))} "
           f"serialNumber={quoteattr(asset_id)}>"
           f"<Description>{escape(tool.description or tool.kind)}</Description>"
           "<CuttingToolLifeCycle><CutterStatus><Status>AVAILABLE</Status></CutterStatus>"
           f"{life}"
           f"<ProgramToolNumber>{tool.number}</ProgramToolNumber>"
           f'<Location type="POT">{tool.pocket}</Location>'
           f"<Measurements>{measurements}</Measurements>"
           f'<CuttingItems count="{tool.flutes}"><CuttingItem indices="1-{tool.flutes}"/>'
           "</CuttingItems>"
           "</CuttingToolLifeCycle></CuttingTool>")  # fmt: skip
    return Asset(asset_id, "CuttingTool", device_uuid, t, xml)


def cutting_tools(tools: Iterable[ToolLike], device_uuid: str, t: float) -> list[Asset]:
    return [cutting_tool(tool, device_uuid, t) for tool in tools]
