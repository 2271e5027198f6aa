"""Causal queries on a fitted GIM, written as NumPyro handlers on its two latent sites.

Without cells a `GIM` is a generative story: per cell it samples `targets` t (which
variables the cell's perturbation hits) and `noise` ε (standard normal) and records
`x`, the solution of `x = f(x) + t·s + σ·ε` (shift effect; replace:
`x = (1 − t)·f(x) + t·s + σ·ε`), s the Hill shift of the cell's context. Given the
parameters, a cell is a function of its (targets, noise). Every query here runs the fitted
model's own sample path on single-cell contexts — `handlers.substitute` for the parameters,
`handlers.seed` to draw the latent sites, `handlers.condition` to fix them — and changes
only those two sites:

- `do_variables`: do(x_i = v). The noise of x_i is set to the value at which the model's
  own mechanism gives `x_i = v`; x_i's parents no longer matter, its descendants respond.
- `block_targets`: the targets drawn from π(z), with the given variables set to 0.
- `combine`: two perturbations together: targets t_a ∨ t_b, Hill shifts added.
- `counterfactual`: abduction (the noise of each observed cell under the model), action
  (another context and/or do), prediction (the model run with that noise).

Common random numbers: queries given the same `key`, `contexts` and `n_cells` draw the same
targets and noise for every cell, so the difference of two queries is a per-cell causal
effect (e.g. `do_variables(..., {1: 2.0}).x − do_variables(..., {1: 0.0}).x`).

Assumptions, shared by all queries:
- The fitted graph is a DAG. `do` and abduction solve for the noise by passes of the model
  (`x_j` is additive in `σ_j ε_j`): exact after at most `len(values) + 1` passes
  (abduction: `n_vars + 1`) on a DAG. The weak cycles a soft acyclicity penalty leaves
  only add passes (to the exact fixed point); a strong cycle through the variables
  involved may not settle in `MAX_PASSES`, which raises a warning.
- `sites["noise_scale"] > 0` (a variable without noise cannot be abducted).
- Targets are hard (0/1), as in `GIM.predict`.

With draws in `sites` (a leading draw axis), the generative queries spread the cells of each
context over the draws (cell c of `n_cells` uses draw ⌊c · n_draws / n_cells⌋), a mixture
over the posterior as `GIM.predict`; `counterfactual` answers once per draw.

Example (a fitted `model` with MAP `sites` and its training `data`):

    from gim_ppl.design import counterfactual, do_variables
    control = data.subset(np.asarray(data.observational)).contexts_only()
    held = do_variables(model, sites, control, {2: 0.0}, key=jax.random.key(0),
                        n_cells=500)  # x_2 held at 0: held.x is (n_control_contexts · 500, d)
    moved = counterfactual(model, sites, data, context=3)  # (n_cells, d): all in context 3
"""

from __future__ import annotations

import functools
import math
import numbers
import warnings
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers

from gim_ppl.checks import check_integer
from gim_ppl.core.interventions import intervention_shift
from gim_ppl.data import PerturbationData
from gim_ppl.model import GIM

#: Passes of the model at most when solving for noise (a DAG needs one per variable).
MAX_PASSES = 100


def do_variables(model: GIM, sites: Mapping, contexts: PerturbationData,
                 values: Mapping[int, float], *, key, n_cells: int) -> PerturbationData:
    """Cells of each context with variables held fixed: do(x_i = v for i, v in values).

    The mechanism of each x_i is replaced by the constant v (so its perturbation's target
    and shift on x_i no longer matter); the other variables keep their mechanisms, targets,
    shifts and noise, so x_i's descendants respond and its non-descendants do not change.

    Args:
        model: the fitted `GIM`.
        sites: its sample-site values, one point or draws `(n_draws, …)`.
        contexts: `PerturbationData` (cells ignored), `n_contexts` contexts.
        values: `{variable index: value}`, at least one, finite values.
        key: PRNG key; the same key gives the same targets and noise as the other queries.
        n_cells: cells per context.
    Returns:
        `PerturbationData` with `x (n_contexts · n_cells, n_vars)`, contexts as given.
    Raises:
        ValueError: an empty `values`, an index outside `[0, n_vars)`, a non-finite value,
            contexts of the wrong width, or invalid sites.
    """
    _check_contexts(model, "contexts", contexts)
    cols, goal = _check_values(model, values)
    params, cells, _ = _generative_batch(model, sites, contexts, n_cells)
    targets, noise, x = _run(model, params, cells, key=_cell_keys(key, cells))
    _, x = _settle(model, params, cells, targets, noise, x, cols, goal, "do_variables")
    return _as_cells(contexts, x, n_cells)


