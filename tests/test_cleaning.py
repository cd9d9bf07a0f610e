"""clean_study: one small messy input per rule, the audit trail, and untouched inputs."""

from __future__ import annotations

import copy
import time
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from studyfactory import build_study

import backpain_analysis as bp
from backpain_analysis.cleaning import CleaningError, clean_study


def study_of(tables) -> SimpleNamespace:
    return SimpleNamespace(tables=tables)


def as_object(df: pd.DataFrame, columns) -> pd.DataFrame:
    return df.astype(dict.fromkeys(columns, object))


def log_of(clean, table, column) -> pd.DataFrame:
    log = clean.cleaning_log
    return log[(log["table"] == table) & (log["column"] == column)].reset_index(drop=True)


def test_text_answers_mapped_to_codes_and_logged():
    t = build_study()
    p = as_object(t["patients"], ["sbst_1", "sbst_2", "sbst_9", "leg_pain", "sex"])
    p.loc[0, "sbst_1"] = "Agree"
    p.loc[1, "sbst_1"] = " agree"
    p.loc[2, "sbst_2"] = "Yes"
    p.loc[4, "sbst_2"] = "disagree"
    p.loc[0, "sbst_9"] = "Very much"
    p.loc[1, "sbst_9"] = "VERY MUCH"
    p.loc[2, "sbst_9"] = "extremely bothersome"
    p.loc[4, "leg_pain"] = "no"
    p.loc[5, "sex"] = " Female"
    t["patients"] = p
    clean = clean_study(study_of(t))
    cp = clean.patients
    assert cp.loc[[0, 1], "sbst_1"].tolist() == [1, 1]
    assert cp.loc[[2, 4], "sbst_2"].tolist() == [1, 0]
    assert cp.loc[[0, 1, 2], "sbst_9"].tolist() == [3, 3, 4]
    assert cp.loc[4, "leg_pain"] == 0
    assert cp.loc[5, "sex"] == "female"
    log = log_of(clean, "patients", "sbst_9")
    assert log[["row", "row_key", "old_value", "new_value", "rule"]].values.tolist() == [
        [0, "PT001", "Very much", "3", "text_to_code"],
        [1, "PT002", "VERY MUCH", "3", "text_to_code"],
        [2, "PT003", "extremely bothersome", "4", "text_to_code"],
    ]
    assert log_of(clean, "patients", "sex")[["old_value", "new_value"]].values.tolist() == [[" Female", "female"]]
    # codes written as text or numbers are type conversions, not logged changes
    assert log_of(clean, "patients", "sbst_3").empty


def test_missing_codes_respect_each_columns_valid_range():
    t = build_study()
    p = as_object(t["patients"], ["sbst_9", "leg_pain", "pain_nrs", "employed", "age"])
    p.loc[0, "sbst_9"] = 9
    p.loc[1, "leg_pain"] = "99"
    p.loc[2, "employed"] = -1
    p.loc[5, "employed"] = "NA"
    p.loc[6, "employed"] = "  "
    p.loc[0, "pain_nrs"] = 9  # 9 is a valid pain score, not a missing code
    p.loc[7, "age"] = 99  # 99 is a valid age
    t["patients"] = p
    f = as_object(t["followups"], ["days_off_work"])
    f.loc[1, "days_off_work"] = 99  # valid: 0-366 days
    f.loc[3, "days_off_work"] = 999
    t["followups"] = f
    clean = clean_study(study_of(t))
    cp, cf = clean.patients, clean.followups
    assert pd.isna(cp.loc[0, "sbst_9"]) and pd.isna(cp.loc[1, "leg_pain"])
    assert cp.loc[[2, 5, 6], "employed"].isna().all()
    assert cp.loc[0, "pain_nrs"] == 9 and cp.loc[7, "age"] == 99
    assert cf.loc[1, "days_off_work"] == 99 and pd.isna(cf.loc[3, "days_off_work"])
    logged = clean.cleaning_log
    missing = logged[logged["rule"] == "missing_code"]
    assert sorted(zip(missing["column"], missing["old_value"], strict=True)) == [
        ("days_off_work", "999"), ("employed", "-1"), ("leg_pain", "99"), ("sbst_9", "9")]
    summary = clean.summary.set_index(["table", "column", "rule"])["n_cells"]
    assert summary[("patients", "employed", "missing_text")] == 1
    assert summary[("patients", "employed", "blank")] == 1


