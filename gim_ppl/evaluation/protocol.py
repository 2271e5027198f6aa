"""The synthetic benchmark protocol (DESIGN.md §5): every method on the same data, several
seeds, distribution distances on partial- and full-OOD contexts, cell-eval's MAE,
discrimination score and DE overlap (`CELL_EVAL`), target and graph recovery, fit time;
results as JSON and a Markdown table.

Used by `gim-ppl bench protocol`; callable from Python as `run_benchmark(...)`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np

from gim_ppl.datasets import synthetic_hill
from gim_ppl.evaluation import baselines, metrics, report
from gim_ppl.evaluation.methods import (
    CellPredictor,
    EdgeScorer,
    FittedTargetScorer,
    GIMMethod,
    TargetScorer,
)
from gim_ppl.model import GIM, posterior_mean

#: The simple baselines (DESIGN.md §5): a GIM result is claimed as a win only where it
#: beats the best of them; `dose_interpolation` predicts known perturbations only.
SIMPLE_BASELINES = {
    "mean_shift": lambda: baselines.MeanShift(),
    "mean_shift_dose": lambda: baselines.MeanShift(dose_matched=True),
    "ridge": lambda: baselines.Ridge(),
    "nearest_neighbour": lambda: baselines.NearestNeighbour(),
    "dose_interpolation": lambda: baselines.DoseInterpolation(),
}
KNOWN_ONLY = ("dose_interpolation",)
#: The pseudo-method of each seed's summary: per metric, the best simple baseline's value.
BEST_SIMPLE = "best_simple_baseline"
METHODS = ("oracle", "oracle_features", "observational", *SIMPLE_BASELINES, "unstructured",
           "causal_two_stage", "gim_exact", "gim_relaxed_mc")
DISTANCES = ("wasserstein", "mmd", "energy_distance", "mean_error")
SPLITS = ("partial_ood", "full_ood")
#: R² of the mean change is also reported over the k most changed variables per context
#: (chemCPA scores its top differentially expressed genes the same way).
R2_TOP_K = 5
#: cell-eval's metrics (the Virtual Cell Challenge's MAE, PDS and DES; `metrics`), reported
#: per split as `{split}_{name}`; the DE genes are ranked by `metrics.mean_change`, as the
#: synthetic cells are not log1p counts.
CELL_EVAL = ("mae", "discrimination", "de_overlap")
#: Metric names whose larger values are better (the others are distances and errors).
HIGHER_IS_BETTER = ("_r2", "_discrimination", "_de_overlap")


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """What `run_benchmark` runs: the GIMs and the two-stage baseline are fitted with
    `optax.adam(learning_rate)` for `steps` steps; `bench_options` go to `synthetic_hill`."""

    seeds: tuple = (0, 1, 2, 3, 4)
    n_vars: int = 10
    mechanism: str = "linear"
    graph: str = "er"
    steps: int = 30_000
    learning_rate: float = 1e-3
    n_pred_cells: int = 500
    methods: tuple = METHODS
    bench_options: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def quick(cls, **overrides) -> BenchConfig:
        """A small setting that runs every method in a few minutes on 2 CPU cores (for CI):
        one seed, 4000 steps at lr 1e-2, fewer test contexts and cells. d stays 10: with ~2
        targets per perturbation, smaller d makes interventions so dense that short fits
        mistake children of targets for targets."""
        base = dict(
            seeds=(0,), steps=4000, learning_rate=1e-2, n_pred_cells=100,
            bench_options=dict(n_test_perturbations=8, partial_ood_doses=(0.75, 1.75),
                               n_test_cells=50),
        )
        base.update(overrides)
        return cls(**base)


class MethodSpec(NamedTuple):
    """A registry entry: `make(bench, config)` builds the unfitted `methods.CellPredictor`;
    `known_only`: it predicts known perturbations only (no full-OOD scores); `per_step`: its
    fit is `config.steps` optimiser steps, so the row reports seconds per step."""

    make: Callable[..., CellPredictor]
    known_only: bool = False
    per_step: bool = False


def _simple(make) -> Callable:
    return lambda bench, config: make()


def _gim(marginal: str) -> Callable:
    return lambda bench, config: GIMMethod(
        steps=config.steps, learning_rate=config.learning_rate, pooled=True,
        mechanism=config.mechanism, marginal=marginal)


#: The protocol's methods, name → `MethodSpec`; the order is `METHODS`' (a method's PRNG key
#: is folded from its index there, so entries are appended, never reordered).
REGISTRY: dict[str, MethodSpec] = {
    "oracle": MethodSpec(lambda bench, config: baselines.Oracle(bench)),
    "oracle_features": MethodSpec(lambda bench, config: baselines.OracleFeatureTargets(bench)),
    "observational": MethodSpec(lambda bench, config: baselines.Observational()),
    **{name: MethodSpec(_simple(make), known_only=name in KNOWN_ONLY)
       for name, make in SIMPLE_BASELINES.items()},
    "unstructured": MethodSpec(lambda bench, config: baselines.Unstructured()),
    "causal_two_stage": MethodSpec(
        lambda bench, config: baselines.CausalTwoStage(
            steps=config.steps, learning_rate=config.learning_rate,
            mechanism=config.mechanism), per_step=True),
    "gim_exact": MethodSpec(_gim("exact"), per_step=True),
    "gim_relaxed_mc": MethodSpec(_gim("relaxed_mc"), per_step=True),
}
assert tuple(REGISTRY) == METHODS, "REGISTRY must list METHODS in their order"


def evaluate_gim(model: GIM, sites, bench, *, key, n_cells: int = 500) -> dict:
    """Target recovery and per-context mean errors of a fitted GIM on a synthetic benchmark.

    Args:
        model: the fitted `GIM`.
        sites: its sample sites, one point or draws (read-offs are averaged over draws).
        bench: a `synthetic_hill` benchmark.
        key: PRNG key of the predicted cells.
        n_cells: predicted cells per test context.

    Returns:
        `{target_auroc_train_posterior, target_auroc_train_prior, target_auroc_full_ood,
        mean_error_{split}, mean_error_{split}_control, mean_error_{split}_best_simple,
        best_simple_{split}}` for both OOD splits (the best simple baseline by name).
    """
    train = bench.train
    pert = ~np.asarray(train.observational)
    truth_train = bench.truth.targets["train"][pert]
    out = {
        "target_auroc_train_posterior": metrics.auroc(
            truth_train,
            posterior_mean(model, sites, model.posterior_targets(sites, train))[pert]),
        "target_auroc_train_prior": metrics.auroc(
            truth_train,
            posterior_mean(model, sites, model.target_probabilities(sites, train))[pert]),
        "target_auroc_full_ood": metrics.auroc(
            bench.truth.targets["full_ood"],
            posterior_mean(model, sites, model.target_probabilities(sites, bench.full_ood))),
    }
    control = baselines.Observational().fit(train)
    simple = {name: make().fit(train) for name, make in SIMPLE_BASELINES.items()}
    for i, split in enumerate(("partial_ood", "full_ood")):
        data = bench.split(split)
        k1, k2 = jax.random.split(jax.random.fold_in(key, i))
        pred = model.predict(sites, data, key=k1, n_cells=n_cells, observed=train)
        out[f"mean_error_{split}"] = metrics.mean_error(pred, data)
        out[f"mean_error_{split}_control"] = metrics.mean_error(
            control.predict(data, key=k2, n_cells=n_cells), data)
        errors = {name: metrics.mean_error(method.predict(data, key=k2, n_cells=n_cells), data)
                  for name, method in simple.items()
                  if split == "partial_ood" or name not in KNOWN_ONLY}
        best = min(errors, key=errors.get)
        out[f"mean_error_{split}_best_simple"] = errors[best]
        out[f"best_simple_{split}"] = best
    return out


def recovery_scores(method, bench) -> dict:
    """Target and graph recovery of a fitted method, from what it offers (`methods`): its
    fitted contexts' target scores on the training perturbations, its unseen contexts'
    target scores on the full-OOD split, its graph and edge scores against the true graph."""
    out: dict = {}
    if isinstance(method, FittedTargetScorer):
        pert = ~np.asarray(bench.train.observational)
        truth = bench.truth.targets["train"][pert]
        post = np.asarray(method.fitted_target_scores())[pert]
        out["target_auroc_train"] = metrics.auroc(truth, post)
        out["target_ap_train"] = metrics.average_precision(truth, post)
    if isinstance(method, TargetScorer):
        truth, probs = bench.truth.targets["full_ood"], method.target_scores(bench.full_ood)
        out["target_auroc_full_ood"] = metrics.auroc(truth, probs)
        out["target_ap_full_ood"] = metrics.average_precision(truth, probs)
        out["target_brier_full_ood"] = metrics.brier_score(truth, probs)
    if isinstance(method, EdgeScorer):
        true = bench.truth.adjacency
        off = ~np.eye(true.shape[0], dtype=bool)
        out["graph_shd"] = float(metrics.shd(true, method.graph()))
        out["graph_auprc"] = metrics.average_precision(true[off], method.edge_scores()[off])
    return out


def run_one(name: str, bench, config: BenchConfig, *, key, progress: bool = False) -> dict:
    """Fit method `name` of `REGISTRY` on `bench.train`, score it on both test splits."""
    spec = REGISTRY[name]
    method = spec.make(bench, config)
    k_fit, k_pred = jax.random.split(key)
    start = time.perf_counter()
    method.fit(bench.train, key=k_fit, progress=progress)
    seconds = time.perf_counter() - start
    row: dict = {"fit_seconds": seconds}
    control_mean = bench.train.control_cells().mean(0)
    if spec.per_step:
        row["seconds_per_step"] = seconds / config.steps
    for i, split in enumerate(SPLITS):
        if split == "full_ood" and spec.known_only:
            continue
        observed = bench.split(split)
        pred = method.predict(observed, key=jax.random.fold_in(k_pred, i),
                              n_cells=config.n_pred_cells)
        for dist_name in DISTANCES:
            row[f"{split}_{dist_name}"] = getattr(metrics, dist_name)(pred, observed)
        if split == "partial_ood":
            row.update(extrapolated_error(pred, observed, bench.train))
        row.update(_r2_scores(split, pred, observed, control_mean))
        row.update(cell_eval_scores(split, pred, observed, bench.train.control_cells()))
    row.update(recovery_scores(method, bench))
    return row


def extrapolated_error(pred, observed, train) -> dict:
    """Mean error over the contexts whose dose lies outside the training doses' range
    (where interpolating a drug's measured doses must clamp and a dose-response curve can
    extrapolate); empty when there are none."""
    pert = ~np.asarray(train.observational)
    lo, hi = np.asarray(train.dose)[pert].min(), np.asarray(train.dose)[pert].max()
    dose = np.asarray(observed.dose)
    outside = ~np.asarray(observed.observational) & ((dose < lo) | (dose > hi))
    if not outside.any():
        return {}
    err = metrics.mean_error(pred, observed, per_context=True)
    return {"partial_ood_mean_error_extrapolated": float(err[outside].mean())}


def _r2_scores(split: str, pred, observed, control_mean) -> dict:
    """R² of the predicted mean change from the training controls' `control_mean (n_vars,)`,
    over all variables and the top k."""
    k = min(R2_TOP_K, observed.n_vars)
    return {f"{split}_r2": metrics.r2_mean_change(pred, observed, control_mean),
            f"{split}_r2_top{k}": metrics.r2_mean_change(pred, observed, control_mean,
                                                         top_k=k)}


def cell_eval_scores(split: str, pred, observed, control_cells) -> dict:
    """cell-eval's MAE, discrimination score and DE overlap (against the training controls'
    `control_cells (n_control_cells, n_vars)`), as `{split}_{name}` for `CELL_EVAL`."""
    return {
        f"{split}_mae": metrics.mean_absolute_error(pred, observed),
        f"{split}_discrimination": metrics.discrimination_score(pred, observed),
        f"{split}_de_overlap": metrics.de_overlap(pred, observed, control_cells,
                                                  effect=metrics.mean_change),
    }


def higher_is_better(key: str) -> bool:
    """Whether metric `key` improves upwards (R², discrimination, DE overlap)."""
    return any(tag in key for tag in HIGHER_IS_BETTER)


def best_simple_rows(rows: Sequence[dict]) -> list[dict]:
    """Per seed, a `BEST_SIMPLE` row: for each prediction metric, the best value among the
    simple baselines run on that seed (lowest distance, highest R², discrimination and DE
    overlap; possibly a different baseline per metric and split — the bar a model must clear
    everywhere)."""
    out = []
    for seed in dict.fromkeys(r["seed"] for r in rows):
        simple = [r for r in rows if r["seed"] == seed and r["method"] in SIMPLE_BASELINES]
        if not simple:
            continue
        best: dict = {"method": BEST_SIMPLE, "seed": seed}
        for key in dict.fromkeys(k for r in simple for k in r):
            if not key.startswith(SPLITS):
                continue
            values = [r[key] for r in simple if key in r]
            up = higher_is_better(key)
            best[key] = max(values) if up else min(values)
            pick = int(np.argmax(values) if up else np.argmin(values))
            best[f"{key}_by"] = [r["method"] for r in simple if key in r][pick]
        out.append(best)
    return out


def summarise(rows: Sequence[dict]) -> dict:
    """`{method: {metric: {"mean", "sd", "n"}}}` over seeds (sd with ddof 1; 0 for one seed)."""
    return report.summarise(rows, by="method", ignore=("seed",), ddof=1)


def run_benchmark(config: BenchConfig, *, progress: bool = False, log=print) -> dict:
    """Every method of `config.methods` on every seed; returns the JSON-ready results."""
    unknown = [m for m in config.methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {METHODS}")
    rows = []
    for seed in config.seeds:
        bench = synthetic_hill(seed, n_vars=config.n_vars, mechanism=config.mechanism,
                               graph=config.graph, **config.bench_options)
        for name in config.methods:
            # the key depends on the method's name, not its position in `methods`, so a
            # subset run (`--methods gim_exact`) reproduces the rows of the full run
            key = jax.random.fold_in(jax.random.key(seed), METHODS.index(name))
            row = run_one(name, bench, config, key=key, progress=progress)
            rows.append({"method": name, "seed": seed, **row})
            log(f"seed {seed} {name}: fit {row['fit_seconds']:.1f}s, partial-OOD mean error "
                f"{row['partial_ood_mean_error']:.3f}, full-OOD mean error "
                f"{row.get('full_ood_mean_error', float('nan')):.3f}")
    rows += best_simple_rows(rows)
    return {"config": dataclasses.asdict(config), "rows": rows, "summary": summarise(rows)}


COLUMNS = (
    ("partial_ood_wasserstein", "partial W2"), ("partial_ood_mmd", "partial MMD²"),
    ("partial_ood_mean_error", "partial mean err"),
    ("partial_ood_mean_error_extrapolated", "partial mean err, extrapolated doses"),
    ("partial_ood_energy_distance", "partial E-distance"), ("partial_ood_mae", "partial MAE"),
    ("partial_ood_discrimination", "partial PDS"), ("partial_ood_de_overlap", "partial DES"),
    ("full_ood_wasserstein", "full W2"),
    ("full_ood_mmd", "full MMD²"), ("full_ood_mean_error", "full mean err"),
    ("full_ood_energy_distance", "full E-distance"), ("full_ood_r2", "full R²"),
    (f"full_ood_r2_top{R2_TOP_K}", f"full R² top {R2_TOP_K}"), ("full_ood_mae", "full MAE"),
    ("full_ood_discrimination", "full PDS"), ("full_ood_de_overlap", "full DES"),
    ("target_auroc_train", "target AUROC train"), ("target_auroc_full_ood", "target AUROC unseen"),
    ("target_ap_full_ood", "target AP unseen"), ("target_brier_full_ood", "target Brier unseen"),
    ("graph_shd", "SHD"),
    ("graph_auprc", "graph AUPRC"), ("fit_seconds", "fit s"),
    ("seconds_per_step", "ms/step"),
)


def _column_cell(key: str, stat) -> str:
    """A summary cell: ms per step, 1 digit for seconds and SHD, 4 for MMD², else 3."""
    digits = 1 if key in ("fit_seconds", "graph_shd", "seconds_per_step") else 3
    if key in ("partial_ood_mmd", "full_ood_mmd"):
        digits = 4
    return report.format_stat(stat, digits, scale=1000.0 if key == "seconds_per_step" else 1.0)


def markdown_table(summary: dict) -> str:
    """Methods × metrics, `mean ± sd` (the mean alone from one seed, which has no sd); '—'
    where a metric does not apply."""
    return report.summary_table(summary, COLUMNS, cell=_column_cell)


#: The prediction metrics the GIM is held to against the best simple baseline.
VERSUS_METRICS = ("partial_ood_mean_error", "partial_ood_mean_error_extrapolated",
                  "partial_ood_energy_distance", "full_ood_mean_error",
                  "full_ood_energy_distance")


def versus_best_simple(rows: Sequence[dict], method: str) -> dict:
    """`{metric: {"ratio_mean", "ratio_worst", "wins", "n"}}`: `method`'s value over the best
    simple baseline's, per seed (below 1: the method wins), for each of `VERSUS_METRICS`."""
    best = {r["seed"]: r for r in rows if r["method"] == BEST_SIMPLE}
    mine = {r["seed"]: r for r in rows if r["method"] == method}
    out = {}
    for key in VERSUS_METRICS:
        ratios = [mine[s][key] / best[s][key] for s in mine
                  if s in best and key in mine[s] and key in best[s]]
        if ratios:
            out[key] = {"ratio_mean": float(np.mean(ratios)), "ratio_worst": float(max(ratios)),
                        "wins": int(sum(r < 1.0 for r in ratios)), "n": len(ratios)}
    return out


