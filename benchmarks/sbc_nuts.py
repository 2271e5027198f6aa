"""Simulation-based calibration of NUTS on the small calibration GIM (Talts et al. 2018).

`gim_ppl.evaluation.calibration.sbc_nuts` on `calibration_problem()`: N_SIMS data sets from
the prior; per data set one NUTS chain (500 warmup draws, 1 000 draws, every 10th kept): the
rank of each true scalar among 100 draws; χ² test of each scalar's ranks against the
uniform in 20 bins. Writes `sbc_nuts.json` (ranks, χ² p-values per scalar, divergences,
ESS, time; command, commit, machine) and `sbc_nuts.md` into --out, and the ECDF difference
of every scalar's fractional ranks with its 99 % band to --figure (default: sbc_ecdf.png in
--out). docs/calibration.md, NUTS SBC.

    OPENBLAS_NUM_THREADS=1 python benchmarks/sbc_nuts.py --sims 500 --key 0 \
        --out benchmarks/results/sbc_nuts --figure docs/sbc_ecdf.png
    python benchmarks/sbc_nuts.py --quick --out /tmp/sbc                  # smoke run (CI)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def plot_ecdf(ranks, n_ranks: int, n_sims: int, path) -> None:
    """The ECDF difference of every scalar's fractional ranks and the 99 % band, to `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gim_ppl.evaluation.calibration import ecdf_difference

    z, diff, lower, upper = ecdf_difference(ranks, n_ranks)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.fill_between(z, lower, upper, color="0.85", label="99 % band (one scalar)")
    ax.plot(z, diff, color="C0", lw=0.6, alpha=0.6)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("fractional rank")
    ax.set_ylabel("ECDF − uniform")
    ax.set_title(f"NUTS SBC, {ranks.shape[1]} scalars, {n_sims} data sets, {n_ranks} ranks")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    """This script's arguments (tests/test_docs_blocks.py parses the docs' command lines
    with it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sims", type=int, default=500, help="simulated data sets")
    parser.add_argument("--key", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="4 data sets, 20 warmup draws, 10 ranks at thinning 2 "
                             "(smoke run)")
    parser.add_argument("--out", default="sbc_nuts")
    parser.add_argument("--figure", help="the ECDF figure (default: sbc_ecdf.png in --out)")
    return parser


def main(argv=None) -> int:
    import jax
    import numpy as np

    from gim_ppl.cli.machine import write_record
    from gim_ppl.evaluation.calibration import (
        calibration_problem,
        flat_ranks,
        rank_uniformity,
        sbc_nuts,
        scalar_names,
    )

    args = build_parser().parse_args(argv)
    settings = {"n_warmup": 500, "n_ranks": 100, "thin": 10, "n_bins": 20}
    if args.quick:
        args.sims, settings = 4, {"n_warmup": 20, "n_ranks": 10, "thin": 2, "n_bins": 2}
    n_sims = args.sims
    start = time.perf_counter()
    result = sbc_nuts(calibration_problem(), key=jax.random.key(args.key), n_sims=n_sims,
                      n_warmup=settings["n_warmup"], n_ranks=settings["n_ranks"],
                      thin=settings["thin"],
                      progress=lambda i: print(f"{i + 1}/{n_sims} "
                                               f"{time.perf_counter() - start:.0f} s",
                                               flush=True) if (i + 1) % 25 == 0 else None)
    ranks = flat_ranks(result.ranks)
    names = scalar_names(result.ranks)
    p = rank_uniformity(ranks, result.n_ranks, n_bins=settings["n_bins"])
    k = len(names)
    summary = {
        "n_sims": n_sims, "key": args.key, "n_ranks": result.n_ranks, "thin": settings["thin"],
        "n_warmup": settings["n_warmup"], "n_bins": settings["n_bins"], "n_scalars": k,
        "min_p": float(p.min()), "bonferroni_threshold": 0.01 / k,
        "n_below_0.01": int((p < 0.01).sum()), "n_below_bonferroni": int((p < 0.01 / k).sum()),
        "divergent_transitions": int(result.divergences.sum()),
        "data_sets_with_divergences": int((result.divergences > 0).sum()),
        "min_bulk_ess_median": float(np.median(result.min_ess)),
        "min_bulk_ess_min": float(result.min_ess.min()),
        "seconds_per_data_set_median": float(np.median(result.seconds)),
        "total_seconds": time.perf_counter() - start,
    }
    p_values = dict(zip(names, np.round(p, 5).tolist(), strict=True))
    smallest = sorted(p_values.items(), key=lambda kv: kv[1])[:5]
    table = "\n".join(["| | value |", "|---|---|",
                       *(f"| {key} | {value:.4g} |" for key, value in summary.items()),
                       "| smallest p | " + ", ".join(f"{n} {v}" for n, v in smallest) + " |"])
    write_record(args.out, "sbc_nuts", "python benchmarks/sbc_nuts.py " + " ".join(argv or []),
                 "Simulation-based calibration of NUTS", table, **summary,
                 p_values=p_values, ranks=ranks.tolist())
    print(summary)
    print("smallest p:", smallest)
    plot_ecdf(ranks, result.n_ranks, n_sims, args.figure or Path(args.out) / "sbc_ecdf.png")
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
