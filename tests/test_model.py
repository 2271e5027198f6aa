import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import optax
import pytest
from numpyro import handlers
from numpyro.infer import SVI, Predictive, Trace_ELBO
from numpyro.infer.autoguide import AutoDelta, AutoLaplaceApproximation, AutoNormal
from numpyro.optim import optax_to_numpyro

import gim_ppl
from tests._problems import small_data


def chain_truth(kind="shift"):
    """3-variable chain 0 → 1 → 2; one-hot features for 2 perturbations; known Hill curves."""
    w = np.zeros((3, 3))
    w[0, 1], w[1, 2] = 1.2, -0.8
    bias, sigma = np.array([0.5, -0.2, 0.1]), np.array([0.6, 0.8, 0.5])
    targets = np.array([[0, 1, 0], [1, 0, 1]], float)
    emax = np.array([[0.0, 2.0, 0.0], [-1.5, 0.0, 1.0]])
    ec50, hill = np.array([[1.0, 0.8, 1.0], [1.3, 1.0, 0.5]]), np.array([[1.0, 2.0, 1.0],
                                                                         [3.0, 1.0, 1.5]])
    model = gim_ppl.GIM(3, 2, intervention_effect=kind)
    sites = {s: jnp.zeros(shape) for s, shape in model.site_shapes.items()}
    sites.update(weights=jnp.asarray(w), bias=jnp.asarray(bias), noise_scale=jnp.asarray(sigma),
                 target_weights=jnp.asarray(30.0 * (2 * targets - 1)),
                 emax_weights=jnp.asarray(emax), log_ec50_weights=jnp.asarray(np.log(ec50)),
                 log_hill_weights=jnp.asarray(np.log(hill)))
    contexts = gim_ppl.PerturbationData.from_arrays(
        features=np.array([[0, 0], [1, 0], [1, 0], [0, 1]], float),
        dose=np.array([0.0, 0.5, 2.0, 1.0]), observational=np.array([True, False, False, False]),
        n_vars=3)
    return model, sites, contexts, (w, bias, sigma, targets, emax, ec50, hill)


def analytic_means(contexts, truth, kind):
    w, bias, _sigma, targets, emax, ec50, hill = truth
    feats, dose = np.asarray(contexts.features), np.asarray(contexts.dose)
    out = []
    for k in range(contexts.n_contexts):
        if not feats[k].any():
            out.append(bias @ np.linalg.inv(np.eye(3) - w))
            continue
        i = int(np.argmax(feats[k]))
        s = emax[i] * dose[k] ** hill[i] / (ec50[i] ** hill[i] + dose[k] ** hill[i])
        if kind == "shift":
            out.append((bias + targets[i] * s) @ np.linalg.inv(np.eye(3) - w))
        else:
            w_cut = w * (1 - targets[i])[None, :]
            b = np.where(targets[i] > 0, s, bias)
            out.append(b @ np.linalg.inv(np.eye(3) - w_cut))
    return np.array(out)


@pytest.mark.parametrize("kind", ["shift", "replace"])
@pytest.mark.parametrize("mode", ["mixture", "threshold"])
def test_prediction_with_true_parameters_reproduces_interventional_means(kind, mode):
    model, sites, contexts, truth = chain_truth(kind)
    n = 4000
    pred = model.predict(sites, contexts, key=jax.random.key(0), n_cells=n, mode=mode)
    assert pred.x.shape == (4 * n, 3)
    x = np.asarray(pred.x).reshape(4, n, 3)
    expected = analytic_means(contexts, truth, kind)
    se = x.std(axis=1) / np.sqrt(n)
    z = (x.mean(axis=1) - expected) / se
    # 12 z-scores; |z| > 4.5 has probability ~1e-5 each under the truth
    assert np.all(np.abs(z) < 4.5), z


