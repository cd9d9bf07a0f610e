"""Lazily created, process-wide thread pools for work on large tables.

numpy and Arrow release the GIL, so checking or harmonizing the columns of a table with
a million rows in threads uses both cores. Pools are created on first use and kept for the
life of the process; each name gets its own pool, so work in one pool never waits for a
slot held by work queued in another.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

#: Tables with fewer rows are processed in the calling thread (threads would cost more than they save).
PARALLEL_MIN_ROWS = 50_000

_POOLS: dict[str, ThreadPoolExecutor] = {}
_LOCK = threading.Lock()


def named_pool(name: str, max_workers: int | None = None) -> ThreadPoolExecutor:
    """The pool called ``name``, created with ``max_workers`` threads (default: up to 4, one per core)."""
    with _LOCK:
        pool = _POOLS.get(name)
        if pool is None:
            workers = max_workers if max_workers is not None else min(4, os.cpu_count() or 1)
            pool = _POOLS[name] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        return pool
