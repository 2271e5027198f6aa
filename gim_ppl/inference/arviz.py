"""`to_arviz`: MCMC runs and fitted sites as `arviz.InferenceData` with named dims.

ArviZ calls live only in this module, so an ArviZ version switch touches one file.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
from numpyro.infer import MCMC

from gim_ppl.data import PerturbationData
from gim_ppl.extras import require
from gim_ppl.inference.fit import FitResult
from gim_ppl.model import GIM

#: Draws per call of `GIM.posterior_targets` (it holds every cell of `data` per draw).
POSTERIOR_TARGET_BLOCK = 64

#: `posterior.attrs["point_estimate"]` of an export without draws.
POINT_NOTE = ("one point (a MAP or a guide's median), not draws: no spread, so sd, HDI width, "
              "R-hat and ESS are undefined (az.summary gives NaN and numpy warnings for "
              "them); read the values with az.summary(idata, kind='stats', "
              "stat_focus='median') or idata.posterior[name].squeeze(('chain', 'draw'))")
#: `posterior.attrs["point_estimate"]` of the restarts of a `FitResult`.
RESTARTS_NOTE = ("one point per chain: chain r is restart r of fit(..., restarts=R) "
                 "(attrs['selected_restart'] is FitResult.sites), one draw each: the spread "
                 "over chains is how much the restarts disagree, not posterior uncertainty; "
                 "ESS and R-hat are undefined with one draw per chain")
#: `posterior.attrs["draws"]` of draws given as a dict.
DRAWS_NOTE = ("draws given as one chain (chains, if any, were concatenated): R-hat needs "
              "several chains and is undefined here; pass the numpyro MCMC itself for "
              "per-chain diagnostics")


def to_arviz(model: GIM, mcmc_or_sites, data: PerturbationData, *, per: str = "context"):
    """`arviz.InferenceData` with named dims and coords; every posterior variable is
    `(chain, draw, ...)`.

    Sites get dims `var`, `parent`, `feature`, `hidden`; derived quantities `target_prob`
    (the prior π(z) from the features), `emax`, `ec50`, `hill` and, when `data` has cells,
    `posterior_target` (P(I = 1 | cells), `GIM.posterior_targets`: the quantity to read
    targets off) are added to the posterior, indexed by `per`:
    - "context": dims `(context, var)`, one row per context of `data`; `posterior_target`
      conditions on each context's own cells (`per="context"` of `posterior_targets`);
    - "perturbation": dims `(perturbation, var)`, one row per perturbation present in
      `data` (`emax`, ... depend on the features, not on the dose), so `az.summary` rows read
      `emax[drug_A, GENE3]`; `posterior_target` is `posterior_targets(per="perturbation")`:
      one indicator per perturbation conditioned on the cells of all its doses (not the mean
      over its contexts, which is no probability of one event, nor its first context only).
      Needs every perturbation's contexts to share one feature row.
    Observational contexts have `target_prob`, `emax` and `posterior_target` exactly 0.

    How to read the export is in `idata.posterior.attrs`: "point_estimate" for one point
    (`POINT_NOTE`) or a fit's restarts (`RESTARTS_NOTE`), "draws" for draws given as a dict
    (`DRAWS_NOTE`). `to_arviz` itself emits no warnings.

    Args:
        mcmc_or_sites: a `numpyro.infer.MCMC` after `run` (its chains); sites: a point
            (`(1, 1)` chain and draw axes) or draws with a leading draw axis (one chain of
            `n_draws`, e.g. `FitResult.posterior_draws(key, n)`); or a `FitResult`: its
            restarts' points as chains (`(R, 1)`) with `fit(..., restarts=R)`, else its
            point (for a guide's draws pass `result.posterior_draws(key, n)`).
        data: gives the names (variables, contexts, features, perturbations) and, with
            cells, the evidence of `posterior_target`.
        per: "context" or "perturbation" (see above).

    Raises:
        TypeError: `mcmc_or_sites` is none of the above. ValueError: `per` is unknown, or
            per="perturbation" without perturbations or with mixed features.
    """
    az = require("arviz")

    if per not in ("context", "perturbation"):
        raise ValueError(f"per must be 'context' or 'perturbation', got {per!r}")
    coords = {
        "var": list(data.var_names),
        "parent": list(data.var_names),
        "feature": list(data.feature_names),
        "hidden": list(range(model.hidden)),
        "map_hidden": list(range(model.hidden)),
        "pooled": list(model.pooled or ()),
    }
    derived_on = data
    if per == "context":
        coords["context"] = list(data.context_names)
    else:
        ids, first = data.perturbation_contexts()
        if ids.size == 0:
            raise ValueError("per='perturbation' needs perturbational contexts in data")
        pert, features = np.asarray(data.perturbation), np.asarray(data.features)
        for g, k in zip(ids, first, strict=True):
            if not np.allclose(features[pert == g], features[k]):
                raise ValueError(
                    f"perturbation {data.perturbation_names[g]!r} has contexts with different "
                    "features; use per='context'")
        coords["perturbation"] = [data.perturbation_names[g] for g in ids]
        derived_on = data.subset(first)
    dims = {site: list(spec.dims) for site, spec in model.site_specs.items()}
    samples, stats, attrs = _chains(model, mcmc_or_sites)

    n_chain, n_draw = next(iter(samples.values())).shape[:2]
    flat = {k: v.reshape((n_chain * n_draw, *v.shape[2:])) for k, v in samples.items()}
    derived = model.hill_parameters(flat, derived_on)  # keeps the draw axis
    derived["target_prob"] = model.target_probabilities(flat, derived_on)
    if data.x is not None:
        rows = slice(None) if per == "context" else first
        derived["posterior_target"] = _posterior_target(model, flat, data, per)[:, rows]
    for name, value in derived.items():
        samples[name] = value.reshape((n_chain, n_draw, *value.shape[1:]))
        dims[name] = [per, "var"]
    with warnings.catch_warnings():
        # restarts are (R, 1) on purpose (see RESTARTS_NOTE); ArviZ guesses a swapped layout
        warnings.filterwarnings("ignore", message="More chains", category=UserWarning)
        idata = az.from_dict(posterior=samples, sample_stats=stats or None, coords=coords,
                             dims=dims)
    idata.posterior.attrs.update(attrs)
    return idata


def _posterior_target(model: GIM, flat: dict, data: PerturbationData, per: str) -> np.ndarray:
    """`GIM.posterior_targets` of `flat` (sites `(n, *site_shape)`), `(n, n_contexts, n_vars)`,
    `POSTERIOR_TARGET_BLOCK` draws at a time; one draw as the point it is (bit for bit what
    `posterior_targets(point)` gives)."""
    n = next(iter(flat.values())).shape[0]
    if n == 1:
        return model.posterior_targets({k: v[0] for k, v in flat.items()}, data, per=per)[None]
    return np.concatenate([
        model.posterior_targets({k: v[i:i + POSTERIOR_TARGET_BLOCK] for k, v in flat.items()},
                                data, per=per)
        for i in range(0, n, POSTERIOR_TARGET_BLOCK)])


def _chains(model: GIM, mcmc_or_sites) -> tuple[dict, dict, dict]:
    """`(samples, sample_stats, attrs)`: each site `(n_chains, n_draws, *site_shape)`, the
    sampler's per-draw fields, and the notes for `posterior.attrs`."""
    if isinstance(mcmc_or_sites, MCMC):
        grouped = mcmc_or_sites.get_samples(group_by_chain=True)
        samples = {k: np.asarray(v) for k, v in grouped.items() if k in model.site_shapes}
        stats = {k: np.asarray(v) for k, v in
                 mcmc_or_sites.get_extra_fields(group_by_chain=True).items()}
        return samples, stats, {}
    if isinstance(mcmc_or_sites, FitResult) and mcmc_or_sites.restarts is not None:
        restarts = mcmc_or_sites.restarts
        model.check_sites(restarts.sites)
        samples = {k: np.asarray(restarts.sites[k])[:, None] for k in model.site_shapes}
        return samples, {}, {"point_estimate": RESTARTS_NOTE,
                             "selected_restart": int(restarts.selected)}
    if isinstance(mcmc_or_sites, FitResult):
        mcmc_or_sites = mcmc_or_sites.sites
    if not isinstance(mcmc_or_sites, Mapping):
        raise TypeError("mcmc_or_sites: expected an MCMC or a dict of sites (or a FitResult), "
                        f"got {type(mcmc_or_sites).__name__}")
    draws = model.check_sites(mcmc_or_sites)
    samples = {k: np.asarray(mcmc_or_sites[k]) for k in model.site_shapes}
    samples = {k: (v if draws else v[None])[None] for k, v in samples.items()}
    attrs = {"draws": DRAWS_NOTE} if draws else {"point_estimate": POINT_NOTE}
    return samples, {}, attrs


__all__ = ["DRAWS_NOTE", "POINT_NOTE", "RESTARTS_NOTE", "to_arviz"]
