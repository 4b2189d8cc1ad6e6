"""Instruction counts of qwire's dumps/loads against pickle protocol 5, per workload, under callgrind.

Wall-clock ratios on a shared machine move with its load; instructions executed do not. This runs
each call in a child Python under `valgrind --tool=callgrind`, collecting only inside the function
measured (qwire's compiled dumps/loads, pickle's C _pickle_dumps/_pickle_loads), and prints the
instructions per call and their ratio (lower is better):

    python benchmarks/instructions.py                    # every workload, scaled workloads at 1/10
    python benchmarks/instructions.py small-dict records --scale 1 --python /usr/bin/python3.11

Needs valgrind, and a Python binary that is not a shell shim (pyenv's shims are scripts: pass the
real interpreter with --python). Instruction counts ignore cache misses and memory bandwidth, so
the large-array workloads, whose cost is memory traffic, are better judged by wall clock.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

CHILD = r"""
import pickle, sys
import qwire
from qwire._bench.workloads import WORKLOADS
name, scale, op, calls = sys.argv[1], float(sys.argv[2]), sys.argv[3], int(sys.argv[4])
w = WORKLOADS[name]
v = w.build(scale if w.scales else 1)
qb, pb = bytes(qwire.dumps(v)), pickle.dumps(v, protocol=5)
f = {"qwire dumps": lambda: qwire.dumps(v), "qwire loads": lambda: qwire.loads(qb),
     "pickle dumps": lambda: pickle.dumps(v, protocol=5), "pickle loads": lambda: pickle.loads(pb)}[op]
for _ in range(calls):
    f()
"""

SMALL_CALLS, LARGE_CALLS = 20000, 3


def compiled_symbols(python: str) -> dict:
    """The C names of qwire's dumps/loads wrappers (Cython numbers them) and pickle's."""
    out = subprocess.run([python, "-c", "import qwire._core as c; print(c.__file__)"], capture_output=True,
                         text=True, check=True).stdout.strip()
    names = subprocess.run(["nm", out], capture_output=True, text=True, check=True).stdout
    sym = {}
    for op in ("dumps", "loads"):
        m = re.search(r"\b(__pyx_pw_5qwire_5_core_\d+" + op + r")\b", names)
        if not m:
            raise SystemExit(f"no compiled {op} in {out}")
        sym["qwire " + op] = m.group(1)
        sym["pickle " + op] = "_pickle_" + op
    return sym


def instructions(python, symbol, workload, scale, op, calls) -> int:
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(CHILD)
    try:
        run = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                              f"--toggle-collect={symbol}", python, f.name, workload, str(scale), op, str(calls)],
                             capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
    finally:
        os.unlink(f.name)
    m = re.search(r"Collected : ([\d,]+)", run.stderr)
    if run.returncode != 0 or not m:
        raise SystemExit(f"callgrind failed for {workload} {op}:\n{run.stderr[-2000:]}")
    return int(m.group(1).replace(",", ""))


def main(argv=None) -> int:
    from qwire._bench.workloads import WORKLOADS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workloads", nargs="*", help=f"default: all but big-array ({', '.join(WORKLOADS)})")
    ap.add_argument("--scale", type=float, default=0.1, help="size of the scaled workloads (default 0.1)")
    ap.add_argument("--python", default=os.path.realpath(sys.executable), help="the interpreter to run")
    args = ap.parse_args(argv)
    if not shutil.which("valgrind"):
        print("valgrind is not installed", file=sys.stderr)
        return 2
    names = args.workloads or [n for n in WORKLOADS if n != "big-array"]
    sym = compiled_symbols(args.python)
    print(f"{'workload':<12} {'op':<6} {'qwire Ir/call':>14} {'pickle Ir/call':>15} {'ratio':>7}")
    for name in names:
        calls = LARGE_CALLS if WORKLOADS[name].scales or name == "records" else SMALL_CALLS
        for op in ("dumps", "loads"):
            # the warm-up calls are collected too, in both: the ratio is of equal call counts
            q = instructions(args.python, sym["qwire " + op], name, args.scale, "qwire " + op, calls)
            p = instructions(args.python, sym["pickle " + op], name, args.scale, "pickle " + op, calls)
            print(f"{name:<12} {op:<6} {q / calls:>14,.0f} {p / calls:>15,.0f} {q / p:>6.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
