"""The report runner, index.html / run.json, skipping and failure isolation, and notebook hygiene.

Most tests drive tiny throwaway notebooks written with nbformat into tmp_path (a few seconds each
on the ``backpain`` kernel); ``test_full_report_*`` runs the real report definition on a small
generated study once per session.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from backpain_analysis import cli
from backpain_analysis import report as rpt
from backpain_analysis.disclosure import small_count_cells
from backpain_analysis.errors import BackpainError
from backpain_analysis.report import (
    ReportDefinitionError,
    load_report_definition,
    notebook_problems,
    run_report,
    strip_notebook_outputs,
)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"

PARAMS = 'data_dir: str = "../data"  # study folder\noutput_dir: str = "../out"  # report folder\nseed: int = 1  # seed'

GOOD = """\
from backpain_analysis.outputs import ChapterOutputs
import pandas as pd
out = ChapterOutputs(output_dir, "{name}")
out.table(pd.DataFrame({{"estimate": [seed]}}), "result")
out.finding("answer", 0.7123, ci_low=0.06, ci_high=1.36, label="Answer of {name}", unit="points")
out.write_findings()
print("SOURCE_MARKER_PRINTED", seed)
"""

FAILING = """\
from backpain_analysis.outputs import ChapterOutputs
import pandas as pd
out = ChapterOutputs(output_dir, "{name}")
out.table(pd.DataFrame({{"estimate": [1]}}), "written_before_failure")
raise ValueError("deliberate failure in {name}")
"""

FEEDBACK = """\
from backpain_analysis.outputs import ChapterOutputs
out = ChapterOutputs(output_dir, f"feedback/practice_{practice_id}")
out.finding("uptake", 0.5, label="uptake")
out.write_findings()
print("practice", practice_id)
"""


def write_notebook(path: Path, body: str, params: str = PARAMS) -> Path:
    nb = nbformat.v4.new_notebook()
    param_cell = nbformat.v4.new_code_cell(params)
    param_cell.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# A chapter"), param_cell, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "backpain", "display_name": "Python (backpain)", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


@pytest.fixture
def tiny(tmp_path):
    """A tiny study folder and report definition with two good chapters and a feedback notebook."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "practices.csv").write_text("practice_id,practice_name\nP01,North\nP02,South\n")
    (data / "patients.csv").write_text("patient_id,practice_id\nPT0001,P01\n")
    nbdir = tmp_path / "nb"
    write_notebook(nbdir / "a.ipynb", GOOD.format(name="01_a"))
    write_notebook(nbdir / "b.ipynb", GOOD.format(name="02_b"))
    fb_params = 'data_dir: str = "../data"\noutput_dir: str = "../out"\npractice_id: str = "P01"  # practice'
    write_notebook(nbdir / "fb.ipynb", FEEDBACK, params=fb_params)
    definition = nbdir / "report.yaml"
    definition.write_text(
        "title: Tiny report\n"
        "chapters:\n"
        "  - {name: 01_a, notebook: a.ipynb, title: Chapter A, parameters: {seed: 7}}\n"
        "  - {name: 02_b, notebook: b.ipynb, title: Chapter B}\n"
        "feedback: {notebook: fb.ipynb, title: Feedback}\n"
    )
    return {"data": data, "out": tmp_path / "out", "definition": definition, "nbdir": nbdir}


def run(tiny, **kwargs):
    kwargs.setdefault("jobs", 2)
    kwargs.setdefault("validate", False)  # the tiny study is no real study
    cwd = os.getcwd()
    result = run_report(tiny["data"], tiny["out"], definition=tiny["definition"], progress=False, **kwargs)
    # papermill chdirs the whole process while a notebook runs: the runner must not leak that
    assert os.getcwd() == cwd
    return result


# ------------------------------------------------------------------------------------------
# The definition
# ------------------------------------------------------------------------------------------


