"""Figures of benchmark results: `plot_learning_curve` (a metric against the number of
training perturbations, one line per method, a band of ± one sd over seeds)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gim_ppl.plots.layout import single_axes


def plot_learning_curve(summary: dict, metric: str = "full_ood_mean_error", *,
                        methods: Sequence[str] | None = None, ax=None):
    """Plot `metric` against the number of training perturbations.

    Args:
        summary: `{method: {n: {metric: {"mean", "sd"}}}}` (`learning_curve.curve_summary`;
            sizes may be str keys, as read back from JSON).
        metric: a key of the summary, e.g. "full_ood_wasserstein", "target_auroc_full_ood".
        methods: the methods to draw (default every method that has `metric`).
    Returns:
        `(fig, ax)`.
    """
    names = list(summary) if methods is None else list(methods)
    unknown = [m for m in names if m not in summary]
    if unknown:
        raise ValueError(f"methods {unknown} are not in the summary ({list(summary)})")
    fig, ax = single_axes(ax, (5.0, 3.5))
    drawn = 0
    for method in names:
        points = sorted((int(n), cell[metric]) for n, cell in summary[method].items()
                        if metric in cell)
        if not points:
            continue
        n = np.array([p[0] for p in points])
        mean = np.array([p[1]["mean"] for p in points])
        sd = np.array([p[1]["sd"] for p in points])
        (line,) = ax.plot(n, mean, marker="o", label=method)
        ax.fill_between(n, mean - sd, mean + sd, color=line.get_color(), alpha=0.15)
        drawn += 1
    if drawn == 0:
        raise ValueError(f"no method in the summary has the metric {metric!r}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("training perturbations")
    ax.set_ylabel(metric)
    ax.legend(fontsize="small")
    return fig, ax


__all__ = ["plot_learning_curve"]
