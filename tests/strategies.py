"""Hypothesis strategies over qwire's type mapping (docs/TYPES.md), and the strict equality they are
checked with. Reusable by any test or fuzzer: `from strategies import python_values, same`.

Two families:

* Python side: `q_atoms()`, `q_vectors()`, `functions()`, `python_values()` generate the values
  `loads` returns (each satisfies I1: `loads(dumps(x))` is `x`, types included).
* Wire side: `q_trees()` generates abstract q objects and `wire_message(tree, byteorder)` writes them
  as kdb+ would (spec/QIPC.md), so that I2 (`dumps(loads(m)) == m`) is checked against bytes that
  qwire did not produce. Float atoms only carry q's current NaN pattern, so comparisons are exact.

Sizes stay small: a suite of a few hundred examples per test runs in seconds. Strategies that
depend on a drawn size are built once per size (`_cached`): hypothesis validates each new strategy
object, which would otherwise dominate the run time.
"""
from __future__ import annotations

import datetime as dt
import decimal
import functools
import math
import struct
import uuid

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from wire import message

from qwire.errors import QError
from qwire.values import (
    ELIDED,
    BinaryPrimitive,
    Composition,
    DateTime,
    Derived,
    Dict,
    Function,
    Iterator,
    KeyedTable,
    Lambda,
    Projection,
    Table,
    Timestamp,
    UnaryPrimitive,
    Vector,
    values_equal,
)

I64_MIN, I64_MAX = -(2**63), 2**63 - 1
I32_MIN, I32_MAX = -(2**31), 2**31 - 1
I16_MIN, I16_MAX = -(2**15), 2**15 - 1
NS_2000 = 946_684_800 * 10**9  # 2000.01.01 - 1970.01.01 in ns
DAYS_2000 = 10_957
MONTHS_2000 = 360
MS_PER_DAY = 86_400_000
NAN64_Q = 0xFFF8000000000000  # the NaN current q writes for 0n / 0Nz
NAN32_Q = 0xFFC00000  # ... and for 0Ne

_cached = functools.lru_cache(maxsize=None)

# ---------------------------------------------------------------------------------------------
# strict equality
# ---------------------------------------------------------------------------------------------


def _float_same(a, b):
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.copysign(1.0, a) == math.copysign(1.0, b) and a == b


def _sets_same(a, b):
    """Sets compared element by element with `same`. Each element of `a` is paired with the element
    of `b` it hashes and compares equal to; what pairs with nothing (a NaN: equal only to itself, and
    a fresh object in every decoding) is matched among the leftovers, so {nan} is the same as {nan}."""
    if len(a) != len(b):
        return False
    by_value = {y: y for y in b}
    matched = set()
    left_a = []
    for x in a:
        y = by_value.get(x, by_value)
        if y is by_value:
            left_a.append(x)
            continue
        if not same(x, y):
            return False
        matched.add(id(y))
    left_b = [y for y in b if id(y) not in matched]
    for x in left_a:
        k = next((i for i, y in enumerate(left_b) if same(x, y)), None)
        if k is None:
            return False
        del left_b[k]
    return not left_b


