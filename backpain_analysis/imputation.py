"""Multiple imputation by chained equations (MICE) and Rubin's rules.

``impute_chained`` fills missing values with ``n_imputations`` independent chains of
fully conditional specification (van Buuren & Groothuis-Oudshoorn 2011), run side by side
with batched numpy linear algebra: each step of a chain fits a linear model of one
variable on the others, draws the model parameters from their posterior (Bayesian linear
regression, as ``mice.impute.norm``) and fills the missing values either with predictive
mean matching (``"pmm"``, the default: each missing value gets an observed value of a
donor with a close predicted mean) or with a draw from the posterior predictive normal
(``"norm"``).

``pool_rubin`` combines one estimate per imputed dataset by Rubin's rules, with the
Barnard-Rubin (1999) small-sample degrees of freedom.

Used by the outcomes chapter (05) and the economics chapter (07).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "ImputedDatasets",
    "data_fingerprint",
    "impute_chained",
    "impute_values",
    "monte_carlo_error",
    "one_blas_thread",
    "pool_rubin",
    "pool_wald",
    "shared_imputations",
    "imputations_needed",
]

_METHODS = ("pmm", "norm")
_RIDGE = 1e-5  # as mice: ridge penalty relative to the diagonal of X'X, against collinearity


# ---------------------------------------------------------------------------------------
# Encoding: DataFrame columns -> float arrays (categoricals as codes), and back.
# ---------------------------------------------------------------------------------------


def _is_categorical(series: pd.Series) -> bool:
    return isinstance(series.dtype, pd.CategoricalDtype)


def _usable_predictor(series: pd.Series) -> bool:
    """Numeric, boolean or categorical columns can predict; text, dates and objects cannot."""
    return _is_categorical(series) or pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series)


def _as_float(series: pd.Series) -> np.ndarray:
    """Float array with NaN for missing; categoricals as their integer codes."""
    if _is_categorical(series):
        codes = series.cat.codes.to_numpy().astype(float)
        codes[codes < 0] = np.nan
        return codes
    return series.astype("float64").to_numpy(dtype=float, na_value=np.nan)


def _dummies(codes: np.ndarray, n_levels: int) -> np.ndarray:
    """One-hot columns for levels 1..n_levels-1 (level 0 is the reference); works on (..., n)."""
    levels = np.arange(1, n_levels)
    return (codes[..., None] == levels).astype(float)


class _Predictor:
    """How one column enters the design matrix: as a number or as dummy columns."""

    def __init__(self, name: str, series: pd.Series) -> None:
        self.name = name
        self.categorical = _is_categorical(series)
        self.n_levels = len(series.cat.categories) if self.categorical else 0

    @property
    def width(self) -> int:
        return self.n_levels - 1 if self.categorical else 1

    def encode(self, values: np.ndarray) -> np.ndarray:
        """(..., n) float values -> (..., n, width)."""
        if self.categorical:
            return _dummies(values, self.n_levels)
        return values[..., None]


def _check_inputs(
    df: pd.DataFrame, columns: Sequence[str], n_imputations: int, max_iter: int, method: str | Mapping[str, str]
) -> list[str]:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"impute_chained: df must be a pandas DataFrame, got {type(df).__name__}")
    if isinstance(columns, str):
        columns = [columns]
    columns = list(columns)
    if not columns:
        raise ValueError("impute_chained: `columns` is empty; name at least one column to impute")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"impute_chained: columns {missing} are not in the DataFrame (it has {list(df.columns)[:12]} ...)")
    if len(set(columns)) != len(columns):
        raise ValueError(f"impute_chained: `columns` lists a column twice: {columns}")
    if not isinstance(n_imputations, int | np.integer) or n_imputations < 1:
        raise ValueError(f"impute_chained: n_imputations must be a positive integer, got {n_imputations!r}")
    if not isinstance(max_iter, int | np.integer) or max_iter < 1:
        raise ValueError(f"impute_chained: max_iter must be a positive integer, got {max_iter!r}")
    for col in columns:
        s = df[col]
        if not _usable_predictor(s):
            raise ValueError(
                f"impute_chained: column {col!r} has dtype {s.dtype}; only numeric, boolean and categorical "
                f"columns can be imputed (example values: {s.dropna().head(3).tolist()})"
            )
        if s.notna().sum() < 2:
            raise ValueError(
                f"impute_chained: column {col!r} has {int(s.notna().sum())} observed value(s); "
                "at least 2 are needed to impute it"
            )
        if _is_categorical(s) and not s.cat.ordered and len(s.cat.categories) > 2:
            raise ValueError(
                f"impute_chained: column {col!r} is an unordered categorical with {len(s.cat.categories)} levels "
                f"({list(s.cat.categories)[:5]}); predictive mean matching on its codes would impose an order. "
                "Make it ordered, binary, or dummy-code it before imputing"
            )
    methods = method.values() if isinstance(method, Mapping) else [method]
    bad = [m for m in methods if m not in _METHODS]
    if bad:
        raise ValueError(f"impute_chained: unknown method {bad[0]!r}; use one of {_METHODS}")
    if isinstance(method, Mapping):
        unknown = [c for c in method if c not in columns]
        if unknown:
            raise ValueError(f"impute_chained: `method` names columns {unknown} that are not in `columns`")
    return columns


def _predictor_sets(
    df: pd.DataFrame, columns: list[str], predictors: Sequence[str] | Mapping[str, Sequence[str]] | None
) -> dict[str, list[str]]:
    """For each target column, the columns that predict it (never itself)."""
    if predictors is None:
        pool = [c for c in df.columns if _usable_predictor(df[c])]
        return {t: [c for c in pool if c != t] for t in columns}
    if isinstance(predictors, str):
        predictors = [predictors]
    if isinstance(predictors, Mapping):
        sets = {t: [c for c in predictors.get(t, [c for c in columns if c != t]) if c != t] for t in columns}
        unknown = [t for t in predictors if t not in columns]
        if unknown:
            raise ValueError(f"impute_chained: `predictors` has entries for {unknown}, which are not in `columns`")
    else:
        common = list(dict.fromkeys([*columns, *predictors]))
        sets = {t: [c for c in common if c != t] for t in columns}
    for t, cols in sets.items():
        absent = [c for c in cols if c not in df.columns]
        if absent:
            raise ValueError(f"impute_chained: predictors {absent} (for {t!r}) are not in the DataFrame")
        unusable = [c for c in cols if not _usable_predictor(df[c])]
        if unusable:
            raise ValueError(
                f"impute_chained: predictors {unusable} (for {t!r}) are text or dates (dtype "
                f"{df[unusable[0]].dtype}); only numeric, boolean and categorical columns can predict"
            )
    return sets


def _uninformative_auxiliaries_removed(df: pd.DataFrame, columns: Sequence[str],
                                       sets: dict[str, list[str]]) -> dict[str, list[str]]:
    """Leave out of a target's equation each auxiliary (not imputed) predictor that is missing in
    every row where the target is missing.

    Such a predictor says nothing about the values to impute: those rows would all get its
    mean-filled stand-in and its missing indicator, which is constant among the rows the equation is
    fitted on. E.g. record-review counts are missing exactly for patients who did not consent to the
    review, and so are the review's reconsultation and sickness-certificate flags; with the flags in
    the equation, every non-consenter was imputed as a patient with an average (impossible,
    fractional) flag, and the matched donors (PMM) were not like them.
    """
    out = {}
    for t, cols in sets.items():
        target_missing = df[t].isna().to_numpy()
        if not target_missing.any():
            out[t] = cols
            continue
        out[t] = [c for c in cols if c in columns or not df[c].isna().to_numpy()[target_missing].all()]
    return out


def _auxiliary_design(df: pd.DataFrame, aux: list[str]) -> tuple[dict[str, np.ndarray], list[str]]:
    """Fixed design blocks for predictors that are not imputed.

    Missing values in such a column are filled with the column mean (numeric) or left as
    all-zero dummies (categorical), and a 0/1 missing-indicator column is added.
    """
    blocks: dict[str, np.ndarray] = {}
    for name in aux:
        s = df[name]
        values = _as_float(s)
        miss = np.isnan(values)
        if _is_categorical(s):
            block = _dummies(np.where(miss, -1, values), len(s.cat.categories))
        else:
            filled = np.where(miss, np.nanmean(values) if (~miss).any() else 0.0, values)
            block = filled[:, None]
        if miss.any():
            block = np.column_stack([block, miss.astype(float)])
        # a constant column adds nothing but collinearity with the intercept
        keep = np.ptp(block, axis=0) > 0 if block.shape[0] else np.zeros(block.shape[1], bool)
        blocks[name] = block[:, keep]
    return blocks, aux


# ---------------------------------------------------------------------------------------
# One step of the chain, for all m chains at once.
# ---------------------------------------------------------------------------------------


def _bayes_draw(
    x_obs: np.ndarray, y_obs: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Posterior draws of linear-regression coefficients and residual SD, one per chain.

    x_obs (m, n_obs, p), y_obs (n_obs,). Returns beta_hat (m, p), beta_star (m, p) and
    sigma_star (m,). Method: mice.impute.norm.draw (Rubin 1987, p. 167).
    """
    m, n_obs, p = x_obs.shape
    xtx = np.einsum("mij,mik->mjk", x_obs, x_obs)
    diag = np.einsum("mjj->mj", xtx)
    # columns that are all zero among the observed rows (zeroed by the caller: constant there, so
    # not identified) get a unit diagonal to keep the inverse defined, and a coefficient of exactly 0
    # below: a random coefficient would shift every missing row where the column is not constant
    ridge = np.where(diag > 0, _RIDGE * diag, 1.0)
    xtx = xtx + ridge[:, :, None] * np.eye(p)[None]
    v = np.linalg.inv(xtx)
    v = (v + np.swapaxes(v, 1, 2)) / 2
    beta_hat = np.einsum("mjk,mk->mj", v, np.einsum("mij,i->mj", x_obs, y_obs))
    resid = y_obs[None, :] - np.einsum("mij,mj->mi", x_obs, beta_hat)
    ss = np.einsum("mi,mi->m", resid, resid)
    dof = max(n_obs - p, 1)
    sigma = np.sqrt(ss / rng.chisquare(dof, size=m))
    chol = np.linalg.cholesky(v + 1e-12 * np.eye(p)[None])
    beta_star = beta_hat + sigma[:, None] * np.einsum("mjk,mk->mj", chol, rng.standard_normal((m, p)))
    return beta_hat, np.where(diag > 0, beta_star, 0.0), sigma


