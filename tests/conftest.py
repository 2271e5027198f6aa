import os
import tempfile
from typing import NamedTuple

# Tests run on CPU; keep XLA from grabbing every core for its thread pool twice over.
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One persistent XLA compilation cache for the test processes (xdist workers and the CLI
# and script subprocesses they start, which inherit the environment): many tests compile
# the same small programs, and a fit's compilation, not its steps, dominates their time.
# A cache hit returns the executable a fresh compilation would build, so no result changes.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), "gim_ppl-tests-xla-cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

import jax  # after the environment above: XLA reads it when the backend starts
import numpy as np
import pytest


class Precision(NamedTuple):
    """What a test may expect at one floating-point precision.

    rtol, atol: agreement with an independent (NumPy/SciPy, float64) reference.
    fd_eps, fd_rtol, fd_atol: step and tolerances of central finite differences of a
        gradient. In float32 the rounding error of a log density of a few hundred nats,
        ~1e-7 · 500 / eps, dominates unless eps is large: eps 1e-2 keeps it near 5e-3.
    """

    name: str
    dtype: type
    rtol: float
    atol: float
    fd_eps: float
    fd_rtol: float
    fd_atol: float


#: The tolerances per dtype, in one place (float32: ~1e-7 machine epsilon times the
#: condition of sums over cells; float64 allows five orders of magnitude more).
PRECISIONS = {
    "float32": Precision("float32", np.float32, rtol=1e-5, atol=1e-6, fd_eps=1e-2,
                         fd_rtol=5e-2, fd_atol=2e-2),
    "float64": Precision("float64", np.float64, rtol=1e-10, atol=1e-12, fd_eps=1e-6,
                         fd_rtol=1e-5, fd_atol=1e-6),
}


@pytest.fixture(params=list(PRECISIONS))
def precision(request) -> Precision:
    """Run the test in float32 (JAX's default) and again under `jax.enable_x64(True)`."""
    with jax.enable_x64(request.param == "float64"):
        yield PRECISIONS[request.param]
