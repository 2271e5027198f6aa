"""`gim_ppl.summary`: result tables read off a model, one row per (perturbation, variable)."""

import numpy as np
import pandas as pd
import pytest

import gim_ppl
from gim_ppl.datasets import DoseScale, synthetic_hill
from gim_ppl.summary import DEGENERATE_RULE, hill_table, target_table
from tests._problems import random_sites


@pytest.fixture(scope="module")
def problem():
    bench = synthetic_hill(0, n_vars=4, n_features=3, n_train_perturbations=3,
                           n_test_perturbations=2, train_doses=(0.5, 1.0, 2.0),
                           partial_ood_doses=(0.75,), n_cells=5, n_test_cells=5,
                           n_observational=20)
    model = gim_ppl.GIM(4, 3)
    return bench, model, random_sites(model)


def test_target_table_shape_columns_and_values(problem):
    bench, model, sites = problem
    data = bench.train
    table = target_table(model, sites, data, train=data)
    assert list(table.columns) == ["perturbation", "gene", "target_probability",
                                   "posterior_probability"]
    assert len(table) == 3 * 4
    assert list(table["perturbation"]) == [f"drug_0{i}" for i in range(3) for _ in range(4)]
    assert list(table["gene"]) == list(data.var_names) * 3
    pert = np.asarray(data.perturbation)
    first = [int(np.flatnonzero(pert == g)[0]) for g in range(3)]
    prior = model.target_probabilities(sites, data.subset(first))
    np.testing.assert_allclose(table["target_probability"], prior.ravel(), rtol=1e-6)
    post = model.posterior_targets(sites, data)
    expected = np.stack([post[pert == g].mean(0) for g in range(3)])
    np.testing.assert_allclose(table["posterior_probability"], expected.ravel(), rtol=1e-6)
    # unseen perturbations: a prior from features, no posterior without training cells
    unseen = target_table(model, sites, bench.full_ood, train=data)
    assert len(unseen) == 2 * 4 and set(unseen["perturbation"]) == {"drug_03", "drug_04"}
    assert unseen["posterior_probability"].isna().all()
    assert unseen["target_probability"].between(0, 1).all()
    assert target_table(model, sites, data)["posterior_probability"].isna().all()


def test_tables_average_draws(problem):
    bench, model, sites = problem
    data = bench.train
    twice = {k: np.stack([np.asarray(v)] * 2) for k, v in sites.items()}
    with_draws = target_table(model, twice, data, train=data)
    np.testing.assert_allclose(with_draws["target_probability_low"],
                               with_draws["target_probability_high"], rtol=1e-6)
    pd.testing.assert_frame_equal(
        with_draws.drop(columns=["target_probability_low", "target_probability_high"]),
        target_table(model, sites, data, train=data), rtol=1e-6)
    scale = DoseScale("nM", 1000.0)
    pd.testing.assert_frame_equal(
        hill_table(model, twice, data, scale).drop(
            columns=["target_probability_low", "target_probability_high"]),
        hill_table(model, sites, data, scale), rtol=1e-6)


def test_target_table_intervals_are_quantiles_over_draws(problem):
    bench, model, _ = problem
    draws = [random_sites(model, seed=s) for s in range(5)]
    stacked = {k: np.stack([np.asarray(d[k]) for d in draws]) for k in draws[0]}
    table = target_table(model, stacked, bench.full_ood, interval=0.5)
    _, first = bench.full_ood.perturbation_contexts()
    pi = np.stack([model.target_probabilities(d, bench.full_ood.subset(first)) for d in draws])
    np.testing.assert_allclose(table["target_probability_low"],
                               np.quantile(pi, 0.25, axis=0).ravel(), rtol=1e-5)
    np.testing.assert_allclose(table["target_probability_high"],
                               np.quantile(pi, 0.75, axis=0).ravel(), rtol=1e-5)
    assert (table["target_probability_low"] <= table["target_probability"] + 1e-7).all()
    with pytest.raises(ValueError, match="interval"):
        target_table(model, stacked, bench.full_ood, interval=1.0)


def test_hill_table_reports_ec50_in_user_units(problem):
    bench, model, sites = problem
    data = bench.train
    table = hill_table(model, sites, data, DoseScale("nM", 1000.0))
    assert list(table.columns) == [
        "perturbation", "gene", "target_probability", "posterior_probability", "emax", "ec50",
        "hill", "dose_unit", "lowest_tested_dose", "highest_tested_dose", "degenerate",
        "degenerate_reason"]
    assert len(table) == 3 * 4 and set(table["dose_unit"]) == {"nM"}
    pert = np.asarray(data.perturbation)
    first = [int(np.flatnonzero(pert == g)[0]) for g in range(3)]
    h = model.hill_parameters(sites, data.subset(first))
    np.testing.assert_allclose(table["ec50"], 1000.0 * h["ec50"].ravel(), rtol=1e-6)
    np.testing.assert_allclose(table["emax"], h["emax"].ravel(), rtol=1e-6)
    np.testing.assert_allclose(table["hill"], h["hill"].ravel(), rtol=1e-6)
    # the tested doses of every drug: 0.5, 1, 2 model units = 500 .. 2000 nM
    assert set(table["lowest_tested_dose"]) == {500.0} and set(table["highest_tested_dose"]) \
        == {2000.0}
    # the same target probabilities as target_table, and its posterior with train
    targets = target_table(model, sites, data, train=data)
    with_train = hill_table(model, sites, data, DoseScale("nM", 1000.0), train=data)
    pd.testing.assert_frame_equal(with_train[targets.columns], targets)
    assert table["posterior_probability"].isna().all()


def test_hill_table_takes_the_data_unit_and_flags_degenerate_fits(problem):
    bench, model, sites = problem
    data = bench.train
    # without a scale, model units; with the scale the data carries, that unit
    assert set(hill_table(model, sites, data)["dose_unit"]) == {"model units"}
    in_nm = data.replace(dose_scale=DoseScale("nM", 1000.0))
    pd.testing.assert_frame_equal(hill_table(model, sites, in_nm),
                                  hill_table(model, sites, data, DoseScale("nM", 1000.0)))
    # with no feature weights, EC50 and Hill coefficient per gene are exp(bias): EC50s of
    # 0.1, 1, 10 and 1 model units (tested: 0.5 to 2), Hill coefficients 1, 1, 1 and 0.1
    fixed = {**sites, "log_ec50_weights": np.zeros_like(sites["log_ec50_weights"]),
             "log_hill_weights": np.zeros_like(sites["log_hill_weights"]),
             "log_ec50_bias": np.log(np.array([0.1, 1.0, 10.0, 1.0])),
             "log_hill_bias": np.log(np.array([1.0, 1.0, 1.0, 0.1]))}
    table = hill_table(model, fixed, data)
    by_gene = table[table["perturbation"] == "drug_00"].set_index("gene")
    genes = data.var_names
    assert by_gene.loc[genes[0], "degenerate_reason"] == "EC50 below the tested doses"
    assert by_gene.loc[genes[1], "degenerate_reason"] == ""
    assert not by_gene.loc[genes[1], "degenerate"]
    assert by_gene.loc[genes[2], "degenerate_reason"] == "EC50 above the tested doses"
    assert by_gene.loc[genes[3], "degenerate_reason"] == "Hill coefficient below 0.2"
    assert list(by_gene["degenerate"]) == [True, False, True, True]
    assert "0.2" in DEGENERATE_RULE and "tested" in DEGENERATE_RULE
