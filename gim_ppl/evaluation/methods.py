"""What a benchmark asks of a method, as protocols: every method is fitted (`Method.fit`);
what else it offers is read from what it implements, not from its name.

- `Method`: `fit(data, *, key, progress=False) -> fitted` (itself, fitted).
- `CellPredictor`: a `Method` that predicts cells of new contexts, `predict(contexts, *, key,
  n_cells) -> PerturbationData` (the GIM, the baselines of `baselines.py`).
- `FittedTargetScorer`: `fitted_target_scores() -> (n_contexts, n_vars)`, how strongly each
  variable is a target of each context it was fitted on, read from their cells (the GIM's
  posterior P(I = 1 | cells), UT-IGSP's target frequency, the mean-shift detector).
- `TargetScorer`: `target_scores(contexts) -> (n_contexts, n_vars)` for contexts it has not
  seen, from their features and doses alone (the GIM's π(z), `OracleFeatureTargets`).
- `EdgeScorer`: `edge_scores() -> (n_vars, n_vars)` and `graph() -> (n_vars, n_vars)` bool
  (the GIM's |W| and DAG, UT-IGSP, GIES).

Benchmarks choose methods from a registry, a dict of name → constructor value
(`protocol.REGISTRY`, `sachs_benchmark.REGISTRY`); a new method is a new entry, not a new
branch. `GIMMethod` is the GIM as such a method.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import optax

from gim_ppl.data import PerturbationData
from gim_ppl.inference import fit
from gim_ppl.model import GIM, posterior_mean


@runtime_checkable
class Method(Protocol):
    """Anything a benchmark fits: `fit` returns the fitted method (here: itself)."""

    def fit(self, data: PerturbationData, *, key, progress: bool = False) -> Method: ...


@runtime_checkable
class CellPredictor(Method, Protocol):
    """A method that predicts `n_cells` cells for each of `contexts`."""

    def predict(self, contexts: PerturbationData, *, key, n_cells: int) -> PerturbationData: ...


@runtime_checkable
class FittedTargetScorer(Protocol):
    """Target scores `(n_contexts, n_vars)` of the contexts the method was fitted on."""

    def fitted_target_scores(self) -> np.ndarray: ...


@runtime_checkable
class TargetScorer(Protocol):
    """Target scores `(n_contexts, n_vars)` of unseen `contexts`, from features and doses."""

    def target_scores(self, contexts: PerturbationData) -> np.ndarray: ...


@runtime_checkable
class EdgeScorer(Protocol):
    """Edge scores `(n_vars, n_vars)` (larger: more likely an edge i → j) and a graph."""

    def edge_scores(self) -> np.ndarray: ...

    def graph(self) -> np.ndarray: ...


class GIMMethod:
    """A `GIM(n_vars, n_features, **options)` fitted by `gim_ppl.fit` with
    `optax.adam(learning_rate)` for `steps` steps; with `pooled=True` the GIM is given the
    training data as `pooled` (per-perturbation offsets around the feature map). Read-offs
    are averaged over draws when the fit gives draws (`posterior_mean`)."""

    def __init__(self, *, steps: int, learning_rate: float, pooled: bool = False, **options):
        self.steps, self.learning_rate = int(steps), float(learning_rate)
        self.pooled, self.options = pooled, options

    def fit(self, data: PerturbationData, *, key, progress: bool = False) -> GIMMethod:
        pooled = {"pooled": data} if self.pooled else {}
        self.model = GIM(data.n_vars, data.n_features, **self.options, **pooled)
        self.result = fit(self.model, data, steps=self.steps, key=key,
                          optimizer=optax.adam(self.learning_rate), progress=progress)
        self.sites, self.train = self.result.sites, data
        return self

    def predict(self, contexts: PerturbationData, *, key, n_cells: int) -> PerturbationData:
        # known perturbations keep the targets their training cells showed
        return self.model.predict(self.sites, contexts, key=key, n_cells=n_cells,
                                  observed=self.train)

    def fitted_target_scores(self) -> np.ndarray:
        """`(n_contexts, n_vars)` posterior P(I = 1 | cells) of the training contexts."""
        return np.asarray(posterior_mean(self.model, self.sites,
                                         self.model.posterior_targets(self.sites, self.train)))

    def target_scores(self, contexts: PerturbationData) -> np.ndarray:
        """`(n_contexts, n_vars)` π(z) of the feature map (no cells read)."""
        return np.asarray(posterior_mean(self.model, self.sites,
                                         self.model.target_probabilities(self.sites, contexts)))

    def edge_scores(self) -> np.ndarray:
        """`(n_vars, n_vars)` |W|."""
        return np.asarray(posterior_mean(self.model, self.sites,
                                         np.abs(self.model.edge_weights(self.sites))))

    def graph(self) -> np.ndarray:
        return np.asarray(self.model.graph(self.sites))


__all__ = ["CellPredictor", "EdgeScorer", "FittedTargetScorer", "GIMMethod", "Method",
           "TargetScorer"]
