"""Per-imputation analyses in worker processes give the same numbers as in one process."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from backpain_analysis.parallel import WORKERS_ENV, analysis_workers, map_datasets


def _square_plus_pid(x):
    return x * x, os.getpid()


def test_map_datasets_keeps_order_and_uses_other_processes():
    out = map_datasets(_square_plus_pid, list(range(7)), workers=2)
    assert [v for v, _ in out] == [i * i for i in range(7)]
    assert any(pid != os.getpid() for _, pid in out)
    assert all(pid == os.getpid() for _, pid in map_datasets(_square_plus_pid, [1, 2], workers=1))


def _fails(x):
    if x == 2:
        raise ValueError("dataset 2 is bad")
    return x


def test_an_error_in_a_worker_reaches_the_caller():
    with pytest.raises(ValueError, match="dataset 2 is bad"):
        map_datasets(_fails, [0, 1, 2, 3], workers=2)


def test_worker_count_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(WORKERS_ENV, "3")
    assert analysis_workers() == 3
    monkeypatch.setenv(WORKERS_ENV, "many")
    with pytest.raises(ValueError, match=WORKERS_ENV):
        analysis_workers()


def test_chapter05_tables_are_the_same_with_one_or_two_workers(monkeypatch):
    from test_outcomes import analysis_frame

    from backpain_analysis.outcomes import (
        SECONDARY_OUTCOMES,
        delta_adjustment,
        impute_outcomes,
        primary_analysis,
        secondary_outcomes_table,
    )

    frame = analysis_frame()
    imps = impute_outcomes(frame, n_imputations=3, seed=3, max_iter=3)
    specs = [s for s in SECONDARY_OUTCOMES if s.outcome in imps[0].columns]
    assert {s.kind for s in specs} >= {"linear", "logistic", "ordinal"}
    tables = []
    for workers in ("1", "2"):
        monkeypatch.setenv(WORKERS_ENV, workers)
        tables.append((secondary_outcomes_table(frame, imps, specs=specs), primary_analysis(frame, imps),
                       delta_adjustment(frame, imps, deltas=(0.0, -2.0))))
    for one, two in zip(*tables, strict=True):
        pd.testing.assert_frame_equal(one, two)


def test_report_gives_each_side_by_side_notebook_its_share_of_workers_and_blas_threads(monkeypatch, tmp_path):
    """run_report sets the shares in the environment the kernels inherit and restores it after."""
    from backpain_analysis import report
    from backpain_analysis.parallel import BLAS_THREAD_ENVS, side_by_side_environment

    for name in (WORKERS_ENV, *BLAS_THREAD_ENVS):
        monkeypatch.delenv(name, raising=False)
    env = side_by_side_environment(2)
    assert set(env) == {WORKERS_ENV, *BLAS_THREAD_ENVS}
    assert len(set(env.values())) == 1 and int(env[WORKERS_ENV]) == max(1, analysis_workers() // 2)
    seen = {}

    def fake_execute(job, **kwargs):
        seen[job.name] = {name: os.environ.get(name) for name in env}
        raise RuntimeError("not run")

    monkeypatch.setattr(report, "_execute_job", fake_execute)
    monkeypatch.setattr(report, "ProcessPoolExecutor", _InlineExecutor)
    root = Path(__file__).resolve().parents[1]
    report.run_report(root / "data" / "synthetic", tmp_path / "r", chapters=["01_data_quality", "02_cohort"],
                      jobs=2, progress=False, validate=False)
    assert seen and all(v == env for v in seen.values())
    assert all(os.environ.get(name) is None for name in env)  # restored


class _InlineExecutor:
    def __init__(self, *args, **kwargs):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def submit(self, fn, *args, **kwargs):
        from concurrent.futures import Future

        future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future

    def shutdown(self, *args, **kwargs):
        pass
