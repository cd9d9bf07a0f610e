from __future__ import annotations

from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from backpain_analysis.errors import BackpainError
from backpain_analysis.quality import (
    cleaning_summary,
    exclusion_summary,
    exclusions_by_reason,
    flow_frame,
    missingness,
    plot_flow,
    plot_missingness,
    validation_summary,
)

PUBLISHED_FLOW = {
    1: {"invited": 630, "excluded": 28, "non_respondents": 234, "respondents": 368, "consented_records": 307,
        "followed_up_2m": 254, "followed_up_6m": 233},
    3: {"invited": 1017, "excluded": 47, "non_respondents": 416, "respondents": 554, "consented_records": 421,
        "followed_up_2m": 332, "followed_up_6m": 314},
}


def _patients() -> pd.DataFrame:
    reasons = (["died_or_moved"] * 8 + ["unable_to_respond"] + ["declined"] * 11 + ["no_back_pain"] * 6,
               ["died_or_moved"] * 23 + ["declined"] * 19 + ["no_back_pain"] * 4 + ["unable_to_take_part"])
    rows = []
    for phase, rs in zip((1, 3), reasons, strict=True):
        rows += [{"phase": phase, "invitation_outcome": "excluded", "exclusion_reason": r} for r in rs]
        rows += [{"phase": phase, "invitation_outcome": "responded", "exclusion_reason": None}] * 5
    rows.append({"phase": 1, "invitation_outcome": "excluded", "exclusion_reason": None})
    return pd.DataFrame(rows)


def test_exclusions_by_reason_counts_and_order():
    res = exclusions_by_reason(_patients())
    assert res["reason"].tolist() == ["died or moved practice", "unable to respond", "did not want to take part",
                                      "no back pain", "unable to take part", "reason not recorded"]
    assert res["n_phase1"].tolist() == [8, 1, 11, 6, 0, 1]
    assert res["n_phase3"].tolist() == [23, 0, 19, 4, 1, 0]
    assert (res["n_total"] == res["n_phase1"] + res["n_phase3"]).all()
    with pytest.raises(BackpainError, match="exclusion_reason"):
        exclusions_by_reason(_patients().drop(columns="exclusion_reason"))


def test_cleaning_summary_by_rule_with_and_without_counts():
    log = pd.DataFrame({"rule": ["missing_code", "alias", "missing_code", "date_format"],
                        "table": ["patients", "patients", "followups", "followups"],
                        "column": ["age", "sex", "rmdq_1", "return_date"], "n_rows": [4, 10, 2, 30]})
    res = cleaning_summary(log).set_index("rule")
    assert res.index.tolist() == ["date_format", "alias", "missing_code"]  # most changes first
    assert res.loc["missing_code", "n_changes"] == 6
    assert res.loc["missing_code", "n_tables"] == 2 and res.loc["missing_code", "tables"] == "followups, patients"
    no_counts = cleaning_summary(log.drop(columns="n_rows"))
    assert no_counts.set_index("rule").loc["missing_code", "n_changes"] == 2
    with pytest.raises(BackpainError, match="rule"):
        cleaning_summary(log.drop(columns="rule"))


def test_validation_and_exclusion_summaries_hide_identifiers():
    tables = {"patients": pd.DataFrame({"patient_id": ["a", "b"], "age": [50.0, np.nan]}),
              "followups": pd.DataFrame({"patient_id": ["a"], "rmdq": [3.0]})}
    excl = pd.DataFrame({"table": ["followups", "followups"], "reason": ["duplicate"] * 2, "patient_id": ["a", "b"]})
    log = pd.DataFrame({"rule": ["alias"], "table": ["patients"], "column": ["sex"], "n_rows": [3]})
    clean = SimpleNamespace(tables=tables, cleaning_log=log, exclusions=excl)
    study = SimpleNamespace(tables={"patients": pd.DataFrame({"x": range(3)}), "followups": pd.DataFrame({"x": [1]})})
    res = validation_summary(clean, study).set_index("table")
    assert res.loc["patients", "rows_read"] == 3 and res.loc["patients", "rows"] == 2
    assert res.loc["patients", "pct_missing_cells"] == pytest.approx(25.0)
    assert res.loc["patients", "cleaning_changes"] == 3 and res.loc["followups", "excluded_rows"] == 2
    ex = exclusion_summary(excl)
    assert "patient_id" not in ex.columns and ex["n"].tolist() == [2]


