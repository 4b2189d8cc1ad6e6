"""qwire: fast, safe, byte-exact kdb+/q IPC serialization for Python.

    >>> import qwire
    >>> m = qwire.dumps({"a": 1, "b": [2.5, "x"]})
    >>> qwire.loads(m)
    {'a': 1, 'b': [2.5, 'x']}

`dumps` returns a `Message` (buffer protocol, `bytes(m)`, `m.copy()`); `loads` reads bytes, any
C-contiguous buffer, a `Message` or an mmap. See docs/TYPES.md for the type mapping.
"""
from ._api import Decoder, Encoder, Message, dump, dumps, load, loads
from .io import MessageLog, iter_load
from .compression import compress, decompress
from .errors import DecodeError, EncodeError, QError, QWireError
from .qtypes import QType
from .values import (
    ELIDED,
    BinaryPrimitive,
    Composition,
    DateTime,
    Timestamp,
    Derived,
    Dict,
    Function,
    Iterator,
    KeyedTable,
    Lambda,
    Projection,
    Table,
    UnaryPrimitive,
    Vector,
)

__version__ = "0.1.0"

__all__ = [
    "dumps",
    "loads",
    "dump",
    "load",
    "iter_load",
    "MessageLog",
    "Encoder",
    "Decoder",
    "Message",
    "compress",
    "decompress",
    "QWireError",
    "DecodeError",
    "EncodeError",
    "QError",
    "QType",
    "Vector",
    "Dict",
    "Table",
    "KeyedTable",
    "DateTime",
    "Timestamp",
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

# The Python layer: strict registration of classes, refusal errors (docs/FORMAT.md).
from .errors import ForeignObjectError, OnDiskObjectError, UnregisteredTypeError  # noqa: E402
from .registry import Registry, default_registry, register  # noqa: E402

__all__ += [
    "Registry",
    "default_registry",
    "register",
    "ForeignObjectError",
    "OnDiskObjectError",
    "UnregisteredTypeError",
]

# Between processes (docs/PROCESSES.md): qwire.shm, qwire.pipe and qwire.pool are imported on
# first use, so `import qwire` stays lean; qwire.dask and qwire.ray are imported explicitly.
_LAZY_SUBMODULES = ("shm", "pipe", "pool")


def __getattr__(name: str) -> object:
    if name in _LAZY_SUBMODULES:
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'qwire' has no attribute {name!r}")
