"""q function values (types 100..112): lambdas, primitives, iterators, projections, compositions
and derived functions, as inert data.

Decoding a q function gives one of these; encoding one gives q's bytes back. Nothing here is ever
evaluated: a Lambda is its source text, a primitive its code. Instances are immutable and hashable
when everything in them is. (`qwire.Lambda` and the others are these same classes.)
"""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

__all__ = [
    "Function",
    "Lambda",
    "UnaryPrimitive",
    "BinaryPrimitive",
    "Iterator",
    "Projection",
    "Composition",
    "Derived",
    "ELIDED",
]


# ---- function values (types 100..111): inert data, never evaluated -------------------------------

# Code tables (spec 3.5). Version-dependent in q; unknown codes are carried through unchanged.
_BINARY = list(":+-*%&|^=<>$,#_~!?@.") + "0: 1: 2: in within like bin ss insert wsum wavg div xexp setenv binr cov cor".split()
_UNARY = ["::"] + [c + ":" for c in "+-*%&|^=<>$,#_~!?@."] + "0:: 1:: 2:: avg last sum prd min max exit getenv abs sqrt log exp sin asin cos acos tan atan enlist var".split()
_ITERATORS = ["'", "/", "\\", "':", "/:", "\\:"]


class Function:
    """Base class of q function values. Instances are immutable data, hashable when everything in
    them is (a projection of a list argument is not, as a tuple holding a list is not)."""

    __slots__ = ("_hash",)  # computed once, when first asked for; None: unhashable
    _fields: ClassVar[tuple[str, ...]] = ()

    def _key(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f) for f in self._fields)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return _values.values_equal(self, other)

    def __hash__(self) -> int:
        try:
            h = self._hash
        except AttributeError:
            _cache_hashes(self)
            h = self._hash
        if h is None:
            raise TypeError(f"unhashable {type(self).__name__}: it holds an unhashable value")
        return h  # type: ignore[no-any-return]

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), self._key())

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def _set(self, **kw: Any) -> None:
        for k, v in kw.items():
            object.__setattr__(self, k, v)


def _nan_as_one(v: Any) -> Any:
    """`v` for hashing: NaN (a fresh object in every decoding, and equal to every NaN by
    values_equal) as one marker."""
    if (type(v) is float or isinstance(v, np.floating)) and v != v:
        return _NAN
    return v


_NAN = ("qwire", "NaN")


def _cache_hashes(root: Function) -> None:
    """Compute and keep the hash of `root` and of every function value inside it, innermost first,
    with a stack of our own: each hash then takes its parts' kept hashes, so hashing a function
    nested hundreds of levels deep (a set of them from the wire) needs no deep Python recursion."""
    seen: set[int] = set()
    pending: list[tuple[Any, bool]] = [(root, False)]
    while pending:
        x, parts_done = pending.pop()
        if parts_done:  # everything inside x has its hash: x's own takes them
            key = tuple(tuple(map(_nan_as_one, v)) if type(v) is tuple else _nan_as_one(v) for v in x._key())
            try:
                h: int | None = hash((type(x), key))
            except TypeError:
                h = None
            object.__setattr__(x, "_hash", h)
        elif id(x) not in seen and (type(x) is tuple or (isinstance(x, Function) and not hasattr(x, "_hash"))):
            seen.add(id(x))
            if type(x) is tuple:
                pending.extend((v, False) for v in x)
            else:
                pending.append((x, True))
                pending.extend((v, False) for v in x._key())


class Lambda(Function):
    """A q lambda (type 100): its source text and the context it was defined in ('' is root)."""

    __slots__ = ("source", "context")
    _fields = ("source", "context")

    source: str
    context: str

    def __init__(self, source: str, context: str = "") -> None:
        self._set(source=str(source), context=str(context))

    def __repr__(self) -> str:
        c = f", context={self.context!r}" if self.context else ""
        return f"Lambda({self.source!r}{c})"


class _CodedFunction(Function):
    __slots__ = ("code",)
    _fields = ("code",)
    _names: ClassVar[list[str]] = []

    code: int

    def __init__(self, code: int) -> None:
        code = int(code)
        if not 0 <= code <= 255:
            raise ValueError(f"{type(self).__name__} code must be 0..255, got {code}")
        self._set(code=code)

    @property
    def name(self) -> str | None:
        """q's spelling of the primitive, when the code table knows it."""
        return self._names[self.code] if self.code < len(self._names) else None

    def __repr__(self) -> str:
        n = f"  # {self.name}" if self.name else ""
        return f"{type(self).__name__}({self.code}){n}"


class UnaryPrimitive(_CodedFunction):
    """A unary primitive (type 101), e.g. `not` = UnaryPrimitive(15). Code 0 is `::`, which decodes
    as None; code 255 is the elided argument of a projection (`qwire.ELIDED`)."""

    __slots__ = ()
    _names = _UNARY


class BinaryPrimitive(_CodedFunction):
    """A binary operator (type 102), e.g. `+` = BinaryPrimitive(1)."""

    __slots__ = ()
    _names = _BINARY


class Iterator(_CodedFunction):
    """An iterator (type 103), e.g. `/` = Iterator(1)."""

    __slots__ = ()
    _names = _ITERATORS


class _Items(Function):
    """A function value that is its items, in order (a projection, a composition)."""

    __slots__ = ("items",)
    _fields = ("items",)

    items: tuple[Any, ...]

    def __init__(self, *items: Any) -> None:
        self._set(items=tuple(items))

    def __repr__(self) -> str:
        return f"{type(self).__name__}{self.items!r}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), self.items)


class Projection(_Items):
    """A projection (type 104): the function and its arguments, `ELIDED` where one is left out."""

    __slots__ = ()


class Composition(_Items):
    """A composition (type 105) of the given functions."""

    __slots__ = ()


class Derived(Function):
    """A function derived by an iterator (types 106..111): `kind` is the iterator ("'", '/', '\\',
    "':", '/:', '\\:') and `func` the function it applies to, e.g. `sums` = Derived('\\', BinaryPrimitive(1))."""

    __slots__ = ("kind", "func")
    _fields = ("kind", "func")

    kind: str
    func: Any

    def __init__(self, kind: str, func: Any) -> None:
        if kind not in _ITERATORS:
            raise ValueError(f"Derived kind must be one of {_ITERATORS}, got {kind!r}")
        self._set(kind=kind, func=func)

    @property
    def type_code(self) -> int:
        return 106 + _ITERATORS.index(self.kind)

    def __repr__(self) -> str:
        return f"Derived({self.kind!r}, {self.func!r})"


ELIDED = UnaryPrimitive(0xFF)


# Last, and as a module: values.py imports this module at its top, and Function.__eq__ needs its
# values_equal; whichever of the two is imported first, the other finds what it needs defined.
from . import values as _values  # noqa: E402
