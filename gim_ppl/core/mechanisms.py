"""Causal mechanisms `f_j(x_pa(j))` and ancestral sampling of the SCM.

    x_j = f_j(x) + u_j + σ_j ε_j                   (shift intervention u_j)
    x_j = (1 − t_j) f_j(x) + t_j s_j + σ_j ε_j     (replace, target indicator t_j ∈ [0, 1])

A mechanism is a value (`Mechanism`): the sample sites it adds and its mean function.
Parameters are plain dicts of arrays (the model's sample sites):
- `LINEAR`: `weights (d, d)`, `bias (d,)`: `f(x) = x @ W + b`;
- `MLP`: additionally `mlp_w1 (d, d, H)` [child, parent, hidden], `mlp_b1 (d, H)`,
  `mlp_w2 (d, H)`: `f_j(x) = w2_j · tanh((W[:, j] ∘ x) @ w1_j + b1_j) + b_j`, so the edge
  weights gate which parents a variable's network sees and the acyclicity penalty on W
  constrains both mechanisms alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax.numpy as jnp
from jax import lax

from gim_ppl.core.sites import Site


def linear_mean(params: dict, x):
    """`f(x) = x @ W + b`, `(n_cells, n_vars)`; `params["weights"]` diagonal-masked."""
    return x @ params["weights"] + params["bias"]


def mlp_mean(params: dict, x):
    """Per-variable MLP on the W-gated parents, `(n_cells, n_vars)`."""
    w, b = params["weights"], params["bias"]
    # h[n, j, k] = tanh(Σ_i x[n, i] W[i, j] w1[j, i, k] + b1[j, k]); no (n, d, d) tensor is
    # built because W and w1 are combined first.
    gated = jnp.einsum("ij,jik->jik", w, params["mlp_w1"])
    hidden = jnp.tanh(jnp.einsum("ni,jik->njk", x, gated) + params["mlp_b1"])
    return jnp.einsum("njk,jk->nj", hidden, params["mlp_w2"]) + b


class Mechanism(NamedTuple):
    """A family of causal mechanisms: its extra sample sites, its mean `f(params, x)`, and
    whether `x = f(x) + e` is one linear solve (exact ancestral sampling on any W)."""

    name: str
    sites: dict[str, Site]
    mean: Callable
    is_linear: bool


LINEAR = Mechanism("linear", {}, linear_mean, True)
MLP = Mechanism(
    "mlp",
    {
        "mlp_w1": Site(("var", "parent", "hidden"), "mlp_weight", random_init=True),
        "mlp_b1": Site(("var", "hidden"), "mlp_weight", random_init=True),
        "mlp_w2": Site(("var", "hidden"), "mlp_weight"),
    },
    mlp_mean,
    False,
)
MECHANISMS = {m.name: m for m in (LINEAR, MLP)}


def as_mechanism(mechanism: str | Mechanism) -> Mechanism:
    """The `Mechanism` a user names by string ("linear", "mlp"), or the value itself."""
    if isinstance(mechanism, Mechanism):
        return mechanism
    if mechanism not in MECHANISMS:
        raise ValueError(f"mechanism must be one of {tuple(MECHANISMS)}, got {mechanism!r}")
    return MECHANISMS[mechanism]


def masked_weights(weights):
    """Edge weights with the diagonal zeroed (no self-loops)."""
    d = weights.shape[-1]
    return weights * (1.0 - jnp.eye(d, dtype=weights.dtype))


def mechanism_mean(mechanism: str | Mechanism, params: dict, x):
    """`f(x)`: `(n_cells, n_vars)` conditional means given every variable's parents.

    Args:
        params: sites; `params["weights"]` must already be diagonal-masked.
        x: `(n_cells, n_vars)`.
    """
    return as_mechanism(mechanism).mean(params, x)


def sample_scm(mechanism: str | Mechanism, params: dict, exogenous, replace_targets=None,
               replace_means=None, n_sweeps: int | None = None):
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
    mechanism = as_mechanism(mechanism)
    d = exogenous.shape[-1]
    if mechanism.is_linear and replace_targets is None:
        # x (I − W) = b + e: one linear solve, exact for any W with I − W invertible.
        eye = jnp.eye(d, dtype=exogenous.dtype)
        rhs = exogenous + params["bias"]
        return jnp.linalg.solve((eye - params["weights"]).T, rhs.T).T

    n_sweeps = d if n_sweeps is None else n_sweeps

    def sweep(_, x):
        f = mechanism.mean(params, x)
        if replace_targets is None:
            return f + exogenous
        return (1.0 - replace_targets) * f + replace_targets * replace_means + exogenous

    return lax.fori_loop(0, n_sweeps, sweep, jnp.zeros_like(exogenous))


__all__ = ["LINEAR", "MECHANISMS", "MLP", "Mechanism", "Site", "as_mechanism", "linear_mean",
           "masked_weights", "mechanism_mean", "mlp_mean", "sample_scm"]
