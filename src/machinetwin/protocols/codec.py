"""MQTT payload codec of the edge→hub path.

Sample batches use a compact binary format (below); birth messages, events/alarms and
acknowledgements are small JSON documents. Decoders validate everything and raise only
:class:`PayloadError`, which names the field and, for binary payloads, the byte offset.
Memory is bounded by the payload itself: every count read from a header is checked
against the bytes that remain before anything is allocated, and the limits below cap
what a payload may declare.

Batch format, version 1 (all integers little-endian; every section starts at an offset
that is a multiple of 8 so that arrays are aligned; padding bytes are zero)::

    header (32 bytes)
      0  magic        4s   b"MTSB"
      4  version      u8   1
      5  flags        u8   0 (reserved)
      6  machine_len  u16  bytes of the UTF-8 machine id
      8  total_len    u32  bytes of the whole payload, CRC included
     12  n_rows       u32  samples per column
     16  n_columns    u16
     18  n_waveforms  u16
     20  reserved     u32  0
     24  seq          i64  per-machine batch sequence number, >= 0
    machine id (machine_len bytes), padding
    t: n_rows float64 (seconds, machine clock, finite)
    per column:  name_len u16, dtype u8, reserved u8, name, padding, n_rows values, padding
    per waveform: name_len u16, dtype u8, flags u8 (bit 0: rpm present), n_values u32,
                  t0 f64, rate_hz f64, rpm f64 (0 when absent), name, padding,
                  n_values values, padding
    crc32 u32 (zlib CRC-32 of every byte before it)

dtype codes: 1 float64, 2 float32, 3 int64, 4 int32, 5 bool (one byte, 0 or 1).
Waveform values are float64 or float32.

Decoding is zero-copy: the arrays of the returned batch are views of the payload
(``np.frombuffer``) — read-only for a ``bytes`` payload, aliasing the caller's buffer for
a ``bytearray`` — so they keep the payload alive; copy a column to modify it.
"""

from __future__ import annotations

import functools
import json
import math
import struct
import threading
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from machinetwin.errors import MachinetwinError
from machinetwin.model import (
    Alarm,
    AlarmCode,
    MachineDescriptor,
    MachineEvent,
    SampleBatch,
    Severity,
    Waveform,
)

MAGIC = b"MTSB"
VERSION = 1

# Limits a payload may declare. A 100 ms batch of 50 signals is ~40 kB and a minute of
# spindle vibration at 25.6 kHz is ~6 MB as float32, so these leave ample headroom while
# keeping a hostile payload from making the hub allocate more than MAX_PAYLOAD_BYTES.
MAX_PAYLOAD_BYTES = 64 * 1024 * 1024
MAX_ROWS = 1_000_000
MAX_COLUMNS = 1024
MAX_WAVEFORMS = 64
MAX_WAVEFORM_VALUES = 4_000_000
MAX_NAME_BYTES = 128
MAX_JSON_BYTES = 1024 * 1024
MAX_ACK_RANGES = 4096
MAX_SEQ = 2**63 - 1

_HEADER = struct.Struct("<4sBBHIIHHIq")
_COLUMN = struct.Struct("<HBB")
_WAVEFORM = struct.Struct("<HBBIddd")
_CRC = struct.Struct("<I")
_ZEROS = bytes(8)
_WAVEFORM_HAS_RPM = 0x01
_SINGLE_COPY_BYTES = 1 << 20  # from here on, copying the payload twice costs more than CRC calls

_DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f8"),
    2: np.dtype("<f4"),
    3: np.dtype("<i8"),
    4: np.dtype("<i4"),
    5: np.dtype("?"),
}
# Looked up by (kind, itemsize) so that native and explicit-endian dtypes both match.
_CODES: dict[tuple[str, int], int] = {(dt.kind, dt.itemsize): code for code, dt in _DTYPES.items()}
_BOOL_CODE = 5
_WAVEFORM_CODES = (1, 2)


