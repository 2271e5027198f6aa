"""Every fenced code block of README.md and docs/*.md is checked.

- ```python blocks run verbatim, page by page in one namespace (a block may continue the
  one before it on its page), in a temporary directory, with `GIM_PPL_MAX_STEPS` set so that
  `gim_ppl.fit` runs few steps. A NumPyro `svi.run(key, N, ...)` with a literal N is not
  ours to cap: its N is replaced by the same cap here, the only change made to a block.
- ```bash blocks are parsed, not run: every `gim-ppl ...` line by the CLI's own parser,
  every `python benchmarks/X.py ...` by that script's `build_parser()` (a script elsewhere
  fails), `python -c` code is compiled and its imports resolved, `pip install -e ".[x]"` extras
  must exist in pyproject.toml. A command this module does not know fails the test.
- ```text blocks (listings, output) are not code.

An HTML comment right before a fence says why a block is not run as it stands:
`<!-- not run: REASON -->`, `<!-- run in tests/test_x.py: REASON -->` (that module runs it,
on data of its own), or `<!-- given: a, b, c -->`: the names the block expects from its
reader, which `GIVEN` below supplies on a small problem (such a block may also use the
README's imports). The rules are in CONTRIBUTING.md.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib.util
import io
import os
import re
import shlex
import sys
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from gim_ppl.cli import build_parser as gim_ppl_parser
from gim_ppl.inference.fitting import MAX_STEPS_ENV
from tests import ROOT

PAGES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
#: `GIM_PPL_MAX_STEPS` for the python blocks, and the steps of their literal `svi.run`.
STEPS = 20
LANGUAGES = {"python": "python", "bash": "bash", "sh": "bash", "text": "text"}

FENCE = re.compile(r"^```(?P<lang>[^\n`]*)\n(?P<code>.*?)^```[ \t]*$", re.S | re.M)
MARK = re.compile(r"<!--\s*(?P<kind>not run|run in|given)\b(?P<note>(?:(?!-->).)*)-->\s*\Z",
                  re.S)
SVI_RUN = re.compile(r"(\bsvi\.run\((?:[^,()]|\([^()]*\))+,\s*)[0-9_]+(?=\s*,)")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    lang: str
    code: str
    mark: str | None  # "not run", "run in", "given" or None (run / parsed as it stands)
    note: str  # the comment's text after the mark

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def collect(page: Path) -> list[Block]:
    """The fenced blocks of `page`, with the HTML comment right before each, if any."""
    text = page.read_text()
    blocks = []
    for m in FENCE.finditer(text):
        before = MARK.search(text[max(0, m.start() - 500):m.start()])
        mark, note = ((before["kind"], before["note"].strip(" :\n")) if before
                      else (None, ""))
        blocks.append(Block(page, text.count("\n", 0, m.start()) + 1,
                            m["lang"].strip(), m["code"], mark, note))
    return blocks


BLOCKS = [block for page in PAGES for block in collect(page)]
PYTHON = [b for b in BLOCKS if LANGUAGES.get(b.lang) == "python"]
BASH = [b for b in BLOCKS if LANGUAGES.get(b.lang) == "bash"]


def _ids(blocks):
    return [b.id for b in blocks]


# --- what `<!-- given: ... -->` blocks expect, built on small problems --------------------


def _readme_imports() -> dict:
    import jax
    import numpyro.distributions as dist
    import optax
    from numpyro.infer import SVI, Trace_ELBO
    from numpyro.infer.autoguide import AutoDelta
    from numpyro.optim import optax_to_numpyro

    import gim_ppl

    return {"jax": jax, "optax": optax, "np": np, "dist": dist, "gim_ppl": gim_ppl,
            "SVI": SVI, "Trace_ELBO": Trace_ELBO, "AutoDelta": AutoDelta,
            "optax_to_numpyro": optax_to_numpyro}


def _own_arrays() -> dict:
    """The arrays of "Your own arrays" (README), taken apart from a synthetic screen."""
    import gim_ppl

    train = gim_ppl.datasets.synthetic_hill(seed=0).train
    return {"x": np.asarray(train.x), "context": np.asarray(train.context),
            "features": np.asarray(train.features), "dose": np.asarray(train.dose),
            "is_control": np.asarray(train.observational),
            "drug": np.asarray(train.perturbation), "genes": list(train.var_names),
            "drug_names": list(train.perturbation_names)}


def _small_problem() -> dict:
    """A 3-variable GIM, its training data, unseen contexts and a random point."""
    import jax

    import gim_ppl
    from tests._problems import random_sites, small_data

    data = small_data(0).replace(var_names=("stimulus", "x1", "x2"))
    model = gim_ppl.GIM(data.n_vars, data.n_features)
    unseen = small_data(1, n_pert=2)
    contexts = unseen.contexts_only()
    candidates = contexts.subset(np.flatnonzero(~np.asarray(contexts.observational)))
    return {"model": model, "data": data, "sites": random_sites(model),
            "contexts": contexts, "candidates": candidates, "key": jax.random.key(0),
            "d": data.n_vars, "p": data.n_features}


def _new_drugs() -> dict:
    """The small problem, and a benchmark's training data and new drugs (unseen.md)."""
    import gim_ppl

    bench = gim_ppl.datasets.synthetic_hill(seed=0)
    return {**_small_problem(), "train": bench.train, "new": bench.full_ood}


