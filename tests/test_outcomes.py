"""Chapter 05 functions: Table 3 estimates checked against independent routes and worked cases."""

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

from backpain_analysis.imputation import pool_rubin
from backpain_analysis.models import ModelError, fit_mixed_kr
from backpain_analysis.outcomes import (
    PRIMARY_COVARIATES,
    SECONDARY_OUTCOMES,
    OutcomeSpec,
    add_truth,
    category_distribution,
    impute_outcomes,
    primary_analysis,
    risk_group_analysis,
    rmdq_trajectory,
    secondary_outcomes_table,
    trajectory_plot,
)

RISK = ["low", "medium", "high"]
EPISODE = ["lt_1m", "1_3m", "3_6m", "6m_3y", "gt_3y"]
GLOBAL = ["completely recovered", "much better", "better", "no change", "worse", "much worse"]


def analysis_frame(n: int = 900, seed: int = 1, effects=(0.1, 0.5, 2.3), missing: float = 0.35) -> pd.DataFrame:
    """A small analysis dataset following docs/architecture.md, with known phase effects by risk group."""
    rng = np.random.default_rng(seed)
    phase = rng.choice([1, 3], size=n, p=[0.4, 0.6])
    g = rng.choice(3, size=n, p=[0.38, 0.41, 0.21])
    age = rng.normal(53, 15, n).round()
    male = rng.random(n) < 0.42
    episode = rng.integers(0, 5, n)
    practice = rng.integers(1, 8, n)
    rmdq0 = np.clip(np.round(4 + 3.5 * g + rng.normal(0, 4, n)), 0, 24)
    effect = np.asarray(effects)[g] * (phase == 3)
    u = rng.normal(0, 0.6, 8)[practice]
    change = 0.35 * rmdq0 - 0.02 * (age - 53) - 1.0 + effect + u + rng.normal(0, 4.5, n)
    rmdq6 = np.clip(np.round(rmdq0 - change), 0, 24)
    rmdq2 = np.clip(np.round(rmdq0 - 0.7 * change + rng.normal(0, 2, n)), 0, 24)
    pain0 = np.clip(np.round(3 + 0.8 * g + rng.normal(0, 2, n)), 0, 10)
    pain6 = np.clip(np.round(pain0 - 0.12 * change - 0.5 + rng.normal(0, 1.8, n)), 0, 10)
    employed = (rng.random(n) < 0.6).astype(float)
    days = rng.negative_binomial(0.3, 0.3 / (0.3 + 6 * np.exp(-0.7 * (phase == 3) + 0.3 * g)), n).astype(float)
    latent = -0.35 * change + rng.logistic(size=n)
    gc = np.digitize(latent, [-3.0, -1.5, -0.2, 1.0, 2.5])
    sat = (rng.random(n) < 1 / (1 + np.exp(-(0.4 + 0.4 * (phase == 3) + 0.15 * change)))).astype(float)
    risk6 = np.clip(g - (change > 3) - (rng.random(n) < 0.2) + (rng.random(n) < 0.1), 0, 2)
    fu = rng.random(n) > missing + 0.01 * (rmdq0 - 8) - 0.003 * (age - 53)  # MAR on baseline
    df = pd.DataFrame(
        {
            "patient_id": [f"PAT{i:05d}" for i in range(n)],
            "practice_id": [f"P{p:02d}" for p in practice],
            "phase": phase.astype("int64"),
            "age": age,
            "sex": pd.Categorical(np.where(male, "male", "female"), categories=["female", "male"]),
            "female": (~male).astype(float),
            "employed": employed,
            "episode_duration": pd.Categorical.from_codes(episode, categories=EPISODE, ordered=True),
            "risk_group": pd.Categorical.from_codes(g, categories=RISK, ordered=True),
            "sbst_total_0m": np.clip(np.round(2 + 2.2 * g + rng.normal(0, 1, n)), 0, 9),
            "rmdq_0m": rmdq0,
            "rmdq_2m": np.where(fu | (rng.random(n) < 0.5), rmdq2, np.nan),
            "rmdq_6m": np.where(fu, rmdq6, np.nan),
            "pain_nrs_0m": pain0,
            "pain_nrs_6m": np.where(fu, pain6, np.nan),
            "global_change_6m": pd.Categorical.from_codes(np.where(fu, gc, -1), categories=GLOBAL, ordered=True),
            "risk_group_6m": pd.Categorical.from_codes(np.where(fu, risk6, -1), categories=RISK, ordered=True),
            "days_off_work_6m": np.where(fu & (employed == 1), days, np.nan),
            "satisfied_results_6m": np.where(fu, sat, np.nan),
        }
    )
    df["rmdq_change_6m"] = df["rmdq_0m"] - df["rmdq_6m"]
    df["pain_change_6m"] = df["pain_nrs_0m"] - df["pain_nrs_6m"]
    df["rmdq_mcid_6m"] = np.where(df["rmdq_6m"].isna(), np.nan,
                                  ((df["rmdq_0m"] > 0) & (df["rmdq_0m"] - df["rmdq_6m"] >= 0.3 * df["rmdq_0m"])))
    return df


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return analysis_frame()


@pytest.fixture(scope="module")
def imputations(frame) -> list[pd.DataFrame]:
    return impute_outcomes(frame, n_imputations=4, seed=3, max_iter=5)


def _dummies(sub: pd.DataFrame, interaction: bool = False) -> pd.DataFrame:
    x = pd.DataFrame(index=sub.index)
    phase3 = (sub["phase"] == 3).astype(float)
    if interaction:
        for level in RISK:  # phase effect per group as its own coefficient
            x[f"phase3_{level}"] = phase3 * (sub["risk_group"] == level)
    else:
        x["phase3"] = phase3
    x["rmdq_0m"] = sub["rmdq_0m"]
    x["age"] = sub["age"]
    x["male"] = (sub["sex"] == "male").astype(float)
    for level in EPISODE[1:]:
        x[f"ep_{level}"] = (sub["episode_duration"] == level).astype(float)
    for level in RISK[1:]:
        x[f"risk_{level}"] = (sub["risk_group"] == level).astype(float)
    return x


