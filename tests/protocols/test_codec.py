"""The MQTT payload codec: round trips, strict validation, and fuzzing.

The fuzz tests state the codec's contract for the hub: whatever bytes arrive, decoding
either returns a valid object or raises PayloadError — never another exception.
"""

from __future__ import annotations

import contextlib
import json
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from machinetwin.model import (
    Alarm,
    AlarmCode,
    MachineDescriptor,
    MachineEvent,
    SampleBatch,
    Severity,
    Waveform,
)
from machinetwin.protocols import codec
from machinetwin.protocols.codec import (
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

DTYPES = [np.float64, np.float32, np.int64, np.int32, np.bool_]
names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=20)


@st.composite
def batches(draw: st.DrawFn, max_rows: int = 40) -> SampleBatch:
    n = draw(st.integers(0, max_rows))
    t = draw(hnp.arrays(np.float64, n, elements=st.floats(-1e9, 1e9)))
    columns = {}
    for name in draw(st.lists(names, max_size=6, unique=True)):
        dtype = draw(st.sampled_from(DTYPES))
        columns[name] = draw(hnp.arrays(dtype, n))  # any values, NaN and inf included
    waveforms = [
        Waveform(
            signal=draw(names),
            t0=draw(st.floats(-1e6, 1e6)),
            rate_hz=draw(st.floats(1.0, 1e6)),
            values=draw(
                hnp.arrays(
                    draw(st.sampled_from([np.float64, np.float32])), draw(st.integers(0, 50))
                )
            ),
            rpm=draw(st.none() | st.floats(0, 30_000)),
        )
        for _ in range(draw(st.integers(0, 2)))
    ]
    return SampleBatch(
        machine=draw(names),
        t=t,
        columns=columns,
        seq=draw(st.integers(0, 2**63 - 1)),
        waveforms=waveforms,
    )


def assert_same(a: SampleBatch, b: SampleBatch) -> None:
    assert (a.machine, a.seq) == (b.machine, b.seq)
    np.testing.assert_array_equal(a.t, b.t)
    assert list(a.columns) == list(b.columns)
    for name, col in a.columns.items():
        assert b.columns[name].dtype == col.dtype
        np.testing.assert_array_equal(b.columns[name], col)  # NaN == NaN here
    assert len(a.waveforms) == len(b.waveforms)
    for wa, wb in zip(a.waveforms, b.waveforms, strict=True):
        assert (wa.signal, wa.t0, wa.rate_hz, wa.rpm) == (wb.signal, wb.t0, wb.rate_hz, wb.rpm)
        assert wa.values.dtype == wb.values.dtype
        np.testing.assert_array_equal(wa.values, wb.values)


def reseal(payload: bytes | bytearray) -> bytes:
    """Fix total_len and the CRC so a mutation reaches the structural checks."""
    body = bytearray(payload[:-4]) if len(payload) >= 4 else bytearray(payload)
    if len(body) >= 12:
        struct.pack_into("<I", body, 8, len(body) + 4)
    return bytes(body) + struct.pack("<I", zlib.crc32(body))


def decode_or_payload_error(payload: bytes) -> None:
    try:
        batch = decode_batch(payload)
    except PayloadError as e:
        assert e.field and str(e)
        return
    # Whatever decodes must be a consistent batch that encodes back to the same bytes.
    assert encode_batch(batch) == bytes(payload)


def example_batch(n: int = 10) -> SampleBatch:
    t = np.arange(n) * 0.01
    return SampleBatch(
        machine="harbin-vmc-1",
        t=t,
        columns={
            "x.pos": np.sin(t),
            "spindle.load": np.linspace(0, 1, n, dtype=np.float32),
            "line": np.arange(n, dtype=np.int64),
            "tool": np.full(n, 2, dtype=np.int32),
            "estop": np.arange(n) % 2 == 0,
        },
        seq=42,
        waveforms=[Waveform("spindle.vib", 0.0, 12_000.0, np.ones(64, np.float32), rpm=6000.0)],
    )


# --------------------------------------------------------------------------- round trips


@given(batches())
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_round_trip(batch: SampleBatch) -> None:
    payload = encode_batch(batch)
    decoded = decode_batch(payload)
    assert_same(batch, decoded)
    assert encode_batch(decoded) == payload  # the encoding is canonical


