"""Regenerate the report: the declarative report definition, the papermill runner and ``index.html``.

The report is defined in one YAML file (``notebooks/report.yaml``): the chapters (name, notebook,
title, parameters) and the per-practice feedback report. :func:`run_report` executes every
notebook with papermill on the ``backpain`` kernel, several at a time, keeps each executed
notebook, renders it to HTML without code, and writes ``OUT/index.html`` and ``OUT/run.json``.

Layout of the output folder ``OUT``::

    OUT/index.html, OUT/run.json
    OUT/<chapter>/<chapter>.html, <chapter>.ipynb, _run.json,
                 tables/*.csv, figures/*.png, key_findings.json
    OUT/feedback/practice_<id>/practice_<id>.html, ... (the same files per practice)

Each notebook runs with ``output_dir`` pointing at a private staging folder; when it finishes,
its whole folder is moved onto ``OUT/<name>`` in one rename, so an interrupted run never leaves
a half-written chapter that looks complete. ``_run.json`` records the status and a fingerprint
(sha256 of the notebook, its parameters, the input files and the package version): a chapter
whose fingerprint has not changed since its last successful run is skipped unless ``force``.

The module also holds the helpers that keep the committed source notebooks clean
(:func:`strip_notebook_outputs`, :func:`notebook_problems`); run them as
``python -m backpain_analysis.report strip|check|refresh notebooks/*.ipynb``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import multiprocessing
import os
import platform
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from ._resources import NOTEBOOKS_PACKAGE, resource_path
from ._version import __version__
from .errors import BackpainError
from .outputs import atomic_write, read_key_findings
from .parallel import BLAS_THREAD_ENVS, WORKERS_ENV, side_by_side_environment

__all__ = [
    "DEFAULT_DEFINITION",
    "DEFAULT_KERNEL",
    "KernelError",
    "ChapterResult",
    "ChapterSpec",
    "FeedbackSpec",
    "NotebookJob",
    "ReportDefinition",
    "ReportDefinitionError",
    "ReportRun",
    "cached_analysis_dataset",
    "fingerprint_inputs",
    "load_report_definition",
    "notebook_problems",
    "plan_jobs",
    "refresh_checked_outputs",
    "resolve_kernel",
    "run_report",
    "strip_notebook_outputs",
    "validate_for_report",
]

#: The report definition shipped with the package (``notebooks/report.yaml`` in the repository).
DEFAULT_DEFINITION = resource_path(NOTEBOOKS_PACKAGE, "report.yaml")
#: The Jupyter kernel the notebooks run on (registered by ``make`` in ``.venv``).
DEFAULT_KERNEL = "backpain"
#: Parameters every notebook must declare; the runner always sets them.
RUNNER_PARAMETERS = ("data_dir", "output_dir")
RUN_FILE = "_run.json"
CHECK_MARKER = "NBVAL_CHECK_OUTPUT"
CHECK_TAG = "nbval-check-output"
_STAGING_PREFIX = ".staging-"
_TRASH_PREFIX = ".trash-"
#: Environment variable naming the folder where notebooks run by the runner share the analysis dataset.
CACHE_ENV = "BACKPAIN_DATASET_CACHE"


class ReportDefinitionError(BackpainError):
    """The report definition (``report.yaml``) or a notebook's parameters cell is invalid."""


# --------------------------------------------------------------------------------------------
# The report definition
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChapterSpec:
    """One chapter of the report: ``OUT/<name>/`` is written by ``notebook``."""

    name: str
    notebook: Path
    title: str
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FeedbackSpec:
    """The per-practice feedback report: ``notebook`` runs once per practice (``practice_id``)."""

    name: str
    notebook: Path
    title: str
    practices: str | tuple[str, ...] = "all"
    parameters: dict[str, Any] = field(default_factory=dict)
    #: feedback rounds (``backpain feedback``): schedule, uptake_target, min_followed_up, per_gp
    rounds: dict[str, Any] = field(default_factory=dict)

    def output_name(self, practice_id: str) -> str:
        """Output folder (relative to ``OUT``) of one practice's report, derived from its parameter."""
        return f"{self.name}/practice_{practice_id}"


@dataclass(frozen=True)
class ReportDefinition:
    """The parsed report definition (see ``notebooks/report.yaml``)."""

    path: Path
    title: str
    chapters: tuple[ChapterSpec, ...]
    feedback: FeedbackSpec | None

    def chapter(self, name: str) -> ChapterSpec:
        for spec in self.chapters:
            if spec.name == name:
                return spec
        raise KeyError(name)


def _is_json_like(value: Any) -> bool:
    if value is None or isinstance(value, str | bool | int):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_is_json_like(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json_like(v) for k, v in value.items())
    return False


def _check_parameters(params: Any, where: str, path: Path) -> dict[str, Any]:
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise ReportDefinitionError(f"{path}: {where}: 'parameters' must be a mapping, got {params!r}")
    for key, value in params.items():
        if key in RUNNER_PARAMETERS:
            raise ReportDefinitionError(
                f"{path}: {where}: parameter {key!r} is set by the runner (from --data/--out); remove it"
            )
        if not _is_json_like(value):
            raise ReportDefinitionError(
                f"{path}: {where}: parameter {key!r} = {value!r} is not JSON-like "
                "(use str, int, float, bool, null, list or dict; dates and paths as strings)"
            )
    return dict(params)


_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def _check_name(name: Any, where: str, path: Path) -> str:
    if not isinstance(name, str) or not name or not set(name) <= _NAME_CHARS or name.startswith("."):
        raise ReportDefinitionError(
            f"{path}: {where}: 'name' must be a folder name of letters, digits, '_' or '-', got {name!r}"
        )
    return name


