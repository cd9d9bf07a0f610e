"""Read a study export folder and validate it against the data dictionary.

:func:`load_study` finds one file per table (``<table>.csv``, ``<table>.parquet`` or
``<table>.xlsx``), reads it without modifying it, validates every table with its pandera
schema (:func:`backpain_analysis.schemas.build_schema`) and then the cross-table rules (unique
keys, foreign keys), and either returns a :class:`Study` or raises one
:class:`StudyValidationError` listing every problem found.
"""

from __future__ import annotations

import csv
import datetime
import difflib
import io
import json
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow as pa_arrow
import pyarrow.compute as pc

from ._keys import _arrow_source, _arrow_text, _KeyFacts, _strictly_increasing
from ._threads import PARALLEL_MIN_ROWS, named_pool
from .dictionary import DataDictionary, Table, load_dictionary
from .errors import BackpainError
from .schemas import build_schema

__all__ = ["EMPTY_TABLE_MEANS", "LASTING_REASONS", "PROBLEM_COLUMNS", "TABLE_FORMATS", "Study", "StudyValidationError", "load_study"]

#: File extensions read for a table, in order of preference when reporting.
TABLE_FORMATS: tuple[str, ...] = (".csv", ".parquet", ".xlsx")
#: Reasons for loss to follow-up (``withdrawals.reason``) that last: a patient who withdrew, died or moved
#: away at 2 months cannot return the 6-month questionnaire.
LASTING_REASONS: tuple[str, ...] = ("withdrew", "died", "moved")
#: Columns of :attr:`StudyValidationError.problems`.
PROBLEM_COLUMNS: tuple[str, ...] = ("file", "table", "column", "rule", "n_rows", "examples")
_SUMMARY_COLUMNS = ["table", "file", "rows", "columns", "status"]
_MAX_EXAMPLES = 5
_BOM = b"\xef\xbb\xbf"
_DELIMITER_NAMES = {";": "semicolons (;)", "\t": "tabs", "|": "vertical bars (|)"}


#: What a table with a header and no rows means for the analysis (said in ``Study.notes``).
#: ``None``: the table may not be empty (nothing to analyse without it).
EMPTY_TABLE_MEANS: dict[str, str | None] = {
    "practices": None,
    "clinicians": "no clinicians: GP and physiotherapist characteristics and training are not described "
                  "(every gp_id and physio_id must then be blank)",
    "clinician_surveys": "no clinician surveys: clinicians' attitudes and confidence (chapter 06) cannot be analysed",
    "consultations": "no consultations: questionnaire uptake (share of eligible consultations screened, chapter 03) "
                     "cannot be computed",
    "patients": None,
    "followups": "no follow-up questionnaires: nobody is followed up, so every 2- and 6-month outcome (the primary "
                 "outcome included) is missing and can only be imputed",
    "records": "no medical-record reviews: referrals, prescriptions, sickness certificates, imaging and "
               "reconsultation are missing for every patient, and received pathways rest on physiotherapy "
               "episodes alone",
    "withdrawals": "no reasons for loss to follow-up: every follow-up not returned counts as 'reason not recorded' "
                   "in the participant flow",
    "physio": "no physiotherapy episodes: every analysed patient has 0 physiotherapy sessions and no approach, so "
              "the received pathway is 'advice' (not referred) or 'physiotherapy' (referred, approach unknown), "
              "never 'psych_informed_physiotherapy'",
}


class StudyValidationError(BackpainError):
    """A study export does not follow the data dictionary.

    Raised once, with every problem found. ``problems`` is a DataFrame with the columns
    ``file``, ``table``, ``column``, ``rule``, ``n_rows`` (number of failing rows; missing
    for file- or column-level problems) and ``examples`` (up to 5 failing rows: the row
    number as a spreadsheet shows it, the row's key and the offending value).
    ``summary`` lists every table (file, rows, columns, status) and ``notes`` the
    non-fatal observations.
    """

    def __init__(self, problems: pd.DataFrame, summary: pd.DataFrame | None = None,
                 notes: list[str] | None = None, path: Path | None = None):
        self.problems = problems.reset_index(drop=True)
        self.summary = summary if summary is not None else pd.DataFrame(columns=_SUMMARY_COLUMNS)
        self.notes = list(notes or [])
        self.path = path
        super().__init__(self._message())

    def _message(self) -> str:
        n = len(self.problems)
        where = f" in {self.path}" if self.path else ""
        lines = [f"the study export{where} does not follow the data dictionary ({n} problem{'s' if n != 1 else ''}):"]
        lines += [f"- {format_problem(p)}" for p in self.problems.itertuples(index=False)]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self._message()


def format_problem(p: Any) -> str:
    """One problem (a row of ``problems``) as one readable line."""
    where = p.file if not p.column else f"{p.file}, column {p.column!r}"
    text = f"{where}: {p.rule}"
    if not pd.isna(p.n_rows):
        text += f"; failing rows: {int(p.n_rows)}"
    if p.examples:
        text += f", e.g. {p.examples}"
    return text


@dataclass
class Study:
    """A validated study export, values as read.

    Attributes
    ----------
    tables : dict of str to DataFrame
        One raw DataFrame per dictionary table (``study.patients`` and
        ``study["patients"]`` also work). Clean numeric columns are numeric; columns
        holding text answers, missing codes or non-ISO dates are text; identifier,
        category and date columns of CSV files are text.
    path : Path
        The study folder.
    files : dict of str to Path
        The file read for each table.
    dictionary : DataDictionary
        The data dictionary the study was validated against.
    truth : dict or None
        The parsed ``truth.json`` of a synthetic study, else ``None``.
    notes : list of str
        Non-fatal observations (byte-order mark, Windows-1252 text, CR-only line endings,
        a missing final line break, exact duplicate rows, conflicting duplicates that
        cleaning resolves, extra files, empty tables and what they imply).
    """

    tables: dict[str, pd.DataFrame]
    path: Path
    files: dict[str, Path]
    dictionary: DataDictionary
    truth: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    #: What the key checks learnt, for :func:`backpain_analysis.clean_study` (see :class:`_KeyFacts`).
    _keys: _KeyFacts | None = field(default=None, repr=False, compare=False)
    #: Read through a mapping file (``load_study(..., mapping=...)``): the mapping, and one row per
    #: recoded cell (:data:`backpain_analysis.mapping.MAPPING_LOG_COLUMNS`), merged into the cleaning log.
    mapping: Any = field(default=None, repr=False, compare=False)
    mapping_log: pd.DataFrame | None = field(default=None, repr=False, compare=False)

    def __getattr__(self, name: str) -> pd.DataFrame:
        tables = self.__dict__.get("tables") or {}
        if name in tables:
            return tables[name]
        raise AttributeError(f"{type(self).__name__!s} has no attribute or table {name!r}")

    def __getitem__(self, name: str) -> pd.DataFrame:
        try:
            return self.tables[name]
        except KeyError:
            raise KeyError(f"no table {name!r}; the study has {', '.join(self.tables)}") from None

    def summary(self) -> pd.DataFrame:
        """One row per table: ``table``, ``file``, ``rows``, ``columns``, ``status``."""
        return pd.DataFrame(
            [(t, self.files[t].name, len(df), df.shape[1], "ok") for t, df in self.tables.items()],
            columns=_SUMMARY_COLUMNS,
        )


# ----------------------------------------------------------------------------------------
# problems


