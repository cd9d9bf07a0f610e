"""The report as a reader gets it: a real report of the bundled study, rendered into a tmp folder.

One run (module fixture) of the chapters that show the main journal tables fastest (01 flow,
04 Table 2) and one practice's feedback report, so the index, chapter and feedback pages are
all there. The checks read the files the runner wrote, not the code that wrote them:

- HTML table cells hold no ``NaN``/``None``/scientific notation and no DataFrame index column;
- every page links to the index and to its neighbours (the navigation bar), and loads nothing
  from another host (no ``<script src>`` or stylesheet link to a CDN);
- ``tables.docx`` opens with python-docx and holds the numbered, captioned tables in chapter
  order, numbered as on their pages, with the cells of the chapter's ``.table.json``;
- the ``.tex`` tables compile with ``pdflatex`` in a minimal document (or, without a TeX
  engine, pass a syntax check);
- Table 2's cells agree with a hand calculation from the counts in the same row.
"""

from __future__ import annotations

import html as htmllib
import json
import posixpath
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from backpain_analysis.report import run_report

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ["01_data_quality", "04_process_of_care"]
PRACTICE = "P01"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("site") / "report"
    run = run_report(ROOT / "data" / "synthetic", out, chapters=CHAPTERS, practices=[PRACTICE], jobs=2,
                     progress=False)
    assert run.failed == [], run.failure_summary()
    return out


def _pages(out: Path) -> dict[str, str]:
    pages = {"index.html": (out / "index.html").read_text(encoding="utf-8")}
    for name in CHAPTERS:
        pages[f"{name}/{name}.html"] = (out / name / f"{name}.html").read_text(encoding="utf-8")
    fb = f"feedback/practice_{PRACTICE}/practice_{PRACTICE}.html"
    pages[fb] = (out / fb).read_text(encoding="utf-8")
    return pages


def _tables(html: str) -> list[str]:
    return re.findall(r"<table\b.*?</table>", html, re.S | re.I)


def _cells(table: str) -> list[str]:
    return [htmllib.unescape(re.sub(r"<[^>]+>", "", c)).strip()
            for c in re.findall(r"<t[dh]\b[^>]*>(.*?)</t[dh]>", table, re.S | re.I)]


BAD_CELL = re.compile(r"\bnan\b|\bNone\b|<NA>|\d\.?\d*e[-+]\d", re.IGNORECASE)


FEEDBACK = f"feedback/practice_{PRACTICE}/practice_{PRACTICE}.html"


def _check_cells(href: str, html: str) -> None:
    for table in _tables(html):
        bad = [c for c in _cells(table) if BAD_CELL.search(c) or "e-0" in c or "e+0" in c]
        assert bad == [], f"{href}: {bad[:5]}"


def _check_no_index(href: str, html: str) -> None:
    assert 'class="dataframe' not in html, f"{href} shows a raw DataFrame"
    for table in _tables(html):
        body = re.findall(r"<tr\b[^>]*>\s*<t[dh]\b[^>]*>(.*?)</t[dh]>", table.split("<tbody>")[-1], re.S)
        first = [htmllib.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in body]
        if len(first) > 1:
            assert first != [str(i) for i in range(len(first))], f"{href}: a 0..n index column"


def test_table_cells_hold_no_nan_none_or_scientific_notation(report):
    for href, html in _pages(report).items():
        if href != FEEDBACK:
            _check_cells(href, html)


def test_no_dataframe_index_column(report):
    for href, html in _pages(report).items():
        _check_no_index(href, html)


def test_feedback_page_tables_are_display_tables(report):
    html = _pages(report)[FEEDBACK]
    _check_cells(FEEDBACK, html)
    _check_no_index(FEEDBACK, html)


def _links(html: str) -> set[str]:
    return set(re.findall(r'<a\b[^>]*href="([^"#]+)"', html))


