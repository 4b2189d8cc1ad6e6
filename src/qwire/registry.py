"""Strict registration: the only classes qwire ever builds while decoding.

    >>> @dataclass
    ... class Trade:
    ...     sym: str
    ...     price: float
    >>> qwire.register(Trade)            # written and read by the stable name "Trade"
    >>> qwire.loads(qwire.dumps(Trade("AAPL", 1.5)))
    Trade(sym='AAPL', price=1.5)

A registered object travels as a record that carries the class's *stable name* (never a module
path) and its state (docs/FORMAT.md). Decoding looks the name up in a registry: an unknown name is
an `UnregisteredTypeError` before anything is constructed or imported. Nothing else is built:
no `__reduce__`, no `__setstate__`, no `eval`.

How a class's state is written comes from a **handler chain**, one handler per type family, asked
in order until one accepts the class: dataclasses, NamedTuples (typing.NamedTuple and
collections.namedtuple) and Enums are built in and register from their fields or members alone;
`Registry.add_handler` puts your own families (attrs classes, pydantic models, ...) in front;
`register(cls, encode=..., decode=...)` gives one class its own pair.

Thread safety: registries are copy-on-write. A registration builds new lookup tables under a
lock and publishes them with one assignment; encoders and decoders read whichever tables are
current, without locking, so registering while other threads encode or decode is safe (a message
already being written or read keeps the tables it started with).
"""
from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import threading
import uuid
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar

import numpy as np

from . import values as _values

__all__ = ["Registry", "Handler", "default_registry", "register"]

# Entry kinds; cython/refs.pxi mirrors these numbers (tests/test_registry.py checks they agree).
KIND_FIELDS = 1  # dataclass: created empty, then its fields set (so cycles through it can be rebuilt)
KIND_NAMEDTUPLE = 2  # a tuple: built from all its fields at once
KIND_ENUM = 3  # a member, by name (Flag: by value)
KIND_CUSTOM = 4  # encode(obj) -> value, decode(value) -> obj

_MAX_NAME_BYTES = 255

_T = TypeVar("_T")
_H = TypeVar("_H", bound="_HandlerLike")

_MISSING = object()

# A Flag enum caches every combination of its members that is asked for, for the life of the
# process: decoding may add at most this many per class (then the value is a DecodeError), so a
# sender cannot grow the receiver's memory one new combination at a time. Values with bits no
# member has are refused outright (SECURITY.md).
MAX_FLAG_COMBINATIONS = 4096

# Types qwire writes itself: registering them would make the same value travel two ways.
_NATIVE = (
    type(None), bool, int, float, str, bytes, list, dict, tuple, set, frozenset, bytearray, complex,
    decimal.Decimal, datetime.datetime, datetime.date, datetime.time, datetime.timedelta, uuid.UUID,
    np.ndarray, _values.Vector, _values.Dict, _values.Table, _values.KeyedTable, _values.DateTime,
)


