"""Run every benchmark in benchmarks/ and print a table of figures.

A benchmark module is a file ``benchmarks/bench_*.py`` defining one or more
functions ``bench_*()``; each returns a list of :class:`Figure` (name, value,
unit, target, and whether the target is met). Results are also written to
``benchmarks/results/latest.json``.

Usage: ``make bench`` or ``python benchmarks/run.py [substring ...]``.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import Figure  # noqa: E402


def _modules(selected: list[str]):
    for path in sorted(HERE.glob("bench_*.py")):
        if selected and not any(s in path.stem for s in selected):
            continue
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield path.stem, module


def main(argv: list[str]) -> int:
    rows: list[tuple[str, Figure]] = []
    failed = False
    for stem, module in _modules(argv):
        for name in sorted(n for n in dir(module) if n.startswith("bench_")):
            func = getattr(module, name)
            print(f"running {stem}.{name} ...", flush=True)
            start = time.perf_counter()
            try:
                figures = func()
            except Exception as exc:  # report and carry on with the other benchmarks
                print(f"  FAILED: {type(exc).__name__}: {exc}", flush=True)
                failed = True
                continue
            print(f"  done in {time.perf_counter() - start:.1f} s", flush=True)
            rows += [(f"{stem}.{name}", f) for f in figures]
    if not rows:
        print("no benchmark figures")
        return 1 if failed else 0
    width = max(len(f.name) for _, f in rows)
    print()
    print(f"{'figure'.ljust(width)}  {'value':>12}  {'unit':<8}  {'target':<16}  met")
    print("-" * (width + 48))
    for _, f in rows:
        met = "" if f.met is None else ("yes" if f.met else "NO")
        print(f"{f.name.ljust(width)}  {f.value:>12.3f}  {f.unit:<8}  {f.target or '':<16}  {met}")
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps([{"benchmark": b, **f.as_dict()} for b, f in rows], indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
