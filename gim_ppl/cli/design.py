"""`gim-ppl design`: which experiment to run next on a drug screen (.h5ad). Fit a GIM with a
posterior (AutoNormal) to every context of the screen, then rank candidate experiments, each
a drug at a dose, by their expected information gain (`gim_ppl.design.rank_experiments`);
print the best and write the ranking to `--out` (a CSV file).

The screen is read as `gim-ppl fit` reads it (the flags and loading of `gim_ppl.cli.screen_input`,
the fit of `gim_ppl.cli.fit_command.fit_screen`: controls-centred cells). `--candidates` is a CSV
with one row per candidate experiment: `drug`, `dose` (in `--dose-unit`), and the drug's
features in one of three ways:

- a drug of the screen (a new dose of a known drug): the screen's features, nothing more;
- a `smiles` column (new drugs, with `--smiles-key`): featurised with RDKit together with
  the screen's drugs, so that both are rows of one feature space (`drug_features` fits its
  PCA, or for rdkit2d its standardisation, on the screen's drugs and the candidates' together;
  the screen's features therefore differ slightly from those of `gim-ppl fit` run alone);
- numeric feature columns (every column but drug, dose and smiles), named as the model's
  features, e.g. the columns of `--features-csv`.

Every problem with the candidates is one line naming `--candidates`, with exit code 2
(`gim_ppl.cli.user_errors`); the file is checked before the screen is read, the drugs and
features before the fit. `--out` is written only when the ranking is complete."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from gim_ppl.cli.arguments import POSITIVE_INT, number_type
from gim_ppl.cli.fit_command import fit_screen, knowledge_mask
from gim_ppl.cli.machine import machine_description
from gim_ppl.cli.outputs import write_csv
from gim_ppl.cli.screen_input import (
    add_fit_arguments,
    add_run_flags,
    add_screen_arguments,
    read_h5ad,
    screen_data,
    screen_features,
    screen_settings,
)
from gim_ppl.cli.user_errors import USER_ERRORS, UsageError, fail
from gim_ppl.design.quantities import QUANTITIES
from gim_ppl.extras import require, require_installed

if TYPE_CHECKING:  # pragma: no cover
    from gim_ppl.data import PerturbationData

AT_LEAST_TWO = number_type(int, 2, True, "a whole number ≥ 2")
# Columns of --candidates that are not drug features.
NAMED_COLUMNS = ("drug", "dose", "smiles")


# --- arguments ---------------------------------------------------------------------------


def add_parser(sub) -> None:
    """Register `gim-ppl design` (a screen and candidate experiments → their ranking)."""
    p = sub.add_parser(
        "design", help="rank candidate experiments (drugs at doses) on a drug screen (.h5ad) "
                       "by their expected information gain",
        description="Fit a generative intervention model with a posterior to a single-cell "
                    "drug screen stored as AnnData (.h5ad), then rank candidate experiments "
                    "(a drug at a dose, measured in --n-cells cells) by the expected "
                    "information gain about the drug's targets, the gene graph, a readout or "
                    "all parameters; print the best and write the ranking to --out.")
    add_screen_arguments(p)
    design = p.add_argument_group("the candidates")
    design.add_argument("--candidates", required=True, metavar="FILE.csv",
                        help="CSV, one row per candidate: columns drug, dose (in --dose-unit) "
                             "and, for a drug not in the screen, smiles or numeric feature "
                             "columns named as the model's features")
    design.add_argument("--about", choices=QUANTITIES, default="targets",
                        help="what the experiment should tell: the candidate's target genes, "
                             "the gene graph, a readout's mean response, or all parameters "
                             "(default: %(default)s)")
    design.add_argument("--readout", metavar="GENE",
                        help="with --about readout: the gene whose response counts (default: "
                             "every gene)")
    design.add_argument("--n-cells", type=POSITIVE_INT, default=100, metavar="N",
                        help="cells each experiment would measure (default: %(default)s)")
    design.add_argument("--n-draws", type=AT_LEAST_TWO, default=200, metavar="N",
                        help="posterior draws behind each information gain (default: "
                             "%(default)s)")
    add_fit_arguments(p, seed_use="the simulated experiments")
    out = p.add_argument_group("output")
    out.add_argument("--out", required=True, metavar="FILE.csv",
                     help="the ranking as CSV (rank, drug, dose, eig, mc_se, ...); an existing "
                          "file is replaced only with --overwrite")
    out.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    out.add_argument("--top", type=POSITIVE_INT, default=10, metavar="N",
                     help="rows of the ranking printed (default: %(default)s)")
    add_run_flags(out)


# --- the command -------------------------------------------------------------------------


def run(args) -> int:
    """`gim-ppl design`: check --out and --candidates, load the screen, check the candidates
    against it, fit, rank, print and write. Returns the exit code (2: a user error)."""
    try:
        settings = screen_settings(args)
        if args.readout is not None and args.about != "readout":
            raise UsageError("--readout is used only with --about readout")
        for module in ("anndata", "pandas", "scanpy"):
            require_installed(module)  # imported once the files are read
        out = _check_out(args.out, args.overwrite)
        table = read_candidates(args.candidates, settings["dose_unit"])
        adata = read_h5ad(args.h5ad)
        features = _features_with_candidates(args, settings, adata, table)
        data, _ = screen_data(args, settings, adata, features)
        candidates = candidate_contexts(table, data, features, args)
        if args.readout is not None and args.readout not in data.var_names:
            raise UsageError(f"--readout {args.readout!r} is not a modelled gene; the genes "
                             f"are {list(data.var_names)}")
        knowledge_mask(args, data.var_names)  # --sources / --forbid name modelled genes
    except USER_ERRORS as err:
        return fail(err, args)
    # here, not at the top: the inputs are checked before jax and numpyro load
    import jax
    from numpyro.infer.autoguide import AutoNormal

    from gim_ppl.design import rank_experiments
    from gim_ppl.inference import init_from_data

    print(f"data: {data}")
    print(f"candidates: {candidates.n_contexts} experiments of {args.n_cells} cells each")
    print(f"machine: {machine_description()}")

    fitted = fit_screen(args, data, guide=lambda model, centred: AutoNormal(
        model, init_loc_fn=init_from_data(centred)))
    posterior = fitted.result.posterior_draws(jax.random.key(args.seed + 1), args.n_draws)
    ranking = rank_experiments(fitted.model, posterior, candidates,
                               key=jax.random.key(args.seed + 2), about=args.about,
                               n_cells=args.n_cells, readout=args.readout,
                               progress=not args.no_progress, observed=fitted.centred)
    result = _user_table(ranking, table, args, settings["dose_unit"])
    print(_shown_table(result, args, settings["dose_unit"]))
    try:
        _write_atomically(result, out)
    except OSError as err:
        return fail(UsageError(f"could not write --out {args.out}: {err}"), args)
    print(f"wrote the ranking of {len(result)} candidates to {args.out}")
    return 0


# --- the candidates ----------------------------------------------------------------------


class CandidateTable(NamedTuple):
    """The rows of `--candidates`, checked on their own: `drug` `(k,)` names, `dose` `(k,)`
    in the screen's dose unit, `smiles` `(k,)` (None where not given), `features` the
    numeric feature columns (a DataFrame `(k, n_columns)`, or None), `line` `(k,)` the line
    of each row in the file (the header is line 1), and `path` (as given)."""

    drug: list
    dose: np.ndarray
    smiles: list
    features: object
    line: np.ndarray
    path: str


def read_candidates(path_text: str, dose_unit: str) -> CandidateTable:
    """Read and check `--candidates` (before the screen is read); `UsageError` naming
    `--candidates` for a missing or unreadable file, no rows, no drug or dose column, a dose
    that is not a number ≥ 0, or a candidate listed twice."""
    name = f"--candidates {path_text}"
    path = Path(path_text)
    if not path.exists():
        raise UsageError(f"{name}: no such file")
    if path.is_dir():
        raise UsageError(f"{name} is a folder; give a CSV file with columns drug, dose")
    pd = require("pandas")  # once the file is there: a wrong path is reported before it loads
    try:
        raw = pd.read_csv(path, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise UsageError(f"{name} has no rows (the file is empty); give a header drug,dose "
                         "and one row per candidate") from None
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UsageError(f"{name} is not a readable CSV ({first}); give a table with "
                         "columns drug, dose") from err
    raw.columns = [str(c).strip() for c in raw.columns]
    missing = [c for c in ("drug", "dose") if c not in raw.columns]
    if missing:
        raise UsageError(f"{name} has no {' or '.join(repr(c) for c in missing)} column "
                         f"(its columns: {list(raw.columns)}); give each candidate's drug "
                         f"and dose in {dose_unit}")
    if len(raw) == 0:
        raise UsageError(f"{name} has no rows; give one row per candidate (drug, dose)")
    line = np.arange(len(raw)) + 2
    drug = [str(d).strip() if isinstance(d, str) else "" for d in raw["drug"]]
    unnamed = [int(n) for n, d in zip(line, drug, strict=True) if not d]
    if unnamed:
        raise UsageError(f"{name}: no drug name on lines {unnamed}")
    dose = pd.to_numeric(raw["dose"], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(dose)
    if bad.any():
        shown = [str(v) for v in raw["dose"][bad]]
        raise UsageError(f"{name}: the dose is not a number on lines "
                         f"{line[bad].tolist()} (got {shown}); give doses in {dose_unit}")
    negative = dose < 0
    if negative.any():
        raise UsageError(f"{name}: negative doses on lines {line[negative].tolist()} "
                         f"({dose[negative].tolist()}); doses must be ≥ 0 {dose_unit}")
    seen: dict = {}
    for n, pair in zip(line, zip(drug, dose, strict=True), strict=True):
        if pair in seen:
            raise UsageError(f"{name}: lines {seen[pair]} and {n} are the same candidate "
                             f"({pair[0]} at {pair[1]:g} {dose_unit}); list each once")
        seen[pair] = int(n)
    smiles = [None] * len(raw)
    if "smiles" in raw.columns:
        smiles = [s.strip() if isinstance(s, str) and s.strip() else None
                  for s in raw["smiles"]]
    columns = [c for c in raw.columns if c not in NAMED_COLUMNS]
    non_numeric = [c for c in columns if not pd.api.types.is_numeric_dtype(raw[c])]
    if non_numeric:
        raise UsageError(f"{name}: the columns {non_numeric} are not numeric; every column "
                         "but drug, dose and smiles is a drug feature")
    return CandidateTable(drug, dose, smiles, raw[columns] if columns else None, line,
                          path_text)


def _features_with_candidates(args, settings: dict, adata, table: CandidateTable):
    """The screen's drug features, with the candidates' SMILES featurised together with the
    screen's drugs (`screen_features`); an invalid candidate SMILES names --candidates."""
    new = {}
    for drug, smiles, n in zip(table.drug, table.smiles, table.line, strict=True):
        if smiles is None:
            continue
        if new.setdefault(drug, smiles) != smiles:
            raise UsageError(f"--candidates {table.path}: drug {drug!r} has two different "
                             f"SMILES (line {n}: {smiles!r}, before: {new[drug]!r})")
    if new and settings["smiles_key"] is None:
        new = {}  # reported per drug by candidate_contexts, once the screen's drugs are known
    try:
        return screen_features(args, settings, adata, new)
    except ValueError as err:
        if any(repr(drug) in str(err) for drug in new):
            raise UsageError(f"--candidates {table.path}: {err}") from err
        raise


