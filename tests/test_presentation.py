"""The presentation layer: formatting rules, display tables (HTML, LaTeX, Word), figures, site pages."""

from __future__ import annotations

import doctest
import html as htmllib
import importlib
import pkgutil
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

import backpain_analysis.presentation as presentation
from backpain_analysis.presentation import (
    MISSING,
    SUPPRESSION_FOOTNOTE,
    DisplayTable,
    PresentationError,
    display_table,
    format_count,
    format_estimate_ci,
    format_n_pct,
    format_number,
    format_p,
    tables_docx,
)
from backpain_analysis.presentation.figures import forest_plot, save_figure
from backpain_analysis.presentation.site import (
    external_resources,
    figure_caption,
    make_offline,
    nav_bar,
    number_captions,
    postprocess_page,
)

matplotlib.use("Agg")
ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------------
# formatting rules, checked by hand
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("p", "expected"), [
    (2.020e-217, "<0.001"),  # printed as 2.020e-217 by pandas before
    (0.0, "<0.001"),
    (0.000999, "<0.001"),
    (0.00099949, "<0.001"),  # below 0.001 even though it rounds to 0.001
    (0.001, "0.001"),
    (0.0012, "0.001"),
    (0.0496, "0.050"),
    (0.05, "0.050"),
    (0.415207, "0.415"),
    (0.7392, "0.739"),  # was 7.39e-01
    (0.9996, "1.000"),
    (1.0, "1.000"),
    (float("nan"), MISSING),
    (None, MISSING),
    (pd.NA, MISSING),
    ("*", "*"),
    ("0.02", "0.020"),
])
def test_p_values_as_journals_print_them(p, expected):
    assert format_p(p) == expected


@pytest.mark.parametrize("p", [-0.01, 1.2, float("inf")])
def test_impossible_p_values_raise(p):
    with pytest.raises(PresentationError, match="outside"):
        format_p(p)


@pytest.mark.parametrize(("args", "kwargs", "expected"), [
    ((0.274453, -0.411057, 0.959962), {}, "0.27 (-0.41 to 0.96)"),
    ((-17.36, -20.5, -14.2), {}, "-17.36 (-20.50 to -14.20)"),  # was -1.736e+01
    ((1.2345e-6, -0.001, 0.002), {"decimals": 3}, "0.000 (-0.001 to 0.002)"),
    ((-0.0001, -0.02, 0.01), {}, "0.00 (-0.02 to 0.01)"),  # no "-0.00"
    ((1234.5, 1000.25, 1500.75), {"decimals": 1}, "1,234.5 (1,000.2 to 1,500.8)"),
    ((3.1, None, None), {}, "3.10"),
    ((None, 1.0, 2.0), {}, MISSING),
    ((3.1, "*", "*"), {}, "*"),
])
def test_estimate_ci_cells(args, kwargs, expected):
    assert format_estimate_ci(*args, **kwargs) == expected


def test_counts_and_percentages():
    assert format_count(370.0) == "370"  # counts were floats
    assert format_count(1647) == "1,647"
    assert format_count(1_000_000) == "1,000,000"
    assert format_n_pct(115, 45.816733) == "115 (45.8)"
    assert format_n_pct(1, denominator=3) == "1 (33.3)"
    assert format_n_pct(2000, 66.66666) == "2,000 (66.7)"
    assert format_n_pct(None, None) == MISSING
    assert format_number(float("nan")) == MISSING
    assert format_number("died or moved") == "died or moved"


