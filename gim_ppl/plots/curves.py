"""Figures of a fit: the loss curve and the fitted Hill dose-response curves.

- `plot_loss`: the loss curve of a fit.
- `plot_dose_response`: fitted Hill curves per (perturbation, variable), a posterior band
  when `sites` carry draws, observed context means with error bars on top.
- `plot_dose_response_grid`: one panel per likely (perturbation, target) pair
  (`dose_response_pairs`): the fitted curve in the user's dose unit, observed means ± s.e.,
  the fitted dose range, extrapolation shaded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from gim_ppl.core.hill import hill_shift
from gim_ppl.core.interventions import InterventionOutputs, intervention_shift
from gim_ppl.data import PerturbationData
from gim_ppl.datasets.doses import DoseScale, dose_response
from gim_ppl.model import GIM, posterior_mean
from gim_ppl.plots.layout import (
    FIT_COLOR,
    OBSERVED_COLOR,
    TRUTH_COLOR,
    axes_grid,
    pick_perturbations,
    resolve,
    single_axes,
)
from gim_ppl.summary import observed_effects

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
    has_draws = model.check_sites(sites)
    firsts = data.subset(first)
    heads = model.intervention_outputs(sites, firsts)  # each (n_draws?, n_pert, d)
    prob = posterior_mean(model, sites, model.target_probabilities(sites, firsts))
    if variables is None:
        order = np.argsort(-prob.max(0), kind="stable")
        var_ids = sorted(order[:min(max_variables, data.n_vars)].tolist())
    else:
        var_ids = resolve(data.var_names, variables, "variable")

    max_dose = float(np.max(np.asarray(data.dose)))
    doses = np.linspace(0.0, 1.08 * max(max_dose, 1e-6), int(n_doses))
    # each panel's heads at every dose of the grid, (n_draws, n_pert, n_doses, d)
    grid = InterventionOutputs(*((v if has_draws else v[None])[..., None, :] for v in heads))
    curves = np.moveaxis(np.asarray(intervention_shift(grid, doses)), -2, -1)
    # (n_draws, n_pert, d, n_doses)
    effects = observed_effects(model, sites, data) if data.x is not None else None

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


def dose_response_pairs(model: GIM, sites: Mapping, data: PerturbationData, *,
                        heldout: Sequence[str] = (), top: int = 3,
                        min_probability: float = 0.5) -> list[tuple[int, int]]:
    """The (perturbation id, variable) pairs `plot_dose_response_grid` draws, in panel order.

    Rule: a variable is shown for a perturbation when its prior target probability π(z) or,
    given cells, its posterior probability of being a target at its doses
    (`GIM.posterior_targets(per="perturbation")` on the contexts not in `heldout`: a
    target seen only at the highest dose counts) reaches `min_probability`; at most `top`
    per perturbation, ranked by that probability (the larger of the two) × |the model's
    effect at the highest dose| (`gim_ppl.summary.target_table`'s `score`). A Hill curve
    says what the perturbation does to a variable *if* it is a target, so the others are
    not drawn.
    """
    if not 0.0 <= min_probability <= 1.0:
        raise ValueError(f"min_probability must be in [0, 1], got {min_probability}")
    if top < 1:
        raise ValueError(f"top must be at least 1, got {top}")
    pert_ids, first = pick_perturbations(data, None)
    prob = posterior_mean(model, sites, model.target_probabilities(
        sites, data.contexts_only().subset(first)))
    best = prob.copy()
    fitted = ~np.isin(np.asarray(data.context_names), list(heldout))
    if data.x is not None and fitted.any():
        seen = data.subset(fitted)
        post = posterior_mean(model, sites, model.posterior_targets(sites, seen,
                                                                    per="perturbation"))
        pert = np.asarray(seen.perturbation)
        for i, g in enumerate(pert_ids):
            if (pert == g).any():
                best[i] = np.maximum(best[i], post[np.flatnonzero(pert == g)[0]])
    pert, dose = np.asarray(data.perturbation), np.asarray(data.dose, dtype=float)
    top_rows = [int(np.flatnonzero(pert == g)[np.argmax(dose[pert == g])]) for g in pert_ids]
    size = np.abs(posterior_mean(model, sites, model.hill_effects(
        sites, data.contexts_only().subset(top_rows))))
    pairs = []
    for i, g in enumerate(pert_ids):
        order = np.argsort(-best[i] * size[i], kind="stable")
        pairs += [(int(g), int(j)) for j in order if best[i, j] >= min_probability][:top]
    return pairs


def plot_dose_response_grid(
    model: GIM,
    sites: Mapping,
    data: PerturbationData,
    dose_scale: DoseScale | None = None,
    *,
    heldout: Sequence[str] = (),
    top: int = 3,
    min_probability: float = 0.5,
    expression_unit: str | None = None,
    n_doses: int = 200,
    ncols: int = 4,
    ax=None,
) -> tuple[Figure, np.ndarray]:
    """One panel per likely (perturbation, target): the fitted Hill curve in the user's dose
    unit, the observed effect at each tested dose, and where the curve is extrapolated.

    Which pairs: `dose_response_pairs` (π(z) or P(I = 1 | cells) ≥ `min_probability`, at
    most `top` per perturbation). Each panel shows, on a log dose axis (a decade beyond the
    tested doses on either side):

    - the curve `gim_ppl.datasets.dose_response` (solid over the doses the fit saw, dashed
      beyond them), with the doses outside the fitted range shaded;
    - with cells, the observed mean effect ± 1 standard error at each of the
      perturbation's doses: the mean of `x_j − f_j(parents)` over the context's cells for
      shift interventions (what the curve predicts; `x_j` for replace interventions),
      filled for fitted doses, open for doses named in `heldout`;
    - a line at 0 (no effect: the control level).

    Titles give the prior π(z) and the posterior P(I = 1 | cells of the fitted doses); axes
    name the variable and the units. With draws in `sites`, π and the Hill parameters are
    posterior means (EC50 averaged in user units, as in `gim_ppl.summary.hill_table`).

    Args:
        model, sites: the fitted model (a point or draws).
        data: the contexts, with cells for the observed points (centred as the cells the
            model was fit to, e.g. `shift_cells(data, -offset)`).
        dose_scale: the user's dose unit; default the data's (`DoseScale.of(data)`).
        heldout: names of contexts not fitted (e.g. `test.context_names`).
        top, min_probability: which pairs are drawn (`dose_response_pairs`).
        expression_unit: the unit of the cells (e.g. "log1p expr."), for the y labels.
        n_doses: points per curve.
        ax: one Axes per pair (`len(dose_response_pairs(...))`), or None (a grid with
            `ncols` columns).
    Returns:
        `(fig, axes (n_pairs,))`; with no pair to draw, one panel that says so. Artists
        carry gids: "fit" and "fit_extrapolated" (curve pieces), "extrapolation" (shading),
        "observed" and "observed_heldout" (points).
    """
    scale = DoseScale.of(data) if dose_scale is None else dose_scale
    heldout = set(heldout)
    pairs = dose_response_pairs(model, sites, data, heldout=heldout, top=top,
                                min_probability=min_probability)
    doses = scale.to_user(np.asarray(data.dose))
    positive = doses[doses > 0]
    if positive.size == 0:
        raise ValueError("data has no positive doses to draw")
    if not pairs:
        fig, axes = axes_grid(ax, 1, 1, (4.0, 2.4))
        axes[0].text(0.5, 0.5, f"no perturbation has a variable with target probability "
                     f"≥ {min_probability:g}", ha="center", va="center", fontsize=9,
                     transform=axes[0].transAxes, wrap=True)
        axes[0].set_axis_off()
        return fig, axes

    pert_ids, first = pick_perturbations(data, None)
    row_of = {int(g): i for i, g in enumerate(pert_ids)}
    firsts = data.contexts_only().subset(first)
    prob = posterior_mean(model, sites, model.target_probabilities(sites, firsts))
    hill = model.hill_parameters(sites, firsts)
    ec50 = posterior_mean(model, sites, scale.to_user(hill["ec50"]))
    emax = posterior_mean(model, sites, hill["emax"])
    coefficient = posterior_mean(model, sites, hill["hill"])
    grid = np.geomspace(positive.min() / 10, positive.max() * 10, int(n_doses))
    names = np.asarray(data.context_names)
    fitted_ctx = ~np.isin(names, list(heldout))
    pert = np.asarray(data.perturbation)
    effects = post = None
    if data.x is not None:
        effects = observed_effects(model, sites, data)
        if fitted_ctx.any():
            seen = data.subset(fitted_ctx)
            post_ctx = posterior_mean(model, sites, model.posterior_targets(
                sites, seen, per="perturbation"))
            seen_pert = np.asarray(seen.perturbation)
            post = {int(g): post_ctx[np.flatnonzero(seen_pert == g)[0]] for g in pert_ids
                    if (seen_pert == g).any()}
    shift = model.intervention_effect == "shift"
    unit = f" ({expression_unit})" if expression_unit else ""

    fig, axes = axes_grid(ax, len(pairs), ncols, (3.3, 2.7))
    for a, (g, j) in zip(axes, pairs, strict=True):
        i, gene = row_of[g], data.var_names[j]
        mine = np.flatnonzero((pert == g) & (doses > 0))
        fit_doses = doses[mine[fitted_ctx[mine]]]
        lo, hi = (fit_doses.min(), fit_doses.max()) if fit_doses.size else (np.inf, -np.inf)
        curve = dose_response(scale, grid, emax[i, j], ec50[i, j], coefficient[i, j])
        inside = (grid >= lo) & (grid <= hi)
        color = FIT_COLOR
        if inside.any():
            a.plot(np.where(inside, grid, np.nan), curve, color=color, lw=2.0, gid="fit")
        outside = ~inside  # one point wider on each side, so the two pieces meet
        outside[1:] |= ~inside[:-1]
        outside[:-1] |= ~inside[1:]
        a.plot(np.where(outside, grid, np.nan), curve, color=color, lw=1.5, ls="--",
               gid="fit_extrapolated")
        if fit_doses.size:
            a.axvspan(grid[0], lo, color="0.88", lw=0, zorder=0, gid="extrapolation")
            a.axvspan(hi, grid[-1], color="0.88", lw=0, zorder=0, gid="extrapolation")
        else:
            a.axvspan(grid[0], grid[-1], color="0.88", lw=0, zorder=0, gid="extrapolation")
        a.axhline(0.0, color="black", lw=0.6, zorder=1)
        if effects is not None:
            for held, rows in ((False, mine[fitted_ctx[mine]]), (True, mine[~fitted_ctx[mine]])):
                if rows.size == 0:
                    continue
                bars = a.errorbar(doses[rows], effects[rows, j, 0], yerr=effects[rows, j, 1],
                                  fmt="o", ms=5, capsize=2, color=OBSERVED_COLOR,
                                  mfc="white" if held else OBSERVED_COLOR, zorder=3)
                bars.lines[0].set_gid("observed_heldout" if held else "observed")
        a.set_xscale("log")
        a.set_xlim(grid[0], grid[-1])
        posterior = "" if post is None or g not in post else (
            f", P(I=1 | cells) = {post[g][j]:.2f}")
        a.set_title(f"{data.perturbation_names[g]} → {gene}\nπ = {prob[i, j]:.2f}{posterior}",
                    fontsize=8.5)
        a.set_xlabel(f"dose ({scale.unit})", fontsize=8)
        a.set_ylabel((f"shift of {gene}" if shift else f"mean {gene}") + unit, fontsize=8)
        a.tick_params(labelsize=7)
    if ax is None:
        fig.legend(handles=_grid_legend(effects is not None, shift), loc="outside lower center",
                   ncols=3, fontsize=7.5, frameon=False)
        fig.suptitle(f"Hill dose-response of each likely target (π or P(I=1 | cells) ≥ "
                     f"{min_probability:g}, at most {top} per perturbation)", fontsize=10)
    return fig, axes


def _grid_legend(with_points: bool, shift: bool) -> list:
    """Legend handles explaining every mark of `plot_dose_response_grid`."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [
        Line2D([], [], color=FIT_COLOR, lw=2.0, label="fitted Hill curve, fitted doses"),
        Line2D([], [], color=FIT_COLOR, lw=1.5, ls="--", label="curve extrapolated"),
        Patch(color="0.88", label="outside the fitted doses"),
        Line2D([], [], color="black", lw=0.6, label="no effect (control level)"),
    ]
    if with_points:
        what = "x − f(parents)" if shift else "x"
        handles += [
            Line2D([], [], color=OBSERVED_COLOR, marker="o", ls="",
                   label=f"observed mean {what} ± s.e., fitted dose"),
            Line2D([], [], color=OBSERVED_COLOR, marker="o", mfc="white", ls="",
                   label="observed, held-out dose"),
        ]
    return handles
