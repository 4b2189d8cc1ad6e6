"""pandas objects round-trip exactly in the default profile (DataFrame, Series, Index, pandas
scalars: values, dtypes, index, column labels and their types, names, order), whatever cannot be
carried is refused with EncodeError naming the column and dtype, and malformed records give
DecodeError (docs/TABLES.md)."""
from __future__ import annotations

import datetime as dt
import decimal
import zoneinfo

import numpy as np
import pandas as pd

# pandas 3's default str is Arrow-backed; on pandas 2 the same storage is asked for by name
ARROW_STR = "str" if int(pd.__version__.split(".")[0]) >= 3 else "string[pyarrow]"
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from hypothesis.extra import pandas as hpd

import qwire
from frame_checks import assert_same_frame, assert_same_index, assert_same_series
from frame_strategies import EXTENSION_KINDS, LABELS, NUMPY_DTYPES, OBJECT_CELLS, TEXT, _extension_column, frames, indexes
from qwire._integrations import Record
from qwire.extensions import Code


def roundtrip(x, **kw):
    return qwire.loads(qwire.dumps(x, **kw))


# ---- generated frames ------------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(df=frames())
def test_generated_frames_round_trip_exactly(df):
    assert_same_frame(roundtrip(df), df)


@settings(max_examples=150, deadline=None)
@given(df=hpd.data_frames(columns=hpd.columns(["a", "b", 3], dtype=float), index=hpd.range_indexes(max_size=8)))
def test_hypothesis_pandas_frames_round_trip_exactly(df):
    assert_same_frame(roundtrip(df), df)


@settings(max_examples=150, deadline=None)
@given(s=hpd.series(elements=OBJECT_CELLS, dtype=object, index=hpd.range_indexes(max_size=6)), name=LABELS)
def test_object_series_keep_every_cell_type(s, name):
    s.name = name
    assert_same_series(roundtrip(s), s)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), kind=st.sampled_from(EXTENSION_KINDS))
def test_extension_series_round_trip_exactly(data, kind):
    n = data.draw(st.integers(0, 6))
    s = pd.Series(_extension_column(kind, n, data.draw), index=data.draw(indexes(n)), name=data.draw(LABELS))
    assert_same_series(roundtrip(s), s)


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_indexes_round_trip_exactly(data):
    index = data.draw(indexes(data.draw(st.integers(0, 6))))
    assert_same_index(roundtrip(index), index)


# ---- named cases -----------------------------------------------------------------------------------

def test_every_numpy_dtype_in_one_frame():
    """One column per NumPy dtype pandas holds: each comes back with its dtype and values."""
    n = 4
    cols = {str(d): np.arange(n).astype(d) if d[0] not in "US" else np.array(["a", "bb", "", "c"], dtype=d)
            for d in NUMPY_DTYPES}
    cols["datetime64[ns] NaT"] = np.array(["2024-01-01", "NaT", "1677-09-22", "2262-04-11"], dtype="datetime64[ns]")
    df = pd.DataFrame(cols)
    assert_same_frame(roundtrip(df), df)


def test_the_first_users_frame_comes_back_unchanged():
    """The issue's report: None in a str column, a Categorical, integer and MultiIndex column labels, an
    unnamed index."""
    df = pd.DataFrame({0: pd.Series(["a", None], dtype=object, index=[10, 20]), 1: pd.Categorical(["x", "y"])},
                      index=[10, 20])
    back = roundtrip(df)
    assert_same_frame(back, df)
    assert back.iloc[1, 0] is None and back.columns.tolist() == [0, 1] and back.index.tolist() == [10, 20]
    multi = pd.DataFrame([[1, 2]], columns=pd.MultiIndex.from_tuples([("a", "x"), ("a", "y")]))
    assert roundtrip(multi).columns.tolist() == [("a", "x"), ("a", "y")]