# ----------------------------------------------------------------------------------------------
# display tables from the package's own results on the synthetic study
# ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def results():
    from backpain_analysis import cohort, outcomes, process
    from backpain_analysis import economics as ec
    from backpain_analysis.dataset import flow_counts, load_analysis_dataset
    from backpain_analysis.disclosure import suppress_table

    clean, data = load_analysis_dataset(ROOT / "data" / "synthetic")
    imps = outcomes.impute_outcomes(data, n_imputations=2, seed=1, max_iter=3)
    t3 = outcomes.secondary_outcomes_table(data, imps)
    uc = ec.load_unit_costs()
    sets = ec.prepare_economic_data(data, uc, imputation="complete_case", n_imputations=1, seed=1)
    return {
        "flow": (flow_counts(clean), "flow"),
        "table1": (cohort.shareable_table1(cohort.table1(data, by="phase")), "table1"),
        "table2": (process.shareable_process_table(process.process_of_care_table(data)), "process"),
        "primary": (outcomes.primary_analysis(data, imps), "effects"),
        "table3": (suppress_table(t3, ["observed_phase1", "observed_phase3", "events_phase1", "events_phase3"],
                                  denominators={"events_phase1": "observed_phase1",
                                                "events_phase3": "observed_phase3"},
                                  derived={"pct_phase1": ["events_phase1"], "pct_phase3": ["events_phase3"]}),
                   "effects"),
        "by_risk": (outcomes.risk_group_analysis(data, imps)[0], "effects"),
        "economics": (ec.results_table(ec.cost_utility_by_group(sets, cost="nhs_cost", n_boot=50, seed=1)),
                      "economics"),
    }


@pytest.fixture(scope="module")
def displays(results):
    return {name: display_table(df, kind, caption=f"{name} caption") for name, (df, kind) in results.items()}


def _cells(html: str) -> list[str]:
    return [htmllib.unescape(re.sub(r"<[^>]+>", "", c)) for c in re.findall(r"<t[dh]\b[^>]*>(.*?)</t[dh]>", html, re.S)]


BAD_CELL = re.compile(r"\bnan\b|\bNone\b|\bNaN\b|<NA>|e-0|e\+0|e-\d{2,}|e\+\d{2,}", re.IGNORECASE)


def test_html_cells_hold_no_nan_none_or_scientific_notation(displays):
    for name, t in displays.items():
        cells = _cells(t.to_html())
        assert cells, name
        bad = [c for c in cells if BAD_CELL.search(c)]
        assert bad == [], f"{name}: {bad[:5]}"


def test_html_has_no_index_column(displays, results):
    for name, t in displays.items():
        df = results[name][0]
        first_column = [row[0] for row in t.rows]
        assert first_column != [str(i) for i in range(len(t.rows))], name
        assert t.headers[0] and not t.headers[0].isdigit(), name
        assert len(t.rows) == len(df if isinstance(df, pd.DataFrame) else df.tableone), name
        # every header is a human label: no snake_case column names
        assert not [h for h in t.headers if "_" in h], f"{name}: {t.headers}"


def test_process_table_cells_match_a_hand_calculation(results, displays):
    """The OR cell is the cross-product ratio of the counts shown beside it (Woolf), so a display that mixes up
    phases or columns fails."""
    df, _ = results["table2"]
    t = displays["table2"]
    col = {h: i for i, h in enumerate(zip(t.spanners, t.headers, strict=True))}
    p1, p3, eff = "Phase 1 (usual care)", "Phase 3 (stratified care)", "Effect (phase 3 vs phase 1)"
    for k, r in df.reset_index(drop=True).iterrows():
        if str(r["estimate"]) == "*":
            continue
        e1, n1, e3, n3 = (int(r[c]) for c in ("events_phase1", "n_phase1", "events_phase3", "n_phase3"))
        odds_ratio = (e3 * (n1 - e1)) / (e1 * (n3 - e3))
        se = np.sqrt(1 / e1 + 1 / (n1 - e1) + 1 / e3 + 1 / (n3 - e3))
        expected = (f"{odds_ratio:.2f} ({odds_ratio * np.exp(-1.959964 * se):.2f} to "
                    f"{odds_ratio * np.exp(1.959964 * se):.2f})")
        assert t.rows[k][col[(eff, "OR (95% CI)")]] == expected
        assert t.rows[k][col[(p1, "n (%)")]] == f"{e1} ({100 * e1 / n1:.1f})"
        assert t.rows[k][col[(p3, "n (%)")]] == f"{e3} ({100 * e3 / n3:.1f})"
        assert t.rows[k][col[(p3, "N")]] == f"{n3:,}"


