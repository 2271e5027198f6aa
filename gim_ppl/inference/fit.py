"""MAP `fit` of a `GIM` by SVI, configured by values.

The optimiser is an optax `GradientTransformation`; the sparsity weight β_I and the
acyclicity weight λ are each a float or a schedule (a callable `step -> value`, as optax's
`ScalarOrSchedule`); dual ascent on λ is a `DualAscent` value and its state a `FitState`
NamedTuple carried through the loop. Nothing here is needed to fit a GIM with `SVI.run`.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from numpyro.infer import SVI, Trace_ELBO
from numpyro.infer.autoguide import AutoDelta
from numpyro.infer.svi import SVIRunResult, SVIState
from numpyro.optim import optax_to_numpyro

from gim_ppl.checks import check_integer
from gim_ppl.core.graph import cycle_gain
from gim_ppl.core.interventions import warn_constant_features
from gim_ppl.data import PerturbationData
from gim_ppl.inference import checkpoint as ckpt
from gim_ppl.inference.batching import (
    BatchIndex,
    PerturbationBatches,
    PerturbationBatchIndex,
    perturbation_batch,
    shard_cells,
    stratified_batch,
)
from gim_ppl.inference.distributed import share_moments
from gim_ppl.inference.restarts import (
    Restarts,
    keep_live_restarts,
    restart_guides,
    select_restart,
    split_validation,
)
from gim_ppl.inference.schedules import (
    ScalarOrSchedule,
    check_scalar_or_schedule,
    cosine_ramp,
    per_step_values,
)
from gim_ppl.model import GIM

#: Steps per jitted `lax.scan` chunk. Between chunks `fit` updates the progress bar, checks
#: for non-finite values and takes a dual-ascent step, so the chunk length is part of the
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

class SortedTraceELBO(Trace_ELBO):
    """NumPyro's `Trace_ELBO` (one particle) with the sites' terms summed in name order.

    `Trace_ELBO` sums them in the iteration order of a Python `set` of site names, which
    changes with `PYTHONHASHSEED`: the same fit in two processes then differs in the last
    bits of every loss, and a fit resumed in a new process would not continue its run
    exactly.
    """

    def __init__(self):
        super().__init__(sum_sites=False)

    def loss_with_mutable_state(self, rng_key, param_map, model, guide, *args, **kwargs):
        out = super().loss_with_mutable_state(rng_key, param_map, model, guide, *args,
                                              **kwargs)
        terms = out["loss"]
        return {**out, "loss": sum((terms[k] for k in sorted(terms)), start=jnp.array(0.0))}


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


class DualAscent(NamedTuple):
    """Dual ascent on the acyclicity weight λ (pass as `fit(..., dual_ascent=DualAscent())`).

    From step `start · steps` on, between chunks of `CHUNK_STEPS` steps: while the cycle gain
    of the fitted W (spectral radius of |W|, see `cycle_gain`) exceeds `max_cycle_gain`, λ
    for the remaining steps is multiplied by `factor`, never above `max_weight`.

    A cyclic W can raise the product of Gaussian conditionals by O(1) nats per cell (it is
    no longer a normalised density), and on strongly correlated data that gain can beat a
    fixed λ; augmented-Lagrangian DAG learners raise λ until h(W) ≈ 0 for the same reason.
    The trigger is the cycle gain, which sets how much sampling through `(I − W)⁻¹`
    amplifies, not the penalty in nats: Adam's jitter on weak reverse edges costs many nats
    on thousands of cells at a gain of ~0.1, and raising λ for it degraded good fits.

    Attributes:
        max_cycle_gain: largest tolerated spectral radius of |W|.
        factor: multiplier of λ per trigger.
        max_weight: λ is not raised above this.
        start: fraction of the steps after which λ may be raised (the default λ schedule
            ends its ramp at 0.5).
    """

    max_cycle_gain: float = 0.3
    factor: float = 10.0
    max_weight: float = 1e4
    start: float = 0.5


class FitState(NamedTuple):
    """What `fit` carries through its loop.

    Attributes:
        svi_state: NumPyro's `SVIState` (optimiser state, PRNG key).
        acyclicity_scale: `()` factor dual ascent has applied to the λ schedule (1 until
            it fires; see `acyclicity_weight_at`).
    """

    svi_state: SVIState
    acyclicity_scale: jnp.ndarray


def acyclicity_weight_at(scheduled, acyclicity_scale, max_weight):
    """λ after dual ascent: the scheduled value times `acyclicity_scale`, raised at most to
    `max_weight` (and never lowered), i.e. `max(λ, min(λ · scale, max_weight))`.

    Args:
        scheduled: the λ schedule's value, any shape.
        acyclicity_scale: `()` the `FitState` factor.
        max_weight: the cap on a raised λ (`DualAscent.max_weight`; `inf` without dual
            ascent).
    """
    return jnp.maximum(scheduled, jnp.minimum(scheduled * acyclicity_scale, max_weight))


def dual_ascent_step(state: FitState, weights, acyclicity_weight: float,
                     dual: DualAscent | None = None) -> FitState:
    """One dual-ascent update between chunks of `fit` (host-side, pure).

    Args:
        state: the current `FitState`.
        weights: `(n_vars, n_vars)` edge weights W of the current fit.
        acyclicity_weight: λ at the current step (after dual ascent so far).
        dual: the settings; None: `DualAscent()`.

    Returns:
        `state` with `acyclicity_scale` multiplied by `dual.factor` when the cycle gain of
        W exceeds `dual.max_cycle_gain` and λ is below `dual.max_weight`; otherwise `state`.
    """
    dual = DualAscent() if dual is None else dual
    if not _raises(weights, acyclicity_weight, dual):
        return state
    return state._replace(acyclicity_scale=state.acyclicity_scale * dual.factor)


def _raises(weights, acyclicity_weight: float, dual: DualAscent) -> bool:
    """Whether dual ascent raises λ: W still has a cycle gain above the threshold and λ is
    below its cap."""
    return acyclicity_weight < dual.max_weight and cycle_gain(weights) > dual.max_cycle_gain


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
    dual_ascent: DualAscent | bool | None = True,
    restarts: int = 1,
    validation: float | PerturbationData | None = None,
    batch_size: int | PerturbationBatches | None = None,
    devices=None,
    progress: bool = True,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: str | os.PathLike | None = None,
) -> FitResult:
    """MAP (or any guide) by SVI, run in jitted `lax.scan` chunks of `CHUNK_STEPS` steps.

    Between chunks: a progress bar update, a NaN guard (on a non-finite loss or parameter
    the fit stops with a warning and keeps the parameters of the last finite chunk) and,
    with `dual_ascent`, a dual-ascent step on λ (`dual_ascent_step`). Schedules are
    evaluated into `(steps,)` arrays before the loop.

    With `restarts=R > 1`, R initialisations (one per split of `key`) run as one `vmap`ped
    program, and one restart is selected by its log-likelihood of held-out perturbations:
    `validation` (a fraction of the perturbations, default 0.2, or a `PerturbationData`) is
    taken out of `data`, the restarts are fitted on the rest, and the restart that predicts
    the held-out perturbations' cells best from their features (exact marginal, π from
    features) is returned. `FitResult.restarts` keeps every restart, the scores and how much
    the restarts agree (`Agreement`; a warning names what disagrees).

    Resumable runs: with `checkpoint=path` the loop state (optimiser state and PRNG key of
    every restart, dual-ascent scale, losses and schedule values so far) is written to `path`
    between chunks and after the last one, atomically (a temporary file in the same
    directory, then `os.replace`: a process killed while writing leaves the previous
    checkpoint whole). `fit(..., resume=path)` with the same model, data, key and settings
    continues that run from its last checkpoint to `steps` and returns what the
    uninterrupted run returns (bit for bit on CPU; `FitResult.seconds` counts this call
    only). `steps` may also be raised to extend a finished run, as long as the β_I and λ
    schedules give the same values at the steps done — the default ramps depend on
    `steps`, so pass explicit schedules to extend (dual ascent starts at `DualAscent.start ·
    steps`, so with it an extended run may raise λ after other chunks than one run to the
    larger `steps`). A checkpoint from another model, data
    set, key, guide, optimizer state layout, batch size, restart count, validation split,
    dual-ascent setting, `CHUNK_STEPS` or package version raises a ValueError naming the
    difference. The optimizer is checked by its state layout only: an optax transformation
    does not expose its learning rate, so give the same `optimizer` when resuming.

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
        dual_ascent: a `DualAscent`; True: `DualAscent()`; False/None: λ as scheduled. On the
            benchmark the default fired on 1 of 5 seeds and left the others as they were.
        restarts: number of initialisations R (>= 1).
        validation: with restarts, the held-out perturbations: a fraction in (0, 1) of the
            perturbations of `data` (default 0.2 when R > 1), a `PerturbationData` with
            cells (then `data` is used whole), or 0 to select by the final training loss.
        batch_size: minibatches. An int b: b cells per context per step (see
            `stratified_batch`); a step then costs O(n_contexts · b), not O(n_cells), but
            the target posterior loses accuracy (`inference.batching` says why). A
            `PerturbationBatches(n)`: n whole perturbations and a subsample of the control
            cells per step, unbiased for the full log-likelihood (`perturbation_batch`).
            None: full batch.
        devices: a sequence of JAX devices to shard the cells over (data parallel; see
            `shard_cells`); None keeps everything on the default device.
        progress: show a tqdm progress bar.
        checkpoint: file to write the loop state to (see above); None: no checkpoints.
        checkpoint_every: steps between checkpoints, rounded up to whole chunks of
            `CHUNK_STEPS` (a checkpoint is written after the first chunk that ends at least
            this many steps after the previous one, and after the last chunk). None: after
            every chunk.
        resume: a checkpoint file to continue from (may equal `checkpoint`).

    Returns:
        A `FitResult`.

    Example:
        >>> res = fit(GIM(10, 10), data, steps=30_000, key=jax.random.key(0),
        ...           optimizer=optax.adam(1e-3), restarts=4)  # doctest: +SKIP
    """
    steps, optimizer, batch_size, devices, checkpoint_every = _checked_arguments(
        data, steps, optimizer, target_sparsity, acyclicity_weight, restarts, batch_size,
        devices, checkpoint, checkpoint_every)
    data = _fit_data(model, data, batch_size)
    saved = None if resume is None else ckpt.read_checkpoint(resume)
    settings = _checkpoint_settings(model, data, key, optimizer, guide, dual_ascent, restarts,
                                    validation, batch_size, devices)
    start = time.perf_counter()
    run = _setup(model, data, key, steps=steps, optimizer=optimizer, guide=guide,
                 schedules=(target_sparsity, acyclicity_weight),
                 dual=_dual_ascent(dual_ascent), restarts=int(restarts),
                 validation=validation, batch_size=batch_size, devices=devices)
    settings["state_layout"] = [str(jax.tree_util.tree_structure(run.state)),
                                ckpt.leaf_spec(jax.tree_util.tree_leaves(run.state))]
    loop = _Loop(run.state, 0, np.ones(run.restarts, dtype=bool), "", [])
    if saved is not None:
        loop = _Loop(*_resume(resume, saved, settings, run.state, steps, *run.xs[:2]))
    loop = _run_chunks(run, loop, steps, progress, _Checkpointing(
        checkpoint, CHUNK_STEPS if checkpoint_every is None else int(checkpoint_every),
        settings))
    return _fit_result(model, run, loop, time.perf_counter() - start)


class _Run(NamedTuple):
    """The pieces of one `fit` that stay fixed through its loop."""

    svi: SVI
    guide: object
    run_chunk: object  # jitted (FitState, chunk of xs, data, pad weights) -> (state, losses)
    xs: tuple  # (betas, lams, step index), each (steps,)
    data: PerturbationData
    pad_weights: object
    state: FitState  # the initial state
    dual: DualAscent | None
    restarts: int
    held_out: PerturbationData | None


class _Loop(NamedTuple):
    """Where `fit`'s loop stands between chunks."""

    state: FitState
    done: int
    alive: np.ndarray  # (restarts,) bool
    message: str
    losses: list  # of (chunk, restarts) arrays


