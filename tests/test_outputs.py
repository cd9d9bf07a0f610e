from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from backpain_analysis.outputs import ChapterOutputs, atomic_write, read_key_findings


def test_chapter_outputs_layout(tmp_path):
    out = ChapterOutputs(tmp_path, "05_outcomes")
    out.table(pd.DataFrame({"estimate": [0.7], "ci_low": [0.1], "ci_high": [1.3]}), "primary")
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    out.figure(fig, "line")
    plt.close(fig)
    out.finding("rmdq_adjusted_difference", np.float64(0.71), ci_low=0.06, ci_high=1.36, label="RMDQ")
    out.finding("n", np.int64(5))
    out.finding("missing", float("nan"))
    out.write_findings()
    assert (tmp_path / "05_outcomes/tables/primary.csv").exists()
    assert (tmp_path / "05_outcomes/figures/line.png").read_bytes()[:4] == b"\x89PNG"
    findings = read_key_findings(tmp_path / "05_outcomes")
    assert findings[0] == {"name": "rmdq_adjusted_difference", "value": 0.71, "label": "RMDQ", "ci_low": 0.06,
                           "ci_high": 1.36, "unit": ""}
    assert findings[2]["value"] is None
    json.dumps(findings)  # plain JSON types only
    assert not list(tmp_path.rglob("*.partial"))


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "x.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(target) as fh:
        fh.write("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]
