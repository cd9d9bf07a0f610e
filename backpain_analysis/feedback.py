"""Feedback rounds: every practice's (and optionally every GP's) feedback, for every round at once.

A *round* is a data cut-off date (:mod:`backpain_analysis.cutoff`). For each round the feedback
shows, for one practice (or GP) beside all practices, what had happened in the stratified care
phase (phase 3) up to the round's date:

- questionnaire uptake: consultations with a completed STarT Back questionnaire, against the
  target line;
- risk mix: respondents at low, medium and high risk;
- matched referral: patients (consenting to record review, reviewed by the round) whose
  physiotherapy referral matched their risk group;
- 6-month outcomes, once enough patients have returned their 6-month questionnaire: the share
  whose disability score (RMDQ) fell by at least 30% of its starting value, and the average fall
  in points.

Every table is computed once for all units and rounds (:func:`round_counts`, grouped counts on
one cleaned study), small counts are suppressed once, consistently across the GP, practice and
all-practice views (:func:`suppress_round_counts`), and the pages are rendered from one Jinja2
template (:func:`render_unit_page`), each showing the round beside the earlier ones. This
replaces one notebook execution per practice (kernel start, imports and data load each time).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._version import __version__
from .cutoff import as_iso, parse_until
from .errors import BackpainError
from .outputs import atomic_write
from .safe_text import html_text

__all__ = [
    "MEASURES",
    "FeedbackError",
    "FeedbackRun",
    "FeedbackStudy",
    "prepare_feedback_study",
    "render_unit_page",
    "round_counts",
    "round_dates",
    "run_feedback",
    "suppress_round_counts",
]

#: measure -> (reader's wording, unit of the denominator). Wording is exact: the 30% RMDQ criterion
#: is "disability score fell by at least 30%", not "much improved" (a global-change category).
MEASURES: dict[str, tuple[str, str]] = {
    "uptake": ("Consultations with a completed screening questionnaire", "consultations"),
    "risk_low": ("Patients at low risk", "patients screened"),
    "risk_medium": ("Patients at medium risk", "patients screened"),
    "risk_high": ("Patients at high risk", "patients screened"),
    "matched_referral": ("Physiotherapy referral matched to the risk group (low risk not referred; "
                         "medium or high risk referred)", "patients with a record review"),
    "rmdq_30pct_6m": ("Disability score (RMDQ) at least 30% lower at 6 months than at the start",
                      "patients followed up at 6 months"),
    "rmdq_change_6m": ("Average fall in disability score (RMDQ points) at 6 months",
                       "patients followed up at 6 months"),
}
_RISK = ("low", "medium", "high")
COUNT_COLUMNS = ("n", "events")


class FeedbackError(BackpainError):
    """Feedback rounds that cannot be made: no rounds, an unknown unit, or a bad schedule."""


@dataclass
class FeedbackStudy:
    """One cleaned study with the dates the rounds need (built once by :func:`prepare_feedback_study`).

    Attributes
    ----------
    consultations : DataFrame
        ``practice_id``, ``gp_id``, ``consultation_date``, ``completed`` (0/1), phase 3 only.
    patients : DataFrame
        Analysed phase 3 patients: ``practice_id``, ``gp_id``, ``baseline_date``,
        ``risk_group``, ``review_date`` (record review used, else NaT), ``matched_referral``,
        ``return_6m`` (6-month questionnaire used, else NaT), ``rmdq_mcid_6m``, ``rmdq_change_6m``.
    practices : DataFrame
        ``practice_id``, ``practice_name`` (export text: escape it).
    gps : DataFrame
        ``gp_id``, ``practice_id`` of every GP.
    first_date, last_date : Timestamp
        First phase 3 consultation and last dated event of the export.
    """

    consultations: pd.DataFrame
    patients: pd.DataFrame
    practices: pd.DataFrame
    gps: pd.DataFrame
    first_date: pd.Timestamp
    last_date: pd.Timestamp
    phase1: dict[str, Any] = field(default_factory=dict)


def prepare_feedback_study(data_dir: str | Path, *, until: Any = None) -> FeedbackStudy:
    """Load and clean a study once and keep what the feedback rounds need.

    Parameters
    ----------
    data_dir : str or Path
        Study export folder.
    until : str or date, optional
        Data cut-off of the whole run (rows dated after it are never used).

    Returns
    -------
    FeedbackStudy

    Notes
    -----
    A record review counts from its ``review_date``, a 6-month follow-up from its
    ``return_date`` and a risk group from the baseline questionnaire date (else the index
    consultation), so a round at date ``d`` sees what an export taken on ``d`` would show
    (:func:`backpain_analysis.dataset.load_analysis_dataset` with ``until=d``; checked in
    ``tests/test_feedback.py``).
    """
    from .dataset import _used, load_analysis_dataset

    clean, data = load_analysis_dataset(data_dir, until=until)
    c = clean.tables["consultations"]
    phase = pd.to_numeric(c["phase"], errors="coerce")
    c = c[phase == 3]
    consultations = pd.DataFrame({
        "practice_id": c["practice_id"].astype(str).to_numpy(),
        "gp_id": c["gp_id"].astype(str).to_numpy(),
        "consultation_date": pd.to_datetime(c["consultation_date"]).to_numpy(),
        "completed": pd.to_numeric(c["sbst_completed"], errors="coerce").fillna(0).to_numpy(dtype=float),
    })
    p = clean.tables["patients"].drop_duplicates("patient_id").set_index("patient_id")
    d = data[data["phase"] == 3]
    ids = d["patient_id"].to_numpy()
    baseline = p["baseline_date"].fillna(p["consultation_date"]).reindex(ids).to_numpy()
    rec = _used(clean, "records")
    review = rec.groupby(rec["patient_id"].astype(str))["review_date"].min().reindex(ids)
    fu = _used(clean, "followups")
    fu = fu[pd.to_numeric(fu["time_point"], errors="coerce") == 6]
    ret = fu.groupby(fu["patient_id"].astype(str))["return_date"].min().reindex(ids)
    patients = pd.DataFrame({
        "practice_id": d["practice_id"].to_numpy(), "gp_id": d["gp_id"].to_numpy(),
        "baseline_date": baseline, "risk_group": d["risk_group"].astype(object).to_numpy(),
        "review_date": np.where(d["physio_referral"].notna().to_numpy(), review.to_numpy(), np.datetime64("NaT")),
        "matched_referral": d["matched_referral"].to_numpy(),
        "return_6m": np.where(d["followed_up_6m"].to_numpy() == 1, ret.to_numpy(), np.datetime64("NaT")),
        "rmdq_mcid_6m": d["rmdq_mcid_6m"].to_numpy(), "rmdq_change_6m": d["rmdq_change_6m"].to_numpy(),
    })
    for col in ("baseline_date", "review_date", "return_6m"):
        patients[col] = pd.to_datetime(patients[col])
    practices = clean.tables["practices"][["practice_id", "practice_name"]].astype(str).reset_index(drop=True)
    clin = clean.tables["clinicians"]
    gps = clin.loc[clin["profession"].astype(str) == "gp", ["clinician_id", "practice_id"]].astype(str)
    gps = gps.rename(columns={"clinician_id": "gp_id"}).reset_index(drop=True)
    dates = [consultations["consultation_date"].max(), patients["review_date"].max(), patients["return_6m"].max()]
    last = max(x for x in dates if pd.notna(x)) if any(pd.notna(x) for x in dates) else pd.NaT
    if consultations.empty:
        raise FeedbackError("the study has no phase 3 (stratified care) consultations: no feedback to give")
    return FeedbackStudy(consultations, patients, practices, gps,
                         pd.Timestamp(consultations["consultation_date"].min()).normalize(),
                         pd.Timestamp(last).normalize() if pd.notna(last) else pd.NaT)


def round_dates(schedule: str | Sequence[Any], first: Any, last: Any) -> list[pd.Timestamp]:
    """The cut-off dates of the feedback rounds.

    Parameters
    ----------
    schedule : "quarterly", "monthly" or sequence of dates
        ``quarterly``: the last day of every calendar quarter from the one holding ``first``
        to the one before ``last``, then ``last``; ``monthly`` likewise by month. A list of
        ``YYYY-MM-DD`` dates is used as given (sorted, duplicates dropped).
    first, last : date
        First phase 3 consultation and last date of the export.

    Returns
    -------
    list of Timestamp

    Raises
    ------
    FeedbackError
        An unknown schedule, or no round.

    Examples
    --------
    >>> [d.date().isoformat() for d in round_dates("quarterly", "2009-01-01", "2009-08-15")]
    ['2009-03-31', '2009-06-30', '2009-08-15']
    """
    if isinstance(schedule, str) and schedule in ("quarterly", "monthly"):
        lo, hi = parse_until(first), parse_until(last)
        if lo is None or hi is None:
            raise FeedbackError("round dates: the study has no dates to schedule rounds from")
        freq = "QE" if schedule == "quarterly" else "ME"
        ends = [d for d in pd.date_range(lo, hi, freq=freq) if d < hi]
        days = [*ends, hi]
    elif isinstance(schedule, str):
        days = [parse_until(x) for x in schedule.replace(",", " ").split()]
        if not all(days) or not days:
            raise FeedbackError(f"rounds must be 'quarterly', 'monthly' or dates YYYY-MM-DD, not {schedule!r}")
    else:
        days = [parse_until(x) for x in schedule]
    out = sorted({d for d in days if d is not None})
    if not out:
        raise FeedbackError(f"no feedback round in {schedule!r}")
    return out


def _grouped(frame: pd.DataFrame, keys: list[str], event: str | None, value: str | None = None) -> pd.DataFrame:
    g = frame.groupby(keys, observed=True, sort=False)
    out = g.size().rename("n").to_frame()
    out["events"] = g[event].sum() if event else np.nan
    out["mean"] = g[value].mean() if value else np.nan
    return out.reset_index()


def round_counts(study: FeedbackStudy, rounds: Sequence[Any], *, per_gp: bool = False) -> pd.DataFrame:
    """Counts behind every feedback table, for every round and unit, computed once.

    Parameters
    ----------
    study : FeedbackStudy
    rounds : sequence of dates
        Round cut-off dates (inclusive).
    per_gp : bool
        Also count per GP.

    Returns
    -------
    DataFrame
        One row per round, unit and measure: ``round`` (``YYYY-MM-DD``), ``level``
        (``all``, ``practice``, ``gp``), ``unit`` (``all``, a practice_id or a gp_id),
        ``practice_id`` (the practice of a GP or practice; ``all`` for all practices),
        ``measure`` (a key of :data:`MEASURES`), ``n`` (denominator: consultations or
        patients), ``events`` (numerator; NaN for a mean), ``mean`` (``rmdq_change_6m`` only;
        else NaN) and ``estimate`` (events / n, 0-1, or the mean). Everything is cumulative
        over phase 3 up to the round's date.

    Notes
    -----
    Vectorised: each round is a date mask and each measure one ``groupby`` per level. Practices
    (and GPs) with no row in a round appear with ``n`` 0. A test checks each round against
    :func:`backpain_analysis.dataset.load_analysis_dataset` with the round's cut-off.
    """
    p, c = study.patients, study.consultations
    parts = []
    for day in (parse_until(r) for r in rounds):
        frames = {
            "uptake": (c[c["consultation_date"] <= day], "completed", None),
            "matched_referral": (p[(p["review_date"] <= day) & p["matched_referral"].notna()], "matched_referral",
                                 None),
            "rmdq_30pct_6m": (p[(p["return_6m"] <= day) & p["rmdq_mcid_6m"].notna()], "rmdq_mcid_6m", None),
            "rmdq_change_6m": (p[(p["return_6m"] <= day) & p["rmdq_change_6m"].notna()], None, "rmdq_change_6m"),
        }
        screened = p[(p["baseline_date"] <= day) & p["risk_group"].notna()]
        for g in _RISK:
            frames[f"risk_{g}"] = (screened.assign(_in=(screened["risk_group"] == g).astype(float)), "_in", None)
        for measure, (frame, event, value) in frames.items():
            levels = [("all", None), ("practice", "practice_id")] + ([("gp", "gp_id")] if per_gp else [])
            for level, key in levels:
                if key is None:
                    row = _grouped(frame.assign(_all="all"), ["_all"], event, value).rename(columns={"_all": "unit"})
                    row["practice_id"] = "all"
                elif level == "practice":
                    row = _grouped(frame, ["practice_id"], event, value)
                    row["unit"] = row["practice_id"]
                else:
                    row = _grouped(frame, ["practice_id", "gp_id"], event, value).rename(columns={"gp_id": "unit"})
                row["level"], row["measure"], row["round"] = level, measure, day.date().isoformat()
                parts.append(row)
    counts = pd.concat(parts, ignore_index=True)
    counts = _with_empty_units(counts, study, [parse_until(r).date().isoformat() for r in rounds], per_gp)
    is_mean = counts["measure"] == "rmdq_change_6m"
    counts["events"] = counts["events"].where(~is_mean)
    with np.errstate(invalid="ignore", divide="ignore"):
        counts["estimate"] = np.where(is_mean, counts["mean"], counts["events"] / counts["n"].where(counts["n"] > 0))
    columns = ["round", "level", "unit", "practice_id", "measure", "n", "events", "mean", "estimate"]
    return counts[columns].sort_values(["round", "level", "unit", "measure"], ignore_index=True)


def _with_empty_units(counts: pd.DataFrame, study: FeedbackStudy, rounds: list[str], per_gp: bool) -> pd.DataFrame:
    """Add n = 0 rows for units without data in a round (so every page has every round)."""
    units = [("all", "all", "all")] + [("practice", u, u) for u in study.practices["practice_id"]]
    if per_gp:
        units += [("gp", g, pr) for g, pr in zip(study.gps["gp_id"], study.gps["practice_id"], strict=True)]
    grid = pd.DataFrame([(r, lv, u, pr, m) for r in rounds for lv, u, pr in units for m in MEASURES],
                        columns=["round", "level", "unit", "practice_id", "measure"])
    merged = grid.merge(counts, on=["round", "level", "unit", "practice_id", "measure"], how="outer")
    merged["n"] = merged["n"].fillna(0).astype("int64")
    merged["events"] = merged["events"].fillna(0.0)
    return merged


def suppress_round_counts(counts: pd.DataFrame, *, threshold: int = 5) -> pd.DataFrame:
    """Hide small counts consistently across the GP, practice and all-practice views.

    Parameters
    ----------
    counts : DataFrame
        From :func:`round_counts`.
    threshold : int
        Counts from 1 to ``threshold - 1`` are hidden.

    Returns
    -------
    DataFrame
        ``counts`` with ``n_shown``, ``events_shown``, ``estimate_shown`` (NaN where hidden) and
        ``hidden`` (bool: the estimate is hidden).

    Notes
    -----
    Primary suppression: ``n`` from 1 to ``threshold - 1``; ``events`` or its complement
    ``n - events`` from 1 to ``threshold - 1`` (the percentage would reveal either); a mean of
    fewer than ``threshold`` patients. Secondary suppression (ONS, "Statistical disclosure
    control"; NHS Digital HES disclosure control), repeated until nothing changes: (1) among the
    GPs of one practice, and among the practices of the study, for one round and measure, when
    one unit's ``n`` (or ``events``) alone is hidden, or the hidden ones add up to 1 to
    ``threshold - 1``, while the parent total is shown, more siblings are hidden (smallest
    non-zero first), else the parent: a hidden count cannot be recovered, nor a small sum of
    hidden counts, by subtracting the shown ones from the practice (or all-practice) total; (2) in a risk mix (the
    three risk groups partition ``n``), when exactly one group's count is hidden, the smallest
    other is hidden too.

    Examples
    --------
    >>> c = pd.DataFrame({"round": "r", "level": ["practice", "practice", "all"], "unit": ["A", "B", "all"],
    ...                   "practice_id": ["A", "B", "all"], "measure": "uptake", "n": [3, 20, 23],
    ...                   "events": [1.0, 10.0, 11.0], "mean": np.nan, "estimate": [1 / 3, 0.5, 11 / 23]})
    >>> suppress_round_counts(c)["n_shown"].tolist()
    [nan, nan, 23.0]
    """
    k = int(threshold)
    out = counts.reset_index(drop=True)
    small = lambda x: (x >= 1) & (x < k)  # noqa: E731
    is_mean = out["measure"] == "rmdq_change_6m"
    hide_n = np.array(small(out["n"]).to_numpy(), dtype=bool)
    ev = out["events"].fillna(0)
    hide_e = np.array((small(ev) | small(out["n"] - ev)).to_numpy(), dtype=bool) | hide_n
    hide_e[is_mean.to_numpy()] = hide_n[is_mean.to_numpy()]
    for _ in range(10):
        before = (hide_n.copy(), hide_e.copy())
        for col, hide in (("n", hide_n), ("events", hide_e)):
            _secondary(out, hide, col, ["round", "measure", "practice_id"], out["level"] == "gp", k)
            _secondary(out, hide, col, ["round", "measure"], out["level"] == "practice", k)
        _secondary_risk(out, hide_e)
        hide_e |= hide_n
        if (before[0] == hide_n).all() and (before[1] == hide_e).all():
            break
    out["n_shown"] = out["n"].astype(float).where(~hide_n)
    out["events_shown"] = out["events"].where(~hide_e & ~is_mean)
    out["hidden"] = hide_e | hide_n | (out["n"] == 0)
    out["estimate_shown"] = out["estimate"].where(~out["hidden"])
    return out


def _secondary(out: pd.DataFrame, hide: np.ndarray, col: str, keys: list[str], members: pd.Series,
               threshold: int) -> None:
    """Secondary suppression among sibling units under a shown parent total (in place on ``hide``).

    While the parent's count is shown, the hidden siblings' sum (parent minus the shown siblings)
    must be neither one cell's count (a lone hidden sibling) nor from 1 to ``threshold - 1``:
    hide the smallest non-zero shown sibling (else a zero one) until it is so; with no sibling
    left, hide the parent.
    """
    values = out[col].fillna(0).to_numpy(dtype=float)
    parent_level = "practice" if keys[-1] == "practice_id" else "all"
    parents = out.index[out["level"] == parent_level]
    pkey = out.loc[parents, ["round", "measure", "unit" if parent_level == "practice" else "level"]]
    parent_pos = dict(zip(map(tuple, pkey.to_numpy().tolist()), parents.to_numpy(), strict=True))
    sub = out.loc[members, keys]
    for key, grp in sub.groupby(keys, sort=False):
        ppos = parent_pos.get(tuple(key) if parent_level == "practice" else (key[0], key[1], "all"))
        if ppos is None or hide[ppos]:
            continue
        pos = grp.index.to_numpy()
        while True:
            hidden = pos[hide[pos]]
            hidden_sum = values[ppos] - values[pos[~hide[pos]]].sum()
            if hidden.size == 0 or (hidden.size > 1 and not 1 <= hidden_sum < threshold):
                break
            shown = pos[~hide[pos]]
            if shown.size == 0:
                hide[ppos] = True
                break
            v = values[shown]
            hide[int(shown[np.lexsort((v, v == 0))[0]])] = True


def _secondary_risk(out: pd.DataFrame, hide_e: np.ndarray) -> None:
    """In a risk mix (low + medium + high = n), one hidden group gets a partner (in place)."""
    risk = out["measure"].str.startswith("risk_").to_numpy()
    sub = out.loc[risk, ["round", "level", "unit"]].copy()
    sub["_pos"] = np.flatnonzero(risk)
    sub["_hidden"] = hide_e[risk]
    lone = sub.groupby(["round", "level", "unit"], sort=False)["_hidden"].transform("sum") == 1
    values = out["events"].fillna(0).to_numpy(dtype=float)
    for _, grp in sub[lone].groupby(["round", "level", "unit"], sort=False):
        candidates = grp[~grp["_hidden"]]
        if not candidates.empty:
            hide_e[int(candidates["_pos"].to_numpy()[np.argmin(values[candidates["_pos"]])])] = True


# --------------------------------------------------------------------------------------------
# pages
# --------------------------------------------------------------------------------------------

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{{ title }}</title>
<style>
body { font-family: Arial, Helvetica, sans-serif; max-width: 60rem; margin: 1.5rem auto; color: #222;
       line-height: 1.4; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: 0.2rem; } h2 { font-size: 1.15rem; margin: 1.2rem 0 0.4rem; }
.sub { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: 0.4rem 0; font-size: 0.9rem; }
th, td { border-bottom: 1px solid #ccc; padding: 0.2rem 0.6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.grid { display: grid; grid-template-columns: 1fr 1fr; gap: 0.8rem 1.5rem; }
section { break-inside: avoid; }
.note { color: #555; font-size: 0.85rem; }
svg text { font-family: Arial, Helvetica, sans-serif; font-size: 11px; fill: #333; }
@media print {
  @page { size: A4; margin: 10mm; }
  body { margin: 0; max-width: none; font-size: 9pt; }
  h1 { font-size: 14pt; } h2 { font-size: 11pt; margin-top: 0.5rem; }
  table { font-size: 8pt; } .grid { gap: 0.3rem 1rem; } svg { max-height: 42mm; }
}
</style></head>
<body>
<h1>{{ title }}</h1>
<p class="sub">Feedback round {{ round }}: data up to {{ round }}, stratified care phase so far.
Compared with {{ comparison }}.</p>
<h2>Key figures</h2>
<ul>{% for line in key_figures %}<li>{{ line }}</li>{% endfor %}</ul>
<div class="grid">
{% for chart in charts %}<section><h2>{{ chart.heading }}</h2>{{ chart.svg }}
<p class="note">{{ chart.note }}</p></section>
{% endfor %}</div>
<h2>This round in numbers</h2>
<table><thead><tr>{% for h in table_head %}<th>{{ h }}</th>{% endfor %}</tr></thead>
<tbody>{% for row in table_rows %}<tr>{% for cell in row %}<td>{{ cell }}</td>{% endfor %}</tr>{% endfor %}
</tbody></table>
<p class="note">{{ outcome_note }}</p>
<p class="note"><strong>Small numbers are never shown.</strong> No count from 1 to 4 appears, nor a percentage,
difference or total that would reveal one: such cells show *. "All practices" includes yours. Differences
can arise by chance, especially with small numbers: use them to start a discussion in the practice team,
not as a verdict.</p>
</body></html>
"""

_COLORS = {"unit": "#1f5fa8", "practice": "#7fa7d6", "all": "#888888", "target": "#b22222"}


def _svg_trend(rounds: list[str], series: list[tuple[str, str, list[float]]], *, target: float | None,
               label: str) -> str:
    """A small line chart (percent over rounds) as inline SVG; labels are escaped."""
    w, h, left, right, top, bottom = 420, 190, 40, 28, 12, 48
    n = len(rounds)

    def x(i: int) -> float:
        return left + (w - left - right) * (0.5 if n == 1 else i / (n - 1))

    def y(v: float) -> float:
        return top + (h - top - bottom) * (1 - v / 100)

    parts = [f'<svg viewBox="0 0 {w} {h}" width="100%" role="img" aria-label="{html_text(label)}">']
    for v in (0, 50, 100):
        parts.append(f'<line x1="{left}" x2="{w - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd"/>'
                     f'<text x="{left - 4}" y="{y(v) + 4:.1f}" text-anchor="end">{v}%</text>')
    step = max(1, n // 6)
    for i, r in enumerate(rounds):
        if i % step == 0 or i == n - 1:
            parts.append(f'<text x="{x(i):.1f}" y="{h - bottom + 14}" text-anchor="middle">{html_text(r[:7])}</text>')
    if target is not None:
        parts.append(f'<line x1="{left}" x2="{w - right}" y1="{y(100 * target):.1f}" y2="{y(100 * target):.1f}" '
                     f'stroke="{_COLORS["target"]}" stroke-dasharray="5,3"/>')
    legend = [*series, *([("target", f"target {100 * target:.0f}%", [])] if target is not None else [])]
    for kind, _name, values in series:
        pts = [(x(i), y(v)) for i, v in enumerate(values) if np.isfinite(v)]
        if len(pts) > 1:
            path = " ".join(f"{a:.1f},{b:.1f}" for a, b in pts)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{_COLORS[kind]}" stroke-width="2"/>')
        parts += [f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3" fill="{_COLORS[kind]}"/>' for a, b in pts]
    for j, (kind, name, _) in enumerate(legend):
        lx = left + j * 130
        parts.append(f'<rect x="{lx}" y="{h - 16}" width="10" height="10" fill="{_COLORS[kind]}"/>'
                     f'<text x="{lx + 14}" y="{h - 7}">{html_text(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _pct(value: float) -> str:
    return "*" if not np.isfinite(value) else f"{100 * value:.0f}%"


def _count(value: float) -> str:
    return "*" if not np.isfinite(value) else f"{int(value)}"


@dataclass
class _View:
    """One page: the unit and the columns it is compared with."""

    level: str  # "practice" or "gp"
    unit: str
    practice_id: str
    title: str
    columns: list[tuple[str, str]]  # (level, unit) shown, the page's own first


def _views(study: FeedbackStudy, per_gp: bool) -> list[_View]:
    names = dict(zip(study.practices["practice_id"], study.practices["practice_name"], strict=True))
    views = [_View("practice", pid, pid, f"Back pain care feedback: {names[pid]} (practice {pid})",
                   [("practice", pid), ("all", "all")]) for pid in study.practices["practice_id"]]
    if per_gp:
        views += [_View("gp", g, pid, f"Back pain care feedback for GP {g}, {names.get(pid, pid)} (practice {pid})",
                        [("gp", g), ("practice", pid), ("all", "all")])
                  for g, pid in zip(study.gps["gp_id"], study.gps["practice_id"], strict=True)]
    return views


_LOOKUP_COLUMNS = ("n_shown", "events_shown", "estimate_shown", "n")


def _lookup(table: pd.DataFrame) -> dict[tuple[str, str, str, str], dict[str, float]]:
    """(round, level, unit, measure) -> the shown values of that row (a dict: fast per-cell access)."""
    keys = zip(table["round"], table["level"], table["unit"], table["measure"], strict=True)
    cols = [table[c].to_numpy(dtype=float) for c in _LOOKUP_COLUMNS]
    return {k: dict(zip(_LOOKUP_COLUMNS, vals, strict=True)) for k, vals in zip(keys, zip(*cols, strict=True),
                                                                                 strict=True)}


_TEMPLATE: Any = None


def _template() -> Any:
    """The page template, compiled once per process (autoescaping on)."""
    global _TEMPLATE
    if _TEMPLATE is None:
        import jinja2

        env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
        _TEMPLATE = env.from_string(_PAGE)
    return _TEMPLATE


def render_unit_page(view: Any, table: pd.DataFrame, rounds: list[str], *, target: float = 0.8,
                     min_followed_up: int = 20) -> tuple[str, pd.DataFrame, list[dict[str, Any]]]:
    """Render one feedback page (HTML) for one practice or GP at the last of ``rounds``.

    Parameters
    ----------
    view : _View
        The unit and its comparison columns (from :func:`run_feedback`).
    table : DataFrame
        Suppressed counts (:func:`suppress_round_counts`) of the page's units, all rounds.
    rounds : list of str
        Rounds up to and including this one (``YYYY-MM-DD``).
    target : float
        Uptake target (0-1), drawn as a line.
    min_followed_up : int
        6-month outcomes are shown once at least this many patients (all practices) have
        returned their 6-month questionnaire.

    Returns
    -------
    (str, DataFrame, list of dict)
        The HTML page; this round's table (``measure``, then ``n_``/``events_``/``pct_`` per
        column of the page, hidden cells ``*``); the key findings (name, value, label, unit).
    """
    from markupsafe import Markup

    this = rounds[-1]
    labels = {"gp": "this GP", "practice": "your practice" if view.level == "practice" else "the practice",
              "all": "all practices"}
    values = _lookup(table)

    def get(round_: str, col: tuple[str, str], measure: str, what: str) -> float:
        row = values.get((round_, col[0], col[1], measure))
        return np.nan if row is None else float(row[what])

    charts = []
    enough = get(this, ("all", "all"), "rmdq_30pct_6m", "n") >= min_followed_up
    shown_measures = [("uptake", "Questionnaire uptake", target), ("risk_high", "Patients at high risk", None),
                      ("matched_referral", "Referral matched to risk group", None)]
    if enough:
        shown_measures.append(("rmdq_30pct_6m", "Disability score at least 30% lower at 6 months", None))
    for measure, heading, line in shown_measures:
        series = [(col[0] if i else "unit", labels[col[0]], [get(r, col, measure, "estimate_shown") * 100
                                                            for r in rounds])
                  for i, col in enumerate(view.columns)]
        note = f"{MEASURES[measure][0]}, stratified care phase up to each round (% of {MEASURES[measure][1]})."
        charts.append({"heading": heading, "note": note,
                       "svg": Markup(_svg_trend(rounds, series, target=line, label=heading))})
    head = ["measure"]
    rows = []
    csv_rows = []
    for measure, (label, _) in MEASURES.items():
        if measure.endswith("_6m") and not enough:
            continue
        row, rec = [label], {"measure": label}
        for col in view.columns:
            key = "unit" if col == view.columns[0] else col[0]
            n, e = get(this, col, measure, "n_shown"), get(this, col, measure, "events_shown")
            est = get(this, col, measure, "estimate_shown")
            if measure == "rmdq_change_6m":
                row += [_count(n), "", "*" if not np.isfinite(est) else f"{est:.1f} points"]
                rec.update({f"n_{key}": _count(n), f"mean_{key}": "*" if not np.isfinite(est) else round(est, 2)})
            else:
                row += [_count(n), _count(e), _pct(est)]
                rec.update({f"n_{key}": _count(n), f"events_{key}": _count(e),
                            f"pct_{key}": "*" if not np.isfinite(est) else round(100 * est, 1)})
        rows.append(row)
        csv_rows.append(rec)
    for col in view.columns:
        head += [f"{labels[col[0]]}: number counted", f"{labels[col[0]]}: with the result", f"{labels[col[0]]}: %"]
    key_lines, findings = [], []
    for measure in ("uptake", "matched_referral", "rmdq_30pct_6m"):
        if measure == "rmdq_30pct_6m" and not enough:
            continue
        mine, everyone = get(this, view.columns[0], measure, "estimate_shown"), get(this, ("all", "all"), measure,
                                                                                    "estimate_shown")
        label = MEASURES[measure][0]
        if not np.isfinite(mine):
            key_lines.append(f"{label}: too few patients to show safely.")
            continue
        key_lines.append(f"{label}: {_pct(mine)} ({labels['all']}: {_pct(everyone)}).")
        findings.append({"name": f"{measure}_pct", "value": round(100 * mine, 1), "label": label, "unit": "%",
                         "ci_low": None, "ci_high": None})
    outcome_note = ("6-month outcomes: shown once at least "
                    f"{min_followed_up} patients in all practices have returned the 6-month questionnaire; "
                    "patients whose 6-month window is still open are not yet due, not lost to follow-up."
                    if not enough else
                    "6-month outcomes are of the patients who had returned the 6-month questionnaire by this round; "
                    "the RMDQ criterion is a fall of at least 30% of the starting score.")
    # every text goes through safe_text.html_text once (Markup: not escaped again by the template)
    safe = lambda v: Markup(html_text(v))  # noqa: E731
    page = _template().render(
        title=safe(view.title), round=safe(this), key_figures=[safe(x) for x in key_lines], charts=charts,
        comparison=safe(" and ".join(labels[c[0]] for c in view.columns[1:])), table_head=[safe(h) for h in head],
        table_rows=[[safe(c) for c in r] for r in rows], outcome_note=safe(outcome_note))
    return page, pd.DataFrame(csv_rows), findings


# --------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------


@dataclass
class FeedbackRun:
    """What :func:`run_feedback` made.

    Attributes
    ----------
    output_dir : Path
    rounds : list of str
        Round dates (``YYYY-MM-DD``).
    pages : list of Path
        Every HTML page written.
    counts : DataFrame
        Suppressed counts of every round and unit (:func:`suppress_round_counts`).
    provenance : dict
        Content of ``OUT/run.json``.
    timings : dict
        Seconds spent preparing the study, counting, and rendering and writing pages.
    """

    output_dir: Path
    rounds: list[str]
    pages: list[Path]
    counts: pd.DataFrame
    provenance: dict[str, Any]
    timings: dict[str, float]


def _folder_name(prefix: str, unit: str) -> str:
    """A file-system-safe folder name for a unit id from the export (which may hold ``../`` etc.)."""
    import hashlib
    import re

    safe = re.sub(r"[^A-Za-z0-9_-]", "_", unit)[:40]
    if safe != unit:
        safe += "-" + hashlib.sha256(unit.encode()).hexdigest()[:8]
    return f"{prefix}_{safe}"


def _schedule_defaults(definition: Any) -> dict[str, Any]:
    from .report import ReportDefinition, load_report_definition

    if definition is False:
        return {}
    if not isinstance(definition, ReportDefinition):
        definition = load_report_definition(definition)
    return dict(definition.feedback.rounds) if definition.feedback else {}


def run_feedback(
    data_dir: str | Path,
    output_dir: str | Path,
    *,
    rounds: str | Sequence[Any] | None = None,
    per_gp: bool | None = None,
    until: Any = None,
    practices: Sequence[str] | None = None,
    uptake_target: float | None = None,
    min_followed_up: int | None = None,
    last_round_only: bool = False,
    threshold: int = 5,
    definition: Any = None,
) -> FeedbackRun:
    """Make the feedback pages of every round for every practice (and GP), from one cleaned study.

    Parameters
    ----------
    data_dir : str or Path
        Study export folder.
    output_dir : str or Path
        Output folder ``OUT``: ``OUT/round_<date>/practice_<id>/practice_<id>.html`` (and
        ``gp_<id>/``), each with ``tables/feedback.csv``, ``tables/trend.csv`` and
        ``key_findings.json``; ``OUT/index.html`` and ``OUT/run.json``.
    rounds : "quarterly", "monthly" or list of dates, optional
        Round schedule (:func:`round_dates`). Default: the report definition's
        ``feedback: rounds: schedule``, else quarterly.
    per_gp : bool, optional
        Also one page per GP (default: the definition's ``per_gp``, else False).
    until : str or date, optional
        Data cut-off of the whole run; rounds after it are dropped.
    practices : sequence of str, optional
        Pages only for these practices (all practices are still counted in "all practices").
    uptake_target, min_followed_up : optional
        Target line of uptake (0-1; default 0.8) and the number of 6-month follow-ups (all
        practices) from which 6-month outcomes are shown (default 20).
    last_round_only : bool
        Render pages for the last round only (the trends still cover every round).
    threshold : int
        Counts from 1 to ``threshold - 1`` are suppressed (:func:`suppress_round_counts`).
    definition : str, Path, ReportDefinition or False, optional
        Report definition holding the schedule (default ``notebooks/report.yaml``); False: none.

    Returns
    -------
    FeedbackRun

    Raises
    ------
    FeedbackError
        No round, or an unknown practice.

    Notes
    -----
    The study is loaded and cleaned once; every round is a date mask over it
    (:func:`round_counts`); suppression runs once over every round and unit; pages are
    rendered from one template. Export text (practice names, ids) is escaped with
    :func:`backpain_analysis.safe_text.html_text` and written to CSV through
    :func:`backpain_analysis.safe_text.csv_safe_frame`; unit ids never reach a path unsanitised.

    Examples
    --------
    >>> run = run_feedback("data/synthetic", "feedback_out")  # doctest: +SKIP
    >>> run.rounds[-1]  # doctest: +SKIP
    '2010-06-30'
    """
    t0 = time.perf_counter()
    defaults = _schedule_defaults(definition)
    schedule = rounds if rounds is not None else defaults.get("schedule", "quarterly")
    per_gp = bool(defaults.get("per_gp", False)) if per_gp is None else per_gp
    target = float(defaults.get("uptake_target", 0.8)) if uptake_target is None else float(uptake_target)
    min_fu = int(defaults.get("min_followed_up", 20)) if min_followed_up is None else int(min_followed_up)
    study = prepare_feedback_study(data_dir, until=until)
    t1 = time.perf_counter()
    last = parse_until(until) if until is not None else study.last_date
    days = [d for d in round_dates(schedule, study.first_date, last) if until is None or d <= last]
    if not days:
        raise FeedbackError(f"no feedback round on or before the cut-off {as_iso(until)}")
    labels = [d.date().isoformat() for d in days]
    counts = suppress_round_counts(round_counts(study, days, per_gp=per_gp), threshold=threshold)
    t2 = time.perf_counter()
    views = _views(study, per_gp)
    if practices is not None:
        unknown = set(practices) - set(study.practices["practice_id"])
        if unknown:
            raise FeedbackError(f"unknown practice(s) {sorted(unknown)}; the study has "
                                f"{sorted(study.practices['practice_id'])}")
        views = [v for v in views if v.practice_id in set(practices)]
    out = Path(output_dir)
    pages = _write_pages(out, views, counts, labels, target=target, min_followed_up=min_fu,
                         last_round_only=last_round_only)
    t3 = time.perf_counter()
    provenance = {
        "package": "backpain_analysis", "version": __version__, "data_dir": str(Path(data_dir).resolve()),
        "until": as_iso(until), "rounds": labels, "schedule": schedule if isinstance(schedule, str) else list(labels),
        "per_gp": per_gp, "uptake_target": target, "min_followed_up": min_fu, "threshold": threshold,
        "pages": len(pages), "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "timings_s": {"prepare": round(t1 - t0, 3), "count_and_suppress": round(t2 - t1, 3),
                      "render_and_write": round(t3 - t2, 3)},
    }
    with atomic_write(out / "run.json") as fh:
        json.dump(provenance, fh, indent=2)
        fh.write("\n")
    with atomic_write(out / "index.html") as fh:
        fh.write(_index_html(out, pages, labels, as_iso(until)))
    return FeedbackRun(out, labels, pages, counts, provenance, provenance["timings_s"])


def _write_pages(out: Path, views: list[_View], counts: pd.DataFrame, labels: list[str], *, target: float,
                 min_followed_up: int, last_round_only: bool) -> list[Path]:
    """Render and write every page (folder per round and unit) with its tables and key findings."""
    from .outputs import ChapterOutputs

    by_unit = {key: frame for key, frame in counts.groupby(["level", "unit"], sort=False)}
    pages = []
    for view in views:
        table = pd.concat([by_unit[c] for c in view.columns if c in by_unit], ignore_index=True)
        trend = _trend_table(view, table, labels)
        for k in range(len(labels) - 1 if last_round_only else 0, len(labels)):
            folder = f"round_{labels[k]}/{_folder_name(view.level, view.unit)}"
            page, this_round, findings = render_unit_page(view, table, labels[: k + 1], target=target,
                                                          min_followed_up=min_followed_up)
            chapter = ChapterOutputs(out, folder)
            chapter.table(this_round, "feedback")  # ChapterOutputs.table escapes text (csv_safe_frame)
            chapter.table(trend[trend["round"] <= labels[k]], "trend")
            for f in findings:
                chapter.finding(f["name"], f["value"], label=f["label"], unit=f["unit"])
            chapter.write_findings()
            path = chapter.root / f"{_folder_name(view.level, view.unit)}.html"
            with atomic_write(path) as fh:
                fh.write(page)
            pages.append(path)
    return pages


def _trend_table(view: _View, table: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    """Percentages (no counts) per round for the page's columns: the trend behind the charts."""
    rows = []
    values = _lookup(table)
    for r in labels:
        for measure in MEASURES:
            rec: dict[str, Any] = {"round": r, "measure": measure}
            for col in view.columns:
                v = values.get((r, col[0], col[1], measure), {}).get("estimate_shown", np.nan)
                scale = 1 if measure == "rmdq_change_6m" else 100
                name = "mean" if measure == "rmdq_change_6m" else "pct"
                rec[f"{name}_{col[0]}"] = "*" if not np.isfinite(v) else round(scale * float(v), 1)
            rows.append(rec)
    return pd.DataFrame(rows)


def _index_html(out: Path, pages: list[Path], labels: list[str], until: str | None) -> str:
    items = "".join(f'<li><a href="{html_text(p.relative_to(out).as_posix())}">'
                    f'{html_text(p.relative_to(out).parent.as_posix())}</a></li>' for p in pages)
    cut = f" (data up to {html_text(until)})" if until else ""
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Feedback rounds{cut}</title></head>'
            f"<body><h1>Feedback rounds{cut}</h1><p>Rounds: {html_text(', '.join(labels))}.</p>"
            f"<ul>{items}</ul></body></html>")
