"""pytest configuration for nbval over the source notebooks (``pytest --nbval-lax``).

Warnings and other text on stderr vary between library versions and runs, so nbval does not
compare stderr; cells marked ``# NBVAL_CHECK_OUTPUT`` are compared on stdout only (rounded
headline numbers printed with ``print``). ``notebooks/nbval_sanitize.cfg`` masks dates, times,
durations and memory addresses in what is compared.
"""

from __future__ import annotations


def pytest_collectstart(collector):
    """Make nbval's notebook collectors ignore stderr when comparing outputs."""
    if getattr(collector, "path", None) is not None and collector.path.suffix == ".ipynb":
        if hasattr(collector, "skip_compare"):
            collector.skip_compare += ("stderr",)
