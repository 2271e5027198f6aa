"""AutoNormal around one fit: π and mean intervals for new perturbations.

One fit of the default GIM on `synthetic_hill(seed)` with `AutoNormal` started from the data
(STEPS steps, key 0), 200 posterior draws (`FitResult.posterior_draws`), and on the unseen
perturbations:

- π averaged over draws: AUROC, Brier score and the reliability bins (10 equal-width bins:
  count, Σπ, Σ true — poolable over seeds);
- the coverage of 90 % intervals of the predicted mean of each (context, variable)
  (`GIM.predicted_means`, 100 cells per draw) of the true interventional mean (5 000 true
  cells per context), with the interval width;
- the same π scores for the MAP fit (`fit` defaults) beside them.

docs/unseen.md, "Before: AutoNormal around one fit" (benchmarks/intervals.py is the newer
cross-fit calibration).

    python benchmarks/autonormal_intervals.py --seeds 0 1 2 3 4 \
        --out benchmarks/results/autonormal_intervals
    python benchmarks/autonormal_intervals.py --quick --out /tmp/an       # smoke run (CI)
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

QUICK_DATA = dict(n_vars=4, n_train_perturbations=6, n_test_perturbations=3, n_cells=20,
                  n_test_cells=20, n_observational=100)


def reliability_bins(truth, pi) -> dict:
    """10 equal-width bins of π: count, Σπ and Σ true per bin."""
    import numpy as np

    p, y = np.asarray(pi).ravel(), np.asarray(truth).ravel().astype(float)
    bins = np.minimum((p * 10).astype(int), 9)
    return {"count": np.bincount(bins, minlength=10).tolist(),
            "sum_p": np.bincount(bins, p, 10).tolist(),
            "sum_y": np.bincount(bins, y, 10).tolist()}


def run(seed: int, steps: int, sizes: dict, data_options: dict) -> dict:
    import jax
    import numpy as np
    from numpyro.infer.autoguide import AutoNormal

    import gim_ppl
    from gim_ppl.evaluation import metrics

    bench = gim_ppl.datasets.synthetic_hill(seed, **data_options)
    train, new = bench.train, bench.full_ood
    model = gim_ppl.GIM(train.n_vars, train.n_features)
    truth = np.asarray(bench.truth.targets["full_ood"])
    out = {"seed": seed}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.time()
        res = gim_ppl.fit(model, train, steps=steps, key=jax.random.key(0), progress=False,
                          guide=AutoNormal(model, init_loc_fn=gim_ppl.init_from_data(train)))
        out["seconds"] = round(time.time() - start, 1)
        point = gim_ppl.fit(model, train, steps=steps, key=jax.random.key(0),
                            progress=False).sites
    draws = res.posterior_draws(jax.random.key(1), sizes["draws"])
    for name, pi in (("autonormal", model.target_probabilities(draws, new).mean(0)),
                     ("map", model.target_probabilities(point, new))):
        out[f"auroc_{name}"] = metrics.auroc(truth, pi)
        out[f"brier_{name}"] = metrics.brier_score(truth, pi)
        out[f"bins_{name}"] = reliability_bins(truth, pi)
    means = model.predicted_means(draws, new, key=jax.random.key(2), n_cells=sizes["cells"])
    low, high = np.quantile(means, [0.05, 0.95], axis=0)
    true_means = np.asarray(bench.sample("full_ood", jax.random.key(3),
                                         sizes["true_cells"]).context_means())
    inside = (true_means >= low) & (true_means <= high)
    out["coverage90"] = float(inside.mean())
    out["coverage90_targeted"] = float(inside[truth > 0].mean())  # (context, variable) targeted
    out["interval_width"] = float((high - low).mean())
    return out


def build_parser() -> argparse.ArgumentParser:
    """This script's arguments (tests/test_docs_blocks.py parses the docs' command lines
    with it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, default=30_000)
    parser.add_argument("--quick", action="store_true",
                        help="a tiny problem, 30 steps, 10 draws of 10 cells, 50 true cells "
                             "(smoke run)")
    parser.add_argument("--out", default="autonormal_intervals")
    return parser


def main(argv=None) -> int:
    from gim_ppl.cli.machine import rows_markdown, write_record

    args = build_parser().parse_args(argv)
    sizes, data_options = {"draws": 200, "cells": 100, "true_cells": 5000}, {}
    if args.quick:
        args.seeds, args.steps = [0], 30
        sizes, data_options = {"draws": 10, "cells": 10, "true_cells": 50}, QUICK_DATA
    rows = []
    for seed in args.seeds:
        rows.append(run(seed, args.steps, sizes, data_options))
        print(json.dumps(rows[-1]), flush=True)
    table = rows_markdown(rows)
    write_record(args.out, "autonormal_intervals",
                 "python benchmarks/autonormal_intervals.py " + " ".join(argv or []),
                 "AutoNormal around one fit: new perturbations", table, steps=args.steps,
                 **sizes, rows=rows)
    print(table)
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
