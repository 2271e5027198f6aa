"""`gim-ppl fit`: fit a GIM to the user's drug screen (.h5ad) in three steps, load → fit →
write (graph, targets, Hill parameters, predictions, held-out metrics, figures, run record).
Needs the `[screen]` and `[plots]` extras; the held-out scores (when contexts are held out) use
`gim_ppl.evaluation.metrics`, imported only then."""

from __future__ import annotations

import dataclasses
import json
import sys
import warnings
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np
import optax

from gim_ppl.cli.machine import machine_description
from gim_ppl.data import PerturbationData
from gim_ppl.datasets import (
    SCIPLEX3,
    DoseScale,
    center_on_controls,
    drug_features,
    drug_smiles,
    from_anndata,
    holdout_highest_doses,
    holdout_perturbations,
    shift_cells,
)
from gim_ppl.evaluation.baselines import Observational
from gim_ppl.extras import require
from gim_ppl.inference import FitResult, fit
from gim_ppl.model import GIM
from gim_ppl.summary import hill_table, target_table

_FIT_KEYS = ("perturbation_key", "dose_key", "control", "dose_unit", "cell_type_key",
             "smiles_key")


def add_parser(sub) -> None:
    """Register `gim-ppl fit` (a drug screen in .h5ad → graph, targets, Hill curves, ...)."""
    fit_p = sub.add_parser(
        "fit", help="fit a GIM to a drug screen (.h5ad) and write its graph, targets, Hill "
                    "parameters, predictions, metrics and figures")
    fit_p.add_argument("--h5ad", required=True, help="AnnData file, cells × genes")
    fit_p.add_argument("--preset", choices=("sciplex3",),
                       help="take the obs keys of the sci-Plex3 schema (product_name, dose in "
                            "nM, cell_type, SMILES, vehicle); explicit keys override it")
    fit_p.add_argument("--perturbation-key", help="obs column with the drug of each cell")
    fit_p.add_argument("--dose-key", help="obs column with the numeric dose of each cell")
    fit_p.add_argument("--control", help="boolean obs column marking control cells, or the "
                                         "drug name that control cells carry")
    fit_p.add_argument("--dose-unit", help="unit of the dose column (default nM)")
    fit_p.add_argument("--log-dose", action="store_true",
                       help="model dose log1p(dose / reference) instead of dose / reference")
    fit_p.add_argument("--dose-reference", type=float,
                       help="dose (in --dose-unit) that becomes 1 in the model (default 1 µM)")
    fit_p.add_argument("--cell-type", help="fit only the cells of this cell type")
    fit_p.add_argument("--cell-type-key", help="obs column of the cell type (default cell_type)")
    fit_p.add_argument("--smiles-key", help="obs column with the SMILES of each drug; drug "
                                            "features are computed from it with RDKit")
    fit_p.add_argument("--features-csv", help="CSV of numeric drug features, first column the "
                                              "drug name (instead of --smiles-key)")
    fit_p.add_argument("--feature-kind", choices=("morgan", "rdkit2d"), default="morgan")
    fit_p.add_argument("--n-components", type=int,
                       help="PCA components of the drug features (default min(16, drugs − 1))")
    fit_p.add_argument("--genes", help="comma-separated genes (default: highly variable genes)")
    fit_p.add_argument("--n-top-genes", type=int, default=50)
    fit_p.add_argument("--layer", help="read expression from adata.layers[LAYER]")
    fit_p.add_argument("--holdout", choices=("highest-dose", "none"), default="highest-dose",
                       help="hold out every drug's highest dose (predicted and scored), or "
                            "nothing")
    fit_p.add_argument("--holdout-drugs", help="comma-separated drugs held out entirely")
    fit_p.add_argument("--steps", type=int, default=6000)
    fit_p.add_argument("--learning-rate", type=float, default=1e-2)
    fit_p.add_argument("--target-sparsity", type=float, default=1.0)
    fit_p.add_argument("--graph-threshold", type=float, default=0.3)
    fit_p.add_argument("--n-pred-cells", type=int, default=200)
    fit_p.add_argument("--top-targets", type=int, default=3,
                       help="targets per drug drawn in the dose-response figure")
    fit_p.add_argument("--seed", type=int, default=0)
    fit_p.add_argument("--out", required=True, help="output folder (created)")
    fit_p.add_argument("--no-progress", action="store_true")


