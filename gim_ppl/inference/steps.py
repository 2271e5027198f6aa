"""The two pure pieces `fit` is composed of, as NumPyro's `SVI.init`/`update` and BlackJAX's
`init`/`step`: `fit_init` builds the loop state (`FitState`, restarts stacked along a
leading axis), `fit_step` takes one optimiser step on one batch. Both run without `fit`:

    state = fit_init(model, data, key)
    for step in range(steps):
        state, loss = fit_step(state, Batch(data), beta[step], lam[step])

`fit` runs `fit_step` inside jitted `lax.scan` chunks and puts its hooks (`inference.hooks`)
between the chunks.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax
from numpyro.infer import SVI, Trace_ELBO
from numpyro.infer.svi import SVIState
from numpyro.optim import optax_to_numpyro

from gim_ppl.data import PerturbationData
from gim_ppl.inference.batching import Batch
from gim_ppl.inference.restarts import restart_guides
from gim_ppl.model import GIM


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


@dataclasses.dataclass(frozen=True)
class FitState:
    """What `fit` carries through its loop: a pytree whose leaves are the SVI state and the
    dual-ascent scale, and whose static part is the `SVI` that `fit_step` updates with.

    Attributes:
        svi_state: NumPyro's `SVIState` (optimiser state, PRNG key); with R restarts every
            leaf has a leading `(R,)` axis.
        acyclicity_scale: `()`, or `(R,)` with restarts: the factor dual ascent has applied
            to the λ schedule (1 until it fires; see `acyclicity_weight_at`).
        svi: the `numpyro.infer.SVI` (model, guide, optimiser) of restart 0; static (not a
            leaf), so jitted functions of the state retrace only for another SVI. Restarts
            differ only in their starts, so all are updated with restart 0's SVI.
    """

    svi_state: SVIState
    acyclicity_scale: jnp.ndarray
    svi: SVI | None = dataclasses.field(default=None, metadata={"static": True})

    @property
    def restarts(self) -> int:
        """R, the number of restarts stacked in the state (1: no restart axis)."""
        shape = jnp.shape(self.acyclicity_scale)
        return int(shape[0]) if shape else 1

    def replace(self, **changes) -> FitState:
        """A copy with `changes` (field name → value)."""
        return dataclasses.replace(self, **changes)

    # the name NamedTuple states use, kept for code written against the NamedTuple FitState
    _replace = replace


jax.tree_util.register_dataclass(FitState, data_fields=["svi_state", "acyclicity_scale"],
                                 meta_fields=["svi"])


def fit_init(model: GIM, data: PerturbationData, key, *,
             optimizer: optax.GradientTransformation | None = None, guide=None,
             restarts: int = 1, batch: Batch | None = None) -> FitState:
    """The initial `FitState` of a fit of `model` to `data`.

    Args:
        model: a `GIM`.
        data: training `PerturbationData` with cells, `x (n_cells, n_vars)`; the guides start
            from it (`init_from_data`).
        key: PRNG key; with R > 1 restarts split into one key per restart.
        optimizer: an optax `GradientTransformation`; default `optax.adam(1e-3)`.
        guide: as `fit`'s: None (AutoDelta from the data), a guide, or with restarts a guide
            class or factory (`restart_guides`).
        restarts: R, the number of initialisations; R > 1 stacks their states along a leading
            `(R,)` axis, which `fit_step` then `vmap`s over.
        batch: the batch SVI traces the model on to set up its parameters (what `fit` gives
            its first step); default `Batch(data)`.

    Returns:
        A `FitState` with `acyclicity_scale` 1 (`()`, or `(R,)` with restarts).
    """
    optimizer = optax.adam(1e-3) if optimizer is None else optimizer
    batch = Batch(data) if batch is None else batch
    guides = restart_guides(model, guide, restarts, data)
    svis = [SVI(model, g, optax_to_numpyro(optimizer), SortedTraceELBO()) for g in guides]
    keys = [key] if restarts == 1 else list(jax.random.split(key, restarts))
    # β and λ enter the loss, not the parameters' shapes or starts: any value will do here
    states = [s.init(k, batch.data, target_sparsity=0.0, acyclicity_weight=0.0,
                     cell_weights=batch.cell_weights, context_weights=batch.context_weights)
              for s, k in zip(svis, keys, strict=True)]
    dtype = jnp.result_type(float)
    if restarts == 1:
        return FitState(states[0], jnp.ones((), dtype), svis[0])
    stacked = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *states)
    return FitState(stacked, jnp.ones((restarts,), dtype), svis[0])


def fit_step(state: FitState, batch: Batch | PerturbationData, target_sparsity,
             acyclicity_weight) -> tuple[FitState, jnp.ndarray]:
    """One SVI step of every restart in `state`: pure and jittable (`fit` scans it).

    Args:
        state: a `FitState` from `fit_init` (or a previous step).
        batch: this step's `Batch` (data and its cell and context weights), or the data
            whole.
        target_sparsity: `()` β_I of this step.
        acyclicity_weight: λ of this step, `()` or `(R,)` one per restart: the schedule's value
            after dual ascent (`acyclicity_weight_at(λ, state.acyclicity_scale, cap)`; the
            schedule's value itself while `acyclicity_scale` is 1).

    Returns:
        `(state, loss)`: the state after the step and the loss (negative ELBO) before it,
        `()` or `(R,)`.
    """
    if isinstance(batch, PerturbationData):
        batch = Batch(batch)
    svi = state.svi

    def update(svi_state, lam):
        return svi.update(svi_state, batch.data, target_sparsity=target_sparsity,
                          acyclicity_weight=lam, cell_weights=batch.cell_weights,
                          context_weights=batch.context_weights)

    if jnp.ndim(state.acyclicity_scale):  # restarts: one program, shared cells, own states
        update = jax.vmap(update, in_axes=(0, 0 if jnp.ndim(acyclicity_weight) else None))
    svi_state, loss = update(state.svi_state, acyclicity_weight)
    return state.replace(svi_state=svi_state), loss


__all__ = ["FitState", "SortedTraceELBO", "fit_init", "fit_step"]
