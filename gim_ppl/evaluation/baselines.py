"""Reference predictors, each with `fit(data, ...) -> self` and
`predict(contexts, *, key, n_cells) -> PerturbationData`.

- `Oracle`: fresh cells from the true model of a synthetic benchmark — the sampling-noise
  floor of every metric at the given sample sizes.
- `OracleFeatureTargets`: the true SCM and true Hill curves, but targets predicted from the
  features by logistic regressions fitted to the true training targets — how far the
  features of the training perturbations can take any method on unseen ones.
- `Observational`: the control distribution for every context — what a model must beat to
  have learned anything about perturbations.
- `Unstructured`: a "black box" network from (features, dose) to a per-variable mean shift
  and log-scale applied to control cells; no causal structure, no targets.
- `CausalTwoStage`: the GIM's causal model with free per-context interventions (no feature
  model), then kernel ridge regressions from (features, dose) to the inferred target
  probabilities and shifts; unseen contexts are simulated from the fitted SCM.

The simple baselines (control cells moved by a predicted mean change; DESIGN.md §5):
- `MeanShift`: the mean change of the training perturbations (all doses, or dose-matched);
- `Ridge`: ridge from (features, log dose, features × log dose), λ by leave-one-perturbation-out;
- `NearestNeighbour`: the nearest training perturbation in feature space, at the nearest dose;
- `DoseInterpolation`: a known perturbation's own measured doses, interpolated in log dose.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gim_ppl.core.likelihood import sample_cells
from gim_ppl.core.mechanisms import masked_weights
from gim_ppl.data import PerturbationData
from gim_ppl.datasets.synthetic import sample_true_cells


def cells_for_contexts(contexts: PerturbationData, x, n_cells: int) -> PerturbationData:
    """Wrap `x (n_contexts · n_cells, n_vars)`, context-major, as cells of `contexts`."""
    ctx = jnp.asarray(np.repeat(np.arange(contexts.n_contexts), n_cells).astype(np.int32))
    return contexts.replace(x=jnp.asarray(x), context=ctx)


def _check_fitted(value, name: str):
    if value is None:
        raise RuntimeError(f"{name}: call fit() first")


class Oracle:
    """Fresh cells from the true distribution of a `SyntheticBenchmark` split.

    `predict(contexts)` recognises which split `contexts` are (by context names and doses).
    """

    def __init__(self, bench):
        self.bench = bench

    def fit(self, data: PerturbationData | None = None, **_) -> Oracle:
        return self

    def _split_of(self, contexts: PerturbationData) -> str:
        for name in ("train", "partial_ood", "full_ood"):
            split = self.bench.split(name)
            if (split.context_names == contexts.context_names
                    and np.array_equal(np.asarray(split.dose), np.asarray(contexts.dose))):
                return name
        raise ValueError("Oracle.predict: contexts are not one of the benchmark's splits "
                         "(train, partial_ood, full_ood)")

    def predict(self, contexts: PerturbationData, *, key, n_cells: int) -> PerturbationData:
        return self.bench.sample(self._split_of(contexts), key, n_cells)


class OracleFeatureTargets(Oracle):
    """True SCM and true Hill parameters; targets of every context drawn per cell from π(z),
    one L2 logistic regression per variable fitted to the TRUE targets of the training
    perturbations (one row per perturbation; C by 5-fold CV on log-loss).

    A reference, not a method: it knows everything but which variables a new perturbation
    targets, so its full-OOD error is what target prediction from features costs on this
    benchmark (GIM predictions also draw targets per cell, `predict(mode="mixture")`).
    """

    def fit(self, data: PerturbationData | None = None, **_) -> OracleFeatureTargets:
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import GridSearchCV

        train = self.bench.train
        _, first = train.perturbation_contexts()  # one row per perturbation
        z = np.asarray(train.features, float)[first]
        y = self.bench.truth.targets["train"][first]
        self.models = []
        for j in range(y.shape[1]):
            labels = y[:, j]
            if labels.all() or not labels.any():
                self.models.append(float(labels.mean()))  # one class: constant π
                continue
            n_folds = int(min(5, labels.sum(), (~labels).sum()))
            if n_folds < 2:  # a class with one member: no CV possible, C = 1
                self.models.append(LogisticRegression(max_iter=5000).fit(z, labels))
                continue
            search = GridSearchCV(LogisticRegression(max_iter=5000),
                                  {"C": np.logspace(-2, 2, 9)}, cv=n_folds,
                                  scoring="neg_log_loss")
            self.models.append(search.fit(z, labels).best_estimator_)
        return self

    def target_probabilities(self, contexts: PerturbationData) -> np.ndarray:
        """`(n_contexts, n_vars)` π(z); 0 for observational contexts."""
        _check_fitted(getattr(self, "models", None), "OracleFeatureTargets")
        z = np.asarray(contexts.features, float)
        pi = np.stack([np.full(len(z), m) if isinstance(m, float) else m.predict_proba(z)[:, 1]
                       for m in self.models], 1)
        return np.where(np.asarray(contexts.observational)[:, None], 0.0, pi)

    def target_scores(self, contexts: PerturbationData) -> np.ndarray:
        """`(n_contexts, n_vars)` π(z) (`methods.TargetScorer`)."""
        return self.target_probabilities(contexts)

    def predict(self, contexts: PerturbationData, *, key, n_cells: int) -> PerturbationData:
        truth = self.bench.truth
        pi = np.repeat(self.target_probabilities(contexts), n_cells, axis=0)
        k_target, k_noise = jax.random.split(key)
        targets = jax.random.bernoulli(k_target, jnp.asarray(pi, jnp.float32))
        split = self._split_of(contexts)
        x, _ = sample_true_cells(truth, targets, truth.hill[split], contexts, k_noise, n_cells,
                                 truth.context_offsets.get(split))
        return cells_for_contexts(contexts, x, n_cells)


class Observational:
    """Predict the pooled control (observational) cells for every context."""

    def __init__(self):
        self.control = None

    def fit(self, data: PerturbationData, **_) -> Observational:
        self.control = jnp.asarray(data.control_cells())
        return self

    def predict(self, contexts: PerturbationData, *, key, n_cells: int) -> PerturbationData:
        _check_fitted(self.control, "Observational")
        idx = jax.random.randint(key, (contexts.n_contexts * n_cells,), 0,
                                 self.control.shape[0])
        return cells_for_contexts(contexts, self.control[idx], n_cells)


def _dose_inputs(contexts: PerturbationData) -> np.ndarray:
    """`(k, p + 2)` regression inputs: features, dose and log(1 + dose)."""
    dose = np.asarray(contexts.dose, dtype=float)[:, None]
    return np.concatenate([np.asarray(contexts.features, float), dose, np.log1p(dose)], 1)


class Unstructured:
    """MLP `(z, c) ↦ (δ, log s)` per variable; predicted cells are control cells moved to
    `μ₀ + δ + s · (x₀ − μ₀)`.

    Fitted by the Gaussian likelihood of each context's cell moments (mean and variance) under
    `N(μ₀ + δ, (s σ₀)²)`, with optax Adam in one jitted `lax.scan`. Observational contexts are
    part of the training set (inputs 0), so the network learns "no shift" at dose 0.
    """

    def __init__(self, hidden: int = 64, steps: int = 5000, learning_rate: float = 3e-3,
                 weight_decay: float = 1e-4):
        self.hidden, self.steps = int(hidden), int(steps)
        self.learning_rate, self.weight_decay = float(learning_rate), float(weight_decay)
        self.params = None

    def _apply(self, params, inputs):
        h = jnp.tanh((inputs - self.in_mean) / self.in_scale @ params["w1"] + params["b1"])
        h = jnp.tanh(h @ params["w2"] + params["b2"])
        out = h @ params["w3"] + params["b3"]
        d = out.shape[-1] // 2
        return out[:, :d], out[:, d:]

    def fit(self, data: PerturbationData, *, key=None, **_) -> Unstructured:
        key = jax.random.key(0) if key is None else key
        control = data.control_cells()
        self.mu0 = jnp.asarray(control.mean(0))
        self.sd0 = jnp.asarray(np.maximum(control.std(0), 1e-6))
        self.control = jnp.asarray(control)
        counts, mean, var = (jnp.asarray(a) for a in data.context_moments())
        inputs = _dose_inputs(data)
        self.in_mean = jnp.asarray(inputs.mean(0))
        self.in_scale = jnp.asarray(np.maximum(inputs.std(0), 1e-6))
        inputs = jnp.asarray(inputs)
        d, n_in, h = data.n_vars, inputs.shape[1], self.hidden
        k1, k2, k3 = jax.random.split(key, 3)
        params = {
            "w1": jax.random.normal(k1, (n_in, h)) / np.sqrt(n_in), "b1": jnp.zeros(h),
            "w2": jax.random.normal(k2, (h, h)) / np.sqrt(h), "b2": jnp.zeros(h),
            "w3": jax.random.normal(k3, (h, 2 * d)) * 0.01, "b3": jnp.zeros(2 * d),
        }
        weight = counts / counts.sum()

        def loss(params):
            shift, log_scale = self._apply(params, inputs)
            sd = self.sd0 * jnp.exp(log_scale)
            nll = jnp.log(sd) + (var + (mean - self.mu0 - shift) ** 2) / (2.0 * sd**2)
            return jnp.sum(weight[:, None] * nll)

        opt = optax.adamw(self.learning_rate, weight_decay=self.weight_decay)

        @jax.jit
        def run(params):
            def step(carry, _):
                params, state = carry
                value, grad = jax.value_and_grad(loss)(params)
                updates, state = opt.update(grad, state, params)
                return (optax.apply_updates(params, updates), state), value

            (params, _), losses = jax.lax.scan(step, (params, opt.init(params)), None,
                                               length=self.steps)
            return params, losses

        self.params, self.losses = run(params)
        return self

    def predict(self, contexts: PerturbationData, *, key, n_cells: int) -> PerturbationData:
        _check_fitted(self.params, "Unstructured")
        shift, log_scale = self._apply(self.params, jnp.asarray(_dose_inputs(contexts)))
        shift = jnp.where(contexts.observational[:, None], 0.0, shift)
        log_scale = jnp.where(contexts.observational[:, None], 0.0, log_scale)
        k = contexts.n_contexts
        idx = jax.random.randint(key, (k, n_cells), 0, self.control.shape[0])
        x0 = self.control[idx] - self.mu0
        x = self.mu0 + shift[:, None] + jnp.exp(log_scale)[:, None] * x0
        return cells_for_contexts(contexts, x.reshape(k * n_cells, -1), n_cells)


class CausalTwoStage:
    """Stage 1: a GIM whose features are one-hot context indicators, i.e. free targets and
    shifts per training context. Stage 2: kernel ridge regressions (RBF; α and γ chosen by
    cross-validation grouped by perturbation) from (features, dose) to the inferred target
    probabilities, and, per variable, to the inferred shift on the contexts that target it.

    Unseen contexts: targets `I ~ Bernoulli(p̂)` per cell, shifts `ŝ`, cells from the stage-1
    SCM (so the graph and noise are learned as in the GIM; only the feature map differs).
    """

    def __init__(self, steps: int = 30_000, learning_rate: float = 1e-3, **gim_options):
        self.steps, self.learning_rate = int(steps), float(learning_rate)
        self.gim_options = gim_options
        self.sites = None

    @staticmethod
    def one_hot_contexts(data: PerturbationData) -> PerturbationData:
        """`data` with features replaced by indicators of its perturbational contexts."""
        pert = np.flatnonzero(~np.asarray(data.observational))
        feats = np.zeros((data.n_contexts, pert.size), dtype=np.asarray(data.features).dtype)
        feats[pert, np.arange(pert.size)] = 1.0
        return data.replace(features=jnp.asarray(feats),
                            feature_names=tuple(f"ctx_{i}" for i in range(pert.size)))

    def fit(self, data: PerturbationData, *, key, progress: bool = False) -> CausalTwoStage:
        from gim_ppl.inference import fit
        from gim_ppl.model import GIM

        onehot = self.one_hot_contexts(data)
        self.model = GIM(data.n_vars, onehot.n_features, **self.gim_options)
        if self.model.intervention_effect != "shift":
            raise ValueError("CausalTwoStage supports intervention_effect='shift' only")
        result = fit(self.model, onehot, steps=self.steps, key=key,
                     optimizer=optax.adam(self.learning_rate), progress=progress)
        self.sites, self.fit_result, self.onehot = result.sites, result, onehot
        pert = ~np.asarray(data.observational)
        probs = np.asarray(self.model.posterior_targets(self.sites, onehot))
        shifts = self.model.hill_effects(self.sites, onehot)  # the model's own Hill step
        return self.fit_regressions(data.subset(np.flatnonzero(pert)), probs[pert], shifts[pert])

    def fit_regressions(self, contexts: PerturbationData, target_probs, shifts) -> CausalTwoStage:
        """Stage 2 alone: regress `target_probs (k, d)` and `shifts (k, d)` of perturbational
        `contexts` on (features, dose). `fit` calls it with the stage-1 inferences."""
        from sklearn.kernel_ridge import KernelRidge
        from sklearn.model_selection import GridSearchCV, GroupKFold

        probs, shifts = np.asarray(target_probs, float), np.asarray(shifts, float)
        inputs = _dose_inputs(contexts)
        self.in_mean, self.in_scale = inputs.mean(0), np.maximum(inputs.std(0), 1e-6)
        z = (inputs - self.in_mean) / self.in_scale
        groups = np.asarray(contexts.perturbation)
        grid = {"alpha": [1e-2, 1e-1, 1.0], "gamma": np.array([0.25, 1.0, 4.0]) / z.shape[1]}

        def regressor(x, y, g):
            # grouped CV: held-out folds are unseen perturbations, as at prediction time
            n_splits = min(5, np.unique(g).size)
            if n_splits < 2:
                return KernelRidge(kernel="rbf", alpha=0.1, gamma=1.0 / z.shape[1]).fit(x, y)
            # MSE, not R²: R² is undefined on held-out folds of one context
            search = GridSearchCV(KernelRidge(kernel="rbf"), grid,
                                  cv=GroupKFold(n_splits=n_splits),
                                  scoring="neg_mean_squared_error")
            return search.fit(x, y, groups=g).best_estimator_

        self.target_regressor = regressor(z, probs, groups)
        self.shift_regressors = []
        for j in range(probs.shape[1]):
            hit = probs[:, j] > 0.5
            self.shift_regressors.append(
                regressor(z[hit], shifts[hit, j], groups[hit]) if hit.sum() >= 2 else None)
        return self

    def interventions(self, contexts: PerturbationData):
        """Predicted `(target_probs (k, d), shifts (k, d))` for `contexts`."""
        if not hasattr(self, "target_regressor"):
            raise RuntimeError("CausalTwoStage: call fit() first")
        z = (_dose_inputs(contexts) - self.in_mean) / self.in_scale
        k, d = contexts.n_contexts, contexts.n_vars
        probs = np.clip(self.target_regressor.predict(z), 0.0, 1.0)
        shifts = np.zeros((k, d))
        for j, reg in enumerate(self.shift_regressors):
            if reg is not None:
                shifts[:, j] = reg.predict(z)
        obs = np.asarray(contexts.observational)[:, None]
        return np.where(obs, 0.0, probs), np.where(obs, 0.0, shifts)

    def fitted_target_scores(self) -> np.ndarray:
        """`(n_contexts, n_vars)` stage 1's posterior P(I = 1 | cells) of the training
        contexts (`methods.FittedTargetScorer`)."""
        from gim_ppl.model import posterior_mean

        _check_fitted(self.sites, "CausalTwoStage")
        return np.asarray(posterior_mean(self.model, self.sites,
                                         self.model.posterior_targets(self.sites, self.onehot)))

    def target_scores(self, contexts: PerturbationData) -> np.ndarray:
        """`(n_contexts, n_vars)` stage 2's predicted target probabilities
        (`methods.TargetScorer`)."""
        return self.interventions(contexts)[0]

    def edge_scores(self) -> np.ndarray:
        """`(n_vars, n_vars)` stage 1's |W| (`methods.EdgeScorer`)."""
        from gim_ppl.model import posterior_mean

        _check_fitted(self.sites, "CausalTwoStage")
        return np.asarray(posterior_mean(self.model, self.sites,
                                         np.abs(self.model.edge_weights(self.sites))))

    def graph(self) -> np.ndarray:
        """`(n_vars, n_vars)` bool: stage 1's DAG."""
        _check_fitted(self.sites, "CausalTwoStage")
        return np.asarray(self.model.graph(self.sites))

    def predict(self, contexts: PerturbationData, *, key, n_cells: int) -> PerturbationData:
        _check_fitted(self.sites, "CausalTwoStage")
        probs, shifts = self.interventions(contexts)
        params = {s: jnp.asarray(v) for s, v in self.sites.items()}
        params["weights"] = masked_weights(params["weights"])
        k, d = probs.shape
        k_t, k_n = jax.random.split(key)
        dtype = params["bias"].dtype
        targets = jax.random.bernoulli(k_t, jnp.asarray(probs, dtype), (n_cells, k, d))
        targets = targets.transpose(1, 0, 2).reshape(k * n_cells, d).astype(dtype)
        noise = jax.random.normal(k_n, (k * n_cells, d), dtype)
        shift_cells = jnp.repeat(jnp.asarray(shifts, dtype), n_cells, axis=0)
        x = sample_cells(self.model.cell_model, params, noise, targets, shift_cells)
        return cells_for_contexts(contexts, x, n_cells)


