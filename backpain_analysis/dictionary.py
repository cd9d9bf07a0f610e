"""The study data dictionary: tables, columns, codes and ranges.

The dictionary lives in ``data/data_dictionary.yaml`` (shipped in the wheel as package data of
``backpain_analysis._data``, read with :mod:`importlib.resources`). It is the
single source of truth for the export format: the pandera schemas used by
:func:`backpain_analysis.load_study` and the Markdown table in
``docs/data_dictionary.md`` are both generated from it, so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from ._resources import data_file
from .errors import BackpainError

__all__ = [
    "Column",
    "DataDictionary",
    "ForeignKey",
    "Table",
    "default_dictionary_path",
    "load_dictionary",
]

COLUMN_TYPES = ("string", "integer", "float", "date", "category")


@dataclass(frozen=True)
class Column:
    """One column of a study table, as described in the data dictionary."""

    name: str
    type: str
    description: str
    required: bool = False
    unit: str | None = None
    codes: dict[Any, str] | None = None
    aliases: dict[str, Any] = field(default_factory=dict)
    min: float | None = None
    max: float | None = None
    missing_codes: tuple[str, ...] = ()
    pattern: str | None = None
    code_set: str | None = None

    @property
    def allowed_codes(self) -> list[Any] | None:
        """Allowed values of a coded column (``None`` if the column is not coded)."""
        return None if self.codes is None else list(self.codes)

    @property
    def is_coded(self) -> bool:
        return self.codes is not None

    def text_to_code(self) -> dict[str, Any]:
        """Map every accepted text answer (lower-cased, stripped) to its code.

        Includes the code labels themselves ("agree" -> 1), the aliases ("yes" -> 1)
        and the codes written as text ("1" -> 1).
        """
        mapping: dict[str, Any] = {}
        if self.codes is None:
            return mapping
        for code, label in self.codes.items():
            mapping[str(code).strip().lower()] = code
            mapping[str(label).strip().lower()] = code
        for alias, code in self.aliases.items():
            mapping[str(alias).strip().lower()] = code
        return mapping

    def describe_rule(self) -> str:
        """Plain-words statement of what a valid value is."""
        if self.codes is not None:
            return "one of " + ", ".join(f"{c!r} ({lab})" if str(c) != lab else repr(c) for c, lab in self.codes.items())
        if self.min is not None or self.max is not None:
            return f"a number from {self.min:g} to {self.max:g}" if self.min is not None and self.max is not None else (
                f"a number >= {self.min:g}" if self.min is not None else f"a number <= {self.max:g}")
        return {"date": "a date", "string": "text", "integer": "a whole number", "float": "a number"}.get(self.type, self.type)


@dataclass(frozen=True)
class ForeignKey:
    """A column whose non-missing values must exist in another table's key column."""

    table: str
    column: str
    ref_table: str
    ref_column: str


@dataclass(frozen=True)
class Table:
    """One table (one file) of a study export."""

    name: str
    description: str
    key: tuple[str, ...]
    columns: dict[str, Column]
    duplicate_rule: dict[str, str] | None = None
    #: An optional table (``optional: true``): a study export without its file is valid, and
    #: cleaning uses an empty table instead (e.g. ``withdrawals``, the reasons for loss to follow-up).
    optional: bool = False

    def __iter__(self) -> Iterator[Column]:
        return iter(self.columns.values())

    @property
    def required_columns(self) -> list[str]:
        return [c.name for c in self if c.required]


@dataclass(frozen=True)
class DataDictionary:
    """Parsed data dictionary: ``tables`` by name, ``foreign_keys``, default ``missing_codes``."""

    name: str
    version: int
    description: str
    tables: dict[str, Table]
    foreign_keys: tuple[ForeignKey, ...]
    missing_codes: tuple[str, ...]
    code_sets: dict[str, dict[str, Any]]
    path: Path | None = None
    #: The ``plausibility`` section: ``export_date``, ``recruitment_windows`` and ``rules`` (name ->
    #: ``applies_to``, ``action``, ``actions``, ``description``), applied by ``clean_study``.
    plausibility: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, table: str) -> Table:
        try:
            return self.tables[table]
        except KeyError:
            raise KeyError(f"unknown table {table!r}; the data dictionary has {', '.join(self.tables)}") from None

    @property
    def table_names(self) -> list[str]:
        return list(self.tables)

    @property
    def required_tables(self) -> list[str]:
        """Tables every study export must have a file for (all but the ``optional`` ones)."""
        return [name for name, table in self.tables.items() if not table.optional]

    def to_markdown(self) -> str:
        """Render the dictionary as Markdown (one section and one table per study table)."""
        lines = [f"# Data dictionary: {self.name}", "", "Generated from `data/data_dictionary.yaml` by "
                 "`python -m backpain_analysis dictionary --markdown`; do not edit by hand.", "", self.description, "",
                 "Default missing codes (when not a valid value of the column): "
                 + ", ".join(f"`{c}`" if c else "blank" for c in self.missing_codes), ""]
        for table in self.tables.values():
            lines += [f"## `{table.name}`", "", table.description, ""]
            if table.optional:
                lines += [f"Optional file: a study export without `{table.name}.csv` is valid (an empty table is used).", ""]
            lines.append(f"Key: {', '.join(f'`{k}`' for k in table.key)}")
            if table.duplicate_rule:
                lines.append(f"; duplicate keys: keep the {table.duplicate_rule['keep']} by `{table.duplicate_rule['order_by']}`")
            lines += ["", "| column | type | required | unit | allowed values | description |", "|---|---|---|---|---|---|"]
            for c in table:
                allowed = c.describe_rule() if (c.codes is not None or c.min is not None or c.max is not None) else ""
                if c.pattern:
                    allowed = "letters, digits, `_` or `-`"
                lines.append(f"| `{c.name}` | {c.type} | {'yes' if c.required else ''} | {c.unit or ''} | "
                             f"{allowed.replace('|', '/')} | {c.description.replace('|', '/')} |")
            lines.append("")
        rules = (self.plausibility or {}).get("rules") or {}
        if rules:
            lines += ["## Plausibility rules", "", str(self.plausibility.get("description", "")).strip(), "",
                      "| rule | applies to | default action | other actions | what it checks |", "|---|---|---|---|---|"]
            for name, rule in rules.items():
                others = ", ".join(a for a in rule.get("actions", ()) if a != rule.get("action"))
                lines.append(f"| `{name}` | {str(rule.get('applies_to', '')).replace('|', '/')} | {rule.get('action', '')} "
                             f"| {others} | {str(rule.get('description', '')).replace('|', '/')} |")
            lines.append("")
        if self.foreign_keys:
            lines += ["## Cross-table keys", "", "| column | must exist in |", "|---|---|"]
            lines += [f"| `{fk.table}.{fk.column}` | `{fk.ref_table}.{fk.ref_column}` |" for fk in self.foreign_keys]
            lines.append("")
        return "\n".join(lines)


