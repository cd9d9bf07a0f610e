"""Tests of backpain_analysis.clinicians: response rates, scores, paired change, mixed ANOVA."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from backpain_analysis import clinicians as cl
from backpain_analysis.errors import BackpainError

PABS = [f"pabs_{i}" for i in range(1, 20)]


def _study(n_gp=30, n_physio=25, seed=0, drop_after=(), gp_bio_change=-2.0, physio_bio_change=-6.0):
    """Clinicians and surveys with PABS items whose subscale sums move by a known amount."""
    rng = np.random.default_rng(seed)
    ids = [f"GP{i:03d}" for i in range(n_gp)] + [f"PT{i:02d}" for i in range(n_physio)]
    prof = ["gp"] * n_gp + ["physio"] * n_physio
    days = np.r_[np.full(n_gp, 1.0), rng.integers(3, 10, n_physio).astype(float)]
    clin = pd.DataFrame({"clinician_id": ids, "profession": prof, "training_days": days,
                         "mentoring_sessions": rng.integers(0, 12, len(ids))})
    rows = []
    for cid, p, dd in zip(ids, prof, days, strict=True):
        bio = rng.integers(2, 6, 10)
        beh = rng.integers(2, 5, 9)
        for t in ("before", "after"):
            if t == "after" and cid in drop_after:
                continue
            b, h = bio.copy(), beh.copy()
            if t == "after":
                change = gp_bio_change if p == "gp" else physio_bio_change - 0.5 * (dd - 6)
                k = int(round(-change + rng.normal(0, 1.5)))
                for _ in range(max(k, 0)):  # lower k biomedical ratings by one point
                    j = rng.choice(np.flatnonzero(b > 1))
                    b[j] -= 1
                h = np.minimum(h + (rng.uniform(size=9) < (0.4 if p == "physio" else 0.1)), 6)
            rows.append({"clinician_id": cid, "time_point": t, **dict(zip(PABS, [*b, *h], strict=True)),
                         "confidence_low": int(rng.integers(5, 10)),
                         "confidence_medium": int(rng.integers(4, 9)),
                         "confidence_high": int(np.clip(rng.integers(2, 7) + (2 if t == "after" and p == "physio"
                                                                              else 0), 0, 10))})
    return clin, pd.DataFrame(rows)


def test_response_rates_use_all_clinicians_as_denominator():
    clin, surv = _study(n_gp=10, n_physio=8, drop_after=("GP000", "GP001", "PT00"))
    surv = surv.loc[surv["clinician_id"] != "GP009"]  # never answered
    r = cl.response_rates(clin, surv).set_index(["profession", "time_point"])
    assert r.loc[("gp", "before"), "n_clinicians"] == 10
    assert r.loc[("gp", "before"), "n_responded"] == 9
    assert r.loc[("gp", "after"), "n_responded"] == 7
    assert r.loc[("gp", "both"), "pct_responded"] == pytest.approx(70.0)
    assert r.loc[("physio", "both"), "n_responded"] == 7
    assert r.loc[("all", "before"), "n_clinicians"] == 18
    assert r.loc[("all", "both"), "n_responded"] == 14


@pytest.mark.parametrize(
    ("clin_edit", "surv_edit", "message"),
    [
        (lambda c: c.assign(profession="nurse"), lambda s: s, "profession"),
        (lambda c: c, lambda s: s.assign(time_point="during"), "time_point"),
        (lambda c: c.iloc[1:], lambda s: s, "not in table 'clinicians'"),
        (lambda c: c, lambda s: pd.concat([s, s.iloc[[0]]]), "more than one survey"),
        (lambda c: c.drop(columns="profession"), lambda s: s, "missing column"),
    ],
)
def test_bad_tables_raise_clear_errors(clin_edit, surv_edit, message):
    clin, surv = _study(n_gp=5, n_physio=5)
    with pytest.raises(cl.ClinicianDataError, match=message) as info:
        cl.clinician_scores(clin_edit(clin), surv_edit(surv))
    assert isinstance(info.value, BackpainError)


def test_scores_are_subscale_sums():
    clin, surv = _study(n_gp=4, n_physio=3)
    scores = cl.clinician_scores(clin, surv)
    s = surv.set_index(["clinician_id", "time_point"])
    for _, row in scores.iterrows():
        items = s.loc[(row["clinician_id"], row["time_point"])]
        assert row["pabs_biomedical"] == items[PABS[:10]].sum()
        assert row["pabs_behavioural"] == items[PABS[10:]].sum()
        assert row["confidence_high"] == items["confidence_high"]
    assert list(scores["time_point"].cat.categories) == ["before", "after"]
    assert scores["profession"].isin(["gp", "physio"]).all()


def test_paired_change_matches_scipy_and_hand_formulas():
    clin, surv = _study(seed=3, drop_after=("GP004", "PT03"))
    scores = cl.clinician_scores(clin, surv)
    table = cl.paired_changes(scores).set_index(["measure", "profession"])
    for measure in ["pabs_biomedical", "confidence_high"]:
        for prof in ["gp", "physio"]:
            w = cl.paired_wide(scores, measure)
            w = w.loc[w.profession == prof]
            row = table.loc[(measure, prof)]
            diff = w["after"] - w["before"]
            n = len(diff)
            assert row["n_pairs"] == n == (29 if prof == "gp" else 24)
            assert row["estimate"] == pytest.approx(diff.mean())
            tt = stats.ttest_rel(w["after"], w["before"])
            assert row["p_value"] == pytest.approx(tt.pvalue, rel=1e-9)
            half = stats.t.ppf(0.975, n - 1) * diff.std(ddof=1) / np.sqrt(n)
            assert row["ci_low"] == pytest.approx(diff.mean() - half, abs=1e-9)  # full precision, not 2 decimals
            assert row["ci_high"] == pytest.approx(diff.mean() + half, abs=1e-9)
            d_av = diff.mean() / np.sqrt((w["after"].var() + w["before"].var()) / 2)
            assert row["hedges_g"] == pytest.approx(d_av * (1 - 3 / (4 * 2 * n - 9)))
    # the generated change is recovered in direction: physios' biomedical score falls more than GPs'
    assert table.loc[("pabs_biomedical", "physio"), "estimate"] < table.loc[("pabs_biomedical", "gp"), "estimate"] < 0


def test_mixed_anova_interaction_equals_two_sample_t_squared():
    clin, surv = _study(seed=5)
    scores = cl.clinician_scores(clin, surv)
    aov = cl.mixed_anovas(scores, ["pabs_biomedical"]).set_index("effect")
    assert set(aov.index) == {"profession", "time", "time x profession"}
    w = cl.paired_wide(scores, "pabs_biomedical")
    t = stats.ttest_ind(w.loc[w.profession == "gp", "change"], w.loc[w.profession == "physio", "change"])
    assert aov.loc["time x profession", "f"] == pytest.approx(t.statistic**2, rel=1e-6)
    assert aov.loc["time x profession", "p_value"] == pytest.approx(t.pvalue, rel=1e-6)
    assert aov.loc["time", "n_clinicians"] == len(w)


def test_training_days_slope_and_correlation_match_numpy_and_scipy():
    clin, surv = _study(seed=8, n_physio=40)
    scores = cl.clinician_scores(clin, surv)
    res = cl.training_days_association(scores, ["pabs_biomedical"]).iloc[0]
    w = cl.paired_wide(scores, "pabs_biomedical")
    w = w.loc[w.profession == "physio"]
    slope = np.polyfit(w["training_days"], w["change"], 1)[0]
    r = stats.pearsonr(w["training_days"], w["change"])
    lr = stats.linregress(w["training_days"], w["change"])
    assert res["n"] == 40
    assert res["estimate"] == pytest.approx(slope)
    assert res["p_value"] == pytest.approx(lr.pvalue, rel=1e-6)
    assert res["r"] == pytest.approx(r.statistic)
    assert res["r_p_value"] == pytest.approx(r.pvalue, rel=1e-6)
    assert res["estimate"] < 0  # more training days, larger fall (as generated)


def test_before_after_figure_has_a_panel_per_profession():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clin, surv = _study(n_gp=6, n_physio=3)
    fig = cl.plot_before_after(cl.clinician_scores(clin, surv), "pabs_biomedical")
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith("GPs (n = 6")
    assert "fewer than 5" in titles[1]  # no count from 1 to 4 in a shared figure
    plt.close(fig)


def test_change_finding_withholds_small_groups():
    clin, surv = _study(n_gp=4, n_physio=12, seed=2)
    change = cl.paired_changes(cl.clinician_scores(clin, surv))
    gp = cl.change_finding(change, "pabs_biomedical", "gp")
    physio = cl.change_finding(change, "pabs_biomedical", "physio")
    assert gp == {"value": None, "ci_low": None, "ci_high": None, "n_pairs": 4}
    row = change.query("measure == 'pabs_biomedical' and profession == 'physio'").iloc[0]
    assert physio["value"] == pytest.approx(row["estimate"]) and physio["n_pairs"] == 12
    with pytest.raises(cl.ClinicianDataError, match="no single row"):
        cl.change_finding(change, "nonsense", "gp")


def test_changes_recover_the_synthetic_truth(tmp_path):
    from backpain_analysis.dataset import load_analysis_dataset
    from backpain_analysis.synthetic import generate_study

    # many clinicians; the true changes from a 40,000-clinician Monte Carlo (error ~0.05, far below 1 SE here)
    study = generate_study(n_invited=1000, seed=9, n_gps=600, n_physios=1500, n_practices=20, truth_mc_n=40000)
    study.write(tmp_path)
    clean, _ = load_analysis_dataset(tmp_path)
    change = cl.paired_changes(cl.clinician_scores(clean.tables["clinicians"], clean.tables["clinician_surveys"]))
    keys = {"pabs_biomedical_change_gp": ("pabs_biomedical", "gp"),
            "pabs_biomedical_change_physio": ("pabs_biomedical", "physio"),
            "pabs_behavioural_change_physio": ("pabs_behavioural", "physio"),
            "confidence_high_risk_change_physio": ("confidence_high", "physio")}
    for name, (measure, prof) in keys.items():
        row = change.loc[(change["measure"] == measure) & (change["profession"] == prof)].iloc[0]
        se = (row["ci_high"] - row["ci_low"]) / (2 * stats.t.ppf(0.975, row["n_pairs"] - 1))
        assert row["n_pairs"] > 300
        assert abs(row["estimate"] - study.truth[name]) < 4 * se, (name, row["estimate"], study.truth[name])


def test_pingouin_rounding_options_are_restored():
    import pingouin

    before = dict(pingouin.options)
    clin, surv = _study(n_gp=8, n_physio=8)
    cl.paired_changes(cl.clinician_scores(clin, surv))
    assert dict(pingouin.options) == before


def test_docstring_examples_run():
    import doctest

    import matplotlib

    matplotlib.use("Agg")
    result = doctest.testmod(cl, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted >= 15


def test_training_days_ci_and_correlation_ci_by_hand():
    # slope CI: slope -/+ t(0.975, n - 2) x SE (scipy linregress); r CI: Fisher z with a normal quantile
    clin, surv = _study(seed=11, n_physio=30)
    scores = cl.clinician_scores(clin, surv)
    res = cl.training_days_association(scores, ["pabs_biomedical", "confidence_high"])
    for _, row in res.iterrows():
        w = cl.paired_wide(scores, row["measure"])
        w = w.loc[w.profession == "physio"]
        n = len(w)
        lr = stats.linregress(w["training_days"], w["change"])
        half = stats.t.ppf(0.975, n - 2) * lr.stderr
        assert row["estimate"] == pytest.approx(lr.slope)
        assert row["ci_low"] == pytest.approx(lr.slope - half, rel=1e-9)
        assert row["ci_high"] == pytest.approx(lr.slope + half, rel=1e-9)
        assert row["ci_low"] < row["estimate"] < row["ci_high"]
        assert row["p_value"] == pytest.approx(2 * stats.t.sf(abs(lr.slope / lr.stderr), n - 2), rel=1e-9)
        z, se = np.arctanh(lr.rvalue), 1 / np.sqrt(n - 3)
        assert row["r"] == pytest.approx(lr.rvalue)
        assert row["r_ci_low"] == pytest.approx(np.tanh(z - stats.norm.ppf(0.975) * se), rel=1e-6)
        assert row["r_ci_high"] == pytest.approx(np.tanh(z + stats.norm.ppf(0.975) * se), rel=1e-6)


def test_paired_change_sd_and_means_by_hand():
    clin, surv = _study(seed=12, n_gp=12, n_physio=9, drop_after=("GP001",))
    scores = cl.clinician_scores(clin, surv)
    row = cl.paired_changes(scores, ["pabs_behavioural"]).set_index("profession").loc["gp"]
    s = surv.set_index(["clinician_id", "time_point"])[[f"pabs_{i}" for i in range(11, 20)]].sum(axis=1)
    ids = [f"GP{i:03d}" for i in range(12) if i != 1]
    before = np.array([s[(c, "before")] for c in ids], float)
    after = np.array([s[(c, "after")] for c in ids], float)
    assert row["n_pairs"] == 11
    assert row["mean_before"] == pytest.approx(before.mean())
    assert row["mean_after"] == pytest.approx(after.mean())
    assert row["sd_change"] == pytest.approx(np.std(after - before, ddof=1))
    assert row["dof"] == 10
    assert row["t"] == pytest.approx((after - before).mean() / (np.std(after - before, ddof=1) / np.sqrt(11)))


# --------------------------------------------------------------------------- mixed model, every survey
def _scores_long(n=25, seed=0, drop_after=0, clusters=0, cluster_sd=0.0):
    rng = np.random.default_rng(seed)
    person = rng.normal(0, 3, n)
    cl_eff = rng.normal(0, cluster_sd, max(clusters, 1))
    rows = []
    for i in range(n):
        c = i % clusters if clusters else 0
        for t, shift in (("before", 0.0), ("after", -2.0)):
            if t == "after" and i < drop_after:
                continue
            rows.append({"clinician_id": f"P{i:02d}", "profession": "physio", "time_point": t,
                         "cluster_id": f"S{c}" if clusters else None,
                         "pabs_biomedical": 35 + person[i] + cl_eff[c] + shift + rng.normal(0, 1.5)})
    return pd.DataFrame(rows)


def test_mixed_model_equals_paired_t_test_with_complete_pairs_and_no_clustering():
    scores = _scores_long(n=25, seed=1)
    res = cl.mixed_model_changes(scores, ["pabs_biomedical"], cluster=False).set_index("profession").loc["physio"]
    w = scores.pivot(index="clinician_id", columns="time_point", values="pabs_biomedical")
    diff = w["after"] - w["before"]
    tt = stats.ttest_rel(w["after"], w["before"])
    ci = tt.confidence_interval()
    assert res["n_pairs"] == 25 and res["n_before"] == 25
    assert res["estimate"] == pytest.approx(diff.mean(), rel=1e-7)
    assert res["se"] == pytest.approx(diff.std(ddof=1) / np.sqrt(25), rel=1e-5)
    assert res["df"] == pytest.approx(24, rel=1e-5)
    assert res["ci_low"] == pytest.approx(ci.low, rel=1e-5)
    assert res["ci_high"] == pytest.approx(ci.high, rel=1e-5)
    assert res["p_value"] == pytest.approx(tt.pvalue, rel=1e-4)
    assert "Kenward-Roger" in res["method"]


def test_mixed_model_uses_unpaired_surveys_like_statsmodels_mixedlm():
    import statsmodels.formula.api as smf

    scores = _scores_long(n=30, seed=2, drop_after=6)
    res = cl.mixed_model_changes(scores, ["pabs_biomedical"], cluster=False).set_index("profession").loc["physio"]
    assert (res["n_before"], res["n_after"], res["n_pairs"]) == (30, 24, 24)
    d = scores.assign(after=(scores["time_point"] == "after").astype(float))
    fit = smf.mixedlm("pabs_biomedical ~ after", d, groups=d["clinician_id"]).fit(reml=True)
    assert res["estimate"] == pytest.approx(fit.params["after"], rel=1e-4)
    assert res["var_clinician"] == pytest.approx(fit.cov_re.iloc[0, 0], rel=1e-3)
    assert res["var_residual"] == pytest.approx(fit.scale, rel=1e-3)
    # the unpaired before-surveys carry information: the estimate differs from the complete-pair mean
    paired = cl.paired_changes(scores, ["pabs_biomedical"]).set_index("profession").loc["physio"]
    assert res["estimate"] != pytest.approx(paired["estimate"], rel=1e-6)


HAVE_R = __import__("shutil").which("Rscript") is not None


@pytest.mark.skipif(not HAVE_R, reason="Rscript is not installed")
def test_clustered_mixed_model_matches_lme4_and_pbkrtest(tmp_path):
    import subprocess

    scores = _scores_long(n=36, seed=4, drop_after=7, clusters=4, cluster_sd=2.0)
    res = cl.mixed_model_changes(scores, ["pabs_biomedical"], drop_zero_component=False)
    res = res.set_index("profession").loc["physio"]
    path = tmp_path / "s.csv"
    scores.assign(after=(scores["time_point"] == "after").astype(int)).to_csv(path, index=False)
    script = (
        "suppressMessages({library(lme4); library(pbkrtest)});"
        f"d <- read.csv('{path}');"
        "m <- lmer(pabs_biomedical ~ after + (1 | clinician_id) + (1 | cluster_id), data = d, REML = TRUE);"
        "L <- matrix(c(0, 1), 1); v <- vcovAdj(m); "
        "cat(fixef(m)[2], sqrt(v[2, 2]), Lb_ddf(L, vcov(m), v), "
        "as.data.frame(VarCorr(m))$vcov, sep = '\\n')"
    )
    out = subprocess.run(["Rscript", "-e", script], capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        pytest.skip(f"R lme4/pbkrtest unavailable: {out.stderr[-300:]}")
    est, se, ddf, v_clin, v_cluster, v_res = map(float, out.stdout.split())
    assert res["estimate"] == pytest.approx(est, rel=1e-4)
    assert res["se"] == pytest.approx(se, rel=1e-3)
    assert res["df"] == pytest.approx(ddf, rel=1e-2)
    assert res["var_clinician"] == pytest.approx(v_clin, rel=1e-2)
    assert res["var_cluster"] == pytest.approx(v_cluster, rel=1e-2)
    assert res["var_residual"] == pytest.approx(v_res, rel=1e-2)
    half = stats.t.ppf(0.975, res["df"]) * res["se"]
    assert (res["ci_low"], res["ci_high"]) == pytest.approx((res["estimate"] - half, res["estimate"] + half))


def test_mentoring_dose_response_matches_linregress_without_clusters():
    clin, surv = _study(seed=13, n_physio=30)
    scores = cl.clinician_scores(clin, surv)
    res = cl.dose_response(scores, ["confidence_high"], exposure="mentoring_sessions").iloc[0]
    w = cl.paired_wide(scores, "confidence_high")
    w = w.loc[w.profession == "physio"]
    lr = stats.linregress(w["mentoring_sessions"], w["change"])
    half = stats.t.ppf(0.975, len(w) - 2) * lr.stderr
    assert res["exposure"] == "mentoring_sessions" and res["df"] == len(w) - 2
    assert (res["estimate"], res["ci_low"], res["ci_high"]) == pytest.approx((lr.slope, lr.slope - half,
                                                                              lr.slope + half), rel=1e-9)
    assert res["p_value"] == pytest.approx(lr.pvalue, rel=1e-9)
    assert res["r_p_value"] == pytest.approx(lr.pvalue, rel=1e-9)
    with pytest.raises(cl.ClinicianDataError, match="exposure"):
        cl.dose_response(scores, exposure="years_qualified")


def test_mixed_model_table_hides_small_counts():
    clin, surv = _study(n_gp=4, n_physio=12, seed=2)
    scores = cl.clinician_scores(clin, surv)
    mixed = cl.mixed_model_changes(scores, ["pabs_biomedical"])
    shared = cl.shared_tables(cl.response_rates(clin, surv), mixed=mixed)["mixed_model_change"]
    gp = shared.loc[shared.profession == "gp"].iloc[0]
    assert gp["n_before"] == "*" and gp["estimate"] == "*"
    physio = shared.loc[shared.profession == "physio"].iloc[0]
    # a profession of 1-4 hides every count (the "all" row minus the other profession gives it)
    assert physio["n_pairs"] == "*" and physio["estimate"] != "*"
    big = cl.shared_tables(cl.response_rates(*_study(n_gp=10, n_physio=12, seed=2)),
                           mixed=cl.mixed_model_changes(cl.clinician_scores(*_study(n_gp=10, n_physio=12, seed=2)),
                                                        ["pabs_biomedical"]))["mixed_model_change"]
    assert big.loc[big.profession == "physio", "n_pairs"].item() == 12


def test_shared_response_display_table_passes_the_disclosure_check(tmp_path):
    # the display table's footnote row (empty cells) next to the "All clinicians" total row once
    # crashed the checker (pandas 3 keeps NaN through astype(str))
    from backpain_analysis import disclosure
    from backpain_analysis.presentation import display_table

    clin, surv = _study(n_gp=12, n_physio=9, drop_after=("GP000", "GP001"))
    shared = cl.shared_tables(cl.response_rates(clin, surv))["survey_response"]
    page = tmp_path / "page.html"
    page.write_text(display_table(cl.for_display(shared), caption="Response").to_html())
    tables = disclosure._html_tables(page)
    assert tables and any(tables[0].astype(str).apply(lambda c: c.str.contains("All clinicians")).any())
    assert disclosure._table_findings(tables[0], "page.html", "06_clinicians", 5) == []