def test_spanners_group_phase_and_effect_columns(displays):
    t = displays["table3"]
    groups = [g for g, _ in t.spanner_groups()]
    assert groups == ["", "Phase 1 (usual care)", "Phase 3 (stratified care)", "Effect (phase 3 vs phase 1)"]
    html = t.to_html()
    assert 'colspan="3" scope="colgroup">Phase 1 (usual care)' in html


def test_table1_header_is_readable(displays):
    t = displays["table1"]
    assert "SMD" in t.headers
    assert not [h for h in t.headers if h.startswith("SMD (")]  # was "SMD (Phase 1 (usual care),Phase 3 ...)"


def test_economics_decimals_per_quantity(displays):
    t = displays["economics"]
    est = t.headers.index("Estimate (95% CI)")
    for row in t.rows:
        measure, cell = row[1].lower(), row[est]
        if cell == MISSING:
            continue
        decimals = len(cell.split(" ")[0].split(".")[1]) if "." in cell.split(" ")[0] else 0
        assert decimals == (3 if measure.startswith("incremental qaly") else 0), (measure, cell)


def test_unknown_columns_are_ignored_or_shown_on_request():
    res = pd.DataFrame({"analysis": ["multiple imputation"], "n_phase1": [370], "n_phase3": [560],
                        "estimate": [0.27], "ci_low": [-0.41], "ci_high": [0.96], "p_value": [0.415],
                        "df": [21.94], "method": ["Rubin"], "m": [20], "brand_new": [1.5]})
    t = display_table(res, "effects")
    assert t.headers == ("Analysis", "N", "N", "Estimate (95% CI)", "p")
    t = display_table(res, "effects", extra=["df", "method", "m"])
    assert t.rows[0][-3:] == ("21.9", "Rubin", "20")
    assert t.headers[-3:] == ("Degrees of freedom", "Method", "Imputations")
    auto = display_table(res)
    assert "Brand new" in auto.headers and "1.50" in auto.rows[0]
    with pytest.raises(PresentationError, match="not in the results table"):
        display_table(res, "effects", extra=["nope"])
    with pytest.raises(PresentationError, match="unknown kind"):
        display_table(res, "forest")


def test_suppressed_cells_get_the_footnote():
    res = pd.DataFrame({"label": ["Opioids", "Imaging"], "n_phase1": [310, 310], "events_phase1": [3, 57],
                        "pct_phase1": ["*", 18.4], "n_phase3": [425, 425], "events_phase3": ["*", 48],
                        "pct_phase3": ["*", 11.3], "estimate": ["*", 0.57], "ci_low": ["*", 0.37],
                        "ci_high": ["*", 0.86], "p_value": [0.2, 0.007]})
    t = display_table(res, "process")
    assert t.rows[0][2] == "*" and t.rows[0][4] == "*" and t.rows[0][5] == "*"
    assert SUPPRESSION_FOOTNOTE in t.footnotes
    assert SUPPRESSION_FOOTNOTE not in display_table(res.iloc[[1]], "process").footnotes


EVIL = 'Back & leg <b>pain</b> "quoted" 50% under_score {x} #1 $5 ~ ^ \\'


def test_export_text_is_escaped_in_html_and_latex():
    t = DisplayTable(["Measure", "p"], [[EVIL, "<0.001"]], caption=EVIL, footnotes=[EVIL])
    html = t.to_html()
    assert "<b>pain</b>" not in html and "&lt;b&gt;pain&lt;/b&gt;" in html and "&amp; leg" in html
    assert _cells(html)[2:4] == [EVIL, "<0.001"]  # the text as written, once unescaped by the browser
    tex = t.to_latex()
    for raw, escaped in (("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"), ("$", r"\$"), ("<b>", r"\textless{}b")):
        assert escaped in tex, raw
    assert "<" not in tex and ">" not in tex


