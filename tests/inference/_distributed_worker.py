"""One process of the multi-process tests (started by tests/inference/test_distributed.py, not
collected by pytest): fit a small benchmark on this process's shard of the cells and, on
process 0, save the losses and sites.

    python tests/inference/_distributed_worker.py ADDRESS N_PROCESSES RANK OUT.npz \
        [--other-contexts]
"""

import os
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax
import numpy as np
import optax

import gim_ppl

STEPS = 300


def main(address: str, n_processes: int, rank: int, out: str, other_contexts: bool) -> None:
    if n_processes > 1:
        gim_ppl.initialize_distributed(address, n_processes, rank, timeout=60)
    train = gim_ppl.datasets.synthetic_hill(0, n_train_perturbations=8, n_cells=30).train
    if other_contexts and rank == 1:  # a process that loaded another table of contexts
        train = train.replace(dose=train.dose.at[1].add(0.5))
    local = train.take_cells(rank, n_processes)
    result = gim_ppl.fit(gim_ppl.GIM(train.n_vars, train.n_features), local, steps=STEPS,
                         key=jax.random.key(0), optimizer=optax.adam(1e-2), progress=False)
    if rank == 0:
        np.savez(out, losses=result.losses, n_cells=local.n_cells,
                 **{k: np.asarray(v) for k, v in result.sites.items()})
    if n_processes > 1:
        jax.distributed.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4],
         "--other-contexts" in sys.argv[5:])
