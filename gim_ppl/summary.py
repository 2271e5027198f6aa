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

import jax
import jax.numpy as jnp
import numpy as np

from gim_ppl.core.mechanisms import mechanism_mean
from gim_ppl.data import PerturbationData
from gim_ppl.datasets.doses import DoseScale
from gim_ppl.extras import require
from gim_ppl.model import posterior_mean

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


def _perturbations_by_name(contexts: PerturbationData) -> tuple[list[str], np.ndarray]:
    """Names (sorted) of the perturbations present in `contexts` and the first context of
    each."""
    ids, first = contexts.perturbation_contexts()
    order = sorted(range(ids.size), key=lambda i: contexts.perturbation_names[ids[i]])
    return [contexts.perturbation_names[ids[i]] for i in order], first[order]


def observed_effects(model, sites, data: PerturbationData) -> np.ndarray:
    """`(n_contexts, n_vars, 2)`: mean and standard error of the observed effect on each
    variable in each context of `data` (which needs cells).

    Shift interventions: the effect is the residual `x − f(x)` (f the model's mechanism,
    averaged over draws), what a Hill shift predicts; replace interventions: the value `x`
    itself. The standard error is `s/√n` with the unbiased within-context sd (0 for one cell).
    """
    if data.x is None:
        raise ValueError("observed_effects needs cells: data.x is None")
    draws = model.check_sites(sites)
    x = jnp.asarray(data.x)
    if model.intervention_effect == "shift":
        params = {s: jnp.asarray(sites[s]) for s in model.site_shapes}
        params = params if draws else {s: v[None] for s, v in params.items()}

        def fitted(p):
            return mechanism_mean(model.mechanism,
                                  {**p, "weights": model.scm_weights(p["weights"])}, x)

        effect = np.asarray(x - jax.vmap(fitted)(params).mean(0))
    else:
        effect = np.asarray(x)
    moments = data.replace(x=effect).context_moments()
    n = moments.count[:, None]
    var = moments.var * n / np.maximum(n - 1.0, 1.0)  # unbiased
    return np.stack([moments.mean, np.sqrt(var / n)], axis=-1)


def _highest_dose_rows(data: PerturbationData, names: list[str]) -> np.ndarray:
    """`(len(names),)` context of each named perturbation's highest dose in `data` (−1: the
    perturbation has no context there)."""
    pert, dose = np.asarray(data.perturbation), np.asarray(data.dose, dtype=float)
    rows = np.full(len(names), -1)
    for i, name in enumerate(names):
        if name in data.perturbation_names:
            mine = np.flatnonzero(pert == data.perturbation_names.index(name))
            if mine.size:
                rows[i] = mine[np.argmax(dose[mine])]
    return rows


