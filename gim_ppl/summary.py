"""Result tables of a fitted GIM, one row per (perturbation, variable), as pandas DataFrames.

- `target_table`: the prior target probability π(z) from features and, given training
  cells, the posterior P(I = 1 | cells).
- `hill_table`: the Hill parameters, with EC50 in the user's dose unit (`DoseScale`).

Both read off the model one context per perturbation (targets and Hill parameters depend on
features only) and average posterior draws when `sites` carry them. pandas is imported
inside the functions (`pip install "gim_ppl[screen]"`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from gim_ppl.data import PerturbationData
from gim_ppl.datasets.doses import DoseScale
from gim_ppl.extras import require

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


def _perturbations_by_name(contexts: PerturbationData) -> tuple[list[str], np.ndarray]:
    """Names (sorted) of the perturbations present in `contexts` and the first context of
    each."""
    ids, first = contexts.perturbation_contexts()
    order = sorted(range(ids.size), key=lambda i: contexts.perturbation_names[ids[i]])
    return [contexts.perturbation_names[ids[i]] for i in order], first[order]


def target_table(model, sites, contexts: PerturbationData,
                 train: PerturbationData | None = None) -> pd.DataFrame:
    """One row per (perturbation, variable): `target_probability` (π from features) and, with
    `train`, `posterior_probability` (P(I = 1 | cells), mean over the perturbation's training
    contexts; NaN for perturbations without training cells).

    Args:
        model, sites: a fitted `GIM` and its sites (a point, or draws: then posterior means).
        contexts: the perturbations to list (in name order); cells are not needed.
        train: the cells the model was fit to (for the posterior column).
    Returns:
        DataFrame with columns `perturbation, gene, target_probability,
        posterior_probability`, `n_perturbations · n_vars` rows.
    """
    pd = require("pandas")
    draws = model.check_sites(sites)
    names, rows = _perturbations_by_name(contexts)
    prior = np.asarray(model.target_probabilities(sites, contexts.contexts_only().subset(rows)))
    prior = prior.mean(0) if draws else prior
    post = np.full_like(prior, np.nan)
    if train is not None:
        p_train = np.asarray(model.posterior_targets(sites, train))
        p_train = p_train.mean(0) if draws else p_train
        t_pert = np.asarray(train.perturbation)
        for i, name in enumerate(names):
            if name in train.perturbation_names:
                mine = t_pert == train.perturbation_names.index(name)
                if mine.any():
                    post[i] = p_train[mine].mean(0)
    d = contexts.n_vars
    return pd.DataFrame({
        "perturbation": np.repeat(names, d),
        "gene": np.tile(contexts.var_names, len(names)),
        "target_probability": prior.ravel(),
        "posterior_probability": post.ravel(),
    })


def hill_table(model, sites, contexts: PerturbationData, dose_scale: DoseScale) -> pd.DataFrame:
    """One row per (perturbation, variable): `emax`, `ec50` (in `dose_scale.unit`), `hill`,
    `dose_unit`. Hill parameters depend on features only (one context per perturbation);
    with draws, each column is the posterior mean (EC50: the mean in user units)."""
    pd = require("pandas")
    names, rows = _perturbations_by_name(contexts)
    h = model.hill_parameters(sites, contexts.contexts_only().subset(rows))
    ec50 = dose_scale.to_user(h["ec50"])
    if model.check_sites(sites):
        h = {k: np.asarray(v).mean(0) for k, v in h.items()}
        ec50 = ec50.mean(0)
    d = contexts.n_vars
    return pd.DataFrame({
        "perturbation": np.repeat(names, d),
        "gene": np.tile(contexts.var_names, len(names)),
        "emax": np.asarray(h["emax"]).ravel(),
        "ec50": ec50.ravel(),
        "hill": np.asarray(h["hill"]).ravel(),
        "dose_unit": dose_scale.unit,
    })


__all__ = ["hill_table", "target_table"]
