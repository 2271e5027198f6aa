import importlib
import math
import warnings

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gim_ppl
from gim_ppl.inference import DualAscent, FitState, cosine_ramp, cycle_gain, dual_ascent_step
from tests._problems import small_data

fit_module = importlib.import_module("gim_ppl.inference.fit")


def test_cosine_ramp_rises_as_half_a_cosine_then_stays_flat():
    cos = np.asarray(jax.vmap(cosine_ramp(2.0, 100))(jnp.arange(101)))
    assert cos[0] == 0.0 and np.isclose(cos[-1], 2.0) and np.all(np.diff(cos) >= 0)
    np.testing.assert_allclose(cos[50], 1.0, rtol=1e-6)
    t = np.arange(101) / 100
    np.testing.assert_allclose(cos, 2.0 * 0.5 * (1 - np.cos(np.pi * t)), atol=1e-6)
    half = np.asarray(cosine_ramp(1.0, 50)(jnp.arange(101)))
    np.testing.assert_allclose(half[50:], 1.0)
    assert float(cosine_ramp(3.0, 0)(1)) == 3.0  # ramp_steps below 1 count as 1


def test_default_schedules_are_cosine_ramps():
    # None means cosine_ramp(model value, steps - 1) for β and over half the steps for λ
    data = small_data()
    model = gim_ppl.GIM(3, 2)
    kw = dict(steps=120, key=jax.random.key(0), progress=False)
    default = gim_ppl.fit(model, data, **kw)
    explicit = gim_ppl.fit(model, data, **kw,
                           target_sparsity=cosine_ramp(model.target_sparsity, 119),
                           acyclicity_weight=cosine_ramp(model.acyclicity_weight, 59.5))
    np.testing.assert_array_equal(default.losses, explicit.losses)


def test_float_weight_is_a_constant_schedule():
    data = small_data()
    model = gim_ppl.GIM(3, 2)
    kw = dict(steps=60, key=jax.random.key(0), progress=False)
    a = gim_ppl.fit(model, data, target_sparsity=0.5, acyclicity_weight=2.0, **kw)
    b = gim_ppl.fit(model, data, target_sparsity=optax.constant_schedule(0.5),
                    acyclicity_weight=lambda step: 2.0 * jnp.ones_like(step, jnp.float32), **kw)
    np.testing.assert_array_equal(a.losses, b.losses)
    c = gim_ppl.fit(model, data, target_sparsity=0.5, acyclicity_weight=20.0, **kw)
    assert not np.array_equal(a.losses, c.losses)


def test_fit_is_deterministic_and_records_losses(monkeypatch):
    data = small_data()
    model = gim_ppl.GIM(3, 2)
    monkeypatch.setattr(fit_module, "CHUNK_STEPS", 100)
    a = gim_ppl.fit(model, data, steps=250, key=jax.random.key(0), progress=False)
    monkeypatch.setattr(fit_module, "CHUNK_STEPS", 50)
    b = gim_ppl.fit(model, data, steps=250, key=jax.random.key(0), progress=False)
    assert a.losses.shape == (250,) and a.message == ""
    for k in a.sites:
        np.testing.assert_allclose(a.sites[k], b.sites[k], rtol=1e-6, atol=1e-7)
    assert set(a.sites) == set(model.site_shapes)


def test_nan_guard_stops_and_keeps_finite_parameters(monkeypatch):
    data = small_data()
    model = gim_ppl.GIM(3, 2)
    monkeypatch.setattr(fit_module, "CHUNK_STEPS", 10)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = gim_ppl.fit(model, data, steps=400, key=jax.random.key(0),
                          optimizer=optax.adam(1e9), progress=False)
    assert "non-finite" in res.message
    assert any(issubclass(w.category, RuntimeWarning) for w in caught)
    assert len(res.losses) < 400 and len(res.losses) % 10 == 0
    for v in res.sites.values():
        assert np.all(np.isfinite(v))


def test_fit_accepts_a_chained_optimizer():
    res = gim_ppl.fit(gim_ppl.GIM(3, 2), small_data(), steps=20, key=jax.random.key(0),
                      optimizer=optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2)),
                      progress=False)
    assert res.losses.shape == (20,) and np.isfinite(res.losses).all()


def test_fit_rejects_data_without_cells():
    data = small_data().contexts_only()
    with pytest.raises(ValueError, match="data must be a PerturbationData with cells"):
        gim_ppl.fit(gim_ppl.GIM(3, 2), data, steps=10, key=jax.random.key(0))


