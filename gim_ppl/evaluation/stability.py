"""Stability benchmark (`gim-ppl bench stability`): does a fit give the same answer from
any PRNG key, and is the plain `svi.run` path as good as `fit`?

Every (method, seed, key) is one job: a fit of the default GIM on `synthetic_hill(seed)`
with that key, scored by `evaluate_gim` (training-target AUROC from the posterior, unseen-
perturbation AUROC from π(z), full- and partial-OOD mean errors) beside the trivial raw
mean-shift detector (|context mean − control mean| / control sd, the reference a GIM must
beat) and the `oracle_features` reference (true SCM and Hill curves, targets of new
perturbations from logistic regressions on the features: what the goals compare unseen-
perturbation AUROC and full-OOD error with). Methods: `fit` (defaults), `fit_restarts`
(`restarts=R`, held-out selection), `plain` (the README's path: AutoDelta started by
`init_from_data`, Adam 1e-3, one `SVI.run` of half the steps without the acyclicity and
sparsity factors, then one with them from its state) and `plain_median` (one `SVI.run`
with NumPyro's default start, `init_to_median`, and the factors throughout: what a user
gets without either).
Jobs run in a process pool, one CPU thread each, so a machine with many cores runs them
side by side.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from gim_ppl.evaluation import report

METHODS = ("fit", "fit_restarts", "plain", "plain_median")


@dataclasses.dataclass(frozen=True)
class StabilityConfig:
    """What `run_stability` fits: methods × seeds × keys, `steps` each."""

    methods: tuple = ("fit", "plain")
    seeds: tuple = tuple(range(10))
    keys: tuple = (0, 1, 2)
    steps: int = 30_000
    restarts: int = 4
    workers: int = 1


def mean_shift_scores(data) -> np.ndarray:
    """`(n_contexts, n_vars)` |mean of a context − mean of the controls| / sd of the controls:
    the trivial target detector (0 for observational contexts)."""
    control = data.control_cells()
    scores = np.abs(data.context_means() - control.mean(0)) / np.maximum(control.std(0), 1e-12)
    return np.where(np.asarray(data.observational)[:, None], 0.0, scores)


def stability_job(method: str, seed: int, key: int, steps: int, restarts: int = 4) -> dict:
    """Fit one (method, seed, key) and score it (see the module docstring)."""
    import jax
    import optax
    from numpyro.infer import SVI, Trace_ELBO
    from numpyro.infer.autoguide import AutoDelta
    from numpyro.optim import optax_to_numpyro

    from gim_ppl.datasets import synthetic_hill
    from gim_ppl.inference import fit, init_from_data
    from gim_ppl.model import GIM

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    bench = synthetic_hill(seed)
    model = GIM(bench.train.n_vars, bench.train.n_features)
    start = time.perf_counter()
    agreement = None
    if method in ("plain", "plain_median"):
        guide = (AutoDelta(model, init_loc_fn=init_from_data(bench.train)) if method == "plain"
                 else AutoDelta(model))
        svi = SVI(model, guide, optax_to_numpyro(optax.adam(1e-3)), Trace_ELBO())
        rng = jax.random.key(key)
        if method == "plain":  # the README's two runs: unconstrained first, then the DAG
            warm = svi.run(rng, steps // 2, bench.train, progress_bar=False,
                           acyclicity_weight=0.0, target_sparsity=0.0)
            result = svi.run(rng, steps - steps // 2, bench.train, progress_bar=False,
                             init_state=warm.state)
        else:
            result = svi.run(rng, steps, bench.train, progress_bar=False)
        sites = {k: v for k, v in guide.median(result.params).items() if k in model.site_shapes}
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # agreement warnings are recorded below
            res = fit(model, bench.train, steps=steps, key=jax.random.key(key), progress=False,
                      restarts=restarts if method == "fit_restarts" else 1)
        sites = res.sites
        if res.restarts is not None:
            agreement = res.restarts.agreement._asdict()
    seconds = time.perf_counter() - start
    return {"method": method, "seed": seed, "key": key, "steps": steps, "seconds": seconds,
            **fit_scores(model, sites, bench), "agreement": agreement}


def fit_scores(model, sites, bench) -> dict:
    """Scores of a fitted GIM on a `synthetic_hill` benchmark: `evaluate_gim`'s, the mean-
    shift detector's and `oracle_features`' training/unseen AUROC, unseen Brier scores, the
    oracle's full-OOD error, targets per context and SHD."""
    import jax

    from gim_ppl.evaluation import baselines, metrics
    from gim_ppl.evaluation.protocol import evaluate_gim

    scores = evaluate_gim(model, sites, bench, key=jax.random.key(1))
    pert = ~np.asarray(bench.train.observational)
    truth = bench.truth.targets["train"][pert]
    post = np.asarray(model.posterior_targets(sites, bench.train))[pert]
    oracle = baselines.OracleFeatureTargets(bench).fit()
    oracle_pred = oracle.predict(bench.full_ood, key=jax.random.key(2), n_cells=500)
    return {
        **{k: v if isinstance(v, str) else float(v) for k, v in scores.items()},
        "target_auroc_train_mean_shift": metrics.auroc(
            truth, mean_shift_scores(bench.train)[pert]),
        "target_auroc_full_ood_oracle_features": metrics.auroc(
            bench.truth.targets["full_ood"], oracle.target_probabilities(bench.full_ood)),
        "target_brier_full_ood": metrics.brier_score(
            bench.truth.targets["full_ood"], model.target_probabilities(sites, bench.full_ood)),
        "target_brier_full_ood_oracle_features": metrics.brier_score(
            bench.truth.targets["full_ood"], oracle.target_probabilities(bench.full_ood)),
        "mean_error_full_ood_oracle_features": metrics.mean_error(oracle_pred, bench.full_ood),
        "targets_per_context": float((post > 0.5).sum(1).mean()),
        "true_targets_per_context": float(truth.sum(1).mean()),
        "shd": metrics.shd(bench.truth.adjacency, model.graph(sites)),
    }


