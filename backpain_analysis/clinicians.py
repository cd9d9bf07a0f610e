"""Clinicians' attitudes, beliefs and confidence before and after stratified-care training.

Chapter 06. Inputs are the cleaned ``clinicians`` and ``clinician_surveys`` tables (see
``data/data_dictionary.yaml``): one row per clinician (profession ``gp`` / ``physio``,
training days) and one survey per clinician and time point (``before`` / ``after``) with the
19 PABS-PT items and three confidence ratings (0-10, managing low-, medium- and high-risk
patients).

- :func:`response_rates`: surveys returned per profession and time point, over all clinicians.
- :func:`clinician_scores`: one row per survey with the PABS-PT subscale scores
  (:func:`backpain_analysis.scoring.score_pabs`) and the confidence ratings.
- :func:`paired_changes`: change after minus before per profession: paired t-test (pingouin),
  95% CI and Hedges' g.
- :func:`mixed_anovas`: time (within) by profession (between) mixed ANOVA, complete pairs.
- :func:`mixed_model_changes`: change from every survey (not only complete pairs), a mixed model
  with random intercepts per clinician and per practice/service, Kenward-Roger inference (the
  primary analysis; :func:`paired_changes` is its sensitivity analysis).
- :func:`dose_response` (and :func:`training_days_association`): training days or mentoring
  sessions against change (physiotherapists; no comparison group).
- :func:`plot_before_after`: paired lines and mean with 95% CI, by profession.

Sign convention: every change here is **after minus before** (a positive change in a score is
an increase; a fall in the biomedical score is a negative change).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .errors import BackpainError

__all__ = [
    "MEASURES",
    "MEASURE_LABELS",
    "PROFESSION_LABELS",
    "ClinicianDataError",
    "change_finding",
    "clinician_scores",
    "mixed_anovas",
    "paired_changes",
    "paired_wide",
    "plot_before_after",
    "response_rates",
    "shared_tables",
    "training_days_association",
    "dose_response",
    "for_display",
    "mixed_model_changes",
    "EXPOSURES",
]

#: Measures analysed, in report order.
MEASURES: tuple[str, ...] = (
    "pabs_biomedical",
    "pabs_behavioural",
    "confidence_low",
    "confidence_medium",
    "confidence_high",
)
#: Plain-words labels of the measures.
MEASURE_LABELS: dict[str, str] = {
    "pabs_biomedical": "PABS-PT biomedical score (sum of its items)",
    "pabs_behavioural": "PABS-PT behavioural score (sum of its items)",
    "confidence_low": "Confidence managing low-risk patients (0-10)",
    "confidence_medium": "Confidence managing medium-risk patients (0-10)",
    "confidence_high": "Confidence managing high-risk patients (0-10)",
}
PROFESSION_LABELS: dict[str, str] = {"gp": "GPs", "physio": "Physiotherapists"}
TIME_POINTS: tuple[str, str] = ("before", "after")
_CONFIDENCE = ("confidence_low", "confidence_medium", "confidence_high")


class ClinicianDataError(BackpainError, ValueError):
    """Clinician tables that cannot be analysed (missing columns, unknown clinicians, bad codes)."""


@contextmanager
def _pingouin_full_precision() -> Iterator[None]:
    """pingouin rounds CIs to 2 decimals by default; keep full precision inside this block."""
    import pingouin

    saved = dict(pingouin.options)
    for key in [k for k in pingouin.options if k.startswith("round.column.CI")]:
        pingouin.options[key] = None
    pingouin.options["round"] = None
    try:
        yield
    finally:
        pingouin.options.clear()
        pingouin.options.update(saved)


def _require(df: pd.DataFrame, columns: Sequence[str], table: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ClinicianDataError(f"table {table!r}: missing column(s) {missing}; has {list(df.columns)[:10]} ...")


def _text(s: pd.Series) -> pd.Series:
    return s.astype("string").str.strip().str.lower().astype(object).where(s.notna(), None)


def response_rates(clinicians: pd.DataFrame, surveys: pd.DataFrame) -> pd.DataFrame:
    """Survey response by profession and time point; all clinicians are the denominator.

    Parameters
    ----------
    clinicians : DataFrame
        Cleaned ``clinicians`` table (``clinician_id``, ``profession``).
    surveys : DataFrame
        Cleaned ``clinician_surveys`` table (``clinician_id``, ``time_point``).

    Returns
    -------
    DataFrame
        One row per profession (``gp``, ``physio``, then ``all``) and time point (``before``,
        ``after``, ``both`` = complete pairs): ``profession``, ``time_point``,
        ``n_clinicians``, ``n_responded``, ``pct_responded`` (0-100).

    Raises
    ------
    ClinicianDataError
        Missing columns, a survey from a clinician absent from ``clinicians`` or an unknown
        profession or time point.

    Examples
    --------
    >>> c = pd.DataFrame({"clinician_id": ["GP1", "GP2", "PT1"], "profession": ["gp", "gp", "physio"]})
    >>> s = pd.DataFrame({"clinician_id": ["GP1", "GP1", "PT1"], "time_point": ["before", "after", "before"]})
    >>> r = response_rates(c, s)
    >>> r.loc[(r.profession == "gp") & (r.time_point == "both"), "pct_responded"].item()
    50.0
    """
    clin, surv = _check_tables(clinicians, surveys)
    rows = []
    for prof in ["gp", "physio", "all"]:
        members = clin if prof == "all" else clin.loc[clin["profession"] == prof]
        ids = set(members["clinician_id"])
        answered = {t: set(surv.loc[surv["time_point"] == t, "clinician_id"]) & ids for t in TIME_POINTS}
        answered["both"] = answered["before"] & answered["after"]
        for t in ("before", "after", "both"):
            n, k = len(ids), len(answered[t])
            rows.append({"profession": prof, "time_point": t, "n_clinicians": n, "n_responded": k,
                         "pct_responded": 100.0 * k / n if n else np.nan})
    return pd.DataFrame(rows)


def _check_tables(clinicians: pd.DataFrame, surveys: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    _require(clinicians, ["clinician_id", "profession"], "clinicians")
    _require(surveys, ["clinician_id", "time_point"], "clinician_surveys")
    clin = clinicians.assign(clinician_id=clinicians["clinician_id"].astype(str), profession=_text(clinicians["profession"]))
    bad = sorted(set(clin["profession"].dropna()) - set(PROFESSION_LABELS))
    if bad or clin["profession"].isna().any():
        raise ClinicianDataError(
            f"table 'clinicians', column 'profession': codes must be 'gp' or 'physio'; found {bad or 'missing values'}"
        )
    surv = surveys.assign(clinician_id=surveys["clinician_id"].astype(str), time_point=_text(surveys["time_point"]))
    bad = sorted(set(surv["time_point"].dropna()) - set(TIME_POINTS))
    if bad or surv["time_point"].isna().any():
        raise ClinicianDataError(
            f"table 'clinician_surveys', column 'time_point': codes must be 'before' or 'after'; found {bad or 'missing values'}"
        )
    unknown = sorted(set(surv["clinician_id"]) - set(clin["clinician_id"]))
    if unknown:
        raise ClinicianDataError(
            f"table 'clinician_surveys', column 'clinician_id': {len(unknown)} id(s) not in table 'clinicians', e.g. {unknown[:3]}"
        )
    dup = surv.duplicated(["clinician_id", "time_point"])
    if dup.any():
        raise ClinicianDataError(
            "table 'clinician_surveys': more than one survey per clinician and time point (clean the data first), "
            f"e.g. {surv.loc[dup, ['clinician_id', 'time_point']].head(3).to_dict(orient='records')}"
        )
    return clin, surv


def clinician_scores(
    clinicians: pd.DataFrame,
    surveys: pd.DataFrame,
    *,
    mapping: dict[str, Sequence[str]] | None = None,
    max_missing: int = 0,
) -> pd.DataFrame:
    """Score the surveys: PABS-PT subscales and confidence, one row per clinician and time point.

    Parameters
    ----------
    clinicians, surveys : DataFrame
        Cleaned ``clinicians`` and ``clinician_surveys`` tables.
    mapping, max_missing
        Passed to :func:`backpain_analysis.scoring.score_pabs` (item allocation and how many
        unanswered items per subscale are prorated).

    Returns
    -------
    DataFrame
        ``clinician_id``, ``profession`` (``gp``/``physio``), ``cluster_id`` (the GP's
        ``practice_id`` or the physiotherapist's ``physio_service``; None if the table has
        neither), ``training_days``, ``mentoring_sessions`` (NaN if absent), ``time_point``
        (ordered categorical
        before < after), ``pabs_biomedical``, ``pabs_behavioural``, ``confidence_low``,
        ``confidence_medium``, ``confidence_high`` (float, NaN when missing).

    Examples
    --------
    >>> c = pd.DataFrame({"clinician_id": ["PT1"], "profession": ["physio"], "training_days": [5.0]})
    >>> s = pd.DataFrame({"clinician_id": ["PT1"], "time_point": ["before"], "confidence_high": [4],
    ...                   "confidence_low": [8], "confidence_medium": [6],
    ...                   **{f"pabs_{i}": [4 if i <= 10 else 2] for i in range(1, 20)}})
    >>> clinician_scores(c, s)[["pabs_biomedical", "pabs_behavioural", "confidence_high"]].iloc[0].tolist()
    [40.0, 18.0, 4.0]
    """
    from .scoring import score_pabs

    clin, surv = _check_tables(clinicians, surveys)
    _require(surveys, list(_CONFIDENCE), "clinician_surveys")
    scores = score_pabs(surv, mapping, max_missing=max_missing)
    out = pd.DataFrame({"clinician_id": surv["clinician_id"], "time_point": surv["time_point"]}, index=surv.index)
    extra = [c for c in ("training_days", "mentoring_sessions") if c in clin.columns]
    info = clin[["clinician_id", "profession", *extra]]
    out = out.merge(info, on="clinician_id", how="left", validate="many_to_one")
    for c in ("training_days", "mentoring_sessions"):
        out[c] = pd.to_numeric(out[c], errors="coerce").astype(float) if c in out.columns else np.nan
    out["cluster_id"] = _cluster_labels(clin).reindex(out["clinician_id"]).to_numpy()
    for c in scores.columns:
        out[c] = scores[c].to_numpy(dtype=float)
    for c in _CONFIDENCE:
        values = pd.to_numeric(surv[c], errors="coerce").astype(float).to_numpy()
        if np.any((values < 0) | (values > 10)):
            raise ClinicianDataError(f"table 'clinician_surveys', column {c!r}: ratings must be 0-10, found {values[(values < 0) | (values > 10)][:3].tolist()}")
        out[c] = values
    out["time_point"] = pd.Categorical(out["time_point"], categories=list(TIME_POINTS), ordered=True)
    cols = ["clinician_id", "profession", "cluster_id", "training_days", "mentoring_sessions", "time_point",
            *scores.columns, *_CONFIDENCE]
    return out[cols].sort_values(["profession", "clinician_id", "time_point"]).reset_index(drop=True)


def _cluster_labels(clin: pd.DataFrame) -> pd.Series:
    """Practice (GPs) or physiotherapy service (physiotherapists) of each clinician, by id."""
    labels = pd.Series([None] * len(clin), index=clin["clinician_id"].to_numpy(), dtype=object)
    for prof, column in (("gp", "practice_id"), ("physio", "physio_service")):
        if column in clin.columns:
            rows = (clin["profession"] == prof).to_numpy() & clin[column].notna().to_numpy()
            labels.iloc[np.flatnonzero(rows)] = [f"{prof}:{v}" for v in clin.loc[rows, column].astype(str)]
    return labels


def paired_wide(scores: pd.DataFrame, measure: str) -> pd.DataFrame:
    """Complete before/after pairs of one measure, one row per clinician.

    Returns
    -------
    DataFrame
        ``clinician_id``, ``profession``, ``training_days``, ``mentoring_sessions``,
        ``cluster_id`` (NaN/None when the scores lack them), ``before``, ``after``, ``change``
        (after minus before); clinicians missing either value are left out.

    Examples
    --------
    >>> scores = pd.DataFrame({
    ...     "clinician_id": ["G1", "G1", "G2", "G2", "P1", "P1", "P2", "P2", "P3", "P3"],
    ...     "profession": ["gp"] * 4 + ["physio"] * 6,
    ...     "training_days": [1.0] * 4 + [3.0, 3.0, 6.0, 6.0, 9.0, 9.0],
    ...     "time_point": ["before", "after"] * 5,
    ...     "pabs_biomedical": [40, 39, 36, 36, 40, 36, 38, 33, 35, 28]})
    >>> paired_wide(scores, "pabs_biomedical")["change"].tolist()
    [-1, 0, -4, -5, -7]
    """
    _require(scores, ["clinician_id", "profession", "time_point", measure], "clinician scores")
    wide = scores.pivot_table(index="clinician_id", columns="time_point", values=measure, observed=False,
                              aggfunc="first", dropna=False)
    wide = wide.reindex(columns=list(TIME_POINTS)).dropna()
    wide.columns = list(TIME_POINTS)
    extra = ["training_days", "mentoring_sessions", "cluster_id"]
    info = scores.drop_duplicates("clinician_id").set_index("clinician_id")
    info = info.reindex(columns=["profession", *extra])
    wide = wide.join(info).reset_index()
    wide["change"] = wide["after"] - wide["before"]
    return wide[["clinician_id", "profession", *extra, "before", "after", "change"]]


def paired_changes(
    scores: pd.DataFrame, measures: Sequence[str] = MEASURES, *, confidence: float = 0.95
) -> pd.DataFrame:
    """Change after minus before training, per measure and profession (paired t-test).

    Parameters
    ----------
    scores : DataFrame
        From :func:`clinician_scores`.
    measures : sequence of str
        Score columns to analyse.
    confidence : float
        Confidence level of the interval.

    Returns
    -------
    DataFrame
        ``measure``, ``label``, ``profession``, ``n_pairs``, ``mean_before``, ``mean_after``,
        ``estimate`` (mean change, after minus before), ``ci_low``, ``ci_high`` (t interval),
        ``p_value`` (two-sided paired t-test), ``t``, ``dof``, ``hedges_g`` (standardized
        change: Cohen's d_av, the mean change over the root mean of the two variances, times
        Hedges' correction 1 - 3 / (4 * 2n - 9); pingouin.compute_effsize paired) and
        ``sd_change``.

    Notes
    -----
    ``pingouin.ttest(after, before, paired=True, confidence=...)`` with its ``CI95``/``p_val``
    columns mapped to ours; CIs kept at full precision. Professions with fewer than 2
    complete pairs give NaN statistics.

    Examples
    --------
    >>> scores = pd.DataFrame({
    ...     "clinician_id": ["G1", "G1", "G2", "G2", "P1", "P1", "P2", "P2", "P3", "P3"],
    ...     "profession": ["gp"] * 4 + ["physio"] * 6,
    ...     "training_days": [1.0] * 4 + [3.0, 3.0, 6.0, 6.0, 9.0, 9.0],
    ...     "time_point": ["before", "after"] * 5,
    ...     "pabs_biomedical": [40, 39, 36, 36, 40, 36, 38, 33, 35, 28]})
    >>> t = paired_changes(scores, ["pabs_biomedical"])
    >>> t.loc[t.profession == "physio", ["n_pairs", "estimate"]].round(3).values.tolist()
    [[3.0, -5.333]]
    """
    import pingouin

    rows = []
    for measure in measures:
        wide = paired_wide(scores, measure)
        for prof in PROFESSION_LABELS:
            w = wide.loc[wide["profession"] == prof]
            row = {"measure": measure, "label": MEASURE_LABELS.get(measure, measure), "profession": prof,
                   "n_pairs": len(w), "mean_before": w["before"].mean(), "mean_after": w["after"].mean(),
                   "estimate": w["change"].mean(), "sd_change": w["change"].std(ddof=1)}
            if len(w) >= 2 and w["change"].std(ddof=1) > 0:
                with _pingouin_full_precision():
                    res = pingouin.ttest(w["after"].to_numpy(), w["before"].to_numpy(), paired=True,
                                         confidence=confidence)
                    g = pingouin.compute_effsize(w["after"].to_numpy(), w["before"].to_numpy(), paired=True,
                                                 eftype="hedges")
                ci = res[f"CI{100 * confidence:.0f}"].iloc[0]
                row.update(ci_low=float(ci[0]), ci_high=float(ci[1]), p_value=float(res["p_val"].iloc[0]),
                           t=float(res["T"].iloc[0]), dof=float(res["dof"].iloc[0]), hedges_g=float(g))
            else:
                row.update(ci_low=np.nan, ci_high=np.nan, p_value=np.nan, t=np.nan, dof=np.nan, hedges_g=np.nan)
            rows.append(row)
    cols = ["measure", "label", "profession", "n_pairs", "mean_before", "mean_after", "estimate", "ci_low",
            "ci_high", "p_value", "t", "dof", "hedges_g", "sd_change"]
    return pd.DataFrame(rows)[cols]


def change_finding(change: pd.DataFrame, measure: str, profession: str, *, min_pairs: int = 5) -> dict[str, float | None]:
    """The change of one measure in one profession, ready for a key finding.

    Parameters
    ----------
    change : DataFrame
        From :func:`paired_changes`.
    measure, profession : str
        The row to take.
    min_pairs : int
        With fewer complete pairs (but at least one) the values are withheld (None): a mean
        of 1-4 clinicians would disclose individual answers.

    Returns
    -------
    dict
        ``value`` (mean change after minus before), ``ci_low``, ``ci_high``, ``n_pairs``.

    Examples
    --------
    >>> t = pd.DataFrame({"measure": ["m"], "profession": ["gp"], "n_pairs": [3], "estimate": [1.0],
    ...                   "ci_low": [0.0], "ci_high": [2.0]})
    >>> change_finding(t, "m", "gp")["value"] is None
    True
    """
    rows = change.loc[(change["measure"] == measure) & (change["profession"] == profession)]
    if len(rows) != 1:
        raise ClinicianDataError(f"change_finding: no single row for measure {measure!r} and profession {profession!r}")
    row = rows.iloc[0]
    n = int(row["n_pairs"])
    if 0 < n < min_pairs:
        return {"value": None, "ci_low": None, "ci_high": None, "n_pairs": n}
    return {"value": float(row["estimate"]), "ci_low": float(row["ci_low"]), "ci_high": float(row["ci_high"]),
            "n_pairs": n}


def mixed_anovas(scores: pd.DataFrame, measures: Sequence[str] = MEASURES) -> pd.DataFrame:
    """Mixed ANOVA of time (before/after, within) by profession (between), complete pairs only.

    Returns
    -------
    DataFrame
        ``measure``, ``effect`` (profession, time, time x profession), ``ss``, ``df1``, ``df2``,
        ``f``, ``p_value``, ``partial_eta_sq``, ``n_clinicians``.

    Notes
    -----
    ``pingouin.mixed_anova`` (type II sums of squares); with two time points the time x
    profession interaction F equals the square of the two-sample t of the changes.

    Examples
    --------
    >>> scores = pd.DataFrame({
    ...     "clinician_id": ["G1", "G1", "G2", "G2", "P1", "P1", "P2", "P2", "P3", "P3"],
    ...     "profession": ["gp"] * 4 + ["physio"] * 6,
    ...     "training_days": [1.0] * 4 + [3.0, 3.0, 6.0, 6.0, 9.0, 9.0],
    ...     "time_point": ["before", "after"] * 5,
    ...     "pabs_biomedical": [40, 39, 36, 36, 40, 36, 38, 33, 35, 28]})
    >>> mixed_anovas(scores, ["pabs_biomedical"])["effect"].tolist()
    ['profession', 'time', 'time x profession']
    """
    import pingouin

    rows = []
    names = {"profession": "profession", "time_point": "time", "Interaction": "time x profession"}
    for measure in measures:
        wide = paired_wide(scores, measure)
        long = wide.melt(id_vars=["clinician_id", "profession"], value_vars=list(TIME_POINTS),
                         var_name="time_point", value_name="score")
        if wide["profession"].nunique() < 2 or len(wide) < 4:
            continue
        with warnings.catch_warnings():
            # pingouin 0.7 calls DataFrame.dropna(inplace=True) internally (pandas 3.1 deprecation)
            warnings.filterwarnings("ignore", message="The inplace keyword", module="pingouin")
            aov = pingouin.mixed_anova(data=long, dv="score", within="time_point", subject="clinician_id",
                                       between="profession")
        for _, r in aov.iterrows():
            rows.append({"measure": measure, "effect": names.get(r["Source"], r["Source"]), "ss": r["SS"],
                         "df1": r["DF1"], "df2": r["DF2"], "f": r["F"], "p_value": r["p_unc"],
                         "partial_eta_sq": r["np2"], "n_clinicians": len(wide)})
    return pd.DataFrame(rows, columns=["measure", "effect", "ss", "df1", "df2", "f", "p_value", "partial_eta_sq",
                                       "n_clinicians"])


#: Exposures of the dose-response analysis (columns of the ``clinicians`` table) and their labels.
EXPOSURES: dict[str, str] = {"training_days": "training days", "mentoring_sessions": "mentoring sessions"}


def _kr_effect(
    y: np.ndarray,
    x: np.ndarray,
    names: list[str],
    groups: list[np.ndarray],
    components: list[str],
    term: str,
    *,
    alpha: float = 0.05,
    drop_zero_component: bool = True,
) -> dict[str, Any]:
    """One fixed effect of a REML random-intercept model with Kenward-Roger inference.

    Components whose REML variance is 0 (on the boundary) are dropped and the model refitted
    (pre-specified, as :func:`backpain_analysis.models.fit_mixed_kr`); with none left the model is
    ordinary least squares with t on n - p df. Returns ``estimate``, ``se``, ``df``, ``ci_low``,
    ``ci_high``, ``p_value``, ``variances`` (dict component -> variance, ``residual`` last) and
    ``method``.
    """
    from .small_sample import fit_reml

    dropped: list[str] = []
    keep = list(range(len(groups)))
    while keep:
        fit = fit_reml(y, x, [groups[i] for i in keep], names=names, component_names=[components[i] for i in keep])
        zero = [i for i, v in zip(keep, fit.variances[:-1], strict=True) if v <= 1e-8 * fit.variances[-1]]
        if not (drop_zero_component and zero):
            break
        dropped += [components[i] for i in zero]
        keep = [i for i in keep if i not in zero]
    k = names.index(term)
    if keep:
        kr = fit.kenward_roger(term)
        est, se, dof = kr["estimate"], kr["se"], kr["df"]
        method = "mixed model (REML), Kenward-Roger df"
        if not (np.isfinite(dof) and dof > 0):  # KR df undefined: Satterthwaite, as fit_mixed_kr
            dof, method = kr["df_satterthwaite"], "mixed model (REML), Kenward-Roger SE, Satterthwaite df"
        variances = {components[i]: float(v) for i, v in zip(keep, fit.variances[:-1], strict=True)}
        variances["residual"] = float(fit.variances[-1])
    else:
        beta, *_ = np.linalg.lstsq(x, y, rcond=None)
        dof = len(y) - x.shape[1]
        resid = y - x @ beta
        s2 = float(resid @ resid) / dof
        est, se = float(beta[k]), float(np.sqrt(s2 * np.linalg.inv(x.T @ x)[k, k]))
        method = "least squares, t on n - p df"
        variances = {"residual": s2}
    if dropped:
        method += f" (zero {' and '.join(dropped)} variance dropped)"
    crit = stats.t.ppf(1 - alpha / 2, dof)
    return {"estimate": float(est), "se": float(se), "df": float(dof), "ci_low": float(est - crit * se),
            "ci_high": float(est + crit * se), "p_value": float(2 * stats.t.sf(abs(est / se), dof)),
            "variances": variances, "method": method}


def mixed_model_changes(
    scores: pd.DataFrame,
    measures: Sequence[str] = MEASURES,
    *,
    cluster: bool = True,
    drop_zero_component: bool = True,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Change after minus before training from every survey: a mixed model per measure and profession.

    Parameters
    ----------
    scores : DataFrame
        From :func:`clinician_scores` (one row per survey; a clinician may have one or two).
    measures : sequence of str
        Score columns to analyse.
    cluster : bool, default True
        Add a random intercept for the clinician's practice (GPs) or physiotherapy service
        (physiotherapists), ``cluster_id``, when the data have it for every survey.
    drop_zero_component : bool, default True
        Pre-specified: a random intercept whose REML variance is 0 is dropped and the model
        refitted (Kenward-Roger is conservative with a variance on the boundary).
    alpha : float, default 0.05

    Returns
    -------
    DataFrame
        ``measure``, ``label``, ``profession``, ``n_before``, ``n_after`` (surveys with the
        measure), ``n_pairs`` (clinicians with both), ``estimate`` (mean change after minus
        before, the ``after`` coefficient), ``se`` (Kenward-Roger adjusted), ``df``
        (Kenward-Roger), ``ci_low``, ``ci_high``, ``p_value`` (two-sided t on ``df``),
        ``var_clinician``, ``var_cluster``, ``var_residual`` (REML variances; NaN when dropped),
        ``method``. Statistics are NaN with fewer than 2 complete pairs.

    Notes
    -----
    Model: ``score_ij = b0 + b1 after_ij + u_clinician(i) + v_cluster(i) + e_ij`` fitted by REML
    (:func:`backpain_analysis.small_sample.fit_reml`), Kenward-Roger (1997) SE and df for
    ``b1`` (:meth:`~backpain_analysis.small_sample.MixedFit.kenward_roger`). Every survey is used:
    a clinician who answered once contributes to the time means and, through the clinician
    intercept, the analysis is valid if missing surveys are missing at random given the observed
    answers (Laird and Ware, Biometrics 1982); the complete-pair t-test
    (:func:`paired_changes`) is the sensitivity analysis. With every clinician observed twice
    and no cluster term, the REML estimate is the mean paired difference, its SE
    ``sd(change) / sqrt(n)`` and the KR df ``n - 1``: the paired t-test exactly (when the
    covariance of the two answers is positive, so the clinician variance is not on the boundary).

    Examples
    --------
    >>> scores = pd.DataFrame({
    ...     "clinician_id": ["P1", "P1", "P2", "P2", "P3", "P3", "P4"],
    ...     "profession": ["physio"] * 7,
    ...     "time_point": ["before", "after"] * 3 + ["before"],
    ...     "pabs_biomedical": [40, 36, 38, 35, 35, 30, 41]})
    >>> m = mixed_model_changes(scores, ["pabs_biomedical"])
    >>> m.loc[m.profession == "physio", ["n_before", "n_after", "n_pairs"]].values.tolist()
    [[4, 3, 3]]
    """
    _require(scores, ["clinician_id", "profession", "time_point", *measures], "clinician scores")
    rows = []
    for measure in measures:
        for prof in PROFESSION_LABELS:
            part = scores.loc[(scores["profession"] == prof) & scores[measure].notna()]
            after = (part["time_point"].astype(str) == "after").to_numpy(dtype=float)
            ids = part["clinician_id"].astype(str).to_numpy()
            n_pairs = len(set(ids[after == 1]) & set(ids[after == 0]))
            row: dict[str, Any] = {"measure": measure, "label": MEASURE_LABELS.get(measure, measure),
                                   "profession": prof, "n_before": int((after == 0).sum()),
                                   "n_after": int((after == 1).sum()), "n_pairs": n_pairs}
            if n_pairs >= 2 and part[measure].std() > 0:
                groups, comps = [ids], ["clinician"]
                labels = part["cluster_id"] if "cluster_id" in part.columns else pd.Series(dtype=object)
                if cluster and len(labels) and labels.notna().all() and labels.nunique() >= 2:
                    groups.append(labels.astype(str).to_numpy())
                    comps.append("practice or service")
                x = np.column_stack([np.ones_like(after), after])
                res = _kr_effect(part[measure].to_numpy(dtype=float), x, ["intercept", "after"], groups, comps,
                                 "after", alpha=alpha, drop_zero_component=drop_zero_component)
                v = res.pop("variances")
                row.update(res, var_clinician=v.get("clinician", np.nan),
                           var_cluster=v.get("practice or service", np.nan), var_residual=v["residual"])
            rows.append(row)
    cols = ["measure", "label", "profession", "n_before", "n_after", "n_pairs", "estimate", "se", "df", "ci_low",
            "ci_high", "p_value", "var_clinician", "var_cluster", "var_residual", "method"]
    return pd.DataFrame(rows).reindex(columns=cols)


def dose_response(
    scores: pd.DataFrame,
    measures: Sequence[str] = MEASURES,
    *,
    exposure: str = "training_days",
    profession: str = "physio",
    cluster: bool = True,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Amount of training (days or mentoring sessions) against change after minus before.

    Parameters
    ----------
    scores : DataFrame
        From :func:`clinician_scores`.
    measures : sequence of str
        Score columns.
    exposure : {"training_days", "mentoring_sessions"}
        The dose (one value per clinician).
    profession : str, default "physio"
        Physiotherapists had 3-9 training days and up to 12 months of mentoring.
    cluster : bool, default True
        Random intercept for the physiotherapy service (``cluster_id``) when every clinician has
        one; dropped when its REML variance is 0 (then least squares).
    alpha : float, default 0.05

    Returns
    -------
    DataFrame
        ``measure``, ``profession``, ``exposure``, ``n`` (complete pairs with the dose),
        ``r`` (Pearson correlation, descriptive), ``r_ci_low``, ``r_ci_high`` (Fisher z),
        ``r_p_value``, ``estimate`` (slope: change in points per extra day or session),
        ``se``, ``df``, ``ci_low``, ``ci_high``, ``p_value``, ``method``. NaN with fewer than 4
        clinicians or no variation.

    Notes
    -----
    ``change_i = a + b dose_i (+ v_service(i)) + e_i`` on complete pairs, Kenward-Roger
    inference when the service intercept is kept (:func:`mixed_model_changes`). Without a
    service term this is ordinary least squares (t on n - 2 df), the same slope, CI and p as
    ``scipy.stats.linregress``. **Caveat**: a dose-response association without a comparison
    group; physiotherapists who chose, or were offered, more days or sessions may differ in
    other ways, and every physiotherapist was trained, so the slope is not the effect of the
    training itself.

    Examples
    --------
    >>> scores = pd.DataFrame({
    ...     "clinician_id": [f"P{i}" for i in range(5) for _ in range(2)], "profession": "physio",
    ...     "mentoring_sessions": [2.0, 2.0, 4.0, 4.0, 6.0, 6.0, 8.0, 8.0, 10.0, 10.0],
    ...     "time_point": ["before", "after"] * 5,
    ...     "pabs_biomedical": [40, 39, 38, 36, 40, 37, 41, 36, 39, 33]})
    >>> r = dose_response(scores, ["pabs_biomedical"], exposure="mentoring_sessions")
    >>> int(r["n"].iloc[0]), round(float(r["estimate"].iloc[0]), 3)
    (5, -0.65)
    """
    if exposure not in EXPOSURES:
        raise ClinicianDataError(f"dose_response: exposure must be one of {list(EXPOSURES)}, got {exposure!r}")
    rows = []
    for measure in measures:
        wide = paired_wide(scores, measure)
        w = wide.loc[(wide["profession"] == profession) & wide[exposure].notna()]
        row: dict[str, Any] = {"measure": measure, "profession": profession, "exposure": exposure, "n": len(w)}
        if len(w) >= 4 and w[exposure].std() > 0 and w["change"].std() > 0:
            dose, change = w[exposure].to_numpy(dtype=float), w["change"].to_numpy(dtype=float)
            r = float(np.corrcoef(dose, change)[0, 1])
            half = stats.norm.ppf(1 - alpha / 2) / np.sqrt(len(w) - 3)
            t_r = r * np.sqrt((len(w) - 2) / (1 - r ** 2)) if abs(r) < 1 else np.inf
            groups, comps = [], []
            labels = w["cluster_id"]
            if cluster and labels.notna().all() and labels.nunique() >= 2:
                groups, comps = [labels.astype(str).to_numpy()], ["service"]
            x = np.column_stack([np.ones_like(dose), dose])
            res = _kr_effect(change, x, ["intercept", exposure], groups, comps, exposure, alpha=alpha)
            res.pop("variances")
            row.update(r=r, r_ci_low=float(np.tanh(np.arctanh(r) - half)),
                       r_ci_high=float(np.tanh(np.arctanh(r) + half)),
                       r_p_value=float(2 * stats.t.sf(abs(t_r), len(w) - 2)), **res)
        rows.append(row)
    cols = ["measure", "profession", "exposure", "n", "r", "r_ci_low", "r_ci_high", "r_p_value", "estimate", "se",
            "df", "ci_low", "ci_high", "p_value", "method"]
    return pd.DataFrame(rows).reindex(columns=cols)


def training_days_association(
    scores: pd.DataFrame, measures: Sequence[str] = MEASURES, *, profession: str = "physio", cluster: bool = True
) -> pd.DataFrame:
    """Training days against change (after minus before): :func:`dose_response` with ``exposure="training_days"``.

    Returns
    -------
    DataFrame
        As :func:`dose_response`.

    Examples
    --------
    >>> scores = pd.DataFrame({
    ...     "clinician_id": ["G1", "G1", "G2", "G2", "P1", "P1", "P2", "P2", "P3", "P3"],
    ...     "profession": ["gp"] * 4 + ["physio"] * 6,
    ...     "training_days": [1.0] * 4 + [3.0, 3.0, 6.0, 6.0, 9.0, 9.0],
    ...     "time_point": ["before", "after"] * 5,
    ...     "pabs_biomedical": [40, 39, 36, 36, 40, 36, 38, 33, 35, 28]})
    >>> extra = pd.DataFrame({"clinician_id": ["P4", "P4", "P5", "P5"], "profession": ["physio"] * 4,
    ...                       "training_days": [5.0, 5.0, 4.0, 4.0], "time_point": ["before", "after"] * 2,
    ...                       "pabs_biomedical": [30, 26, 31, 29]})
    >>> r = training_days_association(pd.concat([scores, extra]), ["pabs_biomedical"])
    >>> int(r["n"].iloc[0]), round(float(r["estimate"].iloc[0]), 3)
    (5, -0.67)
    """
    return dose_response(scores, measures, exposure="training_days", profession=profession, cluster=cluster)


#: Result columns renamed for display (readable headers through ``presentation.human_label``).
_DISPLAY_NAMES = {"r": "pearson_r", "r_ci_low": "pearson_r_ci_low", "r_ci_high": "pearson_r_ci_high",
                  "r_p_value": "pearson_r_p_value", "ss": "sum_of_squares", "df1": "df_num", "df2": "df_den",
                  "effect": "term", "dof": "df"}


def for_display(table: pd.DataFrame, drop: Sequence[str] = ("measure", "exposure")) -> pd.DataFrame:
    """A chapter table ready for :func:`backpain_analysis.presentation.display_table`.

    Profession codes become their labels (``gp`` -> ``GPs``), measures and exposures their
    plain-words labels (kept in ``label``), code columns in ``drop`` are removed, and terse
    statistics columns get readable names (``r`` -> ``pearson_r``, ``ss`` -> ``sum_of_squares``,
    ``df1``/``df2`` -> ``df_num``/``df_den``, ``effect`` -> ``term``). Values,
    including suppressed ``"*"`` cells, are otherwise unchanged.

    Returns
    -------
    DataFrame
        ``label`` first (measure label, with the exposure for dose-response tables), then the
        other columns.

    Examples
    --------
    >>> t = pd.DataFrame({"measure": ["confidence_high"], "profession": ["physio"], "exposure": ["mentoring_sessions"],
    ...                   "estimate": [0.1]})
    >>> for_display(t).iloc[0, :2].tolist()
    ['Confidence managing high-risk patients (0-10), per extra mentoring session', 'Physiotherapists']
    """
    out = table.copy()
    if "measure" in out.columns:
        label = out["label"] if "label" in out.columns else out["measure"].map(lambda m: MEASURE_LABELS.get(m, m))
        if "exposure" in out.columns:
            per = out["exposure"].map(lambda e: EXPOSURES.get(e, e)).str.replace("sessions", "session").str.replace(
                "days", "day")
            label = label + ", per extra " + per
        out["label"] = label
    if "profession" in out.columns:
        out["profession"] = out["profession"].map(lambda p: PROFESSION_LABELS.get(p, "All clinicians" if p == "all"
                                                                                  else p))
    out = out.drop(columns=[c for c in drop if c in out.columns])
    out = out.rename(columns={k: v for k, v in _DISPLAY_NAMES.items() if k in out.columns})
    return out[["label", *[c for c in out.columns if c != "label"]]] if "label" in out.columns else out


def plot_before_after(scores: pd.DataFrame, measure: str, *, max_lines: int = 200, seed: int = 0,
                      hide_n: Sequence[str] = ()):
    """Before/after figure of one measure: one panel per profession.

    Thin grey lines join each clinician's two answers (complete pairs, at most ``max_lines``
    drawn); black points and bars are the mean
    and 95% t interval at each time point. For professions in ``hide_n`` (whose number of
    complete pairs is hidden in the chapter's tables) the title shows ``n = *`` and no
    individual line is drawn (lines could be counted).

    Returns
    -------
    matplotlib Figure

    Examples
    --------
    >>> scores = pd.DataFrame({
    ...     "clinician_id": ["G1", "G1", "G2", "G2", "P1", "P1", "P2", "P2", "P3", "P3"],
    ...     "profession": ["gp"] * 4 + ["physio"] * 6,
    ...     "training_days": [1.0] * 4 + [3.0, 3.0, 6.0, 6.0, 9.0, 9.0],
    ...     "time_point": ["before", "after"] * 5,
    ...     "pabs_biomedical": [40, 39, 36, 36, 40, 36, 38, 33, 35, 28]})
    >>> fig = plot_before_after(scores, "pabs_biomedical")
    >>> [ax.get_title() for ax in fig.axes]
    ['GPs (n = fewer than 5 pairs)', 'Physiotherapists (n = fewer than 5 pairs)']
    """
    import matplotlib.pyplot as plt
    from scipy import stats

    wide = paired_wide(scores, measure)
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.8), sharey=True)
    rng = np.random.default_rng(seed)
    for ax, (prof, name) in zip(axes, PROFESSION_LABELS.items(), strict=True):
        w = wide.loc[wide["profession"] == prof]
        show = w.iloc[rng.permutation(len(w))[:max_lines]] if prof not in hide_n else w.iloc[:0]
        for _, r in show.iterrows():
            ax.plot([0, 1], [r["before"], r["after"]], color="grey", alpha=0.25, lw=0.8)
        for x, col in enumerate(TIME_POINTS):
            v = w[col].to_numpy()
            if len(v) >= 2:
                half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
                ax.errorbar([x], [v.mean()], yerr=[[half], [half]], fmt="o", color="black", capsize=4, zorder=3)
        ax.set_xticks([0, 1], ["Before training", "After training"])
        ax.set_xlim(-0.3, 1.3)
        shown_n = f"{len(w)}" if len(w) == 0 or len(w) >= 5 else "fewer than 5"  # no count 1-4 in shared output
        if prof in hide_n and len(w) >= 5:
            shown_n = "*"
        ax.set_title(f"{name} (n = {shown_n} pairs)")
    axes[0].set_ylabel(MEASURE_LABELS.get(measure, measure))
    fig.suptitle(f"{MEASURE_LABELS.get(measure, measure)}: before and after training (mean and 95% CI)")
    fig.tight_layout()
    return fig


def shared_tables(
    rates: pd.DataFrame,
    summary: pd.DataFrame | None = None,
    change: pd.DataFrame | None = None,
    anova: pd.DataFrame | None = None,
    dose: pd.DataFrame | None = None,
    mixed: pd.DataFrame | None = None,
    *,
    threshold: int = 5,
) -> dict[str, pd.DataFrame]:
    """The chapter's tables with small numbers hidden consistently across all of them.

    Parameters
    ----------
    rates : DataFrame
        :func:`response_rates` output.
    summary : DataFrame, optional
        Scores by ``measure``, ``profession``, ``time_point`` with ``n``, ``mean``, ``sd``.
    change : DataFrame, optional
        :func:`paired_changes` output (``n_pairs`` and statistics; a ``truth`` column is kept).
    anova, dose : DataFrame, optional
        :func:`mixed_anovas` (``n_clinicians``) and :func:`dose_response` (``n``).
    mixed : DataFrame, optional
        :func:`mixed_model_changes` (``n_before``, ``n_after``, ``n_pairs``).
    threshold : int
        Counts from 1 to ``threshold - 1`` are hidden (default 5).

    Returns
    -------
    dict of str to DataFrame
        ``"survey_response"`` and, for the tables given, ``"scores_by_time"``,
        ``"paired_change"``, ``"mixed_anova"``, ``"training_days"`` (the dose-response table) and
        ``"mixed_model_change"``: the tables as shared,
        hidden cells ``"*"``. Each table's suppression depends only on ``rates`` and itself, so
        a notebook can share each table where it is made. ``"hidden_pairs"`` lists the
        professions whose number of complete pairs is hidden (for :func:`plot_before_after`).

    Notes
    -----
    Survey response: a number responding is hidden when it is 1-4 or leaves 1-4 non-responders
    (``n_clinicians - n_responded``); within each time point, the ``all`` row is the sum of the
    professions, so when one profession is hidden another cell of that time point is hidden
    too (:func:`backpain_analysis.disclosure.suppression_mask` with ``all`` as the total; a
    profession with 1-4 members hides its whole column of counts). Every other table then
    hides the count of a group (profession x time point; ``both`` = the complete pairs behind
    ``n_pairs``, the mixed ANOVA's ``n_clinicians`` and the training-days ``n``) hidden in the
    response table, because it is the same number, or nearly: otherwise "32 answered" in one
    table reveals the 2 non-responders hidden in another. Means, SDs and statistics are
    hidden only when their own count is 1-4 (a mean does not reveal a count).

    Examples
    --------
    >>> c = pd.DataFrame({"clinician_id": [f"G{i}" for i in range(20)] + [f"P{i}" for i in range(10)],
    ...                   "profession": ["gp"] * 20 + ["physio"] * 10})
    >>> s = pd.DataFrame({"clinician_id": [f"G{i}" for i in range(20)] + [f"P{i}" for i in range(8)],
    ...                   "time_point": "before"})
    >>> shared = shared_tables(response_rates(c, s))
    >>> shared["survey_response"].query("time_point == 'before'")["n_responded"].tolist()
    [20, '*', '*']
    """
    from .disclosure import MARKER, suppression_mask

    rates = rates.reset_index(drop=True)
    hide = pd.DataFrame(False, index=rates.index, columns=rates.columns)
    for tp in rates["time_point"].unique():
        part = rates.loc[rates["time_point"] == tp].set_index("profession")
        if "all" not in part.index:
            continue
        mask = suppression_mask(part, ["n_clinicians", "n_responded"], denominators={"n_responded": "n_clinicians"},
                                derived={"pct_responded": ["n_responded"]}, total_row="all", threshold=threshold)
        hide.loc[rates["time_point"] == tp, mask.columns] = mask.to_numpy()
    # a profession whose size is hidden hides its responses at every time point (and the margins)
    small_prof = set(rates.loc[hide["n_clinicians"], "profession"])
    hide.loc[rates["profession"].isin(small_prof), ["n_responded", "pct_responded"]] = True
    hidden_groups = {(p, t) for p, t, h in zip(rates["profession"], rates["time_point"], hide["n_responded"], strict=True)
                     if h}
    if small_prof:
        hidden_groups |= {(p, t) for p in ("gp", "physio", "all") for t in ("before", "after", "both")}

    def apply(table: pd.DataFrame, mask: pd.DataFrame) -> pd.DataFrame:
        out = table.copy()
        for col in mask.columns:
            m = mask[col].to_numpy(dtype=bool)
            if m.any():
                out[col] = pd.Series(np.where(m, MARKER, table[col].astype(object).to_numpy()), index=table.index,
                                     dtype=object)
        return out

    def small(values: pd.Series) -> np.ndarray:
        v = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
        with np.errstate(invalid="ignore"):
            return (v >= 1) & (v < threshold)

    shared: dict[str, Any] = {"survey_response": apply(rates, hide),
                              "hidden_pairs": sorted({p for p, t in hidden_groups if t == "both" and p != "all"})}
    if summary is not None:
        shared["scores_by_time"] = _share_summary(summary, hidden_groups, apply, small)
    if change is not None:
        shared["paired_change"] = _share_change(change, hidden_groups, apply, small)
    any_both_hidden = any(t == "both" for _, t in hidden_groups)
    if anova is not None:
        a = anova.reset_index(drop=True)
        a_small = small(a["n_clinicians"])
        cols = [c for c in ("ss", "f", "p_value", "partial_eta_sq") if c in a.columns]
        shared["mixed_anova"] = apply(a, pd.DataFrame({"n_clinicians": a_small | any_both_hidden,
                                                       **{c: a_small for c in cols}}, index=a.index))
    if dose is not None:
        d = dose.reset_index(drop=True)
        d_small = small(d["n"])
        d_group = np.array([(p, "both") in hidden_groups for p in d["profession"]], dtype=bool)
        cols = [c for c in d.columns if c not in ("measure", "profession", "exposure", "n", "method")]
        shared["training_days"] = apply(d, pd.DataFrame({"n": d_small | d_group, **{c: d_small for c in cols}},
                                                        index=d.index))
    if mixed is not None:
        shared["mixed_model_change"] = _share_mixed(mixed, hidden_groups, apply, small)
    return shared


def _share_mixed(mixed, hidden_groups, apply, small):
    mx = mixed.reset_index(drop=True)
    counts = {"n_before": "before", "n_after": "after", "n_pairs": "both"}
    mask = {c: small(mx[c]) | np.array([(p, t) in hidden_groups for p in mx["profession"]], dtype=bool)
            for c, t in counts.items()}
    # a mean of 1-4 answers at either time point is not shown
    few = small(mx["n_before"]) | small(mx["n_after"]) | small(mx["n_pairs"])
    stats_cols = [c for c in mx.columns if c not in ("measure", "label", "profession", "method", *counts)]
    return apply(mx, pd.DataFrame({**mask, **{c: few for c in stats_cols}}, index=mx.index))


def _share_summary(summary, hidden_groups, apply, small):
    s = summary.reset_index(drop=True)
    s_small = small(s["n"]) if len(s) else np.zeros(0, dtype=bool)
    s_group = np.array([(p, t) in hidden_groups for p, t in zip(s["profession"], s["time_point"], strict=True)],
                       dtype=bool)
    s_mask = pd.DataFrame({"n": s_small | s_group, **{c: s_small for c in ("mean", "sd") if c in s.columns}})
    return apply(s, s_mask.set_axis(s.index))


def _share_change(change, hidden_groups, apply, small):
    ch = change.reset_index(drop=True)
    ch_small = small(ch["n_pairs"]) if len(ch) else np.zeros(0, dtype=bool)
    ch_group = np.array([(p, "both") in hidden_groups for p in ch["profession"]], dtype=bool)
    stats_cols = [c for c in ch.columns if c not in ("measure", "label", "profession", "n_pairs", "truth")]
    return apply(ch, pd.DataFrame({"n_pairs": ch_small | ch_group, **{c: ch_small for c in stats_cols}}, index=ch.index))
