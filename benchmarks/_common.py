"""Shared helpers for benchmarks: the Figure record, timing and peak memory."""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass


@dataclass
class Figure:
    """One measured figure: ``met`` is None when there is no target."""

    name: str
    value: float
    unit: str
    target: str | None = None
    met: bool | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def timed(func, *args, repeat: int = 1, **kwargs):
    """Best wall-clock time over ``repeat`` calls; returns (seconds, last result)."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = func(*args, **kwargs)
        best = min(best, time.perf_counter() - start)
    return best, result


def run_measured(code: str) -> tuple[float, float]:
    """Run Python ``code`` in a fresh process; return (wall seconds, peak RSS in MiB).

    A fresh process gives an honest peak-memory figure (ru_maxrss of the child).
    """
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return seconds, peak_kib / 1024
