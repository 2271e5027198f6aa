"""`Priors` of a GIM and the table of its sample sites.

Every site is declared once (`Site`: named axes and the `Priors` field that governs it) by
the SCM (`SCM_SITES`), its mechanism and its intervention map; `ALL_SITES` unites them, so
`Priors.for_site`, the model's site shapes and the ArviZ dims all read one table.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import field

import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from gim_ppl.core.interventions import ALL_MAPS, OFFSET_SITES
from gim_ppl.core.mechanisms import MECHANISMS
from gim_ppl.core.sites import Site

# The sites every GIM has; mechanisms and intervention maps declare theirs (one table each).
SCM_SITES = {
    "weights": Site(("parent", "var"), "edge_weight"),
    "bias": Site(("var",), "bias"),
    "noise_scale": Site(("var",), "noise_scale"),
}
ALL_SITES: dict[str, Site] = {
    **SCM_SITES,
    **{s: spec for mech in MECHANISMS.values() for s, spec in mech.sites.items()},
    **{s: spec for imap in ALL_MAPS.values() for s, spec in imap.sites.items()},
    **OFFSET_SITES,
}


@dataclasses.dataclass(frozen=True)
class Priors:
    """Priors of every parameter; each a `numpyro.distributions.Distribution`.

    A scalar distribution is broadcast to the site's shape; a distribution whose batch
    shape already matches the site (e.g. per-edge priors) is used as is. Dose parameters
    are in log-dose units of the data's `dose` (EC50 = exp(log_ec50)). The weight priors of
    the Hill heads (`emax_weight`, `log_ec50_weight`, `log_hill_weight`) are per unit of
    output: the model divides them by √(number of inputs of the head) (`Site.fan_in`), so
    `emax_weight=Normal(0, 1)` lets a perturbation's E_max vary with sd 1 around the bias
    whatever the number of features.
    """

    edge_weight: dist.Distribution = field(default_factory=lambda: dist.Laplace(0.0, 0.1))
    bias: dist.Distribution = field(default_factory=lambda: dist.Normal(0.0, 5.0))
    noise_scale: dist.Distribution = field(default_factory=lambda: dist.LogNormal(0.0, 1.0))
    mlp_weight: dist.Distribution = field(default_factory=lambda: dist.Normal(0.0, 1.0))
    target_weight: dist.Distribution = field(default_factory=lambda: dist.Normal(0.0, 1.0))
    target_bias: dist.Distribution = field(default_factory=lambda: dist.Normal(-2.0, 2.0))
    emax_weight: dist.Distribution = field(default_factory=lambda: dist.Normal(0.0, 1.0))
    emax_bias: dist.Distribution = field(default_factory=lambda: dist.Normal(0.0, 2.0))
    log_ec50_weight: dist.Distribution = field(default_factory=lambda: dist.Normal(0.0, 0.5))
    log_ec50_bias: dist.Distribution = field(default_factory=lambda: dist.Normal(0.0, 1.0))
    log_hill_weight: dist.Distribution = field(default_factory=lambda: dist.Normal(0.0, 0.5))
    log_hill_bias: dist.Distribution = field(default_factory=lambda: dist.Normal(0.0, 0.5))
    map_hidden_weight: dist.Distribution = field(default_factory=lambda: dist.Normal(0.0, 1.0))
    # Per-perturbation offsets (GIM(..., pooled=names)): how far a training perturbation's
    # logit π, emax, log EC50 and log Hill may stray from what its features predict.
    target_offset: dist.Distribution = field(default_factory=lambda: dist.Normal(0.0, 1.0))
    emax_offset: dist.Distribution = field(default_factory=lambda: dist.Normal(0.0, 0.5))
    log_ec50_offset: dist.Distribution = field(default_factory=lambda: dist.Normal(0.0, 0.25))
    log_hill_offset: dist.Distribution = field(default_factory=lambda: dist.Normal(0.0, 0.25))
    # Shrinkage (GIM(..., shrinkage=...)): weight = raw · scale per feature. ARD's HalfNormal
    # scale keeps a used feature's weights near the default N(0, 1); the horseshoe's global
    # and local half-Cauchy scales, softened by the slab c² ~ InvGamma(2, 8) (c ≈ 2.8; Piironen
    # & Vehtari 2017 with ν = 4, s = 2), let a few features through and switch off the rest.
    shrinkage_raw: dist.Distribution = field(default_factory=lambda: dist.Normal(0.0, 1.0))
    ard_scale: dist.Distribution = field(default_factory=lambda: dist.HalfNormal(1.0))
    horseshoe_global: dist.Distribution = field(default_factory=lambda: dist.HalfCauchy(1.0))
    horseshoe_local: dist.Distribution = field(default_factory=lambda: dist.HalfCauchy(1.0))
    horseshoe_slab: dist.Distribution = field(
        default_factory=lambda: dist.InverseGamma(2.0, 8.0))
    # GP map (GIM(..., intervention_map="gp")): whitened values, lengthscales in units of
    # the features (kernel distance divided by √p) and each head's output sd: logits within
    # about ±4, effects of the order of a noise sd, EC50 and Hill within a factor of ~2.
    gp_u: dist.Distribution = field(default_factory=lambda: dist.Normal(0.0, 1.0))
    gp_lengthscale: dist.Distribution = field(default_factory=lambda: dist.LogNormal(0.0, 1.0))
    target_gp_amplitude: dist.Distribution = field(
        default_factory=lambda: dist.LogNormal(float(np.log(2.0)), 0.5))
    emax_gp_amplitude: dist.Distribution = field(
        default_factory=lambda: dist.LogNormal(0.0, 0.5))
    log_ec50_gp_amplitude: dist.Distribution = field(
        default_factory=lambda: dist.LogNormal(float(np.log(0.5)), 0.5))
    log_hill_gp_amplitude: dist.Distribution = field(
        default_factory=lambda: dist.LogNormal(float(np.log(0.25)), 0.5))

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, dist.Distribution):
                raise TypeError(
                    f"Priors.{f.name} must be a numpyro Distribution, got {type(value).__name__}"
                )
        support = self.noise_scale.support
        if not (bool(np.all(support(jnp.asarray(1.0)))) and not bool(np.any(support(-1.0)))):
            raise ValueError("Priors.noise_scale must have positive support (e.g. LogNormal)")

    def __repr__(self) -> str:
        fields = ",\n".join(f"    {f.name}={describe_distribution(getattr(self, f.name))}"
                             for f in dataclasses.fields(self))
        return f"Priors(\n{fields},\n)"

    def for_site(self, site: str) -> dist.Distribution:
        """The prior field that governs a model sample site (declared in `ALL_SITES`)."""
        if site not in ALL_SITES:
            raise ValueError(f"unknown sample site {site!r}; sites are {sorted(ALL_SITES)}")
        return getattr(self, ALL_SITES[site].prior)


def describe_distribution(d: dist.Distribution) -> str:
    """`Normal(0, 1)`-style text of a distribution: its class and its parameters in the
    constructor's order (arrays by their shape), so defaults are readable at a glance."""
    names = [n for n in inspect.signature(type(d).__init__).parameters
             if n in getattr(d, "arg_constraints", {}) and hasattr(d, n)]
    parts = []
    for n in names:
        value = np.asarray(getattr(d, n))
        parts.append(f"{float(value):g}" if value.ndim == 0 else f"{n}=<array {value.shape}>")
    if not names and isinstance(d, dist.TransformedDistribution):
        parts = [describe_distribution(d.base_dist), f"{len(d.transforms)} transform(s)"]
    return f"{type(d).__name__}({', '.join(parts)})"


