"""gim_ppl: Generative Intervention Models as NumPyro models.

Public API (DESIGN §4): `PerturbationData`, `Priors`, `GIM`, `allowed_edges` (background
knowledge as an edge mask), `fit` (with `cosine_ramp`,
`DualAscent`), `init_from_data`, `FitResult`, `run_mcmc`, `diagnose`, `to_arviz`,
`initialize_distributed` and `share_moments` (multi-process fits), `ArgumentError` (the
`ValueError` of a bad argument, naming it as `.argument`), and the submodules
`datasets`, `metrics`, `baselines`, `plots`, `summary` (result tables), `design` and
`evaluation`.

Every name is imported on first use (`gim_ppl.lazy`): `import gim_ppl` itself loads neither
jax nor any extra, so that `gim-ppl` can check its arguments before jax loads. The names of
the API above need only the core dependencies (jax, numpyro, optax, numpy); the submodules
that need extras — `metrics` and `baselines` (`[bench]`: ott-jax, scikit-learn), `plots`
(`[plots]`: matplotlib, networkx) — and the tables of `summary` (pandas, imported inside its
functions) need them only when used.
"""

from gim_ppl.lazy import lazy_exports

__version__ = "0.1.0"

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "gim_ppl.data": ["PerturbationData"],
        "gim_ppl.errors": ["ArgumentError"],
        "gim_ppl.inference": ["DualAscent", "FitResult", "cosine_ramp", "cross_fit",
                              "diagnose", "fit", "init_from_data", "initialize_distributed",
                              "mean_intervals", "PerturbationBatches", "run_mcmc",
                              "share_moments", "to_arviz"],
        "gim_ppl.knowledge": ["allowed_edges"],
        "gim_ppl.model": ["GIM"],
        "gim_ppl.priors": ["Priors"],
    },
    modules={
        "datasets": "gim_ppl.datasets",
        "metrics": "gim_ppl.evaluation.metrics",
        "baselines": "gim_ppl.evaluation.baselines",
        "evaluation": "gim_ppl.evaluation",
        "design": "gim_ppl.design",
        "plots": "gim_ppl.plots",
        "summary": "gim_ppl.summary",
        # not in __all__, but attributes of the package as when it imported them eagerly
        **{name: f"gim_ppl.{name}" for name in (
            "checks", "core", "data", "errors", "extras", "inference", "knowledge", "model",
            "priors")},
    },
)

__all__ = [
    "GIM",
    "ArgumentError",
    "DualAscent",
    "FitResult",
    "PerturbationBatches",
    "PerturbationData",
    "Priors",
    "allowed_edges",
    "baselines",
    "cosine_ramp",
    "datasets",
    "design",
    "diagnose",
    "evaluation",
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
