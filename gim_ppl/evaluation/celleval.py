"""The `cell-eval` package itself (ArcInstitute, the Virtual Cell Challenge's scorer) on
predicted and observed cells: the cross-check of `metrics.mean_absolute_error`,
`metrics.discrimination_score` and `metrics.de_overlap`, which compute its profile "vcc"
in numpy. Needs the `[celleval]` extra (cell-eval pulls pdex, numba, polars and pyarrow).

cell-eval accepts log1p-normalised expression only: it refuses negative values and, unless
told the data are discrete, values of 15 or more; integer-valued cells it takes for counts
and normalises itself. Its DE genes are ranked by `metrics.log2_fold_change`.
"""

from __future__ import annotations

import contextlib
import io
import tempfile

import numpy as np

from gim_ppl.data import PerturbationData
from gim_ppl.extras import require


def cell_eval_scores(predicted: PerturbationData, observed: PerturbationData, control_cells,
                     *, num_threads: int = 1) -> dict:
    """cell-eval's `MetricsEvaluator(...).compute(profile="vcc")` on these cells, each
    context one perturbation, `control_cells (n_control_cells, n_vars)` the control group of
    both the predicted and the real file (as the Challenge's prediction files carry them).

    Returns:
        `{"mae", "discrimination_score", "de_overlap"}`, each `(n_contexts,)` in context
        order (cell-eval's `mae`, `discrimination_score_l1`, `overlap_at_N`), and
        `"version"`, cell-eval's.
    Raises:
        ImportError: cell-eval is not installed (names the extra).
        ValueError: what cell-eval refuses (negative values, values ≥ 15, ...), in its words.
    """
    cell_eval = require("cell_eval")
    names = [str(name) for name in observed.context_names]
    control = "control"
    while control in names:
        control = f"_{control}"
    control_cells = np.asarray(control_cells, np.float32)
    real = _anndata(observed, control_cells, names, control)
    pred = _anndata(predicted, control_cells, names, control)
    # cell-eval writes its DE tables into `outdir` and draws progress bars on stderr
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stderr(io.StringIO()):
        evaluator = cell_eval.MetricsEvaluator(
            adata_pred=pred, adata_real=real, control_pert=control, pert_col="context",
            num_threads=num_threads, outdir=tmp)
        results, _ = evaluator.compute(profile="vcc", write_csv=False)
    rows = {row["perturbation"]: row for row in results.iter_rows(named=True)}
    out = {ours: np.array([rows[name][theirs] for name in names], dtype=float)
           for ours, theirs in (("mae", "mae"), ("discrimination_score",
                                                 "discrimination_score_l1"),
                                ("de_overlap", "overlap_at_N"))}
    return {**out, "version": _version()}


def _anndata(data: PerturbationData, control_cells: np.ndarray, names: list[str],
             control: str):
    """`data`'s cells and the control cells as AnnData, `obs["context"]` the group."""
    anndata, pd = require("anndata"), require("pandas")
    x = np.concatenate([np.asarray(data.x, np.float32), control_cells])
    group = [names[k] for k in np.asarray(data.context)] + [control] * len(control_cells)
    obs = pd.DataFrame({"context": group}, index=[f"cell{i}" for i in range(len(group))])
    var = pd.DataFrame(index=[str(v) for v in data.var_names])
    return anndata.AnnData(X=x, obs=obs, var=var)


def _version() -> str:
    from importlib.metadata import version

    return version("cell-eval")
