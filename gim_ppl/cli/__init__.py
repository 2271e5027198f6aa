"""`gim-ppl` command line: `demo` fits the bundled synthetic benchmark and prints its metrics;
`bench` runs the benchmark protocol (or, with `--perf`, the performance benchmark); `fit`
fits a GIM to a drug screen (.h5ad) in three steps, load → fit → write."""

# This package: `main` (the parser and the dispatch) here; one module per command, each with
# `add_parser(sub)` and `run(args)`: `demo`, `bench` (bench and perf), `fit`; and `machine`
# (`machine_description`, shared by the commands).

from __future__ import annotations

import argparse

from gim_ppl.cli import bench, demo, fit
from gim_ppl.cli.machine import machine_description

COMMANDS = {"demo": demo, "bench": bench, "fit": fit}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="gim-ppl", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS.values():
        command.add_parser(sub)
    args = parser.parse_args(argv)
    if args.command in COMMANDS:
        return COMMANDS[args.command].run(args)
    return 2


__all__ = ["machine_description", "main"]

