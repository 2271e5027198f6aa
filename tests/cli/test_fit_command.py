"""`gim-ppl fit` end to end on a toy screen in the sci-Plex3 schema, and its input errors."""

import argparse
import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gim_ppl.cli import main
from gim_ppl.core.graph import is_dag
from gim_ppl.datasets import toy_screen

GENES = [f"G{j:02d}" for j in range(12)]


@pytest.fixture(scope="module")
def h5ad(tmp_path_factory):
    adata, truth = toy_screen(0)
    path = tmp_path_factory.mktemp("screen") / "toy_sciplex3.h5ad"
    adata.write_h5ad(path)
    return path, adata, truth


@pytest.fixture(scope="module")
def fitted(h5ad, tmp_path_factory):
    path, _, _ = h5ad
    out = tmp_path_factory.mktemp("fit") / "out"
    rc = main([
        "fit", "--h5ad", str(path), "--perturbation-key", "product_name", "--dose-key", "dose",
        "--control", "vehicle", "--smiles-key", "SMILES", "--cell-type", "A549",
        "--genes", ",".join(GENES), "--steps", "3000", "--out", str(out), "--no-progress",
    ])
    assert rc == 0
    return out


def test_writes_graph_targets_and_hill_tables(fitted, h5ad):
    _, _, truth = h5ad
    edges = pd.read_csv(fitted / "graph.csv")
    assert list(edges.columns) == ["source", "target", "weight"]
    assert set(edges["source"]) | set(edges["target"]) <= set(GENES)
    assert (edges["weight"].abs() > 0.3).all()
    adj = np.zeros((12, 12), dtype=bool)
    adj[[GENES.index(s) for s in edges["source"]], [GENES.index(t) for t in edges["target"]]] = 1
    assert is_dag(adj)

    targets = pd.read_csv(fitted / "targets.csv")
    assert list(targets.columns) == ["perturbation", "gene", "target_probability",
                                     "posterior_probability", "effect", "observed_effect",
                                     "observed_effect_se", "score"]
    assert len(targets) == 10 * 12 and set(targets["perturbation"]) == set(truth.drugs)
    assert targets["target_probability"].between(0, 1).all()
    assert targets["posterior_probability"].between(0, 1).all()  # every drug has train cells
    # ranked: likely, large targets first
    assert targets["score"].is_monotonic_decreasing
    by_dose = pd.read_csv(fitted / "targets_by_dose.csv")
    assert list(by_dose.columns) == ["perturbation", "context", "dose", "dose_unit", "gene",
                                     "posterior_probability", "effect", "observed_effect",
                                     "observed_effect_se"]
    assert set(by_dose["dose_unit"]) == {"nM"} and by_dose["dose"].max() <= 10000.0

    hill = pd.read_csv(fitted / "hill.csv")
    assert list(hill.columns) == [
        "perturbation", "gene", "target_probability", "posterior_probability", "effect",
        "observed_effect", "observed_effect_se", "score", "emax_log1p_expr", "ec50_nM", "hill",
        "lowest_tested_dose_nM", "highest_tested_dose_nM", "degenerate", "degenerate_reason"]
    assert len(hill) == 120 and (hill["ec50_nM"] > 0).all()
    # EC50 is reported in nM: typical values lie within the screen's dose range (10 nM–10 µM
    # give the model 1e-2–10), not in the model's µM units
    assert 1.0 < hill["ec50_nM"].median() < 1e5
    assert set(hill["lowest_tested_dose_nM"]) == {10.0}
    assert set(hill["highest_tested_dose_nM"]) == {10000.0}
    # each drug's rows, most likely large target first; the flag follows the documented rule
    for _, rows in hill.groupby("perturbation", sort=False):
        assert rows["score"].is_monotonic_decreasing
    rule = (hill["hill"] < 0.2) | (hill["ec50_nM"] < 10.0) | (hill["ec50_nM"] > 10000.0)
    assert (hill["degenerate"] == rule).all()
    assert set(hill.loc[~rule, "degenerate_reason"].fillna("")) == {""}
    # numbers with 4 significant digits
    text = (fitted / "hill.csv").read_text().splitlines()[1:]
    numbers = [float(v) for line in text for v in line.split(",")[2:13] if v]
    assert numbers and all(v == float(f"{v:.4g}") for v in numbers)
    assert ",10.0,10000.0," in text[0]  # tested doses written plainly