def _pingouin(x: pd.DataFrame, y: pd.Series) -> pd.DataFrame:
    import pingouin as pg

    with warnings.catch_warnings():
        # pingouin 0.7 may emit pandas deprecation warnings internally (tooling.md)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        return pg.linear_regression(x, y, alpha=0.05).set_index("names")


def test_primary_complete_case_matches_pingouin(frame):
    table = primary_analysis(frame, primary_model="ols", sensitivity=False)
    row = table.set_index("analysis").loc["complete cases"]
    sub = frame.dropna(subset=["rmdq_change_6m"])
    res = _pingouin(_dummies(sub), sub["rmdq_change_6m"])
    assert row["estimate"] == pytest.approx(res.loc["phase3", "coef"], rel=1e-8)
    # pingouin rounds nothing in the coefficient table except CI columns at 2 dp by default:
    # compare the CI through the SE instead
    se = float(res.loc["phase3", "se"])
    half = stats.t.ppf(0.975, len(sub) - res.shape[0]) * se
    assert row["ci_high"] - row["estimate"] == pytest.approx(half, rel=1e-6)
    assert row["p_value"] == pytest.approx(float(res.loc["phase3", "pval"]), rel=1e-6)
    assert row["n_phase1"] + row["n_phase3"] == len(sub)
    assert bool(row["primary"])  # complete cases are primary only when there are no imputations


def test_primary_multiple_imputation_is_rubin_over_per_imputation_ols(frame, imputations):
    table = primary_analysis(frame, imputations, primary_model="ols", sensitivity=False).set_index("analysis")
    est, var = [], []
    for imp in imputations:
        x = _dummies(imp).assign(const=1.0)
        y = imp["rmdq_change_6m"].to_numpy()
        beta, rss, *_ = np.linalg.lstsq(x.to_numpy(), y, rcond=None)
        dfr = len(y) - x.shape[1]
        cov = rss[0] / dfr * np.linalg.inv(x.to_numpy().T @ x.to_numpy())
        est.append(beta[0])
        var.append(cov[0, 0])
    pooled = pool_rubin(est, var, df_complete=len(frame) - 11)
    row = table.loc["multiple imputation"]
    assert bool(row["primary"])
    assert row["estimate"] == pytest.approx(pooled["estimate"], rel=1e-8)
    assert row["ci_low"] == pytest.approx(pooled["ci_low"], rel=1e-6)
    assert row["p_value"] == pytest.approx(pooled["p_value"], rel=1e-6)
    assert row["n_phase1"] + row["n_phase3"] == len(frame)  # intention to treat: everyone analysed
    assert 0 < row["fmi"] < 1


def test_primary_mixed_model_pools_every_imputation_by_hand(frame, imputations):
    table = primary_analysis(frame, imputations).set_index("analysis")
    assert list(table.index) == ["multiple imputation", "complete cases", "OLS as published, multiple imputation",
                                 "OLS as published, complete cases", "practice fixed effects, CR2, complete cases"]
    fits = [fit_mixed_kr(imp, "rmdq_change_6m", list(PRIMARY_COVARIATES)) for imp in imputations]
    est = np.array([f["coef"] for f in fits])
    var = np.array([f["se"] ** 2 for f in fits])
    m = len(fits)
    # Rubin's rules and Barnard-Rubin df written out (complete-data df = median KR df)
    ubar, b = var.mean(), est.var(ddof=1)
    t = ubar + (1 + 1 / m) * b
    lam = (1 + 1 / m) * b / t
    nu_com = np.median([f["df"] for f in fits])
    nu_old = (m - 1) / lam ** 2
    nu_obs = (nu_com + 1) / (nu_com + 3) * nu_com * (1 - lam)
    nu = nu_old * nu_obs / (nu_old + nu_obs)
    row = table.loc["multiple imputation"]
    assert bool(row["primary"]) and row["m"] == m
    assert row["estimate"] == pytest.approx(est.mean(), rel=1e-10)
    assert row["se"] == pytest.approx(np.sqrt(t), rel=1e-10)
    assert row["df"] == pytest.approx(nu, rel=1e-8)
    assert row["ci_high"] == pytest.approx(est.mean() + stats.t.ppf(0.975, nu) * np.sqrt(t), rel=1e-8)
    # ICC: practice variance over the sum of the three variance components, averaged over imputations
    icc = np.mean([f["var_practice"] / (f["var_practice"] + f["var_practice_phase"] + f["var_residual"])
                   for f in fits])
    assert row["icc"] == pytest.approx(icc, rel=1e-10)
    # Monte Carlo SE of the pooled estimate: sqrt(B / m) (White, Royston & Wood 2011)
    assert row["mc_error"] == pytest.approx(np.sqrt(b / m), rel=1e-10)
    assert np.isnan(table.loc["complete cases", "mc_error"])
    assert table.loc["practice fixed effects, CR2, complete cases", "df"] == frame["practice_id"].nunique() - 1
    with pytest.raises(ModelError, match="practice"):
        primary_analysis(frame.drop(columns="practice_id"))
    with pytest.raises(ModelError, match="primary_model"):
        primary_analysis(frame, primary_model="gee")


