"""Acyclicity penalties on weighted adjacency matrices and DAG read-off.

Convention: `weights[i, j]` is the edge i → j (parent i of child j), shape `(n_vars, n_vars)`.
"""

from __future__ import annotations

import functools
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from gim_ppl.checks import check_real

_TINY = 1e-30


def default_power_iterations(n_vars: int) -> int:
    """Iterations after which the spectral penalty is exactly 0 on every DAG of `n_vars` nodes.

    The estimate is `1ᵀA^{2k+1}1 / 1ᵀA^{2k}1`; on a DAG every walk is shorter than n_vars,
    so `2k + 1 >= n_vars` makes the numerator vanish.
    """
    return max(1, math.ceil((n_vars - 1) / 2))


def spectral_penalty(weights, n_iter: int | None = None, exact_gradient: bool = False):
    """NO-BEARS acyclicity penalty: spectral radius of `W ∘ W` by power iteration.

    O(n_vars²) per iteration. Zero on DAGs when `n_iter >= default_power_iterations(d)`
    (the default), positive whenever a cycle exists. The default gradient is the eigenvalue
    derivative `u vᵀ / uᵀv ∘ 2W` (left/right vectors held fixed): exact at convergence, a
    surrogate after a few iterations — enough for Adam, not for HMC, whose energy must match
    its gradient. `exact_gradient=True` differentiates through the iterations instead: the
    same value, and the true gradient of that value (`run_mcmc` uses it).

    Args:
        weights: `(n_vars, n_vars)`.
        n_iter: power iterations (default: enough to vanish on any DAG).
        exact_gradient: differentiate through the power iterations.
    """
    d = weights.shape[-1]
    n_iter = default_power_iterations(d) if n_iter is None else int(n_iter)
    a = weights * weights
    if exact_gradient:
        a_iter, normalize = a, _normalize_differentiable
    else:
        a_iter = lax.stop_gradient(a)

        def normalize(x):
            return x / jnp.maximum(jnp.linalg.norm(x), _TINY)

    def step(_, uv):
        u, v = uv
        return normalize(a_iter.T @ u), normalize(a_iter @ v)

    ones = jnp.ones((d,), weights.dtype) / math.sqrt(d)
    u, v = lax.fori_loop(0, n_iter, step, (ones, ones))
    if not exact_gradient:
        u, v = lax.stop_gradient(u), lax.stop_gradient(v)
    denom = u @ v
    safe = jnp.where(denom > _TINY, denom, 1.0)
    return jnp.where(denom > _TINY, (u @ a @ v) / safe, 0.0)


#: Below this squared norm a power-iteration vector is treated as zero (float32-safe).
_MIN_SQUARED_NORM = 1e-30


def _normalize_differentiable(x):
    """`x / ‖x‖`, and 0 (with zero gradient) where ‖x‖² < `_MIN_SQUARED_NORM`: no NaN
    gradient at x = 0 (an empty graph)."""
    sq = jnp.sum(x * x)
    ok = sq > _MIN_SQUARED_NORM
    return jnp.where(ok, x / jnp.sqrt(jnp.where(ok, sq, 1.0)), 0.0)


def notears_penalty(weights):
    """NOTEARS acyclicity penalty `tr(exp(W ∘ W)) − d` (O(d³); for small d)."""
    d = weights.shape[-1]
    return jnp.trace(jax.scipy.linalg.expm(weights * weights)) - d


ACYCLICITY_PENALTIES = ("spectral", "notears")


def acyclicity_penalty_fn(kind: str = "spectral", n_iter: int | None = None,
                          exact_gradient: bool = False):
    """The penalty `h(W)` a user names: "spectral" (NO-BEARS, `n_iter` power iterations;
    `exact_gradient` see `spectral_penalty`) or "notears"; a callable
    `(n_vars, n_vars) -> scalar`."""
    if kind == "spectral":
        return functools.partial(spectral_penalty, n_iter=n_iter,
                                 exact_gradient=exact_gradient)
    if kind == "notears":
        return notears_penalty
    raise ValueError(f"acyclicity must be one of {ACYCLICITY_PENALTIES}, got {kind!r}")