# --- the simple baselines ------------------------------------------------------------------
# What the field now holds every perturbation model against (Ahlmann-Eltze et al., Nat.
# Methods 2025; Systema 2025; DESIGN.md §5). Each predicts the mean change of a context from
# the control mean and returns control cells moved by it, so distribution metrics compare
# like with like. All work in log dose: contexts with dose 0 (or observational) get no change.


class MeanChangeData(NamedTuple):
    """The training contexts a simple baseline learns from: perturbational, dose > 0.

    names: `(k,)` perturbation name of each; features `(k, p)`; log_dose `(k,)`;
    change `(k, d)`: context mean minus the control mean.
    """

    names: np.ndarray
    features: np.ndarray
    log_dose: np.ndarray
    change: np.ndarray


def perturbation_labels(data: PerturbationData) -> np.ndarray:
    """`(n_contexts,)` perturbation name of each context ("" for observational ones): names,
    not indices, identify a perturbation across splits and data sets."""
    names = np.asarray((*data.perturbation_names, ""), dtype=object)
    pert = np.asarray(data.perturbation)
    return np.where(np.asarray(data.observational), "", names[np.where(pert >= 0, pert, -1)])


class _MeanChangeMethod:
    """Control cells moved by a predicted mean change; subclasses learn `_fit_changes` from
    `MeanChangeData` and predict `_changes(names, features, log_dose) -> (k, d)`."""

    name = "baseline"

    def fit(self, data: PerturbationData, **_):
        """Learn from the control cells and the perturbational contexts (dose > 0) of
        `data`. Raises ValueError when either is missing."""
        if not isinstance(data, PerturbationData):
            raise TypeError(f"data must be a gim_ppl.PerturbationData, got {type(data).__name__}")
        if data.x is None:
            raise ValueError(f"{self.name}.fit: data has no cells (x is None)")
        self.control = jnp.asarray(data.control_cells())
        self.control_mean = np.asarray(self.control, float).mean(0)
        counts, mean, _ = data.context_moments()
        keep = ~np.asarray(data.observational) & (np.asarray(data.dose) > 0) & (counts > 0)
        if not keep.any():
            raise ValueError(f"{self.name}.fit: data has no perturbational context with cells "
                             "and dose > 0; a baseline learns the change a perturbation makes")
        self.n_features, self.n_vars = data.n_features, data.n_vars
        self.train = MeanChangeData(
            perturbation_labels(data)[keep], np.asarray(data.features, float)[keep],
            np.log(np.asarray(data.dose, float)[keep]), mean[keep] - self.control_mean)
        self._fit_changes(self.train)
        return self

    def _fit_changes(self, train: MeanChangeData) -> None:
        pass

    def mean_change(self, contexts: PerturbationData) -> np.ndarray:
        """`(n_contexts, n_vars)` predicted change of the mean cell from the control mean."""
        _check_fitted(getattr(self, "train", None), self.name)
        if contexts.n_features != self.n_features or contexts.n_vars != self.n_vars:
            raise ValueError(
                f"contexts have {contexts.n_features} features and {contexts.n_vars} "
                f"variables; {self.name} was fitted on {self.n_features} and {self.n_vars}")
        dose = np.asarray(contexts.dose, float)
        active = ~np.asarray(contexts.observational) & (dose > 0)
        change = np.zeros((contexts.n_contexts, self.n_vars))
        if active.any():
            change[active] = self._changes(
                perturbation_labels(contexts)[active],
                np.asarray(contexts.features, float)[active], np.log(dose[active]),
                np.flatnonzero(active))
        return change

    def predict(self, contexts: PerturbationData, *, key, n_cells: int) -> PerturbationData:
        change = jnp.asarray(self.mean_change(contexts), self.control.dtype)
        k = contexts.n_contexts
        idx = jax.random.randint(key, (k, n_cells), 0, self.control.shape[0])
        x = self.control[idx] + change[:, None]
        return cells_for_contexts(contexts, x.reshape(k * n_cells, -1), n_cells)


