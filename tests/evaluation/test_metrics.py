import itertools

import numpy as np
import pytest

import gim_ppl
from gim_ppl.evaluation import metrics


def brute_auroc(y, s):
    pos, neg = s[y], s[~y]
    return np.mean([(p > n) + 0.5 * (p == n) for p, n in itertools.product(pos, neg)])


def test_auroc_hand_cases():
    assert metrics.auroc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert metrics.auroc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert metrics.auroc([0, 1], [0.5, 0.5]) == 0.5
    assert metrics.auroc([1, 0, 1, 0], [0.9, 0.8, 0.3, 0.1]) == 0.75


def test_auroc_matches_pairwise_count_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        y = rng.random(30) < 0.4
        y[:2] = [True, False]
        s = rng.integers(0, 5, 30).astype(float)  # many ties
        np.testing.assert_allclose(metrics.auroc(y, s), brute_auroc(y, s))


def test_average_precision_hand_cases():
    # ranking: 1, 0, 1 → precision at the positives 1 and 2/3
    np.testing.assert_allclose(metrics.average_precision([1, 0, 1], [0.9, 0.5, 0.1]),
                               (1 + 2 / 3) / 2)
    assert metrics.average_precision([1, 1, 0], [0.9, 0.8, 0.1]) == 1.0
    # all tied: precision = base rate at the single threshold
    np.testing.assert_allclose(metrics.average_precision([1, 0, 0, 1], [1, 1, 1, 1]), 0.5)


def brute_average_precision(y, s):
    """Σ over distinct thresholds t (descending) of (R(t) − R(previous t)) · P(t)."""
    total, previous_recall = 0.0, 0.0
    for t in sorted(set(s.tolist()), reverse=True):
        chosen = s >= t
        recall = (y & chosen).sum() / y.sum()
        total += (recall - previous_recall) * (y & chosen).sum() / chosen.sum()
        previous_recall = recall
    return total


def test_average_precision_matches_threshold_sum_with_ties():
    rng = np.random.default_rng(1)
    for _ in range(20):
        y = rng.random(30) < 0.4
        y[:2] = [True, False]
        s = rng.integers(0, 5, 30).astype(float)  # many ties
        np.testing.assert_allclose(metrics.average_precision(y, s), brute_average_precision(y, s))


@pytest.mark.parametrize("score", [metrics.auroc, metrics.average_precision])
@pytest.mark.parametrize("labels", [[1, 1, 1], [0, 0, 0]])
def test_recovery_scores_reject_labels_of_one_class(score, labels):
    # undefined for one class: an error, not scikit-learn's nan (AUROC) or 0 (AP) + warning
    with pytest.raises(ValueError, match="both positives and negatives"):
        score(labels, [0.1, 0.2, 0.3])


def test_recovery_scores_reject_bad_input():
    with pytest.raises(ValueError, match="both positives and negatives"):
        metrics.auroc([1, 1], [0.2, 0.3])
    with pytest.raises(ValueError, match="differ in size"):
        metrics.auroc([1, 0], [0.2])
    with pytest.raises(ValueError, match="non-finite"):
        metrics.average_precision([1, 0], [np.nan, 0.1])


def test_shd_counts_missing_extra_and_reversed_once():
    a = np.zeros((3, 3), bool)
    a[0, 1] = a[1, 2] = True
    b = a.copy()
    assert metrics.shd(a, b) == 0
    b[1, 2], b[2, 1] = False, True  # reversed
    assert metrics.shd(a, b) == 1
    b[0, 2] = True  # extra
    b[0, 1] = False  # missing
    assert metrics.shd(a, b) == 3


# -- distribution distances ---------------------------------------------------------------

