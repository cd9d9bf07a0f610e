"""Chained-equation imputation and Rubin's rules."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from backpain_analysis.imputation import impute_chained, pool_rubin

# --------------------------------------------------------------------------- Rubin's rules


def test_pool_rubin_worked_by_hand():
    # m = 3: Qbar = 1, Ubar = 0.05, B = ((0)^2 + 0.2^2 + 0.2^2) / 2 = 0.04,
    # T = 0.05 + (4/3) 0.04 = 0.103333, lambda = 0.053333 / 0.103333 = 0.516129,
    # nu_old = 2 / lambda^2 = 7.507813; nu_com = 20: nu_obs = 21/23 * 20 * (1 - lambda) = 8.835905,
    # df = nu_old nu_obs / (nu_old + nu_obs) = 4.058949.
    r = pool_rubin([1.0, 1.2, 0.8], [0.04, 0.05, 0.06], df_complete=20)
    assert r["estimate"] == pytest.approx(1.0)
    assert r["within"] == pytest.approx(0.05)
    assert r["between"] == pytest.approx(0.04)
    assert r["total"] == pytest.approx(0.1033333, rel=1e-6)
    assert r["se"] == pytest.approx(math.sqrt(0.1033333), rel=1e-6)
    assert r["lambda"] == pytest.approx(0.516129, rel=1e-5)
    assert r["riv"] == pytest.approx(1.0666667, rel=1e-6)
    assert r["df"] == pytest.approx(4.058949, rel=1e-5)
    # t(4.0589) two-sided 95% quantile is 2.76062 (tables: t(4) = 2.7764, t(5) = 2.5706)
    assert r["ci_high"] - r["estimate"] == pytest.approx(2.76062 * math.sqrt(0.1033333), rel=1e-4)
    assert r["ci_low"] == pytest.approx(2 * r["estimate"] - r["ci_high"])
    # Rubin (1987) large-sample df without df_complete
    r_inf = pool_rubin([1.0, 1.2, 0.8], [0.04, 0.05, 0.06])
    assert r_inf["df"] == pytest.approx(7.5078125, rel=1e-7)
    # p value: t = 1 / 0.32146 = 3.1108 on 7.5078 df
    from scipy import stats

    assert r_inf["p_value"] == pytest.approx(2 * stats.t.sf(1 / math.sqrt(0.1033333), 7.5078125), rel=1e-5)


def test_pool_rubin_identical_estimates_reduce_to_complete_data():
    r = pool_rubin([0.5] * 5, [0.01] * 5, df_complete=100)
    assert r["between"] == 0
    assert r["se"] == pytest.approx(0.1)
    # no missing information: df = (nu_com + 1) / (nu_com + 3) * nu_com
    assert r["df"] == pytest.approx(101 / 103 * 100)
    assert r["ci_low"] == pytest.approx(0.5 - 1.98397 * 0.1, rel=1e-3)
    r_inf = pool_rubin([0.5] * 5, [0.01] * 5)
    assert math.isinf(r_inf["df"])
    assert r_inf["ci_high"] == pytest.approx(0.5 + 1.959964 * 0.1, rel=1e-6)


@pytest.mark.parametrize(
    ("estimates", "variances", "message"),
    [([1.0], [0.1], "at least 2"), ([1.0, 2.0], [0.1], "2 estimates but 1"), ([1.0, np.nan], [0.1, 0.1], "finite"),
     ([1.0, 2.0], [0.1, -0.1], ">= 0")],
)
def test_pool_rubin_rejects_bad_input(estimates, variances, message):
    with pytest.raises(ValueError, match=message):
        pool_rubin(estimates, variances)


# --------------------------------------------------------------------------- imputation


def _mar_data(n: int = 800, seed: int = 3) -> pd.DataFrame:
    """y depends on x; y is missing more often when x is high (missing at random given x)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    g = rng.integers(0, 3, size=n)
    y = 1.0 + 2.0 * x + 0.5 * g + rng.normal(size=n)
    flag = (rng.random(n) < 1 / (1 + np.exp(-(x - 0.5)))).astype(float)
    df = pd.DataFrame(
        {
            "id": [f"P{i:04d}" for i in range(n)],
            "x": x,
            "group": pd.Categorical.from_codes(g, ["low", "medium", "high"], ordered=True),
            "flag": flag,
            "y": y,
        }
    )
    df.loc[rng.random(n) < 1 / (1 + np.exp(-(x - 0.5))), "y"] = np.nan
    df.loc[rng.random(n) < 0.15, "group"] = np.nan
    df.loc[rng.random(n) < 0.15, "flag"] = np.nan
    return df