def same(a, b):
    """True when `a` and `b` are the same decoded value: `values_equal` (NaN equal to NaN) plus exact
    types all the way down, dict keys compared in order with their types, and float signs (-0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        if not values_equal(a, b) or a.dtype != b.dtype or a.shape != b.shape:
            return False
        if a.dtype.kind == "O":
            return all(same(x, y) for x, y in zip(a.tolist(), b.tolist()))
        if a.dtype.kind == "f":
            # NaN equal to NaN; otherwise bit for bit (so -0.0 is not 0.0)
            nan = np.isnan(a)
            return bool(np.array_equal(nan, np.isnan(b))) and bool(
                np.array_equal(a[~nan].view(f"u{a.itemsize}"), b[~nan].view(f"u{a.itemsize}"))
            )
        return True
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        ka, kb = list(a), list(b)
        return len(ka) == len(kb) and all(same(x, y) for x, y in zip(ka, kb)) and all(
            same(a[x], b[y]) for x, y in zip(ka, kb)
        )
    if isinstance(a, (set, frozenset)):
        return _sets_same(a, b)
    if isinstance(a, (float, np.floating)):
        return _float_same(float(a), float(b))
    if isinstance(a, complex):
        return _float_same(a.real, b.real) and _float_same(a.imag, b.imag)
    if isinstance(a, decimal.Decimal):  # == is False for NaN and raises for sNaN; the digits decide
        return a.as_tuple() == b.as_tuple()
    if isinstance(a, DateTime):
        return _float_same(a.days, b.days)
    if isinstance(a, (np.datetime64, np.timedelta64)):
        return a.dtype == b.dtype and int(a.view("i8")) == int(b.view("i8"))
    if isinstance(a, Vector):
        return a.qtype == b.qtype and a.attr == b.attr and same(a.values, b.values)
    if isinstance(a, Dict):
        return a.sorted == b.sorted and same(a.keys, b.keys) and same(a.values, b.values)
    if isinstance(a, KeyedTable):
        return a.sorted == b.sorted and same(a.keys, b.keys) and same(a.values, b.values)
    if isinstance(a, Table):
        return a.attr == b.attr and a.columns == b.columns and all(same(a[c], b[c]) for c in a.columns)
    if isinstance(a, Function):
        return same(a._key(), b._key())
    if isinstance(a, (dt.datetime, dt.time)):
        return a == b and a.tzinfo is None and b.tzinfo is None and a.fold == b.fold
    return bool(a == b)


def _show(x):
    if isinstance(x, np.bytes_):  # numpy's repr hides NULs: np.bytes_(b'') may be b'\x00'
        return f"np.bytes_({bytes(x)!r}, itemsize={x.itemsize})"
    return repr(x)


def assert_same(got, expected):
    assert same(got, expected), f"\n     got: {_show(got)}\nexpected: {_show(expected)}"


# ---------------------------------------------------------------------------------------------
# temporal sentinels (TYPES.md: nulls and infinities map to NaT and the int64 extremes, unshifted)
# ---------------------------------------------------------------------------------------------


def sentinels(kind, unit):
    """NaT, +inf and -inf of a NumPy temporal unit, as qwire decodes q's 0N, 0W and -0W."""
    make = np.datetime64 if kind == "M" else np.timedelta64
    return [make("NaT", unit), make(I64_MAX, unit), make(I64_MIN + 1, unit)]


# Ranges of the NumPy int64 value (in the unit) that encode to a non-sentinel q value and decode
# back without overflow.
TEMPORAL_RANGES = {
    ("M", "ns"): (I64_MIN + 2 + NS_2000, I64_MAX - 1),  # timestamp: q ns since 2000 = v - NS_2000
    ("M", "M"): (I32_MIN + 2 + MONTHS_2000, I32_MAX - 1 + MONTHS_2000),
    ("M", "D"): (I32_MIN + 2 + DAYS_2000, I32_MAX - 1 + DAYS_2000),
    ("m", "ns"): (I64_MIN + 2, I64_MAX - 1),
    ("m", "m"): (I32_MIN + 2, I32_MAX - 1),
    ("m", "s"): (I32_MIN + 2, I32_MAX - 1),
    ("m", "ms"): (I32_MIN + 2, I32_MAX - 1),
}
TEMPORAL_DTYPES = [np.dtype(f"{k}8[{u}]") for k, u in TEMPORAL_RANGES]
# q timestamps (ns since 2000) that datetime64[ns] cannot hold: 2262-04-11T23:47:16.854775807 on
BEYOND_NS = (I64_MAX - NS_2000, I64_MAX - 1)


def _temporal_ints(kind, unit, *, where=None):
    lo, hi = TEMPORAL_RANGES[(kind, unit)]
    values = st.integers(lo, hi)
    if where is not None:
        values = values.filter(where)
    # the edges of the range are where epoch shifts overflow: draw them often
    return st.one_of(values, st.sampled_from([lo, hi]), st.sampled_from([I64_MIN, I64_MAX, I64_MIN + 1]))