def target_table(model, sites, contexts: PerturbationData,
                 train: PerturbationData | None = None, *,
                 interval: float = 0.9, min_effect: float | None = None) -> pd.DataFrame:
    """One row per (perturbation, variable), in name order: how likely the variable is a
    target of the perturbation, and how large the model says the effect is.

    Columns:
    - `target_probability`: π(z) from the features (what an unseen perturbation gets);
    - `posterior_probability`: with `train`, P(the perturbation targets the variable |
      cells of all its doses in `train`) (`GIM.posterior_targets(per="perturbation")`: one
      indicator for all doses, each dose's effect the Hill curve; a target seen only at the
      highest dose counts). With `min_effect` δ: the probability that it is a target *and*
      moves the variable by at least δ at the highest training dose. NaN for perturbations
      without training cells;
    - `effect`: the model's effect (Hill shift) at the perturbation's highest dose in
      `contexts`, in the units of the cells — what a target would do;
    - `observed_effect`, `observed_effect_se`: with `train`, the observed effect
      (`observed_effects`) ± its standard error at the perturbation's highest training dose
      (NaN without training cells);
    - `score`: `posterior_probability` (π where there is none) × |`effect`|: the column to
      rank likely, large targets by (`table.sort_values("score", ascending=False)`).

    Args:
        model, sites: a fitted `GIM` and its sites (a point, or draws: then posterior means,
            and `target_probability_low`/`_high`, the equal-tailed `interval` of π over
            the draws: how sure the map is about a new perturbation).
        contexts: the perturbations to list (in name order); cells are not needed.
        train: the cells the model was fit to (for the posterior and observed columns).
        interval: mass of the interval, in (0, 1).
        min_effect: δ ≥ 0 (units of the cells) or None; see `posterior_probability`.
    Returns:
        DataFrame with columns `perturbation, gene, target_probability,
        [target_probability_low, target_probability_high,] posterior_probability, effect,
        observed_effect, observed_effect_se, score`, `n_perturbations · n_vars` rows.
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
    effect = posterior_mean(model, sites, model.hill_effects(
        sites, contexts.contexts_only().subset(_highest_dose_rows(contexts, names))))
    post = np.full_like(prior, np.nan)
    observed = np.full((*prior.shape, 2), np.nan)
    if train is not None:
        p_train = posterior_mean(model, sites, model.posterior_targets(
            sites, train, per="perturbation", min_effect=min_effect))
        top = _highest_dose_rows(train, names)
        seen = top >= 0
        post[seen] = p_train[top[seen]]
        observed[seen] = observed_effects(model, sites, train)[top[seen]]
    elif min_effect is not None:
        raise ValueError("min_effect needs train (the posterior column is computed from cells)")
    d = contexts.n_vars
    score = np.where(np.isnan(post), prior, post) * np.abs(effect)
    return pd.DataFrame({
        "perturbation": np.repeat(names, d),
        "gene": np.tile(contexts.var_names, len(names)),
        "target_probability": prior.ravel(),
        **bounds,
        "posterior_probability": post.ravel(),
        "effect": effect.ravel(),
        "observed_effect": observed[..., 0].ravel(),
        "observed_effect_se": observed[..., 1].ravel(),
        "score": score.ravel(),
    })


def dose_target_table(model, sites, data: PerturbationData,
                      dose_scale: DoseScale | None = None, *,
                      min_effect: float | None = None) -> pd.DataFrame:
    """One row per (perturbational context, variable) of `data` (which needs cells), by
    perturbation name and dose: the per-dose view of `target_table`.

    Columns: `perturbation, context, dose` (in `dose_unit`), `dose_unit`, `gene`,
    `posterior_probability` (P(I = 1 | this context's cells), `GIM.posterior_targets`; with
    `min_effect` δ, and the model's effect at this dose ≥ δ), `effect` (the model's Hill
    shift at this dose), `observed_effect`, `observed_effect_se` (`observed_effects`).

    Args:
        dose_scale: the unit of the dose column; default the data's own (`DoseScale.of`).
    """
    pd = require("pandas")
    scale = DoseScale.of(data) if dose_scale is None else dose_scale
    post = posterior_mean(model, sites,
                            model.posterior_targets(sites, data, min_effect=min_effect))
    effect = posterior_mean(model, sites, model.hill_effects(sites, data))
    observed = observed_effects(model, sites, data)
    pert = np.asarray(data.perturbation)
    dose = np.asarray(data.dose, dtype=float)
    rows = sorted(np.flatnonzero(~np.asarray(data.observational)),
                  key=lambda k: (data.perturbation_names[pert[k]], dose[k]))
    rows = np.asarray(rows, dtype=int)
    d = data.n_vars
    return pd.DataFrame({
        "perturbation": np.repeat([data.perturbation_names[g] for g in pert[rows]], d),
        "context": np.repeat(np.asarray(data.context_names, dtype=object)[rows], d),
        "dose": np.repeat(scale.to_user(dose[rows]), d),
        "dose_unit": scale.unit,
        "gene": np.tile(data.var_names, rows.size),
        "posterior_probability": post[rows].ravel(),
        "effect": effect[rows].ravel(),
        "observed_effect": observed[rows, :, 0].ravel(),
        "observed_effect_se": observed[rows, :, 1].ravel(),
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


__all__ = ["DEGENERATE_RULE", "MIN_HILL", "dose_target_table", "hill_table", "observed_effects",
           "target_table"]
