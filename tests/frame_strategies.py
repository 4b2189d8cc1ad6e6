"""Hypothesis strategies for pandas frames, Series and indexes of every dtype qwire carries
(NumPy dtypes, nullable, string, Categorical, tz-aware, Period, Interval, object cells of mixed
types), with every kind of index and column label. Shared by tests/test_frames.py and
tests/test_frames_q.py."""
from __future__ import annotations

import datetime as dt
import zoneinfo

import numpy as np
import pandas as pd
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from hypothesis.extra import pandas as hpd

NUMPY_DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16",
                "float32", "float64", "complex64", "complex128", "datetime64[ns]", "datetime64[us]", "datetime64[s]",
                "timedelta64[ns]", "timedelta64[ms]", "U3", "S3"]
TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\0"), max_size=4)
LABELS = st.one_of(TEXT, st.integers(-5, 5), st.floats(allow_nan=False), st.none(), st.tuples(TEXT, st.integers(0, 3)),
                   st.booleans())
OBJECT_CELLS = st.one_of(TEXT, st.none(), st.just(float("nan")), st.binary(max_size=3), st.integers(-(2**70), 2**70),
                         st.floats(), st.just(pd.NA), st.just(pd.NaT))
ZONES = st.sampled_from([dt.timezone.utc, zoneinfo.ZoneInfo("Europe/Paris"), zoneinfo.ZoneInfo("America/New_York"),
                         dt.timezone(dt.timedelta(hours=5, minutes=30)), "UTC", "Asia/Tokyo"])


def _extension_column(kind, n, draw):
    opt_ints = st.lists(st.one_of(st.none(), st.integers(-100, 100)), min_size=n, max_size=n)
    if kind in ("Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64"):
        values = [None if v is None else abs(v) if kind.startswith("U") else v for v in draw(opt_ints)]
        return pd.array(values, dtype=kind)
    if kind in ("Float32", "Float64"):
        return pd.array(draw(st.lists(st.one_of(st.none(), st.floats(width=32)), min_size=n, max_size=n)), dtype=kind)
    if kind == "boolean":
        return pd.array(draw(st.lists(st.one_of(st.none(), st.booleans()), min_size=n, max_size=n)), dtype=kind)
    texts = draw(st.lists(st.one_of(st.none(), TEXT), min_size=n, max_size=n))
    if kind == "str":
        return pd.array(texts, dtype="str")
    if kind == "string":
        return pd.array(texts, dtype="string")
    if kind == "string[python]":
        return pd.array(texts, dtype=pd.StringDtype("python"))
    if kind == "category":
        cats = sorted({t for t in texts if t is not None} | set(draw(st.lists(TEXT, max_size=2))))
        return pd.Categorical(texts, categories=cats, ordered=draw(st.booleans()))
    if kind == "category[int]":
        return pd.Categorical(draw(opt_ints), ordered=draw(st.booleans()))
    if kind == "tz":
        ns = draw(st.lists(st.one_of(st.none(), st.integers(-(2**62), 2**62)), min_size=n, max_size=n))
        unit = draw(st.sampled_from(["s", "ms", "us", "ns"]))
        naive = pd.array([None if v is None else np.datetime64(v, "ns") for v in ns], dtype="datetime64[ns]")
        return pd.Series(naive).dt.as_unit(unit).dt.tz_localize("UTC").dt.tz_convert(draw(ZONES)).array
    if kind == "period":
        return pd.arrays.PeriodArray(np.array(draw(st.lists(st.integers(0, 10**4), min_size=n, max_size=n)), dtype=np.int64),
                                     dtype=pd.PeriodDtype(draw(st.sampled_from(["D", "M", "Y", "h", "Q-DEC"]))))
    if kind == "interval":
        left = draw(st.lists(st.integers(-50, 50), min_size=n, max_size=n))
        return pd.arrays.IntervalArray.from_arrays(left, [v + 1 for v in left], closed=draw(st.sampled_from(["left", "right", "both", "neither"])))
    if kind == "object-nul":   # all str, some with NUL: no symbol vector can carry them
        out = np.empty(n, dtype=object)
        out[:] = draw(st.lists(st.text(st.characters(exclude_categories=["Cs"]), max_size=4), min_size=n, max_size=n))
        if n:
            out[draw(st.integers(0, n - 1))] += "\0"
        return out
    if kind == "object":
        out = np.empty(n, dtype=object)
        out[:] = draw(st.lists(OBJECT_CELLS, min_size=n, max_size=n))
        return out
    raise AssertionError(kind)


EXTENSION_KINDS = ["Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64", "Float32", "Float64",
                   "boolean", "str", "string", "string[python]", "category", "category[int]", "tz", "period", "interval",
                   "object", "object-nul"]


@st.composite
def indexes(draw, n):
    name = draw(st.one_of(st.none(), TEXT, st.integers(0, 3)))
    kind = draw(st.sampled_from(["range", "range-stepped", "int", "str", "datetime", "multi", "object"]))
    if kind == "range":
        return pd.RangeIndex(n, name=name)
    if kind == "range-stepped":
        start, step = draw(st.integers(-10, 10)), draw(st.sampled_from([-3, -1, 2, 5]))
        return pd.RangeIndex(start, start + step * n, step, name=name)
    if kind == "int":
        return draw(hpd.indexes(dtype=draw(st.sampled_from(["int64", "uint16", "float64"])), min_size=n, max_size=n)).rename(name)
    if kind == "str":
        return pd.Index(draw(st.lists(TEXT, min_size=n, max_size=n)), name=name)
    if kind == "object":
        return pd.Index(draw(st.lists(st.one_of(TEXT, st.integers(), st.none()), min_size=n, max_size=n)), dtype=object, name=name)
    if kind == "datetime":
        start = pd.Timestamp("2024-01-01", tz=draw(st.sampled_from([None, "UTC", "Europe/Paris"])))
        freq = draw(st.sampled_from(["D", "h", "min"]))
        return pd.date_range(start, periods=n, freq=freq, name=name, unit=draw(st.sampled_from(["s", "us", "ns"])))
    a = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    b = draw(st.lists(TEXT, min_size=n, max_size=n))
    return pd.MultiIndex.from_arrays([a, b], names=[name, draw(st.one_of(st.none(), TEXT))])


@st.composite
def frames(draw, max_rows=6):
    n = draw(st.integers(0, max_rows))
    ncols = draw(st.integers(0, 6))
    labels = draw(st.lists(LABELS, min_size=ncols, max_size=ncols))
    data = []
    for i in range(ncols):
        if draw(st.booleans()):
            dtype = np.dtype(draw(st.sampled_from(NUMPY_DTYPES)))
            data.append(draw(hnp.arrays(dtype, n)))
        else:
            data.append(_extension_column(draw(st.sampled_from(EXTENSION_KINDS)), n, draw))
    index = draw(indexes(n))
    df = pd.DataFrame(dict(enumerate(data)), index=index) if ncols else pd.DataFrame(index=index)
    if ncols and draw(st.booleans()) and len(set(map(type, labels))) == 1:
        df.columns = pd.MultiIndex.from_arrays([[str(x) for x in labels], list(range(ncols))], names=["a", None])
    else:
        df.columns = pd.Index(labels, dtype=object) if ncols else df.columns
    return df


