"""MAP `fit` of a `GIM` by SVI, composed of public pieces and configured by values.

`fit_init` and `fit_step` (`inference.steps`) are the loop's init and step; `fit` scans
`fit_step` in jitted chunks of `CHUNK_STEPS` steps and runs its hooks (`inference.hooks`:
`NaNGuard`, `DualAscent`, `Checkpointing`, or your own) between them. The optimiser is an
optax `GradientTransformation`; β_I and λ are each a float or a schedule (optax's
`ScalarOrSchedule`); minibatches and sharding are the value `batch_size`
(`inference.batching`). Nothing here is needed to fit a GIM with `SVI.run`.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from numpyro.infer.autoguide import AutoDelta
from numpyro.infer.svi import SVIRunResult

from gim_ppl.checks import check_integer
from gim_ppl.core.graph import cycle_gain
from gim_ppl.core.interventions import warn_constant_features
from gim_ppl.data import PerturbationData
from gim_ppl.inference import checkpoint as ckpt
from gim_ppl.inference.batching import (
    Batch,
    PerturbationBatches,
    Sharded,
    batch_source,
    check_batch_size,
)
from gim_ppl.inference.distributed import share_moments
from gim_ppl.inference.hooks import (
    Checkpointing,
    DualAscent,
    FitLoop,
    Hook,
    NaNGuard,
    acyclicity_weight_at,
    dual_ascent_step,
)
from gim_ppl.inference.restarts import (
    Restarts,
    RestartSelection,
    check_restarts,
    select_restart,
    split_validation,
)
from gim_ppl.inference.schedules import (
    ScalarOrSchedule,
    check_scalar_or_schedule,
    cosine_ramp,
    per_step_values,
)
from gim_ppl.inference.steps import FitState, fit_init, fit_step
from gim_ppl.model import GIM

#: Steps per jitted `lax.scan` chunk. Between chunks `fit` runs its hooks (NaN guard, dual
#: ascent, checkpoints) and updates the progress bar, so the chunk length is part of the
#: algorithm (it sets when λ may rise), not only of its speed.
CHUNK_STEPS = 1000

#: Environment variable that caps the optimiser steps of every `fit` (and so of `gim-ppl
#: demo`, `bench` and `fit`, and of the scripts in benchmarks/): the tests run the docs'
#: examples and the benchmarks verbatim with it set (CONTRIBUTING.md). Unset: no cap.
MAX_STEPS_ENV = "GIM_PPL_MAX_STEPS"


def capped_steps(steps: int) -> int:
    """`steps`, or the cap `$GIM_PPL_MAX_STEPS` if that is set and smaller (with a warning
    naming both, so a capped run is never mistaken for a full one)."""
    text = os.environ.get(MAX_STEPS_ENV, "").strip()
    if not text:
        return steps
    try:
        cap = check_integer(MAX_STEPS_ENV, float(text))
    except ValueError:
        raise ValueError(f"{MAX_STEPS_ENV} must be an integer >= 1, got {text!r}") from None
    if cap >= steps:
        return steps
    warnings.warn(f"{MAX_STEPS_ENV}={cap}: running {cap} optimiser steps instead of {steps}",
                  stacklevel=3)
    return cap


class FitResult(NamedTuple):
    """Outcome of `fit`.

    sites: the fitted sample-site values (`guide.median(params)`) of the selected restart.
    losses: `(n_steps_run,)` negative ELBO per step (up to a constant for AutoDelta).
    svi_result: NumPyro's `SVIRunResult(params, state, losses)` (with restarts: the stacked
        parameters and states of all restarts, losses of the selected one).
    guide: the guide used; `message`: empty, or why the fit stopped early; `seconds`: wall time.
    restarts: a `Restarts` report when `fit(..., restarts=R)` ran R > 1 restarts, else None.
    """

    sites: dict
    losses: np.ndarray
    svi_result: SVIRunResult
    guide: object
    message: str
    seconds: float
    restarts: Restarts | None = None

    def posterior_draws(self, key, n_draws: int) -> dict:
        """`n_draws` draws of every sample site from the fitted guide (of the selected
        restart), each `(n_draws, *site_shape)`: what the read-offs (`target_probabilities`,
        `predict`, `predicted_means`, ...) turn into intervals.

        Raises:
            ValueError: the guide is a point estimate (AutoDelta, the default): fit with
                `guide=AutoNormal(model, init_loc_fn=init_from_data(data))` (or a
                factory for restarts) or use `run_mcmc`.
        """
        if isinstance(self.guide, AutoDelta):
            raise ValueError("posterior_draws: this fit used AutoDelta, a point estimate "
                             "with no spread; fit with guide=AutoNormal(model, init_loc_fn="
                             "init_from_data(data)) or use run_mcmc for draws")
        if isinstance(n_draws, bool) or int(n_draws) != n_draws or n_draws < 1:
            raise ValueError(f"n_draws must be an integer >= 1, got {n_draws!r}")
        params = self.svi_result.params
        if self.restarts is not None:
            params = jax.tree_util.tree_map(lambda v: v[self.restarts.selected], params)
        draws = self.guide.sample_posterior(key, params, sample_shape=(int(n_draws),))
        return {k: v for k, v in draws.items() if k in self.sites}


def fit(
    model: GIM,
    data: PerturbationData,
    *,
    steps: int,
    key,
    optimizer: optax.GradientTransformation | None = None,
    guide=None,
    target_sparsity: ScalarOrSchedule | None = None,
    acyclicity_weight: ScalarOrSchedule | None = None,
    restarts: int | RestartSelection = 1,
    batch_size: int | PerturbationBatches | Sharded | None = None,
    progress: bool = True,
    hooks: Sequence[Hook] = (),
) -> FitResult:
    """MAP (or any guide) by SVI: `fit_init`, then `fit_step` in jitted `lax.scan` chunks of
    `CHUNK_STEPS` steps, with `hooks` between the chunks.

    Schedules are evaluated into `(steps,)` arrays before the loop. Between chunks run, in
    this order: `NaNGuard()` (on a non-finite loss or parameter the fit stops with a warning
    and keeps the parameters of the last finite chunk), dual ascent on λ (the `DualAscent`
    in `hooks`, else `DualAscent()`: on by default, so `hooks=[Checkpointing(path)]` keeps
    it; `DualAscent(max_cycle_gain=math.inf)` turns it off), then the other `hooks` in their
    order, then the progress bar.

    With `restarts=R > 1`, R initialisations (one per split of `key`) run as one `vmap`ped
    program, and one restart is selected by its log-likelihood of held-out perturbations:
    `RestartSelection(R, validation)` says which (default 0.2 of the perturbations, taken out
    of `data`; the restarts are fitted on the rest), and the restart that predicts the
    held-out perturbations' cells best from their features (exact marginal, π from
    features) is returned. `FitResult.restarts` keeps every restart, the scores and how much
    the restarts agree (`Agreement`; a warning names what disagrees).

    Resumable runs (`Checkpointing`): a fit resumed with the same model, data, key and
    settings continues the run from its last checkpoint to `steps` and returns what the
    uninterrupted run returns (bit for bit on CPU; `FitResult.seconds` counts this call
    only). `steps` may also be raised to extend a finished run, as long as the β_I and λ
    schedules give the same values at the steps done — the default ramps depend on
    `steps`, so pass explicit schedules to extend (dual ascent starts at `DualAscent.start ·
    steps`, so with it an extended run may raise λ after other chunks than one run to the
    larger `steps`). A checkpoint from another model, data set, key, guide, optimizer state
    layout, batch size or sharding, restart count, validation split, dual-ascent setting,
    `CHUNK_STEPS` or package version raises a ValueError naming the difference. The
    optimizer is checked by its state layout only: an optax transformation does not expose
    its learning rate, so give the same `optimizer` when resuming.

    Args:
        model: a `GIM`.
        data: training `PerturbationData` with cells, `x (n_cells, n_vars)`.
        steps: optimiser steps (at most `$GIM_PPL_MAX_STEPS` when that is set: `capped_steps`).
        key: PRNG key (same key ⇒ same result).
        optimizer: an optax `GradientTransformation`; default `optax.adam(1e-3)`.
        guide: default `AutoDelta(model, init_loc_fn=init_from_data(data))`; any NumPyro
            guide with `median` works. With restarts, a guide class (started from the data,
            restarts after the first jittered) or factory `model -> guide` (e.g.
            `AutoNormal`), since every restart needs its own initialisation.
        target_sparsity: β_I, a float (constant) or a schedule `step -> value`. None:
            `cosine_ramp(model.target_sparsity, steps - 1)`, 0 up to its final value over
            all steps.
        acyclicity_weight: λ, a float or a schedule. None:
            `cosine_ramp(model.acyclicity_weight, 0.5 * (steps - 1))`, 0 up to its final
            value over the first half (edges first fit freely, then the weaker direction of
            each 2-cycle is pruned, as augmented-Lagrangian DAG learners do).
        restarts: the number of initialisations R (>= 1), or a `RestartSelection(R,
            validation)`: the held-out perturbations, a fraction in (0, 1) of the
            perturbations of `data` (default 0.2 when R > 1), a `PerturbationData` with cells
            (then `data` is used whole), or 0 to select by the final training loss.
        batch_size: how a step reads the cells. None: every cell. An int b: b cells per
            context per step (see `stratified_batch`); a step then costs O(n_contexts · b),
            not O(n_cells), but the target posterior loses accuracy (`inference.batching`
            says why). A `PerturbationBatches(n)`: n whole perturbations and a subsample of
            the control cells per step, unbiased for the full log-likelihood
            (`perturbation_batch`). `Sharded(devices)`: every cell, split over JAX devices
            (data parallel; see `shard_cells`).
        progress: show a tqdm progress bar.
        hooks: between-chunk hooks (`Hook`: `DualAscent`, `Checkpointing` or your own),
            run after the NaN guard as above. On the benchmark the default `DualAscent()`
            fired on 1 of 5 seeds and left the others as they were.

    Returns:
        A `FitResult`.

    Example:
        >>> res = fit(GIM(10, 10), data, steps=30_000, key=jax.random.key(0),
        ...           optimizer=optax.adam(1e-3), restarts=4,
        ...           hooks=[Checkpointing("run.npz", every=5_000)])  # doctest: +SKIP
    """
    steps = capped_steps(check_integer("steps", steps))
    if not isinstance(data, PerturbationData) or not data.has_cells:
        raise ValueError("data must be a PerturbationData with cells (data.x is None)")
    batch_size, restarts = check_batch_size(batch_size), check_restarts(restarts)
    optimizer = optax.adam(1e-3) if optimizer is None else optimizer
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(f"optimizer must be an optax GradientTransformation such as "
                        f"optax.adam(1e-3), got {type(optimizer).__name__}")
    check_scalar_or_schedule("target_sparsity", target_sparsity)
    check_scalar_or_schedule("acyclicity_weight", acyclicity_weight)
    hooks = fit_hooks(hooks)
    data = _fit_data(model, data, batch_size)
    dual = next(h for h in hooks if isinstance(h, DualAscent))  # fit_hooks puts exactly one
    settings = _checkpoint_settings(model, data, key, optimizer, guide, dual, restarts,
                                    batch_size)
    start = time.perf_counter()
    train, held_out = split_validation(data, restarts.validation, restarts.n)
    betas, lams = _schedule_values(model, steps, target_sparsity, acyclicity_weight)
    key, batch_key = jax.random.split(key)
    placed, batch_at = batch_source(train, batch_size, batch_key)
    state = fit_init(model, train, key, optimizer=optimizer, guide=guide,
                     restarts=restarts.n, batch=batch_at(0, placed))
    state = state.replace(acyclicity_scale=state.acyclicity_scale.astype(lams.dtype))
    settings["state_layout"] = [
        str(jax.tree_util.tree_structure((state.svi_state, state.acyclicity_scale))),
        ckpt.leaf_spec(jax.tree_util.tree_leaves(state))]
    loop = FitLoop(state, None, 0, steps, np.ones(restarts.n, bool), "", [], False, betas,
                   lams, settings)
    run_chunk = _chunk_runner(batch_at, dual.max_weight)
    loop = _run_chunks(loop, hooks, run_chunk, placed, progress)
    return _fit_result(model, loop, held_out, placed.data, time.perf_counter() - start)


def fit_hooks(hooks: Sequence[Hook] = ()) -> tuple:
    """The hooks `fit(..., hooks=hooks)` runs between chunks, in order: `NaNGuard()`, the
    `DualAscent` in `hooks` (at most one) or else `DualAscent()`, then the other hooks in
    their order (a `NaNGuard` given is the one already first). Dual ascent runs before the
    others so that a checkpoint holds the state the next chunk starts from.

    Raises:
        TypeError: `hooks` is not a sequence of objects with `init` and `update`.
        ValueError: more than one `DualAscent`.
    """
    if isinstance(hooks, (str, bytes)) or not hasattr(hooks, "__iter__"):
        raise TypeError(f"hooks must be a sequence of hooks (objects with init and update, "
                        f"e.g. [Checkpointing(path)]), got {type(hooks).__name__}")
    hooks = list(hooks)
    bad = [h for h in hooks if isinstance(h, type) or not isinstance(h, Hook)]
    if bad:
        raise TypeError(f"hooks must be objects with init and update methods (DualAscent, "
                        f"Checkpointing, ...), got "
                        f"{bad[0] if isinstance(bad[0], type) else type(bad[0]).__name__}")
    duals = [h for h in hooks if isinstance(h, DualAscent)]
    if len(duals) > 1:
        raise ValueError(f"hooks holds {len(duals)} DualAscent values; give at most one")
    others = [h for h in hooks if not isinstance(h, DualAscent | NaNGuard)]
    return (NaNGuard(), duals[0] if duals else DualAscent(), *others)


def _schedule_values(model: GIM, steps: int, target_sparsity, acyclicity_weight):
    """`(betas, lams)`, each `(steps,)`: the β_I and λ schedules (None: the default ramps)
    at every step."""
    if target_sparsity is None:
        target_sparsity = cosine_ramp(model.target_sparsity, steps - 1)
    if acyclicity_weight is None:
        acyclicity_weight = cosine_ramp(model.acyclicity_weight, 0.5 * (steps - 1))
    return (per_step_values("target_sparsity", target_sparsity, steps),
            per_step_values("acyclicity_weight", acyclicity_weight, steps))


def _chunk_runner(batch_at: Callable, max_weight: float):
    """The jitted `(state, (betas, lams, step index) of a chunk, placed) -> (state, losses)`
    of `fit`: `fit_step` scanned over the chunk's steps, λ raised by dual ascent so far."""
    @jax.jit
    def run_chunk(state: FitState, xs, placed: Batch):
        def body(state: FitState, x):
            beta, lam, step = x
            lam = acyclicity_weight_at(lam, state.acyclicity_scale, max_weight)
            return fit_step(state, batch_at(step, placed), beta, lam)
        return lax.scan(body, state, xs)
    return run_chunk


