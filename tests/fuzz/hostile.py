"""Hostile q IPC messages: built here once, used by tests/test_limits.py, tests/test_memory_bounds.py
and the fuzz seed corpus (tests/fuzz/make_corpus.py).

Everything is built from the byte layouts of spec/QIPC.md with `struct`, never with qwire itself, so
a bug in the encoder cannot hide one in the decoder. Big messages are built with bytes
multiplication and join, so a million-deep nesting costs milliseconds.
"""
from __future__ import annotations

import struct

from wire import BE, LE, header, message  # noqa: F401 - the headers, re-exported for the fuzz targets


def vec(t, count, body=b"", attr=0, order=LE, long_count=False):
    """A vector item of type `t` whose count field says `count` (true or not)."""
    if long_count:
        return bytes([t, attr | 0x80]) + struct.pack(order + "Q", count) + body
    return bytes([t, attr]) + struct.pack(order + "I", count) + body


def general_list(items, attr=0, order=LE):
    return vec(0, len(items), b"".join(items), attr, order)


def symbols(names, attr=0):
    return vec(11, len(names), b"".join(n + b"\x00" for n in names), attr)


def long_atom(v, order=LE):
    return b"\xf9" + struct.pack(order + "q", v)


def int_vector(values, attr=0, order=LE):
    return vec(6, len(values), struct.pack(order + f"{len(values)}i", *values), attr, order)


def table(names_item, columns_item, attr=0):
    return bytes([98, attr, 99]) + names_item + columns_item


def dictionary(keys_item, values_item, sorted_=False):
    return bytes([127 if sorted_ else 99]) + keys_item + values_item


def nested_lists(depth, leaf=b"\xf9" + b"\x00" * 8):
    """`depth` single-item general lists around `leaf`: built by multiplication, O(depth) bytes."""
    return message(b"\x00\x00\x01\x00\x00\x00" * depth + leaf)


def many(item, n):
    """A general list of `n` copies of `item`."""
    return message(vec(0, n, item * n))


def empty_lists(n):
    return many(b"\x00\x00\x00\x00\x00\x00", n)


def one_char_symbols(n, distinct=True):
    """A symbol vector of n one-character symbols (all 256 - 1 byte values when distinct)."""
    if distinct:
        body = b"".join(bytes([1 + i % 255, 0]) for i in range(255))
        reps, rest = divmod(n, 255)
        body = body * reps + body[: 2 * rest]
    else:
        body = b"a\x00" * n
    return message(vec(11, n, body))


def symbol_atoms(n):
    """A general list of n one-character symbol atoms."""
    return many(b"\xf5a\x00", n)


def small_vectors(n, t=7, width=8):
    """A general list of n one-item vectors of type t."""
    return many(vec(t, 1, b"\x01" * width), n)


def empty_dicts(n):
    return many(dictionary(vec(0, 0), vec(0, 0)), n)


def count_lie(t, claimed, body=b""):
    return message(vec(t, claimed, body))