# ---------------------------------------------------------------------------------------------
# atoms, as `loads` returns them
# ---------------------------------------------------------------------------------------------

NUL_FREE_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=8)
NAMES = st.text("abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=6)

int64s = st.integers(I64_MIN, I64_MAX)
uuids = st.binary(min_size=16, max_size=16).map(lambda b: uuid.UUID(bytes=b))
# the NUL char has its own tests (tests/test_roundtrip.py): kept out so it cannot mask other failures
chars = st.integers(1, 255).map(lambda c: np.bytes_(bytes([c])))


def _np_scalar(dtype, elements):
    return elements.map(lambda v: np.array([v], dtype=dtype)[0])


def _from_bits(dtype):
    """Any value of a float dtype, NaNs with any payload included (for vectors: bits pass through)."""
    width = np.dtype(dtype).itemsize
    return st.integers(0, 2 ** (8 * width) - 1).map(lambda u: np.array([u], f"u{width}").view(dtype)[0])


def _floats(width):
    return st.one_of(st.floats(width=width), st.sampled_from([math.inf, -math.inf, math.nan, -0.0, 0.0]))


timestamp_datetimes = st.datetimes(min_value=dt.datetime(1707, 9, 23), max_value=dt.datetime(2292, 4, 10)).map(
    lambda d: d.replace(fold=0)
)
timespan_timedeltas = st.timedeltas(min_value=dt.timedelta(days=-106_751), max_value=dt.timedelta(days=106_751))
times_ms = st.times().map(lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000, fold=0))


def _temporal_scalar(kind, unit, where=None):
    make = np.datetime64 if kind == "M" else np.timedelta64
    return _temporal_ints(kind, unit, where=where).map(lambda v: make(v, unit) if v != I64_MIN else make("NaT", unit))


def _is_python_date(v):  # a datetime64[D] whose value decodes as datetime.date (years 1..9999)
    return -719_162 <= v <= 2_932_896


q_atom_by_type = {
    "null": st.none(),
    "boolean": st.booleans(),
    "guid": uuids,
    "byte": _np_scalar(np.uint8, st.integers(0, 255)),
    "short": _np_scalar(np.int16, st.integers(I16_MIN, I16_MAX)),
    "int": _np_scalar(np.int32, st.integers(I32_MIN, I32_MAX)),
    "long": int64s,
    "real": _np_scalar(np.float32, _floats(32)),
    "float": _floats(64),
    "char": chars,
    "symbol": NUL_FREE_TEXT,
    # q values that a datetime cannot carry (sub-microsecond part, NaT, infinities) are datetime64[ns];
    # those with nanoseconds beyond datetime64[ns] (2262-04-11 on) are qwire.Timestamp
    "timestamp": st.one_of(
        timestamp_datetimes,
        _temporal_scalar("M", "ns", where=lambda v: v % 1000 != 0),
        st.integers(BEYOND_NS[0], BEYOND_NS[1]).filter(lambda v: v % 1000 != 0).map(Timestamp),
    ),
    "month": _temporal_scalar("M", "M"),
    "date": st.one_of(st.dates(), _temporal_scalar("M", "D", where=lambda v: not _is_python_date(v))),
    "datetime": _floats(64).map(DateTime),
    "timespan": st.one_of(timespan_timedeltas, _temporal_scalar("m", "ns", where=lambda v: v % 1000 != 0)),
    "minute": _temporal_scalar("m", "m"),
    "second": _temporal_scalar("m", "s"),
    "time": st.one_of(times_ms, _temporal_scalar("m", "ms", where=lambda v: not 0 <= v < MS_PER_DAY)),
}


def q_atoms(types=None):
    """Atoms of every q type, as decoded values (`types`: a subset of `q_atom_by_type`'s names)."""
    return st.one_of([q_atom_by_type[t] for t in (types or q_atom_by_type)])


# ---------------------------------------------------------------------------------------------
# vectors, as `loads` returns them
# ---------------------------------------------------------------------------------------------

NUMERIC_DTYPES = [np.dtype(t) for t in ("bool", "uint8", "int16", "int32", "int64", "float32", "float64")]
ATTRS = ["s", "u", "p", "g"]