def block_targets(model: GIM, sites: Mapping, contexts: PerturbationData,
                  blocked: Sequence[int], *, key, n_cells: int) -> PerturbationData:
    """Cells of each context with the perturbation kept off the variables in `blocked`.

    Targets are drawn from π(z) as by the model, then set to 0 on `blocked`: the
    perturbation's shift on those variables disappears and nothing else changes (their
    mechanisms and noise stay; e.g. "drug A at dose c if target t were blocked").

    Args:
        blocked: variable indices in `[0, n_vars)`, at least one.
        (the others as `do_variables`)
    Returns:
        `PerturbationData` with `x (n_contexts · n_cells, n_vars)`, contexts as given.
    """
    _check_contexts(model, "contexts", contexts)
    keep = np.ones(model.n_vars)
    keep[_check_indices(model, "blocked", blocked)] = 0.0
    params, cells, _ = _generative_batch(model, sites, contexts, n_cells)
    targets, noise, _ = _run(model, params, cells, key=_cell_keys(key, cells))
    _, _, x = _run(model, params, cells, targets=targets * keep, noise=noise)
    return _as_cells(contexts, x, n_cells)


def combine(model: GIM, sites: Mapping, first: PerturbationData, second: PerturbationData,
            *, key, n_cells: int) -> PerturbationData:
    """Cells under two perturbations at once: context k of `first` together with context k
    of `second`.

    Assumptions (independent action): each perturbation draws its own targets from its
    π(z), independently; a cell's targets are their union `1 − (1 − t_a)(1 − t_b)`; on a
    variable hit by both, the Hill shifts add (`t_a·s_a + t_b·s_b` enters where the model
    has `t·s`; for the replace effect, the sum replaces the mechanism). No interaction of
    the two perturbations beyond that is modelled. The noise and `first`'s targets are
    those of the other queries with the same key.

    Args:
        first, second: `PerturbationData` with the same number of perturbational (not
            observational) contexts, paired row by row.
        (the others as `do_variables`)
    Returns:
        `PerturbationData` with `x (n_contexts · n_cells, n_vars)`, the contexts of `first`.
    """
    for name, data in (("first", first), ("second", second)):
        _check_contexts(model, name, data)
        if np.asarray(data.observational).any():
            raise ValueError(f"{name} must hold perturbational contexts only; observational "
                             f"at {np.flatnonzero(np.asarray(data.observational)).tolist()}")
    if second.n_contexts != first.n_contexts:
        raise ValueError(f"second must have as many contexts as first ({first.n_contexts}), "
                         f"got {second.n_contexts}")
    params, cells_a, draws = _generative_batch(model, sites, first, n_cells)
    _, cells_b, _ = _generative_batch(model, sites, second, n_cells)
    t_a, noise, _ = _run(model, params, cells_a, key=_cell_keys(key, cells_a))
    t_b, _, _ = _run(model, params, cells_b, key=_cell_keys(jax.random.fold_in(key, 1),
                                                            cells_b))
    rows = np.repeat(np.arange(first.n_contexts), n_cells)
    s_a, s_b = (_context_shifts(model, sites, data)[draws, rows] for data in (first, second))
    union = 1.0 - (1.0 - t_a) * (1.0 - t_b)
    # The model adds union·s_a; the rest of t_a·s_a + t_b·s_b enters through σ·ε.
    extra = (t_a * s_a + t_b * s_b - union * s_a) / params["noise_scale"]
    _, _, x = _run(model, params, cells_a, targets=union, noise=noise + extra)
    return _as_cells(first, x, n_cells)