def test_every_page_links_to_the_index_and_its_neighbours(report):
    from backpain_analysis.report import load_report_definition

    definition = load_report_definition()
    order = [f"{c.name}/{c.name}.html" for c in definition.chapters]
    order.append(f"feedback/practice_{PRACTICE}/practice_{PRACTICE}.html")
    for href, html in _pages(report).items():
        base = posixpath.dirname(href)
        links = {posixpath.normpath(posixpath.join(base, link)) for link in _links(html)}
        if href != "index.html":
            assert "index.html" in links, f"{href} does not link to the index"
            k = order.index(href)
            if k > 0:
                assert order[k - 1] in links, f"{href}: no link to the previous page {order[k - 1]}"
            if k + 1 < len(order):
                assert order[k + 1] in links, f"{href}: no link to the next page {order[k + 1]}"
        assert set(order) <= links, f"{href}: contents miss {sorted(set(order) - links)}"
        assert 'rel="next"' in html or href == order[-1]


EXTERNAL = re.compile(r"""<script\b[^>]*\bsrc\s*=\s*["']?\s*(?:https?:)?//|<link\b[^>]*\bhref\s*=\s*["']?\s*"""
                      r"""(?:https?:)?//|@import\s+(?:url\()?\s*["']?\s*(?:https?:)?//""", re.I)


def test_pages_load_nothing_from_another_host(report):
    for href, html in _pages(report).items():
        assert not EXTERNAL.search(html), f"{href}: {EXTERNAL.search(html).group(0)}"
        for cdn in ("require.min.js", "MathJax.js", "mathjax@", "mermaid"):
            assert cdn.lower() not in html.lower() or "<script" not in html.lower().split(cdn.lower())[0][-400:], \
                f"{href} still loads {cdn}"


def test_captions_are_numbered_per_chapter(report):
    html = _pages(report)["04_process_of_care/04_process_of_care.html"]
    numbers = re.findall(r"bp-table-caption[^>]*>\s*Table (\d+\.\d+)\.", html)
    assert numbers and numbers == [f"4.{k}" for k in range(1, len(numbers) + 1)]


def test_index_findings_use_the_table_rules(report):
    """Like quantities get like precision: every odds ratio with 2 decimals, every % with 1."""
    html = (report / "index.html").read_text(encoding="utf-8")
    rows = re.findall(r"<tr><td>(.*?)</td><td class=\"num\">(.*?)</td>\s*<td>(.*?)</td></tr>", html, re.S)
    assert rows
    decimals = {"odds ratio": 2, "%": 1, "patients": 0}
    for label, value, unit in rows:
        unit = htmllib.unescape(unit).strip()
        if unit not in decimals:
            continue
        for number in re.findall(r"-?[\d,]+(?:\.\d+)?", htmllib.unescape(value)):
            got = len(number.split(".")[1]) if "." in number else 0
            assert got == decimals[unit], (label, value, unit)


def test_tables_docx_holds_the_numbered_tables_in_chapter_order(report):
    import docx

    from backpain_analysis.presentation import DisplayTable

    doc = docx.Document(str(report / "tables.docx"))
    captions = [p.text for p in doc.paragraphs if re.match(r"Table \d+\.\d+\. ", p.text)]
    numbers = [tuple(int(x) for x in re.match(r"Table (\d+)\.(\d+)\.", c).groups()) for c in captions]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    assert {n[0] for n in numbers} == {1, 4}
    assert len(doc.tables) == len(captions)
    # the numbers are those of the chapter pages, and the cells those of the chapter's table files
    pages = _pages(report)
    for caption, grid in zip(captions, doc.tables, strict=True):
        number, text = re.match(r"Table (\d+\.\d+)\. (.*)", caption).groups()
        chapter = next(c for c in CHAPTERS if c.startswith(f"{int(number.split('.')[0]):02d}_"))
        assert f"Table {number}. {htmllib.escape(text, quote=False)}" in pages[f"{chapter}/{chapter}.html"]
        source = [DisplayTable.read(p) for p in (report / chapter / "tables").glob("*.table.json")]
        table = next(t for t in source if t.caption == text)
        body = [[c.text for c in row.cells] for row in grid.rows][-len(table.rows):]
        assert body == [list(r) for r in table.rows]
    assert any("process of care" in c.lower() for c in captions)
    assert any("participant flow" in c.lower() for c in captions)


