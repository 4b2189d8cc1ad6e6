"""qwire as Ray's serializer for chosen types, on the driver and on every worker.

    import qwire.ray
    qwire.ray.init([pd.DataFrame, Trade], num_cpus=2)   # ray.init + registration everywhere

`init` calls `ray.init` with a `worker_process_setup_hook` (merged into your runtime_env) that
registers the same types in each worker process as it starts, and registers them in the driver.
For a cluster you start yourself, pass `runtime_env=qwire.ray.runtime_env(types)` to `ray.init`
(or to a job) and call `qwire.ray.register(types)` in the driver.

For a registered type, Ray's serializer calls `qwire.dumps(value, buffer_callback=...)` and hands
Ray the message bytes and the out-of-band buffers as `pickle.PickleBuffer`s, which Ray's protocol-5
pickling stores out of band in its object store (zero-copy, shared by the workers on a node);
deserializing is `qwire.loads(message, buffers=...)`, so arrays are read-only views of the object
store. Ray still pickles the envelope (a bytes object and buffer references: nothing that builds
other objects), and everything of a type you did not register goes through Ray's own serializer.
pandas DataFrames, Series and Index objects come back exactly (dtypes, missing strings,
categoricals and indexes kept: the codec's own frames, docs/TABLES.md); other types use qwire's type
mapping (docs/TYPES.md), so register only types whose values round-trip (a registered dataclass,
qwire.Table, ...).
"""
from __future__ import annotations

import importlib
import pickle
from collections.abc import Iterable
from typing import Any

from ._core import dumps, loads

__all__ = ["init", "register", "runtime_env", "setup_worker", "stats"]

_counts = {"serialized": 0, "deserialized": 0}


def stats() -> dict[str, int]:
    """How many values this process has serialized and deserialized with qwire for Ray."""
    return dict(_counts)


def _type_name(t: type) -> str:
    return f"{t.__module__}:{t.__qualname__}"


def _resolve(name: str) -> Any:
    module, _, qualname = name.partition(":")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _serialize(value: Any) -> tuple[Any, ...]:
    buffers: list[pickle.PickleBuffer] = []
    msg = dumps(value, buffer_callback=buffers.append)
    _counts["serialized"] += 1
    return (bytes(msg), buffers)


def _deserialize(payload: tuple[Any, ...]) -> Any:
    message, buffers = payload
    _counts["deserialized"] += 1
    return loads(message, buffers=buffers)


def register(types: Iterable[type]) -> None:
    """Use qwire for these types in this process (driver or worker)."""
    from ray.util import register_serializer

    for t in types:
        register_serializer(t, serializer=_serialize, deserializer=_deserialize)


_TYPES_VARIABLE = "QWIRE_RAY_TYPES"


def setup_worker() -> None:
    """The worker_process_setup_hook: registers the types named in QWIRE_RAY_TYPES."""
    import os

    names = [n for n in os.environ.get(_TYPES_VARIABLE, "").split(",") if n]
    register([_resolve(n) for n in names])


def runtime_env(types: Iterable[type], base: dict[str, Any] | None = None) -> dict[str, Any]:
    """A runtime_env whose worker_process_setup_hook ("qwire.ray.setup_worker", by name: no code
    is pickled) registers qwire for `types` in each worker; the types travel by name in the
    QWIRE_RAY_TYPES environment variable and are imported in the worker. Refuses a base that has a
    hook of its own."""
    env = dict(base or {})
    if "worker_process_setup_hook" in env:
        raise ValueError("runtime_env already has a worker_process_setup_hook; call qwire.ray.register "
                         "from it instead")
    env["worker_process_setup_hook"] = "qwire.ray.setup_worker"
    env["env_vars"] = {**env.get("env_vars", {}), _TYPES_VARIABLE: ",".join(_type_name(t) for t in types)}
    return env


def init(types: Iterable[type], **ray_init_options: Any) -> Any:
    """ray.init(**ray_init_options) with qwire registered for `types` on the driver and on every
    worker; returns what ray.init returns."""
    import ray

    types = list(types)
    for t in types:
        if _resolve(_type_name(t)) is not t:
            raise TypeError(f"{t!r} is not importable by its name {_type_name(t)}: workers could not find it")
    options = dict(ray_init_options)
    options["runtime_env"] = runtime_env(types, options.get("runtime_env"))
    context = ray.init(**options)
    register(types)
    return context
