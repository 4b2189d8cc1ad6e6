"""The public functions: pickle's conventions over the Cython core's Encoder and Decoder."""
from __future__ import annotations

import os
from typing import IO, TYPE_CHECKING, Any, Literal

from ._core import Decoder, Encoder, Message, dumps, loads
from .io import load

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


def dump(obj: object, file: str | bytes | os.PathLike[str] | IO[bytes] | socket.socket | int,
         protocol: int | None = None, **kwargs: Any) -> int:
    """Write `obj` as one message to a binary file object, socket or file descriptor, or to a new
    file at a path (created or truncated, as open(path, "wb")); returns the bytes written (the
    whole message: short writes are resumed; a target that takes no more raises BlockingIOError or
    OSError with `characters_written`, see Message.write_to). `protocol` is accepted, as
    pickle.dump(obj, file, protocol) takes it, and ignored."""
    msg = dumps(obj, protocol, **kwargs)
    if isinstance(file, (str, bytes, os.PathLike)):
        with open(file, "wb") as f:
            return msg.write_to(f)
    return msg.write_to(file)

