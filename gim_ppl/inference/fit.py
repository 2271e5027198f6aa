"""MAP `fit` of a `GIM` by SVI, configured by values.

The optimiser is an optax `GradientTransformation`; the sparsity weight β_I and the
acyclicity weight λ are each a float or a schedule (a callable `step -> value`, as optax's
`ScalarOrSchedule`); dual ascent on λ is a `DualAscent` value and its state a `FitState`
NamedTuple carried through the loop. Nothing here is needed to fit a GIM with `SVI.run`.
"""

from __future__ import annotations

import math
import numbers
import time
import warnings
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from numpyro.infer import SVI, Trace_ELBO
from numpyro.infer.autoguide import AutoDelta, AutoGuide
from numpyro.infer.svi import SVIRunResult, SVIState
from numpyro.optim import optax_to_numpyro

from gim_ppl.core.mechanisms import masked_weights
from gim_ppl.data import PerturbationData
from gim_ppl.inference.batching import BatchIndex, shard_cells, stratified_batch
from gim_ppl.model import GIM

#: Steps per jitted `lax.scan` chunk. Between chunks `fit` updates the progress bar, checks
#: for non-finite values and takes a dual-ascent step, so the chunk length is part of the
#: algorithm (it sets when λ may rise), not only of its speed.
CHUNK_STEPS = 1000

Schedule = Callable[[jnp.ndarray], jnp.ndarray]
ScalarOrSchedule = float | Schedule


class Restarts(NamedTuple):
    """Every restart of a `fit(..., restarts=R)` and how one was chosen.

    Attributes:
        sites: the fitted sites of every restart, each with a leading `(R,)` restart axis
            (pass to the model's read-offs as draws, or index one restart).
        losses: `(R, n_steps_run)` training loss of every restart.
        scores: `(R,)` held-out log-likelihood per held-out cell of every restart (higher is
            better; `-inf` for a restart that diverged), or the negative final training loss
            per cell when nothing was held out.
        selected: index of the restart `FitResult.sites` holds.
        criterion: what `scores` measure ("held-out perturbations" or "training loss").
        validation: the held-out part of the data (None without a hold-out).
        agreement: `Agreement` of the restarts with the selected one.
    """

    sites: dict
    losses: np.ndarray
    scores: np.ndarray
    selected: int
    criterion: str
    validation: PerturbationData | None
    agreement: Agreement


class Agreement(NamedTuple):
    """How much the restarts of a fit agree with the selected one.

    Attributes:
        same_skeleton: share of restarts whose graph (`model.graph`) has the selected
            restart's skeleton (edges regardless of direction).
        same_graph: share with the same directed graph.
        target_spread: mean absolute difference between a restart's posterior target
            probabilities and the selected restart's, over restarts, contexts and variables.
        message: empty, or what disagrees (also issued as a warning by `fit`).
    """

    same_skeleton: float
    same_graph: float
    target_spread: float
    message: str


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


def cosine_ramp(final: float, ramp_steps: float) -> Schedule:
    """A schedule rising as half a cosine from 0 at step 0 to `final` at step `ramp_steps`,
    then flat: `final · ½ (1 − cos(π · clip(t / ramp_steps, 0, 1)))`.

    Augmented-Lagrangian-style annealing: with `fit`'s defaults β_I ramps over all steps and
    λ over the first half, so edges first fit freely and the weaker direction of each
    2-cycle is then pruned.

    Args:
        final: the value from step `ramp_steps` on.
        ramp_steps: length of the ramp in steps (values below 1 count as 1).

    Returns:
        A callable `step -> value`, `step` an int array of any shape (optax schedule
        convention); float32 values unless x64 is enabled.

    Example:
        >>> schedule = cosine_ramp(2.0, 100)
        >>> float(schedule(0)), float(schedule(50)), float(schedule(500))
        (0.0, 1.0, 2.0)
    """
    denominator = max(float(ramp_steps), 1.0)
    final = float(final)

    def schedule(step):
        t = jnp.clip(jnp.asarray(step) / denominator, 0.0, 1.0)
        return final * 0.5 * (1.0 - jnp.cos(math.pi * t))

    return schedule


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


