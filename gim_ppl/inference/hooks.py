"""What `fit` does between its chunks of steps, as values: each hook has `init(loop)` and
`update(hook_state, loop)` (the `Hook` protocol), both returning `(hook_state, loop)`, and
sees and may change the loop (`FitLoop`): its state, steps done, live restarts and losses.

`NaNGuard` (always first) stops a fit at a non-finite loss or parameter, `DualAscent` raises
λ while W is cyclic (on by default), `Checkpointing` writes the loop to a file and resumes
from one. A hook of your own is any object with these two methods.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

from gim_ppl.checks import check_integer
from gim_ppl.core.graph import cycle_gain
from gim_ppl.inference import checkpoint as ckpt
from gim_ppl.inference.restarts import keep_live_restarts
from gim_ppl.inference.steps import FitState


class FitLoop(NamedTuple):
    """Where `fit`'s loop stands between two chunks (what hooks read and return).

    Attributes:
        state: the `FitState` after the chunk just run (before the first chunk: the initial
            state).
        previous: the `FitState` before that chunk (None before the first chunk).
        done: steps done.
        steps: steps to run in all.
        alive: `(R,)` bool, False for restarts stopped at a non-finite value.
        message: empty, or why the fit stopped early.
        losses: list of `(chunk_steps, R)` loss arrays, one per chunk run.
        stopped: True once the fit must stop (the one fit hit a non-finite value).
        target_sparsity, acyclicity_weight: `(steps,)` the β_I and λ schedules' values.
        settings: what must match between a checkpoint and the fit resuming it (JSON-able;
            see `fit`).
    """

    state: FitState
    previous: FitState | None
    done: int
    steps: int
    alive: np.ndarray
    message: str
    losses: list
    stopped: bool
    target_sparsity: jnp.ndarray
    acyclicity_weight: jnp.ndarray
    settings: dict


@runtime_checkable
class Hook(Protocol):
    """Something `fit` runs between chunks: `init` once before the first chunk, `update`
    after every chunk, each returning `(hook_state, loop)` (hook_state: whatever the hook
    keeps, e.g. when it last wrote a checkpoint). Host-side Python, not jitted."""

    def init(self, loop: FitLoop) -> tuple[Any, FitLoop]: ...

    def update(self, hook_state, loop: FitLoop) -> tuple[Any, FitLoop]: ...


def acyclicity_weight_at(scheduled, acyclicity_scale, max_weight):
    """λ after dual ascent: the scheduled value times `acyclicity_scale`, raised at most to
    `max_weight` (and never lowered), i.e. `max(λ, min(λ · scale, max_weight))`.

    Args:
        scheduled: the λ schedule's value, any shape.
        acyclicity_scale: `()` or `(R,)` the `FitState` factor.
        max_weight: the cap on a raised λ (`DualAscent.max_weight`; `inf` without dual
            ascent).
    """
    return jnp.maximum(scheduled, jnp.minimum(scheduled * acyclicity_scale, max_weight))


class NaNGuard(NamedTuple):
    """Stops at a non-finite loss or parameter: with a warning, the parameters of the last
    finite chunk are kept and the fit stops (with restarts: only the restarts hit stop).
    `fit` always runs it, first."""

    def init(self, loop: FitLoop) -> tuple[None, FitLoop]:
        return None, loop

    def update(self, hook_state, loop: FitLoop) -> tuple[None, FitLoop]:
        chunk_losses = loop.losses[-1]
        n = chunk_losses.shape[0]
        start, restarts = loop.done - n, loop.state.restarts
        params = loop.state.svi.get_params(loop.state.svi_state)
        finite = (np.all(np.isfinite(chunk_losses), axis=0)
                  & _finite_per_restart(params, restarts))
        if finite.all():
            return None, loop
        first = start + int(np.argmin(np.all(np.isfinite(chunk_losses), axis=1)))
        message = (
            f"non-finite loss or parameters within steps {start}..{loop.done - 1} "
            f"(first non-finite loss at step {first}); stopped and kept the parameters "
            f"after step {start - 1}. Try a smaller learning rate in `optimizer`."
        )
        if restarts > 1:
            message = f"restarts {np.flatnonzero(loop.alive & ~finite).tolist()}: " + message
        warnings.warn(message, RuntimeWarning, stacklevel=4)
        if restarts == 1:
            return None, loop._replace(state=loop.previous, done=start, message=message,
                                       losses=loop.losses[:-1], stopped=True)
        alive = loop.alive & finite
        return None, loop._replace(
            state=keep_live_restarts(alive, loop.state, loop.previous), alive=alive,
            message=message, losses=[*loop.losses[:-1], np.where(alive, chunk_losses, np.nan)])


class DualAscent(NamedTuple):
    """Dual ascent on the acyclicity weight λ (on by default: `fit`'s `hooks` run it unless
    they hold a `DualAscent` of their own, which takes its place).

    From step `start · steps` on, between chunks of `CHUNK_STEPS` steps: while the cycle gain
    of the fitted W (spectral radius of |W|, see `cycle_gain`) exceeds `max_cycle_gain`, λ
    for the remaining steps is multiplied by `factor`, never above `max_weight`.
    `DualAscent(max_cycle_gain=math.inf)` never fires: λ as scheduled.

    A cyclic W can raise the product of Gaussian conditionals by O(1) nats per cell (it is
    no longer a normalised density), and on strongly correlated data that gain can beat a
    fixed λ; augmented-Lagrangian DAG learners raise λ until h(W) ≈ 0 for the same reason.
    The trigger is the cycle gain, which sets how much sampling through `(I − W)⁻¹`
    amplifies, not the penalty in nats: Adam's jitter on weak reverse edges costs many nats
    on thousands of cells at a gain of ~0.1, and raising λ for it degraded good fits.

    Attributes:
        max_cycle_gain: largest tolerated spectral radius of |W|.
        factor: multiplier of λ per trigger.
        max_weight: λ is not raised above this.
        start: fraction of the steps after which λ may be raised (the default λ schedule
            ends its ramp at 0.5).
    """

    max_cycle_gain: float = 0.3
    factor: float = 10.0
    max_weight: float = 1e4
    start: float = 0.5

    def init(self, loop: FitLoop) -> tuple[None, FitLoop]:
        return None, loop

    def update(self, hook_state, loop: FitLoop) -> tuple[None, FitLoop]:
        """`dual_ascent_step` of every restart, when another chunk follows and the steps
        done reach `start · steps`."""
        if loop.done >= loop.steps or self.start * loop.steps > loop.done \
                or self.max_cycle_gain == math.inf:
            return None, loop
        lam = loop.acyclicity_weight[loop.done]  # λ of the next step, as scheduled
        return None, loop._replace(state=_dual_ascent_all(loop.state, lam, self))


def dual_ascent_step(state: FitState, weights, acyclicity_weight: float,
                     dual: DualAscent | None = None) -> FitState:
    """One dual-ascent update between chunks of `fit` (host-side, pure).

    Args:
        state: the current `FitState`.
        weights: `(n_vars, n_vars)` edge weights W of the current fit.
        acyclicity_weight: λ at the current step (after dual ascent so far).
        dual: the settings; None: `DualAscent()`.

    Returns:
        `state` with `acyclicity_scale` multiplied by `dual.factor` when the cycle gain of
        W exceeds `dual.max_cycle_gain` and λ is below `dual.max_weight`; otherwise `state`.
    """
    dual = DualAscent() if dual is None else dual
    if not _raises(weights, acyclicity_weight, dual):
        return state
    return state.replace(acyclicity_scale=state.acyclicity_scale * dual.factor)


def _raises(weights, acyclicity_weight: float, dual: DualAscent) -> bool:
    """Whether dual ascent raises λ: W still has a cycle gain above the threshold and λ is
    below its cap."""
    return acyclicity_weight < dual.max_weight and cycle_gain(weights) > dual.max_cycle_gain


def _dual_ascent_all(state: FitState, lam, dual: DualAscent) -> FitState:
    """`dual_ascent_step` for one fit or for each restart, on the weights the model's SCM
    uses (`GIM.scm_weights` of the `weights` site)."""
    svi = state.svi
    guide, scm_weights = svi.guide, svi.model.scm_weights
    params = svi.get_params(state.svi_state)
    if state.restarts == 1:
        lam_now = float(acyclicity_weight_at(lam, state.acyclicity_scale, dual.max_weight))
        return dual_ascent_step(state, scm_weights(guide.median(params)["weights"]), lam_now,
                                dual)
    weights = jax.vmap(lambda p: scm_weights(guide.median(p)["weights"]))(params)
    scales = np.asarray(state.acyclicity_scale)
    lam_now = np.asarray(acyclicity_weight_at(lam, scales, dual.max_weight))
    raised = [_raises(weights[r], float(lam_now[r]), dual) for r in range(state.restarts)]
    return state.replace(acyclicity_scale=jnp.asarray(
        np.where(raised, scales * dual.factor, scales), state.acyclicity_scale.dtype))


@dataclasses.dataclass(frozen=True)
class Checkpointing:
    """Resumable runs: the loop state written to `path` between chunks, and a run resumed
    from `resume` (`fit(..., hooks=[Checkpointing("run.npz", resume="run.npz")])`).

    The state (optimiser state and PRNG key of every restart, dual-ascent scale, losses and
    schedule values so far) is written atomically (a temporary file in the same directory,
    then `os.replace`: a process killed while writing leaves the previous checkpoint whole),
    after dual ascent, so a checkpoint holds the state the next chunk starts from. A fit
    resumed with the same model, data, key and settings continues that run to `steps` and
    returns what the uninterrupted run returns (bit for bit on CPU); `fit` says which
    settings must match.

    Attributes:
        path: file to write to; None: write nothing (only resume).
        every: steps between checkpoints, rounded up to whole chunks of `CHUNK_STEPS` (a
            checkpoint is written after the first chunk that ends at least this many steps
            after the previous one, and after the last chunk). None: after every chunk.
        resume: a checkpoint file to continue from (may equal `path`); None: start afresh.

    Raises:
        ValueError: `every` not an integer >= 1, or given without `path`.
    """

    path: str | os.PathLike | None
    every: int | None = None
    resume: str | os.PathLike | None = None

    def __post_init__(self):
        if self.every is not None:
            if self.path is None:
                raise ValueError("Checkpointing: every needs a path to write to")
            object.__setattr__(self, "every", check_integer("every", self.every))

    def init(self, loop: FitLoop) -> tuple[int, FitLoop]:
        """Resume from `resume` (checking its settings and schedule values); the hook state
        is the steps done at the last checkpoint."""
        if self.resume is not None:
            loop = _resumed(self.resume, ckpt.read_checkpoint(self.resume), loop)
        return loop.done, loop

    def update(self, written: int, loop: FitLoop) -> tuple[int, FitLoop]:
        if self.path is None or not (self.every is None or loop.done - written >= self.every
                                     or loop.done == loop.steps):
            return written, loop
        header = {"format": ckpt.CHECKPOINT_FORMAT, "version": loop.settings["version"],
                  "steps_done": int(loop.done), "steps": int(loop.steps),
                  "message": loop.message, "alive": [bool(a) for a in loop.alive],
                  "settings": loop.settings}
        ckpt.write_checkpoint(self.path, loop.state, header=header,
                              losses=np.concatenate(loop.losses),
                              target_sparsity=np.asarray(loop.target_sparsity[:loop.done]),
                              acyclicity_weight=np.asarray(loop.acyclicity_weight[:loop.done]))
        return loop.done, loop


def _resumed(path, saved: ckpt.Checkpoint, loop: FitLoop) -> FitLoop:
    """`loop` continued from a checkpoint, after checking that it belongs to this fit
    (settings and the schedule values of the steps done)."""
    ckpt.check_settings(path, saved.header["settings"], loop.settings)
    done = int(saved.header["steps_done"])
    if done > loop.steps:
        raise ValueError(f"resume: the checkpoint {path!r} has {done} steps done, more than "
                         f"steps={loop.steps}")
    for name, used, now in (("target_sparsity", saved.target_sparsity, loop.target_sparsity),
                            ("acyclicity_weight", saved.acyclicity_weight,
                             loop.acyclicity_weight)):
        now = np.asarray(now[:done])
        if used.shape != now.shape or not np.array_equal(used, now.astype(used.dtype)):
            first = int(np.argmax(used != now)) if used.shape == now.shape else 0
            raise ValueError(
                f"resume: the {name} schedule gives other values than the checkpoint's at "
                f"the {done} steps done (first at step {first}); the default ramps depend "
                "on steps: resume with the same steps, or pass the schedule explicitly")
    return loop._replace(state=ckpt.restore_state(loop.state, saved.leaves), done=done,
                         alive=np.asarray(saved.header["alive"], bool),
                         message=saved.header["message"],
                         losses=[np.asarray(saved.losses)] if done else [])


def _finite_per_restart(params, restarts: int) -> np.ndarray:
    if restarts == 1:
        return np.array([all(bool(jnp.all(jnp.isfinite(leaf)))
                             for leaf in jax.tree_util.tree_leaves(params))])
    ok = np.ones(restarts, dtype=bool)
    for leaf in jax.tree_util.tree_leaves(params):
        ok &= np.asarray(jnp.isfinite(leaf).reshape(restarts, -1).all(1))
    return ok


__all__ = ["Checkpointing", "DualAscent", "FitLoop", "Hook", "NaNGuard",
           "acyclicity_weight_at", "dual_ascent_step"]