def _fit_settings(args) -> dict:
    """The obs keys and dose unit: explicit flags, else the preset, else an error."""
    preset = dataclasses.asdict(SCIPLEX3) if args.preset == "sciplex3" else {}
    out = {k: getattr(args, k) if getattr(args, k) is not None else preset.get(k)
           for k in _FIT_KEYS}
    if args.features_csv is not None and args.smiles_key is None:
        out["smiles_key"] = None  # features come from the CSV, not the preset's SMILES
    out["dose_unit"] = out["dose_unit"] or "nM"
    out["cell_type_key"] = out["cell_type_key"] or "cell_type"
    missing = [f"--{k.replace('_', '-')}" for k in ("perturbation_key", "dose_key", "control")
               if out[k] is None]
    if missing:
        raise ValueError(f"gim-ppl fit needs {', '.join(missing)} (or --preset sciplex3)")
    return out


class _Screen(NamedTuple):
    """What `gim-ppl fit` loaded: all contexts, the train/test split, the dose scale and the
    obs keys used."""

    data: PerturbationData
    train: PerturbationData
    test: PerturbationData
    scale: DoseScale
    settings: dict


class _Fitted(NamedTuple):
    """The fitted model, its `FitResult`, the centred training cells and the control mean
    that was subtracted (`center_on_controls`)."""

    model: GIM
    result: FitResult
    centred: PerturbationData
    offset: np.ndarray


def run(args) -> int:
    """`gim-ppl fit`: load and split the screen, fit, and write every artefact to `--out`."""
    try:
        screen = _load_screen(args)
    except (KeyError, ValueError, TypeError, FileNotFoundError, ImportError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"gim-ppl fit: error: {message}", file=sys.stderr)
        return 2
    print(f"data: {screen.data}")
    print(f"train: {screen.train.n_contexts} contexts, {screen.train.n_cells} cells; held out: "
          f"{screen.test.n_contexts} contexts, {screen.test.n_cells} cells")
    print(f"machine: {machine_description()}")
    fitted = _fit_screen(args, screen)
    out = Path(args.out)
    scores = _write_outputs(out, args, screen, fitted)
    if scores is not None:
        print(f"held-out mean error {scores['mean_error']:.3f} (control prediction "
              f"{scores['mean_error_control']:.3f}) over {len(scores['per_context'])} contexts")
    print(f"wrote graph.csv, targets.csv, hill.csv, predictions.h5ad"
          f"{', metrics.json' if scores else ''}, run.json and figures/ to {out}")
    return 0


