r"""Escaping of study text (practice names, clinician ids, labels, file names) for shared outputs.

Text that comes from a study export is data, never markup or code. Wherever it reaches a shared
output it goes through one of these functions:

- :func:`html_text` for HTML (element text and attribute values);
- :func:`markdown_text` for Markdown shown by a notebook (``display(Markdown(...))``): HTML
  special characters are escaped *and* Markdown syntax is neutralised, so neither a ``<script>``
  tag nor a link or heading can be injected; :func:`markdown` builds a Markdown string from a
  template whose ``{placeholders}`` are filled with escaped values;
- :func:`latex_text` for LaTeX tables (``\ & % $ # _ { } ~ ^``);
- :func:`mathtext_text` for matplotlib titles, labels and tick labels (a ``$`` would start
  mathtext);
- :func:`csv_cell` / :func:`csv_safe_frame` for CSV tables opened in a spreadsheet (OWASP CSV
  injection: text cells starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return
  get a leading ``'``; numbers, negative ones included, stay numbers).

Notes
-----
CSV rule: OWASP, "CSV Injection" (https://owasp.org/www-community/attacks/CSV_Injection).
HTML escaping uses :func:`html.escape` with ``quote=True``. Markdown: every ASCII punctuation
character that CommonMark allows to be backslash-escaped is escaped, after HTML escaping (so
``&lt;`` is not turned back into a tag by the renderer); ``$`` becomes ``\\\$`` (rendered
``\$``, which MathJax with ``processEscapes``, as configured by Jupyter and nbconvert, shows as
``$``).
"""

from __future__ import annotations

import html
import re
import string
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "CSV_TRIGGERS", "csv_cell", "csv_safe_frame", "html_text", "latex_text", "markdown", "markdown_text",
    "mathtext_text",
]

#: First characters that make a spreadsheet evaluate a text cell (OWASP).
CSV_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|>~:])")
_LATEX = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "<": r"\textless{}", ">": r"\textgreater{}",
}
_LATEX_RE = re.compile("|".join(re.escape(k) for k in _LATEX))


def html_text(value: Any) -> str:
    """``value`` as text safe inside HTML (element content or a quoted attribute).

    Examples
    --------
    >>> html_text('<script>alert("x")</script>')
    '&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;'
    """
    return html.escape(str(value), quote=True)


def markdown_text(value: Any) -> str:
    """``value`` as literal text inside Markdown rendered by Jupyter (no HTML, no Markdown syntax).

    Runs of white space (line breaks, tabs) become one space and the ends are trimmed, so a
    value can start neither a new block (a heading, a list) nor an indented code block. A
    ``$`` is written so that Jupyter's MathJax shows it literally instead of starting math.

    Examples
    --------
    >>> markdown_text("<b>[x](javascript:1)</b> # 1")
    '&lt;b&gt;\\\\[x\\\\]\\\\(javascript\\\\:1\\\\)&lt;/b&gt; \\\\# 1'
    """
    text = " ".join(str(value).split())
    escaped = _MD_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))
    # "$" would start MathJax math in Jupyter and its HTML export: the Markdown "\\\$" renders as "\$",
    # which MathJax (processEscapes) shows as a literal "$"
    return escaped.replace("$", "\\\\\\$")


def markdown(template: str, /, **values: Any) -> str:
    """Fill a Markdown ``template``'s ``{name}`` fields with escaped ``values``.

    The template is the notebook's own (trusted) Markdown; every value is study text and goes
    through :func:`markdown_text`. Use format specs as usual (``{pct:.0f}``): numbers are
    formatted first, then escaped.

    Examples
    --------
    >>> markdown("## {name} (practice {pid})", name="<script>x</script>", pid="P01")
    '## &lt;script&gt;x&lt;/script&gt; (practice P01)'
    """
    formatter = string.Formatter()
    out = []
    for literal, field, spec, conversion in formatter.parse(template):
        out.append(literal)
        if field is None:
            continue
        if field not in values:
            raise KeyError(f"markdown: no value given for {{{field}}}")
        value = formatter.convert_field(values[field], conversion) if conversion else values[field]
        out.append(markdown_text(format(value, spec or "")))
    return "".join(out)


def latex_text(value: Any) -> str:
    """``value`` as literal text inside LaTeX.

    Examples
    --------
    >>> print(latex_text("50% of {A}_1 & $x$"))
    50\\% of \\{A\\}\\_1 \\& \\$x\\$
    """
    return _LATEX_RE.sub(lambda m: _LATEX[m.group(0)], str(value))


def mathtext_text(value: Any) -> str:
    """``value`` as literal text for a matplotlib title, label, legend or tick label.

    Matplotlib reads text between two ``$`` as mathtext (and fails on invalid TeX); an escaped
    ``\\$`` is a literal dollar.

    Examples
    --------
    >>> print(mathtext_text("Practice $\\\\alpha$"))
    Practice \\$\\alpha\\$
    """
    return str(value).replace("$", r"\$")


def csv_cell(value: Any) -> Any:
    """A CSV cell that a spreadsheet shows as text instead of running it.

    Text starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading
    ``'``, unless it is a plain number (``-3``, ``+1.5``, ``-1e-3``). Anything that is not a
    string is returned unchanged.

    Examples
    --------
    >>> csv_cell("=cmd|' /C calc'!A0"), csv_cell("-2.5"), csv_cell(-2.5), csv_cell("P01")
    ("'=cmd|' /C calc'!A0", '-2.5', -2.5, 'P01')
    """
    if not isinstance(value, str) or not value.startswith(CSV_TRIGGERS):
        return value
    if value[0] in "+-":
        try:
            float(value)
        except ValueError:
            pass
        else:
            if value.strip() == value and value[1:2] not in ("i", "I", "n", "N"):  # not "-inf", "+nan"
                return value
    return "'" + value


def _safe_labels(labels: pd.Index) -> pd.Index:
    if isinstance(labels, pd.MultiIndex):
        return labels.set_levels([_safe_labels(level) for level in labels.levels])
    if labels.dtype == object or pd.api.types.is_string_dtype(labels.dtype):
        return pd.Index([csv_cell(v) for v in labels], name=csv_cell(labels.name), dtype=object)
    return labels.rename(csv_cell(labels.name))


def csv_safe_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` whose text cells, column names and index labels are CSV-safe (:func:`csv_cell`).

    Numeric columns are untouched (a negative number stays a number); in text or object columns
    only ``str`` cells are changed.

    Returns
    -------
    DataFrame
        Same shape, columns (escaped) and index (escaped) as ``df``.

    Examples
    --------
    >>> csv_safe_frame(pd.DataFrame({"name": ["=1+1", "ok"], "diff": [-1.5, 2.0]})).values.tolist()
    [["'=1+1", -1.5], ['ok', 2.0]]
    """
    out = df.copy()
    for i in range(out.shape[1]):
        col = out.iloc[:, i]
        if isinstance(col.dtype, pd.CategoricalDtype):
            out.isetitem(i, col.cat.rename_categories([csv_cell(c) for c in col.cat.categories]))
        elif col.dtype == object or pd.api.types.is_string_dtype(col.dtype):
            values = np.array([csv_cell(v) for v in col.to_numpy(dtype=object)], dtype=object)
            out.isetitem(i, pd.Series(values, index=col.index, dtype=col.dtype if col.dtype != object else object))
    out.columns = _safe_labels(out.columns)
    out.index = _safe_labels(out.index)
    return out
