"""Compression throughput: qwire (kdb+'s algorithm, spec 5.3/5.4) beside zlib level 1.

    pytest benchmarks/test_bench_compression.py              # pytest-benchmark tables
    python benchmarks/test_bench_compression.py              # MB/s medians and ratios

Throughput is always uncompressed megabytes (10**6 bytes) per second, for both directions, so the
numbers compare directly. The messages are built by hand (deterministic seeds), as q lays them out:

* table:      ([] time: 0..1M longs; price: 1M uniform random floats; sym: 1M of 100 symbols)
* table_walk: the same with price a random walk in cent ticks (real prices move little)
* symbols:    a 1M-symbol vector drawn at random from 1000 ticker-like names (2-5 letters)
* symbols_sorted: the same symbols sorted, as a parted (`p#`) sym column is stored
* random:     a 16 MB byte vector of random bytes

kdb+'s rule aborts when the output would exceed half the input: `table` (the random floats),
`symbols` (short names in random order: the 2-byte XOR hash finds few long matches) and `random`
are sent uncompressed by kdb+, so for them the qwire number is the time it takes to find that
out, and there is nothing to decompress.
"""
import os
import platform
import statistics
import struct
import sys
import time
import zlib
from functools import lru_cache

import numpy as np
import pytest

try:
    from qwire import _compress
except ImportError:  # run from a checkout without installing: python benchmarks/...
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "src"))
    from qwire import _compress

ROWS = 1_000_000
DATASETS = ["table", "table_walk", "symbols", "symbols_sorted", "random"]
COMPRESSIBLE = ["table_walk", "symbols_sorted"]
ABORTS = ["table", "symbols", "random"]


def _message(payload):
    return bytes([1, 0, 0, 0]) + struct.pack("<I", 8 + len(payload)) + payload


def _vector(type_code, data, count):
    return bytes([type_code, 0]) + struct.pack("<I", count) + data


def _symbols(names, index):
    return _vector(11, b"".join(names[i] + b"\x00" for i in index), len(index))


def _table(columns):
    names = b"".join(name.encode() + b"\x00" for name in columns)
    head = bytes([98, 0, 99]) + _vector(11, names, len(columns)) + _vector(0, b"", len(columns))
    return _message(head + b"".join(columns.values()))


@lru_cache(maxsize=None)
def dataset(name):
    rng = np.random.default_rng(20240601)
    if name in ("table", "table_walk"):
        if name == "table":
            price = rng.random(ROWS)
        else:
            price = np.round(100 + np.cumsum(rng.choice([-0.01, 0, 0, 0, 0.01], ROWS)), 2)
        syms = [b"s%02d" % i for i in range(100)]
        return _table({
            "time": _vector(7, np.arange(ROWS, dtype="<i8").tobytes(), ROWS),
            "price": _vector(9, price.astype("<f8").tobytes(), ROWS),
            "sym": _symbols(syms, rng.integers(0, 100, ROWS)),
        })
    if name in ("symbols", "symbols_sorted"):
        letters = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", np.uint8)
        names = [bytes(letters[rng.integers(0, 26, rng.integers(2, 6))]) for _ in range(1000)]
        index = rng.integers(0, 1000, ROWS)
        if name == "symbols_sorted":
            index = np.sort(index)
        return _message(_symbols(names, index))
    if name == "random":
        size = 16 * 2**20
        return _message(_vector(4, rng.bytes(size), size))
    raise KeyError(name)


@lru_cache(maxsize=None)
def compressed(name, codec):
    data = dataset(name)
    if codec == "qwire":
        return _compress.compress(data)
    return zlib.compress(data, 1)


CODECS = {
    "qwire": (lambda data: _compress.compress(data), lambda z: _compress.decompress(z)),
    "zlib1": (lambda data: zlib.compress(data, 1), zlib.decompress),
}


def _record(benchmark, name, codec):
    data = dataset(name)
    z = compressed(name, codec)
    benchmark.extra_info["size"] = len(data)
    benchmark.extra_info["ratio"] = None if z is None else round(len(z) / len(data), 4)


@pytest.mark.parametrize("codec", list(CODECS))
@pytest.mark.parametrize("name", DATASETS)
def test_compress(benchmark, name, codec):
    data = dataset(name)
    _record(benchmark, name, codec)
    out = benchmark(CODECS[codec][0], data)
    if codec == "qwire":
        assert (out is None) == (name in ABORTS)


@pytest.mark.parametrize("codec", list(CODECS))
@pytest.mark.parametrize("name", COMPRESSIBLE)
def test_decompress(benchmark, name, codec):
    data = dataset(name)
    z = compressed(name, codec)
    _record(benchmark, name, codec)
    out = benchmark(CODECS[codec][1], z)
    assert out == data


# ---------------------------------------------------------------------------------------------
# Script mode


def _time(fn, arg):
    t = time.perf_counter()
    fn(arg)
    return time.perf_counter() - t


def _machine():
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}, zlib {zlib.ZLIB_VERSION}"


def main(repeat=15):
    """Codecs are interleaved round by round, so a busy machine slows both alike."""
    print(f"{time.strftime('%Y-%m-%d')}  {_machine()}")
    print(f"median of {repeat} interleaved rounds; MB/s = uncompressed 10**6 bytes per second")
    print(f"{'data':<15} {'MB':>5} | {'qwire ratio':>11} {'compress':>9} {'decompress':>10} | "
          f"{'zlib1 ratio':>11} {'compress':>9} {'decompress':>10} | {'comp x':>7} {'decomp x':>8}")
    for name in DATASETS:
        data = dataset(name)
        mb = len(data) / 1e6
        zq, zz = compressed(name, "qwire"), compressed(name, "zlib1")
        jobs = {"qc": (CODECS["qwire"][0], data), "zc": (CODECS["zlib1"][0], data),
                "zd": (CODECS["zlib1"][1], zz)}
        if zq is not None:
            jobs["qd"] = (CODECS["qwire"][1], zq)
        times = {key: [] for key in jobs}
        for fn, arg in jobs.values():
            fn(arg)
        for _ in range(repeat):
            for key, (fn, arg) in jobs.items():
                times[key].append(_time(fn, arg))
        speed = {key: mb / statistics.median(ts) for key, ts in times.items()}
        q_ratio = f"{len(zq) / len(data):.3f}" if zq is not None else "abort"
        q_dec = f"{speed['qd']:10.0f}" if zq is not None else f"{'-':>10}"
        d_rel = f"{speed['qd'] / speed['zd']:7.2f}x" if zq is not None else f"{'-':>8}"
        print(f"{name:<15} {mb:5.1f} | {q_ratio:>11} {speed['qc']:9.0f} {q_dec} | "
              f"{len(zz) / len(data):11.3f} {speed['zc']:9.0f} {speed['zd']:10.0f} | "
              f"{speed['qc'] / speed['zc']:6.2f}x {d_rel}")


if __name__ == "__main__":
    main()
