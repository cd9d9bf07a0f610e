"""Speed and memory of the synthetic study generator (issue 3).

Target: 1,000,000 invited patients generated and written as CSV (eight tables plus
truth.json) in under a minute on the 2-core project machine. Each measurement runs in a fresh
process, so the peak resident memory is that of the generation alone. The default study
(1,647 invited) is timed too, including the Monte Carlo truth (200,000 patients).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from _common import Figure, run_measured

N_LARGE = 1_000_000
TARGET_SECONDS = 60.0

_CODE = """
import sys
from backpain_analysis.synthetic import generate_study
generate_study(n_invited={n}).write(sys.argv[1] if len(sys.argv) > 1 else {out!r})
"""


def _measure(n: int) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        seconds, peak = run_measured(_CODE.format(n=n, out=tmp))
        size = sum(p.stat().st_size for p in Path(tmp).iterdir()) / 2**20
    return seconds, peak, size


def bench_synthetic_million() -> list[Figure]:
    seconds, peak, size = _measure(N_LARGE)
    return [
        Figure("synthetic 1M invited: generate + write CSV", seconds, "s", f"< {TARGET_SECONDS:g} s", seconds < TARGET_SECONDS),
        Figure("synthetic 1M invited: peak memory", peak, "MiB"),
        Figure("synthetic 1M invited: CSV size", size, "MiB"),
    ]


def bench_synthetic_default() -> list[Figure]:
    seconds, peak, _ = _measure(1647)
    return [Figure("synthetic default study (1,647 invited, with truth)", seconds, "s", "< 15 s", seconds < 15)]
