"""Analysis dataset, participant flow, reconciliation and the ``backpain dataset`` command."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from studyfactory import build_study, write_study

from backpain_analysis import (
    ANALYSIS_COLUMNS,
    ReconciliationError,
    build_analysis_dataset,
    clean_study,
    eq5d3l_index,
    flow_counts,
    reconcile,
)
from backpain_analysis.cli import main

ROOT = Path(__file__).resolve().parents[1]


def study_of(tables) -> SimpleNamespace:
    return SimpleNamespace(tables=tables)


@pytest.fixture(scope="module")
def built():
    tables = build_study()
    study = study_of(tables)
    clean = clean_study(study)
    return tables, study, clean, build_analysis_dataset(clean)


def architecture_columns() -> list[str]:
    """Column names of the analysis-dataset table in docs/architecture.md, placeholders expanded."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = text.split("## The analysis dataset", 1)[1].split("\n## ", 1)[0]
    names: list[str] = []
    for line in section.splitlines():
        if not line.startswith("| ") or line.startswith(("| group", "|---")):
            continue
        cell = line.split("|")[2]
        for_t = re.search(r"for t in ([\w, ]+)", cell)
        for name in re.findall(r"`([^`]+)`", cell):
            if "{t}" in name:
                ts = [t.strip() for t in for_t.group(1).split(",")] if for_t else ["0m", "2m", "6m"]
                names += [name.replace("{t}", t) for t in ts]
            elif m := re.search(r"\{([^}]+)\}", name):
                names += [name.replace(m.group(0), t) for t in m.group(1).split(",")]
            else:
                names.append(name)
    return names


def test_columns_are_exactly_the_architecture_contract(built):
    *_, data = built
    assert list(data.columns) == list(ANALYSIS_COLUMNS)
    assert sorted(architecture_columns()) == sorted(ANALYSIS_COLUMNS)


def test_one_row_per_respondent_with_the_documented_types(built):
    tables, _, _, data = built
    respondents = tables["patients"].loc[tables["patients"]["invitation_outcome"] == "responded", "patient_id"]
    assert data["patient_id"].tolist() == respondents.tolist()
    assert isinstance(data.index, pd.RangeIndex)
    assert data["phase"].dtype == "int64" and set(data["phase"]) == {1, 3}
    assert (data["stratified"] == (data["phase"] == 3)).all()
    categorical = {"sex", "episode_duration", "risk_group", "risk_group_0m", "risk_group_2m", "risk_group_6m",
                   "global_change_2m", "global_change_6m", "physio_approach", "matched_pathway", "received_pathway"}
    for c in ANALYSIS_COLUMNS:
        if c in categorical:
            assert isinstance(data[c].dtype, pd.CategoricalDtype), c
        elif c in ("patient_id", "practice_id", "gp_id"):
            assert pd.api.types.is_string_dtype(data[c].dtype), c
        elif c == "consultation_date":
            assert pd.api.types.is_datetime64_dtype(data[c].dtype)
        elif c != "phase":
            assert data[c].dtype == "float64", c
    for c in ("episode_duration", "risk_group", "global_change_6m", "matched_pathway"):
        assert data[c].cat.ordered, c
    flags = ["stratified", "female", "employed", "leg_pain", "good_outcome_6m", "rmdq_mcid_6m", "matched_care",
             "matched_referral", "followed_up_2m", "followed_up_6m", "consented_records", "opioids_any"]
    for c in flags:
        assert data[c].dropna().isin([0.0, 1.0]).all(), c


def test_values_of_one_patient_follow_the_scoring_rules(built):
    tables, _, _, data = built
    p = tables["patients"].set_index("patient_id").loc["PT001"]
    f = tables["followups"].set_index(["patient_id", "time_point"])
    f6 = f.loc[("PT001", 6)]
    row = data.set_index("patient_id").loc["PT001"]
    rmdq0 = sum(int(p[f"rmdq_{i}"]) for i in range(1, 25))
    rmdq6 = sum(int(f6[f"rmdq_{i}"]) for i in range(1, 25))
    assert row["rmdq_0m"] == rmdq0 and row["rmdq_6m"] == rmdq6
    assert row["rmdq_change_6m"] == rmdq0 - rmdq6
    total = sum(int(p[f"sbst_{i}"]) for i in range(1, 9)) + int(p["sbst_9"] >= 3)
    assert row["sbst_total_0m"] == total
    state0 = "".join(str(int(p[f"eq5d_{d}"])) for d in ("mo", "sc", "ua", "pd", "ad"))
    state6 = "".join(str(int(f6[f"eq5d_{d}"])) for d in ("mo", "sc", "ua", "pd", "ad"))
    e0, e6 = eq5d3l_index(pd.Series([state0, state6]))
    assert row["eq5d_index_0m"] == e0 and row["eq5d_change_6m"] == pytest.approx(e6 - e0)
    assert row["pain_change_6m"] == int(p["pain_nrs"]) - int(f6["pain_nrs"])
    labels = ["completely recovered", "much better", "better", "no change", "worse", "much worse"]
    assert row["global_change_6m"] == labels[int(f6["global_change"]) - 1]
    assert row["good_outcome_6m"] == float(int(f6["global_change"]) <= 2)
    assert row["followed_up_2m"] == 1 and row["followed_up_6m"] == 1 and row["followup_6m_in_window"] == 1


