"""Health economics: costs, QALYs and the cost-utility of stratified care (phase 3 vs phase 1).

The chapter 07 pipeline:

1. :func:`load_unit_costs` reads the editable unit-cost table ``data/unit_costs.csv``
   (item, unit, cost_gbp, price_year, source, notes).
2. :func:`patient_costs` applies it to each patient's resource use (GP consultations,
   physiotherapy sessions, imaging, prescriptions, secondary-care referrals): the NHS cost,
   plus days off work for the societal perspective.
3. :func:`qaly_auc` turns EQ-5D-3L index values at 0, 2 and 6 months into QALYs by the
   trapezium rule (years).
4. :func:`prepare_economic_data` builds the analysis data sets: one per multiple imputation,
   from the imputations shared with chapter 05 (``imputation="shared"``,
   :func:`backpain_analysis.imputation.shared_imputations`), or, as sensitivity analyses, from
   a per-phase imputation of the economic variables alone (``"mice"``) or the complete cases.
5. :func:`cost_utility` estimates the incremental cost and the incremental QALYs (adjusted for
   baseline EQ-5D by regression) with a vectorized, seeded, non-parametric bootstrap that
   resamples patients within phase; :class:`CostUtilityResult` gives the acceptability curve
   (:meth:`CostUtilityResult.ceac`) and the net monetary benefit (:meth:`CostUtilityResult.nmb`).

Sign conventions: increments are phase 3 (stratified care) minus phase 1 (usual care); a
negative incremental cost is a saving, a positive incremental QALY a gain.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ._resources import DATA_PACKAGE, resource_path
from .errors import BackpainError

__all__ = [
    "ANALYSIS_LABELS",
    "DEFAULT_IMPLEMENTATION_COSTS",
    "DEFAULT_UNIT_COSTS",
    "ITEM_LABELS",
    "NON_BACK_PAIN_ITEMS",
    "QUANTITY_BASES",
    "EQ5D_COLUMNS",
    "EQ5D_MONTHS",
    "PRODUCTIVITY_RESOURCE",
    "RESOURCE_ITEMS",
    "CostUtilityResult",
    "EconomicsError",
    "bootstrap_ols",
    "cost_summary",
    "cost_utility",
    "add_implementation_cost",
    "ICER_MEASURE",
    "cost_utility_by_group",
    "cost_utility_employed",
    "for_display",
    "implementation_cost_table",
    "load_implementation_costs",
    "non_back_pain_columns",
    "iter_bootstrap_indices",
    "iter_cluster_bootstrap_weights",
    "load_unit_costs",
    "patient_costs",
    "plot_ce_plane",
    "plot_ceac",
    "prepare_economic_data",
    "qaly_auc",
    "results_table",
    "trapezium_auc",
]

#: The bundled unit-cost table (2009/10 prices).
DEFAULT_UNIT_COSTS = resource_path(DATA_PACKAGE, "unit_costs.csv")  # data/unit_costs.csv in the repository

#: Analysis-dataset column -> unit-cost item, for the NHS perspective.
RESOURCE_ITEMS: dict[str, str] = {
    "n_gp_consultations": "gp_consultation",
    "physio_sessions": "physio_session",
    "imaging": "imaging",
    "n_prescriptions": "prescription",
    "secondary_care_referral": "secondary_care_referral",
}

#: Analysis-dataset column -> unit-cost item valued only in the societal perspective.
PRODUCTIVITY_RESOURCE: dict[str, str] = {"days_off_work_6m": "day_off_work"}

#: Non-back-pain NHS care (sensitivity scenario, issue 18 item 7): analysis-dataset column ->
#: unit-cost item. Used only when the export has these columns (the bundled export has none).
NON_BACK_PAIN_ITEMS: dict[str, str] = {
    "n_gp_consultations_other": "gp_consultation",
    "n_prescriptions_other": "prescription",
}

#: The bundled implementation-cost table (2009/10 prices).
DEFAULT_IMPLEMENTATION_COSTS = resource_path(DATA_PACKAGE, "implementation_costs.csv")

#: How each implementation-cost row's quantity is counted (``quantity_basis`` column).
QUANTITY_BASES: dict[str, str] = {
    "total": "the quantity as given",
    "per_gp": "quantity x number of GPs",
    "per_physio": "quantity x number of physiotherapists",
    "per_gp_training_day": "quantity x training days attended by GPs",
    "per_physio_training_day": "quantity x training days attended by physiotherapists",
    "per_mentoring_session": "quantity x mentoring sessions of physiotherapists",
    "per_practice": "quantity x number of practices",
    "per_patient": "quantity per stratified-care patient",
}

#: EQ-5D-3L index columns of the analysis dataset and their times in months.
EQ5D_COLUMNS: tuple[str, ...] = ("eq5d_index_0m", "eq5d_index_2m", "eq5d_index_6m")
EQ5D_MONTHS: tuple[float, ...] = (0.0, 2.0, 6.0)

UNIT_COST_COLUMNS = ["item", "unit", "cost_gbp", "price_year", "source", "notes"]
_RESULT_COLUMNS = ["estimate", "ci_low", "ci_high", "p_value"]


class EconomicsError(BackpainError, ValueError):
    """Bad input to the economics functions (unit-cost table, columns, options)."""


# ---------------------------------------------------------------------------------------------
# Unit costs and patient costs
# ---------------------------------------------------------------------------------------------
def load_unit_costs(path: str | Path | None = None) -> pd.DataFrame:
    """Read and check the unit-cost table.

    Parameters
    ----------
    path : str or Path, optional
        A CSV file with columns item, unit, cost_gbp, price_year, source, notes. Default: the
        bundled ``data/unit_costs.csv`` (UK NHS 2009/10 prices; see its ``source`` column).

    Returns
    -------
    DataFrame
        One row per item: ``item`` (str, unique), ``unit``, ``cost_gbp`` (float, >= 0),
        ``price_year``, ``source``, ``notes``.

    Raises
    ------
    EconomicsError
        If a column is missing, an item is repeated or blank, or a cost is missing, not a
        number or negative (the message names the file, column and offending rows).

    Examples
    --------
    >>> costs = load_unit_costs()
    >>> float(costs.set_index("item").loc["gp_consultation", "cost_gbp"])
    36.0
    """
    path = Path(path) if path is not None else DEFAULT_UNIT_COSTS
    return _read_cost_table(path, "unit-cost table", UNIT_COST_COLUMNS)


def _read_cost_table(path: Path, what: str, columns: list[str]) -> pd.DataFrame:
    """Read a sourced cost table and check item (unique, not blank) and cost_gbp (number >= 0)."""
    if not path.exists():
        raise EconomicsError(f"{what} {path}: file not found")
    table = pd.read_csv(path, dtype={"price_year": str})
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise EconomicsError(f"{what} {path}: missing column(s) {missing}; expected columns {columns}")
    items = table["item"].astype(str).str.strip()
    if table["item"].isna().any() or (items == "").any():
        raise EconomicsError(f"{what} {path}: column 'item' has a blank value (rows {list(table.index[table['item'].isna()])})")
    dup = items[items.duplicated()].tolist()
    if dup:
        raise EconomicsError(f"{what} {path}: column 'item' must be unique; repeated: {dup}")
    for column in [c for c in ("cost_gbp", "quantity") if c in columns]:
        value = pd.to_numeric(table[column], errors="coerce")
        bad = table.loc[value.isna() | (value < 0), ["item", column]]
        if len(bad):
            raise EconomicsError(
                f"{what} {path}: column {column!r} must be a number >= 0; bad rows: {bad.to_dict(orient='records')}"
            )
        table = table.assign(**{column: value.astype(float)})
    return table.assign(item=items)[columns]


IMPLEMENTATION_COST_COLUMNS = ["item", "unit", "cost_gbp", "quantity", "quantity_basis", "price_year", "source",
                               "notes"]


def load_implementation_costs(path: str | Path | None = None) -> pd.DataFrame:
    """Read and check the implementation-cost table (training, mentoring, set-up, screening time).

    Parameters
    ----------
    path : str or Path, optional
        A CSV file with columns item, unit, cost_gbp, quantity, quantity_basis, price_year,
        source, notes. Default: the bundled ``data/implementation_costs.csv`` (2009/10 prices;
        values marked OPEN in its ``source`` column are assumed defaults, not published figures).

    Returns
    -------
    DataFrame
        One row per item: ``item`` (unique), ``unit``, ``cost_gbp`` (unit cost, float >= 0),
        ``quantity`` (float >= 0), ``quantity_basis`` (one of :data:`QUANTITY_BASES`),
        ``price_year``, ``source``, ``notes``.

    Raises
    ------
    EconomicsError
        A missing column, a repeated or blank item, a cost or quantity that is not a number
        >= 0, or an unknown ``quantity_basis`` (the message names the file and the rows).

    Examples
    --------
    >>> t = load_implementation_costs()
    >>> row = t.set_index("item").loc["physio_training_day"]
    >>> float(row["cost_gbp"]), row["quantity_basis"]
    (255.0, 'per_physio_training_day')
    """
    path = Path(path) if path is not None else DEFAULT_IMPLEMENTATION_COSTS
    table = _read_cost_table(path, "implementation-cost table", IMPLEMENTATION_COST_COLUMNS)
    basis = table["quantity_basis"].astype(str).str.strip()
    bad = table.loc[~basis.isin(list(QUANTITY_BASES)), ["item", "quantity_basis"]]
    if len(bad):
        raise EconomicsError(f"implementation-cost table {path}: column 'quantity_basis' must be one of "
                             f"{list(QUANTITY_BASES)}; bad rows: {bad.to_dict(orient='records')}")
    return table.assign(quantity_basis=basis)


def implementation_cost_table(
    n_patients: int,
    clinicians: pd.DataFrame | None = None,
    table: pd.DataFrame | None = None,
    *,
    n_practices: int | None = None,
) -> pd.DataFrame:
    """Implementation costs in all and per stratified-care patient (the documented scenario).

    Parameters
    ----------
    n_patients : int
        Stratified-care (phase 3) patients the one-off costs are spread over; per-patient items
        (screening staff time) are charged to each of them.
    clinicians : DataFrame, optional
        The cleaned ``clinicians`` table (``profession``, ``training_days``,
        ``mentoring_sessions``, ``practice_id``): counts GPs, physiotherapists, training days and
        mentoring sessions. Needed for rows whose basis uses them.
    table : DataFrame, optional
        From :func:`load_implementation_costs`; default the bundled table.
    n_practices : int, optional
        Practices for ``per_practice`` rows; default the distinct ``practice_id`` of the GPs.

    Returns
    -------
    DataFrame
        One row per item, then a ``total`` row: ``item``, ``unit``, ``cost_gbp`` (unit cost),
        ``quantity_basis``, ``units`` (the counted quantity), ``total_gbp`` (units x unit cost),
        ``per_patient_gbp`` (total / n_patients, or the unit cost x quantity for per-patient
        rows), ``source``.

    Raises
    ------
    EconomicsError
        ``n_patients`` < 1, or a row needs the clinicians table (or a column of it) that is not
        given.

    Notes
    -----
    Micro-costing of the implementation phase (phase 2 of IMPaCT Back: training, mentoring,
    IT templates, practice staff time to give out the questionnaire). Scenario, as in
    Whitehurst et al. (Spine 2015) who analysed the care costs only: the one-off costs are
    charged in full to the patients of phase 3 (a conservative choice: the training keeps
    serving patients after the study), the same amount to every patient. Clinicians' time
    is valued at its opportunity cost (PSSRU unit costs of the price year of the unit-cost table).

    Examples
    --------
    >>> clin = pd.DataFrame({"clinician_id": ["G1", "G2", "P1"], "profession": ["gp", "gp", "physio"],
    ...                      "practice_id": ["A", "B", None], "training_days": [1.0, 0.5, 4.0],
    ...                      "mentoring_sessions": [None, None, 6.0]})
    >>> t = implementation_cost_table(100, clin)
    >>> float(t.set_index("item").loc["physio_training_day", "total_gbp"]), round(float(t["per_patient_gbp"].iloc[-1]), 2)
    (1020.0, 151.6)
    """
    if n_patients < 1:
        raise EconomicsError(f"implementation costs: n_patients must be >= 1, got {n_patients}")
    table = load_implementation_costs() if table is None else table
    counts: dict[str, float] = {"total": 1.0, "per_patient": float(n_patients)}
    if clinicians is not None:
        prof = clinicians["profession"].astype(str).str.strip().str.lower()
        counts["per_gp"] = float((prof == "gp").sum())
        counts["per_physio"] = float((prof == "physio").sum())
        for column, basis in (("training_days", "training_day"), ("mentoring_sessions", None)):
            if column not in clinicians.columns:
                continue
            value = pd.to_numeric(clinicians[column], errors="coerce")
            if basis:
                counts["per_gp_training_day"] = float(value[prof == "gp"].sum())
                counts["per_physio_training_day"] = float(value[prof == "physio"].sum())
            else:
                counts["per_mentoring_session"] = float(value[prof == "physio"].sum())
        if "practice_id" in clinicians.columns:
            counts["per_practice"] = float(clinicians.loc[prof == "gp", "practice_id"].dropna().nunique())
    if n_practices is not None:
        counts["per_practice"] = float(n_practices)
    rows = []
    for _, r in table.iterrows():
        if r["quantity_basis"] not in counts:
            raise EconomicsError(f"implementation costs: item {r['item']!r} is counted {r['quantity_basis']!r} "
                                 "but the clinicians table (or the column it needs, or n_practices) was not given")
        units = float(r["quantity"]) * counts[r["quantity_basis"]]
        total = units * float(r["cost_gbp"])
        rows.append({"item": r["item"], "unit": r["unit"], "cost_gbp": float(r["cost_gbp"]),
                     "quantity_basis": r["quantity_basis"], "units": units, "total_gbp": total,
                     "per_patient_gbp": total / n_patients, "source": r["source"]})
    out = pd.DataFrame(rows)
    total_row = {"item": "total", "unit": "", "cost_gbp": np.nan, "quantity_basis": "", "units": np.nan,
                 "total_gbp": out["total_gbp"].sum(), "per_patient_gbp": out["per_patient_gbp"].sum(), "source": ""}
    return pd.concat([out, pd.DataFrame([total_row])], ignore_index=True)


def add_implementation_cost(
    datasets: pd.DataFrame | Sequence[pd.DataFrame],
    per_patient: float,
    *,
    columns: Sequence[str] = ("nhs_cost", "societal_cost"),
    phase: float = 3,
) -> list[pd.DataFrame]:
    """Add an implementation cost per patient to the stratified-care arm (copies; inputs unchanged).

    Parameters
    ----------
    datasets : DataFrame or list of DataFrame
        From :func:`prepare_economic_data`.
    per_patient : float
        GBP per patient (:func:`implementation_cost_table`, the ``total`` row's
        ``per_patient_gbp``).
    columns : sequence of str
        Cost columns to increase (NHS and societal by default).
    phase : float, default 3
        The arm that bears the cost.

    Returns
    -------
    list of DataFrame
        The data sets with ``per_patient`` added to ``columns`` of every ``phase`` row: the
        incremental cost rises by exactly ``per_patient``.

    Examples
    --------
    >>> d = pd.DataFrame({"phase": [1.0, 3.0], "nhs_cost": [10.0, 20.0], "societal_cost": [30.0, 40.0]})
    >>> add_implementation_cost(d, 5.0)[0]["nhs_cost"].tolist()
    [10.0, 25.0]
    """
    if isinstance(datasets, pd.DataFrame):
        datasets = [datasets]
    if not np.isfinite(per_patient) or per_patient < 0:
        raise EconomicsError(f"implementation cost per patient must be a number >= 0, got {per_patient}")
    out = []
    for d in datasets:
        missing = [c for c in columns if c not in d.columns]
        if missing:
            raise EconomicsError(f"add_implementation_cost: data lack column(s) {missing}")
        d = d.copy()
        arm = d["phase"] == phase
        for c in columns:
            d.loc[arm, c] = d.loc[arm, c] + per_patient
        out.append(d)
    return out


def non_back_pain_columns(df: pd.DataFrame, items: Mapping[str, str] | None = None) -> dict[str, str]:
    """The non-back-pain care columns (:data:`NON_BACK_PAIN_ITEMS`) the export has, column -> unit-cost item.

    Examples
    --------
    >>> non_back_pain_columns(pd.DataFrame({"n_gp_consultations_other": [1.0]}))
    {'n_gp_consultations_other': 'gp_consultation'}
    """
    items = NON_BACK_PAIN_ITEMS if items is None else items
    return {c: i for c, i in items.items() if c in df.columns and df[c].notna().any()}


def _cost_lookup(unit_costs: pd.DataFrame, items: Sequence[str]) -> dict[str, float]:
    lookup = dict(zip(unit_costs["item"], unit_costs["cost_gbp"].astype(float), strict=True))
    missing = [i for i in items if i not in lookup]
    if missing:
        raise EconomicsError(
            f"unit-cost table: no row for item(s) {missing}; items present: {sorted(lookup)}"
        )
    return {i: lookup[i] for i in items}


def patient_costs(
    df: pd.DataFrame,
    unit_costs: pd.DataFrame | None = None,
    *,
    resources: Mapping[str, str] | None = None,
    productivity: Mapping[str, str] | None = None,
    employed_column: str | None = "employed",
) -> pd.DataFrame:
    """Cost each patient's resource use (NHS) and days off work (societal).

    Parameters
    ----------
    df : DataFrame
        The analysis dataset (or any frame with the resource-use columns).
    unit_costs : DataFrame, optional
        From :func:`load_unit_costs`; default the bundled table.
    resources : mapping, optional
        Resource-use column -> unit-cost item for NHS costs; default :data:`RESOURCE_ITEMS`.
    productivity : mapping, optional
        Column -> item for productivity costs; default :data:`PRODUCTIVITY_RESOURCE`.
    employed_column : str or None
        Patients with 0 in this column lose no paid work: their productivity cost is 0 even if
        days off work is missing. None to switch this off.

    Returns
    -------
    DataFrame
        Same index as ``df``, columns ``cost_<column>`` for each resource (quantity x unit
        cost), ``nhs_cost`` (sum; NaN if any component is missing), ``productivity_cost``
        (days off work x daily cost), ``societal_cost`` (``nhs_cost + productivity_cost``).
        Costs in GBP at the table's price year.

    Notes
    -----
    Back-pain-related NHS costs over 6 months as in Whitehurst et al. (Spine 2015); the index
    consultation is common to both phases and not costed. Productivity costs follow the human
    capital approach (days off work x mean daily earnings).

    Examples
    --------
    >>> d = pd.DataFrame({"n_gp_consultations": [2.0], "physio_sessions": [3.0], "imaging": [1.0],
    ...                   "n_prescriptions": [1.0], "secondary_care_referral": [0.0],
    ...                   "days_off_work_6m": [5.0], "employed": [1.0]})
    >>> c = patient_costs(d)
    >>> float(c.loc[0, "nhs_cost"]), float(c.loc[0, "productivity_cost"])
    (303.0, 585.0)
    """
    unit_costs = load_unit_costs() if unit_costs is None else unit_costs
    resources = dict(RESOURCE_ITEMS if resources is None else resources)
    productivity = dict(PRODUCTIVITY_RESOURCE if productivity is None else productivity)
    needed = list(resources) + list(productivity)
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise EconomicsError(f"patient_costs: analysis data lacks resource-use column(s) {missing}")
    prices = _cost_lookup(unit_costs, list(resources.values()) + list(productivity.values()))
    out = pd.DataFrame(index=df.index)
    for column, item in resources.items():
        quantity = pd.to_numeric(df[column], errors="coerce").astype(float)
        if (quantity < 0).any():
            raise EconomicsError(
                f"patient_costs: column {column!r} has negative quantities, e.g. {quantity[quantity < 0].head(3).tolist()}"
            )
        out[f"cost_{column}"] = quantity * prices[item]
    out["nhs_cost"] = out[[f"cost_{c}" for c in resources]].sum(axis=1, skipna=False)
    prod = pd.Series(0.0, index=df.index)
    for column, item in productivity.items():
        days = pd.to_numeric(df[column], errors="coerce").astype(float)
        if employed_column is not None and employed_column in df.columns:
            employed = pd.to_numeric(df[employed_column], errors="coerce")
            days = days.mask(employed == 0, 0.0)
        prod = prod + days * prices[item]
    out["productivity_cost"] = prod
    out["societal_cost"] = out["nhs_cost"] + out["productivity_cost"]
    return out


# ---------------------------------------------------------------------------------------------
# QALYs
# ---------------------------------------------------------------------------------------------
def trapezium_auc(values: Any, times: Sequence[float]) -> np.ndarray:
    """Area under each row's curve by the trapezium rule.

    Parameters
    ----------
    values : array-like, shape (n, k)
        One row per patient, one column per time point.
    times : sequence of k floats
        Strictly increasing times (any unit; the area is in value x that unit).

    Returns
    -------
    ndarray, shape (n,)
        The area; NaN where any value of the row is missing.

    Examples
    --------
    >>> trapezium_auc([[0.5, 0.7, 0.9]], [0, 2, 6]).tolist()
    [4.4]
    """
    v = np.asarray(values, dtype=float)
    if v.ndim == 1:
        v = v[None, :]
    t = np.asarray(times, dtype=float)
    if v.shape[1] != t.size or t.size < 2:
        raise EconomicsError(f"trapezium_auc: {v.shape[1]} value columns but {t.size} times (need >= 2, equal)")
    if np.any(np.diff(t) <= 0):
        raise EconomicsError(f"trapezium_auc: times must be strictly increasing, got {t.tolist()}")
    return ((v[:, 1:] + v[:, :-1]) / 2.0 * np.diff(t)).sum(axis=1)


def qaly_auc(
    df: pd.DataFrame,
    columns: Sequence[str] = EQ5D_COLUMNS,
    months: Sequence[float] = EQ5D_MONTHS,
) -> pd.Series:
    """QALYs over follow-up from EQ-5D-3L index values (area under the curve, in years).

    Parameters
    ----------
    df : DataFrame
        Has the EQ-5D index columns (UK tariff, :func:`backpain_analysis.scoring.eq5d3l_index`).
    columns : sequence of str
        Index columns in time order (default baseline, 2 and 6 months).
    months : sequence of float
        Their times in months.

    Returns
    -------
    Series
        ``qaly``: trapezium area / 12 (years); NaN if any time point is missing.

    Examples
    --------
    >>> d = pd.DataFrame({"eq5d_index_0m": [0.5], "eq5d_index_2m": [0.7], "eq5d_index_6m": [0.9]})
    >>> round(float(qaly_auc(d).iloc[0]), 4)
    0.3667
    """
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise EconomicsError(f"qaly_auc: data lack EQ-5D column(s) {missing}")
    area = trapezium_auc(df[list(columns)].to_numpy(dtype=float), months)
    return pd.Series(area / 12.0, index=df.index, name="qaly")


# ---------------------------------------------------------------------------------------------
# Analysis data sets (complete cases or multiple imputation)
# ---------------------------------------------------------------------------------------------
_IMPUTE_PREDICTORS = ("age", "female", "rmdq_0m", "risk_medium", "risk_high", "employed")


def prepare_economic_data(
    df: pd.DataFrame,
    unit_costs: pd.DataFrame | None = None,
    *,
    imputation: str = "shared",
    n_imputations: int = 20,
    seed: int = 20260101,
    max_iter: int = 10,
    non_back_pain: bool = False,
    imputations: Sequence[pd.DataFrame] | None = None,
    cache_dir: str | Path | None = None,
) -> list[pd.DataFrame]:
    """Analysis-ready data sets for the cost-utility analysis.

    Parameters
    ----------
    df : DataFrame
        The analysis dataset (one row per analysed patient; columns of docs/architecture.md).
    unit_costs : DataFrame, optional
        From :func:`load_unit_costs`; default the bundled table.
    imputation : {"shared", "mice", "complete_case"}, default "shared"
        ``"shared"``: the whole analysed cohort (intention to treat) with the imputations that
        chapter 05 uses (:func:`backpain_analysis.imputation.shared_imputations`, one congenial,
        practice-aware model that also imputes EQ-5D, the NHS cost components and days off
        work). ``"mice"`` (sensitivity): missing EQ-5D values, NHS cost components and
        productivity costs imputed for the economics alone by chained equations
        (:func:`backpain_analysis.imputation.impute_chained`), separately within each phase,
        without practice. ``"complete_case"``: one data set of the patients with every cost
        component and the three EQ-5D values.
    n_imputations : int, default 20
        Number of imputed data sets (``"shared"`` when ``imputations`` is not given, and
        ``"mice"``). Chapter 07 takes m from chapter 05's rule
        (:func:`backpain_analysis.outcomes.imputations_by_rule`) and passes ``imputations``.
    seed : int
        Seed of the imputation.
    max_iter : int
        Chained-equation iterations.
    non_back_pain : bool, default False
        Sensitivity scenario (issue 18 item 7): add the non-back-pain NHS care the export has
        (:data:`NON_BACK_PAIN_ITEMS`, :func:`non_back_pain_columns`) to the NHS cost.
    imputations : sequence of DataFrame, optional
        ``"shared"`` only: the shared imputations already made (an
        :class:`backpain_analysis.imputation.ImputedDatasets` from chapter 05's call, or any
        sequence of imputed copies of ``df`` with the same index). None: computed (or read from
        ``cache_dir``) by :func:`backpain_analysis.imputation.shared_imputations`.
    cache_dir : path, optional
        ``"shared"`` only: the imputation cache folder (``OUT/_imputations`` in a report run);
        the same data, seed, m and iterations as chapter 05 reuse its imputations.

    Returns
    -------
    list of DataFrame
        Each with columns ``phase`` (1/3), ``practice_id`` (when the data have it: the cluster
        of the two-stage bootstrap), ``risk_group`` (category), ``eq5d_index_0m``,
        ``eq5d_index_2m``, ``eq5d_index_6m``, ``qaly`` (years), ``cost_<column>`` (one NHS cost
        component per resource-use column, GBP), ``nhs_cost`` (their sum), ``productivity_cost``,
        ``societal_cost`` (GBP), ``employed``; no patient identifier.

    Raises
    ------
    EconomicsError
        Unknown ``imputation``, missing columns, a phase other than 1 or 3,
        ``non_back_pain=True`` with no non-back-pain column in the export, or (``"shared"``)
        imputations made from other rows or leaving a needed value missing (a column the shared
        model does not impute: the message names it).

    Notes
    -----
    The NHS cost is the sum of its components and is missing only when one of them is: a
    non-consenter's physiotherapy sessions (from the physiotherapy records) are observed and
    kept, only the record-review components are imputed. Under either imputation each
    component is imputed (predictive mean matching, so imputed values are observed values)
    and the total is summed after imputation, from the observed components and the imputed
    ones only where a component is missing; productivity costs of patients not in paid work
    are 0. QALYs are computed after imputation from the imputed EQ-5D values.

    ``"shared"`` takes from each imputed data set the resource-use counts (GP consultations,
    imaging, prescriptions, secondary-care referral: :data:`backpain_analysis.outcomes.ECONOMIC_COLUMNS`),
    the EQ-5D index at 2 and 6 months (and at baseline, imputed as a baseline predictor when
    missing), days off work (imputed for employed patients) and employment (imputed when
    missing), fills only the missing cells of ``df`` with them and prices them with the unit
    costs: the model is chapter 05's (within phase, practice indicators, the outcomes and
    auxiliary variables as predictors), so costs and utilities keep their practice-period
    means and their correlation with the clinical outcomes. Physiotherapy sessions and the
    non-back-pain items are not in that model: with missing values there the function stops
    (use ``"mice"``) rather than analyse a silent subset.

    ``"mice"`` predictors: age, female, baseline RMDQ, risk group (dummies), employment and the
    other components (missing predictor values are imputed along with the rest); productivity
    cost is imputed as a cost.

    Examples
    --------
    >>> d = pd.DataFrame({"phase": [1, 1, 3, 3], "risk_group": ["low", "high", "low", "high"],
    ...                   "eq5d_index_0m": [0.8, 0.3, 0.7, 0.2], "eq5d_index_2m": [0.9, 0.5, np.nan, 0.4],
    ...                   "eq5d_index_6m": [1.0, 0.6, 0.9, 0.7], "n_gp_consultations": [1.0, 2.0, 0.0, 3.0],
    ...                   "physio_sessions": [0.0, 4.0, 0.0, 6.0], "imaging": [0.0, 1.0, 0.0, 0.0],
    ...                   "n_prescriptions": [1.0, 2.0, 0.0, 1.0], "secondary_care_referral": [0.0] * 4,
    ...                   "days_off_work_6m": [0.0, 10.0, 2.0, 5.0], "employed": [1.0] * 4})
    >>> (cc,) = prepare_economic_data(d, imputation="complete_case")
    >>> len(cc), cc["qaly"].round(4).tolist()
    (3, [0.4583, 0.25, 0.2333])
    >>> imputed = [d.fillna({"eq5d_index_2m": v}) for v in (0.6, 0.8)]  # e.g. from shared_imputations
    >>> [round(float(s.loc[2, "qaly"]), 4) for s in prepare_economic_data(d, imputations=imputed)]
    [0.3583, 0.4083]
    """
    if imputation not in ("shared", "mice", "complete_case"):
        raise EconomicsError(f"imputation must be 'shared', 'mice' or 'complete_case', got {imputation!r}")
    if imputations is not None and imputation != "shared":
        raise EconomicsError(f"prepare_economic_data: imputations are given but imputation={imputation!r}; "
                             "they are used only with imputation='shared'")
    needed = ["phase", "risk_group", *EQ5D_COLUMNS, *RESOURCE_ITEMS, *PRODUCTIVITY_RESOURCE]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise EconomicsError(f"prepare_economic_data: analysis data lack column(s) {missing}")
    resources = dict(RESOURCE_ITEMS)
    if non_back_pain:
        extra = non_back_pain_columns(df)
        if not extra:
            raise EconomicsError("prepare_economic_data: non_back_pain=True but the export has none of the columns "
                                 f"{list(NON_BACK_PAIN_ITEMS)}")
        resources.update(extra)
    costs = patient_costs(df, unit_costs, resources=resources)
    components = [f"cost_{c}" for c in resources]
    base = pd.DataFrame(
        {
            "phase": pd.to_numeric(df["phase"], errors="coerce").astype(float),
            **({"practice_id": df["practice_id"]} if "practice_id" in df.columns else {}),
            "risk_group": df["risk_group"],
            **{c: pd.to_numeric(df[c], errors="coerce").astype(float) for c in EQ5D_COLUMNS},
            **{c: costs[c] for c in components},
            "nhs_cost": costs["nhs_cost"],
            "productivity_cost": costs["productivity_cost"],
            "employed": pd.to_numeric(df["employed"], errors="coerce").astype(float)
            if "employed" in df.columns
            else np.nan,
        },
        index=df.index,
    )
    bad_phase = sorted(set(base["phase"].dropna().unique()) - {1.0, 3.0})
    if bad_phase or base["phase"].isna().any():
        raise EconomicsError(f"prepare_economic_data: column 'phase' must be 1 or 3, found {bad_phase or 'missing values'}")
    if imputation == "complete_case":
        keep = base[[*EQ5D_COLUMNS, "nhs_cost", "productivity_cost"]].notna().all(axis=1)
        return [_finish(base.loc[keep], components)]
    if imputation == "shared":
        if imputations is None:
            from .imputation import shared_imputations

            imputations = shared_imputations(
                df, n_imputations=n_imputations, seed=seed, max_iter=max_iter, cache_dir=cache_dir, economics=True)
        return _from_shared(df, base, imputations, unit_costs, resources, components)

    from .imputation import impute_chained  # the chapter 05 implementation, shared

    risk = base["risk_group"].astype(str)
    work = pd.DataFrame(
        {
            "age": pd.to_numeric(df.get("age"), errors="coerce").astype(float) if "age" in df else np.nan,
            "female": pd.to_numeric(df.get("female"), errors="coerce").astype(float) if "female" in df else np.nan,
            "rmdq_0m": pd.to_numeric(df.get("rmdq_0m"), errors="coerce").astype(float) if "rmdq_0m" in df else np.nan,
            "risk_medium": (risk == "medium").astype(float).where(base["risk_group"].notna()),
            "risk_high": (risk == "high").astype(float).where(base["risk_group"].notna()),
            "employed": base["employed"],
            **{c: base[c] for c in EQ5D_COLUMNS},
            **{c: base[c] for c in components},
            "productivity_cost": base["productivity_cost"],
        },
        index=df.index,
    )
    work = work.loc[:, work.notna().any()]  # drop predictors absent from the data
    targets = [c for c in work.columns if work[c].isna().any()]
    seeds = np.random.SeedSequence(seed).generate_state(2)
    per_phase: list[list[pd.DataFrame]] = []
    for k, phase in enumerate((1.0, 3.0)):
        part = work.loc[base["phase"] == phase]
        cols = [c for c in targets if part[c].isna().any()]
        if not cols:
            per_phase.append([part.copy() for _ in range(n_imputations)])
            continue
        per_phase.append(
            impute_chained(part, cols, n_imputations=n_imputations, seed=int(seeds[k]), max_iter=max_iter)
        )
    datasets = []
    for m in range(n_imputations):
        imputed = pd.concat([per_phase[0][m], per_phase[1][m]]).reindex(df.index)
        out = base.copy()
        for c in [*EQ5D_COLUMNS, *components, "productivity_cost", "employed"]:
            out[c] = imputed[c].to_numpy(dtype=float)
        datasets.append(_finish(_bounded(out, components, base["employed"] == 0), components))
    return datasets


def _bounded(out: pd.DataFrame, components: Sequence[str], not_working: pd.Series) -> pd.DataFrame:
    """Costs >= 0, no earnings lost by patients ``not_working``, EQ-5D within the UK 3L tariff range."""
    for c in components:
        out[c] = out[c].clip(lower=0.0)
    out["productivity_cost"] = out["productivity_cost"].clip(lower=0.0).mask(not_working, 0.0)
    for c in EQ5D_COLUMNS:
        out[c] = out[c].clip(-0.594, 1.0)
    return out


def _from_shared(
    df: pd.DataFrame,
    base: pd.DataFrame,
    imputations: Sequence[pd.DataFrame],
    unit_costs: pd.DataFrame | None,
    resources: Mapping[str, str],
    components: Sequence[str],
) -> list[pd.DataFrame]:
    """The economic data sets from the shared imputations: observed cells kept, missing ones filled."""
    info = getattr(imputations, "info", None)
    if isinstance(info, Mapping) and "fingerprint" in info:
        from .imputation import data_fingerprint

        if info["fingerprint"] != data_fingerprint(df):
            raise EconomicsError(
                "prepare_economic_data: the shared imputations were made from other data (fingerprint "
                f"{info['fingerprint']}, these data {data_fingerprint(df)}): pass the analysis dataset that chapter "
                "05 imputed (same cut-off), or imputations=None to impute these data")
    if len(imputations) < 1:
        raise EconomicsError("prepare_economic_data: no shared imputations given")
    raw = [*EQ5D_COLUMNS, *resources, *PRODUCTIVITY_RESOURCE, "employed"]
    raw = [c for c in raw if c in df.columns]
    observed = {c: pd.to_numeric(df[c], errors="coerce").astype(float) for c in raw}
    datasets = []
    for m, imp in enumerate(imputations):
        if not imp.index.equals(df.index):
            raise EconomicsError(
                f"prepare_economic_data: shared imputation {m} has other rows than the analysis data "
                f"({len(imp)} rows vs {len(df)}; the index must be the same): impute these data")
        lacking = [c for c in raw if c not in imp.columns]
        if lacking:
            raise EconomicsError(f"prepare_economic_data: shared imputation {m} lacks column(s) {lacking}")
        filled = pd.DataFrame(
            {c: observed[c].where(observed[c].notna(), pd.to_numeric(imp[c], errors="coerce").astype(float))
             for c in raw},
            index=df.index,
        )
        employed = filled["employed"] if "employed" in filled.columns else pd.Series(np.nan, index=df.index)
        still = {c: int(filled[c].isna().sum()) for c in [*EQ5D_COLUMNS, *resources] if filled[c].isna().any()}
        for c in PRODUCTIVITY_RESOURCE:  # days off work are asked of (and imputed for) employed patients only
            unknown = filled[c].isna() & (employed != 0)
            if unknown.any():
                still[c] = int(unknown.sum())
        if still:
            raise EconomicsError(
                f"prepare_economic_data: the shared imputations leave values missing {still} (these columns are not "
                "in the shared imputation model, backpain_analysis.outcomes.ECONOMIC_COLUMNS and FOLLOWUP_COLUMNS); "
                "use imputation='mice' for these data")
        costs = patient_costs(filled, unit_costs, resources=resources)
        out = base.copy()
        for c in EQ5D_COLUMNS:
            out[c] = filled[c]
        for c in components:
            # the observed component where there is one, the priced imputed count only where it was missing
            out[c] = base[c].where(base[c].notna(), costs[c])
        out["productivity_cost"] = base["productivity_cost"].where(base["productivity_cost"].notna(),
                                                                   costs["productivity_cost"])
        out["employed"] = employed.to_numpy()
        # an observed days-off answer is kept; an imputed one counts only for a patient in paid work
        not_working = (employed == 0) & base["productivity_cost"].isna()
        datasets.append(_finish(_bounded(out, components, not_working), components))
    return datasets


def _finish(d: pd.DataFrame, components: Sequence[str]) -> pd.DataFrame:
    d = d.copy()
    d["nhs_cost"] = d[list(components)].sum(axis=1, skipna=False)
    d["qaly"] = qaly_auc(d)
    d["societal_cost"] = d["nhs_cost"] + d["productivity_cost"]
    return d.reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Vectorized bootstrap
# ---------------------------------------------------------------------------------------------
def iter_bootstrap_indices(
    strata: Any, n_boot: int, seed: int | np.random.Generator, *, chunk_size: int = 1000
) -> Iterator[np.ndarray]:
    """Bootstrap index matrices that resample rows within strata, in chunks of replicates.

    Parameters
    ----------
    strata : array-like, shape (n,)
        Stratum of each row (e.g. phase); each replicate keeps every stratum's size.
    n_boot : int
        Number of replicates in all.
    seed : int or numpy Generator
        Seed of ``numpy.random.default_rng``.
    chunk_size : int
        Replicates per yielded matrix (bounds memory at chunk_size x n integers).

    Yields
    ------
    ndarray of int, shape (<= chunk_size, n)
        Row ``b`` lists the row numbers drawn for replicate ``b``: columns of stratum ``s``
        draw, with replacement, only rows of stratum ``s``.

    Examples
    --------
    >>> idx = next(iter_bootstrap_indices([1, 1, 3], 4, 0))
    >>> idx.shape, bool((idx[:, 2] == 2).all())
    ((4, 3), True)
    """
    strata = np.asarray(strata)
    if n_boot < 1:
        raise EconomicsError(f"n_boot must be >= 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(strata == s) for s in pd.unique(strata)]
    done = 0
    while done < n_boot:
        b = min(chunk_size, n_boot - done)
        idx = np.empty((b, strata.size), dtype=np.int64)
        for members in groups:
            idx[:, members] = members[rng.integers(0, members.size, size=(b, members.size))]
        yield idx
        done += b


def iter_cluster_bootstrap_weights(
    strata: Any, clusters: Any, n_boot: int, seed: int | np.random.Generator, *, chunk_size: int = 1000
) -> Iterator[np.ndarray]:
    """Two-stage cluster bootstrap within strata, as count weights, in chunks of replicates.

    Parameters
    ----------
    strata : array-like, shape (n,)
        Stratum of each row (e.g. phase); clusters are resampled within their stratum.
    clusters : array-like, shape (n,)
        Cluster of each row (e.g. practice). A cluster spanning two strata is a different
        cluster in each (practice-by-phase).
    n_boot : int
        Number of replicates in all.
    seed : int or numpy Generator
        Seed of ``numpy.random.default_rng``.
    chunk_size : int
        Replicates per yielded matrix.

    Yields
    ------
    ndarray of float, shape (<= chunk_size, n)
        Times each row is drawn in each replicate.

    Notes
    -----
    Stage 1 draws, within each stratum, as many clusters as it has, with replacement; stage 2
    draws, within each drawn cluster, as many patients as it has, with replacement (Davison &
    Hinkley 1997, section 3.8; Ng, Grieve & Carpenter, Stat Med 2013;32:1808-21 for
    cost-effectiveness in cluster designs). A cluster drawn ``k`` times receives ``k``
    independent draws of its ``n_g`` patients, i.e. multinomial(``k n_g``, 1/``n_g``) counts, which
    is how the weights are generated (one multinomial per cluster and replicate). The
    two-stage bootstrap variance of a mean is ``(1/G) S_b + (1/G) mean(s_g^2 / n_g)`` (ddof 0 both),
    so with few clusters it is slightly conservative for the between-cluster part and
    ``(G-1)/G`` small for it: documented, not corrected.

    Examples
    --------
    >>> w = next(iter_cluster_bootstrap_weights([1, 1, 1, 3, 3], ["a", "a", "b", "c", "c"], 4, 0))
    >>> w.shape, w[:, :3].sum(axis=1).tolist(), w[:, 3:].sum(axis=1).tolist()
    ((4, 5), [2.0, 3.0, 4.0, 4.0], [2.0, 2.0, 2.0, 2.0])
    """
    strata = np.asarray(strata)
    clusters = np.asarray(clusters)
    if clusters.shape != strata.shape:
        raise EconomicsError(f"cluster bootstrap: {clusters.size} cluster labels for {strata.size} rows")
    if pd.isna(clusters).any():
        raise EconomicsError("cluster bootstrap: cluster labels must not be missing")
    if n_boot < 1:
        raise EconomicsError(f"n_boot must be >= 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    groups = []
    for s in pd.unique(strata):
        rows = np.flatnonzero(strata == s)
        groups.append([rows[clusters[rows] == c] for c in pd.unique(clusters[rows])])
    done = 0
    while done < n_boot:
        b = min(chunk_size, n_boot - done)
        w = np.zeros((b, strata.size))
        for members in groups:
            g = len(members)
            picks = rng.integers(0, g, size=(b, g))
            times = np.stack([(picks == j).sum(axis=1) for j in range(g)], axis=1)  # (b, g)
            for j, rows in enumerate(members):
                n_g = rows.size
                w[:, rows] = rng.multinomial(times[:, j] * n_g, np.full(n_g, 1.0 / n_g))
        yield w
        done += b


def _counts(idx: np.ndarray) -> np.ndarray:
    """How many times each row is drawn in each replicate: (B, n) float weights."""
    b, n = idx.shape
    flat = idx + (np.arange(b, dtype=np.int64) * n)[:, None]
    return np.bincount(flat.ravel(), minlength=b * n).reshape(b, n).astype(float)


def bootstrap_ols(
    X: np.ndarray, ys: Mapping[str, np.ndarray], weights: np.ndarray
) -> dict[str, np.ndarray]:
    """Ordinary least squares on many bootstrap replicates at once.

    Parameters
    ----------
    X : ndarray, shape (n, p)
        Design matrix (with intercept column).
    ys : mapping name -> ndarray (n,)
        Outcomes sharing the design.
    weights : ndarray, shape (B, n)
        Times each row is drawn in each replicate (:func:`iter_bootstrap_indices` counts).

    Returns
    -------
    dict name -> ndarray (B, p)
        Coefficients per replicate (the same as OLS on the resampled rows).

    Examples
    --------
    >>> X = np.column_stack([np.ones(4), [0, 0, 1, 1]])
    >>> bootstrap_ols(X, {"y": np.array([1.0, 3, 4, 6])}, np.ones((1, 4)))["y"].round(6).tolist()
    [[2.0, 3.0]]
    """
    n, p = X.shape
    xx = (X[:, :, None] * X[:, None, :]).reshape(n, p * p)
    xtx = (weights @ xx).reshape(-1, p, p)
    out = {}
    for name, y in ys.items():
        xty = weights @ (X * y[:, None])
        try:
            out[name] = np.linalg.solve(xtx, xty[..., None])[..., 0]
        except np.linalg.LinAlgError:  # a degenerate replicate: least squares per replicate
            out[name] = np.stack([np.linalg.lstsq(a, v, rcond=None)[0] for a, v in zip(xtx, xty, strict=True)])
    return out


# ---------------------------------------------------------------------------------------------
# Cost-utility
# ---------------------------------------------------------------------------------------------
@dataclass
class CostUtilityResult:
    """Incremental cost and QALYs (phase 3 minus phase 1) with their bootstrap replicates.

    Attributes
    ----------
    label : str
        Population (e.g. "all patients", "high risk").
    perspective : str
        Cost column used (``nhs_cost`` or ``societal_cost``).
    n_phase1, n_phase3 : int
        Patients analysed per phase (per imputed data set; all analysed under MICE).
    delta_cost, delta_qaly : dict
        ``estimate``, ``ci_low``, ``ci_high``, ``p_value``, ``se``.
    mean_cost, mean_qaly : dict
        Unadjusted means per phase, keys ``phase1`` and ``phase3``.
    boot_cost, boot_qaly : ndarray
        Bootstrap replicates of the increments (stacked over imputations).
    point_cost, point_qaly : ndarray
        The point estimates per imputed data set (one value for complete cases).
    boot_groups : ndarray
        Imputation number of each replicate.
    method : str
        How the CIs were obtained.
    """

    label: str
    perspective: str
    n_phase1: int
    n_phase3: int
    delta_cost: dict[str, float]
    delta_qaly: dict[str, float]
    mean_cost: dict[str, float]
    mean_qaly: dict[str, float]
    boot_cost: np.ndarray = field(repr=False)
    boot_qaly: np.ndarray = field(repr=False)
    point_cost: np.ndarray = field(repr=False)
    point_qaly: np.ndarray = field(repr=False)
    boot_groups: np.ndarray = field(repr=False)
    method: str = ""

    @property
    def icer(self) -> float:
        """Incremental cost per QALY gained (point estimates); NaN if the QALY increment is 0."""
        q = self.delta_qaly["estimate"]
        return float(self.delta_cost["estimate"] / q) if q != 0 else float("nan")

    def ceac(self, wtp: Sequence[float] | np.ndarray | None = None) -> pd.DataFrame:
        """Cost-effectiveness acceptability curve.

        Parameters
        ----------
        wtp : array-like, optional
            Willingness-to-pay values (GBP per QALY); default 0 to 50,000 by 500.

        Returns
        -------
        DataFrame
            ``wtp`` and ``prob_cost_effective``: the share of bootstrap replicates whose net
            monetary benefit ``wtp * dQALY - dCost`` is positive.

        Examples
        --------
        >>> rng = np.random.default_rng(0)
        >>> d = pd.DataFrame({"phase": np.tile([1, 3], 50), "nhs_cost": rng.gamma(2, 50, 100)})
        >>> d["qaly"] = 0.3 + 0.02 * (d["phase"] == 3) + rng.normal(0, 0.01, 100)
        >>> res = cost_utility(d, baseline=None, n_boot=200, seed=1)
        >>> res.ceac([0, 50_000])["prob_cost_effective"].round(2).tolist()
        [0.18, 1.0]
        """
        grid = np.arange(0, 50_001, 500, dtype=float) if wtp is None else np.asarray(wtp, dtype=float)
        nmb = grid[:, None] * self.boot_qaly[None, :] - self.boot_cost[None, :]
        return pd.DataFrame({"wtp": grid, "prob_cost_effective": (nmb > 0).mean(axis=1)})

    def nmb(self, wtp: float) -> dict[str, float]:
        """Incremental net monetary benefit at a willingness to pay (GBP per QALY).

        Returns
        -------
        dict
            ``wtp``, ``estimate`` (``wtp * dQALY - dCost``), ``ci_low``, ``ci_high``,
            ``p_value``, ``prob_cost_effective`` (share of replicates with NMB > 0).

        Examples
        --------
        >>> rng = np.random.default_rng(0)
        >>> d = pd.DataFrame({"phase": np.tile([1, 3], 50), "nhs_cost": rng.gamma(2, 50, 100)})
        >>> d["qaly"] = 0.3 + 0.02 * (d["phase"] == 3) + rng.normal(0, 0.01, 100)
        >>> res = cost_utility(d, baseline=None, n_boot=200, seed=1)
        >>> nmb = res.nmb(20_000)
        >>> bool(abs(nmb["estimate"] - (20_000 * res.delta_qaly["estimate"] - res.delta_cost["estimate"])) < 1e-9)
        True
        """
        points = wtp * self.point_qaly - self.point_cost
        boots = wtp * self.boot_qaly - self.boot_cost
        summary = _summarise(points, boots, self.boot_groups)
        return {"wtp": float(wtp), **summary, "prob_cost_effective": float((boots > 0).mean())}


def _summarise(points: np.ndarray, boots: np.ndarray, groups: np.ndarray) -> dict[str, float]:
    """Point estimate, CI and p from per-imputation point estimates and bootstrap replicates.

    One data set: percentile CI, p from the bootstrap standard error (normal). Several imputed
    data sets: Rubin's rules with the bootstrap variance as the within-imputation variance.
    """
    if points.size == 1:
        est = float(points[0])
        se = float(np.std(boots, ddof=1)) if boots.size > 1 else float("nan")
        lo, hi = np.percentile(boots, [2.5, 97.5])
        p = float(2 * stats.norm.sf(abs(est) / se)) if se > 0 else float("nan")
        return {"estimate": est, "ci_low": float(lo), "ci_high": float(hi), "p_value": p, "se": se}
    from .imputation import pool_rubin

    variances = np.array([np.var(boots[groups == m], ddof=1) for m in range(points.size)])
    pooled = pool_rubin(list(points), list(variances))
    return {k: float(pooled[k]) for k in ("estimate", "ci_low", "ci_high", "p_value", "se")}


def cost_utility(
    datasets: pd.DataFrame | Sequence[pd.DataFrame],
    *,
    cost: str = "nhs_cost",
    qaly: str = "qaly",
    baseline: str | None = "eq5d_index_0m",
    adjust_cost_for_baseline: bool = False,
    n_boot: int = 2000,
    seed: int = 20260101,
    label: str = "all patients",
    cluster: str | None = "auto",
) -> CostUtilityResult:
    """Incremental cost and QALYs of phase 3 vs phase 1 with a vectorized bootstrap.

    Parameters
    ----------
    datasets : DataFrame or list of DataFrame
        From :func:`prepare_economic_data` (columns ``phase``, the cost and QALY columns and
        ``baseline``); several data sets = multiple imputations.
    cost, qaly : str
        Cost column (``"nhs_cost"``: NHS perspective; ``"societal_cost"``) and QALY column.
    baseline : str or None
        Baseline EQ-5D column adjusted for in the QALY regression; None for the raw difference.
    adjust_cost_for_baseline : bool
        Also adjust the cost difference for baseline EQ-5D (default: unadjusted mean difference).
    n_boot : int
        Bootstrap replicates in all (split evenly over imputed data sets).
    seed : int
        Seed; the same data and seed give the same numbers.
    label : str
        Name of the population, kept in the result.
    cluster : str, None or "auto", default "auto"
        Cluster column for a two-stage bootstrap (practices, then patients within practice,
        within each phase; :func:`iter_cluster_bootstrap_weights`). ``"auto"``: ``practice_id``
        when the data have it, else patients are resampled. ``None``: patients are resampled
        within phase (ignores clustering; understates the uncertainty when practices differ).

    Returns
    -------
    CostUtilityResult

    Notes
    -----
    Incremental QALYs are the phase coefficient of ``qaly ~ phase3 + baseline EQ-5D`` (OLS),
    incremental cost the difference in mean cost. Uncertainty: non-parametric bootstrap within
    each phase, two-stage (practices with replacement, then patients with replacement within
    each drawn practice) when a cluster column is used, so that the variation between practices
    is carried into the intervals, and costs and QALYs keep their joint distribution. All replicates are computed at once: index matrices (replicates x
    patients, :func:`iter_bootstrap_indices`) become count weights and the regressions are
    solved from weighted cross-products (:func:`bootstrap_ols`), which is the same as fitting
    each replicate. CIs are bootstrap percentiles (complete cases) or Rubin's rules with the
    bootstrap variance as within-imputation variance (MICE; Schomaker and Heumann 2018,
    "MI Boot Rubin"). The plane and CEAC use the replicates stacked over imputations.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> d = pd.DataFrame({"phase": np.repeat([1, 3], 50), "nhs_cost": rng.gamma(2, 50, 100),
    ...                   "eq5d_index_0m": rng.uniform(0.3, 0.9, 100)})
    >>> d["qaly"] = 0.4 * d["eq5d_index_0m"] + 0.2 + 0.01 * (d["phase"] == 3)
    >>> res = cost_utility(d, n_boot=200, seed=1)
    >>> round(res.delta_qaly["estimate"], 6)
    0.01
    """
    if isinstance(datasets, pd.DataFrame):
        datasets = [datasets]
    datasets = list(datasets)
    if not datasets:
        raise EconomicsError("cost_utility: no data sets given")
    if cost not in datasets[0].columns or qaly not in datasets[0].columns:
        raise EconomicsError(f"cost_utility: data need columns {cost!r} and {qaly!r}; have {list(datasets[0].columns)}")
    m_sets = len(datasets)
    per_set = int(np.ceil(n_boot / m_sets))
    seeds = _replicate_seeds(seed, m_sets)
    if cluster == "auto":
        cluster = "practice_id" if "practice_id" in datasets[0].columns else None
    if cluster is not None and cluster not in datasets[0].columns:
        raise EconomicsError(f"cost_utility: cluster column {cluster!r} is not in the data; have {list(datasets[0].columns)}")
    points_c, points_q, boots_c, boots_q, groups = [], [], [], [], []
    for m, d in enumerate(datasets):
        cols = ["phase", cost, qaly] + ([baseline] if baseline else [])
        d = d[cols + ([cluster] if cluster else [])].dropna(subset=cols)
        phase = d["phase"].to_numpy(dtype=float)
        n1, n3 = int((phase == 1).sum()), int((phase == 3).sum())
        if min(n1, n3) < 2:
            raise EconomicsError(f"cost_utility ({label}): need >= 2 patients per phase, have {n1} and {n3}")
        X_cost, X_qaly = _designs(d, baseline, adjust_cost_for_baseline)
        y_cost, y_qaly = d[cost].to_numpy(dtype=float), d[qaly].to_numpy(dtype=float)
        full = np.ones((1, len(d)))
        points_c.append(bootstrap_ols(X_cost, {"y": y_cost}, full)["y"][0, 1])
        points_q.append(bootstrap_ols(X_qaly, {"y": y_qaly}, full)["y"][0, 1])
        if cluster is None:
            weights = (_counts(idx) for idx in iter_bootstrap_indices(phase, per_set, int(seeds[m])))
        else:
            weights = iter_cluster_bootstrap_weights(phase, d[cluster].to_numpy(), per_set, int(seeds[m]))
        for w in weights:
            boots_c.append(bootstrap_ols(X_cost, {"y": y_cost}, w)["y"][:, 1])
            boots_q.append(bootstrap_ols(X_qaly, {"y": y_qaly}, w)["y"][:, 1])
            groups.append(np.full(w.shape[0], m))
    boot_c, boot_q, grp = np.concatenate(boots_c), np.concatenate(boots_q), np.concatenate(groups)
    pc, pq = np.asarray(points_c), np.asarray(points_q)
    means = [d.dropna(subset=[cost, qaly]).groupby("phase")[[cost, qaly]].mean() for d in datasets]
    mean_tab = sum(means) / m_sets
    return CostUtilityResult(
        label=label,
        perspective=cost,
        n_phase1=n1,
        n_phase3=n3,
        delta_cost=_summarise(pc, boot_c, grp),
        delta_qaly=_summarise(pq, boot_q, grp),
        mean_cost={"phase1": float(mean_tab.loc[1, cost]), "phase3": float(mean_tab.loc[3, cost])},
        mean_qaly={"phase1": float(mean_tab.loc[1, qaly]), "phase3": float(mean_tab.loc[3, qaly])},
        boot_cost=boot_c,
        boot_qaly=boot_q,
        point_cost=pc,
        point_qaly=pq,
        boot_groups=grp,
        method=("bootstrap percentile" if m_sets == 1 else f"Rubin's rules over {m_sets} imputations, bootstrap within")
        + (f"; two-stage bootstrap ({cluster}, then patients)" if cluster else "; patients resampled"),
    )


def _replicate_seeds(seed: int, m_sets: int) -> list[int]:
    """Seed of the bootstrap of each imputed data set (independent streams from one seed)."""
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(m_sets)]


def _designs(d: pd.DataFrame, baseline: str | None, adjust_cost: bool) -> tuple[np.ndarray, np.ndarray]:
    phase3 = (d["phase"].to_numpy(dtype=float) == 3).astype(float)
    ones = np.ones_like(phase3)
    simple = np.column_stack([ones, phase3])
    if baseline is None:
        return simple, simple
    adjusted = np.column_stack([ones, phase3, d[baseline].to_numpy(dtype=float)])
    return (adjusted if adjust_cost else simple), adjusted


def cost_utility_by_group(
    datasets: pd.DataFrame | Sequence[pd.DataFrame],
    by: str = "risk_group",
    *,
    overall: bool = True,
    min_per_phase: int = 5,
    **kwargs: Any,
) -> dict[str, CostUtilityResult]:
    """:func:`cost_utility` for all patients and within each level of ``by``.

    Parameters
    ----------
    datasets : DataFrame or list of DataFrame
        From :func:`prepare_economic_data`.
    by : str
        Grouping column (default ``risk_group``); levels in category order.
    overall : bool
        Also include all patients (key ``"all patients"``).
    min_per_phase : int
        Groups with fewer patients than this in either phase (in the first data set) are left
        out of the result: too few to estimate, and too few to show.
    **kwargs
        Passed to :func:`cost_utility` (cost, n_boot, seed, ...).

    Returns
    -------
    dict label -> CostUtilityResult
        Keys ``"all patients"`` and ``"<level> risk"`` (or the level name if ``by`` is not
        ``risk_group``).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> d = pd.DataFrame({"phase": np.tile([1, 3], 40), "risk_group": np.repeat(["low", "high"], 40),
    ...                   "nhs_cost": rng.gamma(2, 50, 80), "eq5d_index_0m": rng.uniform(0.2, 0.9, 80)})
    >>> d["qaly"] = 0.45 * d["eq5d_index_0m"] + rng.normal(0, 0.02, 80)
    >>> list(cost_utility_by_group(d, n_boot=100, seed=1))
    ['all patients', 'high risk', 'low risk']
    """
    if isinstance(datasets, pd.DataFrame):
        datasets = [datasets]
    first = datasets[0]
    if by not in first.columns:
        raise EconomicsError(f"cost_utility_by_group: data lack column {by!r}")
    col = first[by]
    levels = list(col.cat.categories) if isinstance(col.dtype, pd.CategoricalDtype) else sorted(col.dropna().unique())
    results = {}
    if overall:
        results["all patients"] = cost_utility(datasets, label="all patients", **kwargs)
    for level in levels:
        name = f"{level} risk" if by == "risk_group" else str(level)
        subsets = [d.loc[d[by] == level] for d in datasets]
        sizes = subsets[0]["phase"].value_counts()
        if min(sizes.get(1, 0), sizes.get(3, 0)) < min_per_phase:
            continue
        results[name] = cost_utility(subsets, label=name, **kwargs)
    return results


#: Measure label of the ICER row of :func:`results_table` (spelled out so that the display preset
#: formats it as money, not as QALYs).
ICER_MEASURE = "ICER in GBP per quality-adjusted life year gained (point estimates)"


def cost_utility_employed(
    datasets: pd.DataFrame | Sequence[pd.DataFrame],
    *,
    cost: str = "societal_cost",
    employed: str = "employed",
    by: str = "risk_group",
    **kwargs: Any,
) -> dict[str, CostUtilityResult]:
    """Societal cost-utility per employed patient, overall and by risk group.

    Parameters
    ----------
    datasets : DataFrame or list of DataFrame
        From :func:`prepare_economic_data` (``employed`` 0/1, imputed where missing under MICE).
    cost : str, default "societal_cost"
        Cost column (``"productivity_cost"`` for the days-off-work part alone).
    employed : str
        The employment column; patients with 1 are analysed.
    by : str
        Grouping column, as :func:`cost_utility_by_group`.
    **kwargs
        Passed to :func:`cost_utility_by_group` (n_boot, seed, min_per_phase, ...).

    Returns
    -------
    dict label -> CostUtilityResult
        As :func:`cost_utility_by_group`, restricted to patients in paid work.

    Notes
    -----
    Whitehurst et al. (Spine 2015) give the societal saving per employed medium- and high-risk
    patient. The phases differ in the share of patients in paid work (IMPaCT Back: 62% vs
    59%), and only they can lose earnings, so a per-patient societal difference over everyone
    mixes the effect of stratified care on days off work with the employment mix. Comparing
    employed patients with employed patients removes that imbalance (the estimand is the
    effect per employed patient); the QALY increment is re-estimated in the same patients.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> d = pd.DataFrame({"phase": np.tile([1.0, 3.0], 60), "risk_group": "high",
    ...                   "employed": np.repeat([1.0, 0.0], 60), "societal_cost": rng.gamma(2, 100, 120),
    ...                   "qaly": rng.normal(0.3, 0.02, 120)})
    >>> res = cost_utility_employed(d, baseline=None, n_boot=100, seed=1)
    >>> list(res), res["high risk"].n_phase1
    (['all patients', 'high risk'], 30)
    """
    if isinstance(datasets, pd.DataFrame):
        datasets = [datasets]
    if employed not in datasets[0].columns:
        raise EconomicsError(f"cost_utility_employed: data lack column {employed!r}")
    subsets = [d.loc[pd.to_numeric(d[employed], errors="coerce") == 1] for d in datasets]
    return cost_utility_by_group(subsets, by=by, cost=cost, **kwargs)


def results_table(
    results: Mapping[str, CostUtilityResult], wtp: Sequence[float] = (20_000, 30_000)
) -> pd.DataFrame:
    """One row per population and measure: incremental cost, QALYs and net monetary benefit.

    Returns
    -------
    DataFrame
        Columns ``population``, ``measure`` (incremental cost in GBP, incremental QALYs, the
        ICER (incremental cost over incremental QALYs, point estimates; no CI: a ratio's
        interval is not defined when the QALY interval includes 0, see the plane and CEAC), net
        monetary benefit at each willingness to pay; no commas in the labels), ``n_phase1``, ``n_phase3``,
        ``mean_phase1``, ``mean_phase3`` (costs and QALYs only), ``estimate``, ``ci_low``,
        ``ci_high``, ``p_value``, ``prob_cost_effective`` (NMB rows only).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> d = pd.DataFrame({"phase": np.tile([1, 3], 40), "nhs_cost": rng.gamma(2, 50, 80),
    ...                   "eq5d_index_0m": rng.uniform(0.2, 0.9, 80)})
    >>> d["qaly"] = 0.45 * d["eq5d_index_0m"] + rng.normal(0, 0.02, 80)
    >>> results_table({"all patients": cost_utility(d, n_boot=100, seed=1)})["measure"].tolist()[-1]
    'net monetary benefit in GBP at 30000 GBP per QALY'
    """
    rows = []
    for name, r in results.items():
        common = {"population": name, "n_phase1": r.n_phase1, "n_phase3": r.n_phase3}
        rows.append({**common, "measure": "incremental cost in GBP (phase 3 minus phase 1)",
                     "mean_phase1": r.mean_cost["phase1"], "mean_phase3": r.mean_cost["phase3"],
                     **{k: r.delta_cost[k] for k in _RESULT_COLUMNS}})
        rows.append({**common, "measure": "incremental QALYs (phase 3 minus phase 1; adjusted for baseline EQ-5D)",
                     "mean_phase1": r.mean_qaly["phase1"], "mean_phase3": r.mean_qaly["phase3"],
                     **{k: r.delta_qaly[k] for k in _RESULT_COLUMNS}})
        rows.append({**common, "measure": ICER_MEASURE, "estimate": r.icer})
        for w in wtp:
            nmb = r.nmb(w)
            rows.append({**common, "measure": f"net monetary benefit in GBP at {w:.0f} GBP per QALY",
                         **{k: nmb[k] for k in _RESULT_COLUMNS}, "prob_cost_effective": nmb["prob_cost_effective"]})
    cols = ["population", "measure", "n_phase1", "n_phase3", "mean_phase1", "mean_phase3", *_RESULT_COLUMNS,
            "prob_cost_effective"]
    return pd.DataFrame(rows).reindex(columns=cols)


def cost_summary(df: pd.DataFrame, unit_costs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Mean resource use and cost per patient by phase (observed values, no imputation).

    Parameters
    ----------
    df : DataFrame
        The analysis dataset.
    unit_costs : DataFrame, optional
        From :func:`load_unit_costs`; default the bundled table.

    Returns
    -------
    DataFrame
        Columns ``item``, ``unit_cost_gbp``, ``n_phase1``, ``n_phase3`` (patients with the item
        observed), ``mean_use_phase1``, ``mean_use_phase3``, ``mean_cost_phase1``,
        ``mean_cost_phase3`` (GBP per patient), then rows for the NHS, productivity and
        societal totals. Days off work count as 0 for patients not in paid work.

    Examples
    --------
    >>> d = pd.DataFrame({"phase": [1, 3], "n_gp_consultations": [1.0, 2.0], "physio_sessions": [0.0, 4.0],
    ...                   "imaging": [0.0, 0.0], "n_prescriptions": [1.0, 1.0], "secondary_care_referral": [0.0, 0.0],
    ...                   "days_off_work_6m": [0.0, 2.0], "employed": [1.0, 1.0]})
    >>> cost_summary(d).set_index("item").loc["total: nhs cost", "mean_cost_phase3"]
    np.float64(230.0)
    """
    unit_costs = load_unit_costs() if unit_costs is None else unit_costs
    prices = _cost_lookup(unit_costs, [*RESOURCE_ITEMS.values(), *PRODUCTIVITY_RESOURCE.values()])
    costs = patient_costs(df, unit_costs)
    phase = pd.to_numeric(df["phase"], errors="coerce")
    rows = []
    items = {**RESOURCE_ITEMS, **PRODUCTIVITY_RESOURCE}
    employed = pd.to_numeric(df["employed"], errors="coerce") if "employed" in df.columns else None
    for column, item in items.items():
        use = pd.to_numeric(df[column], errors="coerce").astype(float)
        if column in PRODUCTIVITY_RESOURCE:
            if employed is not None:  # as patient_costs: no earnings lost out of paid work
                use = use.mask(employed == 0, 0.0)
            cost_col = costs["productivity_cost"]
        else:
            cost_col = costs[f"cost_{column}"]
        row = {"item": item, "unit_cost_gbp": prices[item]}
        for p in (1, 3):
            sel = phase == p
            row[f"n_phase{p}"] = int(use[sel].notna().sum())
            row[f"mean_use_phase{p}"] = float(use[sel].mean())
            row[f"mean_cost_phase{p}"] = float(cost_col[sel].mean())
        rows.append(row)
    for total in ("nhs_cost", "productivity_cost", "societal_cost"):
        row = {"item": f"total: {total.replace('_', ' ')}", "unit_cost_gbp": np.nan}
        for p in (1, 3):
            sel = phase == p
            row[f"n_phase{p}"] = int(costs.loc[sel, total].notna().sum())
            row[f"mean_use_phase{p}"] = np.nan
            row[f"mean_cost_phase{p}"] = float(costs.loc[sel, total].mean())
        rows.append(row)
    return pd.DataFrame(rows)


