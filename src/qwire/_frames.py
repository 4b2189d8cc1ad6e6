"""pandas objects exactly, in the default profile: the payloads of the FRAME, SERIES and
PANDAS_SCALAR extension records (docs/TABLES.md has the layouts).

A DataFrame travels as its column labels and index (each an index description), and one
description per column: the column's own buffers (NumPy arrays, which the core writes as q vectors
or, for dtypes q lacks, as N-d array records, zero-copy when large), and the little the buffers do
not say (the dtype's parameters, a mask, categories). Nothing is scanned cell by cell in Python:
object columns go to the core as they are (a symbol vector when every cell is a str, else an
object-array record that keeps every cell's type), pandas' Arrow-backed `str` columns as their
Arrow buffers.

Decoding builds only pandas and NumPy objects, from a fixed list of constructors chosen by the
description's kind tag: no import by name, no eval. Every length and code is checked first, so a
malformed payload raises DecodeError and never reaches pandas' unchecked paths.
"""
from __future__ import annotations

import datetime as _dt
import re
from typing import Any

import numpy as np

from .errors import DecodeError, EncodeError

__all__ = ["encode_frame", "encode_series", "encode_scalar", "decode_frame", "decode_series", "decode_scalar"]

FORMAT = 1  # version of the descriptions below


def _pd():
    import pandas as pd

    return pd


# ---- timezones: tagged descriptions, rebuilt with the library that made them ---------------------

