"""The synthetic IMPaCT Back study: a documented data-generating model with known truth.

:func:`generate_study` simulates a whole study export (the nine tables of
``data/data_dictionary.yaml``) from a structural model of patients, clinicians and practices
whose default parameters reproduce, within sampling error, the published IMPaCT Back figures
(Foster et al., Ann Fam Med 2014; Whitehurst et al., Spine 2015; see
the project domain reference ``../shared/reference/domain.md``). The model is described in ``docs/synthetic.md``; every
setting is a key of :data:`DEFAULTS` and can be overridden.

Outline of the model (details in ``docs/synthetic.md``):

- invitation: phase, practice (by list size), GP, consultation date, age (truncated normal),
  sex; exclusion with reasons; response depending on age and sex;
- two correlated latent traits (physical and psychosocial severity) generate the SBST items
  (items 1-4 physical, 5-8 psychosocial, item 9 ordinal), the RMDQ items (items 9 and 17 agree
  with SBST items 4 and 3), pain, HADS, TSK, CSQ-CAT, PSEQ and EQ-5D-3L; risk groups arise
  from the SBST scoring rules; the latent means are solved so that the expected risk mix is
  the requested one;
- 2- and 6-month RMDQ from a linear model of the change (baseline minus follow-up) with
  risk-group-specific phase 3 effects, random practice intercepts and right-skewed individual
  deviations, drawn binomially around that mean (change-score SDs calibrated to the published
  ones, issue 17); the other follow-up measures move with the RMDQ change;
- records, physiotherapy episodes, follow-up response (MAR), consultations and clinicians.

``truth`` holds the estimands under the keys of the key findings that estimate them; linear
RMDQ effects are model coefficients, odds ratios, ratios, PABS changes and cost-utility
increments are population values computed by Monte Carlo on a large population (fixed seed).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, special

from .errors import BackpainError
from .scoring import eq5d3l_tariff

__all__ = [
    "DEFAULTS",
    "DEFAULT_N_INVITED",
    "DEFAULT_SEED",
    "PARAMETER_HELP",
    "SyntheticParameterError",
    "SyntheticStudy",
    "generate_study",
    "parse_override",
]

DEFAULT_SEED = 20080101
DEFAULT_N_INVITED = 1647

PHASES = (1, 3)
RISK_GROUPS = ("low", "medium", "high")
EXCLUSION_REASONS = (
    "died_or_moved", "unable_to_respond", "declined", "no_back_pain", "comorbid_priority", "unable_to_take_part",
)
EPISODE_DURATIONS = ("lt_1m", "1_3m", "3_6m", "6m_3y", "gt_3y")
APPROACHES = ("advice_only", "manual_exercise", "psych_informed")
EQ5D_DIMS = ("eq5d_mo", "eq5d_sc", "eq5d_ua", "eq5d_pd", "eq5d_ad")
#: Reasons for loss to follow-up (``withdrawals.reason`` codes); the first three last (a patient
#: who withdrew, died or moved away at 2 months is lost at 6 months too, for the same reason).
LOSS_REASONS = ("withdrew", "died", "moved", "too_ill", "no_reply", "other")
#: Mix of reasons of a follow-up not returned (then "not recorded": no withdrawals row). Fixed
#: constants, not settings of :data:`DEFAULTS`, so that adding the withdrawals file left every
#: other file of the bundled study (and ``truth.json``) byte for byte as it was.
LOSS_REASON_MIX = (0.08, 0.02, 0.06, 0.07, 0.70, 0.04, 0.03)
#: Mix at 2 months for a patient who returned the 6-month questionnaire (only passing reasons:
#: too_ill, no_reply, other, not recorded).
LOSS_REASON_MIX_PASSING = (0.0, 0.0, 0.0, 0.10, 0.82, 0.05, 0.03)
#: Stream of the reasons: ``default_rng([seed, LOSS_REASON_STREAM])``, separate from the study's
#: ``default_rng(seed)``, so drawing them changes no other table.
LOSS_REASON_STREAM = 7

#: Every generator setting with its default. Two-element lists are per phase ``[phase 1, phase 3]``;
#: ``[low, medium, high]`` lists are per baseline risk group. See :data:`PARAMETER_HELP`.
DEFAULTS: dict[str, Any] = {
    # --- design ---
    "n_practices": 7,
    "n_gps": 64,
    "n_physios": 34,
    "n_physio_services": 3,
    "phase1_start": "2008-01-01",
    "phase1_months": 6,
    "phase2_months": 6,
    "phase3_months": 12,
    "phase1_share": 0.382514,
    "practice_list_size_mean": 7000,
    "consultation_invite_rate": 0.6,
    # --- invitation and response ---
    "age_mean": [47.9, 49.2],
    "age_sd": [16.8, 15.8],
    "female": [0.54, 0.56],
    "excluded": [0.0444, 0.0462],
    "exclusion_reason_weights": [[8, 1, 11, 6, 1, 1], [23, 0, 19, 4, 0, 1]],
    "response": [0.6113, 0.5711],
    "response_age_logor": 0.55,
    "response_female_logor": 0.15,
    "record_consent": [0.834, 0.760],
    # --- baseline ---
    "risk_mix": [[0.370, 0.410, 0.220], [0.386, 0.419, 0.195]],
    "latent_correlation": 0.45,
    "employed_intercept": [1.42, 1.27],
    "manual_occupation": [0.35, 0.37],
    "manual_occupation_missing": 0.21,
    "time_off_work": [0.49, 0.42],
    "episode_duration": [[0.20, 0.17, 0.20, 0.22, 0.21], [0.17, 0.18, 0.20, 0.24, 0.21]],
    "leg_pain": [0.76, 0.74],
    "pain_mean": [5.3, 5.0],
    "rmdq_item_missing": 0.003,
    "sbst_rmdq_discordance": 0.05,
    # --- 6-month and 2-month RMDQ change (baseline minus follow-up) ---
    "rmdq_effect": [0.133, 0.566, 2.76],
    "rmdq_effect_2m_scale": 0.7,
    "rmdq_change_intercept": [2.3, 3.3],
    "rmdq_change_baseline_slope": 0.65,
    "rmdq_change_age_slope": -0.15,
    "rmdq_change_sd": 6.4,
    "rmdq_change_shape": 1.0,
    "rmdq_change_2m_6m_correlation": 0.7,
    "rmdq_betabinomial_rho": 0.0,
    "icc_practice": 0.03,
    "rmdq_change_within_sd": 5.6,
    "rmdq_practice_phase_sd": 0.0,
    "rmdq_secular_trend": 0.0,
    # --- other follow-up outcomes ---
    "pain_change": [2.2, 2.5],
    "pain_effect": 0.35,
    "pain_change_sd": [3.3, 4.25],
    "tsk_change": [2.65, 2.65],
    "tsk_change_sd": [8.05, 11.8],
    "tsk_effect": 1.2,
    "hads_anxiety_change": [1.7, 1.75],
    "hads_anxiety_effect": 0.3,
    "hads_anxiety_change_sd": [5.4, 5.4],
    "hads_depression_change": [1.7, 1.82],
    "hads_depression_effect": 0.45,
    "hads_depression_change_sd": [4.2, 4.2],
    "psychosocial_effect": [0.1, 0.25, 0.45],
    "global_change_phase1": [0.105, 0.28, 0.22, 0.235, 0.10, 0.06],
    "satisfied_care": [0.70, 0.69],
    "satisfied_results": [0.59, 0.59],
    "satisfied_results_logor": 0.36,
    "days_off_work_mean": 7.4,
    "days_off_work_logratio": -0.70,
    "days_off_work_dispersion": 0.12,
    "followup_2m": [0.69, 0.60],
    "followup_6m": [0.63, 0.57],
    "followup_age_logor": 0.3,
    "followup_rmdq_logor": -0.25,
    # --- records (6-month medical record review) ---
    "physio_referral": [[0.35, 0.38, 0.44], [0.32, 0.70, 0.76]],
    "physio_attendance": 0.85,
    "approach_phase1": [[0.40, 0.55, 0.05], [0.25, 0.68, 0.07], [0.20, 0.70, 0.10]],
    "approach_phase3": [[0.60, 0.35, 0.05], [0.10, 0.78, 0.12], [0.05, 0.30, 0.65]],
    "physio_sessions_mean": [[2.0, 6.5, 7.0], [2.0, 4.0, 5.0]],
    "reconsulted": [0.29, 0.38],
    "gp_consultations_mean": [[1.2, 1.6, 3.6], [1.2, 1.4, 0.6]],
    "extra_prescriptions": [[0.8, 0.8, 1.2], [0.8, 0.8, 0.5]],
    "nsaids": [0.44, 0.38],
    "antidepressants": [0.10, 0.10],
    "non_opioid_analgesics": [0.22, 0.13],
    "opioids_strong": [0.24, 0.27],
    "opioids_weak_only": [0.05, 0.21],
    "neuromodulators": [0.06, 0.05],
    "sickness_certificate": [0.15, 0.105],
    "blood_test": [0.36, 0.37],
    "imaging": [[0.08, 0.15, 0.28], [0.10, 0.17, 0.09]],
    "secondary_care_referral": [[0.03, 0.08, 0.62], [0.03, 0.07, 0.10]],
    "practice_logit_sd": 0.3,
    # --- consultations ---
    "sbst_completed_phase1": 0.02,
    "sbst_completed_phase3_start": 0.30,
    "sbst_completed_phase3_end": 0.80,
    "sbst_completed_practice_sd": 0.7,
    # --- clinicians ---
    "gp_training_days": [0.5, 2.0],
    "physio_training_days": [3, 9],
    "physio_mentoring_sessions": 12,
    "survey_response_before": [0.85, 0.95],
    "survey_response_after": [0.70, 0.85],
    "pabs_biomedical_change": [-1.5, -5.0],
    "pabs_behavioural_change": [1.0, 4.0],
    "confidence_change": [[0.3, 0.5, 0.8], [0.5, 1.2, 2.5]],
    # --- economics ---
    "unit_costs": {"gp_consultation": 36.0, "physio_session": 37.0, "imaging": 110.0, "prescription": 10.0,
                   "secondary_care_referral": 135.0},
    # --- truth ---
    "truth_mc_n": 200000,
    "truth_seed": 1,
}

PARAMETER_HELP: dict[str, str] = {
    "n_practices": "number of GP practices",
    "n_gps": "number of GPs (spread over practices in proportion to list size, at least one each)",
    "n_physios": "number of physiotherapists",
    "n_physio_services": "number of physiotherapy services",
    "phase1_start": "first day of phase 1 recruitment (ISO date)",
    "phase1_months": "months of phase 1 recruitment (usual care)",
    "phase2_months": "months of the implementation phase 2 (no recruitment; training happens here)",
    "phase3_months": "months of phase 3 recruitment (stratified care)",
    "phase1_share": "share of invited patients in phase 1 (published 630 of 1647)",
    "practice_list_size_mean": "mean registered list size of a practice",
    "consultation_invite_rate": "share of eligible back-pain consultations whose patient is invited",
    "age_mean": "mean age of invited patients per phase (truncated normal, 18-95)",
    "age_sd": "SD of age of invited patients per phase",
    "female": "share of invited patients who are female, per phase",
    "excluded": "share of invited patients excluded, per phase",
    "exclusion_reason_weights": "relative frequency of the six exclusion reasons per phase",
    "response": "share of non-excluded invited patients who respond, per phase (at mean age, average sex)",
    "response_age_logor": "log odds ratio of responding per 10 years of age",
    "response_female_logor": "log odds ratio of responding for women",
    "record_consent": "share of respondents consenting to record review, per phase",
    "risk_mix": "expected [low, medium, high] SBST risk mix of respondents per phase (or one list for both)",
    "latent_correlation": "correlation of the physical and psychosocial latent traits",
    "employed_intercept": "logit of employment at age 45, per phase (falls with age, steeply from 60)",
    "manual_occupation": "share with a routine/manual occupation, per phase",
    "manual_occupation_missing": "share not answering the occupation question",
    "time_off_work": "share of the employed with time off work for back pain, per phase",
    "episode_duration": "distribution of episode duration categories per phase",
    "leg_pain": "share with leg pain, per phase",
    "pain_mean": "mean baseline pain NRS per phase",
    "rmdq_item_missing": "probability that an RMDQ item is left blank",
    "sbst_rmdq_discordance": "probability that RMDQ items 9/17 disagree with SBST items 4/3",
    "rmdq_effect": "phase 3 shift of the expected 6-month RMDQ change per risk group [low, medium, high] before the 0-24 floor and ceiling (the default gives average effects 0.11, 0.47, 2.26)",
    "rmdq_effect_2m_scale": "2-month effect as a multiple of the 6-month effect",
    "rmdq_change_intercept": "mean RMDQ change at [2, 6] months in phase 1 at baseline RMDQ 8.5 and age 50",
    "rmdq_change_baseline_slope": "change per point of baseline RMDQ",
    "rmdq_change_age_slope": "change per 10 years of age",
    "rmdq_change_sd": "SD of the individual deviation of the expected change at baseline RMDQ 8.5 (scaled by "
                      "sqrt((rmdq0 + 1) / 9.5)); with the baseline slope it sets the change SD (about 5.8)",
    "rmdq_change_shape": "gamma shape of the individual deviations (standardized; smaller = more right-skewed: most "
                         "change little, a few recover a lot)",
    "rmdq_change_2m_6m_correlation": "correlation of the 2- and 6-month individual deviations",
    "rmdq_betabinomial_rho": "intra-class correlation of the beta-binomial follow-up RMDQ around its mean (0 = binomial)",
    "icc_practice": "practice share of the residual variance of the 6-month RMDQ change (random intercepts)",
    "rmdq_change_within_sd": "within-practice residual SD of the 6-month RMDQ change used to scale icc_practice",
    "rmdq_practice_phase_sd": "SD of practice-by-phase intercepts of the 6-month RMDQ change (cluster-period effects; "
                              "0 = none): the phase effect varies between practices around its mean",
    "rmdq_secular_trend": "shift of the expected 6-month RMDQ change per year of calendar time since phase1_start "
                          "(secular trend; 0 = none); not part of the phase 3 effect",
    "pain_change": "mean pain NRS change at 6 months in phase 1 per phase [1, 3] before the effect",
    "pain_effect": "direct phase 3 effect on pain change (on top of what follows from RMDQ)",
    "pain_change_sd": "SD of the individual noise of the pain NRS change per phase (before rounding and the 0-10 range)",
    "tsk_change_sd": "SD of the individual noise of the TSK change per phase (before rounding and the 17-68 range)",
    "hads_anxiety_change_sd": "SD of the individual noise of the HADS anxiety change per phase (before rounding and 0-21)",
    "hads_depression_change_sd": "SD of the individual noise of the HADS depression change per phase (before rounding and 0-21)",
    "tsk_change": "mean TSK change at 6 months per phase before the effect",
    "tsk_effect": "direct phase 3 effect on TSK change",
    "hads_anxiety_change": "mean HADS anxiety change per phase before the effect",
    "hads_anxiety_effect": "direct phase 3 effect on HADS anxiety change",
    "hads_depression_change": "mean HADS depression change per phase before the effect",
    "hads_depression_effect": "direct phase 3 effect on HADS depression change",
    "psychosocial_effect": "phase 3 reduction of the psychosocial latent at follow-up per risk group (SD units)",
    "global_change_phase1": "phase 1 distribution of the 6-month global change (6 categories)",
    "satisfied_care": "share satisfied with care per phase",
    "satisfied_results": "share satisfied with results per phase, before the phase 3 effect",
    "satisfied_results_logor": "phase 3 log odds ratio of satisfaction with results (conditional)",
    "days_off_work_mean": "negative binomial mean of days off work over 6 months, phase 1, employed, average covariates",
    "days_off_work_logratio": "phase 3 log rate ratio of days off work (conditional, negative binomial)",
    "days_off_work_dispersion": "negative binomial shape k (variance = mu + mu^2/k)",
    "followup_2m": "share returning the 2-month questionnaire per phase",
    "followup_6m": "share returning the 6-month questionnaire per phase",
    "followup_age_logor": "log odds ratio of returning a follow-up per 10 years of age (MAR)",
    "followup_rmdq_logor": "log odds ratio of returning a follow-up per SD (5.8) of baseline RMDQ (MAR)",
    "physio_referral": "probability of physiotherapy referral per phase and risk group",
    "physio_attendance": "probability that a referred patient attends physiotherapy",
    "approach_phase1": "phase 1 physiotherapy approach distribution per risk group",
    "approach_phase3": "phase 3 physiotherapy approach distribution per risk group",
    "physio_sessions_mean": "mean sessions per phase for [advice_only, manual_exercise, psych_informed]",
    "reconsulted": "share reconsulting a GP per phase",
    "gp_consultations_mean": "mean further GP consultations (beyond the first) of reconsulters, per phase and risk group",
    "extra_prescriptions": "prescriptions beyond one per drug class, per drug class prescribed, per phase and risk group",
    "nsaids": "share prescribed NSAIDs per phase",
    "antidepressants": "share prescribed antidepressants per phase",
    "non_opioid_analgesics": "share prescribed non-opioid analgesics per phase",
    "opioids_strong": "share prescribed strong opioids per phase",
    "opioids_weak_only": "share prescribed weak opioids but no strong opioid per phase",
    "neuromodulators": "share prescribed neuromodulators per phase",
    "sickness_certificate": "share given a sickness certificate per phase",
    "blood_test": "share with a blood test per phase",
    "imaging": "share with MRI or radiograph per phase and risk group",
    "secondary_care_referral": "share referred to secondary care per phase and risk group",
    "practice_logit_sd": "SD of random practice intercepts (logit scale) of the process-of-care outcomes",
    "sbst_completed_phase1": "SBST completion rate in phase 1 consultations",
    "sbst_completed_phase3_start": "SBST completion rate at the start of phase 3",
    "sbst_completed_phase3_end": "SBST completion rate at the end of phase 3",
    "sbst_completed_practice_sd": "SD of practice intercepts of SBST completion (logit scale)",
    "gp_training_days": "range of GP training days",
    "physio_training_days": "range of physiotherapist training days (whole days)",
    "physio_mentoring_sessions": "mentoring sessions offered to physiotherapists in 12 months",
    "survey_response_before": "survey response before training [GPs, physios]",
    "survey_response_after": "survey response after training [GPs, physios]",
    "pabs_biomedical_change": "mean change of the latent biomedical orientation [GPs, physios] (subscale points)",
    "pabs_behavioural_change": "mean change of the latent behavioural orientation [GPs, physios] (subscale points)",
    "confidence_change": "mean latent change of confidence (0-10) [low, medium, high] for [GPs, physios]",
    "unit_costs": "unit costs in GBP (2009/10) used for the cost-utility truth; as data/unit_costs.csv",
    "truth_mc_n": "size of the Monte Carlo population used for the population estimands",
    "truth_seed": "seed of the Monte Carlo population",
}


_PROBABILITY_KEYS = (
    "female", "excluded", "response", "record_consent", "manual_occupation", "manual_occupation_missing",
    "time_off_work", "leg_pain", "rmdq_item_missing", "sbst_rmdq_discordance", "satisfied_care", "satisfied_results",
    "followup_2m", "followup_6m", "physio_referral", "physio_attendance", "reconsulted", "nsaids", "antidepressants",
    "non_opioid_analgesics", "opioids_strong", "opioids_weak_only", "neuromodulators", "sickness_certificate",
    "blood_test", "imaging", "secondary_care_referral", "sbst_completed_phase1", "sbst_completed_phase3_start",
    "sbst_completed_phase3_end", "survey_response_before", "survey_response_after", "global_change_phase1",
    "episode_duration", "approach_phase1", "approach_phase3",
)


class SyntheticParameterError(BackpainError, ValueError):
    """An unknown or invalid synthetic-study parameter."""


# ---------------------------------------------------------------------------------------------
# parameters
# ---------------------------------------------------------------------------------------------
def parse_override(text: str) -> tuple[str, Any]:
    """Parse a ``key=value`` override; the value is JSON when it parses, else a string.

    Examples
    --------
    >>> parse_override("rmdq_effect=[0, 0, 0]")
    ('rmdq_effect', [0, 0, 0])
    >>> parse_override("phase1_start=2010-01-01")
    ('phase1_start', '2010-01-01')
    """
    if "=" not in text:
        raise SyntheticParameterError(f"override {text!r} is not of the form key=value")
    key, value = text.split("=", 1)
    key = key.strip()
    try:
        parsed: Any = json.loads(value)
    except json.JSONDecodeError:
        parsed = value.strip()
    return key, parsed


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float | np.integer | np.floating) and not isinstance(x, bool)


def _conform(key: str, default: Any, value: Any) -> Any:
    """Check an override against the shape of its default; broadcast one value/list to every phase or group."""
    if isinstance(default, dict):
        if not isinstance(value, dict) or not all(k in default and _is_number(v) for k, v in value.items()):
            raise SyntheticParameterError(f"parameter {key!r} must be a mapping with keys from {sorted(default)} "
                                          f"to numbers; got {value!r}")
        return {**default, **{k: float(v) for k, v in value.items()}}
    if isinstance(default, list):
        inner = default[0]
        if isinstance(inner, list):
            if isinstance(value, list) and len(value) == len(inner) and all(_is_number(v) for v in value):
                value = [list(value) for _ in default]
            ok = isinstance(value, list) and len(value) == len(default) and all(
                isinstance(v, list) and len(v) == len(inner) and all(_is_number(x) for x in v) for v in value)
            if not ok:
                raise SyntheticParameterError(
                    f"parameter {key!r} must be {len(default)} lists of {len(inner)} numbers like {default}, "
                    f"or one list of {len(inner)} numbers for all; got {value!r}")
            return value
        if _is_number(value):
            value = [value] * len(default)
        if not (isinstance(value, list) and len(value) == len(default) and all(_is_number(v) for v in value)):
            raise SyntheticParameterError(
                f"parameter {key!r} must be a list of {len(default)} numbers like {default}, or one number; got {value!r}")
        return value
    if isinstance(default, str):
        if not isinstance(value, str):
            raise SyntheticParameterError(f"parameter {key!r} must be text like {default!r}; got {value!r}")
        return value
    if not _is_number(value):
        raise SyntheticParameterError(f"parameter {key!r} must be a number; got {value!r}")
    if isinstance(default, int) and float(value) != int(value):
        raise SyntheticParameterError(f"parameter {key!r} must be a whole number; got {value!r}")
    return int(value) if isinstance(default, int) else float(value)


def _resolve(overrides: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(k for k in overrides if k not in DEFAULTS)
    if unknown:
        raise SyntheticParameterError(
            f"unknown synthetic-study parameter(s) {unknown}; valid parameters: {', '.join(sorted(DEFAULTS))}"
        )
    p = json.loads(json.dumps(DEFAULTS))
    for key, value in overrides.items():
        p[key] = json.loads(json.dumps(_conform(key, DEFAULTS[key], value)))
    for key in ("n_practices", "n_gps", "n_physios", "n_physio_services", "phase1_months", "phase3_months"):
        if int(p[key]) < 1:
            raise SyntheticParameterError(f"parameter {key!r} must be at least 1; got {p[key]!r}")
    if p["n_gps"] < p["n_practices"]:
        raise SyntheticParameterError(f"n_gps ({p['n_gps']}) must be at least n_practices ({p['n_practices']})")
    for mix in p["risk_mix"]:
        if len(mix) != 3 or min(mix) <= 0 or abs(sum(mix) - 1) > 1e-6:
            raise SyntheticParameterError(f"risk_mix entries must be 3 positive shares summing to 1; got {mix!r}")
    for key in _PROBABILITY_KEYS:
        values = np.ravel(np.asarray(p[key], dtype=float))
        if ((values < 0) | (values > 1)).any():
            raise SyntheticParameterError(f"parameter {key!r} holds probabilities (0 to 1); got {p[key]!r}")
    for key in ("phase1_share", "consultation_invite_rate"):
        if not 0 < p[key] < 1 and not (key == "consultation_invite_rate" and p[key] == 1):
            raise SyntheticParameterError(f"parameter {key!r} must be between 0 and 1 (exclusive); got {p[key]!r}")
    if not -1 < p["latent_correlation"] < 1 or not 0 <= p["rmdq_betabinomial_rho"] < 1:
        raise SyntheticParameterError("latent_correlation must be in (-1, 1) and rmdq_betabinomial_rho in [0, 1)")
    if not 0 <= p["icc_practice"] < 1:
        raise SyntheticParameterError(f"icc_practice must be in [0, 1); got {p['icc_practice']!r}")
    if not p["rmdq_change_shape"] > 0:
        raise SyntheticParameterError(f"rmdq_change_shape must be > 0; got {p['rmdq_change_shape']!r}")
    for key in ("rmdq_change_sd", "pain_change_sd", "tsk_change_sd", "hads_anxiety_change_sd", "hads_depression_change_sd"):
        if min(np.ravel(np.asarray(p[key], dtype=float))) < 0:
            raise SyntheticParameterError(f"parameter {key!r} is an SD and must be >= 0; got {p[key]!r}")
    if not p["rmdq_practice_phase_sd"] >= 0:
        raise SyntheticParameterError(f"rmdq_practice_phase_sd must be >= 0; got {p['rmdq_practice_phase_sd']!r}")
    try:
        np.datetime64(p["phase1_start"], "D")
    except ValueError:
        raise SyntheticParameterError(f"phase1_start must be an ISO date; got {p['phase1_start']!r}") from None
    return p


# ---------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------
def _logit(p):
    p = np.clip(np.asarray(p, dtype=float), 1e-9, 1 - 1e-9)
    return np.log(p / (1 - p))


def _expit(x):
    return special.expit(x)


def _intercept(p: float, sd: float) -> float:
    """Logit intercept giving marginal probability ``p`` when a N(0, sd^2) term is added (probit approx.)."""
    return float(_logit(p)) * math.sqrt(1 + math.pi * sd * sd / 8)


def _bern(rng: np.random.Generator, prob) -> np.ndarray:
    return (rng.random(np.shape(prob)) < prob).astype(np.int8)


def _by_phase(values, phase3: np.ndarray) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    return np.where(phase3, v[1], v[0])


def _by_phase_group(values, phase3: np.ndarray, group: np.ndarray) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    return np.where(phase3, v[1][group], v[0][group])


def _categorical(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One draw per row of a (n, k) probability matrix; returns codes 0..k-1."""
    cum = np.cumsum(probs, axis=1)
    cum /= cum[:, -1:]
    u = rng.random(len(probs))[:, None]
    return (u > cum).sum(axis=1).astype(np.int8)


