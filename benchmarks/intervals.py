"""Intervals for the mean cell of a new perturbation, and calibrated target probabilities:
do they cover at their nominal rate on the synthetic benchmark?

Per seed: the default GIM (`pooled` training perturbations, Adam 1e-3, `--steps`) on
`synthetic_hill(seed).train`, and K cross-fits: fold k leaves out its training drugs entirely
(their contexts are scored as new drugs) and one dose of every other drug (scored as new
doses of known drugs; the dose left out cycles over the drug's doses, so interior and edge
doses are both held out). Intervals of each (context, variable) mean cell:
- `model`: the 5 %–95 % quantiles of `GIM.context_mean_draws` (targets drawn once per
  context from π: the uncertainty over a new drug's targets, not over the parameters);
- `conformal`: those intervals widened per variable by the conformal quantile of the
  cross-fits' held-out scores `max(low − y, y − high)` (conformalised quantile regression,
  Romano et al. 2019), separately for new drugs (full OOD) and new doses (partial OOD),
  where `y` is the held-out context's observed mean cell.
Coverage is of the true interventional means (5 000 true cells per test context), over all
(context, variable) pairs and over the pairs whose variable the perturbation targets.

Target probabilities of new drugs: π(z) of the full fit, and π recalibrated by Platt scaling
fitted on the cross-fits' π of their held-out drugs against the full fit's drug-level
posterior P(I = 1 | cells) (labels from the training cells only); Brier scores beside
`oracle_features` (the true feature → target map) and reliability bins.

    python benchmarks/intervals.py --seeds 0 1 2 3 4 5 6 7 8 9 --out benchmarks/results/intervals
    python benchmarks/intervals.py --quick --out /tmp/intervals      # smoke run (CI)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import jax
import numpy as np
import optax
from numpyro.infer.autoguide import AutoNormal

import gim_ppl
from gim_ppl.cli.machine import write_record
from gim_ppl.evaluation import baselines, metrics

LEVEL = 0.9


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30_000)
    parser.add_argument("--draws", type=int, default=400,
                        help="target draws per context for the model intervals")
    parser.add_argument("--quick", action="store_true", help="seed 0, 300 steps (smoke run)")
    parser.add_argument("--out", default="intervals")
    return parser


def fit_gim(data, steps: int, key, n_draws: int | None = None):
    """The benchmark's GIM fitted to `data`: its MAP sites, or with `n_draws` that many
    draws of an `AutoNormal` posterior (started from the data)."""
    model = gim_ppl.GIM(data.n_vars, data.n_features, pooled=data)
    guide = None if n_draws is None else AutoNormal(
        model, init_loc_fn=gim_ppl.init_from_data(data))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = gim_ppl.fit(model, data, steps=steps, key=key, guide=guide,
                             optimizer=optax.adam(1e-3), progress=False)
    if n_draws is None:
        return model, result.sites
    return model, result.posterior_draws(jax.random.fold_in(key, 1), n_draws)


Z = 1.6448536269514722  # the standard normal's 95 % quantile: a central 90 % interval


def summarise_draws(draws: np.ndarray) -> dict:
    """Center, 5 %/95 % quantiles and variance, each `(n_contexts, n_vars)`, of
    `(n_draws, n_contexts, n_vars)` mean-cell draws."""
    low, high = np.quantile(draws, [(1 - LEVEL) / 2, (1 + LEVEL) / 2], axis=0)
    return {"center": draws.mean(0), "low": low, "high": high, "var": draws.var(0)}


def observed_means(data) -> tuple[np.ndarray, np.ndarray]:
    """Each context's observed mean cell and its sampling variance `s² / n`, each
    `(n_contexts, n_vars)`."""
    x, ctx = np.asarray(data.x), np.asarray(data.context)
    n = np.bincount(ctx, minlength=data.n_contexts)[:, None]
    mean = np.stack([x[ctx == c].mean(0) for c in range(data.n_contexts)])
    var = np.stack([x[ctx == c].var(0, ddof=1) for c in range(data.n_contexts)])
    return mean, var / n


def conformal_margin(scores: np.ndarray) -> np.ndarray:
    """Per variable, the ⌈(n + 1)·LEVEL⌉-th smallest of `scores (n_pairs, n_vars)`."""
    n = scores.shape[0]
    rank = min(int(np.ceil((n + 1) * LEVEL)), n) - 1
    return np.sort(scores, axis=0)[rank]


def intervals(test: dict, calib: dict, posterior: dict) -> dict:
    """Each method's `(low, high)` for the test contexts, from their draws' summary `test`
    and the held-out contexts' `calib` (summary plus `y`, the observed means, and `se2`,
    their sampling variances):
    - `model`: the draws' quantiles;
    - `conformal`: CQR, widened per variable by the conformal quantile of
      `max(low − y, y − high)` (conservative: `y` carries its sampling noise);
    - `variance`: `center ± z·√(var + τ²)`, τ² per variable the held-out squared error
      left after the draws' variance and the sampling variance of `y`
      (`mean(r² − var − s²/n)`, at least 0);
    - `posterior`: the quantiles of the draws of `posterior` (the same contexts' summary
      under AutoNormal draws: parameters and targets uncertain);
    - `posterior_variance`: `center ± z·√(var + τ²)` with `posterior`'s center and var."""
    margin = conformal_margin(np.maximum(calib["low"] - calib["y"], calib["y"] - calib["high"]))
    r2 = (calib["y"] - calib["center"]) ** 2
    tau2 = np.maximum((r2 - calib["var"] - calib["se2"]).mean(0), 0.0)
    half = Z * np.sqrt(test["var"] + tau2)
    post_half = Z * np.sqrt(posterior["var"] + tau2)
    return {"model": (test["low"], test["high"]),
            "conformal": (test["low"] - margin, test["high"] + margin),
            "variance": (test["center"] - half, test["center"] + half),
            "posterior": (posterior["low"], posterior["high"]),
            "posterior_variance": (posterior["center"] - post_half,
                                   posterior["center"] + post_half)}