def test_records_physio_and_stratification(built):
    tables, _, _, data = built
    d = data.set_index("patient_id")
    rec = tables["records"].set_index("patient_id")
    # PT003 did not consent: no record values
    assert d.loc["PT003", "consented_records"] == 0 and d.loc[["PT003"], list(rec.columns[1:3])].isna().all().all()
    r1 = rec.loc["PT001"]
    assert d.loc["PT001", "physio_referral"] == r1["physio_referral"]
    strong, weak = int(r1["opioids_strong"]), int(r1["opioids_weak"])
    assert d.loc["PT001", "opioids_any"] == float(strong or weak)
    assert d.loc["PT001", "opioids_weak_only"] == float(weak == 1 and strong == 0)
    # physio: PT002 4 sessions manual_exercise, PT007 psych_informed, PT001 none
    assert d.loc["PT002", "physio_sessions"] == 4 and d.loc["PT002", "physio_approach"] == "manual_exercise"
    assert d.loc["PT007", "received_pathway"] == "psych_informed_physiotherapy"
    assert d.loc["PT001", "physio_sessions"] == 0 and pd.isna(d.loc["PT001", "physio_approach"])
    expected = {"low": "advice", "medium": "physiotherapy", "high": "psych_informed_physiotherapy"}
    assert (d["matched_pathway"].astype(object) == d["risk_group"].astype(object).map(expected)).all()
    known = d["matched_pathway"].notna() & d["received_pathway"].notna()
    assert (d.loc[known, "matched_care"] == (d.loc[known, "matched_pathway"].astype(object)
                                             == d.loc[known, "received_pathway"].astype(object))).all()


def test_lost_to_follow_up_and_missing_items(built):
    *_, data = built
    d = data.set_index("patient_id")
    assert d.loc["PT003", "followed_up_6m"] == 0 and np.isnan(d.loc["PT003", "rmdq_6m"])
    assert np.isnan(d.loc["PT003", "followup_6m_in_window"]) and pd.isna(d.loc["PT003", "global_change_6m"])
    assert d.loc["PT008", "followed_up_2m"] == 0 and np.isnan(d.loc["PT008", "rmdq_change_2m"])


def test_flow_counts_shape_and_percentages(built):
    *_, clean, _ = built
    flow = flow_counts(clean).set_index("item")
    assert flow.loc["invited", ["n_phase1", "n_phase3"]].tolist() == [6, 6]
    assert flow.loc["excluded", "n_phase3"] == 1 and flow.loc["excluded: did not want to take part", "n_phase3"] == 1
    assert flow.loc["non-respondents", ["n_phase1", "n_phase3"]].tolist() == [1, 0]
    assert flow.loc["respondents", ["n_phase1", "n_phase3"]].tolist() == [5, 5]
    assert flow.loc["respondents", "pct_phase1"] == pytest.approx(500 / 6)
    assert flow.loc["consented to record review", ["n_phase1", "n_phase3"]].tolist() == [4, 4]
    assert flow.loc["consented to record review", "pct_phase3"] == pytest.approx(80.0)
    assert flow.loc["followed up at 2 months", ["n_phase1", "n_phase3"]].tolist() == [5, 4]
    assert flow.loc["followed up at 6 months", ["n_phase1", "n_phase3"]].tolist() == [4, 5]
    assert np.isnan(flow.loc["excluded", "pct_phase1"])
    # the excluded rows add up
    reasons = flow.loc[flow.index.str.startswith("excluded: "), "n_phase3"].sum()
    assert reasons == flow.loc["excluded", "n_phase3"]


