"""Issue 11: does held-out selection pick good restarts? Usage:
python docs/scripts/issue11_restarts.py OUT.jsonl SEEDS KEYS R [STEPS] [WORKERS]"""
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed


def job(args):
    seed, key, R, steps = args
    import warnings

    import jax
    import numpy as np

    import gim_ppl
    from gim_ppl.evaluation import metrics

    bench = gim_ppl.datasets.synthetic_hill(seed)
    model = gim_ppl.GIM(10, 10)
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


if __name__ == "__main__":
    out, seeds, keys, R = sys.argv[1:5]
    steps = int(sys.argv[5]) if len(sys.argv) > 5 else 30000
    workers = int(sys.argv[6]) if len(sys.argv) > 6 else os.cpu_count()
    os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    os.environ["JAX_PLATFORMS"] = "cpu"
    jobs = [(int(s), int(k), int(R), steps) for s in seeds.split(",") for k in keys.split(",")]
    with ProcessPoolExecutor(workers) as pool, open(out, "a") as f:
        for fut in as_completed([pool.submit(job, j) for j in jobs]):
            try:
                row = fut.result()
            except Exception as err:
                row = {"error": repr(err)}
            f.write(json.dumps(row) + "\n")
            f.flush()
            print(json.dumps(row), flush=True)
