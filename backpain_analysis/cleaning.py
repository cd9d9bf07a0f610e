"""Auditable, vectorized cleaning of a study export: :func:`clean_study` -> :class:`CleanStudy`.

What cleaning does, table by table, following ``data/data_dictionary.yaml``:

1. **Exact duplicate rows** (a row repeating another row of the same table in every column)
   are dropped; the later copies go to the exclusions table (``stage="cleaning"``).
2. **Harmonization** of every described column, working on the distinct values of a
   column (so 1,000,000 rows cost one hash pass, not a Python loop per cell):

   - text answers mapped to their code with the dictionary's labels and aliases,
     ignoring case and surrounding spaces (:meth:`Column.text_to_code`): ``"Agree"``,
     ``" agree"``, ``"Yes"`` -> 1, ``"VERY MUCH"`` -> 3; rule ``text_to_code`` (logged);
   - numeric missing codes of the column (:attr:`Column.missing_codes`: ``9``, ``99``,
     ``-1``, ``999`` where they are not valid values) -> missing; rule ``missing_code``
     (logged);
   - blank strings and textual missing markers (``NA``, ``N/A``, ``.``) -> missing; rules
     ``blank`` and ``missing_text``: the value was already missing, so these are counted in
     :attr:`CleanStudy.summary` but not logged cell by cell;
   - dates in other formats than ISO 8601 (``15/03/2008``, ``15.03.2008``, ``15-Mar-2008``,
     read **day first**) -> datetime; rule ``date_format`` (logged, old and new value);
   - types: coded and integer columns -> nullable ``Int64``; float columns -> ``float64``;
     dates -> ``datetime64[ns]``; category columns -> pandas categoricals (ordered for
     ordered scales); text -> ``str``. A value that is none of the above raises
     :class:`CleaningError` naming table, column, rule and examples.

3. **Duplicate keys** in tables with a ``duplicate_rule`` (``followups``,
   ``clinician_surveys``): the row with the earliest ``order_by`` date is kept (ties and
   missing dates: first in file order); the others go to the exclusions table. Duplicate keys
   in other tables raise :class:`CleaningError`.
4. **Follow-up windows**: every follow-up gets ``followup_days`` (days from the patient's
   baseline questionnaire, or the index consultation when that date is missing) and
   ``in_window`` (nullable boolean) for the window around its nominal time. Rows outside
   the window are flagged, never dropped.
5. **Analysis cohort**: invited patients who did not respond or were excluded at invitation,
   their follow-ups, record reviews and physiotherapy episodes, and record reviews without
   recorded consent are listed in the exclusions table with ``stage="analysis"``; they stay
   in the clean tables (the participant flow needs them).

Every change of value is in :attr:`CleanStudy.cleaning_log` (one vectorized block per
table, column and rule) and every row dropped or not analysed is in
:attr:`CleanStudy.exclusions`. Input tables are never modified.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ._keys import _arrow_source, _arrow_text, _KeyFacts, _strictly_increasing
from ._threads import PARALLEL_MIN_ROWS, named_pool
from .dictionary import Column, DataDictionary, Table, load_dictionary
from .errors import BackpainError
from .schemas import DATE_MAX, DATE_MIN, in_date_range

__all__ = [
    "DEFAULT_FOLLOWUP_WINDOW_DAYS",
    "EXCLUSION_COLUMNS",
    "FLAG_COLUMNS",
    "LOG_COLUMNS",
    "PLAUSIBILITY_ACTIONS",
    "CleanStudy",
    "CleaningError",
    "clean_study",
    "patient_rows",
]

#: time_point (months) -> (nominal days after baseline, half-width of the window in days):
#: 2 months +/- 4 weeks and 6 months +/- 8 weeks.
DEFAULT_FOLLOWUP_WINDOW_DAYS: dict[int, tuple[float, float]] = {2: (61.0, 28.0), 6: (183.0, 56.0)}
#: Columns of :attr:`CleanStudy.cleaning_log`.
LOG_COLUMNS: tuple[str, ...] = ("table", "row", "row_key", "column", "old_value", "new_value", "rule")
#: Columns of :attr:`CleanStudy.exclusions`.
EXCLUSION_COLUMNS: tuple[str, ...] = ("table", "row", "row_key", "stage", "reason", "detail")
#: Columns of :attr:`CleanStudy.flags`.
FLAG_COLUMNS: tuple[str, ...] = ("table", "row", "row_key", "rule", "detail")
#: What a plausibility rule (data dictionary, ``plausibility.rules``) may do with the rows it finds.
PLAUSIBILITY_ACTIONS: tuple[str, ...] = ("error", "exclude", "flag")
#: Tables whose excluded rows stay in the clean table (the analysis dataset and the flow skip the rows that
#: :attr:`CleanStudy.exclusions` lists); excluded rows of the other tables are dropped from the clean table.
_KEPT_WHEN_EXCLUDED = ("patients", "followups", "records", "physio")
#: Rules whose every change is written to the cleaning log (the others only count in the summary).
LOGGED_RULES: tuple[str, ...] = ("text_to_code", "missing_code", "date_format")

#: Category columns whose codes are an ordered scale, in dictionary order.
ORDERED_CATEGORIES: frozenset[tuple[str, str]] = frozenset({
    ("patients", "episode_duration"),
    ("clinician_surveys", "time_point"),
})

# Day-first date formats tried after ISO 8601, in this order (documented in clean_study).
DATE_FORMATS: tuple[str, ...] = (
    "%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y/%m/%d", "%Y%m%d",
    "%d/%m/%Y", "%d-%m-%Y", "%d.%m.%Y", "%d/%m/%y", "%d-%m-%y", "%d.%m.%y",
    "%d %b %Y", "%d %B %Y", "%d-%b-%Y", "%d-%B-%Y", "%d %b %y", "%d-%b-%y",
)
_ISO_FORMATS = frozenset(DATE_FORMATS[:3])

_PATIENT_TABLES = ("followups", "records", "physio")


class CleaningError(BackpainError):
    """A study table that cannot be cleaned: a value no rule accepts, or a forbidden duplicate key."""


@dataclass
class CleanStudy:
    """A cleaned study: harmonized tables plus the audit trail.

    Attributes
    ----------
    tables : dict of str to DataFrame
        Clean tables by name (also available as attributes: ``clean.patients``). The index of
        each table is the 0-based row position in the input table. ``followups`` has two extra
        columns, ``followup_days`` (float64) and ``in_window`` (nullable boolean).
    cleaning_log : DataFrame
        One row per changed cell: ``table``, ``row`` (input position), ``row_key`` (key
        values joined by ``|``), ``column``, ``old_value`` and ``new_value`` (as text),
        ``rule`` (``text_to_code``, ``missing_code``, ``date_format``; ``mapping`` for the cells
        a mapping file recoded in :func:`~backpain_analysis.load_study`, listed first).
    exclusions : DataFrame
        One row per input row that is not used: ``table``, ``row``, ``row_key``, ``stage``
        (``cleaning``: dropped from the clean table; ``analysis``: kept in the clean table
        but not in the analysis dataset), ``reason``, ``detail``.
    summary : DataFrame
        Cells per ``table``, ``column``, ``rule`` (``n_cells``), including rules not logged
        cell by cell (``blank``, ``missing_text``, ``column_added``), and ``logged``.
    input_rows : dict of str to int
        Number of rows of each input table.
    options : dict
        The options :func:`clean_study` was called with.
    dictionary : DataDictionary
    truth : dict or None
        ``Study.truth`` passed through (synthetic studies).
    path : Path or None
        ``Study.path`` passed through.
    flags : DataFrame
        Rows kept and analysed although a plausibility rule with action ``flag`` found them:
        ``table``, ``row``, ``row_key``, ``rule``, ``detail``.
    notes : list of str
        ``Study.notes`` passed through, then what cleaning wants said (for example that
        recruitment windows were not checked).
    """

    tables: dict[str, pd.DataFrame]
    cleaning_log: pd.DataFrame
    exclusions: pd.DataFrame
    summary: pd.DataFrame
    input_rows: dict[str, int]
    options: dict[str, Any]
    dictionary: DataDictionary
    truth: dict | None = None
    path: Path | None = None
    flags: pd.DataFrame = field(default_factory=lambda: _frame([], FLAG_COLUMNS))
    notes: list[str] = field(default_factory=list)
    _cohort_cache: Any = field(default=None, repr=False)

    def __getattr__(self, name: str) -> pd.DataFrame:
        if name.startswith("_"):
            raise AttributeError(name)
        tables = self.__dict__.get("tables", {})
        if name in tables:
            return tables[name]
        raise AttributeError(f"CleanStudy has no attribute or table {name!r}; tables: {', '.join(tables)}")

    @property
    def analysed_ids(self) -> pd.Index:
        """``patient_id`` of the analysed cohort (baseline respondents), in table order."""
        p = self.tables["patients"]
        return pd.Index(p.loc[p["invitation_outcome"] == "responded", "patient_id"].to_numpy(), name="patient_id")


# ----------------------------------------------------------------------------------------
# value classification (per distinct value)
# ----------------------------------------------------------------------------------------

def _kind(col: Column) -> str:
    if col.type == "integer":
        return "coded_int" if col.codes is not None else "int"
    return col.type  # float, category, date, string


def _is_number(u: Any) -> bool:
    return isinstance(u, (int, float, np.integer, np.floating)) and not isinstance(u, (bool, np.bool_))


def _fmt(u: Any) -> str:
    if u is None or (isinstance(u, float) and np.isnan(u)):
        return ""
    if isinstance(u, (float, np.floating)) and float(u).is_integer():
        return str(int(u))
    if isinstance(u, (pd.Timestamp, _dt.datetime, np.datetime64)):
        return pd.Timestamp(u).strftime("%Y-%m-%d")
    return str(u)


def _parse_date(text: str) -> tuple[pd.Timestamp | None, str | None]:
    for fmt in DATE_FORMATS:
        try:
            return pd.Timestamp(_dt.datetime.strptime(text, fmt)), fmt
        except ValueError:
            continue
    return None, None


class _Rules:
    """Classifies each distinct raw value of one column: (new value, rule)."""

    def __init__(self, col: Column):
        self.col = col
        self.kind = _kind(col)
        self.text_map = col.text_to_code()
        missing = [str(m).strip() for m in col.missing_codes]
        self.missing_text = {m.lower() for m in missing if not _is_float_text(m)}
        self.missing_num = {float(m) for m in missing if _is_float_text(m)}
        self.codes = None if col.codes is None else set(col.codes)

    def numeric(self, v: float) -> tuple[Any, str]:
        col = self.col
        if v in self.missing_num:
            return None, "missing_code"
        if self.kind == "coded_int":
            if v.is_integer() and int(v) in self.codes:
                return int(v), "type"
            return None, "invalid"
        if self.kind == "int" and not v.is_integer():
            return None, "invalid"
        if (col.min is not None and v < col.min) or (col.max is not None and v > col.max):
            return None, "invalid"
        return (int(v) if self.kind == "int" else v), "type"

    def __call__(self, u: Any) -> tuple[Any, str]:
        kind = self.kind
        if kind == "date":
            if isinstance(u, (pd.Timestamp, _dt.datetime, _dt.date, np.datetime64)):
                ts = pd.Timestamp(u)
                return (ts, "type") if in_date_range(ts) else (None, "invalid")
            text = str(u).strip()
            if text == "":
                return None, "blank"
            if text.lower() in self.missing_text:
                return None, "missing_text"
            if text in self.col.missing_codes:
                return None, "missing_code"
            ts, fmt = _parse_date(text)
            if ts is None or not in_date_range(ts):
                return None, "invalid"
            return ts, ("type" if fmt in _ISO_FORMATS else "date_format")
        if _is_number(u):
            v = float(u)
            if np.isnan(v):
                return None, "type"
            if kind == "category":
                text = _fmt(u)
                if text in self.missing_num or text in self.col.missing_codes:
                    return None, "missing_code"
                return (self.text_map[text], "text_to_code") if text in self.text_map else (None, "invalid")
            return self.numeric(v)
        text = str(u)
        stripped = text.strip()
        low = stripped.lower()
        if low == "":
            return None, "blank"
        if low in self.missing_text:
            return None, "missing_text"
        if kind == "category":
            if text in self.codes:
                return text, "type"
            if low in self.text_map:
                return self.text_map[low], "text_to_code"
            if stripped in self.col.missing_codes:
                return None, "missing_code"
            return None, "invalid"
        if kind == "coded_int" and low in self.text_map:
            code = self.text_map[low]
            return code, ("type" if low == str(code) else "text_to_code")
        try:
            v = float(stripped)
        except ValueError:
            return None, "invalid"
        return self.numeric(v)


def _is_float_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# ----------------------------------------------------------------------------------------
# column harmonization
# ----------------------------------------------------------------------------------------

@dataclass
class _Ctx:
    """Per-table state: name, raw frame, key columns, positions kept, collected log blocks."""

    table: Table
    raw: pd.DataFrame
    keep: np.ndarray | None  # input positions kept (None: all)
    log_blocks: list[pd.DataFrame]
    summary_rows: list[tuple[str, str, str, int, bool]]

    def positions(self, local: np.ndarray) -> np.ndarray:
        return local if self.keep is None else self.keep[local]

    def row_keys(self, positions: np.ndarray) -> np.ndarray:
        return _row_keys(self.raw, self.table.key, positions)


def _row_keys(raw: pd.DataFrame, key: tuple[str, ...], positions: np.ndarray) -> Any:
    """Key values of the given input rows, as text joined by ``|`` (missing as ``""``).

    A ``str`` array built in Arrow (text key columns are taken as they are, other key columns
    through the text of their distinct values), so no Python string is made per row: the
    exclusions and the cleaning log hold these as ``str`` columns anyway. Tables without a key
    column: the positions as text (an object array).
    """
    parts = []
    take = None
    for k in key:
        if k in raw.columns:
            values = raw[k]
            if take is None:
                take = pa.array(np.asarray(positions, dtype="int64"), type=pa.int64())
            source = _arrow_source(values)
            if source is not None:
                parts.append(pc.take(source, take).cast(pa.large_string()).fill_null(""))
                continue
            vals = values.take(positions)
            codes, uniques = pd.factorize(vals, use_na_sentinel=True)
            if pd.api.types.is_string_dtype(vals.dtype) and vals.dtype != object:
                text = [str(u) for u in uniques]  # str columns not held by Arrow: the text itself
            else:
                text = [_fmt(u) for u in uniques]
            text_array = pa.array([*text, ""], type=pa.large_string())
            parts.append(text_array.take(pa.array(np.where(codes < 0, len(uniques), codes), type=pa.int64())))
    if not parts:
        return np.asarray([str(p) for p in positions], dtype=object)
    out = parts[0] if len(parts) == 1 else pc.binary_join_element_wise(*parts, pa.scalar("|", pa.large_string()))
    return pd.array(out, dtype="str")


def _text_values(values: pd.Series, fill: str = "") -> Any:
    """``values.astype(object).fillna(fill)`` as a ``str`` array, without a Python string per row where
    the column is Arrow text or a categorical of text; other columns as before (object array)."""
    source = _arrow_source(values)
    if source is not None:
        return pd.array(source.cast(pa.large_string()).fill_null(fill), dtype="str")
    if isinstance(values.dtype, pd.CategoricalDtype) and all(isinstance(c, str) for c in values.cat.categories):
        labels = pa.array([*values.cat.categories, fill], type=pa.large_string())
        codes = values.cat.codes.to_numpy()
        return pd.array(labels.take(pa.array(np.where(codes < 0, len(labels) - 1, codes), type=pa.int64())),
                        dtype="str")
    return values.astype(object).fillna(fill).to_numpy(dtype=object)


def _labels(labels: list[str], codes: np.ndarray) -> Any:
    """``labels[codes]`` as a ``str`` array (one Arrow take instead of a Python string per row)."""
    return pd.array(pa.array(labels, type=pa.large_string()).take(pa.array(np.asarray(codes, dtype="int64"))),
                    dtype="str")


def _empty_column(kind: str, n: int, col: Column, table: str) -> pd.Series:
    if kind in ("coded_int", "int"):
        return pd.Series(pd.array([pd.NA] * n, dtype="Int64"), copy=False)
    if kind == "float":
        return pd.Series(np.full(n, np.nan), copy=False)
    if kind == "date":
        return pd.Series(np.full(n, np.datetime64("NaT"), dtype="datetime64[ns]"), copy=False)
    if kind == "category":
        return pd.Series(pd.Categorical.from_codes(np.full(n, -1), dtype=_category_dtype(col, table)), copy=False)
    return pd.Series(pd.array([pd.NA] * n, dtype="str"), copy=False)


def _category_dtype(col: Column, table: str) -> pd.CategoricalDtype:
    return pd.CategoricalDtype(list(col.codes or {}), ordered=(table, col.name) in ORDERED_CATEGORIES)


def _invalid(ctx: _Ctx, col: Column, n_rows: int, examples: list[str], first_local: int) -> CleaningError:
    return CleaningError(
        f"table {ctx.table.name!r}, column {col.name!r}: {n_rows} row(s) hold values that no cleaning rule "
        f"accepts (expected {col.describe_rule()}, a label or alias of it, or a missing code "
        f"{list(col.missing_codes)}): {examples}; first at input row {int(ctx.positions(np.array([first_local]))[0])}"
    )


def _distinct(values: np.ndarray) -> np.ndarray:
    """Distinct non-missing values of a numeric array; small integer ranges by counting, not hashing."""
    finite = values if values.dtype.kind in "iu" else values[~np.isnan(values)]
    if finite.size == 0:
        return finite
    lo, hi = finite.min(), finite.max()
    if hi - lo <= 100_000 and (values.dtype.kind in "iu" or bool((finite == np.floor(finite)).all())):
        counts = np.bincount((finite - lo).astype("int64"))
        return (np.flatnonzero(counts) + lo).astype(values.dtype)
    return pd.unique(finite)


#: Integer columns whose values span at most this many integers are checked value by value
#: (each integer of the span through :meth:`_Rules.numeric`) by :func:`_numeric_unchanged`.
_SPAN_CHECKED = 1024
#: Largest magnitude the numeric fast path accepts: every integer up to it is exact in float64,
#: so casting to int64 and comparing back is exact and never overflows.
_EXACT_INT = 2.0 ** 53


def _all_kept(rules: _Rules, lo: float, hi: float) -> bool:
    """Whether every value ``v`` a column can hold between ``lo`` and ``hi`` (both held) is kept
    as is: :meth:`_Rules.numeric` gives ``(v, "type")`` (``int(v)`` for integer kinds).

    For the integer kinds the caller has proven the values integral, so the candidates are the
    integers of ``[lo, hi]``: a short span is checked integer by integer through the rules
    themselves. Otherwise (float columns, or integer columns with a long span) a value is kept
    exactly when no numeric missing code lies in ``[lo, hi]`` and ``[lo, hi]`` is inside the
    column's range, which is what :meth:`_Rules.numeric` tests for those kinds; coded columns
    with a long span are refused (their codes cannot cover it).
    """
    if rules.kind in ("coded_int", "int"):
        if hi - lo <= _SPAN_CHECKED:
            return all(rules.numeric(float(k)) == (k, "type") for k in range(int(lo), int(hi) + 1))
        if rules.kind == "coded_int":
            return False
    elif rules.kind != "float":
        return False
    col = rules.col
    if any(lo <= m <= hi for m in rules.missing_num):
        return False
    return (col.min is None or lo >= col.min) and (col.max is None or hi <= col.max)


def _numeric_unchanged(values: np.ndarray, rules: _Rules) -> pd.Series | None:
    """The clean column when no value of a numeric column changes; ``None`` to use the general path.

    Fast path of :func:`_harmonize_numeric` for the common case (no missing codes, no invalid
    values): instead of the distinct values (a filtered copy, a floor compare, a bincount),
    only the minimum and maximum are needed, because :func:`_all_kept` proves that *every*
    value between them is kept as is. For an integer kind read as ``float64`` (blanks are
    ``NaN``), one cast gives the ``Int64`` data with ``NaN`` -> 0 folded in (``fmax(v, 0)``
    when no value is negative, ``fmin(v, 0)`` when none is positive), and one comparison of
    the cast against the input proves every present value integral (``NaN`` compares unequal,
    so the unequal count must be exactly the missing count). The result is the one of the
    general path bit for bit: same data (0 under the mask), same mask; the input is never
    modified (the data is always a new array).
    """
    n = values.size
    if n == 0 or values.dtype.kind not in "iuf" or (values.dtype.kind == "f" and values.dtype != np.float64):
        return None
    kind = rules.kind
    if values.dtype.kind in "iu":
        lo, hi = int(values.min()), int(values.max())
        if not (-_EXACT_INT <= lo and hi <= _EXACT_INT) or not _all_kept(rules, lo, hi):
            return None
        if kind == "float":
            return pd.Series(values.astype("float64"), copy=False)
        data = values.astype("int64", copy=True)
        return pd.Series(pd.arrays.IntegerArray(data, np.zeros(n, dtype=bool)), copy=False)
    lo, hi = float(np.fmin.reduce(values)), float(np.fmax.reduce(values))  # NaN ignored
    if not (-_EXACT_INT <= lo and hi <= _EXACT_INT):  # also refuses all-NaN (NaN compares False)
        return None
    if kind == "float":
        return pd.Series(values.astype("float64", copy=True), copy=False) if _all_kept(rules, lo, hi) else None
    if int(lo) != lo or int(hi) != hi or not _all_kept(rules, lo, hi):
        return None
    missing = np.isnan(values)
    if lo >= 0:
        data = np.fmax(values, 0.0).astype("int64")
    elif hi <= 0:
        data = np.fmin(values, 0.0).astype("int64")
    else:
        data = np.where(missing, 0, values).astype("int64")
    if np.count_nonzero(values != data) != np.count_nonzero(missing):
        return None  # a present value is not integral
    return pd.Series(pd.arrays.IntegerArray(data, missing), copy=False)


def _harmonize_numeric(s: pd.Series, col: Column, ctx: _Ctx) -> pd.Series:
    """Fast path of :func:`_harmonize_column` for a numeric column: only missing codes can change."""
    if isinstance(s.dtype, np.dtype) and s.dtype.kind in "iuf":
        values = s.to_numpy()
    else:  # nullable Int*/Float*
        values = s.to_numpy(dtype="float64", na_value=np.nan)
    rules = _Rules(col)
    unchanged = _numeric_unchanged(values, rules)
    if unchanged is not None:
        return unchanged
    uniques = _distinct(values)
    classified = [rules.numeric(float(u)) for u in uniques]
    bad = [u for u, (_, r) in zip(uniques, classified, strict=True) if r == "invalid"]
    if bad:
        mask = np.isin(values, bad)
        raise _invalid(ctx, col, int(mask.sum()), [_fmt(u) for u in bad[:6]], int(np.flatnonzero(mask)[0]))
    recoded = [u for u, (_, r) in zip(uniques, classified, strict=True) if r == "missing_code"]
    if recoded:
        values = values.astype("float64")  # a copy: the input is never modified
        for u in recoded:
            local = np.flatnonzero(values == u)
            values[local] = np.nan
            pos = ctx.positions(local)
            ctx.summary_rows.append((ctx.table.name, col.name, "missing_code", int(local.size), True))
            ctx.log_blocks.append(pd.DataFrame({
                "table": ctx.table.name, "row": pos.astype("int64"), "row_key": ctx.row_keys(pos),
                "column": col.name, "old_value": _fmt(u), "new_value": "", "rule": "missing_code",
            }))
    if _kind(col) == "float":
        return pd.Series(values.astype("float64", copy=True), copy=False)
    if values.dtype.kind in "iu":
        data = values.astype("int64", copy=True)
        return pd.Series(pd.arrays.IntegerArray(data, np.zeros(values.size, dtype=bool)), copy=False)
    missing = np.isnan(values)
    return pd.Series(pd.arrays.IntegerArray(np.where(missing, 0, values).astype("int64"), missing), copy=False)


def _arrow_of(s: pd.Series) -> pa.Array | pa.ChunkedArray | None:
    """The Arrow strings behind an Arrow-backed text column (no copy); ``None`` for other columns."""
    if not isinstance(s.array, pd.arrays.ArrowStringArray):
        return None
    return pa.array(s.array)


def _no_blank(s: pd.Series) -> bool:
    """Whether no value of a text column is blank after stripping (``False``: not proven).

    ``Series.str.strip`` on Arrow strings is ``utf8_trim_whitespace``, which drops the
    characters ``utf8_is_space`` tests for (the same Unicode whitespace predicate; checked over
    every code point in the tests), so a value strips to ``""`` exactly when it is empty or all
    whitespace. Two Arrow kernels prove there is none, without building a stripped copy of
    the column. Missing values are not blanks (as in the general path).
    """
    arr = _arrow_of(s)
    if arr is None:
        return False
    blank = pc.or_(pc.utf8_is_space(arr), pc.equal(pc.binary_length(arr), 0))
    return not pc.any(blank).as_py()  # None (all missing) -> no blank


#: Dates the ISO fast path accepts: :data:`~backpain_analysis.schemas.DATE_MIN` ..
#: :data:`~backpain_analysis.schemas.DATE_MAX` (as days since 1970-01-01), the range every date
#: must lie in, so the cast to nanoseconds cannot overflow.
_ISO_DAYS = (int(DATE_MIN.to_datetime64().astype("datetime64[D]").astype("int64")),
             int(DATE_MAX.to_datetime64().astype("datetime64[D]").astype("int64")))
_ISO_SHAPE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _iso_dates(s: pd.Series, col: Column) -> pd.Series | None:
    """The clean date column when every value is an ISO ``YYYY-MM-DD`` date (or missing); else ``None``.

    Arrow's cast of text to ``date32`` accepts exactly the strings of 10 characters
    ``YYYY-MM-DD`` (ASCII digits, dashes at 4 and 7) that name a real calendar day, and raises
    otherwise. For such a string the general path's first format (``%Y-%m-%d`` by
    ``datetime.strptime``, rule ``type``, nothing logged) gives the same day, provided the
    year is not 0 and the date fits ``datetime64[ns]`` (both ensured by the year bounds) and
    no missing code of the column is itself such a date (then the general path would call
    it a missing code). One C++ pass replaces hashing the text and parsing each distinct
    value in Python. Anything else (other formats, blanks, text, missing codes) raises in
    the cast and takes the general path.
    """
    arr = _arrow_of(s)
    if arr is None or len(arr) == 0 or any(_ISO_SHAPE.fullmatch(str(m).strip()) for m in col.missing_codes):
        return None
    try:
        days = pc.cast(arr, pa.date32())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    bounds = pc.min_max(pc.cast(days, pa.int32()))
    lo, hi = bounds["min"].as_py(), bounds["max"].as_py()
    if lo is None or lo < _ISO_DAYS[0] or hi > _ISO_DAYS[1]:  # all missing, or out of range
        return None
    values = days.to_numpy(zero_copy_only=False)  # datetime64[D], NaT where missing
    return pd.Series(values.astype("datetime64[ns]"), copy=False)


def _category_codes(s: pd.Series, rules: _Rules, dtype: pd.CategoricalDtype) -> np.ndarray | None:
    """Codes of a category column when every value is exactly one of its codes (or missing); else ``None``.

    In the general path a value equal to a code is kept (rule ``type``, nothing logged)
    unless the code itself would be read as blank or missing text, which is checked here
    code by code through the rules. Then one Arrow hash lookup of the values in the
    categories gives the codes; a value that is not exactly a category (a label, an alias,
    other case or spacing, a missing code) leaves a null and the general path is used.
    """
    arr = _arrow_of(s)
    cats = list(dtype.categories)
    if arr is None or not all(isinstance(c, str) and rules(c) == (c, "type") for c in cats):
        return None
    found = pc.index_in(arr, value_set=pa.array(cats, type=arr.type))
    if found.null_count != arr.null_count:
        return None
    return found.fill_null(-1).to_numpy(zero_copy_only=False)


def _harmonize_column(s: pd.Series, col: Column, ctx: _Ctx) -> pd.Series:
    """Return the clean column (typed), appending log blocks and summary rows to ``ctx``."""
    table = ctx.table.name
    kind = _kind(col)
    n = len(s)
    if kind == "string":
        out = s.astype("str") if not pd.api.types.is_string_dtype(s.dtype) or s.dtype == object else s
        if not _no_blank(out):
            blank = out.str.strip().eq("").fillna(False).to_numpy(dtype=bool)
            if blank.any():
                ctx.summary_rows.append((table, col.name, "blank", int(blank.sum()), False))
                out = out.mask(blank)
        return out.reset_index(drop=True)

    if kind in ("coded_int", "int", "float") and pd.api.types.is_numeric_dtype(s.dtype) \
            and not pd.api.types.is_bool_dtype(s.dtype):
        return _harmonize_numeric(s, col, ctx)

    if kind == "date":
        dates = _iso_dates(s, col)
        if dates is not None:
            return dates
    elif kind == "category":
        dtype = _category_dtype(col, table)
        fast_codes = _category_codes(s, _Rules(col), dtype)
        if fast_codes is not None:
            return pd.Series(pd.Categorical.from_codes(fast_codes, dtype=dtype), copy=False)

    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    rules = _Rules(col)
    uniq_list = list(uniques)
    classified = [rules(u) for u in uniq_list]
    rule_arr = np.asarray([r for _, r in classified] + ["na"], dtype=object)
    idx = np.where(codes < 0, len(uniq_list), codes)

    invalid = np.flatnonzero(rule_arr == "invalid")
    if invalid.size:
        mask = np.isin(codes, invalid)
        raise _invalid(ctx, col, int(mask.sum()), [_fmt(uniq_list[k]) for k in invalid[:6]],
                       int(np.flatnonzero(mask)[0]))

    old_text = new_text = None
    counts = np.bincount(codes[codes >= 0], minlength=len(uniq_list)) if len(uniq_list) else np.zeros(0, int)
    for rule in ("blank", "missing_text", *LOGGED_RULES):
        sel = np.flatnonzero(rule_arr[:-1] == rule)
        if sel.size == 0:
            continue
        n_cells = int(counts[sel].sum())
        logged = rule in LOGGED_RULES
        ctx.summary_rows.append((table, col.name, rule, n_cells, logged))
        if logged:
            local = np.flatnonzero(np.isin(codes, sel))
            if old_text is None:
                old_text = np.asarray([_fmt(u) for u in uniq_list] + [""], dtype=object)
                new_text = np.asarray([_fmt(v) for v, _ in classified] + [""], dtype=object)
            pos = ctx.positions(local)
            ctx.log_blocks.append(pd.DataFrame({
                "table": table,
                "row": pos.astype("int64"),
                "row_key": ctx.row_keys(pos),
                "column": col.name,
                "old_value": old_text[idx[local]],
                "new_value": new_text[idx[local]],
                "rule": rule,
            }))

    values = [v for v, _ in classified]
    if kind in ("coded_int", "int"):
        table_vals = np.asarray([0 if v is None else int(v) for v in values] + [0], dtype="int64")
        table_mask = np.asarray([v is None for v in values] + [True], dtype=bool)
        return pd.Series(pd.arrays.IntegerArray(table_vals[idx], table_mask[idx]), copy=False)
    if kind == "float":
        table_vals = np.asarray([np.nan if v is None else float(v) for v in values] + [np.nan], dtype="float64")
        return pd.Series(table_vals[idx], copy=False)
    if kind == "date":
        table_vals = np.asarray([np.datetime64("NaT") if v is None else pd.Timestamp(v).to_datetime64()
                                 for v in values] + [np.datetime64("NaT")], dtype="datetime64[ns]")
        return pd.Series(table_vals[idx], copy=False)
    # category
    dtype = _category_dtype(col, table)
    cat_index = {c: i for i, c in enumerate(dtype.categories)}
    table_codes = np.asarray([-1 if v is None else cat_index[v] for v in values] + [-1], dtype="int64")
    codes = table_codes[idx] if n else np.zeros(0, "int64")
    return pd.Series(pd.Categorical.from_codes(codes, dtype=dtype), copy=False)


# ----------------------------------------------------------------------------------------
# duplicates
# ----------------------------------------------------------------------------------------

def _exclusion_block(table: str, positions: np.ndarray, keys: np.ndarray, stage: str, reason: Any,
                     detail: Any = "") -> pd.DataFrame:
    return pd.DataFrame({
        "table": table,
        "row": np.asarray(positions, dtype="int64"),
        "row_key": keys,
        "stage": stage,
        "reason": reason,
        "detail": detail,
    })


def _exact_duplicates(raw: pd.DataFrame, table: Table, exclusions: list[pd.DataFrame],
                      unique: bool = False) -> tuple[np.ndarray | None, bool]:
    """Input positions kept after dropping rows that repeat an earlier row exactly (None: all
    kept), and whether any raw key value was repeated at all.

    ``unique``: the caller knows that no key value repeats (``load_study`` proved it for this
    very data, see :func:`_known_unique`). Without it, a table sorted by its key is proven
    free of repeats by comparing each row with the next (``loading._strictly_increasing``),
    and only otherwise are the keys hashed.
    """
    key = [k for k in table.key if k in raw.columns]
    if not key or len(raw) == 0:
        return None, False
    if unique or _strictly_increasing([raw[k] for k in key]):
        return None, False
    if len(key) == 1 and _all_distinct(raw[key[0]]):
        return None, False
    candidates = raw.duplicated(subset=key, keep=False).to_numpy()
    if not candidates.any():
        return None, False
    cand_pos = np.flatnonzero(candidates)
    sub = raw.iloc[cand_pos]
    dup = sub.duplicated(keep="first").to_numpy()
    if not dup.any():
        return None, True
    dropped = cand_pos[dup]
    # the kept copy of each dropped row: first candidate with the same values
    group = sub.astype(object).fillna("\x00NA").groupby(list(sub.columns), sort=False, dropna=False).ngroup().to_numpy()
    first_of_group = pd.Series(cand_pos).groupby(group).transform("min").to_numpy()
    exclusions.append(_exclusion_block(
        table.name, dropped, _row_keys(raw, table.key, dropped), "cleaning",
        "exact duplicate row", np.asarray([f"same values as input row {r}" for r in first_of_group[dup]], dtype=object),
    ))
    keep = np.ones(len(raw), dtype=bool)
    keep[dropped] = False
    return np.flatnonzero(keep), True


def _all_distinct(values: pd.Series) -> bool:
    """Whether no value of a text column repeats (blanks count as one value, as in ``duplicated``).

    One Arrow hash pass, cheaper than pandas' ``duplicated`` on a million strings; other dtypes
    answer ``False`` so the caller takes the general path.
    """
    if not (pd.api.types.is_string_dtype(values.dtype) and values.dtype != object):
        return False
    return len(pc.unique(_arrow_strings(values))) == len(values)


def _duplicate_keys(clean: pd.DataFrame, table: Table, raw: pd.DataFrame,
                    exclusions: list[pd.DataFrame],
                    demote: Callable[[pd.DataFrame], np.ndarray] | None = None) -> pd.DataFrame:
    """Resolve remaining duplicate keys by the table's duplicate_rule, or raise.

    ``demote``: given the duplicated rows, which ones a plausibility rule will exclude
    (follow-ups returned before the baseline questionnaire): a plausible copy is kept before
    them, whatever its date.
    """
    key = list(table.key)
    if not key or len(clean) == 0:
        return clean
    dup = clean.duplicated(subset=key, keep=False).to_numpy()
    if not dup.any():
        return clean
    rule = table.duplicate_rule
    if not rule:
        shown = clean.loc[dup, key].drop_duplicates().head(5).astype(str).agg("|".join, axis=1).tolist()
        raise CleaningError(
            f"table {table.name!r}: {int(dup.sum())} rows share a key ({', '.join(key)}) with another row but differ "
            f"in other columns, and the table has no duplicate_rule; keys: {shown}"
        )
    if rule.get("keep") != "earliest":
        raise CleaningError(f"table {table.name!r}: duplicate_rule keep={rule.get('keep')!r} is not supported "
                            "(only 'earliest')")
    order_by = rule["order_by"]
    sub = clean.loc[dup, [*key, order_by]].copy()
    sub["_pos"] = sub.index.to_numpy()
    sub["_implausible"] = demote(clean.loc[dup]) if demote is not None else False
    sub = sub.sort_values([*key, "_implausible", order_by, "_pos"], na_position="last", kind="stable")
    first = ~sub.duplicated(subset=key, keep="first").to_numpy()
    kept_pos = sub["_pos"].where(first).groupby([sub[k] for k in key], observed=True, dropna=False).transform("first")
    dropped = sub.loc[~first]
    positions = dropped["_pos"].to_numpy()
    detail = np.asarray([f"kept input row {int(k)}" + (" (this copy was returned before the baseline questionnaire)"
                                                       if bad else "")
                         for k, bad in zip(kept_pos.loc[dropped.index].to_numpy(), dropped["_implausible"].to_numpy(),
                                           strict=True)], dtype=object)
    exclusions.append(_exclusion_block(
        table.name, positions, _row_keys(raw, table.key, positions), "cleaning",
        np.where(dropped["_implausible"].to_numpy(dtype=bool),
                 "duplicate key: a copy returned after the baseline questionnaire was kept",
                 f"duplicate key: a row with an earlier {order_by} was kept").astype(object), detail,
    ))
    return clean.drop(index=positions)


# ----------------------------------------------------------------------------------------
# clean_study
# ----------------------------------------------------------------------------------------

#: Tables with fewer rows are cleaned column by column in the calling thread.
_PARALLEL_MIN_ROWS = PARALLEL_MIN_ROWS


def _pool() -> ThreadPoolExecutor:
    return named_pool("clean")


def _background() -> ThreadPoolExecutor:
    """One worker for whole-table work (separate from :func:`_pool`, so neither waits on the other)."""
    return named_pool("clean-table", max_workers=1)


class _Done:
    """Runs :func:`_harmonize_column` when its result is asked for (the sequential path)."""

    def __init__(self, s: pd.Series, col: Column, ctx: _Ctx):
        self.args = (s, col, ctx)

    def result(self) -> pd.Series:
        return _harmonize_column(*self.args)

    def cancel(self) -> bool:
        return False


_Jobs = list[tuple[Column, Any]]


def _start_columns(raw: pd.DataFrame, table: Table, keep: np.ndarray | None) -> _Jobs:
    """Start harmonizing every described column of ``raw`` (the rows ``keep``; ``None``: all).

    Columns are independent: with enough rows they are harmonized in threads (numpy and Arrow
    release the GIL), each with its own log and summary lists; :func:`_clean_table` merges them
    in column order. A column absent from ``raw`` has no job (``None``).
    """
    n = len(raw) if keep is None else len(keep)
    pool = _pool() if n >= _PARALLEL_MIN_ROWS else None
    jobs: _Jobs = []
    for col in table:
        if col.name not in raw.columns:
            jobs.append((col, None))
            continue
        s = raw[col.name]
        if keep is not None:
            s = s.take(keep)
        sub = _Ctx(table, raw, keep, [], [])
        job = pool.submit(_harmonize_column, s, col, sub) if pool is not None else _Done(s, col, sub)
        jobs.append((col, (job, sub)))
    return jobs


def _cancel(jobs: _Jobs | None) -> None:
    """Cancel the jobs not started yet (their results, and errors, are never asked for)."""
    for _, item in jobs or ():
        if item is not None:
            item[0].cancel()


def _speculate(raw: pd.DataFrame, table: Table) -> _Jobs:
    """Harmonize all rows of a large table while its exact-duplicate search runs in the background.

    Most exports have no exact duplicate rows, and then the rows kept are all rows: the columns
    harmonized now are the ones :func:`_clean_table` would harmonize after the search, so the
    thread pool works instead of waiting. When the search does drop rows, :func:`_clean_table`
    cancels these jobs, ignores their results and errors, and harmonizes the rows kept, so the
    outcome (tables, log, summary, first error) is exactly that of a sequential pass.
    """
    return _start_columns(raw, table, None)


#: Large tables harmonized ahead of their duplicate search: the one awaited and the next one.
_SPECULATE_AHEAD = 2


class _Speculation:
    """Which large tables :func:`clean_study` harmonizes speculatively (:func:`_speculate`).

    Jobs are started for the table whose duplicate search is about to be awaited and for the
    next large one (whose search follows in the same background thread), as long as no table
    so far has lost rows: an export that repeats rows in one table usually does in others,
    and speculation there is redone, wasting the pool and queueing the real jobs behind it.
    Only the amount of work depends on this; the results never do.
    """

    def __init__(self, raw_tables: Mapping[str, Any], dd: DataDictionary, ahead: Mapping[str, Any]):
        self.raw_tables, self.dd = raw_tables, dd
        self.order = [name for name in dd.tables if name in ahead]
        self.jobs: dict[str, _Jobs] = {}
        self.active = True

    def jobs_for(self, name: str) -> _Jobs | None:
        """The speculative jobs of table ``name`` (``None``: none), after starting the next table's."""
        if self.active and name in self.order:
            at = self.order.index(name)
            for other in self.order[at:at + _SPECULATE_AHEAD]:
                if other not in self.jobs:
                    self.jobs[other] = _speculate(self.raw_tables[other], self.dd[other])
        return self.jobs.pop(name, None)

    def stop(self) -> None:
        self.active = False
        self.cancel()

    def cancel(self) -> None:
        for jobs in self.jobs.values():
            _cancel(jobs)
        self.jobs.clear()