@pytest.mark.parametrize("options, error, match", [
    (dict(steps=0), ValueError, "steps must be an integer >= 1"),
    (dict(steps=float("nan")), ValueError, "steps must be an integer >= 1"),
    (dict(steps="10"), TypeError, "steps must be an integer >= 1"),
    (dict(batch_size=0), ValueError, "batch_size must be an integer >= 1"),
    (dict(devices=0), TypeError, "devices must be a sequence of JAX devices"),
    (dict(batch_size=4, devices=jax.devices()), ValueError, "batch_size or devices"),
    (dict(optimizer=1e-3), TypeError, "optimizer must be an optax GradientTransformation"),
    (dict(target_sparsity=-1.0), ValueError, "target_sparsity must be >= 0"),
    (dict(acyclicity_weight=-0.5), ValueError, "acyclicity_weight must be >= 0"),
    (dict(acyclicity_weight="cosine"), TypeError, "acyclicity_weight must be a float"),
    (dict(dual_ascent="yes"), TypeError, "dual_ascent must be"),
])
def test_fit_validates_its_arguments(options, error, match):
    kw = dict(steps=5, key=jax.random.key(0), progress=False) | options
    with pytest.raises(error, match=match):
        gim_ppl.fit(gim_ppl.GIM(3, 2), small_data(), **kw)


def test_schedule_must_return_a_scalar_per_step():
    with pytest.raises(ValueError, match="target_sparsity schedule must return a scalar"):
        gim_ppl.fit(gim_ppl.GIM(3, 2), small_data(), steps=5, key=jax.random.key(0),
                    target_sparsity=lambda step: jnp.ones(2), progress=False)


def test_nuts_and_arviz_with_named_coords():
    data = small_data(d=2, p=1, n_pert=2, n_cells=8)
    model = gim_ppl.GIM(2, 1, acyclicity="notears")  # exact gradient, as HMC needs
    mcmc = gim_ppl.run_mcmc(model, data, key=jax.random.key(0), num_warmup=150,
                            num_samples=100, num_chains=2)
    samples = mcmc.get_samples()
    assert samples["weights"].shape == (200, 2, 2)
    idata = gim_ppl.to_arviz(model, mcmc, data)
    post = idata.posterior
    assert post.sizes["chain"] == 2 and post.sizes["draw"] == 100
    assert list(post["weights"].dims) == ["chain", "draw", "parent", "var"]
    assert list(post.coords["var"].values) == list(data.var_names)
    assert list(post["emax"].dims)[2:] == ["context", "var"]
    assert list(post.coords["feature"].values) == list(data.feature_names)
    summary = az.summary(idata, var_names=["noise_scale"])
    assert f"noise_scale[{data.var_names[0]}]" in summary.index
    assert np.all(np.isfinite(summary["r_hat"]))
    assert "diverging" in idata.sample_stats
    # posterior draws feed every sites-taking method
    assert model.target_probabilities(samples, data).shape == (200, data.n_contexts, 2)
    assert model.hill_parameters(samples, data)["ec50"].shape == (200, data.n_contexts, 2)
    assert model.graph(samples).dtype == bool
    by_pert = gim_ppl.to_arviz(model, mcmc, data, per="perturbation").posterior
    assert list(by_pert["emax"].dims)[2:] == ["perturbation", "var"]
    assert by_pert.sizes["perturbation"] == 2


def test_to_arviz_from_a_map_point():
    data = small_data()
    model = gim_ppl.GIM(3, 2)
    res = gim_ppl.fit(model, data, steps=50, key=jax.random.key(0), progress=False)
    idata = gim_ppl.to_arviz(model, res.sites, data)
    assert idata.posterior.sizes["draw"] == 1
    assert idata.posterior["target_prob"].shape == (1, 1, data.n_contexts, 3)
    with pytest.raises(TypeError, match="expected an MCMC or a dict"):
        gim_ppl.to_arviz(model, [1, 2], data)