class _Checkpointing(NamedTuple):
    path: str | os.PathLike | None
    every: int
    settings: dict


def _checked_arguments(data, steps, optimizer, target_sparsity, acyclicity_weight, restarts,
                       batch_size, devices, checkpoint, checkpoint_every):
    """`fit`'s arguments checked: `(steps, optimizer, batch_size, devices,
    checkpoint_every)` with defaults filled in."""
    steps = capped_steps(check_integer("steps", steps))
    if not isinstance(data, PerturbationData) or not data.has_cells:
        raise ValueError("data must be a PerturbationData with cells (data.x is None)")
    if batch_size is not None and not isinstance(batch_size, PerturbationBatches):
        batch_size = check_integer("batch_size", batch_size)
    if batch_size is not None and devices is not None:
        raise ValueError("give batch_size or devices, not both")
    check_integer("restarts", restarts)
    if devices is not None:
        devices = _check_devices(devices)
    optimizer = optax.adam(1e-3) if optimizer is None else optimizer
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(f"optimizer must be an optax GradientTransformation such as "
                        f"optax.adam(1e-3), got {type(optimizer).__name__}")
    check_scalar_or_schedule("target_sparsity", target_sparsity)
    check_scalar_or_schedule("acyclicity_weight", acyclicity_weight)
    if checkpoint_every is not None:
        if checkpoint is None:
            raise ValueError("checkpoint_every needs checkpoint=path")
        checkpoint_every = check_integer("checkpoint_every", checkpoint_every)
    return int(steps), optimizer, batch_size, devices, checkpoint_every


