"""Where a fit starts: `fit` defaults with the guide's start replaced.

VARIANT: `median` (NumPyro's default, `init_to_median`), `zerohead` (Hill and target heads at
zero, emax/EC50/Hill biases at zero, every other site NumPyro's `init_to_uniform`), `ctrl`
(intercepts and noise scales at the control cells), `dataw` (no edges, target bias −2); e.g.
`zerohead+ctrl+dataw` is `init_from_data` written out. One row per (seed, key, variant) on
`synthetic_hill(seed)`: train target AUROC, targets per context, unseen AUROC and on how
many variables the fitted sign of `emax_bias` is right (variables never targeted count as
right). docs/reliability.md, where a fit starts.

    python benchmarks/fit_start.py --seeds 6 7 --keys 0 \
        --variants median zerohead zerohead+ctrl+dataw --out benchmarks/results/fit_start
    python benchmarks/fit_start.py --quick --out /tmp/fit_start           # smoke run (CI)
"""

from __future__ import annotations

import argparse
import json
import time

QUICK_DATA = dict(n_vars=4, n_train_perturbations=6, n_test_perturbations=3, n_cells=20,
                  n_test_cells=20, n_observational=100)


def start_values(variant: str, train) -> dict:
    """The sites VARIANT starts at (`init_to_value`); empty for `median`."""
    import jax.numpy as jnp
    import numpy as np

    d, p = train.n_vars, train.n_features
    values = {}
    if "zerohead" in variant:
        for h in ("target", "emax", "log_ec50", "log_hill"):
            values[f"{h}_weights"] = jnp.zeros((p, d))
        values["emax_bias"] = jnp.zeros(d)
        values["log_ec50_bias"] = jnp.zeros(d)
        values["log_hill_bias"] = jnp.zeros(d)
    if "ctrl" in variant:
        ctrl = np.asarray(train.x)[np.asarray(train.context) == 0]
        values["bias"] = jnp.asarray(ctrl.mean(0))
        values["noise_scale"] = jnp.asarray(ctrl.std(0))
    if "dataw" in variant:
        values["weights"] = jnp.zeros((d, d))
        values["target_bias"] = jnp.full(d, -2.0)
    return values


def run(seed: int, key: int, variant: str, steps: int, data_options: dict) -> dict:
    import jax
    import numpy as np
    from numpyro.infer.autoguide import AutoDelta
    from numpyro.infer.initialization import init_to_value

    import gim_ppl
    from gim_ppl.evaluation import metrics

    bench = gim_ppl.datasets.synthetic_hill(seed, **data_options)
    train = bench.train
    model = gim_ppl.GIM(train.n_vars, train.n_features)
    values = start_values(variant, train)
    guide = (AutoDelta(model, init_loc_fn=init_to_value(values=values)) if values
             else AutoDelta(model))  # `median`: NumPyro's default start, init_to_median
    t = time.time()
    res = gim_ppl.fit(model, train, steps=steps, key=jax.random.key(key), guide=guide,
                      progress=False)
    pert = ~np.asarray(train.observational)
    post = np.asarray(model.posterior_targets(res.sites, train))[pert]
    truth = bench.truth.targets["train"][pert]
    unseen = model.target_probabilities(res.sites, bench.full_ood)
    tsign = np.sign(bench.truth.hill["train"]["emax"][1])
    fsign = np.sign(np.asarray(res.sites["emax_bias"]))
    targeted = bench.truth.targets["train"].any(0)
    return dict(seed=seed, key=key, variant=variant, auroc=metrics.auroc(truth, post),
                tpc=float((post > 0.5).sum(1).mean()),
                unseen=metrics.auroc(bench.truth.targets["full_ood"], np.asarray(unseen)),
                sign_ok=int(((tsign == fsign) | ~targeted).sum()), loss=float(res.losses[-1]),
                sec=time.time() - t)


def build_parser() -> argparse.ArgumentParser:
    """This script's arguments (tests/test_docs_blocks.py parses the docs' command lines
    with it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[6, 7])
    parser.add_argument("--keys", type=int, nargs="+", default=[0])
    parser.add_argument("--variants", nargs="+",
                        default=["median", "zerohead", "zerohead+ctrl+dataw"])
    parser.add_argument("--steps", type=int, default=30_000)
    parser.add_argument("--quick", action="store_true",
                        help="a tiny problem, one seed, key and variant, 30 steps (smoke run)")
    parser.add_argument("--out", default="fit_start")
    return parser


def main(argv=None) -> int:
    from gim_ppl.cli.machine import rows_markdown, write_record

    args = build_parser().parse_args(argv)
    data_options: dict = {}
    if args.quick:
        args.seeds, args.keys, args.variants, args.steps = [0], [0], ["zerohead+ctrl+dataw"], 30
        data_options = QUICK_DATA
    rows = []
    for seed in args.seeds:
        for key in args.keys:
            for variant in args.variants:
                rows.append(run(seed, key, variant, args.steps, data_options))
                print(json.dumps(rows[-1]), flush=True)
    table = rows_markdown(rows)
    write_record(args.out, "fit_start", "python benchmarks/fit_start.py " + " ".join(argv or []),
                 "Where a fit starts", table, steps=args.steps, rows=rows)
    print(table)
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