def test_dual_ascent_step_raises_acyclicity_weight_only_while_cyclic():
    state = FitState(svi_state=None, acyclicity_scale=jnp.ones((), jnp.float32))
    cyclic = [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]  # cycle gain 1
    # a weak edge closing a cycle of strong ones: the read-off graph at 0.3 is a DAG, but
    # the cycle gain (1 · 2 · 0.2)^(1/3) = 0.74 still amplifies samples: must raise λ
    hidden_cycle = [[0.0, 1.0, 0.0], [0.0, 0.0, 2.0], [0.2, 0.0, 0.0]]
    dag = [[0.0, 1.0, 0.5], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]]
    # a strong DAG with weak reverse edges: W itself is cyclic (penalty > 0, many nats on
    # thousands of cells) but its cycle gain is 0.2 (spectral radius of |W|), so λ must stay
    jitter = [[0.0, 1.0, 0.5], [0.005, 0.0, 1.0], [0.005, 0.005, 0.0]]
    from gim_ppl.core.graph import acyclicity_penalty
    assert float(acyclicity_penalty(jnp.asarray(jitter, jnp.float32))) > 1e-4
    np.testing.assert_allclose(cycle_gain(hidden_cycle), 0.4 ** (1 / 3), rtol=1e-5)
    assert cycle_gain(dag) == 0.0
    # self-loops are masked: a diagonal alone is no cycle
    assert cycle_gain(np.diag([5.0, 5.0, 5.0])) == 0.0
    for w in (cyclic, hidden_cycle):
        raised = dual_ascent_step(state, jnp.asarray(w), 2.0)
        assert float(raised.acyclicity_scale) == 10.0
        again = dual_ascent_step(raised, jnp.asarray(w), 20.0, DualAscent(factor=3.0))
        assert float(again.acyclicity_scale) == 30.0
        # at the cap λ stays
        assert dual_ascent_step(state, jnp.asarray(w), 1e4) is state
    for w in (dag, jitter):
        assert dual_ascent_step(state, jnp.asarray(w), 2.0) is state
    assert dual_ascent_step(state, jnp.asarray(jitter), 2.0,
                            DualAscent(max_cycle_gain=0.1)) is not state


def test_acyclicity_weight_at_raises_to_the_cap_and_never_lowers():
    lam = jnp.asarray([0.0, 2.0, 10.0, 5e4], jnp.float32)
    got = fit_module.acyclicity_weight_at(lam, jnp.float32(1000.0), 1e4)
    np.testing.assert_array_equal(got, [0.0, 2000.0, 1e4, 5e4])
    np.testing.assert_array_equal(fit_module.acyclicity_weight_at(lam, 1.0, math.inf), lam)


def test_dual_ascent_raises_lambda_inside_fit(monkeypatch):
    # with a trigger that always fires (gain > -1), λ rises 10× after every chunk from
    # `start` on: the losses agree with a fit without dual ascent up to the first trigger,
    # and the penalty term makes the loss at the next step larger (same parameters there)
    data = small_data()
    model = gim_ppl.GIM(3, 2)
    monkeypatch.setattr(fit_module, "CHUNK_STEPS", 20)
    kw = dict(steps=80, key=jax.random.key(0), progress=False, optimizer=optax.adam(3e-2),
              acyclicity_weight=1.0)
    plain = gim_ppl.fit(model, data, dual_ascent=False, **kw)
    never = gim_ppl.fit(model, data, dual_ascent=DualAscent(max_cycle_gain=math.inf), **kw)
    always = gim_ppl.fit(model, data, dual_ascent=DualAscent(max_cycle_gain=-1.0, start=0.5),
                         **kw)
    np.testing.assert_array_equal(plain.losses, never.losses)
    np.testing.assert_array_equal(always.losses[:40], plain.losses[:40])
    assert always.losses[40] > plain.losses[40]


def test_dual_ascent_raises_lambda_of_every_restart(monkeypatch):
    # the same check as above, for two restarts run as one program
    data = small_data()
    model = gim_ppl.GIM(3, 2)
    monkeypatch.setattr(fit_module, "CHUNK_STEPS", 20)
    kw = dict(steps=80, key=jax.random.key(0), progress=False, optimizer=optax.adam(3e-2),
              acyclicity_weight=1.0, restarts=2, validation=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = gim_ppl.fit(model, data, dual_ascent=False, **kw).restarts.losses
        always = gim_ppl.fit(model, data, dual_ascent=DualAscent(max_cycle_gain=-1.0, start=0.5),
                             **kw).restarts.losses
    np.testing.assert_array_equal(always[:, :40], plain[:, :40])
    assert np.all(always[:, 40] > plain[:, 40])
