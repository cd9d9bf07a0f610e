"""Figures for the report and for submission: forest plots with readable ratio ticks, and saving
a figure as PNG (300 dpi), SVG and PDF at once."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._format import PresentationError

__all__ = ["RATIO_TICKS", "CaptionedFigure", "captioned", "forest_plot", "ratio_ticks", "save_figure"]

RATIO_TICKS = (0.25, 0.5, 1.0, 2.0, 4.0)


def ratio_ticks(low: float, high: float, base: Sequence[float] = RATIO_TICKS) -> list[float]:
    """Ticks of a log ratio axis: ``base`` (0.25 to 4), doubled or halved until they cover [low, high].

    Examples
    --------
    >>> ratio_ticks(0.4, 3.0)
    [0.25, 0.5, 1.0, 2.0, 4.0]
    >>> ratio_ticks(0.1, 9.0)
    [0.0625, 0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0]
    """
    ticks = list(base)
    while ticks[0] > low:
        ticks.insert(0, ticks[0] / 2)
    while ticks[-1] < high:
        ticks.append(ticks[-1] * 2)
    return ticks


def _tick_label(v: float) -> str:
    return f"{v:g}" if v >= 0.01 else f"{v:.2g}"


def forest_plot(
    table: pd.DataFrame,
    *,
    label: str = "label",
    estimate: str = "estimate",
    ci_low: str = "ci_low",
    ci_high: str = "ci_high",
    series: dict[str, tuple[str, str, str]] | None = None,
    log_scale: bool = True,
    reference: float | None = None,
    favours: tuple[str, str] | None = ("Lower with stratified care", "Higher with stratified care"),
    xlabel: str = "Odds ratio (phase 3 vs phase 1) with 95% CI",
    title: str = "",
    truth: str | None = None,
    width: float = 8.0,
    ax: Any = None,
) -> Any:
    """Forest plot of estimates with 95% CIs, one row per table row (top to bottom in table order).

    Parameters
    ----------
    table : DataFrame
        Results table (rows whose estimate is hidden or missing are drawn without a marker).
    label, estimate, ci_low, ci_high : str
        Column names.
    series : dict, optional
        Several estimates per row: ``{legend name: (estimate, ci_low, ci_high)}``, drawn offset.
    log_scale : bool, default True
        Ratios on a log axis with ticks 0.25, 0.5, 1, 2, 4 (extended by doubling when the CIs
        are wider), labelled as plain numbers, no minor labels.
    reference : float, optional
        Line of no effect (1 on a log axis, else 0).
    favours : (str, str) or None
        Text under the axis left and right of the reference line, with arrows
        (``("Favours usual care", "Favours stratified care")`` when a higher value is better).
        ``None`` leaves it out.
    xlabel, title : str
    truth : str, optional
        Column of true values (synthetic data), drawn as crosses.
    width : float, default 8
        Figure width in inches (the height follows the number of rows).
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> t = pd.DataFrame({"label": ["NSAIDs", "Opioids"], "estimate": [0.67, 1.79],
    ...                   "ci_low": [0.50, 1.32], "ci_high": [0.90, 2.42]})
    >>> fig = forest_plot(t)
    >>> [x.get_text() for x in fig.axes[0].get_xticklabels()]
    ['0.25', '0.5', '1', '2', '4']
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    if series is None:
        series = {"": (estimate, ci_low, ci_high)}
    for cols in series.values():
        missing = [c for c in cols if c not in table.columns]
        if missing:
            raise PresentationError(f"forest plot: column(s) {missing} not in the table")
    n = len(table)
    if ax is None:
        fig, ax = plt.subplots(figsize=(width, 0.42 * n + 1.9), layout="constrained")
    else:
        fig = ax.figure
    y = np.arange(n)[::-1].astype(float)
    offsets = np.linspace(-0.15, 0.15, len(series)) if len(series) > 1 else [0.0]
    markers = ["o", "s", "D", "^"]
    values = []
    for (name, (e, lo, hi)), off, mk in zip(series.items(), offsets, markers, strict=False):
        est, low, high = (pd.to_numeric(table[c], errors="coerce").to_numpy(float) for c in (e, lo, hi))
        err = np.vstack([est - low, high - est])
        ax.errorbar(est, y + off, xerr=err, fmt=mk, capsize=3, label=name or None, ms=5)
        values += [est, low, high]
    if truth is not None and truth in table.columns:
        tv = pd.to_numeric(table[truth], errors="coerce").to_numpy(float)
        ax.plot(tv, y, "x", color="crimson", ms=8, mew=2, label="true value", linestyle="none")
        values.append(tv)
    allv = np.concatenate(values) if values else np.array([])
    allv = allv[np.isfinite(allv)]
    ref = reference if reference is not None else (1.0 if log_scale else 0.0)
    ax.axvline(ref, color="grey", lw=1, ls="--")
    if log_scale:
        allv = allv[allv > 0]
        low, high = (float(allv.min()), float(allv.max())) if len(allv) else (1.0, 1.0)
        ticks = ratio_ticks(low, high)
        ax.set_xscale("log")
        ax.set_xlim(ticks[0] / 1.15, ticks[-1] * 1.15)
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: _tick_label(v)))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_yticks(y)
    ax.set_yticklabels([str(v) for v in table[label]] if label in table.columns else [""] * n)
    ax.set_ylim(-0.8, n - 0.2)
    ax.set_xlabel(xlabel)
    if title:
        ax.set_title(title, loc="left", pad=20 if favours else 6)  # room for the "favours" labels
    if favours:
        left, right = favours
        trans = ax.get_xaxis_transform()  # x in data, y in axes fraction
        ax.annotate(f"\u2190 {left}", xy=(ref, 1.0), xycoords=trans, xytext=(-6, 4), textcoords="offset points",
                    ha="right", va="bottom", fontsize=9, color="dimgrey")
        ax.annotate(f"{right} \u2192", xy=(ref, 1.0), xycoords=trans, xytext=(6, 4), textcoords="offset points",
                    ha="left", va="bottom", fontsize=9, color="dimgrey")
    if len(series) > 1 or truth is not None:
        # below the x-axis label, not inside the axes: inside, it covered the bottom row's interval
        # (e.g. delta +4 of the delta plot, the high-risk row of the risk-group plot)
        from matplotlib.transforms import offset_copy

        below = offset_copy(ax.transAxes, fig=fig, y=-34, units="points")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), bbox_transform=below, fontsize=8, frameon=False,
                  ncol=min(3, len(series) + (truth is not None)))
    ax.grid(axis="x", color="0.9", lw=0.8)
    ax.set_axisbelow(True)
    return fig