def test_reconcile_accounts_for_every_row(built):
    tables, study, clean, data = built
    table = reconcile(study, clean, data).set_index("table")
    assert (table["n_unaccounted"] == 0).all()
    assert (table["n_used"] + table["n_excluded_cleaning"] + table["n_excluded_analysis"] == table["n_input"]).all()
    assert table.loc["patients", "n_used"] == len(data)


def test_reconcile_on_messy_input():
    t = build_study()
    t["followups"] = pd.concat([t["followups"], t["followups"].iloc[[0]],
                                t["followups"].iloc[[2]].assign(patient_id="PT004")], ignore_index=True)
    t["physio"] = pd.concat([t["physio"], t["physio"].iloc[[0]]], ignore_index=True)
    t["records"] = pd.concat([t["records"], t["records"].iloc[[0]].assign(patient_id="PT003")], ignore_index=True)
    study = study_of(t)
    clean = clean_study(study)
    data = build_analysis_dataset(clean)
    table = reconcile(study, clean, data).set_index("table")
    assert table.loc["followups", "n_excluded_cleaning"] == 1 and table.loc["followups", "n_excluded_analysis"] == 1
    assert table.loc["records", "n_excluded_analysis"] == 1 and table.loc["physio", "n_excluded_cleaning"] == 1
    assert (table["n_unaccounted"] == 0).all()


def test_reconcile_raises_when_a_row_is_unaccounted(built):
    _, study, clean, data = built
    with pytest.raises(ReconciliationError, match=r"'patients': 1 input row\(s\) neither used nor excluded"):
        reconcile(study, clean, data.iloc[1:])
    broken = SimpleNamespace(**{**clean.__dict__, "exclusions": clean.exclusions.iloc[1:]})
    broken.tables = clean.tables
    with pytest.raises(ReconciliationError, match="neither used nor excluded"):
        reconcile(study, broken, data)
    fake = data.copy()
    fake.loc[0, "followed_up_2m"] = 0.0
    with pytest.raises(ReconciliationError, match="followups at 2 months"):
        reconcile(study, clean, fake)


def test_synthetic_study_reconciles():
    synthetic = pytest.importorskip("backpain_analysis.synthetic")
    folder = ROOT / "data" / "synthetic"
    if folder.is_dir() and any(folder.iterdir()):
        from backpain_analysis.loading import load_study

        study = load_study(folder)
    else:
        study = synthetic.generate_study(n_invited=600, seed=3, truth_mc_n=2000)
    clean = clean_study(study)
    data = build_analysis_dataset(clean)
    table = reconcile(study, clean, data)
    assert (table["n_unaccounted"] == 0).all()
    respondents = (clean.patients["invitation_outcome"] == "responded").sum()
    assert len(data) == respondents
    flow = flow_counts(clean).set_index("item")
    assert flow.loc["respondents", ["n_phase1", "n_phase3"]].sum() == len(data)


def test_cli_writes_csv_and_parquet(tmp_path, capsys):
    pytest.importorskip("backpain_analysis.loading")
    folder = write_study(tmp_path / "study")
    assert main(["dataset", "--data", str(folder), "--out", str(tmp_path / "out.csv")]) == 0
    assert "10 analysed patients" in capsys.readouterr().out
    csv = pd.read_csv(tmp_path / "out.csv")
    assert list(csv.columns) == list(ANALYSIS_COLUMNS) and len(csv) == 10
    assert main(["dataset", "--data", str(folder), "--out", str(tmp_path / "out.parquet")]) == 0
    parquet = pd.read_parquet(tmp_path / "out.parquet")
    assert parquet["risk_group"].cat.ordered and len(parquet) == 10
    assert main(["dataset", "--data", str(folder), "--out", str(tmp_path / "out.xlsx")]) == 2
    assert ".parquet or .csv" in capsys.readouterr().err


# --- fast paths of build_analysis_dataset agree with the general paths ------------------------

@pytest.fixture(scope="module")
def bundled():
    from backpain_analysis.loading import load_study

    study = load_study(ROOT / "data" / "synthetic")
    clean = clean_study(study)
    return clean, build_analysis_dataset(clean)


def _with_tables(clean, **tables):
    out = SimpleNamespace(**{**clean.__dict__, "tables": {**clean.tables, **tables}})
    out.exclusions = clean.exclusions
    return out


def test_column_by_column_baseline_agrees_with_taking_every_column(bundled, monkeypatch):
    import backpain_analysis.dataset as ds

    clean, data = bundled
    # a patient column the table lacks sends build_analysis_dataset down the general path (all columns)
    monkeypatch.setattr(ds, "_PATIENT_COLUMNS", ds._PATIENT_COLUMNS | {"not_a_column"})
    pd.testing.assert_frame_equal(build_analysis_dataset(clean), data)


