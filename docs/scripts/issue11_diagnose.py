"""Issue 11 (docs/reliability.md, section 2): where a fit's false-positive targets are, and
what the intercepts do. Usage:

    python docs/scripts/issue11_diagnose.py SEED KEY                       # fit defaults
    python docs/scripts/issue11_diagnose.py SEED KEY --init-from-controls  # b, σ from controls
    python docs/scripts/issue11_diagnose.py SEED KEY --hold-intercepts 0.5 # centred data,
                                                                            # b frozen 1st half
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpyro.infer import init_to_value
from numpyro.infer.autoguide import AutoDelta

import gim_ppl
from gim_ppl.datasets import center_on_controls
from gim_ppl.evaluation import metrics

parser = argparse.ArgumentParser()
parser.add_argument("seed", type=int)
parser.add_argument("key", type=int)
parser.add_argument("--init-from-controls", action="store_true")
parser.add_argument("--hold-intercepts", type=float, default=0.0)
parser.add_argument("--steps", type=int, default=30_000)
args = parser.parse_args()

bench = gim_ppl.datasets.synthetic_hill(args.seed)
train = bench.train
model = gim_ppl.GIM(10, 10)
options = {}
if args.init_from_controls:
    control = train.control_cells()
    values = {"bias": jnp.asarray(control.mean(0)), "noise_scale": jnp.asarray(control.std(0))}
    options["guide"] = AutoDelta(model, init_loc_fn=init_to_value(values=values))
if args.hold_intercepts > 0:
    train, _ = center_on_controls(train)  # true intercepts are then 0
    release = int(args.hold_intercepts * args.steps)
    frozen_then_adam = optax.chain(
        optax.scale_by_adam(), optax.scale_by_schedule(lambda t: -1e-3 * (t >= release)))
    options["optimizer"] = optax.multi_transform(
        {"main": optax.adam(1e-3), "bias": frozen_then_adam},
        lambda params: {k: "bias" if k.startswith("bias") else "main" for k in params})
res = gim_ppl.fit(model, train, steps=args.steps, key=jax.random.key(args.key),
                  progress=False, **options)
sites = res.sites
pert = ~np.asarray(train.observational)
post = model.posterior_targets(sites, train)[pert]
pi = model.target_probabilities(sites, train)[pert]
truth = bench.truth.targets["train"][pert]
false_pos, true_pos = (post > 0.5) & ~truth, (post > 0.5) & truth
hill = model.hill_parameters(sites, train)
shift = np.asarray(gim_ppl.core.hill.hill_shift(
    np.asarray(train.dose)[:, None], hill["emax"], np.log(hill["ec50"]),
    np.log(hill["hill"])))[pert]
relative = np.abs(shift) / np.asarray(sites["noise_scale"])
print(f"seed {args.seed} key {args.key}: AUROC {metrics.auroc(truth, post):.3f}, "
      f"targets per context {(post > 0.5).sum(1).mean():.2f} (truth {truth.sum(1).mean():.2f})")
print(f"false positives {false_pos.sum()}, true positives {true_pos.sum()}; per variable "
      f"{false_pos.sum(0).tolist()}")
print(f"|shift| / sd: false positives {np.median(relative[false_pos]):.2f}, true positives "
      f"{np.median(relative[true_pos]):.2f}; π of false positives {np.median(pi[false_pos]):.2f}")
weights, true_w = model.edge_weights(sites), bench.truth.weights
print("SHD", metrics.shd(bench.truth.adjacency, model.graph(sites)), "largest |ΔW| on true "
      f"edges {np.abs(weights - true_w)[bench.truth.adjacency].max():.3f}")
print("intercepts truth", np.round(bench.truth.bias, 2))
print("intercepts fit  ", np.round(np.asarray(sites["bias"]), 2))
reach = np.linalg.matrix_power(np.eye(10) + bench.truth.adjacency, 10) > 0
descendant = np.array([reach[np.flatnonzero(t)].any(0) & ~t for t in truth])
print("false positives that descend from a true target:", (false_pos & descendant).sum())
