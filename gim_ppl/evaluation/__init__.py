"""Evaluation: metrics, baselines, the synthetic benchmark and the performance benchmark.

Needs the `[bench]` extra (ott-jax, scikit-learn)."""
