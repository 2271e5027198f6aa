"""The likelihood of a linear GIM from per-context moments equals the one from the cells.

Independent truth: the per-cell sums (`residual_stats` of explicit residuals) and the
model's log density with `statistics="cells"`, in float64 where both are exact up to
~1e-15 relative round-off; the moments themselves against numpy's own mean and covariance.
"""

import itertools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from numpyro import handlers
from numpyro.infer.util import log_density

import gim_ppl
from gim_ppl.core import likelihood
from gim_ppl.core.likelihood import (
    CellMoments,
    cell_moments,
    merge_moments,
    moment_stats,
    residual_stats,
)
from gim_ppl.datasets.splits import shift_cells
from gim_ppl.inference import data_start
from tests._problems import random_sites, small_data


def _problem(seed, n=400, d=5, k=6, loc=10.0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) * rng.uniform(0.5, 3.0, d) + loc
    ctx = rng.integers(0, k - 1, n)  # context k − 1 stays empty
    w = rng.normal(scale=0.4, size=(d, d)) * (1 - np.eye(d))
    return x, ctx, w, rng.normal(size=d)


def test_cell_moments_equal_numpy_mean_and_scatter():
    x, ctx, _, _ = _problem(0)
    m = cell_moments(x, ctx, 6)
    for k in range(5):
        xk = x[ctx == k]
        assert m.count[k] == len(xk)
        np.testing.assert_allclose(m.mean[k], xk.mean(0), rtol=1e-13)
        np.testing.assert_allclose(m.scatter[k], np.cov(xk.T, bias=True) * len(xk),
                                   rtol=1e-11, atol=1e-11)
    assert m.count[5] == 0 and not m.mean[5].any() and not m.scatter[5].any()


@pytest.mark.parametrize("replace", [False, True])
@pytest.mark.parametrize("kron_max_vars", [likelihood.KRON_MAX_VARS, 0],
                         ids=["kron", "batched"])
def test_moment_stats_equal_per_cell_sums(replace, kron_max_vars, monkeypatch):
    """Both ways `_scatter_diag` computes diag(uᵀ C v), on cells with means far from 0
    (where uncentred moments would cancel), with an empty context."""
    monkeypatch.setattr(likelihood, "KRON_MAX_VARS", kron_max_vars)
    with jax.enable_x64(True):
        x, ctx, w, b = _problem(1)
        fitted = x @ w + b
        full = residual_stats(jnp.asarray(x - fitted), jnp.asarray(ctx), 6,
                              jnp.asarray(fitted) if replace else None)
        moments = CellMoments(*(jnp.asarray(v) for v in cell_moments(x, ctx, 6)))
        fast = moment_stats(jnp.asarray(w), jnp.asarray(b), moments, replace)
        assert (fast.sum_f is None) == (not replace)
        assert (fast.within_r2 is None) == replace
        if not replace:  # the within-context part of Σ r² comes as its total over contexts
            np.testing.assert_allclose(np.asarray(fast.sum_r2.sum(0) + fast.within_r2),
                                       np.asarray(full.sum_r2.sum(0)), rtol=1e-12)
            np.testing.assert_allclose(np.asarray(fast.sum_r2),  # n r̄², r̄ the mean residual
                                       np.asarray(full.sum_r ** 2 / np.maximum(
                                           full.count, 1)[:, None]), rtol=1e-11, atol=1e-9)
            fast = fast._replace(sum_r2=full.sum_r2, within_r2=None)  # checked above
        for name, a, c in zip(full._fields, full, fast, strict=True):
            if a is not None:
                np.testing.assert_allclose(np.asarray(c), np.asarray(a), rtol=1e-11,
                                           atol=1e-9, err_msg=name)


LINEAR_CASES = [
    dict(),
    dict(intervention_effect="replace"),
    dict(shared_targets=True),
    dict(coarsening=3.0),
    dict(marginal="relaxed_mc", n_mc=8),
]


@pytest.mark.parametrize("opts", LINEAR_CASES, ids=lambda o: "-".join(map(str, o.values()))
                         or "default")
def test_log_density_and_gradient_from_moments_equal_the_cells(opts):
    """The whole log joint (and its gradient) with moments vs `statistics="cells"`."""
    with jax.enable_x64(True):
        data = small_data(seed=3, d=3, p=2, n_cells=12)
        assert data.moments is not None  # 7 contexts · 3 variables ≤ 82 cells
        fast = gim_ppl.GIM(3, 2, **opts)
        slow = gim_ppl.GIM(3, 2, statistics="cells", **opts)
        sites = random_sites(fast, seed=4)

        def density(model, s):  # the same seed: relaxed-MC draws the same targets
            return log_density(handlers.seed(model, 0), (data,), {}, s)[0]

        np.testing.assert_allclose(float(density(fast, sites)), float(density(slow, sites)),
                                   rtol=1e-12)
        g_fast = jax.grad(lambda s: density(fast, s))(sites)
        g_slow = jax.grad(lambda s: density(slow, s))(sites)
        for name in sites:
            np.testing.assert_allclose(g_fast[name], g_slow[name], rtol=1e-9, atol=1e-9,
                                       err_msg=name)
        post = fast.posterior_targets(sites, data)
        np.testing.assert_allclose(post, slow.posterior_targets(sites, data), rtol=1e-10)


def test_moments_used_only_where_they_pay_off():
    """Attached by `from_arrays` iff n_contexts · n_vars ≤ n_cells."""
    few = small_data(seed=0, d=3, n_cells=2, n_obs=2)  # 7 · 3 = 21 > 14 cells
    many = small_data(seed=0, d=3, n_cells=4, n_obs=3)  # 21 ≤ 27 cells
    assert few.moments is None and many.moments is not None
    assert few.with_moments(only_if_cheaper=True) is few
    assert few.with_moments().moments is not None  # asked for: attached anyway


