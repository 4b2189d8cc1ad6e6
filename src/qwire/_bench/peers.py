"""The libraries a benchmark compares: qwire, pickle protocol 5 and the peers that are installed.

For each library and workload object, `prepare` returns a `Contender`: closures that serialize the
object and deserialize the payload, with the payload size and a note saying what exactly is timed.
A library that cannot carry the object natively is skipped with the reason: an encoder error, or,
for the general-purpose peers (pyfory, msgpack, msgspec), a round trip that does not give back an
equal value of the same types (msgspec writes a UUID as a str, for example).
"""
from __future__ import annotations

import importlib
import importlib.metadata
import os
import pickle
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

__all__ = ["Contender", "Skip", "LIBRARIES", "PEERS", "prepare", "library_versions", "same_value", "is_dataframe"]

BASELINE = "pickle-5"


class Skip(Exception):
    """This library does not take part in this workload; the message says why."""


@dataclass
class Contender:
    """One row of the results: `encode()` serializes the workload object, `decode()` deserializes
    the payload made beforehand, `size` is that payload's length in bytes."""

    library: str
    encode: Callable[[], Any]
    decode: Callable[[], Any]
    size: int
    note: str = ""


def is_dataframe(obj) -> bool:
    return type(obj).__name__ == "DataFrame" and type(obj).__module__.startswith("pandas")


def is_arrow_table(obj) -> bool:
    return type(obj).__name__ == "Table" and type(obj).__module__.startswith("pyarrow")


def is_polars_frame(obj) -> bool:
    return type(obj).__name__ == "DataFrame" and type(obj).__module__.startswith("polars")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def same_value(a, b) -> str | None:
    """None when `b` equals `a` with the same types throughout; otherwise what differs."""
    if type(a) is not type(b):
        return f"{type(a).__name__} comes back as {type(b).__name__}"
    if isinstance(a, np.ndarray):
        ok = a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
        return None if ok else "array values differ"
    if is_dataframe(a):
        return None if a.equals(b) and list(a.dtypes) == list(b.dtypes) else "DataFrame differs"
    if is_arrow_table(a):
        return None if a.schema.equals(b.schema, check_metadata=True) and a.equals(b) else "Table differs"
    if is_polars_frame(a):
        return None if a.schema == b.schema and a.equals(b) else "DataFrame differs"
    if isinstance(a, (list, tuple)):
        if len(a) != len(b):
            return "length differs"
        return next((d for d in map(same_value, a, b) if d), None)
    if isinstance(a, dict):
        if list(a) != list(b):
            return "keys differ"
        return next((d for d in (same_value(a[k], b[k]) for k in a) if d), None)
    if isinstance(a, float) and a != a:
        return None if b != b else "NaN differs"
    return None if a == b else "value differs"


def _checked(library: str, obj, encode, decode, note="", size=len) -> Contender:
    """Run one round trip (also the warm-up) and wrap the closures, or raise Skip."""
    try:
        payload = encode()
        decoded = decode(payload)
    except Exception as exc:  # the library refused the object: that is its answer
        raise Skip(_first_line(exc)) from None
    difference = same_value(obj, decoded)
    if difference:
        raise Skip(f"not native: {difference}")
    return Contender(library, encode, lambda: decode(payload), size(payload), note)


# ---- qwire and pickle: always present --------------------------------------------------------------


QWIRE_NOTE = (
    "ser = dumps(x), a Message: large arrays are referenced, not copied (scatter-gather segments, "
    "sent by m.write_to); de = loads(bytes): numeric vectors come back as read-only views into the "
    "input (zero-copy), a q table as qwire.Table (NumPy columns); a pandas, pyarrow or polars table comes "
    "back as itself (docs/TABLES.md)"
)
QWIRE_COPY_NOTE = "ser = dumps(x).copy(): one contiguous bytes object, as pickle in-band gives"
QWIRE_COMPRESSED_NOTE = (
    "ser = dumps(x, compress=True), kdb+'s IPC compression; shown only where kdb+'s rule keeps the "
    "compressed form (at most half the size); de = loads(bytes), which decompresses"
)