def counterfactual(model: GIM, sites: Mapping, data: PerturbationData, *,
                   values: Mapping[int, float] | None = None, context: int | None = None,
                   targets=None) -> np.ndarray:
    """What each observed cell would have been under another intervention.

    1. Abduction: the noise ε of each cell given its context's targets (default: the
       posterior mode `model.posterior_targets(sites, data) > 0.5` of its context, one
       target vector per context), so that the model reproduces the cell exactly.
    2. Action: move every cell to context `context` of `data` (its Hill shifts and its
       targets, chosen as in 1) and/or hold variables fixed, do(x_i = v for `values`).
    3. Prediction: the model run with the cell's own noise.

    Args:
        data: `PerturbationData` with cells, `(n_cells, n_vars)`.
        values: `{variable index: value}` to hold fixed, or None.
        context: index of a context of `data` to move every cell to, or None.
        targets: `(n_contexts, n_vars)` 0/1 targets of every context of `data`, instead of
            the posterior mode (the same for all draws).
    Returns:
        `(n_cells, n_vars)` counterfactual cells, `(n_draws, n_cells, n_vars)` with draws.
    Raises:
        ValueError: neither `values` nor `context`, `data` without cells, bad `values`,
            `context` or `targets`.
    """
    _check_contexts(model, "data", data)
    if data.x is None:
        raise ValueError("data must have cells to abduct their noise: data.x is None")
    if values is None and context is None:
        raise ValueError("give values, context or both: the intervention to apply")
    cols, goal = (None, None) if values is None else _check_values(model, values)
    if context is not None:
        context = check_integer("context", context, minimum=0)
        if context >= data.n_contexts:
            raise ValueError(f"context must be in [0, {data.n_contexts}), got {context}")
    has_draws = _check_sites(model, sites)
    if targets is None:
        modes = (model.posterior_targets(sites, data) > 0.5).astype(float)
    else:
        modes = _check_targets(model, data, targets)
    modes = modes if has_draws else modes[None]
    n_draws, n = modes.shape[0], data.n_cells
    rows = np.tile(np.asarray(data.context), n_draws)
    draws = np.repeat(np.arange(n_draws), n)
    params = _params_per_cell(model, sites, draws)
    dtype = params["noise_scale"].dtype
    cells = _single_cell_contexts(data, rows)
    observed = jnp.tile(jnp.asarray(data.x, dtype), (n_draws, 1))
    cell_targets = jnp.asarray(modes[draws, rows], dtype)
    zero = jnp.zeros_like(observed)
    _, _, x = _run(model, params, cells, targets=cell_targets, noise=zero)
    noise, _ = _settle(model, params, cells, cell_targets, zero, x, np.arange(model.n_vars),
                       observed, "counterfactual (abduction)")
    if context is not None:
        rows = np.full_like(rows, context)
        cells = _single_cell_contexts(data, rows)
        cell_targets = jnp.asarray(modes[draws, rows], dtype)
    _, _, x = _run(model, params, cells, targets=cell_targets, noise=noise)
    if cols is not None:
        _, x = _settle(model, params, cells, cell_targets, noise, x, cols, goal,
                       "counterfactual (do)")
    x = np.asarray(x).reshape(n_draws, n, model.n_vars)
    return x if has_draws else x[0]


# --- one pass of the model -----------------------------------------------------------------


def _run(model: GIM, params: dict, cells: PerturbationData, *, key=None, targets=None,
         noise=None):
    """`(targets, noise, x)`, each `(n, n_vars)`: the model's generative pass on `n`
    single-cell contexts, parameters `params (n, …)` substituted, the latent sites drawn
    with `key (n,)` or conditioned on `targets`/`noise (n, n_vars)`.

    One compiled function serves every call of a shape: the sites not given are drawn
    (with a fixed key when `key` is None), then the pass is run conditioned on both."""
    n, d = cells.dose.shape[0], model.n_vars
    dtype = params["noise_scale"].dtype
    keys = jax.random.split(jax.random.key(0), n) if key is None else key
    given = jnp.asarray([targets is not None, noise is not None])
    targets = jnp.zeros((n, d), dtype) if targets is None else targets
    noise = jnp.zeros((n, d), dtype) if noise is None else noise
    return _vmapped_run(model, params, cells, keys, targets, noise, given)


