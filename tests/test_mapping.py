"""Mapping a real export onto the data dictionary (issue 14, item 3).

The export is a REDCap-style rewrite of the bundled synthetic study (tests/redcap_export.py):
one file with one row per record and event, labels instead of codes, checkbox columns, its own
names, missing-data code and date format. Mapped back, it must give exactly the bundled study.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from redcap_export import REDCAP_FILE, confirmed_mapping, write_redcap_export

from backpain_analysis import StudyValidationError, build_analysis_dataset, clean_study, load_study
from backpain_analysis.cli import main
from backpain_analysis.mapping import MappingError, draft_mapping, load_mapping, read_mapped

ROOT = Path(__file__).resolve().parents[1]
SYNTHETIC = ROOT / "data" / "synthetic"


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    return write_redcap_export(SYNTHETIC, tmp_path_factory.mktemp("redcap") / "export")


@pytest.fixture(scope="module")
def mapping_file(export) -> Path:
    path = export.parent / "mapping.yaml"
    path.write_text(yaml.safe_dump(confirmed_mapping(), sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def bundled():
    study = load_study(SYNTHETIC)
    clean = clean_study(study)
    return study, clean, build_analysis_dataset(clean)


@pytest.fixture(scope="module")
def mapped(export, mapping_file):
    study = load_study(export, mapping=mapping_file)
    clean = clean_study(study)
    return study, clean, build_analysis_dataset(clean)


def _parse(text: str) -> dict:
    from backpain_analysis.mapping import _TextBoolLoader

    return yaml.load(text, Loader=_TextBoolLoader)  # a safe loader


# ------------------------------------------------------------------------------------------
# The REDCap-style export: draft -> confirmed mapping -> load -> clean -> analysis dataset
# ------------------------------------------------------------------------------------------


def test_export_really_is_foreign(export):
    """The export holds none of the dictionary's own layout: one REDCap file, labels, checkboxes."""
    redcap = pd.read_csv(export / REDCAP_FILE, dtype=str)
    assert set(redcap["redcap_event_name"]) == {"Baseline", "2 months", "6 months", "Record review"}
    assert set(redcap["Gender"].dropna()) == {"F", "M"}
    assert set(redcap["SBST_Q1"].dropna()) == {"Yes", "No"}
    assert set(redcap["Cohort"].dropna()) == {"baseline cohort", "intervention cohort"}
    assert set(redcap["rmdq___3"].dropna()) == {"Checked", "Unchecked", "UNK"}
    assert redcap["consult_date"].dropna().str.fullmatch(r"\d{4}-\d{2}-\d{2}T00:00").all()
    assert not any((export / f"{t}.csv").exists() for t in ("patients", "followups", "practices"))
    with pytest.raises(StudyValidationError):
        load_study(export)


def test_draft_needs_only_the_documented_confirmations(export):
    """The draft finds every table, row filter, name and recode but one column the user adds."""
    draft = _parse(draft_mapping(export))
    # the user's confirmation: the one column the draft could not name
    draft["tables"]["physio"]["columns"]["start_date"] = "first_session"
    got, want = load_mapping(draft), load_mapping(confirmed_mapping())
    assert (got.phases, got.missing, got.date_format) == (want.phases, want.missing, want.date_format)
    assert sorted(got.tables) == sorted(want.tables)
    for name, table in want.tables.items():
        assert (got.tables[name].file, got.tables[name].rows) == (table.file, table.rows), name
        assert got.tables[name].columns == table.columns, name


def test_draft_marks_guesses_and_what_it_did_not_find(export):
    text = draft_mapping(export)
    assert "# start_date: ?" in text and "first_session" in text  # named among the unused columns
    sex = text[text.index("      sex:"):].split("\n")[:5]
    assert sex[1].strip() == "from: Gender" and "F: female   # CONFIRM" in sex[3] and "M: male   # CONFIRM" in sex[4]
    assert 'date_format: "%Y-%m-%dT%H:%M"   # CONFIRM' in text
    assert "missing: [UNK]" in text
    assert '1: "baseline cohort"   # CONFIRM: usual care' in text
    assert "rows: {redcap_event_name: [\"2 months\", \"6 months\"]}" in text


def test_draft_of_a_dictionary_layout_export_is_the_identity():
    """On the bundled study (already in the dictionary's layout) the draft maps every column to itself."""
    text = draft_mapping(SYNTHETIC)
    assert "# CONFIRM" not in text and ": ?" not in text
    draft = load_mapping(_parse(text))
    assert sorted(draft.tables) == sorted(load_study(SYNTHETIC).tables)
    for table in draft.tables.values():
        assert table.file == f"{table.name}.csv" and not table.rows
        assert all(c.source == c.target and not c.values for c in table.columns.values()), table.name


