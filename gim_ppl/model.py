"""`GIM`: the generative intervention model as a callable NumPyro model.

    model(data, target_sparsity=None)

With cells (`data.x` given) the targets are marginalised (`likelihood`), so the model has only
continuous sample sites and works with AutoDelta, AutoNormal, AutoLaplaceApproximation and
NUTS alike. Without cells (`data.x is None`, `data.context` given) it is a generative story:
it samples `targets` per context, Hill shifts and cells, returned as the deterministic site
`"x"` — so plain `numpyro.infer.Predictive` gives prior and posterior predictive draws.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from gim_ppl import readout
from gim_ppl.checks import check_integer, check_real
from gim_ppl.core.graph import (
    acyclicity_penalty_fn,
    default_power_iterations,
    is_dag,
)
from gim_ppl.core.interventions import (
    OFFSET_SITES,
    InterventionOutputs,
    as_intervention_map,
    check_anchors,
    shrink,
)
from gim_ppl.core.likelihood import (
    INTERVENTION_EFFECTS,
    MARGINALS,
    STATISTICS,
    CellModel,
    log_likelihood,
    sample_cells,
)
from gim_ppl.core.mechanisms import as_mechanism
from gim_ppl.core.sites import Site, site_shape
from gim_ppl.data import PerturbationData
from gim_ppl.joint import (
    acyclicity_factor,
    check_data,
    context_effects,
    log_joint_factors,
    scm_weights,
    target_sparsity_factor,
)
from gim_ppl.priors import SCM_SITES, Priors, site_prior
from gim_ppl.readout import posterior_mean


class GIM:
    """Generative intervention model over `n_vars` variables and `n_features` features.

    A callable NumPyro model, `model(data, target_sparsity=None, acyclicity_weight=None)`:
    priors on every site and, as NumPyro factors, the acyclicity, target-sparsity and
    cells terms of `gim_ppl.joint.log_joint_factors`. The computation lives in pure
    functions (as dynamax models call their filters): the log joint in `gim_ppl.joint`,
    the read-offs (`posterior_targets`, `predict`, ...) in `gim_ppl.readout`.

    Args:
        n_vars: number of measured variables d.
        n_features: dimension p of the perturbation features.
        mechanism: "linear" or "mlp" causal mechanisms (or a `core.mechanisms.Mechanism`).
        marginal: "exact" (per-variable logaddexp, zero variance) or "relaxed_mc" (the
            paper's relaxed-Bernoulli Monte Carlo estimator).
        priors: `Priors`.
        intervention_map: "linear", "mlp" or "gp" map from features to targets and Hill
            parameters (or a `core.interventions.InterventionMap`). "gp" needs `map_anchors`.
        shrinkage: None, "ard" or "horseshoe": a learned scale per feature on the weights
            that read the features (linear and MLP maps; priors `Priors.ard_scale`,
            `Priors.horseshoe_*`). For many features of which few matter.
        edge_mask: background knowledge on the graph, `(n_vars, n_vars)` bool, True where
            an edge i → j is allowed (None: every edge but self-loops). Weights outside the
            mask are multiplied by zero, so they have no effect and keep their prior; a
            mask that is a DAG makes the acyclicity factor vanish identically.
        map_anchors: the GP map's training perturbations: their features `(n_anchors,
            n_features)`, or a `PerturbationData` whose perturbations' features are taken
            (one row per perturbation present). A new perturbation gets the GP's conditional
            mean given the fitted values at these anchors.
        intervention_effect: "shift" (x_j += u) or "replace" (x_j's mechanism replaced by a
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
        pooled: the perturbations that get their own offsets on every head (partial
            pooling): the training data (`pooled=train`: its perturbations) or their
            names. A context of a pooled perturbation has head(z) + offset, any other (a
            new perturbation) head(z) alone, so a measured drug's Hill curves and targets
            can follow its own cells while new drugs get the feature map. Contexts are
            matched by `data.perturbation_names`, so held-out splits and new data sets are
            safe. Offset priors: `Priors.{head}_offset`. None: no offsets. Recommended
            whenever the model predicts (measured: docs/benchmark.md).
        coarsening: α > 0 of the coarsened target evidence (`core.likelihood`): a context's
            n cells weigh as `α / (α + n) · n ≤ α` cells in the evidence for its targets,
            so target probabilities stop saturating with many cells when the model is only
            approximately right (real cells). None: the plain marginal. Measured:
            docs/real_cells.md.
        statistics: where the likelihood's per-context sums come from: "auto" (default)
            — a linear mechanism reads the data's per-context moments when the data carries
            them (`PerturbationData.with_moments`; `from_arrays` attaches them when there
            are at least n_vars cells per context), so a step does not grow with the cells;
            anything else reads the cells. "moments": require them (linear mechanisms
            only). "cells": always one pass over the cells.
    """

    def __init__(
        self,
        n_vars: int,
        n_features: int,
        mechanism: str = "linear",
        marginal: str = "exact",
        priors: Priors | None = None,
        *,
        intervention_map: str = "linear",
        intervention_effect: str = "shift",
        hidden: int = 16,
        acyclicity: str = "spectral",
        acyclicity_weight: float = 10.0,
        power_iterations: int | None = None,
        target_sparsity: float = 1.0,
        temperature: float = 0.25,
        n_mc: int = 128,
        shared_targets: bool = False,
        pooled=None,
        shrinkage: str | None = None,
        map_anchors=None,
        edge_mask=None,
        coarsening: float | None = None,
        statistics: str = "auto",
    ):
        n_vars, n_features = check_integer("n_vars", n_vars), check_integer("n_features",
                                                                             n_features)
        hidden, n_mc = check_integer("hidden", hidden), check_integer("n_mc", n_mc)
        temperature = check_real("temperature", temperature, minimum=0.0, strict=True)
        target_sparsity = check_real("target_sparsity", target_sparsity, minimum=0.0)
        acyclicity_weight = check_real("acyclicity_weight", acyclicity_weight, minimum=0.0)
        if power_iterations is not None:
            power_iterations = check_integer("power_iterations", power_iterations)
        if coarsening is not None:
            coarsening = check_real("coarsening", coarsening, minimum=0.0, strict=True)
        self.coarsening = None if coarsening is None else float(coarsening)
        if not isinstance(marginal, str) or marginal not in MARGINALS:
            raise ValueError(f"marginal must be one of {MARGINALS}, got {marginal!r}")
        if not isinstance(intervention_effect, str) \
                or intervention_effect not in INTERVENTION_EFFECTS:
            raise ValueError(f"intervention_effect must be one of {INTERVENTION_EFFECTS}, got "
                             f"{intervention_effect!r}")
        mech, imap = as_mechanism(mechanism), as_intervention_map(intervention_map)
        if not isinstance(statistics, str) or statistics not in STATISTICS:
            raise ValueError(f"statistics must be one of {STATISTICS}, got {statistics!r}")
        if statistics == "moments" and not mech.is_linear:
            raise ValueError(f"statistics='moments' needs a linear mechanism: the residuals "
                             f"of mechanism={mech.name!r} are not linear in the cells, so "
                             "their sums are no function of the cells' moments; use "
                             "statistics='auto' or 'cells'")
        self.statistics = statistics
        if shrinkage is not None:
            imap = shrink(imap, shrinkage)
        self.shrinkage = shrinkage
        self.map_anchors = _gp_anchors(imap.name, map_anchors, int(n_features))
        self.n_vars, self.n_features = int(n_vars), int(n_features)
        self.edge_mask = None if edge_mask is None else _check_edge_mask(edge_mask, self.n_vars)
        self.mechanism, self.marginal = mech.name, marginal
        self.priors = Priors() if priors is None else priors
        if not isinstance(self.priors, Priors):
            raise TypeError(f"priors must be a gim_ppl.Priors, got {type(self.priors).__name__}")
        self.intervention_map, self.intervention_effect = imap.name, intervention_effect
        self.hidden = int(hidden)
        self.acyclicity, self.acyclicity_weight = acyclicity, float(acyclicity_weight)
        self.power_iterations = (
            default_power_iterations(self.n_vars) if power_iterations is None
            else int(power_iterations)
        )
        # h(W) as a value: a callable (n_vars, n_vars) -> scalar; validates the name.
        self.acyclicity_penalty = acyclicity_penalty_fn(acyclicity, self.power_iterations)
        self.target_sparsity = float(target_sparsity)
        self.temperature, self.n_mc = float(temperature), int(n_mc)
        self.shared_targets = bool(shared_targets)
        self.cell_model = CellModel(mech, intervention_effect, marginal, self.temperature,
                                    self.n_mc, self.coarsening, statistics)
        # One table: each site's axes (→ shape and ArviZ dims) and prior field.
        self.pooled = _pooled_names(pooled)
        self.sites: dict[str, Site] = {**SCM_SITES, **mech.sites, **imap.sites,
                                       **(OFFSET_SITES if self.pooled else {})}
        # The sites of the causal model of the cells (graph, mechanisms, noise); the rest
        # belong to the intervention map (features → targets and Hill curves).
        self.scm_sites: tuple[str, ...] = (*SCM_SITES, *mech.sites)
        self.axis_sizes = {"var": self.n_vars, "parent": self.n_vars,
                           "feature": self.n_features, "hidden": self.hidden,
                           "map_hidden": self.hidden,
                           "pooled": len(self.pooled) if self.pooled else 0,
                           "anchor": 0 if self.map_anchors is None
                           else int(self.map_anchors.shape[0])}
        self.site_shapes: dict[str, tuple] = {
            s: site_shape(spec, self.axis_sizes) for s, spec in self.sites.items()}
        self.site_priors = {s: site_prior(self.priors, s, shape)
                            for s, shape in self.site_shapes.items()}

    def with_acyclicity(self, kind: str, *, exact_gradient: bool = True) -> GIM:
        """This model with acyclicity penalty `kind` ("spectral" or "notears"), a shallow
        copy; the user's model is not changed. `exact_gradient`: the spectral penalty
        differentiated through its power iterations (its default gradient holds the vectors
        fixed; see `core.graph.spectral_penalty`), as HMC needs. `run_mcmc` uses it."""
        model = copy.copy(self)
        model.acyclicity = kind
        model.acyclicity_penalty = acyclicity_penalty_fn(kind, self.power_iterations,
                                                         exact_gradient=exact_gradient)
        return model

    def __repr__(self) -> str:
        return (f"GIM(n_vars={self.n_vars}, n_features={self.n_features}, "
                f"mechanism={self.mechanism!r}, marginal={self.marginal!r}, "
                f"intervention_map={self.intervention_map!r}, "
                f"intervention_effect={self.intervention_effect!r})")

    # -- the NumPyro model -----------------------------------------------------------
    def __call__(self, data: PerturbationData, target_sparsity=None, acyclicity_weight=None, *,
                 hard_targets=False, cell_weights=None, context_weights=None):
        """Log joint of the parameters and `data` (cells marginalised over targets), or,
        without cells, a generative pass that samples `targets`, `noise` and records `"x"`.

        `target_sparsity` (β_I) and `acyclicity_weight` (λ) override the model's defaults for
        this call, so `fit` can anneal them. `cell_weights (n_cells,)` weight each cell in the
        sufficient statistics (minibatches: `n_k / b_k`; padding: 0); `context_weights
        (n_contexts,)` weight each perturbed context's term, the mixture over its targets
        (minibatches of whole perturbations: `inference.batching.perturbation_batch`).
        """
        check_data(self, data)
        if data.x is None:
            params, heads, shift = self._sample_sites(data, 1, acyclicity_weight)
            return self._generate(params, heads.target_logits, shift, data, hard_targets)
        params = {s: numpyro.sample(s, prior) for s, prior in self.site_priors.items()}
        key = None if self.marginal == "exact" else _prng_key()
        factors = log_joint_factors(self, params, data, target_sparsity=target_sparsity,
                                    acyclicity_weight=acyclicity_weight,
                                    cell_weights=cell_weights,
                                    context_weights=context_weights, key=key)
        for name, value in factors._asdict().items():
            numpyro.factor(name, value)
        return None

    def _sample_sites(self, data: PerturbationData, n_scale, acyclicity_weight):
        """Every sample site from its prior, the acyclicity factor `−λ · n_scale · h(W)`
        (None for `n_scale`: left out), and the heads and Hill shift `(n_contexts, n_vars)`
        of `data`'s contexts."""
        params = {s: numpyro.sample(s, prior) for s, prior in self.site_priors.items()}
        params["weights"] = self.scm_weights(params["weights"])
        if n_scale is not None:
            numpyro.factor("acyclicity", acyclicity_factor(self, params["weights"], n_scale,
                                                           acyclicity_weight))
        heads, shift = context_effects(self, params, data)
        return params, heads, shift

    def observed_model(self, contexts: PerturbationData):
        """This model with the cells as an observed sample site: `fn(x=None)`, for tools
        that need one (`numpyro.infer.calibration.vsbc_diagnostic`, prior predictive checks).

        `contexts` fixes the contexts and the context of each cell (`contexts.context`;
        cells in `contexts.x` are ignored). `fn(x)` has the same sample sites and the same
        log joint as `self(contexts.replace(x=x))` with the exact marginal: the site `"x"`
        `(n_cells, n_vars)` has the cells' likelihood, targets summed out, as its log
        density; with `x=None` it is drawn (targets per context from π, then cells).
        Ancestral sampling ignores factors, so simulation draws from the model's prior only
        when the acyclicity and target-sparsity factors vanish: `target_sparsity=0` and an
        `edge_mask` that is a DAG. Factors that vanish identically are left out (the model
        then has sample sites only); the others are kept.
        """
        check_data(self, contexts)
        if contexts.context is None:
            raise ValueError("contexts must give the context of each cell (contexts.context "
                             "is None); e.g. data.for_prediction(n_cells)")
        if self.shared_targets:
            raise ValueError("observed_model draws targets per context; build the model "
                             "with shared_targets=False")
        if self.coarsening is not None:
            raise ValueError("observed_model needs the generative density of the cells; "
                             "coarsened target evidence is not one: build the model with "
                             "coarsening=None")
        cells = contexts.replace(x=None)
        exact = self.cell_model._replace(marginal="exact")
        n_cells = int(cells.context.shape[0])
        acyclic = self.edge_mask is not None and is_dag(self.edge_mask)

        def model(x=None):
            params, heads, shift = self._sample_sites(cells, None if acyclic else n_cells,
                                                      None)
            if self.target_sparsity != 0.0:
                numpyro.factor("target_sparsity", target_sparsity_factor(self, heads, cells))
            return numpyro.sample("x", _MarginalCells(exact, params, cells, heads.target_logits,
                                                      shift), obs=x)

        return model

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
        x = sample_cells(self.cell_model, params, noise, targets[data.context],
                         shift[data.context])
        return numpyro.deterministic("x", x)

    def scm_weights(self, weights):
        """The weights `(…, n_vars, n_vars)` the SCM uses: diagonal masked, and zeroed outside
        `edge_mask` (`joint.scm_weights`)."""
        return scm_weights(self, weights)

    def with_moments(self, data: PerturbationData) -> PerturbationData:
        """`data` with per-context moments attached where this model reads them
        (`statistics="auto"`, a linear mechanism) and they pay off
        (`PerturbationData.moments_pay_off`); else `data` itself. `fit` and `run_mcmc`
        call it; call it before `SVI.run` on data built with `replace`."""
        if self.statistics != "auto" or not self.cell_model.mechanism.is_linear:
            return data
        return data.with_moments(only_if_cheaper=True)

    # -- reading a fit: thin delegates to the pure functions of `gim_ppl.readout` ------
    # (one value per draw when `sites` carry a leading draw axis; see that module)
    def check_sites(self, sites: Mapping) -> bool:
        """Validate `sites`; return True if they carry a leading draw axis."""
        return readout.check_sites(self, sites)

    def intervention_outputs(self, sites, contexts: PerturbationData) -> InterventionOutputs:
        """The four heads of each context (`readout.intervention_outputs`)."""
        return readout.intervention_outputs(self, sites, contexts)

    def target_probabilities(self, sites, contexts: PerturbationData) -> np.ndarray:
        """Prior target probabilities π(z) (`readout.target_probabilities`)."""
        return readout.target_probabilities(self, sites, contexts)

    def posterior_targets(self, sites, data: PerturbationData, *, per: str = "context",
                          min_effect: float | None = None) -> np.ndarray:
        """`P(I_kj = 1 | cells, model)` (`readout.posterior_targets`)."""
        return readout.posterior_targets(self, sites, data, per=per, min_effect=min_effect)

    def log_likelihood(self, sites, data: PerturbationData) -> np.ndarray | float:
        """`log p(cells of data | sites)`, targets summed out (`readout.log_likelihood`)."""
        return readout.log_likelihood(self, sites, data)

    def hill_parameters(self, sites, contexts: PerturbationData) -> dict:
        """`dict(emax, ec50, hill)` of each context (`readout.hill_parameters`)."""
        return readout.hill_parameters(self, sites, contexts)

    def hill_effects(self, sites, contexts: PerturbationData) -> np.ndarray:
        """The Hill shift at each context's dose (`readout.hill_effects`)."""
        return readout.hill_effects(self, sites, contexts)

    def edge_weights(self, sites) -> np.ndarray:
        """`(n_vars, n_vars)` weights i → j (`readout.edge_weights`)."""
        return readout.edge_weights(self, sites)

    def graph(self, sites, threshold: float = 0.3) -> np.ndarray:
        """Learned DAG `(n_vars, n_vars)` bool i → j (`readout.graph`)."""
        return readout.graph(self, sites, threshold)

    def predict(self, sites, contexts: PerturbationData, *, key, n_cells: int,
                mode: str = "mixture", observed: PerturbationData | None = None
                ) -> PerturbationData:
        """`n_cells` cells sampled for each context (`readout.predict`)."""
        return readout.predict(self, sites, contexts, key=key, n_cells=n_cells, mode=mode,
                               observed=observed)

    def predicted_means(self, sites, contexts: PerturbationData, *, key,
                        n_cells: int = 200, observed: PerturbationData | None = None
                        ) -> np.ndarray:
        """Mean predicted cell of each context under each draw (`readout.predicted_means`)."""
        return readout.predicted_means(self, sites, contexts, key=key, n_cells=n_cells,
                                       observed=observed)

    def context_mean_draws(self, sites, contexts: PerturbationData, *, key,
                           n_draws: int = 200, observed: PerturbationData | None = None
                           ) -> np.ndarray:
        """Mean cell of each context under drawn target vectors
        (`readout.context_mean_draws`)."""
        return readout.context_mean_draws(self, sites, contexts, key=key, n_draws=n_draws,
                                          observed=observed)


class _MarginalCells(dist.Distribution):
    """Cells `(n_cells, n_vars)` of fixed contexts given the parameters, targets summed
    out: `log_prob` is `core.likelihood.log_likelihood` (exact marginal), `sample` draws
    targets per context from π and cells with `core.likelihood.sample_cells`."""

    support = dist.constraints.independent(dist.constraints.real, 2)

    def __init__(self, cell_model: CellModel, params: dict, contexts: PerturbationData,
                 target_logits, shift):
        self.cell_model, self.params, self.contexts = cell_model, params, contexts
        self.target_logits, self.shift = target_logits, shift
        super().__init__(batch_shape=(),
                         event_shape=(contexts.context.shape[0], target_logits.shape[-1]))

    def sample(self, key, sample_shape=()):
        def one(key):
            k_targets, k_noise = jax.random.split(key)
            targets = jax.random.bernoulli(k_targets, jax.nn.sigmoid(self.target_logits))
            targets = jnp.where(self.contexts.observational[:, None], 0.0,
                                targets.astype(self.shift.dtype))
            noise = jax.random.normal(k_noise, self.event_shape, self.shift.dtype)
            ctx = self.contexts.context
            return sample_cells(self.cell_model, self.params, noise, targets[ctx],
                                self.shift[ctx])

        keys = jax.random.split(key, math.prod(sample_shape)) if sample_shape else key[None]
        return jax.vmap(one)(keys).reshape(tuple(sample_shape) + self.event_shape)

    def log_prob(self, value):
        def one(x):
            return log_likelihood(self.cell_model, self.params, self.contexts.replace(x=x),
                                  self.target_logits, self.shift)

        batch = jnp.shape(value)[:-2]
        flat = jnp.reshape(value, (-1, *self.event_shape))
        return jax.vmap(one)(flat).reshape(batch)


def _gp_anchors(map_name: str, map_anchors, n_features: int):
    """The GP map's anchors `(n_anchors, n_features)` from features or the training data
    (one row per perturbation); None for other maps, which take none."""
    if map_name != "gp":
        if map_anchors is not None:
            raise ValueError("map_anchors is used by intervention_map='gp' only, got "
                             f"intervention_map={map_name!r}")
        return None
    if map_anchors is None:
        raise ValueError("intervention_map='gp' needs map_anchors: the features of the "
                         "training perturbations, or the training data")
    if isinstance(map_anchors, PerturbationData):
        _, first = map_anchors.perturbation_contexts()
        map_anchors = np.asarray(map_anchors.features)[first]
    return jnp.asarray(check_anchors(map_anchors, n_features), dtype=jnp.result_type(float))


def _pooled_names(pooled) -> tuple[str, ...] | None:
    """`pooled` as a tuple of distinct perturbation names (from the training data: its
    perturbations), or None."""
    if isinstance(pooled, PerturbationData):
        ids, _ = pooled.perturbation_contexts()
        pooled = [pooled.perturbation_names[i] for i in ids]
    if pooled is not None and (isinstance(pooled, (str, bytes))
                               or not hasattr(pooled, "__iter__")):
        raise TypeError(f"pooled must be a sequence of perturbation names, got "
                        f"{type(pooled).__name__} {pooled!r}")
    names = None if pooled is None else tuple(str(n) for n in pooled)
    if names is not None and (not names or len(set(names)) != len(names)):
        raise ValueError("pooled must be a non-empty sequence of distinct perturbation "
                         f"names, got {pooled!r}")
    return names


def _check_edge_mask(edge_mask, n_vars: int) -> np.ndarray:
    mask = np.asarray(edge_mask)
    if mask.dtype != bool:
        if mask.dtype.kind not in "biuf" or not np.isin(mask, (0, 1)).all():
            raise ValueError("edge_mask must be a bool (or 0/1) array, True where an edge i → j "
                             f"is allowed; got dtype {mask.dtype}")
        mask = mask.astype(bool)
    if mask.shape != (n_vars, n_vars):
        raise ValueError(f"edge_mask must have shape ({n_vars}, {n_vars}) (parent, child), got "
                         f"{mask.shape}")
    return mask & ~np.eye(n_vars, dtype=bool)


def _prng_key():
    key = numpyro.prng_key()
    if key is None:
        raise RuntimeError(
            "the relaxed_mc marginal draws random targets and needs a PRNG key: run the model "
            "under numpyro.handlers.seed (SVI, MCMC and Predictive do this)"
        )
    return key


__all__ = ["GIM", "MARGINALS", "Priors", "posterior_mean"]
