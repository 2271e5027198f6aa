import sys

import jax
import numpy as np

import gim_ppl
from gim_ppl.core.hill import hill_shift

seed, key = int(sys.argv[1]), int(sys.argv[2])
bench = gim_ppl.datasets.synthetic_hill(seed)
m = gim_ppl.GIM(10, 10)
res = gim_ppl.fit(m, bench.train, steps=30000, key=jax.random.key(key), progress=False)
s = res.sites
tr = bench.train
pert = ~np.asarray(tr.observational)
post = m.posterior_targets(s, tr)[pert]
pi = m.target_probabilities(s, tr)[pert]
h = m.hill_parameters(s, tr)
shift = np.asarray(hill_shift(np.asarray(tr.dose)[:, None], h["emax"], np.log(h["ec50"]), np.log(h["hill"])))[pert]
sigma = np.asarray(s["noise_scale"])
truth = bench.truth.targets["train"][pert]
fp = (post > 0.5) & ~truth
tp = (post > 0.5) & truth
print("AUROC", gim_ppl.metrics.auroc(truth, post), "targets/ctx", (post>0.5).sum(1).mean())
print("false pos:", fp.sum(), "true pos:", tp.sum(), "missed:", (truth & (post<=0.5)).sum())
z = np.abs(shift) / sigma
print("|shift|/sigma  FP median %.3f  TP median %.3f" % (np.median(z[fp]), np.median(z[tp])))
print("pi FP median %.3f  TP median %.3f; pi of true negatives mean %.3f" % (np.median(pi[fp]), np.median(pi[tp]), pi[~truth].mean()))
print("post FP median %.3f" % np.median(post[fp]))
# fraction FP with tiny shift
print("FP with |s|/sigma < 0.1:", (z[fp] < 0.1).mean())
W = np.asarray(m.edge_weights(s)); Wt = bench.truth.weights
print("true W nonzero vs fit:")
for i, j in zip(*np.nonzero(Wt)):
    print(f"  {i}->{j} true {Wt[i,j]:+.2f} fit {W[i,j]:+.2f} rev {W[j,i]:+.2f}")
print("bias true", np.round(bench.truth.bias, 2), "fit", np.round(np.asarray(s['bias']), 2))
print("sigma true", np.round(bench.truth.noise_scale, 2), "fit", np.round(sigma, 2))
# FP: is j a child/descendant of a true target?
A = bench.truth.adjacency.astype(int); D = np.zeros_like(A); P = np.eye(10, dtype=int)
for _ in range(10):
    P = (P @ A > 0).astype(int); D |= P
desc = np.zeros_like(fp)
for k in range(fp.shape[0]):
    tg = np.flatnonzero(truth[k])
    desc[k] = D[tg].any(0) if tg.size else False
print("FP that are descendants of a true target:", (fp & desc).sum(), "/", fp.sum())
print("FP per variable:", fp.sum(0), "true targets per variable:", truth.sum(0))
