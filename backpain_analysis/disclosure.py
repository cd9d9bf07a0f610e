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
exactly one hidden cell also hides its smallest other non-zero cell (or the total when no such
cell remains), so no hidden cell can be recovered by subtraction. Derived cells (percentages,
rates, differences) are hidden when any of their source cells in the same row is hidden.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["MARKER", "THRESHOLD", "compare_with_all", "small_count_cells", "suppress_table", "suppression_mask"]

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


def _protect_group(values: np.ndarray, hidden: np.ndarray, total_pos: int | None) -> bool:
    """Hide one more cell of a group (body cells + optional total) that has exactly one hidden cell.

    ``values``/``hidden`` cover the whole group; ``total_pos`` is the index of the total in it.
    Returns True when a cell was hidden.
    """
    if hidden.sum() != 1:
        return False
    body = [i for i in range(len(values)) if i != total_pos]
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
                if _protect_group(count_values[c], hidden[c], total_pos):
                    changed = True
        for total, parts in row_totals.items():
            group = [*parts, total]
            for i in range(n):
                vals = np.array([count_values[c][i] for c in group])
                hid = np.array([hidden[c][i] for c in group])
                if _protect_group(vals, hid, len(group) - 1):
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
