"""Figures for reading a fitted GIM (matplotlib).

Every function takes an optional `ax` (an `Axes`, or a sequence of them for multi-panel
figures), creates a figure when none is given, draws nothing outside it, and returns
`(fig, axes)`. Arrays may be numpy or JAX; names (variables, perturbations, contexts) come
from `PerturbationData`.

- `plot_loss`: the loss curve of a fit.
- `plot_dose_response`: fitted Hill curves per (perturbation, variable), a posterior band
  when `sites` carry draws, observed context means with error bars on top.
- `plot_dose_response_grid`: one panel per perturbation, the Hill curves of its most
  probable targets in the user's dose unit (`DoseScale`), held-out doses marked.
- `plot_targets`: target probabilities (perturbations × variables), prior π(z) beside the
  posterior P(I = 1 | cells), true targets outlined.
- `plot_graph`: the learned DAG, edge width by |weight|, optionally against a true graph
  (missing / extra / reversed edges coloured).
- `plot_marginals`, `plot_pair`, `plot_predicted_vs_observed`: predicted against observed
  cells of one context (per-variable densities and a 2-D scatter).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from gim_ppl.core.graph import topological_order
from gim_ppl.core.hill import hill_shift
from gim_ppl.core.mechanisms import masked_weights, mechanism_mean
from gim_ppl.data import PerturbationData
from gim_ppl.datasets.doses import DoseScale, dose_response
from gim_ppl.model import GIM

OBSERVED_COLOR = "0.25"
PREDICTED_COLOR = "tab:orange"
FIT_COLOR = "tab:blue"
TRUTH_COLOR = "tab:red"
#: Edge colours of `plot_graph` by class (learned graph against a true graph).
EDGE_COLORS = {
    "edge": "0.2",  # a learned edge, no truth given
    "correct": "0.2",
    "reversed": "tab:orange",
    "extra": "tab:red",
    "missing": "tab:blue",
}


# --- shared plumbing --------------------------------------------------------------------


def _axes_grid(ax, n_panels: int, ncols: int, panel_size: tuple[float, float],
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


def _single_axes(ax, figsize) -> tuple[Figure, Axes]:
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize, layout="constrained")
        return fig, ax
    if not isinstance(ax, Axes):
        raise TypeError(f"ax must be a matplotlib Axes, got {type(ax).__name__}")
    return ax.figure, ax


def _resolve(names: Sequence[str], which, what: str) -> list[int]:
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


def _pick_perturbations(data: PerturbationData, perturbations) -> tuple[list[int], list[int]]:
    """Chosen perturbation ids (default: all present) and the first context of each."""
    ids, first = data.perturbation_contexts()
    if ids.size == 0:
        raise ValueError("data has no perturbational contexts")
    if perturbations is None:
        return list(ids), list(first)
    chosen = _resolve(data.perturbation_names, perturbations, "perturbation")
    where = {int(g): int(k) for g, k in zip(ids, first, strict=True)}
    absent = [data.perturbation_names[g] for g in chosen if g not in where]
    if absent:
        raise ValueError(f"perturbations {absent} have no context in data")
    return chosen, [where[g] for g in chosen]


def _per_perturbation(values, data: PerturbationData, ids) -> np.ndarray:
    """Mean of `values (n_contexts, …)` over the contexts of each perturbation in `ids`."""
    values = np.asarray(values)
    pert = np.asarray(data.perturbation)
    return np.stack([values[pert == g].mean(0) for g in ids])


def _draw_params(model: GIM, sites) -> tuple[dict, bool]:
    """Site values as jnp arrays with a leading draw axis, and whether draws were given."""
    draws = model.check_sites(sites)
    params = {s: jnp.asarray(sites[s]) for s in model.site_shapes}
    return (params if draws else {s: v[None] for s, v in params.items()}), draws


def _posterior_mean(model: GIM, sites, values) -> np.ndarray:
    """A read-off averaged over draws when `sites` carry them (read-offs keep the draw axis)."""
    values = np.asarray(values)
    return values.mean(0) if model.check_sites(sites) else values


def _cells(data: PerturbationData, context: int) -> np.ndarray:
    """`(n_cells_of_context, n_vars)` cells of one context."""
    if data.x is None:
        raise ValueError("data has no cells (x is None)")
    return np.asarray(data.x)[np.asarray(data.context) == context]


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
    fig, ax = _single_axes(ax, (6.0, 3.2))
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
    pert_ids, first = _pick_perturbations(data, perturbations)
    if perturbations is None:
        pert_ids, first = pert_ids[:1], first[:1]
    params, has_draws = _draw_params(model, sites)
    firsts = data.subset(first)
    hill = model.hill_parameters(sites, firsts)  # each (n_draws?, n_pert, d)
    prob = _posterior_mean(model, sites, model.target_probabilities(sites, firsts))
    if variables is None:
        order = np.argsort(-prob.max(0), kind="stable")
        var_ids = sorted(order[:min(max_variables, data.n_vars)].tolist())
    else:
        var_ids = _resolve(data.var_names, variables, "variable")

    max_dose = float(np.max(np.asarray(data.dose)))
    doses = np.linspace(0.0, 1.08 * max(max_dose, 1e-6), int(n_doses))
    hill = {k: v if has_draws else v[None] for k, v in hill.items()}
    curves = np.asarray(hill_shift(
        doses[None, None, None, :], hill["emax"][..., None], np.log(hill["ec50"])[..., None],
        np.log(hill["hill"])[..., None]))  # (n_draws, n_pert, d, n_doses)
    effects = _residual_means(model, params, data) if data.x is not None else None

    n_rows, n_cols = len(pert_ids), len(var_ids)
    fig, axes = _axes_grid(ax, n_rows * n_cols, n_cols, (3.0, 2.4), sharex=True)
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
    pert_ids, first = _pick_perturbations(data, None)
    firsts = data.contexts_only().subset(first)
    prob = _posterior_mean(model, sites, model.target_probabilities(sites, firsts))
    hill = model.hill_parameters(sites, firsts)
    ec50 = _posterior_mean(model, sites, scale.to_user(hill["ec50"]))
    emax = _posterior_mean(model, sites, hill["emax"])
    coefficient = _posterior_mean(model, sites, hill["hill"])
    doses = scale.to_user(np.asarray(data.dose))
    positive = doses[doses > 0]
    if positive.size == 0:
        raise ValueError("data has no positive doses to draw")
    grid = np.geomspace(positive.min() / 10, positive.max() * 10, int(n_doses))
    heldout = set(heldout)
    genes = data.var_names
    pert = np.asarray(data.perturbation)

    fig, axes = _axes_grid(ax, len(pert_ids), ncols, (3.2, 2.4))
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


# --- targets ----------------------------------------------------------------------------


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
    pert_ids, first = _pick_perturbations(data, perturbations)
    posterior = data.x is not None if posterior is None else bool(posterior)
    if posterior and data.x is None:
        raise ValueError("the posterior panel needs cells: data.x is None")
    prior = _posterior_mean(model, sites, model.target_probabilities(sites, data.subset(first)))
    panels = [("prior π(z) from features", prior)]
    if posterior:
        post = _posterior_mean(model, sites, model.posterior_targets(sites, data))
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
    fig, axes = _axes_grid(ax, len(panels), len(panels), size, sharey=True)
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


# --- graph ------------------------------------------------------------------------------


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
    fig, ax = _single_axes(ax, (min(3.0 + 1.1 * (span[0] + 1), 14.0),
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


# --- predicted vs observed --------------------------------------------------------------


def _context_index(data: PerturbationData, context) -> int:
    return _resolve(data.context_names, context, "context")[0]


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
    var_ids = _resolve(names, variables, "variable")
    cells = {label: _cells(d, _context_index(d, _context_name(sources, context)))
             for label, d in sources}
    fig, axes = _axes_grid(ax, len(var_ids), ncols, (2.4, 1.9))
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
    pair_ids = _resolve(names, pair, "variable")
    if len(pair_ids) != 2:
        raise ValueError(f"pair must name two variables, got {pair!r}")
    i, j = pair_ids
    fig, ax = _single_axes(ax, (3.6, 3.4))
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
    var_ids = _resolve(names, variables, "variable")
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
        fig, axes = _axes_grid(ax, len(var_ids) + 1, ncols, (2.4, 1.9))
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


__all__ = [
    "EDGE_COLORS",
    "edge_classes",
    "plot_dose_response",
    "plot_dose_response_grid",
    "plot_graph",
    "plot_loss",
    "plot_marginals",
    "plot_pair",
    "plot_predicted_vs_observed",
    "plot_targets",
]
