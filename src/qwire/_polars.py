"""polars: DataFrame and Series through Arrow, which polars shares its memory with.

Default profile: the POLARS record holds the ARROW record of `to_arrow()` (qwire/_arrow.py) and the
kind; decoding goes back with `polars.from_arrow`, without copying fixed-width columns. With
`q_compatible=True`, the q table of the Arrow table. Docs: docs/TABLES.md.
"""
from __future__ import annotations

from typing import Any

from .errors import DecodeError, EncodeError
from .values import Table

__all__ = ["convert", "decode", "table_from_polars", "table_to_polars"]

FORMAT = 1


def _pl():
    import polars as pl

    return pl


def _to_arrow(obj):
    pl = _pl()
    schema = obj.schema if isinstance(obj, pl.DataFrame) else {obj.name: obj.dtype}
    for name, dtype in schema.items():
        if dtype == pl.Object:  # Python objects: polars has no Arrow form for them
            raise EncodeError(f"column {name!r} (dtype {dtype}) cannot be carried: polars Object columns have no "
                              "Arrow layout; convert the column first", type(obj))
    # The oldest compatibility level: plain (large_)string buffers rather than string views.
    return obj.to_arrow(compat_level=pl.CompatLevel.oldest())


def convert(obj: Any, q_compatible: bool) -> Any:
    pl = _pl()
    from . import _arrow

    if isinstance(obj, pl.DataFrame):
        if q_compatible:
            return _arrow.table_from_arrow(_to_arrow(obj), _direct=True)
        kind, payload = "frame", _arrow.encode(_to_arrow(obj))
    elif isinstance(obj, pl.Series):
        if q_compatible:
            return _arrow.q_vector(_to_arrow(obj), f"Series {obj.name!r:.60}")
        # As a one-column frame: polars keeps dtypes Arrow lacks (Enum) in the field's metadata.
        kind, payload = "series", _arrow.encode(_to_arrow(obj.to_frame()))
        payload = {"v": FORMAT, "kind": kind, "name": obj.name, "arrow": payload}
        from ._integrations import Record
        from .extensions import Code

        return Record(Code.POLARS, payload)
    else:
        return None
    from ._integrations import Record
    from .extensions import Code

    return Record(Code.POLARS, {"v": FORMAT, "kind": kind, "name": None, "arrow": payload})


def _bad(why):
    return DecodeError(f"malformed polars extension record: {why}")


def decode(payload: Any) -> Any:
    pl = _pl()
    from . import _arrow

    if type(payload) is not dict or payload.get("v") != FORMAT or set(payload) != {"v", "kind", "name", "arrow"}:
        raise _bad("unknown layout (version or fields)")
    kind = payload["kind"]
    data = _arrow.decode(payload["arrow"])
    if kind == "frame":
        import pyarrow as pa

        if not isinstance(data, pa.Table):
            raise _bad("a frame holds an Arrow table")
        return pl.from_arrow(data, rechunk=False)
    if kind == "series":
        name = payload["name"]
        if type(name) is not str or data.num_columns != 1:
            raise _bad("a Series is a named one-column frame")
        return pl.from_arrow(data, rechunk=False).to_series().alias(name)
    raise _bad(f"unknown kind {str(kind)[:20]!r}")


def table_from_polars(df: Any) -> Table:
    from . import _arrow

    return _arrow.table_from_arrow(_to_arrow(df))


def table_to_polars(table: Table) -> Any:
    from . import _arrow

    return _pl().from_arrow(_arrow.table_to_arrow(table), rechunk=False)
