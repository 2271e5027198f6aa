"""The output folder of `gim-ppl fit` and what is written into it.

`OutputFolder` is `--out`, written atomically: checked before anything is read, filled in a
hidden temporary folder beside it (`.NAME.partial-XXXX`) and moved into place at the end, so
`--out` is either complete or absent. `write_outputs` writes graph.csv, targets.csv
(ranked by probability × effect), targets_by_dose.csv, hill.csv, predictions.h5ad,
metrics.json (when contexts were held out), figures/ and run.json from `Screen` (what was
loaded) and `Fitted` (what was fitted); `write_csv` (numbers to `SIGNIFICANT_DIGITS`) also
writes the ranking of `gim-ppl design`. The held-out scores
use `gim_ppl.evaluation.metrics`, imported only then."""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from gim_ppl.cli.machine import machine_description
from gim_ppl.cli.user_errors import UsageError
from gim_ppl.datasets import AnnDataInfo

# jax and the library's model, splits and tables are imported inside the writers: the command
# checks --out (`OutputFolder`) before they load.
if TYPE_CHECKING:  # pragma: no cover
    from gim_ppl.data import PerturbationData
    from gim_ppl.inference import FitResult
    from gim_ppl.model import GIM

SIGNIFICANT_DIGITS = 4  # numbers in the CSV tables


# --- the output folder -------------------------------------------------------------------


