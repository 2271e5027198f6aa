"""Reference predictors with the GIM's `fit` / `predict` shape of interface.

- `Observational`: predicts the control distribution for every context (resampled control
  cells) — the error a model must beat to have learned anything about perturbations.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from gim_ppl.data import PerturbationData


def cells_for_contexts(contexts: PerturbationData, x, n_cells: int) -> PerturbationData:
    """Wrap `x (n_contexts · n_cells, n_vars)`, context-major, as cells of `contexts`."""
    ctx = jnp.asarray(np.repeat(np.arange(contexts.n_contexts), n_cells).astype(np.int32))
    return PerturbationData(
        jnp.asarray(x), ctx, contexts.features, contexts.dose, contexts.observational,
        contexts.perturbation, contexts.var_names, contexts.context_names,
        contexts.feature_names, contexts.perturbation_names,
    )


class Observational:
    """Predict the pooled control (observational) cells for every context."""

    def __init__(self):
        self.control = None

    def fit(self, data: PerturbationData) -> Observational:
        obs = np.asarray(data.observational)
        if data.x is None or not obs.any():
            raise ValueError("Observational.fit needs cells of at least one observational context")
        keep = obs[np.asarray(data.context)]
        self.control = jnp.asarray(np.asarray(data.x)[keep])
        return self

    def predict(self, contexts: PerturbationData, *, key, n_cells: int) -> PerturbationData:
        if self.control is None:
            raise RuntimeError("call fit() first")
        idx = jax.random.randint(key, (contexts.n_contexts * n_cells,), 0,
                                 self.control.shape[0])
        return cells_for_contexts(contexts, self.control[idx], n_cells)