GIVEN = {"README.md": _own_arrays, "unseen.md": _new_drugs}
GIVEN_DEFAULT = _small_problem


def given_names(block: Block) -> list[str]:
    return [n.strip() for n in block.note.split("(")[0].split(",") if n.strip()]


# --- the python blocks, run page by page ----------------------------------------------------


def runnable(block: Block) -> str:
    """The code that runs: the block, its literal `svi.run` steps replaced by `STEPS`."""
    return SVI_RUN.sub(rf"\g<1>{STEPS}", block.code)


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """`{block id: (namespace after the block, traceback or None)}`, pages run on demand."""
    results: dict = {}
    pages_done: set = set()
    old_cwd, old_cap = Path.cwd(), os.environ.get(MAX_STEPS_ENV)

    def run_page(page: Path):
        if page in pages_done:
            return
        pages_done.add(page)
        namespace: dict = {"__name__": f"docs_{page.stem}"}
        os.chdir(tmp_path_factory.mktemp(page.stem))
        os.environ[MAX_STEPS_ENV] = str(STEPS)
        try:
            for block in (b for b in PYTHON if b.page == page):
                if block.mark in ("not run", "run in"):
                    continue
                if block.mark == "given":
                    supplied = GIVEN.get(page.name, GIVEN_DEFAULT)()
                    missing = set(given_names(block)) - set(supplied)
                    assert not missing, f"{block.id}: GIVEN supplies no {sorted(missing)}"
                    namespace.update(_readme_imports())
                    namespace.update({n: supplied[n] for n in given_names(block)})
                error = None
                try:
                    with warnings.catch_warnings():
                        warnings.filterwarnings("ignore", message=MAX_STEPS_ENV)
                        exec(compile(runnable(block), block.id, "exec"), namespace)
                except Exception:
                    error = traceback.format_exc(limit=-6)
                results[block.id] = (dict(namespace), error)
        finally:
            os.chdir(old_cwd)
            if old_cap is None:
                os.environ.pop(MAX_STEPS_ENV, None)
            else:
                os.environ[MAX_STEPS_ENV] = old_cap

    def get(block_id: str):
        run_page(next(b.page for b in PYTHON if b.id == block_id))
        return results[block_id]

    return get


def _block_after(heading: str) -> Block:
    """The first python block of README.md after `heading`."""
    text = (ROOT / "README.md").read_text()
    line = text.count("\n", 0, text.index(heading)) + 1
    return next(b for b in PYTHON if b.page.name == "README.md" and b.line > line)


@pytest.mark.parametrize("block", [b for b in PYTHON if b.mark not in ("not run", "run in")],
                         ids=_ids([b for b in PYTHON if b.mark not in ("not run", "run in")]))
def test_python_block_runs(block, executed):
    _, error = executed(block.id)
    assert error is None, f"{block.id} failed:\n{error}"


