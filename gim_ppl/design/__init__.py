"""Designing and querying experiments with a fitted GIM.

`experiments`: which experiment to run next, by the expected information gain of candidate
perturbations (`rank_experiments`; `QUANTITIES`, what it can be about, in `quantities`).
`queries`: causal queries as NumPyro handlers on the model's `targets` and `noise` sites.
Both need jax and are imported on first use (`gim_ppl.lazy`).
"""

from gim_ppl.design.quantities import QUANTITIES
from gim_ppl.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "gim_ppl.design.experiments": ["information_terms", "inner_ess", "rank_experiments"],
        "gim_ppl.design.queries": ["block_targets", "combine", "counterfactual",
                                   "do_variables"],
    },
    modules={name: f"gim_ppl.design.{name}" for name in ("experiments", "queries")},
)

__all__ = ["QUANTITIES", "block_targets", "combine", "counterfactual", "do_variables",
           "information_terms", "inner_ess", "rank_experiments"]
