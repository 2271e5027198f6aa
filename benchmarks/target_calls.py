"""Target calls on a screen of one's own: where the planted (drug, gene) pairs land in the
ranked `targets.csv` of `gim-ppl fit`, and how many pairs are called targets.

For each seed, `toy_screen(seed)` (a sci-Plex3-like screen with a planted linear SCM, 10
drugs, 12 genes, 4 doses, 12 cells per drug and dose) is written as an .h5ad and fitted by
`gim-ppl fit --preset sciplex3 --holdout none` with its defaults, once per `--min-effect`
value. Per run: `planted_in_top_n` / `_2n` (planted pairs among the n / 2n highest
`score`s, n = number planted), `worst_rank`, `called` (pairs with `posterior_probability` ≥ 0.5),
`planted_called`, `called_below_0.1` (called pairs whose planted direct effect at the highest
dose is below 0.1 log1p: 0 for every non-target), `called_total_below_0.1` (the same with the
total effect through the planted graph, `δ (I − W)⁻¹`, so children of targets do not count),
and `called_mean_over_doses` (pairs whose per-dose probabilities of targets_by_dose.csv
average ≥ 0.5, the table before the drug-level posterior).

    python benchmarks/target_calls.py --seeds 0 1 2 --out target_calls      # JSON + Markdown
    python benchmarks/target_calls.py --quick --out /tmp/target_calls       # smoke run (CI)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from gim_ppl.cli import main as gim_ppl_cli
from gim_ppl.cli.machine import write_record
from gim_ppl.datasets import toy_screen

COLUMNS = ("seed", "min_effect", "n_planted", "planted_in_top_n", "planted_in_top_2n",
           "worst_rank", "called", "planted_called", "called_below_0.1",
           "called_total_below_0.1", "called_mean_over_doses")


def effects_at_top_dose(truth) -> tuple[np.ndarray, np.ndarray]:
    """`(direct, total)`, each `(n_drugs, n_genes)`: the planted Hill shift of each target at
    the highest dose (0 for non-targets) and its total effect through the planted linear
    SCM, `direct (I − W)⁻¹`."""
    top = max(truth.doses)
    direct = np.where(truth.targets, truth.emax * top**truth.hill
                      / (truth.ec50**truth.hill + top**truth.hill), 0.0)
    total = direct @ np.linalg.inv(np.eye(len(truth.genes)) - truth.weights)
    return direct, total


def score_run(targets, by_dose, truth, seed: int, min_effect) -> dict:
    """The row of one fit from its `targets.csv` and `targets_by_dose.csv` (DataFrames)."""
    direct, total = effects_at_top_dose(truth)
    pair = {(d, g): (i, j) for i, d in enumerate(truth.drugs) for j, g in enumerate(truth.genes)}
    planted = {k for k, (i, j) in pair.items() if truth.targets[i, j]}
    keys = list(zip(targets["perturbation"], targets["gene"], strict=True))
    ranks = sorted(keys.index(k) for k in planted)
    called = [k for k, p in zip(keys, targets["posterior_probability"], strict=True) if p >= 0.5]
    mean_p = by_dose.groupby(["perturbation", "gene"])["posterior_probability"].mean()
    return {
        "seed": seed, "min_effect": min_effect, "n_planted": len(planted),
        "planted_in_top_n": sum(r < len(planted) for r in ranks),
        "planted_in_top_2n": sum(r < 2 * len(planted) for r in ranks),
        "worst_rank": ranks[-1] + 1, "called": len(called),
        "planted_called": sum(k in planted for k in called),
        "called_below_0.1": int(sum(abs(direct[pair[k]]) < 0.1 for k in called)),
        "called_total_below_0.1": int(sum(abs(total[pair[k]]) < 0.1 for k in called)),
        "called_mean_over_doses": int((mean_p >= 0.5).sum()),
    }


def run_seed(seed: int, min_effects, steps: int | None, work: Path) -> list[dict]:
    import pandas as pd

    adata, truth = toy_screen(seed)
    path = work / f"screen_{seed}.h5ad"
    adata.write_h5ad(path)
    rows = []
    for min_effect in min_effects:
        out = work / f"fit_{seed}_{min_effect}"
        flags = ["fit", "--h5ad", str(path), "--preset", "sciplex3", "--cell-type", "A549",
                 "--genes", ",".join(truth.genes), "--holdout", "none", "--seed", str(seed),
                 "--out", str(out), "--no-progress"]
        flags += [] if steps is None else ["--steps", str(steps)]
        flags += [] if min_effect is None else ["--min-effect", str(min_effect)]
        if gim_ppl_cli(flags) != 0:
            raise RuntimeError(f"gim-ppl {' '.join(flags)} failed")
        rows.append(score_run(pd.read_csv(out / "targets.csv"),
                              pd.read_csv(out / "targets_by_dose.csv"), truth, seed,
                              min_effect))
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|---" * len(COLUMNS) + "|"]
    lines += ["| " + " | ".join("none" if r[c] is None else str(r[c]) for c in COLUMNS) + " |"
              for r in rows]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """This script's arguments (tests/test_docs_blocks.py parses the docs' command lines
    with it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--min-effects", type=float, nargs="+", default=[0.1],
                        help="--min-effect values run besides none (default: 0.1)")
    parser.add_argument("--steps", type=int, default=None,
                        help="Adam steps (default: gim-ppl fit's)")
    parser.add_argument("--quick", action="store_true",
                        help="seed 0, 200 steps, no --min-effect run (smoke run)")
    parser.add_argument("--out", default="target_calls")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    min_effects = [None, *args.min_effects]
    if args.quick:
        args.seeds, args.steps, min_effects = [0], 200, [None]
    with tempfile.TemporaryDirectory() as work:
        rows = [row for seed in args.seeds
                for row in run_seed(seed, min_effects, args.steps, Path(work))]
    table = markdown(rows)
    write_record(args.out, "target_calls",
                 "python benchmarks/target_calls.py "
                 + " ".join(sys.argv[1:] if argv is None else argv),
                 "Target calls on toy screens (gim-ppl fit, --holdout none)", table,
                 seeds=args.seeds, steps=args.steps, rows=rows)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
