"""The exact layout of pandas objects (and NumPy arrays and scalars) as qwire values, shared by
qwire.dask, qwire.ray, qwire.pipe and qwire.pool.

qwire's own mapping writes a DataFrame as a q table (docs/TYPES.md) and reads it back as a
`qwire.Table`; this layout instead keeps what a pandas user expects back: dtypes, the index, missing
strings, categoricals. `prepare(x)` gives (kind, payload), a plain qwire value whose large parts are
NumPy arrays (out of band wherever the caller uses a buffer_callback); `restore(kind, value)`
rebuilds x. What the layout cannot carry exactly raises TypeError.

Columns: NumPy dtypes (native byte order) as arrays, datetime64/timedelta64 as their int64 storage;
categoricals as codes and categories; object columns of `str`; pandas' Arrow-backed strings as
their Arrow buffers (validated in full on arrival); other string storage as values and a missing-
value mask. Refused: MultiIndex, timezones, frequencies, duplicate column names, other extension
dtypes, object columns holding anything but str.
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["prepare", "restore", "KINDS"]

KINDS = ("value", "ndarray", "numpy-scalar", "DataFrame", "Series", "Index")


def _pd() -> Any:
    import pandas as pd

    return pd


# --- pandas: an explicit layout, so that dtypes and indexes come back exactly ----------------

def _column(values: Any) -> dict[str, Any]:
    pd = _pd()
    dtype = values.dtype
    if isinstance(dtype, np.dtype):
        if dtype.hasobject:
            arr = np.asarray(values, dtype=object)
            if not all(type(v) is str for v in arr):
                raise TypeError("qwire's Dask family carries object columns only when every item is a str")
            return {"kind": "object-str", "values": arr}
        if not dtype.isnative:
            raise TypeError(f"qwire's Dask family keeps byte order: {dtype} is not native")
        if dtype.kind in "Mm":  # as their int64 storage: no epoch shift, no copy, the unit kept
            return {"kind": "temporal", "dtype": dtype.str, "values": np.ascontiguousarray(values).view(np.int64)}
        return {"kind": "numpy", "values": np.ascontiguousarray(values)}
    if isinstance(dtype, pd.CategoricalDtype):
        cat = pd.Categorical(values)
        return {"kind": "category", "codes": np.ascontiguousarray(cat.codes), "ordered": bool(dtype.ordered),
                "categories": _index(pd.Index(cat.categories))}
    if isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow" and hasattr(values, "_pa_array"):
        # Arrow's own buffers (validity bits, offsets, UTF-8 data) travel out of band as they are
        chunked = values._pa_array
        arr = chunked.chunk(0) if chunked.num_chunks == 1 else chunked.combine_chunks()
        validity, offsets, data = arr.buffers()
        raw = [None if b is None else np.frombuffer(b, dtype=np.uint8) for b in (validity, offsets, data)]
        return {"kind": "arrow-string", "na": "nan" if dtype.na_value is not pd.NA else "NA",
                "type": str(arr.type), "length": len(arr), "nulls": arr.null_count, "offset": arr.offset,
                "buffers": [np.zeros(0, np.uint8) if b is None else b for b in raw], "present": [b is not None for b in raw]}
    if isinstance(dtype, pd.StringDtype):
        missing = np.asarray(pd.isna(values), dtype=bool)
        filled = np.asarray(pd.Series(values).where(~missing, "").to_numpy(dtype=object))
        return {"kind": "string", "dtype": str(dtype), "storage": dtype.storage,
                "na": "nan" if dtype.na_value is not pd.NA else "NA", "values": filled, "missing": missing}
    raise TypeError(f"qwire's Dask family does not carry pandas columns of dtype {dtype}")


def _restore_column(c: dict[str, Any]) -> Any:
    pd = _pd()
    kind = c["kind"]
    if kind == "numpy":
        return c["values"]
    if kind == "temporal":
        dtype = np.dtype(c["dtype"])
        if dtype.kind not in "Mm" or dtype.itemsize != 8:
            raise ValueError(f"not a datetime64/timedelta64 dtype: {c['dtype']!r}")
        return np.asarray(c["values"], dtype=np.int64).view(dtype)
    if kind == "object-str":
        return np.asarray(c["values"], dtype=object)
    if kind == "category":
        return pd.Categorical.from_codes(c["codes"], categories=_restore_index(c["categories"]), ordered=c["ordered"])
    if kind == "arrow-string":
        import pyarrow as pa
        from pandas.arrays import ArrowStringArray

        types = {"string": pa.string(), "large_string": pa.large_string()}
        if c["type"] not in types:
            raise ValueError(f"unknown Arrow string type {c['type']!r}")
        buffers = [pa.py_buffer(b) if present else None for b, present in zip(c["buffers"], c["present"])]
        arr = pa.Array.from_buffers(types[c["type"]], c["length"], buffers, c["nulls"], c["offset"])
        arr.validate(full=True)  # offsets in range and valid UTF-8: a hostile frame cannot mislead Arrow
        dtype = pd.StringDtype(storage="pyarrow", na_value=np.nan if c["na"] == "nan" else pd.NA)
        return ArrowStringArray(pa.chunked_array([arr]), dtype=dtype)
    if kind == "string":
        dtype = pd.StringDtype(storage=c["storage"], na_value=np.nan if c["na"] == "nan" else pd.NA)
        values = np.array(c["values"], dtype=object)
        values[np.asarray(c["missing"], dtype=bool)] = dtype.na_value
        return pd.array(values, dtype=dtype)
    raise ValueError(f"unknown column kind {kind!r}")


def _index(index: Any) -> dict[str, Any]:
    pd = _pd()
    if isinstance(index, pd.MultiIndex):
        raise TypeError("qwire's Dask family does not carry a MultiIndex")
    if isinstance(index, pd.RangeIndex):
        return {"range": [index.start, index.stop, index.step], "name": index.name}
    if type(index) is not pd.Index and not isinstance(index, (pd.DatetimeIndex, pd.TimedeltaIndex, pd.CategoricalIndex)):
        raise TypeError(f"qwire's Dask family does not carry {type(index).__name__}")
    if getattr(index, "tz", None) is not None or getattr(index, "freq", None) is not None:
        raise TypeError("qwire's Dask family does not carry an index with a timezone or frequency")
    return {"column": _column(_values(index)), "name": index.name}


def _values(obj: Any) -> Any:
    """A Series' or Index's data: the NumPy array for NumPy dtypes, else pandas' extension array."""
    return obj.to_numpy() if isinstance(obj.dtype, np.dtype) else obj.array


