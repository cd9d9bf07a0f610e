"""Map a study database's own export (its file names, column names, codes and dates) onto the data dictionary.

A real export rarely follows ``data/data_dictionary.yaml``: a REDCap project exports one file
with one row per record and time point (``redcap_event_name``), labels instead of codes
(``Gender`` = ``M``/``F``, ``SBST_Q1`` = ``Yes``/``No``), checkbox fields as one column per
option (``rmdq___1`` = ``Checked``/``Unchecked``), its own missing-data codes (``UNK``), dates
such as ``2008-03-05T00:00`` and its own names for the two study phases. A **mapping file**
(YAML) says, once, how such an export becomes the dictionary's tables; :func:`load_study` with
``mapping=`` applies it before validating, every recoded cell goes to the cleaning log (rule
``mapping``), and problems name the export's own files, columns and rows.

The mapping file::

    version: 1
    date_format: "%Y-%m-%dT%H:%M"        # optional: how dates are written (strptime codes)
    missing: [UNK, "-999"]               # optional: values meaning missing, in every column
    phases:                              # optional: what the export calls the study phases
      1: baseline cohort                 #   (codes of the dictionary's `phase` columns)
      3: intervention cohort
    tables:
      patients:                          # a table of the data dictionary
        file: IMPACT_DATA_LABELS.csv     # the export file it comes from (.csv, .parquet, .xlsx)
        rows: {redcap_event_name: Baseline}   # optional: only rows with these values
        columns:                         # dictionary column: export column
          patient_id: record_id
          age: Age_at_consult
          sex: {from: Gender, values: {F: female, M: male}}
          rmdq_1: {from: rmdq___1, values: {Checked: 1, Unchecked: 0}}
          baseline_date: {from: date_baseline, date_format: "%d.%m.%Y"}   # per column too
          pain_nrs: {from: pain_score, missing: ["n/k"]}                  # per column too

``values`` keys are matched ignoring case and surrounding spaces; a value of ``null`` means
missing; values not listed pass unchanged (the dictionary's own labels and aliases are still
accepted). Tables the mapping does not name are read from ``<table>.csv`` (``.parquet``,
``.xlsx``) as usual. ``yes``/``no``/``true``/``on`` in the mapping file are text, not booleans.

:func:`draft_mapping` (``backpain map DIR --draft mapping.yaml``) writes a first version from
an export's headers and distinct values for the user to confirm.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from .dictionary import Column, DataDictionary, Table, load_dictionary
from .errors import BackpainError

__all__ = [
    "MAPPING_LOG_COLUMNS",
    "MappedExport",
    "MappingError",
    "StudyMapping",
    "draft_mapping",
    "load_mapping",
    "read_mapped",
    "read_mapping_log",
    "write_mapped_study",
]

#: Columns of :attr:`MappedExport.log` (``Study.mapping_log``): the cleaning log's columns plus the export's column.
MAPPING_LOG_COLUMNS: tuple[str, ...] = ("table", "row", "row_key", "column", "old_value", "new_value", "rule",
                                        "export_column")
#: File formats an export may come in.
EXPORT_FORMATS: tuple[str, ...] = (".csv", ".parquet", ".xlsx")
_TOP_KEYS = ("version", "description", "date_format", "missing", "phases", "tables")
_TABLE_KEYS = ("file", "rows", "columns", "date_format", "missing")
_COLUMN_KEYS = ("from", "values", "missing", "date_format")


class MappingError(BackpainError):
    """A mapping file that cannot be used: names the mapping file, the table and the key."""


# ----------------------------------------------------------------------------------------
# the mapping file
# ----------------------------------------------------------------------------------------


class _TextBoolLoader(yaml.SafeLoader):
    """YAML safe loader reading ``yes``/``no``/``true``/``on``/``off`` as text: they are export values here."""


_TextBoolLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _norm_value(value: Any) -> str:
    """An export value as compared with the mapping's keys: text, stripped, case-folded (``1.0`` -> ``1``)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip().casefold()


@dataclass(frozen=True)
class ColumnMap:
    """How one dictionary column is made from one export column."""

    target: str
    source: str
    #: normalized export value -> (export value as written in the mapping file, dictionary value or None)
    values: dict[str, tuple[str, Any]] = field(default_factory=dict)
    missing: frozenset[str] = frozenset()
    date_format: str | None = None


@dataclass(frozen=True)
class TableMap:
    """Where one dictionary table comes from: ``file``, the ``rows`` filter and the ``columns``."""

    name: str
    file: str
    rows: dict[str, tuple[str, ...]]
    columns: dict[str, ColumnMap]


@dataclass(frozen=True)
class StudyMapping:
    """A validated mapping file (:func:`load_mapping`)."""

    tables: dict[str, TableMap]
    phases: dict[Any, tuple[str, ...]]
    missing: tuple[str, ...]
    date_format: str | None
    source: str  # the mapping file's path, or "<mapping>" for a dict

    def export_column(self, table: str, column: str) -> str | None:
        """The export column a dictionary column comes from (``None`` if not mapped)."""
        tmap = self.tables.get(table)
        cmap = tmap.columns.get(column) if tmap else None
        return cmap.source if cmap else None


def _fail(source: str, where: str, message: str) -> MappingError:
    return MappingError(f"mapping file {source}: {where}: {message}" if where else f"mapping file {source}: {message}")


def _hint(name: Any, known: list[str]) -> str:
    close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(known)}"


def _check_keys(spec: Any, allowed: tuple[str, ...], source: str, where: str) -> dict:
    if not isinstance(spec, dict):
        raise _fail(source, where, f"must be a mapping (key: value lines), not {type(spec).__name__} {spec!r}")
    for key in spec:
        if key not in allowed:
            raise _fail(source, where, f"unknown key {key!r}" + _hint(key, list(allowed)))
    return spec


