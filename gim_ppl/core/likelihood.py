"""Marginal likelihood of a context's cells with its intervention targets summed out.

All cells of context k share one target vector `I_k ∈ {0,1}^d` (or, with grouping, all
contexts of one perturbation share it). Given the causal model, the Gaussian log-likelihood
factorises over variables and `I_kj` enters only variable j's conditional, so

    log p(D_k) = Σ_j logaddexp(log(1 − π_kj) + L_kj(0), log π_kj + L_kj(1))        (exact)

with `L_kj(t) = Σ_{n∈k} log N(r_nj − t·a_nj | 0, σ_j²)`, `r = x − f(x)` and `a = s` (shift)
or `a = s − f(x)` (replace), `s` the Hill shift. The paper's estimator replaces the sum by
Monte Carlo over relaxed-Bernoulli draws `t ~ RelaxedBernoulli(τ, π)` (`relaxed_mc_marginal`).

Everything is computed from per-context sufficient statistics (`ResidualStats`), so a
likelihood evaluation is one pass over the cells plus O(n_contexts · n_vars · M). For a
linear mechanism not even that pass is needed: with `r = x (I − W) − b` the statistics are
linear and quadratic forms of each context's cell count, mean and scatter (`CellMoments`,
computed once from the data), so a step costs O(n_contexts · n_vars² + n_vars³) for shift
interventions (O(n_contexts · n_vars³) for replace) whatever the number of cells (`moment_stats`).

Coarsened target evidence (`coarsening=α`). With hundreds of cells per context, any shift the
model cannot explain makes `L(1) − L(0)` grow linearly in the cells and the target posterior
saturates at 0/1, however slightly the model is wrong. Following the c-posterior of Miller &
Dunson (JASA 2019), the evidence that decides a target is raised to the power
`ζ = α / (α + n)`, n the cells behind it (a context, or a group of contexts), so it stops
growing once n ≫ α: each context's cells count as at most α cells when they vote on its
targets,

    log p_α(D_k) = Σ_j L_kj(0) + log(1 − π_kj + π_kj · exp(ζ_k · (L_kj(1) − L_kj(0)))).

Only the target indicators' evidence is coarsened; the causal model's fit to the cells
(`L(0)`) keeps its full weight. `α = None` is the plain marginal (ζ = 1).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from gim_ppl.core.mechanisms import LINEAR, Mechanism, sample_scm

INTERVENTION_EFFECTS = ("shift", "replace")
MARGINALS = ("exact", "relaxed_mc")
STATISTICS = ("auto", "moments", "cells")


class ResidualStats(NamedTuple):
    """Per-context sums over cells; `(n_contexts,)` for `count`, else `(n_contexts, n_vars)`.

    `sum_f`, `sum_f2`, `sum_rf` (fitted means f(x)) are needed by replace interventions only.

    `within_r2` `(n_vars,)`, when not None, is a part of `Σ r²` summed over all contexts and
    left out of `sum_r2` (`moment_stats` of shift interventions: the within-context
    scatter). It moves every `L_kj(t)` by a constant that does not depend on the targets, so
    `L(1) − L(0)`, the target posteriors and the mixtures are unchanged; `log_likelihood`
    adds its `−½ Σ_j within_r2_j / σ_j²` once.
    """

    count: jnp.ndarray
    sum_r: jnp.ndarray
    sum_r2: jnp.ndarray
    sum_f: jnp.ndarray | None = None
    sum_f2: jnp.ndarray | None = None
    sum_rf: jnp.ndarray | None = None
    within_r2: jnp.ndarray | None = None


def residual_stats(residuals, context, n_contexts: int, fitted=None,
                   cell_weights=None) -> ResidualStats:
    """Sufficient statistics of residuals `r = x − f(x)` per context (one segment_sum).

    Args:
        residuals: `(n_cells, n_vars)`.
        context: `(n_cells,)` int in `[0, n_contexts)`.
        fitted: `(n_cells, n_vars)` f(x), only for replace interventions.
        cell_weights: optional `(n_cells,)` weights of the cells in every sum: `n_k / b_k` for
            a minibatch of `b_k` of a context's `n_k` cells (unbiased sums), 0 for padding.
    """
    ones = jnp.ones((*residuals.shape[:1], 1), residuals.dtype)
    cols = [ones, residuals, residuals * residuals]
    if fitted is not None:
        cols += [fitted, fitted * fitted, residuals * fitted]
    n_blocks = len(cols) - 1
    stacked = jnp.concatenate(cols, axis=-1)
    if cell_weights is not None:
        stacked = stacked * jnp.asarray(cell_weights, stacked.dtype)[:, None]
    sums = jax.ops.segment_sum(stacked, context, n_contexts)
    d = residuals.shape[-1]
    parts = [sums[:, 1 + i * d: 1 + (i + 1) * d] for i in range(n_blocks)]
    return ResidualStats(sums[:, 0], *parts)


class CellMoments(NamedTuple):
    """Per-context moments of the cells, about each context's own mean (no cancellation
    when the means are large): `count (n_contexts,)`, `mean (n_contexts, n_vars)`,
    `scatter (n_contexts, n_vars, n_vars)` = `Σ_{n∈k} (x_n − m_k)(x_n − m_k)ᵀ`."""

    count: jnp.ndarray
    mean: jnp.ndarray
    scatter: jnp.ndarray


def cell_moments(x, context, n_contexts: int) -> CellMoments:
    """`CellMoments` of concrete cells, accumulated in float64 on the host (one pass).

    Args:
        x: `(n_cells, n_vars)`; context: `(n_cells,)` ints in `[0, n_contexts)`.
    Returns:
        float64 numpy arrays; contexts without cells get zeros.
    """
    x, context = np.asarray(x), np.asarray(context)
    d = x.shape[1]
    count = np.bincount(context, minlength=n_contexts).astype(np.float64)
    mean = np.zeros((n_contexts, d))
    scatter = np.zeros((n_contexts, d, d))
    order = np.argsort(context, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(count.astype(np.int64))])
    for k in np.flatnonzero(count):  # one (n_k, d) block at a time: no (n, d, d) array
        block = x[order[bounds[k]:bounds[k + 1]]].astype(np.float64)
        mean[k] = block.mean(axis=0)
        centred = block - mean[k]
        scatter[k] = centred.T @ centred
    return CellMoments(count, mean, scatter)


def merge_moments(parts) -> CellMoments:
    """`CellMoments` of the union of disjoint sets of cells from each set's moments (float64):
    `n = Σ n_p`, `m = Σ n_p m_p / n`, `C = Σ_p C_p + n_p (m_p − m)(m_p − m)ᵀ` (the parallel
    update of Chan, Golub & LeVeque, 1979: no sums of squares, so no cancellation).

    Args:
        parts: a sequence of `CellMoments` over the same contexts, or one `CellMoments` whose
            arrays carry a leading parts axis.
    """
    if isinstance(parts, CellMoments):
        count, mean, scatter = (np.asarray(a, np.float64) for a in parts)
    else:
        count, mean, scatter = (np.stack([np.asarray(p[i], np.float64) for p in parts])
                                for i in range(3))
    total = count.sum(0)
    merged = np.einsum("pk,pkd->kd", count, mean) / np.maximum(total, 1.0)[:, None]
    dev = mean - merged
    scatter = scatter.sum(0) + np.einsum("pk,pka,pkb->kab", count, dev, dev)
    return CellMoments(total, merged, scatter)


def moment_stats(weights, bias, moments: CellMoments, replace: bool = False) -> ResidualStats:
    """`ResidualStats` of a linear mechanism `f(x) = x W + b` from `CellMoments`. With
    `A = I − W`, `r̄ = m A − b`, `f̄ = m W + b` and C the scatter: `Σ r = n r̄`,
    `Σ r² = diag(Aᵀ C A) + n r̄²`, and for replace `Σ f = n f̄`, `Σ f² = diag(Wᵀ C W) + n f̄²`,
    `Σ r f = diag(Aᵀ C W) + n r̄ f̄`.

    Shift interventions: a target moves only the mean of its context's residuals, so the
    within-context part `diag(Aᵀ C A)` enters the likelihood only as its sum over contexts,
    `diag(Aᵀ (Σ_k C_k) A)`: returned as `within_r2`, and `sum_r2` holds `n r̄²` alone. A step
    then costs O(n_contexts · n_vars² + n_vars³). Replace interventions need each context's
    `diag(Aᵀ C_k W)`: O(n_contexts · n_vars³), and every sum complete (`within_r2` None).

    Args:
        weights: `(n_vars, n_vars)` diagonal-masked W; bias: `(n_vars,)`.
    Returns:
        `ResidualStats`, sums `(n_contexts, n_vars)`.
    """
    count, mean, scatter = moments
    n = count[:, None]
    a = jnp.eye(weights.shape[-1], dtype=weights.dtype) - weights
    mean_r = mean @ a - bias
    if not replace:
        within = _scatter_diag(jnp.sum(scatter, axis=0)[None], a, a)[0]
        return ResidualStats(count, n * mean_r, n * mean_r * mean_r, within_r2=within)
    sum_r2 = _scatter_diag(scatter, a, a) + n * mean_r * mean_r
    mean_f = mean @ weights + bias
    return ResidualStats(count, n * mean_r, sum_r2, n * mean_f,
                         _scatter_diag(scatter, weights, weights) + n * mean_f * mean_f,
                         _scatter_diag(scatter, a, weights) + n * mean_r * mean_f)


#: Up to this many variables `_scatter_diag` builds the `(d², d)` matrix of products
#: `u_aj v_bj` and makes one `(n_contexts, d²) @ (d², d)` product: on CPU that was ~10×
#: faster than a batched `(n_contexts, d, d) @ (d, d)` at d = 10, but it takes d³ memory.
KRON_MAX_VARS = 128


def _scatter_diag(scatter, u, v):
    """`diag(uᵀ C_k v)` for every context: `(n_contexts, d)` from `scatter (n_contexts, d,
    d)` (symmetric) and `u, v (d, d)`."""
    k, d = scatter.shape[0], scatter.shape[-1]
    if d <= KRON_MAX_VARS:
        products = (u[:, None, :] * v[None, :, :]).reshape(d * d, d)
        return scatter.reshape(k, d * d) @ products
    cv = (scatter.reshape(k * d, d) @ v).reshape(k, d, d)  # one GEMM, not k small ones
    return jnp.sum(u * cv, axis=-2)


def intervened_loglik(stats: ResidualStats, noise_scale, shift, strength, kind: str = "shift"):
    """`L_kj(t) = Σ_{n∈k} log N(r_nj − t·a_nj | 0, σ_j²)` from sufficient statistics.

    Args:
        noise_scale: `(n_vars,)` σ.
        shift: `(n_contexts, n_vars)` Hill shift s (replace: the Hill mean).
        strength: target indicator t, broadcastable to `(..., n_contexts, n_vars)`.
    Returns:
        `(..., n_contexts, n_vars)`.
    """
    n = stats.count[:, None]
    if kind == "shift":
        s_ra = shift * stats.sum_r
        s_aa = n * shift * shift
    elif kind == "replace":
        s_ra = shift * stats.sum_r - stats.sum_rf
        s_aa = n * shift * shift - 2.0 * shift * stats.sum_f + stats.sum_f2
    else:
        raise ValueError(f"intervention effect must be one of {INTERVENTION_EFFECTS}, got {kind!r}")
    var = noise_scale * noise_scale
    sq = stats.sum_r2 - 2.0 * strength * s_ra + strength * strength * s_aa
    return -0.5 * n * jnp.log(2.0 * math.pi * var) - 0.5 * sq / var


def target_terms(stats: ResidualStats, noise_scale, shift, kind: str = "shift"):
    """`(L(0), L(1))`, each `(n_contexts, n_vars)`: log-likelihood without / with the target."""
    return (intervened_loglik(stats, noise_scale, shift, 0.0, kind),
            intervened_loglik(stats, noise_scale, shift, 1.0, kind))


class Groups(NamedTuple):
    """Contexts that share one target vector (the doses of one perturbation)."""

    index: jnp.ndarray  # (n_contexts,) group of each context, observational → 0 (masked)
    n_groups: int


def _grouped(values, observational, groups: Groups):
    """Sum `(…, n_contexts, n_vars)` over the contexts of each group (observational dropped)."""
    masked = jnp.where(observational[:, None], 0.0, values)
    moved = jnp.moveaxis(masked, -2, 0)
    summed = jax.ops.segment_sum(moved, groups.index, groups.n_groups)
    return jnp.moveaxis(summed, 0, -2)


def _group_logits(target_logits, observational, groups: Groups):
    # Contexts of one perturbation share features, hence logits; the mean is that value.
    count = jax.ops.segment_sum((~observational).astype(target_logits.dtype), groups.index,
                                groups.n_groups)
    total = _grouped(target_logits, observational, groups)
    return total / jnp.maximum(count, 1.0)[:, None]


def make_groups(perturbation, observational, n_groups: int) -> Groups:
    """Groups from `(n_contexts,)` perturbation indices (−1 for observational contexts)."""
    return Groups(jnp.where(observational, 0, perturbation), n_groups)


def coarsening_power(count, coarsening: float | None):
    """`ζ = α / (α + n)` for `count` n cells (any shape); 1 when `coarsening` α is None."""
    if coarsening is None:
        return jnp.ones_like(count)
    return coarsening / (coarsening + count)


def _evidence_power(count, observational, groups: Groups | None, coarsening: float | None):
    """ζ of each evidence unit: `(n_contexts, 1)`, or `(n_groups, 1)` from the group's cells."""
    if groups is not None:
        count = jax.ops.segment_sum(jnp.where(observational, 0.0, count), groups.index,
                                    groups.n_groups)
    return coarsening_power(count, coarsening)[:, None]


