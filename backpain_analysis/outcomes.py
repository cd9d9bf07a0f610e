"""Chapter 05: patient outcomes at 6 months (published Table 3).

Primary outcome: change in RMDQ from baseline to 6 months (baseline minus 6 months, positive =
better), phase 3 (stratified care) against phase 1 (usual care), adjusted for baseline RMDQ,
age, sex, episode duration and baseline risk group (ANCOVA by OLS). The primary analysis is by
intention to treat with missing follow-up filled by multiple imputation by chained equations
(:func:`impute_outcomes`) and pooled by Rubin's rules, as published; complete cases and a
mixed model with a random intercept per practice are sensitivity analyses. Secondary outcomes
use logistic, proportional-odds and negative binomial models (:data:`SECONDARY_OUTCOMES`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.regression.linear_model import OLS

from .imputation import monte_carlo_error, pool_rubin, pool_wald
from .models import (
    EXPOSURE,
    ModelError,
    add_phase3,
    calendar_terms,
    effect_from_fit,
    fit_cluster_fixed_cr2,
    fit_logistic,
    fit_mixed_kr,
    fit_negative_binomial,
    fit_ols,
    fit_ordinal,
    linear_combination,
)
from .scoring import rmdq_mcid

__all__ = [
    "BASELINE_COVARIATES",
    "DELTA_SCENARIOS",
    "PRIMARY_COVARIATES",
    "RISK_GROUPS",
    "SECONDARY_OUTCOMES",
    "OutcomeSpec",
    "add_change_scores",
    "add_truth",
    "category_distribution",
    "delta_adjustment",
    "delta_plot",
    "impute_outcomes",
    "imputations_by_rule",
    "imputed_dataset",
    "primary_analysis",
    "risk_group_analysis",
    "rmdq_trajectory",
    "secondary_outcomes_table",
    "shift_imputed",
    "tipping_points",
    "trajectory_plot",
]

RISK_GROUPS: tuple[str, ...] = ("low", "medium", "high")
BASELINE_COVARIATES: tuple[str, ...] = ("age", "sex", "episode_duration", "risk_group")
PRIMARY_COVARIATES: tuple[str, ...] = ("rmdq_0m", *BASELINE_COVARIATES)

# analysis labels used in result tables
MI = "multiple imputation"
CC = "complete cases"


@dataclass(frozen=True)
class OutcomeSpec:
    """One outcome of Table 3 and how it is analysed.

    ``kind``: ``"linear"`` (OLS, mean difference), ``"logistic"`` (odds ratio),
    ``"ordinal"`` (proportional odds; odds ratio of a better / lower category), ``"count"``
    (negative binomial; ratio of means). ``population``: optional ``(column, value)`` restricting
    the rows analysed (e.g. employed patients for days off work). ``month``: follow-up time (2 or 6).
    """

    outcome: str
    label: str
    kind: str
    covariates: tuple[str, ...] = PRIMARY_COVARIATES
    population: tuple[str, float] | None = None
    effect: str = field(default="")
    month: int = 6

    def effect_name(self) -> str:
        if self.effect:
            return self.effect
        adjusted = "adjusted " if self.covariates else ""
        return {
            "linear": f"{adjusted}mean difference",
            "logistic": f"{adjusted}odds ratio",
            "ordinal": f"{adjusted}ordinal odds ratio (better category)",
            "count": f"{adjusted}ratio of means",
        }[self.kind]


SECONDARY_OUTCOMES: tuple[OutcomeSpec, ...] = (
    OutcomeSpec("rmdq_change_6m", "RMDQ change (primary)", "linear"),
    OutcomeSpec("rmdq_mcid_6m", "Clinically important RMDQ change", "logistic"),
    OutcomeSpec("pain_change_6m", "Pain (0-10) change", "linear", ("pain_nrs_0m", *BASELINE_COVARIATES)),
    OutcomeSpec("tsk_change_6m", "Fear avoidance (TSK) change", "linear", ("tsk_0m", *BASELINE_COVARIATES)),
    OutcomeSpec("hads_anxiety_change_6m", "HADS anxiety change", "linear", ("hads_anxiety_0m", *BASELINE_COVARIATES)),
    OutcomeSpec("hads_depression_change_6m", "HADS depression change", "linear",
                ("hads_depression_0m", *BASELINE_COVARIATES)),
    OutcomeSpec("global_change_6m", "Global change (better category)", "ordinal"),
    OutcomeSpec("risk_group_6m", "6-month SBST risk group (lower group)", "ordinal",
                ("age", "sex", "episode_duration", "risk_group"), effect="adjusted ordinal odds ratio (lower group)"),
    # unadjusted ratio and odds ratios: the published estimands (and the synthetic study's truth)
    OutcomeSpec("csq_cat_change_6m", "Catastrophising (CSQ-CAT) change", "linear",
                ("csq_cat_0m", *BASELINE_COVARIATES)),
    OutcomeSpec("pseq_change_6m", "Pain self-efficacy (PSEQ) change (6 months minus baseline)", "linear",
                ("pseq_0m", *BASELINE_COVARIATES)),
    OutcomeSpec("days_off_work_6m", "Days off work (employed)", "count", (), population=("employed", 1.0)),
    OutcomeSpec("satisfied_care_6m", "Satisfied with care", "logistic", ()),
    OutcomeSpec("satisfied_results_6m", "Satisfied with results of care", "logistic", ()),
    # 2-month outcomes of the protocol, beside the 6-month ones
    OutcomeSpec("rmdq_change_2m", "RMDQ change at 2 months", "linear", month=2),
    OutcomeSpec("pain_change_2m", "Pain (0-10) change at 2 months", "linear", ("pain_nrs_0m", *BASELINE_COVARIATES),
                month=2),
    OutcomeSpec("global_change_2m", "Global change at 2 months (better category)", "ordinal", month=2),
)

#: Follow-up columns imputed by :func:`impute_outcomes` (those present in the data): every
#: outcome analysed in chapter 05 (2 and 6 months) and, for chapter 07, the EQ-5D index and the
#: resource-use components of the NHS cost (missing for patients who did not consent to record review).
FOLLOWUP_COLUMNS: tuple[str, ...] = (
    "rmdq_2m", "rmdq_6m", "pain_nrs_2m", "pain_nrs_6m", "global_change_2m", "tsk_6m", "hads_anxiety_6m",
    "hads_depression_6m", "csq_cat_6m", "pseq_6m", "global_change_6m", "risk_group_6m", "satisfied_care_6m",
    "satisfied_results_6m", "days_off_work_6m",
)
#: Cost components and utilities imputed in the same (congenial) model for chapter 07.
ECONOMIC_COLUMNS: tuple[str, ...] = (
    "eq5d_index_2m", "eq5d_index_6m", "n_gp_consultations", "imaging", "n_prescriptions", "secondary_care_referral",
)
#: Baseline columns used as predictors (and imputed if they have missing values).
BASELINE_PREDICTORS: tuple[str, ...] = (
    "age", "sex", "employed", "episode_duration", "risk_group", "sbst_total_0m", "rmdq_0m", "pain_nrs_0m",
    "tsk_0m", "hads_anxiety_0m", "hads_depression_0m", "csq_cat_0m", "pseq_0m", "eq5d_index_0m", "time_off_work",
)
#: Auxiliary variables: predictors of the outcomes or of being followed up that are not analysed
#: (never imputed; a missing value gets a missing-indicator column). Leg pain predicts response
#: (logistic model of 6-month response on the bundled study, p = 0.05); record-review consent and
#: the record-review counts describe care received after baseline and predict outcome.
AUXILIARY_PREDICTORS: tuple[str, ...] = (
    "leg_pain", "manual_occupation", "consented_records", "physio_sessions", "reconsulted", "sickness_certificate",
)
#: Predictors of days off work (employed patients only): a short set, against overfitting.
DAYS_OFF_PREDICTORS: tuple[str, ...] = (
    "age", "sex", "risk_group", "rmdq_0m", "rmdq_6m", "pain_nrs_6m", "time_off_work", "sickness_certificate",
)
_CHANGES: dict[str, tuple[str, str]] = {
    "rmdq_change_2m": ("rmdq_0m", "rmdq_2m"),
    "rmdq_change_6m": ("rmdq_0m", "rmdq_6m"),
    "pain_change_2m": ("pain_nrs_0m", "pain_nrs_2m"),
    "pain_change_6m": ("pain_nrs_0m", "pain_nrs_6m"),
    "tsk_change_6m": ("tsk_0m", "tsk_6m"),
    "hads_anxiety_change_6m": ("hads_anxiety_0m", "hads_anxiety_6m"),
    "hads_depression_change_6m": ("hads_depression_0m", "hads_depression_6m"),
    "csq_cat_change_6m": ("csq_cat_0m", "csq_cat_6m"),
    "pseq_change_6m": ("pseq_0m", "pseq_6m"),
}
#: Change scores where a fall is a worsening (higher = better: self-efficacy); baseline minus
#: follow-up would make a positive change a deterioration, so these are follow-up minus baseline.
_HIGHER_IS_BETTER: frozenset[str] = frozenset({"pseq_change_6m"})
_PRACTICE_CODE = "_practice"


# ---------------------------------------------------------------------------------------- imputation


def impute_outcomes(
    df: pd.DataFrame,
    *,
    n_imputations: int = 10,
    seed: int = 20260101,
    max_iter: int = 10,
    by_phase: bool = True,
    columns: Sequence[str] = FOLLOWUP_COLUMNS,
    baseline: Sequence[str] = BASELINE_PREDICTORS,
    auxiliary: Sequence[str] = AUXILIARY_PREDICTORS,
    practice: str | None = None,
    mcid_min_reduction: float = 0.30,
    values_only: bool = False,
) -> list[pd.DataFrame] | tuple[pd.DataFrame, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Multiply impute the follow-up outcomes of the analysis dataset (intention to treat).

    Parameters
    ----------
    df : DataFrame
        The analysis dataset (phases 1 and 3 are used).
    n_imputations, seed, max_iter
        Passed to :func:`backpain_analysis.imputation.impute_chained`.
    by_phase : bool, default True
        Impute each phase separately, so that every association (including the phase by risk
        group interaction and the practice effects) may differ between phases (van Buuren 2018,
        section 6.2).
    columns : sequence of str
        Follow-up columns to impute (those absent from ``df`` are skipped); add
        :data:`ECONOMIC_COLUMNS` for the shared chapter 05/07 imputations.
    baseline : sequence of str
        Baseline predictors (imputed too when they have missing values).
    auxiliary : sequence of str
        Auxiliary predictors (:data:`AUXILIARY_PREDICTORS`; those absent are skipped), never imputed.
    practice : str or None, default None
        None (the default, chosen by simulation): no practice term in the imputation model; the
        analysis model carries the clustering. A column name: its levels enter every imputation
        model as fixed effects (within each phase when ``by_phase``: practice-by-phase effects),
        which keeps the practice variance of imputed outcomes but made the primary analysis
        over-cover (100% in 200 simulated studies; see Notes).
    mcid_min_reduction : float
        Passed to :func:`backpain_analysis.scoring.rmdq_mcid` when recomputing ``rmdq_mcid_6m``.
    values_only : bool, default False
        Return ``(data, values)`` instead: the phase 1 and 3 rows and the imputed values per
        column (as :func:`backpain_analysis.imputation.impute_values`), from which
        :func:`imputed_dataset` builds each dataset (what
        :func:`backpain_analysis.imputation.shared_imputations` stores).

    Returns
    -------
    list of DataFrame
        ``n_imputations`` copies of the phase 1 and 3 rows (original row order) with
        ``phase3`` added, the follow-up columns filled, and the derived columns
        (``rmdq_change_2m``, ``rmdq_change_6m``, ``pain_change_2m``, ``pain_change_6m``,
        ``tsk_change_6m``, ``hads_anxiety_change_6m``, ``hads_depression_change_6m``,
        ``csq_cat_change_6m``, ``pseq_change_6m``, ``rmdq_mcid_6m``, ``good_outcome_2m``,
        ``good_outcome_6m``) recomputed from them, and a 0/1 column ``imputed_rmdq_6m`` (the
        6-month RMDQ was missing). ``days_off_work_6m`` stays missing for patients not in paid
        employment (it is only asked of them).

    Notes
    -----
    Predictive mean matching (5 donors) for every column, so imputed values are observed
    values (integer scores within range, 0/1 flags, valid categories). The imputation model of
    each follow-up column uses the baseline predictors, the other follow-up columns (except days
    off work, which predicts no other column: it is structurally missing for patients not
    employed, and is imputed from the short set :data:`DAYS_OFF_PREDICTORS` against overfitting),
    the auxiliary variables and, with ``practice``, practice indicators.

    Which imputation model: a coverage simulation of the whole primary analysis (200 studies per
    scenario of 7 practices; m = 20; mixed model with Kenward-Roger df, Rubin with Barnard-Rubin
    df; ``benchmarks/design_simulation.py --mi-models``) gave 95% CI coverage of 1.000, 1.000 and
    0.985 with practice-by-phase fixed effects in the imputation model (CIs 29-46% wider than
    without them), and 0.990, 0.985 and 0.960 without a practice term, with the same bias and
    empirical SE. Fixed cluster effects overstate the between-imputation variance when clusters
    are few and the ICC small (Andridge, Biom J 2011; DiazOrdaz et al., Stat Med 2016): each
    imputation redraws 14 practice-period means. So the default leaves practice out of the
    imputation model, at the price of imputed outcomes with a diluted practice variance (ICC 0.030
    on complete cases, 0.017 after imputation on the bundled study); a multilevel
    (random-intercept, 2l.norm-type) imputation model would keep both and is not implemented.
    With many practices (tens or more) fixed effects cost more still; use ``practice=None`` too.
    docs/design_inference.md gives the ICC before and after imputation.
    """
    data = add_phase3(df)
    if practice is not None:
        if practice not in data.columns:
            raise ModelError(f"analysis dataset: imputation by practice needs the column {practice!r}")
        data[_PRACTICE_CODE] = pd.Categorical(data[practice].astype(str))
        observed = data.loc[data["rmdq_6m"].notna()] if "rmdq_6m" in data.columns else data
        smallest = observed.groupby([practice, EXPOSURE]).size().min() if len(observed) else 0
        if smallest < 20:
            import warnings

            warnings.warn(f"impute_outcomes: a practice-period has only {smallest} observed 6-month outcomes; "
                          "fixed practice effects may overstate the imputation variance (Andridge 2011)",
                          stacklevel=2)
    targets = [c for c in columns if c in data.columns]
    base = [c for c in baseline if c in data.columns]
    impute_cols = [c for c in base if data[c].isna().any() and c not in ("time_off_work",)] + targets
    aux = [c for c in base if c not in impute_cols]
    aux += [c for c in auxiliary if c in data.columns and c not in impute_cols and c not in aux]
    if practice is not None:
        aux.append(_PRACTICE_CODE)
    predictors: dict[str, list[str]] = {}
    for t in impute_cols:
        others = [c for c in impute_cols if c != t and (c != "days_off_work_6m" or t == "days_off_work_6m")]
        extra = ["time_off_work"] if t == "days_off_work_6m" and "time_off_work" in aux else []
        predictors[t] = [*others, *[a for a in aux if a != "time_off_work"], *extra]
    if "days_off_work_6m" in predictors:
        # few employed responders per phase (about 150 in IMPaCT Back) and a very skewed count: the
        # full predictor set (~60 columns) overfits and the imputations swing wildly (the pooled
        # ratio's FMI reached 0.94); a short, pre-specified set instead
        short = [c for c in (*DAYS_OFF_PREDICTORS, _PRACTICE_CODE) if c in impute_cols or c in aux]
        predictors["days_off_work_6m"] = short
    if not by_phase:
        for t in impute_cols:
            predictors[t].append(EXPOSURE)
    values = _impute_groups(data, impute_cols, predictors, aux, by_phase, n_imputations, seed, max_iter)
    if practice is not None:
        data = data.drop(columns=_PRACTICE_CODE)
    if values_only:
        return data, values
    return [imputed_dataset(data, values, i, mcid_min_reduction) for i in range(n_imputations)]


