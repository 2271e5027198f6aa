"""Intervals for the mean cell of a context the GIM has not seen: a new perturbation, or a new
dose of a known one, calibrated on held-out training contexts.

A fitted GIM's own spread (`GIM.context_mean_draws`: targets drawn once per context) carries
the uncertainty about a new drug's targets but not the error of its feature map and Hill
curves, so its 90 % intervals cover the true mean far less often than 90 %
(docs/unseen.md). `cross_fit` measures the missing part: it refits the model K times, each
time without a fold of perturbations (scored as new perturbations) and without one dose of
every other perturbation (scored as new doses), and per variable and kind keeps the excess
variance

    τ² = mean(r² − var − s²/n)  (at least 0),

the held-out squared error `r²` of the observed mean less what the refit's own draws
(`var`) and the sampling noise of the observed mean (`s²/n`, its cells' variance over their
count) explain. `mean_intervals` then gives `center ± z · √(var + τ²)` with the full fit's
draws: a Gaussian interval whose variance is calibrated on contexts the refits did not see.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import numpy as np
import optax
from scipy import stats

from gim_ppl.checks import check_integer
from gim_ppl.data import PerturbationData
from gim_ppl.inference.fitting import fit

KINDS = ("new_perturbation", "new_dose")


class HeldOut(NamedTuple):
    """Held-out contexts of one kind, pooled over folds, each `(n_contexts, n_vars)`: the
    refit's mean and variance over its draws, the observed mean `y` and its sampling
    variance `se2`."""

    center: np.ndarray
    var: np.ndarray
    y: np.ndarray
    se2: np.ndarray


class IntervalCalibration(NamedTuple):
    """tau2: kind → `(n_vars,)` excess variance τ² (None where no context of that kind could
    be held out); held_out: kind → `HeldOut`; folds: K."""

    tau2: dict
    held_out: dict
    folds: int


class MeanIntervals(NamedTuple):
    """center, low, high: `(n_contexts, n_vars)`; level: the nominal coverage; kind:
    `(n_contexts,)` the calibration each context used (`"new_perturbation"`, `"new_dose"` or
    `"observational"`)."""

    center: np.ndarray
    low: np.ndarray
    high: np.ndarray
    level: float
    kind: np.ndarray


def sampling_variance(data: PerturbationData) -> tuple[np.ndarray, np.ndarray]:
    """`(mean, se2)`, each `(n_contexts, n_vars)`: every context's observed mean cell and its
    sampling variance, the cells' variance (n − 1 in the denominator) over their count."""
    moments = data.context_moments()
    n = moments.count[:, None]
    return moments.mean, moments.var / np.maximum(n - 1, 1)


def excess_variance(held: HeldOut) -> np.ndarray:
    """`(n_vars,)` τ² = mean(r² − var − se2), at least 0 (see the module docstring)."""
    r2 = (held.y - held.center) ** 2
    return np.maximum((r2 - held.var - held.se2).mean(0), 0.0)


def _folds(data: PerturbationData, folds: int, seed: int):
    """Per fold: `(out_perturbation, out_dose)` bool `(n_contexts,)` masks."""
    obs = np.asarray(data.observational)
    pert = np.asarray(data.perturbation)
    dose = np.asarray(data.dose)
    drugs = np.unique(pert[~obs])
    if drugs.size < folds:
        raise ValueError(f"cross_fit: folds={folds} needs at least {folds} perturbations with "
                         f"cells; data has {drugs.size}")
    parts = np.array_split(np.random.default_rng(seed).permutation(drugs), folds)
    # one dose of every other perturbation per fold, cycling over its doses
    dose_rank = np.zeros(data.n_contexts, dtype=int)
    n_doses = np.ones(data.n_contexts, dtype=int)
    for g in drugs:
        rows = np.flatnonzero((pert == g) & ~obs)
        levels = np.unique(dose[rows])
        dose_rank[rows] = np.searchsorted(levels, dose[rows])
        n_doses[rows] = levels.size
    drug_rank = np.searchsorted(drugs, pert)
    out = []
    for k, part in enumerate(parts):
        out_pert = np.isin(pert, part) & ~obs
        out_dose = (~obs & ~out_pert & (n_doses > 1)
                    & ((drug_rank + k) % n_doses == dose_rank))
        out.append((out_pert, out_dose))
    return out


