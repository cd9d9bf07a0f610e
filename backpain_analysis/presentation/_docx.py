"""Word (python-docx) rendering of display tables, and one numbered ``tables.docx`` for submission."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._table import DisplayTable

__all__ = ["add_to_document", "new_document", "tables_docx"]


def new_document(*, landscape: bool = True) -> Any:
    """An empty python-docx document (A4, landscape by default: results tables are wide)."""
    from docx import Document
    from docx.enum.section import WD_ORIENT
    from docx.shared import Cm, Pt

    doc = Document()
    section = doc.sections[0]
    section.page_width, section.page_height = Cm(21.0), Cm(29.7)
    if landscape:
        section.orientation = WD_ORIENT.LANDSCAPE
        section.page_width, section.page_height = section.page_height, section.page_width
    for side in ("left_margin", "right_margin", "top_margin", "bottom_margin"):
        setattr(section, side, Cm(2.0))
    doc.styles["Normal"].font.size = Pt(10)
    return doc


def _cell(cell: Any, text: str, *, bold: bool = False, align: str = "left", size: float = 9) -> None:
    from docx.enum.text import WD_ALIGN_PARAGRAPH
    from docx.shared import Pt

    para = cell.paragraphs[0]
    para.alignment = {"left": WD_ALIGN_PARAGRAPH.LEFT, "right": WD_ALIGN_PARAGRAPH.RIGHT,
                      "center": WD_ALIGN_PARAGRAPH.CENTER}[align]
    run = para.add_run(text)
    run.bold = bold
    run.font.size = Pt(size)


def add_to_document(doc: Any, table: DisplayTable) -> Any:
    """Append ``table`` to a python-docx document: caption, grid table, footnotes.

    The caption paragraph uses the ``Caption`` style and reads ``Table N. <caption>``; the
    header rows (spanners merged across their columns) repeat on every page.

    Returns
    -------
    docx.table.Table
    """
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn
    from docx.shared import Pt

    if table.caption or table.number is not None:
        cap = doc.add_paragraph(style="Caption") if "Caption" in [s.name for s in doc.styles] else doc.add_paragraph()
        cap.add_run(table.title).bold = True
    n_head = 2 if table.has_spanners else 1
    ncol = len(table.headers)
    grid = doc.add_table(rows=n_head + len(table.rows), cols=ncol)
    grid.style = "Table Grid"
    if table.has_spanners:
        col = 0
        for label, span in table.spanner_groups():
            cell = grid.cell(0, col)
            if span > 1:
                cell = cell.merge(grid.cell(0, col + span - 1))
            _cell(cell, label, bold=True, align="center")
            col += span
    # every cell of the grid, row by row, listed once: python-docx's grid.cell(i, j) lists the
    # whole grid on each call, which made writing the report's tables.docx take 8 s
    cells = grid._cells
    for j, h in enumerate(table.headers):
        _cell(cells[(n_head - 1) * ncol + j], h, bold=True, align="left" if table.align[j] == "l" else "right")
    for i, row in enumerate(table.rows):
        for j, text in enumerate(row):
            _cell(cells[(n_head + i) * ncol + j], text, align="left" if table.align[j] == "l" else "right")
    for r in range(n_head):  # repeat header rows on each page
        tr_pr = grid.rows[r]._tr.get_or_add_trPr()
        el = OxmlElement("w:tblHeader")
        el.set(qn("w:val"), "true")
        tr_pr.append(el)
    for note in table.footnotes:
        para = doc.add_paragraph()
        para.add_run(note).font.size = Pt(8)
    doc.add_paragraph()
    return grid


def tables_docx(tables: Sequence[DisplayTable | str | Path], path: str | Path, *, title: str | None = None,
                first_number: int = 1, landscape: bool = True, numbers: Sequence[str | int] | None = None) -> Path:
    """Write every display table, in order, numbered and captioned, into one Word file.

    Parameters
    ----------
    tables : sequence of DisplayTable or path
        In the order they should appear; they are renumbered 1, 2, ... (from ``first_number``).
        A path names a ``<name>.table.json`` written by :meth:`DisplayTable.write`.
    path : str or Path
        The ``.docx`` file to write (atomically).
    title : str, optional
        A heading above the first table.
    first_number : int, default 1
    landscape : bool, default True
    numbers : sequence of str or int, optional
        One number per table ("4.1", "4.2", "5.1", ...), e.g. the numbers the tables carry on
        their chapter pages; overrides ``first_number``.

    Returns
    -------
    Path

    Examples
    --------
    >>> import tempfile, pathlib, docx
    >>> from backpain_analysis.presentation import DisplayTable
    >>> t = DisplayTable(["Measure", "N"], [["Opioids", "310"]], caption="Process of care")
    >>> path = tables_docx([t, t], pathlib.Path(tempfile.mkdtemp()) / "tables.docx")
    >>> [p.text for p in docx.Document(path).paragraphs if p.text.startswith("Table")]
    ['Table 1. Process of care', 'Table 2. Process of care']
    """
    from ..outputs import _atomic_via
    from ._format import PresentationError
    from ._table import DisplayTable

    tables = [t if isinstance(t, DisplayTable) else DisplayTable.read(t) for t in tables]
    if numbers is None:
        numbers = [first_number + k for k in range(len(tables))]
    elif len(numbers) != len(tables):
        raise PresentationError(f"tables_docx: {len(numbers)} numbers for {len(tables)} tables")
    doc = new_document(landscape=landscape)
    if title:
        doc.add_heading(title, level=1)
    for number, table in zip(numbers, tables, strict=True):
        add_to_document(doc, table.numbered(number))
    path = Path(path)
    return _atomic_via(path, lambda tmp: doc.save(str(tmp)))