def _pmm(
    yhat_obs: np.ndarray, yhat_mis: np.ndarray, y_obs: np.ndarray, donors: int, rng: np.random.Generator
) -> np.ndarray:
    """Predictive mean matching: each missing value takes the observed value of one of the
    ``donors`` observed cases with the closest predicted mean (picked at random).

    Per chain, the observed predicted means are sorted once, after a jitter of at most 1e-9 of
    their range so that tied donors (same predictors) come in random order, as mice's matcher
    breaks ties at random. The k nearest to a missing case are then the run [pos - L, pos - L + k)
    of the sorted values, where pos is the case's insertion point: the i-th value left of pos is
    in it exactly when it is no farther than the (k - i + 1)-th at or right of pos (distances grow
    away from pos on both sides), so L counts those i (ties go to the left). All chains are
    handled as (m, n) arrays, with the sorted values padded by k infinities on each side.
    """
    m, n_obs = yhat_obs.shape
    n_mis = yhat_mis.shape[1]
    k = min(donors, n_obs)
    if n_mis == 0:
        return np.empty((m, 0))
    pick = rng.integers(0, k, size=(m, n_mis))
    spread = np.ptp(yhat_obs, axis=1, keepdims=True)
    hat = yhat_obs + rng.uniform(0.0, 1.0, size=yhat_obs.shape) * (1e-9 * np.where(spread > 0, spread, 1.0))
    order = np.argsort(hat, axis=1, kind="quicksort")
    width = n_obs + 2 * k
    padded = np.empty((m, width))
    padded[:, :k], padded[:, k + n_obs:] = -np.inf, np.inf
    padded[:, k:k + n_obs] = np.take_along_axis(hat, order, axis=1)
    # missing cases sorted too: the search is then a merge (cache friendly)
    by_target = np.argsort(yhat_mis, axis=1, kind="quicksort")
    target = np.take_along_axis(yhat_mis, by_target, axis=1)
    pos = np.empty((m, n_mis), dtype=np.intp)
    for i in range(m):
        pos[i] = np.searchsorted(padded[i, k:k + n_obs], target[i])
    flat = padded.ravel()
    # left i sits at padded index pos + k - i, the matching right one k further on
    left_at = (pos + (np.arange(m) * width)[:, None])[:, :, None] + (k - np.arange(1, k + 1))
    nearer_left = flat[left_at] + flat[left_at + k] >= 2.0 * target[:, :, None]
    start = pos - np.count_nonzero(nearer_left, axis=2)
    donor = np.take_along_axis(order, start + pick, axis=1)
    out = np.empty((m, n_mis))
    np.put_along_axis(out, by_target, y_obs[donor], axis=1)
    return out


