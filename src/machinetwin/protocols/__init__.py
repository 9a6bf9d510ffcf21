"""How machinetwin talks to machines and to itself over the wire.

``codec`` is the MQTT payload codec of the edge→hub path: sample batches travel as a
compact, versioned, CRC-checked binary format decoded zero-copy into numpy arrays;
birth messages (machine descriptors), events/alarms and the hub's acknowledgements
travel as small versioned JSON documents. Every decoder raises only
:class:`~machinetwin.protocols.codec.PayloadError` on bad input, naming the field and
the byte offset, so that nothing a client sends can crash the hub.

The machines' own languages live in subpackages, each an ``Adapter`` the edge runs
like a virtual machine: ``mtconnect`` (agent, SHDR, client), ``opcua`` (OPC 40501-1
server and client), ``linuxcnc`` (a real controller) and ``replay`` (recorded data).
"""

from .codec import (
    AckMessage,
    PayloadError,
    decode_ack,
    decode_batch,
    decode_descriptor,
    decode_event,
    encode_ack,
    encode_batch,
    encode_descriptor,
    encode_event,
    seq_ranges,
)

__all__ = [
    "AckMessage",
    "PayloadError",
    "decode_ack",
    "decode_batch",
    "decode_descriptor",
    "decode_event",
    "encode_ack",
    "encode_batch",
    "encode_descriptor",
    "encode_event",
    "seq_ranges",
]
