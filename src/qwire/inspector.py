"""`qwire inspect`: show what a kdb+ IPC message holds, in q notation or as an annotated hex layout.

This is a debugging tool, deliberately independent of the Cython core: a small pure-Python walker
reads the bytes (spec QIPC.md sections 1-3) into a tree of `Node`s, and two printers render the tree.
It reads both byte orders, several messages back to back, and compressed messages (through
`qwire.compression`). Malformed input raises `InspectError(what, offset)`; nesting is limited by an
explicit depth counter, and only the first `max_items` items of a vector or list are kept (the rest
are still walked, to find where they end).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import math
import re
import struct
import sys
import uuid
from dataclasses import dataclass, field

from .qtypes import ATTRIBUTES, VECTOR_NAMES
from .values import BinaryPrimitive, Iterator, UnaryPrimitive

__all__ = ["InspectError", "Node", "Message", "read_messages", "render_q", "format_layout", "inspect_command"]

# Fixed element widths and struct codes of atoms and vectors (spec 2.2); symbols (11) vary.
WIDTHS = {1: 1, 2: 16, 4: 1, 5: 2, 6: 4, 7: 8, 8: 4, 9: 8, 10: 1, 12: 8, 13: 4, 14: 4, 15: 8, 16: 8, 17: 4, 18: 4, 19: 4}
STRUCT_CODES = {5: "h", 6: "i", 7: "q", 8: "f", 9: "d", 12: "q", 13: "i", 14: "i", 15: "d", 16: "q", 17: "i", 18: "i", 19: "i"}
MESSAGE_TYPES = {0: "async", 1: "sync", 2: "response"}
FUNCTION_NAMES = {
    98: "table", 99: "dictionary", 100: "lambda", 101: "unary primitive", 102: "binary primitive",
    103: "iterator", 104: "projection", 105: "composition", 106: "each (')", 107: "over (/)",
    108: "scan (\\)", 109: "each-prior (':)", 110: "each-right (/:)", 111: "each-left (\\:)",
    112: "qwire extension record", 127: "sorted dictionary", -128: "error",
}
SMALLEST_ITEM = 2  # bytes: every item takes at least a type byte and one more
# The deepest nesting read and rendered: both walk the tree recursively, a few Python frames per
# level, so this keeps them far from the interpreter's recursion limit (1000 by default).
MAX_DEPTH_LIMIT = 200
OUT_OF_BAND = 0x30  # extension code of a vector whose elements travel out of band (docs/FORMAT.md)


class InspectError(Exception):
    """Malformed input: `what` went wrong at byte `offset`."""

    def __init__(self, what: str, offset: int):
        self.what = what
        self.offset = offset
        super().__init__(f"{what} at byte {offset}")


def type_name(t: int) -> str:
    if t in FUNCTION_NAMES:
        return FUNCTION_NAMES[t]
    if t == 0:
        return "general list"
    if -t in VECTOR_NAMES:
        return f"{VECTOR_NAMES[-t]} atom"
    if t in VECTOR_NAMES:
        return f"{VECTOR_NAMES[t]} vector"
    return f"type {t}"


@dataclass
class Node:
    """One item of a message. Offsets are positions in the (decompressed) message buffer."""

    offset: int
    type_code: int
    end: int = 0
    attr: int | None = None  # attribute code, for vectors and tables
    count: int | None = None  # vectors, lists, projections, compositions
    count_width: int = 0  # 4 or 8 bytes (0: no count field)
    data_offset: int = 0  # first element byte of a vector or atom value
    values: list = field(default_factory=list)  # an atom's value, or a vector's first items
    children: list = field(default_factory=list)  # kept sub-items (lists, dicts, functions)
    text: bytes = b""  # symbol atom, lambda context, error text
    code: int = 0  # primitive or extension code byte
    buffer: int | None = None  # for an out-of-band vector: the index of its buffer

    @property
    def kept_all(self) -> bool:
        shown = len(self.children) if self.type_code in (0, 104, 105) else len(self.values)
        return self.count is None or shown >= self.count


class Walker:
    """Reads items from `buf`, never past `end`, in byte order `order` ('<' or '>')."""

    def __init__(self, buf: bytes, end: int, order: str, max_items: int, max_depth: int):
        self.buf = buf
        self.end = end
        self.order = order
        self.max_items = max_items if max_items > 0 else sys.maxsize
        self.max_depth = max_depth
        self.buffers = 0  # out-of-band vectors seen so far (their buffers come in this order)

    # -- primitives ---------------------------------------------------------------------------------
    def need(self, pos: int, n: int, what: str) -> None:
        if pos + n > self.end:
            left = max(0, self.end - pos)
            raise InspectError(f"truncated {what}: needs {n} bytes, {left} left", pos)

    def unpack(self, code: str, pos: int, what: str):
        size = struct.calcsize(code)
        self.need(pos, size, what)
        return struct.unpack_from(self.order + code, self.buf, pos)[0]

    def cstring(self, pos: int, what: str) -> bytes:
        nul = self.buf.find(b"\0", pos, self.end)
        if nul < 0:
            raise InspectError(f"unterminated {what} (no NUL before the end of the message)", pos)
        return self.buf[pos:nul]

    # -- items --------------------------------------------------------------------------------------
    def item(self, pos: int, depth: int = 0) -> Node:
        if depth > self.max_depth:
            raise InspectError(f"nesting deeper than {self.max_depth} levels", pos)
        self.need(pos, 1, "item (type byte)")
        t = struct.unpack_from("b", self.buf, pos)[0]
        if t == -128:
            if depth:
                raise InspectError("error item (type -128) inside another item", pos)
            text = self.cstring(pos + 1, "error text")
            return Node(pos, t, end=pos + 2 + len(text), text=text, data_offset=pos + 1)
        if t < 0 and -t in WIDTHS or t == -11:
            return self.atom(pos, t)
        if 0 <= t <= 19 and t != 3:
            return self.vector(pos, t, depth)
        if t == 98:
            return self.table(pos, depth)
        if t in (99, 127):
            keys = self.item(pos + 1, depth + 1)
            values = self.item(keys.end, depth + 1)
            if keys.count is not None and values.count is not None and keys.count != values.count:
                raise InspectError(f"dictionary has {keys.count} keys but {values.count} values", pos)
            return Node(pos, t, end=values.end, children=[keys, values])
        if t == 100:
            context = self.cstring(pos + 1, "lambda context")
            body_pos = pos + 2 + len(context)
            self.need(body_pos, 1, "lambda body")
            if self.buf[body_pos] != 10:
                raise InspectError(f"lambda body is a {type_name(self.buf[body_pos])}, not a char vector", body_pos)
            body = self.vector(body_pos, 10, depth + 1, keep_all=True)
            return Node(pos, t, end=body.end, text=context, children=[body])
        if 101 <= t <= 103:
            self.need(pos + 1, 1, f"{type_name(t)} code")
            return Node(pos, t, end=pos + 2, code=self.buf[pos + 1])
        if t in (104, 105):
            count = self.unpack("I", pos + 1, f"{type_name(t)} count")
            node = Node(pos, t, count=count, count_width=4)
            node.end = self.items(node, pos + 5, count, depth)
            return node
        if 106 <= t <= 111:
            func = self.item(pos + 1, depth + 1)
            return Node(pos, t, end=func.end, children=[func])
        if t == 112:  # qwire extension record: 70, a code byte, then its payload
            self.need(pos + 1, 1, "extension record code")
            code = self.buf[pos + 1]
            payload = self.out_of_band(pos + 2) if code == OUT_OF_BAND else self.item(pos + 2, depth + 1)
            return Node(pos, t, end=payload.end, code=code, children=[payload])
        if 20 <= t <= 76 or -76 <= t <= -20:
            raise InspectError(f"enumeration (type {t}) cannot travel over IPC", pos)
        if 77 <= t <= 97:
            raise InspectError(f"mapped list (type {t}) cannot travel over IPC", pos)
        raise InspectError(f"unknown type byte {t} (0x{t & 0xFF:02x})", pos)

    def atom(self, pos: int, t: int) -> Node:
        node = Node(pos, t, data_offset=pos + 1)
        if t == -11:
            node.text = self.cstring(pos + 1, "symbol")
            node.end = pos + 2 + len(node.text)
        else:
            width = WIDTHS[-t]
            self.need(pos + 1, width, type_name(t))
            node.values = self.elements(-t, pos + 1, 1)
            node.end = pos + 1 + width
            if t == -1 and node.values[0] > 1:
                raise InspectError(f"boolean value {node.values[0]} (must be 0 or 1)", pos + 1)
        return node

    def elements(self, t: int, pos: int, n: int) -> list:
        width = WIDTHS[t]
        if t in STRUCT_CODES:
            return list(struct.unpack_from(f"{self.order}{n}{STRUCT_CODES[t]}", self.buf, pos))
        raw = self.buf[pos : pos + n * width]
        return [raw[i : i + width] for i in range(0, len(raw), width)] if width > 1 else list(raw)

    def vector_head(self, pos: int, t: int) -> Node:
        """A vector's type, attribute and count; data_offset is where its elements start."""
        node = self.attribute(pos, t)
        self.need(pos + 2, 1, f"{type_name(t)} count")
        node.count_width = 8 if self.buf[pos + 1] & 0x80 else 4
        node.count = self.unpack("Q" if node.count_width == 8 else "I", pos + 2, f"{type_name(t)} count")
        node.data_offset = node.end = pos + 2 + node.count_width
        return node

    def out_of_band(self, pos: int) -> Node:
        """The payload of an out-of-band record: a vector's head alone; its elements travel in
        the next of the buffers passed beside the message."""
        self.need(pos, 1, "out-of-band vector type")
        t = self.buf[pos]
        if t not in WIDTHS:
            raise InspectError(f"out-of-band record of {type_name(t)}, not a fixed-width vector", pos)
        node = self.vector_head(pos, t)
        node.buffer, self.buffers = self.buffers, self.buffers + 1
        return node

    def vector(self, pos: int, t: int, depth: int, keep_all: bool = False) -> Node:
        node = self.vector_head(pos, t)
        data = node.data_offset
        left = self.end - data
        if t == 0:
            node.end = self.items(node, data, node.count, depth)
        elif t == 11:
            if node.count > left:
                raise InspectError(f"symbol vector of {node.count} items cannot fit in the {left} bytes left", pos)
            p = data
            for i in range(node.count):
                text = self.cstring(p, f"symbol {i} of {node.count}")
                if i < self.max_items:
                    node.values.append(text)
                p += len(text) + 1
            node.end = p
        else:
            size = node.count * WIDTHS[t]
            if size > left:
                raise InspectError(f"truncated {type_name(t)}: {node.count:,} items need {size:,} bytes, {left:,} left", data)
            node.end = data + size
            keep = node.count if keep_all else min(node.count, self.max_items)
            node.values = self.elements(t, data, keep)
            if t == 1:
                bad = self.buf[data : node.end].translate(None, b"\x00\x01")
                if bad:
                    where = data + next(i for i, b in enumerate(self.buf[data : node.end]) if b > 1)
                    raise InspectError(f"boolean value {bad[0]} (must be 0 or 1)", where)
        return node

    def attribute(self, pos: int, t: int) -> Node:
        self.need(pos + 1, 1, f"{type_name(t)} attribute")
        code = self.buf[pos + 1] & 0x7F
        if code not in ATTRIBUTES or (t == 98 and self.buf[pos + 1] & 0x80):
            raise InspectError(f"bad attribute byte 0x{self.buf[pos + 1]:02x}", pos + 1)
        return Node(pos, t, attr=code)

    def items(self, node: Node, pos: int, count: int, depth: int) -> int:
        """Walk `count` sub-items from `pos`, keeping the first max_items; returns where they end."""
        left = self.end - pos
        if count * SMALLEST_ITEM > left:
            raise InspectError(f"{type_name(node.type_code)} of {count} items cannot fit in the {left} bytes left", node.offset)
        for i in range(count):
            child = self.item(pos, depth + 1)
            if i < self.max_items:
                node.children.append(child)
            pos = child.end
        return pos

    def table(self, pos: int, depth: int) -> Node:
        node = self.attribute(pos, 98)
        self.need(pos + 2, 1, "table body")
        if self.buf[pos + 2] != 99:
            got = struct.unpack_from("b", self.buf, pos + 2)[0]
            raise InspectError(f"table body is a {type_name(got)}, not a dictionary", pos + 2)
        body = self.item(pos + 2, depth + 1)
        node.children = [body]
        node.end = body.end
        return node


