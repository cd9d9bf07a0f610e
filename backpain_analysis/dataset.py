"""The analysis dataset (one row per analysed patient), the participant flow, and the
reconciliation of every input row.

The columns are the contract of ``docs/architecture.md`` ("The analysis dataset"); chapter
notebooks and package functions rely on them. Numeric columns are ``float64`` with ``NaN``
for missing, binary flags 0/1 floats, ordered scales ordered categoricals; time points are
suffixed ``_0m``, ``_2m``, ``_6m``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .cleaning import CleanStudy, clean_study, patient_rows
from .errors import BackpainError
from .scoring import EQ5D_COLUMNS, GLOBAL_CHANGE_LABELS, eq5d3l_index, good_outcome, rmdq_mcid, score_rmdq, score_sbst
from .stratification import matched_care, matched_pathway, matched_referral, received_pathway

__all__ = [
    "ANALYSIS_COLUMNS",
    "EXCLUSION_REASON_LABELS",
    "LOSS_REASON_LABELS",
    "LOSS_REASON_MONTHS",
    "ReconciliationError",
    "build_analysis_dataset",
    "flow_counts",
    "load_analysis_dataset",
    "reconcile",
]

_T = ("0m", "2m", "6m")
_MEASURES = ("rmdq", "pain_nrs", "eq5d_index", "hads_anxiety", "hads_depression", "tsk", "csq_cat", "pseq")
_RECORD_FLAGS = ("physio_referral", "reconsulted", "n_gp_consultations", "nsaids", "antidepressants",
                 "non_opioid_analgesics", "opioids_any", "opioids_strong", "opioids_weak_only", "neuromodulators",
                 "n_prescriptions", "sickness_certificate", "blood_test", "imaging", "secondary_care_referral")

#: The columns of the analysis dataset, in order (docs/architecture.md).
ANALYSIS_COLUMNS: tuple[str, ...] = (
    "patient_id", "practice_id", "gp_id", "phase", "stratified",
    "age", "sex", "female", "employed", "manual_occupation", "time_off_work", "episode_duration", "leg_pain",
    "consultation_date",
    *[f"{m}_{t}" for t in _T for m in ("sbst_total", "sbst_psychosocial", "risk_group")], "risk_group",
    *[f"{m}_{t}" for m in _MEASURES for t in _T],
    "global_change_2m", "global_change_6m", "good_outcome_2m", "good_outcome_6m", "days_off_work_6m",
    "satisfied_care_6m", "satisfied_results_6m",
    "rmdq_change_2m", "rmdq_change_6m", "pain_change_6m", "tsk_change_6m", "hads_anxiety_change_6m",
    "hads_depression_change_6m", "eq5d_change_6m", "rmdq_mcid_6m",
    *_RECORD_FLAGS,
    "physio_sessions", "physio_approach",
    "matched_pathway", "received_pathway", "matched_care", "matched_referral",
    "consented_records", "followed_up_2m", "followed_up_6m", "followup_6m_in_window",
)

#: Exclusion reasons at invitation (dictionary codes) -> wording of the published flow (Table 1).
EXCLUSION_REASON_LABELS: dict[str, str] = {
    "died_or_moved": "died or moved practice",
    "unable_to_respond": "unable to respond",
    "declined": "did not want to take part",
    "no_back_pain": "no back pain",
    "comorbid_priority": "comorbid priority",
    "unable_to_take_part": "unable to take part",
}
#: Reasons for loss to follow-up (``withdrawals.reason`` codes) -> wording of the participant flow.
LOSS_REASON_LABELS: dict[str, str] = {
    "withdrew": "withdrew consent",
    "died": "died",
    "moved": "moved or left the practice",
    "too_ill": "too ill to take part",
    "no_reply": "did not return the questionnaire",
    "other": "other reason",
}
#: Follow-up time points whose loss is split by reason in :func:`flow_counts` (the primary outcome's).
LOSS_REASON_MONTHS: tuple[int, ...] = (6,)
_APPROACH_ORDER = ("advice_only", "manual_exercise", "psych_informed")
_SBST_ITEMS = [f"sbst_{i}" for i in range(1, 10)]
_RMDQ_ITEMS = [f"rmdq_{i}" for i in range(1, 25)]
#: Patient columns build_analysis_dataset reads (identity, characteristics, consent, questionnaire items).
_PATIENT_COLUMNS = frozenset((
    "patient_id", "practice_id", "gp_id", "phase", "age", "sex", "employed", "manual_occupation", "time_off_work",
    "episode_duration", "leg_pain", "consultation_date", "record_review_consent",
    *_SBST_ITEMS, *_RMDQ_ITEMS, *EQ5D_COLUMNS,
    "pain_nrs", "hads_anxiety", "hads_depression", "tsk", "csq_cat", "pseq",
))
#: Follow-up values used at 6 months only.
_ONLY_6M = frozenset(("days_off_work", "satisfied_care", "satisfied_results", "in_window"))


class ReconciliationError(BackpainError):
    """Input rows that are neither used in the analysis dataset nor in the exclusions table."""


def _float(s: pd.Series) -> np.ndarray:
    return s.to_numpy(dtype="float64", na_value=np.nan)


def _isin(values: pd.Series | pd.Index, ids: pd.Index) -> np.ndarray:
    """Boolean mask: which ``values`` are in the unique index ``ids`` (a hash lookup; pandas'
    ``isin`` on Arrow strings loops in Python over the lookup values)."""
    if not ids.is_unique:
        ids = ids.unique()
    return ids.get_indexer(np.asarray(values, dtype=object)) >= 0


def _used(clean: CleanStudy, table: str) -> pd.DataFrame:
    """Rows of a clean table that the exclusions table does not list."""
    t = clean.tables[table]
    ex = clean.exclusions
    rows = ex.loc[ex["table"] == table, "row"].to_numpy()
    return t if rows.size == 0 else t.loc[~t.index.isin(rows)]


def _used_mask(clean: CleanStudy, table: str) -> np.ndarray:
    """Positional mask over a clean table: rows the exclusions table does not list."""
    t = clean.tables[table]
    ex = clean.exclusions
    rows = ex.loc[ex["table"] == table, "row"].to_numpy()
    if rows.size == 0:
        return np.ones(len(t), dtype=bool)
    index = t.index
    if isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1 and rows.dtype.kind in "iu":
        # Fast path: the labels of a 0..n-1 RangeIndex are the positions, so clearing the listed
        # rows (those inside 0..n-1) is exactly ``~index.isin(rows)`` without a hash table.
        mask = np.ones(len(t), dtype=bool)
        mask[rows[(rows >= 0) & (rows < len(t))]] = False
        return mask
    return ~index.isin(rows)


def _placement(clean: CleanStudy, table: str, row_of: np.ndarray, extra: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Used rows of a patient table that belong to analysed patients: (table positions, dataset rows)."""
    prow = patient_rows(clean, table)
    # one gather: row_of with -1 appended, which position -1 (no patient) picks
    drow = np.append(row_of, np.int64(-1)).astype("int64", copy=False)[prow]
    sel = _used_mask(clean, table) & (drow >= 0)
    if extra is not None:
        sel &= extra
    return np.flatnonzero(sel), drow[sel]


