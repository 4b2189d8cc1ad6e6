"""A `qwire` serialization family for Dask's distributed scheduler.

    import qwire.dask                       # registers the family "qwire" (importing is enough)
    cluster = LocalCluster(**qwire.dask.worker_options())      # workers import it and use it
    client = Client(cluster, **qwire.dask.client_options())

`serialize(x)` returns Dask's (header, frames) with frames = the qwire message's segments followed
by its out-of-band buffers (`qwire.dumps(..., buffer_callback=...)`): nothing is joined or copied on
the way out. `deserialize` decodes with `qwire.loads(message, buffers=frames)`, so arrays are
read-only views of the frames Dask received; the message's own segments are joined only when it has
more than one (a large in-band `bytes` or string payload).

Types: every value qwire writes, as `qwire.loads(qwire.dumps(x))` gives it back: NumPy arrays and
scalars, pandas DataFrames, Series and Index objects exactly (the codec's own frames,
docs/TABLES.md), Arrow and polars tables, and Python values (docs/TYPES.md). A NumPy scalar (a
reduction's result) is sent as a one-item array and comes back as the same NumPy scalar, where
qwire's mapping would give an np.int64 or np.float64 back as a Python int or float. What qwire cannot
write it refuses with an exception, and Dask then tries the next family in
the list (so keep "pickle" after "qwire" for what qwire does not cover, or leave it out to refuse
it). Task graphs (functions and their arguments) are pickled by Dask whatever the list says: only
data that Dask wraps for its serializers (results moved between workers, gather, scatter) uses it.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ._core import dumps, loads
from .errors import DecodeError, EncodeError

__all__ = ["FAMILY", "serialize", "deserialize", "register", "client_options", "worker_options"]

FAMILY = "qwire"
SERIALIZERS = [FAMILY, "dask", "pickle"]


def serialize(x: Any) -> tuple[dict[str, Any], list[memoryview]]:
    """Dask's family `dumps`: (header, frames), frames the message's segments then its buffers.
    NotImplementedError (Dask's signal to try the next family) for what qwire does not carry."""
    buffers: list[Any] = []
    scalar = isinstance(x, np.generic)
    try:
        msg = dumps(np.asarray(x).reshape(1) if scalar else x, buffer_callback=buffers.append)
    except (TypeError, EncodeError) as e:
        raise NotImplementedError(f"qwire does not carry this {type(x).__name__}: {e}") from e
    segments = msg.segments()
    frames = segments + [b.raw() for b in buffers]
    return {"qwire-segments": len(segments), "qwire-numpy-scalar": scalar}, frames


def deserialize(header: dict[str, Any], frames: list[Any]) -> Any:
    """Dask's family `loads`."""
    k = int(header["qwire-segments"])
    message = frames[0] if k == 1 else b"".join(memoryview(f).cast("B") for f in frames[:k])
    value = loads(message, buffers=frames[k:])
    if not header.get("qwire-numpy-scalar"):
        return value
    if type(value) is not np.ndarray or value.shape != (1,):
        raise DecodeError("a NumPy scalar frame must hold a one-item array")
    return value[0]


def register() -> None:
    """Register the family with distributed (done when this module is imported)."""
    from distributed.protocol.serialize import register_serialization_family

    register_serialization_family(FAMILY, serialize, deserialize)  # type: ignore[no-untyped-call]


def client_options(serializers: list[str] | None = None) -> dict[str, Any]:
    """Keyword arguments for distributed.Client: qwire first, then Dask's own families."""
    names = list(serializers or SERIALIZERS)
    return {"serializers": names, "deserializers": names}


def worker_options(serializers: list[str] | None = None) -> dict[str, Any]:
    """Keyword arguments for LocalCluster / Worker / Nanny: the same lists, and a preload that
    imports this module (registering the family) in every worker process."""
    return {**client_options(serializers), "preload": ["qwire.dask"]}


register()
