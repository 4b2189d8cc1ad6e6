"""Timing: interleaved rounds, batches sized to the clock, medians.

For each workload every contender first does one checked round trip (the warm-up) and one timed
call to size its batches: a batch repeats a call until it lasts about `batch_ms`, so that fast calls
are not lost in timer resolution. Then the rounds run round-robin: in each round every contender
times one serialize batch and one deserialize batch, starting from a different contender each round,
so that a machine that slows down mid-run slows everyone alike. The result is the median per-call
time over the rounds. The garbage collector is off inside a batch (as `timeit` does) and the
workload's own objects are frozen out of its way.
"""
from __future__ import annotations

import gc
import itertools
import statistics
import sys
import time
from dataclasses import dataclass, field

from .peers import BASELINE, Contender, Skip, prepare
from .workloads import Workload

__all__ = ["Settings", "QUICK", "DEFAULT", "Measurement", "Skipped", "WorkloadResult", "run_workload", "Progress"]


@dataclass(frozen=True)
class Settings:
    scale: float  # workload size factor
    max_rounds: int
    min_rounds: int
    batch_ms: float  # target duration of one timed batch
    budget_s: float  # target duration of one workload's rounds (fewer rounds for slow ones)


QUICK = Settings(scale=0.1, max_rounds=7, min_rounds=3, batch_ms=2.0, budget_s=3.0)
DEFAULT = Settings(scale=1.0, max_rounds=21, min_rounds=5, batch_ms=10.0, budget_s=20.0)


@dataclass
class Measurement:
    workload: str
    library: str
    ser_ns: float  # median per call
    de_ns: float
    size: int
    rounds: int
    ser_batch: int  # calls per timed batch
    de_batch: int
    note: str = ""


@dataclass
class Skipped:
    workload: str
    library: str
    reason: str


@dataclass
class WorkloadResult:
    name: str
    description: str
    measurements: list[Measurement] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def baseline(self) -> Measurement | None:
        return next((m for m in self.measurements if m.library == BASELINE), None)


class Progress:
    """One status line on stderr: rewritten in place on a terminal, printed per stage otherwise."""

    def __init__(self, stream=None, enabled=True):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.live = enabled and self.stream.isatty()
        self._width = 0

    def update(self, text: str, *, stage: bool = False):
        if not self.enabled:
            return
        if self.live:
            pad = " " * max(0, self._width - len(text))
            self.stream.write("\r" + text + pad)
            self._width = len(text)
        elif stage:
            self.stream.write(text + "\n")
        self.stream.flush()

    def done(self):
        if self.enabled and self.live and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0


def _time_batch(call, repeat: int) -> float:
    """Per-call nanoseconds of `repeat` back-to-back calls."""
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        for _ in itertools.repeat(None, repeat):
            call()
        elapsed = time.perf_counter_ns() - start
    finally:
        if gc_was_enabled:
            gc.enable()
    return elapsed / repeat


def _batch_size(one_call_ns: float, batch_ms: float) -> int:
    return max(1, min(100_000, int(batch_ms * 1e6 / max(one_call_ns, 1.0))))


@dataclass
class _Timing:
    contender: Contender
    ser_batch: int
    de_batch: int
    estimate_ns: tuple  # one serialize call, one deserialize call
    ser: list = field(default_factory=list)
    de: list = field(default_factory=list)

    def round_cost_ns(self) -> float:
        return self.estimate_ns[0] * self.ser_batch + self.estimate_ns[1] * self.de_batch


def run_workload(workload: Workload, libraries, settings: Settings, progress: Progress, label: str = "") -> WorkloadResult:
    """Build one workload's data and measure every library on it."""
    progress.update(f"{label}{workload.name}: building data", stage=True)
    obj = workload.make(settings.scale)
    result = WorkloadResult(workload.name, workload.describe(obj, settings.scale))
    gc.collect()
    gc.freeze()  # the workload's objects stay out of the collector's way while timing
    try:
        timings = _prepare_all(workload, obj, libraries, settings, progress, label, result)
        _run_rounds(timings, settings, progress, f"{label}{workload.name}")
    finally:
        gc.unfreeze()
    for t in timings:
        result.measurements.append(
            Measurement(
                workload=workload.name,
                library=t.contender.library,
                ser_ns=statistics.median(t.ser),
                de_ns=statistics.median(t.de),
                size=t.contender.size,
                rounds=len(t.ser),
                ser_batch=t.ser_batch,
                de_batch=t.de_batch,
                note=t.contender.note,
            )
        )
    return result


def _prepare_all(workload, obj, libraries, settings, progress, label, result) -> list[_Timing]:
    timings = []
    for name in libraries:
        progress.update(f"{label}{workload.name}: warming up {name}")
        try:
            contenders = prepare(name, obj)
        except Skip as skip:
            result.skipped.append(Skipped(workload.name, name, str(skip)))
            continue
        except Exception as exc:  # a peer that breaks is reported, not allowed to end the run
            result.skipped.append(Skipped(workload.name, name, f"failed: {type(exc).__name__}: {exc}"))
            continue
        for c in contenders:
            ser_ns = _time_batch(c.encode, 1)
            de_ns = _time_batch(c.decode, 1)
            batches = _batch_size(ser_ns, settings.batch_ms), _batch_size(de_ns, settings.batch_ms)
            timings.append(_Timing(c, *batches, estimate_ns=(ser_ns, de_ns)))
    return timings


def _run_rounds(timings: list[_Timing], settings: Settings, progress: Progress, label: str) -> None:
    if not timings:
        return
    round_ns = sum(t.round_cost_ns() for t in timings)
    rounds = int(settings.budget_s * 1e9 // max(round_ns, 1))
    rounds = max(settings.min_rounds, min(settings.max_rounds, rounds))
    for r in range(rounds):
        progress.update(f"{label}: round {r + 1}/{rounds}", stage=r == 0)
        start = r % len(timings)
        for t in timings[start:] + timings[:start]:
            t.ser.append(_time_batch(t.contender.encode, t.ser_batch))
            t.de.append(_time_batch(t.contender.decode, t.de_batch))
