"""pyarrow: its tables, record batches and arrays, exactly (the ARROW record, default profile), as
q tables (`q_compatible=True`, `Table.from_arrow`), and qwire.Table -> pyarrow.Table (`to_arrow`).

The ARROW record carries the schema as Arrow serializes it (types, field names, nullability,
metadata) and each array as its own buffers, which the core writes as byte vectors (by reference
when large): nothing is converted, so every Arrow type with a buffer layout round-trips. Decoding
rebuilds the arrays over the message's bytes (zero-copy) and validates them fully, so that a
hostile message cannot describe an array that reads outside its buffers.

Docs: docs/TABLES.md.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .errors import DecodeError, EncodeError
from .values import Table, Vector, _SymbolSource

__all__ = ["convert", "decode", "table_from_arrow", "table_to_arrow", "q_vector"]

FORMAT = 1
_KINDS = ("table", "batch", "array", "chunked")


def _pa():
    import pyarrow as pa

    return pa


# ---- the ARROW record ----------------------------------------------------------------------------

def _buffer_bytes(buf):
    return None if buf is None else np.frombuffer(buf, dtype=np.uint8)


def _array_tree(arr):
    """One array: ["buffers", length, null count, offset, buffers, dictionary] for flat types (a
    dictionary array's are its indices'), or ["ipc", bytes] (an IPC stream of the one array) for
    nested and extension types, whose children (or Python class) the buffer list alone does not
    rebuild."""
    pa = _pa()
    t = arr.type
    if pa.types.is_dictionary(t) and t.value_type.num_fields == 0:
        indices = arr.indices
        return ["buffers", len(arr), arr.null_count, indices.offset, [_buffer_bytes(b) for b in indices.buffers()],
                _array_tree(arr.dictionary)]
    if t.num_fields == 0 and not pa.types.is_dictionary(t) and not isinstance(t, pa.BaseExtensionType):
        return ["buffers", len(arr), arr.null_count, arr.offset, [_buffer_bytes(b) for b in arr.buffers()], None]
    sink = pa.BufferOutputStream()
    batch = pa.record_batch([arr], names=[""])
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return ["ipc", np.frombuffer(sink.getvalue(), dtype=np.uint8)]


def _record(kind, schema, columns):
    return {"v": FORMAT, "kind": kind, "schema": np.frombuffer(schema.serialize(), dtype=np.uint8), "columns": columns}


def _chunks(col):
    return [_array_tree(c) for c in col.chunks]


def encode(obj):
    pa = _pa()
    if isinstance(obj, pa.Table):
        return _record("table", obj.schema, [_chunks(c) for c in obj.columns])
    if isinstance(obj, pa.RecordBatch):
        return _record("batch", obj.schema, [[_array_tree(c)] for c in obj.columns])
    if isinstance(obj, pa.ChunkedArray):
        return _record("chunked", pa.schema([pa.field("", obj.type)]), [_chunks(obj)])
    if isinstance(obj, pa.Array):
        return _record("array", pa.schema([pa.field("", obj.type)]), [[_array_tree(obj)]])
    return None


def convert(obj: Any, q_compatible: bool) -> Any:
    """What dumps writes for a pyarrow object (qwire/_integrations.py), or None (refused)."""
    pa = _pa()
    if q_compatible:
        if isinstance(obj, (pa.Table, pa.RecordBatch)):
            return table_from_arrow(obj, _direct=True)
        if isinstance(obj, (pa.Array, pa.ChunkedArray)):
            return q_vector(obj, "Arrow array", direct=False)
        return None
    payload = encode(obj)
    if payload is None:
        return None
    from ._integrations import Record
    from .extensions import Code

    return Record(Code.ARROW, payload)


def _bad(why):
    return DecodeError(f"malformed arrow extension record: {why}")


def _int(v, what):
    if type(v) is not int or v < 0:
        raise _bad(f"{what} must be a non-negative long")
    return v


def _array_from(tree, t):
    pa = _pa()
    if type(tree) is list and len(tree) == 2 and tree[0] == "ipc":
        raw = tree[1]
        if type(raw) is not np.ndarray or raw.dtype != np.uint8:
            raise _bad("an IPC array must be a byte vector")
        batch = pa.ipc.open_stream(pa.py_buffer(raw)).read_all()
        if batch.num_columns != 1 or batch.column(0).num_chunks != 1 or batch.schema.field(0).type != t:
            raise _bad("an IPC array must hold one array of its column's type")
        return batch.column(0).chunk(0)
    if type(tree) is not list or len(tree) != 6 or tree[0] != "buffers":
        raise _bad("an array is (`buffers; length; null count; offset; buffers; dictionary) or (`ipc; bytes)")
    length, nulls, offset = (_int(v, "length, null count and offset") for v in tree[1:4])
    bufs = tree[4]
    if type(bufs) is not list:
        raise _bad("buffers must be a general list")
    buffers = []
    for b in bufs:
        if b is None:
            buffers.append(None)
        elif type(b) is np.ndarray and b.dtype == np.uint8 and b.ndim == 1:
            buffers.append(pa.py_buffer(b))
        else:
            raise _bad("a buffer must be a byte vector")
    if pa.types.is_dictionary(t):
        if tree[5] is None:
            raise _bad("a dictionary array without its dictionary")
        dictionary = _array_from(tree[5], t.value_type)
        _validate(dictionary)
        indices = pa.Array.from_buffers(t.index_type, length, buffers, null_count=nulls, offset=offset)
        indices.validate(full=True)
        return pa.DictionaryArray.from_arrays(indices, dictionary, ordered=t.ordered, safe=True)
    if tree[5] is not None or t.num_fields:
        raise _bad(f"a dictionary for an Arrow {t} array")
    return pa.Array.from_buffers(t, length, buffers, null_count=nulls, offset=offset)


def check_strings(arr) -> None:
    """Full validation of a string or binary array, in NumPy: offsets in order and within the data,
    and UTF-8 (Arrow's own check, run only when a byte is not ASCII: ASCII is valid UTF-8 however
    it is cut). Equivalent to `arr.validate(full=True)`, which checks UTF-8 string by string and
    costs ~10x more for the short strings tables hold."""
    pa = _pa()
    n = len(arr)
    if n < 4096:   # a label index, categories: Arrow's own check costs less than the NumPy calls
        arr.validate(full=True)
        return
    arr.validate()  # buffer sizes
    t = arr.type
    wide = pa.types.is_large_string(t) or pa.types.is_large_binary(t)
    _, offsets, data = arr.buffers()
    off = np.frombuffer(offsets, dtype=np.int64 if wide else np.int32)[arr.offset : arr.offset + n + 1]
    if off.size != n + 1:
        raise _bad("string offsets buffer too short")
    size = 0 if data is None else data.size
    first, last = int(off[0]), int(off[-1])
    if first < 0 or last > size or not bool((off[1:] >= off[:-1]).all()):
        raise _bad("string offsets out of order or outside the data")
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        body = np.frombuffer(data, dtype=np.uint8)[first:last] if data is not None else np.zeros(0, np.uint8)
        if body.size and int(body.max()) >= 0x80:
            arr.validate(full=True)


def _validate(arr) -> None:
    """arr reads only inside its buffers: checked in full (hostile messages), as cheaply as it can be."""
    pa = _pa()
    t = arr.type
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
        check_strings(arr)
    elif pa.types.is_dictionary(t):
        pass    # checked as it was built (_array_from): the dictionary, the indices, their range
    else:
        arr.validate(full=True)


def decode(payload: Any) -> Any:
    pa = _pa()
    if type(payload) is not dict or payload.get("v") != FORMAT or set(payload) != {"v", "kind", "schema", "columns"}:
        raise _bad("unknown layout (version or fields)")
    kind = payload["kind"]
    raw = payload["schema"]
    if kind not in _KINDS or type(raw) is not np.ndarray or raw.dtype != np.uint8:
        raise _bad("kind and schema")
    schema = pa.ipc.read_schema(pa.py_buffer(raw))
    cols = payload["columns"]
    if type(cols) is not list or len(cols) != len(schema):
        raise _bad(f"{len(cols) if type(cols) is list else '?'} columns for a schema of {len(schema)}")
    columns = []
    for field, chunks in zip(schema, cols):
        if type(chunks) is not list:
            raise _bad("a column must be a list of chunks")
        arrays = [_array_from(c, field.type) for c in chunks]
        for a in arrays:
            _validate(a)   # offsets, UTF-8, bounds: nothing reads outside its buffers
        columns.append(arrays)
    if kind == "array":
        if len(columns[0]) != 1:
            raise _bad("an array record holds one chunk")
        return columns[0][0]
    if kind == "chunked":
        return pa.chunked_array(columns[0], type=schema.field(0).type)
    if kind == "batch":
        if any(len(c) != 1 for c in columns):
            raise _bad("a record batch column is one chunk")
        return pa.RecordBatch.from_arrays([c[0] for c in columns], schema=schema)
    return pa.Table.from_arrays([pa.chunked_array(c, type=f.type) for c, f in zip(columns, schema)], schema=schema)


# ---- q tables <-> Arrow ---------------------------------------------------------------------------

# Arrow integer types q has no vector for -> the q-typed NumPy dtype holding every value.
_WIDEN = {"int8": np.int16, "uint16": np.int32, "uint32": np.int64, "uint64": np.int64, "halffloat": np.float32}
_Q_NULL = {np.dtype(np.int16): np.iinfo(np.int16).min, np.dtype(np.int32): np.iinfo(np.int32).min,
           np.dtype(np.int64): np.iinfo(np.int64).min}


def _one(arr):
    pa = _pa()
    if isinstance(arr, pa.ChunkedArray):
        return arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    return arr


def _symbols(arr, direct):
    pa = _pa()
    if pa.types.is_string(arr.type):
        arr = arr.cast(pa.large_string())
    if direct:
        _, offsets, data = arr.buffers()
        n = len(arr)
        off = np.frombuffer(offsets, dtype=np.int64)[arr.offset : arr.offset + n + 1] if offsets is not None else np.zeros(1, np.int64)
        valid = None if not arr.null_count else np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), dtype=np.uint8)
        body = np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)
        return _SymbolSource("arrow", [(np.ascontiguousarray(off), body, valid)], n)
    out = np.array(arr.fill_null("").to_pylist() if arr.null_count else arr.to_pylist(), dtype=object)
    return out if len(out) else np.empty(0, dtype=object)


def q_vector(arr: Any, where: str, direct: bool = False) -> Any:
    """One Arrow array as the q vector kdb+ reads naturally: nulls as q's nulls, strings and
    dictionaries of strings as symbols, timestamps (in UTC, any unit) as timestamps."""
    pa = _pa()
    arr = _one(arr)
    t = arr.type
    if pa.types.is_dictionary(t):
        if not (pa.types.is_string(t.value_type) or pa.types.is_large_string(t.value_type)):
            raise EncodeError(f"{where} (Arrow {t}) has no q type: q symbols need string dictionaries", type(arr))
        if direct:
            codes = arr.indices.cast(pa.int64()).fill_null(-1).to_numpy(zero_copy_only=False)
            texts = [s.encode("utf-8", "surrogateescape") for s in arr.dictionary.to_pylist()]
            return _SymbolSource("categorical", (codes, texts), len(arr))
        return _symbols(arr.cast(t.value_type), False)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return _symbols(arr, direct)
    if pa.types.is_boolean(t):
        if arr.null_count:
            raise EncodeError(f"{where} (Arrow bool) has no q type with nulls: q booleans have none", type(arr))
        return arr.to_numpy(zero_copy_only=False)
    if pa.types.is_timestamp(t):
        if t.tz is not None:
            arr = arr.cast(pa.timestamp(t.unit))      # the UTC instants, naive, as q's timestamps
        return arr.to_numpy(zero_copy_only=False)     # nulls become NaT, q's null timestamp
    if pa.types.is_duration(t) or pa.types.is_date32(t):
        return arr.to_numpy(zero_copy_only=False)
    if pa.types.is_floating(t) or pa.types.is_integer(t):
        target = _WIDEN.get(str(t).replace("float16", "halffloat"))
        if str(t) == "uint64" and arr.null_count < len(arr):
            import pyarrow.compute as pc

            if pc.max(arr).as_py() > np.iinfo(np.int64).max:
                raise EncodeError(f"{where} (Arrow uint64) has a value above q's long range", type(arr))
        if arr.null_count:
            if pa.types.is_floating(t):
                out = arr.to_numpy(zero_copy_only=False)       # nulls as NaN, q's null float
                return out.astype(target) if target is not None else out
            dtype = np.dtype(target) if target is not None else np.dtype(t.to_pandas_dtype())
            null = _Q_NULL.get(dtype)
            if null is None:
                raise EncodeError(f"{where} (Arrow {t}) has nulls, and q's {dtype} type has none", type(arr))
            return arr.cast(pa.from_numpy_dtype(dtype)).fill_null(null).to_numpy()
        out = arr.to_numpy(zero_copy_only=target is None)
        return out.astype(target) if target is not None else out
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return [b"" if v is None else v for v in arr.to_pylist()]
    raise EncodeError(f"{where} (Arrow {t}) has no q type", type(arr))


def table_from_arrow(obj: Any, _direct: bool = False) -> Table:
    """The q table of an Arrow table or record batch. Fixed-width columns without nulls are NumPy
    views of the Arrow buffers (no copy)."""
    names = list(obj.schema.names)
    if len(set(names)) != len(names):
        raise EncodeError(f"a q table needs distinct column names, got {names[:10]!r}")
    return Table({name: q_vector(obj.column(i), f"column {name!r}", _direct) for i, name in enumerate(names)})


def _null_of(arr):
    """The mask of q nulls in a q vector's NumPy values (None when it has none)."""
    kind = arr.dtype.kind
    if kind in "mM":
        mask = np.isnat(arr)
    elif arr.dtype in _Q_NULL:
        mask = arr == _Q_NULL[arr.dtype]
    else:
        return None
    return mask if mask.any() else None