def default_dictionary_path() -> Path:
    """Path of the bundled data dictionary.

    ``data/data_dictionary.yaml`` in the repository, shipped in the wheel as package data
    (``backpain_analysis._data``) and found with :mod:`importlib.resources`.
    """
    return data_file("data_dictionary.yaml")


def _column(name: str, spec: dict[str, Any], code_sets: dict[str, dict[str, Any]], default_missing: tuple[str, ...]) -> Column:
    spec = dict(spec)
    if spec.get("type") not in COLUMN_TYPES:
        raise BackpainError(f"data dictionary: column {name!r} has type {spec.get('type')!r}; expected one of {COLUMN_TYPES}")
    codes = spec.get("codes")
    aliases = dict(spec.get("aliases") or {})
    if spec.get("code_set"):
        cs = code_sets[spec["code_set"]]
        codes = cs["codes"]
        aliases = {**cs.get("aliases", {}), **aliases}
    if isinstance(codes, list):
        codes = {c: c for c in codes}
    missing = spec.get("missing_codes")
    if missing is None:
        # the default list, minus values that are valid for this column
        valid_text = {str(c).lower() for c in (codes or {})} | {str(lab).lower() for lab in (codes or {}).values()}
        lo, hi = spec.get("min"), spec.get("max")
        keep = []
        for m in default_missing:
            if m.lower() in valid_text:
                continue
            try:
                value = float(m)
            except ValueError:
                keep.append(m)
                continue
            if lo is not None and hi is not None and lo <= value <= hi:
                continue
            keep.append(m)
        missing = keep
    return Column(
        name=name,
        type=spec["type"],
        description=spec.get("description", ""),
        required=bool(spec.get("required", False)),
        unit=spec.get("unit"),
        codes=codes,
        aliases=aliases,
        min=spec.get("min"),
        max=spec.get("max"),
        missing_codes=tuple(str(m) for m in missing),
        pattern=spec.get("pattern"),
        code_set=spec.get("code_set"),
    )


#: libyaml's safe loader when PyYAML was built with it (same result, about 8x faster on the
#: bundled dictionary: 8 ms instead of 65 ms at the start of every fresh process), else PyYAML's own.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@lru_cache(maxsize=8)
def _load_cached(path: str) -> DataDictionary:
    with open(path, encoding="utf-8") as fh:
        raw = yaml.load(fh, Loader=_SafeLoader)  # a safe loader (C or Python), never the full one
    default_missing = tuple(str(m) for m in raw.get("missing_codes", []))
    code_sets = raw.get("code_sets", {})
    tables = {}
    for tname, tspec in raw["tables"].items():
        columns = {cname: _column(cname, cspec, code_sets, default_missing) for cname, cspec in tspec["columns"].items()}
        key = tuple(tspec.get("key", ()))
        unknown = [k for k in key if k not in columns]
        if unknown:
            raise BackpainError(f"data dictionary: key column(s) {unknown} of table {tname!r} are not described")
        tables[tname] = Table(tname, tspec.get("description", ""), key, columns, tspec.get("duplicate_rule"),
                              optional=bool(tspec.get("optional", False)))
    fks = []
    for fk in raw.get("foreign_keys", []):
        ref_table, ref_column = fk["references"].split(".")
        fks.append(ForeignKey(fk["table"], fk["column"], ref_table, ref_column))
    return DataDictionary(
        name=raw.get("name", ""),
        version=int(raw.get("version", 1)),
        description=raw.get("description", ""),
        tables=tables,
        foreign_keys=tuple(fks),
        missing_codes=default_missing,
        code_sets=code_sets,
        path=Path(path),
        plausibility=dict(raw.get("plausibility") or {}),
    )


def load_dictionary(path: str | Path | None = None) -> DataDictionary:
    """Read and parse a data dictionary (the bundled one by default).

    Parameters
    ----------
    path : str or Path, optional
        A YAML data dictionary. Defaults to :func:`default_dictionary_path`.

    Returns
    -------
    DataDictionary
        Tables by name; each :class:`Table` holds its :class:`Column` objects with
        type, unit, allowed codes (a code -> label mapping) or range, aliases
        accepted from real exports, and missing codes.

    Examples
    --------
    >>> from backpain_analysis import load_dictionary
    >>> dd = load_dictionary()
    >>> dd["patients"].columns["sbst_9"].codes[3]
    'very much'
    """
    return _load_cached(str(Path(path or default_dictionary_path()).resolve()))
