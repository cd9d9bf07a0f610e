"""Fast paths of the column checks (schemas.valid_values) agree with the row-by-row checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backpain_analysis import load_dictionary
from backpain_analysis import schemas as S

DD = load_dictionary()
CODED = DD["patients"].columns["sbst_9"]  # codes 0..4, missing codes -1, 9, 99
RANGED = DD["patients"].columns["age"]  # a whole number from 18 to 110, missing -1


def _general(col, values: pd.Series) -> list[bool]:
    """The row-by-row answer: the same check on the values as float64 (no integer fast path)."""
    return S.valid_values(col)(values.astype("float64")).tolist()


def test_integer_runs():
    assert S._integer_runs({0.0, 1.0, 2.0, 3.0, 4.0, -1.0, 9.0, 99.0}) == [(-1, 4), (9, 9), (99, 99)]
    assert S._integer_runs({1.0, 3.0, 2.5, float("nan"), float("inf")}) == [(1, 1), (3, 3)]
    assert S._integer_runs({2.0**60, 2.0**60 + 2**8}) == []  # beyond exact float comparison: no run
    assert S._integer_runs(set()) == []


@pytest.mark.parametrize("col", [CODED, RANGED, DD["patients"].columns["phase"], DD["followups"].columns["eq5d_mo"]])
@pytest.mark.parametrize("values", [
    [1, 2, 3], [0, 4, 4], [-1, 0, 4], [9, 9], [99], [5], [0, 5], [-2, 0], [4, 9], [8], [18, 110], [17, 18],
    [110, 111], [-1, 50], [3, 1, 2, 99, 9], [2**62, 1], [-(2**62), 1],
])
@pytest.mark.parametrize("dtype", ["int64", "int32", "uint8"])
def test_integer_fast_path_agrees_with_row_checks(col, values, dtype):
    if dtype == "uint8" and any(v < 0 or v > 255 for v in values):
        return
    if dtype == "int32" and any(abs(v) > 2**31 - 1 for v in values):
        return
    s = pd.Series(np.array(values, dtype=dtype), index=pd.RangeIndex(10, 10 + len(values)))
    got = S.valid_values(col)(s)
    assert got.tolist() == _general(col, s)
    assert got.index.equals(s.index) and got.dtype == bool


def test_integer_fast_path_is_taken_and_refuses():
    runs = S._integer_runs({0.0, 1.0, 2.0, 3.0, 4.0, -1.0, 9.0, 99.0})
    assert S._ints_within(pd.Series([0, 4, -1]), runs)
    assert not S._ints_within(pd.Series([0, 4, 9]), runs)  # 5..8 in between are not codes
    assert not S._ints_within(pd.Series([0.0, 4.0]), runs)  # floats: not proven whole
    assert not S._ints_within(pd.Series([0, 4], dtype="Int64"), runs)  # nullable: the general path
    assert not S._ints_within(pd.Series([], dtype="int64"), runs)
    assert not S._ints_within(pd.Series([True, False]), runs)
    assert not S._ints_within(pd.Series([0, 1]), [])
