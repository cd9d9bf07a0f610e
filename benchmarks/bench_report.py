"""Benchmark the full report: ``backpain report --jobs 2`` against the notebooks one by one.

Targets (issue 5): the full report on the default study (data/synthetic) in under 60 s on a
2-core machine with ``--jobs 2``, and at least 1.6x faster than executing the same notebooks one
by one with ``jupyter nbconvert --execute`` (a fresh kernel each, the same parameters, HTML out).

Both runs start from an empty output folder (``--force`` semantics: nothing is skipped). The
sequential baseline executes each notebook of ``notebooks/report.yaml`` (chapters, and the
feedback notebook once per practice) with parameters injected by papermill's parameterize step
only (no execution), then ``jupyter nbconvert --to html --execute`` on the result.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _common import Figure  # noqa: E402

DATA = ROOT / "data" / "synthetic"
BIN = Path(sys.executable).parent


def _report(out: Path, jobs: int) -> float:
    start = time.perf_counter()
    subprocess.run(
        [str(BIN / "backpain"), "report", "--data", str(DATA), "--out", str(out), "--jobs", str(jobs), "--force"],
        check=False,
        cwd=ROOT,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def _sequential_nbconvert(out: Path) -> float:
    """Parameterize every notebook as the runner would, then execute them one by one with nbconvert."""
    import papermill
    from papermill.parameterize import parameterize_notebook

    from backpain_analysis.report import load_report_definition, plan_jobs

    definition = load_report_definition()
    jobs = plan_jobs(definition, DATA)
    work = out / "_parameterized"
    work.mkdir(parents=True, exist_ok=True)
    prepared = []
    for job in jobs:
        nb = papermill.iorw.load_notebook_node(str(job.notebook))
        params = {**job.parameters, "data_dir": str(DATA), "output_dir": str(out)}
        nb = parameterize_notebook(nb, params, kernel_name="backpain")
        # run in the notebooks folder, as papermill's cwd does, under a unique name
        target = job.notebook.parent / f".bench_{job.stem}_{os.getpid()}.ipynb"
        papermill.iorw.write_ipynb(nb, str(target))
        prepared.append(target)
    start = time.perf_counter()
    try:
        for path in prepared:
            subprocess.run(
                [str(BIN / "jupyter"), "nbconvert", "--to", "html", "--no-input", "--execute",
                 "--ExecutePreprocessor.kernel_name=backpain", "--ExecutePreprocessor.timeout=600",
                 "--output-dir", str(work), str(path)],
                check=False,
                cwd=path.parent,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        return time.perf_counter() - start
    finally:
        for path in prepared:
            path.unlink(missing_ok=True)


def bench_full_report() -> list[Figure]:
    if not DATA.is_dir():
        raise FileNotFoundError(f"{DATA} does not exist: the default study is needed")
    tmp = Path(tempfile.mkdtemp(prefix="bench_report_"))
    try:
        parallel = _report(tmp / "parallel", jobs=2)
        sequential = _sequential_nbconvert(tmp / "sequential")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    speedup = sequential / parallel
    return [
        Figure("full report, backpain report --jobs 2", parallel, "s", "< 60 s", parallel < 60),
        Figure("same notebooks one by one, nbconvert --execute", sequential, "s"),
        Figure("speed-up of the runner over nbconvert one by one", speedup, "x", ">= 1.6x", speedup >= 1.6),
    ]


if __name__ == "__main__":
    for figure in bench_full_report():
        print(figure)
