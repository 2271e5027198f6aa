"""Issue 11 (docs/reliability.md, section 1): where a fit starts. `fit` defaults with the
guide's start replaced: `median` (NumPyro's default, `init_to_median`), `zerohead` (Hill
and target heads at zero, emax/EC50/Hill biases at zero, every other site NumPyro's
`init_to_uniform`), `ctrl`
(intercepts and noise scales at the control cells), `dataw` (no edges, target bias −2); e.g.
`zerohead+ctrl+dataw` is `init_from_data` written out. Prints train target AUROC, targets per
context, unseen AUROC and on how many variables the fitted sign of `emax_bias` is right
(variables never targeted count as right).
Usage: python docs/scripts/issue11_start.py SEED KEY VARIANT [STEPS]"""
import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer.autoguide import AutoDelta
from numpyro.infer.initialization import init_to_value

import gim_ppl
from gim_ppl.evaluation import metrics

seed, key, variant = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
steps = int(sys.argv[4]) if len(sys.argv) > 4 else 30000
bench = gim_ppl.datasets.synthetic_hill(seed)
train = bench.train
d, p = train.n_vars, train.n_features
model = gim_ppl.GIM(d, p)
values = {}
if "zerohead" in variant:
    for h in ("target", "emax", "log_ec50", "log_hill"):
        values[f"{h}_weights"] = jnp.zeros((p, d))
    values["emax_bias"] = jnp.zeros(d)
    values["log_ec50_bias"] = jnp.zeros(d)
    values["log_hill_bias"] = jnp.zeros(d)
if "ctrl" in variant:
    ctrl = np.asarray(train.x)[np.asarray(train.context) == 0]
    values["bias"] = jnp.asarray(ctrl.mean(0))
    values["noise_scale"] = jnp.asarray(ctrl.std(0))
if "dataw" in variant:
    values["weights"] = jnp.zeros((d, d))
    values["target_bias"] = jnp.full(d, -2.0)
guide = (AutoDelta(model, init_loc_fn=init_to_value(values=values)) if values
         else AutoDelta(model))  # `median`: NumPyro's default start, init_to_median
t = time.time()
res = gim_ppl.fit(model, train, steps=steps, key=jax.random.key(key), guide=guide, progress=False)
pert = ~np.asarray(train.observational)
post = np.asarray(model.posterior_targets(res.sites, train))[pert]
truth = bench.truth.targets["train"][pert]
unseen = model.target_probabilities(res.sites, bench.full_ood)
tsign = np.sign(bench.truth.hill["train"]["emax"][1])
fsign = np.sign(np.asarray(res.sites["emax_bias"]))
targeted = bench.truth.targets["train"].any(0)
out = dict(seed=seed, key=key, variant=variant, auroc=metrics.auroc(truth, post),
           tpc=float((post > 0.5).sum(1).mean()),
           unseen=metrics.auroc(bench.truth.targets["full_ood"], np.asarray(unseen)),
           sign_ok=int(((tsign == fsign) | ~targeted).sum()), loss=float(res.losses[-1]),
           sec=time.time() - t)
print(json.dumps(out))