def test_views_keep_moments_consistent_with_their_cells():
    with jax.enable_x64(True):
        data = small_data(seed=2, d=3, n_cells=9)
        part = data.subset([3, 0, 5])
        recomputed = cell_moments(part.x, part.context, part.n_contexts)
        for a, b in zip(part.moments, recomputed, strict=True):
            np.testing.assert_allclose(np.asarray(a), b, rtol=1e-12, atol=1e-12)
        shifted = shift_cells(data, np.array([1.0, -2.0, 0.5]))
        recomputed = cell_moments(shifted.x, shifted.context, shifted.n_contexts)
        for a, b in zip(shifted.moments, recomputed, strict=True):
            np.testing.assert_allclose(np.asarray(a), b, rtol=1e-12, atol=1e-12)
        # new cells without new moments: the stale ones are dropped, not kept
        assert data.replace(x=data.x + 1.0).moments is None
        assert data.contexts_only().moments is None
        assert data.for_prediction(3).moments is None


def test_fit_from_moments_follows_the_fit_from_cells():
    """100 Adam steps in float64: the loss histories agree to round-off. (Further on, Adam
    at lr 1e-2 amplifies 1e-16 differences ~10× per 10 steps on this problem — after ~120
    steps either path differs from itself under any change of summation order.)"""
    with jax.enable_x64(True):
        data = small_data(seed=1, d=3, p=2, n_cells=30)
        kw = dict(steps=100, key=jax.random.key(0), progress=False,
                  optimizer=optax.adam(1e-2))
        fast = gim_ppl.fit(gim_ppl.GIM(3, 2), data, **kw)
        slow = gim_ppl.fit(gim_ppl.GIM(3, 2, statistics="cells"), data, **kw)
        np.testing.assert_allclose(fast.losses, slow.losses, rtol=1e-10)
        assert fast.losses[-1] < fast.losses[0] - 100  # it did move


def test_minibatches_of_a_linear_model_warn_that_they_are_not_needed():
    data = small_data(seed=1, d=3, p=2, n_cells=30)
    with pytest.warns(UserWarning, match="batch_size=4: a linear GIM's full-batch step"):
        gim_ppl.fit(gim_ppl.GIM(3, 2), data, steps=3, key=jax.random.key(0), progress=False,
                    batch_size=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an MLP needs them: no warning
        gim_ppl.fit(gim_ppl.GIM(3, 2, mechanism="mlp", hidden=2), data, steps=3,
                    key=jax.random.key(0), progress=False, batch_size=4)


def test_bad_statistics_requests_are_clear_errors():
    data = small_data(seed=0, d=3, n_cells=2, n_obs=2)  # no moments attached
    with pytest.raises(ValueError, match="statistics must be one of"):
        gim_ppl.GIM(3, 2, statistics="moment")
    with pytest.raises(ValueError, match="statistics='moments' needs a linear mechanism"):
        gim_ppl.GIM(3, 2, mechanism="mlp", statistics="moments")
    model = gim_ppl.GIM(3, 2, statistics="moments")
    with pytest.raises(ValueError, match=r"carries no moments; pass data.with_moments\(\)"):
        log_density(model, (data,), {}, random_sites(model))
    with pytest.raises(ValueError, match="no cells"):
        data.contexts_only().with_moments()


def test_moments_that_overflow_float32_are_refused_or_skipped():
    rng = np.random.default_rng(0)
    x = rng.choice([-3e19, 3e19], size=(40, 2))  # storable; its scatter (~1e40) is not
    ctx = np.repeat([0, 1], 20)
    kw = dict(features=np.zeros((2, 1)), dose=np.array([0.0, 1.0]),
              observational=np.array([True, False]))
    with pytest.warns(RuntimeWarning, match="scatter overflows float32 in contexts"):
        data = gim_ppl.PerturbationData.from_arrays(x, ctx, **kw)
    assert data.moments is None  # the cells still work
    with pytest.raises(ValueError, match="normalise the cells"):
        data.with_moments()


def test_merged_moments_equal_the_moments_of_all_cells():
    """Chan's parallel update over parts of unequal sizes (one part without cells of a
    context) against the moments of the concatenated cells."""
    x, ctx, _, _ = _problem(2)
    cuts = [0, 37, 38, 400]  # a one-cell part, a large one
    parts = [cell_moments(x[a:b], ctx[a:b], 6) for a, b in itertools.pairwise(cuts)]
    merged = merge_moments(parts)
    whole = cell_moments(x, ctx, 6)
    for a, b in zip(merged, whole, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("controls", [True, False])
def test_data_start_from_moments_equals_the_start_from_cells(controls):
    """Two observational contexts (pooled by `merge_moments`), or none (all cells)."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(3)
        ctx = np.repeat(np.arange(4), [30, 50, 20, 20])
        x = rng.normal(size=(120, 3)) * [1.0, 2.0, 0.5] + 3.0 * (ctx[:, None] == 1)
        obs = np.array([True, True, False, False]) if controls else np.zeros(4, bool)
        data = gim_ppl.PerturbationData.from_arrays(
            x, ctx, features=np.eye(4)[:, :2], dose=np.where(obs, 0.0, 1.0),
            observational=obs)
        assert data.moments is not None
        fast, slow = data_start(data), data_start(data.replace(moments=None))
        for name in fast:
            np.testing.assert_allclose(fast[name], slow[name], rtol=1e-12, err_msg=name)
        ref = x[obs[ctx]] if controls else x
        np.testing.assert_allclose(fast["noise_scale"], ref.std(0), rtol=1e-12)