def _run_chunks(loop: FitLoop, hooks: tuple, run_chunk, placed: Batch,
                progress: bool) -> FitLoop:
    """`fit`'s loop from `loop` to `loop.steps`: the hooks' `init`, then chunks of
    `CHUNK_STEPS` steps with every hook's `update` after each."""
    hook_states = []
    for hook in hooks:
        hook_state, loop = hook.init(loop)
        hook_states.append(hook_state)
    bar = _progress_bar(loop.steps, progress)
    if bar is not None:
        bar.update(loop.done)
    step_index = jnp.arange(loop.steps, dtype=jnp.int32)
    while loop.done < loop.steps and loop.alive.any() and not loop.stopped:
        done = loop.done
        n = min(CHUNK_STEPS, loop.steps - done)
        xs = tuple(a[done:done + n] for a in (loop.target_sparsity, loop.acyclicity_weight,
                                              step_index))
        state, losses = run_chunk(loop.state, xs, placed)
        loop = loop._replace(previous=loop.state, state=state, done=done + n,
                             losses=[*loop.losses, np.asarray(losses).reshape(n, -1)])
        for i, hook in enumerate(hooks):
            hook_states[i], loop = hook.update(hook_states[i], loop)
            if loop.stopped:
                break
        if bar is not None and not loop.stopped:
            bar.update(n)
            bar.set_postfix(loss=f"{np.nanmin(loop.losses[-1][-1]):.4g}")
    if bar is not None:
        bar.close()
    return loop


