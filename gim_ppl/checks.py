"""Checks of scalar arguments at the API boundary, one call per argument, naming it.

`int(x) < 1` is not a check: `int(nan)` raises "cannot convert float NaN to integer" (no
argument named), `int(1.7)` silently truncates, `nan < 0` is False so NaN passes every
comparison, and `True` is an int. These functions say which argument is wrong and what was
expected (found by fuzzing the entry points, tests/test_fuzz.py).
"""

from __future__ import annotations

import math
import numbers


def check_integer(name: str, value, minimum: int | None = 1) -> int:
    """`value` as an int: an integer (or an integral float such as `1e4`), not a bool,
    at least `minimum` (None: no bound).

    Raises:
        TypeError: not a real number (a string, None, a sequence).
        ValueError: a bool, NaN, infinite, not integral, or below `minimum`.
    """
    expected = "an integer" if minimum is None else f"an integer >= {minimum}"
    if not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__} {value!r}")
    if (isinstance(value, bool) or not math.isfinite(value) or int(value) != value
            or (minimum is not None and value < minimum)):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return int(value)


def check_real(name: str, value, *, minimum: float | None = None,
               strict: bool = False) -> float:
    """`value` as a finite float, not a bool, `>= minimum` (`> minimum` with `strict`).

    Raises:
        TypeError: not a real number.
        ValueError: NaN, infinite, or out of range.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} "
                        f"{value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {minimum}, got {value!r}")
    return float(value)


__all__ = ["check_integer", "check_real"]
