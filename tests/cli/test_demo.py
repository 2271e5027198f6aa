"""`gim-ppl demo` (README command 1) through its real code path, in a short mode."""

import re

import numpy as np
import pytest

from gim_ppl.cli import main


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
    (["--perf", "--sachs"], "not allowed with argument"),
    (["--stability", "--learning-curve", "20,40"], "not allowed with argument"),
    (["--perf", "--conditions", "all"], "--conditions belongs to --sachs, not to --perf"),
    (["--restarts", "4"], "--restarts belongs to --stability, not to the protocol"),
    (["--sachs", "--large", "1000x10"], "--large belongs to --perf, not to --sachs"),
    (["--perf", "--keys", "0"], "--keys belongs to --stability or --sachs"),
])
def test_bench_refuses_two_modes_and_options_of_another_mode(argv, message, tmp_path, capsys):
    """One program per call: `--perf --sachs` used to run perf and ignore --sachs."""
    try:
        code = main(["bench", *argv, "--out", str(tmp_path)])
    except SystemExit as exit_:  # argparse's own refusal
        code = exit_.code
    assert code == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