def load_report_definition(path: str | Path | None = None) -> ReportDefinition:
    """Read and check the report definition file.

    Parameters
    ----------
    path : str or Path, optional
        The YAML file; default :data:`DEFAULT_DEFINITION` (``notebooks/report.yaml``).
        Notebook paths in it are relative to the file's folder.

    Returns
    -------
    ReportDefinition
        ``title``, ``chapters`` (tuple of :class:`ChapterSpec`: name, notebook, title,
        parameters) and ``feedback`` (:class:`FeedbackSpec` or None).

    Raises
    ------
    ReportDefinitionError
        Missing keys, duplicate or invalid names, parameters that are not JSON-like or that
        the runner sets itself (``data_dir``, ``output_dir``).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "report.yaml").write_text("chapters:\\n- name: 01_x\\n  notebook: x.ipynb\\n  title: X\\n")
    >>> definition = load_report_definition(d / "report.yaml")
    >>> [c.name for c in definition.chapters], definition.feedback
    (['01_x'], None)
    """
    path = Path(path) if path is not None else DEFAULT_DEFINITION
    if not path.is_file():
        raise ReportDefinitionError(f"report definition {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ReportDefinitionError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ReportDefinitionError(f"{path}: expected a mapping with 'chapters' and 'feedback'")
    unknown = set(raw) - {"title", "chapters", "feedback"}
    if unknown:
        raise ReportDefinitionError(f"{path}: unknown top-level keys {sorted(unknown)}")
    base = path.parent
    chapters: list[ChapterSpec] = []
    for i, entry in enumerate(raw.get("chapters") or []):
        where = f"chapters[{i}]"
        if not isinstance(entry, dict) or "name" not in entry or "notebook" not in entry:
            raise ReportDefinitionError(f"{path}: {where}: needs at least 'name' and 'notebook', got {entry!r}")
        extra = set(entry) - {"name", "notebook", "title", "parameters"}
        if extra:
            raise ReportDefinitionError(f"{path}: {where}: unknown keys {sorted(extra)}")
        name = _check_name(entry["name"], where, path)
        if name in {c.name for c in chapters}:
            raise ReportDefinitionError(f"{path}: {where}: chapter name {name!r} is listed twice")
        chapters.append(
            ChapterSpec(
                name=name,
                notebook=(base / str(entry["notebook"])).resolve(),
                title=str(entry.get("title") or name),
                parameters=_check_parameters(entry.get("parameters"), where, path),
            )
        )
    feedback = None
    fb = raw.get("feedback")
    if fb:
        if not isinstance(fb, dict) or "notebook" not in fb:
            raise ReportDefinitionError(f"{path}: feedback: needs at least 'notebook', got {fb!r}")
        extra = set(fb) - {"name", "notebook", "title", "practices", "parameters", "rounds"}
        if extra:
            raise ReportDefinitionError(f"{path}: feedback: unknown keys {sorted(extra)}")
        name = _check_name(fb.get("name", "feedback"), "feedback", path)
        if name in {c.name for c in chapters}:
            raise ReportDefinitionError(f"{path}: feedback: name {name!r} is also a chapter name")
        practices = fb.get("practices", "all")
        if practices != "all":
            if not isinstance(practices, list) or not practices:
                raise ReportDefinitionError(f"{path}: feedback: 'practices' must be 'all' or a list, got {practices!r}")
            practices = tuple(str(p) for p in practices)
        params = _check_parameters(fb.get("parameters"), "feedback", path)
        if "practice_id" in params:
            raise ReportDefinitionError(f"{path}: feedback: 'practice_id' is set per practice by the runner")
        feedback = FeedbackSpec(
            name=name,
            notebook=(base / str(fb["notebook"])).resolve(),
            title=str(fb.get("title") or "Practice feedback"),
            practices=practices,
            parameters=params,
            rounds=_check_rounds(fb.get("rounds"), path),
        )
    return ReportDefinition(path=path.resolve(), title=str(raw.get("title") or "Report"), chapters=tuple(chapters),
                            feedback=feedback)


def _check_rounds(rounds: Any, path: Path) -> dict[str, Any]:
    """The ``feedback: rounds:`` section: schedule (quarterly, monthly or a list of dates),
    uptake_target (0-1), min_followed_up (int), per_gp (bool)."""
    if rounds is None:
        return {}
    allowed = {"schedule", "uptake_target", "min_followed_up", "per_gp"}
    if not isinstance(rounds, dict) or set(rounds) - allowed:
        raise ReportDefinitionError(f"{path}: feedback: rounds: a mapping with keys {sorted(allowed)}, got {rounds!r}")
    return _check_parameters(rounds, "feedback: rounds", path)


# --------------------------------------------------------------------------------------------
# Fingerprints and the practices of a study
# --------------------------------------------------------------------------------------------


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint_inputs(data_dir: str | Path) -> tuple[str, dict[str, str]]:
    """sha256 fingerprint of the study's input files.

    Parameters
    ----------
    data_dir : str or Path
        The study export folder.

    Returns
    -------
    (str, dict)
        The combined sha256 (over the sorted relative paths and each file's sha256) and the
        per-file sha256 keyed by relative path. Hidden files and folders are ignored.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "practices.csv").write_text("practice_id\\nP01\\n")
    >>> combined, files = fingerprint_inputs(d)
    >>> list(files), len(combined)
    (['practices.csv'], 64)
    """
    root = Path(data_dir)
    files: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        files[rel.as_posix()] = _sha256_file(path)
    combined = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    return combined, files


def study_practice_ids(data_dir: str | Path) -> list[str]:
    """The ``practice_id`` values of the study's ``practices`` table, in file order."""
    import pandas as pd

    root = Path(data_dir)
    for suffix, reader in ((".csv", pd.read_csv), (".parquet", pd.read_parquet), (".xlsx", pd.read_excel)):
        path = root / f"practices{suffix}"
        if path.is_file():
            kwargs: dict[str, Any] = {"columns": ["practice_id"]} if suffix == ".parquet" else {"dtype": str}
            table = reader(path, **kwargs)
            if "practice_id" not in table.columns:
                raise BackpainError(f"{path}: column 'practice_id' is missing (needed for the feedback reports)")
            return [str(v).strip() for v in table["practice_id"].dropna()]
    raise BackpainError(f"{root}: no practices table (practices.csv, .parquet or .xlsx): the feedback reports need it")


# --------------------------------------------------------------------------------------------
# Jobs: one notebook execution each
# --------------------------------------------------------------------------------------------


@dataclass
class NotebookJob:
    """One notebook execution: a chapter, or the feedback notebook for one practice."""

    name: str  # output folder relative to OUT, e.g. "05_patient_outcomes" or "feedback/practice_P01"
    title: str
    kind: str  # "chapter" or "feedback"
    notebook: Path
    parameters: dict[str, Any]  # without data_dir / output_dir
    practice_id: str | None = None

    @property
    def stem(self) -> str:
        return self.name.rsplit("/", 1)[-1]


@dataclass
class ChapterResult:
    """What happened to one job in a report run (also the content of its ``_run.json``)."""

    name: str
    title: str
    kind: str
    status: str  # "ok", "failed", "skipped" (unchanged since an ok run), "not run", "outdated" (earlier run)
    practice_id: str | None = None
    notebook: str | None = None  # executed notebook, relative to OUT
    html: str | None = None  # rendered report, relative to OUT
    fingerprint: str | None = None
    outputs_sha: str | None = None  # sha256 of the files the run left in OUT/<name>/ (a changed folder is re-run)
    started: str | None = None
    duration_s: float | None = None
    error: str | None = None
    cell_index: int | None = None
    ename: str | None = None
    evalue: str | None = None
    key_findings: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "skipped")


def plan_jobs(
    definition: ReportDefinition,
    data_dir: str | Path,
    *,
    chapters: Sequence[str] | None = None,
    practices: Sequence[str] | None = None,
) -> list[NotebookJob]:
    """List the notebook executions of a run.

    ``chapters`` selects chapter names (``"feedback"``, or the feedback entry's name, selects
    the feedback reports); ``practices`` restricts the feedback reports (and selects them even
    when ``chapters`` does not name them). Unknown names raise :class:`ReportDefinitionError`.
    """
    known = [c.name for c in definition.chapters]
    fb = definition.feedback
    wanted = None if chapters is None else list(dict.fromkeys(chapters))
    if wanted is not None:
        unknown = [c for c in wanted if c not in known and not (fb and c in (fb.name, "feedback"))]
        if unknown:
            raise ReportDefinitionError(
                f"unknown chapter(s) {unknown}; {definition.path} lists {known + ([fb.name] if fb else [])}"
            )
    jobs = [
        NotebookJob(c.name, c.title, "chapter", c.notebook, dict(c.parameters))
        for c in definition.chapters
        if wanted is None or c.name in wanted
    ]
    run_feedback = fb is not None and (
        wanted is None or fb.name in wanted or "feedback" in wanted or practices is not None
    )
    if practices is not None and fb is None:
        raise ReportDefinitionError(f"{definition.path} defines no feedback report, but practices were given")
    if run_feedback and fb is not None:
        available = study_practice_ids(data_dir)
        if practices is not None:
            selected = list(dict.fromkeys(str(p) for p in practices))
        elif fb.practices == "all":
            selected = available
        else:
            selected = list(fb.practices)
        unknown = [p for p in selected if p not in available]
        if unknown:
            raise BackpainError(
                f"practice(s) {unknown} are not in the practices table of {data_dir} (it has {available[:10]})"
            )
        for pid in selected:
            jobs.append(
                NotebookJob(fb.output_name(pid), f"{fb.title}: practice {pid}", "feedback", fb.notebook,
                            {**fb.parameters, "practice_id": pid}, practice_id=pid)
            )
    return jobs