def test_risk_group_effects_match_a_reparameterized_model(frame):
    effects, tests = risk_group_analysis(frame, robust=False, model="ols")
    sub = frame.dropna(subset=["rmdq_change_6m"])
    x = _dummies(sub, interaction=True)
    res = _pingouin(x, sub["rmdq_change_6m"])
    for level in RISK:
        row = effects.set_index("risk_group").loc[level]
        assert row["estimate"] == pytest.approx(res.loc[f"phase3_{level}", "coef"], rel=1e-7)
        assert row["p_value"] == pytest.approx(float(res.loc[f"phase3_{level}", "pval"]), rel=1e-5)
        assert row["n_phase1"] == int(((sub["risk_group"] == level) & (sub["phase"] == 1)).sum())
    # interaction F by hand from the residual sums of squares of the nested models
    x_full = x.assign(const=1.0).to_numpy()
    x_red = _dummies(sub).assign(const=1.0).to_numpy()
    y = sub["rmdq_change_6m"].to_numpy()
    rss_f = np.sum((y - x_full @ np.linalg.lstsq(x_full, y, rcond=None)[0]) ** 2)
    rss_r = np.sum((y - x_red @ np.linalg.lstsq(x_red, y, rcond=None)[0]) ** 2)
    df_f = len(y) - x_full.shape[1]
    f_hand = ((rss_r - rss_f) / 2) / (rss_f / df_f)
    wald = tests.set_index("test").loc["Wald F"]
    assert wald["statistic"] == pytest.approx(f_hand, rel=1e-6)
    assert wald["p_value"] == pytest.approx(stats.f.sf(f_hand, 2, df_f), rel=1e-6)
    lr = tests.set_index("test").loc["likelihood ratio"]
    assert lr["statistic"] == pytest.approx(len(y) * math.log(rss_r / rss_f), rel=1e-6)


def test_risk_group_robust_standard_errors_are_hc3_by_hand(frame):
    effects, tests = risk_group_analysis(frame, model="ols")  # robust (HC3) by default
    sub = frame.dropna(subset=["rmdq_change_6m"])
    x = _dummies(sub, interaction=True).assign(const=1.0).to_numpy()
    y = sub["rmdq_change_6m"].to_numpy()
    xtx_inv = np.linalg.inv(x.T @ x)
    beta = xtx_inv @ x.T @ y
    resid = y - x @ beta
    leverage = np.einsum("ij,jk,ik->i", x, xtx_inv, x)
    meat = x.T @ (x * (resid**2 / (1 - leverage) ** 2)[:, None])
    cov = xtx_inv @ meat @ xtx_inv  # HC3 (MacKinnon & White 1985)
    dfr = len(y) - x.shape[1]
    cc = effects[effects["analysis"] == "complete cases"].set_index("risk_group")
    for i, level in enumerate(RISK):  # columns 0-2 are the per-group phase effects
        se = math.sqrt(cov[i, i])
        assert cc.loc[level, "estimate"] == pytest.approx(beta[i], rel=1e-7)
        assert cc.loc[level, "ci_high"] - cc.loc[level, "estimate"] == pytest.approx(
            stats.t.ppf(0.975, dfr) * se, rel=1e-6)
        assert cc.loc[level, "p_value"] == pytest.approx(2 * stats.t.sf(abs(beta[i]) / se, dfr), rel=1e-5)
    # robust Wald F of equal effects: contrasts high - low and medium - low
    r = np.zeros((2, x.shape[1]))
    r[0, [1, 0]] = [1, -1]
    r[1, [2, 0]] = [1, -1]
    diff = r @ beta
    f_hand = diff @ np.linalg.inv(r @ cov @ r.T) @ diff / 2
    assert tests.set_index("test").loc["Wald F", "statistic"] == pytest.approx(f_hand, rel=1e-6)


def test_risk_group_effects_after_imputation_are_pooled(frame, imputations):
    effects, tests = risk_group_analysis(frame, imputations)
    mi = effects[effects["analysis"] == "multiple imputation"].set_index("risk_group")
    assert list(mi.index) == RISK
    assert (mi["n_phase1"] + mi["n_phase3"]).sum() == len(frame)
    assert set(tests["test"]) == {"pooled Wald D1", "Wald F", "likelihood ratio"}
    d1 = tests.set_index("test").loc["pooled Wald D1"]
    assert d1["df_num"] == 2 and 0 <= d1["p_value"] <= 1
    # the high-risk effect (2.3) is larger than the low-risk one (0.1) in this frame
    assert mi.loc["high", "estimate"] > mi.loc["low", "estimate"]
    # mixed-model group effects pooled over every imputation, by hand (Rubin; BR df from the median KR df)
    for level in RISK:
        krs = []
        for imp in imputations:
            f = fit_mixed_kr(imp, "rmdq_change_6m", list(PRIMARY_COVARIATES), interaction="risk_group")["fit"]
            w = np.array([1.0 if (n == "phase3" or n.endswith(f"[T.{level}]") and n.startswith("phase3:")) else 0.0
                          for n in f.names])
            krs.append(f.kenward_roger(w))
        pooled = pool_rubin([k["estimate"] for k in krs], [k["se"] ** 2 for k in krs],
                            df_complete=float(np.median([k["df"] for k in krs])))
        assert mi.loc[level, "estimate"] == pytest.approx(pooled["estimate"], rel=1e-10)
        assert mi.loc[level, "ci_low"] == pytest.approx(pooled["ci_low"], rel=1e-8)
        assert mi.loc[level, "df"] == pytest.approx(pooled["df"], rel=1e-8)


def test_impute_outcomes_fills_followup_and_recomputes_derived(frame, imputations):
    assert len(imputations) == 4
    for imp in imputations:
        assert len(imp) == len(frame)
        for col in ("rmdq_6m", "rmdq_2m", "pain_nrs_6m", "global_change_6m", "risk_group_6m",
                    "satisfied_results_6m"):
            assert imp[col].notna().all(), col
        obs = frame["rmdq_6m"].notna()
        np.testing.assert_array_equal(imp.loc[obs, "rmdq_6m"], frame.loc[obs, "rmdq_6m"])
        np.testing.assert_allclose(imp["rmdq_change_6m"], imp["rmdq_0m"] - imp["rmdq_6m"])
        assert set(imp["rmdq_mcid_6m"].unique()) <= {0.0, 1.0}
        assert imp["rmdq_6m"].between(0, 24).all()
        # days off work is only asked of employed patients: never imputed for the others
        assert imp.loc[frame["employed"] == 0, "days_off_work_6m"].isna().all()
        assert imp.loc[frame["employed"] == 1, "days_off_work_6m"].notna().all()
        assert imp["global_change_6m"].dtype == frame["global_change_6m"].dtype
    again = impute_outcomes(frame, n_imputations=4, seed=3, max_iter=5)
    pd.testing.assert_frame_equal(again[2], imputations[2])


