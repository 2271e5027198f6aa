"""The package's architecture (DESIGN §6), read from the `ast` of gim_ppl/ and tests/: the
tables below, each rule checked by a small function that `test_each_rule_can_fail` also runs
on a planted package breaking it.

* LAYERS: a module imports its own layer and those before it, also inside functions
  (package `__init__`s exempt; `gim_ppl` itself is the top layer). Imports are absolute.
* No import cycle: `from a.b import c` depends on `a.b.c` (a module) or `a.b`, and on the
  `__init__`s above it but the importer's own; `if TYPE_CHECKING:` imports do not count.
* No `_private` name of a module used in another (imported, read as `m._y`, or off an object
  of another module's class), but a package's private submodules; a test may use those of
  the module it tests (`modules_tested_by`). tests/ mirrors gim_ppl/, but for CROSS_CUTTING tests.
* Outside LAZY_MODULES extras are imported inside functions only; every third-party import
  is core or has an extra (EXTRA_OF). test_lazy.py checks that `import gim_ppl` loads none,
  test_extras.py that the core and `gim-ppl demo` run without the other extras.
"""

from __future__ import annotations

import ast
import graphlib
import importlib
import pkgutil
import sys
from typing import NamedTuple

import pytest

from gim_ppl.extras import EXTRA_OF
from tests import ROOT

LAYERS = [  # lowest first; `gim_ppl` itself is above them all
    {"extras", "lazy", "errors", "checks", "data", "core", "knowledge"},
    {"priors", "model", "joint", "readout", "generative", "settings"},
    {"inference"},
    {"datasets"},
    {"evaluation", "design"},  # evaluation may import datasets, not the reverse
    {"summary", "plots"},
    {"cli"},
]
CORE_IMPORTS = {"jax", "jaxlib", "numpyro", "optax", "numpy", "arviz", "tqdm", "scipy"}
OPTIONAL = set(EXTRA_OF)  # every module an extra installs
LAZY_MODULES = ("gim_ppl.evaluation", "gim_ppl.plots", "gim_ppl.cli")  # reached lazily only
# tests/ mirrors gim_ppl/ (modules_tested_by), but for these tests about no one module
CROSS_CUTTING = {"architecture", "benchmark_scripts", "docs_blocks", "fuzz", "recovery"}


class Module(NamedTuple):
    tree: ast.Module
    imports: list[tuple[str, str | None, int, bool]]  # of gim_ppl: (target, name, line, runs)
    external: list[tuple[str, int, bool]]  # of others: (top-level name, line, at module level)
    bound: dict[str, str]  # local name → the module (or module.name) an import binds to it
    privates: set[str]  # private methods and attributes that its classes define


def sources_of(folder, package: str) -> dict[str, str]:
    """{dotted module name: source} of the .py files under `folder` (`__init__` → package)."""
    return {".".join((package, *p.relative_to(folder).with_suffix("").parts)).removesuffix(
        ".__init__"): p.read_text() for p in sorted(folder.rglob("*.py"))}


