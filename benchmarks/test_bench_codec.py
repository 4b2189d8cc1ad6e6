"""Codec benchmarks (pytest-benchmark): every workload encoded and decoded by qwire and by pickle
protocol 5 in the same run, grouped by workload and phase so that pytest-benchmark's table puts
them side by side; plus the peers the targets name (Arrow IPC and PyKX for the table, msgspec for
the small dict, and qwire's table decode converted on to pandas) and, for the 80 MB array,
qwire's contiguous copy and pickle's out-of-band mode.

    pytest benchmarks/ --benchmark-columns=median,iqr,rounds --benchmark-sort=name

See benchmarks/README.md for what each library call does and the targets.
"""
from __future__ import annotations

import pytest

from qwire._bench.workloads import WORKLOADS

EXTRA = {
    "big-array": ["qwire copy", "pickle-5 oob"],
    "small-dict": ["msgspec"],
    "table": ["arrow", "pykx", "qwire to pandas"],
}
ENCODE_ONLY = {"qwire copy"}  # its decode is qwire's
DECODE_ONLY = {"qwire to pandas"}  # its encode is qwire's
CASES = [
    pytest.param(workload, label, id=f"{workload}-{label.replace(' ', '_')}")
    for workload in WORKLOADS
    if WORKLOADS[workload].in_default  # the table workloads: benchmarks/test_bench_tables.py
    for label in ["qwire", "pickle-5"] + EXTRA.get(workload, [])
]


@pytest.mark.parametrize("workload, label", [case for case in CASES if case.values[1] not in DECODE_ONLY])
def test_encode(benchmark, contender, record_median, workload, label):
    c = contender(workload, label)
    benchmark.group = f"{workload} encode"
    benchmark.extra_info["size"] = c.size
    benchmark(c.encode)
    record_median(workload, "encode", label, benchmark)


@pytest.mark.parametrize("workload, label", [case for case in CASES if case.values[1] not in ENCODE_ONLY])
def test_decode(benchmark, contender, record_median, workload, label):
    c = contender(workload, label)
    benchmark.group = f"{workload} decode"
    benchmark.extra_info["size"] = c.size
    benchmark(c.decode)
    record_median(workload, "decode", label, benchmark)
