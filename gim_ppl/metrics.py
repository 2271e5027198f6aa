"""Scores: recovery of targets and graphs, and distances between predicted and observed cells.

Recovery scores take flat or matching-shape arrays of labels (bool) and scores (float).
Per-context distances take two `PerturbationData` with the same contexts and average over
contexts (`per_context=True` returns the `(n_contexts,)` values).
"""

from __future__ import annotations

import numpy as np

from gim_ppl.data import PerturbationData


def _labels_scores(labels, scores):
    y = np.asarray(labels).ravel()
    s = np.asarray(scores, dtype=float).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in size: {y.size} vs {s.size}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be boolean (0/1)")
    if not np.isfinite(s).all():
        raise ValueError("scores contain non-finite values")
    y = y.astype(bool)
    if y.all() or not y.any():
        raise ValueError("labels need both positives and negatives")
    return y, s


def auroc(labels, scores) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties ½.

    Mann–Whitney U from average ranks; O(n log n).
    """
    y, s = _labels_scores(labels, scores)
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(s.size)
    sorted_s = s[order]
    # average ranks of tied groups (1-based)
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    n_pos, n_neg = y.sum(), (~y).sum()
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def average_precision(labels, scores) -> float:
    """Average precision: Σ_k (R_k − R_{k−1}) P_k over score thresholds (ties grouped)."""
    y, s = _labels_scores(labels, scores)
    order = np.argsort(-s, kind="mergesort")
    y_sorted, s_sorted = y[order], s[order]
    tp = np.cumsum(y_sorted)
    # evaluate only at the last index of each tied group of scores
    last = np.r_[np.flatnonzero(np.diff(s_sorted) != 0), s.size - 1]
    tp, n_pred = tp[last], last + 1
    precision = tp / n_pred
    recall = tp / y.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def shd(true_adjacency, estimated_adjacency) -> int:
    """Structural Hamming distance: missing + extra edges, a reversed edge counting once."""
    a = np.asarray(true_adjacency, dtype=bool)
    b = np.asarray(estimated_adjacency, dtype=bool)
    if a.shape != b.shape or a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"adjacency matrices must be square and equal in shape: {a.shape}, "
                         f"{b.shape}")
    diff = a != b
    # a reversed edge shows up as a mismatch at (i, j) and (j, i): count the pair once
    pair = diff | diff.T
    return int(np.triu(pair, k=1).sum())


def _context_means(data: PerturbationData) -> np.ndarray:
    if data.x is None:
        raise ValueError("data has no cells")
    x, ctx = np.asarray(data.x), np.asarray(data.context)
    counts = np.bincount(ctx, minlength=data.n_contexts)
    if (counts == 0).any():
        raise ValueError(f"contexts without cells: {np.flatnonzero(counts == 0)[:10]}")
    sums = np.zeros((data.n_contexts, x.shape[1]))
    np.add.at(sums, ctx, x)
    return sums / counts[:, None]


def mean_error(predicted: PerturbationData, observed: PerturbationData, *,
               per_context: bool = False):
    """Euclidean distance between the predicted and observed mean cell of each context.

    Returns the average over contexts (or the `(n_contexts,)` values).
    """
    if predicted.n_contexts != observed.n_contexts:
        raise ValueError(f"predicted has {predicted.n_contexts} contexts, observed "
                         f"{observed.n_contexts}")
    err = np.linalg.norm(_context_means(predicted) - _context_means(observed), axis=1)
    return err if per_context else float(err.mean())
