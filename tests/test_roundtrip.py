"""The two invariants of docs/TYPES.md, and its edge cases.

I1: `loads(dumps(x))` is `x`, types included, for every Python value of the mapping.
I2: `dumps(loads(m))` is `m` for every kdb+ message (here: generated from spec/QIPC.md's grammar by
    tests/strategies.py, independent of qwire; both byte orders).
"""
import datetime as dt
import gc
import struct
import uuid

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import qwire
from qwire import DateTime, Dict, KeyedTable, Table, Vector
from strategies import (
    I32_MAX,
    I32_MIN,
    I64_MAX,
    I64_MIN,
    NS_2000,
    assert_same,
    message,
    python_values,
    q_atom_by_type,
    q_trees,
    q_vectors,
    same,
    wire_message,
)

def roundtrip(x):
    return qwire.loads(qwire.dumps(x))


def payload(hexstr):
    return message(bytes.fromhex(hexstr.replace(" ", "")))


# ---- I1 --------------------------------------------------------------------------------------


@pytest.mark.parametrize("qtype", sorted(q_atom_by_type))
@settings(max_examples=max(60, settings().max_examples // 10))  # per type; the profile is in conftest.py
@given(data=st.data())
def test_i1_atoms(qtype, data):
    x = data.draw(q_atom_by_type[qtype])
    assert_same(roundtrip(x), x)


@given(q_vectors())
def test_i1_vectors(x):
    assert_same(roundtrip(x), x)


@given(python_values())
def test_i1_python_values(x):
    assert_same(roundtrip(x), x)


# ---- I2 --------------------------------------------------------------------------------------


@given(q_trees())
def test_i2_q_messages(tree):
    m = wire_message(tree)
    assert bytes(qwire.dumps(qwire.loads(m))).hex() == m.hex()


@given(q_trees())
def test_i2_big_endian_messages(tree):
    """A big-endian message decodes to the same value; qwire writes it back little-endian."""
    le, be = wire_message(tree, "little"), wire_message(tree, "big")
    value = qwire.loads(be)
    assert_same(value, qwire.loads(le))
    assert bytes(qwire.dumps(value)).hex() == le.hex()


@pytest.mark.parametrize("msg_type, byte", [("async", 0), ("sync", 1), ("response", 2)])
def test_message_type(msg_type, byte):
    m = qwire.dumps([1, "a"], msg_type=msg_type)
    assert bytes(m)[:4] == bytes([1, byte, 0, 0])
    assert len(m) == len(bytes(m)) == int.from_bytes(bytes(m)[4:8], "little")
    assert memoryview(m).tobytes() == bytes(m)
    assert_same(qwire.loads(m), [1, "a"])
    assert_same(qwire.loads(bytes(m)), [1, "a"])  # any message type decodes


# ---- nulls, infinities and epoch shifts ------------------------------------------------------

NAN32_Q = np.frombuffer(bytes.fromhex("0000c0ff"), np.float32)[0]
NAN64_Q = struct.unpack("<d", bytes.fromhex("000000000000f8ff"))[0]


_m, _td = np.datetime64, np.timedelta64

# (q, payload, decoded value); the value encodes back to the payload
NULLS_AND_INFINITIES = [
    ("0Nh", "fb 0080", np.int16(-32768)),
    ("0Wh", "fb ff7f", np.int16(32767)),
    ("-0Wh", "fb 0180", np.int16(-32767)),
    ("0Ni", "fa 00000080", np.int32(I32_MIN)),
    ("0Wi", "fa ffffff7f", np.int32(I32_MAX)),
    ("-0Wi", "fa 01000080", np.int32(-I32_MAX)),
    ("0Nj", "f9 0000000000000080", I64_MIN),
    ("0Wj", "f9 ffffffffffffff7f", I64_MAX),
    ("-0Wj", "f9 0100000000000080", -I64_MAX),
    ("0Ne", "f8 0000c0ff", NAN32_Q),
    ("0We", "f8 0000807f", np.float32("inf")),
    ("-0We", "f8 000080ff", np.float32("-inf")),
    ("0n", "f7 000000000000f8ff", NAN64_Q),
    ("0w", "f7 000000000000f07f", float("inf")),
    ("-0w", "f7 000000000000f0ff", float("-inf")),
    ("0Ng", "fe" + "00" * 16, uuid.UUID(int=0)),
    ("`", "f5 00", ""),
    ('" "', "f6 20", np.bytes_(b" ")),
    ("0Np", "f4 0000000000000080", _m("NaT", "ns")),
    ("0Wp", "f4 ffffffffffffff7f", _m(I64_MAX, "ns")),
    ("-0Wp", "f4 0100000000000080", _m(-I64_MAX, "ns")),
    ("0Nm", "f3 00000080", _m("NaT", "M")),
    ("0Wm", "f3 ffffff7f", _m(I64_MAX, "M")),
    ("-0Wm", "f3 01000080", _m(-I64_MAX, "M")),
    ("0Nd", "f2 00000080", _m("NaT", "D")),
    ("0Wd", "f2 ffffff7f", _m(I64_MAX, "D")),
    ("-0Wd", "f2 01000080", _m(-I64_MAX, "D")),
    ("0Nz", "f1 000000000000f8ff", DateTime(float("nan"))),
    ("0wz", "f1 000000000000f07f", DateTime(float("inf"))),
    ("-0wz", "f1 000000000000f0ff", DateTime(float("-inf"))),
    ("0Nn", "f0 0000000000000080", _td("NaT", "ns")),
    ("0Wn", "f0 ffffffffffffff7f", _td(I64_MAX, "ns")),
    ("-0Wn", "f0 0100000000000080", _td(-I64_MAX, "ns")),
    ("0Nu", "ef 00000080", _td("NaT", "m")),
    ("0Wu", "ef ffffff7f", _td(I64_MAX, "m")),
    ("-0Wu", "ef 01000080", _td(-I64_MAX, "m")),
    ("0Nv", "ee 00000080", _td("NaT", "s")),
    ("0Wv", "ee ffffff7f", _td(I64_MAX, "s")),
    ("-0Wv", "ee 01000080", _td(-I64_MAX, "s")),
    ("0Nt", "ed 00000080", _td("NaT", "ms")),
    ("0Wt", "ed ffffff7f", _td(I64_MAX, "ms")),
    ("-0Wt", "ed 01000080", _td(-I64_MAX, "ms")),
]


@pytest.mark.parametrize("q, hexstr, value", NULLS_AND_INFINITIES, ids=[c[0] for c in NULLS_AND_INFINITIES])
def test_null_and_infinite_atoms(q, hexstr, value):
    m = payload(hexstr)
    assert_same(qwire.loads(m), value)
    assert bytes(qwire.dumps(value)).hex() == m.hex()


def test_python_nan_atoms_are_written_as_q_nulls():
    assert bytes(qwire.dumps(float("nan")))[8:].hex() == "f7000000000000f8ff"
    assert bytes(qwire.dumps(np.float32("nan")))[8:].hex() == "f80000c0ff"
    assert bytes(qwire.dumps(-0.0))[8:].hex() == "f70000000000000080"


# the temporal vectors: dtype, q type, wire width
_TEMPORAL_VECTORS = [
    ("datetime64[ns]", 12, 8),
    ("datetime64[M]", 13, 4),
    ("datetime64[D]", 14, 4),
    ("timedelta64[ns]", 16, 8),
    ("timedelta64[m]", 17, 4),
    ("timedelta64[s]", 18, 4),
    ("timedelta64[ms]", 19, 4),
]
_SHIFT = {"datetime64[ns]": NS_2000, "datetime64[M]": 360, "datetime64[D]": 10_957}


@pytest.mark.parametrize("dtype, t, width", _TEMPORAL_VECTORS, ids=[c[0] for c in _TEMPORAL_VECTORS])
def test_temporal_vectors_leave_nulls_and_infinities_unshifted(dtype, t, width):
    """null, +inf, -inf, then 1 (which is shifted)."""
    null = -(2 ** (8 * width - 1))
    wire = struct.pack(f"<4{'q' if width == 8 else 'i'}", null, -null - 1, null + 1, 1)
    m = message(bytes([t, 0]) + struct.pack("<I", 4) + wire)
    value = np.array([I64_MIN, I64_MAX, I64_MIN + 1, 1 + _SHIFT.get(dtype, 0)], dtype=np.int64).view(dtype)
    assert_same(qwire.loads(m), value)
    assert bytes(qwire.dumps(value)).hex() == m.hex()


def test_vector_nan_bits_pass_through():
    for dtype, bits in ((np.float64, [0x7FF8000000000001, 0xFFF8000000000000, 0x7FF0000000000001]),
                        (np.float32, [0x7FC00001, 0xFFC00000, 0x7F800001])):
        a = np.array(bits, dtype=f"u{np.dtype(dtype).itemsize}").view(dtype)
        m = qwire.dumps(a)
        got = qwire.loads(m)
        assert got.tobytes() == a.tobytes()
        assert bytes(qwire.dumps(got)) == bytes(m)


# ---- value-dependent decoded types --------------------------------------------------------------

VALUE_DEPENDENT = [
    ("timestamp, whole µs", "f4 00c0cafa20fe0000", dt.datetime(2000, 1, 4, 5, 36, 57, 600000)),
    ("timestamp with ns", "f4 0100000000000000", np.datetime64("2000-01-01T00:00:00.000000001", "ns")),
    ("timestamp before 1970", "f4 00321ba986c5feff", dt.datetime(1999, 12, 27, 23, 57, 12, 200000)),
    ("timespan, whole µs", "f0 e803000000000000", dt.timedelta(microseconds=1)),
    ("timespan with ns", "f0 0100000000000000", np.timedelta64(1, "ns")),
    ("negative timespan", "f0 18fcffffffffffff", dt.timedelta(microseconds=-1)),
    ("date", "f2 01000000", dt.date(2000, 1, 2)),
    ("date before year 1", "f2 f8dbf4ff", np.datetime64(-719_163, "D")),
    ("date after 9999", "f2 d4952c00", np.datetime64(2_932_897, "D")),
    ("first date", "f2 f9dbf4ff", dt.date(1, 1, 1)),
    ("last date", "f2 d3952c00", dt.date(9999, 12, 31)),
    ("time", "ed 73be9702", dt.time(12, 4, 59, 123000)),
    ("time 23:59:59.999", "ed ff5b2605", dt.time(23, 59, 59, 999000)),
    ("time 24:00:00.000", "ed 005c2605", np.timedelta64(86_400_000, "ms")),
    ("negative time", "ed ffffffff", np.timedelta64(-1, "ms")),
    ("month", "f3 01000000", np.datetime64("2000-02", "M")),
    ("minute", "ef 01000000", np.timedelta64(1, "m")),
    ("second", "ee 01000000", np.timedelta64(1, "s")),
    ("datetime", "f1 000000000000f83f", DateTime(1.5)),
]


@pytest.mark.parametrize("what, hexstr, value", VALUE_DEPENDENT, ids=[c[0] for c in VALUE_DEPENDENT])
def test_value_dependent_types(what, hexstr, value):
    m = payload(hexstr)
    assert_same(qwire.loads(m), value)
    assert bytes(qwire.dumps(value)).hex() == m.hex()


def test_timestamp_range_edges():
    """The first and last whole-µs q timestamps are datetimes, and encode back (TYPES.md: naive
    datetime within q's range 1707..2292)."""
    first, last = -9_223_372_036_854_775_000, 9_223_372_036_854_775_000  # whole µs inside 1 - 0W .. 0W - 1
    for raw in (first, last, first + 86_400 * 10**9, last - 86_400 * 10**9):
        m = message(b"\xf4" + struct.pack("<q", raw))
        value = qwire.loads(m)
        assert type(value) is dt.datetime
        assert bytes(qwire.dumps(value)).hex() == m.hex()


def test_first_microseconds_of_q_timestamp_range_encode():
    # q's first timestamp is 1707.09.22D00:12:43.145224194; the datetime a µs later is in range
    first = dt.datetime(1707, 9, 22, 0, 12, 43, 145225)
    assert bytes(qwire.dumps(first))[8:].hex() == "f4" + struct.pack("<q", -9223372036854775000).hex()


BEYOND = [I64_MAX - NS_2000 - 1, I64_MAX - NS_2000, I64_MAX - NS_2000 + 1, I64_MAX - 3]


@pytest.mark.parametrize("raw", BEYOND)
def test_timestamps_after_2262_with_ns(raw):
    """q timestamps with nanoseconds that datetime64[ns] cannot hold after the epoch shift
    (2262-04-11T23:47:16.854775807 on): qwire.Timestamp atoms, Vector(int64, 'timestamp') vectors."""
    beyond = raw >= I64_MAX - NS_2000
    atom = message(b"\xf4" + struct.pack("<q", raw))
    assert_same(qwire.loads(atom), qwire.Timestamp(raw) if beyond else np.datetime64(raw + NS_2000, "ns"))
    vector = message(b"\x0c\x00\x02\x00\x00\x00" + struct.pack("<2q", raw, 5))
    raws = np.array([raw, 5], dtype=np.int64)
    assert_same(qwire.loads(vector), Vector(raws, "timestamp") if beyond else (raws + NS_2000).view("datetime64[ns]"))
    for m in (atom, vector):
        assert bytes(qwire.dumps(qwire.loads(m))).hex() == m.hex()


@pytest.mark.parametrize("attr", [1, 2, 3, 4])
def test_attributed_timestamp_vector_beyond_datetime64(attr):
    m = message(bytes([12, attr]) + struct.pack("<I2q", 2, 5, I64_MAX - 3))
    expected = Vector(np.array([5, I64_MAX - 3], dtype=np.int64), "timestamp", "supg"[attr - 1])
    assert_same(qwire.loads(m), expected)
    assert bytes(qwire.dumps(qwire.loads(m))).hex() == m.hex()


def test_out_of_range_temporal_values_are_refused():
    with pytest.raises(qwire.EncodeError):
        qwire.dumps(np.datetime64(I64_MIN + 2, "ns"), q_compatible=True)  # before q's first timestamp
    with pytest.raises(qwire.EncodeError):
        qwire.dumps(np.array([2**40], dtype="datetime64[D]"), q_compatible=True)  # beyond int32 days
    with pytest.raises(qwire.EncodeError):
        qwire.dumps(dt.time(1, 2, 3, 4), q_compatible=True)  # not whole milliseconds


def test_aware_datetimes_are_refused():
    with pytest.raises(qwire.EncodeError):
        qwire.dumps(dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc), q_compatible=True)


# ---- chars, symbols, guids ---------------------------------------------------------------------


def test_nul_char_atom():
    """`"\\000"` is a valid char atom; it must decode to a value that writes it back (I2)."""
    m = payload("f6 00")
    value = qwire.loads(m)
    assert bytes(qwire.dumps(value)).hex() == m.hex()
    assert bytes(qwire.dumps(np.bytes_(b"\x00"))).hex() == m.hex()


def test_nul_chars_in_a_general_list():
    m = payload("00 00 02000000 f600 f641")
    assert bytes(qwire.dumps(qwire.loads(m))).hex() == m.hex()


def test_non_utf8_symbols_round_trip_by_surrogateescape():
    m = payload("f5 ff fe 00")
    assert qwire.loads(m) == "\udcff\udcfe"
    assert bytes(qwire.dumps("\udcff\udcfe")).hex() == m.hex()
    v = payload("0b 00 02000000 c3a900 80 00")
    assert_same(qwire.loads(v), np.array(["é", "\udc80"], dtype=object))
    assert bytes(qwire.dumps(qwire.loads(v))).hex() == v.hex()


def test_symbols_with_nul_are_refused():
    with pytest.raises(qwire.EncodeError):
        qwire.dumps("a\x00b", q_compatible=True)


def test_empty_guid_vector():
    m = payload("02 00 00000000")
    assert_same(qwire.loads(m), Vector(np.array([], dtype=object), "guid"))
    assert bytes(qwire.dumps(Vector(np.array([], dtype=object), "guid"))).hex() == m.hex()
    # an empty object array is a symbol vector
    assert bytes(qwire.dumps(np.array([], dtype=object)))[8:].hex() == "0b0000000000"


def test_guid_vector():
    u = uuid.UUID("01234567-89ab-cdef-0123-456789abcdef")
    m = payload("02 00 01000000 0123456789abcdef0123456789abcdef")
    assert_same(qwire.loads(m), np.array([u], dtype=object))
    assert bytes(qwire.dumps(np.array([u], dtype=object))).hex() == m.hex()


# ---- dictionaries ------------------------------------------------------------------------------

SYM_AB = "0b 00 02000000 6100 6200"
LIST_12 = "00 00 02000000 f9 0100000000000000 f9 0200000000000000"

DICTS = [
    ("symbol keys, general-list values", "63" + SYM_AB + LIST_12, {"a": 1, "b": 2}),
    ("duplicate symbol keys", "63 0b00 02000000 6100 6100" + LIST_12,
     Dict(np.array(["a", "a"], dtype=object), [1, 2])),
    ("()!()", "63 000000000000 000000000000", Dict([], [])),
    ("`$()!()", "63 0b0000000000 000000000000", {}),
    ("all-symbol general-list keys", "63 00 00 02000000 f56100 f56200" + LIST_12, Dict(["a", "b"], [1, 2])),
    ("1b and 1 keys collide", "63 00 00 02000000 ff01 f9 0100000000000000" + LIST_12, Dict([True, 1], [1, 2])),
    ("distinct hashable general-list keys", "63 00 00 02000000 ff01 f9 0200000000000000" + LIST_12, {True: 1, 2: 2}),
    ("attributed symbol keys", "63 0b01 02000000 6100 6200" + LIST_12,
     Dict(Vector(np.array(["a", "b"], dtype=object), "symbol", "s"), [1, 2])),
    ("typed values", "63" + SYM_AB + "07 00 02000000 0100000000000000 0200000000000000",
     Dict(np.array(["a", "b"], dtype=object), np.array([1, 2]))),
    ("sorted dict", "7f 0b01 02000000 6100 6200" + LIST_12,
     Dict(Vector(np.array(["a", "b"], dtype=object), "symbol", "s"), [1, 2], sorted=True)),
    ("unhashable keys", "63 00 00 01000000 07 00 01000000 0100000000000000 00 00 01000000 f9 0100000000000000",
     Dict([np.array([1])], [1])),
]


@pytest.mark.parametrize("what, hexstr, value", DICTS, ids=[c[0] for c in DICTS])
def test_dict_decode_rules(what, hexstr, value):
    m = payload(hexstr)
    assert_same(qwire.loads(m), value)
    assert bytes(qwire.dumps(value)).hex() == m.hex()


def test_keyed_table_and_sorted_keyed_table():
    keys, values = Table({"k": np.array([1, 2])}), Table({"v": np.array(["a", "b"], dtype=object)})
    for kt in (KeyedTable(keys, values), KeyedTable(keys, values, sorted=True)):
        m = qwire.dumps(kt)
        assert bytes(m)[8] == (0x7F if kt.sorted else 0x63)
        assert_same(qwire.loads(m), kt)


def test_table_attribute_and_column_attributes():
    t = Table({"a": Vector(np.array([1, 2], dtype=np.int32), "int", "p"), "b": b"xy"}, attr="s")
    m = payload("62 01 63 0b00 02000000 6100 6200 00 00 02000000 06 03 02000000 01000000 02000000 0a 00 02000000 7879")
    assert bytes(qwire.dumps(t)).hex() == m.hex()
    assert_same(qwire.loads(m), t)


# ---- zero-copy views ---------------------------------------------------------------------------

VIEW_DTYPES = ["bool", "uint8", "int16", "int32", "int64", "float32", "float64", "timedelta64[ns]"]


def _reaches(arr, obj):
    """Whether `arr`'s .base chain reaches obj (through memoryviews and Message objects too)."""
    seen, x = 0, arr
    while x is not None and seen < 20:
        if x is obj:
            return True
        x = x.obj if isinstance(x, memoryview) else getattr(x, "base", None)
        seen += 1
    return False


@pytest.mark.parametrize("dtype", VIEW_DTYPES)
@pytest.mark.parametrize("kind", ["bytes", "bytearray", "memoryview"])
def test_vectors_are_read_only_views_of_the_input(dtype, kind):
    a = (np.arange(5) % 2 == 1) if dtype == "bool" else np.arange(5).astype(dtype)
    raw = bytes(qwire.dumps(a))
    data = {"bytes": raw, "bytearray": bytearray(raw), "memoryview": memoryview(bytearray(raw))}[kind]
    got = qwire.loads(data)
    assert_same(got, a)
    backing = np.frombuffer(data, dtype=np.uint8)
    assert np.shares_memory(got, backing)
    assert _reaches(got, data.obj if isinstance(data, memoryview) else data) or _reaches(got, data)
    assert not got.flags.writeable
    with pytest.raises(ValueError):
        got[0] = got[1]
    with pytest.raises(ValueError):
        got.flags.writeable = True


def test_views_keep_the_input_alive():
    data = bytearray(qwire.dumps(np.arange(1000)))
    got = qwire.loads(data)
    del data
    gc.collect()
    assert_same(got, np.arange(1000))


def test_views_inside_containers():
    data = bytes(qwire.dumps([np.arange(3), {"a": np.arange(2.0)}, Table({"c": np.arange(4, dtype=np.int16)})]))
    got = qwire.loads(data)
    backing = np.frombuffer(data, dtype=np.uint8)
    for arr in (got[0], got[1]["a"], got[2]["c"]):
        assert np.shares_memory(arr, backing) and not arr.flags.writeable


# ---- big-endian --------------------------------------------------------------------------------

BIG_ENDIAN = [
    ("1 2 3i", "00 00 00 00 00 00 00 1a 06 00 00 00 00 03 00 00 00 01 00 00 00 02 00 00 00 03",
     np.array([1, 2, 3], dtype=np.int32)),
    ("1j", "00 00 00 00 00 00 00 11 f9 00 00 00 00 00 00 00 01", 1),
    ("1.5", "00 00 00 00 00 00 00 11 f7 3f f8 00 00 00 00 00 00", 1.5),
    ("guid", "00 00 00 00 00 00 00 19 fe 01 23 45 67 89 ab cd ef 01 23 45 67 89 ab cd ef",
     uuid.UUID("01234567-89ab-cdef-0123-456789abcdef")),
    ("`a`b!1 2", "00 00 00 00 00 00 00 29 63 0b 00 00 00 00 02 61 00 62 00 07 00 00 00 00 02"
     " 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 02", Dict(np.array(["a", "b"], dtype=object), np.array([1, 2]))),
    ("2000.01.02", "00 00 00 00 00 00 00 0d f2 00 00 00 01", dt.date(2000, 1, 2)),
    ("{x+y}[3]", "00 00 00 00 00 00 00 23 68 00 00 00 02 64 00 0a 00 00 00 00 05 7b 78 2b 79 7d f9 00 00 00 00 00 00 00 03",
     qwire.Projection(qwire.Lambda("{x+y}"), 3)),
]


@pytest.mark.parametrize("what, hexstr, value", BIG_ENDIAN, ids=[c[0] for c in BIG_ENDIAN])
def test_big_endian_messages(what, hexstr, value):
    m = bytes.fromhex(hexstr.replace(" ", ""))
    got = qwire.loads(m)
    assert_same(got, value)
    # written back little-endian, otherwise identical
    assert_same(qwire.loads(qwire.dumps(got)), value)


def test_big_endian_vectors_are_usable():
    m = bytes.fromhex(BIG_ENDIAN[0][1].replace(" ", ""))
    got = qwire.loads(m)
    assert got.tolist() == [1, 2, 3] and int(got.sum()) == 6


# ---- encode-only inputs ------------------------------------------------------------------------

ENCODE_ONLY = [
    ("numpy.bool_", np.bool_(True), True),
    ("numpy.int64", np.int64(7), 7),
    ("numpy.float64", np.float64(2.5), 2.5),
    ("datetime64[us] vector", np.array(["2001-01-01T00:00:00.000001"], dtype="datetime64[us]"),
     np.array(["2001-01-01T00:00:00.000001"], dtype="datetime64[ns]")),
    ("datetime64[s] vector", np.array(["2001-01-01T00:00:01"], dtype="datetime64[s]"),
     np.array(["2001-01-01T00:00:01"], dtype="datetime64[ns]")),
    ("timedelta64[us] vector", np.array([5], dtype="timedelta64[us]"), np.array([5000], dtype="timedelta64[ns]")),
    ("str_ array", np.array(["a", "bc"]), np.array(["a", "bc"], dtype=object)),
    ("datetime64[ns] scalar, whole µs", np.datetime64("2001-01-01T00:00:00.000001", "ns"),
     dt.datetime(2001, 1, 1, 0, 0, 0, 1)),
    ("Timestamp in datetime's range", qwire.Timestamp(1000), dt.datetime(2000, 1, 1, 0, 0, 0, 1)),
    ("Timestamp with ns", qwire.Timestamp(1), np.datetime64("2000-01-01T00:00:00.000000001", "ns")),
    ("Vector forcing symbols", Vector(["a", "b"], "symbol"), np.array(["a", "b"], dtype=object)),
    ("Vector of raw dates", Vector(np.array([0, 1], dtype=np.int32), "date"),
     np.array(["2000-01-01", "2000-01-02"], dtype="datetime64[D]")),
    ("Vector of raw timestamps", Vector(np.array([0, 1]), "timestamp"),
     np.array([NS_2000, NS_2000 + 1]).view("datetime64[ns]")),
    ("Vector of raw minutes", Vector(np.array([5], dtype=np.int32), "minute"), np.array([5], dtype="timedelta64[m]")),
]


@pytest.mark.parametrize("what, x, decoded", ENCODE_ONLY, ids=[c[0] for c in ENCODE_ONLY])
def test_encode_only_inputs(what, x, decoded):
    # Arrays whose conversion changes the dtype convert only in the q profile (below).
    kw = {"q_compatible": True} if what in DTYPE_CHANGING else {}
    assert_same(qwire.loads(qwire.dumps(x, **kw)), decoded)
    assert bytes(qwire.dumps(x, **kw)) == bytes(qwire.dumps(decoded, **kw))


DTYPE_CHANGING = {"datetime64[us] vector", "datetime64[s] vector", "timedelta64[us] vector", "str_ array"}


@pytest.mark.parametrize("x", [
    np.array(["2001-01-01T00:00:00.000001"], dtype="datetime64[us]"),
    np.array(["2001-01-01T00:00:01", "NaT"], dtype="datetime64[s]"),
    np.array([5, -7], dtype="timedelta64[us]"),
    np.array(["a", "bc", ""]),
    np.datetime64("2001-01-01T00:00:00.001", "ms"),
], ids=repr)
def test_default_profile_keeps_the_dtype_q_profile_converts(x):
    back = qwire.loads(qwire.dumps(x))
    assert type(back) is type(x) and back.dtype == x.dtype
    # compare the raw items: NaT != NaT as a value
    assert np.asarray(back).tobytes() == np.asarray(x).tobytes()
    assert bytes(qwire.dumps(x))[8] == 0x70                 # an extension record (docs/FORMAT.md)
    q_bytes = bytes(qwire.dumps(x, q_compatible=True))
    assert q_bytes[8] != 0x70                                 # a q vector or atom
    q = qwire.loads(q_bytes)
    assert type(q) is not type(x) or q.dtype != x.dtype       # converted: values kept, dtype not


def test_numpy_float64_is_a_float():
    assert type(roundtrip(np.float64(1.5))) is float


def test_pandas_dataframe_is_a_dataframe_and_a_q_table_with_q_compatible():
    import pandas as pd  # a test dependency: never skipped
    df = pd.DataFrame({"a": np.array([1, 2]), "b": np.array(["x", "y"], dtype=object)})
    back = roundtrip(df)
    assert type(back) is pd.DataFrame and back.equals(df) and list(back.dtypes) == list(df.dtypes)
    expected = Table({"a": np.array([1, 2]), "b": np.array(["x", "y"], dtype=object)})
    assert_same(qwire.loads(qwire.dumps(df, q_compatible=True)), expected)


# ---- refused ---------------------------------------------------------------------------------

REFUSED_ENCODE = [
    ("int above int64", 2**63),
    ("int below int64", -(2**63) - 1),
    ("2-d array", np.zeros((2, 2))),
    ("int8 array", np.zeros(2, dtype=np.int8)),
    ("uint16 array", np.zeros(2, dtype=np.uint16)),
    ("float16 array", np.zeros(2, dtype=np.float16)),
    ("complex", 1j),
    ("set", {1, 2}),
    ("object", object()),
    ("bytes_ of length 2", np.bytes_(b"ab")),
]


@pytest.mark.parametrize("what, x", REFUSED_ENCODE, ids=[c[0] for c in REFUSED_ENCODE])
def test_refused_on_encode(what, x):
    with pytest.raises(qwire.EncodeError):
        qwire.dumps(x, q_compatible=True)


REFUSED_DECODE = [
    ("type 3", "03 00 01000000 00"),
    ("type -3", "fd 00"),
    ("enumeration atom", "ec 00000000"),
    ("enumeration vector", "14 00 01000000 00000000"),
    ("mapped list", "4d 00 00000000"),
    ("foreign", "70 00"),
    ("type 126", "7e 00"),
    ("error inside a list", "00 00 01000000 80 7400"),
    ("boolean 2", "ff 02"),
    ("attribute 5", "07 05 00000000"),
    ("unterminated symbol", "f5 6162"),
    ("empty payload", ""),
]


@pytest.mark.parametrize("what, hexstr", REFUSED_DECODE, ids=[c[0] for c in REFUSED_DECODE])
def test_refused_on_decode(what, hexstr):
    with pytest.raises(qwire.DecodeError):
        qwire.loads(payload(hexstr))


def test_decode_error_carries_offset():
    with pytest.raises(qwire.DecodeError) as info:
        qwire.loads(payload("00 00 02000000 f9 0100000000000000 fd 00"))
    assert info.value.offset == 8 + 6 + 9


def test_huge_count_is_refused_before_allocating():
    with pytest.raises(qwire.DecodeError):
        qwire.loads(payload("07 00 ffffffff"))
    with pytest.raises(qwire.DecodeError):
        qwire.loads(payload("00 80 ffffffffffffffff"))


def test_deep_nesting_is_a_decode_error_not_a_crash():
    depth = 100_000
    m = payload("0000 01000000" * depth + "f9 0100000000000000")
    with pytest.raises(qwire.DecodeError):
        qwire.loads(m)


def test_qerror_only_at_top_level_on_encode():
    assert bytes(qwire.dumps(qwire.QError("type")))[8:].hex() == "807479706500"
    with pytest.raises(qwire.EncodeError):
        qwire.dumps([qwire.QError("type")])


def test_same_is_strict():
    """The equality the suite relies on tells types, -0.0 and dict key order apart."""
    assert not same(1, np.int64(1))
    assert not same(0.0, -0.0)
    assert not same({"a": 1, "b": 2}, {"b": 2, "a": 1})
    assert not same(np.array([1], dtype=np.int32), np.array([1]))
    assert not same(np.bytes_(b"a"), b"a")
    assert same(float("nan"), float("nan"))
    assert same(np.array([np.nan]), np.array([np.nan]))


# ---- array layouts ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["bool", "uint8", "int16", "int32", "int64", "float32", "float64",
                                   "datetime64[ns]", "datetime64[D]", "timedelta64[ms]"])
