import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gim_ppl.core.graph import (
    find_cycle,
    is_dag,
    notears_penalty,
    spectral_penalty,
    threshold_graph,
    topological_order,
)


def _random_dag_weights(rng, d, p=0.5):
    w = np.triu(rng.normal(size=(d, d)) * (rng.random((d, d)) < p), k=1)
    perm = rng.permutation(d)
    return w[np.ix_(perm, perm)]


@pytest.mark.parametrize("d", [2, 3, 5, 10, 31])
def test_penalties_vanish_on_dags(d, precision):
    rng = np.random.default_rng(d)
    for _ in range(5):
        w = jnp.asarray(_random_dag_weights(rng, d, p=0.9))
        assert w.dtype == precision.dtype
        assert float(spectral_penalty(w)) == 0.0
        # tr(exp(W∘W)) − d sums d terms of relative error ~eps: 0 up to d · 10 · rtol
        assert abs(float(notears_penalty(w))) < 10 * precision.rtol * d


def test_spectral_penalty_vanishes_on_the_longest_path(precision):
    # A Hamiltonian path has d-1 edges: the worst case for the default iteration count.
    d = 12
    w = jnp.asarray(np.diag(np.full(d - 1, 1.7), k=1))
    assert float(spectral_penalty(w)) == 0.0


@pytest.mark.parametrize("cycle_len", [2, 3, 6])
def test_penalties_positive_on_cycles(cycle_len, precision):
    d = 8
    rng = np.random.default_rng(cycle_len)
    w = _random_dag_weights(rng, d, p=0.3)
    nodes = rng.permutation(d)[:cycle_len]
    for a, b in zip(nodes, np.roll(nodes, -1), strict=True):
        w[a, b] = 0.4
    w = jnp.asarray(w)
    assert float(spectral_penalty(w)) > 0.0
    assert float(notears_penalty(w)) > 0.0


def test_spectral_penalty_matches_spectral_radius_and_its_gradient(precision):
    # Aperiodic strongly connected graph (3-cycle + 2-cycle): power iteration converges.
    w = np.zeros((4, 4))
    w[0, 1], w[1, 2], w[2, 0], w[2, 3], w[3, 2] = 0.9, 1.1, 0.8, 0.7, 0.5
    wj = jnp.asarray(w, dtype=precision.dtype)

    def radius(m):
        return np.max(np.abs(np.linalg.eigvals(m * m)))

    # float64: converged to 1e-8 (100 · rtol); float32: to its rounding, 1e-5 (rtol)
    np.testing.assert_allclose(spectral_penalty(wj, n_iter=500), radius(w),
                               rtol=max(100 * precision.rtol, 1e-8))
    grad = np.asarray(jax.grad(lambda m: spectral_penalty(m, n_iter=500))(wj))
    assert grad.dtype == precision.dtype
    eps, fd = 1e-6, np.zeros_like(w)  # the reference is float64 NumPy in both precisions
    for i, j in zip(*np.nonzero(w), strict=True):
        up, down = w.copy(), w.copy()
        up[i, j] += eps
        down[i, j] -= eps
        fd[i, j] = (radius(up) - radius(down)) / (2 * eps)
    np.testing.assert_allclose(grad, fd, rtol=precision.fd_rtol, atol=precision.fd_atol)


def test_notears_gradient_matches_finite_differences(precision):
    rng = np.random.default_rng(0)
    w = rng.normal(scale=0.5, size=(4, 4))
    grad = np.asarray(jax.grad(notears_penalty)(jnp.asarray(w, dtype=precision.dtype)))
    assert grad.dtype == precision.dtype

    def f(m):  # the reference: float64 finite differences of the float64 penalty
        with jax.enable_x64(True):
            return float(notears_penalty(jnp.asarray(m, dtype=jnp.float64)))

    eps, fd = 1e-6, np.zeros_like(w)
    for i in range(4):
        for j in range(4):
            up, down = w.copy(), w.copy()
            up[i, j] += eps
            down[i, j] -= eps
            fd[i, j] = (f(up) - f(down)) / (2 * eps)
    np.testing.assert_allclose(grad, fd, rtol=precision.fd_rtol, atol=precision.fd_atol)


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 12), st.integers(0, 10_000), st.floats(0.0, 1.0))
def test_threshold_graph_is_always_a_dag(d, seed, threshold):
    w = np.random.default_rng(seed).normal(size=(d, d))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        adj = threshold_graph(w, threshold)
    assert is_dag(adj)
    assert not np.any(np.diag(adj))
    # only edges above the threshold survive
    assert np.all(np.abs(w)[adj] > threshold)


def test_threshold_graph_drops_the_weakest_edge_of_a_cycle_and_says_so():
    w = np.zeros((3, 3))
    w[0, 1], w[1, 2], w[2, 0] = 2.0, 1.5, 0.6
    with pytest.warns(UserWarning, match=r"\(2, 0\)"):
        adj = threshold_graph(w, 0.1)
    assert adj[0, 1] and adj[1, 2] and not adj[2, 0]


def test_find_cycle_and_topological_order():
    adj = np.zeros((4, 4), dtype=bool)
    adj[0, 1] = adj[1, 2] = adj[0, 3] = True
    assert find_cycle(adj) is None
    order = list(topological_order(adj))
    for i, j in zip(*np.nonzero(adj), strict=True):
        assert order.index(i) < order.index(j)
    adj[2, 0] = True
    assert sorted(find_cycle(adj)) == [0, 1, 2]
    with pytest.raises(ValueError, match="cycle"):
        topological_order(adj)
