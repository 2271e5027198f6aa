"""The one-line user errors of `gim-ppl fit` and `gim-ppl design`: `UsageError` (a problem
and its fix, in one line), `USER_ERRORS` (the exceptions that count as the user's: a bad
file, a missing obs key, ...), `fail` (print one as `gim-ppl COMMAND: error: ...` with exit
code 2, or raise it with `--debug`), `print_note` (a `note:` line on stderr) and `cli_words`
(a library message in the command's flags: `dose_key='x'` → `--dose-key 'x'`)."""

from __future__ import annotations

import re
import sys


class UsageError(Exception):
    """A user error of a `gim-ppl` command: one line that names the problem and the fix."""


# Python argument names in the library's messages → the flags of this command.
_FLAGS = {name: "--" + name.replace("_", "-") for name in (
    "perturbation_key", "dose_key", "cell_type_key", "cell_type", "smiles_key", "layer",
    "n_top_genes", "genes", "dose_unit", "n_components", "normalize", "control")}


def cli_words(message: str) -> str:
    """A library message in this command's words: `dose_key='x'` → `--dose-key 'x'`,
    `normalize=True` → `--normalize yes`, a learning rate "in `optimizer`" → --learning-rate."""
    def flag(match):
        name, value = match.group(1), match.group(2)
        if name == "normalize" and value in ("True", "False"):
            value = "yes" if value == "True" else "no"
        return f"{_FLAGS[name]} {value}" if value else _FLAGS[name]

    names = "|".join(sorted(_FLAGS, key=len, reverse=True))
    message = re.sub(rf"(?<![\w.\[])({names})=(\S*?)(?=[\s;,)]|$)", flag, message)
    return message.replace("a smaller learning rate in `optimizer`", "a smaller --learning-rate")


# The exceptions `run` reports as user errors (one line, exit code 2) while loading.
USER_ERRORS = (UsageError, KeyError, ValueError, TypeError, OSError, ImportError)


def fail(err: Exception, args) -> int:
    """Print a user error as one line (or raise it with --debug); exit code 2."""
    if getattr(args, "debug", False):
        raise err
    message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    line = " ".join(cli_words(str(message)).split())
    command = getattr(args, "command", None) or "fit"
    print(f"gim-ppl {command}: error: {line}", file=sys.stderr)
    return 2


def print_note(message: str) -> None:
    """A note for the user on stderr, one line, in the command's flags (`cli_words`)."""
    print(f"note: {' '.join(cli_words(message).split())}", file=sys.stderr)