def test_unadjusted_ratio_and_odds_ratio_by_hand(frame):
    specs = [s for s in SECONDARY_OUTCOMES if s.outcome in ("days_off_work_6m", "satisfied_results_6m")]
    table = secondary_outcomes_table(frame, specs=specs).set_index("outcome")
    emp = frame[(frame["employed"] == 1)].dropna(subset=["days_off_work_6m"])
    means = emp.groupby("phase")["days_off_work_6m"].mean()
    # negative binomial with phase only: the fitted means are the phase means
    assert table.loc["days_off_work_6m", "estimate"] == pytest.approx(means[3] / means[1], rel=1e-6)
    assert table.loc["days_off_work_6m", "mean_phase1"] == pytest.approx(means[1])
    sat = frame.dropna(subset=["satisfied_results_6m"])
    a = sat.loc[sat["phase"] == 1, "satisfied_results_6m"]
    c = sat.loc[sat["phase"] == 3, "satisfied_results_6m"]
    odds = (c.mean() / (1 - c.mean())) / (a.mean() / (1 - a.mean()))
    assert table.loc["satisfied_results_6m", "estimate"] == pytest.approx(odds, rel=1e-6)
    assert table.loc["satisfied_results_6m", "events_phase1"] == int(a.sum())
    assert table.loc["satisfied_results_6m", "pct_phase3"] == pytest.approx(100 * c.mean())


def test_ordinal_odds_ratio_reduces_to_logistic_for_two_categories(frame):
    two = frame.assign(
        better=pd.Categorical(
            np.where(frame["rmdq_change_6m"].isna(), None,
                     np.where(frame["rmdq_change_6m"] >= 3, "improved", "not improved")),
            categories=["improved", "not improved"], ordered=True),
        improved=np.where(frame["rmdq_change_6m"].isna(), np.nan, (frame["rmdq_change_6m"] >= 3).astype(float)),
    )
    specs = [OutcomeSpec("better", "ordinal", "ordinal", ("age",)), OutcomeSpec("improved", "logistic", "logistic",
                                                                                ("age",))]
    t = secondary_outcomes_table(two, specs=specs, practice=None).set_index("outcome")
    assert t.loc["better", "estimate"] == pytest.approx(t.loc["improved", "estimate"], rel=1e-4)
    assert t.loc["better", "ci_low"] == pytest.approx(t.loc["improved", "ci_low"], rel=1e-3)


def test_table3_shape_and_direction(frame, imputations):
    specs = [s for s in SECONDARY_OUTCOMES if s.outcome in frame.columns]
    t = secondary_outcomes_table(frame, imputations, specs=specs)
    assert list(t["analysis"].unique()) == ["multiple imputation", "complete cases"]
    assert len(t) == 2 * len(specs)
    assert (t["ci_low"] <= t["estimate"]).all() and (t["estimate"] <= t["ci_high"]).all()
    g = t[(t["outcome"] == "global_change_6m") & (t["analysis"] == "multiple imputation")].iloc[0]
    # phase 3 improves more, so better global-change categories are more likely: OR > 1
    assert g["estimate"] > 1
    assert g["effect"].startswith("adjusted ordinal odds ratio")
    with pytest.raises(ModelError, match="tsk_change_6m"):
        secondary_outcomes_table(frame, specs=SECONDARY_OUTCOMES)


def test_trajectory_by_hand_and_plot(frame):
    traj = rmdq_trajectory(frame)
    assert len(traj) == 4 * 2 * 3
    row = traj[(traj["risk_group"] == "high") & (traj["phase"] == 3) & (traj["month"] == 6)].iloc[0]
    y = frame.loc[(frame["risk_group"] == "high") & (frame["phase"] == 3), "rmdq_6m"].dropna()
    assert row["n"] == len(y) and row["mean"] == pytest.approx(y.mean())
    assert row["ci_high"] - row["mean"] == pytest.approx(stats.t.ppf(0.975, len(y) - 1) * y.std() / math.sqrt(len(y)))
    fig = trajectory_plot(traj)
    assert len(fig.axes) == 4 and fig.axes[0].get_title() == "All patients"
    plt.close(fig)


def test_category_distribution_and_truth_column(frame):
    dist = category_distribution(frame, "global_change_6m")
    assert dist["category"].tolist() == GLOBAL
    assert dist["n_phase1"].sum() == frame.loc[frame["phase"] == 1, "global_change_6m"].notna().sum()
    assert dist["pct_phase3"].sum() == pytest.approx(100)
    t = add_truth(pd.DataFrame({"estimate": [1.0, 2.0]}), {"a": 0.7, "parameters": {}}, ["a", "b"])
    assert t["truth"].iloc[0] == 0.7 and math.isnan(t["truth"].iloc[1])
    assert "truth" not in add_truth(pd.DataFrame({"estimate": [1.0]}), None, ["a"])  # a real study: no column


def test_covariates_constant():
    assert PRIMARY_COVARIATES == ("rmdq_0m", "age", "sex", "episode_duration", "risk_group")


def test_ordinal_fit_is_at_the_optimum(frame):
    """The proportional-odds fit must sit at the maximum likelihood to 1e-6 (BFGS alone stops ~1e-4 away):
    re-optimise with scipy from a perturbed start and compare."""
    from scipy import optimize

    from backpain_analysis.models import fit_ordinal

    fit = fit_ordinal(frame, "global_change_6m", list(PRIMARY_COVARIATES))
    b = fit.params.to_numpy()
    ref = optimize.minimize(lambda x: -fit.model.loglike(x), b + 0.05, method="BFGS",
                            jac=lambda x: -fit.model.score(x), options={"gtol": 1e-9, "maxiter": 5000})
    assert np.abs(ref.x - b).max() < 1e-6
    assert np.abs(fit.model.score(b)).max() < 1e-5


