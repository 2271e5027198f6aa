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


def _true_residuals(bench):
    """x − f(x) − t·s of the linear truth's training cells, and their contexts."""
    from gim_ppl.core.hill import hill_shift

    tr, truth = bench.train, bench.truth
    x, ctx = np.asarray(tr.x, float), np.asarray(tr.context)
    h = truth.hill["train"]
    shift = np.asarray(hill_shift(np.asarray(tr.dose)[:, None], h["emax"], np.log(h["ec50"]),
                                  np.log(h["hill"])))
    w = truth.weights * (1 - np.eye(len(truth.bias)))
    r = x - (x @ w + truth.bias) - truth.targets["train"][ctx] * shift[ctx]
    return r, ctx


def test_context_shift_adds_one_offset_per_perturbational_context():
    small = dict(n_train_perturbations=5, n_cells=3000, n_test_perturbations=2, n_test_cells=5)
    bench = synthetic_hill(0, context_shift=0.25, **small)
    r, ctx = _true_residuals(bench)
    offsets = bench.truth.context_offsets["train"]
    assert offsets[0] == 0.0 and np.std(offsets[1:]) > 0.1  # control has none
    means = np.stack([r[ctx == k].mean(0) for k in range(bench.train.n_contexts)])
    # every variable of context k is moved by c_k; sd of a mean of 3000 cells ≤ 0.02
    np.testing.assert_allclose(means, np.repeat(offsets[:, None], means.shape[1], 1),
                               atol=0.08)
    # the well-specified draws are untouched by the new options' own random stream
    plain = synthetic_hill(0, **small)
    np.testing.assert_array_equal(plain.truth.weights, bench.truth.weights)
    assert plain.truth.context_offsets == {}


def test_noise_df_gives_heavy_tails_with_the_same_sd():
    small = dict(n_train_perturbations=5, n_cells=2000, n_test_perturbations=2, n_test_cells=5)
    heavy = synthetic_hill(1, noise_df=4.0, **small)
    gauss = synthetic_hill(1, **small)
    for bench, lo, hi in ((gauss, -0.2, 0.2), (heavy, 1.5, np.inf)):
        r, _ = _true_residuals(bench)
        z = r / bench.truth.noise_scale
        assert np.all(np.abs(z.std(0) - 1.0) < 0.1)  # t rescaled to unit variance
        excess = np.mean(z**4, 0) / np.mean(z**2, 0) ** 2 - 3.0  # t4: infinite in theory
        assert lo < np.median(excess) < hi, excess
    with pytest.raises(ValueError, match="noise_df must be a number > 2"):
        synthetic_hill(0, noise_df=2.0)
    with pytest.raises(ValueError, match="context_shift must be a number >= 0"):
        synthetic_hill(0, context_shift=-1.0)