def versus_markdown(rows: Sequence[dict]) -> str:
    """A table of every GIM against the best simple baseline (empty without both)."""
    gims = [m for m in dict.fromkeys(r["method"] for r in rows) if m.startswith("gim_")]
    if not gims or not any(r["method"] == BEST_SIMPLE for r in rows):
        return ""
    lines = ["| method | metric | ratio to best simple baseline, mean | worst seed | seeds "
             "won |", "|---|---|---|---|---|"]
    for method in gims:
        for key, v in versus_best_simple(rows, method).items():
            lines.append(f"| {method} | {key} | {v['ratio_mean']:.3f} | {v['ratio_worst']:.3f} "
                         f"| {v['wins']}/{v['n']} |")
    return "\n".join(lines)


def results_markdown(results: dict, *, provenance: dict) -> str:
    """`results.md`: the setting, the provenance line, the summary table and the GIM against
    the best simple baseline."""
    cfg = results["config"]
    md = (f"# gim_ppl benchmark\n\nsynthetic_hill: d = {cfg['n_vars']}, {cfg['mechanism']} "
          f"mechanisms, {cfg['graph']} graph, seeds {list(cfg['seeds'])}; {cfg['steps']} Adam "
          f"steps at lr {cfg['learning_rate']}; {cfg['n_pred_cells']} predicted cells per "
          f"context.\n{report.provenance_line(provenance)}\n\n"
          f"{markdown_table(results['summary'])}\n")
    versus = versus_markdown(results["rows"])
    if versus:
        md += ("\nThe GIM against the best simple baseline of each seed (value / best; below 1 "
               f"the GIM wins):\n\n{versus}\n")
    return md


def write_results(results: dict, out_dir, *, provenance: dict) -> tuple[Path, Path]:
    """Write `results.json` (with `provenance`: command, commit, machine) and `results.md`
    into `out_dir` (created)."""
    return report.write_report(out_dir, "results", results,
                               results_markdown(results, provenance=provenance),
                               provenance=provenance)
