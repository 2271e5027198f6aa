"""gim_ppl: Generative Intervention Models as NumPyro models.

Public API (see DESIGN.md §4): `PerturbationData`, `Priors`, `GIM`, `fit`, `FitResult`,
`run_mcmc`, `to_arviz`, and the submodules `baselines`, `datasets`, `metrics` and `plots`
(matplotlib figures; imported on first access, so fitting never needs matplotlib).
"""

from gim_ppl import baselines, datasets, metrics
from gim_ppl.data import PerturbationData
from gim_ppl.inference import FitResult, fit, run_mcmc, to_arviz
from gim_ppl.model import GIM, Priors

__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "plots":
        import importlib

        return importlib.import_module("gim_ppl.plots")
    raise AttributeError(f"module 'gim_ppl' has no attribute {name!r}")


__all__ = [
    "GIM",
    "FitResult",
    "PerturbationData",
    "Priors",
    "baselines",
    "datasets",
    "fit",
    "metrics",
    "plots",
    "run_mcmc",
    "to_arviz",
]
