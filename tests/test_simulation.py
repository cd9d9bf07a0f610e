"""Simulation check of the chapter 05 primary estimator over many synthetic IMPaCT Back studies.

Each replicate generates a study with the calibrated defaults (``generate_study(seed=...)``),
cleans it and builds the analysis dataset in memory, and estimates the adjusted 6-month RMDQ
difference (phase 3 vs phase 1) in two ways:

- complete cases: ANCOVA on patients with a 6-month RMDQ (the full model of the chapter);
- multiple imputation, fast path: ``impute_outcomes`` restricted to the RMDQ follow-ups
  (``rmdq_2m``, ``rmdq_6m``), 5 imputations, 5 iterations, pooled by Rubin's rules. The
  chapter imputes every follow-up outcome with 5-10 imputations and 10 iterations; the
  RMDQ model is the same, so this path checks the primary estimator at a fraction of the cost.

The replicate count comes from ``BACKPAIN_SIM_REPLICATES`` (default 30, about a minute;
``make validate`` sets 500). Tolerances come from the Monte Carlo standard error of the
replicate count: the mean estimate must be within 3 MCSE (plus 0.02 for the Monte Carlo error
of the truth itself) of the true value, and the 95% CI coverage within 3 binomial SEs of 0.95.
Run with ``-s`` to see the measured bias and coverage.

The design scenarios (``design_replicates``) check the clustered primary model against what the
design can do to it: the default generator and practice-by-phase variation of the RMDQ change
(SD 0.5 and 1.0 points) with ICC 0.05, estimators from benchmarks/design_simulation.py (complete
cases: the mixed model with Kenward-Roger df and the zero-variance rule, the package default,
against the published OLS ANCOVA). Table: docs/design_inference.md.
"""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backpain_analysis.cleaning import clean_study
from backpain_analysis.dataset import build_analysis_dataset
from backpain_analysis.outcomes import impute_outcomes, primary_analysis, risk_group_analysis
from backpain_analysis.synthetic import generate_study

REPLICATES = int(os.environ.get("BACKPAIN_SIM_REPLICATES", "30"))
TRUTH_SLACK = 0.02  # Monte Carlo error of the truth (computed on a large simulated population)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def replicates() -> pd.DataFrame:
    if REPLICATES < 2:
        pytest.skip("BACKPAIN_SIM_REPLICATES must be at least 2")
    rows = []
    for r in range(REPLICATES):
        seed = 910_000 + r
        study = generate_study(seed=seed)
        data = build_analysis_dataset(clean_study(study))
        truth = study.truth
        cc = primary_analysis(data, primary_model="ols", sensitivity=False).iloc[0]
        imps = impute_outcomes(data, n_imputations=5, max_iter=5, seed=seed, columns=("rmdq_2m", "rmdq_6m"))
        mi = primary_analysis(data, imps, primary_model="ols", sensitivity=False).set_index("analysis").loc[
            "multiple imputation"]
        groups, _ = risk_group_analysis(data, model="ols")
        for name, row, key in (
            ("complete cases", cc, "rmdq_adjusted_difference"),
            ("multiple imputation (fast path)", mi, "rmdq_adjusted_difference"),
            *[(f"complete cases, {g['risk_group']} risk", g, f"rmdq_difference_{g['risk_group']}_risk")
              for _, g in groups.iterrows()],
        ):
            rows.append({"replicate": r, "estimator": name, "truth": float(truth[key]), "estimate": row["estimate"],
                         "ci_low": row["ci_low"], "ci_high": row["ci_high"]})
    return pd.DataFrame(rows)


def _summary(reps: pd.DataFrame) -> pd.DataFrame:
    reps = reps.assign(covered=(reps["ci_low"] <= reps["truth"]) & (reps["truth"] <= reps["ci_high"]),
                       error=reps["estimate"] - reps["truth"])
    out = reps.groupby("estimator", sort=False).agg(
        replicates=("estimate", "size"), truth=("truth", "mean"), mean_estimate=("estimate", "mean"),
        bias=("error", "mean"), empirical_se=("estimate", "std"), coverage=("covered", "mean"),
        mean_ci_width=("ci_high", "mean"),
    )
    out["mean_ci_width"] -= reps.groupby("estimator", sort=False)["ci_low"].mean()
    out["mcse_bias"] = out["empirical_se"] / np.sqrt(out["replicates"])
    out["mcse_coverage"] = np.sqrt(0.95 * 0.05 / out["replicates"])
    return out


