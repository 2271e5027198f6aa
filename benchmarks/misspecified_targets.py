"""Target inference under misspecification: does P(I = 1 | cells) saturate as cells grow?

For each seed, scenario and number of cells per training context, build `synthetic_hill`
(20 training perturbations × 4 doses, one observational context of 800 cells), fit a linear
GIM (`gim_ppl.fit`, offsets for the training perturbations) once per coarsening α (None: the
plain marginal) and score the posterior target probabilities of the training contexts against
the true targets:

- `auroc`: target AUROC over (context, variable) pairs;
- `brier`: Brier score; `reliability`: the largest |frequency − mean probability| over the
  bins of a 10-bin reliability curve that hold ≥ 50 pairs;
- `saturated`: the share of non-targets with P ≥ 0.99; `recall`: targets with P ≥ 0.5.

With `--known-sources`, each fit also gets the background knowledge a user would state: the
true graph's source variables (no parents) as `gim_ppl.allowed_edges(sources=...)`.

Scenarios: `well_specified` (the benchmark's Gaussian linear SCM) and `misspecified`
(Student-t noise with 4 degrees of freedom and a per-context offset of sd 0.25 on every
variable: `synthetic_hill(noise_df=4, context_shift=0.25)`).

    python benchmarks/misspecified_targets.py --out misspecified          # JSON + Markdown
    python benchmarks/misspecified_targets.py --quick --out /tmp/mis      # smoke run (CI)
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np
import optax

import gim_ppl
from gim_ppl.cli.machine import write_record
from gim_ppl.evaluation import metrics

SCENARIOS = {
    "well_specified": {},
    "misspecified": {"noise_df": 4.0, "context_shift": 0.25},
}
SCORES = ("auroc", "brier", "reliability", "saturated", "recall", "seconds")


def reliability_gap(labels, probs, *, min_count: int = 50) -> float:
    """Largest |share of targets − mean probability| over the 10 equal-width bins that hold
    at least `min_count` pairs (NaN when none does)."""
    curve = metrics.reliability_curve(labels, probs)
    keep = curve["count"] >= min_count
    if not keep.any():
        return float("nan")
    return float(np.max(np.abs(curve["frequency"] - curve["mean_prob"])[keep]))


def target_scores(labels, probs) -> dict:
    """The scores of the module docstring from `labels`, `probs (n_contexts, n_vars)`."""
    labels, probs = np.asarray(labels, bool), np.asarray(probs, float)
    return {"auroc": metrics.auroc(labels, probs), "brier": metrics.brier_score(labels, probs),
            "reliability": reliability_gap(labels, probs),
            "saturated": float(np.mean(probs[~labels] >= 0.99)),
            "recall": float(np.mean(probs[labels] >= 0.5))}


def run_one(seed: int, scenario: str, n_cells: int, alphas, *, steps: int,
            learning_rate: float, n_train: int, known_sources: bool = False) -> list[dict]:
    bench = gim_ppl.datasets.synthetic_hill(seed, n_cells=n_cells, n_train_perturbations=n_train,
                                            **SCENARIOS[scenario])
    train = bench.train
    mask = None
    if known_sources:
        roots = [v for v, has in zip(train.var_names, bench.truth.adjacency.any(0), strict=True)
                 if not has]
        mask = gim_ppl.allowed_edges(train.var_names, sources=roots)
    pert = ~np.asarray(train.observational)
    labels = bench.truth.targets["train"][pert]
    rows = []
    for alpha in alphas:
        model = gim_ppl.GIM(train.n_vars, train.n_features, pooled=train, coarsening=alpha,
                            edge_mask=mask)
        start = time.perf_counter()
        result = gim_ppl.fit(model, train, steps=steps, key=jax.random.key(seed),
                             optimizer=optax.adam(learning_rate), progress=False)
        seconds = time.perf_counter() - start
        probs = np.asarray(model.posterior_targets(result.sites, train))[pert]
        rows.append({"seed": seed, "scenario": scenario, "n_cells": n_cells,
                     "coarsening": alpha, "known_sources": known_sources,
                     **target_scores(labels, probs), "seconds": seconds})
    return rows


def summarise(rows) -> list[dict]:
    """Mean, sd and worst (lowest AUROC / highest others) per (scenario, cells, α)."""
    keys = sorted({(r["scenario"], r["n_cells"], r["coarsening"] or 0.0) for r in rows})
    out = []
    for scenario, n_cells, alpha in keys:
        sel = [r for r in rows if (r["scenario"], r["n_cells"], r["coarsening"] or 0.0)
               == (scenario, n_cells, alpha)]
        entry = {"scenario": scenario, "n_cells": n_cells, "coarsening": alpha or None,
                 "n": len(sel)}
        for score in SCORES:
            vals = np.asarray([r[score] for r in sel], float)
            worst = np.nanmin(vals) if score == "auroc" else np.nanmax(vals)
            entry[score] = {"mean": float(np.nanmean(vals)), "sd": float(np.nanstd(vals)),
                            "worst": float(worst)}
        out.append(entry)
    return out


def markdown(summary) -> str:
    head = ("| scenario | cells / context | α | target AUROC (worst) | Brier | reliability gap "
            "(worst) | non-targets at P ≥ 0.99 | targets at P ≥ 0.5 | fit (s) |\n"
            "|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    def stat(e, score, digits=3):
        return f"{e[score]['mean']:.{digits}f} ± {e[score]['sd']:.{digits}f}"

    for e in summary:
        def cell(score, e=e):
            return stat(e, score)
        alpha = "—" if e["coarsening"] is None else f"{e['coarsening']:g}"
        lines.append(
            f"| {e['scenario']} | {e['n_cells']} | {alpha} | {cell('auroc')} "
            f"({e['auroc']['worst']:.3f}) | {cell('brier')} | {cell('reliability')} "
            f"({e['reliability']['worst']:.3f}) | {cell('saturated')} | {cell('recall')} | "
            f"{e['seconds']['mean']:.0f} |")
    return "\n".join(lines)


def _alpha(text: str) -> float | None:
    return None if text.lower() == "none" else float(text)


def build_parser() -> argparse.ArgumentParser:
    """This script's arguments (tests/test_docs_blocks.py parses the docs' command lines
    with it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(5)))
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS),
                        choices=list(SCENARIOS))
    parser.add_argument("--cells", type=int, nargs="+", default=[50, 200, 1000],
                        help="cells per training context")
    parser.add_argument("--alphas", type=_alpha, nargs="+", default=[None, 20.0],
                        help="coarsening α values ('none': the plain marginal)")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--learning-rate", type=float, default=1e-2)
    parser.add_argument("--train-perturbations", type=int, default=20)
    parser.add_argument("--known-sources", action="store_true",
                        help="give each fit the true source variables (allowed_edges)")
    parser.add_argument("--quick", action="store_true",
                        help="one seed, the misspecified scenario, 30 cells, 200 steps, 6 "
                             "perturbations (smoke run)")
    parser.add_argument("--out", default="misspecified_targets")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.cells, args.steps, args.train_perturbations = [0], [30], 200, 6
        args.scenarios = ["misspecified"]
    rows = []
    for seed in args.seeds:
        for scenario in args.scenarios:
            for n_cells in args.cells:
                new = run_one(seed, scenario, n_cells, args.alphas, steps=args.steps,
                              learning_rate=args.learning_rate, n_train=args.train_perturbations,
                              known_sources=args.known_sources)
                for row in new:
                    print({k: round(v, 3) if isinstance(v, float) else v
                           for k, v in row.items()}, flush=True)
                rows += new
    summary = summarise(rows)
    table = markdown(summary)
    write_record(args.out, "misspecified_targets",
                 "python benchmarks/misspecified_targets.py " + " ".join(argv or []),
                 "Target inference under misspecification", table, seeds=args.seeds,
                 steps=args.steps, learning_rate=args.learning_rate,
                 known_sources=args.known_sources, rows=rows,
                 summary=summary)
    print(table)
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