class _Problems:
    """Collects problems; examples are built from the raw rows."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(self, file: str, table: str, column: str, rule: str, n_rows: int | None = None, examples: str = "") -> None:
        self.rows.append({"file": file, "table": table, "column": column, "rule": rule,
                          "n_rows": n_rows, "examples": examples})

    def count(self, table: str) -> int:
        return sum(r["table"] == table for r in self.rows)

    def frame(self) -> pd.DataFrame:
        df = pd.DataFrame(self.rows, columns=list(PROBLEM_COLUMNS))
        df["n_rows"] = df["n_rows"].astype("Int64")
        return df


def _examples(df: pd.DataFrame, positions, key: tuple[str, ...], column: str | None, row_offset: int) -> str:
    """Up to 5 failing rows as text: spreadsheet row number, key, offending value."""
    parts = []
    for pos in list(positions)[:_MAX_EXAMPLES]:
        row = df.iloc[int(pos)]
        keys = ", ".join(f"{k}={row[k]}" for k in key if k in df.columns and k != column and not pd.isna(row[k]))
        text = f"row {int(pos) + row_offset}"
        if keys:
            text += f" ({keys})"
        if column is not None and column in df.columns:
            text += f": {_show(row[column])}"
        parts.append(text)
    return "; ".join(parts)


def _show(value: Any) -> str:
    """A raw value as a user would recognise it: numbers plain, text quoted, blank named."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "blank"
    if isinstance(value, str):
        return repr(value)
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# ----------------------------------------------------------------------------------------
# reading


def _find_files(folder: Path, dictionary: DataDictionary, problems: _Problems, notes: list[str]) -> dict[str, Path]:
    entries = list(folder.iterdir())
    present = {p.name: p for p in entries if p.is_file()}
    # a table written as a folder of part files (Spark, Hadoop, Dask: patients.csv/part-0000.csv)
    folders = {p.stem: p for p in entries if p.is_dir() and p.suffix.lower() in TABLE_FORMATS
               and p.stem in dictionary.tables}
    for table, sub in folders.items():
        parts = sorted(q.name for q in sub.iterdir() if q.is_file() and not q.name.startswith(("_", ".")))
        shown = ", ".join(parts[:3]) + (", ..." if len(parts) > 3 else "")
        problems.add(sub.name, table, "",
                     f"{sub.name} is a folder, not a file ({len(parts)} part file{'s' if len(parts) != 1 else ''}"
                     f"{': ' + shown if parts else ''}), as Spark or Hadoop write a table; a study export needs one "
                     f"file per table: combine the parts into one {table}{sub.suffix.lower()} with a single header row")
    data_files = {name: p for name, p in present.items() if p.suffix.lower() in TABLE_FORMATS}
    found: dict[str, Path] = {}
    used: set[str] = set()
    for table in dictionary.table_names:
        candidates = [p for p in data_files.values() if p.stem == table]
        used.update(p.name for p in candidates)
        if table in folders:
            continue
        if len(candidates) > 1:
            names = ", ".join(sorted(p.name for p in candidates))
            problems.add(names, table, "", f"more than one file for table {table!r} ({names}); keep exactly one")
        elif candidates:
            found[table] = candidates[0]
    unused = sorted(name for name in data_files if name not in used)
    for table in dictionary.required_tables:
        if table in found or table in folders or any(p.stem == table for p in data_files.values()):
            continue
        hint = difflib.get_close_matches(table, [Path(n).stem for n in unused], n=1, cutoff=0.6)
        rule = f"file missing: every study needs {table}.csv (or .parquet / .xlsx)"
        if hint:
            rule += f"; did you mean {next(n for n in unused if Path(n).stem == hint[0])}?"
        problems.add(f"{table}.csv", table, "", rule)
    for name in unused:
        notes.append(f"{name}: not a table of the data dictionary; ignored")
    return found


def _is_text(values: pd.Series) -> bool:
    return pd.api.types.is_string_dtype(values.dtype) and values.dtype != object


def _id_columns(table: Table) -> list[str]:
    """Columns read as text whatever they contain: identifiers and names (``string`` type)."""
    return [c.name for c in table if c.type == "string"]