def _impute_groups(data: pd.DataFrame, impute_cols: list[str], predictors: dict[str, list[str]], aux: list[str],
                   by_phase: bool, n_imputations: int, seed: int, max_iter: int) -> dict[str, tuple[np.ndarray,
                                                                                                    np.ndarray]]:
    """Impute each phase (side by side in processes or threads, one seed stream each); values over the rows of ``data``."""
    from concurrent.futures import ThreadPoolExecutor

    from .imputation import impute_values, one_blas_thread
    from .parallel import analysis_workers, map_datasets

    flags = (0.0, 1.0) if by_phase else (None,)
    seeds = np.random.SeedSequence(seed).spawn(len(flags))

    def run(k: int) -> tuple[np.ndarray, dict]:
        rows = np.flatnonzero(data[EXPOSURE].to_numpy() == flags[k]) if by_phase else np.arange(len(data))
        g = data.iloc[rows]
        usable = [c for c in impute_cols if g[c].notna().sum() >= 2]
        preds = {t: [p for p in predictors[t] if p in usable or p in aux or p == EXPOSURE] for t in usable}
        if len(g) == 0 or not usable:
            return rows, {}
        return rows, impute_values(g, usable, n_imputations=n_imputations, seed=np.random.default_rng(seeds[k]),
                                   max_iter=max_iter, predictors=preds)

    # BLAS limits are process-wide: set them once around both threads or processes (a thread
    # leaving its own limit would restore the default threads under the other). With cores to
    # spare the phases run in forked processes (no shared interpreter lock: 1.5 times faster than
    # threads on 2 cores); otherwise in threads, which still overlap the numpy work.
    with one_blas_thread():
        if analysis_workers() >= 2 and len(flags) > 1:
            parts = map_datasets(run, range(len(flags)))
        else:
            with ThreadPoolExecutor(max_workers=len(flags)) as pool:
                parts = list(pool.map(run, range(len(flags))))
    n = len(data)
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for c in impute_cols:
        miss = np.zeros(n, bool)
        chunks = []
        for rows, vals in parts:  # rows in data order within each part; parts concatenated by position
            if c in vals:
                miss[rows[vals[c][0]]] = True
                chunks.append((rows[vals[c][0]], vals[c][1]))
        if not chunks:
            continue
        pos = np.concatenate([r for r, _ in chunks])
        order = np.argsort(pos, kind="stable")
        out[c] = (miss, np.concatenate([v for _, v in chunks], axis=1)[:, order])
    return out


def imputed_dataset(data: pd.DataFrame, values: Mapping[str, tuple[np.ndarray, np.ndarray]], i: int,
                    mcid_min_reduction: float = 0.30) -> pd.DataFrame:
    """Imputed dataset ``i``: ``data`` with its missing values filled from ``values`` and the derived columns.

    Parameters
    ----------
    data : DataFrame
        Phase 1 and 3 rows (with ``phase3``), as the imputations were made from.
    values : mapping
        Column -> ``(missing, values)`` as :func:`backpain_analysis.imputation.impute_values`
        returns (``values`` of shape (m, missing.sum())).
    i : int
        Which imputation.
    mcid_min_reduction : float, default 0.30

    Returns
    -------
    DataFrame
        As one element of :func:`impute_outcomes`.
    """
    from collections import ChainMap

    from .imputation import _filled

    filled = {c: _filled(data[c], miss, vals[i]) for c, (miss, vals) in values.items()}
    # one copy of the data with the filled and the derived columns (two assigns copied it twice)
    derived = _derived_columns(ChainMap(filled, data), mcid_min_reduction)
    imp = data.assign(**{**filled, **derived})
    if "rmdq_6m" in data.columns:
        imp["imputed_rmdq_6m"] = data["rmdq_6m"].isna().astype(float)
    return imp


