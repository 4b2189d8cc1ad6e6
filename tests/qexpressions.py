"""The expected Python value of every q expression in qPython's QExpressions3.out (bytes written by a
real q), written down by hand from docs/TYPES.md.

`cases()` pairs each expression with its full message (the file stores the payload without the
8-byte header) and its expected value. Two tables record where the bytes qwire writes differ:

* `QWIRE_WRITES`: null float atoms. These vectors are from an older q that wrote NaN as
  `0x7FF8…`/`0x7FC00000`; qwire writes current q's `0xFFF8…`/`0xFFC00000` for null float atoms
  (docs/TYPES.md I2) and passes vector bits through unchanged.
* `ONE_WAY`: cases where one direction cannot hold, with the reason. Empty: every case holds both
  ways.
"""
from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import numpy as np

from qwire.errors import QError
from wire import EXPRESSIONS_FILE, message, read_pairs
from qwire.values import (
    BinaryPrimitive,
    Composition,
    DateTime,
    Derived,
    Dict,
    KeyedTable,
    Lambda,
    Projection,
    Table,
    UnaryPrimitive,
    Vector,
)


NaT = "NaT"


def syms(*s):
    out = np.empty(len(s), dtype=object)
    out[:] = s
    return out


def i16(*v):
    return np.array(v, dtype=np.int16)


def i32(*v):
    return np.array(v, dtype=np.int32)


def i64(*v):
    return np.array(v, dtype=np.int64)


def temporal(dtype, *v):
    return np.array(v, dtype=dtype)


GUID = uuid.UUID("8c680a01-5a49-5aab-5a65-d4bfddb6a661")
NULL_GUID = uuid.UUID(int=0)
DENT = syms("Dent", "Beeblebrox", "Prefect")
IQ = i64(98, 42, 126)
POS_DATES = {"pos": syms("d1", "d2", "d3"), "dates": temporal("datetime64[D]", "2001-01-01", "2000-05-01", NaT)}

XBAR = Lambda('k){x*y div x:$[16h=abs[@x];"j"$x;x]}', context="q")
SAVE = Lambda("k){$[1=#p:`\\:*|`\\:x:-1!x;set[x;. *p];   x 0:.h.tx[p 1]@.*p]}", context="q")

