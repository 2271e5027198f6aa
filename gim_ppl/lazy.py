"""`lazy_exports`: a package's public names imported on first use (PEP 562), so that
`import gim_ppl` and the command line's argument checks load no jax (issue 27: a one-line CLI
error in under 2 s).

A lazy name must not also be the name of a submodule of the same package (unless its value is
that submodule): importing the submodule binds its name on the package, which then hides the
lazy value. Module names therefore differ from the functions they define (`fit` lives in
`inference.fitting`, `sachs` in `datasets.sachs_cells`).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping, Sequence


def lazy_exports(package: str, names: Mapping[str, Sequence[str]],
                 modules: Mapping[str, str] | None = None):
    """`(__getattr__, __dir__)` of `package`: the names of `names` `{module: [name, ...]}` are
    read from their module, and those of `modules` `{name: module}` are modules; each is
    imported on first access and then kept on the package, so later reads cost nothing.

    >>> __getattr__, __dir__ = lazy_exports(__name__, {"gim_ppl.model": ["GIM"]},
    ...                                     modules={"plots": "gim_ppl.plots"})
    """
    where = {name: (module, name) for module, listed in names.items() for name in listed}
    where.update({name: (module, None) for name, module in (modules or {}).items()})

    def __getattr__(name: str):
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, attribute = where[name]
        value = importlib.import_module(module)
        if attribute is not None:
            value = getattr(value, attribute)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *where})

    return __getattr__, __dir__


__all__ = ["lazy_exports"]