def _fit_data(model: GIM, data: PerturbationData, batch_size) -> PerturbationData:
    """The data the fit reads: moments shared over processes and attached where the model
    reads them (with a warning when minibatches are asked of a model that needs none)."""
    if jax.process_count() > 1:  # one shard of the cells per process: share the moments
        if not model.cell_model.mechanism.is_linear or model.statistics == "cells":
            raise ValueError(f"fit over {jax.process_count()} processes needs moments: a "
                             f"linear mechanism and statistics='auto' or 'moments' (got "
                             f"mechanism={model.mechanism!r}, statistics="
                             f"{model.statistics!r}); fit an MLP in one process with "
                             "devices=")
        data = share_moments(data)
    data = model.with_moments(data)
    if batch_size is not None and data.moments is not None and model.statistics == "auto" \
            and model.cell_model.mechanism.is_linear:
        warnings.warn(f"batch_size={batch_size}: a linear GIM's full-batch step reads each "
                      "context's moments and costs the same for any number of cells, with "
                      "no minibatch noise; drop batch_size (the minibatches asked for are "
                      "used)", UserWarning, stacklevel=3)
    if model.shrinkage is not None:
        _, first = data.perturbation_contexts()
        warn_constant_features(np.asarray(data.features)[first], "data.features")
    return data