def test_predicted_means_per_draw_match_each_draws_interventional_means():
    """Two draws that differ in the intercepts: each row of `predicted_means` is the
    analytic interventional mean of its own draw."""
    model, sites, contexts, truth = chain_truth()
    w, bias, sigma, targets, emax, ec50, hill = truth
    shifted = (w, bias + np.array([1.0, 0.0, -2.0]), sigma, targets, emax, ec50, hill)
    draws = {k: jnp.stack([v, v]) for k, v in sites.items()}
    draws["bias"] = jnp.stack([jnp.asarray(bias), jnp.asarray(shifted[1])])
    n = 4000
    means = model.predicted_means(draws, contexts, key=jax.random.key(3), n_cells=n)
    assert means.shape == (2, 4, 3)
    for row, t in zip(means, (truth, shifted), strict=True):
        # noise sd <= 1 through the chain: sd of a mean of n cells < 2 / sqrt(n) = 0.032
        np.testing.assert_allclose(row, analytic_means(contexts, t, "shift"), atol=0.13)
    point = model.predicted_means(sites, contexts, key=jax.random.key(3), n_cells=n)
    np.testing.assert_allclose(point, analytic_means(contexts, truth, "shift"), atol=0.13)


def test_mixture_prediction_averages_over_uncertain_targets():
    model, sites, contexts, truth = chain_truth()
    w, bias, _sigma, _targets, emax, ec50, hill = truth
    sites = {**sites, "target_weights": jnp.zeros((2, 3)), "target_bias": jnp.full((3,), 0.4)}
    pi = 1 / (1 + np.exp(-0.4))
    n = 6000
    pred = model.predict(sites, contexts, key=jax.random.key(3), n_cells=n)
    x = np.asarray(pred.x).reshape(4, n, 3)
    k, i, c = 2, 0, 2.0  # context 2: perturbation 0 at dose 2
    s = emax[i] * c ** hill[i] / (ec50[i] ** hill[i] + c ** hill[i])
    expected = (bias + pi * s) @ np.linalg.inv(np.eye(3) - w)
    z = (x[k].mean(0) - expected) / (x[k].std(0) / np.sqrt(n))
    assert np.all(np.abs(z) < 4.5), z


def test_predict_is_deterministic_in_key_and_validates():
    model, sites, contexts, _ = chain_truth()
    a = model.predict(sites, contexts, key=jax.random.key(7), n_cells=10)
    b = model.predict(sites, contexts, key=jax.random.key(7), n_cells=10)
    c = model.predict(sites, contexts, key=jax.random.key(8), n_cells=10)
    np.testing.assert_array_equal(a.x, b.x)
    assert not np.allclose(a.x, c.x)
    with pytest.raises(ValueError, match="lacks the model's sample sites"):
        model.predict({"bias": sites["bias"]}, contexts, key=jax.random.key(0), n_cells=5)
    with pytest.raises(ValueError, match="mode must be"):
        model.predict(sites, contexts, key=jax.random.key(0), n_cells=5, mode="mean")


def test_predict_with_posterior_draws_spreads_cells_over_draws():
    model, sites, contexts, _ = chain_truth()
    draws = {k: jnp.stack([v, v]) for k, v in sites.items()}
    draws["bias"] = draws["bias"].at[1].add(10.0)  # second draw: far-away means
    pred = model.predict(draws, contexts, key=jax.random.key(0), n_cells=400)
    x0 = np.asarray(pred.x)[:400, 0]  # observational context
    assert 0.35 < np.mean(x0 > 5.0) < 0.65


def test_wrong_dims_for_the_model_are_rejected():
    data = small_data(d=3, p=2)
    with pytest.raises(ValueError, match="data has 3 variables but the model was built with "
                                         "n_vars=4"):
        handlers.seed(gim_ppl.GIM(4, 2), 0)(data)
    with pytest.raises(ValueError, match=r"features has 2 columns .* n_features=5"):
        handlers.seed(gim_ppl.GIM(3, 5), 0)(data)
    with pytest.raises(TypeError, match="PerturbationData"):
        handlers.seed(gim_ppl.GIM(3, 2), 0)(np.zeros((3, 3)))
    model = gim_ppl.GIM(3, 2)
    bad = {s: jnp.zeros(shape) for s, shape in model.site_shapes.items()}
    bad["weights"] = jnp.zeros((2, 2))
    with pytest.raises(ValueError, match=r"sites\['weights'\] has shape \(2, 2\)"):
        model.target_probabilities(bad, data)