@_cached
def _numeric_array(dtype, size):
    elements = _from_bits(dtype) if dtype.kind == "f" else None
    return hnp.arrays(dtype, size, elements=elements)


@_cached
def _temporal_array(dtype, size):
    kind, unit = dtype.kind, np.datetime_data(dtype)[0]
    return st.lists(_temporal_ints(kind, unit), min_size=size, max_size=size).map(
        lambda v: np.array(v, dtype=np.int64).view(dtype)
    )


def _object_array(items):
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


@_cached
def _symbol_array(size):
    return st.lists(NUL_FREE_TEXT, min_size=size, max_size=size).map(_object_array)


@_cached
def _guid_array(size):
    return st.lists(uuids, min_size=size, max_size=size).map(_object_array)


@_cached
def _char_vector(size):
    return st.binary(min_size=size, max_size=size)


@_cached
def plain_vectors(size):
    """Vectors of exactly `size` items that decode without a wrapper (no attribute)."""
    options = [_numeric_array(d, size) for d in NUMERIC_DTYPES]
    options += [_temporal_array(d, size) for d in TEMPORAL_DTYPES]
    options += [_symbol_array(size), _char_vector(size)]
    if size:
        options.append(_guid_array(size))  # an empty guid vector is Vector(..., 'guid')
    return st.one_of(options)


def natural_qtype(values):
    """The q vector type a plain decoded vector value comes from."""
    if isinstance(values, bytes):
        return "char"
    if isinstance(values, list):
        return "list"
    if values.dtype == object:
        return "guid" if len(values) and isinstance(values[0], uuid.UUID) else "symbol"
    return {
        "bool": "boolean", "uint8": "byte", "int16": "short", "int32": "int", "int64": "long",
        "float32": "real", "float64": "float", "datetime64[ns]": "timestamp", "datetime64[M]": "month",
        "datetime64[D]": "date", "timedelta64[ns]": "timespan", "timedelta64[m]": "minute",
        "timedelta64[s]": "second", "timedelta64[ms]": "time",
    }[str(values.dtype)]


@_cached
def wrapped_vectors(size):
    """Vectors that decode to qwire.Vector: attributed ones, q datetime, the empty guid vector."""
    attributed = st.builds(
        lambda v, a: Vector(v, natural_qtype(v), a),
        st.one_of(plain_vectors(size), _guid_array(size)),
        st.sampled_from(ATTRS),
    )
    datetimes = st.builds(
        lambda v, a: Vector(v, "datetime", a), _numeric_array(np.dtype("float64"), size), st.sampled_from([None] + ATTRS)
    )
    options = [attributed, datetimes]
    if size:  # a timestamp vector holding a value beyond datetime64[ns], in q's units
        beyond = st.integers(*BEYOND_NS)
        raw = st.lists(st.one_of(beyond, st.integers(I64_MIN, I64_MAX)), min_size=size - 1, max_size=size - 1)
        options.append(st.builds(
            lambda b, r, i, a: Vector(np.array(r[:i] + [b] + r[i:], dtype=np.int64), "timestamp", a),
            beyond, raw, st.integers(0, size - 1), st.sampled_from([None] + ATTRS),
        ))
    if size == 0:
        options.append(st.just(Vector(np.array([], dtype=object), "guid")))
    return st.one_of(options)


@_cached
def vectors_of_size(size, wrapped=True):
    return st.one_of(plain_vectors(size), wrapped_vectors(size)) if wrapped else plain_vectors(size)


def q_vectors(max_size=6, wrapped=True):
    """q vectors of every type (general lists excluded), as decoded values."""
    return st.integers(0, max_size).flatmap(lambda n: vectors_of_size(n, wrapped))


# ---------------------------------------------------------------------------------------------
# functions
# ---------------------------------------------------------------------------------------------