def test_ordinal_scores_and_hessian_match_statsmodels_numerical_derivatives(frame):
    """fit_ordinal gives the model analytic per-patient scores and Hessian
    (the clustered sandwich of Table 3 uses both; both analytic); compare with statsmodels' own numerical derivatives
    of its log-likelihood on a fresh OrderedModel."""
    from statsmodels.miscmodels.ordinal_model import OrderedModel

    from backpain_analysis.models import fit_ordinal

    fit = fit_ordinal(frame, "global_change_6m", list(PRIMARY_COVARIATES))
    b = fit.params.to_numpy()
    ref = OrderedModel(fit.model.endog, fit.model.exog, distr="logit")
    assert np.abs(fit.model.score_obs(b) - ref.score_obs(b)).max() < 1e-6
    h, h_ref = fit.model.hessian(b), ref.hessian(b)
    assert np.abs(h - h_ref).max() < 1e-5 * np.abs(h_ref).max()
    assert fit.bse.to_numpy() == pytest.approx(np.sqrt(np.diag(np.linalg.inv(-h_ref))), rel=1e-4)


def test_table3_sds_are_sample_sds_and_clustered_effects_use_g_minus_1_df(frame):
    table = secondary_outcomes_table(frame, specs=[s for s in SECONDARY_OUTCOMES
                                                   if s.outcome in ("pain_change_6m", "rmdq_mcid_6m")])
    row = table[(table["outcome"] == "pain_change_6m") & (table["analysis"] == "complete cases")].iloc[0]
    for phase, col in ((1, "sd_phase1"), (3, "sd_phase3")):
        y = frame.loc[frame["phase"] == phase, "pain_change_6m"].dropna().to_numpy()
        assert row[col] == pytest.approx(np.std(y, ddof=1), rel=1e-12)
    # linear outcome: the mixed model with KR
    kr = fit_mixed_kr(frame, "pain_change_6m", ["pain_nrs_0m", "age", "sex", "episode_duration", "risk_group"])
    assert row["estimate"] == pytest.approx(kr["estimate"], rel=1e-10)
    assert row["ci_low"] == pytest.approx(kr["ci_low"], rel=1e-8)
    # binary outcome: Mancl-DeRouen SE with t on G - 1 df -> CI width from the t quantile
    from backpain_analysis.models import fit_logistic
    from backpain_analysis.small_sample import glm_mancl_derouen

    b = table[(table["outcome"] == "rmdq_mcid_6m") & (table["analysis"] == "complete cases")].iloc[0]
    fit = fit_logistic(frame, "rmdq_mcid_6m", list(PRIMARY_COVARIATES))
    used = fit.model.data.frame
    cov = glm_mancl_derouen(fit, frame.loc[used.index, "practice_id"])
    j = list(fit.params.index).index("phase3")
    se = np.sqrt(cov[j, j])
    g = frame["practice_id"].nunique()
    assert np.log(b["ci_high"]) - np.log(b["estimate"]) == pytest.approx(stats.t.ppf(0.975, g - 1) * se, rel=1e-8)


def test_table3_binary_mi_row_pools_every_imputation_with_g_minus_1_df(frame, imputations):
    from backpain_analysis.models import fit_logistic
    from backpain_analysis.small_sample import glm_mancl_derouen

    spec = [s for s in SECONDARY_OUTCOMES if s.outcome == "rmdq_mcid_6m"]
    row = secondary_outcomes_table(frame, imputations, specs=spec).set_index("analysis").loc["multiple imputation"]
    est, var = [], []
    for imp in imputations:
        fit = fit_logistic(imp, "rmdq_mcid_6m", list(PRIMARY_COVARIATES))
        j = list(fit.params.index).index("phase3")
        cov = glm_mancl_derouen(fit, imp.loc[fit.model.data.frame.index, "practice_id"])
        est.append(fit.params.iloc[j])
        var.append(cov[j, j])
    pooled = pool_rubin(est, var, df_complete=frame["practice_id"].nunique() - 1)
    assert row["estimate"] == pytest.approx(math.exp(pooled["estimate"]), rel=1e-8)
    assert row["ci_low"] == pytest.approx(math.exp(pooled["ci_low"]), rel=1e-6)
    assert row["p_value"] == pytest.approx(pooled["p_value"], rel=1e-6)


# ---------------------------------------------------------------------------------------- shared imputations


def _clustered_frame(seed: int = 5) -> pd.DataFrame:
    """analysis_frame with a strong practice-by-phase shift of the 6-month RMDQ (ICC about 0.15)."""
    df = analysis_frame(n=1100, seed=seed)
    rng = np.random.default_rng(seed)
    shift = {(p, ph): rng.normal(0, 2.0) for p in df["practice_id"].unique() for ph in (1, 3)}
    s = np.array([shift[(p, ph)] for p, ph in zip(df["practice_id"], df["phase"], strict=True)])
    df["rmdq_6m"] = np.clip(np.round(df["rmdq_6m"] + s), 0, 24)
    df["rmdq_change_6m"] = df["rmdq_0m"] - df["rmdq_6m"]
    return df