def test_imputation_fills_only_missing_and_keeps_types():
    df = _mar_data()
    imps = impute_chained(df, ["y", "group", "flag"], n_imputations=4, seed=11)
    assert len(imps) == 4
    for imp in imps:
        assert imp.shape == df.shape and list(imp.columns) == list(df.columns)
        assert imp[["y", "group", "flag"]].notna().all().all()
        obs = df["y"].notna()
        np.testing.assert_array_equal(imp.loc[obs, "y"], df.loc[obs, "y"])
        assert imp["group"].dtype == df["group"].dtype  # same categories and order
        assert set(imp["flag"].unique()) <= {0.0, 1.0}  # PMM keeps a 0/1 flag binary
        # PMM imputes observed values only
        assert set(imp.loc[~obs, "y"]) <= set(df.loc[obs, "y"])
        pd.testing.assert_series_equal(imp["id"], df["id"])
    # the imputations differ from each other (between-imputation variability)
    assert not np.allclose(imps[0]["y"], imps[1]["y"])


def test_imputation_is_reproducible_with_a_seed():
    df = _mar_data()
    a = impute_chained(df, ["y", "group"], n_imputations=2, seed=5, max_iter=3)
    b = impute_chained(df, ["y", "group"], n_imputations=2, seed=5, max_iter=3)
    c = impute_chained(df, ["y", "group"], n_imputations=2, seed=6, max_iter=3)
    pd.testing.assert_frame_equal(a[1], b[1])
    assert not a[1]["y"].equals(c[1]["y"])


@pytest.mark.parametrize("method", ["pmm", "norm"])
def test_imputation_recovers_mean_under_missing_at_random(method):
    """Complete cases understate mean y (y is missing more often when x is high); MI recovers it."""
    df = _mar_data(n=3000, seed=8)
    truth = 1.0 + 0.5 * 1.0  # E[y] = 1 + 2 E[x] + 0.5 E[g] with E[x] = 0, E[g] = 1
    cc_mean = df["y"].mean()
    imps = impute_chained(df[["x", "group", "y"]], ["group", "y"], n_imputations=5, seed=2, method=method)
    est = [imp["y"].mean() for imp in imps]
    var = [imp["y"].var() / len(imp) for imp in imps]
    pooled = pool_rubin(est, var)
    assert cc_mean < truth - 0.5  # the complete-case mean is clearly biased
    assert pooled["ci_low"] - 0.1 < truth < pooled["ci_high"] + 0.1
    assert abs(pooled["estimate"] - truth) < 0.15
    if method == "norm":  # normal draws are not restricted to observed values
        assert not set(imps[0]["y"]) <= set(df["y"].dropna())


def test_pooled_regression_is_unbiased_and_honest_about_missingness():
    """Over 12 simulated datasets (true slope 2): the pooled slope is within 0.03 of the truth on
    average (PMM attenuates it by about 1% here, see impute_chained's Notes) and its 95% CI covers
    the truth in at least 10 of 12 (P(fewer) is 2% at 95% coverage)."""
    estimates, covered = [], 0
    for k in range(12):
        df = _mar_data(n=2000, seed=21 + k)
        imps = impute_chained(df, ["y", "group", "flag"], n_imputations=8, seed=4)
        fits = [smf.ols("y ~ x + C(group)", data=imp).fit() for imp in imps]
        pooled = pool_rubin([f.params["x"] for f in fits], [f.bse["x"] ** 2 for f in fits],
                            df_complete=fits[0].df_resid)
        estimates.append(pooled["estimate"])
        covered += pooled["ci_low"] < 2.0 < pooled["ci_high"]
        assert pooled["between"] > 0
    assert abs(np.mean(estimates) - 2.0) < 0.03
    assert covered >= 10
    assert pooled["se"] > math.sqrt(pooled["within"])  # extra variance from the missing data
    assert 0 < pooled["fmi"] < 1


