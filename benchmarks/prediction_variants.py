"""Which GIM choices make its predictions beat the simple baselines, seed by seed.

For each seed of `synthetic_hill`, the simple baselines (`gim_ppl.evaluation.baselines`) and
the GIM in several variants are fitted on the training split and scored on new doses of
known drugs (partial OOD: all doses, and the extrapolated lowest and highest) and on new
drugs (full OOD): mean error and energy distance against the observed test cells. Each GIM
variant is scored twice: targets of known drugs from the feature map π(z) (`predict`
without `observed`) and from their training cells (`predict(observed=train)`).

Variants (combine with "+"): `default` (no offsets; the Hill-head priors as `Priors`
gives them), `pooled` (offsets for the training drugs), `shared` (one target vector per
drug in the likelihood), `coarsened` (`coarsening=5`, docs/real_cells.md), `unscaled`
(Hill-head weight priors not divided by √fan-in, the
behaviour before it was the default).

    python benchmarks/prediction_variants.py --variants default pooled --seeds 0 1 2 --out v
    python benchmarks/prediction_variants.py --quick --out /tmp/v      # smoke run (CI)
"""

from __future__ import annotations

import argparse

import jax
import numpy as np
import optax

import gim_ppl
from gim_ppl.cli.machine import write_record
from gim_ppl.core.interventions import FAN_IN_HEADS
from gim_ppl.evaluation import baselines, metrics
from gim_ppl.evaluation.protocol import KNOWN_ONLY, SIMPLE_BASELINES, extrapolated_error

SIMPLE = SIMPLE_BASELINES


def scores(predict, bench, key) -> dict:
    """Mean error and energy distance per split; `predict(contexts, key)` or None."""
    out = {}
    for i, split in enumerate(("partial_ood", "full_ood")):
        observed = bench.split(split)
        pred = predict(observed, jax.random.fold_in(key, i))
        if pred is None:
            continue
        out[f"{split}_mean_error"] = metrics.mean_error(pred, observed)
        out[f"{split}_energy_distance"] = float(metrics.energy_distance(pred, observed))
        if split == "partial_ood":
            out.update(extrapolated_error(pred, observed, bench.train))
    return out


def build(variant: str, train) -> gim_ppl.GIM:
    parts = set(variant.split("+"))
    unknown = parts - {"default", "pooled", "shared", "unscaled", "coarsened"}
    if unknown:
        raise ValueError(f"unknown variant parts {sorted(unknown)}")
    options: dict = {}
    if "pooled" in parts:
        options["pooled"] = train
    if "shared" in parts:
        options["shared_targets"] = True
    if "coarsened" in parts:  # the α that docs/real_cells.md recommends for real cells
        options["coarsening"] = 5.0
    if "unscaled" in parts:  # undo the 1/√fan-in of the Hill heads' weight priors
        p = train.n_features ** 0.5
        priors = gim_ppl.Priors()
        options["priors"] = gim_ppl.Priors(**{
            f"{head}_weight": type(getattr(priors, f"{head}_weight"))(
                0.0, getattr(priors, f"{head}_weight").scale * p) for head in FAN_IN_HEADS})
    return gim_ppl.GIM(train.n_vars, train.n_features, **options)


def run_seed(seed: int, variants, steps: int, learning_rate: float, n_cells: int,
             bench_options: dict) -> list[dict]:
    bench = gim_ppl.datasets.synthetic_hill(seed, **bench_options)
    train, key = bench.train, jax.random.key(100 + seed)
    rows = []
    known = set(baselines.perturbation_labels(train))
    for name, make in SIMPLE.items():
        method = make().fit(train)

        def predict(contexts, k, method=method, name=name):
            if name in KNOWN_ONLY and not set(
                    baselines.perturbation_labels(contexts)) <= known:
                return None
            return method.predict(contexts, key=k, n_cells=n_cells)

        rows.append({"seed": seed, "method": name, **scores(predict, bench, key)})
    for variant in variants:
        model = build(variant, train)
        sites = gim_ppl.fit(model, train, steps=steps, key=jax.random.key(seed),
                            optimizer=optax.adam(learning_rate), progress=False).sites
        pert = ~np.asarray(train.observational)
        post = model.posterior_targets(sites, train)[pert]
        common = {"target_auroc_train": metrics.auroc(bench.truth.targets["train"][pert], post)}
        for targets, observed in (("pi", None), ("posterior", train)):
            def predict(contexts, k, model=model, sites=sites, observed=observed):
                return model.predict(sites, contexts, key=k, n_cells=n_cells,
                                     observed=observed)

            rows.append({"seed": seed, "method": f"gim[{variant}, {targets}]", **common,
                         **scores(predict, bench, key)})
    return rows