class OutputFolder:
    """`--out`, written atomically: checked before anything else, filled in a hidden
    temporary folder beside it (`.NAME.partial-XXXX`), and moved into place by `commit`;
    `discard` removes the temporary folder (and any parent folders it created)."""

    def __init__(self, path: Path, overwrite: bool):
        self.path = path
        self.overwrite = overwrite
        self.created: list[Path] = []
        self.tmp: Path | None = None

    @classmethod
    def prepare(cls, path: str, overwrite: bool) -> OutputFolder:
        """Check `path` and create the temporary folder; `UsageError` when it cannot be
        written."""
        folder = cls(Path(path).absolute(), overwrite)
        out = folder.path
        if out.exists() and not out.is_dir():
            raise UsageError(f"--out {path} is a file, not a folder; give the path of a "
                             "folder to create")
        if out.is_dir():
            present = sorted(p.name for p in out.iterdir())
            if present and not overwrite:
                shown = ", ".join(present[:5]) + (", …" if len(present) > 5 else "")
                raise UsageError(f"--out {path} already holds files ({shown}); pass "
                                 "--overwrite to replace them, or choose another folder")
        missing = [p for p in [out.parent, *out.parent.parents] if not p.exists()]
        blocker = next((p for p in [out.parent, *out.parent.parents]
                        if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            raise UsageError(f"cannot create --out {path}: {blocker} is a file, not a folder; "
                             "choose another folder")
        try:
            for p in reversed(missing):
                p.mkdir()
                folder.created.append(p)
            tmp = out.parent / f".{out.name}.partial-{secrets.token_hex(4)}"
            tmp.mkdir()
            folder.tmp = tmp
            probe = tmp / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as err:
            folder.discard()
            reason = err.strerror or str(err)
            raise UsageError(f"cannot write --out {path} ({reason.lower()} in "
                             f"{err.filename or out.parent}); choose a folder you can "
                             "write to") from err
        return folder

    def commit(self) -> None:
        """Move the finished temporary folder to `path` (replacing an existing one)."""
        old = None
        if self.path.exists():
            old = self.path.parent / f".{self.path.name}.old-{secrets.token_hex(4)}"
            os.replace(self.path, old)
        try:
            os.replace(self.tmp, self.path)
        except OSError:
            if old is not None:
                os.replace(old, self.path)
            raise
        self.tmp = None
        self.created = []
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def discard(self) -> None:
        """Remove the temporary folder and the parent folders `prepare` created."""
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None
        for p in reversed(self.created):
            try:
                p.rmdir()
            except OSError:
                break
        self.created = []


# --- what the writers read ---------------------------------------------------------------


class Screen(NamedTuple):
    """What `gim-ppl fit` loaded: all contexts (carrying their dose scale), the train/test
    split, what was done to the expression values, and the obs keys used."""

    data: PerturbationData
    train: PerturbationData
    test: PerturbationData
    info: AnnDataInfo
    settings: dict


class Fitted(NamedTuple):
    """The fitted model, its `FitResult`, the centred training cells and the control mean
    that was subtracted (`center_on_controls`)."""

    model: GIM
    result: FitResult
    centred: PerturbationData
    offset: np.ndarray


# --- writing -----------------------------------------------------------------------------


def expression_unit(info: AnnDataInfo) -> tuple[str, str]:
    """`(column suffix, axis label)` of the fitted cells' unit: log1p of counts per 10⁴ when
    the command normalised them, else the file's own scale."""
    if info.normalized:
        return "log1p_expr", "log1p expr."
    if info.detected == "log-normalised values":
        return "log_expr", "log expr., as in the file"
    return "expr", "expr., as in the file"


def write_outputs(out: Path, args, screen: Screen, fitted: Fitted) -> dict | None:
    """Write graph.csv, targets.csv (`target_table`, highest `score` first),
    targets_by_dose.csv (`dose_target_table`), hill.csv, predictions.h5ad, metrics.json (when
    contexts were held out), figures/ and run.json into `out`; return the held-out scores (or
    None)."""
    import jax
    import pandas as pd

    from gim_ppl.datasets import shift_cells
    from gim_ppl.summary import dose_target_table, target_table

    model, sites, data = fitted.model, fitted.result.sites, screen.data
    (out / "figures").mkdir(parents=True, exist_ok=True)
    weights = model.edge_weights(sites)
    src, dst = np.nonzero(model.graph(sites, threshold=args.graph_threshold))
    edges = pd.DataFrame({"source": [data.var_names[i] for i in src],
                          "target": [data.var_names[j] for j in dst],
                          "weight": np.asarray(weights)[src, dst]})
    write_csv(edges, out / "graph.csv")
    min_effect = getattr(args, "min_effect", None)
    targets = target_table(model, sites, data, train=fitted.centred, min_effect=min_effect)
    write_csv(targets.sort_values("score", ascending=False, kind="stable"), out / "targets.csv")
    write_csv(dose_target_table(model, sites, fitted.centred, data.dose_scale,
                                min_effect=min_effect), out / "targets_by_dose.csv")
    write_csv(_hill_csv(model, sites, screen, fitted), out / "hill.csv")

    # Predictions: the held-out contexts, or (nothing held out) every perturbational context.
    test = screen.test
    to_predict = test if test.n_contexts else data.subset(~np.asarray(data.observational))
    # known drugs at held-out doses keep the targets their training cells showed
    pred = shift_cells(model.predict(sites, to_predict.contexts_only(),
                                     key=jax.random.key(args.seed + 1),
                                     n_cells=args.n_pred_cells, observed=fitted.centred),
                       fitted.offset)
    _write_predictions(out / "predictions.h5ad", pred, screen)
    scores = None
    if test.n_contexts:
        scores = _heldout_metrics(pred, test, screen.train, key=jax.random.key(args.seed + 2),
                                  n_cells=args.n_pred_cells,
                                  log1p=expression_unit(screen.info)[0] != "expr")
        if getattr(args, "cell_eval", False):
            scores["cell_eval_package"] = _cell_eval_package(pred, test, screen, scores)
        (out / "metrics.json").write_text(json.dumps(scores, indent=2))
    _write_figures(out / "figures", args, screen, fitted)
    (out / "run.json").write_text(json.dumps(_run_record(args, screen, fitted), indent=2))
    return scores


def write_csv(table, path: Path) -> None:
    """A table as CSV with its numbers rounded to `SIGNIFICANT_DIGITS` significant digits
    (10000 stays 10000.0, not 1e+04)."""
    def rounded(v):
        return float(f"{v:.{SIGNIFICANT_DIGITS}g}") if np.isfinite(v) else v

    table = table.copy()
    for column in table.columns:
        if table[column].dtype.kind == "f":
            table[column] = table[column].map(rounded)
    table.to_csv(path, index=False)


def _hill_csv(model, sites, screen: Screen, fitted: Fitted):
    """hill.csv: `hill_table` with units in the column names, each drug's likely targets
    first."""
    from gim_ppl.summary import hill_table

    table = hill_table(model, sites, screen.data, train=fitted.centred)
    unit = table.pop("dose_unit").iloc[0] if len(table) else screen.data.dose_scale.unit
    expr, _ = expression_unit(screen.info)
    table = table.rename(columns={
        "emax": f"emax_{expr}", "ec50": f"ec50_{unit}",
        "lowest_tested_dose": f"lowest_tested_dose_{unit}",
        "highest_tested_dose": f"highest_tested_dose_{unit}"})
    return table.sort_values(["perturbation", "score"], ascending=[True, False],
                             kind="stable")


def _run_record(args, screen: Screen, fitted: Fitted) -> dict:
    """run.json: the input, settings, what was done to the expression values, genes, split,
    fit settings and outcome, machine."""
    from gim_ppl.summary import DEGENERATE_RULE

    data, result = screen.data, fitted.result
    return {
        "h5ad": str(args.h5ad), "settings": screen.settings, "cell_type": args.cell_type,
        "preprocessing": screen.info.as_dict(),
        "expression_unit": expression_unit(screen.info)[1],
        "genes": list(data.var_names), "n_cells": data.n_cells,
        "n_contexts": data.n_contexts, "features": list(data.feature_names),
        "dose_scale": dataclasses.asdict(data.dose_scale), "holdout": args.holdout,
        "heldout_contexts": list(screen.test.context_names), "steps": args.steps,
        "learning_rate": args.learning_rate, "target_sparsity": args.target_sparsity,
        "seed": args.seed, "coarsening": fitted.model.coarsening,
        "min_effect": getattr(args, "min_effect", None),
        "sources": getattr(args, "sources", None), "forbid": getattr(args, "forbid", None),
        "features_standardised": args.features_csv is not None,
        "final_loss": float(result.losses[-1]) if result.losses.size else None,
        "fit_seconds": result.seconds, "fit_message": result.message,
        "hill_degenerate_rule": DEGENERATE_RULE,
        "control_mean": np.asarray(fitted.offset).tolist(), "machine": machine_description(),
    }


def _write_predictions(path, pred: PerturbationData, screen: Screen) -> None:
    """Predicted cells as AnnData: X `(n_pred_cells, n_genes)`, obs context / drug / dose,
    uns the dose unit and what was done to the expression values."""
    import anndata
    import pandas as pd

    settings, scale, info = screen.settings, screen.data.dose_scale, screen.info
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
    adata.uns["preprocessing"] = {k: v for k, v in info.as_dict().items() if v is not None}
    how = (f"log1p of counts per {info.target_sum:g}, normalised by gim-ppl fit"
           if info.normalized else f"on the scale of {info.source} ({info.detected}, used as "
           "they were)")
    adata.uns["description"] = f"cells predicted by a GIM (gim-ppl fit), {how}"
    adata.write_h5ad(path)


def _heldout_metrics(pred: PerturbationData, test: PerturbationData,
                     train: PerturbationData, *, key, n_cells: int, log1p: bool) -> dict:
    """Per held-out context and over all: the error of the predicted mean cell
    (`mean_error`) and cell-eval's `mae`, `discrimination_score` and `de_overlap` (the
    Virtual Cell Challenge's MAE, PDS and DES), of the GIM, the control prediction
    (`_control`) and the simple baselines (`_<name>`; dose interpolation only when every
    held-out drug was measured). DE genes are called against the training controls and
    ranked by log2 fold change when the cells are log1p values (`log1p`, cell-eval's
    ranking), else by the change of the mean."""
    # [bench] (ott-jax), needed only here
    from gim_ppl.evaluation import metrics
    from gim_ppl.evaluation.baselines import Observational, perturbation_labels
    from gim_ppl.evaluation.benchmark import KNOWN_ONLY, SIMPLE_BASELINES

    control_cells = train.control_cells()
    effect = metrics.log2_fold_change if log1p else metrics.mean_change

    def scores(predicted: PerturbationData) -> dict:
        return {
            "mean_error": metrics.mean_error(predicted, test, per_context=True),
            "mae": metrics.mean_absolute_error(predicted, test, per_context=True),
            "discrimination_score": metrics.discrimination_score(predicted, test,
                                                                 per_context=True),
            "de_overlap": metrics.de_overlap(predicted, test, control_cells, effect=effect,
                                             per_context=True),
        }

    contexts = test.contexts_only()
    known = set(perturbation_labels(train)) >= set(perturbation_labels(test)) - {""}
    simple = [name for name in SIMPLE_BASELINES if known or name not in KNOWN_ONLY]
    by_method = {
        "": scores(pred),
        "_control": scores(Observational().fit(train).predict(contexts, key=key,
                                                              n_cells=n_cells)),
        **{f"_{name}": scores(SIMPLE_BASELINES[name]().fit(train).predict(
            contexts, key=key, n_cells=n_cells)) for name in simple},
    }
    best = min(simple, key=lambda name: float(np.mean(by_method[f"_{name}"]["mean_error"])))
    x, ctx = np.asarray(test.x), np.asarray(test.context)
    n_de = [metrics.de_genes(x[ctx == k], control_cells, effect=effect).size
            for k in range(test.n_contexts)]
    per_context = [{"context": name, "n_observed_cells": int(n), "n_observed_de_genes": d}
                   for name, n, d in zip(test.context_names, test.cells_per_context(), n_de,
                                         strict=True)]
    overall: dict = {}
    for metric in ("mean_error", "mae", "discrimination_score", "de_overlap"):
        for suffix, values in by_method.items():
            overall[f"{metric}{suffix}"] = float(np.mean(values[metric]))
        for row, gim, ctrl in zip(per_context, by_method[""][metric],
                                  by_method["_control"][metric], strict=True):
            row[metric], row[f"{metric}_control"] = float(gim), float(ctrl)
    return {**overall, "best_simple_baseline": best,
            "de_genes_ranked_by": effect.__name__, "per_context": per_context}


def _cell_eval_package(pred: PerturbationData, test: PerturbationData, screen: Screen,
                       scores: dict) -> dict:
    """`--cell-eval`: the cell-eval package's own MAE, discrimination score and DE overlap
    of the same cells (`gim_ppl.evaluation.celleval`), means and per context; or, where it
    cannot score them, `{"skipped": why}`."""
    from gim_ppl.evaluation.celleval import cell_eval_scores

    if scores["de_genes_ranked_by"] != "log2_fold_change":
        return {"skipped": "cell-eval scores log1p expression; these cells are on the file's "
                           "own scale (--normalize no)"}
    try:
        theirs = cell_eval_scores(pred, test, screen.train.control_cells())
    except ValueError as err:  # cell-eval refuses the values (negative predictions, ...)
        return {"skipped": f"cell-eval refused the cells: {err}"}
    metrics = ("mae", "discrimination_score", "de_overlap")
    return {"version": theirs["version"],
            **{m: float(np.mean(theirs[m])) for m in metrics},
            "per_context": [{"context": name, **{m: float(theirs[m][k]) for m in metrics}}
                            for k, name in enumerate(test.context_names)]}


def _write_figures(folder: Path, args, screen: Screen, fitted: Fitted) -> None:
    """target_heatmap.png (`plot_targets`: π and P(I = 1 | training cells) per drug and
    gene, drugs ordered by similarity) and dose_response.png (`plot_dose_response_grid`:
    each likely target's curve in the file's dose unit, observed means ± s.e.)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gim_ppl.datasets import shift_cells
    from gim_ppl.plots.curves import plot_dose_response_grid
    from gim_ppl.plots.targets import plot_targets

    model, sites = fitted.model, fitted.result.sites
    fig, _ = plot_targets(model, sites, screen.data.contexts_only(), train=fitted.centred,
                          order="similarity", variable_label="gene", perturbation_label="drug")
    fig.savefig(folder / "target_heatmap.png", dpi=120)
    plt.close(fig)
    everything = shift_cells(screen.data, -fitted.offset)  # centred like the training cells
    fig, _ = plot_dose_response_grid(model, sites, everything,
                                     heldout=screen.test.context_names, top=args.top_targets,
                                     expression_unit=expression_unit(screen.info)[1])
    fig.savefig(folder / "dose_response.png", dpi=120)
    plt.close(fig)
