"""`gim-ppl bench {protocol,perf,stability,sachs,curve}`: one benchmark program per
sub-command, each with its own flags, each writing JSON and Markdown records that carry their
command, commit and machine (`gim_ppl.evaluation.report`):

- `protocol`: every method on the synthetic benchmark protocol, several seeds
  (results.json / results.md);
- `perf`: the performance benchmark (perf.json / perf.md);
- `stability`: fits from several PRNG keys per seed (stability.json / stability.md);
- `sachs`: the Sachs benchmark (sachs.json / sachs.md; its peers need `[peers]`);
- `curve`: the protocol at several numbers of training perturbations (learning_curve.*).

All need the `[bench]` extra; the evaluation modules are imported when the command runs. The
old spelling (`gim-ppl bench --quick`, `--perf`, `--stability`, `--sachs`, `--learning-curve
SIZES`) is translated by `legacy_argv`."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from gim_ppl.cli.arguments import NON_NEGATIVE_INT, POSITIVE_FLOAT, POSITIVE_INT
from gim_ppl.cli.machine import provenance

#: The sub-commands, and the old mode flag of each (the protocol had none).
PROGRAMS = {"protocol": None, "perf": "--perf", "stability": "--stability", "sachs": "--sachs",
            "curve": "--learning-curve"}


def legacy_argv(argv: list[str]) -> list[str]:
    """`argv` with the old `gim-ppl bench [--MODE] ...` spelling turned into the sub-command
    (`bench --perf --quick` → `bench perf --quick`, `bench --learning-curve 20,40` → `bench
    curve 20,40`, `bench --quick` → `bench protocol --quick`); other argv unchanged."""
    if len(argv) < 2 or argv[0] != "bench" or not argv[1].startswith("-") or argv[1] in (
            "-h", "--help"):
        return argv
    rest = list(argv[1:])
    for program, flag in PROGRAMS.items():
        if flag is None:
            continue
        for i, word in enumerate(rest):
            if word == flag or word.startswith(f"{flag}="):
                del rest[i]
                sizes = ([word.split("=", 1)[1]] if "=" in word
                         else [rest.pop(i)] if flag == "--learning-curve" and i < len(rest)
                         else [])
                return ["bench", program, *sizes, *rest]
    return ["bench", "protocol", *rest]


def _command(args) -> str:
    return "gim-ppl " + shlex.join(getattr(args, "argv", None) or ["bench", args.program])


def _chosen_methods(text: str | None, allowed: tuple, default: tuple,
                    program: str) -> tuple | None:
    """`--methods` as a tuple (`default` when not given); None, after printing the error,
    when it names a method `program` does not have."""
    methods = tuple(text.split(",")) if text else default
    unknown = [m for m in methods if m not in allowed]
    if unknown:
        print(f"gim-ppl bench {program}: error: unknown --methods {unknown}; choose from "
              f"{allowed}", file=sys.stderr)
        return None
    return methods


def _given(**options) -> dict:
    """The options the user set (not None): overrides of a config's defaults."""
    return {k: v for k, v in options.items() if v is not None}


def _start(args, config) -> dict:
    """Print and return the run's provenance (command, commit, machine)."""
    record = provenance(_command(args))
    print(f"machine: {record['machine']}")
    if config is not None:
        print(f"config: {config}")
    return record


def _perf(args) -> int:
    import dataclasses

    from gim_ppl.evaluation.perf import PerfConfig, run_perf, write_perf

    config = PerfConfig.quick() if args.quick else PerfConfig()
    if args.large:
        config = dataclasses.replace(config, large=tuple(args.large))
    record = _start(args, None)
    json_path, md_path = write_perf(run_perf(config), args.out, provenance=record)
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}")
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

    methods = _chosen_methods(args.methods, METHODS, ("fit", "plain"), "stability")
    if methods is None:
        return 2
    config = StabilityConfig(**_given(
        methods=methods, seeds=tuple(args.seeds) if args.seeds else None,
        keys=tuple(args.keys) if args.keys else None, steps=args.steps,
        restarts=args.restarts, workers=args.workers))
    record = _start(args, config)
    rows = run_stability(config)
    json_path, md_path = write_stability(rows, args.out, provenance=record, config=config)
    print(stability_markdown(summarise(rows)))
    print(f"wrote {json_path} and {md_path}")
    return 0


