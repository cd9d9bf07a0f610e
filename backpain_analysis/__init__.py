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

# --- synthetic study (issue 3) ---

# --- scoring, stratification, cleaning, analysis dataset (issue 4) ---

# --- report (issue 5) ---
from .disclosure import small_count_cells, suppress_table, suppression_mask
from .report import load_report_definition, run_report

__all__ += ["load_report_definition", "run_report", "small_count_cells", "suppress_table", "suppression_mask"]