def test_predictors_default_skips_text_and_list_form_works():
    df = _mar_data(n=300)
    imps = impute_chained(df, ["y"], n_imputations=2, seed=1, predictors=["x"])
    assert imps[0]["y"].notna().all()
    # a dict form restricts predictors per target; auxiliary predictors with missing values
    # get a missing indicator and are not changed themselves
    imps = impute_chained(df, ["y"], n_imputations=2, seed=1, predictors={"y": ["x", "flag"]})
    assert imps[0]["flag"].isna().sum() == df["flag"].isna().sum()


def test_imputation_input_errors():
    df = _mar_data(n=100)
    with pytest.raises(ValueError, match="not in the DataFrame"):
        impute_chained(df, ["nope"])
    with pytest.raises(ValueError, match="dtype"):
        impute_chained(df, ["id"])
    df2 = df.assign(colour=pd.Categorical(["red", "green", "blue", None] * 25))
    with pytest.raises(ValueError, match="unordered categorical"):
        impute_chained(df2, ["colour"])
    with pytest.raises(ValueError, match="n_imputations"):
        impute_chained(df, ["y"], n_imputations=0)
    with pytest.raises(ValueError, match="unknown method"):
        impute_chained(df, ["y"], method="mean")
    with pytest.raises(ValueError, match="observed value"):
        impute_chained(df.assign(y=np.nan), ["y"])
    with pytest.raises(ValueError, match="text or dates"):
        impute_chained(df, ["y"], predictors=["id"])


def test_pool_wald_worked_by_hand():
    from scipy import stats

    from backpain_analysis.imputation import pool_wald

    # m = 3, k = 2, U = I: Qbar = (2, 0), B = [[1, -0.5], [-0.5, 1]], r1 = (4/3) tr(B) / 2 = 4/3,
    # D1 = Qbar' Qbar / (2 (1 + 4/3)) = 4 / (14/3) = 6/7; t = k (m - 1) = 4 (not > 4), so
    # nu1 = t (1 + 1/k) (1 + 1/r1)^2 / 2 (Li, Raghunathan & Rubin 1991) = 4 * 1.5 * (7/4)^2 / 2
    # = 147/16 = 9.1875.
    r = pool_wald([[1.0, 0.0], [2.0, 1.0], [3.0, -1.0]], [np.eye(2)] * 3)
    assert r["riv"] == pytest.approx(4 / 3)
    assert r["statistic"] == pytest.approx(6 / 7)
    assert r["df_den"] == pytest.approx(9.1875)
    assert r["p_value"] == pytest.approx(stats.f.sf(6 / 7, 2, 9.1875))
    # t > 4 branch: m = 4, k = 2, U = I, estimates (0,0), (2,0), (0,2), (2,2): Qbar = (1, 1),
    # B = diag(4/3, 4/3), r1 = (5/4) (8/3) / 2 = 5/3, D1 = 2 / (2 (8/3)) = 3/8, t = 6,
    # nu1 = 4 + 2 (1 + (2/3) (3/5))^2 = 4 + 2 * 1.4^2 = 7.92.
    r6 = pool_wald([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]], [np.eye(2)] * 4)
    assert r6["riv"] == pytest.approx(5 / 3)
    assert r6["statistic"] == pytest.approx(3 / 8)
    assert r6["df_den"] == pytest.approx(7.92)
    # no between-imputation variance: the complete-data Wald test (chi-square / k)
    r0 = pool_wald([[1.0, 2.0]] * 4, [np.diag([0.5, 2.0])] * 4)
    assert r0["statistic"] == pytest.approx((1 / 0.5 + 4 / 2.0) / 2)
    assert r0["p_value"] == pytest.approx(stats.chi2.sf(4.0, 2))
    with pytest.raises(ValueError, match="at least 2"):
        pool_wald([[1.0, 2.0]], [np.eye(2)])


# --------------------------------------------------------------------------- values, shared set, m rule