def test_mapped_analysis_dataset_equals_the_bundled_one(bundled, mapped):
    pd.testing.assert_frame_equal(mapped[2], bundled[2])
    assert len(mapped[2]) == 930


def test_mapped_tables_equal_the_bundled_tables_as_read(bundled, mapped):
    """Mapping gives the very tables load_study reads from the dictionary-layout files (values and types)."""
    for name, table in bundled[0].tables.items():
        if name not in mapped[0].tables and bundled[0].dictionary[name].optional:
            continue  # the REDCap-style export has no reasons for loss to follow-up (optional withdrawals)
        pd.testing.assert_frame_equal(mapped[0].tables[name], table, obj=name)
    assert mapped[0].files["patients"].name == REDCAP_FILE


def test_every_recode_is_in_the_cleaning_log(bundled, mapped):
    log = mapped[1].cleaning_log
    assert len(bundled[1].cleaning_log) == 0  # the bundled study needs no cleaning: every change is the mapping's
    assert set(log["rule"]) == {"mapping"}
    sex = log[(log["table"] == "patients") & (log["column"] == "sex")]
    raw_sex = bundled[0].patients["sex"]
    assert len(sex) == raw_sex.notna().sum() == 1647
    assert dict(zip(sex["old_value"], sex["new_value"], strict=False)) == {"F": "female", "M": "male"}
    assert (sex["row_key"].to_numpy() == bundled[0].patients["patient_id"].to_numpy()).all()
    # UNK (not answered) -> missing: exactly the bundled study's missing RMDQ items of respondents
    rmdq = log[(log["table"] == "patients") & log["column"].str.startswith("rmdq_") & (log["old_value"] == "UNK")]
    items = bundled[0].patients[[f"rmdq_{i}" for i in range(1, 25)]]
    answered = bundled[0].patients["baseline_date"].notna()
    assert len(rmdq) == int(items[answered].isna().sum().sum()) > 0
    assert (rmdq["new_value"] == "").all()
    dates = log[(log["table"] == "followups") & (log["column"] == "return_date")]
    assert dates["old_value"].iloc[0].endswith("T00:00") and dates["new_value"].iloc[0] == dates["old_value"].iloc[0][:10]
    first = bundled[0].followups.iloc[0]  # the export's first follow-up row, keyed patient|time point
    assert dates["row_key"].iloc[0] == f"{first['patient_id']}|{int(first['time_point'])}"
    summary = mapped[1].summary
    assert int(summary[(summary["rule"] == "mapping")]["n_cells"].sum()) == len(log)


def test_tables_not_in_the_mapping_are_read_as_usual(tmp_path):
    shutil.copytree(SYNTHETIC, tmp_path, dirs_exist_ok=True)
    practices = pd.read_csv(tmp_path / "practices.csv")
    practices.rename(columns={"practice_id": "Site", "n_gps": "GPs"}).to_csv(tmp_path / "sites.csv", index=False)
    (tmp_path / "practices.csv").unlink()
    study = load_study(tmp_path, mapping={"tables": {"practices": {"file": "sites.csv", "columns": {
        "practice_id": "Site", "practice_name": "practice_name", "list_size": "list_size", "n_gps": "GPs"}}}})
    pd.testing.assert_frame_equal(study.practices, load_study(SYNTHETIC).practices)
    assert len(study.mapping_log) == 0


# ------------------------------------------------------------------------------------------
# Problems name the export's own files, columns and rows
# ------------------------------------------------------------------------------------------


def test_problems_name_the_exports_columns_and_rows(export, mapping_file, tmp_path):
    bad = tmp_path / "export"
    shutil.copytree(export, bad)
    redcap = pd.read_csv(bad / REDCAP_FILE, dtype=str, keep_default_na=False)
    rows = redcap.index[(redcap["redcap_event_name"] == "Baseline")]
    target = rows[10]  # the 11th patient; in the file after other patients' follow-up rows
    redcap.loc[target, "Gender"] = "X"
    redcap.loc[target, "Age_at_consult"] = "forty"
    redcap.to_csv(bad / REDCAP_FILE, index=False)
    with pytest.raises(StudyValidationError) as info:
        load_study(bad, mapping=mapping_file)
    problems = info.value.problems
    assert set(problems["column"]) == {"Gender", "Age_at_consult"}
    assert set(problems["file"]) == {REDCAP_FILE}
    pid = redcap.loc[target, "record_id"]
    spreadsheet_row = int(target) + 2  # header is row 1
    gender = problems[problems["column"] == "Gender"].iloc[0]
    assert gender["examples"] == f"row {spreadsheet_row} (record_id={pid}): 'X'"
    assert "data dictionary column patients.sex" in gender["rule"]
    assert spreadsheet_row != 10 + 2  # the row number really was translated from the patients table's


