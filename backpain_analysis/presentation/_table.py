"""The display table: formatted text cells, column labels, spanners, caption and footnotes.

A :class:`DisplayTable` holds only text; every renderer (``_html``, ``_latex``, ``_docx``)
draws the same cells, so the HTML page, the ``.tex`` file and the Word table agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from ._format import MISSING, SUPPRESSED, PresentationError

__all__ = ["SUPPRESSION_FOOTNOTE", "DisplayTable"]

SUPPRESSION_FOOTNOTE = "* Fewer than 5 patients, or a number that would reveal such a count: not shown."


@dataclass(frozen=True, repr=False)
class DisplayTable:
    """A results table ready to show: text cells, human column labels and spanners.

    Build one with :func:`backpain_analysis.presentation.display_table`; render it with
    :meth:`to_html`, :meth:`to_latex`, :meth:`to_docx` or write all three with :meth:`write`.
    In a notebook it displays itself as HTML.

    Parameters
    ----------
    headers : sequence of str
        One label per column.
    rows : sequence of sequence of str
        Cell text, one list per row, as long as ``headers``.
    spanners : sequence of str, optional
        One group label per column (``""`` for none); neighbouring columns with the same label
        share one spanning header (Phase 1 | Phase 3 | Effect).
    stub : int, default 1
        Number of leading label columns (left-aligned; the others are right-aligned numbers).
    caption : str, default ""
    footnotes : sequence of str, optional
    number : str or int, optional
        Table number ("2", "4.1"); numbered captions read "Table 2. <caption>".
    align : sequence of {"l", "r"}, optional
        Alignment per column; default left for the stub, right for the rest.

    Examples
    --------
    >>> t = DisplayTable(["Measure", "N", "OR (95% CI)"], [["Opioids", "310", "1.79 (1.32 to 2.42)"]],
    ...                  spanners=["", "Phase 1", "Effect"], caption="Process of care", number=2)
    >>> t.title
    'Table 2. Process of care'
    >>> t.frame.columns.tolist()
    [('', 'Measure'), ('Phase 1', 'N'), ('Effect', 'OR (95% CI)')]
    """

    headers: Sequence[str]
    rows: Sequence[Sequence[str]]
    spanners: Sequence[str] = field(default_factory=tuple)
    stub: int = 1
    caption: str = ""
    footnotes: Sequence[str] = field(default_factory=tuple)
    number: str | int | None = None
    align: Sequence[str] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        headers = tuple(str(h) for h in self.headers)
        rows = tuple(tuple(MISSING if c is None else str(c) for c in r) for r in self.rows)
        spanners = tuple(str(s) for s in self.spanners) if self.spanners else ("",) * len(headers)
        for i, r in enumerate(rows):
            if len(r) != len(headers):
                raise PresentationError(f"display table: row {i} has {len(r)} cells for {len(headers)} columns")
        if len(spanners) != len(headers):
            raise PresentationError(f"display table: {len(spanners)} spanners for {len(headers)} columns")
        notes = [str(n) for n in self.footnotes]
        if any(SUPPRESSED in c for r in rows for c in r[self.stub:]) and SUPPRESSION_FOOTNOTE not in notes:
            notes.append(SUPPRESSION_FOOTNOTE)
        align = tuple(self.align) if self.align else tuple("l" if i < self.stub else "r" for i in range(len(headers)))
        if len(align) != len(headers) or set(align) - {"l", "r"}:
            raise PresentationError(f"display table: align needs one 'l' or 'r' per column, got {self.align!r}")
        object.__setattr__(self, "align", align)
        object.__setattr__(self, "headers", headers)
        object.__setattr__(self, "rows", rows)
        object.__setattr__(self, "spanners", spanners)
        object.__setattr__(self, "footnotes", tuple(notes))

    @property
    def title(self) -> str:
        """The caption with its number: ``"Table 2. Process of care"`` (or the caption alone)."""
        if self.number is None or self.number == "":
            return self.caption
        return f"Table {self.number}. {self.caption}".rstrip()

    @property
    def has_spanners(self) -> bool:
        """True when at least one column has a group label."""
        return any(self.spanners)

    def spanner_groups(self) -> list[tuple[str, int]]:
        """Runs of neighbouring columns with the same spanner: ``[(label, n_columns), ...]``."""
        groups: list[tuple[str, int]] = []
        for s in self.spanners:
            if groups and groups[-1][0] == s:
                groups[-1] = (s, groups[-1][1] + 1)
            else:
                groups.append((s, 1))
        return groups

    @property
    def frame(self) -> pd.DataFrame:
        """The cells as a DataFrame of text with (spanner, label) column pairs and no index."""
        return pd.DataFrame(list(self.rows), columns=pd.MultiIndex.from_tuples(list(zip(self.spanners, self.headers,
                                                                                         strict=True))))

    def numbered(self, number: str | int | None) -> DisplayTable:
        """The same table with another number."""
        return replace(self, number=number)

    def to_dict(self) -> dict:
        """The table as plain JSON-ready data (read back with :meth:`from_dict`)."""
        return {"headers": list(self.headers), "rows": [list(r) for r in self.rows], "spanners": list(self.spanners),
                "stub": self.stub, "caption": self.caption, "footnotes": list(self.footnotes),
                "number": self.number, "align": list(self.align)}

    @classmethod
    def from_dict(cls, data: dict) -> DisplayTable:
        """A table from :meth:`to_dict` output (or a ``.table.json`` file's content).

        Examples
        --------
        >>> t = DisplayTable(["A", "B"], [["x", "1"]], caption="c")
        >>> DisplayTable.from_dict(t.to_dict()) == t
        True
        """
        return cls(**{k: data[k] for k in ("headers", "rows", "spanners", "stub", "caption", "footnotes", "number",
                                           "align") if k in data})

    @classmethod
    def read(cls, path: str | Path) -> DisplayTable:
        """A table written by :meth:`write` as ``<name>.table.json``."""
        import json

        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def to_html(self, *, css: bool = True) -> str:
        """The table as an HTML ``<table>`` (with a small scoped stylesheet unless ``css=False``)."""
        from ._html import render_html

        return render_html(self, css=css)

    def to_latex(self) -> str:
        """The table as a LaTeX ``table`` environment (no package beyond LaTeX itself)."""
        from ._latex import render_latex

        return render_latex(self)

    def to_docx(self, path: str | Path | None = None, *, document=None):
        """Add the table to a python-docx ``document`` (or a new one saved at ``path``).

        Returns
        -------
        docx.document.Document
        """
        from ..outputs import _atomic_via
        from ._docx import add_to_document, new_document

        doc = document if document is not None else new_document()
        add_to_document(doc, self)
        if path is not None:
            _atomic_via(Path(path), lambda tmp: doc.save(str(tmp)))
        return doc

    def write(self, directory: str | Path, name: str,
              formats: Sequence[str] = ("html", "tex", "docx", "table.json")) -> list[Path]:
        """Write ``<name>.html``, ``.tex``, ``.docx`` and ``.table.json`` into ``directory`` (atomically).

        The ``.table.json`` file holds the display table itself, so the report runner can put every
        chapter's tables into one ``tables.docx`` (:func:`tables_docx` accepts these paths).

        Parameters
        ----------
        directory : str or Path
            Usually ``ChapterOutputs.tables_dir``.
        name : str
            File stem.
        formats : sequence of str, default ("html", "tex", "docx", "table.json")

        Returns
        -------
        list of Path
        """
        from ..outputs import atomic_write

        directory = Path(directory)
        paths = []
        for fmt in formats:
            target = directory / f"{name}.{fmt}"
            if fmt == "html":
                with atomic_write(target) as fh:
                    fh.write(self.to_html())
            elif fmt == "tex":
                with atomic_write(target) as fh:
                    fh.write(self.to_latex())
            elif fmt == "docx":
                self.to_docx(target)
            elif fmt == "table.json":
                import json

                with atomic_write(target) as fh:
                    json.dump(self.to_dict(), fh, indent=1, ensure_ascii=False)
            else:
                raise PresentationError(f"display table: unknown format {fmt!r} (html, tex, docx or table.json)")
            paths.append(target)
        return paths

    def _repr_html_(self) -> str:
        return self.to_html()

    def __repr__(self) -> str:
        """A short text form (a notebook's ``text/plain`` output), not the cells."""
        return f"<DisplayTable {self.title!r}: {len(self.rows)} rows x {len(self.headers)} columns>"