def test_impute_values_are_what_impute_chained_fills_in():
    df = _mar_data(n=300)
    imps = impute_chained(df, ["y", "group"], n_imputations=3, seed=9, max_iter=3)
    from backpain_analysis.imputation import impute_values

    vals = impute_values(df, ["y", "group"], n_imputations=3, seed=9, max_iter=3)
    miss, y = vals["y"]
    np.testing.assert_array_equal(miss, df["y"].isna().to_numpy())
    for i in range(3):
        np.testing.assert_array_equal(imps[i].loc[miss, "y"].to_numpy(), y[i])
        np.testing.assert_array_equal(imps[i]["group"].cat.codes.to_numpy()[vals["group"][0]], vals["group"][1][i])


def test_imputations_needed_follows_white_royston_wood():
    from backpain_analysis.imputation import imputations_needed

    # m >= 100 x FMI (White, Royston & Wood 2011), at least 20
    assert imputations_needed(0.58) == 58
    assert imputations_needed(0.581) == 59
    assert imputations_needed(0.1) == 20
    assert imputations_needed(0.99, maximum=50) == 50
    with pytest.raises(ValueError, match="fmi"):
        imputations_needed(1.5)


def test_monte_carlo_error_is_sd_over_root_m_and_tracks_seed_to_seed_spread():
    from backpain_analysis.imputation import monte_carlo_error

    q = [0.2, 0.5, 0.3, 0.4]
    # by hand: mean 0.35, var = (0.0225 + 0.0225 + 0.0025 + 0.0025) / 3 = 0.016667; / 4 -> sqrt = 0.064550
    assert monte_carlo_error(q) == pytest.approx(0.0645497, rel=1e-6)
    # independent check: the SD of pooled means over many repetitions of m draws equals sqrt(B / m)
    rng = np.random.default_rng(0)
    draws = rng.normal(0.0, 0.3, size=(4000, 10))
    spread = draws.mean(axis=1).std(ddof=1)
    mcse = np.mean([monte_carlo_error(d) for d in draws])
    assert mcse == pytest.approx(spread, rel=0.05)


def test_cross_product_draw_equals_the_full_design_draw():
    """The engine's draw from cross-products (X'X, X'y, y'y) equals mice's norm.draw on the full design."""
    from backpain_analysis.imputation import _bayes_draw, _bayes_draw_xtx

    rng = np.random.default_rng(3)
    m, n, p = 3, 200, 4
    x = np.concatenate([np.ones((m, n, 1)), rng.normal(size=(m, n, p - 1))], axis=2)
    y = x[0] @ np.array([1.0, 2.0, -1.0, 0.5]) + rng.normal(size=n)
    a = _bayes_draw(x, y, np.random.default_rng(9))
    xtx = np.einsum("mij,mik->mjk", x, x)
    b = _bayes_draw_xtx(xtx, np.einsum("mij,i->mj", x, y), np.full(m, y @ y), xtx, n, np.random.default_rng(9))
    for u, v in zip(a, b, strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-9, atol=1e-12)


# --------------------------------------------------------------------------- non-identified predictors


def test_a_predictor_constant_among_the_observed_rows_does_not_move_the_imputed_rows():
    """A column that is 0 for every observed row and 1 for every missing row (a missing indicator of
    a predictor missing with the target) is not identified: it
    must get no coefficient (mice drops it). A random coefficient shifts every imputed value by
    about sigma x N(0, 1) per imputation (found on the bundled study: the imputed mean GP
    consultations of non-consenters ranged from 0.005 to 3.5 over 42 imputations)."""
    rng = np.random.default_rng(21)
    n = 600
    x = rng.normal(size=n)
    y = 1.0 + 0.5 * x + rng.normal(size=n)  # residual SD 1
    miss = rng.random(n) < 0.3  # MCAR
    d = pd.DataFrame({"x": x, "flag": miss.astype(float), "y": np.where(miss, np.nan, y)})
    _, vals = impute_values_for(d, "y", ["x", "flag"], m=40, method="norm")
    means = vals.mean(axis=1)
    # closed form without the flag: the imputed mean varies by about sqrt(1/n_obs + 1/n_mis) ~ 0.07
    assert np.std(means, ddof=1) < 0.25
    assert abs(means.mean() - np.nanmean(d["y"])) < 0.15


def impute_values_for(d, target, predictors, *, m, method):
    from backpain_analysis.imputation import impute_values

    return impute_values(d, [target], n_imputations=m, seed=3, max_iter=1, predictors=predictors,
                         method=method)[target]


