import sys

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer import init_to_value
from numpyro.infer.autoguide import AutoDelta

import gim_ppl

seed, key = int(sys.argv[1]), int(sys.argv[2])
bench = gim_ppl.datasets.synthetic_hill(seed)
tr = bench.train
ctrl = tr.control_cells()
m = gim_ppl.GIM(10, 10)
vals = {"bias": jnp.asarray(ctrl.mean(0)), "noise_scale": jnp.asarray(ctrl.std(0))}
guide = AutoDelta(m, init_loc_fn=init_to_value(values=vals))
res = gim_ppl.fit(m, tr, steps=30000, key=jax.random.key(key), progress=False, guide=guide)
s = res.sites
pert = ~np.asarray(tr.observational)
post = m.posterior_targets(s, tr)[pert]
truth = bench.truth.targets["train"][pert]
fp = (post > 0.5) & ~truth
print(seed, key, "AUROC %.3f" % gim_ppl.metrics.auroc(truth, post), "targets/ctx %.2f" % (post>0.5).sum(1).mean(), "FP per var", fp.sum(0))
print("bias true", np.round(bench.truth.bias, 2), "fit", np.round(np.asarray(s['bias']), 2))
