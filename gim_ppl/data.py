"""`PerturbationData`: cells, the context each belongs to, and what each context applies.

A *context* is one population: one perturbation at one dose, or an unperturbed control.
Per-context arrays index contexts on axis 0; the variable axis is last.

The container is an immutable JAX pytree. Arrays are children (so it passes through `jit`,
`SVI.run` and `Predictive`); names are static auxiliary data. Validation happens in
`PerturbationData.from_arrays`, at the API boundary, on concrete arrays; pytree unflattening
(inside JAX transformations) bypasses it by design. AnnData files are read by
`gim_ppl.datasets.from_anndata`, which builds the container with `from_arrays`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from collections import Counter
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gim_ppl.core.likelihood import CellMoments, cell_moments
from gim_ppl.errors import ArgumentError, ArgumentTypeError

_MAX_SHOWN = 10


def _rows(idx: np.ndarray) -> str:
    idx = np.asarray(idx).ravel()
    shown = ", ".join(str(int(i)) for i in idx[:_MAX_SHOWN])
    more = f", … ({idx.size} in all)" if idx.size > _MAX_SHOWN else ""
    return f"[{shown}{more}]"


def _float_array(name: str, value: Any, ndim: int) -> np.ndarray:
    try:
        arr = np.array(value, dtype=float, copy=True)
    except (TypeError, ValueError) as err:
        raise ArgumentTypeError(f"{name} must be a numeric array, got {type(value).__name__}",
                                argument=name) from err
    if arr.ndim != ndim:
        raise ArgumentError(f"{name} must have {ndim} dimension(s), got shape {arr.shape}",
                            argument=name)
    return arr


def _check_storable(name: str, arr: np.ndarray, where: str) -> None:
    """Finite values that overflow the dtype the container stores (float32 unless x64 is
    enabled) would turn into inf there: reject them, naming the rows (axis 0)."""
    dtype = np.dtype(jnp.result_type(float))
    with np.errstate(over="ignore"):
        lost = np.isfinite(arr) & ~np.isfinite(arr.astype(dtype))
    # rows × the rest, spelled out: reshape(n, -1) cannot infer -1 when n = 0
    bad = (np.flatnonzero(lost.reshape(arr.shape[0], math.prod(arr.shape[1:])).any(axis=1))
           if arr.ndim else [])
    if len(bad):
        raise ArgumentError(f"{name} has values beyond the {dtype} range (|value| > "
                            f"{np.finfo(dtype).max:.3g}) at {where} {_rows(bad)}; rescale them "
                            "or enable float64 (jax.enable_x64)", argument=name, rows=bad)


#: A feature column whose mean or sd over the perturbations exceeds this is "far from unit
#: scale": the priors of the intervention map assume standardised features.
FEATURE_SCALE_LIMIT = 5.0


def _warn_feature_scale(features, observational, feature_names) -> None:
    """Warn, naming the columns, when features of the perturbational contexts are far from
    unit scale (raw descriptors such as a molecular weight of ~190): the map's unit-scale
    priors then give flat Hill curves or, with plain SVI, overflowing steps."""
    rows = np.asarray(features, float)[~np.asarray(observational, bool)]
    if rows.shape[0] == 0:
        return
    rows = np.where(np.isfinite(rows), rows, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: no verdict
        mean, sd = np.nanmean(rows, 0), np.nanstd(rows, 0)
    far = [str(n) for n, m, s in zip(feature_names, mean, sd, strict=True)
           if abs(m) > FEATURE_SCALE_LIMIT or s > FEATURE_SCALE_LIMIT]
    if far:
        shown = ", ".join(far[:5]) + (f" and {len(far) - 5} more" if len(far) > 5 else "")
        warnings.warn(f"features: columns {shown} are far from unit scale (mean or sd over "
                      f"the perturbations above {FEATURE_SCALE_LIMIT:g}); standardise them "
                      "(z-score over perturbations) — the intervention map's priors assume "
                      "unit-scale features", UserWarning, stacklevel=3)


def _names(name: str, value: Sequence[str] | None, length: int, default_prefix: str) -> tuple:
    if value is None:
        width = len(str(max(length - 1, 0)))
        return tuple(f"{default_prefix}{i:0{width}d}" for i in range(length))
    names = tuple(str(v) for v in value)
    if len(names) != length:
        raise ArgumentError(f"{name} has {len(names)} entries, expected {length}", argument=name)
    dups = sorted(n for n, c in Counter(names).items() if c > 1)
    if dups:
        raise ArgumentError(f"{name} contains duplicate names: {dups[:_MAX_SHOWN]}", argument=name)
    return names


class ContextMoments(NamedTuple):
    """Per-context moments of the cells: `count (n_contexts,)`, `mean` and `var`
    `(n_contexts, n_vars)` (population variance), in float64."""

    count: np.ndarray
    mean: np.ndarray
    var: np.ndarray


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["x", "context", "features", "dose", "observational", "perturbation",
                 "moments"],
    meta_fields=["var_names", "context_names", "feature_names", "perturbation_names",
                 "dose_scale"],
)
@dataclasses.dataclass(frozen=True)
class PerturbationData:
    """Cells under perturbations, grouped into contexts.

    Attributes:
        x: `(n_cells, n_vars)` measurements, or `None` for a contexts-only object
            (what to predict).
        context: `(n_cells,)` int context index of each cell, or `None` with `x=None`.
        features: `(n_contexts, n_features)` perturbation descriptors (zeros where observational).
        dose: `(n_contexts,)` non-negative doses.
        observational: `(n_contexts,)` bool, true for unperturbed (control) contexts.
        perturbation: `(n_contexts,)` int index into `perturbation_names`, -1 for controls.
        var_names, context_names, feature_names, perturbation_names: tuples of str.
        dose_scale: how `dose` relates to the doses of the user's file, or `None` when `dose`
            is all there is. Any object with `unit`, `to_model(dose)` and `to_user(dose)`
            (`gim_ppl.datasets.DoseScale`, set by `from_anndata`); the splits, tables and
            figures read doses in `dose_scale.unit` through it.
        moments: `CellMoments` of each context's cells (count, mean, scatter) or `None`;
            a linear GIM's likelihood reads them instead of the cells (see `with_moments`).

    A frozen dataclass pytree: arrays are children (it passes through `jit`, `SVI.run` and
    `Predictive`), names and the dose scale are static. Build it with `from_arrays`
    (validated); derive variants with `replace(x=..., context=...)`, `subset(...)`,
    `contexts_only()` or `for_prediction(n_cells)`.
    """

    x: Any
    context: Any
    features: Any
    dose: Any
    observational: Any
    perturbation: Any
    var_names: tuple
    context_names: tuple
    feature_names: tuple
    perturbation_names: tuple
    dose_scale: Any = None
    moments: Any = None

    def replace(self, **changes) -> PerturbationData:
        """A copy with some fields changed (unvalidated: the caller keeps shapes consistent,
        as `jax.tree_util` does; use `from_arrays` for user input). New cells (`x` or
        `context`) drop the moments unless `moments=` is given too: stale moments would
        silently fit the old cells."""
        if ("x" in changes or "context" in changes) and "moments" not in changes:
            changes["moments"] = None
        return dataclasses.replace(self, **changes)

    # -- moments -----------------------------------------------------------------------
    def moments_pay_off(self) -> bool:
        """Whether per-context moments make a linear model's step cheaper than the cells:
        `n_contexts · n_vars ≤ n_cells` (a step from moments costs at most
        O(n_contexts · n_vars³), from cells O(n_cells · n_vars²); the moments then also
        take no more memory than the cells)."""
        return self.has_cells and self.n_contexts * self.n_vars <= self.n_cells

    def with_moments(self, only_if_cheaper: bool = False) -> PerturbationData:
        """A copy carrying each context's cell count, mean and scatter (`CellMoments`,
        accumulated in float64, stored in the cells' dtype), from which a linear GIM
        computes its likelihood without a pass over the cells. `from_arrays`, the data
        loaders and `fit` attach them by themselves when they pay off.

        Args:
            only_if_cheaper: return `self` unchanged unless `moments_pay_off()`, and warn
                instead of raising on overflow (the cells still work).

        Raises:
            ValueError: no cells, or moments that overflow the cells' dtype.
        """
        if only_if_cheaper and (self.moments is not None or not self.moments_pay_off()):
            return self
        if self.x is None:
            raise ValueError("with_moments: data has no cells (x is None)")
        moments = cell_moments(self.x, self.context, self.n_contexts)
        dtype = np.dtype(jnp.asarray(self.x).dtype)
        with np.errstate(over="ignore"):
            stored = [np.asarray(m, dtype=dtype) for m in moments]
        bad = np.flatnonzero(~np.all(np.isfinite(stored[2].reshape(self.n_contexts, -1)), 1))
        if bad.size:
            message = (f"with_moments: the cells' scatter overflows {dtype} in contexts "
                       f"{_rows(bad)}; normalise the cells (e.g. log1p of counts) or enable "
                       "float64 (jax.enable_x64)")
            if not only_if_cheaper:
                raise ValueError(message)
            warnings.warn(message + "; using the cells instead", RuntimeWarning, stacklevel=2)
            return self
        return dataclasses.replace(self, moments=CellMoments(*(jnp.asarray(m) for m in stored)))

    # -- sizes -----------------------------------------------------------------------
    @property
    def n_vars(self) -> int:
        return len(self.var_names)

    @property
    def n_contexts(self) -> int:
        return len(self.context_names)

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    @property
    def n_cells(self) -> int:
        return 0 if self.context is None else int(self.context.shape[0])

    @property
    def has_cells(self) -> bool:
        return self.x is not None

    def cells_per_context(self) -> np.ndarray:
        """`(n_contexts,)` number of cells in each context."""
        if self.context is None:
            return np.zeros(self.n_contexts, dtype=int)
        return np.bincount(np.asarray(self.context), minlength=self.n_contexts)

    def __repr__(self) -> str:
        n_obs = int(np.sum(np.asarray(self.observational)))
        return (
            f"PerturbationData(n_cells={self.n_cells}, n_vars={self.n_vars}, "
            f"n_contexts={self.n_contexts} ({n_obs} observational), "
            f"n_features={self.n_features}, n_perturbations={len(self.perturbation_names)})"
        )

    # -- vocabulary ------------------------------------------------------------------
    def context_moments(self) -> ContextMoments:
        """Count, mean and variance of the cells of every context (float64).

        Raises:
            ValueError: no cells, or a context without cells.
        """
        if self.x is None:
            raise ValueError("data has no cells (x is None)")
        x, ctx = np.asarray(self.x, dtype=np.float64), np.asarray(self.context)
        counts = np.bincount(ctx, minlength=self.n_contexts).astype(float)
        empty = np.flatnonzero(counts == 0)
        if empty.size:
            raise ValueError(f"contexts without cells: {_rows(empty)}")
        sums = np.zeros((self.n_contexts, x.shape[1]))
        squares = np.zeros_like(sums)
        np.add.at(sums, ctx, x)
        np.add.at(squares, ctx, x**2)
        mean = sums / counts[:, None]
        return ContextMoments(counts, mean, np.maximum(squares / counts[:, None] - mean**2, 0.0))

    def context_means(self) -> np.ndarray:
        """`(n_contexts, n_vars)` mean cell of every context (float64)."""
        return self.context_moments().mean

    def control_cells(self) -> np.ndarray:
        """`(n_control_cells, n_vars)` cells of the observational contexts.

        Raises:
            ValueError: no cells, or no observational context with cells.
        """
        obs = np.asarray(self.observational)
        if self.x is None or not obs.any():
            raise ValueError("data needs cells of at least one observational context")
        return np.asarray(self.x)[obs[np.asarray(self.context)]]

    def perturbation_contexts(self) -> tuple[np.ndarray, np.ndarray]:
        """`(ids, first)`: the perturbation indices present (sorted) and the first context
        of each, both `(n_present,)` int. A perturbation's features do not depend on the
        dose, so `subset(first)` is one context per perturbation."""
        pert = np.asarray(self.perturbation)
        ids, first = np.unique(pert, return_index=True)
        keep = ids >= 0
        return ids[keep].astype(int), first[keep].astype(int)

    def contexts_only(self) -> PerturbationData:
        """The same contexts without cells (what `GIM.predict` and the read-offs need; to
        sample cells with `numpyro.infer.Predictive`, use `for_prediction`)."""
        return self.replace(x=None, context=None)

    def for_prediction(self, n_cells: int) -> PerturbationData:
        """These contexts, `n_cells` cells each, no `x`: the input of a generative pass.

        The model samples targets, Hill shifts and cells for it, so
        `numpyro.infer.Predictive(model, posterior_samples=draws)(key, data.for_prediction(100))`
        returns `"x"` of shape `(n_draws, n_contexts · n_cells, n_vars)`, cells in context
        order (`context` of the result says which). Data with cells gives the likelihood of
        those cells instead, and no `"x"`.

        Raises:
            ValueError: `n_cells` is not a positive integer.
        """
        if isinstance(n_cells, bool) or not isinstance(n_cells, (int, np.integer)) \
                or n_cells < 1:
            raise ArgumentError(f"n_cells must be a positive integer, got {n_cells!r}",
                                argument="n_cells")
        context = np.repeat(np.arange(self.n_contexts, dtype=np.int32), int(n_cells))
        return self.replace(x=None, context=jnp.asarray(context))

    # -- construction ----------------------------------------------------------------
    @classmethod
    def from_arrays(
        cls,
        x=None,
        context=None,
        *,
        features,
        dose,
        observational,
        perturbation=None,
        var_names: Sequence[str] | None = None,
        context_names: Sequence[str] | None = None,
        feature_names: Sequence[str] | None = None,
        perturbation_names: Sequence[str] | None = None,
        n_vars: int | None = None,
        require_cells: bool = True,
        dose_scale: Any = None,
    ) -> PerturbationData:
        """Validate arrays and build a `PerturbationData` (inputs are copied, never modified).

        Args:
            x: `(n_cells, n_vars)` measurements, or `None` for contexts only.
            context: `(n_cells,)` ints in `[0, n_contexts)`; required with `x`.
            features: `(n_contexts, n_features)`; rows of observational contexts may be NaN
                (they are ignored and stored as zeros).
            dose: `(n_contexts,)` non-negative.
            observational: `(n_contexts,)` bool.
            perturbation: `(n_contexts,)` int perturbation index (-1 for controls), so that
                contexts of one drug at several doses can be grouped. Default: contexts with
                identical feature rows share a perturbation.
            n_vars: needed only when `x` is `None` and `var_names` is not given.
            require_cells: with `x`, reject contexts that have no cells.
            dose_scale: the map between `dose` and the user's dose unit (see the class
                docstring); stored, not applied: `dose` is already in model units.
        """
        features, dose, obs = _check_contexts(features, dose, observational)
        if dose_scale is not None and not all(
                hasattr(dose_scale, a) for a in ("unit", "to_model", "to_user")):
            raise ArgumentTypeError("dose_scale must have unit, to_model and to_user (e.g. "
                                    f"gim_ppl.datasets.DoseScale), got {type(dose_scale).__name__}",
                                    argument="dose_scale")
        if x is None:
            if context is not None:
                raise ArgumentError("context was given without x; pass both or neither",
                                    argument="context")
            if var_names is None and n_vars is None:
                raise ArgumentError("without x, give var_names or n_vars", argument="var_names")
            d = len(var_names) if var_names is not None else int(n_vars)
            x_arr = ctx = None
        else:
            x_arr, ctx = _check_cells(x, context, obs, require_cells)
            d = x_arr.shape[1]
        pert, n_pert = _check_perturbations(perturbation, obs, features, perturbation_names)

        var_names = _names("var_names", var_names, d, "x")
        if x_arr is not None and len(var_names) != x_arr.shape[1]:
            raise ArgumentError(f"var_names has {len(var_names)} entries, x has {d} columns",
                                argument="var_names")
        context_names = _names("context_names", context_names, dose.shape[0], "context_")
        feature_names = _names("feature_names", feature_names, features.shape[1], "feature_")
        perturbation_names = _names("perturbation_names", perturbation_names, n_pert, "pert_")
        _warn_feature_scale(features, obs, feature_names)

        dtype = jnp.result_type(float)
        return cls(
            x=None if x_arr is None else jnp.asarray(x_arr, dtype=dtype),
            context=None if ctx is None else jnp.asarray(ctx),
            features=jnp.asarray(features, dtype=dtype),
            dose=jnp.asarray(dose, dtype=dtype),
            observational=jnp.asarray(obs),
            perturbation=jnp.asarray(pert),
            var_names=var_names,
            context_names=context_names,
            feature_names=feature_names,
            perturbation_names=perturbation_names,
            dose_scale=dose_scale,
        ).with_moments(only_if_cheaper=True)

    # -- views -----------------------------------------------------------------------
    def subset(self, contexts) -> PerturbationData:
        """Keep the given contexts (int indices, names or a bool mask) and their cells.

        Contexts are renumbered in the given order; perturbation indices and names are kept.
        """
        idx = self._context_indices(contexts)
        remap = np.full(self.n_contexts, -1, dtype=np.int64)
        remap[idx] = np.arange(idx.size)
        x = ctx = None
        if self.context is not None:
            old = np.asarray(self.context)
            keep = remap[old] >= 0
            ctx = jnp.asarray(remap[old][keep].astype(np.int32))
            x = None if self.x is None else jnp.asarray(np.asarray(self.x)[keep])
        take = jnp.asarray(idx)
        # a context keeps all its cells, so its moments are rows of the old ones
        moments = None if self.moments is None or x is None else \
            CellMoments(*(m[take] for m in self.moments))
        return self.replace(
            x=x, context=ctx, features=self.features[take], dose=self.dose[take],
            observational=self.observational[take], perturbation=self.perturbation[take],
            context_names=tuple(self.context_names[i] for i in idx), moments=moments,
        )

    def take_cells(self, part: int, n_parts: int) -> PerturbationData:
        """Every `n_parts`-th cell from cell `part` on, all contexts kept: one process's
        shard in a multi-process fit (`inference.distributed`). Any `n_parts` works; the
        parts' sizes differ by at most one cell.

        Raises:
            ValueError: no cells, or `part` not in `[0, n_parts)`, or more parts than cells.
        """
        if self.x is None:
            raise ValueError("take_cells: data has no cells (x is None)")
        if isinstance(n_parts, bool) or not isinstance(n_parts, (int, np.integer)) \
                or not 1 <= n_parts <= self.n_cells:
            raise ArgumentError(f"n_parts must be an integer in [1, {self.n_cells}] (the cells), "
                                f"got {n_parts!r}", argument="n_parts")
        if isinstance(part, bool) or not isinstance(part, (int, np.integer)) \
                or not 0 <= part < n_parts:
            raise ArgumentError(f"part must be an integer in [0, {n_parts}), got {part!r}",
                                argument="part")
        keep = np.arange(int(part), self.n_cells, int(n_parts))
        return self.replace(x=jnp.asarray(np.asarray(self.x)[keep]),
                            context=jnp.asarray(np.asarray(self.context)[keep]))

    def split_by(self, labels) -> dict:
        """Split contexts by a `(n_contexts,)` label array: `{label: subset}`."""
        labels = np.asarray(labels)
        if labels.shape != (self.n_contexts,):
            raise ArgumentError(
                f"labels must have shape ({self.n_contexts},) (one per context), got "
                f"{labels.shape}",
                argument="labels"
            )
        return {lab.item(): self.subset(labels == lab) for lab in np.unique(labels)}

    def _context_indices(self, contexts) -> np.ndarray:
        arr = np.asarray(contexts)
        if arr.dtype == bool:
            if arr.shape != (self.n_contexts,):
                raise ArgumentError(
                    f"a boolean context mask must have shape ({self.n_contexts},), got {arr.shape}",
                    argument="contexts"
                )
            return np.flatnonzero(arr)
        if arr.dtype.kind in "US":
            lookup = {n: i for i, n in enumerate(self.context_names)}
            missing = [str(n) for n in arr.ravel() if str(n) not in lookup]
            if missing:
                raise ArgumentError(f"unknown context names: {missing[:_MAX_SHOWN]}",
                                    argument="contexts")
            return np.array([lookup[str(n)] for n in arr.ravel()], dtype=np.int64)
        if arr.size == 0:  # [] reads as float64; an empty selection is no context
            return np.zeros(0, dtype=np.int64)
        if not np.issubdtype(arr.dtype, np.integer):
            raise ArgumentTypeError(f"contexts must be ints, names or a bool mask, got {arr.dtype}",
                                    argument="contexts")
        arr = arr.ravel().astype(np.int64)
        bad = arr[(arr < 0) | (arr >= self.n_contexts)]
        if bad.size:
            raise ArgumentError(f"context indices out of range [0, {self.n_contexts}): "
                                f"{_rows(bad)}", argument="contexts")
        return arr


# --- validation of `from_arrays`, one field group each -----------------------------------


def _check_contexts(features, dose, observational) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-context arrays: `(features, dose, observational)` validated and copied;
    observational feature rows set to 0."""
    features = _float_array("features", features, 2)
    dose = _float_array("dose", dose, 1)
    obs = np.array(observational, copy=True)
    if obs.dtype != bool:
        if not np.issubdtype(obs.dtype, np.integer) or not np.isin(obs, (0, 1)).all():
            raise ArgumentTypeError(f"observational must be a boolean array, got dtype {obs.dtype}",
                                    argument="observational")
        obs = obs.astype(bool)
    if obs.ndim != 1:
        raise ArgumentError(f"observational must have 1 dimension, got shape {obs.shape}",
                            argument="observational")
    n_contexts = dose.shape[0]
    if obs.shape[0] != n_contexts:
        raise ArgumentError(
            f"observational has {obs.shape[0]} entries but dose has {n_contexts} (one per "
            "context)",
            argument="observational"
        )
    if features.shape[0] != n_contexts:
        raise ArgumentError(
            f"features has {features.shape[0]} rows but there are {n_contexts} contexts "
            "(dose has one entry per context); feature rows must match contexts",
            argument="features"
        )
    bad = np.flatnonzero(~np.isfinite(dose))
    if bad.size:
        raise ArgumentError(f"dose has non-finite values at contexts {_rows(bad)}",
                            argument="dose", rows=bad)
    bad = np.flatnonzero(dose < 0)
    if bad.size:
        raise ArgumentError(f"dose must be >= 0; negative at contexts {_rows(bad)}",
                            argument="dose", rows=bad)
    bad = np.flatnonzero(~obs & ~np.isfinite(features).all(axis=1))
    if bad.size:
        raise ArgumentError(
            f"features has missing or non-finite values at perturbational contexts "
            f"{_rows(bad)}",
            argument="features", rows=bad
        )
    features[obs] = 0.0  # ignored by the model; zeros keep every array finite
    _check_storable("dose", dose, "contexts")
    _check_storable("features", features, "contexts")
    return features, dose, obs


