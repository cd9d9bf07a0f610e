"""Planning the next evaluation: power, bias, coverage and precision by simulation.

A design (:class:`Design`: practices, GPs, invited patients per phase, recruitment months,
response and follow-up rates, risk mix, ICC, practice-by-phase variation, residual SD) and a
true effect are turned into replicate studies, each analysed as the evaluation will be analysed;
the replicates give power, bias, CI coverage and mean CI width, each with its Monte Carlo
standard error (Morris, White & Crowther 2019).

Two simulators:

- ``"generator"`` (default): :func:`backpain_analysis.synthetic.generate_study` with the design
  as overrides, cleaned and built into the analysis dataset exactly as a real export
  (:func:`~backpain_analysis.cleaning.clean_study`,
  :func:`~backpain_analysis.dataset.build_analysis_dataset`). About 0.15 s per replicate at
  IMPaCT size.
- ``"normal"``: a direct simulator of the analysis dataset from a normal linear mixed model with
  the primary analysis's structure (covariates, practice and practice-by-phase random
  intercepts, residual SD set by the user). It is *not* the generator: its purpose is the
  closed-form check (no clustering, complete follow-up: power is the noncentral-t power of
  ANCOVA, :func:`analytic_power`) and quick what-ifs with a chosen residual SD.

Analyses run on each replicate (``analyses``):

- ``"primary"``: the primary analysis with clustering, fast path: the complete-case linear mixed
  model with practice and practice-by-phase random intercepts, REML and Kenward-Roger df, as
  :func:`backpain_analysis.models.fit_mixed_kr` (same numbers to 1e-6, tested) but with the
  design matrix built in numpy and a 2-parameter REML search (about 0.05 s instead of 0.2 s). The published primary analysis imputes the
  missing follow-ups; complete cases are the replicate-loop fast path (under the generator's
  missing-at-random follow-up the complete-case estimate has a small bias, about -0.05 points,
  tests/test_simulation.py).
- ``"ancova"``: complete-case ANCOVA by OLS ignoring the practices (the old primary analysis);
  also used for the simulated design effect.
- ``"risk_group"``: the mixed model with ``phase3 * risk_group``; one estimand per risk group.
- ``"matched_referral"``: the Table 2 odds ratio of risk-matched referral (unadjusted logistic
  regression on record-review consenters; generator only).

The generator's spread is calibrated to the published figures (issue 17): 6-month RMDQ change SD
5.7 / 5.9 against 6.0 / 5.5 published, 42-43% / 48% reaching the clinically important change
(42% / 47%), ANCOVA residual SD about 4.4 (docs/synthetic.md). ``Design.residual_sd`` (the
generator's ``rmdq_change_sd``) makes a design more or less variable than that.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, stats

from .errors import BackpainError

__all__ = [
    "ANALYSES",
    "Design",
    "PlanningError",
    "analytic_check",
    "analytic_power",
    "design_effects",
    "effect_grid",
    "impact_design",
    "minimum_detectable_effect",
    "normal_dataset",
    "power_curve_plot",
    "power_grid",
    "power_grid_plot",
    "replicate_seeds",
    "simulate_power",
    "simulate_replicates",
    "summarize_replicates",
    "summary_sentence",
    "true_effects",
]

ANALYSES: tuple[str, ...] = ("primary", "ancova", "risk_group", "matched_referral")
SIMULATORS: tuple[str, ...] = ("generator", "normal")
RISK_GROUPS: tuple[str, ...] = ("low", "medium", "high")
EPISODES: tuple[str, ...] = ("lt_1m", "1_3m", "3_6m", "6m_3y", "gt_3y")
#: Effect profiles: relative phase 3 effects per risk group [low, medium, high].
PROFILES: dict[str, tuple[float, float, float]] = {
    "uniform": (1.0, 1.0, 1.0),
    # the calibrated generator's default rmdq_effect, i.e. the published risk-group pattern
    "published": (0.133, 0.566, 2.76),
}
#: Generator defaults used by the normal simulator (kept here so the two stay comparable).
_WITHIN_SD = 5.6  # synthetic DEFAULTS["rmdq_change_within_sd"]: the scale of icc_practice
#: Residual SD of the normal simulator: the recalibrated generator's ANCOVA residual SD (issue 17).
NORMAL_RESIDUAL_SD = 4.4
_CACHE_VERSION = 2  # 2: recalibrated generator (issue 17)


class PlanningError(BackpainError, ValueError):
    """A design, grid or planning option that cannot be simulated."""


# ---------------------------------------------------------------------------------------------- design
@dataclass(frozen=True)
class Design:
    """A study design to simulate. ``None`` keeps the generator's calibrated default.

    Attributes
    ----------
    n_practices : int
        GP practices (default 7, as IMPaCT Back).
    invited : tuple of int
        Invited patients ``(phase 1, phase 3)`` (default 630, 1017 as published).
    n_gps : int, optional
        GPs (default: 64/7 per practice, as IMPaCT Back's 64 GPs in 7 practices).
    phase1_months, phase3_months : int, optional
        Recruitment months per phase (generator defaults 6 and 12; matter for a secular trend).
    response : tuple of float, optional
        Share of non-excluded invited patients who respond, per phase (default 0.61, 0.57).
    followup : tuple of float, optional
        Share of respondents returning the 6-month questionnaire (default 0.63, 0.57).
    risk_mix : tuple, optional
        Expected [low, medium, high] risk mix of respondents (one list for both phases).
    icc : float, optional
        Practice intraclass correlation of the 6-month RMDQ change (default 0.03).
    practice_phase_sd : float
        SD of practice-by-phase intercepts of the RMDQ change (cluster-period effects; default 0).
    residual_sd : float, optional
        Generator: ``rmdq_change_sd``, the SD of the individual deviation at baseline RMDQ 8.5
        (default 6.4, which gives the published change SD of about 5.8 and an ANCOVA residual SD
        of about 4.4). Normal simulator: the residual SD of the ANCOVA (default 4.4, as the
        recalibrated generator).
    overrides : dict
        Any other :func:`~backpain_analysis.synthetic.generate_study` parameter (generator only).
    """

    n_practices: int = 7
    invited: tuple[int, int] = (630, 1017)
    n_gps: int | None = None
    phase1_months: int | None = None
    phase3_months: int | None = None
    response: tuple[float, float] | None = None
    followup: tuple[float, float] | None = None
    risk_mix: tuple[float, float, float] | None = None
    icc: float | None = None
    practice_phase_sd: float = 0.0
    residual_sd: float | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if int(self.n_practices) < 1:
            raise PlanningError(f"design: n_practices must be at least 1; got {self.n_practices!r}")
        inv = tuple(int(v) for v in self.invited)
        if len(inv) != 2 or min(inv) < 1:
            raise PlanningError(f"design: invited must be two positive counts (phase 1, phase 3); got {self.invited!r}")
        object.__setattr__(self, "invited", inv)
        for name in ("response", "followup"):
            v = getattr(self, name)
            if v is not None:
                v = tuple(float(x) for x in (v if isinstance(v, Iterable) else (v, v)))
                if len(v) != 2 or not all(0 < x <= 1 for x in v):
                    raise PlanningError(f"design: {name} must be two shares in (0, 1] (phase 1, phase 3); got {v!r}")
                object.__setattr__(self, name, v)
        if self.risk_mix is not None:
            mix = tuple(float(x) for x in self.risk_mix)
            if len(mix) != 3 or min(mix) <= 0 or abs(sum(mix) - 1) > 1e-6:
                raise PlanningError(f"design: risk_mix must be 3 positive shares summing to 1; got {self.risk_mix!r}")
            object.__setattr__(self, "risk_mix", mix)
        if self.icc is not None and not 0 <= self.icc < 1:
            raise PlanningError(f"design: icc must be in [0, 1); got {self.icc!r}")
        if self.practice_phase_sd < 0:
            raise PlanningError(f"design: practice_phase_sd must be >= 0; got {self.practice_phase_sd!r}")
        if self.residual_sd is not None and not self.residual_sd > 0:
            raise PlanningError(f"design: residual_sd must be > 0; got {self.residual_sd!r}")
        clash = sorted(set(self.overrides) & set(_RESERVED_KEYS))
        if clash:
            raise PlanningError("design: set " + ", ".join(f"{k} through {_RESERVED_KEYS[k]}" for k in clash)
                                + ", not through overrides")
        object.__setattr__(self, "overrides", dict(self.overrides))

    @property
    def gps(self) -> int:
        """Number of GPs (``n_gps`` or 64/7 per practice)."""
        return int(self.n_gps) if self.n_gps is not None else max(int(self.n_practices),
                                                                    round(64 / 7 * self.n_practices))

    def generator_overrides(self) -> dict[str, Any]:
        """The design as :func:`~backpain_analysis.synthetic.generate_study` overrides (no effect)."""
        n1, n3 = self.invited
        o: dict[str, Any] = {"n_practices": int(self.n_practices), "n_gps": self.gps, "phase1_share": n1 / (n1 + n3),
                             "rmdq_practice_phase_sd": float(self.practice_phase_sd)}
        for attr, key in _FIELDS_TO_KEYS.items():
            v = getattr(self, attr)
            if v is not None:
                o[key] = list(v) if isinstance(v, tuple) else v
        return {**o, **self.overrides}

    def key(self) -> dict[str, Any]:
        """A JSON-able description (cache keys, result tables)."""
        d = asdict(self)
        d["n_gps"] = self.gps
        return json.loads(json.dumps(d, default=list))


_FIELDS_TO_KEYS: dict[str, str] = {
    "phase1_months": "phase1_months", "phase3_months": "phase3_months", "response": "response",
    "followup": "followup_6m", "risk_mix": "risk_mix", "icc": "icc_practice", "residual_sd": "rmdq_change_sd"}
#: generator parameters set through Design fields or the effect (not allowed in ``overrides``)
_RESERVED_KEYS: dict[str, str] = {
    **{v: k for k, v in _FIELDS_TO_KEYS.items()}, "n_practices": "n_practices", "n_gps": "n_gps",
    "phase1_share": "invited", "rmdq_practice_phase_sd": "practice_phase_sd",
    "rmdq_effect": "effect (simulate_power)"}


def impact_design(**changes: Any) -> Design:
    """The published IMPaCT Back design: 7 practices, 64 GPs, 630 + 1017 invited, generator defaults
    for response (about 368 + 554 respondents) and 6-month follow-up (about 60%).

    ``changes`` replace fields; the GPs scale with the practices (64/7 per practice) unless
    ``n_gps`` is given.

    Examples
    --------
    >>> impact_design().invited
    (630, 1017)
    >>> impact_design(n_practices=12).gps
    110
    """
    return replace(Design(n_practices=7, invited=(630, 1017)), **changes)


# ---------------------------------------------------------------------------------------------- truth
def _profile(profile: str | Sequence[float]) -> np.ndarray:
    if isinstance(profile, str):
        if profile not in PROFILES:
            raise PlanningError(f"effect profile {profile!r} is unknown; use one of {sorted(PROFILES)} or 3 numbers")
        return np.asarray(PROFILES[profile], dtype=float)
    prof = np.asarray(profile, dtype=float)
    if prof.shape != (3,) or not np.all(np.isfinite(prof)) or not np.any(prof != 0):
        raise PlanningError(f"effect profile must be 3 numbers [low, medium, high], not all 0; got {profile!r}")
    return prof


@lru_cache(maxsize=16)
def _population(params_json: str) -> dict[str, np.ndarray]:
    """The generator's truth population at zero effect (as synthetic._truth_cached draws it)."""
    from . import synthetic

    p = json.loads(params_json)
    p["rmdq_effect"] = [0.0, 0.0, 0.0]
    sim = synthetic._simulate(p, int(p["truth_mc_n"]), np.random.default_rng(int(p["truth_seed"])),
                              n_practices=max(int(p["n_practices"]), 60))
    resp = sim["responded"]
    return {"rmdq0": sim["rmdq0"][resp].astype(float), "d0": sim["delta6"][resp], "risk": sim["risk"][resp],
            "phase3": sim["phase3"][resp]}


def _group_truth(pop: Mapping[str, np.ndarray], effects: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Average effect per risk group and the ANCOVA weights n_g pi_g (1 - pi_g) (as the generator's truth)."""
    r0, d0, risk = pop["rmdq0"], pop["d0"], pop["risk"]
    without = r0 - np.clip(r0 - d0, 0, 24)
    with_ = r0 - np.clip(r0 - d0 - effects[risk], 0, 24)
    ate = with_ - without
    eff = np.array([ate[risk == g].mean() for g in range(3)])
    w = np.array([(risk == g).sum() * pop["phase3"][risk == g].mean() * (1 - pop["phase3"][risk == g].mean())
                  for g in range(3)])
    return eff, w / w.sum()


def _normal_weights(design: Design) -> np.ndarray:
    mix = np.asarray(design.risk_mix or (0.378, 0.415, 0.207))
    n1, n3 = design.invited
    r1, r3 = design.response or (1.0, 1.0)
    pi = n3 * r3 / (n1 * r1 + n3 * r3)
    w = mix * pi * (1 - pi)
    return w / w.sum()


def true_effects(design: Design, effect: float, profile: str | Sequence[float] = "uniform", *,
                 simulator: str = "generator") -> dict[str, Any]:
    """The per-risk-group effects that make the primary analysis's estimand equal ``effect``.

    Parameters
    ----------
    design : Design
    effect : float
        Target true average effect (RMDQ points, positive = more improvement with stratified
        care): the estimand of the primary analysis (phase coefficient of the ANCOVA without
        interaction), as the generator's ``truth["rmdq_adjusted_difference"]``.
    profile : {"uniform", "published"} or 3 numbers
        Relative effects per risk group [low, medium, high]; scaled to reach ``effect``.
    simulator : {"generator", "normal"}

    Returns
    -------
    dict
        ``rmdq_effect`` (the generator parameter: shifts of the expected change per group
        before the 0-24 floor and ceiling), ``group_effects`` (true average effect per group),
        ``weights`` (ANCOVA weights of the groups), ``effect`` (their weighted mean).

    Notes
    -----
    The generator's floor and ceiling make the average effect in a group smaller than the
    shift (a patient at RMDQ 2 cannot improve by 3). The estimand is computed as the
    generator's truth is (same population of ``truth_mc_n`` patients, seed ``truth_seed``) and
    the scale of the profile is found by root finding (Brent). Normal simulator: no floor, the
    weights come from the design's risk mix and phase shares.

    Examples
    --------
    >>> t = true_effects(impact_design(), 0.0)
    >>> t["rmdq_effect"]
    [0.0, 0.0, 0.0]
    """
    prof = _profile(profile)
    if simulator not in SIMULATORS:
        raise PlanningError(f"simulator must be one of {SIMULATORS}; got {simulator!r}")
    effect = float(effect)
    if simulator == "normal":
        w = _normal_weights(design)
        scale = effect / float(w @ prof) if effect else 0.0
        eff = scale * prof
        return {"rmdq_effect": eff.tolist(), "group_effects": eff.tolist(), "weights": w.tolist(),
                "effect": float(w @ eff)}
    if effect == 0:
        eff0, w = _group_truth(_population_for(design), np.zeros(3))
        return {"rmdq_effect": [0.0, 0.0, 0.0], "group_effects": eff0.tolist(), "weights": w.tolist(), "effect": 0.0}
    pop = _population_for(design)

    def gap(scale: float) -> float:
        eff, w = _group_truth(pop, scale * prof)
        return float(w @ eff) - effect

    lin = _group_truth(pop, prof)
    base = float(lin[1] @ lin[0])
    if base == 0:
        raise PlanningError(f"effect profile {prof.tolist()} gives no average effect")
    hi = effect / base
    while gap(hi) * np.sign(effect * base) < 0 and abs(hi) < 1e4:
        hi *= 1.5
    scale = optimize.brentq(gap, 0.0, hi, xtol=1e-10)
    eff, w = _group_truth(pop, scale * prof)
    return {"rmdq_effect": (scale * prof).tolist(), "group_effects": eff.tolist(), "weights": w.tolist(),
            "effect": float(w @ eff)}


def _population_for(design: Design) -> dict[str, np.ndarray]:
    from .synthetic import _resolve

    p = _resolve(design.generator_overrides())
    return _population(json.dumps(p, sort_keys=True))


# ---------------------------------------------------------------------------------------------- simulators
def _generator_data(design: Design, rmdq_effect: Sequence[float], seed: int, *,
                    full_truth: bool = True) -> tuple[pd.DataFrame, dict]:
    """One replicate's analysis dataset and the generator's truth.

    ``full_truth=False`` lets the generator compute its truth on a small population (the data do
    not depend on it; the RMDQ truth then comes from :func:`true_effects`): it saves about 2 s
    per design and effect in every process.
    """
    from .cleaning import clean_study
    from .dataset import build_analysis_dataset
    from .synthetic import generate_study

    n1, n3 = design.invited
    extra = {} if full_truth else {"truth_mc_n": 2000}
    study = generate_study(n_invited=n1 + n3, seed=int(seed), rmdq_effect=list(rmdq_effect),
                           **design.generator_overrides(), **extra)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = build_analysis_dataset(clean_study(study))
    return data, study.truth


def normal_dataset(design: Design, rmdq_effect: Sequence[float], seed: int) -> pd.DataFrame:
    """One analysis dataset from the normal linear mixed model (the ``"normal"`` simulator).

    Parameters
    ----------
    design : Design
        ``invited`` patients per phase are spread evenly over ``n_practices``; each is analysed
        with probability response x follow-up (1 when not set: complete follow-up).
    rmdq_effect : 3 floats
        Phase 3 effect per risk group [low, medium, high].
    seed : int

    Returns
    -------
    DataFrame
        ``practice_id``, ``phase`` (1 or 3), ``risk_group`` (ordered low < medium < high),
        ``rmdq_0m``, ``age``, ``sex``, ``episode_duration``, ``rmdq_change_6m``.

    Notes
    -----
    ``rmdq_change_6m = 3.3 + effect[risk] * phase3 + 0.65 (rmdq_0m - 8.5) - 0.15 (age - 50) / 10
    + u_practice + u_practice,phase + e`` with ``e ~ N(0, residual_sd^2)`` (default 4.4, the
    recalibrated generator's ANCOVA residual SD; intercept and slopes as the generator's),
    ``u_practice ~ N(0, s_p^2)``, ``s_p^2 = icc / (1 - icc) * 5.6^2`` (the generator's scaling of
    ``icc_practice``) and ``u_practice,phase ~ N(0, practice_phase_sd^2)``. Covariates are drawn
    independently of phase (risk group from ``risk_mix``; baseline RMDQ normal around 4, 9, 15 by
    risk group), so with no clustering and complete follow-up the ANCOVA t test has exactly the
    noncentral-t power of :func:`analytic_power` given the covariates.

    Examples
    --------
    >>> d = normal_dataset(Design(n_practices=2, invited=(10, 10)), [0.5, 0.5, 0.5], seed=1)
    >>> len(d), sorted(d["phase"].unique().tolist())
    (20, [1, 3])
    """
    rng = np.random.default_rng(int(seed))
    k = int(design.n_practices)
    n1, n3 = design.invited
    phase3 = np.repeat([0, 1], [n1, n3])
    n = n1 + n3
    practice = np.concatenate([np.arange(n1) % k, np.arange(n3) % k])
    mix = np.asarray(design.risk_mix or (0.378, 0.415, 0.207))
    risk = rng.choice(3, size=n, p=mix / mix.sum())
    rmdq0 = np.clip(np.rint(np.array([4.0, 9.0, 15.0])[risk] + rng.normal(0, 3.5, n)), 0, 24)
    age = np.clip(np.rint(rng.normal(48.5, 16.0, n)), 18, 95)
    female = rng.random(n) < 0.55
    episode = rng.integers(0, 5, n)
    icc = 0.03 if design.icc is None else float(design.icc)
    sd_p = math.sqrt(icc / (1 - icc)) * _WITHIN_SD
    u = rng.normal(0, sd_p, k)[practice] + rng.normal(0, design.practice_phase_sd, (k, 2))[practice, phase3]
    sd_e = NORMAL_RESIDUAL_SD if design.residual_sd is None else float(design.residual_sd)
    eff = np.asarray(rmdq_effect, dtype=float)[risk] * phase3
    y = 3.3 + eff + 0.65 * (rmdq0 - 8.5) - 0.15 * (age - 50) / 10 + u + rng.normal(0, sd_e, n)
    resp = np.asarray(design.response or (1.0, 1.0))[phase3] * np.asarray(design.followup or (1.0, 1.0))[phase3]
    keep = rng.random(n) < resp
    frame = pd.DataFrame({
        "practice_id": pd.Series([f"P{i + 1:02d}" for i in practice]),
        "phase": np.where(phase3 == 1, 3, 1),
        "risk_group": pd.Categorical.from_codes(risk, categories=list(RISK_GROUPS), ordered=True),
        "rmdq_0m": rmdq0, "age": age,
        "sex": pd.Categorical(np.where(female, "female", "male"), categories=["female", "male"]),
        "episode_duration": pd.Categorical.from_codes(episode, categories=list(EPISODES), ordered=True),
        "rmdq_change_6m": y,
    })
    return frame.loc[keep].reset_index(drop=True)


# ---------------------------------------------------------------------------------------------- analyses
def _analyse(data: pd.DataFrame, analyses: Sequence[str], alpha: float) -> list[dict[str, Any]]:
    """Every requested analysis of one replicate: one row per estimand (``failed`` set if it could not be fitted)."""
    from .small_sample import SmallSampleError

    rows: list[dict[str, Any]] = []
    for a in analyses:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rows += [{**r, "failed": ""} for r in _ANALYSE[a](data, alpha)]
        except PlanningError:
            raise
        except (BackpainError, SmallSampleError, np.linalg.LinAlgError, ValueError) as exc:
            names = [f"risk_group:{g}" for g in RISK_GROUPS] if a == "risk_group" else [a]
            rows += [{"estimand": e, "failed": f"{type(exc).__name__}: {exc}"} for e in names]
    return rows


def _primary(data: pd.DataFrame, alpha: float) -> list[dict[str, Any]]:
    from .models import fit_mixed_kr
    from .outcomes import PRIMARY_COVARIATES

    r = fit_mixed_kr(data, "rmdq_change_6m", list(PRIMARY_COVARIATES), alpha=alpha)
    return [{"estimand": "primary", **{k: r[k] for k in _KEYS}, "n_phase1": r["n_phase1"], "n_phase3": r["n_phase3"],
             "icc_estimate": r["icc"], "dropped": bool(r.get("dropped", False))}]


def _primary_design(data: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Complete cases of the primary model as numpy: y, X (phase3 first), practice and period codes."""
    from .outcomes import PRIMARY_COVARIATES

    cols = ["rmdq_change_6m", "phase", "practice_id", *PRIMARY_COVARIATES]
    missing = [c for c in cols if c not in data.columns]
    if missing:
        raise PlanningError(f"analysis dataset: the primary analysis needs the columns {missing}")
    d = data.loc[data[cols].notna().all(axis=1), cols]
    phase3 = (d["phase"].to_numpy() == 3).astype(float)
    parts = [phase3, np.ones(len(d))]
    for c in PRIMARY_COVARIATES:
        s = d[c]
        if isinstance(s.dtype, pd.CategoricalDtype) or s.dtype == object or pd.api.types.is_string_dtype(s):
            levels = list(s.cat.categories) if isinstance(s.dtype, pd.CategoricalDtype) else sorted(s.unique())
            present = [lev for lev in levels if (s == lev).any()]
            parts += [(s == lev).to_numpy(float) for lev in present[1:]]
        elif s.nunique() > 1:
            parts.append(s.to_numpy(float))
    x = np.column_stack(parts)
    practice = pd.factorize(d["practice_id"].astype(str), sort=True)[0]
    period = practice * 2 + phase3.astype(int)
    return d["rmdq_change_6m"].to_numpy(float), x, practice, pd.factorize(period, sort=True)[0], len(d)


def _reml_intercepts(y: np.ndarray, x: np.ndarray, groups: Sequence[np.ndarray]):
    """REML fit of y = X b + u_practice [+ u_period] + e (lme4's profiled criterion, 1 or 2 parameters).

    The same model and criterion as :func:`backpain_analysis.small_sample.fit_reml`, searched
    over theta = sd_k / sd_e in [0, 100] (the bound of ``fit_reml``) by a coarse grid, a
    Nelder-Mead search on |theta| from its best point and a bounded search along each edge (one
    variance 0); infeasible points (no Cholesky factor) count as +inf. Checked equal to
    ``fit_mixed_kr`` in tests/test_planning.py. Returns a
    :class:`~backpain_analysis.small_sample.MixedFit`.
    """
    from .small_sample import MixedFit, indicator_matrix

    zs = [indicator_matrix(g) for g in groups]
    z = np.hstack(zs)
    sizes = [zk.shape[1] for zk in zs]
    ztz, zty, ztx = z.T @ z, z.T @ y, z.T @ x
    xtx, xty, yty = x.T @ x, x.T @ y, float(y @ y)
    n, p = x.shape
    eye = np.eye(z.shape[1])

    def pieces(th):
        lam = np.concatenate([np.full(k, t) for k, t in zip(sizes, th, strict=True)])
        a = eye + lam[:, None] * ztz * lam[None, :]
        ca = np.linalg.cholesky(a)
        sx = np.linalg.solve(ca, lam[:, None] * ztx)
        sy = np.linalg.solve(ca, lam * zty)
        xvx = xtx - sx.T @ sx
        xvy = xty - sx.T @ sy
        cx = np.linalg.cholesky(xvx)
        beta = np.linalg.solve(xvx, xvy)
        s_e = (yty - sy @ sy - xvy @ beta) / (n - p)
        crit = (2 * np.sum(np.log(np.diag(ca))) + 2 * np.sum(np.log(np.diag(cx)))
                + (n - p) * (1 + math.log(2 * math.pi * s_e)))
        return crit, beta, s_e, xvx

    def f(th):
        try:
            return pieces(np.minimum(np.abs(np.asarray(th, dtype=float)), 100.0))[0]
        except (np.linalg.LinAlgError, ValueError):
            return np.inf

    def edge(fix: int | None):
        """Bounded 1-D search of the free parameter (the other fixed at 0), around the best grid point."""
        free = 0 if fix in (None, 1) else 1

        def g(t):
            th = np.zeros(len(zs))
            th[free] = t
            return f(th)

        vals = [g(t) for t in _GRID]
        i = int(np.argmin(vals))
        lo, hi = _GRID[max(i - 1, 0)], (_GRID[i + 1] if i + 1 < len(_GRID) else 100.0)
        r = optimize.minimize_scalar(g, bounds=(lo, hi), method="bounded", options={"xatol": 1e-10})
        th = np.zeros(len(zs))
        th[free] = r.x
        return (r.fun, th) if r.fun <= vals[i] else (vals[i], np.where(np.arange(len(zs)) == free, _GRID[i], 0.0))

    cands = [(f(np.zeros(len(zs))), np.zeros(len(zs)))]
    if len(zs) == 1:
        cands.append(edge(None))
    else:
        vals = np.array([[f((a, b)) for b in _GRID] for a in _GRID])
        i, j = np.unravel_index(np.argmin(vals), vals.shape)
        r = optimize.minimize(f, np.array([_GRID[i], _GRID[j]]) + 1e-3, method="Nelder-Mead",
                              options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 2000})
        cands += [(r.fun, np.minimum(np.abs(r.x), 100.0)), edge(0), edge(1)]
    th = min(cands, key=lambda c: c[0])[1]
    crit, beta, s_e, xvx = pieces(th)
    variances = np.append(s_e * th ** 2, s_e)
    return MixedFit(beta=beta, names=[f"x{i}" for i in range(p)], variances=variances,
                    component_names=["practice", "practice:phase"][: len(zs)], cov_beta=s_e * np.linalg.inv(xvx),
                    nobs=n, reml_criterion=float(crit), _x=x, _zs=zs)


_GRID = np.array([0.0, 0.03, 0.08, 0.15, 0.3, 0.6, 1.2, 3.0])


def _primary_fast(data: pd.DataFrame, alpha: float) -> list[dict[str, Any]]:
    """The primary analysis (as :func:`backpain_analysis.models.fit_mixed_kr` with its defaults)
    without patsy and with a 2-parameter REML search: the replicate-loop fast path.

    As ``fit_mixed_kr``: a practice-by-phase variance estimated at 0 (<= 1e-8 x residual) is
    dropped and the model refitted with the practice intercept only; where the Kenward-Roger df
    is undefined the Satterthwaite df is used with the KR-adjusted SE.
    """
    y, x, g1, g2, n = _primary_design(data)
    if len(np.unique(x[:, 0])) < 2:
        raise PlanningError("primary analysis: the replicate has complete cases from one phase only")
    fit = _reml_intercepts(y, x, [g1, g2])
    if fit.variances[1] <= 1e-8 * fit.variances[-1]:
        fit = _reml_intercepts(y, x, [g1])
    L = np.zeros(x.shape[1])
    L[0] = 1.0
    kr = fit.kenward_roger(L)
    est, se, dof = kr["estimate"], kr["se"], kr["df"]
    if not (np.isfinite(dof) and dof > 0):
        dof = kr["df_satterthwaite"]
    crit = stats.t.ppf(1 - alpha / 2, dof)
    v = fit.variances
    n3 = int(x[:, 0].sum())
    return [{"estimand": "primary", "estimate": est, "se": se, "ci_low": est - crit * se, "ci_high": est + crit * se,
             "p_value": float(2 * stats.t.sf(abs(est / se), dof)), "df": dof, "n": n, "n_phase1": n - n3,
             "n_phase3": n3, "icc_estimate": float(v[0] / v.sum()), "dropped": len(v) == 2}]


def _ancova(data: pd.DataFrame, alpha: float) -> list[dict[str, Any]]:
    from .models import effect_from_fit, fit_ols
    from .outcomes import PRIMARY_COVARIATES

    f = fit_ols(data, "rmdq_change_6m", list(PRIMARY_COVARIATES))
    e = effect_from_fit(f, alpha=alpha)
    n3 = int(f.model.exog[:, f.model.exog_names.index("phase3")].sum())
    return [{"estimand": "ancova", **{k: e[k] for k in _KEYS}, "n_phase1": e["n"] - n3, "n_phase3": n3}]


def _risk_group(data: pd.DataFrame, alpha: float) -> list[dict[str, Any]]:
    from .models import fit_mixed_kr
    from .outcomes import PRIMARY_COVARIATES

    r = fit_mixed_kr(data, "rmdq_change_6m", list(PRIMARY_COVARIATES), interaction="risk_group", alpha=alpha)
    fit = r["fit"]
    rows = []
    for level in RISK_GROUPS:
        L = np.zeros(len(fit.names))
        L[fit.names.index("phase3")] = 1.0
        term = f"phase3:risk_group[T.{level}]"
        if term in fit.names:
            L[fit.names.index(term)] = 1.0
        kr = fit.kenward_roger(L)
        crit = stats.t.ppf(1 - alpha / 2, kr["df"])
        est, se = kr["estimate"], kr["se"]
        grp = data.loc[(data["risk_group"] == level) & data["rmdq_change_6m"].notna()]
        rows.append({"estimand": f"risk_group:{level}", "estimate": est, "se": se, "ci_low": est - crit * se,
                     "ci_high": est + crit * se, "p_value": float(2 * stats.t.sf(abs(est / se), kr["df"])),
                     "df": kr["df"], "n": r["n"], "n_phase1": int((grp["phase"] == 1).sum()),
                     "n_phase3": int((grp["phase"] == 3).sum())})
    return rows


def _matched_referral(data: pd.DataFrame, alpha: float) -> list[dict[str, Any]]:
    from .models import effect_from_fit, fit_logistic

    if "matched_referral" not in data.columns:
        raise PlanningError("analysis 'matched_referral' needs the generator (the normal simulator has no records)")
    d = data.loc[data["consented_records"] == 1] if "consented_records" in data.columns else data
    f = fit_logistic(d, "matched_referral")
    e = effect_from_fit(f, exponentiate=True, alpha=alpha)
    n3 = int(f.model.exog[:, f.model.exog_names.index("phase3")].sum())
    return [{"estimand": "matched_referral", **{k: e[k] for k in _KEYS}, "n_phase1": e["n"] - n3, "n_phase3": n3}]


_KEYS = ("estimate", "se", "ci_low", "ci_high", "p_value", "df", "n")
_ANALYSE: dict[str, Callable[[pd.DataFrame, float], list[dict[str, Any]]]] = {
    "primary": _primary_fast, "primary_reference": _primary, "ancova": _ancova, "risk_group": _risk_group,
    "matched_referral": _matched_referral}


def _truth_of(estimand: str, truth: Mapping[str, Any]) -> float:
    if estimand in ("primary", "ancova"):
        return float(truth["rmdq_adjusted_difference"])
    if estimand.startswith("risk_group:"):
        return float(truth[f"rmdq_difference_{estimand.split(':')[1]}_risk"])
    return float(truth["matched_referral_or"])


def _one_replicate(task: tuple) -> list[dict[str, Any]]:
    design, effects, seed, replicate, analyses, simulator, alpha = task
    truth = {"rmdq_adjusted_difference": effects["effect"],
             **{f"rmdq_difference_{g}_risk": v for g, v in zip(RISK_GROUPS, effects["group_effects"], strict=True)}}
    if simulator == "generator":
        full = "matched_referral" in analyses  # its true odds ratio comes from the generator's truth
        data, gen_truth = _generator_data(design, effects["rmdq_effect"], seed, full_truth=full)
        if full:
            truth = gen_truth
    else:
        data = normal_dataset(design, effects["rmdq_effect"], seed)
    return [{"replicate": replicate, "seed": seed, **r, "truth": _truth_of(r["estimand"], truth)}
            for r in _analyse(data, analyses, alpha)]


def replicate_seeds(seed: int, n_replicates: int) -> list[int]:
    """Seeds of the replicate studies: the same for every grid point (common random numbers).

    Examples
    --------
    >>> replicate_seeds(1, 3) == replicate_seeds(1, 5)[:3]
    True
    """
    ss = np.random.SeedSequence(int(seed))
    return [int(c.generate_state(1, dtype=np.uint32)[0]) for c in ss.spawn(int(n_replicates))]


def _check_options(analyses: Sequence[str], simulator: str, n_replicates: int, alpha: float) -> tuple[str, ...]:
    if isinstance(analyses, str):
        analyses = (analyses,)
    bad = [a for a in analyses if a not in ANALYSES]
    if bad or not analyses:
        raise PlanningError(f"analyses {bad or list(analyses)} are unknown; choose from {ANALYSES}")
    if simulator not in SIMULATORS:
        raise PlanningError(f"simulator must be one of {SIMULATORS}; got {simulator!r}")
    if int(n_replicates) < 2:
        raise PlanningError(f"n_replicates must be at least 2; got {n_replicates!r}")
    if not 0 < alpha < 1:
        raise PlanningError(f"alpha must be in (0, 1); got {alpha!r}")
    return tuple(dict.fromkeys(analyses))


def simulate_replicates(
    design: Design,
    effect: float,
    n_replicates: int,
    seed: int = 1,
    *,
    analyses: Sequence[str] | str = ("primary", "ancova"),
    profile: str | Sequence[float] = "uniform",
    simulator: str = "generator",
    alpha: float = 0.05,
    n_jobs: int = 1,
    progress: bool = False,
) -> pd.DataFrame:
    """Simulate and analyse ``n_replicates`` studies; one row per replicate and estimand.

    Parameters are those of :func:`simulate_power`.

    Returns
    -------
    DataFrame
        ``replicate``, ``seed``, ``estimand``, ``estimate``, ``se``, ``ci_low``, ``ci_high``,
        ``p_value``, ``df``, ``n`` (patients analysed), ``n_phase1``, ``n_phase3``,
        ``icc_estimate`` (primary only), ``truth`` (true value of the estimand), ``failed``
        (error text of a replicate whose analysis could not be computed, else "").
    """
    analyses = _check_options(analyses, simulator, n_replicates, alpha)
    effects = true_effects(design, effect, profile, simulator=simulator)
    seeds = replicate_seeds(seed, n_replicates)
    tasks = [(design, effects, s, r, analyses, simulator, alpha) for r, s in enumerate(seeds)]
    rows: list[dict[str, Any]] = []
    bar = _bar(len(tasks), progress, "replicates")
    if n_jobs > 1 and len(tasks) > 1:
        if simulator == "generator" and "matched_referral" in analyses:
            from .synthetic import generate_study  # compute the truth once; forked workers inherit the cache

            generate_study(n_invited=10, seed=0, rmdq_effect=effects["rmdq_effect"], **design.generator_overrides())
        import multiprocessing as mp

        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
        with ProcessPoolExecutor(max_workers=int(n_jobs), mp_context=ctx) as pool:
            for out in pool.map(_one_replicate, tasks, chunksize=max(1, len(tasks) // (8 * n_jobs))):
                rows += out
                bar.update(1)
    else:
        for t in tasks:
            rows += _one_replicate(t)
            bar.update(1)
    bar.close()
    frame = pd.DataFrame(rows)
    if "icc_estimate" not in frame.columns:
        frame["icc_estimate"] = np.nan
    return frame


def _bar(total: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc=desc, leave=False)


# ---------------------------------------------------------------------------------------------- summaries
def summarize_replicates(reps: pd.DataFrame, *, null_value: float | None = None) -> pd.DataFrame:
    """Power, bias, coverage and CI width with Monte Carlo SEs, one row per estimand.

    Parameters
    ----------
    reps : DataFrame
        From :func:`simulate_replicates`.
    null_value : float, optional
        Value under no effect (0 for differences; 1 for the odds ratio, the default for the
        estimand ``matched_referral``): power is the share of CIs excluding it.

    Returns
    -------
    DataFrame
        ``estimand``, ``replicates`` (analysed), ``failed``, ``truth``, ``power``, ``power_mcse``,
        ``mean_estimate``, ``bias``, ``bias_mcse``, ``empirical_se``, ``mean_se``, ``sd_se`` (SD of
        the SEs over replicates), ``coverage``,
        ``coverage_mcse``, ``mean_ci_width``, ``ci_width_mcse``, ``mean_df``, ``mean_n``,
        ``mean_n_phase1``, ``mean_n_phase3``.

    Notes
    -----
    Morris, White & Crowther (Stat Med 2019), Table 6: MCSE of power and coverage
    sqrt(p (1 - p) / R); of the bias SD(estimate) / sqrt(R); of the mean CI width
    SD(width) / sqrt(R). Power: the two-sided 1 - alpha CI excludes the null value (the same as
    p < alpha for the t-based CIs here). Bias and CI of the odds ratio are on the log scale.

    Examples
    --------
    >>> reps = pd.DataFrame({"estimand": "primary", "estimate": [0.1, 0.3], "se": 0.1, "ci_low": [-0.1, 0.1],
    ...                      "ci_high": [0.3, 0.5], "df": 5.0, "n": 100, "n_phase1": 50, "n_phase3": 50,
    ...                      "truth": 0.2, "failed": ""})
    >>> s = summarize_replicates(reps).iloc[0]
    >>> float(s["power"]), float(s["coverage"]), abs(round(float(s["bias"]), 6))
    (0.5, 1.0, 0.0)
    """
    out = []
    for estimand, g in reps.groupby("estimand", sort=False):
        failed = int((g["failed"] != "").sum()) if "failed" in g else 0
        ok = g.loc[g["failed"] == ""] if "failed" in g else g
        r = len(ok)
        if r == 0:
            out.append({"estimand": estimand, "replicates": 0, "failed": failed})
            continue
        is_or = estimand == "matched_referral"
        null = null_value if null_value is not None else (1.0 if is_or else 0.0)
        tr = np.log if is_or else (lambda v: v)
        est, lo, hi = (np.asarray(tr(ok[c].to_numpy(float))) for c in ("estimate", "ci_low", "ci_high"))
        truth = np.asarray(tr(ok["truth"].to_numpy(float)))
        null_t = float(tr(null))
        reject = (lo > null_t) | (hi < null_t)
        cover = (lo <= truth) & (truth <= hi)
        width = hi - lo
        p, c = reject.mean(), cover.mean()
        sd = est.std(ddof=1) if r > 1 else np.nan
        out.append({
            "estimand": estimand, "replicates": r, "failed": failed, "truth": float(np.mean(ok["truth"])),
            "power": float(p), "power_mcse": math.sqrt(p * (1 - p) / r),
            "mean_estimate": float(np.exp(est.mean()) if is_or else est.mean()),
            "bias": float(np.mean(est - truth)), "bias_mcse": float(sd / math.sqrt(r)), "empirical_se": float(sd),
            "mean_se": float(ok["se"].mean()), "sd_se": float(ok["se"].std(ddof=1)) if r > 1 else np.nan,
            "coverage": float(c), "coverage_mcse": math.sqrt(c * (1 - c) / r),
            "mean_ci_width": float(width.mean()),
            "ci_width_mcse": float(width.std(ddof=1) / math.sqrt(r)) if r > 1 else np.nan,
            "mean_df": float(ok["df"].mean()), "mean_n": float(ok["n"].mean()),
            "mean_n_phase1": float(ok["n_phase1"].mean()), "mean_n_phase3": float(ok["n_phase3"].mean()),
        })
    return pd.DataFrame(out)


def design_effects(design: Design, reps: pd.DataFrame) -> dict[str, float]:
    """Design effect implied by the ICC next to the simulated one.

    Parameters
    ----------
    design : Design
    reps : DataFrame
        Replicates with the estimands ``primary`` and ``ancova``.

    Returns
    -------
    dict
        ``m_practice`` (mean analysed patients per practice), ``m_period`` (per practice and
        phase), ``icc`` (practice), ``icc_total`` (practice + practice-by-phase share),
        ``cluster_autocorrelation``, ``de_formula`` (1 + (m - 1) ICC with m = ``m_practice``:
        the parallel-cluster formula), ``de_before_after`` (Hooper et al. 2016 for a two-period
        design in which every practice contributes both phases: 1 + (m - 1) rho - m rho r, with
        m = ``m_period``), ``de_simulated`` (empirical variance of the primary estimate / mean
        squared SE of the ANCOVA ignoring practices), ``de_simulated_mcse``.

    Notes
    -----
    The formulas use the generator's variance scale: practice variance
    icc / (1 - icc) x 5.6^2, practice-by-phase variance ``practice_phase_sd``^2, within-practice
    variance 5.6^2. In a before-and-after design the practice effect cancels from the phase
    contrast, so the parallel-cluster formula overstates the design effect; the cluster-period
    effects are what inflates the variance. The simulated design effect's MCSE is
    DE sqrt(2 / (R - 1)) (variance of a normal sample).
    """
    icc = 0.03 if design.icc is None else float(design.icc)
    s_w2 = _WITHIN_SD ** 2
    s_p2 = icc / (1 - icc) * s_w2 if icc > 0 else 0.0
    s_pp2 = float(design.practice_phase_sd) ** 2
    total = s_p2 + s_pp2 + s_w2
    rho = (s_p2 + s_pp2) / total
    r_auto = s_p2 / (s_p2 + s_pp2) if s_p2 + s_pp2 > 0 else 1.0
    ok = reps.loc[reps["failed"] == ""] if "failed" in reps else reps
    prim = ok.loc[ok["estimand"] == "primary"]
    anc = ok.loc[ok["estimand"] == "ancova"]
    base = prim if len(prim) else (anc if len(anc) else ok)
    n_mean = float(base["n"].mean()) if len(base) else float("nan")
    k = int(design.n_practices)
    m_practice = n_mean / k
    m_period = m_practice / 2
    out = {"m_practice": m_practice, "m_period": m_period, "icc": icc, "icc_total": rho,
           "cluster_autocorrelation": r_auto, "de_formula": 1 + (m_practice - 1) * icc,
           "de_before_after": 1 + (m_period - 1) * rho - m_period * rho * r_auto,
           "de_simulated": np.nan, "de_simulated_mcse": np.nan}
    if len(prim) > 2 and len(anc) > 2:
        de = float(prim["estimate"].var(ddof=1) / np.mean(anc["se"] ** 2))
        out["de_simulated"] = de
        out["de_simulated_mcse"] = de * math.sqrt(2 / (len(prim) - 1))
    return out


# ---------------------------------------------------------------------------------------------- the main entry
def _point_key(payload: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]


def simulate_power(
    design: Design,
    effect: float,
    n_replicates: int = 200,
    seed: int = 1,
    *,
    analysis: str | Sequence[str] = "primary",
    profile: str | Sequence[float] = "uniform",
    simulator: str = "generator",
    alpha: float = 0.05,
    n_jobs: int = 1,
    cache_dir: str | Path | None = None,
    progress: bool = False,
    design_effect: bool = True,
) -> pd.DataFrame:
    """Power, bias, coverage and CI width of the planned analysis by simulating replicate studies.

    Parameters
    ----------
    design : Design
    effect : float
        True average effect of stratified care on the 6-month RMDQ change (points; the
        estimand of the primary analysis, see :func:`true_effects`).
    n_replicates : int, default 200
    seed : int, default 1
        Seed of the replicate seeds (:func:`replicate_seeds`); same arguments, same numbers.
    analysis : str or sequence of str, default "primary"
        Any of :data:`ANALYSES`. ``"primary"`` and ``"ancova"`` are run too (for the simulated
        design effect, unless ``design_effect=False``) but only reported when asked for.
    profile : {"uniform", "published"} or 3 numbers
        Relative effects per risk group.
    simulator : {"generator", "normal"}
    alpha : float, default 0.05
    n_jobs : int, default 1
        Worker processes.
    cache_dir : str or Path, optional
        Folder of cached results: a point already simulated (same arguments) is read, not rerun.
    progress : bool
        Show a tqdm progress bar.
    design_effect : bool, default True
        Also run the primary and ANCOVA analyses (if not asked for) to give the simulated
        design effect; False skips them.

    Returns
    -------
    DataFrame
        One row per estimand: the columns of :func:`summarize_replicates` plus ``effect``,
        ``n_practices``, ``invited_phase1``, ``invited_phase3``, ``simulator``, ``alpha``, and
        the :func:`design_effects` columns (``de_formula``, ``de_before_after``,
        ``de_simulated``, ``de_simulated_mcse``, ``m_practice``, ``m_period``).
        The replicate rows are in ``result.attrs["replicates"]``.

    Notes
    -----
    Each replicate is a whole study from the generator (or the normal simulator), cleaned and
    analysed; replicates whose model cannot be fitted are counted in ``failed`` and left out.
    The primary analysis in the loop is the complete-case mixed model with Kenward-Roger df
    (fast path of the multiply imputed primary analysis), fitted by a dedicated 2-parameter REML
    that equals :func:`~backpain_analysis.models.fit_mixed_kr` to 1e-6. About 0.2 s per
    IMPaCT-sized replicate, most of it generating and cleaning the study (``make bench``).

    Examples
    --------
    >>> res = simulate_power(Design(n_practices=4, invited=(40, 40)), 2.0, n_replicates=4, seed=3,
    ...                      simulator="normal")
    >>> res[["estimand", "replicates"]].values.tolist()
    [['primary', 4]]
    """
    wanted = _check_options((analysis,) if isinstance(analysis, str) else tuple(analysis), simulator,
                            n_replicates, alpha)
    run = tuple(dict.fromkeys([*wanted, "primary", "ancova"])) if design_effect else wanted
    payload = {"v": _CACHE_VERSION, "design": design.key(), "effect": float(effect),
               "profile": _profile(profile).tolist(), "n_replicates": int(n_replicates), "seed": int(seed),
               "analyses": sorted(run), "simulator": simulator, "alpha": float(alpha)}
    reps = None
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"point_{_point_key(payload)}.json"
        if path.exists():
            stored = json.loads(path.read_text(encoding="utf-8"))
            reps = pd.DataFrame(stored["replicates"])
    if reps is None:
        reps = simulate_replicates(design, effect, n_replicates, seed, analyses=run, profile=profile,
                                   simulator=simulator, alpha=alpha, n_jobs=n_jobs, progress=progress)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"point": payload, "replicates": json.loads(reps.to_json(orient="records"))}),
                           encoding="utf-8")
            os.replace(tmp, path)
    reps["failed"] = reps["failed"].fillna("")
    table = summarize_replicates(reps)
    table = table.loc[table["estimand"].isin(wanted) | table["estimand"].str.startswith("risk_group:")
                      & ("risk_group" in wanted)].reset_index(drop=True)
    de = design_effects(design, reps)
    n1, n3 = design.invited
    table.insert(1, "effect", float(effect))
    table.insert(2, "n_practices", int(design.n_practices))
    table.insert(3, "invited_phase1", n1)
    table.insert(4, "invited_phase3", n3)
    table["simulator"] = simulator
    table["alpha"] = float(alpha)
    for k in ("m_practice", "m_period", "de_formula", "de_before_after", "de_simulated", "de_simulated_mcse"):
        table[k] = de[k]
    table.attrs["replicates"] = reps
    return table


# ---------------------------------------------------------------------------------------------- grids
def _grid(points: list[tuple[dict[str, Any], Design, float]], n_replicates: int, seed: int, progress: bool,
          **kwargs: Any) -> pd.DataFrame:
    rows = []
    bar = _bar(len(points), progress, "grid points")
    for labels, design, effect in points:
        res = simulate_power(design, effect, n_replicates, seed, progress=False, **kwargs)
        for k, v in labels.items():
            res[k] = v
        res.attrs = {}  # the replicate frames stay in the cache; concat cannot compare them
        rows.append(res)
        bar.update(1)
    bar.close()
    return pd.concat(rows, ignore_index=True)


def power_grid(
    design: Design,
    effect: float,
    practices: Sequence[int],
    patients_per_practice: Sequence[int],
    n_replicates: int = 200,
    seed: int = 1,
    *,
    progress: bool = True,
    **kwargs: Any,
) -> pd.DataFrame:
    """Power over numbers of practices x invited patients per practice per phase.

    Parameters
    ----------
    design : Design
        The other settings; ``n_practices``, ``invited`` and (unless set) ``n_gps`` vary.
    effect : float
    practices : sequence of int
    patients_per_practice : sequence of int
        Invited patients per practice in each phase (``invited = (k m, k m)``).
    n_replicates, seed
    progress : bool, default True
        A tqdm bar over grid points.
    **kwargs
        Passed to :func:`simulate_power` (``analysis``, ``simulator``, ``cache_dir``, ``n_jobs``...);
        with ``cache_dir`` an interrupted grid resumes where it stopped.

    Returns
    -------
    DataFrame
        The :func:`simulate_power` rows of every point plus ``patients_per_practice``.
    """
    if not practices or not patients_per_practice:
        raise PlanningError("power_grid needs at least one number of practices and of patients per practice")
    points = []
    for k in practices:
        for m in patients_per_practice:
            if int(k) < 2 or int(m) < 1:
                raise PlanningError(f"grid point {k} practices x {m} patients: need >= 2 practices and >= 1 patient")
            d = replace(design, n_practices=int(k), invited=(int(k) * int(m), int(k) * int(m)), n_gps=design.n_gps
                        if design.n_gps is not None and design.n_gps >= k else None)
            points.append(({"patients_per_practice": int(m)}, d, float(effect)))
    return _grid(points, n_replicates, seed, progress, **kwargs)


def effect_grid(design: Design, effects: Sequence[float], n_replicates: int = 200, seed: int = 1, *,
                progress: bool = True, **kwargs: Any) -> pd.DataFrame:
    """Power curve over true effect sizes (same replicate seeds at every effect).

    Returns the :func:`simulate_power` rows of every effect (column ``effect``).
    """
    if not len(effects):
        raise PlanningError("effect_grid needs at least one effect size")
    return _grid([({}, design, float(e)) for e in effects], n_replicates, seed, progress, **kwargs)


def minimum_detectable_effect(curve: pd.DataFrame, power: float = 0.8, *, estimand: str = "primary",
                              alpha: float = 0.05) -> dict[str, float]:
    """Smallest effect detected with the given power, from a simulated power curve.

    Parameters
    ----------
    curve : DataFrame
        From :func:`effect_grid` (at least two effect sizes).
    power : float, default 0.8
    estimand : str, default "primary"
    alpha : float

    Returns
    -------
    dict
        ``power``, ``mde_curve`` (probit fit of power on effect through the simulated points,
        weighted by replicates; NaN if the curve does not reach ``power``), ``mde_se_formula``
        ((t_{1-alpha/2} + t_{power}) x mean SE on the mean df, averaged over the curve's points),
        ``mde_se_formula_mcse`` (from the SD of the SEs over replicates; NaN without ``sd_se``).

    Notes
    -----
    The probit curve Phi(a + b effect) is fitted by maximum likelihood to the rejection counts;
    the formula is the usual normal-approximation MDE with the simulated SE and KR df.

    Examples
    --------
    >>> c = pd.DataFrame({"estimand": "primary", "effect": [0.0, 1.0, 2.0], "power": [0.05, 0.5, 0.95],
    ...                   "replicates": 400, "mean_se": 0.5, "mean_df": 1e6})
    >>> round(minimum_detectable_effect(c)["mde_curve"], 2), round(minimum_detectable_effect(c)["mde_se_formula"], 2)
    (1.51, 1.4)
    """
    if not 0 < power < 1:
        raise PlanningError(f"power must be in (0, 1); got {power!r}")
    c = curve.loc[curve["estimand"] == estimand].sort_values("effect")
    if len(c) < 2 or c["effect"].nunique() < 2:
        raise PlanningError(f"minimum_detectable_effect needs a power curve with >= 2 effect sizes for {estimand!r}")
    x = c["effect"].to_numpy(float)
    n = c["replicates"].to_numpy(float)
    k = np.clip(c["power"].to_numpy(float), 0, 1) * n

    def nll(ab):
        pr = np.clip(stats.norm.cdf(ab[0] + ab[1] * x), 1e-12, 1 - 1e-12)
        return -float(np.sum(k * np.log(pr) + (n - k) * np.log(1 - pr)))

    fit = optimize.minimize(nll, np.array([-1.6, 1.0 / max(np.ptp(x), 1e-9)]), method="Nelder-Mead",
                            options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 4000})
    a, b = fit.x
    reach = b > 0 and (c["power"].max() >= power - 0.1)
    mde_curve = float((stats.norm.ppf(power) - a) / b) if reach else float("nan")
    dfm = c["mean_df"].to_numpy(float)
    factor = stats.t.ppf(1 - alpha / 2, dfm) + stats.t.ppf(power, dfm)
    vals = factor * c["mean_se"].to_numpy(float)
    mcse = float("nan")
    if "sd_se" in c:  # MCSE of a mean of per-point mean SEs: SD(se) / sqrt(R) per point
        mcse = float(np.sqrt(np.sum((factor * c["sd_se"].to_numpy(float)) ** 2 / n)) / len(c))
    return {"power": float(power), "mde_curve": mde_curve, "mde_se_formula": float(vals.mean()),
            "mde_se_formula_mcse": mcse}


# ---------------------------------------------------------------------------------------------- closed form
def analytic_power(effect: float, residual_sd: float, n1: int, n3: int, *, n_covariates: int = 0,
                   alpha: float = 0.05) -> float:
    """Power of the two-sided ANCOVA t test of the phase effect with a known residual SD.

    Parameters
    ----------
    effect : float
    residual_sd : float
    n1, n3 : int
        Patients analysed per phase.
    n_covariates : int
        Covariate columns besides intercept and phase (the residual df is n1 + n3 - 2 - this).
    alpha : float

    Returns
    -------
    float
        P(|T| > t_{1-alpha/2, df}) with T noncentral t, noncentrality
        effect / (residual_sd sqrt(1/n1 + 1/n3)).

    Notes
    -----
    Exact for the t test when the covariates are balanced between phases; with covariates
    drawn independently of phase the variance of the estimate is larger by about
    1 + n_covariates / (n1 + n3) on average, a negligible difference at study sizes.

    Examples
    --------
    >>> round(analytic_power(0.0, 1.0, 50, 50), 3)
    0.05
    >>> round(analytic_power(0.5, 1.0, 64, 64), 3)   # the classic 64 per group for d = 0.5
    0.801
    """
    if residual_sd <= 0 or n1 < 1 or n3 < 1:
        raise PlanningError("analytic_power needs residual_sd > 0 and at least one patient per phase")
    dof = n1 + n3 - 2 - int(n_covariates)
    if dof < 1:
        raise PlanningError(f"analytic_power: {n1 + n3} patients leave no residual df for {n_covariates} covariates")
    ncp = effect / (residual_sd * math.sqrt(1 / n1 + 1 / n3))
    crit = stats.t.ppf(1 - alpha / 2, dof)
    # the far tail can come back as NaN from scipy's nct (e.g. cdf(-1.96, 9998, 15)); it is ~0 there
    upper, lower = stats.nct.sf(crit, dof, abs(ncp)), stats.nct.cdf(-crit, dof, abs(ncp))
    return float(np.nan_to_num(upper, nan=0.0) + np.nan_to_num(lower, nan=0.0))


# ---------------------------------------------------------------------------------------------- words
def summary_sentence(row: Mapping[str, Any] | pd.Series, *, patients_per_practice: int | None = None) -> str:
    """One plain-language sentence for one :func:`simulate_power` row.

    The range is the estimate +- 1.96 Monte Carlo SE (the uncertainty from simulating a finite
    number of studies, not a confidence interval of the study).

    Examples
    --------
    >>> row = {"estimand": "primary", "n_practices": 12, "invited_phase1": 1800, "invited_phase3": 1800,
    ...        "effect": 0.7, "power": 0.81, "power_mcse": 0.0155, "replicates": 640, "mean_n": 1300.0}
    >>> summary_sentence(row)
    'With 12 practices and 150 invited patients per practice per phase (about 1300 analysed), power to detect 0.7 RMDQ points is 0.81 (0.78 to 0.84; 640 simulated studies).'
    """
    k = int(row["n_practices"])
    n1, n3 = int(row["invited_phase1"]), int(row["invited_phase3"])
    if patients_per_practice is None and n1 == n3 and n1 % k == 0:
        patients_per_practice = n1 // k
    who = (f"{patients_per_practice} invited patients per practice per phase" if patients_per_practice is not None
           else f"{n1} + {n3} invited patients")
    p, se = float(row["power"]), float(row["power_mcse"])
    lo, hi = max(0.0, p - 1.96 * se), min(1.0, p + 1.96 * se)
    est = str(row["estimand"])
    size, what = f"{float(row['effect']):g}", "RMDQ points"
    if est.startswith("risk_group:"):  # the true effect in the group (the floor makes it differ from the average)
        size, what = f"{float(row['truth']):.2f}", f"RMDQ points in the {est.split(':')[1]} risk group"
    elif est == "matched_referral":
        size, what = f"an odds ratio of {float(row['truth']):.2f}", "for risk-matched referral"
    return (f"With {k} practices and {who} (about {float(row['mean_n']):.0f} analysed), power to detect "
            f"{size} {what} is {p:.2f} ({lo:.2f} to {hi:.2f}; {int(row['replicates'])} "
            f"simulated studies).")


def analytic_check(
    effect: float = 0.6,
    residual_sd: float = 4.6,
    invited: tuple[int, int] = (300, 300),
    n_practices: int = 10,
    n_replicates: int = 400,
    seed: int = 1,
    *,
    alpha: float = 0.05,
    n_jobs: int = 1,
    progress: bool = False,
) -> dict[str, Any]:
    """Simulated against closed-form power where the answer is known.

    No clustering (ICC 0, no practice-by-phase variation), complete follow-up, a normal residual
    with known SD (the ``"normal"`` simulator) and the complete-case ANCOVA: the t test of the
    phase effect has the noncentral-t power of :func:`analytic_power`.

    Returns
    -------
    dict
        ``simulated`` (power), ``mcse``, ``analytic``, ``difference`` (simulated - analytic),
        ``z`` (difference / MCSE), ``agrees`` (|z| <= 3), ``replicates``, ``n1``, ``n3``,
        ``n_covariates``.

    Notes
    -----
    The MCSE is that of a binomial proportion at the analytic power, sqrt(p (1 - p) / R). The
    ANCOVA has 9 covariate columns besides the phase (baseline RMDQ, age, sex, 4 episode
    duration and 2 risk group dummies).

    Examples
    --------
    >>> r = analytic_check(n_replicates=40, invited=(60, 60), effect=2.0)
    >>> r["agrees"], r["n1"]
    (True, 60)
    """
    design = Design(n_practices=n_practices, invited=invited, icc=0.0, practice_phase_sd=0.0,
                    residual_sd=residual_sd)
    res = simulate_power(design, effect, n_replicates, seed, analysis="ancova", simulator="normal", alpha=alpha,
                         n_jobs=n_jobs, progress=progress, design_effect=False)
    row = res.iloc[0]
    n1, n3 = design.invited
    k = 9
    analytic = analytic_power(effect, residual_sd, n1, n3, n_covariates=k, alpha=alpha)
    r = int(row["replicates"])
    mcse = math.sqrt(analytic * (1 - analytic) / r)
    diff = float(row["power"]) - analytic
    z = diff / mcse if mcse > 0 else 0.0
    return {"simulated": float(row["power"]), "mcse": mcse, "analytic": analytic, "difference": diff, "z": z,
            "agrees": bool(abs(z) <= 3), "replicates": r, "n1": n1, "n3": n3, "n_covariates": k}


# ---------------------------------------------------------------------------------------------- figures
def power_curve_plot(curve: pd.DataFrame, *, estimand: str = "primary", targets: Sequence[float] = (0.8, 0.9),
                     ax: Any = None) -> Any:
    """Simulated power against the true effect, with +-1.96 MCSE bars and the target power lines.

    Returns the matplotlib Axes.
    """
    import matplotlib.pyplot as plt

    c = curve.loc[curve["estimand"] == estimand].sort_values("effect")
    if c.empty:
        raise PlanningError(f"power curve has no rows for estimand {estimand!r}")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    ax.errorbar(c["effect"], c["power"], yerr=1.96 * c["power_mcse"], marker="o", capsize=3, label="simulated")
    for t in targets:
        ax.axhline(t, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("true effect (RMDQ points)")
    ax.set_ylabel("power")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"Power of the {estimand} analysis (bars: 95% Monte Carlo interval)")
    return ax


def power_grid_plot(grid: pd.DataFrame, *, estimand: str = "primary", ax: Any = None) -> Any:
    """Power against invited patients per practice per phase, one line per number of practices.

    Returns the matplotlib Axes.
    """
    import matplotlib.pyplot as plt

    g = grid.loc[grid["estimand"] == estimand]
    if g.empty or "patients_per_practice" not in g.columns:
        raise PlanningError("power_grid_plot needs the result of power_grid")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    for k, rows in g.groupby("n_practices"):
        rows = rows.sort_values("patients_per_practice")
        ax.errorbar(rows["patients_per_practice"], rows["power"], yerr=1.96 * rows["power_mcse"], marker="o",
                    capsize=3, label=f"{k} practices")
    ax.axhline(0.8, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("invited patients per practice per phase")
    ax.set_ylabel("power")
    ax.set_ylim(0, 1.02)
    ax.legend(title="", fontsize="small")
    ax.set_title(f"Power for {g['effect'].iloc[0]:g} RMDQ points ({estimand} analysis)")
    return ax
