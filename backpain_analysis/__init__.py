"""backpain_analysis: evaluate stratified primary care for low back pain.

Load a study export and validate it against the data dictionary, clean it with an
audit trail, score the instruments, stratify patients, build the analysis dataset,
and regenerate the parameterized notebook report. See README.md.
"""

from ._version import __version__
from .dictionary import DataDictionary, load_dictionary
from .errors import BackpainError

__all__ = ["BackpainError", "DataDictionary", "__version__", "load_dictionary"]

# --- loading and validation (issue 2) ---
from .loading import Study, StudyValidationError, load_study
from .schemas import build_schema

__all__ += ["Study", "StudyValidationError", "build_schema", "load_study"]

# --- synthetic study (issue 3) ---
from .synthetic import SyntheticParameterError, SyntheticStudy, generate_study  # noqa: E402

__all__ += ["SyntheticParameterError", "SyntheticStudy", "generate_study"]

# --- scoring, stratification, cleaning, analysis dataset (issue 4) ---
from .cleaning import CleaningError, CleanStudy, clean_study  # noqa: E402
from .dataset import (  # noqa: E402
    ANALYSIS_COLUMNS,
    ReconciliationError,
    build_analysis_dataset,
    flow_counts,
    load_analysis_dataset,
    reconcile,
)
from .scoring import (  # noqa: E402
    ScoringError,
    eq5d3l_index,
    good_outcome,
    rmdq_mcid,
    score_pabs,
    score_rmdq,
    score_sbst,
)
from .stratification import matched_care, matched_pathway, matched_referral, received_pathway  # noqa: E402

__all__ += ["ANALYSIS_COLUMNS", "CleanStudy", "CleaningError", "ReconciliationError", "ScoringError",
            "build_analysis_dataset", "clean_study", "eq5d3l_index", "flow_counts", "good_outcome",
            "load_analysis_dataset", "matched_care", "matched_pathway", "matched_referral", "received_pathway",
            "reconcile", "rmdq_mcid", "score_pabs", "score_rmdq", "score_sbst"]

# --- process of care and patient outcomes (issue 7) ---
from .imputation import impute_chained, pool_rubin, pool_wald  # noqa: E402

__all__ += ["impute_chained", "pool_rubin", "pool_wald"]

# --- chapters 01-03: data quality, cohort, stratification (issue 6) ---
from . import cohort, quality, screening  # noqa: E402
from .cohort import table1  # noqa: E402

__all__ += ["cohort", "quality", "screening", "table1"]

# --- report (issue 5) ---
from .disclosure import small_count_cells, suppress_table, suppression_mask  # noqa: E402


def __getattr__(name: str):
    # report is imported lazily so that `python -m backpain_analysis.report strip ...` runs cleanly
    if name in ("load_report_definition", "run_report"):
        from . import report

        return getattr(report, name)
    raise AttributeError(f"module 'backpain_analysis' has no attribute {name!r}")


__all__ += ["load_report_definition", "run_report", "small_count_cells", "suppress_table", "suppression_mask"]
