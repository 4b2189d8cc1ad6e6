"""Table workloads: one per column kind, and a 10-column table of every kind at 100k and 1M rows,
as a pandas DataFrame, a pyarrow.Table and a polars.DataFrame (issue 15's targets; benchmarks/
test_bench_tables.py and benchmarks/README.md).

Every column is built from a fixed seed with NumPy, so two runs measure the same values.
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["COLUMN_KINDS", "mixed_frame", "kind_frame", "table_workloads"]

SEED = 20240115
SYMBOLS = np.array([f"S{i:03d}" for i in range(100)], dtype=object)


def _rng(offset: int) -> np.random.Generator:
    return np.random.default_rng(SEED + offset)


def _high_cardinality(n: int, rng: np.random.Generator) -> np.ndarray:
    """n distinct 12-character ids, shuffled."""
    ids = np.char.add("id", np.char.zfill(rng.permutation(n).astype("U10"), 10))
    return ids.astype(object)


def _column(kind: str, n: int, i: int) -> Any:
    import pandas as pd

    rng = _rng(i)
    if kind == "int64":
        return rng.integers(-(10**9), 10**9, n)
    if kind == "float64":
        return rng.standard_normal(n)
    if kind == "int32":
        return rng.integers(0, 10**6, n).astype(np.int32)
    if kind == "bool":
        return rng.integers(0, 2, n).astype(bool)
    if kind == "object-str":
        return pd.Series(SYMBOLS[rng.integers(0, len(SYMBOLS), n)], dtype=object)
    if kind == "str":
        return pd.array(SYMBOLS[rng.integers(0, len(SYMBOLS), n)], dtype="str")
    if kind == "categorical":
        return pd.Categorical.from_codes(rng.integers(0, len(SYMBOLS), n).astype(np.int8), categories=SYMBOLS.tolist())
    if kind == "high-card-str":
        return pd.Series(_high_cardinality(n, rng), dtype=object)
    if kind == "datetime":
        start = np.datetime64("2024-01-02T09:30:00", "ns")
        return start + np.sort(rng.integers(0, 6 * 3600 * 10**9, n)).astype("timedelta64[ns]")
    raise KeyError(kind)


# The 10 columns of the mixed table, in order.
MIXED = ["int64", "float64", "int32", "bool", "object-str", "str", "categorical", "high-card-str", "datetime", "float64"]
COLUMN_KINDS = {
    "numeric": ["int64", "float64"],
    "object-str": ["object-str"],
    "str": ["str"],
    "categorical": ["categorical"],
    "high-card-str": ["high-card-str"],
    "datetime": ["datetime"],
}


def _frame(kinds: list[str], n: int):
    import pandas as pd

    return pd.DataFrame({f"{kind}_{i}": _column(kind, n, i) for i, kind in enumerate(kinds)})


def mixed_frame(n: int):
    return _frame(MIXED, n)


def kind_frame(kind: str, n: int):
    return _frame(COLUMN_KINDS[kind], n)


def _arrow(df):
    import pyarrow as pa

    return pa.Table.from_pandas(df, preserve_index=False)


def _polars(df):
    import polars as pl

    return pl.from_pandas(df)


def table_workloads(workload_type, scaled) -> list:
    """The Workload objects (workloads.Workload, passed in to avoid an import cycle). They run by
    name (`--workload frame-1m`), not by default: together they take minutes."""
    rows = 1_000_000
    out = [
        workload_type("frame-100k", "DataFrame, 100k rows x 10 columns: 4 numeric, object str, str, Categorical, "
                      "high-cardinality str, datetime64[ns]", lambda scale: mixed_frame(100_000), scales=False),
        workload_type("frame-1m", "DataFrame, 1M rows x 10 columns (as frame-100k)", lambda scale: mixed_frame(scaled(rows, scale))),
        workload_type("arrow-1m", "pyarrow.Table, 1M rows x 10 columns (frame-1m through Table.from_pandas)",
                      lambda scale: _arrow(mixed_frame(scaled(rows, scale)))),
        workload_type("polars-1m", "polars.DataFrame, 1M rows x 10 columns (frame-1m through polars.from_pandas)",
                      lambda scale: _polars(mixed_frame(scaled(rows, scale)))),
    ]
    for kind, cols in COLUMN_KINDS.items():
        what = " + ".join(cols)
        out.append(workload_type(f"col-{kind}", f"DataFrame, 1M rows: {what}",
                                 lambda scale, kind=kind: kind_frame(kind, scaled(rows, scale))))
    for w in out:
        w.in_default = False
    return out
