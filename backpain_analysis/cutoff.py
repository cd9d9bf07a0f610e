"""Data cut-off: the study as it stood on a given day (interim reports and feedback rounds).

A cut-off date ``until`` keeps only what had happened by the end of that day: index
consultations, baseline questionnaires, follow-up questionnaires, record reviews, physiotherapy
episodes and clinician surveys dated on or before it. Patients whose follow-up window is still
open on the cut-off are *not yet due*, not lost to follow-up.

The cut-off is applied to the raw tables of a loaded study, before cleaning, so an interim
analysis is exactly the analysis of an export taken on the cut-off day (the test
``tests/test_cutoff.py`` checks this against CSV files truncated by hand).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from .errors import BackpainError

__all__ = [
    "CUTOFF_DATE_COLUMNS",
    "UNTIL_ENV",
    "CutoffError",
    "as_iso",
    "describe_until",
    "due_for_followup",
    "followup_due",
    "parse_until",
    "truncate_study",
    "truncate_tables",
    "until_from_environment",
]

#: Environment variable through which :func:`backpain_analysis.report.run_report` passes a cut-off to
#: the notebook kernels (read by :func:`backpain_analysis.dataset.load_analysis_dataset`).
UNTIL_ENV = "BACKPAIN_DATA_UNTIL"

#: The date column of each table that says when its row happened. Rows dated after the cut-off
#: are dropped (patients: by the index consultation; a reply after the cut-off is "no reply yet").
CUTOFF_DATE_COLUMNS: dict[str, str] = {
    "consultations": "consultation_date",
    "patients": "consultation_date",
    "followups": "return_date",
    "records": "review_date",
    "physio": "start_date",
    "clinician_surveys": "survey_date",
    "withdrawals": "recorded_date",
}

#: Patient columns known at invitation (kept for a patient whose reply came after the cut-off).
_INVITATION_COLUMNS = ("patient_id", "practice_id", "gp_id", "phase", "consultation_date", "age", "sex")

#: Default 6-month (and 2-month) window: nominal day and half-width (cleaning.DEFAULT_FOLLOWUP_WINDOW_DAYS).
_DEFAULT_WINDOWS = {2: (61.0, 28.0), 6: (183.0, 56.0)}


class CutoffError(BackpainError):
    """An invalid cut-off date."""


def parse_until(until: Any) -> pd.Timestamp | None:
    """The cut-off as a day (``Timestamp`` at midnight), or None.

    Parameters
    ----------
    until : str, date, Timestamp or None
        ``YYYY-MM-DD`` text, a date or a Timestamp; ``None`` or ``""``: no cut-off.

    Returns
    -------
    Timestamp or None

    Raises
    ------
    CutoffError
        Not a date.

    Examples
    --------
    >>> parse_until("2009-07-01")
    Timestamp('2009-07-01 00:00:00')
    >>> parse_until(None) is None
    True
    """
    if until is None or (isinstance(until, str) and not until.strip()):
        return None
    try:
        day = pd.Timestamp(_dt.date.fromisoformat(until.strip()[:10]) if isinstance(until, str) else until)
    except (TypeError, ValueError) as exc:
        raise CutoffError(f"the cut-off must be a date YYYY-MM-DD, not {until!r}") from exc
    if pd.isna(day):
        raise CutoffError(f"the cut-off must be a date YYYY-MM-DD, not {until!r}")
    return day.normalize()


def until_from_environment() -> pd.Timestamp | None:
    """The cut-off a report run passes to its notebooks (environment variable :data:`UNTIL_ENV`).

    Returns
    -------
    Timestamp or None
        None when the variable is unset or empty.
    """
    return parse_until(os.environ.get(UNTIL_ENV))


def _dates(values: pd.Series) -> np.ndarray:
    """Raw date text -> datetime64 (ISO first, then day first); unreadable -> NaT."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return values.to_numpy(dtype="datetime64[ns]")
    text = values.astype("string").str.strip()
    iso = pd.to_datetime(text, format="ISO8601", errors="coerce")
    rest = iso.isna() & text.notna() & (text != "")
    if rest.any():
        iso[rest] = pd.to_datetime(text[rest], dayfirst=True, errors="coerce", format="mixed")
    return iso.to_numpy(dtype="datetime64[ns]")