def arrow_column(col: Any, where: str) -> Any:
    """One q column as an Arrow array: the NumPy buffer itself for fixed-width columns (q nulls
    of integer and temporal types as Arrow nulls, in a validity bitmap beside the same data)."""
    pa = _pa()
    if isinstance(col, Vector):
        col = col.values
    if isinstance(col, bytes):
        return pa.array(np.frombuffer(col, dtype="S1"), pa.binary(1))
    if isinstance(col, list):
        return pa.array(col)
    if col.dtype.kind == "O":
        return pa.array(col, type=pa.string()) if all(type(v) is str for v in col[:1]) else pa.array(col.tolist())
    if col.dtype.kind in "biufmM":
        arr = np.ascontiguousarray(col)
        t = pa.from_numpy_dtype(arr.dtype)
        if arr.dtype.kind == "b":
            return pa.array(arr)
        mask = _null_of(arr)
        validity = None if mask is None else pa.py_buffer(np.packbits(~mask, bitorder="little"))
        return pa.Array.from_buffers(t, len(arr), [validity, pa.py_buffer(arr)],
                                     null_count=0 if mask is None else int(mask.sum()))
    return pa.array(col)


def table_to_arrow(table: Table) -> Any:
    pa = _pa()
    return pa.table({name: arrow_column(col, f"column {name!r}") for name, col in table.items()})
