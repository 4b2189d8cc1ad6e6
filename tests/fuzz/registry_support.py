"""The registry the `registry` fuzz target decodes with, its seeds, and the check on its results.

The registry holds four classes, one per entry kind (dataclass, NamedTuple, Enum, encode/decode
pair). A fifth class, `Sentinel`, is never registered but shares its name pattern: if decoding ever
constructs, initialises or unpickles one (its `__new__`, `__init__`, `__setstate__` and `__reduce__`
set a flag), that is a finding, as is any object in a result whose type is neither a value qwire
builds itself nor one of the registered classes.
"""
from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import typing
import uuid

import numpy as np

import qwire
from qwire import functions as qfunctions
from qwire import values as qvalues


@dataclasses.dataclass
class Point:
    x: float
    y: float = 0.0
    tags: list = dataclasses.field(default_factory=list)
    next: object = None  # lets refs=True seeds carry cycles through registered objects


class Pair(typing.NamedTuple):
    left: object
    right: object


class Colour(enum.Enum):
    RED = 1
    GREEN = "green"


class Celsius:
    """A plain class with its own encode/decode pair."""

    def __init__(self, degrees):
        self.degrees = float(degrees)

    def __eq__(self, other):
        return isinstance(other, Celsius) and other.degrees == self.degrees


@dataclasses.dataclass(frozen=True)
class Frozen:
    """Hashed by its fields: the shared-structure target puts it in sets and dict keys, and reaches
    it through references from inside its own fields."""

    a: object = None
    b: object = None


class Perms(enum.IntFlag):
    R = 4
    W = 2
    X = 1


TOUCHED: list = []


class Sentinel:
    """Never registered: any of these hooks running during a decode is a finding."""

    def __new__(cls, *a, **k):
        TOUCHED.append("__new__")
        return super().__new__(cls)

    def __init__(self, *a, **k):
        TOUCHED.append("__init__")

    def __setstate__(self, state):
        TOUCHED.append("__setstate__")

    def __reduce__(self):
        TOUCHED.append("__reduce__")
        return (Sentinel, ())


def make_registry():
    reg = qwire.Registry()
    reg.register(Point)
    reg.register(Pair)
    reg.register(Colour)
    reg.register(Celsius, encode=lambda c: c.degrees, decode=Celsius)
    reg.register(Frozen)
    reg.register(Perms)
    return reg


REGISTRY = make_registry()
REGISTERED = (Point, Pair, Colour, Celsius, Frozen, Perms)

# What a decode may return besides the registered classes: the values qwire builds itself.
_BUILT_IN = (
    type(None), bool, int, float, str, bytes, bytearray, list, tuple, dict, set, frozenset, complex,
    decimal.Decimal, datetime.datetime, datetime.date, datetime.time, datetime.timedelta, uuid.UUID,
    np.ndarray, np.generic, np.dtype,
)


def _is_qwire_value(obj):
    return type(obj).__module__ in (qvalues.__name__, qfunctions.__name__, "qwire._core")


def make_registry_decoder():
    return qwire.Decoder(registry=REGISTRY, max_decompressed_size=64 << 20)


def check_only_registered(value):
    """Raise AssertionError if `value` holds an object of a type nobody allowed, or if the
    unregistered sentinel was touched."""
    if TOUCHED:
        hooks = list(TOUCHED)
        TOUCHED.clear()
        raise AssertionError(f"decoding touched an unregistered class: {hooks}")
    seen = set()
    stack = [value]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        t = type(obj)
        if isinstance(obj, REGISTERED) and t in REGISTERED:
            if isinstance(obj, Point):
                stack += [obj.x, obj.y, obj.tags, obj.next]
            elif isinstance(obj, Pair):
                stack += list(obj)
            continue
        if t in _BUILT_IN or isinstance(obj, (np.ndarray, np.generic)) or _is_qwire_value(obj):
            if t in (list, tuple, set, frozenset):
                stack += list(obj)
            elif t is dict:
                stack += list(obj.keys()) + list(obj.values())
            elif t is np.ndarray and obj.dtype == object:
                stack += list(obj.ravel())
            continue
        if isinstance(obj, datetime.tzinfo):
            continue
        raise AssertionError(f"decoding built a {t.__module__}.{t.__qualname__}, which is not registered")


def seed_messages():
    """Valid messages that use every registered kind, with and without refs, plus near misses."""
    shared = Point(1.0, 2.0, ["a"])
    ring = Point(3.0)
    ring.next = Point(4.0, next=ring)
    values = [
        Point(1.5),
        Point(1.0, 2.0, [1, "x", (2, 3)]),
        Pair(Point(0.0), Colour.RED),
        [Colour.GREEN, Celsius(21.5), Pair(1, 2)],
        {"p": Point(-1.0, tags=[b"b", {1, 2}]), "c": Celsius(0)},
        (Pair((1,), frozenset({2})), np.arange(6, dtype=np.int8).reshape(2, 3)),
    ]
    out = [bytes(qwire.dumps(v, registry=REGISTRY)) for v in values]
    out.append(bytes(qwire.dumps([shared, shared, Pair(shared, shared)], registry=REGISTRY, refs=True)))
    out.append(bytes(qwire.dumps(ring, registry=REGISTRY, refs=True)))
    # A record for a class the decoder does not know (written by a registry that has it).
    other = qwire.Registry()
    other.register(Sentinel, name="Sentinel", encode=lambda s: 0, decode=lambda v: Sentinel())
    out.append(bytes(qwire.dumps([Sentinel.__new__(Sentinel), 2.0], registry=other)))
    TOUCHED.clear()
    return out
