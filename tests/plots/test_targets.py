"""`gim_ppl.plots.targets`: target probabilities, prior beside posterior, true targets outlined."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.patches import Rectangle

from gim_ppl import plots


def test_targets_heatmaps_prior_posterior_and_truth(fitted):
    bench, model, result = fitted
    data, truth = bench.train, bench.truth.targets["train"]
    fig, axes = plots.plot_targets(model, result.sites, data, true_targets=truth)
    assert len(axes) == 2 and len(fig.axes) == 3  # two heatmaps and a colour bar
    pert = np.asarray(data.perturbation)
    first = [int(np.flatnonzero(pert == g)[0]) for g in range(4)]
    prior = model.target_probabilities(result.sites, data)[first]
    post = model.posterior_targets(result.sites, data, per="perturbation")[first]
    for a, expected in zip(axes, (prior, post), strict=True):
        (image,) = a.get_images()
        np.testing.assert_allclose(image.get_array(), expected, rtol=1e-6)
        boxes = [p for p in a.patches if isinstance(p, Rectangle) and p.get_gid() == "true_target"]
        assert len(boxes) == int(truth[first].sum())
        corners = {(round(b.get_x() + 0.5), round(b.get_y() + 0.5)) for b in boxes}
        assert corners == {(int(j), int(r)) for r, j in np.argwhere(truth[first])}
        assert [t.get_text() for t in a.get_xticklabels()] == list(data.var_names)
    assert [t.get_text() for t in axes[0].get_yticklabels()] == [f"drug_0{g}" for g in range(4)]
    assert "prior" in axes[0].get_title() and "posterior" in axes[1].get_title()


def test_targets_on_given_axes(fitted):
    bench, model, result = fitted
    fig, axes = plt.subplots(1, 2)
    out_fig, out_axes = plots.plot_targets(model, result.sites, bench.train, perturbations=[2, 0],
                                           true_targets=bench.truth.targets["train"], ax=axes)
    assert out_fig is fig and list(out_axes) == list(axes) and len(fig.axes) == 3
    assert [t.get_text() for t in axes[0].get_yticklabels()] == ["drug_02", "drug_00"]
    assert axes[1].get_legend() is not None and not fig.legends
    with pytest.raises(ValueError, match="must hold 2 axes"):
        plots.plot_targets(model, result.sites, bench.train, ax=axes[0])


def test_targets_without_cells_shows_only_the_prior(fitted):
    bench, model, result = fitted
    contexts = bench.full_ood.contexts_only()
    fig, axes = plots.plot_targets(model, result.sites, contexts)
    assert len(axes) == 1 and len(fig.axes) == 2
    assert axes[0].get_images()[0].get_array().shape == (2, 4)
    with pytest.raises(ValueError, match="needs cells"):
        plots.plot_targets(model, result.sites, contexts, posterior=True)
    with pytest.raises(ValueError, match="true_targets must have shape"):
        plots.plot_targets(model, result.sites, contexts, true_targets=np.zeros((3, 4), bool))


def test_targets_posterior_from_training_cells_similarity_order_and_labels(fitted, tmp_path):
    bench, model, result = fitted
    data, sites = bench.train, result.sites
    held = [n for n in data.context_names if n.startswith("drug_03")]
    train = data.subset(~np.isin(data.context_names, held))  # drug_03 has no training cells
    fig, axes = plots.plot_targets(model, sites, data.contexts_only(), train=train,
                                   order="similarity", variable_label="gene",
                                   perturbation_label="drug")
    fig.savefig(tmp_path / "target_heatmap.png", dpi=80)  # renders (Agg)
    order = [t.get_text() for t in axes[0].get_yticklabels()]
    assert sorted(order) == [f"drug_0{g}" for g in range(4)]
    rows = [data.perturbation_names.index(n) for n in order]
    _, first = data.perturbation_contexts()
    prior = np.asarray(model.target_probabilities(sites, data.subset(first)))[rows]
    post_ctx = np.asarray(model.posterior_targets(sites, train, per="perturbation"))
    pert = np.asarray(train.perturbation)
    post = np.stack([post_ctx[pert == g][0] if (pert == g).any() else np.full(4, np.nan)
                     for g in rows])
    prior_img, post_img = (a.get_images()[0].get_array() for a in axes)
    np.testing.assert_allclose(prior_img, prior, rtol=1e-6)
    drug3 = order.index("drug_03")
    assert post_img.mask[drug3].all() and not post_img.mask[np.arange(4) != drug3].any()
    np.testing.assert_allclose(post_img.data[~post_img.mask], post[~np.isnan(post)], rtol=1e-6)
    # neighbours are the most similar rows: the order is the clustering's leaf order
    both = np.concatenate([prior, np.nan_to_num(post)], axis=1)
    np.testing.assert_array_equal(plots.targets.similarity_order(both), np.arange(4))
    assert axes[0].get_xlabel() == "gene" and axes[0].get_ylabel() == "drug"
    assert "no cells of this drug" in [t.get_text() for t in fig.legends[0].get_texts()]
    with pytest.raises(ValueError, match="order must be 'given' or 'similarity'"):
        plots.plot_targets(model, sites, data, order="alphabetical")


def test_similarity_order_puts_similar_rows_together():
    rows = np.array([[1.0, 0, 0], [0, 0, 1.0], [0.9, 0.1, 0], [0, 0.1, 0.9], [0.95, 0, 0]])
    order = list(plots.targets.similarity_order(rows))
    groups = [set(order[:3]), set(order[3:])]
    assert {0, 2, 4} in groups or {0, 2, 4} == set(order[2:])
    assert sorted(order) == list(range(5))