def imputations_by_rule(
    df: pd.DataFrame,
    *,
    n_imputations: int | None = None,
    pilot_imputations: int = 10,
    seed: int = 20260101,
    max_iter: int = 10,
    cache_dir: str | None = None,
    outcome: str = "rmdq_change_6m",
    covariates: Sequence[str] = PRIMARY_COVARIATES,
    practice: str = "practice_id",
    imputation_practice: str | None = None,
    minimum: int = 20,
    maximum: int = 200,
) -> tuple[Any, dict[str, Any]]:
    """The shared imputations with m chosen from a pilot run (m >= 100 x FMI, at least ``minimum``).

    Parameters
    ----------
    df : DataFrame
        The analysis dataset.
    n_imputations : int or None, default None
        None: choose m by the rule. An integer: use it (no pilot).
    pilot_imputations : int, default 10
        m of the pilot run whose primary-analysis FMI sets m.
    seed, max_iter, cache_dir
        As for :func:`backpain_analysis.imputation.shared_imputations` (the pilot uses seed + 1, the
        imputations added to it ``seed``).
    outcome, covariates, practice
        The primary model whose FMI is used.
    imputation_practice : str or None, default None
        The ``practice`` of the imputation model (:func:`impute_outcomes`; None by default, as
        chosen by simulation).
    minimum, maximum : int, default 20 and 200
        Bounds of m (:func:`backpain_analysis.imputation.imputations_needed`).

    Returns
    -------
    imputations : ImputedDatasets
        From :func:`backpain_analysis.imputation.shared_imputations`.
    choice : dict
        ``m``, ``rule`` (text), ``pilot_m``, ``pilot_fmi`` (NaN without a pilot).

    Notes
    -----
    White, Royston & Wood (Stat Med 2011, section 7): m >= 100 x FMI keeps the Monte Carlo error
    of the pooled estimate near 10% of its SE. The pilot FMI is the primary mixed model's, pooled
    by Rubin's rules with the Barnard-Rubin df; its own Monte Carlo error is large with 10
    imputations, which the lower bound of 20 absorbs. The pilot's imputations are kept as the first
    ``pilot_imputations`` of the m, and only the remaining m - pilot are made (seed ``seed``), as
    in the two-stage procedure of von Hippel (Sociol Methods Res 2020;49:699-718): imputations are
    independent draws, so this changes no distribution and saves the pilot's cost.
    """
    from .imputation import imputations_needed, shared_imputations

    if n_imputations is not None:
        imps = shared_imputations(df, n_imputations=int(n_imputations), seed=seed, max_iter=max_iter,
                                  cache_dir=cache_dir, practice=imputation_practice)
        return imps, {"m": int(n_imputations), "rule": "fixed by parameter", "pilot_m": 0, "pilot_fmi": np.nan}
    pilot = shared_imputations(df, n_imputations=pilot_imputations, seed=seed + 1, max_iter=max_iter,
                               cache_dir=cache_dir, practice=imputation_practice)
    fmi = float(_mixed_row(pilot, outcome, covariates, practice, 0.05)["fmi"])
    m = imputations_needed(fmi, minimum=minimum, maximum=maximum)
    if m <= pilot_imputations:
        imps = pilot[:m]
    else:  # keep the pilot's imputations and add the rest (independent chains, another seed)
        imps = pilot.extended(shared_imputations(df, n_imputations=m - pilot_imputations, seed=seed,
                                                 max_iter=max_iter, cache_dir=cache_dir, practice=imputation_practice))
    return imps, {"m": m, "rule": f"m = max({minimum}, ceil(100 x pilot FMI))", "pilot_m": pilot_imputations,
                  "pilot_fmi": fmi}


def add_change_scores(df: pd.DataFrame) -> pd.DataFrame:
    """Add the change scores of chapter 05 that ``df`` lacks (observed values; NaN where either is missing).

    Changes are baseline minus follow-up (positive = better) except pain self-efficacy (PSEQ,
    higher = better), which is follow-up minus baseline.

    Examples
    --------
    >>> d = pd.DataFrame({"pseq_0m": [30.0, 40.0], "pseq_6m": [36.0, None], "csq_cat_0m": [20.0, 10.0],
    ...                   "csq_cat_6m": [14.0, 12.0]})
    >>> add_change_scores(d)[["pseq_change_6m", "csq_cat_change_6m"]].values.tolist()
    [[6.0, 6.0], [nan, -2.0]]
    """
    new = {}
    for name, (b, f) in _CHANGES.items():
        if name not in df.columns and b in df.columns and f in df.columns:
            new[name] = df[f] - df[b] if name in _HIGHER_IS_BETTER else df[b] - df[f]
    return df.assign(**new) if new else df


def _derived_columns(imp: Mapping[str, pd.Series], mcid_min_reduction: float) -> dict[str, Any]:
    """The change scores, MCID and good-outcome flags, and days off work of the employed, from the
    columns of ``imp`` (a DataFrame, or a mapping of its columns: the filled ones over the data's)."""
    new: dict[str, Any] = {}
    for name, (b, f) in _CHANGES.items():
        if b in imp and f in imp:
            new[name] = imp[f] - imp[b] if name in _HIGHER_IS_BETTER else imp[b] - imp[f]
    if "rmdq_0m" in imp and "rmdq_6m" in imp:
        new["rmdq_mcid_6m"] = rmdq_mcid(imp["rmdq_0m"], imp["rmdq_6m"], min_reduction=mcid_min_reduction)
    for month in ("2m", "6m"):
        if f"global_change_{month}" in imp:
            codes = imp[f"global_change_{month}"].cat.codes
            new[f"good_outcome_{month}"] = np.where(codes < 0, np.nan, (codes <= 1).astype(float))
    if "days_off_work_6m" in imp and "employed" in imp:
        new["days_off_work_6m"] = imp["days_off_work_6m"].where(imp["employed"] == 1)
    return new


# ---------------------------------------------------------------------------------------- fitting


def _fit_effect(data: pd.DataFrame, spec: OutcomeSpec, practice: str | None = None) -> dict[str, float]:
    """Coefficient of phase3 (on the scale it is pooled: log for ratios, sign so > 0 favours phase 3
    for ordinal outcomes), its SE, residual df and n for one dataset."""
    if spec.population is not None:
        col, value = spec.population
        if col not in data.columns:
            raise ModelError(f"analysis dataset: outcome {spec.outcome!r} needs column {col!r}")
        data = data.loc[data[col] == value]
    covs = [c for c in spec.covariates if c != spec.outcome]
    if practice is not None and practice not in data.columns:
        raise ModelError(f"analysis dataset: clustered analysis needs the practice column {practice!r}")
    if spec.kind == "linear" and practice is not None:  # the mixed model alone (no OLS fit to throw away)
        mk = fit_mixed_kr(data, spec.outcome, covs, practice=practice)
        return {"coef": mk["coef"], "se": mk["se"], "df": mk["df"], "n_phase1": mk["n_phase1"],
                "n_phase3": mk["n_phase3"]}
    if spec.kind == "linear":
        fit = fit_ols(data, spec.outcome, covs)
    elif spec.kind == "logistic":
        fit = fit_logistic(data, spec.outcome, covs)
    elif spec.kind == "count":
        fit = fit_negative_binomial(data, spec.outcome, covs)
    elif spec.kind == "ordinal":
        fit = fit_ordinal(data, spec.outcome, covs)
    else:
        raise ValueError(f"outcome {spec.outcome!r}: unknown kind {spec.kind!r}")
    eff = effect_from_fit(fit)
    sign = -1.0 if spec.kind == "ordinal" else 1.0
    used = fit.model.data.frame  # the complete cases the model was fitted to
    if practice is not None:
        from .small_sample import cluster_sandwich_scores, glm_mancl_derouen

        labels = data.loc[used.index, practice].to_numpy()
        j = list(fit.params.index).index(EXPOSURE)
        if spec.kind == "ordinal":
            b = np.asarray(fit.params, dtype=float)
            cov = cluster_sandwich_scores(fit.model.score_obs(b), fit.model.hessian(b), labels)
        else:
            cov = glm_mancl_derouen(fit, labels)
        eff = {"coef": eff["coef"], "se": float(np.sqrt(cov[j, j])), "df": float(len(set(labels)) - 1)}
    return {
        "coef": sign * eff["coef"],
        "se": eff["se"],
        "df": eff["df"],
        "n_phase1": int((used[EXPOSURE] == 0).sum()),
        "n_phase3": int((used[EXPOSURE] == 1).sum()),
    }


def _result(coef: float, se: float, dof: float, kind: str, alpha: float) -> dict[str, float]:
    crit = stats.t.ppf(1 - alpha / 2, dof) if np.isfinite(dof) else stats.norm.ppf(1 - alpha / 2)
    lo, hi = coef - crit * se, coef + crit * se
    p = 2 * (stats.t.sf(abs(coef / se), dof) if np.isfinite(dof) else stats.norm.sf(abs(coef / se)))
    if kind != "linear":
        return {"estimate": float(np.exp(coef)), "ci_low": float(np.exp(lo)), "ci_high": float(np.exp(hi)),
                "p_value": float(p)}
    return {"estimate": float(coef), "ci_low": float(lo), "ci_high": float(hi), "p_value": float(p)}


def _pooled(results: list[dict[str, float]], kind: str, alpha: float) -> dict[str, float]:
    # complete-data df for Barnard-Rubin: the median over the imputed datasets, as for the primary
    # model (_pool_mixed): the KR df differs between imputations where the zero-variance rule drops
    # the practice-by-phase component in some only (about 6 against about 900 on the bundled
    # study); the first imputation's df alone made the 2-month RMDQ interval depend on that one draw
    dfs = np.array([r["df"] for r in results], dtype=float)
    pooled = pool_rubin(
        [r["coef"] for r in results],
        [r["se"] ** 2 for r in results],
        df_complete=float(np.median(dfs)) if np.all(np.isfinite(dfs)) else None,
        alpha=alpha,
    )
    out = _result(pooled["estimate"], pooled["se"], pooled["df"], kind, alpha)
    out.update({"df": pooled["df"], "fmi": pooled["fmi"], "se": pooled["se"],
                "mc_error": monte_carlo_error([r["coef"] for r in results])})
    return out


