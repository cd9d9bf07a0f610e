"""Study text in shared outputs (issue 12, item 1): nothing can run or be read as markup."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from backpain_analysis.outputs import ChapterOutputs
from backpain_analysis.safe_text import (
    csv_cell,
    csv_safe_frame,
    html_text,
    latex_text,
    markdown,
    markdown_text,
    mathtext_text,
)

HOSTILE = ['<script>alert("x")</script>', "=cmd|' /C calc'!A0", "+1+cmd", "-2+3", "@SUM(A1)", "\tx", "\rx",
           r"$\alpha$", "{}&%_#~^\\", "[link](javascript:alert(1))", "# heading\n- item"]


@pytest.mark.parametrize("text", HOSTILE)
def test_markdown_text_renders_as_the_literal_text(text):
    import html
    import re

    # the renderer of the HTML report (nbconvert's mistune with math), then what MathJax would see
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    rendered = markdown2html_mistune(markdown_text(text))
    for tag in ("<script", "<a ", "<h1", "<li", "<pre", "<code", "<em", "<strong"):
        assert tag not in rendered
    assert re.search(r"(?<!\\)\$", rendered) is None  # every "$" escaped: MathJax (processEscapes) typesets nothing
    plain = html.unescape(rendered.removeprefix("<p>").removesuffix("</p>\n")).replace("\\$", "$")
    assert plain == " ".join(text.split())  # what the reader sees (white space runs become one space)


def test_markdown_template_escapes_values_not_the_template():
    md = markdown("## {name} ({pid})\n\n{k} practices", name="<b>x</b>", pid="P01", k=7)
    assert md == "## &lt;b&gt;x&lt;/b&gt; (P01)\n\n7 practices"
    with pytest.raises(KeyError, match="missing"):
        markdown("{missing}")


def test_html_and_latex_escaping():
    assert "<" not in html_text("<script>") and "&quot;" in html_text('"')
    assert latex_text("a_b & 50% {x} $y$ #1") == r"a\_b \& 50\% \{x\} \$y\$ \#1"
    assert mathtext_text("cost $5 and $10$") == r"cost \$5 and \$10\$"


@pytest.mark.parametrize(("value", "expected"), [
    ("=1+1", "'=1+1"), ("+cmd", "'+cmd"), ("-cmd", "'-cmd"), ("@A1", "'@A1"), ("\t=1", "'\t=1"), ("\r=1", "'\r=1"),
    ("-3", "-3"), ("+2.5", "+2.5"), ("-1e-3", "-1e-3"), ("-inf", "'-inf"), ("P01", "P01"), (-3, -3), (2.5, 2.5),
    ("- 3", "'- 3"),
])
def test_csv_cell_neutralises_formulas_but_keeps_numbers(value, expected):
    assert csv_cell(value) == expected


def test_chapter_csv_neutralises_text_but_numbers_stay_numbers(tmp_path):
    df = pd.DataFrame({"practice": ["=cmd|' /C calc'!A0", "Oak", "@x"], "difference": [-1.5, 2.0, -3.0],
                       "n": [10, 20, 30]}, index=pd.Index(["+a", "b", "c"], name="-label"))
    df["cat"] = pd.Categorical(["-x", "y", "y"])
    path = ChapterOutputs(tmp_path, "99_x").table(df, "t", index=True)
    back = pd.read_csv(path)
    assert back.columns.tolist() == ["'-label", "practice", "difference", "n", "cat"]
    assert back["practice"].tolist() == ["'=cmd|' /C calc'!A0", "Oak", "'@x"]
    assert back["'-label"].tolist() == ["'+a", "b", "c"]
    assert back["difference"].tolist() == [-1.5, 2.0, -3.0]  # still numbers
    assert back["cat"].tolist() == ["'-x", "y", "y"]
    assert df["practice"].iloc[0].startswith("=")  # the caller's frame is untouched
    assert csv_safe_frame(df).shape == df.shape


def test_figure_text_with_dollars_is_drawn_literally(tmp_path):
    fig, ax = plt.subplots()
    ax.set_title(r"Practice $\alpha$ and $unbalanced")  # invalid mathtext would raise at draw
    ax.bar(["$x$", "y"], [1, 2])
    path = ChapterOutputs(tmp_path, "99_x").figure(fig, "f")
    assert path.stat().st_size > 0
    assert ax.title.get_parse_math() is False
    plt.close(fig)


def test_index_escapes_study_text_everywhere():
    from backpain_analysis.report import ChapterResult, render_index

    evil = '<script>alert("x")</script>'
    results = [
        ChapterResult("01_a", f"Chapter {evil}", "chapter", "failed", error=f"KeyError: {evil}", evalue=evil,
                      key_findings=[{"name": "x", "label": evil, "value": 1.5, "ci_low": None, "ci_high": None,
                                     "unit": evil}]),
        ChapterResult("feedback/practice_X", "Feedback", "feedback", "ok", practice_id=evil,
                      html="feedback/practice_X/practice_X.html"),
    ]
    provenance = {key: evil for key in ("package", "version", "python", "kernel", "definition", "data_dir",
                                        "output_dir", "input_fingerprint", "started", "finished")}
    provenance |= {"input_files": {evil: evil}, "parameters": {"x": evil}, "duration_s": 1.0, "run_jobs": [],
                   "chapters": []}
    page = render_index(evil, results, provenance)
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert" in page