def acyclicity_penalty(weights, kind: str = "spectral", n_iter: int | None = None):
    """`h(W)` of the named penalty (see `acyclicity_penalty_fn`)."""
    return acyclicity_penalty_fn(kind, n_iter)(weights)


# --- discrete graphs (numpy, host side) --------------------------------------------------


def find_cycle(adjacency) -> list[int] | None:
    """One directed cycle as a node list `[v0, v1, …]` (edges v_i → v_{i+1} → v0), or None."""
    adj = np.asarray(adjacency, dtype=bool)
    d = adj.shape[0]
    state = np.zeros(d, dtype=np.int8)  # 0 unvisited, 1 on stack, 2 done
    for root in range(d):
        if state[root]:
            continue
        stack = [(root, iter(np.flatnonzero(adj[root])))]
        path = [root]
        state[root] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
                path.pop()
            elif state[child] == 1:
                return path[path.index(int(child)):]
            elif state[child] == 0:
                state[child] = 1
                path.append(int(child))
                stack.append((int(child), iter(np.flatnonzero(adj[child]))))
    return None


def is_dag(adjacency) -> bool:
    """True if the boolean adjacency matrix has no directed cycle (self-loops count)."""
    return find_cycle(adjacency) is None


def topological_order(adjacency) -> np.ndarray:
    """Kahn's order of the nodes of a DAG (parents first); raises on a cycle."""
    adj = np.asarray(adjacency, dtype=bool)
    indeg = adj.sum(axis=0).astype(int)
    order, ready = [], list(np.flatnonzero(indeg == 0))
    while ready:
        node = ready.pop(0)
        order.append(node)
        for child in np.flatnonzero(adj[node]):
            indeg[child] -= 1
            if indeg[child] == 0:
                ready.append(child)
    if len(order) != adj.shape[0]:
        raise ValueError("adjacency has a cycle; no topological order exists")
    return np.asarray(order, dtype=int)


def cycle_gain(weights) -> float:
    """Spectral radius of |W| with the diagonal ignored: the largest geometric-mean edge
    weight around a cycle of `weights (n_vars, n_vars)`, 0 for a DAG. Above 1 the linear
    SCM's equilibrium `x = (b + u + σε)(I − W)⁻¹` is no fixed point that ancestral sampling
    reaches. Host-side, O(d³)."""
    w = np.abs(np.asarray(weights, dtype=float))
    if w.size == 0:
        return 0.0
    np.fill_diagonal(w, 0.0)
    return float(np.max(np.abs(np.linalg.eigvals(w))))


def threshold_graph(weights, threshold: float) -> np.ndarray:
    """Boolean DAG from edge strengths: keep `|w| > threshold`, then break cycles.

    While a cycle remains, its weakest edge is dropped (a `UserWarning` lists them).

    Args:
        weights: `(n_vars, n_vars)` edge weights or edge probabilities.
    Returns:
        `(n_vars, n_vars)` bool, acyclic, zero diagonal.
    """
    w = np.abs(np.asarray(weights, dtype=float))
    if w.ndim != 2 or w.shape[0] != w.shape[1]:
        raise ValueError(f"weights must be a square matrix, got shape {w.shape}")
    # NaN compares False everywhere: it would return an empty graph without a word
    threshold = check_real("threshold", threshold, minimum=0.0)
    adj = w > threshold
    np.fill_diagonal(adj, False)
    dropped = []
    while (cycle := find_cycle(adj)) is not None:
        edges = list(zip(cycle, cycle[1:] + cycle[:1], strict=True))
        i, j = min(edges, key=lambda e: w[e])
        adj[i, j] = False
        dropped.append((int(i), int(j)))
    if dropped:
        warnings.warn(
            f"thresholded graph had cycles; dropped the weakest edge of each: {dropped}",
            UserWarning,
            stacklevel=2,
        )
    return adj
