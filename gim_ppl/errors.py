"""`ArgumentError`: a bad value of one argument of a public function, with the argument's
name as data (`error.argument`), so that a caller can say which of *its* inputs was wrong
without reading the message: `gim-ppl fit` maps `error.argument` to its flag
(`gim_ppl.cli.user_errors.FLAGS`), and rewording a message changes nothing there.

It is a `ValueError`; `ArgumentTypeError` (also a `TypeError`) and `ArgumentKeyError` (also a
`KeyError`) are the same error for a value of the wrong type and for a key that is missing,
so that `except TypeError` / `except KeyError` keep working. Catch all three as
`ArgumentError`.

Standard library only: every layer of the package, `gim_ppl.core` included, raises it.

>>> try:
...     raise ArgumentError("n_steps must be an integer >= 1, got 0", argument="n_steps")
... except ValueError as err:
...     print(err.argument)
n_steps
"""

from __future__ import annotations

from collections.abc import Sequence


class ArgumentError(ValueError):
    """A bad value of the argument `argument` (its Python name, e.g. "dose_key", "x",
    "batch_size"); `rows` the offending rows or entries of it when the message lists them
    (indices, e.g. the contexts with a negative dose; None: not about rows).

    The message names the argument too (the package's rule), as `name=value ...` or
    `name ...` at its start where it reads so: a caller that renames the argument (the
    command line's flags) replaces that start only."""

    def __init__(self, message: str, *, argument: str, rows: Sequence[int] | None = None):
        super().__init__(message)
        self.argument = argument
        self.rows = None if rows is None else tuple(int(r) for r in rows)

    def __reduce__(self):  # picklable (multi-process fits), keeping the argument and rows
        return _rebuild, (type(self), str(self.args[0]) if self.args else "", self.argument,
                          self.rows)


class ArgumentTypeError(ArgumentError, TypeError):
    """An `ArgumentError` for a value of the wrong type (a `TypeError` too)."""


class ArgumentKeyError(ArgumentError, KeyError):
    """An `ArgumentError` for a key, column or name that is missing (a `KeyError` too)."""

    def __str__(self) -> str:  # the message as it is, not KeyError's repr of it
        return str(self.args[0]) if self.args else ""


def _rebuild(cls, message, argument, rows):
    return cls(message, argument=argument, rows=rows)


__all__ = ["ArgumentError", "ArgumentKeyError", "ArgumentTypeError"]