def _date_format(value: Any, source: str, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or "%" not in value:
        raise _fail(source, where, f"date_format must be a strptime pattern such as '%Y-%m-%dT%H:%M', not {value!r}")
    sample = _dt.datetime(2008, 3, 5, 0, 0)
    try:
        back = _dt.datetime.strptime(sample.strftime(value), value)
    except ValueError as exc:
        raise _fail(source, where, f"date_format {value!r} is not a usable strptime pattern ({exc})") from None
    if back.date() != sample.date():
        raise _fail(source, where, f"date_format {value!r} does not hold a whole date (year, month and day)")
    return value


def _missing(value: Any, source: str, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or any(isinstance(v, (dict, list)) for v in value):
        raise _fail(source, where, f"missing must be a list of values such as [UNK, '-999'], not {value!r}")
    return tuple(_norm_value(v) for v in value if v is not None)


def _target_value(value: Any, col: Column, source: str, where: str) -> Any:
    """A dictionary value written in the mapping file, checked against the column; ``None`` = missing."""
    if value is None:
        return None
    if col.codes is not None:
        for code in col.codes:
            if value == code or (isinstance(code, str) and isinstance(value, str) and value.strip() == code):
                return code
        by_label = col.text_to_code().get(str(value).strip().lower())
        if by_label is not None:
            return by_label
        allowed = ", ".join(f"{c!r} ({lab})" if str(c) != str(lab) else repr(c) for c, lab in col.codes.items())
        raise _fail(source, where, f"{value!r} is not a code of this column; allowed: {allowed} (or null for missing)")
    if col.type in ("integer", "float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(source, where, f"{value!r} is not a number ({col.type} column); use a number or null")
        return value
    if isinstance(value, (dict, list)):
        raise _fail(source, where, f"{value!r} must be a single value")
    return str(value)


def _column_map(target: str, spec: Any, col: Column, source: str, where: str) -> ColumnMap:
    if isinstance(spec, str):
        return ColumnMap(target, spec)
    if spec is None:
        raise _fail(source, where, "no export column given (write the export column's name, or {from: NAME, ...})")
    spec = _check_keys(spec, _COLUMN_KEYS, source, where)
    name = spec.get("from")
    if not isinstance(name, str) or not name:
        raise _fail(source, where, f"'from' must name the export column, not {name!r}")
    values: dict[str, tuple[str, Any]] = {}
    raw_values = spec.get("values") or {}
    if not isinstance(raw_values, dict):
        raise _fail(source, f"{where}.values", f"must map export values to dictionary values, not {raw_values!r}")
    for key, value in raw_values.items():
        if key is None:
            raise _fail(source, f"{where}.values", "an empty key: write the export value (quoted if needed)")
        code = _target_value(value, col, source, f"{where}.values[{key!r}]")
        norm = _norm_value(key)
        if norm in values and values[norm][1] != code:
            raise _fail(source, f"{where}.values", f"{values[norm][0]!r} and {key!r} are the same export value "
                        "(case and spaces are ignored) but map to different values")
        values[norm] = (str(key), code)
    return ColumnMap(target, name, values, frozenset(_missing(spec.get("missing"), source, f"{where}.missing")),
                     _date_format(spec.get("date_format"), source, f"{where}.date_format"))


def load_mapping(mapping: str | Path | dict | StudyMapping, dictionary: DataDictionary | None = None) -> StudyMapping:
    """Read and check a mapping file (or a dict of the same shape).

    Parameters
    ----------
    mapping : str, Path, dict or StudyMapping
        The mapping YAML file (see the module documentation for its format), or its content as a dict.
    dictionary : DataDictionary, optional
        The data dictionary the mapping targets (default: the bundled one).

    Returns
    -------
    StudyMapping
        ``tables`` (dictionary table -> :class:`TableMap` with ``file``, ``rows`` and
        ``columns``), ``phases`` (phase code -> names), ``missing``, ``date_format``, ``source``.

    Raises
    ------
    MappingError
        The file is missing or not YAML, or a key, table, column or value is not one the
        dictionary knows; the message names the mapping file, the table and the key.

    Examples
    --------
    >>> m = load_mapping({"tables": {"patients": {"file": "export.csv", "columns": {
    ...     "patient_id": "record_id", "sex": {"from": "Gender", "values": {"F": "female", "M": "male"}}}}}})
    >>> m.export_column("patients", "sex"), m.tables["patients"].columns["sex"].values["f"]
    ('Gender', ('F', 'female'))
    >>> load_mapping({"tables": {"patients": {"file": "x.csv", "columns": {"gender": "Gender"}}}})
    Traceback (most recent call last):
    ...
    backpain_analysis.mapping.MappingError: mapping file <mapping>: tables.patients.columns: unknown column 'gender' of table patients in the data dictionary; did you mean 'sex'?
    """
    if isinstance(mapping, StudyMapping):
        return mapping
    dd = dictionary or load_dictionary()
    if isinstance(mapping, dict):
        raw, source = mapping, "<mapping>"
    else:
        path = Path(mapping)
        source = str(path)
        if not path.is_file():
            raise MappingError(f"mapping file {source} not found")
        try:
            raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_TextBoolLoader)
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise MappingError(f"mapping file {source} is not valid YAML: {exc}") from None
    raw = _check_keys(raw, _TOP_KEYS, source, "")
    if raw.get("version", 1) not in (1, "1"):
        raise _fail(source, "version", f"this package reads mapping files of version 1, not {raw['version']!r}")
    missing = _missing(raw.get("missing"), source, "missing")
    date_format = _date_format(raw.get("date_format"), source, "date_format")
    phases: dict[Any, tuple[str, ...]] = {}
    phase_col = next((t.columns["phase"] for t in dd.tables.values() if "phase" in t.columns), None)
    if raw.get("phases") is not None:
        spec = raw["phases"]
        if not isinstance(spec, dict) or phase_col is None:
            raise _fail(source, "phases", f"must map each phase code to the export's name for it, not {spec!r}")
        seen: dict[str, Any] = {}
        for code, names in spec.items():
            code = _target_value(code, phase_col, source, f"phases[{code!r}]")
            names = names if isinstance(names, list) else [names]
            if not names or any(n is None or isinstance(n, (dict, list)) for n in names):
                raise _fail(source, f"phases[{code!r}]", "must be the export's name of this phase (or a list of names)")
            for name in names:
                if _norm_value(name) in seen and seen[_norm_value(name)] != code:
                    raise _fail(source, "phases", f"{name!r} names two phases")
                seen[_norm_value(name)] = code
            phases[code] = tuple(str(n) for n in names)
    tables_spec = raw.get("tables")
    if not isinstance(tables_spec, dict) or not tables_spec:
        raise _fail(source, "tables", "must map at least one table of the data dictionary to its export file")
    tables: dict[str, TableMap] = {}
    for tname, tspec in tables_spec.items():
        where = f"tables.{tname}"
        if tname not in dd.tables:
            raise _fail(source, "tables", f"unknown table {tname!r} (not in the data dictionary)" + _hint(tname, dd.table_names))
        table = dd[tname]
        tspec = _check_keys(tspec, _TABLE_KEYS, source, where)
        file = tspec.get("file")
        if not isinstance(file, str) or not file.strip():
            raise _fail(source, f"{where}.file", f"must name the export file the table comes from, not {file!r}")
        if Path(file).suffix.lower() not in EXPORT_FORMATS:
            raise _fail(source, f"{where}.file", f"{file!r}: an export file must end in {', '.join(EXPORT_FORMATS)}")
        rows: dict[str, tuple[str, ...]] = {}
        rows_spec = tspec.get("rows") or {}
        if not isinstance(rows_spec, dict):
            raise _fail(source, f"{where}.rows", f"must map an export column to the value(s) of the rows to keep, not {rows_spec!r}")
        for col, wanted in rows_spec.items():
            wanted = wanted if isinstance(wanted, list) else [wanted]
            if not wanted or any(w is None or isinstance(w, (dict, list)) for w in wanted):
                raise _fail(source, f"{where}.rows.{col}", "must be a value or a list of values")
            rows[str(col)] = tuple(str(w) for w in wanted)
        columns_spec = tspec.get("columns")
        if not isinstance(columns_spec, dict) or not columns_spec:
            raise _fail(source, f"{where}.columns", "must map dictionary columns to export columns")
        table_date = _date_format(tspec.get("date_format"), source, f"{where}.date_format")
        table_missing = _missing(tspec.get("missing"), source, f"{where}.missing")
        columns: dict[str, ColumnMap] = {}
        for cname, cspec in columns_spec.items():
            if cname not in table.columns:
                best = max(table.columns, key=lambda c: _name_score(_norm_name(cname), c))
                hint = f"; did you mean {best!r}?" if _name_score(_norm_name(cname), best) >= _CUTOFF else \
                    _hint(cname, list(table.columns))
                raise _fail(source, f"{where}.columns", f"unknown column {cname!r} of table {tname} in the data "
                            "dictionary" + hint)
            col = table.columns[cname]
            cmap = _column_map(cname, cspec, col, source, f"{where}.columns.{cname}")
            fmt = cmap.date_format or table_date or date_format
            if cmap.date_format and col.type != "date":
                raise _fail(source, f"{where}.columns.{cname}.date_format", f"{cname} is not a date column ({col.type})")
            values = dict(cmap.values)
            if cname == "phase" and phases:
                for code, names in phases.items():
                    for name in names:
                        values.setdefault(_norm_value(name), (name, code))
            columns[cname] = ColumnMap(cname, cmap.source, values, cmap.missing | frozenset(table_missing) | frozenset(missing),
                                       fmt if col.type == "date" else None)
        tables[tname] = TableMap(tname, file, rows, columns)
    return StudyMapping(tables, phases, missing, date_format, source)


# ----------------------------------------------------------------------------------------
# reading an export through a mapping
# ----------------------------------------------------------------------------------------


def _read_export_file(path: Path) -> pd.DataFrame:
    """An export file as text (blank cells missing), every column as written."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        kwargs: dict[str, Any] = {"dtype": "str", "keep_default_na": False, "na_values": [""]}
        with open(path, "rb") as fh:
            bom = fh.read(3) == b"\xef\xbb\xbf"
        if not bom:
            try:  # Arrow's reader: the same frame, 3x faster on a large all-text export
                return pd.read_csv(path, encoding="utf-8", engine="pyarrow", **kwargs)
            except Exception:  # anything Arrow cannot read goes to pandas' own parser below
                pass
        try:
            return pd.read_csv(path, encoding="utf-8-sig", **kwargs)
        except UnicodeDecodeError:
            return pd.read_csv(path, encoding="cp1252", **kwargs)
    from .loading import _cell_text

    df = pd.read_parquet(path) if suffix == ".parquet" else pd.read_excel(path, sheet_name=0, dtype=object,
                                                                          keep_default_na=False, na_values=[""])
    return pd.DataFrame({c: df[c].map(_cell_text, na_action="ignore").astype("str") for c in df.columns})


#: A number as pandas reads one from a CSV cell.
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _as_read(values: list[Any], kind: str) -> tuple[np.ndarray, str]:
    """Distinct mapped values typed as loading reads a CSV column: numbers numeric, else text."""
    if kind == "string":
        return np.asarray([None if v is None else str(v) for v in values], dtype=object), "str"
    numbers = []
    for v in values:
        if v is None:
            numbers.append(np.nan)
            continue
        if isinstance(v, bool):
            return np.asarray([None if v is None else str(v) for v in values], dtype=object), "str"
        if isinstance(v, (int, float, np.integer, np.floating)):
            numbers.append(float(v))
            continue
        text = str(v).strip()
        numbers.append(float(text) if _NUMBER.fullmatch(text) else None)  # not float(): it reads "1_3" as 13
        if numbers[-1] is None:
            text = [None if u is None else (str(int(u)) if isinstance(u, float) and u.is_integer() else str(u))
                    for u in values]
            return np.asarray(text, dtype=object), "str"
    return np.asarray(numbers, dtype="float64"), "float64"


def _key_text(df: pd.DataFrame, key: tuple[str, ...]) -> pa.Array:
    """Each row's key values as text joined by ``|`` (missing as ``""``), as the cleaning log writes them."""
    parts = []
    for k in key:
        if k not in df.columns:
            continue
        codes, uniques = pd.factorize(df[k], use_na_sentinel=True)
        text = pa.array([_show(u) for u in uniques] + [""], type=pa.large_string())
        parts.append(text.take(pa.array(np.where(codes < 0, len(uniques), codes))))
    if not parts:
        return pa.array([str(i) for i in range(len(df))], type=pa.large_string())
    return parts[0] if len(parts) == 1 else pc.binary_join_element_wise(*parts, pa.scalar("|", pa.large_string()))


@dataclass
class MappedExport:
    """An export read through a mapping (:func:`read_mapped`): the dictionary's tables, and where each came from.

    Attributes
    ----------
    tables : dict of str to DataFrame
        The mapped tables, dictionary column names, values recoded and typed as
        :func:`~backpain_analysis.load_study` reads a CSV file (numbers numeric, else text).
    files : dict of str to Path
        The export file each table came from.
    rows : dict of str to ndarray
        For each mapped table, the 0-based position in its export file of each row.
    log : DataFrame
        One row per recoded cell, columns :data:`MAPPING_LOG_COLUMNS` (rule ``mapping``).
    mapping : StudyMapping
    """

    tables: dict[str, pd.DataFrame]
    files: dict[str, Path]
    rows: dict[str, np.ndarray]
    log: pd.DataFrame
    mapping: StudyMapping

    def translate(self, problems: list[dict[str, Any]], offsets: dict[str, int], dictionary: DataDictionary) -> None:
        """Rewrite loading's problems of mapped tables with the export's own column names and row numbers (in place)."""
        for p in problems:
            tmap = self.mapping.tables.get(p.get("table"))
            if tmap is None:
                continue
            column = p.get("column") or ""
            names = [c.strip() for c in column.split(" + ")] if column else []
            if names and all(n in tmap.columns for n in names):
                p["column"] = " + ".join(tmap.columns[n].source for n in names)
                p["rule"] = f"{p['rule']} (data dictionary column {tmap.name}.{column})"
            elif names and p["rule"] == "required column missing":
                p["rule"] = (f"required column missing: the mapping file {self.mapping.source} names no export "
                             f"column for {tmap.name}.{column}")
            if p.get("examples"):
                p["examples"] = self._examples(p["examples"], tmap, offsets.get(tmap.name, 2),
                                               dictionary[tmap.name].key)

    def _examples(self, text: str, tmap: TableMap, offset: int, key: tuple[str, ...]) -> str:
        positions = self.rows.get(tmap.name)

        def row(match: re.Match) -> str:
            pos = int(match.group(2)) - offset
            if positions is None or not 0 <= pos < len(positions):
                return match.group(0)
            return f"{match.group(1)}row {int(positions[pos]) + offset}"

        text = re.sub(r"(^|; )row (\d+)", row, text)
        for k in key:
            if k in tmap.columns:
                text = re.sub(rf"(\(|, ){re.escape(k)}=", lambda m, k=k: f"{m.group(1)}{tmap.columns[k].source}=", text)
        return text


def read_mapped(folder: str | Path, mapping: str | Path | dict | StudyMapping, dictionary: DataDictionary | None = None,
                problems: Any = None, notes: list[str] | None = None) -> MappedExport:
    """Read an export folder through a mapping: the data dictionary's tables, recoded and logged.

    Parameters
    ----------
    folder : str or Path
        The export folder.
    mapping : str, Path, dict or StudyMapping
        The mapping file (:func:`load_mapping`).
    dictionary : DataDictionary, optional
        Default: the bundled data dictionary.
    problems : loading's problem collector, optional
        Where file and column problems go (``add(file, table, column, rule, n_rows, examples)``);
        without one, the first problem raises :class:`MappingError`.
    notes : list of str, optional
        Receives non-fatal observations (export columns no table uses).

    Returns
    -------
    MappedExport
        ``tables`` (mapped, typed as loading reads a CSV), ``files``, ``rows``, ``log``
        (:data:`MAPPING_LOG_COLUMNS`) and ``mapping``. Tables the mapping does not name are
        not included (``load_study`` reads them from ``<table>.csv`` as usual).

    Notes
    -----
    Per table: the export file is read as text (blank cells missing); rows are kept where
    every ``rows`` column holds one of its values (case and spaces ignored); each mapped
    column is built from its export column, on its distinct values: a value in the
    column's (or the file's) ``missing`` list becomes missing, a value listed in ``values``
    (or ``phases`` for ``phase``) becomes its dictionary value, a date column's values that
    parse with its ``date_format`` become ISO dates (``YYYY-MM-DD``); any other value passes
    unchanged for validation to judge. Each changed cell is one row of ``log``. The column
    is then typed as a CSV column is read: numeric when every value is a number, else text.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "sites.csv").write_text("site,name,size,gps\\nS1,North,9000,5\\n")
    >>> m = {"tables": {"practices": {"file": "sites.csv", "columns": {"practice_id": "site",
    ...      "practice_name": "name", "list_size": "size", "n_gps": "gps"}}}}
    >>> read_mapped(d, m).tables["practices"].to_dict("records")
    [{'practice_id': 'S1', 'practice_name': 'North', 'list_size': 9000, 'n_gps': 5}]
    """
    dd = dictionary or load_dictionary()
    smap = load_mapping(mapping, dd)
    folder = Path(folder)
    notes = notes if notes is not None else []

    def problem(file: str, table: str, column: str, rule: str) -> None:
        if problems is None:
            raise MappingError(f"{file}, column {column!r}: {rule}" if column else f"{file}: {rule}")
        problems.add(file, table, column, rule)

    cache: dict[str, pd.DataFrame | None] = {}
    used: dict[str, set[str]] = {}
    tables: dict[str, pd.DataFrame] = {}
    files: dict[str, Path] = {}
    rows_of: dict[str, np.ndarray] = {}
    log_blocks: list[pd.DataFrame] = []
    for tname, tmap in smap.tables.items():
        table = dd[tname]
        path = folder / tmap.file
        if tmap.file not in cache:
            if not path.is_file():
                present = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in EXPORT_FORMATS) \
                    if folder.is_dir() else []
                close = difflib.get_close_matches(tmap.file, present, n=1, cutoff=0.6)
                problem(tmap.file, tname, "", f"export file not found in {folder} (the mapping file {smap.source} "
                        f"reads table {tname} from it)" + (f"; did you mean {close[0]}?" if close else ""))
                cache[tmap.file] = None
            else:
                try:
                    cache[tmap.file] = _read_export_file(path)
                except Exception as exc:  # any reader failure is a problem of this file
                    problem(path.name, tname, "", f"could not be read: {exc}")
                    cache[tmap.file] = None
        raw = cache[tmap.file]
        if raw is None:
            continue
        files[tname] = path
        seen = used.setdefault(tmap.file, set())
        absent = [c for c in [*tmap.rows, *(m.source for m in tmap.columns.values())] if c not in raw.columns]
        for name in dict.fromkeys(absent):
            targets = [m.target for m in tmap.columns.values() if m.source == name]
            what = f"for {tname}.{', '.join(targets)}" if targets else f"to select the rows of table {tname}"
            problem(path.name, tname, name, f"column not found in the export; the mapping file {smap.source} names it "
                    f"{what}" + _hint(name, list(raw.columns)))
        if absent:
            continue
        keep = np.ones(len(raw), dtype=bool)
        for col, wanted in tmap.rows.items():
            seen.add(col)
            codes, uniques = pd.factorize(raw[col], use_na_sentinel=True)  # compared once per distinct value
            hit = np.asarray([_norm_value(u) in {_norm_value(w) for w in wanted} for u in uniques] + [False])
            keep &= hit[np.where(codes < 0, len(uniques), codes)]
            if not keep.any():
                present = ", ".join(repr(v) for v in raw[col].dropna().unique()[:10])
                problem(path.name, tname, col, f"no row has {col} = {' or '.join(map(repr, wanted))} (the mapping "
                        f"file {smap.source} selects table {tname}'s rows by it); values present: {present}")
                break
        if not keep.any():
            continue
        positions = np.flatnonzero(keep)
        needed = list(dict.fromkeys(m.source for m in tmap.columns.values()))
        sub = raw[needed] if keep.all() else raw.loc[keep, needed].reset_index(drop=True)
        out: dict[str, Any] = {}
        changes: list[tuple[str, str, np.ndarray, pa.Array, pa.Array]] = []
        for cname in [c for c in table.columns if c in tmap.columns]:  # in the dictionary's order
            cmap = tmap.columns[cname]
            seen.add(cmap.source)
            col = table.columns[cname]
            values, changed, old, new = _map_column(sub[cmap.source], cmap, col)
            out[cname] = values
            if changed.size:
                changes.append((cname, cmap.source, changed, old, new))
        df = pd.DataFrame(out, index=pd.RangeIndex(len(sub)))
        tables[tname] = df
        rows_of[tname] = positions
        if changes:
            keys = _key_text(df, table.key)
            for cname, source, changed, old, new in changes:
                n = len(changed)  # built in Arrow: a large export recodes millions of cells

                def text(value: Any, n: int = n) -> pd.Series:
                    return pd.Series(pa.repeat(pa.scalar(value, pa.large_string()), n), dtype="str")

                log_blocks.append(pd.DataFrame({
                    "table": text(tname), "row": changed.astype("int64"),
                    "row_key": pd.Series(keys.take(pa.array(changed)), dtype="str"), "column": text(cname),
                    "old_value": pd.Series(old, dtype="str"), "new_value": pd.Series(new, dtype="str"),
                    "rule": text("mapping"), "export_column": text(source)}))
    for file, raw in cache.items():
        if raw is None:
            continue
        unused = [c for c in raw.columns if c not in used.get(file, set())]
        if unused:
            shown = ", ".join(unused[:12]) + (f" and {len(unused) - 12} more" if len(unused) > 12 else "")
            notes.append(f"{file}: {len(unused)} column{'s' if len(unused) != 1 else ''} not used by the mapping: {shown}")
    if log_blocks:
        log = pd.concat(log_blocks, ignore_index=True)
    else:
        log = pd.DataFrame({c: pd.Series([], dtype="int64" if c == "row" else "str") for c in MAPPING_LOG_COLUMNS})
    for c in MAPPING_LOG_COLUMNS:
        if c != "row":
            log[c] = log[c].astype("str")
    return MappedExport(tables, files, rows_of, log[list(MAPPING_LOG_COLUMNS)], smap)


def _show(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _map_column(s: pd.Series, cmap: ColumnMap, col: Column) -> tuple[pd.Series, np.ndarray, pa.Array, pa.Array]:
    """One mapped column (typed as read) and its changes: positions, old and new values as text.

    Works on the distinct values; which of them the mapping touches is found in one vectorized
    pass, so an identifier column of a million distinct values costs no Python loop.
    """
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    text = pd.Series(uniques, dtype="str")
    hit = np.flatnonzero(text.str.strip().str.casefold().isin(cmap.missing | set(cmap.values)).to_numpy())
    if col.type == "string" and hit.size == 0:  # an identifier or name the mapping leaves as it is
        empty = pa.array([], type=pa.large_string())
        return s.astype("str").reset_index(drop=True), np.zeros(0, dtype="int64"), empty, empty
    originals = text.to_numpy(dtype=object)
    mapped: list[Any] = list(originals)
    for k in hit:
        norm = _norm_value(originals[k])
        mapped[k] = None if norm in cmap.missing else cmap.values[norm][1]
    if cmap.date_format:
        done = set(hit.tolist())
        for k, u in enumerate(originals):
            if k in done:
                continue
            try:
                when = _dt.datetime.strptime(u.strip(), cmap.date_format)
            except ValueError:
                continue  # left as written: validation names it
            mapped[k] = when.date().isoformat() if when.time() == _dt.time(0) else when.isoformat()
    typed, dtype = _as_read(mapped, "string" if col.type == "string" else "other")
    idx = np.where(codes < 0, len(uniques), codes)
    new_text = [_show(m) for m in mapped]
    changed_u = np.asarray([n != u for u, n in zip(originals, new_text, strict=True)] + [False], dtype=bool)
    changed = np.flatnonzero(changed_u[idx])
    at = pa.array(idx[changed])
    old = pa.array([*originals, ""], type=pa.large_string()).take(at)
    new = pa.array([*new_text, ""], type=pa.large_string()).take(at)
    if dtype == "str":
        values = pd.Series(np.append(typed, None)[idx], dtype="str")
    else:
        full = np.append(typed, np.nan)[idx]
        if not np.isnan(full).any() and (full == np.round(full)).all():
            values = pd.Series(full.astype("int64"))
        else:
            values = pd.Series(full)
    return values, changed, old, new


def read_mapping_log(folder: str | Path) -> pd.DataFrame:
    """The mapping log a mapped study folder carries (``mapping/mapping_log.csv``, see :func:`write_mapped_study`).

    Parameters
    ----------
    folder : str or Path
        A study folder written by :func:`write_mapped_study` (``backpain map --out``).

    Returns
    -------
    DataFrame
        :data:`MAPPING_LOG_COLUMNS`: ``table``, ``row`` (int64), ``row_key``, ``column``,
        ``old_value``, ``new_value``, ``rule`` and ``export_column``, all text but ``row``
        (blank values are ``""``, as in the cleaning log).

    Raises
    ------
    BackpainError
        The file lacks one of those columns.
    """
    path = Path(folder) / "mapping" / "mapping_log.csv"
    log = pd.read_csv(path, dtype="str", keep_default_na=False)
    absent = [c for c in MAPPING_LOG_COLUMNS if c not in log.columns]
    if absent:
        raise BackpainError(f"{path}: column(s) {absent} missing; expected {', '.join(MAPPING_LOG_COLUMNS)}")
    log = log[list(MAPPING_LOG_COLUMNS)]
    return log.assign(row=log["row"].astype("int64"))


def write_mapped_study(export_dir: str | Path, mapping: str | Path | dict | StudyMapping, out_dir: str | Path,
                       *, dictionary: DataDictionary | None = None) -> Path:
    """Apply a mapping and write the result as a study folder in the data dictionary's layout.

    Parameters
    ----------
    export_dir : str or Path
        The export folder.
    mapping : str, Path, dict or StudyMapping
        The mapping file.
    out_dir : str or Path
        Folder to write (created): one ``<table>.csv`` per table, the export's
        ``truth.json`` if it has one, and ``mapping/mapping_log.csv`` (the recoded cells) with
        ``mapping/mapping.yaml`` (a copy of the mapping file) for provenance.
        :func:`~backpain_analysis.load_study` of this folder reads the log back
        (``Study.mapping_log``), so the cleaning log still lists the mapping's recodes.
    dictionary : DataDictionary, optional
        Default: the bundled data dictionary.

    Returns
    -------
    Path
        ``out_dir``.

    Raises
    ------
    StudyValidationError
        The mapped export does not follow the data dictionary (checked by
        :func:`~backpain_analysis.load_study` before anything is written).

    Notes
    -----
    Used by ``backpain report --mapping`` (the chapter notebooks read a study folder): the
    study is loaded and validated through the mapping, then each table is written as CSV,
    values as the mapping left them (cleaning harmonizes the rest as usual). Tables the
    mapping does not name are copied as written.
    """
    import shutil

    from .loading import load_study

    study = load_study(export_dir, dictionary=dictionary, mapping=mapping)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, df in study.tables.items():
        df.to_csv(out / f"{name}.csv", index=False)
    truth = Path(export_dir) / "truth.json"
    if truth.is_file():
        shutil.copyfile(truth, out / "truth.json")
    prov = out / "mapping"
    prov.mkdir(exist_ok=True)
    log = getattr(study, "mapping_log", None)
    if log is not None:
        log.to_csv(prov / "mapping_log.csv", index=False)
    smap = study.mapping
    if smap is not None and Path(smap.source).is_file():
        shutil.copyfile(smap.source, prov / "mapping.yaml")
    return out


# ----------------------------------------------------------------------------------------
# drafting a mapping file from an export
# ----------------------------------------------------------------------------------------

#: Common export names of dictionary columns besides their own, tried by :func:`draft_mapping`.
COLUMN_SYNONYMS: dict[str, tuple[str, ...]] = {
    "patient_id": ("record_id", "study_id", "participant_id", "subject_id", "pat_id"),
    "practice_id": ("site_code", "site_id", "site", "practice_code", "centre"),
    "practice_name": ("site_name", "practice"),
    "n_gps": ("gp_count", "number_of_gps", "gps"),
    "list_size": ("practice_list_size", "registered_patients"),
    "clinician_id": ("staff_id", "staff_code", "clinician", "user_id"),
    "gp_id": ("gp_code", "gp", "doctor_id", "gp_seen"),
    "physio_id": ("therapist", "therapist_id", "physiotherapist"),
    "profession": ("role", "staff_type", "job_title"),
    "time_point": ("redcap_event_name", "event", "timepoint", "survey", "visit"),
    "phase": ("cohort", "period", "study_phase"),
    "consultation_id": ("visit_id", "encounter_id"),
    "consultation_date": ("visit_date", "index_date"),
    "sbst_completed": ("sbst_done", "sbst_used", "tool_completed"),
    "invitation_outcome": ("response",),
    "record_review_consent": ("consent",),
    "age": ("age_years",),
    "sex": ("gender",),
    "manual_occupation": ("manual_work",),
    "time_off_work": ("sick_leave",),
    "episode_duration": ("pain_duration", "duration"),
    "pain_nrs": ("pain_score", "pain_intensity", "pain"),
    "eq5d_sc": ("eq5d_self_care",),
    "return_date": ("date_received",),
    "days_off_work": ("days_sick",),
    "start_date": ("first_appointment", "referral_date"),
    "n_sessions": ("sessions", "n_appointments", "attendances"),
    "episode_id": ("episode_no", "referral_id"),
}
#: Export names of the tables besides their own, tried by :func:`draft_mapping`.
TABLE_SYNONYMS: dict[str, tuple[str, ...]] = {
    "practices": ("sites", "site", "practice", "centres"),
    "clinicians": ("staff", "clinician", "gps", "physiotherapists"),
    "clinician_surveys": ("staff_survey", "survey", "pabs"),
    "consultations": ("consultation", "consults", "visits"),
    "patients": ("baseline", "participants", "patient"),
    "followups": ("follow_up", "follow_ups", "months"),
    "records": ("record_review", "notes", "review"),
    "physio": ("physiotherapy", "episodes", "physio_episodes"),
}
#: Values that usually mean "missing" in an export (compared ignoring case).
MISSING_MARKERS: frozenset[str] = frozenset({
    "unk", "unknown", "nask", "ni", "nk", "n/k", "not known", "missing", "not asked", "-999", "-99", "-9", "999",
    "9999", "-9999", "?", "none given", "not recorded",
})
#: Date formats :func:`draft_mapping` recognises beyond those cleaning reads itself.
_DRAFT_DATE_FORMATS: tuple[str, ...] = (
    "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S.%f",
    "%Y-%m-%d %H:%M:%S.%f", "%d/%m/%Y %H:%M", "%d/%m/%Y %H:%M:%S", "%d-%m-%Y %H:%M", "%d.%m.%Y %H:%M",
)
_POSITIVE = frozenset({"checked", "ticked", "true", "yes", "y", "x", "present", "agree", "1"})
_NEGATIVE = frozenset({"unchecked", "not checked", "unticked", "false", "no", "n", "absent", "disagree", "0"})
_CUTOFF = 0.7
_MAX_DISTINCT = 40


def _norm_name(name: str) -> str:
    """A column name for comparison: lower case, ``_`` between words, ``Q1``/``___1`` suffixes as ``_1``."""
    text = re.sub(r"[^a-z0-9]+", "_", str(name).strip().lower()).strip("_")
    text = re.sub(r"_q(\d+)$", r"_\1", text)
    return re.sub(r"(?<=[a-z])(\d+)$", r"_\1", text)


def _trailing_number(name: str) -> str | None:
    m = re.search(r"_(\d+)$", name)
    return m.group(1) if m else None


def _token_score(export: str, target: str) -> float:
    """0.85 when every word of ``target`` matches words of ``export``, else 0.

    A word matches a word when one is a prefix of the other (``conf`` ~ ``confidence``), or
    the initials of consecutive words (``ua`` ~ ``usual_activities``).
    """
    e_words, t_words = export.split("_"), target.split("_")
    used: set[int] = set()
    for t in t_words:
        hit = next((i for i, e in enumerate(e_words) if i not in used and e and t and (e.startswith(t) or t.startswith(e))),
                   None)
        if hit is not None:
            used.add(hit)
            continue
        span = next((range(i, i + len(t)) for i in range(len(e_words) - len(t) + 1) if len(t) >= 2
                     and not used.intersection(range(i, i + len(t)))
                     and "".join(w[:1] for w in e_words[i:i + len(t)]) == t), None)
        if span is None:
            return 0.0
        used.update(span)
    return max(0.75, 0.85 - 0.03 * (len(e_words) - len(used)))


_SCORES: dict[tuple[str, str], float] = {}


def _name_score(export: str, target: str) -> float:
    """How well an export column name (normalized) fits a dictionary column name, 0 to 1."""
    key = (export, target)
    if key in _SCORES:
        return _SCORES[key]
    score = 0.0
    if _trailing_number(export) == _trailing_number(target):
        for weight, candidate in [(1.0, target), *((0.97, _norm_name(s)) for s in COLUMN_SYNONYMS.get(target, ()))]:
            if export == candidate:
                score = max(score, weight)
                continue
            matcher = difflib.SequenceMatcher(None, export, candidate)
            best = _token_score(export, candidate)
            if matcher.real_quick_ratio() > max(best, _CUTOFF):
                best = max(best, matcher.ratio())
            score = max(score, weight * best)
    _SCORES[key] = score
    return score


@dataclass
class _Source:
    """One candidate source of a table: a file, or the rows of some events of a REDCap file."""

    file: str
    rows: dict[str, list[str]]
    frame: pd.DataFrame  # the rows, text
    label: str  # for naming the table it fits

    @property
    def columns(self) -> list[str]:
        return [c for c in self.frame.columns if self.frame[c].notna().any()]


def _event_groups(events: list[str]) -> list[tuple[str, list[str]]]:
    """REDCap events grouped as baseline, follow-ups (``N months``) and each other event."""
    baseline, months, other = [], [], []
    for e in events:
        text = e.lower()
        if re.search(r"baseline|screen|enrol", text):
            baseline.append(e)
        elif re.search(r"\d+\s*(m\b|mo|month)", text):
            months.append(e)
        else:
            other.append(e)
    groups = [("baseline", baseline)] if baseline else []
    groups += [("follow up months", months)] if months else []
    groups += [(e, [e]) for e in other]
    return groups


def _sources(folder: Path) -> list[_Source]:
    out = []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in EXPORT_FORMATS):
        try:
            frame = _read_export_file(path)
        except Exception as exc:  # an unreadable file cannot be drafted from
            raise MappingError(f"{path.name}: could not be read: {exc}") from None
        event = next((c for c in frame.columns if c.strip().lower() == "redcap_event_name"), None)
        if event is None:
            out.append(_Source(path.name, {}, frame, path.stem))
            continue
        events = [str(e) for e in frame[event].dropna().unique()]
        for label, group in _event_groups(events):
            rows = frame[frame[event].isin(group)].reset_index(drop=True)
            out.append(_Source(path.name, {event: group}, rows, label))
    return out


def _assign_columns(table: Table, source: _Source) -> dict[str, tuple[str, float]]:
    """Dictionary column -> (export column, score): greedy on the best scores, each export column once."""
    columns = source.columns
    normed = {c: _norm_name(c) for c in columns}
    pairs = []
    for target in table.columns:
        for c in columns:
            score = _name_score(normed[c], target)
            if score >= _CUTOFF:
                pairs.append((score, target, c))
    pairs.sort(key=lambda p: (-p[0], list(table.columns).index(p[1])))
    chosen: dict[str, tuple[str, float]] = {}
    taken: set[str] = set()
    for score, target, c in pairs:
        if target in chosen or c in taken:
            continue
        chosen[target] = (c, score)
        taken.add(c)
    return chosen


def _assign_tables(dd: DataDictionary, sources: list[_Source]) -> dict[str, tuple[_Source, dict[str, tuple[str, float]]]]:
    candidates = []
    for tname, table in dd.tables.items():
        names = [tname, *TABLE_SYNONYMS.get(tname, ())]
        for i, source in enumerate(sources):
            chosen = _assign_columns(table, source)
            frac = len(chosen) / len(table.columns)
            label = _norm_name(source.label)
            name_fit = max(difflib.SequenceMatcher(None, label, n).ratio() for n in names)
            if frac >= 0.3:
                candidates.append((frac + 0.3 * name_fit, tname, i, chosen))
    candidates.sort(key=lambda c: -c[0])
    out: dict[str, tuple[_Source, dict[str, tuple[str, float]]]] = {}
    used: set[int] = set()
    for _, tname, i, chosen in candidates:
        if tname in out or i in used:
            continue
        out[tname] = (sources[i], chosen)
        used.add(i)
    return {t: out[t] for t in dd.table_names if t in out}


def _distinct(values: pd.Series) -> list[str]:
    counts = values.dropna().map(lambda v: str(v).strip()).value_counts()
    return [str(v) for v in counts.index if v != ""]


def _guess_code(value: str, col: Column, distinct: list[str]) -> tuple[Any, str]:
    """(code, how sure: 'sure' | 'guess' | 'unknown') for one export value of a coded column."""
    accepted = col.text_to_code()
    norm = value.strip().lower()
    if norm in accepted:
        return accepted[norm], "sure"
    codes = list(col.codes or {})
    words = {re.sub(r"[^a-z0-9]+", "_", str(k).lower()).strip("_"): v for k, v in accepted.items()}
    squashed = re.sub(r"[^a-z0-9]+", "_", norm).strip("_")
    if squashed in words:
        return words[squashed], "guess"
    if set(codes) == {0, 1}:
        if norm in _POSITIVE:
            return 1, "guess"
        if norm in _NEGATIVE:
            return 0, "guess"
    numbers = [d for d in distinct if re.fullmatch(r"\d+", d)]
    if len(numbers) == len(distinct) and not all(isinstance(c, (int, float)) for c in codes):
        ordered = sorted(int(d) for d in numbers)
        start = 1 if ordered[0] >= 1 else 0
        position = int(value) - start
        if ordered[-1] - start < len(codes) and 0 <= position < len(codes):
            return codes[position], "guess"
    texts = {str(k).lower(): v for k, v in accepted.items() if not re.fullmatch(r"-?\d+", str(k))}
    prefixed = {v for k, v in texts.items() if k.startswith(norm) or (norm.startswith(k) and len(k) >= 3)}
    if len(prefixed) == 1:
        return prefixed.pop(), "guess"
    close = difflib.get_close_matches(norm, list(texts), n=1, cutoff=0.6)
    if close:
        return texts[close[0]], "guess"
    return "?", "unknown"


def _date_format_of(values: list[str]) -> str | None | bool:
    """The strptime format all values fit: ``None`` when cleaning reads them as they are, False when none fits."""
    from .schemas import parse_dates

    sample = pd.Series(values[:200], dtype="str").str.strip()
    if sample.str.fullmatch(r"\d{4}-\d{2}-\d{2}").all():
        return None  # ISO 8601 dates: read as they are
    for fmt in _DRAFT_DATE_FORMATS:
        if pd.to_datetime(sample, format=fmt, errors="coerce").notna().all():
            return fmt
    return None if parse_dates(sample).notna().all() else False


def _y(value: Any) -> str:
    """A scalar as YAML that every loader reads back as the same text or number."""
    if isinstance(value, bool) or value is None:
        return "null" if value is None else str(value).lower()
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", text) and text.lower() not in (
            "yes", "no", "y", "n", "true", "false", "on", "off", "null", "none"):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _phase_code(value: str, codes: list[Any]) -> Any:
    text = value.lower()
    if re.search(r"baseline|usual|control|before|\bpre\b|phase\s*1|^1$", text):
        return codes[0]
    if re.search(r"intervention|stratif|after|\bpost\b|phase\s*3|^3$", text):
        return codes[-1]
    return None


