"""Datasets: the synthetic Hill benchmark, the AnnData bridge, doses, splits and drug screens.

- `synthetic`: `synthetic_hill` (the benchmark protocol) and `random_dag`.
- `anndata`: `from_anndata`, a single-cell screen in AnnData → `PerturbationData` (carrying
  its `DoseScale`); `from_anndata_with_info` also returns `AnnDataInfo`, what was done to the
  expression values (normalised or not, and why) and how genes were chosen.
- `expression`: the expression values of such a screen: normalisation detection
  (`normalize="auto"|"yes"|"no"`), log1p normalisation, gene selection, `AnnDataInfo`.
- `doses`: `DoseScale` (user dose unit ↔ model dose; `DoseScale.of(data)`) and
  `dose_response`.
- `splits`: `holdout_*`, `sciplex3_splits`, `center_on_controls`, `shift_cells` (any
  `PerturbationData`).
- `screen`: the sci-Plex3 schema, RDKit drug features and `toy_screen`.
- `sachs`: the Sachs et al. (2005) flow-cytometry data (vendored, checksummed) as
  `SachsData`: cells per condition, literature targets of each reagent, consensus graph.

Result tables of a fit (`target_table`, `hill_table`) live in `gim_ppl.summary`.
`import gim_ppl.datasets` loads no jax: `anndata`, `splits` and `synthetic`, which need it,
are imported on first use.
"""

# Numpy only: imported with the package (the command line reads `NORMALIZE_CHOICES`,
# `SCIPLEX3` and the dose units while it checks its arguments; the Sachs loader is numpy
# only too).
from gim_ppl.datasets.doses import DoseScale, dose_response
from gim_ppl.datasets.expression import NORMALIZE_CHOICES, AnnDataInfo
from gim_ppl.datasets.sachs_cells import CONDITION_SETS, SachsData, sachs
from gim_ppl.datasets.screen import (
    CONTROL_NAME,
    SCIPLEX3,
    ScreenSchema,
    ScreenTruth,
    drug_features,
    drug_smiles,
    toy_screen,
)
from gim_ppl.lazy import lazy_exports

# These need jax (through `PerturbationData`): imported on first use.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "gim_ppl.datasets.anndata": ["from_anndata", "from_anndata_with_info"],
        "gim_ppl.datasets.splits": ["center_on_controls", "holdout_dose",
                                    "holdout_highest_doses", "holdout_perturbations",
                                    "sciplex3_splits", "shift_cells"],
        "gim_ppl.datasets.synthetic": ["GroundTruth", "SyntheticBenchmark", "random_dag",
                                       "synthetic_hill"],
    },
    modules={name: f"gim_ppl.datasets.{name}" for name in ("anndata", "splits", "synthetic")},
)

__all__ = [
    "CONDITION_SETS",
    "CONTROL_NAME",
    "NORMALIZE_CHOICES",
    "SCIPLEX3",
    "AnnDataInfo",
    "DoseScale",
    "GroundTruth",
    "SachsData",
    "ScreenSchema",
    "ScreenTruth",
    "SyntheticBenchmark",
    "center_on_controls",
    "dose_response",
    "drug_features",
    "drug_smiles",
    "from_anndata",
    "from_anndata_with_info",
    "holdout_dose",
    "holdout_highest_doses",
    "holdout_perturbations",
    "random_dag",
    "sachs",
    "sciplex3_splits",
    "shift_cells",
    "synthetic_hill",
    "toy_screen",
]