def _tz_desc(tz, where):
    if tz is None:
        return None
    if tz is _dt.timezone.utc:
        return ["utc"]
    if type(tz) is _dt.timezone:
        offset = tz.utcoffset(None)
        name = tz.tzname(None)
        return ["fixed", offset // _dt.timedelta(microseconds=1), "" if name == _dt.timezone(offset).tzname(None) else name]
    mod = type(tz).__module__
    if mod == "zoneinfo" or mod.startswith("zoneinfo."):
        key = getattr(tz, "key", None)
        if key:
            return ["zoneinfo", key]
    if mod.startswith("pytz"):
        zone = getattr(tz, "zone", None)
        if zone:
            return ["pytz", zone]
    if mod.startswith("dateutil"):
        if type(tz).__name__ == "tzutc":
            return ["dateutil-utc"]
        # gettz("Europe/Paris") keeps the file it read: the zone's name is the path below zoneinfo/
        name = getattr(tz, "_filename", None)
        if isinstance(name, str) and name:
            name = name.rpartition("zoneinfo/")[2]
            if _ZONE_NAME.fullmatch(name):
                return ["dateutil", name]
    raise EncodeError(f"{where}: timezone {tz!r} ({type(tz).__qualname__}) cannot be carried exactly "
                      "(use a zoneinfo, pytz or datetime.timezone zone)", type(tz))


# An IANA-style zone name: no absolute path, no "..": dateutil (and pytz) would read a file named so.
_ZONE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*")


def _zone(v, what):
    v = _str(v, what)
    if len(v) > 64 or not _ZONE_NAME.fullmatch(v):
        raise _bad(f"{what} {v[:40]!r} is not a zone name")
    return v


def _tz_from(desc):
    if desc is None:
        return None
    kind = desc[0]
    if kind == "utc" and len(desc) == 1:
        return _dt.timezone.utc
    if kind == "fixed" and len(desc) == 3:
        offset = _dt.timedelta(microseconds=_int(desc[1], "UTC offset"))
        return _dt.timezone(offset, _str(desc[2], "zone name")) if desc[2] else _dt.timezone(offset)
    if kind == "zoneinfo" and len(desc) == 2:
        import zoneinfo

        return zoneinfo.ZoneInfo(_zone(desc[1], "zone key"))
    if kind == "pytz" and len(desc) == 2:
        try:
            import pytz
        except ImportError:
            import zoneinfo

            return zoneinfo.ZoneInfo(_zone(desc[1], "zone"))
        return pytz.timezone(_zone(desc[1], "zone"))
    if kind == "dateutil-utc" and len(desc) == 1:
        import dateutil.tz

        return dateutil.tz.tzutc()
    if kind == "dateutil" and len(desc) == 2:
        import dateutil.tz

        tz = dateutil.tz.gettz(_zone(desc[1], "zone"))
        if tz is None:
            raise _bad(f"unknown dateutil zone {desc[1]!r}")
        return tz
    raise _bad(f"bad timezone description {desc!r:.80}")


# ---- encoding ------------------------------------------------------------------------------------

_NUMPY_KINDS = frozenset("biufcmMSUO")


def _where(label):
    text = repr(label)
    return f"column {text if len(text) <= 60 else text[:57] + '...'}"


def _refuse(where, dtype, why=""):
    return EncodeError(f"{where} (dtype {dtype}) cannot be carried exactly{': ' + why if why else ''}", type(dtype))


def _masked(arr):
    """The data and mask of a pandas masked array (Int*, UInt*, Float*, boolean), without a copy."""
    data = getattr(arr, "_data", None)
    mask = getattr(arr, "_mask", None)
    if not isinstance(data, np.ndarray) or not isinstance(mask, np.ndarray):  # pragma: no cover - other pandas
        mask = np.asarray(arr.isna())
        data = arr.to_numpy(dtype=arr.dtype.numpy_dtype, na_value=0)
    return data, mask


def _arrow_string_parts(arr):
    """offsets, data and validity (a bool array, or None) of an Arrow string array (pandas `str`)."""
    import pyarrow as pa

    pa_arr = pa.array(arr)
    if isinstance(pa_arr, pa.ChunkedArray):
        pa_arr = pa_arr.combine_chunks()
    if pa.types.is_string(pa_arr.type):
        pa_arr = pa_arr.cast(pa.large_string())
    if not pa.types.is_large_string(pa_arr.type):  # pragma: no cover - pandas uses (large_)string
        raise TypeError(f"unexpected Arrow type {pa_arr.type}")
    n = len(pa_arr)
    _, offsets, data = pa_arr.buffers()
    off = np.frombuffer(offsets, dtype=np.int64)[pa_arr.offset : pa_arr.offset + n + 1] if offsets is not None else np.zeros(1, np.int64)
    body = np.frombuffer(data, dtype=np.uint8) if data is not None and off.size else np.zeros(0, np.uint8)
    valid = None
    if pa_arr.null_count:
        valid = np.asarray(pa_arr.is_valid().to_numpy(zero_copy_only=False))
    return off, body, valid


def _na_tag(na):
    pd = _pd()
    if na is pd.NA:
        return "NA"
    if isinstance(na, float) and na != na:
        return "nan"
    raise TypeError(f"unexpected na_value {na!r}")


def values_desc(values, where):
    """The description of one column's (or index level's) values: [kind, parts...]."""
    pd = _pd()
    dtype = values.dtype
    if isinstance(dtype, np.dtype):
        if dtype.kind not in _NUMPY_KINDS:
            raise _refuse(where, dtype, "structured and void dtypes have no qwire layout")
        arr = np.asarray(values)
        if dtype.kind in "mM":
            # The raw int64s (a view, referenced by dumps): a q timestamp would shift every value
            # to q's epoch and back, and this record is read only by qwire anyway.
            return ["np_i8", dtype.str, arr.view(np.int64)]
        return ["np", arr]
    if isinstance(dtype, pd.CategoricalDtype):
        codes = np.asarray(values.codes)
        return ["cat", codes, index_desc(dtype.categories, where + " categories"), bool(dtype.ordered)]
    if isinstance(dtype, pd.DatetimeTZDtype):
        return ["dttz", np.asarray(values.asi8), dtype.unit, _tz_desc(dtype.tz, where)]
    if isinstance(dtype, pd.StringDtype):
        na = _na_tag(dtype.na_value)
        if dtype.storage == "pyarrow":
            off, body, valid = _arrow_string_parts(values)
            return ["str_arrow", na, off, body, valid]
        mask = np.asarray(values.isna())
        texts = values.to_numpy(dtype=object, na_value="")
        return ["str_python", dtype.storage, na, texts, mask if mask.any() else None]
    if isinstance(dtype, pd.PeriodDtype):
        return ["period", values.freqstr, np.asarray(values.asi8)]
    if isinstance(dtype, pd.IntervalDtype):
        return ["interval", str(values.closed), index_desc(values.left, where), index_desc(values.right, where),
                np.asarray(values.isna())]
    if type(dtype).__name__ == "ArrowDtype":   # dtype_backend="pyarrow": the Arrow array as it is
        import pyarrow as pa

        from . import _arrow

        return ["arrow", _arrow.encode(pa.chunked_array(values._pa_array if hasattr(values, "_pa_array") else pa.array(values)))]
    name = type(dtype).__name__
    if name in _MASKED_DTYPES:
        data, mask = _masked(values)
        return ["masked", name, data, mask]
    raise _refuse(where, dtype, f"pandas {type(dtype).__name__} has no qwire layout; convert the column first")


# pandas masked dtypes by class name, to the array class and value dtype that rebuild them.
_MASKED_DTYPES = {
    "Int8Dtype": ("IntegerArray", "int8"), "Int16Dtype": ("IntegerArray", "int16"),
    "Int32Dtype": ("IntegerArray", "int32"), "Int64Dtype": ("IntegerArray", "int64"),
    "UInt8Dtype": ("IntegerArray", "uint8"), "UInt16Dtype": ("IntegerArray", "uint16"),
    "UInt32Dtype": ("IntegerArray", "uint32"), "UInt64Dtype": ("IntegerArray", "uint64"),
    "Float32Dtype": ("FloatingArray", "float32"), "Float64Dtype": ("FloatingArray", "float64"),
    "BooleanDtype": ("BooleanArray", "bool"),
}


def _freq(index):
    freq = getattr(index, "freq", None)
    return None if freq is None else freq.freqstr


def index_desc(index, where="index"):
    """An Index (RangeIndex, MultiIndex, DatetimeIndex, ...) as [kind, name(s), parts...]."""
    pd = _pd()
    if isinstance(index, pd.RangeIndex):
        return ["range", index.name, index.start, index.stop, index.step]
    if isinstance(index, pd.MultiIndex):
        levels = [index_desc(level, f"{where} level {i}") for i, level in enumerate(index.levels)]
        codes = [np.asarray(c) for c in index.codes]
        return ["multi", list(index.names), levels, codes]
    freq = _freq(index) if isinstance(index, (pd.DatetimeIndex, pd.TimedeltaIndex)) else None
    return ["index", index.name, values_desc(index.array if not isinstance(index.dtype, np.dtype) else index.to_numpy(), where), freq]


def encode_frame(df):
    columns = df.columns
    data = []
    for i in range(df.shape[1]):
        col = df.iloc[:, i]
        data.append(values_desc(col.array if not isinstance(col.dtype, np.dtype) else col.to_numpy(), _where(columns[i])))
    return {"v": FORMAT, "columns": index_desc(columns, "column labels"), "index": index_desc(df.index),
            "rows": len(df), "data": data, **_attrs_and_flags(df)}


def encode_series(s):
    values = s.array if not isinstance(s.dtype, np.dtype) else s.to_numpy()
    return {"v": FORMAT, "name": s.name, "index": index_desc(s.index), "data": values_desc(values, f"Series {s.name!r:.60}"),
            **_attrs_and_flags(s)}


def _attrs_and_flags(obj):
    """`attrs` (the user's own metadata dict, whose values qwire writes as it writes any value) and
    `flags.allows_duplicate_labels`, only when they differ from pandas' defaults."""
    out = {}
    if obj.attrs:
        out["attrs"] = dict(obj.attrs)
    if not obj.flags.allows_duplicate_labels:
        out["no_duplicates"] = True
    return out


def _set_attrs_and_flags(obj, meta):
    if "attrs" in meta:
        if type(meta["attrs"]) is not dict:
            raise _bad("attrs must be a dictionary")
        obj.attrs = meta["attrs"]
    if "no_duplicates" in meta:
        if meta["no_duplicates"] is not True:
            raise _bad("no_duplicates must be true")
        obj = obj.set_flags(allows_duplicate_labels=False)   # checks the labels are distinct
    return obj


def encode_scalar(obj):
    pd = _pd()
    if obj is pd.NaT:
        return ["NaT"]
    if obj is pd.NA:
        return ["NA"]
    if isinstance(obj, pd.Timestamp):  # asm8: the UTC instant in the Timestamp's own unit
        return ["Timestamp", int(obj.asm8.view(np.int64)), obj.unit, _tz_desc(obj.tzinfo, "pandas.Timestamp")]
    if isinstance(obj, pd.Timedelta):
        return ["Timedelta", int(obj.asm8.view(np.int64)), obj.unit]
    if isinstance(obj, pd.Period):
        return ["Period", int(obj.ordinal), obj.freqstr]
    if isinstance(obj, pd.Interval):
        return ["Interval", obj.left, obj.right, obj.closed]
    return None


# ---- decoding ------------------------------------------------------------------------------------

def _bad(why):
    return DecodeError(f"malformed pandas extension record: {why}")


def _int(v, what):
    if type(v) is not int:
        raise _bad(f"{what} must be a long, not {type(v).__name__}")
    return v


def _str(v, what):
    if type(v) is not str:
        raise _bad(f"{what} must be a symbol, not {type(v).__name__}")
    return v


def _arr(v, what, kinds=None):
    if type(v) is not np.ndarray or v.ndim != 1:
        raise _bad(f"{what} must be a vector, not {type(v).__name__}")
    if kinds is not None and v.dtype.kind not in kinds:
        raise _bad(f"{what} has dtype {v.dtype}")
    return v


def _list(v, what, n=None):
    if type(v) is not list or (n is not None and len(v) != n):
        raise _bad(f"{what} must be a general list{'' if n is None else f' of {n}'}")
    return v


def _writable(arr):
    """The decoded vector itself when NumPy may write it, else a copy (decoded vectors are views
    of the message, read-only, and pandas writes into its columns)."""
    return arr if arr.flags.writeable else arr.copy()


_UNITS = frozenset({"s", "ms", "us", "ns"})
_TEMPORAL_DTYPE = re.compile(r"[<>][mM]8\[(Y|M|W|D|h|m|s|ms|us|ns|ps|fs|as)\]|[<>][mM]8")


def _unit(u):
    if u not in _UNITS:
        raise _bad(f"bad time unit {u!r:.20}")
    return u


def values_from(desc, n=None):
    """The array (NumPy or pandas extension array) a values description describes; n: the length it must have."""
    pd = _pd()
    desc = _list(desc, "a column description")
    if not desc:
        raise _bad("empty column description")
    kind = desc[0]
    if kind == "np" and len(desc) == 2:
        out = _arr(desc[1], "column data")
        if out.dtype.kind not in _NUMPY_KINDS:
            raise _bad(f"column dtype {out.dtype}")
    elif kind == "np_i8" and len(desc) == 3:
        if type(desc[1]) is not str or not _TEMPORAL_DTYPE.fullmatch(desc[1]):
            raise _bad(f"temporal dtype {str(desc[1])[:20]!r}")
        out = _arr(desc[2], "temporal data", "i")
        if out.dtype != np.int64:
            raise _bad("temporal data must be longs")
        out = out.view(np.dtype(desc[1]))
    elif kind == "cat" and len(desc) == 4:
        codes = _arr(desc[1], "categorical codes", "i")
        cats = index_from(desc[2])
        if type(desc[3]) is not bool:
            raise _bad("ordered must be a boolean")
        if codes.size and (codes.min() < -1 or codes.max() >= len(cats)):
            raise _bad("categorical code out of range")
        dtype = pd.CategoricalDtype(cats, ordered=desc[3])
        out = pd.Categorical.from_codes(_writable(codes), dtype=dtype, validate=False)  # range checked above
    elif kind == "dttz" and len(desc) == 4:
        i8 = _arr(desc[1], "timestamps", "i")
        unit = _unit(desc[2])
        tz = _tz_from(_list(desc[3], "timezone"))
        naive = pd.array(_writable(i8.astype(np.int64, copy=False)).view(f"M8[{unit}]"))
        out = naive.tz_localize("UTC").tz_convert(tz)
    elif kind == "str_arrow" and len(desc) == 5:
        out = _arrow_strings(desc, n)
    elif kind == "str_python" and len(desc) == 5:
        texts = _arr(desc[3], "strings", "O")
        na = _na_value(desc[2])
        if desc[1] != "python":
            raise _bad(f"string storage {desc[1]!r:.20}")
        out = pd.array(texts, dtype=_string_dtype("python", na))
        if desc[4] is not None:
            mask = _arr(desc[4], "string mask", "b")
            if mask.shape != texts.shape:
                raise _bad("string mask length")
            out[mask] = na
    elif kind == "period" and len(desc) == 3:
        dtype = pd.PeriodDtype(_str(desc[1], "period frequency"))
        out = pd.arrays.PeriodArray(_writable(_arr(desc[2], "periods", "i").astype(np.int64, copy=False)), dtype=dtype)
    elif kind == "interval" and len(desc) == 5:
        left, right = index_from(desc[2]), index_from(desc[3])
        if len(left) != len(right):
            raise _bad("interval bounds differ in length")
        closed = _str(desc[1], "interval closed")
        if closed not in ("left", "right", "both", "neither"):
            raise _bad(f"interval closed {closed!r:.20}")
        out = pd.arrays.IntervalArray.from_arrays(left, right, closed=closed)
    elif kind == "arrow" and len(desc) == 2:
        import pyarrow as pa

        from . import _arrow

        chunked = _arrow.decode(desc[1])
        if not isinstance(chunked, pa.ChunkedArray):
            raise _bad("an Arrow column must be a chunked array")
        out = pd.arrays.ArrowExtensionArray(chunked)
    elif kind == "masked" and len(desc) == 4:
        spec = _MASKED_DTYPES.get(desc[1]) if type(desc[1]) is str else None
        if spec is None:
            raise _bad(f"unknown masked dtype {desc[1]!r:.40}")
        data = _arr(desc[2], "masked data")
        mask = _arr(desc[3], "mask", "b")
        if data.dtype != np.dtype(spec[1]) or mask.shape != data.shape:
            raise _bad(f"masked {desc[1]} data of dtype {data.dtype}, {mask.size} mask items for {data.size}")
        out = getattr(pd.arrays, spec[0])(_writable(data), _writable(mask))
    else:
        raise _bad(f"unknown column description {str(kind)[:40]!r} of {len(desc)} parts")
    if n is not None and len(out) != n:
        raise _bad(f"a column of {len(out)} rows in a frame of {n}")
    return out


def _na_value(tag):
    pd = _pd()
    if tag == "NA":
        return pd.NA
    if tag == "nan":
        return np.nan
    raise _bad(f"bad missing-value tag {tag!r:.20}")


def _arrow_strings(desc, n):
    pd = _pd()
    na = _na_value(desc[1])
    off = _arr(desc[2], "string offsets", "i")
    body = _arr(desc[3], "string data", "u")
    valid = None if desc[4] is None else _arr(desc[4], "string validity", "b")
    if off.dtype != np.int64 or body.dtype != np.uint8 or off.size < 1:
        raise _bad("string offsets must be longs, data bytes")
    count = off.size - 1
    if valid is not None and valid.size != count:
        raise _bad("string validity length")
    if count and (off[0] < 0 or off[-1] > body.size):
        raise _bad("string offsets past the data")
    try:
        import pyarrow as pa
    except ImportError:
        # No pyarrow here: the same strings in pandas' Python storage.
        texts = np.empty(count, dtype=object)
        raw = body.tobytes()
        texts[:] = [raw[a:b].decode("utf-8", "surrogateescape") for a, b in zip(off[:-1].tolist(), off[1:].tolist())]
        out = pd.array(texts, dtype=_string_dtype("python", na))
        if valid is not None:
            out[~valid] = na
        return out
    validity = None if valid is None else pa.py_buffer(np.packbits(valid, bitorder="little"))
    null_count = 0 if valid is None else int(count - np.count_nonzero(valid))
    arr = pa.Array.from_buffers(pa.large_string(), count, [validity, pa.py_buffer(off), pa.py_buffer(body)],
                                null_count=null_count)
    from ._arrow import check_strings

    check_strings(arr)  # offsets in order and in bounds, UTF-8: nothing reads outside the data
    # Over the message's bytes, without a copy: Arrow arrays are immutable, pandas copies on write.
    dtype, chunked = _string_dtype("pyarrow", na), pa.chunked_array([arr])
    try:
        return pd.arrays.ArrowStringArray(chunked, dtype=dtype)
    except TypeError:  # pandas < 3: no dtype argument; the dtype's own array type carries its NA
        return dtype.construct_array_type()(chunked)


def _string_dtype(storage, na):
    pd = _pd()
    if na is pd.NA:
        return pd.StringDtype(storage)   # also pandas < 2.3, which has no na_value parameter
    return pd.StringDtype(storage, na_value=na)


def index_from(desc):
    pd = _pd()
    desc = _list(desc, "an index description")
    kind = desc[0] if desc else None
    if kind == "range" and len(desc) == 5:
        start, stop, step = (_int(v, "range bound") for v in desc[2:])
        if step == 0:
            raise _bad("range step 0")
        return pd.RangeIndex(start, stop, step, name=_label(desc[1]))
    if kind == "multi" and len(desc) == 4:
        names = _list(desc[1], "level names")
        levels = [index_from(d) for d in _list(desc[2], "levels", len(names))]
        codes = [_writable(_arr(c, "level codes", "i")) for c in _list(desc[3], "level codes", len(names))]
        if len({c.size for c in codes}) > 1:
            raise _bad("level codes differ in length")
        for c, level in zip(codes, levels):
            if c.size and (c.min() < -1 or c.max() >= len(level)):
                raise _bad("level code out of range")
        return pd.MultiIndex(levels=levels, codes=codes, names=names, verify_integrity=False)
    if kind == "index" and len(desc) == 4:
        values = values_from(desc[2])
        if isinstance(values, np.ndarray):
            values = _writable(values)
        index = pd.Index(values, name=_label(desc[1]), dtype=values.dtype, copy=False)
        if desc[3] is not None:
            freq = _str(desc[3], "frequency")
            if not isinstance(index, (pd.DatetimeIndex, pd.TimedeltaIndex)):
                raise _bad("a frequency for an index that has none")
            index = type(index)(index, freq=freq)   # checked against the values by pandas
        return index
    raise _bad(f"unknown index description {str(kind)[:40]!r}")


def _label(v):
    try:
        hash(v)
    except TypeError:
        raise _bad(f"an index name must be hashable, not {type(v).__name__}") from None
    return v


def _check_v(meta, keys):
    if type(meta) is not dict or meta.get("v") != FORMAT or not keys <= set(meta) <= keys | {"attrs", "no_duplicates"}:
        raise _bad("unknown layout (version or fields)")


def _from_blocks(blocks, index, columns):
    try:
        from pandas.api.internals import create_dataframe_from_blocks
    except ImportError:  # pandas < 3: the columns one by one (pandas consolidates them)
        pd = _pd()
        arrays = {}
        for values, where in blocks:
            for j, i in enumerate(where.tolist()):
                arrays[i] = values[j] if isinstance(values, np.ndarray) else values
        df = pd.DataFrame({i: arrays[i] for i in range(len(columns))}, index=index, copy=False)
        df.columns = columns
        return df
    return create_dataframe_from_blocks(blocks, index=index, columns=columns)


def decode_frame(meta):
    _check_v(meta, {"v", "columns", "index", "rows", "data"})
    n = _int(meta["rows"], "rows")
    index = index_from(meta["index"])
    columns = index_from(meta["columns"])
    data = _list(meta["data"], "columns", len(columns))
    if len(index) != n:
        raise _bad(f"an index of {len(index)} for {n} rows")
    groups: dict[Any, list] = {}
    blocks = []
    for i, desc in enumerate(data):
        values = values_from(desc, n)
        if isinstance(values, np.ndarray) and not values.flags.writeable:
            groups.setdefault(values.dtype, []).append((i, values))
        elif isinstance(values, np.ndarray):
            # Writable already (made while decoding, or a view of a writable out-of-band buffer, as
            # pickle's buffers= gives): a block of its own, without a copy.
            blocks.append((values.reshape(1, n), np.array([i], dtype=np.intp)))
        else:
            blocks.append((values, np.array([i], dtype=np.intp)))
    for dtype, cols in groups.items():
        # Read-only views of the message: one 2-D block per dtype, as pandas consolidates, in one
        # copy, which also makes them writable (pandas writes into its blocks).
        block = np.empty((len(cols), n), dtype=dtype)
        for j, (_, values) in enumerate(cols):
            block[j] = values
        blocks.append((block, np.array([i for i, _ in cols], dtype=np.intp)))
    return _set_attrs_and_flags(_from_blocks(blocks, index, columns), meta)


def decode_series(meta):
    pd = _pd()
    _check_v(meta, {"v", "name", "index", "data"})
    index = index_from(meta["index"])
    values = values_from(meta["data"], len(index))
    if isinstance(values, np.ndarray):
        values = _writable(values)
    return _set_attrs_and_flags(pd.Series(values, index=index, name=_label(meta["name"]), dtype=values.dtype, copy=False), meta)


def decode_scalar(desc):
    pd = _pd()
    desc = _list(desc, "a pandas scalar")
    kind = desc[0] if desc else None
    if kind == "NaT" and len(desc) == 1:
        return pd.NaT
    if kind == "NA" and len(desc) == 1:
        return pd.NA
    if kind == "Timestamp" and len(desc) == 4:
        ts = pd.Timestamp(np.datetime64(_int(desc[1], "timestamp"), _unit(desc[2])))
        tz = _tz_from(desc[3])
        return ts if tz is None else ts.tz_localize("UTC").tz_convert(tz)
    if kind == "Timedelta" and len(desc) == 3:
        return pd.Timedelta(np.timedelta64(_int(desc[1], "timedelta"), _unit(desc[2])))
    if kind == "Period" and len(desc) == 3:
        return pd.Period(ordinal=_int(desc[1], "period ordinal"), freq=_str(desc[2], "frequency"))
    if kind == "Interval" and len(desc) == 4:
        closed = _str(desc[3], "interval closed")
        if closed not in ("left", "right", "both", "neither"):
            raise _bad(f"interval closed {closed!r:.20}")
        return pd.Interval(desc[1], desc[2], closed=closed)
    raise _bad(f"unknown pandas scalar {str(kind)[:40]!r}")
