"""q type codes and attribute names: the Python side of the one table of constants.

The Cython core mirrors these numbers in `cython/constants.pxi` (it needs them as C constants for
its dispatch switch); `tests/test_constants.py` checks that the two agree.
"""
from __future__ import annotations

import enum

__all__ = ["QType", "ATTRIBUTES", "ATTRIBUTE_CODES", "VECTOR_NAMES", "vector_code"]


class QType(enum.IntEnum):
    """Vector type codes; the atom of a type is the negated code (boolean atom = -1)."""

    LIST = 0
    BOOLEAN = 1
    GUID = 2
    BYTE = 4
    SHORT = 5
    INT = 6
    LONG = 7
    REAL = 8
    FLOAT = 9
    CHAR = 10
    SYMBOL = 11
    TIMESTAMP = 12
    MONTH = 13
    DATE = 14
    DATETIME = 15
    TIMESPAN = 16
    MINUTE = 17
    SECOND = 18
    TIME = 19
    EXTENSION = 112  # qwire extension record (docs/FORMAT.md); q's own "foreign", never on a q wire
    TABLE = 98
    DICT = 99
    LAMBDA = 100
    UNARY_PRIMITIVE = 101
    BINARY_PRIMITIVE = 102
    ITERATOR = 103
    PROJECTION = 104
    COMPOSITION = 105
    EACH = 106
    OVER = 107
    SCAN = 108
    EACH_PRIOR = 109
    EACH_RIGHT = 110
    EACH_LEFT = 111
    SORTED_DICT = 127
    ERROR = -128


# Attribute byte values (spec 2.4). None means no attribute.
ATTRIBUTES: dict[int, str | None] = {0: None, 1: "s", 2: "u", 3: "p", 4: "g"}
ATTRIBUTE_CODES: dict[str | None, int] = {v: k for k, v in ATTRIBUTES.items()}

# Vector names, as used by qwire.Vector(values, qtype=...).
VECTOR_NAMES: dict[int, str] = {
    QType.LIST: "list",
    QType.BOOLEAN: "boolean",
    QType.GUID: "guid",
    QType.BYTE: "byte",
    QType.SHORT: "short",
    QType.INT: "int",
    QType.LONG: "long",
    QType.REAL: "real",
    QType.FLOAT: "float",
    QType.CHAR: "char",
    QType.SYMBOL: "symbol",
    QType.TIMESTAMP: "timestamp",
    QType.MONTH: "month",
    QType.DATE: "date",
    QType.DATETIME: "datetime",
    QType.TIMESPAN: "timespan",
    QType.MINUTE: "minute",
    QType.SECOND: "second",
    QType.TIME: "time",
}
_BY_NAME = {name: int(code) for code, name in VECTOR_NAMES.items()}


def vector_code(qtype: str | int) -> int:
    """Normalise a vector type given as a name ('long'), a QType or an int to its int code."""
    if isinstance(qtype, str):
        try:
            return _BY_NAME[qtype]
        except KeyError:
            raise ValueError(f"unknown q vector type {qtype!r}; expected one of {sorted(_BY_NAME)}") from None
    code = int(qtype)
    if code not in VECTOR_NAMES:
        raise ValueError(f"{code} is not a q vector type code")
    return code