def test_priors_are_replaceable_and_checked():
    priors = gim_ppl.Priors(edge_weight=dist.Normal(0.0, 0.3), log_hill_bias=dist.Normal(1.0, 0.1))
    model = gim_ppl.GIM(3, 2, priors=priors)
    tr = handlers.trace(handlers.seed(model, 0)).get_trace(small_data())
    w, lh = tr["weights"]["value"], tr["log_hill_bias"]["value"]
    np.testing.assert_allclose(tr["weights"]["fn"].log_prob(w),
                               dist.Normal(0.0, 0.3).log_prob(w).sum(), rtol=1e-6)
    np.testing.assert_allclose(tr["log_hill_bias"]["fn"].log_prob(lh),
                               dist.Normal(1.0, 0.1).log_prob(lh).sum(), rtol=1e-6)
    with pytest.raises(ValueError, match="noise_scale must have positive support"):
        gim_ppl.Priors(noise_scale=dist.Normal(0.0, 1.0))
    with pytest.raises(TypeError, match="must be a numpyro Distribution"):
        gim_ppl.Priors(bias=1.0)
    per_edge = gim_ppl.Priors(edge_weight=dist.Laplace(jnp.zeros((3, 3)), 0.2))
    gim_ppl.GIM(3, 2, priors=per_edge)
    with pytest.raises(ValueError, match="cannot broadcast"):
        gim_ppl.GIM(3, 2, priors=gim_ppl.Priors(edge_weight=dist.Laplace(jnp.zeros(4), 0.2)))


def test_prior_predictive_with_plain_numpyro():
    model = gim_ppl.GIM(3, 2)
    contexts = small_data().contexts_only()
    ctx = jnp.repeat(jnp.arange(contexts.n_contexts), 5)
    gen = contexts.replace(context=ctx)
    out = Predictive(model, num_samples=4)(jax.random.key(0), gen)
    assert out["x"].shape == (4, ctx.size, 3)
    assert out["targets"].shape == (4, contexts.n_contexts, 3)
    assert np.all(np.isfinite(out["x"]))
    sampled = handlers.trace(handlers.seed(model, 1)).get_trace(gen)
    assert "targets" in sampled and "cells" not in sampled
    # observational contexts never get targets: with the `targets` site forced to all ones
    # or all zeros (same parameters and noise), their cells are identical, while those of
    # the perturbed contexts move (the site holds the unmasked draw, so it cannot say this).
    # A replace intervention, because a shift at dose 0 is 0 whether targeted or not.
    # (Kills mutant `observational_cells_get_targets` of dev/mutants.py.)
    model = gim_ppl.GIM(3, 2, intervention_effect="replace")
    sampled = handlers.trace(handlers.seed(model, 1)).get_trace(gen)
    obs_cells = np.asarray(contexts.observational)[np.asarray(ctx)]
    fixed = {k: v for k, v in sampled.items() if v["type"] == "sample" and k != "targets"}
    fixed = {k: v["value"] for k, v in fixed.items()}

    def cells(value):
        forced = {**fixed, "targets": jnp.full((contexts.n_contexts, 3), value)}
        tr = handlers.trace(handlers.condition(handlers.seed(model, 1), forced)).get_trace(gen)
        return np.asarray(tr["x"]["value"])

    on, off = cells(1.0), cells(0.0)
    np.testing.assert_array_equal(on[obs_cells], off[obs_cells])
    assert np.abs(on[~obs_cells] - off[~obs_cells]).max() > 1e-3


