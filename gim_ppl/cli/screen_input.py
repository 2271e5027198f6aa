"""The drug screen that `gim-ppl fit` and `gim-ppl design` read, written once for both.

`add_screen_arguments` (the .h5ad, its obs keys, drug features, genes, expression values,
doses), `add_fit_arguments` (Adam steps, learning rate, target sparsity, seed) and
`add_run_flags` (`--no-progress`, `--debug`) register the flags the two commands share;
`screen_settings` turns the obs-key flags and `--preset` into settings; `read_h5ad`,
`read_features_csv`, `screen_features` and `screen_data` load the screen into a
`PerturbationData` (with its `DoseScale`) and `AnnDataInfo`. Every problem with the input is
a `UsageError` or a library `ValueError`/`KeyError` that names the argument
(`gim_ppl.cli.user_errors`)."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from pathlib import Path

from gim_ppl.cli.arguments import (
    NON_NEGATIVE_FLOAT,
    NON_NEGATIVE_INT,
    POSITIVE_FLOAT,
    POSITIVE_INT,
)
from gim_ppl.cli.user_errors import UsageError, print_note
from gim_ppl.datasets import NORMALIZE_CHOICES, SCIPLEX3, drug_features, drug_smiles
from gim_ppl.datasets.doses import MOLAR_SPELLINGS, molar_exponent
from gim_ppl.extras import require

# The settings that the obs-key flags (or --preset) give, in `screen_settings`.
SCREEN_KEYS = ("perturbation_key", "dose_key", "control", "dose_unit", "cell_type_key",
               "smiles_key")


# --- arguments ---------------------------------------------------------------------------


def add_screen_arguments(parser) -> None:
    """The flags that say what to read: groups "the screen" (--h5ad, --preset, obs keys,
    drug features), "genes and expression values" and "doses"."""
    data = parser.add_argument_group("the screen")
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

    genes = parser.add_argument_group("genes and expression values")
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

    doses = parser.add_argument_group("doses")
    doses.add_argument("--dose-unit", metavar="UNIT",
                       help="unit of the dose column; EC50s and figures use it (default: nM). "
                            "Molar units: " + ", ".join(MOLAR_SPELLINGS) + "; any other unit "
                            "keeps the doses as given unless --dose-reference is set")
    doses.add_argument("--dose-reference", type=POSITIVE_FLOAT, metavar="DOSE",
                       help="dose (in --dose-unit) that becomes 1 in the model (default: 1 µM "
                            "for molar units, else 1)")
    doses.add_argument("--log-dose", action="store_true",
                       help="model the dose as log1p(dose / reference) instead of dose / "
                            "reference")


def add_fit_arguments(parser, *, seed_use: str) -> None:
    """The group "the fit": --steps, --learning-rate, --target-sparsity and --seed (whose
    help says what else it seeds: `seed_use`)."""
    fitting = parser.add_argument_group("the fit")
    fitting.add_argument("--steps", type=POSITIVE_INT, default=6000, metavar="N",
                         help="Adam steps (default: %(default)s)")
    fitting.add_argument("--learning-rate", type=POSITIVE_FLOAT, default=1e-2, metavar="LR",
                         help="Adam learning rate (default: %(default)s)")
    fitting.add_argument("--target-sparsity", type=NON_NEGATIVE_FLOAT, default=1.0,
                         metavar="BETA",
                         help="penalty per expected target; higher gives fewer targets "
                              "(default: %(default)s)")
    fitting.add_argument("--seed", type=NON_NEGATIVE_INT, default=0, metavar="N",
                         help=f"random seed of the fit and {seed_use} "
                              "(default: %(default)s)")
    fitting.add_argument("--sources", metavar="G1,G2,...",
                         help="genes that no measured gene causes (inputs): no edge into them")
    fitting.add_argument("--forbid", metavar="A>B,C>D",
                         help="known non-edges: gene A does not act directly on gene B")
    fitting.add_argument("--coarsening", type=POSITIVE_FLOAT, metavar="ALPHA",
                         help="coarsened target evidence: a context's cells count as at most "
                              "about ALPHA cells when they decide its targets, so tiny shifts "
                              "of real cells are not certain targets (docs/real_cells.md; "
                              "default: off)")


def add_run_flags(group) -> None:
    """--no-progress and --debug, added to `group` (a parser or an argument group)."""
    group.add_argument("--no-progress", action="store_true", help="no progress bar")
    group.add_argument("--debug", action="store_true",
                       help="show the Python traceback of an error instead of one line")


def screen_settings(args) -> dict:
    """The obs keys and dose unit: explicit flags, else the preset, else an error."""
    preset = dataclasses.asdict(SCIPLEX3) if args.preset == "sciplex3" else {}
    out = {k: getattr(args, k) if getattr(args, k) is not None else preset.get(k)
           for k in SCREEN_KEYS}
    if args.features_csv is not None and args.smiles_key is None:
        out["smiles_key"] = None  # features come from the CSV, not the preset's SMILES
    out["dose_unit"] = out["dose_unit"] or "nM"
    if molar_exponent(out["dose_unit"]) is None and getattr(args, "dose_reference",
                                                            None) is None:
        print_note(f"--dose-unit {out['dose_unit']!r} is not a molar unit I know ("
                   f"{', '.join(MOLAR_SPELLINGS)}): doses are used as given (1 "
                   f"{out['dose_unit']} becomes model dose 1); set --dose-reference to "
                   "choose the dose that does")
    out["cell_type_key"] = out["cell_type_key"] or "cell_type"
    missing = [f"--{k.replace('_', '-')}" for k in ("perturbation_key", "dose_key", "control")
               if out[k] is None]
    if missing:
        command = getattr(args, "command", None) or "fit"
        raise UsageError(f"gim-ppl {command} needs {', '.join(missing)} (or --preset sciplex3)")
    return out


# --- loading -----------------------------------------------------------------------------


def read_h5ad(path_text: str):
    """The AnnData in `--h5ad`, or a `UsageError` saying what the file is instead."""
    path = Path(path_text)
    if not path.exists():
        raise UsageError(f"--h5ad {path_text}: no such file")
    if path.is_dir():
        raise UsageError(f"--h5ad {path_text} is a folder; give an .h5ad file")
    fix = "give an AnnData file written by anndata or scanpy (adata.write_h5ad)"
    if path.stat().st_size == 0:
        raise UsageError(f"--h5ad {path_text} is empty (0 bytes); {fix}")
    # imported once the file is there: a wrong path is reported before anndata loads
    h5py = require("h5py")
    anndata = require("anndata")
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


def read_features_csv(path_text: str):
    """The drug features in `--features-csv` (drug name in the first column), or a
    `UsageError` saying why the file cannot be read."""
    pd = require("pandas")
    path = Path(path_text)
    if not path.is_file():
        raise UsageError(f"--features-csv {path_text}: no such file")
    try:
        table = pd.read_csv(path, index_col=0)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UsageError(f"--features-csv {path_text} is not a readable CSV ({first}); give "
                         "a table with the drug name in the first column") from err
    return standardised_features(table, path_text)


def standardised_features(table, path_text: str):
    """Numeric columns z-scored over the table's drugs (as the SMILES path whitens by PCA):
    raw descriptors (a molecular weight of ~190) would leave the map's unit-scale priors
    with flat Hill curves. Constant columns are centred only. A table with a non-numeric
    column is returned as read (the loader names the column)."""
    numeric = table.select_dtypes("number")
    if table.shape[1] == 0 or numeric.shape[1] != table.shape[1]:
        return table
    mean, sd = numeric.mean(0), numeric.std(0, ddof=0)
    sd = sd.where(sd > 0, 1.0)
    out = (numeric - mean) / sd
    # the same map for feature values given elsewhere (gim-ppl design's candidate columns)
    out.attrs["standardised"] = {"mean": mean.to_dict(), "sd": sd.to_dict()}
    print_note(f"--features-csv {path_text}: {table.shape[1]} columns standardised over its "
               f"{table.shape[0]} drugs (mean 0, sd 1), the scale the model's priors expect")
    return out


def screen_features(args, settings: dict, adata, new_smiles: Mapping[str, str] | None = None):
    """The drug features `from_anndata` reads: the `--features-csv` table, RDKit features of
    the screen's SMILES, or "onehot" (with a note) when neither is given.

    `new_smiles` `{drug: SMILES}` adds drugs that are not in the screen (a drug of the screen
    keeps the screen's SMILES). They are featurised together with the screen's drugs: the
    PCA (and, for rdkit2d, the standardisation) of `drug_features` is fitted on all of them,
    so screen drugs and new drugs are rows of one feature space; the default number of
    components counts them all."""
    if args.features_csv is not None:
        return read_features_csv(args.features_csv)
    if settings["smiles_key"] is not None:
        smiles = drug_smiles(adata, perturbation_key=settings["perturbation_key"],
                             smiles_key=settings["smiles_key"], control=settings["control"])
        smiles = {**{str(d): s for d, s in (new_smiles or {}).items()}, **smiles}
        return drug_features(smiles, kind=args.feature_kind, n_components=args.n_components)
    print_note("no --smiles-key or --features-csv: one-hot drug features (new drugs "
               "cannot be predicted)")
    return "onehot"


def screen_data(args, settings: dict, adata, features):
    """`(data, info)`: the screen as `PerturbationData` (every context, carrying its
    `DoseScale`) and what was done to its expression values; notes go to stderr."""
    from gim_ppl.datasets import from_anndata_with_info  # jax: only once the data is read

    genes = None if args.genes is None else [g.strip() for g in args.genes.split(",")
                                             if g.strip()]
    given_key = getattr(args, "cell_type_key", None)
    if given_key is not None and given_key not in adata.obs.columns:
        # without --cell-type a missing column once pooled every cell line silently
        raise UsageError(f"--cell-type-key {given_key!r} is not an obs column; obs has "
                         f"{list(adata.obs.columns)[:10]}")
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
    return data, info


__all__ = ["SCREEN_KEYS", "add_fit_arguments", "add_run_flags", "add_screen_arguments",
           "read_features_csv", "read_h5ad", "screen_data", "screen_features",
           "screen_settings"]
