"""Escaping for the presentation layer: the shared rules of :mod:`backpain_analysis.safe_text`,
plus the typographic characters display tables use (dashes, the pound sign, arrows) in LaTeX."""

from __future__ import annotations

from ..safe_text import html_text, latex_text

__all__ = ["escape_html", "escape_latex"]

#: Characters display tables produce that LaTeX text mode needs spelled out (after latex_text).
_LATEX_TYPOGRAPHY = {
    "\u2014": "---", "\u2013": "--", "\u2212": "-", "\u00a0": "~", "\u2265": r"$\geq$", "\u2264": r"$\leq$",
    "\u00a3": r"\pounds{}", "\u221e": r"$\infty$", "\u2190": r"$\leftarrow$", "\u2192": r"$\rightarrow$",
}


def escape_html(text: object) -> str:
    """Text safe inside an HTML element or a quoted attribute (:func:`safe_text.html_text`).

    Examples
    --------
    >>> escape_html('<script>"A & B"')
    '&lt;script&gt;&quot;A &amp; B&quot;'
    """
    return html_text(text)


def escape_latex(text: object) -> str:
    """Text safe in LaTeX text mode: :func:`safe_text.latex_text`, then dashes, ``<``/``>`` and the pound sign.

    Examples
    --------
    >>> print(escape_latex(r"A&B_1 50% <0.001 {x} \\ £5 — ~^$#"))
    A\\&B\\_1 50\\% \\textless{}0.001 \\{x\\} \\textbackslash{} \\pounds{}5 --- \\textasciitilde{}\\textasciicircum{}\\$\\#
    """
    return "".join(_LATEX_TYPOGRAPHY.get(ch, ch) for ch in latex_text(text))