def _sachs(args) -> int:
    from gim_ppl.evaluation.sachs_benchmark import METHODS, SachsConfig, run_sachs, write_sachs

    methods = _chosen_methods(args.methods, METHODS, METHODS, "sachs")
    if methods is None:
        return 2
    config = SachsConfig(**_given(
        methods=methods, keys=tuple(args.keys) if args.keys else None, steps=args.steps,
        learning_rate=args.learning_rate, conditions=args.conditions,
        coarsening=args.coarsening))
    record = _start(args, config)
    json_path, md_path = write_sachs(run_sachs(config), args.out, provenance=record)
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}")
    return 0


def _protocol_config(args):
    """The `BenchConfig` of the protocol's flags (`--quick` for the small setting), or None
    after printing the error when `--methods` names an unknown method."""
    from gim_ppl.evaluation.protocol import METHODS, BenchConfig

    methods = _chosen_methods(args.methods, METHODS, METHODS, args.program)
    if methods is None:
        return None
    overrides = _given(
        seeds=tuple(args.seeds) if args.seeds else None, n_vars=args.n_vars,
        mechanism=args.mechanism, graph=args.graph, steps=args.steps,
        learning_rate=args.learning_rate, methods=methods)
    return BenchConfig.quick(**overrides) if args.quick else BenchConfig(**overrides)


def _protocol(args) -> int:
    from gim_ppl.evaluation.protocol import run_benchmark, write_results

    config = _protocol_config(args)
    if config is None:
        return 2
    record = _start(args, config)
    results = run_benchmark(config, progress=not args.no_progress)
    json_path, md_path = write_results(results, args.out, provenance=record)
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


def _curve(args) -> int:
    from gim_ppl.evaluation.learning_curve import run_learning_curve, write_learning_curve

    config = _protocol_config(args)
    if config is None:
        return 2
    record = _start(args, f"{config}; sizes {list(args.sizes)}")
    results = run_learning_curve(config, args.sizes)
    json_path, md_path = write_learning_curve(results, args.out, provenance=record)
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


RUN = {"protocol": _protocol, "perf": _perf, "stability": _stability, "sachs": _sachs,
       "curve": _curve}


def run(args) -> int:
    """`gim-ppl bench PROGRAM`: run the chosen benchmark program."""
    return RUN[args.program](args)


def _cells_by_vars(text: str) -> tuple[int, int]:
    try:
        n, d = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--large expects CELLSxVARS such as 1000000x1000, got {text!r}") from None
    if n < 1 or d < 2:
        raise argparse.ArgumentTypeError(f"--large needs cells >= 1 and vars >= 2, got {text!r}")
    return n, d


