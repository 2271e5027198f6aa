"""Minibatches of whole perturbations (`gim_ppl.inference.batching.perturbation_batch`):
every drawn perturbation's mixture over targets is exact, the log-likelihood is unbiased for
the full data's, and `fit` takes them as `batch_size=PerturbationBatches(n)`."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from numpyro.infer.util import log_density

import gim_ppl
from gim_ppl.core.likelihood import CellModel, log_likelihood, make_groups
from gim_ppl.inference import PerturbationBatches, PerturbationBatchIndex, perturbation_batch
from tests._problems import random_sites, small_data, train_target_aurocs

N_PERT, SIZE = 5, 2


def _problem(seed=0):
    data = small_data(seed, d=3, n_pert=N_PERT, doses=(0.5, 1.0, 1.5), n_cells=4, n_obs=12)
    rng = np.random.default_rng(seed)
    params = {"weights": jnp.asarray(np.triu(rng.normal(size=(3, 3)), 1)),
              "bias": jnp.asarray(rng.normal(size=3)),
              "noise_scale": jnp.asarray(rng.uniform(0.7, 1.3, size=3))}
    logits = jnp.asarray(rng.normal(size=(data.n_contexts, 3)))
    shift = jnp.asarray(rng.normal(size=(data.n_contexts, 3)))
    return data, params, logits, shift


def _loglik(data, params, logits, shift, shared, **weights):
    groups = make_groups(data.perturbation, data.observational, N_PERT) if shared else None
    return log_likelihood(CellModel(statistics="cells"), params, data, logits, shift,
                          groups=groups, **weights)


def test_batch_draws_whole_perturbations_and_subsamples_control_cells():
    data, *_ = _problem()
    index = PerturbationBatchIndex.build(data, PerturbationBatches(SIZE))
    assert index.n_control_batch == int(np.ceil(12 * SIZE / N_PERT))  # same fraction
    batch, cell_w, ctx_w = perturbation_batch(jax.random.key(3), data, index)
    counts = np.asarray(jax.ops.segment_sum(cell_w, batch.context, data.n_contexts))
    pert = np.asarray(data.perturbation)
    full = data.cells_per_context()
    obs = np.asarray(data.observational)
    hit = (counts > 0) & ~obs
    drawn = np.unique(pert[hit])
    assert len(drawn) == SIZE
    # every context of a drawn perturbation has all its cells, the others none
    np.testing.assert_allclose(counts[~obs], np.where(np.isin(pert[~obs], drawn), full[~obs], 0))
    np.testing.assert_allclose(counts[obs], full[obs], rtol=1e-6)  # control: n / b each
    np.testing.assert_allclose(np.asarray(ctx_w), np.where(obs, 1.0, N_PERT / SIZE))

    # without replacement: over 200 batches no perturbation is drawn twice (its contexts'
    # counts would double) and each is drawn in a fraction SIZE / N_PERT of them
    @jax.vmap
    def per_context(key):
        batch, cell_w, _ = perturbation_batch(key, data, index)
        return jax.ops.segment_sum(cell_w, batch.context, data.n_contexts)

    counts = np.asarray(per_context(jax.random.split(jax.random.key(4), 200)))[:, ~obs]
    assert np.all((counts == 0) | (counts == full[~obs]))
    drawn = np.stack([np.isin(np.arange(N_PERT), pert[~obs][c > 0]) for c in counts])
    assert np.all(drawn.sum(1) == SIZE)
    # binomial(200, 0.4) per perturbation: 4.3 standard deviations is ±30
    assert np.all(np.abs(drawn.sum(0) - 200 * SIZE / N_PERT) <= 30)


@pytest.mark.parametrize("shared", [False, True])
def test_drawn_perturbations_mixtures_are_exact(shared):
    """Apart from its control cells, a batch's log-likelihood is `N/n` times the full data's
    log-likelihood of the drawn perturbations' contexts, computed here from the full data
    with the other contexts' and the control cells weighted 0 — cell minibatches cannot
    give this, since the mixture over targets is not linear in the sums."""
    with jax.enable_x64(True):
        data, params, logits, shift = _problem()
        data = data.replace(x=jnp.asarray(data.x, jnp.float64))
        index = PerturbationBatchIndex.build(data, PerturbationBatches(SIZE))
        pert, obs = np.asarray(data.perturbation), np.asarray(data.observational)
        for k in range(4):
            batch, cell_w, ctx_w = perturbation_batch(jax.random.key(k), data, index)
            no_control = jnp.where(jnp.asarray(obs)[batch.context], 0.0, cell_w)
            got = _loglik(batch, params, logits, shift, shared, cell_weights=no_control,
                          context_weights=ctx_w)
            counts = np.asarray(jax.ops.segment_sum(cell_w, batch.context, data.n_contexts))
            drawn = np.isin(pert, np.unique(pert[(counts > 0) & ~obs])) & ~obs
            cell_in = drawn[np.asarray(data.context)].astype(np.float64)
            want = _loglik(data, params, logits, shift, shared, cell_weights=cell_in,
                           context_weights=np.where(drawn, N_PERT / SIZE, 1.0))
            np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("shared", [False, True])
def test_batch_loglik_is_unbiased_over_the_draws(shared):
    """The mean over batches equals the full log-likelihood: exactly, by enumerating the
    C(5, 2) = 10 equally likely sets of perturbations, for the perturbed part; within 5
    Monte Carlo standard errors (4000 batches) for the whole, control cells included."""
    with jax.enable_x64(True):
        data, params, logits, shift = _problem(1)
        data = data.replace(x=jnp.asarray(data.x, jnp.float64))
        obs = np.asarray(data.observational)
        pert = np.asarray(data.perturbation)
        full = _loglik(data, params, logits, shift, shared)
        control_only = _loglik(data, params, logits, shift, shared,
                               cell_weights=obs[np.asarray(data.context)].astype(float))
        subsets = list(itertools.combinations(range(N_PERT), SIZE))
        terms = []
        for s in subsets:
            drawn = np.isin(pert, s) & ~obs
            terms.append(_loglik(data, params, logits, shift, shared,
                                 cell_weights=drawn[np.asarray(data.context)].astype(float),
                                 context_weights=np.where(drawn, N_PERT / SIZE, 1.0)))
        np.testing.assert_allclose(np.mean(terms), full - control_only, rtol=1e-10)

        index = PerturbationBatchIndex.build(data, PerturbationBatches(SIZE))

        @jax.vmap
        def draw(key):
            batch, cell_w, ctx_w = perturbation_batch(key, data, index)
            return _loglik(batch, params, logits, shift, shared, cell_weights=cell_w,
                           context_weights=ctx_w)

        values = np.asarray(draw(jax.random.split(jax.random.key(0), 4000)))
        se = values.std() / np.sqrt(values.size)
        assert abs(values.mean() - float(full)) <= 5 * se


def test_bad_perturbation_batches_are_refused():
    data = small_data(n_pert=3)
    with pytest.raises(ValueError, match=r"n_perturbations must be in \[1, 3\]"):
        PerturbationBatchIndex.build(data, PerturbationBatches(4))
    with pytest.raises(ValueError, match=r"control_cells must be an integer >= 1, got 0"):
        PerturbationBatchIndex.build(data, PerturbationBatches(1, control_cells=0))
    with pytest.raises(ValueError, match=r"n_perturbations must be an integer >= 1, got 2.5"):
        PerturbationBatchIndex.build(data, PerturbationBatches(2.5))
    with pytest.raises(TypeError, match=r"n_perturbations must be an integer >= 1, got str"):
        PerturbationBatchIndex.build(data, PerturbationBatches("2"))
    model = gim_ppl.GIM(3, 2)
    with pytest.raises(ValueError, match=r"context_weights must have shape \(7,\)"):
        log_density(model, (data,), {"context_weights": jnp.ones(3)}, random_sites(model))


def test_perturbation_batch_fit_learns_the_targets():
    """As for cell minibatches (tests/inference/test_batching_scale.py): the fit must find the
    training targets better than the raw mean-shift detector on the same data."""
    bench = gim_ppl.datasets.synthetic_hill(0)
    model = gim_ppl.GIM(10, 10)
    with pytest.warns(UserWarning, match="full-batch step reads each context's moments"):
        res = gim_ppl.fit(model, bench.train, steps=3000, key=jax.random.key(0),
                          optimizer=optax.adam(1e-2), progress=False,
                          batch_size=PerturbationBatches(20))
    assert res.message == ""
    fitted, bar = train_target_aurocs(model, res.sites, bench)
    assert fitted > bar
