"""The generative intervention model: perturbation features → targets and Hill parameters.

For features `z (n_contexts, n_features)` a map returns four `(n_contexts, n_vars)` arrays:
- `target_logits`: logit π, the probability that the perturbation targets each variable
  (independent of dose);
- `emax`: signed maximal effect; `log_ec50`; `log_hill` (Hill coefficient = exp(log_hill)).

Partial pooling (optional): per-perturbation offsets `{head}_offset (pooled, var)` added to
the heads of the contexts of known ("pooled") perturbations — each training perturbation's
parameters are head(z) + its own offset, a new perturbation gets head(z) alone, and the
offsets' prior scale says how far a perturbation may stray from its features' prediction.

Two maps (`InterventionMap` values) share one parameterisation of four linear heads
`{head}_weights`, `{head}_bias`:
- `LINEAR_MAP` ("linear"): heads read the features directly (`weights (n_features, n_vars)`);
- `MLP_MAP` ("mlp"): heads read a shared hidden layer
  `tanh(z @ map_hidden_weights + map_hidden_bias)` (`map_hidden_weights (n_features, H)`,
  head weights `(H, n_vars)`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from gim_ppl.core.sites import Site

HEADS = ("target", "emax", "log_ec50", "log_hill")


class InterventionOutputs(NamedTuple):
    """Per-context intervention parameters, each `(n_contexts, n_vars)`."""

    target_logits: jnp.ndarray
    emax: jnp.ndarray
    log_ec50: jnp.ndarray
    log_hill: jnp.ndarray


def _head_sites(input_axis: str) -> dict[str, Site]:
    sites = {}
    for head in HEADS:
        sites[f"{head}_weights"] = Site((input_axis, "var"), f"{head}_weight")
        sites[f"{head}_bias"] = Site(("var",), f"{head}_bias")
    return sites


class InterventionMap(NamedTuple):
    """A feature → intervention map: the sample sites it declares (in model order)."""

    name: str
    sites: dict[str, Site]


#: Per-perturbation offsets of every head (partial pooling), axis "pooled".
OFFSET_SITES = {f"{head}_offset": Site(("pooled", "var"), f"{head}_offset") for head in HEADS}

LINEAR_MAP = InterventionMap("linear", _head_sites("feature"))
MLP_MAP = InterventionMap("mlp", {
    "map_hidden_weights": Site(("feature", "map_hidden"), "map_hidden_weight", random_init=True),
    "map_hidden_bias": Site(("map_hidden",), "map_hidden_weight", random_init=True),
    **_head_sites("map_hidden"),
})
INTERVENTION_MAPS = {m.name: m for m in (LINEAR_MAP, MLP_MAP)}


def as_intervention_map(intervention_map: str | InterventionMap) -> InterventionMap:
    """The `InterventionMap` a user names by string ("linear", "mlp"), or the value."""
    if isinstance(intervention_map, InterventionMap):
        return intervention_map
    if intervention_map not in INTERVENTION_MAPS:
        raise ValueError(f"intervention_map must be one of {tuple(INTERVENTION_MAPS)}, got "
                         f"{intervention_map!r}")
    return INTERVENTION_MAPS[intervention_map]


def intervention_outputs(params: dict, features, pooled=None) -> InterventionOutputs:
    """Map `features (n_contexts, n_features)` to the four per-context heads.

    Args:
        pooled: optional `(n_contexts,)` int row of each context in the `{head}_offset`
            sites (−1: a perturbation without an offset, e.g. a new one); ignored when
            `params` has no offsets.
    """
    h = features
    if "map_hidden_weights" in params:
        h = jnp.tanh(features @ params["map_hidden_weights"] + params["map_hidden_bias"])
    heads = [h @ params[f"{head}_weights"] + params[f"{head}_bias"] for head in HEADS]
    if pooled is not None and "target_offset" in params:
        known = (pooled >= 0)[:, None]
        row = jnp.maximum(pooled, 0)
        heads = [v + jnp.where(known, params[f"{head}_offset"][row], 0.0)
                 for v, head in zip(heads, HEADS, strict=True)]
    return InterventionOutputs(*heads)


__all__ = ["HEADS", "INTERVENTION_MAPS", "LINEAR_MAP", "MLP_MAP", "OFFSET_SITES",
           "InterventionMap",
           "InterventionOutputs", "as_intervention_map", "intervention_outputs"]
