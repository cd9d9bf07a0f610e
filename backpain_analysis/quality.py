"""Chapter 01: data quality and participant flow.

Summaries of validation and cleaning (the audit trail of
:func:`backpain_analysis.cleaning.clean_study`), exclusions, missingness per measure and
time point, and a CONSORT-like participant flow diagram per phase drawn with matplotlib.

Every table returned here is aggregate (no patient identifier). Counts from 1 to 4 are
still present in the returned frames: pass displayed count tables through
:mod:`backpain_analysis.disclosure` (the flow diagram does it itself for exclusion reasons,
shown as "<5").
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from . import safe_text
from .dataset import EXCLUSION_REASON_LABELS
from .errors import BackpainError

__all__ = [
    "EXCLUSION_LABELS",
    "FLOW_STEPS",
    "MEASURES",
    "TIME_POINTS",
    "cleaning_summary",
    "exclusion_summary",
    "exclusions_by_reason",
    "flow_frame",
    "missingness",
    "plot_flow",
    "plot_missingness",
    "shared_flow",
    "validation_summary",
]

TIME_POINTS: dict[str, str] = {"0m": "baseline", "2m": "2 months", "6m": "6 months"}
MEASURES: dict[str, str] = {
    "rmdq": "RMDQ disability",
    "pain_nrs": "Pain intensity (NRS)",
    "sbst_total": "SBST total score",
    "eq5d_index": "EQ-5D-3L index",
    "hads_anxiety": "HADS anxiety",
    "hads_depression": "HADS depression",
    "tsk": "Fear of movement (TSK)",
    "csq_cat": "Catastrophising (CSQ)",
    "pseq": "Pain self-efficacy (PSEQ)",
    "global_change": "Global change",
}
#: Exclusion reasons -> wording of the published flow (one definition, in the dataset module).
EXCLUSION_LABELS: dict[str, str] = EXCLUSION_REASON_LABELS
#: Steps of the participant flow, in drawing order, with their plain-words labels.
FLOW_STEPS: dict[str, str] = {
    "invited": "Invited by post",
    "excluded": "Excluded",
    "non_respondents": "Did not respond",
    "respondents": "Returned the baseline questionnaire (analysed)",
    "not_analysed": "Returned it but not analysed",
    "analysed": "Analysed",
    "consented_records": "Consented to medical record review",
    "followed_up_2m": "Followed up at 2 months",
    "followed_up_6m": "Followed up at 6 months",
    "not_yet_due_2m": "Not yet due at 2 months",
    "not_yet_due_6m": "Not yet due at 6 months",
    "lost_6m": "Not followed up at 6 months",
}
#: Items of :func:`backpain_analysis.dataset.flow_counts` -> flow steps.
_ITEM_STEPS: dict[str, str] = {
    "non-respondents": "non_respondents",
    "analysed": "analysed",
    "consented to record review": "consented_records",
    "followed up at 2 months": "followed_up_2m",
    "followed up at 6 months": "followed_up_6m",
}
PHASE_TITLES: dict[int, str] = {1: "Phase 1: usual care", 3: "Phase 3: stratified care"}


def _require(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise BackpainError(f"{what}: column(s) {missing} missing; available: {list(df.columns)[:15]}")


def _missing_cells(df: pd.DataFrame) -> int:
    return int(df.isna().to_numpy().sum())


# --------------------------------------------------------------------------- validation and cleaning
def validation_summary(clean: Any, study: Any | None = None) -> pd.DataFrame:
    """One row per study table: rows as read and after cleaning, columns, missing cells.

    Parameters
    ----------
    clean : CleanStudy or mapping of str to DataFrame
        Cleaned tables (``clean.tables``).
    study : Study, optional
        The validated raw study (``load_study``); adds ``rows_read`` (else taken from
        ``clean.input_rows`` when present).

    Returns
    -------
    DataFrame
        Columns: ``table``, ``rows_read`` (if ``study`` given), ``rows``, ``columns``,
        ``missing_cells``, ``pct_missing_cells`` (0-100 of rows x columns), ``cleaning_changes``
        (cells changed by cleaning: ``clean.summary`` if present, else the cleaning log),
        ``excluded_rows`` (rows of ``clean.exclusions`` for the table, if it names tables).

    Examples
    --------
    >>> validation_summary({"practices": pd.DataFrame({"a": [1, None]})})[["table", "rows", "pct_missing_cells"]]
           table  rows  pct_missing_cells
    0  practices     2               50.0
    """
    tables: Mapping[str, pd.DataFrame] = clean if isinstance(clean, Mapping) else clean.tables
    log = getattr(clean, "summary", None)
    if not isinstance(log, pd.DataFrame):
        log = getattr(clean, "cleaning_log", None)
    excl = getattr(clean, "exclusions", None)
    rows = []
    for name, df in tables.items():
        row: dict[str, Any] = {"table": name}
        input_rows = getattr(clean, "input_rows", None)
        if study is not None and name in getattr(study, "tables", {}):
            row["rows_read"] = len(study.tables[name])
        elif isinstance(input_rows, Mapping) and name in input_rows:
            row["rows_read"] = int(input_rows[name])
        cells = df.shape[0] * df.shape[1]
        row.update(rows=len(df), columns=df.shape[1], missing_cells=_missing_cells(df),
                   pct_missing_cells=100 * _missing_cells(df) / cells if cells else np.nan)
        if isinstance(log, pd.DataFrame) and "table" in log:
            sub = log[log["table"] == name]
            count_col = _count_column(log)
            row["cleaning_changes"] = int(sub[count_col].sum()) if count_col else len(sub)
        if isinstance(excl, pd.DataFrame) and "table" in excl:
            row["excluded_rows"] = int((excl["table"] == name).sum())
        rows.append(row)
    return pd.DataFrame(rows)


def _count_column(log: pd.DataFrame) -> str | None:
    for c in ("n_cells", "n_changed", "n_rows", "n_values", "n_changes", "count", "n"):
        if c in log.columns and pd.api.types.is_numeric_dtype(log[c]):
            return c
    return None


def cleaning_summary(cleaning_log: pd.DataFrame) -> pd.DataFrame:
    """The cleaning log summarized by rule: how many values or rows each rule changed, and where.

    Parameters
    ----------
    cleaning_log : DataFrame
        ``CleanStudy.cleaning_log``: one row per logged change or per (rule, table, column)
        batch, or ``CleanStudy.summary`` (cells per table, column and rule, including rules not
        logged cell by cell: the better input). Needs a ``rule`` column; uses ``table`` and
        ``column`` if present and a count column (the first of ``n_cells``, ``n_changed``,
        ``n_rows``, ``n_values``, ``n_changes``, ``count``, ``n``) if present, else counts rows.

    Returns
    -------
    DataFrame
        One row per rule, most frequent first: ``rule``, ``n_changes``, ``n_tables``,
        ``n_columns``, ``tables`` (comma-separated), ``example_columns`` (up to 5).

    Examples
    --------
    >>> log = pd.DataFrame({"rule": ["alias", "alias", "date"], "table": ["patients"] * 3,
    ...                     "column": ["sex", "sbst_1", "baseline_date"], "n_changed": [3, 2, 7]})
    >>> cleaning_summary(log)[["rule", "n_changes", "n_columns"]].to_dict("list")
    {'rule': ['date', 'alias'], 'n_changes': [7, 5], 'n_columns': [1, 2]}
    """
    _require(cleaning_log, ["rule"], "cleaning_summary: cleaning log")
    log = cleaning_log.copy()
    count_col = _count_column(log)
    log["_n"] = log[count_col].fillna(0) if count_col else 1
    if "table" not in log:
        log["table"] = ""
    if "column" not in log:
        log["column"] = ""
    log["_where"] = log["table"].astype(str) + "." + log["column"].astype(str)
    rows = []
    for rule, sub in log.groupby("rule", sort=False):
        tables = sorted(sub["table"].dropna().astype(str).unique())
        columns = list(dict.fromkeys(sub["column"].dropna().astype(str)))
        rows.append({"rule": rule, "n_changes": int(sub["_n"].sum()), "n_tables": len([t for t in tables if t]),
                     "n_columns": sub["_where"].nunique() if columns != [""] else 0,
                     "tables": ", ".join(t for t in tables if t),
                     "example_columns": ", ".join(c for c in columns[:5] if c)})
    out = pd.DataFrame(rows, columns=["rule", "n_changes", "n_tables", "n_columns", "tables", "example_columns"])
    return out.sort_values(["n_changes", "rule"], ascending=[False, True]).reset_index(drop=True)


def exclusion_summary(exclusions: pd.DataFrame) -> pd.DataFrame:
    """Rows set aside by cleaning (``CleanStudy.exclusions``), counted by table and reason.

    Parameters
    ----------
    exclusions : DataFrame
        Needs a ``reason`` column; ``table`` and ``stage`` are used if present. Identifiers
        (``row_key``, ``patient_id``) are never returned.

    Returns
    -------
    DataFrame
        Columns: ``table`` and ``stage`` (if present), ``reason``, ``n``.

    Examples
    --------
    >>> ex = pd.DataFrame({"table": ["followups"] * 3, "reason": ["duplicate"] * 3, "patient_id": ["a", "b", "c"]})
    >>> exclusion_summary(ex).to_dict("list")
    {'table': ['followups'], 'reason': ['duplicate'], 'n': [3]}
    """
    _require(exclusions, ["reason"], "exclusion_summary: exclusions table")
    keys = [k for k in ("table", "stage", "reason") if k in exclusions.columns]
    if exclusions.empty:
        return pd.DataFrame(columns=[*keys, "n"])
    return exclusions.groupby(keys, sort=True).size().rename("n").reset_index()


def exclusions_by_reason(patients: pd.DataFrame) -> pd.DataFrame:
    """Invited patients excluded before the baseline questionnaire, by reason and phase.

    Parameters
    ----------
    patients : DataFrame
        Cleaned ``patients`` table (``phase``, ``invitation_outcome``, ``exclusion_reason``).

    Returns
    -------
    DataFrame
        One row per reason (dictionary order, then any other): ``reason`` (plain words),
        ``n_phase1``, ``n_phase3``, ``n_total``. Excluded patients without a reason appear as
        "reason not recorded".

    Examples
    --------
    >>> p = pd.DataFrame({"phase": [1, 3, 3, 1], "invitation_outcome": ["excluded"] * 3 + ["responded"],
    ...                   "exclusion_reason": ["declined", "declined", "no_back_pain", None]})
    >>> exclusions_by_reason(p)[["reason", "n_phase1", "n_phase3"]].values.tolist()
    [['did not want to take part', 1, 1], ['no back pain', 0, 1]]
    """
    _require(patients, ["phase", "invitation_outcome", "exclusion_reason"], "exclusions_by_reason: patients table")
    ex = patients[patients["invitation_outcome"].astype("object") == "excluded"]
    reason = ex["exclusion_reason"].astype("object").where(ex["exclusion_reason"].notna(), "not_recorded")
    tab = pd.crosstab(reason, ex["phase"].astype(int)).reindex(columns=[1, 3], fill_value=0)
    order = [r for r in EXCLUSION_LABELS if r in tab.index] + sorted(r for r in tab.index if r not in EXCLUSION_LABELS)
    tab = tab.reindex(order)
    out = pd.DataFrame({
        "reason": [EXCLUSION_LABELS.get(r, "reason not recorded" if r == "not_recorded" else str(r)) for r in order],
        "n_phase1": tab[1].to_numpy(dtype=int), "n_phase3": tab[3].to_numpy(dtype=int),
    })
    out["n_total"] = out["n_phase1"] + out["n_phase3"]
    return out


# --------------------------------------------------------------------------- missingness
def missingness(dataset: pd.DataFrame, measures: Mapping[str, str] | Iterable[str] | None = None,
                time_points: Iterable[str] = ("0m", "2m", "6m"), *, by: str = "phase",
                denominator: str = "analysed") -> pd.DataFrame:
    """Percentage missing of each measure at each time point, per phase.

    Parameters
    ----------
    dataset : DataFrame
        Analysis dataset (columns ``<measure>_<time point>``, ``phase``; with
        ``denominator="returned"`` also ``followed_up_2m`` and ``followed_up_6m``).
    measures : mapping or iterable, optional
        Measure stems (and display labels); default :data:`MEASURES`. A stem/time pair that is
        not a column (e.g. ``global_change_0m``) is skipped.
    time_points : iterable of str
        Time point suffixes.
    by : str
        Grouping column (default ``"phase"``).
    denominator : {"analysed", "returned"}
        ``"analysed"`` (default): all analysed patients, so follow-up missingness includes loss
        to follow-up. ``"returned"``: at 2 and 6 months only patients who returned that
        questionnaire (item non-response within returned questionnaires).

    Returns
    -------
    DataFrame
        Columns: ``by``, ``measure`` (stem), ``label``, ``time_point``, ``n`` (denominator),
        ``n_missing``, ``pct_missing`` (0-100).

    Examples
    --------
    >>> df = pd.DataFrame({"phase": [1, 1], "rmdq_0m": [3.0, None], "rmdq_6m": [None, None]})
    >>> missingness(df, ["rmdq"])[["time_point", "pct_missing"]].values.tolist()
    [['0m', 50.0], ['6m', 100.0]]
    """
    if denominator not in ("analysed", "returned"):
        raise ValueError(f"missingness: denominator must be 'analysed' or 'returned', not {denominator!r}")
    _require(dataset, [by], "missingness: analysis dataset")
    labels = dict(MEASURES) if measures is None else (
        dict(measures) if isinstance(measures, Mapping) else {m: MEASURES.get(m, m) for m in measures})
    rows = []
    for stem, label in labels.items():
        for tp in time_points:
            col = f"{stem}_{tp}"
            if col not in dataset.columns:
                continue
            frame = dataset
            if denominator == "returned" and tp != "0m":
                flag = f"followed_up_{tp}"
                _require(dataset, [flag], "missingness(denominator='returned')")
                frame = dataset[dataset[flag] == 1]
            miss = frame[col].isna().groupby(frame[by]).agg(["size", "sum"])
            for group, r in miss.iterrows():
                n, k = int(r["size"]), int(r["sum"])
                rows.append({by: group, "measure": stem, "label": label, "time_point": tp, "n": n,
                             "n_missing": k, "pct_missing": 100 * k / n if n else np.nan})
    return pd.DataFrame(rows, columns=[by, "measure", "label", "time_point", "n", "n_missing", "pct_missing"])


def plot_missingness(miss: pd.DataFrame, by: str = "phase", *, title: str | None = None):
    """Heatmap of % missing (measure x time point), one panel per phase; returns the Figure.

    ``miss`` is :func:`missingness` output, possibly suppressed for sharing: a cell whose
    ``pct_missing`` is a marker (not a number) is drawn as "*" on a blank cell.
    """
    import matplotlib.pyplot as plt

    miss = miss.assign(hidden=pd.to_numeric(miss["pct_missing"], errors="coerce").isna() & miss["pct_missing"].notna(),
                       pct_missing=pd.to_numeric(miss["pct_missing"], errors="coerce"))
    groups = sorted(miss[by].unique())
    labels = list(dict.fromkeys(miss["label"]))
    tps = [t for t in TIME_POINTS if t in set(miss["time_point"])] + sorted(
        set(miss["time_point"]) - set(TIME_POINTS))
    fig, axes = plt.subplots(1, len(groups), figsize=(3.2 * len(groups) + 2.6, 0.42 * len(labels) + 1.6),
                             squeeze=False, sharey=True)
    im = None
    for ax, g in zip(axes[0], groups, strict=True):
        wide = (miss[miss[by] == g].pivot_table(index="label", columns="time_point", values="pct_missing")
                .reindex(index=labels, columns=tps))
        hidden = (miss[miss[by] == g].pivot_table(index="label", columns="time_point", values="hidden", aggfunc="max")
                  .reindex(index=labels, columns=tps).fillna(False).to_numpy(dtype=bool))
        im = ax.imshow(wide.to_numpy(dtype=float), vmin=0, vmax=100, cmap="Reds", aspect="auto")
        for (i, j), v in np.ndenumerate(wide.to_numpy(dtype=float)):
            text = "*" if hidden[i, j] else ("" if np.isnan(v) else f"{v:.0f}")
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if v > 60 else "black")
        ax.set_xticks(range(len(tps)), [TIME_POINTS.get(t, t) for t in tps])
        ax.set_yticks(range(len(labels)), labels)
        ax.set_title(PHASE_TITLES.get(g, str(g)), fontsize=10)
    fig.colorbar(im, ax=axes[0].tolist(), label="Missing (%)", shrink=0.8)
    fig.suptitle(title or "Missing values by measure and time point (% of analysed patients)", fontsize=11)
    return fig


# --------------------------------------------------------------------------- participant flow
def flow_frame(counts: Any, exclusion_reasons: pd.DataFrame | None = None) -> pd.DataFrame:
    """Normalize participant-flow counts to one tidy frame for :func:`plot_flow`.

    Parameters
    ----------
    counts : DataFrame or mapping
        :func:`backpain_analysis.dataset.flow_counts` output (an ``item`` column with
        ``n_phase1``/``n_phase3``; items "excluded: <reason>" give the reasons), or a long frame with columns ``phase``, ``step`` and ``n`` (and optionally
        ``reason`` for the exclusion rows), or a wide frame indexed by step with one column per
        phase (1, 3; ``"phase1"``/``"phase3"``/``"n_phase1"`` also accepted), or a mapping
        ``{phase: {step: n}}``. Steps are those of :data:`FLOW_STEPS`.
    exclusion_reasons : DataFrame, optional
        :func:`exclusions_by_reason` output, added as ``step="excluded"`` rows with a reason.

    Returns
    -------
    DataFrame
        Columns ``phase`` (int), ``step``, ``reason`` (empty string except exclusion reasons),
        ``n`` (int).

    Examples
    --------
    >>> flow_frame({1: {"invited": 10, "respondents": 6}})[["phase", "step", "n"]].values.tolist()
    [[1, 'invited', 10], [1, 'respondents', 6]]
    """
    if isinstance(counts, Mapping):
        long = pd.DataFrame([{"phase": ph, "step": st, "n": n} for ph, d in counts.items() for st, n in d.items()])
    elif isinstance(counts, pd.DataFrame) and {"phase", "step", "n"} <= set(counts.columns):
        long = counts.copy()
    elif isinstance(counts, pd.DataFrame) and "item" in counts.columns:
        parts = []
        for _, r in counts.iterrows():
            item = str(r["item"])
            step, reason = _item_step(item)
            for ph in (1, 3):
                if f"n_phase{ph}" in counts.columns:
                    parts.append({"phase": ph, "step": step, "reason": reason, "n": r[f"n_phase{ph}"]})
        long = pd.DataFrame(parts)
    elif isinstance(counts, pd.DataFrame):
        wide = counts.copy()
        rename = {}
        for c in wide.columns:
            digits = "".join(ch for ch in str(c) if ch.isdigit())
            if digits in ("1", "3"):
                rename[c] = int(digits)
        wide = wide.rename(columns=rename)[[c for c in (1, 3) if c in rename.values()]]
        long = wide.rename_axis("step").reset_index().melt(id_vars="step", var_name="phase", value_name="n")
    else:
        raise BackpainError(f"flow_frame: counts must be a DataFrame or a mapping, not {type(counts).__name__}")
    if "reason" not in long:
        long["reason"] = ""
    long["reason"] = long["reason"].astype("object").where(long["reason"].notna(), "").astype(str)
    long = long[["phase", "step", "reason", "n"]]
    if exclusion_reasons is not None and not exclusion_reasons.empty:
        extra = exclusion_reasons.melt(id_vars="reason", value_vars=["n_phase1", "n_phase3"], value_name="n")
        extra["phase"] = extra["variable"].str[-1].astype(int)
        extra["step"] = "excluded"
        long = pd.concat([long[~((long["step"] == "excluded") & (long["reason"] != ""))],
                          extra[["phase", "step", "reason", "n"]]], ignore_index=True)
    long["phase"] = long["phase"].astype(int)
    long["n"] = pd.to_numeric(long["n"], errors="coerce").fillna(0).astype(int)
    return long.reset_index(drop=True)


_NOT_ANALYSED_PREFIX = "respondents not analysed:"


def _item_step(item: str) -> tuple[str, str]:
    """(step, reason) of a :func:`backpain_analysis.dataset.flow_counts` item."""
    if item.startswith("excluded:"):
        return "excluded", item.split(":", 1)[1].strip()
    if item.startswith(_NOT_ANALYSED_PREFIX):
        return "not_analysed", item[len(_NOT_ANALYSED_PREFIX):].strip()
    for months in (2, 6):
        lost = f"not followed up at {months} months"
        if item == lost or item.startswith(lost + ":"):
            return f"lost_{months}m", item[len(lost):].lstrip(":").strip()
        if item.startswith(f"not yet due at {months} months"):
            return f"not_yet_due_{months}m", ""
    return _ITEM_STEPS.get(item, item), ""


def _small(n: int, threshold: int = 5) -> str:
    return f"<{threshold}" if 0 < n < threshold else f"{n:,}"


def _flow_hidden(main: Mapping[str, int], reasons: Sequence[int], threshold: int = 5,
                 not_analysed: Sequence[int] = (), lost_6m: Sequence[int] = (),
                 ) -> tuple[dict[str, bool], list[bool], list[bool], list[bool]]:
    """Which flow counts of one phase to hide, the same way in the flow table, the reasons table and the diagram.

    ``main``: counts by step (:data:`FLOW_STEPS` keys); ``reasons``: the exclusion-reason counts
    (they add up to ``main["excluded"]``); ``not_analysed``: the counts of respondents not
    analysed, by reason (they and ``main["analysed"]`` add up to ``main["respondents"]``).
    Invited = excluded + non-respondents + respondents, excluded = the reasons, and respondents
    = not analysed (by reason) + analysed are three groups with a shown total: in each, no lone
    hidden part and no hidden parts adding up to 1 to ``threshold - 1``; when a group's total is
    hidden, every non-zero part is hidden too (their sum would give it back), and when the
    parts force their total to be hidden, the first group is protected again. Record consent is
    hidden when small or when it leaves 1 to ``threshold - 1`` of its base (the analysed, or the
    respondents when all are analysed) out. At each follow-up time point the base is split into
    not yet due (with a data cut-off), followed up and not followed up (shown at 6 months, else
    derivable as the rest): a fourth group with a shown total. ``lost_6m``: the counts of the
    patients not followed up at 6 months by reason (they add up to ``main["lost_6m"]``), a fifth
    group protected like the exclusion reasons. A hidden base hides every non-zero part.
    Returns the hidden flags of ``main``'s steps, of the exclusion reasons, of the not-analysed
    reasons and of the loss-to-follow-up reasons.
    """
    from . import disclosure

    split = ["excluded", "non_respondents", "respondents"]
    forced: set[str] = set()
    reason_values = [int(n) for n in reasons]
    na_values = [int(n) for n in not_analysed]
    respondents = int(main.get("respondents", 0))
    analysed = int(main.get("analysed", respondents - sum(na_values)))

    def parts_of(total_step: str, parts: list[int], shown_total: int,
                 hidden_main: dict[str, bool]) -> list[bool] | None:
        """Hidden flags of the parts (and the total last); None when the total must be forced hidden."""
        if hidden_main[total_step]:
            return [n > 0 for n in parts] + [True]
        table = pd.DataFrame({"n": [*parts, shown_total]}, index=[*range(len(parts)), "total"])
        mask = disclosure.suppression_mask(table, ["n"], total_row="total", threshold=threshold)["n"].tolist()
        if mask[-1] and total_step not in forced:
            forced.add(total_step)
            return None
        return mask

    while True:
        table = pd.DataFrame({"n": [int(main.get(k, 0)) for k in split] + [int(main.get("invited", 0))]},
                             index=[*split, "invited"])
        if forced:
            # a count hidden for its parts' sake: hide it as if it were small, then protect the group
            table.loc[list(forced), "n"] = table.loc[list(forced), "n"].clip(upper=1)
        hidden_main = disclosure.suppression_mask(table, ["n"], total_row="invited", threshold=threshold)["n"].to_dict()
        hidden_reasons: list[bool] = []
        if reason_values:
            mask = parts_of("excluded", reason_values, int(main.get("excluded", sum(reason_values))), hidden_main)
            if mask is None:
                continue
            hidden_reasons = mask[:-1]
        hidden_na: list[bool] = []
        if na_values:
            mask = parts_of("respondents", [*na_values, analysed], respondents, hidden_main)
            if mask is None:
                continue
            hidden_na, hidden_main["analysed"] = mask[:-2], mask[-2]
        break
    base = "analysed" if na_values else "respondents"
    base_n = analysed if na_values else respondents
    if "consented_records" in main:
        n = int(main["consented_records"])
        hidden_main["consented_records"] = ((0 < n < threshold) or (0 < base_n - n < threshold)
                                            or bool(hidden_main.get(base)))
    hidden_lost: list[bool] = []
    for months in (2, 6):
        step = f"followed_up_{months}m"
        if step not in main:
            continue
        # base = not yet due + followed up + not followed up (the last shown at 6 months, else the rest)
        names = [s for s in (f"not_yet_due_{months}m", step) if s in main]
        values = {s: int(main[s]) for s in names}
        lost_step = f"lost_{months}m"
        values[lost_step] = max(base_n - sum(values.values()), 0)
        names.append(lost_step)
        lost_reasons = [int(n) for n in lost_6m] if months == 6 else []
        forced_lost = False
        while True:
            if hidden_main.get(base):
                group = {s: values[s] > 0 for s in names}
            else:
                shown = [min(values[s], 1) if s == lost_step and forced_lost else values[s] for s in names]
                table = pd.DataFrame({"n": [*shown, base_n]}, index=[*names, "total"])
                mask = disclosure.suppression_mask(table, ["n"], total_row="total", threshold=threshold)["n"]
                group = {s: bool(mask[s]) for s in names}
            if lost_reasons:
                if group[lost_step]:
                    flags = [n > 0 for n in lost_reasons]
                else:
                    table = pd.DataFrame({"n": [*lost_reasons, values[lost_step]]},
                                         index=[*range(len(lost_reasons)), "total"])
                    flags = disclosure.suppression_mask(table, ["n"], total_row="total",
                                                        threshold=threshold)["n"].tolist()
                    if flags[-1] and not forced_lost:
                        forced_lost = True  # the reasons need their total hidden: hide it as if small
                        continue
                    flags = flags[:-1]
                hidden_lost = flags
            break
        hidden_main.update(group)
    return hidden_main, hidden_reasons, hidden_na, hidden_lost


def shared_flow(flow: pd.DataFrame, *, threshold: int = 5, marker: str = "*") -> tuple[pd.DataFrame, pd.DataFrame]:
    """The participant flow and its exclusion reasons as shared, hidden consistently across both.

    Parameters
    ----------
    flow : DataFrame
        :func:`backpain_analysis.dataset.flow_counts` output (``item``, ``n_phase1``,
        ``pct_phase1``, ``n_phase3``, ``pct_phase3``...; ``excluded: <reason>`` items).
    threshold : int
        Counts from 1 to ``threshold - 1`` are hidden (default 5).
    marker : str
        What a hidden cell shows.

    Returns
    -------
    (DataFrame, DataFrame)
        The flow without the reason rows (same columns; a hidden count and its percentage show
        ``marker``), and the exclusion reasons: ``reason``, ``n_phase1``, ``n_phase3`` for
        reasons with someone excluded in either phase, then ``all reasons`` (= the flow's
        ``excluded``).

    Notes
    -----
    Both tables and :func:`plot_flow` apply the same per-phase rule (see ``_flow_hidden``):
    invited = excluded + non-respondents + respondents and excluded = sum of reasons, with no
    lone hidden part and no hidden parts adding up to a small number in either group; a hidden
    ``excluded`` hides its reasons. The same holds at each follow-up time point (analysed =
    not yet due + followed up + not followed up) and for the reasons for loss to follow-up at
    6 months (``not followed up at 6 months: <reason>`` rows, which stay in the flow table and
    add up to ``not followed up at 6 months``).

    Examples
    --------
    >>> flow = pd.DataFrame({"item": ["invited", "excluded", "excluded: moved", "excluded: declined", "non-respondents",
    ...                               "respondents"], "n_phase1": [100, 12, 3, 9, 30, 58], "n_phase3": [90, 0, 0, 0, 30, 60]})
    >>> main, reasons = shared_flow(flow)
    >>> reasons["n_phase1"].tolist()
    ['*', '*', 12]
    """
    _require(flow, ["item"], "shared_flow")
    flow = flow.reset_index(drop=True)
    is_reason = flow["item"].astype(str).str.startswith("excluded:")
    main = flow.loc[~is_reason].reset_index(drop=True)
    reasons = flow.loc[is_reason].reset_index(drop=True)
    reasons_out = pd.DataFrame({"reason": reasons["item"].str.split(":", n=1).str[1].str.strip()})
    main_out = main.astype(object).copy()
    parsed = main["item"].map(lambda i: _item_step(str(i)))
    steps = parsed.str[0]
    is_na = (steps == "not_analysed").to_numpy()
    is_lost = ((steps == "lost_6m") & (parsed.str[1] != "")).to_numpy()
    phase_cols = [c for c in ("n_phase1", "n_phase3") if c in flow.columns]
    keep = np.zeros(len(reasons), dtype=bool)
    for col in phase_cols:
        values = pd.to_numeric(main[col]).fillna(0).astype(int)
        counts = dict(zip(steps[~is_na & ~is_lost], values[~is_na & ~is_lost], strict=True))
        rvals = pd.to_numeric(reasons[col]).fillna(0).astype(int).to_numpy()
        keep |= rvals > 0
        hidden_main, hidden_reasons, hidden_na, hidden_lost = _flow_hidden(
            counts, rvals.tolist(), threshold, values[is_na].tolist(), values[is_lost].tolist())
        hide = steps.map(lambda st, h=hidden_main: bool(h.get(st, False))).to_numpy(dtype=bool, copy=True)
        hide[is_na] = hidden_na
        hide[is_lost] = hidden_lost
        main_out.loc[hide, col] = marker
        pct = col.replace("n_", "pct_")
        if pct in main_out.columns:
            main_out.loc[hide, pct] = marker
        reasons_out[col] = [marker if h else int(v) for v, h in zip(rvals, hidden_reasons, strict=True)]
    reasons_out = reasons_out.loc[keep].reset_index(drop=True)
    total = {"reason": "all reasons"}
    for col in phase_cols:
        total[col] = main_out.loc[main["item"] == "excluded", col].iloc[0] if (main["item"] == "excluded").any() else 0
    reasons_out = pd.concat([reasons_out, pd.DataFrame([total])], ignore_index=True)
    return main_out, reasons_out


def plot_flow(flow: pd.DataFrame, *, threshold: int = 5, title: str | None = None):
    """CONSORT-like participant flow diagram, one column per phase; returns the Figure.

    Parameters
    ----------
    flow : DataFrame
        :func:`flow_frame` output (``phase``, ``step``, ``reason``, ``n``).
    threshold : int
        Exclusion reasons with counts from 1 to ``threshold - 1`` are shown as ``"<threshold"``
        (small-number suppression, default 5); when exactly one reason is small, or the small
        ones add up to less than ``threshold``, the next smallest is shown as ``"*"`` so they
        cannot be recovered from the total. Every box follows the same rule as
        :func:`shared_flow` (invited = excluded + non-respondents + respondents), so the
        diagram hides what the flow tables hide. Reasons with no one are left
        out. The main boxes show counts as they are (a main count from 1 to 4 is also shown
        as "<5"). Patients not followed up at 6 months (``lost_6m`` rows) get a side box with
        their reasons (``reason not recorded`` when the export has none), protected the same way.

    Returns
    -------
    matplotlib.figure.Figure

    Notes
    -----
    Percentages: respondents, exclusions and non-respondents of the invited; record consent
    and follow-up of the respondents (as in the published Table 1).
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    phases = sorted(flow["phase"].unique())
    # respondents not analysed (plausibility rules) get a box of their own: one step more of height
    drop = 1.0 if ((flow["step"] == "not_analysed") & (flow["n"] > 0)).any() else 0.0
    # patients not followed up at 6 months: a side box between the 2- and 6-month boxes, which move apart for it
    lost_rows = flow[(flow["step"] == "lost_6m") & (flow["reason"] != "") & (flow["n"] > 0)]
    lost_lines = 1 + (int(lost_rows.groupby("phase").size().max()) if len(lost_rows) else 0)
    gap = max(0.0, 0.2 * lost_lines + 0.35 - 0.95) if (flow["step"] == "lost_6m").any() else 0.0
    fig, ax = plt.subplots(figsize=(6.2 * len(phases), 7.4 + 0.8 * (drop + gap)))
    ax.set_xlim(0, 6.2 * len(phases))
    ax.set_ylim(1.0 - drop - gap, 10)
    ax.axis("off")

    def box(x, y, w, h, text, fc="#eef3fb", fontsize=8.5):
        ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02", fc=fc, ec="#34495e",
                                    lw=1))
        ax.text(x, y, text, ha="center", va="center", fontsize=fontsize, wrap=True)

    def arrow(x0, y0, x1, y1):
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0), arrowprops={"arrowstyle": "->", "color": "#34495e", "lw": 1})

    for k, ph in enumerate(phases):
        f = flow[flow["phase"] == ph]
        main = f[f["reason"] == ""].groupby("step")["n"].sum()
        get = lambda s, main=main: int(main.get(s, 0))  # noqa: E731
        reasons = f[(f["step"] == "excluded") & (f["reason"] != "")]
        reasons = reasons[reasons["n"] > 0]
        invited = get("invited")
        excluded = get("excluded") or int(reasons["n"].sum())
        counts = {st: get(st) for st in FLOW_STEPS if st in main.index} | {"excluded": excluded}
        not_analysed = f[(f["step"] == "not_analysed") & (f["n"] > 0)]
        lost_why = f[(f["step"] == "lost_6m") & (f["reason"] != "")]
        hidden, hidden_reasons, hidden_na, hidden_lost = _flow_hidden(
            counts, reasons["n"].astype(int).tolist(), threshold, not_analysed["n"].astype(int).tolist(),
            lost_why["n"].astype(int).tolist())
        shown_lost = [_small(int(n), threshold) if 0 < n < threshold else ("*" if h else f"{int(n):,}")
                      for n, h in zip(lost_why["n"], hidden_lost, strict=True)]
        shown = [_small(int(n), threshold) if 0 < n < threshold else ("*" if h else f"{int(n):,}")
                 for n, h in zip(reasons["n"], hidden_reasons, strict=True)]
        shown_na = [_small(int(n), threshold) if 0 < n < threshold else ("*" if h else f"{int(n):,}")
                    for n, h in zip(not_analysed["n"], hidden_na, strict=True)]

        def _shown(step: str, n: int, hidden: dict = hidden) -> str:
            return _small(n, threshold) if 0 < n < threshold or not hidden.get(step) else "*"

        def pct_text(n: int, d: int, step: str, hidden: dict = hidden) -> str:
            return "" if not d or hidden.get(step) else f" ({100 * n / d:.0f}%)"
        resp = get("respondents")
        cx = 6.2 * k + 2.2
        side = 6.2 * k + 4.8
        ax.text(6.2 * k + 3.1, 9.75, PHASE_TITLES.get(ph, f"Phase {ph}"), ha="center", fontsize=11, weight="bold")
        box(cx, 9.0, 3.2, 0.6, f"{FLOW_STEPS['invited']}\nn = {_shown('invited', invited)}")
        lines = [f"{FLOW_STEPS['excluded']}: n = {_shown('excluded', excluded)}{pct_text(excluded, invited, 'excluded')}"]
        lines += [f"  {r}: {cell}" for r, cell in zip(reasons["reason"], shown, strict=True)]
        box(side, 7.45, 2.5, 0.2 * len(lines) + 0.25, "\n".join(lines), fc="#fbeeee", fontsize=7.5)
        nonresp = get("non_respondents")
        box(side, 5.75, 2.5, 0.6, f"{FLOW_STEPS['non_respondents']}\nn = {_shown('non_respondents', nonresp)}"
            f"{pct_text(nonresp, invited, 'non_respondents')}", fc="#fbeeee")
        arrow(cx, 8.7, cx, 5.05)
        arrow(cx, 7.45, side - 1.25, 7.45)
        arrow(cx, 5.75, side - 1.25, 5.75)
        if len(not_analysed):
            # respondents a plausibility rule left out: a side box with the reasons, analysed in the main box
            base_n = get("analysed")
            na_lines = [f"{FLOW_STEPS['not_analysed']}: n = {_shown('not_analysed_total', resp - base_n)}"
                        if not any(hidden_na) and not hidden.get("analysed") else FLOW_STEPS["not_analysed"]]
            na_lines += [f"  {textwrap.shorten(str(r), 36, placeholder='...')}: {cell}"
                         for r, cell in zip(not_analysed["reason"], shown_na, strict=True)]
            box(side, 3.75, 2.5, 0.2 * len(na_lines) + 0.25, safe_text.mathtext_text("\n".join(na_lines)),
                fc="#fbeeee", fontsize=7.5)
            arrow(cx, 3.75, side - 1.25, 3.75)
            ax.plot([cx, cx], [4.35, 4.35 - drop], color="#34495e", lw=1)
            box(cx, 4.7, 3.2, 0.65, f"Returned the baseline questionnaire\nn = {_shown('respondents', resp)}"
                f"{pct_text(resp, invited, 'respondents')}, analysed n = {_shown('analysed', base_n)}", fc="#e8f6ea")
        else:
            base_n = resp
            box(cx, 4.7, 3.2, 0.65, f"Returned the baseline questionnaire\n(analysed) n = {_shown('respondents', resp)}"
                f"{pct_text(resp, invited, 'respondents')}", fc="#e8f6ea")
        if "consented_records" in main.index:
            n = get("consented_records")
            arrow(cx, 3.75 - drop, side - 1.25, 3.75 - drop)
            box(side, 3.75 - drop, 2.5, 0.6, f"{FLOW_STEPS['consented_records']}\nn = {_shown('consented_records', n)}"
                f"{pct_text(n, base_n, 'consented_records')}",
                fc="#fdf6e3", fontsize=7.5)
        y = 4.35 - drop
        for step in ("followed_up_2m", "followed_up_6m"):
            if step not in main.index:
                continue
            extra = gap if step == "followed_up_6m" else 0.0
            arrow(cx, y, cx, y - 0.93 - extra)
            y -= 1.25 + extra
            n = get(step)
            due_step = step.replace("followed_up", "not_yet_due")
            not_due = get(due_step)
            # with a data cut-off: the rate is of those due, and those not yet due are said
            text = f"{FLOW_STEPS[step]}\nn = {_shown(step, n)}{pct_text(n, base_n - not_due, step)}"
            if due_step in main.index:
                text += f"\nnot yet due: {_shown(due_step, not_due)}"
            box(cx, y, 3.2, 0.6, text)
            if step == "followed_up_6m" and "lost_6m" in main.index:
                # CONSORT: lost to follow-up, with reasons (or a word that they were not recorded)
                lost = get("lost_6m")
                lost_lines = [f"{FLOW_STEPS['lost_6m']}: n = {_shown('lost_6m', lost)}"]
                lost_lines += [f"  {textwrap.shorten(str(r), 36, placeholder='...')}: {cell}"
                               for r, cell, n_r in zip(lost_why["reason"], shown_lost, lost_why["n"], strict=True)
                               if n_r > 0]
                # beside the arrow between the 2- and 6-month boxes, as CONSORT draws "lost to follow-up"
                y_side = y + 0.3 + (0.95 + extra) / 2
                box(side, y_side, 2.5, 0.2 * len(lost_lines) + 0.25, safe_text.mathtext_text("\n".join(lost_lines)),
                    fc="#fbeeee", fontsize=7.5)
                arrow(cx, y_side, side - 1.25, y_side)
            y -= 0.3
    fig.suptitle(title or "Participant flow", fontsize=12, y=0.99)
    fig.tight_layout()
    return fig
