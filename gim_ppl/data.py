"""`PerturbationData`: cells, the context each belongs to, and what each context applies.

A *context* is one population: one perturbation at one dose, or an unperturbed control.
Per-context arrays index contexts on axis 0; the variable axis is last.

The container is an immutable JAX pytree. Arrays are children (so it passes through `jit`,
`SVI.run` and `Predictive`); names are static auxiliary data. Validation happens in
`PerturbationData.from_arrays`, at the API boundary, on concrete arrays; pytree unflattening
(inside JAX transformations) bypasses it by design.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections import Counter
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

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
        raise TypeError(f"{name} must be a numeric array, got {type(value).__name__}") from err
    if arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {arr.shape}")
    return arr


def _names(name: str, value: Sequence[str] | None, length: int, default_prefix: str) -> tuple:
    if value is None:
        width = len(str(max(length - 1, 0)))
        return tuple(f"{default_prefix}{i:0{width}d}" for i in range(length))
    names = tuple(str(v) for v in value)
    if len(names) != length:
        raise ValueError(f"{name} has {len(names)} entries, expected {length}")
    dups = sorted(n for n, c in Counter(names).items() if c > 1)
    if dups:
        raise ValueError(f"{name} contains duplicate names: {dups[:_MAX_SHOWN]}")
    return names


class ContextMoments(NamedTuple):
    """Per-context moments of the cells: `count (n_contexts,)`, `mean` and `var`
    `(n_contexts, n_vars)` (population variance), in float64."""

    count: np.ndarray
    mean: np.ndarray
    var: np.ndarray


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["x", "context", "features", "dose", "observational", "perturbation"],
    meta_fields=["var_names", "context_names", "feature_names", "perturbation_names"],
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

    A frozen dataclass pytree: arrays are children (it passes through `jit`, `SVI.run` and
    `Predictive`), names are static. Build it with `from_arrays` (validated); derive variants
    with `replace(x=..., context=...)`, `subset(...)` or `contexts_only()`.
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

    def replace(self, **changes) -> PerturbationData:
        """A copy with some fields changed (unvalidated: the caller keeps shapes consistent,
        as `jax.tree_util` does; use `from_arrays` for user input)."""
        return dataclasses.replace(self, **changes)

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
        """The same contexts without cells (what `GIM.predict` needs)."""
        return self.replace(x=None, context=None)

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
        """
        features = _float_array("features", features, 2)
        dose = _float_array("dose", dose, 1)
        obs = np.array(observational, copy=True)
        if obs.dtype != bool:
            if not np.issubdtype(obs.dtype, np.integer) or not np.isin(obs, (0, 1)).all():
                raise TypeError(f"observational must be a boolean array, got dtype {obs.dtype}")
            obs = obs.astype(bool)
        if obs.ndim != 1:
            raise ValueError(f"observational must have 1 dimension, got shape {obs.shape}")
        n_contexts = dose.shape[0]
        if obs.shape[0] != n_contexts:
            raise ValueError(
                f"observational has {obs.shape[0]} entries but dose has {n_contexts} (one per "
                "context)"
            )
        if features.shape[0] != n_contexts:
            raise ValueError(
                f"features has {features.shape[0]} rows but there are {n_contexts} contexts "
                "(dose has one entry per context); feature rows must match contexts"
            )
        bad = np.flatnonzero(~np.isfinite(dose))
        if bad.size:
            raise ValueError(f"dose has non-finite values at contexts {_rows(bad)}")
        bad = np.flatnonzero(dose < 0)
        if bad.size:
            raise ValueError(f"dose must be >= 0; negative at contexts {_rows(bad)}")
        bad = np.flatnonzero(~obs & ~np.isfinite(features).all(axis=1))
        if bad.size:
            raise ValueError(
                f"features has missing or non-finite values at perturbational contexts "
                f"{_rows(bad)}"
            )
        features[obs] = 0.0  # ignored by the model; zeros keep every array finite

        if x is None:
            if context is not None:
                raise ValueError("context was given without x; pass both or neither")
            if var_names is None and n_vars is None:
                raise ValueError("without x, give var_names or n_vars")
            d = len(var_names) if var_names is not None else int(n_vars)
            x_arr = ctx = None
        else:
            x_arr = _float_array("x", x, 2)
            d = x_arr.shape[1]
            if context is None:
                raise ValueError("x was given without context: pass the context index of each cell")
            ctx_raw = np.array(context, copy=True)
            if ctx_raw.ndim != 1 or ctx_raw.shape[0] != x_arr.shape[0]:
                raise ValueError(
                    f"context must have shape ({x_arr.shape[0]},) (one entry per row of x), "
                    f"got {ctx_raw.shape}"
                )
            if not np.issubdtype(ctx_raw.dtype, np.integer):
                if np.issubdtype(ctx_raw.dtype, np.floating) and np.all(
                    np.isfinite(ctx_raw) & (ctx_raw == np.round(ctx_raw))
                ):
                    ctx_raw = ctx_raw.astype(np.int64)
                else:
                    raise TypeError(f"context must hold integers, got dtype {ctx_raw.dtype}")
            bad = np.flatnonzero((ctx_raw < 0) | (ctx_raw >= n_contexts))
            if bad.size:
                raise ValueError(
                    f"context indices must be in [0, {n_contexts}); out of range at cells "
                    f"{_rows(bad)} (values {_rows(ctx_raw[bad])})"
                )
            bad = np.flatnonzero(~np.isfinite(x_arr).all(axis=1))
            if bad.size:
                raise ValueError(f"x has non-finite values (NaN or inf) at cells {_rows(bad)}")
            if require_cells:
                empty = np.flatnonzero(np.bincount(ctx_raw, minlength=n_contexts) == 0)
                if empty.size:
                    kind = "perturbational" if not obs[empty].all() else "observational"
                    raise ValueError(
                        f"contexts {_rows(empty)} have no cells ({kind}); every context needs "
                        "cells (drop it with subset() or pass require_cells=False)"
                    )
            ctx = ctx_raw.astype(np.int32)

        if perturbation is None:
            # Contexts with identical feature rows apply the same perturbation.
            pert = np.full(n_contexts, -1, dtype=np.int32)
            rows = {}
            for k in np.flatnonzero(~obs):
                pert[k] = rows.setdefault(features[k].tobytes(), len(rows))
            n_pert = len(rows)
        else:
            pert = np.array(perturbation, copy=True)
            if pert.shape != (n_contexts,) or not np.issubdtype(pert.dtype, np.integer):
                raise ValueError(
                    f"perturbation must be an int array of shape ({n_contexts},), got "
                    f"{pert.dtype} {pert.shape}"
                )
            bad = np.flatnonzero(~obs & (pert < 0))
            if bad.size:
                raise ValueError(
                    f"perturbation must be >= 0 for perturbational contexts; negative at "
                    f"{_rows(bad)}"
                )
            pert = np.where(obs, -1, pert).astype(np.int32)
            n_pert = int(pert.max()) + 1 if (pert >= 0).any() else 0
            if perturbation_names is not None:
                n_pert = max(n_pert, len(perturbation_names))

        var_names = _names("var_names", var_names, d, "x")
        if x_arr is not None and len(var_names) != x_arr.shape[1]:
            raise ValueError(f"var_names has {len(var_names)} entries, x has {d} columns")
        context_names = _names("context_names", context_names, n_contexts, "context_")
        feature_names = _names("feature_names", feature_names, features.shape[1], "feature_")
        perturbation_names = _names("perturbation_names", perturbation_names, n_pert, "pert_")

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
        )

    @classmethod
    def from_anndata(
        cls,
        adata,
        *,
        perturbation_key: str,
        dose_key: str,
        control: str,
        features,
        genes: Sequence[str] | None = None,
        layer: str | None = None,
        cell_type: str | None = None,
        cell_type_key: str = "cell_type",
        gene_key: str | None = None,
        n_top_genes: int = 50,
        dose_unit: str = "nM",
        log_dose: bool = False,
        dose_reference: float | None = None,
        normalize: bool | None = None,
        target_sum: float = 1e4,
    ) -> PerturbationData:
        """Contexts and cells of a single-cell screen held as AnnData (never modified).

        One context per (perturbation, dose) plus one control context (first, named after the
        control value or "control"); context names read `"{drug}@{dose}{unit}"`. Cells of
        other cell types are dropped; expression is that of `layer` (default X, dense or
        sparse) on the chosen genes.

        Args:
            adata: `anndata.AnnData` with cells as rows.
            perturbation_key: obs column with the perturbation (drug) name of each cell.
            dose_key: obs column with the numeric dose of each cell, in `dose_unit`
                (ignored for control cells).
            control: a boolean obs column marking control (vehicle) cells, or the value of
                `perturbation_key` that control cells carry.
            features: a pandas DataFrame of numeric features indexed by perturbation name
                (e.g. `gim_ppl.datasets.drug_features`), or "onehot" (one indicator per
                perturbation: fits known drugs, cannot generalise to new ones).
            genes: variables to keep, in this order (matched against `adata.var_names`, or
                `adata.var[gene_key]`); default: the `n_top_genes` highly variable genes
                (scanpy, Seurat flavour, on the normalised cells of the chosen cell type).
            layer: read expression from `adata.layers[layer]` instead of X.
            cell_type, cell_type_key: keep only cells with `obs[cell_type_key] == cell_type`.
            dose_unit, log_dose, dose_reference: define the `DoseScale` of
                `gim_ppl.datasets` (`DoseScale.for_unit(dose_unit, log=log_dose,
                reference=dose_reference)`); the returned `dose` is `scale.to_model(dose)`,
                and `scale.to_user(model.hill_parameters(...)["ec50"])` is the EC50 in
                `dose_unit`. By default 1 µM becomes model dose 1 for molar units.
            normalize: True: scale each cell to `target_sum` counts, then log1p (over all
                genes, before selecting them); False: use the values as they are; None
                (default): do so if the values are raw counts (non-negative integers), with
                a warning that says so.

        Returns:
            `PerturbationData` with `x (n_cells, n_genes)`, names of genes, contexts,
            features and perturbations.

        Raises:
            KeyError: a missing obs key, layer, gene, or a perturbation without features.
            TypeError: non-numeric doses or features, a non-boolean control column.
            ValueError: no control cells, an unknown cell type, negative or missing doses.
        """
        from gim_ppl.datasets.screen import DoseScale

        anndata = _import_optional("anndata")
        pd = _import_optional("pandas")
        if not isinstance(adata, anndata.AnnData):
            raise TypeError(f"adata must be an anndata.AnnData, got {type(adata).__name__}")
        obs = adata.obs
        _require_obs_key(obs, perturbation_key, "perturbation_key")
        _require_obs_key(obs, dose_key, "dose_key")
        if adata.n_obs == 0:
            raise ValueError("adata has no cells (n_obs = 0)")

        keep = np.ones(adata.n_obs, dtype=bool)
        if cell_type is not None:
            _require_obs_key(obs, cell_type_key, "cell_type_key")
            labels = obs[cell_type_key].astype(str).to_numpy()
            keep = labels == str(cell_type)
            if not keep.any():
                raise ValueError(
                    f"cell_type={cell_type!r} matches no cell; obs[{cell_type_key!r}] holds "
                    f"{_listed(np.unique(labels))}"
                )
        elif cell_type_key in obs.columns:
            present = np.unique(obs[cell_type_key].astype(str).to_numpy())
            if present.size > 1:
                warnings.warn(
                    f"obs[{cell_type_key!r}] holds {present.size} cell types "
                    f"{_listed(present)}; they are pooled into one model. Pass cell_type=... "
                    "to fit one cell type.", UserWarning, stacklevel=2,
                )

        is_control = _control_mask(obs, perturbation_key, control)[keep]
        if not is_control.any():
            raise ValueError(
                f"no control cells: control={control!r} marks none of the "
                f"{int(keep.sum())} selected cells; control must be a boolean obs column or "
                f"a value of obs[{perturbation_key!r}] "
                f"(values: {_listed(np.unique(obs[perturbation_key].astype(str)))})"
            )
        pert_raw = obs[perturbation_key].astype(object).to_numpy()[keep]
        missing = ~is_control & pd.isna(pert_raw)
        if missing.any():
            raise ValueError(f"obs[{perturbation_key!r}] is missing for perturbed cells "
                             f"{_listed(obs.index[keep][missing])}")
        pert_label = np.where(is_control, "", pert_raw.astype(str))
        dose_user = _numeric_doses(obs[dose_key], dose_key, keep, is_control)

        scale = DoseScale.for_unit(dose_unit, log=log_dose, reference=dose_reference)
        x, var_names = _expression(adata, keep, layer=layer, genes=genes, gene_key=gene_key,
                                   n_top_genes=n_top_genes, normalize=normalize,
                                   target_sum=target_sum)

        # Contexts: the control first, then every (drug, dose) sorted by name and dose.
        drugs = sorted(set(pert_label[~is_control].tolist()))
        pairs = sorted({(p, float(c)) for p, c, ctl in
                        zip(pert_label, dose_user, is_control, strict=True) if not ctl})
        index = {pair: k + 1 for k, pair in enumerate(pairs)}
        ctx = np.array([0 if ctl else index[(p, float(c))] for p, c, ctl in
                        zip(pert_label, dose_user, is_control, strict=True)], dtype=np.int64)
        control_name = "control" if control in obs.columns else str(control)
        context_names = [control_name] + [f"{p}@{c:g}{dose_unit}" for p, c in pairs]
        drug_index = {p: i for i, p in enumerate(drugs)}
        perturbation = np.array([-1] + [drug_index[p] for p, _ in pairs], dtype=np.int64)
        dose = np.concatenate([[0.0], scale.to_model([c for _, c in pairs])])
        observational = perturbation < 0

        feats, feature_names = _feature_rows(features, drugs)
        rows = feats[np.maximum(perturbation, 0)] if feats.shape[0] else np.zeros(
            (perturbation.size, feats.shape[1]))
        rows[observational] = 0.0
        return cls.from_arrays(
            x, ctx, features=rows, dose=dose, observational=observational,
            perturbation=perturbation, var_names=var_names, context_names=context_names,
            feature_names=feature_names, perturbation_names=drugs,
        )

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
        return self.replace(
            x=x, context=ctx, features=self.features[take], dose=self.dose[take],
            observational=self.observational[take], perturbation=self.perturbation[take],
            context_names=tuple(self.context_names[i] for i in idx),
        )

    def split_by(self, labels) -> dict:
        """Split contexts by a `(n_contexts,)` label array: `{label: subset}`."""
        labels = np.asarray(labels)
        if labels.shape != (self.n_contexts,):
            raise ValueError(
                f"labels must have shape ({self.n_contexts},) (one per context), got "
                f"{labels.shape}"
            )
        return {lab.item(): self.subset(labels == lab) for lab in np.unique(labels)}

    def _context_indices(self, contexts) -> np.ndarray:
        arr = np.asarray(contexts)
        if arr.dtype == bool:
            if arr.shape != (self.n_contexts,):
                raise ValueError(
                    f"a boolean context mask must have shape ({self.n_contexts},), got {arr.shape}"
                )
            return np.flatnonzero(arr)
        if arr.dtype.kind in "US":
            lookup = {n: i for i, n in enumerate(self.context_names)}
            missing = [str(n) for n in arr.ravel() if str(n) not in lookup]
            if missing:
                raise ValueError(f"unknown context names: {missing[:_MAX_SHOWN]}")
            return np.array([lookup[str(n)] for n in arr.ravel()], dtype=np.int64)
        if not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"contexts must be ints, names or a bool mask, got {arr.dtype}")
        arr = arr.ravel().astype(np.int64)
        bad = arr[(arr < 0) | (arr >= self.n_contexts)]
        if bad.size:
            raise ValueError(f"context indices out of range [0, {self.n_contexts}): {_rows(bad)}")
        return arr


