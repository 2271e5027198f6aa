"""NUTS on the default GIM across edge-orientation modes: does R-hat pass, and if not, which
modes do the chains sit in and how much does each weigh?

Per (n_vars, seed): `synthetic_hill(seed, n_vars=d, n_train_perturbations=10, n_cells=20)`,
the default GIM, `--chains` chains × (`--warmup` + `--samples`) of `run_mcmc` (NOTEARS factor),
started two ways:
- `data_start`: `run_mcmc`'s default, every chain from `init_from_data` with its own jitter;
- `one_map`: every chain from the MAP of `gim_ppl.fit` (`init_to_value`; `--steps`).
Reported per run (`gim_ppl.diagnose`): the largest R-hat over all scalars and over the
scalars other than `weights`, divergences, the diagnosis' hint; and for `data_start` the
orientation modes: each chain's edge set (mean |W[i, j]| ≥ 0.1 and ≥ 2 · mean |W[j, i]|),
chains with different sets being different modes, the edges in which they differ, and each
mode's weight from its chain's draws, pseudo-BMA on the training cells (softmax over chains
of log-mean-exp of the exact log-likelihood over draws: in-sample, so it favours the better
fit).

    python benchmarks/nuts_modes.py --out benchmarks/results/nuts_modes   # d = 5, 10; seeds 0-4
    python benchmarks/nuts_modes.py --quick --out /tmp/nuts_modes      # smoke run
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings

import jax
import numpy as np
from numpyro.infer.initialization import init_to_value
from scipy.special import logsumexp, softmax

import gim_ppl
from gim_ppl.cli.machine import write_record

EDGE = 0.1
RATIO = 2.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-vars", type=int, nargs="+", default=[5, 10])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--steps", type=int, default=10_000, help="MAP steps for one_map")
    parser.add_argument("--quick", action="store_true",
                        help="d = 3, seed 0, 2 chains × (10 + 10), 30 steps (smoke run)")
    parser.add_argument("--out", default="nuts_modes")
    return parser


def edge_sets(weights: np.ndarray, names) -> list[frozenset]:
    """Each chain's edges `"a → b"` from `weights (chains, draws, d, d)`."""
    mean = np.abs(weights).mean(1) * (1 - np.eye(weights.shape[-1]))
    out = []
    for m in mean:
        keep = (m >= EDGE) & (m >= RATIO * m.T)
        out.append(frozenset(f"{names[i]} → {names[j]}" for i, j in zip(*np.nonzero(keep),
                                                                          strict=True)))
    return out


def run_problem(d: int, seed: int, args) -> list[dict]:
    data = gim_ppl.datasets.synthetic_hill(seed, n_vars=d, n_train_perturbations=10,
                                           n_cells=20).train
    model = gim_ppl.GIM(d, data.n_features)
    key = jax.random.key(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        point = gim_ppl.fit(model, data, steps=args.steps, key=key, progress=False).sites
    rows = []
    for start_name, init in (("data_start", None), ("one_map", init_to_value(values=point))):
        kwargs = {} if init is None else {"init_strategy": init}
        begin = time.perf_counter()
        mcmc = gim_ppl.run_mcmc(model, data, key=key, num_warmup=args.warmup,
                                num_samples=args.samples, num_chains=args.chains, **kwargs)
        seconds = time.perf_counter() - begin
        diagnosis = gim_ppl.diagnose(mcmc, warn=False)
        table = diagnosis.table
        site = np.array([str(i).split("[")[0] for i in table.index])
        row = {"n_vars": d, "seed": seed, "start": start_name, "seconds": round(seconds, 1),
               "max_rhat": float(table["r_hat"].max()),
               "max_rhat_not_weights": float(table["r_hat"][site != "weights"].max()),
               "divergences": diagnosis.divergences, "hint": diagnosis.hints}
        if start_name == "data_start":
            samples = mcmc.get_samples(group_by_chain=True)
            sets = edge_sets(np.asarray(samples["weights"]), data.var_names)
            sites = {s: np.asarray(samples[s]) for s in model.site_shapes}
            loglik = np.stack([np.asarray(model.log_likelihood(
                {s: v[c] for s, v in sites.items()}, data)) for c in range(args.chains)])
            weights = softmax(logsumexp(loglik, axis=1) - np.log(loglik.shape[1]))
            modes: dict = {}
            for c, edges in enumerate(sets):
                modes.setdefault(edges, []).append(c)
            common = frozenset.intersection(*sets)
            row["modes"] = [{"chains": chains, "weight": float(weights[chains].sum()),
                             "edges_beyond_common": sorted(edges - common)}
                            for edges, chains in modes.items()]
        rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| d | seed | start | max R-hat | max R-hat (not W) | divergences | modes "
             "(chains: weight; edges beyond those common to all) | seconds |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        modes = "; ".join(
            f"{m['chains']}: {m['weight']:.2f} ({', '.join(m['edges_beyond_common']) or '—'})"
            for m in r.get("modes", [])) or "—"
        lines.append(f"| {r['n_vars']} | {r['seed']} | {r['start']} | {r['max_rhat']:.3f} | "
                     f"{r['max_rhat_not_weights']:.3f} | {r['divergences']} | {modes} | "
                     f"{r['seconds']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.n_vars, args.seeds = [3], [0]
        args.chains, args.warmup, args.samples, args.steps = 2, 10, 10, 30
    rows = []
    for d in args.n_vars:
        for seed in args.seeds:
            rows += run_problem(d, seed, args)
            for r in rows[-2:]:
                print(json.dumps(r), flush=True)
    table = markdown(rows)
    write_record(args.out, "nuts_modes",
                 "python benchmarks/nuts_modes.py " + " ".join(sys.argv[1:] if argv is None
                                                                 else argv),
                 "NUTS across edge-orientation modes", table, rows=rows)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
