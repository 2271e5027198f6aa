import jax
import numpy as np
import pytest

from gim_ppl.core.graph import is_dag
from gim_ppl.datasets import random_dag, synthetic_hill


def test_default_benchmark_follows_the_protocol():
    bench = synthetic_hill(0)
    assert bench.train.n_contexts == 161 and bench.train.n_cells == 160 * 50 + 800
    assert bench.partial_ood.n_contexts == 200 and bench.full_ood.n_contexts == 80
    np.testing.assert_array_equal(np.unique(np.asarray(bench.partial_ood.dose)),
                                  [0.25, 0.75, 1.25, 1.75, 2.25])
    assert is_dag(bench.truth.adjacency)
    counts = bench.truth.targets["train"][1:].sum(1)
    assert counts.min() >= 1 and counts.max() <= 3
    assert not bench.truth.targets["train"][0].any()
    w = np.abs(bench.truth.weights[bench.truth.adjacency])
    assert np.all((w >= 0.5) & (w <= 2.0))
    # full-OOD perturbations are new; partial-OOD ones are the training ones
    train_p = set(np.asarray(bench.train.perturbation)[1:])
    assert set(np.asarray(bench.partial_ood.perturbation)) == train_p
    assert not set(np.asarray(bench.full_ood.perturbation)) & train_p


def test_same_seed_same_benchmark():
    a, b = synthetic_hill(3, n_train_perturbations=4, n_test_perturbations=2), synthetic_hill(
        3, n_train_perturbations=4, n_test_perturbations=2)
    np.testing.assert_array_equal(a.train.x, b.train.x)
    np.testing.assert_array_equal(a.truth.weights, b.truth.weights)


@pytest.mark.parametrize("graph", ["er", "sf"])
def test_random_dags(graph):
    rng = np.random.default_rng(0)
    degrees = []
    for _ in range(30):
        adj = random_dag(rng, 20, graph, expected_degree=2.0)
        assert is_dag(adj)
        degrees.append(2 * adj.sum() / 20)
    assert 1.5 < np.mean(degrees) < 2.5


def test_sample_matches_true_interventional_means():
    bench = synthetic_hill(1, n_train_perturbations=5, n_test_perturbations=2)
    t = bench.truth
    fresh = bench.sample("partial_ood", jax.random.key(0), 3000)
    x = np.asarray(fresh.x).reshape(bench.partial_ood.n_contexts, 3000, -1)
    inv = np.linalg.inv(np.eye(len(t.bias)) - t.weights)
    dose = np.asarray(bench.partial_ood.dose)[:, None]
    h = t.hill["partial_ood"]
    shift = h["emax"] * dose ** h["hill"] / (h["ec50"] ** h["hill"] + dose ** h["hill"])
    expected = (t.bias + t.targets["partial_ood"] * shift) @ inv
    z = (x.mean(1) - expected) / (x.std(1) / np.sqrt(3000))
    assert np.all(np.abs(z) < 5.0)


def test_mlp_mechanism_benchmark_is_finite():
    bench = synthetic_hill(0, mechanism="mlp", n_train_perturbations=4, n_test_perturbations=2)
    assert np.all(np.isfinite(bench.train.x)) and bench.truth.mlp["mlp_w1"].shape[:2] == (10, 10)


def test_training_sets_of_different_sizes_are_nested_with_the_same_test_perturbations():
    small, base, large = (synthetic_hill(5, n_train_perturbations=n)
                          for n in (12, 40, 90))
    for other in (small, large):
        np.testing.assert_array_equal(other.full_ood.features, base.full_ood.features)
        np.testing.assert_array_equal(other.truth.targets["full_ood"],
                                      base.truth.targets["full_ood"])
        np.testing.assert_array_equal(other.truth.adjacency, base.truth.adjacency)
    # doses are tiled per perturbation (4 train doses; context 0 is the control)
    zs = [np.asarray(b.train.features)[1::4] for b in (small, base, large)]
    np.testing.assert_array_equal(zs[0], zs[1][:12])
    np.testing.assert_array_equal(zs[1], zs[2][:40])
    assert len(zs[2]) == 90 and len(np.unique(zs[2][:, 0])) == 90