EXPECTED = {
    "1+`": QError("type"),
    # atoms
    "1": 1,
    "1i": np.int32(1),
    "-234h": np.int16(-234),
    "0b": False,
    "1b": True,
    "0x2a": np.uint8(42),
    "89421099511627575j": 89421099511627575,
    "3.234": 3.234,
    "5.5e": np.float32(5.5),
    '"0"': np.bytes_(b"0"),
    '"abc"': b"abc",
    '""': b"",
    '"quick brown fox jumps over a lazy dog"': b"quick brown fox jumps over a lazy dog",
    "`abc": "abc",
    "`quickbrownfoxjumpsoveralazydog": "quickbrownfoxjumpsoveralazydog",
    "2000.01.04D05:36:57.600": dt.datetime(2000, 1, 4, 5, 36, 57, 600000),
    "2001.01m": np.datetime64("2001-01", "M"),
    "2001.01.01": dt.date(2001, 1, 1),
    "2000.05.01": dt.date(2000, 5, 1),
    "2000.01.04T05:36:57.600": DateTime(3.234),  # the same float64 bits as 3.234
    "0D05:36:57.600": dt.timedelta(hours=5, minutes=36, seconds=57, milliseconds=600),
    "12:01": np.timedelta64(12 * 60 + 1, "m"),
    "12:05:00": np.timedelta64(12 * 3600 + 5 * 60, "s"),
    "12:04:59.123": dt.time(12, 4, 59, 123000),
    "0x00": np.uint8(0),
    # nulls
    "0Nh": np.int16(-(2**15)),
    "0N": -(2**63),
    "0Ni": np.int32(-(2**31)),
    "0Nj": -(2**63),
    "0Ne": np.float32("nan"),
    "0n": float("nan"),
    '" "': np.bytes_(b" "),
    "`": "",
    "0Np": np.datetime64(NaT, "ns"),
    "0Nm": np.datetime64(NaT, "M"),
    "0Nd": np.datetime64(NaT, "D"),
    "0Nz": DateTime(float("nan")),
    "0Nn": np.timedelta64(NaT, "ns"),
    "0Nu": np.timedelta64(NaT, "m"),
    "0Nv": np.timedelta64(NaT, "s"),
    "0Nt": np.timedelta64(NaT, "ms"),
    # vectors and general lists
    "()": [],
    "(0b;1b;0b)": np.array([False, True, False]),
    "(0x01;0x02;0xff)": np.array([1, 2, 255], dtype=np.uint8),
    "(1h;2h;3h)": i16(1, 2, 3),
    "(1h;0Nh;3h)": i16(1, -(2**15), 3),
    "1 2 3": i64(1, 2, 3),
    "1 0N 3": i64(1, -(2**63), 3),
    "(1i;2i;3i)": i32(1, 2, 3),
    "(1i;0Ni;3i)": i32(1, -(2**31), 3),
    "(1j;2j;3j)": i64(1, 2, 3),
    "(1j;0Nj;3j)": i64(1, -(2**63), 3),
    "(5.5e; 8.5e)": np.array([5.5, 8.5], dtype=np.float32),
    "(5.5e; 0Ne)": np.array([5.5, np.nan], dtype=np.float32),  # np.nan's bits are the file's 0x7FC00000
    "3.23 6.46": np.array([3.23, 6.46]),
    "3.23 0n": np.array([3.23, np.nan]),
    '(1;`bcd;"0bc";5.5e)': [1, "bcd", b"0bc", np.float32(5.5)],
    "(42;::;`foo)": [42, None, "foo"],
    '(1;2h;3.234;"4")': [1, np.int16(2), 3.234, np.bytes_(b"4")],
    '(`one;2 3;"456";(7;8 9))': ["one", i64(2, 3), b"456", [7, i64(8, 9)]],
    "(enlist 1h; 2; enlist 3j)": [i16(1), 2, i64(3)],
    "`the`quick`brown`fox": syms("the", "quick", "brown", "fox"),
    "`jumps`over`a`lazy`dog": syms("jumps", "over", "a", "lazy", "dog"),
    "``quick``fox": syms("", "quick", "", "fox"),
    "``": syms("", ""),
    '("quick"; "brown"; "fox"; "jumps"; "over"; "a lazy"; "dog")': [
        b"quick", b"brown", b"fox", b"jumps", b"over", b"a lazy", b"dog"
    ],
    '("quick"; " "; "fox"; "jumps"; "over"; "a lazy"; "dog")': [
        b"quick", np.bytes_(b" "), b"fox", b"jumps", b"over", b"a lazy", b"dog"
    ],
    '("one"; "two"; "3")': [b"one", b"two", np.bytes_(b"3")],
    '("one"; "two"; enlist "3")': [b"one", b"two", b"3"],
    "2000.01.04D05:36:57.600 0Np": temporal("datetime64[ns]", "2000-01-04T05:36:57.600", NaT),
    "(2001.01m; 0Nm)": temporal("datetime64[M]", "2001-01", NaT),
    "2001.01.01 2000.05.01 0Nd": temporal("datetime64[D]", "2001-01-01", "2000-05-01", NaT),
    "2000.01.04T05:36:57.600 0Nz": Vector(np.array([3.234, np.nan]), "datetime"),
    "0D05:36:57.600 0Nn": temporal("timedelta64[ns]", 20_217_600_000_000, NaT),
    "12:01 0Nu": temporal("timedelta64[m]", 721, NaT),
    "12:05:00 0Nv": temporal("timedelta64[s]", 43_500, NaT),
    "12:04:59.123 0Nt": temporal("timedelta64[ms]", 43_499_123, NaT),
    # functions: inert values
    "::": None,
    "{x+y}": Lambda("{x+y}"),
    "{x+y}[3]": Projection(Lambda("{x+y}"), 3),
    "insert [1]": Projection(BinaryPrimitive(28), 1),  # insert is binary code 28
    "xbar": XBAR,
    "not": UnaryPrimitive(15),  # ~:
    "and": BinaryPrimitive(5),  # &
    "md5": Projection(BinaryPrimitive(16), -15),  # -15!
    "any": Composition(UnaryPrimitive(28), Projection(BinaryPrimitive(11), np.bytes_(b"b"))),  # max $["b"]
    "save": Derived("'", SAVE),
    "raze": Derived("/", BinaryPrimitive(12)),  # ,/
    "sums": Derived("\\", BinaryPrimitive(1)),  # +\
    "prev": Derived("':", BinaryPrimitive(0)),  # :':
    # dictionaries
    "(enlist `a)!(enlist 1)": Dict(syms("a"), i64(1)),  # typed values: not a Python dict
    "1 2!`abc`cdefgh": Dict(i64(1, 2), syms("abc", "cdefgh")),
    "`abc`def`gh!([] one: 1 2 3; two: 4 5 6)": Dict(
        syms("abc", "def", "gh"), Table({"one": i64(1, 2, 3), "two": i64(4, 5, 6)})
    ),
    "(`x`y!(`a;2))": {"x": "a", "y": 2},
    '(1;2h;3.234;"4")!(`one;2 3;"456";(7;8 9))': {
        1: "one",
        np.int16(2): i64(2, 3),
        3.234: b"456",
        np.bytes_(b"4"): [7, i64(8, 9)],
    },
    "(0 1; 2 3)!`first`second": Dict([i64(0, 1), i64(2, 3)], syms("first", "second")),
    "`A`B`C!((1;3.234;3);(`x`y!(`a;2));5.5e)": {"A": [1, 3.234, 3], "B": {"x": "a", "y": 2}, "C": np.float32(5.5)},
    # tables
    "flip `abc`def!(1 2 3; 4 5 6)": Table({"abc": i64(1, 2, 3), "def": i64(4, 5, 6)}),
    "flip `name`iq!(`Dent`Beeblebrox`Prefect;98 42 126)": Table({"name": DENT, "iq": IQ}),
    'flip `name`iq`grade!(`Dent`Beeblebrox`Prefect;98 42 126;"a c")': Table(
        {"name": DENT, "iq": IQ, "grade": b"a c"}
    ),
    'flip `name`iq`fullname!(`Dent`Beeblebrox`Prefect;98 42 126;("Arthur Dent"; "Zaphod Beeblebrox"; "Ford Prefect"))': Table(
        {"name": DENT, "iq": IQ, "fullname": [b"Arthur Dent", b"Zaphod Beeblebrox", b"Ford Prefect"]}
    ),
    'flip `name`iq`fullname!(`Dent`Beeblebrox`Prefect;98 42 126;("Arthur Dent"; " "; "Ford Prefect"))': Table(
        {"name": DENT, "iq": IQ, "fullname": [b"Arthur Dent", np.bytes_(b" "), b"Ford Prefect"]}
    ),
    'flip `name`iq`misc!(`Dent`Beeblebrox`Prefect;98 42 126;("The Hitch Hiker\'s Guide to the Galaxy"; 160; 1979.10.12))': Table(
        {"name": DENT, "iq": IQ, "misc": [b"The Hitch Hiker's Guide to the Galaxy", 160, dt.date(1979, 10, 12)]}
    ),
    "([] sc:1 2 3; nsc:(1 2; 3 4; 5 6 7))": Table({"sc": i64(1, 2, 3), "nsc": [i64(1, 2), i64(3, 4), i64(5, 6, 7)]}),
    "([] sc:1 2 3; nsc:(1 2; 3 4; 5 6))": Table({"sc": i64(1, 2, 3), "nsc": [i64(1, 2), i64(3, 4), i64(5, 6)]}),
    "([] name:`symbol$(); iq:`int$())": Table({"name": syms(), "iq": i32()}),
    "([] pos:`d1`d2`d3;dates:(2001.01.01;2000.05.01;0Nd))": Table(POS_DATES),
    "([eid:1001 1002 1003] pos:`d1`d2`d3;dates:(2001.01.01;2000.05.01;0Nd))": KeyedTable(
        Table({"eid": i64(1001, 1002, 1003)}), Table(POS_DATES)
    ),
    "([k: 1 2 3] v: `a`b`c)": KeyedTable(Table({"k": i64(1, 2, 3)}), Table({"v": syms("a", "b", "c")})),
    # guids
    "0Ng": NULL_GUID,
    '"G"$"8c680a01-5a49-5aab-5a65-d4bfddb6a661"': GUID,
    '"G"$"00000000-0000-0000-0000-000000000000"': NULL_GUID,
    '("G"$"8c680a01-5a49-5aab-5a65-d4bfddb6a661"; 0Ng)': np.array([GUID, NULL_GUID], dtype=object),
    # take from a table: char columns stay char vectors
    '1#([] sym:`x`x`x;str:"  a")': Table({"sym": syms("x"), "str": b" "}),
    '-1#([] sym:`x`x`x;str:"  a")': Table({"sym": syms("x"), "str": b"a"}),
    '2#([] sym:`x`x`x`x;str:"  aa")': Table({"sym": syms("x", "x"), "str": b"  "}),
    '-2#([] sym:`x`x`x`x;str:"  aa")': Table({"sym": syms("x", "x"), "str": b"aa"}),
}

# payload bytes qwire writes where they differ from the file (see the module docstring)
QWIRE_WRITES = {
    "0Ne": bytes.fromhex("f8 0000c0ff"),
    "0n": bytes.fromhex("f7 000000000000f8ff"),
    "0Nz": bytes.fromhex("f1 000000000000f8ff"),
}

ONE_WAY: dict[str, str] = {}


@dataclass(frozen=True)
class Case:
    index: int
    expression: str
    message: bytes  # what q wrote
    expected: object

    @property
    def is_error(self):
        return isinstance(self.expected, QError)

    @property
    def qwire_message(self):
        """The message qwire writes for the expected value."""
        if self.expression in QWIRE_WRITES:
            return message(QWIRE_WRITES[self.expression])
        return self.message

    @property
    def id(self):
        return f"{self.index:03d}:{self.expression[:40]}"


def cases(path=EXPRESSIONS_FILE):
    out = []
    for i, (expr, payload) in enumerate(read_pairs(path)):
        if expr not in EXPECTED:
            raise KeyError(f"no expected value written down for q expression {expr!r}")
        out.append(Case(i, expr, message(payload), EXPECTED[expr]))
    return out
