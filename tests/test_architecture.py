"""The package's architecture, checked on the `ast` of every module (DESIGN §6, issue 10).

What is checked, and how an import is read:

* Every `import` / `from ... import` statement counts, at any nesting level (module level,
  inside functions and classes, under `if TYPE_CHECKING:`), with relative imports resolved.
* Edge rule (cycles). `import a.b.c` and `from a.b import c` give an edge from the importer
  to the module they name, resolved to the submodule when the imported name is one
  (`from gim_ppl.evaluation import metrics` → `gim_ppl.evaluation.metrics`), and otherwise to
  the module or package whose attribute is read (`from gim_ppl.datasets import synthetic_hill`
  → the package `gim_ppl.datasets`, i.e. its `__init__`). Python also runs the `__init__` of
  every parent package of the target first, so those are edges too — except the importer's
  own ancestor packages: they are initialised before the importer's body runs, so a submodule
  that imports a sibling *module* (`from gim_ppl.datasets import synthetic` inside
  `gim_ppl.datasets.screen`) makes no edge back to its package's `__init__`, and an `__init__`
  importing its submodules is not a cycle with them. A submodule that reads a *re-exported
  name* from its own package (`from gim_ppl import fit` inside a module that `gim_ppl`
  imports) does make that edge: it reads a half-initialised package, and it is reported.
  Imports under `if TYPE_CHECKING:` never run and make no cycle edge.
* Layers (a module may import its own layer and the layers below): extras, lazy, errors,
  data, core = 0; priors, model, joint, readout, generative, settings = 1; inference = 2;
  datasets, evaluation = 3 (evaluation may import datasets, not the reverse); design = 3.5
  (queries on a fitted model: above model, inference and datasets); summary, plots = 4; cli
  = 5. Package `__init__` files are exempt as importers; a name imported from a package is
  followed through the package's re-exports to the module that defines it. Importing the
  top-level `gim_ppl` from inside the package counts as importing the top layer: inside the
  package, import from the real module.
* Private names: no module imports or reads another module's `_private` name
  (`from gim_ppl.x import _y`, or `m._y` where `m` is bound to a gim_ppl module by an import).
  Dunder names are fine; a private submodule may be imported by its own package's modules.
  Tests may use private helpers only of the module they test (`tests/test_<name>.py` of a
  module or package named `<name>`).
"""

from __future__ import annotations

import ast
import importlib
import json
import pkgutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "gim_ppl"
PACKAGE_DIR = ROOT / PACKAGE
TESTS_DIR = ROOT / "tests"

# (module-name prefix, layer); the first matching prefix wins, so list longer ones first.
LAYERS = [
    ("gim_ppl.extras", 0),
    ("gim_ppl.lazy", 0),
    ("gim_ppl.errors", 0),
    ("gim_ppl.checks", 0),
    ("gim_ppl.data", 0),
    ("gim_ppl.core", 0),
    ("gim_ppl.knowledge", 0),
    ("gim_ppl.priors", 1),
    ("gim_ppl.model", 1),
    ("gim_ppl.joint", 1),
    ("gim_ppl.readout", 1),
    ("gim_ppl.generative", 1),
    ("gim_ppl.settings", 1),
    ("gim_ppl.inference", 2),
    ("gim_ppl.datasets", 3.0),
    ("gim_ppl.evaluation", 3.5),  # layer 3, above datasets: evaluation may import datasets
    ("gim_ppl.summary", 4),
    ("gim_ppl.plots", 4),
    ("gim_ppl.cli", 5),
    ("gim_ppl.design", 3.5),  # queries and experiments on a fitted model
    ("gim_ppl", 5),  # the top-level package itself: it re-exports from every layer
]

# Optional dependencies: `import gim_ppl` must load none of them (DESIGN §6).
OPTIONAL = {"matplotlib", "ott", "sklearn", "networkx", "anndata", "rdkit", "pandas", "scanpy",
            "h5py"}
