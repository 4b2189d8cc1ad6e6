"""kdb+ IPC compression, byte-exact with kdb+ (spec QIPC.md section 5; docs/COMPRESSION.md).

    >>> from qwire import compression
    >>> z = compression.compress(message)           # compressed, or `message` as bytes
    >>> compression.decompress(z) == message        # transparent for plain messages
    True

Compression applies to a whole message, header included (positions in the algorithm are offsets
in the message). kdb+ only keeps a compressed message when it is at most half the original; below
that `compress` hands the input back, as kdb+ sends it uncompressed. Receivers accept both forms,
so `decompress` passes plain messages through untouched.

All functions take any C-contiguous buffer of bytes (bytes, bytearray, memoryview, mmap, a NumPy
uint8 array) and raise TypeError for anything else. The work is done in `qwire._compress`
(Cython, GIL released); this module only fixes the defaults and the contracts.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from . import _compress

if TYPE_CHECKING:
    from typing_extensions import Buffer

    from ._core import Message

__all__ = [
    "compress",
    "try_compress",
    "decompress",
    "is_compressed",
    "compressed_variant",
    "max_stream_output",
    "KDB_COMPRESSION_THRESHOLD",
    "DEFAULT_MAX_DECOMPRESSED_SIZE",
    "MAX_MESSAGE_LENGTH",
]

#: Total message length (header included) from which the KX C client compresses (spec 5.1):
#: totals 2009 and above are compressed, 2008 and below never. `dumps(compress="auto")` uses it.
KDB_COMPRESSION_THRESHOLD = 2009

#: Default cap on the uncompressed size `decompress` will allocate: 1 GiB. A compressed stream can
#: expand about 121-fold, so without a cap a few megabytes off the network could claim gigabytes.
#: Raise it (or pass None) for trusted peers that send bigger messages.
DEFAULT_MAX_DECOMPRESSED_SIZE = 1 << 30

#: Largest total length a message header can state (40 bits, spec 1.1).
MAX_MESSAGE_LENGTH = _compress.MAX_MESSAGE_LENGTH


def compress(message: Buffer, *, threshold: int | None = None) -> bytes:
    """Return `message` compressed exactly as kdb+ would compress it, or unchanged.

    `message` is one whole plain message, 8-byte header included, in either byte order (header
    byte 0; the compressed length fields follow it). The result is `bytes`:

    * the compressed message (header byte 2 = 1, or 2 for totals >= 2**32), when kdb+'s rule
      keeps it: the output is never more than half of the input;
    * otherwise `message` itself as bytes (no copy if it already is `bytes`): when the rule
      aborts, when the total length is below `threshold` (None = any length; pass
      `KDB_COMPRESSION_THRESHOLD` to behave like the KX C client), or when `message` is already
      compressed.

    Raises TypeError for a non-bytes buffer and ValueError when `message` is not one whole message
    (header length different from the buffer's, byte 0 or byte 2 out of range).
    """
    if threshold is None:
        threshold = 0
    elif threshold < 0:
        raise ValueError("threshold must be >= 0 or None")
    out = _compress.compress(message, threshold)
    if out is not None:
        return out
    return message if type(message) is bytes else bytes(message)


def try_compress(message: Buffer, *, threshold: int | None = None) -> bytes | None:
    """Like `compress`, but None instead of a copy of `message` when it is not compressed.

    For callers that keep their plain message anyway (`dumps`): no bytes are copied when kdb+'s
    rule aborts or the message is under `threshold`. Same errors as `compress`.
    """
    if threshold is None:
        threshold = 0
    elif threshold < 0:
        raise ValueError("threshold must be >= 0 or None")
    return _compress.compress(message, threshold)


def decompress(message: Buffer, *, max_size: int | None = DEFAULT_MAX_DECOMPRESSED_SIZE) -> Buffer:
    """Return the plain form of `message`.

    * A compressed message (header byte 2 is 1 or 2) is decompressed into a new `bytearray`
      holding the plain message, header rebuilt: bytes 0..1 as sent, byte 2 = 0, bytes 3..7 the
      uncompressed length in the message's byte order.
    * Anything else (a plain message, or a buffer too short to have a header) is returned as is,
      the same object, for the message decoder to judge.

    `max_size` caps the uncompressed total length, header included (None: only the format's own
    limit of 2**40 - 1 bytes). The declared length is also checked against the most the stream
    could produce, so memory stays proportional to the input whatever the header claims.

    Raises DecodeError (a ValueError) with `.offset` = the offending byte offset in the compressed
    message for any malformed input, before allocating when the header is at fault; TypeError for
    a non-bytes buffer.
    """
    if not _compress.is_compressed(message):
        return message
    return _compress.decompress(message, max_size)


def is_compressed(message: Buffer) -> bool:
    """True when `message` has an 8-byte header whose byte 2 is 1 or 2 (kdb+ compression).

    Only the header is looked at; `decompress` checks the rest. TypeError for a non-bytes buffer.
    """
    return _compress.is_compressed(message)


def compressed_variant(total_length: int) -> Literal[1, 2]:
    """The header byte 2 kdb+ writes when compressing a message of `total_length` bytes.

    1: 4-byte uncompressed-length field, stream at offset 12 (totals below 2**32);
    2: 8-byte field, stream at offset 16 (totals from 2**32).
    """
    return _compress.variant_for(total_length)


def max_stream_output(stream_length: int) -> int:
    """The most bytes, after the 8-byte header, that a compressed stream of `stream_length` bytes
    (the message minus its 12- or 16-byte header) can decode to; `decompress` refuses more."""
    return _compress.max_stream_output(stream_length)


def _compressed_for_dumps(msg: Message, mode: object) -> Message:
    """dumps(compress=True|"auto"): kdb+'s compression, the plain message kept when it does not pay
    ("auto" also keeps messages under kdb+'s size threshold plain)."""
    from ._core import _message_from_bytes

    if mode not in (True, "auto"):
        raise ValueError(f"compress must be False, True or 'auto', not {mode!r}")
    out = try_compress(msg, threshold=KDB_COMPRESSION_THRESHOLD if mode == "auto" else None)
    return msg if out is None else _message_from_bytes(out)