def clouds(groups):
    """PerturbationData whose context k holds the points `groups[k] (n_k, d)`."""
    x = np.concatenate(groups)
    ctx = np.repeat(np.arange(len(groups)), [len(g) for g in groups])
    k = len(groups)
    return gim_ppl.PerturbationData.from_arrays(
        x, ctx, features=np.ones((k, 1)), dose=np.ones(k), observational=np.zeros(k, bool))


def brute_w2(x, y):
    """Exact W2 between two uniform clouds of equal size by enumerating assignments."""
    cost = ((x[:, None] - y[None]) ** 2).sum(-1)
    best = min(cost[np.arange(len(x)), list(p)].mean()
               for p in itertools.permutations(range(len(y))))
    return np.sqrt(best)


def test_wasserstein_matches_brute_force_assignment():
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(6, 2)) for _ in range(3)]
    ys = [rng.normal(size=(6, 2)) + np.array([1.0, 0.0]) * k for k in range(3)]
    got = metrics.wasserstein(clouds(xs), clouds(ys), epsilon=1e-2, per_context=True)
    want = [brute_w2(x, y) for x, y in zip(xs, ys, strict=True)]
    # debiased Sinkhorn at ε = 0.01 (costs O(1)) is within ~0.1% of exact OT
    np.testing.assert_allclose(got, want, rtol=0.005)


def test_wasserstein_unequal_sizes_matches_exact_solver():
    ot = pytest.importorskip("ot")
    rng = np.random.default_rng(1)
    xs = [rng.normal(size=(n, 3)) for n in (7, 12)]
    ys = [rng.normal(size=(n, 3)) * 1.5 + 0.5 for n in (4, 9)]
    got = metrics.wasserstein(clouds(xs), clouds(ys), epsilon=1e-2, per_context=True)
    want = [np.sqrt(ot.emd2(np.full(len(x), 1 / len(x)), np.full(len(y), 1 / len(y)),
                            ot.dist(x, y))) for x, y in zip(xs, ys, strict=True)]
    np.testing.assert_allclose(got, want, rtol=0.005)


def test_wasserstein_of_translated_gaussians_is_the_shift():
    # W2(N(m, I), N(m + δ, I)) = |δ|; with the same noise draw translated, the optimal plan
    # is the identity and the empirical W2 is exactly |δ|
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 4))
    delta = np.array([1.0, -0.5, 0.0, 2.0])
    got = metrics.wasserstein(clouds([x]), clouds([x + delta]), epsilon=0.01)
    np.testing.assert_allclose(got, np.linalg.norm(delta), rtol=0.01)


def naive_mmd2(x, y):
    pooled = np.concatenate([x, y])
    d2 = ((pooled[:, None] - pooled[None]) ** 2).sum(-1)
    h2 = np.median(d2[np.triu_indices(len(pooled), 1)])

    def k(a, b):
        return np.exp(-((a[:, None] - b[None]) ** 2).sum(-1) / (2 * h2))

    n, m = len(x), len(y)
    kxx, kyy = k(x, x), k(y, y)
    return ((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy))
            / (m * (m - 1)) - 2 * k(x, y).mean())


def test_mmd_matches_naive_unbiased_estimate_with_padding():
    rng = np.random.default_rng(3)
    xs = [rng.normal(size=(n, 3)) for n in (5, 11, 8)]
    ys = [rng.normal(size=(n, 3)) + 0.7 for n in (9, 4, 8)]
    got = metrics.mmd(clouds(xs), clouds(ys), per_context=True)
    want = [naive_mmd2(x, y) for x, y in zip(xs, ys, strict=True)]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_energy_distance_in_1d_equals_twice_cdf_l2():
    # in one dimension, the energy distance between empirical distributions is
    # 2 ∫ (F_n(t) − G_m(t))² dt, exactly
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=13), rng.normal(size=7) + 0.4
    grid = np.sort(np.concatenate([x, y]))
    f = np.searchsorted(np.sort(x), grid[:-1], side="right") / len(x)
    g = np.searchsorted(np.sort(y), grid[:-1], side="right") / len(y)
    want = 2 * np.sum((f - g) ** 2 * np.diff(grid))
    got = metrics.energy_distance(clouds([x[:, None]]), clouds([y[:, None]]))
    np.testing.assert_allclose(got, want, rtol=1e-4)


