"""Hand-written helpers of the synthetic-study calibration tests (import them as ``from
calibration_helpers import ...``): the SBST risk group and the Table 2 (process of care)
indicators, written from the published definitions, independent of the package's scoring."""

from __future__ import annotations

import numpy as np
import pandas as pd


def sbst_risk(df: pd.DataFrame) -> pd.Series:
    """SBST risk group from the items ``sbst_1`` .. ``sbst_9`` (Hill et al. 2008): low if the
    total is at most 3, else high if the psychosocial subscale (items 5-9) is at least 4."""
    x = df[[f"sbst_{i}" for i in range(1, 10)]].astype(float)
    item9 = (x["sbst_9"] >= 3).astype(float)
    psych = x[["sbst_5", "sbst_6", "sbst_7", "sbst_8"]].sum(axis=1) + item9
    total = x[[f"sbst_{i}" for i in range(1, 9)]].sum(axis=1) + item9
    return pd.Series(np.where(total <= 3, "low", np.where(psych >= 4, "high", "medium")), index=df.index)


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