def scaled(prior: dist.Distribution, factor: float) -> dist.Distribution:
    """The distribution of `factor · w` for `w ~ prior` (a location-scale family stays one,
    so its mean and median remain known; others become a `TransformedDistribution`)."""
    if factor == 1.0:
        return prior
    if isinstance(prior, (dist.Normal, dist.Laplace, dist.Cauchy, dist.Logistic)):
        return type(prior)(prior.loc * factor, prior.scale * factor)
    if isinstance(prior, dist.StudentT):
        return dist.StudentT(prior.df, prior.loc * factor, prior.scale * factor)
    return dist.TransformedDistribution(prior, dist.transforms.AffineTransform(0.0, factor))


def site_prior(priors: Priors, site: str, shape: tuple) -> dist.Distribution:
    """The prior of model site `site` with shape `shape`: its `Priors` field, divided by
    √fan-in for sites declared `fan_in` (`Site.fan_in`), broadcast to the shape."""
    prior = priors.for_site(site)
    if ALL_SITES[site].fan_in and shape:
        prior = scaled(prior, 1.0 / float(np.sqrt(max(shape[0], 1))))
    return site_distribution(prior, shape)


def site_distribution(prior: dist.Distribution, shape: tuple) -> dist.Distribution:
    batch = tuple(prior.batch_shape) + tuple(prior.event_shape)
    if batch == shape and prior.event_shape:
        return prior.to_event(len(shape) - len(prior.event_shape)) if prior.batch_shape else prior
    if prior.event_shape:
        raise ValueError(
            f"prior {prior} has event shape {prior.event_shape}; expected a scalar prior or one "
            f"of shape {shape}"
        )
    try:
        return prior.expand(shape).to_event(len(shape))
    except ValueError as err:
        raise ValueError(
            f"prior with batch shape {prior.batch_shape} cannot broadcast to site shape {shape}"
        ) from err


__all__ = ["ALL_SITES", "SCM_SITES", "Priors", "scaled", "site_distribution", "site_prior"]
