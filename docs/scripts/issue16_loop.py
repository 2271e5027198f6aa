"""The closed loop of experimental design (issue 16, docs/design.md).

    OPENBLAS_NUM_THREADS=1 python docs/scripts/issue16_loop.py STRATEGY[,STRATEGY] SEED [SEED ...]

Appends one JSON row per (seed, strategy, round) to docs/data/issue16_loop.jsonl:
`gim_ppl.evaluation.design_loop.closed_loop(seed, strategy)` for every strategy (10 start
perturbations, 10 added contexts, AutoNormal fits of 3 000 steps, 100 posterior draws).
"""

import json
import sys
from pathlib import Path

from gim_ppl.evaluation.design_loop import STRATEGIES, closed_loop

out = Path(__file__).resolve().parents[1] / "data" / "issue16_loop.jsonl"
strategies = STRATEGIES if sys.argv[1] == "all" else sys.argv[1].split(",")
for seed in (int(s) for s in sys.argv[2:]):
    for strategy in strategies:
        def log(row):
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)

        closed_loop(seed, strategy, log=log)
