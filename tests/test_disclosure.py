"""Small-number suppression: worked examples and properties."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backpain_analysis.disclosure import MARKER, compare_with_all, small_count_cells, suppress_table, suppression_mask


def test_primary_suppression_hides_1_to_4_but_not_0_or_5():
    t = pd.DataFrame({"n": [0, 1, 2, 3, 4, 5, 17]})
    mask = suppression_mask(t, ["n"])
    assert mask["n"].tolist() == [False, True, True, True, True, False, False]


def test_total_row_forces_a_second_hidden_cell_the_smallest_nonzero():
    # 3 alone hidden could be recovered as 60 - 40 - 17; the next smallest non-zero (17) is hidden too.
    t = pd.DataFrame({"n": [3, 0, 17, 40, 60]}, index=["a", "b", "c", "d", "total"])
    shown = suppress_table(t, ["n"], total_row="total")
    assert shown["n"].tolist() == [MARKER, 0, MARKER, 40, 60]


def test_total_row_hidden_when_no_other_cell_can_protect():
    t = pd.DataFrame({"n": [2, 0, 0, 2]}, index=["a", "b", "c", "total"])
    mask = suppression_mask(t, ["n"], total_row="total")
    assert mask["n"].tolist() == [True, False, False, True]


def test_complement_within_denominator_is_protected():
    # 98 of 100 referred: the 2 not referred would be revealed by 100 - 98.
    t = pd.DataFrame({"referred": [98, 50], "n": [100, 100]})
    t["pct"] = 100 * t["referred"] / t["n"]
    shown = suppress_table(t, ["referred", "n"], denominators={"referred": "n"}, derived={"pct": ["referred"]})
    assert shown.loc[0, "referred"] == MARKER and shown.loc[0, "pct"] == MARKER
    assert shown.loc[0, "n"] == 100
    assert shown.loc[1, "referred"] == 50 and shown.loc[1, "pct"] == 50.0


def test_small_denominator_hides_its_counts_and_percentages():
    t = pd.DataFrame({"events": [0, 30], "n": [3, 60]})
    t["pct"] = 100 * t["events"] / t["n"]
    mask = suppression_mask(t, ["events", "n"], denominators={"events": "n"}, derived={"pct": ["events", "n"]})
    assert mask.loc[0].tolist() == [True, True, True]
    assert not mask.loc[1].any()


def test_difference_using_a_hidden_value_is_hidden():
    t = pd.DataFrame(
        {"events_practice": [2, 20], "n_practice": [40, 40], "events_all": [90, 200], "n_all": [400, 400]}
    )
    t["pct_practice"] = 100 * t["events_practice"] / t["n_practice"]
    t["pct_all"] = 100 * t["events_all"] / t["n_all"]
    t["difference"] = t["pct_practice"] - t["pct_all"]
    mask = suppression_mask(
        t,
        ["events_practice", "n_practice", "events_all", "n_all"],
        denominators={"events_practice": "n_practice", "events_all": "n_all"},
        derived={"pct_practice": ["events_practice"], "difference": ["pct_practice", "pct_all"]},
    )
    assert mask.loc[0, "difference"] and mask.loc[0, "pct_practice"]
    assert not mask.loc[0, "pct_all"]
    assert not mask.loc[1].any()


def test_practice_against_all_practices_protects_the_other_practices():
    # 50 of the 53 combined are in this practice: the other practices' 3 would be revealed.
    t = pd.DataFrame({"n_practice": [50, 20], "n_all": [53, 200]})
    mask = suppression_mask(t, ["n_practice", "n_all"], denominators={"n_practice": "n_all"})
    assert mask["n_practice"].tolist() == [True, False]


def test_row_totals_protect_across_columns():
    t = pd.DataFrame({"phase1": [3, 30], "phase3": [25, 40]})
    t["total"] = t["phase1"] + t["phase3"]
    mask = suppression_mask(t, ["phase1", "phase3", "total"], row_totals={"total": ["phase1", "phase3"]})
    assert mask.loc[0].tolist() == [True, True, False]
    assert not mask.loc[1].any()


def test_bad_arguments_raise_clear_errors():
    t = pd.DataFrame({"n": [1, 2]})
    with pytest.raises(KeyError, match="'m' is not in the table"):
        suppression_mask(t, ["m"])
    with pytest.raises(KeyError, match="total_row 'total'"):
        suppression_mask(t, ["n"], total_row="total")
    with pytest.raises(KeyError, match="derived column 'pct'"):
        suppression_mask(t, ["n"], derived={"pct": ["n"]})


def test_small_count_cells_ignores_markers_and_text():
    t = pd.DataFrame({"label": ["a", "b", "c"], "n": [MARKER, 12, 4]})
    assert small_count_cells(t, ["n"]) == [(2, "n", 4.0)]
    assert small_count_cells(suppress_table(t, ["n"]), ["n"]) == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=30), min_size=2, max_size=6))
def test_property_column_with_total_never_reveals_a_small_count(body):
    t = pd.DataFrame({"n": [*body, sum(body)]}, index=[*(f"g{i}" for i in range(len(body))), "total"])
    mask = suppression_mask(t, ["n"], total_row="total")
    hidden = mask["n"].to_numpy()
    values = t["n"].to_numpy()
    # no small number shown
    assert not ((values >= 1) & (values <= 4) & ~hidden).any()
    # never exactly one hidden cell in the group: a single hidden cell could be recovered by subtraction
    assert hidden.sum() != 1
    # nothing is hidden without a reason: no small count means nothing hidden
    if not ((values >= 1) & (values <= 4)).any():
        assert not hidden.any()


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=40), st.integers(min_value=0, max_value=40)),
        min_size=1,
        max_size=5,
    )
)
def test_property_rates_never_reveal_small_counts_or_complements(rows):
    events = [e for e, _ in rows]
    n = [e + extra for e, extra in rows]
    t = pd.DataFrame({"events": events, "n": n})
    with np.errstate(invalid="ignore", divide="ignore"):
        t["pct"] = 100 * t["events"] / t["n"]
    shown = suppress_table(t, ["events", "n"], denominators={"events": "n"}, derived={"pct": ["events", "n"]})
    assert small_count_cells(shown, ["events", "n"]) == []
    for i in range(len(t)):
        ev, den, pct = shown.loc[i, "events"], shown.loc[i, "n"], shown.loc[i, "pct"]
        if den != MARKER and ev != MARKER:
            assert not 1 <= den - ev <= 4
        if ev == MARKER:
            assert pct == MARKER  # the percentage would give the count back


def _practice_data():
    # practice A: phase 1 has 6 patients all referred; phase 3 has 6 with 2 referred
    return pd.DataFrame(
        {
            "practice_id": ["A"] * 12 + ["B"] * 40,
            "phase": [1, 3] * 26,
            "referred": [1, 0] * 4 + [1] * 4 + [0, 1] * 20,
            "rmdq_change": np.arange(52, dtype=float),
        }
    )


def test_compare_with_all_rates_by_hand():
    table = compare_with_all(_practice_data(), "A", "phase", event="referred")
    # phase 1: A 6/6 referred; all 6/26 -> 23.1%; difference 76.9 points
    assert table.loc[1, "n_unit"] == 6 and table.loc[1, "events_unit"] == 6 and table.loc[1, "pct_unit"] == 100.0
    assert table.loc[1, "events_all"] == 6 and table.loc[1, "pct_all"] == 23.1 and table.loc[1, "difference"] == 76.9
    # phase 3: A 2/6 (small) and all 22/26 (complement 4 is small): both hidden, with their percentages
    assert (table.loc[3, ["events_unit", "pct_unit", "events_all", "pct_all", "difference"]] == MARKER).all()
    assert small_count_cells(table, ["n_unit", "events_unit", "n_all", "events_all"]) == []


def test_compare_with_all_means_and_distribution():
    data = _practice_data()
    means = compare_with_all(data, "A", "phase", value="rmdq_change")
    assert means.loc[1, "mean_unit"] == np.mean(np.arange(0, 12, 2)) and means.loc[1, "n_all"] == 26
    assert means.loc[1, "mean_all"] == np.mean(np.arange(0, 52, 2))
    dist = compare_with_all(data, "A", "phase", total=True)
    assert dist.loc["total", "n_unit"] == 12 and dist.loc["total", "n_all"] == 52
    assert dist.loc[1, "pct_unit"] == 50.0


def test_compare_with_all_hides_a_small_group_and_protects_the_total():
    data = _practice_data()
    data.loc[0, "phase"] = 2  # a group of one patient in practice A
    dist = compare_with_all(data, "A", "phase", total=True, order=[1, 2, 3])
    assert dist.loc[2, "n_unit"] == MARKER and dist.loc[2, "pct_unit"] == MARKER
    # one hidden count in a column with a total would be recoverable: a second one is hidden
    assert (dist["n_unit"] == MARKER).sum() >= 2
    assert small_count_cells(dist, ["n_unit", "n_all"]) == []


# ------------------------------------------------------------------------------------------
# issue 12: several hidden cells must not add up to a small number (the flow's exclusion reasons)
# ------------------------------------------------------------------------------------------
def test_hidden_cells_summing_to_a_small_number_force_another_hidden_cell():
    # the published phase 1 exclusions: 1 + 1 + 1 hidden, total 35 - 9 - 14 - 8 = 4 would be their sum
    t = pd.DataFrame({"n": [9, 1, 14, 8, 1, 1, 34]}, index=["moved", "unable", "declined", "no pain", "comorbid",
                                                             "other", "all"])
    t.loc["all", "n"] = t["n"].iloc[:-1].sum()
    mask = suppression_mask(t, ["n"], total_row="all")["n"]
    hidden = mask[mask].index.tolist()
    assert "no pain" in hidden  # the smallest visible reason (8) joins the three 1s
    assert t.loc[hidden, "n"].sum() >= 5 and not mask["all"]


def test_flow_never_leaves_a_small_hidden_sum_in_the_diagram_or_the_tables():
    from backpain_analysis.quality import _flow_hidden, shared_flow

    reasons = [9, 1, 14, 8, 1, 1]
    main = {"invited": 630, "excluded": 34, "non_respondents": 226, "respondents": 370}
    hidden_main, hidden_reasons, *_ = _flow_hidden(main, reasons)
    assert hidden_reasons == [False, True, False, True, True, True]  # 1 + 8 + 1 + 1 = 11, not 3
    assert not any(hidden_main.values())
    flow = pd.DataFrame({"item": ["invited", "excluded", *[f"excluded: r{i}" for i in range(6)], "non-respondents",
                                  "respondents"],
                         "n_phase1": [630, 34, *reasons, 226, 370], "n_phase3": [1017, 50, 28, 0, 18, 4, 0, 0, 407, 560]})
    shown_main, shown_reasons = shared_flow(flow)
    assert shown_reasons["n_phase1"].tolist() == [9, "*", 14, "*", "*", "*", 34]
    # phase 3: the lone small reason (4) takes the next smallest (18) with it
    assert shown_reasons["n_phase3"].tolist() == [28, 0, "*", "*", 0, 0, 50]


def test_flow_hidden_excluded_hides_its_reasons_in_every_output():
    from backpain_analysis.quality import _flow_hidden

    # 3 excluded: hidden, so non-respondents (the next smallest) too, and every reason
    hidden_main, hidden_reasons, *_ = _flow_hidden({"invited": 100, "excluded": 3, "non_respondents": 30,
                                                "respondents": 67}, [2, 1])
    assert hidden_main["excluded"] and hidden_main["non_respondents"] and not hidden_main["respondents"]
    assert hidden_reasons == [True, True]
    # 6 excluded as 3 + 3: both reasons hidden, their sum (6) is not small, so the total may show
    hidden_main, hidden_reasons, *_ = _flow_hidden({"invited": 100, "excluded": 6, "non_respondents": 30,
                                                "respondents": 64}, [3, 3])
    assert not hidden_main["excluded"] and hidden_reasons == [True, True]


def test_respondents_not_analysed_are_a_protected_group_in_the_tables_and_the_diagram():
    """Respondents = not analysed (by plausibility reason) + analysed: a lone small reason takes a
    neighbour with it, and follow-up is then hidden relative to the analysed, not the respondents."""
    import matplotlib.pyplot as plt

    from backpain_analysis.quality import _flow_hidden, flow_frame, plot_flow, shared_flow

    main = {"invited": 630, "excluded": 35, "non_respondents": 225, "respondents": 370, "analysed": 367,
            "followed_up_6m": 250}
    hidden_main, _, hidden_na, _ = _flow_hidden(main, [], not_analysed=[3])
    # 3 not analysed (hidden) + 367 analysed = 370 shown: the analysed must go too
    assert hidden_na == [True] and hidden_main["analysed"]
    # ... and follow-up, whose base (the analysed) is hidden
    assert hidden_main["followed_up_6m"]
    flow = pd.DataFrame({
        "item": ["invited", "excluded", "non-respondents", "respondents",
                 "respondents not analysed: baseline_date after the export date", "analysed",
                 "followed up at 6 months"],
        "n_phase1": [630, 35, 225, 370, 3, 367, 250], "n_phase3": [1017, 50, 407, 560, 6, 554, 330]})
    shown, _ = shared_flow(flow)
    s = shown.set_index("item")
    assert s.loc["respondents not analysed: baseline_date after the export date", "n_phase1"] == "*"
    assert s.loc["analysed", "n_phase1"] == "*" and s.loc["respondents", "n_phase1"] == 370
    # phase 3: 6 not analysed is not small and leaves 554 analysed: all shown
    assert s.loc[["respondents not analysed: baseline_date after the export date", "analysed"], "n_phase3"].tolist() \
        == [6, 554]
    fig = plot_flow(flow_frame(flow))
    text = "\n".join(t.get_text() for t in fig.axes[0].texts)
    plt.close(fig)
    assert "367" not in text and "analysed n = *" in text and "Returned it but not analysed" in text
    assert "analysed n = 554" in text and "baseline_date after the export date: 6" in text


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 30), min_size=2, max_size=7))
def test_total_row_never_reveals_a_hidden_cell_or_a_small_hidden_sum(parts):
    t = pd.DataFrame({"n": [*parts, sum(parts)]}, index=[*range(len(parts)), "total"])
    mask = suppression_mask(t, ["n"], total_row="total")["n"].to_numpy()
    body, hid = np.array(parts), mask[:-1]
    if mask[-1]:
        return
    assert hid.sum() != 1
    assert not 0 < body[hid].sum() < 5
