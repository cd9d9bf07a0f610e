"""Fast paths of column harmonization agree with the general path, and refuse what they cannot prove.

Each fast path is called directly (to see whether it answered or refused) and the whole
column harmonization is compared with the general path (the fast paths switched off):
same values, dtype, data under the mask and log, byte for byte (pickles compared).
"""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from backpain_analysis import cleaning as C
from backpain_analysis.dictionary import Column, load_dictionary

DD = load_dictionary()
FAST_PATHS = ("_numeric_unchanged",)


def column(table: str, name: str) -> Column:
    return DD[table].columns[name]


def harmonize(s: pd.Series, col: Column, table: str = "patients") -> tuple[pd.Series, list, list]:
    ctx = C._Ctx(DD[table], pd.DataFrame({col.name: s}), None, [], [])
    out = C._harmonize_column(s, col, ctx)
    return out, [b.to_dict("list") for b in ctx.log_blocks], ctx.summary_rows


def general(s: pd.Series, col: Column, table: str = "patients") -> tuple[pd.Series, list, list]:
    """The general path: every fast path refuses."""
    with pytest.MonkeyPatch.context() as mp:
        for name in FAST_PATHS:
            mp.setattr(C, name, lambda *args, **kwargs: None)
        return harmonize(s, col, table)


def assert_same(s: pd.Series, col: Column, table: str = "patients") -> pd.Series:
    before = pickle.dumps(s)
    fast, fast_log, fast_summary = harmonize(s, col, table)
    slow, slow_log, slow_summary = general(s, col, table)
    assert pickle.dumps(s) == before, "the input was modified"
    pd.testing.assert_series_equal(fast, slow)
    assert pickle.dumps(fast) == pickle.dumps(slow)  # also the data under the mask
    assert fast_log == slow_log and fast_summary == slow_summary
    return fast


# ----------------------------------------------------------------------------------------
# numeric columns: _numeric_unchanged
# ----------------------------------------------------------------------------------------

RNG = np.random.default_rng(4)


def with_blanks(values: np.ndarray, share: float = 0.3) -> np.ndarray:
    out = values.astype("float64")
    out[RNG.random(out.size) < share] = np.nan
    return out


NUMERIC_ACCEPTED = [
    ("sbst_1", with_blanks(RNG.integers(0, 2, 5000))),            # coded 0/1 with blanks
    ("sbst_9", with_blanks(RNG.integers(0, 5, 5000))),            # coded 0..4
    ("sbst_9", RNG.integers(0, 5, 5000)),                         # int64, no blanks
    ("sbst_9", RNG.integers(1, 3, 5000).astype("float64")),       # float64 without NaN
    ("pain_nrs", with_blanks(RNG.integers(0, 11, 5000))),         # int 0..10 (9 is a valid value)
    ("age", with_blanks(RNG.integers(18, 111, 5000))),            # int 18..110
    ("age", RNG.integers(18, 111, 5000).astype("uint16")),
    ("sbst_1", np.array([0.0, -0.0, 1.0, np.nan])),               # negative zero is 0
]


@pytest.mark.parametrize(("name", "values"), NUMERIC_ACCEPTED)
def test_numeric_fast_path_agrees_with_general_path(name, values):
    col = column("patients", name)
    assert C._numeric_unchanged(values, C._Rules(col)) is not None
    out = assert_same(pd.Series(values), col)
    assert str(out.dtype) == "Int64"


def test_numeric_fast_path_float_columns():
    col = column("clinicians", "training_days")
    values = np.array([0.0, 2.5, np.nan, 30.0, 12.25])
    assert C._numeric_unchanged(values, C._Rules(col)) is not None
    out = assert_same(pd.Series(values), col, "clinicians")
    assert out.dtype == np.float64
    ints = np.array([0, 3, 30])
    assert C._numeric_unchanged(ints, C._Rules(col)) is not None
    assert_same(pd.Series(ints), col, "clinicians")


def test_numeric_fast_path_codes_of_both_signs():
    """Codes below and above 0: the NaN -> 0 step cannot use fmax/fmin and takes np.where."""
    col = Column(name="sbst_9", type="integer", description="", codes={-2: "a", -1: "b", 0: "c", 1: "d"},
                 missing_codes=("9",))
    for values in (np.array([-2.0, np.nan, 1.0, 0.0, -1.0]), np.array([-2.0, np.nan, -1.0]), np.array([-2, 1, 0])):
        assert C._numeric_unchanged(values, C._Rules(col)) is not None
        fast = assert_same(pd.Series(values), col)
        assert fast.isna().sum() == np.isnan(values.astype(float)).sum()


NUMERIC_REFUSED = [
    ("sbst_1", np.array([0.0, 1.0, 9.0, np.nan])),          # a missing code
    ("pain_nrs", np.array([0.0, 99.0, 5.0])),               # a missing code of an int column
    ("age", np.array([18.0, -1.0, np.nan])),                # -1 is a missing code
    ("sbst_1", np.array([0, 1, 9])),                        # int64 with a missing code
    ("sbst_1", np.array([0.0, 0.5, 1.0])),                  # not integral, inside the codes' span
    ("age", np.array([18.0, 40.5, 60.0])),                  # not integral
    ("sbst_9", np.array([0.0, 4.0, 1e300])),                # too large to cast
    ("sbst_9", np.array([np.nan, np.nan])),                 # all missing
    ("sbst_9", np.array([], dtype="float64")),              # empty
    ("sbst_9", np.array([0.0, 1.0], dtype="float32")),      # not float64
    ("sbst_9", np.array([0.0, np.inf])),
]


@pytest.mark.parametrize(("name", "values"), NUMERIC_REFUSED)
def test_numeric_fast_path_refuses_what_it_cannot_prove(name, values):
    col = column("patients", name)
    assert C._numeric_unchanged(values, C._Rules(col)) is None


def test_numeric_refused_values_still_cleaned_by_the_general_path():
    col = column("patients", "pain_nrs")
    values = with_blanks(RNG.integers(0, 11, 2000))
    values[[3, 17]] = 99.0
    out, log, summary = harmonize(pd.Series(values), col)
    assert out.isna().sum() == np.isnan(values).sum() + 2
    assert summary == [("patients", "pain_nrs", "missing_code", 2, True)]
    col = column("patients", "sbst_1")
    with pytest.raises(C.CleaningError, match=r"'sbst_1': 1 row\(s\).*\['0.5'\]"):
        harmonize(pd.Series([0.0, 0.5, 1.0]), col)


def test_all_kept_checks_every_integer_of_a_short_span():
    rules = C._Rules(column("patients", "sbst_9"))  # codes 0..4, missing 9, 99, -1
    assert C._all_kept(rules, 0, 4) and C._all_kept(rules, 1, 3)
    assert not C._all_kept(rules, 0, 5) and not C._all_kept(rules, -1, 4)
    rules = C._Rules(column("records", "n_gp_consultations"))  # int 0..100, missing -1, 999
    assert C._all_kept(rules, 0, 100) and not C._all_kept(rules, 0, 101)
    wide = C._Rules(Column(name="list_size", type="integer", description="", min=0, max=200000,
                           missing_codes=("-1", "99999")))
    assert C._all_kept(wide, 0, 99998) and not C._all_kept(wide, 0, 200000)  # a long span: by the range