def test_strided_and_byte_swapped_arrays(dtype):
    a = np.arange(12).astype(dtype) if dtype != "bool" else np.arange(12) % 3 == 1
    expected = bytes(qwire.dumps(a[::3].copy()))
    assert bytes(qwire.dumps(a[::3])) == expected
    assert bytes(qwire.dumps(a[::3][::-1].copy()[::-1])) == expected  # negative strides
    if a.dtype.itemsize > 1:
        swapped = a[::3].astype(a.dtype.newbyteorder(">"))
        assert bytes(qwire.dumps(swapped)) == expected


def test_circular_containers_are_refused():
    lst = []
    lst.append(lst)
    d = {}
    d["a"] = d
    for x in (lst, d):
        with pytest.raises(qwire.EncodeError):
            qwire.dumps(x)


@pytest.mark.parametrize("x", [
    np.array(["1690-01-01T00:00:00", "2000-01-01"], dtype="datetime64[ns]"),   # before q's first timestamp
    np.array([2**31 - 1, 5], dtype="timedelta64[s]"),                           # q's 0Wv code, not a value
    np.array([-(2**31), 0], dtype="timedelta64[m]"),                            # q's null minute code
    np.array([2**31, 0], dtype="timedelta64[ms]"),                              # beyond q's int32 time
], ids=repr)
def test_temporal_values_q_cannot_hold_travel_in_a_record_unless_q_compatible(x):
    m = bytes(qwire.dumps(x))
    assert m[8] == 0x70
    back = qwire.loads(m)
    assert back.dtype == x.dtype and back.tobytes() == x.tobytes()
    with pytest.raises(qwire.EncodeError, match="range|before q"):
        qwire.dumps(x, q_compatible=True)
