"""Minimal escaping of text that comes from a study export (labels, notes) before it is put in
HTML or LaTeX. Private to the presentation layer until the shared escaping module lands."""

from __future__ import annotations

import html

__all__ = ["escape_html", "escape_latex"]

_LATEX = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
    "\u2014": "---", "\u2013": "--", "\u2212": "-", "\u00a0": "~", "\u2265": r"$\geq$", "\u2264": r"$\leq$",
    "\u00a3": r"\pounds{}", "\u221e": r"$\infty$", "\u2190": r"$\leftarrow$", "\u2192": r"$\rightarrow$",
}


def escape_html(text: object) -> str:
    """Text safe inside an HTML element or a quoted attribute.

    Examples
    --------
    >>> escape_html('<script>"A & B"')
    '&lt;script&gt;&quot;A &amp; B&quot;'
    """
    return html.escape(str(text), quote=True)


def escape_latex(text: object) -> str:
    """Text safe in LaTeX text mode (special characters, dashes, ``<``/``>``, the pound sign).

    Examples
    --------
    >>> print(escape_latex(r"A&B_1 50% <0.001 {x} \\ £5 — ~^$#"))
    A\\&B\\_1 50\\% \\textless{}0.001 \\{x\\} \\textbackslash{} \\pounds{}5 --- \\textasciitilde{}\\textasciicircum{}\\$\\#
    """
    return "".join(_LATEX.get(ch, ch) for ch in str(text))
