"""`diagnose`: MCMC convergence checks against the published thresholds, in one table.

Thresholds (`Thresholds`, Vehtari et al. 2021, "Rank-normalization, folding, and
localization", and ArviZ's defaults): rank-normalised split R-hat ≤ 1.01, bulk and tail ESS
≥ 400 for every scalar, no divergent transitions, E-BFMI ≥ 0.3 in every chain. Each failed
check becomes one line of `Diagnosis.problems` and of a single `UserWarning`; a failed R-hat
also gets one line of `Diagnosis.hints` naming the likely cause and remedy (`rhat_hint`).
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np

from gim_ppl.extras import require


class Thresholds(NamedTuple):
    """Limits a run must meet (Vehtari et al. 2021; ArviZ)."""

    r_hat: float = 1.01
    ess_bulk: float = 400.0
    ess_tail: float = 400.0
    divergences: int = 0
    bfmi: float = 0.3


class Diagnosis(NamedTuple):
    """Outcome of `diagnose`.

    table: one row per scalar (`az.summary` names, e.g. `weights[0, 1]`) with `mean`, `sd`,
        `r_hat`, `ess_bulk`, `ess_tail`; scalars constant over every draw (e.g. a target
        probability fixed at 0) are left out and counted in `n_constant`.
    divergences: divergent transitions over all chains (None: the run did not record them).
    bfmi: `(n_chains,)` E-BFMI (None: no energy recorded).
    problems: one sentence per failed check; empty when the run passes.
    hints: when R-hat fails, one line with the likely cause and the remedy (`rhat_hint`);
        else empty.
    """

    table: object
    divergences: int | None
    bfmi: np.ndarray | None
    n_constant: int
    problems: tuple[str, ...]
    hints: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


#: The published limits (the default of `diagnose`).
PUBLISHED = Thresholds()

#: An edge i → j counts as present in a chain when its mean |W[i, j]| is at least this many
#: times the mean |W[j, i]| (`rhat_hint`'s orientation check).
ORIENTATION_RATIO = 2.0


def diagnose(idata_or_mcmc, *, var_names=None, thresholds: Thresholds = PUBLISHED,
             warn: bool = True) -> Diagnosis:
    """Check an MCMC run: R-hat, bulk/tail ESS, divergences, E-BFMI (see the module).

    Args:
        idata_or_mcmc: an `arviz.InferenceData` (e.g. `gim_ppl.to_arviz(model, mcmc, data)`)
            or a `numpyro.infer.MCMC` after `run`.
        var_names: posterior variables to check (default: all).
        thresholds: the limits.
        warn: emit one `UserWarning` listing the problems.
    """
    az = require("arviz")
    from numpyro.infer import MCMC

    if isinstance(idata_or_mcmc, MCMC):
        idata = az.from_numpyro(idata_or_mcmc)
    elif isinstance(idata_or_mcmc, az.InferenceData):
        idata = idata_or_mcmc
    else:
        raise TypeError("idata_or_mcmc must be an arviz.InferenceData or a numpyro MCMC, got "
                        f"{type(idata_or_mcmc).__name__}")
    if "posterior" not in idata.groups():
        raise ValueError("idata_or_mcmc has no posterior group")
    post = idata.posterior
    n_chains = post.sizes.get("chain", 1)
    if n_chains < 2:
        raise ValueError(f"diagnose needs at least 2 chains (R-hat compares chains), got "
                         f"{n_chains}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ArviZ warns on constant scalars; counted below
        table = az.summary(idata, var_names=var_names, kind="all", round_to="none")
    constant = table["sd"] == 0
    table = table.loc[~constant, ["mean", "sd", "r_hat", "ess_bulk", "ess_tail"]]

    problems = []
    rhat_failed = False
    if len(table):
        worst = table["r_hat"].idxmax()
        if table.loc[worst, "r_hat"] > thresholds.r_hat:
            rhat_failed = True
            n_bad = int((table["r_hat"] > thresholds.r_hat).sum())
            problems.append(f"R-hat > {thresholds.r_hat} for {n_bad} of {len(table)} scalars "
                            f"(max {table.loc[worst, 'r_hat']:.3f} at {worst})")
        for column, label, limit in (("ess_bulk", "bulk", thresholds.ess_bulk),
                                     ("ess_tail", "tail", thresholds.ess_tail)):
            low = table[column] < limit
            if low.any():
                name = table[column].idxmin()
                problems.append(f"{label} ESS < {limit:g} for "
                                f"{int(low.sum())} of {len(table)} scalars (min "
                                f"{table.loc[name, column]:.0f} at {name})")
    stats = idata.sample_stats if "sample_stats" in idata.groups() else None
    divergences = None
    if stats is not None and "diverging" in stats:
        divergences = int(np.asarray(stats["diverging"]).sum())
        if divergences > thresholds.divergences:
            problems.append(f"{divergences} divergent transitions (allowed: "
                            f"{thresholds.divergences})")
    bfmi = None
    if stats is not None and "energy" in stats:
        bfmi = np.asarray(az.bfmi(idata))
        low_chains = np.flatnonzero(bfmi < thresholds.bfmi)
        if low_chains.size:
            problems.append(f"E-BFMI < {thresholds.bfmi} in chains {low_chains.tolist()} "
                            f"(values {np.round(bfmi[low_chains], 3).tolist()})")
    hints = (rhat_hint(idata, table, divergences, thresholds),) if rhat_failed else ()
    if warn and problems:
        warnings.warn("MCMC diagnostics failed:\n- " + "\n- ".join(problems)
                      + "".join(f"\nhint: {h}" for h in hints), UserWarning, stacklevel=2)
    return Diagnosis(table, divergences, bfmi, int(constant.sum()), tuple(problems),
                     hints)


def rhat_hint(idata, table, divergences: int | None,
              thresholds: Thresholds = PUBLISHED) -> str:
    """One line: the likely cause of a failed R-hat and its remedy, the first that applies of

    1. orientation modes: for a failing entry W[i, j] of `weights`, one chain has the edge
       i → j (mean |W[i, j]| ≥ `ORIENTATION_RATIO` · mean |W[j, i]|) and another j → i;
    2. a funnel on scales: most failing scalars are scale sites (names containing "scale":
       `noise_scale`, ARD/horseshoe scales, GP lengthscales), or the run diverged;
    3. otherwise: the run is too short to mix.

    Args:
        idata: the `arviz.InferenceData` checked (its posterior `weights`, `(chain, draw,
            n_vars, n_vars)`, for 1.).
        table: `Diagnosis.table` (rows named as `az.summary` names them).
        divergences: divergent transitions, or None.
        thresholds: the limits (`r_hat` marks a scalar as failing).
    """
    bad = [str(label) for label in table.index[table["r_hat"] > thresholds.r_hat]]
    swapped = _swapped_edges(idata, bad, thresholds.r_hat)
    if swapped:
        return ("chains sit in different edge orientations (" + ", ".join(swapped[:3])
                + ("" if len(swapped) <= 3 else f" and {len(swapped) - 3} more")
                + "), modes of the graph, not a sampler bug: start every chain from one MAP "
                "(run_mcmc(..., init_strategy=init_to_value(values=fit_result.sites))), "
                "restrict the orientations with GIM(edge_mask=...), or report the modes")
    n_scale = sum("scale" in label.split("[")[0] for label in bad)
    diverged = divergences is not None and divergences > thresholds.divergences
    if 2 * n_scale > len(bad) or diverged:
        seen = [f"{n_scale} of {len(bad)} failing scalars are scales"] if n_scale else []
        seen += [f"{divergences} divergent transitions"] if diverged else []
        return ("a funnel between scales and the values they scale (" + "; ".join(seen)
                + "): raise run_mcmc(..., target_accept_prob=0.95), tighten the scale priors "
                "(GIM(priors=Priors(...))), or parametrise the scaled sites non-centred")
    worst = str(table["r_hat"].idxmax())
    return (f"no edge-orientation modes or scale funnel seen; the chains have not mixed "
            f"yet (worst: {worst}): run more num_warmup and num_samples, and look at "
            f"az.plot_trace(idata, var_names=[{worst.split('[')[0]!r}])")


def _swapped_edges(idata, bad: list[str], r_hat: float) -> list[str]:
    """Edges `"a → b vs b → a"` whose failing weight is i → j in one chain and j → i in
    another (see `rhat_hint`)."""
    az = require("arviz")
    post = idata.posterior
    if "weights" not in post or not any(b.startswith("weights[") for b in bad):
        return []
    w = post["weights"]
    if w.ndim != 4 or w.shape[2] != w.shape[3]:
        return []
    names = [str(v) for v in w[w.dims[3]].values]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant entries (the diagonal) give NaN
        failing = np.asarray(az.rhat(post, var_names=["weights"])["weights"]) > r_hat
    size = np.abs(np.asarray(w)).mean(axis=1)  # (chain, n_vars, n_vars) mean |W|
    out = []
    for i, j in zip(*np.nonzero(failing), strict=True):
        if i == j or (j < i and failing[j, i]):
            continue  # the pair is reported once
        forward = size[:, i, j] >= ORIENTATION_RATIO * size[:, j, i]
        backward = size[:, j, i] >= ORIENTATION_RATIO * size[:, i, j]
        if forward.any() and backward.any():
            out.append(f"{names[i]} → {names[j]} vs {names[j]} → {names[i]}")
    return out


__all__ = ["ORIENTATION_RATIO", "PUBLISHED", "Diagnosis", "Thresholds", "diagnose",
           "rhat_hint"]
