"""A tiny, valid study export for tests (import it as ``from studyfactory import ...``).

``build_study()`` returns one DataFrame per table of the data dictionary: 3 practices,
4 GPs and 2 physiotherapists, clinician surveys before and after training, 12 invited
patients in phases 1 and 3 (10 respondents, 1 non-respondent, 1 excluded), 2- and
6-month follow-ups, record reviews for consenters, physiotherapy episodes and
consultations. Values are codes (numbers), ISO dates and plain ids; tests make them messy
as they need. ``write_study(folder)`` writes it (CSV by default; parquet or xlsx per table).

Deterministic: the questionnaire answers are drawn with ``numpy.random.default_rng(seed)``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["PATIENT_IDS", "RESPONDENT_IDS", "build_study", "write_study"]

PATIENT_IDS = [f"PT{i:03d}" for i in range(1, 13)]
#: invitation outcome by patient: PT004 did not respond, PT010 was excluded
_OUTCOME = {pid: "responded" for pid in PATIENT_IDS} | {"PT004": "non_respondent", "PT010": "excluded"}
RESPONDENT_IDS = [p for p in PATIENT_IDS if _OUTCOME[p] == "responded"]


def _int(df: pd.DataFrame, columns) -> pd.DataFrame:
    return df.astype(dict.fromkeys(columns, "Int64"))


def build_study(seed: int = 0) -> dict[str, pd.DataFrame]:
    """One small valid DataFrame per dictionary table (codes, ISO dates), deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    practices = pd.DataFrame({
        "practice_id": ["P01", "P02", "P03"],
        "practice_name": ["Oak Lane Surgery", "Riverside Practice", "Hill Top Medical Centre"],
        "list_size": [8200, 11500, 6400],
        "n_gps": [5, 7, 4],
    })
    clinicians = pd.DataFrame({
        "clinician_id": ["G01", "G02", "G03", "G04", "T01", "T02"],
        "profession": ["gp", "gp", "gp", "gp", "physio", "physio"],
        "practice_id": ["P01", "P01", "P02", "P03", None, None],
        "physio_service": [None, None, None, None, "East Cheshire", "Central Cheshire"],
        "training_days": [1.0, 1.0, 0.5, 1.0, 6.0, 3.0],
        "mentoring_sessions": [0, 0, 0, 0, 10, 6],
    })
    clinicians = _int(clinicians, ["mentoring_sessions"])
    surveys = pd.DataFrame({
        "clinician_id": ["G01", "G01", "G02", "T01", "T01", "T02"],
        "time_point": ["before", "after", "before", "before", "after", "before"],
        "survey_date": ["2008-01-10", "2008-03-12", "2008-01-11", "2008-01-15", "2008-04-02", "2008-01-16"],
    })
    for i in range(1, 20):
        surveys[f"pabs_{i}"] = rng.integers(1, 7, len(surveys))
    for level in ("low", "medium", "high"):
        surveys[f"confidence_{level}"] = rng.integers(0, 11, len(surveys))
    surveys = _int(surveys, [c for c in surveys if c.startswith(("pabs_", "confidence_"))])

    n = len(PATIENT_IDS)
    outcome = [_OUTCOME[p] for p in PATIENT_IDS]
    responded = np.array([o == "responded" for o in outcome])
    phase = [1] * 6 + [3] * 6
    practice = ["P01", "P01", "P02", "P03", "P02", "P01", "P02", "P03", "P01", "P02", "P03", "P01"]
    gp_of = {"P01": "G01", "P02": "G03", "P03": "G04"}
    consult_dates = pd.to_datetime(["2007-03-05", "2007-03-19", "2007-04-02", "2007-04-16", "2007-05-08",
                                    "2007-06-11", "2008-09-01", "2008-09-22", "2008-10-13", "2008-11-03",
                                    "2009-01-12", "2009-02-09"])
    patients = pd.DataFrame({
        "patient_id": PATIENT_IDS,
        "practice_id": practice,
        "gp_id": [gp_of[p] if i != 5 else "G02" for i, p in enumerate(practice)],
        "phase": phase,
        "consultation_date": consult_dates.strftime("%Y-%m-%d"),
        "invitation_outcome": outcome,
        "exclusion_reason": [("declined" if o == "excluded" else None) for o in outcome],
        "record_review_consent": np.where(responded, [1, 1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 1], np.nan),
        "age": [34, 58, 47, 71, 29, 63, 52, 45, 39, 80, 56, 61],
        "sex": ["female", "male", "female", "female", "male", "female", "male", "female", "female", "male",
                "female", "male"],
        "baseline_date": np.where(responded, (consult_dates + pd.Timedelta(days=12)).strftime("%Y-%m-%d"), None),
    })
    employed = np.array([1, 1, 0, 0, 1, 0, 1, 1, 1, 0, 1, 0])
    patients["employed"] = employed
    patients["manual_occupation"] = [1, 0, 0, 1, 1, 0, 1, 0, 0, 1, 1, 0]
    patients["time_off_work"] = np.where(employed == 1, [1, 0, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0], np.nan)
    patients["episode_duration"] = ["lt_1m", "1_3m", "3_6m", "6m_3y", "gt_3y", "lt_1m", "1_3m", "3_6m",
                                    "6m_3y", "gt_3y", "lt_1m", "1_3m"]
    patients["leg_pain"] = [1, 0, 1, 1, 0, 1, 1, 0, 1, 1, 1, 0]
    for i in range(1, 9):
        patients[f"sbst_{i}"] = rng.integers(0, 2, n)
    patients["sbst_9"] = rng.integers(0, 5, n)
    for i in range(1, 25):
        patients[f"rmdq_{i}"] = rng.integers(0, 2, n)
    patients["pain_nrs"] = rng.integers(0, 11, n)
    for dim in ("mo", "sc", "ua", "pd", "ad"):
        patients[f"eq5d_{dim}"] = rng.integers(1, 4, n)
    patients["hads_anxiety"] = rng.integers(0, 22, n)
    patients["hads_depression"] = rng.integers(0, 22, n)
    patients["tsk"] = rng.integers(17, 69, n)
    patients["csq_cat"] = rng.integers(0, 37, n)
    patients["pseq"] = rng.integers(0, 61, n)
    questionnaire = [c for c in patients.columns if c not in
                     ("patient_id", "practice_id", "gp_id", "phase", "consultation_date", "invitation_outcome",
                      "exclusion_reason", "age", "sex", "baseline_date", "record_review_consent",
                      "episode_duration")]
    patients[questionnaire] = patients[questionnaire].astype("float64").where(pd.Series(responded), axis=0)
    patients = _int(patients, ["phase", "record_review_consent", "age", *questionnaire])
    patients["episode_duration"] = patients["episode_duration"].astype("object").where(responded, None)

    rows = []
    for pid, date in zip(PATIENT_IDS, consult_dates, strict=True):
        if _OUTCOME[pid] != "responded":
            continue
        for months in (2, 6):
            if (pid, months) in {("PT003", 6), ("PT008", 2)}:
                continue  # lost to follow-up
            rows.append({"patient_id": pid, "time_point": months,
                         "return_date": (date + pd.Timedelta(days=30 * months + 9)).strftime("%Y-%m-%d")})
    followups = pd.DataFrame(rows)
    m = len(followups)
    for i in range(1, 9):
        followups[f"sbst_{i}"] = rng.integers(0, 2, m)
    followups["sbst_9"] = rng.integers(0, 5, m)
    for i in range(1, 25):
        followups[f"rmdq_{i}"] = rng.integers(0, 2, m)
    followups["pain_nrs"] = rng.integers(0, 11, m)
    for dim in ("mo", "sc", "ua", "pd", "ad"):
        followups[f"eq5d_{dim}"] = rng.integers(1, 4, m)
    followups["hads_anxiety"] = rng.integers(0, 22, m)
    followups["hads_depression"] = rng.integers(0, 22, m)
    followups["tsk"] = rng.integers(17, 69, m)
    followups["csq_cat"] = rng.integers(0, 37, m)
    followups["pseq"] = rng.integers(0, 61, m)
    followups["global_change"] = rng.integers(1, 7, m)
    emp = followups["patient_id"].map(dict(zip(PATIENT_IDS, employed, strict=True)))
    six = followups["time_point"].eq(6)
    followups["days_off_work"] = pd.Series(rng.integers(0, 30, m)).where(six & emp.eq(1))
    followups["satisfied_care"] = pd.Series(rng.integers(0, 2, m)).where(six)
    followups["satisfied_results"] = pd.Series(rng.integers(0, 2, m)).where(six)
    followups = _int(followups, [c for c in followups if c not in ("patient_id", "return_date")])

    consenters = patients.loc[patients["record_review_consent"].eq(1).fillna(False), ["patient_id", "consultation_date"]]
    k = len(consenters)
    records = pd.DataFrame({
        "patient_id": consenters["patient_id"].to_numpy(),
        "review_date": (pd.to_datetime(consenters["consultation_date"]) + pd.Timedelta(days=183)).dt.strftime(
            "%Y-%m-%d").to_numpy(),
    })
    for c in ("physio_referral", "reconsulted"):
        records[c] = rng.integers(0, 2, k)
    records["n_gp_consultations"] = rng.integers(0, 6, k)
    for c in ("nsaids", "antidepressants", "non_opioid_analgesics", "opioids_strong", "opioids_weak",
              "neuromodulators"):
        records[c] = rng.integers(0, 2, k)
    records["n_prescriptions"] = rng.integers(0, 8, k)
    for c in ("sickness_certificate", "blood_test", "imaging", "secondary_care_referral"):
        records[c] = rng.integers(0, 2, k)
    records = _int(records, [c for c in records if c not in ("patient_id", "review_date")])

    physio = pd.DataFrame({
        "episode_id": ["E001", "E002", "E003", "E004"],
        "patient_id": ["PT002", "PT006", "PT007", "PT011"],
        "physio_id": ["T01", "T02", "T01", "T01"],
        "start_date": ["2007-04-20", "2007-07-30", "2008-10-06", "2009-02-16"],
        "n_sessions": [4, 6, 3, 8],
        "approach": ["manual_exercise", "advice_only", "psych_informed", "manual_exercise"],
    })
    physio = _int(physio, ["n_sessions"])

    consultations = pd.DataFrame({
        "consultation_id": [f"C{i:03d}" for i in range(1, n + 3)],
        "practice_id": practice + ["P01", "P03"],
        "gp_id": list(patients["gp_id"]) + ["G02", None],
        "consultation_date": list(patients["consultation_date"]) + ["2008-09-15", "2009-01-20"],
        "phase": phase + [3, 3],
        "sbst_completed": [0] * 6 + [1] * 6 + [0, 1],
        "patient_id": PATIENT_IDS + [None, None],
    })
    consultations = _int(consultations, ["phase", "sbst_completed"])
    return {
        "practices": practices,
        "clinicians": clinicians,
        "clinician_surveys": surveys,
        "consultations": consultations,
        "patients": patients,
        "followups": followups,
        "records": records,
        "physio": physio,
    }


def write_study(folder: str | Path, tables: dict[str, pd.DataFrame] | None = None, *,
                formats: str | dict[str, str] = "csv", truth: dict | None = None) -> Path:
    """Write ``tables`` (default: ``build_study()``) into ``folder``, one file per table.

    ``formats`` is ``"csv"``, ``"parquet"`` or ``"xlsx"`` for every table, or a dict
    table -> format (tables not named are CSV). ``truth`` is written to ``truth.json``.
    Returns the folder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tables = build_study() if tables is None else tables
    for name, df in tables.items():
        fmt = formats if isinstance(formats, str) else formats.get(name, "csv")
        target = folder / f"{name}.{fmt}"
        if fmt == "csv":
            df.to_csv(target, index=False)
        elif fmt == "parquet":
            df.to_parquet(target, index=False)
        elif fmt == "xlsx":
            df.to_excel(target, index=False)
        else:
            raise ValueError(f"unknown format {fmt!r}")
    if truth is not None:
        (folder / "truth.json").write_text(json.dumps(truth), encoding="utf-8")
    return folder
