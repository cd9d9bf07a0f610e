"""Feedback rounds (issue 16): counts per round against an interim dataset, suppression
consistency across GP / practice / all views, escaping of export text, the disclosure checker."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backpain_analysis.dataset import load_analysis_dataset
from backpain_analysis.disclosure import check_report
from backpain_analysis.feedback import (
    prepare_feedback_study,
    round_counts,
    round_dates,
    run_feedback,
    suppress_round_counts,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "synthetic"
HOSTILE = '<img src=x onerror=alert(1)> =HYPERLINK("x") & $x$'


@pytest.fixture(scope="module")
def study():
    return prepare_feedback_study(DATA)


@pytest.fixture(scope="module")
def counts(study):
    days = round_dates("quarterly", study.first_date, study.last_date)
    return days, round_counts(study, days, per_gp=True)


def test_round_counts_equal_an_interim_dataset_at_the_round_date(study, counts):
    """A round is a date mask over one cleaned study; it must equal truncating and rebuilding."""
    days, c = counts
    day = days[2].date().isoformat()
    clean, data = load_analysis_dataset(DATA, until=day)
    cons = clean.tables["consultations"]
    cons = cons[pd.to_numeric(cons["phase"]) == 3]
    d3 = data[data["phase"] == 3]
    at = c[(c["round"] == day) & (c["level"] == "practice")].set_index(["unit", "measure"])
    for pid in study.practices["practice_id"]:
        mine = cons[cons["practice_id"] == pid]
        assert at.loc[(pid, "uptake"), "n"] == len(mine)
        assert at.loc[(pid, "uptake"), "events"] == pd.to_numeric(mine["sbst_completed"]).fillna(0).sum()
        p = d3[d3["practice_id"] == pid]
        ref = p["matched_referral"].dropna()
        assert (at.loc[(pid, "matched_referral"), "n"], at.loc[(pid, "matched_referral"), "events"]) == (
            len(ref), ref.sum())
        for g in ("low", "medium", "high"):
            assert at.loc[(pid, f"risk_{g}"), "events"] == (p["risk_group"] == g).sum()
        mcid = p["rmdq_mcid_6m"].dropna()
        assert (at.loc[(pid, "rmdq_30pct_6m"), "n"], at.loc[(pid, "rmdq_30pct_6m"), "events"]) == (
            len(mcid), mcid.sum())
        change = p["rmdq_change_6m"].dropna()
        if len(change):
            assert at.loc[(pid, "rmdq_change_6m"), "mean"] == pytest.approx(change.mean())
    # the all-practices row is the sum over practices (a slow reference loop)
    all_rows = c[(c["round"] == day) & (c["level"] == "all")].set_index("measure")
    summed = at.groupby(level="measure")[["n", "events"]].sum()
    np.testing.assert_array_equal(all_rows.loc[summed.index, "n"], summed["n"])


def test_gp_counts_add_up_to_practice_counts(counts):
    _, c = counts
    c = c[c["measure"] != "rmdq_change_6m"]  # a mean: no events
    gp = c[c["level"] == "gp"].groupby(["round", "measure", "practice_id"])[["n", "events"]].sum()
    pr = c[c["level"] == "practice"].set_index(["round", "measure", "practice_id"])[["n", "events"]]
    pd.testing.assert_frame_equal(gp.sort_index(), pr.loc[gp.index].sort_index(), check_dtype=False)


def test_suppression_hides_small_counts_and_complements(counts):
    _, c = counts
    s = suppress_round_counts(c)
    n, e = s["n_shown"], s["events_shown"]
    assert not ((n >= 1) & (n < 5)).any()
    assert not ((e >= 1) & (e < 5)).any()
    complement = n - e
    assert not ((complement >= 1) & (complement < 5)).any()


def test_a_hidden_gp_count_cannot_be_recovered_from_the_practice_total(counts):
    """Independent check by subtraction: wherever a parent total (practice, or all practices) is
    shown, parent minus the shown children is 0 or at least 5, and never one hidden child alone."""
    _, c = counts
    s = suppress_round_counts(c)
    for level, parent_level, keys in (("gp", "practice", ["round", "measure", "practice_id"]),
                                      ("practice", "all", ["round", "measure"])):
        children = s[(s["level"] == level) & (s["measure"] != "rmdq_change_6m")]
        parents = s[s["level"] == parent_level].set_index(keys)
        for col in ("n", "events"):
            for key, grp in children.groupby(keys):
                total = parents.loc[key, f"{col}_shown"]
                if np.isnan(total):
                    continue
                hidden = grp[f"{col}_shown"].isna()
                rest = total - grp[f"{col}_shown"].sum()
                assert not 1 <= rest < 5, (level, col, key, rest)
                assert hidden.sum() != 1, (level, col, key)


def test_suppression_by_hand():
    c = pd.DataFrame({"round": "r", "level": ["gp", "gp", "gp", "practice", "all"],
                      "unit": ["G1", "G2", "G3", "A", "all"], "practice_id": ["A", "A", "A", "A", "all"],
                      "measure": "uptake", "n": [3, 30, 40, 73, 73], "events": [0.0, 15, 20, 35, 35],
                      "mean": np.nan, "estimate": np.nan})
    s = suppress_round_counts(c).set_index("unit")
    # G1's 3 consultations hidden; G2 (the smallest other) hidden too, so 73 - 40 does not give 3
    assert np.isnan(s.loc["G1", "n_shown"]) and np.isnan(s.loc["G2", "n_shown"])
    assert s.loc["G3", "n_shown"] == 40 and s.loc["A", "n_shown"] == 73


def test_round_dates():
    assert [d.date().isoformat() for d in round_dates("2009-05-01 2009-02-01", None, None)] == [
        "2009-02-01", "2009-05-01"]
    assert len(round_dates("monthly", "2009-01-15", "2009-04-10")) == 4


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("feedback")
    data = root / "export"
    shutil.copytree(DATA, data)
    practices = pd.read_csv(data / "practices.csv", dtype=str)
    practices.loc[0, "practice_name"] = HOSTILE
    practices.to_csv(data / "practices.csv", index=False)
    return run_feedback(data, root / "out", per_gp=True, last_round_only=True, definition=False), practices


def test_feedback_output_passes_the_disclosure_checker(hostile_run):
    run, _ = hostile_run
    assert run.pages
    findings = check_report(run.output_dir)
    assert findings.empty, findings.head(10).to_string()


def test_export_text_is_escaped_and_wording_is_right(hostile_run):
    run, practices = hostile_run
    first = practices.loc[0, "practice_id"]
    page = next(p for p in run.pages if p.name == f"practice_{first}.html").read_text()
    assert "<img" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "&amp;amp;" not in page  # escaped once, not twice
    assert "at least 30% lower" in page and "much improved" not in page.lower()
    assert "Unnamed" not in page and "data up to" in page
    table = pd.read_csv(run.pages[0].parent / "tables" / "feedback.csv")
    assert list(table.columns)[0] == "measure" and not any(str(c).startswith("Unnamed") for c in table.columns)
    assert (run.output_dir / "run.json").is_file()
    gp_pages = [p for p in run.pages if p.name.startswith("gp_")]
    assert len(gp_pages) == len(prepare_feedback_study(DATA).gps)


def test_cli_feedback(tmp_path):
    from backpain_analysis.cli import main

    rc = main(["feedback", "--data", str(DATA), "--out", str(tmp_path / "fb"), "--rounds", "2009-06-30",
               "2009-12-31", "--practices", "P01"])
    assert rc == 0
    assert sorted(p.name for p in (tmp_path / "fb").iterdir()) == [
        "index.html", "round_2009-06-30", "round_2009-12-31", "run.json"]
