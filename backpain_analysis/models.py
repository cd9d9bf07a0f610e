"""Thin wrappers: fit the regression models of chapters 04-05 and map their results to our columns.

Every effect is returned as a dict with the project's result columns: ``estimate``,
``ci_low``, ``ci_high``, ``p_value`` plus ``se`` and ``log_scale`` bookkeeping. The exposure
is always phase 3 (stratified care) against phase 1 (usual care), coded 0/1 in the column
``phase3`` that :func:`add_phase3` adds.

The models are statsmodels' (OLS, GLM, NegativeBinomial, OrderedModel) on design matrices built
here as patsy would build them from the formula kept on each fit (``model.formula``), without
patsy's cost; covariate names are column names of the analysis dataset (docs/architecture.md).
Categorical covariates (``sex``, ``episode_duration``, ``risk_group``) are dummy coded with their
first category as reference.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import special, stats
from statsmodels.discrete.discrete_model import NegativeBinomial
from statsmodels.genmod import families
from statsmodels.genmod.generalized_linear_model import GLM
from statsmodels.regression.linear_model import OLS
from statsmodels.tools.sm_exceptions import ConvergenceWarning

from .errors import BackpainError

__all__ = [
    "EXPOSURE",
    "ModelError",
    "add_phase3",
    "calendar_terms",
    "covariate_terms",
    "effect_from_fit",
    "fit_cluster_fixed_cr2",
    "fit_logistic",
    "fit_mixed_design",
    "fit_mixed_kr",
    "fit_negative_binomial",
    "fit_ols",
    "fit_ordinal",
    "linear_combination",
    "mixed_design",
]

EXPOSURE = "phase3"


class ModelError(BackpainError, ValueError):
    """A model cannot be fitted to the data given (missing columns, no variation, no events)."""


def add_phase3(df: pd.DataFrame, phase_col: str = "phase") -> pd.DataFrame:
    """Return ``df`` restricted to phases 1 and 3 with a 0/1 float column ``phase3``.

    Parameters
    ----------
    df : DataFrame
        Must have ``phase_col`` with values 1 and 3 (other phases are dropped).
    phase_col : str, default "phase"

    Returns
    -------
    DataFrame
        A copy with ``phase3`` = 1.0 for phase 3, 0.0 for phase 1.

    Examples
    --------
    >>> add_phase3(pd.DataFrame({"phase": [1, 3, 3]}))["phase3"].tolist()
    [0.0, 1.0, 1.0]
    """
    if phase_col not in df.columns:
        raise ModelError(f"analysis dataset: column {phase_col!r} is missing (columns: {list(df.columns)[:10]} ...)")
    phase = pd.to_numeric(df[phase_col], errors="coerce")
    out = df.loc[phase.isin([1, 3])].copy()
    out[EXPOSURE] = (phase.loc[out.index] == 3).astype("float64")
    return out


def covariate_terms(df: pd.DataFrame, covariates: Sequence[str]) -> list[str]:
    """Formula terms for ``covariates``: the column name (pandas categoricals are dummy-coded by
    patsy with the first category as reference, columns ``name[T.level]``), ``C(name)`` for text.

    A pandas categorical is not wrapped in ``C()``: patsy then reads its codes directly, while
    ``C(categorical)`` maps every value through a Python loop (about 1.5 microseconds a value; the
    model fits of a 100,000-invited study spent half their time there). :func:`_prepare` turns text
    covariates into categoricals with sorted levels (patsy's own order), so they take the fast path too.
    """
    missing = [c for c in covariates if c not in df.columns]
    if missing:
        raise ModelError(f"analysis dataset: covariate columns {missing} are missing")
    terms = []
    for c in covariates:
        s = df[c]
        categorical = isinstance(s.dtype, pd.CategoricalDtype) or not (
            pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s)
        )
        terms.append(c if not categorical or isinstance(s.dtype, pd.CategoricalDtype) else f"C({c})")
    return terms


def _prepare(df: pd.DataFrame, outcome: str, covariates: Sequence[str], extra: Sequence[str] = ()) -> pd.DataFrame:
    if outcome not in df.columns:
        raise ModelError(f"analysis dataset: outcome column {outcome!r} is missing")
    cols = list(dict.fromkeys([outcome, EXPOSURE, *covariates, *extra]))
    missing = [c for c in cols[2:] if c not in df.columns]
    if missing:
        raise ModelError(f"analysis dataset: model columns {missing} are missing")
    if EXPOSURE not in df.columns:  # the model's columns only: copying a wide dataset took most of a small fit
        df = add_phase3(df[[c for c in dict.fromkeys(["phase", *cols]) if c in df.columns]])
    data = df[cols].dropna()
    # categorical covariates: drop categories absent from the complete cases (avoid empty dummies)
    for c in covariates:
        if isinstance(data[c].dtype, pd.CategoricalDtype):
            used = np.bincount(data[c].cat.codes.to_numpy(), minlength=len(data[c].cat.categories))
            if (used == 0).any():  # (replacing a column costs more than the check)
                data[c] = data[c].cat.remove_unused_categories()
        elif not (pd.api.types.is_numeric_dtype(data[c]) or pd.api.types.is_bool_dtype(data[c])):
            data[c] = pd.Categorical(data[c].astype(str))  # sorted levels, as patsy orders text
    if data[EXPOSURE].nunique() < 2:
        raise ModelError(
            f"model for {outcome!r}: needs patients from both phases with complete data; "
            f"got phase3 values {sorted(data[EXPOSURE].unique().tolist())} in {len(data)} complete rows"
        )
    return data


def _model_terms(data: pd.DataFrame, covariates: Sequence[str], interaction: str | None = None) -> list[tuple[str, ...]]:
    """The model's terms in formula order (each a tuple of column names), without the intercept."""
    terms: list[tuple[str, ...]] = [(EXPOSURE,)]
    if interaction is not None:
        terms += [(interaction,), (EXPOSURE, interaction)]
    # covariates that are constant in the data (e.g. risk group within one risk group) are left out
    return terms + [(c,) for c in covariates if c != interaction and _varies(data[c])]


def _varies(s: pd.Series) -> bool:
    """More than one distinct non-missing value (``s.nunique() > 1``, without pandas' hashing)."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        values = s.cat.codes.to_numpy()
        values = values[values >= 0]
    elif s.dtype.kind in "iuf":
        values = s.to_numpy()
        values = values[~np.isnan(values)] if s.dtype.kind == "f" else values
    else:
        return s.nunique() > 1
    return bool(values.size) and bool((values != values[0]).any())


def _formula(outcome: str, data: pd.DataFrame, covariates: Sequence[str], interaction: str | None = None) -> str:
    """The patsy formula of the model (kept on each statsmodels fit as ``model.formula``)."""
    exposure = EXPOSURE if interaction is None else f"{EXPOSURE} * {covariate_terms(data, [interaction])[0]}"
    others = [t[0] for t in _model_terms(data, covariates, interaction) if t[0] not in (EXPOSURE, interaction)]
    return " + ".join([f"{outcome} ~ {exposure}", *covariate_terms(data, others)])


def _categories(s: pd.Series) -> tuple[np.ndarray, list[Any]] | None:
    """Integer codes and levels of a column patsy would treat as categorical, else None."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        return s.cat.codes.to_numpy(), list(s.cat.categories)
    if pd.api.types.is_bool_dtype(s):  # patsy codes booleans as a factor with levels False, True
        return s.to_numpy(bool).astype(np.int64), [False, True]
    if not pd.api.types.is_numeric_dtype(s):
        cat = pd.Categorical(s.astype(str))
        return cat.codes.astype(np.int64), list(cat.categories)
    return None


def _design_matrix(data: pd.DataFrame, terms: Sequence[tuple[str, ...]]) -> tuple[np.ndarray, list[str]]:
    """The design matrix patsy builds for ``~ terms`` (intercept first), with its column names and order.

    Patsy orders the terms by their numeric factors: those with none (the intercept, then the
    categorical main effects) first, then one group per set of numeric factors in order of first
    appearance, lower-order terms first within a group. Categorical factors are treatment coded
    against their first level (``name[T.level]``), numeric factors multiply. Only terms with at
    most one categorical factor whose lower-order term (the term without it) is also in the model
    are supported: every model of this module. tests/test_models.py checks names, order and
    values against patsy; building the columns directly takes about 1/30 of patsy's time (the
    formula layer was half the time of the many small fits over imputations).
    """
    coded = {f: _categories(data[f]) for term in terms for f in term}
    groups: dict[frozenset, list[tuple[str, ...]]] = {frozenset(): [()]}
    for term in terms:
        groups.setdefault(frozenset(f for f in term if coded[f] is None), []).append(term)
    present = {frozenset(t) for t in terms} | {frozenset()}
    n = len(data)
    columns: list[np.ndarray] = []
    names: list[str] = []
    for group in groups.values():
        for term in sorted(group, key=len):
            categorical = [f for f in term if coded[f] is not None]
            if len(categorical) > 1 or (categorical and frozenset(term) - {categorical[0]} not in present):
                raise ModelError(f"model term {':'.join(term)!r}: only one categorical factor with its "
                                 "lower-order term in the model is supported")
            numeric = np.ones(n)
            for f in term:
                if coded[f] is None:
                    numeric = numeric * data[f].to_numpy(float)
            if not categorical:
                columns.append(numeric)
                names.append(":".join(term) or "Intercept")
                continue
            codes, levels = coded[categorical[0]]
            for j, level in enumerate(levels[1:], start=1):
                columns.append(numeric * (codes == j))
                names.append(":".join(f"{f}[T.{level}]" if f == categorical[0] else f for f in term))
    return np.column_stack(columns), names


def effect_from_fit(fit: Any, term: str = EXPOSURE, *, exponentiate: bool = False, alpha: float = 0.05) -> dict:
    """One coefficient of a fitted statsmodels model as our result columns.

    Parameters
    ----------
    fit : statsmodels results
        Any results object with ``params``, ``bse`` and ``pvalues`` (OLS, GLM, Logit,
        NegativeBinomial, OrderedModel, MixedLM).
    term : str
        Coefficient name.
    exponentiate : bool
        Report ``exp(coef)`` (odds ratio, rate ratio) with the exponentiated Wald CI.
    alpha : float

    Returns
    -------
    dict
        ``estimate``, ``ci_low``, ``ci_high``, ``p_value``, ``coef`` (log scale if
        exponentiated), ``se`` (of ``coef``), ``df`` (residual df for t-based models, else
        ``inf``), ``n`` (observations used).

    Notes
    -----
    CIs are Wald intervals: t-based with the residual df for OLS (as statsmodels' own
    ``conf_int``), normal-based otherwise.

    Examples
    --------
    >>> df = pd.DataFrame({"phase": [1, 1, 1, 3, 3, 3], "y": [1.0, 2, 3, 3, 4, 5]})
    >>> eff = effect_from_fit(fit_ols(df, "y"))
    >>> round(eff["estimate"], 3), eff["n"]
    (2.0, 6)
    """
    if term not in fit.params.index:
        raise ModelError(f"term {term!r} is not in the model (terms: {list(fit.params.index)})")
    coef = float(fit.params[term])
    se = float(fit.bse[term])
    use_t = bool(getattr(fit, "use_t", False))
    dof = float(fit.df_resid) if use_t else math.inf
    crit = stats.t.ppf(1 - alpha / 2, dof) if use_t else stats.norm.ppf(1 - alpha / 2)
    lo, hi = coef - crit * se, coef + crit * se
    tr = math.exp if exponentiate else float
    return {
        "estimate": tr(coef),
        "ci_low": tr(lo),
        "ci_high": tr(hi),
        "p_value": float(fit.pvalues[term]),
        "coef": coef,
        "se": se,
        "df": dof,
        "n": int(fit.nobs),
    }


def linear_combination(fit: Any, weights: dict[str, float], *, alpha: float = 0.05) -> dict:
    """Estimate, CI and p of ``sum(w * coef)`` (e.g. the phase effect within one subgroup).

    Returns the same keys as :func:`effect_from_fit` (not exponentiated).
    """
    names = list(fit.params.index)
    unknown = [k for k in weights if k not in names]
    if unknown:
        raise ModelError(f"terms {unknown} are not in the model (terms: {names})")
    w = np.array([weights.get(k, 0.0) for k in names])
    cov = np.asarray(fit.cov_params().loc[names, names])
    coef = float(w @ np.asarray(fit.params))
    se = float(math.sqrt(w @ cov @ w))
    use_t = bool(getattr(fit, "use_t", False))
    dof = float(fit.df_resid) if use_t else math.inf
    dist = stats.t(dof) if use_t else stats.norm()
    crit = dist.ppf(1 - alpha / 2)
    return {
        "estimate": coef,
        "ci_low": coef - crit * se,
        "ci_high": coef + crit * se,
        "p_value": float(2 * dist.sf(abs(coef / se))) if se > 0 else float("nan"),
        "coef": coef,
        "se": se,
        "df": dof,
        "n": int(fit.nobs),
    }


def fit_ols(
    df: pd.DataFrame,
    outcome: str,
    covariates: Sequence[str] = (),
    *,
    interaction: str | None = None,
    cov_type: str = "nonrobust",
) -> Any:
    """OLS of ``outcome`` on ``phase3`` and covariates (complete cases). Returns the statsmodels fit.

    ``interaction`` adds ``phase3 * C(interaction)``. ``cov_type`` (e.g. ``"HC3"``) asks for
    heteroscedasticity-robust standard errors; inference stays t-based on the residual df.
    """
    data = _prepare(df, outcome, covariates)
    y, x, formula = _model_frames(data, outcome, covariates, interaction)
    model = _as_formula_model(OLS(y, x), data, formula)
    if cov_type == "nonrobust":
        return model.fit()
    return model.fit(cov_type=cov_type, use_t=True)


def fit_logistic(df: pd.DataFrame, outcome: str, covariates: Sequence[str] = ()) -> Any:
    """Logistic regression (GLM Binomial, logit link) of a 0/1 ``outcome`` on ``phase3`` and covariates."""
    data = _prepare(df, outcome, covariates)
    values = set(np.unique(data[outcome]))
    if not values <= {0.0, 1.0}:
        raise ModelError(f"logistic model: outcome {outcome!r} must be 0/1, found values {sorted(values)[:6]}")
    for phase in (0.0, 1.0):
        y = data.loc[data[EXPOSURE] == phase, outcome]
        if y.nunique() < 2:
            raise ModelError(
                f"logistic model for {outcome!r}: phase {3 if phase else 1} has only "
                f"{'events' if y.sum() else 'non-events'} ({len(y)} patients); the odds ratio is not estimable"
            )
    y, x, formula = _model_frames(data, outcome, covariates)
    return _as_formula_model(GLM(y, x, family=families.Binomial()), data, formula).fit()


def fit_negative_binomial(df: pd.DataFrame, outcome: str, covariates: Sequence[str] = ()) -> Any:
    """Negative binomial (NB2) regression of a count on ``phase3`` and covariates.

    The dispersion ``alpha`` is estimated by maximum likelihood (statsmodels discrete
    ``NegativeBinomial``); the GLM with that alpha is then refitted so that the result is a
    GLM (``exp(coef)`` = ratio of mean counts). Standard errors are robust (sandwich, HC0), so
    the CI of the ratio of means stays valid when the counts are not exactly negative binomial
    (e.g. a mixture over unmeasured severity). Returns the GLM fit; ``fit.nb_alpha`` holds alpha.
    """
    data = _prepare(df, outcome, covariates)
    if (data[outcome] < 0).any():
        raise ModelError(f"count model: outcome {outcome!r} has negative values, e.g. {data[outcome].min()}")
    y, x, formula = _model_frames(data, outcome, covariates)
    with warnings.catch_warnings():
        # the ML search may step through regions where exp() overflows before converging
        warnings.simplefilter("ignore", RuntimeWarning)
        nb = NegativeBinomial(y, x).fit(disp=0, maxiter=200)
    alpha = float(nb.params["alpha"])
    model = _as_formula_model(GLM(y, x, family=families.NegativeBinomial(alpha=alpha)), data, formula)
    fit = model.fit(cov_type="HC0")
    fit.nb_alpha = alpha
    return fit


def fit_ordinal(df: pd.DataFrame, outcome: str, covariates: Sequence[str] = ()) -> Any:
    """Proportional-odds (cumulative logit) model of an ordered categorical ``outcome``.

    Returns the statsmodels ``OrderedModel`` fit at the maximum found by Newton steps with the
    analytic gradient and Hessian to a gradient below 1e-8 (``_ordinal_logit_optimum``);
    tests/test_outcomes.py checks the optimum against a scipy re-optimisation of statsmodels' own
    log-likelihood. With categories ordered best .. worst (or
    low .. high risk), ``exp(-coef)`` of ``phase3`` is the odds ratio of being in a lower
    (better) category in phase 3.
    """
    from statsmodels.miscmodels.ordinal_model import OrderedModel

    data = _prepare(df, outcome, covariates)
    y = data[outcome]
    if not (isinstance(y.dtype, pd.CategoricalDtype) and y.cat.ordered):
        raise ModelError(f"ordinal model: outcome {outcome!r} must be an ordered categorical, got {y.dtype}")
    y = y.cat.remove_unused_categories()
    if len(y.cat.categories) < 2:
        raise ModelError(f"ordinal model: outcome {outcome!r} has fewer than 2 observed categories")
    data = data.assign(**{outcome: y})
    # no intercept column: the cut points take its place (from_formula drops it the same way)
    endog, exog, formula = _model_frames(data, outcome, covariates, intercept=False)
    model = _as_formula_model(OrderedModel(endog, exog, distr="logit"), data, formula)
    exog, endog, n_cat = np.asarray(model.exog, dtype=float), np.asarray(model.endog, dtype=int), len(y.cat.categories)
    b = _ordinal_logit_optimum(exog, endog, n_cat)
    # analytic scores and Hessian in place of statsmodels' numerical ones (same values to ~1e-7,
    # many times faster; tests/test_outcomes.py)
    model.score_obs = lambda params: _ordinal_logit_scores(np.asarray(params, dtype=float), exog, endog, n_cat)
    model.score = lambda params: -_ordinal_logit_negloglik(np.asarray(params, dtype=float), exog, endog, n_cat)[1]
    model.hessian = lambda params: -_ordinal_logit_hessian(np.asarray(params, dtype=float), exog, endog, n_cat)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)  # maxiter=0: results (SEs) at the optimum found
        fit = model.fit(method="newton", start_params=b, disp=False, maxiter=0)
    return fit


