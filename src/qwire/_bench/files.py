"""File workloads: append an entry, read entry N, replay everything, for a qwire MessageLog and the
stores users reach for instead: pickles appended to one file, a SQLite table of blobs, an HDF5
(h5py) dataset of variable-length bytes. Used by `python -m qwire bench --files` and by
benchmarks/test_bench_files.py, so both measure the same thing.

Every store is asked for the same durability where it has a knob: "never" (the OS flushes when
it likes; survives the writer's death), "always" (each append is on the device before the call
returns: fdatasync, SQLite synchronous=FULL, h5py flush + fsync).
"""
from __future__ import annotations

import os
import pickle
import random
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import qwire

__all__ = ["STORES", "make_entry", "Store", "run_files_bench", "format_files_table"]


def make_entry(i: int) -> dict:
    """One log entry: a tick-like record with a small array (about 600 bytes as a message)."""
    return {"seq": i, "sym": ("AAPL", "MSFT", "GOOG", "IBM")[i % 4], "px": 100.0 + (i % 997) * 0.01,
            "size": (i * 37) % 10_000, "book": np.arange(i % 7, i % 7 + 64, dtype=np.float64)}


class Store:
    """One contender: open(path, sync) -> handle; append(handle, obj); read(handle, n) -> obj;
    replay(handle) -> list; close(handle). read and replay reopen nothing: they use the handle."""

    name: str

    def open(self, path: str, sync: str) -> Any:
        raise NotImplementedError

    def append(self, h: Any, obj: object) -> None:
        raise NotImplementedError

    def read(self, h: Any, n: int) -> Any:
        raise NotImplementedError

    def replay(self, h: Any) -> list:
        raise NotImplementedError

    def close(self, h: Any) -> None:
        raise NotImplementedError


class QwireLog(Store):
    name = "qwire MessageLog"

    def open(self, path, sync):
        return qwire.MessageLog(path, sync=sync)

    def append(self, h, obj):
        h.append(obj)

    def read(self, h, n):
        return h[n]

    def replay(self, h):
        return list(h)

    def close(self, h):
        h.close()


class PickleFile(Store):
    """pickle.dump appended to one file; entry N is found by loading the N before it (no index)."""

    name = "pickle file"

    def open(self, path, sync):
        return {"path": path, "f": open(path, "ab"), "sync": sync}

    def append(self, h, obj):
        f = h["f"]
        pickle.dump(obj, f, protocol=5)
        f.flush()
        if h["sync"] == "always":
            os.fdatasync(f.fileno())

    def read(self, h, n):
        with open(h["path"], "rb") as f:
            for _ in range(n):
                pickle.load(f)
            return pickle.load(f)

    def replay(self, h):
        out = []
        with open(h["path"], "rb") as f:
            while True:
                try:
                    out.append(pickle.load(f))
                except EOFError:
                    return out

    def close(self, h):
        h["f"].close()


class SqliteBlobs(Store):
    """A table (id INTEGER PRIMARY KEY, blob BLOB) of pickles, WAL journal, a commit per append."""

    name = "SQLite blobs"

    def open(self, path, sync):
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if sync == 'always' else 'OFF'}")
        db.execute("CREATE TABLE IF NOT EXISTS log (id INTEGER PRIMARY KEY, blob BLOB)")
        return db

    def append(self, h, obj):
        h.execute("INSERT INTO log (blob) VALUES (?)", (pickle.dumps(obj, protocol=5),))

    def read(self, h, n):
        (blob,) = h.execute("SELECT blob FROM log WHERE id = ?", (n + 1,)).fetchone()
        return pickle.loads(blob)

    def replay(self, h):
        return [pickle.loads(b) for (b,) in h.execute("SELECT blob FROM log ORDER BY id")]

    def close(self, h):
        h.close()