def cycle_gain(weights) -> float:
    """Spectral radius of |W| with the diagonal masked: the largest geometric-mean edge
    weight around a cycle of `weights (n_vars, n_vars)`, 0 for a DAG. Host-side, O(d³)."""
    w = np.abs(np.asarray(masked_weights(jnp.asarray(weights))))
    return float(np.max(np.abs(np.linalg.eigvals(w)))) if w.size else 0.0


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
    if acyclicity_weight >= dual.max_weight or cycle_gain(weights) <= dual.max_cycle_gain:
        return state
    return state._replace(acyclicity_scale=state.acyclicity_scale * dual.factor)


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
    batch_size: int | None = None,
    devices=None,
    progress: bool = True,
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

    Args:
        model: a `GIM`.
        data: training `PerturbationData` with cells, `x (n_cells, n_vars)`.
        steps: optimiser steps.
        key: PRNG key (same key ⇒ same result).
        optimizer: an optax `GradientTransformation`; default `optax.adam(1e-3)`.
        guide: default `AutoDelta(model)`; any NumPyro guide with `median` works. With
            restarts, a guide class or factory `model -> guide` (e.g. `AutoNormal`), since
            every restart needs its own initialisation.
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
        batch_size: cells per context per step (stratified minibatches, see
            `stratified_batch`); a step then costs O(n_contexts · batch_size), not
            O(n_cells). None: full batch.
        devices: a sequence of JAX devices to shard the cells over (data parallel; see
            `shard_cells`); None keeps everything on the default device.
        progress: show a tqdm progress bar.

    Returns:
        A `FitResult`.

    Example:
        >>> res = fit(GIM(10, 10), data, steps=30_000, key=jax.random.key(0),
        ...           optimizer=optax.adam(1e-3), restarts=4)  # doctest: +SKIP
    """
    if int(steps) < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not isinstance(data, PerturbationData) or not data.has_cells:
        raise ValueError("data must be a PerturbationData with cells (data.x is None)")
    if batch_size is not None and int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1 cells per context, got {batch_size}")
    if batch_size is not None and devices is not None:
        raise ValueError("give batch_size or devices, not both")
    if isinstance(restarts, bool) or int(restarts) != restarts or restarts < 1:
        raise ValueError(f"restarts must be an integer >= 1, got {restarts!r}")
    optimizer = optax.adam(1e-3) if optimizer is None else optimizer
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(f"optimizer must be an optax GradientTransformation such as "
                        f"optax.adam(1e-3), got {type(optimizer).__name__}")
    _check_scalar_or_schedule("target_sparsity", target_sparsity)
    _check_scalar_or_schedule("acyclicity_weight", acyclicity_weight)
    dual = _dual_ascent(dual_ascent)
    restarts = int(restarts)
    guides = _guides(model, guide, restarts)
    data, held_out = _validation_split(data, validation, restarts)

    steps = int(steps)
    if target_sparsity is None:
        target_sparsity = cosine_ramp(model.target_sparsity, steps - 1)
    if acyclicity_weight is None:
        acyclicity_weight = cosine_ramp(model.acyclicity_weight, 0.5 * (steps - 1))
    betas = _per_step("target_sparsity", target_sparsity, steps)
    lams = _per_step("acyclicity_weight", acyclicity_weight, steps)
    max_weight = math.inf if dual is None else dual.max_weight
    svis = [SVI(model, g, optax_to_numpyro(optimizer), Trace_ELBO()) for g in guides]
    svi, guide = svis[0], guides[0]

    key, batch_key = jax.random.split(key)
    batches = None if batch_size is None else BatchIndex.build(data, int(batch_size))
    pad_weights = None
    if devices is not None:
        data, pad_weights = shard_cells(data, devices)

    def step_data(step, data, pad_weights):
        if batches is None:
            return data, pad_weights
        return stratified_batch(jax.random.fold_in(batch_key, step), data, batches)

    def update(svi_state, batch, beta, lam, cell_weights):
        return svi.update(svi_state, batch, target_sparsity=beta, acyclicity_weight=lam,
                          cell_weights=cell_weights)

    if restarts > 1:  # one program for all restarts: the cells are shared, the state is not
        update = jax.vmap(update, in_axes=(0, None, None, 0, None))

    @jax.jit
    def run_chunk(state: FitState, xs, data, pad_weights):
        def body(state: FitState, x):
            beta, lam, step = x
            batch, cell_weights = step_data(step, data, pad_weights)
            lam = acyclicity_weight_at(lam, state.acyclicity_scale, max_weight)
            svi_state, loss = update(state.svi_state, batch, beta, lam, cell_weights)
            return state._replace(svi_state=svi_state), loss
        return lax.scan(body, state, xs)

    start = time.perf_counter()
    xs = (betas, lams, jnp.arange(steps, dtype=jnp.int32))
    batch0, w0 = step_data(0, data, pad_weights)
    init_keys = [key] if restarts == 1 else list(jax.random.split(key, restarts))
    states = [s.init(k, batch0, target_sparsity=betas[0], acyclicity_weight=lams[0],
                     cell_weights=w0) for s, k in zip(svis, init_keys, strict=True)]
    if restarts == 1:
        state = FitState(states[0], jnp.ones((), lams.dtype))
    else:
        state = FitState(jax.tree_util.tree_map(lambda *a: jnp.stack(a), *states),
                         jnp.ones((restarts,), lams.dtype))
    alive = np.ones(restarts, dtype=bool)
    losses, message, done = [], "", 0
    bar = _progress_bar(steps, progress)
    while done < steps and alive.any():
        n = min(CHUNK_STEPS, steps - done)
        chunk = jax.tree_util.tree_map(lambda a, lo=done, hi=done + n: a[lo:hi], xs)
        new_state, chunk_losses = run_chunk(state, chunk, data, pad_weights)
        chunk_losses = np.asarray(chunk_losses).reshape(n, -1)  # (n, R)
        finite = np.all(np.isfinite(chunk_losses), axis=0) & _finite_per_restart(
            svi.get_params(new_state.svi_state), restarts)
        if not finite.all():
            first = done + int(np.argmin(np.all(np.isfinite(chunk_losses), axis=1)))
            message = (
                f"non-finite loss or parameters within steps {done}..{done + n - 1} "
                f"(first non-finite loss at step {first}); stopped and kept the parameters "
                f"after step {done - 1}. Try a smaller learning rate in `optimizer`."
            )
            if restarts > 1:
                message = f"restarts {np.flatnonzero(alive & ~finite).tolist()}: " + message
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            if restarts == 1:
                break
            alive &= finite
            new_state = _keep(alive, new_state, state)
            chunk_losses = np.where(alive, chunk_losses, np.nan)
        state, done = new_state, done + n
        losses.append(chunk_losses)
        if dual is not None and dual.start * steps <= done < steps:
            state = _dual_ascent_all(state, lams[done], dual, guide, svi, restarts)
        if bar is not None:
            bar.update(n)
            bar.set_postfix(loss=f"{np.nanmin(chunk_losses[-1]):.4g}")
    if bar is not None:
        bar.close()
    losses = np.concatenate(losses) if losses else np.zeros((0, restarts))
    params = svi.get_params(state.svi_state)
    seconds = time.perf_counter() - start
    if restarts == 1:
        losses = losses[:, 0]
        sites = {k: v for k, v in guide.median(params).items() if k in model.site_shapes}
        return FitResult(sites, losses, SVIRunResult(params, state.svi_state,
                                                     jnp.asarray(losses)),
                         guide, message, seconds)

    all_sites = jax.vmap(lambda p: {k: v for k, v in guide.median(p).items()
                                    if k in model.site_shapes})(params)
    report = select_restart(model, all_sites, losses.T, alive, held_out, data)
    chosen = {k: v[report.selected] for k, v in all_sites.items()}
    if report.agreement.message:
        warnings.warn(report.agreement.message, UserWarning, stacklevel=2)
    return FitResult(chosen, losses[:, report.selected],
                     SVIRunResult(params, state.svi_state, jnp.asarray(losses.T)), guide,
                     message, seconds, report)


def select_restart(model: GIM, sites: dict, losses, alive, validation, data) -> Restarts:
    """Score restarts and pick one (see `fit`).

    Args:
        sites: fitted sites with a leading `(R,)` restart axis.
        losses: `(R, n_steps)` training losses.
        alive: `(R,)` bool, False for restarts that diverged.
        validation: held-out `PerturbationData` with cells, or None (select by the final
            training loss per cell).
        data: the data the restarts were fitted on (for the agreement of their targets).
    """
    alive = np.asarray(alive, bool)
    if validation is not None:
        per_cell = model.log_likelihood(sites, validation) / validation.n_cells
        criterion = "held-out perturbations"
    else:
        per_cell = -np.asarray(losses)[:, -1] / data.n_cells
        criterion = "training loss"
    scores = np.where(alive & np.isfinite(per_cell), per_cell, -np.inf)
    selected = int(np.argmax(scores))
    return Restarts(sites, np.asarray(losses), scores, selected, criterion, validation,
                    restart_agreement(model, sites, data, selected, alive))


def restart_agreement(model: GIM, sites: dict, data: PerturbationData, selected: int,
                      alive=None, *, min_share: float = 0.5) -> Agreement:
    """How far the restarts in `sites` (leading `(R,)` axis) agree with restart `selected`:
    graphs read off each restart (`model.graph`) and posterior target probabilities on
    `data`. The message names what disagrees when under `min_share` of the live restarts
    share the selected graph's skeleton, or targets differ by more than 0.1 on average."""
    n = next(iter(sites.values())).shape[0]
    alive = np.ones(n, bool) if alive is None else np.asarray(alive, bool)
    live = np.flatnonzero(alive)
    with warnings.catch_warnings():  # cycles broken in a restart's read-off are not news here
        warnings.simplefilter("ignore")
        graphs = [model.graph({k: v[r] for k, v in sites.items()}) for r in live]
    ref = graphs[int(np.flatnonzero(live == selected)[0])]
    skeleton = [np.array_equal(g | g.T, ref | ref.T) for g in graphs]
    same = [np.array_equal(g, ref) for g in graphs]
    post = np.asarray(model.posterior_targets({k: v[live] for k, v in sites.items()}, data))
    spread = float(np.abs(post - post[int(np.flatnonzero(live == selected)[0])]).mean())
    problems = []
    if np.mean(skeleton) < min_share:
        problems.append(f"only {np.mean(skeleton):.0%} of the restarts share the selected "
                        "graph's skeleton")
    elif np.mean(same) < min_share:
        problems.append(f"only {np.mean(same):.0%} of the restarts orient the selected graph's "
                        "edges the same way")
    if spread > 0.1:
        problems.append(f"posterior target probabilities differ by {spread:.2f} on average "
                        "between restarts")
    message = ("restarts disagree: " + "; ".join(problems) + " — read the graph and targets "
               "as uncertain (FitResult.restarts has every restart)") if problems else ""
    return Agreement(float(np.mean(skeleton)), float(np.mean(same)), spread, message)


