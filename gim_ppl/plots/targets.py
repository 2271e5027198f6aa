"""Figure of the intervention targets: `plot_targets`, target probabilities (perturbations ×
variables), the prior π(z) beside the posterior P(I = 1 | cells), true targets outlined."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from gim_ppl.data import PerturbationData
from gim_ppl.model import GIM
from gim_ppl.plots.layout import TRUTH_COLOR, axes_grid, pick_perturbations, posterior_mean


def _per_perturbation(values, data: PerturbationData, ids) -> np.ndarray:
    """Mean of `values (n_contexts, …)` over the contexts of each perturbation in `ids`."""
    values = np.asarray(values)
    pert = np.asarray(data.perturbation)
    return np.stack([values[pert == g].mean(0) for g in ids])


def plot_targets(
    model: GIM,
    sites: Mapping,
    data: PerturbationData,
    *,
    true_targets=None,
    perturbations=None,
    posterior: bool | None = None,
    ax=None,
) -> tuple[Figure, np.ndarray]:
    """Heatmaps of target probabilities, perturbations × variables, in [0, 1].

    Left: the prior π(z) the intervention model assigns from the features (what is used
    for an unseen perturbation). Right (when `data` has cells): the posterior
    `P(I = 1 | cells)`, averaged over the perturbation's contexts (doses); with
    `shared_targets` all doses share one posterior. True targets, when given, are outlined.

    Args:
        model, sites: the fitted model (a point or draws; draws are averaged).
        data: the contexts; rows are the perturbations present in it.
        true_targets: bool `(n_contexts, n_vars)` aligned with `data` (e.g.
            `bench.truth.targets["train"]`) or `(n_perturbations_shown, n_vars)`.
        perturbations: names or indices of the perturbations to show (default: all present).
        posterior: draw the posterior panel (default: when `data` has cells).
        ax: one Axes per panel (1 or 2), or None.
    Returns:
        `(fig, axes)` with `axes (n_panels,)`; a shared colour bar is added to the figure.
    """
    pert_ids, first = pick_perturbations(data, perturbations)
    posterior = data.x is not None if posterior is None else bool(posterior)
    if posterior and data.x is None:
        raise ValueError("the posterior panel needs cells: data.x is None")
    prior = posterior_mean(model, sites, model.target_probabilities(sites, data.subset(first)))
    panels = [("prior π(z) from features", prior)]
    if posterior:
        post = posterior_mean(model, sites, model.posterior_targets(sites, data))
        post = _per_perturbation(post, data, pert_ids)
        title = "posterior P(I=1 | cells)" + ("" if model.shared_targets else ", mean over doses")
        panels.append((title, post))
    truth = None
    if true_targets is not None:
        truth = np.asarray(true_targets, dtype=bool)
        if truth.shape == (data.n_contexts, data.n_vars):
            truth = truth[first]
        elif truth.shape != (len(pert_ids), data.n_vars):
            raise ValueError(
                f"true_targets must have shape ({data.n_contexts}, {data.n_vars}) (contexts) or "
                f"({len(pert_ids)}, {data.n_vars}) (perturbations shown), got {truth.shape}")

    n_pert, d = len(pert_ids), data.n_vars
    rotation = 90 if d * max(len(n) for n in data.var_names) > 24 else 0
    size = (1.2 + 0.32 * d, 1.3 + 0.24 * n_pert)
    fig, axes = axes_grid(ax, len(panels), len(panels), size, sharey=True)
    image = None
    for i, (a, (title, values)) in enumerate(zip(axes, panels, strict=True)):
        image = a.imshow(values, vmin=0.0, vmax=1.0, cmap="Blues", aspect="auto",
                         interpolation="nearest")
        a.set_title(title, fontsize=9)
        a.set_xticks(range(d), [data.var_names[j] for j in range(d)],
                     rotation=rotation, fontsize=8)
        a.set_yticks(range(n_pert), [data.perturbation_names[g] for g in pert_ids], fontsize=8)
        a.tick_params(axis="y", labelleft=(i == 0))
        a.set_xlabel("variable")
        if i == 0:
            a.set_ylabel("perturbation")
        if truth is not None:
            for r, j in zip(*np.nonzero(truth), strict=True):
                a.add_patch(Rectangle((j - 0.5, r - 0.5), 1.0, 1.0, fill=False, lw=1.6,
                                      edgecolor=TRUTH_COLOR, gid="true_target"))
    fig.colorbar(image, ax=list(axes), label="target probability", shrink=0.9)
    if truth is not None:
        handle = Patch(fill=False, edgecolor=TRUTH_COLOR, label="true target")
        if ax is None:
            fig.legend(handles=[handle], loc="outside lower center", fontsize=8, frameon=False)
        else:
            axes[-1].legend(handles=[handle], loc="upper right", fontsize=7)
    return fig, axes
