"""Issue 12 (docs/unseen.md): intervention maps and shrinkage priors on unseen perturbations.
One `fit` (defaults, 30 000 steps, key 0) of `synthetic_hill(SEED)` with VARIANT, scored by
`gim_ppl.evaluation.stability.fit_scores` (the stability benchmark's scores, with the
`oracle_features` reference and Brier scores of π on the unseen perturbations).

VARIANT: `linear` (the default map), `ard`, `horseshoe` (`shrinkage=`), `gp`
(`intervention_map="gp"`, anchors = the training perturbations) or `gp_pooled` (the GP
with per-perturbation offsets). NOISE (default 0): that many extra feature columns of pure
N(0, 1) noise per perturbation (the truth ignores them), as with a chemical embedding of
which only some dimensions matter.
Usage: python docs/scripts/issue12_maps.py SEED VARIANT [NOISE]   (prints one JSON line)"""

import json
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

import gim_ppl
from gim_ppl.evaluation.stability import fit_scores

seed, variant = int(sys.argv[1]), sys.argv[2]
noise = int(sys.argv[3]) if len(sys.argv) > 3 else 0
bench = gim_ppl.datasets.synthetic_hill(seed)
if noise:
    # one noise row per perturbation, shared by its contexts in every split (0 for controls)
    rows = np.random.default_rng(1000 + seed).normal(
        size=(len(bench.train.perturbation_names), noise))

    def widen(data):
        pert = np.asarray(data.perturbation)
        extra = np.where((pert >= 0)[:, None], rows[np.maximum(pert, 0)], 0.0)
        return data.replace(features=jnp.concatenate(
            [data.features, jnp.asarray(extra, data.features.dtype)], 1),
            feature_names=data.feature_names + tuple(f"noise_{i}" for i in range(noise)))

    bench = bench.__class__(train=widen(bench.train), partial_ood=widen(bench.partial_ood),
                            full_ood=widen(bench.full_ood), truth=bench.truth)
p = bench.train.n_features
options = {"linear": {}, "ard": {"shrinkage": "ard"}, "horseshoe": {"shrinkage": "horseshoe"},
           "gp": {"intervention_map": "gp", "map_anchors": bench.train},
           "gp_pooled": {"intervention_map": "gp", "map_anchors": bench.train}}[variant]
if variant.endswith("pooled"):
    ids, _ = bench.train.perturbation_contexts()
    options["pooled"] = [bench.train.perturbation_names[i] for i in ids]
model = gim_ppl.GIM(bench.train.n_vars, p, **options)
start = time.time()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    res = gim_ppl.fit(model, bench.train, steps=30_000, key=jax.random.key(0), progress=False)
seconds = time.time() - start
s = fit_scores(model, res.sites, bench)
print(json.dumps(dict(seed=seed, variant=variant, noise=noise, seconds=round(seconds, 1),
                      **{k: round(v, 4) for k, v in s.items()})), flush=True)
