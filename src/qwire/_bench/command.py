"""`qwire bench`: choose workloads and libraries, run them, print and save the results."""
from __future__ import annotations

import sys

from . import report
from .peers import PEERS, library_versions
from .runner import DEFAULT, QUICK, Progress, run_workload
from .workloads import WORKLOADS, get_workloads, workload_from_file

__all__ = ["bench_command"]


def _fail(message: str, code: int = 2) -> int:
    print(f"qwire bench: {message}", file=sys.stderr)
    return code


def _chosen_peers(spec: str | None) -> list[str]:
    if spec is None:
        return list(PEERS)
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if names == ["none"]:
        return []
    unknown = [n for n in names if n not in PEERS]
    if unknown:
        raise ValueError(f"unknown peer {', '.join(unknown)}; choose from {', '.join(PEERS)} or 'none'")
    return names


def bench_command(args) -> int:
    if getattr(args, "files", False):
        from .files import format_files_table, run_files_bench

        entries, synced = (1000, 50) if args.quick else (5000, 300)
        result = run_files_bench(entries=entries, synced_entries=synced)
        print(format_files_table(result))
        if args.json:
            import json

            with open(args.json, "w", encoding="utf-8") as f:
                json.dump(result, f, indent=1)
        return 0
    if args.list:
        for w in WORKLOADS.values():
            print(f"{w.name:12}  {w.title}")
        print(f"{'ipc':12}  connections over loopback: qwire, PyKX, kola, aiokdb vs pickle and a raw socket")
        return 0
    if args.workload and "ipc" in args.workload:  # connections: a benchmark of its own (_bench/ipc.py)
        from . import ipc

        progress = Progress(enabled=not args.no_progress)
        results = ipc.run(scale=0.1 if args.quick else 1.0, budget_s=2.0 if args.quick else 8.0,
                          progress=lambda m: progress.update(m, stage=True))
        progress.done()
        print(ipc.format_results(results))
        return 0
    if args.plot and (reason := report.check_matplotlib()):
        return _fail(f"--plot needs matplotlib, which is not importable ({reason}); pip install matplotlib", 1)
    try:
        peers = _chosen_peers(args.peers)
        workloads = get_workloads(args.workload) if (args.workload or not args.data) else []
    except (ValueError, KeyError) as exc:
        return _fail(exc.args[0])
    for path in args.data or []:
        try:
            workloads.append(workload_from_file(path))
        except Exception as exc:  # a file we cannot read or load: say which and why, no traceback
            return _fail(f"cannot load --data {path}: {type(exc).__name__}: {exc}", 1)

    settings = QUICK if args.quick else DEFAULT
    progress = Progress(enabled=not args.no_progress)
    progress.update("checking installed libraries", stage=True)
    versions = library_versions(["qwire", "pickle"] + peers)
    missing = [name for name in peers if versions[name] is None]
    libraries = ["qwire", "pickle"] + [name for name in peers if versions[name] is not None]

    results = []
    for i, workload in enumerate(workloads, 1):
        results.append(run_workload(workload, libraries, settings, progress, label=f"[{i}/{len(workloads)}] "))
    progress.done()

    print(report.format_table(results))
    if missing:
        print(f"not installed: {', '.join(missing)}")
    env = report.environment({k: v for k, v in versions.items() if v is not None})
    mode = "quick" if args.quick else "default"
    if args.json:
        run_settings = {"mode": mode, **vars(settings), "peers": libraries, "not_installed": missing}
        with open(args.json, "w", encoding="utf-8") as f:
            f.write(report.to_json(results, env, run_settings) + "\n")
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(report.format_markdown(results) + "\n")
    if args.plot:
        title = f"qwire {versions.get('qwire')} vs pickle-5 and peers ({mode}; {env['versions']['python']}, {env['date'][:10]})"
        report.write_plot(results, args.plot, title)
    return 0

