"""Datasets: the synthetic Hill benchmark (and, later, drug-screen loaders)."""

from gim_ppl.datasets.synthetic import GroundTruth, SyntheticBenchmark, random_dag, synthetic_hill

__all__ = ["GroundTruth", "SyntheticBenchmark", "random_dag", "synthetic_hill"]
from gim_ppl.datasets.screen import (
    CONTROL_NAME,
    SCIPLEX3,
    DoseScale,
    ScreenSchema,
    ScreenTruth,
    center_on_controls,
    dose_response,
    drug_features,
    drug_smiles,
    hill_table,
    holdout_dose,
    holdout_highest_doses,
    holdout_perturbations,
    sciplex3_splits,
    shift_cells,
    target_table,
    toy_screen,
)

__all__ += [
    "CONTROL_NAME",
    "SCIPLEX3",
    "DoseScale",
    "ScreenSchema",
    "ScreenTruth",
    "center_on_controls",
    "dose_response",
    "drug_features",
    "drug_smiles",
    "hill_table",
    "holdout_dose",
    "holdout_highest_doses",
    "holdout_perturbations",
    "sciplex3_splits",
    "shift_cells",
    "target_table",
    "toy_screen",
]
