"""Run qwire's fuzz targets: campaigns under libFuzzer (atheris), corpus replays, exec-count reports.

    python tests/fuzz/run.py list
    python tests/fuzz/run.py fuzz TARGET [--time S] [--runs N] [--build DIR] [--asan] [--work DIR]
    python tests/fuzz/run.py replay TARGET|all PATH... [--build DIR] [--asan]
    python tests/fuzz/run.py report [--work DIR]

`fuzz` runs one libFuzzer campaign in a child process (tests/fuzz/harness.py), keeps the growing
corpus in WORK/corpus/TARGET (seeded from WORK/seeds, see make_corpus.py), writes any failing input
to WORK/findings/, appends one JSON line with the executions reached to WORK/results.jsonl, and
exits 1 on a finding. `replay` runs inputs through targets without libFuzzer (for sanitizer runs
and CI): any finding, or any input over 1 s, makes it exit 1. `report` sums the executions per
target over all campaigns recorded in WORK/results.jsonl.

WORK defaults to $QWIRE_FUZZ_WORK or /tmp/qwire-fuzz. --build DIR uses the qwire built there by
build.sh (instrumented for coverage: `build.sh DIR fuzz`); without it, the qwire on sys.path runs
with coverage of its Python code only. --asan expects a `build.sh DIR asan-fuzz` build and preloads
the ASan runtime (README.md).
"""
from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DEFAULT_WORK = os.environ.get("QWIRE_FUZZ_WORK", "/tmp/qwire-fuzz")
TIMEOUT_S = 1  # CPU seconds per input: the finding threshold (targets.MAX_CPU_S)
HANG_S = 20  # libFuzzer's wall-clock -timeout: only real hangs, whatever the machine's load
RSS_LIMIT_MB = 512
MAX_LEN = 16384
ASAN_OPTIONS = "detect_leaks=0:allocator_may_return_null=1:abort_on_error=1:symbolize=1:detect_stack_use_after_return=0"
UBSAN_OPTIONS = "halt_on_error=1:abort_on_error=1:print_stacktrace=1"


def site_packages_file(name):
    import importlib.util

    spec = importlib.util.find_spec("atheris")
    if spec is None:
        sys.exit("atheris is not installed: pip install atheris")
    return os.path.join(os.path.dirname(os.path.dirname(spec.origin)), name)