def test_table2_cells_agree_with_a_hand_calculation(report):
    """Unadjusted OR and Woolf CI from the counts in the same row (an independent closed form)."""
    from backpain_analysis.presentation import DisplayTable

    t = DisplayTable.read(report / "04_process_of_care" / "tables" / "table2_process_of_care.table.json")
    assert [g for g, _ in t.spanner_groups()][:4] == ["", "Phase 1 (usual care)", "Phase 3 (stratified care)",
                                                      "Effect (phase 3 vs phase 1)"]
    col = {key: i for i, key in enumerate(zip(t.spanners, t.headers, strict=True))}
    p1, p3, eff = "Phase 1 (usual care)", "Phase 3 (stratified care)", "Effect (phase 3 vs phase 1)"
    checked = 0
    for row in t.rows:
        if row[col[(eff, "OR (95% CI)")]] in ("*", "\u2014"):
            continue
        e1, e3 = (int(row[col[(p, "n (%)")]].split(" ")[0].replace(",", "")) for p in (p1, p3))
        n1, n3 = (int(row[col[(p, "N")]].replace(",", "")) for p in (p1, p3))
        odds_ratio = e3 * (n1 - e1) / (e1 * (n3 - e3))
        se = np.sqrt(1 / e1 + 1 / (n1 - e1) + 1 / e3 + 1 / (n3 - e3))
        z = 1.959963984540054
        assert row[col[(eff, "OR (95% CI)")]] == (f"{odds_ratio:.2f} ({odds_ratio * np.exp(-z * se):.2f} to "
                                                  f"{odds_ratio * np.exp(z * se):.2f})")
        assert row[col[(p1, "n (%)")]] == f"{e1} ({100 * e1 / n1:.1f})"
        checked += 1
    assert checked >= 10
    assert (eff, "Adjusted OR, clustered (95% CI)") in col  # the design's (primary) analysis is shown


LATEX_DOC = r"""\documentclass{article}
\usepackage[T1]{fontenc}
\usepackage[utf8]{inputenc}
\usepackage[a4paper,landscape,margin=1cm]{geometry}
\begin{document}
%s
\end{document}
"""


def _latex_syntax_ok(tex: str) -> None:
    body = re.sub(r"\\[{}&%$#_]", "", tex)
    assert body.count("{") == body.count("}")
    envs = re.findall(r"\\(begin|end)\{(\w+)\}", tex)
    stack = []
    for kind, env in envs:
        assert env in {"table", "tabular"}, env
        if kind == "begin":
            stack.append(env)
        else:
            assert stack.pop() == env
    assert not stack
    ncol = len(re.search(r"\\begin\{tabular\}\{([lrc]+)\}", tex).group(1))
    for line in tex.splitlines():
        if line.rstrip().endswith(r"\\") and "multicolumn" not in line:
            assert line.count("&") - line.count(r"\&") == ncol - 1, line


def test_tex_tables_compile(report, tmp_path):
    files = sorted(report.glob("*/tables/*.tex"))
    assert files
    for f in files:
        _latex_syntax_ok(f.read_text(encoding="utf-8"))
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex not installed: syntax checked only")
    geometry = subprocess.run(["kpsewhich", "geometry.sty"], capture_output=True, text=True).stdout.strip()
    doc = LATEX_DOC if geometry else LATEX_DOC.replace("\\usepackage[a4paper,landscape,margin=1cm]{geometry}\n", "")
    (tmp_path / "tables.tex").write_text(doc % "\n\\clearpage\n".join(f.read_text(encoding="utf-8") for f in files),
                                         encoding="utf-8")
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "tables.tex"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:]
    assert (tmp_path / "tables.pdf").stat().st_size > 1000


def test_run_json_and_index_point_at_existing_pages(report):
    data = json.loads((report / "run.json").read_text(encoding="utf-8"))
    for chapter in data["chapters"]:
        if chapter["status"] in ("ok", "skipped"):
            assert (report / chapter["html"]).is_file()
