"""Causal mechanisms `f_j(x_pa(j))` and ancestral sampling of the SCM.

    x_j = f_j(x) + u_j + σ_j ε_j            (shift intervention u_j)
    x_j = (1 − t_j) f_j(x) + t_j s_j + σ_j ε_j   (replace, target indicator t_j ∈ [0, 1])

Parameters are plain dicts of arrays (the model's sample sites):
- linear: `weights (d, d)`, `bias (d,)`: `f(x) = x @ W + b`;
- mlp: additionally `mlp_w1 (d, d, H)` [child, parent, hidden], `mlp_b1 (d, H)`,
  `mlp_w2 (d, H)`: `f_j(x) = w2_j · tanh((W[:, j] ∘ x) @ w1_j + b1_j) + b_j`, so the edge
  weights gate which parents a variable's network sees and the acyclicity penalty on W
  constrains both mechanisms alike.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

MECHANISMS = ("linear", "mlp")


def mechanism_site_shapes(mechanism: str, n_vars: int, hidden: int) -> dict[str, tuple]:
    """Shapes of the mechanism's parameter sites (besides edge weights, bias and noise)."""
    if mechanism == "linear":
        return {}
    if mechanism == "mlp":
        return {
            "mlp_w1": (n_vars, n_vars, hidden),
            "mlp_b1": (n_vars, hidden),
            "mlp_w2": (n_vars, hidden),
        }
    raise ValueError(f"mechanism must be one of {MECHANISMS}, got {mechanism!r}")


def masked_weights(weights):
    """Edge weights with the diagonal zeroed (no self-loops)."""
    d = weights.shape[-1]
    return weights * (1.0 - jnp.eye(d, dtype=weights.dtype))


def mechanism_mean(mechanism: str, params: dict, x):
    """`f(x)`: `(n_cells, n_vars)` conditional means given every variable's parents.

    Args:
        params: sites; `params["weights"]` must already be diagonal-masked.
        x: `(n_cells, n_vars)`.
    """
    w, b = params["weights"], params["bias"]
    if mechanism == "linear":
        return x @ w + b
    # h[n, j, k] = tanh(Σ_i x[n, i] W[i, j] w1[j, i, k] + b1[j, k]); no (n, d, d) tensor is
    # built because W and w1 are combined first.
    gated = jnp.einsum("ij,jik->jik", w, params["mlp_w1"])
    hidden = jnp.tanh(jnp.einsum("ni,jik->njk", x, gated) + params["mlp_b1"])
    return jnp.einsum("njk,jk->nj", hidden, params["mlp_w2"]) + b


def sample_scm(mechanism: str, params: dict, exogenous, replace_targets=None, replace_means=None,
               n_sweeps: int | None = None):
    """Ancestral sampling: solve `x = f(x) + e` (shift) or the replace variant.

    Args:
        params: sites with diagonal-masked `weights`.
        exogenous: `(n_cells, n_vars)` `e = u + σ ε` (shift already added).
        replace_targets: `(n_cells, n_vars)` in [0, 1] for replace interventions, else None.
        replace_means: `(n_cells, n_vars)` Hill means of replaced variables.
        n_sweeps: fixed-point sweeps (default n_vars: exact on a DAG, since the longest
            path has at most n_vars − 1 edges).
    Returns:
        `(n_cells, n_vars)` cells.
    """
    d = exogenous.shape[-1]
    if mechanism == "linear" and replace_targets is None:
        # x (I − W) = b + e: one linear solve, exact for any W with I − W invertible.
        eye = jnp.eye(d, dtype=exogenous.dtype)
        rhs = exogenous + params["bias"]
        return jnp.linalg.solve((eye - params["weights"]).T, rhs.T).T

    n_sweeps = d if n_sweeps is None else n_sweeps

    def sweep(_, x):
        f = mechanism_mean(mechanism, params, x)
        if replace_targets is None:
            return f + exogenous
        return (1.0 - replace_targets) * f + replace_targets * replace_means + exogenous

    return lax.fori_loop(0, n_sweeps, sweep, jnp.zeros_like(exogenous))
