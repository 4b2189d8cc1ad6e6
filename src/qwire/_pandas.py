"""Optional pandas integration: DataFrame <-> qwire.Table. Imported only when pandas objects
are seen or a conversion is asked for; pandas is never a requirement."""
from __future__ import annotations

import numpy as np

from .values import KeyedTable, Table, Vector

__all__ = ["convert_pandas", "table_from_pandas", "table_to_pandas", "keyed_table_to_pandas"]

_Q_NUMERIC = {"b", "u", "i", "f"}


def _pd():
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - exercised only without pandas
        raise ImportError("pandas is not installed: pip install pandas (or qwire[pandas])") from None
    return pd


def convert_pandas(obj):
    pd = _pd()
    if isinstance(obj, pd.DataFrame):
        return table_from_pandas(obj)
    if obj is pd.NaT:
        return np.datetime64("NaT", "ns")
    if isinstance(obj, pd.Timestamp):
        if obj.tzinfo is not None:
            return obj  # refused by the encoder with its timezone message
        return np.datetime64(obj.as_unit("ns").value, "ns")
    if isinstance(obj, pd.Timedelta):
        return np.timedelta64(obj.as_unit("ns").value, "ns")
    return None


def _column(series):
    pd = _pd()
    dtype = series.dtype
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


def table_from_pandas(df):
    """The qwire.Table (or KeyedTable, when the index is named) for a DataFrame."""
    pd = _pd()
    names = [str(c) for c in df.columns]
    if len(set(names)) != len(names):
        raise ValueError("a q table needs distinct column names")
    table = Table({name: _column(df[col]) for name, col in zip(names, df.columns)})
    index_names = [n for n in df.index.names if n is not None]
    if index_names:
        keys = df.index.to_frame(index=False)
        return KeyedTable(Table({str(c): _column(keys[c]) for c in keys.columns}), table)
    if not isinstance(df.index, pd.RangeIndex):
        pass  # an unnamed index carries no q meaning; it is dropped, as documented
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


def table_to_pandas(table):
    pd = _pd()
    return pd.DataFrame({name: _to_series_values(col) for name, col in table.items()})


def keyed_table_to_pandas(kt):
    keys = table_to_pandas(kt.keys)
    values = table_to_pandas(kt.values)
    values.index = pd_index(keys)
    return values


def pd_index(keys):
    pd = _pd()
    if keys.shape[1] == 1:
        return pd.Index(keys.iloc[:, 0], name=keys.columns[0])
    return pd.MultiIndex.from_frame(keys)
