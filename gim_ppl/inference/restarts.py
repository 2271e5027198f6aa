"""Restarts of `fit`: one guide per restart, the held-out split, selection on held-out
perturbations and how far restarts agree (`Restarts`, `Agreement`)."""

from __future__ import annotations

import numbers
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer.autoguide import AutoDelta, AutoGuide

from gim_ppl.checks import check_integer
from gim_ppl.data import PerturbationData
from gim_ppl.inference.init import init_from_data
from gim_ppl.model import GIM


class RestartSelection(NamedTuple):
    """R restarts and the perturbations they are selected on
    (`fit(..., restarts=RestartSelection(4, validation=0.25))`; an int R means
    `RestartSelection(R)`).

    Attributes:
        n: the number of initialisations R (>= 1).
        validation: with R > 1, the held-out perturbations: a fraction in (0, 1) of the
            perturbations of the data (None: 0.2), a `PerturbationData` with cells (then the
            data is used whole), or 0 to select by the final training loss
            (`split_validation`).
    """

    n: int
    validation: float | PerturbationData | None = None


def check_restarts(restarts) -> RestartSelection:
    """`fit`'s `restarts` (an int or a `RestartSelection`) as a `RestartSelection`, its count
    checked (`restarts must be an integer >= 1`)."""
    if isinstance(restarts, RestartSelection):
        return restarts._replace(n=check_integer("restarts", restarts.n))
    return RestartSelection(check_integer("restarts", restarts))


class Restarts(NamedTuple):
    """Every restart of a `fit(..., restarts=R)` and how one was chosen (the report;
    `RestartSelection` is the setting).

    Attributes:
        sites: the fitted sites of every restart, each with a leading `(R,)` restart axis
            (pass to the model's read-offs as draws, or index one restart).
        losses: `(R, n_steps_run)` training loss of every restart.
        scores: `(R,)` held-out log-likelihood per held-out cell of every restart (higher is
            better; `-inf` for a restart that diverged), or the negative final training loss
            per cell when nothing was held out.
        selected: index of the restart `FitResult.sites` holds.
        criterion: what `scores` measure ("held-out perturbations" or "training loss").
        validation: the held-out part of the data (None without a hold-out).
        agreement: `Agreement` of the restarts with the selected one.
    """

    sites: dict
    losses: np.ndarray
    scores: np.ndarray
    selected: int
    criterion: str
    validation: PerturbationData | None
    agreement: Agreement


class Agreement(NamedTuple):
    """How much the restarts of a fit agree with the selected one.

    Attributes:
        same_skeleton: share of restarts whose graph (`model.graph`) has the selected
            restart's skeleton (edges regardless of direction).
        same_graph: share with the same directed graph.
        target_spread: mean absolute difference between a restart's posterior target
            probabilities and the selected restart's, over restarts, contexts and variables.
        message: empty, or what disagrees (also issued as a warning by `fit`).
    """

    same_skeleton: float
    same_graph: float
    target_spread: float
    message: str


def select_restart(model: GIM, sites: dict, losses, alive, validation, data) -> Restarts:
    """Score restarts and pick one (see `fit`).

    Args:
        sites: fitted sites with a leading `(R,)` restart axis.
        losses: `(R, n_steps)` training losses.
        alive: `(R,)` bool, False for restarts that diverged.
        validation: held-out `PerturbationData` with cells, or None (select by the final
            training loss per cell).
        data: the data the restarts were fitted on (for the agreement of their targets).
    """
    alive = np.asarray(alive, bool)
    if validation is not None:
        per_cell = model.log_likelihood(sites, validation) / validation.n_cells
        criterion = "held-out perturbations"
    else:
        per_cell = -np.asarray(losses)[:, -1] / data.n_cells
        criterion = "training loss"
    scores = np.where(alive & np.isfinite(per_cell), per_cell, -np.inf)
    selected = int(np.argmax(scores))
    return Restarts(sites, np.asarray(losses), scores, selected, criterion, validation,
                    restart_agreement(model, sites, data, selected, alive))


