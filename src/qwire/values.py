"""Value types for q values that no Python or NumPy type carries exactly.

Decoding returns plain Python and NumPy values wherever they re-encode to the same bytes
(docs/TYPES.md); these classes cover the rest: attributed or q-only vectors, q dictionaries that a
Python dict cannot carry exactly, tables, keyed tables, q's float `datetime`, and function values.
All are plain data: function values are never evaluated.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import ItemsView, Iterable, Mapping
from collections.abc import Iterator as _Iterator
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NoReturn, Optional

import numpy as np

from .qtypes import ATTRIBUTE_CODES, VECTOR_NAMES, vector_code
from .functions import (  # re-exported: the function values were defined here before qwire.functions
    ELIDED, BinaryPrimitive, Composition, Derived, Function, Iterator, Lambda, Projection, UnaryPrimitive,
)

if TYPE_CHECKING:
    import pandas as pd

#: A q attribute: None or 's' (sorted), 'u' (unique), 'p' (parted), 'g' (grouped).
Attr = Optional[Literal["s", "u", "p", "g"]]

__all__ = [
    "Vector",
    "Dict",
    "Table",
    "KeyedTable",
    "DateTime",
    "Timestamp",
    "Function",
    "Lambda",
    "UnaryPrimitive",
    "BinaryPrimitive",
    "Iterator",
    "Projection",
    "Composition",
    "Derived",
    "ELIDED",
    "values_equal",
]


def values_equal(a: Any, b: Any) -> bool:
    """Structural equality for decoded values: arrays compare by dtype and elements (NaN equal to
    NaN, as q treats every NaN as the same null); containers and function values compare
    element-wise; qwire's containers and dataclasses by their fields.

    The walk keeps its own stack instead of recursing, so comparing values nested as deep as the
    decoder allows (function values hundreds of levels deep, which a set of them compares when
    their hashes meet) needs no more Python stack than comparing flat ones. Cyclic values (as
    refs=True decodes them) compare as graphs: a pair of containers already being compared is
    taken as equal where it is met again (no difference can come from it that the first visit
    does not find), so the walk meets each pair once and always ends."""
    pending = [(a, b)]
    compared: set[tuple[int, int]] = set()
    held = []  # the pairs in `compared`, alive so that their ids stay theirs
    while pending:
        a, b = pending.pop()
        if a is b:
            continue
        t = type(a)
        if t in _CONTAINER_TYPES or isinstance(a, (np.ndarray, Function)) or _is_dataclass_instance(a):
            key = (id(a), id(b))
            if key in compared:
                continue
            compared.add(key)
            held.append((a, b))
        if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
            if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
                return False
            if a.dtype != b.dtype or a.shape != b.shape:
                return False
            if a.dtype.kind in "fc":
                same = np.array_equal(a, b, equal_nan=True)
            elif a.dtype.kind == "O":
                pending.extend(zip(a.reshape(-1).tolist(), b.reshape(-1).tolist()))
                continue
            elif a.dtype.kind in "mM":
                same = np.array_equal(a.view("i8"), b.view("i8"))
            else:
                same = np.array_equal(a, b)
        elif t is not type(b):
            return False
        elif isinstance(a, (list, tuple)):
            if len(a) != len(b):
                return False
            pending.extend(zip(a, b))
            continue
        elif isinstance(a, dict):
            if a.keys() != b.keys():
                return False
            pending.extend((a[k], b[k]) for k in a)
            continue
        elif isinstance(a, Function):
            pending.extend(zip(a._key(), b._key()))  # one type, so the same fields
            continue
        elif t is Vector:
            if a._code != b._code or a.attr != b.attr:
                return False
            pending.append((a.values, b.values))
            continue
        elif t is Dict or t is KeyedTable:
            if a.sorted != b.sorted:
                return False
            pending.extend(((a.keys, b.keys), (a.values, b.values)))
            continue
        elif t is Table:
            if a.attr != b.attr or list(a._columns) != list(b._columns):
                return False
            pending.extend((a._columns[k], b._columns[k]) for k in a._columns)
            continue
        elif _is_dataclass_instance(a):
            fields = [f.name for f in dataclasses.fields(a) if f.compare]
            pending.extend((getattr(a, f), getattr(b, f)) for f in fields)
            continue
        elif isinstance(a, (float, np.floating)):
            same = a == b or (a != a and b != b)
        elif isinstance(a, (np.datetime64, np.timedelta64)):
            same = a.dtype == b.dtype and a.view("i8") == b.view("i8")
        else:
            same = a == b
        if not same:
            return False
    return True


def _is_dataclass_instance(obj: Any) -> bool:
    return hasattr(type(obj), "__dataclass_fields__") and not isinstance(obj, type)


def _check_attr(attr: Any) -> Attr:
    if attr not in ATTRIBUTE_CODES:
        raise ValueError(f"attribute must be one of None, 's', 'u', 'p', 'g'; got {attr!r}")
    return attr


class Vector:
    """A q vector whose type or attribute a plain value cannot carry.

    `values` is what the vector decodes to without the wrapper (a NumPy array, `bytes` for char
    vectors, a `list` for general lists); `qtype` is the q vector type name ('long', 'datetime', ...);
    `attr` is None or one of 's' (sorted), 'u' (unique), 'p' (parted), 'g' (grouped).
    Decoding returns a Vector only for attributed vectors and for q's float `datetime` vectors.
    """

    __slots__ = ("values", "_code", "attr")

    values: Any
    attr: Attr

    def __init__(self, values: Any, qtype: str | int, attr: Attr = None) -> None:
        self.values = values
        self._code = vector_code(qtype)
        self.attr = _check_attr(attr)

    @property
    def qtype(self) -> str:
        return VECTOR_NAMES[self._code]

    @property
    def type_code(self) -> int:
        return self._code

    def __len__(self) -> int:
        return len(self.values)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vector):
            return NotImplemented
        return self._code == other._code and self.attr == other.attr and values_equal(self.values, other.values)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        attr = f", attr={self.attr!r}" if self.attr else ""
        return f"Vector({self.values!r}, {self.qtype!r}{attr})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Vector, (self.values, self.qtype, self.attr))


class Dict:
    """A q dictionary that a Python dict cannot carry exactly (keys that are not a plain symbol
    vector or list of distinct hashable atoms, attributed keys, typed value vectors, or a sorted
    dictionary). `keys` and `values` are decoded q values of equal length."""

    __slots__ = ("keys", "values", "sorted")

    keys: Any
    values: Any
    sorted: bool

    def __init__(self, keys: Any, values: Any, sorted: bool = False) -> None:
        self.keys = keys
        self.values = values
        self.sorted = bool(sorted)

    def __len__(self) -> int:
        return len(self.keys)

    def items(self) -> _Iterator[tuple[Any, Any]]:
        return zip(_iter_values(self.keys), _iter_values(self.values))

    def to_dict(self) -> dict[Any, Any]:
        """A Python dict of the same pairs (raises TypeError for unhashable keys; a later duplicate
        key wins, as in q's lookup the first one does: convert only when keys are distinct)."""
        return dict(self.items())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Dict):
            return NotImplemented
        return self.sorted == other.sorted and values_equal(self.keys, other.keys) and values_equal(self.values, other.values)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        s = ", sorted=True" if self.sorted else ""
        return f"Dict({self.keys!r}, {self.values!r}{s})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Dict, (self.keys, self.values, self.sorted))


