import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gim_ppl.core.hill import hill_activation, hill_activation_log_dose, hill_shift

# Every test runs in float32 and float64 (the `precision` fixture, tests/conftest.py), at
# that dtype's tolerance; the fixture only switches the dtype, so hypothesis may share it
# between examples.
SHARED_FIXTURE = [HealthCheck.function_scoped_fixture]


def test_zero_at_zero_dose_and_half_at_ec50(precision):
    emax, log_ec50, log_hill = 2.5, np.log(0.7), np.log(3.0)
    assert float(hill_shift(0.0, emax, log_ec50, log_hill)) == 0.0
    half = hill_shift(jnp.asarray(0.7), emax, log_ec50, log_hill)
    assert half.dtype == precision.dtype
    np.testing.assert_allclose(half, emax / 2, rtol=precision.rtol)


def test_matches_textbook_formula(precision):
    c = np.array([0.1, 0.5, 1.0, 2.0, 7.0])
    ec50, h = 1.3, 2.2
    expected = c**h / (ec50**h + c**h)
    got = hill_activation(jnp.asarray(c), np.log(ec50), np.log(h))
    assert got.dtype == precision.dtype
    np.testing.assert_allclose(got, expected, rtol=precision.rtol)


@settings(max_examples=50, deadline=None, suppress_health_check=SHARED_FIXTURE)
@given(st.floats(-3, 3), st.floats(-2, 2))
def test_monotone_in_dose(precision, log_ec50, log_hill):
    c = jnp.linspace(0.0, 20.0, 400)
    a = np.asarray(hill_activation(c, log_ec50, log_hill))
    assert a.dtype == precision.dtype
    assert np.all(np.diff(a) >= 0)
    assert a[0] == 0.0 and np.all((a >= 0) & (a <= 1))


def test_finite_for_large_hill_and_tiny_dose(precision):
    c = jnp.array([0.0, 1e-30, 1e-12, 1.0, 1e12])
    for log_hill in (np.log(50.0), np.log(1e4)):
        a = hill_activation(c, 0.0, log_hill)
        assert a.dtype == precision.dtype and np.all(np.isfinite(a))
        grads = jax.vmap(jax.grad(lambda ci, lh: hill_shift(ci, 1.5, 0.2, lh)), (0, None))(
            c, log_hill
        )
        assert np.all(np.isfinite(grads))


def test_gradients_finite_at_zero_dose(precision):
    g = jax.grad(lambda p: hill_shift(0.0, p[0], p[1], p[2]))(jnp.array([1.0, 0.0, 0.5]))
    assert g.dtype == precision.dtype
    np.testing.assert_array_equal(g, 0.0)


def test_gradient_matches_finite_differences(precision):
    # d shift / d(emax, log_ec50, log_hill) against central differences of the formula
    p = np.array([1.7, 0.3, 0.4])
    dose = 0.9

    def formula(q):
        ec50, h = np.exp(q[1]), np.exp(q[2])
        return q[0] * dose**h / (ec50**h + dose**h)

    grad = jax.grad(lambda q: hill_shift(dose, q[0], q[1], q[2]))(jnp.asarray(p))
    eps = 1e-6  # the reference is float64 NumPy in both precisions
    fd = [(formula(p + eps * e) - formula(p - eps * e)) / (2 * eps) for e in np.eye(3)]
    np.testing.assert_allclose(grad, fd, rtol=1e3 * precision.rtol, atol=precision.atol)


def test_log_dose_form_agrees(precision):
    c = jnp.array([0.0, 0.3, 1.0, 4.0])
    with np.errstate(divide="ignore"):
        log_c = jnp.log(c)
    np.testing.assert_allclose(hill_activation_log_dose(log_c, 0.1, 0.4),
                               hill_activation(c, 0.1, 0.4), rtol=precision.rtol)


@pytest.mark.parametrize("shape", [(5, 3), (2, 4)])
def test_broadcasts_over_contexts_and_vars(shape, precision):
    dose = jnp.linspace(0.0, 2.0, shape[0])[:, None]
    out = hill_shift(dose, jnp.ones(shape), jnp.zeros(shape), jnp.zeros(shape))
    assert out.shape == shape and out.dtype == precision.dtype
