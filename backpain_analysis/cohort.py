"""Chapter 02: the cohort (Table 1) and response bias.

:func:`table1` is the one entry point for baseline characteristics: it prepares display
columns from the analysis dataset and calls ``tableone.TableOne`` (with missing counts and
standardized mean differences). :func:`shareable_table1` applies small-number suppression
(:mod:`backpain_analysis.disclosure`) to the displayed table and :func:`export_table1` writes
it as CSV, HTML and LaTeX. :func:`response_bias` compares invited patients who responded with
those who did not (age, sex), from the cleaned ``patients`` table.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .errors import BackpainError

__all__ = [
    "EPISODE_LABELS",
    "TABLE1_LABELS",
    "baseline_means",
    "export_table1",
    "plot_response_bias",
    "plot_smd",
    "response_bias",
    "response_groups",
    "shareable_table1",
    "smd_table",
    "table1",
    "table1_frame",
]

PHASE_GROUPS: dict[int, str] = {1: "Phase 1 (usual care)", 3: "Phase 3 (stratified care)"}
RISK_GROUPS_LABELS: dict[str, str] = {"low": "Low risk", "medium": "Medium risk", "high": "High risk"}
EPISODE_LABELS: dict[str, str] = {
    "lt_1m": "< 1 month",
    "1_3m": "1-3 months",
    "3_6m": "3-6 months",
    "6m_3y": "6 months - 3 years",
    "gt_3y": "> 3 years",
}
#: Table 1 rows (analysis-dataset column -> display label), in the published order.
TABLE1_LABELS: dict[str, str] = {
    "age": "Age, years",
    "female": "Female",
    "manual_occupation": "Routine or manual occupation",
    "employed": "In paid employment",
    "time_off_work": "Time off work for back pain (of employed)",
    "rmdq_0m": "RMDQ disability (0-24)",
    "pain_nrs_0m": "Pain intensity NRS (0-10)",
    "episode_duration": "Episode duration",
    "leg_pain": "Leg pain",
    "risk_group": "SBST risk group",
}
_BINARY = ("female", "manual_occupation", "employed", "time_off_work", "leg_pain")
_CONTINUOUS = ("age", "rmdq_0m", "pain_nrs_0m")


def _require(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise BackpainError(f"{what}: column(s) {missing} missing; available: {list(df.columns)[:15]}")


def table1_frame(dataset: pd.DataFrame, by: str = "phase", columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Display-ready columns for Table 1 (binary flags as yes/no, labelled categories and groups).

    Parameters
    ----------
    dataset : DataFrame
        Analysis dataset.
    by : str
        ``"phase"`` (groups labelled "Phase 1 (usual care)", ...) or ``"risk_group"`` ("Low
        risk", ...), or any other column (used as is).
    columns : sequence of str, optional
        Analysis-dataset columns to describe (default: :data:`TABLE1_LABELS`, minus ``by``).

    Returns
    -------
    DataFrame
        The ``by`` column (as labelled ordered categories) and the described columns:
        continuous as float, binary flags as "yes"/"no" categories, ``episode_duration`` and
        ``risk_group`` as labelled ordered categories. Rows with a missing ``by`` are dropped.

    Examples
    --------
    >>> df = pd.DataFrame({"phase": [1, 3], "age": [50, 60], "female": [1.0, np.nan]})
    >>> table1_frame(df, columns=["age", "female"])["female"].tolist()
    ['yes', nan]
    """
    columns = [c for c in (columns or TABLE1_LABELS) if c != by]
    _require(dataset, [by, *columns], "table1: analysis dataset")
    out = pd.DataFrame(index=dataset.index)
    if by == "phase":
        out[by] = pd.Categorical(dataset[by].map(PHASE_GROUPS), categories=list(PHASE_GROUPS.values()), ordered=True)
    elif by == "risk_group":
        out[by] = pd.Categorical(dataset[by].astype("object").map(RISK_GROUPS_LABELS),
                                 categories=list(RISK_GROUPS_LABELS.values()), ordered=True)
    else:
        out[by] = dataset[by]
    for col in columns:
        s = dataset[col]
        if col in _BINARY:
            v = pd.to_numeric(s, errors="coerce")
            bad = v.dropna()[~v.dropna().isin([0, 1])]
            if len(bad):
                raise BackpainError(f"table1: column {col!r} must be 0/1; found e.g. {bad.head(3).tolist()}")
            out[col] = pd.Categorical(v.map({1.0: "yes", 0.0: "no"}), categories=["yes", "no"])
        elif col == "episode_duration":
            labels = s.astype("object").map(lambda x: EPISODE_LABELS.get(x, x) if pd.notna(x) else x)
            cats = [EPISODE_LABELS[c] for c in EPISODE_LABELS]
            cats += [c for c in pd.unique(labels.dropna()) if c not in cats]
            out[col] = pd.Categorical(labels, categories=cats, ordered=True)
        elif col == "risk_group":
            out[col] = pd.Categorical(s.astype("object"), categories=["low", "medium", "high"], ordered=True)
        elif col in _CONTINUOUS or pd.api.types.is_numeric_dtype(s):
            out[col] = pd.to_numeric(s, errors="coerce").astype(float)
        else:
            out[col] = s
    return out[out[by].notna()]


