"""Facts about identifier columns, established once by loading and reused by cleaning.

Private helpers shared by :mod:`backpain_analysis.loading` (key and foreign-key checks) and
:mod:`backpain_analysis.cleaning` (duplicate search, patient rows): identifier columns as Arrow
text, proof that a key is sorted (hence free of duplicates) without hashing, and
:class:`_KeyFacts`, what the key checks learnt, tied to the exact Arrow data they saw.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa_arrow
import pyarrow.compute as pc


def _arrow_text(values: pd.Series) -> pa_arrow.ChunkedArray:
    """Identifier values as an arrow string array (numbers written as text)."""
    if not pd.api.types.is_string_dtype(values.dtype) or values.dtype == object:
        values = values.map(lambda v: v if pd.isna(v) else str(v)).astype("str")
    array = pa_arrow.array(values, type=pa_arrow.large_string(), from_pandas=True)
    return array if isinstance(array, pa_arrow.ChunkedArray) else pa_arrow.chunked_array([array])


def _arrow_source(values: pd.Series) -> pa_arrow.ChunkedArray | None:
    """The Arrow data an Arrow-backed text column holds: the very object pandas keeps, else ``None``.

    ``ArrowStringArray.__arrow_array__`` returns its ``_pa_array`` itself. Arrow arrays are
    immutable and pandas replaces ``_pa_array`` by a new ChunkedArray on every in-place change
    (``__setitem__``, ``fillna(inplace=True)``, ...), so finding the same object (``is``) later proves
    the column's values unchanged. (``pyarrow.array(series.array)`` is no proof: it unwraps a
    one-chunk ChunkedArray into a new wrapper object on every call.)
    """
    dtype = values.dtype
    if not (isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow"):
        return None
    data = values.array.__arrow_array__()
    return data if isinstance(data, pa_arrow.ChunkedArray) else None


@dataclass
class _KeyFacts:
    """Facts about identifier columns established by :func:`load_study`, tied to the exact data.

    ``unique``: table -> Arrow data of its one key column, every value distinct (a missing
    value counting as one value, as in ``DataFrame.duplicated``).
    ``rows``: (child table, column) -> (child Arrow data, parent Arrow data, positions): for each
    child row, the position of its value in the parent table's key column (-1 if absent; the
    parent column has no missing and no repeated value). Only for parents of at least
    ``PARALLEL_MIN_ROWS`` rows, where the hash lookup saved is worth the memory (int32).

    A fact holds only while the column still holds the very Arrow object recorded
    (:func:`_arrow_source`); :meth:`is_unique` and :meth:`positions` check that.
    """

    unique: dict[str, pa_arrow.ChunkedArray] = field(default_factory=dict)
    rows: dict[tuple[str, str], tuple[pa_arrow.ChunkedArray, pa_arrow.ChunkedArray, np.ndarray]] = \
        field(default_factory=dict)

    def is_unique(self, table: str, values: pd.Series) -> bool:
        """Whether ``values`` is the key column of ``table`` as loaded and had no repeated value."""
        known = self.unique.get(table)
        return known is not None and _arrow_source(values) is known

    def positions(self, table: str, column: str, child: pd.Series, parent: pd.Series) -> np.ndarray | None:
        """Positions of ``child`` (raw ``table.column``) in ``parent`` (raw key column), if known."""
        known = self.rows.get((table, column))
        if known is None or _arrow_source(child) is not known[0] or _arrow_source(parent) is not known[1]:
            return None
        return known[2]


def _strictly_increasing(columns: list[pd.Series]) -> bool:
    """Whether the rows are in strictly increasing order of ``columns`` (compared left to right).

    Fast path of the key checks: a table sorted by its key has no repeated key, and proving it
    compares each row with the next only (no hash of a million strings). Exact: strictly
    increasing under any strict total order implies all keys distinct; text is compared as
    UTF-8 bytes by Arrow (equal bytes <=> equal text), numbers by numpy. ``False`` (the caller
    then hashes) when not sorted, when any value is missing, or for a column that is neither
    text (``str``) nor plain numpy numbers (object, categorical, nullable, ...).
    """
    if not columns:
        return False
    decided = tied = None  # per adjacent pair: already greater on an earlier column / equal so far
    for i, values in enumerate(columns):
        last = i == len(columns) - 1
        dtype = values.dtype
        if isinstance(dtype, pd.StringDtype):
            arr = _arrow_text(values)
            if arr.null_count:
                return False
            hi, lo = arr[1:], arr[:-1]
            greater = pc.greater(hi, lo).to_numpy(zero_copy_only=False)
            equal = pc.equal(hi, lo).to_numpy(zero_copy_only=False) if not last else None
        elif isinstance(dtype, np.dtype) and dtype.kind in "iuf":
            x = values.to_numpy()
            if dtype.kind == "f" and np.isnan(x).any():
                return False
            greater = x[1:] > x[:-1]
            equal = x[1:] == x[:-1] if not last else None
        else:
            return False
        if decided is None:
            decided, tied = greater, equal
        else:
            decided = decided | (tied & greater)
            tied = tied & equal if equal is not None else None
    return bool(decided.all())
