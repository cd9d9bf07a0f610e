"""Coverage simulation of the design-based primary analysis (docs/design_inference.md).

Scenarios (generate_study overrides): the default generator; ICC 0.05 with practice-by-phase SD
0.5 and 1.0 RMDQ points. Estimators of the adjusted 6-month RMDQ difference (truth:
``rmdq_adjusted_difference``):

- ``ols``: published-style ANCOVA by OLS on complete cases (t on n - p df);
- ``mixed_kr``: complete-case mixed model, random practice and practice-by-phase intercepts,
  REML, Kenward-Roger SE and df (the primary model, complete cases);
- ``mixed_kr_drop0``: as ``mixed_kr``, but a practice-by-phase variance estimated at 0 is
  dropped and the model refitted with a practice intercept only (pre-specified rule; the
  package default, ``fit_mixed_kr(drop_zero_component=True)``);
- ``mixed_satt``: unadjusted SE with Satterthwaite df;
- ``cr2_fixed``: practice fixed effects, CR2 SE, t on G - 1 df;
- ``mi_kr``: multiple imputation (fast path: RMDQ follow-ups only, m = 5, 5 iterations)
  + mixed model KR per imputation, pooled by Rubin's rules with Barnard-Rubin df (complete-data
  df = KR df).

- ``mi20_fixed_practice`` / ``mi20_no_practice`` (``--mi-models``, instead of the above): the
  imputation model with practice indicators within each phase (the package default, fixed
  practice-by-phase effects) against no practice term, m = 20, 5 iterations, RMDQ follow-ups, the
  primary mixed model per imputation, Rubin with Barnard-Rubin df: which imputation model the
  coverage supports (issue 13 item 3).

- ``--default-mi``: ``mi20_no_practice`` only (the package default; the re-run with the current
  imputation engine in docs/design_inference.md, 400 replicates).

Usage: python benchmarks/design_simulation.py REPLICATES OUT.csv [--no-mi | --mi-models | --default-mi]
Rows are appended as they are computed, so a partial run still gives a table
(``summarise(OUT.csv)``).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

SCENARIOS: dict[str, dict] = {
    "default": {},
    "pp_sd_0.5_icc_0.05": {"icc_practice": 0.05, "rmdq_practice_phase_sd": 0.5},
    "pp_sd_1.0_icc_0.05": {"icc_practice": 0.05, "rmdq_practice_phase_sd": 1.0},
}


def one_replicate(seed: int, overrides: dict, with_mi: bool = True) -> list[dict]:
    from backpain_analysis import models
    from backpain_analysis.cleaning import clean_study
    from backpain_analysis.dataset import build_analysis_dataset
    from backpain_analysis.imputation import pool_rubin
    from backpain_analysis.outcomes import PRIMARY_COVARIATES, impute_outcomes
    from backpain_analysis.synthetic import generate_study

    study = generate_study(seed=seed, **overrides)
    data = models.add_phase3(build_analysis_dataset(clean_study(study)))
    truth = float(study.truth["rmdq_adjusted_difference"])
    covs = list(PRIMARY_COVARIATES)
    y = "rmdq_change_6m"
    out = []

    def add(name, est, lo, hi, dof, extra=None):
        out.append({"seed": seed, "estimator": name, "truth": truth, "estimate": est, "ci_low": lo,
                    "ci_high": hi, "df": dof, **(extra or {})})

    ols = models.effect_from_fit(models.fit_ols(data, y, covs))
    add("ols", ols["estimate"], ols["ci_low"], ols["ci_high"], ols["df"])
    kr = models.fit_mixed_kr(data, y, covs, drop_zero_component=False)
    add("mixed_kr", kr["estimate"], kr["ci_low"], kr["ci_high"], kr["df"],
        {"var_pp": kr["var_practice_phase"], "var_p": kr["var_practice"]})
    zero = kr["var_practice_phase"] <= 1e-8 * kr["var_residual"]
    d0 = models.fit_mixed_kr(data, y, covs) if zero else kr  # the package default: drop a zero component
    add("mixed_kr_drop0", d0["estimate"], d0["ci_low"], d0["ci_high"], d0["df"])
    st = kr["fit"].kenward_roger("phase3")  # same fit: unadjusted SE, Satterthwaite df
    half = stats.t.ppf(0.975, st["df_satterthwaite"]) * st["se_unadjusted"]
    add("mixed_satt", st["estimate"], st["estimate"] - half, st["estimate"] + half, st["df_satterthwaite"])
    cr = models.fit_cluster_fixed_cr2(data, y, covs)
    add("cr2_fixed", cr["estimate"], cr["ci_low"], cr["ci_high"], cr["df"])
    if with_mi:
        imps = impute_outcomes(data, n_imputations=5, max_iter=5, seed=seed, columns=("rmdq_2m", "rmdq_6m"))
        fits = [models.fit_mixed_kr(d, y, covs) for d in imps]  # package default (drop rule)
        pooled = pool_rubin([f["coef"] for f in fits], [f["se"] ** 2 for f in fits],
                            df_complete=float(np.median([f["df"] for f in fits])))
        add("mi_kr", pooled["estimate"], pooled["ci_low"], pooled["ci_high"], pooled["df"])
    return out


def mi_model_replicate(seed: int, overrides: dict, m: int = 20, fixed_practice: bool = True) -> list[dict]:
    """The two imputation models (practice-by-phase fixed effects vs no practice) on one study
    (``fixed_practice=False``: the package default, no practice term, only)."""
    from backpain_analysis import models
    from backpain_analysis.cleaning import clean_study
    from backpain_analysis.dataset import build_analysis_dataset
    from backpain_analysis.imputation import pool_rubin
    from backpain_analysis.outcomes import PRIMARY_COVARIATES, impute_outcomes
    from backpain_analysis.synthetic import generate_study

    study = generate_study(seed=seed, **overrides)
    data = models.add_phase3(build_analysis_dataset(clean_study(study)))
    truth = float(study.truth["rmdq_adjusted_difference"])
    out = []
    labels = (("mi20_fixed_practice", "practice_id"), ("mi20_no_practice", None))
    for label, practice in labels if fixed_practice else labels[1:]:
        imps = impute_outcomes(data, n_imputations=m, max_iter=5, seed=seed, columns=("rmdq_2m", "rmdq_6m"),
                               practice=practice)
        fits = [models.fit_mixed_kr(d, "rmdq_change_6m", list(PRIMARY_COVARIATES)) for d in imps]
        p = pool_rubin([f["coef"] for f in fits], [f["se"] ** 2 for f in fits],
                       df_complete=float(np.median([f["df"] for f in fits])))
        out.append({"seed": seed, "estimator": label, "truth": truth, "estimate": p["estimate"],
                    "ci_low": p["ci_low"], "ci_high": p["ci_high"], "df": p["df"]})
    return out


def summarise(path: str | Path) -> pd.DataFrame:
    reps = pd.read_csv(path)
    reps = reps.assign(covered=(reps["ci_low"] <= reps["truth"]) & (reps["truth"] <= reps["ci_high"]),
                       error=reps["estimate"] - reps["truth"], width=reps["ci_high"] - reps["ci_low"])
    g = reps.groupby(["scenario", "estimator"], sort=False)
    out = g.agg(replicates=("error", "size"), bias=("error", "mean"), empirical_se=("estimate", "std"),
                coverage=("covered", "mean"), mean_ci_width=("width", "mean"), median_df=("df", "median"))
    out["mcse_bias"] = out["empirical_se"] / np.sqrt(out["replicates"])
    out["mcse_coverage"] = np.sqrt(out["coverage"] * (1 - out["coverage"]) / out["replicates"])
    return out


def main(argv: list[str]) -> None:
    n = int(argv[0])
    path = Path(argv[1])
    with_mi = "--no-mi" not in argv
    warnings.simplefilter("ignore")
    done = set()
    if path.exists():
        prev = pd.read_csv(path)
        done = set(zip(prev["scenario"], prev["seed"], strict=True))
    for r in range(n):
        seed = 930_000 + r
        for name, ov in SCENARIOS.items():
            if (name, seed) in done:
                continue
            if "--mi-models" in argv or "--default-mi" in argv:
                reps = mi_model_replicate(seed, ov, fixed_practice="--mi-models" in argv)
            else:
                reps = one_replicate(seed, ov, with_mi)
            rows = [{"scenario": name, **row} for row in reps]
            pd.DataFrame(rows).to_csv(path, mode="a", header=not path.exists(), index=False)


if __name__ == "__main__":
    main(sys.argv[1:])
