"""Between processes (issue 14), each contender beside its baseline in the same run:

* an 80 MB float64 array from this process to a child, which answers with a few bytes:
  qwire.pipe (one copy into shared memory), qwire.pipe of an array already in shared memory
  (`qwire.shm.array`, no copy), multiprocessing.Pipe().send (pickle), against one memcpy of the
  array into a preallocated buffer (targets: <= 1.2x the memcpy, <= 0.1x multiprocessing);
* the 1M-row table (the `table` workload) the same way, against multiprocessing.Pipe (pickle);
* process pools: 16 tasks doubling an 8 MB array, and 400 tiny tasks, on qwire.pool's executor
  versus concurrent.futures.ProcessPoolExecutor (2 workers each);
* Dask: gathering an 80 MB array and the 1M-row DataFrame from a worker of a 2-process
  LocalCluster, with the qwire family versus Dask's pickle family.

    python -m pytest benchmarks/test_bench_processes.py --benchmark-group-by=group
    python benchmarks/test_bench_processes.py        # the same, interleaved, as a table of ratios
"""
from __future__ import annotations

import concurrent.futures
import mmap
import multiprocessing
import statistics
import sys
import time

import numpy as np
import pytest

import qwire
from qwire import pipe as qpipe, pool as qpool, shm
from qwire._bench.workloads import WORKLOADS

FORK = multiprocessing.get_context("fork")


def _ack_qwire(conn):
    while True:
        v = conn.recv()
        if v is None:
            return
        conn.send(1)


def _ack_mp(conn):
    while True:
        v = conn.recv()
        if v is None:
            return
        conn.send(1)


class Peer:
    """A child process answering each value with 1, over a qwire pipe or a multiprocessing pipe."""

    def __init__(self, kind: str) -> None:
        if kind == "qwire":
            self.conn, child = qpipe.Pipe()
            target = _ack_qwire
        else:
            self.conn, child = FORK.Pipe()
            target = _ack_mp
        self.process = FORK.Process(target=target, args=(child,), daemon=True)
        self.process.start()
        child.close()

    def transfer(self, value) -> None:
        self.conn.send(value)
        assert self.conn.recv() == 1

    def close(self) -> None:
        self.conn.send(None)
        self.process.join(30)
        self.conn.close()


def double(a):
    return a * 2


def inc(x):
    return x + 1


def make_array(n):
    return np.arange(n, dtype=np.float64)


def make_table(scale):
    return WORKLOADS["table"].make(scale)


# --- pytest-benchmark ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def big_array():
    return WORKLOADS["big-array"].make(1.0)


@pytest.fixture(scope="module")
def table():
    return WORKLOADS["table"].make(1.0)


@pytest.fixture(scope="module")
def peers():
    made = {kind: Peer(kind) for kind in ("qwire", "mp")}
    yield made
    for p in made.values():
        p.close()


@pytest.mark.parametrize("how", ["memcpy", "qwire.pipe", "qwire.pipe shm array", "multiprocessing.Pipe"])
def test_80mb_array_to_another_process(benchmark, how, big_array, peers):
    benchmark.group = "80 MB array to another process"
    if how == "memcpy":
        dest = np.empty_like(big_array)
        benchmark(np.copyto, dest, big_array)
    elif how == "qwire.pipe shm array":
        shared = shm.array(big_array)
        benchmark(peers["qwire"].transfer, shared)
    else:
        benchmark(peers["qwire" if how == "qwire.pipe" else "mp"].transfer, big_array)


@pytest.mark.parametrize("how", ["qwire.pipe", "multiprocessing.Pipe"])
def test_1m_row_table_to_another_process(benchmark, how, table, peers):
    benchmark.group = "1M-row table to another process"
    benchmark(peers["qwire" if how == "qwire.pipe" else "mp"].transfer, table)


@pytest.fixture(scope="module")
def executors():
    made = {"qwire.pool": qpool.ProcessPoolExecutor(2, mp_context=FORK),
            "concurrent.futures": concurrent.futures.ProcessPoolExecutor(2, mp_context=FORK)}
    for ex in made.values():
        list(ex.map(inc, range(4)))  # workers started
    yield made
    for ex in made.values():
        ex.shutdown()


def _array_tasks(ex, x, n=16):
    return [f.result() for f in [ex.submit(double, x) for _ in range(n)]]


def _tiny_tasks(ex, n=400):
    return list(ex.map(inc, range(n)))


@pytest.mark.parametrize("pool", ["qwire.pool", "concurrent.futures"])
def test_pool_array_tasks(benchmark, pool, executors):
    benchmark.group = "pool: 16 tasks doubling an 8 MB array"
    x = np.random.default_rng(0).random(1_000_000)
    benchmark.pedantic(_array_tasks, (executors[pool], x), rounds=5)


@pytest.mark.parametrize("pool", ["qwire.pool", "concurrent.futures"])
def test_pool_tiny_tasks(benchmark, pool, executors):
    benchmark.group = "pool: 400 tiny tasks"
    benchmark.pedantic(_tiny_tasks, (executors[pool],), rounds=5)


# --- interleaved run with ratios -------------------------------------------------------------------