def test_decoding_is_zero_copy_and_aligned() -> None:
    payload = encode_batch(example_batch(100))
    batch = decode_batch(payload)
    for col in [batch.t, *batch.columns.values(), batch.waveforms[0].values]:
        assert not col.flags.owndata and not col.flags.writeable
        assert np.shares_memory(col, np.frombuffer(payload, np.uint8))
        offset = col.__array_interface__["data"][0] - np.frombuffer(payload, np.uint8).ctypes.data
        assert offset % 8 == 0


def test_big_endian_and_strided_columns_are_normalised() -> None:
    n = 7
    batch = SampleBatch(
        "m", np.arange(n, dtype=">f8"), {"a": np.arange(2 * n, dtype=">i8")[::2]}, seq=0
    )
    decoded = decode_batch(encode_batch(batch))
    assert decoded.columns["a"].dtype == np.dtype("<i8")
    np.testing.assert_array_equal(decoded.columns["a"], np.arange(0, 2 * n, 2))


def test_accepts_bytearray_and_memoryview() -> None:
    payload = encode_batch(example_batch())
    assert_same(decode_batch(bytearray(payload)), example_batch())
    assert_same(decode_batch(memoryview(payload)), example_batch())


# --------------------------------------------------------------------------- encode refuses


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda b: setattr(b, "seq", -1), "seq"),
        (lambda b: setattr(b, "machine", ""), "machine"),
        (lambda b: setattr(b, "machine", "m" * 200), "machine"),
        (lambda b: b.columns.update({"s": np.array(["a"] * 10)}), "column 's'"),
        (lambda b: b.columns.update({"c": np.zeros(10, np.complex128)}), "column 'c'"),
        (lambda b: b.columns.update({"2d": np.zeros((10, 1))}), "column '2d'"),
        (lambda b: setattr(b.waveforms[0], "rate_hz", 0.0), "waveform[0].rate_hz"),
        (lambda b: setattr(b, "t", np.full(10, np.nan)), "t"),
    ],
)
def test_encode_refuses_what_the_decoder_would_reject(change, field: str) -> None:
    batch = example_batch()
    change(batch)
    with pytest.raises(PayloadError) as info:
        encode_batch(batch)
    assert info.value.field == field


def test_encode_refuses_too_many_rows() -> None:
    batch = SampleBatch("m", np.zeros(codec.MAX_ROWS + 1), seq=0)
    with pytest.raises(PayloadError, match="n_rows"):
        encode_batch(batch)


# --------------------------------------------------------------------------- decode refuses


def test_errors_name_field_and_offset() -> None:
    payload = encode_batch(example_batch())
    cases = {
        b"": ("header", 0),
        b"XXXX" + payload[4:]: ("magic", 0),
        payload[:4] + b"\x02" + payload[5:]: ("version", 4),
        payload[:-1]: ("total_len", 8),
        payload + b"\0": ("total_len", 8),
        payload[:40] + bytes([payload[40] ^ 1]) + payload[41:]: ("crc32", len(payload) - 4),
    }
    for bad, (field, offset) in cases.items():
        with pytest.raises(PayloadError) as info:
            decode_batch(bad)
        assert (info.value.field, info.value.offset) == (field, offset), bad[:16]
        assert f"{field} at byte {offset}" in str(info.value)


def test_structural_errors_after_a_valid_crc() -> None:
    payload = bytearray(encode_batch(example_batch()))
    n_rows = bytearray(payload)
    struct.pack_into("<I", n_rows, 12, 10**6)  # claims more rows than there are bytes
    with pytest.raises(PayloadError, match="truncated") as info:
        decode_batch(reseal(n_rows))
    assert info.value.field == "t"

    huge = bytearray(payload)
    struct.pack_into("<I", huge, 12, codec.MAX_ROWS + 1)
    with pytest.raises(PayloadError) as info:
        decode_batch(reseal(huge))
    assert (info.value.field, info.value.offset) == ("n_rows", 12)

    # column 0 header sits after the header, the padded machine id and t (10 float64)
    col0 = 32 + 16 + 80
    bad_dtype = bytearray(payload)
    bad_dtype[col0 + 2] = 99
    with pytest.raises(PayloadError) as info:
        decode_batch(reseal(bad_dtype))
    assert (info.value.field, info.value.offset) == ("column[0].dtype", col0 + 2)


