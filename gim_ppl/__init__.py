"""gim_ppl: Generative Intervention Models as NumPyro models.

Public API (DESIGN §4): `PerturbationData`, `Priors`, `GIM`, `allowed_edges` (background
knowledge as an edge mask), `fit` (with `cosine_ramp`,
`DualAscent`), `init_from_data`, `FitResult`, `run_mcmc`, `diagnose`, `to_arviz`,
`initialize_distributed` and `share_moments` (multi-process fits), and the submodules
`datasets`, `metrics`, `baselines`, `plots`, `summary` (result tables), `design` and
`evaluation`.

`import gim_ppl` loads only the core dependencies (jax, numpyro, optax, numpy). The
submodules that need extras — `metrics` and `baselines` (`[bench]`: ott-jax, scikit-learn),
`plots` (`[plots]`: matplotlib, networkx) — and the tables of `summary` (pandas, imported
inside its functions) are imported on first attribute access.
"""

import importlib

from gim_ppl import datasets
from gim_ppl.data import PerturbationData
from gim_ppl.inference import (
    DualAscent,
    FitResult,
    cosine_ramp,
    diagnose,
    fit,
    init_from_data,
    initialize_distributed,
    run_mcmc,
    share_moments,
    to_arviz,
)
from gim_ppl.knowledge import allowed_edges
from gim_ppl.model import GIM
from gim_ppl.priors import Priors

__version__ = "0.1.0"

_LAZY = {
    "metrics": "gim_ppl.evaluation.metrics",
    "baselines": "gim_ppl.evaluation.baselines",
    "evaluation": "gim_ppl.evaluation",
    "design": "gim_ppl.design",
    "plots": "gim_ppl.plots",
    "summary": "gim_ppl.summary",
}


def __getattr__(name: str):
    if name in _LAZY:
        return importlib.import_module(_LAZY[name])
    raise AttributeError(f"module 'gim_ppl' has no attribute {name!r}")


__all__ = [
    "GIM",
    "DualAscent",
    "FitResult",
    "PerturbationData",
    "Priors",
    "allowed_edges",
    "baselines",
    "cosine_ramp",
    "datasets",
    "design",
    "diagnose",
    "fit",
    "init_from_data",
    "initialize_distributed",
    "metrics",
    "plots",
    "run_mcmc",
    "share_moments",
    "summary",
    "to_arviz",
]
