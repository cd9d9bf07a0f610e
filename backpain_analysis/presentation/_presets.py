"""Presets: how each kind of results table the package produces becomes a display table.

A preset lists display columns; each takes cells from named result columns. A display column
whose result columns are absent is left out, and result columns no preset names (``df``,
``method``, ``m``, ...) are ignored unless asked for with ``extra``, so results tables can gain
columns without breaking their display.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from ._format import (
    MISSING,
    PresentationError,
    format_count,
    format_estimate_ci,
    format_finding,
    format_mean_sd,
    format_n_pct,
    format_number,
    format_p,
)
from ._table import DisplayTable

__all__ = ["PRESETS", "display_table"]

PHASES = {1: "Phase 1 (usual care)", 3: "Phase 3 (stratified care)"}
EFFECT = "Effect (phase 3 vs phase 1)"
Row = Mapping[str, Any]


@dataclass(frozen=True)
class Col:
    """A display column: header, spanner, the result columns it needs, and its cell function."""

    header: str
    needs: tuple[str, ...]
    cell: Callable[[Row], str]
    spanner: str = ""
    align: str = "r"


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return MISSING
    text = str(value).strip()
    return text if text else MISSING


_CODE = re.compile(r"[a-z0-9]+(?:_[a-z0-9]+)+")


def _label(value: Any) -> str:
    """Stub text: first letter upper case (``multiple imputation`` -> ``Multiple imputation``); a
    snake_case code reads as words (``psych_informed_physiotherapy`` -> ``Psych informed physiotherapy``)."""
    text = _text(value)
    if _CODE.fullmatch(text):
        text = text.replace("_", " ")
    return text[:1].upper() + text[1:] if text != MISSING else text


def _stub(column: str, header: str) -> Col:
    return Col(header, (column,), lambda r: _label(r[column]), align="l")


_HUMAN = {
    "label": "Measure", "measure": "Measure", "outcome": "Outcome", "analysis": "Analysis", "population": "Population",
    "risk_group": "Risk group", "effect": "Effect measure", "item": "Step", "group": "Group", "phase": "Phase",
    "estimate": "Estimate", "ci_low": "95% CI, lower", "ci_high": "95% CI, upper", "p_value": "p", "n": "N",
    "df": "Degrees of freedom", "df_num": "df (numerator)", "df_den": "df (denominator)", "m": "Imputations",
    "method": "Method", "fmi": "Fraction of missing information", "mc_error": "Monte Carlo SE", "icc": "ICC", "statistic": "Statistic",
    "test": "Test", "note": "Note", "truth": "True value", "published": "Published",
    "prob_cost_effective": "P(cost-effective)",
}


def human_label(column: str) -> str:
    """A readable header for a result column (``n_adjusted`` -> ``N adjusted``).

    Examples
    --------
    >>> human_label("p_value"), human_label("n_adjusted"), human_label("some_new_thing")
    ('p', 'N adjusted', 'Some new thing')
    >>> human_label("pct_missing_cells"), human_label("practice_id"), human_label("se")
    ('% missing cells', 'Practice ID', 'SE')
    """
    if column in _HUMAN:
        return _HUMAN[column]
    words = str(column).replace("_", " ").split()
    upper = {"id": "ID", "sd": "SD", "se": "SE", "ci": "CI", "or": "OR", "gp": "GP", "nhs": "NHS", "qaly": "QALY",
             "rmdq": "RMDQ", "sbst": "SBST", "auc": "AUC", "icc": "ICC", "eq5d": "EQ-5D", "gbp": "GBP"}
    words = [upper.get(w.lower(), w) for w in words]
    if words and words[0] == "pct":
        words[0] = "%"
    text = " ".join(words)
    if text.startswith("n ") or text == "n":
        return "N" + text[1:]
    return text[:1].upper() + text[1:]


def _generic_cell(column: str, series: pd.Series, decimals: int) -> Callable[[Row], str]:
    """A cell function for a column no preset knows, chosen from its name and values."""
    name = str(column)
    if name == "p_value" or name.endswith("_p_value") or name in {"p", "pval"}:
        return lambda r: format_p(r[column])
    values = pd.to_numeric(series[series.astype(str) != "*"], errors="coerce")
    numeric = len(values) > 0 and values.notna().sum() == series.notna().sum() - (series.astype(str) == "*").sum()
    if not numeric or pd.api.types.is_bool_dtype(series):
        return lambda r: _text(r[column])
    finite = values[np.isfinite(values.to_numpy(float, na_value=np.nan))]
    # whole numbers are counts unless the column is float: 30.0 (% missing) stays "30.0", not "30"
    whole = (len(finite) > 0 and bool((finite == finite.round()).all())
             and not pd.api.types.is_float_dtype(series) and not name.endswith(("_low", "_high", "estimate")))
    if name == "n" or name.startswith(("n_", "events_", "observed_")) or name in {"m", "count"} or whole:
        return lambda r: format_count(r[column])
    d = 1 if name.startswith("pct") or name in {"df", "df_den", "df_num"} else decimals
    return lambda r: format_number(r[column], d)


def _extras(df: pd.DataFrame, extra: Sequence[str], decimals: int) -> list[Col]:
    cols = []
    for c in extra:
        if c not in df.columns:
            raise PresentationError(f"display table: extra column {c!r} is not in the results table "
                                    f"(columns: {', '.join(map(str, df.columns))})")
        cols.append(Col(human_label(c), (c,), _generic_cell(c, df[c], decimals)))
    return cols


def _reference_cols(decimals: Callable[[Row], int]) -> list[Col]:
    """Published and true values, when a notebook has added them."""
    return [Col("Published", ("published",), lambda r: format_number(r["published"], decimals(r)), "Reference"),
            Col("True value", ("truth",), lambda r: format_number(r["truth"], decimals(r)), "Reference")]


def _summary_cell(ph: int, decimals_mean: int = 1) -> Callable[[Row], str]:
    def cell(r: Row) -> str:
        mean = r.get(f"mean_phase{ph}")
        if format_number(mean) != MISSING:
            return format_mean_sd(mean, r.get(f"sd_phase{ph}"), decimals_mean)
        return format_n_pct(r.get(f"events_phase{ph}"), r.get(f"pct_phase{ph}"))
    return cell


def _effects(df: pd.DataFrame, decimals: int | None) -> tuple[list[Col], list[str]]:
    d = 2 if decimals is None else decimals
    stub = []
    for c in ("label", "risk_group", "population"):
        if c in df.columns:
            stub.append(_stub(c, human_label(c)))
            break
    if "analysis" in df.columns:
        stub.append(_stub("analysis", "Analysis"))
    if not stub:
        raise PresentationError("display table (effects): needs a label column (label, risk_group or population) "
                                f"or analysis; columns are {', '.join(map(str, df.columns))}")
    cols = list(stub)
    for ph, span in PHASES.items():
        cols.append(Col("N", (f"n_phase{ph}",), lambda r, ph=ph: format_count(r[f"n_phase{ph}"]), span))
        cols.append(Col("Observed", (f"observed_phase{ph}",), lambda r, ph=ph: format_count(r[f"observed_phase{ph}"]),
                        span))
        if any(f"{p}_phase{ph}" in df.columns for p in ("mean", "events")):
            header = ("Mean (SD) or n (%)" if {f"mean_phase{ph}", f"events_phase{ph}"} <= set(df.columns)
                      else "Mean (SD)" if f"mean_phase{ph}" in df.columns else "n (%)")
            cols.append(Col(header, (), _summary_cell(ph), span))
    cols += [
        Col("Effect measure", ("effect",), lambda r: _text(r["effect"]), EFFECT, "l"),
        Col("Estimate (95% CI)", ("estimate",),
            lambda r: format_estimate_ci(r["estimate"], r.get("ci_low"), r.get("ci_high"), d), EFFECT),
        Col("p", ("p_value",), lambda r: format_p(r["p_value"]), EFFECT),
        *_reference_cols(lambda r: d),
    ]
    return cols, []


def _process(df: pd.DataFrame, decimals: int | None) -> tuple[list[Col], list[str]]:
    d = 2 if decimals is None else decimals
    cols = [_stub("label" if "label" in df.columns else "measure", "Measure")]
    for ph, span in PHASES.items():
        cols.append(Col("N", (f"n_phase{ph}",), lambda r, ph=ph: format_count(r[f"n_phase{ph}"]), span))
        cols.append(Col("n (%)", (f"events_phase{ph}",),
                        lambda r, ph=ph: format_n_pct(r[f"events_phase{ph}"], r.get(f"pct_phase{ph}"),
                                                      denominator=r.get(f"n_phase{ph}")), span))
    cols += [
        Col("OR (95% CI)", ("estimate",),
            lambda r: format_estimate_ci(r["estimate"], r.get("ci_low"), r.get("ci_high"), d), EFFECT),
        Col("p", ("p_value",), lambda r: format_p(r["p_value"]), EFFECT),
    ]
    clustered = {"clustered_ci_low", "clustered_ci_high", "clustered_p_value"} <= set(df.columns)
    if clustered:  # the design's analysis: adjusted OR with practices as clusters (primary)
        cols += [
            Col("Adjusted OR, clustered (95% CI)", ("adjusted_estimate",),
                lambda r: format_estimate_ci(r["adjusted_estimate"], r.get("clustered_ci_low"),
                                             r.get("clustered_ci_high"), d), EFFECT),
            Col("p, clustered", ("clustered_p_value",), lambda r: format_p(r["clustered_p_value"]), EFFECT),
        ]
    else:
        cols += [
            Col("Adjusted OR (95% CI)", ("adjusted_estimate",),
                lambda r: format_estimate_ci(r["adjusted_estimate"], r.get("adjusted_ci_low"),
                                             r.get("adjusted_ci_high"), d), EFFECT),
            Col("p, adjusted", ("adjusted_p_value",), lambda r: format_p(r["adjusted_p_value"]), EFFECT),
        ]
    cols += [*_reference_cols(lambda r: d)]
    notes = []
    if "note" in df.columns:
        label = "label" if "label" in df.columns else "measure"
        notes = [f"{_label(r[label])}: {str(r['note']).strip()}." for _, r in df.iterrows()
                 if _text(r["note"]) != MISSING]
    if "estimate" in df.columns:
        notes.append("OR: odds ratio of the measure in phase 3 versus phase 1 (logistic regression), unadjusted and "
                     "with patients treated as independent, as published.")
    if clustered and "adjusted_estimate" in df.columns:
        notes.append("Adjusted OR, clustered (primary analysis): adjusted for the covariates of the analysis; 95% CI "
                     "and p from the Mancl-DeRouen bias-corrected cluster-robust SE with practices as clusters and t on "
                     "G - 1 df. The model-based (independent) adjusted CI is a sensitivity analysis, in the CSV file.")
    return cols, notes


def _flow(df: pd.DataFrame, decimals: int | None) -> tuple[list[Col], list[str]]:
    d = 1 if decimals is None else decimals
    if "item" not in df.columns:
        raise PresentationError(f"display table (flow): needs an 'item' column; columns are {', '.join(map(str, df.columns))}")
    cols = [_stub("item", "Step")]
    for ph, span in PHASES.items():
        cols.append(Col("n (%)", (f"n_phase{ph}",),
                        lambda r, ph=ph: format_n_pct(r[f"n_phase{ph}"], r.get(f"pct_phase{ph}"), decimals=d), span))
    cols.append(Col("Percentage of", ("percent_of",), lambda r: _text(r["percent_of"]), "", "l"))
    return cols, []


def _economics_decimals(r: Row) -> int:
    measure = str(r.get("measure", "")).lower()
    return 3 if "qaly" in measure and "monetary" not in measure else 0


def _economics(df: pd.DataFrame, decimals: int | None) -> tuple[list[Col], list[str]]:
    def dec(r: Row) -> int:
        return _economics_decimals(r) if decimals is None else decimals

    cols = [c for c in (_stub("population", "Population") if "population" in df.columns else None,
                        _stub("measure", "Measure") if "measure" in df.columns else None) if c is not None]
    if not cols:
        raise PresentationError("display table (economics): needs a 'population' or 'measure' column")
    for ph, span in PHASES.items():
        cols.append(Col("N", (f"n_phase{ph}",), lambda r, ph=ph: format_count(r[f"n_phase{ph}"]), span))
        cols.append(Col("Mean", (f"mean_phase{ph}",), lambda r, ph=ph: format_number(r[f"mean_phase{ph}"], dec(r)),
                        span))
    cols += [
        Col("Estimate (95% CI)", ("estimate",),
            lambda r: format_estimate_ci(r["estimate"], r.get("ci_low"), r.get("ci_high"), dec(r)), EFFECT),
        Col("p", ("p_value",), lambda r: format_p(r["p_value"]), EFFECT),
        Col("P(cost-effective)", ("prob_cost_effective",), lambda r: format_number(r["prob_cost_effective"], 2),
            EFFECT),
        *_reference_cols(dec),
    ]
    notes = ["Costs in GBP per patient; QALYs per patient; 95% CIs from the bootstrap."]
    return cols, notes


def _auto(df: pd.DataFrame, decimals: int | None) -> tuple[list[Col], list[str]]:
    d = 2 if decimals is None else decimals
    cols: list[Col] = []
    used: set[str] = set()
    leading = True
    for c in df.columns:
        if c in used:
            continue
        name = str(c)
        if name == "estimate" or name.endswith("_estimate"):
            prefix = name[: -len("estimate")]
            lo, hi = f"{prefix}ci_low", f"{prefix}ci_high"
            cols.append(Col(f"{human_label(prefix.rstrip('_')) + ' e' if prefix else 'E'}stimate (95% CI)", (c,),
                            lambda r, c=c, lo=lo, hi=hi: format_estimate_ci(r[c], r.get(lo), r.get(hi), d)))
            used |= {c, lo, hi}
            leading = False
            continue
        cell = _generic_cell(c, df[c], d)
        is_text = (name in {"phase", "month", "year"}  # grouping columns, shown as labels
                   or not pd.api.types.is_numeric_dtype(df[c]) and not (df[c].astype(str) == "*").any())
        align = "l" if is_text else "r"
        if leading and is_text and not pd.api.types.is_numeric_dtype(df[c]):
            cell = lambda r, c=c: _label(r[c])  # noqa: E731  (row labels start with a capital)
        elif name in {"phase", "month", "year"} and pd.api.types.is_numeric_dtype(df[c]):
            cell = lambda r, c=c: _code_text(r[c])  # noqa: E731  (a code: 3, not 3.00)
        spanner = ""
        header = human_label(name)
        for ph, span in PHASES.items():
            if name.endswith(f"_phase{ph}"):
                spanner = span
                header = human_label(name[: -len(f"_phase{ph}")])
        cols.append(Col(header, (c,), cell, spanner, align))
        if not (leading and is_text):
            leading = False
        used.add(c)
    return cols, []


def _table1_frame(t1: Any) -> pd.DataFrame:
    """Table 1 (tableone or :func:`cohort.shareable_table1` output) with the characteristic as a column."""
    frame = t1.tableone if hasattr(t1, "tableone") else t1
    frame = frame.copy()
    if isinstance(frame.columns, pd.MultiIndex):
        frame.columns = [next((str(p) for p in reversed(c) if str(p).strip()), "") for c in frame.columns]
    if isinstance(frame.index, pd.MultiIndex):
        frame.index = [": ".join(str(p) for p in i if str(p).strip()) for i in frame.index]
    smd = [str(c) for c in frame.columns if str(c).startswith("SMD")]
    if len(smd) == 1:
        frame.columns = ["SMD" if str(c) in smd else str(c) for c in frame.columns]
    else:  # more than two groups: one SMD per pair, "SMD (Low risk,High risk)" -> "SMD: Low risk vs High risk"
        frame.columns = [f"SMD: {' vs '.join(_smd_pair(str(c)))}" if str(c) in smd else str(c)
                         for c in frame.columns]
    return frame.rename_axis("Characteristic").reset_index()


def _smd_pair(column: str) -> list[str]:
    """The two groups of a tableone SMD column name, split at the comma outside parentheses.

    Examples
    --------
    >>> _smd_pair("SMD (Phase 1 (usual care),Phase 3 (stratified care))")
    ['Phase 1 (usual care)', 'Phase 3 (stratified care)']
    """
    inner = column[column.index("(") + 1: column.rindex(")")] if "(" in column else column
    depth, parts, current = 0, [], ""
    for ch in inner:
        if ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
            continue
        depth += ch == "("
        depth -= ch == ")"
        current += ch
    parts.append(current.strip())
    return parts


def _table1(df: pd.DataFrame, decimals: int | None) -> tuple[list[Col], list[str]]:
    first = df.columns[0]
    cols = [Col("Characteristic", (first,), lambda r: _text(r[first]).replace(", n (%): yes", ", n (%)"), align="l")]
    for c in df.columns[1:]:
        if str(c).startswith("SMD: "):  # one SMD per pair of groups, under one "SMD" spanner
            cols.append(Col(str(c)[5:], (c,), lambda r, c=c: _text(r[c]), "SMD"))
        else:
            cols.append(Col(str(c), (c,), lambda r, c=c: _text(r[c])))
    notes = ["Mean (SD) or n (%) of patients with the item answered; Missing: patients without it. "
             "SMD: standardized mean difference between the groups."]
    return cols, notes


def _as_percent(frame: pd.DataFrame) -> pd.DataFrame:
    """``estimate``, ``ci_low``, ``ci_high`` (and other ``<name>_low``/``<name>_high`` interval pairs)
    times 100; suppressed ``"*"`` and missing cells are kept as they are."""
    frame = frame.copy()
    bounds = [c for c in frame.columns if str(c).endswith("_low") and f"{str(c)[:-4]}_high" in frame.columns]
    for c in dict.fromkeys(("estimate", "ci_low", "ci_high", *bounds, *(f"{str(b)[:-4]}_high" for b in bounds))):
        if c in frame.columns:
            values = pd.to_numeric(frame[c], errors="coerce")
            frame[c] = [100 * v if pd.notna(v) else orig for v, orig in zip(values, frame[c], strict=True)]
    return frame


def _flatten_columns(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, tuple[str, str]]]:
    """A two-level column index (a pivot table) as flat columns plus (spanner, header) per column.

    The first level becomes the spanner and the second the column label; a named row index
    (the pivot's rows) becomes the leading label column(s).
    """
    if not isinstance(frame.columns, pd.MultiIndex):
        return frame, {}
    if frame.columns.nlevels != 2:
        raise PresentationError(f"display table: columns with {frame.columns.nlevels} levels; at most 2 "
                                "(spanner, label) can be shown")
    frame = frame.copy()
    spans: dict[str, tuple[str, str]] = {}
    flat = []
    for top, low in frame.columns:
        name = f"{top}\x1f{low}"
        spans[name] = (_spanner_label(frame.columns.names[0], top), human_label(str(low)))
        flat.append(name)
    frame.columns = flat
    if any(n is not None for n in frame.index.names):
        frame = frame.reset_index()
    return frame, spans


def _spanner_label(level_name: Any, value: Any) -> str:
    """``("phase", 1)`` -> ``"Phase 1 (usual care)"``; other levels -> their value as text."""
    if level_name == "phase":
        try:
            return PHASES.get(int(value), f"Phase {value}")
        except (TypeError, ValueError):
            return f"Phase {value}"
    return _label(value)


def _findings(df: pd.DataFrame, decimals: int | None) -> tuple[list[Col], list[str]]:
    """Key findings (``ChapterOutputs.findings`` as records): the index's formatting rules."""
    def finding(r: Row) -> dict[str, Any]:
        return {"name": r.get("name"), "value": r.get("value"), "ci_low": r.get("ci_low"),
                "ci_high": r.get("ci_high"), "unit": r.get("unit")}

    def cell(r: Row) -> str:
        if decimals is not None:
            return format_estimate_ci(r.get("value"), r.get("ci_low"), r.get("ci_high"), decimals)
        return format_finding(finding(r))

    def truth(r: Row) -> str:
        if format_number(r.get("truth")) == MISSING:
            return MISSING
        return format_finding({**finding(r), "value": r["truth"], "ci_low": None, "ci_high": None})

    label = "label" if "label" in df.columns else "name"
    return [_stub(label, "Finding"), Col("Value (95% CI)", ("value",), cell), Col("Unit", ("unit",),
            lambda r: _text(r["unit"]), align="l"), Col("True value", ("truth",), truth)], []


PRESETS: dict[str, Callable[[pd.DataFrame, int | None], tuple[list[Col], list[str]]]] = {
    "effects": _effects, "process": _process, "table1": _table1, "flow": _flow, "economics": _economics,
    "findings": _findings, "auto": _auto,
}


def _code_text(value: Any) -> str:
    """A numeric code (phase, month, year) as text: whole numbers without decimals."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return MISSING
    if isinstance(value, int | float | np.integer | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def display_table(
    df: Any,
    kind: str = "auto",
    *,
    caption: str = "",
    footnotes: Sequence[str] = (),
    number: str | int | None = None,
    decimals: int | None = None,
    extra: Sequence[str] = (),
    rows: Any = None,
    percent: bool = False,
) -> DisplayTable:
    """Turn a results table into a :class:`DisplayTable`: human labels, formatted cells, spanners.

    Parameters
    ----------
    df : DataFrame or tableone.TableOne
        A results table as the package returns it (suppressed ``"*"`` cells allowed). Its index
        is never shown (use ``reset_index()`` first if it holds labels; ``kind="table1"`` uses
        the index as the characteristic). A two-level column index (a pivot table) gives
        spanners from its first level (``phase`` 1 reads "Phase 1 (usual care)") and labels from
        its second; the pivot's named row index becomes the label column.
    kind : {"auto", "effects", "process", "table1", "flow", "economics", "findings"}, default "auto"
        ``"effects"``: :func:`outcomes.primary_analysis`, :func:`outcomes.risk_group_analysis`,
        :func:`outcomes.secondary_outcomes_table`. ``"process"``:
        :func:`process.process_of_care_table` (or its shareable version). ``"table1"``:
        :func:`cohort.table1` / :func:`cohort.shareable_table1`. ``"flow"``:
        :func:`dataset.flow_counts`. ``"economics"``: :func:`economics.results_table`.
        ``"findings"``: a chapter's key findings (``name``, ``label``, ``value``, ``ci_low``,
        ``ci_high``, ``unit``, optional ``truth``), decimals by unit as in the report index.
        ``"auto"``: every column, labelled and formatted from its name.
    caption : str, default ""
    footnotes : sequence of str, optional
        Added after the preset's own footnotes; ``"*"`` cells add the suppression footnote.
    number : str or int, optional
        Table number for the caption (``"Table 2. ..."``); HTML pages can be numbered later by
        :func:`site.number_captions` instead.
    decimals : int, optional
        Decimals of estimates and CIs (default per preset: 2; costs 0 and QALYs 3 in economics).
    extra : sequence of str, optional
        Further result columns to show at the end (e.g. ``["df", "method"]``).
    rows : boolean mask or callable, optional
        Keep only these rows (``rows=lambda t: t["analysis"] == "multiple imputation"``).
    percent : bool, default False
        The estimate and its CI are proportions (0-1): show them as percentages (x 100, 1
        decimal unless ``decimals`` says otherwise) under the header ``% (95% CI)``, and so
        are other interval pairs (``wilson_low``/``wilson_high``); hidden ``"*"`` cells stay
        hidden.

    Returns
    -------
    DisplayTable

    Raises
    ------
    PresentationError
        Unknown ``kind``, a missing label column, an ``extra`` column not in the table, or a
        p-value outside [0, 1].

    Notes
    -----
    Formatting rules are those of ``presentation._format``: em dash for missing or not
    applicable, ``<0.001`` / 3-decimal p-values, ``estimate (lower to upper)``, counts with
    thousands separators, percentages with 1 decimal.

    Examples
    --------
    >>> import pandas as pd
    >>> res = pd.DataFrame({"analysis": ["multiple imputation"], "n_phase1": [370], "n_phase3": [560],
    ...                     "estimate": [0.274453], "ci_low": [-0.411057], "ci_high": [0.959962],
    ...                     "p_value": [0.415207], "df": [21.9]})
    >>> t = display_table(res, "effects", caption="Primary outcome")
    >>> t.headers
    ('Analysis', 'N', 'N', 'Estimate (95% CI)', 'p')
    >>> t.rows[0]
    ('Multiple imputation', '370', '560', '0.27 (-0.41 to 0.96)', '0.415')
    >>> display_table(res, "effects", extra=["df"]).rows[0][-1]
    '21.9'
    >>> share = pd.DataFrame({"practice_id": ["P01", "P02"], "n": [217, 301], "estimate": [0.4839, "*"],
    ...                       "ci_low": [0.4182, "*"], "ci_high": [0.5501, "*"], "wilson_low": [0.42, "*"],
    ...                       "wilson_high": [0.551, "*"]})
    >>> t = display_table(share, percent=True)
    >>> t.headers, t.rows[0], t.rows[1][2]
    (('Practice ID', 'N', '% (95% CI)', 'Wilson low', 'Wilson high'), ('P01', '217', '48.4 (41.8 to 55.0)', '42.0', '55.1'), '*')
    """
    if kind not in PRESETS:
        raise PresentationError(f"display table: unknown kind {kind!r}; use one of {', '.join(PRESETS)}")
    if kind == "table1":
        frame = _table1_frame(df)
    elif isinstance(df, pd.DataFrame):
        frame = df
    else:
        raise PresentationError(f"display table: expected a DataFrame, got {type(df).__name__}")
    if rows is not None:
        mask = rows(frame) if callable(rows) else rows
        frame = frame.loc[mask]
    frame, spans = _flatten_columns(frame)
    frame = frame.reset_index(drop=True)
    if percent:
        frame = _as_percent(frame)
        decimals = 1 if decimals is None else decimals
    cols, notes = PRESETS[kind](frame, decimals)
    if percent:
        cols = [replace(c, header="% (95% CI)") if c.header == "Estimate (95% CI)" else c for c in cols]
    cols = [replace(c, spanner=spans[c.needs[0]][0], header=spans[c.needs[0]][1])
            if len(c.needs) == 1 and c.needs[0] in spans else c for c in cols]
    cols = [c for c in cols if all(n in frame.columns for n in c.needs)]
    cols += _extras(frame, extra, 2 if decimals is None else decimals)
    if kind in ("effects", "economics") and not any(c.needs for c in cols if c.header.endswith("(95% CI)")):
        raise PresentationError(f"display table ({kind}): needs an 'estimate' column")
    records = frame.to_dict("records")
    body = [[c.cell(r) for c in cols] for r in records]
    n_stub = 0
    for c in cols:
        if c.align != "l" or c.spanner:
            break
        n_stub += 1
    return DisplayTable(
        headers=[c.header for c in cols], rows=body, spanners=[c.spanner for c in cols], stub=max(n_stub, 1),
        caption=caption, footnotes=[*notes, *footnotes], number=number, align=[c.align for c in cols],
    )
