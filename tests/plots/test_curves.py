import matplotlib

matplotlib.use("Agg")

import jax
import matplotlib.pyplot as plt
import numpy as np
import optax
import pytest
from matplotlib.collections import PathCollection, PolyCollection
from matplotlib.colors import to_rgba
from matplotlib.patches import FancyArrowPatch, Rectangle

import gim_ppl
from gim_ppl import plots
from gim_ppl.datasets import DoseScale
from gim_ppl.evaluation import metrics
from gim_ppl.plots import dag as graph_figures
from tests._problems import random_sites


@pytest.fixture(scope="module")
def fitted():
    """A small synthetic benchmark and a short MAP fit of it."""
    bench = gim_ppl.datasets.synthetic_hill(
        0, n_vars=4, n_features=3, n_train_perturbations=4, n_test_perturbations=2,
        train_doses=(0.5, 1.0, 2.0), partial_ood_doses=(0.75,), n_cells=20, n_test_cells=30,
        n_observational=80,
    )
    model = gim_ppl.GIM(4, 3)
    result = gim_ppl.fit(model, bench.train, steps=400, key=jax.random.key(0),
                         optimizer=optax.adam(1e-2), progress=False)
    return bench, model, result


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _draws(sites, n=12, scale=0.05, seed=0):
    """Fake posterior draws around a point: `(n, *shape)` per site."""
    rng = np.random.default_rng(seed)
    out = {}
    for k, v in sites.items():
        v = np.asarray(v)
        noise = rng.normal(scale=scale, size=(n, *v.shape))
        out[k] = np.abs(v + noise) if k == "noise_scale" else v + noise
    return out


def _by_gid(artists, gid):
    return [a for a in artists if a.get_gid() == gid]


def _hill(dose, emax, ec50, h):
    dose = np.asarray(dose, float)
    with np.errstate(divide="ignore"):
        act = dose**h / (ec50**h + dose**h)
    return emax * np.where(dose > 0, act, 0.0)


# --- loss -------------------------------------------------------------------------------


