"""`gim-ppl demo` (README command 1) through its real code path, in a short mode."""

import re

import numpy as np
import pytest

from gim_ppl.cli import bench, main


def test_demo_runs_and_prints_every_metric_row(capsys):
    """Every metric row of the table has a finite number (kills mutant
    `demo_metric_key_misspelt` in dev/mutants.py: a misspelt key is a KeyError)."""
    assert main(["demo", "--steps", "20", "--n-vars", "3", "--marginal", "exact",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0] == "| metric | exact |"
    values = {line.split(" | ")[0][2:]: line.split(" | ")[1].rstrip(" |") for line in rows[1:]}
    assert len(values) == 10  # 9 metrics and the fit time, each with a number
    assert all(np.isfinite(float(v)) for v in values.values()), values
    assert re.search(r"best simple baseline \((dose_interpolation|mean_shift_dose|ridge|"
                     r"mean_shift|nearest_neighbour)\)", out)
    for name, value in values.items():
        if name.startswith("target AUROC"):
            assert 0.0 <= float(value) <= 1.0, name


@pytest.mark.parametrize("argv, message", [
    (["perf", "--conditions", "all"], "unrecognized arguments: --conditions all"),
    (["protocol", "--restarts", "4"], "unrecognized arguments: --restarts 4"),
    (["sachs", "--large", "1000x10"], "unrecognized arguments: --large 1000x10"),
    (["perf", "--keys", "0"], "unrecognized arguments: --keys 0"),
    (["--perf", "--sachs"], "unrecognized arguments: --sachs"),  # the old spelling
    (["curve", "1,4"], "training perturbations >= 2"),
])
def test_bench_programs_take_only_their_own_flags(argv, message, tmp_path, capsys):
    """One program per call, each with its own flags: an option of another program, or two
    programs, are refused before anything runs."""
    code = main(["bench", *argv, "--out", str(tmp_path)])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_bench_needs_a_program(capsys):
    assert main(["bench"]) == 2
    assert "the following arguments are required: PROGRAM" in capsys.readouterr().err


@pytest.mark.parametrize("old, new", [
    (["bench", "--quick"], ["bench", "protocol", "--quick"]),
    (["bench", "--perf", "--quick"], ["bench", "perf", "--quick"]),
    (["bench", "--sachs", "--out", "docs"], ["bench", "sachs", "--out", "docs"]),
    (["bench", "--stability", "--seeds", "1"], ["bench", "stability", "--seeds", "1"]),
    (["bench", "--quick", "--learning-curve", "6,12"], ["bench", "curve", "6,12", "--quick"]),
    (["bench", "--learning-curve=6,12"], ["bench", "curve", "6,12"]),
    (["bench", "perf"], ["bench", "perf"]),
    (["bench", "--help"], ["bench", "--help"]),
    (["demo", "--quick"], ["demo", "--quick"]),
])
def test_old_bench_spelling_becomes_the_sub_command(old, new):
    assert bench.legacy_argv(old) == new
