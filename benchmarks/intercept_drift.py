"""Where a fit's false-positive targets are, what the intercepts do, and what helps.

One `fit` of `synthetic_hill(SEED)` with key KEY, and one of:

- `fit` defaults: train target AUROC, targets per context, the false positives per variable,
  their |shift| / noise sd and π beside the true positives', SHD, the largest edge-weight
  error, fitted intercepts beside the truth, false positives descending from a true target;
- `--init-from-controls`: the same with intercepts and noise scales started at the control
  cells' means and sds (`init_to_value`);
- `--hold-intercepts F`: the same on data centred on the controls (true intercepts 0), the
  intercepts' learning rate 0 for the first F of the steps (`optax.multi_transform`);
- `--indicator-offsets TAU`: per-perturbation offsets on every head as partial pooling with
  a fixed scale: the features get one indicator column per perturbation whose head weights
  have a Normal(0, TAU) prior (unseen perturbations: all-zero columns, the feature map
  alone); train AUROC, targets per context and unseen AUROC.

docs/reliability.md, the baseline drifts.

    python benchmarks/intercept_drift.py --seed 6 --key 0 --out benchmarks/results/intercept_drift
    python benchmarks/intercept_drift.py --seed 6 --key 0 --indicator-offsets 0.5 \
        --out benchmarks/results/intercept_drift
    python benchmarks/intercept_drift.py --quick --out /tmp/drift         # smoke run (CI)
"""

from __future__ import annotations

import argparse

QUICK_DATA = dict(n_vars=4, n_train_perturbations=6, n_test_perturbations=3, n_cells=20,
                  n_test_cells=20, n_observational=100)


def diagnose(bench, seed: int, key: int, steps: int, init_from_controls: bool,
             hold_intercepts: float) -> dict:
    """The `fit` and its read-offs (printed as lines, returned as a row)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from numpyro.infer import init_to_value
    from numpyro.infer.autoguide import AutoDelta

    import gim_ppl
    from gim_ppl.datasets import center_on_controls
    from gim_ppl.evaluation import metrics

    train = bench.train
    d = train.n_vars
    model = gim_ppl.GIM(d, train.n_features)
    options = {}
    if init_from_controls:
        control = train.control_cells()
        values = {"bias": jnp.asarray(control.mean(0)),
                  "noise_scale": jnp.asarray(control.std(0))}
        options["guide"] = AutoDelta(model, init_loc_fn=init_to_value(values=values))
    if hold_intercepts > 0:
        train, _ = center_on_controls(train)  # true intercepts are then 0
        release = int(hold_intercepts * steps)
        frozen_then_adam = optax.chain(
            optax.scale_by_adam(), optax.scale_by_schedule(lambda t: -1e-3 * (t >= release)))
        options["optimizer"] = optax.multi_transform(
            {"main": optax.adam(1e-3), "bias": frozen_then_adam},
            lambda params: {k: "bias" if k.startswith("bias") else "main" for k in params})
    res = gim_ppl.fit(model, train, steps=steps, key=jax.random.key(key), progress=False,
                      **options)
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
    weights, true_w = model.edge_weights(sites), bench.truth.weights
    reach = np.linalg.matrix_power(np.eye(d) + bench.truth.adjacency, d) > 0
    descendant = np.array([reach[np.flatnonzero(t)].any(0) & ~t for t in truth])
    row = {"seed": seed, "key": key, "auroc": metrics.auroc(truth, post),
           "targets_per_context": float((post > 0.5).sum(1).mean()),
           "true_targets_per_context": float(truth.sum(1).mean()),
           "false_positives": int(false_pos.sum()), "true_positives": int(true_pos.sum()),
           "false_positives_per_variable": false_pos.sum(0).tolist(),
           "relative_shift_false_positives": float(np.median(relative[false_pos])),
           "relative_shift_true_positives": float(np.median(relative[true_pos])),
           "pi_false_positives": float(np.median(pi[false_pos])),
           "shd": metrics.shd(bench.truth.adjacency, model.graph(sites)),
           "max_weight_error_true_edges":
               float(np.abs(weights - true_w)[bench.truth.adjacency].max()),
           "intercepts_truth": np.asarray(bench.truth.bias).tolist(),
           "intercepts_fit": np.asarray(sites["bias"]).tolist(),
           "false_positives_descending": int((false_pos & descendant).sum())}
    print(f"seed {seed} key {key}: AUROC {row['auroc']:.3f}, targets per context "
          f"{row['targets_per_context']:.2f} (truth {row['true_targets_per_context']:.2f})")
    print(f"false positives {row['false_positives']}, true positives {row['true_positives']}; "
          f"per variable {row['false_positives_per_variable']}")
    print(f"|shift| / sd: false positives {row['relative_shift_false_positives']:.2f}, true "
          f"positives {row['relative_shift_true_positives']:.2f}; π of false positives "
          f"{row['pi_false_positives']:.2f}")
    print("SHD", row["shd"], "largest |ΔW| on true edges "
          f"{row['max_weight_error_true_edges']:.3f}")
    print("intercepts truth", np.round(bench.truth.bias, 2))
    print("intercepts fit  ", np.round(np.asarray(sites["bias"]), 2))
    print("false positives that descend from a true target:",
          row["false_positives_descending"])
    return row


def with_indicators(data, n_pert: int):
    """`data` with one indicator feature column per training perturbation (`(n_contexts,
    n_features + n_pert)`; all zero for controls and unseen perturbations)."""
    import jax.numpy as jnp
    import numpy as np

    pert = np.asarray(data.perturbation)
    onehot = np.zeros((data.n_contexts, n_pert))
    onehot[pert >= 0, pert[pert >= 0]] = 1.0
    features = jnp.concatenate([data.features, jnp.asarray(onehot, data.features.dtype)], 1)
    names = data.feature_names + tuple(f"is_{name}" for name in data.perturbation_names)
    return data.replace(features=features, feature_names=names)


def indicator_offsets(bench, seed: int, key: int, steps: int, tau: float) -> dict:
    """The fit with per-perturbation indicator features under a Normal(0, TAU) prior."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import numpyro.distributions as dist

    import gim_ppl
    from gim_ppl.evaluation import metrics

    train = bench.train
    n_pert, p, d = len(train.perturbation_names), train.n_features, train.n_vars

    def head_prior(feature_scale):
        scale = np.concatenate([np.full((p, d), feature_scale), np.full((n_pert, d), tau)])
        return dist.Normal(0.0, jnp.asarray(scale))

    priors = gim_ppl.Priors(target_weight=head_prior(1.0), emax_weight=head_prior(1.0),
                            log_ec50_weight=head_prior(0.5), log_hill_weight=head_prior(0.5))
    model = gim_ppl.GIM(d, p + n_pert, priors=priors)
    data = with_indicators(train, n_pert)
    res = gim_ppl.fit(model, data, steps=steps, key=jax.random.key(key), progress=False)
    pert = ~np.asarray(train.observational)
    post = model.posterior_targets(res.sites, data)[pert]
    truth = bench.truth.targets["train"][pert]
    unseen = model.target_probabilities(res.sites, with_indicators(bench.full_ood, n_pert))
    row = {"seed": seed, "key": key, "tau": tau, "auroc": metrics.auroc(truth, post),
           "targets_per_context": float((post > 0.5).sum(1).mean()),
           "unseen_auroc": metrics.auroc(bench.truth.targets["full_ood"], unseen)}
    print(f"seed {seed} key {key} tau {tau}: train AUROC {row['auroc']:.3f}, targets per "
          f"context {row['targets_per_context']:.2f}, unseen AUROC {row['unseen_auroc']:.3f}")
    return row


