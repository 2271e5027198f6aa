"""NUTS on the default model: the spectral acyclicity penalty with exact gradients (the value
the model evaluates, differentiated through its power iterations), checked against central
finite differences in float64, and `run_mcmc` using it without changing the user's model."""

import dataclasses
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gim_ppl
from gim_ppl.core.graph import spectral_penalty
from tests._problems import small_data


def cyclic_weights(d=5, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.normal(scale=0.6, size=(d, d)) * (rng.random((d, d)) < 0.5)
    np.fill_diagonal(w, 0.0)
    w[0, 1], w[1, 2], w[2, 0] = 0.8, -0.7, 0.9  # a 3-cycle
    return w


def fd_directional(f, w, direction, eps=1e-6):
    return (f(w + eps * direction) - f(w - eps * direction)) / (2 * eps)


def test_exact_spectral_gradient_matches_finite_differences_where_the_surrogate_does_not():
    with jax.enable_x64(True):
        w = jnp.asarray(cyclic_weights())
        exact = lambda m: spectral_penalty(m, exact_gradient=True)  # noqa: E731
        surrogate = lambda m: spectral_penalty(m)  # noqa: E731
        assert float(exact(w)) == float(surrogate(w)) > 0  # one value, two gradients
        g_exact, g_surr = jax.grad(exact)(w), jax.grad(surrogate)(w)
        rng = np.random.default_rng(1)
        gaps = []
        for _ in range(4):
            direction = jnp.asarray(rng.normal(size=w.shape))
            fd = float(fd_directional(exact, w, direction))
            # central differences in float64: error O(ε²) ≈ 1e-12 relative
            np.testing.assert_allclose(float(jnp.sum(g_exact * direction)), fd, rtol=1e-7)
            gaps.append(abs(float(jnp.sum(g_surr * direction)) - fd) / abs(fd))
        assert max(gaps) > 1e-3  # the surrogate is not the gradient of the value


def test_exact_spectral_gradient_is_finite_on_empty_and_acyclic_graphs():
    for w in (jnp.zeros((4, 4)), jnp.triu(jnp.ones((4, 4)), 1)):
        value, grad = jax.value_and_grad(
            lambda m: spectral_penalty(m, exact_gradient=True))(w)
        assert float(value) == 0.0 and np.isfinite(np.asarray(grad)).all()


def test_run_mcmc_on_the_default_model():
    """The default model samples with the NOTEARS factor; `acyclicity="model"` keeps the
    spectral one with exact gradients; the user's model is never changed."""
    data = small_data(d=2, p=1, n_pert=2, n_cells=8)
    model = gim_ppl.GIM(2, 1)  # acyclicity="spectral", the default
    penalty = model.acyclicity_penalty
    for choice, kind in (("notears", "notears"), ("model", "spectral")):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            mcmc = gim_ppl.run_mcmc(model, data, key=jax.random.key(0), num_warmup=100,
                                    num_samples=50, num_chains=2, acyclicity=choice)
        assert mcmc.sampler.model.acyclicity == kind
        draws = mcmc.get_samples()
        assert all(np.isfinite(np.asarray(v)).all() for v in draws.values())
    assert model.acyclicity == "spectral" and model.acyclicity_penalty is penalty
    w = jnp.asarray([[0.0, 0.8], [0.9, 0.0]])  # a 2-cycle: same value, exact gradient
    exact = dataclasses.replace(model, exact_acyclicity_gradient=True)
    assert float(exact.acyclicity_penalty(w)) == float(model.acyclicity_penalty(w))
    # the replaced model differentiates through the power iterations, the default does not
    want = jax.grad(lambda m: spectral_penalty(m, exact_gradient=True))(w)
    np.testing.assert_allclose(jax.grad(exact.acyclicity_penalty)(w), want, rtol=1e-5)
    assert not np.allclose(jax.grad(model.acyclicity_penalty)(w), want, rtol=1e-3)
    with pytest.raises(ValueError, match="acyclicity"):
        gim_ppl.run_mcmc(model, data, key=jax.random.key(0), num_warmup=1, num_samples=1,
                         acyclicity="spectral")
