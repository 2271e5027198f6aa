import sys

import jax
import numpy as np
import optax

import gim_ppl
from gim_ppl.datasets import center_on_controls

seed, key, hold = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
bench = gim_ppl.datasets.synthetic_hill(seed)
tr, offset = center_on_controls(bench.train)
m = gim_ppl.GIM(10, 10)
steps = 30000
T = int(hold * steps)
bias_lr = optax.piecewise_constant_schedule(0.0, {T: 1.0}) if T > 0 else 1.0
def labels(params):
    return {k: ("bias" if k.startswith("bias") else "main") for k in params}
opt = optax.multi_transform({"main": optax.adam(1e-3), "bias": optax.chain(optax.scale_by_adam(), optax.scale_by_schedule(lambda t: -1e-3 * (t >= T)))}, labels)
res = gim_ppl.fit(m, tr, steps=steps, key=jax.random.key(key), progress=False, optimizer=opt)
s = res.sites
pert = ~np.asarray(tr.observational)
post = m.posterior_targets(s, tr)[pert]
truth = bench.truth.targets["train"][pert]
fp = (post > 0.5) & ~truth
print(seed, key, hold, "AUROC %.3f" % gim_ppl.metrics.auroc(truth, post), "targets/ctx %.2f" % (post>0.5).sum(1).mean(), "FP per var", fp.sum(0), "bias", np.round(np.asarray(s["bias"]), 2))