def test_writes_predictions_and_metrics_of_the_held_out_doses(fitted, h5ad):
    import anndata

    _, adata, _ = h5ad
    pred = anndata.read_h5ad(fitted / "predictions.h5ad")
    assert list(pred.var_names) == GENES and pred.n_obs == 10 * 200
    assert set(pred.obs["dose"]) == {10000.0} and pred.uns["dose_unit"] == "nM"
    assert set(pred.obs["context"]) == {f"{d}@10000nM" for d in pred.obs["product_name"]}
    assert pred.uns["preprocessing"]["detected"] == "raw counts"
    assert "log1p of counts per 10000" in pred.uns["description"]

    scores = json.loads((fitted / "metrics.json").read_text())
    assert len(scores["per_context"]) == 10
    assert all(r["n_observed_cells"] == 12 for r in scores["per_context"])
    assert scores["mean_error"] < scores["mean_error_control"]
    # the simple baselines beside it; held-out doses of measured drugs: interpolation too
    simple = ("mean_shift", "mean_shift_dose", "ridge", "nearest_neighbour",
              "dose_interpolation")
    assert all(np.isfinite(scores[f"mean_error_{name}"]) for name in simple)
    assert scores["best_simple_baseline"] == min(simple,
                                                 key=lambda n: scores[f"mean_error_{n}"])
    # recompute the per-context error from the files, independently of gim_ppl: observed
    # cells are the A549 cells at 10 µM, log1p-normalised here
    obs = adata.obs
    counts = adata.X.toarray()
    logged = np.log1p(counts / counts.sum(1, keepdims=True) * 1e4)[:, :12]
    for row in scores["per_context"]:
        drug = row["context"].split("@")[0]
        cells = ((obs["product_name"] == drug) & (obs["dose"] == 10000.0)
                 & (obs["cell_type"] == "A549")).to_numpy()
        predicted = pred.X[(pred.obs["context"] == row["context"]).to_numpy()]
        err = np.linalg.norm(predicted.mean(0) - logged[cells].mean(0))
        assert err == pytest.approx(row["mean_error"], rel=1e-4, abs=1e-4)
        assert np.abs(predicted.mean(0) - logged[cells].mean(0)).mean() == pytest.approx(
            row["mae"], rel=1e-4, abs=1e-5)


def test_metrics_carry_cell_eval_scores_of_the_same_cells(fitted, h5ad):
    import anndata

    import gim_ppl
    from gim_ppl.evaluation import metrics

    _, adata, _ = h5ad
    scores = json.loads((fitted / "metrics.json").read_text())
    simple = ("mean_shift", "mean_shift_dose", "ridge", "nearest_neighbour",
              "dose_interpolation")
    for metric in ("mae", "discrimination_score", "de_overlap"):
        for key in (metric, f"{metric}_control", *(f"{metric}_{name}" for name in simple)):
            assert np.isfinite(scores[key]), key
        assert scores[metric] == pytest.approx(
            np.mean([r[metric] for r in scores["per_context"]]))
    assert 0 <= scores["de_overlap"] <= 1 and 0 < scores["discrimination_score"] <= 1
    # the log1p cells are ranked as cell-eval ranks them
    assert scores["de_genes_ranked_by"] == "log2_fold_change"
    # the GIM beats predicting the control cells on every cell-eval metric of the toy screen
    assert scores["mae"] < scores["mae_control"]
    assert scores["discrimination_score"] > scores["discrimination_score_control"]
    assert scores["de_overlap"] > scores["de_overlap_control"]

    # recompute from the files: predicted cells against the held-out A549 cells at 10 µM and
    # the vehicle cells of the training split, log1p-normalised here
    pred = anndata.read_h5ad(fitted / "predictions.h5ad")
    obs, counts = adata.obs, adata.X.toarray()
    logged = np.log1p(counts / counts.sum(1, keepdims=True) * 1e4)[:, :12]
    a549 = (obs["cell_type"] == "A549").to_numpy()
    control = logged[a549 & obs["vehicle"].to_numpy(bool)]
    names = [r["context"] for r in scores["per_context"]]
    observed, predicted = [], []
    for name in names:
        drug = name.split("@")[0]
        observed.append(logged[a549 & ((obs["product_name"] == drug)
                                       & (obs["dose"] == 10000.0)).to_numpy()])
        predicted.append(pred.X[(pred.obs["context"] == name).to_numpy()])

    def as_data(groups):
        k = len(groups)
        return gim_ppl.PerturbationData.from_arrays(
            np.concatenate(groups), np.repeat(np.arange(k), [len(g) for g in groups]),
            features=np.ones((k, 1)), dose=np.ones(k), observational=np.zeros(k, bool))

    p, o = as_data(predicted), as_data(observed)
    np.testing.assert_allclose([r["discrimination_score"] for r in scores["per_context"]],
                               metrics.discrimination_score(p, o, per_context=True))
    np.testing.assert_allclose([r["de_overlap"] for r in scores["per_context"]],
                               metrics.de_overlap(p, o, control, per_context=True))
    assert [r["n_observed_de_genes"] for r in scores["per_context"]] == [
        metrics.de_genes(x, control).size for x in observed]


