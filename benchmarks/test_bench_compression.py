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


def _median_seconds(fn, arg, repeat):
    fn(arg)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn(arg)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(repeat=9):
    print(f"median of {repeat} runs; MB/s = uncompressed 10**6 bytes per second")
    print(f"{'data':<11} {'MB':>6} | {'codec':<6} {'ratio':>7} {'compress':>9} {'decompress':>10}"
          f" | {'comp x zlib':>11} {'decomp x zlib':>13}")
    for name in DATASETS:
        data = dataset(name)
        mb = len(data) / 1e6
        speeds = {}
        for codec, (comp, decomp) in CODECS.items():
            z = compressed(name, codec)
            c = mb / _median_seconds(comp, data, repeat)
            d = mb / _median_seconds(decomp, z, repeat) if z is not None else None
            speeds[codec] = (c, d)
            ratio = f"{len(z) / len(data):.3f}" if z is not None else "abort"
            dtext = f"{d:10.0f}" if d is not None else f"{'-':>10}"
            rel = ""
            if codec == "qwire":
                pass
            else:
                qc, qd = speeds["qwire"]
                rel = f" | {qc / c:10.2f}x {(qd / d if qd else float('nan')):12.2f}x"
            print(f"{name:<11} {mb:6.1f} | {codec:<6} {ratio:>7} {c:9.0f} {dtext}{rel}")


if __name__ == "__main__":
    main()