def platt(logit_p: np.ndarray, labels: np.ndarray, steps: int = 2000) -> tuple[float, float]:
    """`(a, b)` minimising the cross-entropy of `sigmoid(a·logit_p + b)` against soft `labels`
    (Newton steps on a 2-parameter convex problem)."""
    a, b = 1.0, 0.0
    x = np.stack([logit_p, np.ones_like(logit_p)], 1)
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(a * logit_p + b)))
        grad = x.T @ (p - labels)
        hess = (x * (p * (1 - p))[:, None]).T @ x + 1e-9 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        a, b = a - step[0], b - step[1]
        if np.abs(step).max() < 1e-10:
            break
    return float(a), float(b)


def logit(p):
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p) - np.log1p(-p)


def coverage(low, high, truth, targeted) -> dict:
    inside = (truth >= low) & (truth <= high)
    return {"coverage": float(inside.mean()), "coverage_targeted": float(inside[targeted].mean()),
            "width": float((high - low).mean())}


def run_seed(seed: int, folds: int, steps: int, n_draws: int) -> tuple[dict, dict]:
    """One seed's row and its raw arrays (summaries of held-out and test draws)."""
    bench = gim_ppl.datasets.synthetic_hill(seed)
    train = bench.train
    key = jax.random.key(seed)
    obs = np.asarray(train.observational)
    pert = np.asarray(train.perturbation)
    dose = np.asarray(train.dose)
    doses = np.unique(dose[~obs])
    drugs = np.unique(pert[~obs])
    rng = np.random.default_rng(seed)
    parts = np.array_split(rng.permutation(drugs), folds)
    start = time.perf_counter()
    model, sites = fit_gim(train, steps, jax.random.fold_in(key, 0))
    _, draws = fit_gim(train, steps, jax.random.fold_in(key, 0), n_draws=n_draws)
    row: dict = {"seed": seed}
    raw: dict = {}

    # cross-fits: held-out contexts of both kinds, π of held-out drugs
    calib = {"full_ood": [], "partial_ood": []}
    held_pi, held_rows = [], []
    for k, part in enumerate(parts):
        out_drug = np.isin(pert, part) & ~obs
        dose_rank = np.searchsorted(doses, dose)
        drug_rank = np.searchsorted(drugs, pert)
        out_dose = ~obs & ~out_drug & ((drug_rank + k) % len(doses) == dose_rank)
        fit_data = train.subset(~out_drug & ~out_dose)
        model_k, sites_k = fit_gim(fit_data, steps, jax.random.fold_in(key, k + 1))
        for kind, mask, observed in (("full_ood", out_drug, None),
                                     ("partial_ood", out_dose, fit_data)):
            held = train.subset(mask)
            summary = summarise_draws(model_k.context_mean_draws(
                sites_k, held, key=jax.random.key(k), n_draws=n_draws, observed=observed))
            summary["y"], summary["se2"] = observed_means(held)
            calib[kind].append(summary)
        held_pi.append(model_k.target_probabilities(sites_k, train.subset(out_drug)))
        held_rows.append(np.flatnonzero(out_drug))
    row["seconds"] = round(time.perf_counter() - start, 1)

    for i, split in enumerate(("partial_ood", "full_ood")):
        contexts = bench.split(split)
        test = summarise_draws(model.context_mean_draws(
            sites, contexts, key=jax.random.key(100 + i), n_draws=n_draws, observed=train))
        test["truth"] = np.asarray(
            bench.sample(split, jax.random.key(1000 + i), 5000).context_means())
        test["targeted"] = np.asarray(bench.truth.targets[split]) > 0
        posterior = summarise_draws(model.context_mean_draws(
            draws, contexts, key=jax.random.key(200 + i), n_draws=n_draws, observed=train))
        held = {f: np.concatenate([c[f] for c in calib[split]]) for f in calib[split][0]}
        raw.update({f"{split}_test_{f}": v for f, v in test.items()})
        raw.update({f"{split}_posterior_{f}": v for f, v in posterior.items()})
        raw.update({f"{split}_calib_{f}": v for f, v in held.items()})
        row.update(score_intervals(split, test, held, posterior))

    # target probabilities of new drugs: raw and Platt-recalibrated
    labels = model.posterior_targets(sites, train, per="perturbation")
    rows = np.concatenate(held_rows)
    a, b = platt(logit(np.concatenate(held_pi)).ravel(), np.asarray(labels)[rows].ravel())
    truth = np.asarray(bench.truth.targets["full_ood"])
    pi = model.target_probabilities(sites, bench.full_ood)
    recal = 1 / (1 + np.exp(-(a * logit(pi) + b)))
    oracle = baselines.OracleFeatureTargets(bench).fit(train).target_probabilities(bench.full_ood)
    row["platt"] = [a, b]
    for name, p in (("raw", pi), ("platt", recal), ("oracle_features", oracle)):
        row[f"brier_{name}"] = metrics.brier_score(truth, p)
        row[f"auroc_{name}"] = metrics.auroc(truth, p)
        flat_p, flat_y = np.ravel(p), np.ravel(truth).astype(float)
        bins = np.minimum((flat_p * 10).astype(int), 9)
        row[f"bins_{name}"] = {"count": np.bincount(bins, minlength=10).tolist(),
                               "sum_p": np.bincount(bins, flat_p, 10).tolist(),
                               "sum_y": np.bincount(bins, flat_y, 10).tolist()}
    return row, raw


