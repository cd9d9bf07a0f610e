"""Scoring of the patient and clinician instruments, vectorized over whole DataFrames.

Every rule here comes from the project domain reference ``../shared/reference/domain.md`` section 4 ("Instruments and
scoring"), which names the published source of each instrument. The functions accept
item columns in any numeric dtype (``int64``, ``Int64``, ``float64`` with ``NaN``) or as text
digits; a value outside the allowed codes raises :class:`ScoringError` (a ``ValueError``)
naming the column, the bad values and the number of rows. Missing items are handled by an
explicit, documented rule per instrument.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import pandas as pd

from .errors import BackpainError

__all__ = [
    "EQ5D_COLUMNS",
    "GLOBAL_CHANGE_LABELS",
    "PABS_DEFAULT_MAPPING",
    "RISK_GROUPS",
    "ScoringError",
    "eq5d3l_index",
    "eq5d3l_tariff",
    "good_outcome",
    "rmdq_mcid",
    "pabs_mapping",
    "score_pabs",
    "score_rmdq",
    "score_sbst",
]

#: Ordered SBST risk groups.
RISK_GROUPS: tuple[str, ...] = ("low", "medium", "high")
#: Global change codes 1..6 in order (1 best), as in the data dictionary code set ``global_change``.
GLOBAL_CHANGE_LABELS: tuple[str, ...] = (
    "completely recovered", "much better", "better", "no change", "worse", "much worse",
)
#: EQ-5D-3L dimension columns in the order of a five-digit state (MO, SC, UA, PD, AD).
EQ5D_COLUMNS: tuple[str, ...] = ("eq5d_mo", "eq5d_sc", "eq5d_ua", "eq5d_pd", "eq5d_ad")
#: Default PABS-PT item mapping (data/data_dictionary.yaml): items 1-10 biomedical, 11-19 behavioural.
#: An ASSUMED default (consecutive blocks), not checked against the published allocation of Bishop
#: et al. (2008), which interleaves the items in some versions of the questionnaire: set the study's
#: own allocation with :func:`pabs_mapping` (chapter 06 parameters ``pabs_biomedical_items`` and
#: ``pabs_behavioural_items``).
PABS_DEFAULT_MAPPING: dict[str, tuple[str, ...]] = {
    "pabs_biomedical": tuple(f"pabs_{i}" for i in range(1, 11)),
    "pabs_behavioural": tuple(f"pabs_{i}" for i in range(11, 20)),
}

# UK MVH (Dolan 1997) time trade-off tariff: decrements for level 2 and level 3 per dimension.
_EQ5D_DECREMENTS = np.array(
    [
        [0.0, 0.069, 0.314],  # mobility
        [0.0, 0.104, 0.214],  # self-care
        [0.0, 0.036, 0.094],  # usual activities
        [0.0, 0.123, 0.386],  # pain/discomfort
        [0.0, 0.071, 0.236],  # anxiety/depression
    ]
)
_EQ5D_CONSTANT = 0.081  # any dimension above level 1
_EQ5D_N3 = 0.269  # any dimension at level 3


class ScoringError(BackpainError, ValueError):
    """Item data that cannot be scored: a missing column or a code outside the allowed set.

    It is both a :class:`~backpain_analysis.errors.BackpainError` (the CLI prints it cleanly)
    and a ``ValueError``.
    """


def _require_columns(df: pd.DataFrame, columns: Sequence[str], instrument: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise ScoringError(f"{instrument}: expected a DataFrame with columns {list(columns)}, got {type(df).__name__}")
    absent = [c for c in columns if c not in df.columns]
    if absent:
        raise ScoringError(f"{instrument}: column(s) {absent} are missing; the DataFrame has {list(df.columns)[:12]}"
                           + (" ..." if df.shape[1] > 12 else ""))


def _as_float(s: pd.Series, column: str) -> np.ndarray:
    """Values of ``s`` as float64 with NaN for missing; non-numeric text raises ScoringError."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        s = s.astype(object)
    if pd.api.types.is_bool_dtype(s.dtype):
        s = s.astype("Float64")
    if pd.api.types.is_numeric_dtype(s.dtype):
        return s.to_numpy(dtype="float64", na_value=np.nan)
    values = pd.to_numeric(s, errors="coerce")
    bad = values.isna() & s.notna()
    if bad.any():
        examples = sorted({str(v) for v in s[bad].unique()[:5]})
        raise ScoringError(f"column {column!r}: {int(bad.sum())} row(s) hold non-numeric values {examples}; "
                           "harmonize text answers with clean_study first")
    return values.to_numpy(dtype="float64", na_value=np.nan)