@functools.partial(jax.jit, static_argnums=0)
def _vmapped_run(model, params, cells, keys, targets, noise, given):
    def one(p, cell, k, t, e):
        model_at = handlers.substitute(model, data=p)
        drawn = handlers.trace(handlers.seed(model_at, k)).get_trace(cell, hard_targets=True)
        fixed = {"targets": jnp.where(given[0], t[None], drawn["targets"]["value"]),
                 "noise": jnp.where(given[1], e[None], drawn["noise"]["value"])}
        trace = handlers.trace(handlers.condition(model_at, data=fixed)).get_trace(
            cell, hard_targets=True)
        x = trace["x"]["value"][0]
        return fixed["targets"][0].astype(x.dtype), fixed["noise"][0], x

    return jax.vmap(one)(params, cells, keys, targets, noise)


def _settle(model, params, cells, targets, noise, x, cols, goal, what):
    """`(noise, x)` with `noise[:, cols]` changed until the model gives `x[:, cols] == goal`.

    `x_j` is additive in `σ_j ε_j` whatever its parents, so `ε_j += (goal − x_j) / σ_j` puts
    x_j on goal once its parents have settled: on a DAG every column is exact after at most
    `len(cols)` corrections. With a cycle the corrections continue to their fixed point
    (the exact answer of the cyclic SCM) while the loop gain is below 1/2, up to
    `MAX_PASSES`. `goal` broadcasts against `x[:, cols]`.
    """
    cols = jnp.asarray(cols)
    goal = jnp.asarray(goal, x.dtype)
    scale = params["noise_scale"][:, cols]
    tol = float(jnp.finfo(x.dtype).eps) ** 0.75 * (1.0 + float(jnp.max(jnp.abs(goal))))
    for _ in range(MAX_PASSES):
        gap = goal - x[:, cols]
        if float(jnp.max(jnp.abs(gap))) <= tol:
            return noise, x
        noise = noise.at[:, cols].add(gap / scale)
        _, _, x = _run(model, params, cells, targets=targets, noise=noise)
    gap = float(jnp.max(jnp.abs(goal - x[:, cols])))
    if gap > tol:
        warnings.warn(f"{what}: the model's cells are {gap:.3g} from the requested values "
                      f"after {MAX_PASSES} passes; the fitted weights have a strong cycle "
                      "through them (the query assumes a DAG)", RuntimeWarning, stacklevel=3)
    return noise, x


# --- batches of single-cell contexts --------------------------------------------------------


