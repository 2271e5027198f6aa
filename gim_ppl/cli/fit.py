"""`gim-ppl fit`: fit a GIM to the user's drug screen (.h5ad) in three steps, load → fit →
write (graph, targets, Hill parameters, predictions, held-out metrics, figures, run record).

This module holds the command's parser and `run`, the orchestration: check the settings and
`--out`, load and split the screen, fit, write. Every user error (a bad file, a missing obs
key, an output folder that cannot be written) ends in one line on stderr that names the
problem and the fix, with exit code 2 and no traceback (`--debug` shows it): see
`gim_ppl.cli.errors`. The output folder is checked before anything is read, the results are
written into a temporary folder beside it, and that folder is moved into place at the end:
`--out` is either complete or absent (`gim_ppl.cli.outputs`, which also writes the files).

Needs the `[screen]` and `[plots]` extras; the held-out scores (when contexts are held out)
use `gim_ppl.evaluation.metrics`, imported only then."""

from __future__ import annotations

import dataclasses
import sys
import warnings
from pathlib import Path

import jax
import numpy as np
import optax

from gim_ppl.cli.arguments import (
    NON_NEGATIVE_FLOAT,
    NON_NEGATIVE_INT,
    POSITIVE_FLOAT,
    POSITIVE_INT,
)
from gim_ppl.cli.errors import USER_ERRORS, UsageError, cli_words, fail, print_note
from gim_ppl.cli.machine import machine_description
from gim_ppl.cli.outputs import Fitted, OutputFolder, Screen, write_outputs
from gim_ppl.datasets import (
    NORMALIZE_CHOICES,
    SCIPLEX3,
    center_on_controls,
    drug_features,
    drug_smiles,
    from_anndata_with_info,
    holdout_dose,
    holdout_highest_doses,
    holdout_perturbations,
)
from gim_ppl.extras import require
from gim_ppl.inference import fit
from gim_ppl.model import GIM

_FIT_KEYS = ("perturbation_key", "dose_key", "control", "dose_unit", "cell_type_key",
             "smiles_key")


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


# --- the command -------------------------------------------------------------------------


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
    except USER_ERRORS as err:
        if out is not None:
            out.discard()
        return fail(err, args)
    try:
        print(f"data: {screen.data}")
        print(f"train: {screen.train.n_contexts} contexts, {screen.train.n_cells} cells; "
              f"held out: {screen.test.n_contexts} contexts, {screen.test.n_cells} cells")
        print(f"machine: {machine_description()}")
        fitted = _fit_screen(args, screen)
        scores = write_outputs(out.tmp, args, screen, fitted)
        out.commit()
    except OSError as err:
        return fail(UsageError(f"could not write --out {args.out}: {err}"), args)
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
        print_note(f"reading --h5ad: {w.message}")
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


def _load_screen(args, settings: dict) -> Screen:
    """Read the .h5ad, build drug features and `PerturbationData`, and split it."""
    adata = _read_h5ad(args.h5ad)
    if args.features_csv is not None:
        features = _read_features_csv(args.features_csv)
    elif settings["smiles_key"] is not None:
        smiles = drug_smiles(adata, perturbation_key=settings["perturbation_key"],
                             smiles_key=settings["smiles_key"], control=settings["control"])
        features = drug_features(smiles, kind=args.feature_kind, n_components=args.n_components)
    else:
        print_note("no --smiles-key or --features-csv: one-hot drug features (new drugs "
                   "cannot be predicted)")
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
        print_note(note)
    for w in caught:  # anything else the libraries said, without their source paths
        print_note(str(w.message))
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
    return Screen(data, train, test, info, settings)


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


def _fit_screen(args, screen: Screen) -> Fitted:
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
    return Fitted(model, result, centred, offset)