def _coded_matrix(df: pd.DataFrame, columns: Sequence[str], allowed: Mapping[str, Sequence[float]]) -> np.ndarray:
    """Stack item columns into an (n, k) float matrix, checking every value against its allowed codes."""
    out = np.empty((len(df), len(columns)), dtype="float64", order="F")  # column writes stay contiguous
    for j, values in enumerate(_coded_columns(df, columns, allowed)):
        out[:, j] = values
    return out


def _coded_columns(df: pd.DataFrame, columns: Sequence[str], allowed: Mapping[str, Sequence[float]]
                   ) -> list[np.ndarray]:
    """Item columns as float arrays (NaN for missing), checking every value against its allowed codes."""
    out = []
    for col in columns:
        values = _as_float(df[col], col)
        ok = np.isnan(values) | np.isin(values, np.asarray(allowed[col], dtype="float64"))
        if not ok.all():
            bad_values = pd.unique(values[~ok])
            shown = ", ".join(f"{v:g}" for v in sorted(bad_values)[:8])
            raise ScoringError(
                f"column {col!r}: {int((~ok).sum())} row(s) hold values outside the allowed codes "
                f"{[int(a) for a in allowed[col]]}: {shown}"
            )
        out.append(values)
    return out


_MASKED_INT_DTYPES = (pd.Int8Dtype, pd.Int16Dtype, pd.Int32Dtype, pd.Int64Dtype,
                      pd.UInt8Dtype, pd.UInt16Dtype, pd.UInt32Dtype, pd.UInt64Dtype)


def _code_range(allowed: Sequence[float]) -> tuple[int, int] | None:
    """(lo, hi) when the allowed codes are every integer from lo to hi, 0 <= lo <= hi <= 127; else None."""
    codes = sorted({float(a) for a in allowed})
    if not codes or any(a != int(a) for a in codes):
        return None
    lo, hi = int(codes[0]), int(codes[-1])
    if lo < 0 or hi > 127 or len(codes) != hi - lo + 1:
        return None
    return lo, hi


def _int_codes_fast(s: pd.Series, lo: int, hi: int) -> np.ndarray | None:
    """Fast path of :func:`_item_codes` for integer columns (``Int64`` and the other masked integer
    dtypes, or numpy integers): int8 codes with -1 for missing, or None when it cannot prove them.

    Exact: the values are read as int64 with missing replaced by ``lo`` (an allowed code), so
    ``lo <= min`` and ``max <= hi`` prove that every answered value is one of the allowed codes
    (they are every integer from lo to hi) and that the cast to int8 does not wrap (unsigned
    values above the int64 range wrap to negatives, which fail the check). Any value outside
    the codes, or any other dtype, returns None and the general path checks (and reports) it.
    """
    dtype = s.dtype
    if isinstance(dtype, _MASKED_INT_DTYPES):
        array = s.array
        missing = np.asarray(array.isna(), dtype=bool)
        values = array.to_numpy(dtype="int64", na_value=lo)
    elif isinstance(dtype, np.dtype) and dtype.kind in "iu":
        missing = None
        values = s.to_numpy().astype("int64", copy=False)
    else:
        return None
    if values.size and (values.min() < lo or values.max() > hi):
        return None
    codes = values.astype("int8")
    if missing is not None and missing.any():
        codes[missing] = -1
    return codes


