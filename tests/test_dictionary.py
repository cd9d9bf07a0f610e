"""The data dictionary parses, is self-consistent and matches its generated Markdown."""

from __future__ import annotations

from pathlib import Path

from backpain_analysis import load_dictionary

ROOT = Path(__file__).resolve().parents[1]


def test_fixed_column_names_present():
    dd = load_dictionary()
    patients = dd["patients"].columns
    for prefix, n in [("sbst_", 9), ("rmdq_", 24)]:
        assert [f"{prefix}{i}" for i in range(1, n + 1)] == [c for c in patients if c.startswith(prefix)]
    assert {"eq5d_mo", "eq5d_sc", "eq5d_ua", "eq5d_pd", "eq5d_ad"} <= set(patients)
    assert [f"pabs_{i}" for i in range(1, 20)] == [c for c in dd["clinician_surveys"].columns if c.startswith("pabs_")]


def test_every_table_of_the_data_model():
    assert load_dictionary().table_names == [
        "practices", "clinicians", "clinician_surveys", "consultations", "patients", "followups", "records", "physio",
        "withdrawals",
    ]
    assert [t for t in load_dictionary().table_names if load_dictionary()[t].optional] == ["withdrawals"]


def test_missing_codes_never_shadow_valid_values():
    dd = load_dictionary()
    for table in dd.tables.values():
        for col in table:
            for code in col.missing_codes:
                if code.lower() in col.text_to_code():
                    raise AssertionError(f"{table.name}.{col.name}: missing code {code!r} is a valid answer")
                try:
                    value = float(code)
                except ValueError:
                    continue
                if col.min is not None and col.max is not None:
                    assert not (col.min <= value <= col.max), (table.name, col.name, code)


def test_sbst_item9_codes():
    col = load_dictionary()["patients"].columns["sbst_9"]
    assert col.text_to_code()["very much"] == 3
    assert col.text_to_code()["extremely"] == 4
    assert "9" in col.missing_codes


def test_foreign_keys_point_at_known_columns():
    dd = load_dictionary()
    for fk in dd.foreign_keys:
        assert fk.column in dd[fk.table].columns
        assert fk.ref_column in dd[fk.ref_table].columns


def test_markdown_is_up_to_date():
    """docs/data_dictionary.md is generated (make docs); it must match the YAML."""
    expected = load_dictionary().to_markdown() + "\n"
    assert (ROOT / "docs" / "data_dictionary.md").read_text(encoding="utf-8") == expected, "run `make docs`"