def _latex_syntax_ok(tex: str, ncol: int) -> None:
    body = re.sub(r"\\[{}&%$#_]", "", tex)
    assert body.count("{") == body.count("}")
    assert re.findall(r"\\begin\{(\w+)\}", tex) == list(reversed(re.findall(r"\\end\{(\w+)\}", tex)))
    for line in tex.splitlines():
        if line.endswith(r"\\") and "multicolumn" not in line:
            assert re.sub(r"\\&", "", line).count("&") == ncol - 1, line


def test_latex_syntax(displays):
    for t in displays.values():
        _latex_syntax_ok(t.to_latex(), len(t.headers))
    t = DisplayTable(["Measure", "p"], [[EVIL, "<0.001"]], caption=EVIL)
    _latex_syntax_ok(t.to_latex(), 2)


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="no TeX engine (apt-get install texlive-latex-base)")
def test_latex_tables_compile(displays, tmp_path):
    evil = DisplayTable(["Measure", "p"], [[EVIL, "<0.001"], ["\u2014", "*"]], caption=EVIL, number=9,
                        spanners=["", "Effect"])
    doc = ("\\documentclass{article}\n\\usepackage[T1]{fontenc}\n\\usepackage[utf8]{inputenc}\n\\begin{document}\n"
           + "\n".join(t.to_latex() for t in [*displays.values(), evil]) + "\\end{document}\n")
    (tmp_path / "tables.tex").write_text(doc, encoding="utf-8")
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "tables.tex"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:]
    assert (tmp_path / "tables.pdf").stat().st_size > 1000


def test_tables_docx_holds_numbered_captions_and_tables(displays, tmp_path):
    import docx

    order = ["flow", "table1", "table2", "table3", "by_risk", "economics"]
    path = tables_docx([displays[k] for k in order], tmp_path / "tables.docx", title="Tables")
    doc = docx.Document(str(path))
    captions = [p.text for p in doc.paragraphs if re.match(r"Table \d+\.", p.text)]
    assert captions == [f"Table {k}. {name} caption" for k, name in enumerate(order, start=1)]
    assert len(doc.tables) == len(order)
    table2 = doc.tables[2]
    assert table2.cell(0, 1).text == "Phase 1 (usual care)"  # spanner row, merged over N and n (%)
    assert table2.cell(0, 1)._tc is table2.cell(0, 2)._tc
    assert [c.text for c in table2.rows[2].cells] == list(displays["table2"].rows[0])


def test_write_puts_four_files_and_tables_docx_reads_them_back(displays, tmp_path):
    import docx

    paths = displays["table2"].write(tmp_path, "table2")
    assert sorted(p.name for p in paths) == ["table2.docx", "table2.html", "table2.table.json", "table2.tex"]
    assert all(p.stat().st_size > 0 for p in paths)
    assert not list(tmp_path.glob("*.partial"))
    assert DisplayTable.read(tmp_path / "table2.table.json") == displays["table2"]
    displays["flow"].write(tmp_path, "flow", formats=["table.json"])
    out = tables_docx([tmp_path / "flow.table.json", tmp_path / "table2.table.json"], tmp_path / "tables.docx")
    assert [p.text for p in docx.Document(str(out)).paragraphs if p.text.startswith("Table")] == [
        "Table 1. flow caption", "Table 2. table2 caption"]


# ----------------------------------------------------------------------------------------------
# figures
# ----------------------------------------------------------------------------------------------

def _or_table():
    return pd.DataFrame({"label": ["NSAIDs", "Opioids", "Imaging"], "estimate": [0.67, 1.79, 0.83],
                         "ci_low": [0.50, 1.32, 0.55], "ci_high": [0.90, 2.42, 1.27]})