def _item_codes(df: pd.DataFrame, columns: Sequence[str], allowed: Mapping[str, Sequence[float]]
                ) -> list[np.ndarray]:
    """Item columns as int8 codes (-1 for missing), checking every value against its allowed codes.

    Same checks and errors as :func:`_coded_columns` (column by column, in order); the codes are
    the checked values themselves, which are small non-negative integers, so int8 holds them
    exactly. Integer columns whose codes are a range take :func:`_int_codes_fast`; any other
    column (float, text, categorical, or a value outside the codes) the general path.
    """
    out = []
    for col in columns:
        bounds = _code_range(allowed[col])
        codes = _int_codes_fast(df[col], *bounds) if bounds is not None else None
        if codes is None:
            values = _coded_columns(df, [col], allowed)[0]
            if bounds is None:  # not representable as int8 codes: this helper's callers never ask for that
                raise ScoringError(f"column {col!r}: allowed codes {list(allowed[col])} are not small integers")
            codes = np.where(np.isnan(values), -1.0, values).astype("int8")
        out.append(codes)
    return out


def score_sbst(
    df: pd.DataFrame,
    *,
    missing: Literal["undefined", "zero", "determinable"] = "undefined",
    prefix: str = "sbst_",
) -> pd.DataFrame:
    """Score the 9-item Keele STarT Back Screening Tool (SBST).

    Parameters
    ----------
    df : DataFrame
        Items ``sbst_1`` .. ``sbst_9``: items 1-8 coded 0 (disagree) / 1 (agree); item 9
        (bothersomeness) coded 0-4 = not at all, slightly, moderately, very much, extremely.
        Missing values may be ``NaN`` or ``pd.NA``.
    missing : {"undefined", "zero", "determinable"}, default "undefined"
        Rule for rows with at least one unanswered item.

        - ``"undefined"``: total, psychosocial score and risk group are all missing
          (the rule of domain.md: "a missing item makes the score undefined").
        - ``"zero"``: unanswered items count as not endorsed (0); a row with every item
          missing stays missing.
        - ``"determinable"``: scores stay missing, but the risk group is assigned when it
          is the same whether every unanswered item scored 0 or 1 (for example a low total
          with one item missing can still be low; eight items endorsed is never low).
    prefix : str, default "sbst_"
        Column prefix of the items.

    Returns
    -------
    DataFrame
        Aligned on ``df.index``, with

        - ``sbst_total``: float64, 0-9, the sum of items 1-9 (item 9 scores 1 only for
          "very much" (3) or "extremely" (4));
        - ``sbst_psychosocial``: float64, 0-5, the sum of items 5-9;
        - ``risk_group``: ordered categorical low < medium < high.

    Raises
    ------
    ScoringError
        (a ``ValueError``) if an item column is absent or holds a code outside its set.

    Notes
    -----
    Risk group: low if total <= 3; high if psychosocial >= 4; otherwise medium (total >= 4 and
    psychosocial <= 3). Source: Hill JC et al., Arthritis Rheum 2008;59:632-641, as summarised
    in domain.md section 4 (items numbered as on the Keele form: subscale = items 5-9).

    Examples
    --------
    >>> import pandas as pd
    >>> items = pd.DataFrame([[1, 1, 1, 1, 0, 0, 0, 0, 0], [1, 0, 1, 0, 0, 1, 0, 0, 4]],
    ...                      columns=[f"sbst_{i}" for i in range(1, 10)])
    >>> score_sbst(items)
       sbst_total  sbst_psychosocial risk_group
    0         4.0                0.0     medium
    1         4.0                2.0     medium
    """
    if missing not in ("undefined", "zero", "determinable"):
        raise ScoringError(f"score_sbst: missing must be 'undefined', 'zero' or 'determinable', not {missing!r}")
    cols = [f"{prefix}{i}" for i in range(1, 10)]
    _require_columns(df, cols, "SBST")
    allowed = {c: (0, 1) for c in cols[:8]} | {cols[8]: (0, 1, 2, 3, 4)}
    raw = _item_codes(df, cols, allowed)
    # Counts accumulated item by item in int8 (at most 9) from the int8 codes (-1 unanswered):
    # exact integers, so the same whatever the order.
    n = len(df)
    bounds = missing == "determinable"  # only that rule needs the counts with unanswered items as 1
    n_missing = np.zeros(n, dtype="int8")
    total_lo, psych_lo = np.zeros(n, dtype="int8"), np.zeros(n, dtype="int8")  # unanswered items as 0
    total_hi, psych_hi = np.zeros(n, dtype="int8"), np.zeros(n, dtype="int8")  # unanswered items as 1
    for j in range(9):
        code = raw[j]
        unanswered = code < 0
        # bothersomeness scores 1 only for "very much" (3) or "extremely" (4); items 1-8 are 0/1
        lo_j = code >= 3 if j == 8 else code > 0
        n_missing += unanswered
        total_lo += lo_j
        if j >= 4:
            psych_lo += lo_j
        if bounds:
            hi_j = lo_j | unanswered
            total_hi += hi_j
            if j >= 4:
                psych_hi += hi_j

    def group(total: np.ndarray, psych: np.ndarray) -> np.ndarray:  # int8 codes 0/1/2
        return np.where(total <= 3, np.int8(0), np.where(psych >= 4, np.int8(2), np.int8(1)))

    complete = n_missing == 0
    if missing == "zero":
        defined = n_missing < 9
        total = np.where(defined, total_lo, np.nan)
        psych = np.where(defined, psych_lo, np.nan)
        code = np.where(defined, group(total_lo, psych_lo), np.int8(-1))
    else:
        total = np.where(complete, total_lo, np.nan)
        psych = np.where(complete, psych_lo, np.nan)
        g_lo = group(total_lo, psych_lo)
        if missing == "undefined":
            code = np.where(complete, g_lo, np.int8(-1))
        else:  # determinable: the group is monotone in every item, so the two bounds decide it
            code = np.where(g_lo == group(total_hi, psych_hi), g_lo, np.int8(-1))
    risk = pd.Categorical.from_codes(code, dtype=pd.CategoricalDtype(list(RISK_GROUPS), ordered=True))
    return pd.DataFrame(
        {"sbst_total": total, "sbst_psychosocial": psych, "risk_group": risk},
        index=df.index,
    )


