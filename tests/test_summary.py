"""`gim_ppl.summary`: result tables read off a model, one row per (perturbation, variable)."""

import itertools

import jax
import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, logsumexp
from scipy.stats import norm

import gim_ppl
from gim_ppl.datasets import DoseScale, synthetic_hill
from gim_ppl.summary import DEGENERATE_RULE, dose_target_table, hill_table, target_table
from tests._problems import numpy_heads, numpy_mean, random_sites


@pytest.fixture(scope="module")
def problem():
    bench = synthetic_hill(0, n_vars=4, n_features=3, n_train_perturbations=3,
                           n_test_perturbations=2, train_doses=(0.5, 1.0, 2.0),
                           partial_ood_doses=(0.75,), n_cells=5, n_test_cells=5,
                           n_observational=20)
    model = gim_ppl.GIM(4, 3)
    return bench, model, random_sites(model)


COLUMNS = ["perturbation", "gene", "target_probability", "posterior_probability", "effect",
           "observed_effect", "observed_effect_se", "score"]


def enumerated_grouped_posterior(model, sites, data):
    """P(drug g targets j | cells of all its contexts) by enumerating the 2^d target sets of
    each drug (one indicator for all doses), with explicit numpy loops."""
    x, ctx = np.asarray(data.x, float), np.asarray(data.context)
    dose, pert = np.asarray(data.dose, float), np.asarray(data.perturbation)
    obs = np.asarray(data.observational)
    sigma = np.asarray(sites["noise_scale"], float)
    f = numpy_mean(model, sites, x)
    heads = numpy_heads(model, sites, np.asarray(data.features, float))
    ec50, h = np.exp(heads["log_ec50"]), np.exp(heads["log_hill"])
    hill = heads["emax"] * dose[:, None] ** h / (ec50**h + dose[:, None] ** h)
    pi = expit(heads["target"])
    d = x.shape[1]
    out = np.zeros((data.n_contexts, d))
    for g in np.unique(pert[~obs]):
        members = np.flatnonzero(pert == g)
        sets = np.asarray(list(itertools.product([0, 1], repeat=d)), float)
        logw = []
        for t in sets:
            ll = sum(norm.logpdf(x[ctx == k], f[ctx == k] + t * hill[k], sigma).sum()
                     for k in members)
            k0 = members[0]
            logw.append(ll + np.sum(t * np.log(pi[k0]) + (1 - t) * np.log1p(-pi[k0])))
        w = np.exp(np.asarray(logw) - logsumexp(logw))
        out[members] = w @ sets
    return out


def test_per_perturbation_posterior_is_the_enumerated_grouped_posterior(problem):
    bench, model, sites = problem
    data = bench.train
    got = model.posterior_targets(sites, data, per="perturbation")
    np.testing.assert_allclose(got, enumerated_grouped_posterior(model, sites, data),
                               atol=2e-5)
    # a model fit with one target vector per perturbation reads the same per context
    shared = gim_ppl.GIM(4, 3, shared_targets=True)
    np.testing.assert_allclose(shared.posterior_targets(sites, data), got, atol=1e-6)
    with pytest.raises(ValueError, match="per must be"):
        model.posterior_targets(sites, data, per="dose")


def test_min_effect_keeps_only_targets_with_a_large_enough_effect(problem):
    bench, model, sites = problem
    data = bench.train
    effect = np.abs(model.hill_effects(sites, data))
    for per in ("context", "perturbation"):
        plain = model.posterior_targets(sites, data, per=per)
        np.testing.assert_array_equal(
            model.posterior_targets(sites, data, per=per, min_effect=0.0), plain)
        assert not model.posterior_targets(sites, data, per=per, min_effect=1e6).any()
        delta = float(np.median(effect[~np.asarray(data.observational)]))
        got = model.posterior_targets(sites, data, per=per, min_effect=delta)
        size = effect
        if per == "perturbation":  # the effect at the perturbation's highest dose
            pert, dose = np.asarray(data.perturbation), np.asarray(data.dose)
            size = effect.copy()
            for g in np.unique(pert[pert >= 0]):
                mine = np.flatnonzero(pert == g)
                size[mine] = effect[mine[np.argmax(dose[mine])]]
        np.testing.assert_array_equal(got, np.where(size >= delta, plain, 0.0))
    for bad in (-0.1, np.nan):
        with pytest.raises(ValueError, match="min_effect"):
            model.posterior_targets(sites, data, min_effect=bad)
    with pytest.raises(ValueError, match="min_effect needs intervention_effect='shift'"):
        gim_ppl.GIM(4, 3, intervention_effect="replace").posterior_targets(
            sites, data, min_effect=0.1)