class H5pyBytes(Store):
    """An HDF5 dataset of variable-length uint8 (pickles), grown by one per append, flushed."""

    name = "h5py vlen"

    def open(self, path, sync):
        import h5py

        f = h5py.File(path, "a")
        if "log" not in f:
            f.create_dataset("log", shape=(0,), maxshape=(None,), chunks=(256,), dtype=h5py.vlen_dtype(np.uint8))
        return {"f": f, "ds": f["log"], "sync": sync, "path": path}

    def append(self, h, obj):
        ds = h["ds"]
        k = ds.shape[0]
        ds.resize((k + 1,))
        ds[k] = np.frombuffer(pickle.dumps(obj, protocol=5), dtype=np.uint8)
        h["f"].flush()
        if h["sync"] == "always":
            fd = os.open(h["path"], os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def read(self, h, n):
        return pickle.loads(h["ds"][n].tobytes())

    def replay(self, h):
        return [pickle.loads(b.tobytes()) for b in h["ds"][:]]

    def close(self, h):
        h["f"].close()


STORES: dict[str, Callable[[], Store]] = {
    "qwire": QwireLog, "pickle": PickleFile, "sqlite": SqliteBlobs, "h5py": H5pyBytes,
}


def _median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


def _check(obj: Any, i: int) -> None:
    if obj["seq"] != i:
        raise AssertionError(f"read entry {obj['seq']} for {i}")


def measure_store(store: Store, directory: str, entries: int, sync: str, reads: int = 50,
                  replays: int = 3) -> dict:
    """Median microseconds: append (each of `entries`), read entry N (random N, `reads` times),
    replay (all entries, `replays` times); plus the file's bytes."""
    path = os.path.join(directory, f"{store.name.replace(' ', '_')}-{sync}")
    h = store.open(path, sync)
    appends = []
    try:
        for i in range(entries):
            obj = make_entry(i)
            t = time.perf_counter()
            store.append(h, obj)
            appends.append(time.perf_counter() - t)
        rng = random.Random(7)
        read_times = []
        for _ in range(reads):
            n = rng.randrange(entries)
            t = time.perf_counter()
            obj = store.read(h, n)
            read_times.append(time.perf_counter() - t)
            _check(obj, n)
        replay_times = []
        for _ in range(replays):
            t = time.perf_counter()
            everything = store.replay(h)
            replay_times.append(time.perf_counter() - t)
            if len(everything) != entries:
                raise AssertionError(f"{store.name} replayed {len(everything)} of {entries}")
    finally:
        store.close(h)
    size = sum(os.path.getsize(os.path.join(directory, f)) for f in os.listdir(directory)
               if f.startswith(os.path.basename(path)))
    return {"store": store.name, "sync": sync, "entries": entries, "append_us": _median_us(appends),
            "read_n_us": _median_us(read_times), "replay_ms": statistics.median(replay_times) * 1e3,
            "bytes": size}


def measure_open(entries: int, directory: str) -> dict:
    """Opening a MessageLog of `entries` entries (the header scan), median of 5, in ms."""
    path = os.path.join(directory, "open.qlog")
    log = qwire.MessageLog(path, sync="never")
    for i in range(entries):
        log.append(make_entry(i))
    log.close()
    times = []
    for _ in range(5):
        t = time.perf_counter()
        qwire.MessageLog(path, sync="never").close()
        times.append(time.perf_counter() - t)
    return {"entries": entries, "open_ms": statistics.median(times) * 1e3}


def measure_synced_appends_interleaved(names: list[str], directory: str, rounds: int) -> dict:
    """Median microseconds of a sync="always" append per store, the stores taking turns append
    by append: a device's flush latency drifts over seconds, so timing one store after another
    would rank the drift, not the stores."""
    stores, handles, times = {}, {}, {}
    for name in names:
        try:
            stores[name] = STORES[name]()
            handles[name] = stores[name].open(os.path.join(directory, f"interleaved-{name}"), "always")
            times[name] = []
        except ImportError:
            stores.pop(name, None)
    entry = make_entry(5)
    try:
        for _ in range(rounds):
            for name, store in stores.items():
                t = time.perf_counter()
                store.append(handles[name], entry)
                times[name].append(time.perf_counter() - t)
    finally:
        for name, store in stores.items():
            store.close(handles[name])
    return {stores[n].name: _median_us(t) for n, t in times.items()}


def run_files_bench(entries: int = 5000, synced_entries: int = 300, stores: list[str] | None = None,
                    directory: str | None = None) -> dict:
    """Every store with sync="never" on `entries` entries and sync="always" on `synced_entries`,
    plus qwire's sync="batch"; in a temporary directory (default: under the system's temp dir,
    whose filesystem decides what a sync costs)."""
    chosen = stores or list(STORES)
    rows = []
    base = tempfile.mkdtemp(prefix="qwire-files-bench-", dir=directory)
    try:
        for name in chosen:
            try:
                store = STORES[name]()
                for sync, n in (("never", entries), ("always", synced_entries)):
                    sub = tempfile.mkdtemp(dir=base)
                    rows.append(measure_store(store, sub, n, sync))
                if name == "qwire":
                    rows.append(measure_store(store, tempfile.mkdtemp(dir=base), entries, "batch"))
            except ImportError as exc:
                rows.append({"store": name, "skipped": f"not installed ({exc})"})
        interleaved = measure_synced_appends_interleaved(chosen, tempfile.mkdtemp(dir=base), synced_entries)
        opened = measure_open(entries * 20, tempfile.mkdtemp(dir=base))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return {"rows": rows, "always_interleaved_us": interleaved, "open": opened}


def format_files_table(result: dict) -> str:
    lines = [f"{'store':18} {'sync':7} {'entries':>7} {'append µs':>10} {'read N µs':>10} {'replay ms':>10} {'bytes':>10}"]
    for r in result["rows"]:
        if "skipped" in r:
            lines.append(f"{r['store']:18} skipped: {r['skipped']}")
            continue
        lines.append(f"{r['store']:18} {r['sync']:7} {r['entries']:7d} {r['append_us']:10.1f} {r['read_n_us']:10.1f} "
                     f"{r['replay_ms']:10.2f} {r['bytes']:10d}")
    inter = result.get("always_interleaved_us", {})
    if inter:
        lines.append("sync=always appends, stores taking turns (median µs): "
                     + ", ".join(f"{k} {v:.0f}" for k, v in inter.items()))
    o = result["open"]
    lines.append(f"opening a MessageLog of {o['entries']} entries (header scan): {o['open_ms']:.1f} ms")
    return "\n".join(lines)
