"""Scores: recovery of targets and graphs, and distances between predicted and observed cells.

Recovery scores take flat or matching-shape arrays of labels (bool) and scores (float);
`auroc` and `average_precision` are scikit-learn's, behind this module's input checks.
Per-context distances take two `PerturbationData` with the same contexts and average over
contexts (`per_context=True` returns the `(n_contexts,)` values):

- `wasserstein`: W2 estimated as √S_ε, the debiased Sinkhorn divergence (ott-jax) with the
  squared Euclidean cost, unscaled, and a fixed absolute ε (default 0.1, in squared data
  units). S_ε is 0 for identical clouds and tends to W2² as ε → 0.
- `mmd`: unbiased MMD² with an RBF kernel, bandwidth by the median heuristic per context.
- `energy_distance`: 2E‖X−Y‖ − E‖X−X'‖ − E‖Y−Y'‖ between the two empirical distributions
  (the "E-distance" of scPerturb/pertpy with Euclidean cell–cell distances; with squared
  distances that formula reduces to 2‖mean X − mean Y‖², i.e. a mean error).
- `mean_error`: Euclidean distance between the mean cells.
- `r2_mean_change`: R² of the predicted against the observed change of the mean cell from
  the control mean, over all variables or the top k most changed (chemCPA's R² on mean
  expression, taken on changes so that baseline expression cannot inflate it).

The Virtual Cell Challenge's metrics, as `cell-eval` (ArcInstitute, v0.8.2: its profile
"vcc" = `mae`, `discrimination_score_l1`, `overlap_at_N`) computes them on pseudobulks, each
context scored as one perturbation:

- `mean_absolute_error`: MAE between the predicted and observed mean cell.
- `discrimination_score`: 1 − (rank of the context's observed mean cell among all observed
  mean cells by L1 distance to its predicted mean cell) / n_contexts.
- `de_overlap`: share of the observed differentially expressed genes (vs control cells:
  two-sided Mann–Whitney U, Benjamini–Hochberg FDR < 0.05, ranked by |effect|) that the
  prediction also calls, top k against top k. `de_genes` calls them.

Calibration of target probabilities: `brier_score` and `reliability_curve`.

Contexts with different numbers of cells are padded with zero-weight points, so all contexts
are scored in one vmapped call.
"""

from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special
import scipy.stats

from gim_ppl.checks import check_integer
from gim_ppl.data import PerturbationData
from gim_ppl.extras import require


def _flat_labels(labels, values, what: str):
    """`(labels, values)` flattened, checked equal in size and `labels` 0/1."""
    y = np.asarray(labels).ravel()
    try:
        v = np.asarray(values, dtype=float).ravel()
    except (TypeError, ValueError) as err:  # strings, objects: say which argument
        raise TypeError(f"{what} must be an array of numbers, got {type(values).__name__} "
                        f"({err})") from None
    if y.shape != v.shape:
        raise ValueError(f"labels and {what} differ in size: {y.size} vs {v.size}")
    if y.size == 0:  # the mean over no entries is NaN
        raise ValueError(f"labels and {what} are empty")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be boolean (0/1)")
    return y, v


def _labels_scores(labels, scores):
    y, s = _flat_labels(labels, scores, "scores")
    if not np.isfinite(s).all():
        raise ValueError("scores contain non-finite values")
    y = y.astype(bool)
    if y.all() or not y.any():
        raise ValueError("labels need both positives and negatives")
    return y, s


