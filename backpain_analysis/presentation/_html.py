"""HTML rendering of a :class:`DisplayTable` (no index column; every text escaped)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._escape import escape_html

if TYPE_CHECKING:
    from ._table import DisplayTable

__all__ = ["TABLE_CSS", "render_html"]

TABLE_CSS = """<style>
.bp-table-wrap{overflow-x:auto;max-width:100%;margin:0.8em 0 1.2em}
table.bp-table{border-collapse:collapse;font-size:0.9em;line-height:1.35;font-variant-numeric:tabular-nums}
table.bp-table caption{caption-side:top;text-align:left;font-weight:600;padding:0 0 0.4em}
table.bp-table th,table.bp-table td{padding:0.25em 0.6em;vertical-align:top;border:none}
table.bp-table thead tr:first-child th{border-top:2px solid #333}
table.bp-table thead tr:last-child th{border-bottom:1px solid #333}
table.bp-table th.bp-spanner{border-bottom:1px solid #999;text-align:center}
table.bp-table td.bp-num,table.bp-table th.bp-num{text-align:right;white-space:nowrap}
table.bp-table td.bp-stub,table.bp-table th.bp-stub{text-align:left;max-width:24em}
table.bp-table tbody tr:last-child td{border-bottom:2px solid #333}
table.bp-table tfoot td.bp-note{font-size:0.85em;text-align:left;padding-top:0.4em;border:none}
</style>
"""


def render_html(table: DisplayTable, *, css: bool = True) -> str:
    """Render ``table`` as an HTML ``<table class="bp-table">`` inside a scrolling ``<div>``.

    The caption carries ``class="bp-caption bp-table-caption"`` so that
    :func:`backpain_analysis.presentation.site.number_captions` can number it per chapter.

    Examples
    --------
    >>> from backpain_analysis.presentation import DisplayTable
    >>> html = render_html(DisplayTable(["Label", "N"], [["A & B", "1,647"]]), css=False)
    >>> "A &amp; B" in html and "<th" in html and "index" not in html
    True
    """
    ncol = len(table.headers)
    out = [TABLE_CSS] if css else []
    out.append('<div class="bp-table-wrap"><table class="bp-table">')
    if table.caption or table.number is not None:
        numbered = ' data-numbered="1"' if table.number not in (None, "") else ""
        out.append(f'<caption class="bp-caption bp-table-caption"{numbered}>{escape_html(table.title)}</caption>')
    kind = ["bp-stub" if a == "l" else "bp-num" for a in table.align]
    out.append("<thead>")
    if table.has_spanners:
        cells, col = [], 0
        for label, span in table.spanner_groups():
            if label:
                cells.append(f'<th class="bp-spanner" colspan="{span}" scope="colgroup">{escape_html(label)}</th>')
            else:
                cells.append(f'<th colspan="{span}"></th>' if span > 1 else "<th></th>")
            col += span
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("<tr>" + "".join(f'<th class="{k}" scope="col">{escape_html(h)}</th>'
                                for k, h in zip(kind, table.headers, strict=True)) + "</tr>")
    out.append("</thead><tbody>")
    for row in table.rows:
        out.append("<tr>" + "".join(f'<td class="{k}">{escape_html(c)}</td>' for k, c in zip(kind, row, strict=True))
                   + "</tr>")
    out.append("</tbody>")
    if table.footnotes:
        out.append("<tfoot>" + "".join(f'<tr><td class="bp-note" colspan="{ncol}">{escape_html(n)}</td></tr>' for n in table.footnotes)
                   + "</tfoot>")
    out.append("</table></div>")
    return "\n".join(out)
