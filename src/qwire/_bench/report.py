"""Presenting benchmark results: an aligned text table, a JSON document and a PNG bar chart."""
from __future__ import annotations

import datetime
import json
import os
import platform

from .peers import BASELINE
from .runner import WorkloadResult

__all__ = ["format_table", "format_markdown", "environment", "to_json", "write_plot", "format_duration", "format_ratio"]


def format_duration(ns: float) -> str:
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}" if ns < 1000 * scale else f"{ns / scale:.0f} {unit}"
    return f"{ns:.0f} ns"


def format_size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def format_ratio(r: float | None) -> str:
    if r is None:
        return "-"
    if r >= 10:
        return f"{r:.0f}x"
    if r >= 0.1:
        return f"{r:.2f}x"
    return f"{r:.2g}x"


def _ratio(value, base):
    return value / base if base else None


def ratios(result: WorkloadResult, m) -> dict:
    """Serialize time, deserialize time and size as fractions of pickle's (None without pickle)."""
    base = result.baseline()
    if base is None:
        return {"ser": None, "de": None, "size": None}
    return {"ser": _ratio(m.ser_ns, base.ser_ns), "de": _ratio(m.de_ns, base.de_ns), "size": _ratio(m.size, base.size)}


COLUMNS = ("library", "ser", "de", "size", "ser/pickle", "de/pickle", "size/pickle")


def format_table(results: list[WorkloadResult]) -> str:
    """The results as an aligned table grouped by workload, followed by notes and skipped peers."""
    rows = []
    for result in results:
        rows.append((f"{result.name}: {result.description}",))
        for m in result.measurements:
            r = ratios(result, m)
            rows.append(
                (
                    "  " + m.library,
                    format_duration(m.ser_ns),
                    format_duration(m.de_ns),
                    format_size(m.size),
                    format_ratio(r["ser"]),
                    format_ratio(r["de"]),
                    format_ratio(r["size"]),
                )
            )
    body_rows = [row for row in rows if len(row) > 1]
    widths = [max(len(str(row[i])) for row in body_rows + [COLUMNS]) for i in range(len(COLUMNS))]
    widths[0] = max(widths[0], 2 + len(COLUMNS[0]))

    def line(cells):
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:])]
        return "  ".join([first] + rest).rstrip()

    out = [line(("  " + COLUMNS[0],) + COLUMNS[1:]), "-" * (sum(widths) + 2 * (len(widths) - 1))]
    for row in rows:
        out.append(row[0] if len(row) == 1 else line(row))
    out.append("")
    out.append("times are medians per call; ratios are to pickle protocol 5 (in-band) in the same run; lower is better")
    notes = {}
    for result in results:
        for m in result.measurements:
            if m.note and m.note not in notes.setdefault(m.library, []):
                notes[m.library].append(m.note)
    if notes:
        out.append("notes:")
        for library, texts in notes.items():
            for text in texts:
                out.append(f"  {library}: {text}")
    skipped = [s for result in results for s in result.skipped]
    if skipped:
        out.append("skipped:")
        for s in skipped:
            out.append(f"  {s.workload} / {s.library}: {s.reason}")
    return "\n".join(out)


def format_markdown(results: list[WorkloadResult]) -> str:
    """The results as a GitHub markdown table (for benchmarks/README.md)."""
    out = ["| workload | library | ser | de | size | ser/pickle | de/pickle | size/pickle |", "|---|---|--:|--:|--:|--:|--:|--:|"]
    for result in results:
        for m in result.measurements:
            r = ratios(result, m)
            cells = [result.name, m.library, format_duration(m.ser_ns), format_duration(m.de_ns), format_size(m.size),
                     format_ratio(r["ser"]), format_ratio(r["de"]), format_ratio(r["size"])]
            out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def environment(versions: dict) -> dict:
    """Date, machine and versions, for the record."""
    import numpy

    try:
        cpu_model = next(
            line.split(":", 1)[1].strip()
            for line in open("/proc/cpuinfo", encoding="utf-8", errors="replace")
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        cpu_model = platform.processor() or None
    try:
        import pandas

        versions = {"pandas": pandas.__version__, **versions}
    except ImportError:
        pass
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "machine": platform.machine(),
            "cpu": cpu_model,
            "cpu_count": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        },
        "versions": {
            "python": f"{platform.python_implementation()} {platform.python_version()}",
            "numpy": numpy.__version__,
            **{name: version for name, version in versions.items()},
        },
    }


def to_json(results: list[WorkloadResult], env: dict, settings: dict) -> str:
    doc = dict(env)
    doc["settings"] = settings
    doc["baseline"] = BASELINE
    doc["workloads"] = [{"name": r.name, "description": r.description} for r in results]
    doc["results"] = [
        {
            "workload": m.workload,
            "library": m.library,
            "ser_ns": round(m.ser_ns, 1),
            "de_ns": round(m.de_ns, 1),
            "size": m.size,
            "ser_ratio": ratios(r, m)["ser"],
            "de_ratio": ratios(r, m)["de"],
            "size_ratio": ratios(r, m)["size"],
            "rounds": m.rounds,
            "ser_batch": m.ser_batch,
            "de_batch": m.de_batch,
            "note": m.note,
        }
        for r in results
        for m in r.measurements
    ]
    doc["skipped"] = [{"workload": s.workload, "library": s.library, "reason": s.reason} for r in results for s in r.skipped]
    return json.dumps(doc, indent=2, ensure_ascii=False)


def check_matplotlib() -> str | None:
    """None when matplotlib can be imported, else the reason."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        return str(exc)
    return None


def write_plot(results: list[WorkloadResult], path: str, title: str) -> None:
    """Bar charts of serialize and deserialize time relative to pickle: one group of bars per
    workload (only the libraries that ran it), one colour per library, log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = [r for r in results if r.baseline() is not None]
    libraries = list(dict.fromkeys(m.library for r in results for m in r.measurements))
    palette = plt.get_cmap("tab20").colors
    colours = {library: palette[(2 * i) % 20 + (2 * i) // 20] for i, library in enumerate(libraries)}
    fig, axes = plt.subplots(2, 1, figsize=(max(9, 1.5 * len(results) + 4), 8), sharex=True)
    for ax, key, label in ((axes[0], "ser", "serialize"), (axes[1], "de", "deserialize")):
        for x, result in enumerate(results):
            width = 0.8 / max(4, len(result.measurements))
            for i, m in enumerate(result.measurements):
                left = x - width * len(result.measurements) / 2
                ax.bar(left + width * (i + 0.5), ratios(result, m)[key], width, color=colours[m.library])
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_ylabel(f"{label} time / pickle-5")
        ax.grid(axis="y", which="major", alpha=0.3)
    axes[1].set_xticks(range(len(results)))
    axes[1].set_xticklabels([r.name for r in results], rotation=20, ha="right")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[library]) for library in libraries]
    fig.legend(handles, libraries, loc="center right", fontsize="small", title="lower is faster")
    axes[0].set_title(title, fontsize="medium")
    fig.tight_layout(rect=(0, 0, 0.87, 1))
    fig.savefig(path, format="png", dpi=110)
    plt.close(fig)
