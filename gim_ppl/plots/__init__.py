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
- `plot_learning_curve`: a benchmark metric against the number of training perturbations.
- `plot_marginals`, `plot_pair`, `plot_predicted_vs_observed`: predicted against observed
  cells of one context (per-variable densities and a 2-D scatter).

Modules: `layout` (colours, axes, name lookup, shared read-offs), `benchmark`, `curves` (loss
and dose-response), `targets`, `dag` (the graph), `cells` (predicted vs observed cells).
"""

from gim_ppl.plots.benchmark import plot_learning_curve
from gim_ppl.plots.cells import plot_marginals, plot_pair, plot_predicted_vs_observed
from gim_ppl.plots.curves import plot_dose_response, plot_dose_response_grid, plot_loss
from gim_ppl.plots.dag import EDGE_COLORS, edge_classes, plot_graph
from gim_ppl.plots.layout import FIT_COLOR as FIT_COLOR
from gim_ppl.plots.layout import OBSERVED_COLOR as OBSERVED_COLOR
from gim_ppl.plots.layout import PREDICTED_COLOR as PREDICTED_COLOR
from gim_ppl.plots.layout import TRUTH_COLOR as TRUTH_COLOR
from gim_ppl.plots.targets import plot_targets

__all__ = [
    "EDGE_COLORS",
    "edge_classes",
    "plot_dose_response",
    "plot_dose_response_grid",
    "plot_graph",
    "plot_learning_curve",
    "plot_loss",
    "plot_marginals",
    "plot_pair",
    "plot_predicted_vs_observed",
    "plot_targets",
]
