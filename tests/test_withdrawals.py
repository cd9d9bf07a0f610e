"""Reasons for loss to follow-up: the optional withdrawals file, its validation, the synthetic
generator's stream of its own, and the participant flow split by reason (issue 18 item 3)."""

from __future__ import annotations

import csv
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from studyfactory import build_study, write_study

from backpain_analysis import clean_study, load_study
from backpain_analysis import synthetic as synth
from backpain_analysis.dataset import LOSS_REASON_LABELS, flow_counts
from backpain_analysis.loading import StudyValidationError
from backpain_analysis.quality import _flow_hidden, flow_frame, plot_flow, shared_flow

DATA = Path(__file__).resolve().parents[1] / "data" / "synthetic"
LOST = "not followed up at 6 months"
COLS = ["n_phase1", "n_phase3"]


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def bundled_flow() -> pd.DataFrame:
    return flow_counts(clean_study(load_study(DATA))).set_index("item")


# ------------------------------------------------------------------ counts against a hand count of the CSV files
def test_reasons_by_phase_equal_a_hand_count_of_the_csv_files(bundled_flow):
    phase = {r["patient_id"]: r["phase"] for r in _rows(DATA / "patients.csv")
             if r["invitation_outcome"] == "responded"}
    returned = {(r["patient_id"], r["time_point"]) for r in _rows(DATA / "followups.csv")}
    reason = {(r["patient_id"], r["time_point"]): r["reason"] for r in _rows(DATA / "withdrawals.csv")}
    hand: Counter = Counter()
    for pid, ph in phase.items():
        if (pid, "6") not in returned:
            hand[ph, "lost"] += 1
            hand[ph, reason.get((pid, "6"), "not recorded")] += 1
    for ph, col in (("1", "n_phase1"), ("3", "n_phase3")):
        assert bundled_flow.loc[LOST, col] == hand[ph, "lost"] > 0
        for code, label in LOSS_REASON_LABELS.items():
            shown = bundled_flow[col].get(f"{LOST}: {label}", 0)
            assert shown == hand[ph, code], (ph, code)
        assert bundled_flow[col].get(f"{LOST}: reason not recorded", 0) == hand[ph, "not recorded"]
    # the parts add up to the whole and the whole is the analysed minus the followed up
    parts = bundled_flow.loc[[i for i in bundled_flow.index if i.startswith(LOST + ":")], COLS].sum()
    assert (parts.to_numpy() == bundled_flow.loc[LOST, COLS].to_numpy()).all()
    assert (bundled_flow.loc[LOST, COLS].to_numpy() == bundled_flow.loc["respondents", COLS].to_numpy()
            - bundled_flow.loc["followed up at 6 months", COLS].to_numpy()).all()


def test_generated_reasons_are_consistent_with_the_follow_ups():
    returned = {(r["patient_id"], r["time_point"]) for r in _rows(DATA / "followups.csv")}
    responded = {r["patient_id"] for r in _rows(DATA / "patients.csv") if r["invitation_outcome"] == "responded"}
    rows = _rows(DATA / "withdrawals.csv")
    by_key = {(r["patient_id"], r["time_point"]): r["reason"] for r in rows}
    assert len(by_key) == len(rows) > 100
    assert all(r["patient_id"] in responded and (r["patient_id"], r["time_point"]) not in returned for r in rows)
    for (pid, tp), why in by_key.items():
        if tp == "2" and why in ("withdrew", "died", "moved"):  # a lasting reason lasts
            assert (pid, "6") not in returned and by_key.get((pid, "6")) == why
    assert set(by_key.values()) == set(LOSS_REASON_LABELS)


def test_reasons_come_from_a_stream_of_their_own(tmp_path, monkeypatch):
    """Another reason stream changes withdrawals.csv and nothing else (the R references rely on the rest)."""
    a = synth.generate_study(n_invited=600, seed=5, truth_mc_n=20000).write(tmp_path / "a")
    monkeypatch.setattr(synth, "LOSS_REASON_STREAM", synth.LOSS_REASON_STREAM + 1)
    b = synth.generate_study(n_invited=600, seed=5, truth_mc_n=20000).write(tmp_path / "b")
    assert a["withdrawals"].read_bytes() != b["withdrawals"].read_bytes()
    for name in a:
        if name != "withdrawals":
            assert a[name].read_bytes() == b[name].read_bytes(), name