def impute_chained(
    df: pd.DataFrame,
    columns: Sequence[str],
    *,
    n_imputations: int = 10,
    seed: int | np.random.Generator = 20260101,
    max_iter: int = 10,
    predictors: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
    method: str | Mapping[str, str] = "pmm",
    donors: int = 5,
) -> list[pd.DataFrame]:
    """Multiple imputation by chained equations; returns ``n_imputations`` completed copies of ``df``.

    Parameters
    ----------
    df : DataFrame
        The data. Only ``columns`` are filled; every other column is returned unchanged.
    columns : sequence of str
        Columns to impute, visited in this order in each iteration. Numeric, boolean, binary or
        ordered categorical columns. A listed column without missing values is not changed but
        is still used as a predictor.
    n_imputations : int, default 10
        Number of imputed datasets (independent chains).
    seed : int or numpy Generator, default 20260101
        Seed for ``numpy.random.default_rng``; same data and seed give the same imputations.
    max_iter : int, default 10
        Iterations of the chained equations (burn-in) per chain.
    predictors : list of str, dict or None
        ``None``: every numeric, boolean or categorical column of ``df`` predicts every target
        (text and date columns, e.g. identifiers, are skipped; drop numeric identifiers first).
        A list: these columns plus the other ``columns`` predict each target. A dict
        ``{target: [columns]}``: a predictor set per target (targets not in it use the other
        ``columns``). Categorical predictors are dummy-coded. Predictors that are not imputed
        and have missing values are mean-filled (numeric) or zero-coded (categorical), with an
        added missing-indicator column.
    method : {"pmm", "norm"} or dict, default "pmm"
        ``"pmm"``: predictive mean matching with ``donors`` donors (imputed values are always
        observed values, so ranges, integers and 0/1 flags are kept). ``"norm"``: Bayesian
        linear regression draw plus normal noise. A dict sets the method per column.
        Categorical columns always use ``"pmm"`` (on their codes).
    donors : int, default 5
        Donor pool size for predictive mean matching.

    Returns
    -------
    list of DataFrame
        ``n_imputations`` copies of ``df`` (same index and columns) with ``columns`` filled.
        Imputed numeric columns are returned as ``float64``; categorical columns keep their
        categories and order.

    Raises
    ------
    ValueError
        Unknown columns, text/date columns, unordered multi-level categoricals, a column with
        fewer than 2 observed values, or bad settings.

    Notes
    -----
    Fully conditional specification (van Buuren & Groothuis-Oudshoorn, J Stat Softw 2011).
    Missing values are first filled with random draws from the observed values of the same
    column. Then, in each of ``max_iter`` iterations and for each target in turn, the target's
    observed values are regressed on the current values of its predictors (with an intercept
    and a ridge penalty of 1e-5 times the diagonal of X'X, as in the R package mice), the
    coefficients and residual SD are drawn from their posterior (``sigma* = sqrt(RSS / chi2(n-p))``,
    ``beta* = beta_hat + sigma* L z``), and the missing values are filled. PMM follows mice's
    default (type 1 matching: observed cases are predicted with ``beta_hat``, missing ones with
    ``beta*``). The chains are run together: the regressions of all chains are solved as one
    batched linear-algebra call per step.

    PMM can attenuate a slope slightly when the missing values concentrate in the tail of a
    predictor (few donors there; about 1% in tests/test_imputation.py with 40% missing);
    ``"norm"`` is unbiased when the linear-normal model holds but can impute out-of-range values.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(1)
    >>> x = rng.normal(size=200)
    >>> y = 2 * x + rng.normal(size=200)
    >>> y[:50] = np.nan
    >>> data = pd.DataFrame({"x": x, "y": y})
    >>> imps = impute_chained(data, ["y"], n_imputations=3, seed=1)
    >>> len(imps), int(imps[0]["y"].isna().sum())
    (3, 0)
    >>> bool(np.all(imps[0]["y"].iloc[50:] == data["y"].iloc[50:]))
    True
    """
    values = impute_values(df, columns, n_imputations=n_imputations, seed=seed, max_iter=max_iter,
                           predictors=predictors, method=method, donors=donors)
    results = []
    for i in range(int(n_imputations)):
        out = df.copy()
        for c, (miss, vals) in values.items():
            out[c] = _filled(df[c], miss, vals[i])
        results.append(out)
    return results


def _filled(series: pd.Series, miss: np.ndarray, imputed: np.ndarray) -> pd.Series:
    """``series`` with its missing values (``miss``) replaced by ``imputed`` (codes for categoricals)."""
    if _is_categorical(series):
        codes = series.cat.codes.to_numpy().copy()
        codes[miss] = imputed.astype(codes.dtype)
        return pd.Series(pd.Categorical.from_codes(codes, dtype=series.dtype), index=series.index)
    if series.dtype == np.float64:  # the usual case: no conversion (dtypes named by text cost a registry search)
        vals = series.to_numpy(copy=True)
    else:
        vals = _as_float(series).copy()
    vals[miss] = imputed
    return pd.Series(vals, index=series.index, copy=False)