def _parameter_problem(job: NotebookJob, inspected: dict[str, Any] | None, n_param_cells: int) -> str | None:
    if not job.notebook.is_file():
        return f"notebook {job.notebook} does not exist"
    if n_param_cells == -1:
        return f"notebook {job.notebook.name} has no kernelspec in its metadata (open it in JupyterLab with the backpain kernel and save)"
    if n_param_cells != 1:
        return f"notebook {job.notebook.name} has {n_param_cells} cells tagged 'parameters' (needs exactly one)"
    if inspected is None:
        return f"notebook {job.notebook.name}: papermill could not read its parameters cell"
    needed = [*RUNNER_PARAMETERS, *job.parameters]
    missing = [p for p in needed if p not in inspected]
    if missing:
        return (
            f"notebook {job.notebook.name}: parameter(s) {missing} are not in its parameters cell "
            f"(it declares {sorted(inspected)})"
        )
    return None


def _without_slow_iri_format() -> None:
    """Keep jsonschema from importing ``rfc3987_syntax`` in the report's own processes.

    nbformat (under papermill and nbconvert) validates notebooks with jsonschema, whose format
    checker imports ``rfc3987_syntax`` when it is installed (an extra that jupyter_events asks
    for); that import compiles a Lark grammar and took 1.4 s: once in the report process before
    the first notebook started, and again in each worker process. nbformat's schemas use no
    ``iri`` format and validate without a format checker, so nothing is lost. Does nothing once
    jsonschema is imported (the check is then already loaded) or when a caller has set the entry.
    """
    if "jsonschema" not in sys.modules:
        sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]  # import -> ImportError, skipped


def _inspect(notebook: Path) -> tuple[dict[str, Any] | None, int]:
    _without_slow_iri_format()
    import nbformat
    import papermill

    if not notebook.is_file():
        return None, 0
    nb = nbformat.read(notebook, as_version=4)
    n_cells = sum("parameters" in c.get("metadata", {}).get("tags", []) for c in nb.cells)
    if n_cells != 1:
        return None, n_cells
    if not nb.metadata.get("kernelspec", {}).get("name"):
        return None, -1  # papermill cannot inspect a notebook without a kernelspec
    return papermill.inspect_notebook(str(notebook)), n_cells


def _job_fingerprint(job: NotebookJob, inputs_sha: str, kernel_name: str) -> str:
    notebook_sha = _sha256_file(job.notebook) if job.notebook.is_file() else "missing"
    payload = {
        "notebook": notebook_sha,
        "parameters": job.parameters,
        "inputs": inputs_sha,
        "version": __version__,
        "kernel": kernel_name,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _outputs_sha(folder: Path) -> str:
    """sha256 over the relative paths and contents of every file of a job's folder but ``_run.json``."""
    files: dict[str, str] = {}
    if folder.is_dir():
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.name != RUN_FILE:
                files[path.relative_to(folder).as_posix()] = _sha256_file(path)
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def _read_run_file(folder: Path) -> dict[str, Any] | None:
    try:
        with open(folder / RUN_FILE, encoding="utf-8") as fh:
            data: dict[str, Any] = json.load(fh)
    except (OSError, ValueError):
        return None
    return data


def _result_from_run_file(data: dict[str, Any]) -> ChapterResult:
    known = {f for f in ChapterResult.__dataclass_fields__}
    return ChapterResult(**{k: v for k, v in data.items() if k in known})


def _load_findings(folder: Path) -> list[dict[str, Any]]:
    path = folder / "key_findings.json"
    if not path.is_file():
        return []
    try:
        findings = read_key_findings(path)
    except (OSError, ValueError):
        return []
    return findings if isinstance(findings, list) else []


# --------------------------------------------------------------------------------------------
# Executing one notebook (runs in a worker process, which drives the notebook's own kernel process)
# --------------------------------------------------------------------------------------------


#: Cells tagged so keep their outputs in the executed notebook (nbval checks them) but not in the HTML.
REPORT_HIDDEN_OUTPUT_TAG = "remove-output-in-report"


def _render_html(nb_path: Path, html_path: Path, title: str, *, pages: Sequence[tuple[str, str]] = (),
                 current: str | None = None, chapter: str | None = None) -> None:
    """Render an executed notebook as HTML without code cells, prompts, stderr or the outputs of cells
    tagged ``remove-output-in-report``; PNG figures inline. With ``current`` (the page's path relative
    to the report folder) and ``pages`` (every page of the report, in order), the page is made offline
    and gets the navigation bar and numbered captions (:func:`presentation.site.postprocess_page`)."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(nb_path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.get("outputs", []) if not (o.output_type == "stream" and o.name == "stderr")]
            if REPORT_HIDDEN_OUTPUT_TAG in cell.get("metadata", {}).get("tags", []):
                cell.outputs = []  # e.g. the nbval check lines of the GP feedback report: for tests, not readers
    nb.metadata["title"] = title
    quiet = logging.getLogger("backpain_analysis.report.nbconvert")
    quiet.setLevel(logging.ERROR)  # e.g. "Alternative text is missing on 2 image(s)" for every notebook
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True, log=quiet)
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    if current is not None:
        from .presentation.site import postprocess_page

        body = postprocess_page(body, pages=list(pages) or [(title, current)], current=current, chapter=chapter)
    with atomic_write(html_path) as fh:
        fh.write(body)


def _page_href(job: NotebookJob) -> str:
    """A job's HTML page relative to the report folder."""
    return f"{job.name}/{job.stem}.html"


def _chapter_number(name: str) -> str | None:
    from .presentation.site import chapter_number

    return chapter_number(name)


def _site_pages(jobs: Iterable[NotebookJob]) -> list[tuple[str, str]]:
    """(title, href) of every page of the report in reading order, for the navigation bar."""
    return [(j.title if j.kind == "chapter" else f"Feedback: practice {j.practice_id}", _page_href(j)) for j in jobs]


def _stamp_cutoff(nb_path: Path) -> None:
    """With a data cut-off (``backpain report --until``), head the executed notebook with it, so that
    the cut-off is in every page's heading."""
    from .cutoff import UNTIL_ENV, as_iso

    until = as_iso(os.environ.get(UNTIL_ENV))
    if until is None:
        return
    import nbformat

    nb = nbformat.read(nb_path, as_version=4)
    text = (f"**Interim report: data up to {until}.** Only consultations, questionnaires, follow-ups and "
            f"record reviews dated on or before {until} are used; patients whose follow-up window was still "
            "open then are counted as not yet due, not as lost to follow-up.")
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(text, metadata={"tags": ["data-cutoff"]}))
    nbformat.write(nb, nb_path)