def test_an_auxiliary_missing_wherever_the_target_is_missing_leaves_its_equation():
    from backpain_analysis.imputation import _predictor_sets, _uninformative_auxiliaries_removed

    d = pd.DataFrame({
        "age": [50.0, 60, 40, 30, 20, 70],
        "review_flag": [1.0, 0, np.nan, np.nan, 1, 0],  # missing exactly where gp is missing
        "gp": [2.0, 0, np.nan, np.nan, 3, 1],
        "eq5d": [0.5, np.nan, 0.7, np.nan, 0.9, 0.4],  # review_flag is observed in one of its missing rows
    })
    sets = _uninformative_auxiliaries_removed(d, ["gp", "eq5d"], _predictor_sets(d, ["gp", "eq5d"],
                                                                                  ["age", "review_flag"]))
    assert sets["gp"] == ["eq5d", "age"]
    assert sets["eq5d"] == ["gp", "age", "review_flag"]


def _naive_design(df, predictors, chains, aux_blocks, encoders, chain):
    """The whole design [1, predictors] of one chain, built column by column from the chains'
    current values (imputed columns) and the auxiliary blocks: the slow, obvious way."""
    blocks = [np.ones((len(df), 1))]
    for p in predictors:
        if p in chains:
            blocks.append(encoders[p].encode(chains[p][chain]))
        elif aux_blocks[p].shape[1]:
            blocks.append(aux_blocks[p])
    return np.concatenate(blocks, axis=1)


def test_chain_step_cross_products_and_predictions_equal_the_whole_design():
    """The step splits the design into observed cells and imputed cells per missingness pattern;
    X'X, X'y (with constant columns left out) and the fitted values must equal those of the whole
    design built directly for each chain."""
    from backpain_analysis import imputation as imp

    rng = np.random.default_rng(3)
    n, m = 400, 4
    df = pd.DataFrame({"x": rng.normal(size=n), "a": rng.normal(size=n), "y": rng.normal(size=n),
                       "g": pd.Categorical(rng.choice(["u", "v", "w"], n), categories=["u", "v", "w"], ordered=True),
                       "z": rng.normal(size=n), "c": np.where(rng.random(n) < 0.5, 1.0, 0.0)})
    for col, share in (("y", 0.3), ("g", 0.2), ("x", 0.25), ("a", 0.1)):
        df.loc[rng.random(n) < share, col] = np.nan
    df.loc[df["y"].notna(), "c"] = 1.0  # constant among the rows where y is observed: left out of y's equation
    cols = ["x", "y", "g"]
    sets = imp._predictor_sets(df, cols, None)
    aux_blocks, _ = imp._auxiliary_design(df, ["a", "z", "c"])
    enc = {c: imp._Predictor(c, df[c]) for c in cols}
    observed = {c: imp._as_float(df[c]) for c in cols}
    missing = {c: np.isnan(v) for c, v in observed.items()}
    chains = {}
    for c in cols:
        v = np.tile(observed[c], (m, 1))
        v[:, missing[c]] = rng.choice(observed[c][~missing[c]], size=(m, int(missing[c].sum())))
        chains[c] = v
    for target in cols:
        step = imp._Step(target, sets[target], observed, missing, enc, aux_blocks, m)
        seen = {}
        real = imp._bayes_draw_xtx

        def spy(xtx, xty, yty, xtx_full, n_obs, rng_, seen=seen, real=real):
            seen.update(xtx=xtx_full, xty=xty, yty=yty, n_obs=n_obs)
            return real(xtx, xty, yty, xtx_full, n_obs, rng_)

        imp._bayes_draw_xtx = spy
        try:
            d_var = step.imputed_cells(step.var_groups, chains)
            beta_hat, beta_star, _ = step.draw(d_var, np.random.default_rng(1))
        finally:
            imp._bayes_draw_xtx = real
        obs_rows = np.flatnonzero(~missing[target])
        order = np.argsort(np.concatenate([step.fixed_rows, np.setdiff1d(obs_rows, step.fixed_rows)]))
        mis_rows = np.flatnonzero(missing[target])
        pred_mis = step.predict(step.x_mis, step.mis_groups, step.imputed_cells(step.mis_groups, chains), beta_star)
        pred_obs = step.fitted_observed(d_var, beta_hat)[:, order]
        y_obs = observed[target][obs_rows]
        assert seen["n_obs"] == obs_rows.size
        assert np.allclose(seen["yty"], y_obs @ y_obs)
        for chain in range(m):
            x = _naive_design(df, sets[target], chains, aux_blocks, enc, chain)
            xo = x[obs_rows]
            keep = np.ptp(xo, axis=0) > 0
            keep[0] = True
            np.testing.assert_allclose(seen["xtx"][chain], xo.T @ xo, rtol=1e-10, atol=1e-8)
            np.testing.assert_allclose(seen["xty"][chain], (xo.T @ y_obs) * keep, rtol=1e-10, atol=1e-8)
            np.testing.assert_allclose(pred_mis[chain], x[mis_rows] @ beta_star[chain], rtol=1e-10, atol=1e-10)
            np.testing.assert_allclose(pred_obs[chain], xo @ beta_hat[chain], rtol=1e-10, atol=1e-10)
            if target == "y":  # c is constant where y is observed: coefficient exactly 0
                assert beta_star[chain, -1] == 0.0


