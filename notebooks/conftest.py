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


# --- Test runs never write into a report folder (issue 14) ---------------------------------------
# The notebooks' default output_dir ("") is the scratch folder $BACKPAIN_SCRATCH; nbval's kernels
# inherit this process's environment, so they write into a temporary folder removed at the end.
# The session also fails if anything under reports/ changed while the tests ran.

import os
import shutil
import tempfile
from pathlib import Path

_REPORTS = Path(__file__).resolve().parents[1] / "reports"
_STATE: dict = {}


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    if not folder.is_dir():
        return {}
    return {p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file()}


def pytest_configure(config):
    _STATE["scratch"] = tempfile.mkdtemp(prefix="backpain-nbval-scratch-")
    _STATE["previous"] = os.environ.get("BACKPAIN_SCRATCH")
    os.environ["BACKPAIN_SCRATCH"] = _STATE["scratch"]
    _STATE["reports"] = _snapshot(_REPORTS)


def pytest_sessionfinish(session, exitstatus):
    after = _snapshot(_REPORTS)
    before = _STATE.get("reports", {})
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    if changed:
        session.config.pluginmanager.get_plugin("terminalreporter").write_line(
            f"FAILED: the test run changed {len(changed)} file(s) under reports/ (tests must write to a "
            f"temporary folder): {changed[:5]}", red=True)
        session.exitstatus = 1
    if _STATE.get("scratch"):
        shutil.rmtree(_STATE["scratch"], ignore_errors=True)
    if _STATE.get("previous") is None:
        os.environ.pop("BACKPAIN_SCRATCH", None)
    else:
        os.environ["BACKPAIN_SCRATCH"] = _STATE["previous"]