@pytest.mark.parametrize("name", ["wasserstein", "mmd", "energy_distance", "mean_error"])
def test_same_distribution_scores_clearly_below_different(name):
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(300, 5)), rng.normal(size=(300, 5))
    c = rng.normal(size=(300, 5)) * 1.3 + 0.8
    fn = getattr(metrics, name)
    same, diff = fn(clouds([a]), clouds([b])), fn(clouds([a]), clouds([c]))
    assert same < 0.5 * diff, (same, diff)


def test_distances_reject_mismatched_contexts():
    rng = np.random.default_rng(6)
    with pytest.raises(ValueError, match="contexts"):
        metrics.wasserstein(clouds([rng.normal(size=(4, 2))]),
                            clouds([rng.normal(size=(4, 2))] * 2))
    with pytest.raises(ValueError, match="epsilon"):
        metrics.wasserstein(clouds([rng.normal(size=(4, 2))]), clouds([rng.normal(size=(4, 2))]),
                            epsilon=0.0)


def test_wasserstein_warns_when_sinkhorn_does_not_converge():
    rng = np.random.default_rng(7)
    x, y = clouds([rng.normal(size=(6, 2))]), clouds([rng.normal(size=(6, 2)) + 1.0])
    with pytest.warns(RuntimeWarning, match="did not converge"):
        metrics.wasserstein(x, y, epsilon=1e-3, max_iterations=20)


# -- peers' R² and calibration ------------------------------------------------------------

def test_r2_mean_change_matches_sklearn_on_changes_and_top_k():
    from sklearn.metrics import r2_score

    rng = np.random.default_rng(4)
    control = rng.normal(size=5)
    obs = [rng.normal(size=(30, 5)) + rng.normal(0, 2, 5) for _ in range(3)]
    pred = [o + rng.normal(0, 0.5, (30, 5)) for o in obs]
    got = metrics.r2_mean_change(clouds(pred), clouds(obs), control, per_context=True)
    want = [r2_score(o.mean(0) - control, p.mean(0) - control)
            for o, p in zip(obs, pred, strict=True)]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    top = metrics.r2_mean_change(clouds(pred), clouds(obs), control, top_k=3,
                                 per_context=True)
    for k, (o, p) in enumerate(zip(obs, pred, strict=True)):
        j = np.argsort(-np.abs(o.mean(0) - control))[:3]
        np.testing.assert_allclose(top[k], r2_score((o.mean(0) - control)[j],
                                                    (p.mean(0) - control)[j]), rtol=1e-6)
    assert metrics.r2_mean_change(clouds(obs), clouds(obs), control) == pytest.approx(1.0)
    # predicting the control cells (no change) scores 1 − ΣΔ² / Σ(Δ − mean Δ)² ≤ 0
    still = [np.tile(control, (4, 1)) for _ in obs]
    change = np.stack([o.mean(0) - control for o in obs])
    want = 1 - (change ** 2).sum(1) / ((change - change.mean(1, keepdims=True)) ** 2).sum(1)
    np.testing.assert_allclose(metrics.r2_mean_change(clouds(still), clouds(obs), control,
                                                      per_context=True), want,
                               atol=1e-6)  # context means are float32


def test_r2_mean_change_rejects_bad_input():
    a = clouds([np.zeros((3, 4)), np.ones((3, 4))])
    with pytest.raises(ValueError, match="control_mean"):
        metrics.r2_mean_change(a, a, np.zeros(3))
    with pytest.raises(ValueError, match="top_k"):
        metrics.r2_mean_change(a, a, np.zeros(4), top_k=5)
    with pytest.raises(ValueError, match="contexts"):
        metrics.r2_mean_change(clouds([np.zeros((3, 4))]), a, np.zeros(4))


