"""Plausibility rules for dates (issue 12, item 4): each rule's default action, its alternatives,
the exclusions, the flow, the analysis dataset and ``reconcile``, on small studies built to break one rule."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from studyfactory import build_study, write_study

from backpain_analysis import build_analysis_dataset, clean_study, load_dictionary, load_study, reconcile
from backpain_analysis.cleaning import CleaningError
from backpain_analysis.dataset import flow_counts
from backpain_analysis.scoring import score_rmdq

ROOT = Path(__file__).resolve().parents[1]
RMDQ = [f"rmdq_{i}" for i in range(1, 25)]
#: recruitment windows that hold every consultation of build_study()
WINDOWS = {1: ("2007-03-01", "2007-06-30"), 3: ("2008-09-01", "2009-02-28")}


def run(tables: dict[str, pd.DataFrame], **options):
    study = SimpleNamespace(tables=tables)
    clean = clean_study(study, **options)
    data = build_analysis_dataset(clean)
    rec = reconcile(study, clean, data)
    assert rec["n_unaccounted"].sum() == 0 and rec["n_double_counted"].sum() == 0
    return clean, data.set_index("patient_id")


def flow(clean) -> pd.DataFrame:
    return flow_counts(clean).set_index("item")


def followup_row(tables, pid: str, months: int) -> int:
    fu = tables["followups"]
    return int(np.flatnonzero((fu["patient_id"] == pid) & (fu["time_point"] == months))[0])


def test_the_dictionary_documents_every_rule_with_a_default_action():
    dd = load_dictionary()
    rules = dd.plausibility["rules"]
    assert {name: r["action"] for name, r in rules.items()} == {
        "date_after_export": "error", "baseline_before_consultation": "flag", "followup_before_baseline": "exclude",
        "followup_outside_window": "flag", "consultation_outside_recruitment": "exclude"}
    text = dd.to_markdown()
    assert "## Plausibility rules" in text
    assert all(f"`{name}`" in text for name in rules)


def test_a_valid_study_triggers_no_rule():
    clean, data = run(build_study(), export_date="2010-01-01", recruitment_windows=WINDOWS)
    assert clean.flags.empty
    assert set(clean.exclusions["reason"]) <= {"non-respondent", "excluded at invitation", "patient not analysed",
                                               "no record-review consent"}
    assert len(data) == 10


# --- date after the export date ------------------------------------------------------------------------------


def future_baseline():
    tables = build_study()
    tables["patients"].loc[1, "baseline_date"] = "2080-03-31"  # PT002, a typing error for 2008
    return tables


def test_baseline_in_the_future_is_an_error_by_default():
    with pytest.raises(CleaningError) as info:
        clean_study(SimpleNamespace(tables=future_baseline()))
    text = str(info.value)
    assert "table 'patients', column 'baseline_date': 1 row(s) fail plausibility rule 'date_after_export'" in text
    assert "PT002: baseline_date 2080-03-31" in text


def test_dates_are_compared_with_the_export_date_given():
    # every follow-up of build_study() is returned by 2009-08-18; an export on 2009-06-30 cannot hold them
    with pytest.raises(CleaningError, match="return_date after the export date 2009-06-30"):
        clean_study(SimpleNamespace(tables=build_study()), export_date="2009-06-30")
    clean_study(SimpleNamespace(tables=build_study()), export_date="2009-12-31")


def test_future_baseline_excluded_when_asked():
    clean, data = run(future_baseline(), plausibility={"date_after_export": "exclude"})
    assert "PT002" not in data.index and len(data) == 9
    ex = clean.exclusions.set_index(["table", "row"])
    assert ex.loc[("patients", 1), "reason"].startswith("baseline_date after the export date")
    assert ex.loc[("patients", 1), "detail"] == "baseline_date 2080-03-31"
    # its follow-ups, record and physio episode go with it, each excluded once
    assert (clean.exclusions.loc[clean.exclusions["row_key"].str.startswith("PT002")
                                 & (clean.exclusions["table"] != "patients"), "reason"]
            == "patient not analysed").all()
    f = flow(clean)
    assert f.loc["respondents", "n_phase1"] == 5  # PT002 did respond ...
    assert f.loc["analysed", "n_phase1"] == 4  # ... but is not analysed
    assert f.loc[[i for i in f.index if i.startswith("respondents not analysed: baseline_date after")][0],
                 "n_phase1"] == 1
    assert f.loc["followed up at 6 months", "percent_of"] == "analysed"


def test_future_baseline_flagged_when_asked():
    clean, data = run(future_baseline(), plausibility={"date_after_export": "flag"})
    assert "PT002" in data.index
    assert clean.flags[["table", "row", "row_key", "rule"]].values.tolist() == [
        ["patients", 1, "PT002", "date_after_export"]]


# --- follow-ups before the baseline questionnaire ------------------------------------------------------------


def early_followup():
    tables = build_study()
    row = followup_row(tables, "PT001", 6)
    tables["followups"].loc[row, "return_date"] = "2007-02-05"  # 40 days before PT001's baseline (2007-03-17)
    return tables, row


def test_followup_before_baseline_is_excluded_and_not_analysed():
    tables, row = early_followup()
    clean, data = run(tables)
    _, valid = run(build_study())
    ex = clean.exclusions.set_index(["table", "row"])
    assert ex.loc[("followups", row), "reason"] == "follow-up returned before the baseline questionnaire"
    assert ex.loc[("followups", row), "detail"] == "returned 2007-02-05, baseline 2007-03-17"
    assert np.isnan(data.loc["PT001", "rmdq_6m"]) and np.isnan(data.loc["PT001", "rmdq_change_6m"])
    assert data.loc["PT001", "followed_up_6m"] == 0 and np.isnan(data.loc["PT001", "followup_6m_in_window"])
    assert not np.isnan(valid.loc["PT001", "rmdq_6m"])
    # other patients unchanged; the flow counts one follow-up fewer
    pd.testing.assert_frame_equal(data.drop(index="PT001"), valid.drop(index="PT001"))
    assert flow(clean).loc["followed up at 6 months", "n_phase1"] == flow(run(build_study())[0]).loc[
        "followed up at 6 months", "n_phase1"] - 1


def test_followup_before_baseline_can_be_an_error():
    tables, _ = early_followup()
    with pytest.raises(CleaningError, match="'followup_before_baseline'.*PT001|6: returned 2007-02-05"):
        clean_study(SimpleNamespace(tables=tables), plausibility={"followup_before_baseline": "error"})


# --- follow-ups outside their window ------------------------------------------------------------------------


def late_followup():
    tables = build_study()
    row = followup_row(tables, "PT005", 6)
    tables["followups"].loc[row, "return_date"] = "2008-03-01"  # day 286 after baseline 2007-05-20
    return tables, row


def test_followup_outside_window_is_flagged_and_analysed_by_default():
    tables, row = late_followup()
    clean, data = run(tables)
    expected = score_rmdq(tables["followups"].loc[[row], RMDQ]).iloc[0]  # scored independently from the raw items
    assert data.loc["PT005", "rmdq_6m"] == pytest.approx(expected)
    assert data.loc["PT005", "followed_up_6m"] == 1 and data.loc["PT005", "followup_6m_in_window"] == 0
    flag = clean.flags.set_index(["table", "row"]).loc[("followups", row)]
    assert flag["rule"] == "followup_outside_window"
    assert flag["detail"] == "6 months, returned on day 286 (window 183 +/- 56)"


def test_followup_outside_window_set_missing_when_excluded():
    tables, row = late_followup()
    clean, data = run(tables, plausibility={"followup_outside_window": "exclude"})
    assert np.isnan(data.loc["PT005", "rmdq_6m"]) and data.loc["PT005", "followed_up_6m"] == 0
    assert clean.exclusions.set_index(["table", "row"]).loc[("followups", row), "reason"] == \
        "follow-up returned outside its window"
    assert clean.flags.empty


# --- consultations outside the recruitment window ------------------------------------------------------------


def test_consultation_outside_recruitment_excludes_patient_and_consultation():
    tables = build_study()
    tables["patients"].loc[1, "consultation_date"] = "2006-03-19"  # PT002, phase 1
    tables["consultations"].loc[1, "consultation_date"] = "2006-03-19"  # C002, its consultation
    clean, data = run(tables, recruitment_windows=WINDOWS, export_date="2010-01-01")
    assert "PT002" not in data.index
    ex = clean.exclusions.set_index(["table", "row"])
    reason = "index consultation outside the recruitment window of its phase"
    assert ex.loc[("patients", 1), "reason"] == reason
    assert ex.loc[("patients", 1), "detail"] == "phase 1, 2006-03-19 (window 2007-03-01 to 2007-06-30)"
    # the uptake denominator loses the consultation (dropped from the clean table)
    assert ex.loc[("consultations", 1), ["stage", "reason"]].tolist() == ["cleaning", reason]
    assert "C002" not in set(clean.consultations["consultation_id"])
    assert flow(clean).loc[f"respondents not analysed: {reason}", "n_phase1"] == 1


def test_recruitment_windows_come_from_truth_json_of_a_synthetic_study(tmp_path):
    truth = {"parameters": {"phase1_start": "2007-03-01", "phase1_months": 4, "phase2_months": 14,
                            "phase3_months": 6}}
    write_study(tmp_path, truth=truth)
    clean = clean_study(load_study(tmp_path), export_date="2010-01-01")
    assert clean.options["recruitment_windows_from"] == "truth.json"
    assert {k: (str(a.date()), str(b.date())) for k, (a, b) in clean.options["recruitment_windows"].items()} == {
        1: ("2007-03-01", "2007-06-30"), 3: ("2008-09-01", "2009-02-28")}
    # without windows the rule is not applied, and that is said
    clean = clean_study(SimpleNamespace(tables=build_study()), export_date="2010-01-01")
    assert clean.options["recruitment_windows"] is None
    assert any("consultation dates were not checked" in n for n in clean.notes)


def test_bundled_synthetic_study_has_no_implausible_date():
    study = load_study(ROOT / "data" / "synthetic")
    clean = clean_study(study)
    assert clean.options["recruitment_windows_from"] == "truth.json"
    assert set(clean.exclusions["reason"]) == {"non-respondent", "excluded at invitation"}
    # only 2-month follow-ups returned a little outside their window, flagged and analysed
    assert set(clean.flags["rule"]) == {"followup_outside_window"}


# --- options ----------------------------------------------------------------------------------------------


def test_every_error_rule_is_reported_at_once():
    tables, _ = early_followup()
    tables["patients"].loc[1, "baseline_date"] = "2080-03-31"
    with pytest.raises(CleaningError) as info:
        clean_study(SimpleNamespace(tables=tables), plausibility={"followup_before_baseline": "error"})
    assert "'date_after_export'" in str(info.value) and "'followup_before_baseline'" in str(info.value)


@pytest.mark.parametrize(("option", "message"), [
    ({"plausibility": {"no_such_rule": "flag"}}, "unknown rule 'no_such_rule'"),
    ({"plausibility": {"date_after_export": "drop"}}, "action must be one of"),
    ({"export_date": "yesterday"}, "export_date must be a date"),
    ({"recruitment_windows": {1: ("2008-06-30", "2008-01-01")}}, "before the first"),
])
def test_invalid_options_are_clear_errors(option, message):
    with pytest.raises(CleaningError, match=message):
        clean_study(SimpleNamespace(tables=build_study()), **option)


def test_cli_dataset_exits_2_on_an_impossible_date(tmp_path):
    write_study(tmp_path / "study", future_baseline())
    result = subprocess.run([sys.executable, "-m", "backpain_analysis", "dataset", "--data", str(tmp_path / "study"),
                             "--out", str(tmp_path / "out.csv")], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "date_after_export" in result.stderr
    assert not (tmp_path / "out.csv").exists()


def test_an_impossible_early_duplicate_does_not_displace_a_valid_followup():
    tables = build_study()
    fu = tables["followups"]
    row = followup_row(tables, "PT001", 6)
    early = fu.loc[[row]].assign(return_date="2007-02-05", rmdq_1=1 - fu.loc[row, "rmdq_1"])
    tables["followups"] = pd.concat([fu, early], ignore_index=True)
    clean, data = run(tables)
    _, valid = run(build_study())
    assert data.loc["PT001", "rmdq_6m"] == valid.loc["PT001", "rmdq_6m"]  # the valid copy is analysed
    ex = clean.exclusions.set_index(["table", "row"]).loc[("followups", len(fu))]
    assert ex["reason"] == "duplicate key: a copy returned after the baseline questionnaire was kept"
    assert ex["detail"] == f"kept input row {row} (this copy was returned before the baseline questionnaire)"