def test_repository_definition_parses_and_names_existing_notebooks():
    definition = load_report_definition()
    assert definition.feedback is not None and definition.feedback.name == "feedback"
    assert definition.feedback.output_name("P07") == "feedback/practice_P07"
    for spec in [*definition.chapters, definition.feedback]:
        assert spec.notebook.parent == NOTEBOOKS


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("chapters:\n  - {name: a, notebook: a.ipynb, parameters: {data_dir: x}}\n", "set by the runner"),
        ("chapters:\n  - {name: a, notebook: a.ipynb, parameters: {when: 2024-01-01}}\n", "not JSON-like"),
        ("chapters:\n  - {name: a, notebook: a.ipynb}\n  - {name: a, notebook: b.ipynb}\n", "listed twice"),
        ("chapters:\n  - {name: ../a, notebook: a.ipynb}\n", "folder name"),
        ("chapters:\n  - {name: a}\n", "needs at least 'name' and 'notebook'"),
        ("chapter: []\n", "unknown top-level keys"),
        ("feedback: {notebook: f.ipynb, parameters: {practice_id: P01}}\n", "set per practice"),
    ],
)
def test_bad_definitions_raise_clear_errors(tmp_path, yaml_text, message):
    path = tmp_path / "report.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ReportDefinitionError, match=re.escape(message)):
        load_report_definition(path)


# ------------------------------------------------------------------------------------------
# Running
# ------------------------------------------------------------------------------------------


def test_run_writes_chapters_feedback_index_and_provenance(tiny):
    result = run(tiny)
    out = tiny["out"]
    assert {r.name: r.status for r in result.results} == {
        "01_a": "ok",
        "02_b": "ok",
        "feedback/practice_P01": "ok",
        "feedback/practice_P02": "ok",
    }
    assert not result.failed
    for name, stem in [("01_a", "01_a"), ("02_b", "02_b"), ("feedback/practice_P02", "practice_P02")]:
        folder = out / name
        for file in (f"{stem}.html", f"{stem}.ipynb", "_run.json", "key_findings.json"):
            assert (folder / file).is_file(), folder / file
    assert pd.read_csv(out / "01_a" / "tables" / "result.csv")["estimate"].tolist() == [7]  # parameter override
    assert pd.read_csv(out / "02_b" / "tables" / "result.csv")["estimate"].tolist() == [1]  # notebook default

    html = (out / "01_a" / "01_a.html").read_text()
    assert "SOURCE_MARKER_PRINTED 7" in html  # outputs are shown ...
    assert "ChapterOutputs" not in html  # ... code is not
    assert not list(out.glob(".staging-*"))

    index = (out / "index.html").read_text()
    for link in ("01_a/01_a.html", "02_b/02_b.html", "feedback/practice_P01/practice_P01.html",
                 "feedback/practice_P02/practice_P02.html", "run.json"):
        assert f'href="{link}"' in index
    # key findings use the tables' rules (presentation.format_finding): "points" to 2 decimals
    assert "Answer of 01_a" in index and "0.71 (0.06 to 1.36)" in index

    prov = json.loads((out / "run.json").read_text())
    combined, files = rpt.fingerprint_inputs(tiny["data"])
    assert prov["input_fingerprint"] == combined and set(files) == {"practices.csv", "patients.csv"}
    assert prov["version"] and prov["started"] and prov["duration_s"] >= 0
    assert prov["parameters"]["notebooks"]["01_a"] == {"seed": 7}
    assert {c["name"]: c["status"] for c in prov["chapters"]}["02_b"] == "ok"
    assert combined in index


