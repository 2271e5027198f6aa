"""Small hand-made problems shared by the tests (not a test module)."""

import itertools

import jax
import numpy as np
from scipy.special import expit, logsumexp
from scipy.stats import norm

import gim_ppl


def small_data(seed=0, d=3, p=2, n_pert=3, doses=(0.5, 1.5), n_cells=6, n_obs=10):
    """Contexts: one observational + n_pert × doses; random cells."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n_pert, p))
    pid = np.concatenate([[-1], np.repeat(np.arange(n_pert), len(doses))])
    dose = np.concatenate([[0.0], np.tile(doses, n_pert)])
    obs = pid < 0
    feats = np.where(obs[:, None], 0.0, z[np.maximum(pid, 0)])
    counts = np.where(obs, n_obs, n_cells)
    ctx = np.repeat(np.arange(pid.size), counts)
    x = rng.normal(size=(ctx.size, d)) + 0.8 * (pid[ctx] >= 0)[:, None]
    return gim_ppl.PerturbationData.from_arrays(
        x, ctx, features=feats, dose=dose, observational=obs, perturbation=pid
    )


def random_sites(model, seed=0, scale=0.5):
    rng = np.random.default_rng(seed)
    sites = {s: rng.normal(scale=scale, size=shape) for s, shape in model.site_shapes.items()}
    sites["noise_scale"] = rng.uniform(0.6, 1.4, size=model.site_shapes["noise_scale"])
    return {k: jax.numpy.asarray(v) for k, v in sites.items()}


def numpy_mean(model, sites, x):
    """f(x) by explicit loops (independent of gim_ppl.core.mechanisms)."""
    s = {k: np.asarray(v, dtype=float) for k, v in sites.items()}
    w = s["weights"] * (1 - np.eye(x.shape[1]))
    if model.mechanism == "linear":
        return x @ w + s["bias"]
    f = np.zeros_like(x)
    for j in range(x.shape[1]):
        h = np.tanh((x * w[:, j]) @ s["mlp_w1"][j] + s["mlp_b1"][j])
        f[:, j] = h @ s["mlp_w2"][j] + s["bias"][j]
    return f


def numpy_heads(model, sites, z):
    s = {k: np.asarray(v, dtype=float) for k, v in sites.items()}
    h = z
    if model.intervention_map == "mlp":
        h = np.tanh(z @ s["map_hidden_weights"] + s["map_hidden_bias"])
    return {head: h @ s[f"{head}_weights"] + s[f"{head}_bias"]
            for head in ("target", "emax", "log_ec50", "log_hill")}


def brute_force_loglik(model, sites, data, shared=False, coarsening=None):
    """log p(cells) by enumerating every target set of every context (or perturbation).

    With `coarsening` α, each unit's evidence for a target set is raised to
    ζ = α / (α + n_unit): `L(0) + ζ (L(t) − L(0))` (Miller & Dunson's power on the
    likelihood ratio)."""
    x, ctx = np.asarray(data.x, float), np.asarray(data.context)
    z, dose = np.asarray(data.features, float), np.asarray(data.dose, float)
    obs, pert = np.asarray(data.observational), np.asarray(data.perturbation)
    sigma = np.asarray(sites["noise_scale"], float)
    f = numpy_mean(model, sites, x)
    heads = numpy_heads(model, sites, z)
    ec50, h = np.exp(heads["log_ec50"]), np.exp(heads["log_hill"])
    hill = heads["emax"] * dose[:, None] ** h / (ec50**h + dose[:, None] ** h)
    pi = expit(heads["target"])
    d = x.shape[1]

    def cells_ll(k, targets):
        xs, fs = x[ctx == k], f[ctx == k]
        if model.intervention_effect == "shift":
            mean = fs + targets * hill[k]
        else:
            mean = (1 - targets) * fs + targets * hill[k]
        return norm.logpdf(xs, mean, sigma).sum()

    total = sum(cells_ll(k, np.zeros(d)) for k in np.flatnonzero(obs))
    units = [[k] for k in np.flatnonzero(~obs)]
    if shared:
        units = [list(np.flatnonzero(pert == g)) for g in np.unique(pert[~obs])]
    for members in units:
        k0 = members[0]
        n_unit = sum(int(np.sum(ctx == k)) for k in members)
        zeta = 1.0 if coarsening is None else coarsening / (coarsening + n_unit)
        null = sum(cells_ll(k, np.zeros(d)) for k in members)
        terms = []
        for bits in itertools.product([0, 1], repeat=d):
            t = np.asarray(bits, float)
            prior = np.sum(t * np.log(pi[k0]) + (1 - t) * np.log1p(-pi[k0]))
            terms.append(prior + null + zeta * (sum(cells_ll(k, t) for k in members) - null))
        total += logsumexp(terms)
    return total


def train_target_aurocs(model, sites, bench):
    """`(AUROC of the fitted posterior targets, AUROC of the raw mean-shift detector)` on the
    training contexts of a `synthetic_hill` benchmark: a fit must beat doing nothing but
    comparing means."""
    from gim_ppl.evaluation import metrics
    from gim_ppl.evaluation.stability import mean_shift_scores

    pert = ~np.asarray(bench.train.observational)
    truth = bench.truth.targets["train"][pert]
    post = model.posterior_targets(sites, bench.train)[pert]
    return (metrics.auroc(truth, post),
            metrics.auroc(truth, mean_shift_scores(bench.train)[pert]))