def _order(tpos: np.ndarray, drow: np.ndarray, n: int, what: str) -> np.ndarray:
    """For each dataset row, the table position placed on it (-1: none)."""
    if drow.size and np.bincount(drow, minlength=n).max() > 1:
        raise ReconciliationError(f"{what}: a patient has more than one used row; clean_study resolves duplicates")
    order = np.full(n, -1, dtype="int64")
    order[drow] = tpos
    return order


def _extend(values: np.ndarray | pd.Series) -> tuple[np.ndarray, pd.CategoricalDtype | None]:
    """A float array, or a categorical Series' codes (and dtype), with one missing element
    appended (NaN, or code -1): :func:`_gather` picks it for order -1 (numpy's last element)."""
    if isinstance(values, pd.Series) and isinstance(values.dtype, pd.CategoricalDtype):
        codes = values.cat.codes.to_numpy()
        return np.append(codes, codes.dtype.type(-1)), values.dtype
    return np.append(np.asarray(values, dtype="float64"), np.nan), None


def _gather(extended: tuple[np.ndarray, pd.CategoricalDtype | None], order: np.ndarray) -> np.ndarray | pd.Series:
    """``values[order]`` of :func:`_extend`'s values, missing where ``order`` is -1: one gather."""
    ext, dtype = extended
    if dtype is not None:
        return pd.Series(pd.Categorical.from_codes(ext[order], dtype=dtype))
    return ext[order]


def _take(values: np.ndarray | pd.Series, order: np.ndarray) -> np.ndarray | pd.Series:
    """``values[order]`` with missing where ``order`` is -1 (float arrays or categorical Series)."""
    return _gather(_extend(values), order)


def _measures(frame: Callable[[list[str]], pd.DataFrame], rmdq_max_missing: int, sbst_missing: str
              ) -> dict[str, Any]:
    """Scores of one questionnaire (baseline or one follow-up), positional arrays / Series.

    ``frame(columns)`` gives the questionnaire rows with (at least) those columns: one
    instrument's columns at a time, so the baseline never holds every item column of the
    respondents at once.
    """
    sbst = score_sbst(frame(_SBST_ITEMS), missing=sbst_missing)
    out: dict[str, Any] = {}
    out["sbst_total"] = sbst["sbst_total"].to_numpy()
    out["sbst_psychosocial"] = sbst["sbst_psychosocial"].to_numpy()
    out["risk_group"] = sbst["risk_group"].reset_index(drop=True)
    del sbst
    out["rmdq"] = score_rmdq(frame(_RMDQ_ITEMS), max_missing=rmdq_max_missing).to_numpy()
    out["pain_nrs"] = _float(frame(["pain_nrs"])["pain_nrs"])
    out["eq5d_index"] = eq5d3l_index(frame(list(EQ5D_COLUMNS))).to_numpy()
    for m in ("hads_anxiety", "hads_depression", "tsk", "csq_cat", "pseq"):
        out[m] = _float(frame([m])[m])
    return out


