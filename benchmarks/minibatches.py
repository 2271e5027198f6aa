"""Minibatches: how much target recovery and prediction accuracy a minibatch fit loses
against the full batch, for cells drawn within contexts and for whole perturbations.

Per seed: `synthetic_hill(seed, mechanism=--mechanism)` (40 training drugs × 4 doses of 50
cells, 800 control cells); the default GIM of that mechanism (`pooled` training drugs, Adam
1e-3, `--steps`, key 0) fitted with each `--modes` entry:
- `full`: every cell every step;
- `cells:B`: `batch_size=B`, B cells per context per step (`stratified_batch`);
- `perturbations:N`: `batch_size=PerturbationBatches(N)`, N of the 40 drugs with all their
  cells and the same fraction of the control cells per step (`perturbation_batch`).
`cells:25` and `perturbations:20` cost about the same per step (4 025 and 4 400 of the
8 800 cells). Reported: target AUROC of the training contexts (posterior) and of the new
drugs (from features), mean errors of new doses and new drugs (`evaluate_gim`), wall time.

    python benchmarks/minibatches.py --seeds 0 1 2 3 4 --out benchmarks/results/minibatches
    python benchmarks/minibatches.py --quick --out /tmp/minibatches   # smoke run
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings

import jax
import numpy as np

import gim_ppl
from gim_ppl.cli.machine import write_record
from gim_ppl.evaluation.protocol import evaluate_gim

METRICS = {"target_auroc_train_posterior": "AUROC train", "target_auroc_full_ood":
           "AUROC new drugs", "mean_error_partial_ood": "err new doses",
           "mean_error_full_ood": "err new drugs"}


def parse_mode(mode: str):
    """`full` → None, `cells:B` → B, `perturbations:N` → `PerturbationBatches(N)`."""
    kind, _, size = mode.partition(":")
    if kind == "full" and not size:
        return None
    if kind in ("cells", "perturbations") and size.isdigit() and int(size) > 0:
        return int(size) if kind == "cells" else gim_ppl.PerturbationBatches(int(size))
    raise argparse.ArgumentTypeError(
        f"--modes: expected full, cells:B or perturbations:N (B, N > 0), got {mode!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--modes", nargs="+", default=["full", "cells:25", "perturbations:20"])
    parser.add_argument("--mechanism", choices=("mlp", "linear"), default="mlp")
    parser.add_argument("--steps", type=int, default=30_000)
    parser.add_argument("--quick", action="store_true",
                        help="seed 0, 100 steps (smoke run)")
    parser.add_argument("--out", default="minibatches")
    return parser


def run(seed: int, mode: str, mechanism: str, steps: int) -> dict:
    bench = gim_ppl.datasets.synthetic_hill(seed, mechanism=mechanism)
    train = bench.train
    model = gim_ppl.GIM(train.n_vars, train.n_features, mechanism=mechanism, pooled=train)
    start = time.perf_counter()
    with warnings.catch_warnings():  # a linear GIM warns that it needs no minibatches
        warnings.simplefilter("ignore", UserWarning)
        res = gim_ppl.fit(model, train, steps=steps, key=jax.random.key(0), progress=False,
                          batch_size=parse_mode(mode))
    seconds = time.perf_counter() - start
    out = evaluate_gim(model, res.sites, bench, key=jax.random.key(1))
    return {"seed": seed, "mode": mode, "seconds": seconds, "message": res.message,
            **{k: float(out[k]) for k in METRICS}}


def markdown(rows) -> str:
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    lines = ["| mode | seeds | " + " | ".join(f"{v} (mean, worst)" for v in METRICS.values())
             + " | wall s (mean) |", "|---" * (len(METRICS) + 3) + "|"]
    for mode in modes:
        sel = [r for r in rows if r["mode"] == mode]
        cells = []
        for k in METRICS:
            v = np.array([r[k] for r in sel])
            worst = v.min() if k.startswith("target") else v.max()
            cells.append(f"{v.mean():.3f} ({worst:.3f})")
        lines.append(f"| {mode} | {len(sel)} | " + " | ".join(cells)
                     + f" | {np.mean([r['seconds'] for r in sel]):.0f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    for mode in args.modes:
        parse_mode(mode)
    if args.quick:
        args.seeds, args.steps = [0], 100
    rows = []
    for seed in args.seeds:
        for mode in args.modes:
            rows.append(run(seed, mode, args.mechanism, args.steps))
            print(json.dumps(rows[-1]), flush=True)
    table = markdown(rows)
    write_record(args.out, "minibatches",
                 "python benchmarks/minibatches.py " + " ".join(sys.argv[1:] if argv is None
                                                                  else argv),
                 "Minibatch fits against the full batch", table, seeds=args.seeds,
                 modes=args.modes, mechanism=args.mechanism, steps=args.steps, rows=rows)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
