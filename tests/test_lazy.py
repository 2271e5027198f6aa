"""`gim_ppl.lazy`: the names of `gim_ppl`, `gim_ppl.datasets` and `gim_ppl.design` are
imported on first use, are the objects their modules define, and `import gim_ppl` loads no
jax and no optional dependency."""

import ast
import subprocess
import sys

from tests import ROOT


def test_import_gim_ppl_loads_no_optional_dependency():
    from gim_ppl.extras import EXTRA_OF

    code = "import sys, gim_ppl; print(sorted({m.split('.')[0] for m in sys.modules}))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=ROOT)
    loaded = set(ast.literal_eval(done.stdout.strip().splitlines()[-1]))
    assert loaded & {*EXTRA_OF, "arviz"} == set()  # arviz: imported only inside to_arviz


def test_every_subpackage_is_reachable_after_import_gim_ppl():
    """`gim_ppl.design.rank_experiments` once raised AttributeError after `import gim_ppl`
    (a fresh interpreter: in this process another test may already have imported it). The
    names are lazy: `import gim_ppl`, `gim_ppl.ArgumentError`, and reaching the packages
    `gim_ppl.design` and `gim_ppl.evaluation` load no jax and no optional dependency."""
    code = ("import sys, gim_ppl\n"
            "heavy = {'jax', 'matplotlib', 'ott', 'sklearn', 'networkx', 'pandas', 'anndata'}\n"
            "assert {'design', 'evaluation', 'ArgumentError'} <= set(dir(gim_ppl))\n"
            "assert issubclass(gim_ppl.ArgumentError, ValueError)\n"
            "assert gim_ppl.design.__name__ == 'gim_ppl.design'\n"
            "assert gim_ppl.evaluation.__name__ == 'gim_ppl.evaluation'\n"
            "assert not heavy & {m.split('.')[0] for m in sys.modules}, sorted(sys.modules)\n"
            "for name in ('design', 'evaluation', 'plots', 'metrics', 'baselines'):\n"
            "    assert getattr(gim_ppl, name) is not None, name\n"
            "assert callable(gim_ppl.design.rank_experiments)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr


def test_lazy_names_are_the_objects_they_name():
    """The packages that import their names on first use (`gim_ppl.lazy`) give the objects
    their modules define, also when a submodule was imported first: importing a submodule
    binds its name on the package, so a lazy name that is also a submodule's name would turn
    into that module (`gim_ppl.datasets.sachs`, `gim_ppl.fit`)."""
    code = """
import importlib, pkgutil, sys, types
packages = {"gim_ppl": {"baselines", "datasets", "design", "evaluation", "metrics", "plots",
                        "summary"},
            "gim_ppl.datasets": set(), "gim_ppl.design": set()}
for name in packages:  # every submodule first, as another import may have done
    for info in pkgutil.iter_modules(importlib.import_module(name).__path__, name + "."):
        importlib.import_module(info.name)
for name, module_names in packages.items():
    package = sys.modules[name]
    values = {export: getattr(package, export) for export in package.__all__}
    modules = {e for e, v in values.items() if isinstance(v, types.ModuleType)}
    assert modules == module_names, (name, modules)
    assert set(package.__all__) <= set(dir(package)), name
import gim_ppl, gim_ppl.datasets
assert gim_ppl.fit is sys.modules["gim_ppl.inference.fitting"].fit
assert gim_ppl.datasets.sachs is sys.modules["gim_ppl.datasets.sachs_cells"].sachs
assert gim_ppl.GIM is sys.modules["gim_ppl.model"].GIM
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr
