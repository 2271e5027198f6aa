"""`init_from_data`: the start of a fit is the data's, not the PRNG key's."""

import jax
import numpy as np
import optax
import pytest
from numpyro.infer import SVI, Trace_ELBO
from numpyro.infer.autoguide import AutoDelta
from numpyro.optim import optax_to_numpyro

import gim_ppl
from gim_ppl.inference import data_start, init_from_data


@pytest.fixture(scope="module")
def bench():
    return gim_ppl.datasets.synthetic_hill(3, n_train_perturbations=8, n_test_perturbations=2,
                                           n_cells=20, n_observational=200)


def _start(model, data, init, key):
    guide = AutoDelta(model, init_loc_fn=init)
    svi = SVI(model, guide, optax_to_numpyro(optax.adam(1e-3)), Trace_ELBO())
    state = svi.init(jax.random.key(key), data)
    return guide.median(svi.get_params(state))


def test_start_is_the_control_cells_and_zero_effects(bench):
    data = bench.train
    model = gim_ppl.GIM(data.n_vars, data.n_features)
    sites = _start(model, data, init_from_data(data), 0)
    control = data.control_cells()
    np.testing.assert_allclose(sites["bias"], control.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sites["noise_scale"], control.std(0), rtol=1e-5)
    for name in ("weights", "target_weights", "emax_weights", "emax_bias",
                 "log_ec50_weights", "log_hill_weights", "log_hill_bias"):
        np.testing.assert_array_equal(sites[name], 0.0, err_msg=name)
    # EC50 at the median dose on the log scale: doses 0.5, 1, 1.5, 2 → (log 1 + log 1.5) / 2
    np.testing.assert_allclose(sites["log_ec50_bias"], 0.5 * np.log(1.5), rtol=1e-6)
    np.testing.assert_allclose(sites["target_bias"], -2.0)  # the prior's mean


def test_start_does_not_depend_on_the_key_except_hidden_layers(bench):
    data = bench.train
    linear = gim_ppl.GIM(data.n_vars, data.n_features)
    a, b = (_start(linear, data, init_from_data(data), k) for k in (0, 1))
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    mlp = gim_ppl.GIM(data.n_vars, data.n_features, mechanism="mlp", intervention_map="mlp",
                      hidden=4)
    a, b = (_start(mlp, data, init_from_data(data), k) for k in (0, 1))
    for name in ("mlp_w1", "mlp_b1", "map_hidden_weights", "map_hidden_bias"):
        assert not np.array_equal(a[name], b[name]), name  # units start apart
    for name in ("mlp_w2", "emax_weights", "bias"):
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_jitter_draws_different_starts_near_the_data(bench):
    data = bench.train
    model = gim_ppl.GIM(data.n_vars, data.n_features)
    a, b = (_start(model, data, init_from_data(data, jitter=0.1), k) for k in (0, 1))
    assert not np.array_equal(a["emax_bias"], b["emax_bias"])
    # unconstrained sd 0.1: a positive site moves by a factor exp(±0.1·z)
    ratio = np.log(a["noise_scale"] / data.control_cells().std(0))
    assert 0 < np.std(ratio) < 0.5 and np.all(np.abs(ratio) < 0.6)
    assert np.all(np.abs(a["emax_bias"]) < 0.6)


def test_without_controls_the_start_uses_all_cells(bench):
    data = bench.train
    pert = np.flatnonzero(~np.asarray(data.observational))
    only = data.subset(pert)
    start = data_start(only)
    np.testing.assert_allclose(start["bias"], np.asarray(only.x).mean(0), rtol=1e-5, atol=1e-6)


def test_fit_gives_the_same_answer_for_every_key(bench):
    data = bench.train
    model = gim_ppl.GIM(data.n_vars, data.n_features)
    a, b = (gim_ppl.fit(model, data, steps=300, key=jax.random.key(k), progress=False)
            for k in (0, 7))
    for name in a.sites:
        np.testing.assert_array_equal(a.sites[name], b.sites[name], err_msg=name)


def test_bad_input_is_named(bench):
    with pytest.raises(ValueError, match="jitter"):
        init_from_data(bench.train, jitter=-1.0)
    with pytest.raises(ValueError, match="cells"):
        init_from_data(bench.train.contexts_only())
    other = gim_ppl.datasets.synthetic_hill(0, n_vars=bench.train.n_vars + 1,
                                            n_train_perturbations=4, n_cells=5)
    model = gim_ppl.GIM(other.train.n_vars, other.train.n_features)
    with pytest.raises(ValueError, match="n_vars"):  # the start of another data set
        _start(model, other.train, init_from_data(bench.train), 0)


def test_jitter_is_multiplicative_on_positive_sites_whatever_their_scale():
    """Jitter is added in the unconstrained space: a noise scale moves by a factor exp(0.1 z)
    whether it starts at 0.05 or 50 (log-ratio sd 0.1 for both). Jitter added to the
    constrained value instead (contrary to the docstring) moves 50 by a factor ~1.002 and
    can push 0.05 below zero. Kills mutant `init_jitter_constrained` (dev/mutants.py)."""
    import numpyro.distributions as dist

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 2)) * np.array([0.05, 50.0])
    data = gim_ppl.PerturbationData.from_arrays(
        x, np.zeros(400, int), features=np.zeros((1, 1)), dose=np.zeros(1),
        observational=np.array([True]))
    init = init_from_data(data, jitter=0.1)
    start = data_start(data)["noise_scale"]
    draws = np.stack([init({"type": "sample", "is_observed": False, "name": "noise_scale",
                            "fn": dist.LogNormal(0.0, 1.0).expand((2,)),
                            "kwargs": {"rng_key": jax.random.key(k)}}) for k in range(300)])
    log_ratio = np.log(draws / np.asarray(start))
    # sd of a sample sd from 300 normal draws is ~0.1 / √600 = 0.004: 0.08–0.12 is ±5 of it
    assert np.all((0.08 < log_ratio.std(0)) & (log_ratio.std(0) < 0.12)), log_ratio.std(0)
