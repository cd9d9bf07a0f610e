"""Chapter 04 functions: Table 2 counts and odds ratios, checked against independent routes."""

from __future__ import annotations

import math
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from backpain_analysis.disclosure import small_count_cells
from backpain_analysis.models import ModelError
from backpain_analysis.process import (
    PROCESS_MEASURES,
    forest_plot,
    process_of_care_table,
    shareable_process_table,
)

MEASURE = {m.measure: m for m in PROCESS_MEASURES}


def _two_by_two(events1: int, n1: int, events3: int, n3: int, column: str) -> pd.DataFrame:
    y = [1.0] * events1 + [0.0] * (n1 - events1) + [1.0] * events3 + [0.0] * (n3 - events3)
    return pd.DataFrame({"phase": [1] * n1 + [3] * n3, "consented_records": 1.0, column: y})


@pytest.mark.parametrize(
    ("measure", "counts", "published"),
    [
        # Foster et al. 2014 Table 2 (domain.md): events / consenters per phase, OR (95% CI), p
        ("reconsulted", (88, 307, 159, 421), (1.51, 1.10, 2.07, 0.01)),
        ("sickness_certificate", (45, 307, 40, 421), (0.61, 0.39, 0.96, 0.03)),
        ("opioids", (88, 307, 201, 421), (2.27, 1.66, 3.11, 0.0005)),
        ("non_opioid_analgesics", (66, 307, 53, 421), (0.53, 0.35, 0.78, 0.001)),
    ],
)
def test_unadjusted_or_reproduces_published_table2(measure, counts, published):
    m = MEASURE[measure]
    t = process_of_care_table(_two_by_two(*counts, m.column), measures=[m], adjust_for=())
    row = t.iloc[0]
    assert (row["events_phase1"], row["n_phase1"], row["events_phase3"], row["n_phase3"]) == counts
    assert row["pct_phase1"] == pytest.approx(100 * counts[0] / counts[1])
    assert round(row["estimate"], 2) == published[0]
    assert round(row["ci_low"], 2) == pytest.approx(published[1], abs=0.011)
    assert round(row["ci_high"], 2) == pytest.approx(published[2], abs=0.011)
    if published[3] >= 0.01:
        assert round(row["p_value"], 2) == published[3]
    else:
        assert row["p_value"] < 0.001 or row["p_value"] < published[3] * 2


def test_unadjusted_or_equals_woolf_by_hand():
    a, n1, c, n3 = 23, 150, 41, 170  # phase 1 events / n, phase 3 events / n
    t = process_of_care_table(_two_by_two(a, n1, c, n3, "imaging"), measures=[MEASURE["imaging"]], adjust_for=())
    b, d = n1 - a, n3 - c
    log_or = math.log((c * b) / (d * a))
    se = math.sqrt(1 / a + 1 / b + 1 / c + 1 / d)
    assert t["estimate"].iloc[0] == pytest.approx(math.exp(log_or), rel=1e-8)
    assert t["ci_low"].iloc[0] == pytest.approx(math.exp(log_or - 1.959964 * se), rel=1e-5)
    assert t["ci_high"].iloc[0] == pytest.approx(math.exp(log_or + 1.959964 * se), rel=1e-5)
    assert t["p_value"].iloc[0] == pytest.approx(2 * stats.norm.sf(abs(log_or / se)), rel=1e-5)


