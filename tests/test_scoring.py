"""Scoring: worked examples of domain.md, boundaries, bad codes, and properties (hypothesis)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import backpain_analysis as bp
from backpain_analysis.scoring import (
    EQ5D_COLUMNS,
    ScoringError,
    eq5d3l_index,
    good_outcome,
    rmdq_mcid,
    score_pabs,
    score_rmdq,
    score_sbst,
)

SBST = [f"sbst_{i}" for i in range(1, 10)]
RMDQ = [f"rmdq_{i}" for i in range(1, 25)]
PABS = [f"pabs_{i}" for i in range(1, 20)]


def sbst_frame(rows, index=None) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=SBST, index=index)


# --- SBST --------------------------------------------------------------------------------

@pytest.mark.parametrize(("items", "total", "psych", "group"), [
    ([0, 0, 0, 0, 0, 0, 0, 0, 0], 0, 0, "low"),
    ([1, 1, 1, 1, 0, 0, 0, 0, 0], 4, 0, "medium"),
    ([1, 1, 1, 1, 1, 1, 1, 1, 4], 9, 5, "high"),
    ([1, 0, 1, 0, 0, 1, 0, 0, 4], 4, 2, "medium"),
])
def test_sbst_worked_examples_of_domain_md(items, total, psych, group):
    out = score_sbst(sbst_frame([items]))
    assert out.loc[0, "sbst_total"] == total
    assert out.loc[0, "sbst_psychosocial"] == psych
    assert out.loc[0, "risk_group"] == group


@pytest.mark.parametrize(("item9", "scores"), [(0, 0), (1, 0), (2, 0), (3, 1), (4, 1)])
def test_sbst_item9_only_very_much_and_extremely_score(item9, scores):
    out = score_sbst(sbst_frame([[0] * 8 + [item9]]))
    assert out.loc[0, "sbst_total"] == scores
    assert out.loc[0, "sbst_psychosocial"] == scores


def test_sbst_cut_points():
    rows = [
        [1, 1, 1, 0, 0, 0, 0, 0, 0],  # total 3 -> low
        [0, 0, 0, 0, 1, 1, 1, 0, 0],  # total 3, psych 3 -> low (total rule first)
        [0, 0, 0, 0, 1, 1, 1, 1, 0],  # total 4, psych 4 -> high
        [1, 0, 0, 0, 1, 1, 1, 0, 0],  # total 4, psych 3 -> medium
        [0, 0, 0, 0, 1, 1, 1, 0, 3],  # total 4, psych 4 via item 9 -> high
    ]
    out = score_sbst(sbst_frame(rows))
    assert out["risk_group"].tolist() == ["low", "low", "high", "medium", "high"]
    assert out["risk_group"].cat.ordered
    assert out["risk_group"].cat.categories.tolist() == ["low", "medium", "high"]


def test_sbst_keeps_input_index_and_accepts_nullable_and_text_digits():
    df = sbst_frame([[1, 1, 1, 1, 1, 1, 1, 1, 4], [0] * 9], index=["a", "b"]).astype("Int64")
    out = score_sbst(df)
    assert out.index.tolist() == ["a", "b"]
    assert out["sbst_total"].dtype == "float64"
    as_text = df.astype(str)
    pd.testing.assert_frame_equal(score_sbst(as_text), out)


def test_sbst_missing_item_undefined_by_default():
    df = sbst_frame([[1, 1, 1, 1, 1, 1, 1, np.nan, 4]])
    out = score_sbst(df)
    assert np.isnan(out.loc[0, "sbst_total"]) and np.isnan(out.loc[0, "sbst_psychosocial"])
    assert pd.isna(out.loc[0, "risk_group"])


def test_sbst_missing_options():
    df = sbst_frame([
        [1, 1, 1, 1, 1, 1, 1, np.nan, 4],  # at least 8 of 9, psych >= 4 whatever item 8 -> high
        [0, 0, 0, 0, 0, 0, 0, 0, np.nan],  # total at most 1 -> low
        [1, 1, 1, 0, 0, 0, 0, 0, np.nan],  # total 3 or 4 -> undetermined
        [np.nan] * 9,
    ])
    zero = score_sbst(df, missing="zero")
    assert zero["sbst_total"].tolist()[:3] == [8.0, 0.0, 3.0]
    assert zero["risk_group"].tolist()[:3] == ["high", "low", "low"]
    assert pd.isna(zero.loc[3, "risk_group"]) and np.isnan(zero.loc[3, "sbst_total"])
    det = score_sbst(df, missing="determinable")
    assert det["sbst_total"].isna().all()
    assert det["risk_group"].tolist()[:2] == ["high", "low"]
    assert pd.isna(det.loc[2, "risk_group"]) and pd.isna(det.loc[3, "risk_group"])
    with pytest.raises(ValueError, match="missing must be"):
        score_sbst(df, missing="impute")


def test_sbst_bad_code_raises_value_error_naming_column_values_and_rows():
    df = sbst_frame([[1, 0, 0, 0, 0, 0, 0, 0, 0], [2, 0, 0, 0, 0, 0, 0, 0, 0], [2, 0, 0, 0, 0, 0, 0, 0, 7]])
    with pytest.raises(ValueError, match=r"'sbst_1': 2 row\(s\) hold values outside .*: 2") as info:
        score_sbst(df)
    assert isinstance(info.value, bp.BackpainError)
    with pytest.raises(ValueError, match=r"'sbst_9': 1 row\(s\).*7"):
        score_sbst(df.assign(sbst_1=0))
    with pytest.raises(ValueError, match="non-numeric"):
        score_sbst(df.assign(sbst_1=0, sbst_9=0).astype(object).assign(sbst_2="Agree"))
    with pytest.raises(ValueError, match=r"missing"):
        score_sbst(df.drop(columns="sbst_5"))


# --- RMDQ --------------------------------------------------------------------------------

def rmdq_frame(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=RMDQ, dtype="float64")


def test_rmdq_sum_and_prorating_rule():
    rows = [
        [1] * 24,
        [0] * 24,
        [1] * 10 + [0] * 13 + [np.nan],  # 1 missing: 10 * 24 / 23
        [1] * 10 + [0] * 12 + [np.nan] * 2,  # 2 missing: 10 * 24 / 22
        [1] * 10 + [0] * 11 + [np.nan] * 3,  # 3 missing: missing
    ]
    out = score_rmdq(rmdq_frame(rows))
    assert out.name == "rmdq"
    np.testing.assert_allclose(out.to_numpy()[:4], [24.0, 0.0, 240 / 23, 240 / 22])
    assert np.isnan(out.iloc[4])
    strict = score_rmdq(rmdq_frame(rows), max_missing=0)
    assert strict.isna().tolist() == [False, False, True, True, True]
    loose = score_rmdq(rmdq_frame(rows), max_missing=3)
    assert loose.iloc[4] == pytest.approx(240 / 21)


def test_rmdq_rejects_bad_codes_and_options():
    df = rmdq_frame([[1] * 24]).assign(rmdq_7=2.0)
    with pytest.raises(ValueError, match=r"'rmdq_7': 1 row\(s\).*2"):
        score_rmdq(df)
    with pytest.raises(ValueError, match="max_missing"):
        score_rmdq(rmdq_frame([[1] * 24]), max_missing=-1)
    with pytest.raises(ValueError, match="max_missing"):
        score_rmdq(rmdq_frame([[1] * 24]), max_missing=1.5)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from([0.0, 1.0, np.nan]), min_size=24, max_size=24), st.integers(0, 5))
def test_rmdq_prorated_score_within_bounds(items, max_missing):
    score = score_rmdq(rmdq_frame([items]), max_missing=max_missing).iloc[0]
    ticked = np.nansum(items)
    n_missing = int(np.isnan(items).sum())
    if n_missing > max_missing or n_missing == 24:
        assert np.isnan(score)
    else:
        assert ticked - 1e-9 <= score <= ticked + n_missing + 1e-9
        assert 0 <= score <= 24


# --- EQ-5D-3L -----------------------------------------------------------------------------

@pytest.mark.parametrize(("state", "value"), [
    ("11111", 1.000), ("11221", 0.760), ("33221", -0.037), ("12321", 0.329), ("33333", -0.594),
])
def test_eq5d_published_values(state, value):
    assert eq5d3l_index(pd.Series([state])).iloc[0] == pytest.approx(value, abs=1e-12)
    levels = pd.DataFrame([[int(c) for c in state]], columns=list(EQ5D_COLUMNS))
    assert eq5d3l_index(levels).iloc[0] == pytest.approx(value, abs=1e-12)


def test_eq5d_missing_stays_missing_and_integer_states_work():
    out = eq5d3l_index(pd.Series([11221, None, "11111"], index=[5, 6, 7]))
    assert out.index.tolist() == [5, 6, 7]
    assert out.iloc[0] == pytest.approx(0.76) and np.isnan(out.iloc[1]) and out.iloc[2] == 1.0
    levels = pd.DataFrame({c: [1, 2] for c in EQ5D_COLUMNS}).astype("Int64")
    levels.loc[1, "eq5d_pd"] = pd.NA
    assert eq5d3l_index(levels).isna().tolist() == [False, True]


def test_eq5d_bad_values():
    with pytest.raises(ValueError, match="five-digit"):
        eq5d3l_index(pd.Series(["11141", "1111"]))
    with pytest.raises(ValueError, match=r"'eq5d_ua': 1 row\(s\).*4"):
        eq5d3l_index(pd.DataFrame({c: [1] for c in EQ5D_COLUMNS}).assign(eq5d_ua=4))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 3), min_size=5, max_size=5))
def test_eq5d_index_bounded_and_monotone(levels):
    state = "".join(map(str, levels))
    value = eq5d3l_index(pd.Series([state])).iloc[0]
    assert -0.594 - 1e-9 <= value <= 1.0
    assert (value == 1.0) == (state == "11111")
    # worsening any one dimension never raises the index
    for d in range(5):
        if levels[d] < 3:
            worse = levels.copy()
            worse[d] += 1
            assert eq5d3l_index(pd.Series(["".join(map(str, worse))])).iloc[0] <= value + 1e-12


# --- SBST properties ------------------------------------------------------------------------

sbst_rows = st.tuples(*([st.integers(0, 1)] * 8), st.integers(0, 4))


@settings(max_examples=200, deadline=None)
@given(st.lists(sbst_rows, min_size=1, max_size=20))
def test_sbst_invariants(rows):
    out = score_sbst(sbst_frame([list(r) for r in rows]))
    assert out["sbst_total"].between(0, 9).all()
    assert out["sbst_psychosocial"].between(0, 5).all()
    assert (out["sbst_psychosocial"] <= out["sbst_total"]).all()
    assert out["risk_group"].notna().all()
    assert (out.loc[out["sbst_total"] <= 3, "risk_group"] == "low").all()


@settings(max_examples=200, deadline=None)
@given(sbst_rows, st.integers(0, 8))
def test_sbst_risk_group_monotone_in_items(row, item):
    row = list(row)
    up = row.copy()
    up[item] = min(up[item] + 1, 4 if item == 8 else 1)
    out = score_sbst(sbst_frame([row, up]))
    assert out["risk_group"].cat.codes.iloc[1] >= out["risk_group"].cat.codes.iloc[0]


@settings(max_examples=100, deadline=None)
@given(sbst_rows, st.sets(st.integers(0, 8), min_size=1, max_size=3))
def test_sbst_determinable_group_agrees_with_every_completion(row, hidden):
    row = [float(v) for v in row]
    masked = [np.nan if i in hidden else v for i, v in enumerate(row)]
    group = score_sbst(sbst_frame([masked]), missing="determinable")["risk_group"].iloc[0]
    if pd.notna(group):
        assert score_sbst(sbst_frame([row]))["risk_group"].iloc[0] == group


# --- PABS-PT, global change, MCID ----------------------------------------------------------

def test_pabs_default_mapping_and_custom_mapping():
    df = pd.DataFrame([[6] * 10 + [1] * 9, list(range(1, 7)) * 3 + [6]], columns=PABS)
    out = score_pabs(df)
    assert out.columns.tolist() == ["pabs_biomedical", "pabs_behavioural"]
    assert out.iloc[0].tolist() == [60.0, 9.0]
    assert out.iloc[1].tolist() == [sum([1, 2, 3, 4, 5, 6, 1, 2, 3, 4]), sum([5, 6, 1, 2, 3, 4, 5, 6, 6])]
    custom = score_pabs(df, {"first_two": ["pabs_1", "pabs_2"]})
    assert custom["first_two"].tolist() == [12.0, 3.0]


def test_pabs_missing_and_bad_codes():
    df = pd.DataFrame([[6] * 10 + [1] * 9], columns=PABS, dtype="float64")
    df.loc[0, "pabs_3"] = np.nan
    assert np.isnan(score_pabs(df).loc[0, "pabs_biomedical"])
    assert score_pabs(df, max_missing=1).loc[0, "pabs_biomedical"] == pytest.approx(54 * 10 / 9)
    with pytest.raises(ValueError, match=r"'pabs_12': 1 row\(s\).*0"):
        score_pabs(df.assign(pabs_12=0))


def test_good_outcome_codes_and_labels():
    assert good_outcome(pd.Series([1, 2, 3, 4, 5, 6, None])).tolist()[:6] == [1, 1, 0, 0, 0, 0]
    labels = pd.Series(pd.Categorical(["completely recovered", "much better", "better", None],
                                      categories=list(bp.scoring.GLOBAL_CHANGE_LABELS), ordered=True))
    out = good_outcome(labels)
    assert out.tolist()[:3] == [1.0, 1.0, 0.0] and np.isnan(out.iloc[3])
    with pytest.raises(ValueError, match="global_change"):
        good_outcome(pd.Series([0, 7], name="global_change"))


def test_rmdq_mcid_default_and_parameter():
    base = pd.Series([10.0, 10.0, 10.0, 0.0, np.nan, 20.0])
    follow = pd.Series([7.0, 7.5, 12.0, 0.0, 3.0, 10.0])
    assert rmdq_mcid(base, follow).tolist()[:4] == [1.0, 0.0, 0.0, 0.0]
    assert np.isnan(rmdq_mcid(base, follow).iloc[4])
    assert rmdq_mcid(base, follow, min_reduction=0.5).tolist()[5] == 1.0
    assert rmdq_mcid(base, follow, min_reduction=0.51).tolist()[5] == 0.0
    with pytest.raises(ValueError, match="min_reduction"):
        rmdq_mcid(base, follow, min_reduction=0)


def test_scoring_exported_from_package():
    for name in ("score_sbst", "score_rmdq", "eq5d3l_index", "score_pabs", "good_outcome", "rmdq_mcid"):
        assert getattr(bp, name) is getattr(bp.scoring, name)
    assert issubclass(ScoringError, ValueError)


# --- fast paths (integer item columns -> int8 codes; EQ-5D state table) ---------------------

def _random_items(columns, codes, n=400, seed=0, missing=0.1):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({c: rng.choice(codes, n).astype("float64") for c in columns})
    return df.mask(rng.random(df.shape) < missing)


@pytest.mark.parametrize("missing_rule", ["undefined", "zero", "determinable"])
def test_integer_fast_path_agrees_with_general_path(missing_rule):
    sbst = _random_items(SBST[:8], [0, 1]).join(_random_items(SBST[8:], [0, 1, 2, 3, 4], seed=1))
    general = score_sbst(sbst, missing=missing_rule)  # float64 columns: the general path
    for dtype in ("Int64", "Int8", "UInt16"):
        pd.testing.assert_frame_equal(score_sbst(sbst.astype(dtype), missing=missing_rule), general)
    complete = sbst.fillna(0)
    pd.testing.assert_frame_equal(score_sbst(complete.astype("int64"), missing=missing_rule),
                                  score_sbst(complete, missing=missing_rule))
    rmdq = _random_items(RMDQ, [0, 1], missing=0.03)
    for max_missing in (0, 2, 5):
        want = score_rmdq(rmdq, max_missing=max_missing)
        pd.testing.assert_series_equal(score_rmdq(rmdq.astype("Int64"), max_missing=max_missing), want)
        pd.testing.assert_series_equal(score_rmdq(rmdq.astype(object), max_missing=max_missing), want)


@pytest.mark.parametrize("bad", [2, -1, 256, 257, 2**40, -(2**40)])
def test_integer_fast_path_refuses_values_outside_the_codes(bad):
    # 256 and 257 would wrap to 0 and 1 in int8: the range check must refuse them first
    rows = [[1] * 24, [0] * 24, [1] * 24]
    df = pd.DataFrame(rows, columns=RMDQ).astype("Int64")
    df.loc[1, "rmdq_3"] = bad
    df.loc[0, "rmdq_9"] = pd.NA
    message = rf"'rmdq_3': 1 row\(s\) hold values outside .*: {re.escape(f'{float(bad):g}')}$"
    with pytest.raises(ScoringError, match=message):
        score_rmdq(df)
    with pytest.raises(ScoringError, match=message):
        score_rmdq(df.fillna(0).astype("int64"))
    uint = pd.DataFrame(rows, columns=RMDQ).astype("uint64")
    uint.loc[2, "rmdq_1"] = np.uint64(2**64 - 1)  # wraps to -1 as int64: must be refused, not read as missing
    with pytest.raises(ScoringError, match=r"'rmdq_1': 1 row\(s\)"):
        score_rmdq(uint)


def test_integer_fast_path_codes_match_general_codes():
    from backpain_analysis.scoring import _coded_columns, _int_codes_fast, _item_codes

    s = pd.Series([0, 4, None, 3, 1, None], dtype="Int64", name="x")
    fast = _int_codes_fast(s, 0, 4)
    assert fast.dtype == np.int8 and fast.tolist() == [0, 4, -1, 3, 1, -1]
    assert _int_codes_fast(s, 0, 3) is None  # 4 is outside 0..3
    assert _int_codes_fast(s.astype("float64"), 0, 4) is None  # float: general path
    assert _int_codes_fast(s.astype("category"), 0, 4) is None
    general = _coded_columns(pd.DataFrame({"x": s}), ["x"], {"x": (0, 1, 2, 3, 4)})[0]
    via_general = _item_codes(pd.DataFrame({"x": s.astype("float64")}), ["x"], {"x": (0, 1, 2, 3, 4)})[0]
    np.testing.assert_array_equal(np.where(np.isnan(general), -1, general), fast)
    np.testing.assert_array_equal(via_general, fast)
    assert _int_codes_fast(pd.Series([], dtype="Int64"), 0, 1).size == 0


def test_eq5d_state_table_equals_the_tariff_row_by_row():
    from backpain_analysis.scoring import eq5d3l_tariff

    rng = np.random.default_rng(3)
    states = rng.integers(1, 4, size=(5000, 5))
    want = np.round(eq5d3l_tariff(states), 3)  # the tariff computed on the whole array
    frame = pd.DataFrame(states, columns=list(EQ5D_COLUMNS))
    np.testing.assert_array_equal(eq5d3l_index(frame).to_numpy(), want)
    np.testing.assert_array_equal(eq5d3l_index(frame.astype("Int64")).to_numpy(), want)
    np.testing.assert_array_equal(eq5d3l_index(frame.astype("float64")).to_numpy(), want)
    text = pd.Series(["".join(map(str, row)) for row in states])
    np.testing.assert_array_equal(eq5d3l_index(text).to_numpy(), want)
    gappy = frame.astype("Int64")
    gappy.iloc[::7, 2] = pd.NA
    out = eq5d3l_index(gappy).to_numpy()
    assert np.isnan(out[::7]).all()
    keep = np.ones(len(out), bool)
    keep[::7] = False
    np.testing.assert_array_equal(out[keep], want[keep])


def test_pabs_allocation_from_item_numbers_scores_by_hand_and_rejects_bad_lists():
    from backpain_analysis.scoring import ScoringError, pabs_mapping

    ratings = np.arange(1, 20) % 6 + 1  # item i rated (i mod 6) + 1
    df = pd.DataFrame([ratings], columns=[f"pabs_{i}" for i in range(1, 20)])
    bio, beh = [2, 4, 6, 8, 10, 12, 14, 16, 18, 19], [1, 3, 5, 7, 9, 11, 13, 15, 17]
    out = score_pabs(df, pabs_mapping(bio, beh))
    assert out.loc[0, "pabs_biomedical"] == sum(i % 6 + 1 for i in bio)
    assert out.loc[0, "pabs_behavioural"] == sum(i % 6 + 1 for i in beh)
    assert pabs_mapping(range(1, 11), range(11, 20)) == {k: tuple(v) for k, v in
                                                         bp.scoring.PABS_DEFAULT_MAPPING.items()}
    for bad, match in (([1, 2], [2, 3]), ([1, 1], [3]), ([0, 2], [3]), ([1, 2.5], [3]), ([], [3])):
        with pytest.raises(ScoringError, match="pabs_b"):
            pabs_mapping(bad, match)