def test_failing_chapter_is_isolated_and_reported(tiny, monkeypatch, capsys):
    write_notebook(tiny["nbdir"] / "b.ipynb", FAILING.format(name="02_b"))
    result = run(tiny)
    status = {r.name: r.status for r in result.results}
    assert status == {"01_a": "ok", "02_b": "failed", "feedback/practice_P01": "ok", "feedback/practice_P02": "ok"}
    failed = result.failed[0]
    # cell 3 of the executed notebook: markdown, parameters, injected parameters, the failing cell
    assert failed.cell_index == 3 and failed.ename == "ValueError" and "deliberate failure in 02_b" in failed.evalue
    # the partly executed notebook is kept and linked
    partial = nbformat.read(tiny["out"] / failed.notebook, as_version=4)
    assert any(o.get("ename") == "ValueError" for c in partial.cells if c.cell_type == "code" for o in c.outputs)
    index = (tiny["out"] / "index.html").read_text()
    assert 'href="02_b/02_b.ipynb"' in index and "failed" in index
    assert json.loads((tiny["out"] / "02_b" / "_run.json").read_text())["status"] == "failed"

    # the command: non-zero exit naming the chapter and the cell error
    monkeypatch.setattr(rpt, "DEFAULT_DEFINITION", tiny["definition"])
    monkeypatch.setattr(rpt, "validate_for_report", lambda data_dir: None)  # the tiny study is no real study
    code = cli.main(["report", "--data", str(tiny["data"]), "--out", str(tiny["out"]), "--jobs", "2",
                     "--chapters", "02_b"])
    err = capsys.readouterr().err
    assert code == cli.EXIT_FAILED
    assert "chapter 02_b failed: cell 3 of 02_b.ipynb: ValueError: deliberate failure in 02_b" in err


def test_unknown_parameter_fails_that_chapter_without_running_it(tiny):
    text = tiny["definition"].read_text().replace("{seed: 7}", "{seed: 7, n_boot: 10}")
    tiny["definition"].write_text(text)
    result = run(tiny, chapters=["01_a", "02_b"])
    by_name = {r.name: r for r in result.results}
    assert by_name["01_a"].status == "failed" and "['n_boot']" in by_name["01_a"].error
    assert by_name["01_a"].notebook is None  # not executed
    assert by_name["02_b"].status == "ok"


def test_unchanged_chapters_are_skipped_and_force_reruns(tiny):
    first = run(tiny)
    assert all(r.status == "ok" for r in first.results)
    stamp = (tiny["out"] / "01_a" / "_run.json").read_text()

    second = run(tiny)
    assert {r.status for r in second.results} == {"skipped"}
    assert (tiny["out"] / "01_a" / "_run.json").read_text() == stamp
    assert second.results[0].key_findings[0]["name"] == "answer"  # the index still shows findings
    assert "Answer of 01_a" in (tiny["out"] / "index.html").read_text()

    # a changed notebook re-runs only that chapter
    write_notebook(tiny["nbdir"] / "b.ipynb", GOOD.format(name="02_b") + "print('changed')\n")
    third = run(tiny)
    assert {r.name: r.status for r in third.results}["02_b"] == "ok"
    assert {r.name: r.status for r in third.results}["01_a"] == "skipped"

    # changed input data re-runs everything
    (tiny["data"] / "patients.csv").write_text("patient_id,practice_id\nPT0001,P02\n")
    fourth = run(tiny)
    assert {r.status for r in fourth.results} == {"ok"}

    fifth = run(tiny, force=True, chapters=["01_a"])
    assert {r.name: r.status for r in fifth.results}["01_a"] == "ok"
    assert fifth.provenance["run_jobs"] == ["01_a"]

    # a chapter not selected after its notebook changed is listed as outdated, not as ok
    write_notebook(tiny["nbdir"] / "b.ipynb", GOOD.format(name="02_b") + "print('changed again')\n")
    sixth = run(tiny, chapters=["01_a"])
    assert {r.name: r.status for r in sixth.results}["02_b"] == "outdated"
    assert {r.name: r.status for r in sixth.results}["01_a"] == "skipped"


def test_chapter_and_practice_selection(tiny):
    result = run(tiny, chapters=["02_b"], practices=["P02"])
    ran = set(result.provenance["run_jobs"])
    assert ran == {"02_b", "feedback/practice_P02"}
    statuses = {r.name: r.status for r in result.results}
    assert statuses["01_a"] == "not run" and statuses["02_b"] == "ok"
    with pytest.raises(BackpainError, match=r"P99"):
        run(tiny, practices=["P99"])
    with pytest.raises(ReportDefinitionError, match="unknown chapter"):
        run(tiny, chapters=["03_missing"])


