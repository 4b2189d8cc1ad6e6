"""Zero-copy messages (issue 3), each beside its pickle-5 counterpart in the same run:

* dumps+loads in band (qwire) versus pickle-5 with out-of-band buffers, for the 80 MB float64
  array and the 1M-row table: the target is the same order of magnitude (microseconds for the
  array, independent of its size);
* bytes(m) of the 80 MB message versus bytes(memoryview(arr)) of the same array (target <= 1.05x);
* Message.write_to a pipe versus pickle.dump to it.

    python -m pytest benchmarks/test_bench_zero_copy.py --benchmark-group-by=group
"""
import os
import pickle
import threading

import numpy as np
import pytest

import qwire
from qwire._bench.workloads import WORKLOADS


@pytest.fixture(scope="module")
def big_array():
    return WORKLOADS["big-array"].make(1.0)


@pytest.fixture(scope="module")
def table():
    return qwire.Table.from_pandas(WORKLOADS["table"].make(1.0))


def _pickle_oob_roundtrip(obj):
    buffers = []
    data = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    return pickle.loads(data, buffers=buffers)


@pytest.mark.parametrize("library", ["qwire in band", "pickle-5 out of band"])
@pytest.mark.parametrize("workload", ["big_array", "table"])
def test_roundtrip_without_copies(benchmark, library, workload, request):
    obj = request.getfixturevalue(workload)
    benchmark.group = f"zero-copy dumps+loads: {workload}"
    if library == "qwire in band":
        out = benchmark(lambda: qwire.loads(qwire.dumps(obj)))
    else:
        out = benchmark(_pickle_oob_roundtrip, obj)
    assert out is not None


@pytest.mark.parametrize("how", ["bytes(message)", "bytes(memoryview(array))"])
def test_materialising_the_80mb_message(benchmark, how, big_array):
    benchmark.group = "one copy of the 80 MB message"
    if how == "bytes(message)":
        m = qwire.dumps(big_array)
        out = benchmark(bytes, m)
    else:
        out = benchmark(lambda: bytes(memoryview(big_array)))
    assert len(out) >= big_array.nbytes


def _drain(fd):
    while os.read(fd, 1 << 20):
        pass


@pytest.mark.parametrize("how", ["qwire write_to", "pickle.dump"])
def test_writing_to_a_pipe(benchmark, how, big_array):
    benchmark.group = "80 MB array into a pipe"

    def once():
        r, w = os.pipe()
        reader = threading.Thread(target=_drain, args=(r,))
        reader.start()
        if how == "qwire write_to":
            qwire.dumps(big_array).write_to(w)
            os.close(w)
        else:
            with os.fdopen(w, "wb", buffering=0) as f:
                pickle.dump(big_array, f, protocol=5)
        reader.join()
        os.close(r)

    benchmark.pedantic(once, rounds=7, iterations=1)
