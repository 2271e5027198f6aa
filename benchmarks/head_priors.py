"""Intervention-map head priors for unseen perturbations, side by side.

One `fit` (defaults, key 0, STEPS steps) of `synthetic_hill(seed)` per (seed, VARIANT),
scored by `gim_ppl.evaluation.protocol.evaluate_gim`. VARIANT: `base` (the model's priors
as they are now), `scaled` (head weights N(0, s/√p): s = 1 for the target and emax heads, 0.5
for log EC50 and log Hill, so a head's output sd does not grow with the number of features
p), `scaled_hill` (the same for the three Hill heads only), and `pooled…` (the same with
per-perturbation offsets, `GIM(..., pooled=training perturbations)`). docs/unseen.md, head
priors.

    python benchmarks/head_priors.py --seeds 0 1 2 3 4 5 7 9 \
        --variants base scaled pooled pooled_scaled pooled_scaled_hill \
        --out benchmarks/results/head_priors
    python benchmarks/head_priors.py --quick --out /tmp/head_priors       # smoke run (CI)
"""

from __future__ import annotations

import argparse
import json
import time

QUICK_DATA = dict(n_vars=4, n_train_perturbations=6, n_test_perturbations=3, n_cells=20,
                  n_test_cells=20, n_observational=100)
VARIANTS = ("base", "scaled", "scaled_hill", "pooled", "pooled_scaled", "pooled_scaled_hill")


def build_model(variant: str, train):
    """The GIM of VARIANT for the training data `train`."""
    import numpy as np
    import numpyro.distributions as dist

    import gim_ppl

    p = train.n_features
    r = 1 / np.sqrt(p)
    hill = dict(emax_weight=dist.Normal(0, r), log_ec50_weight=dist.Normal(0, 0.5 * r),
                log_hill_weight=dist.Normal(0, 0.5 * r))
    if variant.endswith("scaled"):
        priors = gim_ppl.Priors(target_weight=dist.Normal(0, r), **hill)
    elif variant.endswith("scaled_hill"):
        priors = gim_ppl.Priors(**hill)
    else:
        priors = None
    pooled = None
    if variant.startswith("pooled"):
        ids, _ = train.perturbation_contexts()
        pooled = [train.perturbation_names[i] for i in ids]
    return gim_ppl.GIM(train.n_vars, p, priors=priors, pooled=pooled)


def run(seed: int, variant: str, steps: int, data_options: dict) -> dict:
    import jax

    import gim_ppl
    from gim_ppl.evaluation.protocol import evaluate_gim

    bench = gim_ppl.datasets.synthetic_hill(seed, **data_options)
    model = build_model(variant, bench.train)
    start = time.time()
    res = gim_ppl.fit(model, bench.train, steps=steps, key=jax.random.key(0), progress=False)
    s = evaluate_gim(model, res.sites, bench, key=jax.random.key(1))
    return dict(
        seed=seed, variant=variant, train=round(s["target_auroc_train_posterior"], 3),
        unseen=round(s["target_auroc_full_ood"], 3), full=round(s["mean_error_full_ood"], 3),
        full_ctrl=round(s["mean_error_full_ood_control"], 3),
        part=round(s["mean_error_partial_ood"], 3),
        part_ctrl=round(s["mean_error_partial_ood_control"], 3), sec=round(time.time() - start))


def build_parser() -> argparse.ArgumentParser:
    """This script's arguments (tests/test_docs_blocks.py parses the docs' command lines
    with it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5, 7, 9])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--steps", type=int, default=30_000)
    parser.add_argument("--quick", action="store_true",
                        help="a tiny problem, one seed, `pooled_scaled`, 30 steps (smoke run)")
    parser.add_argument("--out", default="head_priors")
    return parser


def main(argv=None) -> int:
    from gim_ppl.cli.machine import rows_markdown, write_record

    args = build_parser().parse_args(argv)
    data_options: dict = {}
    if args.quick:
        args.seeds, args.variants, args.steps, data_options = [0], ["pooled_scaled"], 30, \
            QUICK_DATA
    rows = []
    for seed in args.seeds:
        for variant in args.variants:
            rows.append(run(seed, variant, args.steps, data_options))
            print(json.dumps(rows[-1]), flush=True)
    table = rows_markdown(rows)
    write_record(args.out, "head_priors",
                 "python benchmarks/head_priors.py " + " ".join(argv or []),
                 "Head priors for unseen perturbations", table, steps=args.steps, rows=rows)
    print(table)
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
