"""`diagnose`: MCMC convergence checks against the published thresholds, in one table.

Thresholds (`Thresholds`, Vehtari et al. 2021, "Rank-normalization, folding, and
localization", and ArviZ's defaults): rank-normalised split R-hat ≤ 1.01, bulk and tail ESS
≥ 400 for every scalar, no divergent transitions, E-BFMI ≥ 0.3 in every chain. Each failed
check becomes one line of `Diagnosis.problems` and of a single `UserWarning`.
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
    """

    table: object
    divergences: int | None
    bfmi: np.ndarray | None
    n_constant: int
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


#: The published limits (the default of `diagnose`).
PUBLISHED = Thresholds()


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
    if len(table):
        worst = table["r_hat"].idxmax()
        if table.loc[worst, "r_hat"] > thresholds.r_hat:
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
    if warn and problems:
        warnings.warn("MCMC diagnostics failed:\n- " + "\n- ".join(problems), UserWarning,
                      stacklevel=2)
    return Diagnosis(table, divergences, bfmi, int(constant.sum()), tuple(problems))


__all__ = ["PUBLISHED", "Diagnosis", "Thresholds", "diagnose"]
