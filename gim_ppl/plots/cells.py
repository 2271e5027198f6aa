"""Figures of predicted against observed cells of one context: `plot_marginals`
(per-variable densities), `plot_pair` (a 2-D scatter) and `plot_predicted_vs_observed`
(both in one figure)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from gim_ppl.data import PerturbationData
from gim_ppl.plots.layout import OBSERVED_COLOR, PREDICTED_COLOR, axes_grid, resolve, single_axes


def _cells(data: PerturbationData, context: int) -> np.ndarray:
    """`(n_cells_of_context, n_vars)` cells of one context."""
    if data.x is None:
        raise ValueError("data has no cells (x is None)")
    return np.asarray(data.x)[np.asarray(data.context) == context]


def _context_index(data: PerturbationData, context) -> int:
    return resolve(data.context_names, context, "context")[0]


def _density(ax: Axes, values: np.ndarray, grid: np.ndarray, *, color, fill: bool, label):
    from scipy.stats import gaussian_kde

    values = values[np.isfinite(values)]
    if values.size > 2 and np.std(values) > 1e-9:
        dens = gaussian_kde(values)(grid)
    else:  # a degenerate sample: a narrow bump at its mean
        centre = float(values.mean()) if values.size else 0.0
        width = max(1e-3, 0.02 * float(grid.max() - grid.min()))
        dens = np.exp(-0.5 * ((grid - centre) / width) ** 2) / (width * np.sqrt(2 * np.pi))
    if fill:
        ax.fill_between(grid, dens, color=color, alpha=0.25, lw=0)
    ax.plot(grid, dens, color=color, lw=1.6, ls="-" if fill else "--", label=label)


def plot_marginals(
    predicted: PerturbationData | None,
    observed: PerturbationData | None,
    context,
    variables=None,
    *,
    ax=None,
    ncols: int = 4,
) -> tuple[Figure, np.ndarray]:
    """Per-variable densities (Gaussian KDE) of predicted and observed cells of one context.

    Args:
        predicted, observed: `PerturbationData` with cells whose contexts share names
            (e.g. `model.predict(sites, test, …)` and `test`); either may be None.
        context: a context name or index (looked up in `observed`, else `predicted`).
        variables: names or indices (default: all).
        ax: one Axes per variable, or None.
    Returns:
        `(fig, axes (n_variables,))`. Observed: grey, filled; predicted: orange, dashed.
    """
    sources = _sources(predicted, observed)
    names = sources[0][1].var_names
    var_ids = resolve(names, variables, "variable")
    cells = {label: _cells(d, _context_index(d, _context_name(sources, context)))
             for label, d in sources}
    fig, axes = axes_grid(ax, len(var_ids), ncols, (2.4, 1.9))
    for i, (a, j) in enumerate(zip(axes, var_ids, strict=True)):
        both = np.concatenate([c[:, j] for c in cells.values()])
        lo, hi = np.quantile(both, [0.001, 0.999]) if both.size else (-1.0, 1.0)
        pad = 0.15 * max(hi - lo, 1e-3)
        grid = np.linspace(lo - pad, hi + pad, 200)
        for label, x in cells.items():
            observed_here = label == "observed"
            _density(a, x[:, j], grid, color=OBSERVED_COLOR if observed_here else PREDICTED_COLOR,
                     fill=observed_here, label=f"{label} ({x.shape[0]} cells)")
        a.set_xlabel(names[j])
        a.set_yticks([])
        if i % max(1, min(ncols, len(var_ids))) == 0:
            a.set_ylabel("density")
    if ax is None:
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize=8,
                   frameon=False)
        fig.suptitle(f"context {_context_name(sources, context)}", fontsize=10)
    return fig, axes


def plot_pair(
    predicted: PerturbationData | None,
    observed: PerturbationData | None,
    context,
    pair=(0, 1),
    *,
    ax: Axes | None = None,
    max_points: int = 500,
) -> tuple[Figure, Axes]:
    """2-D scatter of two variables for predicted and observed cells of one context.

    Args:
        pair: two variable names or indices (x axis, y axis).
        max_points: at most this many cells of each source are drawn (evenly spaced).
    Returns:
        `(fig, ax)`; observed in grey (drawn on top), predicted in orange; the two point
        collections have gids "observed" and "predicted".
    """
    sources = _sources(predicted, observed)
    names = sources[0][1].var_names
    pair_ids = resolve(names, pair, "variable")
    if len(pair_ids) != 2:
        raise ValueError(f"pair must name two variables, got {pair!r}")
    i, j = pair_ids
    fig, ax = single_axes(ax, (3.6, 3.4))
    name = _context_name(sources, context)
    for label, data in sources[::-1]:  # observed cells on top
        x = _cells(data, _context_index(data, name))
        keep = np.unique(np.linspace(0, x.shape[0] - 1, min(max_points, x.shape[0])).astype(int))
        observed_here = label == "observed"
        ax.scatter(x[keep, i], x[keep, j], s=10 if observed_here else 8,
                   alpha=0.7 if observed_here else 0.35,
                   color=OBSERVED_COLOR if observed_here else PREDICTED_COLOR,
                   marker="o" if observed_here else "^", label=label, linewidths=0, gid=label)
    ax.set_xlabel(names[i])
    ax.set_ylabel(names[j])
    ax.set_title(name, fontsize=9)
    ax.legend(fontsize=8, markerscale=1.8)
    return fig, ax


def plot_predicted_vs_observed(
    predicted: PerturbationData | None,
    observed: PerturbationData | None,
    context,
    variables=None,
    pair=None,
    *,
    ax=None,
    ncols: int = 4,
) -> tuple[Figure, np.ndarray]:
    """`plot_marginals` for `variables` plus a `plot_pair` panel, one figure.

    Args:
        pair: the two variables of the scatter (default: the first two of `variables`).
        ax: `n_variables + 1` Axes (densities, then the scatter), or None.
    Returns:
        `(fig, axes (n_variables + 1,))`.
    """
    sources = _sources(predicted, observed)
    names = sources[0][1].var_names
    var_ids = resolve(names, variables, "variable")
    pair = tuple(var_ids[:2]) if pair is None else pair
    if ax is None:
        # densities on a grid at the left, the scatter as a larger panel at the right
        ncols = max(1, min(ncols, len(var_ids)))
        nrows = -(-len(var_ids) // ncols)
        fig = plt.figure(layout="constrained",
                         figsize=(2.3 * ncols + 3.6, max(1.9 * nrows, 3.2) + 0.5))
        outer = fig.add_gridspec(1, 2, width_ratios=[2.3 * ncols, 3.4])
        inner = outer[0].subgridspec(nrows, ncols)
        axes = [fig.add_subplot(inner[i // ncols, i % ncols]) for i in range(len(var_ids))]
        side = outer[1].subgridspec(3, 1, height_ratios=[0.15, 1.0, 0.15])
        axes = np.asarray([*axes, fig.add_subplot(side[1])], dtype=object)
    else:
        fig, axes = axes_grid(ax, len(var_ids) + 1, ncols, (2.4, 1.9))
    plot_marginals(predicted, observed, context, var_ids, ax=axes[:-1], ncols=ncols)
    plot_pair(predicted, observed, context, pair, ax=axes[-1])
    if ax is None:
        axes[-1].set_title("")
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize=8,
                   frameon=False)
        fig.suptitle(f"context {_context_name(sources, context)}", fontsize=10)
    return fig, axes


def _sources(predicted, observed) -> list[tuple[str, PerturbationData]]:
    """`[(label, data)]` of the given sources, observed first."""
    sources = [(label, d) for label, d in (("observed", observed), ("predicted", predicted))
               if d is not None]
    if not sources:
        raise ValueError("give predicted or observed cells (both are None)")
    for label, d in sources:
        if not isinstance(d, PerturbationData) or d.x is None:
            raise ValueError(f"{label} must be a PerturbationData with cells")
    if len(sources) == 2 and sources[0][1].var_names != sources[1][1].var_names:
        raise ValueError("predicted and observed have different variable names")
    return sources


def _context_name(sources, context) -> str:
    data = sources[0][1]
    return data.context_names[_context_index(data, context)]