class Entry:
    """One registered class: how its objects are written and rebuilt. Immutable once built."""

    __slots__ = (
        "cls", "name", "kind", "fields", "field_set", "defaults", "encode", "decode", "has_dict",
        "sym", "keys", "by_value", "flag_mask",
    )

    def __init__(self, cls: type, name: str, kind: int, *, fields: Iterable[str] = (),
                 defaults: dict[str, tuple[bool, Any]] | None = None, encode: Callable[[Any], Any] | None = None,
                 decode: Callable[[Any], Any] | None = None, by_value: bool = False) -> None:
        self.cls: Any = cls
        self.name = name
        self.kind = kind
        self.fields = tuple(fields)
        self.field_set = frozenset(self.fields)
        self.defaults = dict(defaults or {})  # field -> (is_factory, value)
        self.encode: Any = encode
        self.decode: Any = decode
        self.by_value = by_value
        # the bits a Flag's members have (any combination of them is a value the class accepts)
        self.flag_mask = 0
        if by_value:
            for member in cls.__members__.values():
                if isinstance(member.value, int):
                    self.flag_mask |= member.value
        self.has_dict = getattr(cls, "__dictoffset__", 0) != 0
        # Precomputed wire pieces (docs/FORMAT.md): the name as a q symbol atom, and the field
        # names as the symbol vector of the state dictionary's keys.
        raw = name.encode("utf-8")
        self.sym = b"\xf5" + raw + b"\x00"
        names = [f.encode("utf-8") for f in self.fields]
        self.keys = b"\x0b\x00" + len(names).to_bytes(4, "little") + b"".join(n + b"\x00" for n in names)

    def __repr__(self) -> str:
        kind = {1: "fields", 2: "namedtuple", 3: "enum", 4: "custom"}[self.kind]
        return f"<qwire registry entry {self.name!r}: {self.cls.__qualname__} ({kind})>"

    # ---- decoding (the Cython core calls these; the common dataclass case has a fast path there)

    def new(self) -> Any:
        """An empty instance to fill (dataclasses), built as pickle builds one: no __init__."""
        return self.cls.__new__(self.cls)

    def field_values(self, state: Any, strict: bool) -> list[Any]:
        """The reader's fields, in its order, from a decoded state dict (schema evolution: fields
        the writer lacked take their defaults, fields the reader lacks are ignored)."""
        from .errors import DecodeError

        if type(state) is not dict:
            raise DecodeError(f"the state of a registered {self.name!r} must be a dict, not {type(state).__name__}")
        if strict and state.keys() != self.field_set:
            missing = [f for f in self.fields if f not in state]
            extra = [k for k in state if k not in self.field_set]
            parts = []
            if missing:
                parts.append(f"missing {', '.join(map(repr, missing))}")
            if extra:
                parts.append(f"unknown {', '.join(map(repr, extra))}")
            raise DecodeError(f"the fields of {self.name!r} differ from this reader's (strict_fields=True): {'; '.join(parts)}")
        out = []
        for f in self.fields:
            v = state.get(f, _MISSING)
            if v is _MISSING:
                d = self.defaults.get(f)
                if d is None:
                    raise DecodeError(f"a registered {self.name!r} arrived without field {f!r}, which has no default")
                v = d[1]() if d[0] else d[1]
            out.append(v)
        return out

    def fill(self, obj: Any, state: Any, strict: bool) -> Any:
        """Set a dataclass instance's fields from its decoded state."""
        vals = self.field_values(state, strict)
        if self.has_dict:
            obj.__dict__.update(zip(self.fields, vals))
        else:
            setter = object.__setattr__
            for f, v in zip(self.fields, vals):
                setter(obj, f, v)
        return obj

    def build(self, state: Any, strict: bool) -> Any:
        """The object for a decoded state (every kind but dataclasses, which are filled)."""
        from .errors import DecodeError

        kind = self.kind
        if kind == KIND_NAMEDTUPLE:
            return tuple.__new__(self.cls, self.field_values(state, strict))
        if kind == KIND_ENUM:
            if self.by_value:
                return self._flag(state)
            member = self.cls.__members__.get(state) if type(state) is str else None
            if member is None:
                if type(state) is not str:
                    raise DecodeError(f"a registered {self.name!r} member must be named by a symbol, not a {type(state).__name__}")
                raise DecodeError(f"{self.name!r} has no member named {state[:100]!r}{'...' if len(state) > 100 else ''}")
            return member
        if kind == KIND_FIELDS:
            return self.fill(self.new(), state, strict)
        try:
            return self.decode(state)
        except (DecodeError, MemoryError):
            raise
        except Exception as e:
            raise DecodeError(f"the decode function registered for {self.name!r} failed: {_describe(e)}") from e

    def _flag(self, state: Any) -> Any:
        """The Flag member or combination of members of value `state` (see MAX_FLAG_COMBINATIONS)."""
        from .errors import DecodeError

        if type(state) is not int:
            raise DecodeError(f"the value of a registered {self.name!r} flag must be an int, not {type(state).__name__}")
        known = self.cls._value2member_map_
        member = known.get(state)
        if member is not None:
            return member
        if state < 0 or state & ~self.flag_mask:
            raise DecodeError(f"{self.name!r} has no member or combination of members of value {_short_int(state)}")
        if len(known) - len(self.cls.__members__) >= MAX_FLAG_COMBINATIONS:
            raise DecodeError(f"{self.name!r}: more than MAX_FLAG_COMBINATIONS={MAX_FLAG_COMBINATIONS} combinations of its "
                              f"members were decoded (each one is kept by the enum for the life of the process)")
        try:
            return self.cls(state)
        except Exception as e:
            raise DecodeError(f"{self.name!r} has no member of value {_short_int(state)} ({_describe(e)})") from e

    # ---- encoding (the core writes dataclass and NamedTuple fields itself)

    def state(self, obj: Any) -> Any:
        """The value written for obj (enums and custom classes)."""
        if self.kind == KIND_ENUM:
            return obj.value if self.by_value else obj.name
        return self.encode(obj)


