"""qwire: fast, safe, byte-exact kdb+/q IPC serialization for Python.

    >>> import qwire
    >>> m = qwire.dumps({"a": 1, "b": [2.5, "x"]})
    >>> qwire.loads(m)
    {'a': 1, 'b': [2.5, 'x']}

`dumps` returns a `Message` (buffer protocol, `bytes(m)`, `m.copy()`); `loads` reads bytes, any
C-contiguous buffer, a `Message` or an mmap. See docs/TYPES.md for the type mapping.
"""
from ._api import Decoder, Encoder, Message, dump, dumps, load, loads
from .io import MessageFile, iter_load
from .log import LogLockedError, MessageLog, TornTailWarning
from . import kdbfiles  # kdb+'s set/get files and tickerplant logs (qwire.kdbfiles.get, .TickerplantLog)
from .compression import compress, decompress
from .errors import DecodeError, EncodeError, EndOfFile, QError, QWireError
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

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "dumps",
    "loads",
    "dump",
    "load",
    "iter_load",
    "MessageLog",
    "MessageFile",
    "LogLockedError",
    "TornTailWarning",
    "EndOfFile",
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

# Connections (docs/IPC.md): the client (qwire.ipc, imported on first use: sockets and ssl cost
# ~25 ms) and the errors of the protocol layer. qwire.aio is the asyncio API.
if TYPE_CHECKING:
    from .ipc import Connection, connect
from .errors import (  # noqa: E402
    AuthenticationError,
    ConnectionClosed,
    IPCError,
    MessageTooLarge,
    ProtocolError,
    RequestTimeout,
)

__all__ += [
    "connect",
    "Connection",
    "IPCError",
    "ConnectionClosed",
    "AuthenticationError",
    "ProtocolError",
    "MessageTooLarge",
    "RequestTimeout",
]


def __getattr__(name: str) -> Any:
    if name in ("connect", "Connection", "Server", "DEFERRED"):
        from . import ipc

        return getattr(ipc, name)
    raise AttributeError(f"module 'qwire' has no attribute {name!r}")

# The server (qwire.ipc.server; docs/IPC.md), imported on first use like the client.
if TYPE_CHECKING:
    from .ipc import DEFERRED, Server
from .errors import NoRequestWaiting  # noqa: E402

__all__ += ["Server", "DEFERRED", "NoRequestWaiting"]
