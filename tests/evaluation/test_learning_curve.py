"""`gim-ppl bench --learning-curve`: the protocol at several training sizes, its tables and
figure, and its argument checks (`gim_ppl.evaluation.learning_curve`)."""

import json

import pytest

from gim_ppl import cli


def test_learning_curve_runs_every_size_and_writes_tables_and_figure(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "curve"
    args = ["bench", "--quick", "--learning-curve", "6,12", "--methods",
            "observational,oracle,oracle_features,gim_exact", "--steps", "200", "--out", str(out),
            "--no-progress"]
    assert cli.main(args) == 0
    results = json.loads((out / "learning_curve.json").read_text())
    assert results["sizes"] == [6, 12]
    assert {r["n_train_perturbations"] for r in results["rows"]} == {6, 12}
    summary = results["summary"]
    for n in ("6", "12"):
        assert summary["observational"][n]["full_ood_error_over_control"]["mean"] == 1.0
        # the full truth predicts new perturbations better than the control cells do
        assert summary["oracle"][n]["full_ood_error_over_control"]["mean"] < 1.0
        assert summary["oracle_features"][n]["full_ood_error_over_control"]["mean"] > 0.0
        assert 0.0 <= summary["gim_exact"][n]["target_auroc_full_ood"]["mean"] <= 1.0
    assert "| gim_exact | 12 |" in (out / "learning_curve.md").read_text()
    assert (out / "learning_curve.png").stat().st_size > 0


def test_learning_curve_rejects_bad_sizes(capsys):
    assert cli.main(["bench", "--learning-curve", "1,4"]) == 2
    assert "training perturbations >= 2" in capsys.readouterr().err