def table1(dataset: pd.DataFrame, by: str = "phase", *, columns: Sequence[str] | None = None,
           labels: dict[str, str] | None = None, decimals: int = 1, smd: bool = True, overall: bool = True,
           pval: bool = False):
    """Baseline characteristics by ``by`` and overall, as in the published Table 1.

    Parameters
    ----------
    dataset : DataFrame
        Analysis dataset (one row per analysed patient).
    by : str
        Grouping column: ``"phase"`` (default) or ``"risk_group"``.
    columns : sequence of str, optional
        Columns to describe (default :data:`TABLE1_LABELS`: age, sex, occupation, employment,
        time off work, RMDQ, pain, episode duration, leg pain, risk group; ``by`` is left out).
    labels : dict, optional
        Display labels overriding :data:`TABLE1_LABELS`.
    decimals : int
        Decimals of means, SDs and percentages.
    smd : bool
        Standardized mean differences between groups (pairwise when more than two groups).
    overall : bool
        Add an "Overall" column.
    pval : bool
        Add p-values (off by default: baseline differences between cohorts are described,
        not tested).

    Returns
    -------
    tableone.TableOne
        ``.tableone`` is the displayed table: rows "n", then "<label>, mean (SD)" or
        "<label>, n (%)" (binary variables show their "yes" level only), columns
        ``Missing``, ``Overall``, one per group, ``SMD (...)``.

    Notes
    -----
    Percentages are of patients with the item answered (``include_null=False``); missing
    counts are in the ``Missing`` column. Time off work is asked of employed patients only,
    so its missing count includes everyone not employed. Means (SD) for continuous items.
    Built with tableone (Pollard TJ et al., JAMIA Open 2018;1:26-31).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> df = pd.DataFrame({"phase": rng.choice([1, 3], 50), "age": rng.normal(50, 15, 50),
    ...                    "female": rng.integers(0, 2, 50).astype(float)})
    >>> t = table1(df, columns=["age", "female"])
    >>> list(t.tableone.columns.get_level_values(1))[:2]
    ['Missing', 'Overall']
    """
    from tableone import TableOne

    frame = table1_frame(dataset, by=by, columns=columns)
    cols = [c for c in frame.columns if c != by]
    names = {**TABLE1_LABELS, **(labels or {})}
    categorical = [c for c in cols if isinstance(frame[c].dtype, pd.CategoricalDtype) or frame[c].dtype == object]
    order = {c: [str(x) for x in frame[c].cat.categories] for c in categorical
             if isinstance(frame[c].dtype, pd.CategoricalDtype)}
    limit = {c: 1 for c in cols if c in _BINARY}
    with warnings.catch_warnings():
        # tableone 0.9.6 sets a partial MultiIndex row key internally (pandas 3 Pandas4Warning); nothing we pass
        # can avoid it, and the result is correct.
        warnings.filterwarnings("ignore", category=pd.errors.Pandas4Warning, module=r"tableone")
        return TableOne(frame, columns=cols, categorical=categorical, groupby=by, missing=True, smd=smd,
                        overall=overall, pval=pval, rename={c: names.get(c, c) for c in cols}, order=order,
                        limit=limit or None, decimals=decimals, include_null=False)


