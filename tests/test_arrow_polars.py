"""pyarrow and polars objects come back as what they were in the default profile (schema, types,
metadata, chunks, names), as q tables with q_compatible=True; qwire.Table converts both ways
without copying fixed-width columns (checked by buffer address); malformed records give
DecodeError (docs/TABLES.md)."""
from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import qwire
from qwire import Table
from qwire._integrations import Record
from qwire.extensions import Code
from strategies import assert_same

TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=5)

ARROW_TYPES = {
    "int8": (pa.int8(), st.integers(-128, 127)), "int64": (pa.int64(), st.integers(-(2**63), 2**63 - 1)),
    "uint64": (pa.uint64(), st.integers(0, 2**64 - 1)), "float32": (pa.float32(), st.floats(width=32)),
    "float64": (pa.float64(), st.floats()), "bool": (pa.bool_(), st.booleans()),
    "string": (pa.string(), TEXT), "large_string": (pa.large_string(), TEXT), "binary": (pa.binary(), st.binary(max_size=4)),
    "timestamp[ns, tz]": (pa.timestamp("ns", tz="Europe/Paris"), st.integers(-(2**62), 2**62)),
    "timestamp[us]": (pa.timestamp("us"), st.integers(-(2**50), 2**50)), "date32": (pa.date32(), st.integers(-(10**5), 10**5)),
    "duration[ms]": (pa.duration("ms"), st.integers(-(2**40), 2**40)),
    "decimal128": (pa.decimal128(10, 2), st.decimals(-(10**7), 10**7, places=2, allow_nan=False, allow_infinity=False)),
    "list<int64>": (pa.list_(pa.int64()), st.lists(st.integers(-5, 5), max_size=3)),
    "struct": (pa.struct([("a", pa.int32()), ("b", pa.string())]), st.fixed_dictionaries({"a": st.integers(-5, 5), "b": TEXT})),
}


@st.composite
def arrow_arrays(draw, n=None):
    t, values = ARROW_TYPES[draw(st.sampled_from(sorted(ARROW_TYPES)))]
    size = draw(st.integers(0, 6)) if n is None else n
    offset = draw(st.integers(0, 2))
    items = draw(st.lists(st.one_of(st.none(), values), min_size=size + offset, max_size=size + offset))
    arr = pa.array(items, type=t)
    if draw(st.booleans()) and pa.types.is_string(t):
        arr = arr.dictionary_encode()
    return arr.slice(offset)     # a non-zero offset, for some


@st.composite
def arrow_tables(draw):
    n = draw(st.integers(0, 6))
    k = draw(st.integers(0, 4))
    names = draw(st.lists(TEXT, min_size=k, max_size=k))   # duplicates allowed: Arrow has them
    cols = [draw(arrow_arrays(n)) for _ in range(k)]
    table = pa.table(cols, names=names) if k else pa.table({})
    if draw(st.booleans()):
        table = table.replace_schema_metadata({"who": draw(TEXT)})
    return table


def roundtrip(x, **kw):
    return qwire.loads(qwire.dumps(x, **kw))


def _norm(v):
    if isinstance(v, float) and v != v:
        return "<NaN>"
    if isinstance(v, list):
        return [_norm(x) for x in v]
    if isinstance(v, dict):
        return {k: _norm(x) for k, x in v.items()}
    return v


def same_arrow(a, b):
    """Same Arrow type, nulls and values (NaN equal to NaN, which Arrow's equals denies)."""
    if isinstance(a, (pa.Table, pa.RecordBatch)):
        return (a.schema.equals(b.schema, check_metadata=True) and a.num_rows == b.num_rows
                and all(same_arrow(x, y) for x, y in zip(a.columns, b.columns)))
    return (type(a) is type(b) and a.type == b.type and len(a) == len(b) and a.null_count == b.null_count
            and _norm(a.to_pylist()) == _norm(b.to_pylist()))


@settings(max_examples=200, deadline=None)
@given(arr=arrow_arrays())
def test_arrow_arrays_round_trip_exactly(arr):
    back = roundtrip(arr)
    assert same_arrow(back, arr)
    chunked = pa.chunked_array([arr, arr], type=arr.type)
    back = roundtrip(chunked)
    assert type(back) is pa.ChunkedArray and back.num_chunks == 2 and same_arrow(back, chunked)