def _batch_source(data: PerturbationData, batch_size, devices, key):
    """`(data, pad_weights, step_data)`: the data as placed (sharded with `devices`) and a
    jittable `step_data(step, data, pad_weights) -> (batch, cell_weights,
    context_weights)` giving each step's batch."""
    if batch_size is None:
        batches = None
    elif isinstance(batch_size, PerturbationBatches):
        batches = PerturbationBatchIndex.build(data, batch_size)
    else:
        batches = BatchIndex.build(data, int(batch_size))
    pad_weights = None
    if devices is not None:
        data, pad_weights = shard_cells(data, devices)

    def step_data(step, data, pad_weights):
        if batches is None:
            return data, pad_weights, None
        step_key = jax.random.fold_in(key, step)
        if isinstance(batches, PerturbationBatchIndex):
            return perturbation_batch(step_key, data, batches)
        return (*stratified_batch(step_key, data, batches), None)

    return data, pad_weights, step_data


def _setup(model: GIM, data: PerturbationData, key, *, steps: int, optimizer, guide,
           schedules, dual: DualAscent | None, restarts: int, validation, batch_size,
           devices) -> _Run:
    """The SVI objects, schedule values, jitted chunk and initial state of a fit."""
    data, held_out = split_validation(data, validation, restarts)
    guides = restart_guides(model, guide, restarts, data)
    target_sparsity, acyclicity_weight = schedules
    if target_sparsity is None:
        target_sparsity = cosine_ramp(model.target_sparsity, steps - 1)
    if acyclicity_weight is None:
        acyclicity_weight = cosine_ramp(model.acyclicity_weight, 0.5 * (steps - 1))
    betas = per_step_values("target_sparsity", target_sparsity, steps)
    lams = per_step_values("acyclicity_weight", acyclicity_weight, steps)
    max_weight = math.inf if dual is None else dual.max_weight
    svis = [SVI(model, g, optax_to_numpyro(optimizer), SortedTraceELBO()) for g in guides]
    svi = svis[0]
    key, batch_key = jax.random.split(key)
    data, pad_weights, step_data = _batch_source(data, batch_size, devices, batch_key)

    def update(svi_state, batch, beta, lam, cell_weights, context_weights):
        return svi.update(svi_state, batch, target_sparsity=beta, acyclicity_weight=lam,
                          cell_weights=cell_weights, context_weights=context_weights)

    if restarts > 1:  # one program for all restarts: the cells are shared, the state is not
        update = jax.vmap(update, in_axes=(0, None, None, 0, None, None))

    @jax.jit
    def run_chunk(state: FitState, xs, data, pad_weights):
        def body(state: FitState, x):
            beta, lam, step = x
            batch, cell_weights, context_weights = step_data(step, data, pad_weights)
            lam = acyclicity_weight_at(lam, state.acyclicity_scale, max_weight)
            svi_state, loss = update(state.svi_state, batch, beta, lam, cell_weights,
                                     context_weights)
            return state._replace(svi_state=svi_state), loss
        return lax.scan(body, state, xs)

    batch0, w0, v0 = step_data(0, data, pad_weights)
    init_keys = [key] if restarts == 1 else list(jax.random.split(key, restarts))
    states = [s.init(k, batch0, target_sparsity=betas[0], acyclicity_weight=lams[0],
                     cell_weights=w0, context_weights=v0)
              for s, k in zip(svis, init_keys, strict=True)]
    if restarts == 1:
        state = FitState(states[0], jnp.ones((), lams.dtype))
    else:
        state = FitState(jax.tree_util.tree_map(lambda *a: jnp.stack(a), *states),
                         jnp.ones((restarts,), lams.dtype))
    xs = (betas, lams, jnp.arange(steps, dtype=jnp.int32))
    return _Run(svi, guides[0], run_chunk, xs, data, pad_weights, state, dual, restarts,
                held_out)