def test_pmm_donor_is_one_of_the_k_nearest_and_each_is_equally_likely():
    from backpain_analysis.imputation import _pmm

    rng = np.random.default_rng(0)
    for trial in range(200):
        n_obs, n_mis, k = int(rng.integers(1, 60)), int(rng.integers(1, 30)), int(rng.integers(1, 8))
        yhat_obs, yhat_mis = rng.normal(size=(3, n_obs)), 1.5 * rng.normal(size=(3, n_mis))
        donor = _pmm(yhat_obs, yhat_mis, np.arange(n_obs, dtype=float), k, np.random.default_rng(trial))
        for i in range(3):
            for j in range(n_mis):
                nearest = np.argsort(np.abs(yhat_obs[i] - yhat_mis[i, j]))[:min(k, n_obs)]
                assert int(donor[i, j]) in nearest
    # 200 observed cases with tied predicted means: across chains, every one is a donor about
    # equally often (ties broken at random in each chain, as mice's matcher does; within a chain,
    # cases with the same predicted mean share their k donors)
    picks = _pmm(np.zeros((20000, 200)), np.zeros((20000, 1)), np.arange(200.0), 5, np.random.default_rng(1))[:, 0]
    counts = np.bincount(picks.astype(int), minlength=200)
    assert counts.min() > 40 and counts.max() < 170  # expected 100 each


def test_extended_imputations_append_the_chains_and_refuse_other_data():
    from backpain_analysis.imputation import shared_imputations

    rng = np.random.default_rng(0)
    d = pd.DataFrame({"phase": np.repeat([1, 3], 60), "practice_id": np.tile(["P1", "P2"], 60),
                      "age": rng.normal(50, 10, 120), "rmdq_0m": rng.integers(0, 24, 120).astype(float)})
    d["rmdq_6m"] = np.where(rng.random(120) < 0.3, np.nan, d["rmdq_0m"] - 2)
    a = shared_imputations(d, n_imputations=2, seed=1, max_iter=2)
    b = shared_imputations(d, n_imputations=3, seed=2, max_iter=2)
    both = a.extended(b)
    assert len(both) == 5 and [p["seed"] for p in both.info["parts"]] == [1, 2]
    pd.testing.assert_frame_equal(both[1], a[1])
    pd.testing.assert_frame_equal(both[4], b[2])
    with pytest.raises(ValueError, match="max_iter"):
        a.extended(shared_imputations(d, n_imputations=2, seed=2, max_iter=3))
    other = d.assign(age=d["age"] + 1)
    with pytest.raises(ValueError, match="fingerprint"):
        a.extended(shared_imputations(other, n_imputations=2, seed=2, max_iter=2))


def test_one_blas_thread_limits_blas_and_restores_it_also_when_nested():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from backpain_analysis.imputation import one_blas_thread

    def blas_threads():
        return [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]

    before = blas_threads()
    with one_blas_thread():
        assert set(blas_threads()) <= {1}
        with one_blas_thread():
            assert set(blas_threads()) <= {1}
        assert set(blas_threads()) <= {1}
    assert blas_threads() == before
