"""Designing and querying experiments with a fitted GIM.

`experiments`: which experiment to run next, by the expected information gain of candidate
perturbations (`rank_experiments`).
`queries`: causal queries as NumPyro handlers on the model's `targets` and `noise` sites.
"""

from gim_ppl.design.experiments import (
    QUANTITIES,
    information_terms,
    inner_ess,
    rank_experiments,
)
from gim_ppl.design.queries import block_targets, combine, counterfactual, do_variables

__all__ = ["QUANTITIES", "block_targets", "combine", "counterfactual", "do_variables",
           "information_terms", "inner_ess", "rank_experiments"]