def test_bool_bytes_must_be_0_or_1() -> None:
    batch = SampleBatch("m", np.zeros(3), {"estop": np.array([False, True, False])}, seq=1)
    payload = bytearray(encode_batch(batch))
    at = 32 + 8 + 24 + 16  # header, "m" padded, t, column header + name padded
    assert payload[at : at + 3] == b"\x00\x01\x00"
    payload[at + 2] = 7
    with pytest.raises(PayloadError) as info:
        decode_batch(reseal(payload))
    assert (info.value.field, info.value.offset) == ("column 'estop'", at + 2)


def test_duplicate_columns_are_rejected() -> None:
    a = encode_batch(SampleBatch("m", np.zeros(1), {"aa": np.ones(1)}, seq=0))
    b = encode_batch(SampleBatch("m", np.zeros(1), {"aa": np.ones(1), "bb": np.ones(1)}, seq=0))
    forged = bytearray(b)
    forged[b.index(b"bb") : b.index(b"bb") + 2] = b"aa"
    with pytest.raises(PayloadError, match="duplicate column"):
        decode_batch(reseal(forged))
    assert decode_batch(a).columns.keys() == {"aa"}


def test_non_finite_times_are_rejected() -> None:
    payload = bytearray(encode_batch(SampleBatch("m", np.zeros(3), seq=0)))
    struct.pack_into("<d", payload, 40 + 8, float("inf"))
    with pytest.raises(PayloadError) as info:
        decode_batch(reseal(payload))
    assert (info.value.field, info.value.offset) == ("t", 48)


def test_oversized_payload_is_rejected_before_reading() -> None:
    with pytest.raises(PayloadError, match="MAX_PAYLOAD_BYTES"):
        decode_batch(bytes(codec.MAX_PAYLOAD_BYTES + 1))


def test_non_bytes_input() -> None:
    with pytest.raises(PayloadError):
        decode_batch("MTSB")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- fuzzing


@given(st.binary(max_size=300))
@settings(max_examples=1000)
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    decode_or_payload_error(data)
    decode_or_payload_error(codec.MAGIC + b"\x01" + data)
    decode_or_payload_error(reseal(codec.MAGIC + b"\x01" + data))


@given(batches(max_rows=8), st.data())
@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
def test_fuzz_mutated_valid_payloads(batch: SampleBatch, data: st.DataObject) -> None:
    payload = bytearray(encode_batch(batch))
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete"]))
        at = data.draw(st.integers(0, max(len(payload) - 1, 0)))
        if kind == "flip" and payload:
            payload[at] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "set" and payload:
            payload[at] = data.draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF]))
        elif kind == "truncate":
            del payload[at:]
        elif kind == "insert":
            payload[at:at] = data.draw(st.binary(min_size=1, max_size=9))
        elif kind == "delete":
            del payload[at : at + data.draw(st.integers(1, 9))]
    decode_or_payload_error(bytes(payload))
    # with a valid CRC and length, the mutation reaches every structural check
    decode_or_payload_error(reseal(payload))


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**16 - 1), st.integers(0, 2**16 - 1))
def test_fuzz_header_counts_never_allocate(n_rows: int, n_cols: int, n_waves: int) -> None:
    payload = bytearray(encode_batch(example_batch(2)))
    struct.pack_into("<IHH", payload, 12, n_rows, n_cols, n_waves)
    decode_or_payload_error(reseal(payload))


# --------------------------------------------------------------------------- JSON messages


def test_descriptor_round_trip() -> None:
    d = MachineDescriptor(
        "harbin-vmc-1",
        "VMC 1",
        "Harbin",
        "VMC-600",
        signals=("x.pos", "spindle.load"),
        extra={"fw": [1, 2]},
    )
    assert decode_descriptor(encode_descriptor(d)) == d


@given(
    st.sampled_from(list(AlarmCode)),
    st.sampled_from(list(Severity)),
    st.text(max_size=50),
    st.floats(0, 1e9),
    st.none() | st.floats(0, 1e9),
    st.none() | st.integers(-(2**53), 2**53) | st.text(max_size=10),
)
def test_event_round_trip(code, severity, message, raised, cleared, value) -> None:
    alarm = Alarm(code, severity, message, "spindle", raised, cleared)
    event = MachineEvent("m1", raised, "alarm", alarm=alarm, value=value)
    decoded = decode_event(encode_event(event))
    assert decoded == event
    assert (
        decoded.alarm is not None
        and decoded.alarm.code is code
        and decoded.alarm.severity is severity
    )