def _qwire(obj) -> list[Contender]:
    import qwire

    try:
        payload = bytes(qwire.dumps(obj))
        decoded = qwire.loads(payload)
    except Exception as exc:
        raise Skip(_first_line(exc)) from None
    contenders = [Contender("qwire", lambda: qwire.dumps(obj), lambda: qwire.loads(payload), len(payload), QWIRE_NOTE)]
    if len(qwire.dumps(obj).segments()) > 1:  # zero-copy encode: also time the contiguous copy
        contenders.append(
            Contender("qwire copy", lambda: qwire.dumps(obj).copy(), lambda: qwire.loads(payload), len(payload), QWIRE_COPY_NOTE)
        )
    compressed = bytes(qwire.dumps(obj, compress=True))
    if compressed[2]:  # header byte 2: kdb+'s rule kept the compressed form
        contenders.append(
            Contender(
                "qwire compressed",
                lambda: qwire.dumps(obj, compress=True),
                lambda: qwire.loads(compressed),
                len(compressed),
                QWIRE_COMPRESSED_NOTE,
            )
        )
    contenders += _qwire_out_of_band(qwire, obj)
    if is_dataframe(obj) and hasattr(decoded, "to_pandas"):
        try:
            decoded.to_pandas()
        except Exception:
            return contenders  # Table.to_pandas unavailable (no pandas support): the plain row stands
        contenders.append(
            Contender(
                "qwire to pandas",
                lambda: qwire.dumps(obj),
                lambda: qwire.loads(payload).to_pandas(),
                len(payload),
                "de = loads(bytes).to_pandas(), a DataFrame like pickle's",
            )
        )
    return contenders


def _qwire_out_of_band(qwire, obj) -> list[Contender]:
    """pickle-5 style out-of-band buffers, where qwire sends any (a qwire extension, not plain q)."""
    buffers: list = []
    try:
        header = bytes(qwire.dumps(obj, buffer_callback=buffers.append))
    except TypeError:  # a qwire without buffer_callback
        return []
    if not buffers:
        return []

    def encode_out_of_band():
        out: list = []
        return qwire.dumps(obj, buffer_callback=out.append), out

    try:
        qwire.loads(header, buffers=buffers)
    except qwire.DecodeError:  # e.g. the memory budget, which counts the message without its buffers
        return []
    size = len(header) + sum(memoryview(b).nbytes for b in buffers)
    note = "dumps(x, buffer_callback=...) / loads(b, buffers=...): pickle-5 style, large vectors out of band"
    return [Contender("qwire oob", encode_out_of_band, lambda: qwire.loads(header, buffers=buffers), size, note)]


def _pickle(obj) -> list[Contender]:
    payload = pickle.dumps(obj, protocol=5)
    contenders = [
        Contender(BASELINE, lambda: pickle.dumps(obj, protocol=5), lambda: pickle.loads(payload), len(payload), "in-band")
    ]
    buffers: list = []
    header = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    if buffers:

        def encode_out_of_band():
            out: list = []
            return pickle.dumps(obj, protocol=5, buffer_callback=out.append), out

        size = len(header) + sum(memoryview(b).nbytes for b in buffers)
        contenders.append(
            Contender(
                "pickle-5 oob",
                encode_out_of_band,
                lambda: pickle.loads(header, buffers=buffers),
                size,
                "out-of-band buffers: array memory is referenced, not copied, on both sides",
            )
        )
    return contenders


# ---- peers --------------------------------------------------------------------------------------------


def _pyfory(obj) -> list[Contender]:
    import pyfory

    fory = pyfory.Fory(xlang=False, ref=False)  # strict: unregistered classes are refused, not pickled
    return [_checked("pyfory", obj, lambda: fory.serialize(obj), fory.deserialize, "Fory(xlang=False, ref=False)")]


def _msgpack(obj) -> list[Contender]:
    import msgpack

    return [_checked("msgpack", obj, lambda: msgpack.packb(obj), msgpack.unpackb)]


def _msgspec(obj) -> list[Contender]:
    import msgspec

    encoder, decoder = msgspec.msgpack.Encoder(), msgspec.msgpack.Decoder()
    return [_checked("msgspec", obj, lambda: encoder.encode(obj), decoder.decode, "msgspec.msgpack, untyped decode")]


def _import_pykx():
    os.environ.setdefault("PYKX_UNLICENSED", "true")  # must be set before the import
    return importlib.import_module("pykx")


PYKX_NOTE = (
    "unlicensed; ser = kx.serialize(kx.toq(x)).copy(); de = kx.deserialize(b) converted back with "
    ".np() for arrays, .pd() for DataFrames, .py() otherwise"
)