def _run_chunks(run: _Run, loop: _Loop, steps: int, progress: bool,
                checkpointing: _Checkpointing) -> _Loop:
    """Run `fit`'s loop from `loop` to `steps`: jitted chunks of `CHUNK_STEPS` steps, and
    between them dual ascent, the NaN guard, checkpoints and the progress bar."""
    written = loop.done
    bar = _progress_bar(steps, progress)
    if bar is not None:
        bar.update(loop.done)
    while loop.done < steps and loop.alive.any():
        state, done = loop.state, loop.done
        # between chunks (here, so that a resumed run takes the same step after its
        # checkpoint): dual ascent on λ
        if done > 0 and run.dual is not None and run.dual.start * steps <= done:
            state = _dual_ascent_all(state, run.xs[1][done], run.dual, run.guide, run.svi,
                                     run.restarts, run.svi.model.scm_weights)
        n = min(CHUNK_STEPS, steps - done)
        chunk = jax.tree_util.tree_map(lambda a, lo=done, hi=done + n: a[lo:hi], run.xs)
        new_state, chunk_losses = run.run_chunk(state, chunk, run.data, run.pad_weights)
        loop = _guard_nonfinite(run, loop._replace(state=state), new_state,
                                np.asarray(chunk_losses).reshape(n, -1))
        if loop.done == done:  # the one fit hit a non-finite value: stopped
            break
        if checkpointing.path is not None and (loop.done - written >= checkpointing.every
                                               or loop.done == steps):
            _write(checkpointing.path, loop.state, checkpointing.settings, loop.done, steps,
                   loop.alive, loop.message, loop.losses, *run.xs[:2])
            written = loop.done
        if bar is not None:
            bar.update(n)
            bar.set_postfix(loss=f"{np.nanmin(loop.losses[-1][-1]):.4g}")
    if bar is not None:
        bar.close()
    return loop


