"""Extension records for Python-only values (docs/FORMAT.md): round trips of nested values (I1
extended), the bytes of every record pinned, records only where needed, q_compatible=True,
N-d arrays (shape, memory order, dtype, byte order, zero-copy decoding) and malformed records."""
from __future__ import annotations

import datetime as dt
import decimal
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import qwire
from qwire import _core, extensions, registry
from qwire.extensions import Code
from pyvalues import REGISTRY, assert_pysame, nd_arrays, python_values, pysame
from wire import message
from strategies import python_values as q_values


def rt(x, **kw):
    return qwire.loads(qwire.dumps(x, registry=REGISTRY, **kw), registry=REGISTRY)


def payload_hex(x, **kw):
    return bytes(qwire.dumps(x, **kw))[8:].hex()


# ---- round trips ---------------------------------------------------------------------------------

@given(python_values())
def test_nested_python_values_round_trip(x):
    assert_pysame(rt(x), x)


@given(python_values())
def test_round_trip_from_plain_bytes(x):
    m = bytes(qwire.dumps(x, registry=REGISTRY))
    assert_pysame(qwire.loads(m, registry=REGISTRY), x)


@settings(max_examples=40)      # the q mapping's own strategy is slow to draw from; it has its own suite
@given(q_values())
def test_pure_q_values_are_written_exactly_as_before(x):
    """Extension records only where needed: a value of the q type mapping gives the same bytes
    by default as with q_compatible=True (which never writes one)."""
    assert bytes(qwire.dumps(x)) == bytes(qwire.dumps(x, q_compatible=True))


def test_records_sit_only_where_the_values_need_them():
    x = [1, (2, "a"), "s"]
    assert payload_hex(x) == (
        "000003000000" "f90100000000000000"
        "7001" "000002000000" "f90200000000000000" "f56100"
        "f57300"
    )


@pytest.mark.parametrize("x", [
    (), (1,), ((1, 2), [3]), set(), {1, "a", (2, 3)}, frozenset(), frozenset({frozenset({1})}),
    bytearray(), bytearray(b"\x00\xff" * 100), 0j, complex(float("inf"), -0.0),
    decimal.Decimal("0"), decimal.Decimal("-0.000"), decimal.Decimal("1E+999999"), decimal.Decimal("NaN"),
    decimal.Decimal("-sNaN123"), decimal.Decimal("-Infinity"), decimal.Decimal("3.14159265358979323846264338327950288"),
    2**63, -(2**63) - 1, 2**64 - 1, 1 << 20_000, -(1 << 20_000),
    "\0", "a\0b", "\ud800", "é\0\udcff",
    dt.datetime(1, 1, 1, tzinfo=dt.timezone.utc), dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.timezone.utc),
    dt.datetime(2024, 3, 10, 1, 30, fold=1, tzinfo=dt.timezone(-dt.timedelta(hours=5), "EST")),
    dt.time(0, 0, 0, 1), dt.time(23, 59, 59, 999999), dt.time(12, tzinfo=dt.timezone(dt.timedelta(minutes=-90))),
    dt.time(12, fold=1, tzinfo=dt.timezone.utc),
    np.int8(-128), np.uint16(65535), np.uint32(7), np.uint64(2**64 - 1), np.float16(0.5), np.complex64(1 - 1j),
    np.complex128(complex(float("nan"), 1)), np.datetime64(3, "Y"), np.timedelta64(5, "h"), np.str_("a\0b"),
], ids=lambda x: type(x).__name__)
def test_python_only_values_round_trip(x):
    assert_pysame(rt(x), x)


def test_big_ints_are_written_without_decimal_conversion():
    x = 1 << 200_000     # str(x) would exceed Python's default int-to-str digit limit
    assert qwire.loads(qwire.dumps(x)) == x


# ---- the format, pinned ------------------------------------------------------------------------------

