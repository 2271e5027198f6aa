"""The generative intervention model: perturbation features → targets and Hill parameters.

For features `z (n_contexts, n_features)` a map returns four `(n_contexts, n_vars)` arrays:
- `target_logits`: logit π, the probability that the perturbation targets each variable
  (independent of dose);
- `emax`: signed maximal effect; `log_ec50`; `log_hill` (Hill coefficient = exp(log_hill)).

Partial pooling (optional): per-perturbation offsets `{head}_offset (pooled, var)` added to
the heads of the contexts of known ("pooled") perturbations — each training perturbation's
parameters are head(z) + its own offset, a new perturbation gets head(z) alone, and the
offsets' prior scale says how far a perturbation may stray from its features' prediction.

Three maps (`InterventionMap` values); every head has a bias `{head}_bias (var,)`:
- `LINEAR_MAP` ("linear"): heads read the features directly (`{head}_weights
  (n_features, n_vars)`);
- `MLP_MAP` ("mlp"): heads read a shared hidden layer
  `tanh(z @ map_hidden_weights + map_hidden_bias)` (`map_hidden_weights (n_features, H)`,
  head weights `(H, n_vars)`);
- `GP_MAP` ("gp"): each head is a Gaussian process over perturbations with an ARD squared-
  exponential kernel (`{head}_gp_lengthscale (feature,)`, `{head}_gp_amplitude ()`), fixed at
  the features of the training perturbations (the "anchors", `(n_anchors, n_features)`) by
  whitened values `{head}_gp_u (anchor, var) ~ N(0, 1)`: f(Z) = L u with K(Z, Z) = L Lᵀ, and
  at any features z the GP conditional mean f(z) = K(z, Z) L⁻ᵀ u (exact: O(P³) per step for
  P anchors).

Shrinkage (`shrink(map, "ard" | "horseshoe")`): the weights that read the features
(`{head}_weights` of the linear map, `map_hidden_weights` of the MLP) become
`raw (feature, ·) ~ N(0, 1)` times a learned scale per feature (non-centred, so MAP stays
well posed): ARD, one `{key}_feature_scale (feature,)` per weight matrix; the regularised
horseshoe (Piironen & Vehtari 2017), a global `{key}_global_scale ()` times local
`{key}_local_scale (feature,)`, softened by a slab `{key}_slab ()` (c²):
scale = τ·λ̃, λ̃² = c²λ² / (c² + τ²λ²). Under MAP, ARD's Gaussian raw weights and HalfNormal
scales act as a group lasso over the features: a feature that does not help is switched off
in all variables at once.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.lax.linalg import triangular_solve

from gim_ppl.core.hill import hill_shift
from gim_ppl.core.sites import Site

HEADS = ("target", "emax", "log_ec50", "log_hill")
SHRINKAGES = ("ard", "horseshoe")
#: Diagonal added to a GP's kernel at its anchors, relative to its variance: keeps the
#: Cholesky stable in float32 for near-duplicate perturbations (a per-perturbation noise
#: of 3 % of the GP's sd, far below the offsets of `pooled`).
GP_NUGGET = 1e-3


class InterventionOutputs(NamedTuple):
    """Per-context intervention parameters, each `(n_contexts, n_vars)`."""

    target_logits: jnp.ndarray
    emax: jnp.ndarray
    log_ec50: jnp.ndarray
    log_hill: jnp.ndarray


#: Heads whose weight priors are scaled by 1/√fan-in (`Site.fan_in`): the Hill parameters
#: of a (perturbation, variable) pair vary across perturbations with the prior sd of the
#: `Priors` field whatever the number of features. Measured on seeds 0–9 (docs/benchmark.md):
#: new perturbations −7.5 % mean error, no loss on known ones or on target recovery. The
#: target head stays unscaled: targets are a sharp function of the features and a scaled
#: logit cannot reach them (docs/unseen.md: unseen target AUROC 0.846 → 0.802).
FAN_IN_HEADS = ("emax", "log_ec50", "log_hill")


def _head_sites(input_axis: str) -> dict[str, Site]:
    sites = {}
    for head in HEADS:
        sites[f"{head}_weights"] = Site((input_axis, "var"), f"{head}_weight",
                                        fan_in=head in FAN_IN_HEADS)
        sites[f"{head}_bias"] = Site(("var",), f"{head}_bias")
    return sites


class InterventionMap(NamedTuple):
    """A feature → intervention map as a value: the sample sites it declares (in model
    order) and `heads(params, features (n, p), anchors) -> 4 × (n, n_vars)`, the heads
    before any per-perturbation offsets (`outputs` adds them)."""

    name: str
    sites: dict[str, Site]
    heads: Callable[..., tuple]

    def outputs(self, params: dict, features, pooled=None,
                anchors=None) -> InterventionOutputs:
        """Map `features (n_contexts, n_features)` to the four per-context heads.

        Args:
            pooled: optional `(n_contexts,)` int row of each context in the `{head}_offset`
                sites (−1: a perturbation without an offset, e.g. a new one); ignored when
                `params` has no offsets.
            anchors: `(n_anchors, n_features)` features the GP map is fixed at (GP map only).
        """
        heads = self.heads(params, features, anchors)
        if pooled is not None and "target_offset" in params:
            known = (pooled >= 0)[:, None]
            row = jnp.maximum(pooled, 0)
            heads = [v + jnp.where(known, params[f"{head}_offset"][row], 0.0)
                     for v, head in zip(heads, HEADS, strict=True)]
        return InterventionOutputs(*heads)


def _gp_sites() -> dict[str, Site]:
    sites = {}
    for head in HEADS:
        sites[f"{head}_gp_u"] = Site(("anchor", "var"), "gp_u")
        sites[f"{head}_gp_lengthscale"] = Site(("feature",), "gp_lengthscale")
        sites[f"{head}_gp_amplitude"] = Site((), f"{head}_gp_amplitude")
        sites[f"{head}_bias"] = Site(("var",), f"{head}_bias")
    return sites


def _shrunk_sites(sites: dict[str, Site], kind: str) -> dict[str, Site]:
    """`sites` with every weight matrix that reads the features ("feature" first axis)
    replaced by raw weights and the scales of `kind` (see the module docstring)."""
    out = {}
    for name, spec in sites.items():
        if not (name.endswith("_weights") and spec.dims[:1] == ("feature",)):
            out[name] = spec
            continue
        key = name.removesuffix("_weights")
        out[f"{key}_weights_raw"] = Site(spec.dims, "shrinkage_raw", spec.random_init)
        if kind == "ard":
            out[f"{key}_feature_scale"] = Site(("feature",), "ard_scale")
        else:
            out[f"{key}_global_scale"] = Site((), "horseshoe_global")
            out[f"{key}_local_scale"] = Site(("feature",), "horseshoe_local")
            out[f"{key}_slab"] = Site((), "horseshoe_slab")
    return out


def shrink(intervention_map: InterventionMap, kind: str) -> InterventionMap:
    """`intervention_map` with shrinkage `kind` ("ard" or "horseshoe") on the weights that
    read the features; named e.g. "linear+ard"."""
    if kind not in SHRINKAGES:
        raise ValueError(f"shrinkage must be one of {SHRINKAGES} or None, got {kind!r}")
    if intervention_map.name.startswith("gp"):
        raise ValueError("shrinkage does not apply to the 'gp' intervention map: its ARD "
                         "lengthscales already weigh each feature")
    # `feature_weights` reads raw weights times their scales, so the heads are the same
    return intervention_map._replace(name=f"{intervention_map.name}+{kind}",
                                     sites=_shrunk_sites(intervention_map.sites, kind))


#: Per-perturbation offsets of every head (partial pooling), axis "pooled".
OFFSET_SITES = {f"{head}_offset": Site(("pooled", "var"), f"{head}_offset") for head in HEADS}

def _linear_heads(params: dict, features, anchors=None) -> list:
    return [features @ feature_weights(params, head) + params[f"{head}_bias"]
            for head in HEADS]


def _mlp_heads(params: dict, features, anchors=None) -> list:
    hidden = jnp.tanh(features @ feature_weights(params, "map_hidden")
                      + params["map_hidden_bias"])
    return _linear_heads(params, hidden)


def _gp_heads(params: dict, features, anchors=None) -> list:
    if anchors is None:
        raise ValueError("the 'gp' intervention map needs its anchors")
    # one factorisation per head: batching them with vmap made the step slower (batched
    # Cholesky on CPU; docs/performance.md)
    return [gp_head(params, head, features, anchors) for head in HEADS]


LINEAR_MAP = InterventionMap("linear", _head_sites("feature"), _linear_heads)
MLP_MAP = InterventionMap("mlp", {
    "map_hidden_weights": Site(("feature", "map_hidden"), "map_hidden_weight", random_init=True),
    "map_hidden_bias": Site(("map_hidden",), "map_hidden_weight", random_init=True),
    **_head_sites("map_hidden"),
}, _mlp_heads)
GP_MAP = InterventionMap("gp", _gp_sites(), _gp_heads)
INTERVENTION_MAPS = {m.name: m for m in (LINEAR_MAP, MLP_MAP, GP_MAP)}
#: Every map a GIM can be built with, shrunk ones included (their sites form `ALL_SITES`).
ALL_MAPS = {**INTERVENTION_MAPS,
            **{f"{m.name}+{k}": shrink(m, k) for m in (LINEAR_MAP, MLP_MAP) for k in SHRINKAGES}}


def as_intervention_map(intervention_map: str | InterventionMap) -> InterventionMap:
    """The `InterventionMap` a user names by string ("linear", "mlp"), or the value."""
    if isinstance(intervention_map, InterventionMap):
        return intervention_map
    if intervention_map not in INTERVENTION_MAPS:
        raise ValueError(f"intervention_map must be one of {tuple(INTERVENTION_MAPS)}, got "
                         f"{intervention_map!r}")
    return INTERVENTION_MAPS[intervention_map]


def feature_weights(params: dict, key: str):
    """The weight matrix `{key}_weights`, or raw weights times their shrinkage scales
    `(n_features, ·)` when the map is shrunk."""
    if f"{key}_weights" in params:
        return params[f"{key}_weights"]
    raw = params[f"{key}_weights_raw"]
    if f"{key}_feature_scale" in params:
        scale = params[f"{key}_feature_scale"]
    else:
        tau, lam, c2 = (params[f"{key}_global_scale"], params[f"{key}_local_scale"],
                        params[f"{key}_slab"])
        scale = tau * jnp.sqrt(c2 * lam**2 / (c2 + tau**2 * lam**2))
    return raw * scale[:, None]


def gp_kernel(a, b, lengthscale, amplitude):
    """ARD squared-exponential kernel `(n_a, n_b)` between `a (n_a, p)` and `b (n_b, p)`:
    amplitude² · exp(−‖(a − b)/ℓ‖² / (2p)). Dividing by p keeps a lengthscale of 1
    meaning the same correlation whatever the number of standardised features."""
    a, b = a / lengthscale, b / lengthscale
    sq = (jnp.sum(a**2, -1)[:, None] + jnp.sum(b**2, -1)[None, :] - 2 * a @ b.T)
    return amplitude**2 * jnp.exp(-jnp.maximum(sq, 0.0) / (2 * a.shape[-1]))


@jax.custom_vjp
def cholesky(k):
    """Lower Cholesky factor of a symmetric positive-definite `k (P, P)`, with a reverse-mode
    rule of two triangular solves (Murray 2016): k̄ = sym(L⁻ᵀ Φ(Lᵀ L̄) L⁻¹), Φ = lower
    triangle with the diagonal halved. JAX's generic rule (JVP, then transpose) costs ~60×
    the factorisation on CPU at P = 320; this one ~3×."""
    return jnp.linalg.cholesky(k)


def _cholesky_fwd(k):
    chol = jnp.linalg.cholesky(k)
    return chol, chol


def _cholesky_bwd(chol, chol_bar):
    phi = jnp.tril(chol.T @ chol_bar)
    phi = phi - 0.5 * jnp.diag(jnp.diag(phi))
    left = triangular_solve(chol, phi, left_side=True, lower=True, transpose_a=True)
    s = triangular_solve(chol, left, left_side=False, lower=True)  # L⁻ᵀ Φ L⁻¹
    return (0.5 * (s + s.T),)


cholesky.defvjp(_cholesky_fwd, _cholesky_bwd)


def gp_conditional_mean(lengthscale, amplitude, u, bias, features, anchors):
    """GP conditional mean at `features (n, p)` given whitened values `u (P, d)` at the
    `anchors (P, p)`: K(z, Z) L⁻ᵀ u + bias, `(n, d)`."""
    kzz = gp_kernel(anchors, anchors, lengthscale, amplitude)
    chol = cholesky(kzz + GP_NUGGET * amplitude**2 * jnp.eye(anchors.shape[0],
                                                               dtype=kzz.dtype))
    alpha = triangular_solve(chol, u, left_side=True, lower=True, transpose_a=True)  # L⁻ᵀ u
    return gp_kernel(features, anchors, lengthscale, amplitude) @ alpha + bias


def gp_head(params: dict, head: str, features, anchors):
    """The GP map's `head` at `features (n, p)`, `(n, n_vars)` (`gp_conditional_mean`)."""
    return gp_conditional_mean(params[f"{head}_gp_lengthscale"],
                               params[f"{head}_gp_amplitude"], params[f"{head}_gp_u"],
                               params[f"{head}_bias"], features, anchors)


