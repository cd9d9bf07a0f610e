"""Chapter 07 on the imputations shared with chapter 05 (issue 13 item 3, issue 18 item 6).

The economic data sets of ``prepare_economic_data(imputation="shared")`` are checked cell by
cell against the imputed values stored in the :class:`ImputedDatasets` (read directly from
``.values``, not through the data sets they build), priced by hand with the unit costs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backpain_analysis import economics as ec
from backpain_analysis.imputation import data_fingerprint, shared_imputations

PRICES = {"n_gp_consultations": 30.0, "physio_sessions": 40.0, "imaging": 100.0, "n_prescriptions": 10.0,
          "secondary_care_referral": 150.0}
DAY = 100.0
RECORD_ITEMS = ["n_gp_consultations", "imaging", "n_prescriptions", "secondary_care_referral"]


def _unit_costs():
    items = {"gp_consultation": 30.0, "physio_session": 40.0, "imaging": 100.0, "prescription": 10.0,
             "secondary_care_referral": 150.0, "day_off_work": DAY}
    return pd.DataFrame({"item": list(items), "unit": "u", "cost_gbp": list(items.values()), "price_year": "2009/10",
                         "source": "test", "notes": ""})


def _study(n: int = 240, seed: int = 0) -> pd.DataFrame:
    """A small analysis dataset: record-review items missing for non-consenters, EQ-5D and RMDQ for non-responders."""
    rng = np.random.default_rng(seed)
    phase = np.repeat([1, 3], n // 2)
    e0 = np.round(rng.uniform(0.1, 0.9, n), 3)
    employed = (rng.random(n) < 0.6).astype(float)
    d = pd.DataFrame({
        "patient_id": [f"P{i}" for i in range(n)],
        "phase": phase,
        "practice_id": np.tile(["A", "B"], n // 2),
        "risk_group": pd.Categorical(rng.choice(["low", "medium", "high"], n), categories=["low", "medium", "high"],
                                     ordered=True),
        "age": np.round(rng.normal(50, 12, n)),
        "employed": employed,
        "rmdq_0m": rng.integers(0, 24, n).astype(float),
        "eq5d_index_0m": e0,
        "eq5d_index_2m": np.round(np.clip(e0 + rng.normal(0.05, 0.1, n), -0.5, 1), 3),
        "eq5d_index_6m": np.round(np.clip(e0 + rng.normal(0.1, 0.1, n), -0.5, 1), 3),
        "n_gp_consultations": rng.poisson(1.5, n).astype(float),
        "physio_sessions": rng.poisson(2, n).astype(float),
        "imaging": (rng.random(n) < 0.2).astype(float),
        "n_prescriptions": rng.poisson(2, n).astype(float),
        "secondary_care_referral": (rng.random(n) < 0.1).astype(float),
        "days_off_work_6m": np.where(employed == 1, rng.poisson(4, n), np.nan),
    })
    d["rmdq_6m"] = np.clip(d["rmdq_0m"] - rng.integers(0, 8, n), 0, 24).astype(float)
    no_records = rng.random(n) < 0.25
    d.loc[no_records, RECORD_ITEMS] = np.nan
    lost = rng.random(n) < 0.3
    d.loc[lost, ["eq5d_index_6m", "rmdq_6m", "days_off_work_6m"]] = np.nan
    d.loc[rng.random(n) < 0.2, "eq5d_index_2m"] = np.nan
    return d


@pytest.fixture(scope="module")
def shared():
    d = _study()
    imps = shared_imputations(d, n_imputations=4, seed=3, max_iter=3)
    sets = ec.prepare_economic_data(d, _unit_costs(), imputation="shared", imputations=imps)
    return d, imps, sets


def _imputed(imps, column: str, i: int, d: pd.DataFrame) -> pd.Series:
    """Column ``column`` of imputation ``i``, filled by hand from the stored (missing, values) arrays."""
    miss, vals = imps.values[column]
    out = d[column].astype(float).to_numpy().copy()
    assert np.isnan(out[miss]).all()
    out[miss] = vals[i]
    return pd.Series(out, index=d.index)


def test_shared_sets_carry_each_imputations_own_values(shared):
    d, imps, sets = shared
    assert len(sets) == len(imps) == 4
    for c in [*RECORD_ITEMS, "eq5d_index_2m", "eq5d_index_6m", "days_off_work_6m"]:
        assert c in imps.values, c  # the shared model imputes every economic variable of these data
    # the imputations differ, so a data set built from the wrong imputation is detectable
    assert not np.allclose(imps.values["n_gp_consultations"][1][0], imps.values["n_gp_consultations"][1][1])
    for i, s in enumerate(sets):
        for c in RECORD_ITEMS:
            np.testing.assert_allclose(s[f"cost_{c}"].to_numpy(), _imputed(imps, c, i, d).to_numpy() * PRICES[c],
                                       err_msg=f"imputation {i}, {c}")
        for c in ("eq5d_index_2m", "eq5d_index_6m"):
            np.testing.assert_allclose(s[c].to_numpy(), _imputed(imps, c, i, d).to_numpy(), err_msg=f"imputation {i}, {c}")
        # QALYs by the trapezium rule, by hand from the imputed utilities (years)
        e2, e6 = _imputed(imps, "eq5d_index_2m", i, d), _imputed(imps, "eq5d_index_6m", i, d)
        qaly = ((d["eq5d_index_0m"] + e2) / 2 * 2 + (e2 + e6) / 2 * 4) / 12
        np.testing.assert_allclose(s["qaly"].to_numpy(), qaly.to_numpy())
        # days off work: imputed for employed patients, no earnings lost out of paid work
        days = _imputed(imps, "days_off_work_6m", i, d).where(d["employed"] == 1, 0.0)
        np.testing.assert_allclose(s["productivity_cost"].to_numpy(), days.to_numpy() * DAY)


def test_observed_components_untouched_and_totals_summed_per_row(shared):
    d, _, sets = shared
    by_hand_cost = {c: d[c] * p for c, p in PRICES.items()}
    for s in sets:
        assert s[["nhs_cost", "societal_cost", "qaly"]].notna().all().all()
        for c in PRICES:
            seen = d[c].notna().to_numpy()
            np.testing.assert_array_equal(s[f"cost_{c}"].to_numpy()[seen], by_hand_cost[c].to_numpy()[seen])
        np.testing.assert_array_equal(s["cost_physio_sessions"].to_numpy(), d["physio_sessions"].to_numpy() * 40.0)
        for c in ("eq5d_index_0m", "eq5d_index_2m", "eq5d_index_6m"):
            seen = d[c].notna().to_numpy()
            np.testing.assert_array_equal(s[c].to_numpy()[seen], d[c].to_numpy()[seen])
        total = sum(s[f"cost_{c}"].to_numpy() for c in PRICES)  # a loop over rows' components, not the code's sum
        np.testing.assert_allclose(s["nhs_cost"].to_numpy(), total)
        np.testing.assert_allclose(s["societal_cost"].to_numpy(), total + s["productivity_cost"].to_numpy())
        assert "patient_id" not in s.columns and (s["phase"].to_numpy() == d["phase"].to_numpy()).all()
    full = d[list(PRICES)].notna().all(axis=1).to_numpy()
    np.testing.assert_allclose(sets[2]["nhs_cost"].to_numpy()[full], sum(by_hand_cost.values()).to_numpy()[full])


def test_observed_cells_win_over_whatever_the_imputations_hold(shared):
    d, imps, _ = shared
    corrupt = imps[0].copy()  # an imputed data set whose observed cells were changed
    for c in [*RECORD_ITEMS, "physio_sessions", "eq5d_index_6m"]:
        corrupt[c] = corrupt[c] + 1.0
    (s,) = ec.prepare_economic_data(d, _unit_costs(), imputations=[corrupt])
    for c in [*RECORD_ITEMS, "physio_sessions"]:
        seen = d[c].notna().to_numpy()
        np.testing.assert_array_equal(s[f"cost_{c}"].to_numpy()[seen], d[c].to_numpy()[seen] * PRICES[c])
        np.testing.assert_allclose(s[f"cost_{c}"].to_numpy()[~seen], corrupt[c].to_numpy()[~seen] * PRICES[c])
    seen = d["eq5d_index_6m"].notna().to_numpy()
    np.testing.assert_array_equal(s["eq5d_index_6m"].to_numpy()[seen], d["eq5d_index_6m"].to_numpy()[seen])


def test_shared_equals_computing_the_imputations_inside(shared):
    d, imps, sets = shared
    again = ec.prepare_economic_data(d, _unit_costs(), n_imputations=4, seed=3, max_iter=3)  # "shared" is the default
    for a, b in zip(sets, again, strict=True):
        pd.testing.assert_frame_equal(a, b)


def test_chapter07_reads_the_cache_entry_chapter05_wrote(tmp_path):
    from backpain_analysis import outcomes

    d = _study(seed=1)
    imps, choice = outcomes.imputations_by_rule(d, n_imputations=3, seed=5, max_iter=2, cache_dir=str(tmp_path))
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 1 and choice["m"] == 3
    sets = ec.prepare_economic_data(d, _unit_costs(), n_imputations=3, seed=5, max_iter=2, cache_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == files  # nothing imputed again
    direct = ec.prepare_economic_data(d, _unit_costs(), imputations=imps)
    for a, b in zip(sets, direct, strict=True):
        pd.testing.assert_frame_equal(a, b)


def test_shared_imputations_of_other_data_are_refused(shared):
    d, imps, _ = shared
    with pytest.raises(ec.EconomicsError, match="fingerprint"):
        ec.prepare_economic_data(d.iloc[:-4], _unit_costs(), imputations=imps)
    with pytest.raises(ec.EconomicsError, match="other rows"):
        ec.prepare_economic_data(d.iloc[:-4], _unit_costs(), imputations=[imps[0].iloc[:-5]])
    with pytest.raises(ec.EconomicsError, match="only with imputation='shared'"):
        ec.prepare_economic_data(d, _unit_costs(), imputation="mice", imputations=imps)
    assert imps.info["fingerprint"] == data_fingerprint(d)


def test_a_component_the_shared_model_does_not_impute_is_named():
    d = _study(seed=2)
    d.loc[d.index[:7], "physio_sessions"] = np.nan  # an auxiliary of the shared model, never imputed
    imps = shared_imputations(d, n_imputations=2, seed=1, max_iter=2)
    with pytest.raises(ec.EconomicsError, match=r"physio_sessions': 7.*imputation='mice'"):
        ec.prepare_economic_data(d, _unit_costs(), imputations=imps)


def test_observed_days_off_are_kept_and_non_workers_lose_nothing():
    d = _study(seed=4)
    imps = shared_imputations(d, n_imputations=2, seed=2, max_iter=2)
    sets = ec.prepare_economic_data(d, _unit_costs(), imputations=imps)
    seen = d["days_off_work_6m"].notna().to_numpy()
    for s in sets:
        np.testing.assert_array_equal(s["productivity_cost"].to_numpy()[seen], d["days_off_work_6m"].to_numpy()[seen] * DAY)
        assert (s.loc[d["employed"].to_numpy() == 0, "productivity_cost"] == 0).all()
