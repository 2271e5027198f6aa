"""Oracle ladder: which part of a fitted GIM costs most when it predicts new perturbations.

For each seed of `synthetic_hill`, fit the GIM as `gim-ppl bench` does (`gim_ppl.fit`
defaults, offsets for the training perturbations), then swap in the truth one component at a
time — the targets of the new perturbations, their Hill curves, the SCM (graph, weights,
bias) — and score the full-OOD mean error of each hybrid against the observed test cells.
Means are exact for the linear SCM, `(b + P(I)·s)(I − W)⁻¹` (no sampling noise between
rungs). Rows `oracle_features` (true SCM and Hill, targets by logistic regression on the
true training targets) and `oracle` (all true: the floor set by the 100 observed cells per
context) bracket the ladder.

    python benchmarks/oracle_ladder.py --seeds 0 1 2 --out ladder      # JSON + Markdown
    python benchmarks/oracle_ladder.py --quick --out /tmp/ladder       # smoke run (CI)
"""

from __future__ import annotations

import argparse

import jax
import numpy as np
import optax

import gim_ppl
from gim_ppl.cli.machine import write_record
from gim_ppl.core.hill import hill_shift
from gim_ppl.evaluation.baselines import OracleFeatureTargets

#: (row, which components are true): targets, Hill curves, SCM.
RUNGS = (
    ("gim", ()),
    ("true targets", ("targets",)),
    ("true Hill", ("hill",)),
    ("true SCM", ("scm",)),
    ("true targets + Hill", ("targets", "hill")),
    ("true targets + SCM", ("targets", "scm")),
    ("true Hill + SCM", ("hill", "scm")),
    ("oracle_features", ("hill", "scm", "features")),
    ("oracle", ("targets", "hill", "scm")),
)


def mixture_means(bias, weights, targets, shift) -> np.ndarray:
    """`(k, d)` exact means of a linear SCM whose targets are Bernoulli(`targets (k, d)`)
    with shifts `shift (k, d)`: `(b + P(I)·s)(I − W)⁻¹`."""
    d = weights.shape[0]
    w = np.asarray(weights, float) * (1 - np.eye(d))
    return (bias + targets * shift) @ np.linalg.inv(np.eye(d) - w)


def ladder(seed: int, steps: int, learning_rate: float, bench_options: dict) -> dict:
    bench = gim_ppl.datasets.synthetic_hill(seed, **bench_options)
    train, new = bench.train, bench.full_ood
    model = gim_ppl.GIM(train.n_vars, train.n_features, pooled=train)
    sites = gim_ppl.fit(model, train, steps=steps, key=jax.random.key(seed),
                        optimizer=optax.adam(learning_rate), progress=False).sites
    fitted_hill = model.hill_parameters(sites, new)
    truth = bench.truth
    dose = np.asarray(new.dose, float)[:, None]

    def shift(h):
        return np.asarray(hill_shift(dose, h["emax"], np.log(h["ec50"]), np.log(h["hill"])))

    parts = {
        "targets": (np.asarray(model.target_probabilities(sites, new)),
                    truth.targets["full_ood"].astype(float)),
        "hill": (shift(fitted_hill), shift(truth.hill["full_ood"])),
        "scm": ((np.asarray(sites["bias"]), model.edge_weights(sites)),
                (truth.bias, truth.weights)),
    }
    features_pi = OracleFeatureTargets(bench).fit().target_probabilities(new)
    observed = new.context_means()
    row = {"seed": seed}
    for name, true_parts in RUNGS:
        pick = {k: v[1] if k in true_parts else v[0] for k, v in parts.items()}
        targets = features_pi if "features" in true_parts else pick["targets"]
        means = mixture_means(*pick["scm"], targets, pick["hill"])
        row[name] = float(np.linalg.norm(means - observed, axis=1).mean())
    row["targets_per_context_fitted"] = float(parts["targets"][0].sum(1).mean())
    row["targets_per_context_true"] = float(parts["targets"][1].sum(1).mean())
    return row


def markdown(rows: list[dict]) -> str:
    names = [name for name, _ in RUNGS]
    lines = ["| seed | " + " | ".join(names) + " | targets per context (fitted / true) |",
             "|---" * (len(names) + 2) + "|"]
    for r in rows:
        lines.append(f"| {r['seed']} | " + " | ".join(f"{r[n]:.3f}" for n in names)
                     + f" | {r['targets_per_context_fitted']:.2f} / "
                       f"{r['targets_per_context_true']:.2f} |")
    lines.append("| mean | " + " | ".join(f"{np.mean([r[n] for r in rows]):.3f}" for n in names)
                 + " | |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """This script's arguments (tests/test_docs_blocks.py parses the docs' command lines
    with it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--steps", type=int, default=30_000)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--quick", action="store_true",
                        help="one seed, 300 steps at lr 1e-2, 6 new perturbations (smoke run)")
    parser.add_argument("--out", default="oracle_ladder")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    options: dict = {}
    if args.quick:
        args.seeds, args.steps, args.learning_rate = [0], 300, 1e-2
        options = {"n_test_perturbations": 6}
    rows = [ladder(s, args.steps, args.learning_rate, options) for s in args.seeds]
    table = markdown(rows)
    write_record(args.out, "oracle_ladder",
                 "python benchmarks/oracle_ladder.py " + " ".join(argv or []),
                 "Oracle ladder (full-OOD mean error)", table, seeds=args.seeds,
                 steps=args.steps, learning_rate=args.learning_rate, rows=rows)
    print(table)
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
