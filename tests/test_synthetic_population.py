"""The effect-generating parameters come back out of a large synthetic study.

One study of 150,000 invited patients in 60 practices (so that the realized practice effects
average out, as in the Monte Carlo population of the truth) is analysed with simple
estimators; each estimate must lie within 4 of its own standard errors of ``truth``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from backpain_analysis.synthetic import generate_study

Z = 4.0


@pytest.fixture(scope="module")
def big():
    s = generate_study(n_invited=150_000, seed=99, n_practices=60, n_gps=240, truth_mc_n=200_000)
    p = s.patients[s.patients.invitation_outcome == "responded"].set_index("patient_id")
    items = [f"rmdq_{i}" for i in range(1, 25)]
    p = p.assign(rmdq=p[items].astype(float).sum(axis=1, skipna=False))
    x = p[[f"sbst_{i}" for i in range(1, 10)]].astype(float)
    item9 = (x.sbst_9 >= 3).astype(float)
    total = x.iloc[:, :8].sum(axis=1) + item9
    psych = x[["sbst_5", "sbst_6", "sbst_7", "sbst_8"]].sum(axis=1) + item9
    p["risk"] = np.where(total <= 3, "low", np.where(psych >= 4, "high", "medium"))
    f6 = s.followups[s.followups.time_point == 6].set_index("patient_id")
    f6 = f6.assign(rmdq6=f6[items].astype(float).sum(axis=1, skipna=False)).join(
        p[["rmdq", "risk", "phase", "age", "employed"]])
    rec = s.records.set_index("patient_id").join(p[["risk", "phase"]])
    return s.truth, p, f6, rec


def ols(y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    beta, *_ = np.linalg.lstsq(x, y, rcond=None)
    resid = y - x @ beta
    cov = np.linalg.inv(x.T @ x) * (resid @ resid) / (len(y) - x.shape[1])
    return beta, np.sqrt(np.diag(cov))


def log_or(y: pd.Series, phase: pd.Series) -> tuple[float, float]:
    a, b = ((y == 1) & (phase == 3)).sum(), ((y == 0) & (phase == 3)).sum()
    c, d = ((y == 1) & (phase == 1)).sum(), ((y == 0) & (phase == 1)).sum()
    return math.log(a * d / (b * c)), math.sqrt(1 / a + 1 / b + 1 / c + 1 / d)


@pytest.mark.parametrize("group", ["low", "medium", "high"])
def test_rmdq_change_regression_recovers_the_group_effect(big, group):
    """ANCOVA on complete cases: valid because follow-up is MAR given age and baseline RMDQ."""
    truth, _, f6, _ = big
    d = f6[(f6.risk == group)].dropna(subset=["rmdq", "rmdq6"])
    x = np.column_stack([np.ones(len(d)), (d.phase == 3).astype(float), d.rmdq, d.age])
    beta, se = ols((d.rmdq - d.rmdq6).to_numpy(), x)
    assert abs(beta[1] - truth[f"rmdq_difference_{group}_risk"]) <= Z * se[1], (beta[1], se[1])


def test_rmdq_overall_adjusted_difference(big):
    truth, _, f6, _ = big
    d = f6.dropna(subset=["rmdq", "rmdq6"])
    dummies = pd.get_dummies(d.risk)[["medium", "high"]].astype(float).to_numpy()
    x = np.column_stack([np.ones(len(d)), (d.phase == 3).astype(float), d.rmdq, d.age, dummies])
    beta, se = ols((d.rmdq - d.rmdq6).to_numpy(), x)
    assert abs(beta[1] - truth["rmdq_adjusted_difference"]) <= Z * se[1], (beta[1], se[1])


@pytest.mark.parametrize(("key", "column"), [
    ("sickness_certificate_or", "sickness_certificate"), ("opioids_or", "opioids_any"),
    ("matched_referral_or", "matched_referral"),
])
def test_process_odds_ratios(big, key, column):
    truth, _, _, rec = big
    if column == "opioids_any":
        y = np.maximum(rec.opioids_strong, rec.opioids_weak)
    elif column == "matched_referral":
        y = np.where(rec.risk == "low", 1 - rec.physio_referral, rec.physio_referral)
    else:
        y = rec[column]
    est, se = log_or(pd.Series(np.asarray(y, dtype=float), index=rec.index), rec.phase)
    assert abs(est - math.log(truth[key])) <= Z * se, (math.exp(est), truth[key])


def test_satisfaction_and_days_off(big):
    truth, _, f6, _ = big
    est, se = log_or(f6.satisfied_results.astype(float), f6.phase)
    # among 6-month responders (MAR on age and baseline RMDQ, which barely move this marginal OR)
    assert abs(est - math.log(truth["satisfied_results_or"])) <= Z * se
    d = f6[f6.employed == 1].days_off_work.astype(float)
    m3, m1 = d[f6.phase == 3], d[f6.phase == 1]
    ratio = m3.mean() / m1.mean()
    se_log = math.sqrt(m3.var() / len(m3) / m3.mean() ** 2 + m1.var() / len(m1) / m1.mean() ** 2)
    assert abs(math.log(ratio) - math.log(truth["days_off_work_ratio"])) <= Z * se_log, ratio