def test_dates_in_several_formats_read_day_first():
    t = build_study()
    p = t["patients"].copy()
    p.loc[0, "consultation_date"] = "05/03/2007"
    p.loc[1, "consultation_date"] = "19.03.2007"
    p.loc[2, "consultation_date"] = "2 Apr 2007"
    p.loc[3, "consultation_date"] = "16-04-07"
    t["patients"] = p
    clean = clean_study(study_of(t))
    dates = clean.patients["consultation_date"]
    assert str(dates.dtype) == "datetime64[ns]"
    assert dates.iloc[:4].dt.strftime("%Y-%m-%d").tolist() == ["2007-03-05", "2007-03-19", "2007-04-02", "2007-04-16"]
    log = log_of(clean, "patients", "consultation_date")
    assert log["rule"].eq("date_format").all() and len(log) == 4
    assert log.loc[0, "new_value"] == "2007-03-05"


def test_types_after_cleaning():
    clean = clean_study(study_of(build_study()))
    p = clean.patients
    assert str(p["sbst_1"].dtype) == "Int64" and str(p["age"].dtype) == "Int64" and str(p["phase"].dtype) == "Int64"
    assert str(clean.clinicians["training_days"].dtype) == "float64"
    assert str(p["baseline_date"].dtype) == "datetime64[ns]"
    assert isinstance(p["sex"].dtype, pd.CategoricalDtype) and not p["sex"].cat.ordered
    assert p["episode_duration"].cat.ordered
    assert p["episode_duration"].cat.categories.tolist() == ["lt_1m", "1_3m", "3_6m", "6m_3y", "gt_3y"]
    assert pd.api.types.is_string_dtype(p["patient_id"].dtype)
    assert clean.cleaning_log.empty and clean.cleaning_log.columns.tolist() == list(bp.cleaning.LOG_COLUMNS)


def test_followups_outside_window_are_flagged_not_dropped():
    t = build_study()
    f = t["followups"].copy()
    baseline = t["patients"].set_index("patient_id")["baseline_date"]
    late = pd.Timestamp(baseline["PT001"]) + pd.Timedelta(days=100)
    f.loc[0, "return_date"] = late.strftime("%Y-%m-%d")  # PT001 at 2 months, returned at day 100
    f.loc[1, "return_date"] = None  # PT001 at 6 months, no date
    t["followups"] = f
    clean = clean_study(study_of(t))
    cf = clean.followups
    assert len(cf) == len(f)
    assert cf.loc[0, "followup_days"] == 100 and not cf.loc[0, "in_window"]
    assert pd.isna(cf.loc[1, "in_window"])
    assert cf.loc[2:, "in_window"].all()
    wide = clean_study(study_of(t), followup_window_days={2: (61, 40), 6: (183, 56)})
    assert wide.followups.loc[0, "in_window"]
    with pytest.raises(CleaningError, match="followup_window_days"):
        clean_study(study_of(t), followup_window_days={2: (61, -1)})


def test_exact_duplicate_rows_dropped_and_listed():
    t = build_study()
    t["physio"] = pd.concat([t["physio"], t["physio"].iloc[[1]]], ignore_index=True)
    t["practices"] = pd.concat([t["practices"].iloc[[0]], t["practices"]], ignore_index=True)
    clean = clean_study(study_of(t))
    assert len(clean.physio) == 4 and 4 not in clean.physio.index
    assert len(clean.practices) == 3 and clean.practices.index.tolist() == [0, 2, 3]
    ex = clean.exclusions[clean.exclusions["stage"] == "cleaning"].sort_values("table")
    assert ex[["table", "row", "row_key", "reason"]].values.tolist() == [
        ["physio", 4, "E002", "exact duplicate row"], ["practices", 1, "P01", "exact duplicate row"]]
    assert ex["detail"].tolist() == ["same values as input row 1", "same values as input row 0"]


def test_duplicate_followup_keys_keep_the_earliest_return():
    t = build_study()
    f = t["followups"].copy()
    later = f.iloc[[0]].copy()
    earlier = f.iloc[[0]].copy()
    earlier["return_date"] = (pd.Timestamp(f.loc[0, "return_date"]) - pd.Timedelta(days=3)).strftime("%d/%m/%Y")
    earlier["pain_nrs"] = (int(f.loc[0, "pain_nrs"]) + 1) % 11
    later["return_date"] = (pd.Timestamp(f.loc[0, "return_date"]) + pd.Timedelta(days=20)).strftime("%Y-%m-%d")
    f = pd.concat([f, later, earlier], ignore_index=True)
    t["followups"] = f
    n = len(f)
    clean = clean_study(study_of(t))
    kept = clean.followups[(clean.followups["patient_id"] == "PT001") & (clean.followups["time_point"] == 2)]
    assert kept.index.tolist() == [n - 1]
    ex = clean.exclusions[(clean.exclusions["table"] == "followups") & (clean.exclusions["stage"] == "cleaning")]
    assert sorted(ex["row"].tolist()) == [0, n - 2]
    assert ex["row_key"].unique().tolist() == ["PT001|2"]
    assert ex["reason"].str.contains("earlier return_date").all()
    assert (ex["detail"] == f"kept input row {n - 1}").all()


