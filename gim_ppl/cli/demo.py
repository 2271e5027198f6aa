"""`gim-ppl demo`: fit a GIM to the bundled synthetic benchmark (`synthetic_hill`) with the
exact and/or relaxed marginal and print its metrics as a markdown table. Scoring needs the
`[bench]` extra; it is imported when the command runs."""

from __future__ import annotations

import sys
import time

from gim_ppl.cli.arguments import NON_NEGATIVE_INT, POSITIVE_FLOAT, POSITIVE_INT, number_type
from gim_ppl.cli.machine import machine_description

_at_least_two = number_type(int, 2, True, "a whole number ≥ 2")


def add_parser(sub) -> None:
    """Register `gim-ppl demo`."""
    demo = sub.add_parser(
        "demo", help="fit the default synthetic benchmark and print its metrics",
        description="Generate the bundled synthetic benchmark (a random causal graph over "
                    "--n-vars variables, 40 training perturbations at 4 doses, unseen doses and "
                    "unseen perturbations to predict; synthetic_hill), fit a GIM to it with the "
                    "exact and/or the relaxed target marginal, and print a table: how well "
                    "the true targets are found (AUROC) and how far predicted cells are from "
                    "the observed ones (mean error), beside predicting the control cells. "
                    "With the defaults the exact marginal takes about half a minute and the "
                    "relaxed one about four minutes on a 2-core CPU (README).")
    demo.add_argument("--steps", type=POSITIVE_INT, default=30_000, metavar="N",
                      help="Adam steps per fit (default: %(default)s)")
    demo.add_argument("--seed", type=NON_NEGATIVE_INT, default=0, metavar="N",
                      help="seed of the benchmark and of the fit (default: %(default)s)")
    demo.add_argument("--n-vars", type=_at_least_two, default=10, metavar="N",
                      help="number of variables of the synthetic graph (default: %(default)s)")
    demo.add_argument("--learning-rate", type=POSITIVE_FLOAT, default=1e-3, metavar="LR",
                      help="Adam learning rate (default: %(default)s)")
    demo.add_argument("--marginal", choices=("exact", "relaxed_mc", "both"), default="both",
                      help="how the unknown targets are summed out: exactly, by a relaxed "
                           "Monte Carlo estimate, or both side by side (default: %(default)s)")
    demo.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    """`gim-ppl demo`: fit the bundled synthetic benchmark and print its metrics."""
    # here, not at the top: building the parser and checking the arguments load no jax
    import jax
    import optax

    from gim_ppl.datasets import synthetic_hill
    from gim_ppl.evaluation.protocol import evaluate_gim
    from gim_ppl.inference import fit
    from gim_ppl.inference.fitting import capped_steps
    from gim_ppl.model import GIM

    bench = synthetic_hill(args.seed, n_vars=args.n_vars)
    print(f"synthetic_hill(seed={args.seed}, n_vars={args.n_vars}): train {bench.train}")
    print(f"machine: {machine_description()}")
    steps = capped_steps(args.steps)  # the table says how many steps ran
    marginals = ("exact", "relaxed_mc") if args.marginal == "both" else (args.marginal,)
    rows = []
    for marginal in marginals:
        model = GIM(args.n_vars, bench.train.n_features, marginal=marginal, pooled=bench.train)
        start = time.perf_counter()
        result = fit(model, bench.train, steps=steps, key=jax.random.key(args.seed),
                     optimizer=optax.adam(args.learning_rate), progress=not args.no_progress)
        seconds = time.perf_counter() - start
        if result.message:
            print(f"warning: {result.message}", file=sys.stderr)
        scores = evaluate_gim(model, result.sites, bench, key=jax.random.key(args.seed + 1))
        rows.append((marginal, scores, seconds))

    print()
    print(f"GIM fit: {steps} Adam steps at lr {args.learning_rate}")
    print("| metric | " + " | ".join(m for m, _, _ in rows) + " |")
    print("|---|" + "---|" * len(rows))
    labels = [
        ("target AUROC, train perturbations (posterior)", "target_auroc_train_posterior"),
        ("target AUROC, train perturbations (prior from features)", "target_auroc_train_prior"),
        ("target AUROC, unseen perturbations (prior from features)", "target_auroc_full_ood"),
        ("mean error, partial OOD (new doses)", "mean_error_partial_ood"),
        ("mean error, partial OOD, best simple baseline ({best_simple_partial_ood})",
         "mean_error_partial_ood_best_simple"),
        ("mean error, partial OOD, control prediction", "mean_error_partial_ood_control"),
        ("mean error, full OOD (new perturbations)", "mean_error_full_ood"),
        ("mean error, full OOD, best simple baseline ({best_simple_full_ood})",
         "mean_error_full_ood_best_simple"),
        ("mean error, full OOD, control prediction", "mean_error_full_ood_control"),
    ]
    for label, key in labels:
        label = label.format(**rows[0][1])  # the baselines do not depend on the marginal
        print(f"| {label} | " + " | ".join(f"{s[key]:.3f}" for _, s, _ in rows) + " |")
    print("| fit wall time (s) | " + " | ".join(f"{t:.1f}" for _, _, t in rows) + " |")
    return 0