def candidate_contexts(table: CandidateTable, data: PerturbationData, features,
                       args) -> PerturbationData:
    """The candidates as contexts of the screen's model: features `(k, n_features)` (the
    screen's for its own drugs, from SMILES or from the feature columns for new ones), doses
    in model units (`data.dose_scale`), named `DRUG@DOSE{unit}` like the screen's contexts."""
    from gim_ppl.data import PerturbationData  # jax: loaded with the screen, not before

    name = f"--candidates {table.path}"
    width = data.n_features
    if table.features is not None:
        given = list(table.features.columns)
        if len(given) != width:
            raise UsageError(f"{name} has {len(given)} feature columns {given}; the model's "
                             f"drug features have {width}: {list(data.feature_names)}")
        if set(given) != set(data.feature_names):
            raise UsageError(f"{name}: feature columns {given} are not the model's features "
                             f"{list(data.feature_names)}; name them the same")
    known = {p: i for i, p in enumerate(data.perturbation_names)}
    screen_rows = {int(p): np.asarray(data.features)[c]
                   for c, p in enumerate(np.asarray(data.perturbation)) if p >= 0}
    rows = []
    for k, drug in enumerate(table.drug):
        n = int(table.line[k])
        if drug in known:
            rows.append(screen_rows[known[drug]])
        elif table.smiles[k] is not None:
            if args.features_csv is not None or isinstance(features, str):
                source = ("--features-csv" if args.features_csv is not None else
                          "one-hot drug features (no --smiles-key)")
                raise UsageError(f"{name}: new drug {drug!r} (line {n}) has a SMILES, but "
                                 f"the model's drug features come from {source}; give its "
                                 "features in the model's feature columns instead")
            rows.append(features.loc[drug].to_numpy(dtype=float))
        elif table.features is not None and np.isfinite(
                table.features.iloc[k].to_numpy(dtype=float)).all():
            row = table.features.iloc[k][list(data.feature_names)].to_numpy(float)
            scale = getattr(features, "attrs", {}).get("standardised")
            if scale is not None:  # in --features-csv's units: map as its columns were
                names = list(data.feature_names)
                row = ((row - np.array([scale["mean"][n] for n in names]))
                       / np.array([scale["sd"][n] for n in names]))
            rows.append(row)
        else:
            raise UsageError(f"{name}: drug {drug!r} (line {n}) is not a drug of the screen "
                             "and has no smiles or feature values; give one, or a drug of "
                             f"the screen ({', '.join(data.perturbation_names[:5])}"
                             f"{', …' if len(data.perturbation_names) > 5 else ''})")
    drugs = list(dict.fromkeys(table.drug))
    unit = data.dose_scale.unit
    return PerturbationData.from_arrays(
        None, features=np.stack(rows), dose=data.dose_scale.to_model(table.dose),
        observational=np.zeros(len(rows), dtype=bool),
        perturbation=np.array([drugs.index(d) for d in table.drug]),
        perturbation_names=drugs, var_names=data.var_names,
        context_names=[context_name(d, c, unit) for d, c in zip(table.drug, table.dose,
                                                                 strict=True)],
        feature_names=data.feature_names, require_cells=False, dose_scale=data.dose_scale)


