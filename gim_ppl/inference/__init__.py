"""Inference on a `GIM`: MAP `fit` (SVI), minibatches and sharding, NUTS, ArviZ export.

One concept per module, as in `numpyro.infer`: `fit` (the loop and dual ascent on λ),
`init` (starts from the data), `schedules`, `restarts` (selection on held-out
perturbations), `batching`, `distributed` (multi-process fits), `mcmc`, `arviz`,
`diagnostics` (`diagnose`: R-hat, ESS, divergences, E-BFMI), `intervals` (intervals of
new contexts' mean cells, calibrated by cross-fits).
Nothing here is needed to fit a GIM with plain `numpyro.infer.SVI`.
"""

from gim_ppl.inference.arviz import to_arviz
from gim_ppl.inference.batching import (
    BatchIndex,
    PerturbationBatches,
    PerturbationBatchIndex,
    perturbation_batch,
    shard_cells,
    stratified_batch,
)
from gim_ppl.inference.diagnostics import Diagnosis, Thresholds, diagnose
from gim_ppl.inference.distributed import initialize_distributed, share_moments
from gim_ppl.inference.fit import (
    CHUNK_STEPS,
    DualAscent,
    FitResult,
    FitState,
    acyclicity_weight_at,
    cycle_gain,
    dual_ascent_step,
    fit,
)
from gim_ppl.inference.init import data_start, init_from_data
from gim_ppl.inference.intervals import (
    IntervalCalibration,
    MeanIntervals,
    cross_fit,
    mean_intervals,
)
from gim_ppl.inference.mcmc import run_mcmc
from gim_ppl.inference.restarts import (
    Agreement,
    Restarts,
    restart_agreement,
    select_restart,
    split_validation,
)
from gim_ppl.inference.schedules import ScalarOrSchedule, Schedule, cosine_ramp

__all__ = [
    "CHUNK_STEPS",
    "Agreement",
    "BatchIndex",
    "Diagnosis",
    "DualAscent",
    "FitResult",
    "FitState",
    "IntervalCalibration",
    "MeanIntervals",
    "PerturbationBatchIndex",
    "PerturbationBatches",
    "Restarts",
    "ScalarOrSchedule",
    "Schedule",
    "Thresholds",
    "acyclicity_weight_at",
    "cosine_ramp",
    "cross_fit",
    "cycle_gain",
    "data_start",
    "diagnose",
    "dual_ascent_step",
    "fit",
    "init_from_data",
    "initialize_distributed",
    "mean_intervals",
    "perturbation_batch",
    "restart_agreement",
    "run_mcmc",
    "select_restart",
    "shard_cells",
    "share_moments",
    "split_validation",
    "stratified_batch",
    "to_arviz",
]