def _ordinal_logit_negloglik(params: np.ndarray, x: np.ndarray, y: np.ndarray, n_cat: int) -> tuple[float, np.ndarray]:
    """Minus the cumulative-logit log-likelihood and its analytic gradient, in statsmodels'
    ``OrderedModel`` parameterisation: slopes, then the first cut point and the logs of the
    increments of the others (so that any vector gives increasing cut points)."""
    k = x.shape[1]
    beta, t = params[:k], params[k:]
    cuts = np.cumsum(np.concatenate([[t[0]], np.exp(t[1:])]))
    eta = x @ beta
    upper_cut = np.append(cuts, np.inf)[y]
    lower_cut = np.concatenate([[-np.inf], cuts])[y]
    upper, lower = upper_cut - eta, lower_cut - eta
    f_up, f_low = special.expit(upper), special.expit(lower)
    prob = np.clip(f_up - f_low, 1e-300, None)
    d_up = np.where(np.isfinite(upper), f_up * (1 - f_up), 0.0) / prob  # d log p / d upper cut
    d_low = np.where(np.isfinite(lower), f_low * (1 - f_low), 0.0) / prob  # -d log p / d lower cut
    grad_beta = -(x.T @ (d_up - d_low))
    grad_cuts = np.bincount(y, weights=d_up, minlength=n_cat)[: n_cat - 1] \
        - np.bincount(y, weights=d_low, minlength=n_cat)[1:n_cat]
    # chain rule to (t0, log increments): cut j depends on t0 and on the increments 1..j
    tail = np.cumsum(grad_cuts[::-1])[::-1]
    grad_t = np.concatenate([[tail[0]], np.exp(t[1:]) * tail[1:]])
    return -float(np.log(prob).sum()), -np.concatenate([grad_beta, grad_t])


