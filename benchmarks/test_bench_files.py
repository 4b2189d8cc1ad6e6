"""File benchmarks (pytest-benchmark): append an entry, read entry N, replay a whole log, for a
qwire MessageLog beside pickles appended to one file, a SQLite table of blobs and an h5py
dataset of variable-length bytes (qwire._bench.files defines the stores and the entry, the same
code `python -m qwire bench --files` runs).

    pytest benchmarks/test_bench_files.py --benchmark-columns=median,iqr,rounds

Appends are timed with sync="never" (each store's cheapest setting that still survives the
writer's death) and sync="always" (each append on the device before it returns; timed one store
after another, these follow the disk's drifting flush latency: `python -m qwire bench --files`
also times them with the stores taking turns, which is the comparison to quote); reads and
replays on a log of ENTRIES entries.
"""
from __future__ import annotations

import pytest

from qwire._bench.files import STORES, make_entry

ENTRIES = 2000
STORE_NAMES = list(STORES)


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    """Each store holding ENTRIES entries (sync never), open; closed at the end."""
    handles = {}
    for name in STORE_NAMES:
        store = STORES[name]()
        path = str(tmp_path_factory.mktemp(f"filled-{name}") / "store")
        h = store.open(path, "never")
        for i in range(ENTRIES):
            store.append(h, make_entry(i))
        handles[name] = (store, h)
    yield handles
    for store, h in handles.values():
        store.close(h)


@pytest.mark.parametrize("sync", ["never", "always"])
@pytest.mark.parametrize("name", STORE_NAMES)
def test_append(benchmark, tmp_path, name, sync):
    store = STORES[name]()
    h = store.open(str(tmp_path / "store"), sync)
    entry = make_entry(5)
    benchmark.group = f"append, sync={sync}"
    try:
        benchmark.pedantic(lambda: store.append(h, entry), rounds=200 if sync == "always" else 2000,
                           warmup_rounds=5)
    finally:
        store.close(h)


@pytest.mark.parametrize("name", STORE_NAMES)
def test_read_entry_n(benchmark, filled, name):
    store, h = filled[name]
    n = ENTRIES * 3 // 4
    benchmark.group = f"read entry {n} of {ENTRIES}"
    got = benchmark.pedantic(lambda: store.read(h, n), rounds=50 if name == "pickle" else 500, warmup_rounds=2)
    assert got["seq"] == n


@pytest.mark.parametrize("name", STORE_NAMES)
def test_replay(benchmark, filled, name):
    store, h = filled[name]
    benchmark.group = f"replay {ENTRIES} entries"
    got = benchmark.pedantic(lambda: store.replay(h), rounds=10, warmup_rounds=1)
    assert [e["seq"] for e in got] == list(range(ENTRIES))