def test_failed_rerun_replaces_the_old_folder_as_a_whole(tiny):
    run(tiny, chapters=["02_b"])
    assert (tiny["out"] / "02_b" / "tables" / "result.csv").is_file()
    write_notebook(tiny["nbdir"] / "b.ipynb", FAILING.format(name="02_b"))
    run(tiny, chapters=["02_b"])
    folder = tiny["out"] / "02_b"
    # no mix of old complete outputs and new partial ones: the old table and findings are gone
    assert not (folder / "tables" / "result.csv").exists()
    assert not (folder / "key_findings.json").exists()
    assert (folder / "tables" / "written_before_failure.csv").is_file()
    assert json.loads((folder / "_run.json").read_text())["status"] == "failed"


def test_leftovers_of_an_interrupted_run_are_removed(tiny):
    stale = tiny["out"] / ".staging-abc" / "01_a"
    stale.mkdir(parents=True)
    (stale / "key_findings.json").write_text("[]")
    run(tiny, chapters=["01_a"])
    assert not (tiny["out"] / ".staging-abc").exists()


def test_missing_data_folder_is_bad_input(tmp_path, capsys, monkeypatch):
    code = cli.main(["report", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "out")])
    assert code == cli.EXIT_BAD_INPUT
    assert "does not exist" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------
# Committed notebooks and nbval
# ------------------------------------------------------------------------------------------


def test_strip_keeps_only_checked_outputs(tmp_path):
    nb = nbformat.v4.new_notebook()
    stdout = nbformat.v4.new_output("stream", name="stdout", text="RMDQ difference: 0.71\n")
    stderr = nbformat.v4.new_output("stream", name="stderr", text="a warning\n")
    checked = nbformat.v4.new_code_cell("# NBVAL_CHECK_OUTPUT\nprint(x)", execution_count=4, outputs=[stdout, stderr])
    other = nbformat.v4.new_code_cell("df", execution_count=5, outputs=[stdout])
    params = nbformat.v4.new_code_cell('data_dir = "../data/synthetic"\noutput_dir = "../reports"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, checked, other]
    nb.metadata["kernelspec"] = {"name": "backpain", "display_name": "Python (backpain)", "language": "python"}
    path = tmp_path / "x.ipynb"
    nbformat.write(nb, path)
    assert notebook_problems(path)  # execution counts, outputs, stderr
    assert strip_notebook_outputs(path) is True
    cleaned = nbformat.read(path, as_version=4)
    assert [o.text for o in cleaned.cells[1].outputs] == ["RMDQ difference: 0.71\n"]
    assert cleaned.cells[2].outputs == [] and cleaned.cells[2].execution_count is None
    assert cleaned.cells[1].execution_count == 4  # nbval compares only cells with a count
    assert notebook_problems(path) == []
    assert strip_notebook_outputs(path) is False


def test_notebook_problems_flags_parameter_cells(tmp_path):
    path = write_notebook(tmp_path / "x.ipynb", "print(1)", params="seed = 1")
    assert any("does not declare ['data_dir', 'output_dir']" in p for p in notebook_problems(path))
    derived = write_notebook(tmp_path / "y.ipynb", "print(1)",
                             params=PARAMS + "\nfigures_dir = output_dir + '/figures'\nfrom pathlib import Path")
    problems = notebook_problems(derived)
    assert any("figures_dir is computed" in p for p in problems), problems
    assert any("only 'name = literal' assignments" in p for p in problems), problems
    assert not any("seed" in p for p in problems)
    nb = nbformat.read(path, as_version=4)
    nb.cells[2].metadata["tags"] = ["parameters"]
    nbformat.write(nb, path)
    assert any("2 cells tagged 'parameters'" in p for p in notebook_problems(path))


COMMITTED = sorted(NOTEBOOKS.glob("*.ipynb"))


@pytest.mark.parametrize("path", COMMITTED, ids=[p.name for p in COMMITTED])
def test_committed_notebooks_are_clean(path):
    assert notebook_problems(path) == []


def test_nbval_ignores_stderr_with_the_notebooks_conftest(tmp_path):
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir(exist_ok=True)
    shutil.copy(NOTEBOOKS / "conftest.py", nbdir / "conftest.py")
    code = "# NBVAL_CHECK_OUTPUT\nimport sys, time\nprint('headline: 0.71')\nprint(time.time(), file=sys.stderr)"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(code, execution_count=1, outputs=[
        nbformat.v4.new_output("stream", name="stdout", text="headline: 0.71\n"),
        nbformat.v4.new_output("stream", name="stderr", text="1.0\n"),
    ])]
    nbformat.write(nb, nbdir / "check.ipynb")
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
            "--nbval-kernel-name", "backpain", "-o", "addopts=", "--rootdir", str(tmp_path), str(nbdir)]
    ok = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # and a changed headline number on stdout is still caught
    nb.cells[0].source = code.replace("0.71", "0.72")
    nbformat.write(nb, nbdir / "check.ipynb")
    bad = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode != 0


