"""Hill dose-response: the strength of an intervention as a function of dose.

    a(c) = c^h / (EC50^h + c^h) = sigmoid(h · (log c − log EC50)),   a(0) = 0,

written in log-dose so that large Hill coefficients and tiny doses neither overflow nor
produce NaN gradients. Parameters are unconstrained: `log_ec50`, `log_hill` (h = exp(log_hill)).
All functions broadcast their arguments (e.g. `dose[:, None]` against `(n_contexts, n_vars)`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def hill_activation_log_dose(log_dose, log_ec50, log_hill):
    """Fraction of the maximal effect at `log_dose` (−inf ⇔ dose 0 ⇒ 0)."""
    finite = jnp.isfinite(log_dose)
    safe = jnp.where(finite, log_dose, 0.0)  # keeps the unused branch's gradient finite
    act = jax.nn.sigmoid(jnp.exp(log_hill) * (safe - log_ec50))
    return jnp.where(finite, act, 0.0)


def hill_activation(dose, log_ec50, log_hill):
    """Fraction of the maximal effect at `dose >= 0`; exactly 0 at dose 0, 1/2 at EC50."""
    dose = jnp.asarray(dose)
    positive = dose > 0
    log_dose = jnp.where(positive, jnp.log(jnp.where(positive, dose, 1.0)), -jnp.inf)
    return hill_activation_log_dose(log_dose, log_ec50, log_hill)


def hill_shift(dose, emax, log_ec50, log_hill):
    """Signed intervention strength `emax · a(dose)`: activation (emax > 0) or inhibition."""
    return emax * hill_activation(dose, log_ec50, log_hill)