@pytest.mark.parametrize("block", PYTHON, ids=_ids(PYTHON))
def test_python_block_compiles_and_its_imports_resolve(block):
    """Every python block, run or not: valid Python, and what it imports exists."""
    tree = ast.parse(block.code, block.id)
    imports = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
    exec(compile(ast.Module(imports, []), block.id, "exec"), {})


def test_readme_own_arrays_block_fits_the_arrays_it_was_given(executed):
    """README "Your own arrays": the names it expects are all it needs, and its table has a
    row per training drug and gene."""
    namespace, error = executed(_block_after("## Your own arrays").id)
    assert error is None, error
    model, data, targets = namespace["model"], namespace["data"], namespace["targets"]
    assert model.priors.edge_weight.scale == 0.3
    drug, is_control = namespace["drug"], namespace["is_control"]
    assert len(targets) == np.unique(drug[~is_control]).size * data.n_vars
    assert targets["posterior_probability"].between(0, 1).all()
    idata = namespace["idata"]
    assert idata.posterior["target_prob"].shape[-2:] == (data.n_contexts, data.n_vars)


def test_readme_numpyro_block_predicts_the_unseen_contexts(executed):
    namespace, error = executed(_block_after("## Using it from NumPyro").id)
    assert error is None, error
    pred, bench = namespace["pred"], namespace["bench"]
    assert pred.n_contexts == bench.full_ood.n_contexts
    assert np.isfinite(np.asarray(pred.x)).all()
    # two runs of STEPS steps: the second started where the first ended
    warm, result = namespace["warm"], namespace["result"]
    assert len(warm.losses) == len(result.losses) == STEPS
    assert result.losses[0] < warm.losses[0]


def test_readme_fit_block_ran_the_capped_steps(executed):
    namespace, error = executed(_block_after("## One call: `gim_ppl.fit`").id)
    assert error is None, error
    assert len(namespace["res"].losses) == STEPS  # steps=30_000 capped by GIM_PPL_MAX_STEPS


# --- every block: a known language, and a reason where it is not run -----------------------


@pytest.mark.parametrize("block", BLOCKS, ids=_ids(BLOCKS))
def test_block_has_a_language_and_a_reason_where_not_run(block):
    assert block.lang in LANGUAGES, (
        f"{block.id}: fence language {block.lang!r}; say python, bash or text")
    if block.mark in ("not run", "run in", "given"):
        assert block.note, f"{block.id}: <!-- {block.mark}: ... --> needs its reason or names"
    if block.mark == "given":
        assert LANGUAGES[block.lang] == "python" and given_names(block), block.id
    if block.mark == "run in":
        test_file = ROOT / block.note.split(":")[0].split()[0]
        assert test_file.is_file() and test_file.name.startswith("test_"), block.id
        assert block.page.name in test_file.read_text(), (
            f"{block.id}: {test_file.name} does not mention {block.page.name}")


def test_collect_reads_marks_and_fences(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# t\n\n<!-- not run: needs your own screen.h5ad -->\n```python\n"
                    "fit('screen.h5ad')\n```\n\ntext\n\n```\nplain\n```\n"
                    "<!-- given: model, sites (a fit) -->\n\n```python\nmodel\n```\n")
    first, plain, given = collect(page)
    assert (first.mark, first.note, first.line) == ("not run", "needs your own screen.h5ad", 4)
    assert (plain.mark, plain.lang, plain.code) == (None, "", "plain\n")
    assert given.mark == "given" and given_names(given) == ["model", "sites"]
    assert runnable(Block(page, 1, "python", "svi.run(jax.random.key(0), 15_000, d, x=1)\n",
                          None, "")) == f"svi.run(jax.random.key(0), {STEPS}, d, x=1)\n"


# --- shell blocks: parsed, not run ----------------------------------------------------------


def _brace_expand(word: str) -> list[str]:
    """bash's `pre{a,b}post` -> `prea`, `preb` (unnested)."""
    m = re.search(r"\{([^{}]*,[^{}]*)\}", word)
    if not m:
        return [word]
    return [w for part in m[1].split(",")
            for w in _brace_expand(word[:m.start()] + part + word[m.end():])]


