"""A REDCap-style export of a study folder, with foreign names and codes, and its confirmed mapping file.

:func:`write_redcap_export` turns a study in the data dictionary's layout (the bundled
``data/synthetic``) into what a study database would export:

- one file ``IMPACTBack_DATA_LABELS.csv`` with one row per record and time point
  (``redcap_event_name`` = ``Baseline``, ``2 months``, ``6 months``, ``Record review``):
  patients, follow-ups and record reviews; fields shared by baseline and follow-up
  questionnaires (``SBST_Q1`` ...) are one column;
- labels, not codes: ``Gender`` M/F, ``SBST_Q1`` Yes/No, ``employed`` TRUE/FALSE,
  ``invite_outcome`` "Non-respondent", phases "baseline cohort"/"intervention cohort",
  ``duration_episode`` numbered 1-5;
- RMDQ as a checkbox field: ``rmdq___1`` .. ``rmdq___24`` Checked/Unchecked, an item not
  answered written as the missing-data code ``UNK`` (blank for non-respondents);
- dates as ``2008-03-05T00:00``;
- the other tables in their own files with their own names (``sites.csv``, ``staff.csv``,
  ``staff_survey.csv``, ``consultations_log.csv``, ``physio_episodes.csv``).

:data:`CONFIRMED_MAPPING` is the mapping file a user ends with after confirming
``backpain map --draft``'s suggestions (the tests check the draft against it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

REDCAP_FILE = "IMPACTBack_DATA_LABELS.csv"
PHASE_NAMES = {1: "baseline cohort", 3: "intervention cohort"}
YES_NO = {1: "Yes", 0: "No"}
DURATIONS = ["lt_1m", "1_3m", "3_6m", "6m_3y", "gt_3y"]
BOTHER = ["Not at all", "Slightly", "Moderately", "Very much", "Extremely"]
GLOBAL = ["Completely recovered", "Much better", "Better", "No change", "Worse", "Much worse"]
OUTCOMES = {"responded": "Responded", "non_respondent": "Non-respondent", "excluded": "Excluded"}

#: dictionary column -> export column of the questionnaire fields shared by baseline and follow-ups
SHARED = {**{f"sbst_{i}": f"SBST_Q{i}" for i in range(1, 10)},
          **{f"rmdq_{i}": f"rmdq___{i}" for i in range(1, 25)},
          "pain_nrs": "pain_score", "eq5d_mo": "eq5d_mobility", "eq5d_sc": "eq5d_selfcare",
          "eq5d_ua": "eq5d_usual_activities", "eq5d_pd": "eq5d_pain_discomfort",
          "eq5d_ad": "eq5d_anxiety_depression", "hads_anxiety": "hads_a", "hads_depression": "hads_d",
          "tsk": "tsk_total", "csq_cat": "csq_cat", "pseq": "pseq_total"}
PATIENT = {"patient_id": "record_id", "practice_id": "practice_code", "gp_id": "gp_code", "phase": "Cohort",
           "consultation_date": "consult_date", "invitation_outcome": "invite_outcome",
           "exclusion_reason": "excl_reason", "record_review_consent": "consent_records", "age": "Age_at_consult",
           "sex": "Gender", "baseline_date": "date_baseline", "employed": "employed",
           "manual_occupation": "manual_job", "time_off_work": "off_work", "episode_duration": "duration_episode",
           "leg_pain": "leg_pain"}
FOLLOWUP = {"patient_id": "record_id", "time_point": "redcap_event_name", "return_date": "date_returned",
            "global_change": "global_change", "days_off_work": "days_off", "satisfied_care": "satisfied_care",
            "satisfied_results": "satisfied_results"}
RECORD = {"patient_id": "record_id", "review_date": "date_review", "physio_referral": "physio_referral",
          "reconsulted": "reconsulted", "n_gp_consultations": "n_gp_consults", "nsaids": "nsaids",
          "antidepressants": "antidepressants", "non_opioid_analgesics": "non_opioid_analgesics",
          "opioids_strong": "opioids_strong", "opioids_weak": "opioids_weak", "neuromodulators": "neuromodulators",
          "n_prescriptions": "n_prescriptions", "sickness_certificate": "sickness_certificate",
          "blood_test": "blood_test", "imaging": "imaging", "secondary_care_referral": "secondary_care_referral"}
OTHER_FILES = {
    "practices": ("sites.csv", {"practice_id": "site_code", "practice_name": "site_name", "list_size": "list_size",
                                "n_gps": "gp_count"}),
    "clinicians": ("staff.csv", {"clinician_id": "staff_id", "profession": "role", "practice_id": "site_code",
                                 "physio_service": "physio_service", "training_days": "training_days",
                                 "mentoring_sessions": "mentoring_sessions"}),
    "clinician_surveys": ("staff_survey.csv", {"clinician_id": "staff_id", "time_point": "survey",
                                               "survey_date": "survey_date",
                                               **{f"pabs_{i}": f"PABS_{i}" for i in range(1, 20)},
                                               "confidence_low": "conf_low", "confidence_medium": "conf_medium",
                                               "confidence_high": "conf_high"}),
    "consultations": ("consultations_log.csv", {"consultation_id": "consult_id", "practice_id": "site_code",
                                                "gp_id": "gp_code", "consultation_date": "consult_date",
                                                "phase": "Cohort", "sbst_completed": "sbst_done",
                                                "patient_id": "record_id"}),
    "physio": ("physio_episodes.csv", {"episode_id": "episode_no", "patient_id": "record_id",
                                       "physio_id": "therapist", "start_date": "first_session",
                                       "n_sessions": "sessions", "approach": "approach"}),
}
DATE_COLUMNS = {"consultation_date", "baseline_date", "return_date", "review_date", "survey_date", "start_date"}
YES_NO_COLUMNS = {"record_review_consent", "manual_occupation", "time_off_work", "leg_pain", "satisfied_care",
                  "satisfied_results", "sbst_completed", *[f"sbst_{i}" for i in range(1, 9)], *RECORD} - {
                      "patient_id", "review_date", "n_gp_consultations", "n_prescriptions"}


def _label(values: pd.Series, labels: dict[Any, str]) -> pd.Series:
    def one(v: Any) -> Any:
        if pd.isna(v):
            return None
        if isinstance(v, float) and v.is_integer() or isinstance(v, str) and v.lstrip("-").isdigit():
            v = int(v)
        return labels[v]
    return values.map(one).astype(object)


def _encode(name: str, values: pd.Series) -> pd.Series:
    """One dictionary column's raw values as the export writes them."""
    if name in DATE_COLUMNS:
        return values.map(lambda v: None if pd.isna(v) else f"{v}T00:00").astype(object)
    if name == "phase":
        return _label(values, PHASE_NAMES)
    if name == "sex":
        return _label(values, {"female": "F", "male": "M"})
    if name == "employed":
        return _label(values, {1: "TRUE", 0: "FALSE"})
    if name == "episode_duration":
        return _label(values, {code: str(i) for i, code in enumerate(DURATIONS, start=1)})
    if name == "invitation_outcome":
        return _label(values, OUTCOMES)
    if name == "exclusion_reason":
        return values.map(lambda v: None if pd.isna(v) else str(v).replace("_", " ").capitalize()).astype(object)
    if name == "sbst_9":
        return _label(values, dict(enumerate(BOTHER)))
    if name == "global_change":
        return _label(values, dict(enumerate(GLOBAL, start=1)))
    if name == "profession":
        return _label(values, {"gp": "GP", "physio": "Physiotherapist"})
    if name == "time_point":  # clinician surveys (follow-ups take theirs from redcap_event_name)
        return _label(values, {"before": "Before training", "after": "After training"})
    if name in YES_NO_COLUMNS:
        return _label(values, YES_NO)
    return values.map(lambda v: None if pd.isna(v) else _number(v)).astype(object)