def test_export_column_missing_is_named_with_a_hint(export, tmp_path):
    mapping = confirmed_mapping()
    mapping["tables"]["patients"]["columns"]["sex"]["from"] = "Gendr"
    with pytest.raises(StudyValidationError) as info:
        load_study(export, mapping=mapping)
    p = info.value.problems.iloc[0]
    assert (p["file"], p["column"]) == (REDCAP_FILE, "Gendr")
    assert "column not found in the export" in p["rule"] and "patients.sex" in p["rule"]
    assert "did you mean 'Gender'?" in p["rule"]


def test_required_column_left_out_of_the_mapping_is_named(export):
    mapping = confirmed_mapping()
    del mapping["tables"]["patients"]["columns"]["sex"]
    with pytest.raises(StudyValidationError) as info:
        load_study(export, mapping=mapping)
    p = info.value.problems.iloc[0]
    assert p["column"] == "sex" and p["rule"] == ("required column missing: the mapping file <mapping> names no "
                                                  "export column for patients.sex")


def test_mapped_values_are_typed_as_a_csv_is_read():
    from backpain_analysis.dictionary import load_dictionary
    from backpain_analysis.mapping import ColumnMap, _map_column

    col = load_dictionary()["patients"].columns["episode_duration"]
    values, changed, old, new = _map_column(pd.Series(["1_3", "lt_1m", None]), ColumnMap("episode_duration", "d"), col)
    assert values.tolist()[:2] == ["1_3", "lt_1m"] and changed.size == 0  # "1_3" is text, not 13
    age = load_dictionary()["patients"].columns["age"]
    values, changed, old, new = _map_column(pd.Series(["40", "NK", "52"]),
                                            ColumnMap("age", "a", missing=frozenset({"nk"})), age)
    assert values.dtype == "float64" and values.isna().tolist() == [False, True, False]
    assert (changed.tolist(), old.to_pylist(), new.to_pylist()) == ([1], ["NK"], [""])
    values, *_ = _map_column(pd.Series(["40", "52"]), ColumnMap("age", "a"), age)
    assert values.dtype == "int64"


def test_rows_filter_that_matches_nothing_is_a_problem(export):
    mapping = confirmed_mapping()
    mapping["tables"]["records"]["rows"] = {"redcap_event_name": "Notes review"}
    with pytest.raises(StudyValidationError) as info:
        load_study(export, mapping=mapping)
    rule = info.value.problems.iloc[0]["rule"]
    assert "no row has redcap_event_name = 'Notes review'" in rule and "'Record review'" in rule


# ------------------------------------------------------------------------------------------
# The mapping file itself is checked
# ------------------------------------------------------------------------------------------


BASE = {"file": "x.csv", "columns": {"patient_id": "record_id"}}


@pytest.mark.parametrize(("change", "message"), [
    ({"tables": {"patient": BASE}}, "tables: unknown table 'patient' (not in the data dictionary); did you mean 'patients'?"),
    ({"tables": {"patients": {**BASE, "colums": {}}}}, "tables.patients: unknown key 'colums'; did you mean 'columns'?"),
    ({"tables": {"patients": {"file": "x.csv", "columns": {"gender": "Gender"}}}},
     "tables.patients.columns: unknown column 'gender' of table patients"),
    ({"tables": {"patients": {"file": "x.csv", "columns": {"sex": {"from": "Gender", "values": {"F": "woman"}}}}}},
     "tables.patients.columns.sex.values['F']: 'woman' is not a code of this column; allowed: 'female', 'male'"),
    ({"tables": {"patients": {"file": "x.csv", "columns": {"age": {"from": "Age", "values": {"NK": "forty"}}}}}},
     "tables.patients.columns.age.values['NK']: 'forty' is not a number (integer column)"),
    ({"tables": {"patients": {"file": "x.csv", "columns": {"sex": {"from": "G", "values": {"f": "female", "F ": "male"}}}}}},
     "are the same export value"),
    ({"date_format": "%Y-%m", "tables": {"patients": BASE}}, "date_format: date_format '%Y-%m' does not hold a whole date"),
    ({"phases": {2: "baseline cohort"}, "tables": {"patients": BASE}}, "phases[2]: 2 is not a code of this column"),
    ({"tables": {"patients": {**BASE, "file": "x.sav"}}}, "tables.patients.file: 'x.sav': an export file must end in"),
    ({"version": 2, "tables": {"patients": BASE}}, "version: this package reads mapping files of version 1"),
    ({"tables": {}}, "tables: must map at least one table"),
])
def test_bad_mapping_files_raise_one_clear_error(change, message):
    with pytest.raises(MappingError) as info:
        load_mapping(change)
    assert message in str(info.value)
    assert str(info.value).startswith("mapping file <mapping>: ")


