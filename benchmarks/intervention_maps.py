"""Intervention maps and shrinkage priors on unseen perturbations, side by side.

One `fit` (defaults, STEPS steps, key 0) of `synthetic_hill(seed)` per (seed, VARIANT),
scored by `gim_ppl.evaluation.stability.fit_scores` (the stability benchmark's scores, with
the `oracle_features` reference and Brier scores of π on the unseen perturbations).
VARIANT: `linear` (the default map), `ard`, `horseshoe` (`shrinkage=`), `gp`
(`intervention_map="gp"`, anchors = the training perturbations) or `gp_pooled` (the GP with
per-perturbation offsets). `--noise N` (default 0): N extra feature columns of pure N(0, 1)
noise per perturbation (the truth ignores them), as with a chemical embedding of which only
some dimensions matter. docs/unseen.md, intervention maps.

    python benchmarks/intervention_maps.py --seeds 0 1 2 3 4 \
        --variants linear ard horseshoe gp gp_pooled --out benchmarks/results/intervention_maps
    python benchmarks/intervention_maps.py --seeds 0 1 2 --variants linear ard horseshoe gp \
        --noise 10 --out benchmarks/results/intervention_maps
    python benchmarks/intervention_maps.py --quick --out /tmp/maps        # smoke run (CI)
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

QUICK_DATA = dict(n_vars=4, n_train_perturbations=6, n_test_perturbations=3, n_cells=20,
                  n_test_cells=20, n_observational=100)
VARIANTS = ("linear", "ard", "horseshoe", "gp", "gp_pooled")


def with_noise_features(bench, noise: int, seed: int):
    """`bench` with `noise` N(0, 1) feature columns per perturbation: one row per
    perturbation (`np.random.default_rng(1000 + seed)`), shared by its contexts in every
    split, 0 for controls."""
    import jax.numpy as jnp
    import numpy as np

    rows = np.random.default_rng(1000 + seed).normal(
        size=(len(bench.train.perturbation_names), noise))

    def widen(data):
        pert = np.asarray(data.perturbation)
        extra = np.where((pert >= 0)[:, None], rows[np.maximum(pert, 0)], 0.0)
        return data.replace(features=jnp.concatenate(
            [data.features, jnp.asarray(extra, data.features.dtype)], 1),
            feature_names=data.feature_names + tuple(f"noise_{i}" for i in range(noise)))

    return bench.__class__(train=widen(bench.train), partial_ood=widen(bench.partial_ood),
                           full_ood=widen(bench.full_ood), truth=bench.truth)


def run(seed: int, variant: str, noise: int, steps: int, data_options: dict) -> dict:
    import jax

    import gim_ppl
    from gim_ppl.evaluation.stability import fit_scores

    bench = gim_ppl.datasets.synthetic_hill(seed, **data_options)
    if noise:
        bench = with_noise_features(bench, noise, seed)
    p = bench.train.n_features
    options = {"linear": {}, "ard": {"shrinkage": "ard"},
               "horseshoe": {"shrinkage": "horseshoe"},
               "gp": {"intervention_map": "gp", "map_anchors": bench.train},
               "gp_pooled": {"intervention_map": "gp", "map_anchors": bench.train}}[variant]
    if variant.endswith("pooled"):
        ids, _ = bench.train.perturbation_contexts()
        options["pooled"] = [bench.train.perturbation_names[i] for i in ids]
    model = gim_ppl.GIM(bench.train.n_vars, p, **options)
    start = time.time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = gim_ppl.fit(model, bench.train, steps=steps, key=jax.random.key(0),
                          progress=False)
    seconds = time.time() - start
    s = fit_scores(model, res.sites, bench)
    return dict(seed=seed, variant=variant, noise=noise, seconds=round(seconds, 1),
                **{k: v if isinstance(v, str) else round(v, 4) for k, v in s.items()})


def build_parser() -> argparse.ArgumentParser:
    """This script's arguments (tests/test_docs_blocks.py parses the docs' command lines
    with it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--noise", type=int, default=0,
                        help="extra pure-noise feature columns per perturbation")
    parser.add_argument("--steps", type=int, default=30_000)
    parser.add_argument("--quick", action="store_true",
                        help="a tiny problem, one seed, `ard` with 2 noise columns, 30 steps "
                             "(smoke run)")
    parser.add_argument("--out", default="intervention_maps")
    return parser


def main(argv=None) -> int:
    from gim_ppl.cli.machine import rows_markdown, write_record

    args = build_parser().parse_args(argv)
    data_options: dict = {}
    if args.quick:
        args.seeds, args.variants, args.noise, args.steps = [0], ["ard"], 2, 30
        data_options = QUICK_DATA
    rows = []
    for seed in args.seeds:
        for variant in args.variants:
            rows.append(run(seed, variant, args.noise, args.steps, data_options))
            print(json.dumps(rows[-1]), flush=True)
    table = rows_markdown(rows)
    write_record(args.out, f"intervention_maps_noise{args.noise}",
                 "python benchmarks/intervention_maps.py " + " ".join(argv or []),
                 "Intervention maps on unseen perturbations", table, steps=args.steps,
                 rows=rows)
    print(table)
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
