"""Intervals for the mean cell of a context: `GIM.context_mean_draws` against enumeration of
the 2^d target sets with a closed-form linear SCM, and the interval rules of
benchmarks/intervals.py against hand computations."""

import importlib.util
import itertools
from pathlib import Path

import jax
import numpy as np
import pytest
from scipy.special import expit

import gim_ppl
from tests._problems import numpy_heads, random_sites, small_data

ROOT = Path(__file__).resolve().parents[1]


def _benchmark_module():
    spec = importlib.util.spec_from_file_location("intervals_bench",
                                                  ROOT / "benchmarks" / "intervals.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def test_interval_rules_match_hand_computations():
    """benchmarks/intervals.py: the conformal margin is the ⌈(n + 1)·0.9⌉-th smallest score
    per variable; the variance rule removes the draws' and the sampling variance."""
    bench = _benchmark_module()
    scores = np.arange(1.0, 21.0)[:, None] * np.array([1.0, 2.0])  # 20 pairs, 2 variables
    np.testing.assert_allclose(bench.conformal_margin(scores), [19.0, 38.0])  # ⌈21·0.9⌉ = 19
    rng = np.random.default_rng(0)
    n = 200_000
    calib = {"center": np.zeros((n, 1)), "var": np.full((n, 1), 0.25),
             "se2": np.full((n, 1), 0.5), "low": np.full((n, 1), -1.0),
             "high": np.full((n, 1), 1.0)}
    calib["y"] = rng.normal(0, np.sqrt(0.25 + 0.5 + 1.0), size=(n, 1))  # τ² = 1
    test = {"center": np.zeros((1, 1)), "var": np.full((1, 1), 0.25),
            "low": np.full((1, 1), -1.0), "high": np.full((1, 1), 1.0)}
    low, high = bench.intervals(test, calib, test)["variance"]
    # half-width z·√(0.25 + τ²), τ² estimated from 2e5 draws (sd of the estimate ≈ 0.005)
    np.testing.assert_allclose(high, 1.6448536 * np.sqrt(1.25), rtol=0.01)
    np.testing.assert_allclose(low, -high)