def _clean_table(raw: pd.DataFrame, table: Table, log_blocks: list, summary_rows: list,
                 exclusions: list, duplicates: tuple[Future, list] | None = None,
                 started: _Jobs | None = None,
                 demote: Callable[[pd.DataFrame], np.ndarray] | None = None) -> pd.DataFrame:
    try:
        if duplicates is None:
            keep, key_repeated = _exact_duplicates(raw, table, exclusions)
        else:  # computed ahead in the background, with its own exclusions list
            keep, key_repeated = duplicates[0].result()
            exclusions.extend(duplicates[1])
    except BaseException:
        _cancel(started)
        raise
    if started is not None and keep is not None:  # rows were dropped: the speculation is void
        _cancel(started)
        started = None
    n_summary = len(summary_rows)
    n = len(raw) if keep is None else len(keep)
    columns: dict[str, pd.Series] = {}
    # Merged in column order, so the result, the log order and the first error raised are
    # exactly those of a sequential pass.
    jobs = started if started is not None else _start_columns(raw, table, keep)
    try:
        for col, item in jobs:
            if item is None:
                columns[col.name] = _empty_column(_kind(col), n, col, table.name)
                summary_rows.append((table.name, col.name, "column_added", n, False))
                continue
            job, sub = item
            columns[col.name] = job.result().reset_index(drop=True)
            log_blocks.extend(sub.log_blocks)
            summary_rows.extend(sub.summary_rows)
    finally:
        _cancel(jobs)
    for extra in raw.columns:
        if extra not in table.columns:
            s = raw[extra] if keep is None else raw[extra].take(keep)
            columns[extra] = s.reset_index(drop=True)
            summary_rows.append((table.name, extra, "not_in_dictionary_kept_as_is", n, False))
    index = pd.RangeIndex(len(raw)) if keep is None else pd.Index(keep, dtype="int64")
    out = pd.DataFrame(columns, copy=False)
    out.index = index
    # raw keys were all distinct: harmonized keys can only collide if a key column was recoded
    recoded = {row[1] for row in summary_rows[n_summary:]}
    if key_repeated or recoded & set(table.key):
        return _duplicate_keys(out, table, raw, exclusions, demote)
    return out


