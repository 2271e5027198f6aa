"""gim_ppl: Generative Intervention Models as NumPyro models.

Public API (see DESIGN.md §4): `PerturbationData`, `Priors`, `GIM`, `fit`, `FitResult`,
`run_mcmc`, `to_arviz`, and the submodules `datasets` and `metrics`.
"""

from gim_ppl import datasets, metrics
from gim_ppl.data import PerturbationData
from gim_ppl.inference import FitResult, fit, run_mcmc, to_arviz
from gim_ppl.model import GIM, Priors

__version__ = "0.1.0"

__all__ = [
    "GIM",
    "FitResult",
    "PerturbationData",
    "Priors",
    "datasets",
    "fit",
    "metrics",
    "run_mcmc",
    "to_arviz",
]