def save_figure(fig: Any, directory: str | Path, name: str, *, formats: Sequence[str] = ("png", "svg", "pdf"),
                dpi: int = 300) -> list[Path]:
    """Save ``fig`` as ``<name>.png`` (``dpi``), ``.svg`` and ``.pdf`` in ``directory`` (atomically).

    Parameters
    ----------
    fig : matplotlib Figure
    directory : str or Path
        Usually ``ChapterOutputs.figures_dir``.
    name : str
    formats : sequence of str, default ("png", "svg", "pdf")
    dpi : int, default 300
        Resolution of raster formats.

    Returns
    -------
    list of Path

    Examples
    --------
    >>> import matplotlib, tempfile
    >>> matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> fig, ax = plt.subplots(figsize=(2, 1)); _ = ax.plot([0, 1])
    >>> [p.suffix for p in save_figure(fig, tempfile.mkdtemp(), "line")]
    ['.png', '.svg', '.pdf']
    """
    from ..outputs import _atomic_via

    paths = []
    for fmt in formats:
        target = Path(directory) / f"{name}.{fmt}"
        meta = {"svg": {"Date": None}, "pdf": {"CreationDate": None}}.get(fmt)  # same figure, same bytes
        paths.append(_atomic_via(target, lambda tmp, fmt=fmt, meta=meta: fig.savefig(
            tmp, dpi=dpi, bbox_inches="tight", format=fmt, metadata=meta)))
    return paths


class CaptionedFigure:
    """A figure rendered once as an inline PNG with alt text and a caption (see :func:`captioned`)."""

    def __init__(self, png: bytes, caption: str, width_px: int | None) -> None:
        self.png = png
        self.caption = caption
        self.width_px = width_px

    def to_html(self) -> str:
        """``<figure>`` with the PNG inline (base64), ``alt`` = caption, and a numberable ``<figcaption>``."""
        import base64

        from ._escape import escape_html

        data = base64.b64encode(self.png).decode("ascii")
        width = f"width:{self.width_px}px;" if self.width_px else ""
        return (f'<figure class="bp-figure" style="margin:0.8em 0 1.2em">'
                f'<img src="data:image/png;base64,{data}" alt="{escape_html(self.caption)}" '
                f'style="{width}max-width:100%;height:auto">'
                f'<figcaption class="bp-caption bp-figure-caption">{escape_html(self.caption)}</figcaption></figure>')

    def __repr__(self) -> str:
        """A short text form (a notebook's ``text/plain`` output; no memory address)."""
        return f"<Figure: {self.caption}>"

    def _repr_html_(self) -> str:
        return self.to_html()


def captioned(fig: Any, caption: str, *, dpi: int = 150, close: bool = True,
              png: bytes | None = None) -> CaptionedFigure:
    """A figure for a report page: PNG inline at a fixed size, with alt text and a caption.

    Displayed in a notebook (``display(captioned(fig, "..."))``) it shows at its natural size
    (figure inches x 96 px, never wider than the page), and
    :func:`backpain_analysis.presentation.site.number_captions` numbers its caption
    ("Figure 4.1. ...").

    Parameters
    ----------
    fig : matplotlib Figure
    caption : str
    dpi : int, default 150
        Resolution of the PNG (shown at 96 px per inch, so sharp on high-density screens).
    close : bool, default True
        Close the figure so the notebook does not show it a second time.
    png : bytes, optional
        The figure already rendered (e.g. the file :meth:`ChapterOutputs.captioned
        <backpain_analysis.outputs.ChapterOutputs.captioned>` saved): shown as it is, not drawn again.

    Returns
    -------
    CaptionedFigure

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> fig, ax = plt.subplots(figsize=(4, 2)); _ = ax.plot([0, 1])
    >>> html = captioned(fig, "A line <y = x>").to_html()
    >>> 'alt="A line &lt;y = x&gt;"' in html, "width:384px" in html, "bp-figure-caption" in html
    (True, True, True)
    """
    import io

    import matplotlib.pyplot as plt

    if png is None:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
        png = buf.getvalue()
    width = int(round(fig.get_size_inches()[0] * 96))
    if close:
        plt.close(fig)
    return CaptionedFigure(png, caption, width)
