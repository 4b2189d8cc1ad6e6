"""The public functions: pickle's conventions over the Cython core's Encoder and Decoder."""
from __future__ import annotations

import os
from typing import IO, TYPE_CHECKING, Any, Literal

from ._core import Decoder, Encoder, Message, dumps, loads
from .io import load, write_message

if TYPE_CHECKING:
    import socket

__all__ = ["dumps", "loads", "dump", "load", "Encoder", "Decoder", "Message"]

def _compress_message(msg: Message, mode: bool | Literal["auto"]) -> Message:
    """dumps(compress=...): kdb+'s compression, keeping the plain message when it doesn't pay."""
    from . import compression
    from ._core import _message_from_bytes

    if mode not in (True, "auto"):
        raise ValueError(f"compress must be False, True or 'auto', not {mode!r}")
    threshold = compression.KDB_COMPRESSION_THRESHOLD if mode == "auto" else None
    out = compression.try_compress(msg, threshold=threshold)
    return msg if out is None else _message_from_bytes(out)


def dump(obj: object, file: str | bytes | os.PathLike[str] | IO[bytes] | socket.socket | int, **kwargs: Any) -> int:
    """Write `obj` as one message to a binary file object, socket or file descriptor, or to a new
    file at a path (created or truncated, as open(path, "wb")); returns the bytes written. A target
    that takes fewer bytes raises BlockingIOError/OSError with `characters_written` (qwire.io)."""
    msg = dumps(obj, **kwargs)
    if isinstance(file, (str, bytes, os.PathLike)):
        with open(file, "wb") as f:
            return write_message(msg, f)
    return write_message(msg, file)