def _interpolate(log_dose, known_log_dose, known_change) -> np.ndarray:
    """`(d,)` change at `log_dose`, linear in log dose between `known_log_dose (m,)` (sorted
    or not) with `known_change (m, d)`, clamped outside the measured range."""
    order = np.argsort(known_log_dose)
    xs, ys = known_log_dose[order], known_change[order]
    return np.array([np.interp(log_dose, xs, ys[:, j]) for j in range(ys.shape[1])])


class MeanShift(_MeanChangeMethod):
    """The mean change of the training perturbations: over all their contexts, or
    (`dose_matched=True`) per training dose, interpolated in log dose between doses."""

    name = "MeanShift"

    def __init__(self, dose_matched: bool = False):
        self.dose_matched = bool(dose_matched)

    def _fit_changes(self, train):
        self.doses = np.unique(train.log_dose)
        self.per_dose = np.stack([train.change[train.log_dose == u].mean(0)
                                  for u in self.doses])
        self.overall = train.change.mean(0)

    def _changes(self, names, features, log_dose, rows):
        if not self.dose_matched:
            return np.broadcast_to(self.overall, (len(log_dose), self.n_vars))
        return np.stack([_interpolate(c, self.doses, self.per_dose) for c in log_dose])


#: Ridge's penalty grid (on standardised inputs): from nearly least squares to the mean change.
RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-3, 5, 17))


