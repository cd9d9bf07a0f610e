"""Stratification: matched pathways, received pathway, matched care and referral."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import backpain_analysis as bp
from backpain_analysis.stratification import (
    MATCHED_PATHWAYS,
    matched_care,
    matched_pathway,
    matched_referral,
    received_pathway,
)


def test_matched_pathway_per_risk_group():
    assert MATCHED_PATHWAYS == {"low": "advice", "medium": "physiotherapy", "high": "psych_informed_physiotherapy"}
    risk = pd.Series(pd.Categorical(["low", "medium", "high", None], categories=["low", "medium", "high"],
                                    ordered=True), index=[10, 11, 12, 13])
    out = matched_pathway(risk)
    assert out.index.tolist() == [10, 11, 12, 13]
    assert out.tolist()[:3] == ["advice", "physiotherapy", "psych_informed_physiotherapy"]
    assert pd.isna(out.iloc[3])
    assert out.cat.ordered


def test_received_pathway_rules():
    referral = pd.Series([0, 1, 1, np.nan, np.nan, 0, 1, np.nan])
    approach = pd.Series([None, None, "manual_exercise", "psych_informed", None, "advice_only", "psych_informed",
                          "advice_only"])
    out = received_pathway(referral, approach)
    assert out.tolist()[:4] == ["advice", "physiotherapy", "physiotherapy", "psych_informed_physiotherapy"]
    assert pd.isna(out.iloc[4])
    assert out.tolist()[5:] == ["physiotherapy", "psych_informed_physiotherapy", "physiotherapy"]


def test_received_pathway_bad_inputs():
    with pytest.raises(ValueError, match="approach"):
        received_pathway(pd.Series([1]), pd.Series(["acupuncture"], name="approach"))
    with pytest.raises(ValueError, match="0/1"):
        received_pathway(pd.Series([2]), pd.Series([None]))
    with pytest.raises(ValueError, match="same index"):
        received_pathway(pd.Series([1], index=[1]), pd.Series([None], index=[2]))


def test_matched_care_and_referral():
    risk = pd.Series(["low", "low", "medium", "medium", "high", "high", None, "low"])
    referral = pd.Series([0, 1, 1, 0, 1, 1, 1, np.nan])
    approach = pd.Series([None, None, "manual_exercise", None, "psych_informed", "manual_exercise", None, None])
    received = received_pathway(referral, approach)
    care = matched_care(matched_pathway(risk), received)
    assert care.tolist()[:6] == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    assert np.isnan(care.iloc[6]) and np.isnan(care.iloc[7])
    ref = matched_referral(risk, referral)
    assert ref.tolist()[:6] == [1.0, 0.0, 1.0, 0.0, 1.0, 1.0]
    assert np.isnan(ref.iloc[6]) and np.isnan(ref.iloc[7])
    with pytest.raises(ValueError, match="risk groups"):
        matched_referral(pd.Series(["severe"]), pd.Series([1]))


def test_exported_from_package():
    for name in ("matched_pathway", "received_pathway", "matched_care", "matched_referral"):
        assert getattr(bp, name) is getattr(bp.stratification, name)


# --- fast paths (categorical codes, numeric 0/1) agree with the general (object) path ---------

def _random_inputs(n=600, seed=0):
    rng = np.random.default_rng(seed)
    risk = pd.Series(rng.choice(["low", "medium", "high", None], n), index=np.arange(n) * 3)
    referral = pd.Series(rng.choice([0.0, 1.0, np.nan], n), index=risk.index)
    approach = pd.Series(rng.choice(["advice_only", "manual_exercise", "psych_informed", None], n),
                         index=risk.index)
    return risk, referral, approach


def test_categorical_fast_paths_agree_with_object_path():
    risk, referral, approach = _random_inputs()
    ordered = pd.CategoricalDtype(["advice_only", "manual_exercise", "psych_informed"], ordered=True)
    shuffled = pd.CategoricalDtype(["psych_informed", "tele", "advice_only", "manual_exercise"])  # unused extra
    want = received_pathway(referral, approach.astype(object))
    for dtype in (ordered, shuffled):
        pd.testing.assert_series_equal(received_pathway(referral, approach.astype(dtype)), want)
    for ref in (referral.fillna(0).astype("int64"), referral.astype(object)):
        pd.testing.assert_series_equal(received_pathway(ref, approach), received_pathway(ref.astype(object), approach))
    matched = matched_pathway(risk)
    want_care = matched_care(matched.astype(object), want.astype(object))
    pd.testing.assert_series_equal(matched_care(matched, want), want_care)
    renamed = want.cat.reorder_categories(list(reversed(want.cat.categories)))  # other code order, same values
    pd.testing.assert_series_equal(matched_care(matched, renamed), want_care)
    pd.testing.assert_series_equal(matched_referral(risk, referral), matched_referral(risk, referral.astype(object)))


def test_fast_paths_refuse_and_the_general_path_reports():
    referral = pd.Series([1.0, 0.0, 2.0])
    with pytest.raises(ValueError, match=r"values must be 0/1 or missing; 1 row\(s\) are not"):
        received_pathway(referral, pd.Series([None, None, None], dtype="category"))
    with pytest.raises(ValueError, match=r"0/1 or missing; 1 row\(s\)"):
        matched_referral(pd.Series(["low", "low", "high"]), pd.Series([0, 1, -3]))
    approach = pd.Series(pd.Categorical(["manual_exercise", "acupuncture", None]), name="approach")
    with pytest.raises(ValueError, match=r"'approach': 1 row\(s\) hold approaches outside .*'acupuncture'"):
        received_pathway(pd.Series([1.0, 0.0, 0.0]), approach)
    numbered = pd.Series(pd.Categorical([1, 2, None]))  # not str categories: general path
    with pytest.raises(ValueError, match="approaches outside"):
        received_pathway(pd.Series([1.0, 0.0, 0.0]), numbered)
    odd = pd.Series(pd.Categorical(["advice", "massage"]))
    with pytest.raises(ValueError, match=r"matched_care: received holds values outside .*'massage'"):
        matched_care(pd.Series(pd.Categorical(["advice", "advice"])), odd)