def _job(args):
    return stability_job(*args)


def run_stability(config: StabilityConfig, *, log=print) -> list[dict]:
    """Every job of `config`, in a process pool of `config.workers` (one thread each)."""
    jobs = [(m, s, k, config.steps, config.restarts) for m in config.methods
            for s in config.seeds for k in config.keys]
    if config.workers <= 1:
        rows = []
        for job in jobs:
            rows.append(_job(job))
            log(_line(rows[-1]))
        return rows
    # one XLA thread per process: the pool, not XLA, uses the cores. OpenBLAS (behind the
    # LAPACK calls: Cholesky, solves) spins its own threads while waiting; with several
    # processes per core that made a GP-map step ~100× slower (docs/performance.md).
    os.environ["XLA_FLAGS"] = ("--xla_cpu_multi_thread_eigen=false "
                               "intra_op_parallelism_threads=1")
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    # spawn, not fork: the parent has started JAX's threads, and a forked child can deadlock
    with ProcessPoolExecutor(config.workers, mp_context=multiprocessing.get_context("spawn")
                             ) as pool:
        rows = []
        for row in pool.map(_job, jobs):
            rows.append(row)
            log(_line(row))
    return rows


def _line(row: dict) -> str:
    return (f"{row['method']} seed {row['seed']} key {row['key']}: train AUROC "
            f"{row['target_auroc_train_posterior']:.3f} (mean shift "
            f"{row['target_auroc_train_mean_shift']:.3f}), full-OOD error "
            f"{row['mean_error_full_ood']:.3f} (control {row['mean_error_full_ood_control']:.3f})"
            f", {row['seconds']:.0f} s")


