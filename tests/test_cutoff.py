"""Data cut-off (issue 16): an interim analysis equals the analysis of an export truncated by hand.

The hand truncation below works on the CSV text with the csv module and ISO date strings (which
sort as text), independently of backpain_analysis.cutoff.
"""

from __future__ import annotations

import csv
import shutil
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backpain_analysis.cutoff import CutoffError, due_for_followup, followup_due, parse_until, truncate_tables
from backpain_analysis.dataset import ANALYSIS_COLUMNS, flow_counts, load_analysis_dataset

DATA = Path(__file__).resolve().parents[1] / "data" / "synthetic"
DATED = {"consultations.csv": "consultation_date", "patients.csv": "consultation_date",
         "followups.csv": "return_date", "records.csv": "review_date", "physio.csv": "start_date",
         "clinician_surveys.csv": "survey_date", "withdrawals.csv": "recorded_date"}
KEEP_AT_INVITATION = {"patient_id", "practice_id", "gp_id", "phase", "consultation_date", "age", "sex"}


def _halfway_phase3(folder: Path) -> str:
    """The date by which half of the phase 3 index consultations had happened (computed from the CSV)."""
    with open(folder / "consultations.csv", newline="") as fh:
        days = sorted(r["consultation_date"] for r in csv.DictReader(fh) if r["phase"] == "3")
    return days[len(days) // 2]


def truncate_by_hand(src: Path, dst: Path, until: str) -> None:
    dst.mkdir()
    for path in src.iterdir():
        if path.suffix != ".csv":
            shutil.copy(path, dst / path.name)
            continue
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            fields, rows = reader.fieldnames, list(reader)
        column = DATED.get(path.name)
        if column:
            rows = [r for r in rows if r[column] == "" or r[column] <= until]
        if path.name == "patients.csv":
            for r in rows:
                if r["baseline_date"] and r["baseline_date"] > until:  # replied after the cut-off
                    for k in r:
                        if k not in KEEP_AT_INVITATION:
                            r[k] = ""
                    r["invitation_outcome"] = "non_respondent"
        with open(dst / path.name, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)


@pytest.fixture(scope="module")
def interim(tmp_path_factory):
    until = _halfway_phase3(DATA)
    hand = tmp_path_factory.mktemp("cutoff") / "export"
    truncate_by_hand(DATA, hand, until)
    return until, load_analysis_dataset(DATA, until=until), load_analysis_dataset(hand)


def test_interim_dataset_equals_export_truncated_by_hand(interim):
    until, (clean_cut, cut), (clean_hand, hand) = interim
    assert 0 < (cut["phase"] == 3).sum() < (load_analysis_dataset(DATA)[1]["phase"] == 3).sum()
    pd.testing.assert_frame_equal(cut[list(ANALYSIS_COLUMNS)], hand[list(ANALYSIS_COLUMNS)])
    for name in ("consultations", "clinician_surveys", "records", "physio"):
        assert len(clean_cut.tables[name]) == len(clean_hand.tables[name]), name


def test_interim_flow_equals_hand_truncated_flow_plus_not_yet_due(interim):
    until, (clean_cut, _), (clean_hand, _) = interim
    flow_cut = flow_counts(clean_cut).set_index("item")
    flow_hand = flow_counts(clean_hand).set_index("item")
    not_due = [i for i in flow_cut.index if i.startswith("not yet due")]
    assert len(not_due) == 2
    # the hand-truncated export knows no cut-off: its patients not yet due count as not followed up, reason
    # not recorded (a reason recorded after the cut-off is not in the export)
    lost = [i for i in flow_hand.index if i.startswith("not followed up")]
    common = flow_cut.drop(index=not_due + [i for i in lost if i in flow_cut.index])
    pd.testing.assert_frame_equal(common[["n_phase1", "n_phase3"]], flow_hand.drop(index=lost)[["n_phase1", "n_phase3"]])
    cols = ["n_phase1", "n_phase3"]
    for item in ("not followed up at 6 months", "not followed up at 6 months: reason not recorded"):
        cut_n = flow_cut.reindex([item])[cols].fillna(0).to_numpy()[0]
        assert (flow_hand.loc[item, cols].to_numpy() == cut_n + flow_cut.loc[not_due[1], cols].to_numpy()).all(), item
    for item in lost:
        if "reason not recorded" not in item and item != "not followed up at 6 months":
            assert (flow_hand.loc[item, cols].to_numpy() == flow_cut.loc[item, cols].to_numpy()).all(), item
    # the follow-up rate at the cut-off is of those due, not of everyone
    due6 = flow_cut.loc["analysed" if "analysed" in flow_cut.index else "respondents", "n_phase1"] \
        - flow_cut.loc[not_due[1], "n_phase1"]
    assert flow_cut.loc["followed up at 6 months", "pct_phase1"] == pytest.approx(
        100 * flow_cut.loc["followed up at 6 months", "n_phase1"] / due6)


def test_not_yet_due_by_independent_date_arithmetic(interim):
    until, (clean_cut, cut), _ = interim
    day = date.fromisoformat(until)
    with open(DATA / "patients.csv", newline="") as fh:
        ref = {r["patient_id"]: (r["baseline_date"] or r["consultation_date"]) for r in csv.DictReader(fh)}
    expected = []
    for pid, followed in zip(cut["patient_id"], cut["followed_up_6m"], strict=True):
        closes = date.fromisoformat(ref[pid]) + timedelta(days=183 + 56)
        expected.append(1.0 if followed == 1 or closes <= day else 0.0)
    np.testing.assert_array_equal(cut["followup_6m_due"].to_numpy(), np.array(expected))
    # nobody counted lost to follow-up while their window is open
    open_window = cut["followup_6m_due"] == 0
    assert open_window.any() and (cut.loc[open_window, "followed_up_6m"] == 0).all()


def test_outcome_chapters_keep_only_patients_due(interim):
    """Chapters 05 and 07 analyse the patients due at 6 months: those whose window closed by the
    cut-off by plain date arithmetic, or who answered already; the final dataset passes unchanged."""
    until, (_, cut), _ = interim
    day = date.fromisoformat(until)
    with open(DATA / "patients.csv", newline="") as fh:
        ref = {r["patient_id"]: (r["baseline_date"] or r["consultation_date"]) for r in csv.DictReader(fh)}
    kept = set(due_for_followup(cut)["patient_id"])
    expected = {pid for pid, followed in zip(cut["patient_id"], cut["followed_up_6m"], strict=True)
                if followed == 1 or date.fromisoformat(ref[pid]) + timedelta(days=183 + 56) <= day}
    assert kept == expected and 0 < len(kept) < len(cut)
    _, final = load_analysis_dataset(DATA)
    assert due_for_followup(final) is final


def test_cutoff_after_last_date_changes_nothing():
    _, full = load_analysis_dataset(DATA)
    _, late = load_analysis_dataset(DATA, until="2030-01-01")
    pd.testing.assert_frame_equal(full, late[list(ANALYSIS_COLUMNS)])
    assert (late["followup_6m_due"] == 1).all()


def test_environment_variable_sets_the_cutoff(monkeypatch, interim):
    until, (_, cut), _ = interim
    monkeypatch.setenv("BACKPAIN_DATA_UNTIL", until)
    _, from_env = load_analysis_dataset(DATA)
    pd.testing.assert_frame_equal(cut, from_env)


def test_truncate_tables_keeps_the_cutoff_day_and_unreadable_dates():
    t = {"records": pd.DataFrame({"patient_id": ["A", "B", "C", "D"],
                                  "review_date": ["2009-07-01", "2009-07-02", "", "01/07/2009"]})}
    assert truncate_tables(t, "2009-07-01")["records"]["patient_id"].tolist() == ["A", "C", "D"]
    due = followup_due(pd.Series(pd.to_datetime(["2009-01-01", "2009-01-02"])), "2009-08-28")
    assert due.tolist() == [1.0, 0.0]  # 2009-01-01 + 239 days = 2009-08-28


def test_bad_cutoff_is_a_clear_error():
    with pytest.raises(CutoffError, match="YYYY-MM-DD"):
        parse_until("July")


def test_interim_report_equals_report_on_hand_truncated_export(interim, tmp_path):
    """run_report(until=...) gives the key findings of a run on the export truncated by hand."""
    from backpain_analysis.report import run_report

    until = interim[0]
    hand = tmp_path / "export"
    truncate_by_hand(DATA, hand, until)
    runs = {}
    for name, data, cut in (("interim", DATA, until), ("hand", hand, None)):
        runs[name] = run_report(data, tmp_path / name, chapters=["feedback"], practices=["P01"], jobs=1,
                                progress=False, until=cut)
        assert not runs[name].failed, runs[name].failure_summary()
    interim_run, hand_run = runs["interim"], runs["hand"]
    mine, theirs = ({r.name: r for r in run.results}["feedback/practice_P01"] for run in (interim_run, hand_run))
    assert mine.key_findings and mine.key_findings == theirs.key_findings
    assert interim_run.provenance["until"] == until and hand_run.provenance["until"] is None
    page = (interim_run.output_dir / mine.html).read_text()
    assert f"Interim report: data up to {until}" in page
    assert f"data up to {until}" in interim_run.index_path.read_text()
