"""Chapter 03: stratification, the screening tool (SBST), questionnaire uptake and matched-care fidelity.

Functions here take the analysis dataset (one row per analysed patient, see
``docs/architecture.md``) or a cleaned table (``CleanStudy.tables["patients"]`` for the
SBST items, ``CleanStudy.tables["consultations"]`` for uptake) and return tidy DataFrames
with the project's result columns (``estimate``, ``ci_low``, ``ci_high``, ``p_value``).
Plotting functions take those tables and return a matplotlib ``Figure``.

Methods
-------
- Internal consistency: Cronbach's alpha (``pingouin.cronbach_alpha``, listwise deletion)
  with the Feldt (1987) F-distribution confidence interval, recomputed here at full
  precision because pingouin rounds its interval to 3 decimals.
- Discriminative validity: area under the ROC curve from ranks (the Mann-Whitney U
  statistic divided by ``n_pos * n_neg``, ties counted one half), with the DeLong
  et al. (1988) variance (structural components) and a Wald interval clipped to [0, 1].
- Predictive validity: proportion with a poor 6-month outcome per risk group and the odds
  ratio of each group against the low-risk group (Woolf log-OR interval, Wald p-value).
- Uptake and fidelity: proportions with Wilson score intervals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .errors import BackpainError

__all__ = [
    "AUCResult",
    "PHASE_LABELS",
    "RISK_GROUPS",
    "SBST_ITEM_LABELS",
    "auc_delong",
    "discriminative_validity",
    "fidelity",
    "internal_consistency",
    "item_endorsement",
    "pathway_table",
    "shareable_pathway_table",
    "plot_fidelity",
    "plot_item_endorsement",
    "plot_risk_mix",
    "plot_score_distributions",
    "plot_uptake",
    "predictive_validity",
    "risk_mix",
    "sbst_item_scores",
    "score_distributions",
    "shareable_crosstab",
    "suppress_shares",
    "uptake",
    "uptake_by_practice_month",
    "uptake_interrupted_time_series",
    "plot_uptake_over_time",
    "training_milestones",
    "wilson_interval",
]

RISK_GROUPS: tuple[str, ...] = ("low", "medium", "high")
PHASE_LABELS: dict[int, str] = {1: "Phase 1 (usual care)", 3: "Phase 3 (stratified care)"}
SBST_ITEMS: tuple[str, ...] = tuple(f"sbst_{i}" for i in range(1, 10))
PSYCHOSOCIAL_ITEMS: tuple[str, ...] = tuple(f"sbst_{i}" for i in range(5, 10))
SBST_ITEM_LABELS: dict[str, str] = {
    "sbst_1": "1 Leg pain",
    "sbst_2": "2 Shoulder or neck pain",
    "sbst_3": "3 Walks only short distances",
    "sbst_4": "4 Dresses slowly",
    "sbst_5": "5 Fear: not safe to be active",
    "sbst_6": "6 Worrying thoughts",
    "sbst_7": "7 Catastrophising",
    "sbst_8": "8 Low mood",
    "sbst_9": "9 Very or extremely bothersome",
}
RISK_COLOURS: dict[str, str] = {"low": "#4daf4a", "medium": "#ff7f00", "high": "#e41a1c"}



def _error_bars(estimate: np.ndarray, ci_low: np.ndarray, ci_high: np.ndarray) -> np.ndarray:
    """Asymmetric error-bar lengths for matplotlib (2 x n, never negative).

    A Wilson interval at 0% or 100% can sit a rounding error inside the estimate, and a
    suppressed cell has no interval: both would make matplotlib refuse ``yerr``.
    """
    with np.errstate(invalid="ignore"):
        err = np.vstack([estimate - ci_low, ci_high - estimate]).astype(float)
        err[~np.isfinite(err)] = 0.0
    return np.clip(err, 0.0, None)

def _require(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise BackpainError(
            f"{what}: column(s) {missing} missing; available columns start with {list(df.columns)[:12]}"
        )


def wilson_interval(successes: np.ndarray | float, n: np.ndarray | float, level: float = 0.95
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for a binomial proportion (NaN where ``n`` is 0).

    Examples
    --------
    >>> lo, hi = wilson_interval(8, 10)
    >>> round(float(lo), 4), round(float(hi), 4)
    (0.4902, 0.9433)
    """
    x = np.asarray(successes, dtype=float)
    m = np.asarray(n, dtype=float)
    z = stats.norm.isf((1 - level) / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = x / m
        centre = (p + z**2 / (2 * m)) / (1 + z**2 / m)
        half = z * np.sqrt(p * (1 - p) / m + z**2 / (4 * m**2)) / (1 + z**2 / m)
    lo = np.where(m > 0, centre - half, np.nan)
    hi = np.where(m > 0, centre + half, np.nan)
    return lo, hi


def suppress_shares(table: pd.DataFrame, by: str | Sequence[str] | None, *, count: str = "n",
                    total: str | None = "n_total", derived: Sequence[str] = ("pct",),
                    partition: str | Sequence[str] | bool | None = None,
                    threshold: int | None = None, marker: str | None = None) -> pd.DataFrame:
    """Small-number suppression of a table of counts that add up to a total within each group.

    Parameters
    ----------
    table : DataFrame
        E.g. :func:`risk_mix` (``n`` per risk group adds up to ``n_total`` within each phase).
    by : str, list of str or None
        Group columns; rows of one group are the parts of its ``total``. ``None``: each row is
        on its own (``count`` out of ``total``, e.g. uptake or fidelity).
    count, total : str
        Count column and denominator column (``total=None``: the group sum, not shown).
    derived : sequence of str
        Percentages or shares built on ``count``: hidden with it.
    partition : str, list of str, True or None
        When the rows (within each group of these columns; ``True``: all rows) add up to a total
        shown elsewhere (e.g. uptake per practice and the overall uptake), a group with exactly
        one hidden ``count`` (or ``total``) also hides its smallest other non-zero one, so the
        hidden cell cannot be recovered from the total shown elsewhere.
    threshold, marker : optional
        Default :data:`backpain_analysis.disclosure.THRESHOLD` and ``MARKER``.

    Returns
    -------
    DataFrame
        The table with hidden cells replaced by ``marker``.

    Notes
    -----
    Uses :func:`backpain_analysis.disclosure.suppression_mask`: counts from 1 to 4 are hidden,
    then within each group one more part when exactly one is hidden (so the hidden count
    cannot be recovered from the total); a total from 1 to 4 is hidden with its parts.

    Examples
    --------
    >>> t = pd.DataFrame({"phase": [1, 1, 1], "risk_group": ["low", "medium", "high"], "n": [20, 30, 3],
    ...                   "n_total": [53, 53, 53]})
    >>> suppress_shares(t.assign(pct=100 * t["n"] / 53), "phase")["n"].tolist()
    ['*', 30, '*']
    >>> u = pd.DataFrame({"practice_id": ["A", "B", "C"], "n_completed": [2, 40, 48], "n_consultations": [50, 60, 70]})
    >>> suppress_shares(u, None, count="n_completed", total="n_consultations", partition=True)["n_completed"].tolist()
    ['*', '*', 48]
    """
    from . import disclosure

    threshold = disclosure.THRESHOLD if threshold is None else threshold
    marker = disclosure.MARKER if marker is None else marker
    hide = pd.DataFrame(False, index=table.index, columns=table.columns)
    if by is None:
        cols = [count] + ([total] if total else [])
        mask = disclosure.suppression_mask(table, cols, denominators={count: total} if total else None,
                                           threshold=threshold)
        hide[cols] = mask[cols]
    else:
        keys = [by] if isinstance(by, str) else list(by)
        for _, sub in table.groupby(keys, sort=False, observed=True):
            grand = sub[total].iloc[0] if total else sub[count].sum()
            parts = pd.DataFrame({"n": [*sub[count].tolist(), grand]}, index=[*range(len(sub)), "total"])
            m = disclosure.suppression_mask(parts, ["n"], total_row="total", threshold=threshold)["n"]
            hide.loc[sub.index, count] = m.iloc[:-1].to_numpy()
            if total and m.iloc[-1]:
                hide.loc[sub.index, total] = True
    if partition is not None and partition is not False:
        groups = ([table.index] if partition is True else
                  [g.index for _, g in table.groupby([partition] if isinstance(partition, str) else list(partition),
                                                     sort=False, observed=True)])
        changed = True
        while changed:
            changed = False
            for col in [c for c in (count, total) if c]:
                if total and col == count:
                    # a hidden denominator hides its count (the share would reveal it)
                    hide[count] = hide[count] | hide[total]
                for idx in groups:
                    h = hide.loc[idx, col]
                    if h.sum() != 1:
                        continue
                    vals = pd.to_numeric(table.loc[idx, col], errors="coerce")
                    candidates = vals[(~h) & (vals > 0)]
                    if len(candidates):
                        hide.loc[candidates.idxmin(), col] = True
                        changed = True
    for d in derived:
        if d in table.columns:
            hide[d] = hide[d] | hide[count]
    return table.astype(object).mask(hide, marker) if hide.to_numpy().any() else table.copy()


def shareable_crosstab(mix: pd.DataFrame, row: str, column: str = "risk_group", *, count: str = "n",
                       threshold: int | None = None, marker: str | None = None) -> pd.DataFrame:
    """A two-way table of counts with row totals and a total row, suppressed in both directions.

    For a table whose row totals and column totals are both shown (e.g. the risk mix per
    practice: each practice's patients, and each risk group's total in the phase), a hidden cell
    could be recovered along either direction; :func:`backpain_analysis.disclosure.suppression_mask`
    with ``total_row`` and ``row_totals`` protects both.

    Parameters
    ----------
    mix : DataFrame
        Long table with ``row``, ``column`` and ``count`` columns (e.g. :func:`risk_mix`
        with ``by="practice_id"``).

    Returns
    -------
    DataFrame
        Wide: index = ``row`` values plus ``"all"``; one count column per ``column`` value,
        ``n_total``, and ``pct_<value>`` (0-100 of the row total); hidden cells show ``marker``.

    Examples
    --------
    >>> m = pd.DataFrame({"practice_id": list("AAABBBCCC"), "risk_group": ["low", "medium", "high"] * 3,
    ...                   "n": [20, 30, 3, 25, 12, 9, 40, 35, 15]})
    >>> t = shareable_crosstab(m, "practice_id")
    >>> t.loc["A", "high"], t.loc["C", ["low", "medium", "high"]].tolist(), t.loc["all", "high"]
    ('*', [40, 35, 15], 27)
    """
    from . import disclosure

    threshold = disclosure.THRESHOLD if threshold is None else threshold
    marker = disclosure.MARKER if marker is None else marker
    wide = mix.pivot_table(index=row, columns=column, values=count, aggfunc="sum", observed=False, sort=False)
    levels = [str(c) for c in wide.columns]
    wide.columns = levels
    wide = wide.fillna(0).astype(int)
    wide.loc["all"] = wide.sum()
    wide["n_total"] = wide[levels].sum(axis=1)
    for lv in levels:
        wide[f"pct_{lv}"] = 100 * wide[lv] / wide["n_total"].where(wide["n_total"] > 0)
    wide.index.name = row
    return disclosure.suppress_table(wide, [*levels, "n_total"], total_row="all", row_totals={"n_total": levels},
                                     derived={f"pct_{lv}": [lv, "n_total"] for lv in levels}, threshold=threshold,
                                     marker=marker)


# --------------------------------------------------------------------------- risk mix
def risk_mix(dataset: pd.DataFrame, by: str | Sequence[str] = "phase", risk_col: str = "risk_group") -> pd.DataFrame:
    """Counts and percentages of patients in each SBST risk group, per group of ``by``.

    Parameters
    ----------
    dataset : DataFrame
        Analysis dataset (needs ``risk_col`` and the ``by`` column(s)).
    by : str or list of str
        Grouping column(s), e.g. ``"phase"`` or ``["phase", "practice_id"]``.
    risk_col : str
        Risk group column (ordered low < medium < high).

    Returns
    -------
    DataFrame
        One row per group and risk group: the ``by`` columns, ``risk_group``, ``n`` (patients
        in that risk group), ``n_total`` (patients with a risk group in the group), ``pct``
        (0-100). Patients without a risk group are left out of ``n_total``.

    Examples
    --------
    >>> df = pd.DataFrame({"phase": [1, 1, 3, 3], "risk_group": ["low", "high", "low", "low"]})
    >>> risk_mix(df)[["phase", "risk_group", "n", "pct"]].to_dict("list")["pct"]
    [50.0, 0.0, 50.0, 100.0, 0.0, 0.0]
    """
    by = [by] if isinstance(by, str) else list(by)
    _require(dataset, [*by, risk_col], "risk_mix: analysis dataset")
    risk = pd.Categorical(dataset[risk_col].astype("object"), categories=list(RISK_GROUPS), ordered=True)
    frame = dataset[by].assign(risk_group=risk).dropna(subset=["risk_group"])
    counts = frame.groupby([*by, "risk_group"], observed=False).size().rename("n").reset_index()
    counts = counts[counts.groupby(by)["n"].transform("sum") > 0]
    counts["n_total"] = counts.groupby(by)["n"].transform("sum")
    counts["pct"] = 100 * counts["n"] / counts["n_total"]
    return counts.reset_index(drop=True)


def plot_risk_mix(mix: pd.DataFrame, by: str = "phase", *, labels: dict | None = None, title: str | None = None,
                  ax=None):
    """Stacked horizontal bars of the risk mix (percent) per group of ``by``.

    Parameters
    ----------
    mix : DataFrame
        Output of :func:`risk_mix` with one grouping column ``by``.
    by : str
        The grouping column to draw one bar for each value of.
    labels : dict, optional
        Display labels of the ``by`` values (default: phase labels for ``phase``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    labels = labels if labels is not None else (PHASE_LABELS if by == "phase" else {})
    wide = mix.pivot_table(index=by, columns="risk_group", values="pct", observed=False, aggfunc="sum")
    wide = wide.reindex(columns=list(RISK_GROUPS)).fillna(0.0)
    if ax is None:
        fig, ax = plt.subplots(figsize=(8, 0.5 * len(wide) + 1.8))
    else:
        fig = ax.figure
    left = np.zeros(len(wide))
    names = [str(labels.get(v, v)) for v in wide.index]
    for group in RISK_GROUPS:
        vals = wide[group].to_numpy()
        ax.barh(names, vals, left=left, color=RISK_COLOURS[group], label=f"{group} risk")
        for y, (lft, v) in enumerate(zip(left, vals, strict=True)):
            if v >= 6:
                ax.text(lft + v / 2, y, f"{v:.0f}%", ha="center", va="center", fontsize=8, color="white")
        left = left + vals
    ax.set_xlim(0, 100)
    ax.set_xlabel("Patients (%)")
    ax.invert_yaxis()
    ax.legend(ncols=3, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False, fontsize=9)
    ax.set_title(title or "SBST risk group mix", pad=26)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- items and scores
def sbst_item_scores(items: pd.DataFrame) -> pd.DataFrame:
    """Score the nine SBST items 0/1 (item 9: 1 if "very much" or "extremely", codes 3-4).

    Parameters
    ----------
    items : DataFrame
        Columns ``sbst_1`` .. ``sbst_9`` with the cleaned codes (items 1-8: 0/1; item 9: 0-4);
        missing answers as NaN/NA.

    Returns
    -------
    DataFrame
        Same index, columns ``sbst_1`` .. ``sbst_9`` as float 0/1 with NaN kept.

    Examples
    --------
    >>> sbst_item_scores(pd.DataFrame({f"sbst_{i}": [1] for i in range(1, 9)} | {"sbst_9": [2]}))["sbst_9"].tolist()
    [0.0]
    """
    _require(items, SBST_ITEMS, "sbst_item_scores: SBST items")
    out = items[list(SBST_ITEMS)].apply(pd.to_numeric, errors="coerce").astype(float)
    bad = out[list(SBST_ITEMS[:8])].stack().dropna()
    bad = bad[~bad.isin([0.0, 1.0])]
    item9 = out["sbst_9"].dropna()
    bad9 = item9[~item9.isin([0.0, 1.0, 2.0, 3.0, 4.0])]
    if len(bad) or len(bad9):
        where = [f"{col} = {v:g}" for (_, col), v in bad.head(3).items()] + [f"sbst_9 = {v:g}" for v in bad9.head(3)]
        raise BackpainError(f"sbst_item_scores: SBST items 1-8 must be 0/1 and item 9 0-4; found {where}")
    out["sbst_9"] = np.where(out["sbst_9"].isna(), np.nan, (out["sbst_9"] >= 3).astype(float))
    return out


def item_endorsement(items: pd.DataFrame, by: str | None = "phase") -> pd.DataFrame:
    """Share of patients endorsing each SBST item (item 9 dichotomized at "very much").

    Parameters
    ----------
    items : DataFrame
        ``sbst_1`` .. ``sbst_9`` (cleaned codes) and, if ``by`` is given, the ``by`` column.
    by : str or None
        Grouping column (default ``"phase"``); ``None`` for one overall row per item.

    Returns
    -------
    DataFrame
        Columns: ``by`` (if given), ``item``, ``label``, ``n`` (answered), ``n_endorsed``,
        ``pct`` (0-100).

    Examples
    --------
    >>> df = pd.DataFrame({f"sbst_{i}": [1, 0] for i in range(1, 9)} | {"sbst_9": [4, 1]})
    >>> item_endorsement(df, by=None)["pct"].tolist()
    [50.0, 50.0, 50.0, 50.0, 50.0, 50.0, 50.0, 50.0, 50.0]
    """
    scored = sbst_item_scores(items)
    keys = [by] if by else []
    if by:
        _require(items, [by], "item_endorsement")
        scored[by] = items[by].to_numpy()
    long = scored.melt(id_vars=keys, value_vars=list(SBST_ITEMS), var_name="item", value_name="endorsed")
    res = (long.groupby([*keys, "item"], sort=False)["endorsed"]
           .agg(n="count", n_endorsed="sum").reset_index())
    res["n_endorsed"] = res["n_endorsed"].astype(int)
    res["pct"] = 100 * res["n_endorsed"] / res["n"].where(res["n"] > 0)
    res.insert(len(keys) + 1, "label", res["item"].map(SBST_ITEM_LABELS))
    res["item"] = pd.Categorical(res["item"], categories=list(SBST_ITEMS), ordered=True)
    return res.sort_values([*keys, "item"]).reset_index(drop=True).assign(item=lambda d: d["item"].astype(str))


def plot_item_endorsement(endorsement: pd.DataFrame, by: str = "phase", *, labels: dict | None = None):
    """Grouped horizontal bars of item endorsement (%) per group of ``by``; returns the Figure."""
    import matplotlib.pyplot as plt

    labels = labels if labels is not None else (PHASE_LABELS if by == "phase" else {})
    groups = list(pd.unique(endorsement[by])) if by in endorsement else [None]
    fig, ax = plt.subplots(figsize=(8, 4.8))
    height = 0.8 / len(groups)
    ypos = np.arange(len(SBST_ITEMS))
    for k, g in enumerate(groups):
        sub = endorsement if g is None else endorsement[endorsement[by] == g]
        sub = sub.set_index("item").reindex(list(SBST_ITEMS))
        ax.barh(ypos + k * height, sub["pct"], height=height, label=str(labels.get(g, g)) if g is not None else None)
    ax.set_yticks(ypos + height * (len(groups) - 1) / 2, [SBST_ITEM_LABELS[i] for i in SBST_ITEMS])
    ax.invert_yaxis()
    ax.set_xlabel("Patients endorsing the item (%)")
    ax.set_xlim(0, 100)
    ax.set_title("SBST item endorsement at baseline")
    if groups != [None]:
        ax.legend(frameon=False, loc="lower right")
    fig.tight_layout()
    return fig


def score_distributions(dataset: pd.DataFrame, by: str = "phase") -> pd.DataFrame:
    """Counts of each SBST total (0-9) and psychosocial (0-5) score, per group of ``by``.

    Returns
    -------
    DataFrame
        Columns: ``by``, ``scale`` ("total" or "psychosocial"), ``score``, ``n``, ``pct`` (0-100
        of patients with that scale scored in the group).

    Examples
    --------
    >>> df = pd.DataFrame({"phase": [1, 1], "sbst_total_0m": [0.0, 9.0], "sbst_psychosocial_0m": [0.0, 5.0]})
    >>> score_distributions(df).query("scale == 'total' and n > 0")["score"].tolist()
    [0, 9]
    """
    _require(dataset, [by, "sbst_total_0m", "sbst_psychosocial_0m"], "score_distributions: analysis dataset")
    parts = []
    for scale, col, top in (("total", "sbst_total_0m", 9), ("psychosocial", "sbst_psychosocial_0m", 5)):
        sub = dataset[[by, col]].dropna()
        tab = pd.crosstab(sub[by], sub[col].astype(int)).reindex(columns=range(top + 1), fill_value=0)
        long = tab.stack().rename("n").reset_index().rename(columns={col: "score"})
        long.columns = [by, "score", "n"]
        long["pct"] = 100 * long["n"] / long.groupby(by)["n"].transform("sum")
        long.insert(1, "scale", scale)
        parts.append(long)
    return pd.concat(parts, ignore_index=True)


def plot_score_distributions(dist: pd.DataFrame, by: str = "phase", *, labels: dict | None = None):
    """Side-by-side bar charts of the total and psychosocial score distributions (percent)."""
    import matplotlib.pyplot as plt

    labels = labels if labels is not None else (PHASE_LABELS if by == "phase" else {})
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [10, 6]})
    groups = list(pd.unique(dist[by]))
    width = 0.8 / len(groups)
    cuts = {"total": (3.5, "Score (dashed line: low risk if total 3 or less)"),
            "psychosocial": (3.5, "Score (dashed line: high risk if 4 or more)")}
    for ax, scale, title in zip(axes, ("total", "psychosocial"), ("Total score (items 1-9)",
                                                                  "Psychosocial subscale (items 5-9)"), strict=True):
        sub = dist[dist["scale"] == scale]
        for k, g in enumerate(groups):
            s = sub[sub[by] == g]
            ax.bar(s["score"] + (k - (len(groups) - 1) / 2) * width, s["pct"], width=width, label=str(labels.get(g, g)))
        x, text = cuts[scale]
        ax.axvline(x, color="grey", ls="--", lw=1)
        ax.set_xticks(sorted(sub["score"].unique()))
        ax.set_xlabel(text)
        ax.set_ylabel("Patients (%)")
        ax.set_title(title)
    axes[0].legend(frameon=False, loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- reliability
def internal_consistency(items: pd.DataFrame, ci: float = 0.95) -> pd.DataFrame:
    """Cronbach's alpha of the SBST total (9 items) and psychosocial subscale (items 5-9).

    Parameters
    ----------
    items : DataFrame
        ``sbst_1`` .. ``sbst_9`` with cleaned codes (scored 0/1 here; item 9 dichotomized).
    ci : float
        Confidence level.

    Returns
    -------
    DataFrame
        One row per scale: ``scale`` ("total", "psychosocial"), ``n_items``, ``n`` (patients with
        every item answered: listwise deletion), ``estimate`` (alpha), ``ci_low``, ``ci_high``.

    Notes
    -----
    Alpha is ``pingouin.cronbach_alpha(nan_policy="listwise")``; the interval is Feldt's
    F-based interval (the one pingouin uses), recomputed unrounded: with ``df1 = n - 1`` and
    ``df2 = df1 (k - 1)``, ``1 - (1 - alpha) F_{a/2}`` to ``1 - (1 - alpha) F_{1-a/2}``.
    Feldt LS et al., Appl Psychol Meas 1987;11:93-103.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> latent = rng.normal(size=300)
    >>> df = pd.DataFrame({f"sbst_{i}": (latent + rng.normal(size=300) > 0).astype(int) for i in range(1, 9)})
    >>> df["sbst_9"] = np.where(latent > 0, 4, 0)
    >>> res = internal_consistency(df)
    >>> bool((res["ci_low"] < res["estimate"]).all() and (res["estimate"] < res["ci_high"]).all())
    True
    """
    import pingouin as pg

    scored = sbst_item_scores(items)
    rows = []
    for scale, cols in (("total", SBST_ITEMS), ("psychosocial", PSYCHOSOCIAL_ITEMS)):
        data = scored[list(cols)].dropna()
        n, k = data.shape
        if n < 3:
            rows.append({"scale": scale, "n_items": k, "n": n, "estimate": np.nan, "ci_low": np.nan,
                         "ci_high": np.nan})
            continue
        alpha, _ = pg.cronbach_alpha(data=data, ci=ci, nan_policy="listwise")
        df1 = n - 1
        df2 = df1 * (k - 1)
        a = 1 - ci
        lo = 1 - (1 - alpha) * stats.f.isf(a / 2, df1, df2)
        hi = 1 - (1 - alpha) * stats.f.isf(1 - a / 2, df1, df2)
        rows.append({"scale": scale, "n_items": k, "n": n, "estimate": float(alpha), "ci_low": float(lo),
                     "ci_high": float(hi)})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- discrimination
@dataclass(frozen=True)
class AUCResult:
    """Area under the ROC curve with its DeLong standard error and Wald interval."""

    estimate: float
    se: float
    ci_low: float
    ci_high: float
    p_value: float
    n_pos: int
    n_neg: int


def auc_delong(score: Sequence[float] | pd.Series, outcome: Sequence[float] | pd.Series,
               level: float = 0.95) -> AUCResult:
    """AUC of ``score`` for a binary ``outcome`` via ranks, with the DeLong variance.

    Parameters
    ----------
    score : array-like
        Higher values should go with ``outcome == 1``. Pairs with a missing score or outcome
        are dropped.
    outcome : array-like of 0/1
    level : float
        Confidence level of the interval.

    Returns
    -------
    AUCResult
        ``estimate`` (= U / (n_pos n_neg), the probability that a random positive scores higher
        than a random negative, ties one half), ``se`` (DeLong), ``ci_low``/``ci_high`` (Wald,
        clipped to [0, 1]), ``p_value`` (Wald test of AUC = 0.5), ``n_pos``, ``n_neg``.

    Notes
    -----
    Midranks give the placement values: for positive ``i``,
    ``V10_i = (R_i - R^+_i) / n_neg`` with ``R_i`` its rank among all and ``R^+_i`` among the
    positives; for negative ``j``, ``V01_j = 1 - (R_j - R^-_j) / n_pos``. The variance is
    ``var(V10) / n_pos + var(V01) / n_neg`` (DeLong ER et al., Biometrics 1988;44:837-45;
    the fast rank form of Sun X, Xu W, IEEE Signal Process Lett 2014;21:1389-93).

    Examples
    --------
    >>> r = auc_delong([1, 2, 3, 4], [0, 0, 1, 1])
    >>> r.estimate
    1.0
    >>> auc_delong([1, 3, 2, 2], [0, 1, 0, 1]).estimate
    0.875
    """
    s = pd.to_numeric(pd.Series(np.asarray(score, dtype=float)), errors="coerce")
    y = pd.Series(np.asarray(outcome, dtype=float))
    keep = s.notna() & y.notna()
    s, y = s[keep].to_numpy(), y[keep].to_numpy()
    if not np.isin(y, [0.0, 1.0]).all():
        raise ValueError(f"auc_delong: outcome must be 0/1, found e.g. {sorted(set(y) - {0.0, 1.0})[:3]}")
    pos, neg = s[y == 1], s[y == 0]
    n1, n0 = len(pos), len(neg)
    if n1 == 0 or n0 == 0:
        raise ValueError(f"auc_delong: need both outcome classes; got {n1} positives and {n0} negatives")
    r_all = stats.rankdata(np.concatenate([pos, neg]))
    v10 = (r_all[:n1] - stats.rankdata(pos)) / n0
    v01 = 1 - (r_all[n1:] - stats.rankdata(neg)) / n1
    auc = float(v10.mean())
    var = (v10.var(ddof=1) / n1 if n1 > 1 else 0.0) + (v01.var(ddof=1) / n0 if n0 > 1 else 0.0)
    se = float(np.sqrt(var))
    z = stats.norm.isf((1 - level) / 2)
    p = float(2 * stats.norm.sf(abs(auc - 0.5) / se)) if se > 0 else (0.0 if auc != 0.5 else 1.0)
    return AUCResult(auc, se, max(0.0, auc - z * se), min(1.0, auc + z * se), p, n1, n0)


def discriminative_validity(dataset: pd.DataFrame, *, disability_cut: float = 7, distress_cut: float = 8,
                            level: float = 0.95) -> pd.DataFrame:
    """AUC of the SBST total for baseline disability and of the psychosocial subscale for distress.

    Parameters
    ----------
    dataset : DataFrame
        Analysis dataset with ``sbst_total_0m``, ``sbst_psychosocial_0m``, ``rmdq_0m``,
        ``hads_anxiety_0m``, ``hads_depression_0m``.
    disability_cut : float
        Disability = ``rmdq_0m >= disability_cut`` (default 7).
    distress_cut : float
        Distress = HADS anxiety or depression ``>= distress_cut`` (default 8); missing if both
        subscales are missing, positive if either answered one reaches the cut.

    Returns
    -------
    DataFrame
        Two rows: ``measure``, ``reference``, ``n``, ``n_positive``, ``estimate`` (AUC), ``se``,
        ``ci_low``, ``ci_high``, ``p_value`` (against AUC 0.5). See :func:`auc_delong`.

    Examples
    --------
    >>> df = pd.DataFrame({"sbst_total_0m": [1, 2, 6, 8], "sbst_psychosocial_0m": [2, 1, 4, 2],
    ...                    "rmdq_0m": [2, 3, 10, 12], "hads_anxiety_0m": [3, 9, 10, np.nan],
    ...                    "hads_depression_0m": [2, 1, np.nan, np.nan]})
    >>> discriminative_validity(df)["estimate"].tolist()
    [1.0, 0.5]
    """
    _require(dataset, ["sbst_total_0m", "sbst_psychosocial_0m", "rmdq_0m", "hads_anxiety_0m", "hads_depression_0m"],
             "discriminative_validity: analysis dataset")
    disability = np.where(dataset["rmdq_0m"].isna(), np.nan, (dataset["rmdq_0m"] >= disability_cut).astype(float))
    anx, dep = dataset["hads_anxiety_0m"], dataset["hads_depression_0m"]
    high = (anx >= distress_cut) | (dep >= distress_cut)
    distress = np.where(high, 1.0, np.where(anx.isna() & dep.isna(), np.nan, 0.0))
    rows = []
    for measure, score, ref, y in (
        ("SBST total score", dataset["sbst_total_0m"], f"RMDQ >= {disability_cut:g} (disability)", disability),
        ("SBST psychosocial subscale", dataset["sbst_psychosocial_0m"],
         f"HADS anxiety or depression >= {distress_cut:g} (distress)", distress),
    ):
        r = auc_delong(score, y, level=level)
        rows.append({"measure": measure, "reference": ref, "n": r.n_pos + r.n_neg, "n_positive": r.n_pos,
                     "estimate": r.estimate, "se": r.se, "ci_low": r.ci_low, "ci_high": r.ci_high,
                     "p_value": r.p_value})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- prediction
def _poor_outcome(dataset: pd.DataFrame, definition: str, rmdq_cut: float) -> pd.Series:
    if definition == "rmdq":
        _require(dataset, ["rmdq_6m"], "predictive_validity")
        v = dataset["rmdq_6m"]
        return pd.Series(np.where(v.isna(), np.nan, (v >= rmdq_cut).astype(float)), index=dataset.index)
    if definition == "not_good_outcome":
        _require(dataset, ["good_outcome_6m"], "predictive_validity")
        return 1.0 - dataset["good_outcome_6m"].astype(float)
    raise ValueError(f"predictive_validity: poor_outcome must be 'rmdq' or 'not_good_outcome', not {definition!r}")


def predictive_validity(dataset: pd.DataFrame, *, poor_outcome: str = "rmdq", rmdq_cut: float = 7,
                        risk_col: str = "risk_group", level: float = 0.95) -> pd.DataFrame:
    """Poor 6-month outcome by baseline risk group: proportions and odds ratios against low risk.

    Parameters
    ----------
    dataset : DataFrame
        Analysis dataset (``risk_group`` and ``rmdq_6m`` or ``good_outcome_6m``).
    poor_outcome : {"rmdq", "not_good_outcome"}
        ``"rmdq"``: RMDQ at 6 months >= ``rmdq_cut``; ``"not_good_outcome"``: global change not
        "completely recovered" or "much better" (``good_outcome_6m == 0``).
    rmdq_cut : float
        Cut for ``"rmdq"`` (default 7).

    Returns
    -------
    DataFrame
        One row per risk group: ``risk_group``, ``n`` (followed up with the outcome observed),
        ``events``, ``pct`` (0-100), ``estimate`` (odds ratio against low risk; 1 for low),
        ``ci_low``, ``ci_high`` (Woolf), ``p_value`` (Wald; NaN for low). A group with a zero
        cell gets NaN odds ratio.

    Notes
    -----
    Complete cases (observed 6-month outcome): no imputation, so the proportions describe
    responders to the 6-month questionnaire.

    Examples
    --------
    >>> df = pd.DataFrame({"risk_group": ["low"] * 4 + ["high"] * 4, "rmdq_6m": [0, 0, 0, 9, 9, 9, 9, 0]})
    >>> predictive_validity(df)["estimate"].round(1).tolist()
    [1.0, 9.0]
    """
    _require(dataset, [risk_col], "predictive_validity")
    y = _poor_outcome(dataset, poor_outcome, rmdq_cut)
    risk = pd.Series(pd.Categorical(dataset[risk_col].astype("object"), categories=list(RISK_GROUPS)),
                     index=dataset.index)
    frame = pd.DataFrame({"risk_group": risk, "y": y}).dropna()
    tab = frame.groupby("risk_group", observed=False)["y"].agg(n="count", events="sum")
    tab = tab[tab["n"] > 0]
    z = stats.norm.isf((1 - level) / 2)
    rows = []
    ref = tab.loc["low"] if "low" in tab.index else None
    for group, r in tab.iterrows():
        n, e = int(r["n"]), int(r["events"])
        row = {"risk_group": str(group), "n": n, "events": e, "pct": 100 * e / n,
               "estimate": np.nan, "ci_low": np.nan, "ci_high": np.nan, "p_value": np.nan}
        if group == "low":
            row["estimate"] = 1.0
        elif ref is not None:
            a, b = e, n - e
            c, d = int(ref["events"]), int(ref["n"] - ref["events"])
            if min(a, b, c, d) > 0:
                log_or = np.log(a * d / (b * c))
                se = np.sqrt(1 / a + 1 / b + 1 / c + 1 / d)
                row.update(estimate=float(np.exp(log_or)), ci_low=float(np.exp(log_or - z * se)),
                           ci_high=float(np.exp(log_or + z * se)), p_value=float(2 * stats.norm.sf(abs(log_or) / se)))
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- uptake
def uptake(consultations: pd.DataFrame, by: str | None = "practice_id", *, phase: int | None = 3,
           level: float = 0.95, cluster: str | None = None) -> pd.DataFrame:
    """Share of eligible back-pain consultations with a completed screening tool.

    Parameters
    ----------
    consultations : DataFrame
        Cleaned ``consultations`` table (``practice_id``, ``consultation_date``, ``phase``,
        ``sbst_completed`` 0/1). Every row is an eligible consultation (the denominator).
    by : {"practice_id", "month", None} or another column
        ``"month"`` groups by calendar month of ``consultation_date`` (``YYYY-MM``); ``None``
        gives one overall row.
    phase : int or None
        Keep only this phase (default 3, the stratified-care phase); ``None`` keeps all.
    level : float
        Confidence level.
    cluster : str or None
        Column of the cluster (e.g. ``"practice_id"``): consultations of one practice are not
        independent, so the interval of each row accounts for it (see Notes). ``None``: Wilson
        intervals treating consultations as independent. Rows with fewer than 2 clusters (e.g.
        ``by="practice_id"``) keep the Wilson interval.

    Returns
    -------
    DataFrame
        Columns: the ``by`` column (if any), ``n_consultations``, ``n_completed``,
        ``estimate`` (share 0-1), ``ci_low``, ``ci_high`` (Wilson, or cluster-adjusted with
        ``cluster``). With ``cluster`` also ``n_clusters``, ``wilson_low``, ``wilson_high``
        (the interval ignoring clustering), ``design_effect`` (cluster-robust variance over
        the binomial variance, without small-sample factor) and ``method``. Consultations
        with a missing ``sbst_completed`` count as not completed (documented choice: a tool
        that was not recorded cannot have guided care).

    Notes
    -----
    Cluster-adjusted interval: the intercept-only logistic GEE with independence working
    correlation (its estimate is the overall share ``p = sum y_g / sum n_g``), with the
    Mancl-DeRouen (Biometrics 2001) bias-reduced sandwich variance and a t interval on
    ``G - 1`` df on the logit scale, back-transformed. In closed form: cluster residuals
    ``e_g = (y_g - p n_g) / (1 - n_g / N)`` (the Mancl-DeRouen leverage correction for this
    model), ``Var(logit p) = sum e_g^2 / (N p (1 - p))^2``. The design effect is
    ``sum (y_g - p n_g)^2 / (N p (1 - p))``, about ``1 + (n_bar - 1) ICC``.

    Examples
    --------
    >>> c = pd.DataFrame({"practice_id": ["A", "A", "B"], "phase": 3, "sbst_completed": [1, 0, 1],
    ...                   "consultation_date": pd.to_datetime(["2009-01-05", "2009-02-01", "2009-02-03"])})
    >>> uptake(c, by="month")[["month", "estimate"]].to_dict("list")
    {'month': ['2009-01', '2009-02'], 'estimate': [1.0, 0.5]}
    """
    _require(consultations, ["sbst_completed", *(["phase"] if phase is not None else [])],
             "uptake: consultations table")
    c = consultations
    if phase is not None:
        c = c[pd.to_numeric(c["phase"], errors="coerce") == phase]
    done = pd.to_numeric(c["sbst_completed"], errors="coerce").fillna(0).astype(float)
    if not done.isin([0.0, 1.0]).all():
        raise BackpainError(f"uptake: consultations.sbst_completed must be 0/1; found e.g. "
                            f"{done[~done.isin([0.0, 1.0])].head(3).tolist()}")
    frame = pd.DataFrame({"done": done.to_numpy()}, index=c.index)
    if cluster is not None:
        _require(c, [cluster], "uptake: consultations table")
        if c[cluster].isna().any():
            raise BackpainError(f"uptake: consultations.{cluster} (the cluster) has missing values in "
                                f"{int(c[cluster].isna().sum())} row(s)")
        frame["_cluster"] = c[cluster].to_numpy()
    keys: list[str] = []
    if by == "month":
        _require(c, ["consultation_date"], "uptake: consultations table")
        frame["month"] = pd.to_datetime(c["consultation_date"]).dt.strftime("%Y-%m").to_numpy()
        keys = ["month"]
    elif by is not None:
        _require(c, [by], "uptake: consultations table")
        frame[by] = c[by].to_numpy()
        keys = [by]
    if keys:
        res = frame.groupby(keys, sort=True)["done"].agg(n_consultations="count", n_completed="sum").reset_index()
    else:
        res = pd.DataFrame({"n_consultations": [len(frame)], "n_completed": [frame["done"].sum()]})
    res["n_completed"] = res["n_completed"].astype(int)
    res["estimate"] = res["n_completed"] / res["n_consultations"].where(res["n_consultations"] > 0)
    res["ci_low"], res["ci_high"] = wilson_interval(res["n_completed"], res["n_consultations"], level)
    if cluster is None:
        return res
    res["wilson_low"], res["wilson_high"] = res["ci_low"], res["ci_high"]
    parts = [g for _, g in frame.groupby(keys, sort=True)] if keys else [frame]
    extra = [_cluster_share_ci(g["done"].to_numpy(), g["_cluster"].to_numpy(), level) for g in parts]
    res["n_clusters"] = [e["n_clusters"] for e in extra]
    res["design_effect"] = [e["design_effect"] for e in extra]
    adjusted = np.array([e["n_clusters"] >= 2 and np.isfinite(e["ci_low"]) for e in extra])
    res.loc[adjusted, "ci_low"] = [e["ci_low"] for e, a in zip(extra, adjusted, strict=True) if a]
    res.loc[adjusted, "ci_high"] = [e["ci_high"] for e, a in zip(extra, adjusted, strict=True) if a]
    res["method"] = np.where(adjusted, f"GEE (independence, logit) with Mancl-DeRouen SE, t on clusters - 1 df "
                             f"({cluster})", "Wilson")
    return res


def _cluster_share_ci(done: np.ndarray, clusters: np.ndarray, level: float) -> dict[str, float]:
    """Cluster-robust interval of an overall share (see :func:`uptake`, Notes)."""
    codes, _ = pd.factorize(clusters)
    g = int(codes.max()) + 1 if codes.size else 0
    y = np.bincount(codes, weights=done, minlength=g)
    n = np.bincount(codes, minlength=g).astype(float)
    total = n.sum()
    nan = {"n_clusters": g, "ci_low": np.nan, "ci_high": np.nan, "design_effect": np.nan}
    if g < 2 or total == 0:
        return nan
    p = y.sum() / total
    if p <= 0 or p >= 1:
        return nan
    resid = y - p * n
    info = total * p * (1 - p)
    deff = float(np.sum(resid**2) / info)
    var_logit = float(np.sum((resid / (1 - n / total)) ** 2) / info**2)
    crit = stats.t.ppf(0.5 + level / 2, g - 1)
    centre = np.log(p / (1 - p))
    lo, hi = centre - crit * np.sqrt(var_logit), centre + crit * np.sqrt(var_logit)
    return {"n_clusters": g, "ci_low": float(1 / (1 + np.exp(-lo))), "ci_high": float(1 / (1 + np.exp(-hi))),
            "design_effect": deff}


def plot_uptake(by_practice: pd.DataFrame, by_month: pd.DataFrame, *, target: float = 0.8,
                practice_labels: dict | None = None):
    """Uptake per practice (bars with 95% CI) and per month (line), against a target line.

    Parameters
    ----------
    by_practice, by_month : DataFrame
        Outputs of :func:`uptake` with ``by="practice_id"`` and ``by="month"``.
    target : float
        Target share (0-1), drawn as a dashed line.
    practice_labels : dict, optional
        Display names of practices.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    practice_labels = practice_labels or {}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [1, 1.4]})
    names = [str(practice_labels.get(p, p)) for p in by_practice["practice_id"]]
    est = 100 * by_practice["estimate"].to_numpy()
    err = _error_bars(est, 100 * by_practice["ci_low"].to_numpy(), 100 * by_practice["ci_high"].to_numpy())
    ax1.bar(names, est, yerr=err, capsize=3, color="#377eb8")
    ax1.set_ylabel("Consultations with a completed tool (%)")
    ax1.set_xlabel("Practice")
    ax1.set_title("Uptake by practice (95% CI)")
    ax1.tick_params(axis="x", rotation=45)
    ax2.plot(by_month["month"], 100 * by_month["estimate"], marker="o", color="#377eb8", label="uptake")
    ax2.fill_between(by_month["month"], 100 * by_month["ci_low"], 100 * by_month["ci_high"], alpha=0.2,
                     color="#377eb8", label="95% CI")
    ax2.set_xlabel("Month of consultation")
    ax2.set_title("Uptake by month")
    ax2.tick_params(axis="x", rotation=60)
    for ax in (ax1, ax2):
        ax.axhline(100 * target, color="firebrick", ls="--", lw=1.2, label=f"target {100 * target:.0f}%")
        ax.set_ylim(0, 100)
    ax2.legend(frameon=False, loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- fidelity
def fidelity(dataset: pd.DataFrame, by: Sequence[str] = ("phase", "risk_group"), *, level: float = 0.95
             ) -> pd.DataFrame:
    """Share of patients whose care received matched their risk group's pathway.

    Parameters
    ----------
    dataset : DataFrame
        Analysis dataset with ``matched_care`` (0/1, NaN when unknown, e.g. no record consent)
        and the ``by`` columns.
    by : sequence of str
        Grouping columns, e.g. ``("phase", "risk_group")`` or ``("phase", "practice_id")``.

    Returns
    -------
    DataFrame
        The ``by`` columns, ``n`` (patients with ``matched_care`` known), ``n_matched``,
        ``estimate`` (share 0-1), ``ci_low``, ``ci_high`` (Wilson).

    Examples
    --------
    >>> df = pd.DataFrame({"phase": [3, 3, 3], "risk_group": ["low", "low", "high"], "matched_care": [1, 0, np.nan]})
    >>> fidelity(df)[["risk_group", "n", "estimate"]].to_dict("list")
    {'risk_group': ['low'], 'n': [2], 'estimate': [0.5]}
    """
    by = [by] if isinstance(by, str) else list(by)
    _require(dataset, [*by, "matched_care"], "fidelity: analysis dataset")
    frame = dataset[by].copy()
    if "risk_group" in by:
        frame["risk_group"] = pd.Categorical(dataset["risk_group"].astype("object"), categories=list(RISK_GROUPS),
                                             ordered=True)
    frame["matched"] = dataset["matched_care"].astype(float)
    frame = frame.dropna(subset=["matched"])
    res = frame.groupby(by, observed=True, sort=True)["matched"].agg(n="count", n_matched="sum").reset_index()
    res = res[res["n"] > 0].reset_index(drop=True)
    res["n_matched"] = res["n_matched"].astype(int)
    res["estimate"] = res["n_matched"] / res["n"]
    res["ci_low"], res["ci_high"] = wilson_interval(res["n_matched"], res["n"], level)
    if "risk_group" in res:
        res["risk_group"] = res["risk_group"].astype(str)
    return res


PATHWAY_LABELS: dict[str, str] = {
    "advice": "advice (GP care)",
    "physiotherapy": "physiotherapy",
    "psych_informed_physiotherapy": "psychologically informed physiotherapy",
}


def pathway_table(dataset: pd.DataFrame, by: str = "phase") -> pd.DataFrame:
    """Pathway received against the pathway matched to the risk group, per group of ``by``.

    Parameters
    ----------
    dataset : DataFrame
        Analysis dataset with ``matched_pathway`` and ``received_pathway`` (categoricals of
        advice < physiotherapy < psych_informed_physiotherapy; received is missing without
        record-review consent, and such patients are left out).

    Returns
    -------
    DataFrame
        One row per ``by`` value and matched pathway: ``by``, ``matched_pathway``, ``n``
        (patients with the received pathway known), then one count column per received pathway
        (``received_advice``, ``received_physiotherapy``, ``received_psych_informed_physiotherapy``)
        and ``pct_matched`` (0-100: the diagonal cell of the row over ``n``).

    Examples
    --------
    >>> df = pd.DataFrame({"phase": [3, 3, 3], "matched_pathway": ["advice", "advice", "physiotherapy"],
    ...                    "received_pathway": ["advice", "physiotherapy", None]})
    >>> pathway_table(df)[["matched_pathway", "n", "received_advice", "pct_matched"]].values.tolist()
    [['advice', 2, 1, 50.0]]
    """
    _require(dataset, [by, "matched_pathway", "received_pathway"], "pathway_table: analysis dataset")
    paths = list(PATHWAY_LABELS)
    frame = pd.DataFrame({
        by: dataset[by].to_numpy(),
        "matched_pathway": pd.Categorical(dataset["matched_pathway"].astype("object"), categories=paths),
        "received_pathway": pd.Categorical(dataset["received_pathway"].astype("object"), categories=paths),
    }).dropna()
    tab = pd.crosstab([frame[by], frame["matched_pathway"]], frame["received_pathway"], dropna=False)
    tab = tab.reindex(columns=paths, fill_value=0)
    tab = tab[tab.sum(axis=1) > 0]
    out = tab.rename(columns={p: f"received_{p}" for p in paths}).reset_index()
    out.columns.name = None
    out.insert(2, "n", tab.sum(axis=1).to_numpy())
    diag = [row[f"received_{row['matched_pathway']}"] for _, row in out.iterrows()]
    out["pct_matched"] = 100 * np.asarray(diag, dtype=float) / out["n"]
    out["matched_pathway"] = out["matched_pathway"].astype(str)
    return out


def shareable_pathway_table(table: pd.DataFrame, *, hidden_matched: pd.DataFrame | None = None,
                            threshold: int | None = None, marker: str | None = None) -> pd.DataFrame:
    """:func:`pathway_table` with small counts hidden, consistently with :func:`fidelity` tables.

    Counts from 1 to 4 are hidden; in each row (the received counts add up to ``n``) one more
    cell is hidden when exactly one is, choosing an off-diagonal cell whenever one is available:
    the diagonal (received the matched pathway) is the ``n_matched`` that a fidelity table shows,
    so hiding it here would protect nothing. ``pct_matched`` is hidden with the diagonal.

    Parameters
    ----------
    table : DataFrame
        :func:`pathway_table` output.
    hidden_matched : DataFrame, optional
        The shared :func:`fidelity` table by ``("phase", "risk_group")`` (after
        :func:`suppress_shares`): a diagonal whose ``n_matched`` is hidden there is hidden here
        too (with one more cell of its row), so the two tables together reveal nothing.

    Returns
    -------
    DataFrame
        Same columns as ``table``; hidden cells show ``marker`` (default ``"*"``).

    Examples
    --------
    >>> t = pd.DataFrame({"phase": [1], "matched_pathway": ["physiotherapy"], "n": [124], "received_advice": [83],
    ...                   "received_physiotherapy": [38], "received_psych_informed_physiotherapy": [3],
    ...                   "pct_matched": [30.6]})
    >>> shareable_pathway_table(t).iloc[0, 3:].tolist()
    ['*', 38, '*', 30.6]
    """
    from . import disclosure

    threshold = disclosure.THRESHOLD if threshold is None else threshold
    marker = disclosure.MARKER if marker is None else marker
    received = [c for c in table.columns if c.startswith("received_")]
    forced: set[tuple[Any, str]] = set()
    if hidden_matched is not None:
        to_path = dict(zip(RISK_GROUPS, PATHWAY_LABELS, strict=True))
        for _, r in hidden_matched.iterrows():
            if isinstance(r["n_matched"], str):
                forced.add((r["phase"], to_path[str(r["risk_group"])]))
    hide = pd.DataFrame(False, index=table.index, columns=table.columns)
    for i, row in table.iterrows():
        diag = f"received_{row['matched_pathway']}"
        values = {c: float(row[c]) for c in received}
        surrogate = dict(values)
        if (row.get("phase"), row["matched_pathway"]) in forced and diag in surrogate:
            surrogate[diag] = 1.0  # hidden in the fidelity table: hide here too (as a small count)
        elif diag in surrogate and surrogate[diag] >= threshold:
            surrogate[diag] = 1e12  # chosen last for secondary suppression
        cells = pd.DataFrame({"n": [*surrogate.values(), float(row["n"])]}, index=[*received, "n"])
        mask = disclosure.suppression_mask(cells, ["n"], total_row="n", threshold=threshold)["n"]
        for c in received:
            hide.loc[i, c] = bool(mask[c]) or (0 < values[c] < threshold) or (c == diag and surrogate[c] == 1.0)
        hide.loc[i, "n"] = bool(mask["n"])
        if "pct_matched" in table.columns:
            hide.loc[i, "pct_matched"] = bool(hide.loc[i, diag]) if diag in hide.columns else True
    return table.astype(object).mask(hide, marker)


def plot_fidelity(by_risk: pd.DataFrame, by_practice: pd.DataFrame | None = None, *,
                  practice_labels: dict | None = None):
    """Matched-care share by phase and risk group (and by practice in phase 3); returns the Figure.

    Parameters
    ----------
    by_risk : DataFrame
        :func:`fidelity` with ``by=("phase", "risk_group")``.
    by_practice : DataFrame, optional
        :func:`fidelity` with ``by=("phase", "practice_id")``.
    """
    import matplotlib.pyplot as plt

    practice_labels = practice_labels or {}
    ncols = 2 if by_practice is not None else 1
    fig, axes = plt.subplots(1, ncols, figsize=(5.5 * ncols, 4), squeeze=False)
    ax = axes[0, 0]
    phases = sorted(by_risk["phase"].unique())
    width = 0.8 / max(len(phases), 1)
    x = np.arange(len(RISK_GROUPS))
    for k, ph in enumerate(phases):
        sub = by_risk[by_risk["phase"] == ph].set_index("risk_group").reindex(list(RISK_GROUPS))
        est = 100 * sub["estimate"].to_numpy()
        err = _error_bars(est, 100 * sub["ci_low"].to_numpy(), 100 * sub["ci_high"].to_numpy())
        ax.bar(x + (k - (len(phases) - 1) / 2) * width, est, width=width, yerr=err, capsize=3,
               label=PHASE_LABELS.get(ph, str(ph)))
    ax.set_xticks(x, [f"{g} risk" for g in RISK_GROUPS])
    ax.set_ylabel("Received the matched pathway (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Matched care by risk group (95% CI)")
    ax.legend(frameon=False, fontsize=8, loc="upper left")
    if by_practice is not None:
        ax = axes[0, 1]
        practices = sorted(by_practice["practice_id"].unique())
        xp = np.arange(len(practices))
        for k, ph in enumerate(sorted(by_practice["phase"].unique())):
            sub = by_practice[by_practice["phase"] == ph].set_index("practice_id").reindex(practices)
            ax.bar(xp + (k - 0.5) * 0.4, 100 * sub["estimate"], width=0.4, label=PHASE_LABELS.get(ph, str(ph)))
        ax.set_xticks(xp, [str(practice_labels.get(p, p)) for p in practices], rotation=45)
        ax.set_ylim(0, 100)
        ax.set_xlabel("Practice")
        ax.set_title("Matched care by practice")
        ax.legend(frameon=False, fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# uptake over time: per practice and month, roll-out milestones, interrupted time series (issue 16)
# --------------------------------------------------------------------------------------------

def training_milestones(consultations: pd.DataFrame, *, training_dates: Any = None) -> pd.DataFrame:
    """Roll-out milestone (end of training) of every practice.

    Parameters
    ----------
    consultations : DataFrame
        Cleaned ``consultations`` (``practice_id``, ``consultation_date``, ``phase``).
    training_dates : mapping of practice_id to date, or date, optional
        When each practice's staff had been trained to give out the questionnaire. The export
        has no training dates (the data dictionary records training days per clinician, not
        when), so by default every practice's milestone is the first day of the stratified
        care phase: the first phase 3 consultation of the study (the implementation phase,
        training included, ends there).

    Returns
    -------
    DataFrame
        ``practice_id``, ``training_date`` (datetime64), ``source`` (``given`` or
        ``start of phase 3``).

    Examples
    --------
    >>> c = pd.DataFrame({"practice_id": ["A", "B"], "phase": [1, 3],
    ...                   "consultation_date": pd.to_datetime(["2008-03-01", "2009-01-05"])})
    >>> training_milestones(c)["training_date"].dt.strftime("%Y-%m-%d").tolist()
    ['2009-01-05', '2009-01-05']
    """
    _require(consultations, ["practice_id", "consultation_date", "phase"], "training_milestones: consultations")
    practices = sorted(consultations["practice_id"].astype(str).unique())
    phase = pd.to_numeric(consultations["phase"], errors="coerce")
    start3 = pd.to_datetime(consultations.loc[phase == 3, "consultation_date"]).min()
    given: dict[str, Any] = {}
    if isinstance(training_dates, dict):
        given = {str(k): v for k, v in training_dates.items()}
    elif training_dates is not None:
        given = dict.fromkeys(practices, training_dates)
    rows = [{"practice_id": p, "training_date": pd.Timestamp(given[p]) if p in given else start3,
             "source": "given" if p in given else "start of phase 3"} for p in practices]
    if any(pd.isna(r["training_date"]) for r in rows):
        raise BackpainError("training_milestones: no phase 3 consultation to place the training milestone; "
                            "give training_dates")
    return pd.DataFrame(rows, columns=["practice_id", "training_date", "source"])


def uptake_by_practice_month(consultations: pd.DataFrame, milestones: pd.DataFrame | None = None) -> pd.DataFrame:
    """Questionnaire uptake per practice and calendar month, placed against the training milestone.

    Parameters
    ----------
    consultations : DataFrame
        Cleaned ``consultations`` (``practice_id``, ``consultation_date``, ``phase``,
        ``sbst_completed``); every row is an eligible consultation.
    milestones : DataFrame, optional
        From :func:`training_milestones` (default: computed from ``consultations``).

    Returns
    -------
    DataFrame
        One row per practice and month with consultations: ``practice_id``, ``month``
        (``YYYY-MM``), ``phase`` (of most of the month's consultations), ``n_consultations``,
        ``n_completed``, ``estimate`` (share 0-1), ``months_from_training`` (whole months from
        the month of the practice's training milestone; negative before) and ``after_training``
        (1 from the milestone's month on). A missing ``sbst_completed`` counts as not completed
        (as :func:`uptake`).

    Examples
    --------
    >>> c = pd.DataFrame({"practice_id": "A", "phase": [1, 3, 3], "sbst_completed": [0, 1, 0],
    ...                   "consultation_date": pd.to_datetime(["2008-12-03", "2009-01-05", "2009-01-20"])})
    >>> uptake_by_practice_month(c)[["month", "estimate", "months_from_training"]].values.tolist()
    [['2008-12', 0.0, -1], ['2009-01', 0.5, 0]]
    """
    _require(consultations, ["practice_id", "consultation_date", "phase", "sbst_completed"],
             "uptake_by_practice_month: consultations")
    if milestones is None:
        milestones = training_milestones(consultations)
    date = pd.to_datetime(consultations["consultation_date"])
    frame = pd.DataFrame({
        "practice_id": consultations["practice_id"].astype(str).to_numpy(),
        "month": date.dt.to_period("M").to_numpy(),
        "phase": pd.to_numeric(consultations["phase"], errors="coerce").to_numpy(),
        "done": pd.to_numeric(consultations["sbst_completed"], errors="coerce").fillna(0).to_numpy(dtype=float),
    })
    res = frame.groupby(["practice_id", "month"], sort=True).agg(
        n_consultations=("done", "size"), n_completed=("done", "sum"),
        phase=("phase", lambda x: x.mode().iloc[0] if x.notna().any() else np.nan)).reset_index()
    res["n_completed"] = res["n_completed"].astype("int64")
    res["estimate"] = res["n_completed"] / res["n_consultations"]
    trained = milestones.set_index("practice_id")["training_date"].reindex(res["practice_id"])
    train_month = pd.PeriodIndex(pd.to_datetime(trained.to_numpy()), freq="M")
    month = pd.PeriodIndex(res["month"], freq="M")
    res["months_from_training"] = (month.year - train_month.year) * 12 + (month.month - train_month.month)
    res["after_training"] = (res["months_from_training"] >= 0).astype("int64")
    res["month"] = month.strftime("%Y-%m")
    return res[["practice_id", "month", "phase", "n_consultations", "n_completed", "estimate",
                "months_from_training", "after_training"]]


_ITS_TERMS = {
    "months_from_training": "trend before training (change in uptake per month)",
    "after_training": "change in level at training",
    "months_after_training": "change in trend after training (per month)",
}


def uptake_interrupted_time_series(by_month: pd.DataFrame, *, level: float = 0.95) -> pd.DataFrame:
    """Segmented regression (interrupted time series) of monthly uptake before and after training.

    Parameters
    ----------
    by_month : DataFrame
        From :func:`uptake_by_practice_month` (several practices).
    level : float
        Confidence level.

    Returns
    -------
    DataFrame
        One row per ``term`` (``months_from_training``, ``after_training``,
        ``months_after_training``) with ``label`` (plain wording), ``estimate`` (percentage
        points: per month for the trends, at the milestone for the level), ``se``, ``ci_low``,
        ``ci_high``, ``p_value``, ``df`` (practices - 1), ``method``, ``n_phase1``, ``n_phase3``
        (consultations), ``n_practices`` and ``n_months`` (practice-months).

    Notes
    -----
    Model, one row per practice-month weighted by its number of consultations (so that it is
    the consultation-level linear probability model)::

        uptake_gm = a_g + b1 t_gm + b2 after_gm + b3 (t_gm after_gm) + e_gm

    with ``t`` the months from the practice's training milestone, ``after`` 1 from the
    milestone's month, practice fixed effects ``a_g`` (each practice its own baseline), weighted
    least squares, and a cluster-robust (sandwich) variance by practice with the CR1 small-sample
    factor ``G/(G-1) (N-1)/(N-K)`` (``N`` practice-months, ``K`` parameters) and t intervals on
    ``G - 1`` df: months of one practice are correlated, so the practice is the unit of
    inference. Segmented regression: Wagner AK et al., J Clin Pharm Ther 2002;27:299-309;
    Bernal JL, Cummins S, Gasparrini A, Int J Epidemiol 2017;46:348-355. Cluster-robust
    inference with few clusters: Cameron AC, Miller DL, J Hum Resour 2015;50:317-372. A linear
    (not logistic) model keeps the estimates in percentage points and copes with months of no
    uptake before training. Checked against statsmodels WLS with ``cov_type="cluster"`` in
    ``tests/test_screening_uptake_time.py``.

    Examples
    --------
    >>> rows = [{"practice_id": p, "month": m, "phase": 3, "n_consultations": 10,
    ...          "n_completed": int(10 * min(1, max(0, 0.05 * m + (0.4 if m >= 0 else 0) + 0.02 * j))),
    ...          "months_from_training": m, "after_training": int(m >= 0)}
    ...         for j, p in enumerate("ABCD") for m in range(-4, 6)]
    >>> d = pd.DataFrame(rows).assign(estimate=lambda d: d["n_completed"] / d["n_consultations"])
    >>> uptake_interrupted_time_series(d)["term"].tolist()
    ['months_from_training', 'after_training', 'months_after_training']
    """
    _require(by_month, ["practice_id", "n_consultations", "n_completed", "months_from_training", "after_training"],
             "uptake_interrupted_time_series")
    d = by_month[by_month["n_consultations"] > 0].reset_index(drop=True)
    groups = pd.Categorical(d["practice_id"].astype(str))
    n_groups = len(groups.categories)
    if n_groups < 2:
        raise BackpainError("uptake_interrupted_time_series: needs at least 2 practices (the clusters)")
    t = d["months_from_training"].to_numpy(dtype=float)
    after = d["after_training"].to_numpy(dtype=float)
    if after.min() == after.max():
        raise BackpainError("uptake_interrupted_time_series: needs months both before and after training")
    fixed = np.eye(n_groups)[groups.codes]
    x = np.column_stack([t, after, t * after, fixed])
    y = (d["n_completed"] / d["n_consultations"]).to_numpy(dtype=float)
    w = d["n_consultations"].to_numpy(dtype=float)
    xw = x * w[:, None]
    bread = np.linalg.pinv(x.T @ xw)
    beta = bread @ (xw.T @ y)
    resid = y - x @ beta
    scores = xw * resid[:, None]
    cluster_scores = np.zeros((n_groups, x.shape[1]))
    np.add.at(cluster_scores, groups.codes, scores)
    n_obs, k = x.shape
    factor = n_groups / (n_groups - 1) * (n_obs - 1) / (n_obs - k)
    cov = factor * bread @ (cluster_scores.T @ cluster_scores) @ bread
    df = n_groups - 1
    q = stats.t.ppf(0.5 + level / 2, df)
    phase = pd.to_numeric(d.get("phase", pd.Series(np.nan, index=d.index)), errors="coerce")
    rows = []
    for i, term in enumerate(_ITS_TERMS):
        se = float(np.sqrt(cov[i, i]))
        est = float(beta[i])
        tval = est / se if se > 0 else np.nan
        rows.append({
            "term": term, "label": _ITS_TERMS[term], "estimate": 100 * est, "se": 100 * se,
            "ci_low": 100 * (est - q * se), "ci_high": 100 * (est + q * se),
            "p_value": float(2 * stats.t.sf(abs(tval), df)) if np.isfinite(tval) else np.nan, "df": float(df),
            "method": "segmented WLS, practice fixed effects, cluster-robust (CR1) SE by practice, t on G-1 df",
            "n_phase1": int(d.loc[phase == 1, "n_consultations"].sum()),
            "n_phase3": int(d.loc[phase == 3, "n_consultations"].sum()),
            "n_practices": n_groups, "n_months": n_obs,
        })
    return pd.DataFrame(rows)


def plot_uptake_over_time(by_month: pd.DataFrame, milestones: pd.DataFrame, *, target: float = 0.8,
                          min_count: int = 5, ax: Any = None) -> Any:
    """Monthly uptake: every practice (thin lines), all practices (bold), training milestones, target.

    Parameters
    ----------
    by_month : DataFrame
        From :func:`uptake_by_practice_month`.
    milestones : DataFrame
        From :func:`training_milestones` (vertical lines; one per distinct date).
    target : float
        Target uptake (0-1), a dashed line.
    min_count : int
        A practice-month with fewer consultations than this is not drawn (small numbers).
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Figure
    """
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(8, 4))
    else:
        fig = ax.figure
    month = pd.PeriodIndex(by_month["month"], freq="M").to_timestamp()
    shown = by_month.assign(_month=month)
    for _, g in shown[shown["n_consultations"] >= min_count].groupby("practice_id"):
        ax.plot(g["_month"], 100 * g["estimate"], color="#9ab", lw=0.8, alpha=0.8)
    total = shown.groupby("_month")[["n_completed", "n_consultations"]].sum()
    ax.plot(total.index, 100 * total["n_completed"] / total["n_consultations"], color="#1f5fa8", lw=2.5,
            label="all practices")
    for day in sorted(set(pd.to_datetime(milestones["training_date"]))):
        ax.axvline(day, color="#555", ls=":", lw=1)
    ax.axhline(100 * target, color="firebrick", ls="--", lw=1.2, label=f"target {100 * target:.0f}%")
    ax.plot([], [], color="#555", ls=":", label="training (milestone)")
    ax.plot([], [], color="#9ab", lw=0.8, label="each practice")
    ax.set_ylim(0, 100)
    ax.set_ylabel("consultations with the questionnaire (%)")
    ax.set_title("Questionnaire uptake by month")
    ax.legend(frameon=False, fontsize=8, loc="upper left")
    return fig