_COUNT_CELL = re.compile(r"^\s*(\d+)\s*\(")


def _parse_count(cell: Any) -> float:
    if isinstance(cell, int | float | np.integer | np.floating) and not pd.isna(cell):
        return float(cell)
    m = _COUNT_CELL.match(str(cell)) if isinstance(cell, str) else None
    if m:
        return float(m.group(1))
    if isinstance(cell, str) and cell.strip().isdigit():
        return float(cell.strip())
    return np.nan


def shareable_table1(t1: Any, *, threshold: int | None = None, marker: str | None = None) -> pd.DataFrame:
    """The displayed Table 1 with small counts (1-4) and cells that would reveal them hidden.

    Parameters
    ----------
    t1 : tableone.TableOne or DataFrame
        :func:`table1` output (or its ``.tableone``).
    threshold, marker : optional
        Default :data:`backpain_analysis.disclosure.THRESHOLD` (5) and ``MARKER`` ("*").

    Returns
    -------
    DataFrame
        Flat columns (``Missing``, ``Overall``, groups, SMD ...) and a flat row index
        ("variable" or "variable: level"); hidden cells show ``marker``.

    Notes
    -----
    Primary suppression: a count ("n (%)" cell, a Missing count, a group size) from 1 to
    ``threshold - 1`` is hidden with its percentage. Secondary suppression, per categorical
    variable and column: the shown levels, the "remainder" that anyone can derive
    (column n minus the shown levels: levels not shown, e.g. the "no" of a yes/no item, plus
    missing answers) and, in the Overall column, the Missing count are the parts of the column
    n; :func:`backpain_analysis.disclosure.suppression_mask` then hides one more part when
    exactly one is hidden, so no small count can be recovered by subtraction. The same is done
    across each row, where the group columns add up to the Overall column; both steps repeat
    until nothing changes.

    Examples
    --------
    >>> df = pd.DataFrame({"phase": [1] * 20 + [3] * 20, "female": [1.0] * 17 + [0.0] * 3 + [1.0] * 10 + [0.0] * 10})
    >>> shareable_table1(table1(df, columns=["female"])).loc["Female, n (%): yes", "Phase 1 (usual care)"]
    '*'
    """
    from . import disclosure

    threshold = disclosure.THRESHOLD if threshold is None else threshold
    marker = disclosure.MARKER if marker is None else marker
    raw = t1.tableone if hasattr(t1, "tableone") else t1
    table = raw.copy()
    if isinstance(table.columns, pd.MultiIndex):
        table.columns = table.columns.get_level_values(-1)
    var = [i[0] if isinstance(i, tuple) else i for i in table.index]
    lev = [i[1] if isinstance(i, tuple) else "" for i in table.index]
    table.index = [f"{v}: {lv}" if lv else v for v, lv in zip(var, lev, strict=True)]
    table = table.astype(object)
    group_cols = [c for c in table.columns if c != "Missing" and not str(c).startswith(("SMD", "P-Value", "Test"))]
    hide = pd.DataFrame(False, index=table.index, columns=table.columns)
    small = lambda x: 1 <= x < threshold  # noqa: E731

    n_row = table.index[0] if var and var[0] == "n" else None
    col_n = {c: _parse_count(table.loc[n_row, c]) if n_row is not None else np.nan for c in group_cols}
    for c in group_cols:
        if n_row is not None and small(col_n[c]):
            hide.loc[n_row, c] = True
    if "Missing" in table.columns:
        for r in table.index:
            if small(_parse_count(table.loc[r, "Missing"])):
                hide.loc[r, "Missing"] = True

    positions: dict[str, list[int]] = {}
    for k, v in enumerate(var):
        if v.endswith(", n (%)"):
            positions.setdefault(v, []).append(k)
    variables = []
    for rows in positions.values():
        labels = [table.index[k] for k in rows]
        for lbl in labels:
            for c in group_cols:
                if small(_parse_count(table.loc[lbl, c])):
                    hide.loc[lbl, c] = True
        variables.append(labels)
    parts_cols = [c for c in group_cols if c != "Overall"]
    count_rows = [lbl for labels in variables for lbl in labels] + ([n_row] if n_row is not None else [])

    changed = True
    while changed:
        changed = False
        # within a column: the levels of a variable, the derivable remainder (levels not shown, missing) and,
        # in the Overall column, the Missing count add up to the column n
        for labels in variables:
            missing_label = labels[0]  # tableone puts the variable's Missing count on its first level row
            overall_missing = (_parse_count(table.loc[missing_label, "Missing"]) if "Missing" in table.columns
                               else np.nan)
            for c in group_cols:
                if np.isnan(col_n[c]):
                    continue
                counts = [_parse_count(table.loc[lbl, c]) for lbl in labels]
                # a cell already hidden counts as small, so the group protection sees it
                parts = [1.0 if hide.loc[lbl, c] else x for lbl, x in zip(labels, counts, strict=True)]
                names = list(labels)
                if c == "Overall" and not np.isnan(overall_missing):
                    parts.append(1.0 if hide.loc[missing_label, "Missing"] else overall_missing)
                    names.append("__missing__")
                remainder = col_n[c] - np.nansum(counts) - (overall_missing if "__missing__" in names else 0)
                parts.append(remainder)
                names.append("__remainder__")
                total_hidden = n_row is not None and bool(hide.loc[n_row, c])
                sub = pd.DataFrame({"n": [*parts, 1.0 if total_hidden else col_n[c]]}, index=[*names, "__total__"])
                mask = disclosure.suppression_mask(sub, ["n"], total_row="__total__", threshold=threshold)["n"]
                for name, h in mask.items():
                    if not h:
                        continue
                    if name == "__missing__":
                        cell = (missing_label, "Missing")
                    elif name == "__total__":
                        cell = (n_row, c) if n_row is not None else None
                    elif name == "__remainder__":
                        cell = None
                    else:
                        cell = (name, c)
                    if cell is not None and not hide.loc[cell]:
                        hide.loc[cell] = True
                        changed = True
        # across a row: the group columns add up to the Overall column
        if "Overall" in group_cols and parts_cols:
            for r in count_rows:
                cols = [*parts_cols, "Overall"]
                hidden = [c for c in cols if hide.loc[r, c]]
                if len(hidden) != 1:
                    continue
                values = {c: _parse_count(table.loc[r, c]) for c in parts_cols if not hide.loc[r, c]}
                candidates = {c: v for c, v in values.items() if v > 0}
                target = min(candidates, key=candidates.get) if candidates else "Overall"
                if not hide.loc[r, target]:
                    hide.loc[r, target] = True
                    changed = True
    return table.mask(hide, marker)


