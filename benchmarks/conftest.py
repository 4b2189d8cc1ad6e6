"""pytest-benchmark setup: the shared workload data, per-library contenders, and a session-end
summary of median time ratios (qwire / pickle protocol 5) checked against the project's targets.

The workloads and the way each library is called come from `qwire._bench` (the same source as
`python -m qwire bench`), so the two measure the same thing.
"""
from __future__ import annotations

import pytest

from qwire._bench.peers import Skip, prepare
from qwire._bench.report import format_duration, format_ratio
from qwire._bench.workloads import WORKLOADS

# Contender label (as in the CLI's table) -> the library that prepares it.
LIBRARY_OF = {
    "qwire": "qwire",
    "qwire copy": "qwire",
    "qwire to pandas": "qwire",
    "pickle-5": "pickle",
    "pickle-5 oob": "pickle",
    "msgspec": "msgspec",
    "pykx": "pykx",
    "arrow": "arrow",
}
SMALL_MESSAGES = ("small-array", "small-dict", "small-list")
MEDIANS = pytest.StashKey[dict]()
PEAKS = pytest.StashKey[dict]()  # test_bench_tables.py: workload -> (peak bytes of dumps, message bytes)


def pytest_addoption(parser):
    parser.addoption(
        "--bench-scale",
        type=float,
        default=1.0,
        help="size factor of the large workloads (default 1.0; 0.1 gives the sizes of `qwire bench --quick`)",
    )


def pytest_configure(config):
    config.stash[MEDIANS] = {}
    config.stash[PEAKS] = {}


@pytest.fixture(scope="session")
def table_data(request):
    """table_data(workload) -> that workload's object at --bench-scale, built once per session
    (shared with the contender fixture)."""
    return lambda workload: _data(request.config, workload)


def _data(config, workload):
    store = config.stash.setdefault(DATA, {})
    if workload not in store:
        store[workload] = WORKLOADS[workload].make(config.getoption("--bench-scale"))
    return store[workload]


DATA = pytest.StashKey[dict]()


@pytest.fixture
def record_peak(request):
    def record(workload, peak, size):
        request.config.stash[PEAKS][workload] = (peak, size)

    return record


@pytest.fixture(scope="session")
def contender(request):
    """contender(workload, label) -> the Contender for that library on that workload's data
    (built once per session), or a pytest skip with the reason the library takes no part."""
    scale = request.config.getoption("--bench-scale")
    data, prepared = {}, {}

    def get(workload: str, label: str):
        if workload not in data:
            data[workload] = _data(request.config, workload)
        library = LIBRARY_OF[label]
        key = (workload, library)
        if key not in prepared:
            try:
                prepared[key] = {c.library: c for c in prepare(library, data[workload])}
            except ImportError as exc:
                prepared[key] = f"{library} is not installed ({exc})"
            except Skip as exc:
                prepared[key] = f"{library} cannot carry {workload}: {exc}"
        found = prepared[key]
        if isinstance(found, str):
            pytest.skip(found)
        if label not in found:
            pytest.skip(f"{label} does not apply to {workload}")
        return found[label]

    return get


@pytest.fixture
def record_median(request):
    """record_median(workload, phase, label, benchmark): keep the median for the summary."""

    def record(workload, phase, label, benchmark):
        stats = getattr(benchmark, "stats", None)
        if stats is not None:  # None when benchmarks are disabled (--benchmark-disable)
            request.config.stash[MEDIANS][(workload, phase, label)] = stats.stats.median

    return record


def _ratio(medians, workload, phase, label, base):
    a, b = medians.get((workload, phase, label)), medians.get((workload, phase, base))
    return a / b if a and b else None


def _verdict(ok):
    return "-" if ok is None else "met" if ok else "NOT met"


@pytest.hookimpl(trylast=True)  # after pytest-benchmark's own tables
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    medians = config.stash.get(MEDIANS, {})
    if not medians:
        if config.stash.get(PEAKS, {}):
            terminalreporter.section("qwire table targets")
            _table_targets(terminalreporter.write_line, medians, config.stash[PEAKS])
        return
    write = terminalreporter.write_line
    terminalreporter.section("qwire / pickle-5: median time ratios (lower is better)")
    write(f"{'workload':<12} {'encode':>10} {'decode':>10}")
    for workload in WORKLOADS:
        enc = _ratio(medians, workload, "encode", "qwire", "pickle-5")
        dec = _ratio(medians, workload, "decode", "qwire", "pickle-5")
        if enc is not None or dec is not None:
            write(f"{workload:<12} {format_ratio(enc):>10} {format_ratio(dec):>10}")

    write("")
    write("targets:")
    for workload in SMALL_MESSAGES:
        for phase in ("encode", "decode"):
            r = _ratio(medians, workload, phase, "qwire", "pickle-5")
            if r is not None:
                write(f"  {workload} {phase} <= 0.5x pickle-5: {format_ratio(r)}  {_verdict(r <= 0.5)}")
    r = _ratio(medians, "table", "encode", "qwire", "arrow")
    if r is not None:
        write(f"  table encode <= 0.5x Arrow IPC: {format_ratio(r)}  {_verdict(r <= 0.5)}")
    r = _ratio(medians, "table", "encode", "pykx", "qwire")
    if r is not None:
        write(f"  table encode >= 20x faster than PyKX: {r:.1f}x faster  {_verdict(r >= 20)}")
    d = medians.get(("big-array", "decode", "qwire"))
    if d is not None:
        write(f"  big-array decode < 20 µs: {format_duration(d * 1e9)}  {_verdict(d < 20e-6)}")
    _table_targets(write, medians, config.stash.get(PEAKS, {}))


def _table_targets(write, medians, peaks):
    """test_bench_tables.py's targets (issue 15), per table workload."""
    names = sorted({w for (w, _, _) in medians if w.startswith(("frame-", "arrow-", "polars-", "col-"))} | set(peaks))
    for w in names:
        enc = _ratio(medians, w, "encode", "qwire", "arrow")
        base = "arrow" if w.startswith("arrow-") else "pickle-5"
        dec = _ratio(medians, w, "decode", "qwire", base)
        if enc is not None:
            write(f"  {w} encode <= 0.5x Arrow IPC: {format_ratio(enc)}  {_verdict(enc <= 0.5)}")
        if dec is not None:
            write(f"  {w} decode <= 1x {base}: {format_ratio(dec)}  {_verdict(dec <= 1.0)}")
        if w in peaks:
            peak, size = peaks[w]
            write(f"  {w} dumps peak <= 1.1x message: {peak / size:.2f}x ({peak / 1e6:.1f} MB for "
                  f"{size / 1e6:.1f} MB)  {_verdict(peak <= 1.1 * size)}")