# ------------------------------------------------------------------------------------------
# The real report on a small generated study (once per session)
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def full_report(tmp_path_factory):
    synthetic = pytest.importorskip("backpain_analysis.synthetic")
    pytest.importorskip("backpain_analysis.dataset")
    definition = load_report_definition()
    if not (definition.feedback and definition.feedback.notebook.is_file()):
        pytest.skip("the feedback notebook does not exist yet")
    base = tmp_path_factory.mktemp("full")
    study = synthetic.generate_study(n_invited=300, seed=1)
    study.write(base / "data")
    result = run_report(base / "data", base / "out", jobs=2, progress=False)
    return {"data": base / "data", "out": base / "out", "result": result, "definition": definition}


def test_full_report_every_listed_chapter_succeeds(full_report):
    result, definition = full_report["result"], full_report["definition"]
    assert [r.name for r in result.failed] == [], result.failure_summary()
    index = (full_report["out"] / "index.html").read_text()
    for chapter in definition.chapters:
        assert f'href="{chapter.name}/{chapter.name}.html"' in index
    practices = rpt.study_practice_ids(full_report["data"])
    for pid in practices:
        assert f'href="feedback/practice_{pid}/practice_{pid}.html"' in index


def test_full_report_html_shows_no_patient_id(full_report):
    ids = set(pd.read_csv(full_report["data"] / "patients.csv", dtype=str)["patient_id"].dropna())
    assert ids
    pattern = re.compile("|".join(re.escape(i) for i in sorted(ids, key=len, reverse=True)))
    html_files = list(full_report["out"].rglob("*.html"))
    assert len(html_files) > 1
    for path in html_files:
        text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", path.read_text())  # figures are not text
        if "feedback" in path.parts:
            assert "patient_id" not in text, path  # feedback reports do not even name the column
        hits = set(pattern.findall(text))
        assert not hits, f"{path}: patient ids {sorted(hits)[:5]}"


def test_full_report_feedback_tables_show_no_small_counts(full_report):
    tables = list((full_report["out"] / "feedback").rglob("tables/*.csv"))
    assert tables, "the feedback notebook writes its tables"
    for path in tables:
        table = pd.read_csv(path)
        count_columns = [c for c in table.columns if c.startswith(("n_", "events", "count")) or c == "n"]
        assert small_count_cells(table, count_columns) == [], path


