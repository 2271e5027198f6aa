"""`gim_ppl.extras`: an optional dependency is imported, or its absence names the extra that
installs it; `EXTRA_OF` agrees with pyproject.toml; the core install and `gim-ppl demo` run
without the extras they do not name."""

import importlib
import subprocess
import sys

import pytest

from tests import ROOT


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


def _python(code: str, blocked=frozenset()) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter in which the `blocked` packages are missing."""
    block = "".join(f"sys.modules[{name!r}] = None\n" for name in sorted(blocked))
    return subprocess.run([sys.executable, "-c", f"import sys\n{block}{code}"],
                          capture_output=True, text=True, cwd=ROOT)


def test_core_and_the_demo_need_only_their_extras():
    """The core install fits a GIM; README command 1 (`[bench]`, then `gim-ppl demo`) needs
    neither `[plots]` nor `[screen]`."""
    from gim_ppl.extras import EXTRA_OF

    optional = set(EXTRA_OF)
    core = _python("import gim_ppl, gim_ppl.model, gim_ppl.inference, gim_ppl.datasets", optional)
    assert core.returncode == 0, core.stderr
    demo = _python("import gim_ppl.cli", optional - {"ott", "sklearn"})
    assert demo.returncode == 0, demo.stderr
    # the blocking works: a blocked extra is an ImportError that names it...
    blocked = _python("import gim_ppl\nfrom gim_ppl.evaluation import metrics\n"
                      "data = gim_ppl.datasets.synthetic_hill(0, n_vars=3, n_train_perturbations=2,"
                      " n_test_perturbations=1, n_cells=5, n_test_cells=5, n_observational=5)"
                      ".full_ood\nmetrics.wasserstein(data, data)\n", {"ott"})
    assert blocked.returncode != 0 and "gim_ppl[bench]" in blocked.stderr, blocked.stderr
    # ...while mean_error, which the drug-screen CLI scores held-out doses with, needs none
    assert _python("import gim_ppl.evaluation.metrics", {"ott", "sklearn"}).returncode == 0