def _guard_nonfinite(run: _Run, loop: _Loop, new_state: FitState, chunk_losses) -> _Loop:
    """The loop after a chunk: on a non-finite loss or parameter a warning, and the restarts
    it hit stopped with the parameters of their last finite chunk (one fit: stopped)."""
    n = chunk_losses.shape[0]
    done, alive, message = loop.done, loop.alive, loop.message
    finite = np.all(np.isfinite(chunk_losses), axis=0) & _finite_per_restart(
        run.svi.get_params(new_state.svi_state), run.restarts)
    if not finite.all():
        first = done + int(np.argmin(np.all(np.isfinite(chunk_losses), axis=1)))
        message = (
            f"non-finite loss or parameters within steps {done}..{done + n - 1} "
            f"(first non-finite loss at step {first}); stopped and kept the parameters "
            f"after step {done - 1}. Try a smaller learning rate in `optimizer`."
        )
        if run.restarts > 1:
            message = f"restarts {np.flatnonzero(alive & ~finite).tolist()}: " + message
        warnings.warn(message, RuntimeWarning, stacklevel=4)
        if run.restarts == 1:
            return loop._replace(message=message)
        alive = alive & finite
        new_state = keep_live_restarts(alive, new_state, loop.state)
        chunk_losses = np.where(alive, chunk_losses, np.nan)
    return _Loop(new_state, done + n, alive, message, [*loop.losses, chunk_losses])


def _fit_result(model: GIM, run: _Run, loop: _Loop, seconds: float) -> FitResult:
    """The `FitResult` of a finished loop (with restarts: the selected one)."""
    guide, state = run.guide, loop.state
    losses = np.concatenate(loop.losses) if loop.losses else np.zeros((0, run.restarts))
    params = run.svi.get_params(state.svi_state)
    if run.restarts == 1:
        losses = losses[:, 0]
        sites = {k: v for k, v in guide.median(params).items() if k in model.site_shapes}
        return FitResult(sites, losses, SVIRunResult(params, state.svi_state,
                                                     jnp.asarray(losses)),
                         guide, loop.message, seconds)
    all_sites = jax.vmap(lambda p: {k: v for k, v in guide.median(p).items()
                                    if k in model.site_shapes})(params)
    report = select_restart(model, all_sites, losses.T, loop.alive, run.held_out, run.data)
    chosen = {k: v[report.selected] for k, v in all_sites.items()}
    if report.agreement.message:
        warnings.warn(report.agreement.message, UserWarning, stacklevel=3)
    return FitResult(chosen, losses[:, report.selected],
                     SVIRunResult(params, state.svi_state, jnp.asarray(losses.T)), guide,
                     loop.message, seconds, report)


def _checkpoint_settings(model, data, key, optimizer, guide, dual_ascent, restarts,
                         validation, batch_size, devices) -> dict:
    """What must match between a checkpoint and the fit that resumes it (JSON-able)."""
    held = validation if isinstance(validation, PerturbationData) else None
    return {
        "version": ckpt.package_version(),
        "model": ckpt.model_description(model),
        "data": ckpt.data_fingerprint(data),
        "key": ckpt.key_fingerprint(key),
        "optimizer": type(optimizer).__name__ if optimizer is not None else "adam(1e-3)",
        "guide": "AutoDelta" if guide is None else getattr(guide, "__name__",
                                                           type(guide).__name__),
        "dual_ascent": ckpt.describe(_dual_ascent(dual_ascent)),
        "restarts": int(restarts),
        "validation": ckpt.data_fingerprint(held) if held is not None
        else ckpt.describe(validation),
        "batch_size": None if batch_size is None else (
            list(batch_size) if isinstance(batch_size, PerturbationBatches)
            else int(batch_size)),
        "devices": None if devices is None else len(list(devices)),
        "chunk_steps": CHUNK_STEPS,
        "x64": bool(jax.config.jax_enable_x64),
    }


def _write(path, state: FitState, settings: dict, done: int, steps: int, alive, message: str,
           losses: list, betas, lams) -> None:
    header = {"format": ckpt.CHECKPOINT_FORMAT, "version": settings["version"],
              "steps_done": int(done), "steps": int(steps), "message": message,
              "alive": [bool(a) for a in alive], "settings": settings}
    ckpt.write_checkpoint(path, state, header=header, losses=np.concatenate(losses),
                          target_sparsity=np.asarray(betas[:done]),
                          acyclicity_weight=np.asarray(lams[:done]))


