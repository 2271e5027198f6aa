"""Checks of scalar arguments at the API boundary, one call per argument, naming it.

`int(x) < 1` is not a check: `int(nan)` raises "cannot convert float NaN to integer" (no
argument named), `int(1.7)` silently truncates, `nan < 0` is False so NaN passes every
comparison, and `True` is an int. These functions say which argument is wrong and what was
expected (found by fuzzing the entry points, tests/test_fuzz.py), in an `ArgumentError` that
carries the argument's name (`gim_ppl.errors`).
"""

from __future__ import annotations

import math
import numbers

from gim_ppl.errors import ArgumentError, ArgumentTypeError


def check_integer(name: str, value, minimum: int | None = 1) -> int:
    """`value` as an int: an integer (or an integral float such as `1e4`), not a bool,
    at least `minimum` (None: no bound).

    Raises:
        ArgumentTypeError (a TypeError): not a real number (a string, None, a sequence).
        ArgumentError (a ValueError): a bool, NaN, infinite, not integral, or below `minimum`.
    """
    expected = "an integer" if minimum is None else f"an integer >= {minimum}"
    if not isinstance(value, numbers.Real):
        raise ArgumentTypeError(f"{name} must be {expected}, got {type(value).__name__} "
                                f"{value!r}", argument=name)
    if (isinstance(value, bool) or not math.isfinite(value) or int(value) != value
            or (minimum is not None and value < minimum)):
        raise ArgumentError(f"{name} must be {expected}, got {value!r}", argument=name)
    return int(value)


def check_real(name: str, value, *, minimum: float | None = None,
               strict: bool = False) -> float:
    """`value` as a finite float, not a bool, `>= minimum` (`> minimum` with `strict`).

    Raises:
        ArgumentTypeError (a TypeError): not a real number.
        ArgumentError (a ValueError): NaN, infinite, or out of range.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ArgumentTypeError(f"{name} must be a real number, got {type(value).__name__} "
                                f"{value!r}", argument=name)
    if not math.isfinite(value):
        raise ArgumentError(f"{name} must be finite, got {value!r}", argument=name)
    if minimum is not None and (value <= minimum if strict else value < minimum):
        raise ArgumentError(f"{name} must be {'>' if strict else '>='} {minimum}, got {value!r}",
                            argument=name)
    return float(value)


__all__ = ["check_integer", "check_real"]