def _generative_batch(model, sites, contexts, n_cells):
    """`(params, cells, draws)` for `n_cells` cells per context: cell c of a context uses
    draw ⌊c · n_draws / n_cells⌋; `draws (n_contexts · n_cells,)`."""
    _check_contexts(model, "contexts", contexts)
    n_cells = check_integer("n_cells", n_cells)
    n_draws = int(np.shape(sites["bias"])[0]) if _check_sites(model, sites) else 1
    draws = np.tile(np.arange(n_cells) * n_draws // n_cells, contexts.n_contexts)
    rows = np.repeat(np.arange(contexts.n_contexts), n_cells)
    return _params_per_cell(model, sites, draws), _single_cell_contexts(contexts, rows), draws


def _params_per_cell(model, sites, draws):
    """Every site's value for each cell, `(n, *site_shape)`, from draw `draws (n,)`."""
    has_draws = model.check_sites(sites)
    dtype = jnp.result_type(float)
    out = {}
    for s in model.site_shapes:
        value = jnp.asarray(sites[s], dtype)
        out[s] = (value if has_draws else value[None])[jnp.asarray(draws)]
    return out


def _single_cell_contexts(contexts: PerturbationData, rows) -> PerturbationData:
    """A batch of `n` one-cell data sets (leading axis n), cell i in context `rows[i]`."""
    take = jnp.asarray(rows)
    return contexts.replace(
        x=None, context=jnp.zeros((take.shape[0], 1), jnp.int32),
        features=contexts.features[take][:, None], dose=contexts.dose[take][:, None],
        observational=contexts.observational[take][:, None],
        perturbation=contexts.perturbation[take][:, None], context_names=("cell",))


def _cell_keys(key, cells: PerturbationData):
    return jax.random.split(key, cells.dose.shape[0])


def _as_cells(contexts: PerturbationData, x, n_cells: int) -> PerturbationData:
    context = np.repeat(np.arange(contexts.n_contexts), n_cells).astype(np.int32)
    return contexts.replace(x=x, context=jnp.asarray(context))


def _context_shifts(model, sites, contexts) -> np.ndarray:
    """Hill shift of every context under every draw, `(n_draws, n_contexts, n_vars)` (one
    draw for a point), from the model's heads."""
    heads = model.intervention_outputs(sites, contexts)
    shift = np.asarray(intervention_shift(heads, contexts.dose))
    return shift if shift.ndim == 3 else shift[None]


# --- validation at the entry points ---------------------------------------------------------


def _check_sites(model, sites) -> bool:
    if not isinstance(model, GIM):
        raise TypeError(f"model must be a gim_ppl.GIM, got {type(model).__name__}")
    has_draws = model.check_sites(sites)
    if not (np.asarray(sites["noise_scale"]) > 0).all():
        raise ValueError("sites['noise_scale'] must be positive: the queries solve for "
                         "each cell's noise")
    return has_draws


def _check_contexts(model, name: str, data) -> None:
    if not isinstance(model, GIM):
        raise TypeError(f"model must be a gim_ppl.GIM, got {type(model).__name__}")
    if not isinstance(data, PerturbationData):
        raise TypeError(f"{name} must be a gim_ppl.PerturbationData, got "
                        f"{type(data).__name__}")
    if data.n_vars != model.n_vars:
        raise ValueError(f"{name} has {data.n_vars} variables, the model {model.n_vars}")
    if data.features.shape[-1] != model.n_features:
        raise ValueError(f"{name} has {data.features.shape[-1]} features, the model "
                         f"{model.n_features}")


def _check_indices(model, name: str, indices) -> np.ndarray:
    """Variable indices `(m,)`, distinct, in `[0, n_vars)`, at least one."""
    if isinstance(indices, (str, bytes, Mapping)) or not isinstance(indices, (Sequence,
                                                                              np.ndarray)):
        raise TypeError(f"{name} must be a sequence of variable indices, got "
                        f"{type(indices).__name__}")
    out = [_check_index(model, name, i) for i in indices]
    if not out or len(set(out)) != len(out):
        raise ValueError(f"{name} must hold at least one variable index, each once, got "
                         f"{list(indices)!r}")
    return np.asarray(out)


def _check_index(model, name: str, index) -> int:
    if isinstance(index, bool) or not isinstance(index, numbers.Integral) \
            or not 0 <= index < model.n_vars:
        raise ValueError(f"{name} must index variables in [0, {model.n_vars}), got "
                         f"{index!r}")
    return int(index)


def _check_values(model, values) -> tuple[np.ndarray, np.ndarray]:
    """`(cols (m,), goal (m,))` of a `{variable index: value}` mapping."""
    if not isinstance(values, Mapping):
        raise TypeError(f"values must be a dict {{variable index: value}}, got "
                        f"{type(values).__name__}")
    cols = _check_indices(model, "values", list(values))
    goal = []
    for i, v in values.items():
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise ValueError(f"values[{i}] must be a finite real number, got {v!r}")
        goal.append(float(v))
    return cols, np.asarray(goal)


def _check_targets(model, data, targets) -> np.ndarray:
    arr = np.asarray(targets, dtype=float)
    if arr.shape != (data.n_contexts, model.n_vars) or not np.isin(arr, (0.0, 1.0)).all():
        raise ValueError(f"targets must be 0/1 of shape ({data.n_contexts}, {model.n_vars}) "
                         f"(one row per context of data), got shape {arr.shape}")
    return arr


__all__ = ["block_targets", "combine", "counterfactual", "do_variables"]