def _guides(model: GIM, guide, restarts: int) -> list:
    """One guide per restart (each restart needs its own initialisation)."""
    if guide is None:
        return [AutoDelta(model) for _ in range(restarts)]
    if isinstance(guide, type):  # a guide class, e.g. AutoNormal
        return [guide(model) for _ in range(restarts)]
    if isinstance(guide, AutoGuide) or restarts == 1:
        if restarts > 1:
            raise ValueError("with restarts > 1, pass guide as a class or factory "
                             "(e.g. guide=AutoNormal), not an instance: each restart needs "
                             "its own initialisation")
        return [guide]
    if not callable(guide):
        raise TypeError(f"guide must be a NumPyro guide, class or factory, got {type(guide)}")
    return [guide(model) for _ in range(restarts)]


def _validation_split(data: PerturbationData, validation, restarts: int):
    """`(training data, held-out data or None)` for restart selection."""
    if restarts == 1:
        if validation not in (None, 0, 0.0):
            raise ValueError("validation selects among restarts: give restarts > 1")
        return data, None
    if isinstance(validation, PerturbationData):
        if not validation.has_cells:
            raise ValueError("validation must be a PerturbationData with cells")
        return data, validation
    fraction = 0.2 if validation is None else validation
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real):
        raise TypeError(f"validation must be a fraction, a PerturbationData or None, got "
                        f"{type(validation).__name__}")
    if fraction == 0:
        return data, None
    if not 0 < fraction < 1:
        raise ValueError(f"validation must be a fraction in (0, 1) of the perturbations, got "
                         f"{fraction}")
    ids, _ = data.perturbation_contexts()
    n_out = round(fraction * ids.size)
    if ids.size < 2 or n_out < 1 or n_out >= ids.size:
        raise ValueError(f"validation={fraction} holds out {n_out} of {ids.size} "
                         "perturbations; need at least one held out and one left to fit "
                         "(more perturbations, another fraction, or validation=0)")
    # every k-th perturbation, deterministic and spread over the perturbation index
    out = ids[np.round(np.linspace(0, ids.size - 1, n_out)).astype(int)]
    held = np.isin(np.asarray(data.perturbation), out)
    return data.subset(~held), data.subset(held | np.asarray(data.observational))