def unit_weights(context_weights, observational, groups: Groups | None):
    """The weight of each unit of target evidence, `(n_units, 1)`, from per-context weights
    `(n_contexts,)` (a unit is a context, or with `groups` a group, whose contexts share one
    weight); 1.0 when `context_weights` is None."""
    if context_weights is None:
        return 1.0
    w = jnp.asarray(context_weights)
    if groups is None:
        return w[:, None]
    pert = (~observational).astype(w.dtype)
    total = jax.ops.segment_sum(w * pert, groups.index, groups.n_groups)
    count = jax.ops.segment_sum(pert, groups.index, groups.n_groups)
    return (total / jnp.maximum(count, 1.0))[:, None]


def exact_marginal(l0, l1, target_logits, observational, groups: Groups | None = None, *,
                   count=None, coarsening: float | None = None, context_weights=None):
    """Exact log p(D) with targets summed out (scalar).

    Args:
        l0, l1: `(n_contexts, n_vars)` from `target_terms`.
        target_logits: `(n_contexts, n_vars)` logit π.
        observational: `(n_contexts,)` bool; such contexts have no targets.
        groups: share one target vector across the contexts of each group.
        count: `(n_contexts,)` cells per context, needed with `coarsening`.
        coarsening: α of the coarsened target evidence (module docstring); None: plain.
        context_weights: optional `(n_contexts,)` weights of the perturbed contexts' terms
            (the mixture over targets, not its sums: minibatches of whole perturbations,
            see `inference.batching`); a group's contexts must share one weight.
    """
    obs_ll = jnp.sum(jnp.where(observational[:, None], l0, 0.0))
    if groups is not None:
        target_logits = _group_logits(target_logits, observational, groups)
        l0, l1 = (_grouped(v, observational, groups) for v in (l0, l1))
        mask = 1.0
    else:
        mask = ~observational[:, None]
    if coarsening is None:
        mix = jnp.logaddexp(jax.nn.log_sigmoid(-target_logits) + l0,
                            jax.nn.log_sigmoid(target_logits) + l1)
    else:
        power = _evidence_power(count, observational, groups, coarsening)
        mix = l0 + jnp.logaddexp(jax.nn.log_sigmoid(-target_logits),
                                 jax.nn.log_sigmoid(target_logits) + power * (l1 - l0))
    weight = unit_weights(context_weights, observational, groups)
    return obs_ll + jnp.sum(jnp.where(mask, weight * mix, 0.0))


