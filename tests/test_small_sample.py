"""Kenward-Roger, REML and CR2 checked against R (lme4 + pbkrtest/lmerTest, clubSandwich) and a dense
numpy re-derivation.

With Rscript on the PATH the R script tests/r/primary_check.R is run on the bundled study's complete
cases; without it the same values, stored below from R 4 / lme4 / pbkrtest 0.5.2 / clubSandwich on the
bundled study, are used (so a planted bug in the package still fails without R).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from backpain_analysis import models
from backpain_analysis.dataset import load_analysis_dataset
from backpain_analysis.outcomes import PRIMARY_COVARIATES, primary_analysis
from backpain_analysis.small_sample import SmallSampleError, cr2_test, fit_reml

ROOT = Path(__file__).resolve().parents[1]
HAVE_R = shutil.which("Rscript") is not None

# R reference values on the bundled study's complete cases (tests/r/primary_check.R)
R_STORED = {
    "kr_estimate": 0.4289073802, "kr_se": 0.4505627023, "kr_df": 5.96652319, "satt_se": 0.4489899871,
    "var_practice_phase": 0.295535068, "var_practice": 0.495243012, "var_Residual": 15.9290194,
    "reml": 3254.408942, "cr2_estimate": 0.4120826522, "cr2_se": 0.4100134971, "cr2_df": 6.0,
}


@pytest.fixture(scope="module")
def bundled():
    _, data = load_analysis_dataset(ROOT / "data" / "synthetic")
    return data


@pytest.fixture(scope="module")
def complete(bundled):
    d = models._prepare(models.add_phase3(bundled), "rmdq_change_6m", list(PRIMARY_COVARIATES),
                        extra=["practice_id"])
    return d


def _r_values(complete, tmp_path_factory) -> dict[str, float]:
    if not HAVE_R:
        return R_STORED
    path = tmp_path_factory.mktemp("r") / "cc.csv"
    complete.to_csv(path, index=False)
    out = subprocess.run(["Rscript", str(ROOT / "tests" / "r" / "primary_check.R"), str(path)],
                         capture_output=True, text=True, check=True, timeout=300)
    vals = dict(line.split("=") for line in out.stdout.strip().splitlines() if "=" in line)
    return {k: float(v) for k, v in vals.items()}


@pytest.fixture(scope="module")
def r_values(complete, tmp_path_factory):
    return _r_values(complete, tmp_path_factory)


@pytest.mark.skipif(not HAVE_R, reason="Rscript is not installed")
def test_r_script_reproduces_the_stored_reference(r_values):
    for k, v in R_STORED.items():
        assert r_values[k] == pytest.approx(v, rel=1e-6), k


def test_kenward_roger_matches_lme4_pbkrtest(bundled, r_values):
    r = models.fit_mixed_kr(bundled, "rmdq_change_6m", list(PRIMARY_COVARIATES))
    assert r["estimate"] == pytest.approx(r_values["kr_estimate"], rel=1e-4)
    assert r["se"] == pytest.approx(r_values["kr_se"], rel=1e-4)
    assert r["df"] == pytest.approx(r_values["kr_df"], rel=1e-4)
    assert r["var_practice"] == pytest.approx(r_values["var_practice"], rel=1e-4)
    assert r["var_practice_phase"] == pytest.approx(r_values["var_practice_phase"], rel=1e-4)
    assert r["var_residual"] == pytest.approx(r_values["var_Residual"], rel=1e-4)
    assert r["fit"].reml_criterion == pytest.approx(r_values["reml"], rel=1e-8)
    assert r["fit"].kenward_roger("phase3")["se_unadjusted"] == pytest.approx(r_values["satt_se"], rel=1e-4)
    # ICC by hand from the variance components
    assert r["icc"] == pytest.approx(r_values["var_practice"] / (r_values["var_practice"]
                                     + r_values["var_practice_phase"] + r_values["var_Residual"]), rel=1e-4)
    # CI from the t quantile on the KR df
    from scipy import stats
    half = stats.t.ppf(0.975, r_values["kr_df"]) * r_values["kr_se"]
    assert r["ci_high"] - r["estimate"] == pytest.approx(half, rel=1e-4)


def test_cr2_matches_clubsandwich(bundled, r_values):
    r = models.fit_cluster_fixed_cr2(bundled, "rmdq_change_6m", list(PRIMARY_COVARIATES))
    assert r["estimate"] == pytest.approx(r_values["cr2_estimate"], rel=1e-6)
    assert r["se"] == pytest.approx(r_values["cr2_se"], rel=1e-6)
    assert r["df"] == r_values["cr2_df"]


def test_primary_complete_case_row_is_the_r_model(bundled, r_values):
    table = primary_analysis(bundled).set_index("analysis")
    cc = table.loc["complete cases"]
    assert cc["estimate"] == pytest.approx(r_values["kr_estimate"], rel=1e-4)
    assert cc["se"] == pytest.approx(r_values["kr_se"], rel=1e-4)
    assert cc["df"] == pytest.approx(r_values["kr_df"], rel=1e-4)
    assert table.loc["practice fixed effects, CR2, complete cases", "se"] == pytest.approx(r_values["cr2_se"],
                                                                                           rel=1e-6)
    ols = table.loc["OLS as published, complete cases"]
    assert ols["df"] == cc["n_phase1"] + cc["n_phase3"] - 11  # 10 covariate terms + intercept


def _dense_kr(x, y, groups, variances, j):
    """Kenward-Roger by dense matrices, written from Kenward & Roger (1997) eq. (1)-(5), (3.11)-(3.13)."""
    n = len(y)
    zs = []
    for g in groups:
        levels = sorted(set(g))
        zs.append(np.array([[1.0 if gi == lev else 0.0 for lev in levels] for gi in g]))
    gm = [z @ z.T for z in zs] + [np.eye(n)]
    v = sum(s * g for s, g in zip(variances, gm, strict=True))
    vi = np.linalg.inv(v)
    phi = np.linalg.inv(x.T @ vi @ x)
    k = len(gm)
    p_ = [-x.T @ vi @ g @ vi @ x for g in gm]
    q_ = [[x.T @ vi @ gm[a] @ vi @ gm[b] @ vi @ x for b in range(k)] for a in range(k)]
    proj = vi - vi @ x @ phi @ x.T @ vi
    info = np.array([[0.5 * np.trace(proj @ gm[a] @ proj @ gm[b]) for b in range(k)] for a in range(k)])
    w = np.linalg.inv(info)
    u = sum(w[a, b] * (q_[a][b] - p_[a] @ phi @ p_[b]) for a in range(k) for b in range(k))
    phi_a = phi + 2 * phi @ u @ phi
    # q = 1: A2 = sum w_ab tr(Theta Phi P_a Phi Theta Phi P_b Phi) with Theta = L'L / (L Phi L')
    lvec = np.zeros(x.shape[1])
    lvec[j] = 1.0
    dvar = np.array([lvec @ phi @ p_[a] @ phi @ lvec for a in range(k)])
    var = lvec @ phi @ lvec
    a2 = float(dvar @ w @ dvar) / var ** 2
    a1 = a2
    b = (a1 + 6 * a2) / 2
    g = (2 * a1 - 5 * a2) / (3 * a2)
    c1, c2, c3 = g / (3 + 2 * (1 - g)), (1 - g) / (3 + 2 * (1 - g)), (3 - g) / (3 + 2 * (1 - g))
    e_star = 1 / (1 - a2)
    v_star = 2 * (1 + c1 * b) / ((1 - c2 * b) ** 2 * (1 - c3 * b))
    rho = v_star / (2 * e_star ** 2)
    return np.sqrt(phi_a[j, j]), 4 + 3 / (rho - 1)


def test_kenward_roger_matches_dense_derivation():
    rng = np.random.default_rng(7)
    g = np.repeat(np.arange(6), 30)
    period = np.tile(np.repeat([0, 1], 15), 6)
    cp = [f"{a}:{b}" for a, b in zip(g, period, strict=True)]
    x = np.column_stack([np.ones(180), period, rng.normal(size=180)])
    y = x @ [1.0, 0.5, 0.3] + rng.normal(0, 0.7, 6)[g] + rng.normal(0, 0.5, 12)[period + 2 * g] + rng.normal(size=180)
    fit = fit_reml(y, x, [g.astype(str), cp])
    kr = fit.kenward_roger(np.array([0.0, 1.0, 0.0]))
    se, dof = _dense_kr(x, y, [list(g), cp], fit.variances, 1)
    assert kr["se"] == pytest.approx(se, rel=1e-8)
    assert kr["df"] == pytest.approx(dof, rel=1e-6)


def test_reml_matches_statsmodels_mixedlm():
    import pandas as pd
    import statsmodels.formula.api as smf

    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(8), 25)
    period = np.tile(np.repeat([0, 1], 12).tolist() + [1], 8)
    y = 0.4 * period + rng.normal(0, 0.8, 8)[g] + rng.normal(0, 0.6, 16)[2 * g + period] + rng.normal(size=200)
    d = pd.DataFrame({"y": y, "period": period.astype(float), "g": g})
    sm = smf.mixedlm("y ~ period", d, groups="g", re_formula="1", vc_formula={"cp": "0 + C(period)"}).fit(reml=True)
    fit = fit_reml(y, np.column_stack([np.ones(200), period]),
                   [g.astype(str), [f"{a}:{b}" for a, b in zip(g, period, strict=True)]])
    assert fit.variances[0] == pytest.approx(float(sm.cov_re.iloc[0, 0]), rel=2e-3)
    assert fit.variances[1] == pytest.approx(float(sm.vcomp[0]), rel=2e-3)
    assert fit.variances[2] == pytest.approx(float(sm.scale), rel=2e-3)
    assert fit.beta[1] == pytest.approx(float(sm.fe_params["period"]), rel=1e-3)


def test_cr2_by_hand_without_fixed_effects():
    rng = np.random.default_rng(5)
    cl = np.repeat(np.arange(5), 4)
    x = np.column_stack([np.ones(20), rng.normal(size=20)])
    y = x @ [0.2, 1.0] + rng.normal(size=20)
    r = cr2_test(x, y, cl, 1)
    xtx = np.linalg.inv(x.T @ x)
    e = y - x @ (xtx @ x.T @ y)
    meat = np.zeros((2, 2))
    for c in range(5):
        i = cl == c
        h = np.eye(4) - x[i] @ xtx @ x[i].T
        w, vec = np.linalg.eigh(h)
        a = vec @ np.diag(w ** -0.5) @ vec.T
        s = x[i].T @ a @ e[i]
        meat += np.outer(s, s)
    assert r["se"] == pytest.approx(np.sqrt((xtx @ meat @ xtx)[1, 1]), rel=1e-10)
    assert r["df"] == 4.0


def test_rank_deficient_design_raises():
    with pytest.raises(SmallSampleError, match="full column rank"):
        fit_reml(np.arange(6.0), np.ones((6, 2)), [np.array([0, 0, 1, 1, 2, 2])])


def test_mancl_derouen_is_the_leave_one_cluster_out_jackknife_for_a_linear_model():
    """For a Gaussian identity GLM the Mancl-DeRouen covariance is CR3, which equals
    sum_g (b_(-g) - b)(b_(-g) - b)' exactly (leave one cluster out, no centring)."""
    import statsmodels.api as sm

    from backpain_analysis.small_sample import glm_mancl_derouen

    rng = np.random.default_rng(11)
    cl = np.repeat(np.arange(7), 12)
    x = np.column_stack([np.ones(84), np.tile([0.0, 1.0], 42), rng.normal(size=84)])
    y = x @ [1.0, 0.4, -0.2] + rng.normal(0, 0.5, 7)[cl] + rng.normal(size=84)
    fit = sm.GLM(y, x, family=sm.families.Gaussian()).fit()
    cov = glm_mancl_derouen(fit, cl)
    b = fit.params
    jack = np.zeros((3, 3))
    for g in range(7):
        keep = cl != g
        bg = np.linalg.lstsq(x[keep], y[keep], rcond=None)[0]
        jack += np.outer(bg - b, bg - b)
    # statsmodels' Gaussian scale is the residual variance; the MD formula divides by V and
    # multiplies back, so the scale cancels
    np.testing.assert_allclose(cov, jack, rtol=1e-8)


