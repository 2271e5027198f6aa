"""The AnnData bridge: a single-cell screen held as `anndata.AnnData` → `PerturbationData`.

`from_anndata` reads one context per (perturbation, dose) plus the control context, the
expression of the chosen genes (normalised and log1p-transformed when the file holds counts)
and one feature row per perturbation. `from_anndata_with_info` does the same and also returns
`AnnDataInfo`: what it detected in the expression values, what it did about it, and how the
genes were chosen. This module holds the obs handling (cells of a cell type, control cells,
doses, contexts) and the feature rows; the expression values (normalisation, gene selection,
`AnnDataInfo`) are in `gim_ppl.datasets.expression`. `control_mask` and `require_obs_key` are
the obs-column checks it shares with `gim_ppl.datasets.screen.drug_smiles`.

anndata, scanpy and pandas are imported inside the functions (`pip install "gim_ppl[screen]"`).
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from gim_ppl.data import PerturbationData
from gim_ppl.datasets.doses import DoseScale
from gim_ppl.datasets.expression import AnnDataInfo, listed, normalize_choice, read_expression
from gim_ppl.errors import ArgumentError, ArgumentKeyError, ArgumentTypeError
from gim_ppl.extras import require


class AnnDataResult(NamedTuple):
    """`from_anndata_with_info`'s result: the contexts and cells, and what was done."""

    data: PerturbationData
    info: AnnDataInfo