def _short_int(v: int) -> str:
    """An int for an error message: its digits, or for one too long to show (CPython refuses to
    format more than 4300 digits) its size."""
    if v.bit_length() <= 256:
        return str(v)
    return f"<an int of {v.bit_length()} bits>"


def _describe(e: BaseException) -> str:
    """An exception for an error message (whose own text may fail to format, or be long)."""
    try:
        text = f"{type(e).__name__}: {e}"
    except Exception:
        text = type(e).__name__
    return text if len(text) <= 300 else text[:300] + "..."


class Handler:
    """A type family in the handler chain (subclass it, or duck-type the two methods).

    `handles(cls)` says whether the family includes `cls`; `codec(cls)` returns the
    `(encode, decode)` pair for it: `encode(obj)` returns any value qwire can write, `decode(value)`
    rebuilds the object.
    """

    def handles(self, cls: type) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def codec(self, cls: type) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:  # pragma: no cover - interface
        raise NotImplementedError


class _HandlerLike(Protocol):
    """What `Registry.add_handler` accepts: a `Handler`, or any object with the same two methods."""

    def handles(self, cls: type, /) -> bool: ...

    def codec(self, cls: type, /) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]: ...


class _Dataclasses:
    """Dataclasses: their fields (dataclasses.fields, init=False ones included), in order."""

    def handles(self, cls: type) -> bool:
        return dataclasses.is_dataclass(cls)

    def entry(self, cls: Any, name: str) -> Entry:
        defaults: dict[str, tuple[bool, Any]] = {}
        names = []
        for f in dataclasses.fields(cls):
            names.append(f.name)
            if f.default is not dataclasses.MISSING:
                defaults[f.name] = (False, f.default)
            elif f.default_factory is not dataclasses.MISSING:
                defaults[f.name] = (True, f.default_factory)
        return Entry(cls, name, KIND_FIELDS, fields=names, defaults=defaults)


class _NamedTuples:
    """typing.NamedTuple and collections.namedtuple classes: their _fields and _field_defaults."""

    def handles(self, cls: type) -> bool:
        return issubclass(cls, tuple) and isinstance(getattr(cls, "_fields", None), tuple) and hasattr(cls, "_make")

    def entry(self, cls: Any, name: str) -> Entry:
        defaults = {k: (False, v) for k, v in getattr(cls, "_field_defaults", {}).items()}
        return Entry(cls, name, KIND_NAMEDTUPLE, fields=cls._fields, defaults=defaults)


class _Enums:
    """Enums by member name; Flag enums by value (a combination of flags has no single name)."""

    def handles(self, cls: type) -> bool:
        return issubclass(cls, enum.Enum)

    def entry(self, cls: type, name: str) -> Entry:
        return Entry(cls, name, KIND_ENUM, by_value=issubclass(cls, enum.Flag))


_BUILTIN_HANDLERS = (_Dataclasses(), _NamedTuples(), _Enums())


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise TypeError(f"a registered name must be a non-empty str, not {name!r}")
    if "\0" in name:
        raise ValueError(f"a registered name cannot contain NUL: {name!r}")
    try:
        raw = name.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"a registered name must be valid Unicode text: {name!r}") from None
    if len(raw) > _MAX_NAME_BYTES:
        raise ValueError(f"a registered name is at most {_MAX_NAME_BYTES} bytes of UTF-8, {name[:40]!r}... has {len(raw)}")
    return name