def export_table1(table: pd.DataFrame, out: Any, name: str, *, caption: str | None = None,
                  footnotes: Sequence[str] = ()) -> list[Path]:
    """Write a (shareable) Table 1 as ``tables/<name>.csv`` plus its display table (html, tex, docx, json).

    The HTML, LaTeX and Word files come from the presentation layer
    (:func:`backpain_analysis.presentation.display_table` with ``kind="table1"``), so they look
    like every other table of the report and are escaped the same way; ``<name>.table.json``
    lets the report runner put the table into ``tables.docx``.

    Parameters
    ----------
    table : DataFrame
        Usually :func:`shareable_table1` output (never the raw table of a real study).
    out : ChapterOutputs
        The chapter's outputs.
    name : str
        File stem.
    caption : str, optional
        Caption of the display table.
    footnotes : sequence of str, optional
        Added after the preset's footnote.

    Returns
    -------
    list of Path
        The files written: ``.csv``, ``.html``, ``.tex``, ``.docx``, ``.table.json``.

    Examples
    --------
    >>> import tempfile
    >>> from backpain_analysis.outputs import ChapterOutputs
    >>> t = pd.DataFrame({"Phase 1": ["50 (50.0)"], "Phase 3": ["60 (60.0)"]}, index=["Female, n (%)"])
    >>> paths = export_table1(t, ChapterOutputs(tempfile.mkdtemp(), "02_cohort"), "t1", caption="Table 1")
    >>> [p.name for p in paths]
    ['t1.csv', 't1.html', 't1.tex', 't1.docx', 't1.table.json']
    """
    from .presentation import display_table

    shown = table.copy()
    shown.index.name = "characteristic"
    paths = [out.table(shown.reset_index(), name)]
    display = display_table(table, "table1", caption=caption or "", footnotes=footnotes)
    paths += display.write(out.tables_dir, name)
    return paths


