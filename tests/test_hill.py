import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gim_ppl.core.hill import hill_activation, hill_activation_log_dose, hill_shift


def test_zero_at_zero_dose_and_half_at_ec50():
    emax, log_ec50, log_hill = 2.5, np.log(0.7), np.log(3.0)
    assert float(hill_shift(0.0, emax, log_ec50, log_hill)) == 0.0
    np.testing.assert_allclose(hill_shift(0.7, emax, log_ec50, log_hill), emax / 2, rtol=1e-6)


def test_matches_textbook_formula():
    c = np.array([0.1, 0.5, 1.0, 2.0, 7.0])
    ec50, h = 1.3, 2.2
    expected = c**h / (ec50**h + c**h)
    np.testing.assert_allclose(hill_activation(c, np.log(ec50), np.log(h)), expected, rtol=1e-5)


@settings(max_examples=50, deadline=None)
@given(st.floats(-3, 3), st.floats(-2, 2))
def test_monotone_in_dose(log_ec50, log_hill):
    c = jnp.linspace(0.0, 20.0, 400)
    a = np.asarray(hill_activation(c, log_ec50, log_hill))
    assert np.all(np.diff(a) >= 0)
    assert a[0] == 0.0 and np.all((a >= 0) & (a <= 1))


def test_finite_for_large_hill_and_tiny_dose():
    c = jnp.array([0.0, 1e-30, 1e-12, 1.0, 1e12])
    for log_hill in (np.log(50.0), np.log(1e4)):
        a = hill_activation(c, 0.0, log_hill)
        assert np.all(np.isfinite(a))
        grads = jax.vmap(jax.grad(lambda ci, lh: hill_shift(ci, 1.5, 0.2, lh)), (0, None))(
            c, log_hill
        )
        assert np.all(np.isfinite(grads))


def test_gradients_finite_at_zero_dose():
    g = jax.grad(lambda p: hill_shift(0.0, p[0], p[1], p[2]))(jnp.array([1.0, 0.0, 0.5]))
    np.testing.assert_array_equal(g, 0.0)


def test_log_dose_form_agrees():
    c = jnp.array([0.0, 0.3, 1.0, 4.0])
    with np.errstate(divide="ignore"):
        log_c = jnp.log(c)
    np.testing.assert_allclose(hill_activation_log_dose(log_c, 0.1, 0.4),
                               hill_activation(c, 0.1, 0.4), rtol=1e-6)


@pytest.mark.parametrize("shape", [(5, 3), (2, 4)])
def test_broadcasts_over_contexts_and_vars(shape):
    dose = jnp.linspace(0.0, 2.0, shape[0])[:, None]
    out = hill_shift(dose, jnp.ones(shape), jnp.zeros(shape), jnp.zeros(shape))
    assert out.shape == shape
