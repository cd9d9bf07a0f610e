"""The wheel is the whole product: build it, install it into a fresh venv, use it from elsewhere.

Builds the wheel from a copy of the source tree (so the checkout gets no ``build/`` folder),
installs it with ``--no-deps`` into a new virtual environment that sees this environment's
dependencies through a ``.pth`` file (nothing is downloaded, and this checkout's editable
install is *not* visible there), then runs the ``backpain`` command of that venv from a
temporary directory: ``synth``, ``validate`` (valid and invalid), ``dataset``, ``dictionary``,
``notebooks DEST`` and ``report`` on two chapters of a small synthetic study without
``truth.json`` (a "real" study: no truth column), on the venv's own Python, where no
``backpain`` kernel is registered. About a minute; marked ``wheel`` (``-m "not wheel"`` skips it).
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from backpain_analysis._version import __version__

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.wheel


def _run(cmd, cwd, env, timeout=600):
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints", "synthetic")
    for name in ("backpain_analysis", "data", "notebooks"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    dist = base / "dist"
    build = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, src], cwd=base,
                 env=dict(os.environ))
    assert build.returncode == 0, build.stderr[-3000:]
    wheel = next(dist.glob("backpain_analysis-*.whl"))

    venv = base / "venv"
    made = _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=base, env=dict(os.environ))
    assert made.returncode == 0, made.stderr
    py = venv / "bin" / "python"
    purelib = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=base,
                        env=dict(os.environ)).stdout.strip())
    # this environment's dependencies, after the venv's own site-packages (where the wheel goes)
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.getsitepackages()}
    (purelib / "zz_backpain_test_deps.pth").write_text("\n".join(sorted(deps)) + "\n")
    # data files installed into the prefix by the dependencies (nbconvert's HTML templates), as pip would;
    # not the whole share/jupyter, which holds this checkout's registered kernel
    templates = Path(sys.prefix) / "share" / "jupyter" / "nbconvert"
    if templates.is_dir():
        (venv / "share" / "jupyter").mkdir(parents=True)
        (venv / "share" / "jupyter" / "nbconvert").symlink_to(templates)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKPAIN_", "JUPYTER_", "VIRTUAL_ENV"))}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["HOME"] = str(base / "home")  # no user-level kernels or caches from this machine
    env["XDG_CACHE_HOME"] = str(base / "home" / ".cache")
    (base / "home").mkdir()
    inst = _run([sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "--no-index", "-q", wheel],
                cwd=base, env=env)
    if inst.returncode != 0:  # pip < 22.3 has no --python: install with the venv's own interpreter via runpy
        inst = _run([py, "-m", "pip", "install", "--no-deps", "--no-index", "-q", wheel], cwd=base, env=env)
    assert inst.returncode == 0, inst.stderr[-3000:]
    work = base / "elsewhere"
    work.mkdir()
    return {"wheel": wheel, "venv": venv, "py": py, "env": env, "work": work, "backpain": venv / "bin" / "backpain"}


def test_wheel_holds_the_whole_product(installed):
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    for needed in ("backpain_analysis/_data/data_dictionary.yaml", "backpain_analysis/_data/unit_costs.csv",
                   "backpain_analysis/_notebooks/report.yaml", "backpain_analysis/_notebooks/05_patient_outcomes.ipynb",
                   "backpain_analysis/_notebooks/practice_feedback.ipynb",
                   f"backpain_analysis-{__version__}.dist-info/licenses/LICENSE"):
        assert needed in names
    assert not any("synthetic/" in n for n in names), "the synthetic study is written by `backpain synth`, not shipped"


def test_installed_package_is_the_wheel_not_the_checkout(installed):
    where = _run([installed["py"], "-c", "import backpain_analysis, backpain_analysis._resources as r; "
                  "print(backpain_analysis.__file__); print(r.data_file('data_dictionary.yaml'))"],
                 cwd=installed["work"], env=installed["env"])
    assert where.returncode == 0, where.stderr
    lines = where.stdout.split()
    assert all(str(installed["venv"]) in line for line in lines), lines
    assert str(ROOT) not in where.stdout


def test_commands_from_another_directory(installed):
    bp, work, env = installed["backpain"], installed["work"], installed["env"]
    study = work / "study"
    synth = _run([bp, "synth", "--out", study, "--invited", "700", "--seed", "5"], cwd=work, env=env)
    assert synth.returncode == 0, synth.stderr
    (study / "truth.json").unlink()  # from here on a "real" study: no true values

    valid = _run([bp, "validate", study], cwd=work, env=env)
    assert valid.returncode == 0 and "VALID" in valid.stdout, valid.stdout + valid.stderr

    broken = work / "broken"
    shutil.copytree(study, broken)
    (broken / "practices.csv").unlink()
    invalid = _run([bp, "validate", broken], cwd=work, env=env)
    assert invalid.returncode == 2 and "practices" in invalid.stdout

    dataset = _run([bp, "dataset", "--data", study, "--out", work / "analysis.csv"], cwd=work, env=env)
    assert dataset.returncode == 0, dataset.stderr
    assert (work / "analysis.csv").stat().st_size > 10_000

    dictionary = _run([bp, "dictionary", "--markdown"], cwd=work, env=env)
    assert dictionary.returncode == 0 and "patients" in dictionary.stdout

    copied = _run([bp, "notebooks", work / "nb", "--data", study], cwd=work, env=env)
    assert copied.returncode == 0, copied.stderr
    assert {p.name for p in (work / "nb").iterdir()} >= {"report.yaml", "02_cohort.ipynb", "practice_feedback.ipynb"}
    assert str(study.resolve()) in (work / "nb" / "02_cohort.ipynb").read_text()

    # the invalid study stops the report before any notebook runs: the validation report, exit 2
    stopped = _run([bp, "report", "--data", broken, "--out", work / "never", "--chapters", "02_cohort"], cwd=work,
                   env=env)
    assert stopped.returncode == 2, stopped.stdout + stopped.stderr
    assert "INVALID" in stopped.stdout and not list((work / "never").glob("02_cohort"))

    report = _run([bp, "report", "--data", study, "--out", work / "out", "--chapters", "02_cohort",
                   "04_process_of_care", "--jobs", "2"], cwd=work, env=env)
    assert report.returncode == 0, report.stdout + report.stderr[-4000:]
    # no backpain kernel in this venv: its own Python, said once (not a NoSuchKernel per notebook)
    assert report.stderr.count("running the notebooks on this environment's Python") == 1, report.stderr[-2000:]
    assert report.stderr.count("NoSuchKernel") == 0
    run = json.loads((work / "out" / "run.json").read_text())
    assert run["version"] == __version__
    assert {c["name"]: c["status"] for c in run["chapters"] if c["name"] in ("02_cohort", "04_process_of_care")} == {
        "02_cohort": "ok", "04_process_of_care": "ok"}
    assert f"backpain_analysis {__version__}" in (work / "out" / "index.html").read_text()
    # a study without truth.json: no truth column anywhere in what the chapters wrote
    table2 = (work / "out" / "04_process_of_care" / "tables").glob("*.csv")
    for table in table2:
        assert "truth" not in table.read_text().splitlines()[0].split(","), table.name
    for chapter in ("02_cohort", "04_process_of_care"):
        html = (work / "out" / chapter / f"{chapter}.html").read_text()
        assert "synthetic" not in html.lower() and "<th>truth</th>" not in html, chapter


def test_synth_from_the_wheel_rewrites_the_bundled_study(installed):
    """Why the wheel can leave data/synthetic out: `backpain synth` with its defaults writes it byte for byte."""
    out = installed["work"] / "default_study"
    made = _run([installed["backpain"], "synth", "--out", out], cwd=installed["work"], env=installed["env"])
    assert made.returncode == 0, made.stderr
    bundled = sorted(p.name for p in (ROOT / "data" / "synthetic").iterdir() if p.is_file())
    assert sorted(p.name for p in out.iterdir()) == bundled
    for name in bundled:
        assert (out / name).read_bytes() == (ROOT / "data" / "synthetic" / name).read_bytes(), name
