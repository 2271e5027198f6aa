"""`gim-ppl fit`: fit a GIM to the user's drug screen (.h5ad) in three steps, load → fit →
write (graph, targets, Hill parameters, predictions, held-out metrics, figures, run record).

Every user error (a bad file, a missing obs key, an output folder that cannot be written)
ends in one line on stderr that names the problem and the fix, with exit code 2 and no
traceback (`--debug` shows it). The output folder is checked before anything is read, the
results are written into a temporary folder beside it, and that folder is moved into place
at the end: `--out` is either complete or absent.

Needs the `[screen]` and `[plots]` extras; the held-out scores (when contexts are held out)
use `gim_ppl.evaluation.metrics`, imported only then."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import secrets
import shutil
import sys
import warnings
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np
import optax

from gim_ppl.cli.arguments import (
    NON_NEGATIVE_FLOAT,
    NON_NEGATIVE_INT,
    POSITIVE_FLOAT,
    POSITIVE_INT,
)
from gim_ppl.cli.machine import machine_description
from gim_ppl.data import PerturbationData
from gim_ppl.datasets import (
    NORMALIZE_CHOICES,
    SCIPLEX3,
    AnnDataInfo,
    center_on_controls,
    drug_features,
    drug_smiles,
    from_anndata_with_info,
    holdout_dose,
    holdout_highest_doses,
    holdout_perturbations,
    shift_cells,
)
from gim_ppl.evaluation.baselines import Observational
from gim_ppl.extras import require
from gim_ppl.inference import FitResult, fit
from gim_ppl.model import GIM
from gim_ppl.summary import DEGENERATE_RULE, hill_table, target_table

_FIT_KEYS = ("perturbation_key", "dose_key", "control", "dose_unit", "cell_type_key",
             "smiles_key")
SIGNIFICANT_DIGITS = 4  # numbers in the CSV tables


class UsageError(Exception):
    """A user error of `gim-ppl fit`: one line that names the problem and the fix."""


# --- arguments ---------------------------------------------------------------------------


def add_parser(sub) -> None:
    """Register `gim-ppl fit` (a drug screen in .h5ad → graph, targets, Hill curves, ...)."""
    p = sub.add_parser(
        "fit", help="fit a GIM to a drug screen (.h5ad) and write its graph, targets, Hill "
                    "parameters, predictions, metrics and figures",
        description="Fit a generative intervention model to a single-cell drug screen stored "
                    "as AnnData (.h5ad) and write the learned gene graph, each drug's target "
                    "genes and Hill dose-response curves, predicted cells of the held-out "
                    "doses with their errors, figures and a run record into --out.")
    data = p.add_argument_group("the screen")
    data.add_argument("--h5ad", required=True, metavar="FILE",
                      help="AnnData file, cells × genes (raw counts or log-normalised)")
    data.add_argument("--preset", choices=("sciplex3",),
                      help="take the obs columns of the sci-Plex3 schema (product_name, dose "
                           "in nM, cell_type, SMILES, vehicle); explicit flags override it")
    data.add_argument("--perturbation-key", metavar="COLUMN",
                      help="obs column with the drug of each cell")
    data.add_argument("--dose-key", metavar="COLUMN",
                      help="obs column with the numeric dose of each cell")
    data.add_argument("--control", metavar="COLUMN_OR_NAME",
                      help="boolean obs column marking control cells, or the drug name that "
                           "control cells carry")
    data.add_argument("--cell-type", metavar="NAME",
                      help="fit only the cells of this cell type (default: all cells, "
                           "pooled, with a note when there are several)")
    data.add_argument("--cell-type-key", metavar="COLUMN",
                      help="obs column of the cell type (default: cell_type)")
    data.add_argument("--smiles-key", metavar="COLUMN",
                      help="obs column with the SMILES of each drug; drug features are "
                           "computed from it with RDKit")
    data.add_argument("--features-csv", metavar="FILE",
                      help="CSV of numeric drug features, first column the drug name "
                           "(instead of --smiles-key)")
    data.add_argument("--feature-kind", choices=("morgan", "rdkit2d"), default="morgan",
                      help="drug features from SMILES: Morgan fingerprints or RDKit 2D "
                           "descriptors (default: %(default)s)")
    data.add_argument("--n-components", type=POSITIVE_INT, metavar="N",
                      help="PCA components of the drug features (default: min(16, "
                           "drugs − 1))")

    genes = p.add_argument_group("genes and expression values")
    genes.add_argument("--genes", metavar="G1,G2,...",
                       help="comma-separated genes to model (default: the --n-top-genes "
                            "most variable genes)")
    genes.add_argument("--n-top-genes", type=POSITIVE_INT, default=50, metavar="N",
                       help="number of most variable genes modelled when --genes is not given; "
                            "a file with fewer genes uses all of them (default: %(default)s)")
    genes.add_argument("--layer", metavar="NAME",
                       help="read expression from adata.layers[NAME] (default: adata.X)")
    genes.add_argument("--normalize", choices=NORMALIZE_CHOICES, default="auto",
                       help="scale each cell to 10⁴ counts and apply log1p: yes, no, or auto: "
                            "yes when the values of the genes used are counts (non-negative "
                            "integers, or non-negative non-integers above 15), no when they "
                            "look log-normalised or scaled; the note says what was found "
                            "(default: %(default)s)")

    doses = p.add_argument_group("doses")
    doses.add_argument("--dose-unit", metavar="UNIT",
                       help="unit of the dose column; EC50s and figures use it (default: nM)")
    doses.add_argument("--dose-reference", type=POSITIVE_FLOAT, metavar="DOSE",
                       help="dose (in --dose-unit) that becomes 1 in the model (default: 1 µM "
                            "for molar units, else 1)")
    doses.add_argument("--log-dose", action="store_true",
                       help="model the dose as log1p(dose / reference) instead of dose / "
                            "reference")

    split = p.add_argument_group("held-out contexts")
    split.add_argument("--holdout", choices=("highest-dose", "none"), default="highest-dose",
                       help="hold out every drug's highest dose (predicted and scored), or "
                            "nothing (default: %(default)s)")
    split.add_argument("--holdout-drugs", metavar="D1,D2,...",
                       help="comma-separated drugs held out entirely (predicted from their "
                            "features)")
    split.add_argument("--holdout-dose", metavar="DRUG@DOSE,...",
                       help="comma-separated contexts held out, each a drug and a dose in "
                            "--dose-unit, e.g. JQ1@10000 (with --holdout none: only these)")

    fitting = p.add_argument_group("the fit")
    fitting.add_argument("--steps", type=POSITIVE_INT, default=6000, metavar="N",
                         help="Adam steps (default: %(default)s)")
    fitting.add_argument("--learning-rate", type=POSITIVE_FLOAT, default=1e-2, metavar="LR",
                         help="Adam learning rate (default: %(default)s)")
    fitting.add_argument("--target-sparsity", type=NON_NEGATIVE_FLOAT, default=1.0,
                         metavar="BETA",
                         help="penalty per expected target; higher gives fewer targets "
                              "(default: %(default)s)")
    fitting.add_argument("--seed", type=NON_NEGATIVE_INT, default=0, metavar="N",
                         help="random seed of the fit and the predicted cells "
                              "(default: %(default)s)")

    out = p.add_argument_group("output")
    out.add_argument("--out", required=True, metavar="FOLDER",
                     help="output folder, created; it must not exist or be empty unless "
                          "--overwrite is given")
    out.add_argument("--overwrite", action="store_true",
                     help="replace an existing --out folder and everything in it (only once "
                          "the new results are complete)")
    out.add_argument("--graph-threshold", type=NON_NEGATIVE_FLOAT, default=0.3,
                     metavar="W",
                     help="edges with |weight| above this go into graph.csv "
                          "(default: %(default)s)")
    out.add_argument("--n-pred-cells", type=POSITIVE_INT, default=200, metavar="N",
                     help="cells predicted per held-out context (default: %(default)s)")
    out.add_argument("--top-targets", type=POSITIVE_INT, default=3, metavar="N",
                     help="at most this many likely targets per drug in dose_response.png "
                          "(default: %(default)s)")
    out.add_argument("--no-progress", action="store_true", help="no progress bar")
    out.add_argument("--debug", action="store_true",
                     help="show the Python traceback of an error instead of one line")


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
        raise UsageError(f"gim-ppl fit needs {', '.join(missing)} (or --preset sciplex3)")
    return out


# Python argument names in the library's messages → the flags of this command.
_FLAGS = {name: "--" + name.replace("_", "-") for name in (
    "perturbation_key", "dose_key", "cell_type_key", "cell_type", "smiles_key", "layer",
    "n_top_genes", "genes", "dose_unit", "n_components", "normalize", "control")}


def cli_words(message: str) -> str:
    """A library message in this command's words: `dose_key='x'` → `--dose-key 'x'`,
    `normalize=True` → `--normalize yes`, a learning rate "in `optimizer`" → --learning-rate."""
    def flag(match):
        name, value = match.group(1), match.group(2)
        if name == "normalize" and value in ("True", "False"):
            value = "yes" if value == "True" else "no"
        return f"{_FLAGS[name]} {value}" if value else _FLAGS[name]

    names = "|".join(sorted(_FLAGS, key=len, reverse=True))
    message = re.sub(rf"(?<![\w.\[])({names})=(\S*?)(?=[\s;,)]|$)", flag, message)
    return message.replace("a smaller learning rate in `optimizer`", "a smaller --learning-rate")


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


# --- the command -------------------------------------------------------------------------


class _Screen(NamedTuple):
    """What `gim-ppl fit` loaded: all contexts (carrying their dose scale), the train/test
    split, what was done to the expression values, and the obs keys used."""

    data: PerturbationData
    train: PerturbationData
    test: PerturbationData
    info: AnnDataInfo
    settings: dict


class _Fitted(NamedTuple):
    """The fitted model, its `FitResult`, the centred training cells and the control mean
    that was subtracted (`center_on_controls`)."""

    model: GIM
    result: FitResult
    centred: PerturbationData
    offset: np.ndarray


_USER_ERRORS = (UsageError, KeyError, ValueError, TypeError, OSError, ImportError)


def run(args) -> int:
    """`gim-ppl fit`: check --out, load and split the screen, fit, write every artefact into
    a temporary folder and move it to `--out`. Returns the exit code (2: a user error)."""
    out = None
    try:
        settings = _fit_settings(args)
        _drug_doses(args.holdout_dose)  # its format, before anything runs
        _require_extras(args)
        out = OutputFolder.prepare(args.out, args.overwrite)
        screen = _load_screen(args, settings)
    except _USER_ERRORS as err:
        if out is not None:
            out.discard()
        return _fail(err, args)
    try:
        print(f"data: {screen.data}")
        print(f"train: {screen.train.n_contexts} contexts, {screen.train.n_cells} cells; "
              f"held out: {screen.test.n_contexts} contexts, {screen.test.n_cells} cells")
        print(f"machine: {machine_description()}")
        fitted = _fit_screen(args, screen)
        scores = _write_outputs(out.tmp, args, screen, fitted)
        out.commit()
    except OSError as err:
        return _fail(UsageError(f"could not write --out {args.out}: {err}"), args)
    finally:
        out.discard()
    if scores is not None:
        print(f"held-out mean error {scores['mean_error']:.3f} (control prediction "
              f"{scores['mean_error_control']:.3f}) over {len(scores['per_context'])} contexts")
    print(f"wrote graph.csv, targets.csv, hill.csv, predictions.h5ad"
          f"{', metrics.json' if scores else ''}, run.json and figures/ to {args.out}")
    return 0


def _require_extras(args) -> None:
    """Import what the command will need, so a missing extra stops it before the fit:
    anndata, pandas, matplotlib, and ott-jax when contexts are held out (the scores)."""
    for module in ("anndata", "pandas", "scanpy", "matplotlib"):
        require(module)
    if args.holdout != "none" or args.holdout_drugs or args.holdout_dose:
        try:
            require("ott")
        except ImportError as err:
            raise UsageError(f"{err} (it scores the held-out contexts; with --holdout none "
                             "nothing is held out or scored)") from err


def _fail(err: Exception, args) -> int:
    """Print a user error as one line (or raise it with --debug); exit code 2."""
    if getattr(args, "debug", False):
        raise err
    message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    line = " ".join(cli_words(str(message)).split())
    print(f"gim-ppl fit: error: {line}", file=sys.stderr)
    return 2


def _note(message: str) -> None:
    print(f"note: {' '.join(cli_words(message).split())}", file=sys.stderr)


def _read_h5ad(path_text: str):
    """The AnnData in `--h5ad`, or a `UsageError` saying what the file is instead."""
    anndata = require("anndata")
    h5py = require("h5py")
    path = Path(path_text)
    if not path.exists():
        raise UsageError(f"--h5ad {path_text}: no such file")
    if path.is_dir():
        raise UsageError(f"--h5ad {path_text} is a folder; give an .h5ad file")
    fix = "give an AnnData file written by anndata or scanpy (adata.write_h5ad)"
    if path.stat().st_size == 0:
        raise UsageError(f"--h5ad {path_text} is empty (0 bytes); {fix}")
    if not h5py.is_hdf5(path):
        with open(path, "rb") as fh:
            head = fh.read(24).decode("utf-8", "replace").split("\n")[0]
        raise UsageError(f"--h5ad {path_text} is not an .h5ad (HDF5) file: it starts with "
                         f"{head!r}; {fix}")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            adata = anndata.read_h5ad(path)
    except Exception as err:  # anndata raises many kinds on a foreign HDF5 file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UsageError(f"--h5ad {path_text} is HDF5 but not readable as AnnData "
                         f"({first}); {fix}") from err
    for w in caught:
        _note(f"reading --h5ad: {w.message}")
    if adata.n_obs == 0:
        raise UsageError(f"--h5ad {path_text} holds no cells (0 rows); nothing to fit")
    if adata.n_vars == 0:
        raise UsageError(f"--h5ad {path_text} holds no genes (0 columns); nothing to fit")
    return adata


def _read_features_csv(path_text: str):
    pd = require("pandas")
    path = Path(path_text)
    if not path.is_file():
        raise UsageError(f"--features-csv {path_text}: no such file")
    try:
        return pd.read_csv(path, index_col=0)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UsageError(f"--features-csv {path_text} is not a readable CSV ({first}); give "
                         "a table with the drug name in the first column") from err


def _load_screen(args, settings: dict) -> _Screen:
    """Read the .h5ad, build drug features and `PerturbationData`, and split it."""
    adata = _read_h5ad(args.h5ad)
    if args.features_csv is not None:
        features = _read_features_csv(args.features_csv)
    elif settings["smiles_key"] is not None:
        smiles = drug_smiles(adata, perturbation_key=settings["perturbation_key"],
                             smiles_key=settings["smiles_key"], control=settings["control"])
        features = drug_features(smiles, kind=args.feature_kind, n_components=args.n_components)
    else:
        _note("no --smiles-key or --features-csv: one-hot drug features (new drugs cannot "
              "be predicted)")
        features = "onehot"
    genes = None if args.genes is None else [g.strip() for g in args.genes.split(",")
                                             if g.strip()]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data, info = from_anndata_with_info(
            adata, perturbation_key=settings["perturbation_key"], dose_key=settings["dose_key"],
            control=settings["control"], features=features, genes=genes, layer=args.layer,
            cell_type=args.cell_type, cell_type_key=settings["cell_type_key"],
            n_top_genes=args.n_top_genes, dose_unit=settings["dose_unit"],
            log_dose=args.log_dose, dose_reference=args.dose_reference,
            normalize=args.normalize,
        )
    for note in info.notes(cli=True):
        _note(note)
    for w in caught:  # anything else the libraries said, without their source paths
        _note(str(w.message))
    held: list[str] = []  # context names; each held-out part is chosen on the full data
    if args.holdout_drugs:
        held += holdout_perturbations(data, _listed_names(args.holdout_drugs))[1].context_names
    if args.holdout == "highest-dose":
        rest = data.subset(~np.isin(data.context_names, held))
        held += holdout_highest_doses(rest)[1].context_names
    for drug, dose in _drug_doses(args.holdout_dose):
        held += holdout_dose(data, drug, dose)[1].context_names  # dose in the file's unit
    held_out = np.isin(data.context_names, held)
    train, test = data.subset(~held_out), data.subset(held_out)
    return _Screen(data, train, test, info, settings)


def _listed_names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _drug_doses(text: str | None) -> list[tuple[str, float]]:
    """`--holdout-dose JQ1@10000,Imatinib@100` → `[("JQ1", 10000.0), ("Imatinib", 100.0)]`."""
    pairs = []
    for item in _listed_names(text or ""):
        drug, _, dose = item.rpartition("@")
        try:
            pairs.append((drug.strip(), float(dose)))
        except ValueError:
            raise UsageError(f"--holdout-dose expects DRUG@DOSE items such as JQ1@10000, got "
                             f"{item!r}") from None
        if not drug.strip():
            raise UsageError(f"--holdout-dose expects DRUG@DOSE items such as JQ1@10000, got "
                             f"{item!r}")
    return pairs


def _fit_screen(args, screen: _Screen) -> _Fitted:
    """Fit a GIM to the training cells minus the control mean (an exact reparametrisation of
    the linear SCM's bias; Adam converges far better than on raw log expression ~ 5)."""
    centred, offset = center_on_controls(screen.train)
    model = GIM(screen.data.n_vars, screen.data.n_features,
                target_sparsity=args.target_sparsity)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fit(model, centred, steps=args.steps, key=jax.random.key(args.seed),
                     optimizer=optax.adam(args.learning_rate), progress=not args.no_progress)
    said = {str(w.message) for w in caught}
    for message in sorted(said | ({result.message} if result.message else set())):
        print(f"warning: {' '.join(cli_words(message).split())}", file=sys.stderr)
    return _Fitted(model, result, centred, offset)


def expression_unit(info: AnnDataInfo) -> tuple[str, str]:
    """`(column suffix, axis label)` of the fitted cells' unit: log1p of counts per 10⁴ when
    the command normalised them, else the file's own scale."""
    if info.normalized:
        return "log1p_expr", "log1p expr."
    if info.detected == "log-normalised values":
        return "log_expr", "log expr., as in the file"
    return "expr", "expr., as in the file"


def _write_outputs(out: Path, args, screen: _Screen, fitted: _Fitted) -> dict | None:
    """Write graph.csv, targets.csv, hill.csv, predictions.h5ad, metrics.json (when contexts
    were held out), figures/ and run.json into `out`; return the held-out scores (or None)."""
    import pandas as pd

    model, sites, data = fitted.model, fitted.result.sites, screen.data
    (out / "figures").mkdir(parents=True, exist_ok=True)
    weights = model.edge_weights(sites)
    src, dst = np.nonzero(model.graph(sites, threshold=args.graph_threshold))
    edges = pd.DataFrame({"source": [data.var_names[i] for i in src],
                          "target": [data.var_names[j] for j in dst],
                          "weight": np.asarray(weights)[src, dst]})
    _write_csv(edges, out / "graph.csv")
    _write_csv(target_table(model, sites, data, train=fitted.centred), out / "targets.csv")
    _write_csv(_hill_csv(model, sites, screen, fitted), out / "hill.csv")

    # Predictions: the held-out contexts, or (nothing held out) every perturbational context.
    test = screen.test
    to_predict = test if test.n_contexts else data.subset(~np.asarray(data.observational))
    pred = shift_cells(model.predict(sites, to_predict.contexts_only(),
                                     key=jax.random.key(args.seed + 1),
                                     n_cells=args.n_pred_cells), fitted.offset)
    _write_predictions(out / "predictions.h5ad", pred, screen)
    scores = None
    if test.n_contexts:
        scores = _heldout_metrics(pred, test, screen.train, key=jax.random.key(args.seed + 2),
                                  n_cells=args.n_pred_cells)
        (out / "metrics.json").write_text(json.dumps(scores, indent=2))
    _write_figures(out / "figures", args, screen, fitted)
    (out / "run.json").write_text(json.dumps(_run_record(args, screen, fitted), indent=2))
    return scores


def _write_csv(table, path: Path) -> None:
    """A table as CSV with its numbers rounded to `SIGNIFICANT_DIGITS` significant digits
    (10000 stays 10000.0, not 1e+04)."""
    def rounded(v):
        return float(f"{v:.{SIGNIFICANT_DIGITS}g}") if np.isfinite(v) else v

    table = table.copy()
    for column in table.columns:
        if table[column].dtype.kind == "f":
            table[column] = table[column].map(rounded)
    table.to_csv(path, index=False)


def _hill_csv(model, sites, screen: _Screen, fitted: _Fitted):
    """hill.csv: `hill_table` with units in the column names, each drug's likely targets
    first."""
    table = hill_table(model, sites, screen.data, train=fitted.centred)
    unit = table.pop("dose_unit").iloc[0] if len(table) else screen.data.dose_scale.unit
    expr, _ = expression_unit(screen.info)
    table = table.rename(columns={
        "emax": f"emax_{expr}", "ec50": f"ec50_{unit}",
        "lowest_tested_dose": f"lowest_tested_dose_{unit}",
        "highest_tested_dose": f"highest_tested_dose_{unit}"})
    return table.sort_values(["perturbation", "target_probability"], ascending=[True, False],
                             kind="stable")


def _run_record(args, screen: _Screen, fitted: _Fitted) -> dict:
    """run.json: the input, settings, what was done to the expression values, genes, split,
    fit settings and outcome, machine."""
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
        "seed": args.seed,
        "final_loss": float(result.losses[-1]) if result.losses.size else None,
        "fit_seconds": result.seconds, "fit_message": result.message,
        "hill_degenerate_rule": DEGENERATE_RULE,
        "control_mean": np.asarray(fitted.offset).tolist(), "machine": machine_description(),
    }


def _write_predictions(path, pred: PerturbationData, screen: _Screen) -> None:
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
    """target_heatmap.png (`plot_targets`: π and P(I = 1 | training cells) per drug and
    gene, drugs ordered by similarity) and dose_response.png (`plot_dose_response_grid`:
    each likely target's curve in the file's dose unit, observed means ± s.e.)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gim_ppl.plots.fit import plot_dose_response_grid
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
