"""`synthetic_hill`: the synthetic benchmark of DESIGN.md §5, with its ground truth.

A random DAG SCM (ER or scale-free; linear or random-MLP mechanisms; Gaussian noise) and a
random ground-truth intervention model: perturbation features `z ~ N(0, I_p)`; each
perturbation targets the variables whose score `(z @ A / √p)_j ~ N(0, 1)` exceeds the
normal quantile giving `expected_targets` targets on average, keeping at least the top one
and at most the top `max_targets` (1–3 by default). Targets are thus a deterministic function
of the features, as the GIM assumes (no target randomness beyond what z explains). Its Hill
parameters are smooth functions of z:

    emax_j  = sign_j · (1.5 + 0.5 · tanh(z @ B_e / √p)_j)       (|emax| in [1, 2])
    EC50_j  = exp(0.4 · tanh(z @ B_c / √p)_j)                     (in [0.67, 1.49])
    hill_j  = 2 · exp(0.3 · tanh(z @ B_h / √p)_j)                 (in [1.48, 2.70])

Splits: `train` (perturbations at `train_doses` + one observational context), `partial_ood`
(the same perturbations at new doses), `full_ood` (new perturbations at the train doses).
Training sets of different sizes (`n_train_perturbations`) are nested and share the truth
and the test perturbations (`_perturbation_features`), so a learning curve is well defined.

Misspecification (for robustness checks; the defaults are the well-specified benchmark and
leave every draw above unchanged): `noise_df` gives the exogenous noise a Student-t law with
that many degrees of freedom, rescaled to the same sd (heavy tails); `context_shift` adds one
offset `c_k ~ N(0, context_shift²)` to every variable's exogenous term in each perturbational
context (a plate or batch effect shared by all variables, which a GIM can only explain as
small targets everywhere); `mechanism="mlp"` fitted with a linear GIM is the nonlinear case.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import ndtri

from gim_ppl.core.hill import hill_shift
from gim_ppl.core.likelihood import CellModel, sample_cells
from gim_ppl.core.mechanisms import as_mechanism, mechanism_mean
from gim_ppl.data import PerturbationData

SPLITS = ("train", "partial_ood", "full_ood")


@dataclasses.dataclass(frozen=True)
class GroundTruth:
    """The true SCM and interventions.

    adjacency: `(d, d)` bool (i → j); weights `(d, d)`; bias, noise_scale `(d,)`;
    mechanism: "linear" | "mlp"; mlp: extra mechanism parameters (empty for linear);
    targets[split]: `(n_contexts, d)` bool; hill[split]: dict(emax, ec50, hill) `(n_contexts, d)`;
    noise_df: Student-t degrees of freedom of the noise (None: Gaussian);
    context_offsets[split]: `(n_contexts,)` offset added to every variable (empty: none).
    """

    adjacency: np.ndarray
    weights: np.ndarray
    bias: np.ndarray
    noise_scale: np.ndarray
    mechanism: str
    mlp: dict
    targets: dict
    hill: dict
    noise_df: float | None = None
    context_offsets: dict = dataclasses.field(default_factory=dict)

    def mechanism_params(self) -> dict:
        """Parameters in the layout of `gim_ppl.core.mechanisms` (jnp arrays)."""
        params = {"weights": self.weights, "bias": self.bias, **self.mlp}
        return {k: jnp.asarray(v) for k, v in params.items()}


@dataclasses.dataclass(frozen=True)
class SyntheticBenchmark:
    """Splits (`PerturbationData` with cells) and their ground truth; `sample` draws fresh
    cells from the true distribution of a split (the oracle)."""

    train: PerturbationData
    partial_ood: PerturbationData
    full_ood: PerturbationData
    truth: GroundTruth

    def split(self, name: str) -> PerturbationData:
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {name!r}")
        return getattr(self, name)

    def sample(self, split: str, key, n_cells: int) -> PerturbationData:
        """`n_cells` fresh true cells per context of `split` (targets are the true ones)."""
        contexts = self.split(split)
        x, ctx = sample_true_cells(self.truth, self.truth.targets[split],
                                   self.truth.hill[split], contexts, key, int(n_cells),
                                   self.truth.context_offsets.get(split))
        return contexts.replace(x=x, context=ctx).with_moments(only_if_cheaper=True)


def sample_true_cells(truth: GroundTruth, targets, h, contexts: PerturbationData, key, n_cells,
                      offsets=None):
    """`n_cells` cells per context from the true SCM: `(x (k·n_cells, d), context (k·n_cells,))`.

    Args:
        targets: `(k, d)` per context, or `(k·n_cells, d)` per cell (context-major).
        h: Hill parameters `dict(emax, ec50, hill)`, each `(k, d)`.
        contexts: the k contexts (their doses are used).
        offsets: optional `(k,)` offset of each context on every variable's exogenous term.
    """
    k, d = contexts.n_contexts, len(truth.bias)
    ctx = jnp.repeat(jnp.arange(k, dtype=jnp.int32), n_cells)
    shift = hill_shift(contexts.dose[:, None], jnp.asarray(h["emax"]),
                       jnp.log(jnp.asarray(h["ec50"])), jnp.log(jnp.asarray(h["hill"])))
    targets = jnp.asarray(targets, shift.dtype)
    per_cell = targets if targets.shape[0] == k * n_cells else targets[ctx]
    if truth.noise_df is None:
        noise = jax.random.normal(key, (k * n_cells, d), shift.dtype)
    else:  # unit variance, so noise_scale keeps its meaning
        df = float(truth.noise_df)
        noise = jax.random.t(key, df, (k * n_cells, d), shift.dtype) * math.sqrt((df - 2) / df)
    if offsets is not None:  # σ·ε + c_k: the shared offset enters with the noise
        noise = noise + (jnp.asarray(offsets, shift.dtype)[ctx][:, None]
                         / jnp.asarray(truth.noise_scale, shift.dtype))
    params = {**truth.mechanism_params(), "noise_scale": jnp.asarray(truth.noise_scale)}
    x = sample_cells(CellModel(as_mechanism(truth.mechanism)), params, noise, per_cell,
                     shift[ctx])
    return x, ctx


#: Training perturbations of the paper's protocol. Feature draws are laid out around it so
#: that other sizes give nested training sets with the same test perturbations.
BASE_TRAIN_PERTURBATIONS = 40


def _perturbation_features(rng, seed: int, n_train: int, n_test: int, p: int) -> np.ndarray:
    """`(n_train + n_test, p)` features: training rows, then test rows.

    The main stream always draws `BASE_TRAIN_PERTURBATIONS + n_test` rows (the protocol's
    layout), so the intervention model drawn after them, and the test perturbations, do not
    depend on `n_train`: a smaller training set is a prefix of the base rows, a larger one
    adds rows from a separate stream. A learning curve thus compares nested training sets
    against the same test perturbations and the same truth.
    """
    base = rng.normal(size=(BASE_TRAIN_PERTURBATIONS + n_test, p))
    train = base[: min(n_train, BASE_TRAIN_PERTURBATIONS)]
    if n_train > BASE_TRAIN_PERTURBATIONS:
        extra = np.random.default_rng([seed, 1]).normal(
            size=(n_train - BASE_TRAIN_PERTURBATIONS, p))
        train = np.concatenate([train, extra])
    return np.concatenate([train, base[BASE_TRAIN_PERTURBATIONS:]])


def _threshold_targets(score, expected_targets: float, max_targets: int) -> np.ndarray:
    """Targets = variables whose score exceeds the `1 − expected/d` normal quantile; at least
    the top-scoring one, at most the `max_targets` highest. A deterministic function of z."""
    d = score.shape[1]
    threshold = ndtri(1.0 - min(expected_targets / d, 1.0 - 1e-9))
    rank = np.argsort(np.argsort(-score, axis=1), axis=1)  # 0 = highest score
    return ((score > threshold) | (rank == 0)) & (rank < max_targets)


def random_dag(rng: np.random.Generator, n_vars: int, graph: str = "er",
               expected_degree: float = 2.0) -> np.ndarray:
    """Random DAG `(d, d)` bool with expected total degree `expected_degree` per node.

    "er": Erdős–Rényi on a random node order; "sf": Barabási–Albert preferential attachment
    (each new node gets `expected_degree / 2` parents among earlier nodes).
    """
    d = n_vars
    adj = np.zeros((d, d), dtype=bool)
    if graph == "er":
        p = min(1.0, expected_degree / max(d - 1, 1))
        adj = np.triu(rng.random((d, d)) < p, k=1)
    elif graph == "sf":
        m = max(1, round(expected_degree / 2))
        degree = np.zeros(d)
        for j in range(1, d):
            n_par = min(m, j)
            w = degree[:j] + 1.0
            parents = rng.choice(j, size=n_par, replace=False, p=w / w.sum())
            adj[parents, j] = True
            degree[parents] += 1
            degree[j] += n_par
    else:
        raise ValueError(f"graph must be 'er' or 'sf', got {graph!r}")
    perm = rng.permutation(d)
    return adj[np.ix_(perm, perm)]


def synthetic_hill(
    seed: int,
    n_vars: int = 10,
    mechanism: str = "linear",
    graph: str = "er",
    *,
    n_features: int = 10,
    n_train_perturbations: int = 40,
    n_test_perturbations: int = 20,
    train_doses=(0.5, 1.0, 1.5, 2.0),
    partial_ood_doses=(0.25, 0.75, 1.25, 1.75, 2.25),
    n_cells: int = 50,
    n_test_cells: int = 100,
    n_observational: int = 800,
    expected_degree: float = 2.0,
    max_targets: int = 3,
    expected_targets: float = 2.0,
    mlp_hidden: int = 8,
    noise_df: float | None = None,
    context_shift: float = 0.0,
) -> SyntheticBenchmark:
    """Build the synthetic Hill benchmark (deterministic in `seed`). See the module docstring.

    Train: `n_train_perturbations × len(train_doses)` contexts of `n_cells` cells plus one
    observational context of `n_observational` cells. Test splits: `n_test_cells` per context.
    `noise_df` (> 2) and `context_shift` (≥ 0) make it misspecified (module docstring).
    """
    if mechanism not in ("linear", "mlp"):
        raise ValueError(f"mechanism must be 'linear' or 'mlp', got {mechanism!r}")
    if noise_df is not None and not (np.isfinite(noise_df) and noise_df > 2):
        raise ValueError(f"noise_df must be a number > 2 (finite variance) or None, got "
                         f"{noise_df!r}")
    if not (np.isfinite(context_shift) and context_shift >= 0):
        raise ValueError(f"context_shift must be a number >= 0, got {context_shift!r}")
    if n_vars < 2 or n_features < 1 or not 1 <= max_targets <= n_vars:
        raise ValueError("need n_vars >= 2, n_features >= 1 and 1 <= max_targets <= n_vars")
    rng = np.random.default_rng(seed)
    d, p = n_vars, n_features
    adj = random_dag(rng, d, graph, expected_degree)
    weights = np.where(adj, rng.choice([-1.0, 1.0], (d, d)) * rng.uniform(0.5, 2.0, (d, d)), 0.0)
    bias = rng.uniform(-1.0, 1.0, d)
    noise_scale = rng.uniform(0.5, 1.0, d)
    mlp = {}
    if mechanism == "mlp":
        mlp = {
            "mlp_w1": rng.normal(0.0, 1.0, (d, d, mlp_hidden)),
            "mlp_b1": rng.normal(0.0, 0.5, (d, mlp_hidden)),
            "mlp_w2": rng.normal(0.0, 1.0, (d, mlp_hidden)) / np.sqrt(mlp_hidden),
        }

    n_pert = n_train_perturbations + n_test_perturbations
    z = _perturbation_features(rng, seed, n_train_perturbations, n_test_perturbations, p)
    score = z @ rng.normal(size=(p, d)) / np.sqrt(p)
    targets = _threshold_targets(score, expected_targets, max_targets)
    sign = rng.choice([-1.0, 1.0], d)

    def smooth(scale):
        return scale * np.tanh(z @ rng.normal(size=(p, d)) / np.sqrt(p))

    emax = sign * (1.5 + smooth(0.5))
    ec50 = np.exp(smooth(0.4))
    hill = 2.0 * np.exp(smooth(0.3))

    names = [f"drug_{i:02d}" for i in range(n_pert)]
    train_ids = np.arange(n_train_perturbations)
    test_ids = np.arange(n_train_perturbations, n_pert)
    layouts = {
        "train": (train_ids, np.asarray(train_doses, float), True),
        "partial_ood": (train_ids, np.asarray(partial_ood_doses, float), False),
        "full_ood": (test_ids, np.asarray(train_doses, float), False),
    }
    truth_targets, truth_hill, contexts = {}, {}, {}
    for split, (ids, doses, with_control) in layouts.items():
        pid = np.repeat(ids, doses.size)
        dose = np.tile(doses, ids.size)
        obs = np.zeros(pid.size, dtype=bool)
        cnames = [f"{names[i]}@{c:g}" for i, c in zip(pid, dose, strict=True)]
        if with_control:
            pid, dose = np.concatenate([[-1], pid]), np.concatenate([[0.0], dose])
            obs = np.concatenate([[True], obs])
            cnames = ["control", *cnames]
        safe = np.maximum(pid, 0)
        truth_targets[split] = np.where(obs[:, None], False, targets[safe])
        truth_hill[split] = {"emax": emax[safe], "ec50": ec50[safe], "hill": hill[safe]}
        contexts[split] = PerturbationData.from_arrays(
            features=np.where(obs[:, None], 0.0, z[safe]), dose=dose, observational=obs,
            perturbation=pid, var_names=[f"x{j}" for j in range(d)], context_names=cnames,
            feature_names=[f"z{j}" for j in range(p)], perturbation_names=names,
        )
    # Offsets from their own stream, so the well-specified draws above stay as they were.
    offset_rng = np.random.default_rng([seed, 1])
    offsets = {} if context_shift == 0 else {
        split: np.where(np.asarray(contexts[split].observational), 0.0,
                        offset_rng.normal(0.0, context_shift, contexts[split].n_contexts))
        for split in SPLITS}
    truth = GroundTruth(adj, weights, bias, noise_scale, mechanism, mlp, truth_targets,
                        truth_hill, noise_df, offsets)

    keys = jax.random.split(jax.random.key(seed), 3)
    splits = {}
    for key, split in zip(keys, SPLITS, strict=True):
        ctx_data, tg, h = contexts[split], truth_targets[split], truth_hill[split]
        off = offsets.get(split)
        if split == "train":
            x, ctx = sample_true_cells(truth, tg, h, ctx_data, key, n_cells, off)
            # The observational context (index 0) gets n_observational cells.
            first = {k: v[:1] for k, v in h.items()}
            x_obs, _ = sample_true_cells(truth, tg[:1], first, ctx_data.subset([0]),
                                   jax.random.fold_in(key, 1), n_observational,
                                   None if off is None else off[:1])
            x = jnp.concatenate([x_obs, x[n_cells:]])
            ctx = jnp.concatenate([jnp.zeros(n_observational, jnp.int32), ctx[n_cells:]])
        else:
            x, ctx = sample_true_cells(truth, tg, h, ctx_data, key, n_test_cells, off)
        splits[split] = ctx_data.replace(x=x, context=ctx).with_moments(only_if_cheaper=True)
    return SyntheticBenchmark(truth=truth, **splits)


def fitted_mean(truth: GroundTruth, x):
    """True `f(x)` for `(n_cells, d)` cells (for tests and oracles)."""
    return mechanism_mean(truth.mechanism, truth.mechanism_params(), jnp.asarray(x))