PINNED = [
    ((1, "a"), "7001" "000002000000" "f90100000000000000" "f56100"),
    ({1}, "7002" "000001000000" "f90100000000000000"),
    (frozenset(), "7003" "000000000000"),
    (bytearray(b"ab"), "7004" "0400020000006162"),
    (1.5 - 2j, "7005" "090002000000" "000000000000f83f" "00000000000000c0"),
    (decimal.Decimal("-1.50"), "7006" "0a0005000000" "2d312e3530"),
    (2**64, "7007" "040009000000" "000000000000000001"),
    (-(2**63) - 1, "7007" "040009000000" "ffffffffffffff7fff"),
    (dt.datetime(2000, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=1))),
     "7008" "000004000000" "f900504f490a1de000" "f900a493d600000000" "ff00" "f500"),
    (dt.datetime(2000, 1, 1, tzinfo=dt.timezone(dt.timedelta(0), "Z")),
     "7008" "000004000000" "f900a0633a001de000" "f90000000000000000" "ff00" "f55a00"),
    (dt.time(1, 2, 3, 4), "7009" "000004000000" "f9c478e8dd00000000" "6500" "ff00" "f500"),
    (dt.time(1, 2, 3, tzinfo=dt.timezone.utc), "7009" "000004000000" "f9c078e8dd00000000" "f90000000000000000" "ff00" "f500"),
    ("a\0", "700a" "0a0002000000" "6100"),
    (np.arange(4, dtype="<u2").reshape(2, 2),
     "7010" "000004000000" "f53c753200" "070002000000" "0200000000000000" "0200000000000000" "f54300"
     "040008000000" "0000010002000300"),
    (np.array([[1, None]], dtype=object),
     "7011" "000004000000" "070002000000" "0100000000000000" "0200000000000000" "f54300"
     "f90100000000000000" "6500"),
    (np.int8(-1), "7012" "000002000000" "f57c693100" "040001000000" "ff"),
]


@pytest.mark.parametrize("x, hexstr", PINNED, ids=[type(p[0]).__name__ + str(i) for i, p in enumerate(PINNED)])
def test_record_bytes_are_pinned(x, hexstr):
    assert payload_hex(x) == hexstr
    assert_pysame(qwire.loads(message(bytes.fromhex(hexstr))), x)


def test_codes_agree_with_the_core():
    assert {k: int(getattr(Code, k)) for k in _core.CORE_RECORD_CODES} == _core.CORE_RECORD_CODES
    assert _core.REGISTRY_KINDS == {"FIELDS": registry.KIND_FIELDS, "NAMEDTUPLE": registry.KIND_NAMEDTUPLE,
                                    "ENUM": registry.KIND_ENUM, "CUSTOM": registry.KIND_CUSTOM}
    assert all(0 < c < 0x20 for c in extensions.HANDLED_CODES)
    assert not any(0x30 <= int(c) <= 0x3F for c in Code)     # the core's out-of-band buffers
    assert len({int(c) for c in Code}) == len(Code)


# ---- q_compatible ------------------------------------------------------------------------------------

NEEDS_A_RECORD = [(1, 2), {3}, frozenset({4}), bytearray(b"x"), 1j, decimal.Decimal("1.1"), 2**70,
                  dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc), dt.time(1, 2, 3, 4), "a\0b",
                  np.zeros((2, 2)), np.zeros(3, dtype="u2"), np.int8(3)]


@pytest.mark.parametrize("x", NEEDS_A_RECORD, ids=lambda x: type(x).__name__)
def test_q_compatible_never_writes_a_record_and_names_the_object(x):
    with pytest.raises(qwire.EncodeError) as e:
        qwire.dumps(x, q_compatible=True)
    assert not isinstance(e.value, qwire.ForeignObjectError)
    assert "q_compatible=True" in str(e.value)
    assert repr(x)[:20] in str(e.value)
    assert e.value.obj_type is type(x)
    rt(x)                                                       # while the default writes it


def test_q_compatible_names_a_nested_object():
    with pytest.raises(qwire.EncodeError, match=r"\(7, 8\)"):
        qwire.dumps({"a": [1, {"b": (7, 8)}]}, q_compatible=True)


def test_q_compatible_refuses_registered_objects():
    with pytest.raises(qwire.EncodeError, match="q_compatible"):
        qwire.dumps(REGISTRY.class_of("Point")(1), q_compatible=True, registry=REGISTRY)


def test_q_compatible_and_refs_exclude_each_other():
    with pytest.raises(ValueError):
        qwire.dumps([], q_compatible=True, refs=True)
    with pytest.raises(ValueError):
        qwire.Encoder(q_compatible=True, refs=True)


# ---- N-d arrays ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["i1", "<u2", ">u2", "<u4", ">u8", "<f2", "<c8", ">c16", "S5", "<U3", ">U3", "?",
                                   "<i8", ">i4", "<f8", "<M8[ns]", "<M8[D]", "<m8[s]", "<M8[Y]", "V4"])
@pytest.mark.parametrize("order", ["C", "F"])
def test_nd_arrays_keep_shape_order_dtype_and_byte_order(dtype, order):
    kind = np.dtype(dtype).kind
    if kind in "SU":
        text = [f"{'é' if kind == 'U' else 'e'}{i}" for i in range(24)]
        a = np.array(text if kind == "U" else [t.encode() for t in text], dtype=dtype)
    elif kind == "V":
        a = np.frombuffer(bytes(range(96)), dtype=dtype)
    else:
        a = np.arange(24).astype(dtype)
    a = np.array(a.reshape(2, 3, 4), order=order)
    b = rt(a)
    assert b.dtype.str == a.dtype.str and b.shape == a.shape
    assert b.flags.f_contiguous == a.flags.f_contiguous and b.flags.c_contiguous == a.flags.c_contiguous
    assert a.tobytes(order="A") == b.tobytes(order="A")