def test_pandas_scalars_round_trip_exactly():
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    for x in [pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2024-10-27 00:30", tz="UTC").tz_convert(paris),
              pd.Timestamp("2024-01-01 00:00:00.000000001"), pd.Timestamp("1500-01-01").as_unit("s"),
              pd.Timestamp("2024-01-01", tz=dt.timezone(dt.timedelta(hours=-3))), pd.Timedelta(1, "ns"),
              pd.Timedelta(days=3).as_unit("s"), pd.Period("2024Q1", freq="Q"), pd.Interval(0.5, 1.5, closed="both")]:
        y = roundtrip(x)
        assert type(y) is type(x) and y == x and str(y) == str(x)
        assert getattr(y, "unit", None) == getattr(x, "unit", None) and getattr(y, "tz", None) == getattr(x, "tz", None)
    import dateutil.tz

    # pandas 2 cannot itself build a Timestamp from a string in a dateutil tzfile zone
    zones = (dateutil.tz.gettz("Europe/Paris"), dateutil.tz.tzutc()) if ARROW_STR == "str" else (dateutil.tz.tzutc(),)
    for tz in zones:
        x = pd.Timestamp("2024-06-01 12:00", tz=tz)
        y = roundtrip(x)
        assert y == x and type(y.tzinfo) is type(x.tzinfo) and y.utcoffset() == x.utcoffset()
    assert roundtrip(pd.NaT) is pd.NaT and roundtrip(pd.NA) is pd.NA
    assert roundtrip([pd.NA, pd.NaT, None]) == [pd.NA, pd.NaT, None]


def test_decoded_frames_are_writable_and_own_their_data():
    df = pd.DataFrame({"a": np.arange(5.0), "b": np.arange(5), "c": pd.array([1, None, 3, 4, 5], dtype="Int64"),
                       "d": pd.Categorical(list("xyxyx"))})
    m = qwire.dumps(df)
    back = qwire.loads(m)
    back.iloc[0, 0] = 9.0
    back.iloc[0, 1] = 9
    back.iloc[1, 2] = 7
    back.iloc[0, 3] = "y"
    assert back.iloc[0, 0] == 9.0 and back.iloc[1, 2] == 7 and back.iloc[0, 3] == "y"
    assert_same_frame(qwire.loads(m), df)
    s = qwire.loads(qwire.dumps(df["a"]))
    s.iloc[0] = 5.0
    assert s.iloc[0] == 5.0


def test_frames_inside_other_values_and_with_refs():
    df = pd.DataFrame({"a": [1, 2]})
    back = roundtrip({"x": [df, (df["a"], pd.NA)]})
    assert_same_frame(back["x"][0], df)
    assert_same_series(back["x"][1][0], df["a"]) and back["x"][1][1] is pd.NA
    shared = roundtrip([df, df], refs=True)
    assert_same_frame(shared[0], df) and shared[0] is shared[1]


# ---- refused ---------------------------------------------------------------------------------------

class OddZone(dt.tzinfo):
    def utcoffset(self, d):
        return dt.timedelta(hours=1)

    def dst(self, d):
        return dt.timedelta(0)


def test_arrow_backed_columns_round_trip_exactly():
    """dtype_backend="pyarrow" columns (pd.ArrowDtype, any Arrow type) travel as their Arrow arrays."""
    import pyarrow as pa

    df = pd.DataFrame({
        "i": pd.array([1, None, 3], dtype=pd.ArrowDtype(pa.int64())),
        "s": pd.array(["a", None, "c"], dtype=pd.ArrowDtype(pa.string())),
        "l": pd.array([[1], [2, 3], None], dtype=pd.ArrowDtype(pa.list_(pa.int64()))),
        "t": pd.array([0, None, 2], dtype=pd.ArrowDtype(pa.timestamp("us", tz="UTC"))),
        "f": pd.array([1.5, None, 2.5], dtype=pd.ArrowDtype(pa.float32())),
        "d": pd.array([decimal.Decimal("1.5"), None], dtype=pd.ArrowDtype(pa.decimal128(5, 1))).take([0, 1, 0]),
    })
    assert_same_frame(roundtrip(df), df)
    assert_same_series(roundtrip(df["l"]), df["l"])