def test_with_cells_the_model_has_only_continuous_sites():
    tr = handlers.trace(handlers.seed(gim_ppl.GIM(3, 2), 0)).get_trace(small_data())
    latent = [n for n, s in tr.items() if s["type"] == "sample" and not s["is_observed"]]
    assert "targets" not in latent
    assert all(tr[n]["fn"].support.is_discrete is False for n in latent)


def test_relaxed_mc_needs_a_key():
    with pytest.raises(RuntimeError, match="needs a PRNG key"):
        handlers.substitute(gim_ppl.GIM(3, 2, marginal="relaxed_mc"),
                            {s: jnp.zeros(sh) for s, sh in
                             gim_ppl.GIM(3, 2).site_shapes.items()})(small_data())


def test_design_snippet_runs_with_autodelta_and_is_deterministic():
    bench = gim_ppl.datasets.synthetic_hill(0, n_train_perturbations=8, n_test_perturbations=4,
                                            n_observational=100, n_cells=20, n_test_cells=20)
    model = gim_ppl.GIM(n_vars=10, n_features=10)
    results = []
    for _ in range(2):
        guide = AutoDelta(model)
        svi = SVI(model, guide, optax_to_numpyro(optax.adam(1e-3)), Trace_ELBO())
        result = svi.run(jax.random.key(0), 300, bench.train, progress_bar=False)
        pred = model.predict(guide.median(result.params), bench.full_ood,
                             key=jax.random.key(1), n_cells=20)
        results.append((result, pred))
    (r1, p1), (r2, p2) = results
    assert r1.losses[-1] < r1.losses[0]
    for k in r1.params:
        np.testing.assert_array_equal(r1.params[k], r2.params[k])
    np.testing.assert_array_equal(p1.x, p2.x)
    assert p1.x.shape == (bench.full_ood.n_contexts * 20, 10)


@pytest.mark.parametrize("guide_cls", [AutoNormal, AutoLaplaceApproximation])
def test_other_autoguides_fit_the_same_model(guide_cls):
    data = small_data(d=3, p=2)
    model = gim_ppl.GIM(3, 2)
    res = gim_ppl.fit(model, data, steps=600, key=jax.random.key(0), optimizer=optax.adam(1e-2),
                      guide=guide_cls(model), progress=False)
    assert res.message == "" and res.losses[-1] < res.losses[0]
    draws = Predictive(res.guide, params=res.svi_result.params, num_samples=20)(
        jax.random.key(1), data)
    draws = {k: v for k, v in draws.items() if k in model.site_shapes}
    pred = model.predict(draws, data, key=jax.random.key(2), n_cells=10)
    assert np.all(np.isfinite(pred.x))
    probs = model.target_probabilities(draws, data)  # read-offs keep the draw axis
    assert probs.shape == (20, data.n_contexts, 3)
    assert np.all((probs >= 0) & (probs <= 1))


# -- partial pooling: per-perturbation offsets --------------------------------------------

def _pooled_setup():
    bench = gim_ppl.datasets.synthetic_hill(1, n_train_perturbations=5, n_test_perturbations=2,
                                            n_cells=4, n_observational=8)
    names = bench.train.perturbation_names
    model = gim_ppl.GIM(10, 10, pooled=names[:5])
    rng = np.random.default_rng(0)
    sites = {s: jnp.asarray(rng.normal(0, 0.3, shape)) for s, shape in model.site_shapes.items()}
    sites["noise_scale"] = jnp.ones(10)
    return bench, model, sites