def _ordinal_logit_scores(params: np.ndarray, x: np.ndarray, y: np.ndarray, n_cat: int) -> np.ndarray:
    """Per-patient scores (gradient of each log-likelihood term), n x p, same parameterisation as
    :func:`_ordinal_logit_negloglik`; their column sums are minus its gradient."""
    k = x.shape[1]
    t = params[k:]
    cuts = np.cumsum(np.concatenate([[t[0]], np.exp(t[1:])]))
    eta = x @ params[:k]
    upper = np.append(cuts, np.inf)[y] - eta
    lower = np.concatenate([[-np.inf], cuts])[y] - eta
    f_up, f_low = special.expit(upper), special.expit(lower)
    prob = np.clip(f_up - f_low, 1e-300, None)
    d_up = np.where(np.isfinite(upper), f_up * (1 - f_up), 0.0) / prob
    d_low = np.where(np.isfinite(lower), f_low * (1 - f_low), 0.0) / prob
    n = len(y)
    score_cuts = np.zeros((n, n_cat - 1))
    rows = np.arange(n)
    up = y < n_cat - 1
    score_cuts[rows[up], y[up]] += d_up[up]
    low = y > 0
    score_cuts[rows[low], y[low] - 1] -= d_low[low]
    tail = np.cumsum(score_cuts[:, ::-1], axis=1)[:, ::-1]  # d/d t0 and d/d increment m: sums over cuts >= m
    score_t = np.column_stack([tail[:, 0], tail[:, 1:] * np.exp(t[1:])[None, :]])
    return np.column_stack([-(d_up - d_low)[:, None] * x, score_t])


