"""Tests of backpain_analysis.economics: unit costs, costs, QALYs, the vectorized bootstrap, CEAC."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

from backpain_analysis import economics as ec
from backpain_analysis.errors import BackpainError


# --------------------------------------------------------------------------------------------
# unit costs and patient costs
# --------------------------------------------------------------------------------------------
def test_bundled_unit_costs_cover_every_resource_with_source_and_year():
    costs = ec.load_unit_costs()
    assert list(costs.columns) == ["item", "unit", "cost_gbp", "price_year", "source", "notes"]
    items = set(costs["item"])
    assert set(ec.RESOURCE_ITEMS.values()) | set(ec.PRODUCTIVITY_RESOURCE.values()) <= items
    assert (costs["cost_gbp"] > 0).all()
    assert costs["source"].str.len().min() > 20
    assert costs["price_year"].str.startswith("2009").all()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.drop(columns="source"), "missing column"),
        (lambda t: t.assign(cost_gbp=t["cost_gbp"].where(t["item"] != "imaging", -5)), "cost_gbp"),
        (lambda t: t.assign(cost_gbp=t["cost_gbp"].astype(str).where(t["item"] != "imaging", "abc")), "cost_gbp"),
        (lambda t: pd.concat([t, t.iloc[[0]]]), "repeated"),
    ],
)
def test_bad_unit_cost_table_raises_naming_file_and_column(tmp_path, edit, message):
    bad = edit(ec.load_unit_costs())
    path = tmp_path / "costs.csv"
    bad.to_csv(path, index=False)
    with pytest.raises(ec.EconomicsError, match=message) as info:
        ec.load_unit_costs(path)
    assert "costs.csv" in str(info.value)
    assert isinstance(info.value, BackpainError)


def _unit_costs(**values):
    base = {"gp_consultation": 30.0, "physio_session": 40.0, "imaging": 100.0, "prescription": 10.0,
            "secondary_care_referral": 150.0, "day_off_work": 100.0}
    base.update(values)
    return pd.DataFrame({"item": list(base), "unit": "u", "cost_gbp": list(base.values()), "price_year": "2009/10",
                         "source": "test", "notes": ""})


def test_patient_costs_worked_by_hand():
    d = pd.DataFrame({
        "n_gp_consultations": [2.0, 0.0, np.nan, 1.0],
        "physio_sessions": [3.0, 0.0, 1.0, 0.0],
        "imaging": [1.0, 0.0, 0.0, 0.0],
        "n_prescriptions": [4.0, 0.0, 1.0, 0.0],
        "secondary_care_referral": [1.0, 0.0, 0.0, 0.0],
        "days_off_work_6m": [5.0, np.nan, 2.0, np.nan],
        "employed": [1.0, 0.0, 1.0, 1.0],
    })
    c = ec.patient_costs(d, _unit_costs())
    # 2*30 + 3*40 + 100 + 4*10 + 150 = 470
    assert c.loc[0, "nhs_cost"] == pytest.approx(470.0)
    assert c.loc[0, "productivity_cost"] == pytest.approx(500.0)
    assert c.loc[0, "societal_cost"] == pytest.approx(970.0)
    assert c.loc[1, "nhs_cost"] == 0.0
    assert c.loc[1, "productivity_cost"] == 0.0  # not employed: no earnings lost
    assert np.isnan(c.loc[2, "nhs_cost"])  # a missing component makes the total missing
    assert np.isnan(c.loc[3, "productivity_cost"])  # employed, days unknown
    assert c.loc[0, "cost_physio_sessions"] == pytest.approx(120.0)


def test_patient_costs_rejects_missing_columns_and_items():
    d = pd.DataFrame({"n_gp_consultations": [1.0]})
    with pytest.raises(ec.EconomicsError, match="physio_sessions"):
        ec.patient_costs(d, _unit_costs())
    full = pd.DataFrame({c: [1.0] for c in [*ec.RESOURCE_ITEMS, *ec.PRODUCTIVITY_RESOURCE]})
    with pytest.raises(ec.EconomicsError, match="imaging"):
        ec.patient_costs(full, _unit_costs().query("item != 'imaging'"))
    with pytest.raises(ec.EconomicsError, match="negative"):
        ec.patient_costs(full.assign(imaging=-1.0), _unit_costs())


# --------------------------------------------------------------------------------------------
# QALYs
# --------------------------------------------------------------------------------------------
def test_trapezium_on_known_profiles():
    # constant 1 for 6 months = 6 index-months; a rising profile worked by hand
    area = ec.trapezium_auc([[1, 1, 1], [0.5, 0.7, 0.9], [0.2, np.nan, 0.8]], [0, 2, 6])
    assert area[0] == pytest.approx(6.0)
    assert area[1] == pytest.approx((0.5 + 0.7) / 2 * 2 + (0.7 + 0.9) / 2 * 4)
    assert np.isnan(area[2])


def test_trapezium_matches_numpy_on_random_profiles():
    rng = np.random.default_rng(3)
    v = rng.uniform(-0.5, 1, size=(50, 4))
    t = [0, 1.5, 2, 6]
    expected = np.array([np.trapezoid(row, t) for row in v])
    np.testing.assert_allclose(ec.trapezium_auc(v, t), expected)


def test_trapezium_rejects_bad_times():
    with pytest.raises(ec.EconomicsError, match="increasing"):
        ec.trapezium_auc([[1, 1, 1]], [0, 6, 2])
    with pytest.raises(ec.EconomicsError, match="times"):
        ec.trapezium_auc([[1, 1, 1]], [0, 6])


def test_qaly_from_eq5d_states_by_hand():
    from backpain_analysis.scoring import eq5d3l_index

    states = pd.DataFrame({"eq5d_mo": [1, 1], "eq5d_sc": [1, 1], "eq5d_ua": [2, 1], "eq5d_pd": [2, 1],
                           "eq5d_ad": [1, 1]})
    idx = eq5d3l_index(states).to_numpy()
    assert idx.round(3).tolist() == [0.760, 1.0]
    # 11221 throughout 6 months = 0.76 * 0.5 year; 11221 -> 11111 -> 11111
    d = pd.DataFrame({"eq5d_index_0m": [idx[0], idx[0]], "eq5d_index_2m": [idx[0], idx[1]],
                      "eq5d_index_6m": [idx[0], idx[1]]})
    q = ec.qaly_auc(d)
    assert q.iloc[0] == pytest.approx(0.38, abs=1e-3)
    assert q.iloc[1] == pytest.approx(((0.76 + 1) / 2 * 2 + 1 * 4) / 12, abs=1e-3)


# --------------------------------------------------------------------------------------------
# bootstrap
# --------------------------------------------------------------------------------------------
def _toy(n1=40, n3=60, seed=0, missing=False):
    rng = np.random.default_rng(seed)
    n = n1 + n3
    phase = np.repeat([1, 3], [n1, n3])
    base = rng.uniform(0.2, 0.95, n)
    risk = pd.Categorical(rng.choice(["low", "medium", "high"], n), categories=["low", "medium", "high"],
                          ordered=True)
    d = pd.DataFrame({
        "phase": phase.astype(float),
        "risk_group": risk,
        "eq5d_index_0m": base,
        "nhs_cost": rng.gamma(1.5, 120, n) - 30 * (phase == 3),
        "productivity_cost": rng.gamma(0.5, 400, n),
    })
    d["qaly"] = 0.1 + 0.6 * base + 0.02 * (phase == 3) + rng.normal(0, 0.03, n)
    d["societal_cost"] = d["nhs_cost"] + d["productivity_cost"]
    return d


def test_bootstrap_indices_resample_within_strata_and_are_reproducible():
    strata = np.array([1, 3, 1, 3, 3, 1, 1])
    a = np.vstack(list(ec.iter_bootstrap_indices(strata, 25, 7, chunk_size=10)))
    b = np.vstack(list(ec.iter_bootstrap_indices(strata, 25, 7, chunk_size=10)))
    c = np.vstack(list(ec.iter_bootstrap_indices(strata, 25, 8, chunk_size=10)))
    assert a.shape == (25, 7)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # every drawn row is from the column's own stratum
    assert (strata[a] == strata[None, :]).all()


def test_bootstrap_ols_equals_fitting_each_resample():
    d = _toy()
    X = np.column_stack([np.ones(len(d)), (d["phase"] == 3).astype(float), d["eq5d_index_0m"]])
    y = d["qaly"].to_numpy()
    idx = next(ec.iter_bootstrap_indices(d["phase"], 30, 1))
    fast = ec.bootstrap_ols(X, {"y": y}, ec._counts(idx))["y"]
    slow = np.array([sm.OLS(y[i], X[i]).fit().params for i in idx])
    np.testing.assert_allclose(fast, slow, rtol=1e-9, atol=1e-12)


def test_cost_utility_point_estimates_match_statsmodels():
    d = _toy()
    res = ec.cost_utility(d, n_boot=200, seed=2)
    fit = sm.OLS.from_formula("qaly ~ I(phase == 3) + eq5d_index_0m", data=d).fit()
    assert res.delta_qaly["estimate"] == pytest.approx(fit.params.iloc[1], rel=1e-9)
    diff = d.loc[d.phase == 3, "nhs_cost"].mean() - d.loc[d.phase == 1, "nhs_cost"].mean()
    assert res.delta_cost["estimate"] == pytest.approx(diff, rel=1e-9)
    assert (res.n_phase1, res.n_phase3) == (40, 60)
    assert res.delta_qaly["ci_low"] < res.delta_qaly["estimate"] < res.delta_qaly["ci_high"]


def test_cost_utility_bootstrap_agrees_with_a_slow_loop():
    d = _toy(n1=15, n3=20, seed=4)
    n_boot, seed = 60, 11
    res = ec.cost_utility(d, n_boot=n_boot, seed=seed)
    (boot_seed,) = ec._replicate_seeds(seed, 1)
    idx = np.vstack(list(ec.iter_bootstrap_indices(d["phase"].to_numpy(), n_boot, boot_seed)))
    slow_c, slow_q = [], []
    for rows in idx:
        r = d.iloc[rows]
        slow_c.append(r.loc[r.phase == 3, "nhs_cost"].mean() - r.loc[r.phase == 1, "nhs_cost"].mean())
        fit = sm.OLS(r["qaly"].to_numpy(), sm.add_constant(np.column_stack(
            [(r["phase"] == 3).astype(float), r["eq5d_index_0m"]]))).fit()
        slow_q.append(fit.params[1])
    np.testing.assert_allclose(res.boot_cost, slow_c, rtol=1e-9)
    np.testing.assert_allclose(res.boot_qaly, slow_q, rtol=1e-9)
    lo, hi = np.percentile(slow_q, [2.5, 97.5])
    assert res.delta_qaly["ci_low"] == pytest.approx(lo)
    assert res.delta_qaly["ci_high"] == pytest.approx(hi)


def test_cost_utility_is_reproducible_and_seed_dependent():
    d = _toy()
    a = ec.cost_utility(d, n_boot=300, seed=5)
    b = ec.cost_utility(d, n_boot=300, seed=5)
    c = ec.cost_utility(d, n_boot=300, seed=6)
    np.testing.assert_array_equal(a.boot_cost, b.boot_cost)
    assert a.delta_cost == b.delta_cost
    assert not np.array_equal(a.boot_cost, c.boot_cost)
    assert a.delta_cost["estimate"] == c.delta_cost["estimate"]  # the point estimate uses no random draws


def test_cost_utility_rejects_bad_input():
    d = _toy()
    with pytest.raises(ec.EconomicsError, match="nhs_cost"):
        ec.cost_utility(d.drop(columns="nhs_cost"), n_boot=10)
    with pytest.raises(ec.EconomicsError, match="per phase"):
        ec.cost_utility(d.loc[d.phase == 3], n_boot=10)
    with pytest.raises(ec.EconomicsError, match="n_boot"):
        ec.cost_utility(d, n_boot=0)


# --------------------------------------------------------------------------------------------
# CEAC and net monetary benefit
# --------------------------------------------------------------------------------------------
def _result_from(boot_c, boot_q):
    boot_c, boot_q = np.asarray(boot_c, float), np.asarray(boot_q, float)
    summ = {"estimate": 0.0, "ci_low": 0.0, "ci_high": 0.0, "p_value": 1.0, "se": 0.0}
    return ec.CostUtilityResult("x", "nhs_cost", 10, 10, dict(summ, estimate=boot_c.mean()),
                                dict(summ, estimate=boot_q.mean()), {"phase1": 0, "phase3": 0},
                                {"phase1": 0, "phase3": 0}, boot_c, boot_q, np.array([boot_c.mean()]),
                                np.array([boot_q.mean()]), np.zeros(boot_c.size, int))


def test_ceac_shape_properties():
    rng = np.random.default_rng(0)
    boot_q = rng.normal(0.02, 0.01, 5000)
    boot_c = rng.normal(-50, 60, 5000)
    curve = _result_from(boot_c, boot_q).ceac()
    p = curve["prob_cost_effective"].to_numpy()
    assert curve["wtp"].iloc[0] == 0 and curve["wtp"].iloc[-1] == 50_000
    assert ((p >= 0) & (p <= 1)).all()
    assert p[0] == pytest.approx((boot_c < 0).mean())  # at 0 GBP/QALY only savings count
    # as willingness to pay grows the curve tends to P(dQALY > 0)
    far = _result_from(boot_c, boot_q).ceac([1e9])["prob_cost_effective"].item()
    assert far == pytest.approx((boot_q > 0).mean(), abs=1e-3)
    # with every QALY increment positive the curve cannot fall
    pos = _result_from(boot_c, np.abs(boot_q)).ceac()["prob_cost_effective"].to_numpy()
    assert (np.diff(pos) >= 0).all()
    neg = _result_from(boot_c, -np.abs(boot_q)).ceac()["prob_cost_effective"].to_numpy()
    assert (np.diff(neg) <= 0).all()


def test_nmb_is_wtp_times_qaly_minus_cost():
    d = _toy()
    res = ec.cost_utility(d, n_boot=500, seed=3)
    nmb = res.nmb(20_000)
    assert nmb["estimate"] == pytest.approx(20_000 * res.delta_qaly["estimate"] - res.delta_cost["estimate"])
    assert nmb["prob_cost_effective"] == pytest.approx(res.ceac([20_000])["prob_cost_effective"].item())
    assert nmb["ci_low"] < nmb["estimate"] < nmb["ci_high"]


def test_results_table_and_groups():
    d = _toy(n1=90, n3=120)
    res = ec.cost_utility_by_group(d, n_boot=200, seed=1)
    assert list(res) == ["all patients", "low risk", "medium risk", "high risk"]
    assert sum(r.n_phase1 for k, r in res.items() if k != "all patients") == res["all patients"].n_phase1
    tab = ec.results_table(res)
    assert len(tab) == 4 * 5
    # the ICER row is the cost row over the QALY row (by hand from the table itself)
    for pop in res:
        t = tab.loc[tab.population == pop].set_index("measure")["estimate"]
        cost = t[t.index.str.startswith("incremental cost")].item()
        qaly = t[t.index.str.startswith("incremental QALYs")].item()
        assert t[ec.ICER_MEASURE] == pytest.approx(cost / qaly)
    for col in ["population", "measure", "n_phase1", "n_phase3", "estimate", "ci_low", "ci_high", "p_value"]:
        assert col in tab.columns
    assert tab["measure"].str.contains("phase 3 minus phase 1").sum() >= 8


def test_groups_too_small_to_estimate_are_left_out():
    d = _toy(n1=90, n3=120)
    high_phase1 = d.index[(d.risk_group == "high") & (d.phase == 1)]
    d = d.drop(high_phase1[3:])  # 3 high-risk patients left in phase 1
    res = ec.cost_utility_by_group(d, n_boot=50, seed=1)
    assert "high risk" not in res and "medium risk" in res
    assert "high risk" in ec.cost_utility_by_group(d, n_boot=50, seed=1, min_per_phase=3)


# --------------------------------------------------------------------------------------------
# data preparation: complete cases and multiple imputation
# --------------------------------------------------------------------------------------------
def _analysis_like(n=160, seed=0):
    rng = np.random.default_rng(seed)
    phase = np.where(np.arange(n) < n // 2, 1, 3)
    e0 = rng.uniform(0.1, 1.0, n)
    d = pd.DataFrame({
        "phase": phase,
        "risk_group": pd.Categorical(rng.choice(["low", "medium", "high"], n),
                                     categories=["low", "medium", "high"], ordered=True),
        "age": rng.normal(50, 15, n),
        "female": rng.integers(0, 2, n).astype(float),
        "rmdq_0m": rng.integers(0, 24, n).astype(float),
        "employed": rng.integers(0, 2, n).astype(float),
        "eq5d_index_0m": e0,
        "eq5d_index_2m": np.clip(e0 + rng.normal(0.05, 0.1, n), -0.5, 1),
        "eq5d_index_6m": np.clip(e0 + rng.normal(0.1, 0.1, n), -0.5, 1),
        "n_gp_consultations": rng.poisson(1.5, n).astype(float),
        "physio_sessions": rng.poisson(2, n).astype(float),
        "imaging": rng.integers(0, 2, n).astype(float),
        "n_prescriptions": rng.poisson(2, n).astype(float),
        "secondary_care_referral": (rng.uniform(size=n) < 0.1).astype(float),
        "days_off_work_6m": rng.poisson(4, n).astype(float),
    })
    miss = rng.uniform(size=n) < 0.25
    d.loc[miss, "eq5d_index_6m"] = np.nan
    d.loc[rng.uniform(size=n) < 0.2, "n_gp_consultations"] = np.nan
    return d


def test_complete_case_keeps_only_complete_patients():
    d = _analysis_like()
    (cc,) = ec.prepare_economic_data(d, _unit_costs(), imputation="complete_case")
    complete = d[["eq5d_index_6m", "n_gp_consultations"]].notna().all(axis=1)
    assert len(cc) == complete.sum()
    assert cc[["qaly", "nhs_cost", "societal_cost"]].notna().all().all()
    assert "patient_id" not in cc.columns


def test_mice_fills_everything_and_keeps_observed_values():
    d = _analysis_like()
    sets = ec.prepare_economic_data(d, _unit_costs(), imputation="mice", n_imputations=3, seed=1, max_iter=3)
    assert len(sets) == 3
    observed = d["eq5d_index_6m"].notna().to_numpy()
    for s in sets:
        assert len(s) == len(d)
        assert s[["qaly", "nhs_cost", "productivity_cost"]].notna().all().all()
        np.testing.assert_allclose(s["eq5d_index_6m"].to_numpy()[observed], d["eq5d_index_6m"].to_numpy()[observed])
        assert (s.loc[d["employed"].to_numpy() == 0, "productivity_cost"] == 0).all()
    assert not np.allclose(sets[0]["qaly"], sets[1]["qaly"])  # imputations differ
    again = ec.prepare_economic_data(d, _unit_costs(), imputation="mice", n_imputations=3, seed=1, max_iter=3)
    pd.testing.assert_frame_equal(sets[0], again[0])
    res = ec.cost_utility(sets, n_boot=300, seed=2)
    assert res.delta_qaly["estimate"] == pytest.approx(res.point_qaly.mean())
    assert res.point_qaly.size == 3 and res.boot_qaly.size == 300
    assert "Rubin" in res.method


def test_prepare_rejects_bad_options():
    d = _analysis_like()
    with pytest.raises(ec.EconomicsError, match="imputation"):
        ec.prepare_economic_data(d, _unit_costs(), imputation="hotdeck")
    with pytest.raises(ec.EconomicsError, match="phase"):
        ec.prepare_economic_data(d.assign(phase=2), _unit_costs(), imputation="complete_case")
    with pytest.raises(ec.EconomicsError, match="eq5d_index_2m"):
        ec.prepare_economic_data(d.drop(columns="eq5d_index_2m"), _unit_costs())


def test_cost_summary_by_hand():
    d = pd.DataFrame({"phase": [1, 1, 3, 3], "n_gp_consultations": [1.0, 3.0, 2.0, np.nan],
                      "physio_sessions": [0.0, 2.0, 4.0, 6.0], "imaging": [0.0, 1.0, 0.0, 0.0],
                      "n_prescriptions": [1.0, 1.0, 0.0, 2.0], "secondary_care_referral": [0.0, 0.0, 1.0, 0.0],
                      "days_off_work_6m": [2.0, np.nan, 10.0, 0.0], "employed": [1.0, 0.0, 1.0, 1.0]})
    s = ec.cost_summary(d, _unit_costs()).set_index("item")
    assert s.loc["gp_consultation", "n_phase3"] == 1
    assert s.loc["gp_consultation", "mean_cost_phase1"] == pytest.approx(60.0)
    # the non-worker's unknown days count as 0, as in the productivity cost
    assert s.loc["day_off_work", "n_phase1"] == s.loc["total: productivity cost", "n_phase1"] == 2
    assert s.loc["day_off_work", "mean_use_phase1"] == pytest.approx(1.0)
    assert s.loc["total: nhs cost", "mean_cost_phase1"] == pytest.approx((30 + 10 + 90 + 2 * 40 + 100 + 10) / 2)
    assert s.loc["total: societal cost", "n_phase3"] == 1


# --------------------------------------------------------------------------------------------
# against the synthetic truth on a large generated study
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def large_study(tmp_path_factory):
    from backpain_analysis.dataset import load_analysis_dataset
    from backpain_analysis.synthetic import generate_study

    study = generate_study(n_invited=20000, seed=5)
    folder = tmp_path_factory.mktemp("large_study")
    study.write(folder)
    _, df = load_analysis_dataset(folder)
    return study.truth, df


@pytest.mark.parametrize("imputation", ["shared", "mice", "complete_case"])
def test_estimates_recover_the_synthetic_truth(large_study, imputation):
    truth, df = large_study
    sets = ec.prepare_economic_data(df, imputation=imputation, n_imputations=3, seed=1)
    res = ec.cost_utility_by_group(sets, n_boot=400, seed=1)
    checks = {
        "incremental_cost": res["all patients"].delta_cost,
        "incremental_qaly": res["all patients"].delta_qaly,
        "incremental_cost_high_risk": res["high risk"].delta_cost,
        "incremental_qaly_high_risk": res["high risk"].delta_qaly,
    }
    for name, est in checks.items():
        # within 4 standard errors (the study is generated with a fixed seed, so this is deterministic)
        assert abs(est["estimate"] - truth[name]) < 4 * est["se"], (name, est, truth[name])
    # the study is large enough for the QALY gain to be detected
    assert res["all patients"].delta_qaly["ci_low"] > 0


def test_docstring_examples_run():
    import doctest

    import matplotlib

    matplotlib.use("Agg")
    result = doctest.testmod(ec, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted >= 20


# --------------------------------------------------------------------------- two-stage cluster bootstrap
def _clustered_costs(seed=0, g=6, n=15, sd_practice=40.0):
    rng = np.random.default_rng(seed)
    rows = []
    for phase in (1, 3):
        for j in range(g):
            effect = rng.normal(0, sd_practice)
            for _ in range(n):
                rows.append({"phase": phase, "practice_id": f"P{phase}{j}", "nhs_cost": 100 + effect + rng.gamma(2, 20),
                             "eq5d_index_0m": rng.uniform(0.3, 0.9)})
    d = pd.DataFrame(rows)
    d["qaly"] = 0.4 * d["eq5d_index_0m"] + rng.normal(0, 0.02, len(d))
    return d


def test_cluster_bootstrap_variance_matches_closed_form():
    # equal cluster sizes: the two-stage bootstrap variance of a phase mean is, exactly,
    # (1/G) [mean_g (ybar_g - ybar)^2 + mean_g s_g^2 / n]  (ddof 0), summed over the two phases
    d = _clustered_costs()
    res = ec.cost_utility(d, baseline=None, n_boot=20_000, seed=4, cluster="practice_id")
    expected = 0.0
    for _, part in d.groupby("phase"):
        by = part.groupby("practice_id")["nhs_cost"]
        means, within = by.mean(), by.var(ddof=0)
        g, n = len(means), 15
        expected += (np.mean((means - means.mean()) ** 2) + np.mean(within / n)) / g
    assert np.var(res.boot_cost, ddof=1) == pytest.approx(expected, rel=0.04)
    assert "two-stage" in res.method


def test_cluster_bootstrap_matches_slow_reference_loop():
    # a plain loop: draw practices, then patients within each drawn practice; different random
    # stream, so the SEs agree within Monte Carlo error (2,000 replicates: about 3%)
    d = _clustered_costs(seed=3, g=5, n=8)
    rng = np.random.default_rng(11)
    practices = {phase: [g["nhs_cost"].to_numpy() for _, g in part.groupby("practice_id")]
                 for phase, part in d.groupby("phase")}
    deltas = []
    for _ in range(4000):
        means = {}
        for phase, costs in practices.items():
            values = []
            for j in rng.integers(0, len(costs), size=len(costs)):
                values.append(rng.choice(costs[j], size=costs[j].size, replace=True))
            means[phase] = np.concatenate(values).mean()
        deltas.append(means[3] - means[1])
    res = ec.cost_utility(d, baseline=None, n_boot=4000, seed=9)
    assert res.delta_cost["se"] == pytest.approx(np.std(deltas, ddof=1), rel=0.08)
    # the patient bootstrap ignores the practices and is much narrower here
    naive = ec.cost_utility(d, baseline=None, n_boot=4000, seed=9, cluster=None)
    assert naive.delta_cost["se"] < 0.7 * res.delta_cost["se"]
    assert "patients resampled" in naive.method


def test_cluster_bootstrap_weights_keep_strata_and_clusters():
    strata = np.repeat([1, 3], [7, 5])
    clusters = np.array(list("aabbbcc") + list("ddeee"))
    w = np.vstack(list(ec.iter_cluster_bootstrap_weights(strata, clusters, 300, 2, chunk_size=70)))
    assert w.shape == (300, 12)
    # each stratum keeps its expected size; a cluster's count is a multiple of... its draws of n_g
    sizes = {"a": 2, "b": 3, "c": 2, "d": 2, "e": 3}
    for c, n_g in sizes.items():
        assert np.all(w[:, clusters == c].sum(axis=1) % n_g == 0)
    assert w[:, strata == 3].sum(axis=1).min() >= 4  # at least two clusters of >= 2 patients
    again = np.vstack(list(ec.iter_cluster_bootstrap_weights(strata, clusters, 300, 2, chunk_size=70)))
    assert np.array_equal(w, again)
    with pytest.raises(ec.EconomicsError, match="missing"):
        next(ec.iter_cluster_bootstrap_weights(strata, np.where(clusters == "a", None, clusters), 5, 0))
    with pytest.raises(ec.EconomicsError, match="cluster column"):
        ec.cost_utility(_clustered_costs(), n_boot=10, cluster="gp_id")


# --------------------------------------------------------------------------------------------
# every reported number against an independent computation (issue 18, "tests that would catch a
# wrong number"): an inverted ICER, a one-sided p, a halved MI standard error must all fail here
# --------------------------------------------------------------------------------------------
def test_icer_is_incremental_cost_over_incremental_qaly_by_hand():
    # phase 1 costs 100, 200 and QALYs 0.30, 0.32; phase 3 costs 250, 350 and QALYs 0.33, 0.35:
    # dCost = 300 - 150 = 150 GBP, dQALY = 0.34 - 0.31 = 0.03, ICER = 150 / 0.03 = 5,000 GBP per QALY
    d = pd.DataFrame({"phase": [1.0, 1.0, 3.0, 3.0], "nhs_cost": [100.0, 200.0, 250.0, 350.0],
                      "qaly": [0.30, 0.32, 0.33, 0.35]})
    res = ec.cost_utility(d, baseline=None, cluster=None, n_boot=50, seed=1)
    assert res.delta_cost["estimate"] == pytest.approx(150.0)
    assert res.delta_qaly["estimate"] == pytest.approx(0.03)
    assert res.icer == pytest.approx(5000.0)
    # the NMB at the ICER is zero (the definition of the ICER as a threshold)
    assert res.nmb(5000.0)["estimate"] == pytest.approx(0.0, abs=1e-9)


def _two_phase(seed=0, n1=120, n3=150):
    rng = np.random.default_rng(seed)
    n = n1 + n3
    phase = np.repeat([1.0, 3.0], [n1, n3])
    base = rng.uniform(0.2, 0.95, n)
    d = pd.DataFrame({"phase": phase, "eq5d_index_0m": base,
                      "nhs_cost": rng.normal(200, 60, n) - 15 * (phase == 3)})
    d["qaly"] = 0.1 + 0.6 * base + 0.01 * (phase == 3) + rng.normal(0, 0.04, n)
    return d


def test_single_dataset_p_value_is_two_sided_and_agrees_with_welch():
    d = _two_phase()
    res = ec.cost_utility(d, cluster=None, n_boot=4000, seed=3)
    est, boots = res.delta_cost["estimate"], res.boot_cost
    se = np.std(boots, ddof=1)
    # by hand: two-sided normal p from the bootstrap SE; percentile CI
    assert res.delta_cost["se"] == pytest.approx(se)
    assert res.delta_cost["p_value"] == pytest.approx(2 * stats.norm.sf(abs(est) / se))
    assert res.delta_cost["ci_low"] == pytest.approx(np.percentile(boots, 2.5))
    assert res.delta_cost["ci_high"] == pytest.approx(np.percentile(boots, 97.5))
    # independently: Welch's t-test of the costs (scipy); the bootstrap SE of a difference in
    # means is sqrt(s1^2/n1 + s3^2/n3) up to (n-1)/n and Monte Carlo error
    c1, c3 = d.loc[d.phase == 1, "nhs_cost"], d.loc[d.phase == 3, "nhs_cost"]
    welch = stats.ttest_ind(c3, c1, equal_var=False)
    assert se == pytest.approx(np.sqrt(c1.var() / len(c1) + c3.var() / len(c3)), rel=0.06)
    assert res.delta_cost["p_value"] == pytest.approx(welch.pvalue, rel=0.25)
    # QALYs: the bootstrap SE of the adjusted phase coefficient against the HC0 sandwich SE (statsmodels)
    fit = sm.OLS.from_formula("qaly ~ I(phase == 3) + eq5d_index_0m", data=d).fit(cov_type="HC0")
    assert res.delta_qaly["se"] == pytest.approx(fit.bse.iloc[1], rel=0.08)
    z = res.delta_qaly["estimate"] / fit.bse.iloc[1]
    assert res.delta_qaly["p_value"] == pytest.approx(2 * stats.norm.sf(abs(z)), rel=0.3, abs=2e-3)


def test_nmb_ci_and_p_from_replicates_by_hand():
    d = _two_phase(seed=5)
    res = ec.cost_utility(d, cluster=None, n_boot=3000, seed=2)
    w = 20_000
    boots = w * res.boot_qaly - res.boot_cost
    est = w * res.delta_qaly["estimate"] - res.delta_cost["estimate"]
    nmb = res.nmb(w)
    assert nmb["estimate"] == pytest.approx(est)
    assert nmb["ci_low"] == pytest.approx(np.percentile(boots, 2.5))
    assert nmb["ci_high"] == pytest.approx(np.percentile(boots, 97.5))
    assert nmb["p_value"] == pytest.approx(2 * stats.norm.sf(abs(est) / np.std(boots, ddof=1)))
    assert nmb["prob_cost_effective"] == pytest.approx(np.mean(boots > 0))


def test_rubin_pooling_of_bootstrap_results_by_hand():
    # three "imputed" data sets: the same patients with different noise in the imputed values
    sets = []
    for k in range(3):
        d = _two_phase(seed=0)
        rng = np.random.default_rng(100 + k)
        fill = rng.uniform(size=len(d)) < 0.3
        d.loc[fill, "nhs_cost"] = rng.normal(200, 60, fill.sum())
        d.loc[fill, "qaly"] = d.loc[fill, "qaly"] + rng.normal(0, 0.03, fill.sum())
        sets.append(d)
    res = ec.cost_utility(sets, cluster=None, n_boot=3000, seed=7)
    m = 3
    for key, boots, points in (("delta_cost", res.boot_cost, res.point_cost),
                               ("delta_qaly", res.boot_qaly, res.point_qaly)):
        # point estimates per data set, independently of the package
        if key == "delta_cost":
            expected = [s.loc[s.phase == 3, "nhs_cost"].mean() - s.loc[s.phase == 1, "nhs_cost"].mean() for s in sets]
        else:
            expected = [sm.OLS.from_formula("qaly ~ I(phase == 3) + eq5d_index_0m", data=s).fit().params.iloc[1]
                        for s in sets]
        np.testing.assert_allclose(points, expected, rtol=1e-9)
        u = np.mean([np.var(boots[res.boot_groups == j], ddof=1) for j in range(m)])
        b = np.var(expected, ddof=1)
        total = u + (1 + 1 / m) * b
        df = (m - 1) * (1 + u / ((1 + 1 / m) * b)) ** 2  # Rubin (1987), large-sample complete-data df
        est = np.mean(expected)
        half = stats.t.ppf(0.975, df) * np.sqrt(total)
        r = getattr(res, key)
        assert r["estimate"] == pytest.approx(est)
        assert r["se"] == pytest.approx(np.sqrt(total), rel=1e-9)
        assert r["ci_low"] == pytest.approx(est - half, rel=1e-9)
        assert r["ci_high"] == pytest.approx(est + half, rel=1e-9)
        assert r["p_value"] == pytest.approx(2 * stats.t.sf(abs(est) / np.sqrt(total), df), rel=1e-9)
    # the within-imputation variance of the cost difference is the variance of a difference in
    # means (closed form, up to Monte Carlo error): a halved SE cannot pass
    s = sets[0]
    closed = s.loc[s.phase == 1, "nhs_cost"].var() / (s.phase == 1).sum() + \
        s.loc[s.phase == 3, "nhs_cost"].var() / (s.phase == 3).sum()
    within = np.var(res.boot_cost[res.boot_groups == 0], ddof=1)
    assert within == pytest.approx(closed, rel=0.12)
    assert res.delta_cost["se"] ** 2 >= within * 0.85


# --------------------------------------------------------------------------------------------
# implementation costs, societal per employed patient, NHS cost components, non-back-pain care
# --------------------------------------------------------------------------------------------
def test_bundled_implementation_costs_are_sourced_and_counted_by_a_known_basis():
    t = ec.load_implementation_costs()
    assert list(t.columns) == ec.IMPLEMENTATION_COST_COLUMNS
    assert t["quantity_basis"].isin(list(ec.QUANTITY_BASES)).all()
    assert (t["cost_gbp"] > 0).all() and (t["quantity"] > 0).all()
    assert t["source"].str.len().min() > 20
    assert {"physio_training_day", "gp_training_day", "mentoring_session", "questionnaire_staff_time"} <= set(t["item"])


def test_bad_implementation_cost_table_raises(tmp_path):
    t = ec.load_implementation_costs()
    path = tmp_path / "impl.csv"
    t.assign(quantity_basis=t["quantity_basis"].where(t["item"] != "trainer_day", "per_week")).to_csv(path, index=False)
    with pytest.raises(ec.EconomicsError, match="quantity_basis"):
        ec.load_implementation_costs(path)
    t.assign(quantity=t["quantity"].where(t["item"] != "trainer_day", -1)).to_csv(path, index=False)
    with pytest.raises(ec.EconomicsError, match="quantity"):
        ec.load_implementation_costs(path)


def _impl_table():
    return pd.DataFrame({
        "item": ["physio_day", "gp_day", "trainer", "mentoring", "template", "screening"],
        "unit": "u", "cost_gbp": [200.0, 800.0, 500.0, 60.0, 100.0, 1.5],
        "quantity": [1.0, 1.0, 10.0, 1.0, 1.0, 1.0],
        "quantity_basis": ["per_physio_training_day", "per_gp_training_day", "total", "per_mentoring_session",
                           "per_practice", "per_patient"],
        "price_year": "2009/10", "source": "test", "notes": ""})


def test_implementation_cost_per_patient_by_hand():
    clin = pd.DataFrame({"clinician_id": ["G1", "G2", "G3", "P1", "P2"],
                         "profession": ["gp", "gp", "gp", "physio", "physio"],
                         "practice_id": ["A", "A", "B", None, None], "training_days": [1.0, 0.5, 2.0, 3.0, 9.0],
                         "mentoring_sessions": [np.nan, np.nan, np.nan, 12.0, 4.0]})
    t = ec.implementation_cost_table(200, clin, _impl_table()).set_index("item")
    # physio 12 days x 200 = 2400; GP 3.5 days x 800 = 2800; trainer 10 x 500 = 5000;
    # mentoring 16 x 60 = 960; templates 2 practices x 100 = 200; screening 200 x 1.5 = 300
    expected = {"physio_day": 2400, "gp_day": 2800, "trainer": 5000, "mentoring": 960, "template": 200,
                "screening": 300}
    for item, total in expected.items():
        assert t.loc[item, "total_gbp"] == pytest.approx(total)
        assert t.loc[item, "per_patient_gbp"] == pytest.approx(total / 200)
    assert t.loc["total", "per_patient_gbp"] == pytest.approx(11660 / 200)
    assert t.loc["screening", "per_patient_gbp"] == pytest.approx(1.5)
    with pytest.raises(ec.EconomicsError, match="clinicians"):
        ec.implementation_cost_table(200, None, _impl_table())
    with pytest.raises(ec.EconomicsError, match="n_patients"):
        ec.implementation_cost_table(0, clin, _impl_table())


@pytest.mark.parametrize("cluster", [None, "practice_id"])
def test_implementation_scenario_adds_exactly_the_cost_per_patient(cluster):
    d = _clustered_costs(seed=2)
    d["societal_cost"] = d["nhs_cost"] + 50.0
    per_patient = 58.3
    base = ec.cost_utility(d, n_boot=400, seed=3, cluster=cluster)
    (with_impl,) = ec.add_implementation_cost(d, per_patient)
    res = ec.cost_utility(with_impl, n_boot=400, seed=3, cluster=cluster)
    assert res.delta_cost["estimate"] == pytest.approx(base.delta_cost["estimate"] + per_patient, rel=1e-12)
    np.testing.assert_allclose(res.boot_cost, base.boot_cost + per_patient, rtol=1e-10)
    assert res.delta_cost["ci_low"] == pytest.approx(base.delta_cost["ci_low"] + per_patient)
    assert res.delta_cost["ci_high"] == pytest.approx(base.delta_cost["ci_high"] + per_patient)
    assert res.delta_qaly == base.delta_qaly
    assert res.mean_cost["phase1"] == pytest.approx(base.mean_cost["phase1"])
    assert res.mean_cost["phase3"] == pytest.approx(base.mean_cost["phase3"] + per_patient)
    soc = ec.cost_utility(with_impl, cost="societal_cost", n_boot=50, seed=3, cluster=cluster)
    soc0 = ec.cost_utility(d, cost="societal_cost", n_boot=50, seed=3, cluster=cluster)
    assert soc.delta_cost["estimate"] == pytest.approx(soc0.delta_cost["estimate"] + per_patient)
    assert d["nhs_cost"].equals(_clustered_costs(seed=2)["nhs_cost"])  # input unchanged


def test_societal_cost_per_employed_patient_by_hand():
    rng = np.random.default_rng(4)
    n = 240
    d = pd.DataFrame({"phase": np.tile([1.0, 3.0], n // 2),
                      "risk_group": pd.Categorical(np.repeat(["low", "high"], n // 2), ["low", "medium", "high"]),
                      "employed": (rng.uniform(size=n) < 0.6).astype(float),
                      "societal_cost": rng.gamma(2, 200, n), "eq5d_index_0m": rng.uniform(0.2, 0.9, n)})
    d["qaly"] = 0.4 * d["eq5d_index_0m"] + rng.normal(0, 0.02, n)
    res = ec.cost_utility_employed(d, n_boot=200, seed=1, cluster=None)
    for name, sel in (("all patients", d.employed == 1), ("high risk", (d.employed == 1) & (d.risk_group == "high"))):
        e = d.loc[sel]
        diff = e.loc[e.phase == 3, "societal_cost"].mean() - e.loc[e.phase == 1, "societal_cost"].mean()
        assert res[name].delta_cost["estimate"] == pytest.approx(diff)
        assert (res[name].n_phase1, res[name].n_phase3) == ((e.phase == 1).sum(), (e.phase == 3).sum())
    assert "medium risk" not in res


def test_nhs_cost_keeps_observed_components_of_non_consenters():
    d = _analysis_like(seed=3)
    no_records = np.zeros(len(d), bool)
    no_records[::5] = True  # non-consenters: record items missing, physiotherapy observed
    for c in ["n_gp_consultations", "imaging", "n_prescriptions", "secondary_care_referral"]:
        d.loc[no_records, c] = np.nan
    (cc,) = ec.prepare_economic_data(d, _unit_costs(), imputation="complete_case")
    assert len(cc) <= (~no_records).sum()
    sets = ec.prepare_economic_data(d, _unit_costs(), imputation="mice", n_imputations=2, seed=3, max_iter=3)
    observed_physio = d["physio_sessions"].to_numpy() * 40.0
    for s in sets:
        np.testing.assert_allclose(s["cost_physio_sessions"].to_numpy(), observed_physio)  # never imputed
        components = s[[f"cost_{c}" for c in ec.RESOURCE_ITEMS]]
        np.testing.assert_allclose(s["nhs_cost"], components.sum(axis=1))
        # the imputed GP cost is a multiple of the unit cost (predictive mean matching donors)
        gp = s.loc[no_records, "cost_n_gp_consultations"].to_numpy()
        np.testing.assert_allclose(gp / 30.0, np.round(gp / 30.0))
    # a patient with every component observed keeps their exact total
    full = d[list(ec.RESOURCE_ITEMS)].notna().all(axis=1).to_numpy()
    by_hand = (d["n_gp_consultations"] * 30 + d["physio_sessions"] * 40 + d["imaging"] * 100
               + d["n_prescriptions"] * 10 + d["secondary_care_referral"] * 150).to_numpy()
    np.testing.assert_allclose(sets[0]["nhs_cost"].to_numpy()[full], by_hand[full])


def test_non_back_pain_scenario_adds_the_extra_care_and_needs_the_columns():
    d = _analysis_like(seed=4)
    with pytest.raises(ec.EconomicsError, match="non_back_pain"):
        ec.prepare_economic_data(d, _unit_costs(), imputation="complete_case", non_back_pain=True)
    d["n_gp_consultations_other"] = 2.0
    d["n_prescriptions_other"] = 1.0
    assert ec.non_back_pain_columns(d) == ec.NON_BACK_PAIN_ITEMS
    (base,) = ec.prepare_economic_data(d, _unit_costs(), imputation="complete_case")
    (extra,) = ec.prepare_economic_data(d, _unit_costs(), imputation="complete_case", non_back_pain=True)
    np.testing.assert_allclose(extra["nhs_cost"], base["nhs_cost"] + 2 * 30.0 + 1 * 10.0)


def test_implementation_cost_table_ships_in_the_wheel_like_unit_costs():
    import tomllib
    from pathlib import Path

    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    shipped = pyproject["tool"]["setuptools"]["package-data"]["backpain_analysis._data"]
    assert {"unit_costs.csv", "implementation_costs.csv"} <= set(shipped)
    assert ec.DEFAULT_IMPLEMENTATION_COSTS.name == "implementation_costs.csv"
