"""Speed of the shared multiple imputation and of chapter 05 (issue 13, item 4).

Targets: chapter 05 with its default number of imputations (m chosen by the rule m >= 100 x FMI
from a pilot run, at least 20) runs in under 2 minutes on a 100,000-invited synthetic study on
2 cores, and on the bundled study no slower than before the rule (13 s with m = 5).

Figures:

- the chapter executed by papermill on the bundled study and on a generated study of
  ``BACKPAIN_BENCH_IMPUTATION_N`` invited (default 100,000), with m by rule (wall seconds);
- on the bundled study, side by side, the chapter with m = 5 for every analysis (the report
  before the rule) and the ratio of the two: wall times on a shared 2-core machine vary by 40%
  from hour to hour (the imports alone), the ratio much less;
- the imputation alone (``shared_imputations``, m = 10) on the large study with BLAS limited to
  one thread against the default BLAS threads, side by side: the chains make thousands of small
  matrix products, for which a multi-threaded OpenBLAS is slower on a busy 2-core machine.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _common import Figure, timed  # noqa: E402

DATA = ROOT / "data" / "synthetic"
NOTEBOOK = ROOT / "notebooks" / "05_patient_outcomes.ipynb"


def _n_large() -> int:
    return int(os.environ.get("BACKPAIN_BENCH_IMPUTATION_N", "100000"))


def _large_study(folder: Path) -> Path:
    from backpain_analysis.synthetic import generate_study

    out = folder / "study"
    generate_study(n_invited=_n_large(), seed=7).write(out)
    return out


def _run_chapter(data_dir: Path, out: Path, **parameters) -> float:
    import papermill

    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    papermill.execute_notebook(str(NOTEBOOK), str(out / "05.ipynb"), parameters={
        "data_dir": str(data_dir), "output_dir": str(out), **parameters}, kernel_name="backpain",
        cwd=str(NOTEBOOK.parent), progress_bar=False, log_output=False, execution_timeout=1800)
    return time.perf_counter() - start


def bench_chapter05() -> list[Figure]:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # the bundled study with m by rule and with m = 5 (the report before the rule), alternately,
        # fastest of 3 each: the ratio is the cost of the rule on this machine, whatever its speed
        small, five = [], []
        for k in range(3):
            small.append(_run_chapter(DATA, tmp / f"rule{k}"))
            five.append(_run_chapter(DATA, tmp / f"five{k}", n_imputations=5, secondary_imputations=0))
        large_dir = _large_study(tmp)
        large = _run_chapter(large_dir, tmp / "large")
    n = _n_large()
    return [
        Figure("chapter 05, bundled study, m by rule (papermill, fastest of 3)", min(small), "s", "<= 13 s",
               min(small) <= 13),
        Figure("same with m = 5 for every analysis (the report before the rule), side by side", min(five), "s"),
        Figure("cost of the rule on the bundled study (m by rule / m = 5)", min(small) / min(five), "x"),
        Figure(f"chapter 05, {n:,} invited, m by rule (papermill)", large, "s", "< 120 s", large < 120),
    ]


def bench_blas_threads() -> list[Figure]:
    from threadpoolctl import threadpool_limits

    from backpain_analysis import imputation
    from backpain_analysis.dataset import load_analysis_dataset

    with tempfile.TemporaryDirectory() as tmp:
        _, data = load_analysis_dataset(_large_study(Path(tmp)))
    one, _ = timed(imputation.shared_imputations, data, n_imputations=10, seed=1)
    # the default: let OpenBLAS use its threads inside the chains (the limit made a no-op; the
    # chapter functions import one_blas_thread from the module at call time, so this reaches them)
    original = imputation.one_blas_thread
    imputation.one_blas_thread = lambda: threadpool_limits(limits=None)
    try:
        default, _ = timed(imputation.shared_imputations, data, n_imputations=10, seed=1)
    finally:
        imputation.one_blas_thread = original
    return [
        Figure(f"shared_imputations m=10, {_n_large():,} invited, one BLAS thread", one, "s"),
        Figure("same with the default BLAS threads", default, "s"),
        Figure("speed-up of one BLAS thread", default / one, "x", ">= 1", default >= one),
    ]
