from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from backpain_analysis.cohort import (
    baseline_means,
    export_table1,
    response_bias,
    response_groups,
    shareable_table1,
    table1,
    table1_frame,
)
from backpain_analysis.disclosure import small_count_cells
from backpain_analysis.errors import BackpainError
from backpain_analysis.outputs import ChapterOutputs

EPISODES = ["lt_1m", "1_3m", "3_6m", "6m_3y", "gt_3y"]


def _dataset(n: int = 300, seed: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "patient_id": [f"P{i:04d}" for i in range(n)],
        "phase": rng.choice([1, 3], n),
        "age": rng.normal(53, 15, n).round(),
        "female": rng.integers(0, 2, n).astype(float),
        "manual_occupation": rng.choice([0.0, 1.0, np.nan], n),
        "employed": rng.integers(0, 2, n).astype(float),
        "rmdq_0m": rng.integers(0, 25, n).astype(float),
        "pain_nrs_0m": rng.integers(0, 11, n).astype(float),
        "episode_duration": pd.Categorical(rng.choice(EPISODES, n), categories=EPISODES, ordered=True),
        "leg_pain": rng.integers(0, 2, n).astype(float),
        "risk_group": pd.Categorical(rng.choice(["low", "medium", "high"], n), categories=["low", "medium", "high"],
                                     ordered=True),
    })
    df["time_off_work"] = np.where(df["employed"] == 1, rng.integers(0, 2, n), np.nan)
    df.loc[:2, "rmdq_0m"] = np.nan
    return df


def _flat(t1) -> pd.DataFrame:
    t = t1.tableone.copy()
    t.columns = t.columns.get_level_values(-1)
    t.index = [f"{a}: {b}" if b else a for a, b in t.index]
    return t


def test_table1_numbers_match_pandas():
    df = _dataset()
    t = _flat(table1(df))
    p1 = df[df["phase"] == 1]
    assert str(t.loc["n", "Phase 1 (usual care)"]) == str(len(p1))
    assert t.loc["Age, years, mean (SD)", "Phase 1 (usual care)"] == f"{p1['age'].mean():.1f} ({p1['age'].std():.1f})"
    fem = int(p1["female"].sum())
    assert t.loc["Female, n (%): yes", "Phase 1 (usual care)"] == f"{fem} ({100 * fem / len(p1):.1f})"
    # percentages of those answering; the missing count in its own column
    man = df["manual_occupation"]
    assert str(t.loc["Routine or manual occupation, n (%): yes", "Missing"]) == str(int(man.isna().sum()))
    assert t.loc["Routine or manual occupation, n (%): yes", "Overall"] == (
        f"{int(man.sum())} ({100 * man.mean():.1f})")
    assert str(t.loc["RMDQ disability (0-24), mean (SD)", "Missing"]) == "3"
    # episode duration labelled and in order; SMD present
    rows = [r for r in t.index if r.startswith("Episode duration")]
    assert [r.split(": ")[1] for r in rows] == ["< 1 month", "1-3 months", "3-6 months", "6 months - 3 years",
                                                 "> 3 years"]
    smd_col = [c for c in t.columns if str(c).startswith("SMD")][0]
    a, b = p1["age"], df[df["phase"] == 3]["age"]
    smd = (b.mean() - a.mean()) / np.sqrt((a.var() + b.var()) / 2)
    assert float(t.loc["Age, years, mean (SD)", smd_col]) == pytest.approx(smd, abs=1e-3)


def test_table1_by_risk_group_leaves_grouping_out():
    t = _flat(table1(_dataset(), by="risk_group"))
    assert {"Low risk", "Medium risk", "High risk"} <= set(t.columns)
    assert not any(r.startswith("SBST risk group") for r in t.index)


def test_table1_rejects_bad_input():
    df = _dataset()
    with pytest.raises(BackpainError, match="female"):
        table1(df.assign(female=2.0))
    with pytest.raises(BackpainError, match="leg_pain"):
        table1(df.drop(columns="leg_pain"))


def test_table1_frame_never_carries_identifiers():
    assert "patient_id" not in table1_frame(_dataset()).columns


