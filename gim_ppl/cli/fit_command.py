"""`gim-ppl fit`: fit a GIM to the user's drug screen (.h5ad) in three steps, load → fit →
write (graph, targets, Hill parameters, predictions, held-out metrics, figures, run record).

This module holds the command's parser and `run`, the orchestration: check the settings and
`--out`, load and split the screen, fit, write. The screen's flags and loading are shared
with `gim-ppl design` (`gim_ppl.cli.screen_input`), and so is `fit_screen`, the fit itself. Every
user error (a bad file, a missing obs key, an output folder that cannot be written) ends in
one line on stderr that names the problem and the fix, with exit code 2 and no traceback
(`--debug` shows it): see `gim_ppl.cli.user_errors`. The output folder is checked before anything
is read, the results are written into a temporary folder beside it, and that folder is moved
into place at the end: `--out` is either complete or absent (`gim_ppl.cli.outputs`, which
also writes the files).

Needs the `[screen]` and `[plots]` extras; the held-out scores (when contexts are held out)
use `gim_ppl.evaluation.metrics`, imported only then."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from gim_ppl.cli.arguments import NON_NEGATIVE_FLOAT, POSITIVE_INT
from gim_ppl.cli.machine import machine_description
from gim_ppl.cli.outputs import Fitted, OutputFolder, Screen, write_outputs
from gim_ppl.cli.screen_input import (
    add_fit_arguments,
    add_run_flags,
    add_screen_arguments,
    read_h5ad,
    screen_data,
    screen_features,
    screen_settings,
)
from gim_ppl.cli.user_errors import USER_ERRORS, UsageError, fail, warning_message
from gim_ppl.extras import require_installed
from gim_ppl.knowledge import allowed_edges

if TYPE_CHECKING:  # pragma: no cover
    from gim_ppl.data import PerturbationData
    from gim_ppl.model import GIM

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
    add_screen_arguments(p)

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

    add_fit_arguments(p, seed_use="the predicted cells")

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
    out.add_argument("--min-effect", type=NON_NEGATIVE_FLOAT, default=None, metavar="DELTA",
                     help="call a gene a target only if the drug moves it by at least DELTA "
                          "(units of the cells, e.g. log1p expression) at its highest dose: "
                          "posterior_probability in targets.csv becomes P(target and "
                          "|effect| >= DELTA | cells) (default: no minimum)")
    out.add_argument("--cell-eval", action="store_true",
                     help="also score the held-out contexts with the cell-eval package "
                          "itself (the [celleval] extra; log1p expression only) and write its "
                          "MAE, discrimination score and DE overlap into metrics.json beside "
                          "ours, under cell_eval_package")
    out.add_argument("--top-targets", type=POSITIVE_INT, default=3, metavar="N",
                     help="at most this many likely targets per drug in dose_response.png "
                          "(default: %(default)s)")
    add_run_flags(out)


# --- the command -------------------------------------------------------------------------


def run(args) -> int:
    """`gim-ppl fit`: check --out, load and split the screen, fit, write every artefact into
    a temporary folder and move it to `--out`. Returns the exit code (2: a user error)."""
    out = None
    try:
        settings = screen_settings(args)
        _drug_doses(args.holdout_dose)  # its format, before anything runs
        _require_extras(args)
        out = OutputFolder.prepare(args.out, args.overwrite)
        screen = _load_screen(args, settings)
        knowledge_mask(args, screen.train.var_names)  # --sources / --forbid name genes
    except USER_ERRORS as err:
        if out is not None:
            out.discard()
        return fail(err, args)
    try:
        print(f"data: {screen.data}")
        print(f"train: {screen.train.n_contexts} contexts, {screen.train.n_cells} cells; "
              f"held out: {screen.test.n_contexts} contexts, {screen.test.n_cells} cells")
        print(f"machine: {machine_description()}")
        fitted = fit_screen(args, screen.train)
        scores = write_outputs(out.tmp, args, screen, fitted)
        out.commit()
    except OSError as err:
        return fail(UsageError(f"could not write --out {args.out}: {err}"), args)
    finally:
        out.discard()
    if scores is not None:
        print(f"held-out mean error {scores['mean_error']:.3f} (control prediction "
              f"{scores['mean_error_control']:.3f}) over {len(scores['per_context'])} contexts")
        print("cell-eval metrics (control prediction): " + ", ".join(
            f"{label} {scores[key]:.3f} ({scores[key + '_control']:.3f})"
            for label, key in (("MAE", "mae"), ("PDS", "discrimination_score"),
                               ("DES", "de_overlap"))))
    print(f"wrote graph.csv, targets.csv, targets_by_dose.csv, hill.csv, predictions.h5ad"
          f"{', metrics.json' if scores else ''}, run.json and figures/ to {args.out}")
    return 0


def _require_extras(args) -> None:
    """Check that what the command will import is installed, so a missing extra stops it
    before anything runs: anndata, pandas, scanpy, matplotlib, and ott-jax when contexts are
    held out (the scores). Nothing is imported yet (`require_installed`)."""
    for module in ("anndata", "pandas", "scanpy", "matplotlib"):
        require_installed(module)
    if args.holdout != "none" or args.holdout_drugs or args.holdout_dose:
        try:
            require_installed("ott")
        except ImportError as err:
            raise UsageError(f"{err} (it scores the held-out contexts; with --holdout none "
                             "nothing is held out or scored)") from err
    if getattr(args, "cell_eval", False):
        try:
            require_installed("cell_eval")
        except ImportError as err:
            raise UsageError(f"{err} (--cell-eval scores the held-out contexts with it)") \
                from err


def _load_screen(args, settings: dict) -> Screen:
    """Read the .h5ad, build drug features and `PerturbationData`, and split it."""
    adata = read_h5ad(args.h5ad)
    # jax loads from here on, once the arguments and the file are checked
    from gim_ppl.datasets import holdout_dose, holdout_highest_doses, holdout_perturbations

    data, info = screen_data(args, settings, adata, screen_features(args, settings, adata))
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


def knowledge_mask(args, var_names) -> np.ndarray | None:
    """The edge mask of `--sources` and `--forbid A>B,...` (None when neither is given)."""
    sources = _listed_names(getattr(args, "sources", None) or "")
    pairs = []
    for item in _listed_names(getattr(args, "forbid", None) or ""):
        parent, sep, child = item.partition(">")
        if not sep or not parent.strip() or not child.strip():
            raise UsageError(f"--forbid expects PARENT>CHILD items such as ACTB>GAPDH, got "
                             f"{item!r}")
        pairs.append((parent.strip(), child.strip()))
    if not sources and not pairs:
        return None
    # an unknown name is an ArgumentError of "sources" or "forbid": `fail` names the flag
    return allowed_edges(var_names, sources=sources, forbid=pairs)


def fit_screen(args, train: PerturbationData, *,
               guide: Callable[[GIM, PerturbationData], object] | None = None) -> Fitted:
    """Fit a GIM to the training cells minus the control mean (an exact reparametrisation of
    the linear SCM's bias; Adam converges far better than on raw log expression ~ 5), with
    the flags of `add_fit_arguments`. `guide(model, centred)` builds the guide (default: the
    MAP point estimate of `fit`); `gim-ppl design` passes an AutoNormal for posterior draws.
    Warnings of the fit go to stderr in the command's words."""
    # here, not at the top: the commands check their arguments before jax loads
    import jax
    import optax

    from gim_ppl.datasets import center_on_controls
    from gim_ppl.inference import fit
    from gim_ppl.model import GIM

    centred, offset = center_on_controls(train)
    # offsets around the feature map for the measured drugs (their own curves and targets)
    model = GIM(train.n_vars, train.n_features, target_sparsity=args.target_sparsity,
                pooled=train, edge_mask=knowledge_mask(args, train.var_names),
                coarsening=getattr(args, "coarsening", None))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fit(model, centred, steps=args.steps, key=jax.random.key(args.seed),
                     optimizer=optax.adam(args.learning_rate), progress=not args.no_progress,
                     guide=None if guide is None else guide(model, centred))
    said = {str(w.message) for w in caught}
    for message in sorted(said | ({result.message} if result.message else set())):
        print(f"warning: {' '.join(warning_message(message).split())}", file=sys.stderr)
    return Fitted(model, result, centred, offset)
