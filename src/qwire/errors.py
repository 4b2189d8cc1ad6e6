"""qwire's exceptions.

Every exception qwire raises on bad input or unsupported objects is a `QWireError`, and also an
instance of the builtin a caller would naturally catch: `DecodeError` is a `ValueError`,
`EncodeError` a `TypeError`. Code written for pickle keeps working: `DecodeError` is also a
`pickle.UnpicklingError` and `EncodeError` a `pickle.PicklingError`. Context travels as
attributes, never only inside the message text.
"""
from __future__ import annotations

import pickle

__all__ = [
    "QWireError",
    "DecodeError",
    "EncodeError",
    "QError",
    "ForeignObjectError",
    "OnDiskObjectError",
    "UnregisteredTypeError",
    "EndOfFile",
    "IPCError",
    "ConnectionClosed",
    "ReconnectFailed",
    "AuthenticationError",
    "ProtocolError",
    "MessageTooLarge",
    "RequestTimeout",
    "NoRequestWaiting",
    "FrameError",
    "PipeClosedError",
]


class QWireError(Exception):
    """Base class of every exception qwire raises about data."""


class DecodeError(QWireError, ValueError, pickle.UnpicklingError):
    """The bytes are not a valid message (or exceed a configured limit).

    `offset` is the byte offset in the message where the problem was found (None when unknown);
    `type_code` is the q type byte being decoded there, when one applies.
    """

    def __init__(self, message: str, offset: int | None = None, type_code: int | None = None) -> None:
        self.reason = message
        self.offset = offset
        self.type_code = type_code
        if offset is not None:
            message = f"{message} (at byte {offset})"
        super().__init__(message)


class EncodeError(QWireError, TypeError, pickle.PicklingError):
    """The object (or something inside it) cannot be written as requested.

    `obj_type` is the type of the offending object when one applies; `path` says where it sits in
    the value passed (such as `obj[2]['a'].x`) when the encoder could tell. When code outside
    qwire raised while the value was written (a registered encode function, a property, a
    buffer_callback, CPython's or NumPy's own conversions), that exception is the `__cause__`.
    """

    path: str | None

    def __init__(self, message: str, obj_type: type | None = None) -> None:
        self.obj_type = obj_type
        self.path = None
        super().__init__(message)


class QError(QWireError):
    """A q error (type -128): raised by `loads` when a message carries one, and a value that
    `dumps` writes as one (`dumps(QError("type"))` is what q sends for `'type`)."""

    def __init__(self, text: str | bytes) -> None:
        if isinstance(text, bytes):
            text = text.decode("utf-8", "surrogateescape")
        self.text = str(text)
        super().__init__(self.text)

    def __eq__(self, other: object) -> bool:
        return type(other) is QError and other.text == self.text

    def __hash__(self) -> int:
        return hash((QError, self.text))

    def __repr__(self) -> str:
        return f"QError({self.text!r})"

    def __reduce__(self) -> tuple[type[QError], tuple[str]]:
        return (QError, (self.text,))


class ForeignObjectError(EncodeError):
    """An object qwire refuses to write: code (functions, classes, modules), live process state
    (generators, coroutines, sockets, locks, threads) or an instance of a class nobody registered.

    `obj_type` is the refused object's type; the message names it and says how to proceed
    (register the class, or convert the object to values qwire writes).
    """


class OnDiskObjectError(EncodeError):
    """An object whose data lives in a file (numpy.memmap, mmap.mmap, an open file, an array that
    views a memory map): refused unless `allow_on_disk=True`, which copies the data in."""


class UnregisteredTypeError(DecodeError):
    """A registered-object record names a class that the decoding registry does not know.

    Nothing was constructed or imported. `name` is the stable name in the record.
    """

    def __init__(self, message: str, offset: int | None = None, type_code: int | None = None,
                 name: str | None = None) -> None:
        self.name = name
        super().__init__(message, offset, type_code)


class EndOfFile(DecodeError, EOFError):
    """`load` found no message: the file or stream is at its end (pickle.load raises EOFError
    there too). A file that ends inside a message is a plain `DecodeError`."""