def check_anchors(anchors, n_features: int) -> np.ndarray:
    """Validate a GP map's anchors `(n_anchors ≥ 2, n_features)`; warn on constant columns."""
    z = np.asarray(anchors, dtype=float)
    if z.ndim != 2 or z.shape[1] != n_features:
        raise ValueError(f"map_anchors must have shape (n_anchors, n_features={n_features}) "
                         f"(the features of the training perturbations), got {z.shape}")
    if z.shape[0] < 2:
        raise ValueError("map_anchors needs at least two training perturbations for a "
                         f"kernel map, got {z.shape[0]}")
    if not np.isfinite(z).all():
        rows = np.flatnonzero(~np.isfinite(z).all(1))
        raise ValueError(f"map_anchors has non-finite values in rows {rows[:10].tolist()}")
    warn_constant_features(z, "map_anchors")
    return z


def warn_constant_features(features, argument: str) -> list[int]:
    """Warn (and return them) when columns of `features (n, p)` do not vary: a constant
    feature carries no information, and a shrinkage or kernel prior cannot weigh it."""
    z = np.asarray(features)
    constant = np.flatnonzero(np.ptp(z, axis=0) == 0).tolist() if z.shape[0] else []
    if constant:
        warnings.warn(f"{argument}: feature columns {constant} are constant over the "
                      "perturbations; they cannot inform the intervention map",
                      stacklevel=3)
    return constant


def intervention_shift(heads: InterventionOutputs, dose):
    """The Hill shift u = emax · a(dose) of each context: the intervention step from the
    map's heads to the effect a target gets (`core.hill.hill_shift` with the heads' Hill
    parameters).

    Args:
        heads: `InterventionOutputs`, each `(…, n_contexts, n_vars)` (a leading draw axis
            is allowed).
        dose: `(n_contexts,)` dose of each context.

    Returns:
        `(…, n_contexts, n_vars)` shift of each context and variable.
    """
    return hill_shift(jnp.asarray(dose)[:, None], heads.emax, heads.log_ec50, heads.log_hill)


__all__ = ["ALL_MAPS", "FAN_IN_HEADS", "GP_MAP", "GP_NUGGET", "HEADS", "INTERVENTION_MAPS",
           "LINEAR_MAP",
           "MLP_MAP", "OFFSET_SITES", "SHRINKAGES", "InterventionMap", "InterventionOutputs",
           "as_intervention_map", "check_anchors", "cholesky", "feature_weights",
           "gp_conditional_mean", "gp_head", "gp_kernel",
           "intervention_shift",
           "shrink", "warn_constant_features"]
