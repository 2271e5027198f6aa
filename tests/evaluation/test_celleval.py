"""`gim_ppl.evaluation.celleval`: the cell-eval package itself agrees with `metrics`' MAE,
discrimination score and DE overlap on the same cells, and `gim-ppl fit --cell-eval` writes
its numbers beside ours. Skipped without the `[celleval]` extra (not in `test`)."""

import json
import sys

import numpy as np
import pytest

import gim_ppl
from gim_ppl.evaluation import celleval, metrics


def clouds(groups):
    """PerturbationData whose context k holds the cells `groups[k] (n_k, d)`."""
    k = len(groups)
    return gim_ppl.PerturbationData.from_arrays(
        np.concatenate(groups), np.repeat(np.arange(k), [len(g) for g in groups]),
        features=np.ones((k, 1)), dose=np.ones(k), observational=np.zeros(k, bool))


def log1p_screen(seed, n_contexts=6, n_genes=15):
    """Control cells and observed / predicted log1p cells of a small count screen: the
    predicted effects are the observed ones shrunk and perturbed."""
    rng = np.random.default_rng(seed)
    base = rng.gamma(2.0, 2.0, n_genes)
    effect = rng.normal(0, 0.8, (n_contexts, n_genes)) * (rng.uniform(size=(n_contexts,
                                                                           n_genes)) < 0.4)
    guess = effect * rng.uniform(0.3, 1.2, effect.shape) + rng.normal(0, 0.3, effect.shape)

    def cells(log_effect, n):
        mean = base * np.exp(log_effect)
        return np.log1p(rng.poisson(rng.gamma(5.0, mean / 5.0, (n, n_genes)))).astype(np.float32)

    control = cells(np.zeros(n_genes), 200)
    observed = clouds([cells(e, 60) for e in effect])
    predicted = clouds([cells(e, 80) for e in guess])
    return control, observed, predicted


def test_without_the_extra_the_error_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "cell_eval", None)
    control, observed, predicted = log1p_screen(0)
    with pytest.raises(ImportError, match=r'pip install "gim_ppl\[celleval\]"'):
        celleval.cell_eval_scores(predicted, observed, control)


@pytest.mark.parametrize("seed", [0, 1])
def test_cell_eval_agrees_with_metrics(seed):
    pytest.importorskip("cell_eval")
    control, observed, predicted = log1p_screen(seed)
    theirs = celleval.cell_eval_scores(predicted, observed, control)
    assert theirs["version"] >= "0.8"
    np.testing.assert_allclose(theirs["mae"], metrics.mean_absolute_error(
        predicted, observed, per_context=True), rtol=1e-5, atol=1e-6)  # float32 pseudobulks
    np.testing.assert_array_equal(theirs["discrimination_score"], metrics.discrimination_score(
        predicted, observed, per_context=True))
    np.testing.assert_array_equal(theirs["de_overlap"], metrics.de_overlap(
        predicted, observed, control, per_context=True))
    assert 0 < np.mean(theirs["de_overlap"]) < 1  # neither trivial case


def test_cell_eval_refuses_negative_values():
    pytest.importorskip("cell_eval")
    control, observed, predicted = log1p_screen(0)
    with pytest.raises(ValueError, match="negative"):
        celleval.cell_eval_scores(predicted.replace(x=predicted.x - 5.0), observed, control)


def test_fit_cell_eval_writes_its_numbers_beside_ours(tmp_path):
    pytest.importorskip("cell_eval")
    from gim_ppl.cli import main
    from gim_ppl.datasets import toy_screen

    adata, _ = toy_screen(0)
    path = tmp_path / "toy.h5ad"
    adata.write_h5ad(path)
    out = tmp_path / "out"
    assert main(["fit", "--h5ad", str(path), "--preset", "sciplex3", "--cell-type", "A549",
                 "--steps", "200", "--n-pred-cells", "40", "--no-progress", "--cell-eval",
                 "--out", str(out)]) == 0
    scores = json.loads((out / "metrics.json").read_text())
    package = scores["cell_eval_package"]
    assert "skipped" not in package, package
    for metric in ("mae", "discrimination_score", "de_overlap"):
        assert package[metric] == pytest.approx(scores[metric], rel=1e-5, abs=1e-6), metric
        np.testing.assert_allclose([r[metric] for r in package["per_context"]],
                                   [r[metric] for r in scores["per_context"]],
                                   rtol=1e-5, atol=1e-6)