def truncate_tables(tables: Mapping[str, pd.DataFrame], until: Any) -> dict[str, pd.DataFrame]:
    """The raw study tables as they stood at the end of the cut-off day.

    Parameters
    ----------
    tables : mapping of str to DataFrame
        Raw tables (``Study.tables``), not modified.
    until : str, date or Timestamp
        The cut-off day (inclusive).

    Returns
    -------
    dict of str to DataFrame
        The same tables with these rows removed: consultations and patients whose index
        ``consultation_date`` is after the cut-off; follow-ups returned (``return_date``),
        record reviews (``review_date``), physiotherapy episodes (``start_date``) and clinician
        surveys (``survey_date``) after it. A patient who responded after the cut-off is kept
        as ``non_respondent`` (no reply yet) with only the invitation columns (``patient_id``,
        ``practice_id``, ``gp_id``, ``phase``, ``consultation_date``, ``age``, ``sex``) filled.
        Other tables (practices, clinicians) are unchanged. Row order is kept.

    Notes
    -----
    A date that cannot be read keeps its row (cleaning then reports it). Exclusions at
    invitation carry no date and stay with their consultation. Dates are read ISO 8601 first,
    then day first, as cleaning does.

    Examples
    --------
    >>> t = {"followups": pd.DataFrame({"patient_id": ["A", "B"], "return_date": ["2009-01-31", "2009-02-01"]})}
    >>> truncate_tables(t, "2009-01-31")["followups"]["patient_id"].tolist()
    ['A']
    """
    day = parse_until(until)
    if day is None:
        raise CutoffError("truncate_tables needs a cut-off date")
    limit = np.datetime64(day + pd.Timedelta(days=1) - pd.Timedelta(1, "ns"))
    out: dict[str, pd.DataFrame] = {}
    for name, raw in tables.items():
        column = CUTOFF_DATE_COLUMNS.get(name)
        if column is None or column not in raw.columns:
            out[name] = raw
            continue
        dates = _dates(raw[column])
        keep = np.isnat(dates) | (dates <= limit)
        table = raw.loc[keep]
        if name == "patients" and "baseline_date" in table.columns and "invitation_outcome" in table.columns:
            replied = _dates(table["baseline_date"])
            pending = ~np.isnat(replied) & (replied > limit)
            if pending.any():
                table = table.copy()
                blank = [c for c in table.columns if c not in _INVITATION_COLUMNS]
                for c in blank:
                    table[c] = table[c].astype(object)
                table.loc[pending, blank] = np.nan
                table.loc[pending, "invitation_outcome"] = "non_respondent"
                table = table.astype({c: raw[c].dtype for c in blank if c != "invitation_outcome"
                                      and pd.api.types.is_string_dtype(raw[c].dtype)}, errors="ignore")
        out[name] = table.reset_index(drop=True)
    return out


def truncate_study(study: Any, until: Any) -> Any:
    """A loaded study as it stood at the end of the cut-off day (see :func:`truncate_tables`).

    Parameters
    ----------
    study : Study
        From :func:`backpain_analysis.load_study` (anything with a ``tables`` dict).
    until : str, date or Timestamp
        The cut-off day (inclusive).

    Returns
    -------
    Study
        A copy with truncated ``tables`` and a note saying so in ``notes`` (when it has one).

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> s = SimpleNamespace(tables={"practices": pd.DataFrame({"practice_id": ["P1"]})})
    >>> truncate_study(s, "2009-01-01").tables["practices"].shape
    (1, 1)
    """
    tables = truncate_tables(study.tables, until)
    day = parse_until(until)
    note = f"data cut-off {day.date()}: rows dated after it are not used"
    if dataclasses.is_dataclass(study) and not isinstance(study, type):
        fields = {f.name for f in dataclasses.fields(study)}
        changes: dict[str, Any] = {"tables": tables}
        if "notes" in fields:
            changes["notes"] = [*getattr(study, "notes", []), note]
        return dataclasses.replace(study, **changes)
    copy = type(study).__new__(type(study))
    copy.__dict__.update(study.__dict__)
    copy.tables = tables
    return copy


