"""backpain_analysis: evaluate stratified primary care for low back pain.

Load a study export and validate it against the data dictionary, clean it with an
audit trail, score the instruments, stratify patients, build the analysis dataset,
and regenerate the parameterized notebook report. See README.md.

The names below are imported from their modules on first use (PEP 562), so that
``import backpain_analysis.report`` (the report runner and its worker processes) or a chapter
that needs three modules does not import all of them with pandas, pandera, scipy and
statsmodels: importing everything took 1.3 s per process, and the report starts a process per
notebook and per worker.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__ as __version__
from .errors import BackpainError as BackpainError

#: public name -> the module of this package that defines it
_EXPORTS: dict[str, str] = {
    # dictionary and errors
    "DataDictionary": "dictionary", "load_dictionary": "dictionary",
    # loading and validation (issue 2)
    "Study": "loading", "StudyValidationError": "loading", "load_study": "loading", "build_schema": "schemas",
    # synthetic study (issue 3)
    "SyntheticParameterError": "synthetic", "SyntheticStudy": "synthetic", "generate_study": "synthetic",
    # scoring, stratification, cleaning, analysis dataset (issue 4)
    "CleaningError": "cleaning", "CleanStudy": "cleaning", "clean_study": "cleaning",
    "ANALYSIS_COLUMNS": "dataset", "ReconciliationError": "dataset", "build_analysis_dataset": "dataset",
    "flow_counts": "dataset", "load_analysis_dataset": "dataset", "reconcile": "dataset",
    "ScoringError": "scoring", "eq5d3l_index": "scoring", "good_outcome": "scoring", "rmdq_mcid": "scoring",
    "score_pabs": "scoring", "score_rmdq": "scoring", "score_sbst": "scoring",
    "matched_care": "stratification", "matched_pathway": "stratification", "matched_referral": "stratification",
    "received_pathway": "stratification",
    # process of care and patient outcomes (issue 7)
    "impute_chained": "imputation", "pool_rubin": "imputation", "pool_wald": "imputation",
    # chapters 01-03 (issue 6)
    "table1": "cohort",
    # report (issue 5)
    "small_count_cells": "disclosure", "suppress_table": "disclosure", "suppression_mask": "disclosure",
    "load_report_definition": "report", "run_report": "report",
}
#: submodules offered as attributes of the package
_SUBMODULES: frozenset[str] = frozenset({"cohort", "quality", "screening"})

__all__ = sorted(["BackpainError", "__version__", *_EXPORTS, *_SUBMODULES])


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'backpain_analysis' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # once imported, an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
