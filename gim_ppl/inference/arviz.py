"""`to_arviz`: MCMC runs and fitted sites as `arviz.InferenceData` with named dims.

ArviZ calls live only in this module, so an ArviZ version switch touches one file.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpyro.infer import MCMC

from gim_ppl.data import PerturbationData
from gim_ppl.extras import require
from gim_ppl.model import GIM


def to_arviz(model: GIM, mcmc_or_sites, data: PerturbationData, *, per: str = "context"):
    """`arviz.InferenceData` with named dims and coords.

    Sites get dims `var`, `parent`, `feature`, `hidden`; derived quantities `target_prob`,
    `emax`, `ec50`, `hill` are added to the posterior, indexed by `per`:
    - "context": dims `(context, var)`, one row per context of `data`;
    - "perturbation": dims `(perturbation, var)`, one row per perturbation present in
      `data` (they depend on the features, not on the dose), so `az.summary` rows read
      `emax[drug_A, GENE3]`. Needs every perturbation's contexts to share one feature row.

    Args:
        mcmc_or_sites: a `numpyro.infer.MCMC` after `run`, or sites (a MAP point or draws with
            a leading draw axis; treated as one chain).
        data: gives the names (variables, contexts, features, perturbations).
        per: "context" or "perturbation" (see above).
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
    dims = {site: list(spec.dims) for site, spec in model.sites.items()}
    if isinstance(mcmc_or_sites, MCMC):
        grouped = mcmc_or_sites.get_samples(group_by_chain=True)
        samples = {k: np.asarray(v) for k, v in grouped.items() if k in model.site_shapes}
        stats = {k: np.asarray(v) for k, v in
                 mcmc_or_sites.get_extra_fields(group_by_chain=True).items()}
    elif isinstance(mcmc_or_sites, Mapping):
        draws = model.check_sites(mcmc_or_sites)
        samples = {k: np.asarray(mcmc_or_sites[k]) for k in model.site_shapes}
        samples = {k: (v if draws else v[None])[None] for k, v in samples.items()}
        stats = {}
    else:
        raise TypeError(f"expected an MCMC or a dict of sites, got {type(mcmc_or_sites)}")

    n_chain, n_draw = next(iter(samples.values())).shape[:2]
    flat = {k: v.reshape((n_chain * n_draw, *v.shape[2:])) for k, v in samples.items()}
    derived = model.hill_parameters(flat, derived_on)  # keeps the draw axis
    derived["target_prob"] = model.target_probabilities(flat, derived_on)
    for name, value in derived.items():
        samples[name] = value.reshape((n_chain, n_draw, *value.shape[1:]))
        dims[name] = [per, "var"]
    return az.from_dict(posterior=samples, sample_stats=stats or None, coords=coords, dims=dims)


__all__ = ["to_arviz"]