def test_event_without_alarm() -> None:
    event = MachineEvent("m1", 1.5, "execution", value=1)
    assert decode_event(encode_event(event)) == event


@given(st.lists(st.integers(0, 2**63 - 1), max_size=50))
def test_ack_round_trip(seqs: list[int]) -> None:
    ranges = seq_ranges(seqs)
    assert sum(last - first + 1 for first, last in ranges) == len(set(seqs))
    ack = AckMessage("m1", ranges)
    decoded = decode_ack(encode_ack(ack))
    assert decoded == ack and decoded.count == len(set(seqs))


def test_seq_ranges_merges_runs() -> None:
    assert seq_ranges([5, 1, 2, 3, 3, 7, 6]) == ((1, 3), (5, 7))


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"v": 2, "kind": "ack", "machine": "m", "ranges": []}, "v"),
        ({"v": 1, "kind": "event", "machine": "m", "ranges": []}, "kind"),
        ({"v": 1, "kind": "ack", "ranges": []}, "machine"),
        ({"v": 1, "kind": "ack", "machine": "m", "ranges": [[3, 1]]}, "ranges[0][1]"),
        ({"v": 1, "kind": "ack", "machine": "m", "ranges": [[-1, 1]]}, "ranges[0][0]"),
        ({"v": 1, "kind": "ack", "machine": "m", "ranges": [[True, 1]]}, "ranges[0][0]"),
        ({"v": 1, "kind": "ack", "machine": "m", "ranges": [[1]]}, "ranges[0]"),
        ({"v": 1, "kind": "ack", "machine": "m", "ranges": [[0, 2**63]]}, "ranges[0][1]"),
        ({"v": 1, "kind": "ack", "machine": "m", "ranges": [[0, 0]] * 5000}, "ranges"),
    ],
)
def test_ack_errors_name_the_key(doc: dict, field: str) -> None:
    with pytest.raises(PayloadError) as info:
        decode_ack(json.dumps(doc).encode())
    assert info.value.field == field


@pytest.mark.parametrize(
    ("alarm", "field"),
    [
        ({"code": "MT-999"}, "alarm.code"),
        ({"severity": 9}, "alarm.severity"),
        ({"raised_at": "now"}, "alarm.raised_at"),
        ({"raised_at": 1e999}, "alarm.raised_at"),  # json parses 1e999 as inf
    ],
)
def test_alarm_errors_name_the_key(alarm: dict, field: str) -> None:
    good = {"code": "MT-200", "severity": 2, "message": "", "source": "spindle", "raised_at": 1.0}
    doc = {
        "v": 1,
        "kind": "event",
        "machine_id": "m",
        "t": 1.0,
        "event": "alarm",
        "alarm": good | alarm,
    }
    text = json.dumps(doc).replace("Infinity", "1e999")
    with pytest.raises(PayloadError) as info:
        decode_event(text.encode())
    assert info.value.field == field


def test_json_syntax_error_gives_byte_offset() -> None:
    with pytest.raises(PayloadError) as info:
        decode_ack('{"v": 1, "machine": "ü", ]'.encode())
    assert info.value.field == "payload" and info.value.offset == len(
        '{"v": 1, "machine": "ü", '.encode()
    )


@pytest.mark.parametrize(
    "payload",
    [
        b"[" * 100_000,
        b'{"v": 1, "kind": "ack", "machine": "m", "ranges": [[0, ' + b"9" * 5000 + b"]]}",
        b'{"v": NaN}',
        b"\xff\xfe",
        b"",
        b"null",
        bytes(codec.MAX_JSON_BYTES + 1),
    ],
)
def test_json_hostile_inputs(payload: bytes) -> None:
    for decode in (decode_ack, decode_event, decode_descriptor):
        with pytest.raises(PayloadError):
            decode(payload)


@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
@settings(max_examples=500)
def test_fuzz_json_decoders(data: bytes) -> None:
    for decode in (decode_ack, decode_event, decode_descriptor):
        with contextlib.suppress(PayloadError):
            decode(data)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
        max_leaves=20,
    )
)
@settings(max_examples=300)
def test_fuzz_json_documents(value: object) -> None:
    """Valid JSON of the wrong shape in every field: PayloadError, nothing else."""
    for kind in ("ack", "event", "birth"):
        for key in (
            "machine",
            "machine_id",
            "ranges",
            "t",
            "event",
            "alarm",
            "signals",
            "axes",
            "extra",
            "name",
        ):
            doc = {
                "v": 1,
                "kind": kind,
                "machine": "m",
                "machine_id": "m",
                "t": 1.0,
                "event": "x",
                "ranges": [],
                key: value,
            }
            try:
                raw = json.dumps(doc).encode()
            except ValueError:
                continue
            for decode in (decode_ack, decode_event, decode_descriptor):
                with contextlib.suppress(PayloadError):
                    decode(raw)


