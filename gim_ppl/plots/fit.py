"""Figures of a fit: the loss curve and the fitted Hill dose-response curves.

- `plot_loss`: the loss curve of a fit.
- `plot_dose_response`: fitted Hill curves per (perturbation, variable), a posterior band
  when `sites` carry draws, observed context means with error bars on top.
- `plot_dose_response_grid`: one panel per perturbation, the Hill curves of its most
  probable targets in the user's dose unit (`DoseScale`), held-out doses marked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from gim_ppl.core.hill import hill_shift
from gim_ppl.core.mechanisms import masked_weights, mechanism_mean
from gim_ppl.data import PerturbationData
from gim_ppl.datasets.doses import DoseScale, dose_response
from gim_ppl.model import GIM
from gim_ppl.plots.layout import (
    FIT_COLOR,
    OBSERVED_COLOR,
    TRUTH_COLOR,
    axes_grid,
    pick_perturbations,
    posterior_mean,
    resolve,
    single_axes,
)


def _draw_params(model: GIM, sites) -> tuple[dict, bool]:
    """Site values as jnp arrays with a leading draw axis, and whether draws were given."""
    draws = model.check_sites(sites)
    params = {s: jnp.asarray(sites[s]) for s in model.site_shapes}
    return (params if draws else {s: v[None] for s, v in params.items()}), draws


# --- loss -------------------------------------------------------------------------------


def plot_loss(losses, *, ax: Axes | None = None, window: int | None = None,
              skip: float = 0.02, label: str | None = None) -> tuple[Figure, Axes]:
    """The loss curve of a fit: raw loss per step (thin) and its running mean (thick).

    Args:
        losses: `(n_steps,)` losses, or anything with a `.losses` attribute (`FitResult`,
            NumPyro's `SVIRunResult`).
        window: running-mean window (default: 1/50 of the steps).
        skip: fraction of the first steps left out of the y-range (the initial transient
            is orders of magnitude above the rest); they are still drawn.
        label: legend label of the running mean (also enables the legend).
    Returns:
        `(fig, ax)`.
    """
    values = np.asarray(getattr(losses, "losses", losses), dtype=float).ravel()
    if values.size == 0:
        raise ValueError("losses is empty")
    fig, ax = single_axes(ax, (6.0, 3.2))
    steps = np.arange(values.size)
    window = max(1, values.size // 50) if window is None else max(1, int(window))
    ax.plot(steps, values, color=FIT_COLOR, alpha=0.3, lw=0.6)
    smooth = np.convolve(values, np.ones(window) / window, mode="valid")
    ax.plot(steps[window - 1:], smooth, color=FIT_COLOR, lw=1.8, label=label)
    tail = values[int(skip * values.size):]
    tail = tail[np.isfinite(tail)]
    if tail.size:
        lo, hi = float(tail.min()), float(np.quantile(tail, 0.99))
        pad = 0.05 * max(hi - lo, 1e-12 + 1e-6 * abs(hi))
        ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (negative ELBO)")
    ax.set_xlim(0, max(values.size - 1, 1))
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))
    if label is not None:
        ax.legend()
    return fig, ax


# --- dose-response ----------------------------------------------------------------------


def _residual_means(model: GIM, params: dict, data: PerturbationData) -> np.ndarray:
    """`(n_contexts, n_vars, 2)`: mean and standard error of the effect on each variable.

    Shift interventions: the effect is the residual `x − f(x)` (f averaged over draws);
    replace interventions: the value `x` itself (the Hill curve is its mean).
    """
    x = jnp.asarray(data.x)
    if model.intervention_effect == "shift":
        def fitted(p):
            p = {**p, "weights": masked_weights(p["weights"])}
            return mechanism_mean(model.mechanism, p, x)
        effect = np.asarray(x - jax.vmap(fitted)(params).mean(0))
    else:
        effect = np.asarray(x)
    moments = data.replace(x=effect).context_moments()
    n = moments.count[:, None]
    mean = moments.mean
    var = moments.var * n / np.maximum(n - 1.0, 1.0)  # unbiased
    return np.stack([mean, np.sqrt(var / n)], axis=-1)


def plot_dose_response(
    model: GIM,
    sites: Mapping,
    data: PerturbationData,
    perturbations=None,
    variables=None,
    *,
    true_hill: Mapping | None = None,
    true_targets=None,
    band: float = 0.9,
    n_doses: int = 101,
    max_variables: int = 4,
    legend: bool = True,
    ax=None,
) -> tuple[Figure, np.ndarray]:
    """Fitted Hill curves per (perturbation, variable) with observed context means on top.

    Rows are perturbations, columns variables. The curve is the effect of the intervention
    if the variable is targeted: the shift `E · c^h / (EC50^h + c^h)` of x_j away from its
    mechanism `f_j(parents)` (for `intervention_effect="replace"`, the mean x_j is set to).
    The points are, per context of the perturbation (and the control at dose 0), the mean
    of the same quantity over its cells — `x_j − f_j(x)` for shift interventions — with
    ±1 standard error. A targeted variable's points follow the curve; a non-targeted one's
    stay at 0. Each panel states the prior target probability π(z).

    Args:
        model, sites: the fitted model; `sites` a point or draws (then the curve is the
            posterior median and a central `band` interval is shaded).
        data: contexts with cells (points are drawn only if `data.x` is given).
        perturbations: names or indices into `data.perturbation_names` (default: the
            first perturbation present in `data`).
        variables: names or indices into `data.var_names` (default: the `max_variables`
            variables with the highest π over the chosen perturbations).
        true_hill: optional ground truth `dict(emax, ec50, hill)`, each `(n_contexts, n_vars)`
            aligned with `data` (e.g. `bench.truth.hill["train"]`); drawn dashed.
        true_targets: `(n_contexts, n_vars)` bool aligned with `data`; required with
            `true_hill` (a non-targeted variable's true curve is 0).
        legend: draw a legend (below a new figure; in the first panel of given axes).
        ax: one Axes per panel (`n_perturbations · n_variables`, row-major), or None.
    Returns:
        `(fig, axes)` with `axes (n_perturbations, n_variables)`. Artists carry gids for
        inspection: "fit" (curve), "band", "truth", "observed", "control".
    """
    if not 0.0 < band < 1.0:
        raise ValueError(f"band must be in (0, 1), got {band}")
    if (true_hill is None) != (true_targets is None):
        raise ValueError("give true_hill and true_targets together")
    pert_ids, first = pick_perturbations(data, perturbations)
    if perturbations is None:
        pert_ids, first = pert_ids[:1], first[:1]
    params, has_draws = _draw_params(model, sites)
    firsts = data.subset(first)
    hill = model.hill_parameters(sites, firsts)  # each (n_draws?, n_pert, d)
    prob = posterior_mean(model, sites, model.target_probabilities(sites, firsts))
    if variables is None:
        order = np.argsort(-prob.max(0), kind="stable")
        var_ids = sorted(order[:min(max_variables, data.n_vars)].tolist())
    else:
        var_ids = resolve(data.var_names, variables, "variable")

    max_dose = float(np.max(np.asarray(data.dose)))
    doses = np.linspace(0.0, 1.08 * max(max_dose, 1e-6), int(n_doses))
    hill = {k: v if has_draws else v[None] for k, v in hill.items()}
    curves = np.asarray(hill_shift(
        doses[None, None, None, :], hill["emax"][..., None], np.log(hill["ec50"])[..., None],
        np.log(hill["hill"])[..., None]))  # (n_draws, n_pert, d, n_doses)
    effects = _residual_means(model, params, data) if data.x is not None else None

    n_rows, n_cols = len(pert_ids), len(var_ids)
    fig, axes = axes_grid(ax, n_rows * n_cols, n_cols, (3.0, 2.4), sharex=True)
    axes = axes.reshape(n_rows, n_cols)
    pert = np.asarray(data.perturbation)
    obs = np.asarray(data.observational)
    dose = np.asarray(data.dose)
    ylabel = "x − f(parents)" if model.intervention_effect == "shift" else "mean of x"
    lower, upper = (1.0 - band) / 2.0, (1.0 + band) / 2.0
    for r, (g, k0) in enumerate(zip(pert_ids, first, strict=True)):
        for c, j in enumerate(var_ids):
            a = axes[r, c]
            curve = curves[:, r, j]
            a.axhline(0.0, color="0.8", lw=0.8, zorder=0)
            if has_draws:
                a.fill_between(doses, np.quantile(curve, lower, 0), np.quantile(curve, upper, 0),
                               color=FIT_COLOR, alpha=0.25, lw=0, gid="band",
                               label=f"{round(100 * band)}% posterior band")
            a.plot(doses, np.median(curve, 0), color=FIT_COLOR, lw=2.0, gid="fit",
                   label="posterior median curve" if has_draws else "fitted Hill curve")
            if true_hill is not None:
                h = {key: np.asarray(true_hill[key])[k0, j] for key in ("emax", "ec50", "hill")}
                on = bool(np.asarray(true_targets)[k0, j])
                true_curve = np.asarray(hill_shift(doses, h["emax"], np.log(h["ec50"]),
                                                   np.log(h["hill"]))) * on
                a.plot(doses, true_curve, color=TRUTH_COLOR, ls="--", lw=1.5, gid="truth",
                       label="true curve")
            if effects is not None:
                rows = np.flatnonzero(pert == g)
                bars = a.errorbar(dose[rows], effects[rows, j, 0], yerr=effects[rows, j, 1],
                                  fmt="o", color=OBSERVED_COLOR, ms=4, capsize=2,
                                  label="observed mean ± s.e.")
                bars.lines[0].set_gid("observed")
                ctrl = np.flatnonzero(obs)
                if ctrl.size:
                    bars = a.errorbar(dose[ctrl], effects[ctrl, j, 0], yerr=effects[ctrl, j, 1],
                                      fmt="s", color="0.6", ms=4, capsize=2, label="control")
                    bars.lines[0].set_gid("control")
            a.set_title(f"{data.perturbation_names[g]} → {data.var_names[j]}  "
                        f"(π = {prob[r, j]:.2f})", fontsize=9)
            if r == n_rows - 1:
                a.set_xlabel("dose")
            if c == 0:
                a.set_ylabel(ylabel)
    if legend and ax is None:
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize=8,
                   frameon=False)
    elif legend:
        axes[0, 0].legend(fontsize=7, loc="best")
    return fig, axes


def plot_dose_response_grid(
    model: GIM,
    sites: Mapping,
    data: PerturbationData,
    dose_scale: DoseScale | None = None,
    *,
    heldout: Sequence[str] = (),
    top: int = 3,
    n_doses: int = 200,
    ncols: int = 4,
    ax=None,
) -> tuple[Figure, np.ndarray]:
    """One panel per perturbation: the Hill curves of its `top` most probable targets.

    Curves are `gim_ppl.datasets.dose_response` in the user's dose unit on a log dose axis
    (a decade beyond the doses of `data` on either side); each is labelled with the
    variable and its prior target probability π(z). Vertical lines mark the doses of the
    perturbation's contexts, dashed for contexts named in `heldout`, dotted otherwise.
    With draws in `sites`, π and the Hill parameters are posterior means (EC50 averaged in
    user units, as in `gim_ppl.summary.hill_table`).

    Args:
        model, sites: the fitted model (a point or draws).
        data: the contexts (cells are not needed); panels follow its perturbations present.
        dose_scale: the `DoseScale` of `from_anndata` (default: model doses, reference 1).
        heldout: context names drawn dashed (e.g. `test.context_names`).
        top: curves per panel (the variables with the highest π).
        n_doses: points per curve.
        ax: one Axes per perturbation, or None (a grid with `ncols` columns).
    Returns:
        `(fig, axes (n_perturbations,))`. Curves carry the gid "fit", dose lines "dose" or
        "heldout_dose".
    """
    scale = DoseScale("model units", 1.0) if dose_scale is None else dose_scale
    pert_ids, first = pick_perturbations(data, None)
    firsts = data.contexts_only().subset(first)
    prob = posterior_mean(model, sites, model.target_probabilities(sites, firsts))
    hill = model.hill_parameters(sites, firsts)
    ec50 = posterior_mean(model, sites, scale.to_user(hill["ec50"]))
    emax = posterior_mean(model, sites, hill["emax"])
    coefficient = posterior_mean(model, sites, hill["hill"])
    doses = scale.to_user(np.asarray(data.dose))
    positive = doses[doses > 0]
    if positive.size == 0:
        raise ValueError("data has no positive doses to draw")
    grid = np.geomspace(positive.min() / 10, positive.max() * 10, int(n_doses))
    heldout = set(heldout)
    genes = data.var_names
    pert = np.asarray(data.perturbation)

    fig, axes = axes_grid(ax, len(pert_ids), ncols, (3.2, 2.4))
    for i, (a, g) in enumerate(zip(axes, pert_ids, strict=True)):
        for j in np.argsort(-prob[i])[:top]:
            curve = dose_response(scale, grid, emax[i, j], ec50[i, j], coefficient[i, j])
            a.plot(grid, curve, gid="fit", label=f"{genes[j]} (π={prob[i, j]:.2f})")
        for k in np.flatnonzero(pert == g):
            held = data.context_names[k] in heldout
            a.axvline(doses[k], color="grey", lw=0.8, ls="--" if held else ":",
                      gid="heldout_dose" if held else "dose")
        a.axhline(0.0, color="black", lw=0.5)
        a.set_xscale("log")
        a.set_title(data.perturbation_names[g], fontsize=9)
        a.set_xlabel(f"dose ({scale.unit})", fontsize=8)
        a.set_ylabel("shift (log expr.)", fontsize=8)
        a.legend(fontsize=6)
    if ax is None:
        fig.suptitle("Hill dose-response of each perturbation's top targets "
                     "(dashed: held-out dose)")
    return fig, axes
