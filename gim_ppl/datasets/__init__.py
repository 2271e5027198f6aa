"""Datasets: the synthetic Hill benchmark (and, later, drug-screen loaders)."""

from gim_ppl.datasets.synthetic import GroundTruth, SyntheticBenchmark, random_dag, synthetic_hill

__all__ = ["GroundTruth", "SyntheticBenchmark", "random_dag", "synthetic_hill"]