class PayloadError(MachinetwinError):
    """A payload is malformed, truncated, oversized or inconsistent (or cannot be encoded).

    ``field`` names the part of the payload; ``offset`` is the byte offset in a binary
    payload where the problem is (``None`` where no offset applies, e.g. a JSON key).
    """

    def __init__(self, field: str, offset: int | None, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.offset = offset
        self.message = message

    def __str__(self) -> str:
        where = self.field if self.offset is None else f"{self.field} at byte {self.offset}"
        return f"{where}: {self.message}"


# --------------------------------------------------------------------------- encoding


def _pad(n: int) -> bytes:
    return _ZEROS[: -n % 8]


def _name_bytes(name: object, field: str) -> bytes:
    if not isinstance(name, str):
        raise PayloadError(field, None, f"expected a str, got {type(name).__name__}")
    raw = name.encode("utf-8", "strict")
    if not 0 < len(raw) <= MAX_NAME_BYTES:
        raise PayloadError(
            field, None, f"name must be 1..{MAX_NAME_BYTES} UTF-8 bytes, got {len(raw)}"
        )
    return raw


@functools.lru_cache(maxsize=4096)
def _column_head(name: str, code: int) -> bytes:
    """Column header, name and padding: the same every batch, so encoded once per name."""
    raw = _name_bytes(name, f"column {name!r}")
    head = _COLUMN.pack(len(raw), code, 0) + raw
    return head + _pad(len(head))


def _column_array(values: object, n_rows: int, name: str) -> tuple[int, np.ndarray]:
    arr = np.asarray(values)
    if arr.ndim != 1 or len(arr) != n_rows:
        raise PayloadError(
            f"column {name!r}",
            None,
            f"expected {n_rows} values in one dimension, got shape {arr.shape}",
        )
    code = _CODES.get((arr.dtype.kind, arr.dtype.itemsize))
    if code is None:
        raise PayloadError(
            f"column {name!r}", None, f"unsupported dtype {arr.dtype} (float64/32, int64/32, bool)"
        )
    # ascontiguousarray is a no-op for the usual little-endian contiguous column.
    return code, np.ascontiguousarray(arr, dtype=_DTYPES[code])


def _check_count(field: str, n: int, limit: int) -> None:
    if n > limit:
        raise PayloadError(field, None, f"{n} exceeds the limit of {limit}")


def _waveform_parts(w: Waveform, index: int) -> list[Any]:
    field = f"waveform[{index}]"
    name = _name_bytes(w.signal, f"{field}.signal")
    values = np.asarray(w.values)
    if values.ndim != 1:
        raise PayloadError(
            f"{field}.values", None, f"expected one dimension, got shape {values.shape}"
        )
    _check_count(f"{field}.values", len(values), MAX_WAVEFORM_VALUES)
    code = 2 if values.dtype == np.float32 else 1
    values = np.ascontiguousarray(values, dtype=_DTYPES[code])
    t0, rate = float(w.t0), float(w.rate_hz)
    if not math.isfinite(t0):
        raise PayloadError(f"{field}.t0", None, f"must be finite, got {t0}")
    if not (math.isfinite(rate) and rate > 0):
        raise PayloadError(f"{field}.rate_hz", None, f"must be finite and > 0, got {rate}")
    flags, rpm = 0, 0.0
    if w.rpm is not None:
        flags, rpm = _WAVEFORM_HAS_RPM, float(w.rpm)
        if not math.isfinite(rpm):
            raise PayloadError(f"{field}.rpm", None, f"must be finite, got {rpm}")
    head = _WAVEFORM.pack(len(name), code, flags, len(values), t0, rate, rpm)
    return [head, name, _pad(len(head) + len(name)), values, _pad(values.nbytes)]


def encode_batch(batch: SampleBatch) -> bytes:
    """Encode a batch into one self-checking binary payload (see the module docstring)."""
    machine = _name_bytes(batch.machine, "machine")
    if not 0 <= batch.seq <= MAX_SEQ:
        raise PayloadError("seq", None, f"must be assigned (0..2**63-1), got {batch.seq}")
    t = np.ascontiguousarray(batch.t, dtype="<f8")
    if t.ndim != 1:
        raise PayloadError("t", None, f"expected one dimension, got shape {t.shape}")
    n_rows = len(t)
    _check_count("n_rows", n_rows, MAX_ROWS)
    _check_count("n_columns", len(batch.columns), MAX_COLUMNS)
    _check_count("n_waveforms", len(batch.waveforms), MAX_WAVEFORMS)
    if not np.isfinite(t).all():
        raise PayloadError("t", None, "sample times must be finite")

    parts: list[Any] = [b"", machine, _pad(len(machine)), t]
    for name, values in batch.columns.items():
        code, arr = _column_array(values, n_rows, name)
        parts += [_column_head(name, code), arr, _pad(arr.nbytes)]
    for i, w in enumerate(batch.waveforms):
        parts += _waveform_parts(w, i)

    body_len = _HEADER.size + sum(len(p) if type(p) is bytes else p.nbytes for p in parts)
    total = body_len + _CRC.size
    if total > MAX_PAYLOAD_BYTES:
        raise PayloadError(
            "payload", None, f"{total} bytes exceed MAX_PAYLOAD_BYTES={MAX_PAYLOAD_BYTES}"
        )
    n_cols, n_waves = len(batch.columns), len(batch.waveforms)
    parts[0] = _HEADER.pack(
        MAGIC, VERSION, 0, len(machine), total, n_rows, n_cols, n_waves, 0, batch.seq
    )
    if body_len < _SINGLE_COPY_BYTES:
        # Small batches have many small parts: one CRC pass over the joined body and a
        # second (cheap) copy beat a CRC call per part.
        body = b"".join(parts)
        return body + _CRC.pack(zlib.crc32(body))
    crc = 0
    for p in parts:
        crc = zlib.crc32(p, crc)
    parts.append(_CRC.pack(crc))
    return b"".join(parts)


# --------------------------------------------------------------------------- decoding


def _as_buffer(payload: object) -> memoryview:
    if not isinstance(payload, bytes | bytearray | memoryview):
        raise PayloadError("payload", 0, f"expected bytes, got {type(payload).__name__}")
    view = memoryview(payload)
    if not view.c_contiguous:
        raise PayloadError("payload", 0, "buffer is not contiguous")
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


class _Reader:
    """A cursor over the payload that refuses to read past the CRC trailer."""

    __slots__ = ("buf", "pos", "end")

    def __init__(self, buf: memoryview, pos: int, end: int) -> None:
        self.buf = buf
        self.pos = pos
        self.end = end

    def take(self, n: int, field: str) -> int:
        """Reserve ``n`` bytes; returns their start offset."""
        start = self.pos
        if n > self.end - start:
            raise PayloadError(field, start, f"truncated: needs {n} bytes, {self.end - start} left")
        self.pos = start + n
        return start

    def padding(self, field: str) -> None:
        n = -self.pos % 8
        if n:
            start = self.take(n, field)
            if self.buf[start : start + n] != _ZEROS[:n]:
                raise PayloadError(field, start, "padding bytes must be zero")

    def name(self, n: int, field: str) -> str:
        if not 0 < n <= MAX_NAME_BYTES:
            raise PayloadError(field, self.pos, f"name length must be 1..{MAX_NAME_BYTES}, got {n}")
        start = self.take(n, field)
        try:
            return str(self.buf[start : start + n], "utf-8")
        except UnicodeDecodeError as e:
            raise PayloadError(field, start + e.start, "name is not valid UTF-8") from None

    def array(self, code: int, count: int, field: str) -> np.ndarray:
        dtype = _DTYPES[code]
        start = self.take(count * dtype.itemsize, field)
        return np.frombuffer(self.buf, dtype=dtype, count=count, offset=start)


def _check_header(buf: memoryview) -> tuple[int, ...]:
    size = len(buf)
    if size > MAX_PAYLOAD_BYTES:
        raise PayloadError("payload", MAX_PAYLOAD_BYTES, f"{size} bytes exceed MAX_PAYLOAD_BYTES")
    if size < _HEADER.size + _CRC.size:
        raise PayloadError(
            "header",
            size,
            f"truncated: {size} bytes, a batch has at least {_HEADER.size + _CRC.size}",
        )
    magic, version, flags, machine_len, total, n_rows, n_cols, n_waves, reserved, seq = (
        _HEADER.unpack_from(buf)
    )
    if magic != MAGIC:
        raise PayloadError("magic", 0, f"expected {MAGIC!r}, got {magic!r}")
    if version != VERSION:
        raise PayloadError(
            "version", 4, f"unsupported version {version} (this codec reads {VERSION})"
        )
    if total != size:
        raise PayloadError(
            "total_len", 8, f"header says {total} bytes, payload has {size} (truncated or padded)"
        )
    # Checked before the remaining fields: a flipped bit anywhere is reported as such.
    (stored,) = _CRC.unpack_from(buf, size - _CRC.size)
    actual = zlib.crc32(buf[: size - _CRC.size])
    if stored != actual:
        raise PayloadError(
            "crc32", size - _CRC.size, f"stored {stored:#010x}, computed {actual:#010x}"
        )
    if flags or reserved:
        raise PayloadError(
            "flags" if flags else "reserved", 5 if flags else 20, "reserved bits must be zero"
        )
    if seq < 0:
        raise PayloadError("seq", 24, f"must be >= 0, got {seq}")
    for field, offset, n, limit in (
        ("n_rows", 12, n_rows, MAX_ROWS),
        ("n_columns", 16, n_cols, MAX_COLUMNS),
        ("n_waveforms", 18, n_waves, MAX_WAVEFORMS),
    ):
        if n > limit:
            raise PayloadError(field, offset, f"{n} exceeds the limit of {limit}")
    return machine_len, n_rows, n_cols, n_waves, seq


def _read_columns(r: _Reader, n_rows: int, n_cols: int) -> dict[str, np.ndarray]:
    """The columns, in one tight loop: this is the per-batch cost that scales with width."""
    buf, end, head_size = r.buf, r.end, _COLUMN.size
    pos = r.pos
    columns: dict[str, np.ndarray] = {}
    for i in range(n_cols):
        if end - pos < head_size:
            raise PayloadError(f"column[{i}]", pos, f"truncated: {end - pos} bytes left")
        name_len, code, reserved = _COLUMN.unpack_from(buf, pos)
        dtype = _DTYPES.get(code)
        if dtype is None:
            raise PayloadError(f"column[{i}].dtype", pos + 2, f"unknown dtype code {code}")
        if reserved:
            raise PayloadError(f"column[{i}].reserved", pos + 3, "reserved byte must be zero")
        name_at = pos + head_size
        data = name_at + name_len + (-(head_size + name_len) % 8)
        if not 0 < name_len <= MAX_NAME_BYTES or data > end:
            r.pos = name_at  # let the reader name the exact problem
            r.name(name_len, f"column[{i}].name")
            r.padding(f"column[{i}].name")
            raise PayloadError(f"column[{i}].name", name_at, "truncated")  # not reached
        if buf[name_at + name_len : data] != _ZEROS[: data - name_at - name_len]:
            raise PayloadError(
                f"column[{i}].name", name_at + name_len, "padding bytes must be zero"
            )
        try:
            name = str(buf[name_at : name_at + name_len], "utf-8")
        except UnicodeDecodeError as e:
            raise PayloadError(f"column[{i}].name", name_at + e.start, "not valid UTF-8") from None
        if name in columns:
            raise PayloadError(f"column[{i}].name", name_at, f"duplicate column {name!r}")
        nbytes = n_rows * dtype.itemsize
        pos = data + nbytes + (-nbytes % 8)
        if pos > end:
            raise PayloadError(
                f"column {name!r}", data, f"truncated: needs {pos - data} bytes, {end - data} left"
            )
        if nbytes % 8 and buf[data + nbytes : pos] != _ZEROS[: pos - data - nbytes]:
            raise PayloadError(f"column {name!r}", data + nbytes, "padding bytes must be zero")
        columns[name] = values = np.frombuffer(buf, dtype=dtype, count=n_rows, offset=data)
        if code == _BOOL_CODE:
            _check_bools(values, data, name)
    r.pos = pos
    return columns


def _check_bools(values: np.ndarray, offset: int, name: str) -> None:
    raw = values.view(np.uint8)
    if len(raw) and raw.max() > 1:
        bad = int(np.flatnonzero(raw > 1)[0])
        raise PayloadError(
            f"column {name!r}", offset + bad, f"bool byte must be 0 or 1, got {raw[bad]}"
        )


def _read_waveform(r: _Reader, index: int) -> Waveform:
    field = f"waveform[{index}]"
    start = r.take(_WAVEFORM.size, field)
    name_len, code, flags, n_values, t0, rate, rpm = _WAVEFORM.unpack_from(r.buf, start)
    if code not in _WAVEFORM_CODES:
        raise PayloadError(
            f"{field}.dtype", start + 2, f"waveform dtype code must be 1 or 2, got {code}"
        )
    if flags & ~_WAVEFORM_HAS_RPM:
        raise PayloadError(f"{field}.flags", start + 3, f"unknown flag bits {flags:#04x}")
    if n_values > MAX_WAVEFORM_VALUES:
        raise PayloadError(
            f"{field}.n_values", start + 4, f"{n_values} exceeds {MAX_WAVEFORM_VALUES}"
        )
    if not math.isfinite(t0):
        raise PayloadError(f"{field}.t0", start + 8, f"must be finite, got {t0}")
    if not (math.isfinite(rate) and rate > 0):
        raise PayloadError(f"{field}.rate_hz", start + 16, f"must be finite and > 0, got {rate}")
    has_rpm = bool(flags & _WAVEFORM_HAS_RPM)
    if not math.isfinite(rpm) or (not has_rpm and rpm != 0.0):
        raise PayloadError(f"{field}.rpm", start + 24, f"must be finite (0 when absent), got {rpm}")
    signal = r.name(name_len, f"{field}.signal")
    r.padding(f"{field}.signal")
    values = r.array(code, n_values, f"{field}.values")
    r.padding(f"{field}.values")
    return Waveform(signal=signal, t0=t0, rate_hz=rate, values=values, rpm=rpm if has_rpm else None)


def decode_batch(payload: bytes | bytearray | memoryview) -> SampleBatch:
    """Decode and validate a batch payload; raises only :class:`PayloadError`.

    A machine sends the same layout (names, dtypes, row count) batch after batch, so
    the layout of a decoded batch is remembered (:class:`_Layout`): the next payload of
    that machine with the same sizes is checked against it with one numpy comparison of
    every byte that is not a value, and its columns are sliced out of one view of the
    payload, without the per-column parsing loop (~15x faster at 50 columns). Whatever
    differs from the layout goes through the full parser, which names the problem.
    """
    buf = _as_buffer(payload)
    header = _check_header(buf)
    machine_len, n_rows, n_cols, n_waves, seq = header
    if n_waves:  # vibration windows: rare (one batch a minute) and mostly bulk data
        return _decode_parsed(buf, header)
    key = (bytes(buf[_HEADER.size : _HEADER.size + machine_len]), len(buf), n_rows, n_cols)
    layout = _LAYOUTS.get(key)
    if layout is not None:
        batch = layout.decode(buf, seq)
        if batch is not None:
            return batch
    batch = _decode_parsed(buf, header)
    _remember_layout(key, buf, batch)
    return batch


def _decode_parsed(buf: memoryview, header: tuple[int, ...]) -> SampleBatch:
    """The full parser: every field read and checked in order."""
    machine_len, n_rows, n_cols, n_waves, seq = header
    r = _Reader(buf, _HEADER.size, len(buf) - _CRC.size)
    machine = r.name(machine_len, "machine")
    r.padding("machine")
    t_start = r.pos
    t = r.array(1, n_rows, "t")
    r.padding("t")
    if n_rows and not np.isfinite(t).all():
        bad = int(np.flatnonzero(~np.isfinite(t))[0])
        raise PayloadError("t", t_start + 8 * bad, f"sample time must be finite, got {t[bad]}")
    columns = _read_columns(r, n_rows, n_cols)
    waveforms = [_read_waveform(r, i) for i in range(n_waves)]
    if r.pos != r.end:
        raise PayloadError("trailer", r.pos, f"{r.end - r.pos} unexpected bytes before the CRC")
    return SampleBatch(machine=machine, t=t, columns=columns, seq=seq, waveforms=waveforms)


# --------------------------------------------------------------------------- JSON messages
#
# Birth, event and ack messages are rare and small, so readable JSON wins over bytes.
# Each is {"v": 1, "kind": ..., ...}; validated by hand so that the hot ack path stays
# cheap and every error names the key.

JSON_VERSION = 1


def _dump(doc: dict[str, Any], field: str) -> bytes:
    def default(obj: object) -> Any:
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray | tuple | set | frozenset):
            return list(obj.tolist() if isinstance(obj, np.ndarray) else obj)
        raise TypeError(f"{type(obj).__name__} is not JSON serialisable")

    try:
        raw = json.dumps(doc, allow_nan=False, separators=(",", ":"), default=default).encode()
    except (TypeError, ValueError, RecursionError) as e:
        raise PayloadError(field, None, f"cannot encode: {e}") from None
    if len(raw) > MAX_JSON_BYTES:
        raise PayloadError(field, None, f"{len(raw)} bytes exceed MAX_JSON_BYTES={MAX_JSON_BYTES}")
    return raw


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _load(payload: object, kind: str) -> dict[str, Any]:
    buf = _as_buffer(payload)
    if len(buf) > MAX_JSON_BYTES:
        raise PayloadError("payload", MAX_JSON_BYTES, f"{len(buf)} bytes exceed MAX_JSON_BYTES")
    try:
        text = str(buf, "utf-8")
    except UnicodeDecodeError as e:
        raise PayloadError("payload", e.start, "not valid UTF-8") from None
    try:
        doc = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise PayloadError(
            "payload", len(text[: e.pos].encode()), f"invalid JSON: {e.msg}"
        ) from None
    except (ValueError, RecursionError) as e:  # huge integers, NaN/Infinity, deep nesting
        raise PayloadError("payload", None, f"invalid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise PayloadError("payload", 0, f"expected a JSON object, got {type(doc).__name__}")
    if doc.get("v") != JSON_VERSION or type(doc.get("v")) is not int:
        raise PayloadError(
            "v", None, f"unsupported version {doc.get('v')!r} (this codec reads {JSON_VERSION})"
        )
    if doc.get("kind") != kind:
        raise PayloadError("kind", None, f"expected {kind!r}, got {doc.get('kind')!r}")
    return doc


def _str(
    doc: dict[str, Any], key: str, path: str, *, empty: bool = False, limit: int = MAX_NAME_BYTES
) -> str:
    value = doc.get(key)
    if not isinstance(value, str):
        raise PayloadError(f"{path}{key}", None, f"expected a string, got {type(value).__name__}")
    if (not value and not empty) or len(value.encode()) > limit:
        raise PayloadError(
            f"{path}{key}", None, f"length must be {0 if empty else 1}..{limit} bytes"
        )
    return value


def _int(value: object, field: str, lo: int, hi: int) -> int:
    if type(value) is not int:
        raise PayloadError(field, None, f"expected an integer, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise PayloadError(field, None, f"must be in {lo}..{hi}, got {value}")
    return value


def _float(value: object, field: str) -> float:
    if type(value) not in (int, float):
        raise PayloadError(field, None, f"expected a number, got {type(value).__name__}")
    number = float(value)  # type: ignore[arg-type]
    if not math.isfinite(number):  # "1e999" parses as inf
        raise PayloadError(field, None, f"must be finite, got {number}")
    return number


def _str_list(doc: dict[str, Any], key: str) -> tuple[str, ...]:
    items = doc.get(key)
    if not isinstance(items, list) or len(items) > MAX_COLUMNS:
        raise PayloadError(key, None, f"expected a list of at most {MAX_COLUMNS} strings")
    return tuple(_list_str(item, f"{key}[{i}]") for i, item in enumerate(items))


def _list_str(item: object, field: str) -> str:
    if not isinstance(item, str) or not 0 < len(item.encode()) <= MAX_NAME_BYTES:
        raise PayloadError(field, None, f"expected a string of 1..{MAX_NAME_BYTES} bytes")
    return item


def encode_descriptor(descriptor: MachineDescriptor) -> bytes:
    """The birth message: what a machine is, sent when the edge connects."""
    return _dump(
        {
            "v": JSON_VERSION,
            "kind": "birth",
            "machine_id": descriptor.machine_id,
            "name": descriptor.name,
            "site": descriptor.site,
            "model": descriptor.model,
            "signals": list(descriptor.signals),
            "axes": list(descriptor.axes),
            "extra": descriptor.extra,
        },
        "descriptor",
    )


def decode_descriptor(payload: bytes | bytearray | memoryview) -> MachineDescriptor:
    doc = _load(payload, "birth")
    extra = doc.get("extra", {})
    if not isinstance(extra, dict):
        raise PayloadError("extra", None, f"expected an object, got {type(extra).__name__}")
    return MachineDescriptor(
        machine_id=_str(doc, "machine_id", ""),
        name=_str(doc, "name", "", empty=True, limit=1024),
        site=_str(doc, "site", "", empty=True, limit=1024),
        model=_str(doc, "model", "", empty=True, limit=1024),
        signals=_str_list(doc, "signals"),
        axes=_str_list(doc, "axes"),
        extra=extra,
    )


def _alarm_doc(alarm: Alarm) -> dict[str, Any]:
    return {
        "code": str(alarm.code),
        "severity": int(alarm.severity),
        "message": alarm.message,
        "source": alarm.source,
        "raised_at": alarm.raised_at,
        "cleared_at": alarm.cleared_at,
    }


def _alarm(doc: object) -> Alarm:
    if not isinstance(doc, dict):
        raise PayloadError("alarm", None, f"expected an object, got {type(doc).__name__}")
    code = _str(doc, "code", "alarm.")
    try:
        alarm_code = AlarmCode(code)
    except ValueError:
        raise PayloadError("alarm.code", None, f"unknown alarm code {code!r}") from None
    severity = _int(doc.get("severity"), "alarm.severity", min(Severity), max(Severity))
    cleared = doc.get("cleared_at")
    return Alarm(
        code=alarm_code,
        severity=Severity(severity),
        message=_str(doc, "message", "alarm.", empty=True, limit=4096),
        source=_str(doc, "source", "alarm.", empty=True),
        raised_at=_float(doc.get("raised_at"), "alarm.raised_at"),
        cleared_at=None if cleared is None else _float(cleared, "alarm.cleared_at"),
    )


def encode_event(event: MachineEvent) -> bytes:
    """An event (alarm raised/cleared, state change); ``value`` must be JSON-serialisable."""
    return _dump(
        {
            "v": JSON_VERSION,
            "kind": "event",
            "machine_id": event.machine_id,
            "t": event.t,
            "event": event.kind,
            "alarm": None if event.alarm is None else _alarm_doc(event.alarm),
            "value": event.value,
        },
        "event",
    )


def decode_event(payload: bytes | bytearray | memoryview) -> MachineEvent:
    doc = _load(payload, "event")
    alarm = doc.get("alarm")
    return MachineEvent(
        machine_id=_str(doc, "machine_id", ""),
        t=_float(doc.get("t"), "t"),
        kind=_str(doc, "event", ""),
        alarm=None if alarm is None else _alarm(alarm),
        value=doc.get("value"),
    )


@dataclass(frozen=True, slots=True)
class AckMessage:
    """The hub's acknowledgement: these batches of ``machine`` are stored.

    ``ranges`` are inclusive ``(first_seq, last_seq)`` pairs, so a run of consecutive
    batches costs one pair however long it is.
    """

    machine: str
    ranges: tuple[tuple[int, int], ...]

    @property
    def count(self) -> int:
        return sum(last - first + 1 for first, last in self.ranges)


def seq_ranges(seqs: Iterable[int]) -> tuple[tuple[int, int], ...]:
    """Compress sequence numbers into sorted, merged inclusive ranges."""
    out: list[tuple[int, int]] = []
    for s in sorted(set(seqs)):
        if out and s == out[-1][1] + 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return tuple(out)


def encode_ack(ack: AckMessage) -> bytes:
    if len(ack.ranges) > MAX_ACK_RANGES:
        raise PayloadError(
            "ranges", None, f"{len(ack.ranges)} ranges exceed MAX_ACK_RANGES={MAX_ACK_RANGES}"
        )
    for i, (first, last) in enumerate(ack.ranges):
        if not 0 <= first <= last <= MAX_SEQ:
            raise PayloadError(
                f"ranges[{i}]", None, f"need 0 <= first <= last <= 2**63-1, got ({first}, {last})"
            )
    _name_bytes(ack.machine, "machine")
    # Written directly (the hub sends one per machine per store transaction): the same
    # bytes as json.dumps with compact separators, at a fraction of the cost.
    ranges = ",".join(f"[{int(first)},{int(last)}]" for first, last in ack.ranges)
    machine = json.dumps(ack.machine)
    return f'{{"v":{JSON_VERSION},"kind":"ack","machine":{machine},"ranges":[{ranges}]}}'.encode()


def decode_ack(payload: bytes | bytearray | memoryview) -> AckMessage:
    doc = _load(payload, "ack")
    machine = _str(doc, "machine", "")
    items = doc.get("ranges")
    if not isinstance(items, list) or len(items) > MAX_ACK_RANGES:
        raise PayloadError(
            "ranges", None, f"expected a list of at most {MAX_ACK_RANGES} [first, last] pairs"
        )
    ranges = []
    for i, item in enumerate(items):
        if not isinstance(item, list) or len(item) != 2:
            raise PayloadError(f"ranges[{i}]", None, "expected a [first, last] pair")
        first = _int(item[0], f"ranges[{i}][0]", 0, MAX_SEQ)
        last = _int(item[1], f"ranges[{i}][1]", first, MAX_SEQ)
        ranges.append((first, last))
    return AckMessage(machine=machine, ranges=tuple(ranges))


# --------------------------------------------------------------------------- layout cache


class ColumnBlock(dict):
    """The columns of a batch decoded through a known layout: a plain ``dict`` of views
    that can also hand over all its values as one ``(n_columns, n_rows)`` float64 array
    (:meth:`matrix`), so that the hub handles a 50-signal batch in a few numpy calls
    instead of 50. Only while unchanged: any change to the dict drops the block view.
    """

    __slots__ = ("_source",)

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._source: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def block_shape(self) -> tuple[int, int] | None:
        """``matrix().shape`` without gathering; None if there is no block."""
        source = self._source
        return None if source is None else source[1].shape

    def matrix(self) -> np.ndarray | None:
        """All values, one row per column in order (a copy); None if not available."""
        source = self._source
        return None if source is None else source[0][source[1]]

    def _changed(self, method: str, *args: Any) -> Any:
        self._source = None
        return getattr(super(), method)(*args)

    def __setitem__(self, key: str, value: Any) -> None:
        self._changed("__setitem__", key, value)

    def __delitem__(self, key: str) -> None:
        self._changed("__delitem__", key)

    def __ior__(self, other: Any) -> ColumnBlock:
        self._changed("__ior__", other)
        return self

    def pop(self, *args: Any) -> Any:
        return self._changed("pop", *args)

    def popitem(self) -> Any:
        return self._changed("popitem")

    def clear(self) -> None:
        self._changed("clear")

    def update(self, *args: Any, **kwargs: Any) -> None:
        self._source = None
        super().update(*args, **kwargs)

    def setdefault(self, *args: Any) -> Any:
        return self._changed("setdefault", *args)


# A fleet's worth of layouts, each small: ~5 bytes per fixed byte, and a layout with more
# than _MAX_FIXED_BYTES of them (hundreds of columns) is not worth remembering. A client
# cycling layouts costs only speed, and memory stays under _MAX_LAYOUTS * 80 kB.
_MAX_LAYOUTS = 1024
_MAX_FIXED_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where a known batch layout keeps its values, and the bytes that must not change.

    ``fixed_at``/``fixed``: offsets and expected values of every byte before the CRC
    except ``seq``, ``t`` and the column values (header, machine id, column heads,
    names, padding). If they all match, the full parser would read exactly the same
    names, dtypes and offsets, so its checks need not run again.
    """

    machine: str
    n_rows: int
    t_at: int
    names: tuple[str, ...]
    views: tuple[tuple[np.dtype, tuple[slice, ...]], ...]  # per dtype: columns' slices
    order: tuple[int, ...]  # column i of the batch is the order[i]-th slice taken
    bool_columns: tuple[tuple[str, int], ...]  # (name, byte offset): values to check
    fixed_at: np.ndarray
    fixed: bytes
    gather: np.ndarray | None  # (n_cols, n_rows) float64 indices, if every column is float64

    def decode(self, buf: memoryview, seq: int) -> SampleBatch | None:
        """The batch, or None if the payload's structure differs from this layout."""
        # gathered bytes compared as bytes (memcmp): np.array_equal cost more than this
        if np.frombuffer(buf, np.uint8)[self.fixed_at].tobytes() != self.fixed:
            return None
        t = np.frombuffer(buf, _DTYPES[1], count=self.n_rows, offset=self.t_at)
        if len(t) and not np.isfinite(t).all():
            return None  # the full parser names the bad time
        arrays: list[np.ndarray] = []
        view = None
        for dtype, slices in self.views:
            view = np.frombuffer(buf, dtype, count=len(buf) // dtype.itemsize)
            arrays += map(view.__getitem__, slices)
        columns = ColumnBlock(zip(self.names, map(arrays.__getitem__, self.order), strict=True))
        for name, offset in self.bool_columns:
            _check_bools(columns[name], offset, name)
        if self.gather is not None:  # one float64 dtype: the block can be gathered at once
            columns._source = (view, self.gather)
        return SampleBatch(self.machine, t, columns, seq=seq)


def _remember_layout(key: tuple[bytes, int, int, int], buf: memoryview, batch: SampleBatch) -> None:
    """Learn the layout of a batch the full parser accepted (views of ``buf``)."""
    if not batch.columns:
        return  # nothing to gain
    base = np.frombuffer(buf, np.uint8)
    address = base.ctypes.data
    n = len(batch.t)
    variable = np.zeros(len(buf), bool)
    variable[24:32] = True  # seq
    t_at = batch.t.ctypes.data - address
    variable[t_at : t_at + 8 * n] = True
    variable[len(buf) - _CRC.size :] = True  # the CRC, checked on its own
    by_dtype: dict[np.dtype, list[tuple[int, slice]]] = {}
    bools = []
    for i, (name, col) in enumerate(batch.columns.items()):
        at = col.ctypes.data - address
        variable[at : at + col.nbytes] = True
        first = at // col.dtype.itemsize
        by_dtype.setdefault(col.dtype, []).append((i, slice(first, first + n)))
        if col.dtype == _DTYPES[_BOOL_CODE]:
            bools.append((name, at))
    taken = [i for items in by_dtype.values() for i, _ in items]
    order = tuple(int(j) for j in np.argsort(taken))
    fixed_at = np.flatnonzero(~variable).astype(np.int32)  # payloads are < 2 GiB
    if len(fixed_at) > _MAX_FIXED_BYTES:
        return
    gather = None
    if list(by_dtype) == [_DTYPES[1]]:
        starts = np.asarray([sl.start for _, sl in by_dtype[_DTYPES[1]]], np.intp)
        gather = starts[:, None] + np.arange(n, dtype=np.intp)
    layout = _Layout(
        batch.machine, n, t_at, tuple(batch.columns),
        tuple((dt, tuple(sl for _, sl in items)) for dt, items in by_dtype.items()),
        order, tuple(bools), fixed_at, base[fixed_at].tobytes(), gather,
    )  # fmt: skip
    with _LAYOUTS_LOCK:  # decoders may run on several threads
        if len(_LAYOUTS) >= _MAX_LAYOUTS:
            _LAYOUTS.pop(next(iter(_LAYOUTS)))  # oldest first
        _LAYOUTS[key] = layout


_LAYOUTS: dict[tuple[bytes, int, int, int], _Layout] = {}
_LAYOUTS_LOCK = threading.Lock()