def test_hill_effects_are_the_closed_form_hill_curve(problem):
    bench, model, sites = problem
    data = bench.train
    h = numpy_heads(model, sites, np.asarray(data.features, float))
    dose = np.asarray(data.dose, float)[:, None]
    ec50, n = np.exp(h["log_ec50"]), np.exp(h["log_hill"])
    expected = h["emax"] * dose**n / (ec50**n + dose**n)
    expected[np.asarray(data.observational)] = 0.0
    np.testing.assert_allclose(model.hill_effects(sites, data), expected, rtol=1e-5,
                               atol=1e-6)


def test_target_table_shape_columns_and_values(problem):
    bench, model, sites = problem
    data = bench.train
    table = target_table(model, sites, data, train=data)
    assert list(table.columns) == COLUMNS
    assert len(table) == 3 * 4
    assert list(table["perturbation"]) == [f"drug_0{i}" for i in range(3) for _ in range(4)]
    assert list(table["gene"]) == list(data.var_names) * 3
    pert, dose = np.asarray(data.perturbation), np.asarray(data.dose)
    first = [int(np.flatnonzero(pert == g)[0]) for g in range(3)]
    top = [int(np.flatnonzero(pert == g)[np.argmax(dose[pert == g])]) for g in range(3)]
    prior = model.target_probabilities(sites, data.subset(first))
    np.testing.assert_allclose(table["target_probability"], prior.ravel(), rtol=1e-6)
    # the perturbation-level posterior: one indicator for all doses
    grouped = enumerated_grouped_posterior(model, sites, data)[first]
    np.testing.assert_allclose(table["posterior_probability"], grouped.ravel(), atol=2e-5)
    # the model's effect and the observed residual mean ± s.e. at the highest dose
    np.testing.assert_allclose(table["effect"],
                               model.hill_effects(sites, data)[top].ravel(), rtol=1e-6)
    residual = np.asarray(data.x, float) - numpy_mean(model, sites, np.asarray(data.x, float))
    ctx = np.asarray(data.context)
    mean = np.stack([residual[ctx == k].mean(0) for k in top])
    se = np.stack([residual[ctx == k].std(0, ddof=1) / np.sqrt((ctx == k).sum()) for k in top])
    np.testing.assert_allclose(table["observed_effect"], mean.ravel(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(table["observed_effect_se"], se.ravel(), rtol=1e-4)
    np.testing.assert_allclose(table["score"], (grouped * np.abs(
        model.hill_effects(sites, data)[top])).ravel(), rtol=1e-4, atol=1e-6)
    # unseen perturbations: a prior from features, no posterior without training cells;
    # the score then ranks by the prior
    unseen = target_table(model, sites, bench.full_ood, train=data)
    assert len(unseen) == 2 * 4 and set(unseen["perturbation"]) == {"drug_03", "drug_04"}
    assert unseen[["posterior_probability", "observed_effect"]].isna().all().all()
    assert unseen["target_probability"].between(0, 1).all()
    np.testing.assert_allclose(unseen["score"],
                               unseen["target_probability"] * unseen["effect"].abs())
    assert target_table(model, sites, data)["posterior_probability"].isna().all()
    with pytest.raises(ValueError, match="min_effect needs train"):
        target_table(model, sites, data, min_effect=0.1)


def test_dose_target_table_lists_every_dose(problem):
    bench, model, sites = problem
    data = bench.train.replace(dose_scale=DoseScale("nM", 1000.0))
    table = dose_target_table(model, sites, data)
    assert list(table.columns) == ["perturbation", "context", "dose", "dose_unit", "gene",
                                   "posterior_probability", "effect", "observed_effect",
                                   "observed_effect_se"]
    assert len(table) == 3 * 3 * 4 and set(table["dose_unit"]) == {"nM"}
    first_gene = table[table["gene"] == data.var_names[0]]
    assert list(first_gene["dose"]) == [500.0, 1000.0, 2000.0] * 3  # sorted per drug
    assert list(first_gene["perturbation"]) == [f"drug_0{i}" for i in range(3) for _ in "abc"]
    rows = [data.context_names.index(c) for c in first_gene["context"]]
    np.testing.assert_allclose(first_gene["posterior_probability"],
                               model.posterior_targets(sites, data)[rows, 0], rtol=1e-6)
    np.testing.assert_allclose(first_gene["effect"], model.hill_effects(sites, data)[rows, 0],
                               rtol=1e-6)
    strict = dose_target_table(model, sites, data, min_effect=1e6)
    assert (strict["posterior_probability"] == 0).all()


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
    assert list(table.columns) == [*COLUMNS, "emax", "ec50",
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


def test_dose_limited_targets_rank_first_and_min_effect_drops_tiny_shifts():
    """A screen with a target seen only at the highest dose (drug_a → g0: nothing at 0.1
    and 1, −0.7 at 10), a target at every dose (drug_b → g1, +0.8) and a tiny but certain
    shift (drug_c → g2, +0.06 at every dose; 300 cells a dose, so ~3.5 standard errors
    pooled): the perturbation-level posterior finds the dose-limited target, the score
    ranks the two large targets first, and `min_effect=0.1` stops calling the tiny shift a
    target while keeping the large ones."""
    rng = np.random.default_rng(0)
    d, n_cells, doses = 5, 300, (0.1, 1.0, 10.0)
    hill = {("drug_a", 0): (-1.0, 8.0, 4.0), ("drug_b", 1): (0.8, 0.5, 2.0),
            ("drug_c", 2): (0.06, 0.01, 1.0)}
    drugs = ["drug_a", "drug_b", "drug_c", "drug_d"]
    features, dose, obs, pert, xs, ctx = [np.zeros(4)], [0.0], [True], [-1], [], []
    xs.append(0.5 * rng.normal(size=(n_cells, d)))
    ctx.append(np.zeros(n_cells, int))
    for g, name in enumerate(drugs):
        for c in doses:
            k = len(dose)
            features.append(np.eye(4)[g])
            dose.append(c)
            obs.append(False)
            pert.append(g)
            shift = np.zeros(d)
            for (drug, j), (emax, ec50, n) in hill.items():
                if drug == name:
                    shift[j] = emax * c**n / (ec50**n + c**n)
            xs.append(shift + 0.5 * rng.normal(size=(n_cells, d)))
            ctx.append(np.full(n_cells, k))
    data = gim_ppl.PerturbationData.from_arrays(
        np.concatenate(xs), np.concatenate(ctx), features=np.asarray(features),
        dose=np.asarray(dose), observational=np.asarray(obs), perturbation=np.asarray(pert),
        perturbation_names=drugs, var_names=[f"g{j}" for j in range(d)])
    model = gim_ppl.GIM(d, 4)
    sites = gim_ppl.fit(model, data, steps=3000, key=jax.random.key(0), progress=False).sites

    by_dose = dose_target_table(model, sites, data).set_index(["perturbation", "gene", "dose"])
    assert by_dose.loc[("drug_a", "g0", 10.0), "posterior_probability"] > 0.99
    table = target_table(model, sites, data, train=data).set_index(["perturbation", "gene"])
    assert table.loc[("drug_a", "g0"), "posterior_probability"] > 0.99
    ranked = table.sort_values("score", ascending=False).index[:2]
    assert set(ranked) == {("drug_a", "g0"), ("drug_b", "g1")}
    strict = target_table(model, sites, data, train=data, min_effect=0.1)
    strict = strict.set_index(["perturbation", "gene"])["posterior_probability"]
    assert strict[("drug_a", "g0")] > 0.99 and strict[("drug_b", "g1")] > 0.99
    # every other pair moves its gene by less than 0.1: none is called a target
    assert (strict.drop([("drug_a", "g0"), ("drug_b", "g1")]) < 0.5).all()
    assert strict[("drug_c", "g2")] == 0.0
    # the observed effect at the highest dose brackets the planted one
    a = table.loc[("drug_a", "g0")]
    planted = -1.0 * 10**4 / (8**4 + 10**4)
    assert abs(a["observed_effect"] - planted) < 4 * a["observed_effect_se"]
