"""The virtual machine tool: planner, controller, physics, stock and faults.

It looks to the edge exactly like a real machine: an ``Adapter`` that yields sample
batches and events and accepts commands.
"""

from .config import MachineConfig, load_machine_config

__all__ = ["MachineConfig", "load_machine_config"]