def _ordinal_logit_hessian(params: np.ndarray, x: np.ndarray, y: np.ndarray, n_cat: int) -> np.ndarray:
    """Analytic Hessian of minus the log-likelihood, same parameterisation as
    :func:`_ordinal_logit_negloglik`.

    With ``u = c_y - x b`` and ``l = c_(y-1) - x b`` (the cut points around the observed
    category), ``p = F(u) - F(l)`` and ``f = F (1 - F)``, ``f' = f (1 - 2F)`` for the logistic
    ``F``, each patient's log-likelihood ``log p`` has second derivatives ``f'(u)/p - f(u)^2/p^2``
    in ``u``, ``-f'(l)/p - f(l)^2/p^2`` in ``l`` and ``f(u) f(l)/p^2`` across; the chain rule
    to (b, cut points) and then to (t0, log increments) adds, for each log increment m, its cut
    points' gradient times ``exp(t_m)``.
    """
    k = x.shape[1]
    t = params[k:]
    inc = np.exp(t[1:])
    cuts = np.cumsum(np.concatenate([[t[0]], inc]))
    eta = x @ params[:k]
    upper = np.append(cuts, np.inf)[y] - eta
    lower = np.concatenate([[-np.inf], cuts])[y] - eta
    f_up, f_low = special.expit(upper), special.expit(lower)
    prob = np.clip(f_up - f_low, 1e-300, None)
    d_up = f_up * (1 - f_up)  # 0 where the cut is +-inf
    d_low = f_low * (1 - f_low)
    a_uu = d_up * (1 - 2 * f_up) / prob - (d_up / prob) ** 2
    a_ll = -d_low * (1 - 2 * f_low) / prob - (d_low / prob) ** 2
    a_ul = d_up * d_low / prob ** 2
    n_cut = n_cat - 1
    # Hessian of the log-likelihood in (b, cut points)
    h = np.empty((k + n_cut, k + n_cut))
    h[:k, :k] = x.T @ ((a_uu + a_ll + 2 * a_ul)[:, None] * x)
    up, low = y < n_cut, y > 0  # patients with a finite upper / lower cut
    w_up, w_low = a_uu + a_ul, a_ll + a_ul  # d2/(db dc_y) and d2/(db dc_(y-1)), times -x
    rows = np.arange(len(y))
    weights = np.zeros((len(y), n_cut))  # patient i's weight on cut point j
    weights[rows[up], y[up]] += w_up[up]
    weights[rows[low], y[low] - 1] += w_low[low]
    bc = -(x.T @ weights)
    h[:k, k:], h[k:, :k] = bc, bc.T
    cc = np.diag(np.bincount(y[up], weights=a_uu[up], minlength=n_cut)[:n_cut]
                 + np.bincount(y[low] - 1, weights=a_ll[low], minlength=n_cut)[:n_cut])
    off = np.bincount(y, weights=a_ul, minlength=n_cat)[1:n_cut]  # u at cut j, l at cut j - 1
    cc[np.arange(1, n_cut), np.arange(n_cut - 1)] = off
    cc[np.arange(n_cut - 1), np.arange(1, n_cut)] = off
    h[k:, k:] = cc
    # to (t0, log increments): c_j = t0 + sum_{m <= j} exp(t_m)
    jac = np.zeros((n_cut, n_cut))
    jac[:, 0] = 1.0
    for m in range(1, n_cut):
        jac[m:, m] = inc[m - 1]
    full = np.eye(k + n_cut)
    full[k:, k:] = jac
    out = full.T @ h @ full
    grad_cuts = np.bincount(y[up], weights=d_up[up] / prob[up], minlength=n_cut)[:n_cut] \
        - np.bincount(y[low] - 1, weights=d_low[low] / prob[low], minlength=n_cut)[:n_cut]
    tail = np.cumsum(grad_cuts[::-1])[::-1]  # d loglik / d increment m: sums over cuts >= m
    out[k + np.arange(1, n_cut), k + np.arange(1, n_cut)] += inc * tail[1:]
    return -out