lambdas = st.builds(
    Lambda,
    st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=12).map(lambda s: "{" + s + "}"),
    st.sampled_from(["", "q", "d", ".z"]),
)
# codes kdb+'s C library both reads and writes (spec 3.5's tables minus var, cov, cor); unary 0 is
# `::`, which decodes as None
primitives = st.one_of(
    st.integers(1, 41).map(UnaryPrimitive),
    st.integers(0, 34).map(BinaryPrimitive),
    st.integers(0, 5).map(Iterator),
)
_ITERATOR_KINDS = ["'", "/", "\\", "':", "/:", "\\:"]


def functions(args=None, with_lambdas=True):
    """q function values (inert data); `args` is the strategy for projection arguments."""
    args = args if args is not None else st.one_of(q_atoms(["long", "symbol", "float", "char"]), st.just(ELIDED))
    simple = st.one_of(lambdas, primitives) if with_lambdas else primitives
    return st.one_of(
        simple,
        st.builds(lambda f, a: Projection(f, *a), simple, st.lists(args, min_size=1, max_size=3)),
        st.builds(lambda fs: Composition(*fs), st.lists(simple, min_size=2, max_size=3)),
        st.builds(Derived, st.sampled_from(_ITERATOR_KINDS), simple),
    )


# ---------------------------------------------------------------------------------------------
# containers
# ---------------------------------------------------------------------------------------------

# dict keys that are atoms and hashable (NaN excluded: it never equals itself)
hashable_keys = st.one_of(
    q_atoms(["null", "boolean", "guid", "byte", "short", "int", "long", "char", "symbol", "month", "minute", "second"]),
    st.floats(allow_nan=False),
    timestamp_datetimes,
    st.dates(),
    timespan_timedeltas,
    times_ms,
).filter(lambda k: not (isinstance(k, (np.datetime64, np.timedelta64)) and np.isnat(k)))


def decodes_as_python_dict(keys, values):
    """TYPES.md's rule: would a q dict with these keys and values decode to a Python dict?"""
    if type(values) is not list:
        return False
    if isinstance(keys, np.ndarray) and keys.dtype == object:
        keys = keys.tolist()  # a symbol vector when all items are str (also when empty)
        return all(isinstance(k, str) for k in keys) and len(set(keys)) == len(keys)
    if type(keys) is list and keys and not all(isinstance(k, str) for k in keys):
        try:
            return len(set(keys)) == len(keys)
        except TypeError:  # unhashable keys
            return False
    return False


@_cached
def columns(n, values=None):
    """One table column of n rows: a vector, or a general list (strings, or any values)."""
    items = values if values is not None else st.one_of(st.binary(max_size=4), q_atoms())
    return st.one_of(vectors_of_size(n), st.lists(items, min_size=n, max_size=n))


def tables(n=None, values=None):
    """qwire.Table values of n rows (any number when n is None)."""
    rows = st.just(n) if n is not None else st.integers(0, 4)
    return st.tuples(rows, st.integers(1, 3)).flatmap(lambda nk: _tables_of(nk[0], nk[1], values))


@_cached
def _tables_of(n, k, values):
    return st.builds(
        lambda names, cols, attr: Table(dict(zip(names, cols)), attr=attr),
        st.lists(NAMES, min_size=k, max_size=k, unique=True),
        st.lists(columns(n, values), min_size=k, max_size=k),
        st.sampled_from([None, None, None, "s"]),
    )


def keyed_tables(values=None):
    """qwire.KeyedTable values; a sorted one has `s#` on its key table, as q makes them."""
    return st.integers(0, 4).flatmap(lambda n: _keyed_tables_of(n, values))


@_cached
def _keyed_tables_of(n, values):
    return st.builds(
        lambda k, v, s: KeyedTable(Table({"k" + c: k[c] for c in k.columns}, attr="s" if s else k.attr), v, sorted=s),
        tables(n, values),
        tables(n, values),
        st.booleans(),
    )


def _sorted_dict(keys, values, is_sorted):
    """A sorted dict as q makes one (`s#` on a dict applies to its key vector)."""
    if not is_sorted or type(keys) is list:
        return Dict(keys, values)
    if isinstance(keys, Vector):
        return Dict(Vector(keys.values, keys.qtype, "s"), values, sorted=True)
    return Dict(Vector(keys, natural_qtype(keys), "s"), values, sorted=True)


