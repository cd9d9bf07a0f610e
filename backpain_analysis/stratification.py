"""Stratified care pathways: the pathway matched to each SBST risk group, the pathway a
patient received, and whether the two agree.

Source: domain.md section 1 (the approach being evaluated): low risk, minimal GP care
(advice, no routine physiotherapy referral); medium risk, physiotherapy (manual therapy /
exercise); high risk, psychologically informed physiotherapy.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .scoring import RISK_GROUPS, ScoringError

__all__ = [
    "MATCHED_PATHWAYS",
    "PATHWAYS",
    "matched_care",
    "matched_pathway",
    "matched_referral",
    "received_pathway",
]

#: Care pathways, from least to most intensive.
PATHWAYS: tuple[str, ...] = ("advice", "physiotherapy", "psych_informed_physiotherapy")
#: The pathway matched to each risk group (domain.md section 1).
MATCHED_PATHWAYS: dict[str, str] = {
    "low": "advice",
    "medium": "physiotherapy",
    "high": "psych_informed_physiotherapy",
}
_PATHWAY_DTYPE = pd.CategoricalDtype(list(PATHWAYS), ordered=True)
_APPROACHES = ("advice_only", "manual_exercise", "psych_informed")


def _risk_codes(risk_group: pd.Series) -> np.ndarray:
    """Integer codes 0/1/2 for low/medium/high, -1 for missing; anything else raises."""
    if isinstance(risk_group.dtype, pd.CategoricalDtype) and set(risk_group.cat.categories) <= set(RISK_GROUPS):
        lut = np.asarray([RISK_GROUPS.index(c) for c in risk_group.cat.categories] + [-1], dtype="int64")
        codes = risk_group.cat.codes.to_numpy()
        return lut[np.where(codes < 0, len(lut) - 1, codes)]
    text = risk_group.astype(object)
    mapped = text.map({g: i for i, g in enumerate(RISK_GROUPS)})
    bad = mapped.isna() & text.notna()
    if bad.any():
        raise ScoringError(f"column {risk_group.name or 'risk_group'!r}: {int(bad.sum())} row(s) hold values that are "
                           f"not risk groups {list(RISK_GROUPS)}: {sorted({str(v) for v in text[bad].unique()[:5]})}")
    return mapped.fillna(-1).to_numpy(dtype="int64")


def _binary(s: pd.Series, name: str) -> np.ndarray:
    if isinstance(s.dtype, np.dtype) and s.dtype.kind in "fiu":
        # Fast path for numpy numbers: the general path below gives these same float64 values
        # (through object and to_numeric); exact for float64 and integers (a value beyond 2**53
        # is not 0/1 either way). Anything not 0/1/NaN falls through, and the general path reports it.
        values = s.to_numpy(dtype="float64", copy=True)
        if ((values == 0) | (values == 1) | np.isnan(values)).all():
            return values
    values = pd.to_numeric(s.astype(object), errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    ok = np.isnan(values) | np.isin(values, (0.0, 1.0))
    if not ok.all() or (np.isnan(values) & s.notna().to_numpy()).any():
        raise ScoringError(f"column {s.name or name!r}: values must be 0/1 or missing; "
                           f"{int((~ok).sum() + (np.isnan(values) & s.notna().to_numpy()).sum())} row(s) are not")
    return values


def _category_lut(s: pd.Series, values: tuple[str, ...]) -> np.ndarray | None:
    """Fast path over a categorical Series: for each row, the position of its value in ``values``
    (-1 for missing), or None when it cannot decide (not categorical, a category that is not a
    ``str``, or a row holding a category outside ``values``: the caller's general path then
    checks and reports). Exact: the codes only point at categories, and a ``str`` category
    equals an entry of ``values`` exactly when the general path's object comparison says so.
    """
    if not isinstance(s.dtype, pd.CategoricalDtype):
        return None
    categories = list(s.cat.categories)
    if not all(isinstance(c, str) for c in categories):
        return None
    lut = np.asarray([values.index(c) if c in values else -2 for c in categories] + [-1], dtype="int64")
    codes = s.cat.codes.to_numpy()
    out = lut[np.where(codes < 0, len(categories), codes)]
    if (out == -2).any():
        return None
    return out


def matched_pathway(risk_group: pd.Series) -> pd.Series:
    """The care pathway matched to each patient's risk group.

    Parameters
    ----------
    risk_group : Series
        ``low`` / ``medium`` / ``high`` (text or categorical), missing allowed.

    Returns
    -------
    Series
        ``matched_pathway``: ordered categorical of :data:`PATHWAYS` (advice <
        physiotherapy < psych_informed_physiotherapy), missing where the risk group is.

    Notes
    -----
    low -> advice (minimal GP care, no routine physiotherapy referral); medium ->
    physiotherapy (manual therapy / exercise); high -> psychologically informed
    physiotherapy. Source: domain.md section 1.

    Examples
    --------
    >>> import pandas as pd
    >>> matched_pathway(pd.Series(["low", "high", None])).tolist()
    ['advice', 'psych_informed_physiotherapy', nan]
    """
    codes = _risk_codes(risk_group)
    return pd.Series(pd.Categorical.from_codes(codes, dtype=_PATHWAY_DTYPE), index=risk_group.index,
                     name="matched_pathway")


def received_pathway(physio_referral: pd.Series, physio_approach: pd.Series) -> pd.Series:
    """The care pathway a patient received, from the record review and physiotherapy episodes.

    Parameters
    ----------
    physio_referral : Series
        ``records.physio_referral`` per patient: 1 referred, 0 not referred, missing when
        there is no record review (no consent).
    physio_approach : Series
        Approach of the patient's physiotherapy episode (``advice_only``,
        ``manual_exercise``, ``psych_informed``), missing when the patient had no episode.
        Same index as ``physio_referral``.

    Returns
    -------
    Series
        ``received_pathway``: ordered categorical of :data:`PATHWAYS`.

    Notes
    -----
    Rules, in order:

    1. an episode with approach ``psych_informed`` -> ``psych_informed_physiotherapy``;
    2. any other physiotherapy episode (``manual_exercise``, ``advice_only``) ->
       ``physiotherapy``: the patient was referred to, and seen by, a physiotherapist;
    3. no episode but referred (``physio_referral == 1``) -> ``physiotherapy`` (referred,
       approach unknown);
    4. no episode and not referred (``physio_referral == 0``) -> ``advice``;
    5. otherwise (no episode, no record review) missing.

    Examples
    --------
    >>> import pandas as pd
    >>> received_pathway(pd.Series([0, 1, None, None]),
    ...                  pd.Series([None, None, "psych_informed", None])).tolist()
    ['advice', 'physiotherapy', 'psych_informed_physiotherapy', nan]
    """
    if not physio_referral.index.equals(physio_approach.index):
        raise ScoringError("received_pathway: physio_referral and physio_approach must have the same index")
    referral = _binary(physio_referral, "physio_referral")
    approach_pos = _category_lut(physio_approach, _APPROACHES)
    if approach_pos is not None:  # categorical fast path: the rules below on category positions
        # the rules in order (first that applies), as nested choices in int8
        code = np.where(approach_pos == _APPROACHES.index("psych_informed"), np.int8(2),
                        np.where((approach_pos >= 0) | (referral == 1), np.int8(1),
                                 np.where(referral == 0, np.int8(0), np.int8(-1))))
        return pd.Series(pd.Categorical.from_codes(code, dtype=_PATHWAY_DTYPE), index=physio_referral.index,
                         name="received_pathway")
    approach = physio_approach.astype(object)
    bad = approach.notna() & ~approach.isin(_APPROACHES)
    if bad.any():
        raise ScoringError(f"column {physio_approach.name or 'physio_approach'!r}: {int(bad.sum())} row(s) hold "
                           f"approaches outside {list(_APPROACHES)}: {sorted({str(v) for v in approach[bad].unique()[:5]})}")
    has_episode = approach.notna().to_numpy()
    psych = (approach == "psych_informed").to_numpy()
    code = np.select(
        [psych, has_episode, referral == 1, referral == 0],
        [2, 1, 1, 0],
        default=-1,
    )
    return pd.Series(pd.Categorical.from_codes(code, dtype=_PATHWAY_DTYPE), index=physio_referral.index,
                     name="received_pathway")


def matched_care(matched: pd.Series, received: pd.Series) -> pd.Series:
    """Whether the pathway received was the one matched to the risk group.

    Parameters
    ----------
    matched, received : Series
        Pathways (as from :func:`matched_pathway` and :func:`received_pathway`), same index.

    Returns
    -------
    Series
        ``matched_care``: float64 1.0 if equal, 0.0 if different, ``NaN`` if either is missing.

    Examples
    --------
    >>> import pandas as pd
    >>> matched_care(pd.Series(["advice", "physiotherapy", None]),
    ...              pd.Series(["advice", "advice", "advice"])).tolist()
    [1.0, 0.0, nan]
    """
    if not matched.index.equals(received.index):
        raise ScoringError("matched_care: matched and received must have the same index")
    m_pos, r_pos = _category_lut(matched, PATHWAYS), _category_lut(received, PATHWAYS)
    if m_pos is not None and r_pos is not None:  # categorical fast path: equal pathways = equal positions
        flag = np.where((m_pos < 0) | (r_pos < 0), np.nan, (m_pos == r_pos).astype("float64"))
        return pd.Series(flag, index=matched.index, name="matched_care", dtype="float64")
    m, r = matched.astype(object), received.astype(object)
    for s, name in ((m, "matched"), (r, "received")):
        bad = s.notna() & ~s.isin(PATHWAYS)
        if bad.any():
            raise ScoringError(f"matched_care: {name} holds values outside {list(PATHWAYS)}: "
                               f"{sorted({str(v) for v in s[bad].unique()[:5]})}")
    flag = np.where(m.isna() | r.isna(), np.nan, (m == r).astype("float64"))
    return pd.Series(flag, index=matched.index, name="matched_care", dtype="float64")


def matched_referral(risk_group: pd.Series, physio_referral: pd.Series) -> pd.Series:
    """Whether the physiotherapy referral decision matched the risk group.

    Parameters
    ----------
    risk_group : Series
        ``low`` / ``medium`` / ``high``.
    physio_referral : Series
        ``records.physio_referral`` (1/0, missing without record review), same index.

    Returns
    -------
    Series
        ``matched_referral``: float64 1.0 when a low-risk patient was not referred or a
        medium/high-risk patient was referred, 0.0 otherwise, ``NaN`` when either input is
        missing.

    Notes
    -----
    The two process-of-care outcomes of IMPaCT Back Table 2 (Foster et al., Ann Fam Med 2014;
    domain.md section 2): "low risk not referred to physiotherapy" and "medium/high risk
    referred to physiotherapy".

    Examples
    --------
    >>> import pandas as pd
    >>> matched_referral(pd.Series(["low", "low", "high", "medium"]), pd.Series([0, 1, 1, None])).tolist()
    [1.0, 0.0, 1.0, nan]
    """
    if not risk_group.index.equals(physio_referral.index):
        raise ScoringError("matched_referral: risk_group and physio_referral must have the same index")
    risk = _risk_codes(risk_group)
    referral = _binary(physio_referral, "physio_referral")
    should_refer = (risk >= 1).astype("float64")
    flag = np.where((risk < 0) | np.isnan(referral), np.nan, (referral == should_refer).astype("float64"))
    return pd.Series(flag, index=risk_group.index, name="matched_referral", dtype="float64")
