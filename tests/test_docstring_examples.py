"""Every Examples section in the package runs (numpydoc examples are documentation that must not rot)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import matplotlib
import pytest

import backpain_analysis

matplotlib.use("Agg")

MODULES = sorted(
    name for _, name, _ in pkgutil.iter_modules(backpain_analysis.__path__, prefix="backpain_analysis.")
    if not name.endswith("__main__")
)


@pytest.mark.parametrize("module_name", MODULES)
def test_examples_run(module_name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write here
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} example lines failed in {module_name}"
