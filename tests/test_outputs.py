from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from backpain_analysis.outputs import ChapterOutputs, atomic_write, read_key_findings


def test_chapter_outputs_layout(tmp_path):
    out = ChapterOutputs(tmp_path, "05_outcomes")
    out.table(pd.DataFrame({"estimate": [0.7], "ci_low": [0.1], "ci_high": [1.3]}), "primary")
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    out.figure(fig, "line")
    plt.close(fig)
    out.finding("rmdq_adjusted_difference", np.float64(0.71), ci_low=0.06, ci_high=1.36, label="RMDQ")
    out.finding("n", np.int64(5))
    out.finding("missing", float("nan"))
    out.write_findings()
    assert (tmp_path / "05_outcomes/tables/primary.csv").exists()
    assert (tmp_path / "05_outcomes/figures/line.png").read_bytes()[:4] == b"\x89PNG"
    findings = read_key_findings(tmp_path / "05_outcomes")
    assert findings[0] == {"name": "rmdq_adjusted_difference", "value": 0.71, "label": "RMDQ", "ci_low": 0.06,
                           "ci_high": 1.36, "unit": ""}
    assert findings[2]["value"] is None
    json.dumps(findings)  # plain JSON types only
    assert not list(tmp_path.rglob("*.partial"))


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "x.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(target) as fh:
        fh.write("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_key_figures_markdown_reads_as_a_list_and_escapes_labels():
    from backpain_analysis.outputs import KeyFinding, key_figures_markdown

    text = key_figures_markdown([
        KeyFinding("uptake", 48.449, "consultations <script>x</script>", 41.75, 55.04, "%"),
        KeyFinding("change", 1.25, "average improvement", None, None, "RMDQ points"),
        KeyFinding("hidden", float("nan"), "not shown"),
    ])
    assert text.splitlines() == [
        "- Consultations &lt;script&gt;x&lt;/script&gt;: **48.4%** (95% CI 41.8 to 55.0)",
        "- Average improvement: **1.2 RMDQ points**",
    ]
    assert key_figures_markdown([]) == "No figure is large enough to show."


def test_report_html_drops_outputs_of_tagged_cells(tmp_path):
    import nbformat

    from backpain_analysis.report import REPORT_HIDDEN_OUTPUT_TAG, _render_html

    nb = nbformat.v4.new_notebook()
    shown = nbformat.v4.new_code_cell("print('for readers')")
    shown.outputs = [nbformat.v4.new_output("stream", name="stdout", text="for readers\n")]
    hidden = nbformat.v4.new_code_cell("print('uptake_pct: 48.4')", metadata={"tags": [REPORT_HIDDEN_OUTPUT_TAG]})
    hidden.outputs = [nbformat.v4.new_output("stream", name="stdout", text="uptake_pct: 48.4\n")]
    nb.cells = [shown, hidden]
    nbformat.write(nb, tmp_path / "n.ipynb")
    _render_html(tmp_path / "n.ipynb", tmp_path / "n.html", "t")
    page = (tmp_path / "n.html").read_text()
    assert "for readers" in page and "uptake_pct" not in page