def score_intervals(split: str, test: dict, calib: dict, posterior: dict) -> dict:
    """Coverage of the true means, on the targeted pairs, and mean width, per method."""
    out = {f"{split}_mean_error": float(np.linalg.norm(test["center"] - test["truth"],
                                                       axis=1).mean())}
    for name, (lo, hi) in intervals(test, calib, posterior).items():
        for stat, value in coverage(lo, hi, test["truth"], test["targeted"]).items():
            out[f"{split}_{name}_{stat}"] = value
    return out


RULES = ("model", "conformal", "variance", "posterior", "posterior_variance")


def markdown(rows: list[dict]) -> str:
    """Per split, one row per seed and a mean and worst row: each rule's coverage of all
    pairs / of the targeted pairs / mean width; then the Brier scores of π."""
    lines = []
    for split in ("full_ood", "partial_ood"):
        lines += [f"**{split}** (90 % intervals: coverage, all / targeted; mean width)", "",
                  "| seed | " + " | ".join(RULES) + " |", "|---|" + "---|" * len(RULES)]

        def cell(values):
            return " | ".join(f"{a:.3f} / {b:.3f}; {c:.3f}" for a, b, c in values)

        stats = [[(r[f"{split}_{rule}_coverage"], r[f"{split}_{rule}_coverage_targeted"],
                   r[f"{split}_{rule}_width"]) for rule in RULES] for r in rows]
        for r, values in zip(rows, stats, strict=True):
            lines.append(f"| {r['seed']} | {cell(values)} |")
        arr = np.asarray(stats)  # (seeds, rules, 3)
        lines.append(f"| mean | {cell(arr.mean(0))} |")
        worst = np.stack([arr[:, :, 0].min(0), arr[:, :, 1].min(0), arr[:, :, 2].max(0)], 1)
        lines.append(f"| worst | {cell(worst)} |")
        lines.append("")
    lines += ["| seed | Brier π | Brier π (Platt) | Brier oracle_features |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['seed']} | {r['brier_raw']:.3f} | {r['brier_platt']:.3f} | "
                     f"{r['brier_oracle_features']:.3f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.seeds, args.steps, args.draws = [0], 300, 50
    rows = []
    raw_dir = Path(args.out) / "raw"
    raw_dir.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        row, raw = run_seed(seed, args.folds, args.steps, args.draws)
        np.savez_compressed(raw_dir / f"seed{seed}.npz", **raw)
        rows.append(row)
        print(json.dumps({k: v for k, v in rows[-1].items() if not k.startswith("bins")}),
              flush=True)
    table = markdown(rows)
    write_record(args.out, "intervals",
                 "python benchmarks/intervals.py " + " ".join(sys.argv[1:] if argv is None
                                                                else argv),
                 "Intervals and target probabilities for new perturbations", table,
                 seeds=args.seeds, folds=args.folds, steps=args.steps, rows=rows)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