def _median(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _interleaved(contenders: dict, rounds: int, inner: int = 1) -> dict[str, float]:
    """Median seconds per call of each contender, rounds interleaved so that load affects all."""
    samples: dict[str, list[float]] = {k: [] for k in contenders}
    for fn in contenders.values():
        fn()  # warm up: first segments (two: the reader holds one while the next is sent), page faults
        fn()
    for _ in range(rounds):
        for name, fn in contenders.items():
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            samples[name].append((time.perf_counter() - t0) / inner)
    return {k: statistics.median(v) for k, v in samples.items()}


def _print(title: str, medians: dict[str, float], baselines: list[str]) -> None:
    print(f"\n{title}")
    for name, t in medians.items():
        ratios = "  ".join(f"{t / medians[b]:.3f}x {b}" for b in baselines if b != name)
        print(f"  {name:34s} {t * 1e3:10.3f} ms   {ratios}")


def main(rounds: int = 15) -> None:
    x = WORKLOADS["big-array"].make(1.0)
    shared = shm.array(x)
    dest = np.empty_like(x)
    peers = {kind: Peer(kind) for kind in ("qwire", "mp")}
    qwire_nomem = Peer("qwire")
    try:
        first = _median(lambda: Peer.transfer(qwire_nomem, np.random.default_rng(1).random(10_000_000)), 1)
        print(f"first qwire.pipe transfer of a fresh 80 MB array (new segment, pages not yet allocated): {first * 1e3:.1f} ms")
        private_4k = mmap.mmap(-1, x.nbytes)
        if hasattr(mmap, "MADV_NOHUGEPAGE"):
            private_4k.madvise(mmap.MADV_NOHUGEPAGE)
        dest_4k = np.frombuffer(private_4k, dtype=x.dtype)
        dest_4k[:] = 0
        _print("80 MB float64 array to another process (and a 1-byte answer)", _interleaved({
            "memcpy (np.copyto, preallocated)": lambda: np.copyto(dest, x),
            "memcpy into 4 KiB pages": lambda: np.copyto(dest_4k, x),
            "memcpy (x.copy())": lambda: x.copy(),
            "qwire.pipe": lambda: peers["qwire"].transfer(x),
            "qwire.pipe, array in shm": lambda: peers["qwire"].transfer(shared),
            "multiprocessing.Pipe": lambda: peers["mp"].transfer(x),
        }, rounds), ["memcpy (np.copyto, preallocated)", "multiprocessing.Pipe"])
        table = WORKLOADS["table"].make(1.0)
        _print("1M-row table (int64, float64, symbol, datetime64) to another process", _interleaved({
            "qwire.pipe": lambda: peers["qwire"].transfer(table),
            "multiprocessing.Pipe (pickle)": lambda: peers["mp"].transfer(table),
        }, rounds), ["multiprocessing.Pipe (pickle)"])
    finally:
        for p in (*peers.values(), qwire_nomem):
            p.close()

    ex_q = qpool.ProcessPoolExecutor(2, mp_context=FORK)
    ex_s = concurrent.futures.ProcessPoolExecutor(2, mp_context=FORK)
    try:
        arr = np.random.default_rng(0).random(1_000_000)
        _print("pool: 16 tasks doubling an 8 MB array (2 workers)", _interleaved({
            "qwire.pool.ProcessPoolExecutor": lambda: _array_tasks(ex_q, arr),
            "concurrent.futures": lambda: _array_tasks(ex_s, arr),
            "concurrent.futures + packed": lambda: [qpool.unpack(f.result()) for f in
                                                    [ex_s.submit(qpool.packed(double), qpool.pack(arr)) for _ in range(16)]],
        }, max(3, rounds // 3)), ["concurrent.futures"])
        _print("pool: 400 tiny tasks (x + 1)", _interleaved({
            "qwire.pool.ProcessPoolExecutor": lambda: _tiny_tasks(ex_q),
            "concurrent.futures": lambda: _tiny_tasks(ex_s),
        }, max(3, rounds // 3)), ["concurrent.futures"])
    finally:
        ex_q.shutdown()
        ex_s.shutdown()

    try:
        import qwire.dask as qdask
        from distributed import Client, LocalCluster
    except ImportError as e:
        print(f"\nDask: not measured ({e})")
        return
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                      **qdask.worker_options(["qwire", "pickle"])) as cluster, \
            Client(cluster, serializers=["qwire"], deserializers=["qwire"]) as cq, \
            Client(cluster, serializers=["pickle"], deserializers=["pickle"]) as cp:
        fa = cq.submit(make_array, 10_000_000, pure=False)
        ft = cq.submit(make_table, 1.0, pure=False)
        fa.result(), ft.result()
        fpa = cp.submit(make_array, 10_000_000, pure=False)
        fpt = cp.submit(make_table, 1.0, pure=False)
        fpa.result(), fpt.result()
        # direct=True: straight from the worker, serialized with the family each client asks for
        _print("Dask: gather an 80 MB array from a worker", _interleaved({
            "qwire family": lambda: cq.gather(fa, direct=True),
            "pickle family": lambda: cp.gather(fpa, direct=True),
        }, max(5, rounds // 2)), ["pickle family"])
        _print("Dask: gather the 1M-row DataFrame from a worker", _interleaved({
            "qwire family": lambda: cq.gather(ft, direct=True),
            "pickle family": lambda: cp.gather(fpt, direct=True),
        }, max(5, rounds // 2)), ["pickle family"])


if __name__ == "__main__":
    print(f"qwire {qwire.__version__}, NumPy {np.__version__}, Python {sys.version.split()[0]}")
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 15)
