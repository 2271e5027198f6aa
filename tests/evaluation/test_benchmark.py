"""`gim-ppl bench --quick` end to end: the JSON it writes has every method and metric, finite
numbers, and the oracle at or below the control prediction on every distance."""

import json
import math

import jax
import pytest

from gim_ppl import cli
from gim_ppl.evaluation import baselines, benchmark

#: The methods the quick-bench tests below assert something about (the bars: oracle, control,
#: the simple baselines; the GIM against them; the feature oracle's Brier score). The others
#: (`unstructured`, `causal_two_stage`, `gim_relaxed_mc`: ~50 s of fits) run in the full
#: protocol (`gim-ppl bench`); their pieces have their own tests.
ASSERTED = ("oracle", "oracle_features", "observational", *benchmark.SIMPLE_BASELINES,
            "gim_exact")


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    assert cli.main(["bench", "--quick", "--methods", ",".join(ASSERTED), "--out", str(out),
                     "--no-progress"]) == 0
    return json.loads((out / "results.json").read_text()), (out / "results.md").read_text()


def test_quick_bench_json_structure(quick_results):
    results, _ = quick_results
    assert set(results) >= {"config", "rows", "summary", "machine"}
    assert tuple(results["summary"]) == (*ASSERTED, benchmark.BEST_SIMPLE)
    for row in results["rows"]:
        for split in benchmark.SPLITS:
            if split == "full_ood" and row["method"] in benchmark.KNOWN_ONLY:
                assert f"{split}_mean_error" not in row  # unknown drugs: no prediction
                continue
            for name in benchmark.DISTANCES:
                assert math.isfinite(row[f"{split}_{name}"]), (row["method"], split, name)
        if row["method"] != benchmark.BEST_SIMPLE:
            assert math.isfinite(row["fit_seconds"])
    for method in ("gim_exact",):
        vals = results["summary"][method]
        for key in ("target_auroc_train", "target_auroc_full_ood", "graph_shd", "graph_auprc",
                    "seconds_per_step"):
            assert math.isfinite(vals[key]["mean"]), (method, key)
        assert 0.0 <= vals["target_auroc_full_ood"]["mean"] <= 1.0


def test_best_simple_baseline_row_is_the_minimum_of_the_simple_baselines(quick_results):
    rows = quick_results[0]["rows"]
    best = next(r for r in rows if r["method"] == benchmark.BEST_SIMPLE)
    simple = [r for r in rows if r["method"] in benchmark.SIMPLE_BASELINES]
    for key in ("partial_ood_mean_error", "full_ood_energy_distance", "full_ood_r2",
                "partial_ood_mae", "full_ood_discrimination", "partial_ood_de_overlap"):
        values = {r["method"]: r[key] for r in simple if key in r}
        pick = max if key.endswith(("_r2", "_discrimination", "_de_overlap")) else min
        assert best[key] == pick(values.values())
        assert values[best[f"{key}_by"]] == best[key]
    assert best["partial_ood_mean_error"] <= next(
        r for r in simple if r["method"] == "dose_interpolation")["partial_ood_mean_error"]


def test_quick_bench_oracle_at_or_below_control(quick_results):
    results, _ = quick_results
    s = results["summary"]
    for split in benchmark.SPLITS:
        for name in ("wasserstein", "mmd", "energy_distance", "mean_error"):
            key = f"{split}_{name}"
            assert s["oracle"][key]["mean"] <= s["observational"][key]["mean"], key


def test_quick_bench_gim_learns_something(quick_results):
    # even the short CI fit must beat the control prediction on new doses of known drugs
    s = quick_results[0]["summary"]
    assert (s["gim_exact"]["partial_ood_mean_error"]["mean"]
            < s["observational"]["partial_ood_mean_error"]["mean"])


def test_quick_bench_markdown_has_a_row_per_method(quick_results):
    _, md = quick_results
    for method in (*ASSERTED, benchmark.BEST_SIMPLE):
        assert f"| {method} |" in md
    assert "| gim_exact | full_ood_mean_error |" in md  # the GIM against the best baseline
    assert "Machine:" in md


def test_markdown_shows_a_spread_only_where_there_are_several_seeds():
    rows = [{"method": "a", "seed": 0, "graph_shd": 4.0},
            {"method": "b", "seed": 0, "graph_shd": 4.0}, {"method": "b", "seed": 1,
                                                           "graph_shd": 6.0}]
    table = benchmark.markdown_table(benchmark.summarise(rows))
    row_a = next(line for line in table.splitlines() if line.startswith("| a |"))
    row_b = next(line for line in table.splitlines() if line.startswith("| b |"))
    assert "| 4.0 |" in row_a and "±" not in row_a  # one seed: no "± 0.000"
    assert "| 5.0 ± 1.4 |" in row_b                  # sd with ddof 1 of (4, 6) = √2