def _ordinal_logit_optimum(x: np.ndarray, y: np.ndarray, n_cat: int) -> np.ndarray:
    """Maximum-likelihood parameters of a cumulative-logit model (``OrderedModel`` order).

    Newton steps with the analytic Hessian and step halving from the null model (cut points at
    the marginal cumulative logits), until the largest gradient element is below 1e-8 (the
    statsmodels default, BFGS on numerical derivatives, stops near 1e-3 and takes ~1 s a fit);
    where a Hessian is not positive definite, quasi-Newton (BFGS with the analytic gradient)
    takes over.
    """
    from scipy import optimize

    freq = np.bincount(y, minlength=n_cat)[: n_cat - 1].cumsum() / len(y)
    cuts = special.logit(np.clip(freq, 1e-6, 1 - 1e-6))
    b = np.concatenate([np.zeros(x.shape[1]), [cuts[0]], np.log(np.maximum(np.diff(cuts), 1e-3))])
    value, grad = _ordinal_logit_negloglik(b, x, y, n_cat)
    for _ in range(100):
        if np.abs(grad).max() < 1e-8:
            return b
        try:
            step = -np.linalg.solve(_ordinal_logit_hessian(b, x, y, n_cat), grad)
        except np.linalg.LinAlgError:
            break
        if not np.all(np.isfinite(step)) or grad @ step >= 0:  # not a descent direction
            break
        t = 1.0
        for _ls in range(40):
            new_value, new_grad = _ordinal_logit_negloglik(b + t * step, x, y, n_cat)
            if np.isfinite(new_value) and new_value <= value:
                break
            t /= 2
        else:
            break
        if new_value == value and np.abs(new_grad).max() >= np.abs(grad).max():
            break  # no further progress possible in floating point
        b, value, grad = b + t * step, new_value, new_grad
    res = optimize.minimize(_ordinal_logit_negloglik, b, args=(x, y, n_cat), jac=True, method="BFGS",
                            options={"gtol": 1e-9, "maxiter": 2000})
    return res.x if res.fun <= value else b