def _fit_data(model: GIM, data: PerturbationData, batch_size) -> PerturbationData:
    """The data the fit reads: moments shared over processes and attached where the model
    reads them (with a warning when minibatches are asked of a model that needs none)."""
    if jax.process_count() > 1:  # one shard of the cells per process: share the moments
        if not model.cell_model.mechanism.is_linear or model.statistics == "cells":
            raise ValueError(f"fit over {jax.process_count()} processes needs moments: a "
                             f"linear mechanism and statistics='auto' or 'moments' (got "
                             f"mechanism={model.mechanism!r}, statistics="
                             f"{model.statistics!r}); fit an MLP in one process with "
                             "batch_size=Sharded(devices)")
        data = share_moments(data)
    data = model.with_moments(data)
    minibatches = batch_size is not None and not isinstance(batch_size, Sharded)
    if minibatches and data.moments is not None and model.statistics == "auto" \
            and model.cell_model.mechanism.is_linear:
        warnings.warn(f"batch_size={batch_size}: a linear GIM's full-batch step reads each "
                      "context's moments and costs the same for any number of cells, with "
                      "no minibatch noise; drop batch_size (the minibatches asked for are "
                      "used)", UserWarning, stacklevel=3)
    if model.shrinkage is not None:
        _, first = data.perturbation_contexts()
        warn_constant_features(np.asarray(data.features)[first], "data.features")
    return data


