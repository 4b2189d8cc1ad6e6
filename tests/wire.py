"""Building q IPC messages by hand, and the conformance vectors real kdb+ wrote.

The one place tests build a message header (spec/QIPC.md 1.1) and find the conformance set
(`tests/data/conformance`, or the directory `QWIRE_CONFORMANCE` names). Messages are built from the
byte layouts with `struct`, never with qwire itself, so that an encoder bug cannot hide a decoder bug.
"""
from __future__ import annotations

import os
import pathlib
import struct

LE, BE = "<", ">"

CONFORMANCE_DIR = pathlib.Path(
    os.environ.get("QWIRE_CONFORMANCE", pathlib.Path(__file__).resolve().parent / "data" / "conformance")
)
EXPRESSIONS_FILE = CONFORMANCE_DIR / "qpython" / "QExpressions3.out"
COMPRESSED_EXPRESSIONS_FILE = CONFORMANCE_DIR / "qpython" / "QCompressedExpressions3.out"


def header(total, msg_type=0, compressed=0, order=LE):
    """The 8-byte header of a message of `total` bytes (spec 1.1): byte 3 holds bits 32..39 of the
    length (capability 6)."""
    return bytes([1 if order == LE else 0, msg_type, compressed, (total >> 32) & 0xFF]) + struct.pack(
        order + "I", total & 0xFFFFFFFF
    )


def message(payload, msg_type=0, order=LE):
    """A plain (uncompressed) message around `payload` (one item), header length right."""
    return header(8 + len(payload), msg_type, 0, order) + payload


def read_pairs(path):
    """The (first line, hex-decoded second line) pairs of a conformance file (its README)."""
    lines = [line.strip() for line in pathlib.Path(path).read_text().splitlines() if line.strip()]
    if len(lines) % 2:
        raise ValueError(f"{path}: odd number of lines")
    return [(lines[i], bytes.fromhex(lines[i + 1])) for i in range(0, len(lines), 2)]


def conformance_messages():
    """q expression -> the whole little-endian message q sends for its value, in file order."""
    return {expr: message(payload) for expr, payload in read_pairs(EXPRESSIONS_FILE)}


def compressed_conformance_messages():
    """q expression -> the whole compressed message q sends for it (the file stores it from offset
    8 on: the header is `01 00 01 00` + the total length)."""
    return {
        expr: header(len(stored) + 8, compressed=1) + stored
        for expr, stored in read_pairs(COMPRESSED_EXPRESSIONS_FILE)
    }
