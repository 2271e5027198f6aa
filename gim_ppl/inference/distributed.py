"""Fits past one machine, on JAX's own distributed runtime.

A linear GIM's likelihood reads only each context's cell count, mean and scatter
(`core.likelihood.CellMoments`). So a multi-process fit exchanges those once, before the
fit, and nothing per step: every process loads its own shard of the cells (any split of the
cells; every process has the full table of contexts), `share_moments` all-gathers the
shards' moments and merges them (`core.likelihood.merge_moments`), and every process runs
the same fit on the same moments — parameters replicated, the answer of one process that
held every cell. `fit` does this by itself when `jax.process_count() > 1`.

Launch one process per host or GPU (see docs/performance.md for a SLURM recipe):

    gim_ppl.initialize_distributed("host0:12355", num_processes=2, process_id=rank)
    local = data.take_cells(rank, 2)              # or load this process's shard
    result = gim_ppl.fit(gim_ppl.GIM(d, p), local, steps=..., key=jax.random.key(0))

MLP mechanisms have no moments: their multi-process fits are refused (use
`batch_size=Sharded(devices)` on one host instead).
"""

from __future__ import annotations

import hashlib
import json
import socket
import time

import jax
import numpy as np

from gim_ppl.core.likelihood import CellMoments, cell_moments, merge_moments
from gim_ppl.data import PerturbationData

#: Seconds `initialize_distributed` waits for every process to reach the coordinator.
DEFAULT_TIMEOUT = 60


def initialize_distributed(coordinator_address: str, num_processes: int, process_id: int, *,
                           timeout: int = DEFAULT_TIMEOUT) -> None:
    """`jax.distributed.initialize` with CPU collectives (gloo) and clear errors.

    Args:
        coordinator_address: "host:port" of process 0, reachable from every process.
        num_processes: processes in the run (≥ 1); process_id: this one's rank in
            `[0, num_processes)`.
        timeout: seconds to wait for all processes before raising.

    Raises:
        ValueError: bad sizes or address; RuntimeError: a process other than 0 did not
            reach the coordinator in time. (Process 0 waits for the others; when they do
            not come, XLA ends it after `timeout` with "DEADLINE_EXCEEDED".)
    """
    if isinstance(num_processes, bool) or not isinstance(num_processes, int) \
            or num_processes < 1:
        raise ValueError(f"num_processes must be an integer >= 1, got {num_processes!r}")
    if isinstance(process_id, bool) or not isinstance(process_id, int) \
            or not 0 <= process_id < num_processes:
        raise ValueError(f"process_id must be an integer in [0, {num_processes}), got "
                         f"{process_id!r}")
    if not isinstance(coordinator_address, str) \
            or not coordinator_address.rpartition(":")[2].isdigit():
        raise ValueError(f"coordinator_address must be 'host:port', got "
                         f"{coordinator_address!r}")
    if process_id > 0:
        # XLA's client aborts the whole process when the coordinator does not answer; a
        # plain TCP probe first turns the common case (wrong address, process 0 not
        # started) into an exception
        _wait_for(coordinator_address, timeout, process_id, num_processes)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address, num_processes, process_id,
                               initialization_timeout=int(timeout))


def _wait_for(address: str, timeout: float, process_id: int, num_processes: int) -> None:
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=1.0):
                return
        except OSError as err:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"initialize_distributed: process {process_id} of {num_processes} could "
                    f"not reach the coordinator at {address} within {timeout} s ({err}); "
                    "start process 0 first, and check the address and that the port is "
                    "open") from err
            time.sleep(0.2)


def _context_fingerprint(data: PerturbationData) -> np.ndarray:
    """32 bytes that differ when two processes hold different context tables."""
    h = hashlib.sha256()
    for name in ("features", "dose", "observational", "perturbation"):
        arr = np.ascontiguousarray(np.asarray(getattr(data, name)))
        h.update(f"{name}:{arr.dtype.str}{arr.shape};".encode())
        h.update(arr.tobytes())
    h.update(json.dumps([data.var_names, data.context_names]).encode())
    return np.frombuffer(h.digest(), np.uint8).astype(np.int32)


def _allgather_float64(arr: np.ndarray) -> np.ndarray:
    """`process_allgather` of a float64 array without a float32 round trip (JAX without
    x64 would cast it): sent as its 32-bit halves."""
    from jax.experimental import multihost_utils

    halves = np.ascontiguousarray(arr, np.float64).view(np.uint32)
    gathered = np.asarray(multihost_utils.process_allgather(halves.astype(np.uint32)))
    return np.ascontiguousarray(gathered).view(np.float64)


def share_moments(data: PerturbationData) -> PerturbationData:
    """`data` (this process's shard of the cells) with the moments of every process's cells.

    Collective: every process must call it with its shard of the same contexts. With one
    process it is `data.with_moments()`.

    Raises:
        ValueError: no cells, or processes holding different context tables (names which).
    """
    if not data.has_cells:
        raise ValueError("share_moments: data has no cells (x is None)")
    if jax.process_count() == 1:
        return data.with_moments()
    from jax.experimental import multihost_utils

    prints = np.asarray(multihost_utils.process_allgather(_context_fingerprint(data)))
    differ = [p for p in range(prints.shape[0]) if not np.array_equal(prints[p], prints[0])]
    if differ:
        raise ValueError(f"share_moments: processes {differ} hold other contexts than "
                         "process 0 (features, doses, names); every process needs the full "
                         "table of contexts and its own shard of the cells")
    local = cell_moments(data.x, data.context, data.n_contexts)
    parts = CellMoments(*(_allgather_float64(m) for m in local))
    merged = merge_moments(parts)
    dtype = np.dtype(jax.numpy.asarray(data.x).dtype)
    return data.replace(moments=CellMoments(*(jax.numpy.asarray(m, dtype) for m in merged)))


__all__ = ["DEFAULT_TIMEOUT", "initialize_distributed", "share_moments"]