# The named hostile messages: (name, bytes, offset the decoder must report or None for "any").
# Offsets are of the first byte that proves the message wrong (see test_limits.py for the rules).
def named_cases():
    cases = []
    add = cases.append
    ok_list = general_list([long_atom(1)])
    # framing
    add(("empty", b"", None))
    add(("short-header", b"\x01\x00\x00", None))
    add(("byte-order-2", b"\x02" + message(b"\xff\x01")[1:], 0))
    add(("msg-type-3", message(b"\xff\x01", msg_type=3), 1))
    add(("compression-3", message(b"\xff\x01")[:2] + b"\x03" + message(b"\xff\x01")[3:], 2))
    add(("length-short", header(9) + b"\xff\x01", 4))
    add(("length-long", header(11) + b"\xff\x01", 4))
    add(("length-byte3", header(10 + (1 << 32)) + b"\xff\x01", 4))
    add(("header-only", header(8), 8))
    add(("trailing-bytes", header(11) + b"\xff\x01\x00", 10))
    add(("trailing-after-list", message(ok_list + b"\x00"), 8 + len(ok_list)))
    # the reference implementation's crashers
    add(("table-over-atom", bytes.fromhex("010200000d0000006200f56100"), 10))
    # types
    for t in (-3, 3, -20, 20, 21, 76, -76, 77, 78, 97, 112, 113, 126, 120, -127):
        add((f"type-{t}", message(bytes([t & 0xFF]) + b"\x00" * 8), 8))
    add(("error-nested", message(general_list([b"\x80oops\x00"])), 14))
    add(("error-unterminated", message(b"\x80oops"), 9))
    add(("error-trailing", message(b"\x80oops\x00\x00"), 14))
    # atoms
    add(("bool-atom-2", message(b"\xff\x02"), 9))
    add(("bool-vector-2", message(vec(1, 3, b"\x01\x00\x02")), 16))
    add(("bool-vector-ff", message(vec(1, 1, b"\xff")), 14))
    add(("long-atom-truncated", message(b"\xf9\x01\x00\x00"), 9))
    add(("guid-atom-truncated", message(b"\xfe" + b"\x00" * 15), 9))
    add(("symbol-unterminated", message(b"\xf5abc"), 9))
    # attributes
    for a in (5, 0x40, 0x7F, 0x85):
        add((f"attribute-{a:#x}", message(vec(7, 0, attr=a)), 9))
    add(("table-attribute-5", message(bytes([98, 5, 99]) + symbols([]) + general_list([])), 9))
    # counts
    add(("count-lie-long", count_lie(7, 2, struct.pack("<q", 1)), 10))
    add(("count-lie-huge", count_lie(7, 0xFFFFFFFF), 10))
    add(("count-lie-char", count_lie(10, 5, b"abc"), 10))
    add(("count-lie-symbol", count_lie(11, 3, b"a\x00b\x00"), None))
    add(("count-lie-list", count_lie(0, 1000, b"\xff\x01" * 10), 10))
    add(("count-lie-long-form", message(vec(7, 1 << 62, b"", long_count=True)), 10))
    add(("count-lie-2^64-1", message(vec(0, (1 << 64) - 1, b"", long_count=True)), 10))
    add(("count-lie-guid", count_lie(2, 2, b"\x00" * 16), 10))
    add(("count-lie-nested", message(general_list([vec(9, 100, b"\x00" * 8)])), 16))
    add(("projection-count-lie", message(b"\x68" + struct.pack("<I", 1000) + b"\x65\x00"), 9))
    add(("projection-zero", message(b"\x68" + struct.pack("<I", 0)), 9))
    add(("composition-count-lie", message(b"\x69" + struct.pack("<I", 0xFFFFFFFF) + b"\x65\x00"), 9))
    # dictionaries
    add(("dict-count-mismatch", message(dictionary(symbols([b"a", b"b"]), int_vector([1]))), 8))
    add(("dict-atom-keys", message(dictionary(long_atom(1), int_vector([1]))), 8))
    add(("dict-atom-values", message(dictionary(symbols([b"a"]), long_atom(1))), 8))
    add(("dict-truncated", message(dictionary(symbols([b"a"]), b"")), None))
    add(("record-values-short", message(dictionary(symbols([b"a", b"b"]), general_list([long_atom(1)]))), 8))
    # tables
    two_cols = symbols([b"a", b"b"])
    add(("table-unequal-columns", message(table(two_cols, general_list([int_vector([1, 2]), int_vector([3])]))), 8))
    add(("table-non-symbol-names", message(table(int_vector([1]), general_list([int_vector([1])]))), 8))
    add(("table-sym-atom-names", message(table(b"\xf5a\x00", general_list([int_vector([1])]))), 8))
    add(("table-names-with-attr", message(table(symbols([b"a"], attr=1), general_list([int_vector([1])]))), 8))
    add(("table-non-list-body", message(table(symbols([b"a"]), int_vector([1]))), 8))
    add(("table-body-not-dict", message(bytes([98, 0]) + symbols([b"a"])), 10))
    add(("table-atom-column", message(table(symbols([b"a"]), general_list([long_atom(1)]))), 8))
    add(("table-name-count", message(table(two_cols, general_list([int_vector([1])]))), 8))
    add(("table-duplicate-names", message(table(symbols([b"a", b"a"]), general_list([int_vector([1])] * 2))), 8))
    add(("keyed-table-rows", message(dictionary(
        table(symbols([b"k"]), general_list([int_vector([1, 2])])),
        table(symbols([b"v"]), general_list([int_vector([1])])))), None))
    # functions
    add(("lambda-int-source", message(b"\x64\x00" + int_vector([1])), 10))
    add(("lambda-symbol-source", message(b"\x64\x00" + symbols([b"x"])), 10))
    add(("lambda-attr-source", message(b"\x64\x00" + vec(10, 1, b"x", attr=1)), 10))
    add(("lambda-no-context-end", message(b"\x64abc"), 9))
    add(("lambda-truncated", message(b"\x64\x00\x0a"), 10))
    add(("primitive-truncated", message(b"\x65"), 9))
    add(("derived-truncated", message(b"\x6a"), 9))
    # enumerations
    add(("enum-atom", message(b"\xec" + struct.pack("<i", 1)), 8))
    add(("enum-vector", message(vec(20, 1, struct.pack("<i", 1))), 8))
    add(("enum-in-list", message(general_list([vec(20, 1, struct.pack("<i", 1))])), 14))
    # depth
    add(("nest-257", nested_lists(257), None))
    return cases