def _check_cells(x, context, obs: np.ndarray,
                 require_cells: bool) -> tuple[np.ndarray, np.ndarray]:
    """Cells: `(x (n_cells, n_vars) float, context (n_cells,) int32)` validated and copied."""
    n_contexts = obs.shape[0]
    x_arr = _float_array("x", x, 2)
    if context is None:
        raise ArgumentError("x was given without context: pass the context index of each cell",
                            argument="context")
    if require_cells and x_arr.shape[0] == 0:
        raise ArgumentError(f"x has no cells (shape {x_arr.shape}); every context needs cells "
                            "(or pass require_cells=False)", argument="x")
    ctx = np.array(context, copy=True)
    if ctx.ndim != 1 or ctx.shape[0] != x_arr.shape[0]:
        raise ArgumentError(
            f"context must have shape ({x_arr.shape[0]},) (one entry per row of x), "
            f"got {ctx.shape}",
            argument="context"
        )
    if not np.issubdtype(ctx.dtype, np.integer):
        if np.issubdtype(ctx.dtype, np.floating) and np.all(
            np.isfinite(ctx) & (ctx == np.round(ctx))
        ):
            ctx = ctx.astype(np.int64)
        else:
            raise ArgumentTypeError(f"context must hold integers, got dtype {ctx.dtype}",
                                    argument="context")
    bad = np.flatnonzero((ctx < 0) | (ctx >= n_contexts))
    if bad.size:
        raise ArgumentError(
            f"context indices must be in [0, {n_contexts}); out of range at cells "
            f"{_rows(bad)} (values {_rows(ctx[bad])})",
            argument="context", rows=bad
        )
    bad = np.flatnonzero(~np.isfinite(x_arr).all(axis=1))
    if bad.size:
        raise ArgumentError(f"x has non-finite values (NaN or inf) at cells {_rows(bad)}",
                            argument="x", rows=bad)
    _check_storable("x", x_arr, "cells")
    if require_cells:
        empty = np.flatnonzero(np.bincount(ctx, minlength=n_contexts) == 0)
        if empty.size:
            kind = "perturbational" if not obs[empty].all() else "observational"
            raise ArgumentError(
                f"contexts {_rows(empty)} have no cells ({kind}); every context needs "
                "cells (drop it with subset() or pass require_cells=False)",
                argument="context", rows=empty
            )
    return x_arr, ctx.astype(np.int32)