def _load_screen(args) -> _Screen:
    """Read the .h5ad, build drug features and `PerturbationData`, and split it."""
    settings = _fit_settings(args)
    anndata = require("anndata")
    pd = require("pandas")
    path = Path(args.h5ad)
    if not path.is_file():
        raise FileNotFoundError(f"--h5ad {str(path)!r}: no such file")
    adata = anndata.read_h5ad(path)
    if args.features_csv is not None:
        features = pd.read_csv(args.features_csv, index_col=0)
    elif settings["smiles_key"] is not None:
        smiles = drug_smiles(adata, perturbation_key=settings["perturbation_key"],
                             smiles_key=settings["smiles_key"], control=settings["control"])
        features = drug_features(smiles, kind=args.feature_kind, n_components=args.n_components)
    else:
        print("no --smiles-key or --features-csv: one-hot drug features (new drugs cannot "
              "be predicted)", file=sys.stderr)
        features = "onehot"
    scale = DoseScale.for_unit(settings["dose_unit"], log=args.log_dose,
                               reference=args.dose_reference)
    genes = None if args.genes is None else [g.strip() for g in args.genes.split(",")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = from_anndata(
            adata, perturbation_key=settings["perturbation_key"], dose_key=settings["dose_key"],
            control=settings["control"], features=features, genes=genes, layer=args.layer,
            cell_type=args.cell_type, cell_type_key=settings["cell_type_key"],
            n_top_genes=args.n_top_genes, dose_unit=scale.unit, log_dose=scale.log,
            dose_reference=scale.reference,
        )
    for w in caught:  # e.g. "raw counts were normalised": tell the user on stderr
        print(f"note: {w.message}", file=sys.stderr)
    train, test_parts = data, []
    if args.holdout_drugs:
        train, held = holdout_perturbations(train, [d.strip() for d in
                                                    args.holdout_drugs.split(",")])
        test_parts.append(held)
    if args.holdout == "highest-dose":
        train, held = holdout_highest_doses(train)
        test_parts.append(held)
    names = [n for part in test_parts for n in part.context_names]
    test = data.subset(np.asarray(names, dtype=str)) if names else data.subset(
        np.zeros(data.n_contexts, dtype=bool))
    return _Screen(data, train, test, scale, settings)


def _fit_screen(args, screen: _Screen) -> _Fitted:
    """Fit a GIM to the training cells minus the control mean (an exact reparametrisation of
    the linear SCM's bias; Adam converges far better than on raw log expression ~ 5)."""
    centred, offset = center_on_controls(screen.train)
    model = GIM(screen.data.n_vars, screen.data.n_features,
                target_sparsity=args.target_sparsity)
    result = fit(model, centred, steps=args.steps, key=jax.random.key(args.seed),
                 optimizer=optax.adam(args.learning_rate), progress=not args.no_progress)
    if result.message:
        print(f"warning: {result.message}", file=sys.stderr)
    return _Fitted(model, result, centred, offset)


def _write_outputs(out: Path, args, screen: _Screen, fitted: _Fitted) -> dict | None:
    """Write graph.csv, targets.csv, hill.csv, predictions.h5ad, metrics.json (when contexts
    were held out), figures/ and run.json; return the held-out scores (or None)."""
    import pandas as pd

    model, sites, data = fitted.model, fitted.result.sites, screen.data
    (out / "figures").mkdir(parents=True, exist_ok=True)
    weights = model.edge_weights(sites)
    src, dst = np.nonzero(model.graph(sites, threshold=args.graph_threshold))
    pd.DataFrame({"source": [data.var_names[i] for i in src],
                  "target": [data.var_names[j] for j in dst],
                  "weight": weights[src, dst]}).to_csv(out / "graph.csv", index=False)
    target_table(model, sites, data, train=fitted.centred).to_csv(out / "targets.csv",
                                                                  index=False)
    hill_table(model, sites, data, screen.scale).to_csv(out / "hill.csv", index=False)

    # Predictions: the held-out contexts, or (nothing held out) every perturbational context.
    test = screen.test
    to_predict = test if test.n_contexts else data.subset(~np.asarray(data.observational))
    pred = shift_cells(model.predict(sites, to_predict.contexts_only(),
                                     key=jax.random.key(args.seed + 1),
                                     n_cells=args.n_pred_cells), fitted.offset)
    _write_predictions(out / "predictions.h5ad", pred, screen.scale, screen.settings)
    scores = None
    if test.n_contexts:
        scores = _heldout_metrics(pred, test, screen.train, key=jax.random.key(args.seed + 2),
                                  n_cells=args.n_pred_cells)
        (out / "metrics.json").write_text(json.dumps(scores, indent=2))
    _write_figures(out / "figures", args, screen, fitted)
    (out / "run.json").write_text(json.dumps(_run_record(args, screen, fitted), indent=2))
    return scores


def _run_record(args, screen: _Screen, fitted: _Fitted) -> dict:
    """run.json: the input, settings, genes, split, fit settings and outcome, machine."""
    data, result = screen.data, fitted.result
    return {
        "h5ad": str(args.h5ad), "settings": screen.settings, "cell_type": args.cell_type,
        "genes": list(data.var_names), "n_cells": data.n_cells,
        "n_contexts": data.n_contexts, "features": list(data.feature_names),
        "dose_scale": dataclasses.asdict(screen.scale), "holdout": args.holdout,
        "heldout_contexts": list(screen.test.context_names), "steps": args.steps,
        "learning_rate": args.learning_rate, "target_sparsity": args.target_sparsity,
        "final_loss": float(result.losses[-1]) if result.losses.size else None,
        "fit_seconds": result.seconds, "fit_message": result.message,
        "control_mean": np.asarray(fitted.offset).tolist(), "machine": machine_description(),
    }


def _write_predictions(path, pred: PerturbationData, scale, settings) -> None:
    """Predicted cells as AnnData: X `(n_pred_cells, n_genes)`, obs context / drug / dose."""
    import anndata
    import pandas as pd

    ctx = np.asarray(pred.context)
    pert = np.asarray(pred.perturbation)[ctx]
    obs = pd.DataFrame({
        "context": pd.Categorical([pred.context_names[k] for k in ctx]),
        settings["perturbation_key"]: pd.Categorical(
            [pred.perturbation_names[p] if p >= 0 else "control" for p in pert]),
        # doses are stored in float32: round back to the 7 digits that float32 carries
        settings["dose_key"]: [float(f"{c:.7g}") for c in
                               scale.to_user(np.asarray(pred.dose)[ctx])],
    }, index=[f"pred{i}" for i in range(ctx.size)])
    adata = anndata.AnnData(X=np.asarray(pred.x, dtype=np.float32), obs=obs,
                            var=pd.DataFrame(index=list(pred.var_names)))
    adata.uns["dose_unit"] = scale.unit
    adata.uns["description"] = "cells predicted by a GIM (gim-ppl fit), log1p-normalised"
    adata.write_h5ad(path)


def _heldout_metrics(pred: PerturbationData, test: PerturbationData,
                     train: PerturbationData, *, key, n_cells: int) -> dict:
    """Per held-out context: error of the predicted mean, and of the control prediction."""
    from gim_ppl.evaluation import metrics  # [bench] (ott-jax), needed only here

    control = Observational().fit(train).predict(test.contexts_only(), key=key, n_cells=n_cells)
    gim_err = metrics.mean_error(pred, test, per_context=True)
    ctrl_err = metrics.mean_error(control, test, per_context=True)
    return {
        "mean_error": float(np.mean(gim_err)),
        "mean_error_control": float(np.mean(ctrl_err)),
        "per_context": [
            {"context": name, "n_observed_cells": int(n), "mean_error": float(g),
             "mean_error_control": float(c)}
            for name, n, g, c in zip(test.context_names, test.cells_per_context(), gim_err,
                                     ctrl_err, strict=True)
        ],
    }


def _write_figures(folder: Path, args, screen: _Screen, fitted: _Fitted) -> None:
    """target_heatmap.png (`plots.plot_targets`, prior π per drug and gene) and
    dose_response.png (`plots.plot_dose_response_grid`, in the user's dose unit)."""
    import matplotlib.pyplot as plt

    from gim_ppl.plots import plot_dose_response_grid, plot_targets

    model, sites = fitted.model, fitted.result.sites
    fig, _ = plot_targets(model, sites, screen.data, posterior=False)
    fig.savefig(folder / "target_heatmap.png", dpi=120)
    plt.close(fig)
    fig, _ = plot_dose_response_grid(model, sites, screen.data, screen.scale,
                                     heldout=screen.test.context_names, top=args.top_targets)
    fig.savefig(folder / "dose_response.png", dpi=120)
    plt.close(fig)