def _fit_result(model: GIM, loop: FitLoop, held_out, data: PerturbationData,
                seconds: float) -> FitResult:
    """The `FitResult` of a finished loop (with restarts: the selected one)."""
    state = loop.state
    guide, restarts = state.svi.guide, state.restarts
    losses = np.concatenate(loop.losses) if loop.losses else np.zeros((0, restarts))
    params = state.svi.get_params(state.svi_state)
    if restarts == 1:
        losses = losses[:, 0]
        sites = {k: v for k, v in guide.median(params).items() if k in model.site_shapes}
        return FitResult(sites, losses, SVIRunResult(params, state.svi_state,
                                                     jnp.asarray(losses)),
                         guide, loop.message, seconds)
    all_sites = jax.vmap(lambda p: {k: v for k, v in guide.median(p).items()
                                    if k in model.site_shapes})(params)
    report = select_restart(model, all_sites, losses.T, loop.alive, held_out, data)
    chosen = {k: v[report.selected] for k, v in all_sites.items()}
    if report.agreement.message:
        warnings.warn(report.agreement.message, UserWarning, stacklevel=3)
    return FitResult(chosen, losses[:, report.selected],
                     SVIRunResult(params, state.svi_state, jnp.asarray(losses.T)), guide,
                     loop.message, seconds, report)