def test_brier_score_hand_cases_and_input_checks():
    assert metrics.brier_score([1, 0], [1.0, 0.0]) == 0.0
    assert metrics.brier_score([1, 0, 1, 0], [0.5] * 4) == 0.25
    assert metrics.brier_score([True, False], [0.8, 0.4]) == pytest.approx((0.04 + 0.16) / 2)
    with pytest.raises(ValueError, match="probs"):
        metrics.brier_score([1, 0], [1.2, 0.0])
    with pytest.raises(ValueError, match="size"):
        metrics.brier_score([1, 0], [0.5])


def test_reliability_curve_of_calibrated_probabilities_is_the_diagonal():
    rng = np.random.default_rng(0)
    p = rng.uniform(size=20_000)
    y = rng.uniform(size=p.size) < p
    curve = metrics.reliability_curve(y, p, n_bins=10)
    assert curve["count"].sum() == p.size and len(curve["count"]) == 10
    # each bin holds ~2 000 draws: binomial sd of the frequency ≤ 0.5/√2000 ≈ 0.011
    sd = np.sqrt(curve["mean_prob"] * (1 - curve["mean_prob"]) / curve["count"])
    assert np.all(np.abs(curve["frequency"] - curve["mean_prob"]) < 4 * sd + 1e-3)
    # overconfident probabilities (pushed to 0/1) leave the diagonal
    sharp = np.clip((p - 0.5) * 3 + 0.5, 0, 1)
    off = metrics.reliability_curve(y, sharp, n_bins=10)
    assert np.max(np.abs(off["frequency"] - off["mean_prob"])) > 0.15


# -- cell-eval's metrics: MAE, perturbation discrimination, DE overlap --------------------

def test_mean_absolute_error_hand_case_and_perfect_prediction():
    obs = [np.array([[1.0, 2, 3], [3, 2, 1]]), np.array([[0.0, 1, 4]])]  # means (2,2,2), (0,1,4)
    pred = [np.array([[3.0, 2, 0]]), np.array([[0.0, 0, 4], [0, 2, 4]])]  # (3,2,0), (0,1,4)
    got = metrics.mean_absolute_error(clouds(pred), clouds(obs), per_context=True)
    np.testing.assert_allclose(got, [(1 + 0 + 2) / 3, 0.0])
    assert metrics.mean_absolute_error(clouds(pred), clouds(obs)) == pytest.approx(0.5)
    assert metrics.mean_absolute_error(clouds(obs), clouds(obs)) == 0.0


def test_discrimination_score_hand_ranks_ties_and_control_prediction():
    obs = clouds([np.zeros((2, 3)), np.array([[1.0, 0, 0]] * 2), np.array([[4.0, 0, 0]] * 2)])
    # predicted means (0.4,0,0), (3,0,0), (0,0,1): L1 distances to the observed means
    # (0,0,0), (1,0,0), (4,0,0) are (0.4,0.6,3.6), (3,2,1), (1,2,5): own context at
    # positions 0, 1, 2 of K = 3 → scores 1, 2/3, 1/3
    pred = clouds([np.array([[0.4, 0, 0]]), np.array([[3.0, 0, 0]]), np.array([[0.0, 0, 1]])])
    got = metrics.discrimination_score(pred, obs, per_context=True)
    np.testing.assert_allclose(got, [1.0, 2 / 3, 1 / 3])
    assert metrics.discrimination_score(pred, obs) == pytest.approx(2 / 3)
    assert metrics.discrimination_score(obs, obs) == 1.0  # perfect prediction
    # a tie (0.5 from contexts 0 and 1) goes to the earlier context, as a stable sort
    tie = clouds([np.zeros((1, 3)), np.array([[0.5, 0, 0]]), np.array([[4.0, 0, 0]])])
    assert metrics.discrimination_score(tie, obs, per_context=True)[1] == pytest.approx(2 / 3)
    # predicting the control cells (0,0,0) everywhere ranks the observed means by their
    # distance from control: only the unchanged context 0 is nearest its prediction
    still = clouds([np.zeros((2, 3))] * 3)
    np.testing.assert_allclose(metrics.discrimination_score(still, obs, per_context=True),
                               [1.0, 2 / 3, 1 / 3])
    # L1, not L2: (0.6, 0.6, 0.6) is 1.8 from (0, 0, 0) and 1.6 from (0.6, 0.6, 2.2) in L1
    # (in L2 1.04 and 1.6: the other order)
    two = clouds([np.zeros((1, 3)), np.array([[0.6, 0.6, 2.2]])])
    spread = clouds([np.full((1, 3), 0.6), np.array([[0.6, 0.6, 2.2]])])
    np.testing.assert_allclose(metrics.discrimination_score(spread, two, per_context=True),
                               [0.5, 1.0])