# Third-party modules the core install provides (scipy comes with jax and is a declared
# dependency of its own); everything else a module imports must be an extra of EXTRA_OF.
CORE_IMPORTS = {"jax", "jaxlib", "numpyro", "optax", "numpy", "arviz", "tqdm", "scipy"}
# Modules that are reached only lazily and may import optional dependencies at module level.
LAZY_MODULES = ("gim_ppl.evaluation", "gim_ppl.plots", "gim_ppl.cli")


# --------------------------------------------------------------------------- reading imports


@dataclass(frozen=True)
class Import:
    importer: str
    target: str  # the module the statement names (resolved to a submodule when it is one)
    name: str | None  # the name read from `target` (None for `import target`)
    line: int
    toplevel: bool  # at module level (not inside a function or class)
    type_checking: bool  # under `if TYPE_CHECKING:`


def module_sources(package_dir: Path = PACKAGE_DIR, package: str = PACKAGE) -> dict[str, str]:
    """{module name: source} of every module of the package (`__init__` → package name)."""
    sources = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        sources[".".join([package, *parts])] = path.read_text()
    return sources


def packages_of(sources: dict[str, str]) -> set[str]:
    """Module names that are packages: those with a submodule."""
    return {name.rpartition(".")[0] for name in sources if "." in name}


def ancestors(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def read_imports(module: str, source: str, modules: set[str], packages: set[str],
                 package: str = PACKAGE) -> tuple[list[Import], dict[str, str], ast.AST]:
    """The package-internal imports of one module, and its aliases {local name: module}."""
    tree = ast.parse(source)
    imports: list[Import] = []
    aliases: dict[str, str] = {}
    is_package = module in packages

    def visit(node: ast.AST, toplevel: bool, type_checking: bool) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] != package:
                    continue
                imports.append(Import(module, alias.name, None, node.lineno, toplevel,
                                      type_checking))
                if alias.asname:
                    aliases[alias.asname] = alias.name
                else:
                    aliases[alias.name.split(".")[0]] = alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module if is_package else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                source_module = f"{base}.{node.module}" if node.module else base
            else:
                source_module = node.module or ""
            if source_module.split(".")[0] != package:
                return
            for alias in node.names:
                submodule = f"{source_module}.{alias.name}"
                if submodule in modules:
                    imports.append(Import(module, submodule, None, node.lineno, toplevel,
                                          type_checking))
                    aliases[alias.asname or alias.name] = submodule
                else:
                    imports.append(Import(module, source_module, alias.name, node.lineno,
                                          toplevel, type_checking))
        for child in ast.iter_child_nodes(node):
            child_toplevel = toplevel and not isinstance(
                node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda)
            child_tc = type_checking or (
                isinstance(node, ast.If) and _is_type_checking(node.test)
                and child in node.body)
            visit(child, child_toplevel, child_tc)

    visit(tree, True, False)
    return imports, aliases, tree


@dataclass
class Package:
    """The parsed package: modules, their imports and module aliases."""

    modules: set[str]
    packages: set[str]
    imports: dict[str, list[Import]]
    aliases: dict[str, dict[str, str]]
    trees: dict[str, ast.AST]

    @classmethod
    def parse(cls, sources: dict[str, str], package: str = PACKAGE) -> Package:
        modules, packages = set(sources), packages_of(sources)
        imports, aliases, trees = {}, {}, {}
        for name, source in sources.items():
            imports[name], aliases[name], trees[name] = read_imports(
                name, source, modules, packages, package)
        return cls(modules, packages, imports, aliases, trees)

    def edges(self) -> dict[str, set[str]]:
        """The import graph by the edge rule of the module docstring."""
        graph: dict[str, set[str]] = {m: set() for m in self.modules}
        for importer, imports in self.imports.items():
            own = set(ancestors(importer))
            for imp in imports:
                if imp.type_checking:
                    continue
                targets = {imp.target} | (set(ancestors(imp.target)) - own)
                graph[importer] |= {t for t in targets if t in self.modules and t != importer}
        return graph

    def defining_module(self, module: str, name: str | None, seen=()) -> str:
        """Follow a name imported from a package `__init__` to the module that defines it."""
        if name is None or module not in self.packages or (module, name) in seen:
            return module
        for imp in self.imports[module]:
            if imp.type_checking:
                continue
            if imp.name == name:
                return self.defining_module(imp.target, name, (*seen, (module, name)))
            if imp.name is None and imp.target.rpartition(".")[2] == name:
                return imp.target
        return module