def draft_mapping(folder: str | Path, *, dictionary: DataDictionary | None = None) -> str:
    """Draft a mapping file for an export folder, for the user to confirm.

    Parameters
    ----------
    folder : str or Path
        The export folder (CSV, parquet or xlsx files in any layout; a file with a
        ``redcap_event_name`` column is split by event: baseline, ``N months`` and each other event).
    dictionary : DataDictionary, optional
        Default: the bundled data dictionary.

    Returns
    -------
    str
        The draft mapping file (YAML with comments): lines marked ``CONFIRM`` are guesses,
        ``"?"`` marks a value the draft could not place (the mapping is refused until it is
        replaced), commented-out lines name what was not found.

    Notes
    -----
    Tables: each file (or REDCap event group) is matched to the dictionary table whose
    columns it holds the largest share of (plus a little for a similar file or event name),
    each file once. Columns: names are compared after lower-casing, ``_`` between words and
    ``Q1``/``___1`` suffixes read as ``_1`` (trailing numbers must agree), by
    :class:`difflib.SequenceMatcher` ratio, by word prefixes (``conf_low`` ~
    ``confidence_low``) and against :data:`COLUMN_SYNONYMS`; a score of at least 0.7 is
    kept, best pairs first. Values of coded columns: the dictionary's own codes, labels and
    aliases are certain; else, in order, the same words with other separators
    (``Non-respondent`` -> ``non_respondent``), checked/ticked/true -> 1 and their opposites -> 0,
    numbers ``1..k`` read as the k codes in dictionary order, a unique prefix (``F`` ->
    ``female``, ``Physiotherapist`` -> ``physio``) and the closest label (difflib); values in
    :data:`MISSING_MARKERS` are suggested as missing. Dates: a format is suggested only when
    cleaning does not read them already. Phase names are placed by keywords (baseline,
    usual, control -> 1; intervention, stratified -> 3).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "sites.csv").write_text("site_code,site_name,list_size,gp_count\\nS1,North,9000,5\\n")
    >>> text = draft_mapping(d)
    >>> "practices:" in text and "practice_id: site_code" in text
    True
    """
    dd = dictionary or load_dictionary()
    folder = Path(folder)
    if not folder.is_dir():
        raise BackpainError(f"export folder {str(folder)!r} not found")
    sources = _sources(folder)
    if not sources:
        raise BackpainError(f"{folder}: no export files (.csv, .parquet or .xlsx) to draft a mapping from")
    assigned = _assign_tables(dd, sources)
    missing_markers: dict[str, None] = {}
    date_formats: dict[str, str] = {}
    phase_values: dict[str, None] = {}
    body: list[str] = []
    for tname, table in dd.tables.items():
        if tname not in assigned:
            body += [f"  # {tname}: no export file looks like this table; add it here (file, columns) or put "
                     f"{tname}.csv in the folder", ""]
            continue
        source, chosen = assigned[tname]
        body.append(f"  {tname}:")
        body.append(f"    file: {_y(source.file)}")
        for col, wanted in source.rows.items():
            shown = _y(wanted[0]) if len(wanted) == 1 else "[" + ", ".join(_y(w) for w in wanted) + "]"
            body.append(f"    rows: {{{_y(col)}: {shown}}}")
        body.append("    columns:")
        for cname, col in table.columns.items():
            if cname not in chosen:
                need = "REQUIRED: " if col.required else ""
                body.append(f"      # {cname}: ?   # {need}no export column looks like it ({col.description})")
                continue
            export, score = chosen[cname]
            note = "" if score >= 1.0 else f"   # CONFIRM: nearest name (score {score:.2f})"
            distinct = _distinct(source.frame[export])
            values_lines: list[str] = []
            markers = [d for d in distinct if d.strip().lower() in MISSING_MARKERS and d.strip().lower()
                       not in {m.lower() for m in col.missing_codes}
                       and (col.codes is None or d.strip().lower() not in col.text_to_code())]
            for m in markers:
                missing_markers[m] = None
            rest = [d for d in distinct if d not in markers]
            if col.type == "date" and rest:
                fmt = _date_format_of(rest)
                if fmt:
                    date_formats[cname] = fmt
                elif fmt is False:
                    note += "   # CONFIRM: dates in no format the draft knows; add date_format"
            elif cname == "phase" and col.codes is not None and any(d.strip().lower() not in col.text_to_code()
                                                                     for d in rest):
                for d in rest:
                    phase_values[d] = None
            elif col.codes is not None and rest and len(rest) <= _MAX_DISTINCT:
                as_written = all(d.strip().lower() in {str(c).lower() for c in col.codes} for d in rest)
                if not as_written:
                    order = {c: i for i, c in enumerate(col.codes)}
                    guesses = sorted(((d, *_guess_code(d, col, rest)) for d in rest),
                                     key=lambda g: (order.get(g[1], len(order)), g[0]))
                    for d, code, how in guesses:
                        mark = {"sure": "", "guess": "   # CONFIRM", "unknown": "   # which code? "
                                + ", ".join(f"{c} ({lab})" for c, lab in col.codes.items())}[how]
                        values_lines.append(f"          {_y(d)}: {_y(code)}{mark}")
            elif col.codes is not None and len(rest) > _MAX_DISTINCT:
                note += f"   # CONFIRM: {len(rest)} distinct values; recode them under values:"
            elif col.type in ("integer", "float"):
                bad = [d for d in rest if not re.fullmatch(r"\s*-?\d+(\.\d+)?\s*", d)]
                if bad:
                    note += f"   # CONFIRM: not numbers: {', '.join(map(repr, bad[:5]))} (add them to missing?)"
            if values_lines:
                body.append(f"      {cname}:{note}")
                body.append(f"        from: {_y(export)}")
                body.append("        values:")
                body += values_lines
            else:
                body.append(f"      {cname}: {_y(export)}{note}")
        unused = [c for c in source.columns if c not in {e for e, _ in chosen.values()} and c not in source.rows]
        if unused:
            body.append(f"    # export columns not used: {', '.join(unused)}")
        body.append("")
    head = ["# Mapping of an export onto the backpain data dictionary, drafted by `backpain map --draft` from",
            f"# {folder.resolve()}.",
            "# Check every line marked CONFIRM, replace every \"?\", add what is commented out if the export has it,",
            "# then: backpain validate EXPORT_FOLDER --mapping THIS_FILE",
            "# Format: see `backpain_analysis.mapping` (README: Mapping your own export).",
            "version: 1"]
    common = set(date_formats.values())
    if len(common) == 1:
        head.append(f"date_format: {_y(common.pop())}   # CONFIRM: how the export writes dates "
                    f"({', '.join(sorted(date_formats))})")
    elif date_formats:
        head.append("# CONFIRM: date columns use different formats; give each column its own date_format:")
        head += [f"#   {c}: {{from: ..., date_format: {_y(f)}}}" for c, f in sorted(date_formats.items())]
    if missing_markers:
        head.append(f"missing: [{', '.join(_y(m) for m in missing_markers)}]   # CONFIRM: values meaning missing")
    if phase_values:
        phase_col = next(t.columns["phase"] for t in dd.tables.values() if "phase" in t.columns)
        codes = list(phase_col.codes or {})
        head.append("phases:   # what the export calls each study phase")
        placed: dict[Any, list[str]] = {}
        for v in phase_values:
            placed.setdefault(_phase_code(v, codes) or "?", []).append(v)
        for code in codes:
            names = placed.get(code, [])
            label = phase_col.codes[code]
            shown = _y(names[0]) if len(names) == 1 else ("[" + ", ".join(map(_y, names)) + "]" if names else '"?"')
            head.append(f"  {code}: {shown}   # CONFIRM: {label}")
        if placed.get("?"):
            head.append(f"  # not placed: {', '.join(map(_y, placed['?']))}")
    return "\n".join([*head, "tables:", *body]).rstrip() + "\n"