def test_imputation_with_practice_keeps_the_practice_variance():
    """The complete-case ICC (fit_mixed_kr, checked against lme4 in test_small_sample.py) survives
    imputation with practice in the model, and is diluted without it (issue 13: 0.040 -> 0.019)."""
    df = _clustered_frame()
    cc = fit_mixed_kr(df.assign(phase3=(df["phase"] == 3).astype(float)), "rmdq_change_6m", PRIMARY_COVARIATES,
                      period=None)
    with_practice = impute_outcomes(df, n_imputations=4, seed=1, max_iter=5, practice="practice_id")
    without = impute_outcomes(df, n_imputations=4, seed=1, max_iter=5, practice=None)
    icc_with = np.mean([fit_mixed_kr(i, "rmdq_change_6m", PRIMARY_COVARIATES, period=None)["icc"]
                        for i in with_practice])
    icc_without = np.mean([fit_mixed_kr(i, "rmdq_change_6m", PRIMARY_COVARIATES, period=None)["icc"]
                           for i in without])
    assert cc["icc"] > 0.05
    assert icc_with == pytest.approx(cc["icc"], rel=0.3)
    assert icc_without < 0.8 * icc_with


def test_shared_imputations_are_cached_and_equal_to_impute_outcomes(tmp_path, frame):
    from backpain_analysis.imputation import ImputedDatasets, shared_imputations

    a = shared_imputations(frame, n_imputations=3, seed=4, max_iter=3, cache_dir=tmp_path)
    files = list(tmp_path.glob("imputations_*.npz"))
    assert len(files) == 1 and not a.info["from_cache"]
    b = shared_imputations(frame, n_imputations=3, seed=4, max_iter=3, cache_dir=tmp_path)
    assert b.info["from_cache"] and isinstance(b, ImputedDatasets) and len(b) == 3
    direct = impute_outcomes(frame, n_imputations=3, seed=4, max_iter=3,
                             columns=[c for c in a.info["columns"] if c in frame.columns])
    for i in range(3):
        pd.testing.assert_frame_equal(a[i], b[i])
        pd.testing.assert_frame_equal(a[i], direct[i])
    assert len(a[-2:]) == 2
    # another seed or m is another cache entry; changed data is another fingerprint
    shared_imputations(frame, n_imputations=2, seed=4, max_iter=3, cache_dir=tmp_path)
    shared_imputations(frame.assign(age=frame["age"] + 1), n_imputations=3, seed=4, max_iter=3, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("imputations_*.npz"))) == 3


# ---------------------------------------------------------------------------------------- delta adjustment


def test_delta_zero_is_the_primary_analysis_exactly(frame, imputations):
    from backpain_analysis.outcomes import delta_adjustment

    table = delta_adjustment(frame, imputations, deltas=(-1.0, 0.0), scenarios=("phase 3 only", "both phases"))
    primary = primary_analysis(frame, imputations, sensitivity=False).set_index("analysis").loc["multiple imputation"]
    for _, row in table[table["delta"] == 0].iterrows():
        for k in ("estimate", "ci_low", "ci_high", "p_value", "df"):
            assert row[k] == primary[k], k
    assert (table["m"] == len(imputations)).all()


def test_delta_shifts_an_unadjusted_difference_by_fraction_imputed_times_delta(frame, imputations):
    from backpain_analysis.outcomes import delta_adjustment

    # closed form: the phase difference in means moves by f3 delta (phase 3 shifted) and by
    # -f1 delta (phase 1 shifted), f = fraction of the phase whose 6-month RMDQ was imputed
    n1 = int((frame["phase"] == 1).sum())
    n3 = int((frame["phase"] == 3).sum())
    f1 = frame.loc[frame["phase"] == 1, "rmdq_6m"].isna().sum() / n1
    f3 = frame.loc[frame["phase"] == 3, "rmdq_6m"].isna().sum() / n3
    table = delta_adjustment(frame, imputations, deltas=(0.0, -2.5), covariates=(), model="ols",
                             scenarios=("phase 1 only", "phase 3 only", "both phases")).set_index(["scenario", "delta"])
    base = table.loc[("phase 3 only", 0.0), "estimate"]
    # the unadjusted OLS estimate at delta 0 is the mean difference, pooled (checked by hand)
    by_hand = np.mean([i.loc[i["phase"] == 3, "rmdq_change_6m"].mean() - i.loc[i["phase"] == 1, "rmdq_change_6m"].mean()
                       for i in imputations])
    assert base == pytest.approx(by_hand, abs=1e-10)
    assert table.loc[("phase 3 only", -2.5), "estimate"] - base == pytest.approx(f3 * -2.5, abs=1e-10)
    assert table.loc[("phase 1 only", -2.5), "estimate"] - base == pytest.approx(-f1 * -2.5, abs=1e-10)
    assert table.loc[("both phases", -2.5), "estimate"] - base == pytest.approx((f3 - f1) * -2.5, abs=1e-10)
    assert table.loc[("phase 3 only", -2.5), "imputed_phase3"] == frame.loc[frame["phase"] == 3, "rmdq_6m"].isna().sum()


def test_tipping_point_by_interpolation():
    from backpain_analysis.outcomes import tipping_points

    # CI excludes 0 at delta 0; ci_low falls through 0 between delta -2 (ci_low -0.2) and -1 (0.3):
    # by hand -1 + (0 - 0.3) (-2 - -1) / (-0.2 - 0.3) = -1.6
    t = pd.DataFrame({"scenario": "phase 3 only", "delta": [-3.0, -2.0, -1.0, 0.0, 1.0],
                      "estimate": [0.0, 0.5, 1.0, 1.5, 2.0], "ci_low": [-0.7, -0.2, 0.3, 0.8, 1.3],
                      "ci_high": [0.7, 1.2, 1.7, 2.2, 2.7]})
    r = tipping_points(t).iloc[0]
    assert r["conclusion_at_0"] == "CI excludes 0"
    assert r["tipping_delta"] == pytest.approx(-1.6)
    assert r["bound"] == "ci_low"
    assert r["tipping_below"] == pytest.approx(-1.6) and np.isnan(r["tipping_above"])
    # both directions: includes 0 at delta 0; ci_low crosses 0 above (0.5 -> by hand 0 + 0.5 / 1 * 1 = ...)
    two = pd.DataFrame({"scenario": "both phases", "delta": [-2.0, -1.0, 0.0, 1.0],
                        "estimate": [-1.0, -0.5, 0.0, 0.5], "ci_low": [-1.6, -1.1, -0.6, 0.2],
                        "ci_high": [-0.4, 0.1, 0.6, 0.8]})
    r2 = tipping_points(two).iloc[0]
    # below: ci_high from 0.1 (delta -1) to -0.4 (delta -2): -1 + (0 - 0.1) (-1) / (-0.5) = -1.2
    # above: ci_low from -0.6 (delta 0) to 0.2 (delta 1): 0 + 0.6 / 0.8 = 0.75 (the nearer one)
    assert r2["tipping_below"] == pytest.approx(-1.2) and r2["tipping_above"] == pytest.approx(0.75)
    assert r2["tipping_delta"] == pytest.approx(0.75) and r2["bound"] == "ci_low"
    # no change over the grid
    flat = t.assign(ci_low=t["ci_low"] + 5)
    assert np.isnan(tipping_points(flat).iloc[0]["tipping_delta"])