def q_dicts(values=None):
    """qwire.Dict values that stay qwire.Dict through a round trip (TYPES.md's rules)."""
    items = values if values is not None else q_atoms()
    return (
        st.integers(0, 4)
        .flatmap(lambda n: _dict_parts(n, items))
        .map(lambda kvs: _sorted_dict(*kvs))
        .filter(lambda d: not decodes_as_python_dict(d.keys, d.values))
    )


# general-list keys: hashable atoms (some duplicated, some all symbols) or unhashable vectors
_KEY_ITEMS = st.one_of(hashable_keys, st.sampled_from(["a", "b", 1]), q_vectors(2))


@_cached
def _dict_parts(n, items):
    keys = st.one_of(vectors_of_size(n), st.lists(_KEY_ITEMS, min_size=n, max_size=n))
    vals = st.one_of(vectors_of_size(n), st.lists(items, min_size=n, max_size=n), tables(n))
    return st.tuples(keys, vals, st.booleans())


def python_values(max_leaves=10, functions_=None):
    """Everything TYPES.md says round-trips (I1), nested in lists, dicts, q dicts and tables.
    `functions_`: the strategy for function values (default `functions()`; `st.nothing()` for none)."""
    leaves = st.one_of(q_atoms(), q_vectors(), functions() if functions_ is None else functions_)

    def extend(children):
        return st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(NUL_FREE_TEXT, children, max_size=4),
            st.dictionaries(hashable_keys, children, min_size=1, max_size=4),
            q_dicts(children),
            tables(values=children),
            keyed_tables(),
        )

    return st.recursive(leaves, extend, max_leaves=max_leaves)


# ---------------------------------------------------------------------------------------------
# the wire side: abstract q objects and kdb+'s bytes for them (spec/QIPC.md)
# ---------------------------------------------------------------------------------------------
#
# A tree is a tuple:
#   ("atom", t, raw)                t < 0; raw is the unsigned bit pattern (bytes for symbol/guid)
#   ("vector", t, attr, [raw, ...]) t in 1..19
#   ("list", attr, [tree, ...])
#   ("dict", sorted, keys_tree, values_tree)
#   ("table", attr, [name, ...], [column_tree, ...])
#   ("lambda", context, source)     bytes
#   ("code", t, byte)               t in 101..103
#   ("items", t, [tree, ...])       projection 104 / composition 105
#   ("derived", t, tree)            106..111
#   ("error", text)

WIDTHS = {1: 1, 2: 16, 4: 1, 5: 2, 6: 4, 7: 8, 8: 4, 9: 8, 10: 1, 11: None, 12: 8, 13: 4, 14: 4, 15: 8, 16: 8, 17: 4,
          18: 4, 19: 4}
_UINT = {1: "B", 2: "H", 4: "I", 8: "Q"}


def _pack_raw(t, raw, order):
    width = WIDTHS[abs(t)]
    if width is None:
        return raw + b"\x00"
    if width == 16:
        return raw
    return struct.pack(order + _UINT[width], raw)


def _wire_item(tree, order):
    kind = tree[0]
    u32 = struct.Struct(order + "I").pack
    if kind == "atom":
        _, t, raw = tree
        return struct.pack("b", t) + _pack_raw(t, raw, order)
    if kind == "vector":
        _, t, attr, raws = tree
        return bytes([t, attr]) + u32(len(raws)) + b"".join(_pack_raw(t, r, order) for r in raws)
    if kind == "list":
        _, attr, items = tree
        return bytes([0, attr]) + u32(len(items)) + b"".join(_wire_item(i, order) for i in items)
    if kind == "dict":
        _, is_sorted, keys, values = tree
        return bytes([127 if is_sorted else 99]) + _wire_item(keys, order) + _wire_item(values, order)
    if kind == "table":
        _, attr, names, cols = tree
        return (
            bytes([98, attr, 99])
            + _wire_item(("vector", 11, 0, names), order)
            + _wire_item(("list", 0, cols), order)
        )
    if kind == "lambda":
        _, context, source = tree
        return b"\x64" + context + b"\x00" + _wire_item(("vector", 10, 0, list(source)), order)
    if kind == "code":
        return bytes([tree[1], tree[2]])
    if kind == "items":
        return bytes([tree[1]]) + u32(len(tree[2])) + b"".join(_wire_item(i, order) for i in tree[2])
    if kind == "derived":
        return bytes([tree[1]]) + _wire_item(tree[2], order)
    if kind == "error":
        return b"\x80" + tree[1] + b"\x00"
    raise ValueError(f"not a q tree: {tree!r}")