def from_anndata(
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
    normalize: str | bool | None = "auto",
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
            (scanpy, Seurat flavour, on the normalised cells of the chosen cell type), or
            every gene when the file has no more than `n_top_genes` (with a note). Genes
            holding NaN or infinite values are never chosen; naming one is an error.
        layer: read expression from `adata.layers[layer]` instead of X.
        cell_type, cell_type_key: keep only cells with `obs[cell_type_key] == cell_type`.
        dose_unit, log_dose, dose_reference: define the `DoseScale` of
            `gim_ppl.datasets` (`DoseScale.for_unit(dose_unit, log=log_dose,
            reference=dose_reference)`); the returned `dose` is `scale.to_model(dose)` and
            the data carries the scale (`data.dose_scale`), so splits, tables and figures
            take and give doses in `dose_unit`. By default 1 µM becomes model dose 1 for
            molar units.
        normalize: "yes" (or True): scale each cell to `target_sum` counts, then log1p (library
            sizes over all genes, before selecting them); "no" (or False): use the values as
            they are; "auto" (or None, the default): decide from the values of the genes used
            (of every gene when they are chosen by variability), with a warning saying what
            was detected and done. Non-negative integers are raw counts, and non-negative
            values above `LOG_SCALE_MAX` (15) that are not whole numbers are corrected counts
            (e.g. after ambient-RNA removal): both are normalised. Values with negatives
            (scaled) and non-negative values up to 15 (log-normalised) are used as they are.
        target_sum: counts per cell after normalising.

    Returns:
        `PerturbationData` with `x (n_cells, n_genes)`, names of genes, contexts,
        features and perturbations, and `dose_scale`.

    Raises:
        KeyError: a missing obs key, layer, gene, or a perturbation without features.
        TypeError: non-numeric doses or features, a non-boolean control column.
        ValueError: no cells, no control cells, an unknown cell type, negative or missing
            doses, NaN in a named gene, negative values to normalise.
    """
    data, info = from_anndata_with_info(
        adata, perturbation_key=perturbation_key, dose_key=dose_key, control=control,
        features=features, genes=genes, layer=layer, cell_type=cell_type,
        cell_type_key=cell_type_key, gene_key=gene_key, n_top_genes=n_top_genes,
        dose_unit=dose_unit, log_dose=log_dose, dose_reference=dose_reference,
        normalize=normalize, target_sum=target_sum)
    for note in info.notes():
        warnings.warn(note, UserWarning, stacklevel=2)
    return data


def from_anndata_with_info(
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
    normalize: str | bool | None = "auto",
    target_sum: float = 1e4,
) -> AnnDataResult:
    """`from_anndata`, returning `(data, info)` and warning about nothing: `info`
    (`AnnDataInfo`) says what was detected in the expression values and done to them, how
    the genes were chosen, and whether cell types were pooled (for a run record, or for
    notes in another vocabulary: `info.notes(cli=True)`). Same arguments."""
    anndata = require("anndata")
    pd = require("pandas")
    if not isinstance(adata, anndata.AnnData):
        raise ArgumentTypeError(f"adata must be an anndata.AnnData, got {type(adata).__name__}",
                                argument="adata")
    normalize = normalize_choice(normalize)
    obs = adata.obs
    if adata.n_obs == 0:
        raise ArgumentError("adata has no cells (n_obs = 0)", argument="adata")
    if adata.n_vars == 0:
        raise ArgumentError("adata has no genes (n_vars = 0)", argument="adata")
    require_obs_key(obs, perturbation_key, "perturbation_key")
    require_obs_key(obs, dose_key, "dose_key")

    keep, pooled = _selected_cells(obs, cell_type, cell_type_key)
    is_control = control_mask(obs, perturbation_key, control)[keep]
    if not is_control.any():
        raise ArgumentError(
            f"no control cells: control={control!r} marks none of the "
            f"{int(keep.sum())} selected cells; control must be a boolean obs column or "
            f"a value of obs[{perturbation_key!r}] "
            f"(values: {listed(np.unique(obs[perturbation_key].astype(str)))})",
            argument="control"
        )
    pert_raw = obs[perturbation_key].astype(object).to_numpy()[keep]
    missing = ~is_control & pd.isna(pert_raw)
    if missing.any():
        raise ArgumentError(f"obs[{perturbation_key!r}] is missing for perturbed cells "
                            f"{listed(obs.index[keep][missing])}", argument="perturbation_key")
    pert_label = np.where(is_control, "", pert_raw.astype(str))
    dose_user = _numeric_doses(obs[dose_key], dose_key, keep, is_control)

    scale = DoseScale.for_unit(dose_unit, log=log_dose, reference=dose_reference)
    x, var_names, facts = read_expression(adata, keep, layer=layer, genes=genes,
                                          gene_key=gene_key, n_top_genes=n_top_genes,
                                          normalize=normalize, target_sum=target_sum)
    info = AnnDataInfo(**facts, normalize=normalize, target_sum=float(target_sum),
                       cell_type_key=cell_type_key, pooled_cell_types=pooled)

    control_name = "control" if control in obs.columns else str(control)
    drugs, ctx, context_names, perturbation, dose = _contexts(
        pert_label, dose_user, is_control, control_name, dose_unit, scale)
    observational = perturbation < 0

    feats, feature_names = _feature_rows(features, drugs)
    rows = feats[np.maximum(perturbation, 0)] if feats.shape[0] else np.zeros(
        (perturbation.size, feats.shape[1]))
    rows[observational] = 0.0
    data = PerturbationData.from_arrays(
        x, ctx, features=rows, dose=dose, observational=observational,
        perturbation=perturbation, var_names=var_names, context_names=context_names,
        feature_names=feature_names, perturbation_names=drugs, dose_scale=scale,
    )
    return AnnDataResult(data, info)



def _selected_cells(obs, cell_type, cell_type_key: str) -> tuple[np.ndarray, tuple]:
    """`(keep (n_obs,) bool, pooled)`: the cells of `cell_type`, or all cells if it is None;
    `pooled` lists the cell types then pooled when there are several (else empty)."""
    keep = np.ones(obs.shape[0], dtype=bool)
    if cell_type is not None:
        require_obs_key(obs, cell_type_key, "cell_type_key")
        labels = obs[cell_type_key].astype(str).to_numpy()
        keep = labels == str(cell_type)
        if not keep.any():
            raise ArgumentError(
                f"cell_type={cell_type!r} matches no cell; obs[{cell_type_key!r}] holds "
                f"{listed(np.unique(labels))}",
                argument="cell_type"
            )
    elif cell_type_key in obs.columns:
        present = np.unique(obs[cell_type_key].astype(str).to_numpy())
        if present.size > 1:
            return keep, tuple(str(p) for p in present)
    return keep, ()


def _contexts(pert_label, dose_user, is_control, control_name: str, dose_unit: str,
              scale: DoseScale):
    """The control context first, then every (drug, dose) sorted by name and dose:
    `(drugs, context (n_cells,), context_names, perturbation (n_contexts,), model dose
    (n_contexts,))`."""
    drugs = sorted(set(pert_label[~is_control].tolist()))
    pairs = sorted({(p, float(c)) for p, c, ctl in
                    zip(pert_label, dose_user, is_control, strict=True) if not ctl})
    index = {pair: k + 1 for k, pair in enumerate(pairs)}
    ctx = np.array([0 if ctl else index[(p, float(c))] for p, c, ctl in
                    zip(pert_label, dose_user, is_control, strict=True)], dtype=np.int64)
    context_names = [control_name] + [f"{p}@{c:g}{dose_unit}" for p, c in pairs]
    drug_index = {p: i for i, p in enumerate(drugs)}
    perturbation = np.array([-1] + [drug_index[p] for p, _ in pairs], dtype=np.int64)
    dose = np.concatenate([[0.0], scale.to_model([c for _, c in pairs])])
    return drugs, ctx, context_names, perturbation, dose



def require_obs_key(obs, key: str, argument: str) -> None:
    """Raise unless `key` names a column of `obs` (the error names `argument` and lists the
    columns)."""
    if not isinstance(key, str):
        raise ArgumentTypeError(f"{argument} must be the name of an obs column (str), got "
                                f"{type(key).__name__}", argument=argument)
    if key not in obs.columns:
        raise ArgumentKeyError(f"{argument}={key!r} is not an obs column; obs has "
                               f"{listed(obs.columns)}", argument=argument)


def control_mask(obs, perturbation_key: str, control: str) -> np.ndarray:
    """`(n_obs,)` bool: control cells, from a boolean obs column or a perturbation value."""
    if not isinstance(control, str):
        raise ArgumentTypeError(f"control must be a boolean obs column name or a value of "
                                f"obs[{perturbation_key!r}] (str), got {type(control).__name__}",
                                argument="control")
    if control in obs.columns:
        col = obs[control]
        values = col.to_numpy()
        if values.dtype == bool:
            return values.copy()
        if (np.issubdtype(values.dtype, np.integer) or values.dtype == object) and (
            col.isin([0, 1, True, False]).all()
        ):
            return values.astype(bool)
        raise ArgumentTypeError(
            f"control={control!r} names an obs column, which must be boolean (True for "
            f"control cells); it has dtype {col.dtype} (e.g. {listed(col.unique()[:3])}). To "
            f"mark controls by name, pass control=<a value of obs[{perturbation_key!r}]>",
            argument="control"
        )
    labels = obs[perturbation_key].astype(str).to_numpy()
    mask = labels == control
    if not mask.any():
        raise ArgumentKeyError(
            f"control={control!r} is neither an obs column nor a value of "
            f"obs[{perturbation_key!r}]; obs columns: {listed(obs.columns)}; values of "
            f"obs[{perturbation_key!r}]: {listed(np.unique(labels))}",
            argument="control"
        )
    return mask


def _numeric_doses(column, dose_key: str, keep: np.ndarray, is_control: np.ndarray):
    """`(n_kept,)` float doses of the kept cells; 0 for controls. Validates perturbed cells."""
    pd = require("pandas")
    raw = column.astype(object).to_numpy()[keep]
    perturbed = ~is_control
    if raw.size and any(isinstance(v, (bool, np.bool_)) for v in raw[perturbed]):
        raise ArgumentTypeError(f"obs[{dose_key!r}] holds booleans; doses must be numbers",
                                argument="dose_key")
    values = pd.to_numeric(pd.Series(raw), errors="coerce").to_numpy(dtype=float)
    not_number = perturbed & np.isnan(values) & ~pd.isna(raw)
    if not_number.any():
        bad = sorted({str(v) for v in raw[not_number]})
        raise ArgumentTypeError(
            f"obs[{dose_key!r}] must hold numeric doses; {int(not_number.sum())} perturbed "
            f"cells have values that are not numbers: {listed(bad)} (strip units such as "
            "'nM' and give the unit as dose_unit='nM')",
            argument="dose_key"
        )
    missing = perturbed & np.isnan(values)
    if missing.any():
        raise ArgumentError(f"obs[{dose_key!r}] is missing (NaN) for {int(missing.sum())} "
                            f"perturbed cells {listed(column.index[keep][missing])}",
                            argument="dose_key")
    bad = perturbed & ~np.isfinite(values)
    if bad.any():
        raise ArgumentError(f"obs[{dose_key!r}] is infinite for perturbed cells "
                            f"{listed(column.index[keep][bad])}", argument="dose_key")
    negative = perturbed & (values < 0)
    if negative.any():
        raise ArgumentError(f"obs[{dose_key!r}] must be >= 0; negative for perturbed cells "
                            f"{listed(column.index[keep][negative])}", argument="dose_key")
    return np.where(is_control, 0.0, values)


def _feature_rows(features, drugs: list[str]) -> tuple[np.ndarray, list[str]]:
    """`(n_drugs, n_features)` feature rows in the order of `drugs`, and feature names."""
    if isinstance(features, str):
        if features != "onehot":
            raise ArgumentError(f"features must be a DataFrame indexed by perturbation name or "
                                f"'onehot', got {features!r}", argument="features")
        return np.eye(len(drugs)), [f"onehot_{d}" for d in drugs]
    pd = require("pandas")
    if not isinstance(features, pd.DataFrame):
        raise ArgumentTypeError(
            "features must be a pandas DataFrame indexed by perturbation name (e.g. "
            f"gim_ppl.datasets.drug_features(...)) or 'onehot', got {type(features).__name__}",
            argument="features"
        )
    index = [str(i) for i in features.index]
    dups = sorted(i for i, c in Counter(index).items() if c > 1)
    if dups:
        raise ArgumentError(f"features has duplicate index entries {listed(dups)}; expected one "
                            "row per perturbation", argument="features")
    missing = [d for d in drugs if d not in set(index)]
    if missing:
        raise ArgumentKeyError(f"features has no row for the perturbations {listed(missing)}; its "
                               f"index holds {listed(index)}", argument="features")
    if features.shape[1] == 0:
        raise ArgumentError("features has no columns", argument="features")
    non_numeric = [str(c) for c in features.columns
                   if not pd.api.types.is_numeric_dtype(features[c])]
    if non_numeric:
        raise ArgumentTypeError("features must be numeric; non-numeric columns: "
                                f"{listed(non_numeric)}", argument="features")
    table = features.set_axis(index, axis=0)
    rows = table.loc[drugs].to_numpy(dtype=float) if drugs else np.zeros((0, features.shape[1]))
    bad = [d for d, r in zip(drugs, rows, strict=True) if not np.all(np.isfinite(r))]
    if bad:
        raise ArgumentError(f"features has missing or non-finite values for the perturbations "
                            f"{listed(bad)}", argument="features")
    return rows, [str(c) for c in features.columns]


__all__ = [
    "AnnDataResult",
    "control_mask",
    "from_anndata",
    "from_anndata_with_info",
    "require_obs_key",
]
