"""`gim-ppl bench --quick` end to end: the JSON it writes has every method and metric, finite
numbers, and the oracle at or below the control prediction on every distance."""

import json
import math

import pytest

from gim_ppl import cli
from gim_ppl.evaluation import benchmark


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    assert cli.main(["bench", "--quick", "--out", str(out), "--no-progress"]) == 0
    return json.loads((out / "results.json").read_text()), (out / "results.md").read_text()


def test_quick_bench_json_structure(quick_results):
    results, _ = quick_results
    assert set(results) >= {"config", "rows", "summary", "machine"}
    assert tuple(results["summary"]) == benchmark.METHODS
    for row in results["rows"]:
        for split in benchmark.SPLITS:
            for name in benchmark.DISTANCES:
                assert math.isfinite(row[f"{split}_{name}"]), (row["method"], split, name)
        assert math.isfinite(row["fit_seconds"])
    for method in ("causal_two_stage", "gim_exact", "gim_relaxed_mc"):
        vals = results["summary"][method]
        for key in ("target_auroc_train", "target_auroc_full_ood", "graph_shd", "graph_auprc",
                    "seconds_per_step"):
            assert math.isfinite(vals[key]["mean"]), (method, key)
        assert 0.0 <= vals["target_auroc_full_ood"]["mean"] <= 1.0


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
    for method in benchmark.METHODS:
        assert f"| {method} |" in md
    assert "Machine:" in md
