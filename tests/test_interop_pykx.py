"""Differential tests against kdb+'s own serializer: KX's C library as loaded by PyKX, unlicensed.

Both directions, over hypothesis-generated values of every type:
* PyKX -> qwire: the q object built with PyKX's constructors (tests/conftest.py) serializes to
  exactly `qwire.dumps(value)`, and `qwire.loads` of kdb+'s bytes is the value.
* qwire -> PyKX: kdb+ accepts qwire's bytes (its validator and deserializer) and serializes what it
  read back to the same bytes.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import qwire
from qwire import KeyedTable, Lambda, Table
from strategies import (
    assert_same,
    functions,
    python_values,
    q_atom_by_type,
    q_trees,
    q_vectors,
    wire_message,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # PyKX on q datetimes

# PyKX's C library reads a lambda as its source string (spec 3.5), so lambdas cannot go qwire ->
# kdb+ -> bytes; they are covered by real q's bytes in test_conformance.py.
NO_FUNCTIONS = python_values(functions_=st.nothing())
NO_LAMBDAS = python_values(functions_=functions(with_lambdas=False))


def _from_kdb(x, to_kx, kx_bytes):
    expected = kx_bytes(to_kx(x))
    assert bytes(qwire.dumps(x)).hex() == expected.hex()
    assert_same(qwire.loads(expected), x)


def _to_kdb(x, kx, kx_bytes):
    ours = bytes(qwire.dumps(x))
    assert kx_bytes(kx.deserialize(ours)).hex() == ours.hex()


# ---- PyKX -> qwire -----------------------------------------------------------------------------


@pytest.mark.parametrize("qtype", sorted(set(q_atom_by_type) - {"null"}))
@settings(max_examples=40)
@given(data=st.data())
def test_atoms_from_kdb(qtype, data, to_kx, kx_bytes):
    _from_kdb(data.draw(q_atom_by_type[qtype]), to_kx, kx_bytes)


@given(x=q_vectors())
def test_vectors_from_kdb(x, to_kx, kx_bytes):
    _from_kdb(x, to_kx, kx_bytes)


@settings(max_examples=max(100, settings().max_examples // 2))
@given(x=NO_FUNCTIONS)
def test_values_from_kdb(x, to_kx, kx_bytes):
    _from_kdb(x, to_kx, kx_bytes)


# ---- qwire -> PyKX -----------------------------------------------------------------------------


@pytest.mark.parametrize("qtype", sorted(q_atom_by_type))
@settings(max_examples=40)
@given(data=st.data())
def test_atoms_to_kdb(qtype, data, kx, kx_bytes):
    _to_kdb(data.draw(q_atom_by_type[qtype]), kx, kx_bytes)


@settings(max_examples=max(100, settings().max_examples // 2))
@given(x=NO_LAMBDAS)
def test_values_to_kdb(x, kx, kx_bytes):
    _to_kdb(x, kx, kx_bytes)


@given(x=functions(with_lambdas=False))
def test_functions_to_kdb(x, kx, kx_bytes):
    _to_kdb(x, kx, kx_bytes)


def test_lambda_to_kdb(kx):
    k = kx.deserialize(bytes(qwire.dumps(Lambda("{x+y}", "d"))))
    assert bytes(k.np()) == b"{x+y}"  # libe keeps only the source


def _has_lambda(tree):
    if not isinstance(tree, (tuple, list)):
        return False
    return (isinstance(tree, tuple) and tree[:1] == ("lambda",)) or any(_has_lambda(t) for t in tree)


@given(tree=q_trees())
def test_i2_agrees_with_kdb(tree, kx, kx_bytes):
    """What qwire writes back for a kdb+ message is what kdb+ writes back for it."""
    m = wire_message(tree)
    ours = bytes(qwire.dumps(qwire.loads(m)))
    if not _has_lambda(tree):
        assert ours.hex() == kx_bytes(kx.deserialize(m)).hex()
    be = wire_message(tree, "big")
    assert bytes(qwire.dumps(qwire.loads(be))).hex() == ours.hex()


# ---- PyKX's own conversions of NumPy and pandas values -------------------------------------------

NUMERIC = ["bool", "uint8", "int16", "int32", "int64", "float32", "float64"]


@pytest.mark.parametrize("dtype", NUMERIC)
@given(data=st.data())
def test_numpy_arrays_as_pykx_converts_them(dtype, data, kx, kx_bytes):
    from hypothesis.extra import numpy as hnp

    a = data.draw(hnp.arrays(np.dtype(dtype), st.integers(0, 8)))
    expected = kx_bytes(kx.toq(a))
    assert bytes(qwire.dumps(a)).hex() == expected.hex()
    assert_same(qwire.loads(expected), a)


@pytest.mark.parametrize(
    "dtype", ["datetime64[ns]", "datetime64[M]", "datetime64[D]", "timedelta64[ns]", "timedelta64[m]",
              "timedelta64[s]", "timedelta64[ms]"]
)
@given(data=st.data())
def test_temporal_arrays_as_pykx_converts_them(dtype, data, kx, kx_bytes):
    # ordinary values only: PyKX shifts NaT by the epoch (spec 6.5)
    span = {"ns": 10**18, "M": 10**5, "D": 10**6, "m": 10**9, "s": 10**9, "ms": 10**9}[np.datetime_data(dtype)[0]]
    ints = data.draw(st.lists(st.integers(-span, span), max_size=8))
    a = np.array(ints, dtype=np.int64).view(dtype)
    expected = kx_bytes(kx.toq(a))
    assert bytes(qwire.dumps(a)).hex() == expected.hex()
    assert_same(qwire.loads(expected), a)


def test_dataframe_as_pykx_converts_it(kx, kx_bytes):
    import pandas as pd  # a test dependency: never skipped
    df = pd.DataFrame({
        "i": np.array([1, 2, 3]), "f": np.array([1.5, np.nan, 3.0]), "b": np.array([True, False, True]),
        "s": np.array(["a", "b", "c"], dtype=object), "h": np.array([1, 2, 3], dtype=np.int16),
        "t": np.array(["2001-01-01T00:00:00.000000001", "2002-01-01", "2003-01-01"], dtype="datetime64[ns]"),
    })
    expected = kx_bytes(kx.toq(df))
    assert bytes(qwire.dumps(df, q_compatible=True)).hex() == expected.hex()
    got = qwire.loads(expected)
    assert type(got) is Table and got.columns == list(df.columns)


def test_keyed_dataframe_as_pykx_converts_it(kx, kx_bytes):
    import pandas as pd  # a test dependency: never skipped
    df = pd.DataFrame({"v": np.array([1.5, 2.5])}, index=pd.Index(np.array([10, 20]), name="k"))
    expected = kx_bytes(kx.toq(df))
    assert_same(
        qwire.loads(expected), KeyedTable(Table({"k": np.array([10, 20])}), Table({"v": np.array([1.5, 2.5])}))
    )
    assert bytes(qwire.dumps(df, q_compatible=True)).hex() == expected.hex()


def test_python_dict_as_pykx_converts_it(kx, kx_bytes):
    d = {"a": 1, "b": "x", "c": 2.5}
    expected = kx_bytes(kx.toq(d))
    assert bytes(qwire.dumps(d)).hex() == expected.hex()
    assert_same(qwire.loads(expected), d)
