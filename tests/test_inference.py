import warnings

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gim_ppl
from gim_ppl.inference import annealing_schedule
from tests._problems import small_data


def test_annealing_schedules():
    cos = np.asarray(annealing_schedule("cosine", 2.0, 101))
    assert cos[0] == 0.0 and np.isclose(cos[-1], 2.0) and np.all(np.diff(cos) >= 0)
    np.testing.assert_allclose(cos[50], 1.0, rtol=1e-6)
    half = np.asarray(annealing_schedule("cosine", 1.0, 101, ramp=0.5))
    np.testing.assert_allclose(half[50:], 1.0)
    np.testing.assert_array_equal(annealing_schedule("constant", 3.0, 4), 3.0)
    with pytest.raises(ValueError, match="schedule must be"):
        annealing_schedule("linear", 1.0, 3)


def test_fit_is_deterministic_and_records_losses():
    data = small_data()
    model = gim_ppl.GIM(3, 2)
    a = gim_ppl.fit(model, data, steps=250, key=jax.random.key(0), progress=False, chunk_size=100)
    b = gim_ppl.fit(model, data, steps=250, key=jax.random.key(0), progress=False, chunk_size=50)
    assert a.losses.shape == (250,) and a.message == ""
    for k in a.sites:
        np.testing.assert_allclose(a.sites[k], b.sites[k], rtol=1e-6, atol=1e-7)
    assert set(a.sites) == set(model.site_shapes)


def test_nan_guard_stops_and_keeps_finite_parameters():
    data = small_data()
    model = gim_ppl.GIM(3, 2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = gim_ppl.fit(model, data, steps=400, key=jax.random.key(0), learning_rate=1e9,
                          progress=False, chunk_size=10)
    assert "non-finite" in res.message
    assert any(issubclass(w.category, RuntimeWarning) for w in caught)
    assert len(res.losses) < 400
    for v in res.sites.values():
        assert np.all(np.isfinite(v))


def test_fit_rejects_data_without_cells():
    data = small_data().contexts_only()
    with pytest.raises(ValueError, match="needs a PerturbationData with cells"):
        gim_ppl.fit(gim_ppl.GIM(3, 2), data, steps=10, key=jax.random.key(0))


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
    assert model.target_probabilities(samples, data).shape == (data.n_contexts, 2)
    assert model.hill_parameters(samples, data)["ec50"].shape == (200, data.n_contexts, 2)
    assert model.graph(samples).dtype == bool
    by_pert = gim_ppl.to_arviz(model, mcmc, data, per="perturbation").posterior
    assert list(by_pert["emax"].dims)[2:] == ["perturbation", "var"]
    assert by_pert.sizes["perturbation"] == 2


def test_run_mcmc_warns_on_spectral_penalty():
    data = small_data(d=2, p=1, n_pert=2, n_cells=4)
    with pytest.warns(UserWarning, match="notears"):
        gim_ppl.run_mcmc(gim_ppl.GIM(2, 1), data, key=jax.random.key(0), num_warmup=2,
                         num_samples=2)


def test_to_arviz_from_a_map_point():
    data = small_data()
    model = gim_ppl.GIM(3, 2)
    res = gim_ppl.fit(model, data, steps=50, key=jax.random.key(0), progress=False)
    idata = gim_ppl.to_arviz(model, res.sites, data)
    assert idata.posterior.sizes["draw"] == 1
    assert idata.posterior["target_prob"].shape == (1, 1, data.n_contexts, 3)
    with pytest.raises(TypeError, match="expected an MCMC or a dict"):
        gim_ppl.to_arviz(model, [1, 2], data)


def test_dual_ascent_raises_acyclicity_weight_only_while_cyclic():
    import optax
    from numpyro.infer import SVI, Trace_ELBO
    from numpyro.infer.autoguide import AutoDelta
    from numpyro.optim import optax_to_numpyro

    from gim_ppl.inference import _raise_acyclicity_weight

    data = small_data()
    model = gim_ppl.GIM(3, 2)
    guide = AutoDelta(model)
    svi = SVI(model, guide, optax_to_numpyro(optax.adam(1e-3)), Trace_ELBO())
    params = svi.get_params(svi.init(jax.random.key(0), data))
    schedule = jnp.stack([jnp.zeros(10), jnp.full(10, 2.0), jnp.arange(10.0)], axis=1)

    def with_weights(w):
        return {**params, "weights_auto_loc": jnp.asarray(w, jnp.float32)}

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
    for w in (cyclic, hidden_cycle):
        raised = _raise_acyclicity_weight(guide, with_weights(w), schedule, 4)
        np.testing.assert_allclose(raised[:4, 1], 2.0)
        np.testing.assert_allclose(raised[4:, 1], 20.0)
    for w in (dag, jitter):
        kept = _raise_acyclicity_weight(guide, with_weights(w), schedule, 4)
        np.testing.assert_allclose(kept[:, 1], 2.0)
