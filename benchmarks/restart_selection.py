"""Restarts selected on held-out perturbations: does the selection pick good restarts?

Each (seed, key) fits `synthetic_hill(seed)` with `fit(..., restarts=R)` (`GIM(10, 10)`
defaults, STEPS steps) in a process pool (one CPU thread per job) and records, per restart,
its held-out score, final loss, train and unseen target AUROC and full-OOD mean error (300
predicted cells per context), which restart was selected, the control prediction's full-OOD
error and the restarts' agreement report. docs/reliability.md, restarts.

    python benchmarks/restart_selection.py --seeds 0 1 2 3 4 5 6 7 --keys 0 1 --restarts 4 \
        --workers 16 --out benchmarks/results/restart_selection
    python benchmarks/restart_selection.py --quick --out /tmp/restarts    # smoke run (CI)
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "fit_variants", Path(__file__).with_name("fit_variants.py"))
fit_variants = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fit_variants)  # its tiny quick problem and its process pool
QUICK_DATA, run_jobs = fit_variants.QUICK_DATA, fit_variants.run_jobs


def job(args):
    """One (seed, key) fit with R restarts and the scores of every restart (a row)."""
    seed, key, R, steps, data_options = args
    import warnings

    import jax
    import numpy as np

    import gim_ppl
    from gim_ppl.evaluation import metrics

    bench = gim_ppl.datasets.synthetic_hill(seed, **data_options)
    model = gim_ppl.GIM(bench.train.n_vars, bench.train.n_features)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = gim_ppl.fit(model, bench.train, steps=steps, key=jax.random.key(key),
                          progress=False, restarts=R)
    secs = time.perf_counter() - t0
    rep = res.restarts
    pert = ~np.asarray(bench.train.observational)
    truth = bench.truth.targets["train"][pert]
    post = np.asarray(model.posterior_targets(rep.sites, bench.train))[:, pert]
    prior_ood = np.asarray(model.target_probabilities(rep.sites, bench.full_ood))
    auroc = [metrics.auroc(truth, p) for p in post]
    auroc_ood = [metrics.auroc(bench.truth.targets["full_ood"], p) for p in prior_ood]
    err = []
    for r in range(R):
        sites = {k: v[r] for k, v in rep.sites.items()}
        pred = model.predict(sites, bench.full_ood, key=jax.random.key(1), n_cells=300)
        err.append(metrics.mean_error(pred, bench.full_ood))
    ctrl = bench.train.control_cells()
    ctrl_err = float(np.linalg.norm(bench.full_ood.context_means() - ctrl.mean(0), axis=1).mean())
    return {"seed": seed, "key": key, "R": R, "secs": round(secs, 1),
            "scores": rep.scores.tolist(), "selected": rep.selected,
            "final_loss": rep.losses[:, -1].tolist(),
            "auroc": auroc, "auroc_ood": auroc_ood, "err_full_ood": err,
            "ctrl_err_full_ood": ctrl_err,
            "agreement": rep.agreement._asdict()}


def summary_rows(rows: list[dict]) -> list[dict]:
    """Per (seed, key): the selected restart's train AUROC beside restart 0's and the best."""
    return [{"seed": r["seed"], "key": r["key"], "selected": r["selected"],
             "auroc_selected": r["auroc"][r["selected"]], "auroc_restart_0": r["auroc"][0],
             "auroc_best": max(r["auroc"]), "err_full_ood_selected":
             r["err_full_ood"][r["selected"]], "ctrl_err_full_ood": r["ctrl_err_full_ood"],
             "secs": r["secs"]} for r in rows if "error" not in r]


def build_parser() -> argparse.ArgumentParser:
    """This script's arguments (tests/test_docs_blocks.py parses the docs' command lines
    with it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(8)))
    parser.add_argument("--keys", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--restarts", type=int, default=4)
    parser.add_argument("--steps", type=int, default=30_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count(),
                        help="processes (1: run in this process)")
    parser.add_argument("--quick", action="store_true",
                        help="a tiny problem, one seed and key, 2 restarts of 30 steps, in "
                             "this process (smoke run)")
    parser.add_argument("--out", default="restart_selection")
    return parser


def main(argv=None) -> int:
    from gim_ppl.cli.machine import rows_markdown, write_record

    args = build_parser().parse_args(argv)
    data_options: dict = {}
    if args.quick:
        args.seeds, args.keys, args.restarts, args.steps, args.workers = [0], [0], 2, 30, 1
        data_options = QUICK_DATA
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(s, k, args.restarts, args.steps, data_options) for s in args.seeds
            for k in args.keys]
    rows = run_jobs(job, jobs, args.workers, out / "restart_selection.rows.jsonl")
    rows = sorted(rows, key=lambda r: (r.get("seed", -1), r.get("key", -1)))
    table = rows_markdown(summary_rows(rows))
    write_record(out, "restart_selection",
                 "python benchmarks/restart_selection.py " + " ".join(argv or []),
                 "Restarts selected on held-out perturbations", table, seeds=args.seeds,
                 keys=args.keys, restarts=args.restarts, steps=args.steps, rows=rows)
    print(table)
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