def relaxed_mc_marginal(key, stats: ResidualStats, noise_scale, shift, target_logits,
                        observational, *, temperature: float, n_samples: int,
                        kind: str = "shift", groups: Groups | None = None,
                        coarsening: float | None = None, context_weights=None):
    """The paper's estimator: `Σ_k log (1/M) Σ_m exp Σ_j L_kj(t^m_kj)`, `t ~ RelaxedBernoulli`.

    A consistent, lower-biased estimate of `exact_marginal` that tends to it as
    `temperature → 0` and `n_samples → ∞`; reparameterised, so gradients flow to the logits.
    With `coarsening` α each draw's evidence is `L(0) + ζ (L(t) − L(0))` (module docstring).
    `context_weights` as in `exact_marginal`.
    """
    logits = target_logits
    if groups is not None:
        logits = _group_logits(target_logits, observational, groups)
    t = dist.RelaxedBernoulliLogits(temperature, logits).rsample(key, (n_samples,))
    if groups is not None:
        t = t[:, groups.index]
    t = jnp.where(observational[:, None], 0.0, t)
    ll = intervened_loglik(stats, noise_scale, shift, t, kind).sum(-1)  # (M, n_contexts)
    obs_ll = jnp.sum(jnp.where(observational, ll[0], 0.0))
    ll0 = intervened_loglik(stats, noise_scale, shift, 0.0, kind).sum(-1)  # (n_contexts,)
    if groups is not None:
        ll, ll0 = (jax.ops.segment_sum(jnp.where(observational, 0.0, v).T, groups.index,
                                       groups.n_groups).T for v in (ll, ll0))
        pert = 1.0
    else:
        pert = ~observational
    if coarsening is not None:
        power = _evidence_power(stats.count, observational, groups, coarsening)[:, 0]
        ll = ll0 + power * (ll - ll0)
    lme = jax.nn.logsumexp(ll, axis=0) - math.log(n_samples)
    weight = unit_weights(context_weights, observational, groups)
    if context_weights is not None:
        weight = weight[:, 0]
    return obs_ll + jnp.sum(jnp.where(pert, weight * lme, 0.0))


