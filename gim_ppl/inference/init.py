"""`init_from_data`: a NumPyro `init_loc_fn` that starts a GIM where the data put it.

NumPyro's default, `init_to_median`, starts every site at the median of 15 prior draws, so
the start depends on the PRNG key. For a GIM that decides the answer: the Hill heads start
with random signs (`emax_bias ~ N(0, 2)` gives each variable's effect a coin-flip sign), the
mixture likelihood then gives those variables' targets posterior ≈ 0, their gradients
vanish, and the fit explains the perturbations' effects with drifted intercepts and extra
targets instead (docs/reliability.md measures it). Started at zero effect, a Hill head's
first gradient points along the data's mean shift, so the data — not the key — picks each
sign.

The start: intercepts and noise scales at the control cells' means and standard deviations
(the values of the SCM without edges), no edges, heads at their prior means (zero effect,
prior target probability), EC50 at the median dose of the data. Only hidden layers of MLPs
start at random (their units must start apart); `Site.random_init` marks them.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions.transforms import biject_to
from numpyro.infer.initialization import init_to_mean, init_to_median

from gim_ppl.core.likelihood import CellMoments, merge_moments
from gim_ppl.data import PerturbationData
from gim_ppl.priors import ALL_SITES

#: Floor of the initial noise scale (a constant variable would otherwise start at σ = 0).
MIN_NOISE_SCALE = 1e-3


def data_start(data: PerturbationData) -> dict[str, np.ndarray]:
    """The data-driven starting values: `bias`, `noise_scale` `(n_vars,)` and `log_ec50_bias`
    `(n_vars,)`.

    `bias`, `noise_scale`: mean and standard deviation of the control cells (all cells if
    the data has no observational context). `log_ec50_bias`: log of the median positive dose
    of the perturbed contexts (0 if there is none), so every Hill curve starts in the middle
    of the measured doses, in whatever unit they are given.
    """
    if not isinstance(data, PerturbationData) or not data.has_cells:
        raise ValueError("init_from_data needs a PerturbationData with cells (data.x)")
    obs = np.asarray(data.observational)
    dtype = np.dtype(jnp.asarray(data.x).dtype)  # float64 data (x64) gives float64 starts
    if data.moments is not None:  # all cells behind them (a multi-process fit: every shard)
        count = np.asarray(data.moments.count)
        keep = obs if (count[obs] > 0).any() else np.ones_like(obs)
        pooled = merge_moments(CellMoments(*(np.asarray(m)[keep][:, None] for m in
                                             data.moments)))
        mean = pooled.mean[0]
        std = np.sqrt(np.diag(pooled.scatter[0]) / pooled.count[0])
    else:
        x = data.control_cells() if obs[np.asarray(data.context)].any() else np.asarray(data.x)
        mean, std = x.mean(0), x.std(0)
    dose = np.asarray(data.dose)[~obs]
    positive = dose[dose > 0]
    log_ec50 = float(np.median(np.log(positive))) if positive.size else 0.0
    return {
        "bias": mean.astype(dtype),
        "noise_scale": np.maximum(std, MIN_NOISE_SCALE).astype(dtype),
        "log_ec50_bias": np.full(data.n_vars, log_ec50, dtype),
    }


def init_from_data(data: PerturbationData, *, jitter: float = 0.0):
    """An `init_loc_fn` for AutoDelta / AutoNormal / NUTS that starts a `GIM` from `data`.

        guide = AutoDelta(model, init_loc_fn=gim_ppl.init_from_data(data))

    Without `jitter` the start does not depend on the PRNG key (MLP hidden layers aside):
    `fit` and `SVI.run` give the same answer for every key with the exact marginal.

    Args:
        data: the training `PerturbationData` with cells (see `data_start`).
        jitter: sd of Gaussian noise added to every deterministic start, in the site's
            unconstrained space, drawn from the site's PRNG key: different starts near the
            data's, for restarts.
    Returns:
        A function `site -> value` (NumPyro's init strategy protocol).
    """
    if not jitter >= 0:
        raise ValueError(f"jitter must be >= 0, got {jitter!r}")
    # NumPyro reads init strategies as `functools.partial` objects.
    return partial(_init_site, start=data_start(data), jitter=float(jitter))


def _prior_median(site):
    """The prior median of a site, exactly where `icdf` is known (deterministic), else
    NumPyro's key-dependent `init_to_median`."""
    fn, shape = site["fn"], site["fn"].shape()
    while hasattr(fn, "base_dist"):  # Independent / Expanded wrappers of a scalar prior
        fn = fn.base_dist
    try:
        return jnp.broadcast_to(fn.icdf(0.5 * jnp.ones(fn.batch_shape)), shape)
    except NotImplementedError:
        return init_to_median(site)


def _init_site(site=None, *, start: dict, jitter: float):
    """The value of one site (NumPyro's init strategy protocol; see `init_from_data`)."""
    if site is None:
        return partial(_init_site, start=start, jitter=jitter)
    if site["type"] != "sample" or site["is_observed"]:
        return None
    spec = ALL_SITES.get(site["name"])
    if spec is None or spec.random_init:
        return init_to_median(site)
    value = start.get(site["name"])
    if value is None:
        value = init_to_mean(site)
        if not np.all(np.isfinite(value)):  # no finite mean (half-Cauchy scales)
            value = _prior_median(site)
    elif np.shape(value) != tuple(site["fn"].shape()):
        raise ValueError(f"init_from_data: site {site['name']!r} has shape "
                         f"{tuple(site['fn'].shape())} but the data's start has "
                         f"{np.shape(value)} (n_vars = {np.shape(value)[0]})")
    if jitter == 0:
        return value
    transform = biject_to(site["fn"].support)
    unconstrained = transform.inv(value)
    noise = jax.random.normal(site["kwargs"]["rng_key"], np.shape(unconstrained))
    return transform(unconstrained + jitter * noise)


__all__ = ["MIN_NOISE_SCALE", "data_start", "init_from_data"]
