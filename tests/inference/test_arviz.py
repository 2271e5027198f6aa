import logging
import warnings

import matplotlib

matplotlib.use("Agg")

import arviz as az
import matplotlib.pyplot as plt
import numpy as np
import pytest

import gim_ppl
from gim_ppl.inference import arviz as arviz_module
from gim_ppl.inference.fit import FitResult
from gim_ppl.inference.restarts import Agreement, Restarts
from tests._problems import random_sites, small_data


def _problem():
    """3 drugs × 2 doses + a control, with gene names; sites with 6 draws."""
    rng = np.random.default_rng(0)
    genes = ["GENE1", "GENE2", "GENE3"]
    drugs = ["drug_A", "drug_B", "drug_C"]
    z = rng.normal(size=(3, 2))
    pid = np.array([-1, 0, 0, 1, 1, 2, 2])
    obs = pid < 0
    ctx = np.repeat(np.arange(7), 5)
    data = gim_ppl.PerturbationData.from_arrays(
        rng.normal(size=(35, 3)), ctx, features=np.where(obs[:, None], 0.0, z[pid]),
        dose=[0, 1, 2, 1, 2, 1, 2], observational=obs, perturbation=pid, var_names=genes,
        perturbation_names=drugs, feature_names=["logP", "weight"],
        context_names=["control", *(f"{d}@{c}" for d in drugs for c in (1, 2))],
    )
    model = gim_ppl.GIM(3, 2)
    draws = {k: np.stack([np.asarray(random_sites(model, seed=s)[k]) for s in range(6)])
             for k in model.site_shapes}
    return model, draws, data


def test_per_perturbation_dims_coords_and_summary_labels():
    model, draws, data = _problem()
    idata = gim_ppl.to_arviz(model, draws, data, per="perturbation")
    post = idata.posterior
    assert list(post["emax"].dims) == ["chain", "draw", "perturbation", "var"]
    assert list(post.coords["perturbation"].values) == ["drug_A", "drug_B", "drug_C"]
    assert list(post.coords["var"].values) == ["GENE1", "GENE2", "GENE3"]
    assert list(post["target_weights"].dims)[2:] == ["feature", "var"]
    assert list(post.coords["feature"].values) == ["logP", "weight"]
    # values: the per-context quantities of each drug's first context
    hill = model.hill_parameters(draws, data.subset([1, 3, 5]))
    np.testing.assert_allclose(post["ec50"].values[0], hill["ec50"], rtol=1e-6)
    np.testing.assert_allclose(post["emax"].sel(perturbation="drug_B", var="GENE3").values[0],
                               hill["emax"][:, 1, 2], rtol=1e-6)
    prob = model.target_probabilities({k: v[2] for k, v in draws.items()}, data)
    np.testing.assert_allclose(post["target_prob"].values[0, 2], prob[[1, 3, 5]], rtol=1e-5)
    summary = az.summary(idata, var_names=["emax", "hill"], kind="stats")
    assert "emax[drug_A, GENE3]" in summary.index
    assert "hill[drug_C, GENE1]" in summary.index
    assert len(summary) == 2 * 3 * 3


def test_per_context_is_the_default_and_forest_labels_are_readable():
    model, draws, data = _problem()
    idata = gim_ppl.to_arviz(model, draws, data)
    assert list(idata.posterior["emax"].dims)[2:] == ["context", "var"]
    assert "emax[drug_B@2, GENE1]" in az.summary(idata, var_names=["emax"], kind="stats").index
    by_drug = gim_ppl.to_arviz(model, draws, data, per="perturbation")
    axes = az.plot_forest(by_drug, var_names=["hill"], coords={"var": ["GENE2", "GENE3"]},
                          combined=True)
    labels = [t.get_text() for t in axes[0].get_yticklabels()]
    assert len(labels) == 6 and "hill[drug_A, GENE2]" in labels
    assert "[drug_C, GENE3]" in labels
    plt.close("all")


def test_per_perturbation_rejects_mixed_features_and_unknown_per():
    model, draws, data = _problem()
    features = np.asarray(data.features).copy()
    features[2] += 1.0  # drug_A's second dose gets other features
    mixed = gim_ppl.PerturbationData.from_arrays(
        data.x, data.context, features=features, dose=data.dose,
        observational=data.observational, perturbation=data.perturbation,
        var_names=data.var_names, perturbation_names=data.perturbation_names,
    )
    with pytest.raises(ValueError, match="'drug_A' has contexts with different features"):
        gim_ppl.to_arviz(model, draws, mixed, per="perturbation")
    with pytest.raises(ValueError, match="per must be"):
        gim_ppl.to_arviz(model, draws, data, per="drug")


class _ArvizLog(logging.Handler):
    """Collects what ArviZ logs (its `_log` is no child of the root logger, and it drops a
    message it has logged before in this process, so the cache is emptied first)."""

    def __init__(self, monkeypatch):
        super().__init__()
        self.messages = []
        monkeypatch.setattr(az._log, "cache", [])
        az._log.addHandler(self)

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def arviz_log(monkeypatch):
    handler = _ArvizLog(monkeypatch)
    yield handler.messages
    az._log.removeHandler(handler)


