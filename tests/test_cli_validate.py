"""`backpain validate DIR`: a readable report, exit 0 when valid and 2 when not, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from studyfactory import build_study, write_study

from backpain_analysis.cli import main

ROOT = Path(__file__).resolve().parents[1]
SYNTHETIC = ROOT / "data" / "synthetic"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """Run the command as a user would, so a traceback would show in its output."""
    return subprocess.run([sys.executable, "-m", "backpain_analysis", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def test_valid_study_exits_0_with_table_report(tmp_path):
    write_study(tmp_path)
    result = run_cli("validate", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for name in ("practices", "clinicians", "clinician_surveys", "consultations", "patients", "followups",
                 "records", "physio"):
        assert f"{name}.csv" in out
    assert "VALID" in out and "INVALID" not in out
    assert "Traceback" not in out + result.stderr


def test_invalid_study_exits_2_listing_every_problem(tmp_path):
    tables = build_study()
    p = tables["patients"].astype({"age": "object"})
    p.loc[1, "age"] = "forty"
    tables["patients"] = p.rename(columns={"leg_pain": "legpain"})
    write_study(tmp_path, tables)
    (tmp_path / "physio.csv").unlink()
    result = run_cli("validate", str(tmp_path))
    assert result.returncode == 2
    out = result.stdout
    assert "Problems (3)" in out and "INVALID" in out
    assert "row 3 (patient_id=PT002): 'forty'" in out
    assert "did you mean 'leg_pain'" in out
    assert "physio.csv: file missing" in out
    assert "2 problems" in out  # patients' status in the table report
    assert "Traceback" not in out + result.stderr


def test_wrong_delimiter_exits_2_without_traceback(tmp_path):
    tables = build_study()
    write_study(tmp_path, tables)
    tables["records"].to_csv(tmp_path / "records.csv", index=False, sep=";")
    result = run_cli("validate", str(tmp_path))
    assert result.returncode == 2 and "wrong delimiter" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_missing_folder_exits_2_without_traceback(tmp_path):
    result = run_cli("validate", str(tmp_path / "nowhere"))
    assert result.returncode == 2
    assert "not found" in result.stderr and "Traceback" not in result.stdout + result.stderr


def test_unreadable_xlsx_exits_2(tmp_path, capsys):
    write_study(tmp_path)
    (tmp_path / "physio.csv").unlink()
    (tmp_path / "physio.xlsx").write_bytes(b"this is not a spreadsheet")
    assert main(["validate", str(tmp_path)]) == 2
    out = capsys.readouterr().out
    assert "physio.xlsx" in out and "could not be read" in out


def test_notes_are_printed_for_a_valid_study(tmp_path, capsys):
    tables = build_study()
    tables["patients"] = pd.concat([tables["patients"], tables["patients"].iloc[[0]]], ignore_index=True)
    write_study(tmp_path, tables)
    assert main(["validate", str(tmp_path)]) == 0
    assert "1 row repeats another row exactly" in capsys.readouterr().out


@pytest.mark.skipif(not SYNTHETIC.is_dir(), reason="data/synthetic (the bundled synthetic study) does not exist yet")
def test_bundled_synthetic_study_is_valid():
    result = run_cli("validate", str(SYNTHETIC))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "truth.json: present" in result.stdout
