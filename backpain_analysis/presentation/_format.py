"""Cell formatting rules shared by every display table (HTML, LaTeX, Word) and the index.

One rule per quantity, so a number looks the same wherever it is shown:

- missing or not applicable: an em dash (``—``);
- a cell hidden by disclosure control (``"*"``) stays ``"*"`` (footnoted by the table);
- counts: integers with thousands separators (``1,647``);
- percentages: 1 decimal; means and SDs: 1 decimal; ratios and differences: 2 decimals;
  QALYs: 3 decimals; money: whole pounds with thousands separators;
- p-values as journals print them: ``<0.001``, otherwise 3 decimals;
- ``estimate (95% CI)`` cells as ``0.27 (-0.41 to 0.96)`` ("to", never a hyphen, between
  the limits, so negative limits read unambiguously).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..errors import BackpainError

__all__ = [
    "MISSING",
    "SUPPRESSED",
    "decimals_for_unit",
    "format_count",
    "format_estimate_ci",
    "format_finding",
    "format_n_pct",
    "format_number",
    "format_p",
    "format_mean_sd",
]

MISSING = "\u2014"  # em dash: missing or not applicable
SUPPRESSED = "*"  # disclosure control: fewer than 5 patients (or a number that would reveal one)


class PresentationError(BackpainError, ValueError):
    """A value or table that cannot be presented as asked (for example a p-value outside [0, 1])."""


def _is_suppressed(value: Any) -> bool:
    return isinstance(value, str) and value.strip() == SUPPRESSED


def _as_float(value: Any) -> float | None:
    """``value`` as a float, or None when it is missing (None, NaN, NA, blank text)."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().replace(",", "")
        if text == "" or text.lower() in {"nan", "none", "na", "<na>", "nat"}:
            return None
        try:
            value = float(text)
        except ValueError:
            return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if math.isnan(number):
        return None
    return number


def format_number(value: Any, decimals: int = 2, *, thousands: bool = True) -> str:
    """A number with fixed decimals (never scientific notation) and thousands separators.

    Parameters
    ----------
    value : number, str or None
        Missing values (None, NaN, pandas NA, blank) give an em dash; ``"*"`` (hidden by
        disclosure control) is kept; other text that is not a number is returned unchanged.
    decimals : int, default 2
    thousands : bool, default True
        Separate thousands with commas.

    Returns
    -------
    str

    Examples
    --------
    >>> format_number(-17.3612, 2), format_number(1234567.891, 0), format_number(float("nan"))
    ('-17.36', '1,234,568', '—')
    >>> format_number(2.02e-217, 3), format_number(-0.0004, 3), format_number("*")
    ('0.000', '0.000', '*')
    """
    if _is_suppressed(value):
        return SUPPRESSED
    number = _as_float(value)
    if number is None:
        if isinstance(value, str) and value.strip() and value.strip().lower() not in {"nan", "none", "na", "<na>", "nat"}:
            return value
        return MISSING
    if math.isinf(number):
        return "\u221e" if number > 0 else "-\u221e"
    text = f"{number:,.{decimals}f}" if thousands else f"{number:.{decimals}f}"
    if text.startswith("-") and float(text.replace(",", "")) == 0:
        text = text[1:]  # no "-0.00"
    return text


def format_count(value: Any) -> str:
    """A count: integer with thousands separators (``370.0`` -> ``370``).

    Examples
    --------
    >>> format_count(370.0), format_count(1647), format_count(None), format_count("*")
    ('370', '1,647', '—', '*')
    """
    return format_number(value, 0)


def format_p(value: Any) -> str:
    """A p-value as journals print it: ``<0.001``, otherwise 3 decimals.

    Parameters
    ----------
    value : number, str or None
        A probability in [0, 1]; missing gives an em dash, ``"*"`` is kept.

    Returns
    -------
    str

    Raises
    ------
    PresentationError
        When the value is a number outside [0, 1].

    Notes
    -----
    Values below 0.001 print as ``<0.001`` (never ``0.000`` or ``2e-217``); others are rounded
    to 3 decimals, so 0.0496 prints as ``0.050`` and 0.99996 as ``1.000`` (ICMJE / BMJ style).

    Examples
    --------
    >>> [format_p(p) for p in (2.02e-217, 0.000999, 0.001, 0.0496, 0.7392, 1.0, None, "*")]
    ['<0.001', '<0.001', '0.001', '0.050', '0.739', '1.000', '—', '*']
    """
    if _is_suppressed(value):
        return SUPPRESSED
    p = _as_float(value)
    if p is None:
        return MISSING
    if not 0.0 <= p <= 1.0:
        raise PresentationError(f"p-value {value!r} is outside [0, 1]")
    if p < 0.001:
        return "<0.001"
    return f"{p:.3f}"


