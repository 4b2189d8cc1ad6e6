"""Hypothesis strategies for the Python layer (docs/FORMAT.md): every Python-only value qwire
writes in an extension record, nested in every container it writes, registered classes included;
and `pysame`, the strict equality they are checked with (types, dtypes, byte order, memory order,
time zones, NaN payload-insensitive, -0.0 sensitive).

Builds on tests/strategies.py (the q type mapping) without changing it.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import math
import typing
import uuid

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import qwire
from strategies import NUL_FREE_TEXT, same

I64_MIN, I64_MAX = -(2**63), 2**63 - 1

# ---- registered classes (in their own registry: tests pass registry=REGISTRY) -------------------

REGISTRY = qwire.Registry()


@dataclasses.dataclass
class Point:
    x: int
    y: object = None


@dataclasses.dataclass(frozen=True)
class Frozen:
    name: str
    tags: tuple = ()


@dataclasses.dataclass(slots=True)
class Slotted:
    a: object
    b: float = 0.5


class Pair(typing.NamedTuple):
    left: object
    right: object = None


class Colour(enum.Enum):
    RED = 1
    GREEN = "g"
    BLUE = (2, 3)


class Perm(enum.Flag):
    R = 4
    W = 2
    X = 1


class Money:
    """A plain class with its own encode/decode pair."""

    def __init__(self, amount, currency):
        self.amount = decimal.Decimal(amount)
        self.currency = currency

    def __eq__(self, other):
        return type(other) is Money and (self.amount, self.currency) == (other.amount, other.currency)

    __hash__ = None

    def __repr__(self):
        return f"Money({self.amount!r}, {self.currency!r})"


for _cls in (Point, Frozen, Slotted, Pair, Colour, Perm):
    REGISTRY.register(_cls)
REGISTRY.register(Money, encode=lambda m: (str(m.amount), m.currency), decode=lambda v: Money(v[0], v[1]))


# ---- strict equality -------------------------------------------------------------------------------

def _float_same(a, b):
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


def _tz_same(a, b):
    if a is None or b is None:
        return a is None and b is None
    return a.utcoffset(None) == b.utcoffset(None) and a.tzname(None) == b.tzname(None)


def _array_same(a, b):
    if a.dtype.str != b.dtype.str or a.shape != b.shape:
        return False
    if a.ndim > 1 and (a.flags.c_contiguous, a.flags.f_contiguous) != (b.flags.c_contiguous, b.flags.f_contiguous):
        return False
    if a.dtype.kind == "O":
        return all(pysame(x, y) for x, y in zip(a.reshape(-1, order="A"), b.reshape(-1, order="A")))
    return a.tobytes(order="A") == b.tobytes(order="A")


def _set_same(a, b):
    if len(a) != len(b):
        return False
    rest = list(b)
    for x in a:
        for i, y in enumerate(rest):
            if pysame(x, y):
                del rest[i]
                break
        else:
            return False
    return True


def pysame(a, b):
    """The same value, type for type, all the way down."""
    if type(a) is not type(b):
        return False
    t = type(a)
    if t is np.ndarray:
        return _array_same(a, b)
    if isinstance(a, np.generic) and a.dtype.kind not in "OU":
        return a.dtype.str == b.dtype.str and a.tobytes() == b.tobytes()
    if t in (list, tuple) or isinstance(a, tuple):
        return len(a) == len(b) and all(pysame(x, y) for x, y in zip(a, b))
    if t is dict:
        ka, kb = list(a), list(b)
        return len(ka) == len(kb) and all(pysame(x, y) and pysame(a[x], b[y]) for x, y in zip(ka, kb))
    if t in (set, frozenset):
        return _set_same(a, b)
    if t is float:
        return _float_same(a, b)
    if t is complex:
        return _float_same(a.real, b.real) and _float_same(a.imag, b.imag)
    if t is decimal.Decimal:
        return a.compare_total(b) == 0
    if t is bytearray:
        return a == b
    if t is dt.datetime:
        return (a.replace(tzinfo=None) == b.replace(tzinfo=None) and _tz_same(a.tzinfo, b.tzinfo)
                and (a.fold == b.fold or a.tzinfo is None))
    if t is dt.time:
        return a.replace(tzinfo=None) == b.replace(tzinfo=None) and _tz_same(a.tzinfo, b.tzinfo) and a.fold == b.fold
    if isinstance(a, enum.Enum):
        return a is b
    if dataclasses.is_dataclass(a):
        return all(pysame(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    if t is Money:
        return a == b
    return same(a, b)


def assert_pysame(got, expected):
    assert pysame(got, expected), f"\n     got: {got!r}\nexpected: {expected!r}"


# ---- leaves ------------------------------------------------------------------------------------------

ZONES = [
    dt.timezone.utc,
    dt.timezone(dt.timedelta(hours=5, minutes=30)),
    dt.timezone(dt.timedelta(hours=-3), "BRT"),
    dt.timezone(dt.timedelta(hours=23, minutes=59, seconds=59, microseconds=999_999)),
    dt.timezone(dt.timedelta(seconds=-1)),
    dt.timezone(dt.timedelta(0), "Z"),
]
zones = st.sampled_from(ZONES)

big_ints = st.one_of(st.integers(min_value=I64_MAX + 1), st.integers(max_value=I64_MIN - 1),
                     st.sampled_from([I64_MAX + 1, I64_MIN - 1, 2**64, -(2**64), 10**40, -(10**100)]))
ints = st.one_of(st.integers(I64_MIN, I64_MAX), big_ints)
nul_strings = st.tuples(NUL_FREE_TEXT, NUL_FREE_TEXT).map(lambda p: p[0] + "\0" + p[1])
strings = st.one_of(NUL_FREE_TEXT, nul_strings)
decimals = st.decimals(allow_nan=True, allow_infinity=True, places=None)
finite_decimals = st.decimals(allow_nan=False, allow_infinity=False)
complexes = st.complex_numbers(allow_nan=True, allow_infinity=True)
aware_datetimes = st.builds(lambda d, z, f: d.replace(tzinfo=z, fold=f), st.datetimes(), zones, st.integers(0, 1))
naive_datetimes = st.datetimes(min_value=dt.datetime(1710, 1, 1), max_value=dt.datetime(2290, 1, 1))
times = st.one_of(
    st.times().filter(lambda t: t.microsecond % 1000),          # naive, not whole milliseconds
    st.builds(lambda t, z, f: t.replace(tzinfo=z, fold=f), st.times(), zones, st.integers(0, 1)),
)
uuids = st.uuids()

# dtypes q lacks, in both byte orders; fixed-width bytes and text
ODD_DTYPES = ["i1", "<u2", ">u2", "<u4", ">u8", "<f2", ">f2", "<c8", ">c16", "S3", "<U2", ">U2", "<i8", ">i4",
              ">f8", "<M8[Y]", "<m8[h]", "?", "<f8", "u1"]


def _array(dtype, ndim_min):
    dt_ = np.dtype(dtype)
    shapes = hnp.array_shapes(min_dims=ndim_min, max_dims=3, min_side=0, max_side=3)
    if dt_.kind in "mM":
        return hnp.arrays(np.int64, shapes, elements=st.integers(-(2**40), 2**40)).map(lambda a: a.view(dt_))
    return hnp.arrays(dt_, shapes)


def _fortran(arr):
    return np.asfortranarray(arr) if arr.ndim > 1 else arr


def nd_arrays():
    """N-d arrays of any dtype (C or Fortran order) and 1-D arrays of dtypes q lacks."""
    nd = st.sampled_from(ODD_DTYPES).flatmap(lambda d: _array(d, 2))
    # (1-D arrays of q types in either byte order are q vectors, and 1-D text arrays symbol vectors:
    # docs/TYPES.md's encode-only conversions)
    one_d = st.sampled_from([d for d in ODD_DTYPES
                             if np.dtype(d).newbyteorder("=") not in _Q_DTYPES and np.dtype(d).kind != "U"]).flatmap(
        lambda d: _array(d, 1).filter(lambda a: a.ndim == 1))
    return st.one_of(nd, nd.map(_fortran), one_d, object_arrays())


_Q_DTYPES = {np.dtype(t) for t in ("?", "u1", "i2", "i4", "i8", "f4", "f8", "S1")}


def object_arrays():
    items = st.one_of(st.none(), st.integers(-5, 5), NUL_FREE_TEXT, st.tuples(st.integers(0, 3)))
    return hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=3).flatmap(
        lambda shape: st.lists(items, min_size=int(np.prod(shape)), max_size=int(np.prod(shape))).map(
            lambda xs: _objects(xs, shape)))


def _objects(xs, shape):
    out = np.empty(len(xs), dtype=object)
    for i, x in enumerate(xs):
        out[i] = x
    return out.reshape(shape)


numpy_scalars = st.sampled_from(["i1", "<u2", "<u4", "<u8", "<f2", "<c8", "<c16", "<M8[Y]", ">u4"]).flatmap(
    lambda d: _array(d, 1).filter(lambda a: a.size > 0).map(lambda a: a.reshape(-1)[0]))

python_only_leaves = st.one_of(
    big_ints, nul_strings, decimals, complexes, aware_datetimes, times,
    st.binary(max_size=8).map(bytearray), nd_arrays(), numpy_scalars,
    st.sampled_from(list(Colour) + [Perm.R, Perm.R | Perm.W, Perm(0)]),
)
q_leaves = st.one_of(st.none(), st.booleans(), st.integers(I64_MIN, I64_MAX), st.floats(), NUL_FREE_TEXT,
                     st.binary(max_size=6), uuids, st.dates(), naive_datetimes)
leaves = st.one_of(q_leaves, python_only_leaves)

hashable_leaves = st.one_of(
    st.none(), st.booleans(), ints, st.floats(allow_nan=False), strings, st.binary(max_size=6), uuids,
    st.dates(), aware_datetimes, finite_decimals, st.complex_numbers(allow_nan=False), times,
    st.sampled_from(list(Colour)),
)
hashables = st.recursive(hashable_leaves, lambda inner: st.one_of(
    st.lists(inner, max_size=3).map(tuple), st.frozensets(inner, max_size=3)), max_leaves=6)


def _extend(inner):
    return st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(strings, inner, max_size=4),
        st.dictionaries(hashables, inner, max_size=4),
        st.sets(hashables, max_size=4),
        st.frozensets(hashables, max_size=4),
        st.builds(Point, st.integers(-9, 9), inner),
        st.builds(Frozen, NUL_FREE_TEXT, st.lists(hashables, max_size=2).map(tuple)),
        st.builds(Slotted, inner, st.floats()),
        st.builds(Pair, inner, inner),
        st.builds(Money, finite_decimals.map(str), NUL_FREE_TEXT),
    )


def python_values(max_leaves=12):
    """Nested Python values of every kind qwire writes (decode with registry=REGISTRY)."""
    return st.recursive(leaves, _extend, max_leaves=max_leaves)
