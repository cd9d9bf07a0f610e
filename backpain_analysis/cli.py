"""The ``backpain`` command line (also ``python -m backpain_analysis``).

Subcommands:

- ``backpain validate DIR``: validate a study export against the data dictionary.
- ``backpain synth --out DIR``: write a synthetic study.
- ``backpain dataset --data DIR --out FILE``: write the analysis dataset.
- ``backpain report --data DIR --out DIR``: regenerate the notebook report.
- ``backpain dictionary --markdown``: print the data dictionary as Markdown.
- ``backpain disclosure-check OUT``: scan a finished report for small or recoverable counts.
- ``backpain notebooks DEST``: copy the chapter notebooks (and ``report.yaml``) out to work on.
- ``backpain lab [DIR]``: JupyterLab on a folder of chapter notebooks, on this environment's kernel.
- ``backpain map DIR --draft mapping.yaml``: draft a mapping file for an export in its own layout;
  ``backpain map DIR --mapping mapping.yaml --out STUDY``: write the mapped study folder.
  ``validate``, ``dataset`` and ``report`` take ``--mapping mapping.yaml`` too.
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


def _table(df) -> str:
    return df.astype("object").fillna("").to_string(index=False)


def _print_invalid(data, exc) -> None:
    """The validation report of an invalid study (``backpain validate`` and ``backpain report``)."""
    from .loading import format_problem

    print(f"Study folder: {data}\n\n{_table(exc.summary)}")
    if exc.notes:
        print("\nNotes:\n" + "\n".join(f"- {n}" for n in exc.notes))
    print(f"\nProblems ({len(exc.problems)}):")
    for p in exc.problems.itertuples(index=False):
        print(f"- {format_problem(p)}")
    print("\nINVALID: fix the problems above (the data dictionary is docs/data_dictionary.md; "
          "`backpain dictionary --markdown` prints it).")


# --- validate (issue 2) ---
def _cmd_validate(args: argparse.Namespace) -> int:
    from .loading import StudyValidationError, load_study

    table = _table
    try:
        study = load_study(args.data, dictionary=args.dictionary, mapping=args.mapping)
    except StudyValidationError as exc:
        _print_invalid(args.data, exc)
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
    clean, data = load_analysis_dataset(args.data, mapping=args.mapping)
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
    from pathlib import Path

    _require_writable(args.out, folder=True)
    if not Path(args.data).is_dir():
        raise BackpainError(f"study folder {args.data!r} does not exist here ({Path.cwd()}): pass --data DIR "
                            "(`backpain synth --out DIR` writes a synthetic study)")
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
    from .loading import StudyValidationError
    from .report import run_report

    try:
        run = run_report(
            data,
            args.out,
            chapters=args.chapters,
            practices=args.practices,
            jobs=args.jobs,
            force=args.force,
            kernel_name=args.kernel,
            definition=args.definition,
            until=args.until,
        )
    except StudyValidationError as exc:  # validated once before any notebook starts
        _print_invalid(args.data, exc)
        print("backpain report: the study is invalid; no notebook was run.", file=sys.stderr)
        return EXIT_BAD_INPUT
    counts: dict[str, int] = {}
    for r in run.results:
        counts[r.status] = counts.get(r.status, 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    print(f"report: {summary}; index: {run.index_path}", file=sys.stderr)
    errors = {r.error for r in run.failed}
    if len(run.failed) > 1 and len(errors) == 1:  # e.g. a kernel that cannot start: one message, not one each
        print(f"backpain report: all {len(run.failed)} notebooks run failed with the same error: {errors.pop()}",
              file=sys.stderr)
        return EXIT_FAILED
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


# --- disclosure-check (issue 12) ---
def _cmd_disclosure_check(args: argparse.Namespace) -> int:
    from .disclosure import check_report, format_findings

    findings = check_report(args.out, threshold=args.threshold)
    if findings.empty:
        print(f"{args.out}: no count from 1 to {args.threshold - 1} shown, no hidden count recoverable")
        return EXIT_OK
    print(f"{args.out}: NOT SAFE TO SHARE\n{format_findings(findings)}")
    return EXIT_BAD_INPUT


# --- feedback rounds (issue 16) ---
def _cmd_feedback(args: argparse.Namespace) -> int:
    from .disclosure import check_report, format_findings
    from .feedback import run_feedback

    rounds = args.rounds
    if rounds is not None and len(rounds) == 1:
        rounds = rounds[0]  # "quarterly", "monthly" or one date
    run = run_feedback(args.data, args.out, rounds=rounds, per_gp=True if args.per_gp else None, until=args.until,
                       practices=args.practices, last_round_only=args.last_round_only,
                       definition=args.definition)
    print(f"feedback: {len(run.rounds)} round(s) {', '.join(run.rounds)}; {len(run.pages)} page(s); "
          f"index: {run.output_dir / 'index.html'}", file=sys.stderr)
    if args.no_disclosure_check:
        return EXIT_OK
    findings = check_report(args.out)
    if not findings.empty:
        print(f"backpain feedback: {args.out} is NOT SAFE TO SHARE\n{format_findings(findings)}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


# --- notebooks, lab (issue 14) ---
def copy_notebooks(dest, *, data: str | None = None, force: bool = False) -> list:
    """Copy the bundled chapter notebooks and ``report.yaml`` into ``dest``.

    ``data`` (a study folder) becomes each notebook's default ``data_dir`` (as an absolute path);
    ``output_dir`` stays the scratch default, so running them never writes into a report folder.
    Returns the paths written; existing files are kept unless ``force``.
    """
    import re
    import shutil
    from pathlib import Path

    from ._resources import bundled_notebooks, notebook_file

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for source in [*bundled_notebooks(), notebook_file("report.yaml")]:
        target = dest / source.name
        if target.exists() and not force:
            continue
        if data is not None and source.suffix == ".ipynb":
            import nbformat

            nb = nbformat.read(source, as_version=4)
            literal = _py_str(str(Path(data).resolve()))
            for cell in nb.cells:
                if "parameters" in cell.get("metadata", {}).get("tags", []):
                    cell.source = re.sub(r'^(data_dir\s*(?::\s*str)?\s*=\s*)"[^"]*"', lambda m, lit=literal: m.group(1) + lit,
                                         cell.source, count=1, flags=re.MULTILINE)
            nbformat.write(nb, target)
        else:
            shutil.copyfile(source, target)
        written.append(target)
    return written


def _py_str(text: str) -> str:
    """``text`` as a double-quoted Python (and JSON) string literal."""
    import json

    return json.dumps(text)


def _cmd_notebooks(args: argparse.Namespace) -> int:
    from pathlib import Path

    if args.data is not None and not Path(args.data).is_dir():
        raise BackpainError(f"--data {args.data!r}: no such study folder")
    written = copy_notebooks(args.dest, data=args.data, force=args.force)
    print(f"copied {len(written)} file(s) into {args.dest}"
          + ("" if args.force else " (existing files kept; --force overwrites)"))
    if args.data is None:
        print("the notebooks read data_dir = '../data/synthetic' by default: pass --data DIR, or set data_dir in "
              "each notebook's parameters cell (`backpain synth --out DIR` writes a synthetic study)")
    print("outputs of notebooks run there go to a scratch folder (~/.cache/backpain/scratch); "
          "`backpain report` writes the report")
    return EXIT_OK


def _cmd_lab(args: argparse.Namespace) -> int:
    import os
    import subprocess
    from pathlib import Path

    from .report import resolve_kernel

    dest = Path(args.dest)
    if not dest.is_dir() or not any(dest.glob("*.ipynb")):
        copy_notebooks(dest, data=args.data)
        print(f"copied the chapter notebooks into {dest}")
    kernel, folder, note = resolve_kernel()
    command = [sys.executable, "-m", "jupyterlab", f"--notebook-dir={dest}",
               f"--MappingKernelManager.default_kernel_name={kernel}"]
    if hasattr(os, "getuid") and os.getuid() == 0:
        command.append("--allow-root")  # JupyterLab refuses to run as root unless told (containers)
    env = dict(os.environ)
    if folder is not None:
        env["JUPYTER_PATH"] = os.pathsep.join(p for p in (str(folder), env.get("JUPYTER_PATH")) if p)
    if note:
        print(note)
    if args.dry_run:
        print(" ".join(command))
        return EXIT_OK
    return subprocess.call(command, env=env)


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
    p.add_argument("--definition", default=None, metavar="FILE",
                   help="report definition (default: the bundled report.yaml; e.g. one copied by `backpain notebooks`)")
    p.add_argument("--kernel", default=None, metavar="NAME",
                   help="Jupyter kernel (default: the 'backpain' kernel of this environment, else this Python)")
    p.add_argument("--mapping", metavar="FILE", help="mapping file for an export in its own layout (see backpain map)")
    p.add_argument("--until", default=None, metavar="YYYY-MM-DD",
                   help="data cut-off for an interim report: only what is dated on or before it is used")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("feedback", help="feedback rounds: one page per practice (and GP) per round, with trends")
    p.add_argument("--data", default="data/synthetic", metavar="DIR", help="study export folder (default data/synthetic)")
    p.add_argument("--out", default="feedback", metavar="DIR", help="output folder (default feedback)")
    p.add_argument("--rounds", nargs="+", default=None, metavar="WHEN",
                   help="quarterly, monthly or dates YYYY-MM-DD (default: report.yaml feedback: rounds: schedule)")
    p.add_argument("--per-gp", action="store_true", help="also one page per GP")
    p.add_argument("--until", default=None, metavar="YYYY-MM-DD", help="data cut-off of the whole run")
    p.add_argument("--practices", nargs="+", default=None, metavar="ID", help="pages only for these practices")
    p.add_argument("--last-round-only", action="store_true", help="pages for the last round only (trends still shown)")
    p.add_argument("--definition", default=None, metavar="FILE", help="report definition holding the round schedule")
    p.add_argument("--no-disclosure-check", action="store_true",
                   help="skip the disclosure check of the output (run `backpain disclosure-check OUT` before sharing)")
    p.set_defaults(func=_cmd_feedback)

    p = sub.add_parser("disclosure-check", help="scan a finished report for small or recoverable counts (exit 2 if any)")
    p.add_argument("out", metavar="OUT", help="report folder (as given to backpain report --out)")
    p.add_argument("--threshold", type=int, default=5, metavar="K", help="counts from 1 to K-1 must not be shown (5)")
    p.set_defaults(func=_cmd_disclosure_check)

    p = sub.add_parser("notebooks", help="copy the chapter notebooks and report.yaml into DEST to work on")
    p.add_argument("dest", metavar="DEST", help="folder to create (or fill); existing notebooks are kept unless --force")
    p.add_argument("--data", default=None, metavar="DIR",
                   help="study folder to set as the notebooks' default data_dir (default: keep ../data/synthetic)")
    p.add_argument("--force", action="store_true", help="overwrite notebooks already in DEST")
    p.set_defaults(func=_cmd_notebooks)

    p = sub.add_parser("lab", help="JupyterLab on a folder of chapter notebooks (copied there first if empty)")
    p.add_argument("dest", nargs="?", default="backpain-notebooks", metavar="DIR",
                   help="notebook folder (default ./backpain-notebooks; the bundled notebooks are copied in if missing)")
    p.add_argument("--data", default=None, metavar="DIR", help="as for `backpain notebooks`, when copying")
    p.add_argument("--dry-run", action="store_true", help="print the JupyterLab command instead of running it")
    p.set_defaults(func=_cmd_lab)

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
                   help="generator rmdq_change_sd (default 6.4) or the normal simulator's residual SD (4.4)")
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
