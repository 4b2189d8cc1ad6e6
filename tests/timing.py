"""How the time-ratio tests measure (test_memory_bounds, test_hash_work): CPU time, interleaved,
each side's fastest round, in a fresh child process with a fixed allocator set-up.

Why a child process: timed inside the test run, the 10^5 distinct symbols read 1.4x benign alone
and 5.4x, then 6.8x, in two CI runs after 3,000 other tests, and a hashing ratio read 3.1x on
3.12 in CI and 2x alone. Half of the symbols case's CPU time is the kernel's, supplying fresh
pages (770 page faults per call: pymalloc returns an emptied arena to the system and maps a new
one on the next call), and what a page fault costs depends on the machine's memory state and on
the heap the earlier tests left. In the child, glibc's malloc serves every allocation
(PYTHONMALLOC=malloc) and keeps freed memory instead of trimming or unmapping it, so after the
first call no case pays for pages: what is timed is the decoder's own work, on both sides of
every ratio."""
from __future__ import annotations

import functools
import gc
import importlib
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

MIN_TIMED = 0.05  # seconds of CPU per timed run: shorter runs are dominated by timer and cache noise

CHILD_ALLOCATOR = {
    "PYTHONMALLOC": "malloc",
    "MALLOC_TRIM_THRESHOLD_": str(1 << 34),   # never give freed heap memory back
    "MALLOC_MMAP_THRESHOLD_": str(1 << 32),   # large blocks come from the heap too, not mmap
    "MALLOC_TOP_PAD_": str(1 << 30),          # grow the heap in big steps
}


def measured_again(attempts=3):
    """Time ratios on a shared machine: a burst of load during one measurement can break a ratio
    that holds. The test measures again, up to `attempts` times, and fails only if every attempt
    does (a real regression fails them all)."""
    def wrap(test):
        @functools.wraps(test)
        def run(*args, **kwargs):
            for attempt in range(attempts):
                try:
                    return test(*args, **kwargs)
                except AssertionError:
                    if attempt == attempts - 1:
                        raise
        return run
    return wrap


def interleaved_rates(cases, rounds=5, gc_on=False):
    """CPU seconds per input byte of each (fn, data) case, measured round-robin (every round times
    each case once) and reduced to each case's fastest round.

    The clock is this thread's CPU time, not the wall clock: on a shared machine other processes
    take the cores in turns, and wall time then measures them too (a 5 ms decode measured 3x its
    cost beside two compilers). A case that runs shorter than MIN_TIMED is run enough times per
    round to reach it. The fastest round is the nearest to the work itself, as noise only adds."""
    best = [math.inf] * len(cases)
    inner = [0] * len(cases)
    for _ in range(rounds):
        for i, (fn, data) in enumerate(cases):
            gc.collect()
            if not gc_on:
                gc.disable()
            try:
                calls = 0
                t0 = time.thread_time()
                while True:
                    value = fn(data)
                    del value
                    calls += 1
                    elapsed = time.thread_time() - t0
                    if calls >= inner[i] and (inner[i] or elapsed >= MIN_TIMED):
                        break
            finally:
                gc.enable()
            inner[i] = calls
            best[i] = min(best[i], elapsed / calls / len(data))
    return best


def in_fresh_process(module_file, function, *args):
    """(what function(*args) of the test module returns, page faults while it ran), run by a
    fresh Python process with CHILD_ALLOCATOR. The function is a module-level measurement that
    returns JSON-able rates; args are JSON-able too."""
    env = {**os.environ, **CHILD_ALLOCATOR}
    out = subprocess.run(
        [sys.executable, __file__, Path(module_file).stem, function, json.dumps(args)],
        env=env, capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, f"the measuring process failed:\n{out.stderr[-3000:]}"
    result = json.loads(out.stdout.splitlines()[-1])
    return result["value"], result["faults"]


if __name__ == "__main__":
    # The child of in_fresh_process: this file's directory (tests/) is on sys.path, as the
    # test modules and their helpers expect; prints one JSON line.
    _, module, function, arguments = sys.argv
    measure = getattr(importlib.import_module(module), function)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    value = measure(*json.loads(arguments))
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    print(json.dumps({"value": value, "faults": faults}))
