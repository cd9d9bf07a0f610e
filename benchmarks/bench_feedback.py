"""Benchmark feedback rounds at the scale of a primary care trust (issue 16).

Targets, on 2 cores, measured end to end in a fresh process (``backpain feedback``: imports, load,
clean, count, suppress, render and write; the disclosure check of the output, which the command
runs by default, is timed separately), as wall time and as CPU time (the machine may be shared):

- one feedback round (``--last-round-only``; the trends still cover every earlier quarter) for
  40 practices of a synthetic trust (40 practices, 300 GPs, 20,000 invited) in under 15 s;
- the same with one page per GP as well (``--per-gp``: 300 GP pages) in under 60 s;
- cost linear in the number of practices (500 invited per practice): the in-process time per
  practice (load and clean, count and suppress, render and write; ``run.json`` timings) at 20
  and 40 practices at most 1.5 times that at 10 practices: no worse than linear (interpreter
  start-up and imports, about 2 s, come on top and do not grow).

Beside them, the bundled study (7 practices): the same command, and the per-practice notebook
runner it replaces (``backpain report --chapters feedback``: one papermill execution per practice).
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _common import Figure  # noqa: E402

BIN = Path(sys.executable).parent
DATA = ROOT / "data" / "synthetic"


def _synth(out: Path, n_practices: int, n_gps: int, n_invited: int) -> Path:
    from backpain_analysis.synthetic import generate_study

    generate_study(n_invited=n_invited, seed=16, n_practices=n_practices, n_gps=n_gps).write(out)
    return out


def _cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _feedback(data: Path, out: Path, *extra: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one ``backpain feedback`` process. On a shared machine the
    wall time includes waiting for the cores; the CPU time does not."""
    shutil.rmtree(out, ignore_errors=True)
    cpu0, start = _cpu_children(), time.perf_counter()
    subprocess.run([str(BIN / "backpain"), "feedback", "--data", str(data), "--out", str(out), "--last-round-only",
                    "--no-disclosure-check", *extra], check=True, cwd=ROOT, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start, _cpu_children() - cpu0


def _check(out: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of ``backpain disclosure-check`` on a feedback output (exit 0 = safe)."""
    cpu0, start = _cpu_children(), time.perf_counter()
    subprocess.run([str(BIN / "backpain"), "disclosure-check", str(out)], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start, _cpu_children() - cpu0


def bench_feedback_trust_scale() -> list[Figure]:
    figures = []
    with tempfile.TemporaryDirectory(prefix="bench-feedback-") as tmp:
        tmp_path = Path(tmp)
        trust = _synth(tmp_path / "trust", 40, 300, 20000)
        wall, cpu = _feedback(trust, tmp_path / "out40")
        figures += [Figure("one round, 40 practices (20,000 invited): wall", wall, "s", "< 15 s", wall < 15),
                    Figure("one round, 40 practices: CPU", cpu, "s", "< 15 s", cpu < 15)]
        wall, cpu = _feedback(trust, tmp_path / "out300", "--per-gp")
        figures += [Figure("one round, 40 practices + 300 GPs: wall", wall, "s", "< 60 s", wall < 60),
                    Figure("one round, 40 practices + 300 GPs: CPU", cpu, "s", "< 60 s", cpu < 60)]
        wall, cpu = _check(tmp_path / "out300")
        figures += [Figure("disclosure check of those 340 pages: wall", wall, "s"),
                    Figure("disclosure check of those 340 pages: CPU", cpu, "s")]
        work = {}
        for k in (10, 20, 40):
            study = trust if k == 40 else _synth(tmp_path / f"k{k}", k, int(7.5 * k), 500 * k)
            _feedback(study, tmp_path / f"lin{k}")
            # the work that grows with the trust (load + clean, count + suppress, render + write), from
            # run.json: without the ~2 s of interpreter start-up and imports, which do not grow
            timings = json.loads((tmp_path / f"lin{k}" / "run.json").read_text())["timings_s"]
            work[k] = sum(timings.values()) / k
            figures.append(Figure(f"one round, {k} practices ({500 * k} invited): s per practice (in-process)",
                                  work[k], "s"))
        # at most linear: the time per practice must not grow with the number of practices (it falls
        # when a fixed part, e.g. the first call of each pandas path, dominates)
        ratio = max(work[20], work[40]) / work[10]
        figures.append(Figure("growth: s per practice at 20 or 40 / at 10 practices", ratio, "x", "< 1.5",
                              ratio < 1.5))
        t, cpu = _feedback(DATA, tmp_path / "bundled")
        figures += [Figure("bundled study (7 practices): one round, wall", t, "s"),
                    Figure("bundled study (7 practices): one round, CPU", cpu, "s")]
        start = time.perf_counter()
        subprocess.run([str(BIN / "backpain"), "report", "--data", str(DATA), "--out", str(tmp_path / "nb"),
                        "--chapters", "feedback", "--jobs", "2", "--force"], check=False, cwd=ROOT,
                       stderr=subprocess.DEVNULL)
        nb = time.perf_counter() - start
        figures.append(Figure("bundled study: notebook per practice (backpain report --chapters feedback)", nb, "s"))
        figures.append(Figure("bundled study: notebook runner / feedback rounds", nb / t, "x"))
    return figures
