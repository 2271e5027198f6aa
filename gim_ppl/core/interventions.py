"""The generative intervention model: perturbation features → targets and Hill parameters.

For features `z (n_contexts, n_features)` it returns four `(n_contexts, n_vars)` arrays:
- `target_logits`: logit π, the probability that the perturbation targets each variable
  (independent of dose);
- `emax`: signed maximal effect; `log_ec50`; `log_hill` (Hill coefficient = exp(log_hill)).

Two maps share one parameterisation of four linear heads `(name)_weights`, `(name)_bias`:
- "linear": heads read the features directly (`weights (n_features, n_vars)`);
- "mlp": heads read a shared hidden layer `tanh(z @ gim_w1 + gim_b1)`
  (`gim_w1 (n_features, H)`, head weights `(H, n_vars)`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

INTERVENTION_MAPS = ("linear", "mlp")
HEADS = ("target", "emax", "log_ec50", "log_hill")


class InterventionOutputs(NamedTuple):
    """Per-context intervention parameters, each `(n_contexts, n_vars)`."""

    target_logits: jnp.ndarray
    emax: jnp.ndarray
    log_ec50: jnp.ndarray
    log_hill: jnp.ndarray


def intervention_site_shapes(kind: str, n_features: int, n_vars: int, hidden: int) -> dict:
    """Shapes of the intervention model's sample sites."""
    if kind not in INTERVENTION_MAPS:
        raise ValueError(f"intervention must be one of {INTERVENTION_MAPS}, got {kind!r}")
    shapes = {}
    n_in = n_features
    if kind == "mlp":
        shapes["gim_w1"] = (n_features, hidden)
        shapes["gim_b1"] = (hidden,)
        n_in = hidden
    for head in HEADS:
        shapes[f"{head}_weights"] = (n_in, n_vars)
        shapes[f"{head}_bias"] = (n_vars,)
    return shapes


def intervention_outputs(params: dict, features) -> InterventionOutputs:
    """Map `features (n_contexts, n_features)` to the four per-context heads."""
    h = features
    if "gim_w1" in params:
        h = jnp.tanh(features @ params["gim_w1"] + params["gim_b1"])
    return InterventionOutputs(
        *(h @ params[f"{head}_weights"] + params[f"{head}_bias"] for head in HEADS)
    )