def _restore_index(d: dict[str, Any]) -> Any:
    pd = _pd()
    if "range" in d:
        start, stop, step = d["range"]
        return pd.RangeIndex(start, stop, step, name=d["name"])
    return pd.Index(_restore_column(d["column"]), name=d["name"], copy=False)


def _frame(df: Any) -> dict[str, Any]:
    names = list(df.columns)
    if len(set(map(repr, names))) != len(names):
        raise TypeError("qwire's Dask family does not carry duplicate column names")
    return {"names": names, "columns": [_column(_values(df.iloc[:, i])) for i in range(len(names))],
            "index": _index(df.index), "columns_index": _index(df.columns)}


def _restore_frame(d: dict[str, Any]) -> Any:
    pd = _pd()
    data = {i: _restore_column(c) for i, c in enumerate(d["columns"])}
    df = pd.DataFrame(data, index=_restore_index(d["index"]), copy=False)
    df.columns = _restore_index(d["columns_index"])
    return df


# --- the family ----------------------------------------------------------------------------------

def prepare(x: Any) -> tuple[str, Any]:
    """(kind, payload): payload is what to encode with qwire; kind says how to rebuild."""
    if type(x) is np.ndarray:
        if x.dtype.hasobject or not x.dtype.isnative:
            raise TypeError("qwire's Dask family carries NumPy arrays of native-order, non-object dtypes")
        return "ndarray", x
    if isinstance(x, np.generic):
        return "numpy-scalar", np.asarray(x).reshape(1)
    module = type(x).__module__
    if module.startswith("pandas"):
        pd = _pd()
        if type(x) is pd.DataFrame:
            return "DataFrame", _frame(x)
        if type(x) is pd.Series:
            return "Series", {"values": _column(_values(x)),
                              "index": _index(x.index), "name": x.name}
        if isinstance(x, pd.Index):
            return "Index", _index(x)
        raise TypeError(f"qwire's Dask family does not carry {type(x).__name__}")
    return "value", x


def restore(kind: str, value: Any) -> Any:
    """The object `prepare` was given, from its kind and the decoded payload."""
    if kind in ("value", "ndarray"):
        return value
    if kind == "numpy-scalar":
        return value[0]
    if kind == "DataFrame":
        return _restore_frame(value)
    if kind == "Series":
        pd = _pd()
        return pd.Series(_restore_column(value["values"]), index=_restore_index(value["index"]), name=value["name"], copy=False)
    if kind == "Index":
        return _restore_index(value)
    raise ValueError(f"unknown layout kind {kind!r}")
