"""Uptake over time (issue 16): per practice and month, and the interrupted time series checked
against statsmodels (WLS, practice fixed effects, cluster-robust SE) and a slow reference loop."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import stats

from backpain_analysis.errors import BackpainError
from backpain_analysis.screening import (
    plot_uptake_over_time,
    training_milestones,
    uptake_by_practice_month,
    uptake_interrupted_time_series,
)


def _consultations(seed: int = 3, n_practices: int = 6) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_practices):
        base = rng.normal(0, 0.05)
        for day in pd.date_range("2008-01-01", "2009-12-31", freq="3D"):
            phase = 1 if day < pd.Timestamp("2008-07-01") else (3 if day >= pd.Timestamp("2009-01-01") else None)
            if phase is None:
                continue
            months = (day.year - 2009) * 12 + day.month - 1
            p = 0.03 + base + (0.35 + 0.02 * months if phase == 3 else 0.002 * months)
            rows.append({"practice_id": f"P{g}", "consultation_date": day, "phase": phase,
                         "sbst_completed": int(rng.random() < min(max(p, 0), 1))})
    return pd.DataFrame(rows)


def test_monthly_counts_by_a_slow_loop():
    c = _consultations()
    got = uptake_by_practice_month(c).set_index(["practice_id", "month"])
    for (pid, month), row in got.iterrows():
        mine = c[(c["practice_id"] == pid) & (c["consultation_date"].dt.strftime("%Y-%m") == month)]
        assert row["n_consultations"] == len(mine)
        assert row["n_completed"] == mine["sbst_completed"].sum()
    y, m = map(int, "2008-03".split("-"))
    assert got.loc[("P0", "2008-03"), "months_from_training"] == (y - 2009) * 12 + m - 1


def test_segmented_model_equals_statsmodels_wls_cluster():
    c = _consultations()
    by_month = uptake_by_practice_month(c)
    got = uptake_interrupted_time_series(by_month).set_index("term")
    d = by_month.assign(share=by_month["n_completed"] / by_month["n_consultations"],
                        months_after_training=by_month["months_from_training"] * by_month["after_training"])
    fit = smf.wls("share ~ months_from_training + after_training + months_after_training + C(practice_id) - 1",
                  data=d, weights=d["n_consultations"]).fit(cov_type="cluster",
                                                            cov_kwds={"groups": pd.factorize(d["practice_id"])[0]})
    g = d["practice_id"].nunique()
    for term in ("months_from_training", "after_training", "months_after_training"):
        assert got.loc[term, "estimate"] == pytest.approx(100 * fit.params[term], rel=1e-8)
        assert got.loc[term, "se"] == pytest.approx(100 * fit.bse[term], rel=1e-6)
        tval = fit.params[term] / fit.bse[term]
        assert got.loc[term, "p_value"] == pytest.approx(2 * stats.t.sf(abs(tval), g - 1), rel=1e-6)
        half = stats.t.ppf(0.975, g - 1) * 100 * fit.bse[term]
        assert got.loc[term, "ci_high"] - got.loc[term, "ci_low"] == pytest.approx(2 * half, rel=1e-6)
    assert (got["df"] == g - 1).all()
    assert set(got.columns) >= {"estimate", "ci_low", "ci_high", "p_value", "df", "method", "n_phase1", "n_phase3"}


def test_segmented_model_recovers_exact_effects():
    """Noise-free shares built from known parameters: the model gives them back exactly."""
    rows = []
    for g in range(4):
        for t in range(-6, 6):
            share = 0.10 + 0.01 * g + 0.005 * t + (0.30 + 0.02 * t if t >= 0 else 0)
            rows.append({"practice_id": f"P{g}", "month": f"m{t}", "phase": 3 if t >= 0 else 1,
                         "n_consultations": 1000, "n_completed": round(1000 * share),
                         "months_from_training": t, "after_training": int(t >= 0)})
    d = pd.DataFrame(rows)
    got = uptake_interrupted_time_series(d).set_index("term")["estimate"]
    assert got.to_dict() == pytest.approx({"months_from_training": 0.5, "after_training": 30.0,
                                           "months_after_training": 2.0}, abs=1e-9)


def test_given_training_dates_and_errors():
    c = _consultations(n_practices=3)
    m = training_milestones(c, training_dates={"P1": "2009-03-15"})
    assert m.set_index("practice_id").loc["P1", "training_date"] == pd.Timestamp("2009-03-15")
    assert m.set_index("practice_id").loc["P0", "source"] == "start of phase 3"
    one = uptake_by_practice_month(c[c["practice_id"] == "P0"])
    with pytest.raises(BackpainError, match="2 practices"):
        uptake_interrupted_time_series(one)
    fig = plot_uptake_over_time(uptake_by_practice_month(c, m), m)
    assert fig.axes[0].get_ylim() == (0, 100)
