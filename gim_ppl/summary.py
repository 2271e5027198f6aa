"""Result tables of a fitted GIM, one row per (perturbation, variable), as pandas DataFrames.

- `target_table`: the prior target probability π(z) from features and, given training
  cells, the posterior P(I = 1 | cells).
- `hill_table`: the Hill parameters, with EC50 in the user's dose unit (the data's
  `DoseScale`), beside the target probabilities, the doses tested, and a flag for degenerate
  fits (`DEGENERATE_RULE`).

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
                 train: PerturbationData | None = None, *,
                 interval: float = 0.9) -> pd.DataFrame:
    """One row per (perturbation, variable): `target_probability` (π from features) and, with
    `train`, `posterior_probability` (P(I = 1 | cells), mean over the perturbation's training
    contexts; NaN for perturbations without training cells).

    Args:
        model, sites: a fitted `GIM` and its sites (a point, or draws: then posterior means,
            and `target_probability_low`/`_high`, the equal-tailed `interval` of π over
            the draws: how sure the map is about a new perturbation).
        contexts: the perturbations to list (in name order); cells are not needed.
        train: the cells the model was fit to (for the posterior column).
        interval: mass of the interval, in (0, 1).
    Returns:
        DataFrame with columns `perturbation, gene, target_probability,
        posterior_probability` (+ the interval columns with draws), `n_perturbations ·
        n_vars` rows.
    """
    pd = require("pandas")
    if not 0 < interval < 1:
        raise ValueError(f"interval must be in (0, 1), got {interval!r}")
    draws = model.check_sites(sites)
    names, rows = _perturbations_by_name(contexts)
    prior = np.asarray(model.target_probabilities(sites, contexts.contexts_only().subset(rows)))
    bounds = {}
    if draws:
        low, high = np.quantile(prior, [(1 - interval) / 2, (1 + interval) / 2], axis=0)
        bounds = {"target_probability_low": low.ravel(), "target_probability_high": high.ravel()}
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
        **bounds,
        "posterior_probability": post.ravel(),
    })


MIN_HILL = 0.2
DEGENERATE_RULE = (
    f"a fit is flagged degenerate when its Hill coefficient is below {MIN_HILL} (the curve "
    "rises over more than ten decades of dose, so EC50 is not determined) or its EC50 lies "
    "outside the doses at which the perturbation was tested (the half-maximal dose is "
    "extrapolated)")


def hill_table(model, sites, contexts: PerturbationData, dose_scale: DoseScale | None = None,
               *, train: PerturbationData | None = None) -> pd.DataFrame:
    """One row per (perturbation, variable): the Hill curve the model gives the perturbation,
    beside how likely the variable is its target.

    Columns: `perturbation, gene, target_probability, posterior_probability` (as in
    `target_table`; the posterior needs `train`), `emax` (the shift at saturating dose, in
    the units of the cells), `ec50` (in `dose_unit`), `hill` (the Hill coefficient),
    `dose_unit`, `lowest_tested_dose`, `highest_tested_dose` (the positive doses of the
    perturbation's contexts in `contexts`, in `dose_unit`), `degenerate` (bool) and
    `degenerate_reason` ("" when not degenerate); the rule is `DEGENERATE_RULE`.

    Hill parameters depend on features only (one context per perturbation); they describe
    the effect *if* the variable is a target, so read them where the target probability is
    high. With draws, each column is the posterior mean (EC50: the mean in user units).

    Args:
        model, sites: a fitted `GIM` and its sites (a point, or draws).
        contexts: the perturbations to list (in name order) and their tested doses.
        dose_scale: the unit of the EC50 and dose columns; default: the data's own
            (`DoseScale.of(contexts)`: the file's unit for data from `from_anndata`).
        train: the cells the model was fit to (for `posterior_probability`).
    """
    require("pandas")  # a clear ImportError before any work
    scale = DoseScale.of(contexts) if dose_scale is None else dose_scale
    names, rows = _perturbations_by_name(contexts)
    h = model.hill_parameters(sites, contexts.contexts_only().subset(rows))
    ec50 = scale.to_user(h["ec50"])
    if model.check_sites(sites):
        h = {k: np.asarray(v).mean(0) for k, v in h.items()}
        ec50 = ec50.mean(0)
    d = contexts.n_vars
    lowest, highest = _tested_doses(contexts, names, scale)
    ec50, hill = np.asarray(ec50).ravel(), np.asarray(h["hill"]).ravel()
    low, high = np.repeat(lowest, d), np.repeat(highest, d)
    reason = np.full(ec50.size, "", dtype=object)
    reason[ec50 > high] = "EC50 above the tested doses"
    reason[ec50 < low] = "EC50 below the tested doses"
    flat = hill < MIN_HILL
    reason[flat] = [f"Hill coefficient below {MIN_HILL}" + (f"; {r}" if r else "")
                    for r in reason[flat]]
    table = target_table(model, sites, contexts, train=train)
    return table.assign(
        emax=np.asarray(h["emax"]).ravel(), ec50=ec50, hill=hill, dose_unit=scale.unit,
        lowest_tested_dose=low, highest_tested_dose=high,
        degenerate=reason != "", degenerate_reason=reason.astype(str),
    )


def _tested_doses(contexts: PerturbationData, names: list[str],
                  scale: DoseScale) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest positive dose (user units) of each named perturbation's contexts,
    `(n_names,)` each (NaN without a positive dose)."""
    pert = np.asarray(contexts.perturbation)
    doses = scale.to_user(np.asarray(contexts.dose, dtype=float))
    lowest, highest = np.full(len(names), np.nan), np.full(len(names), np.nan)
    for i, name in enumerate(names):
        mine = (pert == contexts.perturbation_names.index(name)) & (doses > 0)
        if mine.any():
            lowest[i], highest[i] = doses[mine].min(), doses[mine].max()
    return lowest, highest


__all__ = ["DEGENERATE_RULE", "MIN_HILL", "hill_table", "target_table"]