# Connections (qwire.ipc, qwire.aio; docs/IPC.md). Each is a ConnectionError, so code that
# already handles socket failures catches them, and a QWireError like every qwire exception.


class IPCError(QWireError, ConnectionError):
    """A connection to a q IPC peer failed or was misused by the peer.

    `peer` is a description of the other end ("127.0.0.1:5001", "unix:/tmp/kx.5001") when known.
    """

    def __init__(self, message: str, peer: str | None = None) -> None:
        self.reason = message
        self.peer = peer
        if peer is not None:
            message = f"{message} (peer {peer})"
        super().__init__(message)

    def __reduce__(self) -> tuple[type[IPCError], tuple[str, str | None]]:
        return (type(self), (self.reason, self.peer))


class ConnectionClosed(IPCError):
    """The peer closed the connection (or the connection was closed locally) while qwire was
    waiting for bytes or about to send. `received` and `expected` say how far a message had got
    when the peer closed inside one (None when the peer closed between messages)."""

    def __init__(self, message: str, peer: str | None = None, received: int | None = None,
                 expected: int | None = None) -> None:
        self.received = received
        self.expected = expected
        super().__init__(message, peer)

    def __reduce__(self) -> tuple[type[ConnectionClosed], tuple[str, str | None, int | None, int | None]]:  # type: ignore[override]
        return (type(self), (self.reason, self.peer, self.received, self.expected))


class ReconnectFailed(ConnectionClosed):
    """The connection was lost and reconnecting gave up: `attempts` attempts in a row failed.
    The last attempt's error is `last_error` (and `__cause__`). A `ConnectionClosed`, so code
    that handles a lost connection handles this too."""

    def __init__(self, message: str, peer: str | None = None, attempts: int | None = None,
                 last_error: BaseException | None = None) -> None:
        self.attempts = attempts
        self.last_error = last_error
        super().__init__(message, peer)

    def __reduce__(self) -> tuple[type[ReconnectFailed], tuple[str, str | None, int | None, BaseException | None]]:  # type: ignore[override]
        return (type(self), (self.reason, self.peer, self.attempts, self.last_error))


class AuthenticationError(IPCError):
    """The server refused the credentials: as kdb+ does, it closed the connection during the
    handshake without replying (q's hopen reports 'access)."""


class ProtocolError(IPCError):
    """The peer broke the protocol: a malformed handshake or message header, a handshake longer
    than the limit, a message type that cannot occur there. The connection is closed, since the
    byte stream can no longer be trusted to be in step."""


class MessageTooLarge(ProtocolError):
    """A message header announced more bytes than the connection's max_message_size. Nothing was
    allocated for it; the connection is closed. `size` is the announced total, `limit` the cap."""

    def __init__(self, message: str, peer: str | None = None, size: int | None = None,
                 limit: int | None = None) -> None:
        self.size = size
        self.limit = limit
        super().__init__(message, peer)

    def __reduce__(self) -> tuple[type[MessageTooLarge], tuple[str, str | None, int | None, int | None]]:  # type: ignore[override]
        return (type(self), (self.reason, self.peer, self.size, self.limit))


class RequestTimeout(IPCError, TimeoutError):
    """Connecting, the handshake, a request or a receive took longer than its timeout. A request
    that timed out is abandoned: its late response is recognised (responses come in request
    order) and dropped, so the connection stays usable. A send that timed out part-way closes
    the connection, whose byte stream is then broken."""


class NoRequestWaiting(QWireError, RuntimeError):
    """A server handler answered (`conn.reply`, `conn.reply_error`) when no request of that
    connection was deferred: as q's -30! on a handle with no request waiting."""
class FrameError(DecodeError):
    """A same-host frame (qwire.pipe) is malformed or breaks a limit: a bad header, too many
    descriptors, a descriptor that is not a sealed memory file, a buffer outside its file.
    Every descriptor that came with the frame has been closed."""


class PipeClosedError(ConnectionClosed):
    """The peer of a qwire.pipe connection went away in the middle of a frame (or the connection
    was closed); whatever part of the frame had arrived was discarded and its descriptors closed.
    A peer that closes cleanly between frames gives EOFError, as multiprocessing's does."""