@given(nd_arrays())
def test_arrays_q_lacks_round_trip(a):
    assert_pysame(rt(a), a)


def test_zero_dimensional_and_empty_arrays():
    for a in (np.array(5, dtype="u2"), np.array(2.5), np.zeros((0, 3), dtype="c8"), np.zeros((3, 0), order="F"),
              np.array("ab", dtype="U2")):
        assert_pysame(rt(a), a)


def test_non_contiguous_arrays_come_back_contiguous_and_equal():
    base = np.arange(60, dtype="u4").reshape(5, 12)
    view = base[::2, ::3]
    back = rt(view)
    assert back.flags.c_contiguous and np.array_equal(back, view) and back.dtype == view.dtype


def test_nd_array_data_is_decoded_without_copying():
    a = np.random.default_rng(1).random((256, 512)).astype(np.float16)
    data = bytes(qwire.dumps(a))
    back = qwire.loads(data)
    assert np.shares_memory(back, np.frombuffer(data, dtype=np.uint8))
    assert not back.flags.writeable
    assert np.array_equal(back, a)


def test_large_nd_arrays_are_referenced_by_dumps_and_viewed_by_loads():
    a = np.random.default_rng(2).random((512, 300)).astype(np.complex64)
    back = qwire.loads(qwire.dumps(a))
    assert np.shares_memory(back, a) and np.array_equal(back, a)


def test_nd_arrays_travel_out_of_band():
    a = np.asfortranarray(np.arange(300_000, dtype="<u4").reshape(600, 500))
    bufs = []
    m = qwire.dumps(a, buffer_callback=bufs.append)
    assert len(bufs) == 1 and len(m) < 200
    back = qwire.loads(m, buffers=[b.raw() for b in bufs])
    assert_pysame(back, a)
    assert np.shares_memory(back, a)


def test_structured_dtypes_are_refused():
    with pytest.raises(qwire.EncodeError, match="structured"):
        qwire.dumps(np.zeros((2, 2), dtype=[("a", "i4"), ("b", "f8")]))


def test_object_arrays_keep_their_items():
    a = np.empty((2, 2), dtype=object)
    a[0, 0], a[0, 1], a[1, 0], a[1, 1] = [1, 2], (3,), {"x": None}, np.zeros(2)
    b = rt(a)
    assert b.dtype == object and b.shape == (2, 2)
    assert b[0, 0] == [1, 2] and b[0, 1] == (3,) and b[1, 0] == {"x": None} and np.array_equal(b[1, 1], np.zeros(2))



def test_object_array_of_str_with_nul_keeps_its_items():
    """No q symbol holds NUL: an all-str object array with one (contiguous or strided) travels as
    the object-array record, exactly; q_compatible=True refuses it, naming the str."""
    a = np.array(["x\0y", "z", ""], dtype=object)
    for arr in (a, np.repeat(a, 2)[::2]):
        b = rt(arr)
        assert b.dtype == object and b.tolist() == ["x\0y", "z", ""]
    with pytest.raises(qwire.EncodeError, match="NUL"):
        qwire.dumps(a, q_compatible=True)
    assert bytes(qwire.dumps(a))[8] == 112                                  # an extension record
    assert bytes(qwire.dumps(np.array(["x", "z"], dtype=object)))[8] == 11  # without NUL: a symbol vector

# ---- time zones -------------------------------------------------------------------------------------------

def test_aware_datetimes_keep_the_offset_and_the_instant():
    zoneinfo = pytest.importorskip("zoneinfo")
    try:
        tz = zoneinfo.ZoneInfo("America/New_York")
    except zoneinfo.ZoneInfoNotFoundError:
        pytest.skip("no time zone database")
    x = dt.datetime(2021, 11, 7, 1, 30, fold=1, tzinfo=tz)     # the second 01:30 that day (EST)
    y = rt(x)
    assert y.utcoffset() == x.utcoffset() == dt.timedelta(hours=-5) and y.tzinfo == dt.timezone(x.utcoffset())
    assert y.astimezone(dt.timezone.utc) == x.astimezone(dt.timezone.utc)
    assert y.replace(tzinfo=None) == x.replace(tzinfo=None)


def test_times_with_a_zone_of_varying_offset_are_refused():
    zoneinfo = pytest.importorskip("zoneinfo")
    try:
        tz = zoneinfo.ZoneInfo("Europe/Paris")
    except zoneinfo.ZoneInfoNotFoundError:
        pytest.skip("no time zone database")
    with pytest.raises(qwire.EncodeError, match="offset"):
        qwire.dumps(dt.time(12, tzinfo=tz))


