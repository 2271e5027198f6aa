"""The package's architecture (DESIGN §6), read from the `ast` of every module of gim_ppl/.

The rules are the tables below; each is checked by one function, which `test_each_rule_can_fail`
also runs on a small package that breaks it.

* LAYERS: a module imports only its own layer and those before it. Every import counts, at
  any depth (inside functions too); a package `__init__` is exempt as an importer, and the
  top-level `gim_ppl` is the top layer (inside the package, import from the real module).
* No import cycle. `from a.b import c` depends on `a.b.c` where that is a module, else on
  `a.b`, and on the `__init__` of every package above it but the importer's own (those run
  before the importer does); imports under `if TYPE_CHECKING:` never run and do not count.
  Imports are absolute, so that every one of them is read here.
* No `_private` name of one module used in another: imported, read through a module
  (`m._y`), or read off an object whose class another module defines (`model._cache`); a
  private submodule may be imported by its own package. A test may use the private names of
  the module it tests only (tests/core/test_hill.py: those of gim_ppl/core/hill.py).
* Packaging: outside LAZY_MODULES an optional dependency is imported inside functions only,
  and `import gim_ppl` loads none; every third-party import is a core dependency or has an
  extra (`gim_ppl.extras.EXTRA_OF`); the core and `gim-ppl demo` run without the other extras.
"""

from __future__ import annotations

import ast
import graphlib
import importlib
import pkgutil
import subprocess
import sys

import pytest

from tests import ROOT

LAYERS = [  # lowest first; `gim_ppl` itself is above them all
    {"extras", "lazy", "errors", "checks", "data", "core", "knowledge"},
    {"priors", "model", "joint", "readout"},
    {"inference"},
    {"datasets"},
    {"evaluation", "design"},  # evaluation may import datasets, not the reverse
    {"summary", "plots"},
    {"cli"},
]
OPTIONAL = {"matplotlib", "ott", "sklearn", "networkx", "anndata", "rdkit", "pandas", "scanpy",
            "h5py"}
CORE_IMPORTS = {"jax", "jaxlib", "numpyro", "optax", "numpy", "arviz", "tqdm", "scipy"}
LAZY_MODULES = ("gim_ppl.evaluation", "gim_ppl.plots", "gim_ppl.cli")  # reached lazily only


def sources_of(folder, package: str) -> dict[str, str]:
    """{dotted module name: source} of the .py files under `folder` (`__init__` → package)."""
    found = {}
    for path in sorted(folder.rglob("*.py")):
        parts = path.relative_to(folder).with_suffix("").parts
        found[".".join((package, *parts)).removesuffix(".__init__")] = path.read_text()
    return found


