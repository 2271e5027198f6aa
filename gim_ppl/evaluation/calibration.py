"""Simulation-based calibration (Talts et al. 2018) of inference on a small GIM.

`calibration_problem()` is a d = 3 GIM whose prior factors vanish (`target_sparsity=0`, an
`edge_mask` that is the order 0 < 1 < 2), so data sets drawn by ancestral sampling from
`GIM.observed_model` come from the very prior that inference conditions. `sbc_nuts` draws
`n_sims` (parameters, cells) pairs, runs NUTS on each data set, and returns the rank of each
true scalar among `n_ranks` thinned posterior draws; `rank_uniformity` gives χ² p-values of
those ranks against the uniform distribution a calibrated sampler gives, and `ecdf_difference`
the curves of Säilynoja et al. (2022)'s ECDF-difference plot. The SVI counterpart is NumPyro's
`numpyro.infer.calibration.vsbc_diagnostic`, run by `vsbc` with an `AutoNormal` guide, and with
a `shift` of the guide's location at read-off for negative controls.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import optax
from numpyro.diagnostics import effective_sample_size
from numpyro.handlers import seed, trace
from numpyro.infer import Trace_ELBO
from numpyro.infer.autoguide import AutoMultivariateNormal, AutoNormal
from numpyro.infer.calibration import vsbc_diagnostic
from numpyro.infer.hmc import hmc
from numpyro.infer.initialization import init_to_median
from numpyro.infer.util import initialize_model
from numpyro.optim import _NumPyroOptim, optax_to_numpyro
from scipy import stats

from gim_ppl.data import PerturbationData
from gim_ppl.model import GIM
from gim_ppl.priors import Priors


class CalibrationProblem(NamedTuple):
    """model: the GIM; contexts: its contexts with `context` per cell; observed: the model
    with the cells as the observed site `"x"` (`GIM.observed_model(contexts)`)."""

    model: GIM
    contexts: PerturbationData
    observed: object


def calibration_problem(n_cells: int = 20) -> CalibrationProblem:
    """A d = 3, one-feature GIM over five contexts (control; two drugs at doses 1 and 2),
    `n_cells` cells each. Priors: the package's, except `bias ~ N(0, 1)` and `noise_scale ~
    LogNormal(0, 0.5)`, cells on the scale of standardised data (see
    tests/evaluation/test_calibration.py for why)."""
    d = 3
    contexts = PerturbationData.from_arrays(
        None, features=np.array([[0.0], [1.0], [-1.0], [1.0], [-1.0]]),
        dose=np.array([0.0, 1.0, 1.0, 2.0, 2.0]),
        observational=np.array([True, False, False, False, False]),
        n_vars=d, require_cells=False)
    contexts = contexts.replace(
        context=jnp.asarray(np.repeat(np.arange(5), n_cells), jnp.int32))
    priors = Priors(bias=dist.Normal(0.0, 1.0), noise_scale=dist.LogNormal(0.0, 0.5))
    model = GIM(d, 1, priors=priors, target_sparsity=0.0,
                edge_mask=np.triu(np.ones((d, d), bool), 1))
    return CalibrationProblem(model, contexts, model.observed_model(contexts))


class SBCResult(NamedTuple):
    """ranks: site → `(n_sims, *site_shape)` ints in [0, n_ranks]; n_ranks: thinned draws per
    data set; divergences: `(n_sims,)`; min_ess: `(n_sims,)` smallest bulk ESS of the
    unthinned draws per data set; seconds: wall time per data set."""

    ranks: dict
    n_ranks: int
    divergences: np.ndarray
    min_ess: np.ndarray
    seconds: np.ndarray


def sbc_nuts(problem: CalibrationProblem, *, key, n_sims: int, n_warmup: int = 500,
             n_ranks: int = 100, thin: int = 10, progress=None) -> SBCResult:
    """Ranks of the true parameters among NUTS draws, over `n_sims` prior simulations.

    Each data set: parameters and cells from `problem.observed` (ancestral), one NUTS chain
    (NumPyro's kernel, step size and diagonal mass matrix adapted in warmup, started at the
    prior median) of `n_warmup` + `n_ranks · thin` draws, kept every `thin`-th (thinning
    makes the ranked draws nearly independent, as SBC's uniformity assumes). One compiled
    function serves every data set: the cells are an argument of the potential
    (`initialize_model(..., dynamic_args=True)`), not a constant of a new trace.
    `progress(i)` is called after each data set.
    """
    sites = list(problem.model.site_shapes)
    observed = problem.observed
    first = trace(seed(observed, jax.random.key(0))).get_trace()["x"]["value"]
    info, potential_gen, postprocess_gen, _ = initialize_model(
        jax.random.key(0), observed, model_kwargs={"x": first}, dynamic_args=True,
        init_strategy=init_to_median(num_samples=15))
    init_kernel, sample_kernel = hmc(potential_fn_gen=potential_gen, algo="NUTS")
    n_draws = n_ranks * thin

    @jax.jit
    def run(key, x):
        kwargs = {"x": x}
        state = init_kernel(info.z, n_warmup, model_kwargs=kwargs, rng_key=key)

        def step(state, _):
            state = sample_kernel(state, model_kwargs=kwargs)
            return state, (state.z, state.diverging)

        _, (z, diverging) = jax.lax.scan(step, state, None, length=n_warmup + n_draws)
        z = jax.tree_util.tree_map(lambda v: v[n_warmup:], z)
        draws = jax.vmap(postprocess_gen(**kwargs))(z)
        return {s: draws[s] for s in sites}, diverging[n_warmup:].sum()

    ranks = {s: [] for s in sites}
    divergences, min_ess, seconds = [], [], []
    for i, k in enumerate(jax.random.split(key, n_sims)):
        k_sim, k_mcmc = jax.random.split(k)
        sim = trace(seed(observed, k_sim)).get_trace()
        start = time.perf_counter()
        draws, n_divergent = run(k_mcmc, sim["x"]["value"])
        draws = {s: np.asarray(v) for s, v in draws.items()}
        seconds.append(time.perf_counter() - start)
        divergences.append(int(n_divergent))
        min_ess.append(min(float(np.min(effective_sample_size(draws[s][None])))
                           for s in sites))
        for s in sites:
            kept = draws[s][thin - 1::thin]
            ranks[s].append((kept < np.asarray(sim[s]["value"])).sum(0))
        if progress is not None:
            progress(i)
    return SBCResult({s: np.stack(r) for s, r in ranks.items()}, n_ranks,
                     np.asarray(divergences), np.asarray(min_ess), np.asarray(seconds))


def scalar_names(ranks: dict) -> list[str]:
    """`site[i,j]` names of every scalar, in the order of `flat_ranks`."""
    names = []
    for s, r in ranks.items():
        shape = r.shape[1:]
        names += [s + (str(list(i)) if shape else "") for i in np.ndindex(*shape)]
    return names


def flat_ranks(ranks: dict) -> np.ndarray:
    """`(n_sims, n_scalars)` ranks of every scalar."""
    return np.concatenate([r.reshape(r.shape[0], -1) for r in ranks.values()], axis=1)


def rank_uniformity(ranks: np.ndarray, n_ranks: int, n_bins: int = 20) -> np.ndarray:
    """χ² p-value per column of `ranks (n_sims, n_scalars)` against the discrete uniform on
    {0, …, n_ranks}, with the ranks pooled into `n_bins` bins of equal probability mass
    (n_ranks + 1 values spread over the bins; `n_sims / n_bins` expected per bin)."""
    edges = np.linspace(0, n_ranks + 1, n_bins + 1)
    values = np.arange(n_ranks + 1)
    mass = np.histogram(values, edges)[0] / (n_ranks + 1)
    out = []
    for col in ranks.T:
        counts = np.histogram(col, edges)[0]
        out.append(stats.chisquare(counts, mass * col.size).pvalue)
    return np.asarray(out)


def ecdf_difference(ranks: np.ndarray, n_ranks: int, grid: int = 100, level: float = 0.99):
    """ECDF of the fractional ranks minus the uniform CDF on `grid` points, per column of
    `ranks (n_sims, n_scalars)`, and a pointwise `level` band for one calibrated scalar
    (binomial quantiles; Säilynoja et al. 2022 widen it to hold simultaneously).

    Returns:
        z `(grid,)`, diff `(grid, n_scalars)`, lower `(grid,)`, upper `(grid,)`.
    """
    n = ranks.shape[0]
    z = np.linspace(0, 1, grid + 1)[1:]
    u = (ranks + 0.5) / (n_ranks + 1)
    diff = (u[None, :, :] <= z[:, None, None]).mean(1) - z[:, None]
    lower = stats.binom.ppf((1 - level) / 2, n, z) / n - z
    upper = stats.binom.ppf((1 + level) / 2, n, z) / n - z
    return z, diff, lower, upper


VSBC_STEPS = 3000
GUIDES = {"normal": AutoNormal, "multivariate_normal": AutoMultivariateNormal}


def vsbc_optimiser(steps: int = VSBC_STEPS):
    """Adam at 0.05 decaying to 5e-4 over `steps`: the final iterate sits at the optimum
    rather than jittering by the step size around it (that jitter alone moves the
    calibration probabilities)."""
    return optax_to_numpyro(optax.adam(optax.exponential_decay(0.05, steps, 0.01)))


class ShiftedReadout(_NumPyroOptim):
    """An optimiser that fits exactly as `inner` does, but whose `get_params` — what
    `SVI.get_params`, hence the fitted guide, reads — moves each `{site}_auto_loc` by
    `shift[site]`: a guide displaced after fitting, a negative control. (A shift inside the
    guide would be absorbed by its free location during the fit.)"""

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
        return {k: v + self.shift.get(k.removesuffix("_auto_loc"), 0.0)
                if k.endswith("_auto_loc") else v for k, v in params.items()}


def prior_sd_unconstrained(model: GIM, n: int = 20_000) -> dict:
    """Each site's prior sd `site_shape` in the unconstrained space a guide works in (from
    `n` prior draws)."""
    out = {}
    for i, (site, prior) in enumerate(model.site_priors.items()):
        draws = prior.sample(jax.random.PRNGKey(i), (n,))
        out[site] = jnp.std(dist.biject_to(prior.support).inv(draws), axis=0)
    return out


def vsbc(problem: CalibrationProblem, *, key, n_sims: int, steps: int = VSBC_STEPS,
         n_samples: int = 500, guide: str = "normal", shift: dict | None = None):
    """NumPyro's `vsbc_diagnostic` of a guide (`GUIDES[guide]`, started at the prior
    median) on `problem`, `n_sims` simulated data sets of `steps` SVI steps each. `shift`:
    site → `site_shape` array added to the fitted guide's location before it is read (a
    negative control; `prior_sd_unconstrained` gives the scale). Returns numpyro's
    `VSBCResult`; `vsbc_p_values` flattens its KS p-values."""
    if guide not in GUIDES:
        raise ValueError(f"guide must be one of {sorted(GUIDES)}, got {guide!r}")
    approx = GUIDES[guide](problem.observed, init_loc_fn=init_to_median(num_samples=15))
    optim = vsbc_optimiser(steps)
    if shift is not None:
        if guide != "normal":
            raise ValueError("shift moves AutoNormal's per-site locations; use guide='normal'")
        optim = ShiftedReadout(optim, shift)
    return vsbc_diagnostic(key, problem.observed, approx, optim, Trace_ELBO(),
                           observed_sites=["x"], num_simulations=n_sims,
                           num_svi_steps=steps, num_samples=n_samples)


def vsbc_p_values(result) -> tuple[list[str], np.ndarray]:
    """`(names, p)`: every scalar's `site[i, j]` name and KS symmetry p-value `(K,)`."""
    pvalues = {s: np.asarray(result.ks_pvalues[s]) for s in result.param_names}
    names = scalar_names({s: p[None] for s, p in pvalues.items()})
    return names, np.concatenate([np.ravel(p) for p in pvalues.values()])


__all__ = ["GUIDES", "VSBC_STEPS", "CalibrationProblem", "SBCResult", "ShiftedReadout",
           "calibration_problem", "ecdf_difference", "flat_ranks", "prior_sd_unconstrained",
           "rank_uniformity", "sbc_nuts", "scalar_names", "vsbc", "vsbc_optimiser",
           "vsbc_p_values"]