def cross_fit(make_model: Callable, data: PerturbationData, *, steps: int, key,
              folds: int = 5, optimizer: optax.GradientTransformation | None = None,
              n_draws: int = 200) -> IntervalCalibration:
    """Calibrate `mean_intervals` on `folds` refits of `make_model(data_k)` to `data`.

    Fold k leaves out the contexts of a k-th of the perturbations (drawn by `key`) and one
    dose of every other perturbation with two or more doses; each refit (MAP `fit`,
    `steps` steps) predicts the held-out contexts, new perturbations from their features
    and new doses with what their other doses showed (`observed`), and τ² per kind and
    variable is the excess variance of their errors (`excess_variance`).

    Args:
        make_model: `PerturbationData -> GIM`, called with each fold's training data (a
            model with `pooled=` offsets must be built for the perturbations it is fitted
            to), e.g. `lambda d: GIM(d.n_vars, d.n_features, pooled=d)`.
        data: training data with cells (the data the full model is fitted to).
        steps: optimiser steps per refit (as many as the full fit).
        key: PRNG key (folds and fits).
        folds: K ≥ 2 refits.
        optimizer: passed to `fit` (default: `fit`'s).
        n_draws: target draws per held-out context (`GIM.context_mean_draws`).
    """
    folds = check_integer("folds", folds, minimum=2)
    n_draws = check_integer("n_draws", n_draws)
    if data.x is None:
        raise ValueError("cross_fit: data has no cells")
    k_split, k_fit = jax.random.split(key)
    seed = int(jax.random.randint(k_split, (), 0, 2**31 - 1))
    parts = {kind: [] for kind in KINDS}
    for k, (out_pert, out_dose) in enumerate(_folds(data, folds, seed)):
        train = data.subset(~out_pert & ~out_dose)
        model = make_model(train)
        sites = fit(model, train, steps=steps, key=jax.random.fold_in(k_fit, k),
                    optimizer=optimizer, progress=False).sites
        for kind, mask, observed in (("new_perturbation", out_pert, None),
                                     ("new_dose", out_dose, train)):
            if not mask.any():
                continue
            held = data.subset(mask)
            draws = model.context_mean_draws(sites, held, key=jax.random.fold_in(k_fit, 1000 + k),
                                             n_draws=n_draws, observed=observed)
            y, se2 = sampling_variance(held)
            parts[kind].append(HeldOut(draws.mean(0), draws.var(0), y, se2))
    held_out = {kind: HeldOut(*(np.concatenate(f) for f in zip(*p, strict=True)))
                for kind, p in parts.items() if p}
    tau2 = {kind: excess_variance(held_out[kind]) if kind in held_out else None
            for kind in KINDS}
    return IntervalCalibration(tau2, held_out, folds)


def mean_intervals(model, sites, contexts: PerturbationData, calibration: IntervalCalibration,
                   *, key, observed: PerturbationData | None = None, level: float = 0.9,
                   n_draws: int = 400) -> MeanIntervals:
    """`level` intervals of the mean cell of each context of `contexts`:
    `center ± z · √(var + τ²)`, center and var over `model.context_mean_draws(sites, …)`,
    τ² from `calibration` by kind: a context whose perturbation has cells in `observed` (the
    training data) is a new dose, any other perturbation a new perturbation; observational
    contexts get no τ² (their error is the fitted SCM's alone)."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    draws = model.context_mean_draws(sites, contexts, key=key, n_draws=n_draws,
                                     observed=observed)
    center, var = draws.mean(0), draws.var(0)
    known = np.zeros(contexts.n_contexts, dtype=bool)
    if observed is not None:
        seen = {observed.perturbation_names[p]
                for p in np.unique(np.asarray(observed.perturbation)[
                    ~np.asarray(observed.observational)])}
        known = np.array([p >= 0 and contexts.perturbation_names[p] in seen
                          for p in np.asarray(contexts.perturbation)])
    obs = np.asarray(contexts.observational)
    kind = np.where(obs, "observational", np.where(known, "new_dose", "new_perturbation"))
    tau2 = np.zeros_like(var)
    for name in KINDS:
        rows = kind == name
        if not rows.any():
            continue
        if calibration.tau2[name] is None:
            raise ValueError(f"mean_intervals: contexts {np.flatnonzero(rows)[:5].tolist()} "
                             f"are a {name.replace('_', ' ')}, but the calibration held out "
                             "no context of that kind (a new dose needs perturbations with "
                             "two or more doses)")
        tau2[rows] = calibration.tau2[name]
    half = stats.norm.ppf(0.5 + level / 2) * np.sqrt(var + tau2)
    return MeanIntervals(center, center - half, center + half, float(level), kind)


__all__ = ["KINDS", "HeldOut", "IntervalCalibration", "MeanIntervals", "cross_fit",
           "excess_variance", "mean_intervals", "sampling_variance"]
