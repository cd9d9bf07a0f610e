"""Calibration of the bundled synthetic study against the published IMPaCT Back figures (domain.md).

Every published proportion or mean must lie within ``Z`` standard errors of the value in the
default study, with the standard error computed here from the study's own denominator:

- proportion p with denominator n: sqrt(p (1 - p) / n), p the published value;
- mean with published SD s: s / sqrt(n); an SD: s / sqrt(2 (n - 1));
- outcomes after baseline (records, follow-up) are clustered in 7 practices: their standard
  errors are multiplied by the design effect sqrt(1 + (m - 1) ICC) with m the mean cluster size
  and ICC = 0.03 (the generator's practice ICC; random practice intercepts of SD 0.3 on the logit
  scale give 0.09 / (0.09 + pi^2 / 3) = 0.027).

Z = 4 keeps the chance that any of the ~150 checks fails by sampling alone small (two-sided
p = 6e-5 each) while a miscalibration of a few standard errors is still caught. The published
Table 3 values come from imputed (ITT) data; the synthetic values are from the observed
6-month responders, whose selection (MAR: older, lower baseline RMDQ) the generator reproduces.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from calibration_helpers import sbst_risk, table2_indicator

from backpain_analysis import load_study
from backpain_analysis.synthetic import eq5d_index

BUNDLED = Path(__file__).resolve().parents[1] / "data" / "synthetic"
Z = 4.0
ICC = 0.03
N_PRACTICES = 7


def deff(n: int) -> float:
    return math.sqrt(1 + (n / N_PRACTICES - 1) * ICC)


def check_prop(observed: pd.Series, published: float, clustered: bool = False, label: str = "") -> None:
    x = observed.dropna().astype(float)
    n = len(x)
    se = math.sqrt(published * (1 - published) / n) * (deff(n) if clustered else 1.0)
    assert abs(x.mean() - published) <= Z * se, f"{label}: {x.mean():.3f} vs published {published} (n={n}, se={se:.3f})"


def check_mean(observed: pd.Series, published: float, sd: float, clustered: bool = False, label: str = "") -> None:
    x = observed.dropna().astype(float)
    n = len(x)
    se = sd / math.sqrt(n) * (deff(n) if clustered else 1.0)
    assert abs(x.mean() - published) <= Z * se, f"{label}: {x.mean():.2f} vs published {published} (n={n}, se={se:.2f})"


def check_sd(observed: pd.Series, published: float, label: str = "") -> None:
    x = observed.dropna().astype(float)
    se = published / math.sqrt(2 * (len(x) - 1))
    assert abs(x.std() - published) <= Z * se, f"{label}: SD {x.std():.2f} vs published {published}"


def risk(df: pd.DataFrame) -> pd.Series:
    return sbst_risk(df)


def rmdq(df: pd.DataFrame) -> pd.Series:
    items = df[[f"rmdq_{i}" for i in range(1, 25)]].astype(float)
    return items.sum(axis=1).where(items.notna().all(axis=1))


@pytest.fixture(scope="module")
def study():
    t = load_study(BUNDLED).tables
    # load_study gives values as read; the bundled files are clean, so plain conversions suffice
    p = t["patients"].copy()
    for c in p.columns:
        if c not in ("patient_id", "practice_id", "gp_id", "consultation_date", "invitation_outcome",
                     "exclusion_reason", "sex", "baseline_date", "episode_duration"):
            p[c] = pd.to_numeric(p[c])
    f = t["followups"].apply(lambda s: pd.to_numeric(s) if s.name not in ("patient_id", "return_date") else s)
    r = t["records"].apply(lambda s: pd.to_numeric(s) if s.name not in ("patient_id", "review_date") else s)
    resp = p[p.invitation_outcome == "responded"].copy()
    resp["risk"] = risk(resp)
    resp["rmdq"] = rmdq(resp)
    resp["eq5d"] = eq5d_index(resp[["eq5d_mo", "eq5d_sc", "eq5d_ua", "eq5d_pd", "eq5d_ad"]].to_numpy())
    base = resp.set_index("patient_id")
    f = f.join(base[["rmdq", "pain_nrs", "tsk", "hads_anxiety", "hads_depression"]].add_suffix("_0"), on="patient_id")
    f = f.join(base[["phase", "risk"]], on="patient_id")
    f["rmdq"] = rmdq(f)
    f["risk_t"] = risk(f)
    r = r.join(base[["phase", "risk"]], on="patient_id")
    return {"invited": p, "resp": resp, "fu": f, "rec": r}


PHASES = (1, 3)


def by_phase(values: tuple[float, float]):
    return list(zip(PHASES, values, strict=True))


# ------------------------------------------------------------------ flow
@pytest.mark.parametrize(("phase", "n"), by_phase((630, 1017)))
def test_invited_per_phase(study, phase, n):
    assert (study["invited"].phase == phase).sum() == n


@pytest.mark.parametrize(("outcome", "published"), [
    ("excluded", (28 / 630, 47 / 1017)),
    ("non_respondent", (234 / 630, 416 / 1017)),
    ("responded", (368 / 630, 554 / 1017)),
])
def test_invitation_outcomes(study, outcome, published):
    inv = study["invited"]
    for phase, p in by_phase(published):
        check_prop(inv.loc[inv.phase == phase, "invitation_outcome"] == outcome, p, label=f"{outcome} phase {phase}")


@pytest.mark.parametrize(("reason", "counts"), [
    ("died_or_moved", (8, 23)), ("unable_to_respond", (1, 0)), ("declined", (11, 19)), ("no_back_pain", (6, 4)),
    ("comorbid_priority", (1, 0)), ("unable_to_take_part", (1, 1)),
])
def test_exclusion_reasons(study, reason, counts):
    inv = study["invited"]
    for (phase, k), n in zip(by_phase(counts), (630, 1017), strict=True):
        observed = inv.loc[inv.phase == phase, "exclusion_reason"].eq(reason)
        if k == 0:
            assert observed.sum() == 0, (reason, phase)
        else:
            check_prop(observed, k / n, label=f"{reason} phase {phase}")


@pytest.mark.parametrize(("what", "published"), [
    ("consent", (307 / 368, 421 / 554)), ("fu2", (254 / 368, 332 / 554)), ("fu6", (233 / 368, 314 / 554)),
])
def test_consent_and_follow_up(study, what, published):
    resp, fu = study["resp"], study["fu"]
    for phase, p in by_phase(published):
        r = resp[resp.phase == phase]
        if what == "consent":
            observed = r.record_review_consent == 1
        else:
            returned = set(fu.loc[fu.time_point == int(what[2]), "patient_id"])
            observed = r.patient_id.isin(returned)
        check_prop(observed, p, clustered=what != "consent", label=f"{what} phase {phase}")


# ------------------------------------------------------------------ Table 1
def test_invited_age_and_sex(study):
    inv = study["invited"]
    for phase, (m, s, fem) in by_phase(((47.9, 16.8, 340 / 630), (49.2, 15.8, 570 / 1017))):
        d = inv[inv.phase == phase]
        check_mean(d.age, m, s, label=f"invited age phase {phase}")
        check_sd(d.age, s, label=f"invited age phase {phase}")
        check_prop(d.sex == "female", fem, label=f"invited female phase {phase}")


@pytest.mark.parametrize(("phase", "age", "female", "manual", "employed", "time_off", "rmdq_ms", "pain_ms", "leg"), [
    (1, (53.0, 15.0), 0.55, 0.35, 0.62, 109 / 227, (8.7, 5.9), (5.3, 2.4), 0.76),
    (3, (54.1, 14.8), 0.60, 0.37, 0.59, 133 / 323, (8.4, 5.7), (5.0, 2.6), 0.74),
])
def test_table1_baseline(study, phase, age, female, manual, employed, time_off, rmdq_ms, pain_ms, leg):
    d = study["resp"][study["resp"].phase == phase]
    check_mean(d.age, *age, label="age")
    check_sd(d.age, age[1], label="age")
    check_prop(d.sex == "female", female, label="female")
    check_prop(d.manual_occupation, manual, label="manual occupation")
    check_prop(d.employed, employed, label="employed")
    check_prop(d.time_off_work[d.employed == 1], time_off, label="time off work")
    check_mean(d.rmdq, *rmdq_ms, label="RMDQ")
    check_sd(d.rmdq, rmdq_ms[1], label="RMDQ")
    check_mean(d.pain_nrs, *pain_ms, label="pain")
    check_sd(d.pain_nrs, pain_ms[1], label="pain")
    check_prop(d.leg_pain, leg, label="leg pain")


@pytest.mark.parametrize(("category", "published"), [
    ("lt_1m", (75 / 368, 94 / 554)), ("1_3m", (62 / 368, 102 / 554)), ("3_6m", (75 / 368, 111 / 554)),
    ("6m_3y", (82 / 368, 130 / 554)), ("gt_3y", (74 / 368, 117 / 554)),
])
def test_episode_duration(study, category, published):
    for phase, p in by_phase(published):
        d = study["resp"][study["resp"].phase == phase]
        check_prop(d.episode_duration == category, p, label=f"episode {category} phase {phase}")


@pytest.mark.parametrize(("group", "published"), [
    ("low", (136 / 368, 214 / 554)), ("medium", (151 / 368, 232 / 554)), ("high", (81 / 368, 108 / 554)),
])
def test_risk_mix_from_the_scoring_rules(study, group, published):
    for phase, p in by_phase(published):
        d = study["resp"][study["resp"].phase == phase]
        check_prop(d.risk == group, p, label=f"{group} risk phase {phase}")


@pytest.mark.parametrize(("group", "published"), [("low", 0.725), ("medium", 0.540), ("high", 0.325)])
def test_baseline_eq5d_by_risk_group(study, group, published):
    """STarT Back trial values (a different population): SD 0.30 assumed for the standard error."""
    d = study["resp"]
    check_mean(d.eq5d[d.risk == group], published, 0.30, label=f"EQ-5D {group}")


# ------------------------------------------------------------------ Table 2
@pytest.mark.parametrize(("name", "published"), [
    ("low_not_referred", (0.65, 0.68)), ("medhigh_referred", (0.40, 0.72)), ("reconsulted", (0.29, 0.38)),
    ("nsaids", (0.44, 0.38)), ("antidepressants", (0.10, 0.10)), ("non_opioid_analgesics", (0.22, 0.13)),
    ("opioids_any", (0.29, 0.48)), ("opioids_strong", (0.24, 0.27)), ("opioids_weak_only", (0.05, 0.21)),
    ("neuromodulators", (0.06, 0.05)), ("sickness_certificate", (0.15, 0.09)), ("blood_test", (0.36, 0.37)),
    ("imaging", (0.15, 0.13)),
])
def test_table2_process_of_care(study, name, published):
    rec = study["rec"]
    for phase, p in by_phase(published):
        observed = table2_indicator(rec[rec.phase == phase], name)
        check_prop(observed, p, clustered=True, label=f"{name} phase {phase}")


# ------------------------------------------------------------------ Table 3
def _six(study, phase):
    f = study["fu"]
    return f[(f.time_point == 6) & (f.phase == phase)]


@pytest.mark.parametrize(("phase", "rmdq_change", "mcid", "pain", "tsk", "anx", "dep"), [
    (1, (2.2, 6.0), 0.42, (1.7, 2.8), (2.5, 8.3), (1.0, 4.7), (1.0, 3.7)),
    (3, (2.7, 5.5), 0.47, (1.9, 3.2), (3.6, 11.2), (1.2, 4.7), (1.4, 3.7)),
])
def test_table3_changes(study, phase, rmdq_change, mcid, pain, tsk, anx, dep):
    d = _six(study, phase)
    change = d.rmdq_0 - d.rmdq
    check_mean(change, *rmdq_change, clustered=True, label="RMDQ change")
    check_prop((change >= 0.3 * d.rmdq_0).where(change.notna()), mcid, clustered=True, label="RMDQ MCID")
    check_mean(d.pain_nrs_0 - d.pain_nrs, *pain, clustered=True, label="pain change")
    check_mean(d.tsk_0 - d.tsk, *tsk, clustered=True, label="TSK change")
    check_mean(d.hads_anxiety_0 - d.hads_anxiety, *anx, clustered=True, label="HADS anxiety change")
    check_mean(d.hads_depression_0 - d.hads_depression, *dep, clustered=True, label="HADS depression change")
    # spread (issue 17): published SDs of the change scores; HADS SDs are published for phase 3 only
    check_sd(change, rmdq_change[1], label="RMDQ change")
    check_sd(d.pain_nrs_0 - d.pain_nrs, pain[1], label="pain change")
    check_sd(d.tsk_0 - d.tsk, tsk[1], label="TSK change")
    if phase == 3:
        check_sd(d.hads_anxiety_0 - d.hads_anxiety, anx[1], label="HADS anxiety change")
        check_sd(d.hads_depression_0 - d.hads_depression, dep[1], label="HADS depression change")


@pytest.mark.parametrize(("code", "published"), [
    (1, (38 / 368, 63 / 554)), (2, (102 / 368, 178 / 554)), (3, (88 / 368, 129 / 554)), (4, (95 / 368, 127 / 554)),
    (56, (45 / 368, 57 / 554)),
])
def test_table3_global_change(study, code, published):
    for phase, p in by_phase(published):
        g = _six(study, phase).global_change
        observed = (g >= 5) if code == 56 else (g == code)
        check_prop(observed, p, clustered=True, label=f"global change {code} phase {phase}")


@pytest.mark.parametrize(("group", "published"), [("low", (0.65, 0.73)), ("medium", (0.26, 0.22)), ("high", (0.09, 0.05))])
def test_table3_six_month_risk(study, group, published):
    for phase, p in by_phase(published):
        check_prop(_six(study, phase).risk_t == group, p, clustered=True, label=f"6-month {group} phase {phase}")


@pytest.mark.parametrize(("phase", "days", "care", "results"), [
    (1, (7.9, 23.5), 0.71, 0.59), (3, (4.3, 14.5), 0.70, 0.70),
])
def test_table3_days_off_and_satisfaction(study, phase, days, care, results):
    d = _six(study, phase)
    check_mean(d.days_off_work, *days, clustered=True, label="days off work")
    check_prop(d.satisfied_care, care, clustered=True, label="satisfied with care")
    check_prop(d.satisfied_results, results, clustered=True, label="satisfied with results")