def test_mann_whitney_p_hand_cases_and_scipy():
    from math import erfc, sqrt

    from scipy.stats import mannwhitneyu

    low, high = np.arange(6.0)[:, None], np.arange(6.0)[:, None] + 10
    # separated samples, 6 vs 6, no ties: U = 36, μ = 18, σ² = 36·13/12 = 39
    z = (36 - 18 - 0.5) / sqrt(39)
    assert metrics._mann_whitney_p(high, low)[0] == pytest.approx(erfc(z / sqrt(2)))
    assert metrics._mann_whitney_p(low, high)[0] == pytest.approx(erfc(z / sqrt(2)))
    # two constant groups: two runs of 6 ties, Σ(t³ − t) = 420, σ² = 3·(13 − 420/132)
    z = (36 - 18 - 0.5) / sqrt(3 * (13 - 420 / 132))
    got = metrics._mann_whitney_p(np.full((6, 1), 2.0), np.full((6, 1), 1.0))[0]
    assert got == pytest.approx(erfc(z / sqrt(2)))
    assert metrics._mann_whitney_p(np.ones((3, 1)), np.ones((4, 1)))[0] == 1.0  # all tied
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 4, (7, 5)).astype(float), rng.integers(0, 4, (11, 5)).astype(float)
    x[:, 3] += 2.0
    np.testing.assert_allclose(metrics._mann_whitney_p(x, y),
                               mannwhitneyu(x, y, method="asymptotic", axis=0).pvalue)


def test_effects_hand_values():
    cells = np.log1p(np.array([[1.0, 0, 5], [7, 0, 5]]))
    control = np.log1p(np.array([[1.0, 0, 0]]))
    lfc = metrics.log2_fold_change(cells, control)
    # geometric means in count space: expm1((log 2 + log 8)/2) = 3 over 1 (the arithmetic
    # mean of the counts would be 4); 0/0 is 0; a zero control mean gives +inf
    assert lfc[0] == pytest.approx(np.log2(3.0)) and lfc[1] == 0.0 and lfc[2] == np.inf
    np.testing.assert_allclose(metrics.mean_change(cells, control),
                               [np.log(4.0) - np.log(2.0), 0.0, np.log(6.0)])