# --------------------------------------------------------------------------- the checks


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the directed graph as [a, b, ..., a], or None (iterative DFS)."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(graph, WHITE)
    for start in sorted(graph):
        if colour[start] != WHITE:
            continue
        stack = [(start, iter(sorted(graph[start])))]
        path = [start]
        colour[start] = GREY
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                colour[node] = BLACK
                stack.pop()
                path.pop()
            elif colour.get(child, WHITE) == GREY:
                return [*path[path.index(child):], child]
            elif colour.get(child, WHITE) == WHITE:
                colour[child] = GREY
                stack.append((child, iter(sorted(graph.get(child, ())))))
                path.append(child)
    return None


NAMEDTUPLE_API = {"_replace", "_asdict", "_fields", "_field_defaults", "_make"}


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_imports(pkg: Package, importers=None) -> list[str]:
    """Places where a module imports another module's `_private` name, or reads one through
    a name bound to a gim_ppl module (`m._y`, `gim_ppl.x._y`)."""
    found = []
    for importer in importers or sorted(pkg.modules):
        for imp in pkg.imports[importer]:
            last = imp.name if imp.name is not None else imp.target.rpartition(".")[2]
            if not is_private(last):
                continue
            if imp.name is None and imp.target.rpartition(".")[0] in (
                    importer, importer.rpartition(".")[0]):
                continue  # a private submodule of the importer's own package
            found.append(f"{importer}:{imp.line} imports {imp.target}"
                         + (f".{imp.name}" if imp.name else ""))
        aliases = pkg.aliases[importer]
        for node in ast.walk(pkg.trees[importer]):
            chain = _attribute_chain(node)
            if chain is None or chain[0] not in aliases:
                continue
            module, rest = aliases[chain[0]], chain[1:]
            while rest and f"{module}.{rest[0]}" in pkg.modules:
                module, rest = f"{module}.{rest[0]}", rest[1:]
            if rest and module != importer and is_private(rest[0]) and module in pkg.modules:
                found.append(f"{importer}:{node.lineno} reads {module}.{rest[0]}")
    return sorted(set(found))


def class_private_names(tree: ast.AST) -> set[str]:
    """Private methods and attributes that the classes of a module define."""
    names = set()
    for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
        for node in ast.walk(cls):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                names.add(node.name)
            elif (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
                  and isinstance(node.value, ast.Name) and node.value.id == "self"):
                names.add(node.attr)
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return {n for n in names if is_private(n)} - NAMEDTUPLE_API


def private_attribute_reads(pkg: Package, readers=None) -> list[str]:
    """`obj._name` where `_name` is a private method or attribute of a class of another module
    (`model._check_sites(...)` outside model.py) and the reading module defines no `_name`
    of its own."""
    owners: dict[str, set[str]] = {}
    for module in pkg.modules:
        for name in class_private_names(pkg.trees[module]):
            owners.setdefault(name, set()).add(module)
    found = []
    for reader in readers or sorted(pkg.modules):
        own = class_private_names(pkg.trees[reader])
        for node in ast.walk(pkg.trees[reader]):
            if (isinstance(node, ast.Attribute) and node.attr in owners and node.attr not in own
                    and reader not in owners[node.attr]):
                found.append(f"{reader}:{node.lineno} reads ._{node.attr.lstrip('_')} "
                             f"of {', '.join(sorted(owners[node.attr]))}")
    return sorted(set(found))