def _clip_round(x, lo, hi) -> np.ndarray:
    return np.clip(np.rint(x), lo, hi).astype(np.int16)


def eq5d_index(levels: np.ndarray) -> np.ndarray:
    """UK (MVH, Dolan 1997) tariff of an (n, 5) array of EQ-5D-3L levels 1-3 (unrounded).

    The tariff itself lives in :func:`backpain_analysis.scoring.eq5d3l_tariff`.
    """
    return eq5d3l_tariff(levels)


# ---------------------------------------------------------------------------------------------
# SBST item model and the latent means giving a risk mix
# ---------------------------------------------------------------------------------------------
# items 1-4 load on the physical latent, 5-8 on the psychosocial latent (intercept, slope)
_SBST_PHYS = np.array([[0.3, 1.3], [-0.4, 0.9], [-0.2, 1.7], [0.1, 1.7]])
_SBST_PSY = np.array([[-0.9, 1.5], [0.0, 1.4], [-0.8, 1.5], [-0.7, 1.4]])
# item 9 (bothersomeness 0-4): P(level >= j) = expit(tau_j + 1.2 psy + 0.5 phys)
_SBST9_TAU = np.array([3.2, 1.6, -0.3, -2.4])
_SBST9_SLOPE = (1.2, 0.5)