KEYS = ("partial_ood_mean_error", "partial_ood_mean_error_extrapolated",
        "partial_ood_energy_distance", "full_ood_mean_error", "full_ood_energy_distance")


def ratios_to_best(rows: list[dict]) -> dict:
    """`{method: {metric: {"mean", "worst", "won", "n"}, "target_auroc_train": mean}}` for
    each GIM row: its value over the best simple baseline of the same seed, per metric
    (benchmarks/readme_numbers.py checks the README's numbers against this)."""
    seeds = sorted({r["seed"] for r in rows})
    best = {(s, k): min(r[k] for r in rows if r["seed"] == s and r["method"] in SIMPLE
                        and k in r) for s in seeds for k in KEYS}
    summary = {}
    for method in dict.fromkeys(r["method"] for r in rows if r["method"] not in SIMPLE):
        mine = {r["seed"]: r for r in rows if r["method"] == method}
        summary[method] = {"target_auroc_train": float(np.mean(
            [r["target_auroc_train"] for r in mine.values()]))}
        for k in KEYS:
            ratio = [mine[s][k] / best[(s, k)] for s in mine]
            summary[method][k] = {"mean": float(np.mean(ratio)), "worst": float(max(ratio)),
                                  "won": sum(x < 1 for x in ratio), "n": len(ratio)}
    return summary


def versus_best(rows: list[dict]) -> str:
    """Markdown: each GIM row over the best simple baseline of its seed, per metric: mean
    ratio, worst seed, seeds won; and mean train target AUROC."""
    lines = ["| method | " + " | ".join(KEYS) + " | train target AUROC |",
             "|---" * (len(KEYS) + 2) + "|"]
    for method, summary in ratios_to_best(rows).items():
        cells = [f"{s['mean']:.3f} (worst {s['worst']:.3f}, won {s['won']}/{s['n']})"
                 for s in (summary[k] for k in KEYS)]
        lines.append(f"| {method} | " + " | ".join(cells)
                     + f" | {summary['target_auroc_train']:.3f} |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """This script's arguments (tests/test_docs_blocks.py parses the docs' command lines
    with it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["default", "pooled"])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--steps", type=int, default=30_000)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--n-cells", type=int, default=500)
    parser.add_argument("--n-train-perturbations", type=int, default=40,
                        help="training drugs (a point of the learning curve; the 20 new "
                             "drugs and the truth do not change with it)")
    parser.add_argument("--quick", action="store_true",
                        help="one seed, one variant, 300 steps at lr 1e-2, 6 new drugs")
    parser.add_argument("--out", default="prediction_variants")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    options: dict = {"n_train_perturbations": args.n_train_perturbations}
    if args.quick:
        args.seeds, args.variants, args.steps, args.learning_rate = [0], ["pooled"], 300, 1e-2
        args.n_cells, options = 100, {**options, "n_test_perturbations": 6}
    rows = [row for seed in args.seeds for row in run_seed(
        seed, args.variants, args.steps, args.learning_rate, args.n_cells, options)]
    table = versus_best(rows)
    write_record(args.out, "prediction_variants",
                 "python benchmarks/prediction_variants.py " + " ".join(argv or []),
                 "GIM variants against the best simple baseline", table, rows=rows)
    print(table)
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
