"""Minibatches and sharding of the cells: stratified per-context batches whose weighted
sufficient statistics are unbiased for the full data's, minibatches of whole perturbations
whose log-likelihood is unbiased for the full data's, and data-parallel placement.

How `fit` reads the cells is a value, its `batch_size`: None (every cell every step), an int
(`stratified_batch`), `PerturbationBatches` (`perturbation_batch`) or `Sharded` (every cell,
split over devices: `shard_cells`); `batch_source` turns it into the `Batch` of each step.

Why two kinds of minibatch. A context's targets are latent and shared by all its cells (by
all contexts of a perturbation with shared targets), so its term of the log-likelihood is a
mixture over targets, `log Σ_t p(t) exp L(t)`, non-linear in the context's sums. Cells
drawn from within a context give unbiased sums but a biased, noisy mixture: the
evidence `L(1) − L(0)` of a context of n cells estimated from b of them has a standard
deviation of order `n / √b` times the per-cell evidence, so each step sees the target
posterior of a random, over-scattered data set. Drawing whole perturbations (all cells of
all their contexts) keeps every drawn mixture exact and the sum over perturbations
unbiased — the unit of exchangeability is the perturbation, as the group is in a
hierarchical model's SVI. The control cells carry no latent targets: their term is a plain
sum over cells and is estimated from a subsample of cells.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gim_ppl.checks import check_integer
from gim_ppl.data import PerturbationData


class BatchIndex(NamedTuple):
    """Where each context's cells are: `order (n_cells,)` cell indices sorted by context,
    `start (n_contexts,)` offsets into `order`, `count (n_contexts,)`; `size` cells per
    context per batch."""

    order: jnp.ndarray
    start: jnp.ndarray
    count: jnp.ndarray
    size: int

    @classmethod
    def build(cls, data: PerturbationData, size: int) -> BatchIndex:
        """The index of `data`'s cells (host-side, once per fit) for batches of `size`
        cells per context."""
        ctx = np.asarray(data.context)
        count = np.bincount(ctx, minlength=data.n_contexts)
        start = np.r_[0, np.cumsum(count)[:-1]]
        order = np.argsort(ctx, kind="stable").astype(np.int32)
        return cls(jnp.asarray(order), jnp.asarray(start, jnp.int32),
                   jnp.asarray(count, jnp.int32), int(size))


def stratified_batch(key, data: PerturbationData, index: BatchIndex):
    """A minibatch of `index.size` slots per context and the cell weights that make its
    sufficient statistics unbiased for the full data's. Jittable (`fit` calls it inside
    its `lax.scan`).

    Args:
        key: PRNG key of this batch.
        data: `PerturbationData` with cells, `x (n_cells, n_vars)`.
        index: the `BatchIndex` of `data`.

    A context with `n_k ≤ size` cells contributes all of them (weight 1; unused slots weight
    0); a larger one `size` cells drawn with replacement, each weighted `n_k / size`. The sum
    of the weights of context k is `n_k` in every batch.

    Returns:
        `(PerturbationData with n_contexts · size cells, cell_weights (n_contexts · size,))`.
    """
    b = index.size
    slot = jnp.arange(b)[None, :]
    count = index.count[:, None]
    small = count <= b
    u = jax.random.uniform(key, (index.count.shape[0], b))
    offset = jnp.where(small, jnp.minimum(slot, jnp.maximum(count - 1, 0)),
                       jnp.floor(u * count).astype(jnp.int32))
    cells = index.order[index.start[:, None] + offset].reshape(-1)
    dtype = data.x.dtype
    weight = jnp.where(small, (slot < count).astype(dtype), count.astype(dtype) / b)
    ctx = jnp.repeat(jnp.arange(index.count.shape[0], dtype=jnp.int32), b)
    return data.replace(x=data.x[cells], context=ctx), weight.reshape(-1)


class PerturbationBatches(NamedTuple):
    """Minibatches of whole perturbations (`fit(..., batch_size=PerturbationBatches(n))`):
    each step draws `n_perturbations` of the perturbations without replacement, with every
    cell of every context of theirs, and `control_cells` of the observational cells (drawn
    with replacement; default: the same fraction of them as of the perturbations, at least
    one). See the module docstring for why this keeps the target posterior's accuracy where
    cells drawn within contexts (`batch_size=int`) lose it."""

    n_perturbations: int
    control_cells: int | None = None


class PerturbationBatchIndex(NamedTuple):
    """Where each perturbation's cells are: `cells (n_perturbations, max_cells)` cell
    indices (padding: index 0, `valid` False), `control (n_control,)` the observational
    cells; `size` perturbations and `n_control_batch` control cells per batch."""

    cells: jnp.ndarray
    valid: jnp.ndarray
    control: jnp.ndarray
    size: int
    n_control_batch: int

    @classmethod
    def build(cls, data: PerturbationData, batches: PerturbationBatches
              ) -> PerturbationBatchIndex:
        """The index of `data`'s cells (host-side, once per fit) for `batches`.

        Raises:
            ValueError: `n_perturbations` is not in `[1, number of perturbations]`, or
                `control_cells` < 1 with control cells present.
        """
        ctx = np.asarray(data.context)
        pert = np.asarray(data.perturbation)[ctx]  # per cell; -1 for control cells
        obs = np.asarray(data.observational)[ctx]
        ids = np.unique(pert[~obs])
        size = check_integer("batch_size.n_perturbations", batches.n_perturbations)
        if not 1 <= size <= len(ids):
            raise ValueError(f"batch_size.n_perturbations must be in [1, {len(ids)}] (the "
                             f"perturbations with cells), got {size}")
        rows = [np.flatnonzero((pert == i) & ~obs) for i in ids]
        width = max(len(r) for r in rows)
        cells = np.zeros((len(rows), width), np.int32)
        valid = np.zeros((len(rows), width), bool)
        for j, r in enumerate(rows):
            cells[j, :len(r)], valid[j, :len(r)] = r, True
        control = np.flatnonzero(obs).astype(np.int32)
        n_control = batches.control_cells
        if n_control is None:
            n_control = int(np.ceil(len(control) * size / len(ids)))
        n_control = check_integer("batch_size.control_cells", n_control) if len(control) else 0
        return cls(jnp.asarray(cells), jnp.asarray(valid), jnp.asarray(control), size,
                   n_control)


def perturbation_batch(key, data: PerturbationData, index: PerturbationBatchIndex):
    """A minibatch of whole perturbations and control cells, and the weights that make its
    log-likelihood unbiased for the full data's. Jittable.

    Args:
        key: PRNG key of this batch.
        data: `PerturbationData` with cells, `x (n_cells, n_vars)`.
        index: the `PerturbationBatchIndex` of `data`.

    Returns:
        `(PerturbationData with index.size · max_cells + n_control_batch cells,
        cell_weights, context_weights (n_contexts,))`: drawn perturbations' cells weigh 1
        (padding 0) and their contexts `n_perturbations / size` (undrawn contexts have no
        cells and add nothing); control cells weigh `n_control / n_control_batch` in the
        sums and their contexts 1.
    """
    dtype = data.x.dtype
    key_p, key_c = jax.random.split(key)
    n_units = index.cells.shape[0]
    chosen = jax.random.choice(key_p, n_units, (index.size,), replace=False)
    cells = index.cells[chosen].reshape(-1)
    weight = index.valid[chosen].reshape(-1).astype(dtype)
    if index.n_control_batch:
        n_control = index.control.shape[0]
        pick = jax.random.randint(key_c, (index.n_control_batch,), 0, n_control)
        cells = jnp.concatenate([cells, index.control[pick]])
        weight = jnp.concatenate([weight, jnp.full((index.n_control_batch,),
                                                   n_control / index.n_control_batch, dtype)])
    context = jnp.asarray(data.context)[cells]
    context_weights = jnp.where(jnp.asarray(data.observational), 1.0,
                                n_units / index.size).astype(dtype)
    return data.replace(x=data.x[cells], context=context), weight, context_weights


class Sharded(NamedTuple):
    """Every cell every step, split over `devices` along the cell axis (data parallel;
    `fit(..., batch_size=Sharded(jax.devices()))`, see `shard_cells`). Sharded cells are not
    also minibatched: one value of `batch_size` says how a step reads the cells.

    Attributes:
        devices: a non-empty sequence of JAX devices.
    """

    devices: Sequence


class Batch(NamedTuple):
    """The cells one step reads and their weights (what `fit_step` takes).

    Attributes:
        data: `PerturbationData` with cells, `x (n_batch_cells, n_vars)`.
        cell_weights: `(n_batch_cells,)` weight of each cell's term, or None (all 1).
        context_weights: `(n_contexts,)` weight of each context's term, or None (all 1).
    """

    data: PerturbationData
    cell_weights: jnp.ndarray | None = None
    context_weights: jnp.ndarray | None = None


def check_batch_size(batch_size):
    """`fit`'s `batch_size` checked: None, an int >= 1, a `PerturbationBatches` or a
    `Sharded` with a non-empty sequence of JAX devices (as a tuple).

    Raises:
        ValueError, TypeError: naming `batch_size` (or `Sharded.devices`).
    """
    if batch_size is None or isinstance(batch_size, PerturbationBatches):
        return batch_size
    if isinstance(batch_size, Sharded):
        devices = batch_size.devices
        if isinstance(devices, (str, bytes)) or not hasattr(devices, "__iter__"):
            raise TypeError(f"Sharded.devices must be a sequence of JAX devices (e.g. "
                            f"jax.devices()), got {type(devices).__name__}")
        devices = tuple(devices)
        if not devices or not all(isinstance(d, jax.Device) for d in devices):
            raise ValueError(f"Sharded.devices must be a non-empty sequence of JAX devices "
                             f"(e.g. jax.devices()), got {devices!r}")
        return Sharded(devices)
    return check_integer("batch_size", batch_size)


def batch_source(data: PerturbationData, batch_size, key
                 ) -> tuple[Batch, Callable[[jnp.ndarray, Batch], Batch]]:
    """`(placed, batch_at)`: the data as a fit holds it and a jittable `batch_at(step,
    placed) -> Batch` giving step `step`'s batch.

    Args:
        data: `PerturbationData` with cells, `x (n_cells, n_vars)`.
        batch_size: a value `check_batch_size` accepts.
        key: PRNG key of the minibatches (step `s` draws with `fold_in(key, s)`).

    Returns:
        `placed`: `Batch(data)`, or with `Sharded` the sharded data and its padding weights
        (`shard_cells`). `batch_at` returns `placed` itself for None and `Sharded`, else a
        minibatch of `placed.data` (`stratified_batch`, `perturbation_batch`). Pass `placed`
        as an argument of a jitted function rather than closing over it, so that sharded
        arrays keep their placement.
    """
    if isinstance(batch_size, Sharded):
        placed = Batch(*shard_cells(data, batch_size.devices))
    else:
        placed = Batch(data)
    if batch_size is None or isinstance(batch_size, Sharded):
        return placed, lambda step, placed: placed
    if isinstance(batch_size, PerturbationBatches):
        index = PerturbationBatchIndex.build(data, batch_size)

        def batch_at(step, placed):
            return Batch(*perturbation_batch(jax.random.fold_in(key, step), placed.data,
                                             index))
    else:
        index = BatchIndex.build(data, int(batch_size))

        def batch_at(step, placed):
            return Batch(*stratified_batch(jax.random.fold_in(key, step), placed.data, index))
    return placed, batch_at


def shard_cells(data: PerturbationData, devices):
    """Place the cells of `data` split over `devices` along the cell axis (per-context arrays
    replicated), so a jitted likelihood runs data-parallel: each device sums its cells'
    statistics and XLA all-reduces them.

    The cell count is padded to a multiple of the number of devices with copies of the first
    cell carrying weight 0, so the result equals the unsharded one up to summation order.

    Args:
        data: `PerturbationData` with cells, `x (n_cells, n_vars)`.
        devices: a non-empty sequence of JAX devices.

    Returns:
        `(sharded PerturbationData, cell_weights (n_padded,))` — pass the weights to the
        model (`cell_weights=`); `fit(..., batch_size=Sharded(devices))` does this for
        you.
    """
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    devices = list(devices)
    if not devices:
        raise ValueError("devices must name at least one device")
    n = data.x.shape[0]
    pad = (-n) % len(devices)
    idx = np.r_[np.arange(n), np.zeros(pad, dtype=int)]
    weights = np.r_[np.ones(n), np.zeros(pad)].astype(np.asarray(data.x).dtype)
    mesh = Mesh(np.asarray(devices), ("cells",))
    rows, rep = NamedSharding(mesh, P("cells")), NamedSharding(mesh, P())

    def put(a, sharding):
        return jax.device_put(jnp.asarray(a), sharding)

    sharded = data.replace(
        x=put(np.asarray(data.x)[idx], rows), context=put(np.asarray(data.context)[idx], rows),
        features=put(data.features, rep), dose=put(data.dose, rep),
        observational=put(data.observational, rep), perturbation=put(data.perturbation, rep),
    )
    return sharded, put(weights, rows)


__all__ = ["Batch", "BatchIndex", "PerturbationBatchIndex", "PerturbationBatches", "Sharded",
           "batch_source", "check_batch_size", "perturbation_batch", "shard_cells",
           "stratified_batch"]