def _records_frame(n: int = 900, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    phase = rng.choice([1, 3], size=n, p=[0.4, 0.6])
    risk = rng.choice(["low", "medium", "high"], size=n, p=[0.38, 0.42, 0.2])
    age = rng.normal(53, 15, size=n)
    sex = rng.choice(["female", "male"], size=n)
    lin = -1.0 + 0.9 * (phase == 3) + 0.02 * (age - 53) + 0.4 * (sex == "male") + 0.6 * (risk == "high")
    referral = (rng.random(n) < 1 / (1 + np.exp(-lin))).astype(float)
    sick = (rng.random(n) < 1 / (1 + np.exp(-(-1.7 - 0.5 * (phase == 3) + 0.5 * (risk != "low"))))).astype(float)
    consent = (rng.random(n) < 0.8).astype(float)
    df = pd.DataFrame(
        {
            "patient_id": [f"PAT{i:05d}" for i in range(n)],
            "phase": phase,
            "age": age,
            "sex": pd.Categorical(sex, categories=["female", "male"]),
            "risk_group": pd.Categorical(risk, categories=["low", "medium", "high"], ordered=True),
            "consented_records": consent,
            "physio_referral": np.where(consent == 1, referral, np.nan),
            "sickness_certificate": np.where(consent == 1, sick, np.nan),
        }
    )
    return df


def test_adjusted_or_matches_pingouin_logistic_regression():
    import pingouin as pg

    df = _records_frame()
    m = MEASURE["medium_high_referred"]
    t = process_of_care_table(df, measures=[m])
    row = t.iloc[0]
    sub = df[(df["consented_records"] == 1) & df["risk_group"].isin(["medium", "high"])].dropna(
        subset=["physio_referral"]
    )
    x = pd.DataFrame(
        {
            "phase3": (sub["phase"] == 3).astype(float),
            "age": sub["age"],
            "male": (sub["sex"] == "male").astype(float),
            "high": (sub["risk_group"] == "high").astype(float),
        }
    )
    with warnings.catch_warnings():
        # pingouin 0.7 may emit pandas deprecation warnings internally (tooling.md)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        res = pg.logistic_regression(x, sub["physio_referral"], alpha=0.05).set_index("names")
    coef = float(res.loc["phase3", "coef"])
    se = float(res.loc["phase3", "se"])
    assert row["adjusted_estimate"] == pytest.approx(math.exp(coef), rel=1e-4)
    assert row["adjusted_ci_low"] == pytest.approx(math.exp(coef - 1.959964 * se), rel=1e-3)
    assert row["adjusted_p_value"] == pytest.approx(float(res.loc["phase3", "pval"]), rel=1e-3, abs=1e-12)
    assert row["n_adjusted"] == len(sub)
    # denominators: consenters in medium/high risk with a known value, per phase
    assert row["n_phase1"] == int((sub["phase"] == 1).sum())
    assert row["events_phase3"] == int(sub.loc[sub["phase"] == 3, "physio_referral"].sum())


def test_low_risk_measure_counts_the_non_referred_and_drops_constant_risk_group():
    df = _records_frame()
    t = process_of_care_table(df, measures=[MEASURE["low_risk_not_referred"]])
    low = df[(df["consented_records"] == 1) & (df["risk_group"] == "low")]
    p1 = low.loc[low["phase"] == 1, "physio_referral"]
    assert t["events_phase1"].iloc[0] == int((p1 == 0).sum())
    assert t["n_phase1"].iloc[0] == len(p1)
    # not referred is the complement: its OR is the inverse of the referral OR
    ref = process_of_care_table(
        df[df["risk_group"] == "low"],
        measures=[type(MEASURE["reconsulted"])("r", "referred", "physio_referral")],
        adjust_for=(),
    )
    assert t["estimate"].iloc[0] == pytest.approx(1 / ref["estimate"].iloc[0])
    assert np.isfinite(t["adjusted_estimate"].iloc[0])  # risk group left out of the adjusted model


def test_table_has_every_published_measure_and_result_columns():
    assert [m.measure for m in PROCESS_MEASURES][:4] == ["low_risk_not_referred", "medium_high_referred",
                                                          "matched_referral", "reconsulted"]
    assert len(PROCESS_MEASURES) == 14  # the 13 rows of the published Table 2 and the combined matched referral
    df = _records_frame()
    t = process_of_care_table(df, measures=[MEASURE["sickness_certificate"], MEASURE["medium_high_referred"]])
    for col in ("measure", "n_phase1", "n_phase3", "events_phase1", "pct_phase3", "estimate", "ci_low",
                "ci_high", "p_value", "adjusted_estimate", "adjusted_p_value"):
        assert col in t.columns
    assert (t["ci_low"] < t["estimate"]).all() and (t["estimate"] < t["ci_high"]).all()


def test_not_estimable_or_is_nan_with_a_note_and_bad_values_raise():
    df = _two_by_two(0, 50, 10, 60, "blood_test")
    t = process_of_care_table(df, measures=[MEASURE["blood_test"]], adjust_for=())
    assert math.isnan(t["estimate"].iloc[0])
    assert "not estimable" in t["note"].iloc[0]
    bad = _two_by_two(5, 50, 10, 60, "blood_test").assign(blood_test=2.0)
    with pytest.raises(ModelError, match="must be 0/1"):
        process_of_care_table(bad, measures=[MEASURE["blood_test"]], adjust_for=())
    with pytest.raises(ModelError, match="imaging"):
        process_of_care_table(df, measures=[MEASURE["imaging"]])


def test_combined_matched_referral_counts_both_kinds_of_match():
    df = _records_frame()
    low = df["risk_group"] == "low"
    df["matched_referral"] = np.where(low, 1 - df["physio_referral"], df["physio_referral"])
    t = process_of_care_table(df, measures=[MEASURE["matched_referral"], MEASURE["low_risk_not_referred"],
                                            MEASURE["medium_high_referred"]], adjust_for=()).set_index("measure")
    for col in ("events_phase1", "n_phase1", "events_phase3", "n_phase3"):
        assert t.loc["matched_referral", col] == t.loc["low_risk_not_referred", col] + t.loc["medium_high_referred", col]


def test_shareable_table_hides_small_counts():
    df = _two_by_two(3, 60, 12, 70, "antidepressants")
    t = process_of_care_table(df, measures=[MEASURE["antidepressants"]], adjust_for=())
    assert small_count_cells(t, ["events_phase1"])  # the raw table would break the rule
    shared = shareable_process_table(t)
    assert not small_count_cells(shared, ["n_phase1", "events_phase1", "n_phase3", "events_phase3"])
    assert shared["pct_phase1"].iloc[0] == "*" and shared["estimate"].iloc[0] == "*"
    assert shared["events_phase3"].iloc[0] == 12


def test_forest_plot_rows_and_reference_line():
    t = pd.DataFrame({"label": ["A", "B", "C"], "estimate": [0.5, 1.2, 2.0], "ci_low": [0.3, 0.9, 1.5],
                      "ci_high": [0.8, 1.6, 2.7], "adjusted_estimate": [0.55, 1.1, 2.1],
                      "adjusted_ci_low": [0.3, 0.8, 1.4], "adjusted_ci_high": [0.9, 1.5, 3.0], "truth": [0.5, 1, 2]})
    fig = forest_plot(t, series={"unadjusted": ("estimate", "ci_low", "ci_high"),
                                 "adjusted": ("adjusted_estimate", "adjusted_ci_low", "adjusted_ci_high")},
                      truth="truth")
    ax = fig.axes[0]
    assert [tick.get_text() for tick in ax.get_yticklabels()] == ["A", "B", "C"]
    assert ax.get_xscale() == "log"
    assert sorted(text.get_text() for text in ax.get_legend().get_texts()) == ["adjusted", "true value", "unadjusted"]
    plt.close(fig)


def test_clustered_adjusted_or_uses_the_cluster_jackknife_family_se_and_g_minus_1_df():
    """Mancl-DeRouen SE by a dense re-derivation (one-step leave-cluster-out form) and t on G - 1 df."""
    import statsmodels.api as sm
    from scipy import stats

    df = _records_frame()
    rng = np.random.default_rng(4)
    df = df.assign(practice_id=[f"P{i}" for i in rng.integers(0, 7, len(df))])
    m = MEASURE["medium_high_referred"]
    row = process_of_care_table(df, measures=[m]).iloc[0]
    sub = df[(df["consented_records"] == 1) & df["risk_group"].isin(["medium", "high"])].dropna(
        subset=["physio_referral"])
    x = np.column_stack([np.ones(len(sub)), (sub["phase"] == 3).astype(float), sub["age"],
                         (sub["sex"] == "male").astype(float), (sub["risk_group"] == "high").astype(float)])
    y = sub["physio_referral"].to_numpy(float)
    fit = sm.GLM(y, x, family=sm.families.Binomial()).fit()
    mu = fit.fittedvalues
    w = mu * (1 - mu)
    bread = np.linalg.inv(x.T @ (x * w[:, None]))
    meat = np.zeros_like(bread)
    cl = sub["practice_id"].to_numpy()
    for c in np.unique(cl):
        i = cl == c
        h = (w[i][:, None] * x[i]) @ bread @ x[i].T  # H_g = W_g X_g B^-1 X_g' (canonical link)
        s = x[i].T @ np.linalg.solve(np.eye(i.sum()) - h, y[i] - mu[i])
        meat += np.outer(s, s)
    se = math.sqrt((bread @ meat @ bread)[1, 1])
    g = len(np.unique(cl))
    assert row["clustered_df"] == g - 1
    assert row["clustered_ci_low"] == pytest.approx(math.exp(fit.params[1] - stats.t.ppf(0.975, g - 1) * se), rel=1e-6)
    assert row["clustered_p_value"] == pytest.approx(2 * stats.t.sf(abs(fit.params[1]) / se, g - 1), rel=1e-6)