def _first_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _move_into_place(staged: Path, target: Path) -> None:
    """Replace ``target`` by ``staged`` with renames (the old folder goes to a trash name first)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    trash = None
    if target.exists():
        trash = target.parent / f"{_TRASH_PREFIX}{target.name}-{uuid.uuid4().hex[:8]}"
        os.replace(target, trash)
    os.replace(staged, target)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)


#: Kernel start failures that are races, not faults: a kernel's randomly chosen ZMQ port was taken
#: by another process between choosing and binding it ("Address already in use"), so the kernel
#: dies before answering. One more start with new ports is enough.
_TRANSIENT_KERNEL_ERRORS = ("Kernel died before replying to kernel_info",)


def _execute_with_kernel_retry(execute: Any, *args: Any, attempts: int = 2, **kwargs: Any) -> Any:
    """Call ``execute`` (papermill.execute_notebook); start the kernel again once after a transient
    start failure (see ``_TRANSIENT_KERNEL_ERRORS``). Any other error, and a cell error, is raised at once."""
    for attempt in range(1, attempts + 1):
        try:
            return execute(*args, **kwargs)
        except RuntimeError as exc:
            if attempt == attempts or not any(t in str(exc) for t in _TRANSIENT_KERNEL_ERRORS):
                raise
    return None  # unreachable: the loop returns or raises


def _execute_job(
    job: NotebookJob,
    *,
    data_dir: Path,
    out_dir: Path,
    staging_root: Path,
    kernel_name: str,
    fingerprint: str,
    start_timeout: int,
    execution_timeout: int | None,
    pages: Sequence[tuple[str, str]] = (),
) -> ChapterResult:
    _without_slow_iri_format()
    import papermill
    from papermill.exceptions import PapermillExecutionError

    started = datetime.now(UTC)
    t0 = time.perf_counter()
    stage = staging_root / job.name
    stage.mkdir(parents=True, exist_ok=True)
    executed = stage / f"{job.stem}.ipynb"
    result = ChapterResult(job.name, job.title, job.kind, "ok", practice_id=job.practice_id,
                           fingerprint=fingerprint, started=started.isoformat(timespec="seconds"))
    parameters = {**job.parameters, "data_dir": str(data_dir), "output_dir": str(staging_root)}
    try:
        _execute_with_kernel_retry(
            papermill.execute_notebook,
            str(job.notebook),
            str(executed),
            parameters=parameters,
            kernel_name=kernel_name,
            cwd=str(job.notebook.parent),
            progress_bar=False,
            log_output=False,
            start_timeout=start_timeout,
            execution_timeout=execution_timeout,
            # Save once at the end (also after a failing cell), not after every cell: that JSON
            # serialization runs in this process under the GIL and slowed parallel runs.
            request_save_on_cell_execute=False,
            # Quiet kernel logging (TCP notice, shutdown interrupt) so runs do not flood stderr.
            extra_arguments=["--IPKernelApp.log_level=CRITICAL"],
        )
    except PapermillExecutionError as exc:
        result.status = "failed"
        result.cell_index, result.ename, result.evalue = exc.cell_index, exc.ename, _first_line(exc.evalue)
        result.error = f"cell {exc.cell_index} of {executed.name}: {exc.ename}: {result.evalue}"
    except Exception as exc:  # kernel start failures, missing kernel, timeouts: isolate like cell errors
        result.status = "failed"
        result.ename, result.evalue = type(exc).__name__, _first_line(str(exc))
        result.error = f"{result.ename}: {result.evalue}"
    if result.status == "ok" and not (stage / "key_findings.json").is_file():
        result.status = "failed"
        result.error = (
            f"the notebook wrote no {job.name}/key_findings.json: it must use "
            f"ChapterOutputs(output_dir, {job.name!r}) and call write_findings()"
        )
    if executed.is_file():
        result.notebook = f"{job.name}/{executed.name}"
        try:
            _stamp_cutoff(executed)
            _render_html(executed, stage / f"{job.stem}.html", job.title, pages=pages, current=_page_href(job),
                         chapter=_chapter_number(job.name) if job.kind == "chapter" else None)
            result.html = f"{job.name}/{job.stem}.html"
        except Exception as exc:  # a rendering failure fails the chapter, never the run
            result.status = "failed"
            result.error = (result.error + "; " if result.error else "") + f"HTML rendering: {type(exc).__name__}: {exc}"
    result.key_findings = _load_findings(stage)
    result.duration_s = round(time.perf_counter() - t0, 2)
    result.outputs_sha = _outputs_sha(stage)
    with atomic_write(stage / RUN_FILE) as fh:
        json.dump(asdict(result), fh, indent=2, default=str)
    _move_into_place(stage, out_dir / job.name)
    return result


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


@dataclass
class ReportRun:
    """The outcome of :func:`run_report`."""

    output_dir: Path
    results: list[ChapterResult]  # every job of the definition (run now, skipped, or from earlier runs)
    provenance: dict[str, Any]
    index_path: Path
    run_json_path: Path

    @property
    def failed(self) -> list[ChapterResult]:
        """Jobs of this run that failed."""
        run_now = set(self.provenance["run_jobs"])
        return [r for r in self.results if r.status == "failed" and r.name in run_now]

    def failure_summary(self) -> str:
        """One line per failed job: name and the cell error."""
        return "\n".join(f"{r.name} failed: {r.error}" for r in self.failed)


def cached_analysis_dataset(data_dir: str | Path) -> tuple[Any, Any]:
    """``load_analysis_dataset(data_dir)``, shared between the notebooks of one report run.

    Under :func:`run_report` (environment variable ``BACKPAIN_DATASET_CACHE`` set to
    ``OUT/.cache``) the first notebook builds the dataset and pickles it under a key made of the
    input files' sha256 and the package version; the other notebooks load it (a file lock makes
    concurrent notebooks wait for the first). Elsewhere (JupyterLab, papermill CLI, nbval) it
    simply calls :func:`backpain_analysis.dataset.load_analysis_dataset`.

    Returns
    -------
    (CleanStudy, DataFrame)
        As :func:`~backpain_analysis.dataset.load_analysis_dataset`.
    """
    import fcntl
    import pickle

    from .dataset import load_analysis_dataset

    cache_dir = os.environ.get(CACHE_ENV)
    if not cache_dir:
        return load_analysis_dataset(data_dir)
    inputs_sha, _ = fingerprint_inputs(data_dir)
    until = os.environ.get("BACKPAIN_DATA_UNTIL", "")  # cutoff.UNTIL_ENV: an interim dataset is another dataset
    key = hashlib.sha256(f"{Path(data_dir).resolve()}|{inputs_sha}|{__version__}|{until}".encode()).hexdigest()[:24]
    folder = Path(cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"dataset-{key}.pkl"
    with open(folder / f"dataset-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if target.is_file():
                with open(target, "rb") as fh:
                    result: tuple[Any, Any] = pickle.load(fh)
                return result
            result = load_analysis_dataset(data_dir)
            with atomic_write(target, "wb") as fh:
                pickle.dump(result, fh, protocol=pickle.HIGHEST_PROTOCOL)
            return result
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class KernelError(BackpainError):
    """The Jupyter kernel the notebooks would run on is missing or cannot start."""


def _kernel_python_ok(argv: Sequence[str]) -> str | None:
    """Run the kernel's Python once: None if it can import ipykernel and this package, else the error."""
    import subprocess

    if not argv:
        return "its kernel.json has an empty argv"
    try:
        proc = subprocess.run([argv[0], "-c", "import ipykernel, backpain_analysis"], capture_output=True, text=True,
                              timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{argv[0]} could not be run: {exc}"
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
        return f"{argv[0]} cannot import ipykernel and backpain_analysis: {last}"
    return None


def resolve_kernel(kernel_name: str | None = None) -> tuple[str, Path | None, str | None]:
    """The kernel a report runs on, checked once before any notebook starts.

    Parameters
    ----------
    kernel_name : str, optional
        A Jupyter kernel to use. Default: the ``backpain`` kernel if one is registered for this
        very Python environment (``make venv`` does that), otherwise this environment's own
        Python (``sys.executable``) through a private kernelspec, so an installed package never
        needs ``ipykernel install`` and never runs on another environment's kernel.

    Returns
    -------
    (str, Path or None, str or None)
        The kernel name; the folder holding the private kernelspec (to prepend to
        ``JUPYTER_PATH`` while the notebooks run; None when a registered kernel is used); and a
        message for the user when the choice is worth saying (None otherwise).

    Raises
    ------
    KernelError
        ``kernel_name`` is not installed, or its Python cannot import ipykernel and this package.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    manager = KernelSpecManager()
    if kernel_name is not None:
        try:
            spec = manager.get_kernel_spec(kernel_name)
        except NoSuchKernel as exc:
            available = sorted(manager.find_kernel_specs())
            raise KernelError(f"Jupyter kernel {kernel_name!r} is not installed (available: {available}); "
                              "omit the kernel to use this environment's Python") from exc
        problem = _kernel_python_ok(spec.argv) if "ipykernel" in " ".join(spec.argv) else None
        if problem:
            raise KernelError(f"Jupyter kernel {kernel_name!r} cannot run the notebooks: {problem}")
        return kernel_name, None, None
    try:
        spec = manager.get_kernel_spec(DEFAULT_KERNEL)
        registered = os.path.abspath(spec.argv[0]) if spec.argv else None
    except NoSuchKernel:
        registered = None
    # Compared without resolving symlinks: two venvs of one base Python are different environments.
    if registered is not None and registered == os.path.abspath(sys.executable):
        return DEFAULT_KERNEL, None, None
    folder = Path(tempfile.mkdtemp(prefix="backpain-kernel-"))
    kernel_dir = folder / "kernels" / DEFAULT_KERNEL
    kernel_dir.mkdir(parents=True)
    spec_json = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python (backpain)",
        "language": "python",
        "metadata": {"debugger": True},
    }
    (kernel_dir / "kernel.json").write_text(json.dumps(spec_json, indent=1), encoding="utf-8")
    why = ("the registered 'backpain' kernel runs another Python (" + str(registered) + ")" if registered is not None
           else "no 'backpain' Jupyter kernel is registered")
    message = f"{why}: running the notebooks on this environment's Python ({sys.executable})"
    return DEFAULT_KERNEL, folder, message


def validate_for_report(data_dir: str | Path) -> None:
    """Load, validate and clean the study once before any notebook starts (filling the dataset cache).

    Raises the loader's :class:`~backpain_analysis.loading.StudyValidationError` (every
    problem, as ``backpain validate`` shows them) or a ``CleaningError``; the notebooks then
    reuse the cached analysis dataset instead of loading the study again.
    """
    cached_analysis_dataset(data_dir)


def _default_jobs() -> int:
    return max(1, os.cpu_count() or 1)


def run_report(
    data_dir: str | Path,
    output_dir: str | Path,
    *,
    chapters: Sequence[str] | None = None,
    practices: Sequence[str] | None = None,
    jobs: int | None = None,
    force: bool = False,
    definition: str | Path | ReportDefinition | None = None,
    kernel_name: str | None = None,
    validate: bool = True,
    progress: bool = True,
    start_timeout: int = 180,
    execution_timeout: int | None = None,
    until: Any = None,
) -> ReportRun:
    """Regenerate the report: run the chapter and feedback notebooks, then write the index.

    Parameters
    ----------
    data_dir : str or Path
        Study export folder, passed to every notebook as ``data_dir`` (absolute).
    output_dir : str or Path
        Output folder ``OUT`` (created if missing).
    chapters : sequence of str, optional
        Run only these chapters (``"feedback"`` selects the feedback reports). Default: all.
    practices : sequence of str, optional
        Feedback reports only for these practice ids (default: as the definition says).
    jobs : int, optional
        Notebooks executed at the same time, each on its own kernel (default: number of cores).
        Each kernel then fits its per-imputation models in cores // jobs worker processes
        (``BACKPAIN_ANALYSIS_WORKERS``, unless already set; :mod:`backpain_analysis.parallel`).
    force : bool
        Re-run notebooks whose fingerprint has not changed since their last successful run.
    definition : str, Path or ReportDefinition, optional
        The report definition (default ``notebooks/report.yaml``).
    kernel_name : str, optional
        Jupyter kernel. Default: the ``backpain`` kernel registered for this Python environment,
        else this environment's Python (see :func:`resolve_kernel`; a note says so on stderr).
    validate : bool
        Load, validate and clean the study once before any notebook starts (default). False
        only for notebooks that do not read a study (the runner's own tests).
    progress : bool
        Show a tqdm progress bar of notebooks done on stderr.
    start_timeout, execution_timeout : int
        Seconds to wait for a kernel to start, and for one cell (None: no limit).
    until : str or date, optional
        Data cut-off (``YYYY-MM-DD``, inclusive) for an interim report: every notebook's
        :func:`~backpain_analysis.dataset.load_analysis_dataset` uses only what is dated on or
        before it (passed to the kernels as ``BACKPAIN_DATA_UNTIL``). The cut-off is in
        ``run.json`` (``until``), in the index title and at the head of every page, and in the
        fingerprints (a report at another cut-off re-runs every notebook).

    Returns
    -------
    ReportRun
        ``results`` (one :class:`ChapterResult` per job: name, title, kind, status ok / failed /
        skipped / not run, practice_id, notebook, html, fingerprint, started, duration_s, error,
        cell_index, ename, evalue, key_findings), ``provenance`` (the content of ``run.json``),
        ``index_path``, ``run_json_path``, and ``failed`` (the jobs of this run that failed).

    Raises
    ------
    BackpainError
        The data folder does not exist, unknown chapters or practices, or an invalid definition.
        A failing notebook does not raise: it is reported in ``failed``.
    DisclosureError
        After the index is written, when :func:`backpain_analysis.disclosure.check_report` finds
        a count from 1 to 4 or a hidden count recoverable by differencing (``err.findings``).
    StudyValidationError
        The study is invalid: it is validated once before any notebook starts, and nothing runs.
    KernelError
        The kernel is missing or cannot start (one message, before any notebook starts).

    Notes
    -----
    Notebooks are executed with papermill (``kernel_name`` and ``cwd`` = the notebook's folder),
    in worker processes that each drive a separate kernel process (processes, not threads:
    papermill changes the working directory of the whole process to ``cwd`` while it runs a
    notebook, which is not thread-safe). Parameter names are checked
    against :func:`papermill.inspect_notebook` first, since papermill only warns on unknown ones.

    Examples
    --------
    >>> run = run_report("data/synthetic", "reports", jobs=2)  # doctest: +SKIP
    >>> [r.status for r in run.results]  # doctest: +SKIP
    ['ok', 'ok', ...]
    """
    from tqdm.auto import tqdm

    data_dir = Path(data_dir).resolve()
    out_dir = Path(output_dir).resolve()
    if not data_dir.is_dir():
        raise BackpainError(f"data folder {data_dir} does not exist")
    if not isinstance(definition, ReportDefinition):
        definition = load_report_definition(definition)
    jobs = _default_jobs() if jobs is None else int(jobs)
    if jobs < 1:
        raise BackpainError(f"--jobs must be at least 1, got {jobs}")

    started = datetime.now(UTC)
    t0 = time.perf_counter()
    from .cutoff import UNTIL_ENV, as_iso

    until = as_iso(until)
    planned = _with_cutoff(plan_jobs(definition, data_dir, chapters=chapters, practices=practices), until)
    inputs_sha, input_files = fingerprint_inputs(data_dir)
    if until is not None:  # an interim report is a report of other inputs
        inputs_sha = hashlib.sha256(f"{inputs_sha}|until={until}".encode()).hexdigest()
    out_dir.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(out_dir)

    inspected = {nb: _inspect(nb) for nb in {job.notebook for job in planned}}
    kernel_label = kernel_name or DEFAULT_KERNEL  # the default resolves to a kernel named "backpain"
    results: dict[str, ChapterResult] = {}
    to_run: list[tuple[NotebookJob, str]] = []
    for job in planned:
        fingerprint = _job_fingerprint(job, inputs_sha, kernel_label)
        problem = _parameter_problem(job, *inspected[job.notebook])
        if problem:
            results[job.name] = ChapterResult(job.name, job.title, job.kind, "failed", practice_id=job.practice_id,
                                              error=problem, started=started.isoformat(timespec="seconds"),
                                              duration_s=0.0)
            continue
        previous = _read_run_file(out_dir / job.name)
        if (
            not force
            and previous is not None
            and previous.get("status") == "ok"
            and previous.get("fingerprint") == fingerprint
            and previous.get("html")
            and (out_dir / previous["html"]).is_file()
            and previous.get("outputs_sha") == _outputs_sha(out_dir / job.name)  # nothing edited since
        ):
            skipped = _result_from_run_file(previous)
            skipped.status = "skipped"
            skipped.key_findings = _load_findings(out_dir / job.name)
            results[job.name] = skipped
            continue
        to_run.append((job, fingerprint))
    # Longest first (durations of the previous run; unknown ones first): a shorter makespan with --jobs.
    last = {job.name: (_read_run_file(out_dir / job.name) or {}).get("duration_s") for job, _ in to_run}
    to_run.sort(key=lambda item: -(last[item[0].name] if isinstance(last[item[0].name], int | float) else 1e9))

    kernel_folder: Path | None = None
    previous_env = {name: os.environ.get(name)
                    for name in (CACHE_ENV, "JUPYTER_PATH", UNTIL_ENV, WORKERS_ENV, *BLAS_THREAD_ENVS)}
    if to_run:
        kernel_name, kernel_folder, kernel_note = resolve_kernel(kernel_name)
        if kernel_note and progress:
            print(f"backpain report: {kernel_note}", file=sys.stderr)
    try:  # every page of the full report, for each page's navigation bar
        site_pages = _site_pages(plan_jobs(definition, data_dir, chapters=None, practices=practices
                                           if practices is not None and definition.feedback else None))
    except BackpainError:
        site_pages = _site_pages(planned)
    staging_root = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=out_dir))
    os.environ[CACHE_ENV] = str(out_dir / ".cache")  # inherited by the kernels: see cached_analysis_dataset
    if until is not None:
        os.environ[UNTIL_ENV] = until  # read by load_analysis_dataset in every kernel
    else:
        os.environ.pop(UNTIL_ENV, None)
    if kernel_folder is not None:  # the private kernelspec, found by the workers' papermill
        os.environ["JUPYTER_PATH"] = os.pathsep.join(p for p in (str(kernel_folder), previous_env["JUPYTER_PATH"]) if p)
    try:
        if to_run and validate:
            validate_for_report(data_dir)  # invalid data stops here, before any notebook starts
        with tqdm(total=len(planned), desc="report", unit="notebook", file=sys.stderr, disable=not progress) as bar:
            bar.update(len(planned) - len(to_run))
            workers = max(1, min(jobs, len(to_run)))
            # the notebooks running side by side share the cores: worker processes and BLAS threads
            os.environ.update(side_by_side_environment(workers))
            with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                futures = {
                    pool.submit(
                        _execute_job, job, data_dir=data_dir, out_dir=out_dir, staging_root=staging_root,
                        kernel_name=kernel_name, fingerprint=fp, start_timeout=start_timeout,
                        execution_timeout=execution_timeout, pages=site_pages,
                    ): job
                    for job, fp in to_run
                }
                try:
                    for future in as_completed(futures):
                        job = futures[future]
                        try:
                            results[job.name] = future.result()
                        except Exception as exc:  # a runner bug in one job must not lose the others
                            results[job.name] = ChapterResult(job.name, job.title, job.kind, "failed",
                                                              practice_id=job.practice_id,
                                                              error=f"runner: {type(exc).__name__}: {exc}")
                        bar.set_postfix_str(job.name, refresh=False)
                        bar.update(1)
                except BaseException:
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
    finally:
        shutil.rmtree(staging_root, ignore_errors=True)
        shutil.rmtree(out_dir / ".cache", ignore_errors=True)
        if kernel_folder is not None:
            shutil.rmtree(kernel_folder, ignore_errors=True)
        for name, value in previous_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    # Every job of the full definition appears in the index: run now, skipped, or from an earlier run.
    try:
        all_jobs = _with_cutoff(plan_jobs(definition, data_dir, chapters=None,
                                          practices=practices if practices is not None and definition.feedback
                                          else None), until)
    except BackpainError:  # e.g. no practices table: list what this run planned
        all_jobs = list(planned)
    listed: list[ChapterResult] = []
    for job in all_jobs + [j for j in planned if j.name not in {a.name for a in all_jobs}]:
        if job.name in results:
            listed.append(results[job.name])
            continue
        previous = _read_run_file(out_dir / job.name)
        if previous is not None:
            earlier = _result_from_run_file(previous)
            earlier.key_findings = _load_findings(out_dir / job.name)
            if earlier.fingerprint != _job_fingerprint(job, inputs_sha, kernel_label):
                earlier.status = "outdated"  # from an earlier run on other inputs, notebook or parameters
                earlier.error = "not re-run this time; its notebook, parameters or input files have changed since"
            listed.append(earlier)
        else:
            listed.append(ChapterResult(job.name, job.title, job.kind, "not run", practice_id=job.practice_id))

    finished = datetime.now(UTC)
    provenance = {
        "package": "backpain_analysis",
        "version": __version__,
        "python": platform.python_version(),
        "kernel": kernel_label,
        "definition": str(definition.path),
        "data_dir": str(data_dir),
        "output_dir": str(out_dir),
        "input_fingerprint": inputs_sha,
        "input_files": input_files,
        "until": until,
        "parameters": {
            "chapters": list(chapters) if chapters is not None else None,
            "practices": list(practices) if practices is not None else None,
            "jobs": jobs,
            "force": force,
            "notebooks": {job.name: job.parameters for job in planned},
        },
        "started": started.isoformat(timespec="seconds"),
        "finished": finished.isoformat(timespec="seconds"),
        "duration_s": round(time.perf_counter() - t0, 2),
        "run_jobs": [job.name for job in planned if job.name in results and results[job.name].status != "skipped"],
        "chapters": [asdict(r) for r in listed],
    }
    run_json = out_dir / "run.json"
    with atomic_write(run_json) as fh:
        json.dump(provenance, fh, indent=2, default=str)
        fh.write("\n")
    index = out_dir / "index.html"
    with atomic_write(index) as fh:
        fh.write(render_index(definition.title if until is None else f"{definition.title} (data up to {until})",
                              listed, provenance))
    from .presentation.site import report_tables_docx

    report_tables_docx(out_dir, [(r.name, r.html) for r in listed if r.kind == "chapter" and r.ok])
    _disclosure_gate(out_dir)
    return ReportRun(out_dir, listed, provenance, index, run_json)


def _with_cutoff(jobs: list[NotebookJob], until: str | None) -> list[NotebookJob]:
    """The jobs with the data cut-off in their titles (unchanged without one)."""
    if until is None:
        return jobs
    from dataclasses import replace

    return [replace(job, title=f"{job.title} (data up to {until})") for job in jobs]


def _disclosure_gate(out_dir: Path) -> None:
    """Fail the run (:class:`~backpain_analysis.disclosure.DisclosureError`) when the finished report
    shows a count from 1 to 4 or lets a hidden one be recovered (issue 12)."""
    from .disclosure import DisclosureError, check_report, format_findings

    findings = check_report(out_dir)
    if not findings.empty:
        raise DisclosureError(f"the report in {out_dir} is not safe to share: {format_findings(findings)}", findings)


def _remove_leftovers(out_dir: Path) -> None:
    """Remove staging and trash folders left by an interrupted earlier run."""
    leftovers = [*out_dir.glob(f"{_STAGING_PREFIX}*"), *out_dir.rglob(f"{_TRASH_PREFIX}*"), out_dir / ".cache"]
    for path in leftovers:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# index.html
# --------------------------------------------------------------------------------------------

_INDEX_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{ title }}</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 70em; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.ok, .skipped { color: #17652b; } .failed { color: #a11; font-weight: bold; } .not-run, .outdated { color: #777; }
code { font-size: 0.9em; word-break: break-all; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
<p>Generated by backpain_analysis {{ prov.version }} on {{ prov.started }} (UTC) in {{ "%.1f"|format(prov.duration_s) }} s.
{% if n_failed %}<span class="failed">{{ n_failed }} notebook(s) failed: see below.</span>{% endif %}</p>

<h2>Chapters</h2>
{% if not chapters %}<p>No chapters are defined in the report definition.</p>{% else %}
<table>
<tr><th>chapter</th><th>status</th><th>run</th><th>duration</th><th>executed notebook</th></tr>
{% for r in chapters %}
<tr>
<td>{% if r.html %}<a href="{{ r.html }}">{{ r.title }}</a>{% else %}{{ r.title }}{% endif %}</td>
<td class="{{ r.status|replace(' ', '-') }}">{{ r.status }}{% if r.error %}<br><small>{{ r.error }}</small>{% endif %}</td>
<td>{{ r.started or "" }}</td>
<td class="num">{% if r.duration_s is not none %}{{ "%.1f"|format(r.duration_s) }} s{% endif %}</td>
<td>{% if r.notebook %}<a href="{{ r.notebook }}">{{ r.notebook }}</a>{% endif %}</td>
</tr>
{% endfor %}
</table>

<h2>Key findings</h2>
{% for r in chapters %}{% if r.key_findings %}
<h3>{% if r.html %}<a href="{{ r.html }}">{{ r.title }}</a>{% else %}{{ r.title }}{% endif %}</h3>
<table>
<tr><th>finding</th><th>value (95% CI)</th><th>unit</th></tr>
{% for f in r.key_findings %}
<tr><td>{{ f.label or f.name }}</td><td class="num">{{ finding(f) }}</td>
<td>{{ f.unit or "" }}</td></tr>
{% endfor %}
</table>
{% endif %}{% endfor %}
{% endif %}

<h2>Practice feedback reports</h2>
{% if not feedback %}<p>No feedback reports in this run.</p>{% else %}
<table>
<tr><th>practice</th><th>status</th><th>run</th><th>executed notebook</th></tr>
{% for r in feedback %}
<tr>
<td>{% if r.html %}<a href="{{ r.html }}">Practice {{ r.practice_id }}</a>{% else %}Practice {{ r.practice_id }}{% endif %}</td>
<td class="{{ r.status|replace(' ', '-') }}">{{ r.status }}{% if r.error %}<br><small>{{ r.error }}</small>{% endif %}</td>
<td>{{ r.started or "" }}</td>
<td>{% if r.notebook %}<a href="{{ r.notebook }}">{{ r.notebook }}</a>{% endif %}</td>
</tr>
{% endfor %}
</table>
{% endif %}

<h2>Provenance</h2>
<table>
<tr><th>package</th><td>{{ prov.package }} {{ prov.version }} (Python {{ prov.python }}, kernel {{ prov.kernel }})</td></tr>
<tr><th>input data</th><td><code>{{ prov.data_dir }}</code></td></tr>
<tr><th>input fingerprint (sha256)</th><td><code>{{ prov.input_fingerprint }}</code> over {{ prov.input_files|length }} file(s)</td></tr>
<tr><th>report definition</th><td><code>{{ prov.definition }}</code></td></tr>
<tr><th>started</th><td>{{ prov.started }} (UTC)</td></tr>
<tr><th>finished</th><td>{{ prov.finished }} (UTC)</td></tr>
<tr><th>duration</th><td>{{ "%.1f"|format(prov.duration_s) }} s</td></tr>
<tr><th>parameters</th><td><code>{{ params_json }}</code></td></tr>
</table>
<p>The same provenance, with each file's sha256, is in <a href="run.json">run.json</a>.</p>
</body>
</html>
"""


def _fmt(value: Any, reference: Any = None) -> str:
    """Format a key finding number: integers as such, others to 3 significant digits of ``reference``.

    The CI bounds are formatted with the decimals of the estimate, so "11.5 (9.0 to 14.0)".
    """
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    ref = value if reference is None or not isinstance(reference, int | float) else reference
    if isinstance(ref, int) and not isinstance(ref, bool) or float(ref).is_integer() and abs(ref) >= 100:
        return f"{round(value):,}"
    if ref == 0 or not math.isfinite(ref):
        return f"{value:,.2f}"
    decimals = max(0, 2 - math.floor(math.log10(abs(ref))))
    return f"{value:,.{decimals}f}"


def render_index(title: str, results: Iterable[ChapterResult], provenance: dict[str, Any]) -> str:
    """The HTML of ``OUT/index.html`` (links, key findings, provenance).

    The page is offline and carries the report's navigation bar
    (:func:`presentation.site.postprocess_page`); key findings are formatted as the tables are
    (:func:`presentation.format_finding`: decimals by unit, ``estimate (lower to upper)``).
    """
    import jinja2

    from .presentation import format_finding
    from .presentation.site import postprocess_page

    results = list(results)
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    template = env.from_string(_INDEX_TEMPLATE)
    html = template.render(
        title=title,
        chapters=[r for r in results if r.kind == "chapter"],
        feedback=[r for r in results if r.kind == "feedback"],
        n_failed=sum(r.status == "failed" for r in results),
        prov=provenance,
        params_json=json.dumps(provenance["parameters"], sort_keys=True),
        fmt=_fmt,
        finding=format_finding,
    )
    pages = [(r.title if r.kind == "chapter" else f"Feedback: practice {r.practice_id}",
              f"{r.name}/{r.name.rsplit('/', 1)[-1]}.html") for r in results]
    return postprocess_page(html, pages=pages, current="index.html")


# --------------------------------------------------------------------------------------------
# Keeping committed notebooks clean
# --------------------------------------------------------------------------------------------


def _is_checked_cell(cell: Any) -> bool:
    if cell.get("cell_type") != "code":
        return False
    source = cell.get("source", "")
    source = "".join(source) if isinstance(source, list) else source
    first = source.lstrip().splitlines()[0] if source.strip() else ""
    return CHECK_MARKER in first or CHECK_TAG in cell.get("metadata", {}).get("tags", [])


def strip_notebook_outputs(path: str | Path, *, write: bool = True) -> bool:
    """Keep only the outputs nbval checks in a source notebook.

    Removes the outputs of every code cell that is not marked ``# NBVAL_CHECK_OUTPUT`` (first
    line) or tagged ``nbval-check-output``, removes stderr from checked cells, sets the
    ``execution_count`` of every other cell to null and drops papermill / execution metadata.
    Checked cells with outputs keep an ``execution_count``: nbval treats a cell without one as
    never run and fails when such a cell has outputs ("Unrun reference cell has outputs").

    Parameters
    ----------
    path : str or Path
        The notebook file (rewritten in place when ``write``).
    write : bool
        Write the cleaned notebook back (atomically).

    Returns
    -------
    bool
        True when something was (or would be) removed.

    Examples
    --------
    >>> import nbformat, tempfile, pathlib
    >>> nb = nbformat.v4.new_notebook()
    >>> nb.cells = [nbformat.v4.new_code_cell("print(1)", execution_count=3,
    ...     outputs=[nbformat.v4.new_output("stream", name="stdout", text="1\\n")])]
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.ipynb"
    >>> nbformat.write(nb, p)
    >>> strip_notebook_outputs(p), nbformat.read(p, as_version=4).cells[0].outputs
    (True, [])
    """
    import nbformat

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    before = nbformat.writes(nb)
    for cell in nb.cells:
        for key in ("execution", "papermill"):
            cell.metadata.pop(key, None)
        if cell.metadata.get("tags") == []:
            del cell.metadata["tags"]
        if cell.cell_type != "code":
            continue
        if _is_checked_cell(cell):
            cell.outputs = [o for o in cell.outputs if not (o.get("output_type") == "stream" and o.get("name") == "stderr")]
            # nbval compares only cells that were run: a checked cell with outputs keeps a count.
            if not cell.outputs:
                cell.execution_count = None
            elif cell.execution_count is None:
                cell.execution_count = 1
        else:
            cell.outputs = []
            cell.execution_count = None
    nb.metadata.pop("papermill", None)
    after = nbformat.writes(nb)
    changed = after != before
    if changed and write:
        with atomic_write(path) as fh:
            fh.write(after)
    return changed


def refresh_checked_outputs(path: str | Path, *, kernel_name: str = DEFAULT_KERNEL, start_timeout: int = 180) -> None:
    """Execute a source notebook with its defaults and keep only the outputs nbval checks.

    Runs papermill (no parameters, ``cwd`` = the notebook's folder) into a temporary file, then
    writes it back over ``path`` after :func:`strip_notebook_outputs`. Use after the data or the
    analysis changed, so that ``# NBVAL_CHECK_OUTPUT`` cells show the current headline numbers.
    Raises papermill's ``PapermillExecutionError`` (and leaves ``path`` untouched) when a cell fails.
    """
    import papermill

    path = Path(path).resolve()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".ipynb", dir=path.parent)
    os.close(fd)
    try:
        papermill.execute_notebook(str(path), tmp, kernel_name=kernel_name, cwd=str(path.parent), progress_bar=False,
                                   start_timeout=start_timeout, extra_arguments=["--IPKernelApp.log_level=CRITICAL"])
        strip_notebook_outputs(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _parameter_cell_problems(source: str) -> list[str]:
    """Every statement of a parameters cell must assign a JSON-like literal to a name."""
    import ast

    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        return [f"not valid Python: {exc}"]
    problems = []
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else getattr(
            node, "target", None)
        value = getattr(node, "value", None)
        if not isinstance(node, ast.Assign | ast.AnnAssign) or not isinstance(target, ast.Name) or value is None:
            problems.append(f"line {node.lineno}: only 'name = literal' assignments belong here")
            continue
        try:
            literal = ast.literal_eval(value)
        except ValueError:
            problems.append(f"line {node.lineno}: {target.id} is computed; derive values in the next cell")
            continue
        if not _is_json_like(literal):
            problems.append(f"line {node.lineno}: {target.id} = {literal!r} is not JSON-like")
    return problems


def notebook_problems(path: str | Path) -> list[str]:
    """What is wrong with a committed source notebook (empty list: nothing).

    Checks: the kernelspec is ``backpain``; exactly one cell tagged ``parameters``, holding only
    ``name = literal`` assignments (JSON-like values, nothing derived) and declaring ``data_dir``
    and ``output_dir``; no outputs except on ``# NBVAL_CHECK_OUTPUT`` cells (and no stderr there);
    no execution counts except on checked cells with outputs, which need one for nbval.
    """
    import nbformat

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    problems = []
    kernel = nb.metadata.get("kernelspec", {}).get("name")
    if kernel != DEFAULT_KERNEL:
        problems.append(f"{path.name}: kernelspec name is {kernel!r}; should be {DEFAULT_KERNEL!r} (JupyterLab, nbval)")
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        problems.append(f"{path.name}: {len(tagged)} cells tagged 'parameters' (cells {tagged}); needs exactly one")
    else:
        problems += [f"{path.name}: parameters cell: {p}" for p in _parameter_cell_problems(nb.cells[tagged[0]].source)]
        if kernel:
            import papermill

            declared = papermill.inspect_notebook(str(path))
            missing = [p for p in RUNNER_PARAMETERS if p not in declared]
            if missing:
                problems.append(f"{path.name}: the parameters cell does not declare {missing}")
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        checked = _is_checked_cell(cell)
        if cell.outputs and not checked:
            problems.append(f"{path.name}: cell {i} has outputs but is not marked # NBVAL_CHECK_OUTPUT")
        elif cell.outputs and cell.get("execution_count") is None:
            problems.append(f"{path.name}: checked cell {i} has outputs but no execution_count (nbval would fail)")
        if cell.get("execution_count") is not None and not (checked and cell.outputs):
            problems.append(f"{path.name}: cell {i} has execution_count {cell.execution_count} (should be null)")
        if any(o.get("output_type") == "stream" and o.get("name") == "stderr" for o in cell.outputs):
            problems.append(f"{path.name}: cell {i} keeps stderr output")
    return problems


def _main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m backpain_analysis.report",
        description="Keep committed notebooks clean: 'strip' removes outputs nbval does not check; 'check' lists "
        "problems; 'refresh' re-executes with the defaults and keeps only the checked outputs.",
    )
    parser.add_argument("action", choices=["strip", "check", "refresh"])
    parser.add_argument("notebooks", nargs="+", type=Path)
    args = parser.parse_args(argv)
    status = 0
    for path in args.notebooks:
        if args.action == "strip":
            if strip_notebook_outputs(path):
                print(f"stripped {path}")
        elif args.action == "refresh":
            refresh_checked_outputs(path)
            print(f"refreshed {path}")
        else:
            for problem in notebook_problems(path):
                print(problem)
                status = 1
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(_main())