def _checkpoint_settings(model, data, key, optimizer, guide, dual: DualAscent,
                         restarts: RestartSelection, batch_size) -> dict:
    """What must match between a checkpoint and the fit that resumes it (JSON-able)."""
    validation = restarts.validation
    held = validation if isinstance(validation, PerturbationData) else None
    sharded = isinstance(batch_size, Sharded)
    return {
        "version": ckpt.package_version(),
        "model": ckpt.model_description(model),
        "data": ckpt.data_fingerprint(data),
        "key": ckpt.key_fingerprint(key),
        "optimizer": type(optimizer).__name__,
        "guide": "AutoDelta" if guide is None else getattr(guide, "__name__",
                                                           type(guide).__name__),
        "dual_ascent": ckpt.describe(dual),
        "restarts": int(restarts.n),
        "validation": ckpt.data_fingerprint(held) if held is not None
        else ckpt.describe(validation),
        "batch_size": None if batch_size is None or sharded else (
            list(batch_size) if isinstance(batch_size, PerturbationBatches)
            else int(batch_size)),
        "devices": len(batch_size.devices) if sharded else None,
        "chunk_steps": CHUNK_STEPS,
        "x64": bool(jax.config.jax_enable_x64),
    }


def _progress_bar(total, enabled):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="fit", unit="step", mininterval=0.5)


__all__ = ["CHUNK_STEPS", "Checkpointing", "DualAscent", "FitLoop", "FitResult", "FitState",
           "Hook", "NaNGuard", "acyclicity_weight_at", "cycle_gain", "dual_ascent_step", "fit",
           "fit_hooks", "fit_init", "fit_step"]