def test_forest_plot_ticks_are_readable_ratios():
    import matplotlib.pyplot as plt

    fig = forest_plot(_or_table(), favours=("Favours usual care", "Favours stratified care"))
    ax = fig.axes[0]
    fig.canvas.draw()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.25", "0.5", "1", "2", "4"]
    assert [t.get_text() for t in ax.get_xticklabels(minor=True) if t.get_text()] == []
    assert ax.get_xscale() == "log"
    texts = [t.get_text() for t in ax.texts]
    assert "\u2190 Favours usual care" in texts and "Favours stratified care \u2192" in texts
    assert [t.get_text() for t in ax.get_yticklabels()] == ["NSAIDs", "Opioids", "Imaging"]
    plt.close(fig)


def test_forest_plot_extends_ticks_for_wide_intervals():
    import matplotlib.pyplot as plt

    t = _or_table()
    t.loc[0, "ci_low"] = 0.15
    t.loc[1, "ci_high"] = 6.4
    fig = forest_plot(t)
    assert [x.get_text() for x in fig.axes[0].get_xticklabels()] == ["0.125", "0.25", "0.5", "1", "2", "4", "8"]
    plt.close(fig)


def test_save_figure_png_at_300_dpi_svg_and_pdf(tmp_path):
    import matplotlib.pyplot as plt
    from PIL import Image

    fig = forest_plot(_or_table())
    paths = save_figure(fig, tmp_path, "forest")
    plt.close(fig)
    assert [p.name for p in paths] == ["forest.png", "forest.svg", "forest.pdf"]
    with Image.open(paths[0]) as im:
        assert round(im.info["dpi"][0]) == 300
    assert paths[1].read_text().lstrip().startswith("<?xml")
    assert paths[2].read_bytes()[:5] == b"%PDF-"


# ----------------------------------------------------------------------------------------------
# site: offline pages, navigation, numbered captions
# ----------------------------------------------------------------------------------------------

PAGES = [("01 Data quality", "01_data_quality/01_data_quality.html"), ("02 Cohort", "02_cohort/02_cohort.html"),
         ("03 Stratification", "03_stratification/03_stratification.html")]


@pytest.fixture(scope="module")
def nbconvert_page():
    """A real nbconvert page (the report's exporter settings), with a display table and a figure caption."""
    import nbformat
    from nbconvert import HTMLExporter

    table = display_table(pd.DataFrame({"label": ["Opioids"], "estimate": [1.79], "ci_low": [1.32],
                                        "ci_high": [2.42], "p_value": [0.0002]}), "process", caption="Process")
    out = nbformat.v4.new_output("display_data", data={"text/html": table.to_html() + figure_caption("Forest"),
                                                       "text/plain": "table"})
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Cohort"),
                                         nbformat.v4.new_code_cell("t", outputs=[out])])
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    return exporter.from_notebook_node(nb)[0]


def test_offline_post_processor_removes_every_external_resource(nbconvert_page):
    before = external_resources(nbconvert_page)
    assert len(before) >= 3, before  # require.js, MathJax, the mermaid module: the check can fail
    page = postprocess_page(nbconvert_page, pages=PAGES, current="02_cohort/02_cohort.html", chapter=2)
    assert external_resources(page) == []
    assert not re.search(r"<script[^>]+src=[\"']?(https?:)?//", page)
    assert not re.search(r"<link[^>]+href=[\"']?(https?:)?//", page)
    assert "cdnjs" not in page and "x-mathjax-config" not in page
    assert "Table 2.1. Process" in page and "Figure 2.1. Forest" in page


def test_offline_removes_stylesheets_and_imports():
    page = ('<html><head><link rel="stylesheet" href="https://cdn.example/a.css">'
            "<link rel='stylesheet' href='//cdn.example/b.css'><link rel=\"stylesheet\" href=\"local.css\">"
            "<style>@import url('https://fonts.example/f.css'); p{margin:0}</style></head><body></body></html>")
    assert len(external_resources(page)) == 3
    out = make_offline(page)
    assert external_resources(out) == []
    assert 'href="local.css"' in out and "p{margin:0}" in out


