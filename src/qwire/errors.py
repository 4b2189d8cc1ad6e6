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
