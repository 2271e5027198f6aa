"""Designing and querying experiments with a fitted GIM.

`queries`: causal queries as NumPyro handlers on the model's `targets` and `noise` sites.
"""

from gim_ppl.design.queries import block_targets, combine, counterfactual, do_variables

__all__ = ["block_targets", "combine", "counterfactual", "do_variables"]