def _encoding_problem(head: bytes) -> str | None:
    """Why the first bytes of a CSV file are not UTF-8 / Windows-1252 text, or ``None``."""
    if head.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        return "the file is UTF-32 encoded (it starts with a UTF-32 byte-order mark); save it as UTF-8 CSV"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "the file is UTF-16 encoded (it starts with a UTF-16 byte-order mark); save it as UTF-8 CSV"
    if b"\x00" in head:
        sample = head[:4096]
        even, odd = sample[0::2].count(0), sample[1::2].count(0)
        if len(sample) >= 4 and (even > len(sample) // 4 or odd > len(sample) // 4):
            order = "big-endian" if even > odd else "little-endian"
            return (f"the file looks UTF-16 ({order}) encoded without a byte-order mark (every other byte is "
                    "NUL); save it as UTF-8 CSV")
        return "the file holds NUL bytes, so it is not a text CSV file (binary, or UTF-16/UTF-32 text); save it as UTF-8 CSV"
    return None


def _first_line(head: bytes) -> bytes:
    """The header line: up to the first line break, be it LF, CR LF or a lone CR (old Mac files)."""
    cut = len(head)
    for sep in (b"\n", b"\r"):
        at = head.find(sep)
        if at >= 0:
            cut = min(cut, at)
    return head[:cut]


#: Bytes read at a time when counting delimiters (a few passes of numpy over each block).
_BLOCK = 1 << 24


def _count_fields(path: Path) -> tuple[int, bool, bytes]:
    """Delimiters outside quoted fields in a CSV file, whether it has any quote, and its last byte.

    One pass over the file in blocks of 16 MiB (numpy compares, no Python loop per byte).
    Commas inside quoted fields are not counted: a quote toggles "inside", so the parity of the
    quotes seen so far says whether a comma is quoted (a doubled quote ``""`` toggles twice).
    Files without any quote (most exports) need only the comma count.
    """
    commas, quoted, inside, last = 0, False, 0, b""
    buf = bytearray(max(1, min(_BLOCK, path.stat().st_size)))  # small files: a small buffer
    view = memoryview(buf)
    with open(path, "rb") as fh:
        while True:
            n = fh.readinto(buf)
            if not n:
                break
            block = np.frombuffer(buf, dtype=np.uint8, count=n)
            last = bytes(view[n - 1:n])
            if buf.find(b'"', 0, n) < 0:
                if not inside:
                    commas += int(np.count_nonzero(block == 44))
                continue  # inside a quoted field all along: no comma counts
            quoted = True
            quotes = block == 34
            parity = np.cumsum(quotes, dtype=np.uint8) & 1  # uint8 wraps at 256: the parity survives
            if inside:
                parity ^= 1
            commas += int(np.count_nonzero((block == 44) & (parity == 0)))
            inside = int(parity[-1])
    return commas, quoted, last


def _ragged_rows(path: Path, encoding: str, n_columns: int, key_at: int = 0) -> list[tuple[int, int, int, str]]:
    """Rows whose number of fields differs from the header's: (row, line, fields, key field).

    The exact, slower check (Python's csv module, which splits fields as pandas does), run only
    when the fast count of :func:`_count_fields` does not add up. ``row`` is the row number a
    spreadsheet shows (header = row 1; blank lines are skipped as pandas skips them), ``line``
    the line of the file where the row ends.
    """
    bad = []
    with open(path, encoding=encoding, newline="", errors="replace") as fh:
        if encoding == "utf-8":
            start = fh.read(1)
            if start != "\ufeff":
                fh.seek(0)
        reader = csv.reader(fh)
        row = 0
        for fields in reader:
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue  # a blank line: pandas skips it
            row += 1
            if row == 1:
                continue
            if len(fields) != n_columns:
                bad.append((row, reader.line_num, len(fields), fields[key_at] if key_at < len(fields) else ""))
    return bad


def _check_row_lengths(path: Path, table: Table, df: pd.DataFrame, encoding: str, problems: _Problems,
                       notes: list[str], parser_error: str | None = None) -> bool:
    """Every data row must have as many fields as the header: a short row is an error, never blanks.

    pandas fills the missing fields of a short row (a line cut in transfer, a truncated file)
    with blanks and reads a first row with one field too many as an index: both would lose data
    silently. Proven cheaply for the whole file: after pandas read ``n`` rows of ``k`` columns
    (so no row has more than ``k`` fields, or pandas failed), the rows hold exactly ``(n + 1) *
    (k - 1)`` delimiters (header included) only if no row has fewer. Otherwise the exact check
    (:func:`_ragged_rows`) names the rows. Returns ``False`` when rows were reported.
    """
    n_columns = len(df.columns) if df is not None else None
    if df is not None and parser_error is None:
        commas, _, last = _count_fields(path)
        if (isinstance(df.index, pd.RangeIndex) and df.index.start == 0 and df.index.step == 1
                and commas == (len(df) + 1) * (n_columns - 1)):
            if last not in (b"\n", b"\r") and len(df):
                notes.append(f"{path.name}: the last line has no line break at its end; check that the file was "
                             f"not cut short (its last row, row {len(df) + 1}, has all its fields)")
            return True
    with open(path, encoding=encoding, newline="", errors="replace") as fh:
        header = [h.lstrip("\ufeff").strip() for h in next(csv.reader(fh), [])]
    n_columns = len(header)
    key = table.key[0] if table.key and table.key[0] in header else None
    bad = _ragged_rows(path, encoding, n_columns, header.index(key) if key else 0)
    if not bad:
        if parser_error is not None:
            problems.add(path.name, table.name, "", f"could not be read as CSV: {parser_error}")
            return False
        return True
    short = [b for b in bad if b[2] < n_columns]
    for rows, what in ((short, "fewer"), ([b for b in bad if b[2] > n_columns], "more")):
        if not rows:
            continue
        examples = "; ".join(
            f"row {row}" + (f" (line {line} of the file)" if line != row else "")
            + (f" ({key}={first})" if key and first else "") + f": {fields} fields"
            for row, line, fields, first in rows[:_MAX_EXAMPLES])
        cause = ("a row cut short (a truncated file or a line broken in transfer) or a delimiter missing"
                 if what == "fewer" else "a delimiter too many, or a text field with a comma that is not quoted")
        problems.add(path.name, table.name, "",
                     f"rows with {what} fields than the header ({n_columns}): {cause}; "
                     f"the rows are not read with blanks or shifted values, fix the file", len(rows), examples)
    return False


def _read_csv(path: Path, table: Table, problems: _Problems, notes: list[str]) -> pd.DataFrame | None:
    with open(path, "rb") as fh:
        head = fh.read(65536)
    if not head.strip():
        problems.add(path.name, table.name, "", "the file is empty; expected a header row and one row per record")
        return None
    wrong = _encoding_problem(head)
    if wrong:
        problems.add(path.name, table.name, "", wrong)
        return None
    encoding = "utf-8"
    if head.startswith(_BOM):
        notes.append(f"{path.name}: starts with a UTF-8 byte-order mark; read transparently")
        head = head[len(_BOM):]
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # a real decoding error, not a character cut by the 64 KB window
            encoding = "cp1252"
    line = _first_line(head)
    if b"\n" not in head and b"\r" in head.rstrip(b"\r"):
        notes.append(f"{path.name}: lines end with a carriage return only (old Mac style); read as lines")
    try:
        first_line = line.decode(encoding)
    except UnicodeDecodeError:
        problems.add(path.name, table.name, "", "the header row is neither UTF-8 nor Windows-1252 text; "
                                                "save the file as UTF-8 CSV")
        return None
    try:
        header = next(csv.reader(io.StringIO(first_line)), [])
    except csv.Error as exc:
        problems.add(path.name, table.name, "", f"the header row could not be read as CSV: {exc}")
        return None
    if len(header) <= 1:
        for delim, name in _DELIMITER_NAMES.items():
            if delim in first_line:
                problems.add(path.name, table.name, "",
                             f"wrong delimiter: the file is separated by {name}, but a study export must be "
                             f"comma-separated (header read as one column: {first_line[:60]!r})")
                return None
    # Only blank cells are missing: "NA", "N/A", "none" stay text for cleaning to log.
    # (A dtype= argument would cost half a read again; identifiers are fixed up below instead.)
    kwargs = {"keep_default_na": False, "na_values": [""]}
    try:
        with warnings.catch_warnings():
            # pandas reads large files in parallel chunks and warns when a column's chunks disagree
            # (numbers in some, text in others); such columns are read again as text just below
            warnings.simplefilter("ignore", pd.errors.DtypeWarning)
            try:
                df = pd.read_csv(path, encoding=encoding, **kwargs)
            except UnicodeDecodeError:
                encoding = "cp1252"
                df = pd.read_csv(path, encoding=encoding, **kwargs)
        if not _check_row_lengths(path, table, df, encoding, problems, notes):
            return None
        ids = set(_id_columns(table))
        as_text = [c for c in df.columns if (c in ids and not _is_text(df[c])) or df[c].dtype == object]
        if as_text:
            # identifiers made only of digits (keep leading zeros) and columns mixing numbers and
            # text: read those columns again, as the text written in the file
            again = pd.read_csv(path, encoding=encoding, usecols=as_text, dtype="str", **kwargs)
            df = df.assign(**{c: again[c] for c in as_text})
    except UnicodeDecodeError as exc:
        problems.add(path.name, table.name, "",
                     f"the file is neither UTF-8 nor Windows-1252 text (byte 0x{exc.object[exc.start]:02x} at "
                     f"offset {exc.start} of a block cannot be decoded); save it as UTF-8 CSV")
        return None
    except (ValueError, pd.errors.ParserError) as exc:
        message = str(exc).strip()
        if "fields in line" in message:  # a row with more fields than the header: name every such row
            _check_row_lengths(path, table, None, encoding, problems, notes, parser_error=message)
        else:
            problems.add(path.name, table.name, "", f"could not be read as CSV: {message}")
        return None
    except csv.Error as exc:
        problems.add(path.name, table.name, "", f"could not be read as CSV: {exc}")
        return None
    if encoding != "utf-8":
        notes.append(f"{path.name}: not valid UTF-8; read as Windows-1252 text")
    if df.empty:
        df = df.astype({c: "str" for c in df.columns})
    return df


def _read_other(path: Path, table: Table, problems: _Problems) -> pd.DataFrame | None:
    try:
        if path.suffix.lower() == ".parquet":
            df = pd.read_parquet(path)
        else:
            df = pd.read_excel(path, sheet_name=0, dtype=dict.fromkeys(_id_columns(table), "str"),
                               keep_default_na=False, na_values=[""])
    except Exception as exc:  # any reader failure is a problem of this file
        problems.add(path.name, table.name, "", f"could not be read: {exc}")
        return None
    # identifiers stored as numbers become text so keys compare across tables; spreadsheet
    # columns mixing numbers (or dates) and text become text, as in CSV files
    ids = set(_id_columns(table))
    for name in df.columns:
        values = df[name]
        if values.dtype == object or (name in ids and pd.api.types.is_numeric_dtype(values.dtype)):
            df[name] = values.map(_cell_text, na_action="ignore").astype("str")
    return df


def _cell_text(value: Any) -> str:
    """A spreadsheet or parquet cell as the text a CSV export would hold."""
    if isinstance(value, str):
        return value
    if isinstance(value, datetime.datetime):  # pd.Timestamp too
        return value.strftime("%Y-%m-%d") if value.time() == datetime.time(0) else value.isoformat()
    if isinstance(value, datetime.date):
        return value.isoformat()
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _read_table(path: Path, table: Table, problems: _Problems, notes: list[str]) -> pd.DataFrame | None:
    if path.suffix.lower() == ".csv":
        return _read_csv(path, table, problems, notes)
    return _read_other(path, table, problems)


# ----------------------------------------------------------------------------------------
# validation


_PARALLEL_MIN_ROWS = PARALLEL_MIN_ROWS


def _pool() -> ThreadPoolExecutor:
    return named_pool("validate")


def _background() -> ThreadPoolExecutor:
    """One worker for whole-table checks (separate from :func:`_pool`, which those checks use)."""
    return named_pool("check-table", max_workers=1)


def _check_table(df: pd.DataFrame, path: Path, table: Table, problems: _Problems, notes: list[str],
                 row_offset: int, distinct: dict[tuple[str, str], tuple[pa_arrow.Array | pa_arrow.ChunkedArray, bool, bool]],
                 facts: _KeyFacts | None = None) -> None:
    """Schema validation, then key checks, of one table."""
    _validate_table(df, path, table, problems, row_offset)
    _check_keys(df, path, table, problems, notes, row_offset, distinct, facts)


@dataclass
class _EarlyLookups:
    """Foreign-key lookups done by the background table checks while later files are read.

    ``parents``: (table, key column) -> (key values as one array, :func:`_prepare_parent` result),
    for a large referenced key column proven sorted, set by that table's background job.
    ``rows``: (child table, column) -> the child's positions in such a parent (as
    :func:`_sorted_positions` gives them), set by the child's background job when the parent was
    prepared before it (the one background worker checks the tables in dictionary order).
    Every entry is written once; :func:`_check_foreign_keys` uses those present and computes the rest.
    """

    parents: dict[tuple[str, str], tuple[pa_arrow.Array, tuple[np.ndarray, tuple[np.ndarray, int] | None]]] = \
        field(default_factory=dict)
    rows: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)


