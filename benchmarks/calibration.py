"""VSBC of SVI on the small calibration GIM, key by key, with the power of its negative control.

Per key (`gim_ppl.evaluation.calibration.vsbc`; `calibration_problem()`, 39 scalars, AutoNormal
or `--guide multivariate_normal`, 3 000 steps, 500 guide draws): the smallest KS symmetry
p-value over the scalars and the scalars below the threshold 0.01 / K (Bonferroni) for the
fitted guide; then, with `--control-shift S` (prior sds, unconstrained space), the same fits
read off with every location moved by S prior sds, and how many scalars the threshold then
catches (the control's power at an error of that size). The CI test
(tests/evaluation/test_calibration.py) runs key 0 with four scalars moved by half a prior sd.

    python benchmarks/calibration.py --keys 0 1 2 3 4 --out benchmarks/results/calibration
    python benchmarks/calibration.py --quick --out /tmp/calibration      # smoke run (CI)
"""

from __future__ import annotations

import argparse
import sys
import time

import jax

from gim_ppl.cli.machine import write_record
from gim_ppl.evaluation.calibration import (
    GUIDES,
    calibration_problem,
    prior_sd_unconstrained,
    vsbc,
    vsbc_p_values,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--sims", type=int, default=100, help="simulated data sets per key")
    parser.add_argument("--steps", type=int, default=3000, help="SVI steps per data set")
    parser.add_argument("--guide", choices=sorted(GUIDES), default="normal")
    parser.add_argument("--control-shift", type=float, default=0.5,
                        help="prior sds the negative control moves each location (0: none)")
    parser.add_argument("--quick", action="store_true",
                        help="key 0, 4 data sets of 50 steps (smoke run)")
    parser.add_argument("--out", default="calibration")
    return parser


def run_key(key: int, args) -> dict:
    problem = calibration_problem()
    start = time.perf_counter()
    names, p = vsbc_p_values(vsbc(problem, key=jax.random.PRNGKey(key), n_sims=args.sims,
                                  steps=args.steps, guide=args.guide))
    threshold = 0.01 / p.size
    row = {"key": key, "guide": args.guide, "n_scalars": int(p.size),
           "threshold": threshold, "min_p": float(p.min()),
           "failing": [n for n, v in zip(names, p, strict=True) if v < threshold],
           "p_values": dict(zip(names, p.tolist(), strict=True))}
    if args.control_shift and args.guide == "normal":
        sd = prior_sd_unconstrained(problem.model)
        shift = {s: args.control_shift * v for s, v in sd.items()}
        _, control = vsbc_p_values(vsbc(problem, key=jax.random.PRNGKey(key),
                                        n_sims=args.sims, steps=args.steps, shift=shift))
        row["control_shift"] = args.control_shift
        row["control_missed"] = [n for n, v in zip(names, control, strict=True)
                                 if v >= threshold]
        row["control_p_values"] = dict(zip(names, control.tolist(), strict=True))
    row["seconds"] = round(time.perf_counter() - start, 1)
    return row


def markdown(rows: list[dict]) -> str:
    lines = ["| key | guide | smallest p | scalars failing (of K) | control: caught (of K) "
             "| control: missed | seconds |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        failing = f"{len(r['failing'])}" + (f": {', '.join(r['failing'])}" if r["failing"]
                                            else "")
        if "control_missed" in r:
            caught = f"{r['n_scalars'] - len(r['control_missed'])} at {r['control_shift']} sd"
            missed = ", ".join(r["control_missed"]) or "none"
        else:
            caught = missed = "—"
        lines.append(f"| {r['key']} | {r['guide']} | {r['min_p']:.2g} | {failing} | {caught} "
                     f"| {missed} | {r['seconds']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.keys, args.sims, args.steps = [0], 4, 50
    rows = [run_key(key, args) for key in args.keys]
    table = markdown(rows)
    write_record(args.out, "calibration",
                 "python benchmarks/calibration.py " + " ".join(sys.argv[1:] if argv is None
                                                                 else argv),
                 "VSBC of SVI on the calibration GIM, with the negative control's power",
                 table, rows=rows, sims=args.sims, steps=args.steps)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
