"""The benchmark workloads: one definition shared by `python -m qwire bench` and `benchmarks/`.

Every workload builds its data from a fixed seed, so two runs (and two machines) measure the same
values. `scale` shrinks only the workloads whose timings are long (`--quick` uses 1/10); the small
messages keep their size, because their size is the point of them.
"""
from __future__ import annotations

import pickle
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

__all__ = ["Workload", "WORKLOADS", "QUICK_SCALE", "get_workloads", "workload_from_file"]

SEED = 20240101
QUICK_SCALE = 0.1


@dataclass
class Workload:
    """A named benchmark input. `build(scale)` returns the object to serialize."""

    name: str
    title: str
    build: Callable[[float], Any] = field(repr=False)
    scales: bool = True  # whether --quick shrinks it
    in_default: bool = True  # run when no --workload is named (the table workloads run by name)

    def make(self, scale: float = 1.0) -> Any:
        return self.build(scale if self.scales else 1.0)

    def describe(self, obj: Any, scale: float = 1.0) -> str:
        """The title, or for a shrunk workload a description of the object actually built."""
        return describe_value(obj) if self.scales and scale != 1.0 else self.title


def _rng(offset: int = 0) -> np.random.Generator:
    return np.random.default_rng(SEED + offset)


def _scaled(n: int, scale: float) -> int:
    return max(1, int(n * scale))


def big_float_array(scale: float) -> np.ndarray:
    return _rng(1).standard_normal(_scaled(10_000_000, scale))  # 80 MB at full scale


def small_float_array(scale: float) -> np.ndarray:
    return _rng(2).standard_normal(1_000)


def small_dict(scale: float) -> dict:
    """Six mixed scalars, all of kinds that msgpack and msgspec also carry natively."""
    rng = _rng(3)
    return {
        "id": int(rng.integers(1, 10**9)),
        "price": round(float(rng.uniform(10, 500)), 2),
        "size": int(rng.integers(1, 10_000)),
        "sym": "AAPL",
        "active": True,
        "venue": None,
    }


def small_list(scale: float) -> list:
    return [1, "b", uuid.UUID(bytes=_rng(4).bytes(16), version=4)]


SYMBOLS = [f"S{i:03d}" for i in range(100)]


def trade_table(scale: float):
    """A pandas DataFrame: int64, float64, a 100-value symbol column and datetime64[ns].

    The symbol column is what pandas builds from Python strings by default (object in pandas 2,
    `str` in pandas 3), since that is the DataFrame users have.
    """
    import pandas as pd

    rng = _rng(6)
    n = _scaled(1_000_000, scale)
    start = np.datetime64("2024-01-02T09:30:00", "ns")
    times = start + np.sort(rng.integers(0, 6 * 3600 * 10**9, n)).astype("timedelta64[ns]")
    return pd.DataFrame(
        {
            "id": np.arange(n, dtype=np.int64),
            "price": rng.uniform(10, 500, n).round(2),
            "sym": np.array(SYMBOLS, dtype=object)[rng.integers(0, len(SYMBOLS), n)].tolist(),
            "time": times,
        }
    )


def strings(scale: float) -> list:
    rng = _rng(7)
    n = _scaled(1_000_000, scale)
    lengths = rng.integers(4, 16, n)
    letters = rng.integers(ord("a"), ord("z") + 1, int(lengths.sum()), dtype=np.uint8).tobytes().decode("ascii")
    ends = np.cumsum(lengths).tolist()
    starts = [0] + ends[:-1]
    return [letters[a:b] for a, b in zip(starts, ends)]


def ints(scale: float) -> list:
    return _rng(8).integers(-(10**12), 10**12, _scaled(1_000_000, scale)).tolist()


def records(scale: float) -> list:
    rng = _rng(9)
    n = 10_000
    syms = rng.integers(0, len(SYMBOLS), n).tolist()
    prices = rng.uniform(10, 500, n).round(2).tolist()
    sizes = rng.integers(1, 10_000, n).tolist()
    sides = rng.integers(0, 2, n).tolist()
    return [
        {"id": i, "sym": SYMBOLS[s], "price": p, "size": q, "side": "buy" if b else "sell"}
        for i, s, p, q, b in zip(range(n), syms, prices, sizes, sides)
    ]


def _table_workloads() -> list:
    from .tables import table_workloads

    return table_workloads(Workload, _scaled)


WORKLOADS = {
    w.name: w
    for w in [
        Workload("big-array", "float64 array, 10M items (80 MB)", big_float_array),
        Workload("small-array", "float64 array, 1k items", small_float_array, scales=False),
        Workload("small-dict", "dict of 6 mixed scalars", small_dict, scales=False),
        Workload("small-list", "[1, 'b', UUID]", small_list, scales=False),
        Workload("table", "DataFrame, 1M rows: int64, float64, symbol (100 values), datetime64[ns]", trade_table),
        Workload("strings", "list of 1M str (4-15 chars)", strings),
        Workload("ints", "list of 1M int", ints),
        Workload("records", "list of 10k dicts (5 keys)", records, scales=False),
        *_table_workloads(),
    ]
}


def get_workloads(names=None) -> list[Workload]:
    """The named workloads in the order given (all, in the standard order, when names is empty)."""
    if not names:
        return [w for w in WORKLOADS.values() if w.in_default]
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        raise KeyError(f"unknown workload {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}")
    return [WORKLOADS[n] for n in dict.fromkeys(names)]


def describe_value(obj) -> str:
    """A short description of a benchmark object: type and size."""
    if isinstance(obj, np.ndarray):
        return f"{obj.dtype} array, {obj.size:,} items ({_human_bytes(obj.nbytes)})"
    if type(obj).__name__ == "DataFrame" and type(obj).__module__.startswith("pandas"):
        dtypes = ", ".join(f"{c}:{t}" for c, t in obj.dtypes.items())
        return f"DataFrame, {len(obj):,} rows: {dtypes}"
    if type(obj).__name__ in ("Table", "DataFrame") and hasattr(obj, "schema"):
        return f"{type(obj).__module__.partition('.')[0]}.{type(obj).__name__}, {obj.shape[0]:,} rows x {obj.shape[1]} columns"
    if isinstance(obj, (list, tuple)) and obj:
        return f"{type(obj).__name__} of {len(obj):,} {type(obj[0]).__name__}"
    if isinstance(obj, (list, tuple, dict)):
        return f"{type(obj).__name__} of {len(obj):,} items"
    return type(obj).__name__


def _human_bytes(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _looks_like_qwire_message(data: bytes) -> bool:
    if len(data) < 9 or data[0] not in (0, 1) or data[1] > 2 or data[2] > 2:
        return False
    order = "little" if data[0] == 1 else "big"
    return int.from_bytes(data[4:8], order) + (data[3] << 32) == len(data)


def workload_from_file(path: str) -> Workload:
    """A workload of the user's own data: a pickle file, or a qwire/kdb+ message file.

    A pickle file is unpickled, which runs code it names: only pass files you trust.
    """
    with open(path, "rb") as f:
        data = f.read()
    if _looks_like_qwire_message(data):
        import qwire

        obj = qwire.loads(data)  # compressed messages included
        source = "qwire message"
    else:
        obj = pickle.loads(data)
        source = "pickle"
    return Workload(f"data:{path}", f"{describe_value(obj)} (from {source} file)", lambda scale: obj, scales=False)