def test_quick_bench_reports_peer_metrics(quick_results):
    results, md = quick_results
    for row in results["rows"]:
        for split in benchmark.SPLITS:
            if split == "full_ood" and row["method"] in benchmark.KNOWN_ONLY:
                continue
            assert row[f"{split}_r2"] <= 1.0 and math.isfinite(row[f"{split}_r2"])
            assert row[f"{split}_r2_top{benchmark.R2_TOP_K}"] <= 1.0
    s = results["summary"]
    # the oracle knows the truth: its mean changes explain at least half of the variance of
    # the observed ones beyond what predicting no change does (50 observed and 100 predicted
    # cells per context leave sampling noise in the means of the quick run)
    assert (s["oracle"]["full_ood_r2"]["mean"]
            > s["observational"]["full_ood_r2"]["mean"] + 0.5)
    for method in ("oracle_features", "gim_exact"):
        assert 0.0 <= s[method]["target_brier_full_ood"]["mean"] <= 1.0
    assert "full R²" in md and "target Brier unseen" in md



def test_quick_bench_reports_cell_eval_metrics(quick_results):
    results, md = quick_results
    for row in results["rows"]:
        for split in benchmark.SPLITS:
            if split == "full_ood" and row["method"] in benchmark.KNOWN_ONLY:
                assert f"{split}_mae" not in row
                continue
            assert 0.0 <= row[f"{split}_mae"] < math.inf, (row["method"], split)
            for name in ("discrimination", "de_overlap"):
                assert 0.0 <= row[f"{split}_{name}"] <= 1.0, (row["method"], split, name)
    s = results["summary"]
    for split in benchmark.SPLITS:
        # the oracle knows the truth: it tells contexts apart and finds their DE genes far
        # better than the control prediction, which calls no DE gene and predicts one cell
        assert (s["oracle"][f"{split}_discrimination"]["mean"]
                > s["observational"][f"{split}_discrimination"]["mean"] + 0.2)
        assert (s["oracle"][f"{split}_de_overlap"]["mean"]
                > s["observational"][f"{split}_de_overlap"]["mean"] + 0.2)
        assert s["oracle"][f"{split}_mae"]["mean"] < s["observational"][f"{split}_mae"]["mean"]
    for label in ("partial MAE", "partial PDS", "partial DES", "full MAE", "full PDS",
                  "full DES"):
        assert f"| {label} |" in md


def test_cell_eval_scores_are_the_metrics_on_the_same_cells():
    from gim_ppl.datasets import synthetic_hill
    from gim_ppl.evaluation import metrics

    bench = synthetic_hill(0, n_vars=4, n_test_perturbations=3, n_test_cells=20)
    observed = bench.split("full_ood")
    pred = baselines.MeanShift().fit(bench.train).predict(observed, key=jax.random.key(0),
                                                          n_cells=30)
    control = bench.train.control_cells()
    got = benchmark._cell_eval_scores("full_ood", pred, observed, control)
    assert got == {
        "full_ood_mae": metrics.mean_absolute_error(pred, observed),
        "full_ood_discrimination": metrics.discrimination_score(pred, observed),
        "full_ood_de_overlap": metrics.de_overlap(pred, observed, control,
                                                  effect=metrics.mean_change),
    }
    assert benchmark.higher_is_better("full_ood_de_overlap")
    assert not benchmark.higher_is_better("full_ood_mae")


def test_best_simple_row_takes_the_largest_discrimination_and_de_overlap():
    rows = [{"method": "mean_shift", "seed": 0, "full_ood_mae": 0.2,
             "full_ood_discrimination": 0.4, "full_ood_de_overlap": 0.7},
            {"method": "ridge", "seed": 0, "full_ood_mae": 0.1,
             "full_ood_discrimination": 0.9, "full_ood_de_overlap": 0.3}]
    (best,) = benchmark.best_simple_rows(rows)
    assert (best["full_ood_mae"], best["full_ood_mae_by"]) == (0.1, "ridge")
    assert (best["full_ood_discrimination"], best["full_ood_discrimination_by"]) == (0.9, "ridge")
    assert (best["full_ood_de_overlap"], best["full_ood_de_overlap_by"]) == (0.7, "mean_shift")