# --------------------------------------------------------------------------- layout cache
#
# Every payload below is decoded twice, the second time through the layout the first
# decode remembered (same machine, size, rows and columns); results and errors must be
# the full parser's.


def full_parse(payload: bytes) -> SampleBatch:
    buf = codec._as_buffer(payload)
    return codec._decode_parsed(buf, codec._check_header(buf))


def outcome(decode, payload: bytes) -> SampleBatch | str:
    try:
        return decode(payload)
    except PayloadError as e:
        return f"{e.field}@{e.offset}"


@given(batches(max_rows=6), st.data())
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_cached_layout_decodes_as_the_full_parser(batch: SampleBatch, data: st.DataObject) -> None:
    batch.waveforms = []  # waveform batches always take the full parser
    original = encode_batch(batch)
    decode_batch(original)  # remember the layout
    payload = bytearray(original)
    for _ in range(data.draw(st.integers(1, 3))):  # same size: the cached layout applies
        at = data.draw(st.integers(0, len(payload) - 5))
        payload[at] = data.draw(st.integers(0, 255))
    payload = reseal(payload)
    cached, parsed = outcome(decode_batch, payload), outcome(full_parse, payload)
    if isinstance(parsed, str):
        # the error may name another field first, but the cache must not accept it
        assert isinstance(cached, str)
    else:
        assert not isinstance(cached, str), cached
        assert_same(parsed, cached)
        assert encode_batch(cached) == payload


def fleet_batch(machine: str, names: list[str], seq: int, rows: int = 1) -> SampleBatch:
    rng = np.random.default_rng(seq)
    t = 1000.0 + seq * 0.1 + np.arange(rows) * 0.01
    return SampleBatch(machine, t, {n: rng.normal(size=rows) for n in names}, seq=seq)


def test_layout_hit_is_zero_copy_and_reads_new_values() -> None:
    names = [f"s{i:02d}" for i in range(50)]
    first = encode_batch(fleet_batch("vmc-layout", names, 1))
    decode_batch(first)
    assert any(layout.machine == "vmc-layout" for layout in codec._LAYOUTS.values())
    for seq in (2, 3):
        batch = fleet_batch("vmc-layout", names, seq)
        got = decode_batch(encode_batch(batch))
        assert got.seq == seq
        assert_same(batch, got)
    payload = encode_batch(fleet_batch("vmc-layout", names, 4))
    got = decode_batch(payload)
    for col in got.columns.values():  # views of the payload, as from the full parser
        assert not col.flags.owndata and not col.flags.writeable
        assert np.shares_memory(col, np.frombuffer(payload, np.uint8))


def test_same_size_different_names_are_not_mistaken_for_the_layout() -> None:
    decode_batch(encode_batch(fleet_batch("vmc-names", ["aa", "bb"], 1)))
    other = fleet_batch("vmc-names", ["ab", "ba"], 2)  # same lengths, other names
    got = decode_batch(encode_batch(other))
    assert list(got.columns) == ["ab", "ba"]
    assert_same(other, got)


def test_bad_time_in_a_known_layout_is_named() -> None:
    decode_batch(encode_batch(fleet_batch("vmc-t", ["a"], 1, rows=3)))
    bad = fleet_batch("vmc-t", ["a"], 2, rows=3)
    bad.t[1] = np.inf
    with pytest.raises(PayloadError, match="sample time must be finite") as e:
        decode_batch(encode_batch_unchecked(bad))
    assert e.value.field == "t"


def encode_batch_unchecked(batch: SampleBatch) -> bytes:
    """encode_batch refuses non-finite times; write one into a valid payload instead."""
    t = batch.t.copy()
    batch.t[:] = 0.0
    payload = bytearray(encode_batch(batch))
    buf = codec._as_buffer(bytes(payload))
    at = codec._Reader(buf, codec._HEADER.size, len(buf)).pos + len(batch.machine)
    at += -at % 8
    payload[at : at + 8 * len(t)] = t.tobytes()
    return reseal(payload)