def parse(sources: dict[str, str]) -> dict:
    """{module: (tree, imports, class_privates)}, an import being (target, name or None, line,
    runs); `target` is `a.b.c` for `from a.b import c` where that is a module, else `a.b`."""
    parsed = {}
    for module, source in sources.items():
        tree, imports = ast.parse(source), []
        type_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                     and ast.unparse(node.test).endswith("TYPE_CHECKING")
                     for stmt in node.body for n in ast.walk(stmt)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found = [(a.name, None) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{module}:{node.lineno}: a relative import"
                found = [(f"{node.module}.{a.name}", None) if f"{node.module}.{a.name}" in sources
                         else (node.module, a.name) for a in node.names]
            else:
                continue
            imports += [(t, n, node.lineno, id(node) not in type_only) for t, n in found
                        if t.split(".")[0] == "gim_ppl"]
        parsed[module] = (tree, imports, class_privates(tree))
    return parsed


def ancestors(module: str) -> set[str]:
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def layer_of(module: str) -> int | None:
    """The index of a package module's layer (`gim_ppl` itself: above them all), or None."""
    top, _, rest = module.partition(".")
    if top != "gim_ppl" or not rest:
        return len(LAYERS) if module == "gim_ppl" else None
    return next((i for i, names in enumerate(LAYERS) if rest.split(".")[0] in names), None)


def upward_imports(parsed: dict) -> list[str]:
    packages = {a for m in parsed for a in ancestors(m)}
    return sorted({f"{m} → {t}" for m, (_, imports, _) in parsed.items() if m not in packages
                   for t, _, _, _ in imports if None not in (layer_of(t), layer_of(m))
                   and layer_of(t) > layer_of(m)})


def import_cycle(parsed: dict) -> list[str] | None:
    graph = {m: {d for t, _, _, runs in imports if runs
                 for d in ({t} | (ancestors(t) - ancestors(m))) - {m} if d in parsed}
             for m, (_, imports, _) in parsed.items()}
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as err:
        return err.args[1]
    return None


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def class_privates(tree: ast.AST) -> set[str]:
    """Private methods and attributes the classes of a module define (NamedTuple's API aside)."""
    names = set()
    for node in (n for c in ast.walk(tree) if isinstance(c, ast.ClassDef) for n in ast.walk(c)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names |= {node.attr} if getattr(node.value, "id", None) == "self" else set()
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return {n for n in names if is_private(n)} - {"_replace", "_asdict", "_fields", "_make"}


def private_uses(parsed: dict, readers=None) -> list[tuple[str, str, str]]:
    """(reader:line, name, owner) for each private name of a package module `owner` used in
    another module."""
    owners: dict[str, set[str]] = {}
    for module, (_, _, privates) in parsed.items():
        for name in privates if module.startswith("gim_ppl") else ():
            owners.setdefault(name, set()).add(module)
    found = set()
    for reader in readers or parsed:
        tree, imports, own = parsed[reader]
        for target, name, line, _ in imports:
            owner, last = (target, name) if name else target.rpartition(".")[::2]
            own_package = name is None and owner in (reader, reader.rpartition(".")[0])
            if is_private(last) and not own_package:
                found.add((f"{reader}:{line}", last, owner))
        bound = {}  # local name → the module an import binds it to
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                bound |= {a.asname or a.name.split(".")[0]: a.name if a.asname
                          else a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                bound |= {a.asname or a.name: f"{node.module}.{a.name}" for a in node.names}
        for node in (n for n in ast.walk(tree) if isinstance(n, ast.Attribute)):
            chain, base = [node.attr], node.value
            while isinstance(base, ast.Attribute):
                chain, base = [base.attr, *chain], base.value
            module = bound.get(getattr(base, "id", None))
            while chain and f"{module}.{chain[0]}" in parsed:
                module, chain = f"{module}.{chain[0]}", chain[1:]
            if module in parsed and module != reader and chain and is_private(chain[0]):
                found.add((f"{reader}:{node.lineno}", chain[0], module))
            if node.attr in owners and node.attr not in own and reader not in owners[node.attr]:
                found |= {(f"{reader}:{node.lineno}", node.attr, o) for o in owners[node.attr]}
    return sorted(found)


def is_tested_by(owner: str, test: str) -> bool:
    """Whether `owner` is the module that the test module `test` tests: tests.core.test_hill
    tests gim_ppl.core.hill, tests.core.test_likelihood_moments gim_ppl.core.likelihood."""
    parts = test.split(".")[1:]
    tested = ".".join(["gim_ppl", *parts[:-1], parts[-1].removeprefix("test_")])
    return tested == owner or tested.startswith(owner + "_") or owner.startswith(tested + ".")


def foreign_privates_in_tests(parsed: dict) -> list[str]:
    """Private names a test uses of modules it does not test (of any owner, for an attribute
    that classes of several modules define)."""
    owners: dict[tuple[str, str], set[str]] = {}
    for where, name, owner in private_uses(parsed, [m for m in parsed if m.startswith("tests.")]):
        owners.setdefault((where, name), set()).add(owner)
    return [f"{where} {name}" for (where, name), found in sorted(owners.items())
            if not any(is_tested_by(owner, where.split(":")[0]) for owner in found)]


def optional_at_module_level(sources: dict[str, str]) -> list[str]:
    found = []
    for module, source in sources.items():
        for node in ast.parse(source).body if not module.startswith(LAZY_MODULES) else ():
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{module}:{node.lineno} {n}" for n in names if n.split(".")[0] in OPTIONAL]
    return found


def undeclared_imports(sources: dict[str, str], declared: set[str]) -> list[str]:
    found = set()
    for module, source in sources.items():
        for node in ast.walk(ast.parse(source)):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) else [])
            found |= {f"{module} {n}" for n in names if n.split(".")[0] not in declared
                      | CORE_IMPORTS | set(sys.stdlib_module_names) | {"gim_ppl"}}
    return sorted(found)


@pytest.fixture(scope="module")
def sources() -> dict[str, str]:
    return sources_of(ROOT / "gim_ppl", "gim_ppl")


def test_the_package_follows_every_rule(sources):
    from gim_ppl.extras import EXTRA_OF

    parsed = parse({**sources, **sources_of(ROOT / "tests", "tests")})
    assert [m for m in sources if layer_of(m) is None] == [], "modules outside LAYERS"
    assert upward_imports(parsed) == [], "imports of a higher layer"
    assert import_cycle(parsed) is None
    assert private_uses(parsed, list(sources)) == [], "private names used across modules"
    assert foreign_privates_in_tests(parsed) == [], "tests using others' private names"
    assert optional_at_module_level(sources) == [], "optional dependencies at module level"
    assert undeclared_imports(sources, set(EXTRA_OF)) == [], "add them to EXTRA_OF or core"


def test_each_rule_can_fail():
    planted = {
        "gim_ppl": "", "gim_ppl.core": "", "gim_ppl.core._cache": "",
        "gim_ppl.core.hill": "import gim_ppl.model as m\nfrom gim_ppl.core import _cache\n"
                             "def f():\n    return m._scale, m.GIM()._heads\n",
        "gim_ppl.model": ("from gim_ppl.core.hill import f, _g\nfrom gim_ppl import core\n"
                          "import matplotlib\nimport not_declared_xyz\n"
                          "class GIM:\n    def _heads(self):\n        return self._c\n"),
        "tests.test_data": "from gim_ppl.core.hill import _shift\n",
        "tests.core.test_hill": "from gim_ppl.core.hill import _shift\n",
    }
    parsed = parse(planted)
    assert upward_imports(parsed) == ["gim_ppl.core.hill → gim_ppl.model"]
    assert set(import_cycle(parsed)) == {"gim_ppl.core.hill", "gim_ppl.model"}
    assert private_uses(parsed, ["gim_ppl.core.hill", "gim_ppl.model"]) == [
        ("gim_ppl.core.hill:4", "_heads", "gim_ppl.model"),
        ("gim_ppl.core.hill:4", "_scale", "gim_ppl.model"),
        ("gim_ppl.model:1", "_g", "gim_ppl.core.hill")]
    assert foreign_privates_in_tests(parsed) == ["tests.test_data:1 _shift"]
    assert optional_at_module_level(planted) == ["gim_ppl.model:3 matplotlib"]
    assert undeclared_imports(planted, OPTIONAL) == ["gim_ppl.model not_declared_xyz"]
    type_only = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import gim_ppl.model\n"
    assert import_cycle(parse(dict(planted, **{"gim_ppl.core.hill": type_only}))) is None
    # a module reading a name its half-built package re-exports is a cycle; the module is not
    half_built = {"gim_ppl": "from gim_ppl.model import GIM\n", "gim_ppl.core": "",
                  "gim_ppl.model": "def f():\n    from gim_ppl import fit\n"}
    assert set(import_cycle(parse(half_built))) == {"gim_ppl", "gim_ppl.model"}
    half_built["gim_ppl.model"] = "from gim_ppl import core\n"
    assert import_cycle(parse(half_built)) is None
    with pytest.raises(AssertionError, match="relative import"):
        parse({"gim_ppl.x": "from . import y\n"})


def _python(code: str, blocked=frozenset()) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter in which the `blocked` packages are missing."""
    block = "".join(f"sys.modules[{name!r}] = None\n" for name in sorted(blocked))
    return subprocess.run([sys.executable, "-c", f"import sys\n{block}{code}"],
                          capture_output=True, text=True, cwd=ROOT)


def test_import_gim_ppl_loads_no_optional_dependency():
    done = _python("import gim_ppl\nprint(sorted({m.split('.')[0] for m in sys.modules}))")
    loaded = set(ast.literal_eval(done.stdout.strip().splitlines()[-1]))
    assert loaded & (OPTIONAL | {"arviz"}) == set()  # arviz: imported only inside to_arviz


def test_core_and_the_demo_need_only_their_extras():
    core = _python("import gim_ppl, gim_ppl.model, gim_ppl.inference, gim_ppl.datasets", OPTIONAL)
    assert core.returncode == 0, core.stderr
    demo = _python("import gim_ppl.cli", OPTIONAL - {"ott", "sklearn"})
    assert demo.returncode == 0, demo.stderr
    # the blocking works: a blocked extra is an ImportError that names it...
    blocked = _python("import gim_ppl\nfrom gim_ppl.evaluation import metrics\n"
                      "data = gim_ppl.datasets.synthetic_hill(0, n_vars=3, n_train_perturbations=2,"
                      " n_test_perturbations=1, n_cells=5, n_test_cells=5, n_observational=5)"
                      ".full_ood\nmetrics.wasserstein(data, data)\n", {"ott"})
    assert blocked.returncode != 0 and "gim_ppl[bench]" in blocked.stderr, blocked.stderr
    # ...while mean_error, which the drug-screen CLI scores held-out doses with, needs none
    assert _python("import gim_ppl.evaluation.metrics", {"ott", "sklearn"}).returncode == 0


def test_every_module_imports(sources):
    import gim_ppl

    names = {i.name for i in pkgutil.walk_packages(gim_ppl.__path__, prefix="gim_ppl.")}
    assert names == set(sources) - {"gim_ppl"}
    for name in sorted(names):
        importlib.import_module(name)
