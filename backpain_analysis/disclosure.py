"""Small-number suppression for shared tables (HTML reports, feedback reports, CSV outputs).

Rule: no count from 1 to 4 is shown, nor anything that would reveal one: a percentage or rate
built on it, a difference that uses it, the complement of a count within a shown denominator
(``denominator - count``), or a cell that could be recovered from a shown total by subtraction.
Zero is shown (it is not a small number of people).

:func:`suppression_mask` decides which cells to hide (primary and secondary suppression);
:func:`suppress_table` replaces them by a marker (``"*"``) ready to display or write;
:func:`small_count_cells` lists the cells that break the rule (a final check for any shared table).

Notes
-----
Primary suppression hides counts in ``[1, threshold - 1]`` (threshold 5, as in NHS Digital's
disclosure control for published health statistics). Secondary suppression then runs to a fixed
point: (1) a count is hidden when its denominator is hidden, or when ``denominator - count`` is a
small number (the complement would reveal a small group); (2) in every group of cells that sums
to a shown total (a column with a total row, a total column with its parts), a group with
exactly one hidden cell, or whose hidden cells add up to 1 to 4, also hides its smallest other
non-zero cell (or the total when no such cell remains), so neither a hidden cell nor a small
sum of hidden cells can be recovered by subtraction. Derived cells (percentages,
rates, differences) are hidden when any of their source cells in the same row is hidden.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import BackpainError
from .parallel import map_datasets

__all__ = [
    "MARKER", "THRESHOLD", "DisclosureError", "check_report", "compare_with_all", "format_findings", "is_count_column", "small_count_cells",
    "suppress_table", "suppression_mask",
]

#: Counts from 1 to THRESHOLD - 1 are never shown.
THRESHOLD = 5
#: What a suppressed cell shows.
MARKER = "*"


def _numeric(table: pd.DataFrame, column: str) -> np.ndarray:
    if column not in table.columns:
        raise KeyError(f"column {column!r} is not in the table (columns: {list(table.columns)})")
    values = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return values


def _is_small(values: np.ndarray, threshold: int) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return (values >= 1) & (values < threshold)


def _protect_group(values: np.ndarray, hidden: np.ndarray, total_pos: int | None, threshold: int = THRESHOLD,
                   *, two_way: bool = False) -> bool:
    """Hide one more cell of a group (body cells + optional total) whose hidden cells could be recovered.

    ``values``/``hidden`` cover the whole group; ``total_pos`` is the index of the total in it.
    With the total shown, ``total - visible parts`` gives the sum of the hidden parts: one
    hidden part is then recovered exactly, and a sum from 1 to ``threshold - 1`` reveals a small
    group however many cells share it. In either case the smallest other non-zero part is hidden
    too (or the total when none is left). With ``two_way`` (a table whose rows and columns both
    have totals), a total hidden by the other direction while every part is shown is their sum:
    the two smallest non-zero parts are hidden then (one alone could be recovered from the total
    shown elsewhere). Returns True when a cell was hidden.
    """
    body = [i for i in range(len(values)) if i != total_pos]
    hidden_body = [i for i in body if hidden[i]]
    if total_pos is not None and hidden[total_pos]:
        if hidden_body or not two_way:
            return False
        # a hidden total whose parts are all shown is their sum: hide the two smallest non-zero parts
        # (one alone would be the total, recovered elsewhere, minus the shown parts)
        candidates = sorted((i for i in body if np.isfinite(values[i]) and values[i] > 0), key=lambda i: (values[i], i))
        if not candidates:
            return False
        for i in candidates[:2]:
            hidden[i] = True
        return True
    if not hidden_body:
        return False
    hidden_sum = float(np.nansum([values[i] for i in hidden_body]))
    if total_pos is None:
        # the parts of a row-total group always come with their total; without one, only a lone hidden cell
        needs_more = len(hidden_body) == 1
    else:
        needs_more = len(hidden_body) == 1 or 0 < hidden_sum < threshold
    if not needs_more:
        return False
    candidates = [i for i in body if not hidden[i] and np.isfinite(values[i]) and values[i] > 0]
    if candidates:
        pick = min(candidates, key=lambda i: (values[i], i))
    elif total_pos is not None and not hidden[total_pos]:
        pick = total_pos
    else:
        return False
    hidden[pick] = True
    return True


def suppression_mask(
    table: pd.DataFrame,
    counts: Sequence[str],
    *,
    denominators: Mapping[str, str] | None = None,
    derived: Mapping[str, Sequence[str]] | None = None,
    total_row: Any = None,
    row_totals: Mapping[str, Sequence[str]] | None = None,
    threshold: int = THRESHOLD,
) -> pd.DataFrame:
    """Which cells of a table must be hidden (primary and secondary suppression).

    Parameters
    ----------
    table : DataFrame
        The table as it would be shown.
    counts : sequence of str
        Columns holding counts of people (or events).
    denominators : mapping, optional
        ``{count column: denominator column or list of them}``: a count is hidden when a
        denominator is hidden or when ``denominator - count`` is from 1 to ``threshold - 1``. The denominator may be a
        count column of the table (then it is suppressed too) or a column that is always large
        (e.g. "all practices combined"); pass it in ``counts`` when it may be small.
    derived : mapping, optional
        ``{derived column: [source columns]}``: percentages, rates or differences, hidden in a
        row when any source cell of that row is hidden.
    total_row : index label, optional
        The row holding the column totals of the count columns (the other rows are its parts).
    row_totals : mapping, optional
        ``{total column: [part columns]}`` for tables whose total is a column.
    threshold : int
        Counts from 1 to ``threshold - 1`` are hidden (default 5).

    Returns
    -------
    DataFrame
        Booleans of the same shape, index and columns as ``table``: True where the cell must
        be hidden. Columns that are neither counts nor derived are never hidden.

    Notes
    -----
    See the module docstring for the rules and their source.

    Examples
    --------
    >>> t = pd.DataFrame({"n": [3, 10, 40, 53]}, index=["high", "medium", "low", "total"])
    >>> suppression_mask(t, ["n"], total_row="total")["n"].tolist()
    [True, True, False, False]
    """
    counts = list(counts)
    denominators = {
        k: [v] if isinstance(v, str) else list(v) for k, v in (denominators or {}).items()
    }
    derived = {k: list(v) for k, v in (derived or {}).items()}
    row_totals = {k: list(v) for k, v in (row_totals or {}).items()}
    if threshold < 1:
        raise ValueError(f"threshold must be at least 1, got {threshold}")
    if table.index.has_duplicates and total_row is not None:
        raise ValueError("suppression_mask: the table index has duplicate labels; total_row needs unique labels")
    count_values = {c: _numeric(table, c) for c in counts}
    extra = set(denominators) | {c for v in denominators.values() for c in v}
    extra |= {c for v in row_totals.values() for c in v}
    extra |= set(row_totals)
    values = {**{c: _numeric(table, c) for c in extra if c not in count_values}, **count_values}
    for col in [*denominators, *row_totals, *(c for v in row_totals.values() for c in v)]:
        if col not in count_values:
            raise ValueError(f"suppression_mask: column {col!r} is used as a count but is not listed in counts")
    n = len(table)
    hidden = {c: _is_small(count_values[c], threshold) for c in counts}
    total_pos = None
    if total_row is not None:
        if total_row not in table.index:
            raise KeyError(f"total_row {total_row!r} is not in the table index (index: {list(table.index)[:10]})")
        total_pos = int(table.index.get_loc(total_row))

    changed = True
    while changed:
        changed = False
        for count, dens in denominators.items():
            new = hidden[count].copy()
            for denominator in dens:
                new |= _is_small(values[denominator] - values[count], threshold)
                if denominator in hidden:
                    new |= hidden[denominator]
            if (new != hidden[count]).any():
                hidden[count] = new
                changed = True
        if total_pos is not None:
            for c in counts:
                if _protect_group(count_values[c], hidden[c], total_pos, threshold, two_way=bool(row_totals)):
                    changed = True
        for total, parts in row_totals.items():
            group = [*parts, total]
            for i in range(n):
                vals = np.array([count_values[c][i] for c in group])
                hid = np.array([hidden[c][i] for c in group])
                if _protect_group(vals, hid, len(group) - 1, threshold, two_way=total_pos is not None):
                    for c, h in zip(group, hid, strict=True):
                        hidden[c][i] = h
                    changed = True

    mask = pd.DataFrame(False, index=table.index, columns=table.columns)
    for c in counts:
        mask[c] = hidden[c]
    for col, sources in derived.items():
        if col not in table.columns:
            raise KeyError(f"derived column {col!r} is not in the table (columns: {list(table.columns)})")
        unknown = [s for s in sources if s not in table.columns]
        if unknown:
            raise KeyError(f"derived column {col!r}: source column(s) {unknown} are not in the table")
        row_hidden = np.zeros(n, dtype=bool)
        for s in sources:
            row_hidden |= mask[s].to_numpy(dtype=bool)
        mask[col] = mask[col].to_numpy(dtype=bool) | row_hidden
    return mask


def suppress_table(
    table: pd.DataFrame,
    counts: Sequence[str],
    *,
    denominators: Mapping[str, str] | None = None,
    derived: Mapping[str, Sequence[str]] | None = None,
    total_row: Any = None,
    row_totals: Mapping[str, Sequence[str]] | None = None,
    threshold: int = THRESHOLD,
    marker: str = MARKER,
) -> pd.DataFrame:
    """The table with every cell that must be hidden replaced by ``marker``.

    Parameters
    ----------
    table, counts, denominators, derived, total_row, row_totals, threshold
        As for :func:`suppression_mask`.
    marker : str
        What hidden cells show (default ``"*"``).

    Returns
    -------
    DataFrame
        Same index and columns as ``table``. Columns with a hidden cell become ``object`` columns
        holding the original values and ``marker``; other columns are unchanged.

    Examples
    --------
    >>> t = pd.DataFrame({"group": ["low", "high"], "events": [3, 40], "n": [20, 80]})
    >>> t["pct"] = 100 * t["events"] / t["n"]
    >>> suppress_table(t, ["events", "n"], denominators={"events": "n"}, derived={"pct": ["events"]})
      group events   n   pct
    0   low      *  20     *
    1  high     40  80  50.0
    """
    mask = suppression_mask(
        table, counts, denominators=denominators, derived=derived, total_row=total_row,
        row_totals=row_totals, threshold=threshold,
    )
    out = table.copy()
    for col in table.columns:
        hide = mask[col].to_numpy(dtype=bool)
        if hide.any():
            out[col] = pd.Series(
                np.where(hide, marker, table[col].astype(object).to_numpy()), index=table.index, dtype=object
            )
    return out


def small_count_cells(
    table: pd.DataFrame, columns: Sequence[str] | None = None, *, threshold: int = THRESHOLD
) -> list[tuple[Any, str, float]]:
    """Cells holding a number from 1 to ``threshold - 1`` (what a shared count table must not show).

    Parameters
    ----------
    table : DataFrame
        A table as shared (markers and text are ignored).
    columns : sequence of str, optional
        Count columns to check (default: every column).
    threshold : int
        Default 5.

    Returns
    -------
    list of (index label, column, value)
        Empty when the table is safe to share.

    Examples
    --------
    >>> small_count_cells(pd.DataFrame({"n": [0, 3, "*", 12]}))
    [(1, 'n', 3.0)]
    """
    found = []
    for col in columns if columns is not None else table.columns:
        values = _numeric(table, col)
        for label, value, small in zip(table.index, values, _is_small(values, threshold), strict=True):
            if small:
                found.append((label, col, float(value)))
    return found


def compare_with_all(
    data: pd.DataFrame,
    unit: Any,
    by: str,
    *,
    event: str | None = None,
    value: str | None = None,
    unit_column: str = "practice_id",
    order: Sequence[Any] | None = None,
    total: bool = False,
    threshold: int = THRESHOLD,
    marker: str = MARKER,
) -> pd.DataFrame:
    """One unit (a practice) beside all units combined, by group, with small numbers suppressed.

    Parameters
    ----------
    data : DataFrame
        One row per person (or consultation), with ``unit_column`` and ``by``.
    unit : Any
        The unit shown (e.g. ``"P01"``); "all" means every row of ``data``, this unit included.
    by : str
        Grouping column (e.g. ``"phase"`` or ``"risk_group"``); one output row per group.
    event : str, optional
        A 0/1 column: the table gives the number and percentage with the event among rows where
        it is not missing.
    value : str, optional
        A numeric column: the table gives its mean among rows where it is not missing.
        With neither ``event`` nor ``value`` the table gives counts and the percentage of the
        unit's (or all) rows in each group: a distribution such as the risk mix.
    unit_column : str
        Column identifying the unit (default ``"practice_id"``).
    order : sequence, optional
        Groups in display order (default: sorted, or the categorical order).
    total : bool
        Add a ``"total"`` row (counts of all groups; then counts are also protected against
        recovery by subtraction from it).
    threshold, marker : int, str
        As for :func:`suppress_table`.

    Returns
    -------
    DataFrame
        Index: the groups (and ``"total"``). Columns: ``n_unit``, ``n_all`` (rows with a value),
        then for ``event`` ``events_unit``, ``pct_unit``, ``events_all``, ``pct_all``,
        ``difference`` (percentage points, unit minus all); for ``value`` ``mean_unit``,
        ``mean_all``, ``difference``; for a distribution ``pct_unit``, ``pct_all`` and
        ``difference``. Percentages and means are rounded to 1 and 2 decimals; cells that
        would show or reveal a count from 1 to ``threshold - 1`` hold ``marker``.

    Notes
    -----
    The counts of the other units (all minus this unit) are protected too: a count whose
    complement within "all" is small is hidden. Means of hidden groups are hidden.

    Examples
    --------
    >>> d = pd.DataFrame({"practice_id": ["A"] * 12 + ["B"] * 40, "phase": [1, 3] * 26,
    ...                   "referred": [1, 0] * 4 + [1] * 4 + [0, 1] * 20})
    >>> table = compare_with_all(d, "A", "phase", event="referred")
    >>> table[["n_unit", "events_unit", "pct_unit", "pct_all"]]  # doctest: +NORMALIZE_WHITESPACE
           n_unit events_unit pct_unit pct_all
    phase
    1           6           6    100.0    23.1
    3           6           *        *       *

    In phase 3 the practice's 2 referrals are hidden, and so is the all-practices count (22 of
    26), whose complement (4 not referred) would be a small number.
    """
    for col in [unit_column, by, *(c for c in (event, value) if c)]:
        if col not in data.columns:
            raise KeyError(f"compare_with_all: column {col!r} is not in the data (columns: {list(data.columns)[:20]})")
    if event is not None and value is not None:
        raise ValueError("compare_with_all: give event or value, not both")
    if order is None:
        groups = data[by].cat.categories if isinstance(data[by].dtype, pd.CategoricalDtype) else None
        order = list(groups) if groups is not None else sorted(data[by].dropna().unique().tolist())
    measure = event or value
    used = data if measure is None else data[data[measure].notna()]
    in_unit = used[unit_column].astype(str) == str(unit)
    rows = {}
    for group in order:
        g_all = used[used[by] == group]
        g_unit = g_all[in_unit.loc[g_all.index]]
        row: dict[str, float] = {"n_unit": len(g_unit), "n_all": len(g_all)}
        if event is not None:
            row["events_unit"] = float(pd.to_numeric(g_unit[event]).sum())
            row["events_all"] = float(pd.to_numeric(g_all[event]).sum())
        if value is not None:
            row["mean_unit"] = float(pd.to_numeric(g_unit[value]).mean()) if len(g_unit) else np.nan
            row["mean_all"] = float(pd.to_numeric(g_all[value]).mean()) if len(g_all) else np.nan
        rows[group] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = by
    if total:
        table.loc["total"] = table.sum(numeric_only=True)
        if value is not None:
            table.loc["total", ["mean_unit", "mean_all"]] = [
                float(pd.to_numeric(used.loc[in_unit, value]).mean()), float(pd.to_numeric(used[value]).mean())
            ]
    with np.errstate(invalid="ignore", divide="ignore"):
        if event is not None:
            table["pct_unit"] = (100 * table["events_unit"] / table["n_unit"]).round(1)
            table["pct_all"] = (100 * table["events_all"] / table["n_all"]).round(1)
            table["difference"] = (table["pct_unit"] - table["pct_all"]).round(1)
            counts = ["n_unit", "n_all", "events_unit", "events_all"]
            denominators = {"events_unit": ["n_unit", "events_all"], "events_all": "n_all", "n_unit": "n_all"}
            derived = {"pct_unit": ["events_unit", "n_unit"], "pct_all": ["events_all", "n_all"],
                       "difference": ["pct_unit", "pct_all"]}
            columns = ["n_unit", "events_unit", "pct_unit", "n_all", "events_all", "pct_all", "difference"]
        elif value is not None:
            table["mean_unit"] = table["mean_unit"].round(2)
            table["mean_all"] = table["mean_all"].round(2)
            table["difference"] = (table["mean_unit"] - table["mean_all"]).round(2)
            counts = ["n_unit", "n_all"]
            denominators = {"n_unit": "n_all"}
            derived = {"mean_unit": ["n_unit"], "mean_all": ["n_all"], "difference": ["mean_unit", "mean_all"]}
            columns = ["n_unit", "mean_unit", "n_all", "mean_all", "difference"]
        else:
            unit_total = float(in_unit.sum())
            all_total = float(len(used))
            table["pct_unit"] = (100 * table["n_unit"] / unit_total).round(1) if unit_total else np.nan
            table["pct_all"] = (100 * table["n_all"] / all_total).round(1) if all_total else np.nan
            table["difference"] = (table["pct_unit"] - table["pct_all"]).round(1)
            counts = ["n_unit", "n_all"]
            denominators = {"n_unit": "n_all"}
            derived = {"pct_unit": ["n_unit"], "pct_all": ["n_all"], "difference": ["pct_unit", "pct_all"]}
            columns = ["n_unit", "pct_unit", "n_all", "pct_all", "difference"]
    for c in counts:
        table[c] = table[c].astype("int64")
    table = table[columns]
    return suppress_table(table, counts, denominators=denominators, derived=derived,
                          total_row="total" if total else None, threshold=threshold, marker=marker)


# --------------------------------------------------------------------------------------------
# disclosure check of a finished report
# --------------------------------------------------------------------------------------------
class DisclosureError(BackpainError):
    """A shared output shows a small count or lets a hidden one be recovered; ``findings`` lists them."""

    def __init__(self, message: str, findings: pd.DataFrame) -> None:
        super().__init__(message)
        self.findings = findings


#: Column names that hold counts of people (or events) in the package's outputs.
COUNT_COLUMN_NAMES = frozenset({
    "n", "count", "counts", "events", "respondents", "rows", "rows_read", "excluded_rows",
    "low", "medium", "high",  # patients per STarT Back risk group (the risk-mix crosstabs)
})
#: ``n_*``, ``events_*``, ``count_*``, ``followed_up_*``: counts, except these (numbers of things, not people).
NOT_COUNT_COLUMNS = frozenset({
    "n_items", "n_tables", "n_columns", "n_imputations", "n_boot", "n_iter", "n_replicates", "n_practices_shown",
})
_COUNT_PREFIXES = ("n_", "events_", "count_", "followed_up_", "received_")
#: Row labels of a total (the other rows of its group are its parts).
TOTAL_LABELS = frozenset({"all", "total", "all reasons", "overall", "all practices", "all patients", "all clinicians"})
#: Markers of a hidden cell in a shared table.
HIDDEN_MARKERS = frozenset({MARKER, f"<{THRESHOLD}"})
# "123 (45.6)" or "123 (45.6%)": a count with its percentage (tableone). Only a single number in the
# brackets: "3 (-448 to 455)" is an estimate with its CI (a net benefit of 3 GBP), not a count
_N_PCT = r"^\s*(\d+)\s*\(\s*\d+(?:\.\d+)?\s*%?\s*\)\s*$"
FINDING_COLUMNS = ["chapter", "source", "row", "column", "value", "rule", "detail"]
_COUNT_UNITS = frozenset({"patients", "clinicians", "people", "consultations", "practices", "persons"})


def is_count_column(name: Any) -> bool:
    """Whether a column of a shared table holds counts, by the package's naming conventions.

    Counts are ``n``, ``count``, ``events``, ``respondents``, ``rows``, ``rows_read``,
    ``excluded_rows``, the risk groups ``low``, ``medium`` and ``high`` (patients per group) and
    names starting ``n_``, ``events_``, ``count_``, ``followed_up_`` or ``received_`` (patients per
    pathway received)
    (except :data:`NOT_COUNT_COLUMNS`). Everything else (ages, scores, years, means, percentages,
    estimates) is not a count.

    Examples
    --------
    >>> [is_count_column(c) for c in ["n", "n_phase1", "events_unit", "age_mean", "n_items", "pct", "year"]]
    [True, True, True, False, False, False, False]
    >>> [is_count_column(c) for c in ["high", "received_advice", "ci_high", "pct_high"]]
    [True, True, False, False]
    """
    text = str(name).strip().lower()
    if text in NOT_COUNT_COLUMNS:
        return False
    return text in COUNT_COLUMN_NAMES or text.startswith(_COUNT_PREFIXES)


def _cell_count(value: Any) -> float:
    """The count a cell shows (NaN for text, markers and blanks); ``"12 (40.0)"`` shows 12."""
    import re

    if value is None or (isinstance(value, float) and np.isnan(value)):
        return np.nan
    if isinstance(value, int | float | np.integer | np.floating):
        return float(value)
    text = str(value).strip().replace(",", "")
    try:
        return float(text)
    except ValueError:
        match = re.match(_N_PCT, text)
        return float(match.group(1)) if match else np.nan


def _is_hidden(value: Any) -> bool:
    return isinstance(value, str) and value.strip() in HIDDEN_MARKERS


def _key_columns(table: pd.DataFrame, counts: Sequence[str]) -> list[str]:
    keys = []
    for col in table.columns:
        if col in counts:
            continue
        values = table[col].dropna()
        if str(col).lower() in ("phase", "time_point", "risk_group", "month", "practice_id", "profession"):
            keys.append(col)
        elif len(values) and not values.map(lambda v: _is_hidden(v) or not np.isnan(_cell_count(v))).all():
            keys.append(col)  # text labels (not numbers, not markers)
    return keys


def _table_findings(table: pd.DataFrame, source: str, chapter: str, threshold: int) -> list[dict[str, Any]]:
    """Small counts, small complements and recoverable hidden cells within one table."""
    import re

    found: list[dict[str, Any]] = []
    table = table.reset_index(drop=True)
    counts = [c for c in table.columns if is_count_column(c)]
    # columns of "n (%)" cells (tableone) are counts too
    for col in table.columns:
        if col not in counts and table[col].map(lambda v: isinstance(v, str) and re.match(_N_PCT, v) is not None).any():
            counts.append(col)

    def add(i: Any, col: Any, value: Any, rule: str, detail: str) -> None:
        label = " / ".join(str(table[k].iloc[i]) for k in keys) if keys and i is not None else i
        found.append({"chapter": chapter, "source": source, "row": label, "column": str(col), "value": value,
                      "rule": rule, "detail": detail})

    keys = _key_columns(table, counts)
    values = {c: table[c].map(_cell_count).to_numpy(dtype=float) for c in counts}
    hidden = {c: table[c].map(_is_hidden).to_numpy(dtype=bool) for c in counts}
    for c in counts:
        for i in np.flatnonzero(_is_small(values[c], threshold)):
            add(i, c, values[c][i], "small count", f"a count from 1 to {threshold - 1} is shown")
    # complements: denominator - count within a row
    pairs = []
    for c in counts:
        name = str(c).lower()
        for prefix in ("events_", "n_"):
            if name.startswith(prefix) and name != "n_" + name[len(prefix):] and f"n_{name[len(prefix):]}" in counts:
                pairs.append((c, f"n_{name[len(prefix):]}"))
        if name == "n_unit" and "n_all" in counts:
            pairs.append((c, "n_all"))
    for denominator in ("n_total", "n", "n_clinicians", "n_consultations", "respondents"):
        if denominator in counts:
            pairs += [(c, denominator) for c in counts if c != denominator and not str(c).startswith("n_phase")
                      and (c, "n_total") not in pairs and c not in ("n_total", "n_all", "n_clinicians")
                      and not (denominator == "n" and "n_total" in counts)]
            break
    for part, whole in dict.fromkeys(pairs):
        rest = values[whole] - values[part]
        for i in np.flatnonzero(_is_small(rest, threshold) & ~_is_small(values[part], threshold)):
            add(i, part, values[part][i], "small complement",
                f"{whole} - {part} = {rest[i]:g}: the rest of the group is a small number")
    # totals: a row labelled "all"/"total" is the sum of the other rows of its group
    for k in keys:
        labels = table[k].astype(str).str.strip().str.lower()
        is_total = labels.isin(TOTAL_LABELS).to_numpy()
        if not is_total.any():
            continue
        others = [o for o in keys if o != k]
        group_ids = table[others].fillna("").astype(str).agg("|".join, axis=1) if others else pd.Series("", index=table.index)
        for gid in pd.unique(group_ids):
            rows = np.flatnonzero((group_ids == gid).to_numpy())
            tot = [i for i in rows if is_total[i]]
            parts = [i for i in rows if not is_total[i]]
            if len(tot) != 1 or not parts:
                continue
            t = tot[0]
            for c in counts:
                if hidden[c][t] or np.isnan(values[c][t]):
                    continue
                hid = [i for i in parts if hidden[c][i]]
                if not hid:
                    continue
                shown = np.nansum([values[c][i] for i in parts if not hidden[c][i]])
                rest = values[c][t] - shown
                if len(hid) == 1:
                    add(hid[0], c, rest, "recoverable from total",
                        f"hidden cell = {table[k].iloc[t]} ({values[c][t]:g}) - shown parts ({shown:g}) = {rest:g}")
                elif 0 < rest < threshold:
                    add(hid[0], c, rest, "small sum of hidden cells",
                        f"{len(hid)} hidden cells add up to {rest:g} = {table[k].iloc[t]} - shown parts")
    return found


def _html_tables(path: Path) -> list[pd.DataFrame]:
    """The ``<table>`` elements of an HTML file as DataFrames of text (last header row = columns)."""
    from html.parser import HTMLParser

    class Parser(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.tables: list[tuple[list[list[str]], list[list[str]]]] = []
            self.depth = 0
            self.section = ""
            self.row: list[str] | None = None
            self.cell: list[str] | None = None

        def handle_starttag(self, tag: str, attrs: Any) -> None:
            if tag == "table":
                self.depth += 1
                if self.depth == 1:
                    self.tables.append(([], []))
            elif self.depth == 1 and tag in ("thead", "tbody"):
                self.section = tag
            elif self.depth == 1 and tag == "tr":
                self.row = []
            elif self.depth == 1 and tag in ("td", "th") and self.row is not None:
                self.cell = []

        def handle_endtag(self, tag: str) -> None:
            if tag == "table":
                self.depth -= 1
            elif self.depth == 1 and tag in ("td", "th") and self.cell is not None and self.row is not None:
                self.row.append(" ".join("".join(self.cell).split()))
                self.cell = None
            elif self.depth == 1 and tag == "tr" and self.row is not None:
                head, body = self.tables[-1]
                (head if self.section == "thead" else body).append(self.row)
                self.row = None

        def handle_data(self, data: str) -> None:
            if self.cell is not None:
                self.cell.append(data)

    parser = Parser()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    frames = []
    for head, body in parser.tables:
        if not body:
            continue
        width = max(len(r) for r in body)
        columns = [""] * width
        for header_row in head:  # several header rows (column names, then the index names): merge them
            padded = [*[""] * (width - len(header_row)), *header_row][:width]
            columns = [" ".join(x for x in (c, h) if x) for c, h in zip(columns, padded, strict=True)]
        columns = [c or f"column_{j}" for j, c in enumerate(columns)]
        columns = [*columns, *[f"column_{j}" for j in range(len(columns), width)]][:width]
        rows = [[*r, *[None] * (width - len(r))] for r in body]
        frame = pd.DataFrame(rows, columns=pd.Index(columns, dtype=object))
        frame = frame.loc[:, ~frame.columns.duplicated()]
        frames.append(frame)
    return frames


#: Key columns that name what was measured: a row of a table with one more of these than a row of
#: another table counts (nearly) the same people, for one measure.
MEASURE_KEYS = frozenset({"measure", "item", "scale", "outcome", "variable", "label", "characteristic"})


def _cross_table_findings(tables: Mapping[str, pd.DataFrame], chapter: str, threshold: int) -> list[dict[str, Any]]:
    """A count hidden in one table of a chapter but shown, for the same group and one measure, in another."""
    cells = []  # (source, {key column: value}, hidden, value, column)
    for source, table in tables.items():
        table = table.reset_index(drop=True)
        counts = [c for c in table.columns if is_count_column(c)]
        keys = _key_columns(table, counts)
        for c in counts:
            for i in range(len(table)):
                key = {str(k).lower(): str(table[k].iloc[i]).strip().lower() for k in keys if pd.notna(table[k].iloc[i])}
                cells.append((source, key, _is_hidden(table[c].iloc[i]), _cell_count(table[c].iloc[i]), str(c)))
    found = []
    for src, key, hid, _, col in cells:
        if not (hid and key):
            continue
        for src2, key2, hid2, value2, col2 in cells:
            if src2 == src or hid2 or np.isnan(value2) or value2 == 0:
                continue
            extra = set(key2) - set(key)
            if not extra or not extra <= MEASURE_KEYS or any(key2.get(k) != v for k, v in key.items()):
                continue
            group = " / ".join(key.values())
            found.append({"chapter": chapter, "source": src2, "row": " / ".join(key2.values()), "column": col2,
                          "value": value2, "rule": "shown elsewhere",
                          "detail": f"{src} hides {col} for {group}; this table shows the count of the same group "
                                    f"for one {'/'.join(sorted(extra))}"})
    return found


def check_report(out_dir: str | Path, *, threshold: int = THRESHOLD) -> pd.DataFrame:
    """Scan a finished report for small counts and for hidden counts that can be recovered.

    Parameters
    ----------
    out_dir : str or Path
        The report folder (``OUT``): every ``tables/*.csv``, every chapter's HTML
        (``*.html`` beside its tables, and ``OUT/index.html``) and ``key_findings.json`` is read.
    threshold : int
        Counts from 1 to ``threshold - 1`` must not be shown (default 5).

    Returns
    -------
    DataFrame
        One row per finding (empty when the report is safe to share): ``chapter`` (the folder
        relative to ``OUT``), ``source`` (file, and ``#table k`` for an HTML table), ``row``
        (the row's labels), ``column``, ``value`` (the count shown or recovered), ``rule``
        (``small count``, ``small complement``, ``recoverable from total``, ``small sum of
        hidden cells``, ``shown elsewhere``, ``small key finding``) and ``detail``.

    Raises
    ------
    BackpainError
        ``out_dir`` is not a folder.

    Notes
    -----
    Count columns are recognised by name (:func:`is_count_column`) plus cells written
    ``"n (%)"``; ages, scores, years, means and percentages are never read as counts. Rules:

    - *small count*: a count from 1 to ``threshold - 1`` (zero is allowed);
    - *small complement*: in a row, a count's denominator (``n_x`` for ``events_x`` and
      ``n_unit``/``n_all``; ``n_total``, ``n``, ``n_clinicians``, ``n_consultations`` or
      ``respondents`` for the other counts) minus the count is from 1 to ``threshold - 1``;
    - *recoverable from total* / *small sum of hidden cells*: a row labelled ``all``, ``total``,
      ``all reasons`` (:data:`TOTAL_LABELS`) is the sum of the other rows with the same other
      labels; with it shown, one hidden part is recovered exactly, and several hidden parts
      reveal their sum;
    - *shown elsewhere*: a cell hidden in one table of a chapter (``*`` or ``<5``) while another
      table of the chapter shows a count in a row with the same labels in the same key columns
      plus a measure column (:data:`MEASURE_KEYS`: the same people, answering one measure), as
      "32 physiotherapists answered" beside a hidden "32 of 34 responded";
    - *small key finding*: a key finding in people (unit ``patients``, ``clinicians``...) from 1
      to ``threshold - 1``.

    The check errs on the side of caution (a shown count for the same group in another table
    may be a different count); figures are images and are not read: chapters draw them from the
    suppressed tables. Disclosure-control practice: NHS Digital, "Disclosure control" in the
    Hospital Episode Statistics analysis guide; ONS, "Statistical disclosure control" (secondary
    suppression by differencing).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp())
    >>> (out / "01_x" / "tables").mkdir(parents=True)
    >>> _ = (out / "01_x" / "tables" / "t.csv").write_text("group,n\\na,*\\nb,20\\ntotal,23\\n")
    >>> check_report(out)[["source", "rule", "value"]].values.tolist()
    [['01_x/tables/t.csv', 'recoverable from total', 3.0]]
    """

    root = Path(out_dir)
    if not root.is_dir():
        raise BackpainError(f"disclosure check: report folder {root} does not exist")
    chapters: dict[Path, list[Path]] = {}
    for csv in sorted(root.rglob("tables/*.csv")):
        if any(part.startswith(".") for part in csv.relative_to(root).parts):
            continue
        chapters.setdefault(csv.parent.parent, []).append(csv)
    chapter_dirs = sorted(set(chapters) | {p.parent for p in root.rglob("key_findings.json")})
    chapter_dirs = [d for d in chapter_dirs if not any(part.startswith(".") for part in d.relative_to(root).parts)]
    # chapters are independent: checked side by side in worker processes (the gate ends every report)
    per_chapter = map_datasets(partial(_chapter_findings, root=root, chapters=chapters, threshold=threshold),
                               chapter_dirs)
    found = [f for chapter_found in per_chapter for f in chapter_found]
    return pd.DataFrame(found, columns=FINDING_COLUMNS).drop_duplicates(ignore_index=True)


def _chapter_findings(chapter_dir: Path, root: Path, chapters: dict[Path, list[Path]],
                      threshold: int) -> list[dict[str, Any]]:
    """The findings of :func:`check_report` in one chapter folder (its tables, HTML and key findings)."""
    from .outputs import read_key_findings

    chapter = chapter_dir.relative_to(root).as_posix()
    found: list[dict[str, Any]] = []
    tables: dict[str, pd.DataFrame] = {}
    for csv in chapters.get(chapter_dir, []):
        source = csv.relative_to(root).as_posix()
        try:
            table = pd.read_csv(csv, dtype=str, keep_default_na=False, na_values=[""])
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise BackpainError(f"disclosure check: cannot read {csv}: {exc}") from exc
        table = table.map(lambda v: v[1:] if isinstance(v, str) and v.startswith("'") else v)  # CSV-safe prefix
        tables[source] = table
        found += _table_findings(table, source, chapter, threshold)
    for html_file in sorted(chapter_dir.glob("*.html")):
        for k, table in enumerate(_html_tables(html_file)):
            source = f"{html_file.relative_to(root).as_posix()}#table {k + 1}"
            found += _table_findings(table, source, chapter, threshold)
    found += _cross_table_findings(tables, chapter, threshold)
    findings_file = chapter_dir / "key_findings.json"
    if findings_file.is_file():
        for f in read_key_findings(findings_file):
            value = f.get("value")
            is_people = str(f.get("unit", "")).lower() in _COUNT_UNITS or is_count_column(f.get("name", ""))
            if is_people and isinstance(value, int | float) and 1 <= value < threshold:
                found.append({"chapter": chapter, "source": findings_file.relative_to(root).as_posix(),
                              "row": f.get("name"), "column": "value", "value": float(value),
                              "rule": "small key finding", "detail": f"{f.get('label', '')}: a count from 1 to "
                              f"{threshold - 1}"})
    return found


def format_findings(findings: pd.DataFrame) -> str:
    """The findings of :func:`check_report` as a readable list, one line each.

    Examples
    --------
    >>> format_findings(pd.DataFrame(columns=FINDING_COLUMNS))
    'no disclosure problem found'
    """
    if findings.empty:
        return "no disclosure problem found"
    lines = [f"{len(findings)} disclosure problem(s):"]
    for r in findings.itertuples(index=False):
        lines.append(f"- {r.source}: row {r.row!s}, column {r.column}: {r.rule} ({r.detail})")
    return "\n".join(lines)