def test_cached_analysis_dataset_builds_once_per_input(tmp_path, monkeypatch):
    import backpain_analysis.dataset as dataset_module

    calls = []

    def fake_load(data_dir):
        calls.append(data_dir)
        return ("clean", pd.DataFrame({"x": [len(calls)]}))

    monkeypatch.setattr(dataset_module, "load_analysis_dataset", fake_load)
    data = tmp_path / "data"
    data.mkdir()
    (data / "practices.csv").write_text("practice_id\nP01\n")
    monkeypatch.delenv(rpt.CACHE_ENV, raising=False)
    rpt.cached_analysis_dataset(data)
    rpt.cached_analysis_dataset(data)
    assert len(calls) == 2  # no cache outside a report run

    monkeypatch.setenv(rpt.CACHE_ENV, str(tmp_path / "cache"))
    first = rpt.cached_analysis_dataset(data)
    second = rpt.cached_analysis_dataset(data)
    assert len(calls) == 3 and second[1]["x"].tolist() == first[1]["x"].tolist() == [3]
    (data / "practices.csv").write_text("practice_id\nP02\n")  # changed input: rebuilt
    assert rpt.cached_analysis_dataset(data)[1]["x"].tolist() == [4]


def test_refresh_checked_outputs_reexecutes_and_keeps_only_checked(tmp_path):
    path = write_notebook(tmp_path / "r.ipynb", "# NBVAL_CHECK_OUTPUT\nprint(f'headline: {seed * 2:.1f}')")
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("print('not checked')"))
    nbformat.write(nb, path)
    rpt.refresh_checked_outputs(path)
    cleaned = nbformat.read(path, as_version=4)
    assert [o.text for o in cleaned.cells[2].outputs] == ["headline: 2.0\n"]
    assert cleaned.cells[2].execution_count is not None
    assert cleaned.cells[3].outputs == [] and cleaned.cells[3].execution_count is None
    assert "papermill" not in cleaned.metadata
    assert notebook_problems(path) == []


# ------------------------------------------------------------------------------------------
# Issue 14: outputs in the fingerprint, the kernel, validation first, scratch output folders
# ------------------------------------------------------------------------------------------


def test_tampered_chapter_folder_is_rerun(tiny):
    first = run(tiny, chapters=["01_a", "02_b"])
    assert {r.status for r in first.results if r.kind == "chapter"} == {"ok"}
    assert first.results[0].outputs_sha and len(first.results[0].outputs_sha) == 64
    # an interactive run (or a hand edit) changes a table of 01_a: the folder no longer matches its HTML
    table = tiny["out"] / "01_a" / "tables" / "result.csv"
    table.write_text("estimate\n999\n")
    second = run(tiny, chapters=["01_a", "02_b"])
    status = {r.name: r.status for r in second.results}
    assert status["01_a"] == "ok" and status["02_b"] == "skipped"
    assert table.read_text() == "estimate\n7\n"  # rewritten by the re-run (seed 7 from report.yaml)
    # an extra file counts too
    (tiny["out"] / "02_b" / "tables" / "stray.csv").write_text("x\n1\n")
    third = run(tiny, chapters=["01_a", "02_b"])
    assert {r.name: r.status for r in third.results}["02_b"] == "ok"


def test_outputs_sha_depends_on_names_and_contents(tmp_path):
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "a.csv").write_text("1")
    (tmp_path / rpt.RUN_FILE).write_text("{}")
    base = rpt._outputs_sha(tmp_path)
    (tmp_path / rpt.RUN_FILE).write_text('{"changed": 1}')  # its own record is not part of it
    assert rpt._outputs_sha(tmp_path) == base
    (tmp_path / "tables" / "a.csv").write_text("2")
    assert rpt._outputs_sha(tmp_path) != base
    (tmp_path / "tables" / "a.csv").write_text("1")
    assert rpt._outputs_sha(tmp_path) == base
    (tmp_path / "tables" / "a.csv").rename(tmp_path / "tables" / "b.csv")
    assert rpt._outputs_sha(tmp_path) != base


