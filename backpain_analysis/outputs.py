"""Chapter outputs: tables (CSV), figures (PNG) and key findings (JSON), written atomically.

Every chapter notebook writes into ``OUT/<chapter>/``::

    tables/<name>.csv
    figures/<name>.png
    key_findings.json     # list of {name, label, value, ci_low, ci_high, unit}

Files are written to a temporary name in the same folder and then renamed, so an
interrupted run never leaves a half-written file that looks complete.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["SCRATCH_ENV", "ChapterOutputs", "KeyFinding", "atomic_write", "key_figures_markdown", "read_key_findings",
           "scratch_dir"]


@contextmanager
def atomic_write(path: str | Path, mode: str = "w", encoding: str | None = "utf-8"):
    """Open a temporary file next to ``path``; rename it onto ``path`` only on success.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
    >>> with atomic_write(target) as fh:
    ...     _ = fh.write("done")
    >>> target.read_text()
    'done'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _atomic_via(path: Path, writer: Callable[[Path], None]) -> Path:
    """Let ``writer`` write a temporary path, then rename it onto ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        writer(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _clean_number(value: Any) -> float | int | str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(number):
        return None
    if float(number).is_integer() and isinstance(value, int | bool):
        return int(number)
    return number


@dataclass
class KeyFinding:
    """One headline number of a chapter."""

    name: str
    value: float | int | str | None
    label: str = ""
    ci_low: float | None = None
    ci_high: float | None = None
    unit: str = ""


def key_figures_markdown(findings: list[KeyFinding], *, decimals: int = 1,
                         empty: str = "No figure is large enough to show.") -> str:
    """Key findings as a plain-language Markdown list for readers (one line each, no codes).

    Parameters
    ----------
    findings : list of KeyFinding
        As collected by :meth:`ChapterOutputs.finding`; ``label`` is the reader's wording.
    decimals : int
        Decimals of value and interval.
    empty : str
        Text when there is no finding.

    Returns
    -------
    str
        ``"- Label: **value unit** (95% CI low to high)"`` lines; labels are escaped
        (:func:`backpain_analysis.safe_text.markdown_text`), so text from an export cannot add
        Markdown or HTML. A percentage unit is written ``%`` right after the number.

    Examples
    --------
    >>> f = [KeyFinding("uptake", 48.44, "consultations with the questionnaire completed", 41.8, 55.0, "%")]
    >>> print(key_figures_markdown(f))
    - Consultations with the questionnaire completed: **48.4%** (95% CI 41.8 to 55.0)
    """
    from .safe_text import markdown_text

    lines = []
    for f in findings:
        if not isinstance(f.value, int | float) or not math.isfinite(float(f.value)):
            continue
        unit = "%" if f.unit == "%" else (f" {markdown_text(f.unit)}" if f.unit else "")
        line = f"- {markdown_text(f.label[:1].upper() + f.label[1:])}: **{float(f.value):.{decimals}f}{unit}**"
        if f.ci_low is not None and f.ci_high is not None:
            line += f" (95% CI {float(f.ci_low):.{decimals}f} to {float(f.ci_high):.{decimals}f})"
        lines.append(line)
    return "\n".join(lines) if lines else empty


#: Environment variable naming the scratch folder of interactive and test runs (nbval sets a temporary one).
SCRATCH_ENV = "BACKPAIN_SCRATCH"


def scratch_dir() -> Path:
    """Where a notebook run outside ``backpain report`` writes its outputs.

    ``$BACKPAIN_SCRATCH`` if set, else ``~/.cache/backpain/scratch`` (under ``$XDG_CACHE_HOME``
    when that is set). Only the report runner writes into a report folder.

    Examples
    --------
    >>> import os
    >>> os.environ[SCRATCH_ENV] = "/tmp/backpain-scratch-example"
    >>> str(scratch_dir())
    '/tmp/backpain-scratch-example'
    >>> del os.environ[SCRATCH_ENV]
    """
    env = os.environ.get(SCRATCH_ENV)
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "backpain" / "scratch"


class ChapterOutputs:
    """Where a chapter writes its tables, figures and key findings.

    Parameters
    ----------
    output_dir : str or Path
        The report output folder (``OUT``); ``""`` (the notebooks' default) means
        :func:`scratch_dir`, so interactive and test runs never write into a report folder.
    chapter : str
        Chapter name, e.g. ``"05_outcomes"``; outputs go to ``OUT/<chapter>/``.

    Examples
    --------
    >>> import tempfile, pandas as pd
    >>> out = ChapterOutputs(tempfile.mkdtemp(), "99_example")
    >>> _ = out.table(pd.DataFrame({"estimate": [0.71]}), "primary")
    >>> out.finding("rmdq_adjusted_difference", 0.712, ci_low=0.06, ci_high=1.36, label="RMDQ difference")
    >>> [f.name for f in out.findings]
    ['rmdq_adjusted_difference']
    """

    def __init__(self, output_dir: str | Path, chapter: str) -> None:
        self.root = (Path(output_dir).expanduser() if str(output_dir) else scratch_dir()) / chapter
        self.chapter = chapter
        self.tables_dir = self.root / "tables"
        self.figures_dir = self.root / "figures"
        self.findings: list[KeyFinding] = []

    def table(self, df: pd.DataFrame, name: str, *, index: bool = False, float_format: str | None = None) -> Path:
        """Write ``df`` as ``tables/<name>.csv`` (atomically); returns the path.

        Text cells, column names and index labels starting with ``=``, ``+``, ``-``, ``@``, a tab
        or a carriage return are written with a leading ``'`` (CSV injection; numbers stay
        numbers): :func:`backpain_analysis.safe_text.csv_safe_frame`.
        """
        from .safe_text import csv_safe_frame

        target = self.tables_dir / f"{name}.csv"
        safe = csv_safe_frame(df)
        return _atomic_via(target, lambda tmp: safe.to_csv(tmp, index=index, float_format=float_format))

    def figure(self, fig: Any, name: str, *, dpi: int = 150) -> Path:
        """Save a matplotlib figure (or seaborn grid) as ``figures/<name>.png``; returns the path.

        Every text of the figure (titles, labels, legends, tick labels) is drawn literally: a
        ``$`` from study text (a practice name) never starts mathtext, so it can neither change
        what is shown nor make the drawing fail. The package draws no mathtext of its own.
        """
        import matplotlib
        from matplotlib.text import Text

        target = self.figures_dir / f"{name}.png"
        figure = getattr(fig, "figure", fig)  # a seaborn grid holds its Figure in .figure

        def save(tmp: Path) -> None:
            for text in figure.findobj(Text):
                text.set_parse_math(False)
            with matplotlib.rc_context({"text.parse_math": False}):
                fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")

        return _atomic_via(target, save)

    def captioned(self, fig: Any, name: str, caption: str, *, dpi: int = 150) -> Any:
        """Save the figure as :meth:`figure` does and return it, from the saved PNG, for display
        with its caption and alt text (a :class:`~backpain_analysis.presentation.figures.CaptionedFigure`:
        ``display(out.captioned(fig, "name", "Caption"))``).

        The figure is drawn once: the page shows the PNG that was saved, and the figure is closed
        so that the notebook does not draw it again at the end of the cell (each drawing of a
        report figure took about 0.3 s; a chapter drew each figure twice).

        Examples
        --------
        >>> import matplotlib, tempfile
        >>> matplotlib.use("Agg")
        >>> import matplotlib.pyplot as plt
        >>> out = ChapterOutputs(tempfile.mkdtemp(), "demo")
        >>> fig, ax = plt.subplots(figsize=(4, 2)); _ = ax.plot([0, 1])
        >>> shown = out.captioned(fig, "line", "A line")
        >>> shown.png == (out.figures_dir / "line.png").read_bytes(), shown.width_px, plt.fignum_exists(fig.number)
        (True, 384, False)
        """
        from .presentation.figures import captioned

        path = self.figure(fig, name, dpi=dpi)
        return captioned(getattr(fig, "figure", fig), caption, png=path.read_bytes())

    def finding(
        self,
        name: str,
        value: Any,
        *,
        label: str = "",
        ci_low: Any = None,
        ci_high: Any = None,
        unit: str = "",
    ) -> None:
        """Record a key finding (replacing an earlier one of the same name)."""
        self.findings = [f for f in self.findings if f.name != name]
        self.findings.append(
            KeyFinding(name, _clean_number(value), label, _clean_number(ci_low), _clean_number(ci_high), unit)
        )

    def write_findings(self) -> Path:
        """Write ``key_findings.json`` (atomically); returns the path."""
        target = self.root / "key_findings.json"
        with atomic_write(target) as fh:
            json.dump([asdict(f) for f in self.findings], fh, indent=2)
            fh.write("\n")
        return target


def read_key_findings(path: str | Path) -> list[dict[str, Any]]:
    """Read a chapter's ``key_findings.json`` (a file path or the chapter folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / "key_findings.json"
    with open(path, encoding="utf-8") as fh:
        data: list[dict[str, Any]] = json.load(fh)
    return data