def test_float_item_columns_take_the_general_scoring_path_with_the_same_result(bundled):
    clean, data = bundled
    as_float = {}
    for name in ("patients", "followups"):
        t = clean.tables[name].copy()
        items = [c for c in t.columns if c.startswith(("sbst_", "rmdq_", "eq5d_"))]
        t[items] = t[items].astype("float64")
        as_float[name] = t
    pd.testing.assert_frame_equal(build_analysis_dataset(_with_tables(clean, **as_float)), data)


def test_missing_patient_column_raises_as_before(bundled):
    clean, _ = bundled
    patients = clean.tables["patients"].drop(columns="sbst_5")
    with pytest.raises(ValueError, match=r"SBST: column\(s\) \['sbst_5'\] are missing; the DataFrame has "
                                         r"\['patient_id', 'practice_id', 'gp_id', 'phase', .* \.\.\.$"):
        build_analysis_dataset(_with_tables(clean, patients=patients))


@pytest.mark.parametrize(("index", "rows"), [
    (pd.RangeIndex(6), [0, 2, 2, 5]),  # fast path, a repeated row
    (pd.RangeIndex(6), [1, 9, -3]),  # fast path, rows outside the table
    (pd.RangeIndex(6), []),
    (pd.RangeIndex(2, 8), [2, 3, 7]),  # labels are not positions: general path
    (pd.RangeIndex(0, 12, 2), [0, 2, 3]),
    (pd.Index([5, 4, 3, 2, 1, 0]), [0, 4]),
])
def test_used_mask_fast_path_equals_isin(index, rows):
    from backpain_analysis.dataset import _used_mask

    table = pd.DataFrame({"x": range(6)}, index=index)
    ex = pd.DataFrame({"table": ["t"] * len(rows) + ["other"], "row": pd.array(rows + [1], dtype="int64")})
    got = _used_mask(SimpleNamespace(tables={"t": table}, exclusions=ex), "t")
    np.testing.assert_array_equal(got, ~table.index.isin(rows))
    as_float = ex.assign(row=ex["row"].astype("float64"))  # not integer rows: general path
    np.testing.assert_array_equal(_used_mask(SimpleNamespace(tables={"t": table}, exclusions=as_float), "t"),
                                  ~table.index.isin(rows))


def test_take_places_values_and_marks_absent_rows():
    from backpain_analysis.dataset import _take

    values = np.array([0.5, -0.0, np.nan, 7.0])
    order = np.array([3, -1, 0, 1, -1, 2])
    got = _take(values, order)
    np.testing.assert_array_equal(got, [7.0, np.nan, 0.5, -0.0, np.nan, np.nan])
    assert np.signbit(got[3]) and not np.signbit(got[0])
    np.testing.assert_array_equal(_take(np.array([]), np.array([-1, -1])), [np.nan, np.nan])
    cat = pd.Series(pd.Categorical(["b", None, "a"], categories=["a", "b"], ordered=True))
    placed = _take(cat, np.array([2, -1, 0, 1]))
    assert placed.dtype == cat.dtype
    assert placed.tolist()[0] == "a" and pd.isna(placed.iloc[1]) and placed.iloc[2] == "b" and pd.isna(placed.iloc[3])
    assert _take(cat.iloc[:0], np.array([-1])).isna().all()


@pytest.mark.parametrize("row_of", [np.array([2, -1, 0, 1, -1]), np.array([], dtype="int64"), np.full(5, -1)])
def test_placement_maps_table_rows_to_dataset_rows(row_of):
    from backpain_analysis.dataset import _placement

    n_patients = len(row_of)
    patients = pd.DataFrame({"patient_id": [f"P{i}" for i in range(n_patients)]})
    ids = ["P3", "X", "P0", "P3", "P1", "P4", "Y"] if n_patients else ["X", "Y"]
    table = pd.DataFrame({"patient_id": ids})
    ex = pd.DataFrame({"table": ["t"], "row": [3]})
    clean = SimpleNamespace(tables={"patients": patients, "t": table}, exclusions=ex)
    tpos, drow = _placement(clean, "t", row_of)
    # the definition: used rows (not row 3) whose patient is analysed (row_of >= 0), with that dataset row
    want = [(i, row_of[int(pid[1:])]) for i, pid in enumerate(ids)
            if i != 3 and pid.startswith("P") and row_of[int(pid[1:])] >= 0]
    assert list(zip(tpos.tolist(), drow.tolist(), strict=True)) == [(int(i), int(r)) for i, r in want]