@dataclass
class Message:
    """One message of the input: where it starts, its header fields and its item."""

    start: int  # offset of the message in the input
    length: int
    order: str
    msg_type: int
    compression: int
    buf: bytes  # the plain message (decompressed when compressed); node offsets index into it
    item: Node | None = None
    raw: bytes = b""  # the compressed message as read, when compressed


def _header(data: bytes, pos: int) -> tuple:
    if len(data) - pos < 8:
        raise InspectError(f"truncated message header: {len(data) - pos} of 8 bytes", pos)
    if data[pos] not in (0, 1):
        raise InspectError(f"bad byte-order byte 0x{data[pos]:02x} (must be 00 or 01)", pos)
    order = "<" if data[pos] == 1 else ">"
    if data[pos + 1] not in MESSAGE_TYPES:
        raise InspectError(f"bad message type {data[pos + 1]} (must be 0, 1 or 2)", pos + 1)
    if data[pos + 2] > 2:
        raise InspectError(f"bad compression byte {data[pos + 2]} (must be 0, 1 or 2)", pos + 2)
    length = struct.unpack_from(order + "I", data, pos + 4)[0] + (data[pos + 3] << 32)
    smallest = 9 if data[pos + 2] == 0 else 12
    if length < smallest:
        raise InspectError(f"message length {length} is too short", pos + 4)
    if pos + length > len(data):
        raise InspectError(f"truncated message: the header says {length} bytes, {len(data) - pos} are left", pos + 4)
    return order, data[pos + 1], data[pos + 2], length


