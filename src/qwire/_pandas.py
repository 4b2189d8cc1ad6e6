"""Optional pandas integration: DataFrame <-> qwire.Table. Imported only when pandas objects
are seen or a conversion is asked for; pandas is never a requirement."""
from __future__ import annotations

from typing import Any

import numpy as np

from .values import KeyedTable, Table, Vector, _SymbolSource

__all__ = ["convert_pandas", "table_from_pandas", "table_to_pandas", "keyed_table_to_pandas"]

_Q_NUMERIC = {"b", "u", "i", "f"}


def _pd() -> Any:
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - exercised only without pandas
        raise ImportError("pandas is not installed: pip install pandas (or qwire[pandas])") from None
    return pd


def convert_pandas(obj: Any) -> Any:
    pd = _pd()
    if isinstance(obj, pd.DataFrame):
        return table_from_pandas(obj, _direct=True)
    if obj is pd.NaT:
        return np.datetime64("NaT", "ns")
    if isinstance(obj, pd.Timestamp):
        if obj.tzinfo is not None:
            return obj  # refused by the encoder with its timezone message
        return np.datetime64(obj.as_unit("ns").value, "ns")
    if isinstance(obj, pd.Timedelta):
        return np.timedelta64(obj.as_unit("ns").value, "ns")
    return None


def _direct_symbols(series):
    """A symbol column the encoder writes from the column's own buffers, or None."""
    pd = _pd()
    dtype = series.dtype
    n = len(series)
    if isinstance(dtype, pd.CategoricalDtype):
        cats = dtype.categories
        if all(type(c) is str for c in cats):
            codes = np.ascontiguousarray(series.cat.codes.to_numpy(), dtype=np.int64)
            return _SymbolSource("categorical", (codes, [c.encode("utf-8", "surrogateescape") for c in cats]), n)
        return None
    if isinstance(dtype, pd.StringDtype) and getattr(dtype, "storage", None) == "pyarrow":
        import pyarrow as pa

        arr = pa.chunked_array(series.array._pa_array) if hasattr(series.array, "_pa_array") else None
        if arr is None or not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
            return None
        chunks = []
        for chunk in arr.chunks:
            validity, offsets, data = chunk.buffers()
            wide = pa.types.is_large_string(chunk.type)
            off = np.frombuffer(offsets, dtype=np.int64 if wide else np.int32)[chunk.offset : chunk.offset + len(chunk) + 1]
            valid = None
            if chunk.null_count:
                valid = np.unpackbits(np.frombuffer(validity, np.uint8), bitorder="little")[chunk.offset : chunk.offset + len(chunk)]
            body = np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)
            chunks.append((np.ascontiguousarray(off, dtype=np.int64), body, valid))
        return _SymbolSource("arrow", chunks, n)
    return None


def _column(series, direct=False):
    pd = _pd()
    dtype = series.dtype
    if direct:
        fast = _direct_symbols(series)
        if fast is not None:
            return fast
    if isinstance(dtype, pd.CategoricalDtype):
        values = series.astype(object).where(series.notna(), "")
        return np.asarray(values.to_numpy(dtype=object))
    if isinstance(dtype, pd.DatetimeTZDtype):
        raise TypeError(f"column {series.name!r} is timezone-aware; convert it to UTC and drop the timezone first")
    if dtype.kind in _Q_NUMERIC and isinstance(dtype, np.dtype):
        return series.to_numpy()
    if dtype.kind in "mM" and isinstance(dtype, np.dtype):
        return series.to_numpy()
    values = series.to_numpy(dtype=object, na_value=None)
    if all(type(v) is str or v is None for v in values):
        out = np.empty(len(values), dtype=object)
        out[:] = ["" if v is None else v for v in values]
        return out
    if all(type(v) is bytes for v in values):
        return list(values)
    if pd.api.types.is_extension_array_dtype(dtype) and dtype.kind in _Q_NUMERIC:
        raise TypeError(f"column {series.name!r} has nullable dtype {dtype}; fill or cast it to a NumPy dtype first")
    return list(values)


def table_from_pandas(df: Any, _direct: bool = False) -> Table | KeyedTable:
    """The qwire.Table (or KeyedTable, when the index is named) for a DataFrame. An unnamed index
    carries no q meaning and is dropped."""
    names = [str(c) for c in df.columns]
    if len(set(names)) != len(names):
        raise ValueError("a q table needs distinct column names")
    table = Table({name: _column(df.iloc[:, i], _direct) for i, name in enumerate(names)})
    if any(n is not None for n in df.index.names):
        keys = df.index.to_frame(index=False)
        return KeyedTable(Table({str(c): _column(keys[c], _direct) for c in keys.columns}), table)
    return table


def _to_series_values(col):
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
