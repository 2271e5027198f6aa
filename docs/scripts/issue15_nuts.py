"""Issue 15 (docs/reliability.md): NUTS on the default model. `run_mcmc` on
`synthetic_hill(0, n_vars=5, n_train_perturbations=10, n_cells=20)` (the default model,
spectral penalty) with VARIANT: `notears` (`run_mcmc`'s default: it samples with the NOTEARS
factor), `spectral_exact` (`run_mcmc(..., acyclicity="model")`: the spectral penalty
differentiated through its power iterations) or `spectral_surrogate` (the spectral penalty
with the fixed-vector gradient `fit` uses, as `run_mcmc` ran it before).
2 chains × WARMUP + SAMPLES draws, chains from the data start with jitter 0.1, key 0.
Prints one JSON line: wall time, divergences, max R-hat, min bulk/tail ESS over the model's
sample sites, bulk ESS per second, E-BFMI (`gim_ppl.diagnose`).
Usage: python docs/scripts/issue15_nuts.py VARIANT [WARMUP SAMPLES [N_VARS=5 [CHAINS=2]]]"""

import json
import sys
import time

import jax
from numpyro.infer import MCMC, NUTS

import gim_ppl
from gim_ppl.inference.mcmc import MCMC_JITTER

variant = sys.argv[1]
warmup, samples = (int(sys.argv[2]), int(sys.argv[3])) if len(sys.argv) > 3 else (500, 500)
n_vars = int(sys.argv[4]) if len(sys.argv) > 4 else 5
chains = int(sys.argv[5]) if len(sys.argv) > 5 else 2
bench = gim_ppl.datasets.synthetic_hill(0, n_vars=n_vars, n_train_perturbations=10,
                                        n_cells=20)
data = bench.train
model = gim_ppl.GIM(n_vars, data.n_features)
start = time.time()
if variant == "spectral_surrogate":  # run_mcmc's settings, without with_exact_gradients()
    mcmc = MCMC(NUTS(model, init_strategy=gim_ppl.init_from_data(data, jitter=MCMC_JITTER)),
                num_warmup=warmup, num_samples=samples, num_chains=chains,
                chain_method="sequential", progress_bar=False)
    mcmc.run(jax.random.key(0), data, extra_fields=("diverging", "energy"))
else:
    mcmc = gim_ppl.run_mcmc(model, data, key=jax.random.key(0), num_warmup=warmup,
                            num_samples=samples, num_chains=chains,
                            acyclicity="model" if variant == "spectral_exact" else "notears")
seconds = time.time() - start
idata = gim_ppl.to_arviz(model, mcmc, data)
d = gim_ppl.diagnose(idata, var_names=list(model.site_shapes), warn=False)
print(json.dumps({
    "variant": variant, "n_vars": n_vars, "chains": chains, "warmup": warmup,
    "samples": samples, "seconds": round(seconds, 1),
    "divergences": d.divergences, "max_r_hat": round(float(d.table["r_hat"].max()), 3),
    "min_ess_bulk": round(float(d.table["ess_bulk"].min()), 1),
    "min_ess_tail": round(float(d.table["ess_tail"].min()), 1),
    "min_ess_bulk_per_s": round(float(d.table["ess_bulk"].min()) / seconds, 3),
    "bfmi": [round(float(b), 3) for b in d.bfmi], "n_scalars": len(d.table),
    "problems": list(d.problems)}), flush=True)