def build_analysis_dataset(
    clean: CleanStudy,
    *,
    rmdq_max_missing: int = 2,
    sbst_missing: str = "undefined",
    mcid_min_reduction: float = 0.30,
) -> pd.DataFrame:
    """Build the analysis dataset: one row per analysed patient (baseline respondent).

    Parameters
    ----------
    clean : CleanStudy
        From :func:`backpain_analysis.clean_study`.
    rmdq_max_missing : int, default 2
        Passed to :func:`backpain_analysis.score_rmdq` (prorating rule).
    sbst_missing : str, default "undefined"
        Passed to :func:`backpain_analysis.score_sbst` (missing-item rule).
    mcid_min_reduction : float, default 0.30
        Passed to :func:`backpain_analysis.rmdq_mcid`.

    Returns
    -------
    DataFrame
        Exactly :data:`ANALYSIS_COLUMNS` (docs/architecture.md), RangeIndex, in patients-table
        order:

        - identity: ``patient_id``, ``practice_id``, ``gp_id`` (str), ``phase`` (int64 1/3),
          ``stratified`` (1.0 in phase 3);
        - characteristics: ``age``, ``sex`` (category), ``female``, ``employed``,
          ``manual_occupation``, ``time_off_work``, ``episode_duration`` (ordered),
          ``leg_pain``, ``consultation_date`` (datetime64);
        - screening ``sbst_total_{t}``, ``sbst_psychosocial_{t}``, ``risk_group_{t}`` for
          t in 0m, 2m, 6m, and ``risk_group`` (= baseline);
        - measures ``rmdq_{t}``, ``pain_nrs_{t}``, ``eq5d_index_{t}``, ``hads_anxiety_{t}``,
          ``hads_depression_{t}``, ``tsk_{t}``, ``csq_cat_{t}``, ``pseq_{t}``;
        - follow-up only: ``global_change_{2m,6m}`` (ordered categorical, completely
          recovered < ... < much worse), ``good_outcome_{2m,6m}``, ``days_off_work_6m``,
          ``satisfied_care_6m``, ``satisfied_results_6m``;
        - changes (positive = better): ``rmdq_change_{2m,6m}``, ``pain_change_6m``,
          ``tsk_change_6m``, ``hads_anxiety_change_6m``, ``hads_depression_change_6m`` (all
          baseline minus follow-up, since lower is better), ``eq5d_change_6m`` (follow-up
          minus baseline, since a higher index is better), ``rmdq_mcid_6m``;
        - records (``NaN`` without a used record review): ``physio_referral``,
          ``reconsulted``, ``n_gp_consultations``, ``nsaids``, ``antidepressants``,
          ``non_opioid_analgesics``, ``opioids_any`` (strong or weak), ``opioids_strong``,
          ``opioids_weak_only`` (weak and not strong), ``neuromodulators``,
          ``n_prescriptions``, ``sickness_certificate``, ``blood_test``, ``imaging``,
          ``secondary_care_referral``;
        - physiotherapy: ``physio_sessions`` (sum over episodes; 0 without an episode; NaN
          if every episode lacks a count), ``physio_approach`` (most intensive approach of
          the patient's episodes: advice_only < manual_exercise < psych_informed);
        - stratification: ``matched_pathway``, ``received_pathway`` (ordered categoricals),
          ``matched_care``, ``matched_referral`` (see :mod:`backpain_analysis.stratification`);
        - flow: ``consented_records``, ``followed_up_2m``, ``followed_up_6m`` (a follow-up
          questionnaire used for that time point), ``followup_6m_in_window`` (1 inside the
          6-month window, 0 outside; NaN if not followed up at 6 months or the window cannot
          be computed). Follow-ups that a plausibility rule excludes (returned before the
          baseline questionnaire by default; outside their window with
          ``clean_study(plausibility={"followup_outside_window": "exclude"})``) are not used:
          their outcome columns are missing and ``followed_up_{2m,6m}`` is 0.

    Notes
    -----
    Only rows the exclusions table does not list are used (so follow-ups, records and physio
    episodes of non-respondents, and records without consent, are left out). Scoring rules:
    :mod:`backpain_analysis.scoring` (domain.md section 4).

    Examples
    --------
    >>> import sys; sys.path.insert(0, "tests")
    >>> from types import SimpleNamespace
    >>> from studyfactory import build_study
    >>> from backpain_analysis import clean_study
    >>> data = build_analysis_dataset(clean_study(SimpleNamespace(tables=build_study())))
    >>> len(data), data["risk_group"].cat.categories.tolist()
    (10, ['low', 'medium', 'high'])
    """
    all_patients = clean.tables["patients"]
    responded = (all_patients["invitation_outcome"] == "responded").to_numpy(dtype=bool)
    resp_pos = np.flatnonzero(_used_mask(clean, "patients") & responded)
    n = len(resp_pos)
    row_of = np.full(len(all_patients), -1, dtype="int64")
    row_of[resp_pos] = np.arange(n)
    baseline: Callable[[list[str]], pd.DataFrame]
    patient: Callable[[str], pd.Series]
    if _PATIENT_COLUMNS.issubset(all_patients.columns) and all_patients.columns.is_unique:
        # Take the respondents' rows of the columns used, a few at a time, as they are needed:
        # the same values as taking every column at once, without holding ~60 taken columns.
        def baseline(columns: list[str]) -> pd.DataFrame:
            return all_patients[columns].take(resp_pos).reset_index(drop=True)

        def patient(column: str) -> pd.Series:
            return all_patients[column].take(resp_pos).reset_index(drop=True)
    else:  # a column is absent: as before, so that errors name the same columns
        p = all_patients.iloc[resp_pos].reset_index(drop=True)

        def baseline(columns: list[str]) -> pd.DataFrame:
            return p

        def patient(column: str) -> pd.Series:
            return p[column]
    cols: dict[str, Any] = {}
    cols["patient_id"] = patient("patient_id").astype("str")
    cols["practice_id"] = patient("practice_id").astype("str")
    cols["gp_id"] = patient("gp_id").astype("str")
    phase = patient("phase")
    cols["phase"] = phase.astype("int64") if not phase.isna().any() else _float(phase)
    cols["stratified"] = np.where(phase.isna(), np.nan, (_float(phase) == 3).astype("float64"))
    cols["age"] = _float(patient("age"))
    cols["sex"] = patient("sex")
    sex = cols["sex"] if isinstance(cols["sex"].dtype, pd.CategoricalDtype) else cols["sex"].astype(object)
    cols["female"] = np.where(sex.isna(), np.nan, (sex == "female").astype("float64"))  # categorical: on codes
    for c in ("employed", "manual_occupation", "time_off_work"):
        cols[c] = _float(patient(c))
    cols["episode_duration"] = patient("episode_duration")
    cols["leg_pain"] = _float(patient("leg_pain"))
    cols["consultation_date"] = patient("consultation_date")

    scores = {"0m": _measures(baseline, rmdq_max_missing, sbst_missing)}
    followups = clean.tables["followups"]
    time_point = followups["time_point"].to_numpy(dtype="float64", na_value=np.nan)
    # score every follow-up once, then place the scores (not the 50 item columns) on the patients
    per_row = _measures(lambda columns: followups, rmdq_max_missing, sbst_missing)
    for c in ("global_change", "days_off_work", "satisfied_care", "satisfied_results"):
        per_row[c] = _float(followups[c])
    per_row["in_window"] = followups["in_window"].astype("Float64").to_numpy(dtype="float64", na_value=np.nan)
    for c in list(per_row):  # placed twice: extend once (in place, freeing each original)
        per_row[c] = _extend(per_row[c])
    fu: dict[str, dict[str, Any]] = {}
    # used follow-ups of analysed patients once, then split by time point (the same rows as
    # asking _placement for each time point)
    fu_tpos, fu_drow = _placement(clean, "followups", row_of)
    fu_time = time_point[fu_tpos]
    for months in (2, 6):
        t = f"{months}m"
        at = fu_time == months
        tpos, drow = fu_tpos[at], fu_drow[at]
        order = _order(tpos, drow, n, f"followups at {months} months")
        fu[t] = {c: _gather(v, order) for c, v in per_row.items() if months == 6 or c not in _ONLY_6M}
        fu[t]["_present"] = (order >= 0).astype("float64")
        scores[t] = fu[t]
    del per_row
    for t in _T:
        for m in ("sbst_total", "sbst_psychosocial", "risk_group"):
            cols[f"{m}_{t}"] = scores[t][m]
    cols["risk_group"] = scores["0m"]["risk_group"]
    for m in _MEASURES:
        for t in _T:
            cols[f"{m}_{t}"] = scores[t][m]

    gc_dtype = pd.CategoricalDtype(list(GLOBAL_CHANGE_LABELS), ordered=True)
    for t in ("2m", "6m"):
        gc = fu[t]["global_change"]
        codes = np.where(np.isnan(gc), -1, np.nan_to_num(gc, nan=1.0) - 1).astype("int64")
        cols[f"global_change_{t}"] = pd.Categorical.from_codes(codes, dtype=gc_dtype)
    for t in ("2m", "6m"):
        cols[f"good_outcome_{t}"] = _float(good_outcome(pd.Series(fu[t]["global_change"])))
    cols["days_off_work_6m"] = fu["6m"]["days_off_work"]
    cols["satisfied_care_6m"] = fu["6m"]["satisfied_care"]
    cols["satisfied_results_6m"] = fu["6m"]["satisfied_results"]

    cols["rmdq_change_2m"] = cols["rmdq_0m"] - cols["rmdq_2m"]
    cols["rmdq_change_6m"] = cols["rmdq_0m"] - cols["rmdq_6m"]
    cols["pain_change_6m"] = cols["pain_nrs_0m"] - cols["pain_nrs_6m"]
    cols["tsk_change_6m"] = cols["tsk_0m"] - cols["tsk_6m"]
    cols["hads_anxiety_change_6m"] = cols["hads_anxiety_0m"] - cols["hads_anxiety_6m"]
    cols["hads_depression_change_6m"] = cols["hads_depression_0m"] - cols["hads_depression_6m"]
    cols["eq5d_change_6m"] = cols["eq5d_index_6m"] - cols["eq5d_index_0m"]
    cols["rmdq_mcid_6m"] = _float(rmdq_mcid(pd.Series(cols["rmdq_0m"]), pd.Series(cols["rmdq_6m"]),
                                            min_reduction=mcid_min_reduction))

    records = clean.tables["records"]
    tpos, drow = _placement(clean, "records", row_of)
    order = _order(tpos, drow, n, "records")
    rec = {c: _take(_float(records[c]), order) for c in records.columns if c not in ("patient_id", "review_date")}
    strong, weak = rec["opioids_strong"], rec["opioids_weak"]
    any_op = np.where((strong == 1) | (weak == 1), 1.0, np.where((strong == 0) & (weak == 0), 0.0, np.nan))
    weak_only = np.where(np.isnan(strong) | np.isnan(weak), np.nan, ((weak == 1) & (strong == 0)).astype("float64"))
    for c in _RECORD_FLAGS:
        cols[c] = {"opioids_any": any_op, "opioids_weak_only": weak_only}.get(c, rec.get(c))

    physio = clean.tables["physio"]
    tpos, drow = _placement(clean, "physio", row_of)
    sessions = physio["n_sessions"].to_numpy(dtype="float64", na_value=np.nan)[tpos]
    counted = ~np.isnan(sessions)
    total = np.bincount(drow[counted], weights=sessions[counted], minlength=n)
    n_counted = np.bincount(drow[counted], minlength=n)
    has_episode = np.bincount(drow, minlength=n) > 0
    cols["physio_sessions"] = np.where(~has_episode, 0.0, np.where(n_counted > 0, total, np.nan))
    approach_rank = {a: i for i, a in enumerate(_APPROACH_ORDER)}
    approach = physio["approach"]
    if isinstance(approach.dtype, pd.CategoricalDtype):
        lut = np.asarray([approach_rank.get(c, -1) for c in approach.cat.categories] + [-1], dtype="int64")
        codes = approach.cat.codes.to_numpy()
        rank = lut[np.where(codes < 0, len(lut) - 1, codes)][tpos]
    else:
        rank = approach.astype(object).map(approach_rank).fillna(-1).to_numpy(dtype="int64")[tpos]
    top = np.full(n, -1, dtype="int64")
    np.maximum.at(top, drow, rank)
    cols["physio_approach"] = pd.Categorical.from_codes(top, dtype=pd.CategoricalDtype(list(_APPROACH_ORDER),
                                                                                        ordered=True))

    risk = pd.Series(cols["risk_group"])
    referral = pd.Series(cols["physio_referral"])
    approach = pd.Series(cols["physio_approach"])  # categorical: received_pathway works on its codes
    cols["matched_pathway"] = matched_pathway(risk)
    cols["received_pathway"] = received_pathway(referral, approach)
    cols["matched_care"] = _float(matched_care(cols["matched_pathway"], cols["received_pathway"]))
    cols["matched_referral"] = _float(matched_referral(risk, referral))

    cols["consented_records"] = _float(patient("record_review_consent"))
    cols["followed_up_2m"] = fu["2m"]["_present"]
    cols["followed_up_6m"] = fu["6m"]["_present"]
    in_window = fu["6m"]["in_window"]
    cols["followup_6m_in_window"] = np.where(cols["followed_up_6m"] == 1, in_window, np.nan)

    ordered = {c: (cols[c].reset_index(drop=True) if isinstance(cols[c], pd.Series) else cols[c])
               for c in ANALYSIS_COLUMNS}
    return pd.DataFrame(ordered, index=pd.RangeIndex(n), copy=False)