def test_offsets_apply_to_pooled_perturbations_by_name_only():
    bench, model, sites = _pooled_setup()
    plain = gim_ppl.GIM(10, 10)
    base = {s: v for s, v in sites.items() if "offset" not in s}
    for data in (bench.train, bench.full_ood):
        with_offsets = model.intervention_outputs(sites, data)
        without = plain.intervention_outputs(base, data)
        pert = np.asarray(data.perturbation)
        for h, head in enumerate(("target", "emax", "log_ec50", "log_hill")):
            offset = np.asarray(sites[f"{head}_offset"])
            want = np.asarray(without[h]) + np.where((pert >= 0)[:, None] & (pert < 5)[:, None],
                                                     offset[np.clip(pert, 0, 4)], 0.0)
            np.testing.assert_allclose(with_offsets[h], want, rtol=1e-5, atol=1e-6)
    # new perturbations (full OOD) get the feature map alone
    np.testing.assert_allclose(model.hill_parameters(sites, bench.full_ood)["ec50"],
                               plain.hill_parameters(base, bench.full_ood)["ec50"], rtol=1e-6)
    # a data set that lists the same perturbations in another order gets the same offsets
    order = list(reversed(range(len(bench.train.perturbation_names))))
    renamed = bench.train.replace(
        perturbation_names=tuple(bench.train.perturbation_names[i] for i in order),
        perturbation=jnp.asarray([order.index(p) if p >= 0 else -1
                                  for p in np.asarray(bench.train.perturbation)]))
    np.testing.assert_allclose(model.target_probabilities(sites, renamed),
                               model.target_probabilities(sites, bench.train), rtol=1e-6)


def test_pooled_model_fits_and_reads_with_offsets():
    bench, model, _ = _pooled_setup()
    res = gim_ppl.fit(model, bench.train, steps=50, key=jax.random.key(0), progress=False)
    assert res.sites["emax_offset"].shape == (5, 10)
    idata = gim_ppl.to_arviz(model, res.sites, bench.train)
    assert idata.posterior["emax_offset"].dims == ("chain", "draw", "pooled", "var")
    assert list(idata.posterior["pooled"].values) == list(model.pooled)
    assert "emax_offset" not in gim_ppl.GIM(10, 10).site_shapes


@pytest.mark.parametrize("pooled", [(), ("a", "a")])
def test_pooled_names_are_checked(pooled):
    with pytest.raises(ValueError, match="pooled"):
        gim_ppl.GIM(3, 2, pooled=pooled)


def test_edge_mask_zeroes_forbidden_edges_everywhere():
    """Weights outside `edge_mask` have no effect on the log joint (beyond their prior),
    read as zero, and a fit leaves them out of the graph; bad masks are named."""
    from numpyro.infer.util import log_density

    from tests._problems import random_sites

    data = small_data(d=3)
    mask = np.array([[0, 1, 1], [0, 0, 1], [0, 0, 0]], bool)  # order 0 < 1 < 2
    model = gim_ppl.GIM(3, data.n_features, edge_mask=mask)
    sites = random_sites(model, seed=1)
    moved = dict(sites, weights=sites["weights"] + 0.7 * ~mask)  # only forbidden entries
    prior = model.site_priors["weights"]

    def joint_minus_prior(s):
        return float(log_density(model, (data,), {}, s)[0] - prior.log_prob(s["weights"]))

    np.testing.assert_allclose(joint_minus_prior(moved), joint_minus_prior(sites), rtol=1e-6)
    w = model.edge_weights(moved)
    assert np.all(w[~mask] == 0.0) and np.all(w[mask] == np.asarray(sites["weights"])[mask])
    # the acyclicity factor vanishes on a DAG mask, whatever the weights
    trace = handlers.trace(handlers.substitute(handlers.seed(model, 0), moved)).get_trace(data)
    assert float(trace["acyclicity"]["fn"].log_prob(0.0)) == 0.0
    fitted = gim_ppl.fit(model, data, key=jax.random.key(0), steps=300)
    assert not model.graph(fitted.sites)[~mask].any()

    with pytest.raises(ValueError, match="edge_mask must have shape"):
        gim_ppl.GIM(3, 2, edge_mask=np.ones((3, 2), bool))
    with pytest.raises(ValueError, match="edge_mask must be a bool"):
        gim_ppl.GIM(3, 2, edge_mask=np.full((3, 3), 0.5))