def followup_due(reference_date: pd.Series, until: Any, months: int = 6, *,
                 windows: Mapping[int, tuple[float, float]] | None = None) -> np.ndarray:
    """Whether a follow-up is due by the cut-off: its window had closed by the end of that day.

    Parameters
    ----------
    reference_date : Series of datetime64
        The date follow-up is counted from (baseline questionnaire, else index consultation).
    until : str, date, Timestamp or None
        The cut-off; None: every follow-up is due (1.0).
    months : int
        2 or 6.
    windows : mapping, optional
        Time point -> (nominal day, half-width in days); default 2 months 61 +/- 28 days,
        6 months 183 +/- 56 days (as :func:`backpain_analysis.clean_study`).

    Returns
    -------
    ndarray of float
        1.0 when ``reference_date + nominal + half-width <= until`` (the window has closed),
        0.0 when it is still open ("not yet due"), NaN without a reference date.

    Examples
    --------
    >>> ref = pd.Series(pd.to_datetime(["2009-01-01", "2009-06-01"]))
    >>> followup_due(ref, "2009-09-01").tolist()
    [1.0, 0.0]
    """
    ref = pd.to_datetime(reference_date).to_numpy(dtype="datetime64[ns]")
    day = parse_until(until)
    if day is None:
        return np.where(np.isnat(ref), np.nan, 1.0)
    nominal, half = dict(windows or _DEFAULT_WINDOWS)[months]
    closes = ref + np.timedelta64(int(round((nominal + half) * 86400)), "s")
    return np.where(np.isnat(ref), np.nan, (closes <= np.datetime64(day)).astype("float64"))


def due_for_followup(dataset: pd.DataFrame, months: int = 6) -> pd.DataFrame:
    """The analysis dataset without the patients whose follow-up is not yet due at the cut-off.

    Parameters
    ----------
    dataset : DataFrame
        :func:`backpain_analysis.dataset.load_analysis_dataset` output. With a cut-off it has
        ``followup_<months>m_due`` (1 due, 0 not yet due); without one it is returned unchanged.
    months : int
        2 or 6.

    Returns
    -------
    DataFrame
        The rows with ``followup_<months>m_due == 1`` (index reset), or ``dataset`` itself.

    Notes
    -----
    An interim report's outcome and economic analyses use the patients who were due: one whose
    window was still open is neither followed up nor lost, so imputing the outcome as missing
    at random would count the not-yet-due as non-responders.

    Examples
    --------
    >>> d = pd.DataFrame({"patient_id": ["a", "b"], "followup_6m_due": [1.0, 0.0]})
    >>> due_for_followup(d)["patient_id"].tolist()
    ['a']
    >>> due_for_followup(d.drop(columns="followup_6m_due")).shape[0]
    2
    """
    column = f"followup_{months}m_due"
    if column not in dataset.columns:
        return dataset
    return dataset[dataset[column] == 1].reset_index(drop=True)


def describe_until(until: Any) -> str:
    """Heading text for a cut-off: ``"data up to 2009-07-01"``, or ``"all data"`` without one.

    Examples
    --------
    >>> describe_until("2009-07-01")
    'data up to 2009-07-01'
    """
    day = parse_until(until)
    return "all data" if day is None else f"data up to {day.date().isoformat()}"


def as_iso(until: Any) -> str | None:
    """The cut-off as ``YYYY-MM-DD`` text, or None.

    Examples
    --------
    >>> as_iso(_dt.date(2009, 7, 1))
    '2009-07-01'
    """
    day = parse_until(until)
    return None if day is None else day.date().isoformat()