def wire_message(tree, byteorder="little", msg_type=0):
    """The complete IPC message kdb+ writes for `tree` (uncompressed; big-endian if asked)."""
    order = "<" if byteorder == "little" else ">"
    return message(_wire_item(tree, order), msg_type, order)


def _u(bits):
    return lambda v: v & ((1 << bits) - 1)


_SIGNED = {5: 16, 6: 32, 7: 64, 13: 32, 14: 32, 17: 32, 18: 32, 19: 32}


@_cached
def _raw_element(t, atom):
    """Raw values of q type t. Atoms get float NaNs only in q's pattern (qwire writes null float atoms
    that way); vector floats carry any bits."""
    if t == 1:
        return st.integers(0, 1)
    if t == 2:
        return st.binary(min_size=16, max_size=16)
    if t in (4, 10):
        return st.integers(1 if (atom and t == 10) else 0, 255)  # NUL char atom: tests/test_roundtrip
    if t == 11:
        return st.binary(max_size=6).map(lambda b: b.replace(b"\x00", b"\x01"))
    if t in _SIGNED:
        bits = _SIGNED[t]
        lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        return st.one_of(st.integers(lo, hi), st.sampled_from([lo, lo + 1, hi])).map(_u(bits))
    if t in (12, 16):
        hi = I64_MAX - 1
        ints = st.one_of(
            st.integers(I64_MIN + 2, hi),
            st.integers(*BEYOND_NS),  # timestamps beyond datetime64[ns]
            st.sampled_from([I64_MIN, I64_MIN + 1, I64_MAX, BEYOND_NS[0] - 1, BEYOND_NS[0]]),
        )
        # whole microseconds often, so that atoms decode as datetime/timedelta too
        return st.one_of(ints, ints.map(lambda v: v - v % 1000 if I64_MIN + 2000 < v < hi else v)).map(_u(64))
    if t in (8, 9, 15):
        width = 32 if t == 8 else 64
        anything = st.integers(0, 2**width - 1)
        if not atom:
            return anything
        fmt, ufmt = ("<f", "<I") if width == 32 else ("<d", "<Q")
        nan = NAN32_Q if width == 32 else NAN64_Q
        return anything.map(lambda u: nan if math.isnan(struct.unpack(fmt, struct.pack(ufmt, u))[0]) else u)
    raise ValueError(t)


VECTOR_TYPES = [1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19]


@_cached
def q_atom_trees():
    return st.one_of([_raw_element(t, True).map(functools.partial(_atom_tree, t)) for t in VECTOR_TYPES])


def _atom_tree(t, raw):
    return ("atom", -t, raw)


def q_vector_trees(n=None, attrs=(0, 0, 1, 2, 3, 4)):
    size = st.just(n) if n is not None else st.integers(0, 5)
    return st.tuples(st.sampled_from(VECTOR_TYPES), size, st.sampled_from(attrs)).flatmap(lambda tna: _vector_tree(*tna))


@_cached
def _vector_tree(t, n, attr):
    return st.lists(_raw_element(t, False), min_size=n, max_size=n).map(lambda raws: ("vector", t, attr, raws))


