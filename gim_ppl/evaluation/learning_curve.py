"""Learning curve (`gim-ppl bench curve 20,40,80,160`): how prediction for unseen
perturbations improves with the number of training perturbations.

For every size n and seed, `synthetic_hill(seed, n_train_perturbations=n)` (the test
perturbations are the same 20 new ones at every size: they are drawn after the training
ones from the same features), and every method of the benchmark protocol is fitted and
scored by `run_benchmark`. The summary gives, per method and size, the mean and sd over seeds
of full-OOD W2, mean error (also relative to predicting the control cells of the same seed),
R², unseen-perturbation target AUROC and Brier score.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from gim_ppl.evaluation import report
from gim_ppl.evaluation.protocol import R2_TOP_K, BenchConfig, run_benchmark

#: The reference whose full-OOD mean error the others are divided by (predicts controls).
CONTROL = "observational"
CURVE_METRICS = ("full_ood_wasserstein", "full_ood_mean_error", "full_ood_energy_distance",
                 "full_ood_error_over_control",
                 "full_ood_r2", f"full_ood_r2_top{R2_TOP_K}", "target_auroc_full_ood",
                 "target_brier_full_ood", "partial_ood_wasserstein")


def run_learning_curve(config: BenchConfig, sizes: Sequence[int], *, log=print) -> dict:
    """`run_benchmark` at every number of training perturbations in `sizes` (each >= 2)."""
    sizes = [int(n) for n in sizes]
    if not sizes or min(sizes) < 2:
        raise ValueError(f"sizes must be numbers of training perturbations >= 2, got {sizes}")
    rows = []
    for n in sizes:
        options = {**config.bench_options, "n_train_perturbations": n}
        result = run_benchmark(dataclasses.replace(config, bench_options=options), log=log)
        rows += [{**row, "n_train_perturbations": n} for row in result["rows"]]
    _add_control_ratio(rows)
    return {"config": dataclasses.asdict(config), "sizes": sizes, "rows": rows,
            "summary": curve_summary(rows)}


def _add_control_ratio(rows: list[dict]) -> None:
    control = {(r["seed"], r["n_train_perturbations"]): r["full_ood_mean_error"]
               for r in rows if r["method"] == CONTROL}
    for r in rows:
        ref = control.get((r["seed"], r["n_train_perturbations"]))
        if ref is not None and "full_ood_mean_error" in r:
            r["full_ood_error_over_control"] = r["full_ood_mean_error"] / ref


def curve_summary(rows: Sequence[dict]) -> dict:
    """`{method: {n: {metric: {"mean", "sd", "n"}}}}` over seeds (sd ddof 1; 0 for one)."""
    summary: dict = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        by_size = report.summarise([r for r in rows if r["method"] == method],
                                   by="n_train_perturbations", metrics=CURVE_METRICS)
        summary[method] = {n: {m: stat for m, stat in cell.items() if stat is not None}
                           for n, cell in sorted(by_size.items())}
    return summary


def curve_markdown(summary: dict) -> str:
    """One row per (method, size): the curve metrics as `mean ± sd`, '—' where absent."""
    labels = {"full_ood_wasserstein": "full W2", "full_ood_mean_error": "full mean err",
              "full_ood_energy_distance": "full E-distance",
              "full_ood_error_over_control": "full err / control", "full_ood_r2": "full R²",
              f"full_ood_r2_top{R2_TOP_K}": f"full R² top {R2_TOP_K}",
              "target_auroc_full_ood": "target AUROC unseen",
              "target_brier_full_ood": "target Brier unseen",
              "partial_ood_wasserstein": "partial W2"}
    return report.markdown_table(
        ["method", "training perturbations", *labels.values()],
        ([method, str(n), *(report.format_stat(cell.get(m), always_spread=True)
                            for m in labels)]
         for method, by_size in summary.items() for n, cell in by_size.items()))


def write_learning_curve(results: dict, out_dir, *, provenance: dict) -> tuple[Path, Path]:
    """`learning_curve.json` (every row, the summary, the config and `provenance`: command,
    commit, machine) and `learning_curve.md`."""
    record = {**results, "summary": {m: {str(n): v for n, v in s.items()}
                                     for m, s in results["summary"].items()}}
    cfg = results["config"]
    md = (f"# gim_ppl learning curve\n\nsynthetic_hill, seeds {list(cfg['seeds'])}, training "
          f"perturbations {results['sizes']}; {cfg['steps']} Adam steps at lr "
          f"{cfg['learning_rate']}.\n{report.provenance_line(provenance)}\n\n"
          f"{curve_markdown(results['summary'])}\n")
    return report.write_report(out_dir, "learning_curve", record, md, provenance=provenance)


__all__ = ["CONTROL", "CURVE_METRICS", "curve_markdown", "curve_summary",
           "run_learning_curve", "write_learning_curve"]
