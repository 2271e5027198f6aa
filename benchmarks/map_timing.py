"""Seconds per SVI step of the intervention maps, side by side in one process.

`gim_ppl.evaluation.perf.map_step_timing` (the maps section of `gim-ppl bench --perf`):
NumPyro SVI steps (AutoDelta, exact marginal, d = 10) of each map on
`synthetic_hill(0, n_train_perturbations=P)` for each P. docs/performance.md, intervention
maps.

    OPENBLAS_NUM_THREADS=1 python benchmarks/map_timing.py --perturbations 40 320 \
        --out benchmarks/results/map_timing
    python benchmarks/map_timing.py --quick --out /tmp/map_timing         # smoke run (CI)
"""

from __future__ import annotations

import argparse


def build_parser() -> argparse.ArgumentParser:
    """This script's arguments (tests/test_docs_blocks.py parses the docs' command lines
    with it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--perturbations", type=int, nargs="+", default=[40, 320],
                        help="numbers of training perturbations P")
    parser.add_argument("--steps", type=int, default=100, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true",
                        help="P = 4, 2 steps, 1 repeat (smoke run)")
    parser.add_argument("--out", default="map_timing")
    return parser


def main(argv=None) -> int:
    from gim_ppl.cli.machine import rows_markdown, write_record
    from gim_ppl.evaluation.perf import map_step_timing

    args = build_parser().parse_args(argv)
    if args.quick:
        args.perturbations, args.steps, args.repeats = [4], 2, 1
    rows = map_step_timing(tuple(args.perturbations), n_steps=args.steps, repeats=args.repeats)
    table = rows_markdown(rows)
    write_record(args.out, "map_timing", "python benchmarks/map_timing.py " + " ".join(argv or []),
                 "Seconds per SVI step of the intervention maps", table,
                 perturbations=args.perturbations, steps=args.steps, repeats=args.repeats,
                 rows=rows)
    print(table)
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