def baseline_means(dataset: pd.DataFrame, column: str, by: str = "phase", level: float = 0.95) -> pd.DataFrame:
    """Mean of a baseline measure per group with a t-based confidence interval.

    Returns
    -------
    DataFrame
        Columns: ``by``, ``n``, ``estimate`` (mean), ``sd``, ``ci_low``, ``ci_high``.

    Examples
    --------
    >>> baseline_means(pd.DataFrame({"phase": [1, 1, 3], "age": [40.0, 60.0, 50.0]}), "age")["estimate"].tolist()
    [50.0, 50.0]
    """
    _require(dataset, [by, column], "baseline_means")
    g = pd.to_numeric(dataset[column], errors="coerce").groupby(dataset[by])
    res = g.agg(n="count", estimate="mean", sd="std").reset_index()
    se = res["sd"] / np.sqrt(res["n"])
    t = stats.t.isf((1 - level) / 2, np.maximum(res["n"] - 1, 1))
    res["ci_low"] = res["estimate"] - t * se
    res["ci_high"] = res["estimate"] + t * se
    return res


def response_groups(patients: pd.DataFrame) -> pd.DataFrame:
    """Age and sex of invited patients, respondents and non-participants, per phase.

    Parameters
    ----------
    patients : DataFrame
        Cleaned ``patients`` table (``phase``, ``invitation_outcome``, ``age``, ``sex``): every
        invited patient.

    Returns
    -------
    DataFrame
        One row per phase and group ("invited", "responded", "did not take part" = excluded or
        non-respondent): ``phase``, ``group``, ``n``, ``age_mean``, ``age_sd``, ``n_female``,
        ``pct_female`` (0-100 of those with sex recorded).

    Examples
    --------
    >>> p = pd.DataFrame({"phase": [1, 1, 1], "invitation_outcome": ["responded", "non_respondent", "excluded"],
    ...                   "age": [60, 40, 50], "sex": ["female", "male", "female"]})
    >>> response_groups(p)[["group", "n", "age_mean"]].values.tolist()
    [['invited', 3, 50.0], ['responded', 1, 60.0], ['did not take part', 2, 45.0]]
    """
    _require(patients, ["phase", "invitation_outcome", "age", "sex"], "response_groups: patients table")
    p = patients.assign(responded=patients["invitation_outcome"].astype("object") == "responded",
                        female=(patients["sex"].astype("object") == "female").astype(float)
                        .where(patients["sex"].notna()),
                        age=pd.to_numeric(patients["age"], errors="coerce"))
    rows = []
    for phase, sub in p.groupby("phase", sort=True):
        for group, s in (("invited", sub), ("responded", sub[sub["responded"]]),
                         ("did not take part", sub[~sub["responded"]])):
            rows.append({"phase": int(phase), "group": group, "n": len(s), "age_mean": s["age"].mean(),
                         "age_sd": s["age"].std(), "n_female": int(s["female"].sum()),
                         "pct_female": 100 * s["female"].mean() if s["female"].notna().any() else np.nan})
    return pd.DataFrame(rows)