def flow_counts(clean: CleanStudy) -> pd.DataFrame:
    """Participant flow per phase, in the shape of the published Table 1 flow.

    Parameters
    ----------
    clean : CleanStudy

    Returns
    -------
    DataFrame
        One row per ``item``: ``invited``; ``excluded``; one ``excluded: <reason>`` row per
        reason of :data:`EXCLUSION_REASON_LABELS` (plus ``excluded: reason not recorded``
        when any is missing); ``non-respondents``; ``respondents``; when a plausibility rule
        excludes respondents (:func:`backpain_analysis.clean_study`), one ``respondents not
        analysed: <reason>`` row per reason and ``analysed``; ``consented to record review``;
        ``followed up at 2 months``; ``followed up at 6 months`` (of the analysed);
        ``not followed up at 6 months`` (of the analysed, or of those due) followed by one
        ``not followed up at 6 months: <reason>`` row per reason of :data:`LOSS_REASON_LABELS`
        (from the optional ``withdrawals`` table) that someone has in either phase, and
        ``not followed up at 6 months: reason not recorded`` for those without one (everyone
        lost when the export has no ``withdrawals`` file). With a data
        cut-off (``clean.options["until"]``, see :func:`load_analysis_dataset`) each follow-up row
        is preceded by ``not yet due at N months (window open at the cut-off ...)`` and its
        percentage is of the patients due (``percent_of`` ``due at N months``). Columns
        ``n_phase1``, ``pct_phase1``, ``n_phase3``, ``pct_phase3`` (percentages 0-100, not
        rounded) and ``percent_of`` (the denominator).

    Notes
    -----
    Percentages as published (Foster et al. 2014, Table 1): respondents as a percentage of
    invited; consent and follow-up as a percentage of respondents (of the analysed, when
    some respondents are not analysed); none for exclusions and non-respondents. Counts come from the clean (deduplicated) patients table; a patient is
    followed up at a time point when a follow-up questionnaire for it is used. Small counts
    are not suppressed here: a shared output must suppress counts from 1 to 4 itself.

    Examples
    --------
    >>> import sys; sys.path.insert(0, "tests")
    >>> from types import SimpleNamespace
    >>> from studyfactory import build_study
    >>> from backpain_analysis import clean_study
    >>> flow = flow_counts(clean_study(SimpleNamespace(tables=build_study())))
    >>> flow.set_index("item").loc["respondents", ["n_phase1", "n_phase3"]].tolist()
    [5, 5]
    """
    invited = clean.tables["patients"]  # every invited patient (exact duplicate rows dropped by cleaning)
    followups = clean.tables["followups"]
    fu_rows = patient_rows(clean, "followups")
    fu_used = _used_mask(clean, "followups") & (fu_rows >= 0)
    fu_time = followups["time_point"].to_numpy(dtype="float64", na_value=np.nan)
    rows: list[tuple[str, str, dict[int, int]]] = []

    def count(mask: pd.Series) -> dict[int, int]:
        phase = invited.loc[mask.to_numpy(dtype=bool), "phase"]
        return {ph: int((phase == ph).sum()) for ph in (1, 3)}

    outcome = invited["invitation_outcome"].astype(object)
    reason = invited["exclusion_reason"].astype(object)
    responded = outcome == "responded"
    rows.append(("invited", "", count(pd.Series(np.ones(len(invited), bool)))))
    rows.append(("excluded", "", count(outcome == "excluded")))
    for code, label in EXCLUSION_REASON_LABELS.items():
        rows.append((f"excluded: {label}", "", count((outcome == "excluded") & (reason == code))))
    unknown = (outcome == "excluded") & reason.isna()
    if unknown.any():
        rows.append(("excluded: reason not recorded", "", count(unknown)))
    rows.append(("non-respondents", "", count(outcome == "non_respondent")))
    rows.append(("respondents", "invited", count(responded)))
    # respondents that a plausibility rule excludes (clean.exclusions, stage analysis): not analysed
    analysed = responded & pd.Series(_used_mask(clean, "patients"), index=invited.index)
    base = "respondents"
    if (responded & ~analysed).any():
        ex = clean.exclusions
        ex = ex.loc[ex["table"] == "patients"].drop_duplicates("row").set_index("row")["reason"]
        reason = pd.Series(invited.index.map(ex), index=invited.index).astype(object)
        lost = responded & ~analysed
        for why in dict.fromkeys(reason[lost].fillna("reason not recorded")):
            rows.append((f"respondents not analysed: {why}", "",
                         count(lost & (reason.fillna("reason not recorded") == why))))
        rows.append(("analysed", "respondents", count(analysed)))
        base = "analysed"
    consent = invited["record_review_consent"].astype("float64")
    rows.append(("consented to record review", base, count(analysed & (consent == 1))))
    until = clean.options.get("until")
    denominators: dict[str, dict[int, int]] = {}
    for months in (2, 6):
        followed = np.zeros(len(invited), dtype=bool)
        followed[fu_rows[fu_used & (fu_time == months)]] = True
        if until is None:
            rows.append((f"followed up at {months} months", base, count(analysed & followed)))
            lost, of = analysed & ~followed, base
        else:
            # data cut-off: a patient whose window is still open is not yet due, not lost to follow-up
            not_due = analysed & ~followed & (_due_at_cutoff(clean, invited, months) == 0)
            rows.append((f"not yet due at {months} months (window open at the cut-off {until})", "",
                         count(not_due)))
            denominators[f"due at {months} months"] = count(analysed & ~not_due)
            of = f"due at {months} months"
            rows.append((f"followed up at {months} months", of, count(analysed & followed)))
            lost = analysed & ~followed & ~not_due
        if months in LOSS_REASON_MONTHS:
            rows.append((f"not followed up at {months} months", of, count(lost)))
            why = _loss_reasons(clean, invited, months)
            for code, label in [*LOSS_REASON_LABELS.items(), (None, "reason not recorded")]:
                mask = lost & (why.isna() if code is None else why == code)
                if mask.any():
                    rows.append((f"not followed up at {months} months: {label}", "", count(mask)))
    n_invited = rows[0][2]
    n_resp = next(r[2] for r in rows if r[0] == "respondents")
    n_analysed = next((r[2] for r in rows if r[0] == "analysed"), n_resp)
    denominators.update({"invited": n_invited, "respondents": n_resp, "analysed": n_analysed})
    records = []
    for item, of, n in rows:
        rec: dict[str, Any] = {"item": item}
        for ph in (1, 3):
            denom = denominators.get(of, {}).get(ph)
            rec[f"n_phase{ph}"] = n[ph]
            rec[f"pct_phase{ph}"] = 100.0 * n[ph] / denom if denom else np.nan
        rec["percent_of"] = of
        records.append(rec)
    return pd.DataFrame(records, columns=["item", "n_phase1", "pct_phase1", "n_phase3", "pct_phase3", "percent_of"])