REFUSED = [
    ("sparse", pd.arrays.SparseArray([0, 1, 0]), "Sparse"),
    ("an unknown tzinfo", pd.Series(pd.date_range("2024", periods=3)).dt.tz_localize(OddZone()).array, "OddZone"),
]


@pytest.mark.parametrize("what, values, dtype_text", REFUSED, ids=[r[0] for r in REFUSED])
def test_what_cannot_be_carried_is_refused_naming_column_and_dtype(what, values, dtype_text):
    df = pd.DataFrame({"ok": [1, 2, 3], "bad col": values})
    with pytest.raises(qwire.EncodeError) as info:
        qwire.dumps(df)
    assert "'bad col'" in str(info.value) and dtype_text in str(info.value)


# ---- malformed records -----------------------------------------------------------------------------

def _good_frame_payload():
    from qwire import _frames

    df = pd.DataFrame({"a": pd.array([1, None], dtype="Int64"), "b": pd.Categorical(["x", "y"]),
                       "c": pd.array(["p", None], dtype=ARROW_STR)}, index=pd.Index([5, 6], name="k"))
    return _frames.encode_frame(df)


def _mutations():
    return [
        ("version", lambda p: p.update(v=2)),
        ("extra field", lambda p: p.update(extra=1)),
        ("rows", lambda p: p.update(rows=3)),
        ("negative rows", lambda p: p.update(rows=-1)),
        ("index kind", lambda p: p["index"].__setitem__(0, "eval")),
        ("column kind", lambda p: p["data"][0].__setitem__(0, "pickle")),
        ("mask length", lambda p: p["data"][0].__setitem__(3, np.zeros(5, dtype=bool))),
        ("masked dtype name", lambda p: p["data"][0].__setitem__(1, "os.system")),
        ("categorical code", lambda p: p["data"][1].__setitem__(1, np.array([0, 7], dtype=np.int8))),
        ("categorical ordered", lambda p: p["data"][1].__setitem__(3, "yes")),
        ("string offsets", lambda p: p["data"][2].__setitem__(2, np.array([0, 99, 1], dtype=np.int64))),
        ("string utf-8", lambda p: p["data"][2].__setitem__(3, np.frombuffer(b"\xff", dtype=np.uint8))),
        ("too few columns", lambda p: p["data"].pop()),
        ("column labels", lambda p: p.update(columns=["range", None, 0, 10, 1])),
        ("range step", lambda p: p.update(index=["range", None, 0, 2, 0])),
        ("zone as a file path", lambda p: p["data"].__setitem__(0, ["dttz", np.zeros(2, np.int64), "ns", ["dateutil", "/etc/passwd"]])),
        ("zone with ..", lambda p: p["data"].__setitem__(0, ["dttz", np.zeros(2, np.int64), "ns", ["zoneinfo", "../../etc/passwd"]])),
        ("unknown zone", lambda p: p["data"].__setitem__(0, ["dttz", np.zeros(2, np.int64), "ns", ["pytz", "Mars/Olympus"]])),
    ]


def test_deeply_nested_categories_decode_or_raise_decode_error():
    """Categories of categories, as deep as the decoder's nesting limit allows: pandas takes them, and
    decoding needs no deep recursion of its own beyond two frames a level."""
    payload = _good_frame_payload()
    payload["data"][1] = _deep_categories(120)
    try:
        qwire.loads(qwire.dumps(Record(Code.PANDAS_FRAME, payload)))
    except qwire.DecodeError:
        pass


def _deep_categories(depth):
    desc = ["np", np.array(["x"], dtype=object)]
    for _ in range(depth):
        desc = ["cat", np.array([0], dtype=np.int8), ["index", None, desc, None], False]
    return ["cat", np.array([0, 0], dtype=np.int8), ["index", None, desc, None], False]