def posterior_target_logits(l0, l1, target_logits, observational,
                            groups: Groups | None = None, *, count=None,
                            coarsening: float | None = None):
    """`logit P(I_kj = 1 | D, model)`, `(n_contexts, n_vars)`; −inf for observational
    contexts. With `groups`, every context of a group gets its group's logit (the evidence of
    all its contexts summed). With `coarsening` α (and `count (n_contexts,)`), the evidence
    is weighted by `ζ = α / (α + n)`: `logit π + ζ (L(1) − L(0))`."""
    power = 1.0
    if coarsening is not None:
        power = _evidence_power(count, observational, groups, coarsening)
    if groups is not None:
        logits = _group_logits(target_logits, observational, groups)
        delta = power * _grouped(l1 - l0, observational, groups)
        post = (logits + delta)[groups.index]
    else:
        post = target_logits + power * (l1 - l0)
    return jnp.where(observational[:, None], -jnp.inf, post)


def posterior_target_probs(l0, l1, target_logits, observational, groups: Groups | None = None,
                           *, count=None, coarsening: float | None = None):
    """`P(I_kj = 1 | D, model)`, `(n_contexts, n_vars)`; 0 for observational contexts."""
    return jax.nn.sigmoid(posterior_target_logits(l0, l1, target_logits, observational, groups,
                                                  count=count, coarsening=coarsening))


