"""Chapter 04: process of care at 6 months from the medical record review (published Table 2).

For each process measure: events / denominator and percentage per phase, and the odds
ratio of phase 3 (stratified care) against phase 1 (usual care) with its 95% CI and p,
unadjusted (as published) and adjusted for age, sex and baseline risk group (logistic
regression). Denominators are the patients who consented to the record review
(``consented_records == 1``); the two referral measures are restricted to their risk groups,
and ``matched_referral`` combines them (low risk not referred or medium/high risk referred, the
analysis dataset's ``matched_referral`` column): its odds ratio is the key finding
``matched_referral_or``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .models import EXPOSURE, ModelError, add_phase3, effect_from_fit, fit_logistic

__all__ = [
    "DEFAULT_ADJUSTMENT",
    "PROCESS_MEASURES",
    "ProcessMeasure",
    "forest_plot",
    "process_of_care_table",
    "process_outcome_frame",
    "shareable_process_table",
]

DEFAULT_ADJUSTMENT: tuple[str, ...] = ("age", "sex", "risk_group")


@dataclass(frozen=True)
class ProcessMeasure:
    """One row of Table 2: a 0/1 record column, optionally restricted to some risk groups."""

    measure: str
    label: str
    column: str
    risk_groups: tuple[str, ...] | None = None
    invert: bool = False  # count the 0s (e.g. "not referred")


PROCESS_MEASURES: tuple[ProcessMeasure, ...] = (
    ProcessMeasure("low_risk_not_referred", "Low risk: not referred to physiotherapy", "physio_referral",
                   ("low",), invert=True),
    ProcessMeasure("medium_high_referred", "Medium/high risk: referred to physiotherapy", "physio_referral",
                   ("medium", "high")),
    # both rows together: care matched to the risk group (the key finding matched_referral_or)
    ProcessMeasure("matched_referral", "Risk-matched referral (all risk groups)", "matched_referral"),
    ProcessMeasure("reconsulted", "Reconsulted the GP", "reconsulted"),
    ProcessMeasure("nsaids", "NSAIDs", "nsaids"),
    ProcessMeasure("antidepressants", "Antidepressants", "antidepressants"),
    ProcessMeasure("non_opioid_analgesics", "Non-opioid analgesics", "non_opioid_analgesics"),
    ProcessMeasure("opioids", "Opioids (any)", "opioids_any"),
    ProcessMeasure("strong_opioids", "Strong opioids", "opioids_strong"),
    ProcessMeasure("weak_opioids_only", "Weak opioids only", "opioids_weak_only"),
    ProcessMeasure("neuromodulators", "Neuromodulators / antiepileptics", "neuromodulators"),
    ProcessMeasure("sickness_certificate", "Sickness certificate issued", "sickness_certificate"),
    ProcessMeasure("blood_test", "Blood test", "blood_test"),
    ProcessMeasure("imaging", "MRI or radiograph", "imaging"),
)


def process_outcome_frame(df: pd.DataFrame, measure: ProcessMeasure) -> pd.DataFrame:
    """Rows and 0/1 outcome column ``y`` for one measure (record-review consenters, risk groups).

    Returns the analysis rows of phases 1 and 3 with the added columns ``phase3`` and ``y``
    (NaN where the record value is missing).
    """
    if measure.column not in df.columns:
        raise ModelError(f"analysis dataset: process measure {measure.measure!r} needs column {measure.column!r}")
    data = add_phase3(df)
    if "consented_records" in data.columns:
        data = data.loc[data["consented_records"] == 1]
    if measure.risk_groups is not None:
        if "risk_group" not in data.columns:
            raise ModelError(f"analysis dataset: measure {measure.measure!r} needs column 'risk_group'")
        data = data.loc[data["risk_group"].astype("string").isin(measure.risk_groups).fillna(False)]
    y = pd.to_numeric(data[measure.column], errors="coerce").astype("float64")
    bad = y.dropna()[~y.dropna().isin([0.0, 1.0])]
    if len(bad):
        raise ModelError(
            f"analysis dataset: column {measure.column!r} must be 0/1 (or NaN), found e.g. {bad.head(3).tolist()}"
        )
    return data.assign(y=1.0 - y if measure.invert else y)


def _counts(data: pd.DataFrame) -> dict[str, float]:
    out: dict[str, float] = {}
    for phase, flag in ((1, 0.0), (3, 1.0)):
        y = data.loc[data[EXPOSURE] == flag, "y"].dropna()
        out[f"n_phase{phase}"] = int(len(y))
        out[f"events_phase{phase}"] = int(y.sum())
        out[f"pct_phase{phase}"] = float(100 * y.mean()) if len(y) else float("nan")
    return out


def process_of_care_table(
    df: pd.DataFrame,
    *,
    measures: Sequence[ProcessMeasure] = PROCESS_MEASURES,
    adjust_for: Sequence[str] = DEFAULT_ADJUSTMENT,
    practice: str | None = "practice_id",
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Table 2: each process measure by phase with unadjusted and adjusted odds ratios.

    Parameters
    ----------
    df : DataFrame
        The analysis dataset (docs/architecture.md): ``phase``, ``consented_records``,
        ``risk_group``, the record columns named in ``measures`` and the ``adjust_for`` columns.
    measures : sequence of ProcessMeasure, default PROCESS_MEASURES
    adjust_for : sequence of str, default ("age", "sex", "risk_group")
        Covariates of the adjusted model. A covariate constant within a measure's rows (risk
        group for the low-risk measure) is left out of that measure's model.
    alpha : float, default 0.05

    Returns
    -------
    DataFrame
        One row per measure: ``measure``, ``label``, ``n_phase1``, ``events_phase1``,
        ``pct_phase1``, ``n_phase3``, ``events_phase3``, ``pct_phase3`` (record-review consenters
        with a known value), ``estimate``, ``ci_low``, ``ci_high``, ``p_value`` (unadjusted odds
        ratio phase 3 vs 1, as published), ``adjusted_estimate``, ``adjusted_ci_low``,
        ``adjusted_ci_high``, ``adjusted_p_value``, ``n_adjusted`` (patients in the adjusted
        model), ``clustered_ci_low``, ``clustered_ci_high``, ``clustered_p_value``,
        ``clustered_df`` (the adjusted odds ratio with patients clustered in practices) and
        ``note`` (why an odds ratio is missing, else empty).

    Notes
    -----
    Logistic regression (statsmodels GLM, Binomial family, logit link) of the measure on a
    phase 3 indicator, with Wald CIs; the unadjusted OR equals the cross-product ratio of the
    2x2 table and its CI Woolf's. The clustered columns keep the adjusted odds ratio and replace
    its model-based SE by the Mancl-DeRouen bias-corrected cluster-robust SE (practices as
    clusters; :func:`backpain_analysis.small_sample.glm_mancl_derouen`) with t on G - 1 df, since
    patients of one practice share its GPs. Odds ratios that are not estimable (no events or no
    non-events in a phase) are NaN with a note. Foster et al., Ann Fam Med 2014, Table 2.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"phase": [1] * 4 + [3] * 4, "consented_records": 1.0,
    ...                    "sickness_certificate": [1, 0, 0, 1, 1, 0, 0, 0.0]})
    >>> m = [p for p in PROCESS_MEASURES if p.measure == "sickness_certificate"]
    >>> t = process_of_care_table(df, measures=m, adjust_for=())
    >>> t[["events_phase1", "n_phase1", "events_phase3", "n_phase3"]].iloc[0].tolist()
    [2, 4, 1, 4]
    >>> round(float(t["estimate"].iloc[0]), 4)  # (1 x 2) / (3 x 2)
    0.3333
    """
    rows = []
    for m in measures:
        data = process_outcome_frame(df, m)
        row: dict[str, object] = {"measure": m.measure, "label": m.label, **_counts(data)}
        notes = []
        for prefix, covs in (("", ()), ("adjusted_", tuple(adjust_for))):
            try:
                fit = fit_logistic(data, "y", covs)
                eff = effect_from_fit(fit, exponentiate=True, alpha=alpha)
            except ModelError as exc:
                eff = {"estimate": np.nan, "ci_low": np.nan, "ci_high": np.nan, "p_value": np.nan, "n": 0}
                notes.append(str(exc).split(":", 1)[-1].strip())
            for k in ("estimate", "ci_low", "ci_high", "p_value"):
                row[prefix + k] = eff[k]
            if prefix:
                row["n_adjusted"] = int(eff["n"])
                row.update(_clustered(data, fit if eff["n"] else None, practice, alpha))
        row["note"] = notes[0] if notes else ""
        rows.append(row)
    return pd.DataFrame(rows)


