"""Table benchmarks (issue 15): the table workloads of `python -m qwire bench` (qwire/_bench/tables.py:
one per column kind, and the 10-column mix at 100k and 1M rows as pandas, pyarrow and polars),
each encoded and decoded by qwire, pickle protocol 5 and Arrow IPC in the same run; and the peak
memory `dumps` allocates, against the message's size.

    pytest benchmarks/test_bench_tables.py --benchmark-columns=median,iqr,rounds --benchmark-sort=name

Targets (benchmarks/README.md), printed at the end by conftest.py: serialize <= 0.5x Arrow IPC's
time; decode to the user's table type <= pickle's time (<= Arrow's for pyarrow tables); peak
memory of dumps <= 1.1x the message. `--bench-scale 0.1` runs the 1M-row workloads at 100k.
"""
from __future__ import annotations

import tracemalloc

import pytest

import qwire
from qwire._bench.workloads import WORKLOADS

TABLE_WORKLOADS = [name for name, w in WORKLOADS.items() if name.startswith(("frame-", "arrow-", "polars-", "col-"))]
LABELS = ["qwire", "pickle-5", "arrow"]
CASES = [pytest.param(w, label, id=f"{w}-{label}") for w in TABLE_WORKLOADS for label in LABELS]


@pytest.mark.parametrize("workload, label", CASES)
def test_table_encode(benchmark, contender, record_median, workload, label):
    c = contender(workload, label)
    benchmark.group = f"{workload} encode"
    benchmark.extra_info["size"] = c.size
    benchmark(c.encode)
    record_median(workload, "encode", label, benchmark)


@pytest.mark.parametrize("workload, label", CASES)
def test_table_decode(benchmark, contender, record_median, workload, label):
    c = contender(workload, label)
    benchmark.group = f"{workload} decode"
    benchmark.extra_info["size"] = c.size
    benchmark(c.decode)
    record_median(workload, "decode", label, benchmark)


@pytest.mark.parametrize("workload", TABLE_WORKLOADS)
def test_dumps_peak_memory(workload, table_data, record_peak):
    """Peak bytes allocated by dumps (traced by tracemalloc: the core's buffer, NumPy's and Python's
    temporaries), over the message's size. Large columns are referenced, not copied."""
    obj = table_data(workload)
    qwire.dumps(obj)  # warm: imports and caches
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        msg = qwire.dumps(obj)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    record_peak(workload, peak, len(msg))
    assert len(msg) > 0