def _coverage_ok(s: pd.Series) -> None:
    # 3 binomial SEs, plus one replicate's worth for the discreteness of a proportion
    tolerance = 3 * s["mcse_coverage"] + 1 / REPLICATES
    assert abs(s["coverage"] - 0.95) <= tolerance, (
        f"{s.name}: coverage {s['coverage']:.3f} is not within {tolerance:.3f} of 0.95"
    )


@pytest.mark.parametrize("estimator", ["multiple imputation (fast path)", "complete cases, low risk",
                                       "complete cases, medium risk", "complete cases, high risk"])
def test_estimator_is_unbiased_with_nominal_coverage(replicates, estimator):
    summary = _summary(replicates)
    print(f"\n{REPLICATES} replicates\n{summary.round(3).to_string()}")
    s = summary.loc[estimator]
    assert abs(s["bias"]) <= 3 * s["mcse_bias"] + TRUTH_SLACK, (
        f"{estimator}: bias {s['bias']:.3f} exceeds 3 MCSE ({s['mcse_bias']:.3f}) + {TRUTH_SLACK}"
    )
    _coverage_ok(s)


def test_complete_case_primary_has_nominal_coverage_and_small_bias(replicates):
    """Complete cases are a sensitivity analysis: follow-up in the synthetic study is missing at
    random given more than the model's covariates, so a small bias is expected (500 replicates:
    -0.05 points, 3 MCSE, against -0.02 for the imputed estimate). Coverage must still be close to
    nominal and the bias small relative to the standard error."""
    s = _summary(replicates).loc["complete cases"]
    _coverage_ok(s)
    assert abs(s["bias"]) <= 0.25 * s["empirical_se"] + 3 * s["mcse_bias"]


def _design_module():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "design_simulation.py"
    spec = importlib.util.spec_from_file_location("design_simulation", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def design_replicates(tmp_path_factory) -> pd.DataFrame:
    if REPLICATES < 2:
        pytest.skip("BACKPAIN_SIM_REPLICATES must be at least 2")
    mod = _design_module()
    rows = []
    for r in range(REPLICATES):
        for name, overrides in mod.SCENARIOS.items():
            rows += [{"scenario": name, **row} for row in mod.one_replicate(930_000 + r, overrides, with_mi=False)]
    path = tmp_path_factory.mktemp("design") / "reps.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return mod.summarise(path)


@pytest.mark.parametrize("scenario", ["default", "pp_sd_0.5_icc_0.05", "pp_sd_1.0_icc_0.05"])
def test_clustered_primary_has_small_bias_and_nominal_coverage(design_replicates, scenario):
    print(f"\n{REPLICATES} replicates\n{design_replicates.round(3).to_string()}")
    s = design_replicates.loc[(scenario, "mixed_kr_drop0")]
    assert abs(s["bias"]) <= 0.05 + 3 * s["mcse_bias"], f"{scenario}: bias {s['bias']:.3f}"
    slack = 3 * math.sqrt(0.95 * 0.05 / REPLICATES) + 1 / REPLICATES
    assert s["coverage"] >= 0.93 - slack, f"{scenario}: coverage {s['coverage']:.3f}"
    if scenario != "default":
        assert s["coverage"] <= 0.97 + slack, f"{scenario}: coverage {s['coverage']:.3f}"


def test_published_ols_under_covers_with_practice_by_phase_variation(design_replicates):
    if REPLICATES < 30:
        pytest.skip("under-coverage of 0.80 against 0.95 needs at least 30 replicates to show")
    ols = design_replicates.loc[("pp_sd_1.0_icc_0.05", "ols")]
    mixed = design_replicates.loc[("pp_sd_1.0_icc_0.05", "mixed_kr_drop0")]
    # 500 replicates: OLS 0.81, mixed model 0.964 (docs/design_inference.md)
    assert ols["coverage"] < (0.93 if REPLICATES >= 200 else 0.95)
    assert ols["coverage"] < mixed["coverage"]