def test_duplicate_keys_without_a_rule_raise():
    t = build_study()
    p = t["patients"]
    twin = p.iloc[[0]].assign(age=77)
    t["patients"] = pd.concat([p, twin], ignore_index=True)
    with pytest.raises(CleaningError, match=r"'patients'.*share a key.*PT001"):
        clean_study(study_of(t))


def test_unacceptable_value_raises_with_table_column_and_examples():
    t = build_study()
    t["patients"] = as_object(t["patients"], ["sbst_5"])
    t["patients"].loc[2, "sbst_5"] = "perhaps"
    with pytest.raises(CleaningError, match=r"'patients', column 'sbst_5': 1 row\(s\).*'perhaps'.*input row 2"):
        clean_study(study_of(t))
    t = build_study()
    t["patients"] = t["patients"].assign(age=t["patients"]["age"].astype(object))
    t["patients"].loc[0, "age"] = 12
    with pytest.raises(CleaningError, match="'age'.*from 18 to 110"):
        clean_study(study_of(t))


def test_analysis_exclusions_account_for_non_analysed_patients_and_their_rows():
    t = build_study()
    # a follow-up and a physio episode for the non-respondent PT004, a record without consent (PT003)
    f = t["followups"]
    extra = f.iloc[[0]].assign(patient_id="PT004")
    t["followups"] = pd.concat([f, extra], ignore_index=True)
    r = t["records"]
    t["records"] = pd.concat([r, r.iloc[[0]].assign(patient_id="PT003")], ignore_index=True)
    clean = clean_study(study_of(t))
    ex = clean.exclusions[clean.exclusions["stage"] == "analysis"]
    pats = ex[ex["table"] == "patients"].set_index("row_key")
    assert pats.loc["PT004", "reason"] == "non-respondent"
    assert pats.loc["PT010", "reason"] == "excluded at invitation" and pats.loc["PT010", "detail"] == "declined"
    fu = ex[ex["table"] == "followups"]
    assert fu["row"].tolist() == [len(f)] and fu["reason"].tolist() == ["patient not analysed"]
    rec = ex[ex["table"] == "records"]
    assert rec["row"].tolist() == [len(r)] and rec["reason"].tolist() == ["no record-review consent"]
    # rows stay in the clean tables (the flow needs them)
    assert len(clean.patients) == 12 and len(clean.followups) == len(f) + 1


def test_inputs_are_never_modified():
    t = build_study()
    p = as_object(t["patients"], ["sbst_1", "sbst_9", "employed"])
    p.loc[0, "sbst_1"] = "Agree"
    p.loc[1, "sbst_9"] = "VERY MUCH"
    p.loc[2, "employed"] = 9
    p.loc[3, "consultation_date"] = "16/04/2007"
    t["patients"] = p
    t["followups"] = pd.concat([t["followups"], t["followups"].iloc[[0]]], ignore_index=True)
    before = copy.deepcopy(t)
    clean = clean_study(study_of(t))
    assert not clean.cleaning_log.empty and not clean.exclusions.empty
    for name in before:
        pd.testing.assert_frame_equal(t[name], before[name])
    # and the clean tables do not share memory with the inputs
    clean.patients.loc[5, "age"] = 100
    pd.testing.assert_frame_equal(t["patients"], before["patients"])


def test_absent_tables_and_columns_are_added_and_counted():
    t = build_study()
    t["physio"] = t["physio"].drop(columns=["approach"])
    del t["consultations"]
    clean = clean_study(study_of(t))
    assert clean.physio["approach"].isna().all() and isinstance(clean.physio["approach"].dtype, pd.CategoricalDtype)
    assert len(clean.consultations) == 0 and "consultation_date" in clean.consultations
    rules = set(clean.summary["rule"])
    assert {"column_added", "table_absent_empty_table_used"} <= rules
    with pytest.raises(CleaningError, match="unknown_table"):
        clean_study(study_of({**build_study(), "unknown_table": pd.DataFrame()}))