class Ridge(_MeanChangeMethod):
    """Ridge regression of the mean change on (features, log dose, features × log dose),
    inputs standardised on the training contexts, unpenalised intercept; the penalty λ
    (`alphas`) minimises the leave-one-perturbation-out squared error, so it is chosen for
    unseen perturbations. The Ahlmann-Eltze linear baseline with perturbation features in
    place of a gene embedding."""

    name = "Ridge"

    def __init__(self, alphas=RIDGE_ALPHAS):
        self.alphas = np.asarray(alphas, float)
        if self.alphas.ndim != 1 or not self.alphas.size or (self.alphas <= 0).any():
            raise ValueError(f"alphas must be a non-empty sequence of positive floats, got "
                             f"{alphas!r}")

    @staticmethod
    def design(features, log_dose) -> np.ndarray:
        """`(k, 2p + 1)` inputs: features, log dose, features × log dose."""
        return np.concatenate([features, log_dose[:, None], features * log_dose[:, None]], 1)

    @staticmethod
    def _solve(x, y, alpha):
        """(intercept (d,), coefficients (q, d)) of ridge on standardised `x`."""
        xm, ym = x.mean(0), y.mean(0)
        xc = x - xm
        coef = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ (y - ym))
        return ym - xm @ coef, coef

    def _fit_changes(self, train):
        raw = self.design(train.features, train.log_dose)
        self.in_mean, self.in_scale = raw.mean(0), raw.std(0)
        self.in_scale = np.where(self.in_scale > 0, self.in_scale, 1.0)
        x, y = (raw - self.in_mean) / self.in_scale, train.change
        groups = np.unique(train.names)
        self.cv_error = np.full(self.alphas.size, np.nan)
        if groups.size >= 3:
            for i, alpha in enumerate(self.alphas):
                err = 0.0
                for g in groups:
                    out = train.names == g
                    b, w = self._solve(x[~out], y[~out], alpha)
                    err += np.sum((x[out] @ w + b - y[out]) ** 2)
                self.cv_error[i] = err
            self.alpha = float(self.alphas[np.nanargmin(self.cv_error)])
        else:  # too few perturbations to hold one out: the middle of the grid
            self.alpha = float(np.median(self.alphas))
        self.intercept, self.coef = self._solve(x, y, self.alpha)

    def _changes(self, names, features, log_dose, rows):
        x = (self.design(features, log_dose) - self.in_mean) / self.in_scale
        return x @ self.coef + self.intercept