def score_rmdq(df: pd.DataFrame, max_missing: int = 2, *, prefix: str = "rmdq_") -> pd.Series:
    """Score the 24-item Roland-Morris Disability Questionnaire (RMDQ), 0-24.

    Parameters
    ----------
    df : DataFrame
        Items ``rmdq_1`` .. ``rmdq_24``, each 1 (ticked: the statement applies today) or 0.
    max_missing : int, default 2
        Most unanswered items for which the score is prorated. With more, the score is
        missing. ``0`` means any unanswered item makes the score missing.
    prefix : str, default "rmdq_"
        Column prefix of the items.

    Returns
    -------
    Series
        ``rmdq`` (float64, 0-24; higher = more disability), aligned on ``df.index``. Prorated
        scores are not rounded.

    Raises
    ------
    ScoringError
        (a ``ValueError``) if an item column is absent, holds a code other than 0/1, or
        ``max_missing`` is not an integer from 0 to 23.

    Notes
    -----
    Score = number of ticked items (domain.md section 4, RMDQ). There is no standard rule for
    unanswered items; this project prorates, ``score * 24 / answered``, when at most
    ``max_missing`` items are unanswered, and treats the score as missing otherwise (the
    common choice named in domain.md). A prorated score lies between the number ticked and
    that number plus the number unanswered.

    Examples
    --------
    >>> import pandas as pd
    >>> items = pd.DataFrame([[1] * 12 + [0] * 12, [1] * 11 + [None] + [0] * 12],
    ...                      columns=[f"rmdq_{i}" for i in range(1, 25)])
    >>> score_rmdq(items).round(3).tolist()
    [12.0, 11.478]
    """
    if isinstance(max_missing, bool) or not isinstance(max_missing, (int, np.integer)) or not 0 <= max_missing <= 23:
        raise ScoringError(f"score_rmdq: max_missing must be an integer from 0 to 23, not {max_missing!r}")
    cols = [f"{prefix}{i}" for i in range(1, 25)]
    _require_columns(df, cols, "RMDQ")
    items = _item_codes(df, cols, {c: (0, 1) for c in cols})
    # item by item on the int8 codes (-1 unanswered); exact integer counts (at most 24)
    answered = np.zeros(len(df), dtype="int8")
    ticked_count = np.zeros(len(df), dtype="int8")
    for code in items:
        answered += code >= 0
        ticked_count += code > 0
    answered = answered.astype("int64")
    ticked = ticked_count.astype("float64")
    ok = (24 - answered) <= max_missing
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.where(ok & (answered > 0), ticked * 24.0 / answered, np.nan)
    return pd.Series(score, index=df.index, name="rmdq", dtype="float64")


