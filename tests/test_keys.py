"""Fast paths of the key checks: each agrees with the general (hashing) path, and refuses when unsure."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from studyfactory import build_study, write_study

from backpain_analysis import clean_study, load_dictionary, load_study
from backpain_analysis import cleaning as C
from backpain_analysis import loading as L
from backpain_analysis import schemas as S

DD = load_dictionary()


def text(values) -> pd.Series:
    return pd.Series(values, dtype="str")


# --- _strictly_increasing -------------------------------------------------------------------


@pytest.mark.parametrize(("columns", "expected"), [
    ([text(["A1", "A2", "B1"])], True),
    ([text([])], True),
    ([text(["A1"])], True),
    ([text(["A2", "A1", "B1"])], False),  # unsorted
    ([text(["A1", "A1", "B1"])], False),  # repeated
    ([text(["A1", None, "B1"])], False),  # missing
    ([text(["A1", "A2", "B1"]).astype(object)], False),  # object dtype: not modelled
    ([pd.Series([1, 2, 5])], True),
    ([pd.Series([1.0, 2.0, np.nan])], False),
    ([pd.Series([1, 2, 5], dtype="Int64")], False),  # nullable: not modelled
    ([text(["P1", "P1", "P2"]), pd.Series([2, 6, 2])], True),  # lexicographic
    ([text(["P1", "P1", "P2"]), pd.Series([6, 2, 2])], False),
    ([text(["P1", "P1", "P2"]), pd.Series([2, 2, 6])], False),  # repeated pair
    ([text(["P1", "P2", "P2"]), text(["b", "a", "c"])], True),
    ([text(["P1", "P2", "P2"]), text(["b", "c", None])], False),
])
def test_strictly_increasing(columns, expected):
    assert L._strictly_increasing(columns) is expected
    if expected:  # the proof is right: no repeated key
        assert not pd.DataFrame(dict(enumerate(columns))).duplicated().any()


def test_strictly_increasing_agrees_with_duplicated_on_random_keys():
    rng = np.random.default_rng(1)
    for _ in range(200):
        n = int(rng.integers(0, 8))
        a = text([f"P{v}" for v in rng.integers(0, 4, n)])
        b = pd.Series(rng.integers(0, 3, n))
        df = pd.DataFrame({"a": a, "b": b}).sort_values(["a", "b"]) if rng.random() < 0.7 else pd.DataFrame(
            {"a": a, "b": b})
        proven = L._strictly_increasing([df["a"], df["b"]])
        distinct = not df.duplicated().any()
        sorted_ = df.equals(df.sort_values(["a", "b"]))
        assert proven == (distinct and sorted_)


# --- _check_keys and _exact_duplicates: fast path == general path ------------------------------


def _general(monkeypatch):
    monkeypatch.setattr(L, "_strictly_increasing", lambda columns: False)
    monkeypatch.setattr(C, "_strictly_increasing", lambda columns: False)


def _followups(patients, points, dates):
    tables = build_study()
    f = tables["followups"].iloc[:len(patients)].copy().reset_index(drop=True)
    f["patient_id"], f["time_point"], f["return_date"] = patients, points, dates
    return f


@pytest.mark.parametrize("case", ["sorted", "unsorted", "exact_repeat", "conflict"])
def test_check_keys_and_exact_duplicates_agree_with_general_path(case, monkeypatch):
    f = _followups(["PT001", "PT001", "PT002", "PT003"], [2, 6, 2, 2], ["2009-01-01"] * 4)
    if case == "unsorted":
        f = f.iloc[[2, 0, 3, 1]].reset_index(drop=True)
    elif case == "exact_repeat":
        f = pd.concat([f, f.iloc[[1]]], ignore_index=True)
    elif case == "conflict":
        f = pd.concat([f, f.iloc[[1]].assign(return_date="2009-02-01")], ignore_index=True)
    f = f.astype({"patient_id": "str"})

    def run():
        out = {}
        for table, df in (("followups", f), ("patients", build_study()["patients"].astype({"patient_id": "str"}))):
            problems, notes, distinct, facts = L._Problems(), [], {}, L._KeyFacts()
            L._check_keys(df, L.Path(f"{table}.csv"), DD[table], problems, notes, 2, distinct, facts)
            exclusions = []
            keep, repeated = C._exact_duplicates(df, DD[table], exclusions)
            out[table] = (problems.rows, notes, {k: (v[0].to_pylist(), v[1]) for k, v in distinct.items()},
                          sorted(facts.unique), None if keep is None else keep.tolist(), repeated,
                          [e.to_dict("list") for e in exclusions])
        return out

    fast = run()
    _general(monkeypatch)
    assert run() == fast
    if case in ("exact_repeat", "conflict"):
        assert fast["followups"][1]  # a note: the general path ran and was reported


# --- positions kept by load_study and reused by clean_study -----------------------------------


@pytest.fixture
def loaded(tmp_path, monkeypatch):
    # the tiny study is below the size at which load_study keeps positions: lower it
    monkeypatch.setattr(L, "_PARALLEL_MIN_ROWS", 1)
    return load_study(write_study(tmp_path, build_study()))


def _general_rows(tables):
    return C._all_patient_rows(tables, None)


def test_load_study_keeps_positions_that_clean_study_reuses(loaded):
    assert set(loaded._keys.rows) >= {(t, "patient_id") for t in C._PATIENT_TABLES}
    assert "patients" in loaded._keys.unique
    clean = clean_study(loaded)
    known = C._known_patient_rows(loaded._keys, loaded.tables, clean.tables, clean.summary.values.tolist())
    assert set(known) == set(C._PATIENT_TABLES)
    general = _general_rows(clean.tables)
    for name in C._PATIENT_TABLES:
        np.testing.assert_array_equal(known[name], general[name])
        np.testing.assert_array_equal(C.patient_rows(clean, name), general[name])
    # and clean_study as a whole is that of a study object without the facts
    plain = clean_study(SimpleNamespace(tables=loaded.tables, dictionary=DD))
    pd.testing.assert_frame_equal(plain.exclusions, clean.exclusions)
    for name in clean.tables:
        pd.testing.assert_frame_equal(plain.tables[name], clean.tables[name])


def test_positions_not_reused_after_the_table_was_modified_in_place(loaded):
    followups = loaded.tables["followups"]
    moved = followups["patient_id"].iloc[0]
    followups.loc[0, "patient_id"] = "PT012"  # in place: the loaded positions no longer hold
    assert loaded._keys.positions("followups", "patient_id", followups["patient_id"],
                                  loaded.tables["patients"]["patient_id"]) is None
    assert not loaded._keys.is_unique("patients", loaded.tables["patients"]["patient_id"].astype(object))
    # the moved follow-up predates PT012's baseline: flagged (not excluded), it stays the kept copy at row 0
    clean = clean_study(loaded, plausibility={"followup_before_baseline": "flag"})
    known = C._known_patient_rows(loaded._keys, loaded.tables, clean.tables, clean.summary.values.tolist())
    assert "followups" not in known and {"records", "physio"} <= set(known)
    rows = C.patient_rows(clean, "followups")
    assert moved != "PT012"
    assert rows[0] == clean.patients["patient_id"].tolist().index("PT012")
    np.testing.assert_array_equal(rows, _general_rows(clean.tables)["followups"])


def test_patient_table_modified_in_place_disables_every_reuse(loaded):
    patients = loaded.tables["patients"]
    patients.loc[0, "patient_id"] = "PT999"
    assert not loaded._keys.is_unique("patients", patients["patient_id"])
    clean = clean_study(loaded)
    assert C._known_patient_rows(loaded._keys, loaded.tables, clean.tables, clean.summary.values.tolist()) == {}
    assert (C.patient_rows(clean, "followups") == 0).sum() == 0  # PT001's follow-ups lost their patient


def test_positions_mapped_to_clean_rows(loaded):
    clean = clean_study(loaded)
    tables = dict(clean.tables)
    # clean tables are indexed by input position: drop rows of each (as cleaning may) and check the mapping
    tables["patients"] = tables["patients"].drop(index=[0, 5])
    tables["followups"] = tables["followups"].drop(index=[1, 2])
    known = C._known_patient_rows(loaded._keys, loaded.tables, tables, clean.summary.values.tolist())
    general = _general_rows(tables)
    assert set(known) == set(C._PATIENT_TABLES)
    for name in C._PATIENT_TABLES:
        np.testing.assert_array_equal(known[name], general[name])
    assert (known["followups"] == -1).any()  # follow-ups of the dropped patients


def test_no_reuse_when_cleaning_changed_an_identifier(loaded):
    clean = clean_study(loaded)
    summary = [*clean.summary.values.tolist(), ("records", "patient_id", "blank", 1, False)]
    known = C._known_patient_rows(loaded._keys, loaded.tables, clean.tables, summary)
    assert "records" not in known and "followups" in known
    summary.append(("patients", "patient_id", "blank", 1, False))
    assert C._known_patient_rows(loaded._keys, loaded.tables, clean.tables, summary) == {}


def test_no_positions_kept_when_patient_ids_repeat(tmp_path, monkeypatch):
    monkeypatch.setattr(L, "_PARALLEL_MIN_ROWS", 1)
    tables = build_study()
    tables["patients"] = pd.concat([tables["patients"], tables["patients"].iloc[[3]]], ignore_index=True)
    study = load_study(write_study(tmp_path, tables))  # an exact repeat: noted, not an error
    assert study.notes
    assert "patients" not in study._keys.unique
    assert not any(column == "patient_id" for _, column in study._keys.rows)  # all point at patients
    clean = clean_study(study)
    general = _general_rows(clean.tables)
    for name in C._PATIENT_TABLES:
        np.testing.assert_array_equal(C.patient_rows(clean, name), general[name])


# --- row keys and exclusion texts as Arrow str arrays ---------------------------------------------


def _old_row_keys(raw, key, positions):
    """The former object-array implementation (the reference)."""
    parts = []
    for k in key:
        if k in raw.columns:
            vals = raw[k].take(positions)
            if pd.api.types.is_string_dtype(vals.dtype) and vals.dtype != object:
                parts.append(vals.fillna("").to_numpy(dtype=object))
                continue
            codes, uniques = pd.factorize(vals, use_na_sentinel=True)
            text = np.asarray([C._fmt(u) for u in uniques] + [""], dtype=object)
            parts.append(text[np.where(codes < 0, len(uniques), codes)])
    if not parts:
        return np.asarray([str(p) for p in positions], dtype=object)
    out = parts[0]
    for p in parts[1:]:
        out = out + "|" + p
    return out


RAW = pd.DataFrame({
    "arrow": pd.Series(["P1", None, "P3", "P4", "P5"], dtype="str"),
    "python": pd.Series(["a", "b", None, "d", "e"], dtype=pd.StringDtype("python", na_value=np.nan)),
    "obj": pd.Series(["x", 2, None, 4.0, "y"], dtype=object),
    "int": pd.Series([2, 6, 2, 6, 12]),
    "float": pd.Series([2.0, np.nan, 6.5, 1.0, 3.0]),
    "nullable": pd.Series([1, None, 3, 4, 5], dtype="Int64"),
})


@pytest.mark.parametrize("key", [("arrow",), ("python",), ("obj",), ("int",), ("float",), ("nullable",),
                                 ("arrow", "int"), ("arrow", "python", "float"), ("missing",), ()])
@pytest.mark.parametrize("positions", [[0, 1, 2, 3, 4], [4, 1, 1], []])
def test_row_keys_agree_with_object_implementation(key, positions):
    positions = np.asarray(positions, dtype="int64")
    new = C._row_keys(RAW, key, positions)
    old = _old_row_keys(RAW, key, positions)
    assert list(new) == list(old)
    if any(k in RAW.columns for k in key):
        assert pd.Series(new).dtype == "str"  # no Python objects: an Arrow str array


@pytest.mark.parametrize("values", [
    pd.Series(["a", None, "c"], dtype="str"),
    pd.Series(["a", None, "c"], dtype="category"),
    pd.Series([1, None, 3], dtype="category"),  # categories not text: general path
    pd.Series(["a", None, 3], dtype=object),
    pd.Series(["a", None, "c"], dtype=pd.StringDtype("python", na_value=np.nan)),
])
def test_text_values_agree_with_astype_object(values):
    new = C._text_values(values)
    assert list(new) == list(values.astype(object).fillna("").to_numpy(dtype=object))


def test_exclusions_of_a_loaded_study_match_those_of_plain_tables(loaded):
    clean = clean_study(loaded)
    # object tables: every text column is held as Python objects, so the general paths run
    plain = clean_study(SimpleNamespace(tables={k: v.astype(object) for k, v in loaded.tables.items()},
                                        dictionary=DD))
    pd.testing.assert_frame_equal(plain.exclusions, clean.exclusions)
    assert (clean.exclusions["stage"] == "analysis").sum() > 0


# --- identifier pattern: byte-class check == the regex ---------------------------------------------

PATTERN = "^[A-Za-z0-9_-]+$"


@pytest.mark.parametrize("pattern", [PATTERN, "^[a-z]+$", "^[-a]+$", "^[0-9A-F]+$"])
def test_byte_class_agrees_with_the_regex(pattern):
    allowed = S._byte_class(pattern)
    assert allowed is not None
    alphabet = ["a", "Z", "0", "9", "_", "-", " ", "\n", "é", "ß", ".", "A", "f", "[", "`", "{", "/", ":"]
    rng = np.random.default_rng(3)
    for _ in range(300):
        words = ["".join(rng.choice(alphabet, int(rng.integers(0, 4)))) for _ in range(int(rng.integers(0, 5)))]
        words += [None] * int(rng.integers(0, 2))
        arr = pa.array(words, type=pa.large_string())
        for values in (arr, arr.slice(1), pa.chunked_array([arr, arr.slice(1)], type=pa.large_string())):
            expected = all(v is None or (pc.match_substring_regex(pa.array([v]), pattern)[0].as_py())
                           for v in values.to_pylist())
            assert S._all_in_class(values, allowed) == expected, (pattern, values)


@pytest.mark.parametrize("pattern", ["^[a_-z]+$", "^[A-z]+$", r"^[\w]+$", "^[A-Z]*$", "[A-Z]+$", "^[^A]+$",
                                     "^[a-z]+[0-9]$", "^[A-Z.]+$"])
def test_byte_class_refuses_other_patterns(pattern):
    assert S._byte_class(pattern) is None


def test_pattern_check_row_wise_answer_unchanged():
    check = S.valid_values(DD["patients"].columns["patient_id"])
    values = pd.Series(["PT1", "PT 2", None, "", "PT_3-x", "Pé"], dtype="str")
    assert check(values).tolist() == [True, False, True, False, True, False]
    assert check(pd.Series(["PT1", None, "A-9"], dtype="str")).tolist() == [True, True, True]


# --- foreign keys: binary search in a sorted parent == hash lookup ------------------------------------


def _large(values):
    return pa.chunked_array([pa.array(values, type=pa.large_string())])


@pytest.mark.parametrize("children", [
    [["PT002", "PT001", None, "PT009", "PT000", "PT003"], ["PT003", "PT003"]],  # absent, below, above, missing
    [[None, None], []],
    [["PT001", "PT1"]],  # another width: refused
    [["PT001", "PT\x0001"]],  # a NUL byte: refused
])
def test_sorted_positions_agree_with_hash_lookup(children):
    parent = pa.array(["PT001", "PT002", "PT003", "PT005"], type=pa.large_string())
    kids = [_large(c) for c in children]
    hashed = L._hashed_positions(parent, kids)
    fast = L._sorted_positions(parent, kids)
    if any(v is not None and (len(v) != 5 or "\x00" in v) for c in children for v in c):
        assert fast is None
        return
    assert fast is not None
    for f, h in zip(fast, hashed, strict=True):
        assert f.tolist() == h.tolist()


@pytest.mark.parametrize("parent", [["PT001", "PT02"], ["PT001", None], ["PT\x0001", "PT002"], []])
def test_fixed_width_refuses_what_numpy_would_compare_differently(parent):
    assert L._fixed_width(pa.array(parent, type=pa.large_string())) is None


def test_fixed_width_view_of_a_slice():
    arr = pa.array(["AA1", "AB2", "AC3", "AD4"], type=pa.large_string()).slice(1, 2)
    assert L._fixed_width(arr).tolist() == [b"AB2", b"AC3"]


def test_load_study_with_the_sorted_lookup_reports_orphans_as_before(tmp_path, monkeypatch):
    tables = build_study()
    tables["records"] = tables["records"].astype({"patient_id": "object"})
    tables["records"].loc[1, "patient_id"] = "PT099"  # an orphan, same width
    folder = write_study(tmp_path, tables)
    with pytest.raises(L.StudyValidationError) as general:
        load_study(folder)
    monkeypatch.setattr(L, "_PARALLEL_MIN_ROWS", 1)  # the tiny parent now takes the sorted path
    called = []
    original = L._sorted_positions
    monkeypatch.setattr(L, "_sorted_positions", lambda *a: called.append(1) or original(*a))
    with pytest.raises(L.StudyValidationError) as fast:
        load_study(folder)
    assert called
    pd.testing.assert_frame_equal(fast.value.problems, general.value.problems)
    assert "PT099" in str(fast.value)


def test_sorted_positions_compare_bytes_unsigned_as_arrow_does():
    parent = pa.array(sorted(["PTa01", "PTé1", "PTz01", "PT\x7f01", "PTÿ1"], key=lambda v: v.encode()),
                      type=pa.large_string())
    assert L._strictly_increasing([pd.Series(pd.array(parent, dtype="str"))])
    kids = [_large(["PTé1", "PTÿ1", "PTa01", "PTb01", "PT\x7f01", None])]
    fast = L._sorted_positions(parent, kids)
    assert fast is not None
    assert fast[0].tolist() == L._hashed_positions(parent, kids)[0].tolist() == [3, 4, 0, -1, 2, -1]


# --- foreign keys: a parent numbered without gaps needs no search --------------------------------------


def _numbered_parent(values):
    return pa.array(values, type=pa.large_string())


@pytest.mark.parametrize("parent, expected", [
    (["PT007", "PT008", "PT009", "PT010"], True),
    (["00998", "00999", "01000"], True),  # no prefix: digits only
    (["P1-08", "P1-09", "P1-10"], True),  # a prefix ending in a digit before the last non-digit
    (["PT007", "PT008", "PT010"], False),  # a gap
    (["PT007", "PT008", "PT00:"], False),  # ":" sorts after "9": not a digit
    (["PT007", "PS008", "PT009"], False),  # another prefix (not sorted either; refused anyway)
    (["PTAAA", "PTAAB"], False),  # no trailing digit
    (["P" + "0" * 18 + "1", "P" + "0" * 18 + "2"], False),  # 19 digits: more than an int64 holds
])
def test_numbered_parent_only_when_gapless(parent, expected):
    view = L._fixed_width(_numbered_parent(parent))
    assert (L._numbered(view) is not None) is expected


@pytest.mark.parametrize("parent", [
    ["PT007", "PT008", "PT009", "PT010"],
    ["00998", "00999", "01000"],
    ["P1-08", "P1-09", "P1-10"],
    ["PT007", "PT008", "PT010"],  # a gap: binary search
    ["AB" + str(n).zfill(12) for n in range(3_000_000_000, 3_000_000_005)],  # numbers beyond int32
])
def test_numbered_positions_agree_with_hash_lookup(parent):
    width = len(parent[0])
    kids = [_large(parent[::-1] + [None, "PT006", "PT011", "PT00/", "PT00:", "PS008", "pt008",
                                   "00997", "01001", "P1-07", "P1-11", "P2-09", "P1.09"]
                   + ["AB" + str(n).zfill(12) for n in (2_999_999_999, 3_000_000_005, 0, 7_294_967_299)])]
    kids = [_large([v for v in kid.to_pylist() if v is None or len(v) == width]) for kid in kids]
    parent_array = _numbered_parent(parent)
    hashed = L._hashed_positions(parent_array, kids)
    fast = L._sorted_positions(parent_array, kids)
    assert fast is not None
    assert fast[0].tolist() == hashed[0].tolist()
    assert sorted(p for p in fast[0].tolist() if p >= 0) == list(range(len(parent)))


def test_numbered_positions_directly():
    parent = L._fixed_width(_numbered_parent(["PT007", "PT008", "PT009", "PT010"]))
    prefix, lo = L._numbered(parent)
    view = L._fixed_width(_numbered_parent(["PT010", "PT006", "PT011", "PT00:", "PU008", "PT007", "PT0/8"]))
    assert L._numbered_positions(view, prefix, lo, len(parent)).tolist() == [3, -1, -1, -1, -1, 0, -1]
    parent = L._fixed_width(_numbered_parent(["10", "11", "12"]))
    prefix, lo = L._numbered(parent)
    assert len(prefix) == 0 and lo == 10
    view = L._fixed_width(_numbered_parent(["12", "09", "13", "1a", "10"]))
    assert L._numbered_positions(view, prefix, lo, 3).tolist() == [2, -1, -1, -1, 0]


def test_filled_matches_fill_null():
    index = pc.index_in(pa.array(["a", None, "c", "x", "b"]), value_set=pa.array(["a", "b", "c"]))
    assert L._filled(index).tolist() == index.fill_null(-1).to_numpy(zero_copy_only=False).tolist() == \
        [0, -1, 2, -1, 1]
    assert L._filled(index.slice(2)).tolist() == [2, -1, 1]
    assert L._filled(pa.chunked_array([index.slice(0, 2), index.slice(2)])).tolist() == [0, -1, 2, -1, 1]
    no_null = pc.index_in(pa.array(["b", "a"]), value_set=pa.array(["a", "b"]))
    assert L._filled(no_null).tolist() == [1, 0]


def test_foreign_key_lookups_in_the_pool_report_in_key_order(tmp_path, monkeypatch):
    tables = build_study()
    for name, column, value in [("records", "patient_id", "PT099"), ("patients", "gp_id", "G99"),
                                ("consultations", "practice_id", "P99"), ("physio", "physio_id", "T99")]:
        tables[name] = tables[name].astype({column: "object"})
        tables[name].loc[1, column] = value
    for name in ("practices", "clinicians"):  # unsorted parents: hash lookups
        tables[name] = tables[name].iloc[::-1].reset_index(drop=True)
    folder = write_study(tmp_path, tables)
    with pytest.raises(L.StudyValidationError) as general:
        load_study(folder)
    monkeypatch.setattr(L, "_PARALLEL_MIN_ROWS", 1)  # the hash lookups now run in the pool
    submitted = []
    pool = L._pool()

    class Recording:
        def submit(self, fn, *args):
            submitted.append(fn)
            return pool.submit(fn, *args)

        def map(self, *args):
            return pool.map(*args)

    monkeypatch.setattr(L, "_pool", lambda: Recording())
    with pytest.raises(L.StudyValidationError) as pooled:
        load_study(folder)
    assert L._hashed_positions in submitted
    pd.testing.assert_frame_equal(pooled.value.problems, general.value.problems)
    orphans = general.value.problems
    orphans = orphans[orphans["rule"].str.startswith("unknown")]
    assert orphans["column"].tolist() == ["practice_id", "gp_id", "physio_id", "patient_id"]  # by referenced key


@pytest.mark.parametrize("parent", [["PT001", "PT002", "PT003", "PT004"], ["PT001", "PT002", "PT003", "PT005"]])
def test_sorted_positions_chunk_by_chunk(parent):
    """Children of several chunks (empty, all missing, some missing, a slice) are looked up per chunk."""
    chunks = [[], [None, None], ["PT004", None, "PT001", "PT009"], ["PT003"], ["PT002", "PT005", "PT000", None, "PT003"]]
    arrays = [pa.array(c, type=pa.large_string()) for c in chunks]
    arrays[-1] = arrays[-1].slice(1, 3)  # a chunk that starts inside its buffers: PT005, PT000, None
    kids = [pa.chunked_array(arrays, type=pa.large_string()),
            pa.chunked_array(arrays[2:4], type=pa.large_string()),
            pa.chunked_array([], type=pa.large_string())]
    parent_array = pa.array(parent, type=pa.large_string())
    fast = L._sorted_positions(parent_array, kids)
    hashed = L._hashed_positions(parent_array, kids)
    assert fast is not None
    assert [f.tolist() for f in fast] == [h.tolist() for h in hashed]
    assert fast[0].tolist() == [parent.index(v) if v in parent else -1 for v in kids[0].to_pylist()]
    other_width = pa.chunked_array([pa.array(["PT001"], type=pa.large_string()),
                                    pa.array([None, "PT0001"], type=pa.large_string())])
    assert L._sorted_positions(parent_array, [other_width]) is None  # a later chunk refuses: the caller hashes


def test_early_foreign_key_lookups_agree_with_the_final_ones(tmp_path, monkeypatch):
    tables = build_study()
    for name, column, value in [("records", "patient_id", "PT099"), ("physio", "patient_id", "PT0X1"),
                                ("followups", "patient_id", None)]:
        tables[name] = tables[name].astype({column: "object"})
        tables[name].loc[1, column] = value
    folder = write_study(tmp_path, tables)
    monkeypatch.setattr(L, "_PARALLEL_MIN_ROWS", 1)  # every table checked in the background, parents prepared

    def run():
        with pytest.raises(L.StudyValidationError) as err:
            load_study(folder)
        return err.value.problems

    made = []
    original = L._EarlyLookups
    monkeypatch.setattr(L, "_EarlyLookups", lambda: made.append(original()) or made[-1])
    early_problems = run()
    assert ("patients", "patient_id") in made[-1].parents
    assert {"followups", "records", "physio"} <= {table for table, _ in made[-1].rows}
    positions = {key: rows.tolist() for key, rows in made[-1].rows.items()}
    monkeypatch.setattr(L, "_check_table_and_look_up", lambda *args: L._check_table(*args[:8]))
    assert_late = run()
    pd.testing.assert_frame_equal(early_problems, assert_late)
    assert not made[-1].rows and not made[-1].parents
    assert "PT099" in str(early_problems["examples"].tolist())
    # the early positions are those the final check computes for the same columns
    study = load_dictionary()
    for (table, column), rows in positions.items():
        fk = next(f for f in study.foreign_keys if (f.table, f.column) == (table, column))
        def raw(name, col):
            values = pd.read_csv(folder / f"{name}.csv", dtype=str, keep_default_na=False, na_values=[""])[col]
            return pa.array(values.astype(object), type=pa.large_string(), from_pandas=True)

        parent, child = raw(fk.ref_table, fk.ref_column), raw(table, column)
        assert rows == L._hashed_positions(parent, [pa.chunked_array([child])])[0].tolist()