def _attribute_chain(node: ast.AST) -> list[str] | None:
    """`a.b.c` → ["a", "b", "c"] for an Attribute chain that starts at a Name."""
    if not isinstance(node, ast.Attribute):
        return None
    names = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return [node.id, *reversed(names)]


def layer_of(module: str) -> float | None:
    """The layer of a module, or None for one that LAYERS does not place."""
    for prefix, layer in LAYERS:
        if module == prefix or (prefix != PACKAGE and module.startswith(prefix + ".")):
            return layer
    return None


def upward_imports(pkg: Package) -> list[tuple[str, str]]:
    """(module, imported) pairs where a module imports a higher layer."""
    found = set()
    for importer, imports in pkg.imports.items():
        if importer in pkg.packages:
            continue  # package __init__ files are exempt
        for imp in imports:
            target = pkg.defining_module(imp.target, imp.name)
            if None in (layer_of(target), layer_of(importer)):
                continue  # unplaced modules fail test_every_module_has_a_layer
            if layer_of(target) > layer_of(importer):
                found.add((importer, target))
    return sorted(found)


# --------------------------------------------------------------------------- the detectors,
# checked on small synthetic packages so that each check is known to be able to fail


SYNTHETIC = {
    "pkg": "from pkg import a\n",
    "pkg.a": "import pkg.b as bee\n\ndef f():\n    return bee._hidden\n",
    "pkg.b": "def g():\n    from pkg.c import _helper\n    return _helper\n",
    "pkg.c": "from pkg import a\n",  # a → b → c → a (the b → c import is in a function)
    "pkg.sub": "from pkg.sub import leaf\n",
    "pkg.sub.leaf": "from pkg.sub import other\nfrom . import _private_mod\n",
    "pkg.sub.other": "",
    "pkg.sub._private_mod": "",
}


def test_cycle_detector_on_synthetic_graphs():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None  # a diamond is fine
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"x": {"x"}}) == ["x", "x"]
    assert find_cycle({"a": {"b"}, "b": {"d"}, "d": {"b"}}) == ["b", "d", "b"]


def test_import_reader_on_a_synthetic_package():
    pkg = Package.parse(SYNTHETIC, package="pkg")
    graph = pkg.edges()
    # function-level imports count; a sibling module through its package makes no edge back
    assert graph["pkg.b"] == {"pkg.c"}
    assert graph["pkg.sub.leaf"] == {"pkg.sub.other", "pkg.sub._private_mod"}
    assert "pkg.sub" not in graph["pkg.sub.leaf"]
    cycle = find_cycle(graph)
    assert cycle is not None and {"pkg.a", "pkg.b", "pkg.c"} <= set(cycle)
    # private names: imported in a function, and read through a module alias; a package's
    # private submodule imported by its sibling is fine
    assert private_imports(pkg) == ["pkg.a:4 reads pkg.b._hidden",
                                    "pkg.b:2 imports pkg.c._helper"]


def test_private_attribute_rule_on_a_synthetic_package():
    sources = {
        "pkg": "",
        "pkg.model": ("class Model:\n    def _heads(self):\n        return self._cache\n"
                      "    def __init__(self):\n        self._cache = 1\n"),
        "pkg.user": "def f(model):\n    return model._heads(), model._cache, model._own\n",
        "pkg.other": ("class Other:\n    def _heads(self):\n        return 0\n"
                      "def g(x):\n    return x._heads(), x._replace(a=1)\n"),
    }
    pkg = Package.parse(sources, package="pkg")
    assert private_attribute_reads(pkg) == [
        "pkg.user:2 reads ._cache of pkg.model",
        "pkg.user:2 reads ._heads of pkg.model, pkg.other",
    ]