def test_log_is_complete_and_vectorized_at_scale():
    """20,000 patients with a text answer in every row: one log row per changed cell, fast."""
    base = build_study()["patients"]
    n = 20_000
    rng = np.random.default_rng(1)
    p = base.iloc[np.arange(n) % len(base)].reset_index(drop=True)
    p["patient_id"] = [f"Q{i:06d}" for i in range(n)]
    p["invitation_outcome"] = "responded"
    p["exclusion_reason"] = None
    answers = np.array(["Agree", "disagree", "1", "0", "yes", "NA", "9"], dtype=object)
    for c in ("sbst_1", "sbst_2", "sbst_3"):
        p[c] = answers[rng.integers(0, len(answers), n)]
    t = {**build_study(), "patients": p, "followups": build_study()["followups"].iloc[:0],
         "records": build_study()["records"].iloc[:0], "physio": build_study()["physio"].iloc[:0]}
    t["consultations"] = t["consultations"].assign(patient_id=None)
    start = time.perf_counter()
    clean = clean_study(study_of(t))
    elapsed = time.perf_counter() - start
    expected = sum(int(p[c].isin(["Agree", "disagree", "yes", "9"]).sum()) for c in ("sbst_1", "sbst_2", "sbst_3"))
    assert len(clean.cleaning_log) == expected
    assert elapsed < 10
    assert clean.patients["sbst_1"].isna().sum() == int(p["sbst_1"].isin(["NA", "9"]).sum())


def test_load_then_clean_a_messy_csv_export(tmp_path):
    loading = pytest.importorskip("backpain_analysis.loading")
    from studyfactory import write_study

    t = build_study()
    p = as_object(t["patients"], ["sbst_1", "sbst_9", "employed"])
    p.loc[0, "sbst_1"] = "Agree"
    p.loc[1, "sbst_9"] = "VERY MUCH"
    p.loc[2, "employed"] = "NA"
    p.loc[5, "employed"] = 9
    p.loc[3, "consultation_date"] = "16/04/2007"
    t["patients"] = p
    study = loading.load_study(write_study(tmp_path, t))
    before = {k: v.copy(deep=True) for k, v in study.tables.items()}
    clean = clean_study(study)
    for name, df in before.items():
        pd.testing.assert_frame_equal(study.tables[name], df)
    cp = clean.patients
    assert cp.loc[0, "sbst_1"] == 1 and cp.loc[1, "sbst_9"] == 3
    assert pd.isna(cp.loc[2, "employed"]) and pd.isna(cp.loc[5, "employed"])
    assert cp.loc[3, "consultation_date"] == pd.Timestamp("2007-04-16")
    assert set(clean.cleaning_log["rule"]) == {"text_to_code", "missing_code", "date_format"}


def test_numeric_columns_take_the_same_rules():
    """Columns already numeric (as read from CSV or parquet) follow the same missing-code and range rules."""
    t = build_study()
    p = t["patients"].copy()
    p.loc[0, "leg_pain"] = 9
    p.loc[1, "leg_pain"] = 9
    p.loc[2, "pain_nrs"] = 9
    t["patients"] = p
    clean = clean_study(study_of(t))
    assert clean.patients.loc[[0, 1], "leg_pain"].isna().all() and clean.patients.loc[2, "pain_nrs"] == 9
    log = log_of(clean, "patients", "leg_pain")
    assert log[["row", "old_value", "new_value", "rule"]].values.tolist() == [
        [0, "9", "", "missing_code"], [1, "9", "", "missing_code"]]
    assert str(clean.patients["leg_pain"].dtype) == "Int64"
    bad = p.copy()
    bad.loc[3, "leg_pain"] = 2
    with pytest.raises(CleaningError, match=r"'leg_pain': 1 row\(s\).*\['2'\].*input row 3"):
        clean_study(study_of({**t, "patients": bad}))
    c = t["clinicians"].assign(training_days=t["clinicians"]["training_days"].astype("float64"))
    c.loc[0, "training_days"] = 2.5
    c.loc[1, "training_days"] = -1.0
    clean = clean_study(study_of({**t, "clinicians": c}))
    assert clean.clinicians.loc[0, "training_days"] == 2.5 and np.isnan(clean.clinicians.loc[1, "training_days"])


@pytest.mark.parametrize("value", ["1500-01-01", "05/03/2300", pd.Timestamp("1500-01-01").to_pydatetime()])
def test_dates_outside_the_representable_range_raise(value):
    # before the fix, "1500-01-01" came out as 2084-07-20 23:34:33: silently wrong
    t = build_study()
    p = as_object(t["patients"], ["baseline_date"])
    p.loc[0, "baseline_date"] = value
    t["patients"] = p
    with pytest.raises(CleaningError, match=r"'patients', column 'baseline_date': 1 row"):
        clean_study(study_of(t))