def test_mapping_file_errors_name_the_file(tmp_path):
    path = tmp_path / "m.yaml"
    with pytest.raises(MappingError, match="m.yaml not found"):
        load_mapping(path)
    path.write_text("tables: [unclosed\n")
    with pytest.raises(MappingError, match="m.yaml is not valid YAML"):
        load_mapping(path)
    path.write_text("tables:\n  patients:\n    file: x.csv\n    columns:\n      sexx: Gender\n")
    with pytest.raises(MappingError, match=r"mapping file .*m\.yaml: tables\.patients\.columns: unknown column 'sexx'"
                                            r".*did you mean 'sex'"):
        load_mapping(path)


def test_yes_no_true_on_keys_are_export_text_not_booleans(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("tables:\n  records:\n    file: r.csv\n    columns:\n      nsaids: {from: N, values: {Yes: 1, No: 0, "
                    "TRUE: 1, off: 0}}\n")
    values = load_mapping(path).tables["records"].columns["nsaids"].values
    assert values == {"yes": ("Yes", 1), "no": ("No", 0), "true": ("TRUE", 1), "off": ("off", 0)}


def test_read_mapped_without_a_collector_raises_on_the_first_problem(tmp_path):
    with pytest.raises(MappingError, match="export file not found"):
        read_mapped(tmp_path, {"tables": {"practices": {"file": "sites.csv", "columns": {"practice_id": "id"}}}})


# ------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "backpain_analysis", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def test_cli_draft_never_overwrites_without_force(export, tmp_path, capsys):
    target = tmp_path / "draft.yaml"
    assert main(["map", str(export), "--draft", str(target)]) == 0
    out = capsys.readouterr().out
    assert "CONFIRM" in out and "1 dictionary column(s) not found" in out
    target.write_text("# my edits\n")
    assert main(["map", str(export), "--draft", str(target)]) == 2
    assert "exists; not overwritten (use --force" in capsys.readouterr().err
    assert target.read_text() == "# my edits\n"
    assert main(["map", str(export), "--draft", str(target), "--force"]) == 0
    assert target.read_text().startswith("# Mapping of an export")


def test_cli_validate_with_mapping(export, mapping_file):
    result = run_cli("validate", str(export), "--mapping", str(mapping_file))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "VALID" in result.stdout and REDCAP_FILE in result.stdout and "cells recoded" in result.stdout
    result = run_cli("validate", str(export))
    assert result.returncode == 2 and "file missing" in result.stdout


def test_cli_dataset_with_mapping_equals_the_bundled_dataset(export, mapping_file, tmp_path):
    mapped_out, bundled_out = tmp_path / "mapped.parquet", tmp_path / "bundled.parquet"
    assert main(["dataset", "--data", str(export), "--mapping", str(mapping_file), "--out", str(mapped_out)]) == 0
    assert main(["dataset", "--data", str(SYNTHETIC), "--out", str(bundled_out)]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(mapped_out), pd.read_parquet(bundled_out))


def test_cli_map_out_writes_a_study_folder(export, mapping_file, tmp_path, bundled):
    out = tmp_path / "study"
    assert main(["map", str(export), "--mapping", str(mapping_file), "--out", str(out)]) == 0
    study = load_study(out)
    pd.testing.assert_frame_equal(build_analysis_dataset(clean_study(study)), bundled[2])
    # the folder carries the mapping log: the cleaning log of the mapped folder still has every recode
    direct = clean_study(load_study(export, mapping=mapping_file)).cleaning_log
    pd.testing.assert_frame_equal(clean_study(study).cleaning_log, direct)
    assert len(direct) > 100_000
    assert (out / "mapping" / "mapping.yaml").read_text() == mapping_file.read_text()


def test_cli_report_with_mapping_gives_the_bundled_key_findings(export, mapping_file, tmp_path):
    """`backpain report --mapping` on the export: chapter 02's key findings equal the bundled study's."""
    chapter = "02_cohort"
    for data, out, extra in ((SYNTHETIC, tmp_path / "bundled", []),
                             (export, tmp_path / "mapped", ["--mapping", str(mapping_file)])):
        result = run_cli("report", "--data", str(data), "--out", str(out), "--chapters", chapter, "--jobs", "1",
                         *extra, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
    bundled = json.loads((tmp_path / "bundled" / chapter / "key_findings.json").read_text())
    mapped = json.loads((tmp_path / "mapped" / chapter / "key_findings.json").read_text())
    assert len(bundled) > 5
    assert mapped == bundled