def _check_table_and_look_up(df: pd.DataFrame, path: Path, table: Table, problems: _Problems, notes: list[str],
                             row_offset: int, distinct: dict, facts: _KeyFacts | None, dictionary: DataDictionary,
                             early: _EarlyLookups) -> None:
    """:func:`_check_table`, then the foreign-key work this table allows already (background job)."""
    _check_table(df, path, table, problems, notes, row_offset, distinct, facts)
    # this table as a parent: its sorted key column combined and prepared once for the lookups
    for ref in dict.fromkeys((fk.ref_table, fk.ref_column) for fk in dictionary.foreign_keys
                             if fk.ref_table == table.name):
        entry = distinct.get(ref)
        if entry is None or not entry[2] or len(entry[0]) < _PARALLEL_MIN_ROWS:
            continue
        parent = entry[0].combine_chunks() if isinstance(entry[0], pa_arrow.ChunkedArray) else entry[0]
        distinct[ref] = (parent, entry[1], entry[2])
        prepared = _prepare_parent(parent)
        if prepared is not None:
            early.parents[ref] = (parent, prepared)
    # this table as a child of parents prepared before it
    for fk in dictionary.foreign_keys:
        ready = early.parents.get((fk.ref_table, fk.ref_column))
        if fk.table != table.name or ready is None or fk.column not in df.columns:
            continue
        found = _sorted_positions(ready[0], [_arrow_text(df[fk.column])], ready[1])
        if found is not None:
            early.rows[fk.table, fk.column] = found[0]


def _column_passes(column: Any, values: pd.Series) -> bool:
    """Whether one column passes its schema checks (``False`` also when unsure: pandera decides)."""
    if not column.nullable and values.isna().any():
        return False
    for check in column.checks:
        result = check._check_fn(values, **check._check_kwargs)
        if isinstance(result, pd.Series) and pd.api.types.is_bool_dtype(result.dtype):
            if not result.all():
                return False
        elif not (isinstance(result, (bool, np.bool_)) and result):
            return False
    return True


def _schema_passes(schema: pa.DataFrameSchema, df: pd.DataFrame) -> bool:
    """Fast verdict with the schema's own checks on the raw columns, without pandera's machinery.

    ``True`` only when pandera would pass the table too: every check returns all ``True``,
    required columns are present, non-nullable ones have no missing value, and (the schema
    being strict) there is no unknown column. Anything this function does not model (schema
    checks, dtypes, element-wise or grouped checks, ...) answers ``False``, and so does any
    failure: pandera then validates the table and builds the error report as before.
    """
    if (schema.checks or schema.dtype is not None or schema.coerce or not schema.strict
            or schema.unique or df.columns.has_duplicates):
        return False
    names = set(schema.columns)
    if any(name not in names for name in df.columns):
        return False
    todo = []
    for name, column in schema.columns.items():
        if column.regex or column.dtype is not None or column.coerce or column.unique:
            return False
        if any(check.element_wise or check.groupby is not None or check.ignore_na for check in column.checks):
            return False
        if name not in df.columns:
            if column.required:
                return False
            continue
        todo.append((column, df[name]))
    try:
        if len(df) >= _PARALLEL_MIN_ROWS and len(todo) > 1:
            # the checks are vectorized numpy/Arrow work that releases the GIL
            return all(_pool().map(lambda item: _column_passes(*item), todo))
        return all(_column_passes(column, values) for column, values in todo)
    except Exception:  # a check that cannot run here: pandera reports it
        return False


def _validate_table(df: pd.DataFrame, path: Path, table: Table, problems: _Problems, row_offset: int) -> None:
    schema = build_schema(table)
    if _schema_passes(schema, df):
        return
    try:
        schema.validate(df, lazy=True, inplace=True)
        return
    except pa.errors.SchemaErrors as exc:
        failures = exc.failure_cases
    known = list(table.columns)
    for (column, check), cases in failures.groupby(["column", "check"], dropna=False, sort=False):
        if check == "column_in_schema":
            for name in cases["failure_case"]:
                hint = difflib.get_close_matches(str(name).strip().lower(), known, n=1, cutoff=0.6)
                rule = "unknown column (not in the data dictionary)"
                rule += f"; did you mean {hint[0]!r}?" if hint else f"; known columns: {', '.join(known)}"
                problems.add(path.name, table.name, str(name), rule)
            continue
        if check == "column_in_dataframe":
            for name in cases["failure_case"]:
                problems.add(path.name, table.name, str(name), "required column missing")
            continue
        positions = pd.Index(df.index).get_indexer(pd.Index(cases["index"].dropna().unique()))
        positions = sorted(int(p) for p in positions if p >= 0)
        rule = "must not be blank (part of the table's key)" if check == "not_nullable" else str(check)
        problems.add(path.name, table.name, str(column), rule, len(positions),
                     _examples(df, positions, table.key, str(column), row_offset))


def _note_unique(facts: _KeyFacts | None, table: str, values: pd.Series) -> None:
    source = _arrow_source(values)
    if facts is not None and source is not None:
        facts.unique[table] = source


