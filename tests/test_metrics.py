import itertools

import numpy as np
import pytest

from gim_ppl import metrics


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