def q_function_trees(children):
    """Functions as q builds them: lambdas and primitives, projections of them (`65 ff` marking an
    elided argument), compositions and derived functions."""
    simple = st.one_of(
        st.builds(lambda c, s: ("lambda", c, s), st.sampled_from([b"", b"q", b"d"]),
                  st.binary(min_size=1, max_size=10).map(lambda b: b"{" + bytes(x & 0x7F | 0x20 for x in b) + b"}")),
        # the codes kdb+'s C library (libe 2023.11.22) both reads and writes back
        st.integers(1, 41).map(lambda c: ("code", 101, c)),
        st.integers(0, 34).map(lambda c: ("code", 102, c)),
        st.integers(0, 5).map(lambda c: ("code", 103, c)),
    )
    args = st.one_of(children, st.just(("code", 101, 255)))
    return st.one_of(
        simple,
        st.builds(lambda f, a: ("items", 104, [f] + a), simple, st.lists(args, min_size=1, max_size=3)),
        st.builds(lambda fs: ("items", 105, fs), st.lists(simple, min_size=2, max_size=3)),
        st.builds(lambda t, f: ("derived", t, f), st.integers(106, 111), simple),
    )


@_cached
def _sized(n, children):
    """Items of exactly n elements: vectors, or general lists."""
    return st.one_of(q_vector_trees(n), st.lists(children, min_size=n, max_size=n).map(lambda i: ("list", 0, i)))


def _table_trees(children, n=None):
    rows = st.just(n) if n is not None else st.integers(0, 3)
    return st.tuples(rows, st.integers(1, 3)).flatmap(lambda nk: _table_trees_of(children, *nk))


@_cached
def _table_trees_of(children, n, k):
    names = st.lists(st.binary(min_size=1, max_size=4).map(lambda b: b.replace(b"\x00", b"_")), min_size=k,
                     max_size=k, unique=True)
    return st.builds(
        lambda names, cols, attr: ("table", attr, names, cols),
        names,
        st.lists(_sized(n, children), min_size=k, max_size=k),
        st.sampled_from([0, 0, 1]),
    )


def _dict_tree(is_sorted, keys, values):
    """q marks the keys of a sorted dict `s#` (a key table for a sorted keyed table)."""
    if is_sorted and keys[0] == "vector":
        return ("dict", True, ("vector", keys[1], 1, keys[3]), values)
    if is_sorted and keys[0] == "table":
        return ("dict", True, ("table", 1) + keys[2:], values)
    return ("dict", False, keys, values)


def _dict_trees(children):
    return st.one_of(
        st.integers(0, 3).flatmap(lambda n: _dict_trees_of(children, n)),
        st.integers(0, 3).flatmap(lambda n: _keyed_trees_of(children, n)),
    )


@_cached
def _dict_trees_of(children, n):
    keys = st.one_of(
        q_vector_trees(n),
        st.lists(children, min_size=n, max_size=n).map(lambda i: ("list", 0, i)),
        st.lists(q_atom_trees(), min_size=n, max_size=n).map(lambda i: ("list", 0, i)),
    )
    values = st.one_of(_sized(n, children), _table_trees(children, n))
    return st.builds(_dict_tree, st.booleans(), keys, values)


@_cached
def _keyed_trees_of(children, n):
    return st.builds(_dict_tree, st.booleans(), _table_trees(children, n), _table_trees(children, n))


def q_trees(max_leaves=8):
    """Any q object kdb+ sends (errors aside), as a tree for `wire_message`."""
    leaves = st.one_of(q_atom_trees(), q_vector_trees(), st.just(("code", 101, 0)))  # `::`

    def extend(children):
        return st.one_of(
            st.lists(children, max_size=4).map(lambda i: ("list", 0, i)),
            st.lists(children, max_size=3).map(lambda i: ("list", 1, i)),
            _dict_trees(children),
            _table_trees(children),
            q_function_trees(children),
        )

    return st.recursive(leaves, extend, max_leaves=max_leaves)


def q_messages(byteorder="little", max_leaves=8):
    return q_trees(max_leaves).map(lambda t: wire_message(t, byteorder))


__all__ = [
    "same", "assert_same", "sentinels", "q_atoms", "q_atom_by_type", "q_vectors", "plain_vectors",
    "wrapped_vectors", "vectors_of_size", "functions", "tables", "keyed_tables", "q_dicts", "python_values",
    "decodes_as_python_dict", "natural_qtype", "q_trees", "q_atom_trees", "q_vector_trees", "q_messages",
    "wire_message", "message", "QError",
]
