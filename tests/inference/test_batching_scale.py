"""Scaling features: stratified minibatches, sharding the cell axis over devices, float64,
and a jitted step free of host callbacks."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from numpyro.infer.util import log_density

import gim_ppl
from gim_ppl.core.likelihood import residual_stats
from gim_ppl.inference import BatchIndex, stratified_batch
from tests._problems import random_sites, small_data, train_target_aurocs


def test_stratified_batch_weights_sum_to_context_sizes():
    data = small_data(d=3, n_cells=7, n_obs=25)  # contexts of 25 and 7 cells
    index = BatchIndex.build(data, 10)
    batch, w = stratified_batch(jax.random.key(0), data, index)
    assert batch.x.shape == (data.n_contexts * 10, 3)
    per_context = jax.ops.segment_sum(w, batch.context, data.n_contexts)
    np.testing.assert_allclose(per_context, data.cells_per_context(), rtol=1e-6)
    # a context with ≤ 10 cells is taken whole: its weighted sums are exact
    small = np.flatnonzero(data.cells_per_context() <= 10)
    full = residual_stats(data.x, data.context, data.n_contexts)
    got = residual_stats(batch.x, batch.context, data.n_contexts, cell_weights=w)
    np.testing.assert_allclose(got.sum_r[small], full.sum_r[small], rtol=1e-5, atol=1e-5)


def test_stratified_batch_statistics_are_unbiased():
    data = small_data(d=3, n_cells=7, n_obs=40)
    index = BatchIndex.build(data, 5)
    full = residual_stats(data.x, data.context, data.n_contexts)

    @jax.vmap
    def stats(key):
        batch, w = stratified_batch(key, data, index)
        s = residual_stats(batch.x, batch.context, data.n_contexts, cell_weights=w)
        return s.sum_r, s.sum_r2

    keys = jax.random.split(jax.random.key(1), 4000)
    sum_r, sum_r2 = stats(keys)
    # Monte Carlo mean over 4000 batches vs the full-data sums: tolerance 5 standard errors
    for draws, exact in ((sum_r, full.sum_r), (sum_r2, full.sum_r2)):
        se = np.asarray(draws).std(0) / np.sqrt(draws.shape[0])
        assert (np.abs(np.asarray(draws).mean(0) - np.asarray(exact)) <= 5 * se + 1e-6).all()


def test_minibatch_fit_runs_and_learns():
    """A minibatch fit must find the training targets better than the raw mean-shift
    detector on the same data (AUROC 0.906 on seed 0; the fit reaches 0.98 with keys 0-2):
    a bar of 0.8 passed with a fit worse than doing nothing but comparing means."""
    bench = gim_ppl.datasets.synthetic_hill(0)
    model = gim_ppl.GIM(10, 10)
    res = gim_ppl.fit(model, bench.train, steps=3000, key=jax.random.key(0),
                      optimizer=optax.adam(1e-2), progress=False, batch_size=25)
    assert res.message == ""
    fitted, bar = train_target_aurocs(model, res.sites, bench)
    assert fitted > bar


def test_fit_rejects_bad_batch_size():
    with pytest.raises(ValueError, match="batch_size"):
        gim_ppl.fit(gim_ppl.GIM(3, 2), small_data(), steps=2, key=jax.random.key(0),
                    batch_size=0, progress=False)
    with pytest.raises(ValueError, match="batch_size or devices"):
        gim_ppl.fit(gim_ppl.GIM(3, 2), small_data(), steps=2, key=jax.random.key(0),
                    batch_size=2, devices=jax.devices(), progress=False)


def test_shard_cells_on_one_device_keeps_the_data():
    from gim_ppl.inference import shard_cells

    data = small_data()
    sharded, w = shard_cells(data, jax.devices()[:1])
    np.testing.assert_array_equal(sharded.x, data.x)
    np.testing.assert_array_equal(sharded.context, data.context)
    np.testing.assert_array_equal(w, 1.0)
    assert sharded.var_names == data.var_names and sharded.context_names == data.context_names
    with pytest.raises(ValueError, match="devices must name at least one device"):
        shard_cells(data, [])


def test_zero_weight_cells_do_not_change_the_log_density():
    data = small_data()
    model = gim_ppl.GIM(3, 2)
    sites = random_sites(model)
    base, _ = log_density(model, (data,), {}, sites)
    padded = data.replace(x=jnp.concatenate([data.x, data.x[:3] + 5.0]),
                          context=jnp.concatenate([data.context, data.context[:3]]))
    w = jnp.r_[jnp.ones(data.x.shape[0]), jnp.zeros(3)]
    got, _ = log_density(model, (padded,), {"cell_weights": w}, sites)
    np.testing.assert_allclose(got, base, rtol=1e-6)


SHARDED = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    from numpyro.infer.util import log_density
    import gim_ppl
    from gim_ppl.inference import shard_cells
    assert jax.device_count() == 2, jax.devices()
    bench = gim_ppl.datasets.synthetic_hill(0)
    data = bench.train.subset(np.arange(1, bench.train.n_contexts))  # 8000 cells
    data = data.replace(x=data.x[:-1], context=data.context[:-1])  # odd count: exercises padding
    model = gim_ppl.GIM(10, 10)
    rng = np.random.default_rng(0)
    sites = {s: jnp.asarray(rng.normal(scale=0.3, size=sh), jnp.float32)
             for s, sh in model.site_shapes.items()}
    sites["noise_scale"] = jnp.ones(10)
    def ld(sites, data, w):
        return log_density(model, (data,), {"cell_weights": w}, sites)[0]
    f = jax.jit(jax.value_and_grad(ld))
    v1, g1 = f(sites, data, None)
    sharded, w = shard_cells(data, jax.devices())
    assert len(sharded.x.sharding.device_set) == 2
    v2, g2 = f(sites, sharded, w)
    np.testing.assert_allclose(v2, v1, rtol=1e-5)
    for k in g1:
        np.testing.assert_allclose(g2[k], g1[k], rtol=1e-3, atol=1e-2 * float(jnp.abs(g1[k]).max()))
    r1 = gim_ppl.fit(model, data, steps=20, key=jax.random.key(0), progress=False)
    r2 = gim_ppl.fit(model, data, steps=20, key=jax.random.key(0), progress=False,
                     devices=jax.devices())
    np.testing.assert_allclose(r2.losses, r1.losses, rtol=1e-4)
    print("OK")
""")


