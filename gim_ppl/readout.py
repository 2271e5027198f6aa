"""Reading a fitted GIM: pure functions of `(model, sites, data, ...)`.

The `GIM` methods of the same names delegate here (as dynamax models call their inference
functions), so these are the read-offs' one implementation.

Convention: every read-off returns one value per draw when `sites` carry a leading draw
axis (`(n_draws, …)`), and the single-point shape otherwise; the caller averages
(`posterior_mean`). `graph` and `predict` summarise draws (majority edges; a mixture over
draws).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer import Predictive

from gim_ppl.checks import check_integer
from gim_ppl.core.graph import cycle_gain, threshold_graph
from gim_ppl.core.interventions import InterventionOutputs, intervention_shift
from gim_ppl.core.likelihood import log_likelihood as cells_log_likelihood
from gim_ppl.core.likelihood import make_groups, sample_cells
from gim_ppl.core.likelihood import posterior_targets as cell_posterior_targets
from gim_ppl.data import PerturbationData
from gim_ppl.joint import check_data, context_heads, scm_weights, target_groups

if TYPE_CHECKING:
    from gim_ppl.model import GIM


def check_sites(model: GIM, sites: Mapping) -> bool:
    """Validate `sites`; return True if they carry a leading draw axis."""
    if not isinstance(sites, Mapping):
        raise TypeError(f"sites must be a dict of sample-site values, got {type(sites)}")
    missing = [s for s in model.site_shapes if s not in sites]
    if missing:
        raise ValueError(f"sites lacks the model's sample sites {missing}")
    draws = None
    for s, shape in model.site_shapes.items():
        value = np.asarray(sites[s])
        if value.dtype.kind not in "biuf":
            raise TypeError(f"sites[{s!r}] must be a real array, got dtype {value.dtype}")
        if not np.isfinite(value).all():
            raise ValueError(f"sites[{s!r}] has non-finite values (NaN or inf) at "
                             f"{np.argwhere(~np.isfinite(value))[:5].tolist()}")
        got = tuple(jnp.shape(sites[s]))
        if got == shape:
            this = False
        elif len(got) == len(shape) + 1 and got[1:] == shape:
            this = True
        else:
            raise ValueError(
                f"sites[{s!r}] has shape {got}; expected {shape} or (n_draws, *{shape})"
            )
        if draws is not None and this != draws:
            raise ValueError("sites mix single values and draws; give one or the other")
        draws = this
    return bool(draws)


def map_sites(model: GIM, fn, sites, *args):
    """Apply `fn(params, *args)` to one point or vmap it over draws; params have the
    diagonal of `weights` masked."""

    def masked(params):
        return fn({**params, "weights": scm_weights(model, params["weights"])}, *args)

    draws = check_sites(model, sites)
    params = {s: jnp.asarray(sites[s]) for s in model.site_shapes}
    if draws:
        return jax.vmap(masked)(params)
    return masked(params)


def intervention_outputs(model: GIM, sites, contexts: PerturbationData) -> InterventionOutputs:
    """`InterventionOutputs(target_logits, emax, log_ec50, log_hill)` of each context,
    each `(n_contexts, n_vars)` (`(n_draws, …)` with draws)."""
    check_data(model, contexts)
    out = map_sites(model, partial(context_heads, model), sites, contexts)
    return InterventionOutputs(*(np.asarray(v) for v in out))


def target_probabilities(model: GIM, sites, contexts: PerturbationData) -> np.ndarray:
    """Prior target probabilities π(z) from features, `(n_contexts, n_vars)`
    (`(n_draws, …)` with draws); 0 for observational contexts."""
    check_data(model, contexts)

    def fn(params, data):
        logits = context_heads(model, params, data).target_logits
        return jnp.where(data.observational[:, None], 0.0, jax.nn.sigmoid(logits))

    return np.asarray(map_sites(model, fn, sites, contexts))


def posterior_targets(model: GIM, sites, data: PerturbationData, *, per: str = "context",
                      min_effect: float | None = None) -> np.ndarray:
    """`P(I_kj = 1 | cells, model)`, `(n_contexts, n_vars)` (`(n_draws, …)` with draws),
    exact; 0 for observational contexts.

    Args:
        per: "context": each context's own targets given its cells (with
            `shared_targets`, its perturbation's, as the model was fit); "perturbation":
            the perturbation targets the variable at all its doses, its effect at each
            dose the Hill curve — one indicator conditioned on the cells of every dose
            of `data` (what a dose-limited target shows: cells at low doses carry
            little evidence either way, the high dose decides); every context of the
            perturbation gets its value.
        min_effect: δ ≥ 0 in the units of the cells: the probability that the variable
            is a target *and* the model's effect on it (the Hill shift at the context's
            dose; with per="perturbation", at the highest dose in `data`) is at least δ
            in absolute value. Averaged over draws, the posterior probability of that
            event. Shift interventions only.
    """
    check_data(model, data)
    if data.x is None:
        raise ValueError("posterior_targets needs cells: data.x is None")
    if per not in ("context", "perturbation"):
        raise ValueError(f"per must be 'context' or 'perturbation', got {per!r}")
    if min_effect is not None:
        if not np.isfinite(min_effect) or min_effect < 0:
            raise ValueError(f"min_effect must be a finite number >= 0, got {min_effect!r}")
        if model.intervention_effect != "shift":
            raise ValueError("min_effect needs intervention_effect='shift' (a replace "
                             "intervention sets a value, it has no shift to compare)")
    groups = target_groups(model, data)
    if per == "perturbation":
        groups = make_groups(data.perturbation, data.observational,
                             max(len(data.perturbation_names), 1))

    def fn(params, data):
        heads = context_heads(model, params, data)
        shift = intervention_shift(heads, data.dose)
        post = cell_posterior_targets(model.cell_model, params, data, heads.target_logits,
                                      shift, groups=groups)
        if min_effect is None:
            return post
        size = jnp.abs(shift)
        if per == "perturbation":  # a Hill curve is monotone: its largest dose decides
            largest = jax.ops.segment_max(jnp.where(data.observational[:, None], 0.0, size),
                                          groups.index, groups.n_groups)
            size = largest[groups.index]
        return jnp.where(size >= min_effect, post, 0.0)

    return np.asarray(map_sites(model, fn, sites, data))


def log_likelihood(model: GIM, sites, data: PerturbationData) -> np.ndarray | float:
    """`log p(cells of data | sites)` with targets summed out and π from the features
    (the model's "cells" factor, exact marginal whatever `marginal` the model fits
    with, never coarsened): the log predictive density of held-out cells, contexts or
    perturbations. A float, or `(n_draws,)` with draws."""
    check_data(model, data)
    if data.x is None:
        raise ValueError("log_likelihood needs cells: data.x is None")
    exact = model.cell_model._replace(marginal="exact", coarsening=None)

    def fn(params, data):
        heads = context_heads(model, params, data)
        shift = intervention_shift(heads, data.dose)
        return cells_log_likelihood(exact, params, data, heads.target_logits, shift,
                              groups=target_groups(model, data))

    out = np.asarray(map_sites(model, fn, sites, data))
    return out if out.ndim else float(out)


def hill_parameters(model: GIM, sites, contexts: PerturbationData) -> dict:
    """`dict(emax, ec50, hill)`, each `(n_contexts, n_vars)` (`(n_draws, …)` with draws).

    EC50 is in the units of `contexts.dose`; emax is 0 for observational contexts.
    """
    check_data(model, contexts)

    def fn(params, data):
        heads = context_heads(model, params, data)
        return {
            "emax": jnp.where(data.observational[:, None], 0.0, heads.emax),
            "ec50": jnp.exp(heads.log_ec50),
            "hill": jnp.exp(heads.log_hill),
        }

    out = map_sites(model, fn, sites, contexts)
    return {k: np.asarray(v) for k, v in out.items()}


def hill_effects(model: GIM, sites, contexts: PerturbationData) -> np.ndarray:
    """The effect a target gets: the Hill shift at each context's dose, `(n_contexts,
    n_vars)` (`(n_draws, …)` with draws), in the units of the cells; 0 for
    observational contexts. (For replace interventions, the value set.)"""
    check_data(model, contexts)

    def fn(params, data):
        heads = context_heads(model, params, data)
        shift = intervention_shift(heads, data.dose)
        return jnp.where(data.observational[:, None], 0.0, shift)

    return np.asarray(map_sites(model, fn, sites, contexts))


def edge_weights(model: GIM, sites) -> np.ndarray:
    """`(n_vars, n_vars)` weights (i → j) with zero diagonal; `(n_draws, …)` with draws."""
    return np.asarray(map_sites(model, lambda p: p["weights"], sites))


def graph(model: GIM, sites, threshold: float = 0.3) -> np.ndarray:
    """Learned DAG `(n_vars, n_vars)` bool (i → j), guaranteed acyclic.

    One point: `|W| > threshold`. Draws: edges present in more than half of the draws.
    Remaining cycles lose their weakest edge (with a warning).
    """
    w = model.edge_weights(sites)
    if w.ndim == 3:
        return threshold_graph((np.abs(w) > threshold).mean(0), 0.5)
    return threshold_graph(w, threshold)


def predict(model: GIM, sites, contexts: PerturbationData, *, key, n_cells: int,
            mode: str = "mixture", observed: PerturbationData | None = None
            ) -> PerturbationData:
    """Sample `n_cells` cells for each context of `contexts` (cells there are ignored).

    Targets: a perturbation with cells in `observed` (the training data; matched by
    perturbation name) is predicted with what those cells say, `P(I = 1 | all its
    observed contexts)` — a drug hits the same variables at every dose, so a new dose
    of a known drug keeps the targets its measured doses showed; any other perturbation
    (and every one when `observed` is None) with the feature map's π(z).
    `mode="mixture"` draws targets per cell from these probabilities (the Bayesian
    predictive); `mode="threshold"` uses `I = P > 0.5`. With draws in `sites`, the cells
    of each context are spread evenly over up to `n_cells` draws, in draw order (the
    first ⌈n_cells / n_used⌉ from the first draw used, ...). Deterministic for a given
    `key`.

    A fitted W whose cycle gain (`core.graph.cycle_gain`) exceeds 1 has no equilibrium
    to sample: such a draw is predicted with the DAG `graph(threshold=0)` reads off its
    W (every edge kept but the weakest of each cycle), with a warning.

    Returns:
        `PerturbationData` with `x (n_contexts · n_cells, n_vars)`, contexts as given.
    """
    if mode not in ("mixture", "threshold"):
        raise ValueError(f"mode must be 'mixture' or 'threshold', got {mode!r}")
    n_cells = check_integer("n_cells", n_cells)
    params = _draw_stack(model, sites, contexts, observed)
    n_draws = next(iter(params.values())).shape[0]
    used = min(n_draws, n_cells)
    pick = np.unique(np.round(np.linspace(0, n_draws - 1, used)).astype(int))
    used = pick.size
    params = {s: v[pick] for s, v in params.items()}
    # the weights the SCM uses (diagonal and edge_mask applied), safe to sample through
    params["weights"] = _acyclic_weights(scm_weights(model, params["weights"]))
    per_draw = math.ceil(n_cells / used)

    k = contexts.n_contexts
    logits = jax.vmap(lambda p: _prediction_logits(model, p, contexts, observed))(params)
    k_targets, key = jax.random.split(key)
    if mode == "mixture":
        # One context per generated cell, so each cell gets its own target draw.
        rep = np.repeat(np.arange(k), per_draw)
        gen = _expand_contexts(contexts, rep, np.arange(rep.size))
        targets = jax.random.bernoulli(k_targets, jax.nn.sigmoid(logits[:, rep]))
    else:
        gen = _expand_contexts(contexts, np.arange(k), np.repeat(np.arange(k), per_draw))
        targets = logits > 0
    params["targets"] = targets.astype(params["bias"].dtype)
    predictive = Predictive(model, posterior_samples=params, return_sites=["x"])
    x = predictive(key, gen, hard_targets=True)["x"]  # (used, k * per_draw, d)
    return contexts.replace(
        x=_context_major(x, k, n_cells),
        context=jnp.asarray(np.repeat(np.arange(k), n_cells).astype(np.int32)))


def _draw_stack(model, sites, contexts: PerturbationData,
                observed: PerturbationData | None) -> dict:
    """Check `contexts` (and `observed`, data with cells) and return `sites` with a
    leading draw axis (one draw for a point)."""
    check_data(model, contexts)
    if observed is not None:
        _known_rows(contexts, observed)  # observed: data with cells, or a clear error
        check_data(model, observed)
    has_draws = check_sites(model, sites)
    params = {s: jnp.asarray(sites[s]) for s in model.site_shapes}
    if not has_draws:
        params = {s: v[None] for s, v in params.items()}
    return params


def _prediction_logits(model, params, contexts: PerturbationData,
                       observed: PerturbationData | None):
    """`(n_contexts, n_vars)` target logits `predict` draws from: π(z) from the features,
    or for a perturbation with perturbational contexts in `observed`, the logit of
    `P(I = 1 | all of them)` (one target vector per perturbation)."""
    logits = context_heads(model, params, contexts).target_logits
    if observed is None:
        return logits
    rows = _known_rows(contexts, observed)
    if not (rows >= 0).any():
        return logits
    heads = context_heads(model, params, observed)
    shift = intervention_shift(heads, observed.dose)
    groups = make_groups(observed.perturbation, observed.observational,
                         max(len(observed.perturbation_names), 1))
    post = cell_posterior_targets(model.cell_model, params, observed, heads.target_logits,
                                  shift, groups=groups, logits=True)
    rows = jnp.asarray(rows)
    return jnp.where(rows[:, None] >= 0, post[jnp.maximum(rows, 0)], logits)


def _acyclic_weights(weights):
    """`weights (n_draws, n_vars, n_vars)` with each draw whose cycle gain exceeds 1
    replaced by its DAG read-off at threshold 0 (see `predict`), with a warning."""
    w = np.array(weights)  # a copy: draws are projected in place
    gains = np.array([cycle_gain(wi) for wi in w])
    bad = np.flatnonzero(gains > 1.0)
    if not bad.size:
        return weights
    dropped = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one warning below says what happened
        for i in bad:
            keep = threshold_graph(w[i], 0.0)
            dropped += int(((w[i] != 0) & ~keep & ~np.eye(len(keep), dtype=bool)).sum())
            w[i] = np.where(keep, w[i], 0.0)
    warnings.warn(
        f"predict: the fitted W is not acyclic (cycle gain {gains.max():.3g} > 1 in "
        f"{bad.size} of {len(w)} draws), so its cells have no equilibrium; predicting "
        f"with the DAG graph(threshold=0) reads off it ({dropped} edges dropped). Fit "
        "longer or with a larger acyclicity_weight (gim_ppl.fit raises it by dual ascent)",
        UserWarning, stacklevel=4)
    return jnp.asarray(w, dtype=weights.dtype)


def predicted_means(model: GIM, sites, contexts: PerturbationData, *, key,
                    n_cells: int = 200, observed: PerturbationData | None = None
                    ) -> np.ndarray:
    """Mean of the predicted cells of each context under each draw, `(n_draws,
    n_contexts, n_vars)` (`(n_contexts, n_vars)` for one point), from `n_cells` cells
    per context and draw (targets drawn per cell as in `predict`, which `observed`
    goes to): quantiles over the draws give intervals for a perturbation's mean effect;
    the Monte Carlo error of each mean is about noise sd / √n_cells."""
    n = check_integer("n_cells", n_cells)
    if not check_sites(model, sites):
        pred = predict(model, sites, contexts, key=key, n_cells=n, observed=observed)
        return np.asarray(pred.x).reshape(contexts.n_contexts, n, -1).mean(1)
    n_draws = int(jnp.shape(sites["bias"])[0])
    # n_draws · n cells per context: `predict` gives each draw n of them, in draw order
    pred = predict(model, sites, contexts, key=key, n_cells=n_draws * n, observed=observed)
    x = np.asarray(pred.x).reshape(contexts.n_contexts, n_draws, n, -1)
    return x.mean(2).transpose(1, 0, 2)


def context_mean_draws(model: GIM, sites, contexts: PerturbationData, *, key,
                       n_draws: int = 200, observed: PerturbationData | None = None
                       ) -> np.ndarray:
    """The mean cell of each context under target vectors drawn once per context,
    `(n_draws, n_contexts, n_vars)`: the spread of a perturbation's mean effect over
    its unknown targets (and over the posterior draws in `sites`, cycled), without the
    Monte Carlo noise of sampled cells.

    A context's targets are one vector shared by all its cells (the GIM's likelihood),
    so its mean cell is one of up to 2^d values, not the per-cell mixture `predict`
    samples; the average of these draws estimates that mixture's mean. Targets come
    from the same probabilities as in `predict` (`observed`: known perturbations keep
    what their cells said). Linear mechanisms only: there the noise-free equilibrium
    cell is the mean cell.
    """
    if not model.cell_model.mechanism.is_linear:
        raise ValueError("context_mean_draws needs a linear mechanism (the noise-free "
                         "cell is the mean cell only then); for an MLP use "
                         "predicted_means")
    n_draws = check_integer("n_draws", n_draws)
    params = _draw_stack(model, sites, contexts, observed)
    n_sites = next(iter(params.values())).shape[0]
    params = {s: v[np.arange(n_draws) % n_sites] for s, v in params.items()}
    params["weights"] = _acyclic_weights(scm_weights(model, params["weights"]))
    zeros = jnp.zeros((contexts.n_contexts, model.n_vars), params["bias"].dtype)
    observational = jnp.asarray(contexts.observational)[:, None]

    def one(p, k):
        logits = _prediction_logits(model, p, contexts, observed)
        heads = context_heads(model, p, contexts)
        shift = intervention_shift(heads, contexts.dose)
        targets = jax.random.bernoulli(k, jax.nn.sigmoid(logits)).astype(zeros.dtype)
        targets = jnp.where(observational, 0.0, targets)
        return sample_cells(model.cell_model, p, zeros, targets, shift)

    return np.asarray(jax.jit(jax.vmap(one))(params, jax.random.split(key, n_draws)))


def posterior_mean(model: GIM, sites, values) -> np.ndarray:
    """A read-off of `model` averaged over draws when `sites` carry them (read-offs keep the
    draw axis); the value itself for one point."""
    values = np.asarray(values)
    return values.mean(0) if model.check_sites(sites) else values


def _known_rows(contexts: PerturbationData, observed: PerturbationData) -> np.ndarray:
    """`(n_contexts,)` for each context of `contexts`, the first perturbational context of
    `observed` with the same perturbation name (−1: none, or an observational context)."""
    if not isinstance(observed, PerturbationData) or observed.x is None:
        raise ValueError("observed must be a PerturbationData with cells (the training data), "
                         f"got {type(observed).__name__}"
                         + (" without cells" if isinstance(observed, PerturbationData) else ""))
    first: dict[str, int] = {}
    for row, (obs, pert) in enumerate(zip(np.asarray(observed.observational),
                                          np.asarray(observed.perturbation), strict=True)):
        if not obs:
            first.setdefault(observed.perturbation_names[pert], row)
    return np.array([-1 if obs else first.get(contexts.perturbation_names[pert], -1)
                     for obs, pert in zip(np.asarray(contexts.observational),
                                          np.asarray(contexts.perturbation), strict=True)],
                    dtype=np.int32)


def _context_major(x, n_contexts: int, n_cells: int):
    """`(n_draws, n_contexts · per_draw, d)` draws → `(n_contexts · n_cells, d)`, cells of
    each context taken round the draws and cut to `n_cells`."""
    n_draws, _, d = x.shape
    x = x.reshape(n_draws, n_contexts, -1, d).transpose(1, 0, 2, 3)
    return x.reshape(n_contexts, -1, d)[:, :n_cells].reshape(-1, d)


def _expand_contexts(contexts: PerturbationData, rows, cell_context) -> PerturbationData:
    """Contexts `contexts[rows]` with cells assigned by `cell_context` (no x)."""
    rows = jnp.asarray(rows)
    return contexts.replace(
        x=None, context=jnp.asarray(np.asarray(cell_context, dtype=np.int32)),
        features=contexts.features[rows], dose=contexts.dose[rows],
        observational=contexts.observational[rows], perturbation=contexts.perturbation[rows],
        context_names=tuple(f"c{i}" for i in range(rows.shape[0])),
    )


__all__ = ["check_sites", "context_mean_draws", "edge_weights", "graph", "hill_effects",
           "hill_parameters", "intervention_outputs", "log_likelihood", "map_sites",
           "posterior_mean", "posterior_targets", "predict", "predicted_means",
           "target_probabilities"]
