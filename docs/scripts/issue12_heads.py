"""Issue 12 (docs/unseen.md): intervention-map priors for unseen perturbations. One `fit`
(defaults, key 0) of `synthetic_hill(SEED)` with VARIANT, scored by `evaluate_gim`:
`base` (default priors), `scaled` (head weights N(0, s/√p): s = 1 for the target and emax
heads, 0.5 for log EC50 and log Hill, so a head's output sd does not grow with the number of
features p), `scaled_hill` (the same for the three Hill heads only), and `pooled…` (the same
with per-perturbation offsets, `GIM(..., pooled=training perturbations)`).
Usage: python docs/scripts/issue12_heads.py SEED VARIANT   (prints one JSON line)"""

import json
import sys
import time

import jax
import numpy as np
import numpyro.distributions as dist

import gim_ppl
from gim_ppl.evaluation.benchmark import evaluate_gim

seed, variant = int(sys.argv[1]), sys.argv[2]
bench = gim_ppl.datasets.synthetic_hill(seed)
p = bench.train.n_features
r = 1 / np.sqrt(p)
hill = dict(emax_weight=dist.Normal(0, r), log_ec50_weight=dist.Normal(0, 0.5 * r),
            log_hill_weight=dist.Normal(0, 0.5 * r))
if variant.endswith("scaled"):
    priors = gim_ppl.Priors(target_weight=dist.Normal(0, r), **hill)
elif variant.endswith("scaled_hill"):
    priors = gim_ppl.Priors(**hill)
else:
    priors = None
pooled = None
if variant.startswith("pooled"):
    ids, _ = bench.train.perturbation_contexts()
    pooled = [bench.train.perturbation_names[i] for i in ids]
model = gim_ppl.GIM(10, p, priors=priors, pooled=pooled)
start = time.time()
res = gim_ppl.fit(model, bench.train, steps=30_000, key=jax.random.key(0), progress=False)
s = evaluate_gim(model, res.sites, bench, key=jax.random.key(1))
print(json.dumps(dict(
    seed=seed, variant=variant, train=round(s["target_auroc_train_posterior"], 3),
    unseen=round(s["target_auroc_full_ood"], 3), full=round(s["mean_error_full_ood"], 3),
    full_ctrl=round(s["mean_error_full_ood_control"], 3),
    part=round(s["mean_error_partial_ood"], 3),
    part_ctrl=round(s["mean_error_partial_ood_control"], 3), sec=round(time.time() - start))))