def test_loss_curve_from_fit_result_and_array(fitted):
    _, _, result = fitted
    fig, ax = plots.plot_loss(result)
    assert fig.axes == [ax]
    raw, smooth = ax.get_lines()
    np.testing.assert_allclose(raw.get_ydata(), result.losses)
    assert smooth.get_ydata().size == result.losses.size - max(1, result.losses.size // 50) + 1
    assert ax.get_xlabel() == "step" and "loss" in ax.get_ylabel()

    losses = np.r_[1e6, np.linspace(10.0, 1.0, 999)]
    _, ax = plots.plot_loss(losses, window=10, label="MAP")
    low, high = ax.get_ylim()
    assert high < 1e3 and low < 1.0  # the transient is off scale, the tail is not
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["MAP"]
    with pytest.raises(ValueError, match="empty"):
        plots.plot_loss([])


# --- dose-response ----------------------------------------------------------------------


def test_dose_response_curves_points_and_truth(fitted):
    bench, model, result = fitted
    data, sites = bench.train, result.sites
    fig, axes = plots.plot_dose_response(
        model, sites, data, ["drug_01", "drug_02"], ["x0", "x2", "x3"],
        true_hill=bench.truth.hill["train"], true_targets=bench.truth.targets["train"])
    assert axes.shape == (2, 3) and len(fig.axes) == 6
    pert = np.asarray(data.perturbation)
    w = np.asarray(sites["weights"]) * (1 - np.eye(4))
    x, ctx = np.asarray(data.x), np.asarray(data.context)
    residual = x - x @ w - np.asarray(sites["bias"])
    for r, g in enumerate((1, 2)):
        k0 = int(np.flatnonzero(pert == g)[0])
        hill = model.hill_parameters(sites, data.subset([k0]))
        for c, j in enumerate((0, 2, 3)):
            a = axes[r, c]
            assert a.get_title().startswith(f"drug_0{g} → x{j}")
            (fit_line,) = _by_gid(a.get_lines(), "fit")
            (true_line,) = _by_gid(a.get_lines(), "truth")
            dose = fit_line.get_xdata()
            expected = _hill(dose, hill["emax"][0, j], hill["ec50"][0, j], hill["hill"][0, j])
            np.testing.assert_allclose(fit_line.get_ydata(), expected, rtol=1e-4, atol=1e-5)
            h = {k: v[k0, j] for k, v in bench.truth.hill["train"].items()}
            truth = _hill(dose, h["emax"], h["ec50"], h["hill"])
            truth = truth * bench.truth.targets["train"][k0, j]
            np.testing.assert_allclose(true_line.get_ydata(), truth, rtol=1e-4, atol=1e-5)
            assert true_line.get_linestyle() == "--"
            # one point per context of the perturbation: the mean residual of x_j
            (points,) = _by_gid(a.get_lines(), "observed")
            rows = np.flatnonzero(pert == g)
            np.testing.assert_allclose(points.get_xdata(), np.asarray(data.dose)[rows])
            means = [residual[ctx == k, j].mean() for k in rows]
            np.testing.assert_allclose(points.get_ydata(), means, rtol=1e-4, atol=1e-5)
            assert not _by_gid(a.collections, "band")
            (control,) = _by_gid(a.get_lines(), "control")
            assert control.get_xdata()[0] == 0.0
    assert axes[1, 0].get_xlabel() == "dose" and axes[0, 0].get_ylabel() == "x − f(parents)"
    assert "true curve" in [t.get_text() for t in fig.legends[0].get_texts()]


def test_dose_response_band_with_draws_and_default_variables(fitted):
    bench, model, result = fitted
    draws = _draws(result.sites)
    _, axes = plots.plot_dose_response(model, draws, bench.train, "drug_03", max_variables=2)
    assert axes.shape == (1, 2)
    prob = model.target_probabilities(draws, bench.train).mean(0)  # read-offs keep draws
    prob = prob[np.asarray(bench.train.perturbation) == 3][0]
    top = sorted(np.argsort(-prob)[:2].tolist())
    assert [a.get_title().split(" → ")[1].split()[0] for a in axes[0]] == [f"x{j}" for j in top]
    for a in axes[0]:
        (band,) = _by_gid(a.collections, "band")
        assert isinstance(band, PolyCollection)
        edge = band.get_paths()[0].vertices[:, 1]
        (line,) = _by_gid(a.get_lines(), "fit")
        assert edge.min() <= line.get_ydata().min() + 1e-9
        assert line.get_ydata().max() <= edge.max() + 1e-9
        assert edge.max() - edge.min() > 0


def test_dose_response_uses_given_axes_and_checks_arguments(fitted):
    bench, model, result = fitted
    fig, ax = plt.subplots()
    out_fig, axes = plots.plot_dose_response(model, result.sites, bench.train, 0, "x1", ax=ax)
    assert out_fig is fig and axes[0, 0] is ax and ax.get_legend() is not None
    with pytest.raises(ValueError, match="must hold 2 axes"):
        plots.plot_dose_response(model, result.sites, bench.train, 0, ["x0", "x1"], ax=ax)
    with pytest.raises(ValueError, match="unknown perturbation"):
        plots.plot_dose_response(model, result.sites, bench.train, "aspirin")
    with pytest.raises(ValueError, match="no context in data"):  # a test-only drug
        plots.plot_dose_response(model, result.sites, bench.train, "drug_05")
    with pytest.raises(ValueError, match="together"):
        plots.plot_dose_response(model, result.sites, bench.train,
                                 true_hill=bench.truth.hill["train"])


def _expected_pairs(model, sites, data, heldout, top, cut):
    """The dose-response grid's rule, computed here: π or the perturbation-level posterior
    over the fitted contexts ≥ cut, at most `top` per perturbation, ranked by that
    probability × |the Hill curve at the perturbation's highest dose| (closed form)."""
    ids, first = data.perturbation_contexts()
    prior = np.asarray(model.target_probabilities(sites, data.subset(first)))
    fitted = ~np.isin(data.context_names, heldout)
    post = np.asarray(model.posterior_targets(sites, data.subset(fitted), per="perturbation"))
    hill = model.hill_parameters(sites, data.subset(first))
    pert_all, dose = np.asarray(data.perturbation), np.asarray(data.dose)
    pert = pert_all[fitted]
    pairs = []
    for i, g in enumerate(ids):
        best = np.maximum(prior[i], post[pert == g][0])
        size = np.abs(_hill(dose[pert_all == g].max(), hill["emax"][i], hill["ec50"][i],
                            hill["hill"][i]))
        ranked = [j for j in np.argsort(-best * size, kind="stable") if best[j] >= cut]
        pairs += [(g, j) for j in ranked[:top]]
    return pairs


def test_dose_response_grid_shows_likely_targets_with_observed_means(fitted, tmp_path):
    bench, model, result = fitted
    data, sites = bench.train, result.sites
    held = [n for n in data.context_names if n.endswith("@2")]  # each drug's highest dose
    pairs = _expected_pairs(model, sites, data, held, 3, 0.5)
    assert 2 <= len(pairs) < 4 * 3  # the rule keeps some pairs and drops others here
    fig, axes = plots.plot_dose_response_grid(model, sites, data, heldout=held, top=3,
                                              expression_unit="log1p expr.")
    fig.savefig(tmp_path / "dose_response_grid.png", dpi=80)  # renders (Agg)
    assert axes.shape == (len(pairs),)
    ids, first = data.perturbation_contexts()
    prob = model.target_probabilities(sites, data.subset(first))
    hill = model.hill_parameters(sites, data.subset(first))
    pert, dose = np.asarray(data.perturbation), np.asarray(data.dose)
    w = np.asarray(sites["weights"]) * (1 - np.eye(4))
    x, ctx = np.asarray(data.x), np.asarray(data.context)
    residual = x - x @ w - np.asarray(sites["bias"])
    for a, (g, j) in zip(axes, pairs, strict=True):
        i = list(ids).index(g)
        name, gene = data.perturbation_names[g], data.var_names[j]
        assert a.get_title().startswith(f"{name} → {gene}\nπ = {prob[i, j]:.2f}, P(I=1 | cells)")
        assert a.get_xscale() == "log" and a.get_xlabel() == "dose (model units)"
        assert a.get_ylabel() == f"shift of {gene} (log1p expr.)"
        # the curve: solid over the fitted doses (0.5 .. 1), dashed beyond; together the
        # Hill curve at every dose of the grid
        (solid,) = _by_gid(a.get_lines(), "fit")
        (dashed,) = _by_gid(a.get_lines(), "fit_extrapolated")
        grid = solid.get_xdata()
        inside = np.isfinite(grid)
        assert grid[inside].min() >= 0.5 and grid[inside].max() <= 1.0
        assert dashed.get_linestyle() == "--" and np.isfinite(dashed.get_xdata()).any()
        expected = _hill(np.where(inside, grid, dashed.get_xdata()), hill["emax"][i, j],
                         hill["ec50"][i, j], hill["hill"][i, j])
        np.testing.assert_allclose(solid.get_ydata(), expected, rtol=1e-4, atol=1e-6)
        # extrapolation shaded on both sides of [0.5, 1]
        spans = _by_gid(a.patches, "extrapolation")
        edges = sorted((round(p.get_x(), 6), round(p.get_x() + p.get_width(), 6))
                       for p in spans)
        assert edges == [(0.05, 0.5), (1.0, 20.0)]  # a decade beyond the doses 0.5 .. 2
        # observed means ± s.e.: filled at fitted doses, open at the held-out dose
        (points,), (open_points,) = (_by_gid(a.get_lines(), "observed"),
                                     _by_gid(a.get_lines(), "observed_heldout"))
        rows = np.flatnonzero(pert == g)
        fit_rows = [k for k in rows if data.context_names[k] not in held]
        np.testing.assert_allclose(points.get_xdata(), dose[fit_rows])
        np.testing.assert_allclose(points.get_ydata(),
                                   [residual[ctx == k, j].mean() for k in fit_rows],
                                   rtol=1e-4, atol=1e-5)
        assert open_points.get_xdata().tolist() == [2.0]
        assert open_points.get_markerfacecolor() == "white"
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["fitted Hill curve, fitted doses", "curve extrapolated",
                      "outside the fitted doses", "no effect (control level)",
                      "observed mean x − f(parents) ± s.e., fitted dose",
                      "observed, held-out dose"]
    assert "π or P(I=1 | cells) ≥ 0.5" in fig.get_suptitle()


def test_dose_response_grid_in_user_units_with_draws_and_given_axes(fitted):
    bench, model, result = fitted
    data = bench.train
    pairs = _expected_pairs(model, result.sites, data, [], 1, 0.0)  # one pair per drug
    _, point = plots.plot_dose_response_grid(model, result.sites, data, top=1,
                                             min_probability=0.0)
    # two identical draws draw the point's curves; doses in nM with 1 model unit = 1000 nM,
    # from the scale the data carries
    draws = {k: np.stack([np.asarray(v)] * 2) for k, v in result.sites.items()}
    fig, axes = plt.subplots(2, 2)
    in_nm = data.replace(dose_scale=DoseScale("nM", 1000.0))
    out_fig, nm = plots.plot_dose_response_grid(model, draws, in_nm, top=1,
                                                min_probability=0.0, ax=axes)
    assert out_fig is fig and list(nm) == list(axes.ravel()) and len(pairs) == 4
    for a, b in zip(point, nm, strict=True):
        (p_line,), (n_line,) = _by_gid(a.get_lines(), "fit"), _by_gid(b.get_lines(), "fit")
        np.testing.assert_allclose(n_line.get_xdata(), 1000.0 * p_line.get_xdata(), rtol=1e-9)
        np.testing.assert_allclose(n_line.get_ydata(), p_line.get_ydata(), rtol=1e-4, atol=1e-6)
        assert b.get_xlabel() == "dose (nM)" and a.get_title() == b.get_title()
    with pytest.raises(ValueError, match="must hold 4 axes"):
        plots.plot_dose_response_grid(model, result.sites, data, top=1, min_probability=0.0,
                                      ax=axes[0])
    # nothing likely (no cells, so π alone, which stays below 1): one panel that says so
    fig, (only,) = plots.plot_dose_response_grid(model, result.sites, data.contexts_only(),
                                                 min_probability=1.0)
    assert "no perturbation has a variable with target probability ≥ 1" in only.texts[0].get_text()


# --- targets ----------------------------------------------------------------------------


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


# --- graph ------------------------------------------------------------------------------


def _graph_problem():
    model = gim_ppl.GIM(4, 2)
    sites = random_sites(model)
    w = np.zeros((4, 4))
    w[0, 1], w[2, 1], w[0, 3] = 1.5, -0.6, 0.9  # learned: 0→1, 2→1, 0→3
    truth = np.zeros((4, 4), bool)
    truth[0, 1] = truth[1, 2] = truth[2, 3] = True  # 0→1 correct, 2→1 reversed, 2→3 missing
    return model, {**sites, "weights": w}, truth


def test_edge_classes_agree_with_shd():
    model, sites, truth = _graph_problem()
    learned = model.graph(sites, threshold=0.3)
    classes = plots.edge_classes(learned, truth)
    assert classes == {"correct": [(0, 1)], "reversed": [(2, 1)], "extra": [(0, 3)],
                       "missing": [(2, 3)]}
    n_wrong = sum(len(v) for k, v in classes.items() if k != "correct")
    assert n_wrong == metrics.shd(truth, learned)
    assert plots.edge_classes(learned) == {"edge": [(0, 1), (0, 3), (2, 1)]}


def test_graph_colours_edges_by_class_and_width_by_weight():
    model, sites, truth = _graph_problem()
    fig, ax = plots.plot_graph(model, sites, true_adjacency=truth)
    assert fig.axes == [ax]
    arrows = {p.get_gid(): p for p in ax.patches if isinstance(p, FancyArrowPatch)}
    assert set(arrows) == {"correct:0->1", "reversed:2->1", "extra:0->3", "missing:2->3"}
    for gid, patch in arrows.items():
        colour = to_rgba(plots.EDGE_COLORS[gid.split(":")[0]])
        assert patch.get_edgecolor() == pytest.approx(colour)
    assert arrows["missing:2->3"].get_linestyle() in ("--", "dashed")
    widths = {g: arrows[g].get_linewidth()
              for g in ("correct:0->1", "extra:0->3", "reversed:2->1")}
    assert widths["correct:0->1"] > widths["extra:0->3"] > widths["reversed:2->1"]  # |1.5|>.9>.6
    assert "SHD to truth = 3" in ax.get_title()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["correct (1)", "reversed (1)", "extra (1)", "missing (1)"]
    node_labels = sorted(t.get_text() for t in ax.texts)
    assert node_labels == ["x0", "x1", "x2", "x3"]


def test_edges_bend_around_nodes_in_their_way():
    on_a_line = {0: (0.0, 0.0), 1: (0.0, -1.0), 2: (0.0, -2.0), 3: (3.0, 0.0)}
    assert abs(graph_figures._edge_bend(on_a_line, 0, 2)) >= 0.25  # node 1 sits on the segment
    assert graph_figures._edge_bend(on_a_line, 0, 1) == 0.1  # nothing in the way: a slight bend


def test_graph_with_names_draws_and_layouts(fitted):
    bench, model, result = fitted
    draws = _draws(result.sites, n=8)
    _, ax = plots.plot_graph(model, draws, bench.train, layout="circular")
    learned = model.graph(draws)
    arrows = [p for p in ax.patches if isinstance(p, FancyArrowPatch)]
    assert len(arrows) == int(learned.sum())
    assert all(p.get_gid().startswith("edge:") for p in arrows)
    assert sorted(t.get_text() for t in ax.texts) == sorted(bench.train.var_names)
    with pytest.raises(ValueError, match="layout must be"):
        plots.plot_graph(model, draws, layout="hive")


# --- predicted vs observed --------------------------------------------------------------


def test_predicted_vs_observed_panels(fitted):
    bench, model, result = fitted
    test = bench.full_ood
    pred = model.predict(result.sites, test, key=jax.random.key(1), n_cells=40)
    name = test.context_names[3]
    fig, axes = plots.plot_predicted_vs_observed(pred, test, name, pair=("x2", "x0"))
    assert len(axes) == 5 and len(fig.axes) == 5
    for a, var in zip(axes[:4], test.var_names, strict=True):
        observed_line, predicted_line = a.get_lines()
        assert a.get_xlabel() == var
        assert predicted_line.get_linestyle() == "--"
        grid, dens = observed_line.get_xdata(), observed_line.get_ydata()
        area = np.sum(np.diff(grid) * (dens[1:] + dens[:-1]) / 2.0)
        assert 0.9 < area < 1.01  # a density over the plotted range
    scatter = axes[4]
    (observed_pts,) = _by_gid(scatter.collections, "observed")
    (predicted_pts,) = _by_gid(scatter.collections, "predicted")
    assert isinstance(observed_pts, PathCollection)
    x_obs = np.asarray(test.x)[np.asarray(test.context) == 3]
    np.testing.assert_allclose(observed_pts.get_offsets(), x_obs[:, [2, 0]], rtol=1e-6)
    assert predicted_pts.get_offsets().shape == (40, 2)
    assert (scatter.get_xlabel(), scatter.get_ylabel()) == ("x2", "x0")
    assert fig._suptitle.get_text() == f"context {name}"


def test_marginals_and_pair_on_given_axes(fitted):
    bench, model, result = fitted
    test = bench.partial_ood
    pred = model.predict(result.sites, test, key=jax.random.key(2), n_cells=30)
    fig, axes = plt.subplots(1, 2)
    out_fig, out_axes = plots.plot_marginals(pred, test, 1, ["x1", "x3"], ax=axes)
    assert out_fig is fig and list(out_axes) == list(axes)
    assert [a.get_xlabel() for a in axes] == ["x1", "x3"]
    assert all(len(a.get_lines()) == 2 for a in axes)
    _, ax = plots.plot_pair(pred, None, 1, (0, 1), max_points=10)
    (only,) = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert only.get_offsets().shape == (10, 2)
    with pytest.raises(ValueError, match="unknown context"):
        plots.plot_marginals(pred, test, "no-such-context")
    with pytest.raises(ValueError, match="two variables"):
        plots.plot_pair(pred, test, 0, ("x0",))
    with pytest.raises(ValueError, match="both are None"):
        plots.plot_pair(None, None, 0)