def test_default_kernel_is_this_environment(monkeypatch, tmp_path):
    """Without a backpain kernel for this Python, a private kernelspec runs sys.executable."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    def missing(self, name):
        raise NoSuchKernel(name)

    monkeypatch.setattr(KernelSpecManager, "get_kernel_spec", missing)
    name, folder, note = rpt.resolve_kernel()
    try:
        assert name == "backpain" and folder is not None and "no 'backpain' Jupyter kernel" in note
        spec = json.loads((folder / "kernels" / "backpain" / "kernel.json").read_text())
        assert spec["argv"][:3] == [sys.executable, "-m", "ipykernel_launcher"]
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_registered_kernel_of_this_environment_is_used(monkeypatch):
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager

    monkeypatch.setattr(KernelSpecManager, "get_kernel_spec",
                        lambda self, name: KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher"]))
    assert rpt.resolve_kernel() == ("backpain", None, None)
    # a backpain kernel of another environment is not used
    monkeypatch.setattr(KernelSpecManager, "get_kernel_spec",
                        lambda self, name: KernelSpec(argv=["/elsewhere/bin/python", "-m", "ipykernel_launcher"]))
    name, folder, note = rpt.resolve_kernel()
    shutil.rmtree(folder, ignore_errors=True)
    assert "another Python (/elsewhere/bin/python)" in note


def test_missing_named_kernel_is_one_error_before_any_notebook(tiny):
    with pytest.raises(rpt.KernelError, match="'no-such-kernel' is not installed"):
        run(tiny, kernel_name="no-such-kernel")
    assert not (tiny["out"] / "01_a").exists() and not (tiny["out"] / "02_b").exists()


def test_report_runs_without_a_registered_backpain_kernel(tiny, monkeypatch):
    """The runner's private kernelspec really starts (the NoSuchKernel-per-notebook failure of issue 14)."""
    from jupyter_client.kernelspec import KernelSpecManager

    real = KernelSpecManager.get_kernel_spec
    calls = []

    def hide_registered(self, name):
        calls.append(name)
        if len(calls) == 1:  # resolve_kernel's look-up: pretend make never registered one
            from jupyter_client.kernelspec import NoSuchKernel

            raise NoSuchKernel(name)
        return real(self, name)

    monkeypatch.setattr(KernelSpecManager, "get_kernel_spec", hide_registered)
    result = run(tiny, chapters=["01_a"], jobs=1)
    assert {r.name: r.status for r in result.results}["01_a"] == "ok", result.failure_summary()
    assert "JUPYTER_PATH" not in os.environ or "backpain-kernel-" not in os.environ["JUPYTER_PATH"]


def test_invalid_study_stops_the_report_before_any_notebook(tiny, capsys, monkeypatch):
    monkeypatch.setattr(rpt, "DEFAULT_DEFINITION", tiny["definition"])
    code = cli.main(["report", "--data", str(tiny["data"]), "--out", str(tiny["out"]), "--chapters", "01_a"])
    out = capsys.readouterr()
    assert code == cli.EXIT_BAD_INPUT
    assert "INVALID" in out.out and "patients.csv" in out.out and out.out.count("Problems (") == 1
    assert "no notebook was run" in out.err
    assert not (tiny["out"] / "01_a").exists()


def test_notebooks_default_to_a_scratch_output_folder(monkeypatch, tmp_path):
    import papermill

    from backpain_analysis.outputs import SCRATCH_ENV, ChapterOutputs, scratch_dir

    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        assert papermill.inspect_notebook(str(path))["output_dir"]["default"] in ('""', "''"), path.name
    monkeypatch.setenv(SCRATCH_ENV, str(tmp_path / "scratch"))
    out = ChapterOutputs("", "05_patient_outcomes")
    assert out.root == tmp_path / "scratch" / "05_patient_outcomes"
    monkeypatch.delenv(SCRATCH_ENV)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert scratch_dir() == tmp_path / "home" / ".cache" / "backpain" / "scratch"
    assert ChapterOutputs("~/r", "x").root == tmp_path / "home" / "r" / "x"


def test_nbval_runs_write_to_a_temporary_scratch_folder():
    """notebooks/conftest.py points BACKPAIN_SCRATCH at a temporary folder and guards reports/."""
    text = (NOTEBOOKS / "conftest.py").read_text()
    assert "BACKPAIN_SCRATCH" in text and "reports" in text and "session.exitstatus = 1" in text