def test_shareable_table1_hides_small_counts_and_their_complements():
    df = _dataset(200)
    df["leg_pain"] = 1.0
    df.loc[df.index[df["phase"] == 1][:3], "leg_pain"] = 0.0  # 3 "no" in phase 1: derivable from n - yes
    df.loc[df.index[df["phase"] == 3][:2], "manual_occupation"] = 1.0
    df.loc[df["phase"] == 3, "manual_occupation"] = np.where(np.arange((df["phase"] == 3).sum()) < 2, 1.0, 0.0)
    shared = shareable_table1(table1(df))
    assert shared.loc["Leg pain, n (%): yes", "Phase 1 (usual care)"] == "*"
    assert shared.loc["Leg pain, n (%): yes", "Phase 3 (stratified care)"] != "*"  # all yes, remainder 0
    assert shared.loc["Routine or manual occupation, n (%): yes", "Phase 3 (stratified care)"] == "*"
    # overall leg pain: "no" = 3 is derivable from overall n, so yes is hidden there too
    assert shared.loc["Leg pain, n (%): yes", "Overall"] == "*"
    # nothing shown reveals a count 1-4 (rows of counts; SMDs are not counts)
    count_cols = [c for c in shared.columns if not str(c).startswith("SMD")]
    for r in shared.index:
        for c in count_cols:
            cell = shared.loc[r, c]
            if isinstance(cell, str) and "(" in cell and "mean" not in r:
                assert not 1 <= int(cell.split(" ")[0]) <= 4
    assert shared.loc["RMDQ disability (0-24), mean (SD)", "Missing"] == "*"
    assert small_count_cells(shared[["Missing"]]) == []


def test_export_table1_writes_csv_html_latex(tmp_path):
    out = ChapterOutputs(tmp_path, "02_cohort")
    paths = export_table1(shareable_table1(table1(_dataset())), out, "table1_by_phase", caption="Table 1")
    assert [p.name for p in paths] == [f"table1_by_phase.{x}" for x in ("csv", "html", "tex", "docx", "table.json")]
    csv = pd.read_csv(paths[0])
    assert csv.columns[0] == "characteristic" and "Overall" in csv.columns
    html, tex = paths[1].read_text(), paths[2].read_text()
    assert "<table" in html and "\\begin{tabular}" in tex
    assert "P0001" not in html
    # one renderer: the files are the presentation layer's display table, cell for cell
    from backpain_analysis.presentation import DisplayTable, display_table
    shown = DisplayTable.read(paths[4])
    assert shown == display_table(shareable_table1(table1(_dataset())), "table1", caption="Table 1")
    assert shown.headers[0] == "Characteristic" and "SMD" in shown.headers
    assert "nan" not in html.lower() and 'class="bp-table"' in html
    # the CSV and the display table show the same cells (the display only relabels rows and columns)
    source = shareable_table1(table1(_dataset()))
    expected = [tuple("\u2014" if pd.isna(v) or not str(v).strip() else str(v).strip() for v in row)
                for row in source.astype(object).values]
    assert [r[1:] for r in shown.rows] == expected
    assert len(shown.rows) == len(csv) == len(source)


def test_baseline_means_ci_matches_scipy():
    df = _dataset()
    res = baseline_means(df, "rmdq_0m").set_index("phase")
    x = df[df["phase"] == 3]["rmdq_0m"].dropna()
    lo, hi = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    assert res.loc[3, "estimate"] == pytest.approx(x.mean())
    assert (res.loc[3, "ci_low"], res.loc[3, "ci_high"]) == pytest.approx((lo, hi))
    assert res.loc[1, "n"] + res.loc[3, "n"] == 297


