"""Speed of design planning by simulation (issue 17).

Targets: a 200-replicate power point for the IMPaCT Back design (7 practices, 630 + 1017 invited,
about 550 analysed; generator, cleaning, analysis dataset and the complete-case mixed model with
Kenward-Roger df per replicate) under 60 s on 2 cores; a 5 x 5 grid (practices x patients per
practice) runs and, when interrupted, resumes from its cache (the rerun reads every point).
The grid here uses 10 replicates per point to keep `make bench` short; time scales linearly.
"""

from __future__ import annotations

import os
import tempfile
import time

from _common import Figure

from backpain_analysis.planning import impact_design, power_grid, simulate_power

JOBS = min(2, os.cpu_count() or 1)


def bench_power_point() -> list[Figure]:
    design = impact_design()
    simulate_power(design, 0.71, 2, seed=99)  # warm up: imports and the truth population
    start = time.perf_counter()
    res = simulate_power(design, 0.71, 200, seed=1, n_jobs=JOBS)
    seconds = time.perf_counter() - start
    row = res.iloc[0]
    return [
        Figure(f"power point, IMPaCT design, 200 replicates, {JOBS} processes", seconds, "s", "< 60 s",
               seconds < 60),
        Figure("  power for 0.71 points (primary, mixed model KR)", float(row["power"]), ""),
        Figure("  its Monte Carlo SE", float(row["power_mcse"]), ""),
        Figure("  replicates whose mixed model failed", float(row["failed"]), ""),
    ]


def bench_grid_resume() -> list[Figure]:
    design = impact_design()
    with tempfile.TemporaryDirectory() as cache:
        kw = {"cache_dir": cache, "n_jobs": JOBS, "progress": False}
        start = time.perf_counter()
        power_grid(design, 0.71, [5, 7, 10, 14, 20], [40, 70, 100, 150, 200], 10, seed=1, **kw)
        first = time.perf_counter() - start
        start = time.perf_counter()
        power_grid(design, 0.71, [5, 7, 10, 14, 20], [40, 70, 100, 150, 200], 10, seed=1, **kw)
        again = time.perf_counter() - start
    return [
        Figure(f"5 x 5 grid, 10 replicates per point, {JOBS} processes", first, "s"),
        Figure("  same grid resumed from the cache", again, "s", "< 5 s", again < 5),
    ]


if __name__ == "__main__":
    for f in bench_power_point() + bench_grid_resume():
        print(f)