def test_bundled_files_resolve_through_importlib_resources():
    from backpain_analysis import _resources
    from backpain_analysis.dictionary import default_dictionary_path
    from backpain_analysis.economics import DEFAULT_UNIT_COSTS

    assert default_dictionary_path().is_file() and DEFAULT_UNIT_COSTS.is_file()
    assert rpt.DEFAULT_DEFINITION.is_file()
    names = {p.name for p in _resources.bundled_notebooks()}
    assert {spec.notebook.name for spec in load_report_definition().chapters} <= names
    with pytest.raises(BackpainError, match="reinstall"):
        _resources.data_file("no_such_file.yaml")


def test_copy_notebooks_sets_data_dir_and_keeps_existing(tmp_path):
    study = tmp_path / "my study"
    study.mkdir()
    written = cli.copy_notebooks(tmp_path / "nb", data=str(study))
    assert {p.name for p in written} >= {"report.yaml", "05_patient_outcomes.ipynb"}
    import papermill

    params = papermill.inspect_notebook(str(tmp_path / "nb" / "05_patient_outcomes.ipynb"))
    assert params["data_dir"]["default"] == json.dumps(str(study.resolve()))
    assert params["output_dir"]["default"] in ('""', "''")
    (tmp_path / "nb" / "02_cohort.ipynb").write_text("mine")
    assert cli.copy_notebooks(tmp_path / "nb") == []  # existing files kept
    assert (tmp_path / "nb" / "02_cohort.ipynb").read_text() == "mine"
    # the copied report.yaml still points at the copied notebooks
    assert all(c.notebook.is_file() for c in load_report_definition(tmp_path / "nb" / "report.yaml").chapters)


def test_same_error_in_every_notebook_is_reported_once(tmp_path, monkeypatch, capsys):
    failed = [rpt.ChapterResult(n, n, "chapter", "failed", error="DeadKernelError: Kernel died") for n in ("a", "b", "c")]
    fake = rpt.ReportRun(tmp_path, failed, {"run_jobs": ["a", "b", "c"]}, tmp_path / "index.html", tmp_path / "run.json")
    monkeypatch.setattr(rpt, "run_report", lambda *a, **k: fake)
    (tmp_path / "data").mkdir()
    code = cli.main(["report", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == cli.EXIT_FAILED
    assert err.count("DeadKernelError") == 1 and "all 3 notebooks" in err


def test_lab_copies_notebooks_and_uses_this_environment(tmp_path, capsys):
    code = cli.main(["lab", str(tmp_path / "nb"), "--dry-run"])
    out = capsys.readouterr().out
    assert code == cli.EXIT_OK
    assert (tmp_path / "nb" / "05_patient_outcomes.ipynb").is_file()
    assert f"{sys.executable} -m jupyterlab --notebook-dir={tmp_path / 'nb'}" in out
    assert "default_kernel_name=backpain" in out


def test_a_kernel_start_race_is_retried_once_and_other_errors_are_not():
    from backpain_analysis.report import _execute_with_kernel_retry

    calls = []

    def flaky(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise RuntimeError("Kernel died before replying to kernel_info")
        return "done"

    assert _execute_with_kernel_retry(flaky, "nb.ipynb") == "done" and len(calls) == 2

    def always_dies(*args, **kwargs):
        calls.append(args)
        raise RuntimeError("Kernel died before replying to kernel_info")

    calls.clear()
    with pytest.raises(RuntimeError, match="Kernel died"):
        _execute_with_kernel_retry(always_dies)
    assert len(calls) == 2  # two starts, then the error

    def broken(*args, **kwargs):
        calls.append(args)
        raise RuntimeError("No such kernel named nope")

    calls.clear()
    with pytest.raises(RuntimeError, match="No such kernel"):
        _execute_with_kernel_retry(broken)
    assert len(calls) == 1