# ------------------------------------------------------------------ without the file
def test_without_the_file_everything_else_is_the_same_and_reasons_are_not_recorded(tmp_path, bundled_flow):
    folder = tmp_path / "export"
    shutil.copytree(DATA, folder)
    (folder / "withdrawals.csv").unlink()
    study = load_study(folder)
    assert "withdrawals" not in study.tables and study.notes == []
    assert study.summary()["table"].tolist()[-1] == "physio"
    flow = flow_counts(clean_study(study)).set_index("item")
    reasons = [i for i in flow.index if i.startswith(LOST + ":")]
    assert reasons == [f"{LOST}: reason not recorded"]
    assert (flow.loc[reasons[0], COLS].to_numpy() == bundled_flow.loc[LOST, COLS].to_numpy()).all()
    others = [i for i in bundled_flow.index if not i.startswith(LOST + ":")]
    pd.testing.assert_frame_equal(flow.loc[others, COLS], bundled_flow.loc[others, COLS])


# ------------------------------------------------------------------ bad input: one clear error each
def _withdrawals(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["patient_id", "time_point", "reason"])


def _problems(tmp_path: Path, withdrawals: pd.DataFrame) -> pd.DataFrame:
    tables = build_study() | {"withdrawals": withdrawals}
    with pytest.raises(StudyValidationError) as err:
        load_study(write_study(tmp_path, tables))
    problems = err.value.problems
    assert (problems["file"] == "withdrawals.csv").all(), problems
    return problems


def test_a_valid_withdrawals_file_loads_and_is_counted(tmp_path):
    # PT003 did not return the 6-month questionnaire, PT008 the 2-month one (studyfactory)
    rows = [("PT003", 6, "Died"), ("PT008", 2, "too ill")]
    study = load_study(write_study(tmp_path, build_study() | {"withdrawals": _withdrawals(rows)}))
    flow = flow_counts(clean_study(study)).set_index("item")
    phase = build_study()["patients"].set_index("patient_id").loc["PT003", "phase"]
    assert flow.loc[f"{LOST}: died", f"n_phase{phase}"] == 1
    assert flow.loc[LOST, COLS].sum() == 1 and f"{LOST}: reason not recorded" not in flow.index


@pytest.mark.parametrize(("rows", "column", "words"), [
    ([("PT999", 6, "died")], "patient_id", "unknown patient_id"),
    ([("PT003", 6, "abducted")], "reason", "abducted"),
    ([("PT003", 4, "died")], "time_point", "2"),
    ([("PT003", 6, "died"), ("PT003", 6, "moved")], "", "PT003"),
    ([("PT001", 6, "no_reply")], "time_point", "questionnaire that was returned"),
    ([("PT004", 6, "no_reply")], "patient_id", "did not return the baseline questionnaire"),
    ([("PT008", 2, "died")], "reason", "lasting reason"),
])
def test_bad_withdrawals_give_one_clear_error(tmp_path, rows, column, words):
    problems = _problems(tmp_path, _withdrawals(rows))
    assert len(problems) == 1, problems
    p = problems.iloc[0]
    if column:
        assert p["column"] == column
    text = f"{p['rule']} {p['examples']}"
    assert words in text, text
    if column in ("time_point", "patient_id", "reason") and "unknown" not in words:
        assert "row 2" in p["examples"]  # the spreadsheet row of the offending line


def test_hostile_reason_text_is_never_shown(tmp_path):
    hostile = "<script>alert('x')</script> $\\frac{1}{0}$ PT003"
    w = _withdrawals([("PT003", 6, "other")]).assign(reason_text=hostile)
    clean = clean_study(load_study(write_study(tmp_path, build_study() | {"withdrawals": w})))
    flow = flow_counts(clean)
    main, reasons = shared_flow(flow)
    from backpain_analysis.presentation import display_table

    shown = main.to_csv() + reasons.to_csv() + display_table(main, "flow")._repr_html_()
    assert "script" not in shown and "frac" not in shown and "PT003" not in shown
    fig = plot_flow(flow_frame(flow))
    texts = " ".join(t.get_text() for ax in fig.axes for t in ax.texts)
    assert "script" not in texts and "PT003" not in texts
    import matplotlib.pyplot as plt

    plt.close(fig)


# ------------------------------------------------------------------ disclosure: reasons are a partitioned group
def _no_leak(values: list[int], hidden: list[bool], total: int, total_hidden: bool) -> None:
    """No shown 1-4, and the hidden parts of a group with a shown total are neither one alone nor a small sum."""
    assert not any(0 < v < 5 and not h for v, h in zip(values, hidden, strict=True)), (values, hidden)
    if total_hidden:
        return
    hidden_values = [v for v, h in zip(values, hidden, strict=True) if h and v > 0]
    rest = total - sum(v for v, h in zip(values, hidden, strict=True) if not h)
    assert rest == sum(hidden_values)
    assert not hidden_values or (len(hidden_values) >= 2 and rest >= 5), (values, hidden, total)


