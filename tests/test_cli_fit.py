"""`gim-ppl fit` end to end on a toy screen in the sci-Plex3 schema, and its input errors."""

import json
import re

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
                                     "posterior_probability"]
    assert len(targets) == 10 * 12 and set(targets["perturbation"]) == set(truth.drugs)
    assert targets["target_probability"].between(0, 1).all()
    assert targets["posterior_probability"].between(0, 1).all()  # every drug has train cells

    hill = pd.read_csv(fitted / "hill.csv")
    assert list(hill.columns) == ["perturbation", "gene", "emax", "ec50", "hill", "dose_unit"]
    assert len(hill) == 120 and (hill["ec50"] > 0).all() and set(hill["dose_unit"]) == {"nM"}
    # EC50 is reported in nM: typical values lie within the screen's dose range (10 nM–10 µM
    # give the model 1e-2–10), not in the model's µM units
    assert 1.0 < hill["ec50"].median() < 1e5


def test_writes_predictions_and_metrics_of_the_held_out_doses(fitted, h5ad):
    import anndata

    _, adata, _ = h5ad
    pred = anndata.read_h5ad(fitted / "predictions.h5ad")
    assert list(pred.var_names) == GENES and pred.n_obs == 10 * 200
    assert set(pred.obs["dose"]) == {10000.0} and pred.uns["dose_unit"] == "nM"
    assert set(pred.obs["context"]) == {f"{d}@10000nM" for d in pred.obs["product_name"]}

    scores = json.loads((fitted / "metrics.json").read_text())
    assert len(scores["per_context"]) == 10
    assert all(r["n_observed_cells"] == 12 for r in scores["per_context"])
    assert scores["mean_error"] < scores["mean_error_control"]
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


def test_writes_figures_and_run_summary(fitted):
    from matplotlib.image import imread

    for name in ("dose_response.png", "target_heatmap.png"):
        image = imread(fitted / "figures" / name)
        assert image.ndim == 3 and min(image.shape[:2]) > 100
    run = json.loads((fitted / "run.json").read_text())
    assert run["genes"] == GENES and run["dose_scale"] == {"unit": "nM", "reference": 1000.0,
                                                           "log": False}
    assert len(run["heldout_contexts"]) == 10 and run["fit_message"] == ""


@pytest.mark.parametrize("flags, message", [
    (["--preset", "sciplex3", "--dose-key", "concentration"],
     r"dose_key='concentration' is not an obs column; obs has \['product_name', 'dose'"),
    (["--preset", "sciplex3", "--control", "DMSO"],
     r"control='DMSO' is neither an obs column nor a value of obs\['product_name'\]"),
    (["--preset", "sciplex3", "--cell-type", "HeLa"],
     r"cell_type='HeLa' matches no cell; obs\['cell_type'\] holds \['A549', 'MCF7'\]"),
    (["--preset", "sciplex3", "--genes", "G00,NOPE"],
     r"genes not found in adata.var_names: \['NOPE'\]"),
    (["--dose-key", "dose", "--control", "vehicle"],
     r"gim-ppl fit needs --perturbation-key \(or --preset sciplex3\)"),
])
def test_bad_input_is_reported_without_fitting(h5ad, tmp_path, capsys, flags, message):
    path, _, _ = h5ad
    rc = main(["fit", "--h5ad", str(path), "--out", str(tmp_path / "out"), *flags])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("gim-ppl fit: error: ")
    assert re.search(message, err), err
    assert not (tmp_path / "out").exists()


def test_missing_file_and_drug_without_smiles(h5ad, tmp_path, capsys):
    _, adata, _ = h5ad
    assert main(["fit", "--h5ad", str(tmp_path / "nope.h5ad"), "--preset", "sciplex3",
                 "--out", str(tmp_path / "o")]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = adata.copy()
    smiles = bad.obs["SMILES"].to_numpy().copy()
    smiles[bad.obs["product_name"].to_numpy() == "Imatinib"] = ""
    bad.obs["SMILES"] = smiles
    bad_path = tmp_path / "bad.h5ad"
    bad.write_h5ad(bad_path)
    assert main(["fit", "--h5ad", str(bad_path), "--preset", "sciplex3",
                 "--out", str(tmp_path / "o")]) == 2
    assert "has no SMILES for the drugs ['Imatinib']" in capsys.readouterr().err


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
