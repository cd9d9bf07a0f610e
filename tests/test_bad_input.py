"""Bad input files (issue 12): no row lost silently, one clear message per file, raw files never modified.

Every test writes a small study with ``studyfactory`` into ``tmp_path``, breaks one file the way
real exports break, and checks the one problem reported (file, row, rule), that ``backpain
validate`` exits 2 without a traceback, and that the files are byte-identical afterwards.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from studyfactory import build_study, write_study

from backpain_analysis import StudyValidationError, build_analysis_dataset, clean_study, load_study, reconcile
from backpain_analysis.dataset import flow_counts
from backpain_analysis.loading import EMPTY_TABLE_MEANS

ROOT = Path(__file__).resolve().parents[1]


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def only_problem(folder: Path) -> pd.Series:
    """The single problem load_study reports; the files are unchanged afterwards."""
    before = digests(folder)
    with pytest.raises(StudyValidationError) as info:
        load_study(folder)
    assert digests(folder) == before
    problems = info.value.problems
    assert len(problems) == 1, str(info.value)
    return problems.iloc[0]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "backpain_analysis", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def write_lines(path: Path, rows: list[str], end: str = "\n") -> None:
    path.write_bytes((end.join(rows) + end).encode("utf-8"))


# --- rows with the wrong number of fields -------------------------------------------------------------------


def test_short_row_is_an_error_naming_file_and_row(tmp_path):
    write_study(tmp_path)
    rows = lines(tmp_path / "physio.csv")
    rows[2] = ",".join(rows[2].split(",")[:4])  # E002 loses its last two fields
    write_lines(tmp_path / "physio.csv", rows)
    found = only_problem(tmp_path)
    assert found["file"] == "physio.csv" and found["n_rows"] == 1
    assert "fewer fields than the header (6)" in found["rule"]
    assert found["examples"] == "row 3 (episode_id=E002): 4 fields"


def test_truncated_last_line_is_an_error(tmp_path):
    write_study(tmp_path)
    path = tmp_path / "followups.csv"
    n_rows = len(lines(path))
    path.write_bytes(path.read_bytes()[:-40])  # a transfer cut in the middle of the last row
    found = only_problem(tmp_path)
    assert "fewer fields" in found["rule"]
    assert found["examples"].startswith(f"row {n_rows} (patient_id=PT012)")


def test_every_short_row_is_counted_and_blank_lines_do_not_shift_row_numbers(tmp_path):
    write_study(tmp_path)
    rows = lines(tmp_path / "records.csv")
    for i in (2, 5):
        rows[i] = rows[i].rsplit(",", 1)[0]
    rows.insert(3, "")  # a blank line (pandas skips it; it is not a row)
    write_lines(tmp_path / "records.csv", rows)
    found = only_problem(tmp_path)
    assert found["n_rows"] == 2
    assert found["examples"].startswith("row 3 (patient_id=")
    assert "row 6 (line 7 of the file)" in found["examples"]


def test_first_data_row_with_an_extra_field_is_not_read_as_an_index(tmp_path):
    write_study(tmp_path)
    rows = lines(tmp_path / "physio.csv")
    rows[1] += ",x"  # pandas would silently use the first column as the index
    write_lines(tmp_path / "physio.csv", rows)
    found = only_problem(tmp_path)
    assert "more fields than the header (6)" in found["rule"]
    assert found["examples"] == "row 2 (episode_id=E001): 7 fields"


def test_quoted_commas_and_line_breaks_are_not_miscounted(tmp_path):
    tables = build_study()
    tables["practices"].loc[0, "practice_name"] = 'Oak Lane, "North" Surgery\nannexe'
    write_study(tmp_path, tables)
    study = load_study(tmp_path)
    assert study.practices.loc[0, "practice_name"] == 'Oak Lane, "North" Surgery\nannexe'
    # ... and a short row after a quoted field is still found
    rows = (tmp_path / "practices.csv").read_text(encoding="utf-8").split("\n")
    rows[-2] = rows[-2].rsplit(",", 1)[0]
    (tmp_path / "practices.csv").write_text("\n".join(rows), encoding="utf-8")
    found = only_problem(tmp_path)
    assert "fewer fields" in found["rule"] and "practice_id=P03" in found["examples"]


def test_missing_final_line_break_is_noted(tmp_path):
    write_study(tmp_path)
    path = tmp_path / "practices.csv"
    path.write_bytes(path.read_bytes().rstrip(b"\n"))
    study = load_study(tmp_path)
    assert len(study.practices) == 3
    assert any("practices.csv: the last line has no line break" in n for n in study.notes)


# --- line endings and encodings -----------------------------------------------------------------------------


def test_carriage_return_only_line_endings_are_read(tmp_path):
    write_study(tmp_path)
    expected = load_study(tmp_path).physio
    path = tmp_path / "physio.csv"
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r"))
    study = load_study(tmp_path)
    pd.testing.assert_frame_equal(study.physio, expected)
    assert any("carriage return only" in n for n in study.notes)


def test_carriage_return_only_file_with_a_short_row(tmp_path):
    write_study(tmp_path)
    rows = lines(tmp_path / "physio.csv")
    rows[4] = rows[4].rsplit(",", 1)[0]
    write_lines(tmp_path / "physio.csv", rows, end="\r")
    found = only_problem(tmp_path)
    assert found["examples"] == "row 5 (episode_id=E004): 5 fields"


@pytest.mark.parametrize(("encoding", "word"), [
    ("utf-16-le", "UTF-16 (little-endian) encoded without a byte-order mark"),
    ("utf-16-be", "UTF-16 (big-endian) encoded without a byte-order mark"),
    ("utf-16", "UTF-16 encoded (it starts with a UTF-16 byte-order mark)"),
    ("utf-32", "UTF-32 encoded"),
])
def test_utf16_and_utf32_give_one_message_about_the_encoding(tmp_path, encoding, word):
    write_study(tmp_path)
    path = tmp_path / "practices.csv"
    path.write_bytes(path.read_text(encoding="utf-8").encode(encoding))
    found = only_problem(tmp_path)
    assert found["file"] == "practices.csv" and found["column"] == ""
    assert word in found["rule"] and "save it as UTF-8 CSV" in found["rule"]


def test_undecodable_bytes_give_one_message_about_the_encoding(tmp_path):
    write_study(tmp_path)
    path = tmp_path / "practices.csv"
    # 0x81 and 0x8d are neither UTF-8 nor Windows-1252
    path.write_bytes(path.read_bytes().replace(b"Oak", b"O\x81\x8dk"))
    found = only_problem(tmp_path)
    assert "neither UTF-8 nor Windows-1252" in found["rule"]


# --- a table given as a folder ------------------------------------------------------------------------------


def test_spark_style_folder_is_a_clear_error_not_file_missing(tmp_path):
    write_study(tmp_path)
    data = (tmp_path / "patients.csv").read_bytes()
    (tmp_path / "patients.csv").unlink()
    (tmp_path / "patients.csv").mkdir()
    (tmp_path / "patients.csv" / "part-0000.csv").write_bytes(data)
    (tmp_path / "patients.csv" / "_SUCCESS").write_bytes(b"")
    found = only_problem(tmp_path)
    assert found["file"] == "patients.csv" and found["table"] == "patients"
    assert "is a folder, not a file (1 part file: part-0000.csv)" in found["rule"]
    assert "missing" not in found["rule"]


# --- empty tables -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("table", ["physio", "records", "followups", "consultations", "clinician_surveys"])
def test_empty_table_is_accepted_with_a_note_and_the_pipeline_runs(tmp_path, table):
    write_study(tmp_path)
    path = tmp_path / f"{table}.csv"
    write_lines(path, lines(path)[:1])
    study = load_study(tmp_path)
    note = [n for n in study.notes if n.startswith(f"{table}.csv: the table has a header but no rows")]
    assert len(note) == 1 and EMPTY_TABLE_MEANS[table] in note[0]
    clean = clean_study(study)
    data = build_analysis_dataset(clean)
    assert len(data) == 10
    assert reconcile(study, clean, data)["n_unaccounted"].sum() == 0
    flow = flow_counts(clean).set_index("item")
    if table == "physio":
        assert (data["physio_sessions"] == 0).all() and data["physio_approach"].isna().all()
        assert set(data["received_pathway"].dropna()) <= {"advice", "physiotherapy"}
        # with a record review, exactly the referred patients get "physiotherapy"
        referred = data["physio_referral"] == 1
        assert (data.loc[referred, "received_pathway"] == "physiotherapy").all()
        assert (data.loc[data["physio_referral"] == 0, "received_pathway"] == "advice").all()
    if table == "followups":
        assert flow.loc["followed up at 6 months", ["n_phase1", "n_phase3"]].tolist() == [0, 0]
        assert data["rmdq_6m"].isna().all()


@pytest.mark.parametrize("table", ["patients", "practices"])
def test_empty_patients_or_practices_is_an_error(tmp_path, table):
    tables = build_study()
    tables[table] = tables[table].iloc[:0]
    write_study(tmp_path, tables)
    with pytest.raises(StudyValidationError) as info:
        load_study(tmp_path)
    problems = info.value.problems
    assert any("header but no rows" in rule for rule in problems.loc[problems["table"] == table, "rule"])


def test_empty_parquet_table_gets_the_same_note(tmp_path):
    tables = build_study()
    tables["physio"] = tables["physio"].iloc[:0]
    write_study(tmp_path, tables, formats={"physio": "parquet"})
    study = load_study(tmp_path)
    assert any(n.startswith("physio.parquet: the table has a header but no rows") for n in study.notes)


# --- the command line: exit 2 with a message, never a traceback ---------------------------------------------


def test_cli_reports_bad_files_with_exit_2_and_no_traceback(tmp_path):
    write_study(tmp_path)
    rows = lines(tmp_path / "physio.csv")
    rows[2] = rows[2].rsplit(",", 2)[0]
    write_lines(tmp_path / "physio.csv", rows)
    path = tmp_path / "practices.csv"
    path.write_bytes(path.read_text(encoding="utf-8").encode("utf-16-le"))
    before = digests(tmp_path)
    for args in (["validate", str(tmp_path)], ["dataset", "--data", str(tmp_path), "--out", str(tmp_path / "x.csv")]):
        result = run_cli(*args)
        text = result.stdout + result.stderr
        assert result.returncode == 2, text
        assert "Traceback" not in text
        assert "physio.csv" in text and "row 3 (episode_id=E002): 4 fields" in text
        assert "practices.csv" in text and "UTF-16" in text
    assert digests(tmp_path) == before


# --- an output location that cannot be written: said before loading -----------------------------------------


@pytest.mark.parametrize("command", ["dataset", "report"])
def test_unwritable_output_is_refused_before_loading(tmp_path, command):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where a folder is expected", encoding="utf-8")
    out = blocker / ("analysis.csv" if command == "dataset" else "report")
    # the study folder does not exist: had the command loaded it first, that would be the error
    result = run_cli(command, "--data", str(tmp_path / "no_study_here"), "--out", str(out))
    text = result.stdout + result.stderr
    assert result.returncode == 2, text
    assert "Traceback" not in text
    assert "cannot be written" in text and "is a file, not a folder" in text
    assert "no_study_here" not in text


def test_unwritable_folder_is_refused(tmp_path, monkeypatch):
    # root may write anywhere: simulate a folder without write permission
    import tempfile

    from backpain_analysis import cli
    from backpain_analysis.errors import BackpainError

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(BackpainError, match="no permission to create files in"):
        cli._require_writable(tmp_path / "out.parquet", folder=False)
    monkeypatch.undo()
    cli._require_writable(tmp_path / "new" / "deeper" / "out.parquet", folder=False)
    assert list(tmp_path.iterdir()) == []  # the probe leaves nothing behind, and creates no folder


def test_dataset_out_naming_a_folder_is_refused(tmp_path):
    from backpain_analysis import cli
    from backpain_analysis.errors import BackpainError

    (tmp_path / "x.csv").mkdir()
    with pytest.raises(BackpainError, match="is a folder"):
        cli._require_writable(tmp_path / "x.csv", folder=False)
