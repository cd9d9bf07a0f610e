"""pandera schemas of the study tables, built only from the data dictionary.

Each table of ``data/data_dictionary.yaml`` becomes one :class:`pandera.pandas.DataFrameSchema`
(:func:`build_schema`). The schemas check raw exports as they really come, so the dictionary
and the checks cannot disagree:

- coded columns accept their codes (as numbers or text), the code labels and the aliases
  (case-insensitive, surrounding spaces ignored: ``"Agree"``, ``" agree"``, ``"Yes"``,
  ``"VERY MUCH"``) and the column's missing codes (``Column.missing_codes``: ``9``, ``99``,
  ``-1``, ``"NA"``, blank, ...);
- date columns accept ISO 8601 and the common UK formats (:data:`DATE_FORMATS`);
- numeric ranges are checked after the missing codes are set aside;
- identifier columns match their pattern; key columns must not be blank.

Every check is vectorized (values are checked once per distinct value where that is
cheaper), so validating a million-row table costs a fraction of reading it.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Callable

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow as pa_arrow
import pyarrow.compute as pc

from .dictionary import Column, Table

__all__ = ["DATE_FORMATS", "DATE_MAX", "DATE_MIN", "build_schema", "column_rule", "in_date_range", "parse_dates",
           "valid_values"]

#: Date formats accepted in date columns, tried in this order (day first: UK exports).
#: ``"ISO8601"`` covers ``2009-03-05``, ``2009-03-05T10:30`` and ``20090305``.
DATE_FORMATS: tuple[str, ...] = ("ISO8601", "%d/%m/%Y", "%d-%m-%Y", "%d.%m.%Y", "%Y/%m/%d", "%d %b %Y", "%d %B %Y")
#: Earliest and latest date accepted in a date column. Clean tables hold dates as ``datetime64[ns]``, which
#: cannot represent years before 1677 or after 2262; a date outside these bounds (``1500-01-01``, a typo
#: for ``2015``) is an invalid value, not silently wrapped into another century.
DATE_MIN: pd.Timestamp = pd.Timestamp("1678-01-01")
DATE_MAX: pd.Timestamp = pd.Timestamp("2261-12-31")


def _missing_text(col: Column) -> set[str]:
    return {m.strip().lower() for m in col.missing_codes}


def _as_float(values) -> set[float]:
    out = set()
    for v in values:
        try:
            out.add(float(v))
        except (TypeError, ValueError):
            continue
    return out


def _missing_description(col: Column) -> str:
    if not col.missing_codes:
        return ""
    shown = ", ".join("blank" if m == "" else m for m in col.missing_codes)
    return f" (missing: {shown})"


def column_rule(col: Column) -> str:
    """The plain-words rule a value of ``col`` must follow (used as the check's ``error=``).

    Examples
    --------
    >>> from backpain_analysis import load_dictionary
    >>> column_rule(load_dictionary()["patients"].columns["age"])
    'a whole number from 18 to 110 (missing: blank, NA, N/A, -1)'
    """
    if col.type == "date" and col.codes is None:
        return ("a date (YYYY-MM-DD, DD/MM/YYYY, DD-MM-YYYY, DD.MM.YYYY, YYYY/MM/DD or 5 Mar 2009) "
                f"from {DATE_MIN.year} to {DATE_MAX.year}" + _missing_description(col))
    if col.pattern and col.codes is None:
        return "letters, digits, '_' or '-' only"
    rule = col.describe_rule()
    if col.type == "integer" and col.codes is None:
        rule = rule.replace("a number", "a whole number")
    return rule + _missing_description(col)


def _is_numeric(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype)


def _by_distinct(s: pd.Series, ok_distinct: Callable[[pd.Series], np.ndarray]) -> pd.Series:
    """Apply a vectorized check to the distinct non-missing values of ``s``, map back to rows."""
    distinct = pd.Series(pd.unique(s))
    distinct = distinct[distinct.notna()]
    if distinct.empty:
        return pd.Series(True, index=s.index)
    ok = np.asarray(ok_distinct(distinct), dtype=bool)
    if ok.all():
        return pd.Series(True, index=s.index)
    return ~s.isin(distinct[~ok].tolist())


def _numeric_ok(s: pd.Series, accept: Callable[[np.ndarray], np.ndarray]) -> pd.Series:
    """Row-wise check of a numeric column on its numpy values (missing is acceptable)."""
    if pd.api.types.is_integer_dtype(s.dtype) and not isinstance(s.dtype, pd.api.extensions.ExtensionDtype):
        return pd.Series(accept(s.to_numpy()), index=s.index)  # no missing values, no conversion
    x = s.to_numpy(dtype="float64", na_value=np.nan)
    ok = np.isnan(x)
    ok |= accept(x)
    return pd.Series(ok, index=s.index)


#: Whole numbers up to this size compare exactly as float64 (the general checks' dtype).
_EXACT_INT = 2**53


def _integer_runs(values: set[float]) -> list[tuple[int, int]]:
    """The whole numbers among ``values`` (within +-2**53) as maximal runs of consecutive integers ``(lo, hi)``."""
    runs: list[list[int]] = []
    for v in sorted(int(v) for v in values if float(v).is_integer() and abs(v) <= _EXACT_INT):
        if runs and v == runs[-1][1] + 1:
            runs[-1][1] = v
        else:
            runs.append([v, v])
    return [(lo, hi) for lo, hi in runs]


def _plain_ints(s: pd.Series) -> np.ndarray | None:
    """The values of a non-empty plain numpy integer column (no missing value possible), else ``None``."""
    dtype = s.dtype
    if not (isinstance(dtype, np.dtype) and dtype.kind in "iu") or len(s) == 0:
        return None
    return s.to_numpy()


def _ints_within(s: pd.Series, runs: list[tuple[int, int]]) -> bool:
    """Fast path of the code checks: a plain integer column whose minimum and maximum lie in one run of
    accepted consecutive integers (:func:`_integer_runs`) holds only accepted values.

    Exact: every integer between the run's ends is accepted, and the general check compares
    such small integers exactly. ``False`` (the caller checks row by row) for any other column.
    """
    x = _plain_ints(s) if runs else None
    if x is None:
        return False
    lo, hi = int(x.min()), int(x.max())
    return any(a <= lo and hi <= b for a, b in runs)


def _text(distinct: pd.Series) -> pd.Series:
    return distinct.map(lambda v: str(v).strip().lower()) if distinct.dtype == object else distinct.astype(str).str.strip().str.lower()


def valid_values(col: Column) -> Callable[[pd.Series], pd.Series]:
    """Row-wise validity function of ``col`` (``True`` where the raw value is acceptable).

    Missing values (``NaN``/``None``) are always acceptable here; whether a column may be
    blank is the schema's ``nullable`` setting.

    Parameters
    ----------
    col : dictionary.Column
        A column of the data dictionary.

    Returns
    -------
    callable
        Takes a Series of raw values (numbers or text) and returns a boolean Series on
        the same index.

    Examples
    --------
    >>> from backpain_analysis import load_dictionary
    >>> check = valid_values(load_dictionary()["patients"].columns["sbst_9"])
    >>> check(pd.Series(["VERY MUCH", " slightly ", "NA", 99, 3, "often", 7])).tolist()
    [True, True, True, True, True, False, False]
    """
    missing_text = _missing_text(col)
    missing_num = _as_float(col.missing_codes)

    if col.codes is not None:
        text_ok = set(col.text_to_code()) | missing_text
        num_ok = _as_float(col.codes) | missing_num
        num_ok_list = sorted(num_ok)

        def distinct_ok(d: pd.Series) -> np.ndarray:
            t = _text(d)
            return (t.isin(text_ok) | pd.to_numeric(t, errors="coerce").isin(num_ok_list)).to_numpy()

        codes_array = np.array(num_ok_list, dtype="float64")
        runs = _integer_runs(num_ok)

        def check(s: pd.Series) -> pd.Series:
            if _is_numeric(s):
                if _ints_within(s, runs):
                    return pd.Series(True, index=s.index)
                return _numeric_ok(s, lambda x: np.isin(x, codes_array))
            return _by_distinct(s, distinct_ok)

        return check

    if col.type in ("integer", "float"):
        lo = -np.inf if col.min is None else float(col.min)
        hi = np.inf if col.max is None else float(col.max)
        whole = col.type == "integer"
        missing_num_list = sorted(missing_num)

        missing_array = np.array(missing_num_list, dtype="float64")

        def number_ok(x: np.ndarray) -> np.ndarray:
            with np.errstate(invalid="ignore"):
                ok = (x >= lo) & (x <= hi)
                if whole and x.dtype.kind == "f":
                    ok &= x == np.rint(x)
            return ok | np.isin(x, missing_array)

        def distinct_ok(d: pd.Series) -> np.ndarray:
            t = _text(d)
            x = pd.to_numeric(t, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
            return t.isin(missing_text).to_numpy() | number_ok(x)

        def check(s: pd.Series) -> pd.Series:
            if _is_numeric(s):
                x = _plain_ints(s)
                # fast path: integers (whole by their dtype) whose minimum and maximum are in range
                if x is not None and lo <= x.min() and x.max() <= hi:
                    return pd.Series(True, index=s.index)
                return _numeric_ok(s, number_ok)
            return _by_distinct(s, distinct_ok)

        return check

    if col.type == "date":

        def distinct_ok(d: pd.Series) -> np.ndarray:
            is_date = d.map(lambda v: isinstance(v, (_dt.date, np.datetime64)) and in_date_range(v)
                            ).to_numpy(dtype=bool)
            ok = _text(d).isin(missing_text).to_numpy() | is_date
            if not ok.all():
                ok = ok | parse_dates(d.where(~ok)).notna().to_numpy()
            return ok

        def check(s: pd.Series) -> pd.Series:
            if pd.api.types.is_datetime64_any_dtype(s.dtype):
                return pd.Series(s.isna().to_numpy() | ((s >= DATE_MIN) & (s <= DATE_MAX)).to_numpy(dtype=bool),
                                 index=s.index)
            if _is_numeric(s):
                return _numeric_ok(s, lambda x: np.zeros(len(x), dtype=bool))
            return _by_distinct(s, distinct_ok)

        return check

    if col.pattern:
        regex = re.compile(col.pattern)
        allowed = _byte_class(col.pattern)

        def check(s: pd.Series) -> pd.Series:
            text = s if pd.api.types.is_string_dtype(s.dtype) and s.dtype != object else s.map(
                lambda v: v if pd.isna(v) else str(v)).astype("object")
            values = pa_arrow.array(text, type=pa_arrow.large_string(), from_pandas=True)
            if allowed is not None and _all_in_class(values, allowed):
                return pd.Series(True, index=s.index)
            # pyarrow's RE2 directly: no per-call scan for Python-only regex features
            matched = pc.match_substring_regex(values, regex.pattern)
            ok = matched.to_numpy(zero_copy_only=False)
            return pd.Series(np.where(values.is_null().to_numpy(zero_copy_only=False), True, ok).astype(bool),
                             index=s.index)

        return check

    return lambda s: pd.Series(True, index=s.index)


def _byte_class(pattern: str) -> np.ndarray | None:
    """For a pattern ``^[...]+$`` whose class lists only ASCII letters, digits, ``_`` and ``-``
    (single characters or letter/digit ranges such as ``A-Z``), the 256 bytes it allows; else ``None``.

    Such a pattern matches a text exactly when the text is not empty and every byte of its
    UTF-8 encoding is an allowed ASCII byte (any non-ASCII character has bytes >= 0x80, never
    allowed; RE2, which pyarrow uses, is case-sensitive and its ``$`` is the end of the text).
    A ``-`` is a literal only first or last in the class, as in the regex; anything else
    (escapes, negation, other characters) answers ``None`` and the regex is used.
    """
    m = re.fullmatch(r"\^\[([^\]\\^]+)\]\+\$", pattern)
    if m is None:
        return None
    body = m.group(1)
    allowed = np.zeros(256, dtype=bool)
    kinds = (str.isdigit, str.isupper, str.islower)
    i = 0
    while i < len(body):
        c = body[i]
        if not c.isascii():
            return None
        if i + 2 < len(body) and body[i + 1] == "-":  # a range lo-hi of one kind (digits, upper, lower)
            hi = body[i + 2]
            if not (hi.isascii() and any(k(c) and k(hi) for k in kinds) and c <= hi):
                return None
            allowed[ord(c):ord(hi) + 1] = True
            i += 3
            continue
        if not (c.isalnum() or c == "_" or (c == "-" and i in (0, len(body) - 1))):
            return None
        allowed[ord(c)] = True
        i += 1
    return allowed


def _all_in_class(values: pa_arrow.Array | pa_arrow.ChunkedArray, allowed: np.ndarray) -> bool:
    """Whether every non-missing text is non-empty and made only of ``allowed`` bytes.

    Reads the Arrow buffers directly (one table lookup per byte, several times cheaper than
    running the regex per value). ``False`` also when unsure (a missing value whose slot holds
    bytes): the caller then runs the regex, which gives the row-wise answer.
    """
    chunks = values.chunks if isinstance(values, pa_arrow.ChunkedArray) else [values]
    for chunk in chunks:
        n = len(chunk)
        if n == 0:
            continue
        if chunk.type != pa_arrow.large_string():
            return False
        _, offsets, data = chunk.buffers()
        bounds = np.frombuffer(offsets, dtype=np.int64)[chunk.offset:chunk.offset + n + 1]
        lengths = np.diff(bounds)
        if chunk.null_count:
            valid = chunk.is_valid().to_numpy(zero_copy_only=False)
            if lengths[~valid].any() or not (lengths[valid] > 0).all():
                return False
        elif not (lengths > 0).all():
            return False
        if bounds[-1] > bounds[0] and not allowed[np.frombuffer(data, dtype=np.uint8)[bounds[0]:bounds[-1]]].all():
            return False
    return True


def parse_dates(values: pd.Series) -> pd.Series:
    """Parse text dates in any of :data:`DATE_FORMATS` (day first); ``NaT`` where none fits.

    Parameters
    ----------
    values : Series
        Text dates (surrounding spaces allowed).

    Returns
    -------
    Series
        ``datetime64`` values aligned on ``values.index``; ``NaT`` for missing or
        unparseable text.

    Notes
    -----
    Each format is applied to the whole Series at once (vectorized); the first format
    that parses a value wins. A date before :data:`DATE_MIN` or after :data:`DATE_MAX` is ``NaT``
    (clean tables hold ``datetime64[ns]``, which cannot represent it). Ambiguous day/month orders are read day first, as in UK
    exports (``05/03/2009`` is 5 March 2009).

    Examples
    --------
    >>> parse_dates(pd.Series(["2009-03-05", "05/03/2009", "5 Mar 2009", "03/25/2009"])).dt.day.tolist()
    [5.0, 5.0, 5.0, nan]
    >>> parse_dates(pd.Series(["1500-01-01", "2015-01-01"])).isna().tolist()
    [True, False]
    """
    text = values.astype("str").str.strip()
    out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[us]")
    todo = text.notna() & (text != "")
    for fmt in DATE_FORMATS:
        if not todo.any():
            break
        parsed = pd.to_datetime(text[todo], format=fmt, errors="coerce")
        got = parsed.notna()
        if got.any():
            out.loc[got[got].index] = parsed[got].astype("datetime64[us]")
            todo.loc[got[got].index] = False
    return out.where((out >= DATE_MIN) & (out <= DATE_MAX))


def in_date_range(value: _dt.date | np.datetime64) -> bool:
    """Whether a date or datetime object lies within :data:`DATE_MIN` .. :data:`DATE_MAX`.

    Clean tables hold dates as ``datetime64[ns]``; a date outside these bounds cannot be held
    and would wrap silently into another century, so validation and cleaning both refuse it.

    Examples
    --------
    >>> import datetime
    >>> in_date_range(datetime.date(2009, 3, 5)), in_date_range(datetime.date(1500, 1, 1))
    (True, False)
    """
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, OverflowError):
        return False
    return bool(DATE_MIN <= stamp <= DATE_MAX)


def build_schema(table: Table) -> pa.DataFrameSchema:
    """The pandera schema of one study table, built only from the data dictionary.

    Parameters
    ----------
    table : dictionary.Table
        A table of the data dictionary, e.g. ``load_dictionary()["patients"]``.

    Returns
    -------
    pandera.pandas.DataFrameSchema
        One column per dictionary column (``required`` as in the dictionary; key columns
        not nullable), ``strict=True`` so unknown columns fail, and one check per column
        whose ``error`` is the plain-words rule (:func:`column_rule`). No dtype is
        imposed: raw exports arrive as numbers or text.

    Notes
    -----
    Accepted raw values: codes, code labels and aliases (case-insensitive, spaces
    ignored), the column's missing codes, dates in :data:`DATE_FORMATS`, numbers inside
    the column's range (whole numbers for integer columns). Key uniqueness and
    cross-table keys are checked by :func:`backpain_analysis.load_study`.

    Examples
    --------
    >>> from backpain_analysis import load_dictionary
    >>> schema = build_schema(load_dictionary()["practices"])
    >>> df = pd.DataFrame({"practice_id": ["P1"], "practice_name": ["Oak"], "list_size": [9000], "n_gps": [5]})
    >>> schema.validate(df).shape
    (1, 4)
    """
    columns = {}
    for col in table:
        columns[col.name] = pa.Column(
            # ignore_na=False: the check accepts missing values itself, sparing pandera a dropna per column
            checks=[pa.Check(valid_values(col), error=column_rule(col), name=f"{table.name}.{col.name}",
                             ignore_na=False)],
            nullable=col.name not in table.key,
            required=col.required or col.name in table.key,
            coerce=False,
        )
    return pa.DataFrameSchema(columns, strict=True, name=table.name, description=table.description)
