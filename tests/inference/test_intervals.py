"""Intervals for the mean cell of a context: `GIM.context_mean_draws` against enumeration of
the 2^d target sets with a closed-form linear SCM; `gim_ppl.inference.intervals` (cross-fit
calibration, `mean_intervals`) against hand computations. Their coverage is a benchmark
(benchmarks/intervals.py, docs/unseen.md), not a test."""

import itertools

import jax
import numpy as np
import pytest
from scipy.special import expit

import gim_ppl
from gim_ppl.inference import intervals
from gim_ppl.inference.intervals import (
    HeldOut,
    IntervalCalibration,
    excess_variance,
    sampling_variance,
)
from tests._problems import numpy_heads, random_sites, small_data


def _closed_form(model, sites, data):
    """Per context: the 2^d target sets t, their probabilities under π, and the mean cell
    `(b + s ⊙ t)(I − W)⁻¹` of the linear shift SCM (numpy, no package code but the heads'
    affine map written out in tests._problems)."""
    s = {k: np.asarray(v, float) for k, v in sites.items()}
    d = model.n_vars
    w = s["weights"] * (1 - np.eye(d))
    inv = np.linalg.inv(np.eye(d) - w)
    heads = numpy_heads(model, sites, np.asarray(data.features, float))
    dose = np.asarray(data.dose, float)[:, None]
    with np.errstate(divide="ignore"):
        act = np.where(dose > 0, expit(np.exp(heads["log_hill"])
                                       * (np.log(np.where(dose > 0, dose, 1.0))
                                          - heads["log_ec50"])), 0.0)
    shift = heads["emax"] * act
    pi = np.where(np.asarray(data.observational)[:, None], 0.0, expit(heads["target"]))
    sets = np.array(list(itertools.product((0.0, 1.0), repeat=d)))  # (2^d, d)
    means = (s["bias"] + sets[None] * shift[:, None]) @ inv  # (n_contexts, 2^d, d)
    probs = np.prod(np.where(sets[None] > 0, pi[:, None], 1 - pi[:, None]), axis=-1)
    return means, probs


def test_context_mean_draws_are_target_sets_drawn_at_their_probabilities():
    model = gim_ppl.GIM(3, 2)
    data = small_data(seed=1)
    sites = random_sites(model, seed=2)
    sites["weights"] = sites["weights"] * np.triu(np.ones((3, 3)), 1)  # a DAG
    n = 4000
    draws = model.context_mean_draws(sites, data, key=jax.random.key(0), n_draws=n)
    assert draws.shape == (n, data.n_contexts, 3)
    means, probs = _closed_form(model, sites, data)
    # every draw is the mean cell of one target set (float32 against float64: 1e-4)
    dist = np.abs(draws[:, :, None, :] - means[None]).max(-1)  # (n, contexts, 2^d)
    assert dist.min(-1).max() < 1e-4
    # ... drawn at its probability: the frequency of each set within 5 binomial sds
    which = dist.argmin(-1)
    for c in range(data.n_contexts):
        freq = np.bincount(which[:, c], minlength=probs.shape[1]) / n
        sd = np.sqrt(probs[c] * (1 - probs[c]) / n)
        assert np.all(np.abs(freq - probs[c]) <= 5 * sd + 1e-12), (c, freq, probs[c])
    # observational contexts: no targets, one value
    obs = np.asarray(data.observational)
    np.testing.assert_allclose(draws[:, obs], np.broadcast_to(means[obs, 0], draws[:, obs].shape),
                               atol=1e-4)


def test_context_mean_draws_cycle_posterior_draws_and_refuse_an_mlp():
    model = gim_ppl.GIM(3, 2)
    data = small_data(seed=1)
    a, b = random_sites(model, seed=2), random_sites(model, seed=3)
    for s in (a, b):
        s["weights"] = s["weights"] * np.triu(np.ones((3, 3)), 1)
    stacked = {k: np.stack([a[k], b[k]]) for k in a}
    draws = model.context_mean_draws(stacked, data, key=jax.random.key(0), n_draws=6)
    obs = np.flatnonzero(np.asarray(data.observational))[0]
    # the observational context's mean depends on the draw only: draws 0, 2, 4 use a
    for i, source in enumerate((a, b, a, b, a, b)):
        np.testing.assert_allclose(draws[i, obs], _closed_form(model, source, data)[0][obs, 0],
                                   atol=1e-4)
    mlp = gim_ppl.GIM(3, 2, mechanism="mlp")
    with pytest.raises(ValueError, match="linear mechanism"):
        mlp.context_mean_draws(random_sites(mlp), data, key=jax.random.key(0))