# ---- malformed records ----------------------------------------------------------------------------------

def L(*items):
    """The hex of a general list of these items, as qwire writes it."""
    return payload_hex(list(items))


def V(a):
    return payload_hex(a)


U8 = np.zeros(8, dtype=np.uint8)

MALFORMED = [
    ("unknown code", "7000" "000000000000"),
    ("reserved code", "702f" "6500"),
    ("out-of-band code without buffers", "7031" "6500"),
    ("tuple of an atom", "7001" "f90100000000000000"),
    ("set of unhashables", "7002" + L([])),
    ("bytearray of longs", "7004" + V(np.ones(1, dtype="i8"))),
    ("complex of 3", "7005" + V(np.zeros(3))),
    ("complex of longs", "7005" + V(np.zeros(2, dtype="i8"))),
    ("decimal, not a number", "7006" + V(b"abc")),
    ("decimal, not canonical", "7006" + V(b"+1.0")),
    ("datetime of 3", "7008" + L(0, 0, False)),
    ("datetime, offset of a day", "7008" + L(0, 86_400 * 10**6, False, "")),
    ("datetime, before year 1", "7008" + L(-1, 0, False, "")),
    ("datetime, fold not a boolean", "7008" + L(0, 0, 1, "")),
    ("time beyond a day", "7009" + L(86_400 * 10**6, None, False, "")),
    ("str of a symbol", "700a" "f56100"),
    ("str, not UTF-8", "700a" + V(b"\xff")),
    ("array, object dtype from raw bytes", "7010" + L("|O8", qwire.Vector(np.ones(1, "i8"), "long"), "C", U8)),
    ("array, unknown dtype", "7010" + L("<q8", qwire.Vector(np.ones(1, "i8"), "long"), "C", U8)),
    ("array, short data", "7010" + L("<i8", qwire.Vector(np.full(1, 2, "i8"), "long"), "C", U8)),
    ("array, negative shape", "7010" + L("<i8", qwire.Vector(np.full(1, -1, "i8"), "long"), "C", U8[:0])),
    ("array, bad order", "7010" + L("<i8", qwire.Vector(np.ones(1, "i8"), "long"), "X", U8)),
    # fuzz finding (registry target): an order that is a vector made `order in ("C", "F")` raise
    # NumPy's ValueError about truth values instead of a DecodeError
    ("array, order a vector", "7010" + L("<i8", qwire.Vector(np.ones(1, "i8"), "long"), np.zeros(2, "i8"), U8)),
    ("object array, order a vector", "7011" + L(qwire.Vector(np.ones(1, "i8"), "long"), np.zeros(2, "i8"), None)),
    ("array, data not bytes", "7010" + L("<i8", qwire.Vector(np.ones(1, "i8"), "long"), "C", np.zeros(1, "i8"))),
    ("object array, too few items", "7011" + L(qwire.Vector(np.full(1, 2, "i8"), "long"), "C", None)),
    ("scalar, wrong width", "7012" + L("<i8", U8[:1])),
    ("truncated", "7001"),
]


@pytest.mark.parametrize("what, hexstr", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_records_are_decode_errors(what, hexstr):
    with pytest.raises(qwire.DecodeError) as e:
        qwire.loads(message(bytes.fromhex(hexstr)))
    assert e.value.offset is not None


def test_unknown_codes_are_refused_before_their_payload_is_read():
    with pytest.raises(qwire.DecodeError) as e:
        qwire.loads(message(bytes.fromhex("00 00 02000000 6500 70 1f ffff")))
    assert e.value.offset == 8 + 6 + 2 and e.value.type_code == 112


@given(st.binary(max_size=40), st.sampled_from(sorted(extensions.HANDLED_CODES)))
def test_random_payloads_never_crash(body, code):
    try:
        qwire.loads(message(bytes([0x70, code]) + body))
    except qwire.DecodeError:
        pass


def test_decoded_values_match_the_strict_equality():
    """pysame itself tells apart what the round trips must keep apart."""
    assert not pysame(np.zeros(2, "<u2"), np.zeros(2, ">u2"))
    assert not pysame(np.zeros((2, 2), order="C"), np.zeros((2, 2), order="F"))
    assert not pysame(decimal.Decimal("1.0"), decimal.Decimal("1.00"))
    assert not pysame(dt.time(1, tzinfo=dt.timezone.utc), dt.time(1, tzinfo=dt.timezone(dt.timedelta(0), "Z")))
    assert not pysame((1,), [1]) and not pysame({1}, frozenset({1}))
    assert struct.pack("<d", 0.0) != struct.pack("<d", -0.0) and not pysame(0.0, -0.0)
