"""Speed of the vectorized cost-utility bootstrap (chapter 07).

Target: 5,000 bootstrap replicates of the incremental cost and QALYs (QALYs adjusted for baseline
EQ-5D by regression) on a study-sized data set (922 patients, as IMPaCT Back) take seconds. A
plain Python loop over replicates (pandas resample + numpy least squares) is timed on a few
hundred replicates and scaled up, for comparison.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from _common import Figure, timed

from backpain_analysis.economics import cost_utility, iter_bootstrap_indices

N_PHASE1, N_PHASE3 = 368, 554
N_BOOT = 5000


def _data(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = N_PHASE1 + N_PHASE3
    phase = np.repeat([1.0, 3.0], [N_PHASE1, N_PHASE3])
    base = rng.uniform(0.0, 1.0, n)
    return pd.DataFrame({
        "phase": phase,
        "eq5d_index_0m": base,
        "qaly": 0.1 + 0.6 * base + 0.01 * (phase == 3) + rng.normal(0, 0.05, n),
        "nhs_cost": rng.gamma(1.2, 150, n),
    })


def _loop(d: pd.DataFrame, n_boot: int, seed: int) -> np.ndarray:
    phase = d["phase"].to_numpy()
    out = []
    for idx in iter_bootstrap_indices(phase, n_boot, seed):
        for rows in idx:
            r = d.iloc[rows]
            p3 = (r["phase"] == 3).to_numpy(dtype=float)
            X = np.column_stack([np.ones(len(r)), p3, r["eq5d_index_0m"]])
            beta = np.linalg.lstsq(X, r["qaly"].to_numpy(), rcond=None)[0]
            dc = r.loc[p3 == 1, "nhs_cost"].mean() - r.loc[p3 == 0, "nhs_cost"].mean()
            out.append((dc, beta[1]))
    return np.asarray(out)


def bench_bootstrap() -> list[Figure]:
    d = _data()
    seconds, _ = timed(cost_utility, d, n_boot=N_BOOT, seed=1, repeat=3)
    loop_n = 300
    loop_seconds, _ = timed(_loop, d, loop_n, 1)
    loop_5000 = loop_seconds * N_BOOT / loop_n
    return [
        Figure("cost_utility bootstrap, 5000 replicates, 922 patients (vectorized)", seconds, "s", "< 5 s",
               seconds < 5),
        Figure("same with a Python loop over replicates (scaled from 300)", loop_5000, "s"),
        Figure("speed-up of the vectorized bootstrap", loop_5000 / seconds, "x"),
    ]


if __name__ == "__main__":
    for f in bench_bootstrap():
        print(f)
