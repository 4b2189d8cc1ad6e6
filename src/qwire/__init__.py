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
