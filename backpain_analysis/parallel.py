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

__all__ = ["WORKERS_ENV", "analysis_workers", "map_datasets"]

#: Environment variable with the number of worker processes for the per-imputation analyses.
WORKERS_ENV = "BACKPAIN_ANALYSIS_WORKERS"

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
