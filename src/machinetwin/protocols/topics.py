"""MQTT topics between edges and the hub (one place, so both sides agree).

Everything of one machine lives under ``mt/v1/<machine>/``. The edge publishes
``data`` (encoded sample batches), ``event`` (alarms, state changes), ``birth`` (its
descriptor, retained) and ``state`` (``online``/``offline``, retained; the MQTT will
message sets ``offline`` when the edge disappears). The hub publishes ``ack``: the
sequence numbers it has stored, after which the edge may delete them from its buffer.
All at QoS 1, using only what MQTT 3.1.1 and 5 share (the embedded broker is 3.1.1).
"""

from __future__ import annotations

PREFIX = "mt/v1"
ONLINE = b"online"
OFFLINE = b"offline"


def data(machine: str) -> str:
    return f"{PREFIX}/{machine}/data"


def event(machine: str) -> str:
    return f"{PREFIX}/{machine}/event"


def birth(machine: str) -> str:
    return f"{PREFIX}/{machine}/birth"


def state(machine: str) -> str:
    return f"{PREFIX}/{machine}/state"


def ack(machine: str) -> str:
    return f"{PREFIX}/{machine}/ack"


def command(machine: str) -> str:
    return f"{PREFIX}/{machine}/cmd"


def command_reply(machine: str) -> str:
    """Edge -> hub: accepted/rejected/outcome of signed commands (``model.commands``)."""
    return f"{PREFIX}/{machine}/cmdreply"


def permit(machine: str) -> str:
    """Edge -> hub, retained: the site's remote-operation permit (``model.commands.PermitReport``)."""
    return f"{PREFIX}/{machine}/permit"


# What the hub subscribes to
# Births first: the broker sets up subscriptions in order, so the retained births (which
# declare each machine's signals) are delivered before any live batch that needs them.
HUB_SUBSCRIPTIONS = (
    f"{PREFIX}/+/birth",
    f"{PREFIX}/+/state",
    f"{PREFIX}/+/event",
    f"{PREFIX}/+/data",
)


def parse(topic: str) -> tuple[str, str]:
    """(machine, kind) of a topic under the prefix; ValueError names a foreign topic."""
    parts = topic.split("/")
    if len(parts) != 4 or f"{parts[0]}/{parts[1]}" != PREFIX or not parts[2]:
        raise ValueError(f"not a machinetwin topic: {topic!r}")
    return parts[2], parts[3]


def valid_machine_id(machine: str) -> bool:
    """Machine ids become topic levels: no wildcards, separators or control characters."""
    return bool(machine) and len(machine) <= 64 and all(c.isalnum() or c in "-_." for c in machine)