@pytest.mark.parametrize("reasons", [[3, 40, 20, 9], [1, 2, 30, 7], [4, 0, 0, 25], [2, 2, 0, 0, 40], [0, 6, 3]])
def test_a_small_reason_is_hidden_with_enough_others(reasons):
    lost = sum(reasons)
    main = {"invited": 600, "excluded": 20, "non_respondents": 200, "respondents": 380,
            "followed_up_2m": 300, "followed_up_6m": 380 - lost, "lost_6m": lost}
    hidden_main, _, _, hidden_lost = _flow_hidden(main, [10, 10], lost_6m=reasons)
    _no_leak(reasons, hidden_lost, lost, hidden_main["lost_6m"])
    # the lost group and the followed up make up the respondents
    _no_leak([main["followed_up_6m"], lost], [hidden_main["followed_up_6m"], hidden_main["lost_6m"]], 380, False)


def test_a_small_lost_group_hides_its_reasons_and_the_followed_up():
    main = {"invited": 600, "excluded": 20, "non_respondents": 200, "respondents": 380,
            "followed_up_6m": 377, "lost_6m": 3}
    hidden_main, _, _, hidden_lost = _flow_hidden(main, [10, 10], lost_6m=[2, 1])
    assert hidden_main["lost_6m"] and hidden_main["followed_up_6m"] and hidden_lost == [True, True]


def test_not_yet_due_is_protected_within_its_time_point():
    # with a cut-off: respondents = not yet due + followed up + lost; a lost group of 2 must not be
    # recoverable as respondents - not yet due - followed up (the old rule only looked at followed up)
    main = {"invited": 600, "excluded": 20, "non_respondents": 200, "respondents": 380,
            "not_yet_due_6m": 100, "followed_up_6m": 278, "lost_6m": 2}
    hidden_main, _, _, hidden_lost = _flow_hidden(main, [10, 10], lost_6m=[2])
    parts = ["not_yet_due_6m", "followed_up_6m", "lost_6m"]
    _no_leak([main[p] for p in parts], [hidden_main[p] for p in parts], 380, False)


def test_shared_table_and_diagram_hide_a_small_reason_in_one_phase():
    items = ["invited", "excluded", "non-respondents", "respondents", "consented to record review",
             "followed up at 2 months", "followed up at 6 months", LOST, f"{LOST}: withdrew consent",
             f"{LOST}: died", f"{LOST}: did not return the questionnaire", f"{LOST}: reason not recorded"]
    flow = pd.DataFrame({"item": items,
                         "n_phase1": [600, 20, 200, 380, 300, 300, 320, 60, 12, 3, 40, 5],
                         "n_phase3": [900, 30, 300, 570, 450, 450, 470, 100, 20, 0, 72, 8]})
    main, _ = shared_flow(flow)
    shown = main.set_index("item")
    p1 = shown.loc[[i for i in items if i.startswith(LOST + ":")], "n_phase1"].tolist()
    assert p1[1] == "*" and p1.count("*") >= 2
    hidden_sum = sum(v for v, s in zip([12, 3, 40, 5], p1, strict=True) if s == "*")
    assert hidden_sum >= 5
    assert "*" not in shown.loc[[i for i in items if i.startswith(LOST + ":")], "n_phase3"].tolist()
    # the diagram shows the same: the 3 as "<5", its sibling hidden, nothing recoverable
    fig = plot_flow(flow_frame(flow))
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    box = next(t for t in texts if t.startswith("Not followed up at 6 months: n = 60"))
    assert "died: <5" in box and "reason not recorded: *" in box
    assert "reason not recorded: 5" not in box
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_bundled_shared_flow_shows_no_small_count(bundled_flow):
    main, reasons = shared_flow(bundled_flow.reset_index())
    for table in (main, reasons):
        for col in COLS:
            values = pd.to_numeric(table[col], errors="coerce")
            assert not ((values > 0) & (values < 5)).any(), table
    lost = main.set_index("item")
    for col, n in zip(COLS, bundled_flow.loc[LOST, COLS], strict=True):
        cells = lost.loc[[i for i in lost.index if i.startswith(LOST + ":")], col]
        values = bundled_flow.loc[cells.index, col].to_numpy()
        _no_leak(list(values), list(cells.eq("*")), int(n), lost.loc[LOST, col] == "*")
        assert np.isfinite(values).all()
