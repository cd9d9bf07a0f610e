"""Shared helpers for benchmarks: the Figure record, timing and peak memory."""

from __future__ import annotations

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

    The child reports its own peak (``ru_maxrss`` of RUSAGE_SELF) on its last stderr line:
    RUSAGE_CHILDREN would give the largest of every child this process has waited for so
    far, i.e. the peak of an earlier, bigger benchmark.
    """
    marker = "__PEAK_KIB__="
    wrapped = (
        code
        + "\nimport resource as _r, sys as _s\n"
        + f"_s.stderr.write('{marker}%d\\n' % _r.getrusage(_r.RUSAGE_SELF).ru_maxrss)\n"
    )
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", wrapped], check=True, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    lines = [line for line in proc.stderr.splitlines() if line.startswith(marker)]
    other = "\n".join(line for line in proc.stderr.splitlines() if not line.startswith(marker))
    if other:
        print(other, file=sys.stderr)
    peak_kib = int(lines[-1][len(marker):]) if lines else float("nan")
    return seconds, peak_kib / 1024
