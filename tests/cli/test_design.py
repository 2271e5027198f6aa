"""`gim-ppl design` on a tiny toy screen: rankings of new drugs (SMILES) and of known drugs at
new doses, the candidates' features, and every bad --candidates as one line naming it."""

import re

import numpy as np
import pandas as pd
import pytest

from gim_ppl.cli import build_parser, main
from gim_ppl.datasets import drug_features, toy_screen
from gim_ppl.datasets.screen import TOY_DRUGS

GENES = "G00,G01,G02,G03"
NEW = ["Erlotinib", "Doxorubicin"]  # not among the toy screen's 4 drugs
RUN = ["--preset", "sciplex3", "--genes", GENES, "--steps", "200", "--n-draws", "20",
       "--n-cells", "50", "--no-progress"]


@pytest.fixture(scope="module")
def screen(tmp_path_factory):
    adata, truth = toy_screen(0, n_drugs=4, n_genes=4, n_background_genes=8, n_cells=6,
                              n_control=30, cell_types=("A549",))
    path = tmp_path_factory.mktemp("screen") / "toy.h5ad"
    adata.write_h5ad(path)
    assert not set(NEW) & set(truth.drugs)
    return path, truth


def _csv(path, text):
    path.write_text(text)
    return str(path)


def _check_ranking(out, drugs_doses):
    table = pd.read_csv(out)
    assert list(table.columns) == ["rank", "drug", "dose_nM", "eig", "mc_se", "about",
                                   "n_cells", "n_draws", "line"]
    assert table["rank"].tolist() == list(range(1, len(drugs_doses) + 1))
    assert sorted(zip(table["drug"], table["dose_nM"], strict=True)) == sorted(drugs_doses)
    assert np.isfinite(table["eig"]).all() and (np.isfinite(table["mc_se"])).all()
    # terms that all agree have no Monte Carlo error (a dose-0 candidate: all exactly 0)
    assert (table["mc_se"] >= 0).all() and table["eig"].is_monotonic_decreasing
    assert (table["mc_se"][table["eig"] > 1e-3] > 0).all()
    assert set(table["n_draws"]) == {20} and set(table["n_cells"]) == {50}
    return table


def test_ranks_new_drugs_from_smiles(screen, tmp_path, capsys):
    path, _ = screen
    rows = "".join(f"{d},{c},{TOY_DRUGS[d]}\n" for d in NEW for c in (100, 10000))
    candidates = _csv(tmp_path / "candidates.csv", "drug,dose,smiles\n" + rows)
    out = tmp_path / "ranking.csv"
    assert main(["design", "--h5ad", str(path), "--candidates", candidates, "--out", str(out),
                 "--top", "2", *RUN]) == 0
    table = _check_ranking(out, [(d, float(c)) for d in NEW for c in (100, 10000)])
    assert set(table["about"]) == {"targets"}
    # each row points back at its line of --candidates
    for _, row in table.iterrows():
        drug, dose, _ = rows.splitlines()[row["line"] - 2].split(",")
        assert (drug, float(dose)) == (row["drug"], row["dose_nM"])
    printed = capsys.readouterr().out
    assert "expected information gain about the targets (nats) of 50 cells, 20 posterior " \
           "draws; top 2 of 4:" in printed
    first, second = table.iloc[0], table.iloc[1]
    assert re.search(rf"\n   1  {first['drug']} +{first['dose_nM']:g} nM  "
                     rf"{first['eig']:.3f} ± {first['mc_se']:.3f}\n", printed), printed
    assert f"   2  {second['drug']}" in printed and "   3  " not in printed