# --- the one log density and the one sampler --------------------------------------------


class CellModel(NamedTuple):
    """How cells arise given the parameters: the static part of a GIM that the pure
    functions below need (components as values, as BlackJAX passes an integrator).

    mechanism: a `Mechanism` (`LINEAR`, `MLP`); effect: "shift" or "replace";
    marginal: "exact" or "relaxed_mc" (temperature τ and `n_mc` draws M for the latter);
    coarsening: α of the coarsened target evidence (module docstring), None for none;
    statistics: where the per-context sums come from (`STATISTICS`): "auto" — the data's
    `CellMoments` when it carries them and the mechanism is linear, else the cells;
    "moments" — require them; "cells" — always one pass over the cells.
    """

    mechanism: Mechanism = LINEAR
    effect: str = "shift"
    marginal: str = "exact"
    temperature: float = 0.25
    n_mc: int = 128
    coarsening: float | None = None
    statistics: str = "auto"


def context_stats(cell_model: CellModel, params: dict, data, cell_weights=None) -> ResidualStats:
    """Per-context sufficient statistics of the residuals `x − f(x)` of `data`'s cells.

    Args:
        params: sites with diagonal-masked `weights`.
        data: cells (`x (n_cells, n_vars)`, `context (n_cells,)`, `dose (n_contexts,)`),
            and optionally `moments` (`CellMoments`), used per `cell_model.statistics`.
        cell_weights: optional `(n_cells,)` (minibatches, padding), see `residual_stats`;
            given, the cells are used.
    """
    moments = getattr(data, "moments", None)
    if (cell_weights is None and moments is not None and cell_model.mechanism.is_linear
            and cell_model.statistics != "cells"):
        return moment_stats(params["weights"], params["bias"], moments,
                            cell_model.effect == "replace")
    if cell_model.statistics == "moments":
        raise ValueError("statistics='moments' needs data with moments (data.with_moments()) "
                         "and a linear mechanism, without cell_weights")
    fitted = cell_model.mechanism.mean(params, data.x)
    return residual_stats(data.x - fitted, data.context, data.dose.shape[0],
                          fitted if cell_model.effect == "replace" else None, cell_weights)


