"""Connections over loopback (issue 13 item 7), pytest-benchmark's view of `qwire bench
--workload ipc` (the same servers, clients and data: src/qwire/_bench/ipc.py).

One qwire server process answers "small", "dict" (24 MB of arrays) and "table" (1M rows) with
pre-encoded responses; qwire's client, PyKX's, kola's and aiokdb's fetch them, and so do
multiprocessing.connection with pickle and a raw socket moving the same bytes (the limit).

    python -m pytest benchmarks/test_bench_ipc.py --benchmark-columns=median,ops,rounds --benchmark-group-by=param:workload
"""
from __future__ import annotations

import pytest

from qwire._bench import ipc


@pytest.fixture(scope="module")
def servers(request):
    scale = request.config.getoption("--bench-scale")
    with ipc.Servers(scale) as s:
        yield s


@pytest.fixture(scope="module")
def clients(servers):
    opened = {}
    for kind in ipc.CLIENTS:
        opened[kind] = ipc.open_client(kind, servers)  # every client is in the test extra: none skipped
    yield opened
    for c in opened.values():
        c.close()


@pytest.mark.parametrize("client", ipc.CLIENTS)
@pytest.mark.parametrize("workload", ipc.IPC_WORKLOADS)
def test_ipc_fetch(benchmark, clients, workload, client):
    call = clients[client].call
    call(workload)  # warm-up
    benchmark.group = f"ipc {workload}"
    if workload == "small":
        benchmark(call, workload)
    else:
        benchmark.pedantic(call, args=(workload,), rounds=7 if client != "aiokdb" else 3, warmup_rounds=0)
