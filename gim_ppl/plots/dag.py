"""Figure of the learned graph: `plot_graph` draws the DAG (networkx), edge width by
|weight|, optionally against a true graph; `edge_classes` sorts the edges (correct / reversed /
extra / missing); private helpers place the nodes in rows and bend edges around nodes."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from gim_ppl.core.graph import topological_order
from gim_ppl.data import PerturbationData
from gim_ppl.model import GIM
from gim_ppl.plots.layout import single_axes

#: Edge colours of `plot_graph` by class (learned graph against a true graph).
EDGE_COLORS = {
    "edge": "0.2",  # a learned edge, no truth given
    "correct": "0.2",
    "reversed": "tab:orange",
    "extra": "tab:red",
    "missing": "tab:blue",
}


def edge_classes(learned, truth=None) -> dict[str, list[tuple[int, int]]]:
    """Classify edges `(i, j)` (i → j) of a learned graph against a true one.

    Without `truth`: `{"edge": learned edges}`. With it: `correct` (in both), `reversed`
    (learned i → j where the truth has j → i only), `extra` (in neither direction in the
    truth), `missing` (true edges absent in both directions from the learned graph).
    Both arguments are `(n_vars, n_vars)` bool.
    """
    a = np.asarray(learned, dtype=bool)
    if truth is None:
        return {"edge": [tuple(map(int, e)) for e in np.argwhere(a)]}
    t = np.asarray(truth, dtype=bool)
    if t.shape != a.shape:
        raise ValueError(f"true adjacency has shape {t.shape}, learned {a.shape}")
    classes = {
        "correct": a & t,
        "reversed": a & ~t & t.T,
        "extra": a & ~t & ~t.T,
        "missing": t & ~a & ~a.T,
    }
    return {k: [tuple(map(int, e)) for e in np.argwhere(v)] for k, v in classes.items()}


def _layered_positions(adjacency: np.ndarray) -> dict[int, tuple[float, float]]:
    """Nodes in rows by longest path from a root (roots on top), spread evenly per row."""
    d = adjacency.shape[0]
    depth = np.zeros(d, dtype=int)
    for j in topological_order(adjacency):
        parents = np.flatnonzero(adjacency[:, j])
        depth[j] = depth[parents].max() + 1 if parents.size else 0
    pos = {}
    for level in range(depth.max() + 1):
        nodes = np.flatnonzero(depth == level)
        # stagger alternate rows so that edges skipping a row do not run through nodes
        offset = 0.25 * (level % 2)
        for i, node in enumerate(nodes):
            pos[int(node)] = (i - (nodes.size - 1) / 2.0 + offset, -float(level))
    return pos


def _edge_bend(pos: Mapping, i: int, j: int, clearance: float = 0.3) -> float:
    """Curvature (matplotlib `arc3` rad) of the edge i → j that keeps it clear of other nodes.

    Tries slight bends first, then stronger ones either way; returns the first whose curve
    passes every other node at `clearance` (in layout units, ~ node spacing), else the one
    that passes farthest. arc3 puts the Bezier control point at `mid + rad · (dy, −dx)`.
    """
    a, b = np.asarray(pos[i], dtype=float), np.asarray(pos[j], dtype=float)
    others = np.asarray([p for k, p in pos.items() if k not in (i, j)], dtype=float)
    if others.size == 0:
        return 0.1
    t = np.linspace(0.08, 0.92, 22)[:, None]
    normal = np.array([b[1] - a[1], a[0] - b[0]])
    best, best_gap = 0.1, -np.inf
    for rad in (0.1, -0.1, 0.25, -0.25, 0.4, -0.4, 0.55, -0.55):
        control = (a + b) / 2.0 + rad * normal
        curve = (1 - t) ** 2 * a + 2 * (1 - t) * t * control + t**2 * b
        gap = float(np.min(np.linalg.norm(curve[:, None, :] - others[None], axis=-1)))
        if gap >= clearance:
            return rad
        if gap > best_gap:
            best, best_gap = rad, gap
    return best


def plot_graph(
    model: GIM,
    sites: Mapping,
    data: PerturbationData | None = None,
    *,
    threshold: float = 0.3,
    true_adjacency=None,
    layout: str | Mapping = "layered",
    max_width: float = 4.0,
    ax: Axes | None = None,
) -> tuple[Figure, Axes]:
    """The learned DAG `model.graph(sites, threshold)` drawn with networkx.

    Edge width grows with |W_ij| (the posterior mean of |W| with draws). With
    `true_adjacency`, learned edges are coloured by `edge_classes` — correct (dark),
    reversed (orange), extra (red) — and true edges the fit missed are drawn dashed
    (blue); the title gives the SHD. Each arrow patch's `gid` is `"<class>:<i>-><j>"`.

    Args:
        model, sites: the fitted model (a point or draws).
        data: gives the variable names (default `x0, x1, …`).
        threshold: |weight| above which an edge is kept.
        true_adjacency: `(n_vars, n_vars)` bool, i → j.
        layout: "layered" (rows by depth in the true graph, else the learned one),
            "circular", "spring" (seeded), or a mapping `node index -> (x, y)`.
        ax: an Axes, or None.
    Returns:
        `(fig, ax)`.
    """
    import networkx as nx

    from gim_ppl.evaluation.metrics import shd

    learned = np.asarray(model.graph(sites, threshold=threshold), dtype=bool)
    weights = np.abs(model.edge_weights(sites))
    if weights.ndim == 3:
        weights = weights.mean(0)
    d = learned.shape[0]
    names = list(data.var_names) if data is not None else [f"x{i}" for i in range(d)]
    truth = None if true_adjacency is None else np.asarray(true_adjacency, dtype=bool)
    classes = edge_classes(learned, truth)

    graph = nx.DiGraph()
    graph.add_nodes_from(range(d))
    for edges in classes.values():
        graph.add_edges_from(edges)
    if isinstance(layout, Mapping):
        pos = {int(k): tuple(v) for k, v in layout.items()}
    elif layout == "layered":
        pos = _layered_positions(truth if truth is not None else learned)
    elif layout == "circular":
        pos = nx.circular_layout(graph)
    elif layout == "spring":
        pos = nx.spring_layout(graph, seed=0)
    else:
        raise ValueError(f"layout must be 'layered', 'circular', 'spring' or a mapping, "
                         f"got {layout!r}")

    width_by = max(float(weights[learned].max()) if learned.any() else 1.0, 1e-12)
    if isinstance(layout, str) and layout == "layered":  # unit spacing between nodes and rows
        span = np.ptp(np.asarray([pos[i] for i in range(d)], dtype=float), axis=0)
    else:
        span = np.full(2, max(2.0, 0.8 * np.sqrt(d)))
    # ~1.1 inch per unit of node spacing, plus room for the legend on the right
    fig, ax = single_axes(ax, (min(3.0 + 1.1 * (span[0] + 1), 14.0),
                               min(1.0 + 1.1 * (span[1] + 1), 10.0)))
    node_size = 900
    nx.draw_networkx_nodes(graph, pos, ax=ax, node_size=node_size, node_color="white",
                           edgecolors="0.2", linewidths=1.2)
    nx.draw_networkx_labels(graph, pos, {i: names[i] for i in range(d)}, ax=ax, font_size=9)
    handles = []
    for cls, edges in classes.items():
        if not edges:
            continue
        dashed = cls == "missing"
        for i, j in edges:
            width = 1.5 if dashed else 0.8 + (max_width - 0.8) * weights[i, j] / width_by
            (patch,) = nx.draw_networkx_edges(
                graph, pos, edgelist=[(i, j)], ax=ax, width=width, edge_color=EDGE_COLORS[cls],
                style="--" if dashed else "-", arrows=True, arrowstyle="-|>", arrowsize=14,
                node_size=node_size, connectionstyle=f"arc3,rad={_edge_bend(pos, i, j):.3f}",
            )
            patch.set_gid(f"{cls}:{i}->{j}")
        label = f"{cls} ({len(edges)})" if cls != "edge" else f"learned edge ({len(edges)})"
        handles.append(Line2D([], [], color=EDGE_COLORS[cls], lw=2, ls="--" if dashed else "-",
                              label=label))
    title = f"learned graph, |W| > {threshold:g}"
    if truth is not None:
        title += f"; SHD to truth = {shd(truth, learned)}"
    ax.set_title(title, fontsize=10)
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8,
                  frameon=False, title="width ∝ |weight|", title_fontsize=8)
    ax.set_axis_off()
    ax.margins(0.12)
    return fig, ax