def test_ranks_known_drugs_at_new_doses(screen, tmp_path):
    path, truth = screen
    drug = truth.drugs[0]
    candidates = _csv(tmp_path / "candidates.csv",
                      f"drug,dose\n{drug},0\n{drug},30\n{drug},10000\n{truth.drugs[1]},3000\n")
    out = tmp_path / "ranking.csv"
    assert main(["design", "--h5ad", str(path), "--candidates", candidates, "--out", str(out),
                 *RUN]) == 0
    table = _check_ranking(out, [(drug, 0.0), (drug, 30.0), (drug, 10000.0),
                                 (truth.drugs[1], 3000.0)])
    eig = dict(zip(table["dose_nM"][table["drug"] == drug],
                   table["eig"][table["drug"] == drug], strict=True))
    # no dose, no shift: the cells do not depend on the targets, and with the SCM at its
    # median (the default for targets) not on the draws either: no information at all
    assert abs(eig[0.0]) < 1e-5 < eig[30.0] < eig[10000.0]
    # an existing --out is kept without --overwrite
    before = out.read_text()
    assert main(["design", "--h5ad", str(path), "--candidates", candidates, "--out", str(out),
                 *RUN]) == 2
    assert out.read_text() == before


def _contexts(screen, tmp_path, text, *flags):
    """The candidates as the command builds them, without fitting."""
    from gim_ppl.cli.design import candidate_contexts, read_candidates
    from gim_ppl.cli.screen_input import (
        read_h5ad,
        screen_data,
        screen_features,
        screen_settings,
    )

    path, _ = screen
    candidates = _csv(tmp_path / "c.csv", text)
    args = build_parser().parse_args(["design", "--h5ad", str(path), "--candidates",
                                      candidates, "--out", str(tmp_path / "o.csv"),
                                      *RUN, *flags])
    settings = screen_settings(args)
    table = read_candidates(candidates, "nM")
    adata = read_h5ad(args.h5ad)
    new = {d: s for d, s in zip(table.drug, table.smiles, strict=True) if s}
    features = screen_features(args, settings, adata, new)
    data, _ = screen_data(args, settings, adata, features)
    return data, candidate_contexts(table, data, features, args)


def test_candidate_features_share_the_screens_feature_space(screen, tmp_path):
    _, truth = screen
    known = truth.drugs[2]
    data, cands = _contexts(screen, tmp_path, f"drug,dose,smiles\n{NEW[0]},1000,"
                            f"{TOY_DRUGS[NEW[0]]}\n{known},100,\n", "--n-components", "3")
    # featurised together: the PCA of the screen's drugs and the new one, computed here
    together = drug_features({**truth.smiles, NEW[0]: TOY_DRUGS[NEW[0]]}, n_components=3)
    np.testing.assert_allclose(cands.features[0], together.loc[NEW[0]], rtol=1e-5, atol=1e-5)
    ctx = data.context_names.index(f"{known}@100nM")
    np.testing.assert_allclose(cands.features[1], data.features[ctx])
    np.testing.assert_allclose(data.features[ctx], together.loc[known], rtol=1e-5, atol=1e-5)
    # doses in model units (1 µM is 1), names in the screen's style
    np.testing.assert_allclose(cands.dose, [1.0, 0.1])
    assert cands.context_names == (f"{NEW[0]}@1000nM", f"{known}@100nM")


def test_candidate_feature_columns_with_features_csv(screen, tmp_path):
    _, truth = screen
    csv = tmp_path / "features.csv"
    drug_features(truth.smiles, kind="rdkit2d", n_components=3).to_csv(csv)
    # columns in another order than the model's: matched by name
    data, cands = _contexts(screen, tmp_path, "drug,dose,rdkit2d_pc2,rdkit2d_pc0,rdkit2d_pc1\n"
                            "Aspirin,50,0.3,0.1,0.2\n", "--features-csv", str(csv))
    assert data.feature_names == ("rdkit2d_pc0", "rdkit2d_pc1", "rdkit2d_pc2")
    # --features-csv is standardised over its drugs; a candidate's columns, in the CSV's
    # units, get the same map
    table = pd.read_csv(csv, index_col=0)
    expected = (np.array([0.1, 0.2, 0.3]) - table.mean(0).to_numpy()) / table.std(0, ddof=0)
    np.testing.assert_allclose(cands.features[0], expected, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(data.features)[~np.asarray(data.observational)].std(0),
                               1.0, atol=0.3)  # contexts repeat drugs: roughly unit sd


