"""`backpain disclosure-check` and the report's disclosure gate (issue 12, item 2)."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from backpain_analysis.cli import main
from backpain_analysis.disclosure import check_report, is_count_column


def chapter(tmp_path, name="06_x"):
    tables = tmp_path / name / "tables"
    tables.mkdir(parents=True)
    return tables


def test_count_columns_by_name_not_ages_scores_or_years():
    counts = ["n", "n_phase1", "events_unit", "n_responded", "count", "respondents", "followed_up_6m"]
    others = ["age", "age_mean", "score", "year", "price_year", "mean_unit", "pct", "n_items", "estimate", "df"]
    assert all(is_count_column(c) for c in counts)
    assert not any(is_count_column(c) for c in others)


def test_risk_group_and_received_pathway_columns_are_counts(tmp_path):
    """Chapter 03's risk-mix crosstab (low/medium/high per practice) and pathway table (received_*)."""
    t = chapter(tmp_path, "03_x")
    pd.DataFrame({"practice_id": ["P1", "P2", "all"], "low": [21, 30, 51], "medium": [24, 40, 64],
                  "high": [3, 20, 23], "n_total": [48, 90, 138], "pct_high": [6.25, 22.2, 16.7]}).to_csv(
        t / "risk_mix.csv", index=False)
    pd.DataFrame({"matched_pathway": ["advice", "physiotherapy"], "n": [120, 124],
                  "received_advice": [85, 2], "received_physiotherapy": [35, 122]}).to_csv(
        t / "pathways.csv", index=False)
    found = check_report(tmp_path)
    small = found[found["rule"] == "small count"]
    assert sorted(zip(small["source"].str.rsplit("/", n=1).str[-1], small["column"], small["value"], strict=True)) == [
        ("pathways.csv", "received_advice", 2.0), ("risk_mix.csv", "high", 3.0)]
    assert not is_count_column("ci_high") and not is_count_column("pct_high")


def test_clean_report_passes_and_non_counts_are_ignored(tmp_path):
    t = chapter(tmp_path)
    pd.DataFrame({"group": ["a", "b"], "n": [0, 25], "age": [3, 4], "score": [1, 2], "year": [2, 3]}).to_csv(
        t / "ok.csv", index=False)
    assert check_report(tmp_path).empty
    assert main(["disclosure-check", str(tmp_path)]) == 0


def test_a_leaked_small_count_fails(tmp_path, capsys):
    t = chapter(tmp_path)
    pd.DataFrame({"group": ["a", "b"], "n": [3, 25]}).to_csv(t / "leak.csv", index=False)
    found = check_report(tmp_path)
    assert found[["row", "column", "value", "rule"]].values.tolist() == [["a", "n", 3.0, "small count"]]
    assert main(["disclosure-check", str(tmp_path)]) == 2
    assert "06_x/tables/leak.csv: row a, column n: small count" in capsys.readouterr().out


def test_total_minus_visible_parts_reveals_a_hidden_cell(tmp_path):
    t = chapter(tmp_path)
    # the physiotherapists hidden, but all - gp gives them (the chapter 06 defect)
    pd.DataFrame({"profession": ["gp", "physio", "all"], "time_point": "before", "n_clinicians": [64, 34, 98],
                  "n_responded": ["58", "*", "90"]}).to_csv(t / "response.csv", index=False)
    found = check_report(tmp_path)
    assert found["rule"].tolist() == ["recoverable from total"]
    assert found["value"].tolist() == [32.0]  # 90 - 58, recovered by hand


def test_hidden_cells_adding_up_to_a_small_number_fail(tmp_path):
    t = chapter(tmp_path, "01_x")
    # the participant flow defect: three reasons "<5" while 35 - 9 - 14 - 8 = 4
    pd.DataFrame({"reason": ["moved", "unable", "declined", "no pain", "comorbid", "other", "all reasons"],
                  "n_phase1": ["9", "<5", "14", "8", "<5", "<5", "35"]}).to_csv(t / "reasons.csv", index=False)
    found = check_report(tmp_path)
    assert found["rule"].tolist() == ["small sum of hidden cells"] and found["value"].tolist() == [4.0]