def _loss_reasons(clean: CleanStudy, patients: pd.DataFrame, months: int) -> pd.Series:
    """The coded reason (``withdrawals.reason``) for not returning the ``months`` questionnaire, per patients row.

    Missing where the optional ``withdrawals`` table has no row (or a blank reason) for the
    patient and time point, or when the study has no such table.
    """
    why = pd.Series(np.full(len(patients), None, dtype=object), index=patients.index)
    w = clean.tables.get("withdrawals")
    if w is None or w.empty:
        return why
    w = w.loc[pd.to_numeric(w["time_point"], errors="coerce").to_numpy(dtype="float64", na_value=np.nan) == months]
    reason = dict(zip(w["patient_id"].astype(str), w["reason"].astype(object), strict=True))
    values = patients["patient_id"].astype(str).map(reason)
    return values.where(values.notna(), None).astype(object)


def _due_at_cutoff(clean: CleanStudy, patients: pd.DataFrame, months: int) -> np.ndarray:
    """Follow-up at ``months`` due (1) or not yet due (0) at ``clean.options["until"]``, per patients row."""
    from .cutoff import followup_due

    if clean.options.get("followup_reference", "baseline_date") == "baseline_date":
        ref = patients["baseline_date"].fillna(patients["consultation_date"])
    else:
        ref = patients["consultation_date"]
    return followup_due(ref, clean.options["until"], months, windows=clean.options.get("followup_window_days"))


