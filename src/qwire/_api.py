"""The public functions: pickle's conventions over the Cython core's Encoder and Decoder."""
from __future__ import annotations

from ._core import Decoder, Encoder, Message, dumps, loads

__all__ = ["dumps", "loads", "dump", "load", "Encoder", "Decoder", "Message"]



def _compress_message(msg, mode):
    """dumps(compress=...): kdb+'s compression, keeping the plain message when it doesn't pay."""
    from . import compression
    from ._core import _message_from_bytes

    if mode not in (True, "auto"):
        raise ValueError(f"compress must be False, True or 'auto', not {mode!r}")
    threshold = compression.KDB_COMPRESSION_THRESHOLD if mode == "auto" else None
    out = compression.compress(msg, threshold=threshold)
    return _message_from_bytes(out) if compression.is_compressed(out) else msg


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
