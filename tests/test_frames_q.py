"""What kdb+ sees of pandas objects (`q_compatible=True`, docs/TABLES.md): byte for byte what PyKX's
own conversion writes for the same frames where PyKX converts them (unlicensed, `kx.toq`), the
documented mapping where it does not, and EncodeError (never a plain TypeError) for what has no q
form."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import qwire
from qwire import KeyedTable, Table
from frame_strategies import EXTENSION_KINDS, _extension_column, frames, indexes
from strategies import assert_same

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

I64_NULL, I32_NULL, I16_NULL = -(2**63), -(2**31), -(2**15)


def q(x):
    return qwire.loads(qwire.dumps(x, q_compatible=True))


SAME_AS_PYKX = {
    "int8 widened to short": pd.DataFrame({"a": np.arange(3, dtype=np.int8)}),
    "uint16 widened to int": pd.DataFrame({"a": np.arange(3, dtype=np.uint16)}),
    "uint32 widened to long": pd.DataFrame({"a": np.arange(3, dtype=np.uint32)}),
    "float16 widened to real": pd.DataFrame({"a": np.arange(3, dtype=np.float16)}),
    "Int16 nulls": pd.DataFrame({"a": pd.array([1, None, 3], dtype="Int16")}),
    "Int32 nulls": pd.DataFrame({"a": pd.array([1, None, 3], dtype="Int32")}),
    "Int64 nulls": pd.DataFrame({"a": pd.array([1, None, 3], dtype="Int64")}),
    "Float32 nulls": pd.DataFrame({"a": pd.array([1.5, None, 3], dtype="Float32")}),
    "Float64 nulls": pd.DataFrame({"a": pd.array([1.5, None, 3], dtype="Float64")}),
    "tz-aware ns as UTC": pd.DataFrame({"a": pd.date_range("2024", periods=3, tz="Europe/Paris", unit="ns")}),
    "tz-aware us as UTC": pd.DataFrame({"a": pd.date_range("2024", periods=3, tz="America/New_York")}),
    "datetime64[s] as timestamps": pd.DataFrame({"a": np.array([1, 2, 3], dtype="M8[s]")}),
    # ordinary values only: PyKX writes NaT as 0 (qwire writes q's null timespan, 0Nn)
    "timedelta as timespan": pd.DataFrame({"a": pd.to_timedelta([1, 2, 3], unit="s")}),
    "str dtype with missing": pd.DataFrame({"a": pd.array(["x", None, "z"], dtype="str")}),
    "string dtype with missing": pd.DataFrame({"a": pd.array(["x", None, "z"], dtype="string")}),
    "object str with None": pd.DataFrame({"a": pd.Series(["x", None, "z"], dtype=object)}),
    "mixed numeric": pd.DataFrame({"i": np.arange(3), "f": [1.5, np.nan, 2.0], "b": [True, False, True],
                                   "h": np.arange(3, dtype=np.int16), "e": np.arange(3, dtype=np.float32)}),
    "named RangeIndex as key": pd.DataFrame({"a": [1, 2]}, index=pd.RangeIndex(2, name="r")),
    "named Index as key": pd.DataFrame({"a": [1.5, 2.5]}, index=pd.Index([10, 20], name="k")),
    "MultiIndex as keys": pd.DataFrame({"a": [1, 2]}, index=pd.MultiIndex.from_tuples([(1, "a"), (2, "b")], names=["k", "l"])),
    "Series as a vector": pd.Series([1.5, 2.5, np.nan]),
}


@pytest.mark.parametrize("what", list(SAME_AS_PYKX))
def test_q_compatible_frames_are_pykx_bytes(what, kx, kx_bytes):
    x = SAME_AS_PYKX[what]
    assert bytes(qwire.dumps(x, q_compatible=True)).hex() == kx_bytes(kx.toq(x)).hex()


@settings(max_examples=60, deadline=None)
@given(data=st.data(), dtype=st.sampled_from(["Int16", "Int32", "Int64", "Float32", "Float64"]))
def test_generated_nullable_columns_are_pykx_bytes(data, dtype, kx, kx_bytes):
    values = data.draw(st.lists(st.one_of(st.none(), st.integers(-(2**15) + 1, 2**15 - 1)), max_size=8))
    df = pd.DataFrame({"a": pd.array(values, dtype=dtype), "b": np.arange(len(values))})
    assert bytes(qwire.dumps(df, q_compatible=True)).hex() == kx_bytes(kx.toq(df)).hex()


def test_the_mapping_pykx_cannot_run_unlicensed():
    """Categorical -> symbols (missing as the null symbol), UInt/Int8 nullables widened with q nulls,
    an unnamed non-default index -> a keyed table keyed by `index`, non-str labels as their str."""
    df = pd.DataFrame({"c": pd.Categorical(["x", None, "y"]), 1: pd.array([1, None, 3], dtype="Int8"),
                       "u": pd.array([1, None, 3], dtype="UInt32"), "o": np.array([b"ab", b"c", b""], dtype=object)},
                      index=[7, 8, 9])
    assert_same(q(df), KeyedTable(Table({"index": np.array([7, 8, 9])}), Table({
        "c": np.array(["x", "", "y"], dtype=object), "1": np.array([1, I16_NULL, 3], dtype=np.int16),
        "u": np.array([1, I64_NULL, 3]), "o": [b"ab", b"c", b""]})))


def test_plain_q_tables_still_decode_as_qwire_tables():
    t = Table({"a": np.arange(3), "s": np.array(["x", "y", "z"], dtype=object)})
    assert type(qwire.loads(qwire.dumps(t))) is Table
    assert type(q(pd.DataFrame({"a": [1]}))) is Table


def test_q_compatible_pandas_scalars():
    assert np.isnat(q(pd.NaT)) and q(pd.NA) is None
    ts = q(pd.Timestamp("2024-01-01 12:00", tz="Europe/Paris"))
    assert bytes(qwire.dumps(pd.Timestamp("2024-01-01 12:00", tz="Europe/Paris"), q_compatible=True)) == \
        bytes(qwire.dumps(np.datetime64("2024-01-01T11:00", "ns")))
    assert ts == dt.datetime(2024, 1, 1, 11, 0)  # a q timestamp decodes as datetime where it fits
    assert bytes(qwire.dumps(pd.Timedelta(5, "s"), q_compatible=True)) == bytes(qwire.dumps(np.timedelta64(5 * 10**9, "ns")))


def test_issue_11_tz_aware_and_nullable_columns_are_no_longer_a_plain_type_error():
    """tz-aware and nullable columns convert with q_compatible=True and round-trip in the default
    profile; what has no q form raises EncodeError (a TypeError subclass, with column and dtype)."""
    df = pd.DataFrame({"t": pd.date_range("2024", periods=2, tz="UTC"), "n": pd.array([1, None], dtype="Int64")})
    assert type(q(df)) is Table
    assert qwire.loads(qwire.dumps(df)).equals(df)
    bad = pd.DataFrame({"ok": [1, 2], "flag": pd.array([True, None], dtype="boolean")})
    with pytest.raises(qwire.EncodeError, match=r"column 'flag' \(dtype boolean\)"):
        qwire.dumps(bad, q_compatible=True)


REFUSED_Q = {
    "complex": (pd.DataFrame({"z": np.array([1j, 2])}), "column 'z'"),
    "period": (pd.DataFrame({"p": pd.period_range("2024", periods=2, freq="D")}), "column 'p'"),
    "interval": (pd.DataFrame({"iv": pd.interval_range(0, 2)}), "column 'iv'"),
    "uint64 above long": (pd.DataFrame({"u": np.array([2**64 - 1, 1], dtype=np.uint64)}), "column 'u'"),
    "non-str categories": (pd.DataFrame({"c": pd.Categorical([1, 2])}), "column 'c'"),
    "MultiIndex columns": (pd.DataFrame([[1, 2]], columns=pd.MultiIndex.from_tuples([("a", 1), ("a", 2)])), "MultiIndex"),
    "duplicate names": (pd.DataFrame([[1, 2]], columns=["a", "a"]), "distinct"),
    "key clashes with column": (pd.DataFrame({"k": [1]}, index=pd.Index([1], name="k")), "differ in name"),
}


@pytest.mark.parametrize("what", list(REFUSED_Q))
def test_what_q_cannot_read_is_refused_with_encode_error(what):
    df, text = REFUSED_Q[what]
    with pytest.raises(qwire.EncodeError, match=text):
        qwire.dumps(df, q_compatible=True)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_generated_frames_convert_or_raise_encode_error(data):
    """Every generated frame (every dtype, index and label kind of tests/test_frames.py) either
    becomes a q table that decodes, or is refused with EncodeError: never another exception (the
    class of issue 11 item 9: plain TypeErrors from tz-aware and nullable columns)."""
    df = data.draw(frames())
    try:
        m = qwire.dumps(df, q_compatible=True)
    except qwire.EncodeError:
        return
    assert type(qwire.loads(m)) in (Table, KeyedTable)
    assert bytes(m)[8] != 0x70      # no extension record: plain q


@settings(max_examples=200, deadline=None)
@given(data=st.data(), kind=st.sampled_from(EXTENSION_KINDS))
def test_generated_series_and_indexes_convert_or_raise_encode_error(data, kind):
    n = data.draw(st.integers(0, 5))
    s = pd.Series(_extension_column(kind, n, data.draw), index=data.draw(indexes(n)))
    for x in (s, s.index, pd.Index(s.array) if n else s.index):
        try:
            m = qwire.dumps(x, q_compatible=True)
        except qwire.EncodeError:
            continue
        qwire.loads(m)
        assert bytes(m)[8] != 0x70


def test_arrow_backed_columns_map_as_arrow_columns():
    import pyarrow as pa

    df = pd.DataFrame({"i": pd.array([1, None], dtype=pd.ArrowDtype(pa.int64())),
                       "s": pd.array(["a", None], dtype=pd.ArrowDtype(pa.string()))})
    assert_same(q(df), Table({"i": np.array([1, I64_NULL]), "s": np.array(["a", ""], dtype=object)}))
