"""The one-line user errors of `gim-ppl fit` and `gim-ppl design`: `UsageError` (a problem
and its fix, in one line), `USER_ERRORS` (the exceptions that count as the user's: a bad
file, a missing obs key, ...), `fail` (print one as `gim-ppl COMMAND: error: ...` with exit
code 2, or raise it with `--debug`), `print_note` (a `note:` line on stderr) and
`cli_message` (an error in the command's flags).

A library error about one argument is a `gim_ppl.errors.ArgumentError`, which carries the
argument's Python name (`err.argument`); `FLAGS` maps that name to the flag that sets it. No
message is parsed to find the argument, so rewording a library message cannot detach it from
its flag."""

from __future__ import annotations

import sys

from gim_ppl.errors import ArgumentError


class UsageError(Exception):
    """A user error of a `gim-ppl` command: one line that names the problem and the fix."""


# The library's argument names (`ArgumentError.argument`) → the flags that set them.
FLAGS: dict[str, str] = {
    "perturbation_key": "--perturbation-key",
    "dose_key": "--dose-key",
    "cell_type_key": "--cell-type-key",
    "cell_type": "--cell-type",
    "smiles_key": "--smiles-key",
    "layer": "--layer",
    "n_top_genes": "--n-top-genes",
    "genes": "--genes",
    "dose_unit": "--dose-unit",
    "n_components": "--n-components",
    "normalize": "--normalize",
    "control": "--control",
    "sources": "--sources",
    "forbid": "--forbid",
}

# Fixes that library warnings (not errors: no argument travels with them) give in Python's
# words, in the command's (`fit`'s "Try a smaller learning rate in `optimizer`.").
_WARNING_FIXES = {"a smaller learning rate in `optimizer`": "a smaller --learning-rate"}


def cli_message(err: BaseException) -> str:
    """The message of `err` in this command's words.

    An `ArgumentError` whose argument has a flag (`FLAGS`) names the flag: its message's
    `name=value` becomes `--flag value`, a message that starts with the name (`genes ...`,
    `sources: ...`) starts with the flag, and any other message is prefixed by `--flag: `.
    Other errors are shown as they are (a `KeyError`'s message without its quotes)."""
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    flag = FLAGS.get(err.argument) if isinstance(err, ArgumentError) else None
    if flag is None:
        return text
    name = err.argument
    if f"{name}=" in text:
        return text.replace(f"{name}=", f"{flag} ")
    for start in (f"{name}: ", f"{name} "):
        if text.startswith(start):
            return f"{flag} {text[len(start):]}"
    return f"{flag}: {text}"


def warning_message(message: str) -> str:
    """A library warning in this command's words (the fixes of `_WARNING_FIXES`)."""
    for python, cli in _WARNING_FIXES.items():
        message = message.replace(python, cli)
    return message


# The exceptions `run` reports as user errors (one line, exit code 2) while loading.
USER_ERRORS = (UsageError, KeyError, ValueError, TypeError, OSError, ImportError)


def fail(err: Exception, args) -> int:
    """Print a user error as one line (or raise it with --debug); exit code 2."""
    if getattr(args, "debug", False):
        raise err
    line = " ".join(cli_message(err).split())
    command = getattr(args, "command", None) or "fit"
    print(f"gim-ppl {command}: error: {line}", file=sys.stderr)
    return 2


def print_note(message: str) -> None:
    """A note for the user on stderr, one line (notes are written in the command's words:
    `AnnDataInfo.notes(cli=True)`)."""
    print(f"note: {' '.join(message.split())}", file=sys.stderr)