class Registry:
    """Classes that qwire may write and rebuild, each under a stable name.

    `register(cls, name=None, *, encode=None, decode=None)`; `add_handler(handler)`; lookups by
    class (`cls in registry`, `registry.name_of(cls)`) or by name (`registry.class_of(name)`).
    Registering a class or a name twice raises ValueError; there is no unregistering, so a name
    means the same class for the registry's whole life.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Published tables: replaced on every registration, never mutated (readers take no lock).
        self._by_type: dict[type, Entry] = {}
        self._by_name: dict[str, Entry] = {}
        self._handlers: tuple[Any, ...] = _BUILTIN_HANDLERS
        # The Cython core's compiled copy of the tables (cython/refs.pxi): rebuilt by the core
        # whenever it finds that _by_type has been replaced.
        self._core_cache: Any = None
        # dumps/loads with registry=this: their Encoders and Decoders, made once (cython/api.pxi).
        self._codec_cache: dict[Any, dict[Any, Any]] = {}

    def register(self, cls: type[_T], name: str | None = None, *, encode: Callable[[_T], Any] | None = None,
                 decode: Callable[[Any], _T] | None = None) -> type[_T]:
        """Register `cls` under `name` (default: `cls.__qualname__`, without the module) and return
        `cls`, so that it also works as a class decorator.

        Dataclasses, NamedTuples and Enums need nothing more (or a handler added with
        `add_handler` covers the class's family); any other class passes `encode` (object -> a
        value qwire can write) and `decode` (that value -> object).
        """
        if not isinstance(cls, type):
            raise TypeError(f"register() takes a class, not {type(cls).__name__} {cls!r}")
        if cls in _NATIVE or cls is object:
            raise TypeError(f"qwire writes {cls.__qualname__} objects itself; only other classes are registered")
        if name is None:
            name = cls.__qualname__
        _check_name(name)
        if (encode is None) != (decode is None):
            raise TypeError("register() takes encode= and decode= together (or neither)")
        if encode is not None:
            if not callable(encode) or not callable(decode):
                raise TypeError("encode and decode must be callables")
            entry = Entry(cls, name, KIND_CUSTOM, encode=encode, decode=decode)
        else:
            entry = self._entry_from_handlers(cls, name)
        with self._lock:
            if cls in self._by_type:
                raise ValueError(f"{cls.__qualname__} is already registered, as {self._by_type[cls].name!r}")
            if name in self._by_name:
                raise ValueError(f"the name {name!r} is already registered, for {self._by_name[name].cls.__qualname__}")
            by_type = dict(self._by_type)
            by_name = dict(self._by_name)
            by_type[cls] = entry
            by_name[name] = entry
            self._by_name = by_name  # names first: a reader never finds a type it cannot decode
            self._by_type = by_type
        return cls

    def _entry_from_handlers(self, cls: type, name: str) -> Entry:
        for handler in self._handlers:
            if handler.handles(cls):
                if hasattr(handler, "entry"):
                    return handler.entry(cls, name)
                encode, decode = handler.codec(cls)
                return Entry(cls, name, KIND_CUSTOM, encode=encode, decode=decode)
        raise TypeError(
            f"{cls.__module__}.{cls.__qualname__} is not a dataclass, NamedTuple or Enum: pass encode= and decode= "
            "(or add a handler for its family with Registry.add_handler)"
        )

    def add_handler(self, handler: _H) -> _H:
        """Put a type-family handler (see `Handler`) at the front of the chain that `register`
        consults for classes registered without encode/decode. Classes registered earlier keep
        the handler they got."""
        if not (callable(getattr(handler, "handles", None)) and callable(getattr(handler, "codec", None))):
            raise TypeError("a handler has handles(cls) and codec(cls) methods")
        with self._lock:
            self._handlers = (handler,) + tuple(self._handlers)
        return handler

    # ---- lookups -----------------------------------------------------------------------------

    def __contains__(self, cls_or_name: object) -> bool:
        if isinstance(cls_or_name, str):
            return cls_or_name in self._by_name
        return cls_or_name in self._by_type

    def __len__(self) -> int:
        return len(self._by_name)

    def name_of(self, cls: type) -> str:
        """The name `cls` is registered under (KeyError if it is not)."""
        return self._by_type[cls].name

    def class_of(self, name: str) -> type:
        """The class registered under `name` (KeyError if none)."""
        return self._by_name[name].cls

    def names(self) -> list[str]:
        """The registered names, in registration order."""
        return list(self._by_name)

    def __repr__(self) -> str:
        default = " (default)" if self is default_registry else ""
        return f"<qwire.Registry{default}: {len(self._by_name)} classes>"

    def __reduce__(self) -> str | tuple[Any, ...]:
        if self is default_registry:
            return "default_registry"
        return (_rebuild_registry, (list(self._by_name.values()), self._handlers))


def _rebuild_registry(entries: list[Entry], handlers: tuple[Any, ...]) -> Registry:
    r = Registry()
    r._handlers = handlers
    for e in entries:
        r._by_type[e.cls] = e
        r._by_name[e.name] = e
    return r


default_registry = Registry()
"""The registry that dumps, loads, Encoder and Decoder use when given no registry=."""


def register(cls: type[_T], name: str | None = None, *, encode: Callable[[_T], Any] | None = None,
             decode: Callable[[Any], _T] | None = None) -> type[_T]:
    """`default_registry.register(...)`: see Registry.register."""
    return default_registry.register(cls, name, encode=encode, decode=decode)
