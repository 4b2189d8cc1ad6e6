"""Shared test setup: PyKX, KX's own kdb+ C library run unlicensed, as the reference serializer.

PyKX is never skipped: a test that asks for the `kx` fixture fails when it cannot be imported.
"""
import os

# before anything imports pykx: no license, no QHOME, no start-up chatter
os.environ.setdefault("PYKX_UNLICENSED", "true")
os.environ.setdefault("PYKX_IGNORE_QHOME", "true")
os.environ.setdefault("PYKX_SUPPRESS_WARNINGS", "true")

import ctypes  # noqa: E402
import datetime as dt  # noqa: E402
import functools  # noqa: E402
import math  # noqa: E402
import struct  # noqa: E402
import uuid  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from qwire.qtypes import vector_code  # noqa: E402
from qwire.values import DateTime, Dict, Function, KeyedTable, Table, Timestamp, Vector  # noqa: E402

from hypothesis import HealthCheck, settings  # noqa: E402

# HYPOTHESIS_PROFILE=thorough for a long bug hunt; the default keeps the suite fast
settings.register_profile("default", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

I64_MIN, I64_MAX = -(2**63), 2**63 - 1
I32_MIN, I32_MAX = -(2**31), 2**31 - 1


@functools.lru_cache(maxsize=None)
def import_pykx():
    """The pykx module, in the unlicensed mode set above. Raises if PyKX is missing or broken."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pykx
    return pykx


@pytest.fixture(scope="session")
def kx():
    return import_pykx()


@pytest.fixture(scope="session")
def to_kx():
    """`to_kx(value)`: the PyKX object for a qwire value, built with PyKX's typed constructors."""
    return KxBuilder(import_pykx()).build


@pytest.fixture(scope="session")
def kx_bytes():
    """`kx_bytes(k)`: the message kdb+'s serializer (`b9`, as `-8!`) writes for a PyKX object."""
    return kx_serialize


def kx_serialize(k):
    return bytes(import_pykx().serialize(k).copy())


class CannotBuild(NotImplementedError):
    """PyKX run unlicensed offers no way to build this value (q functions, errors)."""


class KxBuilder:
    """Builds the PyKX object for a value of qwire's type mapping (docs/TYPES.md).

    PyKX's constructors do the value conversions (epochs, units) wherever they are exact. Where
    unlicensed PyKX has none, the object is put together as a C program would, through the same
    library's C API (`xD`, `xT`) and its K struct (`t` type byte at offset 2, `u` attribute at 3):
    dicts and tables of any items, q datetimes, attributes, sorted dicts, and temporal
    nulls/infinities (PyKX shifts NaT by the epoch, spec 6.5), which are q's sentinels by definition.
    """

    _TYPE_OFFSET, _ATTR_OFFSET = 2, 3
    _ATTRS = {None: 0, "s": 1, "u": 2, "p": 3, "g": 4}
    # numpy temporal dtype -> (q vector type, wire width)
    _TEMPORAL = {
        "datetime64[ns]": (12, 8), "datetime64[M]": (13, 4), "datetime64[D]": (14, 4),
        "timedelta64[ns]": (16, 8), "timedelta64[m]": (17, 4), "timedelta64[s]": (18, 4), "timedelta64[ms]": (19, 4),
    }

    def __init__(self, kx):
        self.kx = kx
        lib = ctypes.CDLL(None)  # PyKX loaded libe with RTLD_GLOBAL
        self._xD, self._xT, self._r1 = lib.xD, lib.xT, lib.r1
        for f in (self._xD, self._xT, self._r1):
            f.restype = ctypes.c_void_p
        self._xD.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        self._xT.argtypes = [ctypes.c_void_p]
        self._r1.argtypes = [ctypes.c_void_p]

    # ---- low level --------------------------------------------------------------------------

    def _wrap(self, addr):
        if not addr:
            raise RuntimeError("kdb+ C API call failed")
        return self.kx.K._from_addr(addr, False)

    def _poke(self, k, offset, value):
        ctypes.memmove(k._addr + offset, struct.pack("b" if value < 0 else "B", value), 1)
        return k

    def dict_(self, keys, values, sorted_=False):
        d = self._wrap(self._xD(self._r1(keys._addr), self._r1(values._addr)))
        # in memory a sorted dict is a dict (99) with the `s#` attribute; b9 writes it as type 127
        return self._poke(d, self._ATTR_OFFSET, self._ATTRS["s"]) if sorted_ else d

    def table(self, names, columns, attr=None):
        kx = self.kx
        d = self.dict_(kx.SymbolVector(_objects(names)), kx.List(columns))
        t = self._wrap(self._xT(self._r1(d._addr)))
        return self._poke(t, self._ATTR_OFFSET, self._ATTRS[attr])

    # ---- values -----------------------------------------------------------------------------

    def build(self, x):
        kx = self.kx
        t = type(x)
        if x is None:
            return kx.Identity(None)
        if t in (bool, np.bool_):
            return kx.BooleanAtom(bool(x))
        if t in (int, np.int64):
            return kx.LongAtom(int(x))
        if t in (float, np.float64):
            return kx.FloatAtom(_q_nan(float(x), 64))
        if t is np.float32:
            return kx.RealAtom(np.float32(_q_nan(x, 32)))
        if t is np.uint8:
            return kx.ByteAtom(int(x))
        if t is np.int16:
            return kx.ShortAtom(int(x))
        if t is np.int32:
            return kx.IntAtom(int(x))
        if t is np.bytes_:
            return kx.CharAtom(bytes(x))
        if t is str:
            return kx.SymbolAtom(x)
        if t is bytes:
            return kx.CharVector(x)
        if t is uuid.UUID:
            return kx.GUIDAtom(x)
        if t is dt.datetime:
            return kx.TimestampAtom(x)
        if t is dt.date:
            return kx.DateAtom(x)
        if t is dt.time:
            return kx.TimeAtom(dt.datetime.combine(dt.date.min, x) - dt.datetime.min)
        if t is dt.timedelta:
            return kx.TimespanAtom(x)
        if t in (np.datetime64, np.timedelta64):
            return self._temporal(np.array([x]), atom=True)
        if t is DateTime:
            return self._poke(kx.FloatAtom(_q_nan(x.days, 64)), self._TYPE_OFFSET, -15)
        if t is Timestamp:  # q's raw units
            return self._poke(kx.LongAtom(x.ns), self._TYPE_OFFSET, -12)
        if t is np.ndarray:
            return self._array(x)
        if t is Vector:
            return self._vector(x)
        if t is list:
            return kx.List([self.build(i) for i in x])
        if t is dict:
            keys = list(x)
            if all(type(k) is str for k in keys):
                k = kx.SymbolVector(_objects(keys))
            else:
                k = kx.List([self.build(i) for i in keys])
            return self.dict_(k, kx.List([self.build(v) for v in x.values()]))
        if t is Dict:
            return self.dict_(self.build(x.keys), self.build(x.values), x.sorted)
        if t is Table:
            return self.table(x.columns, [self.build(x[c]) for c in x.columns], x.attr)
        if t is KeyedTable:
            return self.dict_(self.build(x.keys), self.build(x.values), x.sorted)
        if isinstance(x, Function):
            raise CannotBuild(f"unlicensed PyKX cannot construct q functions ({x!r})")
        raise CannotBuild(f"no PyKX constructor for {t.__name__}")

    def _array(self, a):
        kx = self.kx
        if a.dtype == object:
            items = a.tolist()
            if items and all(type(i) is uuid.UUID for i in items):
                return kx.GUIDVector(a)
            return kx.SymbolVector(a)
        if str(a.dtype) in self._TEMPORAL:
            return self._temporal(a)
        return kx.toq(a)

    def _vector(self, v):
        kx = self.kx
        if v.qtype == "datetime":
            k = self._poke(kx.toq(np.asarray(v.values, dtype=np.float64)), self._TYPE_OFFSET, 15)
        elif v.qtype == "guid":
            k = kx.GUIDVector(v.values)
        elif isinstance(v.values, np.ndarray) and v.values.dtype.kind == "i" and v.qtype not in _INTEGRAL:
            k = self._poke(kx.toq(v.values), self._TYPE_OFFSET, vector_code(v.qtype))  # raw temporal units
        else:
            k = self.build(v.values)
        return self._poke(k, self._ATTR_OFFSET, self._ATTRS[v.attr])

    def _temporal(self, a, atom=False):
        """Temporal values: PyKX converts every ordinary value (vector conversion: exact in ns); q's
        sentinels are written for NaT and the int64 extremes (TYPES.md: never epoch-shifted)."""
        kx = self.kx
        t, width = self._TEMPORAL[str(a.dtype)]
        ints = a.view(np.int64)
        null, inf = (I64_MIN, I64_MAX) if width == 8 else (I32_MIN, I32_MAX)
        special = {I64_MIN: null, I64_MAX: inf, I64_MIN + 1: -inf}
        mask = np.isin(ints, list(special))
        ordinary = np.where(mask, np.int64(0), ints).view(a.dtype)  # epoch 1970: shifts fine
        wire = kx_serialize(kx.toq(ordinary))
        raw = np.frombuffer(wire, dtype=f"<i{width}", offset=14).astype(np.int64)
        raw[mask] = [special[int(i)] for i in ints[mask]]
        if atom:
            base = kx.LongAtom(int(raw[0])) if width == 8 else kx.IntAtom(int(raw[0]))
            return self._poke(base, self._TYPE_OFFSET, -t)
        return self._poke(kx.toq(raw.astype(f"i{width}")), self._TYPE_OFFSET, t)


_INTEGRAL = ("short", "int", "long")


def _objects(items):
    out = np.empty(len(items), dtype=object)
    out[:] = list(items)
    return out


def _q_nan(f, width):
    """NaN as current q writes a null float atom (0xFFF8…/0xFFC00000); other values unchanged."""
    if not math.isnan(f):
        return f
    if width == 64:
        return struct.unpack("<d", struct.pack("<Q", 0xFFF8000000000000))[0]
    return np.frombuffer(struct.pack("<I", 0xFFC00000), dtype=np.float32)[0]
