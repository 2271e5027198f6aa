"""`gim_ppl.plots.dag`: the learned graph, edges classed against the truth and bent around nodes."""

import numpy as np
import pytest
from matplotlib.colors import to_rgba
from matplotlib.patches import FancyArrowPatch

import gim_ppl
from gim_ppl import plots
from gim_ppl.evaluation import metrics
from gim_ppl.plots import dag as graph_figures
from tests._problems import random_sites
from tests.plots.figures import fake_draws


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
    draws = fake_draws(result.sites, n=8)
    _, ax = plots.plot_graph(model, draws, bench.train, layout="circular")
    learned = model.graph(draws)
    arrows = [p for p in ax.patches if isinstance(p, FancyArrowPatch)]
    assert len(arrows) == int(learned.sum())
    assert all(p.get_gid().startswith("edge:") for p in arrows)
    assert sorted(t.get_text() for t in ax.texts) == sorted(bench.train.var_names)
    with pytest.raises(ValueError, match="layout must be"):
        plots.plot_graph(model, draws, layout="hive")
