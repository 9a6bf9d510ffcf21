"""Scene objects for the machine twin: toolpath segments and the stock height field.

Both keep their data in one three.js buffer, so a program of thousands of moves or a
stock of thousands of cells is one object on the page, not one per move or cell.
"""

from __future__ import annotations

from nicegui.elements.scene.scene_object3d import Object3D


class Segments(Object3D, component="segments.js"):
    """Line segments from a flat list ``[x0, y0, z0, x1, y1, z1, ...]`` (pairs of points)."""

    def __init__(self, points: list[float], color: str) -> None:
        super().__init__(points, color)

    def set_points(self, points: list[float]) -> None:
        self.args[0] = points  # what a reconnecting browser gets
        self.run_method("set_points", points)


class HeightField(Object3D, component="heightfield.js"):
    """A block whose top is ``heights`` (row-major over nx x ny cells, z up)."""

    def __init__(self, nx: int, ny: int, corner: list[float], cell: float, bottom: float,
                 heights: list[float], color: str, top: float = 0.0) -> None:  # fmt: skip
        # no heights: a flat top at ``top`` (the page sends 8 kB less before it shows)
        super().__init__(nx, ny, corner[0], corner[1], cell, cell, bottom, heights, color, top)

    def set_heights(self, heights: list[float]) -> None:
        self.args[7] = heights
        self.run_method("set_heights", heights)
