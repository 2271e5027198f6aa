"""The closed loop of experimental design: which strategy reaches a good prediction first.

`gim_ppl.evaluation.design_loop.closed_loop(seed, strategy)` for every (seed, strategy) (10
start perturbations, 10 added contexts, AutoNormal fits of 3 000 steps, 100 posterior
draws); one row per (seed, strategy, round) appended to `design_loop.jsonl` in --out (each
row carries the command, commit and machine). Then, from every row in that file: per
strategy, the mean over seeds of the full-OOD mean error (relative to the control
prediction) and of the unseen-perturbation target AUROC after 0, 2, ..., 10 added contexts,
and per seed the first round at which each strategy reaches the error random selection has
after 10 (`design_loop.md`); the figure goes to --figure (default: design_loop.png in
--out). `--report` makes only the tables and the figure. docs/design.md, the closed loop.

    OPENBLAS_NUM_THREADS=1 python benchmarks/design_loop.py --strategies eig random \
        --seeds 0 1 2 3 4 --out benchmarks/results/design_loop
    python benchmarks/design_loop.py --report --out benchmarks/results/design_loop \
        --figure docs/design_loop.png
    python benchmarks/design_loop.py --quick --out /tmp/design_loop      # smoke run (CI)
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

STRATEGIES = ("eig", "eig_targets", "variance", "random")
ROUNDS = 11  # rounds 0..10: the start and 10 added contexts


def complete_runs(rows: list[dict], rounds: int = ROUNDS) -> dict:
    """`{(strategy, seed): {round: row}}` for the runs with every round."""
    runs: dict = defaultdict(dict)
    for r in rows:
        runs[(r["strategy"], r["seed"])][r["round"]] = r
    return {k: v for k, v in runs.items() if len(v) == rounds}


def report(rows: list[dict], figure, rounds: int = ROUNDS) -> str:
    """The tables (Markdown) of the complete runs in `rows`, and their figure at `figure`."""
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    complete = complete_runs(rows, rounds)
    strategies = [s for s in STRATEGIES if any(k[0] == s for k in complete)]
    seeds = sorted({k[1] for k in complete})
    last = rounds - 1
    shown = list(range(0, rounds, 2))

    def curve(strategy, metric):
        have = [s for s in seeds if (strategy, s) in complete]
        return have, np.array([[complete[(strategy, s)][i][metric] for i in range(rounds)]
                               for s in have])

    lines = []
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, metric, label in [(axes[0], "full_ood_error_rel", "full-OOD mean error / control"),
                              (axes[1], "unseen_auroc", "target AUROC, unseen perturbations")]:
        lines += ["", f"{label} (mean over seeds; rounds {', '.join(map(str, shown))})",
                  "| strategy | seeds | " + " | ".join(map(str, shown)) + " |",
                  "|---|---|" + "---|" * len(shown)]
        for strategy in strategies:
            have, values = curve(strategy, metric)
            mean = values.mean(0)
            lines.append(f"| {strategy} | {','.join(map(str, have))} | "
                         + " | ".join(f"{mean[i]:.3f}" for i in shown) + " |")
            if len(have) == len(seeds):  # the figure compares strategies on the same seeds
                ax.plot(range(rounds), mean, marker="o", ms=3,
                        label=f"{strategy} ({len(have)} seeds)")
        ax.set_xlabel("contexts added")
        ax.set_ylabel(label)
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(figure, dpi=110)
    plt.close(fig)

    lines += ["", f"first round reaching random's error after {last} (full-OOD error / "
              "control), per seed",
              "| strategy | " + " | ".join(f"seed {s}" for s in seeds) + " |",
              "|---|" + "---|" * len(seeds)]
    for strategy in strategies:
        cells = []
        for s in seeds:
            if (strategy, s) not in complete or ("random", s) not in complete:
                cells.append("—")
                continue
            goal = complete[("random", s)][last]["full_ood_error_rel"]
            hit = [i for i in range(rounds)
                   if complete[(strategy, s)][i]["full_ood_error_rel"] <= goal]
            cells.append(str(hit[0]) if hit else f"> {last}")
        lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    return "\n".join(lines).strip("\n")


def build_parser() -> argparse.ArgumentParser:
    """This script's arguments (tests/test_docs_blocks.py parses the docs' command lines
    with it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--report", action="store_true",
                        help="no runs: the tables and figure from design_loop.jsonl in --out")
    parser.add_argument("--quick", action="store_true",
                        help="`random` on seed 0, one added context, 30 steps, 5 draws "
                             "(smoke run)")
    parser.add_argument("--out", default="design_loop")
    parser.add_argument("--figure", help="the figure (default: design_loop.png in --out)")
    return parser


def main(argv=None) -> int:
    from gim_ppl.cli.machine import provenance, write_record

    args = build_parser().parse_args(argv)
    command = "python benchmarks/design_loop.py " + " ".join(argv or [])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows_path = out / "design_loop.jsonl"
    loop_options, rounds = {}, ROUNDS
    if args.quick:
        args.strategies, args.seeds = ["random"], [0]
        loop_options, rounds = {"n_added": 1, "steps": 30, "n_draws": 5}, 2
    if not args.report:
        from gim_ppl.evaluation.design_loop import closed_loop

        run = provenance(command)
        for seed in args.seeds:
            for strategy in args.strategies:
                def log(row):
                    with rows_path.open("a") as f:
                        f.write(json.dumps({**row, **run}) + "\n")
                    print(json.dumps(row), flush=True)

                closed_loop(seed, strategy, log=log, **loop_options)
    rows = [json.loads(line) for line in rows_path.open()]
    table = report(rows, args.figure or out / "design_loop.png", rounds)
    write_record(out, "design_loop", command, "The closed loop of experimental design", table,
                 rows_file=rows_path.name)
    print(table)
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
