"""Issue 11 (docs/reliability.md, section 2): per-perturbation offsets on every head, as
partial pooling with a fixed scale — the features get one indicator column per perturbation
whose head weights have a Normal(0, TAU) prior (unseen perturbations: all-zero columns, so
the feature map alone). Usage: python docs/scripts/issue11_pooling.py SEED KEY TAU"""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

import gim_ppl
from gim_ppl.evaluation import metrics

seed, key, tau = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
bench = gim_ppl.datasets.synthetic_hill(seed)
train = bench.train
n_pert, p, d = len(train.perturbation_names), train.n_features, train.n_vars


def with_indicators(data):
    pert = np.asarray(data.perturbation)
    onehot = np.zeros((data.n_contexts, n_pert))
    onehot[pert >= 0, pert[pert >= 0]] = 1.0
    features = jnp.concatenate([data.features, jnp.asarray(onehot, data.features.dtype)], 1)
    names = data.feature_names + tuple(f"is_{name}" for name in data.perturbation_names)
    return data.replace(features=features, feature_names=names)


def head_prior(feature_scale):
    scale = np.concatenate([np.full((p, d), feature_scale), np.full((n_pert, d), tau)])
    return dist.Normal(0.0, jnp.asarray(scale))


priors = gim_ppl.Priors(target_weight=head_prior(1.0), emax_weight=head_prior(1.0),
                        log_ec50_weight=head_prior(0.5), log_hill_weight=head_prior(0.5))
model = gim_ppl.GIM(d, p + n_pert, priors=priors)
data = with_indicators(train)
res = gim_ppl.fit(model, data, steps=30_000, key=jax.random.key(key), progress=False)
pert = ~np.asarray(train.observational)
post = model.posterior_targets(res.sites, data)[pert]
truth = bench.truth.targets["train"][pert]
unseen = model.target_probabilities(res.sites, with_indicators(bench.full_ood))
print(f"seed {seed} key {key} tau {tau}: train AUROC {metrics.auroc(truth, post):.3f}, "
      f"targets per context {(post > 0.5).sum(1).mean():.2f}, unseen AUROC "
      f"{metrics.auroc(bench.truth.targets['full_ood'], unseen):.3f}")
