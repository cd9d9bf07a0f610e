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


# --- Research-software conventions (issue 14): licence, citation, changelog, pre-commit ---------


def _version() -> str:
    from backpain_analysis._version import __version__

    return __version__


def test_citation_cff_cites_this_version_and_licence():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software"
    assert str(cff["version"]) == _version(), "CITATION.cff version differs from backpain_analysis/_version.py"
    assert cff["license"] == meta["license"] == "MIT"
    assert cff["title"] and cff["authors"] and all("name" in a or "family-names" in a for a in cff["authors"])
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(cff["date-released"]))


def test_citation_check_catches_a_stale_version():
    """The comparison above can fail: a CITATION.cff left at another version is caught."""
    text = (ROOT / "CITATION.cff").read_text()
    stale = yaml.safe_load(re.sub(r"^version: .*$", "version: 0.0.9", text, flags=re.MULTILINE))
    assert str(stale["version"]) != _version()


def test_license_file_matches_pyproject():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    text = (ROOT / "LICENSE").read_text()
    assert meta["license"] == "MIT" and text.startswith("MIT License")
    assert "Permission is hereby granted, free of charge" in text
    assert meta["license-files"] == ["LICENSE"]


def test_changelog_and_pre_commit_config():
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"## [{_version()}]" in changelog or "## [Unreleased]" in changelog
    hooks = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    entries = [h["entry"] for repo in hooks["repos"] for h in repo["hooks"]]
    assert "ruff check" in entries
    assert "python -m backpain_analysis.report check" in entries
