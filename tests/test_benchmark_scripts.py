"""Smoke runs of the supported scripts in benchmarks/ (as NumPyro's test_examples does)."""

import argparse
import importlib.util
import json
import sys
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

import gim_ppl
from gim_ppl.core.likelihood import CellModel, sample_cells
from gim_ppl.inference.fitting import MAX_STEPS_ENV

ROOT = Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}",
                                                  ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_oracle_ladder_exact_means_match_sampled_cells():
    ladder = _load("oracle_ladder")
    rng = np.random.default_rng(0)
    d, k, n = 4, 3, 60_000
    w = np.triu(rng.uniform(-1, 1, (d, d)), 1)
    bias, probs, shift = rng.normal(size=d), rng.uniform(0, 1, (k, d)), rng.normal(size=(k, d))
    exact = ladder.mixture_means(bias, w, probs, shift)
    params = {"weights": jnp.asarray(w), "bias": jnp.asarray(bias),
              "noise_scale": jnp.full(d, 0.5)}
    key_t, key_n = jax.random.split(jax.random.key(0))
    ctx = np.repeat(np.arange(k), n)
    targets = jax.random.bernoulli(key_t, jnp.asarray(probs[ctx])).astype(jnp.float32)
    x = sample_cells(CellModel(), params, jax.random.normal(key_n, (k * n, d)), targets,
                     jnp.asarray(shift[ctx]))
    sampled = np.asarray(x).reshape(k, n, d).mean(1)
    np.testing.assert_allclose(sampled, exact, atol=0.05)  # sd of a mean here < 0.01


