"""Fast paths of column harmonization agree with the general path, and refuse what they cannot prove.

Each fast path is called directly (to see whether it answered or refused) and the whole
column harmonization is compared with the general path (the fast paths switched off):
same values, dtype, data under the mask and log, byte for byte (pickles compared).
"""

from __future__ import annotations

import pickle
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pytest
from studyfactory import build_study

from backpain_analysis import cleaning as C
from backpain_analysis.dictionary import Column, load_dictionary

DD = load_dictionary()
FAST_PATHS = ("_numeric_unchanged", "_no_blank", "_iso_dates", "_category_codes")


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


# ----------------------------------------------------------------------------------------
# text columns: _no_blank
# ----------------------------------------------------------------------------------------

def test_blank_check_matches_strip_on_every_code_point():
    """The Arrow predicate (_no_blank) sees a blank exactly where ``str.strip() == ""`` does."""
    chars = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    texts = pd.Series(chars + [c + " " for c in chars[:0x3100]] + ["\u3000" + c for c in chars[:0x3100]]
                      + ["", "  ", " \t\n\u2028", "a b", " a "], dtype="str")
    strip_blank = texts.str.strip().eq("").to_numpy(dtype=bool)
    assert 20 < strip_blank.sum() < 100  # the whitespace code points (and pairs of them) only
    arr = C._arrow_of(texts)
    arrow_blank = pc.or_(pc.utf8_is_space(arr), pc.equal(pc.binary_length(arr), 0))
    assert (arrow_blank.to_numpy(zero_copy_only=False) == strip_blank).all()
    assert not C._no_blank(texts)
    assert C._no_blank(texts[~strip_blank])


@pytest.mark.parametrize("values", [
    ["C0001", "C0002", None, "x y"],            # no blank (a missing value is not a blank)
    ["C0001", "", None, "  ", "\u3000", " \t"],  # blanks of several kinds
    [None, None],
    [],
])
def test_text_fast_path_agrees_with_general_path(values):
    col = column("consultations", "consultation_id")
    s = pd.Series(values, dtype="str")
    assert C._no_blank(s) == all(v is None or v.strip() for v in values)
    assert_same(s, col, "consultations")
    assert_same(pd.Series(values, dtype=object), col, "consultations")


def test_text_fast_path_refuses_other_storage():
    s = pd.Series(["a", "b"], dtype=pd.StringDtype("python"))
    assert C._arrow_of(s) is None and not C._no_blank(s)
    assert_same(s, column("consultations", "consultation_id"), "consultations")


# ----------------------------------------------------------------------------------------
# date columns: _iso_dates
# ----------------------------------------------------------------------------------------

def test_iso_date_fast_path_agrees_with_general_path():
    col = column("consultations", "consultation_date")
    days = pd.date_range("1990-01-01", "2030-12-31", freq="D")
    values = pd.Series(days.strftime("%Y-%m-%d"), dtype="str").where(RNG.random(len(days)) > 0.2)
    assert C._iso_dates(values, col) is not None
    out = assert_same(values, col, "consultations")
    assert out.dtype == "datetime64[ns]" and out.isna().sum() == values.isna().sum()
    assert_same(pd.Series(["2008-02-29", "1678-01-01", "2261-12-31"], dtype="str"), col, "consultations")


@pytest.mark.parametrize("values", [
    ["2008-01-05", "16/04/2007"],       # another format: logged by the general path
    ["2008-01-05", " 2008-01-06"],      # surrounding space
    ["2008-01-05", "NA"],               # missing text
    ["2008-01-05", ""],                 # blank
    ["2008-1-05"],                      # not zero-padded (strptime accepts it; the cast does not)
    ["2008-01-05", "2008-01-05T10:00:00"],
    ["\u0662\u0660\u0660\u0668-01-05"],  # non-ASCII digits
    ["1677-12-31"],                     # outside the years the fast path takes
    ["2262-01-01"],
    [None, None],
])
def test_iso_date_fast_path_refuses_what_it_cannot_prove(values):
    col = column("consultations", "consultation_date")
    s = pd.Series(values, dtype="str")
    assert C._iso_dates(s, col) is None
    if values[0] is not None and "1677" not in values[0] and "2262" not in values[0]:
        assert_same(s, col, "consultations")


def test_iso_date_fast_path_refuses_impossible_days_and_date_missing_codes():
    col = column("consultations", "consultation_date")
    bad = pd.Series(["2008-01-05", "2008-02-30"], dtype="str")
    assert C._iso_dates(bad, col) is None
    with pytest.raises(C.CleaningError, match="2008-02-30"):
        harmonize(bad, col, "consultations")
    assert C._iso_dates(pd.Series(["0000-01-01"], dtype="str"), col) is None
    coded = Column(name="consultation_date", type="date", description="", missing_codes=("", "1900-01-01"))
    s = pd.Series(["2008-01-05", "1900-01-01"], dtype="str")
    assert C._iso_dates(s, coded) is None
    out, _, summary = harmonize(s, coded, "consultations")
    assert out.isna().tolist() == [False, True] and summary[0][2] == "missing_text"
    assert C._iso_dates(pd.Series(pd.to_datetime(["2008-01-05"])), col) is None  # already dates


