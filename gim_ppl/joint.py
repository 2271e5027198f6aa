"""The GIM's log joint as pure functions of `(model, params, data)`.

    log p(θ, cells) = Σ_sites log p(θ_s)                        priors
                      − λ · n · h(W)                            acyclicity
                      − β · Σ_kj π_kj                           target sparsity
                      + log Σ_I p(cells | θ, I) p(I | π)        cells, targets summed out

`GIM.__call__` samples the priors and records the three factors of `log_joint_factors` as
NumPyro factors; `log_joint` adds the priors itself, for code that needs the objective
without NumPyro's handlers (the pure-JAX floor of `evaluation.perf`). Both run the same
functions, so they cannot drift apart: pooled offsets, `edge_mask`, GP anchors, shared
targets and cell weights enter both or neither.

`params` are constrained sample-site values, `{site: (*site_shape)}`, with `weights` as
sampled (its diagonal and the `edge_mask` are applied here, by `scm_weights`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import jax
import jax.numpy as jnp

from gim_ppl.core.interventions import InterventionOutputs, intervention_shift
from gim_ppl.core.likelihood import log_likelihood, make_groups
from gim_ppl.core.mechanisms import masked_weights
from gim_ppl.data import PerturbationData

if TYPE_CHECKING:
    from gim_ppl.model import GIM


class LogJointFactors(NamedTuple):
    """The log joint's terms beside the priors (scalars), in the order `GIM.__call__`
    records them as NumPyro factors of these names."""

    acyclicity: jnp.ndarray
    target_sparsity: jnp.ndarray
    cells: jnp.ndarray


def check_data(model: GIM, data) -> None:
    """Raise if `data` is no `PerturbationData` of `model`'s variables and features."""
    if not isinstance(data, PerturbationData):
        raise TypeError(f"data must be a gim_ppl.PerturbationData, got {type(data).__name__}")
    if data.n_vars != model.n_vars:
        raise ValueError(
            f"data has {data.n_vars} variables but the model was built with "
            f"n_vars={model.n_vars}"
        )
    if data.features.shape[-1] != model.n_features:
        raise ValueError(
            f"data.features has {data.features.shape[-1]} columns but the model was built "
            f"with n_features={model.n_features}"
        )
    if model.statistics == "moments" and data.x is not None and data.moments is None:
        raise ValueError("statistics='moments': data carries no moments; pass "
                         "data.with_moments()")


def scm_weights(model: GIM, weights):
    """The weights `(…, n_vars, n_vars)` the SCM uses: diagonal masked, and zeroed outside
    `model.edge_mask`."""
    weights = masked_weights(weights)
    if model.edge_mask is None:
        return weights
    return weights * jnp.asarray(model.edge_mask, dtype=weights.dtype)


def pooled_rows(model: GIM, data: PerturbationData):
    """`(n_contexts,)` offset row of each context (−1: not pooled), or None. Names are
    static, so the lookup table is built at trace time; the indices may be traced."""
    if not model.pooled:
        return None
    index = {name: i for i, name in enumerate(model.pooled)}
    table = jnp.asarray([index.get(n, -1) for n in data.perturbation_names] or [-1],
                        dtype=jnp.int32)
    pert = jnp.asarray(data.perturbation)
    return jnp.where(pert >= 0, table[jnp.clip(pert, 0, table.shape[0] - 1)], -1)


def target_groups(model: GIM, data: PerturbationData):
    """The groups of contexts that share one target vector (`shared_targets`: the contexts
    of each perturbation), or None (one per context)."""
    if not model.shared_targets:
        return None
    return make_groups(data.perturbation, data.observational,
                       max(len(data.perturbation_names), 1))


def context_heads(model: GIM, params: dict, data: PerturbationData) -> InterventionOutputs:
    """The four heads `(n_contexts, n_vars)` of every context of `data`, with the offsets of
    pooled perturbations and the GP map's anchors."""
    return model.interventions.outputs(params, data.features, pooled_rows(model, data),
                                       model.map_anchors)


def context_effects(model: GIM, params: dict, data: PerturbationData
                    ) -> tuple[InterventionOutputs, jnp.ndarray]:
    """The heads of every context of `data` and their Hill shift `(n_contexts, n_vars)`."""
    heads = context_heads(model, params, data)
    return heads, intervention_shift(heads, data.dose)


