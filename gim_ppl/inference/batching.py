"""Minibatches and sharding of the cells: stratified per-context batches whose weighted
sufficient statistics are unbiased for the full data's, and data-parallel placement."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

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
        model (`cell_weights=`); `fit(..., devices=)` does this for you.
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


__all__ = ["BatchIndex", "shard_cells", "stratified_batch"]
