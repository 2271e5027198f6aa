"""`gim-ppl bench`: run every method on the synthetic benchmark protocol, several seeds, and
write results.json / results.md; with `--perf`, the performance benchmark (perf.json / .md);
with `--sachs`, the Sachs benchmark (sachs.json / sachs.md; its peers need `[peers]`).
All need the `[bench]` extra; the evaluation modules are imported when the command runs."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from gim_ppl.cli.arguments import NON_NEGATIVE_INT, POSITIVE_FLOAT, POSITIVE_INT
from gim_ppl.cli.machine import machine_description


def _chosen_methods(text: str | None, allowed: tuple, default: tuple,
                    mode: str) -> tuple | None:
    """`--methods` as a tuple (`default` when not given); None, after printing the error,
    when it names a method `mode` does not have."""
    methods = tuple(text.split(",")) if text else default
    unknown = [m for m in methods if m not in allowed]
    if unknown:
        print(f"gim-ppl bench: error: unknown --methods {unknown} for {mode}; choose from "
              f"{allowed}", file=sys.stderr)
        return None
    return methods


def _given(**options) -> dict:
    """The options the user set (not None): overrides of a config's defaults."""
    return {k: v for k, v in options.items() if v is not None}


def _perf(args) -> int:
    from gim_ppl.evaluation.perf import PerfConfig, perf_markdown, run_perf

    config = PerfConfig.quick() if args.quick else PerfConfig()
    if args.large:
        config = dataclasses.replace(config, large=tuple(args.large))
    machine = machine_description()
    print(f"machine: {machine}")
    results = {**run_perf(config), "machine": machine}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "perf.json").write_text(json.dumps(results, indent=2))
    md = f"# gim_ppl performance\n\nMachine: {machine}.\n\n{perf_markdown(results)}\n"
    (out / "perf.md").write_text(md)
    print(md)
    print(f"wrote {out / 'perf.json'} and {out / 'perf.md'}")
    return 0


def _stability(args) -> int:
    from gim_ppl.evaluation.stability import (
        METHODS,
        StabilityConfig,
        run_stability,
        stability_markdown,
        summarise,
        write_stability,
    )

    methods = _chosen_methods(args.methods, METHODS, ("fit", "plain"), "--stability")
    if methods is None:
        return 2
    overrides = _given(
        methods=methods, seeds=tuple(args.seeds) if args.seeds else None,
        keys=tuple(args.keys) if args.keys else None, steps=args.steps,
        restarts=args.restarts, workers=args.workers)
    config = StabilityConfig(**overrides)
    machine = machine_description()
    print(f"machine: {machine}")
    print(f"config: {config}")
    rows = run_stability(config)
    json_path, md_path = write_stability(rows, args.out, machine=machine, config=config)
    print(stability_markdown(summarise(rows)))
    print(f"wrote {json_path} and {md_path}")
    return 0


def _sachs(args) -> int:
    from gim_ppl.evaluation.sachs_benchmark import METHODS, SachsConfig, run_sachs, write_sachs

    methods = _chosen_methods(args.methods, METHODS, METHODS, "--sachs")
    if methods is None:
        return 2
    config = SachsConfig(**_given(
        methods=methods, keys=tuple(args.keys) if args.keys else None, steps=args.steps,
        learning_rate=args.learning_rate, conditions=args.conditions,
        coarsening=args.coarsening))
    machine = machine_description()
    flags = [f"--{k.replace('_', '-')} {v}" for k, v in dict(
        conditions=args.conditions, steps=args.steps, learning_rate=args.learning_rate,
        methods=args.methods, coarsening=args.coarsening).items() if v is not None]
    flags += [f"--keys {' '.join(map(str, args.keys))}"] if args.keys else []
    command = " ".join(["gim-ppl bench --sachs", *flags, f"--out {args.out}",
                        *([f"--page {args.page}"] if args.page else [])])
    print(f"machine: {machine}")
    print(f"config: {config}")
    results = run_sachs(config)
    out = Path(args.out)
    json_path, md_path = write_sachs(results, out / "sachs.json", out / "sachs.md",
                                     machine=machine, command=command)
    if args.page:  # the docs page: only its block between the sachs-tables markers
        write_sachs(results, json_path, args.page, machine=machine, command=command)
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}")
    return 0


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(v) for v in text.split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 2:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers of training perturbations >= 2, e.g. "
            f"20,40,80,160, got {text!r}")
    return sizes


