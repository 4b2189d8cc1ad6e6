"""The public functions: pickle's conventions over the Cython core's Encoder and Decoder."""
from __future__ import annotations

import os

from ._core import Decoder, Encoder, Message

__all__ = ["dumps", "loads", "dump", "load", "Encoder", "Decoder", "Message"]

_default_encoders = {t: Encoder(t) for t in ("async", "sync", "response")}
_default_decoder = Decoder()


def dumps(obj, *, msg_type="async", compress=False, **options) -> Message:
    """Serialize `obj` as one q IPC message.

    msg_type: "async" (0), "sync" (1) or "response" (2), the header's message type.
    compress: False; True to compress when kdb+'s rule finds it worthwhile (the result is never
      larger than half the input, else the plain message is kept); "auto" to also apply kdb+'s
      size threshold (messages under 2009 bytes are sent plain), as a kdb+ process would.
    options: Encoder options (max_depth, zero_copy_threshold, capability).
    """
    enc = _default_encoders.get(msg_type) if not options else None
    if enc is None:
        enc = Encoder(msg_type, **options)
    msg = enc.encode(obj)
    if compress:
        msg = _compress(msg, compress)
    return msg


def _compress(msg, mode):
    from . import compression
    from ._core import _message_from_bytes

    if mode not in (True, "auto"):
        raise ValueError(f"compress must be False, True or 'auto', not {mode!r}")
    threshold = compression.KDB_COMPRESSION_THRESHOLD if mode == "auto" else None
    out = compression.compress(msg, threshold=threshold)
    return _message_from_bytes(out) if compression.is_compressed(out) else msg


def loads(data, **options):
    """Deserialize one q IPC message from bytes, bytearray, memoryview, Message, mmap or any
    C-contiguous buffer. Vectors whose layout equals NumPy's come back as read-only views into
    `data`, which they keep alive. Raises DecodeError on malformed input and QError when the
    message is a q error. options: Decoder options (max_depth, max_decompressed_size)."""
    dec = _default_decoder if not options else Decoder(**options)
    return dec.decode(data)


def dump(obj, file, **kwargs) -> int:
    """Write `obj` as one message to a binary file object; returns the bytes written."""
    return dumps(obj, **kwargs).write_to(file)


def load(file, **options):
    """Read one message from a binary file object (reads exactly one message's bytes)."""
    header = _read_exact(file, 8)
    if len(header) < 8:
        from .errors import DecodeError

        raise DecodeError(f"file ended inside a message header ({len(header)} of 8 bytes)", len(header))
    order = "little" if header[0] == 1 else "big"
    total = int.from_bytes(header[4:8], order) + (header[3] << 32)
    if total < 8:
        from .errors import DecodeError

        raise DecodeError(f"header says the message is {total} bytes", 4)
    buf = bytearray(total)
    buf[:8] = header
    got = _readinto_exact(file, memoryview(buf)[8:])
    if got < total - 8:
        from .errors import DecodeError

        raise DecodeError(f"file ended inside a message: {8 + got} of {total} bytes", 8 + got)
    return loads(buf, **options)


def _read_exact(file, n):
    out = b""
    while len(out) < n:
        chunk = file.read(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def _readinto_exact(file, view):
    got = 0
    readinto = getattr(file, "readinto", None)
    while got < len(view):
        if readinto is not None:
            k = readinto(view[got:])
        else:
            chunk = file.read(len(view) - got)
            k = len(chunk)
            view[got : got + k] = chunk
        if not k:
            break
        got += k
    return got