def _keep(alive, new, old):
    """`new` for live restarts, `old` for the others (leading restart axis)."""
    mask = jnp.asarray(alive)

    def pick(a, b):
        if jnp.ndim(a) == 0:
            return a
        m = mask.reshape((-1,) + (1,) * (jnp.ndim(a) - 1))
        return jnp.where(m, a, b)

    return jax.tree_util.tree_map(pick, new, old)


def _finite_per_restart(params, restarts: int) -> np.ndarray:
    if restarts == 1:
        return np.array([_finite(params)])
    ok = np.ones(restarts, dtype=bool)
    for leaf in jax.tree_util.tree_leaves(params):
        ok &= np.asarray(jnp.isfinite(leaf).reshape(restarts, -1).all(1))
    return ok


def _dual_ascent_all(state: FitState, lam, dual: DualAscent, guide, svi, restarts: int):
    """`dual_ascent_step` for one fit or for each restart."""
    params = svi.get_params(state.svi_state)
    if restarts == 1:
        lam_now = float(acyclicity_weight_at(lam, state.acyclicity_scale, dual.max_weight))
        return dual_ascent_step(state, guide.median(params)["weights"], lam_now, dual)
    weights = jax.vmap(lambda p: guide.median(p)["weights"])(params)
    scales = np.asarray(state.acyclicity_scale).copy()
    for r in range(restarts):
        one = FitState(None, jnp.asarray(scales[r]))
        lam_now = float(acyclicity_weight_at(lam, one.acyclicity_scale, dual.max_weight))
        scales[r] = float(dual_ascent_step(one, weights[r], lam_now, dual).acyclicity_scale)
    return state._replace(acyclicity_scale=jnp.asarray(scales, state.acyclicity_scale.dtype))