def test_reexport_from_a_half_built_package_is_a_cycle():
    # q.m reads a name that q's __init__ binds: q is half-initialised while q.m runs
    reads_reexport = {"q": "from q.m import f\nfrom q.n import g\n", "q.m": "from q import g\n",
                      "q.n": "def g(): pass\n"}
    assert find_cycle(Package.parse(reads_reexport, package="q").edges()) == ["q", "q.m", "q"]
    # the same through the sibling module is no cycle
    reads_sibling = dict(reads_reexport, **{"q.m": "from q import n\nfrom q.n import g\n"})
    assert find_cycle(Package.parse(reads_sibling, package="q").edges()) is None
    # nor is an import that never runs
    type_only = dict(reads_reexport, **{
        "q.m": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from q import g\n"})
    assert find_cycle(Package.parse(type_only, package="q").edges()) is None


def test_layer_rule_on_a_synthetic_package():
    sources = {
        "gim_ppl": "from gim_ppl.model import GIM\n",
        "gim_ppl.core": "",
        "gim_ppl.core.hill": "def f():\n    from gim_ppl import GIM\n",  # core → model
        "gim_ppl.model": "from gim_ppl.core import hill\n",
        "gim_ppl.datasets": "from gim_ppl.datasets.synthetic import make\n",
        "gim_ppl.datasets.synthetic": "from gim_ppl.evaluation import metrics\n",
        "gim_ppl.evaluation": "",
        "gim_ppl.evaluation.metrics": "from gim_ppl.datasets import make\n",
    }
    pkg = Package.parse(sources)
    assert upward_imports(pkg) == [("gim_ppl.core.hill", "gim_ppl.model"),
                                   ("gim_ppl.datasets.synthetic", "gim_ppl.evaluation.metrics")]


# --------------------------------------------------------------------------- the package


@pytest.fixture(scope="module")
def package() -> Package:
    return Package.parse(module_sources())


def test_every_module_has_a_layer(package):
    assert [m for m in sorted(package.modules) if layer_of(m) is None] == []


def test_no_import_cycle(package):
    cycle = find_cycle(package.edges())
    assert cycle is None, "import cycle: " + " → ".join(cycle)


def test_no_cross_module_private_imports(package):
    found = private_imports(package)
    assert found == [], "private names used across modules:\n" + "\n".join(found)


def test_no_private_attribute_of_another_modules_class(package):
    found = private_attribute_reads(package)
    assert found == [], "private attributes read across modules:\n" + "\n".join(found)


def test_layers_point_down(package):
    found = upward_imports(package)
    assert found == [], "imports of a higher layer (module → imported):\n" + "\n".join(
        f"{a} (layer {layer_of(a):g}) → {b} (layer {layer_of(b):g})" for a, b in found)


def test_optional_dependencies_only_in_lazy_modules():
    """Outside evaluation/, plots and cli, an optional dependency is imported inside a
    function (through `gim_ppl.extras.require` or a local import), never at module level."""
    found = []
    for module, source in module_sources().items():
        if module.startswith(LAZY_MODULES):
            continue
        for node in ast.iter_child_nodes(ast.parse(source)):  # module level only
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and
                     not node.level else [])
            found += [f"{module}:{node.lineno} {n}" for n in names
                      if n.split(".")[0] in OPTIONAL]
    assert found == [], "optional dependencies imported at module level:\n" + "\n".join(found)


def test_third_party_imports_are_declared():
    """Every third-party module the package imports is a core dependency or has an extra in
    `gim_ppl.extras.EXTRA_OF` (so that its absence names the extra to install)."""
    from gim_ppl.extras import EXTRA_OF

    undeclared = set()
    for module, source in module_sources().items():
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                tops = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                tops = [(node.module or "").split(".")[0]]
            else:
                continue
            undeclared |= {(module, t) for t in tops
                           if t not in sys.stdlib_module_names and t != PACKAGE
                           and t not in CORE_IMPORTS and t not in EXTRA_OF}
    assert sorted(undeclared) == []


def test_tests_use_private_helpers_of_their_own_module_only():
    """tests/test_<name>.py may use the private names of a module or package named <name>
    (test_inference: gim_ppl.inference.*, test_plots: gim_ppl.plots) and of no other."""
    sources = module_sources()
    for path in sorted(TESTS_DIR.glob("*.py")):
        sources[f"tests.{path.stem}"] = path.read_text()
    pkg = Package.parse(sources)
    tests = sorted(m for m in pkg.modules if m.startswith("tests."))
    found = []
    for line in private_imports(pkg, tests) + private_attribute_reads(pkg, tests):
        reader, _, rest = line.partition(":")
        stem = reader.removeprefix("tests.test_") if reader.startswith("tests.test_") else None
        owners = [w.strip(", ") for w in rest.split() if w.startswith(PACKAGE + ".")]
        if stem is None or not any(stem in o.split(".")[1:] for o in owners):
            found.append(line)
    assert found == [], "tests using another module's private names:\n" + "\n".join(found)


def test_import_gim_ppl_loads_no_optional_dependency():
    code = ("import sys, json, gim_ppl; "
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert sorted(loaded & OPTIONAL) == []
    assert "arviz" not in loaded  # a core dependency, but imported only inside to_arviz


def _import_without(blocked: set[str], modules: list[str]) -> subprocess.CompletedProcess:
    """Import `modules` in a fresh interpreter in which the `blocked` packages are missing."""
    code = (f"import sys\nfor name in {sorted(blocked)!r}:\n    sys.modules[name] = None\n"
            + "".join(f"import {m}\n" for m in modules))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT)


def test_core_and_the_demo_need_only_their_extras():
    """The core install fits a GIM; README command 1 (`[bench]`, then `gim-ppl demo`) needs
    neither `[plots]` nor `[screen]`."""
    core = _import_without(OPTIONAL, ["gim_ppl", "gim_ppl.model", "gim_ppl.inference",
                                      "gim_ppl.datasets"])
    assert core.returncode == 0, core.stderr
    demo = _import_without(OPTIONAL - {"ott", "sklearn"}, ["gim_ppl.cli"])
    assert demo.returncode == 0, demo.stderr
    # and the blocking works: a blocked extra is an ImportError that names it
    code = ("import sys\nsys.modules['ott'] = None\nimport gim_ppl\n"
            "from gim_ppl.evaluation import metrics\n"
            "data = gim_ppl.datasets.synthetic_hill(0, n_vars=3, n_train_perturbations=2, "
            "n_test_perturbations=1, n_cells=5, n_test_cells=5, n_observational=5).full_ood\n"
            "metrics.wasserstein(data, data)\n")
    blocked = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             cwd=ROOT)
    assert blocked.returncode != 0 and "gim_ppl[bench]" in blocked.stderr, blocked.stderr
    # ...while mean_error, which the drug-screen CLI scores held-out doses with, needs none
    assert _import_without({"ott", "sklearn"}, ["gim_ppl.evaluation.metrics"]).returncode == 0