# MASS::polr on the bundled study's complete cases (tests/r/polr_check.R): coefficient, SE, log-lik
POLR_STORED = (0.14704072, 0.1536047009, -874.3417802036)


def test_ordinal_fit_matches_mass_polr(bundled, tmp_path):
    fit = models.fit_ordinal(bundled, "global_change_6m", list(PRIMARY_COVARIATES))
    ref = POLR_STORED
    if HAVE_R:
        d = models._prepare(models.add_phase3(bundled), "global_change_6m", list(PRIMARY_COVARIATES))
        d["global_change_6m"] = d["global_change_6m"].cat.codes
        d.to_csv(tmp_path / "gc.csv", index=False)
        out = subprocess.run(["Rscript", str(ROOT / "tests" / "r" / "polr_check.R"), str(tmp_path / "gc.csv")],
                             capture_output=True, text=True, check=True, timeout=300)
        ref = tuple(float(v) for v in out.stdout.split())
        assert ref == pytest.approx(POLR_STORED, rel=1e-6)
    assert float(fit.params["phase3"]) == pytest.approx(ref[0], rel=1e-6)
    assert float(fit.bse["phase3"]) == pytest.approx(ref[1], rel=1e-5)
    assert fit.llf == pytest.approx(ref[2], rel=1e-10)
