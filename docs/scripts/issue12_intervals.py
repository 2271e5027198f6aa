"""Issue 12 (docs/unseen.md): uncertainty for new perturbations. One fit of the default GIM
on `synthetic_hill(SEED)` with `AutoNormal` started from the data (30 000 steps, key 0), 200
posterior draws (`FitResult.posterior_draws`), and on the 20 unseen perturbations:
- π averaged over draws: AUROC, Brier score and the reliability bins (10 equal-width bins:
  count, Σπ, Σ true — poolable over seeds);
- the coverage of 90 % intervals of the predicted mean of each (context, variable)
  (`GIM.predicted_means`, 100 cells per draw) of the true interventional mean (5 000 true
  cells per context), with the interval width;
- the same π scores for the MAP fit (`fit` defaults) beside them.
Usage: python docs/scripts/issue12_intervals.py SEED   (prints one JSON line)"""

import json
import sys
import time
import warnings

import jax
import numpy as np
from numpyro.infer.autoguide import AutoNormal

import gim_ppl
from gim_ppl.evaluation import metrics

seed = int(sys.argv[1])
bench = gim_ppl.datasets.synthetic_hill(seed)
train, new = bench.train, bench.full_ood
model = gim_ppl.GIM(train.n_vars, train.n_features)
truth = np.asarray(bench.truth.targets["full_ood"])
out = {"seed": seed}
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    start = time.time()
    res = gim_ppl.fit(model, train, steps=30_000, key=jax.random.key(0), progress=False,
                      guide=AutoNormal(model, init_loc_fn=gim_ppl.init_from_data(train)))
    out["seconds"] = round(time.time() - start, 1)
    point = gim_ppl.fit(model, train, steps=30_000, key=jax.random.key(0),
                        progress=False).sites
draws = res.posterior_draws(jax.random.key(1), 200)
for name, pi in (("autonormal", model.target_probabilities(draws, new).mean(0)),
                 ("map", model.target_probabilities(point, new))):
    out[f"auroc_{name}"] = metrics.auroc(truth, pi)
    out[f"brier_{name}"] = metrics.brier_score(truth, pi)
    p, y = pi.ravel(), truth.ravel().astype(float)
    bins = np.minimum((p * 10).astype(int), 9)
    out[f"bins_{name}"] = {"count": np.bincount(bins, minlength=10).tolist(),
                           "sum_p": np.bincount(bins, p, 10).tolist(),
                           "sum_y": np.bincount(bins, y, 10).tolist()}
means = model.predicted_means(draws, new, key=jax.random.key(2), n_cells=100)
low, high = np.quantile(means, [0.05, 0.95], axis=0)
true_means = np.asarray(bench.sample("full_ood", jax.random.key(3), 5000).context_means())
inside = (true_means >= low) & (true_means <= high)
out["coverage90"] = float(inside.mean())
out["coverage90_targeted"] = float(inside[truth > 0].mean())  # (context, variable) targeted
out["interval_width"] = float((high - low).mean())
print(json.dumps(out), flush=True)