def _clustered(data: pd.DataFrame, fit, practice: str | None, alpha: float) -> dict[str, float]:
    out = {"clustered_ci_low": np.nan, "clustered_ci_high": np.nan, "clustered_p_value": np.nan,
           "clustered_df": np.nan}
    if fit is None or practice is None or practice not in data.columns:
        return out
    from scipy import stats

    from .small_sample import glm_mancl_derouen

    labels = data.loc[fit.model.data.frame.index, practice]
    g = labels.nunique()
    if g < 2:
        return out
    j = list(fit.params.index).index(EXPOSURE)
    coef = float(fit.params.iloc[j])
    se = float(np.sqrt(glm_mancl_derouen(fit, labels.to_numpy())[j, j]))
    crit = stats.t.ppf(1 - alpha / 2, g - 1)
    return {"clustered_ci_low": float(np.exp(coef - crit * se)), "clustered_ci_high": float(np.exp(coef + crit * se)),
            "clustered_p_value": float(2 * stats.t.sf(abs(coef / se), g - 1)), "clustered_df": float(g - 1)}


def shareable_process_table(table: pd.DataFrame) -> pd.DataFrame:
    """Table 2 ready to share: counts of 1-4 (and what reveals them) replaced by ``"*"``.

    Events, denominators and their complements (``n - events``) from 1 to 4 are hidden, with the
    percentage and the unadjusted odds ratio and CI of that row (the cross-product ratio of a
    2x2 table would reveal a hidden count). Adjusted estimates are left as they are.

    Examples
    --------
    >>> t = pd.DataFrame({"measure": ["a"], "n_phase1": [50], "events_phase1": [3], "pct_phase1": [6.0],
    ...                   "n_phase3": [60], "events_phase3": [10], "pct_phase3": [16.7],
    ...                   "estimate": [3.1], "ci_low": [0.8], "ci_high": [12.0]})
    >>> [str(v) for v in shareable_process_table(t)[["events_phase1", "pct_phase1", "estimate", "events_phase3"]].iloc[0]]
    ['*', '*', '*', '10']
    """
    from .disclosure import suppress_table

    counts = ["n_phase1", "events_phase1", "n_phase3", "events_phase3"]
    derived = {"pct_phase1": ["events_phase1", "n_phase1"], "pct_phase3": ["events_phase3", "n_phase3"]}
    for col in ("estimate", "ci_low", "ci_high"):
        if col in table.columns:
            derived[col] = counts
    return suppress_table(
        table, counts, denominators={"events_phase1": "n_phase1", "events_phase3": "n_phase3"}, derived=derived
    )