def _learning_curve(args, config) -> int:
    from gim_ppl.evaluation.learning_curve import run_learning_curve, write_learning_curve

    machine = machine_description()
    print(f"machine: {machine}")
    print(f"config: {config}; sizes {list(args.learning_curve)}")
    results = run_learning_curve(config, args.learning_curve)
    json_path, md_path = write_learning_curve(results, args.out, machine=machine)
    print(md_path.read_text())
    written = [json_path, md_path]
    try:
        from gim_ppl.plots import plot_learning_curve
    except ImportError as err:  # the figure needs the [plots] extra; the tables do not
        print(f"no figure: {err}")
    else:
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 3, figsize=(15, 4), layout="constrained")
        for ax, metric in zip(axes, ("full_ood_wasserstein", "full_ood_error_over_control",
                                     "target_auroc_full_ood"), strict=True):
            plot_learning_curve(results["summary"], metric, ax=ax)
        fig.savefig(Path(args.out) / "learning_curve.png", dpi=120)
        written.append(Path(args.out) / "learning_curve.png")
    print("wrote " + ", ".join(map(str, written)))
    return 0


#: The options that belong to one mode only (the others are shared or read by several).
MODE_ONLY = {"conditions": "sachs", "page": "sachs", "coarsening": "sachs",
             "restarts": "stability", "workers": "stability", "large": "perf"}


def _mode(args) -> str:
    for name in ("perf", "stability", "sachs", "learning_curve"):
        if getattr(args, name):
            return name
    return "protocol"


def _misplaced(args) -> str | None:
    """The first option given for a mode other than the one chosen, as an error message."""
    chosen = _mode(args)
    for option, mode in MODE_ONLY.items():
        if getattr(args, option) not in (None, (), []) and mode != chosen:
            flag = "--" + option.replace("_", "-")
            return (f"{flag} belongs to --{mode.replace('_', '-')}, not to "
                    + ("the protocol (no mode flag)" if chosen == "protocol"
                       else f"--{chosen.replace('_', '-')}"))
    if args.keys and chosen not in ("stability", "sachs"):
        return "--keys belongs to --stability or --sachs"
    return None


def run(args) -> int:
    """`gim-ppl bench`: the benchmark protocol, or with `--perf` the performance benchmark,
    or with `--stability` the stability benchmark."""
    misplaced = _misplaced(args)  # before the heavy imports: a typo fails at once
    if misplaced is not None:
        print(f"gim-ppl bench: error: {misplaced}", file=sys.stderr)
        return 2
    from gim_ppl.evaluation.protocol import METHODS, BenchConfig, run_benchmark, write_results

    if args.perf:
        return _perf(args)
    if args.stability:
        return _stability(args)
    if args.sachs:
        return _sachs(args)
    methods = tuple(args.methods.split(",")) if args.methods else METHODS
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        print(f"unknown methods {unknown}; choose from {METHODS}", file=sys.stderr)
        return 2
    overrides = {k: v for k, v in dict(
        seeds=tuple(args.seeds) if args.seeds else None, n_vars=args.n_vars,
        mechanism=args.mechanism, graph=args.graph, steps=args.steps,
        learning_rate=args.learning_rate, methods=methods).items() if v is not None}
    config = BenchConfig.quick(**overrides) if args.quick else BenchConfig(**overrides)
    if args.learning_curve:
        return _learning_curve(args, config)
    machine = machine_description()
    print(f"machine: {machine}")
    print(f"config: {config}")
    results = run_benchmark(config, progress=not args.no_progress)
    json_path, md_path = write_results(results, args.out, machine=machine)
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}")
    return 0


def _cells_by_vars(text: str) -> tuple[int, int]:
    try:
        n, d = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--large expects CELLSxVARS such as 1000000x1000, got {text!r}") from None
    if n < 1 or d < 2:
        raise argparse.ArgumentTypeError(f"--large needs cells >= 1 and vars >= 2, got {text!r}")
    return n, d