def test_every_page_links_to_the_index_and_its_neighbours(nbconvert_page):
    for k, (_, href) in enumerate(PAGES):
        page = postprocess_page(nbconvert_page, pages=PAGES, current=href)
        links = re.findall(r'<a class="bp-nav-(\w+)"(?: rel="\w+")? href="([^"]+)"', page)
        assert ("index", "../index.html") in links
        if k > 0:
            assert ("prev", "../" + PAGES[k - 1][1]) in links
        if k + 1 < len(PAGES):
            assert ("next", "../" + PAGES[k + 1][1]) in links
        assert page.count('aria-current="page"') == 2  # top and bottom bars
    index = nav_bar(PAGES, "index.html", css=False)
    assert 'href="01_data_quality/01_data_quality.html"' in index and 'rel="prev"' not in index
    with pytest.raises(PresentationError, match="neither the index"):
        nav_bar(PAGES, "99_missing.html")


def test_numbered_captions_count_per_kind_and_keep_given_numbers():
    page = (figure_caption("A") + display_table(pd.DataFrame({"x": [1]}), caption="T1").to_html(css=False)
            + display_table(pd.DataFrame({"x": [1]}), caption="Fixed", number=7).to_html(css=False)
            + figure_caption("B") + display_table(pd.DataFrame({"x": [1]}), caption="T2").to_html(css=False))
    out = number_captions(page, chapter=5)
    assert re.findall(r"(?:Table|Figure) [\d.]+\. \w+", out) == [
        "Figure 5.1. A", "Table 5.1. T1", "Table 7. Fixed", "Figure 5.2. B", "Table 5.2. T2"]


# ----------------------------------------------------------------------------------------------
# the documentation's examples run (tests/test_docstring_examples.py does not descend into subpackages)
# ----------------------------------------------------------------------------------------------

MODULES = ["backpain_analysis.presentation"] + sorted(
    name for _, name, _ in pkgutil.iter_modules(presentation.__path__, prefix="backpain_analysis.presentation."))


@pytest.mark.parametrize("module_name", MODULES)
def test_examples_run(module_name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} example lines failed in {module_name}"


def test_captioned_figure_is_numbered_and_has_alt_text():
    import matplotlib.pyplot as plt

    from backpain_analysis.presentation.figures import captioned

    fig = forest_plot(_or_table())
    html = number_captions(captioned(fig, "Odds ratios").to_html(), chapter=4)
    assert "Figure 4.1. Odds ratios" in html and 'alt="Odds ratios"' in html
    assert plt.fignum_exists(fig.number) is False


def test_auto_tables_label_and_format_every_column():
    df = pd.DataFrame({"phase": [1, 3], "risk_group": ["low", "high"], "n": [142.0, 98.0], "n_total": [370, 560],
                       "pct": [38.37837, 17.5], "estimate": [0.4812, 0.0000123], "ci_low": [0.42, 0.0],
                       "ci_high": [0.55, 0.0001], "p_value": [1e-12, 0.2], "sd": [1.23456, 2.0]})
    t = display_table(df)
    assert t.headers == ("Phase", "Risk group", "N", "N total", "%", "Estimate (95% CI)", "p", "SD")
    assert t.rows[0] == ("1", "Low", "142", "370", "38.4", "0.48 (0.42 to 0.55)", "<0.001", "1.23")
    assert t.rows[1][5] == "0.00 (0.00 to 0.00)" and t.stub == 2


# ----------------------------------------------------------------------------------------------
# options the chapters 01-04 need: percentages, pivot spanners, key findings, the clustered Table 2
# ----------------------------------------------------------------------------------------------

def test_percent_scales_estimate_and_ci_but_keeps_hidden_cells():
    share = pd.DataFrame({"practice_id": ["P01", "P02", "P03"], "n_consultations": [217, 301, 7],
                          "estimate": [105 / 217, 187 / 301, "*"], "ci_low": [0.41824, 0.56526, "*"],
                          "ci_high": [0.55006, 0.67421, "*"]})
    t = display_table(share, percent=True)
    assert t.headers == ("Practice ID", "N consultations", "% (95% CI)")
    # 105 / 217 = 48.387...% by hand
    assert t.rows[0][2] == "48.4 (41.8 to 55.0)" and t.rows[1][2] == "62.1 (56.5 to 67.4)"
    assert t.rows[2][2] == "*" and SUPPRESSION_FOOTNOTE in t.footnotes
    assert share["estimate"].iloc[0] == 105 / 217  # the results table is not changed