def forest_plot(
    table: pd.DataFrame,
    *,
    label: str = "label",
    estimate: str = "estimate",
    ci_low: str = "ci_low",
    ci_high: str = "ci_high",
    series: dict[str, tuple[str, str, str]] | None = None,
    log_scale: bool = True,
    reference: float | None = None,
    xlabel: str = "Odds ratio (phase 3 vs phase 1) with 95% CI",
    title: str = "",
    truth: str | None = None,
    ax=None,
):
    """Forest plot of estimates with CIs, one row per table row (top to bottom in table order).

    Parameters
    ----------
    table : DataFrame
        Results table.
    label, estimate, ci_low, ci_high : str
        Column names.
    series : dict, optional
        Several estimates per row: ``{legend name: (estimate, ci_low, ci_high) column names}``,
        drawn slightly offset (e.g. unadjusted and adjusted). Overrides the single columns.
    log_scale : bool, default True
        Log x axis (ratios). ``reference`` defaults to 1 on a log scale, else 0.
    truth : str, optional
        Column with true values, drawn as crosses (synthetic data).
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Figure
    """
    import matplotlib.pyplot as plt

    if series is None:
        series = {"": (estimate, ci_low, ci_high)}
    n = len(table)
    if ax is None:
        fig, ax = plt.subplots(figsize=(8, 0.45 * n + 1.4))
    else:
        fig = ax.figure
    y = np.arange(n)[::-1].astype(float)
    offsets = np.linspace(-0.15, 0.15, len(series)) if len(series) > 1 else [0.0]
    markers = ["o", "s", "D", "^"]
    for (name, (e, lo, hi)), off, mk in zip(series.items(), offsets, markers, strict=False):
        est = table[e].to_numpy(float)
        err = np.vstack([est - table[lo].to_numpy(float), table[hi].to_numpy(float) - est])
        ax.errorbar(est, y + off, xerr=err, fmt=mk, capsize=3, label=name or None, ms=5)
    if truth is not None and truth in table.columns:
        tv = pd.to_numeric(table[truth], errors="coerce").to_numpy(float)
        ax.plot(tv, y, "x", color="crimson", ms=8, mew=2, label="true value", linestyle="none")
    ref = reference if reference is not None else (1.0 if log_scale else 0.0)
    ax.axvline(ref, color="grey", lw=1, ls="--")
    if log_scale:
        ax.set_xscale("log")
        from matplotlib.ticker import FuncFormatter

        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_yticks(y)
    ax.set_yticklabels(table[label].astype(str).tolist())
    ax.set_xlabel(xlabel)
    if title:
        ax.set_title(title)
    if len(series) > 1 or truth is not None:
        ax.legend(loc="best", fontsize="small")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig
