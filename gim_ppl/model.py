"""`GIM`: the generative intervention model as a value, and a callable NumPyro model.

    model(data, target_sparsity=None, acyclicity_weight=None)

With cells (`data.x` given) the targets are marginalised (`gim_ppl.joint`), so the model has
only continuous sample sites and works with AutoDelta, AutoNormal, AutoLaplaceApproximation
and NUTS alike. Without cells (`data.x is None`, `data.context` given) it is a generative
story (`gim_ppl.generative`): it samples `targets` per context, Hill shifts and cells,
returned as the deterministic site `"x"` — so plain `numpyro.infer.Predictive` gives prior
and posterior predictive draws.

`GIM` is a frozen dataclass: its fields are the settings a user gives (strings or component
values), its derived fields the components built from them (`cell_model`, `interventions`,
`acyclicity_penalty`, the site table). `dataclasses.replace(model, acyclicity="notears")`
builds a new model; `dataclasses.fields` is the one list of settings (checkpoints
fingerprint it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import numpyro

from gim_ppl import generative, readout
from gim_ppl.core.graph import acyclicity_penalty_fn, default_power_iterations
from gim_ppl.core.interventions import (
    OFFSET_SITES,
    InterventionMap,
    InterventionOutputs,
    as_intervention_map,
    shrink,
)
from gim_ppl.core.likelihood import MARGINALS, CellModel
from gim_ppl.core.mechanisms import Mechanism, as_mechanism
from gim_ppl.core.sites import Site, site_shape
from gim_ppl.data import PerturbationData
from gim_ppl.joint import check_data, log_joint_factors, scm_weights
from gim_ppl.priors import SCM_SITES, Priors, site_prior
from gim_ppl.readout import posterior_mean
from gim_ppl.settings import gp_anchors, normalised_settings


@dataclasses.dataclass(frozen=True, eq=False)
class GIM:
    """Generative intervention model over `n_vars` variables and `n_features` features.

    Priors on every site and, as NumPyro factors, the acyclicity, target-sparsity and cells
    terms of `gim_ppl.joint.log_joint_factors`; the read-offs (`posterior_targets`,
    `predict`, ...) are the pure functions of `gim_ppl.readout`, which the methods call.
    Every option is documented in docs/method.md ("Options of `GIM`"); in short:

    mechanism "linear" | "mlp" | `Mechanism`; marginal "exact" | "relaxed_mc" (the paper's
    relaxed-Bernoulli estimator, `temperature`, `n_mc` draws); priors `Priors`;
    intervention_map "linear" | "mlp" | "gp" | `InterventionMap` ("gp" needs `map_anchors`:
    the training perturbations' features or the training data); intervention_effect
    "shift" (x_j += u) | "replace"; hidden: units of MLP mechanisms and maps; acyclicity
    "spectral" | "notears" with weight λ per cell (`acyclicity_weight`), spectral
    `power_iterations` and `exact_acyclicity_gradient` (differentiate through the power
    iterations, as HMC needs); target_sparsity β_I; shared_targets: one target vector per
    perturbation; pooled: the perturbations (names, or the training data) with their own
    offsets on every head; shrinkage None | "ard" | "horseshoe" on the weights that read
    the features; edge_mask `(n_vars, n_vars)` bool, True where i → j is allowed;
    coarsening α of the target evidence (None: plain marginal); statistics "auto" |
    "moments" | "cells": where the per-context sums come from.
    """

    n_vars: int
    n_features: int
    mechanism: str | Mechanism = "linear"
    marginal: str = "exact"
    priors: Priors | None = None
    _: dataclasses.KW_ONLY
    intervention_map: str | InterventionMap = "linear"
    intervention_effect: str = "shift"
    hidden: int = 16
    acyclicity: str = "spectral"
    acyclicity_weight: float = 10.0
    power_iterations: int | None = None
    exact_acyclicity_gradient: bool = False
    target_sparsity: float = 1.0
    temperature: float = 0.25
    n_mc: int = 128
    shared_targets: bool = False
    pooled: Any = None
    shrinkage: str | None = None
    map_anchors: Any = None
    edge_mask: Any = None
    coarsening: float | None = None
    statistics: str = "auto"
    # -- derived in __post_init__ -----------------------------------------------------
    cell_model: CellModel = dataclasses.field(init=False)
    interventions: InterventionMap = dataclasses.field(init=False)
    #: h(W) as a value: a callable (n_vars, n_vars) -> scalar
    acyclicity_penalty: Callable = dataclasses.field(init=False)
    #: one table: each site's axes (→ shape and ArviZ dims) and prior field
    site_specs: dict[str, Site] = dataclasses.field(init=False)
    #: the sites of the causal model of the cells; the rest belong to the intervention map
    scm_sites: tuple[str, ...] = dataclasses.field(init=False)
    axis_sizes: dict[str, int] = dataclasses.field(init=False)
    site_shapes: dict[str, tuple] = dataclasses.field(init=False)
    site_priors: dict = dataclasses.field(init=False)

    def __post_init__(self):
        for name, value in normalised_settings(self).items():
            object.__setattr__(self, name, value)
        mech = as_mechanism(self.mechanism)
        imap = as_intervention_map(self.intervention_map)
        if self.shrinkage is not None:
            imap = shrink(imap, self.shrinkage)
        if self.statistics == "moments" and not mech.is_linear:
            raise ValueError(f"statistics='moments' needs a linear mechanism: the residuals "
                             f"of mechanism={mech.name!r} are not linear in the cells, so "
                             "their sums are no function of the cells' moments; use "
                             "statistics='auto' or 'cells'")
        anchors = gp_anchors(imap.name, self.map_anchors, self.n_features)
        specs = {**SCM_SITES, **mech.sites, **imap.sites,
                 **(OFFSET_SITES if self.pooled else {})}
        sizes = {"var": self.n_vars, "parent": self.n_vars, "feature": self.n_features,
                 "hidden": self.hidden, "map_hidden": self.hidden,
                 "pooled": len(self.pooled) if self.pooled else 0,
                 "anchor": 0 if anchors is None else int(anchors.shape[0])}
        shapes = {s: site_shape(spec, sizes) for s, spec in specs.items()}
        derived = dict(
            map_anchors=anchors, interventions=imap, site_specs=specs, axis_sizes=sizes,
            cell_model=CellModel(mech, self.intervention_effect, self.marginal,
                                 self.temperature, self.n_mc, self.coarsening,
                                 self.statistics),
            acyclicity_penalty=acyclicity_penalty_fn(
                self.acyclicity, default_power_iterations(self.n_vars)
                if self.power_iterations is None else self.power_iterations,
                exact_gradient=self.exact_acyclicity_gradient),
            scm_sites=(*SCM_SITES, *mech.sites), site_shapes=shapes,
            site_priors={s: site_prior(self.priors, s, shape) for s, shape in shapes.items()})
        for name, value in derived.items():
            object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        return (f"GIM(n_vars={self.n_vars}, n_features={self.n_features}, "
                f"mechanism={self.cell_model.mechanism.name!r}, marginal={self.marginal!r}, "
                f"intervention_map={self.interventions.name!r}, "
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
            params, heads, shift = generative.sample_sites(self, data, 1, acyclicity_weight)
            return generative.generate(self, params, heads.target_logits, shift, data,
                                       hard_targets)
        params = {s: numpyro.sample(s, prior) for s, prior in self.site_priors.items()}
        key = None if self.marginal == "exact" else generative.prng_key()
        factors = log_joint_factors(self, params, data, target_sparsity=target_sparsity,
                                    acyclicity_weight=acyclicity_weight,
                                    cell_weights=cell_weights,
                                    context_weights=context_weights, key=key)
        for name, value in factors._asdict().items():
            numpyro.factor(name, value)
        return None

    def observed_model(self, contexts: PerturbationData):
        """This model with the cells as an observed sample site `"x"`: `fn(x=None)`
        (`generative.observed_model`)."""
        return generative.observed_model(self, contexts)

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


__all__ = ["GIM", "MARGINALS", "Priors", "posterior_mean"]
