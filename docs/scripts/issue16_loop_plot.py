"""Figure and tables of the design closed loop (docs/design.md) from
docs/data/issue16_loop.jsonl (written by docs/scripts/issue16_loop.py).

    python docs/scripts/issue16_loop_plot.py

Prints, per strategy, the mean over seeds of the full-OOD mean error (relative to the
control prediction) and of the unseen-perturbation target AUROC after 0, 2, ..., 10 added
contexts, and per seed the first round at which each strategy reaches (error at most) the
error random selection has after 10; writes docs/design_loop.png.
"""

import json
from collections import defaultdict
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

docs = Path(__file__).resolve().parents[1]
rows = [json.loads(line) for line in (docs / "data" / "issue16_loop.jsonl").open()]
runs = defaultdict(dict)
for r in rows:
    runs[(r["strategy"], r["seed"])][r["round"]] = r
complete = {k: v for k, v in runs.items() if len(v) == 11}
strategies = [s for s in ("eig", "eig_targets", "variance", "random")
              if any(k[0] == s for k in complete)]
seeds = sorted({k[1] for k in complete})


def curve(strategy, metric):
    have = [s for s in seeds if (strategy, s) in complete]
    return have, np.array([[complete[(strategy, s)][i][metric] for i in range(11)]
                           for s in have])


fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
for ax, metric, label in [(axes[0], "full_ood_error_rel", "full-OOD mean error / control"),
                          (axes[1], "unseen_auroc", "target AUROC, unseen perturbations")]:
    print(f"\n{label} (mean over seeds; rounds 0, 2, 4, 6, 8, 10)")
    print("| strategy | seeds | " + " | ".join(str(i) for i in range(0, 11, 2)) + " |")
    print("|---|---|" + "---|" * 6)
    for strategy in strategies:
        have, values = curve(strategy, metric)
        mean = values.mean(0)
        print(f"| {strategy} | {','.join(map(str, have))} | "
              + " | ".join(f"{mean[i]:.3f}" for i in range(0, 11, 2)) + " |")
        if len(have) == len(seeds):  # the figure compares strategies on the same seeds
            ax.plot(range(11), mean, marker="o", ms=3, label=f"{strategy} ({len(have)} seeds)")
    ax.set_xlabel("contexts added")
    ax.set_ylabel(label)
axes[0].legend(fontsize=7)
fig.tight_layout()
fig.savefig(docs / "design_loop.png", dpi=110)

print("\nfirst round reaching random's error after 10 (full-OOD error / control), per seed")
print("| strategy | " + " | ".join(f"seed {s}" for s in seeds) + " |")
print("|---|" + "---|" * len(seeds))
for strategy in strategies:
    cells = []
    for s in seeds:
        if (strategy, s) not in complete or ("random", s) not in complete:
            cells.append("—")
            continue
        goal = complete[("random", s)][10]["full_ood_error_rel"]
        hit = [i for i in range(11) if complete[(strategy, s)][i]["full_ood_error_rel"] <= goal]
        cells.append(str(hit[0]) if hit else "> 10")
    print(f"| {strategy} | " + " | ".join(cells) + " |")
