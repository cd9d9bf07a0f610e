"""Presentation layer: results tables as journal-style display tables (HTML, LaTeX, Word),
figures for submission and the report site's navigation.

One entry point per concern:

- :func:`display_table` (and :class:`DisplayTable`): a results table with human column labels,
  ``estimate (95% CI)`` and ``n (%)`` cells, journal p-values, spanners (Phase 1 | Phase 3 |
  Effect), footnotes; ``.to_html()``, ``.to_latex()``, ``.to_docx()``, ``.write(dir, name)``;
- :func:`tables_docx`: many display tables in one numbered, captioned Word file;
- :mod:`.figures`: forest plots with readable ratio ticks and a "favours" annotation;
  :func:`figures.save_figure` (PNG 300 dpi, SVG, PDF);
- :mod:`.site`: navigation bar, offline pages (no CDN scripts or stylesheets), numbered captions;
- formatting rules shared with the index: :func:`format_p`, :func:`format_estimate_ci`,
  :func:`format_n_pct`, :func:`format_number`, :func:`format_finding`.

Examples
--------
>>> import pandas as pd
>>> from backpain_analysis.presentation import display_table
>>> t = display_table(pd.DataFrame({"label": ["Opioids"], "estimate": [1.79], "ci_low": [1.32],
...                                 "ci_high": [2.42], "p_value": [0.000185]}), "process", caption="Process")
>>> t.rows[0]
('Opioids', '1.79 (1.32 to 2.42)', '<0.001')
"""

from __future__ import annotations

from ._docx import tables_docx
from ._format import (
    MISSING,
    SUPPRESSED,
    PresentationError,
    format_count,
    format_estimate_ci,
    format_finding,
    format_mean_sd,
    format_n_pct,
    format_number,
    format_p,
)
from ._presets import PRESETS, display_table, human_label
from ._table import SUPPRESSION_FOOTNOTE, DisplayTable

__all__ = [
    "MISSING",
    "PRESETS",
    "SUPPRESSED",
    "SUPPRESSION_FOOTNOTE",
    "DisplayTable",
    "PresentationError",
    "display_table",
    "format_count",
    "format_estimate_ci",
    "format_finding",
    "format_mean_sd",
    "format_n_pct",
    "format_number",
    "format_p",
    "human_label",
    "tables_docx",
]
