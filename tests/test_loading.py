"""load_study and the pandera schemas: real exports accepted, every bad input reported at once."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pandera.pandas as pa
import pytest
from studyfactory import PATIENT_IDS, RESPONDENT_IDS, build_study, write_study

from backpain_analysis import BackpainError, Study, StudyValidationError, build_schema, load_dictionary, load_study
from backpain_analysis.loading import PROBLEM_COLUMNS
from backpain_analysis.schemas import parse_dates, valid_values

DD = load_dictionary()


def with_values(df: pd.DataFrame, column: str, values: dict[int, object]) -> pd.DataFrame:
    """A copy of ``df`` with raw (possibly text) values put in ``column`` at the given rows."""
    out = df.astype({column: "object"})
    for row, value in values.items():
        out.loc[row, column] = value
    return out


def load_error(folder: Path) -> StudyValidationError:
    with pytest.raises(StudyValidationError) as info:
        load_study(folder)
    return info.value


def problem(err: StudyValidationError, table: str, column: str = "") -> pd.Series:
    rows = err.problems[(err.problems["table"] == table) & (err.problems["column"] == column)]
    assert len(rows) == 1, f"expected one problem for {table}.{column}, got:\n{err}"
    return rows.iloc[0]


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


# --- a valid study -------------------------------------------------------------------------


def test_valid_tiny_study_loads(tmp_path):
    tables = build_study()
    study = load_study(write_study(tmp_path, tables))
    assert isinstance(study, Study)
    assert list(study.tables) == DD.required_tables  # the optional withdrawals file is not needed
    for name, df in tables.items():
        assert study.tables[name].shape == df.shape, name
        assert list(study.tables[name].columns) == list(df.columns)
        assert study.files[name] == tmp_path / f"{name}.csv"
    assert study.patients is study.tables["patients"] is study["patients"]
    assert study.patients["patient_id"].tolist() == PATIENT_IDS
    assert study.truth is None and study.notes == [] and study.path == tmp_path
    assert study.dictionary is DD
    # clean numeric columns come back numeric, identifiers as text
    assert pd.api.types.is_numeric_dtype(study.patients["age"])
    assert pd.api.types.is_numeric_dtype(study.followups["rmdq_3"])
    assert pd.api.types.is_string_dtype(study.practices["practice_id"])
    assert study.summary()["status"].eq("ok").all()
    with pytest.raises(AttributeError):
        _ = study.not_a_table


def test_truth_json_is_read(tmp_path):
    study = load_study(write_study(tmp_path, truth={"rmdq_adjusted_difference": 0.7, "parameters": {"seed": 1}}))
    assert study.truth == {"rmdq_adjusted_difference": 0.7, "parameters": {"seed": 1}}


def test_invalid_truth_json_is_a_problem(tmp_path):
    write_study(tmp_path)
    (tmp_path / "truth.json").write_text("{not json", encoding="utf-8")
    assert "not valid JSON" in problem(load_error(tmp_path), "")["rule"]


def test_text_answers_and_missing_codes_accepted_and_kept_as_read(tmp_path):
    tables = build_study()
    p = tables["patients"]
    p = with_values(p, "sbst_1", {0: "Agree", 1: " agree", 2: "DISAGREE", 4: "NA", 5: 99, 6: "yes", 7: 9})
    p = with_values(p, "sbst_9", {0: "VERY MUCH", 1: "Not at all", 2: "extremely bothersome", 4: " 3 ", 5: ""})
    p = with_values(p, "eq5d_mo", {0: "No problems", 1: "some", 2: "confined to bed", 4: "N/A"})
    p = with_values(p, "age", {0: "34", 1: "NA", 2: -1})
    p = with_values(p, "sex", {0: "Female", 1: " MALE "})
    p = with_values(p, "consultation_date", {0: "05/03/2007", 1: "19-03-2007", 2: "2.4.2007", 3: "2007/04/16",
                                             4: "8 May 2007", 5: "11 June 2007", 6: "2008-09-01T10:30"})
    tables["patients"] = p
    tables["records"] = with_values(tables["records"], "n_gp_consultations", {0: 999, 1: "-1"})
    tables["clinician_surveys"] = with_values(tables["clinician_surveys"], "pabs_1", {0: "Totally agree"})
    tables["clinician_surveys"] = with_values(tables["clinician_surveys"], "time_point", {0: "Before"})
    study = load_study(write_study(tmp_path, tables))
    # values are as read: cleaning harmonizes them
    assert study.patients.loc[0, "sbst_1"] == "Agree"
    assert study.patients.loc[4, "sbst_1"] == "NA"
    assert study.patients.loc[0, "sbst_9"] == "VERY MUCH"
    assert study.patients.loc[4, "consultation_date"] == "8 May 2007"
    assert pd.api.types.is_string_dtype(study.patients["sbst_1"])


def test_missing_reference_is_not_an_orphan(tmp_path):
    tables = build_study()
    tables["patients"] = with_values(tables["patients"], "gp_id", {0: "NA", 1: " "})
    load_study(write_study(tmp_path, tables))


# --- file-level problems -------------------------------------------------------------------


def test_missing_file(tmp_path):
    write_study(tmp_path)
    (tmp_path / "physio.csv").unlink()
    err = load_error(tmp_path)
    p = problem(err, "physio")
    assert p["file"] == "physio.csv" and "file missing" in p["rule"]
    assert err.summary.set_index("table").loc["physio", "status"] == "missing"


def test_misspelled_file_name_is_suggested(tmp_path):
    write_study(tmp_path)
    (tmp_path / "physio.csv").rename(tmp_path / "physios.csv")
    assert "did you mean physios.csv" in problem(load_error(tmp_path), "physio")["rule"]


def test_two_files_for_one_table(tmp_path):
    tables = build_study()
    write_study(tmp_path, tables)
    tables["practices"].to_parquet(tmp_path / "practices.parquet")
    p = problem(load_error(tmp_path), "practices")
    assert "more than one file" in p["rule"] and "practices.csv" in p["file"] and "practices.parquet" in p["file"]


@pytest.mark.parametrize(("sep", "word"), [(";", "semicolons"), ("\t", "tabs")])
def test_wrong_delimiter(tmp_path, sep, word):
    tables = build_study()
    write_study(tmp_path, tables)
    tables["patients"].to_csv(tmp_path / "patients.csv", index=False, sep=sep)
    p = problem(load_error(tmp_path), "patients")
    assert "wrong delimiter" in p["rule"] and word in p["rule"] and "comma-separated" in p["rule"]


def test_byte_order_mark_loads_with_first_column_intact(tmp_path):
    tables = build_study()
    write_study(tmp_path, tables)
    tables["practices"].to_csv(tmp_path / "practices.csv", index=False, encoding="utf-8-sig")
    assert (tmp_path / "practices.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    study = load_study(tmp_path)
    assert list(study.practices.columns)[0] == "practice_id"
    assert study.practices["practice_id"].tolist() == ["P01", "P02", "P03"]
    assert any("byte-order mark" in n and "practices.csv" in n for n in study.notes)


def test_empty_file(tmp_path):
    write_study(tmp_path)
    (tmp_path / "records.csv").write_text("", encoding="utf-8")
    assert "empty" in problem(load_error(tmp_path), "records")["rule"]


def test_not_a_folder(tmp_path):
    with pytest.raises(BackpainError, match="not found"):
        load_study(tmp_path / "nope")


# --- column and value problems -------------------------------------------------------------


def test_unknown_column_suggests_closest_name(tmp_path):
    tables = build_study()
    tables["patients"] = tables["patients"].rename(columns={"leg_pain": "legpain", "rmdq_12": "RMDQ_12"})
    err = load_error(write_study(tmp_path, tables))
    assert "did you mean 'leg_pain'" in problem(err, "patients", "legpain")["rule"]
    assert "did you mean 'rmdq_12'" in problem(err, "patients", "RMDQ_12")["rule"]


def test_required_column_missing(tmp_path):
    tables = build_study()
    tables["patients"] = tables["patients"].drop(columns=["sex"])
    assert problem(load_error(write_study(tmp_path, tables)), "patients", "sex")["rule"] == "required column missing"


def test_text_in_numeric_column(tmp_path):
    tables = build_study()
    tables["patients"] = with_values(tables["patients"], "age", {1: "forty"})
    err = load_error(write_study(tmp_path, tables))
    p = problem(err, "patients", "age")
    assert p["n_rows"] == 1
    assert p["rule"].startswith("a whole number from 18 to 110")
    # row 3 of the spreadsheet: the header is row 1, the second patient row 3
    assert p["examples"] == "row 3 (patient_id=PT002): 'forty'"
    assert p["file"] == "patients.csv"


def test_out_of_range_code(tmp_path):
    tables = build_study()
    tables["followups"] = with_values(tables["followups"], "rmdq_3", {0: 5, 4: 2})
    tables["patients"] = with_values(tables["patients"], "pain_nrs", {0: 11})
    err = load_error(write_study(tmp_path, tables))
    p = problem(err, "followups", "rmdq_3")
    assert p["n_rows"] == 2 and p["rule"].startswith("one of 0 (not ticked), 1 (ticked)")
    assert p["examples"].startswith("row 2 (patient_id=PT001, time_point=2): 5; row 6 (")
    assert problem(err, "patients", "pain_nrs")["rule"].startswith("a whole number from 0 to 10")


def test_non_whole_number_in_integer_column(tmp_path):
    tables = build_study()
    tables["patients"] = tables["patients"].astype({"age": "float64"})
    tables["patients"].loc[0, "age"] = 34.5
    assert problem(load_error(write_study(tmp_path, tables)), "patients", "age")["n_rows"] == 1


def test_bad_dates(tmp_path):
    tables = build_study()
    tables["patients"] = with_values(tables["patients"], "baseline_date", {0: "03/25/2007", 1: "yesterday",
                                                                           2: "2007-02-30"})
    p = problem(load_error(write_study(tmp_path, tables)), "patients", "baseline_date")
    assert p["n_rows"] == 3 and "'03/25/2007'" in p["examples"] and "'yesterday'" in p["examples"]


def test_bad_identifier_and_blank_key(tmp_path):
    tables = build_study()
    tables["practices"] = with_values(tables["practices"], "practice_id", {1: "P 02"})
    tables["physio"] = with_values(tables["physio"], "episode_id", {0: None})
    err = load_error(write_study(tmp_path, tables))
    assert "letters, digits" in problem(err, "practices", "practice_id")["rule"]
    assert "must not be blank" in problem(err, "physio", "episode_id")["rule"]


# --- keys ----------------------------------------------------------------------------------


def test_conflicting_duplicate_key_in_patients(tmp_path):
    tables = build_study()
    p = tables["patients"]
    twin = p.iloc[[2]].assign(age=77)
    tables["patients"] = pd.concat([p, twin], ignore_index=True)
    pr = problem(load_error(write_study(tmp_path, tables)), "patients", "patient_id")
    assert "duplicate key" in pr["rule"] and pr["n_rows"] == 2
    assert pr["examples"] == f"row 4: 'PT003'; row {len(p) + 2}: 'PT003'"


def test_exact_duplicate_row_is_not_an_error(tmp_path):
    tables = build_study()
    p = tables["patients"]
    tables["patients"] = pd.concat([p, p.iloc[[5]]], ignore_index=True)
    study = load_study(write_study(tmp_path, tables))
    assert len(study.patients) == len(p) + 1  # as read: cleaning drops the copy
    assert any("1 row repeats another row exactly" in n and f"row {len(p) + 2}" in n for n in study.notes)


def test_conflicting_duplicates_allowed_where_cleaning_resolves_them(tmp_path):
    tables = build_study()
    f = tables["followups"]
    later = f.iloc[[0]].assign(return_date="2007-06-01", pain_nrs=3)
    tables["followups"] = pd.concat([f, later], ignore_index=True)
    study = load_study(write_study(tmp_path, tables))
    assert any("followups.csv" in n and "keeps the earliest by return_date" in n for n in study.notes)


def test_orphan_followup(tmp_path):
    tables = build_study()
    tables["followups"] = with_values(tables["followups"], "patient_id", {3: "PT999"})
    tables["physio"] = with_values(tables["physio"], "physio_id", {1: "T99"})
    err = load_error(write_study(tmp_path, tables))
    p = problem(err, "followups", "patient_id")
    assert p["n_rows"] == 1 and "must exist in patients.patient_id" in p["rule"]
    assert p["examples"] == "row 5 (time_point=6): 'PT999'"
    assert "clinicians.clinician_id" in problem(err, "physio", "physio_id")["rule"]


# --- several problems at once, file formats, inputs untouched ------------------------------


def test_every_problem_reported_in_one_error(tmp_path):
    tables = build_study()
    tables["patients"] = with_values(tables["patients"], "age", {1: "forty"})
    tables["patients"] = tables["patients"].rename(columns={"leg_pain": "legpain"})
    tables["followups"] = with_values(tables["followups"], "rmdq_3", {0: 5})
    tables["records"] = with_values(tables["records"], "patient_id", {0: "PT999"})
    write_study(tmp_path, tables)
    (tmp_path / "physio.csv").unlink()
    err = load_error(tmp_path)
    assert list(err.problems.columns) == list(PROBLEM_COLUMNS)
    found = set(zip(err.problems["table"], err.problems["column"], strict=True))
    assert found == {("patients", "age"), ("patients", "legpain"), ("followups", "rmdq_3"),
                     ("records", "patient_id"), ("physio", "")}
    text = str(err)
    assert "5 problems" in text
    for fragment in ("patients.csv, column 'age'", "'forty'", "row 3", "followups.csv, column 'rmdq_3'",
                     "physio.csv: file missing", "did you mean 'leg_pain'"):
        assert fragment in text
    assert isinstance(err, BackpainError)


@pytest.mark.parametrize("fmt", ["parquet", "xlsx"])
def test_parquet_and_xlsx_tables(tmp_path, fmt):
    tables = build_study()
    text = with_values(tables["patients"], "sbst_1", {0: "Agree"})["sbst_1"]
    # parquet columns hold one type: a column with a text answer is all text
    tables["patients"]["sbst_1"] = text.map(lambda v: v if isinstance(v, str) or pd.isna(v) else str(v))
    study = load_study(write_study(tmp_path, tables, formats={"patients": fmt, "practices": fmt, "followups": fmt}))
    assert study.files["patients"].name == f"patients.{fmt}"
    assert study.patients["patient_id"].tolist() == PATIENT_IDS
    assert study.patients.loc[0, "sbst_1"] == "Agree"
    assert len(study.followups) == len(tables["followups"])


@pytest.mark.parametrize("fmt", ["parquet", "xlsx"])
def test_problems_in_parquet_and_xlsx(tmp_path, fmt):
    tables = build_study()
    tables["patients"] = with_values(tables["patients"], "age", {1: "forty"})
    tables["patients"]["age"] = tables["patients"]["age"].astype("str")
    err = load_error(write_study(tmp_path, tables, formats={"patients": fmt}))
    p = problem(err, "patients", "age")
    row = 2 if fmt == "parquet" else 3  # parquet: record number; spreadsheet: header is row 1
    assert p["file"] == f"patients.{fmt}" and p["examples"] == f"row {row} (patient_id=PT002): 'forty'"


def test_numeric_identifiers_in_parquet_match_text_identifiers(tmp_path):
    tables = build_study()
    tables["practices"] = tables["practices"].assign(practice_id=[1, 2, 3])
    for name in ("clinicians", "patients", "consultations"):
        tables[name] = tables[name].assign(practice_id=tables[name]["practice_id"].map({"P01": "1", "P02": "2",
                                                                                      "P03": "3"}))
    study = load_study(write_study(tmp_path, tables, formats={"practices": "parquet"}))
    assert study.practices["practice_id"].tolist() == ["1", "2", "3"]


@pytest.mark.parametrize("valid", [True, False])
def test_input_files_are_byte_identical_after_loading(tmp_path, valid):
    tables = build_study()
    if not valid:
        tables["patients"] = with_values(tables["patients"], "age", {1: "forty"})
        tables["patients"] = pd.concat([tables["patients"], tables["patients"].iloc[[0]]], ignore_index=True)
    write_study(tmp_path, tables, formats={"practices": "xlsx", "records": "parquet"}, truth={"a": 1})
    tables["clinicians"].to_csv(tmp_path / "clinicians.csv", index=False, encoding="utf-8-sig")
    before = digests(tmp_path)
    if valid:
        load_study(tmp_path)
    else:
        load_error(tmp_path)
    assert digests(tmp_path) == before


# --- schemas built from the dictionary -----------------------------------------------------


def test_schema_has_every_dictionary_column_and_is_strict():
    for table in DD.tables.values():
        schema = build_schema(table)
        assert isinstance(schema, pa.DataFrameSchema)
        assert list(schema.columns) == list(table.columns)
        assert schema.strict is True
        for col in table:
            assert schema.columns[col.name].required == (col.required or col.name in table.key)


def test_every_code_label_and_alias_accepted_and_others_rejected():
    for table in DD.tables.values():
        for col in table:
            if col.codes is None:
                continue
            check = valid_values(col)
            accepted = list(col.text_to_code()) + [f"  {t.upper()} " for t in col.text_to_code()] + list(
                col.missing_codes)
            assert check(pd.Series(accepted, dtype="object")).all(), (table.name, col.name)
            numeric = [c for c in col.codes if isinstance(c, int)]
            if numeric:
                assert check(pd.Series(numeric, dtype="float64")).all()
                assert not check(pd.Series([max(numeric) + 1000.0])).any(), (table.name, col.name)
            assert not check(pd.Series(["definitely not a code"])).any(), (table.name, col.name)


def test_ranges_checked_after_missing_codes():
    col = DD["followups"].columns["days_off_work"]
    check = valid_values(col)
    assert check(pd.Series([0, 366, 999, -1, None], dtype="float64")).all()
    assert check(pd.Series(["NA", "999", " 12 ", ""], dtype="str")).all()
    assert check(pd.Series([367, -2, 99.5], dtype="float64")).tolist() == [False, False, False]
    # 99 is a default missing code, but inside this column's range it is a valid value
    assert "99" not in col.missing_codes and check(pd.Series([99])).all()


def test_parse_dates_day_first():
    parsed = parse_dates(pd.Series(["2009-03-05", "05/03/2009", "05-03-2009", "05.03.2009", "2009/03/05",
                                    "5 Mar 2009", "5 march 2009", "03/25/2009", "", None]))
    assert parsed.iloc[:7].eq(pd.Timestamp("2009-03-05")).all()
    assert parsed.iloc[7:].isna().all()


def test_respondent_ids_constant():
    assert "PT004" not in RESPONDENT_IDS and "PT010" not in RESPONDENT_IDS and len(RESPONDENT_IDS) == 10


def test_digit_only_identifiers_keep_leading_zeros(tmp_path):
    tables = build_study()
    codes = {"P01": "001", "P02": "002", "P03": "003"}
    for name in ("practices", "clinicians", "patients", "consultations"):
        tables[name] = tables[name].assign(practice_id=tables[name]["practice_id"].map(codes))
    study = load_study(write_study(tmp_path, tables))
    assert study.practices["practice_id"].tolist() == ["001", "002", "003"]
    assert study.clinicians["practice_id"].tolist()[:4] == ["001", "001", "002", "003"]
    assert pd.isna(study.clinicians["practice_id"].iloc[4])


def test_identifier_checks_on_numbers_and_blank_columns():
    check = valid_values(DD["patients"].columns["patient_id"])
    assert check(pd.Series([101, 102])).all()
    assert check(pd.Series([float("nan"), float("nan")])).all()  # blank keys are the nullable check's business
    assert check(pd.Series(["PT-1", "pt_2", None], dtype="object")).all()
    assert check(pd.Series(["PT 1", "PT/2", "PT3"], dtype="str")).tolist() == [False, False, True]


def test_ragged_csv_row_is_reported(tmp_path):
    write_study(tmp_path)
    with open(tmp_path / "practices.csv", "a", encoding="utf-8") as fh:
        fh.write("P04,Extra,1,2,3,4\n")
    found = problem(load_error(tmp_path), "practices")
    assert "more fields than the header (4)" in found["rule"]
    assert "row 5 (practice_id=P04): 6 fields" in found["examples"]


def test_windows_1252_file_is_read_with_a_note(tmp_path):
    tables = build_study()
    write_study(tmp_path, tables)
    tables["practices"].assign(practice_name=["Café Surgery", "Riverside", "Hill"]).to_csv(
        tmp_path / "practices.csv", index=False, encoding="cp1252")
    study = load_study(tmp_path)
    assert study.practices.loc[0, "practice_name"] == "Café Surgery"
    assert any("Windows-1252" in n for n in study.notes)


def test_large_file_with_one_text_value_reads_the_column_as_text(tmp_path):
    """pandas parses big files in parallel chunks; one chunk with text must not leave a mix of int and str."""
    tables = build_study()
    p = tables["patients"]
    n = 60_000  # > 5 MB of CSV: parallel chunks
    big = p.iloc[[i % len(p) for i in range(n)]].reset_index(drop=True)
    big["patient_id"] = PATIENT_IDS + [f"PX{i:06d}" for i in range(len(p), n)]
    tables["patients"] = with_values(big, "age", {n - 5: "NA"})
    study = load_study(write_study(tmp_path, tables))
    assert (tmp_path / "patients.csv").stat().st_size > 5 * 1024 * 1024
    age = study.patients["age"]
    assert pd.api.types.is_string_dtype(age) and age.dtype != object
    assert age.iloc[n - 5] == "NA" and age.iloc[0] == "34"
    assert pd.api.types.is_numeric_dtype(study.patients["pain_nrs"])


def test_spreadsheet_cells_mixing_numbers_dates_and_text_become_text(tmp_path):
    tables = build_study()
    p = with_values(tables["patients"], "sbst_1", {0: "Agree", 1: " agree"})
    p = with_values(p, "baseline_date", {0: pd.Timestamp("2007-03-17"), 1: "31/03/2007"})
    tables["patients"] = p
    study = load_study(write_study(tmp_path, tables, formats={"patients": "xlsx"}))
    got = study.patients
    assert got["sbst_1"].tolist()[:3] == ["Agree", " agree", str(int(p.loc[2, "sbst_1"]))]
    assert got.loc[0, "baseline_date"] == "2007-03-17" and got.loc[1, "baseline_date"] == "31/03/2007"
    assert pd.api.types.is_numeric_dtype(got["sbst_2"]) and pd.api.types.is_string_dtype(got["sbst_1"])


def test_schemas_follow_the_dictionary_given(tmp_path):
    import yaml

    folder = write_study(tmp_path / "study")
    assert load_study(folder, dictionary=DD.path).dictionary.path == DD.path
    raw = yaml.safe_load(DD.path.read_text(encoding="utf-8"))
    raw["tables"]["practices"]["columns"]["n_gps"]["max"] = 5
    custom = tmp_path / "dictionary.yaml"
    custom.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(StudyValidationError) as info:
        load_study(folder, dictionary=custom)
    p = problem(info.value, "practices", "n_gps")
    assert p["rule"].startswith("a whole number from 1 to 5") and p["examples"] == "row 3 (practice_id=P02): 7"


def test_dates_outside_the_representable_range_are_invalid(tmp_path):
    # datetime64[ns] cannot hold 1500 or 2300: such a date must be reported, not wrapped into another century
    tables = build_study()
    tables["patients"] = with_values(tables["patients"], "baseline_date", {0: "1500-01-01", 1: "05/03/2300"})
    p = problem(load_error(write_study(tmp_path, tables)), "patients", "baseline_date")
    assert p["n_rows"] == 2 and "'1500-01-01'" in p["examples"] and "'05/03/2300'" in p["examples"]
    assert "from 1678 to 2261" in p["rule"]