def _resume(path, saved: ckpt.Checkpoint, settings: dict, template: FitState, steps: int,
            betas, lams):
    """`(state, steps done, alive, message, losses)` of a checkpoint, after checking that
    it belongs to this fit (settings and the schedule values of the steps done)."""
    ckpt.check_settings(path, saved.header["settings"], settings)
    done = int(saved.header["steps_done"])
    if done > steps:
        raise ValueError(f"resume: the checkpoint {path!r} has {done} steps done, more than "
                         f"steps={steps}")
    for name, used, now in (("target_sparsity", saved.target_sparsity, betas),
                            ("acyclicity_weight", saved.acyclicity_weight, lams)):
        now = np.asarray(now[:done])
        if used.shape != now.shape or not np.array_equal(used, now.astype(used.dtype)):
            first = int(np.argmax(used != now)) if used.shape == now.shape else 0
            raise ValueError(
                f"resume: the {name} schedule gives other values than the checkpoint's at "
                f"the {done} steps done (first at step {first}); the default ramps depend "
                "on steps: resume with the same steps, or pass the schedule explicitly")
    state = ckpt.restore_state(template, saved.leaves)
    losses = [np.asarray(saved.losses)] if done else []
    return (state, done, np.asarray(saved.header["alive"], bool), saved.header["message"],
            losses)


def _check_devices(devices) -> list:
    if isinstance(devices, (str, bytes)) or not hasattr(devices, "__iter__"):
        raise TypeError(f"devices must be a sequence of JAX devices (e.g. jax.devices()), "
                        f"got {type(devices).__name__}")
    devices = list(devices)
    if not devices or not all(isinstance(d, jax.Device) for d in devices):
        raise ValueError(f"devices must be a non-empty sequence of JAX devices (e.g. "
                         f"jax.devices()), got {devices!r}")
    return devices


def _finite_per_restart(params, restarts: int) -> np.ndarray:
    if restarts == 1:
        return np.array([_finite(params)])
    ok = np.ones(restarts, dtype=bool)
    for leaf in jax.tree_util.tree_leaves(params):
        ok &= np.asarray(jnp.isfinite(leaf).reshape(restarts, -1).all(1))
    return ok


def _dual_ascent_all(state: FitState, lam, dual: DualAscent, guide, svi, restarts: int,
                     scm_weights):
    """`dual_ascent_step` for one fit or for each restart; `scm_weights`: the model's map
    from the `weights` site to the weights its SCM uses (`GIM.scm_weights`)."""
    params = svi.get_params(state.svi_state)
    if restarts == 1:
        lam_now = float(acyclicity_weight_at(lam, state.acyclicity_scale, dual.max_weight))
        return dual_ascent_step(state, scm_weights(guide.median(params)["weights"]), lam_now,
                                dual)
    weights = jax.vmap(lambda p: scm_weights(guide.median(p)["weights"]))(params)
    scales = np.asarray(state.acyclicity_scale)
    lam_now = np.asarray(acyclicity_weight_at(lam, scales, dual.max_weight))
    raised = [_raises(weights[r], float(lam_now[r]), dual) for r in range(restarts)]
    return state._replace(acyclicity_scale=jnp.asarray(
        np.where(raised, scales * dual.factor, scales), state.acyclicity_scale.dtype))


def _dual_ascent(value) -> DualAscent | None:
    if value is True:
        return DualAscent()
    if value is False or value is None:
        return None
    if isinstance(value, DualAscent):
        return value
    raise TypeError(f"dual_ascent must be a DualAscent, True, False or None, "
                    f"got {type(value).__name__}")


def _finite(tree) -> bool:
    return all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree_util.tree_leaves(tree))


def _progress_bar(total, enabled):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="fit", unit="step", mininterval=0.5)


__all__ = ["CHUNK_STEPS", "DualAscent", "FitResult", "FitState", "acyclicity_weight_at",
           "cycle_gain", "dual_ascent_step", "fit"]