def _decompress(raw: bytes, start: int) -> bytes:
    try:
        from .compression import decompress
    except ImportError:
        raise InspectError("compressed message, but qwire.compression is not available", start + 2) from None
    try:
        return bytes(decompress(raw))
    except ValueError as exc:
        offset = getattr(exc, "offset", None) or 0
        raise InspectError(f"bad compressed data ({getattr(exc, 'reason', exc)})", start + offset) from None


def read_messages(data: bytes, max_items: int = 100, max_depth: int = 64) -> list[Message]:
    if not 1 <= max_depth <= MAX_DEPTH_LIMIT:
        raise ValueError(f"max_depth must be between 1 and {MAX_DEPTH_LIMIT}")
    """Parse every message of `data`, back to back. Raises InspectError on malformed input."""
    if not data:
        raise InspectError("empty input", 0)
    messages, pos = [], 0
    while pos < len(data):
        order, msg_type, compression, length = _header(data, pos)
        msg = Message(pos, length, order, msg_type, compression, buf=data, raw=b"")
        base = pos
        if compression:
            msg.raw = data[pos : pos + length]
            msg.buf = _decompress(msg.raw, pos)
            base = 0
        walker = Walker(msg.buf, base + (len(msg.buf) if compression else length), order, max_items, max_depth)
        try:
            msg.item = walker.item(base + 8)
        except InspectError as err:
            if compression:
                err = InspectError(f"{err.what} (in the decompressed message, which starts at byte {pos})", err.offset)
            raise err from None
        except RecursionError:
            raise InspectError("nesting too deep for this Python", base + 8) from None
        if msg.item.end != walker.end:
            raise InspectError(f"{_plural(walker.end - msg.item.end, 'trailing byte')} after the item", msg.item.end)
        messages.append(msg)
        pos += length
    return messages