def _one_line_error(capsys, *pieces):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("gim-ppl design: error: "), err
    assert all(line.startswith("note: ") for line in lines[:-1]) and "Traceback" not in err
    for piece in pieces:
        assert re.search(piece, lines[-1]), (piece, err)


@pytest.mark.parametrize("text, message", [
    (None, r"--candidates \S+: no such file"),
    ("", r"--candidates \S+ has no rows \(the file is empty\)"),
    ("drug,dose\n", r"--candidates \S+ has no rows; give one row per candidate"),
    ("drug,concentration\nJQ1,10\n", r"--candidates \S+ has no 'dose' column \(its columns: "
                                     r"\['drug', 'concentration'\]\)"),
    ("drug,dose\nJQ1,10\nJQ1,-5\n", r"--candidates \S+: negative doses on lines \[3\] "
                                    r"\(\[-5.0\]\); doses must be ≥ 0 nM"),
    ("drug,dose\nJQ1,ten\nJQ1,\nJQ1,5\n", r"--candidates \S+: the dose is not a number on "
                                          r"lines \[2, 3\] \(got \['ten', 'nan'\]\)"),
    ("drug,dose\nJQ1,10\nJQ1,10.0\n", r"--candidates \S+: lines 2 and 3 are the same "
                                      r"candidate \(JQ1 at 10 nM\)"),
    ("drug,dose\nAspirin,10\n", r"--candidates \S+: drug 'Aspirin' \(line 2\) is not a drug "
                                r"of the screen and has no smiles or feature values"),
    ("drug,dose,f0,f1\nAspirin,10,0.1,0.2\n", r"--candidates \S+ has 2 feature columns "
                                              r"\['f0', 'f1'\]; the model's drug features "
                                              r"have 3: \['morgan_pc0'"),
    ("drug,dose,smiles\nAspirin,10,not-a-smiles\n",
     r"--candidates \S+: invalid SMILES for drug 'Aspirin': 'not-a-smiles'"),
])
def test_bad_candidates_are_one_line_naming_the_argument(screen, tmp_path, capsys,
                                                          monkeypatch, text, message):
    path, _ = screen
    monkeypatch.setattr("gim_ppl.cli.design.fit_screen",
                        lambda *a, **k: pytest.fail("fitted despite bad candidates"))
    candidates = tmp_path / "candidates.csv"
    if text is not None:
        candidates.write_text(text)
    rc = main(["design", "--h5ad", str(path), "--candidates", str(candidates), "--out",
               str(tmp_path / "ranking.csv"), "--n-components", "3", *RUN])
    assert rc == 2
    _one_line_error(capsys, message)
    assert not (tmp_path / "ranking.csv").exists()


def test_smiles_need_smiles_features_and_readout_needs_about_readout(screen, tmp_path, capsys):
    path, truth = screen
    csv = tmp_path / "features.csv"
    drug_features(truth.smiles, n_components=3).to_csv(csv)
    candidates = _csv(tmp_path / "c.csv", f"drug,dose,smiles\n{NEW[0]},10,{TOY_DRUGS[NEW[0]]}\n")
    argv = ["design", "--h5ad", str(path), "--candidates", candidates, "--out",
            str(tmp_path / "r.csv"), *RUN]
    assert main([*argv, "--features-csv", str(csv)]) == 2
    _one_line_error(capsys, rf"new drug '{NEW[0]}' \(line 2\) has a SMILES, but the model's "
                            r"drug features come from --features-csv")
    assert main([*argv, "--readout", "G00"]) == 2
    _one_line_error(capsys, r"--readout is used only with --about readout")
    assert main([*argv, "--about", "readout", "--readout", "NOPE"]) == 2
    _one_line_error(capsys, r"--readout 'NOPE' is not a modelled gene")
    assert main([*argv, "--n-draws", "1"]) == 2
    _one_line_error(capsys, r"argument --n-draws: expected a whole number ≥ 2, got '1'")
