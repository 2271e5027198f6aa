"""The expected-information-gain estimator on the default benchmark: Monte Carlo error, time.

`synthetic_hill(SEED)`: AutoNormal fit (3 000 steps, data start) on the control cells and the
first 10 training perturbations; 200 posterior draws; the candidates are the first 100 other
training contexts (perturbation × dose). For each quantity: the spread (sd) of the
estimates across candidates, the median Monte Carlo error, their ratio, and the wall time of
`rank_experiments` (compilation included; a second call shows the time without it). Also
the effective sample size of the inner weights with the SCM drawn or at its median.
docs/design.md, the estimator.

    OPENBLAS_NUM_THREADS=1 python benchmarks/eig_estimator.py --seed 0 \
        --out benchmarks/results/eig_estimator
    python benchmarks/eig_estimator.py --quick --out /tmp/eig             # smoke run (CI)
"""

from __future__ import annotations

import argparse
import json
import time

QUANTITIES = ("targets", "readout", "readout_of_all", "graph", "parameters")


def build_parser() -> argparse.ArgumentParser:
    """This script's arguments (tests/test_docs_blocks.py parses the docs' command lines
    with it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="30 fit steps, 10 draws, 4 candidates, `targets` only (smoke run)")
    parser.add_argument("--out", default="eig_estimator")
    return parser


def main(argv=None) -> int:
    import jax
    import numpy as np
    from numpyro.infer.autoguide import AutoNormal

    import gim_ppl
    from gim_ppl.cli.machine import rows_markdown, write_record
    from gim_ppl.design import inner_ess, rank_experiments

    args = build_parser().parse_args(argv)
    seed = args.seed
    steps, n_draws, n_candidates, n_ess, quantities = 3000, 200, 100, 10, QUANTITIES
    if args.quick:
        steps, n_draws, n_candidates, n_ess, quantities = 30, 10, 4, 2, ("targets",)
    bench = gim_ppl.datasets.synthetic_hill(seed)
    train = bench.train
    pert = np.asarray(train.perturbation)
    data = train.subset(np.flatnonzero(pert < 10))
    candidates = train.subset(np.flatnonzero(pert >= 10)[:n_candidates]).contexts_only()
    model = gim_ppl.GIM(data.n_vars, data.n_features)
    result = gim_ppl.fit(model, data, key=jax.random.key(0), steps=steps, progress=False,
                         guide=AutoNormal(model, init_loc_fn=gim_ppl.init_from_data(data)))
    draws = result.posterior_draws(jax.random.key(1), n_draws)
    rows = []
    for quantity in quantities:
        about = quantity.removesuffix("_of_all")
        extra = {"of": candidates} if quantity.endswith("_of_all") else {}
        times = []
        for _ in range(2):
            start = time.perf_counter()
            table = rank_experiments(model, draws, candidates, key=jax.random.key(2),
                                     about=about, **extra)
            times.append(time.perf_counter() - start)
        rows.append({"seed": seed, "about": about + (" (of all candidates)" if extra else ""),
                     "n_candidates": candidates.n_contexts, "n_draws": n_draws, "n_cells": 100,
                     "eig_mean": float(table.eig.mean()), "eig_sd": float(table.eig.std()),
                     "mc_se_median": float(table.mc_se.median()),
                     "ratio": float(table.mc_se.median() / table.eig.std()),
                     "seconds_first": round(times[0], 1),
                     "seconds_second": round(times[1], 1)})
        print(json.dumps(rows[-1]), flush=True)
    # effective sample size of the inner weights (first 10 candidates), SCM drawn or at its median
    ess_rows = []
    for scm in ("draws", "median"):
        ess = inner_ess(model, draws, candidates.subset(np.arange(n_ess)),
                        key=jax.random.key(3), scm=scm).ravel()
        ess_rows.append({"seed": seed, "scm": scm, "inner_ess_median": float(np.median(ess)),
                         "inner_ess_p10": float(np.percentile(ess, 10)), "n_draws": n_draws})
        print(json.dumps(ess_rows[-1]), flush=True)
    table = rows_markdown(rows) + "\n\n" + rows_markdown(ess_rows)
    write_record(args.out, f"eig_estimator_seed{seed}",
                 "python benchmarks/eig_estimator.py " + " ".join(argv or []),
                 "The EIG estimator on the default benchmark", table, seed=seed, steps=steps,
                 rows=rows, inner_ess=ess_rows)
    print(table)
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
