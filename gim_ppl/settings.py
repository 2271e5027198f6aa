"""Validation of a `GIM`'s settings at construction, each error naming its setting."""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax.numpy as jnp
import numpy as np

from gim_ppl.checks import check_integer, check_real
from gim_ppl.core.interventions import check_anchors
from gim_ppl.core.likelihood import INTERVENTION_EFFECTS, MARGINALS, STATISTICS
from gim_ppl.data import PerturbationData
from gim_ppl.priors import Priors

if TYPE_CHECKING:
    from gim_ppl.model import GIM


def normalised_settings(model: GIM) -> dict:
    """The settings of `model` validated and normalised (ints, floats, tuples, a bool
    mask); raises an `ArgumentError` naming the setting."""
    out = {name: check_integer(name, getattr(model, name))
           for name in ("n_vars", "n_features", "hidden", "n_mc")}
    for name, strict in (("temperature", True), ("target_sparsity", False),
                         ("acyclicity_weight", False)):
        out[name] = check_real(name, getattr(model, name), minimum=0.0, strict=strict)
    if model.power_iterations is not None:
        out["power_iterations"] = check_integer("power_iterations", model.power_iterations)
    if model.coarsening is not None:
        out["coarsening"] = check_real("coarsening", model.coarsening, minimum=0.0,
                                       strict=True)
    for name, allowed in (("marginal", MARGINALS), ("statistics", STATISTICS),
                          ("intervention_effect", INTERVENTION_EFFECTS)):
        value = getattr(model, name)
        if not isinstance(value, str) or value not in allowed:
            raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    out["priors"] = Priors() if model.priors is None else model.priors
    if not isinstance(out["priors"], Priors):
        raise TypeError(f"priors must be a gim_ppl.Priors, got {type(out['priors']).__name__}")
    out["shared_targets"] = bool(model.shared_targets)
    out["exact_acyclicity_gradient"] = bool(model.exact_acyclicity_gradient)
    out["pooled"] = _pooled_names(model.pooled)
    if model.edge_mask is not None:
        out["edge_mask"] = _check_edge_mask(model.edge_mask, out["n_vars"])
    return out


def gp_anchors(map_name: str, map_anchors, n_features: int):
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


__all__ = ["gp_anchors", "normalised_settings"]