def shell_commands(code: str) -> list[list[str]]:
    """The simple commands of a shell block: continuations joined, comments and here-doc
    bodies dropped, split at `&&`, `||`, `;` and `|`, braces expanded, redirections and
    leading `VAR=value` assignments removed."""
    lines, heredoc = [], None
    for line in code.replace("\\\n", " ").splitlines():
        if heredoc is not None:
            heredoc = None if line.strip() == heredoc else heredoc
            continue
        m = re.search(r"<<-?\s*['\"]?(\w+)['\"]?", line)
        if m:
            heredoc, line = m[1], line[:m.start()]
        lines.append(line)
    commands = []
    for line in lines:
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split, lexer.commenters = True, "#"
        words: list[str] = []
        for token in [*lexer, ";"]:
            if token in ("&&", "||", ";", "|", "&"):
                while words and re.fullmatch(r"[A-Za-z_]\w*=.*", words[0]):
                    words.pop(0)
                if words:
                    commands.append(words)
                words = []
            elif token in (">", ">>", "<"):
                words.append(None)  # the next word is a file, not an argument
            elif words and words[-1] is None:
                words.pop()
            else:
                words.extend(_brace_expand(token))
    return commands


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> str | None:
    """None if `parser` accepts `argv` as written, else its error message. Abbreviated
    flags are refused here (argparse takes `--no-progres` for `--no-progress`): a docs line
    spells its flags out."""
    parsers = [parser]
    while parsers:
        current = parsers.pop()
        current.allow_abbrev = False
        for action in current._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers.extend(action.choices.values())
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(argv)
    except SystemExit as done:
        return err.getvalue().strip() or f"exit {done.code}"
    return None


