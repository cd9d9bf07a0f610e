"""LaTeX rendering of a :class:`DisplayTable`: plain ``tabular`` (no extra packages), every text escaped."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._escape import escape_latex

if TYPE_CHECKING:
    from ._table import DisplayTable

__all__ = ["render_latex"]


def render_latex(table: DisplayTable) -> str:
    r"""Render ``table`` as a ``table`` float holding a ``tabular``.

    Spanners become ``\multicolumn`` headers underlined with ``\cline``; footnotes follow the
    rule under the body. Only LaTeX's own commands are used, so the file compiles in a minimal
    ``\documentclass{article}`` document (``\usepackage[T1]{fontenc}`` is advisable for ``<``).

    Examples
    --------
    >>> from backpain_analysis.presentation import DisplayTable
    >>> tex = render_latex(DisplayTable(["Label", "p"], [["A_1 & B", "<0.001"]], caption="50% done"))
    >>> print(tex.splitlines()[2])
    \caption{50\% done}
    >>> r"A\_1 \& B & \textless{}0.001 \\" in tex
    True
    """
    ncol = len(table.headers)
    spec = "".join(table.align)
    lines = [r"\begin{table}[htbp]", r"\centering"]
    if table.caption or table.number is not None:
        lines.append(rf"\caption{{{escape_latex(table.title)}}}")
    lines += [r"\small", rf"\begin{{tabular}}{{{spec}}}", r"\hline"]
    if table.has_spanners:
        cells, rules, col = [], [], 1
        for label, span in table.spanner_groups():
            if label:
                cells.append(rf"\multicolumn{{{span}}}{{c}}{{{escape_latex(label)}}}")
                rules.append(rf"\cline{{{col}-{col + span - 1}}}")
            else:
                cells.extend([""] * span)
            col += span
        lines.append(" & ".join(cells) + r" \\")
        lines.append(" ".join(rules))
    lines.append(" & ".join(escape_latex(h) for h in table.headers) + r" \\")
    lines.append(r"\hline")
    for row in table.rows:
        lines.append(" & ".join(escape_latex(c) for c in row) + r" \\")
    lines.append(r"\hline")
    for note in table.footnotes:
        lines.append(rf"\multicolumn{{{ncol}}}{{p{{0.95\linewidth}}}}{{\footnotesize {escape_latex(note)}}} \\")
    lines += [r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)