def _sbst_probs(phys: np.ndarray, psy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Item probabilities: (n,4) physical items, (n,4) psychosocial items, (n,4) P(item9 >= j)."""
    pp = _expit(_SBST_PHYS[:, 0][None, :] + _SBST_PHYS[:, 1][None, :] * phys[:, None])
    ps = _expit(_SBST_PSY[:, 0][None, :] + _SBST_PSY[:, 1][None, :] * psy[:, None])
    p9 = _expit(_SBST9_TAU[None, :] + (_SBST9_SLOPE[0] * psy + _SBST9_SLOPE[1] * phys)[:, None])
    return pp, ps, p9


def _count_dist(probs: np.ndarray) -> np.ndarray:
    """Distribution of the number of successes of independent Bernoullis, row-wise (n, k+1)."""
    n, k = probs.shape
    dist = np.zeros((n, k + 1))
    dist[:, 0] = 1.0
    for j in range(k):
        p = probs[:, j:j + 1]
        dist[:, 1:] = dist[:, 1:] * (1 - p) + dist[:, :-1] * p
        dist[:, 0] *= 1 - p[:, 0]
    return dist


_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(24)
_GH_W = _GH_W / _GH_W.sum()


def _risk_mix_at(mu_phys: float, mu_psy: float, rho: float) -> np.ndarray:
    """Exact expected [low, medium, high] mix for latent means (Gauss-Hermite over the latents)."""
    z1, z2 = np.meshgrid(_GH_X, _GH_X, indexing="ij")
    w = np.outer(_GH_W, _GH_W).ravel()
    phys = mu_phys + z1.ravel()
    psy = mu_psy + rho * z1.ravel() + math.sqrt(1 - rho * rho) * z2.ravel()
    pp, ps, p9 = _sbst_probs(phys, psy)
    item9 = p9[:, 2]  # "very much" or "extremely"
    a = _count_dist(pp)  # physical count 0..4
    b = _count_dist(np.column_stack([ps, item9]))  # psychosocial 0..5
    joint = a[:, :, None] * b[:, None, :]
    total = np.add.outer(np.arange(5), np.arange(6))
    p_low = (joint * (total <= 3)).sum(axis=(1, 2))
    p_high = b[:, 4:].sum(axis=1)
    return np.array([w @ p_low, w @ (1 - p_low - p_high), w @ p_high])


@lru_cache(maxsize=64)
def latent_means_for_mix(low: float, high: float, rho: float) -> tuple[float, float]:
    """Latent means (physical, psychosocial) whose expected risk mix has these low and high shares."""
    def f(x):
        mix = _risk_mix_at(x[0], x[1], rho)
        return [_logit(mix[0]) - _logit(low), _logit(mix[2]) - _logit(high)]

    sol, _, ier, msg = optimize.fsolve(f, [0.0, 0.0], full_output=True)
    mix = _risk_mix_at(sol[0], sol[1], rho)
    if ier != 1 or abs(mix[0] - low) > 1e-4 or abs(mix[2] - high) > 1e-4:
        raise SyntheticParameterError(f"risk mix low={low}, high={high} cannot be reached by the SBST model ({msg})")
    return float(sol[0]), float(sol[1])


# ---------------------------------------------------------------------------------------------
# RMDQ items
# ---------------------------------------------------------------------------------------------
# item intercepts on the severity scale (items 9 and 17 come from SBST items 4 and 3)
_RMDQ_C = np.array([0.2, -0.6, -1.2, -0.3, -1.0, -0.5, -1.4, -0.2, 0.0, -1.6, 0.3, -1.1,
                    -0.4, -0.1, -1.5, -2.4, 0.0, -0.9, -1.7, -2.0, -0.2, -1.3, -2.2, -1.8])
_RMDQ_SLOPE = 1.35
RESPONSE_AGE_QUADRATIC = 0.12
RMDQ_SHIFT = -0.5
DAYS_OFF_CAP = 180
GLOBAL_CHANGE_6M_SHIFT = -0.2  # 6-month cut points calibrated on responders (MAR)
CERTIFICATE_EMPLOYED_SHIFT = 0.58
EQ5D_NOISE = 0.4
# the standardized improvement imp = (change - 2.2) / IMPROVEMENT_SCALE carries the RMDQ change into the
# other follow-up outcomes; the scale is about 1.15 times the 6-month change SD (imp has SD about 0.87)
IMPROVEMENT_SCALE = 6.6


def _topk_items(rng: np.random.Generator, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Tick ``score`` items per row, sampled without replacement with probability proportional to exp(weight).

    Exponential race (equivalent to Gumbel-top-k): item k gets the key E_k / exp(w_k); the ``score``
    smallest keys are ticked, so commoner items are ticked first.
    """
    n, k = len(score), len(weights)
    keys = rng.standard_exponential((n, k), dtype=np.float32) * np.exp(-weights).astype(np.float32)[None, :]
    order = np.argsort(keys, axis=1)
    ticked = np.zeros((n, k), dtype=np.int8)
    np.put_along_axis(ticked, order, (np.arange(k)[None, :] < score[:, None]).astype(np.int8), axis=1)
    return ticked


# ---------------------------------------------------------------------------------------------
# the population model (arrays, one entry per invited patient)
# ---------------------------------------------------------------------------------------------
def _practices(p: dict[str, Any], rng: np.random.Generator, n_practices: int, n_gps: int) -> dict[str, np.ndarray]:
    size = np.rint(p["practice_list_size_mean"] * rng.lognormal(0, 0.35, n_practices) / math.exp(0.35 ** 2 / 2))
    size = np.clip(size, 1500, 200000).astype(np.int64)
    share = size / size.sum()
    extra = n_gps - n_practices
    raw = share * extra
    gps = np.floor(raw).astype(int)
    gps[np.argsort(-(raw - gps), kind="stable")[: extra - gps.sum()]] += 1
    gps += 1
    return {"list_size": size, "n_gps": gps, "first_gp": np.concatenate([[0], np.cumsum(gps)[:-1]])}


def _dates(p: dict[str, Any]) -> dict[str, np.datetime64]:
    start1 = np.datetime64(p["phase1_start"], "M")
    day0 = np.datetime64(p["phase1_start"], "D")
    end1 = (start1 + int(p["phase1_months"])).astype("datetime64[D]")
    start3 = (start1 + int(p["phase1_months"]) + int(p["phase2_months"])).astype("datetime64[D]")
    end3 = (start1 + int(p["phase1_months"]) + int(p["phase2_months"]) + int(p["phase3_months"])).astype("datetime64[D]")
    return {"start1": day0, "end1": end1, "start3": start3, "end3": end3}


def _simulate(p: dict[str, Any], n: int, rng: np.random.Generator, n_practices: int | None = None) -> dict[str, Any]:
    """Simulate every invited patient's full potential data (arrays; no masking by response)."""
    n_practices = int(n_practices or p["n_practices"])
    n_gps = max(int(p["n_gps"]), n_practices)
    out: dict[str, Any] = {"n": n}
    n1 = int(round(n * p["phase1_share"]))
    phase3 = np.arange(n) >= n1
    out["phase3"] = phase3
    g3 = phase3.astype(float)

    # practices, GPs, dates (sorted within phase)
    prac = _practices(p, rng, n_practices, n_gps)
    out["practice_info"] = prac
    practice = rng.choice(n_practices, size=n, p=prac["list_size"] / prac["list_size"].sum())
    gp = prac["first_gp"][practice] + np.floor(rng.random(n) * prac["n_gps"][practice]).astype(int)
    d = _dates(p)
    span1 = (d["end1"] - d["start1"]).astype(int)
    span3 = (d["end3"] - d["start3"]).astype(int)
    offset = np.where(phase3, rng.integers(0, span3, n), rng.integers(0, span1, n))
    order = np.lexsort((offset, phase3))
    practice, gp, offset = practice[order], gp[order], offset[order]
    out["practice"], out["gp"] = practice, gp
    out["date"] = np.where(phase3, d["start3"], d["start1"]) + offset.astype("timedelta64[D]")
    out["phase3_time"] = np.where(phase3, offset / max(span3, 1), 0.0)
    out["dates"] = d
    re = {name: rng.normal(0, p["practice_logit_sd"], n_practices)[practice]
          for name in ("referral", "reconsult", "opioid", "certificate", "imaging", "followup", "satisfaction")}

    # age (truncated normal), sex
    r1, r3 = _untruncated(p["age_mean"][0], p["age_sd"][0]), _untruncated(p["age_mean"][1], p["age_sd"][1])
    mu = np.where(phase3, r3[0], r1[0])
    sdr = np.where(phase3, r3[1], r1[1])
    lo = special.ndtr((18 - mu) / sdr)
    hi = special.ndtr((95 - mu) / sdr)
    age = mu + sdr * special.ndtri(lo + rng.random(n) * (hi - lo))
    age = np.clip(np.rint(age), 18, 95).astype(np.int16)
    female = _bern(rng, _by_phase(p["female"], phase3))
    out["age"], out["female"] = age, female
    agec = (age - 50) / 10.0

    # invitation outcome
    excluded = _bern(rng, _by_phase(p["excluded"], phase3)).astype(bool)
    w = np.asarray(p["exclusion_reason_weights"], dtype=float)
    w = w / w.sum(axis=1, keepdims=True)
    reason = _categorical(rng, np.where(phase3[:, None], w[1][None, :], w[0][None, :]))
    age_z = (age - _by_phase(p["age_mean"], phase3)) / 10.0
    b_age = float(p["response_age_logor"])
    lp = (_intercept_vec(p["response"], phase3, b_age * 1.6) + b_age * age_z - RESPONSE_AGE_QUADRATIC * (age_z ** 2 - 2.6)
          + p["response_female_logor"] * (female - 0.55))
    responded = ~excluded & (_bern(rng, _expit(lp)) == 1)
    out["excluded"], out["reason"], out["responded"] = excluded, reason, responded
    consent = _bern(rng, _expit(_intercept_vec(p["record_consent"], phase3) + 0.15 * (agec - 0.3)))
    out["consent"] = consent.astype(bool) & responded

    # latent traits
    rho = float(p["latent_correlation"])
    means = [latent_means_for_mix(m[0], m[2], rho) for m in p["risk_mix"]]
    z1, z2 = rng.standard_normal(n), rng.standard_normal(n)
    phys = np.where(phase3, means[1][0], means[0][0]) + z1
    psy = np.where(phase3, means[1][1], means[0][1]) + rho * z1 + math.sqrt(1 - rho * rho) * z2
    out["phys"], out["psy"] = phys, psy
    # latents centred within phase: used where a per-phase rate or mean is a parameter
    zp, zs = z1, rho * z1 + math.sqrt(1 - rho * rho) * z2

    # SBST items
    sbst = _sbst_items(rng, phys, psy)
    out["sbst0"] = sbst
    total = sbst[:, :8].sum(axis=1) + (sbst[:, 8] >= 3)
    psych = sbst[:, 4:8].sum(axis=1) + (sbst[:, 8] >= 3)
    risk = np.where(total <= 3, 0, np.where(psych >= 4, 2, 1)).astype(np.int8)
    out["risk"] = risk

    # baseline characteristics
    emp_a = _by_phase(p["employed_intercept"], phase3)
    employed = _bern(rng, _expit(emp_a - 0.25 * (age - 45) / 10 - 0.9 * np.maximum(age - 58, 0) / 5 - 0.15 * zp))
    manual = _bern(rng, _expit(_intercept_vec(p["manual_occupation"], phase3, 0.3) + 0.3 * zp))
    manual_missing = rng.random(n) < p["manual_occupation_missing"]
    time_off = _bern(rng, _expit(_intercept_vec(p["time_off_work"], phase3, 0.7) + 0.7 * zp)) * employed
    ep = np.asarray(p["episode_duration"], dtype=float)
    ep = ep / ep.sum(axis=1, keepdims=True)
    cum = np.cumsum(np.where(phase3[:, None], ep[1][None, :], ep[0][None, :])[:, :-1], axis=1)
    cut = _logit(cum) * math.sqrt(1 + math.pi * 0.25 / 8)
    episode = (rng.logistic(size=n)[:, None] + 0.5 * zs[:, None] > cut).sum(axis=1).astype(np.int8)
    # leg pain: SBST item 1 (leg pain spread) implies leg pain
    b1 = _SBST_PHYS[0, 1]
    p_item1 = _expit((_SBST_PHYS[0, 0] + b1 * np.where(phase3, means[1][0], means[0][0])) / math.sqrt(1 + math.pi * b1 * b1 / 8))
    p_leg_rest = np.clip((_by_phase(p["leg_pain"], phase3) - p_item1) / (1 - p_item1), 0.0, 1.0)
    leg = np.where(sbst[:, 0] == 1, 1, _bern(rng, p_leg_rest)).astype(np.int8)
    out.update(employed=employed, manual=manual, manual_missing=manual_missing, time_off=time_off,
               episode=episode, leg=leg)

    # baseline RMDQ: items from severity; 9 and 17 agree with SBST 4 and 3
    sev = phys + 0.25 * psy
    rmdq_items = _bern(rng, _expit((_RMDQ_C[None, :] + RMDQ_SHIFT + _RMDQ_SLOPE * sev[:, None]).astype(np.float32)))
    disc = float(p["sbst_rmdq_discordance"])
    rmdq_items[:, 8] = sbst[:, 3] ^ _bern(rng, np.full(n, disc))
    rmdq_items[:, 16] = sbst[:, 2] ^ _bern(rng, np.full(n, disc))
    rmdq0 = rmdq_items.sum(axis=1).astype(np.int16)
    out["rmdq_items0"], out["rmdq0"] = rmdq_items, rmdq0

    # other baseline measures
    pain0 = _clip_round(_by_phase(p["pain_mean"], phase3) + 1.25 * zp + 0.45 * zs + rng.normal(0, 1.9, n), 0, 10)
    hads_a0 = _clip_round(7.5 + 3.0 * psy + 0.3 * phys + rng.normal(0, 2.6, n), 0, 21)
    hads_d0 = _clip_round(6.0 + 2.8 * psy + 0.6 * phys + rng.normal(0, 2.4, n), 0, 21)
    tsk0 = _clip_round(40.5 + 4.0 * psy + 2.0 * phys + rng.normal(0, 5.0, n), 17, 68)
    csq0 = _clip_round(12.0 + 5.0 * psy + 1.0 * phys + rng.normal(0, 5.0, n), 0, 36)
    pseq0 = _clip_round(37.0 - 7.0 * psy - 5.0 * phys + rng.normal(0, 9.0, n), 0, 60)
    out.update(pain0=pain0, hads_a0=hads_a0, hads_d0=hads_d0, tsk0=tsk0, csq0=csq0, pseq0=pseq0)
    eq_noise = rng.standard_normal(n)
    out["eq5d0"] = _eq5d(rng, rmdq0, pain0, hads_a0 + hads_d0, eq_noise)

    # ---- follow-up RMDQ: linear model of the change, beta-binomial around its mean ----
    eff = np.asarray(p["rmdq_effect"], dtype=float)[risk] * g3
    sd_w = float(p["rmdq_change_within_sd"])
    icc = float(p["icc_practice"])
    sd_p = math.sqrt(icc / (1 - icc)) * sd_w if icc > 0 else 0.0
    prac_re = rng.normal(0, sd_p, n_practices)[practice] if sd_p > 0 else np.zeros(n)
    # optional design overrides, drawn only when set so that the default study is unchanged
    sd_pp = float(p["rmdq_practice_phase_sd"])
    if sd_pp > 0:  # cluster-period effects: one intercept per practice and phase
        prac_re = prac_re + rng.normal(0, sd_pp, (n_practices, 2))[practice, phase3.astype(int)]
    trend = float(p["rmdq_secular_trend"])
    if trend != 0:  # secular trend in calendar time (years since the start of phase 1)
        years = (out["date"] - d["start1"]).astype("timedelta64[D]").astype(float) / 365.25
        prac_re = prac_re + trend * years
    rho26 = float(p["rmdq_change_2m_6m_correlation"])
    # right-skewed deviations (standardized gamma, shape rmdq_change_shape): most change little, some recover a lot
    shape = float(p["rmdq_change_shape"])
    u6 = (rng.gamma(shape, 1.0, n) - shape) / math.sqrt(shape)
    u2 = rho26 * u6 + math.sqrt(1 - rho26 ** 2) * (rng.gamma(shape, 1.0, n) - shape) / math.sqrt(shape)
    base = p["rmdq_change_baseline_slope"] * (rmdq0 - 8.5) + p["rmdq_change_age_slope"] * agec
    # individual deviations shrink at low baseline scores (less room to change), sd at baseline 8.5 as given
    sd_i = p["rmdq_change_sd"] * np.sqrt((rmdq0 + 1.0) / 9.5)
    delta6 = p["rmdq_change_intercept"][1] + base + eff + prac_re + sd_i * u6
    delta2 = p["rmdq_change_intercept"][0] + base + eff * p["rmdq_effect_2m_scale"] + prac_re + sd_i * u2
    out["rmdq_effect_i"], out["delta6"] = eff, delta6
    # expected 6-month change without and with the phase 3 effect of the own risk group (for the truth)
    d0 = delta6 - eff
    out["change6_without"] = rmdq0 - np.clip(rmdq0 - d0, 0, 24)
    out["change6_with"] = rmdq0 - np.clip(rmdq0 - d0 - np.asarray(p["rmdq_effect"], dtype=float)[risk], 0, 24)
    bb = float(p["rmdq_betabinomial_rho"])
    weights = _RMDQ_C.copy()
    for t, delta in (("2", delta2), ("6", delta6)):
        m = np.clip(rmdq0 - delta, 0, 24) / 24
        mm = np.clip(m, 1e-6, 1 - 1e-6)
        if bb > 0:
            s = 1 / bb - 1
            prob = rng.beta(mm * s, (1 - mm) * s)
        else:
            prob = mm
        score = rng.binomial(24, prob).astype(np.int16)
        score = np.where(m <= 0, 0, np.where(m >= 1, 24, score)).astype(np.int16)
        out[f"rmdq{t}"] = score
        out[f"rmdq_items{t}"] = _topk_items(rng, score, weights)
    # standardized improvement (carries the phase 3 effect into the other outcomes)
    for t in ("2", "6"):
        chg = rmdq0 - out[f"rmdq{t}"]
        out[f"imp{t}"] = (chg - 2.2) / IMPROVEMENT_SCALE

    # follow-up latents for SBST (psychosocial gains from phase 3 by risk group)
    psy_eff = np.asarray(p["psychosocial_effect"], dtype=float)[risk] * g3
    for t, shrink in (("2", 0.8), ("6", 0.72)):
        imp = out[f"imp{t}"]
        phys_t = -0.75 + shrink * phys - 0.55 * imp + rng.normal(0, 0.55, n)
        psy_t = -0.5 + shrink * psy - 0.35 * imp - psy_eff + rng.normal(0, 0.6, n)
        items = _sbst_items(rng, phys_t, psy_t)
        r_items = out[f"rmdq_items{t}"]
        items[:, 2] = r_items[:, 16] ^ _bern(rng, np.full(n, disc))
        items[:, 3] = r_items[:, 8] ^ _bern(rng, np.full(n, disc))
        out[f"sbst{t}"] = items
        out[f"psy{t}"] = psy_t

    # other follow-up measures (change = baseline minus follow-up); noise SD per phase
    def noise(key: str) -> np.ndarray:
        return rng.standard_normal(n) * _by_phase(p[key], phase3)

    for t, frac in (("2", 0.8), ("6", 1.0)):
        imp = out[f"imp{t}"]
        pain_chg = frac * _by_phase(p["pain_change"], phase3) + 0.8 * imp + p["pain_effect"] * g3 * frac
        out[f"pain{t}"] = _clip_round(pain0 - pain_chg + noise("pain_change_sd"), 0, 10)
        out[f"tsk{t}"] = _clip_round(tsk0 - (frac * _by_phase(p["tsk_change"], phase3) + 3.0 * imp + p["tsk_effect"] * g3
                                             + noise("tsk_change_sd")), 17, 68)
        out[f"hads_a{t}"] = _clip_round(hads_a0 - (frac * _by_phase(p["hads_anxiety_change"], phase3) + 0.6 * imp
                                                   + p["hads_anxiety_effect"] * g3 + noise("hads_anxiety_change_sd")), 0, 21)
        out[f"hads_d{t}"] = _clip_round(hads_d0 - (frac * _by_phase(p["hads_depression_change"], phase3) + 0.6 * imp
                                                   + p["hads_depression_effect"] * g3 + noise("hads_depression_change_sd")),
                                        0, 21)
        out[f"csq{t}"] = _clip_round(csq0 - (frac * 2.0 + 2.0 * imp + 0.8 * g3 + rng.normal(0, 4.5, n)), 0, 36)
        out[f"pseq{t}"] = _clip_round(pseq0 + (frac * 3.0 + 4.0 * imp + 1.0 * g3 + rng.normal(0, 7.0, n)), 0, 60)
        out[f"eq5d{t}"] = _eq5d(rng, out[f"rmdq{t}"], out[f"pain{t}"], out[f"hads_a{t}"] + out[f"hads_d{t}"],
                                 0.6 * eq_noise + 0.8 * rng.standard_normal(n))
        # global change: ordered logit on improvement, cut points from the phase 1 distribution
        gc = np.asarray(p["global_change_phase1"], dtype=float)
        cuts = _logit(np.cumsum(gc / gc.sum())[:-1]) * math.sqrt(1 + math.pi * 2.2 ** 2 / 8)
        latent = -2.2 * imp + rng.logistic(size=n) + (0.0 if t == "2" else GLOBAL_CHANGE_6M_SHIFT)
        out[f"global{t}"] = (1 + (latent[:, None] > cuts[None, :]).sum(axis=1)).astype(np.int8)

    imp6 = out["imp6"]
    out["satisfied_care"] = _bern(rng, _expit(_intercept_vec(p["satisfied_care"], phase3, 0.9) + 0.9 * imp6
                                              + re["satisfaction"]))
    # p_* are the model probabilities, kept for low-variance (Rao-Blackwellized) Monte Carlo truth
    out["p_satisfied_results"] = _expit(_intercept_vec(p["satisfied_results"], phase3, 1.4) + 1.4 * imp6
                                        + p["satisfied_results_logor"] * g3 + re["satisfaction"])
    out["satisfied_results"] = _bern(rng, out["p_satisfied_results"])
    # days off work (employed): negative binomial (gamma-Poisson)
    k = float(p["days_off_work_dispersion"])
    mu_days = p["days_off_work_mean"] * np.exp(0.5 * (time_off - 0.5) + 0.3 * zp - 0.5 * imp6
                                               + p["days_off_work_logratio"] * g3)
    out["mu_days"] = mu_days
    lam = rng.gamma(k, mu_days / k)
    out["days_off"] = np.minimum(rng.poisson(lam), DAYS_OFF_CAP).astype(np.int16)

    # follow-up response (MAR: age and baseline RMDQ; shared propensity across time points)
    v = rng.standard_normal(n)
    x_fu = p["followup_age_logor"] * (agec - 0.35) + p["followup_rmdq_logor"] * (rmdq0 - 8.5) / 5.8 + 0.5 * re["followup"]
    out["fu2"] = _bern(rng, _expit(_intercept_vec(p["followup_2m"], phase3, 1.8) + x_fu + 1.6 * v)).astype(bool) & responded
    out["fu6"] = _bern(rng, _expit(_intercept_vec(p["followup_6m"], phase3, 1.8) + x_fu + 1.6 * v)).astype(bool) & responded

    # ---- records ----
    ref_p = np.asarray(p["physio_referral"], dtype=float)
    ref_a = _logit(np.where(phase3, ref_p[1][risk], ref_p[0][risk])) * math.sqrt(1 + math.pi * 0.09 / 8)
    out["p_referral"] = _expit(ref_a + re["referral"] + 0.15 * (pain0 - 5.2) / 2.5)
    referral = _bern(rng, out["p_referral"])
    attended = referral & _bern(rng, np.full(n, float(p["physio_attendance"])))
    appr = np.where(phase3[:, None], np.asarray(p["approach_phase3"], dtype=float)[risk],
                    np.asarray(p["approach_phase1"], dtype=float)[risk])
    approach = _categorical(rng, appr)
    sess_mean = _by_phase_group(p["physio_sessions_mean"], phase3, approach)
    sessions = 1 + rng.poisson(np.maximum(sess_mean - 1, 0.1))
    sessions = np.minimum(sessions, 40).astype(np.int16)
    out.update(referral=referral, attended=attended.astype(bool), approach=approach, sessions=sessions)
    # GP reconsultations: zero-inflated count; P(any) by phase, fewer for phase 3 high risk
    rec_lp = _intercept_vec(p["reconsulted"], phase3, 0.6) + 0.5 * zp + re["reconsult"]
    reconsulted = _bern(rng, _expit(rec_lp))
    n_gp = reconsulted * (1 + rng.poisson(_by_phase_group(p["gp_consultations_mean"], phase3, risk) * np.exp(0.25 * zp)))
    out["reconsulted"], out["n_gp"] = reconsulted, np.minimum(n_gp, 60).astype(np.int16)
    drugs = {}
    for name in ("nsaids", "antidepressants", "non_opioid_analgesics", "neuromodulators"):
        slope = 0.4 if name in ("nsaids", "non_opioid_analgesics") else 0.5
        x = slope * (zs if name in ("antidepressants", "neuromodulators") else zp)
        drugs[name] = _bern(rng, _expit(_intercept_vec(p[name], phase3, slope) + x))
    p_strong = _expit(_intercept_vec(p["opioids_strong"], phase3, 0.6) + 0.6 * zp + re["opioid"])
    strong = _bern(rng, p_strong)
    weak_only_p = _by_phase(p["opioids_weak_only"], phase3) / (1 - _by_phase(p["opioids_strong"], phase3))
    p_weak = _expit(_logit(weak_only_p) * math.sqrt(1 + math.pi * 0.04 / 8) + 0.2 * zp + re["opioid"])
    weak = np.where(strong == 1, _bern(rng, np.full(n, 0.25)), _bern(rng, p_weak)).astype(np.int8)
    out["p_opioids_any"] = p_strong + (1 - p_strong) * p_weak
    drugs["opioids_strong"], drugs["opioids_weak"] = strong, weak
    out["drugs"] = drugs
    n_drug = sum(v.astype(np.int16) for v in drugs.values())
    out["n_prescriptions"] = np.minimum(n_drug + rng.poisson(_by_phase_group(p["extra_prescriptions"], phase3, risk) * n_drug), 150).astype(np.int16)
    cert_a = _intercept_vec(p["sickness_certificate"], phase3, 0.5)
    # certificates go to the employed: shift the intercept so the marginal over all patients is as given
    out["p_certificate"] = _expit(cert_a + CERTIFICATE_EMPLOYED_SHIFT + 0.5 * zp + 0.6 * (time_off - 0.45)
                                  + re["certificate"]) * employed
    cert = _bern(rng, out["p_certificate"]) * employed
    out["certificate"] = cert
    out["blood_test"] = _bern(rng, _expit(_intercept_vec(p["blood_test"], phase3, 0.3) + 0.3 * (agec - 0.3)))
    img_lp = _logit(_by_phase_group(p["imaging"], phase3, risk)) * math.sqrt(1 + math.pi * 0.04 / 8) + 0.2 * zp + re["imaging"]
    out["imaging"] = _bern(rng, _expit(img_lp))
    sec_lp = _logit(_by_phase_group(p["secondary_care_referral"], phase3, risk)) * math.sqrt(1 + math.pi * 0.04 / 8) + 0.2 * zp
    out["secondary"] = _bern(rng, _expit(sec_lp))
    return out


def _intercept_vec(target, phase3: np.ndarray, sd: float = 0.0) -> np.ndarray:
    t = np.asarray(target, dtype=float)
    return np.where(phase3, _intercept(t[1], sd), _intercept(t[0], sd))


@lru_cache(maxsize=16)
def _untruncated_cached(mean: float, sd: float) -> tuple[float, float]:
    def moments(mu, s):
        a, b = (18 - mu) / s, (95 - mu) / s
        z = special.ndtr(b) - special.ndtr(a)
        pa_, pb_ = np.exp(-a * a / 2) / math.sqrt(2 * math.pi), np.exp(-b * b / 2) / math.sqrt(2 * math.pi)
        m = mu + s * (pa_ - pb_) / z
        v = s * s * (1 + (a * pa_ - b * pb_) / z - ((pa_ - pb_) / z) ** 2)
        return m, math.sqrt(v)

    sol = optimize.fsolve(lambda x: np.array(moments(x[0], abs(x[1]))) - [mean, sd], [mean, sd])
    return float(sol[0]), float(abs(sol[1]))


def _untruncated(mean: float, sd: float) -> tuple[float, float]:
    return _untruncated_cached(float(mean), float(sd))


def _sbst_items(rng: np.random.Generator, phys: np.ndarray, psy: np.ndarray) -> np.ndarray:
    pp, ps, p9 = _sbst_probs(phys, psy)
    n = len(phys)
    items = np.empty((n, 9), dtype=np.int8)
    items[:, :4] = rng.random((n, 4)) < pp
    items[:, 4:8] = rng.random((n, 4)) < ps
    items[:, 8] = (rng.random(n)[:, None] < p9).sum(axis=1)
    return items


# EQ-5D-3L: per dimension, P(level >= 2) = expit(c2 + s2 x) and P(level 3) = expit(c3 + s3 x) (s3 >= s2,
# so extreme problems concentrate in the most severe), x = the current RMDQ, pain or HADS total (standardized)
# plus a person-level noise shared across dimensions and time points.
_EQ5D_MODEL = {  # driver, s2, c2, s3, c3
    "eq5d_mo": ("rmdq", 1.10, -0.28, 2.30, -6.47),
    "eq5d_sc": ("rmdq", 1.10, -1.48, 2.30, -7.47),
    "eq5d_ua": ("rmdq", 1.10, 0.42, 2.30, -5.27),
    "eq5d_pd": ("pain", 2.50, 3.02, 4.56, -4.78),
    "eq5d_ad": ("hads", 2.25, -0.78, 4.07, -5.97),
}


def _eq5d(rng, rmdq, pain, hads, noise) -> np.ndarray:
    drivers = {"rmdq": (rmdq - 9.0) / 6.0, "pain": (pain - 5.0) / 2.5, "hads": (hads - 13.0) / 7.0}
    n = len(rmdq)
    levels = np.empty((n, 5), dtype=np.int8)
    for j, (driver, s2, c2, s3, c3) in enumerate(_EQ5D_MODEL.values()):
        x = drivers[driver] + EQ5D_NOISE * noise
        u = rng.random(n)
        p2 = _expit(c2 + s2 * x)
        p3 = np.minimum(_expit(c3 + s3 * x), p2)
        levels[:, j] = 1 + (u < p2) + (u < p3)
    return levels


# ---------------------------------------------------------------------------------------------
# clinicians
# ---------------------------------------------------------------------------------------------
_PABS_BIO_BASE = {"gp": 3.6, "physio": 3.1}
_PABS_BEH_BASE = {"gp": 3.9, "physio": 4.3}
_CONF_BASE = {"gp": (7.0, 5.5, 4.0), "physio": (7.5, 6.5, 4.5)}


def _clinician_scores(rng: np.random.Generator, profession: str, n: int, p: dict[str, Any]) -> dict[str, np.ndarray]:
    """PABS-PT items (n, 19) and confidence (n, 3) before and after training for n clinicians."""
    j = 0 if profession == "gp" else 1
    bio = rng.standard_normal(n)
    beh = -0.4 * bio + math.sqrt(1 - 0.16) * rng.standard_normal(n)
    conf = rng.standard_normal(n)
    offsets = np.linspace(-0.5, 0.5, 10)
    out = {}
    for t, shift in (("before", 0.0), ("after", 1.0)):
        items = np.empty((n, 19), dtype=np.int8)
        b = bio + shift * rng.normal(0, 0.3, n)
        h = beh + shift * rng.normal(0, 0.3, n)
        items[:, :10] = _clip_round(_PABS_BIO_BASE[profession] + offsets[None, :] + 0.7 * b[:, None]
                                    + shift * p["pabs_biomedical_change"][j] / 10 + rng.normal(0, 0.8, (n, 10)), 1, 6)
        items[:, 10:] = _clip_round(_PABS_BEH_BASE[profession] + offsets[None, :9] + 0.7 * h[:, None]
                                    + shift * p["pabs_behavioural_change"][j] / 9 + rng.normal(0, 0.8, (n, 9)), 1, 6)
        c = np.asarray(_CONF_BASE[profession])[None, :] + 1.3 * conf[:, None] + shift * np.asarray(
            p["confidence_change"][j])[None, :] + rng.normal(0, 0.9, (n, 3))
        out[f"pabs_{t}"] = items
        out[f"conf_{t}"] = _clip_round(c, 0, 10)
    return out


# ---------------------------------------------------------------------------------------------
# truth
# ---------------------------------------------------------------------------------------------
def _odds_ratio(y: np.ndarray, phase3: np.ndarray) -> float:
    p3, p1 = y[phase3].mean(), y[~phase3].mean()
    return float((p3 / (1 - p3)) / (p1 / (1 - p1)))


def _cost(sim: dict[str, Any], unit: Mapping[str, float]) -> np.ndarray:
    return (sim["n_gp"] * unit["gp_consultation"] + sim["attended"] * sim["sessions"] * unit["physio_session"]
            + sim["imaging"] * unit["imaging"] + sim["n_prescriptions"] * unit["prescription"]
            + sim["secondary"] * unit["secondary_care_referral"])


def _qaly(sim: dict[str, Any]) -> np.ndarray:
    e0, e2, e6 = (eq5d_index(sim[k]) for k in ("eq5d0", "eq5d2", "eq5d6"))
    return (2 / 12) * (e0 + e2) / 2 + (4 / 12) * (e2 + e6) / 2


def _adjusted_difference(y: np.ndarray, phase3: np.ndarray, covariate: np.ndarray) -> float:
    x = np.column_stack([np.ones(len(y)), phase3.astype(float), covariate])
    return float(np.linalg.lstsq(x, y, rcond=None)[0][1])


def _capped_nb_mean(mu: np.ndarray, k: float, cap: int = DAYS_OFF_CAP) -> np.ndarray:
    """E[min(X, cap)] for X negative binomial with mean ``mu`` and shape ``k`` (interpolated on a log grid)."""
    from scipy import stats

    grid = np.geomspace(1e-3, 1e4, 400)
    x = np.arange(cap)
    sf = stats.nbinom.sf(x[None, :], k, k / (k + grid[:, None]))  # P(X > x)
    expected = sf.sum(axis=1)
    return np.interp(np.log(np.clip(mu, 1e-3, 1e4)), np.log(grid), expected)


def _round(x: float) -> float:
    return float(f"{x:.6g}")


@lru_cache(maxsize=32)
def _truth_cached(params_json: str) -> str:
    p = json.loads(params_json)
    n = int(p["truth_mc_n"])
    rng = np.random.default_rng(int(p["truth_seed"]))
    sim = _simulate(p, n, rng, n_practices=max(int(p["n_practices"]), 60))
    ph3, resp, cons = sim["phase3"], sim["responded"], sim["consent"]
    risk = sim["risk"]
    t: dict[str, Any] = {}
    # average effect of phase 3 care on the expected 6-month change, respondents of each risk group
    # (equals the model coefficient up to the floor/ceiling of the RMDQ scale)
    ate = sim["change6_with"] - sim["change6_without"]
    eff = np.array([ate[resp & (risk == g)].mean() for g in range(3)])
    for g, name in enumerate(RISK_GROUPS):
        t[f"rmdq_difference_{name}_risk"] = float(eff[g])
    # OLS weights of a model with phase and risk group: n_g * pi_g * (1 - pi_g)
    w = np.array([(resp & (risk == g)).sum() * ph3[resp & (risk == g)].mean() * (1 - ph3[resp & (risk == g)].mean())
                  for g in range(3)])
    t["rmdq_adjusted_difference"] = float(w @ eff / w.sum())
    t["rmdq_adjusted_difference_weights"] = [_round(v) for v in w / w.sum()]
    t["icc_practice"] = float(p["icc_practice"])
    # marginal rates from the model probabilities (Rao-Blackwellized: far less Monte Carlo noise than draws)
    p_matched = np.where(risk == 0, 1 - sim["p_referral"], sim["p_referral"])
    t["matched_referral_or"] = _odds_ratio(p_matched[cons], ph3[cons])
    t["sickness_certificate_or"] = _odds_ratio(sim["p_certificate"][cons], ph3[cons])
    t["opioids_or"] = _odds_ratio(sim["p_opioids_any"][cons], ph3[cons])
    t["satisfied_results_or"] = _odds_ratio(sim["p_satisfied_results"][resp], ph3[resp])
    emp = resp & (sim["employed"] == 1)
    days = _capped_nb_mean(sim["mu_days"], float(p["days_off_work_dispersion"]))
    t["days_off_work_ratio"] = float(days[emp & ph3].mean() / days[emp & ~ph3].mean())
    cost, qaly = _cost(sim, p["unit_costs"]), _qaly(sim)
    e0 = eq5d_index(sim["eq5d0"])
    for suffix, sel in (("", resp), ("_high_risk", resp & (risk == 2))):
        t[f"incremental_cost{suffix}"] = float(cost[sel & ph3].mean() - cost[sel & ~ph3].mean())
        t[f"incremental_qaly{suffix}"] = _adjusted_difference(qaly[sel], ph3[sel], e0[sel])
    # clinicians
    for prof in ("gp", "physio"):
        sc = _clinician_scores(np.random.default_rng(int(p["truth_seed"]) + 1), prof, min(n, 100000), p)
        t[f"pabs_biomedical_change_{prof}"] = float(sc["pabs_after"][:, :10].sum(1).mean() - sc["pabs_before"][:, :10].sum(1).mean())
        t[f"pabs_behavioural_change_{prof}"] = float(sc["pabs_after"][:, 10:].sum(1).mean() - sc["pabs_before"][:, 10:].sum(1).mean())
        for g, name in enumerate(RISK_GROUPS):
            t[f"confidence_{name}_risk_change_{prof}"] = float(sc["conf_after"][:, g].mean() - sc["conf_before"][:, g].mean())
    t = {k: (_round(v) if isinstance(v, float) else v) for k, v in t.items()}
    return json.dumps(t, sort_keys=True)


TRUTH_NOTES: dict[str, str] = {
    "rmdq_difference_low_risk": "model coefficient: phase 3 effect on the 6-month RMDQ change (baseline minus 6 months), "
                                "low risk, adjusted for baseline RMDQ and age (linear model of the expected change)",
    "rmdq_difference_medium_risk": "model coefficient, as for low risk",
    "rmdq_difference_high_risk": "model coefficient, as for low risk",
    "rmdq_adjusted_difference": "risk-group effects averaged with the OLS weights n_g*pi_g*(1-pi_g) of respondents "
                                "(pi_g = phase 3 share in group g): the phase coefficient of an ANCOVA without interaction",
    "icc_practice": "practice variance / (practice + within-practice residual variance) of the 6-month RMDQ change",
    "matched_referral_or": "Monte Carlo population OR, phase 3 vs 1, record-review consenters, unadjusted",
    "sickness_certificate_or": "Monte Carlo population OR among consenters, unadjusted",
    "opioids_or": "Monte Carlo population OR of any opioid among consenters, unadjusted",
    "satisfied_results_or": "Monte Carlo population OR among respondents (6-month answer had everyone responded)",
    "days_off_work_ratio": "Monte Carlo ratio of mean days off work, employed respondents, phase 3 / phase 1",
    "incremental_cost": "Monte Carlo difference in mean 6-month back-pain NHS cost (unit_costs), respondents",
    "incremental_qaly": "Monte Carlo phase coefficient of QALY (EQ-5D AUC 0-2-6 months, years) adjusted for baseline EQ-5D",
    "pabs_biomedical_change_gp": "Monte Carlo mean change (after minus before) of the PABS-PT biomedical score (10-60)",
}


# ---------------------------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------------------------
def _ids(prefix: str, numbers: np.ndarray, width: int, mask=None) -> pd.Series:
    """Identifiers like ``PAT00001`` (vectorized with pyarrow); missing where ``mask``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    numbers = pa.array(np.asarray(numbers, dtype=np.int64), mask=None if mask is None else np.asarray(mask, dtype=bool))
    text = pc.utf8_lpad(pc.cast(numbers, pa.string()), width, "0")
    return pc.binary_join_element_wise(prefix, text, "").to_pandas()


def _take(labels, codes, mask=None) -> pd.Series:
    """Text column from integer codes into ``labels`` (vectorized); missing where ``mask``."""
    import pyarrow as pa

    arr = pa.array([None if v is None else str(v) for v in labels], pa.string())
    idx = pa.array(np.asarray(codes, dtype=np.int64), mask=None if mask is None else np.asarray(mask, dtype=bool))
    return arr.take(idx).to_pandas()


def _width(n: int, minimum: int) -> int:
    return max(minimum, len(str(max(n, 1))))


def _int(values, mask=None, dtype: str = "Int16") -> pd.arrays.IntegerArray:
    v = np.asarray(values)
    m = np.zeros(len(v), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    return pd.arrays.IntegerArray(np.where(m, 0, v).astype(np.dtype(dtype.lower())), m)


def _date(values, mask=None) -> pd.Series:
    values = np.asarray(values, dtype="datetime64[D]").astype("datetime64[s]")
    if mask is not None:
        values = np.where(mask, np.datetime64("NaT", "s"), values)
    return pd.Series(values, dtype="datetime64[s]")


def _text(values, mask=None) -> pd.Series:
    s = pd.Series(np.asarray(values, dtype=object), dtype="str")
    if mask is not None:
        s = s.mask(pd.Series(mask))
    return s


def _days(rng: np.random.Generator, lo: int, hi: int, n: int) -> np.ndarray:
    return rng.integers(lo, hi + 1, n).astype("timedelta64[D]")


def _build_tables(p: dict[str, Any], n: int, seed: int) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    rng = np.random.default_rng(seed)
    sim = _simulate(p, n, rng)
    n_pr = int(p["n_practices"])
    prac = sim["practice_info"]
    n_gps = int(prac["n_gps"].sum())
    n_phys = int(p["n_physios"])
    pw, gw, tw, aw = _width(n_pr, 2), _width(n_gps, 3), _width(n_phys, 2), _width(n, 5)
    practice_ids = _ids("P", np.arange(1, n_pr + 1), pw)
    gp_ids = _ids("GP", np.arange(1, n_gps + 1), gw)
    physio_ids = _ids("PT", np.arange(1, n_phys + 1), tw)
    names = ["Alder", "Beech", "Cedar", "Damson", "Elm", "Fir", "Gorse", "Hazel", "Ivy", "Juniper", "Larch", "Maple",
             "Oak", "Pine", "Rowan", "Spruce", "Thorn", "Willow", "Yew", "Ash"]
    pnames = [f"{names[i]} Surgery" if i < len(names) else f"Surgery {i + 1}" for i in range(n_pr)]
    tables: dict[str, pd.DataFrame] = {}
    tables["practices"] = pd.DataFrame({
        "practice_id": practice_ids, "practice_name": _text(pnames),
        "list_size": _int(prac["list_size"], dtype="Int32"), "n_gps": _int(prac["n_gps"]),
    })

    # clinicians and surveys
    d = sim["dates"]
    n_serv = int(p["n_physio_services"])
    gp_practice = np.repeat(np.arange(n_pr), prac["n_gps"])
    gtd = np.asarray(p["gp_training_days"], dtype=float)
    gp_days = gtd[0] + 0.5 * rng.integers(0, int(round((gtd[1] - gtd[0]) / 0.5)) + 1, n_gps)
    ptd = p["physio_training_days"]
    phys_days = rng.integers(int(ptd[0]), int(ptd[1]) + 1, n_phys).astype(float)
    mentoring = rng.binomial(int(p["physio_mentoring_sessions"]), 0.75, n_phys)
    n_cl = n_gps + n_phys
    tables["clinicians"] = pd.DataFrame({
        "clinician_id": pd.concat([gp_ids, physio_ids], ignore_index=True),
        "profession": _text(["gp"] * n_gps + ["physio"] * n_phys),
        "practice_id": pd.concat([practice_ids[gp_practice].reset_index(drop=True), _text([None] * n_phys)], ignore_index=True),
        "physio_service": _text([None] * n_gps + [f"Physiotherapy service {chr(65 + j % n_serv)}" if n_serv <= 26
                                                  else f"Physiotherapy service {j % n_serv + 1}" for j in range(n_phys)]),
        "training_days": pd.array(np.concatenate([gp_days, phys_days]), dtype="Float64"),
        "mentoring_sessions": _int(np.concatenate([np.zeros(n_gps, int), mentoring]),
                                   np.concatenate([np.ones(n_gps, bool), np.zeros(n_phys, bool)])),
    })
    start2 = d["end1"]
    span2 = max(int((d["start3"] - start2).astype(int)), 1)
    training = start2 + rng.integers(0, span2, n_cl).astype("timedelta64[D]")
    rows = []
    for prof, idx in (("gp", np.arange(n_gps)), ("physio", np.arange(n_gps, n_cl))):
        sc = _clinician_scores(rng, prof, len(idx), p)
        j = 0 if prof == "gp" else 1
        for t, resp_p, when in (("before", p["survey_response_before"][j], training[idx] - _days(rng, 1, 30, len(idx))),
                                ("after", p["survey_response_after"][j], training[idx] + _days(rng, 150, 240, len(idx)))):
            keep = rng.random(len(idx)) < resp_p
            frame = {"clinician_id": tables["clinicians"]["clinician_id"].to_numpy()[idx][keep],
                     "time_point": np.full(keep.sum(), t, dtype=object), "survey_date": when[keep]}
            for i in range(19):
                frame[f"pabs_{i + 1}"] = sc[f"pabs_{t}"][keep, i]
            for g, name in enumerate(RISK_GROUPS):
                frame[f"confidence_{name}"] = sc[f"conf_{t}"][keep, g]
            rows.append(pd.DataFrame(frame))
    surveys = pd.concat(rows, ignore_index=True).sort_values(["clinician_id", "survey_date"], kind="stable")
    surv = {"clinician_id": _text(surveys["clinician_id"].to_numpy()), "time_point": _text(surveys["time_point"].to_numpy()),
            "survey_date": _date(surveys["survey_date"].to_numpy())}
    for c in surveys.columns[3:]:
        surv[c] = _int(surveys[c].to_numpy())
    tables["clinician_surveys"] = pd.DataFrame(surv)

    # patients
    ph3 = sim["phase3"]
    phase = np.where(ph3, 3, 1)
    resp, excl = sim["responded"], sim["excluded"]
    nr = ~resp
    outcome = np.where(excl, 2, np.where(resp, 0, 1))
    patient_ids = _ids("PAT", np.arange(1, n + 1), aw)
    date = sim["date"]
    pat: dict[str, Any] = {
        "patient_id": patient_ids,
        "practice_id": _take(practice_ids, sim["practice"]),
        "gp_id": _take(gp_ids, sim["gp"]),
        "phase": _int(phase),
        "consultation_date": _date(date),
        "invitation_outcome": _take(["responded", "non_respondent", "excluded"], outcome),
        "exclusion_reason": _take(EXCLUSION_REASONS, sim["reason"], ~excl),
        "record_review_consent": _int(sim["consent"].astype(int), nr),
        "age": _int(sim["age"]),
        "sex": _take(["male", "female"], sim["female"]),
        "baseline_date": _date(date + _days(rng, 5, 28, n), nr),
        "employed": _int(sim["employed"], nr),
        "manual_occupation": _int(sim["manual"], nr | sim["manual_missing"]),
        "time_off_work": _int(sim["time_off"], nr | (sim["employed"] == 0)),
        "episode_duration": _take(EPISODE_DURATIONS, sim["episode"], nr),
        "leg_pain": _int(sim["leg"], nr),
    }
    for i in range(9):
        pat[f"sbst_{i + 1}"] = _int(sim["sbst0"][:, i], nr)
    miss0 = rng.random((n, 24)) < p["rmdq_item_missing"]
    for i in range(24):
        pat[f"rmdq_{i + 1}"] = _int(sim["rmdq_items0"][:, i], nr | miss0[:, i])
    pat["pain_nrs"] = _int(sim["pain0"], nr)
    for j, dim in enumerate(EQ5D_DIMS):
        pat[dim] = _int(sim["eq5d0"][:, j], nr)
    for col, key in (("hads_anxiety", "hads_a"), ("hads_depression", "hads_d"), ("tsk", "tsk"), ("csq_cat", "csq"),
                     ("pseq", "pseq")):
        pat[col] = _int(sim[f"{key}0"], nr)
    tables["patients"] = pd.DataFrame(pat)

    # consultations: every eligible consultation; invited patients link to one
    n_cons = max(int(round(n / float(p["consultation_invite_rate"]))), n)
    extra = n_cons - n
    e_ph3 = np.arange(extra) >= int(round(extra * p["phase1_share"]))
    e_prac = rng.choice(n_pr, size=extra, p=prac["list_size"] / prac["list_size"].sum())
    e_gp = prac["first_gp"][e_prac] + np.floor(rng.random(extra) * prac["n_gps"][e_prac]).astype(int)
    span1 = int((d["end1"] - d["start1"]).astype(int))
    span3 = int((d["end3"] - d["start3"]).astype(int))
    e_off = np.where(e_ph3, rng.integers(0, span3, extra), rng.integers(0, span1, extra))
    e_date = np.where(e_ph3, d["start3"], d["start1"]) + e_off.astype("timedelta64[D]")
    c_ph3 = np.concatenate([ph3, e_ph3])
    c_prac = np.concatenate([sim["practice"], e_prac])
    c_date = np.concatenate([date, e_date])
    c_time = np.concatenate([sim["phase3_time"], np.where(e_ph3, e_off / max(span3, 1), 0.0)])
    prac_eff = rng.normal(0, p["sbst_completed_practice_sd"], n_pr)[c_prac]
    lo3, hi3 = _logit(p["sbst_completed_phase3_start"]), _logit(p["sbst_completed_phase3_end"])
    lp = np.where(c_ph3, lo3 + (hi3 - lo3) * c_time, _logit(p["sbst_completed_phase1"])) + prac_eff
    completed = _bern(rng, _expit(lp))
    order = np.lexsort((rng.random(n_cons), c_date))
    c_pat = np.concatenate([np.arange(1, n + 1), np.zeros(extra, dtype=np.int64)])
    tables["consultations"] = pd.DataFrame({
        "consultation_id": _ids("C", np.arange(1, n_cons + 1), _width(n_cons, 6)),
        "practice_id": _take(practice_ids, c_prac[order]),
        "gp_id": _take(gp_ids, np.concatenate([sim["gp"], e_gp])[order]),
        "consultation_date": _date(c_date[order]),
        "phase": _int(np.where(c_ph3[order], 3, 1)),
        "sbst_completed": _int(completed[order]),
        "patient_id": _ids("PAT", c_pat[order], aw, mask=c_pat[order] == 0),
    })

    # follow-ups
    frames = []
    for t, months in (("2", 2), ("6", 6)):
        sel = np.flatnonzero(sim[f"fu{t}"])
        m = len(sel)
        fu: dict[str, Any] = {
            "patient_id": _ids("PAT", sel + 1, aw),
            "time_point": _int(np.full(m, months)),
            "return_date": _date(date[sel] + _days(rng, 30 * months, 30 * months + 40, m)),
        }
        for i in range(9):
            fu[f"sbst_{i + 1}"] = _int(sim[f"sbst{t}"][sel, i])
        miss = rng.random((m, 24)) < p["rmdq_item_missing"]
        for i in range(24):
            fu[f"rmdq_{i + 1}"] = _int(sim[f"rmdq_items{t}"][sel, i], miss[:, i])
        fu["pain_nrs"] = _int(sim[f"pain{t}"][sel])
        for j, dim in enumerate(EQ5D_DIMS):
            fu[dim] = _int(sim[f"eq5d{t}"][sel, j])
        for col, key in (("hads_anxiety", "hads_a"), ("hads_depression", "hads_d"), ("tsk", "tsk"), ("csq_cat", "csq"),
                         ("pseq", "pseq")):
            fu[col] = _int(sim[f"{key}{t}"][sel])
        fu["global_change"] = _int(sim[f"global{t}"][sel])
        only6 = np.full(m, t != "6")
        fu["days_off_work"] = _int(sim["days_off"][sel], only6 | (sim["employed"][sel] == 0))
        fu["satisfied_care"] = _int(sim["satisfied_care"][sel], only6)
        fu["satisfied_results"] = _int(sim["satisfied_results"][sel], only6)
        frames.append((sel, pd.DataFrame(fu)))
    fu_all = pd.concat([f for _, f in frames], ignore_index=True)
    key = np.concatenate([s for s, _ in frames]) * 2 + np.concatenate([np.zeros(len(frames[0][0]), int),
                                                                        np.ones(len(frames[1][0]), int)])
    tables["followups"] = fu_all.iloc[np.argsort(key, kind="stable")].reset_index(drop=True)

    # records (consenters) and physiotherapy episodes
    sel = np.flatnonzero(sim["consent"])
    m = len(sel)
    rec: dict[str, Any] = {
        "patient_id": _ids("PAT", sel + 1, aw),
        "review_date": _date(date[sel] + _days(rng, 182, 220, m)),
        "physio_referral": _int(sim["referral"][sel]),
        "reconsulted": _int(sim["reconsulted"][sel]),
        "n_gp_consultations": _int(sim["n_gp"][sel]),
    }
    for name in ("nsaids", "antidepressants", "non_opioid_analgesics", "opioids_strong", "opioids_weak", "neuromodulators"):
        rec[name] = _int(sim["drugs"][name][sel])
    rec["n_prescriptions"] = _int(sim["n_prescriptions"][sel])
    rec["sickness_certificate"] = _int(sim["certificate"][sel])
    rec["blood_test"] = _int(sim["blood_test"][sel])
    rec["imaging"] = _int(sim["imaging"][sel])
    rec["secondary_care_referral"] = _int(sim["secondary"][sel])
    tables["records"] = pd.DataFrame(rec)

    sel = np.flatnonzero(sim["consent"] & sim["attended"])
    m = len(sel)
    service = sim["practice"][sel] % n_serv
    per_service = np.bincount(np.arange(n_phys) % n_serv, minlength=n_serv)
    physio = service + n_serv * np.floor(rng.random(m) * np.maximum(per_service[service], 1)).astype(int)
    physio = np.where(per_service[service] > 0, physio, rng.integers(0, n_phys, m))
    tables["physio"] = pd.DataFrame({
        "episode_id": _ids("EP", np.arange(1, m + 1), _width(m, 6)),
        "patient_id": _ids("PAT", sel + 1, aw),
        "physio_id": _take(physio_ids, physio),
        "start_date": _date(date[sel] + _days(rng, 10, 60, m)),
        "n_sessions": _int(sim["sessions"][sel]),
        "approach": _take(APPROACHES, sim["approach"][sel]),
    })
    tables["withdrawals"] = _withdrawals(sim, seed, aw)
    order = ["practices", "clinicians", "clinician_surveys", "consultations", "patients", "followups", "records", "physio",
             "withdrawals"]
    return {k: tables[k] for k in order}, sim


def _withdrawals(sim: dict[str, Any], seed: int, width: int) -> pd.DataFrame:
    """Reasons for loss to follow-up of the baseline respondents who did not return a questionnaire.

    Drawn from their own random stream (:data:`LOSS_REASON_STREAM`), after everything else, so
    the other tables are those of a study without reasons. Per patient: the 6-month reason from
    :data:`LOSS_REASON_MIX`; a 2-month reason from the same mix when the 6-month questionnaire
    is not returned either (a lasting reason at 2 months is then the 6-month reason too), else
    from :data:`LOSS_REASON_MIX_PASSING`. "Not recorded" writes no row. ``reason_text`` only
    for ``other`` (a short note, never shown by the analysis).
    """
    rng = np.random.default_rng([int(seed), LOSS_REASON_STREAM])
    responded = sim["responded"]
    lost2, lost6 = responded & ~sim["fu2"], responded & ~sim["fu6"]
    n = len(responded)
    k = len(LOSS_REASONS)  # code k: not recorded
    r6 = _categorical(rng, np.tile(np.asarray(LOSS_REASON_MIX, float), (n, 1))).astype(int)
    r2 = np.where(lost6, _categorical(rng, np.tile(np.asarray(LOSS_REASON_MIX, float), (n, 1))),
                  _categorical(rng, np.tile(np.asarray(LOSS_REASON_MIX_PASSING, float), (n, 1)))).astype(int)
    lasting2 = lost2 & lost6 & (r2 < 3)
    r6 = np.where(lasting2, r2, r6)
    # a 6-month lasting reason is not always known to have started before 2 months: kept as drawn
    pid = np.concatenate([np.flatnonzero(lost2 & (r2 < k)), np.flatnonzero(lost6 & (r6 < k))])
    month = np.concatenate([np.full((lost2 & (r2 < k)).sum(), 2), np.full((lost6 & (r6 < k)).sum(), 6)])
    code = np.concatenate([r2[lost2 & (r2 < k)], r6[lost6 & (r6 < k)]])
    order = np.lexsort((month, pid))
    pid, month, code = pid[order], month[order], code[order]
    # recorded after the questionnaire was due and the reminders went unanswered
    recorded = sim["date"][pid] + (30 * month + rng.integers(45, 100, len(pid))).astype("timedelta64[D]")
    return pd.DataFrame({
        "patient_id": _ids("PAT", pid + 1, width),
        "time_point": _int(month),
        "reason": _take(LOSS_REASONS, code),
        "recorded_date": _date(recorded),
        "reason_text": _text(["stated in a letter from the patient" if c == k - 1 else None for c in code]),
    })


# ---------------------------------------------------------------------------------------------
# the public object and entry point
# ---------------------------------------------------------------------------------------------
@dataclass(repr=False)
class SyntheticStudy:
    """A generated study: ``tables`` (by data-dictionary table name), ``truth`` and ``parameters``.

    Tables are also attributes (``study.patients``). Integer columns are pandas nullable
    integers (``Int16``/``Int32``), dates ``datetime64[s]`` (NaT when missing), text ``str``.
    """

    tables: dict[str, pd.DataFrame]
    truth: dict[str, Any]
    parameters: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> pd.DataFrame:
        tables = self.__dict__.get("tables", {})
        if name in tables:
            return tables[name]
        raise AttributeError(name)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{name}={len(df)}" for name, df in self.tables.items())
        return (f"SyntheticStudy(n_invited={self.parameters.get('n_invited')}, seed={self.parameters.get('seed')}, "
                f"rows: {sizes})")

    def write(self, path: str | Path, format: str = "csv") -> dict[str, Path]:
        """Write one file per table plus ``truth.json`` into ``path`` (created if needed).

        Parameters
        ----------
        path : str or Path
            Output folder.
        format : {"csv", "parquet"}
            File format of the tables. CSV output is byte-for-byte deterministic: fixed column
            order, ``\\n`` line ends, integers without decimals, ISO dates, empty cells for missing.

        Returns
        -------
        dict
            Table name (and ``"truth"``) -> written file path.
        """
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        if format not in ("csv", "parquet"):
            raise SyntheticParameterError(f"format must be 'csv' or 'parquet'; got {format!r}")
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        written: dict[str, Path] = {}
        for name, df in self.tables.items():
            table = pa.Table.from_pandas(df, preserve_index=False)
            for i, fld in enumerate(table.schema):
                if pa.types.is_timestamp(fld.type):
                    table = table.set_column(i, fld.name, pc.cast(table.column(i), pa.date32()))
            target = out / f"{name}.{format}"
            if format == "csv":
                with open(target, "wb") as fh:
                    fh.write((",".join(table.column_names) + "\n").encode())
                    pacsv.write_csv(table, fh, pacsv.WriteOptions(include_header=False, quoting_style="none"))
            else:
                pq.write_table(table, target)
            written[name] = target
        target = out / "truth.json"
        target.write_text(json.dumps(self.truth, sort_keys=True, indent=2) + "\n", encoding="utf-8")
        written["truth"] = target
        return written


def generate_study(n_invited: int = DEFAULT_N_INVITED, seed: int = DEFAULT_SEED, **overrides: Any) -> SyntheticStudy:
    """Generate a synthetic IMPaCT Back study with known true effects.

    Parameters
    ----------
    n_invited : int
        Invited patients (default 1647 = 630 + 1017 as published); split between phases by
        ``phase1_share``.
    seed : int
        Seed of :func:`numpy.random.default_rng`; same seed and settings, same data.
    **overrides
        Any key of :data:`DEFAULTS` (listed with their meaning in :data:`PARAMETER_HELP` and
        ``docs/synthetic.md``). Per-phase settings take ``[phase 1, phase 3]`` or one value for
        both; per-risk-group settings ``[low, medium, high]``. Examples: no effect
        ``rmdq_effect=[0, 0, 0]``; another risk mix ``risk_mix=[0.26, 0.46, 0.28]``; 20 practices
        ``n_practices=20, n_gps=180``; other follow-up ``followup_6m=[0.8, 0.8]``; clustering
        ``icc_practice=0.1``. Unknown keys raise :class:`SyntheticParameterError`.

    Returns
    -------
    SyntheticStudy
        ``tables``: the nine tables of ``data/data_dictionary.yaml`` with exactly its columns
        (practices, clinicians, clinician_surveys, consultations, patients, followups, records,
        physio, withdrawals: the reasons for loss to follow-up, from a random stream of their own); ``truth``: the estimands (keys as the key findings; see ``docs/synthetic.md``)
        plus ``"parameters"`` (every setting, including ``n_invited`` and ``seed``);
        ``write(dir, format="csv")``.

    Notes
    -----
    The data-generating model is documented in ``docs/synthetic.md``. Linear RMDQ effects in
    ``truth`` are model coefficients; odds ratios, the days-off ratio, PABS-PT changes and the
    cost-utility increments are population values computed by Monte Carlo on ``truth_mc_n``
    invited patients with seed ``truth_seed`` (independent of ``seed``).

    Examples
    --------
    >>> from backpain_analysis.synthetic import generate_study
    >>> study = generate_study(n_invited=400, seed=1, truth_mc_n=20000)
    >>> sorted(study.tables)[:3]
    ['clinician_surveys', 'clinicians', 'consultations']
    >>> len(study.patients)
    400
    >>> round(study.truth["rmdq_adjusted_difference"], 1)
    0.7
    >>> 2.1 < study.truth["rmdq_difference_high_risk"] < 2.4
    True
    >>> generate_study(n_invited=100, truth_mc_n=20000, rmdq_effect=[0, 0, 0]).truth["rmdq_adjusted_difference"]
    0.0
    """
    if not isinstance(n_invited, int | np.integer) or n_invited < 10:
        raise SyntheticParameterError(f"n_invited must be an integer of at least 10; got {n_invited!r}")
    p = _resolve(overrides)
    tables, _ = _build_tables(p, int(n_invited), int(seed))
    truth = json.loads(_truth_cached(json.dumps(p, sort_keys=True)))
    truth["parameters"] = {**p, "n_invited": int(n_invited), "seed": int(seed)}
    return SyntheticStudy(tables=tables, truth=truth, parameters=truth["parameters"])