def parse(sources: dict[str, str]) -> dict[str, Module]:
    """Every module's imports; a `target` is `a.b.c` for `from a.b import c` where that is a
    module, else `a.b` with `name` "c" (None for `import a.b`)."""
    parsed = {}
    for module, source in sources.items():
        tree, imports, external, bound = ast.parse(source), [], [], {}
        type_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                     and ast.unparse(node.test).endswith("TYPE_CHECKING")
                     for stmt in node.body for n in ast.walk(stmt)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found = [(a.name, None) for a in node.names]
                bound |= {a.asname or a.name.split(".")[0]: a.name if a.asname
                          else a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{module}:{node.lineno}: a relative import"
                found = [(f"{node.module}.{a.name}", None) if f"{node.module}.{a.name}" in sources
                         else (node.module, a.name) for a in node.names]
                bound |= {a.asname or a.name: f"{node.module}.{a.name}" for a in node.names}
            else:
                continue
            for target, name in found:
                if target.split(".")[0] == "gim_ppl":
                    imports.append((target, name, node.lineno, id(node) not in type_only))
                else:
                    external.append((target.split(".")[0], node.lineno, node in tree.body))
        parsed[module] = Module(tree, imports, external, bound, class_privates(tree))
    return parsed


def ancestors(module: str) -> set[str]:
    return {module.rsplit(".", i)[0] for i in range(1, module.count(".") + 1)}


def layer_of(module: str) -> int | None:
    """The index of a package module's layer (`gim_ppl` itself: above them all), or None."""
    top, _, rest = module.partition(".")
    if top != "gim_ppl" or not rest:
        return len(LAYERS) if module == "gim_ppl" else None
    return next((i for i, names in enumerate(LAYERS) if rest.split(".")[0] in names), None)


def upward_imports(parsed: dict[str, Module]) -> list[str]:
    packages = {a for m in parsed for a in ancestors(m)}
    return sorted({f"{m} → {t}" for m, mod in parsed.items() if m not in packages
                   for t, _, _, _ in mod.imports if None not in (layer_of(t), layer_of(m))
                   and layer_of(t) > layer_of(m)})


def import_cycle(parsed: dict[str, Module]) -> list[str] | None:
    graph = {m: {d for t, _, _, runs in mod.imports if runs
                 for d in ({t} | (ancestors(t) - ancestors(m))) - {m} if d in parsed}
             for m, mod in parsed.items()}
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as err:
        return err.args[1]
    return None


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def class_privates(tree: ast.AST) -> set[str]:
    """Methods, `self.x` and names its classes define, if private (NamedTuple's API aside)."""
    nodes = [n for c in ast.walk(tree) if isinstance(c, ast.ClassDef) for n in ast.walk(c)]
    names = {n.name for n in nodes if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    names |= {n.attr for n in nodes if isinstance(n, ast.Attribute) and
              isinstance(n.ctx, ast.Store) and getattr(n.value, "id", None) == "self"}
    names |= {t.id for n in nodes if isinstance(n, ast.Assign | ast.AnnAssign)
              for t in getattr(n, "targets", [getattr(n, "target", None)])
              if isinstance(t, ast.Name)}
    return {n for n in names if is_private(n)} - {"_replace", "_asdict", "_fields", "_make"}


def private_uses(parsed: dict[str, Module], readers) -> list[tuple[str, str, str]]:
    """(reader:line, name, owner) for each private name of a gim_ppl module used in another."""
    owners: dict[str, set[str]] = {}
    for module, mod in parsed.items():
        for name in mod.privates if module.startswith("gim_ppl") else ():
            owners.setdefault(name, set()).add(module)
    found = set()
    for reader in readers:
        mod = parsed[reader]
        for target, name, line, _ in mod.imports:
            owner, last = (target, name) if name else target.rpartition(".")[::2]
            own_package = name is None and owner in (reader, reader.rpartition(".")[0])
            if is_private(last) and not own_package:
                found.add((f"{reader}:{line}", last, owner))
        for node in (n for n in ast.walk(mod.tree) if isinstance(n, ast.Attribute)):
            chain, base = [node.attr], node.value
            while isinstance(base, ast.Attribute):
                chain, base = [base.attr, *chain], base.value
            module = mod.bound.get(getattr(base, "id", None))
            while chain and f"{module}.{chain[0]}" in parsed:
                module, chain = f"{module}.{chain[0]}", chain[1:]
            if module in parsed and module != reader and chain and is_private(chain[0]):
                found.add((f"{reader}:{node.lineno}", chain[0], module))
            if node.attr in owners.keys() - mod.privates and reader not in owners[node.attr]:
                found |= {(f"{reader}:{node.lineno}", node.attr, o) for o in owners[node.attr]}
    return sorted(found)


def modules_tested_by(test: str) -> set[str]:
    """tests.core.test_likelihood_moments → {gim_ppl.core.likelihood_moments, ...likelihood}."""
    *folders, stem = test.split(".")[1:]
    name = stem.removeprefix("test_")
    return {".".join(["gim_ppl", *folders, name.rsplit("_", i)[0]])
            for i in range(name.count("_") + 1)}


def foreign_privates_in_tests(parsed: dict[str, Module]) -> list[str]:
    """Private names a test uses of no module it tests (of no owner, if several)."""
    owners: dict[tuple[str, str], set[str]] = {}
    for where, name, owner in private_uses(parsed, [m for m in parsed if m.startswith("tests.")]):
        owners.setdefault((where, name), set()).add(owner)
    return [f"{where} {name}" for (where, name), modules in sorted(owners.items())
            if not modules & modules_tested_by(where.split(":")[0])]


def unmirrored_tests(tests, modules) -> list[str]:
    """Test modules named after no package module, but for those about no one module."""
    return sorted(t for t in tests if t.rpartition(".")[2].startswith("test_")
                  and t.removeprefix("tests.test_") not in CROSS_CUTTING
                  and not modules_tested_by(t) & set(modules))


def optional_at_module_level(parsed: dict[str, Module]) -> list[str]:
    return [f"{m}:{line} {name}" for m, mod in parsed.items() if not m.startswith(LAZY_MODULES)
            for name, line, toplevel in mod.external if toplevel and name in OPTIONAL]


def undeclared_imports(parsed: dict[str, Module]) -> list[str]:
    known = OPTIONAL | CORE_IMPORTS | set(sys.stdlib_module_names)
    return sorted({f"{m} {n}" for m, mod in parsed.items() for n, _, _ in mod.external
                   if n not in known})


SOURCES = sources_of(ROOT / "gim_ppl", "gim_ppl")


def test_the_package_follows_every_rule():
    tests = sources_of(ROOT / "tests", "tests")
    parsed = parse({**SOURCES, **tests})
    package = {m: parsed[m] for m in SOURCES}
    assert [m for m in package if layer_of(m) is None] == [], "modules outside LAYERS"
    assert upward_imports(parsed) == [], "imports of a higher layer"
    assert import_cycle(parsed) is None
    assert private_uses(parsed, package) == [], "private names used across modules"
    assert foreign_privates_in_tests(parsed) == [], "tests using others' private names"
    assert unmirrored_tests(tests, SOURCES) == [], "tests/ mirrors gim_ppl/ (CONTRIBUTING.md)"
    assert optional_at_module_level(package) == [], "optional dependencies at module level"
    assert undeclared_imports(package) == [], "add them to EXTRA_OF or core"


def test_each_rule_can_fail():
    planted = parse({
        "gim_ppl": "", "gim_ppl.core": "", "gim_ppl.core._cache": "",
        "gim_ppl.core.hill": "import gim_ppl.model as m\nfrom gim_ppl.core import _cache\n"
                             "def f():\n    return m._scale, m.GIM()._heads\n",
        "gim_ppl.model": ("from gim_ppl.core.hill import f, _g\nfrom gim_ppl import core\n"
                          "import matplotlib\ndef g():\n    import not_declared_xyz\n"
                          "class GIM:\n    def _heads(self):\n        return self._c\n"),
        "tests.test_data": "from gim_ppl.core.hill import _shift\n",
        "tests.core.test_hill": "from gim_ppl.core.hill import _shift\n",
    })
    assert upward_imports(planted) == ["gim_ppl.core.hill → gim_ppl.model"]
    assert set(import_cycle(planted)) == {"gim_ppl.core.hill", "gim_ppl.model"}
    assert private_uses(planted, ["gim_ppl.core.hill", "gim_ppl.model"]) == [
        ("gim_ppl.core.hill:4", "_heads", "gim_ppl.model"),
        ("gim_ppl.core.hill:4", "_scale", "gim_ppl.model"),
        ("gim_ppl.model:1", "_g", "gim_ppl.core.hill")]
    assert foreign_privates_in_tests(planted) == ["tests.test_data:1 _shift"]
    assert unmirrored_tests([*planted, "tests.core.test_hill_sums", "tests.test_fuzz"],
                            planted) == ["tests.test_data"]
    assert optional_at_module_level(planted) == ["gim_ppl.model:3 matplotlib"]
    assert undeclared_imports(planted) == ["gim_ppl.model not_declared_xyz"]
    type_only = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import gim_ppl.model\n"
    assert import_cycle({**planted, **parse({"gim_ppl.core.hill": type_only})}) is None
    # a module reading a name its half-built package re-exports is a cycle; the module is not
    half_built = {"gim_ppl": "from gim_ppl.model import GIM\n", "gim_ppl.core": "",
                  "gim_ppl.model": "def f():\n    from gim_ppl import fit\n"}
    assert set(import_cycle(parse(half_built))) == {"gim_ppl", "gim_ppl.model"}
    half_built["gim_ppl.model"] = "from gim_ppl import core\n"
    assert import_cycle(parse(half_built)) is None
    with pytest.raises(AssertionError, match="relative import"):
        parse({"gim_ppl.x": "from . import y\n"})


def test_every_module_imports():
    import gim_ppl

    names = {i.name for i in pkgutil.walk_packages(gim_ppl.__path__, prefix="gim_ppl.")}
    assert names == set(SOURCES) - {"gim_ppl"}
    for name in sorted(names):
        importlib.import_module(name)
