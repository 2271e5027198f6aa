"""The GIM's generative story as NumPyro code: sample the sites, then targets and cells.

`GIM.__call__` without cells runs `sample_sites` and `generate` (so `Predictive` draws
cells); `observed_model` turns the model into one with the cells as an observed site.
The log joint with cells lives in `gim_ppl.joint`; both read the same pure functions.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

from gim_ppl.core.graph import is_dag
from gim_ppl.core.likelihood import CellModel, log_likelihood, sample_cells
from gim_ppl.data import PerturbationData
from gim_ppl.joint import (
    acyclicity_factor,
    check_data,
    context_effects,
    scm_weights,
    target_sparsity_factor,
)

if TYPE_CHECKING:
    from gim_ppl.model import GIM


def sample_sites(model: GIM, data: PerturbationData, n_scale, acyclicity_weight=None):
    """Every sample site from its prior, the acyclicity factor `−λ · n_scale · h(W)`
    (None for `n_scale`: left out), and the heads and Hill shift `(n_contexts, n_vars)`
    of `data`'s contexts. Returns `(params, heads, shift)`."""
    params = {s: numpyro.sample(s, prior) for s, prior in model.site_priors.items()}
    params["weights"] = scm_weights(model, params["weights"])
    if n_scale is not None:
        numpyro.factor("acyclicity", acyclicity_factor(model, params["weights"], n_scale,
                                                       acyclicity_weight))
    heads, shift = context_effects(model, params, data)
    return params, heads, shift


def generate(model: GIM, params: dict, target_logits, shift, data: PerturbationData,
             hard_targets: bool = False):
    """Sample `targets (n_contexts, n_vars)` (relaxed, or Bernoulli with `hard_targets`),
    `noise (n_cells, n_vars)` and record the cells as the deterministic site `"x"`."""
    if data.context is None:
        raise ValueError(
            "data has neither cells nor a context index per cell; to generate, pass a "
            "PerturbationData with context (or use GIM.predict)"
        )
    if hard_targets:
        target_dist = dist.BernoulliLogits(target_logits)
    else:
        target_dist = dist.RelaxedBernoulliLogits(model.temperature, target_logits)
    targets = numpyro.sample("targets", target_dist.to_event(2))
    targets = jnp.where(data.observational[:, None], 0.0, targets.astype(shift.dtype))
    n_cells = data.context.shape[0]
    noise = numpyro.sample("noise", dist.Normal(0.0, 1.0).expand((n_cells, model.n_vars))
                           .to_event(2))
    x = sample_cells(model.cell_model, params, noise, targets[data.context],
                     shift[data.context])
    return numpyro.deterministic("x", x)


def observed_model(model: GIM, contexts: PerturbationData):
    """`model` with the cells as an observed sample site: `fn(x=None)`, for tools that
    need one (`numpyro.infer.calibration.vsbc_diagnostic`, prior predictive checks).

    `contexts` fixes the contexts and the context of each cell (`contexts.context`;
    cells in `contexts.x` are ignored). `fn(x)` has the same sample sites and the same
    log joint as `model(contexts.replace(x=x))` with the exact marginal: the site `"x"`
    `(n_cells, n_vars)` has the cells' likelihood, targets summed out, as its log
    density; with `x=None` it is drawn (targets per context from π, then cells).
    Ancestral sampling ignores factors, so simulation draws from the model's prior only
    when the acyclicity and target-sparsity factors vanish: `target_sparsity=0` and an
    `edge_mask` that is a DAG. Factors that vanish identically are left out (the model
    then has sample sites only); the others are kept.
    """
    check_data(model, contexts)
    if contexts.context is None:
        raise ValueError("contexts must give the context of each cell (contexts.context "
                         "is None); e.g. data.for_prediction(n_cells)")
    if model.shared_targets:
        raise ValueError("observed_model draws targets per context; build the model "
                         "with shared_targets=False")
    if model.coarsening is not None:
        raise ValueError("observed_model needs the generative density of the cells; "
                         "coarsened target evidence is not one: build the model with "
                         "coarsening=None")
    cells = contexts.replace(x=None)
    exact = model.cell_model._replace(marginal="exact")
    n_cells = int(cells.context.shape[0])
    acyclic = model.edge_mask is not None and is_dag(model.edge_mask)

    def fn(x=None):
        params, heads, shift = sample_sites(model, cells, None if acyclic else n_cells)
        if model.target_sparsity != 0.0:
            numpyro.factor("target_sparsity", target_sparsity_factor(model, heads, cells))
        return numpyro.sample("x", MarginalCells(exact, params, cells, heads.target_logits,
                                                 shift), obs=x)

    return fn


class MarginalCells(dist.Distribution):
    """Cells `(n_cells, n_vars)` of fixed contexts given the parameters, targets summed
    out: `log_prob` is `core.likelihood.log_likelihood` (exact marginal), `sample` draws
    targets per context from π and cells with `core.likelihood.sample_cells`."""

    support = dist.constraints.independent(dist.constraints.real, 2)

    def __init__(self, cell_model: CellModel, params: dict, contexts: PerturbationData,
                 target_logits, shift):
        self.cell_model, self.params, self.contexts = cell_model, params, contexts
        self.target_logits, self.shift = target_logits, shift
        super().__init__(batch_shape=(),
                         event_shape=(contexts.context.shape[0], target_logits.shape[-1]))

    def sample(self, key, sample_shape=()):
        def one(key):
            k_targets, k_noise = jax.random.split(key)
            targets = jax.random.bernoulli(k_targets, jax.nn.sigmoid(self.target_logits))
            targets = jnp.where(self.contexts.observational[:, None], 0.0,
                                targets.astype(self.shift.dtype))
            noise = jax.random.normal(k_noise, self.event_shape, self.shift.dtype)
            ctx = self.contexts.context
            return sample_cells(self.cell_model, self.params, noise, targets[ctx],
                                self.shift[ctx])

        keys = jax.random.split(key, math.prod(sample_shape)) if sample_shape else key[None]
        return jax.vmap(one)(keys).reshape(tuple(sample_shape) + self.event_shape)

    def log_prob(self, value):
        def one(x):
            return log_likelihood(self.cell_model, self.params, self.contexts.replace(x=x),
                                  self.target_logits, self.shift)

        batch = jnp.shape(value)[:-2]
        flat = jnp.reshape(value, (-1, *self.event_shape))
        return jax.vmap(one)(flat).reshape(batch)


def prng_key():
    """NumPyro's current PRNG key; raises a clear error outside a `seed` handler."""
    key = numpyro.prng_key()
    if key is None:
        raise RuntimeError(
            "the relaxed_mc marginal draws random targets and needs a PRNG key: run the model "
            "under numpyro.handlers.seed (SVI, MCMC and Predictive do this)"
        )
    return key


__all__ = ["MarginalCells", "generate", "observed_model", "prng_key", "sample_sites"]
