"""Fit variants side by side: `fit` defaults, plain NumPyro `svi.run`, annealed sparsity.

Each (variant, seed, key) fits the GIM on `synthetic_hill(seed)` (`GIM(10, 10)` defaults,
STEPS Adam steps) in a process pool (one CPU thread per job) and scores it by
`gim_ppl.evaluation.protocol.evaluate_gim`, with the mean-shift detector's train target
AUROC, targets per context, edges (|w| > 0.3), reversed edges and SHD beside it. VARIANT:
`fit` (`gim_ppl.fit` defaults), `plain` (AutoDelta + `svi.run`, Adam 1e-3), and options
after `+`: `beta=B` (`target_sparsity`), `down=F` (β_I from F× down to 1× over the first half,
a cosine), `const=1` (a constant β_I). docs/reliability.md, single fits with NumPyro's start.

    python benchmarks/fit_variants.py --variants fit plain fit+down=10 \
        --seeds 0 1 2 3 4 5 6 7 8 9 --keys 0 1 2 --workers 16 \
        --out benchmarks/results/fit_variants
    python benchmarks/fit_variants.py --quick --out /tmp/fit_variants     # smoke run (CI)
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

#: `synthetic_hill` options of the quick run (a tiny problem).
QUICK_DATA = dict(n_vars=4, n_train_perturbations=6, n_test_perturbations=3, n_cells=20,
                  n_test_cells=20, n_observational=100)


def job(args):
    """One (variant, seed, key) fit and its scores (a row)."""
    variant, seed, key, steps, data_options = args
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from numpyro.infer import SVI, Trace_ELBO
    from numpyro.infer.autoguide import AutoDelta
    from numpyro.optim import optax_to_numpyro

    import gim_ppl
    from gim_ppl.evaluation import metrics
    from gim_ppl.evaluation.protocol import evaluate_gim

    bench = gim_ppl.datasets.synthetic_hill(seed, **data_options)
    opts = dict(v.split("=") for v in variant.split("+")[1:])
    base = variant.split("+")[0]
    model = gim_ppl.GIM(bench.train.n_vars, bench.train.n_features,
                        target_sparsity=float(opts.get("beta", 1.0)))
    t0 = time.perf_counter()
    kwargs = {}
    if "down" in opts:
        f, final = float(opts["down"]), model.target_sparsity
        T = 0.5 * (steps - 1)
        kwargs["target_sparsity"] = lambda t: final + (f * final - final) * 0.5 * (
            1.0 + jnp.cos(jnp.pi * jnp.clip(t / T, 0.0, 1.0)))
    if "const" in opts:
        kwargs["target_sparsity"] = float(model.target_sparsity)
    if base == "fit":
        res = gim_ppl.fit(model, bench.train, steps=steps, key=jax.random.key(key),
                          progress=False, **kwargs)
        sites, final_loss = res.sites, float(res.losses[-1])
    elif base == "plain":
        guide = AutoDelta(model)
        svi = SVI(model, guide, optax_to_numpyro(optax.adam(1e-3)), Trace_ELBO())
        r = svi.run(jax.random.key(key), steps, bench.train, progress_bar=False)
        sites = {k: v for k, v in guide.median(r.params).items() if k in model.site_shapes}
        final_loss = float(r.losses[-1])
    else:
        raise ValueError(f"variant must start with fit or plain, got {variant!r}")
    secs = time.perf_counter() - t0
    s = evaluate_gim(model, sites, bench, key=jax.random.key(1))
    pert = ~np.asarray(bench.train.observational)
    post = np.asarray(model.posterior_targets(sites, bench.train))[pert]
    w = np.abs(np.asarray(model.edge_weights(sites)))
    truth = bench.truth.adjacency
    means = bench.train.context_means()
    ctrl = bench.train.control_cells()
    score = np.abs(means - ctrl.mean(0)) / ctrl.std(0)
    return {"variant": variant, "seed": seed, "key": key, "secs": round(secs, 1),
            "final_loss": final_loss,
            "meanshift_auroc": metrics.auroc(bench.truth.targets["train"][pert], score[pert]),
            "targets_per_ctx": float((post > 0.5).sum(1).mean()),
            "true_targets_per_ctx": float(bench.truth.targets["train"][pert].sum(1).mean()),
            "edges": int((w > 0.3).sum()), "true_edges": int(truth.sum()),
            "reversed": int(((w > 0.3) & truth.T & ~truth).sum()),
            "shd": metrics.shd(truth, model.graph(sites)),
            **{k: v if isinstance(v, str) else float(v) for k, v in s.items()}}


def run_jobs(job_fn, jobs: list, workers: int, rows_path: Path) -> list[dict]:
    """`job_fn` over `jobs`: in this process for one worker, else in a process pool with one
    CPU thread per job; each row (or `{"error": ...}`) is appended to `rows_path` as it
    arrives and printed."""
    rows = []

    def keep(row):
        rows.append(row)
        with rows_path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)

    if workers == 1:
        for j in jobs:
            keep(job_fn(j))
        return rows
    os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    os.environ["JAX_PLATFORMS"] = "cpu"
    with ProcessPoolExecutor(workers) as pool:
        for fut in as_completed([pool.submit(job_fn, j) for j in jobs]):
            try:
                row = fut.result()
            except Exception as err:  # report and go on
                row = {"error": repr(err)}
            keep(row)
    return rows


COLUMNS = ("variant", "seed", "key", "target_auroc_train_posterior", "meanshift_auroc",
           "target_auroc_full_ood", "mean_error_full_ood", "mean_error_full_ood_control",
           "targets_per_ctx", "true_targets_per_ctx", "shd", "secs")


def build_parser() -> argparse.ArgumentParser:
    """This script's arguments (tests/test_docs_blocks.py parses the docs' command lines
    with it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["fit", "plain", "fit+down=10"])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--keys", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=30_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count(),
                        help="processes (1: run in this process)")
    parser.add_argument("--quick", action="store_true",
                        help="`fit` on a tiny problem, one seed and key, 30 steps, in this "
                             "process (smoke run)")
    parser.add_argument("--out", default="fit_variants")
    return parser


def main(argv=None) -> int:
    from gim_ppl.cli.machine import rows_markdown, write_record

    args = build_parser().parse_args(argv)
    data_options: dict = {}
    if args.quick:
        args.variants, args.seeds, args.keys, args.steps, args.workers = (
            ["fit"], [0], [0], 30, 1)
        data_options = QUICK_DATA
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(v, s, k, args.steps, data_options) for v in args.variants for s in args.seeds
            for k in args.keys]
    rows = run_jobs(job, jobs, args.workers, out / "fit_variants.rows.jsonl")
    rows = sorted(rows, key=lambda r: (str(r.get("variant")), r.get("seed", -1),
                                       r.get("key", -1)))
    table = rows_markdown([r for r in rows if "error" not in r], COLUMNS)
    write_record(out, "fit_variants", "python benchmarks/fit_variants.py " + " ".join(argv or []),
                 "Fit variants", table, variants=args.variants, seeds=args.seeds,
                 keys=args.keys, steps=args.steps, rows=rows)
    print(table)
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