def _eq5d_levels(data: pd.DataFrame | pd.Series) -> np.ndarray:
    """(n, 5) float matrix of EQ-5D levels from five columns or a Series of five-digit states."""
    if isinstance(data, pd.DataFrame):
        _require_columns(data, EQ5D_COLUMNS, "EQ-5D-3L")
        return _coded_matrix(data, EQ5D_COLUMNS, {c: (1, 2, 3) for c in EQ5D_COLUMNS})
    if not isinstance(data, pd.Series):
        raise ScoringError(f"eq5d3l_index: expected a DataFrame with {list(EQ5D_COLUMNS)} or a Series of "
                           f"five-digit states, got {type(data).__name__}")
    name = data.name if data.name is not None else "state"
    codes, uniques = pd.factorize(data, use_na_sentinel=True)
    table = np.full((len(uniques) + 1, 5), np.nan)  # last row: missing
    bad: list[int] = []
    for k, value in enumerate(uniques):
        text = str(value).strip()
        if text.endswith(".0") and isinstance(value, (float, np.floating)):
            text = text[:-2]
        if len(text) == 5 and all(ch in "123" for ch in text):
            table[k] = [int(ch) for ch in text]
        else:
            bad.append(k)
    if bad:
        n_bad = int(np.isin(codes, bad).sum())
        raise ScoringError(f"column {name!r}: {n_bad} row(s) hold values that are not five-digit EQ-5D-3L states "
                           f"(digits 1-3): {[str(uniques[k]) for k in bad[:8]]}")
    return table[np.where(codes < 0, len(uniques), codes)]


def eq5d3l_tariff(levels: np.ndarray) -> np.ndarray:
    """UK (MVH, Dolan 1997) tariff of an ``(n, 5)`` array of complete EQ-5D-3L levels 1-3, unrounded.

    The array-level core of :func:`eq5d3l_index` (which validates, handles missing answers and
    rounds to 3 decimals); the synthetic study uses it directly on simulated levels.

    Examples
    --------
    >>> eq5d3l_tariff(np.array([[1, 1, 1, 1, 1], [1, 1, 2, 2, 1]])).round(3).tolist()
    [1.0, 0.76]
    """
    lv = np.asarray(levels).astype("int64") - 1
    decrement = _EQ5D_DECREMENTS[np.arange(5)[None, :], lv].sum(axis=1)
    worst = lv.max(axis=1)
    return 1.0 - np.where(worst >= 1, _EQ5D_CONSTANT, 0.0) - decrement - np.where(worst == 2, _EQ5D_N3, 0.0)