def _two_var_screen():
    """d = 2, no edges, unit noise; drug_0 (feature 1) measured at doses 1 and 3 with few
    cells, so the evidence that it targets x0 is moderate; π = σ(−0.5) for every drug."""
    model = gim_ppl.GIM(2, 1)
    sites = {s: jnp.zeros(shape) for s, shape in model.site_shapes.items()}
    sites.update(noise_scale=jnp.ones(2), target_bias=jnp.full((2,), -0.5),
                 emax_bias=jnp.asarray([0.6, 0.0]))  # Hill: 0.6 c / (1 + c) on x0
    rng = np.random.default_rng(0)
    ctx = np.repeat([0, 1, 2], [30, 3, 3])
    x = rng.normal(size=(ctx.size, 2))
    observed = gim_ppl.PerturbationData.from_arrays(
        x, ctx, features=[[0.0], [1.0], [1.0]], dose=[0.0, 1.0, 3.0],
        observational=[True, False, False], perturbation=[-1, 0, 0],
        perturbation_names=["drug_0", "drug_1"])
    return model, sites, observed


def test_predict_given_observed_cells_uses_the_perturbations_posterior_targets():
    from scipy.special import expit
    from scipy.stats import norm

    model, sites, observed = _two_var_screen()
    x, ctx = np.asarray(observed.x, float), np.asarray(observed.context)
    # independent truth: one target vector for drug_0 given both its contexts
    evidence = 0.0
    for k, c in ((1, 1.0), (2, 3.0)):
        s = 0.6 * c / (1 + c)
        evidence += np.sum(norm.logpdf(x[ctx == k, 0], s) - norm.logpdf(x[ctx == k, 0], 0.0))
    posterior = expit(-0.5 + evidence)
    assert 0.1 < posterior < 0.9 and abs(posterior - expit(-0.5)) > 0.05  # a test with power
    new = gim_ppl.PerturbationData.from_arrays(
        features=[[1.0], [1.0]], dose=[2.0, 2.0], observational=[False, False],
        perturbation=[0, 1], perturbation_names=["drug_0", "drug_1"], n_vars=2)
    n, s_new = 40_000, 0.6 * 2.0 / 3.0
    given = model.predict(sites, new, key=jax.random.key(1), n_cells=n, observed=observed)
    alone = model.predict(sites, new, key=jax.random.key(1), n_cells=n)
    mean_given = np.asarray(given.x).reshape(2, n, 2)[:, :, 0].mean(1)
    mean_alone = np.asarray(alone.x).reshape(2, n, 2)[:, :, 0].mean(1)
    tol = 4.5 * np.sqrt(1 + s_new**2 / 4) / np.sqrt(n)  # sd of a mean of n mixture cells
    assert abs(mean_given[0] - posterior * s_new) < tol  # known drug: its posterior
    assert abs(mean_given[1] - expit(-0.5) * s_new) < tol  # drug_1 unmeasured: π(z)
    assert abs(mean_alone[0] - expit(-0.5) * s_new) < tol  # without observed: π(z)
    threshold = model.predict(sites, new, key=jax.random.key(1), n_cells=3, mode="threshold",
                              observed=observed)
    hit = np.asarray(threshold.x).reshape(2, 3, 2)  # noise aside, x0 = s_new iff P > 0.5
    assert (posterior > 0.5) == (abs(hit[0, :, 0].mean() - s_new) < abs(hit[1, :, 0].mean()
                                                                          - s_new))
    with pytest.raises(ValueError, match="observed must be a PerturbationData with cells"):
        model.predict(sites, new, key=jax.random.key(1), n_cells=3,
                      observed=observed.contexts_only())
    with pytest.raises(ValueError, match="data has 3 variables but the model was built"):
        wide = gim_ppl.PerturbationData.from_arrays(
            np.zeros((4, 3)), [0, 0, 1, 1], features=[[0.0], [1.0]], dose=[0.0, 1.0],
            observational=[True, False])
        model.predict(sites, new, key=jax.random.key(1), n_cells=3, observed=wide)