def _check_perturbations(perturbation, obs: np.ndarray, features: np.ndarray,
                         perturbation_names) -> tuple[np.ndarray, int]:
    """`(perturbation (n_contexts,) int32, n_perturbations)`: validated, or inferred from
    identical feature rows when `perturbation` is None; -1 for observational contexts."""
    n_contexts = obs.shape[0]
    if perturbation is None:
        # Contexts with identical feature rows apply the same perturbation.
        pert = np.full(n_contexts, -1, dtype=np.int32)
        rows: dict[bytes, int] = {}
        for k in np.flatnonzero(~obs):
            pert[k] = rows.setdefault(features[k].tobytes(), len(rows))
        return pert, len(rows)
    pert = np.array(perturbation, copy=True)
    if pert.shape != (n_contexts,) or not np.issubdtype(pert.dtype, np.integer):
        raise ArgumentError(
            f"perturbation must be an int array of shape ({n_contexts},), got "
            f"{pert.dtype} {pert.shape}",
            argument="perturbation"
        )
    bad = np.flatnonzero(~obs & (pert < 0))
    if bad.size:
        raise ArgumentError(
            f"perturbation must be >= 0 for perturbational contexts; negative at "
            f"{_rows(bad)}",
            argument="perturbation", rows=bad
        )
    pert = np.where(obs, -1, pert).astype(np.int32)
    n_pert = int(pert.max()) + 1 if (pert >= 0).any() else 0
    if perturbation_names is not None:
        n_pert = max(n_pert, len(perturbation_names))
    return pert, n_pert