def test_writes_figures_and_run_summary(fitted):
    from matplotlib.image import imread

    for name in ("dose_response.png", "target_heatmap.png"):
        image = imread(fitted / "figures" / name)
        assert image.ndim == 3 and min(image.shape[:2]) > 100
    run = json.loads((fitted / "run.json").read_text())
    assert run["genes"] == GENES and run["dose_scale"] == {"unit": "nM", "reference": 1000.0,
                                                           "log": False}
    assert len(run["heldout_contexts"]) == 10 and run["fit_message"] == ""
    assert run["coarsening"] is None and run["sources"] is None and run["forbid"] is None
    assert run["features_standardised"] is False  # SMILES features: PCA-whitened instead
    assert run["preprocessing"]["detected"] == "raw counts"
    assert run["preprocessing"]["normalized"] and run["preprocessing"]["normalize"] == "auto"
    assert run["expression_unit"] == "log1p expr." and "Hill coefficient" in \
        run["hill_degenerate_rule"]
    # nothing but the results: no temporary folder beside --out
    assert [p.name for p in fitted.parent.iterdir()] == ["out"]


def _nothing_left(parent, *keep):
    """The folder holds only `keep`: no --out, no temporary `.out.partial-…` folder."""
    return sorted(p.name for p in parent.iterdir()) == sorted(keep)