# ---- q notation -----------------------------------------------------------------------------------

SUFFIX = {1: "b", 5: "h", 6: "i", 7: "j", 8: "e", 9: "f", 12: "p", 13: "m", 14: "d", 15: "z", 16: "n", 17: "u", 18: "v", 19: "t"}
INT_NULL = {2: -(2**15), 4: -(2**31), 8: -(2**63)}  # by width
_EPOCH = datetime.date(2000, 1, 1).toordinal()
_PLAIN_SYMBOL = re.compile(r"[A-Za-z0-9_.:/]*\Z")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_ESCAPES = {ord('"'): '\\"', ord("\\"): "\\\\", ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"}


def _special(t: int, v) -> str | None:
    """q's spelling of a null or infinity of vector type t ('0N', '0W', '-0W'), else None."""
    if t in (8, 9, 15):
        if v != v:
            return "0N"
        return None if not math.isinf(v) else ("0w" if v > 0 else "-0w")
    null = INT_NULL.get(WIDTHS[t])
    if null is None:
        return None
    return {null: "0N", -null - 1: "0W", null + 1: "-0W"}.get(v)


def _float_text(v: float) -> str:
    if v == int(v) and abs(v) < 1e16:
        return str(int(v))
    return repr(v)


def _real_text(v: float) -> str:
    """The shortest decimal that reads back as the same float32."""
    if v == int(v) and abs(v) < 1e8:
        return str(int(v))
    packed = struct.pack("<f", v)
    for digits in range(1, 10):
        text = f"{v:.{digits}g}"
        if struct.pack("<f", float(text)) == packed:
            return text
    return repr(v)


def _date_text(days: int) -> str:
    ordinal = _EPOCH + days
    if not 1 <= ordinal <= datetime.date.max.toordinal():
        return f"`date${days}"
    return datetime.date.fromordinal(ordinal).strftime("%Y.%m.%d")


def _clock(units: int, per_second: int, digits: int, with_seconds: bool = True) -> str:
    """hh:mm:ss[.fff] of a non-negative count of 1/per_second seconds."""
    seconds, fraction = divmod(units, per_second)
    minutes, s = divmod(seconds, 60)
    h, m = divmod(minutes, 60)
    text = f"{h:02d}:{m:02d}:{s:02d}" if with_seconds else f"{h:02d}:{m:02d}"
    return text + (f".{fraction:0{digits}d}" if digits else "")


def _signed(v: int, body) -> str:
    return "-" + body(-v) if v < 0 else body(v)


def _temporal(t: int, v) -> str:
    """A non-null, finite temporal value of vector type t in q's display format."""
    if t == 12:
        days, ns = divmod(v, 86_400 * 10**9)
        return f"{_date_text(days)}D{_clock(ns, 10**9, 9)}"
    if t == 13:
        year, month = divmod(2000 * 12 + v, 12)
        return f"{year:04d}.{month + 1:02d}"
    if t == 14:
        return _date_text(v)
    if t == 15:
        ms = round(v * 86_400_000)
        days, ms = divmod(ms, 86_400_000)
        return f"{_date_text(days)}T{_clock(ms, 1000, 3)}"
    if t == 16:
        return _signed(v, lambda a: f"{a // (86_400 * 10**9)}D{_clock(a % (86_400 * 10**9), 10**9, 9)}")
    if t == 17:
        return _signed(v, lambda a: _clock(a * 60, 1, 0, with_seconds=False))
    if t == 18:
        return _signed(v, lambda a: _clock(a, 1, 0))
    return _signed(v, lambda a: _clock(a, 1000, 3))  # 19, time


def _char_text(raw: bytes) -> str:
    return '"' + _escaped(raw) + '"'


def _escaped(raw: bytes, keep: str = "") -> str:
    """raw's text with every character a terminal could act on (C0 and C1 controls, DEL, bidi and
    other format characters, unassigned and private code points, invalid UTF-8) written as q's
    octal escapes of its bytes, and " and \\ escaped; the characters in `keep` stay as they are."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "".join(chr(b) if 32 <= b < 127 and b not in (34, 92) else _ESCAPES.get(b) or f"\\{b:03o}" for b in raw)
    out = []
    for ch in text:
        if ch in keep:
            out.append(ch)
        elif ch.isprintable() and ch not in '"\\':
            out.append(ch)
        else:
            out.append(_ESCAPES.get(ord(ch)) or "".join(f"\\{b:03o}" for b in ch.encode("utf-8")))
    return "".join(out)


def _symbol_text(raw: bytes) -> str:
    text = raw.decode("utf-8", "surrogateescape")
    return "`" + text if _PLAIN_SYMBOL.match(text) else "`$" + _char_text(raw)


def _atom_text(t: int, v) -> str:
    """An atom of vector type t (its own value, with the suffix q needs to read it back)."""
    if t == 1:
        return f"{v}b"
    if t == 2:
        return str(uuid.UUID(bytes=bytes(v)))
    if t == 4:
        return f"0x{v:02x}"
    if t == 10:
        return _char_text(bytes([v]))
    special = _special(t, v)
    if t == 9:
        return {"0N": "0n"}.get(special, special) if special else (_float_text(v) + ("f" if v == int(v) else ""))
    if t == 8:
        return special + "e" if special else _real_text(v) + "e"
    if special:
        return special + SUFFIX[t]
    if t in (5, 6):
        return f"{v}{SUFFIX[t]}"
    if t == 7:
        return str(v)
    return _temporal(t, v) + ("m" if t == 13 else "")


def _vector_text(n: Node) -> str:
    t, values = n.type_code, n.values
    more = "" if n.kept_all else " .."
    if n.count == 0:
        return '""' if t == 10 else f"`{VECTOR_NAMES[t]}$()"
    if t == 10:
        return ("," if n.count == 1 else "") + _char_text(bytes(values)) + more.strip()
    if t == 11:
        plain = all(_PLAIN_SYMBOL.match(v.decode("utf-8", "surrogateescape")) for v in values)
        body = "".join(_symbol_text(v) for v in values) if plain else "`$(" + ";".join(_char_text(v) for v in values) + ")"
    elif t == 1:
        body = "".join(str(v) for v in values) + "b"
    elif t == 4:
        body = "0x" + bytes(values).hex()
    elif t in (5, 6, 7, 13):
        body = " ".join(_special(t, v) or (_temporal(t, v) if t == 13 else str(v)) for v in values) + SUFFIX[t]
    elif t == 8:
        body = " ".join(_special(t, v) or _real_text(v) for v in values) + "e"
    elif t == 9:
        finite = [v for v in values if _special(t, v) is None]
        whole = all(v == int(v) for v in finite)
        body = " ".join({"0N": "0n"}.get(_special(t, v), _special(t, v)) or _float_text(v) for v in values)
        body += "f" if whole else ""
    else:  # guid and temporal types: each item spelled in full
        body = " ".join(_atom_text(t, v) for v in values)
    return ("," if n.count == 1 else "") + body + more


def _function_text(n: Node) -> str:
    t = n.type_code
    if t == 100:
        # the source, kept whole; line breaks and tabs kept, other control characters escaped
        return _escaped(bytes(n.children[0].values), keep='\n\t"\\')
    if t == 101:
        return "" if n.code == 0xFF else UnaryPrimitive(n.code).name or f"<unary {n.code}>"
    if t == 102:
        return BinaryPrimitive(n.code).name or f"<binary {n.code}>"
    if t == 103:
        return Iterator(n.code).name or f"<iterator {n.code}>"
    if t == 104:
        func, args = n.children[0], n.children[1:]
        more = ";.." if len(n.children) < n.count else ""
        head = render_q(func) if func.type_code in (100, 101, 102) else f"({render_q(func)})"
        return f"{head}[{';'.join(render_q(a) for a in args)}{more}]"
    if t == 105:
        return "'[" + ";".join(render_q(c) for c in n.children) + "]"
    iterator = ["'", "/", "\\", "':", "/:", "\\:"][t - 106]
    return render_q(n.children[0]) + iterator


def _left_operand(n: Node) -> str:
    """`n` rendered to stand left of `!`: parenthesized unless it is self-contained."""
    text = render_q(n)
    simple = (n.type_code < 0 and n.type_code != -128) or n.type_code in (100, 101, 102)
    simple |= 1 <= n.type_code <= 19 and n.count != 1 and n.count != 0 and not n.attr
    simple |= n.type_code == 0 and n.count != 1 and not n.attr
    simple |= n.type_code == 10 and n.count == 0
    return text if simple else f"({text})"


def _table_parts(body: Node) -> list[tuple[str, str]] | None:
    """(name, column text) pairs of a table body, or None when it is not one q could print as ([] ..)."""
    keys, values = body.children
    if keys.type_code != 11 or values.type_code != 0 or not keys.kept_all or not values.kept_all:
        return None
    names = [k.decode("utf-8", "surrogateescape") for k in keys.values]
    if not all(_NAME.match(name) for name in names) or len(names) != len(values.children):
        return None
    return [(name, render_q(col)) for name, col in zip(names, values.children)]


def _table_text(n: Node) -> str:
    prefix = f"`{ATTRIBUTES[n.attr]}#" if n.attr else ""
    parts = _table_parts(n.children[0])
    if parts is None:
        return f"{prefix}flip {render_q(n.children[0])}"
    return prefix + "([] " + "; ".join(f"{name}:{col}" for name, col in parts) + ")"


def _dict_text(n: Node) -> str:
    keys, values = n.children
    sorted_prefix = "`s#" if n.type_code == 127 else ""
    if keys.type_code == 98 and values.type_code == 98 and not keys.attr and not values.attr:
        key_parts, value_parts = _table_parts(keys.children[0]), _table_parts(values.children[0])
        if key_parts is not None and value_parts is not None:
            k = "; ".join(f"{name}:{col}" for name, col in key_parts)
            v = "; ".join(f"{name}:{col}" for name, col in value_parts)
            return f"{sorted_prefix}([{k}] {v})"
    if sorted_prefix and keys.attr == 1:
        keys_text = _left_operand(dataclasses.replace(keys, attr=0))  # the `s# is written once, in front
    else:
        keys_text = _left_operand(keys)
    return f"{sorted_prefix}{keys_text}!{render_q(values)}"


def render_q(n: Node) -> str:
    """`n` in q notation, e.g. `a`b!(1;2.5), 1 2 3j, ([] a:1 2j; b:`x`y), {x+y}, 0Nj."""
    t = n.type_code
    if n.buffer is not None:
        return f"<out-of-band {type_name(t)}, {n.count:,} items: buffer {n.buffer}>"
    if t == -128:
        return "'" + _escaped(n.text)
    if t == -11:
        return _symbol_text(n.text)
    if t < 0:
        return _atom_text(-t, n.values[0])
    if t <= 19:
        prefix = f"`{ATTRIBUTES[n.attr]}#" if n.attr else ""
        if t == 0:
            items = [render_q(c) for c in n.children] + ([] if n.kept_all else [".."])
            body = "()" if not items else f"enlist {items[0]}" if n.count == 1 else "(" + ";".join(items) + ")"
            return prefix + body
        return prefix + _vector_text(n)
    if t == 98:
        return _table_text(n)
    if t in (99, 127):
        return _dict_text(n)
    if t == 112:
        if n.code == OUT_OF_BAND:
            return render_q(n.children[0])
        return f"<extension record at byte {n.offset}: code {n.code}, {render_q(n.children[0])}>"
    return _function_text(n)


# ---- layout ---------------------------------------------------------------------------------------

HEX_PER_ROW = 8
MAX_HEX_ROWS = 4


class _Layout:
    def __init__(self, buf: bytes, offset_width: int, shift: int = 0):
        self.buf = buf
        self.lines: list[str] = []
        self.width = offset_width
        self.shift = shift  # added to the offsets shown (a compressed message's place in the input)

    def row(self, pos: int, size: int, text: str, depth: int = 0) -> None:
        """Lines for bytes buf[pos:pos+size]: offset, hex (rows of 8, abbreviated), description."""
        chunk = self.buf[pos : pos + size]
        rows = [chunk[i : i + HEX_PER_ROW] for i in range(0, len(chunk), HEX_PER_ROW)] or [b""]
        shown = rows[:MAX_HEX_ROWS]
        for i, r in enumerate(shown):
            offset = str(pos + self.shift).rjust(self.width) if i == 0 else " " * self.width
            desc = "  " * depth + text if i == 0 else ""
            self.lines.append(f"{offset}  {r.hex(' '):<{3 * HEX_PER_ROW - 1}}  {desc}".rstrip())
        if len(rows) > MAX_HEX_ROWS:
            hidden = len(chunk) - MAX_HEX_ROWS * HEX_PER_ROW
            self.lines.append(f"{' ' * self.width}  {'…':<{3 * HEX_PER_ROW - 1}}  ({_plural(hidden, 'more byte')})")

    def node(self, n: Node, depth: int, role: str = "") -> None:
        label = f"{role}{type_name(n.type_code)} (type {n.type_code})"
        t = n.type_code
        if t == -128:
            self.row(n.offset, 1, label, depth)
            self.row(n.data_offset, len(n.text) + 1, f"text: {render_q(n)}", depth + 1)
            return
        if t < 0:
            self.row(n.offset, 1, label, depth)
            self.row(n.offset + 1, n.end - n.offset - 1, f"value: {render_q(n)}", depth + 1)
            return
        self.row(n.offset, 1, label, depth)
        if n.attr is not None:
            self.row(n.offset + 1, 1, f"attribute: {_attr_text(n)}", depth + 1)
        if n.count_width:
            self.row(n.data_offset - n.count_width if t < 20 else n.offset + 1, n.count_width,
                     f"count: {n.count:,}" + (" (8-byte form)" if n.count_width == 8 else ""), depth + 1)
        if n.buffer is not None:
            size = n.count * WIDTHS[t]
            self.lines.append(f"{' ' * self.width}  {'':<{3 * HEX_PER_ROW - 1}}  {'  ' * (depth + 1)}"
                              f"elements: out of band, buffer {n.buffer} ({_plural(size, 'byte')})")
        elif 1 <= t <= 19:
            size = n.end - n.data_offset
            self.row(n.data_offset, size, f"elements ({_plural(size, 'byte')}): {_preview(render_q(n))}", depth + 1)
        elif t == 100:
            context = _escaped(n.text) or "root"
            self.row(n.offset + 1, len(n.text) + 1, f"context: {context}", depth + 1)
            self.node(n.children[0], depth + 1, "source: ")
        elif 101 <= t <= 103:
            self.row(n.offset + 1, 1, f"code: {n.code} ({render_q(n) or 'elided argument'})", depth + 1)
        elif t == 112:
            kind = " (out-of-band vector)" if n.code == OUT_OF_BAND else ""
            self.row(n.offset + 1, 1, f"extension code: {n.code}{kind}", depth + 1)
            self.node(n.children[0], depth + 1, "payload: ")
        else:
            roles = _child_roles(n)
            for child, child_role in zip(n.children, roles):
                self.node(child, depth + 1, child_role)
            if n.count is not None and len(n.children) < n.count:
                last = n.children[-1].end if n.children else n.data_offset
                self.lines.append(f"{' ' * self.width}  {'…':<{3 * HEX_PER_ROW - 1}}  {'  ' * (depth + 1)}"
                                  f"{n.count - len(n.children):,} more items, bytes {last:,}..{n.end - 1:,}")


def _plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _preview(text: str, limit: int = 72) -> str:
    return text if len(text) <= limit else text[: limit - 2] + " …"


def _attr_text(n: Node) -> str:
    a = ATTRIBUTES[n.attr]
    return f"{n.attr} (`{a}#)" if a else "0 (none)"


def _child_roles(n: Node) -> list[str]:
    t = n.type_code
    if t in (99, 127):
        return ["keys: ", "values: "]
    if t == 98:
        return ["body: "]
    if t == 104:
        return ["function: "] + [f"argument {i}: " for i in range(1, len(n.children))]
    if t in (0, 105):
        return [f"[{i}] " for i in range(len(n.children))]
    return ["function: "]


def format_layout(msg: Message, number: int) -> str:
    """The annotated hex layout of one message: header fields, then every item."""
    order_name = "little-endian" if msg.order == "<" else "big-endian"
    compression = {0: "none", 1: "compressed, 4-byte uncompressed length", 2: "compressed, 8-byte uncompressed length"}
    header_buf = msg.raw or msg.buf
    base = 0 if msg.raw else msg.start
    width = max(4, len(str(max(msg.start + msg.length, len(msg.buf)))))
    out = _Layout(header_buf, width, shift=msg.start if msg.raw else 0)
    kind = ", compressed" if msg.compression else ""
    out.lines.append(f"message {number}: bytes {msg.start:,}..{msg.start + msg.length - 1:,} ({msg.length:,} bytes{kind})")
    out.row(base, 1, f"byte order: {order_name}")
    out.row(base + 1, 1, f"message type: {MESSAGE_TYPES[msg.msg_type]}")
    out.row(base + 2, 1, f"compression: {compression[msg.compression]}")
    out.row(base + 3, 1, f"length, bits 32..39: {header_buf[base + 3]}")
    out.row(base + 4, 4, f"length: {msg.length:,} bytes")
    if msg.raw:
        field_width = 4 if msg.compression == 1 else 8
        out.row(8, field_width, f"uncompressed length: {len(msg.buf):,} bytes")
        out.row(8 + field_width, msg.length - 8 - field_width, f"compressed stream ({msg.length - 8 - field_width:,} bytes)")
        out.lines.append(f"decompressed ({len(msg.buf):,} bytes; offsets below are in the decompressed message):")
        out.buf, out.shift = msg.buf, 0
        out.row(0, 8, "header, rebuilt: byte 2 = 0, length = the uncompressed length")
    out.node(msg.item, 0)
    return "\n".join(out.lines)


# ---- command --------------------------------------------------------------------------------------


def inspect_command(args: argparse.Namespace) -> int:
    if not 1 <= args.max_depth <= MAX_DEPTH_LIMIT:
        print(f"qwire inspect: --max-depth must be between 1 and {MAX_DEPTH_LIMIT}", file=sys.stderr)
        return 2
    try:
        if args.file == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(args.file, "rb") as f:
                data = f.read()
    except OSError as exc:
        print(f"qwire inspect: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    try:
        messages = read_messages(data, max_items=args.max_items, max_depth=args.max_depth)
    except InspectError as err:
        print(f"qwire inspect: {err}", file=sys.stderr)
        return 1
    for number, msg in enumerate(messages, 1):
        if args.layout:
            if number > 1:
                print()
            print(format_layout(msg, number))
        else:
            print(render_q(msg.item))
    return 0
