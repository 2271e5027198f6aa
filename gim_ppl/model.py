"""`GIM`: the generative intervention model as a callable NumPyro model, and its `Priors`.

    model(data, target_sparsity=None)

With cells (`data.x` given) the targets are marginalised (`likelihood`), so the model has only
continuous sample sites and works with AutoDelta, AutoNormal, AutoLaplaceApproximation and
NUTS alike. Without cells (`data.x is None`, `data.context` given) it is a generative story:
it samples `targets` per context, Hill shifts and cells, returned as the deterministic site
`"x"` — so plain `numpyro.infer.Predictive` gives prior and posterior predictive draws.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import field

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.infer import Predictive

from gim_ppl.core.graph import acyclicity_penalty, default_power_iterations, threshold_graph
from gim_ppl.core.hill import hill_shift
from gim_ppl.core.interventions import intervention_outputs, intervention_site_shapes
from gim_ppl.core.likelihood import (
    INTERVENTION_KINDS,
    exact_marginal,
    make_groups,
    posterior_target_probs,
    relaxed_mc_marginal,
    residual_stats,
    target_terms,
)
from gim_ppl.core.mechanisms import (
    masked_weights,
    mechanism_mean,
    mechanism_site_shapes,
    sample_scm,
)
from gim_ppl.data import PerturbationData

MARGINALS = ("exact", "relaxed_mc")


@dataclasses.dataclass(frozen=True)
class Priors:
    """Priors of every parameter; each a `numpyro.distributions.Distribution`.

    A scalar distribution is broadcast to the site's shape; a distribution whose batch
    shape already matches the site (e.g. per-edge priors) is used as is. Dose parameters
    are in log-dose units of the data's `dose` (EC50 = exp(log_ec50)).
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
    gim_hidden_weight: dist.Distribution = field(default_factory=lambda: dist.Normal(0.0, 1.0))

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

    def for_site(self, site: str) -> dist.Distribution:
        """The prior field that governs a model sample site."""
        if site in _SITE_PRIOR:
            return getattr(self, _SITE_PRIOR[site])
        if site.startswith("mlp_"):
            return self.mlp_weight
        if site.startswith("gim_"):
            return self.gim_hidden_weight
        head, _, part = site.rpartition("_")
        return getattr(self, f"{head}_{'weight' if part == 'weights' else 'bias'}")


_SITE_PRIOR = {"weights": "edge_weight", "bias": "bias", "noise_scale": "noise_scale"}


def _site_distribution(prior: dist.Distribution, shape: tuple) -> dist.Distribution:
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


