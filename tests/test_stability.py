import numpy as np
import pytest

import gim_ppl
from gim_ppl.evaluation import metrics, stability


def test_mean_shift_detector_scores_by_hand():
    bench = gim_ppl.datasets.synthetic_hill(0, n_vars=4, n_train_perturbations=4,
                                            n_test_perturbations=2)
    data = bench.train
    scores = stability.mean_shift_scores(data)
    x, ctx = np.asarray(data.x, float), np.asarray(data.context)
    control = x[ctx == 0]
    k = 3
    expected = np.abs(x[ctx == k].mean(0) - control.mean(0)) / control.std(0)
    np.testing.assert_allclose(scores[k], expected, rtol=1e-6)
    assert np.all(scores[0] == 0.0)
    # the default benchmark, seed 0: the raw mean shift already ranks most targets first
    # (0.906 here and in the issue-11 runs: the reference a GIM's posterior must beat)
    full = gim_ppl.datasets.synthetic_hill(0).train
    pert = ~np.asarray(full.observational)
    auroc = metrics.auroc(gim_ppl.datasets.synthetic_hill(0).truth.targets["train"][pert],
                          stability.mean_shift_scores(full)[pert])
    assert auroc == pytest.approx(0.9056, abs=1e-3)


def test_stability_rows_summary_and_table(tmp_path):
    jobs = [("fit", 0), ("fit", 1), ("plain", 0), ("fit_restarts", 0)]
    rows = [stability.stability_job(m, 0, k, steps=30, restarts=2) for m, k in jobs]
    assert {r["method"] for r in rows} == {"fit", "plain", "fit_restarts"}
    assert rows[-1]["agreement"] is not None and rows[0]["agreement"] is None
    summary = stability.summarise(rows)
    fits = [r["target_auroc_train_posterior"] for r in rows if r["method"] == "fit"]
    assert summary["fit"]["train_auroc_mean"] == pytest.approx(np.mean(fits))
    assert summary["fit"]["train_auroc_min"] == pytest.approx(min(fits))
    assert summary["plain"]["n"] == 1
    json_path, md_path = stability.write_stability(
        rows, tmp_path, machine="test", config=stability.StabilityConfig(steps=30))
    assert json_path.exists() and "| fit_restarts | 1 |" in md_path.read_text()
    with pytest.raises(ValueError, match="method must be one of"):
        stability.stability_job("nuts", 0, 0, steps=5)


def test_cli_writes_the_stability_tables(tmp_path, capsys):
    from gim_ppl.cli import main

    code = main(["bench", "--stability", "--seeds", "1", "--keys", "0", "--steps", "20",
                 "--methods", "fit", "--out", str(tmp_path)])
    assert code == 0
    assert (tmp_path / "stability.json").exists()
    assert "| fit | 1 |" in (tmp_path / "stability.md").read_text()
    assert main(["bench", "--stability", "--methods", "nuts", "--out", str(tmp_path)]) == 2
    assert "unknown --methods" in capsys.readouterr().err