@settings(max_examples=150, deadline=None)
@given(table=arrow_tables())
def test_arrow_tables_and_batches_round_trip_exactly(table):
    back = roundtrip(table)
    assert type(back) is pa.Table and same_arrow(back, table)
    for batch in table.to_batches():
        b = roundtrip(batch)
        assert type(b) is pa.RecordBatch and same_arrow(b, batch)


def test_arrow_decoding_is_zero_copy_over_the_message():
    arr = pa.array(np.arange(100_000, dtype=np.int64))
    m = qwire.dumps(arr).copy()
    back = qwire.loads(m)
    start = np.frombuffer(m, np.uint8).ctypes.data
    assert start <= back.buffers()[1].address < start + len(m)


@pytest.mark.slow
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_polars_frames_and_series_round_trip_exactly(data):
    n = data.draw(st.integers(0, 5))
    opt = lambda s: st.lists(st.one_of(st.none(), s), min_size=n, max_size=n)  # noqa: E731
    df = pl.DataFrame({
        "i": pl.Series(data.draw(opt(st.integers(-(2**63), 2**63 - 1))), dtype=pl.Int64),
        "u8": pl.Series(data.draw(opt(st.integers(0, 255))), dtype=pl.UInt8),
        "f": pl.Series(data.draw(opt(st.floats())), dtype=pl.Float64),
        "s": pl.Series(data.draw(opt(TEXT)), dtype=pl.String),
        "c": pl.Series(data.draw(opt(st.sampled_from(["a", "b"]))), dtype=pl.Categorical),
        "e": pl.Series(data.draw(opt(st.sampled_from(["a", "b"]))), dtype=pl.Enum(["a", "b", "z"])),
        "t": pl.Series(data.draw(opt(st.datetimes(dt.datetime(1900, 1, 1), dt.datetime(2200, 1, 1)))), dtype=pl.Datetime("us")),
        "d": pl.Series(data.draw(opt(st.dates())), dtype=pl.Date),
        "l": pl.Series(data.draw(opt(st.lists(st.integers(-5, 5), max_size=2))), dtype=pl.List(pl.Int64)),
        "b": pl.Series(data.draw(opt(st.booleans())), dtype=pl.Boolean),
    })
    back = roundtrip(df)
    assert type(back) is pl.DataFrame and back.schema == df.schema and back.equals(df, null_equal=True)
    for name in df.columns:
        s = roundtrip(df[name])
        assert type(s) is pl.Series and s.name == name and s.dtype == df[name].dtype and s.equals(df[name], null_equal=True)


def test_q_compatible_arrow_and_polars_are_q_tables():
    t = pa.table({"i": pa.array([1, None, 3]), "s": ["x", None, "z"], "d": pa.array(["u", "v", "u"]).dictionary_encode(),
                  "ts": pa.array([0, 1, None], pa.timestamp("us", tz="UTC")), "h": pa.array([1, 2, 3], pa.int8())})
    expected = Table({"i": np.array([1, -(2**63), 3]), "s": np.array(["x", "", "z"], dtype=object),
                      "d": np.array(["u", "v", "u"], dtype=object),
                      "ts": np.array([0, 1000, -(2**63)]).view("M8[ns]"),
                      "h": np.array([1, 2, 3], dtype=np.int16)})
    assert_same(qwire.loads(qwire.dumps(t, q_compatible=True)), expected)
    assert_same(qwire.loads(qwire.dumps(t.to_batches()[0], q_compatible=True)), expected)
    assert_same(qwire.loads(qwire.dumps(pl.from_arrow(t), q_compatible=True)), expected)
    assert_same(qwire.loads(qwire.dumps(t.column("i"), q_compatible=True)), expected["i"])
    with pytest.raises(qwire.EncodeError, match="column 'b'"):
        qwire.dumps(pa.table({"b": pa.array([1, 2], pa.decimal128(5, 2))}), q_compatible=True)