class NearestNeighbour(_MeanChangeMethod):
    """The measured change of the training perturbation nearest in feature space (features
    standardised over the training perturbations), at its dose nearest in log dose. A known
    perturbation's nearest neighbour is itself."""

    name = "NearestNeighbour"

    def _fit_changes(self, train):
        self.scale = train.features.std(0)
        self.scale = np.where(self.scale > 0, self.scale, 1.0)

    def _changes(self, names, features, log_dose, rows):
        train = self.train
        dist2 = (((features[:, None] - train.features[None]) / self.scale) ** 2).sum(-1)
        out = np.empty((len(log_dose), self.n_vars))
        for i in range(len(log_dose)):
            # every training context at the nearest features (a drug's doses share them)
            cand = np.flatnonzero(np.isclose(dist2[i], dist2[i].min(), rtol=1e-9, atol=1e-12))
            out[i] = train.change[cand[np.argmin(np.abs(train.log_dose[cand] - log_dose[i]))]]
        return out


class DoseInterpolation(_MeanChangeMethod):
    """For known perturbations at new doses: the perturbation's own measured mean changes,
    linear in log dose between its measured doses and clamped outside them. Predicting a
    perturbation that was not in training raises ValueError."""

    name = "DoseInterpolation"

    def _changes(self, names, features, log_dose, rows):
        train = self.train
        unknown = [(int(r), str(n)) for r, n in zip(rows, names, strict=True)
                   if n not in set(train.names)]
        if unknown:
            raise ValueError(
                f"contexts: DoseInterpolation predicts perturbations measured in training only; "
                f"rows {[r for r, _ in unknown][:10]} are perturbations "
                f"{sorted({n for _, n in unknown})[:10]} it was not fitted on")
        out = np.empty((len(log_dose), self.n_vars))
        for i, (n, c) in enumerate(zip(names, log_dose, strict=True)):
            mine = train.names == n
            out[i] = _interpolate(c, train.log_dose[mine], train.change[mine])
        return out