def _effects_on(data: pd.DataFrame, specs: Sequence[OutcomeSpec], practice: str | None) -> list[dict[str, float]]:
    """:func:`_fit_effect` of each spec on one dataset, with one BLAS thread (many small fits:
    several times faster on a busy machine)."""
    from .imputation import one_blas_thread

    with one_blas_thread():
        return [_fit_effect(data, spec, practice) for spec in specs]


class _WithLast(Sequence):
    """``datasets`` followed by one more dataset (built lazily, as :class:`ImputedDatasets` builds its own)."""

    def __init__(self, datasets: Sequence[pd.DataFrame] | None, last: pd.DataFrame) -> None:
        self.datasets, self.last = datasets or [], last

    def __len__(self) -> int:
        return len(self.datasets) + 1

    def __getitem__(self, i):  # type: ignore[override]
        return self.last if i == len(self.datasets) else self.datasets[i]


def _effects_with_complete_cases(df: pd.DataFrame, imputations: Sequence[pd.DataFrame] | None,
                                 specs: Sequence[OutcomeSpec], practice: str | None,
                                 ) -> tuple[list[list[dict[str, float]]], list[dict[str, float]]]:
    """For each spec, its fits on every imputed dataset, and its complete-case fit (``df`` with
    ``phase3``): each dataset built once, all fitted by the same worker processes (the complete
    cases alongside the imputed datasets, not after them in this process)."""
    from .parallel import map_datasets

    per_dataset = map_datasets(partial(_effects_on, specs=specs, practice=practice),
                               _WithLast(imputations, add_phase3(df)))
    on_imputations, complete_cases = per_dataset[:-1], per_dataset[-1]
    return [[fits[k] for fits in on_imputations] for k in range(len(specs))], complete_cases


def _analyse(
    df: pd.DataFrame, imputations: Sequence[pd.DataFrame] | None, spec: OutcomeSpec, alpha: float,
    practice: str | None = None, fits: list[dict[str, float]] | None = None, cc: dict[str, float] | None = None,
) -> list[dict[str, Any]]:
    """Rows (multiple imputation if given, then complete cases) for one outcome (``fits``: its
    fits on the imputations, ``cc`` its complete-case fit, when already made)."""
    rows = []
    if fits is None:  # the imputed datasets and the complete cases in one map
        (fits,), (made,) = _effects_with_complete_cases(df, imputations, [spec], practice)
        cc = made if cc is None else cc
    if cc is None:
        cc = _effects_on(add_phase3(df), [spec], practice)[0]
    if imputations:
        res = _pooled(fits, spec.kind, alpha)
        rows.append({"analysis": MI, "n_phase1": fits[0]["n_phase1"], "n_phase3": fits[0]["n_phase3"], **res})
    res = _result(cc["coef"], cc["se"], cc["df"], spec.kind, alpha)
    rows.append({"analysis": CC, "n_phase1": cc["n_phase1"], "n_phase3": cc["n_phase3"], **res,
                 "df": cc["df"], "fmi": np.nan, "se": cc["se"], "mc_error": np.nan})
    return rows


# ---------------------------------------------------------------------------------------- primary


PRIMARY_MODELS: tuple[str, ...] = ("mixed", "ols")


def _mixed_row(data_list: Sequence[pd.DataFrame], outcome: str, covariates: Sequence[str], practice: str,
               alpha: float, *, contrast: dict[str, float] | None = None, interaction: str | None = None,
               ddf: str = "Kenward-Roger") -> dict[str, Any]:
    """Mixed model (practice + practice-by-phase, KR) on one dataset, or pooled over imputations."""
    from .parallel import map_datasets

    fit = partial(_lean_mixed_fit, outcome=outcome, covariates=covariates, practice=practice, alpha=alpha,
                  contrast=contrast, interaction=interaction, ddf=ddf)
    return _pool_mixed(map_datasets(fit, data_list), alpha)


def _lean_mixed_fit(data: pd.DataFrame, *, outcome: str, covariates: Sequence[str], practice: str, alpha: float,
                    contrast: dict[str, float] | None = None, interaction: str | None = None,
                    ddf: str = "Kenward-Roger") -> dict[str, Any]:
    """:func:`~backpain_analysis.models.fit_mixed_kr` without the fit object (pooling does not need it)."""
    return _lean(fit_mixed_kr(data, outcome, covariates, practice=practice, contrast=contrast,
                              interaction=interaction, ddf=ddf, alpha=alpha))


def _pool_mixed(fits: list[dict[str, Any]], alpha: float) -> dict[str, Any]:
    """One mixed-model fit as a row, or several (one per imputed dataset) pooled by Rubin's rules."""
    icc = float(np.mean([f["icc"] for f in fits]))
    dropped = sum(bool(f["dropped"]) for f in fits)
    note = "" if not dropped else (" (zero practice-by-phase variance dropped" +
                                   (f" in {dropped} of {len(fits)} imputations)" if len(fits) > 1 else ")"))
    if len(fits) == 1:
        f = fits[0]
        return {**{k: f[k] for k in ("estimate", "ci_low", "ci_high", "p_value", "df", "n_phase1", "n_phase3")},
                "se": f["se"], "m": 1, "fmi": np.nan, "mc_error": np.nan, "icc": icc, "note": note}
    # Barnard-Rubin df with the complete-data df = the KR df (median over the imputed datasets: robust
    # when the zero-variance rule applies in some imputations only)
    df_com = float(np.median([f["df"] for f in fits]))
    pooled = pool_rubin([f["coef"] for f in fits], [f["se"] ** 2 for f in fits], df_complete=df_com, alpha=alpha)
    return {**{k: pooled[k] for k in ("estimate", "ci_low", "ci_high", "p_value", "df", "fmi", "se")},
            "n_phase1": fits[0]["n_phase1"], "n_phase3": fits[0]["n_phase3"], "m": len(fits), "icc": icc,
            "mc_error": monte_carlo_error([f["coef"] for f in fits]), "note": note}


def _mixed_and_ols_on(data: pd.DataFrame, spec: OutcomeSpec, practice: str,
                      alpha: float) -> tuple[dict[str, Any], dict[str, float]]:
    """The primary mixed model (as :func:`_mixed_row`) and the published OLS ANCOVA (as
    :func:`_effects_on`) of ``spec`` on one dataset."""
    mixed = _lean_mixed_fit(data, outcome=spec.outcome, covariates=list(spec.covariates), practice=practice,
                            alpha=alpha)
    return mixed, _effects_on(data, [spec], None)[0]