def test_de_genes_fdr_and_ranking_by_effect():
    control = np.tile(np.arange(6.0)[:, None], (1, 4))
    # gene 0 up by 10, gene 2 down by 6 (both separated: p = 0.00507), genes 1, 3 unchanged
    # (p = 1); Benjamini–Hochberg over 4 genes: q = 0.00507 · 4/2 = 0.0101 < 0.05
    cells = control + np.array([10.0, 0, -6, 0])
    np.testing.assert_array_equal(
        metrics.de_genes(cells, control, effect=metrics.mean_change), [0, 2])
    # adjusted, not raw p-values: p = 0.00507 < 0.008 but q = 0.0101 > 0.008
    assert metrics.de_genes(cells, control, fdr=0.008, effect=metrics.mean_change).size == 0
    # 4 genes separated with 4 cells a side: U = 16, z = 7.5/√12, p = 0.0304 for each, so
    # q = p and the FDR threshold decides
    few = np.arange(4.0)[:, None] + np.zeros((1, 4))
    assert metrics.de_genes(few + 10, few, effect=metrics.mean_change).size == 4
    assert metrics.de_genes(few + 10, few, fdr=0.03, effect=metrics.mean_change).size == 0
    # log1p data: gene 1 changes more in log1p units (1.0 vs log 2) but less as a fold change
    # of counts (270.8/99 vs 3/1); each effect ranks by its own size
    base = np.log1p([1.0, 99.0])
    control = np.tile(base, (6, 1))
    cells = np.tile(np.array([np.log1p(3.0), base[1] + 1.0]), (6, 1))
    np.testing.assert_array_equal(metrics.de_genes(cells, control), [0, 1])
    np.testing.assert_array_equal(
        metrics.de_genes(cells, control, effect=metrics.mean_change), [1, 0])


def test_de_overlap_hand_case_perfect_and_control_predictions():
    control = np.tile(np.arange(6.0)[:, None], (1, 4))
    # observed: context A moves gene 0 (+10) and gene 2 (−12); context B moves nothing
    obs = clouds([control + np.array([10.0, 0, -12, 0]), control + 0.0])
    # predicted: A moves gene 2 (−15) and gene 1 (+6); B moves gene 3
    pred = clouds([control + np.array([0.0, 6, -15, 0]), control + np.array([0.0, 0, 0, 10])])
    kw = dict(effect=metrics.mean_change)
    # A: observed DE by |effect| (2, 0), k = 2; predicted (2, 1): {2, 0} ∩ {2, 1} → 1/2.
    # B: no observed DE genes → 0 (k = 0), whatever is predicted
    got = metrics.de_overlap(pred, obs, control, per_context=True, **kw)
    np.testing.assert_allclose(got, [0.5, 0.0])
    assert metrics.de_overlap(pred, obs, control, **kw) == pytest.approx(0.25)
    # top_k = 1: (2) against (2) → 1 (ranked by the signed effect it would be (0) vs (1))
    np.testing.assert_allclose(
        metrics.de_overlap(pred, obs, control, top_k=1, per_context=True, **kw), [1.0, 0.0])
    # top_k beyond the observed DE genes: k = 2 still (cell-eval's overlap_at_50 on 2 genes)
    np.testing.assert_allclose(
        metrics.de_overlap(pred, obs, control, top_k=50, per_context=True, **kw), [0.5, 0.0])
    # a perfect prediction recovers every observed DE gene (1 where there are some)
    np.testing.assert_allclose(
        metrics.de_overlap(obs, obs, control, per_context=True, **kw), [1.0, 0.0])
    # predicting the control cells calls no DE gene
    still = clouds([control, control])
    np.testing.assert_allclose(
        metrics.de_overlap(still, obs, control, per_context=True, **kw), [0.0, 0.0])


def test_cell_eval_metrics_reject_bad_input():
    a = clouds([np.zeros((3, 4)), np.ones((3, 4))])
    with pytest.raises(ValueError, match="control_cells"):
        metrics.de_overlap(a, a, np.zeros((5, 3)))
    with pytest.raises(ValueError, match="fdr"):
        metrics.de_overlap(a, a, np.zeros((5, 4)), fdr=1.5)
    with pytest.raises(ValueError, match="top_k"):
        metrics.de_overlap(a, a, np.zeros((5, 4)), top_k=0)
    for score in (metrics.mean_absolute_error, metrics.discrimination_score):
        with pytest.raises(ValueError, match="contexts"):
            score(clouds([np.zeros((3, 4))]), a)