def summarise(rows: Sequence[dict]) -> dict:
    """Per method: mean, worst case and spread across keys of the goal metrics."""
    out = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        auroc = report.describe((r["target_auroc_train_posterior"] for r in mine), worst="min")
        by_seed = {}
        for r in mine:
            by_seed.setdefault(r["seed"], []).append(r["target_auroc_train_posterior"])
        out[method] = {
            "n": len(mine),
            "train_auroc_mean": auroc["mean"],
            "train_auroc_min": auroc["worst"],
            "train_auroc_max_sd_across_keys": float(max(np.std(v) for v in by_seed.values())),
            "above_mean_shift": int(sum(r["target_auroc_train_posterior"]
                                        > r["target_auroc_train_mean_shift"] for r in mine)),
            "mean_shift_auroc_mean": float(np.mean([r["target_auroc_train_mean_shift"]
                                                    for r in mine])),
            "unseen_auroc_mean": float(np.mean([r["target_auroc_full_ood"] for r in mine])),
            "unseen_auroc_oracle_features_mean": float(np.mean(
                [r["target_auroc_full_ood_oracle_features"] for r in mine])),
            "full_ood_below_control": int(sum(r["mean_error_full_ood"]
                                              < r["mean_error_full_ood_control"]
                                              for r in mine)),
            "full_ood_error_over_control_mean": float(np.mean(
                [r["mean_error_full_ood"] / r["mean_error_full_ood_control"] for r in mine])),
            "full_ood_error_over_oracle_features_mean": float(
                np.mean([r["mean_error_full_ood"] for r in mine])
                / np.mean([r["mean_error_full_ood_oracle_features"] for r in mine])),
            "targets_per_context_mean": float(np.mean([r["targets_per_context"]
                                                       for r in mine])),
            "true_targets_per_context_mean": float(np.mean([r["true_targets_per_context"]
                                                            for r in mine])),
            "seconds_mean": float(np.mean([r["seconds"] for r in mine])),
        }
    return out


def stability_markdown(summary: dict) -> str:
    """One row per method."""
    header = ["method", "fits", "train target AUROC mean", "worst", "max sd across keys",
              "> mean-shift detector", "mean-shift AUROC", "unseen AUROC (oracle_features)",
              "full-OOD error < control", "full-OOD error / control",
              "full-OOD error / oracle_features", "targets per context (truth)"]
    return report.markdown_table(header, (
        [method, str(s["n"]), f"{s['train_auroc_mean']:.3f}", f"{s['train_auroc_min']:.3f}",
         f"{s['train_auroc_max_sd_across_keys']:.3f}", f"{s['above_mean_shift']}/{s['n']}",
         f"{s['mean_shift_auroc_mean']:.3f}",
         f"{s['unseen_auroc_mean']:.3f} ({s['unseen_auroc_oracle_features_mean']:.3f})",
         f"{s['full_ood_below_control']}/{s['n']}",
         f"{s['full_ood_error_over_control_mean']:.3f}",
         f"{s['full_ood_error_over_oracle_features_mean']:.3f}",
         f"{s['targets_per_context_mean']:.2f} ({s['true_targets_per_context_mean']:.2f})"]
        for method, s in summary.items()))


def write_stability(rows: Sequence[dict], out_dir, *, provenance: dict,
                    config: StabilityConfig) -> tuple[Path, Path]:
    """`stability.json` (every job, the summary, the config and `provenance`: command, commit,
    machine) and `stability.md`."""
    summary = summarise(rows)
    record = {"config": dataclasses.asdict(config), "summary": summary, "rows": list(rows)}
    md = (f"# gim_ppl stability\n\n{report.provenance_line(provenance)} Config: {config}.\n\n"
          f"{stability_markdown(summary)}\n")
    return report.write_report(out_dir, "stability", record, md, provenance=provenance)


__all__ = ["METHODS", "StabilityConfig", "mean_shift_scores", "run_stability",
           "stability_job", "stability_markdown", "summarise", "write_stability"]