def child_env(build=None, asan=False):
    env = dict(os.environ)
    paths = [HERE, os.path.join(ROOT, "tests")]
    if build:
        paths.insert(0, os.path.join(os.path.abspath(build), "src"))
    elif os.path.isdir(os.path.join(ROOT, "src", "qwire")) and _has_built_core(os.path.join(ROOT, "src")):
        paths.insert(0, os.path.join(ROOT, "src"))
    env["PYTHONPATH"] = os.pathsep.join(paths + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    if asan:
        env["LD_PRELOAD"] = site_packages_file("asan_with_fuzzer.so")
        env["ASAN_OPTIONS"] = ASAN_OPTIONS
        env["UBSAN_OPTIONS"] = UBSAN_OPTIONS
        env["PYTHONMALLOC"] = "malloc"  # every Python allocation visible to ASan
    return env


def _has_built_core(src):
    return bool(glob.glob(os.path.join(src, "qwire", "_core*.so")))


def git_commit():
    try:
        return subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
    except Exception:
        return "?"


def cmd_list(args):
    sys.path[:0] = child_env(args.build)["PYTHONPATH"].split(os.pathsep)
    from harness import load_libfuzzer

    load_libfuzzer()
    import targets

    for name, t in targets.TARGETS.items():
        if args.names:
            if t.available():
                print(name)
            continue
        print(f"{name:14s} {'available  ' if t.available() else 'unavailable'} {t.doc}")


def cmd_fuzz(args):
    work = os.path.abspath(args.work)
    corpus = os.path.join(work, "corpus", args.target)
    seeds = os.path.join(work, "seeds")
    findings = os.path.join(work, "findings")
    logs = os.path.join(work, "logs")
    for d in (corpus, findings, logs):
        os.makedirs(d, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    log_path = os.path.join(logs, f"{args.target}-{stamp}.log")
    flags = [
        f"-timeout={HANG_S}",
        f"-rss_limit_mb={args.rss_limit_mb or (RSS_LIMIT_MB * 4 if args.asan else RSS_LIMIT_MB)}",
        f"-max_len={args.max_len}",
        "-print_final_stats=1",
        f"-artifact_prefix={findings}/{args.target}-",
    ]
    if args.time:
        flags.append(f"-max_total_time={args.time}")
    if args.runs:
        flags.append(f"-runs={args.runs}")
    dirs = [corpus] + ([seeds] if os.path.isdir(seeds) and os.listdir(seeds) else [])
    cmd = [sys.executable, os.path.join(HERE, "harness.py"), args.target] + flags + args.extra + dirs
    mine = lambda: {f for f in os.listdir(findings) if f.startswith(args.target + "-")}  # noqa: E731
    before = mine()
    start = time.time()
    with open(log_path, "w") as log:
        proc = subprocess.run(cmd, env=child_env(args.build, args.asan), stdout=log, stderr=subprocess.STDOUT)
    elapsed = time.time() - start
    text = open(log_path, errors="replace").read()
    if proc.returncode == 77 and "unavailable" in text:
        print(f"{args.target}: unavailable in this qwire (skipped)")
        return 0
    execs = _execs(text)
    new = sorted(mine() - before)
    interrupted = proc.returncode == 72 and "run interrupted" in text  # SIGINT: stopped, not failed
    ok = (proc.returncode == 0 or interrupted) and not new
    record = {
        "target": args.target, "execs": execs, "seconds": round(elapsed, 1), "findings": new,
        "exit": 0 if interrupted else proc.returncode, "interrupted": interrupted, "build": "asan-fuzz" if args.asan else ("fuzz" if args.build else "python-only"),
        "commit": _build_commit(args.build) or git_commit(), "date": stamp, "log": log_path,
        "coverage": _last(r"cov: (\d+)", text), "corpus": _last(r"corp: (\d+)", text),
    }
    with open(os.path.join(work, "results.jsonl"), "a") as f:
        f.write(json.dumps(record) + "\n")
    rate = execs / elapsed if elapsed else 0
    print(f"{args.target}: {execs} execs in {elapsed:.0f} s ({rate:.0f}/s), cov {record['coverage']}, "
          f"corpus {record['corpus']}, {'0 findings' if ok else 'FINDING'}")
    if not ok:
        print(f"exit {proc.returncode}; findings: {new or '(none written)'}; log: {log_path}")
        for name in new:
            data = open(os.path.join(findings, name), "rb").read()
            print(f"{name}: {len(data)} bytes: {data[:4096].hex()}")
        print("\n".join([ln for ln in text.splitlines() if not ln.lstrip().startswith("#")][-30:]))
        return 1
    return 0


def _build_commit(build):
    """The commit a build.sh build was made from (its COMMIT file), if known. A build without one
    is older than the file: "unknown", never the work tree's commit, which it may not contain."""
    if not build:
        return None
    try:
        return " ".join(open(os.path.join(build, "COMMIT")).read().split())
    except OSError:
        return "unknown"


def _execs(text):
    m = re.findall(r"stat::number_of_executed_units: (\d+)", text)
    if m:
        return int(m[-1])
    m = re.findall(r"Done (\d+) runs", text) or re.findall(r"^#(\d+)", text, re.M)
    return int(m[-1]) if m else 0


def _last(pattern, text):
    m = re.findall(pattern, text)
    return int(m[-1]) if m else None


def cmd_replay(args):
    """Re-exec in a child with the right environment, then run inputs through the targets."""
    if os.environ.get("_QWIRE_REPLAY_CHILD") != "1":
        env = child_env(args.build, args.asan)
        env["_QWIRE_REPLAY_CHILD"] = "1"
        return subprocess.run([sys.executable] + sys.argv, env=env).returncode
    import faulthandler

    faulthandler.enable()
    sys.path[:0] = [HERE, os.path.join(ROOT, "tests")]
    from harness import load_libfuzzer

    load_libfuzzer()  # an instrumented build needs libFuzzer's symbols even without fuzzing
    import qwire
    import targets

    names = targets.available() if args.target == "all" else args.target.split(",")
    files = []
    for p in args.paths:
        if os.path.isdir(p):
            files += sorted(os.path.join(dp, f) for dp, _, fs in os.walk(p) for f in fs)
        else:
            files.append(p)
    print(f"qwire from {os.path.dirname(qwire.__file__)}; {len(files)} inputs x {names}")
    bad = 0
    slow = []
    for name in names:
        t = targets.TARGETS[name]
        start = time.time()
        for path in files:
            try:
                data = open(path, "rb").read()
            except FileNotFoundError:  # a running campaign replaced it with a smaller input
                continue
            faulthandler.dump_traceback_later(30 * TIMEOUT_S, exit=True)  # a real hang ends the run
            t0 = time.perf_counter()
            try:
                t(data)
            except targets.Finding as e:
                bad += 1
                print(f"FINDING {name} {path}: {e}")
            finally:
                faulthandler.cancel_dump_traceback_later()
            dt = time.perf_counter() - t0
            if dt > TIMEOUT_S * (10 if args.asan else 1):
                slow.append((name, path, dt))
        print(f"{name}: {len(files)} inputs in {time.time() - start:.1f} s")
    for name, path, dt in slow:
        print(f"SLOW {name} {path}: {dt:.2f} s")
    print(f"replay: {bad} findings, {len(slow)} slow inputs")
    return 1 if bad or slow else 0


def cmd_report(args):
    totals = {}
    path = os.path.join(args.work, "results.jsonl")
    if not os.path.exists(path):
        print("no campaigns recorded")
        return 0
    for line in open(path):
        r = json.loads(line)
        t = totals.setdefault(r["target"], {"execs": 0, "seconds": 0.0, "campaigns": 0, "findings": 0, "cov": 0})
        t["execs"] += r["execs"]
        t["seconds"] += r["seconds"]
        t["campaigns"] += 1
        if not r.get("spurious"):  # annotated by hand after triage (the reason is in the record)
            t["findings"] += len(r["findings"]) + (1 if r["exit"] not in (0,) and not r["findings"] else 0)
        t["cov"] = max(t["cov"], r.get("coverage") or 0)
    print(f"{'target':14s} {'execs':>12s} {'hours':>7s} {'runs':>5s} {'max cov':>8s} {'findings':>8s}")
    for name, t in sorted(totals.items()):
        print(f"{name:14s} {t['execs']:12d} {t['seconds'] / 3600:7.2f} {t['campaigns']:5d} {t['cov']:8d} {t['findings']:8d}")
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    ls = sub.add_parser("list")
    ls.add_argument("--build")
    ls.add_argument("--names", action="store_true", help="only the names of the available targets")
    f = sub.add_parser("fuzz")
    f.add_argument("target")
    f.add_argument("--time", type=int, default=60, help="seconds (0: no limit)")
    f.add_argument("--runs", type=int, default=0)
    f.add_argument("--build", help="directory of a build.sh build (default: the qwire on the path)")
    f.add_argument("--asan", action="store_true", help="ASan+UBSan build (build.sh DIR asan-fuzz)")
    f.add_argument("--work", default=DEFAULT_WORK)
    f.add_argument("--max-len", type=int, default=MAX_LEN)
    f.add_argument("--rss-limit-mb", type=int, default=0)
    f.add_argument("extra", nargs="*", help="more libFuzzer flags (after --)")
    r = sub.add_parser("replay")
    r.add_argument("target", help="a target, several separated by commas, or all")
    r.add_argument("paths", nargs="+")
    r.add_argument("--build")
    r.add_argument("--asan", action="store_true")
    rep = sub.add_parser("report")
    rep.add_argument("--work", default=DEFAULT_WORK)
    args = p.parse_args(argv)
    return {"list": cmd_list, "fuzz": cmd_fuzz, "replay": cmd_replay, "report": cmd_report}[args.cmd](args) or 0


if __name__ == "__main__":
    sys.exit(main())