def reconcile(study: Any, clean: CleanStudy, dataset: pd.DataFrame) -> pd.DataFrame:
    """Show that every input row is used in the analysis dataset or listed as excluded.

    Parameters
    ----------
    study : Study
        The loaded study (``study.tables``: the raw input tables).
    clean : CleanStudy
        ``clean_study(study)``.
    dataset : DataFrame
        ``build_analysis_dataset(clean)``.

    Returns
    -------
    DataFrame
        One row per input table: ``table``, ``n_input``, ``n_used``, ``n_excluded_cleaning``,
        ``n_excluded_analysis``, ``n_unaccounted`` (0), ``n_double_counted`` (0).

    Raises
    ------
    ReconciliationError
        If any input row is neither used nor excluded, is both, a dataset row matches no
        input patient, or the dataset disagrees with the tables it was built from.

    Notes
    -----
    "Used" means: patients, a row whose ``patient_id`` is in the dataset; follow-ups, a row
    of an analysed patient whose ``followed_up_{2m,6m}`` is 1 in the dataset; records and
    physio episodes, a row of an analysed patient; other tables, a row kept in the clean
    table. Rows are identified by their 0-based position in the input table.

    Examples
    --------
    >>> import sys; sys.path.insert(0, "tests")
    >>> from types import SimpleNamespace
    >>> from studyfactory import build_study
    >>> from backpain_analysis import clean_study, build_analysis_dataset
    >>> study = SimpleNamespace(tables=build_study())
    >>> clean = clean_study(study)
    >>> int(reconcile(study, clean, build_analysis_dataset(clean))["n_unaccounted"].sum())
    0
    """
    problems: list[str] = []
    ids = pd.Index(dataset["patient_id"].to_numpy())
    if ids.has_duplicates:
        problems.append(f"the dataset has {int(ids.duplicated().sum())} repeated patient_id value(s)")
    ex = clean.exclusions
    out = []
    for name, raw in study.tables.items():
        n_input = len(raw)
        if clean.input_rows.get(name) != n_input:
            problems.append(f"table {name!r}: {n_input} input rows but the clean study was built from "
                            f"{clean.input_rows.get(name)}; reconcile the same study that was cleaned")
            continue
        t_ex = ex.loc[ex["table"] == name]
        ex_rows = t_ex["row"].to_numpy(dtype="int64")
        kept = _used(clean, name)
        if name == "patients":
            used_mask = _isin(kept["patient_id"], ids)
            missing_ids = ids.difference(pd.Index(kept["patient_id"].to_numpy()))
            if len(missing_ids):
                problems.append(f"{len(missing_ids)} dataset patient(s) match no used input patient row, "
                                f"e.g. {list(missing_ids[:3])}")
        elif name == "followups":
            used_mask = np.zeros(len(kept), dtype=bool)
            for months in (2, 6):
                flag = dataset[f"followed_up_{months}m"].to_numpy() == 1
                fu_ids = pd.Index(dataset["patient_id"].to_numpy()[flag])
                at = (kept["time_point"] == months).to_numpy(dtype=bool)
                used_mask |= at & _isin(kept["patient_id"], fu_ids)
                n_rows = int((at & _isin(kept["patient_id"], ids)).sum())
                if n_rows != int(flag.sum()):
                    problems.append(f"followups at {months} months: {n_rows} used rows but "
                                    f"{int(flag.sum())} patients with followed_up_{months}m = 1")
        elif name in ("records", "physio"):
            used_mask = _isin(kept["patient_id"], ids)
        else:
            used_mask = np.ones(len(kept), dtype=bool)
        used_rows = kept.index.to_numpy()[used_mask]
        covered = np.zeros(n_input, dtype="int64")
        np.add.at(covered, used_rows, 1)
        np.add.at(covered, ex_rows, 1)
        unaccounted = np.flatnonzero(covered == 0)
        double = np.flatnonzero(covered > 1)
        if unaccounted.size:
            problems.append(f"table {name!r}: {unaccounted.size} input row(s) neither used nor excluded, "
                            f"e.g. rows {unaccounted[:5].tolist()}")
        if double.size:
            problems.append(f"table {name!r}: {double.size} input row(s) both used and excluded (or excluded "
                            f"twice), e.g. rows {double[:5].tolist()}")
        out.append({
            "table": name, "n_input": n_input, "n_used": int(used_rows.size),
            "n_excluded_cleaning": int((t_ex["stage"] == "cleaning").sum()),
            "n_excluded_analysis": int((t_ex["stage"] == "analysis").sum()),
            "n_unaccounted": int(unaccounted.size), "n_double_counted": int(double.size),
        })
    if problems:
        raise ReconciliationError("reconciliation failed: " + "; ".join(problems))
    return pd.DataFrame(out, columns=["table", "n_input", "n_used", "n_excluded_cleaning", "n_excluded_analysis",
                                      "n_unaccounted", "n_double_counted"])