def log_likelihood(cell_model: CellModel, params: dict, data, target_logits, shift, *,
                   groups: Groups | None = None, cell_weights=None, context_weights=None,
                   key=None):
    """`log p(cells | parameters)` with every context's targets summed out (scalar).

    Args:
        params: sites with diagonal-masked `weights` (and `noise_scale`).
        data: a `PerturbationData` with cells.
        target_logits, shift: `(n_contexts, n_vars)` logit π and Hill shift of each context.
        groups: share one target vector across the contexts of each group.
        cell_weights: optional `(n_cells,)` weights of the cells in the sums.
        context_weights: optional `(n_contexts,)` weights of the perturbed contexts' mixture
            terms (`exact_marginal`).
        key: PRNG key of the relaxed-MC draws (unused by the exact marginal).
    """
    stats = context_stats(cell_model, params, data, cell_weights)
    within = 0.0
    if stats.within_r2 is not None:  # the part of Σ r² no target moves (ResidualStats)
        within = -0.5 * jnp.sum(stats.within_r2 / params["noise_scale"] ** 2)
    if cell_model.marginal == "exact":
        l0, l1 = target_terms(stats, params["noise_scale"], shift, cell_model.effect)
        return within + exact_marginal(l0, l1, target_logits, data.observational, groups,
                                       count=stats.count, coarsening=cell_model.coarsening,
                                       context_weights=context_weights)
    return within + relaxed_mc_marginal(
        key, stats, params["noise_scale"], shift, target_logits, data.observational,
        temperature=cell_model.temperature, n_samples=cell_model.n_mc, kind=cell_model.effect,
        groups=groups, coarsening=cell_model.coarsening, context_weights=context_weights,
    )


def posterior_targets(cell_model: CellModel, params: dict, data, target_logits, shift, *,
                      groups: Groups | None = None, logits: bool = False):
    """`P(I_kj = 1 | cells of context k, parameters)`, `(n_contexts, n_vars)` (exact; with
    the model's coarsening); its logit (−inf for observational contexts) with `logits=True`."""
    stats = context_stats(cell_model, params, data)
    l0, l1 = target_terms(stats, params["noise_scale"], shift, cell_model.effect)
    post = posterior_target_logits(l0, l1, target_logits, data.observational, groups,
                                   count=stats.count, coarsening=cell_model.coarsening)
    return post if logits else jax.nn.sigmoid(post)


def sample_cells(cell_model: CellModel, params: dict, noise, targets, shift):
    """Cells from the SCM under per-cell interventions (ancestral sampling).

    Args:
        params: sites with diagonal-masked `weights`, `bias`, `noise_scale` (and the
            mechanism's own sites).
        noise: `(n_cells, n_vars)` standard normal draws ε.
        targets: `(n_cells, n_vars)` target indicators t ∈ [0, 1] of each cell.
        shift: `(n_cells, n_vars)` Hill shift (replace: the Hill mean) of each cell.
    Returns:
        `(n_cells, n_vars)` cells `x = f(x) + t·s + σ ε` (shift) or the replace variant.
    """
    scaled = params["noise_scale"] * noise
    if cell_model.effect == "shift":
        return sample_scm(cell_model.mechanism, params, scaled + targets * shift)
    return sample_scm(cell_model.mechanism, params, scaled, targets, shift)
