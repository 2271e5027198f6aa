"""Figure of the intervention targets: `plot_targets`, target probabilities (perturbations ×
variables), the prior π(z) beside the posterior P(I = 1 | cells), true targets outlined,
perturbations in the given order or ordered by similarity (`similarity_order`)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from gim_ppl.data import PerturbationData
from gim_ppl.model import GIM, posterior_mean
from gim_ppl.plots.layout import TRUTH_COLOR, axes_grid, pick_perturbations


def _per_perturbation_name(values, cells: PerturbationData, names) -> np.ndarray:
    """`(len(names), …)`: the mean of `values (n_contexts, …)` (contexts of `cells`) over the
    contexts of each named perturbation; NaN for a name without contexts in `cells`."""
    values = np.asarray(values, dtype=float)
    pert = np.asarray(cells.perturbation)
    out = np.full((len(names), *values.shape[1:]), np.nan)
    for i, name in enumerate(names):
        if name in cells.perturbation_names:
            mine = pert == cells.perturbation_names.index(name)
            if mine.any():
                out[i] = values[mine].mean(0)
    return out


def similarity_order(rows) -> np.ndarray:
    """`(n_rows,)` an order of the rows of `rows (n_rows, n_columns)` that puts similar rows
    next to each other: the leaves of an average-linkage clustering (Euclidean distance) with
    optimal leaf ordering; NaN entries count as 0."""
    from scipy.cluster.hierarchy import leaves_list, linkage

    rows = np.nan_to_num(np.asarray(rows, dtype=float))
    if rows.shape[0] < 3:
        return np.arange(rows.shape[0])
    return leaves_list(linkage(rows, method="average", optimal_ordering=True))


def plot_targets(
    model: GIM,
    sites: Mapping,
    data: PerturbationData,
    *,
    true_targets=None,
    perturbations=None,
    posterior: bool | None = None,
    train: PerturbationData | None = None,
    order: str = "given",
    variable_label: str = "variable",
    perturbation_label: str = "perturbation",
    ax=None,
) -> tuple[Figure, np.ndarray]:
    """Heatmaps of target probabilities, perturbations × variables, in [0, 1].

    Left: the prior π(z) the intervention model assigns from the features (what is used
    for an unseen perturbation). Right (when there are cells): the posterior probability
    that the perturbation targets the variable given the cells of all its doses
    (`GIM.posterior_targets(per="perturbation")`; a target seen only at the highest dose
    counts). Perturbations without cells (e.g. held
    out entirely) are blank (grey) there. True targets, when given, are outlined.

    Args:
        model, sites: the fitted model (a point or draws; draws are averaged).
        data: the contexts; rows are the perturbations present in it.
        true_targets: bool `(n_contexts, n_vars)` aligned with `data` (e.g.
            `bench.truth.targets["train"]`) or `(n_perturbations_shown, n_vars)` in the
            order of `perturbations` (before any reordering).
        perturbations: names or indices of the perturbations to show (default: all present).
        posterior: draw the posterior panel (default: when `data` or `train` has cells).
        train: the cells the posterior is computed from (e.g. the training cells; default
            the cells of `data`), matched to the rows by perturbation name.
        order: "given" (the order of `perturbations`, or of the ids) or "similarity"
            (`similarity_order` of the rows of both panels side by side).
        variable_label, perturbation_label: axis labels (e.g. "gene", "drug").
        ax: one Axes per panel (1 or 2), or None.
    Returns:
        `(fig, axes)` with `axes (n_panels,)`; a shared colour bar is added to the figure.
    """
    if order not in ("given", "similarity"):
        raise ValueError(f"order must be 'given' or 'similarity', got {order!r}")
    pert_ids, first = pick_perturbations(data, perturbations)
    cells = data if train is None else train
    posterior = cells.x is not None if posterior is None else bool(posterior)
    if posterior and cells.x is None:
        raise ValueError("the posterior panel needs cells: data.x is None")
    prior = posterior_mean(model, sites, model.target_probabilities(
        sites, data.contexts_only().subset(first)))
    panels = [("prior π(z)\nfrom features", prior)]
    if posterior:
        post_ctx = posterior_mean(model, sites, model.posterior_targets(sites, cells,
                                                                        per="perturbation"))
        post = _per_perturbation_name(post_ctx, cells, [data.perturbation_names[g]
                                                        for g in pert_ids])
        title = "posterior P(I=1 | cells)\nof all its doses"
        panels.append((title, post))
    truth = _shown_truth(true_targets, data, first)
    rows = np.arange(len(pert_ids))
    if order == "similarity":
        rows = similarity_order(np.concatenate([v for _, v in panels], axis=1))
        panels = [(title, values[rows]) for title, values in panels]
        truth = None if truth is None else truth[rows]
    labels = [data.perturbation_names[pert_ids[r]] for r in rows]

    n_pert, d = len(pert_ids), data.n_vars
    rotation = 90 if d * max(len(n) for n in data.var_names) > 24 else 0
    stacked = d > 16  # many variables: panels one above the other, not side by side
    size = (1.6 + (0.25 if stacked else 0.32) * d, 1.3 + 0.24 * n_pert
            + (0.06 * max(len(n) for n in data.var_names) if rotation else 0.0))
    fig, axes = axes_grid(ax, len(panels), 1 if stacked else len(panels), size,
                          **({} if stacked else {"sharey": True}))
    image = None
    for i, (a, (title, values)) in enumerate(zip(axes, panels, strict=True)):
        a.set_facecolor("0.85")  # NaN (no cells) shows the background
        image = a.imshow(np.ma.masked_invalid(values), vmin=0.0, vmax=1.0, cmap="Blues",
                         aspect="auto", interpolation="nearest")
        a.set_title(title, fontsize=9)
        a.set_xticks(range(d), [data.var_names[j] for j in range(d)],
                     rotation=rotation, fontsize=8)
        a.set_yticks(range(n_pert), labels, fontsize=8)
        a.tick_params(axis="y", labelleft=(i == 0 or stacked))
        a.set_xlabel(variable_label)
        if i == 0 or stacked:
            a.set_ylabel(perturbation_label)
        if truth is not None:
            for r, j in zip(*np.nonzero(truth), strict=True):
                a.add_patch(Rectangle((j - 0.5, r - 0.5), 1.0, 1.0, fill=False, lw=1.6,
                                      edgecolor=TRUTH_COLOR, gid="true_target"))
    fig.colorbar(image, ax=list(axes), label="target probability", shrink=0.9)
    _legend(fig, axes, own_figure=ax is None, truth=truth is not None,
            blank=posterior and np.isnan(panels[-1][1]).any(),
            perturbation_label=perturbation_label)
    return fig, axes


def _shown_truth(true_targets, data: PerturbationData, first) -> np.ndarray | None:
    """`true_targets` as bool `(n_shown, n_vars)` rows of the perturbations shown (their
    first contexts `first`), or None."""
    if true_targets is None:
        return None
    truth = np.asarray(true_targets, dtype=bool)
    if truth.shape == (data.n_contexts, data.n_vars):
        return truth[first]
    if truth.shape != (len(first), data.n_vars):
        raise ValueError(
            f"true_targets must have shape ({data.n_contexts}, {data.n_vars}) (contexts) or "
            f"({len(first)}, {data.n_vars}) (perturbations shown), got {truth.shape}")
    return truth


def _legend(fig, axes, *, own_figure: bool, truth: bool, blank: bool,
            perturbation_label: str) -> None:
    """The legend of the outlines (true targets) and the grey cells (no cells), if any."""
    handles = []
    if truth:
        handles.append(Patch(fill=False, edgecolor=TRUTH_COLOR, label="true target"))
    if blank:
        handles.append(Patch(color="0.85", label=f"no cells of this {perturbation_label}"))
    if not handles:
        return
    if own_figure:
        fig.legend(handles=handles, loc="outside lower center", fontsize=8, frameon=False,
                   ncols=len(handles))
    else:
        axes[-1].legend(handles=handles, loc="upper right", fontsize=7)