def impute_values(
    df: pd.DataFrame,
    columns: Sequence[str],
    *,
    n_imputations: int = 10,
    seed: int | np.random.Generator = 20260101,
    max_iter: int = 10,
    predictors: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
    method: str | Mapping[str, str] = "pmm",
    donors: int = 5,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The imputed values only, as arrays: what :func:`impute_chained` fills in, without m copies of ``df``.

    Parameters
    ----------
    df, columns, n_imputations, seed, max_iter, predictors, method, donors
        As for :func:`impute_chained` (same draws: ``impute_chained`` is built on this function).

    Returns
    -------
    dict
        For each column of ``columns`` that has missing values: ``(missing, values)``, where
        ``missing`` is a boolean array over the rows of ``df`` and ``values`` an array of shape
        ``(n_imputations, missing.sum())`` with the imputed values (category codes for
        categorical columns).

    Examples
    --------
    >>> d = pd.DataFrame({"x": [1.0, 2, 3, 4, 5, 6], "y": [1.0, 2, None, 4, 5, None]})
    >>> miss, vals = impute_values(d, ["y"], n_imputations=2, seed=1)["y"]
    >>> miss.tolist(), vals.shape
    ([False, False, True, False, False, True], (2, 2))
    """
    columns = _check_inputs(df, columns, n_imputations, max_iter, method)
    if donors < 1:
        raise ValueError(f"impute_chained: donors must be at least 1, got {donors!r}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    m = int(n_imputations)

    sets = _uninformative_auxiliaries_removed(df, columns, _predictor_sets(df, columns, predictors))
    aux_names = list(dict.fromkeys(c for cols in sets.values() for c in cols if c not in columns))
    aux_blocks, _ = _auxiliary_design(df, aux_names)
    target_enc = {c: _Predictor(c, df[c]) for c in columns}

    observed = {c: _as_float(df[c]) for c in columns}
    missing = {c: np.isnan(v) for c, v in observed.items()}
    # current values of every target in every chain: (m, n)
    current: dict[str, np.ndarray] = {}
    for c in columns:
        vals = np.tile(observed[c], (m, 1))
        miss = missing[c]
        if miss.any():
            pool = observed[c][~miss]
            vals[:, miss] = rng.choice(pool, size=(m, int(miss.sum())))
        current[c] = vals

    to_impute = [c for c in columns if missing[c].any()]
    col_method = {c: (method.get(c, "pmm") if isinstance(method, Mapping) else method) for c in columns}
    with one_blas_thread():
        _run_chains(to_impute, sets, observed, missing, target_enc, aux_blocks, current, col_method, max_iter,
                    donors, m, rng)
    return {c: (missing[c], current[c][:, missing[c]]) for c in to_impute}


_BLAS_CONTROLLER: Any = None  # threadpoolctl's view of the loaded BLAS libraries, found once


def one_blas_thread():
    """Context manager limiting BLAS to one thread, e.g. while the chains run.

    The chains (and the REML fits of the mixed model) make thousands of small matrix products (X'X of a few thousand rows by a few dozen
    columns); a multi-threaded OpenBLAS spends far longer synchronising its threads than computing
    them on a busy 2-core machine (measured: 4 products of 20,000 x 60 took 1.7 s with the default
    threads and 0.03 s with one). Parallelism comes from imputing the phases in separate threads
    instead (:func:`backpain_analysis.outcomes.impute_outcomes`). threadpoolctl is installed with
    scikit-learn (a dependency of pingouin); without it this does nothing. The BLAS libraries are
    looked up once per process (threadpoolctl's ``threadpool_limits`` reads /proc/self/maps at every
    call: 4 ms, which was a fifth of the delta-adjustment grid's time when each fit set the limit).
    """
    global _BLAS_CONTROLLER
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl comes with pingouin's scikit-learn
        from contextlib import nullcontext

        return nullcontext()
    if _BLAS_CONTROLLER is None:
        _BLAS_CONTROLLER = ThreadpoolController()
    return _BLAS_CONTROLLER.limit(limits=1, user_api="blas")


def _run_chains(to_impute, sets, observed, missing, target_enc, aux_blocks, current, col_method, max_iter, donors,
                m, rng) -> None:
    """The chained-equation iterations, updating ``current`` in place."""
    steps = {t: _Step(t, sets[t], observed, missing, target_enc, aux_blocks, m) for t in to_impute}
    for _ in range(max_iter if to_impute else 0):
        for target in to_impute:
            step = steps[target]
            d_var = step.imputed_cells(step.var_groups, current)
            beta_hat, beta_star, sigma = step.draw(d_var, rng)
            yhat_mis = step.predict(step.x_mis, step.mis_groups, step.imputed_cells(step.mis_groups, current),
                                    beta_star)
            if col_method[target] == "norm" and not target_enc[target].categorical:
                imputed = yhat_mis + sigma[:, None] * rng.standard_normal(yhat_mis.shape)
            else:
                imputed = _pmm(step.fitted_observed(d_var, beta_hat), yhat_mis, step.y_obs, donors, rng)
            current[target][:, step.miss] = imputed


class _PatternGroup:
    """Rows of one step that share a missingness pattern of the imputed predictors: ``positions``
    (into the step's var or missing rows), ``rows`` (into the data), the imputed predictors
    ``(name, encoder, offset in the group's block)`` and their design columns ``columns``."""

    def __init__(self, positions, rows, predictors, columns):
        self.positions, self.rows, self.predictors, self.columns = positions, rows, predictors, columns
        self.width = columns.size


class _Step:
    """The regression of one target on its predictors, for all chains at once.

    The design of the target's equation is ``[1, predictors...]`` (categoricals as dummies), in
    the order of the predictor list. Rows split into ``fixed`` rows (target observed, no
    predictor imputed: the same design row in every chain and iteration), ``var`` rows (target
    observed, a predictor imputed) and the rows to impute. The design of the var and missing
    rows is written X = X0 + D: X0 holds the observed values with the imputed cells set to 0 (the
    same in every chain), D only the imputed cells (the chain's current values). So
    X'X = X0'X0 + X0'D + D'X0 + D'D, where X0'X0 (with the fixed rows' X'X) is computed once and
    the rest costs in proportion to the imputed cells, not to the whole design. D is gathered per
    missingness pattern of the predictors (few: questionnaire waves, record-review consent), as a
    dense (columns, m, rows) block per pattern, so that X0'D and D'y for all chains are one matrix
    product each. The (m, n, p) design is never built.
    """

    def __init__(self, target, predictors, observed, missing, enc, aux_blocks, m):
        self.m = m
        self.miss = missing[target]
        obs = ~self.miss
        n = len(self.miss)
        blocks, imputed_specs = [np.ones((n, 1))], []  # whole-data design blocks; (name, enc, column)
        varying = np.zeros(n, bool)
        col = 1
        for p in predictors:
            if p in observed:
                block = enc[p].encode(np.nan_to_num(observed[p]))  # missing cells 0 (dummies too: NaN is no level)
                if missing[p].any():
                    imputed_specs.append((p, enc[p], col))
                    varying |= missing[p]
                    block[missing[p]] = 0.0
            else:
                block = aux_blocks[p]
            if block.shape[1]:
                blocks.append(block)
            col += block.shape[1]
        self.p = col
        x0 = np.concatenate(blocks, axis=1)
        self.fixed_rows = np.flatnonzero(obs & ~varying)
        var_rows = np.flatnonzero(obs & varying)
        mis_rows = np.flatnonzero(self.miss)
        y = observed[target]
        self.y_fixed, self.y_var = y[self.fixed_rows], y[var_rows]
        self.y_obs = np.concatenate([self.y_fixed, self.y_var])
        self.yty = float(self.y_obs @ self.y_obs)
        self.n_obs = self.y_obs.size
        self.x_fixed, self.x_var, self.x_mis = x0[self.fixed_rows], x0[var_rows], x0[mis_rows]
        observed_rows = np.concatenate([self.fixed_rows, var_rows])
        x_obs = x0[observed_rows]
        self.xtx_const = x_obs.T @ x_obs
        self.xty_const = x_obs.T @ self.y_obs
        # range of each column over its observed cells among the observed rows (imputed cells are
        # added per chain): a column constant there is left out of the equation, as mice does
        masked = np.zeros_like(x_obs, dtype=bool)
        for name, e, c in imputed_specs:
            masked[:, c:c + e.width] = missing[name][observed_rows, None]
        self.lo_const = np.where(masked, np.inf, x_obs).min(axis=0, initial=np.inf)
        self.hi_const = np.where(masked, -np.inf, x_obs).max(axis=0, initial=-np.inf)
        self.var_groups = self._groups(var_rows, imputed_specs, missing)
        self.mis_groups = self._groups(mis_rows, imputed_specs, missing)

    @staticmethod
    def _groups(rows, imputed_specs, missing):
        """The rows split by which imputed predictors are missing in them (patterns with none are left out)."""
        if not imputed_specs or not rows.size:
            return []
        pattern = np.column_stack([missing[name][rows] for name, _, _ in imputed_specs])
        # one code per pattern (bits packed into bytes: np.unique on rows of booleans is slow)
        packed = np.packbits(pattern, axis=1)
        codes = packed.view(np.dtype((np.void, packed.shape[1]))).ravel()
        _, first, which = np.unique(codes, return_index=True, return_inverse=True)
        groups = []
        for k, kind in enumerate(pattern[first]):
            if not kind.any():
                continue
            positions = np.flatnonzero(which.ravel() == k)
            specs, columns, offset = [], [], 0
            for (name, e, c), imputed in zip(imputed_specs, kind, strict=True):
                if imputed:
                    specs.append((name, e, offset))
                    columns += range(c, c + e.width)
                    offset += e.width
            groups.append(_PatternGroup(positions, rows[positions], specs, np.array(columns)))
        return groups

    def imputed_cells(self, groups, current):
        """D per pattern group: the chains' current values of its imputed cells, (columns, m, rows)."""
        out = []
        for g in groups:
            d = np.empty((g.width, self.m, g.rows.size))
            for name, e, off in g.predictors:
                if e.categorical:
                    values = np.take(current[name], g.rows, axis=1)
                    for level in range(1, e.n_levels):
                        np.equal(values, level, out=d[off + level - 1], casting="unsafe")
                else:
                    np.take(current[name], g.rows, axis=1, out=d[off], mode="clip")
            out.append(d)
        return out

    def draw(self, d_var, rng):
        m, p = self.m, self.p
        xtx = np.broadcast_to(self.xtx_const, (m, p, p)).copy()
        xty = np.broadcast_to(self.xty_const, (m, p)).copy()
        lo = np.broadcast_to(self.lo_const, (m, p)).copy()
        hi = np.broadcast_to(self.hi_const, (m, p)).copy()
        for g, d in zip(self.var_groups, d_var, strict=True):
            w, cols = g.width, g.columns
            flat = d.reshape(w * m, -1)  # rows are (column, chain)
            cross = (flat @ self.x_var[g.positions]).reshape(w, m, p)  # X0'D, per chain
            xtx[:, cols, :] += cross.transpose(1, 0, 2)
            xtx[:, :, cols] += cross.transpose(1, 2, 0)
            dd = np.empty((m, w, w))
            for c in range(m):
                dd[c] = d[:, c, :] @ d[:, c, :].T
            xtx[:, cols[:, None], cols[None, :]] += dd
            xty[:, cols] += (flat @ self.y_var[g.positions]).reshape(w, m).T
            lo[:, cols] = np.minimum(lo[:, cols], d.min(axis=2).T)
            hi[:, cols] = np.maximum(hi[:, cols], d.max(axis=2).T)
        keep = (hi - lo) > 0
        keep[:, 0] = True
        if keep.all():  # usual case: no column constant among the observed rows (x * 1.0 is x)
            return _bayes_draw_xtx(xtx, xty, np.full(m, self.yty), xtx, self.n_obs, rng)
        keep = keep.astype(float)
        kk = keep[:, :, None] * keep[:, None, :]
        return _bayes_draw_xtx(xtx * kk, xty * keep, np.full(m, self.yty), xtx, self.n_obs, rng)

    def fitted_observed(self, d_var, beta):
        """X beta of the observed rows (fixed, then var: the order of ``y_obs``), per chain: (m, n_obs)."""
        return np.concatenate([beta @ self.x_fixed.T, self.predict(self.x_var, self.var_groups, d_var, beta)], axis=1)

    def predict(self, x0, groups, d, beta):
        """X beta per chain, X0 beta + D beta: (m, n_rows)."""
        out = beta @ x0.T
        for g, block in zip(groups, d, strict=True):
            # sum over the group's columns of beta_j * D_j, all chains at once (a loop over the
            # few columns instead of a product per chain)
            beta_g = beta[:, g.columns]
            part = beta_g[:, 0, None] * block[0]
            for j in range(1, g.width):
                part += beta_g[:, j, None] * block[j]
            out[:, g.positions] += part
        return out


def _diagonals(a: np.ndarray) -> np.ndarray:
    """Writeable view of the diagonals of a C-contiguous stack of square matrices (m, p, p) as (m, p)."""
    m, p, _ = a.shape
    return a.reshape(m, p * p)[:, :: p + 1]


def _bayes_draw_xtx(
    xtx: np.ndarray, xty: np.ndarray, yty: np.ndarray, xtx_full: np.ndarray, n_obs: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """As :func:`_bayes_draw`, from cross-products: ``xtx`` (m, p, p) with left-out columns
    zeroed, ``xty`` (m, p), ``yty`` (m,). The residual sum of squares is
    ``y'y - 2 b'X'y + b'X'X b`` with the unpenalized X'X."""
    m, p, _ = xtx.shape
    diag = np.einsum("mjj->mj", xtx)
    ridge = np.where(diag > 0, _RIDGE * diag, 1.0)
    # the ridge added to the diagonals in place (the same numbers as xtx + ridge * I without two
    # (m, p, p) temporaries: the temporaries were a quarter of the draw's time)
    pen = xtx.copy()
    _diagonals(pen)[...] += ridge
    v = np.linalg.inv(pen)
    v = np.add(v, np.swapaxes(v, 1, 2), out=pen)  # symmetrised (pen is not needed any more)
    v *= 0.5
    beta_hat = np.matmul(v, xty[..., None])[..., 0]
    fitted = np.matmul(xtx, beta_hat[..., None])[..., 0]
    ss = np.maximum(yty - 2 * np.sum(beta_hat * xty, axis=1) + np.sum(beta_hat * fitted, axis=1), 0.0)
    dof = max(n_obs - p, 1)
    sigma = np.sqrt(ss / rng.chisquare(dof, size=m))
    jittered = v.copy()
    _diagonals(jittered)[...] += 1e-12
    chol = np.linalg.cholesky(jittered)
    beta_star = beta_hat + sigma[:, None] * np.matmul(chol, rng.standard_normal((m, p))[..., None])[..., 0]
    # left-out (constant among the observed rows, not identified) columns: coefficient exactly 0, as
    # mice drops them; a draw there would move every missing row where the column differs
    return beta_hat, np.where(diag > 0, beta_star, 0.0), sigma


# ---------------------------------------------------------------------------------------
# Rubin's rules.
# ---------------------------------------------------------------------------------------


def pool_rubin(
    estimates: Sequence[float] | np.ndarray,
    variances: Sequence[float] | np.ndarray,
    *,
    df_complete: float | None = None,
    alpha: float = 0.05,
    null: float = 0.0,
) -> dict[str, Any]:
    """Pool one scalar estimate across imputed datasets by Rubin's rules.

    Parameters
    ----------
    estimates : sequence of float
        The estimate from each imputed dataset (``m >= 2`` values).
    variances : sequence of float
        Its squared standard error from each imputed dataset.
    df_complete : float, optional
        Residual degrees of freedom the analysis would have without missing data (e.g.
        ``n - p``). ``None`` means large-sample (infinite), giving Rubin's (1987) df.
    alpha : float, default 0.05
        1 - confidence level.
    null : float, default 0
        Value under the null hypothesis for ``p_value``.

    Returns
    -------
    dict
        ``estimate`` (mean of the estimates), ``se`` (sqrt of the total variance), ``ci_low``,
        ``ci_high`` (t-based), ``p_value`` (two-sided t test of ``null``), ``df``
        (Barnard-Rubin degrees of freedom), ``m``, ``within`` (mean variance U), ``between``
        (variance of the estimates B), ``total`` (T = U + (1 + 1/m) B), ``riv`` (relative
        increase in variance, (1 + 1/m) B / U), ``lambda`` ((1 + 1/m) B / T) and ``fmi``
        (fraction of missing information).

    Raises
    ------
    ValueError
        Fewer than 2 estimates, lengths that differ, negative or non-finite values.

    Notes
    -----
    Rubin DB (1987) Multiple Imputation for Nonresponse in Surveys; Barnard J, Rubin DB,
    Biometrika 1999;86:948-955: ``nu_old = (m - 1) / lambda^2``, ``nu_obs = (nu_com + 1) /
    (nu_com + 3) * nu_com * (1 - lambda)``, ``df = nu_old nu_obs / (nu_old + nu_obs)``; as in
    van Buuren, Flexible Imputation of Missing Data (2018), section 2.3, and mice::pool.
    Pool ratios (odds ratios, rate ratios) on the log scale and exponentiate afterwards.

    Examples
    --------
    >>> r = pool_rubin([1.0, 1.2, 0.8], [0.04, 0.05, 0.06])
    >>> round(r["estimate"], 3), round(r["total"], 4), round(r["df"], 2)
    (1.0, 0.1033, 7.51)
    """
    q = np.asarray(estimates, dtype=float).ravel()
    u = np.asarray(variances, dtype=float).ravel()
    if q.size != u.size:
        raise ValueError(f"pool_rubin: {q.size} estimates but {u.size} variances")
    if q.size < 2:
        raise ValueError(f"pool_rubin: needs estimates from at least 2 imputed datasets, got {q.size}")
    if not (np.all(np.isfinite(q)) and np.all(np.isfinite(u))):
        raise ValueError(f"pool_rubin: estimates and variances must be finite, got {q.tolist()} and {u.tolist()}")
    if np.any(u < 0):
        raise ValueError(f"pool_rubin: variances must be >= 0, got {u.tolist()}")
    if not 0 < alpha < 1:
        raise ValueError(f"pool_rubin: alpha must be in (0, 1), got {alpha}")
    if df_complete is not None and not df_complete > 0:
        raise ValueError(f"pool_rubin: df_complete must be positive, got {df_complete}")
    m = q.size
    qbar = float(q.mean())
    ubar = float(u.mean())
    b = float(q.var(ddof=1))
    t = ubar + (1 + 1 / m) * b
    lam = (1 + 1 / m) * b / t if t > 0 else 0.0
    riv = (1 + 1 / m) * b / ubar if ubar > 0 else math.inf
    nu_old = (m - 1) / lam**2 if lam > 0 else math.inf
    if df_complete is None:
        dof = nu_old
    else:
        nu_obs = (df_complete + 1) / (df_complete + 3) * df_complete * (1 - lam)
        dof = nu_obs if math.isinf(nu_old) else (nu_old * nu_obs / (nu_old + nu_obs) if nu_obs > 0 else nu_old)
    se = math.sqrt(t)
    crit = stats.norm.ppf(1 - alpha / 2) if math.isinf(dof) else stats.t.ppf(1 - alpha / 2, dof)
    if se > 0:
        tstat = (qbar - null) / se
        p = float(2 * (stats.norm.sf(abs(tstat)) if math.isinf(dof) else stats.t.sf(abs(tstat), dof)))
    else:
        p = float("nan")
    fmi = (riv + 2 / (dof + 3)) / (1 + riv) if math.isfinite(riv) else 1.0
    return {
        "estimate": qbar,
        "se": se,
        "ci_low": float(qbar - crit * se),
        "ci_high": float(qbar + crit * se),
        "p_value": p,
        "df": float(dof),
        "m": m,
        "within": ubar,
        "between": b,
        "total": t,
        "riv": riv,
        "lambda": lam,
        "fmi": fmi,
    }


def pool_wald(
    estimates: Sequence[Sequence[float]] | np.ndarray,
    covariances: Sequence[np.ndarray] | np.ndarray,
) -> dict[str, float]:
    """Pooled multi-parameter Wald test across imputations (the D1 statistic).

    Tests that all ``k`` parameters are 0 (e.g. the two phase x risk group interaction terms).

    Parameters
    ----------
    estimates : array-like, shape (m, k)
        The ``k`` estimates from each of ``m >= 2`` imputed datasets.
    covariances : array-like, shape (m, k, k)
        Their covariance matrices.

    Returns
    -------
    dict
        ``statistic`` (D1, F-distributed), ``df_num`` (k), ``df_den`` (nu1), ``p_value``,
        ``riv`` (average relative increase in variance r1), ``m``.

    Notes
    -----
    Li, Raghunathan & Rubin, J Am Stat Assoc 1991;86:1065-73; van Buuren, Flexible Imputation of
    Missing Data (2018), section 5.3.2: ``r1 = (1 + 1/m) tr(B U^-1) / k``, ``D1 = Q' U^-1 Q /
    (k (1 + r1))``, ``t = k (m - 1)``, ``nu1 = 4 + (t - 4) (1 + (1 - 2/t) / r1)^2`` if ``t > 4``
    else ``t (1 + 1/k) (1 + 1/r1)^2 / 2`` (Li, Raghunathan & Rubin 1991, eq. 2.16;
    van Buuren 2018, eq. 5.16). With no between-imputation variance it reduces to the
    complete-data Wald chi-square divided by ``k`` (infinite denominator df).

    Examples
    --------
    >>> r = pool_wald([[1.0, 0.5], [1.0, 0.5]], [np.eye(2) * 0.25, np.eye(2) * 0.25])
    >>> round(r["statistic"], 3), r["df_num"]  # (1 / 0.25 + 0.25 / 0.25) / 2
    (2.5, 2)
    """
    q = np.asarray(estimates, dtype=float)
    u = np.asarray(covariances, dtype=float)
    if q.ndim == 1:
        q = q[:, None]
    if u.ndim == 1:
        u = u[:, None, None]
    m, k = q.shape
    if m < 2:
        raise ValueError(f"pool_wald: needs estimates from at least 2 imputed datasets, got {m}")
    if u.shape != (m, k, k):
        raise ValueError(f"pool_wald: covariances must have shape {(m, k, k)}, got {u.shape}")
    if not (np.all(np.isfinite(q)) and np.all(np.isfinite(u))):
        raise ValueError("pool_wald: estimates and covariances must be finite")
    qbar = q.mean(axis=0)
    ubar = u.mean(axis=0)
    b = np.atleast_2d(np.cov(q, rowvar=False, ddof=1))
    uinv = np.linalg.inv(ubar)
    r1 = float((1 + 1 / m) * np.trace(b @ uinv) / k)
    d1 = float(qbar @ uinv @ qbar / (k * (1 + r1)))
    t = k * (m - 1)
    if r1 <= 0:
        nu1 = math.inf
    elif t > 4:
        nu1 = 4 + (t - 4) * (1 + (1 - 2 / t) / r1) ** 2
    else:
        nu1 = t * (1 + 1 / k) * (1 + 1 / r1) ** 2 / 2
    p = float(stats.chi2.sf(d1 * k, k)) if math.isinf(nu1) else float(stats.f.sf(d1, k, nu1))
    return {"statistic": d1, "df_num": k, "df_den": float(nu1), "p_value": p, "riv": r1, "m": m}


# ---------------------------------------------------------------------------------------
# One shared set of imputations for chapters 05 and 07, cached in the run's output folder.
# ---------------------------------------------------------------------------------------

#: Bump when the imputation model changes, so that cached imputations are not reused.
IMPUTATION_MODEL_VERSION = "2026-11-28.5"


def data_fingerprint(df: pd.DataFrame) -> str:
    """SHA-256 (first 16 hex digits) of a DataFrame's values, index, column names and dtypes.

    Examples
    --------
    >>> a = pd.DataFrame({"x": [1.0, None]})
    >>> data_fingerprint(a) == data_fingerprint(a.copy()), data_fingerprint(a) == data_fingerprint(a.fillna(0))
    (True, False)
    """
    h = hashlib.sha256()
    h.update(json.dumps([[str(c), str(t)] for c, t in df.dtypes.items()]).encode())
    h.update(pd.util.hash_pandas_object(df, index=True).to_numpy().tobytes())
    return h.hexdigest()[:16]


class ImputedDatasets(Sequence):
    """The ``m`` imputed datasets of :func:`shared_imputations`, built one at a time on access.

    Holds the observed data once and only the imputed values (``m`` x missing cells per
    column), so m = 50 imputations of a 50,000-patient study fit in memory. Indexing and
    iteration give complete DataFrames (with the derived change scores), as
    :func:`backpain_analysis.outcomes.impute_outcomes` returns.

    Attributes
    ----------
    data : DataFrame
        The phase 1 and 3 rows the imputations were made from (with ``phase3``).
    values : dict
        Column -> ``(missing, values)``, as :func:`impute_values` returns.
    info : dict
        ``fingerprint``, ``seed``, ``m``, ``max_iter``, ``model_version``, ``columns`` and
        ``from_cache`` (True when loaded from the cache).
    """

    def __init__(self, data: pd.DataFrame, values: dict[str, tuple[np.ndarray, np.ndarray]],
                 info: dict[str, Any]) -> None:
        self.data, self.values, self.info = data, values, dict(info)

    def __len__(self) -> int:
        return int(self.info["m"])

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):  # a lazy subset: the same datasets, not copies
            keep = np.arange(len(self))[i]
            values = {c: (miss, vals[keep]) for c, (miss, vals) in self.values.items()}
            return ImputedDatasets(self.data, values, {**self.info, "m": len(keep)})
        if not -len(self) <= i < len(self):
            raise IndexError(f"imputation {i} of {len(self)}")
        from .outcomes import imputed_dataset

        return imputed_dataset(self.data, self.values, i % len(self), self.info.get("mcid_min_reduction", 0.30))

    def extended(self, more: ImputedDatasets) -> ImputedDatasets:
        """These imputations followed by ``more`` (of the same data and model, other chains).

        Imputations are independent draws, so a set chosen from a pilot run can keep the pilot's
        imputations and add the rest (the two-stage procedure of von Hippel, Sociol Methods Res
        2020). ``info`` keeps both origins: ``parts`` lists the seed and m of each.
        """
        same = ("fingerprint", "max_iter", "model_version", "columns", "practice", "mcid_min_reduction")
        clash = [k for k in same if self.info.get(k) != more.info.get(k)]
        if clash or self.values.keys() != more.values.keys():
            raise ValueError(f"ImputedDatasets.extended: the two sets differ in {clash or 'their imputed columns'}")
        values = {}
        for c, (miss, vals) in self.values.items():
            if not np.array_equal(miss, more.values[c][0]):
                raise ValueError(f"ImputedDatasets.extended: the missing cells of {c!r} differ")
            values[c] = (miss, np.concatenate([vals, more.values[c][1]], axis=0))
        parts = [*self.info.get("parts", [{"seed": self.info["seed"], "m": len(self)}]),
                 *more.info.get("parts", [{"seed": more.info["seed"], "m": len(more)}])]
        info = {**self.info, "m": len(self) + len(more), "parts": parts,
                "from_cache": bool(self.info.get("from_cache") and more.info.get("from_cache"))}
        return ImputedDatasets(self.data, values, info)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the imputed values (not the data) to ``path`` (.npz), atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {"__info__": np.array(json.dumps(self.info))}
        for k, (c, (miss, vals)) in enumerate(self.values.items()):
            arrays[f"name_{k}"] = np.array(c)
            arrays[f"miss_{k}"] = miss
            arrays[f"vals_{k}"] = vals
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, data: pd.DataFrame) -> ImputedDatasets:
        """Read what :meth:`save` wrote, for the same ``data``."""
        with np.load(path, allow_pickle=False) as z:
            info = json.loads(str(z["__info__"]))
            n = sum(1 for k in z.files if k.startswith("name_"))
            values = {str(z[f"name_{k}"]): (z[f"miss_{k}"], z[f"vals_{k}"]) for k in range(n)}
        return cls(data, values, {**info, "from_cache": True})


def shared_imputations(
    df: pd.DataFrame,
    *,
    n_imputations: int = 20,
    seed: int = 20260101,
    max_iter: int = 10,
    cache_dir: str | os.PathLike | None = None,
    economics: bool = True,
    practice: str | None = None,
    mcid_min_reduction: float = 0.30,
) -> ImputedDatasets:
    """The one set of multiple imputations that chapters 05 (outcomes) and 07 (economics) share.

    Parameters
    ----------
    df : DataFrame
        The analysis dataset.
    n_imputations : int, default 20
        ``m``; choose it with :func:`imputations_needed` from a pilot run.
    seed : int, default 20260101
    max_iter : int, default 10
        Chained-equation iterations.
    cache_dir : path, optional
        Folder of the run (e.g. ``OUT/_imputations`` of the report or of the scratch output): the
        imputations are stored there as ``imputations_<fingerprint>_s<seed>_m<m>_i<iter>.npz``,
        keyed by the data fingerprint, seed, m, iterations and model version, and reused by any
        chapter that asks for the same. None: no cache.
    economics : bool, default True
        Also impute the EQ-5D index at 2 and 6 months and the resource-use components of the NHS
        cost (:data:`backpain_analysis.outcomes.ECONOMIC_COLUMNS`) in the same model, for chapter 07.
    practice : str or None, default None
        Cluster column entering the imputation model as practice-by-phase fixed effects; None (the
        default) leaves practice out, as the coverage simulation chose
        (:func:`backpain_analysis.outcomes.impute_outcomes`, Notes).
    mcid_min_reduction : float, default 0.30

    Returns
    -------
    ImputedDatasets
        A sequence of ``m`` DataFrames (built on access) as
        :func:`backpain_analysis.outcomes.impute_outcomes` returns; ``.info`` says where they came from.

    Notes
    -----
    The imputation model is :func:`backpain_analysis.outcomes.impute_outcomes`: chained equations
    by predictive mean matching within each phase (with ``practice``, practice indicators too),
    every variable of the chapter 05 analysis models, the auxiliary variables
    (:data:`backpain_analysis.outcomes.AUXILIARY_PREDICTORS`) and, with ``economics``, the cost
    components and utilities of chapter 07: one congenial model for both chapters. Costs are
    imputed by component (GP consultations, imaging, prescriptions, secondary-care referral;
    physiotherapy sessions are observed for everyone) and are totalled after imputation.
    Same data, seed, m and iterations give the same imputations, from the cache or not.

    Examples
    --------
    >>> import tempfile
    >>> rng = np.random.default_rng(0)
    >>> d = pd.DataFrame({"phase": np.repeat([1, 3], 60), "practice_id": np.tile(["P1", "P2"], 60),
    ...                   "age": rng.normal(50, 10, 120), "rmdq_0m": rng.integers(0, 24, 120).astype(float)})
    >>> d["rmdq_6m"] = np.where(rng.random(120) < 0.3, np.nan, d["rmdq_0m"] - 2)
    >>> cache = tempfile.mkdtemp()
    >>> imps = shared_imputations(d, n_imputations=3, seed=1, max_iter=2, cache_dir=cache)
    >>> len(imps), int(imps[0]["rmdq_6m"].isna().sum()), imps.info["from_cache"]
    (3, 0, False)
    >>> again = shared_imputations(d, n_imputations=3, seed=1, max_iter=2, cache_dir=cache)
    >>> again.info["from_cache"], bool(again[2].equals(imps[2]))
    (True, True)
    """
    from .outcomes import (
        AUXILIARY_PREDICTORS,
        BASELINE_PREDICTORS,
        DAYS_OFF_PREDICTORS,
        ECONOMIC_COLUMNS,
        FOLLOWUP_COLUMNS,
        impute_outcomes,
    )

    columns = [*FOLLOWUP_COLUMNS, *(ECONOMIC_COLUMNS if economics else ())]
    # the model's variable lists are part of the key, so a changed model never reuses old imputations
    model = {"baseline": list(BASELINE_PREDICTORS), "auxiliary": list(AUXILIARY_PREDICTORS),
             "days_off": list(DAYS_OFF_PREDICTORS)}
    info = {"fingerprint": data_fingerprint(df), "seed": int(seed), "m": int(n_imputations), "max_iter": int(max_iter),
            "model_version": IMPUTATION_MODEL_VERSION, "model": model, "columns": columns, "practice": practice,
            "mcid_min_reduction": float(mcid_min_reduction), "from_cache": False}
    path = None
    if cache_dir is not None:
        key = hashlib.sha256(json.dumps({k: v for k, v in info.items() if k != "from_cache"},
                                        sort_keys=True).encode()).hexdigest()[:10]
        path = Path(cache_dir) / f"imputations_{info['fingerprint']}_s{seed}_m{n_imputations}_i{max_iter}_{key}.npz"
        if path.exists():
            from .models import add_phase3

            try:
                return ImputedDatasets.load(path, add_phase3(df))
            except (OSError, ValueError, KeyError):  # unreadable cache: recompute and overwrite
                pass
    data, values = impute_outcomes(df, n_imputations=n_imputations, seed=seed, max_iter=max_iter, columns=columns,
                                   practice=practice, mcid_min_reduction=mcid_min_reduction, values_only=True)
    result = ImputedDatasets(data, values, info)
    if path is not None:
        result.save(path)
    return result


def imputations_needed(fmi: float, *, per_fmi: float = 100.0, minimum: int = 20, maximum: int = 200) -> int:
    """Number of imputations by the rule m >= 100 x FMI (White, Royston & Wood 2011), within bounds.

    Parameters
    ----------
    fmi : float
        Fraction of missing information of the headline estimate, from a pilot run.
    per_fmi : float, default 100
        Imputations per unit of FMI (100: m = 100 x FMI, so m is the percentage of missing information).
    minimum, maximum : int, default 20 and 200

    Returns
    -------
    int
        ``min(maximum, max(minimum, ceil(per_fmi * fmi)))``.

    Notes
    -----
    White IR, Royston P, Wood AM, Stat Med 2011;30:377-399, section 7: with m >= 100 FMI the Monte
    Carlo error of the pooled estimate is about 10% of its standard error, of the test
    statistic about 0.1, and of the p-value about 0.01 near p = 0.05.

    Examples
    --------
    >>> imputations_needed(0.58), imputations_needed(0.05), imputations_needed(3.0 / 100)
    (58, 20, 20)
    """
    if not 0 <= fmi <= 1 or not math.isfinite(fmi):
        raise ValueError(f"imputations_needed: fmi must be in [0, 1], got {fmi}")
    return int(min(maximum, max(minimum, math.ceil(per_fmi * fmi - 1e-9))))


def monte_carlo_error(estimates: Sequence[float] | np.ndarray) -> float:
    """Monte Carlo standard error of a pooled MI estimate: sqrt(B / m), B the between-imputation variance.

    Parameters
    ----------
    estimates : sequence of float
        The estimate from each imputed dataset.

    Returns
    -------
    float
        The SD of the estimates divided by sqrt(m): how much the pooled estimate would move
        if the imputations were redrawn with another seed (White, Royston & Wood 2011, eq. 8).

    Examples
    --------
    >>> round(monte_carlo_error([1.0, 1.2, 0.8]), 4)  # sqrt(0.04 / 3)
    0.1155
    """
    q = np.asarray(estimates, dtype=float).ravel()
    if q.size < 2:
        raise ValueError(f"monte_carlo_error: needs at least 2 estimates, got {q.size}")
    return float(math.sqrt(q.var(ddof=1) / q.size))
