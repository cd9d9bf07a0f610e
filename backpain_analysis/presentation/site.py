"""The report site: a shared navigation bar, offline pages and numbered captions.

Chapter pages come from nbconvert, whose templates load require.js, MathJax and mermaid from a
CDN; on an offline or locked-down network such a page can hang or lose formatting.
:func:`postprocess_page` turns such a page into one that loads nothing from elsewhere, carries
the navigation bar (back to the index, previous/next chapter, contents) and numbers its table
and figure captions per chapter ("Table 4.1", "Figure 4.2").

Pages are named by their path relative to the report folder (``"index.html"``,
``"04_process_of_care/04_process_of_care.html"``); links are made relative to the page they
are on, so the folder can be moved or opened from disk.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ._escape import escape_html
from ._format import PresentationError

__all__ = [
    "NAV_CSS",
    "Page",
    "external_resources",
    "figure_caption",
    "chapter_number",
    "make_offline",
    "nav_bar",
    "number_captions",
    "postprocess_file",
    "postprocess_page",
    "report_tables_docx",
    "strip_navigation",
    "table_numbers",
]


@dataclass(frozen=True)
class Page:
    """One page of the report: its title and its path relative to the report folder."""

    title: str
    href: str


NAV_CSS = """<style>
nav.bp-nav{display:flex;flex-wrap:wrap;gap:0.4em 1.2em;align-items:center;padding:0.5em 1em;margin:0 0 1em;
  background:#f3f5f7;border-bottom:1px solid #d0d7de;font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif}
nav.bp-nav a{color:#0b5cad;text-decoration:none}
nav.bp-nav a:hover,nav.bp-nav a:focus{text-decoration:underline}
nav.bp-nav .bp-nav-none{color:#8a939c}
nav.bp-nav details{position:relative}
nav.bp-nav summary{cursor:pointer;color:#0b5cad}
nav.bp-nav details ol{position:absolute;z-index:10;background:#fff;border:1px solid #d0d7de;margin:0.3em 0 0;
  padding:0.5em 1em 0.5em 2.2em;min-width:18em;box-shadow:0 2px 6px rgba(0,0,0,.15)}
nav.bp-nav li[aria-current] a{font-weight:600;color:#222}
.bp-caption{font-weight:600}
@media print{nav.bp-nav{display:none}}
</style>
"""

_EXTERNAL = r"""(?:https?:)?//"""


def _rel(target: str, current: str) -> str:
    """``target`` (relative to the report folder) as a link from the page ``current``."""
    base = posixpath.dirname(current) or "."
    return posixpath.relpath(target, base)


def nav_bar(pages: Sequence[Page | tuple[str, str]], current: str, *, index: Page | tuple[str, str] = (
        "Report index", "index.html"), css: bool = True) -> str:
    """The navigation bar shared by the index and every chapter page.

    Parameters
    ----------
    pages : sequence of Page or (title, href)
        The chapters in reading order (hrefs relative to the report folder).
    current : str
        The href of the page the bar is for (a chapter, or the index).
    index : Page or (title, href), default ("Report index", "index.html")
    css : bool, default True
        Prepend the small stylesheet (:data:`NAV_CSS`).

    Returns
    -------
    str
        A ``<nav class="bp-nav">`` element: a link back to the index, the previous and next
        chapters (``rel="prev"``/``rel="next"``), and a contents list with the current page
        marked ``aria-current="page"``.

    Examples
    --------
    >>> pages = [("01 Data quality", "01_data_quality/01_data_quality.html"),
    ...          ("02 Cohort", "02_cohort/02_cohort.html")]
    >>> html = nav_bar(pages, "02_cohort/02_cohort.html", css=False)
    >>> re.findall(r'href="([^"]+)"', html)[:2]
    ['../index.html', '../01_data_quality/01_data_quality.html']
    >>> 'rel="next"' in html
    False
    """
    pages = [p if isinstance(p, Page) else Page(*p) for p in pages]
    index = index if isinstance(index, Page) else Page(*index)
    hrefs = [p.href for p in pages]
    pos = hrefs.index(current) if current in hrefs else None
    if pos is None and current != index.href:
        raise PresentationError(f"navigation bar: page {current!r} is neither the index nor one of {hrefs}")
    parts = ['<nav class="bp-nav" aria-label="Report navigation">']
    if current == index.href:
        parts.append(f'<span class="bp-nav-index" aria-current="page">{escape_html(index.title)}</span>')
    else:
        parts.append(f'<a class="bp-nav-index" href="{escape_html(_rel(index.href, current))}">'
                     f"\u2302 {escape_html(index.title)}</a>")
    prev_page = pages[pos - 1] if pos is not None and pos > 0 else None
    next_page = pages[pos + 1] if pos is not None and pos + 1 < len(pages) else (
        pages[0] if pos is None and pages else None)
    if prev_page is not None:
        parts.append(f'<a class="bp-nav-prev" rel="prev" href="{escape_html(_rel(prev_page.href, current))}">'
                     f"\u2190 Previous: {escape_html(prev_page.title)}</a>")
    elif pos is not None:
        parts.append('<span class="bp-nav-prev bp-nav-none">\u2190 Previous</span>')
    items = []
    for k, p in enumerate(pages):
        mark = ' aria-current="page"' if k == pos else ""
        items.append(f'<li{mark}><a href="{escape_html(_rel(p.href, current))}">{escape_html(p.title)}</a></li>')
    parts.append(f'<details class="bp-nav-contents"><summary>Contents</summary><ol>{"".join(items)}</ol></details>')
    if next_page is not None:
        parts.append(f'<a class="bp-nav-next" rel="next" href="{escape_html(_rel(next_page.href, current))}">'
                     f"Next: {escape_html(next_page.title)} \u2192</a>")
    else:
        parts.append('<span class="bp-nav-next bp-nav-none">Next \u2192</span>')
    parts.append("</nav>")
    return (NAV_CSS if css else "") + "".join(parts)


_SCRIPT = re.compile(r"<script\b([^>]*)>(.*?)</script\s*>", re.IGNORECASE | re.DOTALL)
_LINK = re.compile(r"<link\b[^>]*>", re.IGNORECASE)
_SRC = re.compile(r"""\bsrc\s*=\s*["']?\s*""" + _EXTERNAL, re.IGNORECASE)
_HREF_EXTERNAL = re.compile(r"""\bhref\s*=\s*["']?\s*""" + _EXTERNAL, re.IGNORECASE)
_IMPORT = re.compile(r"""@import\s+(?:url\()?\s*["']?\s*""" + _EXTERNAL + r"""[^;]*;""", re.IGNORECASE)
_MATHJAX_CONFIG = re.compile(r"""type\s*=\s*["']text/x-mathjax-config""", re.IGNORECASE)


def external_resources(html: str) -> list[str]:
    """Every script, stylesheet or import a page would load from another host.

    Examples
    --------
    >>> external_resources('<script src="https://cdn.x/require.js"></script><script>var a = 1;</script>')
    ['<script src="https://cdn.x/require.js">']
    """
    found = []
    for m in _SCRIPT.finditer(html):
        attrs, body = m.group(1), m.group(2)
        if _SRC.search(attrs):
            found.append(f"<script{attrs}>")
        elif re.search(r"""\bimport\b[^;]*["']""" + _EXTERNAL, body) or re.search(
                r"""\bimport\(\s*["']""" + _EXTERNAL, body):
            found.append(f"<script{attrs}> importing from another host")
    found += [m.group(0) for m in _LINK.finditer(html) if _HREF_EXTERNAL.search(m.group(0))]
    found += [m.group(0) for m in _IMPORT.finditer(html)]
    return found


def make_offline(html: str) -> str:
    """Remove everything a page would load from a CDN: scripts, module imports, stylesheets.

    Removed: ``<script src>`` pointing to another host (require.js, MathJax), inline scripts
    that import from another host (nbconvert's mermaid loader) and MathJax's configuration
    block, ``<link>`` elements to another host, and CSS ``@import`` of another host. Inline
    styles and scripts that load nothing stay; PNG figures are already inline in nbconvert
    pages.

    Notes
    -----
    Mathematics written as ``$...$`` in markdown is left as its TeX source (no MathJax); the
    report's chapters use plain text. Widgets needing require.js would stop working; the
    report has none.

    Examples
    --------
    >>> page = ('<head><script src="https://cdnjs.cloudflare.com/require.min.js"></script>'
    ...         '<link rel="stylesheet" href="//fonts.example/x.css"><style>p{color:red}</style></head>')
    >>> make_offline(page)
    '<head><style>p{color:red}</style></head>'
    """

    def script(m: re.Match[str]) -> str:
        attrs, body = m.group(1), m.group(2)
        if _SRC.search(attrs) or _MATHJAX_CONFIG.search(attrs):
            return ""
        if re.search(r"""\bimport\b[^;]*["']""" + _EXTERNAL, body) or re.search(
                r"""\bimport\(\s*["']""" + _EXTERNAL, body):
            return ""
        return m.group(0)

    html = _SCRIPT.sub(script, html)
    html = _LINK.sub(lambda m: "" if _HREF_EXTERNAL.search(m.group(0)) else m.group(0), html)
    return _IMPORT.sub("", html)


def figure_caption(text: str) -> str:
    """A figure caption paragraph that :func:`number_captions` will number.

    Examples
    --------
    >>> figure_caption("Process of care <OR>")
    '<p class="bp-caption bp-figure-caption">Process of care &lt;OR&gt;</p>'
    """
    return f'<p class="bp-caption bp-figure-caption">{escape_html(text)}</p>'


_CAPTION = re.compile(r"""<(caption|p|figcaption)\b([^>]*\bclass\s*=\s*["'][^"']*\bbp-(table|figure)-caption\b"""
                      r"""[^"']*["'][^>]*)>""", re.IGNORECASE)


def number_captions(html: str, chapter: str | int | None = None) -> str:
    """Number the table and figure captions of a page in order: "Table 4.1. ...", "Figure 4.1. ...".

    Captions are those written by display tables (``<caption class="bp-caption
    bp-table-caption">``) and :func:`figure_caption`. Captions already numbered (a display
    table given ``number=``) keep their number and are not counted.

    Parameters
    ----------
    html : str
    chapter : str or int, optional
        Chapter number prefix ("4" gives 4.1, 4.2, ...); none gives 1, 2, ...

    Examples
    --------
    >>> page = figure_caption("Flow") + '<caption class="bp-caption bp-table-caption">Table one</caption>'
    >>> numbered = number_captions(page, chapter=4)
    >>> re.sub(r"<[^>]+>", "|", numbered)
    '|Figure 4.1. Flow||Table 4.1. Table one|'
    >>> number_captions(numbered, chapter=4) == numbered  # numbered captions keep their number
    True
    """
    counters = {"table": 0, "figure": 0}
    prefix = f"{chapter}." if chapter not in (None, "") else ""

    def number(m: re.Match[str]) -> str:
        if "data-numbered" in m.group(2):
            return m.group(0)
        kind = m.group(3).lower()
        counters[kind] += 1
        tag = f'<{m.group(1)}{m.group(2)} data-numbered="{prefix}{counters[kind]}">'
        return f'{tag}{kind.capitalize()} {prefix}{counters[kind]}. '

    return _CAPTION.sub(number, html)


_BODY = re.compile(r"<body\b[^>]*>", re.IGNORECASE)
_HEAD_END = re.compile(r"</head\s*>", re.IGNORECASE)


def postprocess_page(html: str, *, pages: Sequence[Page | tuple[str, str]], current: str,
                     chapter: str | int | None = None, index: Page | tuple[str, str] = ("Report index", "index.html"),
                     bottom_nav: bool = True) -> str:
    """An nbconvert (or any) HTML page made offline, with the navigation bar and numbered captions.

    Parameters
    ----------
    html : str
        The page.
    pages : sequence of Page or (title, href)
        The chapters in order (see :func:`nav_bar`).
    current : str
        This page's href relative to the report folder.
    chapter : str or int, optional
        Prefix of this page's table and figure numbers.
    index : Page or (title, href)
    bottom_nav : bool, default True
        Repeat the bar (without its stylesheet) before ``</body>``.

    Returns
    -------
    str

    Raises
    ------
    PresentationError
        When the page has no ``<body>`` or an external resource survives.

    Examples
    --------
    >>> page = ('<html><head><script src="https://cdn.example/mathjax.js"></script></head>'
    ...         '<body><caption class="bp-caption bp-table-caption">Uptake</caption></body></html>')
    >>> out = postprocess_page(page, pages=[("03 Screening", "03.html"), ("04 Process", "04.html")],
    ...                        current="04.html", chapter=4)
    >>> "mathjax" in out, 'href="index.html"' in out, 'href="03.html"' in out, "Table 4.1. Uptake" in out
    (False, True, True, True)
    """
    html = number_captions(strip_navigation(make_offline(html)), chapter)
    bar = nav_bar(pages, current, index=index, css=False)
    match = _BODY.search(html)
    if match is None:
        raise PresentationError(f"page {current!r}: no <body> element to put the navigation bar in")
    html = html[: match.end()] + bar + html[match.end():]
    head = _HEAD_END.search(html)
    html = (html[: head.start()] + NAV_CSS + html[head.start():]) if head else html.replace(bar, NAV_CSS + bar, 1)
    if bottom_nav:
        end = html.lower().rfind("</body")
        html = html[:end] + bar.replace('class="bp-nav"', 'class="bp-nav bp-nav-bottom"', 1) + html[end:]
    left = external_resources(html)
    if left:
        raise PresentationError(f"page {current!r}: external resources remain after post-processing: {left}")
    return html


_NAV = re.compile(r'<nav class="bp-nav[^"]*"[^>]*>.*?</nav>', re.DOTALL)


def strip_navigation(html: str) -> str:
    """The page without the navigation bars and stylesheet :func:`postprocess_page` added.

    So a page can be post-processed again (a report re-run with other chapters) without
    doubling its bars.

    Examples
    --------
    >>> page = "<html><head></head><body><p>x</p></body></html>"
    >>> once = postprocess_page(page, pages=[("A", "a.html")], current="a.html")
    >>> postprocess_page(once, pages=[("A", "a.html")], current="a.html") == once
    True
    """
    return _NAV.sub("", html.replace(NAV_CSS, ""))


_NUMBERED_TABLE = re.compile(r"""<caption\b[^>]*\bbp-table-caption\b[^>]*>\s*Table\s+([\w.]+)\.\s(.*?)</caption>""",
                             re.IGNORECASE | re.DOTALL)


def table_numbers(html: str) -> dict[str, str]:
    """The numbers a page gives its table captions: ``{caption text: "4.1", ...}`` (first wins).

    Used to give the tables of ``tables.docx`` the numbers they carry on their chapter page.

    Examples
    --------
    >>> page = number_captions('<caption class="bp-caption bp-table-caption">A &amp; B</caption>', chapter=4)
    >>> table_numbers(page)
    {'A & B': '4.1'}
    """
    import html as htmllib

    found: dict[str, str] = {}
    for m in _NUMBERED_TABLE.finditer(html):
        found.setdefault(htmllib.unescape(re.sub(r"<[^>]+>", "", m.group(2))).strip(), m.group(1))
    return found


def chapter_number(name: str) -> str | None:
    """The chapter number in a chapter's folder name: ``"04_process_of_care"`` -> ``"4"``.

    Examples
    --------
    >>> chapter_number("04_process_of_care"), chapter_number("feedback/practice_P01")
    ('4', None)
    """
    m = re.match(r"0*(\d+)_", name)
    return m.group(1) if m else None


def report_tables_docx(out_dir: str | Path, chapters: Sequence[tuple[str, str | None]], path: str | Path | None = None,
                       *, title: str | None = "Tables") -> Path | None:
    """Write ``OUT/tables.docx``: every chapter's main tables, in chapter order, numbered as on their pages.

    Parameters
    ----------
    out_dir : str or Path
        The report folder.
    chapters : sequence of (name, html)
        Chapter folder names in report order, with their page (relative to ``out_dir``; None
        when the chapter has no page). The main tables are the ``tables/*.table.json`` files
        written by :meth:`DisplayTable.write`.
    path : str or Path, optional
        Default ``OUT/tables.docx``.
    title : str, optional
        Heading of the document.

    Returns
    -------
    Path or None
        The file written, or None when no chapter wrote a table (an earlier file is removed).

    Notes
    -----
    A table keeps the number its caption has on its chapter page ("Table 4.1"), found by
    caption text with :func:`table_numbers`, and the tables of a chapter follow that order;
    a table not shown on the page is numbered after the others of its chapter.
    """
    from ._docx import tables_docx
    from ._table import DisplayTable

    out_dir = Path(out_dir)
    target = Path(path) if path is not None else out_dir / "tables.docx"
    tables: list[DisplayTable] = []
    numbers: list[str] = []
    for name, html in chapters:
        files = sorted((out_dir / name / "tables").glob("*.table.json"))
        if not files:
            continue
        page = out_dir / html if html else None
        shown = table_numbers(page.read_text(encoding="utf-8")) if page is not None and page.is_file() else {}
        prefix = chapter_number(name)
        loaded = [DisplayTable.read(f) for f in files]

        def key(n: str) -> tuple[int, ...]:
            return tuple(int(x) for x in n.split(".") if x.isdigit())

        numbered = sorted(((shown[t.caption], t) for t in loaded if t.caption in shown), key=lambda p: key(p[0]))
        rest = [t for t in loaded if t.caption not in shown]
        last = max((key(n)[-1] for n, _ in numbered), default=0)
        for k, t in enumerate(rest, start=1):
            numbered.append((f"{prefix}.{last + k}" if prefix else str(last + k), t))
        for number, t in numbered:
            numbers.append(number)
            tables.append(t)
    if not tables:
        target.unlink(missing_ok=True)
        return None
    return tables_docx(tables, target, title=title, numbers=numbers)


def postprocess_file(path: str | Path, **kwargs) -> Path:
    """Apply :func:`postprocess_page` to an HTML file in place (atomically); keyword arguments as there."""
    from ..outputs import atomic_write

    path = Path(path)
    html = postprocess_page(path.read_text(encoding="utf-8"), **kwargs)
    with atomic_write(path) as fh:
        fh.write(html)
    return path