def test_excess_variance_and_sampling_variance_by_hand():
    """τ² = mean(r² − var − se2) at least 0, per variable; se2 = the cells' variance
    (n − 1 denominator) over their count, per context."""
    held = HeldOut(center=np.zeros((2, 2)), var=np.array([[0.1, 0.0], [0.3, 0.0]]),
                   y=np.array([[1.0, 0.1], [-2.0, 0.1]]), se2=np.array([[0.2, 0.5], [0.2, 0.5]]))
    # variable 0: mean(1 − 0.1 − 0.2, 4 − 0.3 − 0.2) = 2.1; variable 1: 0.01 − 0.5 < 0 → 0
    np.testing.assert_allclose(excess_variance(held), [2.1, 0.0])
    data = small_data(seed=3)
    mean, se2 = sampling_variance(data)
    x, ctx = np.asarray(data.x, float), np.asarray(data.context)
    for c in range(data.n_contexts):
        cells = x[ctx == c]
        np.testing.assert_allclose(mean[c], cells.mean(0), rtol=1e-6)
        np.testing.assert_allclose(se2[c], cells.var(0, ddof=1) / len(cells), rtol=1e-5)


def test_folds_hold_out_every_perturbation_once_and_one_dose_of_the_others():
    data = small_data(seed=0, n_pert=6, doses=(0.5, 1.0, 1.5))
    pert, obs = np.asarray(data.perturbation), np.asarray(data.observational)
    folds = intervals._folds(data, 3, seed=0)
    out_pert = np.stack([f[0] for f in folds])
    assert (out_pert.sum(0) == ~obs).all()  # each perturbational context left out once
    for op, od in folds:
        assert not (od & op).any() and not (od & obs).any()
        others = np.unique(pert[~obs & ~op])
        assert sorted(pert[od]) == sorted(others)  # one dose of every other perturbation
        kept = np.unique(pert[~op & ~od & ~obs])
        assert set(kept) == set(others)  # ... so each keeps doses in the fold's fit
    with pytest.raises(ValueError, match="folds=9 needs at least 9 perturbations"):
        intervals._folds(data, 9, seed=0)


def test_mean_intervals_add_the_calibrated_variance_by_kind():
    """center ± z·√(var + τ²): var over the same draws, τ² by kind — a perturbation with
    cells in `observed` is a new dose, others new perturbations, controls get none."""
    model = gim_ppl.GIM(3, 2)
    data = small_data(seed=1)
    sites = random_sites(model, seed=2)
    sites["weights"] = sites["weights"] * np.triu(np.ones((3, 3)), 1)
    known = data.subset(np.asarray(data.perturbation) != 2)  # perturbation 2 unseen
    tau2 = {"new_perturbation": np.array([1.0, 2.0, 3.0]), "new_dose": np.array([0.1, 0.2, 0.3])}
    cal = IntervalCalibration(tau2, {}, 2)
    out = gim_ppl.mean_intervals(model, sites, data, cal, key=jax.random.key(4), observed=known,
                                 level=0.8, n_draws=300)
    draws = model.context_mean_draws(sites, data, key=jax.random.key(4), n_draws=300,
                                     observed=known)
    pert = np.asarray(data.perturbation)
    expected_kind = np.where(np.asarray(data.observational), "observational",
                             np.where(pert == 2, "new_perturbation", "new_dose"))
    assert (out.kind == expected_kind).all()
    extra = np.stack([tau2[k] if k in tau2 else np.zeros(3) for k in expected_kind])
    half = 1.2815516 * np.sqrt(draws.var(0) + extra)  # z of a central 80 % interval
    np.testing.assert_allclose(out.center, draws.mean(0), rtol=1e-6)
    np.testing.assert_allclose(out.high - out.center, half, rtol=1e-5)
    np.testing.assert_allclose(out.center - out.low, half, rtol=1e-5)
    no_dose = IntervalCalibration({"new_perturbation": tau2["new_perturbation"],
                                   "new_dose": None}, {}, 2)
    with pytest.raises(ValueError, match="new dose"):
        gim_ppl.mean_intervals(model, sites, data, no_dose, key=jax.random.key(4),
                               observed=known)
    with pytest.raises(ValueError, match="level"):
        gim_ppl.mean_intervals(model, sites, data, cal, key=jax.random.key(4), level=90)


def test_cross_fit_scores_held_out_contexts_of_both_kinds():
    """Two refits of a few steps: every perturbational context is held out once as a new
    perturbation; the new doses are one per other perturbation and fold; τ² is finite and
    ≥ 0, and the held-out observed means are the data's own."""
    data = small_data(seed=0, n_pert=4, doses=(0.5, 1.0, 1.5), n_cells=8)
    cal = gim_ppl.cross_fit(lambda d: gim_ppl.GIM(d.n_vars, d.n_features, pooled=d), data,
                            steps=30, key=jax.random.key(0), folds=2, n_draws=20)
    n_pert_contexts = int((~np.asarray(data.observational)).sum())
    assert cal.held_out["new_perturbation"].y.shape == (n_pert_contexts, 3)
    assert cal.held_out["new_dose"].y.shape == (4, 3)  # 2 folds × 2 other perturbations
    for tau2 in cal.tau2.values():
        assert tau2.shape == (3,) and np.all(np.isfinite(tau2)) and np.all(tau2 >= 0)
    means = np.sort(np.asarray(data.context_means())[~np.asarray(data.observational)], 0)
    np.testing.assert_allclose(np.sort(cal.held_out["new_perturbation"].y, 0), means, rtol=1e-6)