def _pykx(obj) -> list[Contender]:
    if is_arrow_table(obj) or is_polars_frame(obj):
        raise Skip("measured on the pandas workloads only")
    kx = _import_pykx()
    if isinstance(obj, np.ndarray):
        convert = lambda q: q.np()  # noqa: E731
    elif is_dataframe(obj):
        convert = lambda q: q.pd()  # noqa: E731
    else:
        convert = lambda q: q.py()  # noqa: E731

    def encode():
        return kx.serialize(kx.toq(obj)).copy()

    try:
        payload = encode()
        convert(kx.deserialize(payload))
    except Exception as exc:
        raise Skip(_first_line(exc)) from None
    return [Contender("pykx", encode, lambda: convert(kx.deserialize(payload)), len(payload), PYKX_NOTE)]


ARROW_NOTE = (
    "IPC stream format; an array travels as a one-column batch and comes back as a zero-copy NumPy "
    "view, a DataFrame goes through Table.from_pandas and comes back as a pyarrow.Table"
)


def _arrow(obj) -> list[Contender]:
    import pyarrow as pa
    import pyarrow.ipc as ipc

    def write(batch_or_table):
        sink = pa.BufferOutputStream()
        with ipc.new_stream(sink, batch_or_table.schema) as writer:
            writer.write(batch_or_table)
        return sink.getvalue()

    if isinstance(obj, np.ndarray) and obj.ndim == 1 and obj.dtype.kind in "biuf":
        payload = write(pa.record_batch([pa.array(obj)], names=["x"]))
        return [
            Contender(
                "arrow",
                lambda: write(pa.record_batch([pa.array(obj)], names=["x"])),
                lambda: ipc.open_stream(payload).read_next_batch().column(0).to_numpy(zero_copy_only=True),
                payload.size,
                ARROW_NOTE,
            )
        ]
    if is_dataframe(obj):
        payload = write(pa.Table.from_pandas(obj, preserve_index=False))
        encode = lambda: write(pa.Table.from_pandas(obj, preserve_index=False))  # noqa: E731
        return [
            Contender("arrow", encode, lambda: ipc.open_stream(payload).read_all(), payload.size, ARROW_NOTE),
            Contender("arrow to pandas", encode, lambda: ipc.open_stream(payload).read_all().to_pandas(), payload.size,
                      "de = read_all().to_pandas(), a DataFrame like pickle's"),
        ]
    if is_arrow_table(obj):
        payload = write(obj)
        return [Contender("arrow", lambda: write(obj), lambda: ipc.open_stream(payload).read_all(), payload.size,
                          "IPC stream of the pyarrow.Table; de = read_all() (zero-copy)")]
    if is_polars_frame(obj):
        import io

        def write_polars():
            out = io.BytesIO()
            obj.write_ipc_stream(out, compression="uncompressed")
            return out.getvalue()

        import polars as pl

        data = write_polars()
        return [Contender("arrow", write_polars, lambda: pl.read_ipc_stream(data), len(data),
                          "polars' Arrow IPC stream (write_ipc_stream / read_ipc_stream)")]
    raise Skip("Arrow IPC carries tables and arrays only")


# name -> (import name, distribution name, prepare function)
LIBRARIES = {
    "qwire": ("qwire", "qwire", _qwire),
    "pickle": ("pickle", None, _pickle),
    "pyfory": ("pyfory", "pyfory", _pyfory),
    "msgpack": ("msgpack", "msgpack", _msgpack),
    "msgspec": ("msgspec", "msgspec", _msgspec),
    "pykx": ("pykx", "pykx", _pykx),
    "arrow": ("pyarrow", "pyarrow", _arrow),
}
PEERS = [name for name in LIBRARIES if name not in ("qwire", "pickle")]


def _version(name: str) -> str | None:
    module, dist, _ = LIBRARIES[name]
    if dist is None:
        return f"stdlib, protocol {pickle.HIGHEST_PROTOCOL} max"
    try:
        version = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        version = None
    try:
        if name == "pykx":
            _import_pykx()
        else:
            imported = importlib.import_module(module)
            version = version or getattr(imported, "__version__", "unknown")
    except Exception:
        return None
    return version


def library_versions(names) -> dict[str, str | None]:
    """Each library's version, None for one that is not installed (or fails to import)."""
    return {name: _version(name) for name in names}


def prepare(name: str, obj) -> list[Contender]:
    """The contenders of one library for one object; raises Skip when it takes no part."""
    return LIBRARIES[name][2](obj)