def test_a_count_hidden_in_one_table_and_shown_in_another_fails(tmp_path):
    t = chapter(tmp_path)
    pd.DataFrame({"profession": ["gp", "physio"], "time_point": "before", "n_clinicians": [64, 34],
                  "n_responded": ["*", "*"]}).to_csv(t / "response.csv", index=False)
    pd.DataFrame({"measure": "pabs", "profession": ["gp", "physio"], "time_point": "before", "n": [58, 32],
                  "mean": [35.1, 30.2]}).to_csv(t / "scores.csv", index=False)
    found = check_report(tmp_path)
    assert set(found["rule"]) == {"shown elsewhere"}
    assert sorted(found["value"]) == [32.0, 58.0]
    # the same hidden cells in another chapter's table are not linked
    other = chapter(tmp_path, "07_y")
    (t / "scores.csv").rename(other / "scores.csv")
    assert check_report(tmp_path).empty


def test_small_complement_fails(tmp_path):
    t = chapter(tmp_path)
    pd.DataFrame({"group": ["a"], "n_unit": [30], "events_unit": [28]}).to_csv(t / "c.csv", index=False)
    assert check_report(tmp_path)["rule"].tolist() == ["small complement"]


def test_html_tables_and_key_findings_are_checked(tmp_path):
    t = chapter(tmp_path)
    table = pd.DataFrame({"n": [2, 30]}, index=pd.Index(["a", "b"], name="group")).to_html()
    (t.parent / "06_x.html").write_text(f"<html><body>{table}</body></html>")
    (t.parent / "key_findings.json").write_text(json.dumps([
        {"name": "respondents", "value": 3, "label": "x", "ci_low": None, "ci_high": None, "unit": "patients"},
        {"name": "rmdq", "value": 3, "label": "x", "ci_low": 1, "ci_high": 5, "unit": "points"}]))
    found = check_report(tmp_path)
    assert sorted(found["rule"]) == ["small count", "small key finding"]
    assert found.loc[found["rule"] == "small count", "source"].item() == "06_x/06_x.html#table 1"


def test_an_estimate_with_its_ci_is_not_a_count_but_n_with_percent_is(tmp_path):
    """A net monetary benefit of 3 GBP shown as "3 (-448 to 455)" is an estimate, not a count of 3;
    "3 (12.5)" and "3 (12.5%)" (tableone's n (%)) are counts."""
    t = chapter(tmp_path)
    pd.DataFrame({"n": [30]}).to_csv(t / "t.csv", index=False)  # a chapter is found by its tables
    estimates = pd.DataFrame({"measure": ["net benefit", "cost"], "Estimate (95% CI)": ["3 (-448 to 455)", "2 (1 to 4)"]})
    (t.parent / "06_x.html").write_text(f"<html><body>{estimates.to_html(index=False)}</body></html>")
    assert check_report(tmp_path).empty
    counts = pd.DataFrame({"group": ["a", "b", "c"], "Level": ["3 (12.5)", "3 (12.5%)", "30 (87.5)"]})
    (t.parent / "06_x.html").write_text(f"<html><body>{counts.to_html(index=False)}</body></html>")
    found = check_report(tmp_path)
    assert (found["rule"] == "small count").sum() == 2


# ------------------------------------------------------------------------------------------
# The real notebooks on a study built to provoke small cells, with hostile study text
# ------------------------------------------------------------------------------------------
HOSTILE_NAME = '<script>alert("x")</script> =cmd|\' /C calc\'!A0 $\\alpha$ {}&%_#'


@pytest.fixture(scope="module")
def provoked_report(tmp_path_factory):
    from backpain_analysis.report import run_report
    from backpain_analysis.synthetic import generate_study

    base = tmp_path_factory.mktemp("provoked")
    # 5 physiotherapists, a rare exclusion reason, a tiny practice among 3
    study = generate_study(n_invited=260, seed=5, n_physios=5, n_practices=3,
                           exclusion_reason_weights=[[8, 1, 11, 6, 1, 1], [23, 0, 19, 4, 0, 1]])
    study.write(base / "data")
    practices = pd.read_csv(base / "data" / "practices.csv", dtype=str)
    practices.loc[0, "practice_name"] = HOSTILE_NAME
    practices.to_csv(base / "data" / "practices.csv", index=False)
    pid = practices.loc[0, "practice_id"]
    run = run_report(base / "data", base / "out", chapters=["01_data_quality", "06_clinicians", "feedback"],
                     practices=[pid], jobs=2, progress=False)
    return {"out": base / "out", "run": run, "pid": pid}