def response_bias(patients: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Respondents minus non-participants in age and % female, per phase, with CI and p-value.

    Parameters
    ----------
    patients : DataFrame
        Cleaned ``patients`` table of every invited patient.
    level : float
        Confidence level.

    Returns
    -------
    DataFrame
        One row per phase and measure: ``phase``, ``measure`` ("age, years" or "female, %"),
        ``n_responded``, ``n_not_responded``, ``mean_responded``, ``mean_not_responded``,
        ``estimate`` (difference, respondents minus non-participants), ``ci_low``, ``ci_high``,
        ``p_value``.

    Notes
    -----
    Age: Welch two-sample t-test and interval (``scipy.stats.ttest_ind(equal_var=False)``).
    Female: difference of proportions (percentage points) with a Wald interval; p-value from
    the Pearson chi-square test without continuity correction.

    Examples
    --------
    >>> p = pd.DataFrame({"phase": 1, "invitation_outcome": ["responded"] * 3 + ["non_respondent"] * 3,
    ...                   "age": [60, 62, 64, 40, 42, 44], "sex": ["female", "male"] * 3})
    >>> float(response_bias(p).query("measure == 'age, years'")["estimate"].iloc[0])
    20.0
    """
    _require(patients, ["phase", "invitation_outcome", "age", "sex"], "response_bias: patients table")
    z = stats.norm.isf((1 - level) / 2)
    rows = []
    responded = patients["invitation_outcome"].astype("object") == "responded"
    for phase in sorted(patients["phase"].dropna().unique()):
        in_phase = patients["phase"] == phase
        a = pd.to_numeric(patients.loc[in_phase & responded, "age"], errors="coerce").dropna().to_numpy(float)
        b = pd.to_numeric(patients.loc[in_phase & ~responded, "age"], errors="coerce").dropna().to_numpy(float)
        if len(a) > 1 and len(b) > 1:
            tt = stats.ttest_ind(a, b, equal_var=False)
            ci = tt.confidence_interval(level)
            rows.append({"phase": int(phase), "measure": "age, years", "n_responded": len(a),
                         "n_not_responded": len(b), "mean_responded": a.mean(), "mean_not_responded": b.mean(),
                         "estimate": a.mean() - b.mean(), "ci_low": ci.low, "ci_high": ci.high,
                         "p_value": tt.pvalue})
        sex = patients["sex"].astype("object")
        fa = (sex[in_phase & responded].dropna() == "female").to_numpy(float)
        fb = (sex[in_phase & ~responded].dropna() == "female").to_numpy(float)
        if len(fa) and len(fb):
            pa, pb = fa.mean(), fb.mean()
            se = np.sqrt(pa * (1 - pa) / len(fa) + pb * (1 - pb) / len(fb))
            tab = np.array([[fa.sum(), len(fa) - fa.sum()], [fb.sum(), len(fb) - fb.sum()]])
            p = (stats.chi2_contingency(tab, correction=False).pvalue
                 if (tab.sum(axis=0) > 0).all() else np.nan)
            rows.append({"phase": int(phase), "measure": "female, %", "n_responded": len(fa),
                         "n_not_responded": len(fb), "mean_responded": 100 * pa, "mean_not_responded": 100 * pb,
                         "estimate": 100 * (pa - pb), "ci_low": 100 * (pa - pb - z * se),
                         "ci_high": 100 * (pa - pb + z * se), "p_value": p})
    return pd.DataFrame(rows)


def smd_table(t1: Any) -> pd.DataFrame:
    """Standardized mean differences of a two-group :func:`table1`, one row per characteristic.

    Returns
    -------
    DataFrame
        Columns ``characteristic`` (display label without the statistic) and ``smd`` (as
        computed by tableone: group 2 minus group 1; for categorical variables the
        multi-category SMD of Yang and Dalton 2012, always >= 0).

    Examples
    --------
    >>> df = pd.DataFrame({"phase": [1, 1, 3, 3], "age": [40.0, 50.0, 50.0, 60.0]})
    >>> smd_table(table1(df, columns=["age"]))["smd"].round(3).tolist()
    [1.414]
    """
    raw = t1.tableone
    cols = [c for c in raw.columns if str(c[-1] if isinstance(c, tuple) else c).startswith("SMD")]
    if len(cols) != 1:
        raise BackpainError(f"smd_table: need a two-group Table 1 with one SMD column; found {len(cols)}")
    rows = []
    for idx, v in raw[cols[0]].items():
        name = idx[0] if isinstance(idx, tuple) else idx
        num = pd.to_numeric(pd.Series([v]), errors="coerce").iloc[0]
        if name != "n" and not pd.isna(num):
            rows.append({"characteristic": re.sub(r", (mean \(SD\)|n \(%\))$", "", name), "smd": float(num)})
    return pd.DataFrame(rows)


def plot_smd(smd: pd.DataFrame, *, threshold: float = 0.1, title: str | None = None):
    """Dot plot of absolute standardized mean differences with a reference line; returns the Figure.

    Parameters
    ----------
    smd : DataFrame
        :func:`smd_table` output.
    threshold : float
        Reference line (0.1 is a common rule of thumb for a negligible imbalance).
    """
    import matplotlib.pyplot as plt

    d = smd.iloc[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.38 * len(d) + 1.4))
    ax.scatter(d["smd"].abs(), d["characteristic"], color="#377eb8", zorder=3)
    ax.axvline(threshold, color="grey", ls="--", lw=1, label=f"{threshold:g}")
    ax.set_xlabel("Absolute standardized mean difference, phase 3 vs phase 1")
    ax.set_xlim(0, max(0.3, float(d["smd"].abs().max()) * 1.15))
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title or "Baseline balance between the cohorts")
    fig.tight_layout()
    return fig


def plot_response_bias(groups: pd.DataFrame):
    """Mean age and % female of invited patients, respondents and non-participants, by phase.

    Parameters
    ----------
    groups : DataFrame
        :func:`response_groups` output.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    names = ["invited", "responded", "did not take part"]
    colours = ["#999999", "#377eb8", "#e41a1c"]
    phases = sorted(groups["phase"].unique())
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    x = np.arange(len(phases))
    for k, (g, colour) in enumerate(zip(names, colours, strict=True)):
        sub = groups[groups["group"] == g].set_index("phase").reindex(phases)
        se = pd.to_numeric(sub["age_sd"], errors="coerce") / np.sqrt(pd.to_numeric(sub["n"], errors="coerce"))
        axes[0].bar(x + (k - 1) * 0.27, sub["age_mean"], width=0.27, yerr=1.96 * se, capsize=3, color=colour,
                    label=g)
        axes[1].bar(x + (k - 1) * 0.27, pd.to_numeric(sub["pct_female"], errors="coerce"), width=0.27,
                    color=colour, label=g)
    for ax, ylabel in zip(axes, ("Mean age, years (95% CI)", "Female (%)"), strict=True):
        ax.set_xticks(x, [f"Phase {p}" for p in phases])
        ax.set_ylabel(ylabel)
    axes[1].set_ylim(0, 100)
    axes[1].legend(frameon=False, fontsize=8, loc="upper center", ncols=3)
    fig.suptitle("Who responded to the invitation?")
    fig.tight_layout()
    return fig
