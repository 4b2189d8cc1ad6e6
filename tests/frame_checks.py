"""Strict equality of pandas objects for the round-trip tests: pandas' own assertions with every
check on, plus what they let through (object cells of different types that compare equal, None
against NaN, an index's freq on a Series)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from pandas.testing import assert_frame_equal, assert_index_equal, assert_series_equal


def _same_cell(a, b):
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if a is pd.NA or a is pd.NaT or a is None:
        return a is b
    return bool(a == b)


def _same_objects(a, b, where):
    a, b = np.asarray(a, dtype=object), np.asarray(b, dtype=object)
    for i, (x, y) in enumerate(zip(a.tolist(), b.tolist())):
        assert _same_cell(x, y), f"{where}[{i}]: {x!r} ({type(x).__name__}) came back as {y!r} ({type(y).__name__})"


def assert_same_index(got, expected, where="index"):
    assert type(got) is type(expected), f"{where}: {type(expected).__name__} came back as {type(got).__name__}"
    assert_index_equal(got, expected, exact=True, check_names=True, check_exact=True, check_categorical=True,
                       check_order=True)
    assert got.names == expected.names and [type(n) for n in got.names] == [type(n) for n in expected.names]
    assert getattr(got, "freq", None) == getattr(expected, "freq", None), f"{where}: freq"
    if isinstance(expected, pd.MultiIndex):
        for i in range(expected.nlevels):
            assert_same_index(got.levels[i], expected.levels[i], f"{where} level {i}")
    elif expected.dtype == object:
        _same_objects(got, expected, where)
    else:
        assert got.dtype == expected.dtype


def assert_same_series(got, expected):
    assert type(got) is pd.Series
    assert_series_equal(got, expected, check_exact=True, check_index_type=True, check_series_type=True,
                        check_names=True, check_categorical=True, check_category_order=True, check_freq=True,
                        check_flags=True)
    assert got.dtype == expected.dtype and str(got.dtype) == str(expected.dtype)
    assert type(got.name) is type(expected.name)
    assert_same_index(got.index, expected.index)
    if expected.dtype == object:
        _same_objects(got, expected, f"Series {expected.name!r}")


def assert_same_frame(got, expected):
    assert type(got) is pd.DataFrame
    assert_frame_equal(got, expected, check_exact=True, check_index_type=True, check_column_type=True,
                       check_frame_type=True, check_names=True, check_categorical=True, check_like=False,
                       check_freq=True, check_flags=True)
    assert [str(t) for t in got.dtypes] == [str(t) for t in expected.dtypes]
    assert_same_index(got.columns, expected.columns, "columns")
    assert_same_index(got.index, expected.index)
    for i in range(expected.shape[1]):
        if expected.dtypes.iloc[i] == object:
            _same_objects(got.iloc[:, i], expected.iloc[:, i], f"column {expected.columns[i]!r}")