def auroc(labels, scores) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties ½
    (`sklearn.metrics.roc_auc_score`).

    Raises ValueError unless `labels` hold both positives and negatives.
    """
    y, s = _labels_scores(labels, scores)
    return float(require("sklearn.metrics").roc_auc_score(y, s))


def average_precision(labels, scores) -> float:
    """Average precision: Σ_k (R_k − R_{k−1}) P_k over score thresholds, ties grouped
    (`sklearn.metrics.average_precision_score`, no interpolation).

    Raises ValueError unless `labels` hold both positives and negatives.
    """
    y, s = _labels_scores(labels, scores)
    return float(require("sklearn.metrics").average_precision_score(y, s))


def shd(true_adjacency, estimated_adjacency) -> int:
    """Structural Hamming distance: missing + extra edges, a reversed edge counting once."""
    a = np.asarray(true_adjacency, dtype=bool)
    b = np.asarray(estimated_adjacency, dtype=bool)
    if a.shape != b.shape or a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"true_adjacency and estimated_adjacency must be square and equal "
                         f"in shape: {a.shape}, {b.shape}")
    diff = a != b
    # a reversed edge shows up as a mismatch at (i, j) and (j, i): count the pair once
    pair = diff | diff.T
    return int(np.triu(pair, k=1).sum())


def mean_error(predicted: PerturbationData, observed: PerturbationData, *,
               per_context: bool = False):
    """Euclidean distance between the predicted and observed mean cell of each context.

    Returns the average over contexts (or the `(n_contexts,)` values). Raises ValueError
    for a context without cells.
    """
    _check_pair(predicted, observed)
    err = np.linalg.norm(predicted.context_means() - observed.context_means(), axis=1)
    return err if per_context else float(err.mean())


def r2_mean_change(predicted: PerturbationData, observed: PerturbationData, control_mean, *,
                   top_k: int | None = None, per_context: bool = False):
    """R² of the predicted change of each context's mean cell from `control_mean`.

    Per context, with Δ = observed mean − control mean and Δ̂ = predicted mean − control mean
    over the variables scored (all, or the `top_k` with the largest |Δ|):
    `R² = 1 − Σ_j (Δ̂_j − Δ_j)² / Σ_j (Δ_j − mean(Δ))²` (`sklearn.metrics.r2_score` of Δ̂
    against Δ). 1 is perfect; predicting no change scores ≤ 0 unless Δ's mean is off zero.

    Args:
        control_mean: `(n_vars,)` mean control cell.
        top_k: score the k most changed variables of each context (2 ≤ k ≤ n_vars).
    Returns:
        The average over contexts, or the `(n_contexts,)` values.
    """
    _check_pair(predicted, observed)
    try:
        control = np.asarray(control_mean, float)
    except (TypeError, ValueError) as err:
        raise TypeError(f"control_mean must be a real array, got {control_mean!r}") from err
    if control.shape != (observed.n_vars,):
        raise ValueError(f"control_mean must have shape ({observed.n_vars},), got "
                         f"{control.shape}")
    if not np.isfinite(control).all():
        raise ValueError("control_mean has non-finite values")
    if top_k is not None and not 2 <= check_integer("top_k", top_k) <= observed.n_vars:
        raise ValueError(f"top_k must be in [2, {observed.n_vars}], got {top_k}")
    change = observed.context_means() - control
    pred = predicted.context_means() - control
    if top_k is not None:
        idx = np.argsort(-np.abs(change), axis=1)[:, : int(top_k)]
        change = np.take_along_axis(change, idx, 1)
        pred = np.take_along_axis(pred, idx, 1)
    total = ((change - change.mean(1, keepdims=True)) ** 2).sum(1)
    resid = ((pred - change) ** 2).sum(1)
    r2 = 1.0 - resid / np.maximum(total, np.finfo(float).tiny)
    return r2 if per_context else float(r2.mean())



# -- cell-eval's metrics (Virtual Cell Challenge) -----------------------------------------
# Read from cell-eval 0.8.2 (`cell_eval/metrics/_anndata.py`: `mae`, `discrimination_score`;
# `cell_eval/_types/_de.py`: `DEComparison.compute_overlap`) and the DE it runs, pdex 0.3.0
# (`pdex/__init__.py::_pdex_ref`, `pdex/_math.py`) with numba-mwu's asymptotic Mann–Whitney U.


def mean_absolute_error(predicted: PerturbationData, observed: PerturbationData, *,
                        per_context: bool = False):
    """Mean absolute error between the predicted and observed mean cell of each context,
    `mean_j |x̂̄_j − x̄_j|` (cell-eval's `mae`: `sklearn.metrics.mean_absolute_error` of the
    two pseudobulks, not of the changes from control).

    Returns the average over contexts (or the `(n_contexts,)` values).
    """
    _check_pair(predicted, observed)
    err = np.abs(predicted.context_means() - observed.context_means()).mean(axis=1)
    return err if per_context else float(err.mean())


def discrimination_score(predicted: PerturbationData, observed: PerturbationData, *,
                         per_context: bool = False):
    """Perturbation discrimination score (cell-eval's `discrimination_score_l1`, PDS).

    For context k with predicted mean cell x̂̄_k, the observed mean cells x̄_1..x̄_K are sorted
    by L1 distance `Σ_j |x̂̄_kj − x̄_ij|`, ties in context order; with r_k the 0-based position
    of x̄_k, the score is `1 − r_k / K`: 1 when the prediction is nearest its own context,
    1/K when it is farthest. cell-eval compares changes from each file's control pseudobulk;
    with the same control cells in the predicted and the real file (the Challenge's files,
    and how this package scores) the control cancels from every L1 distance. cell-eval also
    drops the gene named like the perturbation (CRISPR targets); a drug names no gene.

    Returns the average over contexts (or the `(n_contexts,)` values).
    """
    _check_pair(predicted, observed)
    pred, obs = predicted.context_means(), observed.context_means()
    # (k predicted, i observed), one row at a time: no (K, K, n_vars) array
    dist = np.stack([np.abs(obs - row).sum(1) for row in pred])
    order = np.argsort(dist, axis=1, kind="stable")
    rank = np.argmax(order == np.arange(dist.shape[0])[:, None], axis=1)
    score = 1.0 - rank / dist.shape[0]
    return score if per_context else float(score.mean())


def log2_fold_change(cells, control_cells) -> np.ndarray:
    """`(n_vars,)` log2 fold change of log1p-scale cells `(n, n_vars)` over control cells
    `(m, n_vars)`: `log2(expm1(mean cells) / expm1(mean control))`, the ratio of geometric
    means in count space (pdex's default for log1p data, which cell-eval ranks DE genes by);
    0/0 is 0 and a zero control mean gives ±inf, as there."""
    with np.errstate(divide="ignore", invalid="ignore"):
        lfc = np.log2(np.expm1(np.mean(cells, 0)) / np.expm1(np.mean(control_cells, 0)))
    return np.where(np.isnan(lfc), 0.0, lfc)


def mean_change(cells, control_cells) -> np.ndarray:
    """`(n_vars,)` mean of `cells (n, n_vars)` minus mean of `control_cells (m, n_vars)`:
    the effect by which `de_genes` ranks genes of data not on a log1p scale."""
    return np.mean(cells, 0) - np.mean(control_cells, 0)


def _mann_whitney_p(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """`(n_vars,)` two-sided Mann–Whitney U p-values of each column of `x (n1, d)` against
    `y (n2, d)`: normal approximation with tie and continuity corrections (scipy's
    `mannwhitneyu(method="asymptotic")`, numba-mwu's kernel); 1 where every value ties."""
    n1, n2 = x.shape[0], y.shape[0]
    n = n1 + n2
    pooled = np.concatenate([x, y]).astype(float)
    u1 = scipy.stats.rankdata(pooled, axis=0)[:n1].sum(0) - n1 * (n1 + 1) / 2.0
    u = np.maximum(u1, n1 * n2 - u1)
    # tie term Σ (t³ − t) over runs of equal values, per column
    runs = np.sort(pooled, axis=0).T  # (d, n)
    start = np.ones(runs.shape, bool)
    start[:, 1:] = runs[:, 1:] != runs[:, :-1]
    first = np.flatnonzero(start.ravel())
    length = np.diff(np.r_[first, runs.size]).astype(float)
    tie = np.bincount(first // n, length**3 - length, minlength=runs.shape[0])
    var = n1 * n2 / 12.0 * ((n + 1.0) - tie / (n * (n - 1.0)))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (u - n1 * n2 / 2.0 - 0.5) / np.sqrt(var)
    p = np.clip(2.0 * scipy.special.ndtr(-z), 0.0, 1.0)
    return np.where(var > 0, p, 1.0)


def de_genes(cells, control_cells, *, fdr: float = 0.05, effect=log2_fold_change) -> np.ndarray:
    """Differentially expressed genes of `cells (n, n_vars)` against `control_cells
    (m, n_vars)`, as cell-eval calls them (pdex "ref" mode): a two-sided Mann–Whitney U test
    per gene (`_mann_whitney_p`), Benjamini–Hochberg over the genes, kept where the adjusted
    p-value is below `fdr`, ordered by |`effect(cells, control_cells)`| descending (ties in
    gene order).

    Returns:
        `(n_de,)` int gene indices, most changed first.
    """
    x, c = np.asarray(cells, float), np.asarray(control_cells, float)
    if x.shape[0] < 1 or c.shape[0] < 1:
        raise ValueError("cells and control_cells need at least one cell each")
    q = scipy.stats.false_discovery_control(_mann_whitney_p(x, c))
    size = np.abs(np.asarray(effect(x, c), float))
    order = np.argsort(-size, kind="stable")
    return order[q[order] < fdr]


def de_overlap(predicted: PerturbationData, observed: PerturbationData, control_cells, *,
               fdr: float = 0.05, top_k: int | None = None, effect=log2_fold_change,
               per_context: bool = False):
    """Overlap of differentially expressed genes (cell-eval's `overlap_at_N`, DES).

    Per context, `de_genes` of the observed and of the predicted cells against the same
    `control_cells`; with k = the number of observed DE genes (or `min(top_k, that)`), the
    score is |first k observed ∩ first k predicted| / k, and 0 when k = 0 (a context without
    observed DE genes scores 0 however it is predicted, as in cell-eval). The predicted DE
    genes depend on how many cells are predicted: more cells, smaller p-values.

    Args:
        control_cells: `(n_control_cells, n_vars)` control cells, used for both.
        effect: how genes are ranked, `log2_fold_change` (cell-eval's, for log1p data) or
            `mean_change`.
    Returns:
        The average over contexts, or the `(n_contexts,)` values.
    """
    _check_pair(predicted, observed)
    for name, data in (("predicted", predicted), ("observed", observed)):
        if not data.cells_per_context().all():
            raise ValueError(f"{name} has contexts without cells")
    control = np.asarray(control_cells, float)
    if control.ndim != 2 or control.shape[1] != observed.n_vars or control.shape[0] < 1:
        raise ValueError(f"control_cells must have shape (n_control_cells, "
                         f"{observed.n_vars}), got {control.shape}")
    if not np.isfinite(control).all():
        raise ValueError("control_cells has non-finite values")
    if not 0 < fdr < 1:
        raise ValueError(f"fdr must be in (0, 1), got {fdr}")
    if top_k is not None:
        check_integer("top_k", top_k)
    out = np.zeros(observed.n_contexts)
    for k, (x_obs, x_pred) in enumerate(zip(_cells_by_context(observed),
                                            _cells_by_context(predicted), strict=True)):
        real = de_genes(x_obs, control, fdr=fdr, effect=effect)
        n = real.size if top_k is None else min(int(top_k), real.size)
        if n:
            pred = de_genes(x_pred, control, fdr=fdr, effect=effect)
            out[k] = np.intersect1d(real[:n], pred[:n]).size / n
    return out if per_context else float(out.mean())


def _cells_by_context(data: PerturbationData) -> list[np.ndarray]:
    """The cells of each context, `[(n_k, n_vars)]` in context order."""
    x, ctx = np.asarray(data.x), np.asarray(data.context)
    return [x[ctx == k] for k in range(data.n_contexts)]

def _labels_probs(labels, probs):
    y, p = _flat_labels(labels, probs, "probs")
    if not (np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()):
        raise ValueError("probs must be finite and in [0, 1]")
    return y.astype(float), p


def brier_score(labels, probs) -> float:
    """Mean squared difference between probabilities and 0/1 outcomes (lower is better;
    0.25 for π = ½ everywhere)."""
    y, p = _labels_probs(labels, probs)
    return float(np.mean((p - y) ** 2))


def reliability_curve(labels, probs, *, n_bins: int = 10) -> dict:
    """Calibration table: per equal-width bin of `probs`, the mean probability, the share of
    true labels and the count (empty bins dropped). Calibrated: share ≈ mean probability.

    Returns:
        `{"mean_prob", "frequency", "count"}`, arrays of one entry per non-empty bin.
    """
    y, p = _labels_probs(labels, probs)
    n_bins = check_integer("n_bins", n_bins)
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    keep = count > 0
    mean_prob = np.bincount(bins, p, n_bins)[keep] / count[keep]
    frequency = np.bincount(bins, y, n_bins)[keep] / count[keep]
    return {"mean_prob": mean_prob, "frequency": frequency, "count": count[keep]}


def _padded_clouds(data: PerturbationData):
    """Cells grouped by context: `(points (k, m, d), weights (k, m))`, weights 1/n_k on real
    cells and 0 on padding, `m = max_k n_k`. Raises ValueError for a context without cells."""
    counts = data.context_moments().count.astype(np.int64)
    x, ctx = np.asarray(data.x), np.asarray(data.context)
    order = np.argsort(ctx, kind="stable")
    start = np.r_[0, np.cumsum(counts)[:-1]]
    slot = np.arange(ctx.size) - np.repeat(start, counts)
    points = np.zeros((data.n_contexts, counts.max(), x.shape[1]), x.dtype)
    weights = np.zeros((data.n_contexts, counts.max()), x.dtype)
    points[ctx[order], slot] = x[order]
    weights[ctx[order], slot] = 1.0 / counts[ctx[order]]
    return jnp.asarray(points), jnp.asarray(weights)


def _check_pair(predicted: PerturbationData, observed: PerturbationData) -> None:
    """Both `PerturbationData` with cells, the same contexts and variables."""
    for name, data in (("predicted", predicted), ("observed", observed)):
        if not isinstance(data, PerturbationData):
            raise TypeError(f"{name} must be a gim_ppl.PerturbationData, got "
                            f"{type(data).__name__}")
        if not data.has_cells:
            raise ValueError(f"{name} has no cells (x is None)")
    if predicted.n_contexts != observed.n_contexts:
        raise ValueError(f"predicted has {predicted.n_contexts} contexts, observed "
                         f"{observed.n_contexts}")
    if predicted.n_vars != observed.n_vars:
        raise ValueError(f"predicted has {predicted.n_vars} variables, observed "
                         f"{observed.n_vars}")


def _paired_clouds(predicted: PerturbationData, observed: PerturbationData):
    _check_pair(predicted, observed)
    return (*_padded_clouds(predicted), *_padded_clouds(observed))


@functools.partial(jax.jit, static_argnames=("max_iterations",))
def _sinkhorn_w2(x, a, y, b, epsilon, max_iterations: int):
    pointcloud = require("ott.geometry.pointcloud")
    sinkhorn_divergence = require("ott.tools.sinkhorn_divergence")

    def one(args):
        x, a, y, b = args
        div, out = sinkhorn_divergence.sinkhorn_divergence(
            pointcloud.PointCloud, x, y, a=a, b=b, epsilon=epsilon,
            solve_kwargs={"max_iterations": max_iterations, "threshold": 1e-3},
        )
        converged = jnp.all(jnp.asarray(out.converged))
        return jnp.sqrt(jnp.maximum(div, 0.0)), converged

    # lax.map, not vmap: a vmapped Sinkhorn loop runs every context to the slowest one's
    # iteration count
    return jax.lax.map(one, (x, a, y, b))


def wasserstein(predicted: PerturbationData, observed: PerturbationData, *,
                epsilon: float = 0.1, max_iterations: int = 10_000, per_context: bool = False):
    """Wasserstein-2 between predicted and observed cells of each context, as √S_ε.

    S_ε is ott-jax's debiased Sinkhorn divergence with cost ‖x − y‖² (no cost scaling) and
    absolute entropic regularisation `epsilon` in squared data units; its entropic bias is
    removed by the debiasing, so two samples of one distribution score near 0.
    """
    if epsilon <= 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon}")
    x, a, y, b = _paired_clouds(predicted, observed)
    w2, converged = _sinkhorn_w2(x, a, y, b, float(epsilon), int(max_iterations))
    w2, converged = np.asarray(w2), np.asarray(converged)
    if not converged.all():
        warnings.warn(
            f"Sinkhorn did not converge in {max_iterations} iterations for contexts "
            f"{np.flatnonzero(~converged)[:10].tolist()}; raise max_iterations or epsilon",
            RuntimeWarning, stacklevel=2)
    return w2 if per_context else float(w2.mean())


def _pairwise(x, y):
    return jnp.sum((x[:, None, :] - y[None, :, :]) ** 2, axis=-1)


def _weighted_means(kxx, kyy, kxy, a, b, unbiased: bool):
    """E k(X, Y), E k(X, X'), E k(Y, Y') under weights `a`, `b` (uniform on real points);
    with `unbiased`, the within-sample means exclude the diagonal (U-statistics)."""
    mxy = a @ kxy @ b
    if not unbiased:
        return a @ kxx @ a, b @ kyy @ b, mxy

    def within(k, w):
        return (w @ k @ w - jnp.sum(w**2 * jnp.diag(k))) / (1.0 - jnp.sum(w**2))

    return within(kxx, a), within(kyy, b), mxy


@jax.jit
def _mmd2(x, a, y, b, h2):
    def one(x, a, y, b, h2):
        kxx, kyy, kxy = (jnp.exp(-_pairwise(u, v) / (2.0 * h2)) for u, v in ((x, x), (y, y),
                                                                              (x, y)))
        mxx, myy, mxy = _weighted_means(kxx, kyy, kxy, a, b, unbiased=True)
        return mxx + myy - 2.0 * mxy

    return jax.vmap(one)(x, a, y, b, h2)


def _median_sq_distance(x, a, y, b) -> np.ndarray:
    """Median squared distance between distinct pooled real points, per context `(k,)`.

    Computed with numpy's partition outside jit: a median over masked pairs inside XLA sorts
    the padded matrix and dominated the run time."""
    out = np.empty(x.shape[0])
    for k in range(x.shape[0]):
        pooled = np.concatenate([np.asarray(x[k])[np.asarray(a[k]) > 0],
                                 np.asarray(y[k])[np.asarray(b[k]) > 0]])
        sq = np.sum(pooled**2, axis=1)
        d2 = sq[:, None] + sq[None, :] - 2.0 * pooled @ pooled.T
        out[k] = np.median(d2[np.triu_indices(pooled.shape[0], k=1)])
    return np.maximum(out, 1e-12)


def mmd(predicted: PerturbationData, observed: PerturbationData, *, per_context: bool = False):
    """Unbiased squared MMD with an RBF kernel `exp(−‖x−y‖² / 2h²)`, `h²` the median squared
    distance between the pooled cells of the context (median heuristic)."""
    x, a, y, b = _paired_clouds(predicted, observed)
    h2 = _median_sq_distance(x, a, y, b)
    val = np.asarray(_mmd2(x, a, y, b, jnp.asarray(h2, x.dtype)))
    return val if per_context else float(val.mean())


@jax.jit
def _energy(x, a, y, b):
    def one(x, a, y, b):
        # sqrt of a zero squared distance has an infinite gradient; guard keeps it finite
        dist = [jnp.sqrt(jnp.maximum(_pairwise(u, v), 1e-30)) for u, v in ((x, x), (y, y),
                                                                           (x, y))]
        mxx, myy, mxy = _weighted_means(*dist, a, b, unbiased=False)
        return 2.0 * mxy - mxx - myy

    return jax.vmap(one)(x, a, y, b)


def energy_distance(predicted: PerturbationData, observed: PerturbationData, *,
                    per_context: bool = False):
    """Energy distance 2E‖X−Y‖ − E‖X−X'‖ − E‖Y−Y'‖ between the empirical distributions
    (V-statistics: ≥ 0, and 0 only for identical clouds)."""
    x, a, y, b = _paired_clouds(predicted, observed)
    val = np.asarray(_energy(x, a, y, b))
    return val if per_context else float(val.mean())