def _load_script(path: Path):
    spec = importlib.util.spec_from_file_location(f"script_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def check_python_command(args: list[str]) -> str | None:
    """None if `python ARGS` is right as far as can be told without running it."""
    if args[:2] == ["-m", "venv"]:
        return None
    if args[:1] == ["-m"]:
        if args[1] == "gim_ppl.cli":
            return _parse(gim_ppl_parser(), args[2:])
        return None if importlib.util.find_spec(args[1]) else f"no module {args[1]}"
    if args[:1] == ["-c"]:
        tree = ast.parse(args[1])
        imports = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
        exec(compile(ast.Module(imports, []), "<python -c>", "exec"), {})
        return None
    script = ROOT / args[0]
    if not script.is_file():
        return f"no script {args[0]}"
    if script.parent not in (ROOT / "benchmarks", ROOT / "dev"):
        return f"{args[0]}: docs run scripts of benchmarks/ and dev/ only"
    module = _load_script(script)
    if not hasattr(module, "build_parser"):
        return f"{args[0]}: a script the docs run needs a build_parser() to check its flags"
    return _parse(module.build_parser(), args[1:])


def pyproject_extras() -> set[str]:
    """The extras of pyproject.toml's `[project.optional-dependencies]` (Python 3.10 has no
    tomllib)."""
    text = (ROOT / "pyproject.toml").read_text()
    section = text.split("[project.optional-dependencies]\n", 1)[1].split("\n[", 1)[0]
    return set(re.findall(r"^([A-Za-z][\w-]*)\s*=", section, re.M))


def check_pip(args: list[str]) -> str | None:
    extras = pyproject_extras()
    for arg in args:
        m = re.fullmatch(r"\.\[(.*)\]", arg)
        unknown = set(m[1].split(",")) - set(extras) if m else set()
        if unknown:
            return f"pyproject.toml has no extra {sorted(unknown)}"
    return None


def check_command(words: list[str]) -> str | None:
    """None if the command is right, else what is wrong with it."""
    program, args = words[0], words[1:]
    if program == "gim-ppl":
        return _parse(gim_ppl_parser(), args)
    if program in ("python", "python3"):
        return check_python_command(args)
    if program == "pip":
        return check_pip(args)
    if program in (".", "source") and args and args[0].endswith("bin/activate"):
        return None
    if program == "cat":
        return None
    return f"unknown command {program!r}: teach tests/test_docs_blocks.py to check it"


def _bash_checked():
    return [b for b in BASH if b.mark != "not run"]


@pytest.mark.parametrize("block", _bash_checked(), ids=_ids(_bash_checked()))
def test_shell_block_parses(block):
    commands = shell_commands(block.code)
    assert commands, f"{block.id}: no command"
    problems = [f"{' '.join(words)}\n    -> {problem}" for words in commands
                if (problem := check_command(words))]
    assert not problems, f"{block.id}:\n" + "\n".join(problems)


def test_shell_checks_catch_slips():
    """Each check rejects a plausible slip in a docs command line."""
    assert check_command(["gim-ppl", "demo", "--no-progress"]) is None
    assert "unrecognized" in check_command(["gim-ppl", "demo", "--no-progres"])
    assert check_command(["gim-ppl", "bench", "--steps", "0"])  # not a positive int
    assert check_command(["pip", "install", "-e", ".[bench,screen]"]) is None
    assert "no extra" in check_command(["pip", "install", "-e", ".[benchmark]"])
    assert check_command(["python", "benchmarks/oracle_ladder.py", "--quick"]) is None
    assert check_command(["python", "benchmarks/oracle_ladder.py", "--seed", "0"])
    assert "no script" in check_command(["python", "benchmarks/oracle_lader.py"])
    nuts = ["python", "benchmarks/nuts_acyclicity.py", "--variants", "notears"]
    assert check_command([*nuts, "--warmup", "300", "--n-vars", "10"]) is None
    assert "invalid choice" in check_command([*nuts, "spectral"])
    assert "invalid int" in check_command([*nuts, "--warmup", "3e2"])
    assert "needs a build_parser()" in check_command(["python", "dev/mutants.py", "--list"])
    assert "dev/ only" in check_command(["python", "tests/_problems.py"])
    with pytest.raises(ImportError):
        check_command(["python", "-c", "from gim_ppl.datasets import toy_scren"])
    assert check_command(["wget", "x"]).startswith("unknown command")
    assert shell_commands("A=1 gim-ppl demo \\\n  --steps 3 && echo {a,b}  # c\n"
                          "cat > f.csv <<'CSV'\nx,y\nCSV\n") == [
        ["gim-ppl", "demo", "--steps", "3"], ["echo", "a", "b"], ["cat"]]


# --- the README's numbers: benchmarks/readme_numbers.py ------------------------------------


def test_readme_numbers_compare_within_the_readmes_rounding():
    numbers = _load_script(ROOT / "benchmarks" / "readme_numbers.py")
    assert numbers.matches("0.945", 0.94514) and numbers.matches("1.15", 1.1537)
    assert not numbers.matches("0.945", 0.9456) and not numbers.matches("7", 6)
    assert numbers.matches("every time", "every time")
    assert not numbers.matches("0.945", float("nan"))
    claims = numbers.readme_claims((ROOT / "README.md").read_text())
    assert len({(c.source, c.key, c.readme) for c in claims}) >= 30
    rows = numbers.compare(claims, {"sachs": {"gim_exact": 0.61}})
    by_key = {(r["source"], r["claim"]): r for r in rows}
    assert by_key[("sachs", "Sachs target AUROC, gim_exact")]["match"] is False
    assert all(r["match"] is None for r in rows if r["source"] == "demo")


def test_readme_numbers_agree_with_the_stored_records(capsys):
    """The README's seed-0–9 and Sachs numbers are those of the raw records in docs/data."""
    numbers = _load_script(ROOT / "benchmarks" / "readme_numbers.py")
    assert numbers.main(["--records"]) == 0, capsys.readouterr().out


def test_max_steps_env_caps_steps_only_when_set_and_smaller(monkeypatch):
    from gim_ppl.inference.fitting import capped_steps

    monkeypatch.delenv(MAX_STEPS_ENV, raising=False)
    assert capped_steps(30_000) == 30_000
    monkeypatch.setenv(MAX_STEPS_ENV, "20")
    with pytest.warns(UserWarning, match="running 20 optimiser steps instead of 30000"):
        assert capped_steps(30_000) == 20
    assert capped_steps(7) == 7
    for bad in ("0", "2.5", "many"):
        monkeypatch.setenv(MAX_STEPS_ENV, bad)
        with pytest.raises(ValueError, match=MAX_STEPS_ENV):
            capped_steps(30_000)
