"""`fit(..., restarts=R)`: restarts in one program, selection on held-out perturbations,
agreement; `GIM.log_likelihood`, the score it selects by."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer.autoguide import AutoDelta, AutoNormal

import gim_ppl
from gim_ppl.inference import restart_agreement
from tests._problems import brute_force_loglik, random_sites, small_data


def test_log_likelihood_is_the_exact_marginal_by_enumeration():
    data = small_data(d=3, p=2, n_pert=2, n_cells=4)
    for marginal in ("exact", "relaxed_mc"):  # always scored with the exact marginal
        model = gim_ppl.GIM(3, 2, marginal=marginal)
        with jax.enable_x64(True):
            sites = {k: jnp.asarray(v, jnp.float64) for k, v in random_sites(model).items()}
            got = model.log_likelihood(sites, data)
        np.testing.assert_allclose(got, brute_force_loglik(model, sites, data), rtol=1e-5)
    draws = {k: jnp.stack([v, v]) for k, v in random_sites(model).items()}
    assert model.log_likelihood(draws, data).shape == (2,)
    with pytest.raises(ValueError, match="needs cells"):
        model.log_likelihood(random_sites(model), data.contexts_only())


@pytest.fixture(scope="module")
def restarted():
    data = small_data(d=3, p=2, n_pert=6, n_cells=8)
    model = gim_ppl.GIM(3, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = gim_ppl.fit(model, data, steps=300, key=jax.random.key(0), restarts=3,
                          validation=0.34, progress=False)
    return model, data, res


def test_restarts_keep_every_restart_and_select_by_held_out_likelihood(restarted):
    model, _, res = restarted
    rep = res.restarts
    assert rep.criterion == "held-out perturbations"
    assert rep.sites["weights"].shape == (3, 3, 3) and rep.losses.shape == (3, 300)
    # distinct initialisations: the restarts end in different places
    assert not np.allclose(rep.sites["weights"][0], rep.sites["weights"][1])
    # the held-out part: two whole perturbations and the control, none of them fitted on
    held = np.asarray(rep.validation.perturbation)
    assert sorted(set(held[held >= 0].tolist())) == [0, 5]
    assert rep.validation.n_cells == 10 + 2 * 2 * 8
    # scores are the held-out log-likelihood per cell, recomputed independently here
    for r in range(3):
        one = {k: v[r] for k, v in rep.sites.items()}
        expected = model.log_likelihood(one, rep.validation) / rep.validation.n_cells
        np.testing.assert_allclose(rep.scores[r], expected, rtol=1e-5)
    assert rep.selected == int(np.argmax(rep.scores))
    for k, v in res.sites.items():
        np.testing.assert_array_equal(v, rep.sites[k][rep.selected])
    np.testing.assert_array_equal(res.losses, rep.losses[rep.selected])


def test_validation_zero_selects_by_training_loss_on_all_data():
    data = small_data(d=3, p=2, n_pert=4, n_cells=6)
    res = gim_ppl.fit(gim_ppl.GIM(3, 2), data, steps=100, key=jax.random.key(1), restarts=2,
                      validation=0, progress=False)
    rep = res.restarts
    assert rep.criterion == "training loss" and rep.validation is None
    assert rep.selected == int(np.argmin(rep.losses[:, -1]))


def test_restarts_take_a_guide_class():
    data = small_data(d=3, p=2, n_pert=4, n_cells=6)
    res = gim_ppl.fit(gim_ppl.GIM(3, 2), data, steps=50, key=jax.random.key(0), restarts=2,
                      guide=AutoNormal, validation=0.25, progress=False)
    assert res.restarts.sites["bias"].shape == (2, 3) and np.isfinite(res.restarts.scores).all()


@pytest.mark.parametrize("options, error, match", [
    (dict(restarts=0), ValueError, "restarts must be an integer >= 1"),
    (dict(restarts=2.5), ValueError, "restarts must be an integer >= 1"),
    (dict(restarts=True), ValueError, "restarts must be an integer >= 1"),
    (dict(restarts=2, validation=1.5), ValueError, r"validation must be a fraction in \(0, 1\)"),
    (dict(restarts=2, validation=-0.1), ValueError, r"validation must be a fraction in \(0, 1\)"),
    (dict(restarts=2, validation="some"), TypeError, "validation must be a fraction"),
    (dict(validation=0.2), ValueError, "validation selects among restarts: give restarts > 1"),
    (dict(restarts=2, validation=0.05), ValueError, "holds out 0 of 4 perturbations"),
])
def test_restart_arguments_are_validated(options, error, match):
    data = small_data(d=3, p=2, n_pert=4)
    kw = dict(steps=5, key=jax.random.key(0), progress=False) | options
    with pytest.raises(error, match=match):
        gim_ppl.fit(gim_ppl.GIM(3, 2), data, **kw)


def test_restarts_need_a_guide_factory_not_an_instance():
    model = gim_ppl.GIM(3, 2)
    with pytest.raises(ValueError, match="pass guide as a class or factory"):
        gim_ppl.fit(model, small_data(n_pert=4), steps=5, key=jax.random.key(0), restarts=2,
                    guide=AutoDelta(model))


def test_one_perturbation_cannot_be_held_out():
    data = small_data(d=3, p=2, n_pert=1)
    with pytest.raises(ValueError, match="need at least one held out and one left"):
        gim_ppl.fit(gim_ppl.GIM(3, 2), data, steps=5, key=jax.random.key(0), restarts=2)


def test_agreement_names_what_disagrees():
    model = gim_ppl.GIM(3, 2)
    data = small_data()
    base = random_sites(model, scale=0.05)
    w_chain = jnp.zeros((3, 3)).at[0, 1].set(1.0)
    w_other = jnp.zeros((3, 3)).at[1, 2].set(1.0)
    same = {k: jnp.stack([v, v, v]) for k, v in base.items()}
    same["weights"] = jnp.stack([w_chain] * 3)
    agree = restart_agreement(model, same, data, selected=0)
    assert agree.same_skeleton == 1.0 and agree.same_graph == 1.0
    assert agree.target_spread == 0.0 and agree.message == ""
    differ = dict(same, weights=jnp.stack([w_chain, w_other, w_other]))
    agree = restart_agreement(model, differ, data, selected=0)
    assert agree.same_skeleton == pytest.approx(1 / 3)
    assert "share the selected graph's skeleton" in agree.message
    reversed_ = dict(same, weights=jnp.stack([w_chain, w_chain.T, w_chain.T]))
    agree = restart_agreement(model, reversed_, data, selected=0)
    assert agree.same_skeleton == 1.0 and agree.same_graph == pytest.approx(1 / 3)
    assert "orient" in agree.message
    # a diverged restart is left out
    agree = restart_agreement(model, differ, data, selected=0, alive=[True, False, False])
    assert agree.same_skeleton == 1.0 and agree.message == ""


def test_plain_svi_selection_snippet_of_the_docs_runs():
    """docs/reliability.md's plain-NumPyro selection snippet, verbatim but for the steps."""
    import re

    from tests import ROOT

    text = (ROOT / "docs" / "reliability.md").read_text()
    code = re.search(r"```python\n(import jax, numpy.*?)```", text, re.S).group(1)
    assert "30_000" in code
    namespace = {}
    exec(code.replace("30_000", "30"), namespace)
    report, sites = namespace["report"], namespace["sites"]
    assert sites["weights"].shape == (4, 10, 10) and report.scores.shape == (4,)
    assert report.selected == int(np.argmax(report.scores))
    assert report.criterion == "held-out perturbations"
