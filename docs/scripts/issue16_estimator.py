"""The EIG estimator on the default benchmark (issue 16, docs/design.md).

    OPENBLAS_NUM_THREADS=1 python docs/scripts/issue16_estimator.py [SEED=0]

`synthetic_hill(SEED)`: AutoNormal fit (3 000 steps, data start) on the control cells and
the first 10 training perturbations; 200 posterior draws; the candidates are the first 100
other training contexts (perturbation × dose). For each quantity: the spread (sd) of the
estimates across candidates, the median Monte Carlo error, their ratio, and the wall time of
`rank_experiments` (compilation included; a second call shows the time without it). Also
the effective sample size of the inner weights with the SCM drawn or at its median.
Appends one JSON line per quantity to docs/data/issue16_estimator.jsonl.
"""

import json
import sys
import time
from pathlib import Path

import jax
import numpy as np
from numpyro.infer.autoguide import AutoNormal

import gim_ppl
from gim_ppl.design import inner_ess, rank_experiments

seed = int(sys.argv[1]) if len(sys.argv) > 1 else 0
bench = gim_ppl.datasets.synthetic_hill(seed)
train = bench.train
pert = np.asarray(train.perturbation)
data = train.subset(np.flatnonzero(pert < 10))
candidates = train.subset(np.flatnonzero(pert >= 10)[:100]).contexts_only()
model = gim_ppl.GIM(data.n_vars, data.n_features)
result = gim_ppl.fit(model, data, key=jax.random.key(0), steps=3000, progress=False,
                     guide=AutoNormal(model, init_loc_fn=gim_ppl.init_from_data(data)))
draws = result.posterior_draws(jax.random.key(1), 200)
out = Path(__file__).resolve().parents[1] / "data" / "issue16_estimator.jsonl"
for about, extra in [("targets", {}), ("readout", {}), ("readout", {"of": candidates}),
                     ("graph", {}), ("parameters", {})]:
    times = []
    for _ in range(2):
        start = time.perf_counter()
        table = rank_experiments(model, draws, candidates, key=jax.random.key(2), about=about,
                                 **extra)
        times.append(time.perf_counter() - start)
    row = {"seed": seed, "about": about + (" (of all candidates)" if extra else ""),
           "n_candidates": candidates.n_contexts, "n_draws": 200, "n_cells": 100,
           "eig_mean": float(table.eig.mean()), "eig_sd": float(table.eig.std()),
           "mc_se_median": float(table.mc_se.median()),
           "ratio": float(table.mc_se.median() / table.eig.std()),
           "seconds_first": round(times[0], 1), "seconds_second": round(times[1], 1),
           "command": f"python docs/scripts/issue16_estimator.py {seed}"}
    print(json.dumps(row), flush=True)
    with out.open("a") as f:
        f.write(json.dumps(row) + "\n")

# effective sample size of the inner weights (first 10 candidates), SCM drawn or at its median
for scm in ("draws", "median"):
    ess = inner_ess(model, draws, candidates.subset(np.arange(10)), key=jax.random.key(3),
                    scm=scm).ravel()
    row = {"seed": seed, "scm": scm, "inner_ess_median": float(np.median(ess)),
           "inner_ess_p10": float(np.percentile(ess, 10)), "n_draws": 200}
    print(json.dumps(row), flush=True)
    with out.open("a") as f:
        f.write(json.dumps(row) + "\n")