def _check_keys(df: pd.DataFrame, path: Path, table: Table, problems: _Problems, notes: list[str],
                row_offset: int, distinct: dict[tuple[str, str], tuple[pa_arrow.Array | pa_arrow.ChunkedArray, bool, bool]],
                facts: _KeyFacts | None = None) -> None:
    key = [k for k in table.key if k in df.columns]
    if len(key) != len(table.key) or not key:
        return
    if _strictly_increasing([df[k] for k in key]):
        # sorted by its key (exports usually are): no repeated key, proven without hashing
        if len(key) == 1:
            # kept as chunks (no copy): only the foreign-key checks of a referenced table combine them
            distinct[table.name, key[0]] = (_arrow_text(df[key[0]]), True, True)
            _note_unique(facts, table.name, df[key[0]])
        return
    if len(key) == 1:
        # one hash of the key column answers "any duplicate?" and serves the foreign-key checks
        values = _arrow_text(df[key[0]])
        unique = pc.unique(values)
        # the distinct values are the rows themselves (same order) when none repeats or is missing
        distinct[table.name, key[0]] = (unique.drop_null(), len(unique) == len(values) and values.null_count == 0,
                                        False)
        if len(unique) == len(values):
            _note_unique(facts, table.name, df[key[0]])
            return
    key_dup = df.duplicated(subset=key, keep=False).to_numpy()
    if not key_dup.any():
        return
    sub = df[key_dup]
    exact_extra = sub.duplicated(keep="first")
    if exact_extra.any():
        rows = [int(p) + row_offset for p in pd.Index(range(len(df)))[key_dup][exact_extra.to_numpy()][:_MAX_EXAMPLES]]
        n = int(exact_extra.sum())
        notes.append(f"{path.name}: {n} row{'s' if n != 1 else ''} repeat{'s' if n == 1 else ''} another row exactly "
                     f"(e.g. row{'s' if len(rows) != 1 else ''} {', '.join(map(str, rows))}); cleaning drops them")
    distinct = sub[~exact_extra.to_numpy()]
    conflicting = distinct.duplicated(subset=key, keep=False)
    if not conflicting.any():
        return
    conflict_keys = distinct.loc[conflicting.to_numpy(), key].drop_duplicates()
    in_conflict = sub[key].merge(conflict_keys, on=key, how="left", indicator=True)["_merge"].eq("both").to_numpy()
    positions = [int(p) for p in pd.Index(range(len(df)))[key_dup][in_conflict]]
    key_name = " + ".join(key)
    if table.duplicate_rule:
        rule = table.duplicate_rule
        notes.append(f"{path.name}: {len(conflict_keys)} {key_name} value(s) appear on differing rows "
                     f"(e.g. rows {', '.join(str(p + row_offset) for p in positions[:_MAX_EXAMPLES])}): cleaning keeps "
                     f"the {rule.get('keep', 'earliest')} by {rule.get('order_by', '?')}")
        return
    problems.add(path.name, table.name, key_name,
                 f"duplicate key: each {key_name} must appear once (rows identical in every column are allowed)",
                 len(positions), _examples(df, positions, table.key, key[0] if len(key) == 1 else None, row_offset))


def _check_foreign_keys(tables: dict[str, pd.DataFrame], files: dict[str, Path], dictionary: DataDictionary,
                        problems: _Problems, offsets: dict[str, int],
                        parent_sets: dict[tuple[str, str], tuple[pa_arrow.Array | pa_arrow.ChunkedArray, bool, bool]],
                        facts: _KeyFacts | None = None, early: _EarlyLookups | None = None) -> None:
    # Group references by the key they point at: one pyarrow lookup per key column (building the
    # hash set of a million keys costs more than probing it; pandas' isin on text loops in Python).
    groups: dict[tuple[str, str], list] = {}
    for fk in dictionary.foreign_keys:
        child, parent = tables.get(fk.table), tables.get(fk.ref_table)
        if child is None or parent is None or fk.column not in child.columns or fk.ref_column not in parent.columns:
            continue
        groups.setdefault((fk.ref_table, fk.ref_column), []).append((fk, _arrow_text(child[fk.column])))
    for (ref_table, ref_column) in groups:
        if (ref_table, ref_column) not in parent_sets:
            parent_sets[ref_table, ref_column] = (pc.unique(_arrow_text(tables[ref_table][ref_column]).drop_null()),
                                                  False, False)
        parent_set, are_rows, is_sorted = parent_sets[ref_table, ref_column]
        if isinstance(parent_set, pa_arrow.ChunkedArray):  # a sorted key column, as the key check left it
            parent_sets[ref_table, ref_column] = (parent_set.combine_chunks(), are_rows, is_sorted)
    # The lookups of different keys are independent: hash lookups (Arrow, GIL released, no pool of
    # their own) go to the pool while this thread does the sorted ones, which may use the pool
    # themselves; at this point they are mostly what is left of load_study, so both cores help.
    # Problems are then reported in the order of the keys, as before.
    lookups = {}
    for ref, refs in groups.items():
        parent_set, _, is_sorted = parent_sets[ref]
        if not (is_sorted and len(parent_set) >= _PARALLEL_MIN_ROWS):
            children = [values for _, values in refs]
            if sum(len(values) for values in children) >= _PARALLEL_MIN_ROWS:
                lookups[ref] = _pool().submit(_hashed_positions, parent_set, children)
    found_by_ref = {}
    for ref, refs in groups.items():
        parent_set, _, is_sorted = parent_sets[ref]
        if ref not in lookups and is_sorted and len(parent_set) >= _PARALLEL_MIN_ROWS:
            # children the background already looked up (early) keep those positions: same function, same data
            done = {(fk.table, fk.column): early.rows.get((fk.table, fk.column)) if early else None for fk, _ in refs}
            todo = [values for fk, values in refs if done[fk.table, fk.column] is None]
            ready = early.parents.get(ref) if early else None
            found = _sorted_positions(parent_set, todo, ready[1] if ready else None) if todo else []
            if found is not None:
                rest = iter(found)
                found = [done[fk.table, fk.column] if done[fk.table, fk.column] is not None else next(rest)
                         for fk, _ in refs]
            found_by_ref[ref] = found
    for (ref_table, ref_column), refs in groups.items():
        parent_set, are_rows, _ = parent_sets[ref_table, ref_column]
        job = lookups.get((ref_table, ref_column))
        found = job.result() if job is not None else found_by_ref.get((ref_table, ref_column))
        if found is None:
            found = _hashed_positions(parent_set, [values for _, values in refs])
        # when the parent's distinct values are its rows, the positions are parent rows: kept for clean_study
        keep_rows = facts is not None and are_rows and len(parent_set) >= _PARALLEL_MIN_ROWS
        parent_source = _arrow_source(tables[ref_table][ref_column]) if keep_rows else None
        for (fk, values), rows in zip(refs, found, strict=True):
            if parent_source is not None:
                child_source = _arrow_source(tables[fk.table][fk.column])
                if child_source is not None:
                    facts.rows[fk.table, fk.column] = (child_source, parent_source, rows)
            _report_orphans(fk, values, rows >= 0, tables[fk.table], files, dictionary, problems, offsets)


def _hashed_positions(parent_set: pa_arrow.Array, children: list[pa_arrow.ChunkedArray]) -> list[np.ndarray]:
    """Position of each child value in ``parent_set`` (distinct values), -1 if absent or missing.

    One Arrow hash lookup for all children together (building the hash set of a million keys
    costs more than probing it); ``index_in`` costs what ``is_in`` costs and also tells where.
    """
    probe = pa_arrow.chunked_array([chunk for values in children for chunk in values.chunks],
                                   type=pa_arrow.large_string())
    if len(parent_set) > 10_000:
        probe = probe.combine_chunks()  # pyarrow rebuilds the lookup set for every chunk
    found = _filled(pc.index_in(probe, value_set=parent_set))
    out, start = [], 0
    for values in children:
        out.append(found[start:start + len(values)])
        start += len(values)
    return out