def cell_count(data: PerturbationData, cell_weights=None, context_weights=None):
    """The number of cells n the acyclicity factor scales with: 1 without cells, the cells
    behind the moments when `data` carries them (in a multi-process fit more than
    `data.x`), else the cells, or `Σ cell_weights (n_cells,)`; with `context_weights
    (n_contexts,)` each cell counts as many as its context's weight (the cells a weighted
    context stands for)."""
    if data.x is None:
        return 1
    if cell_weights is not None and jnp.shape(cell_weights) != data.x.shape[:1]:
        raise ValueError(f"cell_weights must have shape ({data.x.shape[0]},) (one per "
                         f"cell), got {jnp.shape(cell_weights)}")
    if context_weights is not None:
        if jnp.shape(context_weights) != data.dose.shape:
            raise ValueError(f"context_weights must have shape ({data.dose.shape[0]},) "
                             f"(one per context), got {jnp.shape(context_weights)}")
        return jnp.sum(jnp.asarray(context_weights)[data.context]
                       * (1.0 if cell_weights is None else cell_weights))
    if cell_weights is None:
        return data.x.shape[0] if data.moments is None else jnp.sum(data.moments.count)
    return jnp.sum(cell_weights)


def acyclicity_factor(model: GIM, weights, n_scale, acyclicity_weight=None):
    """`−λ · n_scale · h(W)` for the SCM's `weights (n_vars, n_vars)`. The Gaussian
    conditionals form a proper density only for a DAG; a cycle can raise them by O(1) nats
    per cell, so the penalty scales with the number of cells. λ: `acyclicity_weight`, or the
    model's."""
    lam = model.acyclicity_weight if acyclicity_weight is None else acyclicity_weight
    return -lam * n_scale * model.acyclicity_penalty(weights)


def target_sparsity_factor(model: GIM, heads: InterventionOutputs, data: PerturbationData,
                           target_sparsity=None):
    """`−β · Σ_kj π_kj` over the perturbational contexts of `data`. β: `target_sparsity`,
    or the model's."""
    beta = model.target_sparsity if target_sparsity is None else target_sparsity
    prob = jnp.where(data.observational[:, None], 0.0, jax.nn.sigmoid(heads.target_logits))
    return -beta * jnp.sum(prob)


def log_joint_factors(model: GIM, params: dict, data: PerturbationData, *,
                      target_sparsity=None, acyclicity_weight=None, cell_weights=None,
                      context_weights=None, key=None) -> LogJointFactors:
    """The factors of the log joint beside the priors, for `data` with cells.

    Args:
        params: constrained sample-site values (`weights` as sampled).
        target_sparsity, acyclicity_weight: β and λ for this call (None: the model's).
        cell_weights: optional `(n_cells,)` weight of each cell in the sufficient
            statistics (minibatches: `n_k / b_k`; padding: 0).
        context_weights: optional `(n_contexts,)` weight of each perturbed context's mixture
            over its targets (minibatches of whole perturbations, `perturbation_batch`).
        key: PRNG key of the relaxed-MC marginal (unused by the exact one).
    """
    params = {**params, "weights": scm_weights(model, params["weights"])}
    n_scale = cell_count(data, cell_weights, context_weights)
    heads, shift = context_effects(model, params, data)
    return LogJointFactors(
        acyclicity=acyclicity_factor(model, params["weights"], n_scale, acyclicity_weight),
        target_sparsity=target_sparsity_factor(model, heads, data, target_sparsity),
        cells=log_likelihood(model.cell_model, params, data, heads.target_logits, shift,
                             groups=target_groups(model, data), cell_weights=cell_weights,
                             context_weights=context_weights, key=key),
    )


def log_prior(model: GIM, params: dict):
    """`Σ_sites log p(θ_s)` at the constrained values `params` (scalar)."""
    return sum(jnp.sum(prior.log_prob(params[s])) for s, prior in model.site_priors.items())


def log_joint(model: GIM, params: dict, data: PerturbationData, **kwargs):
    """`log p(params, cells of data)`: `log_prior` plus the `log_joint_factors` (whose
    keyword arguments it takes); what NumPyro's `log_density` gives for `model(data)`."""
    return log_prior(model, params) + sum(log_joint_factors(model, params, data, **kwargs))


__all__ = ["LogJointFactors", "acyclicity_factor", "cell_count", "check_data",
           "context_effects", "context_heads", "log_joint", "log_joint_factors", "log_prior",
           "pooled_rows", "scm_weights", "target_groups", "target_sparsity_factor"]
