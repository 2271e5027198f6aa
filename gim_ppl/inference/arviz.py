"""`to_arviz`: MCMC runs and fitted sites as `arviz.InferenceData` with named dims.

ArviZ calls live only in this module, so an ArviZ version switch touches one file.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer import MCMC

from gim_ppl.data import PerturbationData
from gim_ppl.model import GIM


def _site_dims(model: GIM) -> dict[str, list[str]]:
    dims = {"weights": ["parent", "var"], "bias": ["var"], "noise_scale": ["var"]}
    for site, _shape in model.site_shapes.items():
        if site in dims:
            continue
        if site.startswith("mlp_"):
            dims[site] = {"mlp_w1": ["var", "parent", "hidden"], "mlp_b1": ["var", "hidden"],
                          "mlp_w2": ["var", "hidden"]}[site]
        elif site == "gim_w1":
            dims[site] = ["feature", "gim_hidden"]
        elif site == "gim_b1":
            dims[site] = ["gim_hidden"]
        elif site.endswith("_bias"):
            dims[site] = ["var"]
        else:
            dims[site] = ["gim_hidden" if model.intervention == "mlp" else "feature", "var"]
    return dims


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
    import arviz as az

    if per not in ("context", "perturbation"):
        raise ValueError(f"per must be 'context' or 'perturbation', got {per!r}")
    coords = {
        "var": list(data.var_names),
        "parent": list(data.var_names),
        "feature": list(data.feature_names),
        "hidden": list(range(model.hidden)),
        "gim_hidden": list(range(model.hidden)),
    }
    derived_on = data
    if per == "context":
        coords["context"] = list(data.context_names)
    else:
        pert = np.asarray(data.perturbation)
        ids = np.unique(pert[pert >= 0])
        if ids.size == 0:
            raise ValueError("per='perturbation' needs perturbational contexts in data")
        features = np.asarray(data.features)
        first = []
        for g in ids:
            rows = np.flatnonzero(pert == g)
            if not np.allclose(features[rows], features[rows[0]]):
                raise ValueError(
                    f"perturbation {data.perturbation_names[g]!r} has contexts with different "
                    "features; use per='context'")
            first.append(int(rows[0]))
        coords["perturbation"] = [data.perturbation_names[g] for g in ids]
        derived_on = data.subset(first)
    dims = _site_dims(model)
    if isinstance(mcmc_or_sites, MCMC):
        grouped = mcmc_or_sites.get_samples(group_by_chain=True)
        samples = {k: np.asarray(v) for k, v in grouped.items() if k in model.site_shapes}
        stats = {k: np.asarray(v) for k, v in
                 mcmc_or_sites.get_extra_fields(group_by_chain=True).items()}
    elif isinstance(mcmc_or_sites, Mapping):
        draws = model._check_sites(mcmc_or_sites)
        samples = {k: np.asarray(mcmc_or_sites[k]) for k in model.site_shapes}
        samples = {k: (v if draws else v[None])[None] for k, v in samples.items()}
        stats = {}
    else:
        raise TypeError(f"expected an MCMC or a dict of sites, got {type(mcmc_or_sites)}")

    n_chain, n_draw = next(iter(samples.values())).shape[:2]
    flat = {k: v.reshape((n_chain * n_draw, *v.shape[2:])) for k, v in samples.items()}
    derived = model.hill_parameters(flat, derived_on)

    def prob(params):
        logits = model._heads(params, derived_on).target_logits
        return jnp.where(derived_on.observational[:, None], 0.0, jax.nn.sigmoid(logits))

    derived["target_prob"] = np.asarray(jax.vmap(prob)({k: jnp.asarray(v)
                                                        for k, v in flat.items()}))
    for name, value in derived.items():
        samples[name] = value.reshape((n_chain, n_draw, *value.shape[1:]))
        dims[name] = [per, "var"]
    return az.from_dict(posterior=samples, sample_stats=stats or None, coords=coords, dims=dims)


__all__ = ["to_arviz"]
