"""Calibration of SVI on a GIM: NumPyro's VSBC diagnostic (Yao et al. 2018) on a small model,
with a negative control that must fail (issue 15).

The model (`gim_ppl.evaluation.calibration.calibration_problem`) is `GIM.observed_model`: the
GIM's own sample sites and log joint with the cells as an observed site, so `vsbc_diagnostic`
can simulate data sets from the prior and fit the guide to each. Ancestral simulation ignores
factors, so the model is one whose factors vanish: `target_sparsity=0` and an `edge_mask`
that is a DAG (the order 0 < 1 < 2).

Priors: the package's, except `bias ~ N(0, 1)` and `noise_scale ~ LogNormal(0, 0.5)`
(cells on the scale of standardised data). With the default N(0, 5) bias some simulated
data sets lie ten noise sds from the guide's start and 3 000 Adam steps do not reach them;
the diagnostic then fails for the optimiser, not for the approximation (measured: a root
variable's noise scale fitted at 7.6 for a true 2.7 while a converged fit gives 2.7).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from numpyro.infer import Trace_ELBO
from numpyro.infer.autoguide import AutoNormal
from numpyro.infer.calibration import vsbc_diagnostic
from numpyro.infer.initialization import init_to_median
from numpyro.infer.util import log_density
from numpyro.optim import _NumPyroOptim, optax_to_numpyro

from gim_ppl import GIM
from gim_ppl.evaluation.calibration import (
    calibration_problem,
    ecdf_difference,
    flat_ranks,
    rank_uniformity,
    sbc_nuts,
    scalar_names,
)

STEPS = 3000


def optimiser():
    # A decaying rate, so the final iterate sits at the optimum rather than jittering by
    # the step size around it (that jitter alone shifts the calibration probabilities).
    return optax_to_numpyro(optax.adam(optax.exponential_decay(0.05, STEPS, 0.01)))


class LocShiftedAtReadout(_NumPyroOptim):
    """An optimiser that fits exactly as `inner` does, but whose `get_params` — what
    `SVI.get_params`, hence the fitted guide, reads — moves each `{site}_auto_loc` by
    `shift[site]`: a guide displaced after fitting. (A shift inside the guide would be
    absorbed by its free location during the fit.)"""

    def __init__(self, inner: _NumPyroOptim, shift: dict):
        self.inner, self.shift = inner, shift
        self.update_with_value = inner.update_with_value

    def init(self, params):
        return self.inner.init(params)

    def update(self, g, state, value=None):
        return self.inner.update(g, state, value)

    def eval_and_update(self, fn, state, forward_mode_differentiation=False):
        return self.inner.eval_and_update(fn, state, forward_mode_differentiation)

    def eval_and_stable_update(self, fn, state, forward_mode_differentiation=False):
        return self.inner.eval_and_stable_update(fn, state, forward_mode_differentiation)

    def get_params(self, state):
        params = self.inner.get_params(state)
        return {k: v + self.shift[k.removesuffix("_auto_loc")] if k.endswith("_auto_loc")
                else v for k, v in params.items()}


def prior_sd_unconstrained(model: GIM, n: int = 20_000) -> dict:
    """Each site's prior sd in the unconstrained space the guide works in (by sampling)."""
    out = {}
    for i, (site, prior) in enumerate(model.site_priors.items()):
        draws = prior.sample(jax.random.PRNGKey(i), (n,))
        out[site] = jnp.std(dist.biject_to(prior.support).inv(draws), axis=0)
    return out


def run_vsbc(observed, optim, n_sims: int, key: int = 0):
    guide = AutoNormal(observed, init_loc_fn=init_to_median(num_samples=15))
    return vsbc_diagnostic(jax.random.PRNGKey(key), observed, guide, optim, Trace_ELBO(),
                           observed_sites=["x"], num_simulations=n_sims,
                           num_svi_steps=STEPS, num_samples=500)


def p_values(result) -> np.ndarray:
    return np.concatenate([np.ravel(result.ks_pvalues[s]) for s in result.param_names])