def load_analysis_dataset(data_dir: str | Path, *, mapping: Any = None, until: Any = None,
                          **clean_options: Any) -> tuple[CleanStudy, pd.DataFrame]:
    """Load, clean and build: the one call every chapter notebook starts with.

    Parameters
    ----------
    data_dir : str or Path
        Study export folder.
    mapping : str, Path or dict, optional
        Mapping of an export in its own layout (:mod:`backpain_analysis.mapping`), passed to
        :func:`backpain_analysis.load_study`.
    until : str or date, optional
        Data cut-off (inclusive): only consultations, questionnaires, follow-ups, record
        reviews, physiotherapy episodes and clinician surveys dated on or before it are used
        (:func:`backpain_analysis.cutoff.truncate_tables`). Default: the environment variable
        ``BACKPAIN_DATA_UNTIL`` (set by ``backpain report --until`` for its notebooks), else none.
    **clean_options
        Passed to :func:`backpain_analysis.clean_study` (for example
        ``followup_window_days``).

    Returns
    -------
    (CleanStudy, DataFrame)
        The clean study (tables, cleaning log, exclusions, truth) and the analysis dataset.
        With a cut-off, ``clean.options["until"]`` holds it (``YYYY-MM-DD``), the flow
        (:func:`flow_counts`) has "not yet due" rows, and the dataset has two more columns,
        ``followup_2m_due`` and ``followup_6m_due`` (1 when the follow-up window had closed by
        the cut-off or the questionnaire had come back, 0 "not yet due": such a patient is not
        lost to follow-up; see :func:`backpain_analysis.cutoff.followup_due`).

    Examples
    --------
    >>> import sys, tempfile; sys.path.insert(0, "tests")
    >>> from studyfactory import write_study
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     clean, data = load_analysis_dataset(write_study(tmp))
    >>> data.shape[0]
    10
    """
    from .cutoff import as_iso, parse_until, truncate_study, until_from_environment
    from .loading import load_study

    day = parse_until(until) if until is not None else until_from_environment()
    study = load_study(data_dir, mapping=mapping)
    if day is None:
        clean = clean_study(study, **clean_options)
        return clean, build_analysis_dataset(clean)
    clean = clean_study(truncate_study(study, day), **clean_options)
    clean.options["until"] = as_iso(day)
    dataset = build_analysis_dataset(clean)
    due = _due_by_cutoff(clean, dataset["patient_id"])
    for months in (2, 6):
        followed = dataset[f"followed_up_{months}m"].to_numpy() == 1
        dataset[f"followup_{months}m_due"] = np.where(followed, 1.0, due[months])
    return clean, dataset


def _due_by_cutoff(clean: CleanStudy, patient_id: pd.Series) -> dict[int, np.ndarray]:
    """Follow-up due (1) or not yet due (0) at the cut-off, per time point, for these patients."""
    p = clean.tables["patients"].drop_duplicates("patient_id").set_index("patient_id")
    p = p.reindex(patient_id.to_numpy())
    return {m: _due_at_cutoff(clean, p, m) for m in (2, 6)}
