import matplotlib

matplotlib.use("Agg")

import arviz as az
import matplotlib.pyplot as plt
import numpy as np
import pytest

import gim_ppl
from tests._problems import random_sites


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