def test_observed_model_has_the_gim_log_joint():
    """The observed-cells model's log joint equals the GIM's own at the same values."""
    model, contexts, observed = calibration_problem()
    trace = numpyro.handlers.trace(numpyro.handlers.seed(observed, 3)).get_trace()
    assert {s for s, site in trace.items() if site["type"] == "sample"} \
        == set(model.site_shapes) | {"x"}  # the vanishing factors are left out
    params = {s: trace[s]["value"] for s in model.site_shapes}
    x = trace["x"]["value"]
    ours = log_density(observed, (), {"x": x}, params)[0]
    gim = log_density(model, (contexts.replace(x=x),), {}, params)[0]
    np.testing.assert_allclose(float(ours), float(gim), rtol=1e-6)


@pytest.mark.slow
def test_vsbc_sees_a_nearly_calibrated_guide_and_fails_a_shifted_one():
    """AutoNormal, 100 simulated data sets: a scalar latent fails when its KS symmetry
    p-value is below 0.01 / K (Bonferroni over the K = 39 scalars). Measured per key
    (docs/scripts/issue15_vsbc.py): keys 0 and 2 pass for every scalar; key 1 fails 3 —
    `target_bias[2]`, `noise_scale[2]`, `log_hill_weights[0, 2]`, the sink's target
    probability under-called and its noise over-estimated — the same with 8 000 steps, and
    a full-rank guide (AutoMultivariateNormal) still fails `target_bias[2]`: a bias of
    Gaussian VI on this model, not of the optimiser. Keys 3 and 4 fail 3 and 0. So the
    claim tested is: at most 4 of the 39 scalars (10 %) fail.

    Negative control: the same fits read off with the guide's location one prior sd away
    (unconstrained space) must fail: the diagnostic's verdict (its smallest p-value below
    0.01 / K), and for at least 90 % of the scalars each (on 30 data sets a few weakly
    identified scalars, whose fitted spread exceeds their prior's, can move too little to
    show; measured: all 39 fail on keys 1 and 2, 38 on key 0)."""
    model, _, observed = calibration_problem()
    result = run_vsbc(observed, optimiser(), n_sims=100)
    p = p_values(result)
    k = p.size
    assert k == sum(int(np.prod(s)) for s in model.site_shapes.values())
    assert (p < 0.01 / k).sum() <= 4, {s: np.round(np.asarray(result.ks_pvalues[s]), 5)
                                       for s in result.param_names}

    shifted = LocShiftedAtReadout(optimiser(), prior_sd_unconstrained(model))
    control = p_values(run_vsbc(observed, shifted, n_sims=30))
    assert control.min() < 0.01 / k
    assert (control < 0.01 / k).mean() >= 0.9, np.sort(control)[-5:]


def test_rank_uniformity_accepts_uniform_ranks_and_rejects_shifted_ones():
    """χ² p-values: uniform ranks give p-values that are themselves ~uniform (checked at the
    0.01 level: about 1 % of 500 columns fall below it); ranks piled at the low end (a
    posterior shifted above the truth) give p ≈ 0."""
    rng = np.random.default_rng(0)
    n_ranks = 100
    uniform = rng.integers(0, n_ranks + 1, size=(500, 500))
    p = rank_uniformity(uniform, n_ranks)
    assert 0.0 <= (p < 0.01).mean() <= 0.025  # binomial(500, 0.01): mean 5, 99.9 % ≤ 13
    assert 0.4 < np.median(p) < 0.6
    shifted = np.minimum(rng.integers(0, n_ranks + 1, size=(500, 3)), 60)
    assert rank_uniformity(shifted, n_ranks).max() < 1e-6
    _, diff, lower, upper = ecdf_difference(uniform[:, :3], n_ranks)
    assert diff.shape == (100, 3) and np.all(lower <= 0) and np.all(upper >= 0)
    assert np.abs(diff).max() < 0.1  # 500 draws: sup |ECDF − F| ≈ 1.63 / √500 = 0.07 at 1 %


def test_sbc_nuts_ranks_have_the_site_shapes():
    problem = calibration_problem(n_cells=5)
    out = sbc_nuts(problem, key=jax.random.key(0), n_sims=2, n_warmup=50, n_ranks=10, thin=2)
    for s, shape in problem.model.site_shapes.items():
        assert out.ranks[s].shape == (2, *shape)
        assert out.ranks[s].min() >= 0 and out.ranks[s].max() <= 10
    assert flat_ranks(out.ranks).shape[1] == len(scalar_names(out.ranks)) \
        == sum(int(np.prod(s)) for s in problem.model.site_shapes.values())