def test_pivot_table_columns_become_spanners():
    long = pd.DataFrame({"label": ["RMDQ", "RMDQ", "RMDQ", "RMDQ"], "phase": [1, 1, 3, 3],
                         "time_point": ["baseline", "6 months", "baseline", "6 months"],
                         "pct_missing": [1.24, 30.0, 2.5, 41.76]})
    wide = long.pivot_table(index="label", columns=["phase", "time_point"], values="pct_missing", sort=False,
                            aggfunc="first")
    t = display_table(wide, decimals=1)
    assert t.headers == ("Measure", "Baseline", "6 months", "Baseline", "6 months")
    assert t.spanners[1:] == ("Phase 1 (usual care)",) * 2 + ("Phase 3 (stratified care)",) * 2
    assert t.rows == (("RMDQ", "1.2", "30.0", "2.5", "41.8"),)
    assert 'colspan="2" scope="colgroup">Phase 1 (usual care)' in t.to_html()
    with pytest.raises(PresentationError, match="levels"):
        display_table(pd.DataFrame([[1]], columns=pd.MultiIndex.from_tuples([("a", "b", "c")])))


def test_findings_preset_uses_the_index_rules():
    findings = pd.DataFrame([
        {"name": "respondents_phase1", "label": "Respondents, phase 1", "value": 1370, "ci_low": None,
         "ci_high": None, "unit": "patients", "truth": None},
        {"name": "opioids_or", "label": "OR of opioids", "value": 1.7891, "ci_low": 1.3212, "ci_high": 2.4249,
         "unit": "odds ratio", "truth": 2.2137},
        {"name": "sbst_auc_disability", "label": "AUC", "value": 0.86401, "ci_low": 0.84134, "ci_high": 0.88668,
         "unit": None, "truth": None},
    ])
    t = display_table(findings, "findings")
    assert t.headers == ("Finding", "Value (95% CI)", "Unit", "True value")
    assert [r[1] for r in t.rows] == ["1,370", "1.79 (1.32 to 2.42)", "0.864 (0.841 to 0.887)"]
    assert t.rows[1][3] == "2.21" and t.rows[0][3] == MISSING


def test_process_table_shows_the_clustered_adjusted_or_as_primary():
    res = pd.DataFrame({"label": ["Opioids"], "n_phase1": [310], "events_phase1": [101], "n_phase3": [425],
                        "events_phase3": [197], "estimate": [1.789], "ci_low": [1.321], "ci_high": [2.424],
                        "p_value": [0.00018], "adjusted_estimate": [1.83], "adjusted_ci_low": [1.34],
                        "adjusted_ci_high": [2.49], "adjusted_p_value": [0.0001], "clustered_ci_low": [1.2],
                        "clustered_ci_high": [2.8], "clustered_p_value": [0.0131], "clustered_df": [6]})
    t = display_table(res, "process")
    col = dict(zip(t.headers, t.rows[0], strict=True))
    assert col["Adjusted OR, clustered (95% CI)"] == "1.83 (1.20 to 2.80)" and col["p, clustered"] == "0.013"
    assert "Adjusted OR (95% CI)" not in t.headers  # the independent model is a sensitivity analysis (CSV)
    assert any("Mancl-DeRouen" in n for n in t.footnotes)
    without = display_table(res.drop(columns=["clustered_ci_low", "clustered_ci_high", "clustered_p_value"]), "process")
    assert dict(zip(without.headers, without.rows[0], strict=True))["Adjusted OR (95% CI)"] == "1.83 (1.34 to 2.49)"


