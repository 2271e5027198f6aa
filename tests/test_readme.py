"""The README's NumPyro snippet runs as printed (with fewer steps) and gives a usable fit."""

import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def _snippet(heading: str) -> str:
    text = README.read_text()
    section = text[text.index(heading):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_numpyro_snippet_runs_and_predicts():
    code = _snippet("## Using it from NumPyro").replace("15_000", "300")
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    pred, bench = namespace["pred"], namespace["bench"]
    assert pred.n_contexts == bench.full_ood.n_contexts
    assert np.isfinite(np.asarray(pred.x)).all()
    # two runs of 300 steps: the second started where the first ended
    warm, result = namespace["warm"], namespace["result"]
    assert len(warm.losses) == len(result.losses) == 300
    assert result.losses[0] < warm.losses[0]