@pytest.mark.parametrize("what, mutate", _mutations(), ids=[m[0] for m in _mutations()])
def test_malformed_frame_records_raise_decode_error(what, mutate):
    payload = _good_frame_payload()
    mutate(payload)
    message = qwire.dumps(Record(Code.PANDAS_FRAME, payload))
    with pytest.raises(qwire.DecodeError):
        qwire.loads(message)


@settings(max_examples=200, deadline=None)
@given(payload=st.recursive(st.one_of(st.none(), st.integers(-3, 3), TEXT, st.booleans(),
                                      st.builds(lambda k: np.arange(k, dtype=np.int8), st.integers(0, 3))),
                            lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.sampled_from(
                                ["v", "rows", "index", "columns", "data", "name"]), inner, max_size=6), max_leaves=20),
       code=st.sampled_from([Code.PANDAS_FRAME, Code.PANDAS_SERIES, Code.PANDAS_INDEX, Code.PANDAS_SCALAR]))
def test_arbitrary_payloads_decode_or_raise_decode_error(payload, code):
    message = qwire.dumps(Record(code, payload))
    try:
        qwire.loads(message)
    except qwire.DecodeError:
        pass


def test_attrs_and_flags_round_trip():
    df = pd.DataFrame({"a": [1, 2]})
    df.attrs = {"source": "feed", "version": (1, 2), "n": 3}
    df = df.set_flags(allows_duplicate_labels=False)
    back = roundtrip(df)
    assert back.attrs == df.attrs and back.flags.allows_duplicate_labels is False
    assert_same_frame(back, df)
    s = df["a"].copy()
    s.attrs = {"unit": "ms"}
    assert roundtrip(s).attrs == {"unit": "ms"}
    assert roundtrip(pd.DataFrame({"a": [1]})).attrs == {}


# ---- known gaps (the core's; SECURITY.md "Known gaps", docs/TABLES.md) -----------------------------
# Strict expected failures: fixing the core makes them pass, and the marker must then go.

def test_frames_out_of_band_decode_under_the_default_budget():
    """Out-of-band buffers count as bytes received: a 16 MB column sent out of band (a 1 KB
    message) decodes under the default memory budget, and the frame is not sized again by
    pandas' deep __sizeof__ (its columns were charged as they were decoded)."""
    df = pd.DataFrame({"a": np.arange(2_000_000.0), "s": pd.Series(["x", None] * 1_000_000, dtype=object)})
    buffers = []
    header = qwire.dumps(df, buffer_callback=buffers.append)
    assert_same_frame(qwire.loads(header, buffers=buffers), df)


def test_object_column_with_nul_goes_as_its_cells():
    # No q symbol holds NUL: such a column cannot be the symbol vector all-str columns become
    df = pd.DataFrame({"a": np.array(["x\0y", "z"], dtype=object), "b": np.array(["\0", 1], dtype=object)},
                      index=pd.Index(["i\0", "j"], dtype=object, name="k"))
    back = roundtrip(df)
    assert_same_frame(back, df)
    assert back["a"].tolist() == ["x\0y", "z"] and back.index.tolist() == ["i\0", "j"]
    s = pd.Series(["", "\0\0", "q"], dtype=object, name="s")
    assert_same_series(roundtrip(s), s)


@pytest.mark.parametrize("storage", ["python", "pyarrow"])
@pytest.mark.parametrize("na_value", [pd.NA, np.nan], ids=["string", "str"])
def test_string_dtype_column_with_nul_round_trips_on_either_storage(storage, na_value):
    """pandas 3 without pyarrow makes a str column python-storage StringDtype: one holding NUL (no
    q symbol can) comes back with its cells, missing values and dtype, whichever storage holds it."""
    if storage == "pyarrow":
        pytest.importorskip("pyarrow")
    dtype = pd.StringDtype(storage, na_value=na_value)
    df = pd.DataFrame({"s": pd.array(["x\0y", "z", None, "\0"], dtype=dtype)})
    back = roundtrip(df)
    assert_same_frame(back, df)
    assert back["s"].dtype == dtype and back["s"].iloc[0] == "x\0y" and back["s"].isna().tolist() == [False, False, True, False]