def test_sharded_cells_match_single_device():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", SHARDED], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "OK" in out.stdout


def test_float64_fit():
    with jax.enable_x64(True):
        data = small_data()
        data64 = data.replace(x=jnp.asarray(data.x, jnp.float64),
                              features=jnp.asarray(data.features, jnp.float64),
                              dose=jnp.asarray(data.dose, jnp.float64))
        res = gim_ppl.fit(gim_ppl.GIM(3, 2), data64, steps=50, key=jax.random.key(0),
                          progress=False)
        assert all(v.dtype == jnp.float64 for v in res.sites.values())
        assert np.isfinite(res.losses).all()


def test_jitted_step_has_no_host_callbacks():
    import optax
    from numpyro.infer import SVI, Trace_ELBO
    from numpyro.infer.autoguide import AutoDelta
    from numpyro.optim import optax_to_numpyro

    data = small_data()
    for marginal in ("exact", "relaxed_mc"):
        model = gim_ppl.GIM(3, 2, marginal=marginal)
        svi = SVI(model, AutoDelta(model), optax_to_numpyro(optax.adam(1e-3)), Trace_ELBO())
        state = svi.init(jax.random.key(0), data)
        text = str(jax.make_jaxpr(lambda s, svi=svi: svi.update(s, data))(state))
        for prim in ("callback", "io_callback", "pure_callback", "debug_callback",
                     "device_put"):
            assert prim not in text, (marginal, prim)


def test_cell_weights_of_wrong_shape_are_rejected():
    data = small_data()
    model = gim_ppl.GIM(3, 2)
    with pytest.raises(ValueError, match="cell_weights must have shape"):
        log_density(model, (data,), {"cell_weights": jnp.ones(3)}, random_sites(model))