def eq5d3l_index(data: pd.DataFrame | pd.Series) -> pd.Series:
    """EQ-5D-3L index with the UK MVH (Dolan 1997) time trade-off tariff.

    Parameters
    ----------
    data : DataFrame or Series
        Either a DataFrame with the five dimension columns ``eq5d_mo``, ``eq5d_sc``,
        ``eq5d_ua``, ``eq5d_pd``, ``eq5d_ad`` (levels 1-3), or a Series of five-digit
        states such as ``"11221"`` (text or integer).

    Returns
    -------
    Series
        ``eq5d_index`` (float64, rounded to 3 decimals, at most 1; 11111 = 1), aligned on the
        input index. A state with any dimension missing gives ``NaN``.

    Raises
    ------
    ScoringError
        (a ``ValueError``) for a level outside 1-3 or a malformed state.

    Notes
    -----
    index = 1 - 0.081 (if any dimension is above level 1) - the sum of the dimension
    decrements (mobility 0.069/0.314, self-care 0.104/0.214, usual activities 0.036/0.094,
    pain/discomfort 0.123/0.386, anxiety/depression 0.071/0.236 for level 2/3) - 0.269 (if any
    dimension is at level 3). Source: Dolan P, Med Care 1997; values in domain.md section 4.

    Examples
    --------
    >>> import pandas as pd
    >>> eq5d3l_index(pd.Series(["11111", "11221", "33221", "12321", "33333"])).tolist()
    [1.0, 0.76, -0.037, 0.329, -0.594]
    """
    if isinstance(data, pd.DataFrame):
        _require_columns(data, EQ5D_COLUMNS, "EQ-5D-3L")
        codes = _item_codes(data, EQ5D_COLUMNS, {c: (1, 2, 3) for c in EQ5D_COLUMNS})
        state = np.zeros(len(data), dtype="int64")
        complete = np.ones(len(data), dtype=bool)
        for code in codes:  # code -1 (missing) gives a wrong state number, masked by `complete`
            state = state * 3 + (code - 1)
            complete &= code >= 0
    else:
        levels = _eq5d_levels(data)
        complete = ~np.isnan(levels).any(axis=1)
        lv = np.where(complete[:, None], levels, 1.0).astype("int64") - 1
        state = ((((lv[:, 0] * 3 + lv[:, 1]) * 3 + lv[:, 2]) * 3 + lv[:, 3]) * 3 + lv[:, 4])
    index = np.where(complete, _EQ5D_INDEX_BY_STATE[np.where(complete, state, 0)], np.nan)
    return pd.Series(index, index=data.index, name="eq5d_index", dtype="float64")


#: Every EQ-5D-3L state (levels 1-3), numbered in base 3 with mobility the most significant digit.
_EQ5D_STATES = np.array(list(itertools.product((1, 2, 3), repeat=5)), dtype="int64")
#: The rounded index of each state: :func:`eq5d3l_index` looks the 243 values up instead of
#: computing the tariff per row. Exact: :func:`eq5d3l_tariff` works row by row (the same
#: operations in the same order whatever the other rows are), so this is the value the row would get.
_EQ5D_INDEX_BY_STATE = np.round(eq5d3l_tariff(_EQ5D_STATES), 3)


