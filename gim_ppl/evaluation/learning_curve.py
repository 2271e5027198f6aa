"""Learning curve (`gim-ppl bench --learning-curve 20,40,80,160`): how prediction for unseen
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
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

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
    out: dict = {}
    for r in rows:
        out.setdefault(r["method"], {}).setdefault(r["n_train_perturbations"], []).append(r)
    summary: dict = {}
    for method, by_size in out.items():
        summary[method] = {}
        for n, mine in sorted(by_size.items()):
            cell = {}
            for metric in CURVE_METRICS:
                vals = np.array([r[metric] for r in mine if metric in r], float)
                if vals.size:
                    sd = float(vals.std(ddof=1)) if vals.size > 1 else 0.0
                    cell[metric] = {"mean": float(vals.mean()), "sd": sd, "n": int(vals.size)}
            summary[method][n] = cell
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
    lines = ["| method | training perturbations | " + " | ".join(labels.values()) + " |",
             "|---" * (len(labels) + 2) + "|"]
    for method, by_size in summary.items():
        for n, cell in by_size.items():
            vals = [f"{cell[m]['mean']:.3f} ± {cell[m]['sd']:.3f}" if m in cell else "—"
                    for m in labels]
            lines.append(f"| {method} | {n} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def write_learning_curve(results: dict, out_dir, *, machine: str) -> tuple[Path, Path]:
    """`learning_curve.json` (every row, the summary, the config, the machine) and `.md`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload = {**results, "machine": machine,
               "summary": {m: {str(n): v for n, v in s.items()}
                           for m, s in results["summary"].items()}}
    json_path, md_path = out / "learning_curve.json", out / "learning_curve.md"
    json_path.write_text(json.dumps(payload, indent=2))
    cfg = results["config"]
    md_path.write_text(
        f"# gim_ppl learning curve\n\nsynthetic_hill, seeds {list(cfg['seeds'])}, training "
        f"perturbations {results['sizes']}; {cfg['steps']} Adam steps at lr "
        f"{cfg['learning_rate']}.\nMachine: {machine}.\n\n{curve_markdown(results['summary'])}\n")
    return json_path, md_path


__all__ = ["CONTROL", "CURVE_METRICS", "curve_markdown", "curve_summary",
           "run_learning_curve", "write_learning_curve"]