def _filled(index: pa_arrow.Array | pa_arrow.ChunkedArray) -> np.ndarray:
    """An ``index_in`` result as int32 numpy, -1 where null (what ``fill_null(-1)`` gives, without its copy pass)."""
    if isinstance(index, pa_arrow.ChunkedArray):
        index = index.combine_chunks() if index.num_chunks != 1 else index.chunk(0)
    if index.type != pa_arrow.int32():
        return index.fill_null(-1).to_numpy(zero_copy_only=False)
    values = np.frombuffer(index.buffers()[1], dtype=np.int32)[index.offset:index.offset + len(index)]
    if not index.null_count:
        return values
    return np.where(index.is_valid().to_numpy(zero_copy_only=False), values, np.int32(-1))


def _fixed_width(values: pa_arrow.Array) -> np.ndarray | None:
    """The values of a text array as a numpy ``S<w>`` view of its bytes (no copy), when that is exact.

    Only when no value is missing, all values have the same byte width ``w >= 1`` and no byte is
    NUL (numpy ignores trailing NULs of ``S`` values): numpy then compares the values exactly
    as Arrow does, byte by byte. Else ``None``.
    """
    n = len(values)
    if n == 0 or values.null_count or values.type != pa_arrow.large_string():
        return None
    _, offsets, data = values.buffers()
    bounds = np.frombuffer(offsets, dtype=np.int64)[values.offset:values.offset + n + 1]
    width = int(bounds[1] - bounds[0])
    if width < 1 or int(bounds[-1] - bounds[0]) != n * width or not (np.diff(bounds) == width).all():
        return None
    raw = np.frombuffer(data, dtype=np.uint8)[bounds[0]:bounds[-1]]
    if not raw.all():
        return None
    return raw.view(f"S{width}")


#: Most digits a numbered key may have (10**18 - 1 still fits an int64).
_MAX_KEY_DIGITS = 18


def _numbered(parent_view: np.ndarray) -> tuple[np.ndarray, int] | None:
    """For a strictly increasing ``S<w>`` key column numbered without gaps: (prefix bytes, first number).

    Fast path of :func:`_sorted_positions` for keys such as ``PAT0000001 .. PAT1000000``:
    every value is the same prefix (the first value's bytes before its trailing digits)
    followed by ``d = w - len(prefix)`` ASCII digits (1 <= d <= 18), and last number - first
    number == n - 1. Then the key at position ``p`` is exactly prefix + the ``d``-digit
    number ``first + p``: equal-length digit strings sort as their numbers, so n strictly
    increasing values hold n distinct numbers in ``[first, last]``, a range of n numbers, each
    once and in order. ``None`` when any of this fails (the caller binary-searches).
    """
    n, width = len(parent_view), parent_view.dtype.itemsize
    first = bytes(parent_view[0])
    k = len(first.rstrip(b"0123456789"))
    if not 1 <= width - k <= _MAX_KEY_DIGITS:
        return None
    rows = parent_view.view(np.uint8).reshape(n, width)
    prefix = rows[0, :k].copy()
    if k and not (rows[:, :k] == prefix).all():
        return None
    if not ((rows[:, k:] - np.uint8(48)) < 10).all():  # uint8 arithmetic: bytes below "0" wrap above 9
        return None
    lo, hi = int(first[k:]), int(bytes(parent_view[-1])[k:])
    return (prefix, lo) if hi - lo == n - 1 else None


def _numbered_positions(view: np.ndarray, prefix: np.ndarray, lo: int, n: int) -> np.ndarray:
    """Position of each ``view`` value in a numbered parent (:func:`_numbered`) of ``n`` keys, -1 if absent.

    ``view`` has the parent's byte width. A value is a parent key exactly when it has the
    prefix, digits after it and a number in ``[lo, lo + n)``; its position is then number - lo
    (digits of rows that fail are never used: overflow there is harmless).
    """
    m, width = len(view), view.dtype.itemsize
    k = len(prefix)
    rows = view.view(np.uint8).reshape(m, width)
    # byte-wide passes: any prefix byte differing, the largest digit (a non-digit byte gives > 9)
    differs = np.zeros(m, dtype=np.uint8)
    for j in range(k):
        differs |= rows[:, j] ^ prefix[j]
    largest = np.zeros(m, dtype=np.uint8)
    number = np.zeros(m, dtype=np.int32 if width - k <= 9 else np.int64)  # 10**9 - 1 fits an int32
    for j in range(k, width):
        digit = rows[:, j] - np.uint8(48)  # uint8 arithmetic: bytes below "0" wrap above 9
        np.maximum(largest, digit, out=largest)
        number *= 10
        number += digit
    number -= lo
    # as unsigned, a number below lo wraps above n
    ok = (differs == 0) & (largest < 10) & (number.view(np.uint32 if number.dtype == np.int32 else np.uint64) < n)
    return np.where(ok, number, -1).astype(np.int32, copy=False)


def _prepare_parent(parent: pa_arrow.Array) -> tuple[np.ndarray, tuple[np.ndarray, int] | None] | None:
    """What :func:`_sorted_positions` derives from a sorted parent once: its fixed-width view and numbering."""
    parent_view = _fixed_width(parent)
    return None if parent_view is None else (parent_view, _numbered(parent_view))


def _sorted_positions(parent: pa_arrow.Array, children: list[pa_arrow.ChunkedArray],
                      prepared: tuple[np.ndarray, tuple[np.ndarray, int] | None] | None = None,
                      ) -> list[np.ndarray] | None:
    """:func:`_hashed_positions` by binary search in a parent key column proven strictly increasing.

    Fast path for large parents (no hash set of a million keys to build): the parent's values
    and every child's non-missing values are viewed as fixed-width bytes (:func:`_fixed_width`);
    ``searchsorted`` gives the only place a child value can be, and an equality test there
    says whether it is. Exact because the parent is sorted in Arrow's byte order, which is
    numpy's order for these views. ``None`` (the caller hashes) when a view is not exact.
    A parent numbered without gaps (:func:`_numbered`) needs no search: each child's position
    is computed from its digits (:func:`_numbered_positions`).
    """
    if prepared is None:
        prepared = _prepare_parent(parent)
        if prepared is None:
            return None
    parent_view, numbered = prepared

    def one(values: pa_arrow.ChunkedArray) -> np.ndarray | None:
        # chunk by chunk, each chunk's bytes viewed where they are (combining the chunks would copy them)
        rows = np.full(len(values), -1, dtype=np.int32) if values.null_count else np.empty(len(values), np.int32)
        start = 0
        for chunk in values.chunks:
            n = len(chunk)
            present = chunk.drop_null() if chunk.null_count else chunk
            if len(present):
                view = _fixed_width(present)
                if view is None or view.dtype != parent_view.dtype:
                    return None
                if numbered is not None:
                    hit = _numbered_positions(view, *numbered, len(parent_view))
                else:
                    at = np.minimum(np.searchsorted(parent_view, view), len(parent_view) - 1)
                    hit = np.where(parent_view[at] == view, at, -1).astype(np.int32)
                if chunk.null_count:
                    rows[start:start + n][chunk.is_valid().to_numpy(zero_copy_only=False)] = hit
                else:
                    rows[start:start + n] = hit
            start += n
        return rows

    # numpy's searchsorted releases the GIL: one child per core. Not for a numbered parent: its
    # lookups are a few byte-wide passes, cheaper than waiting for the pool, which the background
    # table checks share.
    if numbered is None and len(children) > 1 and sum(len(values) for values in children) >= _PARALLEL_MIN_ROWS:
        out = list(_pool().map(one, children))
    else:
        out = [one(values) for values in children]
    return None if any(rows is None for rows in out) else out