def pabs_mapping(biomedical_items: Sequence[int], behavioural_items: Sequence[int]) -> dict[str, tuple[str, ...]]:
    """The PABS-PT subscale allocation as a :func:`score_pabs` mapping, from item numbers.

    Parameters
    ----------
    biomedical_items, behavioural_items : sequence of int
        Item numbers (1-19) of each subscale; each non-empty, no item twice, no item in both.

    Returns
    -------
    dict
        ``{"pabs_biomedical": ("pabs_i", ...), "pabs_behavioural": (...)}``.

    Raises
    ------
    ScoringError
        Naming the parameter and the rule broken.

    Notes
    -----
    The package default (:data:`PABS_DEFAULT_MAPPING`, items 1-10 and 11-19) is an assumption;
    use the allocation of the questionnaire version the study printed.

    Examples
    --------
    >>> pabs_mapping([1, 2, 3], [4, 5])["pabs_behavioural"]
    ('pabs_4', 'pabs_5')
    """
    lists = {"pabs_biomedical_items": biomedical_items, "pabs_behavioural_items": behavioural_items}
    seen: dict[int, str] = {}
    for name, items in lists.items():
        values = list(items)
        if not values:
            raise ScoringError(f"{name}: the PABS-PT subscale needs at least one item")
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 1 <= int(v) <= 19:
                raise ScoringError(f"{name}: {v!r} is not a PABS-PT item number (whole numbers 1-19)")
            if int(v) in seen:
                where = "twice" if seen[int(v)] == name else f"in both {seen[int(v)]} and {name}"
                raise ScoringError(f"{name}: item {int(v)} is listed {where}; each item belongs to one subscale once")
            seen[int(v)] = name
    return {"pabs_biomedical": tuple(f"pabs_{int(i)}" for i in biomedical_items),
            "pabs_behavioural": tuple(f"pabs_{int(i)}" for i in behavioural_items)}


def score_pabs(
    df: pd.DataFrame,
    mapping: Mapping[str, Sequence[str]] | None = None,
    *,
    max_missing: int = 0,
) -> pd.DataFrame:
    """Score the PABS-PT (19-item) biomedical and behavioural subscales.

    Parameters
    ----------
    df : DataFrame
        Items ``pabs_1`` .. ``pabs_19`` rated 1 (totally disagree) to 6 (totally agree).
    mapping : mapping of str to list of str, optional
        Output column -> item columns. Default :data:`PABS_DEFAULT_MAPPING`: items 1-10
        biomedical (``pabs_biomedical``, 10-60), items 11-19 behavioural
        (``pabs_behavioural``, 9-54), as in ``data/data_dictionary.yaml`` (an assumed default:
        build the study's own allocation with :func:`pabs_mapping`).
    max_missing : int, default 0
        Most unanswered items per subscale for which the subscale is prorated
        (``sum * k / answered``); with more, it is missing. The default makes any unanswered
        item give a missing subscale.

    Returns
    -------
    DataFrame
        One float64 column per mapping key (by default ``pabs_biomedical`` and
        ``pabs_behavioural``), aligned on ``df.index``.

    Raises
    ------
    ScoringError
        (a ``ValueError``) for an absent item column or a rating outside 1-6.

    Notes
    -----
    Subscale = sum of its item ratings. Source: Pain Attitudes and Beliefs Scale for
    Physiotherapists, Bishop A et al., Pain 2008 (domain.md section 4). Higher biomedical
    scores go with advising patients to stay off work.

    Examples
    --------
    >>> import pandas as pd
    >>> row = pd.DataFrame([[6] * 10 + [1] * 9], columns=[f"pabs_{i}" for i in range(1, 20)])
    >>> score_pabs(row).iloc[0].tolist()
    [60.0, 9.0]
    """
    mapping = dict(PABS_DEFAULT_MAPPING if mapping is None else mapping)
    if not mapping:
        raise ScoringError("score_pabs: the item mapping is empty")
    out = {}
    for name, items in mapping.items():
        items = list(items)
        _require_columns(df, items, f"PABS-PT {name}")
        if not 0 <= max_missing < len(items):
            raise ScoringError(f"score_pabs: max_missing must be from 0 to {len(items) - 1}, not {max_missing!r}")
        m = _coded_matrix(df, items, {c: (1, 2, 3, 4, 5, 6) for c in items})
        answered = (~np.isnan(m)).sum(axis=1)
        ok = (len(items) - answered) <= max_missing
        with np.errstate(invalid="ignore", divide="ignore"):
            out[name] = np.where(ok & (answered > 0), np.fmax(m, 0.0).sum(axis=1) * len(items) / answered, np.nan)
    return pd.DataFrame(out, index=df.index, dtype="float64")