def _design(data: pd.DataFrame, outcome: str, terms: Sequence[tuple[str, ...]]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    x, names = _design_matrix(data, terms)
    return data[outcome].to_numpy(float), x, names


def _model_frames(data: pd.DataFrame, outcome: str, covariates: Sequence[str], interaction: str | None = None,
                  *, intercept: bool = True) -> tuple[pd.Series, pd.DataFrame, str]:
    """Response and design of a statsmodels model as pandas objects (named coefficients), and the formula."""
    x, names = _design_matrix(data, _model_terms(data, covariates, interaction))
    exog = pd.DataFrame(x, index=data.index, columns=names)
    if not intercept:
        exog = exog.drop(columns="Intercept")
    return data[outcome], exog, _formula(outcome, data, covariates, interaction)


def _as_formula_model(model: Any, data: pd.DataFrame, formula: str) -> Any:
    """Give a model built from arrays the two attributes of statsmodels' formula models that the
    analyses read: ``model.data.frame`` (the rows used) and ``model.formula``."""
    model.data.frame = data
    model.formula = formula
    return model


def calendar_terms(df: pd.DataFrame, date: str = "consultation_date") -> pd.DataFrame:
    """Add calendar-time covariates: ``calendar_years`` (years since the first consultation date)
    and ``season_sin``, ``season_cos`` (annual harmonic of the day of the year).

    Examples
    --------
    >>> d = calendar_terms(pd.DataFrame({"consultation_date": pd.to_datetime(["2008-01-01", "2009-01-01"])}))
    >>> d["calendar_years"].round(3).tolist()
    [0.0, 1.002]
    """
    if date not in df.columns:
        raise ModelError(f"analysis dataset: calendar-time adjustment needs the column {date!r}")
    when = pd.to_datetime(df[date])
    days = (when - when.min()).dt.days.astype(float)
    angle = 2 * np.pi * when.dt.day_of_year.astype(float) / 365.25
    return df.assign(calendar_years=days / 365.25, season_sin=np.sin(angle), season_cos=np.cos(angle))


def fit_mixed_kr(
    df: pd.DataFrame,
    outcome: str,
    covariates: Sequence[str] = (),
    *,
    practice: str = "practice_id",
    period: str | None = EXPOSURE,
    contrast: dict[str, float] | None = None,
    interaction: str | None = None,
    ddf: str = "Kenward-Roger",
    drop_zero_component: bool = True,
    alpha: float = 0.05,
) -> dict:
    """Linear mixed model with random intercepts for practice and practice-by-phase; KR inference.

    Parameters
    ----------
    df : DataFrame
    outcome : str
    covariates : sequence of str
        Fixed-effect covariates (as :func:`fit_ols`).
    practice : str, default "practice_id"
    period : str or None, default "phase3"
        Column defining the cluster periods (practice-by-``period`` random intercept); None
        fits a practice random intercept only.
    contrast : dict, optional
        Weights of the fixed effects for the reported effect (default: the ``phase3``
        coefficient); e.g. a risk-group-specific effect with ``interaction``.
    interaction : str, optional
        As for :func:`fit_ols`.
    ddf : {"Kenward-Roger", "Satterthwaite"}
        Kenward-Roger falls back to the Satterthwaite df (with the KR-adjusted SE) when the KR df
        is undefined (not finite or not positive); ``method`` then says so.
    drop_zero_component : bool, default True
        Pre-specified rule: when the REML estimate of the practice-by-phase variance is 0 (on the
        boundary), refit with the practice intercept only. Kenward-Roger is conservative with a
        variance component at 0 (95% CI coverage 0.994 with the default generator and with a
        practice-by-phase SD of 0.5, against 0.956-0.970 with the rule; docs/design_inference.md).
    alpha : float

    Returns
    -------
    dict
        ``estimate``, ``ci_low``, ``ci_high``, ``p_value``, ``coef``, ``se`` (KR-adjusted SE
        with Kenward-Roger; unadjusted with Satterthwaite), ``df``, ``n``, ``n_phase1``,
        ``n_phase3``, ``var_practice``, ``var_practice_phase``, ``var_residual``, ``icc``
        (practice variance / (practice + practice-by-phase + residual variance)), ``method``,
        ``dropped`` (True when the zero practice-by-phase component was dropped), ``fit`` (the
        :class:`~backpain_analysis.small_sample.MixedFit`).

    Notes
    -----
    REML with the lme4 parametrisation (a variance may be estimated as 0), Kenward-Roger (1997)
    adjusted variance and df for the one contrast, as pbkrtest/lmerTest
    (:mod:`backpain_analysis.small_sample`); checked against R ``lmer(... + (1 | practice) +
    (1 | practice:phase))`` in tests/test_small_sample.py. The random practice-by-phase intercept
    is the cluster-period effect of multi-period cluster designs (Hooper et al., Stat Med 2016).
    """
    from .imputation import one_blas_thread

    with one_blas_thread():  # small products: one BLAS thread is ~5x faster on a busy 2-core machine
        return _fit_mixed_kr(df, outcome, covariates, practice, period, contrast, interaction, ddf,
                             drop_zero_component, alpha)


def mixed_design(df: pd.DataFrame, outcome: str, covariates: Sequence[str] = (), *, practice: str = "practice_id",
                 period: str | None = EXPOSURE, interaction: str | None = None) -> dict:
    """The complete-case rows, response, design matrix and grouping of :func:`fit_mixed_kr`, built once.

    Returns
    -------
    dict
        ``data`` (the rows used), ``y``, ``x``, ``names`` (fixed-effect terms), ``groups``,
        ``components`` (random-effect names), ``indicators`` (the 0/1 matrix of each grouping),
        ``n_phase1``, ``n_phase3`` (rows per phase). Pass it with another response of the same rows to
        :func:`fit_mixed_design` (e.g. the outcome shifted by delta) to skip the formula step.
    """
    from .small_sample import _cluster_codes, indicator_matrix

    extra = [practice] + ([period] if period and period != EXPOSURE else [])
    data = _prepare(df, outcome, covariates, extra=extra)
    y, x, names = _design(data, outcome, _model_terms(data, covariates, interaction))
    # integer codes (sorted labels), not "practice:phase" strings: building and factorising text
    # took a third of a fit on a 45,000-patient study
    practice_code = _cluster_codes(data[practice])
    groups = [practice_code]
    comp = ["practice"]
    if period is not None:
        period_code = pd.factorize(data[period], sort=True)[0]
        groups.append(practice_code * (int(period_code.max()) + 1) + period_code)
        comp.append("practice:phase")
    phase3 = data[EXPOSURE].to_numpy()
    return {"data": data, "y": y, "x": x, "names": names, "groups": groups, "components": comp,
            "indicators": [indicator_matrix(g) for g in groups],
            "n_phase1": int(np.count_nonzero(phase3 == 0)), "n_phase3": int(np.count_nonzero(phase3 == 1))}


def fit_mixed_design(design: dict, y: np.ndarray | None = None, *, contrast: dict[str, float] | None = None,
                     ddf: str = "Kenward-Roger", drop_zero_component: bool = True, alpha: float = 0.05,
                     start: dict | None = None) -> dict:
    """:func:`fit_mixed_kr` on a :func:`mixed_design` (optionally with another response ``y`` of the same rows).

    Returns the same dict as :func:`fit_mixed_kr`; ``fit_mixed_design(mixed_design(df, ...))`` equals
    ``fit_mixed_kr(df, ...)`` exactly. ``start``: the result of a fit to the same design with a
    similar response (e.g. before a delta shift), whose variance components start the REML
    search (:func:`~backpain_analysis.small_sample.fit_reml`); the optimum is the same to the
    search's tolerance (about 1e-7).
    """
    from .imputation import one_blas_thread

    theta = None
    if start is not None:
        v = np.array([start["var_practice"], start["var_practice_phase"]])
        theta = np.sqrt(np.maximum(v, 0.0) / start["var_residual"])
    with one_blas_thread():
        return _fit_design(design, design["y"] if y is None else np.asarray(y, dtype=float), contrast, ddf,
                           drop_zero_component, alpha, theta)


def _fit_mixed_kr(df, outcome, covariates, practice, period, contrast, interaction, ddf, drop_zero_component,
                  alpha) -> dict:
    design = mixed_design(df, outcome, covariates, practice=practice, period=period, interaction=interaction)
    return _fit_design(design, design["y"], contrast, ddf, drop_zero_component, alpha)


def _fit_design(design, y, contrast, ddf, drop_zero_component, alpha, theta=None) -> dict:
    from .small_sample import fit_reml

    x, names, groups, comp, zs = (design[k] for k in ("x", "names", "groups", "components", "indicators"))
    period = comp[1] if len(comp) > 1 else None
    start = None if theta is None else theta[: len(groups)]
    fit = fit_reml(y, x, groups, names=names, component_names=comp, start=start, indicators=zs)
    dropped = False
    if drop_zero_component and period is not None and fit.variances[1] <= 1e-8 * fit.variances[-1]:
        fit = fit_reml(y, x, groups[:1], names=names, component_names=comp[:1],
                       start=None if start is None else start[:1], indicators=zs[:1])
        dropped = True
    weights = contrast or {EXPOSURE: 1.0}
    unknown = [k for k in weights if k not in names]
    if unknown:
        raise ModelError(f"terms {unknown} are not in the model (terms: {names})")
    L = np.array([weights.get(k, 0.0) for k in names])
    kr = fit.kenward_roger(L)
    if ddf == "Kenward-Roger" and np.isfinite(kr["df"]) and kr["df"] > 0:
        se, dof = kr["se"], kr["df"]
    elif ddf == "Kenward-Roger":  # documented fallback: KR df undefined (rho <= 1), use Satterthwaite
        se, dof = kr["se"], kr["df_satterthwaite"]
        ddf = "Kenward-Roger SE, Satterthwaite"
    elif ddf == "Satterthwaite":
        se, dof = kr["se_unadjusted"], kr["df_satterthwaite"]
    else:
        raise ModelError(f"ddf must be 'Kenward-Roger' or 'Satterthwaite', got {ddf!r}")
    coef = kr["estimate"]
    # scipy.special's t quantile and tail (what stats.t.ppf and .sf compute, without their 50 us
    # of argument handling per call; hundreds of fits per chapter)
    crit = special.stdtrit(dof, 1 - alpha / 2)
    v = fit.variances
    v_pp = float(v[1]) if len(v) == 3 else 0.0
    return {
        "estimate": coef, "ci_low": coef - crit * se, "ci_high": coef + crit * se,
        "p_value": float(2 * special.stdtr(dof, -abs(coef / se))), "coef": coef, "se": se, "df": dof,
        "n": int(len(y)), "n_phase1": design["n_phase1"], "n_phase3": design["n_phase3"],
        "var_practice": float(v[0]), "var_practice_phase": v_pp, "var_residual": float(v[-1]),
        "icc": float(v[0] / v.sum()), "dropped": dropped,
        "method": f"mixed model (REML), {ddf} df" + (" (zero practice-by-phase variance dropped)" if dropped else ""),
        "fit": fit,
    }


def fit_cluster_fixed_cr2(
    df: pd.DataFrame, outcome: str, covariates: Sequence[str] = (), *, practice: str = "practice_id",
    alpha: float = 0.05,
) -> dict:
    """OLS with practice fixed effects and CR2 cluster-robust SE of the phase effect, t on G - 1 df.

    Returns
    -------
    dict
        ``estimate``, ``ci_low``, ``ci_high``, ``p_value``, ``coef``, ``se``, ``df``, ``n``,
        ``n_phase1``, ``n_phase3``, ``method``.

    Notes
    -----
    Bell-McCaffrey CR2 with clusters = practices (:func:`backpain_analysis.small_sample.cr2_test`),
    checked against ``clubSandwich::coef_test(vcov = "CR2", test = "naive-t")``.
    """
    from .small_sample import cr2_test

    data = _prepare(df, outcome, covariates, extra=[practice])
    data = data.assign(**{"_practice": pd.Categorical(data[practice].astype(str))})
    y, x, names = _design(data, outcome, [*_model_terms(data, covariates), ("_practice",)])
    r = cr2_test(x, y, data["_practice"].astype(str).to_numpy(), names.index(EXPOSURE), alpha=alpha)
    return {**{k: r[k] for k in ("estimate", "ci_low", "ci_high", "p_value", "se", "df")}, "coef": r["estimate"],
            "n": int(len(y)), "n_phase1": int((data[EXPOSURE] == 0).sum()),
            "n_phase3": int((data[EXPOSURE] == 1).sum()),
            "method": "OLS, practice fixed effects, CR2 cluster-robust SE, t on G-1 df"}
