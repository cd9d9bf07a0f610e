"""Analyses repeated over imputed datasets, in worker processes when the machine has cores to spare.

Every analysis of chapter 05 fits the same models to each of the m imputed datasets; the fits are
independent, deterministic and mostly Python-bound (formula building, optimisers), so threads do
not help and processes do. :func:`map_datasets` runs ``func(dataset)`` for each dataset and
returns the results in order, whatever the number of workers: same data, same numbers.

The number of workers is :func:`analysis_workers`: the environment variable
``BACKPAIN_ANALYSIS_WORKERS`` if set (``backpain report`` sets it so that the chapters it runs side
by side share the cores), else the number of usable cores. Workers are forked (Linux, macOS with
the fork start method available), so they inherit the datasets and the function without
pickling them; where fork is not available the work runs in this process.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["BLAS_THREAD_ENVS", "WORKERS_ENV", "analysis_workers", "map_datasets", "side_by_side_environment"]

#: Environment variable with the number of worker processes for the per-imputation analyses.
WORKERS_ENV = "BACKPAIN_ANALYSIS_WORKERS"

#: Environment variables that set the thread count of the BLAS libraries numpy and scipy load.
BLAS_THREAD_ENVS: tuple[str, ...] = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")

# what the forked workers read: set just before the pool starts, cleared after
_JOB: tuple[Callable[[Any], Any], Sequence[Any]] | None = None


def analysis_workers() -> int:
    """Worker processes for :func:`map_datasets`: ``BACKPAIN_ANALYSIS_WORKERS``, else the usable cores.

    Examples
    --------
    >>> analysis_workers() >= 1
    True
    """
    value = os.environ.get(WORKERS_ENV, "").strip()
    if value:
        try:
            return max(1, int(value))
        except ValueError:
            raise ValueError(f"{WORKERS_ENV} must be a whole number of worker processes, got {value!r}") from None
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def side_by_side_environment(jobs: int, environ: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for ``jobs`` notebooks running side by side: each gets cores // jobs worker
    processes (:data:`WORKERS_ENV`) and, with 2 or more jobs, as many BLAS threads.

    Variables already set in ``environ`` (default ``os.environ``) are left to the user. The BLAS
    limit matters: each kernel's OpenBLAS otherwise starts a thread per core, and two kernels on 2
    cores then fight over them; chapter 06's mixed models took 5.5 s instead of 0.2 s in a
    ``--jobs 2`` report (one BLAS thread: 0.1 s with the other core busy).

    Examples
    --------
    >>> env = side_by_side_environment(2, {})
    >>> env["OPENBLAS_NUM_THREADS"] == env[WORKERS_ENV] == str(max(1, analysis_workers() // 2))
    True
    >>> sorted(side_by_side_environment(1, {}))  # one notebook at a time: BLAS keeps its threads
    ['BACKPAIN_ANALYSIS_WORKERS']
    >>> side_by_side_environment(2, {"OMP_NUM_THREADS": "4"}).get("OMP_NUM_THREADS") is None  # the user's
    True
    """
    environ = os.environ if environ is None else environ
    share = str(max(1, analysis_workers() // max(1, jobs)))
    names = [WORKERS_ENV, *(BLAS_THREAD_ENVS if jobs >= 2 else ())]
    return {name: share for name in names if environ.get(name) is None}


def _run(i: int) -> Any:
    func, datasets = _JOB  # type: ignore[misc]
    return func(datasets[i])


def map_datasets(func: Callable[[Any], Any], datasets: Sequence[Any], *, workers: int | None = None) -> list[Any]:
    """``[func(d) for d in datasets]``, computed by up to ``workers`` forked processes.

    Parameters
    ----------
    func : callable
        Takes one dataset, returns something picklable (e.g. a dict of estimates).
    datasets : sequence
        Indexable (``len`` and ``datasets[i]``), e.g. :class:`~backpain_analysis.imputation.ImputedDatasets`,
        which builds each imputed dataset in the worker that analyses it.
    workers : int, optional
        Default :func:`analysis_workers`. 1 (or a single dataset, or no fork start method) runs
        in this process.

    Returns
    -------
    list
        The results in the order of ``datasets``.

    Examples
    --------
    >>> map_datasets(len, [[1], [1, 2], []], workers=2)
    [1, 2, 0]
    """
    global _JOB
    n = len(datasets)
    workers = min(analysis_workers() if workers is None else max(1, int(workers)), n)
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods() or _JOB is not None:
        return [func(datasets[i]) for i in range(n)]  # one process (also inside a worker: no nested pools)
    _JOB = (func, datasets)
    try:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            return pool.map(_run, range(n), chunksize=1)
    finally:
        _JOB = None