def test_tables_docx_takes_chapter_numbers(tmp_path):
    import docx

    t = DisplayTable(["Measure", "N"], [["Opioids", "310"]], caption="Process of care")
    path = tables_docx([t, t], tmp_path / "t.docx", numbers=["4.1", "5.2"])
    assert [p.text for p in docx.Document(path).paragraphs if p.text.startswith("Table")] == [
        "Table 4.1. Process of care", "Table 5.2. Process of care"]
    with pytest.raises(PresentationError, match="numbers"):
        tables_docx([t], tmp_path / "u.docx", numbers=["1", "2"])


def test_post_processing_twice_changes_nothing(nbconvert_page):
    once = postprocess_page(nbconvert_page, pages=PAGES, current="02_cohort/02_cohort.html", chapter=2)
    twice = postprocess_page(once, pages=PAGES, current="02_cohort/02_cohort.html", chapter=2)
    assert twice == once
    assert once.count('<nav class="bp-nav') == 2 and once.count("Table 2.1.") == 1


def test_report_tables_docx_numbers_tables_as_their_pages(tmp_path):
    import docx

    from backpain_analysis.presentation.site import report_tables_docx

    a = DisplayTable(["Step", "n"], [["Invited", "630"]], caption="Flow")
    b = DisplayTable(["Measure", "OR"], [["Opioids", "1.79"]], caption="Process & care")
    c = DisplayTable(["Measure", "OR"], [["NSAIDs", "0.67"]], caption="Not on the page")
    a.write(tmp_path / "01_data_quality" / "tables", "flow")
    b.write(tmp_path / "04_process_of_care" / "tables", "z_table2")
    c.write(tmp_path / "04_process_of_care" / "tables", "a_extra")
    other = display_table(pd.DataFrame({"x": [1]}), caption="Shown first").to_html(css=False)
    page = number_captions(other + b.to_html(css=False), chapter=4)
    (tmp_path / "04_process_of_care" / "04.html").write_text(f"<html><body>{page}</body></html>")
    path = report_tables_docx(tmp_path, [("01_data_quality", None), ("04_process_of_care", "04_process_of_care/04.html")])
    caps = [p.text for p in docx.Document(path).paragraphs if p.text.startswith("Table ")]
    assert caps == ["Table 1.1. Flow", "Table 4.2. Process & care", "Table 4.3. Not on the page"]
    assert report_tables_docx(tmp_path, [("02_cohort", None)], tmp_path / "none.docx") is None


def test_table1_with_three_groups_keeps_one_smd_per_pair():
    """tableone gives one SMD column per pair of groups; each must keep its own values (they once all showed
    the first pair's)."""
    from backpain_analysis import cohort
    from backpain_analysis.dataset import load_analysis_dataset

    _, data = load_analysis_dataset(ROOT / "data" / "synthetic")
    t1 = cohort.shareable_table1(cohort.table1(data, by="risk_group"))
    t = display_table(t1, "table1")
    pairs = [c for c in t1.columns if str(c).startswith("SMD")]
    assert len(pairs) == 3
    shown = [i for i, s in enumerate(t.spanners) if s == "SMD"]
    assert [t.headers[i] for i in shown] == [", ".join(c[5:-1].split(",")).replace(", ", " vs ") for c in pairs]
    for i, column in zip(shown, pairs, strict=True):
        expected = ["\u2014" if pd.isna(v) or not str(v).strip() else str(v).strip() for v in t1[column]]
        assert [r[i] for r in t.rows] == expected


def test_snake_case_codes_in_label_columns_read_as_words():
    t = display_table(pd.DataFrame({"matched_pathway": ["psych_informed_physiotherapy", "advice", "P_01 (x)"],
                                    "n": [71, 174, 9]}))
    assert [r[0] for r in t.rows] == ["Psych informed physiotherapy", "Advice", "P_01 (x)"]


def test_phase_codes_stored_as_floats_show_as_codes():
    """Chapter 07 grouped by a float phase column and showed 1.00 and 3.00."""
    t = display_table(pd.DataFrame({"phase": [1.0, 3.0, np.nan], "n_patients": [370, 560, 0]}))
    assert [r[0] for r in t.rows] == ["1", "3", "\u2014"]
