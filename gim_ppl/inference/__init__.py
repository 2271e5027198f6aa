"""Inference on a `GIM`: MAP `fit` (SVI), minibatches and sharding, NUTS, ArviZ export.

One concept per module, as in `numpyro.infer`: `steps` (`fit_init` and `fit_step`, the
loop's init and step), `hooks` (what runs between chunks: the NaN guard, dual ascent on λ,
checkpoints), `fit` (the loop composed of them), `init` (starts from the data),
`schedules`, `restarts` (selection on held-out perturbations), `batching` (minibatches and
sharding as values), `distributed` (multi-process fits), `mcmc`, `arviz`,
`diagnostics` (`diagnose`: R-hat, ESS, divergences, E-BFMI), `intervals` (intervals of
new contexts' mean cells, calibrated by cross-fits).
Nothing here is needed to fit a GIM with plain `numpyro.infer.SVI`.
"""

from gim_ppl.inference.arviz import to_arviz
from gim_ppl.inference.batching import (
    Batch,
    BatchIndex,
    PerturbationBatches,
    PerturbationBatchIndex,
    Sharded,
    batch_source,
    perturbation_batch,
    shard_cells,
    stratified_batch,
)
from gim_ppl.inference.diagnostics import Diagnosis, Thresholds, diagnose
from gim_ppl.inference.distributed import initialize_distributed, share_moments
from gim_ppl.inference.fitting import CHUNK_STEPS, FitResult, cycle_gain, fit, fit_hooks
from gim_ppl.inference.hooks import (
    Checkpointing,
    DualAscent,
    FitLoop,
    Hook,
    NaNGuard,
    acyclicity_weight_at,
    dual_ascent_step,
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
    RestartSelection,
    restart_agreement,
    select_restart,
    split_validation,
)
from gim_ppl.inference.schedules import ScalarOrSchedule, Schedule, cosine_ramp
from gim_ppl.inference.steps import FitState, fit_init, fit_step

__all__ = [
    "CHUNK_STEPS",
    "Agreement",
    "Batch",
    "BatchIndex",
    "Checkpointing",
    "Diagnosis",
    "DualAscent",
    "FitLoop",
    "FitResult",
    "FitState",
    "Hook",
    "IntervalCalibration",
    "MeanIntervals",
    "NaNGuard",
    "PerturbationBatchIndex",
    "PerturbationBatches",
    "RestartSelection",
    "Restarts",
    "ScalarOrSchedule",
    "Schedule",
    "Sharded",
    "Thresholds",
    "acyclicity_weight_at",
    "batch_source",
    "cosine_ramp",
    "cross_fit",
    "cycle_gain",
    "data_start",
    "diagnose",
    "dual_ascent_step",
    "fit",
    "fit_hooks",
    "fit_init",
    "fit_step",
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
