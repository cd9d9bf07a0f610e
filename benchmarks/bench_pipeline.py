"""Load, clean and score a large synthetic study, against plain ``pd.read_csv`` of the same files.

Target (issue 4): load + clean + build the analysis dataset (which scores every instrument) in at
most 1.5x the time plain pandas takes to ``pd.read_csv`` the same CSV files. Both are timed in
fresh subprocesses, which also report their own peak memory (``ru_maxrss``).

Size: ``BACKPAIN_BENCH_N`` invited patients (default 1,000,000). Both sides are run
``BACKPAIN_BENCH_REPEAT`` times (default 3, alternating, each in a fresh process) and the best time
of each is compared (peak memory: the largest seen), so one noisy run does not decide the ratio. Run with
``python benchmarks/run.py pipeline``; ``python benchmarks/bench_pipeline.py --profile`` prints a
cProfile of the pipeline (top functions by cumulative time) instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import Figure  # noqa: E402

TARGET_RATIO = 1.5

_READ = """
import json, resource, sys, time
from pathlib import Path
import pandas as pd
folder = Path(sys.argv[1])
start = time.perf_counter()
tables = {p.stem: pd.read_csv(p) for p in sorted(folder.glob("*.csv"))}
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "rows": {k: len(v) for k, v in tables.items()}}))
"""

_PIPELINE = """
import json, resource, sys, time
from pathlib import Path
from backpain_analysis.loading import load_study
from backpain_analysis import build_analysis_dataset, clean_study
folder = Path(sys.argv[1])
t0 = time.perf_counter()
study = load_study(folder)
t1 = time.perf_counter()
clean = clean_study(study)
t2 = time.perf_counter()
data = build_analysis_dataset(clean)
t3 = time.perf_counter()
print(json.dumps({"seconds": t3 - t0, "load": t1 - t0, "clean": t2 - t1, "build": t3 - t2,
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "analysed": len(data), "log_rows": len(clean.cleaning_log)}))
"""

_PROFILE = """
import cProfile, pstats, sys
from pathlib import Path
from backpain_analysis.loading import load_study
from backpain_analysis import build_analysis_dataset, clean_study
folder = Path(sys.argv[1])
prof = cProfile.Profile()
prof.enable()
study = load_study(folder)
clean = clean_study(study)
data = build_analysis_dataset(clean)
prof.disable()
pstats.Stats(prof).sort_stats("cumulative").print_stats(45)
"""


def _n() -> int:
    return int(os.environ.get("BACKPAIN_BENCH_N", "1000000"))


def _write_study(folder: Path, n: int) -> None:
    from backpain_analysis.synthetic import generate_study

    study = generate_study(n_invited=n, seed=2024, truth_mc_n=2000)
    study.write(folder, format="csv")


def _repeat() -> int:
    return max(1, int(os.environ.get("BACKPAIN_BENCH_REPEAT", "3")))


def _best(runs: list[dict]) -> dict:
    """The fastest run, with the largest peak memory of all runs."""
    best = dict(min(runs, key=lambda r: r["seconds"]))
    best["peak_mib"] = max(r["peak_mib"] for r in runs)
    return best


def _child(code: str, folder: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", code, str(folder)], check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_pipeline_vs_read_csv() -> list[Figure]:
    """Load + clean + score N invited patients vs plain pd.read_csv of the same files."""
    n = _n()
    with tempfile.TemporaryDirectory(prefix="backpain-bench-") as tmp:
        folder = Path(tmp)
        _write_study(folder, n)
        reads, pipes = [], []
        for _ in range(_repeat()):  # alternate, so both sides see the same machine load
            reads.append(_child(_READ, folder))
            pipes.append(_child(_PIPELINE, folder))
        read, pipe = _best(reads), _best(pipes)
    ratio = pipe["seconds"] / read["seconds"]
    label = f"{n:,} invited"
    return [
        Figure(f"read_csv ({label})", read["seconds"], "s"),
        Figure(f"load_study ({label})", pipe["load"], "s"),
        Figure(f"clean_study ({label})", pipe["clean"], "s"),
        Figure(f"build_analysis_dataset ({label})", pipe["build"], "s"),
        Figure(f"load+clean+score / read_csv ({label})", ratio, "x", f"<= {TARGET_RATIO}", ratio <= TARGET_RATIO),
        Figure(f"peak memory read_csv ({label})", read["peak_mib"], "MiB"),
        Figure(f"peak memory pipeline ({label})", pipe["peak_mib"], "MiB"),
    ]


if __name__ == "__main__":
    if "--profile" in sys.argv:
        with tempfile.TemporaryDirectory(prefix="backpain-bench-") as tmp:
            _write_study(Path(tmp), _n())
            subprocess.run([sys.executable, "-c", _PROFILE, tmp], check=True)
    else:
        for fig in bench_pipeline_vs_read_csv():
            print(fig)