def _one_line_error(capsys, *pieces):
    """stderr ends in one error line holding every piece (notes may come first), with no
    traceback."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if ": error: " in line]
    assert len(errors) == 1 and errors[0] == lines[-1], err  # notes may come before it
    assert lines[-1].startswith("gim-ppl") and "Traceback" not in err
    assert all(line.startswith("note: ") for line in lines[:-1]), err
    for piece in pieces:
        assert re.search(piece, lines[-1]), (piece, err)
    return lines[-1]


@pytest.mark.parametrize("flags, message", [
    (["--preset", "sciplex3", "--dose-key", "concentration"],
     r"--dose-key 'concentration' is not an obs column; obs has \['product_name', 'dose'"),
    (["--preset", "sciplex3", "--control", "DMSO"],
     r"--control 'DMSO' is neither an obs column nor a value of obs\['product_name'\]"),
    (["--preset", "sciplex3", "--cell-type-key", "cell_line"],
     r"--cell-type-key 'cell_line' is not an obs column; obs has \['product_name'"),
    (["--preset", "sciplex3", "--cell-type", "HeLa"],
     r"--cell-type 'HeLa' matches no cell; obs\['cell_type'\] holds \['A549', 'MCF7'\]"),
    (["--preset", "sciplex3", "--genes", "G00,NOPE"],
     r"genes not found in adata.var_names: \['NOPE'\]"),
    (["--dose-key", "dose", "--control", "vehicle"],
     r"gim-ppl fit needs --perturbation-key \(or --preset sciplex3\)"),
    (["--preset", "sciplex3", "--holdout-dose", "JQ1@50"],
     r"'JQ1' has no context at dose 50.0 nM; its doses: \[10.0, 100.0, 1000.0, 10000.0\] nM"),
    (["--preset", "sciplex3", "--holdout-dose", "JQ1"],
     r"--holdout-dose expects DRUG@DOSE items such as JQ1@10000, got 'JQ1'"),
    (["--preset", "sciplex3", "--genes", "G00,G01,G02", "--sources", "G1"],
     r"--sources unknown variable 'G1' \(closest: 'G01'\)"),
    (["--preset", "sciplex3", "--genes", "G00,G01,G02", "--forbid", "G00-G01"],
     r"--forbid expects PARENT>CHILD items such as ACTB>GAPDH, got 'G00-G01'"),
])
def test_bad_input_is_reported_without_fitting(h5ad, tmp_path, capsys, flags, message):
    path, _, _ = h5ad
    rc = main(["fit", "--h5ad", str(path), "--out", str(tmp_path / "out"), *flags])
    assert rc == 2
    _one_line_error(capsys, "^gim-ppl fit: error: ", message)
    assert _nothing_left(tmp_path)


def test_missing_file_and_drug_without_smiles(h5ad, tmp_path, capsys):
    _, adata, _ = h5ad
    assert main(["fit", "--h5ad", str(tmp_path / "nope.h5ad"), "--preset", "sciplex3",
                 "--out", str(tmp_path / "o")]) == 2
    _one_line_error(capsys, "no such file")
    bad = adata.copy()
    smiles = bad.obs["SMILES"].to_numpy().copy()
    smiles[bad.obs["product_name"].to_numpy() == "Imatinib"] = ""
    bad.obs["SMILES"] = smiles
    bad_path = tmp_path / "bad.h5ad"
    bad.write_h5ad(bad_path)
    assert main(["fit", "--h5ad", str(bad_path), "--preset", "sciplex3",
                 "--out", str(tmp_path / "o")]) == 2
    _one_line_error(capsys, r"has no SMILES for the drugs \['Imatinib'\]")
    assert _nothing_left(tmp_path, "bad.h5ad")


# --- item 3: files that are not AnnData, and --debug ----------------------------------------


@pytest.mark.parametrize("content, message", [
    (b"", r"is empty \(0 bytes\); give an AnnData file written by anndata or scanpy"),
    (b"# gim_ppl\n\nGenerative Intervention Models\n",
     r"is not an .h5ad \(HDF5\) file: it starts with '# gim_ppl'; give an AnnData file"),
    (b"cell,gene,count\nc1,G00,3\n",
     r"is not an .h5ad \(HDF5\) file: it starts with 'cell,gene,count'"),
])
def test_files_that_are_not_anndata_end_in_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "screen.h5ad"
    path.write_bytes(content)
    rc = main(["fit", "--h5ad", str(path), "--preset", "sciplex3", "--out",
               str(tmp_path / "out")])
    assert rc == 2
    _one_line_error(capsys, rf"--h5ad {re.escape(str(path))} {message}")
    assert _nothing_left(tmp_path, "screen.h5ad")


def test_hdf5_that_is_not_anndata_a_folder_and_no_cells(h5ad, tmp_path, capsys):
    import h5py

    _, adata, _ = h5ad
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as fh:
        fh["numbers"] = np.arange(3)
    assert main(["fit", "--h5ad", str(foreign), "--preset", "sciplex3", "--out",
                 str(tmp_path / "out")]) == 2
    _one_line_error(capsys, r"is HDF5 but not readable as AnnData")
    assert main(["fit", "--h5ad", str(tmp_path), "--preset", "sciplex3", "--out",
                 str(tmp_path / "out")]) == 2
    _one_line_error(capsys, r"is a folder; give an .h5ad file")
    empty = tmp_path / "empty.h5ad"
    adata[:0].copy().write_h5ad(empty)
    assert main(["fit", "--h5ad", str(empty), "--preset", "sciplex3", "--out",
                 str(tmp_path / "out")]) == 2
    _one_line_error(capsys, r"holds no cells \(0 rows\); nothing to fit")
    assert _nothing_left(tmp_path, "foreign.h5", "empty.h5ad")


def test_debug_shows_the_traceback(tmp_path):
    path = tmp_path / "screen.h5ad"
    path.write_bytes(b"")
    with pytest.raises(Exception, match=r"is empty \(0 bytes\)"):
        main(["fit", "--h5ad", str(path), "--preset", "sciplex3", "--out",
              str(tmp_path / "out"), "--debug"])
    assert _nothing_left(tmp_path, "screen.h5ad")


@pytest.mark.parametrize("flag, value, message", [
    ("--steps", "0", r"argument --steps: expected a whole number ≥ 1, got '0'"),
    ("--steps", "1.5", r"argument --steps: expected a whole number ≥ 1, got '1.5'"),
    ("--n-pred-cells", "0", r"argument --n-pred-cells: expected a whole number ≥ 1, got '0'"),
    ("--n-top-genes", "ten", r"argument --n-top-genes: expected a whole number ≥ 1"),
    ("--learning-rate", "-0.001", r"argument --learning-rate: expected a number > 0"),
    ("--learning-rate", "0", r"argument --learning-rate: expected a number > 0"),
    ("--target-sparsity", "nan", r"argument --target-sparsity: expected a number ≥ 0"),
    ("--normalize", "maybe", r"argument --normalize: invalid choice: 'maybe'"),
])
def test_bad_numbers_are_rejected_before_anything_runs(h5ad, tmp_path, capsys, flag, value,
                                                       message):
    path, _, _ = h5ad
    rc = main(["fit", "--h5ad", str(path), "--preset", "sciplex3", "--out",
               str(tmp_path / "out"), flag, value])
    assert rc == 2
    _one_line_error(capsys, r"^gim-ppl fit: error: " + message, r"\(see gim-ppl fit --help\)$")
    assert _nothing_left(tmp_path)


def test_a_missing_extra_is_named_before_the_fit(h5ad, tmp_path, capsys, monkeypatch):
    import sys

    path, _, _ = h5ad
    monkeypatch.setitem(sys.modules, "ott", None)  # ott-jax not installed
    assert main(["fit", "--h5ad", str(path), "--preset", "sciplex3", "--out",
                 str(tmp_path / "out")]) == 2
    _one_line_error(capsys, r'ott is needed for this feature: pip install "gim_ppl\[bench\]" '
                            r"\(it scores the held-out contexts; with --holdout none")
    assert _nothing_left(tmp_path)


def test_cell_eval_without_its_extra_is_named_before_the_fit(h5ad, tmp_path, capsys,
                                                             monkeypatch):
    import sys

    path, _, _ = h5ad
    monkeypatch.setitem(sys.modules, "cell_eval", None)  # cell-eval not installed
    assert main(["fit", "--h5ad", str(path), "--preset", "sciplex3", "--cell-eval", "--out",
                 str(tmp_path / "out")]) == 2
    _one_line_error(capsys, r'cell_eval is needed for this feature: pip install '
                            r'"gim_ppl\[celleval\]" \(--cell-eval scores the held-out contexts')
    assert _nothing_left(tmp_path)


# --- issue 27 item 8: a one-line error before the heavy imports -----------------------------


HEAVY = ("jax", "numpyro", "optax", "anndata", "pandas", "scanpy", "rdkit", "matplotlib")


@pytest.mark.parametrize("argv, message", [
    (None, None),  # `import gim_ppl` alone
    (["fit", "--h5ad", "{tmp}/screen.h5ad", "--preset", "sciplex3", "--out", "{tmp}/out",
      "--steps", "0"], r"argument --steps: expected a whole number ≥ 1"),
    (["fit", "--h5ad", "{tmp}/screen.h5ad", "--perturbation-key", "drug", "--dose-key",
      "dose", "--control", "vehicle", "--out", "{tmp}/out"], r"--h5ad .*: no such file"),
    (["fit", "--h5ad", "{tmp}/screen.h5ad", "--preset", "sciplex3", "--out", "{tmp}/out"],
     r"--h5ad .*: no such file"),
    (["design", "--h5ad", "{tmp}/screen.h5ad", "--preset", "sciplex3", "--candidates",
      "{tmp}/candidates.csv", "--out", "{tmp}/ranking.csv"], r"--candidates .*: no such file"),
])
def test_argument_errors_come_before_jax_and_the_extras_load(tmp_path, argv, message):
    """A mistyped flag or path is reported before jax, numpyro, optax or an extra is imported
    (they take seconds to load), and `import gim_ppl` imports none of them."""
    import subprocess
    import sys

    code = "import sys\nimport gim_ppl\n"
    if argv is not None:
        argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
        code += f"from gim_ppl.cli import main\nassert main({argv!r}) == 2\n"
    code += f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout
    if message is not None:
        assert re.search(message, done.stderr.strip().splitlines()[-1]), done.stderr
    assert _nothing_left(tmp_path)


# --- item 2: the output folder -------------------------------------------------------------


SMALL = ["--preset", "sciplex3", "--cell-type", "A549", "--genes", ",".join(GENES[:4]),
         "--steps", "20", "--n-pred-cells", "10", "--no-progress"]


def test_out_that_cannot_be_written_is_refused_before_the_fit(h5ad, tmp_path, capsys,
                                                              monkeypatch):
    path, _, _ = h5ad
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder")
    called = []
    monkeypatch.setattr("gim_ppl.inference.fit", lambda *a, **k: called.append(1))
    # --out inside a file
    assert main(["fit", "--h5ad", str(path), "--out", str(blocker / "out"), *SMALL]) == 2
    _one_line_error(capsys, rf"cannot create --out {re.escape(str(blocker / 'out'))}: "
                            rf"{re.escape(str(blocker))} is a file, not a folder")
    # --out is a file
    assert main(["fit", "--h5ad", str(path), "--out", str(blocker), *SMALL]) == 2
    _one_line_error(capsys, r"is a file, not a folder; give the path of a folder to create")
    # a folder the user may not write to (as root permissions do not stop writes: simulated)
    real_mkdir = type(tmp_path).mkdir

    def refuse(self, *args, **kwargs):
        if ".partial-" in self.name:
            raise PermissionError(13, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(type(tmp_path), "mkdir", refuse)
    assert main(["fit", "--h5ad", str(path), "--out", str(tmp_path / "new" / "out"),
                 *SMALL]) == 2
    _one_line_error(capsys, r"cannot write --out .*new/out \(permission denied in .*\); "
                            r"choose a folder you can write to")
    assert not called and _nothing_left(tmp_path, "notes.txt")  # "new/" is removed again


def test_read_only_folder_is_refused(h5ad, tmp_path, capsys, monkeypatch):
    """A folder that refuses new entries: a real read-only folder where permissions hold,
    and, since root ignores them (CI runs as root), a `Path.mkdir` that raises the
    PermissionError the OS would raise inside it."""
    path, _, _ = h5ad
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    real_mkdir = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if locked in self.parents:
            raise PermissionError(13, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    try:
        assert main(["fit", "--h5ad", str(path), "--out", str(locked / "out"), *SMALL]) == 2
        _one_line_error(capsys, r"cannot write --out .*permission denied")
        assert not any(locked.iterdir())
    finally:
        locked.chmod(0o700)


def test_existing_out_is_refused_and_replaced_whole_with_overwrite(h5ad, tmp_path, capsys):
    path, _, _ = h5ad
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.json").write_text('{"stale": true}')
    assert main(["fit", "--h5ad", str(path), "--out", str(out), *SMALL]) == 2
    _one_line_error(capsys, r"--out .*out already holds files \(metrics.json\); pass "
                            r"--overwrite to replace them, or choose another folder")
    assert [p.name for p in out.iterdir()] == ["metrics.json"]  # untouched
    # --overwrite: the new results replace the folder whole; no stale metrics.json remains
    assert main(["fit", "--h5ad", str(path), "--out", str(out), *SMALL, "--holdout", "none",
                 "--overwrite"]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["holdout"] == "none" and not (out / "metrics.json").exists()
    assert sorted(p.name for p in out.iterdir()) == [
        "figures", "graph.csv", "hill.csv", "predictions.h5ad", "run.json", "targets.csv",
        "targets_by_dose.csv"]
    assert _nothing_left(tmp_path, "out")
    # an empty folder is fine without --overwrite
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["fit", "--h5ad", str(path), "--out", str(empty), *SMALL,
                 "--holdout", "none"]) == 0
    assert (empty / "run.json").is_file()


def test_a_failing_fit_leaves_no_partial_folder(h5ad, tmp_path, monkeypatch):
    path, _, _ = h5ad

    def crash(*args, **kwargs):
        raise RuntimeError("the fit broke")

    monkeypatch.setattr("gim_ppl.inference.fit", crash)
    with pytest.raises(RuntimeError, match="the fit broke"):  # a bug, not a user error
        main(["fit", "--h5ad", str(path), "--out", str(tmp_path / "a" / "out"), *SMALL])
    assert _nothing_left(tmp_path)


# --- items 1 and 4: what the values are, small panels, doses in the file's unit -------------


def test_non_integer_counts_and_nan_outside_the_used_genes(h5ad, tmp_path, capsys):
    """Counts after ambient-RNA correction (not whole numbers) with a NaN in a gene that is
    not used: normalised anyway, and the command says so and records it."""
    import anndata

    _, adata, _ = h5ad
    corrected = adata.copy()
    counts = adata.X.toarray() * 0.93 + 0.01
    counts[0, 40] = np.nan  # BG028
    corrected.X = counts
    path = tmp_path / "corrected.h5ad"
    corrected.write_h5ad(path)
    out = tmp_path / "out"
    assert main(["fit", "--h5ad", str(path), "--out", str(out), *SMALL]) == 0
    err = capsys.readouterr().err
    assert "note: adata.X holds non-integer counts (the values of the 4 genes used are " in err
    assert "normalised each cell to 10000 counts and applied log1p" in err
    assert "pass --normalize no" in err and "normalize=" not in err
    assert "note: genes not used hold NaN or infinite values: ['BG028']" in err
    assert ".py:" not in err  # no source paths
    run = json.loads((out / "run.json").read_text())
    assert run["preprocessing"]["detected"] == "non-integer counts"
    assert run["preprocessing"]["normalized"] is True
    assert run["preprocessing"]["unused_nonfinite_genes"] == ["BG028"]
    pred = anndata.read_h5ad(out / "predictions.h5ad")
    assert pred.uns["preprocessing"]["detected"] == "non-integer counts"
    # --normalize no: used as they are, and said so in run.json and the predictions
    assert main(["fit", "--h5ad", str(path), "--out", str(tmp_path / "raw"), *SMALL,
                 "--normalize", "no"]) == 0
    run = json.loads((tmp_path / "raw" / "run.json").read_text())
    assert run["preprocessing"]["normalized"] is False
    assert run["preprocessing"]["normalize"] == "no"
    assert "hill.csv" in os.listdir(tmp_path / "raw")
    assert "emax_expr" in pd.read_csv(tmp_path / "raw" / "hill.csv").columns
    assert "used as they were" in anndata.read_h5ad(tmp_path / "raw" / "predictions.h5ad") \
        .uns["description"]


def test_a_12_gene_panel_with_default_n_top_genes(h5ad, tmp_path, capsys):
    _, adata, _ = h5ad
    path = tmp_path / "panel.h5ad"
    adata[:, :12].copy().write_h5ad(path)
    out = tmp_path / "out"
    argv = ["fit", "--h5ad", str(path), "--out", str(out), "--preset", "sciplex3",
            "--cell-type", "A549", "--steps", "20", "--n-pred-cells", "10", "--no-progress"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "note: adata.X has 12 usable genes, fewer than --n-top-genes 50: all 12 are used." \
        in err
    assert json.loads((out / "run.json").read_text())["genes"] == GENES


def test_holdout_dose_in_the_files_unit(h5ad, tmp_path):
    path, _, _ = h5ad
    out = tmp_path / "out"
    assert main(["fit", "--h5ad", str(path), "--out", str(out), *SMALL, "--holdout", "none",
                 "--holdout-dose", "JQ1@10000,Imatinib@100"]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["heldout_contexts"] == ["Imatinib@100nM", "JQ1@10000nM"]
    scores = json.loads((out / "metrics.json").read_text())
    assert [r["context"] for r in scores["per_context"]] == run["heldout_contexts"]


def test_pooled_cell_types_are_a_note_in_flag_words(h5ad, tmp_path, capsys):
    path, _, _ = h5ad
    argv = [a for a in SMALL if a not in ("--cell-type", "A549")]
    assert main(["fit", "--h5ad", str(path), "--out", str(tmp_path / "out"), *argv,
                 "--holdout", "none"]) == 0
    err = capsys.readouterr().err
    assert ("note: obs['cell_type'] holds 2 cell types ['A549', 'MCF7']; they are pooled into "
            "one model. Pass --cell-type NAME to fit one cell type.") in err


def test_an_unknown_dose_unit_is_a_note_not_a_silent_scale(capsys):
    import argparse

    from gim_ppl.cli.screen_input import screen_settings

    args = argparse.Namespace(preset="sciplex3", features_csv=None, smiles_key=None,
                              perturbation_key=None, dose_key=None, control=None,
                              cell_type_key=None, dose_unit="ug/ml", dose_reference=None)
    assert screen_settings(args)["dose_unit"] == "ug/ml"
    err = capsys.readouterr().err
    assert "note: --dose-unit 'ug/ml' is not a molar unit I know" in err
    assert "nanomolar" in err and "--dose-reference" in err
    for known in ("nanomolar", "µM"):
        screen_settings(argparse.Namespace(**{**vars(args), "dose_unit": known}))
        assert capsys.readouterr().err == ""


# --- item 8: help ----------------------------------------------------------------------------


def test_every_option_has_help_and_shows_its_default():
    from gim_ppl.cli import build_parser

    def check(parser, path):
        for action in parser._actions:
            if action.dest == "help":
                continue
            assert action.help, (path, action.dest)
            if action.default not in (None, False, ()) and action.option_strings:
                assert "default" in action.help, (path, action.dest)
            if isinstance(action, argparse._SubParsersAction):  # sub-commands
                for name, command in action.choices.items():
                    assert command.description, (*path, name)
                    check(command, (*path, name))

    check(build_parser(), ())


def test_demo_help_describes_the_demo(capsys):
    assert main(["demo", "--help"]) == 0
    out = capsys.readouterr().out
    assert "synthetic benchmark" in out and "AUROC" in out
    assert "Adam steps per fit (default: 30000)" in " ".join(out.split())


@pytest.mark.slow
def test_features_csv_log_dose_and_unseen_drug(h5ad, tmp_path):
    """Features from a CSV, control by name, log-dose, one drug held out entirely."""
    from gim_ppl.datasets import drug_features

    path, _, truth = h5ad
    csv = tmp_path / "features.csv"
    drug_features(truth.smiles, kind="rdkit2d", n_components=6).to_csv(csv)
    out = tmp_path / "out"
    rc = main([
        "fit", "--h5ad", str(path), "--perturbation-key", "product_name", "--dose-key", "dose",
        "--control", "Vehicle", "--features-csv", str(csv), "--cell-type", "A549",
        "--n-top-genes", "15", "--log-dose", "--dose-reference", "10", "--holdout", "none",
        "--holdout-drugs", "JQ1", "--steps", "1000", "--out", str(out), "--no-progress",
    ])
    assert rc == 0
    run = json.loads((out / "run.json").read_text())
    assert run["features"] == [f"rdkit2d_pc{i}" for i in range(6)] and len(run["genes"]) == 15
    assert run["dose_scale"] == {"unit": "nM", "reference": 10.0, "log": True}
    assert run["heldout_contexts"] == [f"JQ1@{c}nM" for c in (10, 100, 1000, 10000)]
    scores = json.loads((out / "metrics.json").read_text())
    assert [r["context"] for r in scores["per_context"]] == run["heldout_contexts"]
    # JQ1 was never measured: no interpolation of its doses, the other baselines stand
    assert "mean_error_dose_interpolation" not in scores and "mean_error_ridge" in scores
    targets = pd.read_csv(out / "targets.csv")
    jq1 = targets["perturbation"] == "JQ1"
    # an unseen drug has a prior from its features but no posterior from training cells
    assert targets.loc[jq1, "posterior_probability"].isna().all()
    assert targets.loc[~jq1, "posterior_probability"].notna().all()
    assert targets["target_probability"].notna().all()


def test_fit_without_held_out_contexts_needs_no_bench_extra(h5ad, tmp_path):
    """`gim-ppl fit` needs the [screen] and [plots] extras only: with ott-jax missing it still
    fits and writes everything (the held-out metrics, absent here, are what use ott)."""
    import subprocess
    import sys

    path, _, _ = h5ad
    argv = ["fit", "--h5ad", str(path), "--preset", "sciplex3", "--cell-type", "A549",
            "--genes", ",".join(GENES[:4]), "--holdout", "none", "--steps", "20",
            "--out", str(tmp_path / "out"), "--no-progress"]
    code = ("import sys\nsys.modules['ott'] = None\nfrom gim_ppl.cli import main\n"
            f"rc = main({argv!r})\n"
            "assert 'gim_ppl.evaluation.metrics' not in sys.modules\nsys.exit(rc)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "run.json").is_file()
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_sources_forbid_and_coarsening_reach_the_model():
    import argparse

    from gim_ppl.cli.fit_command import fit_screen
    from tests._problems import small_data

    args = argparse.Namespace(target_sparsity=1.0, steps=5, learning_rate=1e-2, seed=0,
                              no_progress=True, sources="x1", forbid="x0>x2", coarsening=30.0)
    data = small_data(d=3).replace(var_names=("x0", "x1", "x2"))
    model = fit_screen(args, data).model
    expected = ~np.eye(3, dtype=bool)
    expected[:, 1] = False
    expected[0, 2] = False
    np.testing.assert_array_equal(model.edge_mask, expected)
    assert model.coarsening == 30.0


def test_features_csv_columns_are_standardised_with_a_note(capsys):
    """Raw descriptors (a molecular weight of ~190) once gave flat Hill curves and no target
    above 0.5; they are z-scored over the drugs, as the SMILES path whitens by PCA."""
    from gim_ppl.cli.screen_input import standardised_features

    raw = pd.DataFrame({"mol_weight": [180.2, 206.3, 151.2, 194.2], "logp": [1.2, 3.5, 0.5, -0.1],
                        "charged": [0.0, 0.0, 0.0, 0.0]},
                       index=["Aspirin", "Ibuprofen", "Paracetamol", "Caffeine"])
    out = standardised_features(raw, "f.csv")
    np.testing.assert_allclose(out[["mol_weight", "logp"]].mean(0), 0.0, atol=1e-12)
    np.testing.assert_allclose(out[["mol_weight", "logp"]].std(0, ddof=0), 1.0)
    np.testing.assert_array_equal(out["charged"], 0.0)  # constant: centred, not divided by 0
    assert raw.loc["Aspirin", "mol_weight"] == 180.2      # the user's table is not modified
    assert "note: --features-csv f.csv: 3 columns standardised over its 4 drugs" in (
        capsys.readouterr().err)
    text = raw.assign(kind=["a", "b", "c", "d"])           # not numeric: left to the loader
    assert standardised_features(text, "f.csv") is text


def test_overwrite_is_complete_or_absent_when_the_final_rename_fails(tmp_path, monkeypatch):
    """`--overwrite` keeps the old folder when moving the new one into place fails (a full
    disk, a permission change): the old results come back, the partial folder goes.
    Kills mutant `commit_no_restore` (dev/mutants.py)."""
    from gim_ppl.cli import outputs

    out = tmp_path / "out"
    out.mkdir()
    (out / "graph.csv").write_text("old results")
    folder = outputs.OutputFolder.prepare(str(out), overwrite=True)
    (folder.tmp / "graph.csv").write_text("new results")
    real_replace = os.replace

    def failing(src, dst):
        if str(src) == str(folder.tmp):  # the move of the finished folder fails
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(outputs.os, "replace", failing)
    with pytest.raises(OSError, match="No space left"):
        folder.commit()
    folder.discard()
    assert (out / "graph.csv").read_text() == "old results"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no .partial, no .old
    monkeypatch.setattr(outputs.os, "replace", real_replace)
    folder = outputs.OutputFolder.prepare(str(out), overwrite=True)
    (folder.tmp / "graph.csv").write_text("new results")
    folder.commit()
    assert (out / "graph.csv").read_text() == "new results"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
