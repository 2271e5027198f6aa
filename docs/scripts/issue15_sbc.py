"""Simulation-based calibration of NUTS on a small GIM (issue 15, docs/calibration.md).

    OPENBLAS_NUM_THREADS=1 python docs/scripts/issue15_sbc.py [N_SIMS=500] [KEY=0]

Writes docs/data/issue15_sbc.json (ranks, χ² p-values per scalar, divergences, ESS, time)
and docs/sbc_ecdf.png (ECDF difference of every scalar's fractional ranks, 99 % band).
"""

import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

from gim_ppl.evaluation.calibration import (
    calibration_problem,
    ecdf_difference,
    flat_ranks,
    rank_uniformity,
    sbc_nuts,
    scalar_names,
)

n_sims = int(sys.argv[1]) if len(sys.argv) > 1 else 500
key = int(sys.argv[2]) if len(sys.argv) > 2 else 0
docs = Path(__file__).resolve().parents[1]
start = time.perf_counter()
result = sbc_nuts(calibration_problem(), key=jax.random.key(key), n_sims=n_sims,
                  progress=lambda i: print(f"{i + 1}/{n_sims} {time.perf_counter() - start:.0f} s",
                                           flush=True) if (i + 1) % 25 == 0 else None)
ranks = flat_ranks(result.ranks)
names = scalar_names(result.ranks)
p = rank_uniformity(ranks, result.n_ranks, n_bins=20)
k = len(names)
out = {
    "command": f"python docs/scripts/issue15_sbc.py {n_sims} {key}",
    "n_sims": n_sims, "key": key, "n_ranks": result.n_ranks, "thin": 10, "n_warmup": 500,
    "n_bins": 20, "n_scalars": k,
    "p_values": dict(zip(names, np.round(p, 5).tolist(), strict=True)),
    "min_p": float(p.min()), "bonferroni_threshold": 0.01 / k,
    "n_below_0.01": int((p < 0.01).sum()), "n_below_bonferroni": int((p < 0.01 / k).sum()),
    "divergent_transitions": int(result.divergences.sum()),
    "data_sets_with_divergences": int((result.divergences > 0).sum()),
    "min_bulk_ess_median": float(np.median(result.min_ess)),
    "min_bulk_ess_min": float(result.min_ess.min()),
    "seconds_per_data_set_median": float(np.median(result.seconds)),
    "total_seconds": time.perf_counter() - start,
    "ranks": ranks.tolist(),
}
(docs / "data").mkdir(exist_ok=True)
(docs / "data" / "issue15_sbc.json").write_text(json.dumps(out))
print({k: v for k, v in out.items() if k not in ("ranks", "p_values")})
print("smallest p:", sorted(out["p_values"].items(), key=lambda kv: kv[1])[:5])

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

z, diff, lower, upper = ecdf_difference(ranks, result.n_ranks)
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.fill_between(z, lower, upper, color="0.85", label="99 % band (one scalar)")
ax.plot(z, diff, color="C0", lw=0.6, alpha=0.6)
ax.axhline(0, color="k", lw=0.5)
ax.set_xlabel("fractional rank")
ax.set_ylabel("ECDF − uniform")
ax.set_title(f"NUTS SBC, {k} scalars, {n_sims} data sets, {result.n_ranks} ranks")
ax.legend(loc="upper right", fontsize=8)
fig.tight_layout()
fig.savefig(docs / "sbc_ecdf.png", dpi=120)
