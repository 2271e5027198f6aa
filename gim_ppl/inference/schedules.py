"""Schedules of `fit`: a float or a callable `step -> value` wherever a weight varies over
steps (optax's `ScalarOrSchedule`), evaluated into per-step arrays before the loop."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import jax
import jax.numpy as jnp

from gim_ppl.errors import ArgumentError, ArgumentTypeError

Schedule = Callable[[jnp.ndarray], jnp.ndarray]
ScalarOrSchedule = float | Schedule


def cosine_ramp(final: float, ramp_steps: float) -> Schedule:
    """A schedule rising as half a cosine from 0 at step 0 to `final` at step `ramp_steps`,
    then flat: `final · ½ (1 − cos(π · clip(t / ramp_steps, 0, 1)))`.

    Augmented-Lagrangian-style annealing: with `fit`'s defaults β_I ramps over all steps and
    λ over the first half, so edges first fit freely and the weaker direction of each
    2-cycle is then pruned.

    Args:
        final: the value from step `ramp_steps` on.
        ramp_steps: length of the ramp in steps (values below 1 count as 1).

    Returns:
        A callable `step -> value`, `step` an int array of any shape (optax schedule
        convention); float32 values unless x64 is enabled.

    Example:
        >>> schedule = cosine_ramp(2.0, 100)
        >>> float(schedule(0)), float(schedule(50)), float(schedule(500))
        (0.0, 1.0, 2.0)
    """
    denominator = max(float(ramp_steps), 1.0)
    final = float(final)

    def schedule(step):
        t = jnp.clip(jnp.asarray(step) / denominator, 0.0, 1.0)
        return final * 0.5 * (1.0 - jnp.cos(math.pi * t))

    return schedule


def check_scalar_or_schedule(name: str, value) -> None:
    """Check the argument `name`: a float >= 0, a schedule (a callable) or None; else an
    `ArgumentError` (`ArgumentTypeError` for a non-number) naming it."""
    if value is None or callable(value):
        return
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise ArgumentTypeError(f"{name} must be a float, a schedule (step -> value) or "
                                f"None, got {type(value).__name__}", argument=name)
    if not value >= 0:
        raise ArgumentError(f"{name} must be >= 0, got {value}", argument=name)


def per_step_values(name: str, value: ScalarOrSchedule, steps: int) -> jnp.ndarray:
    """`(steps,)` values of a float or a schedule at steps 0, …, steps − 1."""
    if not callable(value):
        return jnp.full((steps,), value)
    values = jnp.asarray(jax.vmap(value)(jnp.arange(steps)))
    if values.shape != (steps,):
        raise ArgumentError(f"{name} schedule must return a scalar per step, got values of "
                            f"shape {values.shape[1:]}", argument=name)
    if not jnp.issubdtype(values.dtype, jnp.floating):
        values = values.astype(jnp.result_type(float))
    return values


__all__ = ["ScalarOrSchedule", "Schedule", "check_scalar_or_schedule", "cosine_ramp",
           "per_step_values"]