def test_posterior_target_is_posterior_targets_per_context_and_per_perturbation(monkeypatch):
    model, draws, data = _problem()
    # blocks of 4 draws: the 6 draws take two calls of posterior_targets
    monkeypatch.setattr(arviz_module, "POSTERIOR_TARGET_BLOCK", 4)
    post = gim_ppl.to_arviz(model, draws, data).posterior
    assert post["posterior_target"].dims == ("chain", "draw", "context", "var")
    np.testing.assert_array_equal(post["posterior_target"].values[0],
                                  model.posterior_targets(draws, data))
    assert np.all(post["posterior_target"].values[0, :, 0] == 0)  # the control context
    by_pert = gim_ppl.to_arviz(model, draws, data, per="perturbation").posterior
    assert by_pert["posterior_target"].dims == ("chain", "draw", "perturbation", "var")
    # one indicator per drug given the cells of both its doses (contexts 1-2, 3-4, 5-6)
    whole = model.posterior_targets(draws, data, per="perturbation")
    np.testing.assert_array_equal(by_pert["posterior_target"].values[0], whole[:, [1, 3, 5]])
    np.testing.assert_array_equal(whole[:, [1, 3, 5]], whole[:, [2, 4, 6]])
    # P(I = 1 | cells) is not the prior π(z)
    assert not np.allclose(post["posterior_target"].values, post["target_prob"].values)
    # without cells there is no evidence: no posterior_target
    assert "posterior_target" not in gim_ppl.to_arviz(model, draws,
                                                      data.contexts_only()).posterior


def test_point_exports_as_one_chain_one_draw_without_warnings(arviz_log):
    model, draws, data = _problem()
    point = {k: v[0] for k, v in draws.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        idata = gim_ppl.to_arviz(model, point, data)
        # the reading the note gives: the values, no spread, no warnings
        table = az.summary(idata, kind="stats", stat_focus="median", round_to="none")
    assert arviz_log == []
    post = idata.posterior
    assert post.attrs["point_estimate"] == arviz_module.POINT_NOTE
    assert "draws" not in post.attrs
    assert post["weights"].shape == (1, 1, 3, 3)
    assert post["posterior_target"].shape == (1, 1, data.n_contexts, 3)
    np.testing.assert_array_equal(post["posterior_target"].values[0, 0],
                                  model.posterior_targets(point, data))
    assert table.loc["weights[GENE1, GENE2]", "median"] == pytest.approx(
        float(point["weights"][0, 1]), rel=1e-6)
    assert (table["mad"] == 0).all()


def test_draws_export_as_one_chain_without_warnings(arviz_log):
    model, draws, data = _problem()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        idata = gim_ppl.to_arviz(model, draws, data)
        table = az.summary(idata, kind="stats", round_to="none")
    assert arviz_log == []  # e.g. no "More chains than draws": the draws are on `draw`
    post = idata.posterior
    assert (post.sizes["chain"], post.sizes["draw"]) == (1, 6)
    assert post["emax"].shape == (1, 6, data.n_contexts, 3)
    assert post.attrs["draws"] == arviz_module.DRAWS_NOTE
    assert "point_estimate" not in post.attrs
    np.testing.assert_allclose(table.loc["noise_scale[GENE2]", "mean"],
                               np.mean(draws["noise_scale"][:, 1]), rtol=1e-5)


def _fit_result(model, restart_sites=None, selected=0):
    """A `FitResult` as `fit` returns it (without running a fit: `to_arviz` reads `sites`
    and `restarts`)."""
    restarts = None
    if restart_sites is not None:
        n = next(iter(restart_sites.values())).shape[0]
        restarts = Restarts(restart_sites, np.zeros((n, 1)), np.zeros(n), selected,
                            "training loss", None, Agreement(1.0, 1.0, 0.0, ""))
        sites = {k: v[selected] for k, v in restart_sites.items()}
    else:
        sites = random_sites(model, seed=7)
    return FitResult(sites, np.zeros(1), None, None, "", 0.0, restarts)


def test_fit_result_exports_its_point_or_its_restarts_as_chains(arviz_log):
    data = small_data()
    model = gim_ppl.GIM(3, 2)
    one = _fit_result(model)
    restart_sites = {k: np.stack([np.asarray(random_sites(model, seed=s)[k]) for s in range(3)])
                     for k in model.site_shapes}
    three = _fit_result(model, restart_sites, selected=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        point = gim_ppl.to_arviz(model, one, data).posterior
        chains = gim_ppl.to_arviz(model, three, data, per="perturbation").posterior
    assert arviz_log == []
    assert point.attrs["point_estimate"] == arviz_module.POINT_NOTE
    np.testing.assert_array_equal(point["weights"].values[0, 0], one.sites["weights"])
    assert (chains.sizes["chain"], chains.sizes["draw"]) == (3, 1)
    assert chains.attrs["point_estimate"] == arviz_module.RESTARTS_NOTE
    assert chains.attrs["selected_restart"] == three.restarts.selected
    np.testing.assert_array_equal(chains["weights"].values[:, 0],
                                  three.restarts.sites["weights"])
    np.testing.assert_array_equal(
        chains["weights"].values[three.restarts.selected, 0], three.sites["weights"])
    _, first = data.perturbation_contexts()
    np.testing.assert_array_equal(
        chains["posterior_target"].values[:, 0],
        model.posterior_targets(three.restarts.sites, data, per="perturbation")[:, first])