def _check_scalar_or_schedule(name: str, value) -> None:
    if value is None or callable(value):
        return
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{name} must be a float, a schedule (step -> value) or None, "
                        f"got {type(value).__name__}")
    if not value >= 0:
        raise ValueError(f"{name} must be >= 0, got {value}")


def _dual_ascent(value) -> DualAscent | None:
    if value is True:
        return DualAscent()
    if value is False or value is None:
        return None
    if isinstance(value, DualAscent):
        return value
    raise TypeError(f"dual_ascent must be a DualAscent, True, False or None, "
                    f"got {type(value).__name__}")


def _per_step(name: str, value: ScalarOrSchedule, steps: int) -> jnp.ndarray:
    """`(steps,)` values of a float or a schedule at steps 0, …, steps − 1."""
    if not callable(value):
        return jnp.full((steps,), value)
    values = jnp.asarray(jax.vmap(value)(jnp.arange(steps)))
    if values.shape != (steps,):
        raise ValueError(f"{name} schedule must return a scalar per step, got values of "
                         f"shape {values.shape[1:]}")
    if not jnp.issubdtype(values.dtype, jnp.floating):
        values = values.astype(jnp.result_type(float))
    return values


def _finite(tree) -> bool:
    return all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree_util.tree_leaves(tree))


def _progress_bar(total, enabled):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="fit", unit="step", mininterval=0.5)


__all__ = ["CHUNK_STEPS", "Agreement", "DualAscent", "FitResult", "FitState", "Restarts",
           "ScalarOrSchedule", "acyclicity_weight_at", "cosine_ramp", "cycle_gain",
           "dual_ascent_step", "fit", "restart_agreement", "select_restart"]