def test_every_module_imports():
    import gim_ppl

    failed = {}
    for info in pkgutil.walk_packages(gim_ppl.__path__, prefix="gim_ppl."):
        try:
            importlib.import_module(info.name)
        except Exception as err:  # pragma: no cover - reported below
            failed[info.name] = f"{type(err).__name__}: {err}"
    assert failed == {}
    assert {info.name for info in pkgutil.walk_packages(gim_ppl.__path__, "gim_ppl.")} == (
        set(module_sources()) - {"gim_ppl"})


# --------------------------------------------------------------------------- extras


def test_require_names_the_package_when_there_is_no_extra():
    from gim_ppl.extras import require

    with pytest.raises(ImportError, match="pip install definitely_not_installed_xyz") as err:
        require("definitely_not_installed_xyz.sub")
    assert "definitely_not_installed_xyz.sub is needed" in str(err.value)
    assert isinstance(err.value.__cause__, ImportError)


def test_require_names_the_extra(monkeypatch):
    from gim_ppl import extras

    monkeypatch.setitem(extras.EXTRA_OF, "fake_optional_xyz", "bench")
    with pytest.raises(ImportError, match=r'pip install "gim_ppl\[bench\]"'):
        extras.require("fake_optional_xyz.tools")
    # a real optional dependency made unimportable
    for name in [m for m in sys.modules if m == "sklearn" or m.startswith("sklearn.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "sklearn", None)
    with pytest.raises(ImportError, match=r'sklearn.metrics is needed .*"gim_ppl\[bench\]"'):
        extras.require("sklearn.metrics")
    assert extras.require("numpy") is importlib.import_module("numpy")


def test_require_installed_imports_nothing(tmp_path, monkeypatch):
    """`require_installed` finds a module without running it, and raises `require`'s error
    (naming the extra) for one that is missing or blocked."""
    from gim_ppl.extras import require_installed

    (tmp_path / "loud_module_xyz.py").write_text("raise RuntimeError('imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    require_installed("loud_module_xyz")
    assert "loud_module_xyz" not in sys.modules
    with pytest.raises(ImportError, match="pip install definitely_not_installed_xyz"):
        require_installed("definitely_not_installed_xyz.sub")
    monkeypatch.setitem(sys.modules, "sklearn", None)  # as the tests block an extra
    with pytest.raises(ImportError, match=r'sklearn is needed .*"gim_ppl\[bench\]"'):
        require_installed("sklearn")


def test_extras_match_pyproject():
    """Each extra named in EXTRA_OF exists in pyproject.toml and installs the module, and the
    core dependencies hold none of the optional packages."""
    tomllib = pytest.importorskip("tomllib")
    from importlib.metadata import packages_distributions, requires

    from gim_ppl.extras import EXTRA_OF

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]

    def dist_name(requirement: str) -> str:
        for stop in "<>=!~;[ ":
            requirement = requirement.split(stop)[0]
        return requirement.strip().lower().replace("_", "-")

    core = {dist_name(r) for r in project["dependencies"]}
    providers = packages_distributions()
    for module, extra in EXTRA_OF.items():
        assert extra in extras, f"EXTRA_OF[{module!r}] names a missing extra {extra!r}"
        listed = {dist_name(r) for r in extras[extra]}
        # the extra's packages and what they require (h5py comes with anndata)
        installed = set(listed)
        for dist in listed:
            try:
                installed |= {dist_name(r) for r in requires(dist) or () if "extra ==" not in r}
            except Exception:  # a listed package that is not installed here
                continue
        dists = {d.lower().replace("_", "-") for d in providers.get(module, [module])}
        assert dists & installed, f"extra [{extra}] does not install {module} ({dists})"
        assert not dists & core, f"{module} is optional but a core dependency"
    assert {"bench", "plots", "screen", "all", "test", "dev"} <= set(extras)


def test_every_subpackage_is_reachable_after_import_gim_ppl():
    """`gim_ppl.design.rank_experiments` once raised AttributeError after `import gim_ppl`
    (a fresh interpreter: in this process another test may already have imported it); the
    names are lazy: `import gim_ppl` and `gim_ppl.ArgumentError` load no jax."""
    code = ("import sys, gim_ppl\n"
            "assert 'jax' not in sys.modules and {'design', 'ArgumentError'} <= set(dir(gim_ppl))\n"
            "assert issubclass(gim_ppl.ArgumentError, ValueError) and 'jax' not in sys.modules\n"
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
    into that module (`gim_ppl.datasets.sachs`, a function and a module; `gim_ppl.fit`)."""
    code = """
import importlib, pkgutil, sys, types
packages = {"gim_ppl": {"baselines", "datasets", "design", "metrics", "plots", "summary"},
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
assert gim_ppl.fit is sys.modules["gim_ppl.inference.fit"].fit
assert gim_ppl.datasets.sachs is sys.modules["gim_ppl.datasets.sachs"].sachs
assert gim_ppl.GIM is sys.modules["gim_ppl.model"].GIM
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr
