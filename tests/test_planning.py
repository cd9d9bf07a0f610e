"""Design planning by simulation (backpain_analysis.planning, `backpain plan`).

Numbers are checked against independent answers: the noncentral-t power of ANCOVA (closed form),
the generator's own truth, hand-computed Monte Carlo SEs and design-effect formulas, and the
library fit of the primary analysis.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from backpain_analysis import planning as P
from backpain_analysis.synthetic import generate_study

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------ closed form
def test_analytic_power_matches_textbook_values():
    # 64 per group detect d = 0.5 with 80% power (Cohen 1988); alpha at no effect
    assert P.analytic_power(0.5, 1.0, 64, 64) == pytest.approx(0.8015, abs=5e-4)
    assert P.analytic_power(0.0, 2.0, 30, 40, n_covariates=3) == pytest.approx(0.05, abs=1e-12)
    # large df: the normal approximation 1 - Phi(1.96 - ncp) + Phi(-1.96 - ncp)
    ncp = 0.05 / (1.0 * math.sqrt(2 / 5000))
    normal = stats.norm.sf(1.959964 - ncp) + stats.norm.cdf(-1.959964 - ncp)
    assert P.analytic_power(0.05, 1.0, 5000, 5000) == pytest.approx(normal, abs=1e-3)
    assert P.analytic_power(0.3, 1.0, 5000, 5000) == pytest.approx(1.0, abs=1e-9)  # far tail, no NaN


@pytest.mark.parametrize(("effect", "seed"), [(0.0, 11), (0.6, 12), (1.0, 13)])
def test_simulated_power_agrees_with_noncentral_t(effect, seed):
    """No clustering, complete follow-up, normal residual with known SD, ANCOVA: within 3 MCSE."""
    r = P.analytic_check(effect=effect, n_replicates=300, seed=seed)
    assert r["replicates"] == 300
    assert abs(r["simulated"] - r["analytic"]) <= 3 * r["mcse"] + 1 / 300, r


def test_analytic_check_would_catch_a_wrong_standard_error(monkeypatch):
    """A planted bug (SE halved) makes the simulated power disagree with the closed form."""
    real = P._ANALYSE["ancova"]

    def halved(data, alpha):
        rows = real(data, alpha)
        for row in rows:
            row["se"] /= 2
            crit = stats.t.ppf(1 - alpha / 2, row["df"])
            row["ci_low"], row["ci_high"] = row["estimate"] - crit * row["se"], row["estimate"] + crit * row["se"]
        return rows

    monkeypatch.setitem(P._ANALYSE, "ancova", halved)
    assert not P.analytic_check(effect=0.6, n_replicates=150, seed=12)["agrees"]


# ------------------------------------------------------------------------------ truth
@pytest.mark.parametrize("profile", ["uniform", "published"])
def test_true_effects_reproduce_the_generator_truth(profile):
    design = P.impact_design()
    t = P.true_effects(design, 0.71, profile)
    assert t["effect"] == pytest.approx(0.71, abs=1e-9)
    truth = generate_study(n_invited=10, seed=0, rmdq_effect=t["rmdq_effect"], **design.generator_overrides()).truth
    assert truth["rmdq_adjusted_difference"] == pytest.approx(0.71, abs=2e-6)
    for g, name in enumerate(P.RISK_GROUPS):
        # truth.json keeps 6 significant digits: relative rounding error up to 5e-6
        assert truth[f"rmdq_difference_{name}_risk"] == pytest.approx(t["group_effects"][g], rel=5e-6)
    if profile == "published":  # the relative pattern of the calibrated default is kept
        ratio = np.asarray(t["rmdq_effect"]) / np.asarray(P.PROFILES["published"])
        assert np.ptp(ratio) < 1e-9


def test_design_overrides_reach_the_generator():
    d = P.Design(n_practices=12, invited=(600, 900), followup=(0.8, 0.8), icc=0.05, practice_phase_sd=0.5,
                 residual_sd=5.5, risk_mix=(0.3, 0.4, 0.3), overrides={"rmdq_secular_trend": 0.2})
    o = d.generator_overrides()
    assert o["n_practices"] == 12 and o["n_gps"] == round(64 / 7 * 12)
    assert o["phase1_share"] == pytest.approx(0.4)
    assert o["followup_6m"] == [0.8, 0.8] and o["icc_practice"] == 0.05 and o["rmdq_change_sd"] == 5.5
    assert o["rmdq_practice_phase_sd"] == 0.5 and o["risk_mix"] == [0.3, 0.4, 0.3]
    assert o["rmdq_secular_trend"] == 0.2
    study = generate_study(n_invited=1500, seed=3, truth_mc_n=20000, **o)
    assert study.practices.shape[0] == 12
    assert (study.patients["phase"] == 1).sum() == 600


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"n_practices": 0}, "n_practices"),
    ({"invited": (10,)}, "invited"),
    ({"followup": (0.5, 1.2)}, "followup"),
    ({"risk_mix": (0.5, 0.5, 0.5)}, "risk_mix"),
    ({"icc": 1.0}, "icc"),
    ({"overrides": {"rmdq_effect": [1, 1, 1]}}, "rmdq_effect through effect"),
    ({"overrides": {"followup_6m": [1, 1]}}, "followup_6m through followup"),
])
def test_bad_designs_raise_clear_errors(kwargs, message):
    with pytest.raises(P.PlanningError, match=message):
        P.Design(**kwargs)


def test_bad_options_raise_clear_errors():
    d = P.Design(n_practices=3, invited=(30, 30))
    with pytest.raises(P.PlanningError, match="analyses"):
        P.simulate_power(d, 1.0, 5, analysis="bayes", simulator="normal")
    with pytest.raises(P.PlanningError, match="n_replicates"):
        P.simulate_power(d, 1.0, 1, simulator="normal")
    with pytest.raises(P.PlanningError, match="needs the generator"):
        P.simulate_power(d, 1.0, 2, analysis="matched_referral", simulator="normal")
    with pytest.raises(P.PlanningError, match="profile"):
        P.true_effects(d, 1.0, "steep")


# ------------------------------------------------------------------------------ summaries
def test_summary_statistics_and_mcse_by_hand():
    est = np.array([0.2, 0.9, 1.4, -0.1, 0.6])
    se = np.array([0.3, 0.3, 0.4, 0.3, 0.35])
    crit = 2.0
    reps = pd.DataFrame({"estimand": "primary", "estimate": est, "se": se, "ci_low": est - crit * se,
                         "ci_high": est + crit * se, "df": 10.0, "n": 100, "n_phase1": 40, "n_phase3": 60,
                         "truth": 0.5, "failed": ["", "", "", "", ""]})
    reps.loc[5] = {"estimand": "primary", "failed": "LinAlgError"}
    s = P.summarize_replicates(reps).iloc[0]
    lo, hi = est - crit * se, est + crit * se
    reject = (lo > 0) | (hi < 0)
    assert s["replicates"] == 5 and s["failed"] == 1
    assert s["power"] == pytest.approx(reject.mean())
    assert s["power_mcse"] == pytest.approx(math.sqrt(reject.mean() * (1 - reject.mean()) / 5))
    assert s["bias"] == pytest.approx(est.mean() - 0.5)
    assert s["bias_mcse"] == pytest.approx(est.std(ddof=1) / math.sqrt(5))
    cover = ((lo <= 0.5) & (0.5 <= hi)).mean()
    assert s["coverage"] == pytest.approx(cover)
    assert s["mean_ci_width"] == pytest.approx((hi - lo).mean())
    assert s["ci_width_mcse"] == pytest.approx((hi - lo).std(ddof=1) / math.sqrt(5))


def test_odds_ratio_power_uses_the_null_value_one_on_the_log_scale():
    reps = pd.DataFrame({"estimand": "matched_referral", "estimate": [2.0, 1.2], "se": 0.1,
                         "ci_low": [1.5, 0.9], "ci_high": [2.7, 1.6], "df": np.inf, "n": 500, "n_phase1": 200,
                         "n_phase3": 300, "truth": 2.0, "failed": ""})
    s = P.summarize_replicates(reps).iloc[0]
    assert s["power"] == 0.5
    assert s["bias"] == pytest.approx((math.log(2.0) + math.log(1.2)) / 2 - math.log(2.0))


def test_design_effect_formulas_by_hand():
    d = P.Design(n_practices=10, invited=(500, 500), icc=0.05, practice_phase_sd=1.0)
    reps = pd.DataFrame({"estimand": ["primary", "ancova"] * 3, "estimate": [0.1, 0.1, 0.5, 0.5, 0.9, 0.9],
                         "se": [0.3, 0.2, 0.3, 0.2, 0.3, 0.2], "n": 400, "failed": ""})
    de = P.design_effects(d, reps)
    s_w2 = 5.6 ** 2
    s_p2 = 0.05 / 0.95 * s_w2
    total = s_p2 + 1.0 + s_w2
    assert de["m_practice"] == 40 and de["m_period"] == 20
    assert de["de_formula"] == pytest.approx(1 + 39 * 0.05)
    # Hooper et al. 2016 before-after design: (m s_pp^2 + s_w^2) / total
    assert de["de_before_after"] == pytest.approx((20 * 1.0 + s_w2) / total)
    assert de["de_simulated"] == pytest.approx(np.var([0.1, 0.5, 0.9], ddof=1) / 0.04)


def test_minimum_detectable_effect_on_an_exact_probit_curve():
    effects = np.linspace(0.2, 1.6, 6)
    power = stats.norm.cdf(-2.0 + 2.5 * effects)
    curve = pd.DataFrame({"estimand": "primary", "effect": effects, "power": power, "replicates": 10000,
                          "mean_se": 0.3, "mean_df": 30.0})
    m = P.minimum_detectable_effect(curve, 0.8)
    assert m["mde_curve"] == pytest.approx((stats.norm.ppf(0.8) + 2.0) / 2.5, abs=1e-3)
    factor = stats.t.ppf(0.975, 30) + stats.t.ppf(0.8, 30)
    assert m["mde_se_formula"] == pytest.approx(factor * 0.3)
    m = P.minimum_detectable_effect(curve.assign(sd_se=0.05), 0.8)
    # mean of 6 points, each with MCSE factor * 0.05 / sqrt(10000)
    assert m["mde_se_formula_mcse"] == pytest.approx(factor * 0.05 / 100 / math.sqrt(6))
    with pytest.raises(P.PlanningError, match="2 effect sizes"):
        P.minimum_detectable_effect(curve.iloc[:1])


def test_summary_sentence_reads_the_row():
    row = {"estimand": "primary", "n_practices": 7, "invited_phase1": 630, "invited_phase3": 1017, "effect": 0.71,
           "power": 0.2, "power_mcse": 0.02, "replicates": 400, "mean_n": 550.0}
    s = P.summary_sentence(row)
    assert s.startswith("With 7 practices and 630 + 1017 invited patients (about 550 analysed)")
    assert "0.71 RMDQ points is 0.20 (0.16 to 0.24; 400 simulated studies)" in s


# ------------------------------------------------------------------------------ the fast path and the cache
def test_replicate_loop_runs_the_library_primary_analysis():
    """The replicate's primary row is fit_mixed_kr on the generator's analysis dataset (to 1e-6)."""
    from backpain_analysis.models import fit_mixed_kr
    from backpain_analysis.outcomes import PRIMARY_COVARIATES

    design = P.impact_design()
    t = P.true_effects(design, 0.71)
    rows = P._one_replicate((design, t, 77, 0, ("primary", "ancova"), "generator", 0.05))
    data, truth = P._generator_data(design, t["rmdq_effect"], 77)
    ref = fit_mixed_kr(data, "rmdq_change_6m", list(PRIMARY_COVARIATES))
    prim = next(r for r in rows if r["estimand"] == "primary")
    for k in ("estimate", "se", "df", "ci_low", "ci_high"):
        assert prim[k] == pytest.approx(ref[k], rel=1e-6)
    assert prim["truth"] == pytest.approx(truth["rmdq_adjusted_difference"]) == pytest.approx(0.71, abs=1e-5)
    assert 450 < prim["n"] < 650  # about 60% of about 922 respondents, as published (368 + 554)


def test_generator_power_point_is_reproducible_and_cached(tmp_path, monkeypatch):
    design = P.impact_design()
    a = P.simulate_power(design, 0.71, 4, seed=5, cache_dir=tmp_path)
    files = list(tmp_path.glob("point_*.json"))
    assert len(files) == 1
    stored = json.loads(files[0].read_text())
    assert stored["point"]["design"]["n_practices"] == 7 and len(stored["replicates"]) == 8  # primary + ancova

    def boom(*args, **kwargs):
        raise AssertionError("a cached point must not be simulated again")

    monkeypatch.setattr(P, "simulate_replicates", boom)
    b = P.simulate_power(design, 0.71, 4, seed=5, cache_dir=tmp_path)
    pd.testing.assert_frame_equal(a, b)
    monkeypatch.undo()
    c = P.simulate_power(design, 0.71, 4, seed=5)
    pd.testing.assert_frame_equal(a.drop(columns=[]), c)
    assert a.loc[0, "truth"] == pytest.approx(0.71, abs=1e-5)


def test_grids_label_points_and_resume_from_the_cache(tmp_path, monkeypatch):
    d = P.Design(n_practices=4, invited=(80, 80), icc=0.0)
    g = P.power_grid(d, 1.5, [3, 4], [20, 30], 3, seed=2, simulator="normal", cache_dir=tmp_path, progress=False)
    assert list(zip(g["n_practices"], g["patients_per_practice"], strict=True)) == [(3, 20), (3, 30), (4, 20), (4, 30)]
    assert list(g["invited_phase1"]) == [60, 90, 80, 120]
    assert len(list(tmp_path.glob("point_*.json"))) == 4
    monkeypatch.setattr(P, "simulate_replicates", lambda *a, **k: (_ for _ in ()).throw(AssertionError("rerun")))
    again = P.power_grid(d, 1.5, [3, 4], [20, 30], 3, seed=2, simulator="normal", cache_dir=tmp_path, progress=False)
    pd.testing.assert_frame_equal(g, again)


def test_effect_curve_rises_and_the_replicate_seeds_are_shared():
    d = P.Design(n_practices=6, invited=(120, 120), icc=0.0)
    curve = P.effect_grid(d, [0.0, 1.0, 2.5], 30, seed=4, simulator="normal", analysis="ancova",
                          design_effect=False, progress=False)
    assert list(curve["effect"]) == [0.0, 1.0, 2.5]
    assert curve["power"].is_monotonic_increasing and curve["power"].iloc[-1] > 0.9
    assert P.replicate_seeds(4, 30) == P.replicate_seeds(4, 40)[:30]


# ------------------------------------------------------------------------------ command line
def test_backpain_plan_reproduces_the_analytic_check():
    out = subprocess.run([sys.executable, "-m", "backpain_analysis", "plan", "--check-analytic", "--replicates",
                          "150", "--quiet"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "AGREES" in out.stdout and "analytic noncentral-t power 0.358" in out.stdout


def test_backpain_plan_power_point_and_bad_input(tmp_path):
    csv = tmp_path / "plan.csv"
    out = subprocess.run([sys.executable, "-m", "backpain_analysis", "plan", "--simulator", "normal", "--practices",
                          "5", "--invited", "100", "100", "--replicates", "3", "--quiet", "--out", str(csv)],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "With 5 practices and 20 invited patients per practice per phase" in out.stdout
    assert pd.read_csv(csv)["replicates"].tolist() == [3]
    bad = subprocess.run([sys.executable, "-m", "backpain_analysis", "plan", "--icc", "1.5", "--replicates", "2"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert bad.returncode == 2 and "icc must be in [0, 1)" in bad.stderr and "Traceback" not in bad.stderr


def test_fast_primary_equals_fit_mixed_kr():
    """The replicate-loop REML (no patsy) gives fit_mixed_kr's numbers to 1e-6, also with
    clustering and cluster-period effects in the data, including its rule of dropping a zero
    practice-by-phase variance."""
    checked = dropped = 0
    for design in (P.impact_design(), P.impact_design(icc=0.08, practice_phase_sd=0.8, n_practices=9)):
        t = P.true_effects(design, 0.71)
        for seed in range(6):
            data, _ = P._generator_data(design, t["rmdq_effect"], 500 + seed, full_truth=False)
            fast = P._primary_fast(data, 0.05)[0]
            try:
                ref = P._primary(data, 0.05)[0]
            except np.linalg.LinAlgError:  # fit_reml can fail where the fast path does not
                continue
            for k in ("estimate", "se", "df", "ci_low", "ci_high", "icc_estimate"):
                assert fast[k] == pytest.approx(ref[k], abs=1e-6, rel=1e-6), (seed, k)
            assert (fast["n"], fast["n_phase1"], fast["n_phase3"]) == (ref["n"], ref["n_phase1"], ref["n_phase3"])
            dropped += fast["dropped"]
            checked += 1
    assert checked >= 10
    assert 0 < dropped < checked  # both branches of the zero-component rule were compared
