"""Table 2 (process of care) indicators from generated record-review rows, for the calibration
tests (import it as ``from table2_indicators import table2_indicator``)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def table2_indicator(records: pd.DataFrame, name: str) -> pd.Series:
    """0/1 indicator of one Table 2 row over the record-review rows of one phase.

    ``low_not_referred`` and ``medhigh_referred`` are over the low-risk and the medium- or
    high-risk patients only; ``opioids_any`` is weak or strong, ``opioids_weak_only`` weak
    without strong; any other name is the column of that name.
    """
    r = records
    if name == "low_not_referred":
        return pd.Series(1 - r.physio_referral[r.risk == "low"])
    if name == "medhigh_referred":
        return pd.Series(r.physio_referral[r.risk != "low"])
    if name == "opioids_any":
        return pd.Series(np.maximum(r.opioids_strong, r.opioids_weak))
    if name == "opioids_weak_only":
        return pd.Series((r.opioids_weak == 1) & (r.opioids_strong == 0))
    return pd.Series(r[name])