# ---------------------------------------------------------------------------------------- 2-month, CSQ, PSEQ


def _with_protocol_outcomes(frame: pd.DataFrame, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = len(frame)
    df = frame.copy()
    p3 = (df["phase"] == 3).to_numpy()
    df["csq_cat_0m"] = np.clip(np.round(rng.normal(15, 6, n)), 0, 36)
    df["csq_cat_6m"] = np.where(df["rmdq_6m"].notna(), np.clip(np.round(df["csq_cat_0m"] - 1 - 1.0 * p3
                                                                         + rng.normal(0, 4, n)), 0, 36), np.nan)
    df["pseq_0m"] = np.clip(np.round(rng.normal(35, 12, n)), 0, 60)
    df["pseq_6m"] = np.where(df["rmdq_6m"].notna(), np.clip(np.round(df["pseq_0m"] + 2 + 2.0 * p3
                                                                      + rng.normal(0, 8, n)), 0, 60), np.nan)
    df["pain_nrs_2m"] = np.where(df["rmdq_2m"].notna(), np.clip(np.round(df["pain_nrs_0m"] - 0.8
                                                                          + rng.normal(0, 2, n)), 0, 10), np.nan)
    gc2 = np.where(df["rmdq_2m"].notna(), rng.integers(0, 6, n), -1)
    df["global_change_2m"] = pd.Categorical.from_codes(gc2, categories=GLOBAL, ordered=True)
    return df


def test_protocol_outcomes_in_table3_match_statsmodels_by_hand():
    import statsmodels.formula.api as smf

    df = _with_protocol_outcomes(analysis_frame(n=700, seed=3))
    specs = [s for s in SECONDARY_OUTCOMES if s.outcome in ("csq_cat_change_6m", "pseq_change_6m", "rmdq_change_2m",
                                                            "pain_change_2m")]
    assert len(specs) == 4 and {s.month for s in specs} == {2, 6}
    table = secondary_outcomes_table(df, specs=specs, practice=None).set_index("outcome")
    # independent route: changes computed here, OLS by statsmodels formula
    d = df.assign(phase3=(df["phase"] == 3).astype(float), csq=df["csq_cat_0m"] - df["csq_cat_6m"],
                  pseq=df["pseq_6m"] - df["pseq_0m"], r2=df["rmdq_0m"] - df["rmdq_2m"],
                  p2=df["pain_nrs_0m"] - df["pain_nrs_2m"])
    base = "age + C(sex) + C(episode_duration) + C(risk_group)"
    for outcome, formula in (("csq_cat_change_6m", f"csq ~ phase3 + csq_cat_0m + {base}"),
                             ("pseq_change_6m", f"pseq ~ phase3 + pseq_0m + {base}"),
                             ("rmdq_change_2m", f"r2 ~ phase3 + rmdq_0m + {base}"),
                             ("pain_change_2m", f"p2 ~ phase3 + pain_nrs_0m + {base}")):
        fit = smf.ols(formula, data=d).fit()
        row = table.loc[outcome]
        assert row["estimate"] == pytest.approx(fit.params["phase3"], rel=1e-8), outcome
        lo, hi = fit.conf_int().loc["phase3"]
        assert row["ci_low"] == pytest.approx(lo, rel=1e-8) and row["ci_high"] == pytest.approx(hi, rel=1e-8)
        assert row["df"] == pytest.approx(fit.df_resid)
        assert row["mean_phase3"] == pytest.approx(d.loc[d["phase3"] == 1, {"csq_cat_change_6m": "csq",
                                                   "pseq_change_6m": "pseq", "rmdq_change_2m": "r2",
                                                   "pain_change_2m": "p2"}[outcome]].mean())
    # PSEQ is follow-up minus baseline (higher = more self-efficacy): the planted +2 effect is positive
    assert table.loc["pseq_change_6m", "estimate"] > 0
    assert table.loc["rmdq_change_2m", "month"] == 2


def test_delta_plot_draws_one_series_per_scenario(frame, imputations):
    from backpain_analysis.outcomes import delta_adjustment, delta_plot

    table = delta_adjustment(frame, imputations[:2], deltas=(-1.0, 0.0), model="ols")
    fig = delta_plot(table)
    assert len(fig.axes[0].get_legend().get_texts()) == 2
    plt.close(fig)


def test_imputations_by_rule_sets_m_from_the_pilot_fmi(tmp_path, frame):
    from backpain_analysis.imputation import shared_imputations
    from backpain_analysis.outcomes import imputations_by_rule

    imps, choice = imputations_by_rule(frame, pilot_imputations=4, seed=8, max_iter=3, cache_dir=tmp_path,
                                       minimum=5, maximum=60)
    # the pilot (seed + 1) pooled by hand: Rubin's rules with the Barnard-Rubin df (complete-data df = median KR df)
    pilot = shared_imputations(frame, n_imputations=4, seed=9, max_iter=3, cache_dir=tmp_path)
    fits = [fit_mixed_kr(i, "rmdq_change_6m", list(PRIMARY_COVARIATES)) for i in pilot]
    pooled = pool_rubin([f["coef"] for f in fits], [f["se"] ** 2 for f in fits],
                        df_complete=float(np.median([f["df"] for f in fits])))
    assert choice["pilot_fmi"] == pytest.approx(pooled["fmi"], rel=1e-10)
    assert choice["m"] == len(imps) == min(60, max(5, math.ceil(100 * pooled["fmi"] - 1e-9)))
    # the pilot's imputations are the first 4 of the m; the rest are m - 4 new chains of seed 8
    rest = shared_imputations(frame, n_imputations=choice["m"] - 4, seed=8, max_iter=3)
    for i in (0, 3):
        pd.testing.assert_frame_equal(imps[i], pilot[i])
    for i in (0, choice["m"] - 5):
        pd.testing.assert_frame_equal(imps[4 + i], rest[i])
    assert [p["m"] for p in imps.info["parts"]] == [4, choice["m"] - 4]
    fixed, fixed_choice = imputations_by_rule(frame, n_imputations=3, seed=8, max_iter=3)
    assert len(fixed) == 3 and fixed_choice["pilot_m"] == 0


def test_delta_mixed_fast_path_equals_refitting_shifted_datasets(frame, imputations):
    from backpain_analysis.outcomes import delta_adjustment, shift_imputed

    table = delta_adjustment(frame, imputations, deltas=(0.0, -2.0), scenarios=("phase 3 only", "both phases"))
    for scenario, phases in (("phase 3 only", (1.0,)), ("both phases", (0.0, 1.0))):
        shifted = [shift_imputed(i, -2.0, phases) for i in imputations]
        # reference: the primary analysis refitted from the formula on the shifted datasets
        ref = primary_analysis(frame, shifted, sensitivity=False).set_index("analysis").loc["multiple imputation"]
        row = table[(table["scenario"] == scenario) & (table["delta"] == -2.0)].iloc[0]
        for k in ("estimate", "ci_low", "ci_high", "p_value", "df"):
            # the fast path starts each REML search from the delta = 0 optimum, the reference from the
            # grid: the same optimum to the search's tolerance (a wrong shift moves these by > 1e-2)
            assert row[k] == pytest.approx(ref[k], rel=1e-6, abs=1e-9), (scenario, k)


def test_shareable_trajectory_never_leaves_a_group_recoverable_from_the_all_row():
    """Within a phase and month the risk groups add up to "all": a hidden 3 must not be all - shown."""
    from backpain_analysis.outcomes import shareable_trajectory

    rows = []
    for phase, month, counts in ((1, 2, (20, 18, 3)), (3, 6, (30, 25, 12)), (1, 6, (2, 2, 30))):
        rows.append({"risk_group": "all", "phase": phase, "month": month, "n": sum(counts), "mean": 8.0,
                     "ci_low": 7.0, "ci_high": 9.0})
        rows += [{"risk_group": g, "phase": phase, "month": month, "n": n, "mean": 8.0, "ci_low": 7.0,
                  "ci_high": 9.0} for g, n in zip(("low", "medium", "high"), counts, strict=True)]
    shared = shareable_trajectory(pd.DataFrame(rows))
    for (_, _), g in shared.groupby(["phase", "month"]):
        hidden = g["n"] == "*"
        assert hidden.sum() != 1
        shown = pd.to_numeric(g["n"].where(~hidden), errors="coerce")
        assert not ((shown >= 1) & (shown <= 4)).any()
        if hidden.any():  # the hidden groups' sum (all - shown) is not small either
            total = g.loc[g["risk_group"] == "all", "n"].iloc[0]
            if total != "*":
                assert total - shown[g["risk_group"] != "all"].sum() >= 5
        assert (g.loc[hidden, ["mean", "ci_low", "ci_high"]] == "*").all().all()
    assert shared["n"].tolist() == [41, 20, "*", "*", 67, 30, 25, 12, 34, "*", "*", "*"]  # 2 + 2 < 5 takes the 30 too


def test_pooled_rows_take_the_median_complete_data_df_over_imputations():
    """Barnard-Rubin's complete-data df is the median KR df over the imputed datasets (as the
    primary row's), not the first imputation's: with the zero practice-by-phase variance dropped in
    imputation 1 only, its df (900) must not set the pooled df."""
    from backpain_analysis.outcomes import _pooled

    results = [{"coef": 0.5, "se": 0.4, "df": 900.0}, {"coef": 0.9, "se": 0.45, "df": 6.0},
               {"coef": 0.7, "se": 0.42, "df": 5.8}, {"coef": 0.2, "se": 0.5, "df": 6.1}]
    row = _pooled(results, "linear", 0.05)
    ref = pool_rubin([r["coef"] for r in results], [r["se"] ** 2 for r in results], df_complete=6.05)
    assert row["df"] == pytest.approx(ref["df"], rel=1e-12)
    assert row["ci_low"] == pytest.approx(ref["ci_low"], rel=1e-12)
    assert row["df"] < 6.05


def test_table3_linear_mi_row_pools_the_mixed_fits_with_the_median_kr_df(frame, imputations):
    spec = [s for s in SECONDARY_OUTCOMES if s.outcome == "pain_change_6m"]
    row = secondary_outcomes_table(frame, imputations, specs=spec).set_index("analysis").loc["multiple imputation"]
    fits = [fit_mixed_kr(imp, "pain_change_6m", list(spec[0].covariates)) for imp in imputations]
    pooled = pool_rubin([f["coef"] for f in fits], [f["se"] ** 2 for f in fits],
                        df_complete=float(np.median([f["df"] for f in fits])))
    assert row["estimate"] == pytest.approx(pooled["estimate"], rel=1e-10)
    assert row["ci_high"] == pytest.approx(pooled["ci_high"], rel=1e-8)
    assert row["df"] == pytest.approx(pooled["df"], rel=1e-8)
