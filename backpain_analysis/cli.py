"""The ``backpain`` command line (also ``python -m backpain_analysis``).

Subcommands:

- ``backpain validate DIR``: validate a study export against the data dictionary.
- ``backpain synth --out DIR``: write a synthetic study.
- ``backpain dataset --data DIR --out FILE``: write the analysis dataset.
- ``backpain report --data DIR --out DIR``: regenerate the notebook report.
- ``backpain dictionary --markdown``: print the data dictionary as Markdown.
- ``backpain disclosure-check OUT``: scan a finished report for small or recoverable counts.

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
        study = load_study(args.data, dictionary=args.dictionary)
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


# --- output location checked before the long load (issue 12) ---
def _require_writable(out, *, folder: bool) -> None:
    """Raise :class:`BackpainError` unless ``out`` (a file, or a folder if ``folder``) can be written.

    Checked before anything is loaded: the nearest existing folder on the way must be a folder
    in which a file can be created (a probe file is created and removed at once; nothing else
    is written). Missing folders below it are created later by the command.
    """
    import os
    import tempfile
    from pathlib import Path

    out = Path(out)
    if not folder and out.is_dir():
        raise BackpainError(f"--out {str(out)!r} is a folder; give a file name ending in .parquet or .csv")
    probe = out if folder else out.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise BackpainError(f"--out {str(out)!r} cannot be written: {str(probe)!r} is a file, not a folder")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".backpain-write-check.", dir=probe)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise BackpainError(f"--out {str(out)!r} cannot be written: no permission to create files in "
                            f"{str(probe)!r} ({exc.strerror or exc}); choose another location") from exc


# --- dataset (issue 4) ---
def _cmd_dataset(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .dataset import load_analysis_dataset
    from .outputs import _atomic_via

    out = Path(args.out)
    suffix = out.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise BackpainError(f"--out {str(out)!r}: the file name must end in .parquet or .csv")
    _require_writable(out, folder=False)
    clean, data = load_analysis_dataset(args.data)
    try:
        if suffix == ".parquet":
            _atomic_via(out, lambda tmp: data.to_parquet(tmp, index=False))
        else:
            _atomic_via(out, lambda tmp: data.to_csv(tmp, index=False))
    except OSError as exc:
        raise BackpainError(f"--out {str(out)!r} could not be written: {exc}") from exc
    n_ex = clean.exclusions["stage"].value_counts()
    print(f"wrote {out}: {len(data)} analysed patients x {data.shape[1]} columns; "
          f"{len(clean.cleaning_log)} logged changes; {int(n_ex.get('cleaning', 0))} rows dropped by cleaning, "
          f"{int(n_ex.get('analysis', 0))} not analysed")
    return EXIT_OK


# --- report (issue 5) ---
def _cmd_report(args: argparse.Namespace) -> int:
    from .report import run_report

    _require_writable(args.out, folder=True)
    run = run_report(
        args.data,
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


# --- disclosure-check (issue 12) ---
def _cmd_disclosure_check(args: argparse.Namespace) -> int:
    from .disclosure import check_report, format_findings

    findings = check_report(args.out, threshold=args.threshold)
    if findings.empty:
        print(f"{args.out}: no count from 1 to {args.threshold - 1} shown, no hidden count recoverable")
        return EXIT_OK
    print(f"{args.out}: NOT SAFE TO SHARE\n{format_findings(findings)}")
    return EXIT_BAD_INPUT


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="backpain", description="Evaluate stratified primary care for low back pain.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("validate", help="validate a study export folder against the data dictionary")
    p.add_argument("data", metavar="DIR", help="study export folder (one file per table)")
    p.add_argument("--dictionary", help="data dictionary YAML (default: the bundled one)")
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
    p.set_defaults(func=_cmd_dataset)

    p = sub.add_parser("report", help="regenerate the notebook report")
    p.add_argument("--data", default="data/synthetic", metavar="DIR", help="study export folder (default data/synthetic)")
    p.add_argument("--out", default="reports", metavar="DIR", help="output folder (default reports)")
    p.add_argument("--chapters", nargs="+", default=None, metavar="NAME", help="run only these chapters")
    p.add_argument("--jobs", type=int, default=None, metavar="N", help="chapters run in parallel (default: number of cores)")
    p.add_argument("--practices", nargs="+", default=None, metavar="ID", help="feedback reports only for these practices")
    p.add_argument("--force", action="store_true", help="re-run chapters even if nothing changed")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("disclosure-check", help="scan a finished report for small or recoverable counts (exit 2 if any)")
    p.add_argument("out", metavar="OUT", help="report folder (as given to backpain report --out)")
    p.add_argument("--threshold", type=int, default=5, metavar="K", help="counts from 1 to K-1 must not be shown (5)")
    p.set_defaults(func=_cmd_disclosure_check)

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
