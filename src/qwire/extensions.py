"""qwire's extension records: the Python values that no q type carries (docs/FORMAT.md).

A record is `70 <code> <payload>`: q's type byte 112, a code byte, then one ordinary q item, the
payload. The core writes one only where a value needs it (a pure-q value produces kdb+'s own
bytes), and never with `q_compatible=True`. This module is the handler the core calls for the
codes below 0x20:

* `Extensions.encode(obj)` -> `(code, payload)`, `(None, substitute)` (write `substitute` instead:
  on-disk data copied in) or None (refused);
* `Extensions.refuse(obj, reason)` raises the error for an object nothing can write
  (ForeignObjectError, OnDiskObjectError, or EncodeError naming the object);
* `Extensions.decode(code, payload)` rebuilds the value. It only ever builds the built-in and NumPy
  types listed here: no import, no eval, no class looked up by name.

Codes 0x20..0x2F (registered objects, references) are read and written by the core itself
(cython/refs.pxi), from the registry (qwire/registry.py); 0x30..0x3F are the core's out-of-band
buffers.
"""
from __future__ import annotations

import collections.abc
import datetime as _dt
import decimal
import enum
import functools
import io
import mmap
import operator
import re
import reprlib
import socket
import tempfile
import threading
import types
from pickle import PickleBuffer

import numpy as np

from .errors import DecodeError, EncodeError, ForeignObjectError, OnDiskObjectError
from ._integrations import Record as _IntegrationRecord
from .registry import default_registry
from .values import Dict, Vector

__all__ = ["Code", "Extensions", "FORMAT_VERSION"]

FORMAT_VERSION = 1
"""Version of the record layouts below (docs/FORMAT.md). Every code so far is version 1."""


class Code(enum.IntEnum):
    """Extension record codes (docs/FORMAT.md has each payload's layout)."""

    TUPLE = 0x01
    SET = 0x02
    FROZENSET = 0x03
    BYTEARRAY = 0x04
    COMPLEX = 0x05
    DECIMAL = 0x06
    BIGINT = 0x07
    DATETIME = 0x08
    TIME = 0x09
    STR = 0x0A
    NDARRAY = 0x10
    OBJECT_NDARRAY = 0x11
    NUMPY_SCALAR = 0x12
    # the optional integrations (qwire/_integrations.py; docs/TABLES.md)
    PANDAS_FRAME = 0x18
    PANDAS_SERIES = 0x19
    PANDAS_INDEX = 0x1A
    PANDAS_SCALAR = 0x1B
    ARROW = 0x1C
    POLARS = 0x1D
    # read and written by the core (cython/refs.pxi)
    REGISTERED = 0x20
    REF = 0x21
    DEFINE = 0x22
    DEFINE_IMMUTABLE = 0x23
    # 0x30..0x3F: out-of-band buffers (the core)


# Codes whose payload holds the user's own objects (the payload container itself is not one).
CONTAINER_CODES = frozenset({Code.TUPLE, Code.SET, Code.FROZENSET, Code.OBJECT_NDARRAY, Code.PANDAS_FRAME,
                             Code.PANDAS_SERIES, Code.PANDAS_INDEX, Code.PANDAS_SCALAR, Code.ARROW, Code.POLARS})

# Codes whose value is built over its payload (the columns and buffers the decoder has already
# charged to the memory budget): the decoder charges the value's own object, not getsizeof, which
# for a DataFrame is pandas' deep memory_usage (a walk of every object cell).
PAYLOAD_BACKED_CODES = frozenset({Code.PANDAS_FRAME, Code.PANDAS_SERIES, Code.PANDAS_INDEX, Code.ARROW, Code.POLARS})


# ---- encoding ------------------------------------------------------------------------------------

_EPOCH = _dt.datetime(1, 1, 1)
_US = _dt.timedelta(microseconds=1)


def _tz_name(tz, offset):
    """'' when the decoder's timezone(offset) reproduces tz's name, else the name to keep."""
    if type(tz) is _dt.timezone:
        name = tz.tzname(None)
        return "" if name == _dt.timezone(offset).tzname(None) else name
    return ""


