"""`gim-ppl` command line: `demo` fits the bundled synthetic benchmark and prints its metrics;
`bench` runs one benchmark program (`protocol`, `perf`, `stability`, `sachs`, `curve`); `fit`
fits a GIM to a drug screen (.h5ad) in three steps, load → fit → write; `design` ranks
candidate experiments on a drug screen (drugs at doses) by their expected information gain."""

# This package: `main` (the parser and the dispatch) here; one module per command, each with
# `add_parser(sub)` and `run(args)`: `demo`, `bench` (its programs), `fit_command` (`fit`),
# `design`; `fit` and `design` share `screen_input` (the screen's flags and loading),
# `user_errors` (one-line user errors) and `fit_command.fit_screen`; `outputs` is fit's
# output folder and files; and `machine`
# (`machine_description`, shared by the commands). Building the parser and checking the
# arguments, --out and the input files import no jax, numpyro, optax or extra: each command
# imports them inside the functions that run it, so that a mistyped flag or path is a
# one-line error within a fraction of a second (issue 27; tests/cli/test_fit_command.py checks it).

from __future__ import annotations

import argparse
import sys

from gim_ppl.cli import bench, demo, design, fit_command
from gim_ppl.cli.arguments import OneLineParser
from gim_ppl.cli.machine import machine_description

COMMANDS = {"demo": demo, "bench": bench, "fit": fit_command, "design": design}


def build_parser() -> argparse.ArgumentParser:
    """The `gim-ppl` parser with every command's subparser."""
    parser = OneLineParser(prog="gim-ppl", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                help="one of " + ", ".join(COMMANDS))
    for command in COMMANDS.values():
        command.add_parser(sub)
    return parser


def main(argv=None) -> int:
    """Run `gim-ppl` with `argv` (default: the process's arguments); return the exit code."""
    argv = bench.legacy_argv(list(sys.argv[1:] if argv is None else argv))
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # --help (0) or a usage error (2), already printed
        sys.stdout.flush()
        return done.code if isinstance(done.code, int) else 2
    args.argv = argv  # the command as run, for the records that carry it
    return COMMANDS[args.command].run(args)


__all__ = ["OneLineParser", "build_parser", "machine_description", "main"]