def _common(parser) -> None:
    parser.add_argument("--out", default="bench_results", metavar="FOLDER",
                        help="output folder (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _protocol_flags(parser) -> None:
    """The protocol's flags, shared by `protocol` and `curve`."""
    parser.add_argument("--quick", action="store_true",
                        help="small setting for CI: 1 seed, 4000 steps at lr 1e-2, fewer "
                             "test contexts")
    parser.add_argument("--seeds", type=NON_NEGATIVE_INT, nargs="+", metavar="SEED",
                        help="benchmark seeds (default: 0 1 2 3 4; --quick: 0)")
    parser.add_argument("--n-vars", type=POSITIVE_INT, metavar="N",
                        help="number of variables (default: the protocol's, 10)")
    parser.add_argument("--mechanism", choices=("linear", "mlp"),
                        help="causal mechanisms of the synthetic data and the GIM (default: "
                             "linear)")
    parser.add_argument("--graph", choices=("er", "sf"),
                        help="random graph: Erdős–Rényi or scale-free (default: er)")
    parser.add_argument("--steps", type=POSITIVE_INT, metavar="N",
                        help="Adam steps per fit (default: 30000; --quick: 4000)")
    parser.add_argument("--learning-rate", type=POSITIVE_FLOAT, metavar="LR",
                        help="Adam learning rate (default: 1e-3; --quick: 1e-2)")
    parser.add_argument("--methods", metavar="M1,M2,...",
                        help="comma-separated subset of the methods (default: all)")
    _common(parser)


def _add_programs(programs) -> None:
    protocol = programs.add_parser(
        "protocol", help="every method on the synthetic protocol, several seeds "
                         "(results.json/.md)",
        description="Run the GIM and the baselines on the synthetic benchmark protocol for "
                    "several seeds; write results.json and results.md to --out.")
    _protocol_flags(protocol)

    curve = programs.add_parser(
        "curve", help="the protocol at several numbers of training perturbations "
                      "(learning_curve.json/.md/.png)",
        description="Learning curve: the protocol at each number of training perturbations.")
    curve.add_argument("sizes", type=_sizes, metavar="N1,N2,...",
                       help="numbers of training perturbations, e.g. 20,40,80,160")
    _protocol_flags(curve)

    perf = programs.add_parser(
        "perf", help="NumPyro step vs pure-JAX floor, scaling in cells and variables, "
                     "full-fit time (perf.json/.md)",
        description="Time the model: NumPyro SVI step against a pure-JAX floor, scaling in "
                    "cells and variables, intervention maps and a full fit.")
    perf.add_argument("--quick", action="store_true", help="every size shrunk (smoke run)")
    perf.add_argument("--large", type=_cells_by_vars, nargs="+", default=(),
                      metavar="CELLSxVARS",
                      help="extra linear-exact step sizes, e.g. 1000000x1000 (meant for a "
                           "GPU; default: none)")
    _common(perf)

    stability = programs.add_parser(
        "stability", help="fits from several PRNG keys per seed (stability.json/.md)",
        description="Stability: methods × seeds × keys fits of the default GIM.")
    stability.add_argument("--methods", metavar="M1,M2,...",
                           help="fit, fit_restarts, plain, plain_median (default: fit,plain)")
    stability.add_argument("--seeds", type=NON_NEGATIVE_INT, nargs="+", metavar="SEED",
                           help="benchmark seeds (default: 0-9)")
    stability.add_argument("--keys", type=NON_NEGATIVE_INT, nargs="+", metavar="KEY",
                           help="PRNG keys per seed (default: 0 1 2)")
    stability.add_argument("--steps", type=POSITIVE_INT, metavar="N",
                           help="Adam steps per fit (default: 30000)")
    stability.add_argument("--restarts", type=POSITIVE_INT, metavar="R",
                           help="restarts of the fit_restarts method (default: 4)")
    stability.add_argument("--workers", type=POSITIVE_INT, metavar="N",
                           help="fits run side by side, one CPU thread each (default: 1)")
    _common(stability)

    sachs = programs.add_parser(
        "sachs", help="the GIMs beside UT-IGSP, GIES and a mean-shift detector on the Sachs "
                      "et al. (2005) data (sachs.json/.md)",
        description="The Sachs benchmark: the GIMs beside UT-IGSP, GIES (the [peers] extra) "
                    "and the mean-shift detector.")
    sachs.add_argument("--methods", metavar="M1,M2,...",
                       help="comma-separated subset of the methods (default: all)")
    sachs.add_argument("--conditions", choices=("inhibitors", "igsp", "all"),
                       help="which conditions (gim_ppl.datasets.sachs; default: inhibitors)")
    sachs.add_argument("--keys", type=NON_NEGATIVE_INT, nargs="+", metavar="KEY",
                       help="PRNG keys of the GIM fits (default: 0 1 2)")
    sachs.add_argument("--steps", type=POSITIVE_INT, metavar="N",
                       help="Adam steps per GIM fit (default: 10000)")
    sachs.add_argument("--learning-rate", type=POSITIVE_FLOAT, metavar="LR",
                       help="Adam learning rate (default: 1e-2)")
    sachs.add_argument("--coarsening", type=POSITIVE_FLOAT, metavar="ALPHA",
                       help="α of the *_coarsened GIMs (default: 5)")
    _common(sachs)


def add_parser(sub) -> None:
    """Register `gim-ppl bench` and its sub-commands."""
    bench = sub.add_parser(
        "bench", help="benchmarks: protocol, perf, stability, sachs, curve",
        description="Run one benchmark program; each writes JSON and Markdown records (with "
                    "their command, commit and machine) to --out.")
    programs = bench.add_subparsers(dest="program", required=True, metavar="PROGRAM",
                                    help="the benchmark program to run",
                                    parser_class=type(bench))
    _add_programs(programs)
