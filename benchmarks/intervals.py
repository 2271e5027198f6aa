"""Intervals for the mean cell of a new perturbation or a new dose: do they cover the true
means at their nominal rate on the synthetic benchmark?

Per seed: the default GIM (`pooled` training perturbations, Adam 1e-3, `--steps`) on
`synthetic_hill(seed).train`; `gim_ppl.cross_fit` with `--folds` refits (each without a fold
of drugs and one dose of every other drug); and the same GIM with an `AutoNormal` guide.
90 % intervals of each test (context, variable) mean cell, by rule:
- `model`: the 5 %–95 % quantiles of `GIM.context_mean_draws` at the MAP (targets drawn
  once per context: the uncertainty over the targets only);
- `calibrated`: `gim_ppl.mean_intervals`, `center ± z·√(var + τ²)` with τ² per variable
  and kind from the cross-fits (the package's rule);
- `posterior`: the quantiles of `context_mean_draws` over AutoNormal draws (parameters and
  targets uncertain);
- `posterior_calibrated`: the AutoNormal draws' center and variance plus the same τ²
  (counts the parameters' uncertainty twice: τ² comes from MAP refits).
Coverage is of the true interventional means (5 000 true cells per test context), over all
(context, variable) pairs and over the pairs whose variable the perturbation targets; the
Brier score of π for the new drugs beside `oracle_features` (the true feature → target map).

    python benchmarks/intervals.py --seeds 0 1 2 3 4 5 6 7 8 9 --out benchmarks/results/intervals
    python benchmarks/intervals.py --quick --out /tmp/intervals      # smoke run
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings

import jax
import numpy as np
import optax
from numpyro.infer.autoguide import AutoNormal
from scipy import stats

import gim_ppl
from gim_ppl.cli.machine import write_record
from gim_ppl.evaluation import baselines, metrics

LEVEL = 0.9
SPLITS = {"full_ood": "new_perturbation", "partial_ood": "new_dose"}
RULES = ("model", "calibrated", "posterior", "posterior_calibrated")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30_000)
    parser.add_argument("--draws", type=int, default=400,
                        help="draws per context for the intervals")
    parser.add_argument("--quick", action="store_true",
                        help="seed 0, 300 steps, 2 folds, 50 draws (smoke run)")
    parser.add_argument("--out", default="intervals")
    return parser


def make_model(data):
    return gim_ppl.GIM(data.n_vars, data.n_features, pooled=data)


def coverage(low, high, truth, targeted) -> dict:
    inside = (truth >= low) & (truth <= high)
    return {"coverage": float(inside.mean()), "coverage_targeted": float(inside[targeted].mean()),
            "width": float((high - low).mean())}


def run_seed(seed: int, folds: int, steps: int, n_draws: int) -> dict:
    bench = gim_ppl.datasets.synthetic_hill(seed)
    train = bench.train
    key = jax.random.key(seed)
    adam = optax.adam(1e-3)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = make_model(train)
        sites = gim_ppl.fit(model, train, steps=steps, key=key, optimizer=adam,
                            progress=False).sites
        calibration = gim_ppl.cross_fit(make_model, train, steps=steps, key=key, folds=folds,
                                        optimizer=adam, n_draws=n_draws)
        guide = AutoNormal(model, init_loc_fn=gim_ppl.init_from_data(train))
        draws = gim_ppl.fit(model, train, steps=steps, key=key, optimizer=adam, guide=guide,
                            progress=False).posterior_draws(jax.random.fold_in(key, 1), n_draws)
    row: dict = {"seed": seed, "seconds": round(time.perf_counter() - start, 1),
                 "tau2": {k: None if v is None else v.tolist()
                          for k, v in calibration.tau2.items()}}
    z = stats.norm.ppf(0.5 + LEVEL / 2)
    for i, (split, kind) in enumerate(SPLITS.items()):
        contexts = bench.split(split)
        truth = np.asarray(bench.sample(split, jax.random.key(1000 + i), 5000).context_means())
        targeted = np.asarray(bench.truth.targets[split]) > 0
        k_test = jax.random.key(100 + i)
        at_map = model.context_mean_draws(sites, contexts, key=k_test, n_draws=n_draws,
                                          observed=train)
        ours = gim_ppl.mean_intervals(model, sites, contexts, calibration, key=k_test,
                                      observed=train, level=LEVEL, n_draws=n_draws)
        assert (ours.kind == kind).all()
        post = model.context_mean_draws(draws, contexts, key=k_test, n_draws=n_draws,
                                        observed=train)
        half = z * np.sqrt(post.var(0) + calibration.tau2[kind])
        bounds = {
            "model": np.quantile(at_map, [(1 - LEVEL) / 2, (1 + LEVEL) / 2], axis=0),
            "calibrated": (ours.low, ours.high),
            "posterior": np.quantile(post, [(1 - LEVEL) / 2, (1 + LEVEL) / 2], axis=0),
            "posterior_calibrated": (post.mean(0) - half, post.mean(0) + half),
        }
        row[f"{split}_mean_error"] = float(np.linalg.norm(ours.center - truth, axis=1).mean())
        for rule, (low, high) in bounds.items():
            for stat, value in coverage(low, high, truth, targeted).items():
                row[f"{split}_{rule}_{stat}"] = value
    truth = np.asarray(bench.truth.targets["full_ood"])
    oracle = baselines.OracleFeatureTargets(bench).fit(train)
    for name, p in (("gim", model.target_probabilities(sites, bench.full_ood)),
                    ("oracle_features", oracle.target_probabilities(bench.full_ood))):
        row[f"brier_{name}"] = metrics.brier_score(truth, p)
    return row


def markdown(rows: list[dict]) -> str:
    """Per split, one row per seed and a mean and worst row: each rule's coverage of all
    pairs / of the targeted pairs; mean width; then the Brier scores of π."""
    lines = []

    def cell(values):
        return " | ".join(f"{a:.3f} / {b:.3f}; {c:.3f}" for a, b, c in values)

    for split in SPLITS:
        lines += [f"**{split}** (90 % intervals: coverage of all / targeted pairs; mean "
                  "width)", "", "| seed | " + " | ".join(RULES) + " |",
                  "|---|" + "---|" * len(RULES)]
        stats_ = [[(r[f"{split}_{rule}_coverage"], r[f"{split}_{rule}_coverage_targeted"],
                    r[f"{split}_{rule}_width"]) for rule in RULES] for r in rows]
        for r, values in zip(rows, stats_, strict=True):
            lines.append(f"| {r['seed']} | {cell(values)} |")
        arr = np.asarray(stats_)  # (seeds, rules, 3)
        lines.append(f"| mean | {cell(arr.mean(0))} |")
        worst = np.stack([arr[:, :, 0].min(0), arr[:, :, 1].min(0), arr[:, :, 2].max(0)], 1)
        lines.append(f"| worst | {cell(worst)} |")
        lines.append("")
    lines += ["| seed | Brier π (GIM) | Brier π (oracle_features) |", "|---|---|---|"]
    lines += [f"| {r['seed']} | {r['brier_gim']:.3f} | {r['brier_oracle_features']:.3f} |"
              for r in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.seeds, args.steps, args.folds, args.draws = [0], 300, 2, 50
    rows = []
    for seed in args.seeds:
        rows.append(run_seed(seed, args.folds, args.steps, args.draws))
        print(json.dumps(rows[-1]), flush=True)
    table = markdown(rows)
    write_record(args.out, "intervals",
                 "python benchmarks/intervals.py " + " ".join(sys.argv[1:] if argv is None
                                                                else argv),
                 "Intervals of the mean cells of new drugs and new doses", table,
                 seeds=args.seeds, folds=args.folds, steps=args.steps, rows=rows)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