def restart_agreement(model: GIM, sites: dict, data: PerturbationData, selected: int,
                      alive=None, *, min_share: float = 0.5) -> Agreement:
    """How far the restarts in `sites` (leading `(R,)` axis) agree with restart `selected`:
    graphs read off each restart (`model.graph`) and posterior target probabilities on
    `data`. The message names what disagrees when under `min_share` of the live restarts
    share the selected graph's skeleton, or targets differ by more than 0.1 on average."""
    n = next(iter(sites.values())).shape[0]
    alive = np.ones(n, bool) if alive is None else np.asarray(alive, bool)
    live = np.flatnonzero(alive)
    with warnings.catch_warnings():  # cycles broken in a restart's read-off are not news here
        warnings.simplefilter("ignore")
        graphs = [model.graph({k: v[r] for k, v in sites.items()}) for r in live]
    ref = graphs[int(np.flatnonzero(live == selected)[0])]
    skeleton = [np.array_equal(g | g.T, ref | ref.T) for g in graphs]
    same = [np.array_equal(g, ref) for g in graphs]
    post = np.asarray(model.posterior_targets({k: v[live] for k, v in sites.items()}, data))
    spread = float(np.abs(post - post[int(np.flatnonzero(live == selected)[0])]).mean())
    problems = []
    if np.mean(skeleton) < min_share:
        problems.append(f"only {np.mean(skeleton):.0%} of the restarts share the selected "
                        "graph's skeleton")
    elif np.mean(same) < min_share:
        problems.append(f"only {np.mean(same):.0%} of the restarts orient the selected graph's "
                        "edges the same way")
    if spread > 0.1:
        problems.append(f"posterior target probabilities differ by {spread:.2f} on average "
                        "between restarts")
    message = ("restarts disagree: " + "; ".join(problems) + " — read the graph and targets "
               "as uncertain (FitResult.restarts has every restart)") if problems else ""
    return Agreement(float(np.mean(skeleton)), float(np.mean(same)), spread, message)


#: Jitter (unconstrained sd) of the starts of restarts 1, 2, … around the data's start
#: (restart 0 starts exactly there); see `init_from_data`.
RESTART_JITTER = 0.1


def restart_guides(model: GIM, guide, restarts: int, data: PerturbationData) -> list:
    """One guide per restart of `fit` (each restart needs its own initialisation): `guide`
    None (AutoDelta), a guide class (e.g. AutoNormal) or factory `model -> guide`, or, for
    one restart, a guide. Defaults and classes start from `init_from_data(data)`, restart
    r > 0 with `jitter=RESTART_JITTER`; a factory or instance keeps its own start."""
    def start(r):
        return init_from_data(data, jitter=0.0 if r == 0 else RESTART_JITTER)

    if guide is None:
        return [AutoDelta(model, init_loc_fn=start(r)) for r in range(restarts)]
    if isinstance(guide, type):  # a guide class, e.g. AutoNormal
        return [guide(model, init_loc_fn=start(r)) for r in range(restarts)]
    if isinstance(guide, AutoGuide) or restarts == 1:
        if restarts > 1:
            raise ValueError("with restarts > 1, pass guide as a class or factory "
                             "(e.g. guide=AutoNormal), not an instance: each restart needs "
                             "its own initialisation")
        return [guide]
    if not callable(guide):
        raise TypeError(f"guide must be a NumPyro guide, class or factory, got {type(guide)}")
    return [guide(model) for _ in range(restarts)]


def split_validation(data: PerturbationData, validation, restarts: int):
    """`(training data, held-out data or None)` for restart selection (see `fit`'s
    `validation`): whole perturbations, every k-th by index, with the control contexts."""
    if restarts == 1:
        if validation not in (None, 0, 0.0):
            raise ValueError("validation selects among restarts: give restarts > 1")
        return data, None
    if isinstance(validation, PerturbationData):
        if not validation.has_cells:
            raise ValueError("validation must be a PerturbationData with cells")
        return data, validation
    fraction = 0.2 if validation is None else validation
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real):
        raise TypeError(f"validation must be a fraction, a PerturbationData or None, got "
                        f"{type(validation).__name__}")
    if fraction == 0:
        return data, None
    if not 0 < fraction < 1:
        raise ValueError(f"validation must be a fraction in (0, 1) of the perturbations, got "
                         f"{fraction}")
    ids, _ = data.perturbation_contexts()
    n_out = round(fraction * ids.size)
    if ids.size < 2 or n_out < 1 or n_out >= ids.size:
        raise ValueError(f"validation={fraction} holds out {n_out} of {ids.size} "
                         "perturbations; need at least one held out and one left to fit "
                         "(more perturbations, another fraction, or validation=0)")
    # every k-th perturbation, deterministic and spread over the perturbation index
    out = ids[np.round(np.linspace(0, ids.size - 1, n_out)).astype(int)]
    held = np.isin(np.asarray(data.perturbation), out)
    return data.subset(~held), data.subset(held | np.asarray(data.observational))


def keep_live_restarts(alive, new, old):
    """Pytree `new` for live restarts, `old` for the others (leading `(R,)` restart axis)."""
    mask = jnp.asarray(alive)

    def pick(a, b):
        if jnp.ndim(a) == 0:
            return a
        m = mask.reshape((-1,) + (1,) * (jnp.ndim(a) - 1))
        return jnp.where(m, a, b)

    return jax.tree_util.tree_map(pick, new, old)


__all__ = ["RESTART_JITTER", "Agreement", "RestartSelection", "Restarts", "check_restarts",
           "keep_live_restarts", "restart_agreement", "restart_guides", "select_restart",
           "split_validation"]