def format_estimate_ci(estimate: Any, ci_low: Any = None, ci_high: Any = None, decimals: int = 2) -> str:
    """An ``estimate (95% CI)`` cell: ``0.27 (-0.41 to 0.96)``.

    Parameters
    ----------
    estimate, ci_low, ci_high : number, str or None
        A missing estimate gives an em dash; a missing limit leaves the estimate alone; any
        ``"*"`` (hidden) gives ``"*"``.
    decimals : int, default 2

    Returns
    -------
    str

    Examples
    --------
    >>> format_estimate_ci(0.274453, -0.411057, 0.959962)
    '0.27 (-0.41 to 0.96)'
    >>> format_estimate_ci(-9.45, -34.46, 15.80, decimals=0), format_estimate_ci(None, 1, 2)
    ('-9 (-34 to 16)', '—')
    """
    if any(_is_suppressed(v) for v in (estimate, ci_low, ci_high)):
        return SUPPRESSED
    est = format_number(estimate, decimals)
    if est == MISSING:
        return MISSING
    low, high = format_number(ci_low, decimals), format_number(ci_high, decimals)
    if MISSING in (low, high):
        return est
    return f"{est} ({low} to {high})"


def format_n_pct(n: Any, pct: Any = None, *, denominator: Any = None, decimals: int = 1) -> str:
    """An ``n (%)`` cell: ``115 (45.8)``.

    Parameters
    ----------
    n : number, str or None
    pct : number, optional
        The percentage; computed from ``denominator`` when not given.
    denominator : number, optional
    decimals : int, default 1

    Returns
    -------
    str

    Examples
    --------
    >>> format_n_pct(115, 45.816733), format_n_pct(3, denominator=8), format_n_pct("*", "*")
    ('115 (45.8)', '3 (37.5)', '*')
    >>> format_n_pct(1500, None), format_n_pct(float("nan"), float("nan"))
    ('1,500', '—')
    """
    if _is_suppressed(n) or _is_suppressed(pct):
        return SUPPRESSED
    count = format_count(n)
    if count == MISSING:
        return MISSING
    if pct is None or _as_float(pct) is None:
        d, k = _as_float(denominator), _as_float(n)
        pct = 100 * k / d if d and k is not None else None
    share = format_number(pct, decimals)
    return count if share == MISSING else f"{count} ({share})"


def format_mean_sd(mean: Any, sd: Any, decimals: int = 1) -> str:
    """A ``mean (SD)`` cell: ``2.4 (4.6)``.

    Examples
    --------
    >>> format_mean_sd(2.416657, 4.582292), format_mean_sd(None, None), format_mean_sd(3.0, None)
    ('2.4 (4.6)', '—', '3.0')
    """
    if _is_suppressed(mean) or _is_suppressed(sd):
        return SUPPRESSED
    m = format_number(mean, decimals)
    if m == MISSING:
        return MISSING
    s = format_number(sd, decimals)
    return m if s == MISSING else f"{m} ({s})"


_UNIT_DECIMALS = {
    "gbp": 0, "£": 0, "patients": 0, "practices": 0, "n": 0, "days": 1, "years": 1, "%": 1, "percent": 1,
    "qaly": 3, "qalys": 3, "odds ratio": 2, "ratio": 2, "rate ratio": 2, "points": 2, "rmdq points": 2,
    "probability": 2, "auc": 3, "alpha": 3,
}


def decimals_for_unit(unit: str | None, default: int = 2) -> int:
    """Decimals used for a quantity with this unit (``key_findings.json`` units).

    Examples
    --------
    >>> decimals_for_unit("GBP"), decimals_for_unit("QALY"), decimals_for_unit("odds ratio"), decimals_for_unit("%")
    (0, 3, 2, 1)
    """
    return _UNIT_DECIMALS.get(str(unit or "").strip().lower(), default)


def format_finding(finding: Mapping[str, Any]) -> str:
    """A key finding (``{"value", "ci_low", "ci_high", "unit"}``) formatted for the index.

    Decimals follow the unit (:func:`decimals_for_unit`), so every headline uses the same rule
    as the tables.

    Examples
    --------
    >>> format_finding({"value": 0.2214, "ci_low": -0.645, "ci_high": 1.086, "unit": "RMDQ points"})
    '0.22 (-0.65 to 1.09)'
    >>> format_finding({"value": -9.45, "ci_low": -34.46, "ci_high": 15.8, "unit": "GBP"})
    '-9 (-34 to 16)'
    >>> format_finding({"value": 48.4, "ci_low": None, "ci_high": None, "unit": "%"})
    '48.4'
    >>> format_finding({"name": "sbst_auc_disability", "value": 0.8, "ci_low": 0.75, "ci_high": 0.85, "unit": None})
    '0.800 (0.750 to 0.850)'
    """
    unit = finding.get("unit")
    if not isinstance(unit, str) or not unit.strip():  # None, NaN or "": no unit  # no unit: a scale statistic named in the finding (AUC, Cronbach's alpha)
        name = str(finding.get("name", "")).lower().split("_")
        unit = next((w for w in name if w in ("auc", "alpha")), None)
    d = decimals_for_unit(unit)
    return format_estimate_ci(finding.get("value"), finding.get("ci_low"), finding.get("ci_high"), decimals=d)
