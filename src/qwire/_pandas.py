"""pandas as q sees it: DataFrame <-> qwire.Table, the mapping `dumps(df, q_compatible=True)` and
`Table.from_pandas` write (docs/TABLES.md). The default profile sends pandas objects exactly
instead (qwire/_frames.py). Imported only when pandas objects are seen or a conversion is asked
for; pandas is never a requirement.

Every column is converted with NumPy operations over the whole column; the only per-cell work is
the core's own C loop writing symbols.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .errors import EncodeError
from .values import Dict, KeyedTable, Table, UnaryPrimitive, Vector, _SymbolSource

_GENERIC_NULL = UnaryPrimitive(0)

__all__ = ["q_value", "table_from_pandas", "table_to_pandas", "keyed_table_to_pandas", "q_column"]

# NumPy dtypes q has no vector type for -> the q-typed dtype that holds every value (as PyKX converts).
_WIDEN = {"i1": np.int16, "u2": np.int32, "u4": np.int64, "f2": np.float32}

# Masked (nullable) pandas dtypes -> (NumPy dtype of the q vector, q's null of that type).
_Q_NULLS = {
    "Int8": (np.int16, np.iinfo(np.int16).min), "Int16": (np.int16, np.iinfo(np.int16).min),
    "Int32": (np.int32, np.iinfo(np.int32).min), "Int64": (np.int64, np.iinfo(np.int64).min),
    "UInt8": (np.int16, np.iinfo(np.int16).min), "UInt16": (np.int32, np.iinfo(np.int32).min),
    "UInt32": (np.int64, np.iinfo(np.int64).min), "UInt64": (np.int64, np.iinfo(np.int64).min),
    "Float32": (np.float32, np.nan), "Float64": (np.float64, np.nan),
}


def _pd() -> Any:
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - exercised only without pandas
        raise ImportError("pandas is not installed: pip install pandas (or qwire[pandas])") from None
    return pd


def _refuse(where: str, dtype: Any, why: str) -> EncodeError:
    return EncodeError(f"{where} (dtype {dtype}) has no q type: {why}", type(dtype))


def _where(label: Any) -> str:
    text = repr(label)
    return f"column {text if len(text) <= 60 else text[:57] + '...'}"


def _infer(values: np.ndarray) -> str:
    from pandas.api.types import infer_dtype

    return infer_dtype(values, skipna=True)


def _object_column(values: np.ndarray) -> Any:
    """An object column: str (None/NaN as the null symbol) -> symbols; anything else (bytes as
    char vectors among them) a general list of the cells."""
    if _infer(values) in ("string", "empty"):
        missing = _pd().isna(values)
        if missing.any():
            values = values.copy()
            values[missing] = ""
        return values
    return values.tolist()


def _symbols_from_categorical(values: Any, where: str, direct: bool) -> Any:
    pd = _pd()
    cats = values.categories
    if _infer(np.asarray(cats, dtype=object)) != "string":
        raise _refuse(where, values.dtype, "q symbols need str categories")
    if direct:
        codes = np.ascontiguousarray(values.codes, dtype=np.int64)
        texts = [c.encode("utf-8", "surrogateescape") for c in cats]
        return _SymbolSource("categorical", (codes, texts), len(values))
    out = np.asarray(cats, dtype=object).take(np.asarray(values.codes), mode="clip")
    out[np.asarray(values.codes) < 0] = ""
    return out if len(out) else np.empty(0, dtype=object)


def _arrow_symbols(values: Any) -> Any:
    import pyarrow as pa

    arr = pa.array(values)
    chunks = arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]
    parts = []
    for chunk in chunks:
        if pa.types.is_string(chunk.type):
            chunk = chunk.cast(pa.large_string())
        _, offsets, data = chunk.buffers()
        n = len(chunk)
        off = np.frombuffer(offsets, dtype=np.int64)[chunk.offset : chunk.offset + n + 1] if offsets is not None else np.zeros(1, np.int64)
        valid = None
        if chunk.null_count:
            valid = np.asarray(chunk.is_valid().to_numpy(zero_copy_only=False), dtype=np.uint8)
        body = np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)
        parts.append((np.ascontiguousarray(off), body, valid))
    return _SymbolSource("arrow", parts, len(values))


def q_column(values: Any, where: str, direct: bool = False) -> Any:
    """One column (a NumPy array or pandas extension array) as the q vector kdb+ reads naturally.
    direct: a symbol column may be a _SymbolSource (for dumps only; never returned to users)."""
    pd = _pd()
    dtype = values.dtype
    if isinstance(dtype, np.dtype):
        arr = np.asarray(values)
        if dtype.kind == "O":
            return _object_column(arr)
        widen = _WIDEN.get(dtype.str[1:])
        if widen is not None:
            return arr.astype(widen)
        if dtype.kind == "u" and dtype.itemsize == 8:
            if arr.size and arr.max() > np.iinfo(np.int64).max:
                raise _refuse(where, dtype, "a value above q's long range")
            return arr.astype(np.int64)
        if dtype.kind == "c":
            raise _refuse(where, dtype, "q has no complex numbers")
        return arr
    if isinstance(dtype, pd.CategoricalDtype):
        return _symbols_from_categorical(values, where, direct)
    if isinstance(dtype, pd.DatetimeTZDtype):  # the UTC instants, as q's (naive) timestamps
        return np.asarray(values.tz_convert("UTC").tz_localize(None))
    if isinstance(dtype, pd.StringDtype):
        if direct and dtype.storage == "pyarrow":
            return _arrow_symbols(values)
        return values.to_numpy(dtype=object, na_value="")
    if type(dtype).__name__ == "ArrowDtype":   # dtype_backend="pyarrow": Arrow's own q mapping
        from ._arrow import q_vector

        return q_vector(values._pa_array, where, direct)
    name = getattr(dtype, "name", "")
    if name in _Q_NULLS:
        target, null = _Q_NULLS[name]
        if name == "UInt64":
            data = values.to_numpy(dtype=np.uint64, na_value=0)
            if data.size and data.max() > np.iinfo(np.int64).max:
                raise _refuse(where, dtype, "a value above q's long range")
        return values.to_numpy(dtype=target, na_value=null)
    if name == "boolean":
        if values.isna().any():
            raise _refuse(where, dtype, "q booleans have no null; fill the missing values first")
        return values.to_numpy(dtype=np.bool_)
    raise _refuse(where, dtype, "convert the column to a NumPy or q-mappable dtype first")


def _values(series: Any) -> Any:
    """A Series' or Index's values: the NumPy array (no copy) or the pandas extension array."""
    return series.to_numpy() if isinstance(series.dtype, np.dtype) else series.array


def _names(labels: Any, what: str) -> list[str]:
    pd = _pd()
    if isinstance(labels, pd.MultiIndex):
        raise EncodeError(f"{what}: a q table's column names are symbols; MultiIndex labels have no q form "
                          "(flatten them first)", type(labels))
    names = [label if isinstance(label, str) else str(label) for label in labels]
    if len(set(names)) != len(names):
        raise EncodeError(f"{what}: a q table needs distinct column names, got {names[:10]!r}", type(labels))
    return names


def _is_default_index(index: Any) -> bool:
    pd = _pd()
    return (isinstance(index, pd.RangeIndex) and index.name is None and index.start == 0 and index.step == 1)


def table_from_pandas(df: Any, _direct: bool = False) -> Table | KeyedTable:
    """The q table for a DataFrame (docs/TABLES.md): a keyed table when the index is anything but
    the default unnamed RangeIndex (its levels are the keys, an unnamed one called `index`)."""
    names = _names(df.columns, "DataFrame columns")
    if not names and len(df):
        raise EncodeError(f"a DataFrame of {len(df)} rows and no columns has no q table form (a q table's rows "
                          "are its columns')", type(df))
    table = Table({name: q_column(_values(df.iloc[:, i]), _where(df.columns[i]), _direct)
                   for i, name in enumerate(names)})
    if _is_default_index(df.index):
        return table
    key_names = ["index" if n is None and df.index.nlevels == 1 else (f"level_{i}" if n is None else n)
                 for i, n in enumerate(df.index.names)]
    key_names = _names(key_names, "DataFrame index names")
    clash = set(key_names) & set(names)
    if clash:
        raise EncodeError(f"a keyed table's key and value columns must differ in name: {sorted(clash)!r}")
    return KeyedTable(Table({name: q_column(_values(df.index.get_level_values(i)), f"index level {name!r}", _direct)
                             for i, name in enumerate(key_names)}), table)


def q_value(obj: Any) -> Any:
    """What `dumps(obj, q_compatible=True)` writes for a pandas object (never a pandas object)."""
    pd = _pd()
    if isinstance(obj, pd.DataFrame):
        return table_from_pandas(obj, _direct=True)
    if isinstance(obj, pd.Series):
        values = q_column(_values(obj), f"Series {obj.name!r:.60}", False)
        if _is_default_index(obj.index):
            return values
        if obj.index.nlevels != 1:
            raise EncodeError("a Series with a MultiIndex has no q form", type(obj))
        return Dict(q_column(_values(obj.index), "Series index", False), values)
    if isinstance(obj, pd.Index):
        if obj.nlevels != 1:
            raise EncodeError("a MultiIndex has no q vector form", type(obj))
        return q_column(_values(obj), "Index", False)
    if obj is pd.NaT:
        return np.datetime64("NaT", "ns")
    if obj is pd.NA:
        return _GENERIC_NULL  # q's (::), what None is written as (None here would mean "refused")
    if isinstance(obj, pd.Timestamp):
        if obj.tzinfo is not None:
            obj = obj.tz_convert("UTC").tz_localize(None)
        return np.datetime64(obj.as_unit("ns").value, "ns")
    if isinstance(obj, pd.Timedelta):
        return np.timedelta64(obj.as_unit("ns").value, "ns")
    return None


# ---- q tables -> pandas ---------------------------------------------------------------------------

def _to_series_values(col: Any) -> Any:
    if isinstance(col, Vector):
        col = col.values
    if isinstance(col, bytes):
        return np.frombuffer(col, dtype="S1")
    if isinstance(col, list):
        out = np.empty(len(col), dtype=object)
        out[:] = col
        return out
    return col


def table_to_pandas(table: Table) -> Any:
    pd = _pd()
    return pd.DataFrame({name: _to_series_values(col) for name, col in table.items()})


def keyed_table_to_pandas(kt: KeyedTable) -> Any:
    keys = table_to_pandas(kt.keys)
    values = table_to_pandas(kt.values)
    values.index = pd_index(keys)
    return values


def pd_index(keys: Any) -> Any:
    pd = _pd()
    if keys.shape[1] == 1:
        return pd.Index(keys.iloc[:, 0], name=keys.columns[0])
    return pd.MultiIndex.from_frame(keys)