def test_predict_projects_a_cyclic_w_onto_its_dag_and_says_so():
    model, sites, contexts, _ = chain_truth()
    cyclic = {**sites, "weights": sites["weights"].at[2, 0].set(1.5)}  # 0 → 1 → 2 → 0
    from gim_ppl.core.graph import cycle_gain
    assert cycle_gain(cyclic["weights"]) > 1.0
    with pytest.warns(UserWarning, match=r"not acyclic .*\(1 edges dropped\)"):
        pred = model.predict(cyclic, contexts, key=jax.random.key(4), n_cells=50)
    # the weakest edge of the cycle (1 → 2, |−0.8|) is dropped; the rest is kept
    dag = {**cyclic, "weights": cyclic["weights"].at[1, 2].set(0.0)}
    np.testing.assert_array_equal(pred.x, model.predict(dag, contexts, key=jax.random.key(4),
                                                        n_cells=50).x)
    assert np.isfinite(np.asarray(pred.x)).all()


@pytest.mark.parametrize("p", [1, 4, 25])
def test_hill_head_weight_priors_are_per_unit_of_output(p):
    # Site.fan_in: the prior of each Hill-head weight is the Priors field divided by √p, so
    # the head's output varies across perturbations with the field's sd whatever p is
    priors = gim_ppl.Priors(emax_weight=dist.Laplace(0.0, 2.0),
                            log_hill_weight=dist.Uniform(-1.0, 1.0))
    model = gim_ppl.GIM(3, p, priors=priors)
    key = jax.random.key(0)
    for site, base in (("emax_weights", dist.Laplace(0.0, 2.0 / np.sqrt(p))),
                       ("target_weights", dist.Normal(0.0, 1.0))):  # the target head: as given
        value = jnp.linspace(-3.0, 3.0, 3 * p).reshape(p, 3)
        np.testing.assert_allclose(model.site_priors[site].log_prob(value),
                                   base.log_prob(value).sum(), rtol=1e-5)
    draws = np.asarray(model.site_priors["log_hill_weights"].sample(key, (2000,)))
    assert np.abs(draws).max() <= 1.0 / np.sqrt(p) + 1e-6  # Uniform(-1, 1) / √p
    assert np.abs(draws).max() > 0.9 / np.sqrt(p)
    # the output of the head, z @ w for a unit-norm-per-feature z, has the field's sd
    out = np.asarray(model.site_priors["emax_weights"].sample(key, (4000,))).sum(1)
    assert abs(out.std() - 2.0 * np.sqrt(2.0)) < 0.15  # Laplace(0, b) has sd b√2


def test_predict_given_observed_reads_the_weights_the_scm_uses():
    # a self-loop and an edge outside edge_mask are not part of the SCM: the posterior
    # targets behind `observed` and the cycle check must ignore them as the model does
    model, sites, observed = _two_var_screen()
    masked = gim_ppl.GIM(2, 1, edge_mask=np.array([[False, False], [False, False]]))
    new = gim_ppl.PerturbationData.from_arrays(
        features=[[1.0]], dose=[2.0], observational=[False], perturbation=[0],
        perturbation_names=["drug_0", "drug_1"], n_vars=2)
    noisy = {**sites, "weights": sites["weights"].at[0, 0].set(5.0).at[1, 0].set(3.0)
             .at[0, 1].set(3.0)}  # a 2-cycle of gain 3 outside the mask, a self-loop
    clean = masked.predict(sites, new, key=jax.random.key(0), n_cells=50, observed=observed)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no cycle warning: the mask removes the cycle
        got = masked.predict(noisy, new, key=jax.random.key(0), n_cells=50, observed=observed)
    np.testing.assert_array_equal(got.x, clean.x)
    diagonal_only = {**sites, "weights": sites["weights"].at[0, 0].set(5.0)}
    np.testing.assert_array_equal(
        model.predict(diagonal_only, new, key=jax.random.key(0), n_cells=50,
                      observed=observed).x,
        model.predict(sites, new, key=jax.random.key(0), n_cells=50, observed=observed).x)