def _invited(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 600
    outcome = rng.choice(["responded", "non_respondent", "excluded"], n, p=[0.55, 0.4, 0.05])
    age = np.where(outcome == "responded", 54, 46) + rng.normal(0, 15, n)
    return pd.DataFrame({"patient_id": [f"X{i}" for i in range(n)], "phase": rng.choice([1, 3], n),
                         "invitation_outcome": outcome, "age": age.round(),
                         "sex": rng.choice(["female", "male"], n)})


def test_response_groups_and_bias_against_scipy():
    p = _invited()
    groups = response_groups(p).set_index(["phase", "group"])
    sub = p[p["phase"] == 1]
    assert groups.loc[(1, "invited"), "n"] == len(sub)
    assert groups.loc[(1, "responded"), "n"] + groups.loc[(1, "did not take part"), "n"] == len(sub)
    assert groups.loc[(1, "invited"), "age_mean"] == pytest.approx(sub["age"].mean())
    bias = response_bias(p).set_index(["phase", "measure"])
    a = sub[sub["invitation_outcome"] == "responded"]["age"]
    b = sub[sub["invitation_outcome"] != "responded"]["age"]
    tt = stats.ttest_ind(a, b, equal_var=False)
    row = bias.loc[(1, "age, years")]
    assert row["estimate"] == pytest.approx(a.mean() - b.mean())
    assert row["p_value"] == pytest.approx(tt.pvalue)
    assert row["ci_low"] < row["estimate"] < row["ci_high"]
    assert row["estimate"] > 4  # the simulated response bias (+8 years) is found
    f = bias.loc[(1, "female, %")]
    fa = (sub[sub["invitation_outcome"] == "responded"]["sex"] == "female").mean()
    fb = (sub[sub["invitation_outcome"] != "responded"]["sex"] == "female").mean()
    assert f["estimate"] == pytest.approx(100 * (fa - fb))
    chi = stats.chi2_contingency(pd.crosstab(sub["invitation_outcome"] == "responded", sub["sex"]), correction=False)
    assert f["p_value"] == pytest.approx(chi.pvalue)
    with pytest.raises(BackpainError, match="invitation_outcome"):
        response_bias(p.drop(columns="invitation_outcome"))


def test_smd_table_and_plots():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from backpain_analysis.cohort import plot_response_bias, plot_smd, smd_table

    df = _dataset()
    smd = smd_table(table1(df))
    assert smd["characteristic"].tolist()[:3] == ["Age, years", "Female", "Routine or manual occupation"]
    a, b = df[df["phase"] == 1]["rmdq_0m"], df[df["phase"] == 3]["rmdq_0m"]
    expected = (b.mean() - a.mean()) / np.sqrt((a.var() + b.var()) / 2)
    assert smd.set_index("characteristic").loc["RMDQ disability (0-24)", "smd"] == pytest.approx(expected, abs=1e-3)
    with pytest.raises(BackpainError, match="two-group"):
        smd_table(table1(df, by="risk_group"))
    for fig in (plot_smd(smd), plot_response_bias(response_groups(_invited()))):
        assert fig.axes
        plt.close(fig)


def test_shareable_table1_protects_across_group_columns():
    df = _dataset(240, seed=5)
    low = df.index[df["risk_group"] == "low"]
    df["manual_occupation"] = 0.0
    df.loc[low[:3], "manual_occupation"] = 1.0  # 3 "yes" in the low-risk column only
    df.loc[df.index[df["risk_group"] == "medium"][:30], "manual_occupation"] = 1.0
    df.loc[df.index[df["risk_group"] == "high"][:40], "manual_occupation"] = 1.0
    shared = shareable_table1(table1(df, by="risk_group"))
    row = shared.loc["Routine or manual occupation, n (%): yes", ["Low risk", "Medium risk", "High risk", "Overall"]]
    assert row["Low risk"] == "*"
    assert (row == "*").sum() >= 2  # the overall total minus the shown groups must not give the low-risk count


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_shareable_table1_has_no_lone_hidden_cell(seed):
    rng = np.random.default_rng(seed)
    df = _dataset(120, seed=seed)
    df["leg_pain"] = (rng.random(len(df)) < 0.95).astype(float)  # many small "no" counts
    df["manual_occupation"] = np.where(rng.random(len(df)) < 0.05, np.nan, (rng.random(len(df)) < 0.06) * 1.0)
    for by in ("phase", "risk_group"):
        shared = shareable_table1(table1(df, by=by))
        groups = [c for c in shared.columns if c not in ("Missing", "Overall") and not str(c).startswith("SMD")]
        count_rows = [r for r in shared.index if ", n (%)" in r or r == "n"]
        for r in count_rows:
            assert (shared.loc[r, [*groups, "Overall"]] == "*").sum() != 1, r
        for var in {r.split(": ")[0] for r in count_rows if ": " in r}:
            rows = [r for r in count_rows if r.startswith(var + ": ")]
            if len(rows) > 1:
                for c in [*groups, "Overall"]:
                    assert (shared.loc[rows, c] == "*").sum() != 1, (var, c)