def primary_analysis(
    df: pd.DataFrame,
    imputations: Sequence[pd.DataFrame] | None = None,
    *,
    outcome: str = "rmdq_change_6m",
    covariates: Sequence[str] = PRIMARY_COVARIATES,
    practice: str = "practice_id",
    primary_model: str = "mixed",
    sensitivity: bool = True,
    date: str = "consultation_date",
    alpha: float = 0.05,
) -> pd.DataFrame:
    """The primary outcome: adjusted mean difference, phase 3 vs phase 1, with sensitivity analyses.

    Parameters
    ----------
    df : DataFrame
        The analysis dataset.
    imputations : list of DataFrame, optional
        From :func:`impute_outcomes`; without them only complete-case rows are given.
    outcome : str, default "rmdq_change_6m"
    covariates : sequence of str, default PRIMARY_COVARIATES
        Baseline RMDQ, age, sex, episode duration, risk group.
    practice : str, default "practice_id"
        Cluster column (practices).
    primary_model : {"mixed", "ols"}, default "mixed"
        The model of the "multiple imputation" and "complete cases" rows. ``"mixed"``: linear
        mixed model with random intercepts for practice and practice-by-phase, REML,
        Kenward-Roger SE and df. ``"ols"``: the published ANCOVA (patients independent).
    sensitivity : bool, default True
        Add the sensitivity rows: the published-style OLS ANCOVA (when the primary model is
        mixed; the mixed model otherwise), practice fixed effects with CR2 cluster-robust SEs on
        G - 1 df, and the mixed model adjusted for calendar time (complete cases).
    date : str, default "consultation_date"
        Consultation date, for the calendar-time adjustment (row skipped if absent).
    alpha : float, default 0.05

    Returns
    -------
    DataFrame
        One row per analysis: ``analysis`` ("multiple imputation" (primary when imputations are
        given), "complete cases", then sensitivity rows named by method), ``primary``,
        ``outcome``, ``method`` (model and inference), ``n_phase1``, ``n_phase3``,
        ``estimate`` (adjusted mean difference, positive = more improvement with stratified
        care), ``ci_low``, ``ci_high``, ``p_value``, ``se``, ``df`` (KR, Barnard-Rubin, G - 1
        or residual df), ``m`` (number of imputations; 1 for complete cases), ``fmi``
        (fraction of missing information), ``mc_error`` (Monte Carlo SE of the pooled estimate,
        sqrt(B / m); NaN without imputation), ``icc`` (practice variance / total variance of the
        mixed model; NaN for other models).

    Notes
    -----
    With 7 practices the precision of the phase effect is set by the practice-periods, not the
    patients (Hooper et al., Stat Med 2016; Leyrat et al., Int J Epidemiol 2018): the primary
    model has random intercepts for practice and practice-by-phase and Kenward-Roger (1997)
    inference (:func:`backpain_analysis.models.fit_mixed_kr`; agrees with R lme4 + pbkrtest to
    1e-6, tests/test_small_sample.py). Pre-specified rule: a practice-by-phase variance estimated
    at 0 is dropped and the model refitted with a practice intercept only, because Kenward-Roger
    with a variance on the boundary over-covers (simulated coverage 0.994; 0.956-0.970 with the rule;
    docs/design_inference.md); ``method`` says when it applied. Multiple imputation: the model is fitted to every imputed
    dataset and pooled by Rubin's rules with Barnard-Rubin df, the complete-data df being the
    (median) KR df. Calendar-time adjustment: years since the first consultation (secular trend)
    and an annual harmonic (season) as fixed effects. The OLS row reproduces the published
    analysis (t on the residual df) for comparison with the paper; it ignores clustering and
    under-covers when the effect varies between practice-periods (docs/design_inference.md).
    """
    if primary_model not in PRIMARY_MODELS:
        raise ModelError(f"primary_model must be one of {PRIMARY_MODELS}, got {primary_model!r}")
    if practice not in df.columns:
        raise ModelError(f"analysis dataset: the clustered analysis needs the practice column {practice!r}")
    covs = list(covariates)
    cc_data = add_phase3(df)
    mixed_method = "mixed model (practice + practice-by-phase), REML, Kenward-Roger"
    ols_method = "OLS ANCOVA as published (patients independent)"
    spec = OutcomeSpec(outcome, outcome, "linear", tuple(covariates))
    # both models on each imputed dataset in one pass (each dataset built once, not once per model)
    mixed_fits: list[dict[str, Any]] | None = None
    ols_fits: list[dict[str, float]] | None = None
    if imputations and sensitivity:
        from .parallel import map_datasets

        both = map_datasets(partial(_mixed_and_ols_on, spec=spec, practice=practice, alpha=alpha), imputations)
        mixed_fits, ols_fits = [b[0] for b in both], [b[1] for b in both]

    def ols_rows(label_mi: str, label_cc: str) -> list[dict[str, Any]]:
        out = []
        for r in _analyse(df, imputations, spec, alpha, fits=ols_fits):
            name = label_mi if r["analysis"] == MI else label_cc
            out.append({**r, "analysis": name, "method": ols_method, "m": len(imputations) if r["analysis"] == MI
                        else 1, "icc": np.nan})
        return out

    def mixed_rows(label_mi: str, label_cc: str) -> list[dict[str, Any]]:
        out = []
        if imputations:
            r = (_mixed_row(imputations, outcome, covs, practice, alpha) if mixed_fits is None
                 else _pool_mixed(mixed_fits, alpha))
            out.append({"analysis": label_mi, "method": mixed_method + r.pop("note") + ", Rubin, Barnard-Rubin df",
                        **r})
        r = _mixed_row([cc_data], outcome, covs, practice, alpha)
        out.append({"analysis": label_cc, "method": mixed_method + r.pop("note"), **r})
        return out

    if primary_model == "mixed":
        rows = mixed_rows(MI, CC)
        if sensitivity:
            rows += ols_rows("OLS as published, " + MI, "OLS as published, " + CC)
    else:
        rows = ols_rows(MI, CC)
        if sensitivity:
            rows += mixed_rows("mixed model, " + MI, "mixed model, " + CC)
    if sensitivity:
        cr = fit_cluster_fixed_cr2(cc_data, outcome, covs, practice=practice, alpha=alpha)
        rows.append({"analysis": "practice fixed effects, CR2, " + CC, "method": cr["method"], "m": 1,
                     "fmi": np.nan, "mc_error": np.nan, "icc": np.nan,
                     **{k: cr[k] for k in ("estimate", "ci_low", "ci_high", "p_value", "se", "df", "n_phase1",
                                           "n_phase3")}})
        if date in cc_data.columns and cc_data[date].notna().any():
            timed = calendar_terms(cc_data.loc[cc_data[date].notna()], date)
            r = _mixed_row([timed], outcome, [*covs, "calendar_years", "season_sin", "season_cos"], practice, alpha)
            rows.append({"analysis": "calendar time adjusted, " + CC,
                         "method": mixed_method + r.pop("note") + " + secular trend and season", **r})
    table = pd.DataFrame(rows)
    table.insert(1, "primary", table["analysis"] == (MI if imputations else CC))
    table.insert(2, "outcome", outcome)
    return table[["analysis", "primary", "outcome", "method", "n_phase1", "n_phase3", "estimate", "ci_low",
                  "ci_high", "p_value", "se", "df", "m", "fmi", "mc_error", "icc"]]


# ---------------------------------------------------------------------------------------- risk groups


