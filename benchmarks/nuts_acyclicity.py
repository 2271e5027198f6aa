"""NUTS on the default model with each acyclicity factor, side by side.

`run_mcmc` on `synthetic_hill(0, n_vars=N_VARS, n_train_perturbations=10, n_cells=20)` (the
default model, spectral penalty) with VARIANT: `notears` (`run_mcmc`'s default: it samples
with the NOTEARS factor), `spectral_exact` (`run_mcmc(..., acyclicity="model")`: the
spectral penalty differentiated through its power iterations) or `spectral_surrogate` (the
spectral penalty with the fixed-vector gradient `fit` uses, as `run_mcmc` ran it before).
CHAINS chains × WARMUP + SAMPLES draws, chains from the data start with jitter 0.1, key 0.
One row per variant: wall time, divergences, max R-hat, min bulk/tail ESS over the model's
sample sites, bulk ESS per second, E-BFMI (`gim_ppl.diagnose`). docs/reliability.md, NUTS
on the default model.

    python benchmarks/nuts_acyclicity.py --variants spectral_surrogate spectral_exact notears \
        --warmup 150 --samples 150 --out benchmarks/results/nuts_acyclicity
    python benchmarks/nuts_acyclicity.py --variants notears --warmup 1000 --samples 1000 \
        --n-vars 10 --chains 4 --out benchmarks/results/nuts_acyclicity
    python benchmarks/nuts_acyclicity.py --quick --out /tmp/nuts_acyclicity   # smoke run (CI)
"""

from __future__ import annotations

import argparse
import json
import time

VARIANTS = ("notears", "spectral_exact", "spectral_surrogate")


def run(variant: str, warmup: int, samples: int, n_vars: int, chains: int,
        data_options: dict) -> dict:
    import jax
    from numpyro.infer import MCMC, NUTS

    import gim_ppl
    from gim_ppl.inference.mcmc import MCMC_JITTER

    options = {"n_train_perturbations": 10, "n_cells": 20, **data_options}
    data = gim_ppl.datasets.synthetic_hill(0, n_vars=n_vars, **options).train
    model = gim_ppl.GIM(n_vars, data.n_features)
    start = time.time()
    if variant == "spectral_surrogate":  # run_mcmc's settings, without with_exact_gradients()
        mcmc = MCMC(NUTS(model, init_strategy=gim_ppl.init_from_data(data, jitter=MCMC_JITTER)),
                    num_warmup=warmup, num_samples=samples, num_chains=chains,
                    chain_method="sequential", progress_bar=False)
        mcmc.run(jax.random.key(0), data, extra_fields=("diverging", "energy"))
    else:
        mcmc = gim_ppl.run_mcmc(model, data, key=jax.random.key(0), num_warmup=warmup,
                                num_samples=samples, num_chains=chains,
                                acyclicity="model" if variant == "spectral_exact" else "notears")
    seconds = time.time() - start
    idata = gim_ppl.to_arviz(model, mcmc, data)
    d = gim_ppl.diagnose(idata, var_names=list(model.site_shapes), warn=False)
    return {
        "variant": variant, "n_vars": n_vars, "chains": chains, "warmup": warmup,
        "samples": samples, "seconds": round(seconds, 1),
        "divergences": d.divergences, "max_r_hat": round(float(d.table["r_hat"].max()), 3),
        "min_ess_bulk": round(float(d.table["ess_bulk"].min()), 1),
        "min_ess_tail": round(float(d.table["ess_tail"].min()), 1),
        "min_ess_bulk_per_s": round(float(d.table["ess_bulk"].min()) / seconds, 3),
        "bfmi": [round(float(b), 3) for b in d.bfmi], "n_scalars": len(d.table),
        "problems": list(d.problems)}


def build_parser() -> argparse.ArgumentParser:
    """This script's arguments (tests/test_docs_blocks.py parses the docs' command lines
    with it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--n-vars", type=int, default=5)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--quick", action="store_true",
                        help="`notears`, 3 variables, 3 perturbations, 2 chains × (5 + 5) "
                             "(smoke run)")
    parser.add_argument("--out", default="nuts_acyclicity")
    return parser


def main(argv=None) -> int:
    from gim_ppl.cli.machine import rows_markdown, write_record

    args = build_parser().parse_args(argv)
    data_options: dict = {}
    if args.quick:
        args.variants, args.warmup, args.samples, args.n_vars = ["notears"], 5, 5, 3
        data_options = {"n_train_perturbations": 3, "n_test_perturbations": 2,
                        "n_observational": 50}
    rows = []
    for variant in args.variants:
        rows.append(run(variant, args.warmup, args.samples, args.n_vars, args.chains,
                        data_options))
        print(json.dumps(rows[-1]), flush=True)
    table = rows_markdown(rows)
    write_record(args.out, f"nuts_acyclicity_d{args.n_vars}_{args.chains}x{args.samples}",
                 "python benchmarks/nuts_acyclicity.py " + " ".join(argv or []),
                 "NUTS with each acyclicity factor", table, rows=rows)
    print(table)
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
