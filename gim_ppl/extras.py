"""Optional dependencies: import one, or say which extra installs it.

`import gim_ppl` needs only jax, numpyro, optax and numpy. Features beyond fitting live in
extras: `[bench]` (ott-jax, scikit-learn: metrics, baselines, benchmarks), `[plots]`
(matplotlib, networkx), `[screen]` (anndata, scanpy, rdkit, pandas: drug screens),
`[peers]` (causaldag's UT-IGSP, GIES: the peers of the Sachs benchmark), `[celleval]`
(the cell-eval package, the Virtual Cell Challenge's scorer, as a cross-check).
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

# top-level module → the extra that installs it
EXTRA_OF = {
    "ott": "bench",
    "sklearn": "bench",
    "matplotlib": "plots",
    "networkx": "plots",
    "anndata": "screen",
    "scanpy": "screen",
    "rdkit": "screen",
    "pandas": "screen",
    "h5py": "screen",
    "graphical_model_learning": "peers",
    "conditional_independence": "peers",
    "causaldag": "peers",
    "gies": "peers",
    "cell_eval": "celleval",
}


def require(module: str) -> ModuleType:
    """Import `module` (e.g. "rdkit.Chem"), or raise an ImportError naming the extra.

    >>> np = require("numpy")
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise _missing(module) from err


def require_installed(module: str) -> None:
    """Raise `require`'s ImportError when `module` is not installed, without importing it
    (of "a.b", only the package a is imported): a check that costs nothing before the command
    that will import it (the import can still fail later, for an installed but broken
    package).

    >>> require_installed("numpy")
    """
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a missing parent package; a module without a spec
        found = False
    if not found:
        raise _missing(module)


def _missing(module: str) -> ImportError:
    top = module.split(".")[0]
    extra = EXTRA_OF.get(top)
    hint = f'pip install "gim_ppl[{extra}]"' if extra is not None else f"pip install {top}"
    return ImportError(f"{module} is needed for this feature: {hint}")


__all__ = ["EXTRA_OF", "require", "require_installed"]