def _global_change_codes(global_change: pd.Series) -> np.ndarray:
    s = global_change
    if isinstance(s.dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(s.dtype):
        labels = {lab: i + 1 for i, lab in enumerate(GLOBAL_CHANGE_LABELS)}
        text = s.astype(object)
        mapped = text.map(lambda v: labels.get(str(v).strip().lower(), v) if isinstance(v, str) else v)
        s = pd.Series(mapped, index=s.index, name=s.name)
    name = s.name if s.name is not None else "global_change"
    return _coded_matrix(pd.DataFrame({name: s}), [name], {name: (1, 2, 3, 4, 5, 6)})[:, 0]


def good_outcome(global_change: pd.Series) -> pd.Series:
    """Dichotomize patient-rated global change: completely recovered or much better = 1.

    Parameters
    ----------
    global_change : Series
        Codes 1-6 (1 completely recovered, 2 much better, 3 better, 4 no change, 5 worse,
        6 much worse) or their labels (for example an ordered categorical of
        :data:`GLOBAL_CHANGE_LABELS`).

    Returns
    -------
    Series
        ``good_outcome``: float64 1.0 (completely recovered or much better), 0.0 (any other
        answer), ``NaN`` when missing; aligned on the input index.

    Notes
    -----
    The common dichotomy named in domain.md section 4 ("Global change").

    Examples
    --------
    >>> import pandas as pd
    >>> good_outcome(pd.Series([1, 2, 3, 6, None])).tolist()
    [1.0, 1.0, 0.0, 0.0, nan]
    """
    codes = _global_change_codes(global_change)
    flag = np.where(np.isnan(codes), np.nan, (codes <= 2).astype("float64"))
    return pd.Series(flag, index=global_change.index, name="good_outcome", dtype="float64")


def rmdq_mcid(baseline: pd.Series, followup: pd.Series, *, min_reduction: float = 0.30) -> pd.Series:
    """Flag a clinically important improvement in RMDQ from baseline to follow-up.

    Parameters
    ----------
    baseline, followup : Series
        RMDQ scores (0-24), aligned on the same index.
    min_reduction : float, default 0.30
        Smallest relative reduction that counts: ``baseline - followup >= min_reduction *
        baseline``. Must be in (0, 1].

    Returns
    -------
    Series
        ``rmdq_mcid``: float64 1.0 (achieved), 0.0 (not achieved), ``NaN`` if either score is
        missing. A baseline of 0 cannot fall, so it gives 0.0.

    Notes
    -----
    The MCID definition of IMPaCT Back is OPEN in the published record (domain.md section 2,
    Table 3); the project default is a reduction of at least 30% from baseline. A tolerance of
    1e-9 absorbs floating point error in prorated scores.

    Examples
    --------
    >>> import pandas as pd
    >>> rmdq_mcid(pd.Series([10.0, 10.0, 0.0, 5.0]), pd.Series([7.0, 8.0, 0.0, None])).tolist()
    [1.0, 0.0, 0.0, nan]
    """
    if not 0 < min_reduction <= 1:
        raise ScoringError(f"rmdq_mcid: min_reduction must be in (0, 1], not {min_reduction!r}")
    if not baseline.index.equals(followup.index):
        raise ScoringError("rmdq_mcid: baseline and followup must have the same index")
    b = _as_float(baseline, "baseline")
    f = _as_float(followup, "followup")
    achieved = (b > 0) & ((b - f) >= min_reduction * b - 1e-9)
    flag = np.where(np.isnan(b) | np.isnan(f), np.nan, achieved.astype("float64"))
    return pd.Series(flag, index=baseline.index, name="rmdq_mcid", dtype="float64")
