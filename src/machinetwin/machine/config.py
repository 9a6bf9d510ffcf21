"""Machine configuration: one typed object loaded from TOML, validated with clear errors."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..configfile import load_toml, parse_toml


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AxisConfig(Strict):
    min: float
    max: float
    max_velocity: float = Field(gt=0)  # mm/s
    max_acceleration: float = Field(gt=0)  # mm/s^2
    max_jerk: float = Field(gt=0)  # mm/s^3
    servo_bandwidth_hz: float = Field(30.0, gt=0)
    following_error_limit: float = Field(1.0, gt=0)  # mm

    @model_validator(mode="after")
    def _travel(self) -> AxisConfig:
        if self.max <= self.min:
            raise ValueError(f"max ({self.max}) must be greater than min ({self.min})")
        return self


class BearingConfig(Strict):
    designation: str = "6205"
    balls: int = Field(9, gt=2)
    ball_diameter: float = Field(7.94, gt=0)  # mm
    pitch_diameter: float = Field(39.04, gt=0)  # mm
    contact_angle: float = 0.0  # degrees


class SpindleConfig(Strict):
    max_rpm: float = Field(12000.0, gt=0)
    rated_power: float = Field(15000.0, gt=0)  # W
    acceleration: float = Field(2000.0, gt=0)  # rpm/s
    thermal_time_constant: float = Field(900.0, gt=0)  # s
    ambient_temp: float = 22.0
    temp_rise_at_rated_power: float = Field(35.0, gt=0)
    bearing: BearingConfig = BearingConfig()


class ToolConfig(Strict):
    number: int = Field(gt=0)
    pocket: int = Field(gt=0)
    kind: Literal["flat", "ball", "drill"]
    diameter: float = Field(gt=0)
    flutes: int = Field(gt=0)
    length: float = Field(gt=0)
    flute_length: float = Field(gt=0)
    holder_diameter: float = Field(gt=0)
    material: str = "carbide"
    description: str = ""


class StockConfig(Strict):
    material: str = "Al6061"
    size: tuple[float, float, float] = (100.0, 80.0, 40.0)
    origin: tuple[float, float, float] = (0.0, 0.0, -40.0)  # work coordinates of min corner
    grid: float = Field(0.25, gt=0)


class PlannerConfig(Strict):
    """How the trajectory planner turns corners and shares acceleration (``[planner]``).

    ``blending = "filter"`` (the default) smooths corners and bounds jerk with FIR
    filters; ``"arc"`` inserts tangent blend arcs within the G64 tolerance and plans
    acceleration-limited trapezoids, the model of LinuxCNC 2.9's trajectory planner.
    Omitted keys keep the planner's defaults.
    """

    blending: Literal["filter", "arc"] = "filter"
    default_tolerance: float | None = Field(None, gt=0)  # mm, G64 without P; inf: none
    accel_share: float | None = Field(None, gt=0, le=1)
    jerk_share: float | None = Field(None, gt=0, lt=1)
    corner_filter_time: float | None = Field(None, gt=0)  # s
    arc_tangential_share: float | None = Field(None, gt=0, lt=1)
    kink_ratio: float | None = Field(None, ge=0, lt=1)
    unblended_end_share: float | None = Field(None, gt=0, le=1)


class MachineConfig(Strict):
    name: str = "VMC-1"
    model: str = ""
    servo_rate_hz: float = Field(1000.0, gt=0)
    axes: dict[Literal["x", "y", "z"], AxisConfig]
    work_offsets: dict[str, tuple[float, float, float]] = {}
    spindle: SpindleConfig = SpindleConfig()
    tools: list[ToolConfig] = []
    stock: StockConfig = StockConfig()
    planner: PlannerConfig = PlannerConfig()

    @model_validator(mode="after")
    def _complete(self) -> MachineConfig:
        missing = {"x", "y", "z"} - set(self.axes)
        if missing:
            raise ValueError(f"axes {sorted(missing)} are not configured")
        numbers = [t.number for t in self.tools]
        if len(numbers) != len(set(numbers)):
            raise ValueError("a tool number is listed twice in [[tools]]")
        return self

    def tool(self, number: int) -> ToolConfig | None:
        return next((t for t in self.tools if t.number == number), None)


def load_machine_config(path: str | Path | None = None) -> MachineConfig:
    """Load and validate a machine file; ``None`` gives the default machine."""
    if path is None:
        text = resources.files(__package__).joinpath("default_vmc.toml").read_text()
        return parse_toml(text, MachineConfig, "default_vmc.toml")
    return load_toml(path, MachineConfig)


# LinuxCNC 2.9's planner has no jerk limit: a jerk "limit" this high makes the FIR
# stages one tap long (no filtering), so the setpoints follow the planned path exactly.
UNLIMITED_JERK = 1e9  # mm/s^3


def linuxcnc_planner_config(config: MachineConfig) -> MachineConfig:
    """The same machine planned like LinuxCNC 2.9 (same axis limits, no jerk limit).

    Blend arcs within G64 P (G64 without P: no tolerance of its own, as in LinuxCNC),
    the whole acceleration for speed changes on lines, half of it tangentially on
    arcs and blend arcs (the rest is for their normal acceleration).
    """
    axes = {k: a.model_copy(update={"max_jerk": UNLIMITED_JERK}) for k, a in config.axes.items()}
    planner = PlannerConfig(
        blending="arc",
        default_tolerance=float("inf"),
        accel_share=1.0,
        corner_filter_time=0.001,
        arc_tangential_share=0.5,
    )
    return config.model_copy(update={"axes": axes, "planner": planner})
