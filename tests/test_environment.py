"""environment.yml (conda route) must list the same dependencies and ranges as pyproject.toml."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# pip name -> conda-forge name, where they differ
CONDA_NAMES: dict[str, str] = {}


def _split(requirement: str) -> tuple[str, str]:
    match = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", requirement)
    assert match, requirement
    name = match.group(1).lower().replace("_", "-")
    return CONDA_NAMES.get(name, name), match.group(2).replace(" ", "")


def _pyproject() -> dict[str, str]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(meta["dependencies"]) + list(meta["optional-dependencies"]["dev"])
    return dict(_split(r) for r in reqs)


def _environment() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge"]
    deps = [d for d in env["dependencies"] if isinstance(d, str)]
    return {name: spec for name, spec in map(_split, deps) if name not in {"python", "pip"}}


def test_environment_yml_matches_pyproject():
    pyproject, conda = _pyproject(), _environment()
    assert set(conda) - set(pyproject) == set(), "in environment.yml but not pyproject.toml"
    assert set(pyproject) - set(conda) == set(), "in pyproject.toml but not environment.yml"
    differing = {n: (pyproject[n], conda[n]) for n in pyproject if pyproject[n] != conda[n]}
    assert differing == {}, f"version ranges differ (pyproject, environment.yml): {differing}"


def test_python_floor_matches():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert f"python{meta['requires-python']}" in env["dependencies"]


def test_drift_is_detected(tmp_path, monkeypatch):
    """The check above can fail: a changed range is reported."""
    text = (ROOT / "environment.yml").read_text().replace("pandas>=3.0,<4", "pandas>=2.2,<4")
    env = yaml.safe_load(text)
    deps = [d for d in env["dependencies"] if isinstance(d, str)]
    conda = {name: spec for name, spec in map(_split, deps) if name not in {"python", "pip"}}
    assert conda["pandas"] != _pyproject()["pandas"]