def _arrow_strings(s: pd.Series) -> pa.Array:
    """Identifier values as one (unchunked) Arrow ``large_string`` array, for hash lookups."""
    return _arrow_text(s).combine_chunks()


def _index_in(values: pd.Series, keys: pd.Series) -> np.ndarray:
    """Position of each of ``values`` in ``keys`` (unique: cleaning guarantees it; -1 if absent).

    One Arrow hash lookup; pandas' own lookups on Arrow strings convert to Python objects first.
    """
    found = pc.index_in(_arrow_strings(values), value_set=_arrow_strings(keys)).fill_null(-1)
    return found.to_numpy(zero_copy_only=False).astype("int64")


def _all_patient_rows(tables: dict[str, pd.DataFrame],
                      known: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """:func:`patient_rows` of every patient table with one lookup (the patient ids are hashed once).

    ``known``: rows already found for some tables (:func:`_known_patient_rows`); only the
    others are looked up (none at all when every table is known).
    """
    known = known or {}
    todo = [name for name in _PATIENT_TABLES if name not in known]
    out = dict(known)
    if not todo:
        return {name: out[name] for name in _PATIENT_TABLES}
    parts = [_arrow_strings(tables[name]["patient_id"]) for name in todo]
    combined = pa.concat_arrays(parts)
    found = pc.index_in(combined, value_set=_arrow_strings(tables["patients"]["patient_id"])).fill_null(-1)
    found = found.to_numpy(zero_copy_only=False).astype("int64")
    start = 0
    for name, part in zip(todo, parts, strict=True):
        out[name] = found[start:start + len(part)]
        start += len(part)
    return {name: out[name] for name in _PATIENT_TABLES}


def _known_unique(facts: _KeyFacts | None, name: str, raw: pd.DataFrame, table: Table) -> bool:
    """Whether ``load_study`` proved the one key column of this very raw table free of repeats."""
    return (facts is not None and len(table.key) == 1 and table.key[0] in raw.columns
            and facts.is_unique(name, raw[table.key[0]]))


def _known_patient_rows(facts: _KeyFacts | None, raws: dict[str, pd.DataFrame], tables: dict[str, pd.DataFrame],
                        summary_rows: list) -> dict[str, np.ndarray]:
    """:func:`_all_patient_rows` of the patient tables whose answer ``load_study`` already found.

    ``load_study`` looked every raw ``patient_id`` up in the raw ``patients`` table (whose ids it
    found all distinct and present) and kept the raw positions, tied to the very Arrow data
    looked up (:class:`backpain_analysis.loading._KeyFacts`). They answer for the clean tables when:

    - the raw ``patient_id`` columns of both tables are still that data (not modified since);
    - cleaning changed no ``patient_id`` value of either table (no summary row for the column:
      identifiers are only ever blanked, and that is counted);
    - positions are mapped: clean tables are indexed by input position, so a clean child row
      is the raw row ``index``, and a raw patient position becomes the clean one through the
      clean ``patients`` index (-1 if that row was dropped: its id, being unique, is then absent).

    Tables not meeting these are left out (looked up by the caller).
    """
    if facts is None:
        return {}
    touched = {(row[0], row[1]) for row in summary_rows}
    raw_patients, clean_patients = raws.get("patients"), tables["patients"]
    if (raw_patients is None or "patient_id" not in raw_patients.columns
            or ("patients", "patient_id") in touched):
        return {}
    index = clean_patients.index
    to_clean = None
    if not index.equals(pd.RangeIndex(len(raw_patients))):
        # raw position -> clean position, with one extra slot so that -1 maps to -1
        to_clean = np.full(len(raw_patients) + 1, -1, dtype="int64")
        to_clean[index.to_numpy(dtype="int64")] = np.arange(len(index))
    out = {}
    for name in _PATIENT_TABLES:
        raw = raws.get(name)
        if raw is None or "patient_id" not in raw.columns or (name, "patient_id") in touched:
            continue
        found = facts.positions(name, "patient_id", raw["patient_id"], raw_patients["patient_id"])
        if found is None:
            continue
        rows = found.astype("int64")
        if not tables[name].index.equals(pd.RangeIndex(len(raw))):
            rows = rows[tables[name].index.to_numpy(dtype="int64")]
        if to_clean is not None:
            rows = to_clean[rows]
        out[name] = rows
    return out


def patient_rows(clean_or_tables: CleanStudy | dict[str, pd.DataFrame], table: str) -> np.ndarray:
    """For each row of ``table``, the position of its patient in the clean ``patients`` table (-1 if none).

    One hash lookup of the ``patient_id`` strings per table; the result is cached on a
    :class:`CleanStudy` (and recomputed if the table object was replaced), so later joins
    between patient tables are integer indexing.
    """
    cache: dict | None = None
    if isinstance(clean_or_tables, dict):
        tables = clean_or_tables
    else:
        tables = clean_or_tables.tables
        if isinstance(clean_or_tables, CleanStudy):
            if clean_or_tables._cohort_cache is None:
                clean_or_tables._cohort_cache = {}
            cache = clean_or_tables._cohort_cache
    patients, t = tables["patients"], tables[table]
    if cache is not None:
        hit = cache.get(table)
        if hit is not None and hit[0] is t and hit[1] is patients:
            return hit[2]
    if table == "patients":
        rows = np.arange(len(patients))
    else:
        rows = _index_in(t["patient_id"], patients["patient_id"])
    if cache is not None:
        cache[table] = (t, patients, rows)
    return rows


def _followup_windows(followups: pd.DataFrame, patients: pd.DataFrame, rows: np.ndarray,
                      windows: Mapping[int, tuple[float, float]], reference: str) -> pd.DataFrame:
    ref = patients["baseline_date"] if reference == "baseline_date" else patients["consultation_date"]
    if reference == "baseline_date":
        ref = ref.fillna(patients["consultation_date"])
    ref_values = ref.to_numpy(dtype="datetime64[ns]")
    nat = np.datetime64("NaT", "ns")
    ref_dates = np.full(len(rows), nat)
    if len(ref_values):
        ref_dates = np.where(rows >= 0, ref_values[np.where(rows >= 0, rows, 0)], nat)
    returned = followups["return_date"].to_numpy(dtype="datetime64[ns]")
    days = (returned - ref_dates).astype("timedelta64[s]").astype("float64") / 86400
    days[np.isnat(returned) | np.isnat(ref_dates)] = np.nan
    tp = followups["time_point"].to_numpy(dtype="float64", na_value=np.nan)
    nominal = np.full(len(followups), np.nan)
    half = np.full(len(followups), np.nan)
    for point, (nom, width) in windows.items():
        hit = tp == float(point)
        nominal[hit], half[hit] = nom, width
    inside = np.abs(days - nominal) <= half
    known = ~(np.isnan(days) | np.isnan(nominal))
    return followups.assign(followup_days=days,
                            in_window=pd.arrays.BooleanArray(np.where(known, inside, False), ~known))


def _analysis_exclusions(tables: dict[str, pd.DataFrame], rows_of: dict[str, np.ndarray],
                         raws: dict[str, pd.DataFrame], dd: DataDictionary, exclusions: list[pd.DataFrame],
                         implausible: dict[int, tuple[str, str]] | None = None) -> None:
    """Rows not in the analysis cohort (``stage="analysis"``).

    ``implausible``: clean ``patients`` positions -> (reason, detail) of respondents that a
    plausibility rule excludes; patients not analysed for their invitation outcome keep that reason.
    """
    patients = tables["patients"]
    outcome = patients["invitation_outcome"]
    reasons = {"non_respondent": "non-respondent", "excluded": "excluded at invitation"}
    if isinstance(outcome.dtype, pd.CategoricalDtype):
        # on the category codes: comparing a million Python strings costs more than the rest
        codes = outcome.cat.codes.to_numpy()
        categories = list(outcome.cat.categories)
        responded = categories.index("responded") if "responded" in categories else -2  # -1 is missing
        not_analysed = codes != responded
        labels = [reasons.get(c, "invitation outcome missing") for c in categories] + ["invitation outcome missing"]
    else:
        not_analysed = (outcome.astype(object) != "responded").fillna(True).to_numpy(dtype=bool)
    if not_analysed.any():
        # only the two columns used below: taking every column of a million-row table costs more
        # than the rest of this function
        sub = patients.loc[not_analysed, ["invitation_outcome", "exclusion_reason"]]
        if isinstance(outcome.dtype, pd.CategoricalDtype):
            reason = _labels(labels, codes[not_analysed])  # code -1 (missing) takes the last label
        else:
            out_text = sub["invitation_outcome"].astype(object)
            reason = np.where(out_text == "non_respondent", reasons["non_respondent"],
                              np.where(out_text == "excluded", reasons["excluded"], "invitation outcome missing"))
        detail = _text_values(sub["exclusion_reason"])
        pos = sub.index.to_numpy()
        exclusions.append(_exclusion_block("patients", pos, _row_keys(raws["patients"], dd["patients"].key, pos),
                                           "analysis", reason, detail))
    extra = sorted(k for k in (implausible or {}) if not not_analysed[k])
    if extra:
        at = np.asarray(extra, dtype="int64")
        pos = patients.index.to_numpy()[at]
        exclusions.append(_exclusion_block(
            "patients", pos, _row_keys(raws["patients"], dd["patients"].key, pos), "analysis",
            np.asarray([implausible[k][0] for k in extra], dtype=object),
            np.asarray([implausible[k][1] for k in extra], dtype=object)))
        not_analysed = not_analysed.copy()
        not_analysed[at] = True
    consent = patients["record_review_consent"].to_numpy(dtype="float64", na_value=np.nan)
    for name in _PATIENT_TABLES:
        t = tables[name]
        if len(t) == 0:
            continue
        rows = rows_of[name]
        known = rows >= 0
        safe = np.where(known, rows, 0)
        # 0 analysed, 1 patient not analysed, 2 unknown patient, 3 record without consent
        code = np.where(~known, 2, np.where(not_analysed[safe], 1, 0))
        if name == "records":
            code[(code == 0) & (consent[safe] != 1)] = 3
        drop = np.flatnonzero(code)
        if drop.size:
            labels = ["", "patient not analysed", "patient not in the patients table", "no record-review consent"]
            pos = t.index.to_numpy()[drop]
            exclusions.append(_exclusion_block(name, pos, _row_keys(raws[name], dd[name].key, pos), "analysis",
                                               _labels(labels, code[drop]), ""))


# ----------------------------------------------------------------------------------------
# plausibility rules (data dictionary, section ``plausibility``)
# ----------------------------------------------------------------------------------------

@dataclass
class _Found:
    """Rows of one clean table that one plausibility rule finds (positions in the clean table)."""

    rule: str
    table: str
    column: str
    positions: np.ndarray
    detail: list[str]
    reason: str


def _day(value: Any, what: str) -> pd.Timestamp:
    try:
        day = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise CleaningError(f"{what} must be a date (YYYY-MM-DD), not {value!r}") from exc
    if pd.isna(day):
        raise CleaningError(f"{what} must be a date (YYYY-MM-DD), not {value!r}")
    return day.normalize()


def _windows_from_truth(truth: Any) -> dict[int, tuple[pd.Timestamp, pd.Timestamp]] | None:
    """Recruitment windows of a synthetic study, from its ``truth.json`` generator parameters."""
    params = truth.get("parameters") if isinstance(truth, dict) else None
    if not isinstance(params, dict) or not {"phase1_start", "phase1_months", "phase2_months",
                                            "phase3_months"} <= set(params):
        return None
    try:
        day0 = pd.Timestamp(params["phase1_start"])
        month0 = day0.to_period("M").to_timestamp()
        m1, m2, m3 = (int(params[k]) for k in ("phase1_months", "phase2_months", "phase3_months"))
    except (ValueError, TypeError):
        return None
    one = pd.Timedelta(days=1)
    return {1: (day0, month0 + pd.DateOffset(months=m1) - one),
            3: (month0 + pd.DateOffset(months=m1 + m2), month0 + pd.DateOffset(months=m1 + m2 + m3) - one)}


def _plausibility_settings(dd: DataDictionary, plausibility: Mapping[str, str] | None, export_date: Any,
                           recruitment_windows: Mapping[int, Any] | None, truth: Any
                           ) -> tuple[dict[str, str], pd.Timestamp, dict[int, tuple[pd.Timestamp, pd.Timestamp]] | None,
                                      str]:
    """(action by rule, export date, recruitment windows or None, where the windows come from)."""
    section = getattr(dd, "plausibility", None) or {}
    rules = section.get("rules") or {}
    actions = {name: str(rule.get("action", "flag")) for name, rule in rules.items()}
    for name, action in dict(plausibility or {}).items():
        if name not in actions:
            raise CleaningError(f"plausibility: unknown rule {name!r}; the data dictionary has {', '.join(actions)}")
        actions[name] = action
    for name, action in actions.items():
        if action not in PLAUSIBILITY_ACTIONS:
            raise CleaningError(f"plausibility rule {name!r}: action must be one of {PLAUSIBILITY_ACTIONS}, "
                                f"not {action!r}")
    if export_date is None:
        export_date = section.get("export_date")
    export = _day(export_date, "export_date") if export_date is not None else pd.Timestamp.today().normalize()
    given = recruitment_windows if recruitment_windows is not None else section.get("recruitment_windows")
    source = "given"
    windows = None
    if given:
        windows = {}
        for phase, spec in dict(given).items():
            if spec is None or len(tuple(spec)) != 2:
                raise CleaningError(f"recruitment_windows[{phase!r}] must be (first date, last date), not {spec!r}")
            lo, hi = (_day(v, f"recruitment_windows[{phase!r}]") for v in spec)
            if hi < lo:
                raise CleaningError(f"recruitment_windows[{phase!r}]: the last date {hi.date()} is before the first "
                                    f"{lo.date()}")
            windows[int(phase)] = (lo, hi)
    else:
        windows = _windows_from_truth(truth)
        source = "truth.json" if windows else "none"
    return actions, export, windows, source


def _implausible_dates(tables: dict[str, pd.DataFrame], rows_of: dict[str, np.ndarray], dd: DataDictionary,
                       rules: Mapping[str, Any], export: pd.Timestamp,
                       windows: dict[int, tuple[pd.Timestamp, pd.Timestamp]] | None,
                       fu_windows: Mapping[int, tuple[float, float]]) -> list[_Found]:
    """Every row each plausibility rule finds, rule by rule (dictionary order), table by table.

    Vectorized comparisons of ``datetime64`` columns; the text of the details is built only for
    the rows found.
    """
    found: list[_Found] = []

    def dates(t: pd.DataFrame, column: str) -> np.ndarray:
        return t[column].to_numpy(dtype="datetime64[ns]")

    def add(rule: str, table: str, column: str, mask: np.ndarray, detail: Callable[[int], str], reason: str) -> None:
        pos = np.flatnonzero(mask)
        if pos.size:
            found.append(_Found(rule, table, column, pos, [detail(int(i)) for i in pos], reason))

    def iso(v: np.datetime64) -> str:
        return "blank" if np.isnat(v) else str(v)[:10]

    if "date_after_export" in rules:
        limit = export.to_datetime64()
        for name, t in tables.items():
            for col in dd[name]:
                if col.type == "date" and col.name in t.columns and len(t):
                    v = dates(t, col.name)
                    add("date_after_export", name, col.name, v > limit,
                        lambda i, v=v, c=col.name: f"{c} {iso(v[i])}",
                        f"{col.name} after the export date {export.date()}")
    patients = tables["patients"]
    consult = dates(patients, "consultation_date") if "consultation_date" in patients else None
    baseline = dates(patients, "baseline_date") if "baseline_date" in patients else None
    if "baseline_before_consultation" in rules and consult is not None and baseline is not None:
        add("baseline_before_consultation", "patients", "baseline_date", baseline < consult,
            lambda i: f"baseline {iso(baseline[i])}, consultation {iso(consult[i])}",
            "baseline questionnaire returned before the index consultation")
    fu = tables["followups"]
    before = np.zeros(len(fu), dtype=bool)
    if len(fu) and consult is not None and "return_date" in fu:
        rows = rows_of["followups"]
        ref_all = consult if baseline is None else np.where(np.isnat(baseline), consult, baseline)
        nat = np.datetime64("NaT", "ns")
        ref = np.append(ref_all, nat)[np.where(rows >= 0, rows, len(ref_all))]
        returned = dates(fu, "return_date")
        before = returned < ref
        if "followup_before_baseline" in rules:
            add("followup_before_baseline", "followups", "return_date", before,
                lambda i: f"returned {iso(returned[i])}, baseline {iso(ref[i])}",
                "follow-up returned before the baseline questionnaire")
    if "followup_outside_window" in rules and len(fu) and "in_window" in fu:
        outside = (fu["in_window"].to_numpy(dtype="float64", na_value=np.nan) == 0) & ~before
        tp = fu["time_point"].to_numpy(dtype="float64", na_value=np.nan)
        days = fu["followup_days"].to_numpy(dtype="float64")

        def window_detail(i: int) -> str:
            nom, half = fu_windows.get(int(tp[i]), (np.nan, np.nan))
            return f"{int(tp[i])} months, returned on day {days[i]:.0f} (window {nom:.0f} +/- {half:.0f})"

        add("followup_outside_window", "followups", "return_date", outside, window_detail,
            "follow-up returned outside its window")
    if "consultation_outside_recruitment" in rules and windows:
        for name in ("patients", "consultations"):
            t = tables[name]
            if not len(t) or "phase" not in t or "consultation_date" not in t:
                continue
            phase = t["phase"].to_numpy(dtype="float64", na_value=np.nan)
            when = dates(t, "consultation_date")
            outside = np.zeros(len(t), dtype=bool)
            for ph, (lo, hi) in windows.items():
                outside |= (phase == ph) & ((when < lo.to_datetime64()) | (when > hi.to_datetime64()))

            def recruit_detail(i: int, phase=phase, when=when) -> str:
                lo, hi = windows[int(phase[i])]
                return f"phase {int(phase[i])}, {iso(when[i])} (window {lo.date()} to {hi.date()})"

            add("consultation_outside_recruitment", name, "consultation_date", outside, recruit_detail,
                "index consultation outside the recruitment window of its phase")
    return found


def _returned_before_baseline(patients: pd.DataFrame) -> Callable[[pd.DataFrame], np.ndarray]:
    """For duplicated follow-ups: which were returned before their patient's baseline questionnaire
    (the index consultation when the baseline date is missing), as rule ``followup_before_baseline`` finds."""

    def before(rows: pd.DataFrame) -> np.ndarray:
        if not {"patient_id", "consultation_date"} <= set(patients.columns) or "return_date" not in rows:
            return np.zeros(len(rows), dtype=bool)
        ref = patients["consultation_date"].to_numpy(dtype="datetime64[ns]")
        if "baseline_date" in patients:
            base = patients["baseline_date"].to_numpy(dtype="datetime64[ns]")
            ref = np.where(np.isnat(base), ref, base)
        at = _index_in(rows["patient_id"], patients["patient_id"])
        ref = np.append(ref, np.datetime64("NaT", "ns"))[np.where(at >= 0, at, len(ref))]
        return rows["return_date"].to_numpy(dtype="datetime64[ns]") < ref

    return before


def _apply_plausibility(found: list[_Found], actions: Mapping[str, str], tables: dict[str, pd.DataFrame],
                        raws: dict[str, pd.DataFrame], dd: DataDictionary, exclusions: list[pd.DataFrame],
                        flags: list[pd.DataFrame]) -> tuple[dict[int, tuple[str, str]], list[_Found]]:
    """Raise for ``error`` rules; flag ``flag`` rows; drop excluded rows of tables not kept when excluded.

    Returns the patients to exclude (clean position -> (reason, detail)) and the excluded rows of the
    other patient tables (applied after the analysis cohort is known, see :func:`_exclude_rows`).
    """
    errors = [f for f in found if actions[f.rule] == "error"]
    if errors:
        parts = []
        for f in errors:
            t = tables[f.table]
            keys = _row_keys(raws[f.table], dd[f.table].key, t.index.to_numpy()[f.positions[:5]])
            shown = "; ".join(f"{k}: {d}" for k, d in zip(keys, f.detail[:5], strict=True))
            parts.append(f"table {f.table!r}, column {f.column!r}: {f.positions.size} row(s) fail plausibility rule "
                         f"{f.rule!r} ({f.reason}), e.g. {shown}")
        raise CleaningError("implausible dates (data/data_dictionary.yaml, plausibility rules with action 'error'; "
                            "correct the export, or choose another action with clean_study(plausibility={rule: "
                            "'exclude' | 'flag'})):\n- " + "\n- ".join(parts))
    patients: dict[int, tuple[str, str]] = {}
    later: list[_Found] = []
    for f in found:
        action = actions[f.rule]
        t = tables[f.table]
        if action == "flag":
            pos = t.index.to_numpy()[f.positions]
            flags.append(pd.DataFrame({"table": f.table, "row": pos.astype("int64"),
                                       "row_key": _row_keys(raws[f.table], dd[f.table].key, pos),
                                       "rule": f.rule, "detail": np.asarray(f.detail, dtype=object)}))
        elif f.table == "patients":
            for p, d in zip(f.positions.tolist(), f.detail, strict=True):
                patients.setdefault(p, (f.reason, d))
        elif f.table in _KEPT_WHEN_EXCLUDED:
            later.append(f)
    # tables used directly by the chapters (consultations, clinician surveys): excluded rows are dropped
    for name in {f.table for f in found if actions[f.rule] == "exclude" and f.table not in _KEPT_WHEN_EXCLUDED}:
        t = tables[name]
        seen: dict[int, tuple[str, str]] = {}
        for f in found:
            if f.table == name and actions[f.rule] == "exclude":
                for p, d in zip(f.positions.tolist(), f.detail, strict=True):
                    seen.setdefault(p, (f.reason, d))
        at = np.asarray(sorted(seen), dtype="int64")
        pos = t.index.to_numpy()[at]
        exclusions.append(_exclusion_block(name, pos, _row_keys(raws[name], dd[name].key, pos), "cleaning",
                                           np.asarray([seen[k][0] for k in at.tolist()], dtype=object),
                                           np.asarray([seen[k][1] for k in at.tolist()], dtype=object)))
        keep = np.ones(len(t), dtype=bool)
        keep[at] = False
        tables[name] = t.iloc[np.flatnonzero(keep)]
    return patients, later


def _exclude_rows(later: list[_Found], tables: dict[str, pd.DataFrame], raws: dict[str, pd.DataFrame],
                  dd: DataDictionary, exclusions: list[pd.DataFrame]) -> None:
    """Exclude rows of follow-ups, records and physio that a rule excludes, unless already excluded
    (a row of a patient not analysed keeps that reason: each input row is excluded once)."""
    for name in dict.fromkeys(f.table for f in later):
        t = tables[name]
        done = [b["row"].to_numpy() for b in exclusions if len(b) and b["table"].iloc[0] == name]
        taken = set(np.concatenate(done).tolist()) if done else set()
        seen: dict[int, tuple[str, str]] = {}
        for f in later:
            if f.table != name:
                continue
            for p, d in zip(f.positions.tolist(), f.detail, strict=True):
                if int(t.index[p]) not in taken:
                    seen.setdefault(p, (f.reason, d))
        if seen:
            at = np.asarray(sorted(seen), dtype="int64")
            pos = t.index.to_numpy()[at]
            exclusions.append(_exclusion_block(name, pos, _row_keys(raws[name], dd[name].key, pos), "analysis",
                                               np.asarray([seen[k][0] for k in at.tolist()], dtype=object),
                                               np.asarray([seen[k][1] for k in at.tolist()], dtype=object)))


def _frame(blocks: list[pd.DataFrame], columns: tuple[str, ...]) -> pd.DataFrame:
    if not blocks:
        out = pd.DataFrame({c: pd.Series([], dtype="int64" if c == "row" else "str") for c in columns})
    else:
        out = pd.concat(blocks, ignore_index=True)[list(columns)]
    for c in columns:
        if c != "row":
            out[c] = out[c].astype("str")
    return out


def clean_study(
    study: Any,
    *,
    followup_window_days: Mapping[int, tuple[float, float]] | None = None,
    followup_reference: Literal["baseline_date", "consultation_date"] = "baseline_date",
    dictionary: DataDictionary | None = None,
    plausibility: Mapping[str, str] | None = None,
    export_date: Any = None,
    recruitment_windows: Mapping[int, Any] | None = None,
) -> CleanStudy:
    """Harmonize a loaded study, fix types, resolve duplicates and record every change.

    Parameters
    ----------
    study : Study
        As returned by :func:`backpain_analysis.load_study` (anything with a ``tables`` dict
        of raw DataFrames keyed by the dictionary's table names works). Its tables are not
        modified. Tables of the dictionary that are absent are cleaned as empty tables;
        optional columns that are absent are added as all-missing (counted in ``summary``).
    followup_window_days : mapping of int to (float, float), optional
        Follow-up ``time_point`` (months) -> (nominal days after the reference date,
        half-width in days). Default :data:`DEFAULT_FOLLOWUP_WINDOW_DAYS`: 2 months = day 61
        +/- 28 days (4 weeks), 6 months = day 183 +/- 56 days (8 weeks). A follow-up outside
        its window is flagged (``in_window`` False), never dropped.
    followup_reference : {"baseline_date", "consultation_date"}, default "baseline_date"
        Date the follow-up delay is counted from. With ``baseline_date``, a patient without
        one falls back to the index ``consultation_date``.
    dictionary : DataDictionary, optional
        Defaults to ``study.dictionary`` or the bundled data dictionary.
    plausibility : mapping of str to str, optional
        Action per plausibility rule of the data dictionary (section ``plausibility``),
        overriding its default: ``"error"``, ``"exclude"`` or ``"flag"``. Rules and defaults:
        ``date_after_export`` error, ``baseline_before_consultation`` flag,
        ``followup_before_baseline`` exclude, ``followup_outside_window`` flag (analysed as
        returned; ``"exclude"`` treats such answers as missing),
        ``consultation_outside_recruitment`` exclude.
    export_date : date or str, optional
        The day the data were exported (dates after it are impossible). Default: the
        dictionary's ``plausibility.export_date``, else the day the analysis runs.
    recruitment_windows : mapping of int to (date, date), optional
        Phase -> first and last date of the index consultations recruited in that phase.
        Default: the dictionary's ``plausibility.recruitment_windows``, else the phases of a
        synthetic study's ``truth.json`` parameters, else not checked (said in ``notes``).

    Returns
    -------
    CleanStudy
        ``tables`` (clean, typed), ``cleaning_log`` (table, row, row_key, column, old_value,
        new_value, rule), ``exclusions`` (table, row, row_key, stage, reason, detail),
        ``summary`` (table, column, rule, n_cells, logged), ``input_rows``, ``options``,
        ``flags`` (table, row, row_key, rule, detail), ``notes``.

    Raises
    ------
    CleaningError
        A value no rule accepts, an unknown table, duplicate keys in a table without a
        ``duplicate_rule``, rows found by a plausibility rule whose action is ``"error"``
        (every such rule listed with its rows), or an invalid option.

    Notes
    -----
    Rules, in order: (1) exact duplicate rows dropped (the first copy kept); (2) per column,
    on the distinct values: labels/aliases -> codes (``text_to_code``), numeric missing codes
    -> missing (``missing_code``), blanks and textual missing markers -> missing (counted
    only, the value was already missing), dates parsed ISO 8601 first, then day first
    (``%d/%m/%Y``, ``%d-%m-%Y``, ``%d.%m.%Y``, two-digit years, ``15 Mar 2008``;
    ``date_format`` when not ISO), types fixed (``Int64``, ``float64``, ``datetime64[ns]``,
    categoricals, ``str``); (3) duplicate keys resolved by ``duplicate_rule`` (keep the
    earliest by the named date; ties and missing dates: file order); (4) follow-up windows
    flagged; (5) plausibility rules (``data/data_dictionary.yaml``, section ``plausibility``):
    ``error`` stops, ``exclude`` lists the row in ``exclusions`` with the rule as its reason
    (a patient is then not analysed, nor are its follow-ups, records and physio episodes; a
    follow-up is not used; a consultation or clinician survey is dropped from its clean table,
    ``stage="cleaning"``), ``flag`` keeps the row and lists it in ``flags``; a row is excluded
    once, for the first reason found (invitation outcome first); (6) rows not in the analysis
    cohort listed with ``stage="analysis"``: patients who did not respond or were excluded at
    invitation, their follow-ups, records and physio episodes, and record reviews without
    recorded consent (``record_review_consent`` not 1). A follow-up with duplicates keeps
    its earliest copy returned after the baseline questionnaire (when
    ``followup_before_baseline`` excludes), so an impossible early copy does not displace a
    valid one.
    Rules follow ``data/data_dictionary.yaml``; everything is vectorized (one hash pass per
    column, one log block per table, column and rule).

    Examples
    --------
    >>> import pandas as pd
    >>> from types import SimpleNamespace
    >>> raw = pd.DataFrame({"practice_id": ["P1"], "practice_name": ["North"], "list_size": ["9000"],
    ...                     "n_gps": ["5"]})
    >>> clean = clean_study(SimpleNamespace(tables={"practices": raw}))
    >>> clean.practices["list_size"].dtype
    Int64Dtype()
    """
    dd = dictionary or getattr(study, "dictionary", None) or load_dictionary()
    windows = dict(DEFAULT_FOLLOWUP_WINDOW_DAYS if followup_window_days is None else followup_window_days)
    for point, spec in windows.items():
        if len(tuple(spec)) != 2 or float(spec[1]) < 0:
            raise CleaningError(f"followup_window_days[{point!r}] must be (nominal days, half-width >= 0), not {spec!r}")
    if followup_reference not in ("baseline_date", "consultation_date"):
        raise CleaningError(f"followup_reference must be 'baseline_date' or 'consultation_date', "
                            f"not {followup_reference!r}")
    actions, export, recruitment, recruitment_source = _plausibility_settings(
        dd, plausibility, export_date, recruitment_windows, getattr(study, "truth", None))
    raw_tables = dict(getattr(study, "tables", {}) or {})
    unknown = [t for t in raw_tables if t not in dd.tables]
    if unknown:
        raise CleaningError(f"study has table(s) {unknown} that the data dictionary does not describe "
                            f"(known: {', '.join(dd.tables)})")
    log_blocks: list[pd.DataFrame] = []
    summary_rows: list[tuple[str, str, str, int, bool]] = []
    mapping_log = getattr(study, "mapping_log", None)
    if isinstance(mapping_log, pd.DataFrame) and len(mapping_log):  # recoded by load_study's mapping file, first
        log_blocks.append(mapping_log[list(LOG_COLUMNS)])
        for (t, c), n in mapping_log.groupby(["table", "column"], sort=False).size().items():
            summary_rows.append((t, c, "mapping", int(n), True))
    exclusions: list[pd.DataFrame] = []
    raws: dict[str, pd.DataFrame] = {}
    tables: dict[str, pd.DataFrame] = {}
    # Exact-duplicate searches (hashing whole key columns) of the large tables run ahead in one
    # background thread while earlier tables are harmonized; each keeps its own exclusions list,
    # merged at the table's turn, so the order of everything is that of a sequential pass.
    ahead: dict[str, tuple[Future, list]] = {}
    # what load_study learnt about the identifiers (None for other study objects): spares hashing them again
    facts = getattr(study, "_keys", None)
    facts = facts if isinstance(facts, _KeyFacts) else None
    for name, table in dd.tables.items():
        raw = raw_tables.get(name)
        if isinstance(raw, pd.DataFrame) and len(raw) >= _PARALLEL_MIN_ROWS:
            own: list[pd.DataFrame] = []
            ahead[name] = (_background().submit(_exact_duplicates, raw, table, own,
                                                _known_unique(facts, name, raw, table)), own)
    # and meanwhile the thread pool harmonizes those tables on the bet that no row is dropped
    speculation = _Speculation(raw_tables, dd, ahead)
    try:
        for name, table in dd.tables.items():
            raw = raw_tables.get(name)
            if raw is None:
                raw = pd.DataFrame({c: pd.Series([], dtype=object) for c in table.columns})
                summary_rows.append((name, "", "table_absent_empty_table_used", 0, False))
            if not isinstance(raw, pd.DataFrame):
                raise CleaningError(f"table {name!r} is a {type(raw).__name__}, not a DataFrame")
            raws[name] = raw
            demote = None
            if name == "followups" and actions.get("followup_before_baseline") == "exclude" and "patients" in tables:
                demote = _returned_before_baseline(tables["patients"])
            tables[name] = _clean_table(raw, table, log_blocks, summary_rows, exclusions, ahead.get(name),
                                        speculation.jobs_for(name), demote)
            if len(tables[name]) < len(raw):
                speculation.stop()
    finally:
        speculation.cancel()
    rows_of = _all_patient_rows(tables, _known_patient_rows(facts, raws, tables, summary_rows))
    tables["followups"] = _followup_windows(tables["followups"], tables["patients"], rows_of["followups"], windows,
                                            followup_reference)
    notes = list(getattr(study, "notes", None) or [])
    if recruitment is None and "consultation_outside_recruitment" in actions:
        notes.append("recruitment windows not given (clean_study(recruitment_windows=...) or the data dictionary's "
                     "plausibility.recruitment_windows): consultation dates were not checked against them")
    found = _implausible_dates(tables, rows_of, dd, actions, export, recruitment, windows)
    flag_blocks: list[pd.DataFrame] = []
    implausible, later = _apply_plausibility(found, actions, tables, raws, dd, exclusions, flag_blocks)
    _analysis_exclusions(tables, rows_of, raws, dd, exclusions, implausible)
    _exclude_rows(later, tables, raws, dd, exclusions)
    summary = pd.DataFrame(summary_rows, columns=["table", "column", "rule", "n_cells", "logged"])
    result = CleanStudy(
        tables=tables,
        cleaning_log=_frame(log_blocks, LOG_COLUMNS),
        exclusions=_frame(exclusions, EXCLUSION_COLUMNS),
        summary=summary,
        input_rows={name: len(raw) for name, raw in raws.items()},
        options={"followup_window_days": windows, "followup_reference": followup_reference,
                 "plausibility": actions, "export_date": export,
                 "recruitment_windows": recruitment, "recruitment_windows_from": recruitment_source},
        dictionary=dd,
        truth=getattr(study, "truth", None),
        path=getattr(study, "path", None),
        flags=_frame(flag_blocks, FLAG_COLUMNS),
        notes=notes,
    )
    result._cohort_cache = {name: (tables[name], tables["patients"], rows_of[name]) for name in _PATIENT_TABLES}
    return result
