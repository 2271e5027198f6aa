"""`gim-ppl` command line: `demo` fits the bundled synthetic benchmark and prints its metrics."""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import jax
import numpy as np

from gim_ppl import metrics
from gim_ppl.baselines import Observational
from gim_ppl.datasets import synthetic_hill
from gim_ppl.inference import fit
from gim_ppl.model import GIM


def evaluate_gim(model: GIM, sites, bench, *, key, n_cells: int = 500) -> dict:
    """Target recovery and per-context mean errors of a fitted GIM on a synthetic benchmark."""
    train = bench.train
    pert = ~np.asarray(train.observational)
    truth_train = bench.truth.targets["train"][pert]
    out = {
        "target_auroc_train_posterior": metrics.auroc(
            truth_train, model.posterior_targets(sites, train)[pert]),
        "target_auroc_train_prior": metrics.auroc(
            truth_train, model.target_probabilities(sites, train)[pert]),
        "target_auroc_full_ood": metrics.auroc(
            bench.truth.targets["full_ood"], model.target_probabilities(sites, bench.full_ood)),
    }
    control = Observational().fit(train)
    for i, split in enumerate(("partial_ood", "full_ood")):
        data = bench.split(split)
        k1, k2 = jax.random.split(jax.random.fold_in(key, i))
        pred = model.predict(sites, data, key=k1, n_cells=n_cells)
        out[f"mean_error_{split}"] = metrics.mean_error(pred, data)
        out[f"mean_error_{split}_control"] = metrics.mean_error(
            control.predict(data, key=k2, n_cells=n_cells), data)
    return out


def machine_description() -> str:
    """CPU model, core count and JAX backend, for benchmark output."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if "model name" in line)
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, {os.cpu_count()} cores; python {platform.python_version()}, "
            f"jax {jax.__version__} on {jax.devices()[0].platform}")


def _demo(args) -> int:
    bench = synthetic_hill(args.seed, n_vars=args.n_vars)
    print(f"synthetic_hill(seed={args.seed}, n_vars={args.n_vars}): train {bench.train}")
    print(f"machine: {machine_description()}")
    marginals = ("exact", "relaxed_mc") if args.marginal == "both" else (args.marginal,)
    rows = []
    for marginal in marginals:
        model = GIM(args.n_vars, bench.train.n_features, marginal=marginal)
        start = time.perf_counter()
        result = fit(model, bench.train, steps=args.steps, key=jax.random.key(args.seed),
                     learning_rate=args.learning_rate, progress=not args.no_progress)
        seconds = time.perf_counter() - start
        if result.message:
            print(f"warning: {result.message}", file=sys.stderr)
        scores = evaluate_gim(model, result.sites, bench, key=jax.random.key(args.seed + 1))
        rows.append((marginal, scores, seconds))

    print()
    print(f"GIM fit: {args.steps} Adam steps at lr {args.learning_rate}")
    print("| metric | " + " | ".join(m for m, _, _ in rows) + " |")
    print("|---|" + "---|" * len(rows))
    labels = [
        ("target AUROC, train perturbations (posterior)", "target_auroc_train_posterior"),
        ("target AUROC, train perturbations (prior from features)", "target_auroc_train_prior"),
        ("target AUROC, unseen perturbations (prior from features)", "target_auroc_full_ood"),
        ("mean error, partial OOD (new doses)", "mean_error_partial_ood"),
        ("mean error, partial OOD, control prediction", "mean_error_partial_ood_control"),
        ("mean error, full OOD (new perturbations)", "mean_error_full_ood"),
        ("mean error, full OOD, control prediction", "mean_error_full_ood_control"),
    ]
    for label, key in labels:
        print(f"| {label} | " + " | ".join(f"{s[key]:.3f}" for _, s, _ in rows) + " |")
    print("| fit wall time (s) | " + " | ".join(f"{t:.1f}" for _, _, t in rows) + " |")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="gim-ppl", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="fit the default synthetic benchmark and print metrics")
    demo.add_argument("--steps", type=int, default=30_000)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--n-vars", type=int, default=10)
    demo.add_argument("--learning-rate", type=float, default=1e-3)
    demo.add_argument("--marginal", choices=("exact", "relaxed_mc", "both"), default="both")
    demo.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return _demo(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