def test_table_to_arrow_and_polars_share_fixed_width_buffers():
    t = Table({"a": np.arange(1000), "f": np.linspace(0, 1, 1000), "n": np.where(np.arange(1000) % 7, 5, -(2**63)),
               "ts": np.arange(1000).astype("M8[ns]"), "s": np.array(["x"] * 1000, dtype=object)})
    at = t.to_arrow()
    for name in ("a", "f", "n", "ts"):
        assert at.column(name).chunk(0).buffers()[1].address == t[name].ctypes.data, name
    assert at.column("n").null_count == 143 and at.column("a").null_count == 0
    assert at.column("s").to_pylist() == ["x"] * 1000
    back = Table.from_arrow(at)
    assert back["a"].ctypes.data == t["a"].ctypes.data and back["f"].ctypes.data == t["f"].ctypes.data
    assert_same(back, t)
    pdf = t.to_polars()
    assert pdf["a"].to_numpy().ctypes.data == t["a"].ctypes.data
    assert_same(Table.from_polars(pdf), t)


def test_from_arrow_shares_buffers_of_null_free_columns():
    at = pa.table({"a": np.arange(10), "f": np.arange(10.0)})
    t = Table.from_arrow(at)
    assert t["a"].ctypes.data == at.column("a").chunk(0).buffers()[1].address
    assert t["f"].ctypes.data == at.column("f").chunk(0).buffers()[1].address


MALFORMED = [
    ("version", lambda p: p.update(v=9)),
    ("kind", lambda p: p.update(kind="pickle")),
    ("schema bytes", lambda p: p.update(schema=np.zeros(8, np.uint8))),
    ("too few columns", lambda p: p["columns"].pop()),
    ("buffer too short", lambda p: p["columns"][0][0][4].__setitem__(1, np.zeros(3, np.uint8))),
    ("length past the buffers", lambda p: p["columns"][0][0].__setitem__(1, 10**6)),
    ("string offsets", lambda p: p["columns"][1][0][4].__setitem__(1, np.full(32, 255, np.uint8))),
    ("string utf-8", lambda p: p["columns"][1][0][4].__setitem__(2, np.full(16, 255, np.uint8))),
    ("not a tree", lambda p: p["columns"][0].__setitem__(0, "x")),
]


@pytest.mark.parametrize("what, mutate", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_arrow_records_raise_decode_error(what, mutate):
    from qwire import _arrow

    payload = _arrow.encode(pa.table({"i": np.arange(4), "s": ["a", "b", "c", "d"]}))
    mutate(payload)
    with pytest.raises(qwire.DecodeError):
        qwire.loads(qwire.dumps(Record(Code.ARROW, payload)))


def test_polars_object_columns_are_refused_naming_the_column():
    df = pl.DataFrame({"ok": [1, 2], "obj": pl.Series([object(), object()], dtype=pl.Object)})
    with pytest.raises(qwire.EncodeError, match="column 'obj' \\(dtype Object\\)"):
        qwire.dumps(df)


def _big_string_payload(texts):
    from qwire import _arrow

    return _arrow.encode(pa.table({"s": pa.array(texts, pa.large_string())}))


def test_large_string_columns_are_checked_in_full():
    """Above 4096 strings the check runs in NumPy (offsets) and Arrow's UTF-8 check only for
    non-ASCII data: valid non-ASCII data decodes, bad offsets and bad UTF-8 are DecodeError."""
    texts = [f"v{i % 97}é" if i % 5 == 0 else f"v{i}" for i in range(10_000)]
    assert roundtrip(pa.table({"s": texts})).column("s").to_pylist() == texts
    for what in ("offsets go back", "offsets past the data", "bad utf-8", "bad utf-8 in ascii"):
        payload = _big_string_payload(texts if what != "bad utf-8 in ascii" else [f"v{i}" for i in range(10_000)])
        tree = payload["columns"][0][0]
        offsets = tree[4][1].view(np.int64).copy()
        data = tree[4][2].copy()
        if what == "offsets go back":
            offsets[5000] = offsets[4990]
        elif what == "offsets past the data":
            offsets[-1] = data.size + 10
        else:
            data[offsets[3000]] = 0xFF
        tree[4][1] = offsets.view(np.uint8)
        tree[4][2] = data
        with pytest.raises(qwire.DecodeError):
            qwire.loads(qwire.dumps(Record(Code.ARROW, payload)))
