"""Issue 11 (docs/reliability.md, table 1): fit variants over seeds x keys in a process pool
(one CPU thread per job). Usage:
python docs/scripts/issue11_variants.py OUT.jsonl VARIANTS SEEDS KEYS [STEPS] [WORKERS]"""
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed


def job(args):
    variant, seed, key, steps = args
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
    from gim_ppl.evaluation.benchmark import evaluate_gim

    bench = gim_ppl.datasets.synthetic_hill(seed)
    opts = dict(v.split("=") for v in variant.split("+")[1:])
    base = variant.split("+")[0]


    model = gim_ppl.GIM(10, 10, target_sparsity=float(opts.get("beta", 1.0)))
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
            **{k: float(v) for k, v in s.items()}}


if __name__ == "__main__":
    out, variants, seeds, keys = sys.argv[1:5]
    steps = int(sys.argv[5]) if len(sys.argv) > 5 else 30000
    workers = int(sys.argv[6]) if len(sys.argv) > 6 else os.cpu_count()
    jobs = [(v, int(s), int(k), steps) for v in variants.split(",") for s in seeds.split(",")
            for k in keys.split(",")]
    os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    os.environ["JAX_PLATFORMS"] = "cpu"
    with ProcessPoolExecutor(workers) as pool, open(out, "a") as f:
        futures = [pool.submit(job, j) for j in jobs]
        for fut in as_completed(futures):
            try:
                row = fut.result()
            except Exception as err:  # report and go on
                row = {"error": repr(err)}
            f.write(json.dumps(row) + "\n")
            f.flush()
            print(json.dumps(row), flush=True)