# --- AnnData bridge (used by `PerturbationData.from_anndata`) ------------------------------


def _import_optional(module: str):
    """Import a drug-screen dependency (anndata, scanpy, RDKit, scikit-learn, pandas), or say
    how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"{module} is needed for drug-screen data; install the screen extra with "
            f'pip install "gim_ppl[screen]"'
        ) from err


def _listed(values) -> str:
    values = [str(v) for v in values]
    more = f", … ({len(values)} in all)" if len(values) > _MAX_SHOWN else ""
    return "[" + ", ".join(repr(v) for v in values[:_MAX_SHOWN]) + more + "]"


def _require_obs_key(obs, key: str, argument: str) -> None:
    if not isinstance(key, str):
        raise TypeError(f"{argument} must be the name of an obs column (str), got "
                        f"{type(key).__name__}")
    if key not in obs.columns:
        raise KeyError(f"{argument}={key!r} is not an obs column; obs has "
                       f"{_listed(obs.columns)}")


def _control_mask(obs, perturbation_key: str, control: str) -> np.ndarray:
    """`(n_obs,)` bool: control cells, from a boolean obs column or a perturbation value."""
    if not isinstance(control, str):
        raise TypeError(f"control must be a boolean obs column name or a value of "
                        f"obs[{perturbation_key!r}] (str), got {type(control).__name__}")
    if control in obs.columns:
        col = obs[control]
        values = col.to_numpy()
        if values.dtype == bool:
            return values.copy()
        if (np.issubdtype(values.dtype, np.integer) or values.dtype == object) and (
            col.isin([0, 1, True, False]).all()
        ):
            return values.astype(bool)
        raise TypeError(
            f"control={control!r} names an obs column, which must be boolean (True for "
            f"control cells); it has dtype {col.dtype} (e.g. {_listed(col.unique()[:3])}). To "
            f"mark controls by name, pass control=<a value of obs[{perturbation_key!r}]>"
        )
    labels = obs[perturbation_key].astype(str).to_numpy()
    mask = labels == control
    if not mask.any():
        raise KeyError(
            f"control={control!r} is neither an obs column nor a value of "
            f"obs[{perturbation_key!r}]; obs columns: {_listed(obs.columns)}; values of "
            f"obs[{perturbation_key!r}]: {_listed(np.unique(labels))}"
        )
    return mask


def _numeric_doses(column, dose_key: str, keep: np.ndarray, is_control: np.ndarray):
    """`(n_kept,)` float doses of the kept cells; 0 for controls. Validates perturbed cells."""
    import pandas as pd

    raw = column.astype(object).to_numpy()[keep]
    perturbed = ~is_control
    if raw.size and any(isinstance(v, (bool, np.bool_)) for v in raw[perturbed]):
        raise TypeError(f"obs[{dose_key!r}] holds booleans; doses must be numbers")
    values = pd.to_numeric(pd.Series(raw), errors="coerce").to_numpy(dtype=float)
    not_number = perturbed & np.isnan(values) & ~pd.isna(raw)
    if not_number.any():
        bad = sorted({str(v) for v in raw[not_number]})
        raise TypeError(
            f"obs[{dose_key!r}] must hold numeric doses; {int(not_number.sum())} perturbed "
            f"cells have values that are not numbers: {_listed(bad)} (strip units such as "
            "'nM' and give the unit as dose_unit)"
        )
    missing = perturbed & np.isnan(values)
    if missing.any():
        raise ValueError(f"obs[{dose_key!r}] is missing (NaN) for {int(missing.sum())} "
                         f"perturbed cells {_listed(column.index[keep][missing])}")
    bad = perturbed & ~np.isfinite(values)
    if bad.any():
        raise ValueError(f"obs[{dose_key!r}] is infinite for perturbed cells "
                         f"{_listed(column.index[keep][bad])}")
    negative = perturbed & (values < 0)
    if negative.any():
        raise ValueError(f"obs[{dose_key!r}] must be >= 0; negative for perturbed cells "
                         f"{_listed(column.index[keep][negative])}")
    return np.where(is_control, 0.0, values)


def _is_counts(mat) -> bool:
    """True if every stored value is a finite non-negative integer (raw counts)."""
    from scipy import sparse

    values = mat.data if sparse.issparse(mat) else np.asarray(mat)
    values = np.asarray(values)
    if values.size == 0:
        return False
    return bool(np.all(np.isfinite(values)) and np.all(values >= 0)
                and np.all(values == np.round(values)) and values.max() > 0)


def _normalise_log1p(mat, target_sum: float):
    """`log1p(target_sum · x / rowsum)` per cell (rows with no counts stay 0); a new matrix."""
    from scipy import sparse

    if sparse.issparse(mat):
        mat = sparse.csr_matrix(mat, dtype=np.float64, copy=True)
        totals = np.asarray(mat.sum(axis=1)).ravel()
        scale = np.where(totals > 0, target_sum / np.where(totals > 0, totals, 1.0), 0.0)
        mat = sparse.diags(scale) @ mat
        mat.data = np.log1p(mat.data)
        return sparse.csr_matrix(mat)
    x = np.array(mat, dtype=np.float64, copy=True)
    totals = x.sum(axis=1, keepdims=True)
    x *= np.where(totals > 0, target_sum / np.where(totals > 0, totals, 1.0), 0.0)
    return np.log1p(x)


def _expression(adata, keep: np.ndarray, *, layer, genes, gene_key, n_top_genes, normalize,
                target_sum) -> tuple[np.ndarray, tuple]:
    """Dense `(n_kept, n_genes)` expression of the kept cells and the gene names."""
    from scipy import sparse

    if layer is not None:
        if layer not in adata.layers:
            raise KeyError(f"layer={layer!r} is not in adata.layers; layers: "
                           f"{_listed(adata.layers.keys())}")
        mat = adata.layers[layer]
    else:
        mat = adata.X
    if mat is None:
        raise ValueError("adata.X is None: pass layer=... naming the expression layer")
    if not sparse.issparse(mat):
        mat = np.asarray(mat)
    mat = mat[np.flatnonzero(keep)]  # a new matrix: the caller's AnnData is never touched
    if gene_key is None:
        names = np.asarray(adata.var_names.astype(str))
    else:
        if gene_key not in adata.var.columns:
            raise KeyError(f"gene_key={gene_key!r} is not a var column; var has "
                           f"{_listed(adata.var.columns)}")
        names = adata.var[gene_key].astype(str).to_numpy()

    counts = _is_counts(mat)
    if normalize is None:
        normalize = counts
        if counts:
            where = f"adata.layers[{layer!r}]" if layer is not None else "adata.X"
            warnings.warn(
                f"{where} holds raw counts (non-negative integers): normalised each cell to "
                f"{target_sum:g} counts and applied log1p. Pass normalize=False to use the "
                "values as they are (or normalize=True to silence this).",
                UserWarning, stacklevel=3,
            )
    if normalize:
        values = mat.data if sparse.issparse(mat) else mat
        if np.any(np.asarray(values) < 0):
            raise ValueError("normalize=True needs non-negative counts, but the expression "
                             "has negative values (already log-normalised or scaled?)")
        mat = _normalise_log1p(mat, float(target_sum))

    if genes is None:
        n_top = int(n_top_genes)
        if not 1 <= n_top <= mat.shape[1]:
            raise ValueError(f"n_top_genes must be between 1 and the number of genes "
                             f"({mat.shape[1]}), got {n_top_genes}")
        anndata = _import_optional("anndata")
        sc = _import_optional("scanpy")
        tmp = anndata.AnnData(X=mat)
        sc.pp.highly_variable_genes(tmp, n_top_genes=n_top, flavor="seurat")
        idx = np.flatnonzero(tmp.var["highly_variable"].to_numpy())
    else:
        if isinstance(genes, str):
            raise TypeError(f"genes must be a list of gene names, got the string {genes!r}")
        wanted = [str(g) for g in genes]
        if not wanted:
            raise ValueError("genes is empty: name at least one gene (or pass genes=None)")
        dups = sorted(g for g, c in Counter(wanted).items() if c > 1)
        if dups:
            raise ValueError(f"genes lists some genes twice: {_listed(dups)}")
        where: dict[str, list[int]] = {}
        for i, n in enumerate(names):
            where.setdefault(n, []).append(i)
        missing = [g for g in wanted if g not in where]
        if missing:
            source = "adata.var_names" if gene_key is None else f"adata.var[{gene_key!r}]"
            raise KeyError(f"genes not found in {source}: {_listed(missing)}; it has "
                           f"{len(names)} genes, e.g. {_listed(names[:5])}")
        ambiguous = [g for g in wanted if len(where[g]) > 1]
        if ambiguous:
            raise ValueError(f"genes match several columns of adata: {_listed(ambiguous)}")
        idx = np.array([where[g][0] for g in wanted], dtype=int)
    x = mat[:, idx]
    x = x.toarray() if sparse.issparse(x) else np.asarray(x)
    var_names = tuple(str(n) for n in names[idx])
    if len(set(var_names)) != len(var_names):
        raise ValueError(f"the selected genes have duplicate names: "
                         f"{_listed(n for n, c in Counter(var_names).items() if c > 1)}")
    return np.asarray(x, dtype=float), var_names


def _feature_rows(features, drugs: list[str]) -> tuple[np.ndarray, list[str]]:
    """`(n_drugs, n_features)` feature rows in the order of `drugs`, and feature names."""
    if isinstance(features, str):
        if features != "onehot":
            raise ValueError(f"features must be a DataFrame indexed by perturbation name or "
                             f"'onehot', got {features!r}")
        return np.eye(len(drugs)), [f"onehot_{d}" for d in drugs]
    pd = _import_optional("pandas")
    if not isinstance(features, pd.DataFrame):
        raise TypeError(
            "features must be a pandas DataFrame indexed by perturbation name (e.g. "
            f"gim_ppl.datasets.drug_features(...)) or 'onehot', got {type(features).__name__}"
        )
    index = [str(i) for i in features.index]
    dups = sorted(i for i, c in Counter(index).items() if c > 1)
    if dups:
        raise ValueError(f"features has duplicate index entries {_listed(dups)}; expected one "
                         "row per perturbation")
    missing = [d for d in drugs if d not in set(index)]
    if missing:
        raise KeyError(f"features has no row for the perturbations {_listed(missing)}; its "
                       f"index holds {_listed(index)}")
    if features.shape[1] == 0:
        raise ValueError("features has no columns")
    non_numeric = [str(c) for c in features.columns
                   if not pd.api.types.is_numeric_dtype(features[c])]
    if non_numeric:
        raise TypeError(f"features must be numeric; non-numeric columns: {_listed(non_numeric)}")
    table = features.set_axis(index, axis=0)
    rows = table.loc[drugs].to_numpy(dtype=float) if drugs else np.zeros((0, features.shape[1]))
    bad = [d for d, r in zip(drugs, rows, strict=True) if not np.all(np.isfinite(r))]
    if bad:
        raise ValueError(f"features has missing or non-finite values for the perturbations "
                         f"{_listed(bad)}")
    return rows, [str(c) for c in features.columns]
