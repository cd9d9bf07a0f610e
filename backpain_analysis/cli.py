"""The ``backpain`` command line (also ``python -m backpain_analysis``).

Subcommands:

- ``backpain validate DIR``: validate a study export against the data dictionary.
- ``backpain synth --out DIR``: write a synthetic study.
- ``backpain dataset --data DIR --out FILE``: write the analysis dataset.
- ``backpain report --data DIR --out DIR``: regenerate the notebook report.
- ``backpain dictionary --markdown``: print the data dictionary as Markdown.
- ``backpain map DIR --draft mapping.yaml``: draft a mapping file for an export in its own layout;
  ``backpain map DIR --mapping mapping.yaml --out STUDY``: write the mapped study folder.
  ``validate``, ``dataset`` and ``report`` take ``--mapping mapping.yaml`` too.

Bad input (a :class:`~backpain_analysis.errors.BackpainError`) prints a clear message
and exits with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._version import __version__
from .errors import BackpainError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


def _cmd_dictionary(args: argparse.Namespace) -> int:
    from .dictionary import load_dictionary

    dd = load_dictionary(args.dictionary)
    text = dd.to_markdown()
    if args.out:
        from pathlib import Path

        Path(args.out).write_text(text + "\n", encoding="utf-8")
    else:
        print(text)
    return EXIT_OK


# --- validate (issue 2) ---
def _cmd_validate(args: argparse.Namespace) -> int:
    from .loading import StudyValidationError, format_problem, load_study

    def table(df) -> str:
        return df.astype("object").fillna("").to_string(index=False)

    try:
        study = load_study(args.data, dictionary=args.dictionary, mapping=args.mapping)
    except StudyValidationError as exc:
        print(f"Study folder: {args.data}\n\n{table(exc.summary)}")
        if exc.notes:
            print("\nNotes:\n" + "\n".join(f"- {n}" for n in exc.notes))
        print(f"\nProblems ({len(exc.problems)}):")
        for p in exc.problems.itertuples(index=False):
            print(f"- {format_problem(p)}")
        print("\nINVALID: fix the problems above (the data dictionary is docs/data_dictionary.md).")
        return EXIT_BAD_INPUT
    except (OSError, ValueError) as exc:  # an unreadable folder or file must not end in a traceback
        raise BackpainError(f"could not validate {args.data}: {exc}") from exc
    print(f"Study folder: {args.data}\n\n{table(study.summary())}")
    if study.notes:
        print("\nNotes:\n" + "\n".join(f"- {n}" for n in study.notes))
    if study.truth is not None:
        print("\ntruth.json: present (synthetic study)")
    if study.mapping_log is not None:
        print(f"\nMapping file {args.mapping}: {len(study.mapping_log)} cells recoded (rule 'mapping' in the cleaning log)")
    print("\nVALID: every table follows the data dictionary.")
    return EXIT_OK


# --- synth (issue 3) ---
def _cmd_synth(args: argparse.Namespace) -> int:
    from .synthetic import DEFAULT_N_INVITED, DEFAULT_SEED, generate_study, parse_override

    overrides = dict(parse_override(item) for item in args.set)
    study = generate_study(
        n_invited=DEFAULT_N_INVITED if args.invited is None else args.invited,
        seed=DEFAULT_SEED if args.seed is None else args.seed,
        **overrides,
    )
    written = study.write(args.out, format=args.format)
    n_resp = int((study.patients["invitation_outcome"] == "responded").sum())
    print(f"wrote {len(written) - 1} tables and truth.json to {args.out} "
          f"({len(study.patients)} invited, {n_resp} respondents)")
    return EXIT_OK


# --- dataset (issue 4) ---
def _cmd_dataset(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .dataset import load_analysis_dataset
    from .outputs import _atomic_via

    out = Path(args.out)
    suffix = out.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise BackpainError(f"--out {str(out)!r}: the file name must end in .parquet or .csv")
    if args.mapping:
        from .cleaning import clean_study
        from .dataset import build_analysis_dataset
        from .loading import load_study

        clean = clean_study(load_study(args.data, mapping=args.mapping))
        data = build_analysis_dataset(clean)
    else:
        clean, data = load_analysis_dataset(args.data)
    if suffix == ".parquet":
        _atomic_via(out, lambda tmp: data.to_parquet(tmp, index=False))
    else:
        _atomic_via(out, lambda tmp: data.to_csv(tmp, index=False))
    n_ex = clean.exclusions["stage"].value_counts()
    print(f"wrote {out}: {len(data)} analysed patients x {data.shape[1]} columns; "
          f"{len(clean.cleaning_log)} logged changes; {int(n_ex.get('cleaning', 0))} rows dropped by cleaning, "
          f"{int(n_ex.get('analysis', 0))} not analysed")
    return EXIT_OK


# --- map (issue 14) ---
def _cmd_map(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .mapping import draft_mapping, write_mapped_study

    if args.draft:
        if args.mapping:
            raise BackpainError("--draft writes a new mapping file; --mapping is for --out")
        target = Path(args.draft)
        if target.exists() and not args.force:
            raise BackpainError(f"{target} exists; not overwritten (use --force to replace it)")
        text = draft_mapping(args.data)
        target.write_text(text, encoding="utf-8")
        lines = text.splitlines()
        n_confirm = sum("# CONFIRM" in line for line in lines)
        n_unknown = sum(': "?"' in line and not line.lstrip().startswith("#") for line in lines)
        n_absent = sum(line.lstrip().startswith("# ") and ": ?   #" in line for line in lines)
        print(f"wrote {target}: a draft mapping of {args.data}; {n_confirm} line(s) marked CONFIRM, "
              f"{n_unknown} value(s) \"?\" to fill in, {n_absent} dictionary column(s) not found (commented out). "
              f"Then: backpain validate {args.data} --mapping {target}")
        return EXIT_OK
    if not args.mapping:
        raise BackpainError("--out needs --mapping FILE (the mapping to apply)")
    out = write_mapped_study(args.data, args.mapping, args.out)
    print(f"wrote the mapped study to {out} (tables as CSV; mapping/mapping_log.csv lists every recoded cell)")
    return EXIT_OK


# --- report (issue 5) ---
def _cmd_report(args: argparse.Namespace) -> int:
    if args.mapping:
        # the chapter notebooks read a study folder: the export goes through the mapping into a
        # temporary one first (validated there; the run's fingerprints hash its content, not its path)
        import tempfile

        from .mapping import write_mapped_study

        with tempfile.TemporaryDirectory(prefix="backpain-mapped-") as tmp:
            mapped = write_mapped_study(args.data, args.mapping, tmp)
            print(f"backpain report: {args.data} mapped by {args.mapping} into a temporary study folder",
                  file=sys.stderr)
            return _run_report(args, mapped)
    return _run_report(args, args.data)


def _run_report(args: argparse.Namespace, data) -> int:
    from .report import run_report

    run = run_report(
        data,
        args.out,
        chapters=args.chapters,
        practices=args.practices,
        jobs=args.jobs,
        force=args.force,
    )
    counts: dict[str, int] = {}
    for r in run.results:
        counts[r.status] = counts.get(r.status, 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    print(f"report: {summary}; index: {run.index_path}", file=sys.stderr)
    if run.failed:
        for r in run.failed:
            where = f" (partly executed notebook: {run.output_dir / r.notebook})" if r.notebook else ""
            print(f"backpain report: chapter {r.name} failed: {r.error}{where}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="backpain", description="Evaluate stratified primary care for low back pain.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("validate", help="validate a study export folder against the data dictionary")
    p.add_argument("data", metavar="DIR", help="study export folder (one file per table)")
    p.add_argument("--dictionary", help="data dictionary YAML (default: the bundled one)")
    p.add_argument("--mapping", metavar="FILE", help="mapping file for an export in its own layout (see backpain map)")
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("synth", help="write a synthetic IMPaCT Back-like study")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--invited", type=int, default=None, metavar="N", help="number of invited patients (default 1647)")
    p.add_argument("--seed", type=int, default=None, metavar="S", help="random seed")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a generator parameter (repeatable)")
    p.add_argument("--format", choices=["csv", "parquet"], default="csv", help="file format of the tables")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("dataset", help="load, clean and write the analysis dataset (one row per analysed patient)")
    p.add_argument("--data", required=True, metavar="DIR", help="study export folder")
    p.add_argument("--out", required=True, metavar="FILE", help="output file; .parquet or .csv")
    p.add_argument("--mapping", metavar="FILE", help="mapping file for an export in its own layout (see backpain map)")
    p.set_defaults(func=_cmd_dataset)

    p = sub.add_parser("report", help="regenerate the notebook report")
    p.add_argument("--data", default="data/synthetic", metavar="DIR", help="study export folder (default data/synthetic)")
    p.add_argument("--out", default="reports", metavar="DIR", help="output folder (default reports)")
    p.add_argument("--chapters", nargs="+", default=None, metavar="NAME", help="run only these chapters")
    p.add_argument("--jobs", type=int, default=None, metavar="N", help="chapters run in parallel (default: number of cores)")
    p.add_argument("--practices", nargs="+", default=None, metavar="ID", help="feedback reports only for these practices")
    p.add_argument("--force", action="store_true", help="re-run chapters even if nothing changed")
    p.add_argument("--mapping", metavar="FILE", help="mapping file for an export in its own layout (see backpain map)")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("map", help="draft a mapping file for an export in its own layout, or apply one")
    p.add_argument("data", metavar="DIR", help="export folder (CSV, parquet or xlsx files, e.g. a REDCap export)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--draft", metavar="FILE", help="write a draft mapping file (YAML) to confirm and edit")
    what.add_argument("--out", metavar="DIR", help="with --mapping: write the mapped study folder (one CSV per table)")
    p.add_argument("--mapping", metavar="FILE", help="the mapping file to apply (with --out)")
    p.add_argument("--force", action="store_true", help="overwrite an existing draft")
    p.set_defaults(func=_cmd_map)

    p = sub.add_parser("dictionary", help="print the data dictionary as Markdown")
    p.add_argument("--markdown", action="store_true", help="Markdown output (the only format for now)")
    p.add_argument("--dictionary", help="data dictionary YAML (default: the bundled one)")
    p.add_argument("--out", metavar="FILE", help="write to FILE instead of standard output")
    p.set_defaults(func=_cmd_dictionary)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``backpain`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BackpainError as exc:
        print(f"backpain {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"backpain {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