def test_provoked_study_report_runs_and_passes_the_check(provoked_report):
    assert [r.name for r in provoked_report["run"].failed] == []
    assert check_report(provoked_report["out"]).empty


def test_hostile_practice_name_is_escaped_in_the_feedback_html(provoked_report):
    pid = provoked_report["pid"]
    html = (provoked_report["out"] / "feedback" / f"practice_{pid}" / f"practice_{pid}.html").read_text()
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert" in html
    heading = re.search(r"<h2[^>]*>(.*?)</h2>", html, re.S).group(1)
    assert "&lt;script&gt;" in heading and f"practice {pid}" in heading
    text = re.sub(r"<[^>]+>", "", heading)  # MathJax reads text, not attributes
    assert "\\$\\alpha\\$" in text and re.search(r"(?<!\\)\$", text) is None  # no "$" left for MathJax


def test_provoked_report_csvs_hold_no_formula(provoked_report):
    tables = list(provoked_report["out"].rglob("tables/*.csv"))
    assert tables
    for path in tables:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
        cells = [*table.columns, *table.to_numpy().ravel().tolist()]
        for cell in cells:
            if cell.startswith(("=", "+", "-", "@", "\t", "\r")):
                float(cell)  # only numbers may start so


# ------------------------------------------------------------------------------------------
# backpain report fails when its outputs leak
# ------------------------------------------------------------------------------------------
LEAKY = """\
from backpain_analysis.outputs import ChapterOutputs
import pandas as pd
out = ChapterOutputs(output_dir, "01_leak")
out.table(pd.DataFrame({"group": ["a", "b", "total"], "n": [N_A, 20, 23]}), "counts")
out.write_findings()
"""


@pytest.mark.parametrize(("n_a", "leaks"), [("3", True), ('"*"', True), ("0", False)])
def test_report_run_fails_on_a_leak_and_passes_otherwise(tmp_path, capsys, n_a, leaks):
    import nbformat

    from backpain_analysis.disclosure import DisclosureError
    from backpain_analysis.report import run_report

    data = tmp_path / "data"
    data.mkdir()
    (data / "practices.csv").write_text("practice_id,practice_name\nP01,North\n")
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('data_dir: str = "../data"  # study\noutput_dir: str = "../out"  # out\n'
                                       'seed: int = 1  # seed')
    params.metadata["tags"] = ["parameters"]
    # "total" 23 = 3 + 20: a 3 shown, or hidden as "*" but recoverable; 0 + 20 != 23 is just a table
    nb.cells = [params, nbformat.v4.new_code_cell(LEAKY.replace("N_A", n_a))]
    nb.metadata["kernelspec"] = {"name": "backpain", "display_name": "Python (backpain)", "language": "python"}
    (tmp_path / "nb").mkdir()
    nbformat.write(nb, tmp_path / "nb" / "leak.ipynb")
    definition = tmp_path / "nb" / "report.yaml"
    definition.write_text("title: Leak\nchapters:\n  - {name: 01_leak, notebook: leak.ipynb, title: Leak}\n")
    if leaks:
        with pytest.raises(DisclosureError, match="01_leak/tables/counts.csv") as err:
            run_report(data, tmp_path / "out", definition=definition, jobs=1, progress=False, validate=False)
        assert len(err.value.findings) == 1
        assert (tmp_path / "out" / "index.html").is_file()  # the index is written, the run fails after it
        assert main(["disclosure-check", str(tmp_path / "out")]) == 2
    else:
        run = run_report(data, tmp_path / "out", definition=definition, jobs=1, progress=False, validate=False)
        assert run.failed == []
        assert main(["disclosure-check", str(tmp_path / "out")]) == 0
