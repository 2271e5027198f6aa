"""Performance benchmark (`gim-ppl bench perf`): the NumPyro SVI step against a
hand-written pure-JAX floor of the same objective, a full default fit, and scaling of time
per step and compiled memory with cells and variables.

Timing protocol: every step function runs `n_steps` Adam steps inside one jitted `lax.scan`;
the first call (compile + run) is reported as compile time minus one run, then the median of
`repeats` further calls gives the time per step. Memory is XLA's compiled-memory analysis of
one step (arguments + outputs + temporaries), which is what the step needs on the device.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpyro.distributions.transforms import biject_to
from numpyro.infer import SVI, Trace_ELBO
from numpyro.infer.autoguide import AutoDelta
from numpyro.optim import optax_to_numpyro

from gim_ppl.data import PerturbationData
from gim_ppl.evaluation import report
from gim_ppl.joint import log_joint
from gim_ppl.model import GIM


def floor_loss(model: GIM, unconstrained: dict, data: PerturbationData, key):
    """−log joint of `model` (`joint.log_joint`: the function whose factors `GIM.__call__`
    records) with no NumPyro handlers or ELBO, in the unconstrained coordinates of AutoDelta
    (each site mapped onto its prior's support: e.g. log noise scale). `key`: the draws of
    the relaxed-MC marginal."""
    params = {s: biject_to(prior.support)(unconstrained[s])
              for s, prior in model.site_priors.items()}
    return -log_joint(model, params, data, key=key)


def _time_scan(run, state, data, n_steps: int, repeats: int) -> dict:
    """Compile time and median seconds per step of `run(state, data) -> (state, losses)`.
    `data` is an argument, not a closure, so large cell arrays are not baked into the
    executable as constants."""
    start = time.perf_counter()
    jax.block_until_ready(run(state, data))
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(run(state, data))
        times.append(time.perf_counter() - start)
    med = float(np.median(times))
    return {"compile_seconds": max(first - med, 0.0), "seconds_per_step": med / n_steps,
            "repeats": repeats, "n_steps": n_steps}


def numpyro_step_timing(model: GIM, data: PerturbationData, *, n_steps: int = 200,
                        repeats: int = 5, learning_rate: float = 1e-3) -> dict:
    """(a) SVI steps of `model` through NumPyro (AutoDelta, Trace_ELBO, optax Adam)."""
    svi = SVI(model, AutoDelta(model), optax_to_numpyro(optax.adam(learning_rate)),
              Trace_ELBO())
    state = svi.init(jax.random.key(0), data)

    @jax.jit
    def run(state, data):
        return jax.lax.scan(lambda s, _: svi.update(s, data), state, None, length=n_steps)

    return _time_scan(run, state, data, n_steps, repeats)


def floor_step_timing(model: GIM, data: PerturbationData, *, n_steps: int = 200,
                      repeats: int = 5, learning_rate: float = 1e-3) -> dict:
    """(b) The same objective by `jax.value_and_grad(floor_loss)` + optax Adam."""
    rng = np.random.default_rng(0)
    params = {s: jnp.asarray(rng.normal(scale=0.1, size=shape), data.x.dtype)
              for s, shape in model.site_shapes.items()}
    opt = optax.adam(learning_rate)
    grad_fn = jax.value_and_grad(lambda p, data, k: floor_loss(model, p, data, k))

    @jax.jit
    def run(state, data):
        def step(carry, i):
            params, opt_state = carry
            loss, grad = grad_fn(params, data, jax.random.fold_in(jax.random.key(0), i))
            updates, opt_state = opt.update(grad, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss
        return jax.lax.scan(step, state, jnp.arange(n_steps))

    return _time_scan(run, (params, opt.init(params)), data, n_steps, repeats)


def step_memory_bytes(model: GIM, data: PerturbationData) -> int | None:
    """Bytes XLA allocates for one NumPyro SVI step (arguments, outputs, temporaries)."""
    svi = SVI(model, AutoDelta(model), optax_to_numpyro(optax.adam(1e-3)), Trace_ELBO())
    state = svi.init(jax.random.key(0), data)
    compiled = jax.jit(lambda s, d: svi.update(s, d)).lower(state, data).compile()
    stats = compiled.memory_analysis()
    if stats is None:
        return None
    return int(stats.argument_size_in_bytes + stats.output_size_in_bytes
               + stats.temp_size_in_bytes)


def restart_timing(restarts: int, *, steps: int = 4000, warm_steps: int = 1000,
                   seed: int = 0) -> dict:
    """Seconds per step of `fit(..., restarts=R)` on the default benchmark without compile
    and set-up: after one warm-up fit (compiles), the time of a `steps` fit minus that of a
    `warm_steps` fit, over the difference in steps. Full batch, exact marginal, nothing held
    out (`RestartSelection(R, validation=0)`)."""
    from gim_ppl.datasets import synthetic_hill
    from gim_ppl.inference import RestartSelection, fit

    bench = synthetic_hill(seed)
    model = GIM(bench.train.n_vars, bench.train.n_features)
    selection = RestartSelection(restarts, validation=0) if restarts > 1 else restarts
    kw = dict(key=jax.random.key(0), progress=False, restarts=selection)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # restarts' agreement is not what is timed
        fit(model, bench.train, steps=warm_steps, **kw)
        seconds = {}
        for n in (warm_steps, steps):
            start = time.perf_counter()
            fit(model, bench.train, steps=n, **kw)
            seconds[n] = time.perf_counter() - start
    return {"restarts": restarts, "seconds_per_step":
            (seconds[steps] - seconds[warm_steps]) / (steps - warm_steps),
            "seconds": seconds}


def random_cells(n_cells: int, n_vars: int, *, n_contexts: int = 100, n_features: int = 10,
                 seed: int = 0) -> PerturbationData:
    """Synthetic cells of a given size for scaling runs (values are irrelevant to timing):
    one observational context and `n_contexts − 1` perturbational ones, cells spread evenly.
    Cells are drawn with `jax.random` on the default device (10⁹ values take seconds there,
    minutes through numpy in float64)."""
    rng = np.random.default_rng(seed)
    ctx = np.arange(n_cells) % n_contexts
    obs = np.arange(n_contexts) == 0
    x = jax.random.normal(jax.random.key(seed), (n_cells, n_vars), jnp.float32)
    # Built directly, not through `from_arrays`: valid by construction, and validating would
    # copy up to 10⁹ values through numpy.
    return PerturbationData(
        x=x, context=jnp.asarray(ctx, jnp.int32),
        features=jnp.asarray(
            np.where(obs[:, None], 0.0, rng.normal(size=(n_contexts, n_features))), jnp.float32),
        dose=jnp.asarray(np.where(obs, 0.0, rng.choice([0.5, 1.0, 2.0], n_contexts)),
                         jnp.float32),
        observational=jnp.asarray(obs),
        perturbation=jnp.asarray(np.where(obs, -1, np.arange(n_contexts)), jnp.int32),
        var_names=tuple(f"x{j}" for j in range(n_vars)),
        context_names=tuple(f"c{k}" for k in range(n_contexts)),
        feature_names=tuple(f"z{j}" for j in range(n_features)),
        perturbation_names=tuple(f"p{k}" for k in range(n_contexts)),
    )


@dataclasses.dataclass(frozen=True)
class PerfConfig:
    """What `run_perf` measures; `quick` shrinks every size for a smoke run."""

    step_vars: tuple = (10, 100)
    cells: tuple = (1_000, 10_000, 100_000, 1_000_000)
    vars_: tuple = (10, 100, 1000)
    vars_cells: int = 10_000
    mlp_max_vars: int = 100
    n_steps: int = 100
    repeats: int = 5
    full_fit_steps: int = 30_000
    full_fit_marginals: tuple = ("exact", "relaxed_mc")
    large: tuple = ()  # extra (n_cells, n_vars) points, linear exact (e.g. 10⁶ × 1000 on a GPU)
    # intervention maps side by side: numbers of training perturbations (= GP anchors)
    map_perturbations: tuple = (40, 320)

    @classmethod
    def quick(cls) -> PerfConfig:
        return cls(step_vars=(10,), cells=(1_000, 10_000), vars_=(10, 30), vars_cells=2_000,
                   mlp_max_vars=30, n_steps=20, repeats=2, full_fit_steps=500,
                   full_fit_marginals=("exact",), map_perturbations=(40,))


#: Intervention maps timed side by side (the first is the reference of the ratios).
MAP_VARIANTS = (("linear", {}), ("linear+ard", {"shrinkage": "ard"}),
                ("linear+horseshoe", {"shrinkage": "horseshoe"}),
                ("gp", {"intervention_map": "gp", "map_anchors": None}))


def map_step_timing(n_perturbations: Sequence[int], *, n_steps: int = 100, repeats: int = 5,
                    log=print) -> list[dict]:
    """Seconds per SVI step of each of `MAP_VARIANTS` on `synthetic_hill(0,
    n_train_perturbations=P)` (d = 10; the GP's anchors are its P training perturbations),
    side by side, with the ratio to the linear map."""
    from gim_ppl.datasets import synthetic_hill

    rows = []
    for n_pert in n_perturbations:
        bench = synthetic_hill(0, n_train_perturbations=int(n_pert))
        base = None
        for name, options in MAP_VARIANTS:
            if "map_anchors" in options:
                options = {**options, "map_anchors": bench.train}
            model = GIM(10, bench.train.n_features, **options)
            t = numpyro_step_timing(model, bench.train, n_steps=n_steps, repeats=repeats)
            base = t["seconds_per_step"] if base is None else base
            rows.append({"map": name, "n_perturbations": int(n_pert),
                         "n_cells": int(bench.train.x.shape[0]), **t,
                         "ratio_to_linear": t["seconds_per_step"] / base})
            log(f"map {name} P={n_pert}: {1e3 * t['seconds_per_step']:.2f} ms/step "
                f"({t['seconds_per_step'] / base:.2f}× linear)")
    return rows


def run_perf(config: PerfConfig, *, log=print) -> dict:
    """Every measurement of the performance benchmark; JSON-ready."""
    from gim_ppl.datasets import synthetic_hill
    from gim_ppl.evaluation.protocol import evaluate_gim
    from gim_ppl.inference import fit

    out: dict = {"config": dataclasses.asdict(config), "steps": [], "scaling": [],
                 "maps": [], "full_fit": []}
    for d in config.step_vars:
        bench = synthetic_hill(0, n_vars=d)
        for marginal in ("exact", "relaxed_mc"):
            model = GIM(d, bench.train.n_features, marginal=marginal)
            a = numpyro_step_timing(model, bench.train, n_steps=config.n_steps,
                                    repeats=config.repeats)
            b = floor_step_timing(model, bench.train, n_steps=config.n_steps,
                                  repeats=config.repeats)
            row = {"n_vars": d, "marginal": marginal, "numpyro": a, "floor": b,
                   "ratio": a["seconds_per_step"] / b["seconds_per_step"]}
            out["steps"].append(row)
            log(f"step d={d} {marginal}: numpyro {1e3 * a['seconds_per_step']:.3f} ms, "
                f"floor {1e3 * b['seconds_per_step']:.3f} ms, ratio {row['ratio']:.2f}")

    sizes = [("cells", n, 10) for n in config.cells]
    sizes += [("vars", config.vars_cells, d) for d in config.vars_]
    sizes += [("large", int(n), int(d)) for n, d in config.large]
    for mechanism in ("linear", "mlp"):
        for axis, n, d in sizes:
            if mechanism == "mlp" and (d > config.mlp_max_vars or axis == "large"):
                continue
            data = random_cells(n, d)
            model = GIM(d, data.n_features, mechanism=mechanism)
            t = numpyro_step_timing(model, data, n_steps=max(2, config.n_steps // 10),
                                    repeats=config.repeats)
            mem = step_memory_bytes(model, data)
            out["scaling"].append({"axis": axis, "mechanism": mechanism, "n_cells": n,
                                   "n_vars": d, **t, "memory_bytes": mem})
            log(f"scaling {mechanism} n={n} d={d}: {1e3 * t['seconds_per_step']:.2f} ms/step, "
                f"{(mem or 0) / 2**20:.1f} MiB")

    out["maps"] = map_step_timing(config.map_perturbations, n_steps=config.n_steps,
                                  repeats=config.repeats, log=log)

    bench = synthetic_hill(0)
    for marginal in config.full_fit_marginals:
        model = GIM(10, 10, marginal=marginal)
        start = time.perf_counter()
        result = fit(model, bench.train, steps=config.full_fit_steps, key=jax.random.key(0),
                     progress=False)
        seconds = time.perf_counter() - start
        # accuracy beside time, so "faster at equal accuracy" can be read off one table
        scores = evaluate_gim(model, result.sites, bench, key=jax.random.key(1))
        out["full_fit"].append({"marginal": marginal, "steps": config.full_fit_steps,
                                "seconds": seconds, **scores})
        log(f"full fit {marginal}: {config.full_fit_steps} steps in {seconds:.1f} s, "
            f"unseen-target AUROC {scores['target_auroc_full_ood']:.3f}")
    return out


def perf_markdown(results: dict) -> str:
    """Markdown tables of a `run_perf` result."""
    def ms(seconds):
        return 1e3 * seconds

    lines = ["## SVI step: NumPyro vs pure-JAX floor", "", report.markdown_table(
        ["d", "marginal", "NumPyro ms/step", "floor ms/step", "ratio", "compile s (NumPyro)"],
        ([str(r["n_vars"]), r["marginal"], f"{ms(r['numpyro']['seconds_per_step']):.3f}",
          f"{ms(r['floor']['seconds_per_step']):.3f}", f"{r['ratio']:.2f}",
          f"{r['numpyro']['compile_seconds']:.1f}"] for r in results["steps"]))]
    lines += ["", "## Scaling (NumPyro SVI step, exact marginal)", "", report.markdown_table(
        ["mechanism", "cells", "d", "ms/step", "step memory (MiB)"],
        ([r["mechanism"], f"{r['n_cells']:,}", str(r["n_vars"]),
          f"{ms(r['seconds_per_step']):.2f}",
          "—" if r["memory_bytes"] is None else f"{r['memory_bytes'] / 2**20:.1f}"]
         for r in results["scaling"]))]
    if results.get("maps"):
        lines += ["", "## Intervention maps (d = 10, exact marginal, one SVI step)", "",
                  report.markdown_table(
                      ["map", "training perturbations", "cells", "ms/step", "× linear"],
                      ([r["map"], str(r["n_perturbations"]), f"{r['n_cells']:,}",
                        f"{ms(r['seconds_per_step']):.2f}", f"{r['ratio_to_linear']:.2f}"]
                       for r in results["maps"]))]
    lines += ["", "## Full fit of the default benchmark (d = 10)", "", report.markdown_table(
        ["marginal", "steps", "wall s", "target AUROC train", "target AUROC unseen",
         "mean err partial OOD", "mean err full OOD"],
        ([r["marginal"], str(r["steps"]), f"{r['seconds']:.1f}",
          f"{r['target_auroc_train_posterior']:.3f}", f"{r['target_auroc_full_ood']:.3f}",
          f"{r['mean_error_partial_ood']:.3f}", f"{r['mean_error_full_ood']:.3f}"]
         for r in results["full_fit"]))]
    by = {r["marginal"]: r["seconds"] for r in results["full_fit"]}
    if {"exact", "relaxed_mc"} <= by.keys():
        lines += ["", f"relaxed_mc / exact wall time: {by['relaxed_mc'] / by['exact']:.1f}×"]
    return "\n".join(lines)


def write_perf(results: dict, out_dir, *, provenance: dict) -> tuple[Path, Path]:
    """`perf.json` (`results` with `provenance`: command, commit, machine) and `perf.md`."""
    md = (f"# gim_ppl performance\n\n{report.provenance_line(provenance)}\n\n"
          f"{perf_markdown(results)}\n")
    return report.write_report(out_dir, "perf", results, md, provenance=provenance)
