"""What an experiment can be designed to tell: `QUANTITIES`, the `about` of
`rank_experiments` (see `gim_ppl.design.experiments`). A module of its own, free of jax, so
that `gim-ppl design --about` is checked before the model's libraries load."""

QUANTITIES = ("targets", "graph", "readout", "parameters")

__all__ = ["QUANTITIES"]