def add_parser(sub) -> None:
    """Register `gim-ppl bench`."""
    bench = sub.add_parser(
        "bench", help="run every method on the synthetic protocol, several seeds; write "
                      "results.json and results.md",
        description="Run the GIM and the baselines on the synthetic benchmark protocol for "
                     "several seeds and write the scores to --out as results.json and "
                     "results.md (with the machine); with --perf, time the model instead.")
    # one program per call: two mode flags are refused, not resolved by a silent precedence
    mode = bench.add_mutually_exclusive_group()
    bench.add_argument("--quick", action="store_true",
                       help="small setting for CI: 1 seed, 4000 steps at lr 1e-2, fewer "
                            "test contexts")
    mode.add_argument("--perf", action="store_true",
                       help="performance benchmark instead: NumPyro step vs pure-JAX floor, "
                            "scaling in cells and variables, full-fit time (perf.json/.md)")
    mode.add_argument("--stability", action="store_true",
                       help="stability benchmark instead: --methods (fit, fit_restarts, plain; "
                            "default fit,plain) × --seeds (default 0-9) × --keys (default "
                            "0 1 2), the default GIM at --steps (default 30000); "
                            "stability.json/.md")
    mode.add_argument("--sachs", action="store_true",
                       help="Sachs benchmark instead: the GIMs (--keys, default 0 1 2; --steps, "
                            "default 10000) beside UT-IGSP, GIES (the [peers] extra) and the "
                            "mean-shift detector on the Sachs et al. (2005) data; writes "
                            "sachs.json and sachs.md under --out")
    bench.add_argument("--conditions", choices=("inhibitors", "igsp", "all"),
                       help="with --sachs: which conditions (gim_ppl.datasets.sachs; default "
                            "inhibitors)")
    bench.add_argument("--page", metavar="MARKDOWN",
                       help="with --sachs: also rewrite the tables between the sachs-tables "
                            "markers of this page (e.g. docs/sachs.md)")
    bench.add_argument("--coarsening", type=POSITIVE_FLOAT, metavar="ALPHA",
                       help="with --sachs: α of the *_coarsened GIMs (default: 5)")
    mode.add_argument("--learning-curve", type=_sizes, metavar="N1,N2,...",
                       help="learning curve instead: the protocol (--methods, --seeds, "
                            "--steps) at each number of training perturbations, e.g. "
                            "20,40,80,160; learning_curve.json/.md/.png")
    bench.add_argument("--keys", type=NON_NEGATIVE_INT, nargs="+", metavar="KEY",
                       help="with --stability: PRNG keys per seed; with --sachs: PRNG keys of "
                            "the GIM fits (default: 0 1 2)")
    bench.add_argument("--restarts", type=POSITIVE_INT, metavar="R",
                       help="with --stability: restarts of the fit_restarts method "
                            "(default: 4)")
    bench.add_argument("--workers", type=POSITIVE_INT, metavar="N",
                       help="with --stability: fits run side by side, one CPU thread each "
                            "(default: 1)")
    bench.add_argument("--large", type=_cells_by_vars, nargs="+", default=(),
                       metavar="CELLSxVARS",
                       help="with --perf: extra linear-exact step sizes, e.g. 1000000x1000 "
                            "(meant for a GPU; default: none)")
    bench.add_argument("--seeds", type=NON_NEGATIVE_INT, nargs="+", metavar="SEED",
                       help="benchmark seeds (default: 0 1 2 3 4; --quick: 0; "
                            "--stability: 0-9)")
    bench.add_argument("--n-vars", type=POSITIVE_INT, metavar="N",
                       help="number of variables (default: the protocol's, 10)")
    bench.add_argument("--mechanism", choices=("linear", "mlp"),
                       help="causal mechanisms of the synthetic data and the GIM (default: "
                            "linear)")
    bench.add_argument("--graph", choices=("er", "sf"),
                       help="random graph: Erdős–Rényi or scale-free (default: er)")
    bench.add_argument("--steps", type=POSITIVE_INT, metavar="N",
                       help="Adam steps per fit (default: the protocol's; --quick: 4000)")
    bench.add_argument("--learning-rate", type=POSITIVE_FLOAT, metavar="LR",
                       help="Adam learning rate (default: the protocol's; --quick: 1e-2)")
    bench.add_argument("--methods", metavar="M1,M2,...",
                       help="comma-separated subset of the methods (default: all)")
    bench.add_argument("--out", default="bench_results", metavar="FOLDER",
                       help="output folder (default: %(default)s)")
    bench.add_argument("--no-progress", action="store_true", help="no progress bar")