def risk_group_analysis(
    df: pd.DataFrame,
    imputations: Sequence[pd.DataFrame] | None = None,
    *,
    outcome: str = "rmdq_change_6m",
    covariates: Sequence[str] = PRIMARY_COVARIATES,
    group: str = "risk_group",
    robust: bool = True,
    model: str = "mixed",
    practice: str = "practice_id",
    alpha: float = 0.05,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Phase 3 vs phase 1 difference within each risk group and the interaction test.

    Parameters
    ----------
    df, imputations, outcome, covariates, alpha
        As for :func:`primary_analysis`.
    group : str, default "risk_group"
        Ordered categorical of subgroups (baseline SBST risk group).
    model : {"mixed", "ols"}, default "mixed"
        Model of the group effects: ``"mixed"`` is the primary model (random practice and
        practice-by-phase intercepts, REML, Kenward-Roger SE and df for each group's contrast);
        ``"ols"`` the published ANCOVA with ``robust`` standard errors.
    practice : str, default "practice_id"
    robust : bool, default True
        OLS only: heteroscedasticity-robust (HC3) standard errors for the group effects and the
        Wald F test (the interaction tests are always from the OLS model). The residual variance of the RMDQ change differs between risk groups (smaller at
        low risk, near the floor of the scale), so a common-variance model overstates the
        uncertainty at low risk and understates it at high risk (95% CI coverage 0.996 and
        0.91 over 500 simulated studies; tests/test_simulation.py).

    Returns
    -------
    effects : DataFrame
        One row per analysis and group: ``analysis``, ``risk_group``, ``method``, ``n_phase1``,
        ``n_phase3``, ``estimate`` (adjusted mean difference in the group), ``ci_low``,
        ``ci_high``, ``p_value``, ``df`` (KR or Barnard-Rubin df), ``m`` (imputations).
    interaction : DataFrame
        ``analysis``, ``test`` ("Wald F" (robust if ``robust``), "likelihood ratio" (assumes a
        common variance) or "pooled Wald D1"), ``statistic``, ``df_num``, ``df_den``,
        ``p_value``: the null hypothesis that the phase effect is the same in every group.

    Notes
    -----
    One ANCOVA with ``phase3 * C(risk_group)`` and the other covariates; the group effects are
    linear combinations of its coefficients (so covariate effects are common to the groups),
    with HC3 sandwich standard errors (MacKinnon & White 1985) by default. With ``model="mixed"``
    the same contrasts come from the mixed model with Kenward-Roger inference. The interaction
    tests compare risk groups within practice-periods (every practice-period has patients of every
    group), so they stay patient-level OLS tests.
    After multiple imputation the group effects are pooled by Rubin's rules and the interaction
    by the D1 statistic (Li, Raghunathan & Rubin 1991).
    """
    if model not in PRIMARY_MODELS:
        raise ModelError(f"model must be one of {PRIMARY_MODELS}, got {model!r}")
    rows: list[dict[str, Any]] = []
    tests: list[dict[str, Any]] = []
    datasets: list[tuple[str, list[pd.DataFrame]]] = []
    if imputations:
        datasets.append((MI, imputations))
    datasets.append((CC, [add_phase3(df)]))
    for analysis, data_list in datasets:
        levels = list(data_list[0][group].cat.categories) if isinstance(
            data_list[0][group].dtype, pd.CategoricalDtype) else sorted(data_list[0][group].dropna().unique())
        on_one = partial(_risk_group_fits_on, outcome=outcome, covariates=tuple(covariates), group=group,
                         levels=levels, cov_type="HC3" if robust else "nonrobust", model=model, practice=practice,
                         alpha=alpha)
        if len(data_list) == 1:  # complete cases: the fit is kept for the single-dataset tests
            per_dataset = [on_one(data_list[0], keep_fit=True)]
        else:
            from .parallel import map_datasets

            per_dataset = map_datasets(on_one, data_list)
        method = ("mixed model (practice + practice-by-phase), REML, Kenward-Roger" if model == "mixed"
                  else f"OLS ANCOVA ({'HC3' if robust else 'model-based'} SE)")
        for level in per_dataset[0]["levels"]:
            counts = [r["levels"][level]["counts"] for r in per_dataset]
            combos = [r["levels"][level]["combo"] for r in per_dataset]
            if len(per_dataset) > 1:
                dfc = float(np.median([c["df"] for c in combos]))
                res = _pooled([{**c, "coef": c["estimate"], "df": dfc} for c in combos], "linear", alpha)
            else:
                res = combos[0]
            rows.append({"analysis": analysis, "risk_group": level, "method": method, "n_phase1": counts[0][0],
                         "n_phase3": counts[0][1], **{k: res[k] for k in ("estimate", "ci_low", "ci_high",
                                                                            "p_value", "df")},
                         "m": len(per_dataset) if len(per_dataset) > 1 else 1})
        if len(per_dataset) > 1:
            d1 = pool_wald(np.array([r["inter_coef"] for r in per_dataset]),
                           np.array([r["inter_cov"] for r in per_dataset]))
            tests.append({"analysis": analysis, "test": "pooled Wald D1", "statistic": d1["statistic"],
                          "df_num": d1["df_num"], "df_den": d1["df_den"], "p_value": d1["p_value"]})
        else:
            f, inter = per_dataset[0]["fit"], per_dataset[0]["inter"]
            ft = f.f_test(", ".join(f"{t} = 0" for t in inter))
            tests.append({"analysis": analysis, "test": "Wald F", "statistic": float(np.squeeze(ft.fvalue)),
                          "df_num": float(ft.df_num), "df_den": float(ft.df_denom), "p_value": float(ft.pvalue)})
            # the LR test needs the plain likelihood fits: the same design, and without the interaction columns
            names = list(f.model.exog_names)
            full = OLS(f.model.endog, f.model.exog).fit()
            reduced = OLS(f.model.endog, f.model.exog[:, [not n.startswith(f"{EXPOSURE}:") for n in names]]).fit()
            lr, p, dfd = full.compare_lr_test(reduced)
            tests.append({"analysis": analysis, "test": "likelihood ratio", "statistic": float(lr),
                          "df_num": float(dfd), "df_den": np.inf, "p_value": float(p)})
    return pd.DataFrame(rows), pd.DataFrame(tests)


def _risk_group_fits_on(data: pd.DataFrame, *, outcome: str, covariates: Sequence[str], group: str,
                        levels: Sequence[Any], cov_type: str, model: str, practice: str, alpha: float,
                        keep_fit: bool = False) -> dict[str, Any]:
    """The risk-group models on one dataset: per level its patient counts and phase contrast
    (``estimate``, ``se``, ``df``, ``ci_low``, ``ci_high``, ``p_value``), and the interaction
    coefficients with their covariance for the pooled Wald test (``fit``: the OLS fit, if kept)."""
    from .imputation import one_blas_thread

    with one_blas_thread():
        fit = fit_ols(data, outcome, list(covariates), interaction=group, cov_type=cov_type)
        inter = [t for t in fit.params.index if t.startswith(f"{EXPOSURE}:")]
        mixed = fit_mixed_kr(data, outcome, list(covariates), practice=practice, interaction=group,
                             alpha=alpha)["fit"] if model == "mixed" else None
        out: dict[str, Any] = {}
        for level in levels:
            weights = {EXPOSURE: 1.0}
            term = next((t for t in inter if t.endswith(f"[T.{level}]")), None)
            if term is not None:
                weights[term] = 1.0
            elif level != levels[0]:
                continue  # level absent from the data
            if mixed is not None:
                kr = mixed.kenward_roger(np.array([weights.get(k, 0.0) for k in mixed.names]))
                combo = {"se": kr["se"], **_result(kr["estimate"], kr["se"], kr["df"], "linear", alpha), "df": kr["df"]}
            else:
                combo = linear_combination(fit, weights, alpha=alpha)
            out[level] = {"counts": _group_counts(fit, data, group, level), "combo": combo}
    return {"levels": out, "inter": inter, "inter_coef": fit.params[inter].to_numpy(),
            "inter_cov": fit.cov_params().loc[inter, inter].to_numpy(), "fit": fit if keep_fit else None}


def _group_counts(fit: Any, data: pd.DataFrame, group: str, level: Any) -> tuple[int, int]:
    frame = fit.model.data.frame
    sel = frame[group].astype(str) == str(level)
    return int((frame.loc[sel, EXPOSURE] == 0).sum()), int((frame.loc[sel, EXPOSURE] == 1).sum())


# ---------------------------------------------------------------------------------------- Table 3


def secondary_outcomes_table(
    df: pd.DataFrame,
    imputations: Sequence[pd.DataFrame] | None = None,
    *,
    specs: Sequence[OutcomeSpec] = SECONDARY_OUTCOMES,
    practice: str | None = "practice_id",
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Table 3: every outcome by phase with its effect estimate (imputed and complete cases).

    Parameters
    ----------
    df : DataFrame
        The analysis dataset (observed values give the per-phase summaries).
    imputations : list of DataFrame, optional
        From :func:`impute_outcomes`.
    specs : sequence of OutcomeSpec, default SECONDARY_OUTCOMES
    practice : str or None, default "practice_id"
        Cluster column; None gives the published (patients independent) analyses.
    alpha : float, default 0.05

    Returns
    -------
    DataFrame
        One row per outcome and analysis: ``outcome``, ``label``, ``effect`` (what ``estimate``
        is), ``analysis``, ``n_phase1``, ``n_phase3`` (patients analysed), ``observed_phase1``,
        ``observed_phase3`` (patients with an observed value), ``mean_phase1``, ``sd_phase1``,
        ``mean_phase3``, ``sd_phase3`` (linear and count outcomes, observed values),
        ``events_phase1``, ``pct_phase1``, ``events_phase3``, ``pct_phase3`` (0/1 outcomes,
        observed), ``estimate``, ``ci_low``, ``ci_high``, ``p_value``, ``df`` (of the t
        reference: KR, G - 1 or Barnard-Rubin), ``m`` (imputations; 1 for complete cases),
        ``mc_error`` (Monte Carlo SE of the pooled estimate on the scale it is pooled, log for
        ratios), ``covariates``. ``month`` (2 or 6) follows ``outcome``.

    Notes
    -----
    Mean differences by OLS; odds ratios by logistic regression; global change and 6-month
    risk group by proportional-odds models (``OrderedModel``), reported as the odds ratio of
    a better (lower) category with stratified care, ``exp(-coef)``; days off work by negative
    binomial regression (NB2, ratio of means). Ratios are pooled on the log scale.

    Clustering by practice (``practice`` given; one choice per outcome family): continuous
    outcomes use the primary mixed model (practice and practice-by-phase random intercepts, REML,
    Kenward-Roger); binary and count outcomes keep the GLM point estimate with the Mancl-DeRouen
    bias-corrected cluster-robust covariance (:func:`~backpain_analysis.small_sample.glm_mancl_derouen`)
    and t on G - 1 df; ordinal outcomes the proportional-odds estimate with a CR1 cluster
    sandwich from the per-patient scores and t on G - 1 df. After imputation the complete-data
    df is the KR or G - 1 df (Barnard-Rubin).
    """
    df = add_change_scores(df)
    data = add_phase3(df)
    rows = []
    absent = [spec.outcome for spec in specs if spec.outcome not in data.columns]
    if absent:
        raise ModelError(f"analysis dataset: outcome column {absent[0]!r} is missing")
    fits_by_spec, complete_cases = _effects_with_complete_cases(df, imputations, specs, practice)
    for spec, spec_fits, spec_cc in zip(specs, fits_by_spec, complete_cases, strict=True):
        obs = data if spec.population is None else data.loc[data[spec.population[0]] == spec.population[1]]
        summary: dict[str, Any] = {}
        for phase, flag in ((1, 0.0), (3, 1.0)):
            y = obs.loc[obs[EXPOSURE] == flag, spec.outcome].dropna()
            summary[f"observed_phase{phase}"] = int(len(y))
            if spec.kind in ("linear", "count"):
                summary[f"mean_phase{phase}"] = float(y.mean()) if len(y) else np.nan
                summary[f"sd_phase{phase}"] = float(y.std()) if len(y) > 1 else np.nan
            elif spec.kind == "logistic":
                summary[f"events_phase{phase}"] = int(y.sum())
                summary[f"pct_phase{phase}"] = float(100 * y.mean()) if len(y) else np.nan
        for r in _analyse(df, imputations, spec, alpha, practice, fits=spec_fits, cc=spec_cc):
            rows.append({"outcome": spec.outcome, "month": spec.month, "label": spec.label,
                         "effect": spec.effect_name(),
                         "analysis": r["analysis"], "n_phase1": r["n_phase1"], "n_phase3": r["n_phase3"],
                         **summary, **{k: r[k] for k in ("estimate", "ci_low", "ci_high", "p_value", "df",
                                                         "mc_error")},
                         "m": len(imputations) if r["analysis"] == MI else 1,
                         "covariates": ", ".join(spec.covariates)})
    cols = ["outcome", "month", "label", "effect", "analysis", "n_phase1", "n_phase3", "observed_phase1", "observed_phase3",
            "mean_phase1", "sd_phase1", "mean_phase3", "sd_phase3", "events_phase1", "pct_phase1",
            "events_phase3", "pct_phase3", "estimate", "ci_low", "ci_high", "p_value", "df", "m", "mc_error", "covariates"]
    table = pd.DataFrame(rows)
    for c in cols:
        if c not in table.columns:
            table[c] = np.nan
    return table[cols]


def category_distribution(df: pd.DataFrame, column: str) -> pd.DataFrame:
    """Counts and percentages of an ordered categorical per phase (observed values).

    Returns
    -------
    DataFrame
        ``category``, ``n_phase1``, ``pct_phase1``, ``n_phase3``, ``pct_phase3`` (percent of the
        phase's observed values); pass it through ``backpain_analysis.disclosure`` to share.

    Examples
    --------
    >>> df = pd.DataFrame({"phase": [1, 1, 3, 3], "g": pd.Categorical(["low", "high", "low", None],
    ...                    categories=["low", "high"], ordered=True)})
    >>> category_distribution(df, "g")[["category", "n_phase1", "n_phase3", "pct_phase3"]].values.tolist()
    [['low', 1, 1, 100.0], ['high', 1, 0, 0.0]]
    """
    data = add_phase3(df)
    if not isinstance(data[column].dtype, pd.CategoricalDtype):
        raise ModelError(f"analysis dataset: column {column!r} must be categorical, got {data[column].dtype}")
    cats = list(data[column].cat.categories)
    out = pd.DataFrame({"category": cats})
    for phase, flag in ((1, 0.0), (3, 1.0)):
        counts = data.loc[data[EXPOSURE] == flag, column].value_counts().reindex(cats, fill_value=0)
        out[f"n_phase{phase}"] = counts.to_numpy().astype(int)
        total = counts.sum()
        out[f"pct_phase{phase}"] = 100 * counts.to_numpy() / total if total else np.nan
    return out


# ---------------------------------------------------------------------------------------- figures


def rmdq_trajectory(
    df: pd.DataFrame, *, times: Mapping[int, str] | None = None, group: str = "risk_group", alpha: float = 0.05
) -> pd.DataFrame:
    """Mean RMDQ at baseline, 2 and 6 months by phase and risk group (observed values) with CIs.

    Returns
    -------
    DataFrame
        ``risk_group`` ("all" and each group), ``phase`` (1, 3), ``month`` (0, 2, 6), ``n``,
        ``mean``, ``ci_low``, ``ci_high`` (t-based CI of the mean).

    Examples
    --------
    >>> df = pd.DataFrame({"phase": [1, 1, 3, 3], "rmdq_0m": [10.0, 12, 9, 11], "rmdq_2m": [8.0, 8, 6, 8],
    ...                    "rmdq_6m": [7.0, None, 5, 5],
    ...                    "risk_group": pd.Categorical(["low"] * 4, categories=["low"], ordered=True)})
    >>> t = rmdq_trajectory(df)
    >>> t.loc[(t["risk_group"] == "all") & (t["phase"] == 3), "mean"].tolist()
    [10.0, 7.0, 5.0]
    """
    times = dict(times or {0: "rmdq_0m", 2: "rmdq_2m", 6: "rmdq_6m"})
    data = add_phase3(df)
    rows = []
    levels = ["all", *[str(c) for c in data[group].cat.categories]] if isinstance(
        data[group].dtype, pd.CategoricalDtype) else ["all", *map(str, sorted(data[group].dropna().unique()))]
    for level in levels:
        sub = data if level == "all" else data.loc[data[group].astype(str) == level]
        for phase in (1, 3):
            ph = sub.loc[sub[EXPOSURE] == (1.0 if phase == 3 else 0.0)]
            for month, col in times.items():
                y = ph[col].dropna()
                n = len(y)
                mean = float(y.mean()) if n else np.nan
                half = float(stats.t.ppf(1 - alpha / 2, n - 1) * y.std() / np.sqrt(n)) if n > 1 else np.nan
                rows.append({"risk_group": level, "phase": phase, "month": month, "n": n, "mean": mean,
                             "ci_low": mean - half, "ci_high": mean + half})
    return pd.DataFrame(rows)


def shareable_trajectory(traj: pd.DataFrame, *, threshold: int = 5, marker: str = "*") -> pd.DataFrame:
    """The RMDQ trajectory table as shared: small counts hidden within each phase and month.

    Parameters
    ----------
    traj : DataFrame
        :func:`rmdq_trajectory` output.
    threshold : int
        Counts from 1 to ``threshold - 1`` are hidden (default 5).
    marker : str
        What a hidden cell shows.

    Returns
    -------
    DataFrame
        Same columns as ``traj`` (``risk_group``, ``phase``, ``month``, ``n``, ``mean``,
        ``ci_low``, ``ci_high``); in a hidden row ``n`` and the mean and its CI show ``marker``.

    Notes
    -----
    Within one phase and month the risk groups add up to the ``"all"`` row, so each such group
    goes through :func:`backpain_analysis.disclosure.suppression_mask` with ``total_row="all"``:
    a lone hidden group, or hidden groups adding up to 1 to ``threshold - 1``, take the next
    smallest group with them (a flat suppression of the long table let ``all - shown groups``
    give a hidden 3 back).

    Examples
    --------
    >>> t = pd.DataFrame({"risk_group": ["all", "low", "medium", "high"], "phase": 1, "month": 2,
    ...                   "n": [41, 20, 18, 3], "mean": [8.0, 5.0, 9.0, 15.0], "ci_low": 0.0, "ci_high": 20.0})
    >>> shareable_trajectory(t)["n"].tolist()
    [41, 20, '*', '*']
    """
    from .disclosure import suppression_mask

    shared = traj.astype(object).copy()
    cells = [c for c in ("n", "mean", "ci_low", "ci_high") if c in traj.columns]
    for _, rows in traj.groupby(["phase", "month"], sort=False).groups.items():
        sub = traj.loc[rows].set_index("risk_group")[["n"]]
        total = "all" if "all" in sub.index and not sub.index.has_duplicates else None
        mask = suppression_mask(sub, ["n"], total_row=total, threshold=threshold)["n"].to_numpy()
        hidden_rows = [r for r, h in zip(rows, mask, strict=True) if h]
        shared.loc[hidden_rows, cells] = marker
    return shared


def trajectory_plot(traj: pd.DataFrame, *, title: str = "Mean RMDQ over follow-up (observed values, 95% CI)"):
    """One panel per risk group ("all" first): mean RMDQ by month, a line per phase. Returns the Figure."""
    import matplotlib.pyplot as plt

    levels = list(dict.fromkeys(traj["risk_group"]))
    fig, axes = plt.subplots(1, len(levels), figsize=(2.9 * len(levels), 3.4), sharey=True)
    axes = np.atleast_1d(axes)
    styles = {1: ("tab:grey", "o", "Phase 1 (usual care)"), 3: ("tab:blue", "s", "Phase 3 (stratified care)")}
    for ax, level in zip(axes, levels, strict=True):
        sub = traj.loc[traj["risk_group"] == level]
        for phase, (colour, marker, name) in styles.items():
            s = sub.loc[sub["phase"] == phase].sort_values("month")
            off = -0.12 if phase == 1 else 0.12
            ax.errorbar(s["month"] + off, s["mean"], yerr=[s["mean"] - s["ci_low"], s["ci_high"] - s["mean"]],
                        color=colour, marker=marker, capsize=3, label=name)
        ax.set_title("All patients" if level == "all" else f"{level.capitalize()} risk")
        ax.set_xticks(sorted(traj["month"].unique()))
        ax.set_xlabel("Months since consultation")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("RMDQ (0-24, higher = more disability)")
    axes[-1].legend(fontsize="small", loc="upper right")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------- truth


def add_truth(table: pd.DataFrame, truth: Mapping[str, Any] | None, names: Sequence[str | None]) -> pd.DataFrame:
    """Add a ``truth`` column: ``truth[name]`` for each row (NaN where the study has no such value).

    Parameters
    ----------
    table : DataFrame
    truth : mapping or None
        ``Study.truth`` of a synthetic study. None or empty (a real study, or ``show_truth=False``):
        ``table`` is returned unchanged, without a ``truth`` column.
    names : sequence
        One truth key (or None) per row of ``table``.

    Returns
    -------
    DataFrame
        ``table`` with the added column ``truth`` (only when ``truth`` holds values).

    Examples
    --------
    >>> t = add_truth(pd.DataFrame({"estimate": [0.9, 2.0]}), {"rmdq_adjusted_difference": 0.71},
    ...               ["rmdq_adjusted_difference", None])
    >>> t["truth"].tolist()
    [0.71, nan]
    >>> "truth" in add_truth(pd.DataFrame({"estimate": [0.9]}), None, ["rmdq_adjusted_difference"])
    False
    """
    if len(names) != len(table):
        raise ValueError(f"add_truth: {len(names)} names for a table of {len(table)} rows")
    if not truth:
        return table.copy()
    values = [float(truth[n]) if truth and n and isinstance(truth.get(n), int | float) else np.nan for n in names]
    return table.assign(truth=values)


# ---------------------------------------------------------------------------------------- MNAR sensitivity

#: Scenarios of :func:`delta_adjustment`: which phases' imputed values are shifted.
DELTA_SCENARIOS: dict[str, tuple[float, ...]] = {
    "phase 1 only": (0.0,),
    "phase 3 only": (1.0,),
    "both phases": (0.0, 1.0),
}


def shift_imputed(imp: pd.DataFrame, delta: float, phases: Sequence[float], *, outcome: str = "rmdq_change_6m",
                  imputed: str = "imputed_rmdq_6m") -> pd.DataFrame:
    """Add ``delta`` to ``outcome`` of the imputed rows (``imputed`` = 1) of the given phases (``phase3`` values).

    Examples
    --------
    >>> d = pd.DataFrame({"phase3": [0.0, 1.0, 1.0], "imputed_rmdq_6m": [1.0, 1.0, 0.0],
    ...                   "rmdq_change_6m": [2.0, 3.0, 4.0]})
    >>> shift_imputed(d, -1.5, (1.0,))["rmdq_change_6m"].tolist()
    [2.0, 1.5, 4.0]
    """
    if imputed not in imp.columns:
        raise ModelError(f"delta adjustment: the imputed datasets lack the indicator column {imputed!r}")
    rows = (imp[imputed] == 1) & imp[EXPOSURE].isin(list(phases))
    out = imp.copy()
    out.loc[rows, outcome] = out.loc[rows, outcome] + delta
    return out


def delta_adjustment(
    df: pd.DataFrame,
    imputations: Sequence[pd.DataFrame],
    *,
    deltas: Sequence[float] = (-4.0, -3.0, -2.0, -1.0, 0.0, 1.0, 2.0),
    scenarios: Sequence[str] = ("phase 3 only", "both phases"),
    outcome: str = "rmdq_change_6m",
    covariates: Sequence[str] = PRIMARY_COVARIATES,
    practice: str = "practice_id",
    model: str = "mixed",
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Missing-not-at-random sensitivity by delta adjustment of the imputed primary outcome.

    Parameters
    ----------
    df : DataFrame
        The analysis dataset (for the per-phase counts of imputed patients).
    imputations : sequence of DataFrame
        From :func:`impute_outcomes` or :func:`backpain_analysis.imputation.shared_imputations`
        (they carry ``imputed_rmdq_6m``).
    deltas : sequence of float
        Shifts (RMDQ points) added to the imputed 6-month RMDQ change: a negative delta says
        patients who did not answer improved less than similar patients who did (MAR).
    scenarios : sequence of str
        Keys of :data:`DELTA_SCENARIOS`: shift phase 1 only, phase 3 only or both phases.
    outcome, covariates, practice, alpha
        As for :func:`primary_analysis`.
    model : {"mixed", "ols"}, default "mixed"
        ``"mixed"``: the primary model (practice and practice-by-phase random intercepts, REML,
        Kenward-Roger, Rubin with Barnard-Rubin df), so delta = 0 reproduces the primary
        analysis exactly. ``"ols"``: the published ANCOVA.

    Returns
    -------
    DataFrame
        One row per scenario and delta: ``label`` (scenario and delta in words), ``scenario``,
        ``delta``, ``estimate``, ``ci_low``,
        ``ci_high``, ``p_value``, ``df``, ``method``, ``n_phase1``, ``n_phase3``, ``m``,
        ``imputed_phase1``, ``imputed_phase3`` (patients whose outcome was imputed), ``significant``
        (the CI excludes 0).

    Notes
    -----
    The delta-adjustment (pattern-mixture) approach of van Buuren (2018, section 3.8; R mice's
    ``post`` argument) and Leurent et al. (Stat Med 2018): imputations are made under MAR and the
    imputed values then shifted by delta, which is the assumed mean difference between
    non-responders and comparable responders. Shifting after imputation (rather than inside the
    chain) leaves the other imputed variables as under MAR, the usual simplification. For an
    unadjusted difference in means the estimate moves by f3 x delta (phase 3 shifted) minus
    f1 x delta (phase 1 shifted), f the fraction imputed in that phase; adjusted models move by
    about that much (exactly the OLS projection of the shift vector).
    """
    if model not in PRIMARY_MODELS:
        raise ModelError(f"model must be one of {PRIMARY_MODELS}, got {model!r}")
    unknown = [s for s in scenarios if s not in DELTA_SCENARIOS]
    if unknown:
        raise ModelError(f"delta adjustment: unknown scenarios {unknown}; use {list(DELTA_SCENARIOS)}")
    data = add_phase3(df)
    missing = data[outcome].isna()
    counts = {f"imputed_phase{p}": int((missing & (data[EXPOSURE] == f)).sum()) for p, f in ((1, 0.0), (3, 1.0))}
    rows = []
    zero: dict[str, Any] | None = None
    fast = _delta_mixed(imputations, deltas, scenarios, outcome, covariates, practice, alpha) \
        if model == "mixed" else {}
    for scenario in scenarios:
        for delta in deltas:
            if (scenario, float(delta)) in fast:
                res = fast[(scenario, float(delta))]
            elif delta == 0 and zero is not None:
                res = zero
            else:
                shifted = [shift_imputed(i, float(delta), DELTA_SCENARIOS[scenario], outcome=outcome)
                           for i in imputations] if delta != 0 else imputations
                res = _delta_fit(shifted, outcome, covariates, practice, model, alpha)
                if delta == 0:
                    zero = res
            rows.append({"label": f"{scenario}, delta {float(delta):+g}", "scenario": scenario, "delta": float(delta),
                         **res, **counts, "significant": bool(res["ci_low"] > 0 or res["ci_high"] < 0)})
    cols = ["label", "scenario", "delta", "estimate", "ci_low", "ci_high", "p_value", "df", "method", "n_phase1", "n_phase3",
            "m", "imputed_phase1", "imputed_phase3", "significant"]
    return pd.DataFrame(rows)[cols]


def _delta_mixed(imputations: Sequence[pd.DataFrame], deltas: Sequence[float], scenarios: Sequence[str], outcome: str,
                 covariates: Sequence[str], practice: str, alpha: float,
                 imputed: str = "imputed_rmdq_6m") -> dict[tuple[str, float], dict[str, Any]]:
    """The primary mixed model for every scenario and delta, building each imputation's design once.

    Equal to refitting :func:`backpain_analysis.models.fit_mixed_kr` on :func:`shift_imputed`
    datasets (the shifted response is computed the same way, ``y + delta``), without repeating
    the formula step for every delta (half the time of a fit on a study of IMPaCT Back's size).
    """
    from .parallel import map_datasets

    keys = [(s, float(d)) for s in scenarios for d in deltas]
    per_dataset = map_datasets(partial(_delta_fits_on, keys=keys, outcome=outcome, covariates=covariates,
                                       practice=practice, alpha=alpha, imputed=imputed), imputations)
    fits = {key: [f[k] for f in per_dataset] for k, key in enumerate(keys)}
    out = {}
    for key, group in fits.items():
        r = _pool_mixed(group, alpha)
        out[key] = {**{k: r[k] for k in ("estimate", "ci_low", "ci_high", "p_value", "df", "n_phase1", "n_phase3")},
                    "method": "mixed model (practice + practice-by-phase), REML, Kenward-Roger, Rubin" + r["note"],
                    "m": len(group)}
    return out


def _delta_fits_on(imp: pd.DataFrame, keys: Sequence[tuple[str, float]], outcome: str, covariates: Sequence[str],
                   practice: str, alpha: float, imputed: str) -> list[dict[str, Any]]:
    """The primary mixed model on one imputed dataset for every (scenario, delta) key, the design built once."""
    from .models import fit_mixed_design, mixed_design

    if imputed not in imp.columns:
        raise ModelError(f"delta adjustment: the imputed datasets lack the indicator column {imputed!r}")
    design = mixed_design(imp, outcome, list(covariates), practice=practice)
    rows = design["data"].index
    flag = imp.loc[rows, imputed].to_numpy() == 1
    phase = design["data"][EXPOSURE].to_numpy()
    y = design["y"]
    at_zero = _lean(fit_mixed_design(design, alpha=alpha))
    out = []
    for scenario, delta in keys:
        if delta == 0:
            out.append(at_zero)
            continue
        shift = flag & np.isin(phase, DELTA_SCENARIOS[scenario])
        # the REML search starts from the delta = 0 variance components (same design, shifted response)
        out.append(_lean(fit_mixed_design(design, np.where(shift, y + delta, y), alpha=alpha, start=at_zero)))
    return out


def _lean(fit: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fit.items() if k != "fit"}


def _delta_fit(imputations: Sequence[pd.DataFrame], outcome: str, covariates: Sequence[str], practice: str,
               model: str, alpha: float) -> dict[str, Any]:
    if model == "mixed":
        r = _mixed_row(imputations, outcome, list(covariates), practice, alpha)
        method = "mixed model (practice + practice-by-phase), REML, Kenward-Roger, Rubin" + r["note"]
    else:
        spec = OutcomeSpec(outcome, outcome, "linear", tuple(covariates))
        fits = [_fit_effect(d, spec) for d in imputations]
        r = {**_pooled(fits, "linear", alpha), "n_phase1": fits[0]["n_phase1"], "n_phase3": fits[0]["n_phase3"]}
        method = "OLS ANCOVA, Rubin"
    return {**{k: r[k] for k in ("estimate", "ci_low", "ci_high", "p_value", "df", "n_phase1", "n_phase3")},
            "method": method, "m": len(imputations)}


def tipping_points(table: pd.DataFrame) -> pd.DataFrame:
    """Where the primary conclusion changes in a :func:`delta_adjustment` table.

    The conclusion at delta = 0 is whether the CI excludes 0. For each scenario, the tipping
    point is the delta nearest 0 (on either side) at which that changes, found by linear
    interpolation of the CI limit that crosses 0 between the two grid deltas around it.

    Returns
    -------
    DataFrame
        ``scenario``, ``conclusion_at_0`` ("CI excludes 0" or "CI includes 0"), ``tipping_delta``
        (the one nearer 0; NaN when the conclusion holds over the whole grid), ``bound`` (the CI
        limit that crosses 0 there), ``tipping_below`` and ``tipping_above`` (the first change
        below and above delta = 0; NaN if none in the grid), ``grid_low``, ``grid_high`` (the
        range of deltas examined).

    Examples
    --------
    >>> t = pd.DataFrame({"scenario": "s", "delta": [-2.0, -1.0, 0.0, 1.0], "estimate": [-0.5, 0.0, 0.5, 1.0],
    ...                   "ci_low": [-1.5, -1.0, -0.5, 0.5], "ci_high": [0.5, 1.0, 1.5, 1.5]})
    >>> tipping_points(t)[["conclusion_at_0", "tipping_delta", "bound"]].values.tolist()
    [['CI includes 0', 0.5, 'ci_low']]
    """
    rows = []
    for scenario, g in table.groupby("scenario", sort=False):
        g = g.sort_values("delta").reset_index(drop=True)
        sig = (g["ci_low"] > 0) | (g["ci_high"] < 0)
        at0 = g.index[g["delta"] == 0]
        if len(at0) == 0:
            raise ModelError("tipping_points: the delta grid must include 0")
        i0 = int(at0[0])
        found: dict[int, tuple[float, str]] = {}
        for step in (1, -1):  # search upwards and downwards from delta = 0
            i = i0
            while 0 <= i + step < len(g) and sig[i + step] == sig[i0]:
                i += step
            j = i + step
            if not 0 <= j < len(g):
                continue
            a, b = g.loc[i], g.loc[j]
            for bound in ("ci_low", "ci_high"):
                if np.sign(a[bound]) != np.sign(b[bound]):
                    d = a["delta"] + (0 - a[bound]) * (b["delta"] - a["delta"]) / (b[bound] - a[bound])
                    if step not in found or abs(d) < abs(found[step][0]):
                        found[step] = (float(d), bound)
        best = min(found.values(), key=lambda t: abs(t[0])) if found else None
        rows.append({"scenario": scenario, "conclusion_at_0": "CI excludes 0" if sig[i0] else "CI includes 0",
                     "tipping_delta": best[0] if best else np.nan, "bound": best[1] if best else "",
                     "tipping_below": found[-1][0] if -1 in found else np.nan,
                     "tipping_above": found[1][0] if 1 in found else np.nan,
                     "grid_low": float(g["delta"].min()), "grid_high": float(g["delta"].max())})
    return pd.DataFrame(rows)


def delta_plot(table: pd.DataFrame, *, title: str = "Missing not at random: primary estimate against delta"):
    """Estimate and 95% CI against delta, one series per scenario (a :func:`delta_adjustment` table).

    Drawn with :func:`backpain_analysis.presentation.figures.forest_plot`: one row per delta (top
    = most negative), one marker and interval per scenario, reference line at 0. Returns the Figure.
    """
    from .presentation.figures import forest_plot

    wide = pd.DataFrame({"delta": sorted(table["delta"].unique())})
    wide["label"] = [f"delta {d:+g}" for d in wide["delta"]]
    series = {}
    for k, (scenario, g) in enumerate(table.groupby("scenario", sort=False)):
        g = g.set_index("delta").reindex(wide["delta"])
        for c in ("estimate", "ci_low", "ci_high"):
            wide[f"{c}_{k}"] = g[c].to_numpy()
        series[f"imputed changes shifted in {scenario}"] = (f"estimate_{k}", f"ci_low_{k}", f"ci_high_{k}")
    return forest_plot(wide, series=series, log_scale=False, reference=0.0,
                       favours=("Favours usual care", "Favours stratified care"),
                       xlabel="Adjusted difference in 6-month RMDQ improvement (points), 95% CI", title=title)
