"""Shared plumbing of the figures: colours, axes (a new grid, or the caller's axes checked),
name/index lookup, and the per-perturbation read-offs of a fitted model that several figures use
(`pick_perturbations`)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from gim_ppl.data import PerturbationData

OBSERVED_COLOR = "0.25"
PREDICTED_COLOR = "tab:orange"
FIT_COLOR = "tab:blue"
TRUTH_COLOR = "tab:red"


def axes_grid(ax, n_panels: int, ncols: int, panel_size: tuple[float, float],
              **subplot_kw) -> tuple[Figure, np.ndarray]:
    """`(fig, axes (n_panels,))`: new axes on a grid, or the caller's axes checked."""
    if ax is None:
        ncols = max(1, min(ncols, n_panels))
        nrows = -(-n_panels // ncols)
        fig, grid = plt.subplots(
            nrows, ncols, squeeze=False, layout="constrained",
            figsize=(panel_size[0] * ncols, panel_size[1] * nrows), **subplot_kw,
        )
        grid = grid.ravel()
        for extra in grid[n_panels:]:
            extra.remove()
        return fig, grid[:n_panels]
    axes = np.asarray([ax] if isinstance(ax, Axes) else list(np.ravel(ax)), dtype=object)
    if axes.size != n_panels:
        raise ValueError(f"ax must hold {n_panels} axes for this figure, got {axes.size}")
    return axes[0].figure, axes


def single_axes(ax, figsize) -> tuple[Figure, Axes]:
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize, layout="constrained")
        return fig, ax
    if not isinstance(ax, Axes):
        raise TypeError(f"ax must be a matplotlib Axes, got {type(ax).__name__}")
    return ax.figure, ax


def resolve(names: Sequence[str], which, what: str) -> list[int]:
    """Indices of `which` (names or ints, one or many) in `names`."""
    if which is None:
        return list(range(len(names)))
    items = [which] if isinstance(which, (str, int, np.integer)) else list(which)
    lookup = {n: i for i, n in enumerate(names)}
    out = []
    for item in items:
        if isinstance(item, (int, np.integer)):
            if not 0 <= int(item) < len(names):
                raise ValueError(f"{what} index {item} out of range [0, {len(names)})")
            out.append(int(item))
        elif str(item) in lookup:
            out.append(lookup[str(item)])
        else:
            raise ValueError(f"unknown {what} {item!r}; known: {list(names)[:10]}")
    return out


def pick_perturbations(data: PerturbationData, perturbations) -> tuple[list[int], list[int]]:
    """Chosen perturbation ids (default: all present) and the first context of each."""
    ids, first = data.perturbation_contexts()
    if ids.size == 0:
        raise ValueError("data has no perturbational contexts")
    if perturbations is None:
        return list(ids), list(first)
    chosen = resolve(data.perturbation_names, perturbations, "perturbation")
    where = {int(g): int(k) for g, k in zip(ids, first, strict=True)}
    absent = [data.perturbation_names[g] for g in chosen if g not in where]
    if absent:
        raise ValueError(f"perturbations {absent} have no context in data")
    return chosen, [where[g] for g in chosen]