def _report_orphans(fk, values: pa_arrow.Array, known, child: pd.DataFrame, files: dict[str, Path],
                    dictionary: DataDictionary, problems: _Problems, offsets: dict[str, int]) -> None:
    orphan = ~known & values.is_valid().to_numpy(zero_copy_only=False)
    col = dictionary[fk.table].columns[fk.column]
    if orphan.any() and col.missing_codes:
        # a missing code (blank, NA, ...) in an optional reference is not an orphan
        lowered = pc.utf8_lower(pc.utf8_trim_whitespace(values))
        missing = pc.is_in(lowered, value_set=pa_arrow.array(sorted({m.strip().lower() for m in col.missing_codes}),
                                                             type=pa_arrow.large_string()))
        orphan &= ~missing.to_numpy(zero_copy_only=False).astype(bool)
    if orphan.any():
        positions = [int(p) for p in orphan.nonzero()[0]]
        problems.add(files[fk.table].name, fk.table, fk.column,
                     f"unknown {fk.ref_column}: every {fk.table}.{fk.column} must exist in "
                     f"{fk.ref_table}.{fk.ref_column} ({files[fk.ref_table].name})",
                     len(positions), _examples(child, positions, dictionary[fk.table].key, fk.column,
                                               offsets[fk.table]))


def _read_truth(folder: Path, problems: _Problems) -> dict[str, Any] | None:
    path = folder / "truth.json"
    if not path.exists():
        return None
    try:
        truth = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:
        problems.add(path.name, "", "", f"truth.json is not valid JSON: {exc}")
        return None
    if not isinstance(truth, dict):
        problems.add(path.name, "", "", "truth.json must hold one JSON object")
        return None
    return truth


def _codes_of(values: pd.Series, column: Any) -> pd.Series:
    """Raw values of a coded column as its codes (text answers, labels and aliases mapped; else missing)."""
    lookup = column.text_to_code()
    # once per distinct value (a follow-up table of a million rows has two time points)
    return values.map({u: lookup.get(_cell_text(u).strip().lower()) for u in pd.unique(values.dropna())})


def _id_text(values: pd.Series) -> pd.Series:
    """Identifiers as stripped text (already text when read from CSV: no Python call per row)."""
    if values.dtype == object or not pd.api.types.is_string_dtype(values.dtype):
        values = values.map(_cell_text, na_action="ignore")
    return values.str.strip()


def _check_withdrawals(tables: dict[str, pd.DataFrame], files: dict[str, Path], dictionary: DataDictionary,
                       problems: _Problems, offsets: dict[str, int]) -> None:
    """Cross-table rules of the optional ``withdrawals`` table (reasons for loss to follow-up).

    A reason is only possible for a questionnaire that was due and not returned, so three rules,
    each one problem naming ``withdrawals`` file, column and rows: the patient returned the
    baseline questionnaire (``patients.invitation_outcome`` is ``responded``); ``followups`` has
    no row for the same patient and time point; a lasting reason at 2 months (withdrew, died,
    moved) comes with no returned 6-month questionnaire. Checked only when the three tables were
    read without problems of their own (else those problems come first).
    """
    name = "withdrawals"
    if name not in dictionary.tables or name not in tables or "patients" not in tables or "followups" not in tables:
        return
    if any(problems.count(t) for t in (name, "patients", "followups")):
        return
    w = tables[name]
    if w.empty:
        return
    table = dictionary[name]
    file, offset = files[name].name, offsets[name]
    pid = _id_text(w["patient_id"])
    month = _codes_of(w["time_point"], table.columns["time_point"])
    # only the patients and follow-ups of the patients named here (a few of a large export)
    named = np.asarray(pid.dropna().unique(), dtype=object)
    patients = tables["patients"]
    p_ids = _id_text(patients["patient_id"])
    p_sel = p_ids.astype(object).isin(named).to_numpy(dtype=bool)  # pandas' hash table, not a per-value list
    outcome_col = dictionary["patients"].columns["invitation_outcome"]
    outcome = pd.Series(_codes_of(patients.loc[p_sel, "invitation_outcome"], outcome_col).to_numpy(),
                        index=p_ids[p_sel].to_numpy())
    outcome = outcome[~outcome.index.duplicated()]
    theirs = pid.map(outcome)
    bad = theirs.notna() & (theirs != "responded")
    if bad.any():
        positions = np.flatnonzero(bad.to_numpy())
        shown = ", ".join(sorted({str(v) for v in theirs[bad]}))
        problems.add(file, name, "patient_id",
                     f"a reason for loss to follow-up is given for a patient who did not return the baseline "
                     f"questionnaire (invitation_outcome {shown} in {files['patients'].name}), so had no follow-up "
                     f"to lose; only baseline respondents can be lost to follow-up",
                     len(positions), _examples(w, positions, table.key, "patient_id", offset))
    fu = tables["followups"]
    f_ids = _id_text(fu["patient_id"])
    f_sel = f_ids.astype(object).isin(named).to_numpy(dtype=bool)
    returned = pd.MultiIndex.from_arrays([f_ids[f_sel].to_numpy(), _codes_of(
        fu.loc[f_sel, "time_point"], dictionary["followups"].columns["time_point"]).to_numpy()])

    def flag(rows: np.ndarray, column: str, rule: str) -> None:
        if rows.any():
            positions = np.flatnonzero(rows)
            problems.add(file, name, column, rule, len(positions),
                         _examples(w, positions, table.key, column, offset))

    flag(pd.MultiIndex.from_arrays([pid, month]).isin(returned), "time_point",
         f"a reason for loss to follow-up is given for a questionnaire that was returned "
         f"({files['followups'].name} has a row with the same patient_id and time_point); a patient "
         f"who replied was not lost: remove the row here or the follow-up there")
    reason = _codes_of(w["reason"], table.columns["reason"])
    lasting = (month == 2).to_numpy() & reason.isin(LASTING_REASONS).to_numpy()
    flag(lasting & pd.MultiIndex.from_arrays([pid, np.full(len(pid), 6, dtype=object)]).isin(returned), "reason",
         f"a lasting reason ({', '.join(LASTING_REASONS)}) at 2 months, but "
         f"{files['followups'].name} has the patient's 6-month questionnaire; give the reason that "
         f"applied at 2 months (e.g. too_ill, no_reply, other) or correct the follow-up")


