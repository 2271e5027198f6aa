"""Which experiment to run next: expected information gain of candidate perturbations.

A candidate is a context to measure: a perturbation's features and a dose (a new drug, or a
new dose of a known one). Measuring `n_cells` cells of it yields data X. Its value is the
expected information gain (EIG) about a quantity Q,

    EIG(c) = E_{θ, X} [ H(Q) − H(Q | X) ],

with θ from the current posterior (draws from NUTS, a guide or a restart ensemble). The
estimator is nested Monte Carlo over the same S draws (Rainforth et al. 2018): for each outer
draw n, cells X_n are simulated from θ_n (targets drawn once for the context, as the model
has them); every draw m weighs X_n by its likelihood `p(X_n | θ_m)` (targets summed out,
exact: `core.likelihood`), which turns the draws into the posterior after X_n. One term
per outer draw, so the estimate is their mean and its Monte Carlo error their sd / √S.

Quantities (`about=`):
- "targets": the candidate's target indicators I (one per variable), `Σ_j MI(I_j; X)`:
  prior P(I_j) = mean_m π_mj, posterior `Σ_m w_nm P(I_j | X_n, θ_m)` (exact per draw).
- "readout": the mean response of the contexts `of` (default: the candidates themselves;
  e.g. every candidate, or the drugs one wants to predict: the expected predictive
  information gain of Bickford-Smith et al. 2023), variable `readout` or all, Gaussian
  approximation `½ log(Var / Var_after)` of the draws' predicted means
  (`GIM.predicted_means`), both variances floored by the Monte Carlo variance of the means.
- "graph": the edge indicators `|W_ij| > threshold`, `Σ_ij MI(E_ij; X)` (binary entropies
  under the prior and reweighted draws).
- "parameters": all of θ, `E[log p(X | θ) − log mean_m p(X | θ_m)]`; bounded above by log S
  (a nested estimator with S inner draws cannot see more), so rank with it only while the
  estimates stay well below log S.

The causal model of the cells (`GIM.scm_sites`: graph weights, biases, noise scales) is
pinned by every cell measured so far; one new experiment informs mostly the intervention
map. Yet the draws' small spread in the SCM is what the likelihood of `n_cells` new cells
sees first: with every site drawn, the weights `w_nm` put all their mass on the outer draw
itself (effective sample size 1.0 of 100 on the default benchmark), and the estimate
degenerates into a per-draw quantity. So for "targets" and "readout" the SCM sites are held
at their posterior median (`scm="median"`, effective sample size 30–60 of 100 there) and the
information is about the intervention map; "graph" and "parameters" need `scm="draws"`.

All quantities are entropies in nats. The marginal sums over variables or edges are upper
bounds of the joint information when the indicators are dependent; they rank candidates
consistently and are what a per-target or per-edge question asks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer.autoguide import AutoDelta

from gim_ppl.checks import check_integer, check_real
from gim_ppl.core.interventions import intervention_shift
from gim_ppl.core.likelihood import context_stats, sample_cells, target_terms
from gim_ppl.data import PerturbationData
from gim_ppl.design.quantities import QUANTITIES
from gim_ppl.extras import require
from gim_ppl.inference.fitting import FitResult
from gim_ppl.model import GIM

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


def rank_experiments(model: GIM, posterior: Mapping | FitResult,
                     candidates: PerturbationData, *, key,
                     about: str = "targets", n_cells: int = 100, readout=None,
                     threshold: float = 0.3, n_pred_cells: int = 100, of=None,
                     scm: str | None = None, progress: bool = False,
                     observed: PerturbationData | None = None) -> pd.DataFrame:
    """Rank candidate experiments by expected information gain (see the module docstring).

    Args:
        model: the fitted `GIM` (exact marginal used whatever it was fitted with).
        posterior: draws of every sample site, each `(n_draws, *site_shape)`, n_draws ≥ 2:
            `mcmc.get_samples()`, `FitResult.posterior_draws(key, n)`, or stacked restarts;
            or a `FitResult` of `fit(..., restarts=R)`, whose restarts that did not diverge
            are the draws (a `FitResult` of one point raises a ValueError saying how to
            get draws).
        candidates: contexts only (`x=None`), one row per candidate, none observational
            (e.g. `PerturbationData.from_arrays(None, features=..., dose=..., observational=
            np.zeros(k, bool), n_vars=d, require_cells=False)`).
        key: PRNG key (simulated cells, target draws).
        about: "targets", "graph", "readout" or "parameters".
        n_cells: cells the experiment would measure.
        readout: with about="readout", a variable (index or name); None: all variables.
        threshold: |W| above which an edge counts, for about="graph".
        n_pred_cells: cells per draw behind each predicted mean, for about="readout".
        of: with about="readout", the contexts (contexts only) whose mean response the
            experiment should teach; None: each candidate itself.
        scm: "median" (the SCM sites at their posterior median; default for "targets" and
            "readout") or "draws" (default, and required, for "graph" and "parameters").
        progress: a progress bar over the candidates (tqdm).
        observed: the training data, for about="readout": a measured drug's predicted
            responses use the targets its cells showed (`GIM.predict(observed=...)`), not
            π(z) from its features.

    Returns:
        A DataFrame, best first: `rank`, `candidate` (context name), `perturbation`, `dose`,
        `eig` (nats), `mc_se` (Monte Carlo standard error of `eig`), `n_draws`.
    """
    pd = require("pandas")
    terms = information_terms(model, posterior, candidates, key=key, about=about,
                              n_cells=n_cells, readout=readout, threshold=threshold,
                              n_pred_cells=n_pred_cells, of=of, scm=scm, progress=progress,
                              observed=observed)
    n_draws = terms.shape[1]
    eig = terms.mean(1)
    se = terms.std(1, ddof=1) / math.sqrt(n_draws)
    order = np.argsort(-eig, kind="stable")
    names = np.asarray((*candidates.perturbation_names, ""), dtype=object)
    dose = np.asarray(candidates.dose)
    if candidates.dose_scale is not None:
        dose = np.asarray(candidates.dose_scale.to_user(dose))
    return pd.DataFrame({
        "rank": np.arange(1, order.size + 1),
        "candidate": np.asarray(candidates.context_names, dtype=object)[order],
        "perturbation": names[np.asarray(candidates.perturbation)[order]],
        "dose": dose[order],
        "eig": eig[order],
        "mc_se": se[order],
        "n_draws": n_draws,
    })


def information_terms(model: GIM, posterior: Mapping | FitResult,
                      candidates: PerturbationData, *, key,
                      about: str = "targets", n_cells: int = 100, readout=None,
                      threshold: float = 0.3, n_pred_cells: int = 100, of=None,
                      scm: str | None = None, progress: bool = False,
                      observed: PerturbationData | None = None) -> np.ndarray:
    """The nested Monte Carlo terms, `(n_candidates, n_draws)`: one per candidate and outer
    draw; their mean over draws is the EIG estimate (`rank_experiments`)."""
    posterior, n_draws = _check_inputs(model, posterior, candidates, about)
    n_cells = check_integer("n_cells", n_cells)
    threshold = check_real("threshold", threshold, minimum=0.0)
    n_pred_cells = check_integer("n_pred_cells", n_pred_cells)
    cols = _readout_columns(model, candidates, readout) if about == "readout" else None
    if of is not None:
        if about != "readout":
            raise ValueError(f"of is used with about='readout' only, got about={about!r}")
        _check_contexts(model, "of", of)
    scm = ("median" if about in ("targets", "readout") else "draws") if scm is None else scm
    if scm == "median" and about in ("graph", "parameters"):
        raise ValueError(f"about={about!r} is information about the SCM too: use scm='draws'")
    posterior, params, logits, loglik, post = _simulate_and_weigh(
        model, posterior, candidates, key=key, n_cells=n_cells, scm=scm, progress=progress)
    k_pred = jax.random.fold_in(key, 1)
    # loglik (C, S_outer, S_inner); post (C, S_outer, S_inner, d)
    w = jax.nn.softmax(loglik, axis=-1)
    if about == "parameters":
        own = jnp.diagonal(loglik, axis1=1, axis2=2)
        return np.asarray(own - jax.scipy.special.logsumexp(loglik, axis=-1)
                          + math.log(n_draws))
    if about == "targets":
        prior = jnp.mean(jax.nn.sigmoid(logits), axis=0)  # (C, d)
        after = jnp.einsum("cnm,cnmd->cnd", w, post)
        return np.asarray(_entropy(prior).sum(-1)[:, None] - _entropy(after).sum(-1))
    if about == "graph":
        edges = (jnp.abs(params["weights"]) > threshold).astype(w.dtype)  # (S, d, d)
        prior = edges.mean(0)
        after = jnp.einsum("cnm,mij->cnij", w, edges)
        return np.asarray(_entropy(prior).sum() - _entropy(after).sum((-2, -1)))
    # (S, K, r): the mean response of each context of interest under each draw
    means = jnp.asarray(model.predicted_means(
        posterior, candidates if of is None else of, key=k_pred, n_cells=n_pred_cells,
        observed=observed))
    means = means[..., cols]
    # Monte Carlo variance of each predicted mean: noise variance / cells per mean
    floor = jnp.mean(params["noise_scale"][:, cols] ** 2, axis=0) / n_pred_cells  # (r,)
    before = jnp.var(means, axis=0) + floor  # (K, r)
    # each candidate's own response (K = C), or every context of interest
    spec = "cnm,mcr->cnr" if of is None else "cnm,mkr->cnkr"
    m1 = jnp.einsum(spec, w, means)
    m2 = jnp.einsum(spec, w, means * means)
    after = jnp.maximum(m2 - m1 * m1, 0.0) + floor
    before = before[:, None] if of is None else before
    gain = 0.5 * jnp.log(before / after)
    return np.asarray(gain.reshape(*gain.shape[:2], -1).sum(-1))


def inner_ess(model: GIM, posterior: Mapping | FitResult, candidates: PerturbationData, *, key,
              n_cells: int = 100, scm: str = "median") -> np.ndarray:
    """Effective sample size `1 / Σ_m w_nm²` of the estimator's inner weights, `(n_candidates,
    n_draws)`: near 1, one draw takes all the weight and the estimate is a per-draw quantity
    (see the module docstring on `scm`); near n_draws, the experiment would teach little."""
    posterior, _ = _check_inputs(model, posterior, candidates, "parameters")
    n_cells = check_integer("n_cells", n_cells)
    loglik = _simulate_and_weigh(model, posterior, candidates, key=key, n_cells=n_cells,
                                 scm=scm, progress=False)[3]
    w = jax.nn.softmax(loglik, axis=-1)
    return np.asarray(1.0 / jnp.sum(w * w, axis=-1))


def _simulate_and_weigh(model: GIM, posterior: Mapping, candidates: PerturbationData, *, key,
                        n_cells: int, scm: str, progress: bool):
    """`(posterior, params, logits, loglik, post)`: the draws used (SCM sites at their median
    with `scm="median"`), their SCM parameters, the candidates' target logits `(S, C, d)`,
    and `_weigh`'s log likelihoods `(C, S, S)` and target posteriors `(C, S, S, d)`."""
    if scm not in ("median", "draws"):
        raise ValueError(f"scm must be 'median' or 'draws', got {scm!r}")
    posterior = {s: jnp.asarray(posterior[s], jnp.result_type(float)) for s in model.site_shapes}
    if scm == "median":
        posterior.update({s: jnp.broadcast_to(jnp.median(posterior[s], axis=0),
                                              posterior[s].shape) for s in model.scm_sites})
    params = dict(posterior)
    params["weights"] = model.scm_weights(params["weights"])
    heads = model.intervention_outputs(posterior, candidates)  # each (S, C, d)
    shift = intervention_shift(heads, candidates.dose)
    logits = jnp.asarray(heads.target_logits)
    sim_keys = jax.random.split(key, candidates.n_contexts)
    cell_model = model.cell_model._replace(marginal="exact")
    loglik, post = _weigh_candidates(cell_model, params, sim_keys, jnp.moveaxis(logits, 1, 0),
                                     jnp.moveaxis(shift, 1, 0), n_cells, progress)
    return posterior, params, logits, loglik, post


def _weigh_candidates(cell_model, params, keys, logits, shift, n_cells: int, progress: bool,
                      chunk: int = 8):
    """`_weigh` for every candidate, `chunk` at a time (one compiled function; the last
    chunk padded), so that memory stays `chunk · S² · n_cells · d` and a bar can move."""
    n = keys.shape[0]

    @jax.jit
    def run(keys, logits, shift):
        return jax.lax.map(lambda a: _weigh(cell_model, params, *a, n_cells=n_cells),
                           (keys, logits, shift))

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc="candidates", unit="candidate")
    out = []
    for start in range(0, n, chunk):
        idx = np.minimum(np.arange(start, start + chunk), n - 1)  # pad with the last one
        out.append(run(keys[idx], logits[idx], shift[idx]))
        if bar is not None:
            bar.update(min(chunk, n - start))
    if bar is not None:
        bar.close()
    return tuple(jnp.concatenate(parts)[:n] for parts in zip(*out, strict=True))


def _weigh(cell_model, params: dict, key, logits, shift, *, n_cells: int):
    """One candidate: cells X_n from each draw n, and for every pair (n, m) the log
    likelihood `log p(X_n | θ_m)` `(S, S)` and `P(I = 1 | X_n, θ_m)` `(S, S, d)`.

    logits, shift: the candidate's `(S, d)` target logits and Hill shift under each draw."""
    n_draws, d = logits.shape
    k_targets, k_noise = jax.random.split(key)
    targets = jax.random.bernoulli(k_targets, jax.nn.sigmoid(logits)).astype(shift.dtype)
    noise = jax.random.normal(k_noise, (n_draws, n_cells, d), shift.dtype)

    def simulate(p, eps, t, s):
        return sample_cells(cell_model, p, eps, jnp.broadcast_to(t, eps.shape),
                            jnp.broadcast_to(s, eps.shape))

    x = jax.vmap(simulate)(params, noise, targets, shift)  # (S, n_cells, d)
    context = jnp.zeros(n_cells, jnp.int32)

    def terms(x_n, p, logit, s):
        stats = context_stats(cell_model, p, _Cells(x_n, context, jnp.zeros(1)))
        l0, l1 = target_terms(stats, p["noise_scale"], s[None], cell_model.effect)
        l0, l1 = l0[0], l1[0]
        mix = jnp.logaddexp(jax.nn.log_sigmoid(-logit) + l0, jax.nn.log_sigmoid(logit) + l1)
        return mix.sum(), jax.nn.sigmoid(logit + l1 - l0)

    inner = jax.vmap(terms, in_axes=(None, 0, 0, 0))  # over draws m
    return jax.vmap(inner, in_axes=(0, None, None, None))(x, params, logits, shift)


class _Cells:
    """The three fields `core.likelihood.context_stats` reads (one context)."""

    def __init__(self, x, context, dose):
        self.x, self.context, self.dose = x, context, dose


def _entropy(p):
    """Binary entropy in nats, elementwise."""
    p = jnp.clip(p, 0.0, 1.0)  # weighted sums may round past 1
    return -(jax.scipy.special.xlogy(p, p) + jax.scipy.special.xlog1py(1.0 - p, -p))


def _readout_columns(model: GIM, candidates: PerturbationData, readout) -> np.ndarray:
    if readout is None:
        return np.arange(model.n_vars)
    if isinstance(readout, str):
        if readout not in candidates.var_names:
            raise ValueError(f"readout {readout!r} is not a variable of candidates "
                             f"({list(candidates.var_names)})")
        return np.array([candidates.var_names.index(readout)])
    index = check_integer("readout", readout, minimum=0)
    if index >= model.n_vars:
        raise ValueError(f"readout must be a variable index below n_vars={model.n_vars}, got "
                         f"{readout}")
    return np.array([index])


def _check_contexts(model: GIM, name: str, contexts) -> None:
    """`contexts`: non-empty perturbation contexts of the model's width, doses finite ≥ 0."""
    if not isinstance(contexts, PerturbationData):
        raise TypeError(f"{name} must be a gim_ppl.PerturbationData (contexts only), got "
                        f"{type(contexts).__name__}")
    if contexts.n_contexts == 0:
        raise ValueError(f"{name} is empty: give at least one context")
    if contexts.n_vars != model.n_vars:
        raise ValueError(f"{name} has {contexts.n_vars} variables, the model {model.n_vars}")
    if contexts.features.shape[-1] != model.n_features:
        raise ValueError(f"{name}.features has {contexts.features.shape[-1]} columns; the "
                         f"model reads {model.n_features} features")
    obs = np.asarray(contexts.observational)
    if obs.any():
        raise ValueError(f"{name} rows {np.flatnonzero(obs)[:10].tolist()} are "
                         "observational: a candidate is a perturbation to apply")
    dose = np.asarray(contexts.dose, dtype=float)
    bad = ~np.isfinite(dose) | (dose < 0)
    if bad.any():
        raise ValueError(f"{name}.dose must be finite and >= 0; rows "
                         f"{np.flatnonzero(bad)[:10].tolist()} are not")


def _check_inputs(model, posterior, candidates, about: str) -> tuple[Mapping, int]:
    """`(draws, n_draws)` after checking the inputs; `draws` is `posterior`, or the
    restarts of a `FitResult` (`fit_result_draws`)."""
    if not isinstance(model, GIM):
        raise TypeError(f"model must be a gim_ppl.GIM, got {type(model).__name__}")
    if not isinstance(about, str) or about not in QUANTITIES:
        raise ValueError(f"about must be one of {QUANTITIES}, got {about!r}")
    _check_contexts(model, "candidates", candidates)
    if isinstance(posterior, FitResult):
        posterior = fit_result_draws(posterior)
    if not isinstance(posterior, Mapping):
        raise TypeError("posterior must be a dict of draws or a FitResult, got "
                        f"{type(posterior).__name__}")
    try:
        has_draws = model.check_sites(posterior)
    except ValueError as err:
        raise ValueError(f"posterior: {err}") from err
    n_draws = int(np.shape(posterior["bias"])[0]) if has_draws else 1
    if n_draws < 2:
        raise ValueError("posterior must hold at least 2 draws (a leading draw axis): the "
                         "information gain is an expectation over the posterior; got "
                         f"{'one point' if not has_draws else '1 draw'}")
    return posterior, n_draws


def fit_result_draws(result: FitResult) -> dict:
    """The draws a `FitResult` holds: the fitted sites of its restarts that did not diverge
    (finite score), each `(n_restarts, *site_shape)`.

    Raises:
        ValueError: a fit without restarts holds one point, not draws; the message says how
            to get draws.
    """
    if result.restarts is None:
        if isinstance(result.guide, AutoDelta):
            how = ("fit with restarts=R (R >= 2; the restarts are the draws), or fit with "
                   "guide=AutoNormal(model, init_loc_fn=init_from_data(data)) and pass "
                   "result.posterior_draws(key, n_draws), or pass "
                   "run_mcmc(model, data, ...).get_samples()")
        else:
            how = "pass result.posterior_draws(key, n_draws) (draws from the fitted guide)"
        raise ValueError(f"posterior: this FitResult holds one point, not draws; {how}")
    alive = np.isfinite(np.asarray(result.restarts.scores))
    return {k: v[alive] for k, v in result.restarts.sites.items()}


__all__ = ["QUANTITIES", "fit_result_draws", "information_terms", "inner_ess",
           "rank_experiments"]
