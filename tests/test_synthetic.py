"""The synthetic study: format (data dictionary), determinism, the bundled study, truth, overrides, CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backpain_analysis import BackpainError, load_dictionary, load_study
from backpain_analysis.cli import main
from backpain_analysis.synthetic import (
    DEFAULT_N_INVITED,
    DEFAULT_SEED,
    DEFAULTS,
    PARAMETER_HELP,
    SyntheticParameterError,
    eq5d_index,
    generate_study,
    parse_override,
)

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "data" / "synthetic"
DD = load_dictionary()
FAST = {"truth_mc_n": 20000}
INVITATION_COLUMNS = {"patient_id", "practice_id", "gp_id", "phase", "consultation_date", "invitation_outcome",
                      "exclusion_reason", "age", "sex"}


@pytest.fixture(scope="module")
def small():
    return generate_study(n_invited=3000, seed=11, **FAST)


def sbst_risk(items: pd.DataFrame) -> pd.Series:
    """Risk group by the domain.md rules, computed here independently of the package."""
    x = items[[f"sbst_{i}" for i in range(1, 10)]].astype(float)
    item9 = (x["sbst_9"] >= 3).astype(float)
    psych = x[["sbst_5", "sbst_6", "sbst_7", "sbst_8"]].sum(axis=1) + item9
    total = x[[f"sbst_{i}" for i in range(1, 9)]].sum(axis=1) + item9
    risk = np.where(total <= 3, "low", np.where(psych >= 4, "high", "medium"))
    return pd.Series(risk, index=items.index).where(x.notna().all(axis=1))


# ------------------------------------------------------------------ format
def test_tables_have_exactly_the_dictionary_columns(small):
    assert list(small.tables) == DD.table_names
    for name, df in small.tables.items():
        assert list(df.columns) == list(DD[name].columns), name


def test_values_follow_the_dictionary(small):
    """Codes, ranges, required columns, identifier patterns and keys, checked against load_dictionary()."""
    for name, df in small.tables.items():
        table = DD[name]
        assert not df.duplicated(list(table.key)).any(), name
        for col in table:
            s = df[col.name]
            if col.required:
                assert s.notna().all(), (name, col.name)
            v = s.dropna()
            if col.codes is not None:
                assert set(v.unique()) <= set(col.codes), (name, col.name, set(v.unique()) - set(col.codes))
            if col.min is not None:
                assert v.astype(float).between(col.min, col.max).all(), (name, col.name)
            if col.pattern:
                assert v.astype(str).str.fullmatch(col.pattern[1:-1]).all(), (name, col.name)
    for fk in DD.foreign_keys:
        child = small.tables[fk.table][fk.column].dropna()
        assert child.isin(small.tables[fk.ref_table][fk.ref_column]).all(), fk


def test_identifier_formats(small):
    assert small.practices.practice_id.tolist()[:2] == ["P01", "P02"]
    assert small.patients.patient_id.iloc[0] == "PAT00001"
    assert small.consultations.consultation_id.iloc[0] == "C000001"
    ids = small.clinicians.clinician_id
    assert ids.str.fullmatch(r"GP\d{3}").sum() == 64 and ids.str.fullmatch(r"PT\d{2}").sum() == 34


def test_bundled_study_validates_with_load_study():
    study = load_study(BUNDLED)
    assert study.truth is not None and "rmdq_adjusted_difference" in study.truth
    assert len(study.tables["patients"]) == DEFAULT_N_INVITED


def test_non_respondents_have_only_invitation_columns(small):
    p = small.patients
    others = [c for c in p.columns if c not in INVITATION_COLUMNS]
    nr = p[p.invitation_outcome != "responded"]
    assert len(nr) > 0 and nr[others].isna().all().all()
    assert (p.exclusion_reason.notna() == (p.invitation_outcome == "excluded")).all()
    resp = p[p.invitation_outcome == "responded"]
    assert resp[["record_review_consent", "employed", "sbst_1", "pain_nrs", "eq5d_pd"]].notna().all().all()
    # time off work only for the employed
    assert resp.loc[resp.employed == 0, "time_off_work"].isna().all()


def test_followups_records_physio_belong_to_the_right_patients(small):
    p = small.patients.set_index("patient_id")
    resp = set(p.index[p.invitation_outcome == "responded"])
    consenters = set(p.index[p.record_review_consent == 1])
    assert set(small.followups.patient_id) <= resp
    assert set(small.records.patient_id) == consenters
    referred = set(small.records.patient_id[small.records.physio_referral == 1])
    assert set(small.physio.patient_id) <= referred
    f6 = small.followups[small.followups.time_point == 6]
    assert f6.satisfied_results.notna().all()
    assert small.followups.loc[small.followups.time_point == 2, "days_off_work"].isna().all()
    emp = p.loc[f6.patient_id, "employed"].to_numpy()
    assert (f6.days_off_work.notna().to_numpy() == (emp == 1)).all()


def test_consultations_link_each_invited_patient_once(small):
    c = small.consultations
    linked = c.dropna(subset=["patient_id"]).set_index("patient_id")
    p = small.patients.set_index("patient_id")
    assert linked.index.is_unique and set(linked.index) == set(p.index)
    assert (linked.practice_id == p.loc[linked.index, "practice_id"]).all()
    assert (linked.consultation_date == p.loc[linked.index, "consultation_date"]).all()
    assert len(c) > len(p)  # not every eligible consultation leads to an invitation


def test_sbst_uptake_near_zero_in_phase1_rising_in_phase3_and_varying_by_practice(small):
    c = small.consultations
    assert c.loc[c.phase == 1, "sbst_completed"].mean() < 0.06
    p3 = c[c.phase == 3].sort_values("consultation_date")
    half = len(p3) // 2
    first, second = p3.sbst_completed.iloc[:half].mean(), p3.sbst_completed.iloc[half:].mean()
    assert second - first > 0.15
    by_practice = p3.groupby("practice_id").sbst_completed.mean()
    assert by_practice.max() - by_practice.min() > 0.1


def test_phases_and_dates():
    s = generate_study(**FAST)
    p = s.patients
    assert (p.phase == 1).sum() == 630 and (p.phase == 3).sum() == 1017
    d1 = p.loc[p.phase == 1, "consultation_date"]
    d3 = p.loc[p.phase == 3, "consultation_date"]
    assert d1.min() >= pd.Timestamp("2008-01-01") and d1.max() < pd.Timestamp("2008-07-01")
    assert d3.min() >= pd.Timestamp("2009-01-01") and d3.max() < pd.Timestamp("2010-01-01")


def test_clinicians_training_and_surveys(small):
    cl = small.clinicians
    phys = cl[cl.profession == "physio"]
    assert phys.training_days.between(3, 9).all() and phys.mentoring_sessions.notna().all()
    assert cl.loc[cl.profession == "gp", "practice_id"].notna().all()
    sv = small.clinician_surveys
    assert set(sv.time_point) == {"before", "after"}
    # survey non-response: fewer than two surveys per clinician, but most clinicians answer at least once
    assert 0.7 * len(cl) < sv.clinician_id.nunique() and len(sv) < 2 * len(cl)
    scores = sv.set_index(["clinician_id", "time_point"])[[f"pabs_{i}" for i in range(1, 11)]].sum(axis=1).unstack()
    paired = scores.dropna().join(cl.set_index("clinician_id").profession)
    change = (paired["after"] - paired["before"]).groupby(paired.profession).mean()
    assert change["physio"] < change["gp"] < 1  # biomedical orientation falls, more among physiotherapists


# ------------------------------------------------------------------ clinical model
def test_risk_groups_follow_the_scoring_rules_and_order_severity(small):
    p = small.patients[small.patients.invitation_outcome == "responded"].copy()
    p["risk"] = sbst_risk(p)
    rm = p[[f"rmdq_{i}" for i in range(1, 25)]].astype(float)
    p["rmdq"] = rm.sum(axis=1).where(rm.notna().all(axis=1))
    p["eq5d"] = eq5d_index(p[["eq5d_mo", "eq5d_sc", "eq5d_ua", "eq5d_pd", "eq5d_ad"]].astype(int).to_numpy())
    means = p.groupby("risk")[["rmdq", "pain_nrs", "hads_depression", "tsk", "eq5d"]].mean().loc[["low", "medium", "high"]]
    for col in ["rmdq", "pain_nrs", "hads_depression", "tsk"]:
        assert means[col].is_monotonic_increasing, col
    assert means["eq5d"].is_monotonic_decreasing
    assert np.corrcoef(p.rmdq.dropna(), p.loc[p.rmdq.notna(), "eq5d"])[0, 1] < -0.4


def test_rmdq_items_9_and_17_agree_with_sbst_items_4_and_3(small):
    for df in (small.patients[small.patients.invitation_outcome == "responded"], small.followups):
        ok4 = (df.rmdq_9 == df.sbst_4)[df.rmdq_9.notna()]
        ok3 = (df.rmdq_17 == df.sbst_3)[df.rmdq_17.notna()]
        assert ok4.mean() > 0.9 and ok3.mean() > 0.9


def test_eq5d_tariff_published_values():
    states = np.array([[1, 1, 1, 1, 1], [1, 1, 2, 2, 1], [3, 3, 2, 2, 1], [1, 2, 3, 2, 1], [3, 3, 3, 3, 3]])
    assert np.round(eq5d_index(states), 3).tolist() == [1.0, 0.760, -0.037, 0.329, -0.594]


# ------------------------------------------------------------------ determinism and the bundled study
def _bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_same_seed_same_bytes_different_seed_different_data(tmp_path):
    a = generate_study(n_invited=500, seed=3, **FAST).write(tmp_path / "a")
    b = generate_study(n_invited=500, seed=3, **FAST).write(tmp_path / "b")
    c = generate_study(n_invited=500, seed=4, **FAST).write(tmp_path / "c")
    assert _bytes(a["patients"].parent) == _bytes(b["patients"].parent)
    assert a["patients"].read_bytes() != c["patients"].read_bytes()
    text = a["patients"].read_text()
    assert "\r" not in text and text.endswith("\n") and ".0," not in text


def test_bundled_study_is_regenerated_byte_for_byte(tmp_path):
    """data/synthetic is exactly what the default generate_study writes (regenerate with `backpain synth`)."""
    generate_study(n_invited=DEFAULT_N_INVITED, seed=DEFAULT_SEED).write(tmp_path)
    expected = _bytes(BUNDLED)
    got = _bytes(tmp_path)
    assert sorted(got) == sorted(expected)
    for name in expected:
        assert got[name] == expected[name], f"data/synthetic/{name} differs: run `backpain synth --out data/synthetic`"


def test_parquet_output_round_trips(tmp_path, small):
    small.write(tmp_path, format="parquet")
    back = pd.read_parquet(tmp_path / "patients.parquet")
    assert back.shape == small.patients.shape
    assert load_study(tmp_path).tables["records"].shape == small.records.shape


# ------------------------------------------------------------------ truth
def test_truth_keys_meaning_and_json(small):
    t = small.truth
    required = ["rmdq_adjusted_difference", "rmdq_difference_low_risk", "rmdq_difference_medium_risk",
                "rmdq_difference_high_risk", "days_off_work_ratio", "sickness_certificate_or", "matched_referral_or",
                "opioids_or", "satisfied_results_or", "icc_practice", "pabs_biomedical_change_gp",
                "pabs_biomedical_change_physio", "pabs_behavioural_change_physio", "confidence_high_risk_change_physio",
                "incremental_cost", "incremental_qaly", "incremental_cost_high_risk", "incremental_qaly_high_risk"]
    assert not [k for k in required if k not in t]
    assert t["parameters"]["n_invited"] == 3000 and t["parameters"]["seed"] == 11
    assert set(DEFAULTS) <= set(t["parameters"]) and set(DEFAULTS) == set(PARAMETER_HELP)
    # the risk-mix-weighted average of the group effects
    w = t["rmdq_adjusted_difference_weights"]
    groups = [t[f"rmdq_difference_{g}_risk"] for g in ("low", "medium", "high")]
    assert math.isclose(sum(a * b for a, b in zip(w, groups, strict=True)), t["rmdq_adjusted_difference"], rel_tol=1e-4)
    # physiotherapists' biomedical orientation falls more than GPs'
    assert t["pabs_biomedical_change_physio"] < t["pabs_biomedical_change_gp"] < 0
    written = json.loads((BUNDLED / "truth.json").read_text())
    assert list(written) == sorted(written)


def test_default_truth_matches_the_published_effects():
    """Tolerances: the published point estimates are 'about' targets; the truth is a population value."""
    t = json.loads((BUNDLED / "truth.json").read_text())
    assert abs(t["rmdq_adjusted_difference"] - 0.71) < 0.03
    assert abs(t["rmdq_difference_high_risk"] - 2.3) < 0.1
    assert t["rmdq_difference_low_risk"] < t["rmdq_difference_medium_risk"] < t["rmdq_difference_high_risk"]
    assert abs(t["days_off_work_ratio"] - 0.47) < 0.05
    assert abs(t["sickness_certificate_or"] - 0.61) < 0.07
    assert abs(t["matched_referral_or"] - 2.4) < 0.3
    assert abs(t["opioids_or"] - 2.27) < 0.3
    assert abs(t["satisfied_results_or"] - 1.5) < 0.15
    assert -160 < t["incremental_cost_high_risk"] < -80 and t["incremental_qaly_high_risk"] > 0.015
    assert abs(t["incremental_cost"]) < 40  # "no increase in health care costs"
    assert t["icc_practice"] == 0.03


# ------------------------------------------------------------------ overrides
def test_no_effect_override():
    t = generate_study(n_invited=200, rmdq_effect=[0, 0, 0], **FAST).truth
    assert t["rmdq_adjusted_difference"] == 0 and t["rmdq_difference_high_risk"] == 0


def test_risk_mix_override():
    s = generate_study(n_invited=20000, seed=2, risk_mix=[0.26, 0.46, 0.28], **FAST)
    p = s.patients[s.patients.invitation_outcome == "responded"]
    mix = sbst_risk(p).value_counts(normalize=True)
    n = len(p)
    for g, target in zip(("low", "medium", "high"), (0.26, 0.46, 0.28), strict=True):
        assert abs(mix[g] - target) < 4 * math.sqrt(target * (1 - target) / n), (g, mix[g])
    assert s.truth["parameters"]["risk_mix"] == [[0.26, 0.46, 0.28], [0.26, 0.46, 0.28]]


def test_practices_override():
    s = generate_study(n_invited=3000, n_practices=20, n_gps=150, n_physios=50, **FAST)
    assert len(s.practices) == 20 and s.practices.n_gps.sum() == 150
    assert (s.clinicians.profession == "physio").sum() == 50
    assert s.patients.practice_id.nunique() == 20


def test_followup_override():
    s = generate_study(n_invited=6000, followup_6m=[0.9, 0.9], followup_2m=0.3, **FAST)
    n_resp = (s.patients.invitation_outcome == "responded").sum()
    f = s.followups.time_point.value_counts() / n_resp
    assert abs(f[6] - 0.9) < 0.04 and abs(f[2] - 0.3) < 0.04


def test_icc_override_changes_practice_variation():
    def practice_sd(icc: float) -> float:
        s = generate_study(n_invited=20000, n_practices=20, n_gps=60, icc_practice=icc, followup_6m=1.0, **FAST)
        p = s.patients.set_index("patient_id")
        f = s.followups[s.followups.time_point == 6].set_index("patient_id")
        items = [f"rmdq_{i}" for i in range(1, 25)]
        change = p.loc[f.index, items].astype(float).sum(axis=1) - f[items].astype(float).sum(axis=1)
        return float(change.groupby(p.loc[f.index, "practice_id"]).mean().std())

    assert practice_sd(0.3) > 4 * practice_sd(0.0)
    assert generate_study(n_invited=100, icc_practice=0.1, **FAST).truth["icc_practice"] == 0.1


def test_n_invited_and_phase_share_overrides():
    s = generate_study(n_invited=777, phase1_share=0.5, **FAST)
    assert len(s.patients) == 777 and (s.patients.phase == 1).sum() == 388


@pytest.mark.parametrize(("overrides", "fragment"), [
    ({"no_such_setting": 1}, "valid parameters: age_mean"),
    ({"risk_mix": [0.5, 0.5]}, "risk_mix"),
    ({"icc_practice": 1.5}, "icc_practice"),
    ({"n_practices": "many"}, "must be a number"),
    ({"phase1_start": "soon"}, "ISO date"),
    ({"followup_6m": [0.5, 1.5]}, "probabilities"),
    ({"phase1_share": 1.0}, "phase1_share"),
])
def test_bad_overrides_raise_clear_errors(overrides, fragment):
    with pytest.raises(SyntheticParameterError, match=fragment):
        generate_study(n_invited=100, **overrides)
    assert issubclass(SyntheticParameterError, BackpainError) and issubclass(SyntheticParameterError, ValueError)


def test_parse_override():
    assert parse_override("rmdq_effect=[0, 0, 2.3]") == ("rmdq_effect", [0, 0, 2.3])
    assert parse_override("icc_practice=0.1") == ("icc_practice", 0.1)
    assert parse_override("phase1_start=2010-01-01") == ("phase1_start", "2010-01-01")
    with pytest.raises(SyntheticParameterError):
        parse_override("icc_practice")


# ------------------------------------------------------------------ command line
def test_cli_synth(tmp_path, capsys):
    out = tmp_path / "s"
    rc = main(["synth", "--out", str(out), "--invited", "300", "--seed", "5", "--set", "rmdq_effect=[0,0,0]",
               "--set", "truth_mc_n=20000"])
    assert rc == 0 and "300 invited" in capsys.readouterr().out
    truth = json.loads((out / "truth.json").read_text())
    assert truth["rmdq_difference_high_risk"] == 0 and truth["parameters"]["seed"] == 5
    assert len(pd.read_csv(out / "patients.csv")) == 300
    rc = main(["synth", "--out", str(out), "--set", "bogus=1"])
    err = capsys.readouterr().err
    assert rc == 2 and "bogus" in err and "rmdq_effect" in err


def test_docs_list_every_parameter_and_truth_key():
    text = (ROOT / "docs" / "synthetic.md").read_text()
    missing = [k for k in DEFAULTS if f"`{k}`" not in text]
    assert not missing, f"docs/synthetic.md does not document {missing}"
    truth = json.loads((BUNDLED / "truth.json").read_text())
    undocumented = [k for k in truth if f"`{k}`" not in text]
    assert not undocumented, f"docs/synthetic.md does not explain truth key(s) {undocumented}"


def test_follow_up_is_missing_at_random_on_age_and_baseline_rmdq():
    """Older patients and those with less baseline disability return the 6-month questionnaire more often."""
    s = generate_study(n_invited=20000, seed=8, **FAST)
    p = s.patients[s.patients.invitation_outcome == "responded"].set_index("patient_id")
    p["rmdq"] = p[[f"rmdq_{i}" for i in range(1, 25)]].astype(float).sum(axis=1)
    returned = p.index.isin(s.followups.loc[s.followups.time_point == 6, "patient_id"])
    for col, sign in (("age", 1), ("rmdq", -1)):
        a, b = p.loc[returned, col].astype(float), p.loc[~returned, col].astype(float)
        diff = a.mean() - b.mean()
        se = math.sqrt(a.var() / len(a) + b.var() / len(b))
        assert sign * diff > 4 * se, (col, diff, se)
