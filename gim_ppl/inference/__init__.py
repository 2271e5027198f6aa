"""Inference on a `GIM`: MAP `fit` (SVI), minibatches and sharding, NUTS, ArviZ export.

One concept per module, as in `numpyro.infer`: `fit`, `batching`, `mcmc`, `arviz`.
Nothing here is needed to fit a GIM with plain `numpyro.infer.SVI`.
"""

from gim_ppl.inference.arviz import to_arviz
from gim_ppl.inference.batching import BatchIndex, shard_cells, stratified_batch
from gim_ppl.inference.fit import FitResult, fit
from gim_ppl.inference.mcmc import run_mcmc

__all__ = ["BatchIndex", "FitResult", "fit", "run_mcmc", "shard_cells", "stratified_batch",
           "to_arviz"]