def context_name(drug: str, dose: float, unit: str) -> str:
    """A candidate's context name, `DRUG@DOSE{unit}` as the screen's (`JQ1@10000nM`), with
    enough digits that distinct doses keep distinct names."""
    return f"{drug}@{dose:.12g}{unit}"


# --- output ------------------------------------------------------------------------------


def _check_out(path_text: str, overwrite: bool) -> Path:
    """`--out` as an absolute path, once it is known that it can be written."""
    path = Path(path_text).absolute()
    if path.is_dir():
        raise UsageError(f"--out {path_text} is a folder; give the path of a CSV file")
    if path.exists() and not overwrite:
        raise UsageError(f"--out {path_text} exists; pass --overwrite to replace it, or "
                         "choose another file")
    if not path.parent.is_dir():
        raise UsageError(f"--out {path_text}: the folder {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise UsageError(f"cannot write --out {path_text} (permission denied in "
                         f"{path.parent}); choose a folder you can write to")
    return path


def _write_atomically(table, path: Path) -> None:
    """Write into a hidden file beside `path`, then move it into place."""
    tmp = path.parent / f".{path.name}.partial-{secrets.token_hex(4)}"
    try:
        write_csv(table, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _user_table(ranking, table: CandidateTable, args, unit: str):
    """The ranking in the user's terms: rank, drug, dose (as given, in `unit`), eig, mc_se
    (nats), about, n_cells, n_draws, and the candidate's line in --candidates."""
    pd = require("pandas")
    names = {context_name(d, c, unit): i
             for i, (d, c) in enumerate(zip(table.drug, table.dose, strict=True))}
    row = np.array([names[c] for c in ranking["candidate"]])
    return pd.DataFrame({
        "rank": ranking["rank"].to_numpy(),
        "drug": [table.drug[i] for i in row],
        f"dose_{unit}": table.dose[row],
        "eig": ranking["eig"].to_numpy(),
        "mc_se": ranking["mc_se"].to_numpy(),
        "about": args.about,
        "n_cells": args.n_cells,
        "n_draws": ranking["n_draws"].to_numpy(),
        "line": table.line[row],
    })


def _shown_table(result, args, unit: str) -> str:
    """The top `--top` rows as a text table: rank, drug, dose, EIG ± Monte Carlo error."""
    top = result.head(args.top)
    doses = [f"{c:g} {unit}" for c in top[f"dose_{unit}"]]
    eig = [f"{e:.3f} ± {s:.3f}" for e, s in zip(top["eig"], top["mc_se"], strict=True)]
    w_drug = max(4, *(len(d) for d in top["drug"]))
    w_dose = max(4, *(len(d) for d in doses))
    lines = [f"expected information gain about the {args.about} (nats) of {args.n_cells} "
             f"cells, {int(result['n_draws'].iloc[0])} posterior draws; top {len(top)} of "
             f"{len(result)}:",
             f"{'rank':>4}  {'drug':<{w_drug}}  {'dose':>{w_dose}}  EIG ± MC error"]
    lines += [f"{r:>4}  {d:<{w_drug}}  {c:>{w_dose}}  {e}"
              for r, d, c, e in zip(top["rank"], top["drug"], doses, eig, strict=True)]
    return "\n".join(lines)
