"""Modal groups of G and M codes and the checks LinuxCNC applies to one block.

G codes are held as integers ten times their number (G61.1 -> 611), as LinuxCNC does.
"""

from __future__ import annotations

from ..errors import GCodeError
from .reader import Block

# G modal groups (group 0 is non-modal).
G_GROUPS: dict[int, int] = {}
for _code in (40, 100, 280, 281, 300, 301, 520, 530, 920, 921, 922, 923):
    G_GROUPS[_code] = 0
for _code in (
    0,
    10,
    20,
    30,
    51,
    330,
    331,
    700,
    710,
    711,
    712,
    720,
    721,
    722,
    730,
    800,
    810,
    820,
    830,
    840,
    850,
    860,
    870,
    880,
    890,
):
    G_GROUPS[_code] = 1
for _code in (382, 383, 384, 385):  # G38.2-G38.5 probing
    G_GROUPS[_code] = 1
for _codes, _group in (
    ((170, 180, 190), 2),
    ((900, 910), 3),
    ((901, 911), 4),
    ((930, 940, 950), 5),
    ((200, 210), 6),
    ((400, 410, 411, 420, 421), 7),
    ((430, 431, 432, 490), 8),
    ((980, 990), 10),
    ((70, 80), 15),
    ((540, 550, 560, 570, 580, 590, 591, 592, 593), 12),
    ((610, 611, 640), 13),
):
    for _code in _codes:
        G_GROUPS[_code] = _group

# Codes LinuxCNC knows but this interpreter does not implement (yet): named so the
# error says "not supported" rather than "unknown".
G_NOT_SUPPORTED = {
    50: "G5 (cubic spline)", 52: "G5.2 (NURBS)",
    53: "G5.3 (NURBS end)",
    740: "G74", 760: "G76 (lathe threading cycle)",
    960: "G96 (constant surface speed)", 970: "G97", 150: "G15", 160: "G16",
    171: "G17.1", 181: "G18.1", 191: "G19.1",
}  # fmt: skip

M_GROUPS: dict[int, int] = {0: 4, 1: 4, 2: 4, 30: 4, 60: 4, 6: 6, 3: 7, 4: 7, 5: 7}
M_GROUPS.update({7: 8, 8: 8, 9: 8, 48: 9, 49: 9, 50: 9, 51: 9, 52: 9, 53: 9, 61: 6})
M_GROUPS.update({62: 5, 63: 5, 64: 5, 65: 5, 66: 5, 67: 5, 68: 5})
M_GROUPS.update({70: 7, 71: 7, 72: 7, 73: 7})  # modal state save/restore share M3's group
M_NOT_SUPPORTED = {19: "M19 (spindle orient)"}


class ModalCodes:
    """A block's G and M codes sorted into their groups, with conflicts rejected."""

    __slots__ = ("g", "m", "m_cols", "g_cols")

    def __init__(self, block: Block) -> None:
        self.g: dict[int, int] = {}
        self.g_cols: dict[int, int] = {}
        self.m: dict[int, int] = {}
        self.m_cols: dict[int, int] = {}
        for code, col in block.g_codes:
            group = G_GROUPS.get(code)
            if group is None:
                if code in G_NOT_SUPPORTED:
                    raise GCodeError(f"{G_NOT_SUPPORTED[code]} is not supported", block.line, col)
                raise GCodeError("Unknown g code used", block.line, col)
            if group in self.g:
                raise GCodeError("Two g codes used from same modal group", block.line, col)
            self.g[group] = code
            self.g_cols[group] = col
        if len(block.m_codes) > 5:
            raise GCodeError("Too many m codes on line", block.line, block.m_codes[5][1])
        for code, col in block.m_codes:
            group = M_GROUPS.get(code)
            if group is None:
                if code in M_NOT_SUPPORTED:
                    raise GCodeError(f"{M_NOT_SUPPORTED[code]} is not supported", block.line, col)
                raise GCodeError("Unknown m code used", block.line, col)
            if group in self.m:
                raise GCodeError("Two m codes used from same modal group", block.line, col)
            self.m[group] = code
            self.m_cols[group] = col