def test_missingness_denominators():
    df = pd.DataFrame({
        "phase": [1, 1, 1, 1, 3, 3],
        "rmdq_0m": [1.0, 2.0, np.nan, 4.0, 5.0, 6.0],
        "rmdq_6m": [1.0, np.nan, np.nan, np.nan, 5.0, np.nan],
        "followed_up_6m": [1, 1, 0, 0, 1, 0],
    })
    res = missingness(df, ["rmdq"]).set_index(["phase", "time_point"])
    assert res.loc[(1, "0m"), "pct_missing"] == 25.0 and res.loc[(1, "6m"), "pct_missing"] == 75.0
    ret = missingness(df, ["rmdq"], denominator="returned").set_index(["phase", "time_point"])
    assert ret.loc[(1, "6m"), "n"] == 2 and ret.loc[(1, "6m"), "pct_missing"] == 50.0
    assert ret.loc[(3, "6m"), "pct_missing"] == 0.0 and ret.loc[(1, "0m"), "n"] == 4
    with pytest.raises(ValueError, match="denominator"):
        missingness(df, ["rmdq"], denominator="x")


def test_flow_frame_accepts_wide_long_and_mapping():
    from_map = flow_frame(PUBLISHED_FLOW)
    wide = pd.DataFrame({"phase1": PUBLISHED_FLOW[1], "phase3": PUBLISHED_FLOW[3]})
    from_wide = flow_frame(wide)
    key = ["phase", "step"]
    pd.testing.assert_frame_equal(from_map.sort_values(key).reset_index(drop=True),
                                  from_wide.sort_values(key).reset_index(drop=True))
    from_long = flow_frame(from_map)
    pd.testing.assert_frame_equal(from_long, from_map)
    with_reasons = flow_frame(PUBLISHED_FLOW, exclusions_by_reason(_patients()))
    r = with_reasons[(with_reasons["step"] == "excluded") & (with_reasons["reason"] != "")]
    assert r.groupby("phase")["n"].sum().to_dict() == {1: 27, 3: 47}
    with pytest.raises(BackpainError):
        flow_frame([1, 2])


def _texts(fig) -> str:
    return "\n".join(t.get_text() for ax in fig.axes for t in ax.texts)


def test_flow_diagram_shows_counts_and_suppresses_small_reasons():
    fig = plot_flow(flow_frame(PUBLISHED_FLOW, exclusions_by_reason(_patients())))
    text = _texts(fig)
    for n in ("630", "1,017", "368 (58%)", "554 (54%)", "233 (63%)", "307 (83%)"):
        assert n in text
    # phase 1: three reasons of 1 ("<5") would add up to 3 = total - shown reasons, so the next
    # smallest (no back pain, 6) is hidden too (issue 12); phase 3: no back pain 4 -> "<5"
    assert "unable to respond: <5" in text and "no back pain: *" in text and "no back pain: <5" in text
    assert "no back pain: 6" not in text
    assert "died or moved practice: 23" in text
    # a reason with count 0 is left out of that phase's box
    phase3_box = [t.get_text() for t in fig.axes[0].texts if "n = 47" in t.get_text()][0]
    assert "unable to respond" not in phase3_box
    plt.close(fig)


