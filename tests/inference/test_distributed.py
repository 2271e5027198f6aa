"""Multi-process fits on JAX's distributed runtime, for real: two local CPU processes with a
localhost coordinator and gloo collectives, each holding half of the cells, against one
process holding all of them. The test starts the processes itself and kills them on failure.
"""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import gim_ppl
from tests import ROOT
from tests._problems import small_data

WORKER = Path(__file__).with_name("_distributed_worker.py")
TIMEOUT = 180  # seconds for a whole run; a fit takes ~10 s, jax's import a few


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _run(*runs: tuple) -> list[subprocess.CompletedProcess]:
    """Start every `(n_processes, out, *extra)` run at once (each its own coordinator),
    wait for all; the results in order, rank by rank."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XLA_FLAGS": ""}
    procs = []
    for n_processes, out, *extra in runs:
        address = f"localhost:{_free_port()}"
        procs += [subprocess.Popen([sys.executable, str(WORKER), address, str(n_processes),
                                    str(rank), str(out), *extra], env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                  for rank in range(n_processes)]
    deadline = time.monotonic() + TIMEOUT
    results = []
    try:
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            results.append(subprocess.CompletedProcess(proc.args, proc.returncode, stdout,
                                                       stderr))
    finally:
        for proc in procs:  # a hung or failed peer must not outlive the test
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return results


def test_two_processes_fit_what_one_process_fits(tmp_path):
    for r in _run((1, tmp_path / "one.npz"), (2, tmp_path / "two.npz")):
        assert r.returncode == 0, r.stderr[-3000:]
    a, b = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    assert int(b["n_cells"]) * 2 in (int(a["n_cells"]), int(a["n_cells"]) + 1)  # half each
    # the moments differ by float64 round-off before their cast to float32, so the runs
    # may differ in the last bits; 300 Adam steps keep that far below these tolerances
    np.testing.assert_allclose(b["losses"], a["losses"], rtol=1e-5)
    assert a["losses"][-1] < a["losses"][0]
    for name in a.files:
        if name not in ("losses", "n_cells"):
            np.testing.assert_allclose(b[name], a[name], rtol=1e-3, atol=1e-4, err_msg=name)


def test_processes_with_other_contexts_are_refused(tmp_path):
    runs = _run((2, tmp_path / "bad.npz", "--other-contexts"))
    assert all(r.returncode != 0 for r in runs)
    assert "processes [1] hold other contexts than process 0" in runs[0].stderr


def test_an_unreachable_coordinator_is_a_clear_error_not_a_hang():
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="could not reach the coordinator at localhost"):
        gim_ppl.initialize_distributed(f"localhost:{_free_port()}", 2, 1, timeout=2)
    assert time.monotonic() - start < 30


@pytest.mark.parametrize("args, match", [
    (("localhost", 2, 0), "coordinator_address must be 'host:port'"),
    (("localhost:1", 0, 0), "num_processes must be an integer >= 1"),
    (("localhost:1", 2, 2), r"process_id must be an integer in \[0, 2\)"),
])
def test_bad_launch_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        gim_ppl.initialize_distributed(*args)


def test_take_cells_splits_every_cell_once_for_any_count():
    data = small_data(seed=0, d=3, n_cells=5, n_obs=6)  # 36 cells
    for n in (1, 3, 7):  # 7 does not divide the cells: parts differ by one cell at most
        parts = [data.take_cells(i, n) for i in range(n)]
        sizes = [p.n_cells for p in parts]
        assert sum(sizes) == data.n_cells and max(sizes) - min(sizes) <= 1
        merged = np.sort(np.concatenate([np.asarray(p.x) for p in parts]), axis=0)
        np.testing.assert_array_equal(merged, np.sort(np.asarray(data.x), axis=0))
    with pytest.raises(ValueError, match="part must be an integer in"):
        data.take_cells(3, 3)
    with pytest.raises(ValueError, match="n_parts must be an integer in"):
        data.take_cells(0, data.n_cells + 1)
