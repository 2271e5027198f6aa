import numpy as np
import pytest

import gim_ppl
from gim_ppl.evaluation import metrics, stability


def brute_force_auroc(labels, scores) -> float:
    """P(score of a positive > score of a negative), ties ½, by counting every pair."""
    pos, neg = scores[labels], scores[~labels]
    wins = sum(float(a > b) + 0.5 * float(a == b) for a in pos for b in neg)
    return wins / (pos.size * neg.size)


def test_mean_shift_detector_scores_by_hand():
    """Kills mutants `mean_shift_sample_sd`, `mean_shift_scores_observational` and
    `auroc_ties_count_as_wins` (dev/mutants.py): every context's score by a loop over its
    cells, and the detector's AUROC on the default benchmark by counting pairs, both
    independent of the package's vectorised code and of sklearn."""
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
    # The default benchmark, seed 0: the raw mean shift is the reference a GIM's posterior
    # must beat (tests/inference/test_batching_scale.py). Scores by a loop in float64 against
    # the package's (control mean and sd in float32, pairwise sums over n = 800 cells): each
    # float32 sum is off by at most ~log2(n) ε Σ|x| ≈ 10 ε n mean|x|, so a score by at most
    # 10 ε (mean|x_control| / sd + score) — an a-priori bound, not a fitted tolerance.
    full = gim_ppl.datasets.synthetic_hill(0)
    data = full.train
    x, ctx = np.asarray(data.x, float), np.asarray(data.context)
    obs = np.asarray(data.observational)
    control = x[np.isin(ctx, np.flatnonzero(obs))]
    assert control.shape[0] <= 1024  # log2(n) <= 10 for the bound below
    by_hand = np.stack([np.zeros(x.shape[1]) if obs[c] else
                        np.abs(x[ctx == c].mean(0) - control.mean(0)) / control.std(0)
                        for c in range(data.n_contexts)])
    got = stability.mean_shift_scores(data)
    eps = np.finfo(np.float32).eps
    bound = 10 * eps * (np.abs(control).mean(0) / control.std(0) + by_hand)
    assert np.all(np.abs(got - by_hand) <= bound), np.max(np.abs(got - by_hand) / bound)
    # the detector's AUROC (sklearn under metrics.auroc) against every pair counted
    truth = np.asarray(full.truth.targets["train"], bool)[~obs]
    counted = brute_force_auroc(truth.ravel(), got[~obs].ravel())
    assert metrics.auroc(truth, got[~obs]) == pytest.approx(counted, abs=1e-12)
    assert counted > 0.5  # the detector ranks a target above a non-target more often than not


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