def test_missingness_heatmap_draws_a_panel_per_phase():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"phase": rng.choice([1, 3], 40)} | {f"rmdq_{t}": np.where(rng.random(40) < 0.3, np.nan, 1.0)
                                                          for t in ("0m", "2m", "6m")})
    fig = plot_missingness(missingness(df, ["rmdq"]))
    assert len(fig.axes) == 3  # two panels + colour bar
    plt.close(fig)


def test_flow_diagram_protects_a_lone_small_reason():
    counts = {1: {"invited": 100, "excluded": 30, "non_respondents": 20, "respondents": 50}}
    reasons = pd.DataFrame({"reason": ["died or moved practice", "no back pain", "did not want to take part"],
                            "n_phase1": [3, 12, 15], "n_phase3": [0, 0, 0]})
    fig = plot_flow(flow_frame(counts, reasons))
    text = _texts(fig)
    # 3 is shown as <5, and 12 (the next smallest) as * so 3 cannot be recovered as 30 - 12 - 15
    assert "died or moved practice: <5" in text and "no back pain: *" in text
    assert "did not want to take part: 15" in text
    plt.close(fig)


def test_flow_frame_reads_dataset_flow_counts_shape():
    flow = pd.DataFrame({
        "item": ["invited", "excluded", "excluded: no back pain", "excluded: declined", "non-respondents",
                 "respondents", "consented to record review", "followed up at 2 months", "followed up at 6 months"],
        "n_phase1": [630, 28, 6, 22, 234, 368, 307, 254, 233],
        "n_phase3": [1017, 47, 4, 43, 416, 554, 421, 332, 314],
    })
    f = flow_frame(flow).set_index(["phase", "step", "reason"])["n"]
    assert f[(3, "followed_up_6m", "")] == 314 and f[(1, "consented_records", "")] == 307
    assert f[(1, "excluded", "no back pain")] == 6 and f[(3, "non_respondents", "")] == 416


def test_missingness_heatmap_marks_suppressed_cells():
    from backpain_analysis.screening import suppress_shares

    df = pd.DataFrame({"phase": [1] * 40, "rmdq_0m": [np.nan] * 2 + [1.0] * 38, "rmdq_6m": [np.nan] * 20 + [1.0] * 20})
    shared = suppress_shares(missingness(df, ["rmdq"]), None, count="n_missing", total="n", derived=["pct_missing"])
    assert shared.loc[0, "pct_missing"] == "*" and shared.loc[1, "pct_missing"] == 50.0
    fig = plot_missingness(shared)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "*" in texts and "50" in texts and "5" not in texts
    plt.close(fig)


def test_summaries_of_a_real_cleaned_study():
    from studyfactory import build_study

    from backpain_analysis.cleaning import clean_study

    t = build_study()
    p = t["patients"].astype({"employed": object, "leg_pain": object, "sex": object})
    p.loc[2, "employed"] = -1  # missing code
    p.loc[5, "employed"] = "NA"  # missing text
    p.loc[1, "leg_pain"] = "yes"  # text answer -> code
    p.loc[3, "sex"] = " Female "
    t["patients"] = p
    clean = clean_study(SimpleNamespace(tables=t))
    summary = cleaning_summary(clean.summary).set_index("rule")
    expected = clean.summary.groupby("rule")["n_cells"].sum()
    assert summary["n_changes"].to_dict() == expected.to_dict()
    assert summary.loc["missing_code", "n_changes"] >= 1 and "patients" in summary.loc["missing_code", "tables"]
    logged = clean.cleaning_log.groupby("rule").size()
    for rule, n in logged.items():
        assert summary.loc[rule, "n_changes"] == n  # logged rules: one log row per changed cell
    val = validation_summary(clean).set_index("table")
    assert val.loc["patients", "rows_read"] == clean.input_rows["patients"]
    assert val.loc["patients", "cleaning_changes"] == int(clean.summary.query("table == 'patients'")["n_cells"].sum())
    ex = exclusion_summary(clean.exclusions)
    assert "row_key" not in ex.columns and ex["n"].sum() == len(clean.exclusions)