def _iter_values(v: Any) -> _Iterator[Any]:
    if isinstance(v, Vector):
        v = v.values
    if isinstance(v, bytes):
        return (v[i : i + 1] for i in range(len(v)))
    if isinstance(v, np.ndarray):
        return iter(v.tolist() if v.dtype.kind == "O" else list(v))
    return iter(v)


def _column_length(col: Any) -> int:
    if isinstance(col, (Vector, np.ndarray, bytes, list, _SymbolSource)):
        return len(col)
    raise TypeError(f"a table column must be a vector (NumPy array, bytes, list or qwire.Vector), not {type(col).__name__}")


class Table:
    """A q table: named columns of equal length, in order.

    `Table({"a": np.arange(3), "b": np.array(["x", "y", "z"], dtype=object)})`. Columns are decoded
    vector values: NumPy arrays, `bytes` (a char column), lists (a general-list column, such as
    strings) or `qwire.Vector`. `attr` is the table's own attribute (q marks sorted tables `s#`).
    """

    __slots__ = ("_columns", "attr")

    _columns: dict[str, Any]
    attr: Attr

    def __init__(self, columns: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None, *, attr: Attr = None) -> None:
        cols = dict(columns or {})
        lengths = set()
        for name, col in cols.items():
            if not isinstance(name, str):
                raise TypeError(f"table column names must be str, not {type(name).__name__}")
            lengths.add(_column_length(col))
        if len(lengths) > 1:
            raise ValueError(f"table columns differ in length: {sorted(lengths)}")
        self._columns = cols
        self.attr = _check_attr(attr)

    @property
    def columns(self) -> list[str]:
        """The column names, in order."""
        return list(self._columns)

    def __getitem__(self, name: str) -> Any:
        return self._columns[name]

    def __contains__(self, name: object) -> bool:
        return name in self._columns

    def items(self) -> ItemsView[str, Any]:
        return self._columns.items()

    def __len__(self) -> int:
        """The number of rows."""
        for col in self._columns.values():
            return len(col)
        return 0

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Table):
            return NotImplemented
        return (
            self.attr == other.attr
            and list(self._columns) == list(other._columns)
            and all(values_equal(self._columns[k], other._columns[k]) for k in self._columns)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        a = f", attr={self.attr!r}" if self.attr else ""
        return f"Table({self._columns!r}{a})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Table, (self._columns,), {"attr": self.attr} if self.attr else None)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.attr = state["attr"]

    def to_pandas(self) -> pd.DataFrame:
        """A pandas DataFrame of the columns (pandas must be installed)."""
        from ._pandas import table_to_pandas

        return table_to_pandas(self)

    @classmethod
    def from_pandas(cls, df: pd.DataFrame) -> Table | KeyedTable:
        """The q table (or keyed table) for a pandas DataFrame, as `dumps(df, q_compatible=True)` writes it."""
        from ._pandas import table_from_pandas

        return table_from_pandas(df)

    def to_arrow(self) -> Any:
        """A pyarrow.Table of the columns: fixed-width columns share their buffers (q nulls of
        integer and temporal columns become Arrow nulls, in a validity bitmap beside them)."""
        from ._arrow import table_to_arrow

        return table_to_arrow(self)

    @classmethod
    def from_arrow(cls, data: Any) -> Table:
        """The q table of a pyarrow.Table or RecordBatch, as `dumps(data, q_compatible=True)` writes it."""
        from ._arrow import table_from_arrow

        return table_from_arrow(data)

    def to_polars(self) -> Any:
        """A polars.DataFrame of the columns (through Arrow, sharing fixed-width buffers)."""
        from ._polars import table_to_polars

        return table_to_polars(self)

    @classmethod
    def from_polars(cls, df: Any) -> Table:
        """The q table of a polars.DataFrame, as `dumps(df, q_compatible=True)` writes it."""
        from ._polars import table_from_polars

        return table_from_polars(df)


class KeyedTable:
    """A q keyed table: a table of key columns mapped to a table of value columns (row for row)."""

    __slots__ = ("keys", "values", "sorted")

    keys: Table
    values: Table
    sorted: bool

    def __init__(self, keys: Table, values: Table, sorted: bool = False) -> None:
        if not isinstance(keys, Table) or not isinstance(values, Table):
            raise TypeError("KeyedTable(keys, values) takes two qwire.Table objects")
        if len(keys) != len(values):
            raise ValueError(f"keyed table: {len(keys)} key rows but {len(values)} value rows")
        self.keys = keys
        self.values = values
        self.sorted = bool(sorted)

    def __len__(self) -> int:
        return len(self.keys)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, KeyedTable):
            return NotImplemented
        return self.sorted == other.sorted and self.keys == other.keys and self.values == other.values

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        s = ", sorted=True" if self.sorted else ""
        return f"KeyedTable({self.keys!r}, {self.values!r}{s})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (KeyedTable, (self.keys, self.values, self.sorted))

    def to_pandas(self) -> pd.DataFrame:
        """A pandas DataFrame indexed by the key columns."""
        from ._pandas import keyed_table_to_pandas

        return keyed_table_to_pandas(self)