def test_oracle_ladder_quick_run_writes_its_record(tmp_path):
    ladder = _load("oracle_ladder")
    assert ladder.main(["--quick", "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "oracle_ladder.json").read_text())
    assert {"command", "commit", "machine", "rows"} <= set(record)
    row = record["rows"][0]
    rungs = [name for name, _ in ladder.RUNGS]
    assert all(np.isfinite(row[r]) for r in rungs)
    # the full truth is the floor: exact true means against 100 observed cells per context
    assert row["oracle"] == min(row[r] for r in rungs)
    md = (tmp_path / "oracle_ladder.md").read_text()
    assert "| seed | gim | true targets |" in md and "\n| 0 | " in md and record["commit"] in md


def test_prediction_variants_quick_run_scores_against_the_baselines(tmp_path):
    variants = _load("prediction_variants")
    assert variants.main(["--quick", "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "prediction_variants.json").read_text())
    methods = {r["method"] for r in record["rows"]}
    assert set(variants.SIMPLE) | {"gim[pooled, pi]", "gim[pooled, posterior]"} == methods
    interp = next(r for r in record["rows"] if r["method"] == "dose_interpolation")
    assert "full_ood_mean_error" not in interp  # new drugs: no doses of their own
    md = (tmp_path / "prediction_variants.md").read_text()
    assert "| gim[pooled, posterior] |" in md and "won" in md


def test_prediction_variants_unscaled_restores_the_fan_in_free_priors():
    variants = _load("prediction_variants")
    bench = gim_ppl.datasets.synthetic_hill(0, n_test_perturbations=2)
    p = bench.train.n_features
    value = jnp.ones((p, bench.train.n_vars))
    for variant, scale in (("pooled", 1 / np.sqrt(p)), ("pooled+unscaled", 1.0)):
        model = variants.build(variant, bench.train)
        np.testing.assert_allclose(model.site_priors["emax_weights"].log_prob(value),
                                   dist.Normal(0.0, scale).log_prob(value).sum(), rtol=1e-5)


def test_misspecified_targets_scores_by_hand_and_quick_run(tmp_path):
    mis = _load("misspecified_targets")
    labels = np.array([[True, False], [False, False]] * 30)  # 30 targets, 90 non-targets
    probs = np.where(labels, 0.9, 0.995)
    probs[1::2] = 0.05  # the second row of each pair: non-targets at 0.05
    out = mis.target_scores(labels, probs)
    # bins with >= 50 pairs: 0.05 (60 non-targets, gap 0.05) and 0.9–1 (30 targets at 0.9
    # and 30 non-targets at 0.995: mean prob 0.9475, share 0.5 → gap 0.4475)
    np.testing.assert_allclose(out["reliability"], 0.4475)
    assert out["saturated"] == 30 / 90 and out["recall"] == 1.0
    np.testing.assert_allclose(out["brier"], (30 * 0.01 + 30 * 0.995**2 + 60 * 0.0025) / 120)
    np.testing.assert_allclose(out["auroc"], metrics_auroc(labels, probs))
    assert np.isnan(mis.reliability_gap(labels[:10], probs[:10]))  # no bin holds 50 pairs

    assert mis.main(["--quick", "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "misspecified_targets.json").read_text())
    assert {"command", "commit", "machine", "rows", "summary"} <= set(record)
    assert [r["coarsening"] for r in record["rows"]] == [None, 20.0]
    assert all(0.0 <= r["auroc"] <= 1.0 for r in record["rows"])


def metrics_auroc(labels, probs):
    """AUROC by counting pairs (ties count ½), independent of the package."""
    pos, neg = probs[labels], probs[~labels]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins / (pos.size * neg.size))


def test_target_calls_scores_by_hand_and_quick_run(tmp_path):
    import pandas as pd

    calls = _load("target_calls")

    class Truth:  # two drugs, two genes, g0 → g1 with weight 0.5; drug a targets g0
        drugs, genes, doses = ("a", "b"), ("g0", "g1"), (1.0, 10.0)
        targets = np.array([[True, False], [False, False]])
        emax, ec50, hill = np.full((2, 2), 2.0), np.full((2, 2), 10.0), np.ones((2, 2))
        weights = np.array([[0.0, 0.5], [0.0, 0.0]])

    direct, total = calls.effects_at_top_dose(Truth)
    np.testing.assert_allclose(direct, [[1.0, 0.0], [0.0, 0.0]])  # 2 · 10 / (10 + 10)
    np.testing.assert_allclose(total, [[1.0, 0.5], [0.0, 0.0]])
    # ranked table: (b, g1) first, then the planted (a, g0); called: (b, g1) and (a, g1)
    targets = pd.DataFrame({"perturbation": ["b", "a", "a", "b"],
                            "gene": ["g1", "g0", "g1", "g0"],
                            "posterior_probability": [0.9, 0.4, 0.6, 0.1]})
    by_dose = pd.DataFrame({"perturbation": ["a"] * 4 + ["b"] * 4,
                            "gene": ["g0", "g0", "g1", "g1"] * 2,
                            "posterior_probability": [0.2, 0.9, 0.5, 0.5, 0, 0, 0.4, 0.4]})
    row = calls.score_run(targets, by_dose, Truth, 3, 0.1)
    assert row == {"seed": 3, "min_effect": 0.1, "n_planted": 1, "planted_in_top_n": 0,
                   "planted_in_top_2n": 1, "worst_rank": 2, "called": 2, "planted_called": 0,
                   "called_below_0.1": 2, "called_total_below_0.1": 1,
                   "called_mean_over_doses": 2}
    assert calls.main(["--quick", "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "target_calls.json").read_text())
    assert [r["seed"] for r in record["rows"]] == [0] and record["commit"]
    assert 0 <= record["rows"][0]["planted_called"] <= record["rows"][0]["n_planted"]


def test_minibatches_modes_parse():
    """`--modes` entries: each kind, and the refusals naming the option."""
    mb = _load("minibatches")
    assert mb.parse_mode("full") is None and mb.parse_mode("cells:25") == 25
    assert mb.parse_mode("perturbations:20") == gim_ppl.PerturbationBatches(20)
    for bad in ("cells", "cells:0", "perturbations:x", "full:3", "drugs:2"):
        with pytest.raises(argparse.ArgumentTypeError, match="--modes"):
            mb.parse_mode(bad)


# --- every script's `--quick`: its parser and usage lines, then one run each -----------------

SCRIPTS = tuple(sorted(f.stem for f in (ROOT / "benchmarks").glob("*.py")))


def _usage_lines(name):
    """The argument lists of the `python benchmarks/NAME.py ...` lines of its docstring
    (continuations joined)."""
    import shlex

    doc = (ROOT / "benchmarks" / f"{name}.py").read_text().split('"""')[1]
    doc = doc.replace("\\\n", " ")
    return [shlex.split(line.split(f"benchmarks/{name}.py", 1)[1], comments=True)
            for line in doc.splitlines() if f"python benchmarks/{name}.py" in line]


@pytest.mark.parametrize("name", SCRIPTS)
def test_benchmark_parses_quick_and_its_usage_lines(name, tmp_path):
    script = _load(name)
    assert script.__doc__.splitlines()[0].strip()
    args = script.build_parser().parse_args(["--quick", "--out", str(tmp_path)])
    assert args.quick and args.out == str(tmp_path)
    usages = _usage_lines(name)
    assert any("--quick" in u for u in usages) and any("--quick" not in u for u in usages)
    for usage in usages:
        script.build_parser().parse_args(usage)  # SystemExit on a stale usage line
    assert callable(script.main)


def test_design_loop_report_by_hand_and_from_its_rows_file(tmp_path):
    loop = _load("design_loop")
    rows = []
    for seed, errors in ((0, {"eig": [1.0, 0.8, 0.7], "random": [1.0, 0.9, 0.75]}),
                         (1, {"eig": [1.0, 0.9, 0.85], "random": [1.0, 0.95, 0.8]})):
        for strategy, errs in errors.items():
            rows += [{"seed": seed, "strategy": strategy, "round": i,
                      "full_ood_error_rel": e, "unseen_auroc": 0.5 + 0.1 * i}
                     for i, e in enumerate(errs)]
    rows.append({"seed": 2, "strategy": "eig", "round": 0, "full_ood_error_rel": 1.0,
                 "unseen_auroc": 0.5})  # an incomplete run: left out
    table = loop.report(rows, tmp_path / "f.png", rounds=3)
    assert "| eig | 0,1 | 1.000 | 0.775 |" in table  # rounds 0 and 2, mean over seeds 0, 1
    # random's error after round 2: 0.75 (seed 0), 0.8 (seed 1); eig reaches 0.75 at round
    # 2 on seed 0 (0.7) and never 0.8 on seed 1 (0.85 at best)
    assert "| eig | 2 | > 2 |" in table and "| random | 2 | 2 |" in table
    assert (tmp_path / "f.png").stat().st_size > 0
    out = tmp_path / "out"
    out.mkdir()
    (out / "design_loop.jsonl").write_text(
        "\n".join(json.dumps(r) for r in rows if r["seed"] == 0) + "\n")
    # --report on a file of 3-round runs: ROUNDS is 11, so no run is complete there
    assert loop.main(["--report", "--out", str(out)]) == 0
    record = json.loads((out / "design_loop.json").read_text())
    assert {"command", "commit", "machine"} <= set(record)
    assert record["command"] == f"python benchmarks/design_loop.py --report --out {out}"


def test_benchmark_units_by_hand():
    from tests._problems import small_data

    bins = _load("autonormal_intervals").reliability_bins(
        np.array([[1, 0], [0, 1]]), np.array([[0.95, 0.05], [0.12, 1.0]]))
    assert bins["count"] == [1, 1] + [0] * 7 + [2]
    np.testing.assert_allclose(bins["sum_p"][9], 1.95)
    assert bins["sum_y"][9] == 2.0 and bins["sum_y"][0] == 0.0

    restarts = _load("restart_selection").summary_rows(
        [{"seed": 1, "key": 0, "selected": 2, "auroc": [0.9, 0.7, 0.8], "secs": 3.0,
          "err_full_ood": [1.0, 2.0, 3.0], "ctrl_err_full_ood": 2.5}, {"error": "x"}])
    assert restarts == [{"seed": 1, "key": 0, "selected": 2, "auroc_selected": 0.8,
                         "auroc_restart_0": 0.9, "auroc_best": 0.9,
                         "err_full_ood_selected": 3.0, "ctrl_err_full_ood": 2.5,
                         "secs": 3.0}]

    data = small_data(0)  # 3 perturbations × 2 doses and a control context; d = 3, p = 2
    values = _load("fit_start").start_values("zerohead+ctrl", data)
    control = np.asarray(data.x)[np.asarray(data.context) == 0]
    np.testing.assert_allclose(values["bias"], control.mean(0), rtol=1e-6)
    assert values["target_weights"].shape == (2, 3) and "weights" not in values
    assert _load("fit_start").start_values("median", data) == {}

    wide = _load("intercept_drift").with_indicators(data, 3)
    np.testing.assert_array_equal(np.asarray(wide.features)[:, 2:],
                                  [[0, 0, 0], [1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 1, 0],
                                   [0, 0, 1], [0, 0, 1]])

    heads = _load("head_priors")
    model = heads.build_model("pooled_scaled_hill", data)
    value = jnp.ones((2, 3))
    # Normal(0, 1/√p) given, divided by √p again by the model's per-unit-of-output scaling
    np.testing.assert_allclose(model.site_priors["emax_weights"].log_prob(value),
                               dist.Normal(0.0, 1 / 2).log_prob(value).sum(), rtol=1e-5)
    assert len(model.pooled) == 3 and heads.build_model("base", data).pooled is None


# --- each script's `--quick` run, checked through the record it writes ----------------------
# A tiny problem each: a run's seconds are mostly compiling its fit. Grouped in classes
# because pytest-xdist's `--dist loadscope` sends each class to one worker, so the runs spread
# over CI's workers instead of queueing behind one module (each class: 1-3 CPU minutes).


def numbers(value, skip=()) -> list:
    """Every int and float inside `value` (nested dicts and lists; bools and the keys in `skip`
    left out)."""
    if isinstance(value, dict):
        return [n for k, v in value.items() if k not in skip for n in numbers(v, skip)]
    if isinstance(value, list | tuple):
        return [n for v in value for n in numbers(v, skip)]
    return [value] if isinstance(value, int | float) and not isinstance(value, bool) else []


def quick_record(name, tmp_path, stem=None, extra=()) -> dict:
    """`python benchmarks/NAME.py --quick [extra] --out tmp_path` exits 0 and writes its
    record STEM.json (command, commit, machine) and STEM.md (the command and commit above the
    table); the record."""
    argv = ["--quick", *extra, "--out", str(tmp_path)]
    assert _load(name).main(argv) == 0
    record = json.loads((tmp_path / f"{stem or name}.json").read_text())
    assert {"command", "commit", "machine"} <= set(record)
    assert record["command"] == f"python benchmarks/{name}.py " + " ".join(argv)
    md = (tmp_path / f"{stem or name}.md").read_text()
    assert f"`{record['command']}`" in md and record["commit"] in md and "\n| " in md
    return record


def finite_rows(record, n_rows, skip=()) -> list[dict]:
    """The record's `n_rows` rows, every number in them finite."""
    rows = record["rows"]
    assert len(rows) == n_rows and all("error" not in r for r in rows)
    values = numbers(rows, skip)
    assert values and np.isfinite(values).all(), rows
    return rows


class TestQuickSVIFits:
    """The scripts that fit the GIM by SVI and score it."""

    def test_fit_variants_quick(self, tmp_path):
        rows = finite_rows(quick_record("fit_variants", tmp_path), 1)
        assert (rows[0]["variant"], rows[0]["seed"], rows[0]["key"]) == ("fit", 0, 0)
        assert 0.0 <= rows[0]["target_auroc_train_posterior"] <= 1.0

    def test_restart_selection_quick(self, tmp_path):
        rows = finite_rows(quick_record("restart_selection", tmp_path), 1)
        assert rows[0]["R"] == 2 and len(rows[0]["auroc"]) == len(rows[0]["scores"]) == 2
        assert rows[0]["selected"] in (0, 1)

    def test_fit_start_quick(self, tmp_path):
        rows = finite_rows(quick_record("fit_start", tmp_path), 1)
        assert rows[0]["variant"] == "zerohead+ctrl+dataw"

    def test_intercept_drift_quick(self, tmp_path):
        rows = finite_rows(quick_record("intercept_drift", tmp_path,
                                        "intercept_drift_seed0_key0"), 1)
        assert len(rows[0]["intercepts_fit"]) == len(rows[0]["intercepts_truth"])

    def test_head_priors_quick(self, tmp_path):
        rows = finite_rows(quick_record("head_priors", tmp_path), 1)
        assert rows[0]["variant"] == "pooled_scaled"

    def test_intervention_maps_quick(self, tmp_path):
        rows = finite_rows(quick_record("intervention_maps", tmp_path,
                                        "intervention_maps_noise2"), 1)
        assert (rows[0]["variant"], rows[0]["noise"]) == ("ard", 2)

    def test_map_timing_quick(self, tmp_path, monkeypatch):
        from gim_ppl.evaluation import perf

        # two maps, as in tests/test_perf.py: the GP and horseshoe maps' steps have their own
        # tests (test_intervention_maps) and cost ~40 s of compiling here
        monkeypatch.setattr(perf, "MAP_VARIANTS", perf.MAP_VARIANTS[:2])
        rows = finite_rows(quick_record("map_timing", tmp_path), 2)
        assert [r["map"] for r in rows] == ["linear", "linear+ard"]
        assert all(r["n_perturbations"] == 4 and r["seconds_per_step"] > 0 for r in rows)
        assert rows[0]["ratio_to_linear"] == 1.0


class TestQuickUncertainty:
    """The scripts about posteriors, intervals and calibration."""

    def test_autonormal_intervals_quick(self, tmp_path):
        row = finite_rows(quick_record("autonormal_intervals", tmp_path), 1)[0]
        assert 0.0 <= row["coverage90"] <= 1.0 and row["interval_width"] > 0
        assert sum(row["bins_map"]["count"]) == sum(row["bins_autonormal"]["count"]) > 0

    def test_intervals_quick(self, tmp_path):
        row = finite_rows(quick_record("intervals", tmp_path), 1, skip=("tau2",))[0]
        assert all(0.0 <= v <= 1.0 for k, v in row.items() if k.endswith("_coverage"))

    def test_calibration_quick(self, tmp_path):
        record = quick_record("calibration", tmp_path)
        row = finite_rows(record, 1)[0]
        assert record["sims"] == 4 and set(row["p_values"]) == set(row["control_p_values"])
        assert all(0.0 <= p <= 1.0 for p in row["p_values"].values())

    def test_sbc_nuts_quick(self, tmp_path):
        record = quick_record("sbc_nuts", tmp_path)
        assert record["n_sims"] == 4 and len(record["ranks"]) == 4
        assert np.isfinite(numbers(record, skip=("ranks",))).all()
        assert all(0.0 <= p <= 1.0 for p in record["p_values"].values())
        assert (tmp_path / "sbc_ecdf.png").stat().st_size > 0


class TestQuickNUTS:
    """The NUTS scripts: a few draws of two chains, enough to reach every line."""

    def test_nuts_acyclicity_quick(self, tmp_path):
        # R-hat of 2 × 5 draws may be infinite (a chain that never moved), never NaN
        rows = finite_rows(quick_record("nuts_acyclicity", tmp_path,
                                        "nuts_acyclicity_d3_2x5"), 1, skip=("max_r_hat",))
        assert rows[0]["variant"] == "notears" and rows[0]["max_r_hat"] >= 1.0

    def test_nuts_modes_quick(self, tmp_path):
        rhats = ("max_rhat", "max_rhat_not_weights")  # of 2 × 10 draws: may be infinite
        rows = finite_rows(quick_record("nuts_modes", tmp_path), 2, skip=rhats)
        assert [r["start"] for r in rows] == ["data_start", "one_map"]
        assert all(r[k] >= 1.0 for r in rows for k in rhats)
        weights = [m["weight"] for m in rows[0]["modes"]]
        np.testing.assert_allclose(sum(weights), 1.0, rtol=1e-5)


class TestQuickDesign:
    """Experimental design and minibatches."""

    def test_eig_estimator_quick(self, tmp_path):
        record = quick_record("eig_estimator", tmp_path, "eig_estimator_seed0")
        rows = finite_rows(record, 1)
        assert rows[0]["about"] == "targets" and rows[0]["n_candidates"] == 4
        assert [r["scm"] for r in record["inner_ess"]] == ["draws", "median"]
        assert np.isfinite(numbers(record["inner_ess"])).all()

    def test_design_loop_quick(self, tmp_path):
        record = quick_record("design_loop", tmp_path)
        rows = [json.loads(line) for line in (tmp_path / record["rows_file"]).open()]
        assert [(r["strategy"], r["round"]) for r in rows] == [("random", 0), ("random", 1)]
        assert np.isfinite([r["full_ood_error_rel"] for r in rows]).all()
        assert (tmp_path / "design_loop.png").stat().st_size > 0

    def test_minibatches_quick(self, tmp_path):
        record = quick_record("minibatches", tmp_path)
        rows = finite_rows(record, len(record["modes"]), skip=("message",))
        assert [r["mode"] for r in rows] == record["modes"]


class TestQuickScaleAndREADME:
    """Scale's parts and the README's numbers."""

    def test_scale_quick(self, tmp_path):
        """Every part: both paths of a step, the demo fits, restarts, a sci-Plex-shaped fit."""
        record = quick_record("scale", tmp_path)
        parts = [record[p] for p in ("step", "demo", "restarts", "sciplex")]
        assert np.isfinite(numbers(parts, skip=("message",))).all()
        assert [r["n_cells"] for r in record["step"]] == [2_000]
        assert all(r["moments_ms"] > 0 and r["cells_ms"] > 0 and r["floor_ms"] > 0
                   for r in record["step"])
        assert [r["path"] for r in record["demo"]] == ["moments", "cells",
                                                        "cells, rows permuted"]
        assert [r["restarts"] for r in record["restarts"]] == [1, 8]
        assert record["restarts"][0]["ratio_to_one"] == 1.0
        assert record["sciplex"]["fit_seconds"] > 0
        md = (tmp_path / "scale.md").read_text()
        assert "| from moments (ms) |" in md and "| restarts | ms per step |" in md

    def test_readme_numbers_quick(self, tmp_path, capsys):
        """Every command at a tiny size (the demo at 20 steps, its exact marginal); every
        number of the README's demo table (its exact column), of the sentences citing it and
        of the other sources is read from the commands' output (none need agree); the
        comparison is written with the command, commit and machine."""
        out = tmp_path / "readme_numbers.json"
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=MAX_STEPS_ENV)
            assert _load("readme_numbers").main(["--quick", "--out", str(out)]) == 0
        printed = capsys.readouterr().out
        demo_rows = [line for line in printed.splitlines() if line.startswith("| demo")]
        exact = [line for line in demo_rows if "[exact]" in line]
        assert len(demo_rows) == 20 and len(exact) == 10
        assert not any("| None |" in line for line in exact)
        assert "| snippet on seed 0 (demo, exact, posterior) | demo | 0.984 | 0." in printed
        record = json.loads(out.read_text())
        assert {"command", "commit", "machine", "rows"} <= set(record)
        assert record["command"] == f"python benchmarks/readme_numbers.py --quick --out {out}"
        rows = [r for r in record["rows"] if not r["claim"].endswith("[relaxed_mc]")]
        assert {r["source"] for r in rows} == {"demo", "prediction_variants", "sachs"}
        assert all(r["value"] is not None for r in rows)
        assert np.isfinite([r["value"] for r in rows if not isinstance(r["value"], str)]).all()


def test_every_script_has_a_quick_run():
    runs = {name.removeprefix("test_").split("_quick")[0]
            for cls in (TestQuickSVIFits, TestQuickUncertainty, TestQuickNUTS, TestQuickDesign,
                        TestQuickScaleAndREADME) for name in vars(cls) if "_quick" in name}
    runs |= {"oracle_ladder", "prediction_variants", "misspecified_targets", "target_calls"}
    assert runs == set(SCRIPTS)
