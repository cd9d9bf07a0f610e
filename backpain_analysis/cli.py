"""The ``backpain`` command line (also ``python -m backpain_analysis``).

Subcommands:

- ``backpain validate DIR``: validate a study export against the data dictionary.
- ``backpain synth --out DIR``: write a synthetic study.
- ``backpain dataset --data DIR --out FILE``: write the analysis dataset.
- ``backpain report --data DIR --out DIR``: regenerate the notebook report.
- ``backpain dictionary --markdown``: print the data dictionary as Markdown.
- ``backpain plan``: power and precision of a planned evaluation by simulation.

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


# --- dataset (issue 4) ---
def _cmd_dataset(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .dataset import load_analysis_dataset
    from .outputs import _atomic_via

    out = Path(args.out)
    suffix = out.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise BackpainError(f"--out {str(out)!r}: the file name must end in .parquet or .csv")
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


# --- report (issue 5) ---
def _cmd_report(args: argparse.Namespace) -> int:
    from .report import run_report

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

# --- plan (issue 17) ---
def _cmd_plan(args: argparse.Namespace) -> int:
    from . import planning
    from .synthetic import parse_override

    if args.check_analytic:
        r = planning.analytic_check(n_replicates=args.replicates, seed=args.seed, n_jobs=args.jobs,
                                    progress=not args.quiet)
        print(f"Closed-form check (no clustering, complete follow-up, ANCOVA, residual SD 4.6, "
              f"{r['n1']} + {r['n3']} patients, effect 0.6): simulated power {r['simulated']:.3f} "
              f"(MCSE {r['mcse']:.3f}, {r['replicates']} replicates), analytic noncentral-t power "
              f"{r['analytic']:.3f}; difference {r['difference']:+.3f} = {r['z']:+.2f} MCSE: "
              f"{'AGREES' if r['agrees'] else 'DISAGREES'} (|z| <= 3)")
        return EXIT_OK if r["agrees"] else EXIT_FAILED
    design = planning.Design(
        n_practices=args.practices, invited=tuple(args.invited), n_gps=args.gps, response=args.response,
        followup=args.followup, risk_mix=args.risk_mix, icc=args.icc, practice_phase_sd=args.practice_phase_sd,
        residual_sd=args.residual_sd, phase1_months=args.phase1_months, phase3_months=args.phase3_months,
        overrides=dict(parse_override(item) for item in args.set))
    common = {"analysis": args.analysis, "profile": args.profile, "simulator": args.simulator, "alpha": args.alpha,
              "n_jobs": args.jobs, "cache_dir": args.cache}
    if args.grid_practices or args.grid_patients:
        if not (args.grid_practices and args.grid_patients):
            raise BackpainError("--grid-practices and --grid-patients go together")
        table = planning.power_grid(design, args.effect[0], args.grid_practices, args.grid_patients, args.replicates,
                                    args.seed, progress=not args.quiet, **common)
    elif len(args.effect) > 1:
        table = planning.effect_grid(design, args.effect, args.replicates, args.seed, progress=not args.quiet, **common)
    else:
        table = planning.simulate_power(design, args.effect[0], args.replicates, args.seed, progress=not args.quiet,
                                        **common)
    cols = [c for c in ("estimand", "n_practices", "patients_per_practice", "effect", "mean_n", "power", "power_mcse",
                        "bias", "bias_mcse", "coverage", "coverage_mcse", "mean_ci_width", "de_formula",
                        "de_before_after", "de_simulated") if c in table.columns]
    print(table[cols].round(3).to_string(index=False))
    print()
    for _, row in table.iterrows():
        print(planning.summary_sentence(row))
    if len(args.effect) > 1 and not args.grid_practices:
        for target in (0.8, 0.9):
            for est in table["estimand"].unique():
                m = planning.minimum_detectable_effect(table, target, estimand=est, alpha=args.alpha)
                print(f"minimum detectable effect ({est}) at {target:.0%} power: {m['mde_curve']:.2f} "
                      f"(power curve), {m['mde_se_formula']:.2f} (from the simulated SE)")
    if args.out:
        table.to_csv(args.out, index=False)
        print(f"wrote {args.out}")
    return EXIT_OK


def planning_profiles() -> list[str]:
    """Names of the effect profiles of ``backpain plan --profile``."""
    from .planning import PROFILES

    return list(PROFILES)


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

    p = sub.add_parser("dictionary", help="print the data dictionary as Markdown")
    p.add_argument("--markdown", action="store_true", help="Markdown output (the only format for now)")
    p.add_argument("--dictionary", help="data dictionary YAML (default: the bundled one)")
    p.add_argument("--out", metavar="FILE", help="write to FILE instead of standard output")
    p.set_defaults(func=_cmd_dictionary)

    p = sub.add_parser("plan", help="power and precision of a planned evaluation by simulation (docs/planning.md)")
    p.add_argument("--practices", type=int, default=7, metavar="K", help="GP practices (default 7)")
    p.add_argument("--invited", type=int, nargs=2, default=[630, 1017], metavar=("N1", "N3"),
                   help="invited patients in phase 1 and phase 3 (default 630 1017)")
    p.add_argument("--gps", type=int, default=None, metavar="N", help="GPs (default 64/7 per practice)")
    p.add_argument("--effect", type=float, nargs="+", default=[0.71], metavar="E",
                   help="true average effect(s), RMDQ points (several: a power curve and the MDE)")
    p.add_argument("--profile", default="uniform", choices=sorted(planning_profiles()),
                   help="relative effects per risk group (default uniform)")
    p.add_argument("--analysis", nargs="+", default=["primary"], metavar="A",
                   help="primary (mixed model, KR df), ancova, risk_group, matched_referral")
    p.add_argument("--simulator", default="generator", choices=["generator", "normal"])
    p.add_argument("--replicates", type=int, default=200, metavar="R")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--jobs", type=int, default=1, metavar="J", help="worker processes (default 1)")
    p.add_argument("--response", type=float, nargs=2, default=None, metavar=("R1", "R3"))
    p.add_argument("--followup", type=float, nargs=2, default=None, metavar=("F1", "F3"), help="6-month follow-up")
    p.add_argument("--risk-mix", type=float, nargs=3, default=None, metavar=("LOW", "MED", "HIGH"))
    p.add_argument("--icc", type=float, default=None, help="practice ICC of the RMDQ change (default 0.03)")
    p.add_argument("--practice-phase-sd", type=float, default=0.0, metavar="SD", help="practice-by-phase SD")
    p.add_argument("--residual-sd", type=float, default=None, metavar="SD",
                   help="generator rmdq_change_sd (default 4.5) or the normal simulator's residual SD (4.6)")
    p.add_argument("--phase1-months", type=int, default=None, metavar="M")
    p.add_argument("--phase3-months", type=int, default=None, metavar="M")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="other generator parameter")
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--grid-practices", type=int, nargs="+", default=None, metavar="K")
    p.add_argument("--grid-patients", type=int, nargs="+", default=None, metavar="M",
                   help="invited patients per practice per phase (with --grid-practices)")
    p.add_argument("--cache", default=None, metavar="DIR", help="cache folder: finished points are not rerun")
    p.add_argument("--out", default=None, metavar="FILE", help="write the result table as CSV")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--check-analytic", action="store_true",
                   help="only the closed-form check: simulated vs noncentral-t power (exit 1 if they disagree)")
    p.set_defaults(func=_cmd_plan)
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
