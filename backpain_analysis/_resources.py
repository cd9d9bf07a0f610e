"""Files that ship with the package, found with :mod:`importlib.resources`.

The repository keeps them where users look for them (``data/data_dictionary.yaml``,
``data/unit_costs.csv``, ``notebooks/report.yaml`` and the chapter notebooks); ``pyproject.toml``
maps those folders onto the subpackages ``backpain_analysis._data`` and
``backpain_analysis._notebooks``, so the same names resolve in a wheel installed with
``pip install .`` and in the editable install of ``make venv`` (where they are the repository's
own files, so edits show at once).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from .errors import BackpainError

DATA_PACKAGE = "backpain_analysis._data"
NOTEBOOKS_PACKAGE = "backpain_analysis._notebooks"


def resource_path(package: str, name: str) -> Path:
    """Where a bundled file is (or would be): never raises, the caller checks that it exists."""
    try:
        return Path(str(resources.files(package).joinpath(name)))
    except (ModuleNotFoundError, TypeError, ValueError):
        return Path(__file__).resolve().parent / package.rsplit(".", 1)[-1] / name


def _resource(package: str, name: str) -> Path:
    path = resource_path(package, name)
    if not path.is_file():
        raise BackpainError(f"the bundled file {name} ({package}) was not found: reinstall backpain_analysis")
    return path


def data_file(name: str) -> Path:
    """Path of a bundled data file (``data_dictionary.yaml``, ``unit_costs.csv``)."""
    return _resource(DATA_PACKAGE, name)


def notebook_file(name: str) -> Path:
    """Path of a bundled notebook-folder file (``report.yaml``, ``05_patient_outcomes.ipynb``, ...)."""
    return _resource(NOTEBOOKS_PACKAGE, name)


def notebooks_dir() -> Path:
    """The folder holding the bundled report definition and chapter notebooks."""
    return notebook_file("report.yaml").parent


def bundled_notebooks() -> list[Path]:
    """The bundled notebooks (``*.ipynb``), sorted by name."""
    return sorted(notebooks_dir().glob("*.ipynb"))