def compressed(plain_total, stream, variant=1, order=LE):
    """A compressed message (spec 5.2) with the given declared plain total and raw stream bytes."""
    field = struct.pack(order + ("I" if variant == 1 else "Q"), plain_total)
    total = 8 + len(field) + len(stream)
    return header(total, 0, variant, order) + field + stream


def compression_cases():
    """Hostile compressed messages: (name, bytes, offset or None)."""
    cases = []
    add = cases.append
    # A bomb: the header claims 4 GiB - 1 from a 20-byte stream.
    add(("bomb-u32", compressed(0xFFFFFFFF, b"\xff" + b"\x00\xff" * 8), 8))
    add(("bomb-u64", compressed((1 << 40) - 1, b"\xff" + b"\x00\xff" * 8, variant=2), 8))
    add(("bomb-past-40-bits", compressed(1 << 50, b"\x00" * 9, variant=2), 8))
    add(("declared-le-header", compressed(8, b"\x00"), 8))
    add(("declared-0", compressed(0, b"\x00"), 8))
    add(("stream-empty", compressed(20, b""), None))
    add(("empty-slot", compressed(100, b"\x01\x00\x05"), None))
    add(("stream-truncated", compressed(30, b"\x00abc"), None))
    add(("stream-leftover", compressed(10, b"\x00\xff\x01\x00\x00"), None))
    add(("compressed-too-short", header(10, 0, 1) + b"\x00\x00", None))
    # A valid-looking stream whose plain message is itself hostile: a table over an atom.
    plain = bytes.fromhex("010200000d0000006200f56100")
    add(("compressed-table-over-atom", compressed(len(plain), b"\x00" + plain[8:]), None))
    return cases


# ---------------------------------------------------------------------------------------------
# shared structures: qwire's extension records (docs/FORMAT.md), reference records included

NULL_INT_ATOM = b"\xfa" + struct.pack("<i", -(2**31))


def ext(code, item):
    """A qwire extension record (type 112): its code byte, then one item."""
    return bytes([0x70, code]) + item


def ref(k):
    """70 21: a reference to object #k."""
    return ext(0x21, b"\xfa" + struct.pack("<i", k))


def define_immutable(item):
    """70 23 (item; 0Ni): the item becomes the next object a reference can name."""
    return ext(0x23, general_list([item, NULL_INT_ATOM]))


def define(item):
    """70 22 item: the next object, registered before its contents are read."""
    return ext(0x22, item)


def tuple_record(items):
    return ext(0x01, general_list(items))


def set_record(items, frozen=False):
    return ext(0x03 if frozen else 0x02, general_list(items))


def registered(name, fields):
    """70 20 (`name; fields!values): a registered dataclass's record (fields: name -> item)."""
    state = dictionary(symbols([f.encode() for f in fields]), general_list(list(fields.values())))
    return ext(0x20, general_list([b"\xf5" + name.encode() + b"\x00", state]))


def doubling_tuples(depth, leaves=(long_atom(1), long_atom(2))):
    """Objects #0..#depth: #0 a tuple of `leaves`, #i a tuple holding #i-1 twice, so that #depth
    spans 2^depth copies of #0 in about 35 bytes a level (issue 11's first reproducer)."""
    defs = [define_immutable(tuple_record(list(leaves)))]
    defs += [define_immutable(tuple_record([ref(i - 1), ref(i - 1)])) for i in range(1, depth + 1)]
    return defs


def shared_then(defs, last):
    """A message: a general list of the definitions, then `last` (which may refer to them)."""
    return message(general_list([general_list(defs), last]))


def registered_custom(name, state):
    """70 20 (`name; state): a class registered with encode/decode functions, or an enum."""
    return ext(0x20, general_list([b"\xf5" + name.encode() + b"\x00", state]))