class GIM:
    """Generative intervention model over `n_vars` variables and `n_features` features.

    Args:
        n_vars: number of measured variables d.
        n_features: dimension p of the perturbation features.
        mechanism: "linear" or "mlp" causal mechanisms.
        marginal: "exact" (per-variable logaddexp, zero variance) or "relaxed_mc" (the
            paper's relaxed-Bernoulli Monte Carlo estimator).
        priors: `Priors`.
        intervention: "linear" or "mlp" map from features to targets and Hill parameters.
        intervention_kind: "shift" (x_j += u) or "replace" (x_j's mechanism replaced by a
            Gaussian with the Hill mean).
        hidden: hidden units of MLP mechanisms and of the MLP intervention map.
        acyclicity: "spectral" (NO-BEARS power iteration) or "notears".
        acyclicity_weight: λ per cell in the prior factor `−λ · n_cells · h(W)`.
        power_iterations: power iterations of the spectral penalty (default: exact 0 on DAGs).
        target_sparsity: default β_I, weight of `Σ_kj π_kj` (overridden by the call argument).
        temperature: relaxed-Bernoulli temperature τ.
        n_mc: Monte Carlo draws M of the relaxed estimator.
        shared_targets: one target vector per perturbation (all its doses) instead of one per
            context; the exact marginal stays exact.
    """

    def __init__(
        self,
        n_vars: int,
        n_features: int,
        mechanism: str = "linear",
        marginal: str = "exact",
        priors: Priors | None = None,
        *,
        intervention: str = "linear",
        intervention_kind: str = "shift",
        hidden: int = 16,
        acyclicity: str = "spectral",
        acyclicity_weight: float = 10.0,
        power_iterations: int | None = None,
        target_sparsity: float = 1.0,
        temperature: float = 0.25,
        n_mc: int = 128,
        shared_targets: bool = False,
    ):
        if int(n_vars) < 1 or int(n_features) < 1:
            raise ValueError(f"n_vars and n_features must be >= 1, got {n_vars}, {n_features}")
        if marginal not in MARGINALS:
            raise ValueError(f"marginal must be one of {MARGINALS}, got {marginal!r}")
        if intervention_kind not in INTERVENTION_KINDS:
            raise ValueError(
                f"intervention_kind must be one of {INTERVENTION_KINDS}, got {intervention_kind!r}"
            )
        if acyclicity not in ("spectral", "notears"):
            raise ValueError(f"acyclicity must be 'spectral' or 'notears', got {acyclicity!r}")
        if temperature <= 0 or n_mc < 1 or hidden < 1:
            raise ValueError("temperature must be > 0, n_mc >= 1 and hidden >= 1")
        if target_sparsity < 0 or acyclicity_weight < 0:
            raise ValueError("target_sparsity and acyclicity_weight must be >= 0")
        self.n_vars, self.n_features = int(n_vars), int(n_features)
        self.mechanism, self.marginal = mechanism, marginal
        self.priors = Priors() if priors is None else priors
        if not isinstance(self.priors, Priors):
            raise TypeError(f"priors must be a gim_ppl.Priors, got {type(self.priors).__name__}")
        self.intervention, self.intervention_kind = intervention, intervention_kind
        self.hidden = int(hidden)
        self.acyclicity, self.acyclicity_weight = acyclicity, float(acyclicity_weight)
        self.power_iterations = (
            default_power_iterations(self.n_vars) if power_iterations is None
            else int(power_iterations)
        )
        self.target_sparsity = float(target_sparsity)
        self.temperature, self.n_mc = float(temperature), int(n_mc)
        self.shared_targets = bool(shared_targets)
        d, p, h = self.n_vars, self.n_features, self.hidden
        self.site_shapes: dict[str, tuple] = {
            "weights": (d, d),
            "bias": (d,),
            "noise_scale": (d,),
            **mechanism_site_shapes(mechanism, d, h),
            **intervention_site_shapes(intervention, p, d, h),
        }
        self._priors = {s: _site_distribution(self.priors.for_site(s), shape)
                        for s, shape in self.site_shapes.items()}

    def __repr__(self) -> str:
        return (f"GIM(n_vars={self.n_vars}, n_features={self.n_features}, "
                f"mechanism={self.mechanism!r}, marginal={self.marginal!r}, "
                f"intervention={self.intervention!r}, kind={self.intervention_kind!r})")

    # -- the NumPyro model -----------------------------------------------------------
    def __call__(self, data: PerturbationData, target_sparsity=None, acyclicity_weight=None, *,
                 hard_targets=False, cell_weights=None):
        """Log joint of the parameters and `data` (cells marginalised over targets), or,
        without cells, a generative pass that samples `targets`, `noise` and records `"x"`.

        `target_sparsity` (β_I) and `acyclicity_weight` (λ) override the model's defaults for
        this call, so `fit` can anneal them. `cell_weights (n_cells,)` weight each cell in the
        sufficient statistics (minibatches: `n_k / b_k`; padding: 0).
        """
        self._check_data(data)
        params = {s: numpyro.sample(s, prior) for s, prior in self._priors.items()}
        params["weights"] = masked_weights(params["weights"])
        # The Gaussian conditionals form a proper density only for a DAG; a cycle can raise
        # them by O(1) nats per cell, so the penalty scales with the number of cells.
        if data.x is None:
            n_scale = 1
        elif cell_weights is None:
            n_scale = data.x.shape[0]
        else:
            if jnp.shape(cell_weights) != data.x.shape[:1]:
                raise ValueError(f"cell_weights must have shape ({data.x.shape[0]},) (one per "
                                 f"cell), got {jnp.shape(cell_weights)}")
            n_scale = jnp.sum(cell_weights)
        lam = self.acyclicity_weight if acyclicity_weight is None else acyclicity_weight
        numpyro.factor(
            "acyclicity",
            -lam * n_scale
            * acyclicity_penalty(params["weights"], self.acyclicity, self.power_iterations),
        )
        heads = intervention_outputs(params, data.features)
        shift = hill_shift(data.dose[:, None], heads.emax, heads.log_ec50, heads.log_hill)
        if data.x is None:
            return self._generate(params, heads.target_logits, shift, data, hard_targets)

        beta = self.target_sparsity if target_sparsity is None else target_sparsity
        prob = jnp.where(data.observational[:, None], 0.0, jax.nn.sigmoid(heads.target_logits))
        numpyro.factor("target_sparsity", -beta * jnp.sum(prob))

        n_contexts = data.dose.shape[0]
        fitted = mechanism_mean(self.mechanism, params, data.x)
        stats = residual_stats(data.x - fitted, data.context, n_contexts,
                               fitted if self.intervention_kind == "replace" else None,
                               cell_weights)
        groups = self._groups(data)
        if self.marginal == "exact":
            l0, l1 = target_terms(stats, params["noise_scale"], shift, self.intervention_kind)
            loglik = exact_marginal(l0, l1, heads.target_logits, data.observational, groups)
        else:
            loglik = relaxed_mc_marginal(
                _prng_key(), stats, params["noise_scale"], shift, heads.target_logits,
                data.observational, temperature=self.temperature, n_samples=self.n_mc,
                kind=self.intervention_kind, groups=groups,
            )
        numpyro.factor("cells", loglik)
        return None

    def _generate(self, params, target_logits, shift, data, hard_targets):
        if data.context is None:
            raise ValueError(
                "data has neither cells nor a context index per cell; to generate, pass a "
                "PerturbationData with context (or use GIM.predict)"
            )
        if hard_targets:
            target_dist = dist.BernoulliLogits(target_logits)
        else:
            target_dist = dist.RelaxedBernoulliLogits(self.temperature, target_logits)
        targets = numpyro.sample("targets", target_dist.to_event(2))
        targets = jnp.where(data.observational[:, None], 0.0, targets.astype(shift.dtype))
        n_cells = data.context.shape[0]
        noise = numpyro.sample("noise", dist.Normal(0.0, 1.0).expand((n_cells, self.n_vars))
                               .to_event(2))
        t_cell, s_cell = targets[data.context], shift[data.context]
        scaled = params["noise_scale"] * noise
        if self.intervention_kind == "shift":
            x = sample_scm(self.mechanism, params, scaled + t_cell * s_cell)
        else:
            x = sample_scm(self.mechanism, params, scaled, t_cell, s_cell)
        return numpyro.deterministic("x", x)

    def _groups(self, data: PerturbationData):
        if not self.shared_targets:
            return None
        return make_groups(data.perturbation, data.observational,
                           max(len(data.perturbation_names), 1))

    def _check_data(self, data):
        if not isinstance(data, PerturbationData):
            raise TypeError(f"data must be a gim_ppl.PerturbationData, got {type(data).__name__}")
        if data.n_vars != self.n_vars:
            raise ValueError(
                f"data has {data.n_vars} variables but the model was built with "
                f"n_vars={self.n_vars}"
            )
        if data.features.shape[-1] != self.n_features:
            raise ValueError(
                f"data.features has {data.features.shape[-1]} columns but the model was built "
                f"with n_features={self.n_features}"
            )

    # -- reading a fit -----------------------------------------------------------------
    def _check_sites(self, sites: Mapping) -> bool:
        """Validate `sites`; return True if they carry a leading draw axis."""
        if not isinstance(sites, Mapping):
            raise TypeError(f"sites must be a dict of sample-site values, got {type(sites)}")
        missing = [s for s in self.site_shapes if s not in sites]
        if missing:
            raise ValueError(f"sites lacks the model's sample sites {missing}")
        draws = None
        for s, shape in self.site_shapes.items():
            got = tuple(jnp.shape(sites[s]))
            if got == shape:
                this = False
            elif len(got) == len(shape) + 1 and got[1:] == shape:
                this = True
            else:
                raise ValueError(
                    f"sites[{s!r}] has shape {got}; expected {shape} or (n_draws, *{shape})"
                )
            if draws is not None and this != draws:
                raise ValueError("sites mix single values and draws; give one or the other")
            draws = this
        return bool(draws)

    def _map_sites(self, fn, sites, *args):
        """Apply `fn(params, *args)` to one point or vmap it over draws."""
        params = {s: jnp.asarray(sites[s]) for s in self.site_shapes}
        if self._check_sites(sites):
            return jax.vmap(lambda p: fn(p, *args))(params), True
        return fn(params, *args), False

    def _heads(self, params, data):
        return intervention_outputs(params, data.features)

    def target_probabilities(self, sites, contexts: PerturbationData):
        """Prior target probabilities π(z) from features, `(n_contexts, n_vars)`.

        0 for observational contexts; the posterior mean over draws when sites carry draws.
        """
        self._check_data(contexts)

        def fn(params, data):
            logits = self._heads(params, data).target_logits
            return jnp.where(data.observational[:, None], 0.0, jax.nn.sigmoid(logits))

        out, draws = self._map_sites(fn, sites, contexts)
        return np.asarray(out.mean(0) if draws else out)

    def posterior_targets(self, sites, data: PerturbationData):
        """`P(I_kj = 1 | cells of context k, model)`, `(n_contexts, n_vars)` (exact).

        With `shared_targets`, conditions on all contexts of the perturbation. Averaged over
        draws when sites carry draws.
        """
        self._check_data(data)
        if data.x is None:
            raise ValueError("posterior_targets needs cells: data.x is None")

        def fn(params, data):
            params = {**params, "weights": masked_weights(params["weights"])}
            heads = self._heads(params, data)
            shift = hill_shift(data.dose[:, None], heads.emax, heads.log_ec50, heads.log_hill)
            fitted = mechanism_mean(self.mechanism, params, data.x)
            stats = residual_stats(data.x - fitted, data.context, data.dose.shape[0],
                                   fitted if self.intervention_kind == "replace" else None)
            l0, l1 = target_terms(stats, params["noise_scale"], shift, self.intervention_kind)
            return posterior_target_probs(l0, l1, heads.target_logits, data.observational,
                                          self._groups(data))

        out, draws = self._map_sites(fn, sites, data)
        return np.asarray(out.mean(0) if draws else out)

    def hill_parameters(self, sites, contexts: PerturbationData) -> dict:
        """`dict(emax, ec50, hill)`, each `(n_contexts, n_vars)` (`(n_draws, …)` with draws).

        EC50 is in the units of `contexts.dose`; emax is 0 for observational contexts.
        """
        self._check_data(contexts)

        def fn(params, data):
            heads = self._heads(params, data)
            return {
                "emax": jnp.where(data.observational[:, None], 0.0, heads.emax),
                "ec50": jnp.exp(heads.log_ec50),
                "hill": jnp.exp(heads.log_hill),
            }

        out, _ = self._map_sites(fn, sites, contexts)
        return {k: np.asarray(v) for k, v in out.items()}

    def edge_weights(self, sites):
        """`(n_vars, n_vars)` weights (i → j) with zero diagonal; `(n_draws, …)` with draws."""
        out, _ = self._map_sites(lambda p: masked_weights(p["weights"]), sites)
        return np.asarray(out)

    def graph(self, sites, threshold: float = 0.3) -> np.ndarray:
        """Learned DAG `(n_vars, n_vars)` bool (i → j), guaranteed acyclic.

        One point: `|W| > threshold`. Draws: edges present in more than half of the draws.
        Remaining cycles lose their weakest edge (with a warning).
        """
        w = self.edge_weights(sites)
        if w.ndim == 3:
            return threshold_graph((np.abs(w) > threshold).mean(0), 0.5)
        return threshold_graph(w, threshold)

    # -- prediction --------------------------------------------------------------------
    def predict(self, sites, contexts: PerturbationData, *, key, n_cells: int,
                mode: str = "mixture") -> PerturbationData:
        """Sample `n_cells` cells for each context of `contexts` (cells there are ignored).

        `mode="mixture"` draws targets per cell from π(z) (the Bayesian predictive);
        `mode="map"` uses `I = π(z) > 0.5`. With draws in `sites`, the cells of each context
        are spread evenly over up to `n_cells` draws. Deterministic for a given `key`.

        Returns:
            `PerturbationData` with `x (n_contexts · n_cells, n_vars)`, contexts as given.
        """
        if mode not in ("mixture", "map"):
            raise ValueError(f"mode must be 'mixture' or 'map', got {mode!r}")
        if int(n_cells) < 1:
            raise ValueError(f"n_cells must be >= 1, got {n_cells}")
        self._check_data(contexts)
        n_cells = int(n_cells)
        has_draws = self._check_sites(sites)
        params = {s: jnp.asarray(sites[s]) for s in self.site_shapes}
        if not has_draws:
            params = {s: v[None] for s, v in params.items()}
        n_draws = next(iter(params.values())).shape[0]
        used = min(n_draws, n_cells)
        pick = np.unique(np.round(np.linspace(0, n_draws - 1, used)).astype(int))
        used = pick.size
        params = {s: v[pick] for s, v in params.items()}
        per_draw = math.ceil(n_cells / used)

        k = contexts.dose.shape[0]
        if mode == "mixture":
            # One context per generated cell, so each cell gets its own target draw.
            rep = np.repeat(np.arange(k), per_draw)
            gen = _expand_contexts(contexts, rep, np.arange(rep.size))
        else:
            gen = _expand_contexts(contexts, np.arange(k), np.repeat(np.arange(k), per_draw))
            logits = jax.vmap(lambda p: self._heads(p, gen).target_logits)(params)
            params["targets"] = (logits > 0).astype(logits.dtype)
        predictive = Predictive(self, posterior_samples=params, return_sites=["x"])
        x = predictive(key, gen, hard_targets=True)["x"]  # (used, k * per_draw, d)
        x = x.reshape(used, k, per_draw, self.n_vars).transpose(1, 0, 2, 3)
        x = x.reshape(k, used * per_draw, self.n_vars)[:, :n_cells].reshape(-1, self.n_vars)
        return PerturbationData(
            x, jnp.asarray(np.repeat(np.arange(k), n_cells).astype(np.int32)),
            contexts.features, contexts.dose, contexts.observational, contexts.perturbation,
            contexts.var_names, contexts.context_names, contexts.feature_names,
            contexts.perturbation_names,
        )


def _expand_contexts(contexts: PerturbationData, rows, cell_context) -> PerturbationData:
    """Contexts `contexts[rows]` with cells assigned by `cell_context` (no x)."""
    rows = jnp.asarray(rows)
    return PerturbationData(
        None, jnp.asarray(np.asarray(cell_context, dtype=np.int32)), contexts.features[rows],
        contexts.dose[rows], contexts.observational[rows], contexts.perturbation[rows],
        contexts.var_names, tuple(f"c{i}" for i in range(rows.shape[0])),
        contexts.feature_names, contexts.perturbation_names,
    )


def _prng_key():
    key = numpyro.prng_key()
    if key is None:
        raise RuntimeError(
            "the relaxed_mc marginal draws random targets and needs a PRNG key: run the model "
            "under numpyro.handlers.seed (SVI, MCMC and Predictive do this)"
        )
    return key


__all__ = ["GIM", "MARGINALS", "Priors"]