def load_study(path: str | Path, *, dictionary: DataDictionary | str | Path | None = None,
               mapping: Any = None) -> Study:
    """Read a study export folder and validate it against the data dictionary.

    Parameters
    ----------
    path : str or Path
        Folder with one file per table: ``<table>.csv``, ``<table>.parquet`` or
        ``<table>.xlsx`` (first sheet), plus an optional ``truth.json``. Optional tables of the
        dictionary (``withdrawals``, the reasons for loss to follow-up) may have no file.
    dictionary : DataDictionary, str or Path, optional
        The data dictionary (or the path of its YAML). Defaults to the bundled one.
    mapping : str, Path or dict, optional
        A mapping file (:mod:`backpain_analysis.mapping`) saying which export file, columns,
        rows and codes make each table; tables it does not name are read from
        ``<table>.csv`` as usual. Recoded cells are in ``Study.mapping_log`` (and then in the
        cleaning log, rule ``mapping``); problems name the export's own files, columns and rows.

    Returns
    -------
    Study
        ``tables`` (dict of raw DataFrames keyed by table name, also ``study.patients``),
        ``path``, ``files`` (table -> file read), ``dictionary``, ``truth`` (parsed
        ``truth.json`` or ``None``) and ``notes`` (non-fatal observations).

    Raises
    ------
    StudyValidationError
        Once, listing every problem: missing or duplicated files, a table given as a
        folder of part files, wrong delimiter, an encoding other than UTF-8 or Windows-1252
        (UTF-16/32 with or without byte-order mark), rows with fewer or more fields than the
        header (each named by its spreadsheet row), ``practices`` or ``patients`` with no
        rows, unreadable files, unknown columns (with the closest known name), missing required
        columns, values the dictionary does not accept, duplicate keys, values that
        point at unknown rows of another table, and reasons for loss to follow-up
        (``withdrawals``) that cannot be true: for a patient who did not return the baseline
        questionnaire, for a follow-up that was returned, or a lasting reason at 2 months
        with a returned 6-month questionnaire.
    BackpainError
        If ``path`` is not a folder.

    Notes
    -----
    The files are only read, never written. CSV is read with pandas' C parser; only
    blank cells are read as missing, so text answers and missing codes (``"Agree"``,
    ``"NA"``, ``99``) stay as they are for :func:`backpain_analysis.clean_study` to
    harmonize and log. Identifier columns (type ``string``) are read as text; a numeric
    column is numeric unless it holds text; dates are text as written. A UTF-8 byte-order mark is skipped (and noted).
    Every CSV data row must have as many fields as the header: pandas would fill a short row
    with blanks, so the delimiters outside quoted fields are counted (one numpy pass) and
    must equal ``(rows + 1) * (columns - 1)``; when they do not, the rows are located with
    Python's ``csv`` module and reported. Lines ending in CR only are read (noted); a table
    with a header and no rows is accepted with a note saying what it implies
    (:data:`EMPTY_TABLE_MEANS`).
    Every table is validated lazily with its pandera schema
    (:func:`backpain_analysis.schemas.build_schema`), then keys: rows identical in every
    column are noted, not errors (cleaning drops them); other rows sharing a key are an
    error except in tables with a ``duplicate_rule`` (follow-ups, clinician surveys),
    where cleaning keeps the earliest. Row numbers in examples are those a spreadsheet
    shows (the header is row 1); for parquet files, the record number.

    Examples
    --------
    An empty folder: every table's file is missing, and all eight are reported at once.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     try:
    ...         load_study(tmp)
    ...     except StudyValidationError as err:
    ...         print(len(err.problems), err.problems.loc[0, "rule"])
    8 file missing: every study needs practices.csv (or .parquet / .xlsx)

    A valid export (``backpain synth`` writes one) gives a :class:`Study`:
    ``study = load_study("data/synthetic")``, then ``study.patients``,
    ``study.truth`` and ``study.notes``.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise BackpainError(f"study folder {str(folder)!r} not found (expected a folder with one file per table)")
    if not isinstance(dictionary, DataDictionary):
        dictionary = load_dictionary(dictionary)
    problems = _Problems()
    notes: list[str] = []
    mapped = None
    if mapping is not None:  # an export in its own layout: read through the mapping file (mapping.py)
        from .mapping import read_mapped

        mapped = read_mapped(folder, mapping, dictionary, problems, notes)
        n_mapping_problems = len(problems.rows)  # these already name the export's files and columns
        files = {name: p for name, p in _find_files(folder, dictionary, _Problems(), []).items()
                 if name not in mapped.mapping.tables}
        files.update(mapped.files)
        for name in dictionary.table_names:
            if name not in files and name not in mapped.mapping.tables and not dictionary[name].optional:
                problems.add(f"{name}.csv", name, "", f"file missing: table {name} is not in the mapping file "
                             f"{mapped.mapping.source} and there is no {name}.csv (or .parquet / .xlsx)")
    else:
        files = _find_files(folder, dictionary, problems, notes)
    tables: dict[str, pd.DataFrame] = {}
    offsets: dict[str, int] = {}
    # distinct key values (and whether they are the table's rows), shared by key and foreign-key checks
    distinct: dict[tuple[str, str], tuple[pa_arrow.Array | pa_arrow.ChunkedArray, bool, bool]] = {}
    facts = _KeyFacts()
    early = _EarlyLookups()
    summary = []
    # Each table's problems and notes go to its own lists, merged in dictionary order below, so a
    # large table can be checked in the background while the next file is read.
    parts: list[tuple[_Problems, list[str], Any]] = []
    checked: list[str] = []  # the table of each part
    try:
        for name in dictionary.table_names:
            table = dictionary[name]
            if name not in files:
                summary.append((name, "", pd.NA, pd.NA, "not supplied (optional)" if table.optional else "missing"))
                continue
            file = files[name]
            table_problems, table_notes = _Problems(), []
            if mapped is not None and name in mapped.mapping.tables:
                df = mapped.tables.get(name)
            else:
                df = _read_table(file, table, table_problems, table_notes)
            checked.append(name)
            if df is None:
                parts.append((table_problems, table_notes, None))
                summary.append((name, file.name, pd.NA, pd.NA, "unreadable"))
                continue
            if len(df) == 0:
                means = EMPTY_TABLE_MEANS.get(name, "")
                if means is None:
                    table_problems.add(file.name, name, "", f"the table has a header but no rows; a study needs at "
                                                            f"least one row in {name}")
                else:
                    table_notes.append(f"{file.name}: the table has a header but no rows (accepted): "
                                       f"{means or 'nothing from this table enters the analysis'}")
            offsets[name] = 1 if file.suffix.lower() == ".parquet" else 2
            args = (df, file, table, table_problems, table_notes, offsets[name], distinct, facts)
            if len(df) >= _PARALLEL_MIN_ROWS:
                parts.append((table_problems, table_notes,
                              _background().submit(_check_table_and_look_up, *args, dictionary, early)))
            else:
                _check_table(*args)
                parts.append((table_problems, table_notes, None))
            tables[name] = df
            summary.append((name, file.name, len(df), df.shape[1], None))
    except BaseException:
        for *_, job in parts:
            if job is not None:
                job.cancel()
        raise
    # The foreign-key lookups need every table read and the key checks of the referenced tables
    # (their distinct keys); they then run here while the background still checks the other
    # tables (neither modifies a table). Their problems come after every table's, as before.
    parents = {fk.ref_table for fk in dictionary.foreign_keys}
    for name, (*_, job) in zip(checked, parts, strict=True):
        if job is not None and name in parents:
            job.result()
    fk_problems = _Problems()
    _check_foreign_keys(tables, files, dictionary, fk_problems, offsets, distinct, facts, early)
    for table_problems, table_notes, job in parts:
        if job is not None:
            job.result()
        problems.rows.extend(table_problems.rows)
        notes.extend(table_notes)
    problems.rows.extend(fk_problems.rows)
    _check_withdrawals(tables, files, dictionary, problems, offsets)
    truth = _read_truth(folder, problems)
    if mapped is not None:
        mapped.translate(problems.rows[n_mapping_problems:], offsets, dictionary)
    summary = [(*row[:4], row[4] or _status(problems.count(row[0]))) for row in summary]
    summary_df = pd.DataFrame(summary, columns=_SUMMARY_COLUMNS).astype({"rows": "Int64", "columns": "Int64"})
    if problems.rows:
        raise StudyValidationError(problems.frame(), summary_df, notes, folder)
    mapping_log = mapped.log if mapped else None
    if mapped is None and (folder / "mapping" / "mapping_log.csv").is_file():  # written by `backpain map --out`
        from .mapping import read_mapping_log

        mapping_log = read_mapping_log(folder)
    return Study(tables=tables, path=folder, files=files, dictionary=dictionary, truth=truth, notes=notes, _keys=facts,
                 mapping=mapped.mapping if mapped else None, mapping_log=mapping_log)


def _status(n_problems: int) -> str:
    return "ok" if n_problems == 0 else f"{n_problems} problem{'s' if n_problems != 1 else ''}"
