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


def test_own_arrays_snippet_runs_verbatim_on_plain_arrays():
    """The "Your own arrays" block, as printed (300 steps instead of 20 000), on plain numpy
    arrays taken apart from a synthetic screen: the names it expects are all it needs."""
    import gim_ppl

    train = gim_ppl.datasets.synthetic_hill(seed=0).train
    arrays = {
        "x": np.asarray(train.x), "context": np.asarray(train.context),
        "features": np.asarray(train.features), "dose": np.asarray(train.dose),
        "is_control": np.asarray(train.observational), "drug": np.asarray(train.perturbation),
        "genes": list(train.var_names), "drug_names": list(train.perturbation_names),
    }
    code = _snippet("## Your own arrays").replace("20_000", "300")
    namespace = dict(arrays)
    exec(compile(code, "README.md", "exec"), namespace)
    model, data, targets = namespace["model"], namespace["data"], namespace["targets"]
    assert model.priors.edge_weight.scale == 0.3
    n_drugs = np.unique(arrays["drug"][~arrays["is_control"]]).size  # 40 training drugs
    assert len(targets) == n_drugs * train.n_vars
    assert targets["posterior_probability"].between(0, 1).all()
    idata = namespace["idata"]
    assert idata.posterior["target_prob"].shape[-2:] == (data.n_contexts, data.n_vars)