# ----------------------------------------------------------------------------------------
# category columns: _category_codes
# ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("table", "name", "values"), [
    ("patients", "sex", ["female", "male", None, "male"]),
    ("patients", "episode_duration", ["lt_1m", "gt_3y", None, "3_6m", "1_3m"]),  # ordered
    ("patients", "sex", [None, None]),
    ("patients", "sex", []),
])
def test_category_fast_path_agrees_with_general_path(table, name, values):
    col = column(table, name)
    s = pd.Series(values, dtype="str")
    assert C._category_codes(s, C._Rules(col), C._category_dtype(col, table)) is not None
    out = assert_same(s, col, table)
    assert isinstance(out.dtype, pd.CategoricalDtype)


@pytest.mark.parametrize("values", [
    ["female", " Female"],   # other case and spacing: text_to_code
    ["female", "NA"],        # missing text
    ["female", "9"],         # missing code
    ["female", ""],          # blank
])
def test_category_fast_path_refuses_non_codes(values):
    col = column("patients", "sex")
    s = pd.Series(values, dtype="str")
    assert C._category_codes(s, C._Rules(col), C._category_dtype(col, "patients")) is None
    assert_same(s, col)


def test_category_fast_path_refuses_codes_the_rules_would_change():
    col = Column(name="sex", type="category", description="", codes={"na": "na", "x": "x"}, missing_codes=("na",))
    s = pd.Series(["x", "na"], dtype="str")
    assert C._category_codes(s, C._Rules(col), C._category_dtype(col, "patients")) is None
    out, _, summary = harmonize(s, col)
    assert out.isna().tolist() == [False, True] and summary[0][2] == "missing_text"
    with pytest.raises(C.CleaningError, match="'sex'"):
        harmonize(pd.Series(["female", "other"], dtype="str"), column("patients", "sex"))


# ----------------------------------------------------------------------------------------
# speculative harmonization while the exact-duplicate search runs (_speculate, _clean_table)
# ----------------------------------------------------------------------------------------

def _outcome(tables: dict[str, pd.DataFrame], min_rows: int) -> tuple:
    """Everything clean_study returns (or its error), with tables of at least ``min_rows`` rows
    searched for duplicates in the background and harmonized speculatively in threads."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(C, "_PARALLEL_MIN_ROWS", min_rows)
        try:
            clean = C.clean_study(SimpleNamespace(tables={k: v.copy() for k, v in tables.items()}))
        except C.CleaningError as err:
            return ("error", str(err))
    return (pickle.dumps(clean.tables), pickle.dumps(clean.cleaning_log), pickle.dumps(clean.exclusions),
            pickle.dumps(clean.summary))


def _messy_study() -> dict[str, pd.DataFrame]:
    t = build_study()
    p = t["patients"].astype({"sbst_1": object, "sbst_9": object})
    p.loc[0, "sbst_1"] = "Agree"
    p.loc[1, "sbst_9"] = "VERY MUCH"
    p.loc[2, "consultation_date"] = "16/04/2007"
    t["patients"] = p
    return t


def _speculation_calls(mp) -> list[str]:
    calls: list[str] = []
    real = C._speculate

    def spy(raw, table):
        calls.append(table.name)
        return real(raw, table)

    mp.setattr(C, "_speculate", spy)
    return calls


def test_speculative_harmonization_without_duplicates_is_used():
    t = _messy_study()
    with pytest.MonkeyPatch.context() as mp:
        calls = _speculation_calls(mp)
        threaded = _outcome(t, 1)
    # every table of the study was harmonized ahead of its duplicate search (the optional withdrawals
    # table is not in this study)
    assert set(calls) == set(t) == set(DD.tables) - {"withdrawals"}
    assert threaded == _outcome(t, 10**9)


def test_speculative_harmonization_is_discarded_when_rows_are_dropped():
    t = _messy_study()
    t["patients"] = pd.concat([t["patients"], t["patients"].iloc[[0, 2]]], ignore_index=True)
    t["followups"] = pd.concat([t["followups"].iloc[[3]], t["followups"]], ignore_index=True)
    sequential = _outcome(t, 10**9)
    assert sequential[0] != "error"
    assert _outcome(t, 1) == sequential


def test_speculative_errors_are_those_of_a_sequential_pass():
    # the bad value is in a row that is repeated exactly: the speculative pass counts it twice,
    # the pass over the rows kept once; the error must be the latter
    t = build_study()
    p = t["patients"].astype({"sbst_5": object})
    p.loc[2, "sbst_5"] = "perhaps"
    t["patients"] = pd.concat([p, p.iloc[[2]]], ignore_index=True)
    sequential = _outcome(t, 10**9)
    assert sequential[0] == "error" and "1 row(s)" in sequential[1]
    assert _outcome(t, 1) == sequential
    # an error in an earlier table wins over speculative work on later tables
    t = build_study()
    t["practices"] = t["practices"].assign(n_gps=t["practices"]["n_gps"].astype(object))
    t["practices"].loc[0, "n_gps"] = "many"
    sequential = _outcome(t, 10**9)
    assert sequential[0] == "error" and "'n_gps'" in sequential[1]
    assert _outcome(t, 1) == sequential


def test_speculation_stops_once_a_table_lost_rows():
    t = _messy_study()
    t["consultations"] = pd.concat([t["consultations"], t["consultations"].iloc[[1]]], ignore_index=True)
    with pytest.MonkeyPatch.context() as mp:
        calls = _speculation_calls(mp)
        threaded = _outcome(t, 1)
    tables = list(DD.tables)
    # practices .. clinician_surveys (each with the next one), then consultations: rows dropped there
    assert calls == tables[: tables.index("consultations") + 2]
    assert threaded == _outcome(t, 10**9)
