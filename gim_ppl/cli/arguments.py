"""Argument types and the parser class shared by the `gim-ppl` commands: numbers checked
when parsed (`POSITIVE_INT`, ...), so a bad value stops the command before any work, and
`OneLineParser`, whose usage errors are one line."""

from __future__ import annotations

import argparse
import math


class OneLineParser(argparse.ArgumentParser):
    """An `ArgumentParser` whose errors are one line: the problem, and where help is."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def number_type(kind, low: float, inclusive: bool, what: str):
    """An argparse `type`: `kind` (int or float) ≥ / > `low`, with a message saying so."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not math.isfinite(value) or (value < low if inclusive else value <= low):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value
    parse.__name__ = what
    return parse


POSITIVE_INT = number_type(int, 1, True, "a whole number ≥ 1")
NON_NEGATIVE_INT = number_type(int, 0, True, "a whole number ≥ 0")
POSITIVE_FLOAT = number_type(float, 0.0, False, "a number > 0")
NON_NEGATIVE_FLOAT = number_type(float, 0.0, True, "a number ≥ 0")

__all__ = ["NON_NEGATIVE_FLOAT", "NON_NEGATIVE_INT", "POSITIVE_FLOAT", "POSITIVE_INT",
           "OneLineParser", "number_type"]