def build_parser() -> argparse.ArgumentParser:
    """This script's arguments (tests/test_docs_blocks.py parses the docs' command lines
    with it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--key", type=int, default=0)
    change = parser.add_mutually_exclusive_group()
    change.add_argument("--init-from-controls", action="store_true",
                        help="intercepts and noise scales start at the control cells")
    change.add_argument("--hold-intercepts", type=float, default=0.0, metavar="F",
                        help="centred data, intercepts frozen for the first F of the steps")
    change.add_argument("--indicator-offsets", type=float, metavar="TAU",
                        help="per-perturbation indicator features, head weights N(0, TAU)")
    parser.add_argument("--steps", type=int, default=30_000)
    parser.add_argument("--quick", action="store_true",
                        help="a tiny problem, 30 steps (smoke run)")
    parser.add_argument("--out", default="intercept_drift")
    return parser


def main(argv=None) -> int:
    import gim_ppl
    from gim_ppl.cli.machine import rows_markdown, write_record

    args = build_parser().parse_args(argv)
    data_options: dict = {}
    if args.quick:
        args.seed, args.key, args.steps, data_options = 0, 0, 30, QUICK_DATA
    bench = gim_ppl.datasets.synthetic_hill(args.seed, **data_options)
    if args.indicator_offsets is not None:
        row = indicator_offsets(bench, args.seed, args.key, args.steps, args.indicator_offsets)
        stem = "intercept_drift_indicator_offsets"
    else:
        row = diagnose(bench, args.seed, args.key, args.steps, args.init_from_controls,
                       args.hold_intercepts)
        stem = ("intercept_drift_init_from_controls" if args.init_from_controls
                else "intercept_drift_hold_intercepts" if args.hold_intercepts > 0
                else "intercept_drift")
    write_record(args.out, f"{stem}_seed{args.seed}_key{args.key}",
                 "python benchmarks/intercept_drift.py " + " ".join(argv or []),
                 "Intercept drift and false-positive targets", rows_markdown([row]),
                 steps=args.steps, rows=[row])
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