_EPOCH_2000_MS = 946_684_800_000


class DateTime:
    """q's deprecated `datetime` atom (type -15): float64 days since 2000-01-01, the fraction being the
    time of day. Kept as the float so that it re-encodes bit for bit; NaN is null."""

    __slots__ = ("days",)

    days: float

    def __init__(self, days: float) -> None:
        self.days = float(days)

    def to_numpy(self) -> np.datetime64:
        """As `numpy.datetime64` in milliseconds (NaT for null), q's own rounding."""
        if math.isnan(self.days) or math.isinf(self.days):
            return np.datetime64("NaT", "ms")
        return np.datetime64(round(self.days * 86_400_000) + _EPOCH_2000_MS, "ms")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DateTime):
            return NotImplemented
        return self.days == other.days or (math.isnan(self.days) and math.isnan(other.days))

    def __hash__(self) -> int:
        return hash((DateTime, None if math.isnan(self.days) else self.days))

    def __repr__(self) -> str:
        return f"DateTime({self.days!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (DateTime, (self.days,))


class _SymbolSource:
    """Internal: a symbol column in a foreign layout that the encoder writes directly (an Arrow
    string array's buffers, or a categorical's codes and categories). Made by the pandas
    integration for dumps(DataFrame); never returned to users."""

    __slots__ = ("kind", "parts", "length")

    def __init__(self, kind: Any, parts: Any, length: int) -> None:
        self.kind = kind
        self.parts = parts
        self.length = length

    def __len__(self) -> int:
        return self.length


class Timestamp:
    """A q timestamp atom in q's own units, nanoseconds since 2000-01-01. Decoding returns one only
    where neither `datetime` nor `numpy.datetime64[ns]` holds the value exactly (nanoseconds after
    2262-04-11); it re-encodes bit for bit. `Timestamp(ns)` also writes any raw timestamp."""

    __slots__ = ("ns",)

    ns: int

    def __init__(self, ns: int) -> None:
        ns = int(ns)
        if not -(2**63) <= ns < 2**63:
            raise ValueError("a q timestamp is an int64 count of nanoseconds")
        self.ns = ns

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Timestamp):
            return NotImplemented
        return self.ns == other.ns

    def __hash__(self) -> int:
        return hash((Timestamp, self.ns))

    def __repr__(self) -> str:
        return f"Timestamp({self.ns})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Timestamp, (self.ns,))


# What values_equal walks into (and so what can close a cycle); defined once the classes exist.
_CONTAINER_TYPES = frozenset({list, tuple, dict, Vector, Dict, Table, KeyedTable})