def _enc_datetime(obj):
    offset = obj.utcoffset()
    if offset is None:
        return None  # a tzinfo that gives no offset: as naive as q's own timestamps, but not q-sized
    us = (obj.replace(tzinfo=None) - _EPOCH) // _US
    return Code.DATETIME, [us, offset // _US, bool(obj.fold), _tz_name(obj.tzinfo, offset)]


def _enc_time(obj):
    tz = obj.tzinfo
    offset = obj.utcoffset() if tz is not None else None
    if tz is not None and offset is None:
        raise EncodeError(f"{_short(obj)}: its tzinfo gives no fixed UTC offset for a time of day, so it cannot be written "
                          "(use a datetime, or a datetime.timezone)", _dt.time)
    us = ((obj.hour * 60 + obj.minute) * 60 + obj.second) * 1_000_000 + obj.microsecond
    return Code.TIME, [us, None if offset is None else offset // _US, bool(obj.fold),
                       "" if offset is None else _tz_name(tz, offset)]


def _enc_bigint(obj):
    raw = obj.to_bytes((obj.bit_length() + 8) // 8, "little", signed=True)
    return Code.BIGINT, PickleBuffer(raw)


def _shape(arr):
    return Vector(np.array(arr.shape, dtype=np.int64), "long")


def _order(arr):
    return "F" if arr.ndim > 1 and arr.flags.f_contiguous and not arr.flags.c_contiguous else "C"


def _enc_ndarray(arr):
    dt = arr.dtype
    if dt.fields is not None or dt.subdtype is not None:
        raise EncodeError(f"NumPy structured dtypes are not supported ({dt}); send each field as its own array", np.ndarray)
    order = _order(arr)
    if dt.kind == "O":
        # Iterating the flat view yields the objects themselves (tolist() would nest lists).
        return Code.OBJECT_NDARRAY, [_shape(arr), order, *arr.reshape(-1, order=order)]
    if dt.itemsize == 0:
        raise EncodeError(f"NumPy dtype {dt} has no size; cannot write its array", np.ndarray)
    flat = arr.reshape(-1, order=order)
    if not flat.flags.c_contiguous:
        flat = np.ascontiguousarray(flat)
    return Code.NDARRAY, [dt.str, _shape(arr), order, PickleBuffer(flat.view(np.uint8))]


def _enc_scalar(obj):
    dt = obj.dtype
    if dt.fields is not None or dt.subdtype is not None or dt.kind == "O" or dt.itemsize == 0:
        return None
    return Code.NUMPY_SCALAR, [dt.str, PickleBuffer(np.array(obj).reshape(1).view(np.uint8))]


_ENCODERS = {
    tuple: lambda o: (Code.TUPLE, list(o)),
    set: lambda o: (Code.SET, list(o)),
    frozenset: lambda o: (Code.FROZENSET, list(o)),
    bytearray: lambda o: (Code.BYTEARRAY, PickleBuffer(o)),
    complex: lambda o: (Code.COMPLEX, np.array([o.real, o.imag], dtype=np.float64)),
    decimal.Decimal: lambda o: (Code.DECIMAL, str(o).encode("ascii")),
    int: _enc_bigint,
    _dt.datetime: _enc_datetime,
    _dt.time: _enc_time,
    str: lambda o: (Code.STR, o.encode("utf-8", "surrogatepass")),
    np.ndarray: _enc_ndarray,
}


# ---- decoding ------------------------------------------------------------------------------------

def _bad(code, why):
    return DecodeError(f"malformed {Code(code).name.lower()} extension record: {why}")


def _list_payload(code, payload):
    if type(payload) is not list:
        raise _bad(code, f"the payload must be a general list, not {type(payload).__name__}")
    return payload


def _bytes_payload(code, payload):
    """A byte vector (uint8 array, possibly a view into the message) or a char vector (bytes)."""
    if type(payload) is bytes:
        return payload
    if type(payload) is np.ndarray and payload.dtype == np.uint8 and payload.ndim == 1:
        return payload
    raise _bad(code, f"the payload must be a byte vector, not {type(payload).__name__}")


# One empty frozenset for every record of one: immutable, so sharing it is safe, and a message of
# 8-byte empty-frozenset records must not cost a 216-byte set object each (issue 6: peak memory
# per input byte). CPython has no such singleton since 3.10.
_EMPTY_FROZENSET = frozenset()


def _dec_set(code, payload):
    items = _list_payload(code, payload)
    if not items and code == Code.FROZENSET:
        return _EMPTY_FROZENSET
    try:
        return set(items) if code == Code.SET else frozenset(items)
    except TypeError as e:
        raise _bad(code, f"an item is unhashable ({e})") from None


def _dec_complex(code, payload):
    if type(payload) is not np.ndarray or payload.dtype != np.float64 or payload.shape != (2,):
        raise _bad(code, "the payload must be a float vector of 2 items")
    return complex(float(payload[0]), float(payload[1]))


def _dec_decimal(code, payload):
    if type(payload) is not bytes:
        raise _bad(code, "the payload must be a char vector")
    try:
        text = payload.decode("ascii")
        value = decimal.Decimal(text)
    except (UnicodeDecodeError, decimal.InvalidOperation):
        raise _bad(code, f"{payload[:40]!r} is not a decimal number") from None
    if str(value) != text:
        raise _bad(code, f"{payload[:40]!r} is not in canonical form")
    return value


def _dec_bigint(code, payload):
    return int.from_bytes(_bytes_payload(code, payload), "little", signed=True)


def _int(code, v, what):
    if type(v) is not int:
        raise _bad(code, f"{what} must be a long, not {type(v).__name__}")
    return v


def _tz(code, offset_us, name):
    if type(name) is not str:
        raise _bad(code, "the zone name must be a symbol")
    try:
        offset = _dt.timedelta(microseconds=offset_us)
        return _dt.timezone(offset, name) if name else _dt.timezone(offset)
    except (ValueError, OverflowError) as e:
        raise _bad(code, f"bad UTC offset: {e}") from None


def _dec_datetime(code, payload):
    items = _list_payload(code, payload)
    if len(items) != 4 or type(items[2]) is not bool:
        raise _bad(code, "the payload is (microseconds; UTC offset; fold; zone name)")
    us = _int(code, items[0], "the local time")
    tz = _tz(code, _int(code, items[1], "the UTC offset"), items[3])
    try:
        return (_EPOCH + _dt.timedelta(microseconds=us)).replace(tzinfo=tz, fold=int(items[2]))
    except OverflowError:
        raise _bad(code, f"{us} microseconds is outside datetime's range") from None


def _dec_time(code, payload):
    items = _list_payload(code, payload)
    if len(items) != 4 or type(items[2]) is not bool:
        raise _bad(code, "the payload is (microseconds; UTC offset or ::; fold; zone name)")
    us = _int(code, items[0], "the time of day")
    if not 0 <= us < 86_400_000_000:
        raise _bad(code, f"{us} microseconds is not a time of day")
    tz = None if items[1] is None else _tz(code, _int(code, items[1], "the UTC offset"), items[3])
    s, us = divmod(us, 1_000_000)
    return _dt.time(s // 3600, s // 60 % 60, s % 60, us, tz, fold=int(items[2]))


def _dec_str(code, payload):
    if type(payload) is not bytes:
        raise _bad(code, "the payload must be a char vector")
    try:
        return payload.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError as e:
        raise _bad(code, f"not UTF-8: {e}") from None


MAX_NDIM = 64  # dimensions of an N-d array record: NumPy's own limit (NPY_MAXDIMS)

# dtype strings as NumPy writes them (dtype.str): byte order, kind, item size, datetime unit.
_DTYPE_RE = re.compile(r"[<>|](b1|[iu][1248]|f(2|4|8|10|12|16)|c(8|16|20|24|32)|[SUV][1-9][0-9]{0,9}"
                       r"|[mM]8(\[([1-9][0-9]{0,9})?(Y|M|W|D|h|m|s|ms|us|ns|ps|fs|as)\])?)")


def _dtype(code, text):
    if type(text) is not str or not _DTYPE_RE.fullmatch(text):
        raise _bad(code, f"{text!r} is not a dtype qwire writes")
    try:
        dt = np.dtype(text)
    except TypeError as e:
        raise _bad(code, f"dtype {text!r}: {e}") from None
    if dt.str != text:
        raise _bad(code, f"dtype {text!r} reads back as {dt.str!r}")
    return dt


def _shape_and_order(code, shape, order):
    if type(shape) is not np.ndarray or shape.dtype != np.int64 or shape.ndim != 1:
        raise _bad(code, "the shape must be a long vector")
    dims = shape.tolist()
    if len(dims) > MAX_NDIM or any(d < 0 for d in dims):
        raise _bad(code, f"bad shape {tuple(dims)}")
    if type(order) is not str or order not in ("C", "F"):
        raise _bad(code, f"the order must be `C or `F, not {order!r}")
    size = 1
    for d in dims:
        size *= d
    return tuple(dims), order, size


def _dec_ndarray(code, payload):
    items = _list_payload(code, payload)
    if len(items) != 4:
        raise _bad(code, "the payload is (dtype; shape; order; data)")
    dt = _dtype(code, items[0])
    shape, order, size = _shape_and_order(code, items[1], items[2])
    data = items[3]
    if type(data) is not np.ndarray or data.dtype != np.uint8 or data.ndim != 1:
        raise _bad(code, "the data must be a byte vector")
    if data.shape[0] != size * dt.itemsize:
        raise _bad(code, f"{data.shape[0]} data bytes for {size} items of {dt.itemsize}")
    # A view of the message's bytes (zero-copy), read-only like every decoded vector.
    return data.view(dt).reshape(shape, order=order)


def _dec_object_ndarray(code, payload):
    items = _list_payload(code, payload)
    if len(items) < 2:
        raise _bad(code, "the payload is (shape; order; items...)")
    shape, order, size = _shape_and_order(code, items[0], items[1])
    if len(items) - 2 != size:
        raise _bad(code, f"{len(items) - 2} items for shape {shape}")
    out = np.empty(size, dtype=object)
    for i in range(size):
        out[i] = items[i + 2]
    return out.reshape(shape, order=order)


def _dec_scalar(code, payload):
    items = _list_payload(code, payload)
    if len(items) != 2:
        raise _bad(code, "the payload is (dtype; data)")
    dt = _dtype(code, items[0])
    data = items[1]
    if type(data) is not np.ndarray or data.dtype != np.uint8 or data.shape != (dt.itemsize,):
        raise _bad(code, f"the data must be a byte vector of {dt.itemsize}")
    return data.view(dt)[0]


_DECODERS = {
    Code.TUPLE: lambda c, p: tuple(_list_payload(c, p)),
    Code.SET: _dec_set,
    Code.FROZENSET: _dec_set,
    Code.BYTEARRAY: lambda c, p: bytearray(_bytes_payload(c, p)),
    Code.COMPLEX: _dec_complex,
    Code.DECIMAL: _dec_decimal,
    Code.BIGINT: _dec_bigint,
    Code.DATETIME: _dec_datetime,
    Code.TIME: _dec_time,
    Code.STR: _dec_str,
    Code.NDARRAY: _dec_ndarray,
    Code.OBJECT_NDARRAY: _dec_object_ndarray,
    Code.NUMPY_SCALAR: _dec_scalar,
}


def _dec_integration(code, payload):
    from ._integrations import decode

    return decode(code, payload)


_DECODERS.update(dict.fromkeys([Code.PANDAS_FRAME, Code.PANDAS_SERIES, Code.PANDAS_INDEX, Code.PANDAS_SCALAR,
                                Code.ARROW, Code.POLARS], _dec_integration))

HANDLED_CODES = frozenset(_DECODERS)


# ---- on-disk objects -------------------------------------------------------------------------------

def mapped_base(obj):
    """The mmap.mmap or numpy.memmap that obj's data lives in (following array bases and
    memoryviews), or None."""
    for _ in range(64):
        if obj is None:
            return None
        if type(obj) is mmap.mmap or isinstance(obj, (mmap.mmap, np.memmap)):
            return obj
        if isinstance(obj, np.ndarray):
            obj = obj.base
        elif type(obj) is memoryview:
            obj = obj.obj
        else:
            return None
    return None


_FILE_WRAPPERS = (tempfile._TemporaryFileWrapper,) if hasattr(tempfile, "_TemporaryFileWrapper") else ()


def _open_file(obj):
    """True for an open file object backed by a file descriptor."""
    if isinstance(obj, _FILE_WRAPPERS):
        obj = obj.file
    if not isinstance(obj, io.IOBase) or obj.closed:
        return False
    try:
        obj.fileno()
    except (OSError, ValueError, io.UnsupportedOperation):
        return False
    return True


def _on_disk(obj):
    return isinstance(obj, (np.memmap, mmap.mmap)) or mapped_base(obj) is not None or _open_file(obj)


def _copy_in(obj):
    """allow_on_disk=True: the value written in place of an on-disk object."""
    if isinstance(obj, np.ndarray):
        return np.array(obj, order="K", subok=False)
    if isinstance(obj, mmap.mmap):
        return bytes(obj)
    if type(obj) is memoryview:
        return obj.tobytes()
    f = obj.file if isinstance(obj, _FILE_WRAPPERS) else obj
    if not f.seekable():
        raise OnDiskObjectError(f"Unable to serialize {_qualname(type(obj))} objects: this file cannot be read from the "
                                "start (not seekable); read it yourself and send the data", type(obj))
    if f.writable():
        f.flush()
    pos = f.tell()
    try:
        f.seek(0)
        return f.read()
    finally:
        f.seek(pos)


# ---- refusal ------------------------------------------------------------------------------------

def _qualname(t):
    mod = getattr(t, "__module__", None)
    name = getattr(t, "__qualname__", t.__name__)
    return name if mod in (None, "builtins") else f"{mod}.{name}"


_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxlevel = 3
_SHORT_REPR.maxstring = _SHORT_REPR.maxother = 60


def _short(obj, limit=60):
    """A repr for an error message: bounded in length and in the work spent on containers (a value
    with shared structure has an exponentially long repr), and never raising."""
    try:
        if type(obj) is int and obj.bit_length() > 256:   # CPython refuses str() past 4300 digits
            text = f"<int of {obj.bit_length()} bits>"
        else:
            text = _SHORT_REPR.repr(obj)
    except Exception:  # noqa: BLE001 - a broken __repr__ must not hide the real error
        text = f"<{type(obj).__name__} object>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


_CODE_TYPES = (
    types.FunctionType, types.BuiltinFunctionType, types.MethodType, types.MethodWrapperType,
    types.WrapperDescriptorType, types.MethodDescriptorType, types.ClassMethodDescriptorType,
    types.CodeType, types.FrameType, types.TracebackType, functools.partial, staticmethod, classmethod,
    property, operator.itemgetter, operator.attrgetter, operator.methodcaller,
)
_RUNNING_TYPES = (types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType)
_LOCK_TYPES = tuple({
    type(threading.Lock()), type(threading.RLock()), threading.Condition, threading.Semaphore,
    threading.Event, threading.Barrier, threading.Thread,
})
_BUILTIN_BASES = (bool, int, float, complex, str, bytes, bytearray, list, tuple, dict, set, frozenset)


def foreign_error(obj):
    """The ForeignObjectError for an object qwire cannot write: 'Unable to serialize <type>
    objects', and what to do instead."""
    t = type(obj)
    name = _qualname(t)
    if isinstance(obj, type):
        hint = (f"qwire sends data, never classes ({_short(obj)}): convert it to a name and map the name back "
                "to the class on the receiving side")
    elif isinstance(obj, types.ModuleType):
        hint = f"qwire sends data, never modules: convert it to its name ({obj.__name__!r})"
    elif isinstance(obj, _CODE_TYPES):
        hint = ("qwire sends data, never code: convert it to the data it works on, or to a name the receiver "
                "maps to a function")
    elif isinstance(obj, _RUNNING_TYPES):
        hint = ("it is a computation in progress: convert it to its results first (list(gen), or the awaited "
                "value of a coroutine)")
    elif isinstance(obj, socket.socket):
        hint = "a socket is a connection of this process: convert it to the data you want to send"
    elif isinstance(obj, _LOCK_TYPES):
        hint = ("locks, threads and their kin are state of this process and mean nothing elsewhere: convert it "
                "to the data you need (e.g. a flag)")
    elif isinstance(obj, io.IOBase) or isinstance(obj, _FILE_WRAPPERS):
        hint = "convert it to its contents (f.getvalue(), f.read()) or send its path"
    elif isinstance(obj, (_dt.datetime, _dt.date, _dt.time, _dt.timedelta)):
        base = next(b for b in t.__mro__ if b in (_dt.datetime, _dt.date, _dt.time, _dt.timedelta))
        hint = (f"it is a subclass of datetime.{base.__name__}, which qwire does not write as a plain one: convert "
                f"it to a datetime.{base.__name__} first (pandas: ts.to_pydatetime()) or register the class")
    elif isinstance(obj, _BUILTIN_BASES):
        base = next(b for b in t.__mro__ if b in _BUILTIN_BASES)
        hint = (f"it is a subclass of {base.__name__}, which qwire does not write as a plain {base.__name__}: "
                f"convert it ({base.__name__}(x)) or register the class (qwire.register with encode= and decode=)")
    elif isinstance(obj, collections.abc.Iterator):
        hint = "it is an iterator: convert it to its items first (list(x))"
    elif isinstance(obj, np.ndarray):
        hint = "convert it to a plain array first (numpy.asarray(x)) or register the class"
    elif t.__module__ == "builtins":
        hint = "convert it to values qwire writes (docs/TYPES.md)"
    else:
        hint = (f"{t.__qualname__} is not registered: register it (qwire.register({t.__qualname__}) for a dataclass, "
                "NamedTuple or Enum; with encode= and decode= for any other class) or convert it to built-in "
                "values first")
    return ForeignObjectError(f"Unable to serialize {name} objects: {hint}", t)


def on_disk_error(obj):
    t = type(obj)
    what = "its data is a memory-mapped file" if not _open_file(obj) else "it is an open file"
    return OnDiskObjectError(
        f"Unable to serialize {_qualname(t)} objects that live on disk ({what}): load the data into memory first "
        "(numpy.array(x), bytes(m), f.read()), or pass allow_on_disk=True to copy it in", t)


# ---- the handler ------------------------------------------------------------------------------------

class Extensions:
    """The extension handler of one Encoder or Decoder (see the module docstring).

    registry: where registered classes are looked up (the core reads it); None for the default.
    q_compatible: never write a record; refuse, naming the object.
    allow_on_disk: write on-disk objects (memory maps, open files) by copying their data in.
    strict_fields: decoding a registered dataclass or NamedTuple whose fields differ from this
      reader's is an error (instead of filling defaults and ignoring unknown fields).
    """

    __slots__ = ("registry", "q_compatible", "allow_on_disk", "strict_fields")

    def __init__(self, registry=None, *, q_compatible=False, allow_on_disk=False, strict_fields=False):
        if registry is None:
            registry = default_registry
        elif not hasattr(registry, "_by_type"):
            raise TypeError(f"registry must be a qwire.Registry, not {type(registry).__name__}")
        self.registry = registry
        self.q_compatible = bool(q_compatible)
        self.allow_on_disk = bool(allow_on_disk)
        self.strict_fields = bool(strict_fields)

    def __reduce__(self):
        return (_make_extensions, (self.registry, self.q_compatible, self.allow_on_disk, self.strict_fields))

    def encode(self, obj):
        t = type(obj)
        if t is _IntegrationRecord:  # what qwire/_integrations.py made of a pandas/pyarrow/polars object
            return obj.handler_answer()
        enc = _ENCODERS.get(t)
        if enc is not None:
            return None if self.q_compatible else enc(obj)
        if isinstance(obj, np.generic):
            return None if self.q_compatible else _enc_scalar(obj)
        if _on_disk(obj):
            return (None, _copy_in(obj)) if self.allow_on_disk else None
        return None

    def refuse(self, obj, reason):
        t = type(obj)
        if _on_disk(obj) and not self.allow_on_disk:
            raise on_disk_error(obj)
        if self.q_compatible and (t in _ENCODERS or isinstance(obj, np.generic) or t in self.registry._by_type):
            why = "" if not reason or reason.startswith("Unable to serialize") else f": {reason}"
            raise EncodeError(f"q_compatible=True: {_short(obj)} ({_qualname(t)}) has no q type; it needs a qwire "
                              f"extension record, which q cannot read{why}", t)
        if t in _ENCODERS or isinstance(obj, np.generic):
            raise EncodeError(reason or f"Unable to serialize {_qualname(t)} objects", t)
        raise foreign_error(obj)

    def decode(self, code, payload):
        dec = _DECODERS.get(code)
        if dec is None:
            raise DecodeError(f"unknown qwire extension record code {code:#04x}")
        return dec(code, payload)


def _make_extensions(registry, q_compatible, allow_on_disk, strict_fields):
    return Extensions(registry, q_compatible=q_compatible, allow_on_disk=allow_on_disk, strict_fields=strict_fields)


# ---- cycles ------------------------------------------------------------------------------------------
# Used only once an EncodeError has happened, to say where a cycle is; bounded in work and in the
# length of what they say.

_MAX_VISITS = 100_000
_MAX_SHOWN = 40          # path steps shown in full; longer paths show their ends


def find_cycle(root, limit=_MAX_VISITS):
    """The first cycle found walking `root` depth first: (path to the object that contains
    itself, path where it is reached again, the object), or (None, None, None)."""
    # A frame is (object, its path as a step list node, iterator over its children); paths are
    # linked lists (parent node, step) so that no path is copied while walking.
    on_path = {id(root): (None, "")}
    seen = {id(root)}
    stack = [(root, on_path[id(root)], iter(_children(root)))]
    while stack and limit > 0:
        obj, node, kids = stack[-1]
        for step, child in kids:
            limit -= 1
            cid = id(child)
            if cid in on_path:
                return _render(on_path[cid]), _render((node, step)), child
            if cid in seen:
                continue
            seen.add(cid)
            child_node = (node, step)
            on_path[cid] = child_node
            stack.append((child, child_node, iter(_children(child))))
            break
        else:
            stack.pop()
            on_path.pop(id(obj), None)
    return None, None, None


def cycle_path(root, target, limit=_MAX_VISITS):
    """Where `target` (a container found inside itself) sits in `root`, and where it is reached
    again inside itself: two paths such as obj[0]['a'] (None when not found)."""
    first = _find(root, target, limit, skip_root=False)
    if first is None:
        return None, None
    again = _find(target, target, limit, skip_root=True)
    return _render(first), None if again is None else _render(again, prefix=first)


def _render(node, prefix=None):
    steps = []
    while node is not None and node[1] != "":
        node, step = node
        steps.append(step)
    steps.reverse()
    if prefix is not None:
        head = []
        while prefix is not None and prefix[1] != "":
            prefix, step = prefix
            head.append(step)
        steps = head[::-1] + steps
    if len(steps) > _MAX_SHOWN:
        k = _MAX_SHOWN // 4
        steps = steps[:k] + [f"...({len(steps) - 2 * k} more)..."] + steps[-k:]
    return "obj" + "".join(steps)


def _children(obj):
    t = type(obj)
    if t is list or t is tuple:
        return ((f"[{i}]", v) for i, v in enumerate(obj))
    if t is dict:
        return ((f"[{k!r:.40}]", v) for k, v in list(obj.items()))
    if t is set or t is frozenset:
        return ((".<item>", v) for v in list(obj))
    if t is np.ndarray and obj.dtype.kind == "O":
        return ((f"[{i}]", v) for i, v in enumerate(obj.reshape(-1).tolist()))
    if t is Dict:
        return ((".keys", obj.keys), (".values", obj.values))
    if t is Vector and type(obj.values) is list:
        return ((f".values[{i}]", v) for i, v in enumerate(obj.values))
    fields = getattr(t, "__dataclass_fields__", None)
    if fields is not None:
        return ((f".{f}", getattr(obj, f, None)) for f in fields)
    if isinstance(obj, tuple):
        return ((f"[{i}]", v) for i, v in enumerate(obj))
    return ()


def locate(root, target, limit=_MAX_VISITS):
    """Where `target` sits in `root`, as a path such as obj[2]['a'].x (None when not found within
    `limit` visits): for error messages."""
    node = _find(root, target, limit, skip_root=False)
    return None if node is None else _render(node)


def _find(root, target, limit, skip_root):
    """The path node of the first occurrence of target below root (depth first), or None."""
    stack = [(root, (None, ""), True)]
    seen = set()
    while stack and limit > 0:
        obj, node, is_root = stack.pop()
        limit -= 1
        if obj is target and not (is_root and skip_root):
            return node
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        kids = list(_children(obj))
        for step, child in reversed(kids):
            stack.append((child, (node, step), False))
    return None
