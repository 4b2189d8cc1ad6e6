"""qwire: fast, safe, byte-exact kdb+/q IPC serialization for Python.

    >>> import qwire
    >>> m = qwire.dumps({"a": 1, "b": [2.5, "x"]})
    >>> qwire.loads(m)
    {'a': 1, 'b': [2.5, 'x']}

`dumps` returns a `Message` (buffer protocol, `bytes(m)`, `m.copy()`); `loads` reads bytes, any
C-contiguous buffer, a `Message` or an mmap. See docs/TYPES.md for the type mapping.
"""
from ._core import Decoder, Encoder, Message, dumps, loads
from .io import MessageFile, dump, iter_load, load
from .log import LogLockedError, MessageLog, TornTailWarning
from . import kdbfiles  # kdb+'s set/get files and tickerplant logs (qwire.kdbfiles.get, .TickerplantLog)
from .compression import compress, decompress
from .errors import DecodeError, EncodeError, EndOfFile, QError, QWireError
from .qtypes import QType
from .values import DateTime, Dict, KeyedTable, Table, Timestamp, Vector
from . import functions  # q function values: qwire.functions.Lambda, ... (also named below)
from .functions import (
    ELIDED,
    BinaryPrimitive,
    Composition,
    Derived,
    Function,
    Iterator,
    Lambda,
    Projection,
    UnaryPrimitive,
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
    from .ipc import DEFERRED, Connection, Server, connect
from .errors import (  # noqa: E402
    AuthenticationError,
    ConnectionClosed,
    IPCError,
    MessageTooLarge,
    NoRequestWaiting,
    ProtocolError,
    ReconnectFailed,
    RequestTimeout,
)

__all__ += [
    "connect",
    "Connection",
    "Server",
    "DEFERRED",
    "IPCError",
    "ConnectionClosed",
    "ReconnectFailed",
    "AuthenticationError",
    "ProtocolError",
    "MessageTooLarge",
    "RequestTimeout",
    "NoRequestWaiting",
]

# What is imported on first use, so that `import qwire` stays lean: the connection API (from
# qwire.ipc) and, between processes (docs/PROCESSES.md), qwire.shm, qwire.pipe and qwire.pool.
# qwire.dask and qwire.ray are imported explicitly.
_LAZY_FROM_IPC = ("connect", "Connection", "Server", "DEFERRED")
_LAZY_SUBMODULES = ("shm", "pipe", "pool")


def __getattr__(name: str) -> Any:
    if name in _LAZY_FROM_IPC:
        from . import ipc

        return getattr(ipc, name)
    if name in _LAZY_SUBMODULES:
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'qwire' has no attribute {name!r}")