#: Plain-words labels of the cost items and totals (display only).
ITEM_LABELS: dict[str, str] = {
    "gp_consultation": "GP consultation", "physio_session": "Physiotherapy session",
    "imaging": "Imaging (MRI or radiograph)", "prescription": "Prescription item",
    "secondary_care_referral": "Secondary care referral", "day_off_work": "Day off work",
    "total: nhs cost": "Total NHS cost", "total: productivity cost": "Total productivity cost",
    "total: societal cost": "Total societal cost", "physio_training_day": "Physiotherapist training day",
    "gp_training_day": "GP training day", "trainer_day": "Trainer day", "mentoring_session": "Mentoring session",
    "it_template": "IT template set-up", "questionnaire_staff_time": "Staff time for the screening questionnaire",
    "total": "Total",
}
#: Plain-words names of the ``imputation`` options of :func:`prepare_economic_data` (display).
ANALYSIS_LABELS: dict[str, str] = {"shared": "multiple imputation (shared with chapter 05)",
                                   "mice": "multiple imputation (economic variables only, per phase)",
                                   "complete_case": "complete cases"}


def for_display(table: pd.DataFrame) -> pd.DataFrame:
    """A chapter 07 table ready for :func:`backpain_analysis.presentation.display_table`.

    Cost-item codes become plain words in a ``resource`` column (``gp_consultation`` -> ``GP
    consultation``), quantity bases their description (:data:`QUANTITY_BASES`), and the
    missing-data codes of an ``analysis`` column their names. Values are otherwise unchanged.

    Returns
    -------
    DataFrame
        The table with ``item`` replaced by ``resource`` (first column) when it has ``item``.

    Examples
    --------
    >>> for_display(pd.DataFrame({"item": ["gp_consultation", "new_item"], "cost_gbp": [36.0, 1.0]}))["resource"].tolist()
    ['GP consultation', 'New item']
    """
    out = table.copy()
    if "item" in out.columns:
        names = out["item"].astype(str)
        label = names.map(lambda i: ITEM_LABELS.get(i, i.replace("_", " ").capitalize()))
        out = out.drop(columns=["item"])
        out.insert(0, "resource", label.to_numpy())
    if "quantity_basis" in out.columns:
        out["quantity_basis"] = out["quantity_basis"].map(lambda b: QUANTITY_BASES.get(b, b) if b else b)
    if "analysis" in out.columns:
        out["analysis"] = out["analysis"].map(lambda a: ANALYSIS_LABELS.get(a, a))
    return out


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------
def plot_ce_plane(results: Mapping[str, CostUtilityResult], *, wtp_lines: Sequence[float] = (20_000, 30_000),
                  max_points: int = 2000, seed: int = 0):
    """Cost-effectiveness plane: bootstrap replicates of (incremental QALYs, incremental cost).

    One panel per population, with willingness-to-pay lines and the point estimate.

    Returns
    -------
    matplotlib Figure

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> d = pd.DataFrame({"phase": np.tile([1, 3], 50), "nhs_cost": rng.gamma(2, 50, 100),
    ...                   "qaly": rng.normal(0.3, 0.02, 100)})
    >>> fig = plot_ce_plane({"all patients": cost_utility(d, baseline=None, n_boot=100, seed=1)})
    >>> fig.axes[0].get_title()
    'all patients'
    """
    import matplotlib.pyplot as plt

    n = len(results)
    ncols = min(n, 2)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 4.2 * nrows), squeeze=False)
    rng = np.random.default_rng(seed)
    for ax, (name, r) in zip(axes.ravel(), results.items(), strict=False):
        keep = rng.permutation(r.boot_qaly.size)[:max_points]
        ax.scatter(r.boot_qaly[keep], r.boot_cost[keep], s=4, alpha=0.25, color="tab:blue", label="bootstrap replicates")
        ax.scatter([r.delta_qaly["estimate"]], [r.delta_cost["estimate"]], color="black", s=30, zorder=3,
                   label="point estimate")
        ax.axhline(0, color="grey", lw=0.8)
        ax.axvline(0, color="grey", lw=0.8)
        xlim = np.abs(np.concatenate([r.boot_qaly, [r.delta_qaly["estimate"]]])).max() * 1.1
        xs = np.array([-xlim, xlim])
        for w, style in zip(wtp_lines, ["--", ":", "-."], strict=False):
            ax.plot(xs, w * xs, style, color="tab:red", lw=1, label=f"GBP {w:,.0f} per QALY")
        ax.set_xlim(-xlim, xlim)
        ylim = np.abs(r.boot_cost).max() * 1.1
        ax.set_ylim(-ylim, ylim)
        ax.set_title(name)
        ax.set_xlabel("Incremental QALYs (stratified minus usual care)")
        ax.set_ylabel("Incremental cost, GBP")
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    axes.ravel()[0].legend(fontsize=7, loc="upper left")
    fig.suptitle("Cost-effectiveness plane (below the line = cost-effective at that willingness to pay)")
    fig.tight_layout()
    return fig


def plot_ceac(results: Mapping[str, CostUtilityResult], wtp: Sequence[float] | np.ndarray | None = None):
    """Cost-effectiveness acceptability curves, one line per population.

    Returns
    -------
    matplotlib Figure

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> d = pd.DataFrame({"phase": np.tile([1, 3], 50), "nhs_cost": rng.gamma(2, 50, 100),
    ...                   "qaly": rng.normal(0.3, 0.02, 100)})
    >>> fig = plot_ceac({"all patients": cost_utility(d, baseline=None, n_boot=100, seed=1)})
    >>> fig.axes[0].get_xlabel()
    'Willingness to pay, GBP per QALY gained'
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, r in results.items():
        curve = r.ceac(wtp)
        ax.plot(curve["wtp"], curve["prob_cost_effective"], label=name)
    for w in (20_000, 30_000):
        ax.axvline(w, color="grey", lw=0.8, ls=":")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("Willingness to pay, GBP per QALY gained")
    ax.set_ylabel("Probability stratified care is cost-effective")
    ax.set_title("Cost-effectiveness acceptability curves")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