def _number(v: Any) -> str:
    """A number as an export writes it (``6``, not ``6.0``)."""
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def _rmdq(values: pd.Series, answered: pd.Series) -> pd.Series:
    out = _label(values, {1: "Checked", 0: "Unchecked"})
    return out.where(out.notna() | ~answered, "UNK")


def _questionnaire(df: pd.DataFrame, answered: pd.Series) -> dict[str, pd.Series]:
    out = {}
    for name, export in SHARED.items():
        out[export] = _rmdq(df[name], answered) if name.startswith("rmdq_") else _encode(name, df[name])
    return out


def write_redcap_export(study_dir: str | Path, out_dir: str | Path) -> Path:
    """Write the REDCap-style export of the study in ``study_dir`` (dictionary layout) into ``out_dir``."""
    src = Path(study_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    raw = {p.stem: pd.read_csv(p, dtype=object, keep_default_na=False, na_values=[""]) for p in src.glob("*.csv")}
    for name in ("patients", "followups", "records"):
        raw[name] = pd.read_csv(src / f"{name}.csv", keep_default_na=False, na_values=[""],
                                dtype={"patient_id": str, "practice_id": str, "gp_id": str, "sex": str,
                                       "invitation_outcome": str, "exclusion_reason": str, "episode_duration": str,
                                       **dict.fromkeys(DATE_COLUMNS, str)})
    p, f, r = raw["patients"], raw["followups"], raw["records"]
    blocks = []
    base = {"record_id": p["patient_id"], "redcap_event_name": "Baseline"}
    base.update({export: _encode(name, p[name]) for name, export in PATIENT.items() if name != "patient_id"})
    base.update(_questionnaire(p, p["baseline_date"].notna()))
    blocks.append(pd.DataFrame(base).assign(_order=range(len(p)), _event=0))
    order = pd.Series(range(len(p)), index=p["patient_id"])
    fu = {"record_id": f["patient_id"],
          "redcap_event_name": f["time_point"].map({2: "2 months", 6: "6 months"}).astype(object)}
    fu.update({export: _encode(name, f[name]) for name, export in FOLLOWUP.items()
               if name not in ("patient_id", "time_point")})
    fu.update(_questionnaire(f, pd.Series(True, index=f.index)))
    blocks.append(pd.DataFrame(fu).assign(_order=order[f["patient_id"]].to_numpy(), _event=f["time_point"]))
    rr = {"record_id": r["patient_id"], "redcap_event_name": "Record review"}
    rr.update({export: _encode(name, r[name]) for name, export in RECORD.items() if name != "patient_id"})
    blocks.append(pd.DataFrame(rr).assign(_order=order[r["patient_id"]].to_numpy(), _event=99))
    redcap = pd.concat(blocks, ignore_index=True, sort=False)
    redcap = redcap.sort_values(["_order", "_event"], kind="stable").drop(columns=["_order", "_event"])
    redcap.to_csv(out / REDCAP_FILE, index=False)
    for table, (file, columns) in OTHER_FILES.items():
        df = raw[table]
        pd.DataFrame({export: _encode(name, df[name]) for name, export in columns.items()}).to_csv(out / file,
                                                                                                     index=False)
    return out


def _column(name: str, export: str, table: str) -> Any:
    """The confirmed mapping entry of one column."""
    if name.startswith("rmdq_"):
        return {"from": export, "values": {"Checked": 1, "Unchecked": 0}}
    if name == "sex":
        return {"from": export, "values": {"F": "female", "M": "male"}}
    if name == "employed" or name in YES_NO_COLUMNS:
        return {"from": export, "values": {"TRUE": 1, "FALSE": 0} if name == "employed" else {"Yes": 1, "No": 0}}
    if name == "episode_duration":
        return {"from": export, "values": {str(i): code for i, code in enumerate(DURATIONS, start=1)}}
    if name == "invitation_outcome":
        return {"from": export, "values": {label: code for code, label in OUTCOMES.items()}}
    if name == "exclusion_reason":
        codes = ["died_or_moved", "unable_to_respond", "declined", "no_back_pain", "comorbid_priority",
                 "unable_to_take_part"]
        return {"from": export, "values": {c.replace("_", " ").capitalize(): c for c in codes}}
    if name == "sbst_9":
        return {"from": export, "values": {label: i for i, label in enumerate(BOTHER)}}
    if name == "global_change":
        return {"from": export, "values": {label: i for i, label in enumerate(GLOBAL, start=1)}}
    if name == "profession":
        return {"from": export, "values": {"GP": "gp", "Physiotherapist": "physio"}}
    if name == "time_point" and table == "clinician_surveys":
        return {"from": export, "values": {"Before training": "before", "After training": "after"}}
    if name == "time_point":
        return {"from": export, "values": {"2 months": 2, "6 months": 6}}
    return export


def confirmed_mapping() -> dict[str, Any]:
    """The mapping file of :func:`write_redcap_export`'s export, as a dict (what a user confirms)."""
    patients = {**PATIENT, **SHARED}
    followups = {**FOLLOWUP, **SHARED}
    tables: dict[str, Any] = {
        "patients": {"file": REDCAP_FILE, "rows": {"redcap_event_name": "Baseline"},
                     "columns": {n: _column(n, e, "patients") for n, e in patients.items()}},
        "followups": {"file": REDCAP_FILE, "rows": {"redcap_event_name": ["2 months", "6 months"]},
                      "columns": {n: _column(n, e, "followups") for n, e in followups.items()}},
        "records": {"file": REDCAP_FILE, "rows": {"redcap_event_name": "Record review"},
                    "columns": {n: _column(n, e, "records") for n, e in RECORD.items()}},
    }
    for table, (file, columns) in OTHER_FILES.items():
        tables[table] = {"file": file, "columns": {n: _column(n, e, table) for n, e in columns.items()}}
    return {"version": 1, "date_format": "%Y-%m-%dT%H:%M", "missing": ["UNK"],
            "phases": {1: PHASE_NAMES[1], 3: PHASE_NAMES[3]}, "tables": tables}
